"""Bad input (issue 6, item 5): every bad parameter set is refused before the first AWS write.

One table of bad parameter sets across the runbooks. Each is run the way a notebook runs it,
the cells' own calls in order (validate_parameters → connect → Release(...).preflight()), and
must end in the expected error, whose message starts with the parameter's name and says what is
allowed, with no mutating call of that runbook in the sandbox's call log after a mark (bgkit's
calls carry "bgkit-runbook/<name>" in their User-Agent; see bgkit/sandbox/calls.py).

Most sets run in this process, as the cells do: a kernel costs seconds. The kernel(...) sets
run the real notebook through papermill, because that is where code injection through
parameters would happen.

How papermill writes parameters (papermill 2.7, papermill/translators.py, PythonTranslator):
the injected cell is `name = <literal>` per parameter. A str value is NOT written with repr():
`translate_escaped_str` encodes it with the `unicode_escape` codec (so a backslash becomes two,
newlines, tabs, other control characters and all non-ASCII characters become \\n, \\xNN, \\uNNNN
escapes) and then puts a backslash before every double quote, inside double quotes. Backslashes
are escaped before quotes, so a value ending in a backslash or holding \\" or triple quotes
cannot close the literal: a str value is always data, and the sets below check that it reaches
the notebook unchanged and is refused by validation. float nan/inf become float('nan') /
float('inf'); bool, int and None are written as Python literals; dict and list recurse.
What is NOT escaped: (1) parameter *names*, written verbatim before ` = `; papermill's own CLI
(-p NAME VALUE) and execute_notebook() take any name, so a name such as
"x = 1\\nimport os; os.system(...)\\ny" runs code in the kernel before any bgkit cell; `bgkit run`
refuses names its runbook does not declare (cli.coerce_parameters, tested below); (2) a value of
a type papermill does not know (execute_notebook() from Python only) is written as
f'"{value}"' with no escaping at all. bgkit's validation reads only declared names and so cannot
protect against either: only the caller of papermill can, which is why `bgkit run` is the
supported way to pass untrusted parameters.
"""

from __future__ import annotations

import ast
import math
from dataclasses import dataclass, replace
from functools import cache
from pathlib import Path
from typing import Any

import nbformat
import pytest
from conftest import RUNBOOKS, Capture, assert_refused, run_runbook

import bgkit
from bgkit import ParameterError, PreflightError
from bgkit.cli import UsageError, coerce_parameters

ACCOUNT = "123456789012"  # moto's account
ELB = f"arn:aws:elasticloadbalancing:us-east-1:{ACCOUNT}"
LISTENER = f"{ELB}:listener/app/prod/50dc6c495c0c9188/f2f7dc8efc522ab2"
TARGET_GROUP = f"{ELB}:targetgroup/prod-blue/73e2d6bc24d8a067"
TASK_DEFINITION = f"arn:aws:ecs:us-east-1:{ACCOUNT}:task-definition/web:42"
SERVICE = f"arn:aws:apprunner:us-east-1:{ACCOUNT}:service/web-app/8fe1e10304f84fd2b0df550fe98a71fa"
IMAGE = f"{ACCOUNT}.dkr.ecr.us-east-1.amazonaws.com/web:v2"
PWNED = "@PWNED@"  # replaced by a file path in the test's tmp_path: the file must never appear

CATEGORIES = ("percent", "bake", "plan", "arn", "missing", "blue=green", "release", "region")
CATEGORIES += ("injection", "other")

# Well-formed resource parameters naming nothing that exists: with target "aws" they pass
# validation, and preflight, reading AWS (the sandbox's endpoint), refuses the first one it reads.
ABSENT = {
    "alb_weighted": {
        "listener_arn": LISTENER,
        "blue_target_group_arn": TARGET_GROUP,
        "green_target_group_arn": TARGET_GROUP.replace("blue", "green"),
    },
    "apigw_canary": {"rest_api_id": "zzzzzzzzzz", "stage_name": "prod"},
    "app_runner": {"service_arn": SERVICE, "image_identifier": IMAGE},
    "asg_swap": {
        "listener_arn": LISTENER,
        "blue_target_group_arn": TARGET_GROUP,
        "green_target_group_arn": TARGET_GROUP.replace("blue", "green"),
        "blue_asg_name": "web-v1",
        "green_asg_name": "web-v2",
        "launch_template_version": "2",
    },
    "ecs_codedeploy": {
        "application_name": "no-such-application",
        "deployment_group_name": "web-dg",
        "task_definition_arn": TASK_DEFINITION,
    },
    "ecs_native": {
        "cluster_name": "no-such-cluster",
        "service_name": "web",
        "task_definition_arn": TASK_DEFINITION,
    },
    "feature_flag": {
        "application_id": "zzzzzzz",
        "environment_id": "zzzzzzz",
        "configuration_profile_id": "zzzzzzz",
        "flag_key": "new_checkout",
    },
    "lambda_codedeploy": {
        "function_name": "web",
        "alias_name": "live",
        "target_version": "2",
        "application_name": "no-such-application",
        "deployment_group_name": "web-dg",
    },
    "route53_weighted": {
        "hosted_zone_id": "Z0000000000000000000",
        "record_name": "www.example.com",
        "blue_set_identifier": "blue",
        "green_set_identifier": "green",
        "blue_target_group_arn": TARGET_GROUP,
        "green_target_group_arn": TARGET_GROUP.replace("blue", "green"),
    },
}


@dataclass(frozen=True)
class Scenario:
    """A value read from the runbook's sandbox scenario (its parameters), changed by `change`."""

    key: str
    change: Any

    def resolve(self, parameters: dict[str, Any]) -> Any:
        return self.change(parameters[self.key])


@dataclass(frozen=True)
class Bad:
    category: str
    runbook: str
    values: dict[str, Any]
    parameter: str  # the message starts with "<parameter>: "
    allowed: str  # ... and says this about what is allowed
    error: type[Exception] = ParameterError
    # "": the target the values say (the sandbox by default). "absent": target "aws" on the
    # sandbox's endpoint with ABSENT's resources. "scenario": target "aws" with the resources of
    # a scenario provisioned in the sandbox: for what preflight can refuse only once the rest
    # exists. `values` override either.
    aws: str = ""
    papermill: bool = False  # through a real kernel (conftest.run_runbook)


def bad(id: str, category: str, parameter: str, allowed: str, **values: Any):
    """A bad set refused by validation; `id` starts with the runbook's name."""
    return pytest.param(Bad(category, id.split("-")[0], values, parameter, allowed), id=id)


def absent(id: str, parameter: str, allowed: str, aws: str = "absent", **values: Any):
    """A bad set naming a resource that does not exist: refused by preflight, after reads."""
    bad_set = Bad("missing", id.split("-")[0], values, parameter, allowed, PreflightError, aws)
    return pytest.param(bad_set, id=id)


def kernel(param):
    """The same bad set through papermill and a kernel."""
    return pytest.param(replace(param.values[0], papermill=True), id=f"{param.id}-papermill")


NUMBER_1_99 = "must be an integer from 1 to 99"
CLOUDWATCH_BAKE = "1, 5, 10, 20, 30 or a multiple of 60 seconds"
PLAN = 'must be linear, canary, all_at_once, or green percentages like "5,25,50"'
PLAN_STEPS = 'increasing green percentages from 1 to 99 like "5,25,50"'
RELEASE_ID = "must be 1-64 characters: letters, digits, '.', '_' or '-'"
REGION = "must be an AWS region name such as us-east-1"
ARN = "must be an ARN like"
DIFFER = "must differ from blue_"
BAKE_RANGE = "must be a number from 1 up to 3600"
LAMBDA_CONFIGS = "must be a custom configuration or one of the Lambda ones"
ABSENT_NOW = "does not exist"

BAD_INPUT = [
    # -- weights and percentages out of range ----------------------------------------------
    bad("alb_weighted-step-0", "percent", "step_percent", NUMBER_1_99, step_percent=0),
    bad("route53_weighted-step-100", "percent", "step_percent", NUMBER_1_99, step_percent=100),
    bad("apigw_canary-canary-minus-5", "percent", "canary_percent", NUMBER_1_99, canary_percent=-5),
    bad("asg_swap-canary-101", "percent", "canary_percent", NUMBER_1_99, canary_percent=101),
    bad("ecs_native-canary-1e9", "percent", "canary_percent", NUMBER_1_99, canary_percent=1e9),
    bad("alb_weighted-canary-True", "percent", "canary_percent", NUMBER_1_99, canary_percent=True),
    # -- bake times ------------------------------------------------------------------------
    bad("alb_weighted-bake-minus-5", "bake", "bake_seconds", BAKE_RANGE, bake_seconds=-5),
    bad("apigw_canary-bake-half", "bake", "bake_seconds", BAKE_RANGE, bake_seconds=0.5),
    bad("ecs_codedeploy-bake-nan", "bake", "bake_seconds", BAKE_RANGE, bake_seconds=math.nan),
    bad("lambda_codedeploy-bake-inf", "bake", "bake_seconds", BAKE_RANGE, bake_seconds=math.inf),
    bad("app_runner-bake-a-day", "bake", "bake_seconds", BAKE_RANGE, bake_seconds=86400),
    bad("route53_weighted-bake-7", "bake", "bake_seconds", CLOUDWATCH_BAKE, bake_seconds=7),
    bad("ecs_native-bake-90", "bake", "bake_seconds", CLOUDWATCH_BAKE, bake_seconds=90),
    bad("asg_swap-bake-a-string", "bake", "bake_seconds", BAKE_RANGE, bake_seconds="5"),
    # -- plans -----------------------------------------------------------------------------
    bad("alb_weighted-plan-unknown", "plan", "plan", PLAN, plan="yolo"),
    bad("asg_swap-plan-decreasing", "plan", "plan", PLAN_STEPS, plan="50,25"),
    bad("route53_weighted-plan-to-100", "plan", "plan", PLAN_STEPS, plan="5,50,100"),
    bad("apigw_canary-plan-repeats-a-step", "plan", "plan", PLAN_STEPS, plan="10,10,20"),
    bad("app_runner-plan-linear", "plan", "plan", "must be one of all_at_once", plan="linear"),
    bad(
        "lambda_codedeploy-config-unknown-predefined",
        "plan",
        "deployment_config_name",
        LAMBDA_CONFIGS,
        deployment_config_name="CodeDeployDefault.LambdaCanary99Percent1Minutes",
    ),
    bad(
        "ecs_codedeploy-config-of-lambda",
        "plan",
        "deployment_config_name",
        "must be a custom configuration or one of the ECS ones",
        deployment_config_name="CodeDeployDefault.LambdaAllAtOnce",
    ),
    # -- malformed ARNs and identifiers ----------------------------------------------------
    bad(
        "alb_weighted-listener-arn-of-ec2",
        "arn",
        "listener_arn",
        ARN,
        listener_arn=LISTENER.replace("elasticloadbalancing", "ec2"),
    ),
    bad(
        "route53_weighted-arn-11-digit-account",
        "arn",
        "blue_target_group_arn",
        ARN,
        blue_target_group_arn=TARGET_GROUP.replace(ACCOUNT, ACCOUNT[:11]),
    ),
    bad(
        "ecs_native-arn-trailing-space",
        "arn",
        "task_definition_arn",
        ARN,
        task_definition_arn=TASK_DEFINITION + " ",
    ),
    bad("app_runner-arn-trailing-newline", "arn", "service_arn", ARN, service_arn=SERVICE + "\n"),
    bad(
        "ecs_codedeploy-arn-arabic-indic-account",
        "arn",
        "task_definition_arn",
        ARN,
        task_definition_arn=TASK_DEFINITION.replace(ACCOUNT, "١٢٣٤٥٦٧٨٩٠١٢"),
    ),
    bad(
        "asg_swap-arn-unknown-partition",
        "arn",
        "listener_arn",
        ARN,
        listener_arn=LISTENER.replace("arn:aws:", "arn:awsevil:"),
    ),
    bad(
        "lambda_codedeploy-version-superscript-two",
        "arn",
        "target_version",
        "must be a published version number such as 7",
        target_version="²",
    ),
    bad(
        "apigw_canary-api-id-trailing-newline",
        "arn",
        "rest_api_id",
        "must be a REST API id",
        rest_api_id="a1b2c3d4e5\n",
    ),
    # -- resources missing, or well-formed but not there (refused by preflight) -------------
    bad(
        "alb_weighted-aws-without-resources",
        "missing",
        "listener_arn",
        "is required when target is 'aws'",
        target="aws",
        bake_seconds=60,
    ),
    absent("alb_weighted-listener-absent", "listener_arn", ABSENT_NOW),
    absent("apigw_canary-rest-api-absent", "rest_api_id", ABSENT_NOW),
    absent("app_runner-service-absent", "service_arn", ABSENT_NOW),
    absent("asg_swap-listener-absent", "listener_arn", ABSENT_NOW),
    absent("ecs_codedeploy-application-absent", "application_name", ABSENT_NOW),
    absent("ecs_native-cluster-absent", "cluster_name", ABSENT_NOW),
    absent("route53_weighted-hosted-zone-absent", "hosted_zone_id", ABSENT_NOW),
    absent(
        "apigw_canary-canary-deployment-absent",
        "canary_deployment_id",
        "has no deployment",
        aws="scenario",
        canary_deployment_id="nosuch",
    ),
    absent(
        "lambda_codedeploy-version-not-published",
        "target_version",
        "is not published",
        aws="scenario",
        target_version="999",
    ),
    absent(
        "lambda_codedeploy-custom-config-absent",
        "deployment_config_name",
        ABSENT_NOW,
        aws="scenario",
        deployment_config_name="no-such-config",
    ),
    # -- blue equal to green ---------------------------------------------------------------
    bad(
        "alb_weighted-green-is-blue",
        "blue=green",
        "green_target_group_arn",
        DIFFER,
        blue_target_group_arn=TARGET_GROUP,
        green_target_group_arn=TARGET_GROUP,
    ),
    bad(
        "asg_swap-green-group-is-blue",
        "blue=green",
        "green_asg_name",
        DIFFER,
        blue_asg_name="web-v1",
        green_asg_name="web-v1",
    ),
    bad(
        "route53_weighted-green-record-is-blue",
        "blue=green",
        "green_set_identifier",
        DIFFER,
        blue_set_identifier="web",
        green_set_identifier="web",
    ),
    pytest.param(
        Bad(
            "blue=green",
            "lambda_codedeploy",
            {"target_version": Scenario("target_version", lambda v: str(int(v) - 1))},
            "target_version",
            "already points to version",
            PreflightError,
            aws="scenario",
        ),
        id="lambda_codedeploy-target-version-is-current",
    ),
    # -- release ids -----------------------------------------------------------------------
    bad("alb_weighted-release-blank", "release", "release", RELEASE_ID, release="   "),
    bad("apigw_canary-release-65-chars", "release", "release", RELEASE_ID, release="r" * 65),
    bad("ecs_native-release-unicode", "release", "release", RELEASE_ID, release="rel-ünïcødé"),
    bad("lambda_codedeploy-release-newline", "release", "release", RELEASE_ID, release="rel-1\n"),
    bad(
        "route53_weighted-release-shell",
        "release",
        "release",
        RELEASE_ID,
        release="rel-1;$(touch /tmp/x)`id`|&",
    ),
    bad("asg_swap-release-path", "release", "release", RELEASE_ID, release="../../etc/passwd"),
    bad("app_runner-release-None", "release", "release", "must be a string", release=None),
    # -- regions ---------------------------------------------------------------------------
    bad("alb_weighted-region-moon", "region", "region", REGION, region="moon-1"),
    bad("ecs_codedeploy-region-newline", "region", "region", REGION, region="us-east-1\n"),
    bad("lambda_codedeploy-region-shell", "region", "region", REGION, region="us-east-1;rm -rf ~"),
    bad("app_runner-region-arabic-indic", "region", "region", REGION, region="us-east-١"),
    # -- other strings that try to smuggle something in -------------------------------------
    bad(
        "apigw_canary-smoke-url-header-injection",
        "other",
        "smoke_url",
        "printable ASCII with no spaces",
        smoke_url="http://127.0.0.1/\r\nX-Injected: 1",
    ),
    bad(
        "ecs_codedeploy-application-quotes",
        "other",
        "application_name",
        "must be a CodeDeploy application name",
        application_name="'); __import__('os').system('id'); ('",
    ),
    bad(
        "ecs_native-cluster-newline",
        "other",
        "cluster_name",
        "must be an ECS cluster name",
        cluster_name="prod\n",
    ),
    bad("alb_weighted-plan-arabic-indic", "other", "plan", "ASCII digits", plan="١٠,٥٠"),
    bad(
        "route53_weighted-metric-period-float",
        "other",
        "metric_period_seconds",
        "or one of 1, 5, 10",
        metric_period_seconds=60.0,
        bake_seconds=60,
    ),
    # -- the schema step's parameters ------------------------------------------------------
    bad(
        "alb_weighted-migrations-absent",
        "other",
        "migrations",
        "does not exist",
        migrations="/nonexistent/migrations",
    ),
    bad(
        "route53_weighted-migrations-syntax-error",
        "other",
        "migrations",
        "line 3: syntax error",
        migrations=str(Path(__file__).resolve().parent / "schema" / "syntax_error.sql"),
    ),
    bad(
        "ecs_native-schema-check-maybe",
        "other",
        "schema_check",
        "must be one of",
        schema_check="maybe",
    ),
    bad(
        "asg_swap-apply-migrations-text",
        "other",
        "apply_migrations",
        "must be True or False",
        apply_migrations="yes",
    ),
    # -- through papermill: code injection, and two other bad sets in a real kernel -----------
    kernel(
        bad(
            "alb_weighted-release-import-os",
            "injection",
            "release",
            RELEASE_ID,
            release=f"\nimport os; os.system('touch {PWNED}')\n",
        )
    ),
    kernel(
        bad(
            "apigw_canary-stage-triple-quotes",
            "injection",
            "stage_name",
            "must be a stage name",
            stage_name=f'"""\nimport pathlib; pathlib.Path("{PWNED}").touch()\n"""',
        )
    ),
    kernel(
        bad(
            "route53_weighted-record-backslash-quote",
            "injection",
            "record_name",
            "must be a DNS name",
            record_name=f'x\\"; import os; os.system("touch {PWNED}"); y = "\\',
        )
    ),
    kernel(
        absent(
            "lambda_codedeploy-alias-absent", "alias_name", ABSENT_NOW, aws="", alias_name="nope"
        )
    ),
    kernel(bad("ecs_native-bake-nan", "bake", "bake_seconds", BAKE_RANGE, bake_seconds=math.nan)),
    # -- feature_flag ------------------------------------------------------------------------
    bad(
        "feature_flag-plan-short-strategy",
        "plan",
        "plan",
        "or an AppConfig deployment strategy id",
        plan="AppConfig.Fast",
    ),
    bad(
        "feature_flag-flag-key-spaces",
        "other",
        "flag_key",
        "must be a flag key",
        flag_key="New checkout",
    ),
    bad(
        "feature_flag-poll-negative",
        "other",
        "agent_poll_seconds",
        "from 0 to 3600",
        agent_poll_seconds="-1",
    ),
    absent("feature_flag-application-absent", "configuration_profile_id", ABSENT_NOW),
    absent(
        "feature_flag-flag-absent",
        "flag_key",
        "has no flag 'no_such_flag'",
        aws="scenario",
        flag_key="no_such_flag",
    ),
    absent("feature_flag-strategy-absent", "plan", ABSENT_NOW, aws="scenario", plan="zzzzzzz"),
    absent(
        "feature_flag-step-strategy-absent",
        "step_strategy",
        ABSENT_NOW,
        aws="scenario",
        step_strategy="zzzz",
    ),
]


@cache
def runbook_defaults(runbook: str) -> dict[str, Any]:
    """The runbook's parameters cell, run: the namespace its later cells see before papermill's
    injected cell overrides some of it."""
    notebook = nbformat.read(str(RUNBOOKS / f"{runbook}.ipynb"), as_version=4)
    cell = next(c for c in notebook.cells if "parameters" in c.metadata.get("tags", []))
    namespace: dict[str, Any] = {}
    exec(cell.source, namespace)
    return {k: v for k, v in namespace.items() if not k.startswith("__")}


@pytest.fixture(scope="module")
def scenarios(sandbox):
    """One scenario per runbook, made when a set first needs it and shared by the sets (a refused
    set changes nothing, so the next finds it as it was)."""
    made: dict[str, Any] = {}

    def get(runbook: str) -> dict[str, Any]:
        if runbook not in made:
            made[runbook] = sandbox.provision(runbook, request_rate=2.0, minute_seconds=0.5)
        return made[runbook].parameters

    yield get
    for scenario in made.values():
        sandbox.release_scenario(scenario.id)


@pytest.fixture(scope="module")
def tally(request):
    """What the closing note reports: sets, refused as expected, with no mutating call."""
    results: list[dict[str, Any]] = []
    yield results
    refused = sum(r["refused"] for r in results)
    clean = sum(r["mutations"] == 0 for r in results)
    reached = sum(r["calls"] > 0 for r in results)
    kernels = sum(r["papermill"] for r in results)
    line = (
        f"bad input: {len(results)} sets ({kernels} through papermill), {refused} refused as "
        f"expected, {clean} with zero mutating calls, {reached} refused after reading AWS"
    )
    plugins = request.config.pluginmanager
    reporter, capture = plugins.get_plugin("terminalreporter"), plugins.get_plugin("capturemanager")
    if reporter is None or capture is None:  # e.g. an xdist worker: its terminal is not shown
        print(line)
        return
    with capture.global_and_fixture_disabled():
        reporter.write_line("\n" + line)


@pytest.fixture
def aws_on_sandbox(sandbox, monkeypatch):
    """target "aws" reaches the sandbox by the standard environment only (as for a real account);
    also a guard: a set that wrongly passed validation with target "aws" never leaves loopback."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", sandbox.endpoint_url)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "sandbox")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "sandbox")
    monkeypatch.delenv("AWS_PROFILE", raising=False)


def namespace_of(bad_set: Bad, scenarios, marker: Path) -> dict[str, Any]:
    values = {k: _resolve(v, bad_set, scenarios, marker) for k, v in bad_set.values.items()}
    if not bad_set.aws:
        return values
    if bad_set.aws == "absent":
        resources = ABSENT[bad_set.runbook]
    else:
        scenario = scenarios(bad_set.runbook)
        names = bgkit.patterns.get(bad_set.runbook).parameters
        resources = {name: scenario[name] for name in names if name in scenario}
    # the sandbox publishes every second: so that bake_seconds 5 is a valid period on "aws"
    on_aws = {"target": "aws", "metric_period_seconds": 1, "metric_lag_seconds": 1.5}
    return {**resources, **on_aws, **values}


def _resolve(value: Any, bad_set: Bad, scenarios, marker: Path) -> Any:
    if isinstance(value, Scenario):
        return value.resolve(scenarios(bad_set.runbook))
    if isinstance(value, str):
        return value.replace(PWNED, str(marker))
    return value


def release_in_process(runbook: str, values: dict[str, Any]) -> None:
    """The runbook's cells 1-3, as the notebook calls them, on its parameters cell's namespace."""
    namespace = {**runbook_defaults(runbook), **values}
    params = bgkit.validate_parameters(runbook, namespace)
    connection = bgkit.connect(params)
    try:
        release = bgkit.Release(connection.params, connection.session, display=Capture())
        release.preflight()
    finally:
        connection.close()


@pytest.mark.parametrize("bad_set", BAD_INPUT)
def test_bad_input_is_refused_before_any_mutation(
    bad_set, shared_sandbox, aws_on_sandbox, scenarios, tally, tmp_path
):
    marker = tmp_path / "pwned"
    values = namespace_of(bad_set, scenarios, marker)
    mark = shared_sandbox.calls.mark()
    if bad_set.papermill:
        run = run_runbook(tmp_path, bad_set.runbook, **values)
        assert run.error is not None, "the runbook ran to its end"
        error_name, message = run.error.ename, run.error.evalue
        assert_parameters_were_data(run.nb, values)
    else:
        with pytest.raises(Exception) as caught:
            release_in_process(bad_set.runbook, values)
        error_name, message = type(caught.value).__name__, str(caught.value)
    calls = shared_sandbox.calls.calls(since=mark, runbook=bad_set.runbook)
    mutations = [f"{c.action} ({c.status})" for c in calls if c.mutating]
    refused = error_name == bad_set.error.__name__ and message.startswith(f"{bad_set.parameter}: ")
    tally.append(
        {
            "runbook": bad_set.runbook,
            "refused": refused and bad_set.allowed in message,
            "mutations": len(mutations),
            "calls": len(calls),
            "papermill": bad_set.papermill,
        }
    )
    assert error_name == bad_set.error.__name__, message
    assert message.startswith(f"{bad_set.parameter}: "), message
    assert bad_set.allowed in message, message
    assert mutations == [], f"refused after changing AWS: {mutations}"
    assert not marker.exists(), "a parameter value ran as code"
    if bad_set.error is PreflightError:
        assert calls, "a resource that does not exist was refused without reading AWS"
    if bad_set.papermill:  # and the record, if preflight made one, says failed before deploying
        assert_refused(run, bad_set.error.__name__, bad_set.parameter)


def assert_parameters_were_data(nb, values: dict[str, Any]) -> None:
    """papermill's injected cell assigns each value as a literal equal to it: nothing else."""
    cell = next(c for c in nb.cells if "injected-parameters" in c.metadata.get("tags", []))
    tree = ast.parse(cell.source)
    assigned = {}
    for node in tree.body:
        assert isinstance(node, ast.Assign) and len(node.targets) == 1, ast.dump(node)
        assert isinstance(node.targets[0], ast.Name)
        assigned[node.targets[0].id] = _literal(node.value)
    for name, value in values.items():
        if isinstance(value, float) and math.isnan(value):
            assert math.isnan(assigned[name])
        else:
            assert assigned[name] == value, name


def _literal(node: ast.expr) -> Any:
    if isinstance(node, ast.Call):  # float('nan'), float('inf'): papermill's non-finite floats
        assert ast.unparse(node) in ("float('nan')", "float('inf')", "float('-inf')")
        return eval(ast.unparse(node))
    return ast.literal_eval(node)


def test_the_table_covers_every_runbook_and_category():
    sets = [p.values[0] for p in BAD_INPUT]
    assert len(sets) >= 36
    assert {s.runbook for s in sets} == set(bgkit.patterns.names())
    assert {s.category for s in sets} == set(CATEGORIES)
    assert sum(s.papermill and s.category == "injection" for s in sets) >= 3
    assert sum(s.papermill and s.category != "injection" for s in sets) >= 2
    ids = [p.id for p in BAD_INPUT]
    assert len(ids) == len(set(ids))


def test_bgkit_run_refuses_parameter_names_that_papermill_would_write_as_code():
    # papermill writes a parameter's name verbatim ("<name> = <value>"): code in a name would
    # run in the kernel before the runbook's first cell. bgkit run takes declared names only.
    name = f"x = 1\nimport os; os.system('touch {PWNED}')\ny"
    with pytest.raises(UsageError, match="has no parameter"):
        coerce_parameters(RUNBOOKS / "alb_weighted.ipynb", [(name, "1")])


def test_a_sandbox_connection_refused_for_its_resources_stops_the_scenario_it_made(
    shared_sandbox,
):
    """connect() provisions a scenario, then finds the resources do not go together (green's
    set identifier given, equal to the blue one the scenario has): the refusal also stops that
    scenario (its load generator), instead of leaving it running in the sandbox."""
    before = set(shared_sandbox._scenarios)
    params = bgkit.validate_parameters("route53_weighted", {"green_set_identifier": "blue"})
    with pytest.raises(bgkit.ParameterError, match="^green_set_identifier: must differ from"):
        bgkit.connect(params)
    assert set(shared_sandbox._scenarios) == before
