"""Where a release is: the states its steps move it through.

    new ─► ready ─► deployed ─► smoked ─► shifting ─► shifted ─► promoted
     (preflight) (deploy)  (smoke test)   (shift)           (promote)
                                      └──────────────────────────────► rolled_back · failed

A step runs only from the state before it; called again (a re-run notebook cell), it says so
and does nothing. The last three states are terminal: the release has ended and the record says
how. A plan (`dry_run`) ends `planned` where deploy would begin (bgkit.release.planned).
"""

from __future__ import annotations

TERMINAL = ("promoted", "rolled_back", "failed", "planned")
MANAGED_WAIT_SECONDS = 900.0  # longest wait for AWS to apply a change, or a deployment to move on
