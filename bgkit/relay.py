"""bgkit's lifecycle hook relay: a Lambda function that hands a CodeDeploy hook to the bgkit run.

CodeDeploy gives the LifecycleEventHookExecutionId, which PutLifecycleEventHookExecutionStatus
needs, only to the hook function. This function stores it in SSM Parameter Store under
``/bgkit/codedeploy-hooks/<DeploymentId>``; the bgkit release waiting for that deployment reads
it, runs its smoke test, and reports Succeeded (or stops the deployment with rollback). If no
one reports, CodeDeploy fails the hook after an hour and the deployment fails.

Install once per account and region (the function needs nothing but this file and boto3):

    zip relay.zip relay.py      # this file, from the bgkit package
    aws lambda create-function --function-name bgkit-hook-relay --runtime python3.12 \\
        --handler relay.handler --zip-file fileb://relay.zip --timeout 30 \\
        --role <a role allowed ssm:PutParameter on parameter/bgkit/codedeploy-hooks/*>

and give the runbook ``hook_function_name=bgkit-hook-relay``. CodeDeploy's service role must be
allowed to invoke it (lambda:InvokeFunction), as for any hook.
"""

from __future__ import annotations

import json

PARAMETER_PREFIX = "/bgkit/codedeploy-hooks/"


def handler(event, context):  # type: ignore[no-untyped-def]
    import boto3

    execution = event["LifecycleEventHookExecutionId"]
    boto3.client("ssm").put_parameter(
        Name=PARAMETER_PREFIX + event["DeploymentId"],
        Value=json.dumps({"executionId": execution}),
        Type="String",
        Overwrite=True,
    )
    return {"relayed": execution}
