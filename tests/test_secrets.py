"""Secret parameters (smoke_token): sent where they are meant to go, and nowhere else.

Each test uses a fresh random value and searches everything a run leaves behind for it: the
executed notebook's bytes (every cell, output and metadata), the command's stdout and stderr with
papermill, nbclient and jupyter_client logging at DEBUG, every file written in the run's folder
and the state folder, and the text of each refusal.
"""

from __future__ import annotations

import io
import os
import secrets
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import nbformat
import papermill
import pytest
from conftest import run_runbook
from nbformat.v4 import new_code_cell, new_notebook
from papermill.exceptions import PapermillExecutionError

import bgkit
from bgkit import ParameterError, cli
from bgkit.connect import SANDBOX_URL_ENV
from bgkit.engine import redact_secret_parameters, scrub
from bgkit.params import REDACTED, ReleaseParams, is_secret, secret_env, validate
from bgkit.record import Record
from bgkit.release.smoke import probe as _probe
from bgkit.sandbox.shared import STATE_DIR_ENV

ENV = secret_env("smoke_token")
COMMAND = (
    "import logging, sys; logging.basicConfig(level=logging.DEBUG); "
    "from bgkit.cli import main; sys.exit(main(sys.argv[1:]))"
)


def a_secret() -> str:
    return "s3cr3t-" + secrets.token_hex(16)


class Recorder(BaseHTTPRequestHandler):
    """Answers 200, or a redirect to `redirect_to`, and keeps each request's Authorization."""

    seen: list[str | None]
    redirect_to: str | None = None

    def do_GET(self) -> None:
        self.seen.append(self.headers.get("Authorization"))
        if self.redirect_to:
            self.send_response(302)
            self.send_header("Location", self.redirect_to)
        else:
            self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, format: str, *args: object) -> None:
        pass


def serve(redirect_to: str | None = None) -> tuple[ThreadingHTTPServer, list[str | None]]:
    seen: list[str | None] = []
    handler = type("Handler", (Recorder,), {"seen": seen, "redirect_to": redirect_to})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, name="test-recorder", daemon=True).start()
    return server, seen


@pytest.fixture
def recorder() -> Iterator[tuple[str, list[str | None]]]:
    server, seen = serve()
    yield f"http://127.0.0.1:{server.server_port}/health", seen
    server.shutdown()
    server.server_close()


def files_containing(folder: Path, value: str) -> list[Path]:
    needle = value.encode()
    return [p for p in folder.rglob("*") if p.is_file() and needle in p.read_bytes()]


# --- what is a secret, and where its value comes from -------------------------------------------


def test_secret_names_by_pattern():
    assert all(
        is_secret(n)
        for n in ("smoke_token", "webhook_url", "db_password", "api_key", "apikey", "CREDENTIAL")
    )
    assert not any(is_secret(n) for n in ("smoke_url", "plan", "lock_table", "release"))
    assert secret_env("smoke_token") == "BGKIT_SECRET_SMOKE_TOKEN"


def test_the_value_comes_from_the_environment_and_no_repr_shows_it(monkeypatch):
    value = a_secret()
    monkeypatch.setenv(ENV, value)
    params = bgkit.validate_parameters("alb_weighted", {"smoke_token": ""})
    assert params.smoke_token == value
    for shown in (repr(params), str(params), str(params.as_record())):
        assert value not in shown
    assert params.as_record()["smoke_token"] == REDACTED
    assert "smoke_token='***redacted***'" in repr(params)
    monkeypatch.delenv(ENV)
    assert bgkit.validate_parameters("alb_weighted", {}).smoke_token == ""


def test_a_secret_given_in_the_notebook_is_refused_without_repeating_it():
    value = a_secret()
    with pytest.raises(ParameterError) as refused:
        bgkit.validate_parameters("alb_weighted", {"smoke_token": value})
    message = str(refused.value)
    assert message.startswith("smoke_token: is a secret and cannot be a notebook parameter")
    assert "papermill writes notebook parameters into the executed notebook" in message
    assert f"--secret smoke_token` or the environment variable {ENV}" in message
    assert value not in message + repr(refused.value) + repr(refused.value.got)


@pytest.mark.parametrize(
    ("suffix", "says"),
    [
        ("\n", "has a control character"),
        (" x", "must be printable ASCII"),
        ("é", "must be printable"),
    ],
)
def test_a_token_unfit_for_a_header_is_refused_without_repeating_it(suffix, says):
    value = a_secret()
    with pytest.raises(ParameterError, match=f"^smoke_token: the value in {ENV} {says}") as refused:
        validate("alb_weighted", {}, {}, environ={ENV: value + suffix})
    assert value not in str(refused.value) + repr(refused.value)


def test_a_secret_pattern_parameter_refused_by_its_checker_is_not_repeated():
    import re

    from bgkit.params import regex_checker

    value = "not-a-hook-" + secrets.token_hex(8)
    checks = {"webhook_url": regex_checker(re.compile(r"https://\S+"), "must be an https:// URL")}
    with pytest.raises(ParameterError) as refused:
        validate("alb_weighted", {}, checks, environ={secret_env("webhook_url"): value})
    assert str(refused.value) == f"webhook_url: must be an https:// URL, got {REDACTED!r}"
    good = "https://hooks.example/" + secrets.token_hex(8)
    params = validate("alb_weighted", {}, checks, environ={secret_env("webhook_url"): good})
    assert params.resources["webhook_url"] == good
    assert good not in repr(params) and params.as_record()["webhook_url"] == REDACTED


def test_a_record_built_from_raw_parameters_still_redacts():
    value = a_secret()
    record = Record(
        runbook="alb_weighted",
        release="rel-1",
        target="sandbox",
        parameters={"smoke_token": value, "plan": "linear"},
        plan="linear",
        started_at=datetime(2026, 1, 1, tzinfo=UTC),
    )
    assert record.to_dict()["parameters"] == {"smoke_token": REDACTED, "plan": "linear"}


# --- the smoke probe sends it, and only to the smoke URL -----------------------------------------


def test_the_smoke_probe_sends_the_bearer_token(recorder):
    url, seen = recorder
    value = a_secret()
    result = _probe(url, value)
    assert result["status"] == 200 and result["error"] is None
    assert value not in repr(result)
    assert _probe(url)["status"] == 200
    assert seen == [f"Bearer {value}", None]


def test_the_token_does_not_follow_a_redirect(recorder):
    elsewhere, seen_elsewhere = recorder
    server, seen = serve(redirect_to=elsewhere)
    try:
        value = a_secret()
        assert _probe(f"http://127.0.0.1:{server.server_port}/", value)["status"] == 200
    finally:
        server.shutdown()
        server.server_close()
    assert seen == [f"Bearer {value}"] and seen_elsewhere == [None]


# --- bgkit run ---------------------------------------------------------------------------------


def test_bgkit_run_refuses_a_secret_given_with_p(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    value = a_secret()
    assert cli.main(["run", "alb_weighted", "-p", "smoke_token", value]) == cli.EXIT_USAGE
    out, err = capsys.readouterr()
    assert "-p smoke_token: smoke_token is a secret" in err
    assert f"use --secret smoke_token (it prompts, or reads {ENV})" in err
    assert value not in out + err
    assert not list(tmp_path.rglob("*"))  # nothing ran, nothing was written


def test_bgkit_run_secret_must_name_a_secret_parameter_of_the_runbook(
    tmp_path, monkeypatch, capsys
):
    monkeypatch.chdir(tmp_path)
    assert cli.main(["run", "alb_weighted", "--secret", "plan"]) == cli.EXIT_USAGE
    assert "--secret plan: not a secret parameter" in capsys.readouterr().err
    # its smoke test invokes the function through the Lambda API: no token to send
    assert cli.main(["run", "lambda_codedeploy", "-s", "smoke_token"]) == cli.EXIT_USAGE
    assert "lambda_codedeploy has no parameter 'smoke_token'" in capsys.readouterr().err


def test_bgkit_run_secret_without_the_variable_or_a_terminal_is_refused(
    tmp_path, monkeypatch, capsys
):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(ENV, raising=False)
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))
    assert cli.main(["run", "alb_weighted", "--secret", "smoke_token"]) == cli.EXIT_USAGE
    assert f"--secret smoke_token: set {ENV} (no terminal to prompt on)" in capsys.readouterr().err


def test_bgkit_run_secret_asks_on_a_terminal_without_echo(monkeypatch, capsys):
    import getpass

    value = a_secret()
    monkeypatch.delenv(ENV, raising=False)
    monkeypatch.setattr(sys.stdin, "isatty", lambda: True, raising=False)
    monkeypatch.setattr(getpass, "getpass", lambda prompt: value)
    assert cli.read_secrets(cli.runbook_path("alb_weighted"), ["smoke_token"]) == {ENV: value}
    assert "bgkit: smoke_token from the prompt" in capsys.readouterr().err


def test_a_release_with_a_secret_uses_it_and_leaves_it_nowhere(sandbox, recorder, tmp_path):
    """End to end: `bgkit run` as its own process, the kernel attached to this test's sandbox,
    the smoke test pointed at a server that records the Authorization header."""
    url, seen = recorder
    value = a_secret()
    state_dir = Path(os.environ[STATE_DIR_ENV])  # conftest's: the suite's own
    env = {**os.environ, SANDBOX_URL_ENV: sandbox.admin_url, ENV: value}
    argv = ["run", "alb_weighted", "--secret", "smoke_token", "--output", "out/run.ipynb"]
    argv += ["-p", "smoke_url", url, "-p", "smoke_requests", "3", "-p", "plan", "all_at_once"]
    argv += ["-p", "bake_seconds", "1", "--log-output", "--quiet"]
    done = subprocess.run(
        [sys.executable, "-c", COMMAND, *argv],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == cli.EXIT_PROMOTED, done.stdout + done.stderr[-3000:]
    assert seen == [f"Bearer {value}"] * 3  # the kernel had it, and the smoke test sent it
    assert f"bgkit: smoke_token from {ENV}" in done.stderr
    assert "Executing Cell" in done.stderr  # the DEBUG logging searched below is there

    out = tmp_path / "out" / "run.ipynb"
    nb = nbformat.read(str(out), as_version=4)
    assert nb.metadata["bgkit"]["parameters"]["smoke_token"] == REDACTED
    assert "smoke_token" not in nb.metadata["papermill"]["parameters"]
    assert value not in done.stdout and value not in done.stderr
    assert files_containing(tmp_path, value) == []
    assert files_containing(state_dir, value) == []


# --- plain papermill ---------------------------------------------------------------------------


def test_plain_papermill_with_a_secret_parameter_is_refused_and_the_value_redacted(tmp_path):
    value = a_secret()
    run = run_runbook(tmp_path, "alb_weighted", smoke_token=value)
    assert run.error is not None and run.error.ename == "ParameterError"
    assert run.error.evalue.startswith("smoke_token: is a secret")
    assert "bgkit's papermill engine replaced it with ***redacted***" in run.error.evalue
    assert value not in str(run.error) + "".join(run.error.traceback)
    assert run.nb.metadata["papermill"]["parameters"]["smoke_token"] == REDACTED
    assert files_containing(tmp_path, value) == []


def test_papermill_without_bgkit_engine_keeps_the_value_but_the_refusal_does_not_repeat_it(
    tmp_path,
):
    """The documented hole: nbclient's engine writes the value; bgkit refuses to run with it."""
    value = a_secret()
    run = run_runbook(tmp_path, "alb_weighted", engine="nbclient", smoke_token=value)
    assert run.error is not None and run.error.ename == "ParameterError"
    assert "that notebook now holds it: delete the notebook and rotate the secret" in (
        run.error.evalue
    )
    assert value not in str(run.error) + "".join(run.error.traceback)
    assert files_containing(tmp_path, value) == [run.path]


# --- the engine's safety net ---------------------------------------------------------------------


def test_the_engine_redacts_injected_secret_parameters():
    value = a_secret()
    nb = new_notebook(cells=[new_code_cell("smoke_token = ''", metadata={"tags": ["parameters"]})])
    nb.metadata.update(kernelspec={"name": "python3", "language": "python"}, papermill={})
    nb = papermill.parameterize.parameterize_notebook(nb, {"smoke_token": value, "plan": "x"})
    assert redact_secret_parameters(nb, "python3") == [value]
    assert value not in nbformat.writes(nb)
    assert (
        f'smoke_token = "{REDACTED}"' in nb.cells[1].source and 'plan = "x"' in nb.cells[1].source
    )


def test_the_engine_scrubs_secret_values_a_cell_prints_or_raises(tmp_path, monkeypatch):
    value = a_secret()
    monkeypatch.setenv(secret_env("demo_token"), value)
    nb = new_notebook(
        cells=[
            new_code_cell("import os\nprint(os.environ['BGKIT_SECRET_DEMO_TOKEN'])"),
            new_code_cell("raise ValueError(os.environ['BGKIT_SECRET_DEMO_TOKEN'])"),
        ]
    )
    nb.metadata["kernelspec"] = {"name": "python3", "language": "python", "display_name": "P"}
    source, out = tmp_path / "in.ipynb", tmp_path / "out.ipynb"
    nbformat.write(nb, str(source))
    with pytest.raises(PapermillExecutionError) as failed:
        papermill.execute_notebook(str(source), str(out), engine_name="bgkit", progress_bar=False)
    assert value not in str(failed.value)
    printed = next(c for c in nbformat.read(str(out), as_version=4).cells if "print" in c.source)
    assert printed.outputs[0]["text"] == REDACTED + "\n"
    assert files_containing(tmp_path, value) == []
    assert scrub({"a": ["x" + value], "b": "short"}, [value, "short"]) == {
        "a": ["x" + REDACTED],
        "b": "short",  # under 8 characters: not searched for
    }


def test_release_params_repr_lists_every_field():
    shown = repr(ReleaseParams(runbook="alb_weighted", smoke_token="x" * 20))
    assert shown.startswith("ReleaseParams(runbook='alb_weighted', target='sandbox'")
    assert "x" * 20 not in shown and "resources={}" in shown
