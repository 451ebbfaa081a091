"""The ZooKeeper view (mpush.cluster.zookeeper) against a real ZooKeeper, Java-style nodes.

Nodes are registered the way the Java mpush server registers them
(tests.harness.registry): ephemeral, fastjson JSON, digest ACL. Every wait
is bounded; outages are real (the JVM is stopped, the session expired).
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from typing import Any

import pytest
import pytest_twisted
from hypothesis import given
from hypothesis import strategies as st
from kazoo.client import KazooClient
from kazoo.exceptions import NoAuthError
from kazoo.protocol.states import KazooState
from kazoo.security import ACL, Id, Permissions
from twisted.internet import reactor
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.task import Clock, deferLater
from twisted.internet.threads import deferToThread
from twisted.logger import LogLevel, formatEvent, globalLogPublisher

from mpush.cluster.kazoo_logs import AttemptReporter
from mpush.cluster.server_node import NodeDataError, ServerNode
from mpush.cluster.zookeeper import ZkWatcher
from mpush.hosts import host_problem
from tests.harness.registry import NodeRegistrar, digest_acl_id, node_json
from tests.harness.zkfaults import CuttableProxy, expire_session
from tests.harness.zookeeper import RECONNECT_WAIT, SURVIVING_SESSION, ZooKeeperServer

JAVA_ACL_ID = "mpush:IoF5XrL443rOdy6w434vrj+58TQ="

pytestmark = pytest.mark.timeout(60)


# -- helpers -----------------------------------------------------------------

@inlineCallbacks
def wait_for(predicate: Callable[[], Any], timeout: float, what: str) -> Any:
    """Poll ``predicate`` in the reactor until it is truthy, at most ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        yield deferLater(reactor, 0.01, lambda: None)


def sleep(seconds: float) -> Deferred[None]:
    return deferLater(reactor, seconds, lambda: None)


def view(watcher: ZkWatcher, kind: str = "cs") -> dict[str, tuple[str, int]]:
    lists = {"cs": watcher.connection_servers, "gs": watcher.gateway_servers,
             "ws": watcher.websocket_servers}
    nodes = lists[kind]()
    return {name: (n.host, n.port) for name, n in nodes.items()}


def name_of(path: str) -> str:
    return path.rsplit("/", 1)[1]


class LogCapture:
    """Every twisted.logger event while installed (from any thread)."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []

    def __call__(self, event: dict[str, Any]) -> None:
        self.events.append(event)

    def states(self) -> list[str]:
        return [e["zk_state"] for e in list(self.events) if "zk_state" in e]

    def kazoo_at_least(self, level: LogLevel) -> list[dict[str, Any]]:
        return [e for e in list(self.events)
                if str(e.get("log_namespace", "")).startswith("kazoo")
                and e["log_level"] >= level]


@pytest.fixture
def logs() -> Any:
    capture = LogCapture()
    globalLogPublisher.addObserver(capture)
    yield capture
    globalLogPublisher.removeObserver(capture)


@inlineCallbacks
def expire_watcher_session(watcher: ZkWatcher, connect_string: str) -> Any:
    """Expire the watcher's session; returns the old session id.

    The takeover races with the watcher, which reconnects (with the same
    session) within ~0.1 s of losing its connection: if it gets there before
    the takeover client's close, the session lives on. Then try again.
    """
    assert watcher.client is not None
    session = watcher.client.client_id
    assert session is not None
    for _ in range(5):
        yield deferToThread(expire_session, connect_string, session)
        try:
            yield wait_for(lambda: watcher.state == "connected"
                           and watcher.session_id not in (None, session[0]), 3, "a new session")
        except AssertionError:
            continue
        return session[0]
    raise AssertionError("could not expire the watcher's session")


# -- ServerNode: pure -----------------------------------------------------------

def test_server_node_parses_java_json() -> None:
    node = ServerNode.parse("u1", b'{"attrs":{"weight":1},"host":"10.0.0.5","port":3000}')
    assert (node.name, node.host, node.port) == ("u1", "10.0.0.5", 3000)
    assert node.public_host == "10.0.0.5"
    assert node.weight == 1.0
    assert node.address == "10.0.0.5:3000"
    assert dict(node.attrs) == {"weight": 1}
    gateway = ServerNode.parse("g", b'{"host":"10.0.0.5","port":3001}')
    assert dict(gateway.attrs) == {} and gateway.weight == 1.0


def test_server_node_public_ip_weight_and_equality() -> None:
    node = ServerNode.parse(
        "n", json.dumps({"host": "10.0.0.5", "port": "3000",
                         "attrs": {"public_ip": "1.2.3.4", "weight": 2.5, "x": [1]}}).encode())
    assert node.port == 3000  # fastjson accepts a numeric string
    assert node.public_host == "1.2.3.4"
    assert node.address == "10.0.0.5:3000"  # gateways are keyed by host, not public_ip
    assert node.weight == 2.5
    for weight in (0, -1, "abc", None, True, float("nan"), float("inf"), [2]):
        assert ServerNode("n", "h", 1, {"weight": weight}).weight == 1.0
    assert ServerNode("n", "h", 1, {"weight": "3"}).weight == 3.0
    assert ServerNode("n", "h", 1, {"public_ip": ""}).public_host == "h"
    assert ServerNode("n", "h", 1, {"public_ip": 5}).public_host == "h"
    # attrs count for equality (an attrs change is an update), not for hashing
    assert ServerNode("n", "h", 1, {"weight": 1}) != ServerNode("n", "h", 1, {"weight": 2})
    assert hash(ServerNode("n", "h", 1, {"weight": 1})) == hash(ServerNode("n", "h", 1, {}))
    with pytest.raises(TypeError):
        node.attrs["weight"] = 3  # type: ignore[index]


@pytest.mark.parametrize("data", [
    None, b"", b"not json", b"\xff\xfe", b"[1,2]", b'"host"', b"{}",
    b'{"port":3000}', b'{"host":"","port":3000}', b'{"host":5,"port":3000}',
    b'{"host":"h"}', b'{"host":"h","port":0}', b'{"host":"h","port":65536}',
    b'{"host":"h","port":"30x0"}', b'{"host":"h","port":true}', b'{"host":"h","port":1.5}',
    b'{"host":"h","port":3000,"attrs":[1]}', b'{"host":"h","port":3000,"attrs":"w"}',
    b"[" * 100000,
])
def test_server_node_rejects_malformed(data: bytes | None) -> None:
    with pytest.raises(NodeDataError):
        ServerNode.parse("n", data)


# The forms the issue found served verbatim by GET / (or left out as "IPv6").
BAD_ADDRESSES = [
    ("comma", "10.9.9.9,6.6.6.6", "it holds ','"),
    ("cr-lf", "10.0.0.5\r\nX: y", "it holds '\\r'"),
    ("nul", "10.0.0.5\u0000", "it holds '\\x00'"),
    ("space", "10.0.0.5 6.6.6.6", "it holds ' '"),
    ("non-ascii", "10.0.0.5\u00e9", "it holds '\u00e9'"),
    ("1000-characters", "a" * 1000, "1000 characters long"),
    ("ipv6", "fe80::1", "an IPv6 address, which the client SDK cannot parse"),
]


def cs_json(host: str, public_ip: str | None = None) -> bytes:
    attrs = {"weight": 1} if public_ip is None else {"weight": 1, "public_ip": public_ip}
    return node_json(host, 3000, attrs)


@pytest.mark.parametrize(("address", "fragment"), [b[1:] for b in BAD_ADDRESSES],
                         ids=[b[0] for b in BAD_ADDRESSES])
def test_a_connection_server_is_refused_for_an_address_clients_cannot_use(
        address: str, fragment: str) -> None:
    with pytest.raises(NodeDataError) as as_host:
        ServerNode.parse("n", cs_json(address), served=True)
    assert str(as_host.value).startswith(f"host {address[:60]!r}")
    assert fragment in str(as_host.value)
    with pytest.raises(NodeDataError) as as_public_ip:
        ServerNode.parse("n", cs_json("10.0.0.5", public_ip=address), served=True)
    assert str(as_public_ip.value).startswith(f"attrs.public_ip {address[:60]!r}")
    assert fragment in str(as_public_ip.value)


@pytest.mark.parametrize(("address", "fragment"),
                         [b[1:] for b in BAD_ADDRESSES if b[0] != "ipv6"],
                         ids=[b[0] for b in BAD_ADDRESSES if b[0] != "ipv6"])
def test_a_gateway_server_is_refused_for_the_same_but_ipv6(address: str, fragment: str) -> None:
    with pytest.raises(NodeDataError, match="^host .*" + re.escape(fragment)):
        ServerNode.parse("g", node_json(address, 3001))


def test_ipv6_is_refused_only_where_clients_would_get_it() -> None:
    # The pool connects to a gateway's IPv6 address; GET / cannot carry one.
    assert ServerNode.parse("g", node_json("fe80::1", 3001)).host == "fe80::1"
    nat = ServerNode.parse("n", cs_json("fe80::1", public_ip="203.0.113.9"), served=True)
    assert nat.public_host == "203.0.113.9"
    with pytest.raises(NodeDataError, match=r"^attrs\.public_ip '2001:db8::1' is an IPv6"):
        ServerNode.parse("n", cs_json("10.0.0.5", public_ip="2001:db8::1"), served=True)


def test_surrounding_blanks_are_dropped_and_public_ip_must_be_text() -> None:
    node = ServerNode.parse("n", cs_json(" 10.0.0.5\n", public_ip="\t1.2.3.4 "), served=True)
    assert (node.host, node.public_host) == ("10.0.0.5", "1.2.3.4")
    assert ServerNode.parse("n", cs_json("10.0.0.5", public_ip=" ")).public_host == "10.0.0.5"
    with pytest.raises(NodeDataError, match=r"attrs\.public_ip is not a string"):
        ServerNode.parse("n", node_json("10.0.0.5", 3000, {"public_ip": 5}))


@given(st.binary(max_size=200))
def test_server_node_parse_only_raises_node_data_error(data: bytes) -> None:
    try:
        node = ServerNode.parse("n", data, served=True)
    except NodeDataError:
        return
    assert 0 < node.port < 65536
    assert host_problem(node.host, ipv6=True) is None and host_problem(node.public_host) is None


def test_node_json_is_fastjson_output() -> None:
    assert node_json("10.0.0.5", 3000, {"weight": 1}) == (
        b'{"attrs":{"weight":1},"host":"10.0.0.5","port":3000}')
    assert node_json("10.0.0.5", 3001) == b'{"host":"10.0.0.5","port":3001}'
    assert digest_acl_id("mpush") == JAVA_ACL_ID


# -- the registrar writes what the Java server writes ---------------------------------

def test_registrar_writes_java_layout(zk_server: ZooKeeperServer,
                                      make_registrar: Callable[..., NodeRegistrar]) -> None:
    registrar = make_registrar(zk_server.connect_string)  # the real "mpush" namespace
    cs = registrar.register("cs", "10.0.0.5", 3000)
    gs = registrar.register("gs", "10.0.0.5", 3001)
    assert cs.startswith("/cluster/cs/") and gs.startswith("/cluster/gs/")

    reader = KazooClient(hosts=zk_server.connect_string, auth_data=[("digest", "mpush")])
    anonymous = KazooClient(hosts=zk_server.connect_string)
    reader.start(timeout=10)
    anonymous.start(timeout=10)
    try:
        java_acl = [ACL(Permissions.ALL, Id("digest", JAVA_ACL_ID))]
        for path in ("/mpush", "/mpush/cluster", "/mpush/cluster/cs", "/mpush/cluster/gs",
                     "/mpush" + cs, "/mpush" + gs):
            acl, _ = reader.get_acls(path)
            assert acl == java_acl, path
        data, stat = reader.get("/mpush" + cs)
        assert data == b'{"attrs":{"weight":1},"host":"10.0.0.5","port":3000}'
        assert stat.ephemeralOwner == registrar.session_id
        data, stat = reader.get("/mpush" + gs)
        assert data == b'{"host":"10.0.0.5","port":3001}'
        assert stat.ephemeralOwner == registrar.session_id
        parent = reader.exists("/mpush/cluster/cs")
        assert parent is not None and parent.ephemeralOwner == 0  # parents are persistent
        with pytest.raises(NoAuthError):
            anonymous.get_children("/mpush/cluster/cs")
        registrar.unregister(cs)
        assert reader.exists("/mpush" + cs) is None
    finally:
        for client in (reader, anonymous):
            client.stop()
            client.close()


# -- the watcher ----------------------------------------------------------------

@pytest_twisted.inlineCallbacks
def test_view_follows_add_update_remove(zk_server: ZooKeeperServer, zk_namespace: str,
                                        zk_registrar: NodeRegistrar,
                                        make_zk_watcher: Callable[..., ZkWatcher]) -> Any:
    before = zk_registrar.register("cs", "10.0.0.1", 3000)
    watcher = make_zk_watcher(zk_server.connect_string, zk_namespace, start=False)
    events: list[tuple[str, str, str | None]] = []

    def broken(kind: str, event: str, node: ServerNode | None) -> None:
        raise RuntimeError("a broken listener")

    watcher.add_listener(broken)
    watcher.add_listener(lambda k, e, n: events.append((k, e, n.name if n else None)))
    assert watcher.state == "stopped"
    yield watcher.startService()
    yield wait_for(lambda: watcher.initialized, 5, "the initial load")
    assert watcher.state == "connected" and watcher.session_id
    assert view(watcher) == {name_of(before): ("10.0.0.1", 3000)}
    assert view(watcher, "gs") == {}  # /cluster/gs does not exist yet
    assert ("cs", "added", name_of(before)) in events
    assert ("cs", "resync", None) in events and ("gs", "resync", None) in events
    assert ("ws", "resync", None) in events and view(watcher, "ws") == {}  # no /cluster/ws yet

    gs = zk_registrar.register("gs", "10.0.0.1", 3001)
    yield wait_for(lambda: name_of(gs) in view(watcher, "gs"), 1, "a new gateway (parent created)")
    ws = zk_registrar.register("ws", "10.0.0.1", 8080)  # no attrs, as the Java server writes it
    yield wait_for(lambda: name_of(ws) in view(watcher, "ws"), 1, "a WebSocket server")
    assert view(watcher, "ws") == {name_of(ws): ("10.0.0.1", 8080)}
    assert ("ws", "added", name_of(ws)) in events
    registered = time.time()
    cs = zk_registrar.register("cs", "10.0.0.2", 3000)
    yield wait_for(lambda: name_of(cs) in view(watcher), 1, "a new connection server")
    assert watcher.connection_servers()[name_of(cs)].weight == 1.0
    # Known since it entered the view (reactor time: the wall clock here).
    since = watcher.connection_servers()[name_of(cs)].since
    assert since is not None and registered - 0.1 <= since <= time.time()

    yield sleep(0.05)
    zk_registrar.update(cs, "10.0.0.2", 3000, {"weight": 3, "public_ip": "1.2.3.4"})
    yield wait_for(lambda: watcher.connection_servers()[name_of(cs)].weight == 3, 1, "an update")
    assert watcher.connection_servers()[name_of(cs)].public_host == "1.2.3.4"
    assert watcher.connection_servers()[name_of(cs)].since == since, "an update keeps it"
    assert events[-1] == ("cs", "updated", name_of(cs))

    zk_registrar.unregister(before)
    yield wait_for(lambda: name_of(before) not in view(watcher), 1, "a removal")
    assert events[-1] == ("cs", "removed", name_of(before))
    assert list(view(watcher)) == [name_of(cs)]
    # The registrar's session ends: its ephemeral nodes go, the view follows.
    zk_registrar.close()
    yield wait_for(lambda: not view(watcher) and not view(watcher, "gs")
                   and not view(watcher, "ws"), 2, "session end")


@pytest_twisted.inlineCallbacks
def test_malformed_nodes_are_skipped_and_logged_once(
        zk_server: ZooKeeperServer, zk_namespace: str, zk_registrar: NodeRegistrar,
        make_zk_watcher: Callable[..., ZkWatcher], logs: LogCapture) -> Any:
    good = zk_registrar.register("cs", "10.0.0.1", 3000)
    bad = {
        zk_registrar.register_raw("cs", b"{not json"),
        zk_registrar.register_raw("cs", b'{"port":3000}'),
        zk_registrar.register_raw("cs", b'{"host":"10.0.0.9","port":70000}'),
        zk_registrar.register_raw("gs", b""),
        # Served to browsers as ip:port: an IPv6 host is refused as for a connection server.
        zk_registrar.register_raw("ws", b'{"host":"fe80::1","port":8080}'),
    }
    watcher = make_zk_watcher(zk_server.connect_string, zk_namespace)
    yield wait_for(lambda: watcher.initialized, 5, "the initial load")
    assert list(view(watcher)) == [name_of(good)] and view(watcher, "gs") == {}
    assert view(watcher, "ws") == {}

    def warned() -> list[str]:
        return [e["zk_path"] for e in list(logs.events) if "zk_path" in e
                and e["log_level"] == LogLevel.warn]

    assert sorted(warned()) == sorted(bad)
    assert watcher.rejected_nodes() == {"cs": 3, "gs": 1, "ws": 1}
    # Changes elsewhere (new rounds, re-lists) must not log them again.
    zk_registrar.register("cs", "10.0.0.3", 3000)
    yield wait_for(lambda: len(view(watcher)) == 2, 2, "another node")
    assert len(warned()) == len(bad)

    # A good node turning bad leaves the view; bad turning good joins it.
    zk_registrar.update_raw(good, b'{"host":"10.0.0.1"}')
    yield wait_for(lambda: name_of(good) not in view(watcher), 2, "good -> bad")
    fixed = sorted(p for p in bad if p.startswith("/cluster/cs/"))[0]
    zk_registrar.update(fixed, "10.0.0.8", 3000)
    yield wait_for(lambda: name_of(fixed) in view(watcher), 2, "bad -> good")
    assert warned().count(good) == 1
    assert watcher.rejected_nodes() == {"cs": 3, "gs": 1, "ws": 1}  # one in, one out
    zk_registrar.unregister(good)
    yield wait_for(lambda: watcher.rejected_nodes()["cs"] == 2, 2, "a bad node gone")


def unreachable_lines(logs: LogCapture) -> list[str]:
    return [formatEvent(e) for e in list(logs.events)
            if "cannot connect to" in str(e.get("log_format", ""))]


@pytest_twisted.inlineCallbacks
def test_zookeeper_down_at_start(zk_fresh_server: ZooKeeperServer,
                                 make_registrar: Callable[..., NodeRegistrar],
                                 make_zk_watcher: Callable[..., ZkWatcher],
                                 logs: LogCapture, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setattr(ZkWatcher, "reminder_interval", 0.8)
    zk_fresh_server.reserve_port()
    watcher = make_zk_watcher(zk_fresh_server.connect_string, start=False)
    started = time.monotonic()
    yield watcher.startService()
    assert time.monotonic() - started < 1.0, "start must not wait for ZooKeeper"
    assert watcher.running and watcher.state == "connecting" and not watcher.initialized
    yield sleep(2.0)  # several reconnect attempts (back-off capped at 0.5 s)
    assert watcher.state == "connecting"
    assert logs.states() == ["connecting"]
    # kazoo's per-attempt "Connection dropped"/"Connecting to" lines are
    # demoted to debug by the log bridge: nothing louder got through.
    assert logs.kazoo_at_least(LogLevel.info) == []
    # Ours: the outage once with its address and error, then a reminder at
    # most every reminder_interval (0.8 s here), not one line per attempt.
    lines = unreachable_lines(logs)
    address = zk_fresh_server.connect_string
    assert lines[0].startswith(f"ZooKeeper: cannot connect to {address}: ")
    assert "Connection refused" in lines[0] and "reminder every 0.8 s" in lines[0]
    reminders = lines[1:]
    assert 1 <= len(reminders) <= 2, lines
    assert all(r.startswith(f"ZooKeeper: still cannot connect to {address} after ")
               for r in reminders)
    assert watcher.last_error is not None and "Connection refused" in watcher.last_error
    assert address in watcher.last_error

    yield deferToThread(zk_fresh_server.start)
    registrar = make_registrar(zk_fresh_server.connect_string)
    cs = registrar.register("cs", "10.0.0.1", 3000)
    yield wait_for(lambda: watcher.initialized and name_of(cs) in view(watcher), 10,
                   "the view after ZooKeeper came up")
    assert watcher.state == "connected"
    assert logs.states() == ["connecting", "connected"]
    assert watcher.last_error is None


def test_unreachable_is_logged_once_then_reminded_on_the_reactor_clock(
        zk_settings: Callable[..., Any], logs: LogCapture) -> None:
    clock = Clock()
    watcher = ZkWatcher(zk_settings("127.0.0.1:2999"), reactor=clock)
    # What startService leaves (without kazoo's threads): running, connecting.
    watcher.running, watcher.state = True, "connecting"
    # The client's logger, as kazoo's connection thread uses it.
    kazoo_log = AttemptReporter(lambda error: watcher._attempt_failed(watcher.generation, error))

    def attempt() -> None:
        kazoo_log.warning("Connection dropped: %s", "socket connection error: Connection refused")

    attempt()
    assert unreachable_lines(logs) == [
        "ZooKeeper: cannot connect to 127.0.0.1:2999: Connection dropped: socket connection"
        " error: Connection refused; retrying (a reminder every 60 s while it lasts)"]
    assert watcher.last_error == ("cannot connect to 127.0.0.1:2999: Connection dropped:"
                                  " socket connection error: Connection refused")
    for _ in range(59):  # an attempt a second: no line for a minute
        clock.advance(1.0)
        attempt()
        kazoo_log.info("Connecting to %s(%s):%s, use_ssl: %r", "127.0.0.1", "127.0.0.1", 2999,
                       False)  # not a failure: nothing
    assert len(unreachable_lines(logs)) == 1
    clock.advance(1.0)
    attempt()
    assert unreachable_lines(logs)[1:] == [
        "ZooKeeper: still cannot connect to 127.0.0.1:2999 after 60 s: Connection dropped:"
        " socket connection error: Connection refused"]
    clock.advance(30.0)
    attempt()
    assert len(unreachable_lines(logs)) == 2

    # Connected: the outage is over; a drop of the live connection is not one.
    watcher._on_state(watcher.generation, KazooState.CONNECTED, 0x5)
    assert watcher.last_error is None
    attempt()
    assert watcher.last_error is None and len(unreachable_lines(logs)) == 2
    # The next outage is logged at once again; a stale generation's never.
    watcher.state = "suspended"
    watcher._attempt_failed(watcher.generation - 1, "Connection time-out: old client")
    assert watcher.last_error is None
    clock.advance(5.0)
    attempt()
    assert len(unreachable_lines(logs)) == 3
    assert unreachable_lines(logs)[2].startswith("ZooKeeper: cannot connect to")


@pytest_twisted.inlineCallbacks
def test_stop_while_zookeeper_is_down(zk_fresh_server: ZooKeeperServer,
                                      make_zk_watcher: Callable[..., ZkWatcher]) -> Any:
    zk_fresh_server.reserve_port()
    watcher = make_zk_watcher(zk_fresh_server.connect_string)
    yield sleep(0.3)
    started = time.monotonic()
    yield watcher.stopService()
    assert time.monotonic() - started < 3.0
    assert watcher.state == "stopped" and watcher.client is None


@pytest.mark.timeout(120)
@pytest_twisted.inlineCallbacks
def test_zookeeper_restart_keeps_view(zk_fresh_server: ZooKeeperServer,
                                      make_registrar: Callable[..., NodeRegistrar],
                                      make_zk_watcher: Callable[..., ZkWatcher],
                                      logs: LogCapture) -> Any:
    yield deferToThread(zk_fresh_server.start)
    # Sessions that outlive the restart by a wide margin: ZooKeeper restores
    # them with a fresh timeout when it starts, but a JVM just started on a
    # busy machine can stall for seconds, and kazoo drops a connection that
    # stays silent for 2/3 of the session timeout (a 6 s session once expired
    # this way in CI: read time-out on the new connection, then "expired").
    registrar = make_registrar(zk_fresh_server.connect_string, session_timeout=SURVIVING_SESSION)
    a = registrar.register("cs", "10.0.0.1", 3000)
    g = registrar.register("gs", "10.0.0.1", 3001)
    watcher = make_zk_watcher(zk_fresh_server.connect_string, session_timeout=SURVIVING_SESSION)
    yield wait_for(lambda: watcher.initialized, 5, "the initial load")
    session = watcher.session_id

    yield deferToThread(zk_fresh_server.stop)
    yield wait_for(lambda: watcher.state == "suspended", 5, "suspended")
    yield sleep(1.0)
    assert list(view(watcher)) == [name_of(a)] and list(view(watcher, "gs")) == [name_of(g)]

    yield deferToThread(zk_fresh_server.start)
    # A client that knocks while the server is still starting may have its
    # connection left open by ZooKeeper (3.8 fails to close it: a
    # NullPointerException, "zkDb is null") until the server's 10 s
    # sessionless-connection timeout or kazoo's connect timeout (the session
    # timeout) ends it; then it reconnects. Seen in a loaded run: 11 s.
    yield wait_for(lambda: watcher.state == "connected", RECONNECT_WAIT, "reconnected")
    assert watcher.session_id == session, "the session survives a restart"
    # Like the Java server, the registrar re-creates its nodes on reconnect;
    # let it finish so that it cannot resurrect the node removed below.
    yield wait_for(lambda: registrar.reregistrations >= 1, RECONNECT_WAIT, "the re-registration")
    b = registrar.register("cs", "10.0.0.2", 3000)
    yield wait_for(lambda: name_of(b) in view(watcher), 2, "a node added after the restart")
    registrar.unregister(a)
    yield wait_for(lambda: set(view(watcher)) == {name_of(b)}, 2, "a removal after the restart")
    assert list(view(watcher, "gs")) == [name_of(g)]
    assert logs.states() == ["connecting", "connected", "suspended", "connected"]
    # No kazoo chatter above debug for the whole outage.
    assert logs.kazoo_at_least(LogLevel.info) == []


@pytest_twisted.inlineCallbacks
def test_session_expiry_resyncs_the_view(zk_server: ZooKeeperServer, zk_namespace: str,
                                         zk_registrar: NodeRegistrar,
                                         make_zk_watcher: Callable[..., ZkWatcher],
                                         logs: LogCapture) -> Any:
    a = zk_registrar.register("cs", "10.0.0.1", 3000)
    b = zk_registrar.register("cs", "10.0.0.2", 3000)
    proxy = CuttableProxy(int(zk_server.connect_string.rsplit(":", 1)[1]))
    proxy.open()
    watcher = make_zk_watcher(proxy.connect_string, zk_namespace)
    events: list[tuple[str, str, str | None]] = []
    watcher.add_listener(lambda k, e, n: events.append((k, e, n.name if n else None)))
    yield wait_for(lambda: watcher.initialized, 5, "the initial load")
    assert set(view(watcher)) == {name_of(a), name_of(b)}
    assert watcher.client is not None
    old_session = watcher.client.client_id
    assert old_session is not None and old_session[0] == watcher.session_id

    # Partition the watcher, then end its session while it cannot see it.
    yield proxy.cut()
    yield wait_for(lambda: watcher.state == "suspended", 5, "suspended")
    yield deferToThread(expire_session, zk_server.connect_string, old_session)
    # Changes it can only learn about by re-reading everything:
    zk_registrar.unregister(a)
    c = zk_registrar.register("cs", "10.0.0.3", 3000)
    zk_registrar.update(b, "10.0.0.2", 3000, {"weight": 7})
    yield sleep(0.3)
    assert set(view(watcher)) == {name_of(a), name_of(b)}, "kept while away"
    del events[:]

    proxy.open()
    yield wait_for(lambda: watcher.state == "connected", 10, "a new session")
    assert watcher.session_id not in (None, old_session[0])
    yield wait_for(lambda: ("cs", "resync", None) in events, 2, "the resync")
    assert set(view(watcher)) == {name_of(b), name_of(c)}
    assert watcher.connection_servers()[name_of(b)].weight == 7
    assert ("cs", "removed", name_of(a)) in events
    assert ("cs", "added", name_of(c)) in events
    assert ("cs", "updated", name_of(b)) in events
    assert logs.states() == ["connecting", "connected", "suspended", "lost", "connected"]

    # Watches are armed again on the new session.
    d = zk_registrar.register("cs", "10.0.0.4", 3000)
    yield wait_for(lambda: name_of(d) in view(watcher), 2, "an add after the expiry")
    zk_registrar.unregister(b)
    yield wait_for(lambda: name_of(b) not in view(watcher), 2, "a removal after the expiry")
    yield proxy.cut()


@pytest_twisted.inlineCallbacks
def test_session_expired_by_takeover(zk_server: ZooKeeperServer, zk_namespace: str,
                                     zk_registrar: NodeRegistrar,
                                     make_zk_watcher: Callable[..., ZkWatcher]) -> Any:
    # The plain way (no partition): the watcher races to reconnect, gets
    # "session expired", starts a new session and re-reads.
    a = zk_registrar.register("cs", "10.0.0.1", 3000)
    watcher = make_zk_watcher(zk_server.connect_string, zk_namespace)
    yield wait_for(lambda: watcher.initialized, 5, "the initial load")
    yield expire_watcher_session(watcher, zk_server.connect_string)
    zk_registrar.unregister(a)
    b = zk_registrar.register("cs", "10.0.0.2", 3000)
    yield wait_for(lambda: set(view(watcher)) == {name_of(b)}, 2, "changes after the expiry")


@pytest_twisted.inlineCallbacks
def test_without_digest_the_java_nodes_are_unreadable(
        zk_server: ZooKeeperServer, zk_namespace: str, zk_registrar: NodeRegistrar,
        make_zk_watcher: Callable[..., ZkWatcher], logs: LogCapture,
        monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setattr(ZkWatcher, "error_retry_delay", 0.2)
    zk_registrar.register("cs", "10.0.0.1", 3000)
    watcher = make_zk_watcher(zk_server.connect_string, zk_namespace, digest=None)

    def errors() -> list[dict[str, Any]]:
        return [e for e in list(logs.events) if e.get("zk_error") == "cs"]

    yield wait_for(errors, 5, "a NoAuth error")
    yield sleep(1.0)  # about five retries
    assert len(errors()) == 1, "the same error is logged once"
    assert "NoAuthError" in errors()[0]["error"]
    assert "check mp.zk.digest" in errors()[0]["error"]
    assert watcher.last_error == errors()[0]["error"]
    assert watcher.state == "connected" and view(watcher) == {} and not watcher.initialized


@pytest_twisted.inlineCallbacks
def test_service_start_and_stop_are_idempotent_and_restartable(
        zk_server: ZooKeeperServer, zk_namespace: str, zk_registrar: NodeRegistrar,
        make_zk_watcher: Callable[..., ZkWatcher]) -> Any:
    a = zk_registrar.register("cs", "10.0.0.1", 3000)
    watcher = make_zk_watcher(zk_server.connect_string, zk_namespace)
    yield wait_for(lambda: watcher.initialized, 5, "the initial load")
    client = watcher.client
    yield watcher.startService()
    assert watcher.client is client, "a second start changes nothing"
    yield watcher.stopService()
    yield watcher.stopService()
    assert watcher.state == "stopped" and watcher.client is None and watcher.session_id is None
    assert client is not None and not client.connected

    zk_registrar.unregister(a)
    b = zk_registrar.register("cs", "10.0.0.2", 3000)
    assert list(view(watcher)) == [name_of(a)], "a stopped watcher keeps its last view"
    yield watcher.startService()
    yield wait_for(lambda: set(view(watcher)) == {name_of(b)}, 5, "the view after a restart")
    assert watcher.state == "connected"
