"""``GET /`` and ``GET /ws``: the allocation APIs the mpush client SDKs poll.

The body is prepared by an allocation policy (one per kind of server, each
counting its own handouts); answering does no I/O.
"""

from __future__ import annotations

from twisted.web.resource import Resource
from twisted.web.server import Request

from mpush.config.keys import default
from mpush.interfaces import Policy
from mpush.web.base import JsonResource
from mpush.web.errors import JsonNotFound, json_error, not_found

_TEXT = b"text/plain; charset=utf-8"


class AllocationResource(JsonResource):
    """Answers allocations from one policy: ``ip:port,...`` or 503 + ``Retry-After``.

    ``what`` names the servers listed, for the 503's text. Mounted as a child
    (``/ws``) it is an end point: ``/ws/`` and ``/ws/x`` are 404.
    """

    def __init__(self, allocator: Policy, retry_after: int = default("mp.alloc.retry-after"),
                 *, what: str = "connection server") -> None:
        super().__init__()
        self._allocator = allocator
        self._retry_after = str(retry_after).encode()
        self._unknown = f"no {what} known yet"
        self._not_found = JsonNotFound()

    def getChild(self, path: bytes, request: Request) -> Resource:
        return self._not_found

    def render(self, request: Request) -> bytes | int:
        # The hot path (benchmarked): GET straight to the policy's prepared
        # bytes, as before the base class; the base's dispatch (a dict lookup
        # and a getattr, ~0.1 µs) only for HEAD and the 405s.
        if request.method == b"GET":
            return self._answer(request, self._allocator.allocate())
        return super().render(request)

    def render_GET(self, request: Request) -> bytes:
        return self._answer(request, self._allocator.allocate())

    def head_body(self, request: Request) -> bytes:
        # A HEAD is no allocation: show the body's size, count nothing.
        return self._answer(request, self._allocator.body)

    def _answer(self, request: Request, body: bytes | None) -> bytes:
        if body is None:
            request.setHeader(b"retry-after", self._retry_after)
            return json_error(request, 503, self._unknown)
        request.setHeader(b"content-type", _TEXT)
        return body


class RootResource(AllocationResource):
    """``/`` answers allocations of connection servers; named children hold the
    other endpoints."""

    def getChild(self, path: bytes, request: Request) -> Resource:
        # Only the bare "/" is the allocation API; "/anything" is 404 and so
        # is "//", which twisted.web would otherwise map to this resource.
        if path == b"" and not request.postpath:
            return self
        return self._not_found


class WebsocketResource(AllocationResource):
    """``/ws``: the WebSocket servers (``/cluster/ws``), least loaded first."""

    isLeaf = True

    def __init__(self, allocator: Policy,
                 retry_after: int = default("mp.alloc.retry-after")) -> None:
        super().__init__(allocator, retry_after, what="WebSocket server")

    def render(self, request: Request) -> bytes | int:
        if request.postpath:
            # A leaf: "/ws/" and "/ws/x" land here too; only "/ws" is the endpoint.
            return not_found(request)
        return super().render(request)


class AdminRoot(Resource):
    """The admin port's root: named children only, any other path (``/`` too) 404."""

    def __init__(self) -> None:
        super().__init__()
        self._not_found = JsonNotFound()

    def getChild(self, path: bytes, request: Request) -> Resource:
        return self._not_found

    def render(self, request: Request) -> bytes:
        return self._not_found.render(request)
