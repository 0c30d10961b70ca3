"""`bgkit waves MANIFEST`: a wave release on this machine, one `bgkit run` process per target.

    wave 1: its targets at once (at most max_parallel) ─► every one promoted? ─► bake ─► wave 2 ...
            the first target rolled back or failed ─► the wave's other running targets are
            stopped (SIGINT: each puts blue back and records it, as Ctrl-C does), no later
            target starts, targets already promoted stay promoted (each passed its own judge)

This mirrors GitHub Actions' matrix with `fail-fast: true` (.github/workflows/waves.yml), which
runs the same per-target command (`Manifest.run_arguments`). Nothing here decides a promotion:
each target's release has its own judge, lock and record; this only starts them and stops them.

Ctrl-C (or SIGTERM) stops the waves the same way; a second Ctrl-C kills the targets still
running, whose releases' locks then say where traffic is and their next releases recover them.
Every run ends with the summary record (bgkit.waves.summary), whatever stopped it. If this
process is killed (-9), no later target starts and there is no summary; the targets already
running finish on their own (their own sessions, their output to files), each as its judge says.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .manifest import Manifest, ManifestError, Target

RECORD_LINE = re.compile(r"^record: (\S.*)$")
STOP_GRACE_SECONDS = 600.0  # a stopped target's rollback (a DNS TTL, a service's own rollback)


@dataclass
class Running:
    """One target's `bgkit run` process, and what it has said."""

    target: Target
    process: subprocess.Popen[str]
    started_at: datetime
    finished_at: datetime | None = None
    record: str = ""
    log: Path | None = None  # its output
    lines: list[str] = field(default_factory=list)
    reader: threading.Thread | None = None
    stopped: bool = False  # by the waves (another target's rollback, or Ctrl-C)


@dataclass
class Outcome:
    """What `run_waves` returns: every target that ran, the bakes, and why the waves stopped."""

    ran: list[Running]
    bakes: list[dict[str, Any]]
    started_at: datetime
    finished_at: datetime
    interrupted: str = ""  # "SIGINT", "SIGTERM": a person or a job stopped the waves
    failed_to_start: dict[str, str] = field(default_factory=dict)  # target name -> why
    failed_at: dict[str, datetime] = field(default_factory=dict)  # target name -> when
    error: str = ""  # the runner's own error, which stopped the waves


def credentials_for(target: Target, manifest: Manifest) -> dict[str, str]:
    """The environment a target's release runs with: the role of another account, assumed here
    (the standard credential chain signs the AssumeRole call), or nothing to add."""
    if not target.role_arn:
        return {}
    import boto3

    session_name = re.sub(r"[^\w+=,.@-]", "-", f"bgkit-{manifest.release_of(target)}")[:64]
    answer = boto3.client("sts", region_name=target.region or None).assume_role(
        RoleArn=target.role_arn, RoleSessionName=session_name
    )
    found = answer["Credentials"]
    return {
        "AWS_ACCESS_KEY_ID": found["AccessKeyId"],
        "AWS_SECRET_ACCESS_KEY": found["SecretAccessKey"],
        "AWS_SESSION_TOKEN": found["SessionToken"],
    }


def check_secrets(manifest: Manifest, environ: dict[str, str] | None = None) -> None:
    """Each secret the manifest lists is set, before any target starts."""
    from ..params import secret_env

    environ = os.environ if environ is None else environ  # type: ignore[assignment]
    for i, name in enumerate(manifest.secrets):
        if not environ.get(secret_env(name)):
            raise ManifestError(
                manifest.path,
                f"secrets[{i}]",
                f"{name}: set {secret_env(name)} (every target's release reads it from there)",
            )


class Waves:
    """The waves of one manifest. One thread decides (the main one: it starts and stops the
    targets, and acts on signals); a signal handler only notes the signal, and reader threads
    only copy each target's output."""

    def __init__(
        self,
        manifest: Manifest,
        output: str | None,
        *,
        say: Callable[[str], None] | None = None,
        command: list[str] | None = None,
        credentials: Callable[[Target, Manifest], dict[str, str]] = credentials_for,
    ) -> None:
        self.manifest = manifest
        self.output = output
        self.say = say or (lambda text: print(text, file=sys.stderr, flush=True))
        self.command = command or [sys.executable, "-m", "bgkit.cli"]
        self.credentials = credentials
        self.stopping = False
        self.interrupted = ""  # the first signal that stopped the waves: "SIGINT", ...
        self.error = ""  # an error of the runner itself that stopped the waves
        self._signals: list[int] = []  # noted by the handler, acted on by the main thread
        self._acted_on = 0
        self._stopped_at = 0.0
        self.running: list[Running] = []
        self.ran: list[Running] = []
        self.failed_to_start: dict[str, tuple[str, datetime]] = {}  # target -> why, when
        self._logs = tempfile.TemporaryDirectory(prefix="bgkit-waves-")

    # -- the waves -----------------------------------------------------------------------

    def run(self) -> Outcome:
        started = _now()
        bakes: list[dict[str, Any]] = []
        stops = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
        previous = {s: signal.signal(s, self._on_signal) for s in stops}
        try:
            for number, wave in enumerate(self.manifest.waves, 1):
                if self.stopping:
                    break
                if number > 1 and self.manifest.bake_between_waves_seconds > 0:
                    bakes.append(self._bake(number - 1))
                if self.stopping:
                    break
                names = ", ".join(t.name for t in wave)
                self.say(f"wave {number} of {len(self.manifest.waves)}: {names}")
                self._run_wave(wave)
                if not self.stopping:
                    self.say(f"wave {number}: every target promoted")
        except Exception as error:  # the runner's own (a process that cannot start, ...)
            self.error = f"{type(error).__name__}: {error}"[:400]
            self.say(f"waves stop: {self.error}")
            self._stop_running()
            while self.running:  # the targets still running end as their releases say
                self._wait_for_one()
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
            self._logs.cleanup()
        failed = {name: why for name, (why, _) in self.failed_to_start.items()}
        when = {name: at for name, (_, at) in self.failed_to_start.items()}
        return Outcome(self.ran, bakes, started, _now(), self.interrupted, failed, when,
                       self.error)  # fmt: skip

    def _bake(self, after_wave: int) -> dict[str, Any]:
        seconds = self.manifest.bake_between_waves_seconds
        self.say(f"baking {seconds:g} s after wave {after_wave} before wave {after_wave + 1}")
        bake = {"after_wave": after_wave, "started_at": _now().isoformat()}
        end = time.monotonic() + seconds
        while not self.stopping and time.monotonic() < end:
            time.sleep(min(0.2, max(0.0, end - time.monotonic())))
            self._act_on_signals()
        bake["finished_at"] = _now().isoformat()
        bake["completed"] = not self.stopping
        return bake

    def _run_wave(self, wave: list[Target]) -> None:
        waiting = list(wave)
        while waiting or self.running:
            while waiting and len(self.running) < self.manifest.max_parallel:
                self._act_on_signals()
                if self.stopping:
                    waiting.clear()
                    break
                self._start(waiting.pop(0))
            if self.running:
                self._wait_for_one()
            if self.stopping:
                waiting.clear()

    def _start(self, target: Target) -> None:
        arguments = self.manifest.run_arguments(target, self.output)
        try:
            credentials = self.credentials(target, self.manifest)
        except Exception as error:  # e.g. AssumeRole refused: this target fails, the waves stop
            why = (
                f"its role {target.role_arn} could not be assumed: {type(error).__name__}: {error}"
            )
            self.failed_to_start[target.name] = (why[:400], _now())
            self.say(f"[{target.name}] not started: {why[:400]}")
            self._stop_running()
            return
        self._act_on_signals()  # a Ctrl-C while the role was assumed: do not start it
        if self.stopping:
            return
        environment = {**os.environ, **credentials}
        # Its output goes to a file, not a pipe: if this process is killed (-9), a target's
        # release still ends as its judge says and writes its record, with nothing to break.
        log = Path(self._logs.name) / f"{target.name}.log"
        with log.open("wb") as output:
            process = subprocess.Popen(
                [*self.command, *arguments],
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                env=environment,
                # Its own session: a Ctrl-C at this terminal reaches the waves, which stop each
                # target once (bgkit run answers SIGINT even if it was started with it ignored).
                start_new_session=True,
            )
        running = Running(target, process, _now(), log=log)
        running.reader = threading.Thread(target=self._read, args=(running,), daemon=True)
        running.reader.start()
        self.running.append(running)
        self.ran.append(running)
        self.say(f"[{target.name}] started: bgkit {' '.join(arguments)}")
        self._act_on_signals()  # one that came while it started: it is stopped too

    def _read(self, running: Running) -> None:
        """Follow the target's output file, line by line, until its process has ended."""
        assert running.log is not None
        with running.log.open(encoding="utf-8", errors="replace") as output:
            pending = ""
            while True:
                ended = running.process.poll() is not None  # before reading: nothing is missed
                pending += output.read()
                *lines, pending = pending.split("\n")
                for line in lines:
                    running.lines.append(line)
                    if found := RECORD_LINE.match(line):
                        running.record = found.group(1)
                    self.say(f"[{running.target.name}] {line}")
                if ended:
                    if pending:
                        running.lines.append(pending)
                        self.say(f"[{running.target.name}] {pending}")
                    return
                time.sleep(0.1)

    def _wait_for_one(self) -> None:
        """Until a running target ends; the first that is not promoted stops the waves."""
        while True:
            self._act_on_signals()
            ended = [r for r in self.running if r.process.poll() is not None]
            if ended:
                break
            if self._stopped_at and time.monotonic() - self._stopped_at > STOP_GRACE_SECONDS:
                self.say(f"stopped targets still running after {STOP_GRACE_SECONDS:g} s: killed")
                for running in self.running:
                    _signal(running.process, signal.SIGKILL)
            time.sleep(0.2)
        for running in ended:
            assert running.reader is not None
            running.reader.join(timeout=10)
            running.finished_at = _now()
            self.running.remove(running)
            code = running.process.returncode
            self.say(f"[{running.target.name}] ended: exit {code} ({_meaning(code)})")
            if code != 0 and not self.stopping:
                self.say(
                    f"waves stop: {running.target.name} (wave {running.target.wave}) was "
                    f"{_meaning(code)}; no later target starts"
                )
                self._stop_running()

    def _stop_running(self) -> None:
        """No more targets start; those running get SIGINT once: each puts blue back."""
        self.stopping = True
        self._stopped_at = self._stopped_at or time.monotonic()
        for running in self.running:
            if not running.stopped and running.process.poll() is None:
                running.stopped = True
                self.say(f"[{running.target.name}] stopping it: its release puts blue back")
                _signal(running.process, signal.SIGINT)

    def _on_signal(self, signum: int, frame: Any) -> None:
        self._signals.append(signum)  # only noted: the main thread acts (_act_on_signals)

    def _act_on_signals(self) -> None:
        while self._acted_on < len(self._signals):
            signum = self._signals[self._acted_on]
            self._acted_on += 1
            name = signal.Signals(signum).name
            if not self.interrupted:
                self.interrupted = name
                self.say(f"{name}: stopping the waves; running targets put blue back and "
                         "record it")  # fmt: skip
                self._stop_running()
            elif signum == signal.SIGINT:  # a second Ctrl-C: kill them
                self.say(f"{name} again: killing the targets still running (their locks say "
                         "where traffic is; each target's next release recovers it)")  # fmt: skip
                for running in self.running:
                    _signal(running.process, signal.SIGKILL)
        if self.stopping:  # a target that started after the stop: stopped too
            self._stop_running()


def run_waves(manifest: Manifest, output: str | None, **options: Any) -> Outcome:
    return Waves(manifest, output, **options).run()


def _signal(process: subprocess.Popen[str], signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):  # it has just ended: nothing to stop
        os.kill(process.pid, signum)


def _meaning(code: int | None) -> str:
    return {0: "promoted", 3: "rolled back", 4: "failed", 2: "refused its command line"}.get(
        code if code is not None else -1,
        f"ended by signal {-code}" if code and code < 0 else "failed",
    )


def _now() -> datetime:
    return datetime.now(UTC)
