"""The mass-drop hold in the Refresher (on a task.Clock), and with a real ZooKeeper:
ten registered connection servers, six sessions expired at once."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.internet.defer import DeferredList, ensureDeferred
from twisted.internet.task import Clock, deferLater
from twisted.internet.threads import deferToThread

from mpush.balance import BalancePolicy
from mpush.cluster.zookeeper import ZkWatcher
from mpush.daemon.metrics import Metrics
from mpush.services.refresher import Refresher, RefreshSchedule
from mpush.services.status import Status
from mpush.web.health import health_document
from tests.fakes import Cache, FakeGateways, FakeStatusCache, FakeZk, Node, View
from tests.harness.registry import NodeRegistrar
from tests.harness.zkfaults import CuttableProxy, expire_session
from tests.harness.zookeeper import ZooKeeperServer
from tests.log_capture import log_lines
from tests.metrics_samples import scrape


@pytest.fixture
def logged() -> Iterator[list[str]]:
    """Formatted log lines of the refresher and its hold."""
    with log_lines("mpush.services.") as lines:
        yield lines


def nodes(*octets: int) -> list[Node]:
    return [Node(f"cs{n}", f"10.0.0.{n}") for n in octets]


def addresses(policy: BalancePolicy) -> set[str]:
    return {c.address for c in policy.servers}


def ten() -> set[str]:
    return {f"10.0.0.{n}:3000" for n in range(1, 11)}


def refresher_on_clock(view: View, cache: Cache, hold: float = 30.0,
                       ) -> tuple[Refresher, Clock]:
    clock = Clock()
    schedule = RefreshSchedule(interval=60.0, change_delay=0.5, mass_drop_hold=hold)
    r = Refresher(BalancePolicy(), view, cache, schedule=schedule, reactor=clock)
    r.startService()
    return r, clock


# -- the service layer, on a task.Clock ----------------------------------------------


def test_a_mass_drop_is_held_logged_shown_and_ends_on_time(logged: list[str]) -> None:
    view = View(*nodes(*range(1, 11)))
    cache = Cache({f"10.0.0.{n}": 100 for n in range(1, 11)})
    r, clock = refresher_on_clock(view, cache)
    metrics = Metrics()
    metrics.attach(refresher=r)
    zk = FakeZk()
    # /health shows GET /ws too: the same refresher stands in for it.
    status = Status(zk, FakeStatusCache(), FakeGateways(), r, r.policy, clock=clock,
                    ws_policy=r.policy, ws_refresher=r)
    try:
        view.set(*nodes(7, 8, 9, 10))
        clock.advance(0.5)
        assert addresses(r.policy) == ten()
        held = [m for m in logged if "mass drop" in m]
        assert held == ["mass drop: 6 of 10 connection servers left ZooKeeper at once; keeping"
                        " 6 of them in the answer for at most 30 s until they register again"]
        # Held servers keep their last count: their IPs are not read again.
        assert sorted(cache.calls[-1]) == [f"10.0.0.{n}" for n in (10, 7, 8, 9)]
        assert r.policy.describe()[0].online == 100.0
        found = scrape(metrics)
        assert found[("mpush_alloc_servers_held", ())] == 6
        assert found[("mpush_alloc_mass_drop_holds_total", ())] == 1
        zk.cs = view.connection_servers()
        snap = status.snapshot()
        reasons = health_document(snap)["reasons"]
        assert "connection servers held after a mass drop: 6" in reasons
        # The same refresher stands in for GET /ws's.
        assert "WebSocket servers held after a mass drop: 6" in reasons
        rows = {row.address: row.held_left for row in snap.allocation.rows}  # type: ignore[union-attr]
        assert rows["10.0.0.1:3000"] == 30.0 and rows["10.0.0.7:3000"] is None

        view.set(*nodes(1, 7, 8, 9, 10), Node("new-uuid", "10.0.0.2"))  # two back
        clock.advance(0.5)
        assert addresses(r.policy) == ten() and len(r.held) == 4
        clock.advance(29.0)
        assert len(r.policy.servers) == 10
        clock.advance(0.5)  # the hold's end: 30 s after the drop, before the periodic refresh
        assert addresses(r.policy) == {f"10.0.0.{n}:3000" for n in (1, 2, 7, 8, 9, 10)}
        assert [m for m in logged if "hold over" in m] == [
            "mass-drop hold over: 2 connection servers came back, 4 dropped"]
        assert len([m for m in logged if "mass drop" in m]) == 1  # logged once
        found = scrape(metrics)
        assert found[("mpush_alloc_servers_held", ())] == 0
        assert found[("mpush_alloc_mass_drop_holds_total", ())] == 1
        assert "degraded" not in str(health_document(status.snapshot())["reasons"])
    finally:
        r.stopService()
    assert clock.getDelayedCalls() == []


def test_stopping_during_a_hold_cancels_its_timer() -> None:
    view = View(*nodes(1, 2, 3))
    r, clock = refresher_on_clock(view, Cache())
    view.set()
    clock.advance(0.5)
    assert len(r.held) == 3 and not r.stale  # held: nothing stale yet
    r.stopService()
    assert clock.getDelayedCalls() == []


def test_everything_gone_is_held_then_kept_as_stale(logged: list[str]) -> None:
    view = View(*nodes(1, 2, 3))
    r, clock = refresher_on_clock(view, Cache(), hold=5.0)
    view.set()
    clock.advance(0.5)
    assert len(r.policy.servers) == 3 and not r.stale
    clock.advance(5.0)
    # The hold is over; the older rule (never from servers to none) keeps the list, stale.
    assert r.stale and len(r.policy.servers) == 3 and r.held == {}
    r.stopService()


def test_a_small_removal_is_applied_at_once_and_zero_disables_the_hold() -> None:
    view = View(*nodes(*range(1, 11)))
    r, clock = refresher_on_clock(view, Cache())
    view.set(*nodes(*range(5, 11)))  # 4 of 10
    clock.advance(0.5)
    assert addresses(r.policy) == {f"10.0.0.{n}:3000" for n in range(5, 11)}
    r.stopService()
    view = View(*nodes(*range(1, 11)))
    r, clock = refresher_on_clock(view, Cache(), hold=0.0)
    view.set(*nodes(10))
    clock.advance(0.5)
    assert addresses(r.policy) == {"10.0.0.10:3000"} and r.held == {}
    r.stopService()


def test_removals_over_a_few_zookeeper_ticks_are_one_burst_and_spread_ones_are_not() -> None:
    # ZooKeeper expires sessions once per tick (often 2 s): the six servers of one
    # glitch may leave in two steps 2 s apart. The default window (5 s) joins them.
    # (Clock.advance runs what falls due at the end of the step: each change is
    # refreshed by an advance of the change delay, 0.5 s, right after it.)
    view = View(*nodes(*range(1, 11)))
    r, clock = refresher_on_clock(view, Cache({f"10.0.0.{n}": 1 for n in range(1, 11)}))
    clock.advance(0.5)
    view.set(*nodes(4, 5, 6, 7, 8, 9, 10))  # three gone: not half
    clock.advance(0.5)
    assert len(r.policy.servers) == 7 and not r.held
    clock.advance(1.5)
    view.set(*nodes(7, 8, 9, 10))  # three more, 2 s later: six of ten in one burst
    clock.advance(0.5)
    assert addresses(r.policy) == ten() and len(r.held) == 6
    clock.advance(31.0)
    assert len(r.policy.servers) == 4 and not r.held
    # The same two steps further apart than the window: two small removals.
    view.set(*nodes(*range(1, 11)))
    clock.advance(10.0)
    view.set(*nodes(4, 5, 6, 7, 8, 9, 10))
    clock.advance(0.5)
    clock.advance(5.5)
    view.set(*nodes(7, 8, 9, 10))
    clock.advance(0.5)
    assert len(r.policy.servers) == 4 and not r.held


def test_the_burst_window_is_never_shorter_than_two_change_delays() -> None:
    assert RefreshSchedule(change_delay=0.2, mass_drop_window=5.0).burst_window == 5.0
    assert RefreshSchedule(change_delay=4.0, mass_drop_window=5.0).burst_window == 8.0
    assert RefreshSchedule(change_delay=0.2, mass_drop_window=0.0).burst_window == 0.4


def test_a_negative_hold_is_refused() -> None:
    with pytest.raises(ValueError, match="mass_drop_hold must be >= 0"):
        RefreshSchedule(mass_drop_hold=-1.0)


# -- a real ZooKeeper ---------------------------------------------------------------


def wait_for(predicate: Callable[[], Any], timeout: float, what: str) -> Any:
    """Poll ``predicate`` in the reactor until it is truthy, at most ``timeout`` s."""
    return ensureDeferred(_wait(predicate, timeout, what))


async def _wait(predicate: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await deferLater(reactor, 0.02, lambda: None)
    return value


def served(r: Refresher) -> set[str]:
    body = r.policy.body
    return set() if body is None else set(body.decode().split(","))


@pytest_twisted.inlineCallbacks
def test_six_of_ten_sessions_expired_at_once_are_held_until_back_or_the_hold_ends(
        zk_server: ZooKeeperServer, zk_namespace: str,
        make_registrar: Callable[..., NodeRegistrar],
        make_zk_watcher: Callable[..., ZkWatcher]) -> Any:
    connect = zk_server.connect_string
    # One session per server, as in a real cluster; the six to expire reach
    # ZooKeeper through a proxy each, so a glitch can cut them off.
    proxies = [CuttableProxy(int(connect.rsplit(":", 1)[1])) for _ in range(6)]
    for proxy in proxies:
        proxy.open()
    # Blocking kazoo calls go to threads: the proxies run in the reactor.
    regs = []
    for address in [p.connect_string for p in proxies] + [connect] * 4:
        regs.append((yield deferToThread(make_registrar, address, namespace=zk_namespace)))
    paths = []
    for n, reg in enumerate(regs, 1):
        paths.append((yield deferToThread(reg.register, "cs", f"127.0.0.{n}", 3000)))
    watcher = make_zk_watcher(connect, zk_namespace)
    yield wait_for(lambda: len(watcher.connection_servers()) == 10, 10, "ten nodes")
    # A change delay that covers the six expiries (each a takeover connection of its own).
    schedule = RefreshSchedule(interval=60.0, change_delay=1.0, mass_drop_hold=5.0)
    r = Refresher(BalancePolicy(), watcher, Cache(), schedule=schedule)
    r.startService()
    try:
        everyone = {f"127.0.0.{n}:3000" for n in range(1, 11)}
        yield wait_for(lambda: served(r) == everyone, 10, "ten served")

        # The glitch: six servers cut off, their sessions expired at once
        # (ZooKeeper deletes their ephemeral nodes); the servers live on.
        sessions = [reg.client.client_id for reg in regs[:6]]
        yield DeferredList([p.cut() for p in proxies])
        yield DeferredList([deferToThread(expire_session, connect, s) for s in sessions],
                           fireOnOneErrback=True, consumeErrors=True)
        yield wait_for(lambda: len(watcher.connection_servers()) == 4, 10, "six nodes gone")
        yield wait_for(lambda: len(r.held) == 6, 10, "six held")
        assert served(r) == everyone
        # Two reach ZooKeeper again: a new session each, and they register again.
        proxies[0].open()
        proxies[1].open()
        yield wait_for(lambda: len(r.held) == 4, 10, "two back")
        assert served(r) == everyone
        yield wait_for(lambda: r.held == {}, 10, "the hold's end")
        assert served(r) == {f"127.0.0.{n}:3000" for n in (1, 2, 7, 8, 9, 10)}
        assert r.holds_started == 1

        # Then a single removal, and one of fewer than half, are applied at once.
        regs[9].unregister(paths[9])
        yield wait_for(lambda: "127.0.0.10:3000" not in served(r), 10, "one removal")
        assert r.held == {}
        regs[6].unregister(paths[6])
        regs[7].unregister(paths[7])  # 2 of 5
        yield wait_for(lambda: served(r) == {f"127.0.0.{n}:3000" for n in (1, 2, 9)}, 10,
                       "two of five removed")
        assert r.held == {} and r.holds_started == 1
    finally:
        r.stopService()
        for reg in regs[2:6]:  # still cut off: closed before their proxies go
            yield deferToThread(reg.close)
        yield DeferredList([p.cut() for p in proxies])
