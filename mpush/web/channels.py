"""The Site's HTTP/1.1 channels: tracked while open, with request deadlines.

:class:`TrackedChannel` is known to its site while it is open, so that the
drain can close it. :class:`RequestDeadlineChannel` adds the deadlines of a
request's head and body. Both read no more than their client reads
(:class:`mpush.web.paced.PacedChannel`) and refuse what is not plain
HTTP/1.1 (:class:`mpush.web.framing.StrictChannel`).
"""

from __future__ import annotations

from typing import Any

from twisted.internet.interfaces import IDelayedCall
from twisted.web.http import HTTPChannel
from twisted.web.server import Request

from mpush.web.connection_limit import BUSY_ANSWER
from mpush.web.paced import PacedChannel
from mpush.web.raw_answers import raw_error

__all__ = ["RequestDeadlineChannel", "TrackedChannel"]

_HEAD_TIMEOUT_ANSWER = raw_error(408, "request head not complete in time")
_BODY_TIMEOUT_ANSWER = raw_error(408, "request body not complete in time")


class TrackedChannel(PacedChannel):
    """An HTTP channel that its site knows while it is open (for the drain at stop)."""

    def connectionMade(self) -> None:
        PacedChannel.connectionMade(self)
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
        PacedChannel.connectionLost(self, reason)

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


class RequestDeadlineChannel(TrackedChannel):
    """An HTTP/1.1 channel that drops a client whose request head or body is not in in time.

    twisted.web's idle timeout is reset by every byte, so a client sending
    one byte a second would hold its connection (and a Request) for ever.
    Here the head (request line and headers) must be complete within
    ``site.request_head_timeout`` seconds: counted from the connection's
    opening for its first request (a silent connection is dropped as well),
    and from the first byte of each later request on a keep-alive
    connection (the idle time between requests stays under the Site's idle
    timeout). The body, if the head announces one, must then be complete
    within ``site.request_body_timeout`` seconds of the head's end (None: no
    body deadline; its size is bounded by ``max_request_size`` anyway). On
    expiry the client gets ``408`` (if it sent anything of the request) and
    the connection is closed.

    Cheap on the ``GET /`` path: one DelayedCall per connection, scheduled
    at its opening and cancelled at its close. A request only stamps when
    its head started and clears the stamp when the headers are in (a body,
    when its bytes are all in); the check, when it fires, finds nothing to
    do, or re-arms itself for a later deadline (at most once per timeout
    period).

    HTTP/2 is never negotiated (no ALPN is offered), so this channel is the
    one that serves the whole connection.
    """

    _head_timeout: float
    _body_timeout: float | None
    _deadline_call: IDelayedCall | None = None
    _head_started: float | None = None  # when the head in progress started; None: none is
    _head_idle = False  # a head is awaited and none of its bytes has arrived yet
    _body_started: float | None = None  # when the body in progress started (its head ended)

    # HTTPChannel.x(self, ...) rather than super(): this is every request's path.

    def connectionMade(self) -> None:
        TrackedChannel.connectionMade(self)
        self._head_timeout = self.site.request_head_timeout
        self._body_timeout = self.site.request_body_timeout
        self._seconds = self.site.reactor.seconds  # the clock callLater runs on
        self._head_idle = True
        self._head_started = self._seconds()
        self._deadline_call = self.callLater(self._head_timeout, self._check_deadline)
        self._set_idle(True)  # nothing sent yet: the first to make room

    def dataReceived(self, data: bytes) -> None:
        # While the connection is held (paced), what comes is not read yet:
        # its head's time starts when it is.
        if self._head_idle and not self.paused:  # the first byte of a head
            self._head_idle = False
            self._set_idle(False)
            if self._head_started is None:  # a keep-alive request: its clock starts now
                self._head_started = now = self._seconds()
                self._arm(now, self._head_timeout)
        HTTPChannel.dataReceived(self, data)

    def allHeadersReceived(self) -> None:
        # No cancel: a pending check will find no head in progress and go idle.
        self._head_started = None
        self._head_idle = False  # (a head with no byte cannot end; kept exact anyway)
        TrackedChannel.allHeadersReceived(self)
        # A body is announced (0: none; None: chunked), unless the request was
        # refused or answered from its head alone.
        if (self.length != 0 and self._body_timeout is not None
                and not self.transport.disconnecting):
            self._body_started = now = self._seconds()
            self._arm(now, self._body_timeout)

    def _finishRequestBody(self, data: bytes) -> None:
        # twisted.web calls this once a body is all in (never for a request without one).
        self._body_started = None
        TrackedChannel._finishRequestBody(self, data)

    def requestDone(self, request: Request) -> None:
        # Before HTTPChannel's: it replays pipelined data through dataReceived,
        # which must see that the next head is awaited.
        if self.persistent:
            self._head_idle = True
            self._set_idle(True)
        TrackedChannel.requestDone(self, request)
        if self._head_idle and self._buffer and not self.paused:
            # The next head came with this request's bytes (pipelined) and
            # is parsed now, without a dataReceived: its time starts now.
            self._head_idle = False
            self._set_idle(False)
            self._head_started = now = self._seconds()
            self._arm(now, self._head_timeout)

    def connectionLost(self, reason: Any) -> None:
        self._head_idle = False
        self._head_started = self._body_started = None
        call, self._deadline_call = self._deadline_call, None
        if call is not None:
            call.cancel()  # else the reactor would keep the channel for up to a timeout
        TrackedChannel.connectionLost(self, reason)

    def _set_idle(self, idle: bool) -> None:
        """Tell the connection cap whether this connection may be closed to make room."""
        limit = self.site.connection_limit
        if limit is not None:
            (limit.idle if idle else limit.busy)(self)

    def _arm(self, now: float, timeout: float) -> None:
        """Have a check run by ``now + timeout``: the one pending, or a new one."""
        call = self._deadline_call
        if call is None:
            self._deadline_call = self.callLater(timeout, self._check_deadline)
        elif call.getTime() > now + timeout:  # set for a later deadline (a longer timeout)
            call.reset(timeout)
        # Else it comes first and re-arms itself for this deadline.

    def _check_deadline(self) -> None:
        self._deadline_call = None
        if self._head_started is not None:
            due = self._head_started + self._head_timeout
        elif self._body_started is not None and self._body_timeout is not None:
            due = self._body_started + self._body_timeout
        else:
            return  # nothing in progress: the next head or body arms a check
        left = due - self._seconds()
        if left > 0.001:  # a later deadline than the one this check was set for
            self._deadline_call = self.callLater(left, self._check_deadline)
            return
        # Counted, not logged: a slow-client flood must not flood the log too.
        if self._head_started is not None:
            self.site.head_timeouts += 1
            # Part of a request came: say why it ends (a silent connection just closes).
            self.close_refused(None if self._head_idle else _HEAD_TIMEOUT_ANSWER)
        else:
            self.site.body_timeouts += 1
            self.close_refused(_BODY_TIMEOUT_ANSWER)

    def close_refused(self, answer: bytes | None) -> None:
        self._head_started = self._body_started = None  # no deadline left to check
        self._head_idle = False
        TrackedChannel.close_refused(self, answer)
