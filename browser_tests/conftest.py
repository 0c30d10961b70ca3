"""Browser tests of `bgkit lab`: JupyterLab in headless Chromium, driven by Playwright.

Chromium is Debian's (Playwright cannot download its own browser here): tools/browser_check.py
finds it, or installs it with apt when root. Each test starts `bgkit lab` as a person does, in
a folder of its own, against one sandbox in this process (as `bgkit sandbox up` provides), and
stops JupyterLab and its kernels afterwards: nothing is left running.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from bgkit.connect import SANDBOX_URL_ENV
from bgkit.sandbox import Sandbox

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))
from browser_check import FLAGS, chromium  # noqa: E402

SHOTS = ROOT / "outputs" / "browser-check"  # screenshots a reviewer can look at (git-ignored)
# JupyterLab's own question about its news feed would cover the buttons: answered in advance
NO_NEWS = {"fetchNews": "false", "checkForUpdates": False}


@pytest.fixture(scope="session")
def browser_path() -> str:
    return chromium()


@pytest.fixture(scope="session")
def sandbox() -> Iterator[Sandbox]:
    box = Sandbox().start()
    box.admin_url = box.serve_admin()
    yield box
    box.stop()


class Lab:
    """A `bgkit lab` process: its record notebook, its URL, and its output so far."""

    def __init__(self, process: subprocess.Popen, folder: Path, log: Path) -> None:
        self.process, self.folder, self.log = process, folder, log
        text = self._wait_for("JupyterLab at ")
        self.url = re.search(r"JupyterLab at (\S+)", text).group(1)
        self.notebook = Path(re.search(r"record notebook: (\S+)", text).group(1))
        self.base, self.token = self.url.split("/lab/")[0], self.url.split("token=")[1]
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:  # the server answers once it has loaded
            try:
                self.api("status")
                return
            except OSError:
                time.sleep(0.3)
        raise AssertionError(f"JupyterLab did not answer: {self.log.read_text()[-2000:]}")

    def _wait_for(self, marker: str) -> str:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            text = self.log.read_text()
            if marker in text:
                return text
            if self.process.poll() is not None:
                raise AssertionError(f"bgkit lab ended: {text[-2000:]}")
            time.sleep(0.2)
        raise AssertionError(f"bgkit lab printed no {marker!r}: {self.log.read_text()[-2000:]}")

    def api(self, path: str, method: str = "GET") -> object:
        request = urllib.request.Request(
            f"{self.base}/api/{path}",
            method=method,
            headers={"Authorization": f"token {self.token}"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            body = response.read()
        return json.loads(body) if body else None

    def wait_for_kernel(self, timeout: float = 90) -> None:
        """Until the server has an idle kernel for this notebook (opened in the browser)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for session in self.api("sessions"):
                kernel = session.get("kernel") or {}
                if session["path"].endswith(self.notebook.name) and (
                    kernel.get("execution_state") == "idle"
                ):
                    return
            time.sleep(0.3)
        raise AssertionError(f"no idle kernel for {self.notebook.name} after {timeout:g} s")

    def record(self, timeout: float) -> dict:
        """The record the kernel sealed (metadata["bgkit"] of the notebook), once it has."""
        import nbformat

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            nb = nbformat.read(str(self.notebook), as_version=4)
            if "bgkit_chain" in nb.metadata:
                return dict(nb.metadata["bgkit"])
            time.sleep(0.5)
        raise AssertionError(f"no sealed record in {self.notebook} after {timeout:g} s")

    def stop(self) -> None:
        if self.process.poll() is None:
            try:
                self.api("shutdown", method="POST")  # shuts its kernels down, then itself
                self.process.wait(timeout=30)
            except (OSError, subprocess.TimeoutExpired):
                pass  # killed below
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()


@pytest.fixture
def lab(sandbox, tmp_path) -> Iterator:
    """start(*parameters) runs `bgkit lab alb_weighted -p ... --no-browser` in tmp_path."""
    processes: list[subprocess.Popen] = []
    labs: list[Lab] = []
    settings = Path(tempfile.mkdtemp(prefix="bgkit-lab-settings-"))
    notification = settings / "@jupyterlab" / "apputils-extension"
    notification.mkdir(parents=True)
    (notification / "notification.jupyterlab-settings").write_text(json.dumps(NO_NEWS))

    def start(*parameters: str) -> Lab:
        env = {
            **os.environ,
            SANDBOX_URL_ENV: sandbox.admin_url,
            "JUPYTERLAB_SETTINGS_DIR": str(settings),
            "JUPYTERLAB_WORKSPACES_DIR": str(settings / "workspaces"),
            "JUPYTER_RUNTIME_DIR": str(settings / "runtime"),
            "JUPYTERHUB_USER": "alice",  # who clicks, as the record names them
        }
        env.pop("BGKIT_HEADLESS", None)  # set by the root conftest.py; bgkit lab says "0" itself
        log = tmp_path / "lab.log"
        command = [str(Path(sys.executable).with_name("bgkit")), "lab", "alb_weighted",
                   "--no-browser", *parameters]  # fmt: skip
        process = subprocess.Popen(
            command, cwd=tmp_path, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
        processes.append(process)
        labs.append(Lab(process, tmp_path, log))
        return labs[-1]

    yield start
    for instance in labs:
        instance.stop()
    for process in processes:  # one that never answered
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    shutil.rmtree(settings, ignore_errors=True)


@pytest.fixture
def page(browser_path) -> Iterator:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        flags = [f for f in FLAGS if not f.startswith(("--headless", "--window-size"))]
        browser = playwright.chromium.launch(
            executable_path=browser_path, headless=True, args=flags
        )
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        yield page
        browser.close()
