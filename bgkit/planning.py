"""Plans a reviewer approves: every change a release would make, before it makes any.

A pattern builds each AWS call that changes something as a `Change` (the client, the API
operation, its parameters, and what it means in words) and sends that (`Change.send`). A plan
asks the same builders for the same `Change`s and lists them instead: the calls of the plan and
the calls of the release come from one piece of code. The release's traffic way
(bgkit.release.traffic, .managed) says in which order, as `Point`s:

    deploy green ─► step 1 ─► ... ─► step n ─► promote ─► (after the promotion)
        each point: the calls that reach it, and the calls a rollback from there makes

A plan's session only reads (`AwsSession.read_only`): a call that would change something is
refused before it is sent, whichever code makes it. A release run with the plan
(`follow_plan`) is refused before any change if its parameters or the state read at preflight
differ from the plan's (`drift`), and its record says which of the plan's paths its changes
followed (`compare`), from the session's own log of the calls it made.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from botocore import xform_name

from .aws import iam_action, params_digest, resource_of

# Calls on bgkit's own bookkeeping, not on the target: the lock item (DynamoDB), messages
# (SNS), the CodeDeploy hook relay's parameter (SSM), the smoke test's invocations (Lambda).
BOOKKEEPING = ("dynamodb:", "sns:", "ssm:", "lambda:InvokeFunction")
# Parameters that may differ between a plan and its release (the rest must match).
NOT_COMPARED = frozenset({"release", "dry_run", "follow_plan"})
LATER = "<"  # a value a plan cannot know yet (an id AWS returns), shown as <…>


@dataclass(frozen=True)
class Change:
    """One AWS call that changes something: built once, then sent (a release) or listed (a plan)."""

    client: Any = field(repr=False, compare=False)
    operation: str  # the API's operation, as CloudTrail names it: "ModifyListener"
    params: Mapping[str, Any] = field(compare=False)
    means: str  # what it does, in words: "weights blue 75 / green 25"

    def send(self) -> dict[str, Any]:
        return getattr(self.client, xform_name(self.operation))(**self.params)

    def row(self) -> dict[str, str]:
        model = self.client.meta.service_model.operation_model(self.operation)
        return {
            "call": f"{self.client.meta.service_model.service_id} {self.operation}",
            "IAM action": iam_action(model),
            "resource": resource_of(dict(self.params)),
            "what": self.means,
            # what the call sends, hashed; "" where it holds a value only AWS will know
            "digest": ""
            if LATER in json.dumps(self.params, default=str)
            else params_digest(self.params, model),
        }


@dataclass(frozen=True)
class Wait:
    """A wait between changes, on AWS (instances in service, a deployment at a stage)."""

    means: str

    def row(self) -> dict[str, str]:
        return {"call": "wait", "IAM action": "", "resource": "", "what": self.means, "digest": ""}


@dataclass(frozen=True)
class ByService:
    """What the service does on its own (a managed deployment's shift), and when."""

    service: str
    means: str

    def row(self) -> dict[str, str]:
        call = f"{self.service}, by itself"
        return {"call": call, "IAM action": "", "resource": "", "what": self.means, "digest": ""}


Item = Change | Wait | ByService


def later(what: str) -> str:
    """A value that AWS returns only when the release runs, e.g. `later("CreateDeployment's id")`."""
    return f"{LATER}{what}>"


@dataclass(frozen=True)
class Point:
    """A point of the release: the calls that reach it, and those of a rollback from it."""

    name: str
    calls: Sequence[Item]
    rollback: Sequence[Item] = ()
    note: str = ""  # e.g. "no rollback: the release has ended promoted"

    def as_dict(self) -> dict[str, Any]:
        return {
            "point": self.name,
            "calls": [item.row() for item in self.calls],
            "rollback": [item.row() for item in self.rollback],
            "note": self.note,
        }


def send_all(items: Iterable[Item], wait: Any = None) -> list[dict[str, Any]]:
    """Send each change in order; `wait(item)` for each Wait (a pattern's own waiting)."""
    answers = []
    for item in items:
        if isinstance(item, Change):
            answers.append(item.send())
        elif isinstance(item, Wait) and wait is not None:
            wait(item)
    return answers


# -- the paths a release may take, and which one it took ---------------------------------


def _calls(rows: Iterable[dict[str, str]]) -> list[dict[str, str]]:
    return [r for r in rows if r["IAM action"]]


def paths(plan: Mapping[str, Any]) -> dict[str, list[dict[str, str]]]:
    """Each way the release may end, with the calls it makes: promoted (every point), rolled
    back from each point (the points up to it, then its rollback), and before any change."""
    points = plan["points"]
    found: dict[str, list[dict[str, str]]] = {"rolled back before any change": []}
    so_far: list[dict[str, str]] = []
    for point in points:
        so_far = so_far + _calls(point["calls"])
        if point["rollback"]:
            found[f"rolled back from {point['point']}"] = so_far + _calls(point["rollback"])
    found["promoted"] = so_far
    return found


def made(changes: Iterable[Mapping[str, Any]]) -> list[dict[str, str]]:
    """The calls a release made to its target (its session's log), bookkeeping left out."""
    return [
        {"IAM action": c["action"], "resource": c["resource"], "digest": c["digest"]}
        for c in changes
        if not c["action"].startswith(BOOKKEEPING)
    ]


def _same(planned: dict[str, str], call: Mapping[str, str]) -> bool:
    if planned["IAM action"] != call["IAM action"]:
        return False
    if not planned["digest"]:  # it sends a value the plan could not know (an id AWS returns)
        return LATER in planned["resource"] or planned["resource"] == call["resource"]
    return planned["digest"] == call["digest"]


def compare(
    plan: Mapping[str, Any], calls: Sequence[Mapping[str, str]], outcome: str | None = None
) -> dict[str, Any]:
    """Which of the plan's paths the release's calls are, exactly and in order (None: none);
    with `outcome`, only the paths that end that way."""
    for name, expected in paths(plan).items():
        if outcome and (name == "promoted") != (outcome == "promoted"):
            continue
        if len(expected) == len(calls) and all(map(_same, expected, calls)):
            return {"path": name, "followed": True, "calls": len(calls)}
    return {"path": None, "followed": False, "calls": len(calls), "made": list(calls)}


# -- drift: the world or the parameters changed since the plan ---------------------------


def state_of(release: Any, split: Mapping[str, int]) -> dict[str, Any]:
    """What the plan read and a release following it must find again."""
    versions = getattr(release.pattern, "versions", None)
    return {
        "target_id": release.pattern.target_id(),
        "resources": dict(release.params.resources),
        "split": dict(split),
        "versions": versions() if versions is not None else {},
    }


def drift(
    plan_record: Mapping[str, Any], parameters: Mapping[str, Any], state: Mapping[str, Any]
) -> list[str]:
    """What differs between the plan and this release, in words (empty: nothing)."""
    found = []
    planned_parameters = plan_record.get("parameters") or {}
    for name in sorted(set(planned_parameters) | set(parameters)):
        if name in NOT_COMPARED:
            continue
        was, now = planned_parameters.get(name), parameters.get(name)
        if was != now:
            found.append(f"parameter {name}: the plan has {was!r}, this release {now!r}")
    planned_state = (plan_record.get("planned") or {}).get("state") or {}
    for key, what in (
        ("target_id", "target"),
        ("resources", "resources"),
        ("split", "traffic"),
        ("versions", "versions"),
    ):
        was, now = planned_state.get(key), state.get(key)
        if was == now:
            continue
        if isinstance(was, dict) and isinstance(now, dict):
            for name in sorted(set(was) | set(now)):
                if was.get(name) != now.get(name):
                    found.append(
                        f"{what} {name}: the plan read {_text(was.get(name))}, "
                        f"now {_text(now.get(name))}"
                    )
        else:
            found.append(f"{what}: the plan read {_text(was)}, now {_text(now)}")
    return found


def _text(value: Any) -> str:
    return "nothing" if value is None else json.dumps(value, sort_keys=True, default=str)


def read_plan(where: str, runbook: str) -> tuple[Any, dict[str, Any]]:
    """The plan record at `where` (a path or s3:// URL) and its record, for `runbook`; raises
    ValueError saying why it is not one (unreadable, not a plan, another runbook's)."""
    from . import audit
    from .record import from_notebook

    try:
        nb = audit.read(where)
    except Exception as error:
        raise ValueError(f"cannot read {where} ({type(error).__name__}: {error})") from None
    record = from_notebook(nb) or {}
    if record.get("outcome") != "planned" or not record.get("planned"):
        raise ValueError(
            f"{where} is not a plan (its outcome is {record.get('outcome') or 'missing'}); "
            "make one with `bgkit plan`"
        )
    if record.get("runbook") != runbook:
        raise ValueError(f"{where} is a plan for {record.get('runbook')}, not {runbook}")
    return nb, record


def plan_hash(nb: Any) -> str:
    """The plan record's hash in its audit chain (bgkit.audit), else of its content."""
    from . import audit

    chain = audit.chain_of(nb)
    return chain["hash"] if chain and chain.get("hash") else audit.content_hash(nb)
