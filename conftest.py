"""For everything pytest runs here, tests/ and the runbooks that nbval executes.

The kernels that nbval starts for runbooks/*.ipynb inherit this process's environment. No person
is at their gates (bgkit.gate): like bgkit's papermill engine, say so, and the gate decides by
the runbook's auto_promote instead of showing buttons that nobody would click.
"""

import os

from bgkit.gate import HEADLESS_ENV

os.environ[HEADLESS_ENV] = "1"
