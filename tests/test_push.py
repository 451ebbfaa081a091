"""Unit tests of mpush.services.pusher: PushClient on a fake gateway pool and a fake Redis.

The fake pool (tests/fakes.py) keeps the GatewayPool contract (docs/architecture.md): every
request ends exactly once, with a scripted reply or its own timer, both on a
``task.Clock``. It decodes every packet it is asked to send, so the tests
check the bytes the real pool would write.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.logger import LogEvent, globalLogPublisher
from twisted.python.failure import Failure

from mpush.config import AllocSettings
from mpush.outcomes import PushOutcome, PushReason
from mpush.routes import parse_routes
from mpush.services.pusher import PushClient, PushRefused, PushResult
from mpush.wire import (
    FLAG_BIZ_ACK,
    GatewayPush,
    PacketTooLarge,
)
from tests.fakes import A, B, FakeCache, FakePool, Step, loc

MAX_INFLIGHT = AllocSettings().max_inflight_pushes  # the daemon's default limit

@dataclass
class Env:
    clock: Clock = field(default_factory=Clock)
    cache: FakeCache = field(default_factory=FakeCache)
    pool: FakePool = field(init=False)
    client: PushClient = field(init=False)

    def __post_init__(self) -> None:
        self.pool = FakePool(self.clock, (A, B))
        self.client = PushClient(self.pool, self.cache, max_inflight=MAX_INFLIGHT,
                                 reactor=self.clock)

    def route(self, user: str, **fields: str) -> None:
        self.cache.hashes[f"mp:ur:{user}"] = {k.lstrip("f"): v for k, v in fields.items()}

    def rebuild(self, **kwargs: Any) -> None:
        kwargs.setdefault("max_inflight", MAX_INFLIGHT)
        self.client = PushClient(self.pool, self.cache, reactor=self.clock, **kwargs)

    def push_now(self, users: list[str], content: bytes = b"hi", **kw: Any) -> list[PushResult]:
        d = self.client.push(users, content, **kw)
        self.run_until(d)
        return result_of(d)

    def push_broadcast(self, content: bytes = b"news", **kw: Any) -> list[PushResult]:
        d = self.client.broadcast(content, **kw)
        self.run_until(d)
        return result_of(d)

    def run_until(self, d: Deferred[Any]) -> None:
        """Advance the clock from one scheduled call to the next, so each runs at its time."""
        while not d.called and self.clock.getDelayedCalls():
            due = min(c.getTime() for c in self.clock.getDelayedCalls())
            self.clock.advance(max(0.0, due - self.clock.seconds()))


@pytest.fixture
def env() -> Env:
    return Env()


@pytest.fixture
def log_events() -> Iterator[list[LogEvent]]:
    events: list[LogEvent] = []
    globalLogPublisher.addObserver(events.append)
    yield events
    globalLogPublisher.removeObserver(events.append)


def result_of(d: Deferred[Any]) -> Any:
    out: list[Any] = []
    d.addBoth(out.append)
    assert out, "the Deferred has not fired"
    if isinstance(out[0], Failure):
        out[0].raiseException()
    return out[0]


# --------------------------------------------------------------- single push


def test_success_sends_the_java_request_to_the_users_gateway(env: Env) -> None:
    env.route("u1", f1=loc(A, "Android 9"))
    env.pool.script(A, Step(after=0.25))
    d = env.client.push(["u1"], b"hello", ack="biz", tags=["t1"])
    assert env.cache.calls == ["mp:ur:u1"]
    [sent] = env.pool.sent
    assert sent.address == A
    assert sent.timeout == 3.0
    assert sent.push == GatewayPush("u1", 1, 2500, b"hello", tags='["t1"]')
    assert sent.packet.flags == FLAG_BIZ_ACK
    env.clock.advance(0.249)
    assert not d.called
    env.clock.advance(0.001)
    assert result_of(d) == [PushResult("u1", 1, PushOutcome.SUCCESS, A, pytest.approx(250.0))]


def test_routes_are_cached_after_success(env: Env) -> None:
    env.route("u1", f1=loc())
    env.push_now(["u1"])
    env.push_now(["u1"])
    assert env.cache.calls == ["mp:ur:u1"]
    assert len(env.pool.sent) == 2


def test_minimum_timeout_puts_500_ms_on_the_wire(env: Env) -> None:
    env.route("u1", f1=loc())
    env.push_now(["u1"], timeout_ms=1000)
    assert env.pool.sent[0].push.timeout == 500
    assert env.pool.sent[0].timeout == 1.0


def test_no_route_is_offline_without_touching_a_gateway(env: Env) -> None:
    d = env.client.push(["ghost"], b"hi")
    assert result_of(d) == [PushResult("ghost", None, PushOutcome.OFFLINE, None, 0.0,
                                       PushReason.NO_ROUTE)]
    assert env.pool.sent == []


def test_route_without_conn_id_is_offline_on_that_type(env: Env) -> None:
    env.route("u1", f2=loc(A, "windows", conn=None))
    d = env.client.push(["u1"], b"hi")
    [r] = result_of(d)
    assert (r.user_id, r.client_type, r.result, r.gateway) == ("u1", 2, PushOutcome.OFFLINE, None)
    assert (r.reason, r.code) == (PushReason.NO_CONNECTION, None)
    assert env.pool.sent == []


def test_gateway_offline_answer_invalidates_the_cached_route(env: Env) -> None:
    env.route("u1", f1=loc())
    env.pool.script(A, Step("error", code=1))
    [r] = env.push_now(["u1"])
    assert (r.client_type, r.result, r.gateway) == (1, PushOutcome.OFFLINE, A)
    assert (r.reason, r.code) == (PushReason.NOT_ONLINE, 1)
    env.push_now(["u1"])
    assert env.cache.calls == ["mp:ur:u1", "mp:ur:u1"]


@pytest.mark.parametrize("code", [2, 4, 100, 101, 77])
def test_gateway_error_codes_are_failures(env: Env, code: int) -> None:
    env.route("u1", f1=loc())
    env.pool.script(A, Step("error", code=code))
    [r] = env.push_now(["u1"])
    assert (r.result, r.gateway, r.reason, r.code) == (
        PushOutcome.FAILURE, A, PushReason.GATEWAY_ERROR, code)
    env.push_now(["u1"])
    assert len(env.cache.calls) == 1  # a failure says nothing about the route


def test_no_answer_is_a_timeout_at_the_requested_time(env: Env) -> None:
    env.route("u1", f1=loc())
    env.pool.script(A, Step("silent"))
    d = env.client.push(["u1"], b"hi", timeout_ms=3000)
    env.clock.advance(2.999)
    assert not d.called
    env.clock.advance(0.001)
    [r] = result_of(d)
    assert (r.result, r.gateway, r.ms) == (PushOutcome.TIMEOUT, A, pytest.approx(3000.0))
    assert (r.reason, r.code) == (PushReason.TIMED_OUT, None)


@pytest.mark.parametrize(("outcome", "reason"), [
    ("unavailable", PushReason.GATEWAY_UNREACHABLE), ("lost", PushReason.CONNECTION_LOST),
    ("congested", PushReason.GATEWAY_CONGESTED), ("too_large", PushReason.PACKET_TOO_LARGE)])
def test_no_connection_or_lost_connection_is_a_failure(
        env: Env, outcome: str, reason: PushReason) -> None:
    env.route("u1", f1=loc())
    env.pool.script(A, Step(outcome))
    [r] = env.push_now(["u1"])
    assert (r.result, r.gateway, r.reason, r.code) == (PushOutcome.FAILURE, A, reason, None)


def test_a_route_to_a_gateway_the_pool_does_not_know_is_unknown_gateway(env: Env) -> None:
    env.route("u1", f1=loc("10.0.0.9:3001"))  # not among the gateways ZooKeeper lists
    [r] = env.push_now(["u1"])
    assert (r.result, r.gateway, r.reason, r.code) == (
        PushOutcome.FAILURE, "10.0.0.9:3001", PushReason.UNKNOWN_GATEWAY, None)
    assert env.pool.sent == []


def test_redis_error_is_a_failure_and_not_cached(env: Env) -> None:
    env.cache.error = ConnectionError("redis down")
    [r] = env.push_now(["u1"])
    assert (r.user_id, r.client_type, r.result, r.gateway) == (
        "u1", None, PushOutcome.FAILURE, None)
    assert (r.reason, r.code) == (PushReason.REDIS_UNAVAILABLE, None)
    assert env.pool.sent == []
    env.cache.error = None
    env.route("u1", f1=loc())
    [r] = env.push_now(["u1"])
    assert r.result == PushOutcome.SUCCESS
    assert len(env.cache.calls) == 2


def test_pool_breaking_its_contract_still_gives_a_result(env: Env) -> None:
    def broken(*args: Any) -> Deferred[Any]:
        raise RuntimeError("bug in the pool")

    env.pool.request = broken  # type: ignore[method-assign]
    env.route("u1", f1=loc())
    [r] = env.push_now(["u1"])
    assert (r.result, r.gateway, r.reason) == (PushOutcome.FAILURE, A, PushReason.INTERNAL_ERROR)


def test_a_reply_outcome_no_pool_gives_is_a_logged_internal_error(
        env: Env, log_events: list[LogEvent]) -> None:
    env.route("u1", f1=loc())
    env.pool.script(A, Step("exploded"))
    [r] = env.push_now(["u1"])
    assert (r.result, r.gateway, r.reason) == (PushOutcome.FAILURE, A, PushReason.INTERNAL_ERROR)
    assert any("unknown outcome" in e.get("log_format", "") for e in log_events)


# -------------------------------------------------------------- route change


def test_route_change_resends_once_to_the_new_gateway_within_the_deadline(env: Env) -> None:
    env.route("u1", f1=loc(A))
    env.push_now(["u1"])  # the route is now cached
    env.pool.sent.clear()
    start = env.clock.seconds()
    assert start > 0

    def moved() -> None:
        env.route("u1", f1=loc(B, conn="c2"))

    env.pool.script(A, Step("error", code=3, after=0.4, before=moved))
    env.pool.script(B, Step(after=0.1))
    d = env.client.push(["u1"], b"hi", timeout_ms=3000)
    env.clock.advance(0.4)
    assert len(env.cache.calls) == 2  # read again, not the cached A
    first, second = env.pool.sent
    assert (first.address, second.address) == (A, B)
    assert second.at - start == pytest.approx(0.4)
    assert second.timeout == pytest.approx(2.6)  # what is left of 3 s
    assert second.push.timeout == 2100  # left - 500, as any request
    env.clock.advance(0.1)
    assert result_of(d) == [PushResult("u1", 1, PushOutcome.SUCCESS, B, pytest.approx(500.0))]


def test_second_route_change_is_a_failure(env: Env) -> None:
    env.route("u1", f1=loc(A))
    env.pool.script(A, Step("error", code=3, before=lambda: env.route("u1", f1=loc(B))))
    env.pool.script(B, Step("error", code=3))
    [r] = env.push_now(["u1"])
    # The second ROUTER_CHANGE is the gateway's error 3.
    assert (r.result, r.gateway, r.reason, r.code) == (
        PushOutcome.FAILURE, B, PushReason.GATEWAY_ERROR, 3)
    assert [s.address for s in env.pool.sent] == [A, B]
    env.push_now(["u1"])
    assert len(env.cache.calls) == 3  # invalidated again


def test_route_change_to_offline_is_offline(env: Env) -> None:
    env.route("u1", f1=loc(A))
    env.pool.script(A, Step("error", code=3, before=lambda: env.route("u1", f1=loc(B, conn=None))))
    [r] = env.push_now(["u1"])
    assert (r.result, r.client_type, r.reason) == (PushOutcome.OFFLINE, 1,
                                                   PushReason.NO_CONNECTION)
    assert len(env.pool.sent) == 1


def test_route_change_to_no_route_is_offline_no_route(env: Env) -> None:
    env.route("u1", f1=loc(A))
    env.pool.script(A, Step("error", code=3, before=lambda: env.cache.hashes.clear()))
    [r] = env.push_now(["u1"])
    assert (r.result, r.client_type, r.gateway, r.reason) == (
        PushOutcome.OFFLINE, 1, A, PushReason.NO_ROUTE)


def test_route_change_then_redis_down_is_redis_unavailable(env: Env) -> None:
    def redis_down() -> None:
        env.cache.error = ConnectionError("redis down")

    env.route("u1", f1=loc(A))
    env.pool.script(A, Step("error", code=3, before=redis_down))
    [r] = env.push_now(["u1"])
    assert (r.result, r.client_type, r.gateway, r.reason, r.code) == (
        PushOutcome.FAILURE, 1, A, PushReason.REDIS_UNAVAILABLE, None)


def test_route_change_with_under_a_second_left_is_a_timeout(env: Env) -> None:
    env.route("u1", f1=loc(A))
    env.pool.script(A, Step("error", code=3, after=2.5, before=lambda: env.route("u1", f1=loc(B))))
    d = env.client.push(["u1"], b"hi", timeout_ms=3000)
    env.clock.advance(2.5)
    [r] = result_of(d)
    assert (r.result, r.ms, r.reason) == (PushOutcome.TIMEOUT, pytest.approx(2500.0),
                                          PushReason.TIMED_OUT)
    assert len(env.pool.sent) == 1  # no resend the server could not answer in time


def test_route_change_in_the_tick_of_the_deadline_ends_once(env: Env) -> None:
    env.route("u1", f1=loc(A))
    env.pool.script(A, Step("error", code=3, at_timeout=True))
    d = env.client.push(["u1"], b"hi")
    env.clock.advance(3.0)
    assert result_of(d) == [
        PushResult("u1", 1, PushOutcome.TIMEOUT, A, pytest.approx(3000.0),
                   PushReason.TIMED_OUT)
    ]
    assert len(env.pool.sent) == 1
    assert env.pool.ended == 1
    env.clock.advance(60)
    assert env.clock.getDelayedCalls() == []


def test_reply_in_the_tick_of_the_timeout_ends_once(env: Env) -> None:
    env.route("u1", f1=loc(A))
    env.pool.script(A, Step(at_timeout=True))
    d = env.client.push(["u1"], b"hi")
    fired: list[Any] = []
    d.addCallback(fired.append)
    env.clock.advance(3.0)
    assert fired == [[PushResult("u1", 1, PushOutcome.SUCCESS, A, pytest.approx(3000.0))]]
    assert env.pool.ended == 1
    assert env.clock.getDelayedCalls() == []


# ------------------------------------------------------- client types, users


def test_expire_all_ends_pending_requests_as_shutdown_timeouts(env: Env) -> None:
    env.route("u1", f1=loc(A))
    env.pool.script(A, Step("silent"))
    d = env.client.push(["u1"], b"hi", timeout_ms=10_000)
    env.clock.advance(1.0)
    assert env.client.expire_all() == 1
    assert result_of(d) == [PushResult("u1", 1, PushOutcome.TIMEOUT, A, pytest.approx(1000.0),
                                       PushReason.SHUTDOWN)]
    # From now on a request ends at once, without being sent.
    [r] = env.push_now(["u1"])
    assert (r.result, r.gateway, r.reason) == (PushOutcome.TIMEOUT, A, PushReason.SHUTDOWN)
    assert len(env.pool.sent) == 1


def test_a_timeout_without_a_cause_is_the_deadline(env: Env) -> None:
    env.route("u1", f1=loc(A))
    env.pool.script(A, Step("silent"))
    [r] = env.push_now(["u1"])
    assert (r.result, r.reason) == (PushOutcome.TIMEOUT, PushReason.TIMED_OUT)


def test_two_client_types_give_two_requests_and_ordered_results(env: Env) -> None:
    env.route("u1", f2=loc(B, "Windows 10", conn="pc"), f1=loc(A, "iOS", conn="phone"))
    env.pool.script(A, Step(after=0.3))
    env.pool.script(B, Step(after=0.1))  # answers first
    [r1, r2] = env.push_now(["u1"])
    sent = {s.address: s.push.client_type for s in env.pool.sent}
    assert sent == {A: 1, B: 2}
    assert (r1.client_type, r1.gateway, r1.result) == (1, A, PushOutcome.SUCCESS)
    assert (r2.client_type, r2.gateway, r2.result) == (2, B, PushOutcome.SUCCESS)


@pytest.mark.parametrize(
    ("os_name", "hash_field", "client_type"),
    [
        ("iOS 12", "1", 1),
        ("iPhone OS", "1", -1),  # as Java: no "ios" in "iphone os"
        ("Mac OS X", "2", 2),
        ("LINUX", "2", 2),
        ("h5", "3", 3),
        ("WebKit", "1", 3),  # osName wins over the field
        (None, "3", 3),  # no osName: the field
        (None, "2", 2),
        ("", "1", -1),  # as Java: empty osName is -1
        ("Symbian", "1", -1),
    ],
)
def test_client_type_comes_from_os_name_then_field(
    env: Env, os_name: str | None, hash_field: str, client_type: int
) -> None:
    env.cache.hashes["mp:ur:u1"] = {hash_field: loc(A, os_name)}
    [r] = env.push_now(["u1"])
    assert env.pool.sent[0].push.client_type == client_type
    assert r.client_type == client_type


def test_duplicate_users_are_pushed_once_in_input_order(env: Env) -> None:
    env.route("u1", f1=loc(A))
    env.route("u2", f1=loc(B))
    env.pool.script(A, Step(after=0.5))
    env.pool.script(B, Step(after=0.1))
    d = env.client.push(["u2", "u1", "u2", "ghost", "u1"], b"hi")
    assert env.cache.calls == ["mp:ur:u2", "mp:ur:u1", "mp:ur:ghost"]
    assert sorted(s.push.user_id for s in env.pool.sent) == ["u1", "u2"]
    env.clock.advance(0.1)
    assert not d.called  # fires when all results are known
    env.clock.advance(0.4)
    assert [(r.user_id, r.result) for r in result_of(d)] == [
        ("u2", PushOutcome.SUCCESS), ("u1", PushOutcome.SUCCESS), ("ghost", PushOutcome.OFFLINE)
    ]


def test_unparsable_route_is_skipped_and_logged_once(env: Env) -> None:
    events: list[LogEvent] = []
    globalLogPublisher.addObserver(events.append)
    try:
        env.route("u1", f1="{not json", f2=loc(B, "windows"))
        [r] = env.push_now(["u1"])
        assert (r.client_type, r.result) == (2, PushOutcome.SUCCESS)
        env.clock.advance(1)  # past the short TTL of an incomplete lookup
        env.push_now(["u1"])
    finally:
        globalLogPublisher.removeObserver(events.append)
    assert len(env.cache.calls) == 2
    warned = [e for e in events if "ignoring route" in (e.get("log_format") or "")]
    assert len(warned) == 1
    assert warned[0]["field"] == "1"


def test_parse_routes_keeps_one_route_per_client_type() -> None:
    routes, bad = parse_routes({
        "1": loc(A, "android", conn=None),
        "5": loc(B, "ios", conn="x"),  # also type 1, under a stale field
        "2": loc(A, None, conn=None),
        "x": loc(A, None),  # no osName and no client type: unusable
        "3": json.dumps({"osName": "web", "connId": "c"}),  # online, no address
    })
    assert [(r.client_type, r.field) for r in routes] == [(1, "1"), (2, "2")]
    assert [b[0] for b in bad] == ["x", "3"]


def test_a_bad_route_value_is_quoted_short_in_the_reason() -> None:
    huge = "h" * 100_000
    _, bad = parse_routes({
        "1": json.dumps({"osName": "android", "connId": "c", "host": huge, "port": 0}),
        "2": json.dumps({"osName": ["x" * 100_000]}),
    })
    reasons = {field: why for field, _, why in bad}
    assert reasons["1"].startswith("bad gateway address host='hhh")
    assert reasons["2"].startswith("osName is not a string: [")
    assert all(len(why) < 120 for why in reasons.values()), reasons


# ------------------------------------------------------------------ validation


@pytest.mark.parametrize(
    ("args", "kwargs", "error"),
    [
        (([], b"hi"), {}, ValueError),
        ((["u1", ""], b"hi"), {}, ValueError),
        ((["u1", " \t"], b"hi"), {}, ValueError),
        (("u1", b"hi"), {}, TypeError),  # a str would be pushed letter by letter
        ((["u1"], b"hi"), {"timeout_ms": 999}, ValueError),
        ((["u1"], b""), {}, ValueError),
        ((["u1"], b"hi"), {"tags": []}, ValueError),
        ((["u1"], b"hi"), {"ack": "sometimes"}, ValueError),
        # 10220 bytes fit with "u1" (body 18 + 2 + 10220 = 10240); "u12" does not.
        ((["u1", "u12"], b"x" * 10220), {}, PacketTooLarge),
    ],
)
def test_invalid_push_raises_before_any_io(
    env: Env, args: tuple[Any, ...], kwargs: dict[str, Any], error: type[Exception]
) -> None:
    env.route("u1", f1=loc())
    with pytest.raises(error):
        env.client.push(*args, **kwargs)
    assert env.cache.calls == []
    assert env.pool.sent == []


def test_largest_content_that_fits_is_sent(env: Env) -> None:
    env.route("u1", f1=loc())
    [r] = env.push_now(["u1"], b"x" * 10220)
    assert r.result == PushOutcome.SUCCESS
    assert len(env.pool.sent[0].packet.body) == 10240


# ------------------------------------------------------------------ the cache


def test_route_cache_expires_after_ttl(env: Env) -> None:
    env.route("u1", f1=loc())
    env.client.push(["u1"], b"hi")  # read at t=0
    env.clock.advance(299)
    env.client.push(["u1"], b"hi")
    assert len(env.cache.calls) == 1
    env.clock.advance(1)  # t=300: the default route_ttl is over
    env.client.push(["u1"], b"hi")
    assert len(env.cache.calls) == 2


def test_offline_lookups_are_cached_briefly(env: Env) -> None:
    env.route("u1", f1=loc(A), f2=loc(B, "windows", conn=None))
    d = env.client.push(["ghost", "u1"], b"hi")
    env.client.push(["ghost", "u1"], b"hi")
    assert len(env.cache.calls) == 2
    env.clock.advance(1.0)
    result_of(d)
    env.client.push(["ghost", "u1"], b"hi")
    assert len(env.cache.calls) == 4


def test_route_cache_is_bounded_lru(env: Env) -> None:
    env.rebuild(route_cache_size=2)
    for user in ("u1", "u2", "u3"):
        env.route(user, f1=loc())
    env.push_now(["u1"])
    env.push_now(["u2"])
    env.push_now(["u1"])  # hit: u1 is now the most recent
    env.push_now(["u3"])  # evicts u2, the least recently used
    assert len(env.cache.calls) == 3
    env.push_now(["u1"])
    env.push_now(["u3"])
    assert len(env.cache.calls) == 3
    env.push_now(["u2"])
    assert env.cache.calls[-1] == "mp:ur:u2"
    assert len(env.cache.calls) == 4
    assert len(env.client.routes) == 2


def test_offline_burst_does_not_evict_online_routes(env: Env) -> None:
    env.rebuild(route_cache_size=2)
    env.route("u1", f1=loc())
    env.push_now(["u1"])
    # Many absent users: their answers are kept apart, briefly, and bounded.
    env.push_now([f"ghost{i}" for i in range(50)])
    assert len(env.client.routes) == 1 + 2  # u1, and the last two absent ones
    calls = len(env.cache.calls)
    env.push_now(["u1"])  # still warm
    assert len(env.cache.calls) == calls
    env.push_now(["ghost49"])  # a recent absent user, within its 1 s
    assert len(env.cache.calls) == calls
    env.clock.advance(1.0)
    env.push_now(["ghost49"])  # expired: read again
    assert env.cache.calls[-1] == "mp:ur:ghost49"


def test_concurrent_lookups_share_one_redis_call(env: Env) -> None:
    env.route("u1", f1=loc())
    env.cache.manual = True
    d1 = env.client.push(["u1"], b"one")
    d2 = env.client.push(["u1"], b"two")
    assert env.cache.calls == ["mp:ur:u1"]
    assert env.pool.sent == []
    env.cache.release()
    assert sorted(s.push.content for s in env.pool.sent) == [b"one", b"two"]
    env.clock.advance(1)
    assert result_of(d1)[0].result == result_of(d2)[0].result == PushOutcome.SUCCESS


def test_invalidate_detaches_a_lookup_in_flight(env: Env) -> None:
    env.route("u1", f1=loc(A))
    env.cache.manual = True
    env.client.push(["u1"], b"one")
    env.client.invalidate_route("u1")  # e.g. an OFFLINE answer just came in
    env.route("u1", f1=loc(B))
    env.client.push(["u1"], b"two")
    assert len(env.cache.calls) == 2  # a fresh read, not joined to the older one
    env.cache.release(1, 0)  # the older read answers last
    assert [(s.push.content, s.address) for s in env.pool.sent] == [(b"two", B), (b"one", A)]
    env.cache.manual = False
    env.client.push(["u1"], b"three")
    assert len(env.cache.calls) == 2
    assert env.pool.sent[-1].address == B  # the older answer was not cached


# ------------------------------------------------------------------ broadcast


def test_broadcast_sends_one_request_per_gateway(env: Env) -> None:
    env.pool.script(A, Step(after=2.0))
    env.pool.script(B, Step("silent"))
    d = env.client.broadcast(
        b"news", tags=["a", "b", "a"], condition="tags.indexOf('a') >= 0", task_id="t1"
    )
    assert [s.address for s in env.pool.sent] == [A, B]
    for s in env.pool.sent:
        assert s.timeout == 30.0
        assert s.push == GatewayPush(
            None, 0, 0, b"news", task_id="t1", tags='["a","b"]',
            condition="tags.indexOf('a') >= 0",
        )
    env.clock.advance(2.0)
    env.clock.advance(27.9)
    assert not d.called  # a taskId broadcast still waits for its OK
    env.clock.advance(0.1)
    assert result_of(d) == [
        PushResult(None, None, PushOutcome.SUCCESS, A, pytest.approx(2000.0)),
        PushResult(None, None, PushOutcome.TIMEOUT, B, pytest.approx(30000.0),
                   PushReason.TIMED_OUT),
    ]


def test_broadcast_timeout_and_failures(env: Env) -> None:
    env.pool.script(A, Step("error", code=100))
    env.pool.script(B, Step("unavailable"))
    d = env.client.broadcast(b"news", timeout_ms=5000)
    assert [s.timeout for s in env.pool.sent] == [5.0, 5.0]
    env.clock.advance(5)
    assert [(r.gateway, r.result, r.reason, r.code) for r in result_of(d)] == [
        (A, PushOutcome.FAILURE, PushReason.GATEWAY_ERROR, 100),
        (B, PushOutcome.FAILURE, PushReason.GATEWAY_UNREACHABLE, None)]


def test_a_broadcast_answered_offline_is_a_gateway_error(env: Env) -> None:
    env.pool.script(A, Step("error", code=1))
    env.pool.script(B, Step("lost"))
    rows = [(r.gateway, r.result, r.reason, r.code) for r in env.push_broadcast()]
    assert rows == [(A, PushOutcome.FAILURE, PushReason.GATEWAY_ERROR, 1),
                    (B, PushOutcome.FAILURE, PushReason.CONNECTION_LOST, None)]


def test_broadcast_without_gateways_is_one_failure(env: Env) -> None:
    env.pool.known = []
    [r] = result_of(env.client.broadcast(b"news"))
    assert (r.user_id, r.client_type, r.result, r.gateway, r.reason) == (
        None, None, PushOutcome.FAILURE, None, PushReason.UNKNOWN_GATEWAY)


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"content": b"news", "timeout_ms": 999}, ValueError),
        ({"content": b""}, ValueError),
        ({"content": b"news", "tags": "a"}, TypeError),
        ({"content": b"x" * 10240}, PacketTooLarge),
    ],
)
def test_invalid_broadcast_raises_before_any_io(
    env: Env, kwargs: dict[str, Any], error: type[Exception]
) -> None:
    with pytest.raises(error):
        env.client.broadcast(**kwargs)
    assert env.pool.sent == []


# --------------------------------------------------------------- admission


def test_the_client_refuses_pushes_past_its_in_flight_limit(env: Env) -> None:
    env.rebuild(max_inflight=3)
    for user in ("a", "b", "c", "d"):
        env.route(user, f1=loc(A))
    env.pool.script(A, *[Step("silent")] * 3)
    admission = env.client.admission
    held = env.client.push(["a", "b", "a"], b"hi")  # two users: two in flight
    assert (admission.inflight, admission.calls) == (2, 1)
    assert admission.admits(1) and not admission.admits(2)
    with pytest.raises(PushRefused, match="limit 3") as refused:
        env.client.push(["c", "d"], b"hi")
    assert not refused.value.closing
    assert len(env.pool.sent) == 2  # the refused push sent nothing
    broadcast = env.client.broadcast(b"news")  # a broadcast counts one
    assert admission.inflight == 3
    env.run_until(held)
    env.run_until(broadcast)
    assert (admission.inflight, admission.calls) == (0, 0)
    # a and b silent; the broadcast: A silent, B answering.
    assert admission.outcomes == {"success": 1, "failure": 0, "offline": 0, "timeout": 3}


def test_bad_arguments_are_refused_before_admission(env: Env) -> None:
    env.rebuild(max_inflight=1)
    with pytest.raises(ValueError, match="blank"):
        env.client.push(["a", " "], b"hi")  # a bad call is a ValueError, even over the limit
    assert env.client.admission.inflight == 0


def test_outcomes_are_counted_and_observed(env: Env) -> None:
    observed: list[float] = []
    env.client.admission.observe_push = observed.append
    env.route("u1", f1=loc(A))
    env.pool.script(A, Step(after=0.25))
    env.push_now(["u1", "ghost"])
    assert env.client.admission.outcomes == {"success": 1, "failure": 0, "offline": 1,
                                             "timeout": 0}
    assert observed == [pytest.approx(0.25), 0.0]


def test_closing_refuses_every_new_push(env: Env) -> None:
    env.client.admission.close()
    with pytest.raises(PushRefused) as refused:
        env.client.push(["u1"], b"hi")
    assert refused.value.closing
    with pytest.raises(PushRefused):
        env.client.broadcast(b"news")
    assert env.cache.calls == [] and env.pool.sent == []


def test_end_all_as_timeout_ends_every_call_now_even_one_waiting_for_redis(
    env: Env, log_events: list[LogEvent]
) -> None:
    observed: list[float] = []
    admission = env.client.admission
    admission.observe_push = observed.append
    env.route("u1", f1=loc(A))
    env.pool.script(A, Step("silent"), Step("silent"))
    env.pool.script(B, Step("silent"))
    at_gateway = env.client.push(["u1"], b"hi", timeout_ms=10_000)
    env.cache.manual = True  # the next lookup never answers
    env.route("u2", f1=loc(A))
    at_redis = env.client.push(["u2", "u3"], b"hi")
    broadcast = env.client.broadcast(b"news")
    idle = admission.when_idle()
    env.clock.advance(1.0)
    assert admission.calls == 3 and not idle.called
    assert env.client.end_all_as_timeout() == 3
    reason = PushReason.SHUTDOWN
    assert result_of(at_gateway) == [PushResult("u1", None, PushOutcome.TIMEOUT, None, 0.0,
                                                reason)]
    assert [(r.user_id, r.result, r.gateway, r.reason) for r in result_of(at_redis)] == [
        ("u2", PushOutcome.TIMEOUT, None, reason), ("u3", PushOutcome.TIMEOUT, None, reason)]
    assert result_of(broadcast) == [PushResult(None, None, PushOutcome.TIMEOUT, None, 0.0,
                                               reason)]
    assert idle.called and (admission.inflight, admission.calls) == (0, 0)
    assert admission.outcomes["timeout"] == 4 and observed == []  # counted, not observed
    # What they learn later is dropped (and said so), never answered twice.
    env.cache.release()
    env.clock.advance(60)
    assert admission.outcomes["timeout"] == 4
    assert any("after the shutdown answer" in e.get("log_format", "") for e in log_events)


def test_every_reason_is_reached_by_a_test_here() -> None:
    # A new word in the vocabulary comes with a test above that reaches it.
    source = Path(__file__).read_text(encoding="utf-8")
    assert {m for m in PushReason if f"PushReason.{m.name}" in source} == set(PushReason)
