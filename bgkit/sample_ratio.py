"""The sample-ratio check: does green get the share of requests it was configured to get?

A feature flag's split happens in the service (its agent, its cache), not in a load
balancer that bgkit can read back: a broken split, a sticky cache or an agent that never
polled shows up as far fewer (or more) `on` requests than the percentage written. Then the
comparison of `on` with `off` is not the one intended (the users who got `on` are not a
random share), so no verdict on it may promote. Experimenters call this a sample ratio
mismatch (Fabijan et al., "Diagnosing Sample Ratio Mismatch in Online Controlled
Experiments", KDD 2019) and test it with a goodness-of-fit test at a strict level; this is
the two-sided binomial test by its normal approximation, with continuity correction, at
ALPHA.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

ALPHA = 0.001  # a mismatch is called only when a correct split would show it once in 1,000
MIN_REQUESTS = 30  # fewer: no check (the approximation needs some requests)


@dataclass(frozen=True)
class SampleRatio:
    configured_percent: float
    measured_percent: float | None
    requests: int
    p_value: float | None

    @property
    def mismatch(self) -> bool:
        return self.p_value is not None and self.p_value < ALPHA

    def as_dict(self) -> dict[str, object]:
        return {
            "configured_percent": self.configured_percent,
            "measured_percent": self.measured_percent,
            "requests": self.requests,
            "p_value": self.p_value,
            "mismatch": self.mismatch,
        }

    def describe(self) -> str:
        if self.measured_percent is None:
            return f"configured {self.configured_percent:g}% on, no requests measured"
        return (
            f"configured {self.configured_percent:g}% on, measured "
            f"{self.measured_percent:.1f}% of {self.requests} requests (p = {self.p_value:.2g})"
        )


def check(blue_requests: int, green_requests: int, configured_percent: float) -> SampleRatio:
    total = blue_requests + green_requests
    measured = 100 * green_requests / total if total else None
    p = configured_percent / 100
    if total < MIN_REQUESTS or p in (0.0, 1.0):
        return SampleRatio(configured_percent, measured, total, None)
    spread = math.sqrt(total * p * (1 - p))
    z = max(0.0, abs(green_requests - total * p) - 0.5) / spread
    return SampleRatio(configured_percent, measured, total, math.erfc(z / math.sqrt(2)))
