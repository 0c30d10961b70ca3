"""The engineer's side of a release: is a person at this notebook, and who.

Headless or interactive: interactive only if an IPython *kernel* runs this code (a notebook, not
a script or terminal IPython) and the environment does not say headless:

- BGKIT_HEADLESS set to "0": interactive (`bgkit lab` sets it for the kernels it serves, so a
  CI variable inherited by a person's JupyterLab changes nothing);
- BGKIT_HEADLESS set to anything else but "": headless (bgkit's papermill engine and the test
  suite set it for the kernels they start);
- CI="true" (GitHub Actions, GitLab CI and most CI services set it): headless.

A headless run never waits at a gate: nobody would click, and traffic must not stay half-shifted.
"""

from __future__ import annotations

import getpass
import os
import socket
import sys
from collections.abc import Mapping

HEADLESS_ENV = "BGKIT_HEADLESS"


def is_interactive(environ: Mapping[str, str] | None = None) -> bool:
    """True in a notebook kernel that no one said is headless (see the module's docstring)."""
    environ = os.environ if environ is None else environ
    headless = environ.get(HEADLESS_ENV, "")
    if headless not in ("", "0"):
        return False
    if headless == "" and environ.get("CI", "").lower() == "true":
        return False
    return _kernel_running()


def default_who() -> str:
    """The person at the notebook: JupyterHub's user, else the OS user; @ the host."""
    user = os.environ.get("JUPYTERHUB_USER")
    if not user:
        try:
            user = getpass.getuser()
        except Exception:  # no login name (a container's numeric user): still say where
            user = "unknown"
    return f"{user}@{socket.gethostname()}"


def _kernel_running() -> bool:
    if "ipykernel" not in sys.modules:  # never imported: no kernel runs this process
        return False
    from IPython import get_ipython

    shell = get_ipython()
    return shell is not None and getattr(shell, "kernel", None) is not None
