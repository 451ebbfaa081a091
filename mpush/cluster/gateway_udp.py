"""Gateways over UDP (``mp.net.gateway-server-net = udp``): one socket, a datagram a request.

:class:`UdpGateways` is the UDP counterpart of the TCP
:class:`~mpush.cluster.gateways.GatewayPool`, behind the same push client
(:class:`~mpush.interfaces.GatewayRequester`): one socket bound to
``mp.net.gateway-client-port`` on ``mp.alloc.interface``; each GATEWAY_PUSH
is one datagram (the TCP frame's header and body) to the gateway's
``host:port`` from ``/cluster/gs``; the OK/ERROR comes back as a datagram.
Requests end as on TCP (:mod:`mpush.cluster.gateway_pending`), once each.

Decisions (docs/java-behaviour.md, "Gateways over UDP"):

* An answer ends a request only if its sessionId is pending *and* it comes
  from the address the request went to (a multicast broadcast: from any
  known gateway server, the first one wins). Every other datagram is
  dropped and counted (:class:`DatagramCounts`), never fatal: there is no
  stream to fall out of sync.
* Nothing is sent that could not arrive whole: a datagram over
  ``HEADER_LEN + max-packet-size`` (or UDP's 65,507 bytes) ends
  ``TOO_LARGE``; a datagram the system refuses (send buffer full:
  EAGAIN/ENOBUFS) ends ``CONGESTED``; both counted as refused. The
  datagrams of a reactor turn leave back to back at its end
  (:mod:`mpush.cluster.datagram_outbox`), as TCP's writes do.
* A lost datagram (or answer) is seen only as our timeout. A gateway whose
  requests keep timing out with no datagram from it is "unanswering" in the
  status, as on TCP.
* A gateway's host must be an IP address of the socket's family: a host
  name is not resolved on the push path (its requests end ``UNAVAILABLE``).
"""

from __future__ import annotations

import functools
import ipaddress
import socket
from collections.abc import Callable
from typing import Any, Final

from twisted.internet.defer import Deferred, maybeDeferred, succeed
from twisted.internet.error import CannotListenError
from twisted.internet.protocol import DatagramProtocol
from twisted.logger import Logger

from mpush.cluster.datagram_outbox import DatagramOutbox
from mpush.cluster.gateway_pending import GatewayReply, Pending, PendingRequests, check_timeout
from mpush.cluster.gateway_udp_options import DatagramCounts, UdpGatewayOptions
from mpush.cluster.view_follower import ViewFollower
from mpush.interfaces import ClusterView
from mpush.outcomes import GatewayOutcome, TimeoutCause
from mpush.reactor import default_reactor
from mpush.wire import HEADER_LEN, Heartbeat, ProtocolError, decode_datagram, decode_reply

__all__ = ["DatagramCounts", "UdpBindError", "UdpGatewayOptions", "UdpGateways"]

log = Logger(namespace="mpush.cluster.gateway_udp")

#: Java's multicast TTL (GatewayUDPConnector); the group is admin-scoped (239/8).
MULTICAST_TTL: Final = 255
#: A multicast request's ``peer``: any known gateway server may answer it.
_ANY_GATEWAY: Final = "any known gateway"

Sockaddr = tuple[str, int]


class UdpBindError(Exception):
    """The socket cannot be bound: one line naming the key."""


class _Gateway:
    """One gateway server of the view, as the socket sees it."""

    __slots__ = ("address", "last_error", "pending", "port", "problem", "sockaddr", "unanswered")

    def __init__(self, address: str, host: str, port: int, ipv6: bool) -> None:
        self.address = address
        self.port = port
        self.sockaddr: Sockaddr | None = None
        self.problem: str | None = None  # why nothing can be sent to it
        self.pending = 0
        self.unanswered = 0  # requests timed out since its last datagram
        self.last_error: str | None = None
        try:
            ip = ipaddress.ip_address(host)
        except ValueError:
            self.problem = f"host {host!r} is not an IP address (UDP sends to addresses only)"
            return
        if (ip.version == 6) != ipv6:
            self.problem = f"IPv{ip.version} gateway, but the UDP socket is IPv{6 if ipv6 else 4}"
            return
        self.sockaddr = (ip.compressed, port)


class _Socket(DatagramProtocol):
    noisy = False

    def __init__(self, received: Callable[[bytes, Sockaddr], None]) -> None:
        # The handler itself, not a method calling it: one call less a datagram.
        self.datagramReceived = received  # type: ignore[method-assign]


class UdpGateways(ViewFollower):
    """The gateway servers of the view, reached by datagrams from one socket.

    Binds in ``privilegedStartService`` (or ``startService``), follows the
    view while running, closes the socket in ``stopService``.
    """

    transport = "udp"

    def __init__(self, view: ClusterView, *, options: UdpGatewayOptions | None = None,
                 reactor: Any = None) -> None:
        self.options = UdpGatewayOptions() if options is None else options
        # Read per datagram: computed once (the options are frozen).
        self._datagram_limit = self.options.datagram_limit
        self._reply_limit = self.options.reply_limit
        self._view = view
        self._reactor = default_reactor(reactor)
        self._gateways: dict[str, _Gateway] = {}  # by "host:port"
        self._by_sockaddr: dict[Sockaddr, _Gateway] = {}
        self._pending = PendingRequests(self._reactor, on_expired=self._expired,
                                        on_finished=self._finished)
        self._outbox = DatagramOutbox(self._reactor, lambda: self._port,
                                      on_sent=self._sent, on_refused=self._refused)
        self._port: Any = None  # the bound IListeningPort
        self._group_port_warned: frozenset[int] = frozenset()
        self.counts = DatagramCounts()

    # -- GatewayRequester ----------------------------------------------------

    def addresses(self) -> list[str]:
        """Known gateway servers, ``host:port``, sorted."""
        return sorted(self._gateways)

    def broadcast_addresses(self) -> list[str]:
        """Where a broadcast goes: every known gateway, or the multicast group on their port."""
        if self.options.broadcast == "unicast":
            return self.addresses()
        port = self._group_port()
        return [] if port is None else [f"{self.options.server_multicast}:{port}"]

    def is_connected(self, address: str) -> bool:
        """True while datagrams can be sent to the known gateway server ``address``."""
        gateway = self._gateways.get(address)
        return self._port is not None and gateway is not None and gateway.sockaddr is not None

    def status(self) -> dict[str, dict[str, int | str | None]]:
        """Per address, in the TCP pool's terms: "connected" is 1 while datagrams can be sent."""
        return {address: {
            "connected": int(self.is_connected(address)),
            "configured": 1,
            "pending": g.pending,
            "queued_bytes": 0,
            "unanswering": int(g.unanswered > 0),
            "last_error": g.problem or g.last_error,
        } for address, g in sorted(self._gateways.items())}

    def request(self, address: str, build: Callable[[int], bytes],
                timeout: float) -> Deferred[GatewayReply]:
        """Send ``build(sessionId)`` as one datagram to ``address``; its answer, or why none."""
        check_timeout(timeout)
        gateway = self._gateways.get(address) if self.running else None
        if gateway is not None:
            target, peer, count = gateway.sockaddr, gateway.sockaddr, gateway
            problem = gateway.problem
            if gateway.pending >= self.options.max_pending_per_gateway:
                problem = "pending limit reached"
        elif (self.running and self.options.broadcast == "multicast"
              and address in self.broadcast_addresses()):
            host, _, port = address.rpartition(":")
            target, peer, count, problem = (host, int(port)), _ANY_GATEWAY, None, None
        else:
            return succeed(GatewayReply(GatewayOutcome.UNAVAILABLE, address,
                                        detail="unknown gateway server"))
        if problem is not None or self._port is None or target is None:
            return succeed(GatewayReply(GatewayOutcome.UNAVAILABLE, address,
                                        detail=problem or "UDP socket not bound"))
        session_id = self._pending.allocate()
        data = build(session_id)
        if not isinstance(data, bytes | bytearray):
            raise TypeError(f"build() must return bytes, not {type(data).__name__}")
        limit = self._datagram_limit
        if len(data) > limit:
            self.counts.refused["too_large"] += 1
            return succeed(GatewayReply(
                GatewayOutcome.TOO_LARGE, address,
                detail=f"datagram of {len(data)} bytes over the limit of {limit}"))
        entry = self._pending.add(session_id, address, timeout, peer, count)
        if count is not None:
            count.pending += 1
        # Sent at the end of this reactor turn, with the others of the turn.
        self._outbox.put(bytes(data), target, entry)
        return entry.deferred

    def expire_pending(self, cause: TimeoutCause) -> int:
        """End every pending request now as ``TIMEOUT`` with ``cause``; how many."""
        return self._pending.fail_all(GatewayOutcome.TIMEOUT, cause.value, cause)

    # -- sending ---------------------------------------------------------------

    def _sent(self, n: int) -> None:
        self.counts.sent += n

    def _refused(self, entry: Pending, counter: str, reply: GatewayReply) -> None:
        self.counts.refused[counter] += 1
        self._pending.finish(entry, reply)

    def _group_port(self) -> int | None:
        """The gateways' port (the most common one); said once when they differ."""
        ports = [g.port for g in self._gateways.values()]
        if not ports:
            return None
        port = max(sorted(set(ports)), key=ports.count)
        others = frozenset(ports) - {port}
        if others and others != self._group_port_warned:
            log.warn("multicast broadcast: the gateway servers listen on different ports;"
                     " sent to port {port} only, those on {others} do not get it",
                     port=port, others=sorted(others))
        self._group_port_warned = others
        return port

    # -- receiving ---------------------------------------------------------------

    def _datagram(self, data: bytes, addr: Any) -> None:
        self.counts.received += 1
        sender = _normal(addr)
        gateway = self._by_sockaddr.get(sender) if sender is not None else None
        try:
            packet = decode_datagram(data, self._reply_limit)
            if isinstance(packet, Heartbeat):
                raise ProtocolError("a heartbeat")  # the gateways send none
            msg = decode_reply(packet)
        except ProtocolError as e:
            if gateway is None:
                self._drop("unknown_sender", sender, e)
            else:
                self._drop("malformed", sender, e)
            return
        entry = self._pending.get(packet.session_id)
        if entry is not None and (entry.peer == sender
                                  or (entry.peer is _ANY_GATEWAY and gateway is not None)):
            if gateway is not None:
                gateway.unanswered = 0
            self._pending.answer(entry, msg, entry.address)
            return
        if gateway is None:
            self._drop("unknown_sender", sender, f"sessionId {packet.session_id}")
        else:
            gateway.unanswered = 0  # it speaks: late, but alive
            self._drop("unmatched", sender, f"sessionId {packet.session_id}")

    def _drop(self, reason: str, sender: Sockaddr | None, why: object) -> None:
        self.counts.dropped[reason] += 1
        # Debug only: a flood of strays must not become a flood of lines.
        log.debug("UDP datagram from {sender} dropped ({reason}): {why}",
                  sender=sender, reason=reason, why=why)

    def _expired(self, entry: Any) -> None:
        gateway = self._gateways.get(entry.address)
        if gateway is not None:
            gateway.unanswered += 1

    @staticmethod
    def _finished(entry: Pending) -> None:
        gateway = entry.owner
        if gateway is not None:
            gateway.pending -= 1

    # -- lifecycle -------------------------------------------------------------

    def privilegedStartService(self) -> None:
        super().privilegedStartService()
        self._bind()

    def startService(self) -> None:
        self._bind()
        super().startService()

    def stopService(self) -> Deferred[None]:
        self.stop_following()
        self._pending.fail_all(GatewayOutcome.TIMEOUT, TimeoutCause.SHUTDOWN.value,
                               TimeoutCause.SHUTDOWN)
        self._outbox.cancel()  # every request it held has just ended
        port, self._port = self._port, None
        if port is None:
            return succeed(None)
        return maybeDeferred(port.stopListening).addCallback(lambda _: None)

    def _bind(self) -> None:
        if self._port is not None:
            return
        o = self.options
        proto = _Socket(self._datagram)
        # One byte over the largest answer: a longer one reads truncated, and
        # its length then disagrees with its header (malformed), never cut to fit.
        size = HEADER_LEN + o.reply_limit + 1
        try:
            if o.broadcast == "multicast":
                # Not listenMultiple: no SO_REUSEADDR, so a second daemon on
                # the port fails at start instead of taking our answers.
                port = self._reactor.listenMulticast(o.port, proto, interface=o.interface,
                                                     maxPacketSize=size)
            else:
                port = self._reactor.listenUDP(o.port, proto, interface=o.interface,
                                               maxPacketSize=size)
        except CannotListenError as e:
            reason = getattr(e.socketError, "strerror", None) or e.socketError
            raise UdpBindError(f"mp.net.gateway-client-port: cannot bind UDP"
                               f" {o.interface}:{o.port}: {reason}") from None
        self._port = port
        _set_buffers(port, o.snd_buf, o.rcv_buf)
        if o.broadcast == "multicast":
            port.setTTL(MULTICAST_TTL)
            joined = port.joinGroup(o.client_multicast, o.interface)
            joined.addErrback(lambda f: log.warn(
                "UDP: cannot join {group} ({why}); answers come by unicast anyway",
                group=o.client_multicast, why=f.getErrorMessage()))
        host = port.getHost()
        log.info("gateways over UDP: socket bound to {host}:{port}, broadcasts by {mode}",
                 host=host.host, port=host.port, mode=o.broadcast)

    @property
    def bound_port(self) -> int | None:
        """The socket's port once bound (useful with port 0)."""
        return None if self._port is None else int(self._port.getHost().port)

    # -- following the view ----------------------------------------------------

    def _on_view(self, kind: str, event: str, node: Any) -> None:
        if kind == "gs" and self.running:
            self._reconcile()

    def _reconcile(self) -> None:
        # A handful of gateway servers: re-reading them all is simplest. A
        # removed one's pending requests still take its answer (by peer).
        wanted = {node.address: node for node in self._view.gateway_servers().values()}
        for address in list(self._gateways):
            if address not in wanted:
                gone = self._gateways.pop(address)
                if gone.sockaddr is not None:
                    self._by_sockaddr.pop(gone.sockaddr, None)
        for address, node in wanted.items():
            if address in self._gateways:
                continue
            gateway = _Gateway(address, node.host, node.port, self.options.ipv6)
            self._gateways[address] = gateway
            if gateway.sockaddr is not None:
                self._by_sockaddr[gateway.sockaddr] = gateway
            elif gateway.problem is not None:
                log.warn("gateway server {gateway}: {problem}", gateway=address,
                         problem=gateway.problem)


def _normal(addr: Any) -> Sockaddr | None:
    """The sender as (compressed IP, port); an IPv4-mapped IPv6 address as IPv4."""
    try:
        return _normal_cached(addr)
    except TypeError:  # not hashable: not a real (host, port)
        return _normalise(addr)


def _normalise(addr: Any) -> Sockaddr | None:
    try:
        ip = ipaddress.ip_address(addr[0])
        port = int(addr[1])
    except (ValueError, TypeError, IndexError):
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.compressed, port


# Parsing an address costs more than the rest of an answer's matching; the
# gateways are few. Bounded: a flood of senders only evicts.
_normal_cached = functools.lru_cache(maxsize=256)(_normalise)


def _set_buffers(port: Any, snd_buf: int, rcv_buf: int) -> None:
    sock = getattr(port, "socket", None)
    if sock is None:
        return  # a test's fake port
    if snd_buf > 0:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, snd_buf)
    if rcv_buf > 0:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcv_buf)
