"""``/metrics``: the Prometheus text exposition of the daemon's metrics."""

from __future__ import annotations

from typing import Protocol

from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from twisted.web.resource import Resource
from twisted.web.server import Request

from mpush.web.errors import json_error, method_not_allowed

CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4.encode()  # text/plain; version=0.0.4; charset=utf-8
_ALLOWED = (b"GET", b"HEAD")


class Exposition(Protocol):
    def exposition(self) -> bytes: ...


class MetricsResource(Resource):
    """Leaf at ``/metrics``: ``GET``/``HEAD``, ``text/plain; version=0.0.4``."""

    isLeaf = True

    def __init__(self, metrics: Exposition) -> None:
        super().__init__()
        self._metrics = metrics

    def render(self, request: Request) -> bytes:
        if request.postpath:
            path = request.path.decode("utf-8", "replace")
            return json_error(request, 404, f"no resource at {path}")
        if request.method not in _ALLOWED:
            return method_not_allowed(request, _ALLOWED)
        body = self._metrics.exposition()
        request.setHeader(b"content-type", CONTENT_TYPE)
        request.setHeader(b"cache-control", b"no-store")
        if request.method == b"HEAD":
            request.setHeader(b"content-length", b"%d" % len(body))
            return b""
        return body
