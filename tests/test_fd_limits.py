"""The open-file limit raised at start, its share-out, the listen backlog and the
gateway pool's share (pure unit tests: injected rlimit calls, MemoryReactor)."""

from __future__ import annotations

import resource
from pathlib import Path
from typing import Any

import pytest
from twisted.internet.testing import MemoryReactorClock
from twisted.logger import LogEvent
from twisted.web.server import Site

from mpush.cluster.gateways import GatewayPool, GatewayPoolOptions
from mpush.daemon import fd_limits
from mpush.daemon.fd_limits import (
    RESERVE,
    FdBudget,
    effective_backlog,
    fd_budget,
    raise_open_file_limit,
)
from mpush.daemon.listener import DEFAULT_BACKLOG, WebService
from mpush.web.root import AdminRoot
from tests.gateway_fakes import FakeView, logs, warnings_about

__all__ = ["logs"]  # the fixture, used by name

NOFILE = resource.RLIMIT_NOFILE


class Limits:
    """getrlimit/setrlimit over a pair of numbers; ``refuse`` makes setrlimit fail."""

    def __init__(self, soft: int, hard: int, refuse: bool = False) -> None:
        self.soft, self.hard, self.refuse = soft, hard, refuse
        self.calls: list[tuple[int, int]] = []

    def get(self, which: int) -> tuple[int, int]:
        assert which == NOFILE
        return self.soft, self.hard

    def set(self, which: int, limits: tuple[int, int]) -> None:
        assert which == NOFILE
        self.calls.append(limits)
        if self.refuse:
            raise ValueError("not allowed")
        self.soft, self.hard = limits


def info_lines(events: list[LogEvent], text: str) -> list[str]:
    from twisted.logger import formatEvent

    return [formatEvent(e) for e in events if text in formatEvent(e)]


def test_the_soft_limit_is_raised_to_the_hard_one_and_both_logged(
    logs: list[LogEvent],
) -> None:
    limits = Limits(1024, 524288)
    assert raise_open_file_limit(limits.get, limits.set) == 524288
    assert limits.calls == [(524288, 524288)]
    assert info_lines(logs, "open-file limit") == [
        "open-file limit: soft 1024 -> 524288, hard 524288"]


def test_an_unlimited_hard_limit_raises_the_soft_one_to_what_linux_allows() -> None:
    limits = Limits(1024, resource.RLIM_INFINITY)
    assert raise_open_file_limit(limits.get, limits.set) == fd_limits.UNLIMITED_TARGET
    assert limits.calls == [(fd_limits.UNLIMITED_TARGET, resource.RLIM_INFINITY)]


def test_a_soft_limit_at_the_hard_one_is_left_alone() -> None:
    limits = Limits(4096, 4096)
    assert raise_open_file_limit(limits.get, limits.set) == 4096
    assert limits.calls == []


def test_a_refused_raise_keeps_the_soft_limit_and_says_why(logs: list[LogEvent]) -> None:
    limits = Limits(1024, 4096, refuse=True)
    assert raise_open_file_limit(limits.get, limits.set) == 1024
    assert warnings_about(logs, "cannot raise the soft limit 1024 to 4096: not allowed")


def test_the_default_share_keeps_a_reserve_and_halves_the_rest() -> None:
    assert fd_budget(1024, None, 1) == FdBudget(http=(1024 - RESERVE) // 2,
                                                gateways=(1024 - RESERVE) // 2)
    # A large limit: HTTP is capped, the gateways get the rest.
    assert fd_budget(524288, None, 1) == FdBudget(http=10_000,
                                                  gateways=524288 - RESERVE - 10_000)


def test_a_configured_cap_leaves_the_rest_to_the_gateways() -> None:
    assert fd_budget(1024, 20, 1) == FdBudget(http=20, gateways=1024 - RESERVE - 20)


def test_a_cap_over_the_limit_is_lowered_to_leave_one_servers_connections(
    logs: list[LogEvent],
) -> None:
    assert fd_budget(1024, 5000, 4) == FdBudget(http=1024 - RESERVE - 4, gateways=4)
    assert warnings_about(logs, "mp.alloc.max-connections 5000 does not fit")


def test_the_backlog_is_capped_at_somaxconn_and_said(tmp_path: Path,
                                                      logs: list[LogEvent]) -> None:
    somaxconn = tmp_path / "somaxconn"
    somaxconn.write_text("4096\n")
    assert effective_backlog(1024, somaxconn) == 1024
    assert not warnings_about(logs, "somaxconn")
    somaxconn.write_text("128\n")
    assert effective_backlog(1024, somaxconn) == 128
    assert warnings_about(logs, "mp.alloc.listen-backlog 1024 is over net.core.somaxconn 128")
    assert effective_backlog(1024, tmp_path / "missing") == 1024


class ListeningReactor(MemoryReactorClock):
    """Records listenTCP (as MemoryReactor does) and returns a port the listener can pause."""

    def listenTCP(self, *args: Any, **kwargs: Any) -> Any:
        port = super().listenTCP(*args, **kwargs)
        port.stopReading = port.startReading = lambda: None
        return port


@pytest.mark.parametrize("backlog", [None, 3000])
def test_the_listener_listens_with_the_configured_backlog(backlog: int | None) -> None:
    reactor = ListeningReactor()
    kwargs = {} if backlog is None else {"backlog": backlog}
    service = WebService(Site(AdminRoot()), 8080, interface="127.0.0.1", reactor=reactor,
                         **kwargs)
    service.privilegedStartService()
    (port, _, listened_backlog, interface), = reactor.tcpServers
    assert (port, interface) == (8080, "127.0.0.1")
    assert listened_backlog == (DEFAULT_BACKLOG if backlog is None else backlog)
    assert DEFAULT_BACKLOG >= 1024


# ------------------------------------------------------------- the gateway pool


def short_pool(view: FakeView, reactor: MemoryReactorClock) -> GatewayPool:
    """Four servers of two connections each, a budget of five: started and short."""
    options = GatewayPoolOptions(connections_per_server=2, removal_grace=0, max_connections=5)
    pool = GatewayPool(view, options=options, reactor=reactor)
    pool.startService()
    for i in range(4):
        view.put(f"n{i}", f"127.0.0.1:{4000 + i}")
    return pool


def configured(pool: GatewayPool) -> dict[str, object]:
    return {address: s["configured"] for address, s in pool.status().items()}


def test_the_pool_opens_only_what_its_budget_allows_and_says_so_once(
    logs: list[LogEvent],
) -> None:
    reactor, view = MemoryReactorClock(), FakeView()
    pool = short_pool(view, reactor)
    assert len(reactor.tcpClients) == 5  # connection attempts: never more than the budget
    assert configured(pool) == {"127.0.0.1:4000": 2, "127.0.0.1:4001": 2,
                                "127.0.0.1:4002": 1, "127.0.0.1:4003": 0}
    assert len(warnings_about(logs, "the budget of 5")) == 1
    pool.stopService()


def test_a_closed_server_gives_its_connections_to_servers_short_of_them(
    logs: list[LogEvent],
) -> None:
    reactor, view = MemoryReactorClock(), FakeView()
    pool = short_pool(view, reactor)
    view.remove("n0")
    assert configured(pool) == {"127.0.0.1:4001": 2, "127.0.0.1:4002": 2,
                                "127.0.0.1:4003": 1}
    view.remove("n1")
    assert configured(pool) == {"127.0.0.1:4002": 2, "127.0.0.1:4003": 2}
    # Made up: the next shortfall is said again.
    for i in range(4, 6):
        view.put(f"n{i}", f"127.0.0.1:{4000 + i}")
    assert len(warnings_about(logs, "the budget of 5")) == 2
    assert sum(configured(pool).values()) == 5  # type: ignore[arg-type]
    pool.stopService()
