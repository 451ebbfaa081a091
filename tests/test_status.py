"""The status snapshot (mpush.services.status) on the /health fakes of tests/fakes.py
and a real balance policy."""

from __future__ import annotations

import dataclasses

import pytest

from mpush.balance import BalancePolicy, Candidate, ServerStatus
from mpush.services.status import GatewaysStatus, GatewayStatus, ServerRow, Status
from tests.fakes import SECRET, FakeDrain, Fakes, Node


def status_of(fakes: Fakes) -> Status:
    return fakes.status()


def test_a_snapshot_reads_every_part_once_into_frozen_values() -> None:
    fakes = Fakes()
    snap = status_of(fakes).snapshot()
    assert snap.draining is False
    assert (snap.allocation.servers, snap.allocation.serving) == (2, True)  # type: ignore[union-attr]
    assert snap.zookeeper is not None and snap.zookeeper.connection_servers == 2
    assert snap.refresh is not None and snap.refresh.last_success_age == 10.0
    with pytest.raises(dataclasses.FrozenInstanceError):
        snap.draining = True  # type: ignore[misc]
    # Later changes show in the next snapshot, not in this one.
    fakes.zk.state = "lost"
    assert snap.zookeeper.state == "connected"
    assert status_of(fakes).snapshot().zookeeper.state == "lost"  # type: ignore[union-attr]


def test_gateways_are_aggregated_once_for_both_readers() -> None:
    gateways = GatewaysStatus.of({
        "a:1": {"connected": 2, "configured": 2, "pending": 3},
        "b:1": {"connected": 1, "configured": 2, "pending": 0, "unanswering": 2},
        "c:1": {"connected": 0, "configured": 2},
    })
    assert gateways.servers[1] == GatewayStatus("b:1", 1, 2, 0, 2)
    assert (gateways.known, gateways.up, gateways.down, gateways.partial, gateways.silent) == (
        3, 2, 1, 1, 1)
    assert (gateways.connections, gateways.configured_connections, gateways.pending) == (3, 6, 3)


def test_errors_are_scrubbed_of_the_redis_password() -> None:
    fakes = Fakes()
    fakes.cache.last_error = f"AUTH {SECRET} refused"
    fakes.refresher.last_error = f"with {SECRET}"
    snap = status_of(fakes).snapshot()
    assert snap.redis is not None and snap.redis.last_error == "AUTH *** refused"
    assert snap.refresh is not None and snap.refresh.last_error == "with ***"


def test_parts_not_given_are_none_and_the_drain_can_come_later() -> None:
    status = Status()
    snap = status.snapshot()
    assert snap == type(snap)(None, None, None, None, None, None)
    assert status.missing == ("zk", "redis", "gateways", "refresher", "policy", "ws_policy",
                              "ws_refresher")
    status.drain = FakeDrain(draining=True)
    assert status.snapshot().draining is True


def test_allocation_rows_are_the_policys_servers_in_get_order_with_their_nodes() -> None:
    fakes = Fakes()
    policy = BalancePolicy()
    policy.set_servers([Candidate("10.0.0.5:3000", "10.0.0.5", 2.0),
                        Candidate("10.0.0.6:3000", "10.0.0.6"),
                        Candidate("1.2.3.4:3000", "1.2.3.4"),
                        Candidate("10.0.0.9:3000", "10.0.0.9")])
    token = policy.begin_refresh()
    policy.apply_counts(token, {"10.0.0.5": 10, "10.0.0.6": 2, "1.2.3.4": 7, "10.0.0.9": 9})
    policy.allocate()  # to 10.0.0.6 (load 2 -> 3)
    fakes.zk.cs = {
        "cs1": Node("cs1", "10.0.0.5", since=50.0),
        "cs2": Node("cs2", "10.0.0.6", since=60.0),
        # A restarted server's old node, not expired yet: same address, earlier.
        "cs0": Node("cs0", "10.0.0.6", since=40.0),
        "nat": Node("nat", "192.168.0.7", attrs={"public_ip": "1.2.3.4"}, since=70.0),
        # 10.0.0.9 left ZooKeeper; the list still serves it (kept, or stale).
    }
    fakes.policy = policy  # type: ignore[assignment]
    allocation = status_of(fakes).snapshot().allocation
    assert allocation is not None and allocation.servers == 4
    assert ",".join(r.address for r in allocation.rows).encode() == policy.body
    assert allocation.rows == (
        ServerRow(1, "10.0.0.6:3000", "10.0.0.6", 1.0, 2.0, 1, 3.0, 1, 0, ("cs0", "cs2"),
                  "10.0.0.6:3000", 40.0),
        ServerRow(2, "10.0.0.5:3000", "10.0.0.5", 2.0, 10.0, 0, 5.0, 0, 0, ("cs1",),
                  "10.0.0.5:3000", 50.0),
        ServerRow(3, "1.2.3.4:3000", "1.2.3.4", 1.0, 7.0, 0, 7.0, 0, 0, ("nat",),
                  "192.168.0.7:3000", 70.0),
        ServerRow(4, "10.0.0.9:3000", "10.0.0.9", 1.0, 9.0, 0, 9.0, 0, 0, (), None, None),
    )
    # Without rows (what /health asks): the same figures, no per-server work.
    lean = status_of(fakes).snapshot(rows=False).allocation
    assert lean is not None and (lean.servers, lean.serving, lean.rows) == (4, True, ())


def test_a_policy_without_loads_has_no_rows_and_the_other_new_fields() -> None:
    fakes = Fakes()
    fakes.zk.last_error = "cannot connect to 127.0.0.1:2999: Connection refused"
    fakes.gateways.servers["10.0.0.6:3001"]["last_error"] = "cannot connect: refused"
    snap = status_of(fakes).snapshot()
    assert snap.allocation is not None and snap.allocation.rows == ()  # FakePolicy
    assert snap.zookeeper is not None and snap.zookeeper.last_error == fakes.zk.last_error
    assert snap.gateways is not None
    assert [g.last_error for g in snap.gateways.servers] == [None, "cannot connect: refused"]
    assert snap.refresh is not None and snap.refresh.last_success == 90.0


def test_a_row_takes_the_policys_figures_field_for_field() -> None:
    # ServerRow.rows copies a ServerStatus into each row by position.
    assert ServerRow._fields[1:9] == ServerStatus._fields
