"""How :class:`~mpush.cluster.gateway_udp.UdpGateways` sends: its options and counters.

The defaults come from the config key table (``mp.net.gateway-client-port``
and its neighbours, ``mp.alloc.udp-broadcast``).
"""

from __future__ import annotations

import collections
import ipaddress
from dataclasses import dataclass, field
from typing import Final

from mpush.arguments import require_non_negative
from mpush.config.keys import default
from mpush.wire import DEFAULT_MAX_PACKET_SIZE, HEADER_LEN, UDP_MAX_PAYLOAD

__all__ = ["BROADCAST_MODES", "DatagramCounts", "UdpGatewayOptions"]

BROADCAST_MODES: Final = ("unicast", "multicast")
#: Smallest receive limit of an answer's body: answers carry our userId.
_REPLY_FLOOR: Final = 64 * 1024


@dataclass(frozen=True)
class UdpGatewayOptions:
    """The socket and its limits; checked when built.

    ``max_pending_per_gateway`` bounds the requests awaiting an answer from
    one gateway server (the TCP pool's bound per connection); ``snd_buf`` /
    ``rcv_buf`` 0 keep the system's buffer sizes.
    """

    port: int = default("mp.net.gateway-client-port")
    interface: str = default("mp.alloc.interface")  # the listener's, as in the daemon
    max_packet_size: int = DEFAULT_MAX_PACKET_SIZE
    max_pending_per_gateway: int = default("mp.alloc.max-pending-per-gateway")
    broadcast: str = default("mp.alloc.udp-broadcast")
    server_multicast: str = default("mp.net.gateway-server-multicast")
    client_multicast: str = default("mp.net.gateway-client-multicast")
    snd_buf: int = default("mp.net.snd_buf.gateway-client")
    rcv_buf: int = default("mp.net.rcv_buf.gateway-client")

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 65535:
            raise ValueError(f"port must be 0..65535, not {self.port}")
        if self.max_pending_per_gateway < 1:
            raise ValueError("max_pending_per_gateway must be at least 1,"
                             f" not {self.max_pending_per_gateway}")
        if self.broadcast not in BROADCAST_MODES:
            raise ValueError(f"broadcast must be unicast or multicast, not {self.broadcast!r}")
        if self.max_packet_size < 1:
            raise ValueError(f"max_packet_size must be at least 1, not {self.max_packet_size}")
        require_non_negative(snd_buf=self.snd_buf, rcv_buf=self.rcv_buf)
        ipaddress.ip_address(self.interface)  # ValueError if not an address
        for name in ("server_multicast", "client_multicast"):
            if not ipaddress.IPv4Address(getattr(self, name)).is_multicast:
                raise ValueError(f"{name} must be an IPv4 multicast address")

    @property
    def datagram_limit(self) -> int:
        """The largest datagram sent: a header and ``max_packet_size``, within UDP's own bound."""
        return min(HEADER_LEN + self.max_packet_size, UDP_MAX_PAYLOAD)

    @property
    def reply_limit(self) -> int:
        """The largest answer body read (a larger datagram is malformed)."""
        return min(max(self.max_packet_size, _REPLY_FLOOR), UDP_MAX_PAYLOAD - HEADER_LEN)

    @property
    def ipv6(self) -> bool:
        """The socket's family: that of ``interface``."""
        return ipaddress.ip_address(self.interface).version == 6


@dataclass
class DatagramCounts:
    """What went through the socket since start.

    ``dropped``: datagrams received and ignored, by reason (``unknown_sender``:
    not from a known gateway server; ``malformed``: not one OK/ERROR packet;
    ``unmatched``: no request awaits that sessionId from that sender, e.g. an
    answer after our timeout, or a further answer to a multicast broadcast).
    ``refused``: requests not sent, by reason (``too_large``, ``send_failed``:
    the system refused the datagram, e.g. its send buffer is full).
    """

    sent: int = 0
    received: int = 0
    dropped: collections.Counter[str] = field(default_factory=collections.Counter)
    refused: collections.Counter[str] = field(default_factory=collections.Counter)
