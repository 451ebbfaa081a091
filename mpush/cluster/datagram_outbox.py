"""Datagrams written in one burst at the end of the reactor turn, as TCP writes are.

Why: on loopback (and in a VM) most of a datagram's cost is the system
waking the receiver. Written one by one as pushes come, each datagram finds
the gateway asleep again and pays that wake-up (~30-80 us of our CPU here);
written back to back, only the first does. TCP gets the same from its
transport's buffer, flushed once per reactor turn.

:class:`DatagramOutbox` holds the datagrams of requests already pending
(:mod:`mpush.cluster.gateway_pending`) and sends them with ``socket.sendto``
straight away at the next turn (one ``callLater(0)`` per burst), or at once
when it holds ``max_batch``. A request that ended meanwhile (cancelled, the
daemon stopping) is not sent. A datagram the system refuses ends its request
there, as it would have at once: ``TOO_LARGE`` (EMSGSIZE), ``CONGESTED``
(EAGAIN/ENOBUFS: the send buffer is full) or ``UNAVAILABLE`` (any other
error); the caller counts it (``on_refused``).
"""

from __future__ import annotations

import errno
from collections.abc import Callable
from typing import Any, Final

from twisted.internet.error import InvalidAddressError, MessageLengthError
from twisted.internet.interfaces import IDelayedCall, IReactorTime

from mpush.cluster.gateway_pending import GatewayReply, Pending
from mpush.outcomes import GatewayOutcome

__all__ = ["DEFAULT_MAX_BATCH", "DatagramOutbox", "refusal"]

#: Datagrams held at most before they are sent at once (the pending bound
#: already limits them; this bounds one burst's length).
DEFAULT_MAX_BATCH: Final = 256
_SEND_FULL: Final = frozenset({errno.EAGAIN, errno.EWOULDBLOCK, errno.ENOBUFS})

Sockaddr = tuple[str, int]
#: One datagram waiting for the burst, and the request it carries (a plain
#: tuple: built per datagram, it is the cheapest record).
_Outgoing = tuple[bytes, Sockaddr, Pending]


def refusal(error: Exception, size: int, address: str) -> tuple[str, GatewayReply]:
    """Why a datagram of ``size`` bytes to ``address`` was not sent: (counter, reply)."""
    if isinstance(error, MessageLengthError) or getattr(error, "errno", None) == errno.EMSGSIZE:
        # Over the path's or the system's limit.
        return "too_large", GatewayReply(GatewayOutcome.TOO_LARGE, address,
                                         detail=f"datagram of {size} bytes refused as too long")
    code = getattr(error, "errno", None)
    outcome = GatewayOutcome.CONGESTED if code in _SEND_FULL else GatewayOutcome.UNAVAILABLE
    return "send_failed", GatewayReply(outcome, address, detail=f"datagram not sent: {error}")


class DatagramOutbox:
    """The datagrams of this reactor turn, sent back to back at its end.

    ``port()`` gives the bound port (None once closed): its ``socket`` is
    written directly, saving ``udp.Port.write``'s per-datagram checks (our
    targets are IP addresses of the socket's family by construction); a
    port without one (a test's fake) gets ``write``. ``on_sent(n)`` runs
    once a burst with the number sent; ``on_refused(entry, counter, reply)``
    per datagram the system refused, after which the caller ends the request.
    """

    def __init__(self, clock: IReactorTime, port: Callable[[], Any],
                 on_sent: Callable[[int], object],
                 on_refused: Callable[[Pending, str, GatewayReply], object],
                 max_batch: int = DEFAULT_MAX_BATCH) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch must be at least 1, not {max_batch}")
        self._clock = clock
        self._port = port
        self._on_sent = on_sent
        self._on_refused = on_refused
        self.max_batch = max_batch
        self._batch: list[_Outgoing] = []
        self._call: IDelayedCall | None = None

    def __len__(self) -> int:
        return len(self._batch)

    def put(self, data: bytes, target: Sockaddr, entry: Pending) -> None:
        """Send ``data`` to ``target`` for ``entry`` at the end of this turn."""
        self._batch.append((data, target, entry))
        if len(self._batch) >= self.max_batch:
            self.flush()
        elif self._call is None:
            self._call = self._clock.callLater(0, self._turn_ended)

    def _turn_ended(self) -> None:
        self._call = None
        self.flush()

    def flush(self) -> None:
        """Send every datagram held now, in order."""
        batch, self._batch = self._batch, []
        port = self._port()
        sock = getattr(port, "socket", None)
        sent = 0
        for data, target, entry in batch:
            if entry.done:
                continue  # nobody awaits its answer any more
            try:
                if sock is not None:
                    sock.sendto(data, target)  # EINTR is retried by Python (PEP 475)
                elif port is not None:
                    port.write(data, target)
                else:
                    raise OSError(errno.EBADF, "UDP socket closed")
            except ConnectionRefusedError:
                # An earlier ICMP error reported on this send: this datagram
                # left all the same (udp.Port.write ignores it too).
                sent += 1
            except (OSError, InvalidAddressError) as e:
                counter, reply = refusal(e, len(data), entry.address)
                self._on_refused(entry, counter, reply)
            else:
                sent += 1
        if sent:
            self._on_sent(sent)

    def cancel(self) -> None:
        """Drop what is held without sending (the socket is closing)."""
        self._batch = []
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = None
