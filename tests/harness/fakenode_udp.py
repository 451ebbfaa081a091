"""The fake node's gateway over UDP (``mp.net.gateway-server-net = udp``).

As the Java ``GatewayUDPConnector`` (server side) as the push client sees
it: one datagram is one packet; GATEWAY_PUSH is answered OK/ERROR by a
datagram to the sender's address, with the request's sessionId, per the
node's behaviours (:class:`~tests.harness.fakenode.FakeNode`). There is no
connection: ``close`` sends nothing, an answer-then-close only answers. A
datagram that is not one packet gets no answer (Java logs the decode error).

``drop_every`` N > 0 drops every Nth datagram received (the 1st, 2nd, ...
are handled, the Nth is not): a lossy network, seen only as timeouts.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from twisted.internet.interfaces import IDelayedCall
from twisted.internet.protocol import DatagramProtocol

from mpush.wire import ProtocolError, decode_datagram

if TYPE_CHECKING:
    from tests.harness.fakenode import FakeNode

__all__ = ["GatewayDatagrams"]

#: Read whole datagrams of any size (Twisted reads 8 KiB by default): the
#: body limit is the node's max_packet_size, checked after reading.
_READ_SIZE = 65535


class _Sender:
    """The answer path to one datagram's sender, in the shape the node answers through."""

    def __init__(self, owner: GatewayDatagrams, addr: tuple[str, int]) -> None:
        self.owner = owner
        self.addr = addr

    def send(self, data: bytes) -> None:
        self.owner.send(data, self.addr)

    def send_later(self, delay: float, build: Callable[[], bytes]) -> None:
        call: IDelayedCall

        def fire() -> None:
            self.owner.delayed.discard(call)
            self.send(build())

        call = self.owner.node.reactor.callLater(delay, fire)
        self.owner.delayed.add(call)

    def close(self, data: bytes = b"") -> None:
        # Nothing to close over UDP: the answer (if any) is all the peer gets.
        if data:
            self.send(data)


class GatewayDatagrams(DatagramProtocol):
    """The node's UDP gateway port."""

    noisy = False
    read_size = _READ_SIZE

    def __init__(self, node: FakeNode, drop_every: int = 0) -> None:
        self.node = node
        self.drop_every = drop_every
        self.seen = 0
        self.delayed: set[IDelayedCall] = set()

    def datagramReceived(self, datagram: bytes, addr: Any) -> None:
        self.seen += 1
        stats = self.node.stats
        stats["datagrams"] += 1
        if self.drop_every and self.seen % self.drop_every == 0:
            stats["dropped"] += 1
            return
        try:
            packet = decode_datagram(datagram, self.node.max_packet_size)
        except ProtocolError:
            stats["protocol_errors"] += 1
            return
        self.node._handle(_Sender(self, (addr[0], addr[1])), packet)

    def send(self, data: bytes, addr: tuple[str, int]) -> None:
        if self.transport is not None:
            self.transport.write(data, addr)

    def stopProtocol(self) -> None:
        for call in self.delayed:
            if call.active():
                call.cancel()
        self.delayed.clear()
