"""The daemon's service tree as a fixture: ``stack``, on the shared ZooKeeper and Redis.

A module needing another setup (its own Redis, extra config) defines a
``stack`` of its own, or calls :func:`tests.harness.stack.running_stack`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest_twisted

from tests.harness.redis import RedisServer
from tests.harness.stack import Stack, running_stack
from tests.harness.zookeeper import ZooKeeperServer


@pytest_twisted.async_yield_fixture
async def stack(tmp_path: Path, zk_server: ZooKeeperServer, zk_namespace: str,
                redis_server: RedisServer) -> AsyncIterator[Stack]:
    async with running_stack(tmp_path, zk_server.connect_string, zk_namespace,
                             redis_server.port) as running:
        yield running
