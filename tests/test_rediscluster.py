"""Pure tests of the Redis Cluster layer: CRC16, key slots, redirects, routing
(with fake nodes; the real-server tests are in test_cache.py)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from twisted.internet.defer import Deferred, fail, succeed
from txredisapi import ConnectionError as RedisConnectionError
from txredisapi import ResponseError

from mpush.cluster.redis_cluster import (
    SLOTS,
    ClusterRouter,
    ClusterUnavailable,
    Redirect,
    command_key,
    crc16,
    hash_tag,
    key_slot,
    parse_cluster_slots,
    parse_redirect,
)

# -- CRC16 and slots: vectors from the Redis Cluster spec and redis-cli


def test_crc16_check_value() -> None:
    # The standard check value of CRC-16/XMODEM.
    assert crc16(b"123456789") == 0x31C3
    assert crc16(b"") == 0


@pytest.mark.parametrize(
    ("key", "slot"),
    [("foo", 12182), ("bar", 5061), ("hello", 866), ("user1000", 3443), ("", 0)],
)
def test_known_slots(key: str, slot: int) -> None:
    assert key_slot(key) == slot
    assert key_slot(key.encode()) == slot


def test_hash_tags() -> None:
    assert key_slot("{user1000}.following") == key_slot("{user1000}.followers")
    assert key_slot("{user1000}.following") == key_slot("user1000")
    # Only the first {...} counts ...
    assert hash_tag(b"foo{bar}{zap}") == b"bar"
    # ... from the first { to the first } after it ...
    assert hash_tag(b"foo{{bar}}zap") == b"{bar"
    # ... and an empty one means the whole key.
    assert hash_tag(b"foo{}{bar}") == b"foo{}{bar}"
    assert hash_tag(b"foo{bar") == b"foo{bar"
    assert hash_tag(b"}foo{x}") == b"x"


def test_non_ascii_keys_hash_their_utf8_bytes() -> None:
    assert key_slot("mp:ur:用户") == crc16("mp:ur:用户".encode()) % SLOTS


@given(st.binary(max_size=64))
def test_slot_in_range_and_tag_is_a_substring(key: bytes) -> None:
    assert 0 <= key_slot(key) < SLOTS
    assert hash_tag(key) in key


@given(st.text(alphabet="ab{}", max_size=12), st.text(min_size=1, max_size=8))
def test_tagged_keys_share_the_tag_slot(prefix: str, tag: str) -> None:
    if "{" in prefix or "}" in tag:
        return  # another tag would come first
    assert key_slot(f"{prefix}{{{tag}}}rest") == key_slot(tag)


# -- replies


def test_parse_redirect() -> None:
    assert parse_redirect("MOVED 3999 127.0.0.1:6381") == Redirect(
        "MOVED", 3999, ("127.0.0.1", 6381)
    )
    assert parse_redirect("ASK 1 10.0.0.2:7000") == Redirect("ASK", 1, ("10.0.0.2", 7000))
    # Unknown endpoint: the host of the node that replied.
    assert parse_redirect("MOVED 5 :7001", ("10.1.1.1", 7000)) == Redirect(
        "MOVED", 5, ("10.1.1.1", 7001)
    )
    assert parse_redirect("MOVED 5 ::1:7001") == Redirect("MOVED", 5, ("::1", 7001))
    for other in ("WRONGTYPE Operation", "MOVED", "MOVED x 1.2.3.4:5", "ASK 1 nohost"):
        assert parse_redirect(other) is None


def test_parse_cluster_slots() -> None:
    reply = [
        [0, 99, ["", 7000, "id-a", {}]],
        [100, 16383, ["10.0.0.2", 7001, "id-b"], ["10.0.0.3", 7002, "id-c"]],
    ]
    table = parse_cluster_slots(reply, ("10.0.0.1", 7000))
    assert table[0] == table[99] == ("10.0.0.1", 7000)  # "" = the node asked
    assert table[100] == table[16383] == ("10.0.0.2", 7001)  # master, not replica
    with pytest.raises(ValueError):
        parse_cluster_slots("ERR", ("h", 1))


def test_command_key() -> None:
    assert command_key(("ZCARD", "mp:oul:1.2.3.4")) == "mp:oul:1.2.3.4"
    assert command_key(("PING",)) is None


# -- routing with fake nodes


A, B, C = ("10.0.0.1", 7000), ("10.0.0.2", 7001), ("10.0.0.3", 7002)


class FakeNode:
    """Answers from a script: handler(args, asking) -> value or exception."""

    def __init__(self, cluster: FakeCluster, address: tuple[str, int]) -> None:
        self.cluster = cluster
        self.address = address
        self.calls: list[tuple[tuple[Any, ...], bool]] = []

    def execute(self, *args: Any, asking: bool = False) -> Deferred[Any]:
        self.calls.append((args, asking))
        if args[:2] == ("CLUSTER", "SLOTS"):
            self.cluster.slot_queries += 1
            if self.cluster.pending_slots is not None:
                return self.cluster.pending_slots
            return succeed(self.cluster.slots_reply())
        result = self.cluster.handler(self.address, args, asking)
        return fail(result) if isinstance(result, Exception) else succeed(result)


class FakeCluster:
    def __init__(self) -> None:
        self.owner = {s: (A if s < 5000 else B if s < 10000 else C) for s in range(SLOTS)}
        self.nodes: dict[tuple[str, int], FakeNode] = {}
        self.slot_queries = 0
        self.pending_slots: Deferred[Any] | None = None
        self.handler = self.default_handler

    def node(self, address: tuple[str, int]) -> FakeNode:
        return self.nodes.setdefault(address, FakeNode(self, address))

    def slots_reply(self) -> list[Any]:
        out: list[Any] = []
        for s in range(SLOTS):
            addr = self.owner[s]
            if out and out[-1][2][:2] == list(addr) and out[-1][1] == s - 1:
                out[-1][1] = s
            else:
                out.append([s, s, [addr[0], addr[1], "id"]])
        return out

    def default_handler(self, address: Any, args: tuple[Any, ...], asking: bool) -> Any:
        slot = key_slot(args[1])
        if self.owner[slot] != address:
            o = self.owner[slot]
            return ResponseError(f"MOVED {slot} {o[0]}:{o[1]}")
        return f"{args[1]}@{address[1]}"


def result_of(d: Deferred[Any]) -> Any:
    out: list[Any] = []
    d.addBoth(out.append)
    assert out, "the Deferred has not fired"
    return out[0]


def test_routes_by_slot_after_one_map_load() -> None:
    fc = FakeCluster()
    router = ClusterRouter([A], fc.node)
    for key in ("foo", "bar", "hello"):
        owner = fc.owner[key_slot(key)]
        assert result_of(router.execute("GET", key)) == f"{key}@{owner[1]}"
    assert fc.slot_queries == 1
    assert router.masters() == [A, B, C]


def test_concurrent_first_calls_share_one_map_load() -> None:
    fc = FakeCluster()
    fc.pending_slots = Deferred()
    router = ClusterRouter([A, B], fc.node)
    ds = [router.execute("GET", f"k{i}") for i in range(50)]
    assert fc.slot_queries == 1
    assert not any(d.called for d in ds)
    fc.pending_slots.callback(fc.slots_reply())
    assert [result_of(d).split("@")[0] for d in ds] == [f"k{i}" for i in range(50)]


def test_moved_updates_the_map_and_retries_at_the_new_owner() -> None:
    fc = FakeCluster()
    router = ClusterRouter([A], fc.node)
    slot = key_slot("foo")  # 12182: on C
    result_of(router.execute("GET", "x"))  # map loaded
    fc.owner[slot] = A  # resharded behind the router's back
    queries = fc.slot_queries
    assert result_of(router.execute("GET", "foo")) == "foo@7000"
    assert fc.node(C).calls[-1] == (("GET", "foo"), False)
    assert router.node_for_slot(slot) == A
    assert fc.slot_queries == queries + 1  # and the whole map was reloaded


def test_ask_sends_asking_to_the_target_and_keeps_the_map() -> None:
    fc = FakeCluster()
    slot = key_slot("foo")

    def handler(address: Any, args: tuple[Any, ...], asking: bool) -> Any:
        if address == C:
            return ResponseError(f"ASK {slot} {B[0]}:{B[1]}")
        if address == B and asking:
            return "migrated-value"
        return ResponseError(f"MOVED {slot} {C[0]}:{C[1]}")

    router = ClusterRouter([A], fc.node)
    result_of(router.execute("GET", "x"))
    fc.handler = handler
    queries = fc.slot_queries
    assert result_of(router.execute("GET", "foo")) == "migrated-value"
    assert fc.node(B).calls[-1] == (("GET", "foo"), True)
    assert router.node_for_slot(slot) == C
    assert fc.slot_queries == queries


def test_redirect_loops_are_bounded() -> None:
    fc = FakeCluster()
    router = ClusterRouter([A], fc.node, max_redirects=3)
    result_of(router.execute("GET", "x"))

    def ping_pong(address: Any, args: tuple[Any, ...], asking: bool) -> Any:
        other = B if address == A else A
        return ResponseError(f"MOVED {key_slot(args[1])} {other[0]}:{other[1]}")

    fc.handler = ping_pong
    failure = result_of(router.execute("GET", "foo"))
    assert failure.check(ClusterUnavailable)
    assert "redirects" in failure.getErrorMessage()
    sent = [c for n in fc.nodes.values() for c in n.calls if c[0] == ("GET", "foo")]
    assert len(sent) == 4  # the first try + 3 redirects, then it gives up


def test_other_errors_pass_through_and_connection_errors_refresh() -> None:
    fc = FakeCluster()
    router = ClusterRouter([A], fc.node)
    result_of(router.execute("GET", "x"))
    fc.handler = lambda a, args, asking: ResponseError("WRONGTYPE Operation against a key")
    assert result_of(router.execute("GET", "foo")).check(ResponseError)
    fc.handler = lambda a, args, asking: RedisConnectionError("Lost connection")
    queries = fc.slot_queries
    assert result_of(router.execute("GET", "foo")).check(RedisConnectionError)
    assert fc.slot_queries == queries + 1


def test_no_node_gives_a_map() -> None:
    def down(address: tuple[str, int]) -> Any:
        class Down:
            def execute(self, *args: Any, asking: bool = False) -> Deferred[Any]:
                return fail(RedisConnectionError(f"{address[1]} refused"))

        return Down()

    router = ClusterRouter([A, B], down)
    failure = result_of(router.execute("GET", "foo"))
    assert failure.check(ClusterUnavailable)
    assert "7000 refused" in failure.getErrorMessage()
    assert "7001 refused" in failure.getErrorMessage()
    assert not router.loaded
