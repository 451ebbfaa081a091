"""The cap on open HTTP connections (``mp.alloc.max-connections``).

Without it, slow or idle clients take file descriptors until ``accept``
fails with EMFILE: then every new client, ``GET /`` and ``/health``
included, is dropped, and Twisted logs each failed accept. With it, a new
connection over the cap first takes the place of the oldest idle one (open,
no request in progress: a keep-alive connection between requests, or one
that has sent nothing yet); when every connection is busy, the new one is
refused at once (``503``, closed). Busy connections are bounded in time by
the request-head deadline and the idle timeout, so room comes back.

The channels call :meth:`ConnectionLimit.admit` when they open,
:meth:`~ConnectionLimit.busy` at the first byte of a request,
:meth:`~ConnectionLimit.idle` when they wait for one, and
:meth:`~ConnectionLimit.release` when they close. Each call is O(1).
"""

from __future__ import annotations

from typing import Any, Protocol

from twisted.logger import Logger

log = Logger(namespace="mpush.web.connection_limit")

_BUSY_BODY = b'{"error":"too many connections","status":503}'
#: Written to a refused connection before it is closed.
BUSY_ANSWER = (
    b"HTTP/1.1 503 Service Unavailable\r\n"
    b"Content-Type: application/json\r\n"
    b"Cache-Control: no-store\r\n"
    b"Retry-After: 1\r\n"
    b"Connection: close\r\n"
    b"Content-Length: %d\r\n\r\n%s" % (len(_BUSY_BODY), _BUSY_BODY)
)


class Closable(Protocol):
    def loseConnection(self) -> Any: ...


class ConnectionLimit:
    """Counts open connections, the idle ones oldest first; makes room or refuses."""

    def __init__(self, max_connections: int) -> None:
        if max_connections < 1:
            raise ValueError(f"max_connections must be >= 1, not {max_connections}")
        self.max_connections = max_connections
        self._open: set[Closable] = set()
        self._idle: dict[Closable, None] = {}  # insertion order: the oldest idle first
        self.refused = 0  # connections refused, every one busy
        self.idle_closed = 0  # idle connections closed to make room

    @property
    def open(self) -> int:
        return len(self._open)

    def admit(self, channel: Closable) -> bool:
        """Counts ``channel`` in (busy), closing the oldest idle one if need be; False: refused."""
        if len(self._open) >= self.max_connections and not self._close_oldest_idle():
            self.refused += 1
            # One format: the log's repeat limit folds a flood into a count.
            log.warn("HTTP connection refused: {open} open, all busy"
                     " (mp.alloc.max-connections {limit})",
                     open=len(self._open), limit=self.max_connections)
            return False
        self._open.add(channel)
        return True

    def idle(self, channel: Closable) -> None:
        if channel in self._open:
            self._idle.pop(channel, None)
            self._idle[channel] = None  # now the newest idle

    def busy(self, channel: Closable) -> None:
        self._idle.pop(channel, None)

    def release(self, channel: Closable) -> None:
        self._open.discard(channel)
        self._idle.pop(channel, None)

    def _close_oldest_idle(self) -> bool:
        if not self._idle:
            return False
        oldest = next(iter(self._idle))
        # Uncounted now: its descriptor closes within a reactor turn (the
        # reserve of fd_limits covers that overlap).
        self.release(oldest)
        self.idle_closed += 1
        oldest.loseConnection()
        return True
