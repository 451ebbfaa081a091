"""The ``twisted.web`` Site: bounded requests, request deadlines, per-path counts."""

from __future__ import annotations

from collections.abc import Callable
from io import BytesIO
from time import perf_counter
from typing import Any
from urllib.parse import unquote_to_bytes

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.web.http import _GenericHTTPChannelProtocol
from twisted.web.resource import Resource, getChildForRequest
from twisted.web.server import Request, Site

from mpush.config.keys import default
from mpush.web.channels import RequestDeadlineChannel, TrackedChannel
from mpush.web.connection_limit import ConnectionLimit
from mpush.web.errors import json_error

DEFAULT_MAX_REQUEST_SIZE: int = default("mp.alloc.max-request-size")  # bytes
DEFAULT_REQUEST_HEAD_TIMEOUT: float = default("mp.alloc.request-head-timeout")  # s
DEFAULT_REQUEST_BODY_TIMEOUT: float = default("mp.alloc.request-body-timeout")  # s
DEFAULT_CLIENT_STALL_TIMEOUT: float = default("mp.alloc.client-stall-timeout")  # s

#: The paths counted under their own name in ``AllocSite.requests``; every
#: ``/users/<id>`` is counted as ``b"/users"``, any other path as ``b"other"``,
#: so the counts stay bounded whatever clients ask for.
COUNTED_PATHS = frozenset({b"/", b"/ws", b"/push", b"/health", b"/metrics", b"/index.html",
                           b"/openapi.json", b"/cluster", b"/config"})
USERS_PATH = b"/users"
OTHER_PATH = b"other"


def routed_path(request: Request) -> bytes:
    """The path as twisted.web routed it: ``/%70ush`` reached ``/push``.

    twisted.web decodes each segment on its own, so a segment holding an
    encoded ``/`` (``/pu%2Fsh``) named no route of ours: its raw path is kept.
    """
    path = request.path
    if b"%" not in path or not path.startswith(b"/"):
        return path  # "*" too
    segments = getattr(request, "prepath", []) + getattr(request, "postpath", [])
    if any(b"/" in segment for segment in segments):
        return path
    return b"/" + b"/".join(segments)


class LimitedRequest(Request):
    """A Request that refuses a body before buffering it: too large, or not wanted.

    twisted.web reads the whole body before any resource sees the request,
    so the limits are enforced here, as soon as the headers are in:

    * a request its resource refuses from the head alone (``/push`` without
      access: see ``AllocSite.refuses_from_head``) is served at once, as if
      its body were empty, and the connection closed after, the body unread;
    * a declared Content-Length over ``site.max_request_size`` is answered
      ``413`` without reading the body; a chunked body is counted as it
      streams and answered ``413`` once it passes the limit. Either way the
      connection is then closed (the client may still be sending).

    A body-less ``GET`` costs one branch.
    """

    refused = False  # answered already, from its head or body: never to be rendered
    _received = 0
    received_at = 0.0  # perf_counter() when the whole request was in

    def gotLength(self, length: int | None) -> None:
        if length == 0:  # no body: no lookup, GET / stays cheap
            super().gotLength(length)
            return
        site = self.channel.site
        if site.refuses_from_head(self):
            self._serve_without_body()
        elif length is None:
            # Chunked: bounded by the limit, so memory will do (twisted.web
            # would open a temporary file for every chunked request).
            self.content = BytesIO()
        elif length > site.max_request_size:
            self._refuse()
        else:
            super().gotLength(length)

    def handleContentChunk(self, data: bytes) -> None:
        if self.refused:
            return  # the rest of a refused body, already in our read buffer
        self._received += len(data)
        if self._received > self.channel.site.max_request_size:
            self._refuse()
            return
        self.content.write(data)

    def requestReceived(self, command: bytes, path: bytes, version: bytes) -> None:
        if self.refused:
            return  # answered already; the body's end must not start a render
        self.received_at = perf_counter()  # for the GET / latency (AllocSite.log)
        super().requestReceived(command, path, version)

    def _handleStar(self) -> None:
        # "*" (OPTIONS *: the server as a whole) names no resource: 405 JSON,
        # as for a method a path lacks, and no method in Allow.
        self.setHeader(b"allow", b"")
        method = self.method.decode("ascii", "replace")
        body = json_error(self, 405, f"no method is served on * ({method} * refused)")
        self.setHeader(b"content-length", b"%d" % len(body))
        self.write(body)
        self.finish()

    def _serve_without_body(self) -> None:
        # A final answer replaces the "100 Continue" twisted.web would send
        # next (it checks this header right after gotLength).
        self.requestHeaders.removeHeader(b"expect")
        self.setHeader(b"connection", b"close")  # the body that follows is never read
        self.channel.skip_body()
        super().gotLength(0)

    def _refuse(self) -> None:
        channel = self.channel
        channel.site.body_refusals += 1
        limit = channel.site.max_request_size
        # A final answer replaces the "100 Continue" twisted.web would send
        # next (it checks this header right after gotLength).
        self.requestHeaders.removeHeader(b"expect")
        # Stops reading too: the rest of the body is never read.
        channel.refuse(413, f"request body over the limit of {limit} bytes", limit=limit)


class AllocSite(Site):
    """A Site whose per-request access log is off unless a file is given.

    Access logging through the twistd log halves ``GET /`` throughput, so it
    is opt-in, and then goes to its own file (Site's ``logPath``). Request
    bodies over ``max_request_size`` bytes are refused, and so are bodies of
    requests refused from their head (``LimitedRequest``); a request head
    not complete within ``request_head_timeout`` seconds, or a body within
    ``request_body_timeout`` seconds of its head, is dropped
    (``RequestDeadlineChannel``; a head timeout of None: no deadline at all);
    a connection is read only as fast as its client reads the answers, and
    aborted when it leaves them unread for ``client_stall_timeout`` seconds
    (``PacedChannel``; None: never); form bodies are never parsed (no
    endpoint takes forms).
    """

    requestFactory = LimitedRequest

    def __init__(self, resource: Resource, access_log: str | None = None,
                 timeout: float = 60.0,
                 max_request_size: int = DEFAULT_MAX_REQUEST_SIZE,
                 request_head_timeout: float | None = DEFAULT_REQUEST_HEAD_TIMEOUT,
                 request_body_timeout: float | None = DEFAULT_REQUEST_BODY_TIMEOUT,
                 client_stall_timeout: float | None = DEFAULT_CLIENT_STALL_TIMEOUT,
                 reactor: IReactorTime | None = None,
                 connection_limit: ConnectionLimit | None = None) -> None:
        super().__init__(resource, logPath=access_log, timeout=timeout,
                         parsePOSTFormSubmission=False, reactor=reactor)
        self.noisy = False
        self._access_log_on = access_log is not None
        self.max_request_size = max_request_size
        self.request_head_timeout = request_head_timeout
        self.request_body_timeout = request_body_timeout
        self.client_stall_timeout = client_stall_timeout
        self.head_timeouts = 0  # connections dropped for a late request head
        self.body_timeouts = 0  # connections dropped for a late request body
        self.stalled_clients = 0  # connections aborted: their answers left unread
        self.body_refusals = 0  # requests refused (413) from their body's size, unread
        # Answered requests by (path, status); path is one of COUNTED_PATHS or OTHER_PATH.
        self.requests: dict[tuple[bytes, int], int] = {}
        # Called with the seconds from a GET /'s complete receipt to its answer.
        self.observe_root: Callable[[float], None] | None = None
        self.channels: set[TrackedChannel] = set()  # open HTTP connections
        self.connection_limit = connection_limit  # None: no cap

    def protocol(self) -> _GenericHTTPChannelProtocol:  # type: ignore[override]
        # Factory.buildProtocol calls self.protocol(); twisted.web's own
        # factory builds the same wrapper around a plain HTTPChannel.
        if self.request_head_timeout is None:
            return _GenericHTTPChannelProtocol(TrackedChannel())
        return _GenericHTTPChannelProtocol(RequestDeadlineChannel())

    def refuses_from_head(self, request: Request) -> bool:
        """Whether the resource ``request`` names refuses it whatever its body says.

        Asked (by ``LimitedRequest``) once the head of a request with a body
        is in: a resource with a ``refuses_from_head(request, method)`` (the
        access rule of ``/push``) is found as twisted.web will find it, and
        a refusal is then answered before the body is read.
        """
        method, target = request.channel.request_target()
        segments = target.split(b"?", 1)[0][1:].split(b"/")
        # As Request.process sets them, which does so again for the render.
        request.prepath, request.postpath = [], [unquote_to_bytes(s) for s in segments]
        resource = getChildForRequest(self.resource, request)
        refuses = getattr(resource, "refuses_from_head", None)
        return refuses is not None and bool(refuses(request, method))

    def close_connections(self, wait: float) -> Deferred[tuple[int, int]]:
        """Stop: close every open connection once its answer is written.

        Each connection ends after the answer in progress (none is cut
        short), idle keep-alive connections at once, both after their
        written bytes went out. Those still open after ``wait`` seconds (a
        client that stopped reading) are aborted. Fires with (closed,
        aborted).
        """
        channels = list(self.channels)
        done: Deferred[tuple[int, int]] = Deferred()
        if not channels:
            done.callback((0, 0))
            return done
        for channel in channels:
            channel.close_when_done()
        clock = self.reactor
        step = min(0.02, wait) if wait > 0 else 0.0
        deadline = clock.seconds() + wait

        def check() -> None:
            left = [c for c in channels if c in self.channels]
            if not left:
                done.callback((len(channels), 0))
            elif clock.seconds() >= deadline:
                for channel in left:
                    channel.transport.abortConnection()
                done.callback((len(channels) - len(left), len(left)))
            else:
                clock.callLater(step, check)

        clock.callLater(0, check)
        return done

    def log(self, request: Any) -> None:
        # Request.finish calls this once per answered request: the place to
        # count them, at the cost of a few dict operations.
        path = request.path
        if path not in COUNTED_PATHS:
            path = routed_path(request)
            if path not in COUNTED_PATHS:
                path = USERS_PATH if path.startswith(b"/users/") else OTHER_PATH
        key = (path, request.code)
        counts = self.requests
        counts[key] = counts.get(key, 0) + 1
        if path == b"/" and request.method == b"GET":
            observe = self.observe_root
            if observe is not None:
                observe(perf_counter() - request.received_at)
        if self._access_log_on:
            super().log(request)
