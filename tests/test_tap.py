"""makeService builds the tree without side effects: twistd may fork after it."""

from __future__ import annotations

import threading
from pathlib import Path

from mpush.cluster import kazoo_logs as logbridge
from mpush.daemon.tap import AllocDaemon, Options, makeService
from tests.harness.daemon import write_config


def test_make_service_opens_nothing_and_orders_the_children(tmp_path: Path) -> None:
    config = write_config(tmp_path / "mpush.conf", port=1, zk="127.0.0.1:1",
                          redis_nodes=["127.0.0.1:1"])
    options = Options()
    options.parseOptions(["--config", str(config)])
    threads = {t.ident for t in threading.enumerate()}
    try:
        root = makeService(options)
    finally:
        # makeService bridges stdlib logging for the daemon; not for pytest.
        logbridge.uninstall("")
        logbridge.uninstall("kazoo")
    assert isinstance(root, AllocDaemon)
    assert [s.name for s in root] == ["zookeeper", "redis", "gateways", "refresher", "web"]
    assert not root.running and not any(s.running for s in root)
    # No thread (kazoo's) and no listener before startService.
    assert {t.ident for t in threading.enumerate()} == threads
    assert root.getServiceNamed("zookeeper").client is None
    assert root.getServiceNamed("web").listening is None
