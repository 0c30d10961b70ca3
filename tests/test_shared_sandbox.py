"""`bgkit sandbox up/down`: one sandbox process that outlives runs, found by runbooks."""

from __future__ import annotations

import json
import os
import socket
from urllib.parse import urlsplit

import boto3
import pytest

import bgkit
from bgkit import cli
from bgkit.connect import SANDBOX_URL_ENV, connect
from bgkit.sandbox import SANDBOX_ACCESS_KEY_ID, SANDBOX_SECRET_ACCESS_KEY, shared


@pytest.fixture
def state_dir(tmp_path, monkeypatch):
    monkeypatch.setenv(shared.STATE_DIR_ENV, str(tmp_path))
    monkeypatch.delenv(SANDBOX_URL_ENV, raising=False)
    yield tmp_path
    shared.down()  # whatever a failed assertion left running


def listening(url: str) -> bool:
    parts = urlsplit(url)
    with socket.socket() as probe:
        probe.settimeout(1)
        return probe.connect_ex((parts.hostname, parts.port)) == 0


def test_up_starts_one_sandbox_that_runbooks_attach_to_and_down_stops_it(state_dir, capsys):
    assert cli.main(["sandbox", "status"]) == 1
    assert cli.main(["sandbox", "up"]) == 0
    out = capsys.readouterr().out
    state = json.loads((state_dir / shared.STATE_FILE).read_text())
    assert f"started (pid {state['pid']}" in out and state["endpoint_url"] in out
    assert state["pid"] != os.getpid()  # its own process
    assert urlsplit(state["endpoint_url"]).hostname == "127.0.0.1"

    # a second `up` finds it
    assert cli.main(["sandbox", "up"]) == 0
    assert f"already running (pid {state['pid']}" in capsys.readouterr().out

    # boto3 reaches its control plane; a runbook's connect() attaches instead of starting one
    sts = boto3.client(
        "sts",
        endpoint_url=state["endpoint_url"],
        region_name=state["region"],
        aws_access_key_id=SANDBOX_ACCESS_KEY_ID,
        aws_secret_access_key=SANDBOX_SECRET_ACCESS_KEY,
    )
    assert sts.get_caller_identity()["Account"]
    params = bgkit.validate_parameters("alb_weighted", {"sandbox_request_rate": 5.0})
    connection = connect(params)
    try:
        assert connection.session.endpoint_url == state["endpoint_url"]
        elb = connection.session.client("elbv2")
        listener = connection.params.resources["listener_arn"]
        assert elb.describe_listeners(ListenerArns=[listener])["Listeners"]
    finally:
        connection.close()

    assert cli.main(["sandbox", "down"]) == 0
    assert f"stopped (pid {state['pid']})" in capsys.readouterr().out
    assert not (state_dir / shared.STATE_FILE).exists()
    assert not listening(state["endpoint_url"]) and not listening(state["admin_url"])
    assert shared.running() is None
    assert cli.main(["sandbox", "down"]) == 0
    assert "no shared sandbox is running" in capsys.readouterr().out


def test_a_stale_state_file_is_ignored(state_dir):
    """A sandbox killed with -9 leaves its file: a dead pid is no sandbox."""
    (state_dir / shared.STATE_FILE).write_text(
        json.dumps({"pid": 2**22 + 12345, "admin_url": "http://127.0.0.1:9", "endpoint_url": ""})
    )
    assert shared.running() is None
    (state_dir / shared.STATE_FILE).write_text("{not json")
    assert shared.running() is None
