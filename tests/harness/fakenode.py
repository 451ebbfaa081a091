"""A fake mpush node: one Java ``mpush-boot`` process as the alloc server sees it.

For tests, benchmarks and the local demo. What it reproduces, read from
``mpusher/mpush`` (HEAD f8d5c97; Java file names given):

* **ZooKeeper** (``ServerBoot``): a connection server node
  ``{"attrs":{"weight":1},"host":..,"port":<cs port>}`` then a gateway
  node ``{"host":..,"port":<gateway port>}`` (no attrs), through
  :class:`~tests.harness.registry.NodeRegistrar` (digest ACL, ephemeral,
  re-registered after every reconnect). Nothing listens on the cs port.
  With ``ws_port`` (Java's ``ws-server-port`` > 0) a WebSocket server node
  ``{"host":..,"port":<ws port>}`` follows (``ServerNodes.ws()``); nothing
  listens there either.
* **Redis** (``RemoteRouterManager``, ``UserManager``, ``ClientLocation``):
  ``HSET mp:ur:<userId> <clientType> <ClientLocation.toJson()>`` with
  ``host:port`` = this gateway, ``connId`` only while online, and
  ``ZADD mp:oul:<ip> 0 <userId>`` (Java's ``zAdd`` always uses score 0).
* **Gateway server** (``GatewayServer``, ``MessageDispatcher``,
  ``GatewayPushListener``): decodes frames with a 10 KB body limit (a
  longer frame closes the connection); GATEWAY_PUSH is its only command:
  anything else, *heartbeats included* (no handler is registered for them
  on the gateway), gets ERROR 101 "unsupported command" and a close; an
  undecodable push gets ERROR 100 and a close. Answers echo the request's
  sessionId, flags 0; their data is fastjson of ``GatewayPushResult``.

Each single push is answered per its target's *behaviour* (see
:data:`BEHAVIOURS`); broadcasts per :attr:`FakeNode.broadcast_behaviour`.
A node made with ``reading=False`` (``--never-read``), or told
:meth:`FakeNode.stop_reading`, accepts connections and never reads them: a
gateway process that hangs, whose kernel queue fills and stays full.

In-process use needs a running reactor (pytest-twisted): :meth:`FakeNode.start`
is synchronous (listen, register); :meth:`FakeNode.stop` / :meth:`FakeNode.kill`
return Deferreds. ZooKeeper and Redis calls are blocking (loopback, short):
fine for tests, never for daemon code. Sync code that cannot run the
reactor uses :class:`FakeNodeProcess` (``python -m tests.harness.fakenode``).
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import itertools
import os
import select
import signal
import struct
import subprocess
import sys
import tempfile
import time
import uuid
import zlib
from collections.abc import Callable, Iterable, Sequence
from typing import Any, NamedTuple, Protocol, Self

from twisted.internet import defer
from twisted.internet.interfaces import IDelayedCall, IListeningPort
from twisted.internet.protocol import Factory, connectionDone
from twisted.internet.protocol import Protocol as TwistedProtocol
from twisted.python.failure import Failure

from mpush.wire import (
    CMD_GATEWAY_PUSH,
    CMD_HEARTBEAT,
    CMD_OK,
    DEFAULT_MAX_PACKET_SIZE,
    ERROR_REASONS,
    FLAG_AUTO_ACK,
    FLAG_BIZ_ACK,
    FLAG_COMPRESS,
    FLAG_JSON_BODY,
    ErrorCode,
    ErrorMessage,
    GatewayPush,
    Heartbeat,
    OkMessage,
    Packet,
    PacketDecoder,
    ProtocolError,
    client_type_of,
    fastjson_quote,
)
from tests.harness.redis import SyncRedisClient
from tests.harness.registry import NodeRegistrar

__all__ = [
    "BEHAVIOURS",
    "GARBAGE_HEADER_LENGTH",
    "UNKNOWN_CODE",
    "FakeNode",
    "FakeNodeProcess",
    "Received",
    "location_json",
    "main",
    "parse_behaviour",
    "push_result_json",
]

#: What a single push's target can do. ``delay:<ms>`` answers OK after that
#: many milliseconds; the rest answer at once (or never, for ``silent``).
BEHAVIOURS = (
    "deliver",         # OK, data {"clientType":..,"timePoints":[..],"userId":..}
    "offline",         # ERROR 1
    "client_failure",  # ERROR 2
    "route_change",    # ERROR 3
    "unknown_code",    # ERROR 77: a code no Java version sends
    "silent",          # no answer at all (the Java server's own timeouts only log)
    "garbage",         # bytes that are no valid frame
    "close",           # close the connection instead of answering
    "delay:<ms>",
)
UNKNOWN_CODE = 77
#: The garbage answer starts with a header declaring this body length: far
#: over any max-packet-size, so a client's decoder must give up at once.
GARBAGE_HEADER_LENGTH = 0x7FFFFF00

_SIMPLE = frozenset(b for b in BEHAVIOURS if not b.startswith("delay"))
_ERROR_CODES = {
    "offline": ErrorCode.OFFLINE,
    "client_failure": ErrorCode.PUSH_CLIENT_FAILURE,
    "route_change": ErrorCode.ROUTER_CHANGE,
    "unknown_code": UNKNOWN_CODE,
}
# The last TimeLine point of each outcome (SingleUserPushTask, PushAckCallback).
_END_POINTS = {
    ErrorCode.OFFLINE: "offline-end",
    ErrorCode.ROUTER_CHANGE: "redirect-end",
}
_HEADER = struct.Struct(">iBHBiB")
# ErrorCode.UNKNOWN's text: what Java would show for a code it does not know.
_UNKNOWN_REASON = "unknown"

# Connection-server port numbers handed out to nodes that are not given one
# (nothing listens there; they only have to differ within one process).
_cs_ports = itertools.count(3000)


def parse_behaviour(text: str) -> tuple[str, float]:
    """``"delay:250"`` -> ``("delay", 0.25)``; ``"offline"`` -> ``("offline", 0.0)``."""
    if not isinstance(text, str):
        raise TypeError(f"behaviour must be str, not {type(text).__name__}")
    if text in _SIMPLE:
        return text, 0.0
    kind, sep, ms = text.partition(":")
    if kind == "delay" and sep:
        try:
            delay = int(ms)
        except ValueError:
            delay = -1
        if delay >= 0:
            return "delay", delay / 1000.0
    raise ValueError(f"unknown behaviour {text!r}; expected one of {', '.join(BEHAVIOURS)}")


class Received(NamedTuple):
    """One GATEWAY_PUSH as received: ``raw`` is the whole frame, header included."""

    session_id: int
    flags: int
    push: GatewayPush
    raw: bytes


class RedisLike(Protocol):
    """What the fake needs from a Redis client (:class:`SyncRedisClient` has it)."""

    def execute(self, *args: Any) -> Any: ...

    def pipeline(self, commands: Sequence[Sequence[Any]]) -> list[Any]: ...


def location_json(host: str, port: int, *, device_id: str | None, os_name: str | None,
                  client_version: str | None, conn_id: str | None) -> str:
    """``ClientLocation.toJson()``: a hand-built string, in this field order.

    Java concatenates without escaping, so neither do we: the same input
    gives the same bytes (odd characters give the same broken JSON).
    """
    parts = [f'{{"port":{port}']
    for name, value in (("host", host), ("deviceId", device_id), ("osName", os_name),
                        ("clientVersion", client_version), ("connId", conn_id)):
        if value is not None:
            parts.append(f',"{name}":"{value}"')
    parts.append("}")
    return "".join(parts)


def push_result_json(user_id: str | None, client_type: int,
                     time_points: Iterable[tuple[str, int]]) -> str:
    """fastjson of ``GatewayPushResult``: keys sorted, nulls and clientType <= 0 left out."""
    points = ",".join(f"{fastjson_quote(name)},{ms}" for name, ms in time_points)
    doc = "{"
    if client_type > 0:
        doc += f'"clientType":{client_type},'
    doc += f'"timePoints":[{points}]'
    if user_id is not None:
        doc += f',"userId":{fastjson_quote(user_id)}'
    return doc + "}"


def _now_ms() -> int:
    return int(time.time() * 1000)


def _parse_address(address: str) -> tuple[str, int]:
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ValueError(f"address must be host:port, not {address!r}")
    return host, int(port)


# --------------------------------------------------------------------------
# The gateway server
# --------------------------------------------------------------------------


class _GatewayConnection(TwistedProtocol):
    """One accepted gateway connection (a push client's)."""

    def __init__(self, node: FakeNode) -> None:
        self.node = node
        self.decoder = PacketDecoder(node.max_packet_size)
        self.closing = False
        self.lost: defer.Deferred[None] = defer.Deferred()
        self.delayed: set[IDelayedCall] = set()

    def connectionMade(self) -> None:
        # As the Java server: answers must not wait for Nagle.
        with contextlib.suppress(Exception):
            self.transport.setTcpNoDelay(True)  # type: ignore[attr-defined]
        if not self.node.reading:
            self.transport.pauseProducing()  # type: ignore[attr-defined]
        self.node._connection_made(self)

    def dataReceived(self, data: bytes) -> None:
        if self.closing:
            return
        try:
            packets = self.decoder.feed(data)
        except ProtocolError:
            # Java: TooLongFrameException -> exceptionCaught -> close, no answer.
            self.node.stats["protocol_errors"] += 1
            self.close()
            return
        for packet in packets:
            if self.closing:
                break  # the rest of the chunk arrived after an answer-and-close
            self.node._handle(self, packet)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        for call in self.delayed:
            if call.active():
                call.cancel()
        self.delayed.clear()
        self.closing = True
        self.node._connection_lost(self)
        self.lost.callback(None)

    # -- helpers for the node

    def send(self, data: bytes) -> None:
        # The Java listener checks `connection.isConnected()` before answering.
        if not self.closing and self.transport is not None:
            self.transport.write(data)

    def send_later(self, delay: float, build: Callable[[], bytes]) -> None:
        # Built when sent: its timePoints end at the answer's time.
        call: IDelayedCall

        def fire() -> None:
            self.delayed.discard(call)
            if not self.closing:
                self.send(build())

        call = self.node.reactor.callLater(delay, fire)
        self.delayed.add(call)

    def close(self, data: bytes = b"") -> None:
        """Write ``data`` (if any), then close once it is flushed."""
        if self.closing:
            return
        if data:
            self.transport.write(data)
        self.closing = True
        self.transport.loseConnection()

    def abort(self) -> None:
        self.closing = True
        self.transport.abortConnection()  # type: ignore[attr-defined]


class _GatewayFactory(Factory):
    noisy = False  # one log line per connection would drown a benchmark's log

    def __init__(self, node: FakeNode) -> None:
        self.node = node

    def buildProtocol(self, addr: Any) -> _GatewayConnection:
        return _GatewayConnection(self.node)


# --------------------------------------------------------------------------
# The node
# --------------------------------------------------------------------------


class FakeNode:
    """One fake mpush node: gateway server + ZooKeeper nodes + users in Redis.

    ``redis``: a client with ``execute``/``pipeline`` (e.g. a
    :class:`SyncRedisClient`, shared, not closed by us), or an address
    ``(host, port)`` / ``"host:port"`` (we open and close our own client),
    or None (users then live only in this object: gateway-only tests).
    ``zk``: a ZooKeeper connect string, or None for no registration.

    Which answer a single push gets, first match wins:
    :meth:`set_behaviour` for (user, clientType), then for the user; a user
    added online here -> :attr:`default_behaviour`; a user whose route here
    is offline, or who has no route of that clientType -> ``"offline"`` (what
    Java answers); a user never added -> :attr:`unknown_behaviour`.
    """

    def __init__(self, redis: RedisLike | tuple[str, int] | str | None = None,
                 zk: str | None = None, *, namespace: str = "mpush",
                 digest: str | None = "mpush", host: str = "127.0.0.1", port: int = 0,
                 cs_port: int | None = None, ws_port: int | None = None,
                 redis_password: str | None = None,
                 default_behaviour: str = "deliver", unknown_behaviour: str = "offline",
                 broadcast_behaviour: str = "deliver", record_limit: int = 1000,
                 max_packet_size: int = DEFAULT_MAX_PACKET_SIZE,
                 zk_session_timeout: float = 5.0, reading: bool = True,
                 udp: bool = False, drop_every: int = 0, reactor: Any = None) -> None:
        if reactor is None:
            from twisted.internet import reactor as default_reactor
            reactor = default_reactor
        self.reactor = reactor
        self.host = host
        self._requested_port = port
        self.port: int | None = None  # the gateway port, once listening
        self.cs_port = next(_cs_ports) if cs_port is None else cs_port
        self.ws_port = ws_port  # None: no WebSocket server (Java's ws-server-port=0)
        self.zk = zk
        self.namespace = namespace
        self.digest = digest
        self.zk_session_timeout = zk_session_timeout
        self.max_packet_size = max_packet_size
        self.reading = reading  # False: accept, never read (see stop_reading)
        # A UDP gateway port instead of TCP (tests/harness/fakenode_udp.py),
        # dropping every drop_every-th datagram when > 0.
        self.udp = udp
        self.drop_every = drop_every

        self._own_redis: SyncRedisClient | None = None  # ours to close
        self.redis: RedisLike | None
        if isinstance(redis, str | tuple):
            rhost, rport = _parse_address(redis) if isinstance(redis, str) else redis
            self.redis = self._own_redis = SyncRedisClient(rhost, rport, redis_password)
        else:
            self.redis = redis

        self.default_behaviour = default_behaviour
        self.unknown_behaviour = unknown_behaviour
        self.broadcast_behaviour = broadcast_behaviour
        for b in (default_behaviour, unknown_behaviour, broadcast_behaviour):
            parse_behaviour(b)
        self._behaviours: dict[tuple[str, int | None], str] = {}
        # user -> clientType (the hash field) -> online
        self._routes: dict[str, dict[int, bool]] = {}

        #: The last ``record_limit`` pushes received (0: record nothing).
        self.received: collections.deque[Received] = collections.deque(maxlen=record_limit)
        #: Every push ever received, recorded or not.
        self.received_total = 0
        #: Cheap counters: "pushes", "broadcasts", "ok", "error", "silent",
        #: "garbage", "closed", "unsupported", "dispatch_errors", "protocol_errors",
        #: "connections"; over UDP "datagrams" (received) and "dropped".
        self.stats: collections.Counter[str] = collections.Counter()
        self._waiters: list[tuple[int, defer.Deferred[list[Received]]]] = []

        self._listening: IListeningPort | None = None
        self._connections: set[_GatewayConnection] = set()
        self.registrar: NodeRegistrar | None = None
        self._own_registrar = False
        self.node_paths: tuple[str, str] | None = None  # (cs path, gs path), namespace-relative
        self.ws_path: str | None = None  # the ws node's path, with ws_port

    # -- addresses

    @property
    def address(self) -> str:
        """The gateway's ``host:port`` (what routes and the gs node carry)."""
        return f"{self.host}:{self._port()}"

    @property
    def cs_address(self) -> str:
        return f"{self.host}:{self.cs_port}"

    @property
    def online_key(self) -> str:
        """``mp:oul:<ip>``: the Java server keys it by its public IP, here ``host``."""
        return f"mp:oul:{self.host}"

    def _port(self) -> int:
        if self.port is None:
            raise RuntimeError("the fake node is not listening yet: call start() first")
        return self.port

    # -- lifecycle

    def start(self) -> Self:
        """Listen, then register in ZooKeeper (if ``zk`` was given). Synchronous."""
        self.listen()
        if self.zk is not None and self.registrar is None:
            registrar = NodeRegistrar(self.zk, namespace=self.namespace, digest=self.digest,
                                      session_timeout=self.zk_session_timeout)
            try:
                registrar.start()
            except BaseException:
                registrar.close()  # its kazoo threads must not outlive a failed start
                raise
            self.registrar, self._own_registrar = registrar, True
            self.register(registrar)
        return self

    def listen(self) -> None:
        """Open the gateway port: the first free one, or the same one again after a kill."""
        if self._listening is not None:
            return
        port = self.port if self.port is not None else self._requested_port
        if self.udp:
            from tests.harness.fakenode_udp import GatewayDatagrams

            proto = GatewayDatagrams(self, self.drop_every)
            self._listening = self.reactor.listenUDP(port, proto, interface=self.host,
                                                     maxPacketSize=proto.read_size)
        else:
            self._listening = self.reactor.listenTCP(port, _GatewayFactory(self),
                                                     backlog=1024, interface=self.host)
        self.port = self._listening.getHost().port

    def register(self, registrar: NodeRegistrar) -> tuple[str, str]:
        """Put this node's cs then gs node (Java's start order) in ``registrar``'s session."""
        gw_port = self._port()
        cs = registrar.register("cs", self.host, self.cs_port)  # Java default attrs {weight:1}
        gs = registrar.register("gs", self.host, gw_port)       # no attrs, as Java
        if self.registrar is None:
            self.registrar = registrar
        self.node_paths = (cs, gs)
        if self.ws_port is not None:
            self.ws_path = registrar.register("ws", self.host, self.ws_port)  # no attrs, as Java
        return cs, gs

    def unregister(self) -> None:
        """Remove the ZooKeeper nodes now (our own session: closed)."""
        registrar, self.registrar = self.registrar, None
        paths, self.node_paths = self.node_paths, None
        ws_path, self.ws_path = self.ws_path, None
        if registrar is None:
            return
        if self._own_registrar:
            self._own_registrar = False
            registrar.close()
        else:
            for path in (*(paths or ()), *([ws_path] if ws_path else [])):
                registrar.unregister(path)

    def stop_listening(self) -> defer.Deferred[None]:
        listening, self._listening = self._listening, None
        if listening is None:
            return defer.succeed(None)
        return defer.maybeDeferred(listening.stopListening)

    def drop_connections(self) -> defer.Deferred[None]:
        """Abort every gateway connection; fires once all are gone."""
        conns = list(self._connections)
        for conn in conns:
            conn.abort()
        return defer.gatherResults([c.lost for c in conns]).addCallback(lambda _: None)

    def kill(self) -> defer.Deferred[None]:
        """A dead gateway: no port, no connections. The ZooKeeper nodes stay
        (as a crashed server's do until its session expires); :meth:`listen`
        revives it on the same port."""
        d1, d2 = self.stop_listening(), self.drop_connections()
        return defer.gatherResults([d1, d2]).addCallback(lambda _: None)

    def stop(self) -> defer.Deferred[None]:
        """Unregister (nodes vanish at once), close the port and connections,
        close our own Redis client. Redis data stays."""
        try:
            self.unregister()
        finally:
            if self._own_redis is not None:
                self._own_redis.close()
                self.redis = self._own_redis = None
        return self.kill()

    def stop_reading(self) -> None:
        """Read nothing more, on the open connections and on those accepted later."""
        self.reading = False
        for conn in self._connections:
            conn.transport.pauseProducing()  # type: ignore[attr-defined]

    @property
    def connection_count(self) -> int:
        return len(self._connections)

    # -- users

    def add_user(self, user_id: str, client_type: int | None = None, os_name: str = "android",
                 *, online: bool = True, behaviour: str | None = None,
                 device_id: str | None = None, client_version: str | None = "1.0.0",
                 conn_id: str | None = None) -> str:
        """Route ``user_id`` here as the Java server does on a bind; returns the JSON written.

        ``client_type`` None: derived from ``os_name`` as Java does for the hash
        field; pass one to write a field that disagrees with the osName.
        """
        ct = client_type_of(os_name) if client_type is None else client_type
        if online and conn_id is None:
            conn_id = uuid.uuid4().hex[:8]  # Netty's channel id short text: 8 hex digits
        doc = location_json(self.host, self._port(),
                            device_id=device_id if device_id is not None else f"dev-{user_id}",
                            os_name=os_name, client_version=client_version,
                            conn_id=conn_id if online else None)
        if self.redis is not None:
            commands: list[Sequence[Any]] = [("HSET", f"mp:ur:{user_id}", str(ct), doc)]
            if online:
                commands.append(("ZADD", self.online_key, 0, user_id))
            _check(self.redis.pipeline(commands))
        self._routes.setdefault(user_id, {})[ct] = online
        if behaviour is not None:
            self.set_behaviour(user_id, behaviour)
        return doc

    def add_users(self, n: int, prefix: str = "u", *, start: int = 0,
                  os_name: str = "android", batch: int = 1000) -> list[str]:
        """``prefix<start> .. prefix<start+n-1>`` online here, pipelined (10,000 in ~0.1 s)."""
        port = self._port()
        ct = client_type_of(os_name)
        ids = [f"{prefix}{i}" for i in range(start, start + n)]
        for first in range(0, len(ids), batch):
            chunk = ids[first:first + batch]
            if self.redis is not None:
                commands: list[Sequence[Any]] = [
                    ("HSET", f"mp:ur:{uid}", str(ct),
                     location_json(self.host, port, device_id=f"dev-{uid}", os_name=os_name,
                                   client_version="1.0.0", conn_id=f"{first + i:08x}"))
                    for i, uid in enumerate(chunk)
                ]
                zadd: list[Any] = ["ZADD", self.online_key]
                for uid in chunk:
                    zadd += [0, uid]
                commands.append(zadd)
                _check(self.redis.pipeline(commands))
            for uid in chunk:
                self._routes.setdefault(uid, {})[ct] = True
        return ids

    def remove_user(self, user_id: str, client_type: int | None = None, *,
                    delete: bool = False) -> None:
        """The user disconnects (``client_type`` None: every route of it here).

        As Java: the location is rewritten without ``connId`` and the user
        leaves ``mp:oul``. ``delete=True`` removes the hash field(s) instead.
        Explicit behaviours of the user are forgotten.
        """
        routes = self._routes.get(user_id, {})
        types = list(routes) if client_type is None else [client_type]
        if self.redis is not None and types:
            key = f"mp:ur:{user_id}"
            commands: list[Sequence[Any]] = []
            for ct in types:
                if delete:
                    commands.append(("HDEL", key, str(ct)))
                else:
                    raw = self.redis.execute("HGET", key, str(ct))
                    if raw is not None:
                        commands.append(("HSET", key, str(ct), _without_conn_id(raw)))
            commands.append(("ZREM", self.online_key, user_id))
            _check(self.redis.pipeline(commands))
        for ct in types:
            if delete:
                routes.pop(ct, None)
            elif ct in routes:
                routes[ct] = False
            self._behaviours.pop((user_id, ct), None)
        if client_type is None:
            self._behaviours.pop((user_id, None), None)
        if not routes:
            self._routes.pop(user_id, None)

    def set_behaviour(self, user_id: str, behaviour: str | None,
                      client_type: int | None = None) -> None:
        """How this node answers pushes to the user (on one client type, or all).
        ``None`` removes the setting."""
        key = (user_id, client_type)
        if behaviour is None:
            self._behaviours.pop(key, None)
            return
        parse_behaviour(behaviour)
        self._behaviours[key] = behaviour

    def behaviour_for(self, user_id: str, client_type: int) -> str:
        b = self._behaviours.get((user_id, client_type)) or self._behaviours.get((user_id, None))
        if b is not None:
            return b
        routes = self._routes.get(user_id)
        if routes is None:
            return self.unknown_behaviour
        return self.default_behaviour if routes.get(client_type) else "offline"

    def user_routes(self, user_id: str) -> dict[int, bool]:
        """clientType -> online, for the routes this node wrote for ``user_id``."""
        return dict(self._routes.get(user_id, {}))

    # -- waiting (in-process tests)

    def wait_received(self, count: int, timeout: float = 5.0) -> defer.Deferred[list[Received]]:
        """Fires with the recorded pushes once ``received_total >= count``;
        fails with TimeoutError after ``timeout`` seconds."""
        if self.received_total >= count:
            return defer.succeed(list(self.received))
        d: defer.Deferred[list[Received]] = defer.Deferred()
        entry = (count, d)
        self._waiters.append(entry)

        def expire() -> None:
            if entry in self._waiters:
                self._waiters.remove(entry)
                d.errback(TimeoutError(
                    f"{self.address}: {self.received_total} pushes received, waited for {count}"))

        call = self.reactor.callLater(timeout, expire)

        def cancel_timer(result: Any) -> Any:
            if call.active():
                call.cancel()
            return result

        return d.addBoth(cancel_timer)

    # -- the gateway server's handling

    def _connection_made(self, conn: _GatewayConnection) -> None:
        self._connections.add(conn)
        self.stats["connections"] += 1

    def _connection_lost(self, conn: _GatewayConnection) -> None:
        self._connections.discard(conn)

    def _handle(self, conn: _GatewayConnection, packet: Packet | Heartbeat) -> None:
        if isinstance(packet, Heartbeat) or packet.cmd != CMD_GATEWAY_PUSH:
            # MessageDispatcher, POLICY_REJECT: the gateway registers a handler
            # for GATEWAY_PUSH only. A heartbeat is Packet(HEARTBEAT), session 0.
            cmd, sid = (CMD_HEARTBEAT, 0) if isinstance(packet, Heartbeat) else (
                packet.cmd, packet.session_id)
            self.stats["unsupported"] += 1
            conn.close(self._error(cmd, sid, ErrorCode.UNSUPPORTED_CMD, None))
            return
        begin = _now_ms()
        try:
            push = self._decode(packet)
        except (ProtocolError, zlib.error, ValueError):
            # The handler threw: DISPATCH_ERROR, then close.
            self.stats["dispatch_errors"] += 1
            conn.close(self._error(packet.cmd, packet.session_id, ErrorCode.DISPATCH_ERROR, None))
            return
        self._record(packet, push)
        if push.is_broadcast:
            self.stats["broadcasts"] += 1
            behaviour = self.broadcast_behaviour
        else:
            self.stats["pushes"] += 1
            assert push.user_id is not None
            behaviour = self.behaviour_for(push.user_id, push.client_type)
        self._answer(conn, packet, push, behaviour, begin)

    def _decode(self, packet: Packet) -> GatewayPush:
        body = packet.body
        if not body:
            # BaseMessage.decodeBody skips an empty body: every field null,
            # which is a broadcast of nothing.
            return GatewayPush(None, 0, 0, b"")
        if packet.flags & FLAG_JSON_BODY:
            raise ProtocolError("json body on a gateway push")  # Java fails to decode it
        if packet.flags & FLAG_COMPRESS:
            body = zlib.decompress(body)  # Java inflates it (BaseMessage)
        return GatewayPush.decode_body(body)

    def _record(self, packet: Packet, push: GatewayPush) -> None:
        self.received_total += 1
        if self.received.maxlen != 0:
            self.received.append(
                Received(packet.session_id, packet.flags, push, packet.encode()))
        if self._waiters:
            ready = [w for w in self._waiters if self.received_total >= w[0]]
            for w in ready:
                self._waiters.remove(w)
                w[1].callback(list(self.received))

    def _answer(self, conn: _GatewayConnection, packet: Packet, push: GatewayPush,
                behaviour: str, begin: int) -> None:
        kind, delay = parse_behaviour(behaviour)
        sid = packet.session_id
        if kind == "silent":
            self.stats["silent"] += 1
            return
        if kind == "close":
            self.stats["closed"] += 1
            conn.close()
            return
        if kind == "garbage":
            self.stats["garbage"] += 1
            conn.send(_HEADER.pack(GARBAGE_HEADER_LENGTH, CMD_OK, 0, 0, sid, 0)
                      + b"\xde\xad\xbe\xef" * 8)
            return
        code = _ERROR_CODES.get(kind)

        def reply() -> bytes:
            if push.is_broadcast:
                # GatewayPushListener.onBroadcastComplete: OK without data.
                data = None
            else:
                points = [("push-center-begin", begin)]
                if code is None:
                    points.append(("before-send", begin))
                    if packet.flags & (FLAG_AUTO_ACK | FLAG_BIZ_ACK):
                        points.append(("waiting-ack", begin))
                    points.append(("success-end", _now_ms()))
                else:
                    points.append((_END_POINTS.get(code, "failure-end"), _now_ms()))
                data = push_result_json(push.user_id, push.client_type, points)
            if code is None:
                self.stats["ok"] += 1
                return OkMessage(packet.cmd, 0, data).to_packet(sid).encode()
            self.stats["error"] += 1
            return self._error(packet.cmd, sid, code, data)

        if delay > 0:
            conn.send_later(delay, reply)
        else:
            conn.send(reply())

    @staticmethod
    def _error(cmd: int, session_id: int, code: int, data: str | None) -> bytes:
        reason = ERROR_REASONS.get(code, _UNKNOWN_REASON)
        return ErrorMessage(cmd, code, reason, data).to_packet(session_id).encode()


def _check(replies: list[Any]) -> None:
    # SyncRedisClient.pipeline returns error replies instead of raising them.
    for reply in replies:
        if isinstance(reply, Exception):
            raise reply


def _without_conn_id(location: str) -> str:
    # ClientLocation.offline().toJson(): the same string minus its connId,
    # which toJson always writes last.
    head, sep, _ = location.rpartition(',"connId":')
    return head + "}" if sep else location


# --------------------------------------------------------------------------
# Process mode
# --------------------------------------------------------------------------


def _build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m tests.harness.fakenode",
        description="A fake mpush node (gateway server, ZooKeeper nodes, users in Redis). "
                    "Prints its gateway host:port on stdout when ready; runs until SIGTERM.")
    p.add_argument("--zk", help="ZooKeeper connect string (omit: register nothing)")
    p.add_argument("--redis", help="Redis host:port (omit: no users in Redis)")
    p.add_argument("--redis-password")
    p.add_argument("--namespace", default="mpush")
    p.add_argument("--digest", default="mpush", help='ZooKeeper digest; "" for none')
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0, help="gateway port (0: a free one)")
    p.add_argument("--cs-port", type=int, help="port in the cs node (nothing listens there)")
    p.add_argument("--ws-port", type=int,
                   help="register a WebSocket server node with this port (nothing listens)")
    p.add_argument("--users", type=int, default=0, help="online users to add")
    p.add_argument("--user-prefix", default="u")
    p.add_argument("--behaviour", default="deliver", help="for the users added")
    p.add_argument("--unknown-behaviour", default="offline", help="for users never added")
    p.add_argument("--broadcast-behaviour", default="deliver")
    p.add_argument("--record", type=int, default=0, help="pushes to keep in memory")
    p.add_argument("--never-read", action="store_true",
                   help="accept gateway connections and never read them (a hung gateway)")
    p.add_argument("--udp", action="store_true", help="a UDP gateway port instead of TCP")
    p.add_argument("--drop-every", type=int, default=0,
                   help="with --udp: drop every Nth datagram received (0: none)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = _build_parser().parse_args(argv)
    from twisted.internet import reactor

    try:
        for b in (args.behaviour, args.unknown_behaviour, args.broadcast_behaviour):
            parse_behaviour(b)
    except ValueError as e:
        print(f"fakenode: {e}", file=sys.stderr)
        return 2
    node: FakeNode | None = None
    try:
        node = FakeNode(args.redis, args.zk, namespace=args.namespace,
                        digest=args.digest or None, host=args.host, port=args.port,
                        cs_port=args.cs_port, ws_port=args.ws_port,
                        redis_password=args.redis_password,
                        default_behaviour=args.behaviour,
                        unknown_behaviour=args.unknown_behaviour,
                        broadcast_behaviour=args.broadcast_behaviour, record_limit=args.record,
                        reading=not args.never_read, udp=args.udp,
                        drop_every=args.drop_every, reactor=reactor)
        # Users before registration: an alloc that sees the node finds its
        # count and routes complete.
        node.listen()
        if args.users:
            node.add_users(args.users, args.user_prefix)
        node.start()
    except Exception as e:
        print(f"fakenode: cannot start: {type(e).__name__}: {e}", file=sys.stderr)
        if node is not None:
            node.stop()
        return 1
    print(node.address, flush=True)
    print(f"fakenode: gateway {node.address}, cs {node.cs_address}, {args.users} users",
          file=sys.stderr, flush=True)
    # twistd-like: SIGTERM/SIGINT stop the reactor; unregister before exiting.
    reactor.addSystemEventTrigger("before", "shutdown", node.stop)
    reactor.run()
    return 0


class FakeNodeProcess:
    """``python -m tests.harness.fakenode`` as a child process, for sync code.

    ``start()`` returns once the node printed its address (bounded wait).
    """

    def __init__(self, zk: str | None = None, redis: str | tuple[str, int] | None = None, *,
                 namespace: str = "mpush", users: int = 0, user_prefix: str = "u",
                 port: int = 0, args: Sequence[str] = ()) -> None:
        self.argv = [sys.executable, "-m", "tests.harness.fakenode", "--port", str(port)]
        if zk is not None:
            self.argv += ["--zk", zk, "--namespace", namespace]
        if redis is not None:
            self.argv += ["--redis", redis if isinstance(redis, str) else f"{redis[0]}:{redis[1]}"]
        if users:
            self.argv += ["--users", str(users), "--user-prefix", user_prefix]
        self.argv += list(args)
        self.process: subprocess.Popen[bytes] | None = None
        self.address: str | None = None
        self._log = tempfile.TemporaryFile()

    @property
    def host(self) -> str:
        assert self.address is not None
        return _parse_address(self.address)[0]

    @property
    def port(self) -> int:
        assert self.address is not None
        return _parse_address(self.address)[1]

    def log(self) -> str:
        self._log.seek(0)
        return self._log.read().decode("utf-8", "replace")

    def start(self, timeout: float = 20.0) -> Self:
        self.process = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL,
                                        stdout=subprocess.PIPE, stderr=self._log,
                                        start_new_session=True)
        assert self.process.stdout is not None
        fd = self.process.stdout.fileno()
        deadline = time.monotonic() + timeout
        line = b""
        while not line.endswith(b"\n"):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self.kill()
                raise TimeoutError(f"fake node not ready after {timeout}s:\n{self.log()}")
            ready, _, _ = select.select([fd], [], [], remaining)
            if ready:
                chunk = os.read(fd, 256)
                if not chunk:
                    code = self.process.wait(5)
                    raise RuntimeError(f"fake node exited {code} at start:\n{self.log()}")
                line += chunk
        self.address = line.decode().strip()
        return self

    def terminate(self, timeout: float = 10.0) -> int:
        """SIGTERM; returns the exit status."""
        if self.process is None:
            return 0
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.kill()
        self._log.close()


if __name__ == "__main__":
    sys.exit(main())
