"""`bgkit waves`: run a manifest's waves here, or give GitHub Actions what its jobs need.

    bgkit waves MANIFEST [--output DIR | s3://bucket/prefix/]   every wave, then the summary
    bgkit waves check MANIFEST                                  is it valid? (exit 0 or 2)
    bgkit waves info MANIFEST                                   JSON: waves, max_parallel, bake
    bgkit waves matrix MANIFEST --wave N                        JSON for strategy.matrix
    bgkit waves target MANIFEST NAME [--output ...]             one target's release (a CI job)
    bgkit waves summary MANIFEST --records DIR [--output ...]   the summary, from the records

Exit codes as `bgkit run`: 0 every target promoted, 3 the waves stopped at a rollback, 4 at a
failure (or an interruption), 2 a manifest or command line that cannot run (nothing ran).
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import socket
import sys
from datetime import UTC, datetime
from typing import Any

from .manifest import Manifest, ManifestError, Target, load

ACTIONS = ("check", "info", "matrix", "target", "summary")


def add_parser(commands: Any) -> None:
    parser = commands.add_parser(
        "waves",
        help="release many targets wave by wave from a manifest (YAML); `waves matrix` and "
        "`waves target` for GitHub Actions' matrix",
    )
    parser.add_argument(
        "words",
        nargs="+",
        metavar="[check | info | matrix | target | summary] MANIFEST [TARGET]",
        help="a manifest to run; or an action on it",
    )
    parser.add_argument(
        "--output",
        help="where records go: a folder or an s3://bucket/prefix/ (default: outputs/)",
    )
    parser.add_argument("--wave", type=int, help="matrix: the wave (1, 2, ...)")
    parser.add_argument("--records", help="summary: the folder holding the targets' records")
    parser.set_defaults(handler=waves_command)


def waves_command(args: argparse.Namespace) -> int:
    from ..cli import UsageError

    words = list(args.words)
    action = words.pop(0) if words[0] in ACTIONS and len(words) > 1 else "run"
    wanted = 2 if action == "target" else 1
    if len(words) != wanted:
        shape = "MANIFEST TARGET" if action == "target" else "MANIFEST"
        raise UsageError(f"waves {action}: expected {shape}, got {' '.join(words) or 'nothing'}")
    if action in ("run", "target") and args.output and args.output.endswith(".ipynb"):
        raise UsageError(
            f"--output {args.output}: a folder or an s3:// prefix: each target writes its own "
            "record, and the summary one more"
        )
    try:
        manifest = load(words[0])
        if action == "check":
            names = "; ".join(
                f"wave {n}: " + ", ".join(t.name for t in wave)
                for n, wave in enumerate(manifest.waves, 1)
            )
            print(f"{manifest.path}: {len(manifest.targets)} targets in {len(manifest.waves)} "
                  f"waves ({names})")  # fmt: skip
            return 0
        if action == "info":
            print(json.dumps(info(manifest)))
            return 0
        if action == "matrix":
            if args.wave is None:
                raise UsageError("waves matrix: --wave N is required")
            print(json.dumps(manifest.matrix(args.wave)))
            return 0
        if action == "target":
            return release_target(manifest, manifest.target(words[1]), args.output)
        if action == "summary":
            if not args.records:
                raise UsageError("waves summary: --records DIR (the targets' records) is required")
            return summarize_records(manifest, args.records, args.output)
        return run_here(manifest, args.output)
    except ManifestError as error:
        raise UsageError(str(error)) from None


def info(manifest: Manifest) -> dict[str, Any]:
    return {
        "name": manifest.name,
        "release": manifest.release,
        "waves": len(manifest.waves),
        "targets": len(manifest.targets),
        "max_parallel": manifest.max_parallel,
        "bake_between_waves_seconds": manifest.bake_between_waves_seconds,
    }


def release_target(manifest: Manifest, target: Target, output: str | None) -> int:
    """One target's release, as `bgkit waves` starts it: `bgkit run` with its arguments. With a
    role_arn, it runs in the role's account: the credentials it finds are used when they are
    already that account's (a CI job that assumed the role), else the role is assumed here."""
    from botocore.exceptions import BotoCoreError, ClientError

    from ..cli import EXIT_FAILED, main
    from .runner import check_secrets, credentials_for

    check_secrets(manifest)  # each listed secret is set, before anything runs
    if target.role_arn:
        try:
            if _account_of_credentials() != target.role_arn.split(":")[4]:
                os.environ.update(credentials_for(target, manifest))
        except (BotoCoreError, ClientError) as error:
            print(f"bgkit: {target.name}: its role {target.role_arn} could not be assumed: "
                  f"{type(error).__name__}: {error}"[:600], file=sys.stderr)  # fmt: skip
            print("outcome: failed")
            return EXIT_FAILED
    return main(manifest.run_arguments(target, output))


def _account_of_credentials() -> str:
    import boto3

    return str(boto3.client("sts").get_caller_identity()["Account"])


def started_by() -> str:
    """Who started the wave release: the GitHub actor and run, or this machine's user."""
    actor = os.environ.get("GITHUB_ACTOR")
    if actor:
        server = os.environ.get("GITHUB_SERVER_URL", "https://github.com")
        run = f"{server}/{os.environ.get('GITHUB_REPOSITORY', '')}/actions/runs/"
        return f"{actor} (GitHub Actions, {run}{os.environ.get('GITHUB_RUN_ID', '')})"
    return f"{getpass.getuser()}@{socket.gethostname()}"


def run_here(manifest: Manifest, output: str | None) -> int:
    from .runner import check_secrets, run_waves

    check_secrets(manifest)
    location = output or "outputs"
    if location.startswith("s3://"):
        from ..cli import _use_s3

        targets = {str(t.parameters.get("target", "")) for t in manifest.targets}
        _use_s3(location, "sandbox" if targets == {"sandbox"} or "" in targets else "aws")
    print(f"bgkit waves: {manifest.name} release {manifest.release}: {len(manifest.targets)} "
          f"targets in {len(manifest.waves)} waves", file=sys.stderr)  # fmt: skip
    outcome = run_waves(manifest, output)
    results = _results(manifest, outcome)
    from . import summary

    record = summary.summary_record(
        manifest,
        results,
        started_at=outcome.started_at,
        finished_at=outcome.finished_at,
        started_by=started_by(),
        stopped_by=f"interrupted by the operator ({outcome.interrupted})"
        if outcome.interrupted
        else f"an error of bgkit waves: {outcome.error}"
        if outcome.error
        else None,
        bakes=outcome.bakes,
    )
    return _written(manifest, record, output)


def summarize_records(manifest: Manifest, records: str, output: str | None) -> int:
    from . import summary

    results = summary.results_from_records(manifest, records)
    times = [r.started_at for r in results if r.started_at] + [
        r.finished_at for r in results if r.finished_at
    ]
    now = datetime.now(UTC)
    record = summary.summary_record(
        manifest,
        results,
        started_at=min(times, default=now),
        finished_at=max(times, default=now),
        started_by=started_by(),
    )
    return _written(manifest, record, output)


def _written(manifest: Manifest, record: dict[str, Any], output: str | None) -> int:
    from ..cli import _EXIT
    from . import summary

    for target in record["targets"]:
        print(f"  wave {target['wave']}  {target['name']:<24} {target['outcome']:<12} "
              f"{target['record'] or '-'}")  # fmt: skip
    path, chain = summary.write(manifest, record, output)
    print(f"outcome: {record['outcome']}")
    if record.get("reason"):
        print(f"reason: {record['reason']}")
    print(f"record: {path}")
    print(f"chain: record {chain['sequence']} of {chain['target']}, sha256 {chain['hash'][:16]}…")
    return _EXIT[record["outcome"]]


def _results(manifest: Manifest, outcome: Any) -> list[Any]:
    """Each target's result: from its record where its release wrote one, else from its
    process (its exit code and last line); a target that never started is not started."""
    from .. import audit
    from . import summary

    ran = {r.target.name: r for r in outcome.ran}
    # what stopped the waves: the first target not promoted that the waves did not stop
    stopper = next(
        (r.target for r in outcome.ran if r.process.returncode and not r.stopped),
        next((manifest.target(n) for n in outcome.failed_to_start), None),
    )
    stopped_by = (
        f"{stopper.name} (wave {stopper.wave}) was not promoted"
        if stopper
        else f"the waves were interrupted ({outcome.interrupted})"
    )
    results = []
    for target in manifest.targets:
        running = ran.get(target.name)
        release = manifest.release_of(target)
        if target.name in outcome.failed_to_start:
            why = outcome.failed_to_start[target.name]
            results.append(summary.TargetResult(target.name, target.wave, target.runbook,
                                                target.region, release, "failed", why))  # fmt: skip
            continue
        if running is None:
            results.append(summary.not_started(target, manifest, f"stopped first: {stopped_by}"))
            continue
        code = running.process.returncode
        measured = {"started_at": running.started_at, "finished_at": running.finished_at}
        try:
            nb = audit.read(running.record) if running.record else None
        except (OSError, ValueError):
            nb = None
        if nb is not None:
            result = summary.result_of_record(
                target, manifest, running.record, nb, exit_code=code, **measured
            )
        else:
            last = next((line for line in reversed(running.lines) if line.strip()), "")
            why = f"exit {code}, no record; its last line: {last[:300]}"
            result = summary.TargetResult(target.name, target.wave, target.runbook, target.region,
                                          release, "failed", why, exit_code=code, **measured)  # fmt: skip
        result.process_started_at = running.started_at
        result.process_finished_at = running.finished_at
        if running.stopped:
            result.reason = f"stopped by the waves ({stopped_by}): {result.reason}"
        results.append(result)
    return results
