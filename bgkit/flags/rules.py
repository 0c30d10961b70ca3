"""AWS AppConfig's rule expressions for multi-variant feature flags, evaluated for one context.

AWS (AppConfig User Guide, "Defining rules for multi-variant feature flags" and "Understanding
multi-variant feature flag rules"): a rule is an s-expression, `(operator operand...)`, whose
operands are strings in double quotes, numbers, `true`/`false`, context values `$key` and
nested expressions; it must produce true or false. A flag's variants are tried in order and
the first whose rule is true is served; a variant with no rule is the default.

`split` is the operator a percentage rollout uses: `(split by::$userId pct::20 seed::"s")` is
true for `pct` percent of the values of `$userId`, by a consistent hash of the value (and the
seed). Buckets are nested: a value inside the first 20 % is inside the first 25 % with the
same seed, so users who have the new code keep it as the percentage grows. AWS does not
publish its hash function; this one (SHA-256 of seed and value) gives other buckets than
AWS's for the same user, with the same shares.

Operators here: eq, gt, gte, lt, lte, begins_with, ends_with, contains, exists, in, split,
and, or, not. A missing context value makes a comparison false, as AWS describes.
"""

from __future__ import annotations

import functools
import hashlib
import re
from collections.abc import Mapping
from typing import Any

_TOKEN = re.compile(
    r"\s*(?:(?P<open>\()|(?P<close>\))|(?P<lopen>\[)|(?P<lclose>\])|(?P<comma>,)"
    r'|"(?P<string>(?:[^"\\]|\\.)*)"|(?P<word>[^\s()\[\],"]+))'
)


class RuleError(ValueError):
    """A rule that does not parse or cannot be evaluated; says where."""


class _Var:
    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"${self.name}"


@functools.lru_cache(maxsize=1024)
def parse(rule: str) -> Any:
    """The rule as nested lists: ["split", ("by", $userId), ("pct", 20.0)]. Kept per rule text
    (an agent evaluates the same few rules for every request); callers do not change it."""
    tokens, position = _tokens(rule), 0

    def read() -> Any:
        nonlocal position
        if position >= len(tokens):
            raise RuleError(f"rule {rule!r} ends too early")
        kind, value = tokens[position]
        position += 1
        if kind == "open":
            items = []
            while position < len(tokens) and tokens[position][0] != "close":
                items.append(read())
            if position >= len(tokens):
                raise RuleError(f"rule {rule!r} has an unclosed '('")
            position += 1
            if not items or not isinstance(items[0], str):
                raise RuleError(f"rule {rule!r}: an expression must start with an operator")
            return items
        if kind == "lopen":
            values = []
            while position < len(tokens) and tokens[position][0] != "lclose":
                if tokens[position][0] == "comma":
                    position += 1
                    continue
                values.append(read())
            position += 1
            return ("list", values)
        if kind == "string":
            return ("str", bytes(value, "utf-8").decode("unicode_escape"))
        if kind == "word":
            return _word(value, read if "::" in value and value.endswith("::") else None)
        raise RuleError(f"rule {rule!r}: unexpected {value!r}")

    expression = read()
    if position != len(tokens):
        raise RuleError(f"rule {rule!r} has text after its expression")
    return expression


def _tokens(rule: str) -> list[tuple[str, str]]:
    tokens, position = [], 0
    while position < len(rule):
        if rule[position:].strip() == "":
            break
        match = _TOKEN.match(rule, position)
        if match is None:
            raise RuleError(f"rule {rule!r}: cannot read from {rule[position:]!r}")
        kind = match.lastgroup
        tokens.append((kind, match.group(kind)))
        position = match.end()
    return tokens


def _word(word: str, read_value: Any) -> Any:
    if "::" in word:  # a keyword argument, e.g. pct::20 or by::$userId (or seed:: "x")
        key, _, value = word.partition("::")
        return ("kw", key, read_value() if value == "" and read_value else _word(value, None))
    if word.startswith("$"):
        return _Var(word[1:])
    if word in ("true", "false"):
        return ("bool", word == "true")
    try:
        return ("num", float(word))
    except ValueError:
        return word  # an operator


def evaluate(rule: str, context: Mapping[str, Any]) -> bool:
    """Whether `rule` is true for `context` (the request's context values)."""
    tree = parse(rule)
    if not isinstance(tree, list):
        raise RuleError(f"rule {rule!r} is not an expression in parentheses")
    result = _eval(tree, context)
    if not isinstance(result, bool):
        raise RuleError(f"rule {rule!r} produces {result!r}, not true or false")
    return result


_MISSING = object()


def _value(node: Any, context: Mapping[str, Any]) -> Any:
    if isinstance(node, _Var):
        return context.get(node.name, _MISSING)
    if isinstance(node, list):
        return _eval(node, context)
    if isinstance(node, tuple):
        if node[0] == "list":
            return [_value(v, context) for v in node[1]]
        if node[0] in ("str", "num", "bool"):
            return node[1]
    raise RuleError(f"unexpected operand {node!r}")


def _number(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


_OPERATORS = frozenset(
    [
        "split",
        "and",
        "or",
        "not",
        "exists",
        "eq",
        "gt",
        "gte",
        "lt",
        "lte",
        "begins_with",
        "ends_with",
        "contains",
        "in",
    ]
)


def _eval(node: list, context: Mapping[str, Any]) -> Any:
    operator, args = node[0], node[1:]
    if operator not in _OPERATORS:
        raise RuleError(f"unknown operator {operator!r}")
    if operator == "split":
        return _split(args, context)
    if operator == "and":
        return all(_value(a, context) is True for a in args)
    if operator == "or":
        return any(_value(a, context) is True for a in args)
    if operator == "not":
        (only,) = args
        return _value(only, context) is not True
    if operator == "exists":
        key = next((a for a in args if isinstance(a, tuple) and a[0] == "kw"), None)
        name = key[2].name if key is not None else args[0].name
        return name in context
    values = [_value(a, context) for a in args]
    if len(values) != 2:
        raise RuleError(f"{operator} takes two operands")
    left, right = values
    if left is _MISSING or right is _MISSING:
        return False
    if operator == "eq":
        return _number(left) == _number(right) if not isinstance(left, str) else left == right
    if operator in ("gt", "gte", "lt", "lte"):
        left, right = _number(left), _number(right)
        try:
            return {
                "gt": left > right,
                "gte": left >= right,
                "lt": left < right,
                "lte": left <= right,
            }[operator]
        except TypeError:
            return False
    if operator == "begins_with":
        return str(left).startswith(str(right))
    if operator == "ends_with":
        return str(left).endswith(str(right))
    if operator == "contains":
        return str(right) in str(left)
    if operator == "in":
        return left in right if isinstance(right, list) else str(left) in str(right)
    raise AssertionError(operator)  # every operator is handled above


def _split(args: list, context: Mapping[str, Any]) -> bool:
    keywords = {a[1]: a[2] for a in args if isinstance(a, tuple) and a[0] == "kw"}
    by, pct = keywords.get("by"), keywords.get("pct")
    if not isinstance(by, _Var) or not (isinstance(pct, tuple) and pct[0] == "num"):
        raise RuleError("split needs by::$key and pct::<0-100>")
    percent = pct[1]
    if not 0 <= percent <= 100:
        raise RuleError(f"split's pct must be from 0 to 100, not {percent:g}")
    value = context.get(by.name, _MISSING)
    if value is _MISSING:
        return False
    seed = keywords.get("seed", ("str", ""))[1]
    return bucket(str(value), str(seed)) < percent


def bucket(value: str, seed: str = "") -> float:
    """Where `value` falls in [0, 100) for a split with `seed`: the same place every time."""
    digest = hashlib.sha256(f"{seed}\x00{value}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 * 100


def split_rule(percent: float, by: str = "userId", seed: str = "") -> str:
    """The rule that is true for `percent` % of `$by`'s values (nested as percent grows)."""
    seed_part = f' seed::"{seed}"' if seed else ""
    return f"(split by::${by} pct::{percent:g}{seed_part})"
