"""A local mpush stack to try the daemon on (``scripts/run-local`` runs it).

Starts ZooKeeper and Redis on loopback (the ports of the config file),
registers demo connection servers the way the Java mpush server does
(ephemeral nodes, JSON, digest ACL) with online users in Redis, then runs
``twistd -n mpush-alloc`` in the foreground. Ctrl-C (or SIGTERM) stops all.
"""

from __future__ import annotations

import argparse
import signal
import socket
import subprocess
import sys
from pathlib import Path
from types import FrameType

from mpush.config import DEFAULT_CONFIG_FILE, load_settings
from tests.harness.daemon import BIN
from tests.harness.fakenode import FakeNodeProcess
from tests.harness.redis import RedisServer
from tests.harness.registry import NodeRegistrar
from tests.harness.zookeeper import ZooKeeperServer

# (host, port, weight, online users): what `GET /` will list, least loaded first.
DEMO_SERVERS = [
    ("127.0.0.2", 3000, 1, 3),
    ("127.0.0.3", 3000, 1, 1),
    ("127.0.0.4", 3000, 2, 4),
]
# The fake mpush node (a real gateway server on 127.0.0.1) and its users.
DEMO_USERS = 5
DEMO_USER_PREFIX = "demo-"


def _port_free(host: str, port: int) -> bool:
    with socket.socket() as s:
        # As the servers do: a closed connection in TIME_WAIT is no conflict.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def _single_port(address: str, what: str) -> tuple[str, int]:
    host, _, port = address.split(",")[0].rpartition(":")
    if host not in ("127.0.0.1", "localhost"):
        raise SystemExit(f"demo: {what} must be on 127.0.0.1 in the config, got {address}")
    return "127.0.0.1", int(port)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--config", default=DEFAULT_CONFIG_FILE)
    args = parser.parse_args(argv)
    settings = load_settings(args.config)
    _, zk_port = _single_port(settings.zk.server_address, "mp.zk.server-address")
    redis_host, redis_port = settings.redis.nodes[0]
    _single_port(f"{redis_host}:{redis_port}", "mp.redis.nodes")
    for name, port in (("ZooKeeper", zk_port), ("Redis", redis_port),
                       ("the alloc server", settings.port)):
        if not _port_free("127.0.0.1", port):
            raise SystemExit(f"demo: port {port} for {name} is already in use")

    run = Path("run").resolve()
    run.mkdir(exist_ok=True)
    zk = ZooKeeperServer(base_dir=str(run / "zookeeper"))
    zk.port = zk_port
    redis = RedisServer(port=redis_port)
    registrar: NodeRegistrar | None = None
    node: FakeNodeProcess | None = None
    daemon: subprocess.Popen[bytes] | None = None

    def stop(signum: int, frame: FrameType | None) -> None:
        # Once is enough: a second signal must not cut the clean-up short.
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        print(f"demo: ZooKeeper on 127.0.0.1:{zk_port}, Redis on 127.0.0.1:{redis_port}",
              flush=True)
        zk.start()
        redis.start()
        registrar = NodeRegistrar(zk.connect_string, namespace=settings.zk.namespace,
                                  digest=settings.zk.digest).start()
        for host, port, weight, online in DEMO_SERVERS:
            registrar.register("cs", host, port, {"weight": weight})
            users = [f"demo-user-{host}-{i}" for i in range(online)]
            for i, user in enumerate(users):
                redis.call("ZADD", f"mp:oul:{host}", str(i), user)
        node = FakeNodeProcess(zk.connect_string, ("127.0.0.1", redis_port),
                               namespace=settings.zk.namespace, users=DEMO_USERS,
                               user_prefix=DEMO_USER_PREFIX).start()
        users = ", ".join(f"{DEMO_USER_PREFIX}{i}" for i in range(DEMO_USERS))
        print(f"demo: registered {len(DEMO_SERVERS)} connection servers and a fake mpush "
              f"node (gateway {node.address}; users online: {users})", flush=True)
        print(f"demo: try curl -s http://127.0.0.1:{settings.port}/ or open "
              f"http://127.0.0.1:{settings.port}/index.html", flush=True)
        daemon = subprocess.Popen([str(BIN / "twistd"), "-n", "mpush-alloc",
                                   "--config", args.config],
                                  # Its own session: Ctrl-C reaches the demo
                                  # only, which then stops the daemon once.
                                  start_new_session=True)
        return daemon.wait()
    except KeyboardInterrupt:
        return 0
    finally:
        if daemon is not None and daemon.poll() is None:
            daemon.send_signal(signal.SIGTERM)
            daemon.wait(timeout=15)
        if node is not None:
            node.terminate()
        if registrar is not None:
            registrar.close()
        redis.close()
        zk.close()
        print("demo: stopped", flush=True)


if __name__ == "__main__":
    sys.exit(main())
