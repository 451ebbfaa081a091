"""Reading a connection only as fast as its client takes the answers.

twisted.web answers pipelined requests one after the other as it parses
them, and goes on reading whatever happens to the answers: its
``HTTPChannel.pauseProducing`` (the transport's write buffer is full) stops
reading only if no request is being handled at that very moment, which
with answers written at once is never the case. So a client that pipelines
``GET /openapi.json`` and never reads had every answer buffered, gigabytes
in seconds, and the reactor busy copying them. :class:`PacedChannel`:

* parses no further request, and does not read the connection, while the
  transport holds more unsent bytes than its buffer size (64 KiB), until
  it has sent them;
* serves at most ``PIPELINE_BURST`` requests back to back while more are
  waiting (pipelined), then stops reading and parsing until the next turn
  of the reactor, so that the other connections are served in between;
* aborts the connection (its unsent answers dropped) when the client has
  not taken them within ``site.client_stall_timeout`` seconds.

What one connection costs is then bounded: one read of requests (64 KiB)
waiting to be parsed, and the transport's buffer plus one answer.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.interfaces import IDelayedCall
from twisted.web.server import Request

from mpush.web.framing import StrictChannel

__all__ = ["PIPELINE_BURST", "PacedChannel"]

#: Most requests served back to back on one connection while more wait.
PIPELINE_BURST = 8


class PacedChannel(StrictChannel):
    """An HTTP/1.1 channel that reads no more than its client reads.

    ``paused`` (LineReceiver's flag: no further line is parsed) is set while
    the connection is held, and the transport is paused with it.
    """

    _stall_timeout: float | None = None
    _stall_call: IDelayedCall | None = None  # aborts a client leaving answers unread
    _resume_call: IDelayedCall | None = None  # the next turn of a held burst
    _served = 0  # requests served back to back while more were waiting

    def connectionMade(self) -> None:
        StrictChannel.connectionMade(self)
        self._stall_timeout = getattr(self.site, "client_stall_timeout", None)

    def requestDone(self, request: Request) -> None:
        # Pipelined data waits unparsed in LineReceiver's buffer, or in
        # HTTPChannel's while a request was being handled.
        self._served = self._served + 1 if self._buffer or self._dataBuffer else 0
        hold = self.persistent and (self._waitingForTransport
                                    or self._served >= PIPELINE_BURST)
        if hold:
            self.paused = True  # HTTPChannel's replay of the waiting data stays unparsed
        StrictChannel.requestDone(self, request)
        if hold:
            self._networkProducer.pauseProducing()
            if not self._waitingForTransport and self._resume_call is None:
                self._resume_call = self.callLater(0, self._resume_reading)

    def pauseProducing(self) -> None:
        # The transport's buffer is full. HTTPChannel stops reading only when
        # no request is being handled: stop in any case.
        StrictChannel.pauseProducing(self)
        self._networkProducer.pauseProducing()
        if not self._handlingRequest:
            self.paused = True
        if self._stall_timeout is not None and self._stall_call is None:
            self._stall_call = self.callLater(self._stall_timeout, self._stalled)

    def resumeProducing(self) -> None:
        # The transport has sent everything: the client reads again.
        call, self._stall_call = self._stall_call, None
        if call is not None:
            call.cancel()
        StrictChannel.resumeProducing(self)
        if self.paused:
            self._resume_reading()

    def connectionLost(self, reason: Any) -> None:
        for call in (self._stall_call, self._resume_call):
            if call is not None and call.active():
                call.cancel()
        self._stall_call = self._resume_call = None
        StrictChannel.connectionLost(self, reason)

    def _resume_reading(self) -> None:
        self._resume_call = None
        if not self.paused or self._waitingForTransport or self.transport.disconnecting:
            return  # not held, or held until the transport has sent its buffer
        self.paused = False
        self._served = 0
        self._networkProducer.resumeProducing()
        if self._buffer and not self._busyReceiving:
            self.dataReceived(b"")  # parse what waited (it may hold again)

    def _stalled(self) -> None:
        self._stall_call = None
        # Counted, not logged: a flood of such clients must not flood the log.
        self.site.stalled_clients += 1
        self.transport.abortConnection()
