"""Records in S3: `bgkit run --output s3://…` through papermill's S3 handler, against the test
sandbox's S3 (a shared sandbox: an embedded one's S3 would end with the run), then `bgkit audit`
and `bgkit audit verify` on the prefix."""

from __future__ import annotations

import json

import pytest
from papermill.s3 import S3

from bgkit import audit, cli

BUCKET = "bgkit-records"
PREFIX = f"s3://{BUCKET}/releases/"


@pytest.fixture(scope="module")
def records(sandbox):
    """Two promoted releases of one listener, recorded under PREFIX (in the order they ran)."""
    import os

    from bgkit.connect import SANDBOX_URL_ENV

    os.environ[SANDBOX_URL_ENV] = sandbox.admin_url  # what `bgkit sandbox up` provides
    s3 = sandbox.session().client("s3")
    s3.create_bucket(Bucket=BUCKET)
    scenario = sandbox.provision("alb_weighted", request_rate=5)
    p = scenario.parameters
    elb = sandbox.session().client("elbv2")
    outputs = []
    try:
        for n in (1, 2):
            argv = ["run", "alb_weighted", "--output", PREFIX, "--quiet", "-p", "release", f"rel-{n}",
                    "-p", "plan", "all_at_once", "-p", "sandbox_request_rate", "1"]  # fmt: skip
            for name in ("listener_arn", "blue_target_group_arn", "green_target_group_arn"):
                argv += ["-p", name, p[name]]
            outputs.append(run(argv))
            elb.modify_listener(  # blue again, for the next release of the same listener
                ListenerArn=p["listener_arn"],
                DefaultActions=[{"Type": "forward", "ForwardConfig": {"TargetGroups": [
                    {"TargetGroupArn": p["blue_target_group_arn"], "Weight": 100},
                    {"TargetGroupArn": p["green_target_group_arn"], "Weight": 0},
                ]}}],
            )  # fmt: skip
        yield {"outputs": outputs, "listener": p["listener_arn"], "s3": s3}
    finally:
        sandbox.release_scenario(scenario.id)
        os.environ.pop(SANDBOX_URL_ENV, None)
        S3.s3_session = (None, None, None)  # papermill's S3 session pointed at the sandbox


def run(argv: list[str]) -> tuple[int, str]:
    import contextlib
    import io

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = cli.main(argv)
    return code, out.getvalue()


def record_url(output: str) -> str:
    return output.split("record: ", 1)[1].splitlines()[0]


def test_each_release_writes_its_record_under_the_prefix(records):
    (code1, out1), (code2, out2) = records["outputs"]
    assert (code1, code2) == (cli.EXIT_PROMOTED, cli.EXIT_PROMOTED), out1 + out2
    urls = [record_url(out1), record_url(out2)]
    assert all(u.startswith(PREFIX) and u.endswith(".ipynb") for u in urls)
    assert audit.record_paths(PREFIX) == sorted(urls)
    record = audit.read(urls[0]).metadata["bgkit"]  # read back from S3 itself
    assert (record["release"], record["outcome"]) == ("rel-1", "promoted")
    assert record["target_id"] == records["listener"]


def test_the_records_in_s3_are_one_chain_that_verifies(records):
    first, second = (
        audit.read(record_url(out)).metadata[audit.CHAIN_KEY] for _, out in records["outputs"]
    )
    assert (first["sequence"], second["sequence"]) == (1, 2)
    assert first["target"] == second["target"] == records["listener"]
    assert second["previous"] == first["hash"]
    assert run(["audit", "verify", PREFIX]) == (
        0,
        f"2 records in {PREFIX}: every hash and chain verified\n",
    )
    code, out = run(["audit", PREFIX, "--format", "json"])
    assert code == 0
    assert [(r["release"], r["outcome"]) for r in json.loads(out)] == [
        ("rel-1", "promoted"),
        ("rel-2", "promoted"),
    ]


def test_an_object_edited_in_s3_fails_verification(records):
    url = record_url(records["outputs"][0][1])
    key = url[len(f"s3://{BUCKET}/") :]
    s3 = records["s3"]
    original = s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()
    nb = json.loads(original)
    nb["metadata"]["bgkit"]["operator"] = "arn:aws:iam::123456789012:user/someone-else"
    s3.put_object(Bucket=BUCKET, Key=key, Body=json.dumps(nb).encode())
    try:
        code, out = run(["audit", "verify", PREFIX])
        assert code == 1
        assert f"PROBLEM {url}: edited: its content no longer matches its hash" in out
    finally:
        s3.put_object(Bucket=BUCKET, Key=key, Body=original)
    assert run(["audit", "verify", PREFIX])[0] == 0


def test_s3_output_without_a_sandbox_to_keep_it_is_refused_before_anything_runs(
    tmp_path, capsys, monkeypatch
):
    from bgkit.connect import SANDBOX_URL_ENV

    monkeypatch.delenv(SANDBOX_URL_ENV, raising=False)
    monkeypatch.chdir(tmp_path)
    assert cli.main(["run", "alb_weighted", "--output", PREFIX]) == cli.EXIT_USAGE
    assert "start it with `bgkit sandbox up`" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


def test_s3_output_to_a_missing_bucket_is_refused_naming_it(records, capsys):
    # (the records fixture points the environment at the sandbox)
    assert cli.main(["run", "alb_weighted", "--output", "s3://no-such-bucket/r/"]) == cli.EXIT_USAGE
    assert "--output: bucket 'no-such-bucket' cannot be reached" in capsys.readouterr().err
