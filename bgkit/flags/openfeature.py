"""An OpenFeature provider for AWS AppConfig feature flags, resolved through the AppConfig Agent,
and a hook that tags a request's metrics with the variant it was served.

    from openfeature import api
    from openfeature.evaluation_context import EvaluationContext
    from bgkit.flags.openfeature import AppConfigAgentProvider, VariantHook, variant_of

    api.set_provider(AppConfigAgentProvider("http://localhost:2772", "shop", "prod", "flags"))
    api.add_hooks([VariantHook()])
    client = api.get_client()
    on = client.get_boolean_value("new_checkout", False, EvaluationContext(targeting_key=user))
    ...
    metrics.observe(variant_of("new_checkout"), status, elapsed_ms)  # bgkit.flags.metrics

Resolution (AWS: UG "Retrieving basic and multi-variant feature flags"; "How to use AWS
AppConfig Agent", entity-based gradual deployments): `GET
/applications/{app}/environments/{env}/configurations/{profile}?flag=KEY` with the evaluation
context as `Context: key=value` headers (the targeting key as `targeting_key_name`, `userId` by
default) and the targeting key as `Entity-Id`, so a user keeps one configuration version
through a gradual deployment. The agent answers `{"_variant": name, "enabled": ..., attrs}`.

The value: a boolean flag's `enabled`; a string, integer or float flag's attribute `value`
(as AppConfig's own samples name it); an object flag gets the whole answer. The reason: the agent does not say which
rule matched, so it is `DEFAULT` for the variant named `default_variant` (bgkit's `off`),
`SPLIT` for a variant in `split_variants` (bgkit's `on`, served by a percentage split), else
`TARGETING_MATCH`; a basic flag (no variants) is `STATIC`. The variant is `_variant`.

Errors are OpenFeature's: an unknown flag is FLAG_NOT_FOUND (the agent's 404), an agent that does
not answer is GENERAL with the default value; the SDK returns the default and the reason ERROR.
"""

from __future__ import annotations

import contextvars
import http.client
import json
import threading
from collections.abc import Iterable
from typing import Any
from urllib.parse import quote, urlsplit

from openfeature.evaluation_context import EvaluationContext
from openfeature.exception import FlagNotFoundError, GeneralError, TypeMismatchError
from openfeature.flag_evaluation import FlagEvaluationDetails, FlagResolutionDetails, Reason
from openfeature.hook import Hook, HookContext, HookHints
from openfeature.provider import AbstractProvider, Metadata

_VARIANTS: contextvars.ContextVar[dict[str, str]] = contextvars.ContextVar("bgkit_flag_variants")


class AppConfigAgentProvider(AbstractProvider):
    def __init__(
        self,
        agent_url: str,
        application: str,
        environment: str,
        profile: str,
        *,
        targeting_key_name: str = "userId",
        default_variant: str = "off",
        split_variants: Iterable[str] = ("on",),
        timeout: float = 2.0,
    ) -> None:
        parts = urlsplit(agent_url)
        self._address = (parts.hostname or "127.0.0.1", parts.port or 2772)
        self._path = "/" + "/".join(
            quote(p, safe="")
            for p in (
                "applications", application, "environments", environment,
                "configurations", profile,
            )
        )  # fmt: skip
        self.targeting_key_name = targeting_key_name
        self.default_variant = default_variant
        self.split_variants = frozenset(split_variants)
        self.timeout = timeout
        self._local = threading.local()  # one kept-alive connection per thread to the agent

    def get_metadata(self) -> Metadata:
        return Metadata(name="bgkit AppConfig Agent")

    # -- resolution -------------------------------------------------------------------------

    def _answer(self, flag_key: str, context: EvaluationContext | None) -> dict[str, Any]:
        headers = {}
        if context is not None:
            pairs = dict(context.attributes or {})
            if context.targeting_key:
                pairs[self.targeting_key_name] = context.targeting_key
                headers["Entity-Id"] = context.targeting_key
            if pairs:  # values with a comma or = cannot be sent in one header: AWS's format
                headers["Context"] = ",".join(
                    f"{k}={v}" for k, v in pairs.items() if "," not in str(v)
                )
        connection = getattr(self._local, "connection", None)
        if connection is None:
            connection = self._local.connection = http.client.HTTPConnection(
                *self._address, timeout=self.timeout
            )
        try:
            connection.request("GET", f"{self._path}?flag={quote(flag_key)}", headers=headers)
            response = connection.getresponse()
            body = response.read()
        except (OSError, http.client.HTTPException) as error:
            connection.close()
            self._local.connection = None
            raise GeneralError(f"the AppConfig Agent did not answer: {error}") from None
        if response.status == 404:
            raise FlagNotFoundError(f"flag {flag_key!r} is not in the configuration")
        if response.status != 200:
            raise GeneralError(f"the AppConfig Agent answered {response.status}")
        answer = json.loads(body or b"{}")
        if not isinstance(answer, dict):
            raise GeneralError("the AppConfig Agent's answer is not a flag")
        return answer

    def _details(self, answer: dict[str, Any], value: Any) -> FlagResolutionDetails:
        variant = answer.get("_variant")
        if variant is None:
            reason = Reason.STATIC
        elif variant == self.default_variant:
            reason = Reason.DEFAULT
        elif variant in self.split_variants:
            reason = Reason.SPLIT
        else:
            reason = Reason.TARGETING_MATCH
        metadata = {k: v for k, v in answer.items() if isinstance(v, bool | int | float | str)}
        return FlagResolutionDetails(
            value=value, reason=reason, variant=variant, flag_metadata=metadata
        )

    def _typed(self, flag_key: str, context, kind: type | tuple[type, ...], read) -> Any:
        answer = self._answer(flag_key, context)
        value = read(answer)
        if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
            raise TypeMismatchError(f"flag {flag_key!r} is not of the requested type")
        return self._details(answer, value)

    def resolve_boolean_details(
        self,
        flag_key: str,
        default_value: bool,
        evaluation_context: EvaluationContext | None = None,
    ) -> FlagResolutionDetails[bool]:
        return self._typed(flag_key, evaluation_context, bool, lambda a: a.get("enabled"))

    def resolve_string_details(
        self, flag_key: str, default_value: str, evaluation_context: EvaluationContext | None = None
    ) -> FlagResolutionDetails[str]:
        return self._typed(flag_key, evaluation_context, str, lambda a: a.get("value"))

    def resolve_integer_details(
        self, flag_key: str, default_value: int, evaluation_context: EvaluationContext | None = None
    ) -> FlagResolutionDetails[int]:
        return self._typed(flag_key, evaluation_context, int, lambda a: a.get("value"))

    def resolve_float_details(
        self,
        flag_key: str,
        default_value: float,
        evaluation_context: EvaluationContext | None = None,
    ) -> FlagResolutionDetails[float]:
        return self._typed(flag_key, evaluation_context, (int, float), lambda a: a.get("value"))

    def resolve_object_details(
        self,
        flag_key: str,
        default_value: Any,
        evaluation_context: EvaluationContext | None = None,
    ) -> FlagResolutionDetails[Any]:
        return self._typed(flag_key, evaluation_context, dict, lambda a: a)


class VariantHook(Hook):
    """Keeps the variant each flag was served in the current request's context (a contextvar:
    one per thread or task), for `variant_of` when the request's metrics are recorded. An
    evaluation that failed is the default variant's, as the user was served the default."""

    def __init__(self, default_variant: str = "off") -> None:
        self.default_variant = default_variant

    def after(
        self, hook_context: HookContext, details: FlagEvaluationDetails[Any], hints: HookHints
    ) -> None:
        _remember(hook_context.flag_key, details.variant or self.default_variant)

    def error(self, hook_context: HookContext, exception: Exception, hints: HookHints) -> None:
        _remember(hook_context.flag_key, self.default_variant)


def _remember(flag_key: str, variant: str) -> None:
    seen = dict(_VARIANTS.get({}))
    seen[flag_key] = variant
    _VARIANTS.set(seen)


def variant_of(flag_key: str, default: str = "off") -> str:
    """The variant `flag_key` was last served in this context (the request being handled)."""
    return _VARIANTS.get({}).get(flag_key, default)


__all__ = ["AppConfigAgentProvider", "VariantHook", "variant_of"]
