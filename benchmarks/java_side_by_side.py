"""Our daemon next to the real Java alloc, on one real Java mpush server.

Needs the java-peer kit (``../shared/java-peer``, or ``$MPUSH_JAVA_PEER``)
built with its ``build.sh``; it is not part of the suite. Starts ZooKeeper
and Redis on loopback, the Java mpush server (TCP or UDP gateway), the Java
alloc, N Java SDK devices bound as ``user-0``…, and ``twistd -n
mpush-alloc`` on the same ZooKeeper and Redis. Then:

1. interop: a unicast push through each alloc must reach its device, and a
   broadcast through ours must reach every device;
2. ``GET /`` with wrk on each alloc (same answer expected);
3. ``POST /push`` with wrk on each, the same JSON (the Java alloc's
   ``userId``/``hello``, which ours accepts too). The Java alloc answers
   before it sends (fire and forget) and ours after the gateway's reply, so
   the fair figure is pushes *delivered* per second, counted by the devices.

The UDP gateway of the Java server joins a multicast group on a site-local
interface and refuses to start without one. ``--private-net`` re-runs this
script in a new network namespace (root; ``unshare -n``) holding only ``lo``,
given a 10.x address and multicast, so nothing can leave the machine and
every datagram still goes to 127.0.0.1.

    .venv/bin/python benchmarks/java_side_by_side.py [--gateway tcp|udp] [--private-net]
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
KIT = Path(os.environ.get("MPUSH_JAVA_PEER", ROOT.parent / "shared" / "java-peer"))

from benchmarks.push import WRK_LUA, wrk  # noqa: E402
from tests.harness.daemon import Daemon, free_port, write_config  # noqa: E402

PRIVATE_NET = ("ip link set lo up multicast on && ip addr add 10.254.0.1/32 dev lo && exec ")
# The same body for both allocs; PREFIX users are the devices.
PUSH_LUA = WRK_LUA.replace('"userId":"u\' ..', '"userId":"user-\' ..').replace(
    '"content":"hi"', '"hello":"hi"').replace(
    "string.find(body, want, 1, true)", "true")


def post(url: str, body: dict[str, Any]) -> tuple[int, str]:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.status, response.read().decode()


def get(url: str) -> str:
    """The body, or "" while the alloc answers 503 (no server known yet)."""
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.read().decode()
    except urllib.error.HTTPError as error:
        if error.code == 503:
            return ""
        raise


def delivered(devices: list[Any]) -> int:
    return sum(len(d.pushes()) for d in devices)


def push_run(name: str, url: str, devices: list[Any], work: Path, duration: int
             ) -> dict[str, Any]:
    script = work / "push.lua"
    script.write_text(PUSH_LUA)
    before = delivered(devices)
    result = wrk(url + "/push", script, len(devices), 2, 50, duration)
    time.sleep(2)  # pushes the Java alloc accepted but had not yet sent
    result["delivered"] = delivered(devices) - before
    print(f"{name}: POST /push wrk -t2 -c50 {duration}s: {result['rps']:,.0f} answers/s, "
          f"p99 {result['p99']:.1f} ms, {result['delivered']:,} delivered "
          f"({result['delivered'] / duration:,.0f}/s)", flush=True)
    return result


def get_run(name: str, url: str, duration: int) -> dict[str, Any]:
    out = subprocess.run(["wrk", "-t1", "-c50", f"-d{duration}s", "--latency", url + "/"],
                         capture_output=True, text=True, check=True, timeout=duration + 30).stdout
    rps = float(out.split("Requests/sec:")[1].split()[0])
    p99 = next(line.split()[1] for line in out.splitlines() if line.strip().startswith("99%"))
    print(f"{name}: GET / wrk -t1 -c50 {duration}s: {rps:,.0f} req/s, p99 {p99}", flush=True)
    return {"rps": rps, "p99": p99}


def run(args: argparse.Namespace) -> int:
    sys.path.insert(0, str(KIT))
    from peer import JavaPeer  # type: ignore[import-not-found]
    from stack import Stack  # type: ignore[import-not-found]

    udp = args.gateway == "udp"
    java_net = f"mp.net.gateway-server-net={args.gateway}"
    work = Path(tempfile.mkdtemp(prefix="mpush-side-"))
    with Stack() as stack, JavaPeer(stack.zk_port, stack.redis_port, log_level="warn") as jp:
        if udp:
            # The kit waits for a gateway connection when the server runs first;
            # over UDP there is none, so the alloc goes first.
            jp.start_alloc(extra_conf=f"{java_net}\nmp.net.gateway-client-port={free_port()}")
        jp.start_server(extra_conf=java_net)
        if not udp:
            jp.start_alloc(extra_conf=java_net)
        print(f"Java mpush server: connection {jp.conn_port}, gateway {jp.gateway_port} "
              f"({args.gateway})", flush=True)
        devices = [jp.start_client(f"user-{i}") for i in range(args.devices)]
        ours_port = free_port()
        net = (f"net {{ gateway-server-net = udp, gateway-client-port = {free_port()} }}"
               if udp else "")
        config = write_config(work / "mpush.conf", port=ours_port,
                              zk=f"127.0.0.1:{stack.zk_port}",
                              redis_nodes=[f"127.0.0.1:{stack.redis_port}"], extra=net)
        daemon = Daemon(work, config, port=ours_port).start()
        ours, java = daemon.url, jp.alloc_url("").rstrip("/")
        try:
            deadline = time.monotonic() + 30
            while f":{jp.conn_port}" not in get(ours + "/") and time.monotonic() < deadline:
                time.sleep(0.2)
            while f":{jp.conn_port}" not in get(java + "/") and time.monotonic() < deadline:
                time.sleep(0.2)
            print(f"GET / ours: {get(ours + '/')!r}  Java: {get(java + '/')!r}", flush=True)
            status, body = post(ours + "/push", {"userId": "user-0", "content": "from ours"})
            print(f"ours unicast: {status} {body}", flush=True)
            devices[0].wait_push(1, timeout=10)
            jp.alloc_push("user-0", "from Java")
            devices[0].wait_push(2, timeout=10)
            status, body = post(ours + "/push", {"broadcast": True, "content": "to all"})
            print(f"ours broadcast: {status} {body}", flush=True)
            for d in devices:
                d.wait_push(1 + (d is devices[0]) * 2, timeout=10)
            print("interop: every device got ours' unicast, the Java alloc's, and ours' "
                  "broadcast", flush=True)
            for name, url in (("ours", ours), ("Java", java)):
                get_run(name, url, args.duration)
            for name, url in (("ours", ours), ("Java", java)):
                push_run(name, url, devices, work, args.duration)
        finally:
            daemon.terminate()
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gateway", choices=("tcp", "udp"), default="tcp")
    parser.add_argument("--devices", type=int, default=3)
    parser.add_argument("--duration", type=int, default=8, help="s per wrk run")
    parser.add_argument("--private-net", action="store_true",
                        help="re-run in a new network namespace with a site-local dummy interface")
    args = parser.parse_args()
    if not (KIT / "peer.py").exists():
        print(f"the java-peer kit is not at {KIT}: set MPUSH_JAVA_PEER", file=sys.stderr)
        return 2
    if args.private_net:
        inner = [sys.executable, *[a for a in sys.argv if a != "--private-net"]]
        return subprocess.call(["unshare", "-n", "sh", "-c", PRIVATE_NET + shlex.join(inner)])
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
