"""Unit tests of mpush.services.refresher: the pure policies and the Refresher on a Clock."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet.task import Clock

from mpush.balance import BalancePolicy, Candidate, JavaPolicy
from mpush.services.refresher import (
    DEFAULT_CHANGE_DELAY,
    DEFAULT_REFRESH_INTERVAL,
    Refresher,
    RefreshSchedule,
)
from tests.fakes import Cache, Node, View
from tests.log_capture import log_lines

# ---------------------------------------------------------------- helpers


def cand(address: str, weight: float = 1.0) -> Candidate:
    return Candidate(address, address.rsplit(":", 1)[0], weight)


def fed(policy: Any, candidates: list[Candidate], counts: Mapping[str, int]) -> Any:
    policy.set_servers(candidates)
    assert policy.apply_counts(policy.begin_refresh(), counts)
    return policy


def firsts(policy: Any, n: int) -> list[str]:
    """The first address of n successive allocations."""
    return [policy.allocate().split(b",", 1)[0].decode() for _ in range(n)]


def addresses(policy: Any) -> list[str]:
    return [c.address for c in policy.servers]


@pytest.fixture
def logged() -> Iterator[list[str]]:
    """Formatted twisted.logger events of mpush.services.refresher."""
    with log_lines("mpush.services.refresher") as lines:
        yield lines


def started(view: View, cache: Cache, policy: Any = None, **kw: Any) -> tuple[Refresher, Clock]:
    """A Refresher on a Clock, started; ``kw`` are its RefreshSchedule's fields."""
    clock = Clock()
    kw.setdefault("interval", 30.0)
    kw.setdefault("change_delay", 1.0)
    r = Refresher(policy or BalancePolicy(), view, cache, schedule=RefreshSchedule(**kw),
                  reactor=clock)
    r.startService()
    return r, clock


# ---------------------------------------------------------- BalancePolicy


def test_no_servers_means_none() -> None:
    p = BalancePolicy()
    assert p.allocate() is None and p.body is None and p.servers == ()
    fed(p, [cand("1.1.1.1:3000")], {})
    p.set_servers([])
    assert p.allocate() is None


def test_least_online_first_and_body_format() -> None:
    p = fed(
        BalancePolicy(),
        [cand("1.1.1.1:3000"), cand("2.2.2.2:3000"), cand("3.3.3.3:3001")],
        {"1.1.1.1": 50, "2.2.2.2": 7, "3.3.3.3": 20},
    )
    assert p.body == b"2.2.2.2:3000,3.3.3.3:3001,1.1.1.1:3000"
    # body does not count a handout; allocate does
    assert p.describe()[0].handed == 0
    assert p.allocate() == b"2.2.2.2:3000,3.3.3.3:3001,1.1.1.1:3000"
    assert p.describe()[0].handed == 1


def test_weight_divides_load() -> None:
    # 300 users on weight 4 (75 each) is lighter than 100 on weight 1
    p = fed(
        BalancePolicy(),
        [cand("1.1.1.1:3000", 1), cand("2.2.2.2:3000", 4)],
        {"1.1.1.1": 100, "2.2.2.2": 300},
    )
    assert addresses(p) == ["2.2.2.2:3000", "1.1.1.1:3000"]
    assert [s.load for s in p.describe()] == [75.0, 100.0]


def test_ties_broken_by_address_whatever_the_input_order() -> None:
    cs = [cand("9.9.9.9:3000"), cand("1.1.1.1:3002"), cand("1.1.1.1:3001"), cand("5.5.5.5:3000")]
    bodies = {fed(BalancePolicy(), order, {}).body for order in (cs, cs[::-1], cs[1:] + cs[:1])}
    assert bodies == {b"1.1.1.1:3001,1.1.1.1:3002,5.5.5.5:3000,9.9.9.9:3000"}


def test_handouts_move_the_head_down() -> None:
    p = fed(BalancePolicy(), [cand("1.1.1.1:3000"), cand("2.2.2.2:3000")], {"2.2.2.2": 2})
    # A: 0 -> 1 -> 2 (ties with B, A wins by address), then they alternate
    assert firsts(p, 6) == ["1.1.1.1:3000"] * 3 + ["2.2.2.2:3000", "1.1.1.1:3000", "2.2.2.2:3000"]
    assert {s.address: s.handed for s in p.describe()} == {"1.1.1.1:3000": 4, "2.2.2.2:3000": 2}


def test_weighted_handouts_in_proportion() -> None:
    p = fed(BalancePolicy(), [cand("1.1.1.1:3000", 1), cand("2.2.2.2:3000", 3)], {})
    got = firsts(p, 400)
    assert got.count("2.2.2.2:3000") == 300 and got.count("1.1.1.1:3000") == 100


def test_shared_ip_count_split_by_weight() -> None:
    p = fed(
        BalancePolicy(),
        [Candidate("1.1.1.1:3000", "1.1.1.1", 1), Candidate("1.1.1.1:3001", "1.1.1.1", 3),
         cand("2.2.2.2:3000")],
        {"1.1.1.1": 400, "2.2.2.2": 150},
    )
    online = {s.address: s.online for s in p.describe()}
    assert online == {"1.1.1.1:3000": 100.0, "1.1.1.1:3001": 300.0, "2.2.2.2:3000": 150.0}
    assert addresses(p) == ["1.1.1.1:3000", "1.1.1.1:3001", "2.2.2.2:3000"]


def test_missing_ip_counts_as_zero_and_garbage_too() -> None:
    p = fed(BalancePolicy(), [cand("1.1.1.1:3000"), cand("2.2.2.2:3000")], {"1.1.1.1": 5})
    assert addresses(p)[0] == "2.2.2.2:3000"
    p.apply_counts(p.begin_refresh(), {"1.1.1.1": -3, "2.2.2.2": "x"})  # type: ignore[dict-item]
    assert [s.online for s in p.describe()] == [0.0, 0.0]


def test_reconcile_handouts_before_and_during_refresh() -> None:
    p = fed(BalancePolicy(), [cand("1.1.1.1:3000"), cand("2.2.2.2:3000")], {})
    firsts(p, 4)  # 2 each, before the snapshot
    token = p.begin_refresh()
    assert dict(token.handouts) == {"1.1.1.1:3000": 2, "2.2.2.2:3000": 2}
    assert firsts(p, 3) == ["1.1.1.1:3000", "2.2.2.2:3000", "1.1.1.1:3000"]  # during
    # Redis already sees the 4 earlier clients (and, for A, one that
    # connected elsewhere); the 3 handed out during the refresh it may not.
    assert p.apply_counts(token, {"1.1.1.1": 3, "2.2.2.2": 2})
    state = {s.address: (s.online, s.handed) for s in p.describe()}
    # before: not counted twice (3, not 3 + 2); during: kept (2 and 1)
    assert state == {"1.1.1.1:3000": (3.0, 2), "2.2.2.2:3000": (2.0, 1)}


def test_token_applies_once_and_only_the_latest() -> None:
    p = fed(BalancePolicy(), [cand("1.1.1.1:3000")], {})
    firsts(p, 5)
    old = p.begin_refresh()
    new = p.begin_refresh()
    assert not p.apply_counts(old, {"1.1.1.1": 99})  # superseded: would subtract 5 twice
    assert p.apply_counts(new, {"1.1.1.1": 5})
    assert not p.apply_counts(new, {"1.1.1.1": 5})
    assert [(s.online, s.handed) for s in p.describe()] == [(5.0, 0)]


def test_server_readded_during_refresh_never_goes_negative() -> None:
    p = fed(BalancePolicy(), [cand("1.1.1.1:3000"), cand("2.2.2.2:3000")], {})
    firsts(p, 6)
    token = p.begin_refresh()
    p.set_servers([cand("2.2.2.2:3000")])
    p.set_servers([cand("1.1.1.1:3000"), cand("2.2.2.2:3000")])  # A back, from 0
    firsts(p, 1)
    p.apply_counts(token, {"1.1.1.1": 3, "2.2.2.2": 3})
    assert all(s.handed >= 0 for s in p.describe())


def test_set_servers_keeps_state_and_splits_known_ip_for_newcomers() -> None:
    p = fed(
        BalancePolicy(),
        [cand("1.1.1.1:3000"), cand("2.2.2.2:3000")],
        {"1.1.1.1": 10, "2.2.2.2": 40},
    )
    firsts(p, 3)
    p.set_servers([
        cand("1.1.1.1:3000"), cand("2.2.2.2:3000"),
        Candidate("2.2.2.2:3001", "2.2.2.2", 1.0),  # shares a known IP
        cand("3.3.3.3:3000"),  # a new IP: no count yet
    ])
    state = {s.address: (s.online, s.handed) for s in p.describe()}
    assert state == {
        "1.1.1.1:3000": (10.0, 3),
        "2.2.2.2:3000": (20.0, 0),
        "2.2.2.2:3001": (20.0, 0),
        "3.3.3.3:3000": (0.0, 0),
    }
    assert addresses(p)[0] == "3.3.3.3:3000"


def test_duplicate_addresses_served_once() -> None:
    p = fed(BalancePolicy(), [cand("1.1.1.1:3000"), cand("1.1.1.1:3000", 5)], {})
    assert p.body == b"1.1.1.1:3000" and p.servers[0].weight == 1


def test_candidate_rejects_bad_weight() -> None:
    for w in (0, -1, float("nan"), float("inf")):
        with pytest.raises(ValueError):
            Candidate("1.1.1.1:3000", "1.1.1.1", w)


# ------------------------------------------------------------- JavaPolicy


def test_java_policy_sorts_at_refresh_only() -> None:
    j = fed(
        JavaPolicy(),
        [cand("3.3.3.3:3000"), cand("1.1.1.1:3000", 4), cand("2.2.2.2:3000")],
        {"1.1.1.1": 30, "2.2.2.2": 20, "3.3.3.3": 20},
    )
    # ascending by count, weight ignored, ties in candidate order (stable)
    assert j.body == b"3.3.3.3:3000,2.2.2.2:3000,1.1.1.1:3000"
    assert {j.allocate() for _ in range(100)} == {j.body}  # herding: no handout counting
    j.apply_counts(j.begin_refresh(), {"1.1.1.1": 1, "2.2.2.2": 20, "3.3.3.3": 120})
    assert addresses(j) == ["1.1.1.1:3000", "2.2.2.2:3000", "3.3.3.3:3000"]


def test_java_policy_gives_each_server_the_whole_ip_count() -> None:
    j = fed(
        JavaPolicy(),
        [Candidate("1.1.1.1:3000", "1.1.1.1"), Candidate("1.1.1.1:3001", "1.1.1.1"),
         cand("2.2.2.2:3000")],
        {"1.1.1.1": 100, "2.2.2.2": 60},
    )
    assert addresses(j)[0] == "2.2.2.2:3000"
    assert JavaPolicy().allocate() is None


# --------------------------------------------------------------- Refresher


def test_refresh_at_start_uses_public_ip_for_address_and_key() -> None:
    view = View(
        Node("a", "10.0.0.1", 3000, {"public_ip": "1.2.3.4"}),
        Node("b", "10.0.0.2", 3001, {"public_ip": ""}),  # empty: fall back to host
    )
    cache = Cache({"1.2.3.4": 5, "10.0.0.2": 1})
    r, _ = started(view, cache)
    assert cache.calls == [["1.2.3.4", "10.0.0.2"]]
    assert r.policy.body == b"10.0.0.2:3001,1.2.3.4:3000"
    assert r.policy.servers[1] == Candidate("1.2.3.4:3000", "1.2.3.4", 1.0)
    assert r.last_success == 0.0 and r.last_error is None and not r.stale


def test_periodic_refresh_and_weights_from_nodes() -> None:
    view = View(Node("a", "1.1.1.1", attrs={"weight": 3}), Node("b", "2.2.2.2"))
    cache = Cache({"1.1.1.1": 0, "2.2.2.2": 0})
    r, clock = started(view, cache, interval=30.0)
    assert r.policy.servers[0].weight == 3.0
    clock.advance(29.9)
    assert len(cache.calls) == 1
    clock.advance(0.1)
    assert len(cache.calls) == 2 and r.last_success == 30.0


def test_empty_view_keeps_last_list_and_flags_stale(logged: list[str]) -> None:
    view = View(Node("a", "1.1.1.1"))
    cache = Cache({"1.1.1.1": 3})
    r, clock = started(view, cache)
    view.set()
    clock.advance(1.0)
    clock.advance(30.0)
    assert r.stale and r.policy.allocate() == b"1.1.1.1:3000"
    assert len([m for m in logged if "stale" in m]) == 1
    assert len(cache.calls) == 3  # counts of the kept list still refreshed
    view.set(Node("b", "2.2.2.2"))
    clock.advance(1.0)
    assert not r.stale and r.policy.body == b"2.2.2.2:3000"
    assert len([m for m in logged if "fresh again" in m]) == 1


def test_empty_view_before_any_server_serves_nothing(logged: list[str]) -> None:
    cache = Cache()
    r, _ = started(View(), cache)
    assert r.policy.allocate() is None and not r.stale and cache.calls == []
    assert logged == []


def test_redis_failure_keeps_order_loop_continues_logged_once(logged: list[str]) -> None:
    view = View(Node("a", "1.1.1.1"), Node("b", "2.2.2.2"))
    cache = Cache({"1.1.1.1": 10, "2.2.2.2": 50})
    r, clock = started(view, cache)
    cache.error = ConnectionError("redis down")
    clock.advance(30.0)
    clock.advance(30.0)
    assert len(cache.calls) == 3  # the loop kept running
    assert r.last_error == "redis down" and r.last_success == 0.0
    assert addresses(r.policy) == ["1.1.1.1:3000", "2.2.2.2:3000"]
    # a server added meanwhile still shows; the known ones keep their counts
    view.set(Node("a", "1.1.1.1"), Node("b", "2.2.2.2"), Node("c", "3.3.3.3"))
    clock.advance(1.0)
    assert addresses(r.policy) == ["3.3.3.3:3000", "1.1.1.1:3000", "2.2.2.2:3000"]
    assert [s.online for s in r.policy.describe()] == [0.0, 10.0, 50.0]
    assert len([m for m in logged if "redis down" in m]) == 1
    cache.error = None
    cache.counts["3.3.3.3"] = 99
    clock.advance(30.0)
    assert r.last_error is None and r.last_success == 91.0
    assert addresses(r.policy)[-1] == "3.3.3.3:3000"
    assert len([m for m in logged if "back" in m]) == 1


def test_handouts_survive_a_failed_refresh() -> None:
    view = View(Node("a", "1.1.1.1"), Node("b", "2.2.2.2"))
    cache = Cache({"1.1.1.1": 0, "2.2.2.2": 0})
    r, clock = started(view, cache)
    firsts(r.policy, 10)
    cache.error = ConnectionError("down")
    clock.advance(30.0)
    assert sum(s.handed for s in r.policy.describe()) == 10


def test_change_events_coalesced() -> None:
    view = View(Node("a", "1.1.1.1"))
    cache = Cache()
    r, clock = started(view, cache, change_delay=2.0)
    reads = view.reads
    for i in range(10):  # 10 changes within 1 s
        view.set(*[Node(f"n{k}", f"1.1.1.{k}") for k in range(i + 1)])
        clock.advance(0.1)
    assert view.reads == reads  # not yet: waiting for the burst to settle
    clock.advance(1.0)  # 2 s after the first event
    assert view.reads == reads + 1 and len(cache.calls) == 2
    assert len(r.policy.servers) == 10  # the one refresh saw the last state
    view.notify("gs")  # gateway changes do not matter
    clock.advance(5.0)
    assert view.reads == reads + 1


def test_no_concurrent_refreshes() -> None:
    view = View(Node("a", "1.1.1.1"))
    cache = Cache()
    cache.manual = True
    r, clock = started(view, cache, interval=10.0, timeout=100.0)
    assert len(cache.pending) == 1
    done = [r.refresh() for _ in range(3)]
    view.set(Node("b", "2.2.2.2"))
    clock.advance(25.0)  # the loop ticks twice and the change comes due: still one in flight
    assert len(cache.pending) == 1 and not any(d.called for d in done)
    cache.pending[0].callback({})
    assert len(cache.pending) == 2  # exactly one more, reading the newest view
    assert cache.calls[-1] == ["2.2.2.2"]
    assert not any(d.called for d in done)
    cache.pending[1].callback({})
    assert all(d.called for d in done) and len(cache.pending) == 2


def test_hung_redis_times_out_and_refreshing_resumes() -> None:
    view = View(Node("a", "1.1.1.1"))
    cache = Cache()
    cache.manual = True
    r, clock = started(view, cache, interval=30.0, timeout=5.0)
    clock.advance(5.0)
    assert cache.pending[0].called and r.last_error is not None
    clock.advance(25.0)
    assert len(cache.pending) == 2


def test_stop_cancels_everything_quietly(logged: list[str]) -> None:
    view = View(Node("a", "1.1.1.1"))
    cache = Cache()
    cache.manual = True
    r, clock = started(view, cache)
    view.set(Node("b", "2.2.2.2"))
    r.stopService()
    assert clock.getDelayedCalls() == []
    assert cache.pending[0].called  # cancelled
    assert r.last_error is None and logged == []
    assert view.listeners == []  # unsubscribed: events after stop reach nobody
    view.set(Node("c", "3.3.3.3"))
    clock.advance(100.0)
    assert clock.getDelayedCalls() == [] and len(cache.calls) == 1
    r.startService()  # and it starts again
    assert len(cache.calls) == 2 and r.running
    assert len(view.listeners) == 1  # subscribed once, not once per start
    cache.manual = False
    cache.pending[1].callback({})
    view.set(Node("d", "4.4.4.4"))  # and it follows the view again
    clock.advance(1.0)  # the change delay
    assert cache.calls[2:] == [["4.4.4.4"]]
    assert [c.address for c in r.policy.servers] == ["4.4.4.4:3000"]
    r.stopService()
    assert view.listeners == [] and clock.getDelayedCalls() == []


def test_an_event_delivered_after_stop_is_harmless() -> None:
    # ZkWatcher calls the listeners of a copy of its list: one removed during
    # a dispatch may still be called once.
    view = View(Node("a", "1.1.1.1"))
    r, clock = started(view, Cache())
    listener = view.listeners[0]
    r.stopService()
    listener("cs", "updated", None)
    assert clock.getDelayedCalls() == []


def test_the_schedule_defaults_and_checks() -> None:
    assert DEFAULT_REFRESH_INTERVAL == 30.0
    schedule = RefreshSchedule()
    assert (schedule.interval, schedule.change_delay) == (DEFAULT_REFRESH_INTERVAL,
                                                         DEFAULT_CHANGE_DELAY)
    assert schedule.fetch_timeout == DEFAULT_REFRESH_INTERVAL  # no timeout: the interval
    assert RefreshSchedule(interval=10.0, timeout=3.0).fetch_timeout == 3.0
    assert Refresher(BalancePolicy(), View(), Cache(), reactor=Clock()).schedule == schedule
    for bad in ({"interval": 0}, {"change_delay": -1}, {"timeout": 0},
                {"interval": float("nan")}):
        with pytest.raises(ValueError):
            RefreshSchedule(**bad)


# -------------------------------------------------------------- properties

WEIGHTS = st.sampled_from([0.5, 1.0, 2.0, 3.0, 4.0])  # sums stay exact in binary


@st.composite
def servers(draw: st.DrawFn) -> list[Candidate]:
    n = draw(st.integers(1, 8))
    ips = draw(st.lists(st.integers(1, 4), min_size=n, max_size=n))  # some IPs shared
    return [
        Candidate(f"10.0.0.{ip}:{3000 + k}", f"10.0.0.{ip}", draw(WEIGHTS))
        for k, ip in enumerate(ips)
    ]


class Model:
    """The policy done the slow, obvious way."""

    def __init__(self, cs: list[Candidate]) -> None:
        self.cs = cs
        self.online = {c.address: 0.0 for c in cs}
        self.handed = dict.fromkeys(self.online, 0)

    def order(self) -> list[str]:
        w = {c.address: c.weight for c in self.cs}
        return sorted(w, key=lambda a: ((self.online[a] + self.handed[a]) / w[a], a))

    def allocate(self) -> bytes:
        body = ",".join(self.order()).encode()
        self.handed[self.order()[0]] += 1
        return body

    def apply(self, snapshot: dict[str, int], counts: dict[str, int]) -> None:
        for a, n in snapshot.items():
            self.handed[a] -= n
        for c in self.cs:
            group = [g for g in self.cs if g.ip == c.ip]
            self.online[c.address] = counts.get(c.ip, 0) * c.weight / sum(g.weight for g in group)


OPS = st.lists(
    st.one_of(
        st.tuples(st.just("alloc"), st.integers(1, 30)),
        st.tuples(
            st.just("refresh"),
            st.dictionaries(st.sampled_from([f"10.0.0.{i}" for i in range(1, 5)]),
                            st.integers(0, 200)),
            st.integers(0, 10),
        ),
    ),
    max_size=12,
)


@settings(max_examples=200, deadline=None)
@given(servers(), OPS)
def test_policy_matches_the_obvious_model(cs: list[Candidate], ops: list[Any]) -> None:
    check_against_the_model(cs, ops)


MANY_IPS = [f"10.0.1.{i}" for i in range(1, 61)]


@settings(max_examples=100, deadline=None)
@given(st.lists(st.sampled_from(MANY_IPS), min_size=9, max_size=60, unique=True),
       st.lists(st.one_of(
           st.tuples(st.just("alloc"), st.integers(1, 30)),
           st.tuples(st.just("refresh"), st.dictionaries(st.sampled_from(MANY_IPS),
                                                         st.integers(0, 200), max_size=3),
                     st.integers(0, 10))), max_size=12))
def test_a_large_list_with_few_changes_matches_the_obvious_model(
    ips: list[str], ops: list[Any],
) -> None:
    # Few servers change per refresh: the policy moves them instead of sorting all.
    counts = {ip: 7 for ip in MANY_IPS}
    full = []
    for op in ops:
        if op[0] == "refresh":
            counts = {**counts, **op[1]}
            op = ("refresh", counts, op[2])
        full.append(op)
    check_against_the_model([Candidate(f"{ip}:3000", ip) for ip in ips], full)


def check_against_the_model(cs: list[Candidate], ops: list[Any]) -> None:
    p, m = BalancePolicy(), Model(cs)
    p.set_servers(cs)
    for op in ops:
        if op[0] == "alloc":
            for _ in range(op[1]):
                assert p.allocate() == m.allocate()
        else:
            _, counts, during = op
            token = p.begin_refresh()
            snapshot = dict(m.handed)
            for _ in range(during):
                assert p.allocate() == m.allocate()
            p.apply_counts(token, counts)
            m.apply(snapshot, counts)
        assert p.body == ",".join(m.order()).encode()
        assert {s.address: s.handed for s in p.describe()} == m.handed


@settings(max_examples=200, deadline=None)
@given(servers(), st.integers(0, 500))
def test_from_equal_counts_the_load_gap_stays_within_one_handout(
    cs: list[Candidate], n: int
) -> None:
    p = BalancePolicy()
    p.set_servers(cs)
    for _ in range(n):
        p.allocate()
    loads = [s.load for s in p.describe()]
    assert max(loads) - min(loads) <= 1 / min(c.weight for c in cs) + 1e-9
    assert loads == sorted(loads)
