"""Plans: a release that stops after its read-only checks and says what it would change
(`dry_run`), and a release held to such a plan (`follow_plan`). See bgkit.planning.

A mixin of `Release`; it uses the release's pattern, traffic way, params, session and record.
"""

from __future__ import annotations

from typing import Any

from .. import planning
from ..errors import PreflightError
from ..judge import QUANTILES, alpha_shares, metric_label, slow_metric

# What no plan can know: it is measured when the release runs.
UNKNOWN = (
    "green's health under production traffic, and so every verdict: whether the release is "
    "promoted or rolled back, and from which point",
    "blue's latency before green gets traffic (the slow thresholds are set from it), and which "
    "tail thresholds its baseline has enough requests to judge",
    "the smoke test's answers",
    "holds for too little traffic (each adds a bake; more than max_holds in a row roll back)",
    "ids that AWS returns when a call is made (shown as <…>)",
)


class Planned:
    def _plan_release(self) -> None:
        """Say every change the release would make, per point, and each rollback's; then end
        `planned`. Reads only (the session refuses anything else)."""
        points = self.traffic.planned()
        plan = {
            "state": self._planned_state,
            "points": [point.as_dict() for point in points],
            "duration": self._planned_duration(),
            "judge": self._planned_judge(),
            "unknown": list(UNKNOWN),
            "bookkeeping": self._bookkeeping(),
        }
        self.record.planned = plan
        calls = planning.paths(plan)["promoted"]
        rollbacks = sum(1 for p in points if p.rollback)
        self._event(
            "plan",
            f"planned: {len(calls)} change(s) to promote over {len(points)} point(s), a "
            f"rollback from each of {rollbacks}; nothing was changed "
            f"({len(self.session.changes)} changing calls made)",
        )
        self._end("planned", "a plan for review: nothing was changed")

    def _check_plan(self, split: dict[str, int]) -> None:
        """A release that follows a plan: refused, before any change, unless its parameters and
        the state just read are the plan's; the record keeps the plan's hash."""
        where = self.params.follow_plan
        try:
            nb, plan_record = planning.read_plan(where, self.params.runbook)
        except ValueError as error:
            raise PreflightError(str(error), parameter="follow_plan") from None
        state = planning.state_of(self, split)
        drifted = planning.drift(plan_record, self.params.as_record(), state)
        if drifted:
            raise PreflightError(
                f"the release differs from its plan {where}, so it is refused and nothing was "
                f"changed: {'; '.join(drifted)}. Plan again (`bgkit plan`) and have it approved",
                parameter="follow_plan",
            )
        digest = planning.plan_hash(nb)
        self._plan_to_follow = plan_record["planned"]
        self.record.followed_plan = {
            "plan": where,
            "hash": digest,
            "planned_at": plan_record.get("started_at"),
            "planned_by": plan_record.get("operator"),
        }
        self._event(
            "plan",
            f"following the plan {where} (sha256 {digest[:16]}…, by {plan_record.get('operator')} "
            f"at {str(plan_record.get('started_at'))[:19]}): parameters, resources, traffic and "
            "versions as planned",
        )

    def _held_to_plan(self) -> None:
        """As a release that followed a plan ends: which of the plan's paths its changes took."""
        followed = self.record.followed_plan
        if self._plan_to_follow is None or followed is None or "followed" in followed:
            return  # no plan, or compared already (a record published twice)
        made = planning.made(self.session.changes)
        result = planning.compare(self._plan_to_follow, made, self.record.outcome)
        self.record.followed_plan.update(result)
        if result["followed"]:
            self._event(
                "plan",
                f"the release made exactly the plan's {result['calls']} change(s) for "
                f"'{result['path']}', in order",
            )
        else:
            self._event(
                "error",
                f"the release's {result['calls']} change(s) are none of the plan's paths; "
                "see followed_plan in the record",
            )

    # -- what the plan says besides its calls ---------------------------------------------

    def _planned_duration(self) -> dict[str, Any]:
        params, steps = self.params, self.plan.steps
        period, lag = params.metric_period_seconds, params.metric_lag_seconds
        effective = float(getattr(self.pattern, "effective_after_seconds", lambda: 0.0)())
        rows = []
        if steps:
            baseline = "blue's baseline before green's first request"
            note = "at most one bake: the last whole window of blue alone"
            rows.append({"what": baseline, "seconds": steps[0].bake_seconds, "note": note})
        for number, step in enumerate(steps, start=1):
            rows.append(
                {
                    "what": f"step {number}: green {step.green_percent}%",
                    "seconds": effective + step.bake_seconds + period + lag,
                    "note": (f"TTL {effective:g} s + " if effective else "")
                    + f"bake {step.bake_seconds:g} s + up to one metric period ({period} s) + "
                    f"metric lag {lag:g} s; each hold adds {step.bake_seconds:g} s (at most "
                    f"{params.max_holds})",
                }
            )
        schedule = getattr(self.traffic, "planned_schedule", None)
        rows += schedule() if schedule is not None else []
        expected = sum(r["seconds"] for r in rows)
        judged = [s.bake_seconds for s in steps] or [params.bake_seconds] * bool(schedule)
        holds = sum(judged) * params.max_holds
        return {"rows": rows, "expected_seconds": expected, "longest_seconds": expected + holds}

    def _planned_judge(self) -> dict[str, Any]:
        params = self.params
        every = alpha_shares(params.judge_alpha, list(QUANTILES))
        p90_only = alpha_shares(params.judge_alpha, ["p90"])
        return {
            "alpha": params.judge_alpha,
            "boundaries": {
                metric_label("errors"): 1 / every["errors"],
                metric_label(slow_metric("p90")): f"{1 / p90_only[slow_metric('p90')]:.4g} "
                f"(p90 alone) to {1 / every[slow_metric('p90')]:.4g} (with p99 and p99.9)",
                metric_label(slow_metric("p99")): f"{1 / every[slow_metric('p99')]:.4g}+ if "
                "blue's baseline has 1,000 requests",
                metric_label(slow_metric("p99.9")): f"{1 / every[slow_metric('p99.9')]:.4g}+ if "
                "it has 10,000",
            },
            "slow_margin_ms": params.slow_margin_ms,
            "min_requests": params.min_requests,
            "max_holds": params.max_holds,
            "pass_margin": params.pass_margin,
            "error_rate_slo": params.error_rate_slo,
            "p99_slo_ms": params.p99_slo_ms,
            "auto_promote": params.auto_promote,
        }

    def _bookkeeping(self) -> list[str]:
        lines = []
        if self.params.lock_table:
            lines.append(
                f"the lock: DynamoDB PutItem, UpdateItem and DeleteItem on table "
                f"{self.params.lock_table} (one item for {self.pattern.target_id()})"
            )
        if self.params.notify_topic_arn:
            lines.append(f"messages: SNS Publish to {self.params.notify_topic_arn}")
        if self.params.apply_migrations and self.params.migrations:
            lines.append("the schema: green's migrations applied to database_url before deploy")
        return lines
