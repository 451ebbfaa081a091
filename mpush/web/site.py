"""The ``twisted.web`` Site: bounded requests, head deadlines, per-path counts."""

from __future__ import annotations

import json
from collections.abc import Callable
from io import BytesIO
from time import perf_counter
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import (
    IDelayedCall,
    IReactorTime,
)
from twisted.web.http import HTTPChannel, _GenericHTTPChannelProtocol
from twisted.web.resource import Resource
from twisted.web.server import Request, Site

from mpush.config.keys import default
from mpush.web.connection_limit import BUSY_ANSWER, ConnectionLimit

DEFAULT_MAX_REQUEST_SIZE: int = default("mp.alloc.max-request-size")  # bytes
DEFAULT_REQUEST_HEAD_TIMEOUT: float = default("mp.alloc.request-head-timeout")  # s

#: The paths counted under their own name in ``AllocSite.requests``; every
#: ``/users/<id>`` is counted as ``b"/users"``, any other path as ``b"other"``,
#: so the counts stay bounded whatever clients ask for.
COUNTED_PATHS = frozenset({b"/", b"/push", b"/health", b"/metrics", b"/index.html",
                           b"/openapi.json", b"/cluster", b"/config"})
USERS_PATH = b"/users"
OTHER_PATH = b"other"


class LimitedRequest(Request):
    """A Request that refuses a body over ``site.max_request_size`` before buffering it.

    twisted.web reads the whole body before any resource sees the request,
    so the limit is enforced here: a declared Content-Length over the limit
    is answered ``413`` as soon as the headers are in, without reading the
    body; a chunked body is counted as it streams and answered ``413`` once
    it passes the limit. Either way the connection is then closed (the
    client may still be sending). A body-less ``GET`` costs one branch.
    """

    _refused = False
    _received = 0
    received_at = 0.0  # perf_counter() when the whole request was in

    def gotLength(self, length: int | None) -> None:
        if length:  # 0 (no body) skips the limit lookup: GET / stays cheap
            if length > self.channel.site.max_request_size:
                self._refuse()
                return
            super().gotLength(length)
        elif length is None:
            # Chunked: bounded by the limit, so memory will do (twisted.web
            # would open a temporary file for every chunked request).
            self.content = BytesIO()
        else:
            super().gotLength(length)

    def handleContentChunk(self, data: bytes) -> None:
        if self._refused:
            return  # the rest of a refused body, already in our read buffer
        self._received += len(data)
        if self._received > self.channel.site.max_request_size:
            self._refuse()
            return
        self.content.write(data)

    def requestReceived(self, command: bytes, path: bytes, version: bytes) -> None:
        if self._refused:
            return  # answered already; the body's end must not start a render
        self.received_at = perf_counter()  # for the GET / latency (AllocSite.log)
        super().requestReceived(command, path, version)

    def _refuse(self) -> None:
        self._refused = True
        channel = self.channel
        channel.site.body_refusals += 1
        limit = channel.site.max_request_size
        # A final answer replaces the "100 Continue" twisted.web would send
        # next (it checks this header right after gotLength).
        self.requestHeaders.removeHeader(b"expect")
        body = json.dumps(
            {"error": f"request body over the limit of {limit} bytes", "status": 413,
             "limit": limit},
            separators=(",", ":"),
        ).encode()
        # The request line is not parsed into this object yet, so the
        # Request's own response machinery cannot be used: write it raw.
        channel.transport.write(
            b"HTTP/1.1 413 Content Too Large\r\n"
            b"Content-Type: application/json\r\n"
            b"Cache-Control: no-store\r\n"
            b"Connection: close\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
        )
        # Stops reading too: the rest of the body is never read.
        channel.loseConnection()


_HEAD_TIMEOUT_BODY = b'{"error":"request head not complete in time","status":408}'
_HEAD_TIMEOUT_ANSWER = (
    b"HTTP/1.1 408 Request Timeout\r\n"
    b"Content-Type: application/json\r\n"
    b"Cache-Control: no-store\r\n"
    b"Connection: close\r\n"
    b"Content-Length: %d\r\n\r\n%s" % (len(_HEAD_TIMEOUT_BODY), _HEAD_TIMEOUT_BODY)
)


class TrackedChannel(HTTPChannel):
    """An HTTP channel that its site knows while it is open (for the drain at stop)."""

    def connectionMade(self) -> None:
        HTTPChannel.connectionMade(self)
        limit = getattr(self.site, "connection_limit", None)
        if limit is not None and not limit.admit(self):
            self.transport.write(BUSY_ANSWER)
            self.loseConnection()
            return
        channels = getattr(self.site, "channels", None)
        if channels is not None:
            channels.add(self)

    def connectionLost(self, reason: Any) -> None:
        channels = getattr(self.site, "channels", None)
        if channels is not None:
            channels.discard(self)
        limit = getattr(self.site, "connection_limit", None)
        if limit is not None:
            limit.release(self)
        HTTPChannel.connectionLost(self, reason)

    def close_when_done(self) -> None:
        """Close once the answer in progress (if any) is written; no further request."""
        self.persistent = False
        for request in self.requests:
            if not request.startedWriting:
                # Say so in the answer: the client must not reuse the connection.
                request.setHeader(b"connection", b"close")
        if not self._handlingRequest:
            # Idle (or mid-head: no answer was begun): close now; what is
            # already written still goes out first.
            self.loseConnection()
        # Else HTTPChannel.requestDone closes it after the answer.


class HeadDeadlineChannel(TrackedChannel):
    """An HTTP/1.1 channel that drops a client whose request head is not complete in time.

    twisted.web's idle timeout is reset by every byte, so a client sending
    one header byte a second would hold its connection (and a Request) for
    ever. Here the head (request line and headers) must be complete within
    ``site.request_head_timeout`` seconds: counted from the connection's
    opening for its first request (a silent connection is dropped as well),
    and from the first byte of each later request on a keep-alive
    connection (the idle time between requests stays under the Site's idle
    timeout). On expiry the client gets ``408`` (if it sent anything of the
    head) and the connection is closed. The body is not covered: its size
    is bounded by ``max_request_size``, its pace only by the idle timeout.

    Cheap on the ``GET /`` path: one DelayedCall per connection, scheduled
    at its opening and cancelled at its close. A request only stamps when
    its head started and clears the stamp when the headers are in; the
    check, when it fires, finds nothing to do, or re-arms itself for a later
    head's own deadline (at most once per timeout period).

    HTTP/2 is never negotiated (no ALPN is offered), so this channel is the
    one that serves the whole connection.
    """

    _head_timeout = DEFAULT_REQUEST_HEAD_TIMEOUT
    _head_call: IDelayedCall | None = None
    _head_started: float | None = None  # when the head in progress started; None: none is
    _head_idle = False  # a head is awaited and none of its bytes has arrived yet

    # HTTPChannel.x(self, ...) rather than super(): this is every request's path.

    def connectionMade(self) -> None:
        TrackedChannel.connectionMade(self)
        self._head_timeout = self.site.request_head_timeout
        self._seconds = self.site.reactor.seconds  # the clock callLater runs on
        self._head_idle = True
        self._head_started = self._seconds()
        self._head_call = self.callLater(self._head_timeout, self._check_head)
        if self.site.connection_limit is not None:
            self.site.connection_limit.idle(self)  # nothing sent yet: the first to make room

    def dataReceived(self, data: bytes) -> None:
        if self._head_idle:  # the first byte of a head
            self._head_idle = False
            if self.site.connection_limit is not None:
                self.site.connection_limit.busy(self)
            if self._head_started is None:  # a keep-alive request: its clock starts now
                self._head_started = self._seconds()
                if self._head_call is None:
                    self._head_call = self.callLater(self._head_timeout, self._check_head)
        HTTPChannel.dataReceived(self, data)

    def allHeadersReceived(self) -> None:
        # No cancel: a pending check will find no head in progress and go idle.
        self._head_started = None
        self._head_idle = False  # (a head with no byte cannot end; kept exact anyway)
        HTTPChannel.allHeadersReceived(self)

    def requestDone(self, request: Request) -> None:
        # Before HTTPChannel's: it replays pipelined data through dataReceived,
        # which must see that the next head is awaited.
        if self.persistent:
            self._head_idle = True
            if self.site.connection_limit is not None:
                self.site.connection_limit.idle(self)
        HTTPChannel.requestDone(self, request)

    def connectionLost(self, reason: Any) -> None:
        self._head_idle = False
        self._head_started = None
        call, self._head_call = self._head_call, None
        if call is not None:
            call.cancel()  # else the reactor would keep the channel for up to a timeout
        TrackedChannel.connectionLost(self, reason)

    def _check_head(self) -> None:
        self._head_call = None
        started = self._head_started
        if started is None:
            return  # no head in progress: the next one arms a check
        left = started + self._head_timeout - self._seconds()
        if left > 0.001:  # a later head than the one this check was set for
            self._head_call = self.callLater(left, self._check_head)
            return
        self._head_started = None
        # Counted, not logged: a slow-header flood must not flood the log too.
        self.site.head_timeouts += 1
        if not self._head_idle:  # part of a request came: say why it ends
            self.transport.write(_HEAD_TIMEOUT_ANSWER)
        self._head_idle = False
        # As twisted.web's own idle timeout does: close, and abort if the
        # client does not let the connection close.
        if self.abortTimeout is not None:
            self._abortingCall = self.callLater(self.abortTimeout, self.forceAbortClient)
        self.loseConnection()


class AllocSite(Site):
    """A Site whose per-request access log is off unless a file is given.

    Access logging through the twistd log halves ``GET /`` throughput, so it
    is opt-in, and then goes to its own file (Site's ``logPath``). Request
    bodies over ``max_request_size`` bytes are refused (``LimitedRequest``),
    a request head not complete within ``request_head_timeout`` seconds is
    dropped (``HeadDeadlineChannel``; None = no deadline), and form bodies
    are never parsed (no endpoint takes forms).
    """

    requestFactory = LimitedRequest

    def __init__(self, resource: Resource, access_log: str | None = None,
                 timeout: float = 60.0,
                 max_request_size: int = DEFAULT_MAX_REQUEST_SIZE,
                 request_head_timeout: float | None = DEFAULT_REQUEST_HEAD_TIMEOUT,
                 reactor: IReactorTime | None = None,
                 connection_limit: ConnectionLimit | None = None) -> None:
        super().__init__(resource, logPath=access_log, timeout=timeout,
                         parsePOSTFormSubmission=False, reactor=reactor)
        self.noisy = False
        self._access_log_on = access_log is not None
        self.max_request_size = max_request_size
        self.request_head_timeout = request_head_timeout
        self.head_timeouts = 0  # connections dropped for a late request head
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
        return _GenericHTTPChannelProtocol(HeadDeadlineChannel())

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
