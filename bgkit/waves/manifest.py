"""A wave release's manifest: one YAML file per release, checked whole before anything runs.

    name: checkout-api                  # what is released; its wave releases are chained by it
    release: rel-2026-12-07-a           # each target's release is <release>.<target name>
    runbook: alb_weighted               # every target's, unless a target names its own
    max_parallel: 4                     # targets of one wave at once (GitHub's max-parallel)
    bake_between_waves_seconds: 600     # after a wave is promoted, before the next starts
    parameters: {plan: linear}          # every target's runbook parameters ...
    secrets: [smoke_token]              # secret parameters, from BGKIT_SECRET_<NAME> only
    targets:
      - name: us-east-1
        region: us-east-1
        role_arn: arn:aws:iam::111122223333:role/bgkit-release   # optional: another account
        parameters: {listener_arn: "arn:..."}                    # ... and its own, over them
    waves:
      - [us-east-1]
      - [eu-west-1, ap-southeast-2]

Every refusal is a ManifestError naming the entry (`targets[1] (eu-west-1).parameters.plan`) and
what is allowed: an unknown key, target or runbook, a target in no wave or in two, a parameter
its runbook does not have or a value it would refuse (the same validation as the release's own
first step), a secret given as a value.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import BgkitError
from ..params import RELEASE_ID, is_secret, secret_env

TARGET_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,39}", re.ASCII)
ROLE_ARN = re.compile(r"arn:aws(-cn|-us-gov)?:iam::\d{12}:role/[\w+=,.@/-]{1,512}", re.ASCII)
TOP_KEYS = (
    "name", "release", "runbook", "max_parallel", "bake_between_waves_seconds", "parameters",
    "secrets", "targets", "waves",
)  # fmt: skip
TARGET_KEYS = ("name", "region", "role_arn", "runbook", "parameters")
# Set by bgkit for each target (release, region), or by `bgkit plan` / `run --plan`.
OWN_KEYS = ("release", "region", "dry_run", "follow_plan")


class ManifestError(BgkitError):
    """A manifest that cannot run: `entry` names where (`targets[2].parameters.plan`)."""

    def __init__(self, path: str, entry: str, problem: str) -> None:
        self.path, self.entry, self.problem = path, entry, problem
        super().__init__(f"{path}: {entry}: {problem}")


@dataclass(frozen=True)
class Target:
    name: str
    wave: int  # 1, 2, ...
    runbook: str
    region: str  # "" : the runbook's default
    role_arn: str  # "" : the credentials bgkit runs with
    parameters: dict[str, Any] = field(default_factory=dict)  # shared, then its own over them


@dataclass(frozen=True)
class Manifest:
    path: str
    name: str
    release: str
    max_parallel: int
    bake_between_waves_seconds: float
    secrets: tuple[str, ...]
    targets: tuple[Target, ...]  # in wave order
    parameters: dict[str, Any] = field(default_factory=dict)  # the shared ones, as written

    @property
    def waves(self) -> list[list[Target]]:
        count = max(t.wave for t in self.targets)
        return [[t for t in self.targets if t.wave == n] for n in range(1, count + 1)]

    def target(self, name: str) -> Target:
        for target in self.targets:
            if target.name == name:
                return target
        known = ", ".join(t.name for t in self.targets)
        raise ManifestError(
            self.path, "target", f"no target named {_short(name)}; its targets: {known}"
        )

    def release_of(self, target: Target) -> str:
        """The release id of one target's release: <release>.<target name>."""
        return f"{self.release}.{target.name}"

    def run_arguments(self, target: Target, output: str | None = None) -> list[str]:
        """`bgkit run`'s arguments for one target (after `bgkit`): the same locally and in CI."""
        arguments = ["run", target.runbook]
        for name, value in target.parameters.items():
            arguments += ["-p", name, parameter_text(value)]
        if target.region:
            arguments += ["-p", "region", target.region]
        arguments += ["-p", "release", self.release_of(target), "--html", "--quiet"]
        if output:
            arguments += ["--output", output]
        return arguments

    def matrix(self, wave: int) -> dict[str, Any]:
        """One wave's targets for GitHub Actions' `strategy.matrix` (`fromJSON`)."""
        if not 1 <= wave <= len(self.waves):
            raise ManifestError(
                self.path, "--wave", f"must be 1 to {len(self.waves)} (its waves), got {wave}"
            )
        return {
            "include": [
                {
                    "target": t.name,
                    "runbook": t.runbook,
                    "region": t.region,
                    "role_arn": t.role_arn,
                    "release": self.release_of(t),
                }
                for t in self.waves[wave - 1]
            ]
        }


def parameter_text(value: Any) -> str:
    """A YAML value as `-p NAME VALUE` text (bgkit run types it by the runbook's declaration)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def load(path: str | Path) -> Manifest:
    """Read and check a manifest; ManifestError names the first entry that cannot run."""
    import yaml

    where = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as error:
        raise ManifestError(where, "manifest", f"cannot be read: {error.strerror}") from None
    try:
        document = yaml.load(text, Loader=_loader())
    except yaml.YAMLError as error:
        raise ManifestError(where, "manifest", f"is not YAML: {error}"[:300]) from None
    return parse(document, where)


def parse(document: Any, where: str = "manifest") -> Manifest:
    def refuse(entry: str, problem: str) -> ManifestError:
        return ManifestError(where, entry, problem)

    top = _mapping(document, "the manifest", TOP_KEYS, refuse)
    name = top.get("name")
    if not isinstance(name, str) or not RELEASE_ID.fullmatch(name):
        raise refuse("name", _id_rule("what is released, e.g. checkout-api", name))
    release = top.get("release")
    if not isinstance(release, str) or not RELEASE_ID.fullmatch(release):
        raise refuse("release", _id_rule("the release id, e.g. rel-2026-12-07", release))
    max_parallel = top.get("max_parallel")
    bake = top.get("bake_between_waves_seconds", 0)
    if not isinstance(bake, int | float) or isinstance(bake, bool) or not 0 <= bake <= 86400:
        raise refuse(
            "bake_between_waves_seconds", f"must be 0 to 86400 seconds, got {_short(bake)}"
        )
    shared = _mapping(top.get("parameters", {}), "parameters", None, refuse)
    secrets = top.get("secrets", [])
    if not isinstance(secrets, list) or not all(isinstance(s, str) for s in secrets):
        raise refuse("secrets", f"must be a list of secret parameter names, got {_short(secrets)}")
    for i, secret in enumerate(secrets):
        if not is_secret(secret):
            raise refuse(
                f"secrets[{i}]", f"{secret!r} is not a secret parameter; give it in parameters"
            )
    default_runbook = top.get("runbook", "")

    raw_targets = top.get("targets")
    if not isinstance(raw_targets, list) or not raw_targets:
        raise refuse("targets", "must be a list of targets (name, region, role_arn, parameters)")
    entries: dict[str, tuple[str, dict[str, Any]]] = {}
    for i, raw in enumerate(raw_targets):
        entry = f"targets[{i}]"
        target = _mapping(raw, entry, TARGET_KEYS, refuse)
        tname = target.get("name")
        if not isinstance(tname, str) or not TARGET_NAME.fullmatch(tname):
            raise refuse(
                f"{entry}.name",
                "must be 1-40 letters, digits, '_' or '-', starting with a letter or digit, "
                f"got {_short(tname)}",
            )
        entry = f"targets[{i}] ({tname})"
        if tname in entries:
            raise refuse(f"{entry}.name", f"{_short(tname)} is also {entries[tname][0]}")
        if not RELEASE_ID.fullmatch(f"{release}.{tname}"):
            raise refuse(
                f"{entry}.name",
                f"its release id {release}.{tname} is longer than 64 characters; shorten the "
                "release or the name",
            )
        entries[tname] = (entry, target)

    raw_waves = top.get("waves")
    if not isinstance(raw_waves, list) or not raw_waves:
        raise refuse("waves", "must be a list of waves, each a list of target names")
    wave_of: dict[str, int] = {}
    for n, wave in enumerate(raw_waves, 1):
        if not isinstance(wave, list) or not wave:
            raise refuse(f"waves[{n - 1}]", "must be a non-empty list of target names")
        for name_in_wave in wave:
            if not isinstance(name_in_wave, str):
                raise refuse(f"waves[{n - 1}]", f"a target name, got {_short(name_in_wave)}")
            if name_in_wave not in entries:
                known = ", ".join(entries)
                raise refuse(
                    f"waves[{n - 1}]", f"unknown target {name_in_wave!r}; the targets: {known}"
                )
            if name_in_wave in wave_of:
                raise refuse(
                    f"waves[{n - 1}]",
                    f"target {name_in_wave!r} is also in waves[{wave_of[name_in_wave] - 1}]; "
                    "a target is released once",
                )
            wave_of[name_in_wave] = n
    if missing := [t for t in entries if t not in wave_of]:
        raise refuse("waves", f"target(s) in no wave: {', '.join(missing)}")
    largest = max(len(w) for w in raw_waves)
    if max_parallel is None:
        max_parallel = largest
    if not isinstance(max_parallel, int) or isinstance(max_parallel, bool) or max_parallel < 1:
        raise refuse(
            "max_parallel",
            f"must be a whole number of targets, 1 or more, got {_short(max_parallel)}",
        )

    targets = []
    for tname, (entry, target) in entries.items():
        runbook = target.get("runbook", default_runbook)
        region = target.get("region", "")
        role_arn = target.get("role_arn", "")
        if not isinstance(region, str):
            raise refuse(f"{entry}.region", f"must be an AWS region name, got {_short(region)}")
        if role_arn and (not isinstance(role_arn, str) or not ROLE_ARN.fullmatch(role_arn)):
            raise refuse(
                f"{entry}.role_arn",
                f"must be an IAM role ARN (arn:aws:iam::<account>:role/<name>), got {_short(role_arn)}",
            )
        own = _mapping(target.get("parameters", {}), f"{entry}.parameters", None, refuse)
        parameters = {**shared, **own}
        for pname in parameters:
            origin = f"{entry}.parameters" if pname in own else "parameters"
            if is_secret(pname):
                raise refuse(
                    f"{origin}.{pname}",
                    f"{pname} is a secret: never a value in a manifest (it is kept in git and "
                    f"in each record); list it under secrets and set {secret_env(pname)}",
                )
            if pname in OWN_KEYS:
                raise refuse(
                    f"{origin}.{pname}",
                    {
                        "release": "set per target by bgkit: <release>.<target name>",
                        "region": "a target's region is its own key, region",
                    }.get(pname, "set by `bgkit plan` and `bgkit run --plan`, not by a manifest"),
                )
        _check_runbook(where, entry, runbook, region, parameters, own, secrets)
        targets.append(Target(tname, wave_of[tname], runbook, region, role_arn or "", parameters))
        if role_arn and parameters.get("target", _default(runbook, "target")) != "aws":
            raise refuse(
                f"{entry}.role_arn", "a role is assumed only for target aws; the sandbox has none"
            )
    targets.sort(key=lambda t: (t.wave, list(entries).index(t.name)))
    return Manifest(where, name, release, max_parallel, float(bake), tuple(secrets),
                    tuple(targets), dict(shared))  # fmt: skip


def _check_runbook(
    where: str,
    entry: str,
    runbook: Any,
    region: str,
    parameters: dict[str, Any],
    own: dict[str, Any],
    secrets: list[str],
) -> None:
    """The target's runbook exists and would accept its parameters: the release's own first
    step (validate_parameters), on the runbook's defaults with the manifest's values over them."""
    from .. import validate_parameters
    from ..cli import UsageError, coerce_parameters, notebook_parameters, runbook_path

    if not isinstance(runbook, str) or not re.fullmatch(r"[a-z][a-z0-9_]*", runbook):
        raise ManifestError(where, f"{entry}.runbook", f"a runbook name, got {_short(runbook)}")
    try:
        path = runbook_path(runbook)
    except UsageError as error:
        raise ManifestError(where, f"{entry}.runbook", str(error).split(": ", 1)[1]) from None
    declared = notebook_parameters(path)
    for i, secret in enumerate(secrets):
        if secret not in declared:
            raise ManifestError(where, f"secrets[{i}]", f"{runbook} has no parameter {secret!r}")
    typed: dict[str, Any] = {}  # each value as bgkit run's -p gives it to the runbook
    for pname, value in parameters.items():
        origin = f"{entry}.parameters" if pname in own else "parameters"
        if pname not in declared:
            raise ManifestError(
                where,
                f"{origin}.{pname}",
                f"{runbook} has no parameter {pname!r}; its parameters: {', '.join(declared)}",
            )
        if not isinstance(value, str | int | float | bool):
            raise ManifestError(
                where, f"{origin}.{pname}", f"must be a single value, got {_short(value)}"
            )
        kind = declared[pname]["inferred_type_name"]
        if kind == "str" and not isinstance(value, str):
            # YAML reads 1.10 as 1.1 and 0755 as 493: text must be written as text
            raise ManifestError(
                where, f"{origin}.{pname}",
                f"{runbook} takes text here; quote it ({pname}: \"{value}\"), so that YAML "
                f"keeps it as written",
            )  # fmt: skip
        if isinstance(value, str) and value.startswith("-") and kind == "str":
            raise ManifestError(
                where, f"{origin}.{pname}",
                f"a value starting with '-' would be read as an option of bgkit run, got "
                f"{_short(value)}",
            )  # fmt: skip
        try:
            typed |= coerce_parameters(path, [(pname, parameter_text(value))])
        except UsageError as error:
            raise ManifestError(where, f"{origin}.{pname}", str(error).split(": ", 1)[1]) from None
    namespace = {
        **{n: _literal(spec["default"]) for n, spec in declared.items()},
        **typed,
        "release": "manifest-check",
    }
    if region:
        namespace["region"] = region
    secrets_free = {n: "" for n in namespace if is_secret(n)}  # theirs come from the environment
    from ..errors import ParameterError

    try:
        validate_parameters(runbook, {**namespace, **secrets_free})
    except ParameterError as error:
        name = error.name
        origin = (
            f"{entry}.region"
            if name == "region" and region
            else f"{entry}.parameters.{name}"
            if name in own
            else f"parameters.{name}"
            if name in parameters
            else f"{entry}.parameters"  # one it needs and was not given (required for aws)
        )
        raise ManifestError(where, origin, str(error)) from None


def _default(runbook: str, name: str) -> Any:
    from ..cli import notebook_parameters, runbook_path

    spec = notebook_parameters(runbook_path(runbook)).get(name)
    return _literal(spec["default"]) if spec else None


def _literal(source: str) -> Any:
    try:
        return ast.literal_eval(source)
    except (ValueError, SyntaxError):
        return source


def _mapping(value: Any, entry: str, keys: tuple[str, ...] | None, refuse) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    if not isinstance(value, Mapping):
        raise refuse(entry, f"must be a mapping of names to values, got {type(value).__name__}")
    for key in value:
        if not isinstance(key, str):
            raise refuse(entry, f"keys must be names, got {key!r}")
        if keys is not None and key not in keys:
            raise refuse(f"{entry}.{key}" if entry != "the manifest" else key,
                         f"unknown key; allowed: {', '.join(keys)}")  # fmt: skip
    return dict(value)


def _id_rule(what: str, got: Any) -> str:
    return (
        f"{what}: 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit, "
        f"got {_short(got)}"
    )


def _short(value: Any, limit: int = 80) -> str:
    """A value in a refusal: its repr, cut (a refusal never repeats a whole document)."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _loader() -> type:
    import yaml

    class ManifestLoader(yaml.SafeLoader):
        """YAML without aliases (an alias bomb grows a few hundred bytes into gigabytes) and
        without a key given twice in a mapping (a second `waves:` would silently win)."""

        def compose_node(self, parent: Any, index: Any) -> Any:
            if self.check_event(yaml.AliasEvent):
                event = self.peek_event()
                raise yaml.constructor.ConstructorError(
                    None, None, "aliases (*name) are not allowed in a manifest", event.start_mark
                )
            return super().compose_node(parent, index)

        def construct_mapping(self, node: Any, deep: bool = False) -> Any:
            seen = set()
            for key_node, _ in node.value:
                key = self.construct_object(key_node, deep=deep)
                if key in seen:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"{key!r} is given twice", key_node.start_mark
                    )
                seen.add(key)
            return super().construct_mapping(node, deep=deep)

    return ManifestLoader
