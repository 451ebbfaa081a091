"""For the benchmark scripts: ZooKeeper and Redis on loopback in a temporary folder,
and timing a Site in-process.

:func:`local_services` starts both, hands them over with the folder and an
``ExitStack`` for whatever the script starts on top (a daemon, a
registrar...), and on the way out closes those (last first), then Redis,
ZooKeeper, and removes the folder, whatever happened.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.harness.redis import RedisServer
from tests.harness.zookeeper import ZooKeeperServer

__all__ = ["LocalServices", "local_services", "time_in_process"]


@dataclass
class LocalServices:
    work: Path  # the temporary folder (ZooKeeper's data is in work/zk)
    zk: ZooKeeperServer
    redis: RedisServer
    later: ExitStack  # callbacks run at exit, before the servers close

    @property
    def redis_nodes(self) -> list[str]:
        return [f"127.0.0.1:{self.redis.port}"]


@contextmanager
def local_services(prefix: str = "mpush-bench-") -> Iterator[LocalServices]:
    work = Path(tempfile.mkdtemp(prefix=prefix))
    zk = ZooKeeperServer(base_dir=str(work / "zk"))
    redis = RedisServer()
    try:
        with ExitStack() as later:
            zk.start()
            redis.start()
            yield LocalServices(work, zk, redis, later)
    finally:
        redis.close()
        zk.close()
        shutil.rmtree(work, ignore_errors=True)


def time_in_process(site: Any, raw: bytes, requests: int) -> list[float]:
    """Seconds each of ``requests`` copies of the raw HTTP request ``raw`` takes on one
    connection of ``site`` (from 127.0.0.1) over a StringTransport: what the resource
    and twisted.web cost, without the network and the scheduler. The first request is
    not timed (it must not be an error); objects made so far are frozen out of the
    collector's sight first, as the daemon does after its start."""
    import gc

    from twisted.internet.address import IPv4Address
    from twisted.internet.testing import StringTransport

    peer = IPv4Address("TCP", "127.0.0.1", 40000)
    channel = site.buildProtocol(peer)
    transport = StringTransport(peerAddress=peer)
    channel.makeConnection(transport)
    channel.dataReceived(raw)
    assert transport.value().split(b" ", 2)[1] < b"400", transport.value()[:300]
    transport.clear()
    gc.collect()
    gc.freeze()
    took = []
    for _ in range(requests):
        start = time.perf_counter()
        channel.dataReceived(raw)
        took.append(time.perf_counter() - start)
        transport.clear()
    return took
