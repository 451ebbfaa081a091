"""The status snapshot (mpush.services.status) on the /health fakes of tests/fakes.py."""

from __future__ import annotations

import dataclasses

import pytest

from mpush.services.status import GatewaysStatus, GatewayStatus, Status
from tests.fakes import SECRET, FakeDrain, Fakes


def status_of(fakes: Fakes) -> Status:
    return Status(fakes.zk, fakes.cache, fakes.gateways, fakes.refresher, fakes.policy,
                  drain=fakes.drain, clock=fakes.clock)


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
    assert status.missing == ("zk", "redis", "gateways", "refresher", "policy")
    status.drain = FakeDrain(draining=True)
    assert status.snapshot().draining is True
