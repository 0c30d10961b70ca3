"""For everything pytest runs here, tests/ and the runbooks that nbval executes.

The kernels that nbval starts for runbooks/*.ipynb inherit this process's environment:

- No person is at their gates (bgkit.jupyter): like bgkit's papermill engine, say so, and the gate
  decides by the runbook's auto_promote instead of showing buttons that nobody would click.
- They attach to one sandbox per pytest process, as to `bgkit sandbox up`, instead of each
  starting its own (moto's import and servers: 20-30 s of a loaded machine per notebook). A
  runbook with no sandbox to attach to, the default for a user, is run by tests/test_html.py,
  tests/test_workflow.py and `make demo`.
"""

import os

import pytest

from bgkit.connect import SANDBOX_URL_ENV
from bgkit.jupyter import HEADLESS_ENV

os.environ[HEADLESS_ENV] = "1"

_sandbox = None  # started by the first notebook this process runs


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_runtest_setup(item):
    """nbval starts a notebook's kernel while it sets up the notebook's first cell."""
    if item.path.suffix != ".ipynb":
        yield
        return
    global _sandbox
    if _sandbox is None:
        from bgkit.sandbox import Sandbox

        _sandbox = Sandbox().start()
        _sandbox.admin_url = _sandbox.serve_admin()
    before = os.environ.get(SANDBOX_URL_ENV)
    os.environ[SANDBOX_URL_ENV] = _sandbox.admin_url
    try:
        yield
    finally:  # the kernel has the variable; tests that follow in this process do not
        if before is None:
            os.environ.pop(SANDBOX_URL_ENV, None)
        else:
            os.environ[SANDBOX_URL_ENV] = before


def pytest_sessionfinish(session):
    if _sandbox is not None:
        _sandbox.stop()
