"""The whole daemon through outages of its dependencies, and in every Redis
mode, against real servers.

* ZooKeeper stopped or killed, then restarted: ``GET /`` keeps answering
  the last list all along; changes made after the recovery show.
* The ZooKeeper session expired: the last list stays; changes made during
  and after the expiry show.
* Redis stopped, killed or frozen: the last order stays, ZooKeeper changes
  still show; once Redis is back, new counts are used again.
* Redis Cluster (a slot migrated under the daemon: MOVED followed) and
  Sentinel (password on the master only), end to end; ZooKeeper digest auth.

Some tests run ``twistd mpush-alloc`` as a child process (what an operator
runs); the ones that need the daemon's insides (its ZooKeeper session, its
slot map) run the same service tree in this process, built by
``mpush.daemon.tap.makeService`` from a config file. Every wait is bounded.
"""

from __future__ import annotations

import logging
import re
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from kazoo.client import KazooClient
from kazoo.exceptions import NoAuthError
from twisted.internet import reactor
from twisted.internet.task import deferLater
from twisted.internet.threads import deferToThread

from mpush.cluster import kazoo_logs as logbridge
from mpush.cluster.redis_cluster import key_slot
from mpush.daemon.tap import AllocDaemon, Options, makeService
from mpush.services.ordered import OrderedService
from tests.fixtures_redis import REDIS_TEST_PASSWORD
from tests.harness.daemon import Daemon, free_port, write_config
from tests.harness.redis import RedisCluster, RedisSentinel, RedisServer
from tests.harness.registry import NodeRegistrar
from tests.harness.zkfaults import CuttableProxy, expire_session
from tests.harness.zookeeper import RECONNECT_WAIT, SURVIVING_SESSION, ZooKeeperServer

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

PORT = 3000


def addr(ip: str) -> str:
    return f"{ip}:{PORT}"


def listing(*ips: str) -> bytes:
    """The body ``GET /`` answers for these servers, in this order."""
    return ",".join(addr(ip) for ip in ips).encode()


def set_online(server: RedisServer, ip: str, count: int) -> None:
    """Make ``mp:oul:<ip>`` hold ``count`` users, as connection servers do."""
    key = f"mp:oul:{ip}"
    server.call("DEL", key)
    if count:
        members: list[Any] = []
        for i in range(count):
            members += [i, f"user-{i}"]
        server.call("ZADD", key, *members)


# -- HTTP, from a thread that is not the reactor's --------------------------------

def http(url: str, method: str = "GET", timeout: float = 5.0) -> tuple[int, dict[str, str], bytes]:
    """One blocking request; (status, headers, body). Never from the reactor thread."""
    req = urllib.request.Request(url, method=method)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, dict(resp.headers.items()), resp.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers.items()), e.read()


class Poller:
    """``GET /`` over and over in a thread of its own; records every answer
    (an exception counts as status -1) with the time it was received."""

    def __init__(self, url: str, interval: float = 0.05) -> None:
        self.url = url
        self.interval = interval
        self.answers: list[tuple[float, int, bytes]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="poller", daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                status, _, body = http(self.url, timeout=2.0)
            except Exception as e:  # refused, reset, timed out: all failures here
                status, body = -1, repr(e).encode()
            self.answers.append((time.monotonic(), status, body))
            self._stop.wait(self.interval)

    def between(self, start: float, end: float) -> list[tuple[int, bytes]]:
        return [(s, b) for t, s, b in list(self.answers) if start <= t <= end]

    def __enter__(self) -> Poller:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5.0)


def wait_until(predicate: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.02)


def log_count(daemon: Daemon, pattern: str) -> int:
    return len(re.findall(pattern, daemon.log()))


def wait_body(daemon: Daemon, expected: bytes, wait: float) -> float:
    """Wait for ``GET /`` to answer ``expected``; returns how long it took."""
    started = time.monotonic()
    daemon.wait_for_body(lambda body: body == expected, wait=wait)
    return time.monotonic() - started


def wait_settled(daemon: Daemon, expected: bytes, wait: float) -> None:
    """Wait for ``GET /`` to answer ``expected`` three times in a row.

    Used before an outage, to be sure the counts were read: the tests give
    the least loaded server the highest address, and counts far apart.
    Before the first count is read, every server has 0 users, the address
    breaks the tie, and each GET hands the head one client and rotates it,
    so no order holds for two GETs. With the counts read, it holds."""
    deadline = time.monotonic() + wait
    streak = 0
    body = b""
    while time.monotonic() < deadline:
        status, _, body = daemon.get()
        streak = streak + 1 if (status, body) == (200, expected) else 0
        if streak == 3:
            return
        time.sleep(0.02)
    raise AssertionError(f"GET / did not settle on {expected!r}; last body {body!r}")


# -- the daemon as a child process ------------------------------------------------

@pytest.fixture
def make_daemon(tmp_path: Path) -> Iterator[Callable[..., Daemon]]:
    """``make(zk=..., redis_nodes=[...], **write_config_kwargs)`` -> a
    started ``twistd -n mpush-alloc``, killed at teardown."""
    made: list[Daemon] = []

    def make(*, zk: str, redis_nodes: list[str], **config: Any) -> Daemon:
        workdir = tmp_path / f"daemon-{len(made)}"
        workdir.mkdir()
        port = free_port()
        path = write_config(workdir / "mpush.conf", port=port, zk=zk,
                            redis_nodes=redis_nodes, **config)
        daemon = Daemon(workdir, path, port=port)
        made.append(daemon)
        return daemon.start()

    yield make
    for daemon in made:
        daemon.kill()
        # Shown by pytest only when the test failed.
        print(f"---- {daemon.logfile} (last 60 lines)")
        print("\n".join(daemon.log().splitlines()[-60:]))


# -- the daemon in this process ------------------------------------------------------

class InProcess:
    """The daemon's service tree, run by this process's reactor."""

    def __init__(self, root: AllocDaemon, port: int) -> None:
        self.root = root
        self.port = port
        self.url = f"http://127.0.0.1:{port}/"

    def service(self, name: str) -> Any:
        return self.root.getServiceNamed(name)

    async def get(self, method: str = "GET") -> tuple[int, dict[str, str], bytes]:
        # The reactor runs in this thread: a blocking request would hang it.
        return await deferToThread(http, self.url, method)

    async def wait_body(self, expected: bytes, timeout: float) -> float:
        """Poll ``GET /`` until it answers ``expected``; returns the time taken."""
        started = time.monotonic()
        last: tuple[int, bytes] = (0, b"")
        while time.monotonic() - started < timeout:
            status, _, body = await self.get()
            last = (status, body)
            if status == 200 and body == expected:
                return time.monotonic() - started
            await sleep(0.05)
        raise AssertionError(f"GET / never answered {expected!r} within {timeout} s; "
                             f"last answer {last!r}")

    async def wait_counts(self, counts: dict[str, int], timeout: float) -> None:
        """Wait until the policy holds exactly these servers (by IP) with
        these online counts: the counts were read, not merely the list."""
        policy = self.service("refresher").policy

        def loaded() -> bool:
            return {s.ip: s.online for s in policy.describe()} == counts

        await until(loaded, timeout, f"online counts {counts}")


@pytest_twisted.async_yield_fixture
async def run_daemon(tmp_path: Path) -> Any:
    """``await run(zk=..., redis_nodes=[...], redis_probe_interval=None,
    **write_config_kwargs)`` -> InProcess, started; stopped at teardown."""
    made: list[InProcess] = []
    # makeService bridges stdlib logging into twisted.logger (as twistd
    # needs); undo that for the root logger afterwards, for later tests.
    root_logger = logging.getLogger()
    bridged = any(isinstance(h, logbridge.TwistedLoggerHandler) for h in root_logger.handlers)
    root_level = root_logger.level

    async def run(*, zk: str, redis_nodes: list[str], redis_probe_interval: float | None = None,
                  **config: Any) -> InProcess:
        port = free_port()
        path = write_config(tmp_path / f"mpush-{len(made)}.conf", port=port, zk=zk,
                            redis_nodes=redis_nodes, **config)
        options = Options()
        options.parseOptions(["--config", str(path)])
        root = makeService(options)
        if redis_probe_interval is not None:
            root.getServiceNamed("redis").probe_interval = redis_probe_interval
        daemon = InProcess(root, port)
        made.append(daemon)
        # OrderedService's start, not AllocDaemon's: a failed start must fail
        # this test, not stop the reactor and end the test run with status 1.
        await OrderedService.startService(root)
        return daemon

    yield run
    for daemon in made:
        await daemon.root.stopService()
    if not bridged:
        logbridge.uninstall("")
        root_logger.setLevel(root_level)


async def sleep(seconds: float) -> None:
    await deferLater(reactor, seconds)


async def until(predicate: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await sleep(0.02)


# ================================================================================
# ZooKeeper outages
# ================================================================================

@pytest.mark.timeout(120)  # two reconnect waits of RECONNECT_WAIT at most
@pytest.mark.parametrize("fault", ["stop", "kill"])
def test_zookeeper_restart_keeps_the_list_then_follows_changes(
        fault: str, zk_fresh_server: ZooKeeperServer,
        make_registrar: Callable[..., NodeRegistrar], redis_server: RedisServer,
        make_daemon: Callable[..., Daemon]) -> None:
    zk = zk_fresh_server.start()
    # ZooKeeper keeps sessions across a restart (it persists them): such a
    # session outlives the outage, and the registrar re-creates its nodes on
    # reconnect anyway, like the Java server.
    registrar = make_registrar(zk.connect_string, session_timeout=SURVIVING_SESSION)
    # Least loaded = highest address (see wait_settled).
    a, b, c = "10.10.0.9", "10.10.0.5", "10.10.0.3"
    set_online(redis_server, a, 10)
    set_online(redis_server, b, 500)  # far apart: polling GETs cannot reorder them
    set_online(redis_server, c, 1000)
    node_a = registrar.register("cs", a, PORT)
    registrar.register("cs", b, PORT)
    daemon = make_daemon(zk=zk.connect_string, redis_nodes=[f"127.0.0.1:{redis_server.port}"])
    before = listing(a, b)
    wait_body(daemon, before, 10.0)
    wait_settled(daemon, before, 5.0)
    connects = log_count(daemon, r"ZooKeeper: connected to")

    with Poller(daemon.url + "/") as poller:
        down_at = time.monotonic()
        getattr(zk, fault)()  # stop: SIGTERM; kill: SIGKILL
        wait_until(lambda: log_count(daemon, r"ZooKeeper: connection to \S+ lost"), 5.0,
                   "the daemon to notice ZooKeeper is gone")
        time.sleep(1.5)  # more than one refresh interval with ZooKeeper away
        up_at = time.monotonic()
        zk.start()
        wait_until(lambda: registrar.reregistrations >= 1, RECONNECT_WAIT,
                   "the registrar's nodes again")
        wait_until(lambda: log_count(daemon, r"ZooKeeper: connected to") > connects,
                   RECONNECT_WAIT, "the daemon to reconnect")
        back_at = time.monotonic()

    outage = poller.between(down_at, up_at)
    assert len(outage) >= 10, f"the poller hardly ran during the outage: {outage}"
    assert set(outage) == {(200, before)}, "the last list, all along the outage"
    # Through the restart and the nodes' re-creation (delete, then create, as
    # in Java): never an error, never "no server".
    assert {s for s, _ in poller.between(down_at, back_at)} == {200}
    wait_body(daemon, before, 3.0)

    # Changes after the recovery show within a couple of seconds.
    registrar.register("cs", c, PORT)
    took_add = wait_body(daemon, listing(a, b, c), 2.0)
    registrar.unregister(node_a)
    took_remove = wait_body(daemon, listing(b, c), 2.0)
    assert took_add < 2.0 and took_remove < 2.0


@pytest_twisted.ensureDeferred
async def test_session_expiry_keeps_the_list_then_resyncs(
        zk_server: ZooKeeperServer, zk_namespace: str, zk_registrar: NodeRegistrar,
        redis_server: RedisServer, run_daemon: Any) -> None:
    a, b, c, d = "10.11.0.9", "10.11.0.5", "10.11.0.7", "10.11.0.3"
    for ip, count in ((a, 10), (b, 500), (c, 100), (d, 1000)):
        set_online(redis_server, ip, count)
    node_a = zk_registrar.register("cs", a, PORT)
    node_b = zk_registrar.register("cs", b, PORT)
    # The daemon reaches ZooKeeper through a proxy that can be cut: expiring
    # the session of a connected client races with its reconnect (it can win
    # the session back), one that cannot reach the server cannot.
    proxy = CuttableProxy(zk_server.port)
    proxy.open()
    daemon: InProcess | None = None
    try:
        # Both servers of the first view leave within one burst of changes below:
        # a mass drop, which would be held (test_mass_drop.py). Here every change
        # must show at once.
        daemon = await run_daemon(zk=proxy.connect_string, namespace=zk_namespace,
                                  redis_nodes=[f"127.0.0.1:{redis_server.port}"],
                                  alloc_extra="mass-drop-hold = 0")
        watcher = daemon.service("zookeeper")
        before = listing(a, b)
        await daemon.wait_body(before, 10.0)
        await daemon.wait_counts({a: 10, b: 500}, 5.0)
        assert watcher.client is not None
        session = watcher.client.client_id
        assert session is not None and session[0] == watcher.session_id

        await proxy.cut()
        await until(lambda: watcher.state == "suspended", 5.0, "the daemon to lose ZooKeeper")
        await deferToThread(expire_session, zk_server.connect_string, session)
        # Changes made while the session is gone, only seen by a full re-read.
        zk_registrar.unregister(node_a)
        zk_registrar.register("cs", c, PORT)
        for _ in range(10):  # a second and more: several refreshes
            status, _, body = await daemon.get()
            assert (status, body) == (200, before), "the last list while the session is gone"
            await sleep(0.1)

        proxy.open()
        await until(lambda: watcher.state == "connected"
                    and watcher.session_id not in (None, session[0]), 10.0,
                    "a new session")
        await daemon.wait_body(listing(c, b), 2.0)

        # Watches work on the new session: changes after the expiry show.
        zk_registrar.register("cs", d, PORT)
        await daemon.wait_body(listing(c, b, d), 2.0)
        zk_registrar.unregister(node_b)
        await daemon.wait_body(listing(c, d), 2.0)
    finally:
        if daemon is not None:
            await daemon.root.stopService()  # while it can still reach ZooKeeper
        await proxy.cut()


# ================================================================================
# Redis outages
# ================================================================================

@pytest.mark.parametrize("fault", ["stop", "kill", "freeze"])
def test_redis_outage_keeps_the_last_order_then_uses_new_counts(
        fault: str, fresh_redis_server: RedisServer, zk_server: ZooKeeperServer,
        zk_namespace: str, zk_registrar: NodeRegistrar,
        make_daemon: Callable[..., Daemon]) -> None:
    redis = fresh_redis_server  # append-only: a restart keeps the counts
    a, b, c = "10.12.0.9", "10.12.0.5", "10.12.0.7"  # see wait_settled
    set_online(redis, a, 10)
    set_online(redis, b, 1000)
    zk_registrar.register("cs", a, PORT)
    zk_registrar.register("cs", b, PORT)
    daemon = make_daemon(zk=zk_server.connect_string, namespace=zk_namespace,
                         redis_nodes=[f"127.0.0.1:{redis.port}"])
    wait_body(daemon, listing(a, b), 10.0)
    wait_settled(daemon, listing(a, b), 5.0)

    if fault == "stop":
        redis.stop()
    elif fault == "kill":
        redis.kill()
    else:
        redis.freeze()  # the port still accepts connections; nothing answers
    wait_until(lambda: log_count(daemon, r"cannot read online counts from Redis"), 5.0,
               "the daemon to notice Redis is gone")
    if fault == "freeze":
        # The refresher's own bound (its interval, 1 s) ends the wait first,
        # and the log says so in words.
        assert "cannot read online counts from Redis (no answer within 1 s)" in daemon.log()
    # The last order all along (a few dozen GETs cannot close a 990 gap).
    with Poller(daemon.url + "/") as poller:
        time.sleep(1.5)
    outage = [(s, body) for _, s, body in poller.answers]
    assert len(outage) >= 10 and set(outage) == {(200, listing(a, b))}

    # ZooKeeper changes during the outage still show. A server on a new IP
    # has no known count (0): it comes first. A second server on b's IP
    # shares b's last known count (half each): it does not jump the queue.
    # (The two b servers tie on load; which comes first depends on a stray
    # handout from the daemon's first second, so either order is right.)
    # HEAD polls without counting a handout, then one GET reads the order.
    zk_registrar.register("cs", c, PORT)
    zk_registrar.register("cs", b, PORT + 1)
    b1, b2 = addr(b).encode(), f"{b}:{PORT + 1}".encode()
    length = len(b",".join([listing(c, a, b), b2]))
    wait_until(lambda: int(daemon.get(method="HEAD")[1]["Content-Length"]) == length,
               2.0, "the new servers in the list")
    status, _, body = daemon.get()
    assert status == 200
    assert body.split(b",")[:2] == [addr(c).encode(), addr(a).encode()], body
    assert set(body.split(b",")[2:]) == {b1, b2}, body

    # Redis back, with its data (append-only file; a frozen one never lost it).
    if fault == "freeze":
        redis.thaw()
    else:
        redis.start()
    assert redis.call("ZCARD", f"mp:oul:{a}") == 10
    back = time.monotonic()
    # Counts that flip the order: a now has the most users. (b's two servers
    # share 1000, tied: the GETs of the wait rotate them.)
    set_online(redis, a, 3000)
    set_online(redis, c, 2000)
    started = time.monotonic()
    daemon.wait_for_body(lambda body: body.split(b",")[2:] == [addr(c).encode(), addr(a).encode()]
                         and set(body.split(b",")[:2]) == {b1, b2}, wait=10.0)
    took = time.monotonic() - started
    assert log_count(daemon, r"online counts from Redis are back") >= 1
    # A few refresh intervals (1 s) plus the reconnect back-off (at most
    # 5 s; about 2 s after an outage this short, 1 s after a freeze).
    assert time.monotonic() - back < 8.0, f"new counts took {took:.1f} s"


# ================================================================================
# Redis modes and ZooKeeper auth, end to end
# ================================================================================

def ips_on_distinct_nodes(cluster: RedisCluster, prefix: str) -> list[str]:
    """Three IPs whose mp:oul keys live on three different masters."""
    chosen: dict[int, str] = {}
    for i in range(1, 255):
        ip = f"{prefix}.{i}"
        chosen.setdefault(cluster.node_for_key(f"mp:oul:{ip}").port, ip)
        if len(chosen) == 3:
            return sorted(chosen.values(), key=lambda s: int(s.rsplit(".", 1)[1]))
    raise AssertionError("keys did not spread over the masters")


def moved_replies(node: RedisServer) -> int:
    stat = node.info("errorstats").get("errorstat_MOVED", "count=0")
    return int(stat.split("=", 1)[1].split(",", 1)[0])


@pytest_twisted.ensureDeferred
async def test_redis_cluster_counts_on_every_master_and_moved_followed(
        redis_cluster: RedisCluster, zk_server: ZooKeeperServer, zk_namespace: str,
        zk_registrar: NodeRegistrar, run_daemon: Any) -> None:
    a, b, c = ips_on_distinct_nodes(redis_cluster, "10.13.0")
    owners = {ip: redis_cluster.node_for_key(f"mp:oul:{ip}") for ip in (a, b, c)}
    assert len({n.port for n in owners.values()}) == 3  # one key per master
    for ip, count in ((a, 100), (b, 200), (c, 300)):
        set_online(owners[ip], ip, count)
        zk_registrar.register("cs", ip, PORT)
    seed = redis_cluster.nodes[0]
    # No periodic slot-map reload (probe) during the test: only a MOVED can
    # teach the daemon where a slot went.
    daemon = await run_daemon(zk=zk_server.connect_string, namespace=zk_namespace,
                              redis_nodes=[f"{seed.host}:{seed.port}"], redis_mode="cluster",
                              redis_probe_interval=60.0)
    await daemon.wait_body(listing(a, b, c), 10.0)
    await daemon.wait_counts({a: 100, b: 200, c: 300}, 5.0)
    router = daemon.service("redis").router
    key = f"mp:oul:{a}"
    slot = key_slot(key)
    source = owners[a]
    assert router.loaded and router.node_for_slot(slot) == source.address
    loads = router.refreshes

    target = owners[b]
    moved_before = moved_replies(source)
    await deferToThread(redis_cluster.migrate_slot, slot, target)  # keys go along
    assert redis_cluster.node_for_key(key) is target
    # a now has the most users: the order must follow, read on the new owner.
    set_online(target, a, 1000)
    await daemon.wait_body(listing(b, c, a), 5.0)
    assert router.node_for_slot(slot) == target.address
    assert moved_replies(source) > moved_before, "the old owner answered MOVED"
    # The MOVED starts a slot-map reload in the background; the body above
    # can change before its CLUSTER SLOTS answer arrives (seen on a loaded
    # machine), so wait for the reload itself rather than assume it is done.
    await until(lambda: router.refreshes > loads, 5.0, "the MOVED to cause a slot-map reload")
    assert daemon.service("redis").healthy


@pytest_twisted.ensureDeferred
async def test_redis_sentinel_end_to_end(
        redis_sentinel: RedisSentinel, zk_server: ZooKeeperServer, zk_namespace: str,
        zk_registrar: NodeRegistrar, run_daemon: Any) -> None:
    master = redis_sentinel.master
    assert master.password == REDIS_TEST_PASSWORD and redis_sentinel.password is None
    a, b = "10.14.0.9", "10.14.0.5"
    set_online(master, a, 10)
    set_online(master, b, 500)
    zk_registrar.register("cs", a, PORT)
    zk_registrar.register("cs", b, PORT)
    daemon = await run_daemon(
        zk=zk_server.connect_string, namespace=zk_namespace,
        redis_nodes=[f"{redis_sentinel.host}:{redis_sentinel.port}"], redis_mode="sentinel",
        redis_password=REDIS_TEST_PASSWORD, sentinel_master=redis_sentinel.name)
    await daemon.wait_body(listing(a, b), 10.0)
    await daemon.wait_counts({a: 10, b: 500}, 5.0)
    cache = daemon.service("redis")
    assert cache.connection.address == master.address  # found through the sentinel
    set_online(master, a, 900)
    await daemon.wait_body(listing(b, a), 5.0)


def _anonymous_children(connect_string: str, path: str) -> Any:
    client = KazooClient(hosts=connect_string)
    client.start(timeout=10)
    try:
        return client.get_children(path)
    finally:
        client.stop()
        client.close()


@pytest_twisted.ensureDeferred
async def test_zookeeper_digest_auth_is_really_on(
        zk_server: ZooKeeperServer, zk_namespace: str, zk_registrar: NodeRegistrar,
        redis_server: RedisServer, run_daemon: Any, log_events: list[dict[str, Any]]) -> None:
    a = "10.15.0.1"
    zk_registrar.register("cs", a, PORT)  # digest "mpush", like the Java server
    # The daemon's config has no mp.zk.digest: the default, "mpush", applies.
    daemon = await run_daemon(zk=zk_server.connect_string, namespace=zk_namespace,
                              redis_nodes=[f"127.0.0.1:{redis_server.port}"])
    await daemon.wait_body(listing(a), 10.0)
    path = f"/{zk_namespace}/cluster/cs"
    with pytest.raises(NoAuthError):
        await deferToThread(_anonymous_children, zk_server.connect_string, path)

    # The same daemon with auth turned off cannot read the servers.
    blind = await run_daemon(zk=zk_server.connect_string, namespace=zk_namespace,
                             redis_nodes=[f"127.0.0.1:{redis_server.port}"], zk_digest="")
    await until(lambda: any("NoAuthError" in str(e.get("error", "")) for e in list(log_events)
                            if e.get("zk_error") == "cs"), 5.0, "a NoAuth error")
    status, _, _ = await blind.get()
    assert status == 503
