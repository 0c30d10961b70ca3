"""`bgkit lab`: a release an engineer steps through in JupyterLab, recorded like `bgkit run`'s.

    bgkit lab RUNBOOK [-p NAME VALUE]... [--secret NAME] [--output PATH] [--port N]
                      [--no-browser] [--prepare-only]

1. `prepare_notebook`: the record notebook, named and parameterized as `bgkit run` does it (papermill's
   injected-parameters cell, `outputs/<UTC date>/<runbook>-<release>-<time>.ipynb`, never
   overwriting; secrets only from the environment). The template in runbooks/ is only read.
   `metadata["bgkit_lab"]` tells the kernel that this notebook is a record, and where its chain
   is (bgkit.jupyter seals it when the release ends). With an `s3://` output the notebook open
   in JupyterLab is a working copy in bgkit's state folder; the record goes to S3.
2. `serve`: JupyterLab on 127.0.0.1 (a free port, a random token), opened at that notebook. The
   kernels it starts know a person is there (BGKIT_HEADLESS=0: the gate waits for a click) and
   inherit the secrets. Its contents manager refuses to save over a sealed record
   (bgkit.lab_server). No news feed, update check or extension index: they would reach the
   internet.
"""

from __future__ import annotations

import os
import secrets
import socket
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

from . import audit
from .audit import LAB_KEY
from .jupyter import HEADLESS_ENV, default_who
from .lab_record import LAB_SERVER_ENV


def prepare_notebook(
    path: Path, parameters: dict[str, Any], out: str, chain_root: str, target: str
) -> Path:
    """Write the parameterized record notebook; returns the local notebook to open."""
    import nbformat
    import papermill

    local = Path(out)
    if audit.is_s3(out):
        from .sandbox.shared import state_dir

        local = state_dir() / "lab" / out[len("s3://") :].replace("/", "_")
        local.parent.mkdir(parents=True, exist_ok=True)
    papermill.execute_notebook(
        str(path), str(local), parameters=parameters, prepare_only=True, progress_bar=False
    )
    nb = nbformat.read(str(local), as_version=4)
    nb.metadata[LAB_KEY] = {
        "runbook": path.stem,
        "release": parameters["release"],
        "target": target,
        "prepared_at": datetime.now(UTC).isoformat(),
        "prepared_by": default_who(),
        # the chain's folder relative to the notebook, or its s3:// prefix; the record's URL
        # when it is not the notebook itself
        "chain": chain_root
        if audit.is_s3(chain_root)
        else os.path.relpath(Path(chain_root).resolve(), local.resolve().parent),
        "record": out if audit.is_s3(out) else None,
    }
    nbformat.write(nb, str(local))
    return local


def serve(notebook: Path, secrets_env: dict[str, str], *, port: int, open_browser: bool) -> None:
    """Replace this process by JupyterLab serving `notebook`; print its URL first."""
    notebook = notebook.resolve()
    cwd = Path.cwd().resolve()
    root = cwd if notebook.is_relative_to(cwd) else notebook.parent
    port = port or _free_port()
    token = secrets.token_urlsafe(24)  # in the environment: a command line is visible to all
    relative = notebook.relative_to(root).as_posix()
    url = f"http://127.0.0.1:{port}/lab/tree/{quote(relative)}?token={token}"
    print(f"bgkit: record notebook: {notebook}")
    print(f"bgkit: JupyterLab at {url}")
    print("bgkit: Run All; the gate waits for your click. Ctrl-C stops JupyterLab.", flush=True)
    env = {
        **os.environ,
        **secrets_env,
        "JUPYTER_TOKEN": token,
        HEADLESS_ENV: "0",  # a person is at these notebooks: the gate waits for them
        LAB_SERVER_ENV: "1",  # its contents manager never saves over a sealed record
    }
    command = [
        sys.executable,
        "-m",
        "jupyterlab",
        "--ServerApp.ip=127.0.0.1",
        f"--ServerApp.port={port}",
        "--ServerApp.port_retries=0",  # the port printed above, or none
        f"--ServerApp.root_dir={root}",
        f"--ServerApp.open_browser={open_browser}",
        # Jupyter refuses root unless told; containers and CI machines often are root
        f"--ServerApp.allow_root={hasattr(os, 'geteuid') and os.geteuid() == 0}",
        "--ServerApp.contents_manager_class=bgkit.lab_server.RecordsContentsManager",
        # a kernel shut down mid-release rolls back and seals its record before it exits
        "--KernelManager.shutdown_wait_time=120",
        "--LabApp.news_url=None",
        "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
        "--LabApp.extension_manager=readonly",
        relative,
    ]
    os.chdir(root)
    os.execve(sys.executable, command, env)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]
