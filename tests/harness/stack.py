"""The daemon's whole service tree in the test process, with fake mpush nodes.

Built by ``mpush.daemon.tap.makeService`` from a config file, against real
ZooKeeper and Redis servers; for tests that need the daemon's insides or
run under pytest-twisted's reactor.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mpush.cluster import kazoo_logs as logbridge
from mpush.daemon.tap import AllocDaemon, Options, makeService
from mpush.services.ordered import OrderedService
from tests.harness.daemon import free_port, write_config
from tests.harness.fakenode import FakeNode
from tests.harness.web import post_json, until

_DEFAULT = object()


@dataclass
class Stack:
    daemon: AllocDaemon
    port: int
    make_node: Callable[..., FakeNode]
    admin_port: int | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def push(self, payload: Any, **headers: str) -> tuple[int, Any]:
        return await post_json(self.url + "/push", payload, headers)

    async def node(self, **kw: Any) -> FakeNode:
        """A fake node, registered, with the daemon connected to its gateway."""
        node = self.make_node(**kw)
        pool = self.daemon.getServiceNamed("gateways")
        await until(lambda: pool.is_connected(node.address), timeout=15,
                    what=f"gateway {node.address}")
        return node


@asynccontextmanager
async def running_stack(directory: Path, zk: str, namespace: str, redis_port: int, *,
                        alloc_extra: str = "", admin: bool = False,
                        extra: str = "") -> AsyncIterator[Stack]:
    """Start the tree (and stop it, its fake nodes, and the log bridge after).

    ``extra``: more config inside ``mp { }`` (e.g. ``net { gateway-server-net = udp }``).
    """
    directory.mkdir(parents=True, exist_ok=True)
    port = free_port()
    admin_port = free_port() if admin else None
    if admin_port is not None:
        alloc_extra += f"\n    admin-port = {admin_port}"
    config = write_config(directory / "mpush.conf", port=port, zk=zk, namespace=namespace,
                          redis_nodes=[f"127.0.0.1:{redis_port}"], alloc_extra=alloc_extra,
                          extra=extra)
    options = Options()
    options.parseOptions(["--config", str(config)])
    daemon = makeService(options)
    nodes: list[FakeNode] = []

    def make_node(redis: Any = _DEFAULT, **kw: Any) -> FakeNode:
        node = FakeNode(("127.0.0.1", redis_port) if redis is _DEFAULT else redis, zk,
                        namespace=namespace, **kw)
        nodes.append(node)
        return node.start()

    # The plain ordered start: AllocDaemon's own would stop the reactor (and
    # so the test run) on a failed start, and freeze the test process's GC.
    await OrderedService.startService(daemon)
    try:
        yield Stack(daemon, port, make_node, admin_port)
    finally:
        await daemon.stopService()
        for node in nodes:
            await node.stop()
        # makeService bridged stdlib logging into twisted's; undo for pytest.
        logbridge.uninstall("")
