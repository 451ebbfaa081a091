"""Real Redis servers for tests (loaded by tests/conftest.py).

* ``redis_server`` / ``redis_password_server``: one process per test session,
  emptied before each test. Do not kill or freeze them: use
  ``fresh_redis_server`` or ``redis_factory`` for that.
* ``redis_cluster``: one 3-master cluster per session, reset (empty,
  original slot owners, no migration in progress) before each test;
  ``fresh_redis_cluster`` for tests that break nodes.
* ``redis_sentinel``: a fresh master (with a password) plus a sentinel
  (without one) per test; the master is ``redis_sentinel.master``.
* ``make_service``: started RedisServices with short timeouts (``BOUND``),
  stopped after the test; ``log_events``: every log event of the test;
  ``failure_of``: how a call failed, and how long that took.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from types import SimpleNamespace
from typing import Any

import pytest
import pytest_twisted
from twisted.logger import globalLogPublisher

from mpush.cluster.redis import RedisService
from tests.harness.redis import RedisCluster, RedisSentinel, RedisServer

REDIS_TEST_PASSWORD = "t0p-s3cret-redis-pw"
CONNECT_TIMEOUT = 0.5
REPLY_TIMEOUT = 0.5
BOUND = CONNECT_TIMEOUT + REPLY_TIMEOUT
SLACK = 0.3  # scheduling noise on a busy test machine


def _fit(server: RedisServer) -> RedisServer:
    # A session server a previous test left stopped or frozen by mistake.
    if server.frozen:
        server.thaw()
    if not server.running:
        server.start()
    server.call("FLUSHALL")
    return server


@pytest.fixture(scope="session")
def _redis_server_session() -> Iterator[RedisServer]:
    with RedisServer() as server:
        yield server


@pytest.fixture
def redis_server(_redis_server_session: RedisServer) -> RedisServer:
    """A plain server shared by the session, emptied for this test."""
    return _fit(_redis_server_session)


@pytest.fixture(scope="session")
def _redis_password_server_session() -> Iterator[RedisServer]:
    with RedisServer(REDIS_TEST_PASSWORD) as server:
        yield server


@pytest.fixture
def redis_password_server(_redis_password_server_session: RedisServer) -> RedisServer:
    """Like ``redis_server`` with ``requirepass`` (see ``.password``)."""
    return _fit(_redis_password_server_session)


@pytest.fixture
def redis_factory() -> Iterator[Callable[..., RedisServer]]:
    """``make(password=None, **kw)`` -> a started server of this test only."""
    made: list[RedisServer] = []

    def make(password: str | None = None, **kwargs: Any) -> RedisServer:
        server = RedisServer(password, **kwargs)
        made.append(server)
        return server.start()

    yield make
    for server in made:
        server.close()


@pytest.fixture
def fresh_redis_server(redis_factory: Callable[..., RedisServer]) -> RedisServer:
    """A server of this test only, free to kill, freeze and restart; its
    append-only file keeps the data across a kill and restart."""
    return redis_factory(appendonly=True)


@pytest.fixture(scope="session")
def _redis_cluster_session() -> Iterator[RedisCluster]:
    with RedisCluster(3) as cluster:
        yield cluster


@pytest.fixture
def redis_cluster(_redis_cluster_session: RedisCluster) -> RedisCluster:
    """The session's cluster, empty and with its original slot layout."""
    _redis_cluster_session.reset()
    return _redis_cluster_session


@pytest.fixture
def fresh_redis_cluster() -> Iterator[RedisCluster]:
    """A cluster of this test only (about 2 s to make)."""
    with RedisCluster(3) as cluster:
        yield cluster


@pytest.fixture
def redis_sentinel(redis_factory: Callable[..., RedisServer]) -> Iterator[RedisSentinel]:
    """A sentinel watching a fresh password-protected master as "mymaster"."""
    master = redis_factory(REDIS_TEST_PASSWORD)
    with RedisSentinel(master, "mymaster") as sentinel:
        yield sentinel


def redis_settings(
    mode: str,
    nodes: Any,
    password: str | None = None,
    sentinel_master: str | None = None,
    reply_timeout: float = REPLY_TIMEOUT,
) -> Any:
    kwargs = dict(
        mode=mode,
        nodes=tuple(tuple(n) for n in nodes),
        password=password,
        sentinel_master=sentinel_master,
        connect_timeout=CONNECT_TIMEOUT,
        reply_timeout=reply_timeout,
    )
    try:
        from mpush.config import RedisSettings

        return RedisSettings(**kwargs)
    except (ImportError, TypeError):
        return SimpleNamespace(**kwargs)


@pytest_twisted.async_yield_fixture
async def make_service() -> Any:
    """``make(mode, nodes, password=None, ...)`` -> a started RedisService,
    stopped (and checked to stop) at teardown."""
    made: list[RedisService] = []

    def make(mode: str, nodes: Any, password: str | None = None, **kw: Any) -> RedisService:
        sentinel_master = kw.pop("sentinel_master", None)
        reply_timeout = kw.pop("reply_timeout", REPLY_TIMEOUT)
        service = RedisService(
            redis_settings(mode, nodes, password, sentinel_master, reply_timeout),
            probe_interval=kw.pop("probe_interval", 0.5),
        )
        d = service.startService()
        # Starting never waits for Redis.
        assert d.called
        made.append(service)
        return service

    yield make
    for service in made:
        await service.stopService()


@pytest.fixture
def log_events() -> Iterator[list[dict[str, Any]]]:
    events: list[dict[str, Any]] = []
    globalLogPublisher.addObserver(events.append)
    yield events
    globalLogPublisher.removeObserver(events.append)


async def failure_of(d: Any) -> tuple[BaseException, float]:
    """The exception ``d`` fails with, and how long that took."""
    start = time.monotonic()
    try:
        await d
    except Exception as e:
        return e, time.monotonic() - start
    raise AssertionError("the call did not fail")
