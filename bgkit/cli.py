"""The `bgkit` command.

    bgkit run <runbook name or path> [-p NAME VALUE]... [-s SECRET_NAME]... [--output PATH]
              [--plan PLAN.ipynb]
    bgkit plan <runbook name or path> [-p NAME VALUE]... [-s SECRET_NAME]... [--output PATH]
    bgkit lab <runbook name or path> [-p NAME VALUE]... [-s SECRET_NAME]... [--output PATH]
    bgkit runbooks
    bgkit iam-policy <runbook name> [--lock-table TABLE]
    bgkit audit [verify] [FOLDER | s3://bucket/prefix/] [--runbook R] [--outcome O] [--kind K]
                [--since T]
    bgkit audit render RECORD [--out PAGE.html]
    bgkit waves [check | info | matrix | target | summary] MANIFEST ...   (bgkit.waves.command)

`run` exits 0 when the release was promoted, 3 when it was rolled back, 4 when it failed,
and 2 when the command line itself is wrong (nothing was run). `plan` exits 0 when the plan
was written (outcome `planned`), 4 when the release could not be planned (refused at preflight).
"""

from __future__ import annotations

import argparse
import functools
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from . import audit, patterns
from .params import RELEASE_ID, default_release_id, secret_env

EXIT_PROMOTED, EXIT_USAGE, EXIT_ROLLED_BACK, EXIT_FAILED = 0, 2, 3, 4
_EXIT = {
    "promoted": EXIT_PROMOTED,
    "planned": EXIT_PROMOTED,
    "rolled_back": EXIT_ROLLED_BACK,
    "failed": EXIT_FAILED,
}
PLAN_PARAMETERS = ("dry_run", "follow_plan")  # set by `bgkit plan` and `run --plan`, not -p
REPO_RUNBOOKS = Path(__file__).resolve().parent.parent / "runbooks"


class UsageError(Exception):
    pass


def runbook_path(name_or_path: str) -> Path:
    """A runbook by file path, or by name in ./runbooks or the runbooks shipped beside bgkit."""
    candidate = Path(name_or_path)
    if candidate.suffix == ".ipynb":
        if candidate.is_file():
            return candidate
        raise UsageError(f"runbook: no notebook at {candidate}")
    for folder in (Path.cwd() / "runbooks", REPO_RUNBOOKS):
        path = folder / f"{name_or_path}.ipynb"
        if path.is_file():
            return path
    known = ", ".join(p.stem for p in sorted(REPO_RUNBOOKS.glob("*.ipynb")))
    raise UsageError(f"runbook: no runbook named {name_or_path!r}; known runbooks: {known}")


def notebook_parameters(path: Path) -> dict[str, dict[str, Any]]:
    """The runbook's parameters cell, as papermill reads it (read once per version of the file:
    a manifest's targets ask for the same runbook many times)."""
    return _inspected(str(Path(path).resolve()), Path(path).stat().st_mtime_ns)


@functools.cache
def _inspected(path: str, mtime_ns: int) -> dict[str, dict[str, Any]]:
    import papermill

    return papermill.inspect_notebook(path)


def coerce_parameters(path: Path, pairs: list[tuple[str, str]]) -> dict[str, Any]:
    """Turn -p NAME VALUE text into the type the runbook's parameters cell declares."""
    declared = notebook_parameters(path)
    values: dict[str, Any] = {}
    for name, text in pairs:
        if name not in declared:
            allowed = ", ".join(declared)
            raise UsageError(
                f"-p {name}: {path.stem} has no parameter {name!r}; its parameters: {allowed}"
            )
        kind = declared[name]["inferred_type_name"]
        try:
            if kind == "int":
                values[name] = int(text)
            elif kind == "float":
                values[name] = float(text)
            elif kind == "bool":
                if text.lower() not in ("true", "false", "1", "0", "yes", "no"):
                    raise ValueError(text)
                values[name] = text.lower() in ("true", "1", "yes")
            else:
                values[name] = text
        except ValueError:
            raise UsageError(f"-p {name}: expected {kind}, got {text!r}") from None
    return values


def output_path(runbook: str, release: str, folder: Path, now: datetime | None = None) -> Path:
    """outputs/<UTC date>/<runbook>-<release>-<UTC time>.ipynb, never an existing file."""
    name = record_name(runbook, release, lambda name: (folder / name).exists(), now)
    (folder / name).parent.mkdir(parents=True, exist_ok=True)
    return folder / name


def record_name(runbook: str, release: str, exists: Any, now: datetime | None = None) -> str:
    """<UTC date>/<runbook>-<release>-<UTC time>.ipynb under a folder or prefix, with -2, -3...
    while `exists(name)` says that name is taken."""
    now = now or datetime.now(UTC)
    stem = f"{now:%Y-%m-%d}/{runbook}-{release}-{now:%H%M%S}"
    name, n = f"{stem}.ipynb", 1
    while exists(name):
        n += 1
        name = f"{stem}-{n}.ipynb"
    return name


def read_secrets(path: Path, names: list[str]) -> dict[str, str]:
    """--secret NAME: BGKIT_SECRET_<NAME> if set, else a prompt on the terminal (no echo).

    Returns the environment variables to set for the run. Says on stderr where each secret of the
    runbook comes from, never what it is.
    """
    import getpass
    import os

    from .params import is_secret, secret_env

    declared = notebook_parameters(path)
    for name in names:
        if name not in declared:
            raise UsageError(f"--secret {name}: {path.stem} has no parameter {name!r}")
        if not is_secret(name):
            raise UsageError(
                f"--secret {name}: not a secret parameter (a secret's name says so: token, "
                "secret, password, passwd, webhook, api_key or credential); use -p"
            )
    found: dict[str, str] = {}
    for name in (n for n in declared if is_secret(n)):
        variable = secret_env(name)
        if os.environ.get(variable):
            print(f"bgkit: {name} from {variable}", file=sys.stderr)
        elif name in names:
            if not sys.stdin.isatty():
                raise UsageError(f"--secret {name}: set {variable} (no terminal to prompt on)")
            value = getpass.getpass(f"{name} (not echoed): ")
            if not value:
                raise UsageError(f"--secret {name}: nothing was entered")
            found[variable] = value
            print(f"bgkit: {name} from the prompt", file=sys.stderr)
    return found


@dataclass
class Prepared:
    """A release about to run (`run`) or to be opened (`lab`): the runbook, its parameters, the
    secrets for the kernel's environment, and where its record goes and is chained."""

    path: Path
    parameters: dict[str, Any]
    secrets: dict[str, str]
    out: str
    chain_root: str
    target: str


def prepare(args: argparse.Namespace) -> Prepared:
    """What `run` and `lab` share: every check of the command line, before anything runs."""
    from .params import is_secret, secret_env

    path = runbook_path(args.runbook)
    for name, _ in args.parameter:
        if name in PLAN_PARAMETERS:
            raise UsageError(
                f"-p {name}: set by `bgkit plan` (dry_run) and `bgkit run --plan` (follow_plan)"
            )
        if is_secret(name):
            raise UsageError(
                f"-p {name}: {name} is a secret, and papermill writes -p values into the "
                f"executed notebook; use --secret {name} (it prompts, or reads {secret_env(name)})"
            )
    # Secrets reach the kernel only through its environment, which it inherits from this process.
    secrets = read_secrets(path, args.secret)
    parameters = coerce_parameters(path, args.parameter)
    planned = _planned_parameters(args, path)
    if drifted := [n for n, v in parameters.items() if n in planned and planned[n] != v]:
        raise UsageError(
            "--plan: "
            + "; ".join(f"-p {n} {parameters[n]!r}: the plan has {planned[n]!r}" for n in drifted)
            + ". A release runs with its plan's parameters: plan again (`bgkit plan`) to change "
            "them"
        )
    parameters = {**planned, **parameters}
    if getattr(args, "dry_run", False):
        parameters["dry_run"] = True
    migrations = parameters.get("migrations")
    if isinstance(migrations, str) and migrations and not migrations.startswith("s3://"):
        # the kernel runs elsewhere: a path is the one the person meant, from here
        parameters["migrations"] = str(Path(migrations).expanduser().resolve())
    parameters.setdefault("release", default_release_id())
    if not RELEASE_ID.fullmatch(str(parameters["release"])):  # it names the output file
        raise UsageError(
            f"-p release: must be 1-64 characters: letters, digits, '.', '_' or '-', starting "
            f"with a letter or digit, got {str(parameters['release'])[:80]!r}"
        )
    target = _target(path, parameters)
    if args.output and audit.is_s3(args.output):
        _use_s3(args.output, target)
    named = str(parameters["release"]) + ("-plan" if parameters.get("dry_run") else "")
    out, chain_root = record_location(args.output, path.stem, named)
    return Prepared(path, parameters, secrets, out, chain_root, target)


def _planned_parameters(args: argparse.Namespace, path: Path) -> dict[str, Any]:
    """`run --plan PLAN`: the plan's parameters (what was approved), and the plan to follow.
    A -p given as well must be the plan's (the release itself also refuses any other: drift)."""
    plan = getattr(args, "plan", None)
    if not plan:
        return {}
    from .planning import read_plan

    where = plan if audit.is_s3(plan) else str(Path(plan).expanduser().resolve())
    try:
        nb, record = read_plan(where, path.stem)
    except ValueError as error:
        raise UsageError(f"--plan: {error}") from None
    given = dict(nb.metadata.get("papermill", {}).get("parameters", {}))
    given.pop("dry_run", None)
    return {**given, "release": record["release"], "follow_plan": where}


def run(args: argparse.Namespace) -> int:
    import signal

    import papermill

    from .engine import on_main_thread, releases_stop_on_signals
    from .record import from_notebook

    # Started in the background by a script (a CI step, `bgkit waves`), a process inherits
    # SIGINT ignored; a release must answer a cancel's SIGINT all the same.
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN and on_main_thread():
        signal.signal(signal.SIGINT, signal.default_int_handler)
    prepared = prepare(args)
    path, parameters, out = prepared.path, prepared.parameters, prepared.out
    secrets, chain_root = prepared.secrets, prepared.chain_root
    print(f"bgkit: running {path.stem} release {parameters['release']} -> {out}", file=sys.stderr)
    if args.log_output:  # papermill logs each output at INFO; unconfigured, nothing showed
        import logging

        logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    with releases_stop_on_signals() as stopping:  # Ctrl-C: the release puts blue back
        error = _execute(papermill, path, out, parameters, secrets, args)
        if error is KeyboardInterrupt:  # before the kernel ran a cell (releases_stop_on_signals)
            print("bgkit: interrupted before the release started: nothing was changed",
                  file=sys.stderr)  # fmt: skip
            return EXIT_FAILED
        # The release is over: what follows never changes the exit code, which says how it
        # ended, and a signal now (a cancel's SIGTERM after its SIGINT) is only noted.
        stopping.ended()
        nb = audit.read(out)
        record = from_notebook(nb) or {}
        outcome = record.get("outcome") or "failed"
        print(f"outcome: {outcome}")
        if record.get("reason"):
            print(f"reason: {record['reason']}")
        if error:
            print(f"error: {error}")
        if record.get("planned"):
            print(plan_text(record["planned"], path.stem, out))
        print(f"record: {out}")
        _link_and_page(args, out, chain_root)
    return _EXIT[outcome]


def _execute(papermill: Any, path: Path, out: str, parameters: dict[str, Any],
             secrets: dict[str, str], args: argparse.Namespace) -> Any:  # fmt: skip
    """Run the notebook: None, the error a cell stopped on, or KeyboardInterrupt (stopped
    before its first cell)."""
    import os

    from papermill.exceptions import PapermillExecutionError

    os.environ.update(secrets)
    try:
        papermill.execute_notebook(
            str(path),
            out,
            parameters=parameters,
            engine_name="bgkit",
            progress_bar=not args.quiet,
            log_output=args.log_output,
            cwd=str(path.parent),
        )
    except PapermillExecutionError as exc:
        return f"{exc.ename}: {exc.evalue}"
    except KeyboardInterrupt:
        return KeyboardInterrupt
    finally:
        for variable in secrets:
            os.environ.pop(variable, None)
    return None


def _link_and_page(args: argparse.Namespace, out: str, chain_root: str) -> None:
    try:
        chain = audit.link(out, chain_root)
        print(f"chain: record {chain['sequence']} of {chain['target']} in {chain_root}, "
              f"sha256 {chain['hash'][:16]}…")  # fmt: skip
    except Exception as failure:  # said, not raised: `bgkit audit verify` will name the record
        print(f"chain: not linked ({type(failure).__name__}: {failure})"[:400])
    if args.html:
        from .html import render_html

        page = out.removesuffix(".ipynb") + ".html"
        try:
            audit.write_text(render_html(audit.read(out)), page)
            print(f"html: {page}")
        except Exception as failure:  # said, not raised; `bgkit audit render` can retry it
            print(f"html: not written ({type(failure).__name__}: {failure})"[:400])


def plan_text(plan: dict[str, Any], runbook: str, out: str) -> str:
    """A plan on the terminal: each point's calls, the duration, and how to run it."""
    lines = []
    for point in plan["points"]:
        calls = point["calls"] or [{"call": "none", "IAM action": "", "what": ""}]
        for row in calls:
            action = row["IAM action"] or row["call"]
            lines.append(f"  {point['point'][:36]:<36} {action[:44]:<44} {row['what']}")
    duration = plan["duration"]
    return "\n".join(
        [
            "plan (nothing was changed; rollbacks, judge and state in the record):",
            *lines,
            f"duration: about {duration['expected_seconds']:.0f} s, at most "
            f"{duration['longest_seconds']:.0f} s with every hold",
            f"run it: bgkit run {runbook} --plan {out}",
        ]
    )


def lab(args: argparse.Namespace) -> int:
    """`bgkit lab`: the record notebook, prepared as `run` would, opened in JupyterLab."""
    from . import lab as lab_module

    if args.prepare_only and args.secret:
        raise UsageError(
            "--secret with --prepare-only: a secret reaches the kernel through the environment "
            "of the Jupyter server that starts it, which is not started here; set "
            "BGKIT_SECRET_<NAME> in that server's environment"
        )
    prepared = prepare(args)
    notebook = lab_module.prepare_notebook(
        prepared.path, prepared.parameters, prepared.out, prepared.chain_root, prepared.target
    )
    if args.prepare_only:
        print(f"bgkit: record notebook: {notebook}")
        print("bgkit: open it in Jupyter (its kernel keeps the record); it was not started here")
        return 0
    try:
        import jupyterlab  # noqa: F401
    except ImportError:
        raise UsageError(
            f"lab: JupyterLab is not installed; `pip install 'bgkit[lab]'` (or `make lab`). The "
            f"record notebook is ready at {notebook}"
        ) from None
    lab_module.serve(notebook, prepared.secrets, port=args.port, open_browser=not args.no_browser)
    return 0  # not reached: serve() became JupyterLab


def record_location(output: str | None, runbook: str, release: str) -> tuple[str, str]:
    """Where `bgkit run` writes its record, and the folder or prefix of the record's chain.

    No --output: outputs/<date>/<runbook>-<release>-<time>.ipynb, chained within outputs/.
    A folder, or an s3:// prefix ending in "/": the same layout under it. A file or an
    s3://…/name.ipynb: exactly there, chained with the records beside it. Never overwrites.
    """
    if output is None:
        return str(output_path(runbook, release, Path("outputs"))), "outputs"
    if audit.is_s3(output):
        if output.endswith(".ipynb"):
            if _s3_exists(output):
                raise UsageError(f"--output: {output} exists; a record is never overwritten")
            return output, output.rsplit("/", 1)[0] + "/"
        prefix = output if output.endswith("/") else output + "/"
        return prefix + record_name(
            runbook, release, lambda name: _s3_exists(prefix + name)
        ), prefix
    local = Path(output)
    if local.is_dir() or output.endswith("/"):
        return str(output_path(runbook, release, local)), str(local)
    if local.exists():
        raise UsageError(f"--output: {local} exists; a record is never overwritten")
    local.parent.mkdir(parents=True, exist_ok=True)
    return str(local), str(local.parent)


def _target(path: Path, parameters: dict[str, Any]) -> str:
    if "target" in parameters:
        return str(parameters["target"])
    return str(notebook_parameters(path).get("target", {}).get("default", "")).strip("\"'")


def _use_s3(output: str, target: str) -> None:
    """Records to S3 (bgkit.audit.use_s3), checked before the release starts."""
    try:
        audit.use_s3(output, target)
    except ValueError as error:
        raise UsageError(f"--output: {error}") from None


def _s3_exists(url: str) -> bool:
    from papermill.s3 import S3

    return any(str(found) == url for found in S3().list(url))


def list_runbooks(args: argparse.Namespace) -> int:
    for name in patterns.names():
        pattern = patterns.get(name)
        try:
            path = runbook_path(name)
        except UsageError:
            print(f"{name}: {pattern.title} (no runbook notebook found)")
            continue
        print(f"{name}: {pattern.title}  [{path}]")
        for pname, spec in notebook_parameters(path).items():
            print(
                f"    {pname} ({spec['inferred_type_name']}, default {spec['default']}): {spec['help']}"
            )
    return 0


def iam_policy(args: argparse.Namespace) -> int:
    """`bgkit iam-policy <runbook>`: the IAM policy document its releases need (bgkit.iam)."""
    import json

    from . import iam

    try:
        table = iam.DEFAULT_LOCK_TABLE if args.lock_table is None else args.lock_table
        document = iam.policy(
            args.runbook, lock_table=table, notify_topic_arn=args.notify_topic or ""
        )
    except KeyError:
        known = ", ".join(patterns.names())
        raise UsageError(
            f"iam-policy: no runbook named {args.runbook!r}; known runbooks: {known}"
        ) from None
    except ValueError as error:
        option = "--notify-topic" if "SNS" in str(error) else "--lock-table"
        raise UsageError(f"{option}: {error}") from None
    print(json.dumps(document, indent=2))
    return 0


def sandbox_command(args: argparse.Namespace) -> int:
    """`bgkit sandbox up|down|status`: the shared sandbox (bgkit/sandbox/shared.py)."""
    from .sandbox import shared

    if args.action == "up":
        state, started = shared.up()
        print(
            f"bgkit sandbox: {'started' if started else 'already running'} (pid {state['pid']}, "
            f"since {state['started_at']})\n"
            f"  AWS endpoint: {state['endpoint_url']} (region {state['region']}, sandbox credentials)\n"
            f"  admin API:    {state['admin_url']}\n"
            f"  log:          {shared.state_dir() / shared.LOG_FILE}\n"
            "runbooks with target=sandbox use it until `bgkit sandbox down`"
        )
        return 0
    if args.action == "down":
        stopped = shared.down()
        print(
            f"bgkit sandbox: stopped (pid {stopped['pid']})"
            if stopped
            else "bgkit sandbox: no shared sandbox is running"
        )
        return 0
    state = shared.running()
    if state is None:
        print("bgkit sandbox: none running; runbooks start their own")
        return 1
    print(f"bgkit sandbox: running (pid {state['pid']}), AWS endpoint {state['endpoint_url']}")
    return 0


def audit_command(args: argparse.Namespace) -> int:
    """`bgkit audit [LOCATION]`, `bgkit audit verify [LOCATION]`, `bgkit audit render RECORD`."""
    words = list(args.words)
    action = words.pop(0) if words and words[0] in ("verify", "render") else "list"
    if len(words) > 1:
        raise UsageError(f"audit {action}: one folder, s3:// prefix or record, got {words}")
    location = words[0] if words else "outputs"
    if args.sandbox and audit.is_s3(location):
        _use_s3(location, "sandbox")
    if action == "render":
        if not words:
            raise UsageError("audit render: which record? (a .ipynb path or s3:// URL)")
        from .html import render_html

        page = args.out or location.removesuffix(".ipynb") + ".html"
        audit.write_text(render_html(_read(location)), page)
        print(f"html: {page}")
        return 0
    try:
        if action == "verify":
            count, problems = audit.verify(location)
            for problem in problems:
                print(f"PROBLEM {problem}")
            print(f"{count} records in {location}: " + (
                f"{len(problems)} problems" if problems else "every hash and chain verified"
            ))  # fmt: skip
            return 1 if problems else 0
        since = audit.since_time(args.since) if args.since else None
        rows = audit.index(
            location, runbook=args.runbook, outcome=args.outcome, kind=args.kind, since=since
        )
    except (FileNotFoundError, ValueError) as error:
        raise UsageError(f"audit: {error}") from None
    sys.stdout.write(audit.render_rows(rows, args.format))
    return 0


def _read(path: str):  # type: ignore[no-untyped-def]
    try:
        return audit.read(path)
    except (OSError, ValueError) as error:
        raise UsageError(f"audit render: cannot read {path}: {error}") from None


def _release_arguments(parser: argparse.ArgumentParser) -> None:
    """The arguments of a release, the same for `run` and `lab`."""
    parser.add_argument("runbook", help="runbook name (e.g. alb_weighted) or path to a .ipynb")
    parser.add_argument(
        "-p", "--parameter", nargs=2, action="append", default=[], metavar=("NAME", "VALUE")
    )
    parser.add_argument(
        "-s",
        "--secret",
        action="append",
        default=[],
        metavar="NAME",
        help="a secret parameter (such as smoke_token): read from BGKIT_SECRET_<NAME>, or asked "
        "for without echo; never written to the executed notebook",
    )
    parser.add_argument(
        "--output",
        help="where the record goes: a .ipynb path, a folder, or an s3://bucket/prefix/ "
        "(default: outputs/<date>/...)",
    )


def schema_command(args: argparse.Namespace) -> int:
    """`bgkit schema check MIGRATIONS`: the schema step of a release, outside one (a pull
    request's CI): exit 0 when blue keeps working, 3 when it would not, 2 for bad input."""
    import json
    import os

    from . import schema
    from .errors import SchemaError
    from .postgres import PostgresMissing

    database_url = args.database_url or os.environ.get(secret_env("database_url"), "")
    try:
        report = schema.check(
            args.migrations,
            database_url="" if args.schema or args.statements else database_url,
            schema_file=args.schema or "",
            statements_file=args.statements or "",
        )
    except (SchemaError, PostgresMissing) as error:
        raise UsageError(f"schema check: {error}") from None
    print(json.dumps(report.to_dict(), indent=2) if args.json else report.to_text())
    return EXIT_PROMOTED if report.compatible else EXIT_ROLLED_BACK


def _headless_arguments(parser: argparse.ArgumentParser) -> None:
    """What `run` and `plan` take: a release's arguments, and how papermill runs it."""
    _release_arguments(parser)
    parser.add_argument(
        "--html", action="store_true", help="also write the reviewer's HTML page beside the record"
    )
    parser.add_argument(
        "--log-output", action="store_true", help="stream cell output to the terminal"
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def main(argv: list[str] | None = None) -> int:
    from .kernel import without_iri_grammar

    without_iri_grammar()  # papermill and the audit read notebooks: 1.7 s of CPU saved
    parser = argparse.ArgumentParser(
        prog="bgkit", description="Blue/green and canary release runbooks for AWS."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    run_parser = commands.add_parser("run", help="run a release runbook headlessly")
    _headless_arguments(run_parser)
    run_parser.add_argument(
        "--plan",
        metavar="PLAN.ipynb",
        help="a plan's record (`bgkit plan`): run with its parameters, refused before any change "
        "if anything drifted since; the record links the plan's hash",
    )
    run_parser.set_defaults(handler=run)
    plan_parser = commands.add_parser(
        "plan",
        help="write a plan for review: every AWS call the release would make, and each "
        "rollback's; changes nothing",
    )
    _headless_arguments(plan_parser)
    plan_parser.set_defaults(handler=run, dry_run=True)
    lab_parser = commands.add_parser(
        "lab",
        help="prepare a release's record notebook and open it in JupyterLab, to step through it",
    )
    _release_arguments(lab_parser)
    lab_parser.add_argument(
        "--port", type=int, default=0, help="JupyterLab's port (default: a free one)"
    )
    lab_parser.add_argument(
        "--no-browser", action="store_true", help="print the URL only; do not open a browser"
    )
    lab_parser.add_argument(
        "--prepare-only",
        action="store_true",
        help="write the record notebook and print its path, for a Jupyter of your own",
    )
    lab_parser.set_defaults(handler=lab)
    commands.add_parser("runbooks", help="list runbooks and their parameters").set_defaults(
        handler=list_runbooks
    )
    sandbox_parser = commands.add_parser(
        "sandbox", help="a shared sandbox that runbooks with target=sandbox use until it is down"
    )
    sandbox_parser.add_argument("action", choices=("up", "down", "status"))
    sandbox_parser.set_defaults(handler=sandbox_command)
    iam_parser = commands.add_parser(
        "iam-policy", help="print the IAM policy document a runbook's releases need"
    )
    iam_parser.add_argument("runbook", help="runbook name (e.g. alb_weighted)")
    iam_parser.add_argument(
        "--lock-table",
        metavar="TABLE",
        help='the runbook\'s lock_table parameter (default bgkit-locks, as in the runbooks; "" '
        "for no lock)",
    )
    iam_parser.add_argument(
        "--notify-topic",
        metavar="ARN",
        help="the runbook's notify_topic_arn: adds sns:Publish on it",
    )
    iam_parser.set_defaults(handler=iam_policy)
    audit_parser = commands.add_parser(
        "audit",
        help="index records (a folder or s3:// prefix); `audit verify`: check their hash chains; "
        "`audit render RECORD`: the reviewer's HTML page",
    )
    audit_parser.add_argument(
        "words", nargs="*", metavar="[verify | render] LOCATION", help="default: outputs"
    )
    audit_parser.add_argument("--runbook", help="only this runbook's releases")
    audit_parser.add_argument("--outcome", choices=audit.OUTCOMES, help="only this outcome")
    audit_parser.add_argument(
        "--kind",
        choices=audit.KINDS,
        help="only releases, plans, or wave releases' summaries (waves)",
    )
    audit_parser.add_argument("--since", help="an ISO date or time (UTC), or an age: 12h, 7d, 2w")
    audit_parser.add_argument("--format", choices=audit.FORMATS, default="table")
    audit_parser.add_argument("--out", help="render: the HTML file (default: beside the record)")
    audit_parser.add_argument(
        "--sandbox", action="store_true", help="s3:// means the running shared sandbox's S3"
    )
    audit_parser.set_defaults(handler=audit_command)
    schema_parser = commands.add_parser(
        "schema",
        help="`schema check MIGRATIONS`: would green's migrations break blue? (exit 0 compatible, "
        "3 incompatible, 2 bad input)",
    )
    schema_parser.add_argument("action", choices=("check",))
    schema_parser.add_argument("migrations", help="a .sql file or a folder of them, or s3://...")
    schema_parser.add_argument(
        "--database-url",
        help="the PostgreSQL database blue uses, read only (better: the environment variable "
        f"{secret_env('database_url')}, which no process listing shows)",
    )
    schema_parser.add_argument("--schema", help="blue's schema as SQL (instead of a database)")
    schema_parser.add_argument(
        "--statements", help="blue's statements as SQL, each ending with ; (with --schema)"
    )
    schema_parser.add_argument("--json", action="store_true", help="the report as JSON")
    schema_parser.set_defaults(handler=schema_command)
    from .waves.command import add_parser as add_waves_parser

    add_waves_parser(commands)
    args = parser.parse_args(argv)
    try:
        return args.handler(args)
    except UsageError as error:
        print(f"bgkit: {error}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
