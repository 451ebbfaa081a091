"""A local mpush stack to try the daemon on (``scripts/run-local`` runs it).

Starts ZooKeeper and Redis on loopback (the ports of the config file, or
free ones when those are taken, e.g. by Debian's own ``zookeeper`` and
``redis-server`` services), registers demo connection servers the way the
Java mpush server does (ephemeral nodes, JSON, digest ACL) with online users
in Redis, then runs ``twistd -n mpush-alloc`` in the foreground. Ctrl-C (or
SIGTERM) stops all.
"""

from __future__ import annotations

import argparse
import json
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


def port_or_free(port: int, name: str, service: str) -> int | None:
    """``port`` if it is free; else None (the server picks a free one), said in one line."""
    if _port_free("127.0.0.1", port):
        return port
    print(f"demo: port {port} for {name} is in use (Debian's {service} service?"
          f" `sudo systemctl stop {service}` frees it); using a free port instead", flush=True)
    return None


def demo_config(config: str, zk: str, redis: str, run: Path) -> Path:
    """A config in ``run`` that includes ``config`` and names the demo's own
    ZooKeeper and Redis (``host:port`` each) instead of its."""
    path = run / "demo.conf"
    path.write_text(
        f"# Written by scripts/demo.py: {config} with the demo's own ZooKeeper and Redis.\n"
        f"include file({json.dumps(str(Path(config).resolve()))})\n"
        f"mp.zk.server-address = {json.dumps(zk)}\n"
        f"mp.redis.nodes = [{json.dumps(redis)}]\n"
    )
    return path


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
    if not _port_free("127.0.0.1", settings.port):
        # What the README and the page's address name: no other port silently.
        raise SystemExit(
            f"demo: port {settings.port} (mp.net.alloc-server-port in {args.config}) is in"
            f" use: stop what listens there (`ss -ltnp 'sport = :{settings.port}'` names it),"
            " or give --config a copy of the file with another port")

    run = Path("run").resolve()
    run.mkdir(exist_ok=True)
    zk = ZooKeeperServer(base_dir=str(run / "zookeeper"))
    zk.port = port_or_free(zk_port, "ZooKeeper", "zookeeper")
    redis = RedisServer(port=port_or_free(redis_port, "Redis", "redis-server"))
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
        zk.start()
        redis.start()
        print(f"demo: ZooKeeper on {zk.connect_string}, Redis on 127.0.0.1:{redis.port}",
              flush=True)
        config = args.config
        if (zk.port, redis.port) != (zk_port, redis_port):
            config = str(demo_config(args.config, zk.connect_string,
                                     f"127.0.0.1:{redis.port}", run))
        registrar = NodeRegistrar(zk.connect_string, namespace=settings.zk.namespace,
                                  digest=settings.zk.digest).start()
        for host, port, weight, online in DEMO_SERVERS:
            registrar.register("cs", host, port, {"weight": weight})
            users = [f"demo-user-{host}-{i}" for i in range(online)]
            for i, user in enumerate(users):
                redis.call("ZADD", f"mp:oul:{host}", str(i), user)
        node = FakeNodeProcess(zk.connect_string, ("127.0.0.1", redis.port),
                               namespace=settings.zk.namespace, users=DEMO_USERS,
                               user_prefix=DEMO_USER_PREFIX).start()
        users = ", ".join(f"{DEMO_USER_PREFIX}{i}" for i in range(DEMO_USERS))
        print(f"demo: registered {len(DEMO_SERVERS)} connection servers and a fake mpush "
              f"node (gateway {node.address}; users online: {users})", flush=True)
        print(f"demo: try curl -s http://127.0.0.1:{settings.port}/ or open "
              f"http://127.0.0.1:{settings.port}/index.html", flush=True)
        print(f"demo: twistd -n mpush-alloc --config {config}", flush=True)
        daemon = subprocess.Popen([str(BIN / "twistd"), "-n", "mpush-alloc",
                                   "--config", config],
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
