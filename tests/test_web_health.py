"""``GET /health``: unit tests with fakes through a real Site on a
StringTransport, and one end-to-end test with the daemon's service tree,
real ZooKeeper and a Redis that is stopped and restarted."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted

from mpush.cluster import kazoo_logs as logbridge
from mpush.daemon.tap import AllocDaemon, Options, makeService
from mpush.services.ordered import OrderedService
from mpush.services.status import Status
from mpush.web.health import HealthResource
from mpush.web.site import AllocSite
from tests.fakes import SECRET, FakeDrain, FakePolicy, Fakes
from tests.harness.daemon import free_port, write_config
from tests.harness.fakenode import FakeNode
from tests.harness.redis import RedisServer
from tests.harness.web import request as http_request
from tests.harness.web import sleep
from tests.harness.zookeeper import ZooKeeperServer
from tests.http_exchange import request, split


def get(site: AllocSite, method: bytes = b"GET", path: bytes = b"/health",
        ) -> tuple[int, dict[str, str], bytes]:
    raw = method + b" " + path + b" HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n"
    return split(request(site, raw))


def health(site: AllocSite) -> tuple[int, dict[str, Any]]:
    status, headers, body = get(site)
    assert headers["content-type"] == "application/json"
    assert headers["cache-control"] == "no-store"
    return status, json.loads(body)


# -- unit tests -----------------------------------------------------------------


def test_all_fine_is_200_ok_with_every_dependency() -> None:
    fakes = Fakes()
    site, _ = fakes.site()
    status, doc = health(site)
    assert status == 200
    assert doc == {
        "status": "ok",
        "reasons": [],
        "draining": False,
        "allocation": {"servers": 2, "stale": False, "lastRefreshAgeSeconds": 10.0,
                       "lastRefreshError": None, "refreshes": 7, "held": 0,
                       "handoutSharing": None},
        "websocket": {"servers": 1, "stale": False, "lastRefreshAgeSeconds": 10.0,
                      "lastRefreshError": None, "refreshes": 7, "held": 0, "serving": True},
        "zookeeper": {"state": "connected", "sessionId": "0x1000abc", "initialized": True,
                      "connectionServers": 2, "gatewayServers": 1, "websocketServers": 1,
                      "lastError": None},
        "redis": {"mode": "single", "reachable": True, "lastError": None},
        "gateways": {
            "known": 2, "connected": 2, "connections": 4, "configuredConnections": 4,
            "pending": 4,
            "servers": {
                "10.0.0.5:3001": {"connected": 2, "configured": 2, "pending": 3},
                "10.0.0.6:3001": {"connected": 2, "configured": 2, "pending": 1},
            },
            "transport": "tcp",
            "datagrams": None,
        },
    }


def test_age_follows_the_clock_and_is_null_before_any_refresh() -> None:
    fakes = Fakes()
    site, _ = fakes.site()
    fakes.clock.advance(2.5)
    assert health(site)[1]["allocation"]["lastRefreshAgeSeconds"] == 12.5
    fakes.refresher.last_success = None
    assert health(site)[1]["allocation"]["lastRefreshAgeSeconds"] is None
    # A refresh stamped "after now" (clock stepped back) never reads negative.
    fakes.refresher.last_success = fakes.clock.seconds() + 5
    assert health(site)[1]["allocation"]["lastRefreshAgeSeconds"] == 0.0


def _break_zk_suspended(f: Fakes) -> None:
    f.zk.state = "suspended"


def _break_zk_lost(f: Fakes) -> None:
    f.zk.state, f.zk.session_id = "lost", None


def _break_zk_connecting(f: Fakes) -> None:
    f.zk.state, f.zk.session_id = "connecting", None
    f.zk.last_error = "cannot connect to 127.0.0.1:2999: Connection refused"


def _break_zk_not_loaded(f: Fakes) -> None:
    f.zk.initialized = False


def _break_redis(f: Fakes) -> None:
    f.cache.healthy = False
    f.cache.last_error = "redis 127.0.0.1:6379: cannot connect: Connection refused"


def _break_refresh(f: Fakes) -> None:
    f.refresher.last_error = "no answer within 30 s"


def _break_stale(f: Fakes) -> None:
    f.refresher.stale = True
    f.zk.cs = {}


def _break_mass_drop(f: Fakes) -> None:
    # Two of three left ZooKeeper at once: kept in the answer for a while.
    f.refresher.held = {"10.0.0.7:3000": 120.0, "10.0.0.8:3000": 120.0}


def _break_gateway_down(f: Fakes) -> None:
    f.gateways.servers["10.0.0.6:3001"]["connected"] = 0


def _break_gateway_partial(f: Fakes) -> None:
    f.gateways.servers["10.0.0.6:3001"]["connected"] = 1


def _break_gateway_silent(f: Fakes) -> None:
    # Connected, but its last requests timed out (frozen): GatewayPool.status.
    f.gateways.servers["10.0.0.6:3001"]["unanswering"] = 1


def _break_no_gateway(f: Fakes) -> None:
    f.gateways.servers = {}
    f.zk.gs = {}


@pytest.mark.parametrize(("breakage", "reason"), [
    (_break_zk_suspended, "zookeeper suspended"),
    (_break_zk_lost, "zookeeper lost"),
    (_break_zk_connecting, "zookeeper connecting"),
    (_break_zk_not_loaded, "zookeeper view not loaded yet"),
    (_break_redis, "redis unreachable"),
    (_break_refresh, "online counts not refreshed"),
    (_break_stale, "connection server list stale"),
    (_break_mass_drop, "connection servers held after a mass drop: 2"),
    (_break_gateway_down, "gateway servers not connected: 1 of 2"),
    (_break_gateway_partial, "gateway servers partly connected: 1 of 2"),
    (_break_gateway_silent, "gateway servers not answering: 1 of 2"),
    (_break_no_gateway, "no gateway server known"),
])
def test_impaired_dependency_is_200_degraded_with_its_reason(breakage: Any, reason: str) -> None:
    fakes = Fakes()
    breakage(fakes)
    site, _ = fakes.site()
    status, doc = health(site)
    # Allocations are still served from the last known list: 200, not 503.
    assert status == 200
    assert doc["status"] == "degraded"
    assert doc["reasons"] == [reason]


def test_degraded_sections_say_what_is_wrong() -> None:
    fakes = Fakes()
    _break_zk_lost(fakes)
    _break_redis(fakes)
    _break_gateway_down(fakes)
    site, _ = fakes.site()
    status, doc = health(site)
    assert status == 200
    assert doc["reasons"] == ["zookeeper lost", "redis unreachable",
                              "gateway servers not connected: 1 of 2"]
    assert doc["zookeeper"]["state"] == "lost"
    assert doc["zookeeper"]["sessionId"] is None
    assert doc["zookeeper"]["lastError"] is None
    assert doc["redis"] == {"mode": "single", "reachable": False,
                            "lastError": fakes.cache.last_error}
    assert doc["gateways"]["connected"] == 1
    assert doc["gateways"]["connections"] == 2
    assert doc["gateways"]["servers"]["10.0.0.6:3001"]["connected"] == 0


def test_zookeeper_last_error_is_shown() -> None:
    fakes = Fakes()
    _break_zk_connecting(fakes)
    site, _ = fakes.site()
    _, doc = health(site)
    assert doc["zookeeper"]["lastError"] == "cannot connect to 127.0.0.1:2999: Connection refused"


def test_no_server_known_is_503_unavailable() -> None:
    fakes = Fakes(policy=FakePolicy(()))
    site, _ = fakes.site()
    status, doc = health(site)
    assert status == 503
    assert doc["status"] == "unavailable"
    assert doc["reasons"] == ["no connection server known yet"]
    assert doc["allocation"]["servers"] == 0


def test_503_lists_impairments_after_the_blocking_reason() -> None:
    fakes = Fakes(policy=FakePolicy(()))
    _break_redis(fakes)
    site, _ = fakes.site()
    status, doc = health(site)
    assert status == 503
    assert doc["reasons"] == ["no connection server known yet", "redis unreachable"]


def test_draining_flag_is_503() -> None:
    fakes = Fakes(drain=FakeDrain(draining=True))
    site, _ = fakes.site()
    status, doc = health(site)
    assert status == 503
    assert doc["status"] == "unavailable"
    assert doc["draining"] is True
    assert doc["reasons"] == ["draining"]


def test_the_drains_flag_is_read_on_every_request() -> None:
    fakes = Fakes()
    site, _ = fakes.site()
    assert health(site)[0] == 200
    # What the drain sequence does: set its own flag; /health follows.
    assert fakes.drain is not None
    fakes.drain.draining = True
    status, doc = health(site)
    assert (status, doc["draining"]) == (503, True)
    fakes.drain.draining = False
    assert health(site)[0] == 200


def test_without_a_drain_it_is_not_draining() -> None:
    site, _ = Fakes(drain=None).site()
    status, doc = health(site)
    assert (status, doc["draining"]) == (200, False)


def test_a_status_missing_a_part_is_refused() -> None:
    fakes = Fakes()
    with pytest.raises(ValueError, match="redis"):
        HealthResource(Status(fakes.zk, None, fakes.gateways, fakes.refresher, fakes.policy))


def test_head_has_get_status_and_length_without_body() -> None:
    fakes = Fakes()
    site, _ = fakes.site()
    _, _, get_body = get(site)
    status, headers, body = get(site, b"HEAD")
    assert status == 200
    assert body == b""
    assert headers["content-length"] == str(len(get_body))
    assert headers["cache-control"] == "no-store"
    fakes.policy.addresses = ()
    status, _, body = get(site, b"HEAD")
    assert (status, body) == (503, b"")


@pytest.mark.parametrize("method", [b"POST", b"PUT", b"DELETE", b"OPTIONS", b"PATCH"])
def test_other_methods_are_405_json(method: bytes) -> None:
    site, _ = Fakes().site()
    status, headers, body = get(site, method)
    assert status == 405
    assert headers["allow"] == "GET, HEAD"
    assert headers["content-type"] == "application/json"
    assert json.loads(body) == {"error": f"method {method.decode()} not allowed",
                                "status": 405, "allow": ["GET", "HEAD"]}


@pytest.mark.parametrize("path", [b"/health/", b"/health/x", b"/healthz"])
def test_paths_below_or_beside_health_are_404_json(path: bytes) -> None:
    site, _ = Fakes().site()
    status, headers, body = get(site, path=path)
    assert status == 404
    assert headers["content-type"] == "application/json"
    assert json.loads(body)["status"] == 404


def test_no_secret_in_the_body_even_if_an_error_text_carried_it() -> None:
    fakes = Fakes()
    fakes.cache.healthy = False
    fakes.cache.last_error = f"redis 127.0.0.1:6379: AUTH {SECRET} refused"
    fakes.refresher.last_error = f"failed with {SECRET}"
    site, _ = fakes.site()
    _, _, body = get(site)
    assert SECRET.encode() not in body
    doc = json.loads(body)
    assert doc["redis"]["lastError"] == "redis 127.0.0.1:6379: AUTH *** refused"
    assert doc["allocation"]["lastRefreshError"] == "failed with ***"


def test_answering_does_no_io() -> None:
    fakes = Fakes()
    site, _ = fakes.site()
    for _ in range(3):
        get(site)
        get(site, b"HEAD")
    assert fakes.cache.io_calls == 0


# -- end to end ---------------------------------------------------------------


@dataclass
class Stack:
    daemon: AllocDaemon
    port: int
    redis: RedisServer

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def health(self) -> tuple[int, dict[str, Any]]:
        status, _, body = await http_request("GET", self.url + "/health")
        return status, json.loads(body)


@pytest_twisted.async_yield_fixture
async def stack(tmp_path: Path, zk_server: ZooKeeperServer, zk_namespace: str,
                fresh_redis_server: RedisServer) -> AsyncIterator[Stack]:
    port = free_port()
    config = write_config(tmp_path / "mpush.conf", port=port, zk=zk_server.connect_string,
                          namespace=zk_namespace,
                          redis_nodes=[f"127.0.0.1:{fresh_redis_server.port}"])
    options = Options()
    options.parseOptions(["--config", str(config)])
    daemon = makeService(options)
    # A gateway-only fake node (no Redis of its own): one connection server
    # and one gateway server in ZooKeeper, so "ok" is reachable.
    node = FakeNode(None, zk_server.connect_string, namespace=zk_namespace)
    # The plain ordered start: AllocDaemon's own would stop the reactor (and
    # so the test run) on a failed start, and freeze the test process's GC.
    await OrderedService.startService(daemon)
    try:
        node.start()
        yield Stack(daemon, port, fresh_redis_server)
    finally:
        await daemon.stopService()
        await node.stop()
        # makeService bridged stdlib logging into twisted's; undo for pytest.
        logbridge.uninstall("")


@pytest.mark.integration
@pytest.mark.timeout(90)
@pytest_twisted.ensureDeferred
async def test_redis_stop_shows_degraded_while_get_root_serves_then_recovers(
        stack: Stack) -> None:
    last: dict[str, Any] = {}

    async def reaches(status: str, timeout: float, reason: str | None = None) -> None:
        async def check() -> bool:
            code, doc = await stack.health()
            last.clear()
            last.update(doc, code=code)
            return doc["status"] == status and (reason is None or reason in doc["reasons"])

        # tests.harness.web.until() takes a sync predicate: this one awaits.
        await _poll(check, timeout, f"/health {status} {reason or ''} (last: {last})")

    await reaches("ok", 15.0)
    assert last["code"] == 200
    assert last["zookeeper"]["state"] == "connected"
    assert last["zookeeper"]["sessionId"].startswith("0x")
    assert last["redis"] == {"mode": "single", "reachable": True, "lastError": None}
    assert last["allocation"]["servers"] == 1
    assert last["gateways"]["known"] == 1 and last["gateways"]["connected"] == 1

    stack.redis.stop()
    try:
        await reaches("degraded", 15.0, "redis unreachable")
        assert last["code"] == 200
        assert last["redis"]["reachable"] is False
        assert last["redis"]["lastError"]
        # Allocations still come from the last known list.
        code, _, body = await http_request("GET", stack.url + "/")
        assert code == 200
        assert body.count(b":") == 1
    finally:
        stack.redis.start()

    await reaches("ok", 20.0)

    assert last["redis"]["reachable"] is True
    assert last["redis"]["lastError"] is None
    assert last["allocation"]["lastRefreshAgeSeconds"] is not None
    assert last["allocation"]["lastRefreshAgeSeconds"] < 5.0


async def _poll(check: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await sleep(0.1)
