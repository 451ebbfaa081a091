"""The graceful drain at stop (mpush.services.drain), on a task.Clock.

The real PushResource, PushClient and AllocSite with a fake gateway pool
and fake Redis: raw HTTP over StringTransports, time moved by hand.
The same drain with the real daemon and SIGTERM is in test_daemon_drain.py.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from twisted.application.service import Service
from twisted.internet.defer import Deferred, succeed
from twisted.internet.error import ConnectionDone
from twisted.internet.task import Clock
from twisted.python.failure import Failure

from mpush.config import AllocSettings
from mpush.daemon.tap import AllocDaemon
from mpush.outcomes import GatewayOutcome, TimeoutCause
from mpush.services.drain import Drain
from mpush.services.ordered import OrderedService
from mpush.services.pusher import PushClient
from mpush.web.push import PushResource
from mpush.web.root import RootResource
from mpush.web.site import AllocSite
from tests.fakes import FakeCache, FixedAllocator, Reply, loc, push_resource
from tests.http_exchange import Exchange, connect, http_post, split

GW = "10.0.0.5:3001"


class FakePool:
    """A gateway pool: users in ``deliver`` answered OK after ``delay`` s, others never."""

    def __init__(self, clock: Clock, deliver: set[str], delay: float = 0.5) -> None:
        self.clock = clock
        self.deliver = deliver
        self.delay = delay
        self.pending: list[Deferred[Any]] = []
        self.expired_with: list[TimeoutCause] = []

    def addresses(self) -> list[str]:
        return [GW]

    def broadcast_addresses(self) -> list[str]:
        return self.addresses()

    def request(self, address: str, build: Callable[[int], bytes], timeout: float
                ) -> Deferred[Any]:
        data = build(1)
        d: Deferred[Any] = Deferred()
        if any(user.encode() in data for user in self.deliver):
            self.clock.callLater(self.delay, d.callback, Reply(GatewayOutcome.OK, address))
        else:
            self.pending.append(d)
        return d

    def expire_pending(self, cause: TimeoutCause) -> int:
        # GatewayPool's contract: every pending request ends timeout, its cause given.
        self.expired_with.append(cause)
        pending, self.pending = self.pending, []
        for d in pending:
            d.callback(Reply(GatewayOutcome.TIMEOUT, GW, cause=cause))
        return len(pending)


@dataclass
class Listener:
    """Stands for WebService: records when it stopped listening."""

    clock: Clock
    listening: Any = "port"
    stopped_at: list[float] = field(default_factory=list)

    def stopService(self) -> Deferred[None]:
        self.stopped_at.append(self.clock.seconds())
        self.listening = None
        return succeed(None)


@dataclass
class Stack:
    clock: Clock
    cache: FakeCache
    pool: FakePool
    client: PushClient
    pushes: PushResource
    site: AllocSite
    listener: Listener
    drain: Drain

    def user(self, name: str) -> None:
        self.cache.hashes[f"mp:ur:{name}"] = {"1": loc(GW)}

    def post(self, body: dict[str, Any]) -> Exchange:
        ex = connect(self.site)
        ex.feed(http_post(json.dumps(body).encode()))
        return ex


def make_stack(*, drain_delay: float = 2.0, grace: float = 5.0, settle: float = 2.0,
               deliver: tuple[str, ...] = ("fast",), delay: float = 0.5) -> Stack:
    clock = Clock()
    cache = FakeCache()
    pool = FakePool(clock, set(deliver), delay)
    client = PushClient(pool, cache, max_inflight=AllocSettings().max_inflight_pushes,
                        reactor=clock)
    pushes = push_resource(client)
    root = RootResource(FixedAllocator())
    root.putChild(b"push", pushes)
    site = AllocSite(root, reactor=clock)
    listener = Listener(clock)
    drain = Drain(listener=listener, pusher=client, site=site,
                  drain_delay=drain_delay, shutdown_grace=grace, settle=settle, flush=1.0,
                  clock=clock)
    return Stack(clock, cache, pool, client, pushes, site, listener, drain)


def answer(ex: Exchange) -> tuple[int, dict[str, str], dict[str, Any]]:
    status, headers, body = split(ex.raw)
    assert int(headers["content-length"]) == len(body), "a complete answer"
    return status, headers, json.loads(body)


def closed(stack: Stack, *exchanges: Exchange) -> None:
    """What the reactor does once a transport's loseConnection has flushed."""
    for ex in exchanges:
        assert ex.transport.disconnecting
        ex.channel.connectionLost(Failure(ConnectionDone()))


def fired(d: Deferred[Any]) -> bool:
    return d.called


def test_steps_happen_in_order_at_their_times() -> None:
    stack = make_stack(drain_delay=2.0, grace=5.0, deliver=("fast",), delay=3.0)
    stack.user("fast")
    ex = stack.post({"userId": "fast", "content": "hi"})
    assert stack.client.admission.inflight == 1
    done = stack.drain.run()
    assert stack.drain.draining is True  # at once
    stack.clock.advance(1.9)
    assert stack.listener.stopped_at == []  # still listening during the drain delay
    stack.clock.advance(0.1)
    assert stack.listener.stopped_at == [2.0]
    # The push (3 s at the gateway) finishes within the grace: no expiry.
    stack.clock.advance(1.0)
    status, headers, body = answer(ex)
    assert status == 200 and body["summary"]["success"] == 1
    assert headers["connection"] == "close"  # the drain closes keep-alive connections
    assert stack.pool.expired_with == []
    stack.clock.advance(0.02)
    closed(stack, ex)
    stack.clock.advance(0.02)
    assert fired(done)
    assert stack.drain.expired == 0 and stack.drain.forced == 0
    assert stack.drain.connections == (1, 0)
    assert stack.client.admission.closing  # a later /push is refused


def test_pushes_still_pending_after_the_grace_end_as_timeout() -> None:
    stack = make_stack(drain_delay=0.5, grace=1.0, deliver=("fast",), delay=0.2)
    for name in ("fast", "mute1", "mute2"):
        stack.user(name)
    fast = stack.post({"userId": "fast", "content": "hi"})
    mute = stack.post({"userIds": ["mute1", "mute2", "fast"], "content": "hi",
                       "timeout": 10000})
    done = stack.drain.run()
    stack.clock.advance(0.5)  # listener closed
    stack.clock.advance(0.2)  # the fast ones answered
    assert answer(fast)[0] == 200
    assert mute.raw == b""  # the silent ones still wait
    stack.clock.advance(0.79)
    assert stack.pool.expired_with == [] and mute.raw == b""
    stack.clock.advance(0.01)  # the grace is over (0.5 + 1.0)
    assert stack.pool.expired_with == [TimeoutCause.SHUTDOWN]
    status, _, body = answer(mute)
    assert status == 200
    by_user = {r["userId"]: (r["result"], r["reason"]) for r in body["results"]}
    assert by_user == {"mute1": ("timeout", "shutdown"), "mute2": ("timeout", "shutdown"),
                       "fast": ("success", None)}
    assert stack.client.admission.inflight == 0
    stack.clock.advance(0.02)
    closed(stack, fast, mute)
    stack.clock.advance(0.02)
    assert fired(done)
    assert stack.drain.expired == 2 and stack.drain.forced == 0


def test_a_push_stuck_before_its_gateway_request_is_answered_timeout_after_settle() -> None:
    stack = make_stack(drain_delay=0.0, grace=1.0, settle=0.5)
    stack.user("slow-redis")
    stack.cache.manual = True  # the route lookup never answers
    ex = stack.post({"userIds": ["slow-redis"], "content": "hi"})
    done = stack.drain.run()
    stack.clock.advance(1.0)
    assert stack.pool.expired_with == [TimeoutCause.SHUTDOWN] and ex.raw == b""
    stack.clock.advance(0.5)
    status, _, body = answer(ex)
    assert status == 200 and body["results"] == [
        {"userId": "slow-redis", "clientType": None, "result": "timeout", "gateway": None,
         "ms": 0.0, "reason": "shutdown", "code": None}]
    assert stack.drain.forced == 1
    # The lookup answers after all: nothing more is written.
    before = ex.raw
    stack.cache.release()
    assert ex.raw == before and before.count(b"HTTP/1.1 ") == 1
    stack.clock.advance(0.02)
    closed(stack, ex)
    stack.clock.advance(0.02)
    assert fired(done)


def test_after_the_grace_a_new_push_is_503_and_gateway_requests_end_at_once() -> None:
    stack = make_stack(drain_delay=0.0, grace=0.0)
    stack.user("mute")
    stack.drain.run()
    stack.clock.advance(0.01)
    ex = stack.post({"userId": "mute", "content": "hi"})
    status, headers, body = answer(ex)
    assert status == 503 and headers["retry-after"] == "5"
    assert "stopping" in body["error"]


def test_idle_keep_alive_connections_close_and_a_client_not_reading_is_aborted() -> None:
    stack = make_stack(drain_delay=0.0, grace=0.0)
    idle = connect(stack.site)
    done = stack.drain.run()
    stack.clock.advance(0.01)
    assert idle.transport.disconnecting  # asked to close (after flushing)
    stack.clock.advance(1.0)  # flush wait over and it never closed: aborted
    assert fired(done)
    assert stack.drain.connections == (0, 1)


def test_a_stop_during_start_skips_the_delay() -> None:
    stack = make_stack(drain_delay=30.0)
    stack.listener.listening = None
    done = stack.drain.run()
    stack.clock.advance(0.05)
    assert fired(done)
    assert stack.drain.draining is True


def test_negative_durations_are_refused() -> None:
    stack = make_stack()
    with pytest.raises(ValueError, match="drain_delay"):
        Drain(listener=stack.listener, pusher=stack.client,
              site=stack.site, drain_delay=-1.0, shutdown_grace=1.0, clock=stack.clock)


class Recorder(Service):
    def __init__(self, name: str, events: list[str]) -> None:
        self.setName(name)
        self.events = events

    def stopService(self) -> None:
        self.events.append(f"stop {self.name}")
        super().stopService()


def test_the_daemon_drains_once_then_stops_its_services_in_reverse() -> None:
    stack = make_stack(drain_delay=1.0, grace=1.0)
    events: list[str] = []
    root = AllocDaemon(stack.clock)
    for name in ("zookeeper", "redis", "web"):
        Recorder(name, events).setServiceParent(root)
    OrderedService.startService(root)
    root.drain = stack.drain
    original = stack.listener.stopService

    def listener_stop() -> Deferred[None]:
        events.append("listener closed")
        return original()

    stack.listener.stopService = listener_stop  # type: ignore[method-assign]
    first = root.stopService()
    second = root.stopService()  # twistd and a test may both ask
    stack.clock.advance(0.5)
    assert events == [] and stack.drain.draining is True
    assert not fired(first)
    stack.clock.advance(0.5)  # nothing in flight, no connection: the rest at once
    assert fired(first) and fired(second)
    # Once each, the listener first (the ordered stop of web finds it closed).
    assert events == ["listener closed", "stop web", "stop redis", "stop zookeeper"]
    assert not root.running
