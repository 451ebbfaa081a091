"""A datagram reactor for unit tests of :mod:`mpush.cluster.gateway_udp`.

:class:`UdpClock` is a ``Clock`` with ``listenUDP``/``listenMulticast`` that
hand out :class:`FakeUdpPort`\\ s: what is written is recorded (nothing goes
on any network, multicast included), what a test delivers goes to the
protocol. A port may be made taken, and a write may be made to fail.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.error import CannotListenError, MulticastJoinError
from twisted.internet.protocol import DatagramProtocol
from twisted.internet.task import Clock

from mpush.cluster.gateway_udp import UdpGatewayOptions, UdpGateways
from tests.gateway_fakes import FakeView


class FakeUdpPort:
    def __init__(self, proto: DatagramProtocol, port: int, multicast: bool) -> None:
        self.proto = proto
        self.port = port or 40000
        self.multicast = multicast
        self.written: list[tuple[bytes, tuple[str, int]]] = []
        self.fail_with: Exception | None = None  # raised by the next writes
        self.ttl: int | None = None
        self.joined: list[str] = []
        self.join_fails = False
        self.stopped = False
        proto.makeConnection(self)  # type: ignore[arg-type]

    def write(self, data: bytes, addr: tuple[str, int]) -> None:
        if self.fail_with is not None:
            raise self.fail_with
        self.written.append((data, addr))

    def deliver(self, data: bytes, addr: tuple[str, int]) -> None:
        self.proto.datagramReceived(data, addr)

    def getHost(self) -> IPv4Address:
        return IPv4Address("UDP", "127.0.0.1", self.port)

    def stopListening(self) -> None:
        self.stopped = True
        self.proto.doStop()

    def setTTL(self, ttl: int) -> None:
        self.ttl = ttl

    def joinGroup(self, addr: str, interface: str = "") -> Deferred[Any]:
        if self.join_fails:
            return fail(MulticastJoinError(addr, interface, "no multicast route"))
        self.joined.append(addr)
        return succeed(None)


class UdpClock(Clock):
    """A Clock that can open (fake) UDP ports."""

    def __init__(self) -> None:
        super().__init__()
        self.ports: list[FakeUdpPort] = []
        self.taken: set[int] = set()

    def _listen(self, port: int, proto: DatagramProtocol, multicast: bool) -> FakeUdpPort:
        if port in self.taken:
            raise CannotListenError("127.0.0.1", port, OSError(98, "Address already in use"))
        fake = FakeUdpPort(proto, port, multicast)
        self.ports.append(fake)
        return fake

    def listenUDP(self, port: int, proto: DatagramProtocol, interface: str = "",
                  maxPacketSize: int = 8192) -> FakeUdpPort:
        return self._listen(port, proto, False)

    def listenMulticast(self, port: int, proto: DatagramProtocol, interface: str = "",
                        maxPacketSize: int = 8192, listenMultiple: bool = False) -> FakeUdpPort:
        return self._listen(port, proto, True)


class Udp:
    """UdpGateways on a UdpClock, following a FakeView, started."""

    def __init__(self, *gateways: str, **options: Any) -> None:
        self.clock = UdpClock()
        self.view = FakeView()
        for i, address in enumerate(gateways):
            self.view.put(f"gs{i}", address)
        options.setdefault("interface", "127.0.0.1")
        self.gateways = UdpGateways(self.view, options=UdpGatewayOptions(**options),
                                    reactor=self.clock)
        self.gateways.startService()

    @property
    def port(self) -> FakeUdpPort:
        return self.clock.ports[-1]
