"""An exception anywhere after the first change leaves traffic on blue, and the record says why.

The matrix: a failure injected at every call the release makes after its first weight change
(the pattern's writes and reads, CloudWatch, the clock), each in a release of its own with the
fake pattern and clock of test_release.py. Then a runbook whose own, non-bgkit cell fails after
the shift: papermill stops running cells, so `finish` never runs; the kernel's exit rolls back.
"""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from conftest import RUNBOOKS, STEADY, run_runbook
from test_release import FakePattern, healthy, make_release, run


class Boom(RuntimeError):
    pass


class Failing:
    """Wraps a callable: raises Boom on its `at`-th call (1-based), from the first change on."""

    def __init__(self, wrapped, at: int, armed) -> None:
        self.wrapped, self.at, self.armed, self.calls = wrapped, at, armed, 0

    def __call__(self, *args, **kwargs):
        if self.armed() and self.calls < self.at:  # once only: the rollback's calls get through
            self.calls += 1
            if self.calls == self.at:
                raise Boom(f"injected failure #{self.at}")
        return self.wrapped(*args, **kwargs)


# (what fails, how many of its calls after the first change to try): every call of each kind
# a healthy three-step release makes, up to the promotion.
POINTS = [
    ("pattern.set_split", 3),  # step 1 (AWS may have taken it), step 2, the promotion
    ("pattern.read_split", 4),
    ("cloudwatch.paginate", 6),
    ("clock.sleep", 6),
]


def _cases():
    for target, count in POINTS:
        for at in range(1, count + 1):
            yield pytest.param(target, at, id=f"{target}#{at}")


@pytest.mark.parametrize(("target", "at"), list(_cases()))
def test_a_failure_after_the_first_change_leaves_traffic_on_blue(target, at):
    pattern = FakePattern()
    release, _, clock = make_release(healthy, pattern=pattern)
    owner_name, method = target.split(".")
    owner = {
        "pattern": pattern,
        "cloudwatch": release.session.client("cloudwatch"),
        "clock": clock,
    }[owner_name]
    failing = Failing(getattr(owner, method), at, armed=lambda: release.mutated)
    setattr(owner, method, failing)
    with pytest.raises(Boom):
        run(release)
    assert failing.calls == at, "the failure was injected"
    record = release.record.to_dict()
    assert pattern.read_split() == {"blue": 100, "green": 0}
    assert record["outcome"] == "failed"
    assert "failed: Boom: injected failure" in record["reason"]
    rollback = [e for e in record["events"] if e["kind"] == "rollback"]
    assert rollback and rollback[-1]["message"].startswith("rolled back: blue 100%")
    assert pattern.writes[-1] == 0


def test_a_failing_cell_of_the_notebook_itself_still_ends_with_traffic_on_blue(
    shared_sandbox, tmp_path: Path
):
    """A cell bgkit does not own fails after the shift: papermill stops; the kernel's exit
    rolls the release back (bgkit.release registers it at the first change)."""
    nb = nbformat.read(str(RUNBOOKS / "alb_weighted.ipynb"), as_version=4)
    index = next(i for i, c in enumerate(nb.cells) if c.source.strip() == "release.shift()")
    nb.cells.insert(index + 1, nbformat.v4.new_code_cell('raise RuntimeError("a check of ours")'))
    copy = RUNBOOKS / f"alb_weighted-failing-{tmp_path.name}.ipynb"
    nbformat.write(nb, str(copy))
    try:
        run = run_runbook(tmp_path, copy.stem, bake_seconds=1, plan="50", min_requests=5, **STEADY)
    finally:
        copy.unlink()
    assert run.error is not None and run.error.ename == "RuntimeError"
    # No record in the notebook (its last cell never ran): the traffic and the lock say it all.
    record_cells = [c for c in run.nb.cells if "release.finish()" in c.source]
    assert record_cells and not record_cells[0].get("outputs")
    outputs = "".join(
        o.get("text", "") for c in run.nb.cells for o in c.get("outputs", []) if "text" in o
    )
    assert "step 1: green 50%" in outputs
    # the scenario's listener, as the release's lock event names it
    arn = outputs.split("] locked ", 1)[1].split()[0]
    elb = shared_sandbox.session().client("elbv2")
    action = elb.describe_listeners(ListenerArns=[arn])["Listeners"][0]["DefaultActions"][0]
    weights = [g["Weight"] for g in action["ForwardConfig"]["TargetGroups"]]
    assert weights == [100, 0]  # blue, green
