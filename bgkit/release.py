"""The release loop, the same for every pattern.

    preflight ─► smoke test ─► for each plan step: shift ─► bake ─► judge
                                   ROLLBACK ─► roll back, stop
                                   NO_DATA  ─► hold another window (never a pass)
              ─► promote ─► finish: read back the final state, record, plot

Each step method is safe to call again (a notebook cell re-run): it does nothing once the
release has ended. Any exception after the first traffic change returns all traffic to
blue before it propagates, and the record says why.
"""

from __future__ import annotations

import contextlib
import math
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

from . import metrics as _metrics
from . import patterns
from .aws import AwsSession
from .clock import Clock, SystemClock
from .errors import BgkitError, RollbackFailed
from .gate import Decision, HealthGate
from .params import ReleaseParams
from .record import RECORD_MIME, Record

_TERMINAL = ("promoted", "rolled_back", "failed")


class Release:
    def __init__(
        self,
        params: ReleaseParams,
        session: AwsSession,
        *,
        clock: Clock | None = None,
        pattern: Any = None,
        display: Any = None,
    ) -> None:
        self.params = params
        self.session = session
        self.clock = clock or SystemClock()
        self.pattern = pattern or patterns.get(params.runbook)(session, params.resources)
        self.plan = params.traffic_plan
        self.gate = HealthGate(
            min_requests=params.min_requests,
            max_error_rate_increase=params.max_error_rate_increase,
            max_p99_increase=params.max_p99_increase,
            p99_floor_ms=params.p99_floor_ms,
        )
        self._display = display or _ipython_display
        self.state = "new"
        self.split: dict[str, int] | None = None
        self.mutated = False
        self.record = Record(
            runbook=params.runbook,
            release=params.release,
            target=params.target,
            parameters=params.as_record(),
            plan=self.plan.describe(),
            started_at=self.clock.now(),
        )

    # -- steps --------------------------------------------------------------------------

    def preflight(self) -> dict[str, int]:
        """Read the current state; refuse (changing nothing) unless blue has all traffic."""
        if self.state != "new":
            return self._note(f"preflight already done (state: {self.state})")
        self.record.operator = self.session.caller_arn()
        self.record.target_id = self.pattern.target_id()
        split = self.pattern.preflight()
        self.split = split
        if split.get("green", 0) != 0 or split.get("blue", 0) != 100:
            from .errors import PreflightError

            raise PreflightError(
                f"traffic is {split}, not 100% blue: another release may be in flight or was left "
                "half-shifted; roll it back before starting a new one"
            )
        self._event(
            "preflight",
            f"{self.pattern.title}: all traffic on blue; operator {self.record.operator}",
        )
        self.state = "ready"
        return split

    def smoke_test(self) -> dict[str, Any]:
        """Requests to green on the test route, before green gets any real traffic."""
        if self.state != "ready":
            return self._note(f"smoke test not run (state: {self.state})")
        url, count = self.params.smoke_url, self.params.smoke_requests
        if not url:
            self.record.smoke = {"skipped": True, "reason": "no smoke_url given"}
            self._event("smoke", "smoke test skipped: no smoke_url given")
            self.state = "smoked"
            return self.record.smoke
        results = [_probe(url) for _ in range(count)]
        failures = [r for r in results if not 200 <= r["status"] < 300]
        latencies = sorted(r["ms"] for r in results)
        self.record.smoke = {
            "url": url,
            "requests": count,
            "failures": len(failures),
            "statuses": sorted({r["status"] for r in results}),
            "p50_ms": round(latencies[len(latencies) // 2], 2),
            "max_ms": round(latencies[-1], 2),
            "errors": sorted({r["error"] for r in failures if r["error"]})[:3],
        }
        if failures:
            reason = f"smoke test failed: {len(failures)}/{count} requests to {url} were not 2xx"
            self._event("smoke", reason)
            self._end("rolled_back", reason + "; green never received production traffic")
        else:
            self._event(
                "smoke", f"smoke test passed: {count}/{count} requests to green returned 2xx"
            )
            self.state = "smoked"
        return self.record.smoke

    def shift(self) -> str:
        """Step through the plan, judging green against blue after each bake."""
        if self.state != "smoked":
            return self._note(f"shift not run (state: {self.state})")
        if not self.plan.steps:
            self._event(
                "shift", "all_at_once plan: no canary steps, promoting after the smoke test"
            )
            self.state = "shifted"
            return self.state
        self.state = "shifting"
        with self._guard("shift"):
            source = self.pattern.metric_source()
            for number, step in enumerate(self.plan.steps, start=1):
                self.split = self.pattern.set_split(step.green_percent)
                self.mutated = True
                shifted_at = self.clock.now()
                self._event(
                    "shift",
                    f"step {number}: green {step.green_percent}%",
                    step=number,
                    green_percent=step.green_percent,
                    split=self.split,
                )
                window = int(step.bake_seconds)  # validated to be a CloudWatch period
                end = _ceil_seconds(
                    shifted_at + timedelta(seconds=window), self.params.metric_period_seconds
                )
                for hold in range(self.params.max_holds + 1):
                    self._await_metrics(source, end)
                    stats = _metrics.read_window(
                        self.session, source, end - timedelta(seconds=window), end
                    )
                    verdict = self.gate.evaluate(stats["blue"], stats["green"])
                    self.record.verdicts.append(
                        {
                            "step": number,
                            "green_percent": step.green_percent,
                            "hold": hold,
                            "at": self.clock.now().isoformat(),
                            **verdict.as_dict(),
                        }
                    )
                    self._event(
                        "verdict",
                        f"step {number} ({step.green_percent}%): {verdict.decision}: "
                        f"{verdict.reason}",
                        step=number,
                        decision=str(verdict.decision),
                    )
                    if verdict.decision is Decision.PASS:
                        break
                    if verdict.decision is Decision.ROLLBACK:
                        self.rollback(f"step {number} at {step.green_percent}%: {verdict.reason}")
                        return self.state
                    end += timedelta(seconds=window)  # NO_DATA: hold for one more window
                else:
                    self.rollback(
                        f"step {number} at {step.green_percent}%: no verdict after "
                        f"{self.params.max_holds} holds (too little traffic to judge)"
                    )
                    return self.state
        self.state = "shifted"
        return self.state

    def promote(self) -> str:
        """Send all traffic to green once every step has passed."""
        if self.state != "shifted":
            return self._note(f"promote not run (state: {self.state})")
        with self._guard("promote"):
            self.split = self.pattern.set_split(100)
            self.mutated = True
            reason = (
                f"all {len(self.plan.steps)} steps passed the health gate"
                if self.plan.steps
                else "smoke test passed (all_at_once: no canary analysis)"
            )
            self._event(
                "promote", f"promoted: green 100% ({reason})", green_percent=100, split=self.split
            )
            self._end("promoted", reason)
        return self.state

    def rollback(self, reason: str) -> str:
        """Return all traffic to blue. Raises RollbackFailed, naming where traffic is, if it cannot."""
        try:
            self.split = self.pattern.set_split(0)
        except Exception as error:
            where = self._where_is_traffic()
            raise RollbackFailed(
                f"rollback of release {self.params.release} failed ({type(error).__name__}: {error}); "
                f"re-run the runbook's rollback step or set the weights by hand on {self.pattern.target_id()}",
                split=where,
            ) from error
        self._event(
            "rollback", f"rolled back: blue 100% ({reason})", green_percent=0, split=self.split
        )
        self._end("rolled_back", reason)
        return self.state

    def finish(self, *, plot: bool = True) -> dict[str, Any]:
        """Read back the final state, then show and emit the record."""
        if self.state not in _TERMINAL:
            if self.mutated:
                self.rollback(f"finished in state {self.state!r} without a promotion")
            else:
                self._end(
                    "rolled_back", f"finished in state {self.state!r} before any traffic change"
                )
        return self._publish(plot=plot)

    # -- internals ----------------------------------------------------------------------

    @contextlib.contextmanager
    def _guard(self, step: str) -> Iterator[None]:
        try:
            yield
        except BaseException as error:
            reason = f"{step} failed: {type(error).__name__}: {error}"
            if self.mutated and self.state not in _TERMINAL:
                try:
                    self.rollback(reason)
                except RollbackFailed as failed:
                    self._event("error", str(failed))
            self._end("failed", reason)
            self._publish(plot=not isinstance(error, KeyboardInterrupt))
            raise

    def _end(self, outcome: str, reason: str) -> None:
        self.state = outcome
        self.record.outcome = outcome
        self.record.reason = reason
        self.record.finished_at = self.clock.now()

    def _where_is_traffic(self) -> dict[str, int] | None:
        try:
            return self.pattern.read_split()
        except Exception as error:  # the record must still say we do not know
            self._event("error", f"could not read the split back: {type(error).__name__}: {error}")
            return None

    def _publish(self, *, plot: bool) -> dict[str, Any]:
        record = self.record
        try:
            record.final_split = self.pattern.read_split()
            record.final_state = self.pattern.describe()
        except Exception as error:
            self._event(
                "error", f"could not read the final state back: {type(error).__name__}: {error}"
            )
        figure = None
        if plot and record.events:
            try:
                figure = self._figure()
            except BgkitError as error:
                self._event("error", f"no plot: {error}")
        self._show(record, figure)
        return record.to_dict()

    def _figure(self):
        from . import plots

        first = datetime.fromisoformat(self.record.events[0]["at"])
        end = _ceil_seconds(self.clock.now(), self.params.metric_period_seconds)
        self._await_metrics(self.pattern.metric_source(), end)
        series = _metrics.read_series(
            self.session,
            self.pattern.metric_source(),
            first - timedelta(seconds=5),
            end,
            self.params.metric_period_seconds,
        )
        title = f"{self.params.runbook} · {self.params.release} · {self.record.outcome}"
        return plots.release_figure(series, self.record.events, title)

    def _show(self, record: Record, figure: Any) -> None:
        import pandas as pd

        from .record import to_json

        self._display.markdown(record.summary_markdown())
        timeline = pd.DataFrame(
            [
                {"at (UTC)": e["at"][11:23], "kind": e["kind"], "what": e["message"]}
                for e in record.events
            ]
        )
        self._display.markdown("### Timeline")
        self._display.table(timeline)
        if record.verdicts:
            self._display.markdown("### Verdicts (CloudWatch, per bake window)")
            self._display.table(pd.DataFrame([_verdict_row(v) for v in record.verdicts]))
        if figure is not None:
            self._display.markdown("### Traffic, latency and errors (measured, from CloudWatch)")
            self._display.figure(figure)
        self._display.record(record.to_dict(), to_json)

    def _event(self, kind: str, message: str, **data: Any) -> None:
        self.record.add_event(self.clock.now(), kind, message, **data)
        self._display.text(f"[{self.clock.now():%H:%M:%S}] {message}")

    def _note(self, message: str) -> str:
        self._display.text(message)
        return self.state

    def _await_metrics(self, source: _metrics.MetricSource, end: datetime) -> None:
        """Wait until CloudWatch has the last period before `end`, or metric_lag_seconds after it."""
        self._sleep_until(end)
        period = timedelta(seconds=self.params.metric_period_seconds)
        deadline = end + timedelta(seconds=self.params.metric_lag_seconds)
        while self.clock.now() < deadline:
            if _metrics.has_datapoint(self.session, source, end - period, end, period.seconds):
                return
            self.clock.sleep(min(0.25, (deadline - self.clock.now()).total_seconds()))

    def _sleep_until(self, when: datetime) -> None:
        remaining = (when - self.clock.now()).total_seconds()
        if remaining > 0:
            self.clock.sleep(remaining)


def _ceil_seconds(when: datetime, period: int) -> datetime:
    epoch = when.timestamp()
    return datetime.fromtimestamp(math.ceil(epoch / period) * period, tz=when.tzinfo)


def _verdict_row(v: dict[str, Any]) -> dict[str, Any]:
    b, g = v["blue"], v["green"]

    def pct(x: float | None) -> str:
        return "" if x is None else f"{100 * x:.2f}%"

    def ms(x: float | None) -> str:
        return "" if x is None else f"{x:.1f}"

    return {
        "step": v["step"],
        "green %": v["green_percent"],
        "window (UTC)": f"{b['start'][11:19]}–{b['end'][11:19]}",
        "decision": v["decision"],
        "blue req": b["requests"],
        "blue 5xx": pct(b["error_rate"]),
        "blue p99 ms": ms(b["p99_ms"]),
        "green req": g["requests"],
        "green 5xx": pct(g["error_rate"]),
        "green p99 ms": ms(g["p99_ms"]),
        "reason": v["reason"],
    }


def _probe(url: str) -> dict[str, Any]:
    started = time.perf_counter()
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            response.read()
            status, error = response.status, None
    except urllib.error.HTTPError as http_error:
        status, error = http_error.code, None
    except (urllib.error.URLError, OSError) as network_error:
        status, error = 0, f"{type(network_error).__name__}: {network_error}"
    return {"status": status, "ms": 1000 * (time.perf_counter() - started), "error": error}


class _IPythonDisplay:
    """Shows the record in the notebook. Tests pass their own object with the same methods."""

    def markdown(self, text: str) -> None:
        from IPython.display import Markdown, display

        display(Markdown(text))

    def text(self, text: str) -> None:
        print(text, flush=True)

    def table(self, frame: Any) -> None:
        from IPython.display import display

        display(frame.style.hide(axis="index") if len(frame) else frame)

    def figure(self, figure: Any) -> None:
        from IPython.display import Image, display

        from .plots import png

        display(Image(data=png(figure), format="png"))

    def record(self, record: dict[str, Any], to_json: Any) -> None:
        import json

        from IPython.display import display

        summary = f"bgkit record: release {record['release']} {record['outcome']}"
        display({RECORD_MIME: json.loads(to_json(record)), "text/plain": summary}, raw=True)


_ipython_display = _IPythonDisplay()
