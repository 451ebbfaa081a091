"""Gateway connections (mpush.cluster.gateway_connection) and the pool (mpush.cluster.gateways).

Part 1 drives one GatewayProtocol by hand (StringTransport + Clock): fully
deterministic. Part 2 runs a GatewayPool on the real reactor against a tiny
fake gateway server on 127.0.0.1 (the full fake node lives in
tests.harness); every wait is bounded. Both parts' helpers are in
tests/gateway_fakes.py; the write queue's bound is in test_gateway_queue.py.
"""

from __future__ import annotations

import socket
import struct
import time
from collections.abc import Callable
from typing import Any

import pytest
import pytest_twisted
from twisted.logger import LogEvent, LogLevel, formatEvent
from twisted.python.failure import Failure

from mpush.cluster.gateways import REPLY_LIMIT_FLOOR
from mpush.cluster.server_node import ServerNode
from mpush.outcomes import GatewayOutcome, TimeoutCause
from mpush.wire import (
    CMD_GATEWAY_PUSH,
    HEARTBEAT_BYTE,
    INT32_MAX,
    ErrorCode,
    ErrorMessage,
    GatewayPush,
    OkMessage,
    Packet,
    PacketTooLarge,
    single_push_packet,
)
from tests.gateway_fakes import (
    ADDR,
    Conn,
    FakeGatewayFactory,
    FakeView,
    Recorder,
    build,
    err,
    gateway,
    make_pool,
    ok,
    sleep,
    wait_for,
    warnings_about,
)
from tests.gateway_fakes import logs as logs  # a fixture, used by name
from tests.gateway_fakes import servers as servers  # a fixture, used by name

pytestmark = pytest.mark.timeout(30)


# -- part 1: one connection, deterministic --------------------------------------

def test_answers_are_matched_by_session_id() -> None:
    c = Conn()
    r1, r2, r3 = c.send(user_id="a"), c.send(user_id="b"), c.send(user_id="c")
    sent = c.sent()
    assert [p.cmd for p in sent] == [CMD_GATEWAY_PUSH] * 3
    sids = [p.session_id for p in sent]
    assert len(set(sids)) == 3 and 0 not in sids
    assert [GatewayPush.decode_body(p.body).user_id for p in sent] == ["a", "b", "c"]
    # Out of order: the match is by sessionId, not by position.
    c.proto.dataReceived(ok(sids[2]))
    c.proto.dataReceived(err(sids[0], ErrorCode.OFFLINE))
    assert r2.reply is None
    c.proto.dataReceived(ok(sids[1]))
    assert r1.reply is not None
    assert (r1.reply.outcome, r1.reply.code) == ("error", ErrorCode.OFFLINE)
    assert isinstance(r1.reply.message, ErrorMessage)
    assert r1.reply.gateway == ADDR
    assert r2.reply is not None and r2.reply.outcome == "ok"
    assert r3.reply is not None and r3.reply.outcome == "ok" and r3.reply.code is None
    assert isinstance(r3.reply.message, OkMessage) and r3.reply.message.cmd == CMD_GATEWAY_PUSH
    assert c.proto.pending_count == 0
    assert c.clock.getDelayedCalls() == []  # answered: timers cancelled


@pytest.mark.parametrize("chunk", [1, 5, 13, 1000])
def test_coalesced_and_partial_frames_with_heartbeats(chunk: int) -> None:
    c = Conn()
    recs = [c.send() for _ in range(4)]
    sids = [p.session_id for p in c.sent()]
    stream = (bytes([HEARTBEAT_BYTE]) + ok(sids[3]) + err(sids[1], 2)
              + bytes([HEARTBEAT_BYTE]) + ok(sids[0]) + err(sids[2], 3))
    for i in range(0, len(stream), chunk):
        c.proto.dataReceived(stream[i:i + chunk])
    assert [(r.reply.outcome, r.reply.code) for r in recs if r.reply] == [
        ("ok", None), ("error", 2), ("error", 3), ("ok", None)]
    assert not c.transport.disconnecting


def test_timeout_fires_and_late_answer_is_ignored() -> None:
    c = Conn()
    r = c.send(timeout=2.0)
    (sid,) = [p.session_id for p in c.sent()]
    c.clock.advance(1.999)
    assert r.reply is None
    c.clock.advance(0.001)
    assert r.reply is not None and r.reply.outcome == "timeout"
    assert c.proto.pending_count == 0
    c.proto.dataReceived(ok(sid))  # late: must neither fire again nor close
    assert len(r.replies) == 1
    assert not c.transport.disconnecting and c.proto.ready


def test_connection_lost_ends_all_pending_at_once() -> None:
    c = Conn()
    recs = [c.send(timeout=30.0) for _ in range(3)]
    c.proto.connectionLost(Failure(ConnectionResetError("reset by peer")))
    # No clock advance: "lost" comes now, not at the 30 s timeout.
    assert [r.reply.outcome for r in recs if r.reply] == ["lost"] * 3
    assert c.clock.getDelayedCalls() == []
    called: list[int] = []
    after = Recorder(c.proto.request(lambda sid: called.append(sid) or b"x", 1.0))
    assert after.reply is not None and after.reply.outcome == "unavailable"
    assert called == []  # nothing is built when nothing can be sent
    assert c.proto.closed


@pytest.mark.parametrize("garbage", [
    struct.pack(">i", REPLY_LIMIT_FLOOR + 1) + b"\x0b",        # oversized length
    struct.pack(">i", -5) + b"\x00" * 9,                      # negative length
    Packet(11, 1, body=b"\x10").encode(),                     # truncated OK body
    Packet(16, 1, body=b"").encode(),                         # not OK/ERROR
    Packet(11, 1, flags=2, body=b"\x10\x00\x00\x00").encode(),  # compressed reply
], ids=["oversized", "negative", "truncated", "other-cmd", "compressed"])
def test_garbage_aborts_the_connection_and_fails_pending(
        garbage: bytes, logs: list[LogEvent]) -> None:
    c = Conn()
    recs = [c.send(timeout=30.0) for _ in range(2)]
    c.sent()
    c.proto.dataReceived(garbage)
    assert c.transport.disconnecting and c.transport.disconnected  # aborted, not flushed
    assert [r.reply.outcome for r in recs if r.reply] == ["lost", "lost"]
    assert not c.proto.ready
    c.proto.dataReceived(garbage + ok(1))  # bytes still in flight: ignored quietly
    lines = warnings_about(logs, "protocol error")
    assert len(lines) == 1 and ADDR in lines[0]


def test_replies_over_the_request_limit_are_accepted() -> None:
    c = Conn(max_reply_size=REPLY_LIMIT_FLOOR)
    r = c.send()
    (sid,) = [p.session_id for p in c.sent()]
    big = OkMessage(CMD_GATEWAY_PUSH, 0, "x" * 20_000).to_packet(sid).encode()
    c.proto.dataReceived(big)  # over the 10 KB request limit, under the reply limit
    assert r.reply is not None and r.reply.outcome == "ok"


@pytest.mark.parametrize(("answer", "code"), [
    (lambda sid: err(sid, 100), 100),           # DISPATCH_ERROR
    (lambda sid: err(sid, 77), 77),             # unknown code: passed on
    (lambda sid: ok(sid, cmd=14), None),        # an OK for another command
    (lambda sid: err(sid, 1, cmd=14), None),    # "offline" for another command
])
def test_unexpected_answers_end_as_error(answer: Callable[[int], bytes], code: int | None) -> None:
    c = Conn()
    r = c.send()
    (sid,) = [p.session_id for p in c.sent()]
    c.proto.dataReceived(answer(sid))
    assert r.reply is not None and (r.reply.outcome, r.reply.code) == ("error", code)
    assert r.reply.message is not None
    assert c.proto.ready  # a well-framed answer is no reason to close


def test_unmatched_session_id_is_ignored() -> None:
    c = Conn()
    r = c.send()
    (sid,) = [p.session_id for p in c.sent()]
    c.proto.dataReceived(ok(sid + 1000) + err(0, 1) + ok(-7))
    assert r.reply is None and c.proto.pending_count == 1
    assert c.proto.ready and not c.transport.disconnecting
    c.proto.dataReceived(ok(sid))
    assert r.reply is not None and r.reply.outcome == "ok"


@pytest.mark.parametrize("answer_first", [True, False])
def test_answer_and_timeout_in_the_same_tick_fire_once(answer_first: bool) -> None:
    c = Conn()
    holder: list[Recorder] = []

    def answer() -> None:
        c.proto.dataReceived(ok(c.sent()[0].session_id))

    if answer_first:
        c.clock.callLater(1.0, answer)  # scheduled first: runs before the request's timer
        holder.append(c.send(timeout=1.0))
    else:
        holder.append(c.send(timeout=1.0))
        c.clock.callLater(1.0, answer)
    c.clock.advance(1.0)
    (r,) = holder
    assert len(r.replies) == 1 and not r.failures
    assert r.replies[0].outcome == ("ok" if answer_first else "timeout")
    c.clock.advance(10)
    assert len(r.replies) == 1


def test_cancel_ends_as_timeout_without_errback() -> None:
    c = Conn()
    d = c.proto.request(build(), 5.0)
    r = Recorder(d)
    (sid,) = [p.session_id for p in c.sent()]
    d.cancel()
    assert r.reply is not None and (r.reply.outcome, r.reply.detail) == ("timeout", "cancelled")
    assert c.clock.getDelayedCalls() == [] and c.proto.pending_count == 0
    c.proto.dataReceived(ok(sid))
    d.cancel()
    c.proto.connectionLost(Failure(ConnectionResetError()))
    assert len(r.replies) == 1


def test_timeouts_say_their_cause() -> None:
    c = Conn()
    timer, cancelled, answered = c.send(timeout=1.0), c.send(timeout=5.0), c.send(timeout=5.0)
    stopping = c.send(timeout=5.0)
    sids = [p.session_id for p in c.sent()]
    c.proto.dataReceived(ok(sids[2]))
    c.clock.advance(1.0)
    assert timer.reply is not None and timer.reply.outcome == GatewayOutcome.TIMEOUT
    assert timer.reply.cause is TimeoutCause.DEADLINE
    assert timer.reply.detail == "no answer within 1 s"
    assert answered.reply is not None and answered.reply.cause is None
    assert c.proto.expire_all(TimeoutCause.SHUTDOWN) == 2  # the cancelled one is still pending
    assert cancelled.reply is not None and stopping.reply is not None
    for r in (cancelled.reply, stopping.reply):
        assert (r.outcome, r.cause) == (GatewayOutcome.TIMEOUT, TimeoutCause.SHUTDOWN)
    assert c.proto.ready and c.proto.pending_count == 0  # the connection stays up
    d = c.proto.request(build(), 5.0)
    d.cancel()
    assert Recorder(d).reply.cause is TimeoutCause.DEADLINE  # the caller's own deadline


def test_callbacks_may_reenter_during_connection_lost() -> None:
    c = Conn()
    second: list[Recorder] = []
    first = c.proto.request(build(), 5.0)
    first.addCallback(lambda _: second.append(c.send()))
    other = c.send()
    c.proto.connectionLost(Failure(ConnectionResetError()))
    assert other.reply is not None and other.reply.outcome == "lost"
    assert second[0].reply is not None and second[0].reply.outcome == "unavailable"


def test_session_ids_wrap_and_skip_ids_in_use() -> None:
    c = Conn()
    held = c.send(timeout=60)  # keeps sessionId 1 pending
    c.proto._pending._next_session = INT32_MAX - 1  # the wrap, not 2**31 requests on
    for _ in range(3):
        c.send(timeout=60)
    assert [p.session_id for p in c.sent()] == [1, INT32_MAX - 1, INT32_MAX, 2]
    assert held.reply is None


def test_build_errors_propagate_before_any_io() -> None:
    c = Conn()

    def too_large(sid: int) -> bytes:
        return single_push_packet(sid, "u1", 1, 3000, b"x" * 20_000)

    with pytest.raises(PacketTooLarge):
        c.proto.request(too_large, 3.0)
    with pytest.raises(ValueError):
        c.proto.request(build(), 0)
    assert c.transport.value() == b"" and c.proto.pending_count == 0
    assert c.clock.getDelayedCalls() == []


def test_pending_limit_makes_requests_unavailable() -> None:
    c = Conn(max_pending=2)
    c.send(), c.send()
    built: list[int] = []
    r = Recorder(c.proto.request(lambda sid: built.append(sid) or b"", 3.0))
    assert r.reply is not None and r.reply.outcome == "unavailable"
    assert built == [] and len(c.sent()) == 2


# -- part 2: the pool on the real reactor -----------------------------------------

@pytest_twisted.inlineCallbacks
def test_pool_opens_n_connections_and_round_robins(servers: list[FakeGatewayFactory]) -> Any:
    gw = gateway(servers)
    view = FakeView()
    view.put("n1", gw.address)
    pool = make_pool(view, connections_per_server=3)
    pool.startService()
    try:
        yield wait_for(lambda: pool.status().get(gw.address, {}).get("connected") == 3,
                       5, "3 connections")
        assert pool.addresses() == [gw.address] and pool.is_connected(gw.address)
        assert pool.status() == {gw.address: {"connected": 3, "configured": 3, "pending": 0,
                                               "queued_bytes": 0, "unanswering": 0,
                                               "last_error": None}}
        assert len(gw.conns) == 3
        ds = [pool.request(gw.address, build(), 5.0) for _ in range(6)]
        replies = []
        for d in ds:
            replies.append((yield d))
        assert [r.outcome for r in replies] == ["ok"] * 6
        assert sorted(len(c.received) for c in gw.conns) == [2, 2, 2]
        # TCP_NODELAY is on for our side of the connection.
        proto = pool._servers[gw.address].slots[0].protocol
        assert proto is not None
        sock = proto.transport.getHandle()
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
    finally:
        yield pool.stopService()


@pytest_twisted.inlineCallbacks
def test_pool_follows_add_update_remove_and_resync(
        servers: list[FakeGatewayFactory], logs: list[LogEvent]) -> Any:
    a, b, c = gateway(servers), gateway(servers), gateway(servers)
    view = FakeView()
    pool = make_pool(view)
    pool.startService()
    try:
        assert pool.addresses() == []
        view.put("n1", a.address)
        view.put("n2", a.address)  # same address: still one server, one connection
        yield wait_for(lambda: pool.is_connected(a.address), 5, "a connected")
        assert pool.addresses() == [a.address]
        yield sleep(0.1)
        assert a.accepted == 1
        view.put("n1", b.address)  # moved; n2 still holds a
        yield wait_for(lambda: pool.is_connected(b.address), 5, "b connected")
        assert pool.addresses() == sorted([a.address, b.address]) and len(a.conns) == 1
        view.remove("n2")  # a has no node left: closed
        assert pool.addresses() == [b.address]
        yield wait_for(lambda: not a.conns, 5, "a's connection to close")
        # A resync with a view that changed without events: reconciled.
        view.nodes = {"n3": ServerNode("n3", "127.0.0.1", c.number)}
        view._emit("resync", None)
        assert pool.addresses() == [c.address]
        yield wait_for(lambda: pool.is_connected(c.address) and not b.conns, 5, "c only")
        reply = yield pool.request(c.address, build(), 5.0)
        assert reply.outcome == "ok" and reply.gateway == c.address
        view.listeners[0]("cs", "removed", view.nodes["n3"])  # other kinds are not ours
        assert pool.addresses() == [c.address]
    finally:
        yield pool.stopService()
    assert not warnings_about(logs, "gateway")


@pytest_twisted.inlineCallbacks
def test_pool_reconnects_after_restart_and_logs_once(
        servers: list[FakeGatewayFactory], logs: list[LogEvent]) -> Any:
    gw = gateway(servers)
    view = FakeView()
    view.put("n1", gw.address)
    pool = make_pool(view)
    pool.startService()
    try:
        yield wait_for(lambda: pool.is_connected(gw.address), 5, "connected")
        gw.mode = "silent"
        pending = pool.request(gw.address, build(), 10.0)
        yield wait_for(lambda: any(c.received for c in gw.conns), 5, "request to arrive")
        started = time.monotonic()
        yield gw.stop()
        reply = yield pending
        assert reply.outcome == "lost" and time.monotonic() - started < 2.0
        yield wait_for(lambda: not pool.is_connected(gw.address), 5, "disconnected")
        # (The reply is given before the pool hears of the loss: wait for it.)
        yield wait_for(lambda: pool.status()[gw.address]["last_error"], 5, "the loss")
        assert pool.status()[gw.address]["last_error"].startswith("connection lost: ")
        now = pool.request(gw.address, build(), 5.0)
        assert now.called  # at once, not after a connect attempt
        assert (yield now).outcome == "unavailable"
        yield sleep(0.5)  # several refused retries at 0.05 s
        gw.mode = "ok"
        gw.start()  # same port
        yield wait_for(lambda: pool.is_connected(gw.address), 5, "reconnected")
        assert (yield pool.request(gw.address, build(), 5.0)).outcome == "ok"
        # The last error stays after the reconnect: the status says what happened last.
        assert pool.status()[gw.address]["last_error"].startswith("cannot connect: ")
    finally:
        yield pool.stopService()
    assert len(warnings_about(logs, f"{gw.address}: disconnected")) == 1
    assert not warnings_about(logs, "unreachable")  # it was up before: "disconnected" only
    connected = [formatEvent(e) for e in logs if "connected again" in formatEvent(e)]
    assert len(connected) == 1
    assert not [e for e in logs if e.get("log_level") == LogLevel.info
                and "Scheduling retry" in (e.get("log_format") or "")]


@pytest_twisted.inlineCallbacks
def test_unknown_and_unreachable_addresses_are_unavailable_at_once(
        servers: list[FakeGatewayFactory], logs: list[LogEvent]) -> Any:
    gw = gateway(servers)
    closed_port = gw.number
    yield gw.stop()  # a port nobody listens on: connections are refused
    view = FakeView()
    view.put("n1", f"127.0.0.1:{closed_port}")
    pool = make_pool(view)
    pool.startService()
    try:
        built: list[int] = []

        def b(sid: int) -> bytes:
            built.append(sid)
            return build()(sid)

        for address in ("127.0.0.1:1", f"127.0.0.1:{closed_port}"):
            d = pool.request(address, b, 5.0)
            assert d.called
            reply = yield d
            assert (reply.outcome, reply.gateway) == ("unavailable", address)
        assert built == []
        yield sleep(0.4)  # many refused attempts
        assert len(warnings_about(logs, "unreachable")) == 1
        assert pool.status()[f"127.0.0.1:{closed_port}"]["connected"] == 0
        assert "refused" in pool.status()[f"127.0.0.1:{closed_port}"]["last_error"]
    finally:
        yield pool.stopService()


@pytest_twisted.inlineCallbacks
def test_pending_limit_is_unavailable(servers: list[FakeGatewayFactory]) -> Any:
    gw = gateway(servers)
    gw.mode = "silent"
    view = FakeView()
    view.put("n1", gw.address)
    pool = make_pool(view, max_pending_per_connection=2)
    pool.startService()
    try:
        yield wait_for(lambda: pool.is_connected(gw.address), 5, "connected")
        first = [pool.request(gw.address, build(), 10.0) for _ in range(2)]
        third = pool.request(gw.address, build(), 10.0)
        assert third.called
        reply = yield third
        assert (reply.outcome, reply.detail) == ("unavailable", "pending limit reached")
        assert pool.status()[gw.address]["pending"] == 2
        assert not any(d.called for d in first)
    finally:
        yield pool.stopService()
    assert all(d.called for d in first)  # stopService ended them ("lost")


@pytest_twisted.inlineCallbacks
def test_removed_server_fails_pending_at_once(servers: list[FakeGatewayFactory]) -> Any:
    gw = gateway(servers)
    gw.mode = "silent"
    view = FakeView()
    view.put("n1", gw.address)
    pool = make_pool(view, connections_per_server=2)
    pool.startService()
    try:
        yield wait_for(lambda: len(gw.conns) == 2 and pool.status()[gw.address]["connected"] == 2,
                       5, "2 connections")
        ds = [pool.request(gw.address, build(), 10.0) for _ in range(4)]
        view.remove("n1")
        assert all(d.called for d in ds)  # synchronously, not at their timeout
        replies = []
        for d in ds:
            replies.append((yield d))
        assert {r.outcome for r in replies} == {"lost"}
        assert pool.addresses() == [] and not pool.is_connected(gw.address)
        yield wait_for(lambda: not gw.conns, 5, "server side to see the close")
        accepted = gw.accepted
        yield sleep(0.3)
        assert gw.accepted == accepted  # and no reconnect
    finally:
        yield pool.stopService()


@pytest_twisted.inlineCallbacks
def test_node_back_within_the_grace_keeps_connections_and_pending(
        servers: list[FakeGatewayFactory]) -> Any:
    gw = gateway(servers)
    gw.mode = "silent"
    view = FakeView()
    view.put("n1", gw.address)
    pool = make_pool(view, removal_grace=0.3)
    pool.startService()
    try:
        yield wait_for(lambda: pool.is_connected(gw.address), 5, "connected")
        accepted = gw.accepted
        d = pool.request(gw.address, build(), 10.0)
        # The Java server re-registers after a ZooKeeper reconnect: the node
        # goes and comes back under a new name, same address.
        view.remove("n1")
        view.put("n2", gw.address)
        yield sleep(0.5)
        assert not d.called, "the pending request survives the blip"
        assert pool.is_connected(gw.address) and gw.accepted == accepted
        # Gone for good: closed once the grace is over, pending ends "lost".
        view.remove("n2")
        assert not d.called
        reply = yield d
        assert reply.outcome == "lost"
        assert pool.addresses() == []
    finally:
        yield pool.stopService()


@pytest_twisted.inlineCallbacks
def test_garbage_closes_only_that_connection(
        servers: list[FakeGatewayFactory], logs: list[LogEvent]) -> Any:
    gw = gateway(servers)
    view = FakeView()
    view.put("n1", gw.address)
    pool = make_pool(view, connections_per_server=2)
    pool.startService()
    try:
        yield wait_for(lambda: pool.status()[gw.address]["connected"] == 2, 5, "2 connections")
        gw.mode = "garbage"
        bad = yield pool.request(gw.address, build(), 10.0)
        assert bad.outcome == "lost" and "protocol error" in (bad.detail or "")
        assert pool.status()[gw.address]["connected"] == 1  # the other one is untouched
        gw.mode = "ok"
        good = yield pool.request(gw.address, build(), 5.0)
        assert good.outcome == "ok"
        yield wait_for(lambda: pool.status()[gw.address]["connected"] == 2, 5, "reconnect")
    finally:
        yield pool.stopService()
    assert len(warnings_about(logs, "protocol error")) == 1
    assert not warnings_about(logs, "disconnected")  # the server never went down


@pytest_twisted.inlineCallbacks
def test_stop_service_closes_everything(servers: list[FakeGatewayFactory]) -> Any:
    a, b = gateway(servers), gateway(servers)
    a.mode = "silent"
    view = FakeView()
    view.put("n1", a.address)
    view.put("n2", b.address)
    pool = make_pool(view, connections_per_server=2)
    pool.startService()
    yield wait_for(lambda: len(a.conns) == 2 and len(b.conns) == 2
                   and all(s["connected"] == 2 for s in pool.status().values()),
                   5, "4 connections")
    protos = [s.protocol for srv in pool._servers.values() for s in srv.slots]
    pending = pool.request(a.address, build(), 10.0)
    stopping = pool.stopService()
    assert pending.called and (yield pending).outcome == "lost"
    yield stopping
    assert all(p is not None and p.closed for p in protos)  # closed when stop fired
    assert pool.addresses() == [] and pool.status() == {}
    assert (yield pool.request(b.address, build(), 1.0)).outcome == "unavailable"
    yield wait_for(lambda: not a.conns and not b.conns, 5, "server side to see the close")
    accepted = a.accepted + b.accepted
    assert view.listeners == []  # unsubscribed: events after stop reach nobody
    view.put("n3", a.address)
    yield sleep(0.3)
    assert a.accepted + b.accepted == accepted
    yield pool.stopService()  # idempotent


@pytest_twisted.inlineCallbacks
def test_pool_restarts_and_follows_the_view_again(servers: list[FakeGatewayFactory]) -> Any:
    a, b = gateway(servers), gateway(servers)
    view = FakeView()
    pool = make_pool(view)
    pool.startService()
    try:
        view.put("n1", a.address)  # followed while running
        yield wait_for(lambda: pool.is_connected(a.address), 5, "a connected")
        yield pool.stopService()
        assert view.listeners == [] and pool.addresses() == []
        listener_of_the_first_run = pool._on_view
        listener_of_the_first_run("gs", "added", ServerNode("n9", "127.0.0.1", b.number))
        assert pool.addresses() == []  # a late event while stopped is ignored
        view.put("n2", b.address)  # changed while stopped: read again at start
        pool.startService()
        assert len(view.listeners) == 1  # subscribed once, not once per start
        assert pool.addresses() == sorted([a.address, b.address])
        yield wait_for(lambda: pool.is_connected(a.address) and pool.is_connected(b.address),
                       5, "a and b connected")
        view.remove("n1")  # and it follows the view again
        assert pool.addresses() == [b.address]
        assert (yield pool.request(b.address, build(), 5.0)).outcome == "ok"
    finally:
        yield pool.stopService()
    assert view.listeners == []
