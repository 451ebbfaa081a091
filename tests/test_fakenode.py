"""The fake mpush node (tests.harness.fakenode) against real ZooKeeper, Redis and TCP.

What it must look like is what the Java mpush server does (see the module
docstring); these tests pin the bytes other tests will rely on.
"""

from __future__ import annotations

import json
import re
import socket
import struct
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import pytest_twisted
from kazoo.client import KazooClient
from kazoo.exceptions import NoAuthError
from kazoo.security import ACL, Id, Permissions
from twisted.internet import reactor
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.error import ConnectionRefusedError
from twisted.internet.protocol import Protocol, connectionDone
from twisted.internet.task import deferLater
from twisted.python.failure import Failure

from mpush.wire import (
    CMD_ERROR,
    CMD_GATEWAY_KICK,
    CMD_GATEWAY_PUSH,
    HEADER_LEN,
    HEARTBEAT_BYTE,
    ErrorMessage,
    GatewayPush,
    OkMessage,
    Packet,
    PacketDecoder,
    ProtocolError,
    broadcast_packet,
    client_type_of,
    decode_reply,
    single_push_packet,
)
from tests.harness.fakenode import (
    GARBAGE_HEADER_LENGTH,
    FakeNode,
    FakeNodeProcess,
    location_json,
    parse_behaviour,
    push_result_json,
)
from tests.harness.redis import RedisServer
from tests.harness.registry import digest_acl_id
from tests.harness.zookeeper import ZooKeeperServer

pytestmark = pytest.mark.timeout(30)

JAVA_ACL = [ACL(Permissions.ALL, Id("digest", digest_acl_id("mpush")))]
CONTENT = b'{"content":"hi"}'


# -- helpers ------------------------------------------------------------------

async def sleep(seconds: float) -> None:
    await deferLater(reactor, seconds)


async def until(predicate: Callable[[], Any], timeout: float = 3.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what or predicate}"
        await sleep(0.01)


class RawClient(Protocol):
    """A bare gateway client: keeps every byte it gets, notes the close."""

    def __init__(self) -> None:
        self.data = bytearray()
        self.is_closed = False

    def dataReceived(self, data: bytes) -> None:
        self.data += data

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.is_closed = True

    def send(self, data: bytes) -> None:
        self.transport.write(data)

    def replies(self) -> dict[int, Packet]:
        """Complete frames received so far, by sessionId."""
        packets = PacketDecoder().feed(bytes(self.data))
        return {p.session_id: p for p in packets if isinstance(p, Packet)}

    async def reply(self, session_id: int, timeout: float = 3.0) -> OkMessage | ErrorMessage:
        await until(lambda: session_id in self.replies(), timeout, f"reply {session_id}")
        packet = self.replies()[session_id]
        assert packet.flags == 0  # Packet.response(): no flags
        return decode_reply(packet)


async def closed(client: RawClient, timeout: float = 3.0) -> None:
    await until(lambda: client.is_closed, timeout, "the server to close the connection")


async def connect(node: FakeNode) -> RawClient:
    assert node.port is not None
    client = RawClient()
    await connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", node.port, timeout=2), client)
    return client


@pytest_twisted.async_yield_fixture
async def make_node() -> AsyncIterator[Callable[..., FakeNode]]:
    """``make_node(redis=None, zk=None, **kw)`` -> a started FakeNode, stopped at teardown."""
    made: list[FakeNode] = []

    def make(redis: Any = None, zk: str | None = None, **kw: Any) -> FakeNode:
        node = FakeNode(redis, zk, **kw)
        made.append(node)
        return node.start()

    yield make
    for node in made:
        await node.stop()


def push(sid: int, user: str, client_type: int = 1, **kw: Any) -> bytes:
    return single_push_packet(sid, user, client_type, 3000, CONTENT, **kw)


# -- pure ---------------------------------------------------------------------

def test_java_json_and_behaviour_parsing() -> None:
    # ClientLocation.toJson: port first, nulls left out, no escaping.
    assert location_json("10.0.0.5", 3001, device_id="d1", os_name="android",
                         client_version="1.0", conn_id="0a1b2c3d") == (
        '{"port":3001,"host":"10.0.0.5","deviceId":"d1","osName":"android",'
        '"clientVersion":"1.0","connId":"0a1b2c3d"}')
    assert location_json("h", 1, device_id=None, os_name="ios", client_version=None,
                         conn_id=None) == '{"port":1,"host":"h","osName":"ios"}'
    # GatewayPushResult via fastjson: sorted keys, clientType <= 0 left out.
    assert push_result_json("u\"1", 2, [("push-center-begin", 5), ("success-end", 7)]) == (
        '{"clientType":2,"timePoints":["push-center-begin",5,"success-end",7],"userId":"u\\"1"}')
    assert push_result_json("u", 0, []) == '{"timePoints":[],"userId":"u"}'
    assert parse_behaviour("delay:250") == ("delay", 0.25)
    assert parse_behaviour("route_change") == ("route_change", 0.0)
    for bad in ("deliverr", "delay:", "delay:-1", "delay:x", ""):
        with pytest.raises(ValueError):
            parse_behaviour(bad)
    node = FakeNode(reactor=reactor)
    with pytest.raises(ValueError):
        node.set_behaviour("u1", "explode")
    with pytest.raises(RuntimeError):
        node.add_user("u1")  # no port yet: the route would carry port 0


# -- ZooKeeper ------------------------------------------------------------------

@pytest_twisted.ensureDeferred
async def test_registers_like_java(zk_server: ZooKeeperServer, zk_namespace: str,
                                   make_node: Callable[..., FakeNode]) -> None:
    node = make_node(zk=zk_server.connect_string, namespace=zk_namespace, cs_port=3456)
    assert node.registrar is not None and node.node_paths is not None
    cs, gs = node.node_paths
    prefix = f"/{zk_namespace}"
    reader = KazooClient(hosts=zk_server.connect_string, auth_data=[("digest", "mpush")])
    anonymous = KazooClient(hosts=zk_server.connect_string)
    reader.start(timeout=10)
    anonymous.start(timeout=10)
    try:
        assert reader.get_children(prefix + "/cluster/cs") == [cs.rsplit("/", 1)[1]]
        assert reader.get_children(prefix + "/cluster/gs") == [gs.rsplit("/", 1)[1]]
        data, stat = reader.get(prefix + cs)
        assert data == b'{"attrs":{"weight":1},"host":"127.0.0.1","port":3456}'
        assert stat.ephemeralOwner == node.registrar.session_id
        data, stat = reader.get(prefix + gs)
        assert data == f'{{"host":"127.0.0.1","port":{node.port}}}'.encode()
        assert stat.ephemeralOwner == node.registrar.session_id
        for path in (prefix, prefix + "/cluster/gs", prefix + cs, prefix + gs):
            assert reader.get_acls(path)[0] == JAVA_ACL, path
        with pytest.raises(NoAuthError):
            anonymous.get_children(prefix + "/cluster/gs")

        # A kill leaves the nodes (a crashed server's stay until its session
        # expires); stop removes them at once.
        await node.kill()
        assert reader.exists(prefix + gs) is not None
        await node.stop()
        assert reader.get_children(prefix + "/cluster/gs") == []
        assert reader.get_children(prefix + "/cluster/cs") == []
    finally:
        for client in (reader, anonymous):
            client.stop()
            client.close()


# -- Redis --------------------------------------------------------------------------

@pytest_twisted.ensureDeferred
async def test_users_written_like_java(redis_server: RedisServer,
                                       make_node: Callable[..., FakeNode]) -> None:
    node = make_node(redis_server.address)
    node.add_user("u1")
    field, value = redis_server.call("HGETALL", "mp:ur:u1")
    assert field == "1"
    assert re.fullmatch(
        rf'\{{"port":{node.port},"host":"127\.0\.0\.1","deviceId":"dev-u1",'
        r'"osName":"android","clientVersion":"1\.0\.0","connId":"[0-9a-f]{8}"\}', value), value
    assert redis_server.call("ZSCORE", "mp:oul:127.0.0.1", "u1") == "0"  # Java's zAdd: score 0

    # The field is the clientType derived from osName, as Java writes it.
    node.add_user("u2", os_name="Windows 10", online=False)
    location = json.loads(redis_server.call("HGET", "mp:ur:u2", "2"))
    assert "connId" not in location and location["osName"] == "Windows 10"
    assert client_type_of(location["osName"]) == 2
    assert redis_server.call("ZSCORE", "mp:oul:127.0.0.1", "u2") is None

    # A disconnect: connId dropped, out of the online set; the route stays.
    node.remove_user("u1")
    location = json.loads(redis_server.call("HGET", "mp:ur:u1", "1"))
    assert "connId" not in location and location["port"] == node.port
    assert redis_server.call("ZCARD", "mp:oul:127.0.0.1") == 0
    assert node.behaviour_for("u1", 1) == "offline"
    node.remove_user("u2", delete=True)
    assert redis_server.call("EXISTS", "mp:ur:u2") == 0

    started = time.monotonic()
    ids = node.add_users(10_000, "b")
    assert time.monotonic() - started < 5.0
    assert len(ids) == 10_000 and ids[0] == "b0" and ids[-1] == "b9999"
    assert redis_server.call("ZCARD", "mp:oul:127.0.0.1") == 10_000
    assert json.loads(redis_server.call("HGET", "mp:ur:b9999", "1"))["connId"]
    assert node.behaviour_for("b42", 1) == "deliver"


# -- gateway answers --------------------------------------------------------------

@pytest_twisted.ensureDeferred
async def test_single_push_answers_per_behaviour(make_node: Callable[..., FakeNode]) -> None:
    node = make_node()
    node.add_user("ok")
    node.add_user("pc", os_name="mac")
    for user, behaviour in (("off", "offline"), ("fail", "client_failure"),
                            ("moved", "route_change"), ("odd", "unknown_code")):
        node.add_user(user, behaviour=behaviour)
    node.add_user("gone", online=False)
    client = await connect(node)
    before = int(time.time() * 1000)
    client.send(push(1, "ok") + push(2, "pc", 2, ack="auto") + push(3, "off") + push(4, "fail")
                + push(5, "moved") + push(6, "odd") + push(7, "gone") + push(8, "stranger")
                + push(-9, "ok", 2))

    ok = await client.reply(1)
    assert isinstance(ok, OkMessage) and (ok.cmd, ok.code) == (CMD_GATEWAY_PUSH, 0)
    assert ok.data is not None and re.fullmatch(
        r'\{"clientType":1,"timePoints":\["push-center-begin",\d+,"before-send",\d+,'
        r'"success-end",\d+\],"userId":"ok"\}', ok.data), ok.data
    assert json.loads(ok.data)["timePoints"][1] >= before
    acked = await client.reply(2)
    assert isinstance(acked, OkMessage) and acked.data is not None
    assert json.loads(acked.data)["clientType"] == 2
    assert "waiting-ack" in json.loads(acked.data)["timePoints"]

    expected = {3: (1, "user offline", "offline-end"), 4: (2, "push to client failure",
                "failure-end"), 5: (3, "router change", "redirect-end"),
                6: (77, "unknown", "failure-end"), 7: (1, "user offline", "offline-end"),
                8: (1, "user offline", "offline-end"),
                -9: (1, "user offline", "offline-end")}  # no route of clientType 2
    for sid, (code, reason, end) in expected.items():
        error = await client.reply(sid)
        assert isinstance(error, ErrorMessage), sid
        assert (error.cmd, error.code, error.reason) == (CMD_GATEWAY_PUSH, code, reason), sid
        assert error.data is not None
        assert json.loads(error.data)["timePoints"][-2] == end, sid
    assert node.stats["ok"] == 2 and node.stats["error"] == 7
    assert [r.session_id for r in node.received] == [1, 2, 3, 4, 5, 6, 7, 8, -9]
    assert node.received[1].flags == 8 and node.received[1].push.user_id == "pc"
    assert not client.is_closed


@pytest_twisted.ensureDeferred
async def test_silent_delay_garbage_close(make_node: Callable[..., FakeNode]) -> None:
    node = make_node(default_behaviour="silent")
    node.add_user("quiet")
    node.add_user("slow", behaviour="delay:300")
    node.add_user("junk", behaviour="garbage")
    node.add_user("bye", behaviour="close")
    node.add_user("fine", behaviour="deliver")

    client = await connect(node)
    started = time.monotonic()
    client.send(push(1, "quiet") + push(2, "slow") + push(3, "fine"))
    assert isinstance(await client.reply(3), OkMessage)  # silence is per request
    assert isinstance(await client.reply(2), OkMessage)
    assert time.monotonic() - started >= 0.28
    await sleep(0.1)
    assert set(client.replies()) == {2, 3} and node.stats["silent"] == 1

    # A late answer for a connection that closed meanwhile is dropped.
    node.set_behaviour("fine", "delay:100")
    client.send(push(4, "fine"))
    await node.wait_received(4)
    client.transport.loseConnection()
    await closed(client)
    await sleep(0.2)
    assert node.stats["ok"] == 2

    client = await connect(node)
    client.send(push(5, "junk"))
    await until(lambda: len(client.data) >= HEADER_LEN, what="garbage")
    assert struct.unpack_from(">i", client.data)[0] == GARBAGE_HEADER_LENGTH
    with pytest.raises(ProtocolError):
        PacketDecoder().feed(bytes(client.data))

    client = await connect(node)
    client.send(push(6, "bye"))
    await closed(client)
    assert client.data == b""
    assert node.stats["closed"] == 1


@pytest_twisted.ensureDeferred
async def test_broadcast_recorded_with_tags_and_condition(
        make_node: Callable[..., FakeNode]) -> None:
    node = make_node(broadcast_behaviour="delay:200")
    client = await connect(node)
    condition = "tags.indexOf('vip') >= 0 && osName == 'android'"
    started = time.monotonic()
    client.send(broadcast_packet(7, CONTENT, tags=["vip", "新"], condition=condition,
                                 task_id="t-1", ack="biz"))
    reply = await client.reply(7)
    assert time.monotonic() - started >= 0.18
    assert isinstance(reply, OkMessage) and reply.cmd == CMD_GATEWAY_PUSH and reply.data is None

    [received] = node.received
    assert received.session_id == 7 and received.flags == 4
    assert received.push == GatewayPush(None, 0, 0, CONTENT, "t-1", '["vip","新"]', condition)
    assert '["vip","新"]'.encode() in received.raw and condition.encode() in received.raw
    assert received.raw[4] == CMD_GATEWAY_PUSH and len(received.raw) == HEADER_LEN + struct.unpack(
        ">i", received.raw[:4])[0]
    assert node.stats["broadcasts"] == 1 and node.stats["pushes"] == 0


@pytest_twisted.ensureDeferred
async def test_unsupported_and_broken_requests_close(make_node: Callable[..., FakeNode]) -> None:
    node = make_node()
    node.add_user("u1")
    # An unsupported command: ERROR 101 for it, then the close (MessageDispatcher).
    client = await connect(node)
    client.send(Packet(CMD_GATEWAY_KICK, 41, body=b"\x00\x00").encode() + push(42, "u1"))
    await closed(client)
    error = decode_reply(client.replies()[41])
    assert isinstance(error, ErrorMessage)
    assert (error.cmd, error.code, error.reason, error.data) == (
        CMD_GATEWAY_KICK, 101, "unsupported command", None)
    assert 42 not in client.replies()  # nothing is handled after it

    # A heartbeat too: the gateway has no handler for it.
    client = await connect(node)
    client.send(bytes([HEARTBEAT_BYTE]))
    await closed(client)
    [packet] = PacketDecoder().feed(bytes(client.data))
    assert isinstance(packet, Packet) and (packet.cmd, packet.session_id) == (CMD_ERROR, 0)
    assert decode_reply(packet) == ErrorMessage(1, 101, "unsupported command", None)

    # An undecodable push body: DISPATCH_ERROR, then the close.
    client = await connect(node)
    client.send(Packet(CMD_GATEWAY_PUSH, 43, body=b"\x00\x05ab").encode())
    await closed(client)
    error = decode_reply(client.replies()[43])
    assert isinstance(error, ErrorMessage) and (error.code, error.reason) == (
        100, "handle message error")

    # A frame over the 10 KB limit: closed without a word.
    client = await connect(node)
    client.send(struct.pack(">iBHBiB", 10241, CMD_GATEWAY_PUSH, 0, 0, 44, 0))
    await closed(client)
    assert client.data == b""
    assert node.stats["unsupported"] == 2 and node.stats["dispatch_errors"] == 1
    assert node.stats["protocol_errors"] == 1 and node.received_total == 0


@pytest_twisted.ensureDeferred
async def test_kill_drops_everything_and_listen_revives(
        make_node: Callable[..., FakeNode]) -> None:
    node = make_node(record_limit=2)
    node.add_user("u1")
    clients = [await connect(node) for _ in range(3)]
    await until(lambda: node.connection_count == 3)
    port = node.port
    await node.kill()
    for client in clients:
        await closed(client)
    assert node.connection_count == 0
    with pytest.raises(ConnectionRefusedError):
        await connect(node)

    node.listen()
    assert node.port == port
    client = await connect(node)
    client.send(b"".join(push(sid, "u1") for sid in range(5)))
    assert isinstance(await client.reply(4), OkMessage)
    assert [r.session_id for r in node.received] == [3, 4]  # bounded record
    assert node.received_total == 5
    with pytest.raises(TimeoutError):
        await node.wait_received(6, timeout=0.1)


# -- process mode ----------------------------------------------------------------

def test_process_mode(zk_server: ZooKeeperServer, zk_namespace: str,
                      redis_server: RedisServer) -> None:
    proc = FakeNodeProcess(zk_server.connect_string, redis_server.address,
                           namespace=zk_namespace, users=50, user_prefix="p",
                           args=["--cs-port", "3999"])
    reader = KazooClient(hosts=zk_server.connect_string, auth_data=[("digest", "mpush")])
    reader.start(timeout=10)
    try:
        with proc:
            assert re.fullmatch(r"127\.0\.0\.1:\d+", proc.address or ""), proc.address
            # Ready means registered and users written.
            [gs] = reader.get_children(f"/{zk_namespace}/cluster/gs")
            data, _ = reader.get(f"/{zk_namespace}/cluster/gs/{gs}")
            assert json.loads(data) == {"host": "127.0.0.1", "port": proc.port}
            [cs] = reader.get_children(f"/{zk_namespace}/cluster/cs")
            data, _ = reader.get(f"/{zk_namespace}/cluster/cs/{cs}")
            assert json.loads(data)["port"] == 3999
            assert redis_server.call("ZCARD", "mp:oul:127.0.0.1") == 50
            assert json.loads(redis_server.call("HGET", "mp:ur:p49", "1"))["port"] == proc.port

            with socket.create_connection((proc.host, proc.port), timeout=5) as sock:
                sock.sendall(push(11, "p7") + push(12, "nobody"))
                decoder, packets = PacketDecoder(), []
                while len(packets) < 2:
                    chunk = sock.recv(4096)
                    assert chunk, "connection closed"
                    packets += decoder.feed(chunk)
            replies = {p.session_id: decode_reply(p) for p in packets if isinstance(p, Packet)}
            assert isinstance(replies[11], OkMessage)
            assert replies[11].data is not None and '"userId":"p7"' in replies[11].data
            assert isinstance(replies[12], ErrorMessage) and replies[12].code == 1

            started = time.monotonic()
            assert proc.terminate() == 0, proc.log()
            assert time.monotonic() - started < 10
            # Its ZooKeeper session was closed on the way out.
            assert reader.get_children(f"/{zk_namespace}/cluster/gs") == []
    finally:
        reader.stop()
        reader.close()


def test_process_mode_fails_fast_on_bad_redis() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = f"127.0.0.1:{s.getsockname()[1]}"  # bound, not listening: refused
        proc = FakeNodeProcess(None, dead, users=1)
        with pytest.raises(RuntimeError, match="exited 1"):
            proc.start(timeout=15)
