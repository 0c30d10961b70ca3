"""A feature-flag configuration (`AWS.AppConfig.FeatureFlags`) as bgkit reads and rolls it out.

AWS (AppConfig User Guide, "Type reference for AWS.AppConfig.FeatureFlags" and "Creating
multi-variant feature flags"): the document is `{"version": "1", "flags": {...}, "values":
{...}}`; a multi-variant flag's value has `_variants`, a list tried in order, each `{"name",
"enabled", "rule"?, "attributeValues"?}`; the default variant comes last and has no rule.

bgkit rolls a flag out between its two variants `on` (green) and `off` (blue): it rewrites
only the `on` variant's rule, to a `split` of `split_by`'s values at the step's percentage
(with the release's seed, so buckets are nested as the percentage grows), and keeps `off`
last as the default. Everything else in the document (other flags, attributes, variants'
attribute values) is kept as it was.
"""

from __future__ import annotations

import copy
import json
from typing import Any

from .rules import RuleError, parse

ON, OFF = "on", "off"


class FlagDocumentError(ValueError):
    """The document is not a feature-flag configuration bgkit can roll this flag out in."""


def load(content: bytes | str) -> dict[str, Any]:
    try:
        document = json.loads(content)
    except (ValueError, UnicodeDecodeError) as error:
        raise FlagDocumentError(f"not JSON: {error}") from None
    if not isinstance(document, dict) or document.get("version") != "1":
        raise FlagDocumentError('not a feature-flag document (no "version": "1")')
    return document


def variants(document: dict[str, Any], flag: str) -> list[dict[str, Any]]:
    """The flag's variants, checked: it exists, has `on` and `off`, and `off` is the default."""
    if flag not in document.get("flags", {}):
        known = ", ".join(sorted(document.get("flags", {}))) or "none"
        raise FlagDocumentError(f"has no flag {flag!r} (flags: {known})")
    found = (document.get("values", {}).get(flag) or {}).get("_variants")
    if not isinstance(found, list) or not found:
        raise FlagDocumentError(f"flag {flag!r} has no variants: bgkit needs an `on` and an `off`")
    names = [v.get("name") for v in found]
    for name in (ON, OFF):
        if name not in names:
            raise FlagDocumentError(
                f"flag {flag!r} has no variant named {name!r} (variants: {', '.join(map(str, names))})"
            )
    return found


def with_rule(document: dict[str, Any], flag: str, rule: str) -> dict[str, Any]:
    """A copy of the document whose `on` variant has `rule` and comes right before `off`, the
    default (last, no rule); other variants keep their places before them."""
    parse(rule)  # refuse a rule that does not parse before it is written
    new = copy.deepcopy(document)
    found = variants(new, flag)
    by_name = {v["name"]: v for v in found}
    on, off = dict(by_name[ON]), dict(by_name[OFF])
    on["enabled"], on["rule"] = True, rule
    off["enabled"] = False
    off.pop("rule", None)
    others = [v for v in found if v["name"] not in (ON, OFF)]
    new["values"][flag]["_variants"] = [*others, on, off]
    return new


def on_share(document: dict[str, Any], flag: str, split_by: str) -> float | None:
    """The percentage of `split_by`'s values that get `on`, as far as the rules say; None when
    a rule before `on` or `on`'s own rule is one bgkit cannot put a share on."""
    found = variants(document, flag)
    for variant in found:
        rule = variant.get("rule")
        share = _share(rule, split_by) if rule else 100.0
        if variant["name"] == ON:
            return share
        if share is None or share > 0:
            return None  # an earlier variant takes some requests: not a plain on/off split
    return 0.0


def _share(rule: str, split_by: str) -> float | None:
    try:
        tree = parse(rule)
    except RuleError:
        return None
    if tree[0] == "split":
        keywords = {a[1]: a[2] for a in tree[1:] if isinstance(a, tuple) and a[0] == "kw"}
        by, pct = keywords.get("by"), keywords.get("pct")
        if getattr(by, "name", None) == split_by and isinstance(pct, tuple):
            return float(pct[1])
        return None
    if tree[0] == "eq":  # one named user (bgkit's smoke-test user): no share of the population
        return 0.0
    return None


def dumps(document: dict[str, Any]) -> bytes:
    return json.dumps(document, indent=2, sort_keys=False).encode()
