"""Unit tests of handout sharing between instances: the pure arithmetic
(mpush.shared_handouts), the policy's use of it, and the sharing timer on a Clock."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock

from mpush.balance import BalancePolicy, Candidate
from mpush.services.handout_sharing import HandoutSharer
from mpush.shared_handouts import HandoutLedger, RemoteBaseline, SharedRead
from tests.fake_sharing import MemorySums
from tests.log_capture import log_lines

A, B, C = "10.0.0.1:3000", "10.0.0.2:3000", "10.0.0.3:3000"


def policy_of(counts: dict[str, int]) -> BalancePolicy:
    policy = BalancePolicy()
    policy.set_servers(Candidate(a, a.split(":")[0]) for a in counts)
    policy.apply_counts(policy.begin_refresh(), {a.split(":")[0]: n for a, n in counts.items()})
    return policy


def heads(policy: BalancePolicy, n: int) -> list[str]:
    return [policy.allocate().split(b",")[0].decode() for _ in range(n)]  # type: ignore[union-attr]


# -- the ledger ----------------------------------------------------------------


def test_ledger_sends_only_new_handouts_and_subtracts_its_own() -> None:
    ledger = HandoutLedger()
    assert ledger.take({A: 3, B: 0}) == {A: 3}
    # The hash holds ours (3 on A) and another instance's (5 on A, 2 on B).
    assert ledger.settle({A: 3}, SharedRead("e1", {A: 8, B: 2})) == {A: 5, B: 2}
    assert ledger.take({A: 4, B: 0}) == {A: 1}
    assert ledger.settle({A: 1}, SharedRead("e1", {A: 9, B: 6})) == {A: 5, B: 6}


def test_ledger_resends_a_failed_batch_and_forgets_servers_that_left() -> None:
    ledger = HandoutLedger()
    assert ledger.take({A: 2, B: 1}) == {A: 2, B: 1}  # this one fails: never settled
    assert ledger.take({A: 3}) == {A: 3}  # B left: its handouts are not sent
    assert ledger.settle({A: 3}, SharedRead("e1", {A: 3})) == {A: 0}
    assert ledger.take({A: 3}) == {}


def test_ledger_counter_never_goes_down_when_the_hash_is_recreated() -> None:
    ledger = HandoutLedger()
    ledger.take({A: 0})
    assert ledger.settle({}, SharedRead("e1", {A: 10})) == {A: 10}
    # The hash expired: a new epoch whose sums hold only what came since.
    ledger.take({A: 1})
    assert ledger.settle({A: 1}, SharedRead("e2", {A: 1 + 4})) == {A: 14}


def test_ledger_restarted_server_total_counts_from_zero() -> None:
    ledger = HandoutLedger()
    ledger.take({A: 7})
    ledger.settle({A: 7}, SharedRead("e1", {A: 7}))
    assert ledger.take({A: 2}) == {A: 2}  # left and came back: 2 new, not -5


# -- the baseline --------------------------------------------------------------


def test_baseline_first_sight_is_history_and_rebase_absorbs_the_snapshot() -> None:
    base = RemoteBaseline()
    base.observe({A: 100})
    assert base.extra(A) == 0  # before we started: inside the counts
    base.observe({A: 130})
    assert base.extra(A) == 30
    snapshot = base.snapshot()
    base.observe({A: 140})
    base.rebase(snapshot)
    assert base.extra(A) == 10  # only what came after the refresh started
    base.rebase({A: 140}, keep=[A])
    assert base.extra(A) == 10  # its count could not be read: nothing absorbed
    assert base.extra(B) == 0


# -- the policy ----------------------------------------------------------------


def test_policy_weighs_other_instances_handouts_like_its_own() -> None:
    policy = policy_of({A: 0, B: 10, C: 10})
    policy.set_shared({A: 0})  # first sight
    policy.set_shared({A: 10})  # another instance sent 10 to A meanwhile
    assert heads(policy, 3) == [A, B, C]  # ties broken by address
    described = {s.address: s for s in policy.describe()}
    assert described[A].shared == 10 and described[A].load == 11


def test_policy_refresh_subtracts_the_others_snapshot() -> None:
    policy = policy_of({A: 0, B: 0})
    policy.set_shared({A: 0, B: 0})
    policy.set_shared({A: 5, B: 0})
    token = policy.begin_refresh()
    policy.set_shared({A: 7, B: 0})  # two more while the counts were read
    assert policy.apply_counts(token, {"10.0.0.1": 5, "10.0.0.2": 0})
    described = {s.address: s for s in policy.describe()}
    assert (described[A].online, described[A].shared) == (5, 2)
    assert policy.handout_totals() == {A: 0, B: 0}


def test_two_instances_sharing_fill_an_empty_server_once() -> None:
    # Server A restarted empty; B and C carry 50 each; 60 clients come,
    # alternately through two instances. Alone, each instance would send
    # all of its 30 to A (60 in all); sharing, A gets its fair share.
    sums = MemorySums()
    policies = [policy_of({A: 0, B: 50, C: 50}) for _ in range(2)]
    clock = Clock()
    sharers = [HandoutSharer(p, sums, interval=0.1, reactor=clock) for p in policies]
    for s in sharers:
        s.startService()
    online = {A: 0, B: 50, C: 50}
    for i in range(60):
        clock.advance(0.1)
        online[heads(policies[i % 2], 1)[0]] += 1
    assert max(online.values()) <= 54  # mean 53.3; the lag costs at most one client
    for s in sharers:
        s.stopService()


# -- the timer -----------------------------------------------------------------


@pytest.fixture
def logged() -> Iterator[list[str]]:
    with log_lines("mpush.services.handout_sharing") as lines:
        yield lines


def test_failures_degrade_to_counting_alone_logged_once_then_recover(logged: list[str]) -> None:
    sums = MemorySums()
    policy = policy_of({A: 0, B: 0})
    clock = Clock()
    sharer = HandoutSharer(policy, sums, interval=1.0, reactor=clock)
    sharer.startService()
    sums.error = ConnectionError("redis down")
    heads(policy, 4)
    for _ in range(3):
        clock.advance(1.0)
    assert sharer.failures == 3 and sharer.last_error == "redis down"
    assert len(logged) == 1 and "cannot share handout counts" in logged[0]
    assert policy.allocate() is not None  # serving does not wait for Redis
    sums.error = None
    clock.advance(1.0)
    assert sharer.last_error is None and sharer.last_ok == 4.0
    assert sums.sums == {A: 3, B: 2}  # the handouts made during the outage arrived once
    assert len(logged) == 2 and "again" in logged[1]
    sharer.stopService()


def test_an_error_applying_an_exchange_is_logged_and_counted_not_left_unhandled(
        logged: list[str]) -> None:
    class Broken(BalancePolicy):
        def set_shared(self, counter: object) -> None:
            raise RuntimeError("bug")

    policy = Broken()
    policy.set_servers([Candidate(A, A.split(":")[0])])
    clock = Clock()
    sharer = HandoutSharer(policy, MemorySums(), interval=1.0, reactor=clock)
    sharer.startService()
    clock.advance(1.0)
    assert sharer.failures == 2 and sharer.exchanges == 0  # each tick tried again
    assert any("cannot apply" in line for line in logged)
    sharer.stopService()


def test_a_hung_exchange_times_out_and_none_overlaps() -> None:
    class Hung:
        calls = 0

        def exchange(self, batch: object, addresses: object = ()) -> Deferred[SharedRead]:
            self.calls += 1
            return Deferred()

    store = Hung()
    clock = Clock()
    sharer = HandoutSharer(policy_of({A: 0}), store, interval=1.0, timeout=2.5, reactor=clock)
    sharer.startService()
    clock.advance(2.0)
    assert store.calls == 1  # the ticks while it hangs start nothing
    clock.advance(1.0)
    assert sharer.failures == 1 and store.calls == 2
    sharer.stopService()
    assert sharer.failures == 1  # the cancel at stop is not a failure


def test_interval_must_be_positive() -> None:
    with pytest.raises(ValueError, match="interval"):
        HandoutSharer(BalancePolicy(), MemorySums(), interval=0)


def test_an_unreadable_count_keeps_the_others_handouts() -> None:
    policy = policy_of({A: 0, B: 0})
    policy.set_shared({A: 0, B: 0})
    policy.set_shared({A: 4, B: 4})
    token = policy.begin_refresh()
    # A's key could not be read: its count is old, so the 4 are not in it.
    assert policy.apply_counts(token, {"10.0.0.2": 4}, unreadable={"10.0.0.1": "WRONGTYPE"})
    described = {s.address: s for s in policy.describe()}
    assert (described[A].online, described[A].shared) == (0, 4)
    assert (described[B].online, described[B].shared) == (4, 0)


def test_refreshing_instances_sharing_through_a_burst_stay_balanced() -> None:
    # The benchmark's burst, small: four instances with their refreshers at
    # different phases; A restarts empty (the others at 200); 400 clients in 4 s.
    from dataclasses import replace

    from mpush.services.refresher import Refresher, RefreshSchedule
    from tests.fakes import Cache, Node, View

    nodes = [Node(f"cs{i}", f"10.0.0.{i + 1}") for i in range(3)]
    view = View(*nodes)
    redis = Cache({"10.0.0.1": 200, "10.0.0.2": 200, "10.0.0.3": 200}, missing=0)
    clock, sums = Clock(), MemorySums()
    policies = [BalancePolicy() for _ in range(4)]
    services: list[Refresher | HandoutSharer] = []
    for j, policy in enumerate(policies):
        services.append(Refresher(policy, view, redis, reactor=clock,
                                  schedule=RefreshSchedule(interval=2.0, change_delay=0.1)))
        services.append(HandoutSharer(policy, sums, interval=0.05, reactor=clock))
        clock.callLater(j * 0.5, services[-2].startService)
        clock.callLater(j * 0.0125, services[-1].startService)
    clock.advance(2.0)
    redis.counts["10.0.0.1"] = 0
    view.set(replace(nodes[0]), *nodes[1:])
    clock.advance(0.2)
    for i in range(400):
        clock.advance(0.01)
        redis.counts[heads(policies[i % 4], 1)[0].split(":")[0]] += 1
    final = list(redis.counts.values())
    assert max(final) / (sum(final) / 3) <= 1.05, final  # alone: 300 on A, 1.125
    for service in services:
        service.stopService()
