"""``/metrics``: the Prometheus text exposition of the daemon's metrics."""

from __future__ import annotations

from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from twisted.web.server import Request

from mpush.interfaces import MetricsExporter
from mpush.web.base import JsonLeaf

CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4.encode()  # text/plain; version=0.0.4; charset=utf-8


class MetricsResource(JsonLeaf):
    """Leaf at ``/metrics``: ``GET``/``HEAD``, ``text/plain; version=0.0.4``."""

    def __init__(self, metrics: MetricsExporter) -> None:
        super().__init__()
        self._metrics = metrics

    def render_GET(self, request: Request) -> bytes:
        body = self._metrics.exposition()
        request.setHeader(b"content-type", CONTENT_TYPE)
        request.setHeader(b"cache-control", b"no-store")
        return body
