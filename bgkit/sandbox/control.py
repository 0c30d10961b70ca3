"""The sandbox's AWS control plane: moto in server mode on loopback, with the gaps filled.

Gaps filled here, behind the same HTTP API that boto3 calls:

* CloudWatch percentile statistics (``p50``, ``p99``, ``p99.9``...) in GetMetricData.
  moto stores every value sent with ``Values``/``Counts`` but answers only Sum, Average,
  Minimum, Maximum and SampleCount. CloudWatch computes percentiles over the raw values
  of the period ("CloudWatch statistics definitions", Percentile); this uses the
  nearest-rank percentile of the stored values.
"""

from __future__ import annotations

import math
import re
import threading

from moto.cloudwatch import models as cloudwatch_models
from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)
from werkzeug.serving import make_server

_PERCENTILE = re.compile(r"^p(\d{1,2}(\.\d+)?|100)$")
_installed = False
_install_lock = threading.Lock()


def _percentile(values: list[float], stat: str) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(float(stat[1:]) / 100 * len(ordered)))
    return ordered[rank - 1]


def install_gap_fills() -> None:
    global _installed
    with _install_lock:
        if _installed:
            return
        original = cloudwatch_models.Statistics.get_statistics_for_type

        def get_statistics_for_type(self, stat):  # type: ignore[no-untyped-def]
            if _PERCENTILE.match(stat):
                return _percentile(self.metric_single_values_list, stat)
            return original(self, stat)

        cloudwatch_models.Statistics.get_statistics_for_type = get_statistics_for_type
        _installed = True


class _QuietHandler(MotoRequestHandler):
    def log_request(self, code="-", size="-"):  # type: ignore[no-untyped-def]
        """The sandbox serves many requests a second; no access log."""


class ControlPlane:
    """moto's server in a thread of this process, on 127.0.0.1 and a free port."""

    def __init__(self) -> None:
        self._server = None
        self._thread: threading.Thread | None = None

    def start(self) -> ControlPlane:
        install_gap_fills()
        app = DomainDispatcherApplication(create_backend_app)
        self._server = make_server(
            "127.0.0.1", 0, app, threaded=True, request_handler=_QuietHandler
        )
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="bgkit-moto", daemon=True
        )
        self._thread.start()
        return self

    @property
    def endpoint_url(self) -> str:
        assert self._server is not None, "start() first"
        return f"http://127.0.0.1:{self._server.server_port}"

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._thread.join(timeout=5)
            self._server = None
