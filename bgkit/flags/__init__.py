"""Feature flags: what bgkit reads and writes of an AppConfig feature-flag configuration, and
what a service uses to give a flag release its evidence.

* `rules`: AppConfig's variant rule expressions (the `split` of a rollout among them),
  evaluated for one request's context.
* `document`: the `AWS.AppConfig.FeatureFlags` document as bgkit rolls a flag out in it
  (only the `on` variant's rule changes).
* `metrics`: the per-variant evidence contract (`Requests`, `Errors`, `Latency` by `Flag` and
  `Variant`) and `VariantMetrics`, which keeps it for a Python service.
"""

from .metrics import VariantMetrics

__all__ = ["VariantMetrics"]
