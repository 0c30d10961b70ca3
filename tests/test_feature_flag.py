"""Feature flags: bgkit's flag rules and documents, the sandbox's AppConfig (tested with boto3),
its agent and the OpenFeature provider through it, and what feature_flag's preflight refuses.
The runbook's releases are in test_feature_flag_runbook.py."""

from __future__ import annotations

import http.client
import json
import time
from urllib.parse import urlsplit

import pytest
from botocore.exceptions import ClientError
from conftest import STEADY, Capture, run_cells

import bgkit
from bgkit.flags import document as flagdoc
from bgkit.flags.rules import RuleError, evaluate, parse, split_rule
from bgkit.sandbox.appconfig import steps
from bgkit.sandbox.flag_service import FLAG, initial_document

# 30 requests a second: a 25 % step still gives `on` more than min_requests per 5 s window
FAST = {"bake_seconds": 5, "sandbox_request_rate": 30.0, **STEADY}


def wait_for(predicate, timeout: float = 20.0, every: float = 0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise AssertionError("timed out")


# -- the flag rules and documents ----------------------------------------------------------


def test_split_is_consistent_nested_and_near_its_percentage():
    users = [f"user-{i}" for i in range(4000)]
    at = {
        pct: {u for u in users if evaluate(split_rule(pct, "userId", "rel-1"), {"userId": u})}
        for pct in (10, 25, 50)
    }
    assert at[10] <= at[25] <= at[50]  # nested: a user on at 10 % stays on at 25 % and 50 %
    for pct, on in at.items():
        assert abs(len(on) / len(users) - pct / 100) < 0.03, (pct, len(on))
    other_seed = {u for u in users if evaluate(split_rule(25, "userId", "rel-2"), {"userId": u})}
    assert other_seed != at[25]  # another release's seed splits other users
    assert not evaluate(split_rule(50), {})  # no userId in the context: not in the split


def test_rule_operators_and_errors():
    context = {"userId": "beta-7", "age": "42", "country": "DE"}
    assert evaluate('(and (begins_with $userId "beta") (gt $age 40))', context)
    assert evaluate('(or (eq $country "US") (not (eq $country "FR")))', context)
    assert evaluate('(in $country ["DE", "AT"])', context)
    assert not evaluate('(eq $missing "x")', context)
    for broken in ("(split by::$userId", "(eq $a)", "split by::$u pct::10)", "(nope $a 1)"):
        with pytest.raises(RuleError):
            evaluate(broken, context)
    with pytest.raises(RuleError, match="pct must be from 0 to 100"):
        evaluate("(split by::$userId pct::120)", context)


def test_a_rollout_rewrites_only_the_on_variants_rule():
    document = initial_document()
    document["values"][FLAG]["_variants"].insert(
        0, {"name": "staff", "enabled": True, "rule": "(split by::$userId pct::0)"}
    )
    rolled = flagdoc.with_rule(document, FLAG, split_rule(25, "userId", "r"))
    names = [v["name"] for v in rolled["values"][FLAG]["_variants"]]
    assert names == ["staff", "on", "off"]  # off stays the default, last and without a rule
    on = rolled["values"][FLAG]["_variants"][1]
    assert (
        on["attributeValues"] == {"steps": 1}
        and "rule" not in rolled["values"][FLAG]["_variants"][2]
    )
    assert flagdoc.on_share(rolled, FLAG, "userId") == 25
    assert flagdoc.on_share(document, FLAG, "userId") == 0
    assert document["values"][FLAG]["_variants"][1]["rule"] == split_rule(0)  # not changed
    with pytest.raises(flagdoc.FlagDocumentError, match="no flag 'other'"):
        flagdoc.variants(document, "other")
    with pytest.raises(RuleError):
        flagdoc.with_rule(document, FLAG, "(split by::$userId")


# -- the sandbox's AppConfig, with boto3 ----------------------------------------------------


@pytest.fixture
def appconfig(sandbox):
    """An application with a feature-flag profile (version 1 `off`) and an environment with an
    alarm monitor; one sandbox minute is 0.5 s."""
    client = sandbox.session().client("appconfig")
    cloudwatch = sandbox.session().client("cloudwatch")
    app = client.create_application(Name=f"test-{time.monotonic_ns()}")["Id"]
    sandbox.appconfig.minute_seconds[app] = 0.5
    profile = client.create_configuration_profile(
        ApplicationId=app, Name="flags", LocationUri="hosted", Type="AWS.AppConfig.FeatureFlags"
    )["Id"]
    for share in (0, 50):
        document = flagdoc.with_rule(initial_document(), FLAG, split_rule(share))
        client.create_hosted_configuration_version(
            ApplicationId=app,
            ConfigurationProfileId=profile,
            Content=flagdoc.dumps(document),
            ContentType="application/json",
            VersionLabel=f"share-{share}",
        )
    alarm = f"{app}-alarm"
    cloudwatch.put_metric_alarm(
        AlarmName=alarm, Namespace="t", MetricName="Errors", Statistic="Sum", Period=60,
        EvaluationPeriods=1, Threshold=1, ComparisonOperator="GreaterThanThreshold",
    )  # fmt: skip
    cloudwatch.set_alarm_state(AlarmName=alarm, StateValue="OK", StateReason="test")
    arn = cloudwatch.describe_alarms(AlarmNames=[alarm])["MetricAlarms"][0]["AlarmArn"]
    env = client.create_environment(ApplicationId=app, Name="prod", Monitors=[{"AlarmArn": arn}])[
        "Id"
    ]
    return {"client": client, "cloudwatch": cloudwatch, "app": app, "env": env,
            "profile": profile, "alarm": alarm}  # fmt: skip


def start(a, strategy: str, version: str = "1") -> dict:
    return a["client"].start_deployment(
        ApplicationId=a["app"], EnvironmentId=a["env"], DeploymentStrategyId=strategy,
        ConfigurationProfileId=a["profile"], ConfigurationVersion=version,
    )  # fmt: skip


def get(a, number: int) -> dict:
    return a["client"].get_deployment(
        ApplicationId=a["app"], EnvironmentId=a["env"], DeploymentNumber=number
    )


def test_predefined_and_custom_strategies(appconfig):
    client = appconfig["client"]
    listed = {s["Id"]: s for s in client.list_deployment_strategies()["Items"]}
    assert {k: (v["DeploymentDurationInMinutes"], v["GrowthFactor"], v["GrowthType"],
                v["FinalBakeTimeInMinutes"]) for k, v in listed.items() if k.startswith("AppConfig.")} == {
        "AppConfig.AllAtOnce": (0, 100.0, "LINEAR", 10),
        "AppConfig.Linear50PercentEvery30Seconds": (1, 50.0, "LINEAR", 1),
        "AppConfig.Canary10Percent20Minutes": (20, 10.0, "EXPONENTIAL", 10),
        "AppConfig.Linear20PercentEvery6Minutes": (30, 20.0, "LINEAR", 30),
    }  # fmt: skip
    custom = client.create_deployment_strategy(
        Name="three", DeploymentDurationInMinutes=3, GrowthFactor=34
    )
    assert (custom["GrowthType"], custom["FinalBakeTimeInMinutes"]) == ("LINEAR", 0)
    assert client.get_deployment_strategy(DeploymentStrategyId=custom["Id"])["Name"] == "three"
    with pytest.raises(ClientError, match="BadRequestException"):
        client.create_deployment_strategy(
            Name="x", DeploymentDurationInMinutes=1500, GrowthFactor=5
        )
    assert steps(20, 10, "EXPONENTIAL") == [10, 20, 40, 80, 100]
    assert steps(30, 20, "LINEAR") == [20, 40, 60, 80, 100]
    assert steps(0, 100, "LINEAR") == [100]


def test_a_linear_deployment_grows_bakes_and_completes_one_at_a_time(appconfig):
    client, a = appconfig["client"], appconfig
    strategy = client.create_deployment_strategy(
        Name="two-steps", DeploymentDurationInMinutes=3, GrowthFactor=50, FinalBakeTimeInMinutes=2
    )["Id"]
    first = start(a, strategy)
    assert (first["State"], first["PercentageComplete"], first["DeploymentNumber"]) == (
        "DEPLOYING", 1.0, 1,
    )  # fmt: skip
    env = client.get_environment(ApplicationId=a["app"], EnvironmentId=a["env"])
    assert env["State"] == "DEPLOYING"
    # steps at k·D/(N+1) = 0.5 s and 1 s (0.5 s a minute), the bake from D (1.5 s) for 1 s
    wait_for(lambda: get(a, 1)["PercentageComplete"] == 50)
    with pytest.raises(ClientError, match="ConflictException"):
        start(a, "AppConfig.AllAtOnce", "2")
    wait_for(lambda: get(a, 1)["State"] == "BAKING")
    with pytest.raises(ClientError, match="ConflictException"):  # a bake is part of it
        start(a, "AppConfig.AllAtOnce", "2")
    done = wait_for(lambda: (d := get(a, 1))["State"] == "COMPLETE" and d)
    events = [e["EventType"] for e in reversed(done["EventLog"])]  # the log is newest first
    assert events == ["DEPLOYMENT_STARTED", "PERCENTAGE_UPDATED", "PERCENTAGE_UPDATED",
                      "BAKE_TIME_STARTED", "DEPLOYMENT_COMPLETED"]  # fmt: skip
    assert done["EventLog"][-2]["Description"] == "Configuration available to 50.00% of clients"
    assert client.get_environment(ApplicationId=a["app"], EnvironmentId=a["env"])["State"] == (
        "READY_FOR_DEPLOYMENT"
    )
    second = start(a, "AppConfig.AllAtOnce", "2")
    assert second["DeploymentNumber"] == 2
    listed = client.list_deployments(ApplicationId=a["app"], EnvironmentId=a["env"])["Items"]
    assert [d["DeploymentNumber"] for d in listed] == [2, 1]  # newest first


def test_stop_rolls_back_a_running_deployment_and_reverts_a_complete_one(appconfig):
    client, a = appconfig["client"], appconfig
    slow = client.create_deployment_strategy(
        Name="slow", DeploymentDurationInMinutes=60, GrowthFactor=10
    )["Id"]
    start(a, slow)
    stopped = client.stop_deployment(
        ApplicationId=a["app"], EnvironmentId=a["env"], DeploymentNumber=1
    )
    assert stopped["State"] in ("ROLLING_BACK", "ROLLED_BACK")
    rolled = wait_for(lambda: (d := get(a, 1))["State"] == "ROLLED_BACK" and d)
    assert rolled["EventLog"][0]["TriggeredBy"] == "USER"
    start(a, "AppConfig.AllAtOnce", "2")
    start_time = time.monotonic()
    wait_for(lambda: get(a, 2)["State"] == "COMPLETE", timeout=10)  # a 10-minute bake: 5 s
    assert time.monotonic() - start_time > 3
    with pytest.raises(ClientError, match="BadRequestException"):
        client.stop_deployment(ApplicationId=a["app"], EnvironmentId=a["env"], DeploymentNumber=2)
    reverted = client.stop_deployment(
        ApplicationId=a["app"], EnvironmentId=a["env"], DeploymentNumber=2, AllowRevert=True
    )
    assert reverted["State"] == "REVERTED"
    assert reverted["EventLog"][0]["EventType"] == "REVERT_COMPLETED"
    assert client.get_environment(ApplicationId=a["app"], EnvironmentId=a["env"])["State"] == (
        "REVERTED"
    )


def test_a_monitor_alarm_rolls_back_a_deployment_that_bakes(appconfig, sandbox):
    a = appconfig
    start(a, "AppConfig.AllAtOnce", "2")
    wait_for(lambda: get(a, 1)["State"] == "BAKING")
    a["cloudwatch"].set_alarm_state(AlarmName=a["alarm"], StateValue="ALARM", StateReason="test")
    rolled = wait_for(lambda: (d := get(a, 1))["State"] == "ROLLED_BACK" and d)
    started = next(e for e in rolled["EventLog"] if e["EventType"] == "ROLLBACK_STARTED")
    assert started["TriggeredBy"] == "CLOUDWATCH_ALARM" and a["alarm"] in started["Description"]
    # clients are back on what they had: no version (none was deployed before)
    assert sandbox.appconfig.current_version(a["app"], a["env"], a["profile"]) is None


def test_configuration_sessions_serve_each_client_its_version_once(appconfig):
    a = appconfig
    client = appconfig_data(a)
    token = client.start_configuration_session(
        ApplicationIdentifier=a["app"], EnvironmentIdentifier="prod",
        ConfigurationProfileIdentifier="flags", RequiredMinimumPollIntervalInSeconds=15,
    )["InitialConfigurationToken"]  # fmt: skip
    first = client.get_latest_configuration(ConfigurationToken=token)
    assert first["Configuration"].read() == b""  # nothing deployed yet
    with pytest.raises(ClientError, match="BadRequestException"):  # a token serves one call
        client.get_latest_configuration(ConfigurationToken=token)
    start(a, "AppConfig.AllAtOnce", "2")
    second = client.get_latest_configuration(ConfigurationToken=first["NextPollConfigurationToken"])
    content = json.loads(second["Configuration"].read())
    assert second["VersionLabel"] == "share-50" and flagdoc.on_share(content, FLAG, "userId") == 50
    assert second["NextPollIntervalInSeconds"] == 15
    third = client.get_latest_configuration(ConfigurationToken=second["NextPollConfigurationToken"])
    assert third["Configuration"].read() == b""  # it has the latest version already


def appconfig_data(a):
    """The data API is a service of its own (appconfigdata) on the same endpoint."""
    import boto3

    return boto3.client(
        "appconfigdata", region_name="us-east-1", endpoint_url=a["client"].meta.endpoint_url,
        aws_access_key_id="sandbox", aws_secret_access_key="sandbox",
    )  # fmt: skip


# -- the agent --------------------------------------------------------------------------------


def deploy_on_for_everyone(sandbox, p: dict, strategy: str) -> None:
    """A new version with `on` for every user, deployed to the scenario's environment."""
    client = sandbox.session().client("appconfig")
    document = flagdoc.with_rule(initial_document(), FLAG, split_rule(100, seed="t"))
    version = client.create_hosted_configuration_version(
        ApplicationId=p["application_id"], ConfigurationProfileId=p["configuration_profile_id"],
        Content=flagdoc.dumps(document), ContentType="application/json",
    )["VersionNumber"]  # fmt: skip
    client.start_deployment(
        ApplicationId=p["application_id"], EnvironmentId=p["environment_id"],
        DeploymentStrategyId=strategy, ConfigurationProfileId=p["configuration_profile_id"],
        ConfigurationVersion=str(version),
    )  # fmt: skip


def in_process_release(sandbox, scenario, **values) -> bgkit.Release:
    """A release of the scenario's flag in this process, as with target "aws" on the sandbox."""
    p = scenario.parameters
    resources = {k: v for k, v in p.items() if k in bgkit.patterns.get("feature_flag").parameters}
    on_aws = {"target": "aws", "metric_period_seconds": 1, "metric_lag_seconds": 1.5}
    params = bgkit.validate_parameters(
        "feature_flag",
        {**resources, **on_aws, "bake_seconds": 5, "smoke_url": p["smoke_url"], **STEADY, **values},
    )
    return bgkit.Release(params, sandbox.session(), display=Capture())


def agent_get(url: str, path: str, headers: dict[str, str]) -> tuple[int, dict]:
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=5)
    try:
        connection.request("GET", path, headers=headers)
        response = connection.getresponse()
        return response.status, json.loads(response.read())
    finally:
        connection.close()


@pytest.fixture
def flags(sandbox):
    scenario = sandbox.provision("feature_flag", request_rate=5, minute_seconds=1.0)
    yield scenario
    sandbox.release_scenario(scenario.id)


def test_the_agent_evaluates_variants_per_user_and_keeps_entities_during_a_gradual_deployment(
    flags, sandbox
):
    p, agent = flags.parameters, flags.agent
    base = f"/applications/{p['application_id']}/environments/{p['environment_id']}/configurations/{p['configuration_profile_id']}"
    status, body = agent_get(agent.url, f"{base}?flag={FLAG}", {"Context": "userId=u1"})
    assert (status, body) == (200, {"_variant": "off", "enabled": False, "steps": 3})
    status, body = agent_get(agent.url, f"{base}?flag=nope", {})
    assert status == 404
    status, both = agent_get(agent.url, base, {"Context": "userId=u1, country=DE"})
    assert set(both) == {FLAG}  # every flag, as a map
    strategy = (
        sandbox.session()
        .client("appconfig")
        .create_deployment_strategy(Name="gradual", DeploymentDurationInMinutes=4, GrowthFactor=25)[
            "Id"
        ]
    )  # steps every 0.8 s at 1 s a minute
    deploy_on_for_everyone(sandbox, p, strategy)
    users = [f"user-{i}" for i in range(200)]
    seen: dict[str, list[str]] = {u: [] for u in users}
    shares = []
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        on = 0
        for user in users:
            _, body = agent_get(
                agent.url, f"{base}?flag={FLAG}", {"Context": f"userId={user}", "Entity-Id": user}
            )
            seen[user].append(body["_variant"])
            on += body["_variant"] == "on"
        shares.append(on / len(users))
        if on == len(users):
            break
    assert shares[-1] == 1.0, shares
    assert any(0.1 < s < 0.9 for s in shares), shares  # a part of the users first
    for user, variants in seen.items():  # once on, a user stays on (the entity is kept)
        first_on = variants.index("on")
        assert set(variants[first_on:]) == {"on"}, (user, variants)


def test_the_openfeature_provider_resolves_flags_through_the_agent(flags, sandbox):
    from openfeature import api
    from openfeature.evaluation_context import EvaluationContext
    from openfeature.exception import ErrorCode
    from openfeature.flag_evaluation import Reason

    from bgkit.flags.openfeature import AppConfigAgentProvider, VariantHook, variant_of

    p = flags.parameters
    provider = AppConfigAgentProvider(
        flags.agent.url, p["application_id"], p["environment_id"], p["configuration_profile_id"]
    )
    api.set_provider(provider, domain="test-provider")
    client = api.get_client("test-provider")
    client.add_hooks([VariantHook()])
    user = EvaluationContext(targeting_key="user-1")
    off = client.get_boolean_details(FLAG, True, user)
    assert (off.value, off.variant, off.reason) == (False, "off", Reason.DEFAULT)
    assert off.flag_metadata == {"_variant": "off", "enabled": False, "steps": 3}
    assert variant_of(FLAG) == "off"
    missing = client.get_boolean_details("no_such_flag", True, user)
    assert (missing.value, missing.error_code) == (True, ErrorCode.FLAG_NOT_FOUND)
    assert client.get_integer_value(FLAG, 7, user) == 7  # no `value` attribute: a type error
    deploy_on_for_everyone(sandbox, p, p["step_strategy"])
    on = wait_for(lambda: (d := client.get_boolean_details(FLAG, False, user)).value and d)
    assert (on.variant, on.reason) == ("on", Reason.SPLIT) and variant_of(FLAG) == "on"
    nobody = client.get_boolean_details(FLAG, True, EvaluationContext())  # no user: no split
    assert (nobody.value, nobody.reason) == (False, Reason.DEFAULT)


def test_preflight_refuses_an_environment_in_alarm_or_busy_and_a_freeform_profile(
    shared_sandbox, tmp_path, monkeypatch
):
    # target "aws" reaches the sandbox by the standard environment only, as for a real account
    monkeypatch.setenv("AWS_ENDPOINT_URL", shared_sandbox.endpoint_url)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "sandbox")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "sandbox")
    scenario = shared_sandbox.provision("feature_flag", request_rate=2, minute_seconds=0.5)
    try:
        p = scenario.parameters
        names = bgkit.patterns.get("feature_flag").parameters
        resources = {k: v for k, v in p.items() if k in names}
        on_aws = {
            "target": "aws",
            "metric_period_seconds": 1,
            "metric_lag_seconds": 1.5,
            "bake_seconds": 5,
        }
        cloudwatch = shared_sandbox.session().client("cloudwatch")
        cloudwatch.set_alarm_state(AlarmName=p["alarm_name"], StateValue="ALARM", StateReason="t")
        run = run_cells(tmp_path, "feature_flag", **resources, **on_aws)
        assert run.error.ename == "PreflightError" and "in ALARM" in run.error.evalue
        cloudwatch.set_alarm_state(AlarmName=p["alarm_name"], StateValue="OK", StateReason="t")
        client = shared_sandbox.session().client("appconfig")
        slow = client.create_deployment_strategy(
            Name="slow", DeploymentDurationInMinutes=600, GrowthFactor=10
        )["Id"]
        client.start_deployment(
            ApplicationId=p["application_id"], EnvironmentId=p["environment_id"],
            DeploymentStrategyId=slow, ConfigurationProfileId=p["configuration_profile_id"],
            ConfigurationVersion="1",
        )  # fmt: skip
        run = run_cells(tmp_path, "feature_flag", **resources, **on_aws)
        assert run.error.evalue.startswith("environment_id: deployment 2 of environment")
        freeform = client.create_configuration_profile(
            ApplicationId=p["application_id"], Name="settings", LocationUri="hosted"
        )["Id"]
        run = run_cells(
            tmp_path,
            "feature_flag",
            **{**resources, "configuration_profile_id": freeform},
            **on_aws,
        )
        assert run.error.evalue.startswith(
            "configuration_profile_id: configuration profile 'settings' is of type"
        )
    finally:
        shared_sandbox.release_scenario(scenario.id)


def test_parse_returns_the_expression_tree():
    tree = parse('(split by::$userId pct::20 seed::"a b")')
    assert tree[0] == "split" and [a[1] for a in tree[1:]] == ["by", "pct", "seed"]
