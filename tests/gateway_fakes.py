"""Gateway connections under test: helpers shared by tests/test_gateway.py and
tests/test_gateway_queue.py.

* one :class:`~mpush.cluster.gateway_connection.GatewayProtocol` on a
  ``StringTransport`` with its own ``Clock`` (:class:`Conn`), its replies
  collected (:class:`Recorder`), the frames a gateway answers (``ok``, ``err``);
* a tiny gateway server on 127.0.0.1 (:class:`FakeGatewayFactory`: answers
  OK, stays silent, speaks garbage, or never reads), a ZkWatcher-like view
  (:class:`FakeView`), a pool on the real reactor (:func:`make_pool`), the
  ``servers`` fixture that closes the servers a test made, and the ``logs``
  fixture with :func:`warnings_about`. Every wait is bounded.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from twisted.internet import reactor
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import Clock, deferLater
from twisted.internet.testing import StringTransport
from twisted.logger import LogEvent, LogLevel, formatEvent, globalLogPublisher
from twisted.python.failure import Failure

from mpush.cluster.gateway_connection import ConnectionLimits, GatewayProtocol, GatewayReply
from mpush.cluster.gateways import REPLY_LIMIT_FLOOR, GatewayPool, GatewayPoolOptions
from mpush.cluster.server_node import ServerNode
from mpush.wire import (
    CMD_GATEWAY_PUSH,
    ERROR_REASONS,
    ErrorMessage,
    OkMessage,
    Packet,
    PacketDecoder,
    single_push_packet,
)

ADDR = "10.0.0.5:3001"


def build(user_id: str = "u1") -> Callable[[int], bytes]:
    return lambda sid: single_push_packet(sid, user_id, 1, 3000, b"hello")


def ok(sid: int, cmd: int = CMD_GATEWAY_PUSH) -> bytes:
    return OkMessage(cmd, 0, '{"clientType":1,"userId":"u1"}').to_packet(sid).encode()


def err(sid: int, code: int, cmd: int = CMD_GATEWAY_PUSH) -> bytes:
    return ErrorMessage(cmd, code, ERROR_REASONS.get(code, "?")).to_packet(sid).encode()


class Recorder:
    """Collects every firing of a Deferred (so a second firing would show)."""

    def __init__(self, d: Deferred[GatewayReply]) -> None:
        self.replies: list[GatewayReply] = []
        self.failures: list[Failure] = []
        d.addCallbacks(self.replies.append, self.failures.append)

    @property
    def reply(self) -> GatewayReply | None:
        assert not self.failures, self.failures
        assert len(self.replies) <= 1
        return self.replies[0] if self.replies else None


class Conn:
    """A GatewayProtocol on a StringTransport with its own Clock."""

    def __init__(self, max_pending: int = 100, max_reply_size: int = REPLY_LIMIT_FLOOR,
                 buffer_size: int | None = None, **limits: Any) -> None:
        self.clock = Clock()
        self.transport = StringTransport()
        if buffer_size is not None:
            self.transport.bufferSize = buffer_size  # as a TCP transport's (64 KiB)
        self.proto = GatewayProtocol(
            ADDR, ConnectionLimits(max_reply_size, max_pending, **limits), clock=self.clock)
        self.proto.makeConnection(self.transport)

    def send(self, timeout: float = 3.0, user_id: str = "u1") -> Recorder:
        return Recorder(self.proto.request(build(user_id), timeout))

    def sent(self) -> list[Packet]:
        packets = PacketDecoder().feed(self.transport.value())
        self.transport.clear()
        return [p for p in packets if isinstance(p, Packet)]


@pytest.fixture
def logs() -> Iterator[list[LogEvent]]:
    events: list[LogEvent] = []
    globalLogPublisher.addObserver(events.append)
    yield events
    globalLogPublisher.removeObserver(events.append)


def warnings_about(events: list[LogEvent], text: str) -> list[str]:
    out = []
    for e in events:
        if e.get("log_level") in (LogLevel.warn, LogLevel.error):
            line = formatEvent(e)
            if text in line:
                out.append(line)
    return out



# -- a gateway server, a view and a pool on the real reactor ----------------------

class FakeGateway(Protocol):
    """Answers each GATEWAY_PUSH per the factory's mode: ok | silent | garbage;
    or, in mode deaf when it connects, never reads the connection."""

    factory: FakeGatewayFactory

    def connectionMade(self) -> None:
        self.decoder = PacketDecoder()
        self.received: list[Packet] = []
        self.factory.conns.append(self)
        self.factory.accepted += 1
        if self.factory.mode == "deaf":
            self.transport.pauseProducing()

    def dataReceived(self, data: bytes) -> None:
        for p in self.decoder.feed(data):
            if not isinstance(p, Packet):
                continue
            self.received.append(p)
            if self.factory.mode == "ok":
                self.transport.write(ok(p.session_id))
            elif self.factory.mode == "garbage":
                self.transport.write(b"\xff" * 20)

    def connectionLost(self, reason: Failure = Failure(ConnectionError())) -> None:  # noqa: B008
        self.factory.conns.remove(self)


class FakeGatewayFactory(Factory):
    protocol = FakeGateway
    noisy = False

    def __init__(self) -> None:
        self.mode = "ok"
        self.conns: list[FakeGateway] = []
        self.accepted = 0
        self.port: Any = None
        self.number = 0

    def start(self) -> FakeGatewayFactory:
        self.port = reactor.listenTCP(self.number, self, interface="127.0.0.1")
        self.number = self.port.getHost().port
        return self

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.number}"

    @inlineCallbacks
    def stop(self) -> Any:
        # Abort the accepted connections too: stopListening leaves them open.
        for conn in list(self.conns):
            conn.transport.abortConnection()
        if self.port is not None:
            yield self.port.stopListening()
            self.port = None
        yield wait_for(lambda: not self.conns, 5, "server connections to close")


class FakeView:
    """ZkWatcher-like: gateway_servers(), add_listener() and remove_listener()."""

    def __init__(self) -> None:
        self.nodes: dict[str, ServerNode] = {}
        self.listeners: list[Callable[[str, str, ServerNode | None], object]] = []

    def gateway_servers(self) -> dict[str, ServerNode]:
        return dict(self.nodes)

    def add_listener(self, cb: Callable[[str, str, ServerNode | None], object]) -> None:
        self.listeners.append(cb)

    def remove_listener(self, cb: Callable[[str, str, ServerNode | None], object]) -> None:
        self.listeners.remove(cb)

    def put(self, name: str, address: str) -> None:
        host, port = address.rsplit(":", 1)
        event = "updated" if name in self.nodes else "added"
        self.nodes[name] = node = ServerNode(name, host, int(port))
        self._emit(event, node)

    def remove(self, name: str) -> None:
        self._emit("removed", self.nodes.pop(name))

    def _emit(self, event: str, node: ServerNode | None) -> None:
        for cb in self.listeners:
            cb("gs", event, node)


def wait_for(predicate: Callable[[], Any], timeout: float, what: str) -> Deferred[Any]:
    @inlineCallbacks
    def poll() -> Any:
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout} s waiting for {what}")
            yield deferLater(reactor, 0.01, lambda: None)

    return poll()


def sleep(seconds: float) -> Deferred[None]:
    return deferLater(reactor, seconds, lambda: None)


def make_pool(view: FakeView, **kw: Any) -> GatewayPool:
    """A pool on the real reactor; ``kw`` are its GatewayPoolOptions' fields."""
    kw.setdefault("retry_policy", lambda attempt: 0.05)
    kw.setdefault("connect_timeout", 2.0)
    kw.setdefault("removal_grace", 0.0)  # most tests: a removal closes at once
    return GatewayPool(view, options=GatewayPoolOptions(**kw))


def started_pool(servers: list[FakeGatewayFactory], mode: str, **kw: Any
                 ) -> tuple[FakeGatewayFactory, GatewayPool]:
    """A gateway in ``mode`` (see :class:`FakeGateway`) and a started pool on it
    (``kw``: the pool's options)."""
    gw = gateway(servers)
    gw.mode = mode
    view = FakeView()
    view.put("n1", gw.address)
    pool = make_pool(view, **kw)
    pool.startService()
    return gw, pool


@pytest.fixture
def servers() -> Iterator[list[FakeGatewayFactory]]:
    made: list[FakeGatewayFactory] = []
    yield made
    for f in made:
        if f.port is not None:
            for conn in list(f.conns):
                conn.transport.abortConnection()
            f.port.stopListening()


def gateway(servers: list[FakeGatewayFactory]) -> FakeGatewayFactory:
    f = FakeGatewayFactory().start()
    servers.append(f)
    return f


