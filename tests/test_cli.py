"""``mpush-push``, the installed console script, against the daemon's service
tree with real ZooKeeper and Redis and a fake mpush node over real TCP.

The command is run as a child process (it is a blocking HTTP client), so
these tests also check that the script is installed and starts alone.
"""

from __future__ import annotations

import io
import json
import os
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.internet.utils import getProcessOutputAndValue

from tests.harness.daemon import free_port
from tests.harness.redis import RedisServer
from tests.harness.stack import Stack, running_stack
from tests.harness.web import request, sleep
from tests.harness.zookeeper import ZooKeeperServer

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

SCRIPT = Path(sys.executable).parent / "mpush-push"
TOKEN = "cli-token-0123456789abcdef"
UDP = "net {\n    gateway-server-net = udp\n    gateway-client-port = 0\n  }"


@pytest_twisted.async_yield_fixture
async def token_stack(tmp_path: Path, zk_server: ZooKeeperServer, zk_namespace: str,
                      redis_server: RedisServer) -> AsyncIterator[Stack]:
    async with running_stack(tmp_path, zk_server.connect_string, zk_namespace,
                             redis_server.port,
                             alloc_extra=f'\n    push-token = "{TOKEN}"') as running:
        yield running


async def cli(*args: str, url: str | None = None, **env: str) -> tuple[str, str, int]:
    """(stdout, stderr, exit status) of one run of the installed script."""
    assert SCRIPT.exists(), f"the console script is not installed at {SCRIPT}"
    environment = {k: v for k, v in os.environ.items() if not k.startswith("MPUSH_")}
    environment.update(env)
    argv = ([f"--url={url}"] if url else []) + list(args)
    out, err, code = await getProcessOutputAndValue(str(SCRIPT), argv, env=environment,
                                                    reactor=reactor)
    return out.decode(), err.decode(), code


@pytest_twisted.ensureDeferred
async def test_send_to_a_user_online_succeeds_with_a_table(stack: Stack) -> None:
    node = await stack.node()
    node.add_user("alice")
    out, err, code = await cli("send", "--user", "alice", "--hello", "hi", url=stack.url)
    assert code == 0, (out, err)
    header, row, summary = out.splitlines()
    assert header.split() == ["USER", "CLIENT", "RESULT", "REASON", "GATEWAY", "MS"]
    assert row.split()[:3] == ["alice", "mobile", "success"]
    assert node.address in row
    assert summary == "1 delivered"
    assert "\x1b[" not in out, "no colour when stdout is not a terminal"
    assert [r.push.user_id for r in node.received] == ["alice"]


@pytest_twisted.ensureDeferred
async def test_send_with_one_user_offline_exits_1(stack: Stack) -> None:
    node = await stack.node()
    node.add_user("alice")
    out, err, code = await cli("send", "--user", "alice", "--user", "nobody",
                               "--content", "raw", "--ack", "auto", "--timeout", "5s",
                               url=stack.url)
    assert code == 1, (out, err)
    rows = {line.split()[0]: line.split() for line in out.splitlines()[1:-1]}
    assert rows["alice"][2:4] == ["success", "-"]
    assert rows["nobody"][2:4] == ["offline", "no_route"]
    assert out.splitlines()[-1] == "1 delivered, 1 offline (no_route)"
    pushed = node.received[-1].push
    assert pushed.content == b"raw" and pushed.timeout == 4500  # 5 s less the server's 500 ms


@pytest_twisted.ensureDeferred
async def test_send_json_and_content_from_a_file(stack: Stack, tmp_path: Path) -> None:
    node = await stack.node()
    node.add_user("bob")
    content = tmp_path / "content.json"
    content.write_text('{"title": "t", "n": 1}')
    out, err, code = await cli("--json", "send", "--user", "bob", "--content", f"@{content}",
                               url=stack.url)
    assert code == 0, (out, err)
    answer = json.loads(out)
    assert [r["result"] for r in answer["results"]] == ["success"]
    assert answer["summary"]["success"] == 1
    # A JSON object file is sent as the object (compact JSON), not as its text.
    assert json.loads(node.received[-1].push.content) == {"title": "t", "n": 1}


@pytest_twisted.ensureDeferred
async def test_health(stack: Stack) -> None:
    await stack.node()
    out, err, code = await cli("--json", "health", url=stack.url)
    document = json.loads(out)
    assert document["status"] in ("ok", "degraded", "unavailable")
    assert code == (0 if document["status"] == "ok" else 1), (out, err)
    out, _, _ = await cli("health", url=stack.url)
    assert out.splitlines()[0] == document["status"]


@pytest_twisted.ensureDeferred
async def test_route_shows_the_users_routes_and_cluster_the_servers(
        stack: Stack, redis_server: RedisServer) -> None:
    node = await stack.node()
    node.add_user("alice")
    node.add_user("alice", os_name="windows", online=False)
    redis_server.call("HSET", "mp:ur:alice", "3", "{broken")
    out, err, code = await cli("route", "alice", url=stack.url)
    assert code == 0, (out, err)
    header, mobile, pc, bad = out.splitlines()
    assert header.split() == ["CLIENT", "ONLINE", "CONNECTION", "SERVER", "GATEWAY", "OS",
                              "VERSION"]
    assert mobile.split()[:5] == ["mobile", "yes", node.cs_address, node.address, "android"]
    assert pc.split()[:5] == ["pc", "no", node.cs_address, node.address, "windows"]
    assert bad.split()[1] == "malformed" and bad.endswith("field 3: not JSON")
    out, err, code = await cli("route", "nobody", url=stack.url)
    assert code == 1 and "no routes for nobody" in out
    out, err, code = await cli("--json", "cluster", url=stack.url)
    assert code == 0, (out, err)
    document = json.loads(out)
    assert [g["address"] for g in document["gatewayServers"]] == [node.address]
    out, err, code = await cli("cluster", url=stack.url)
    assert code == 0, (out, err)
    lines = out.splitlines()
    assert lines[0].split()[:3] == ["#", "CONNECTION", "SERVER"]
    listed = [line.split()[1] for line in lines[1:lines.index("")]]
    assert listed == [s["address"] for s in document["connectionServers"]]
    assert any(line.split()[:2] == [node.address, "1/1"] for line in lines)
    assert "ZooKeeper: connected" in lines and "Redis (single): reachable" in lines


@pytest_twisted.ensureDeferred
async def test_an_unreachable_daemon_says_what_to_do() -> None:
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    out, err, code = await cli("health", url=url)
    assert code == 2 and out == ""
    assert err.strip() == (f"mpush-push: cannot reach {url}: connection refused — is"
                           " mpush-alloc running? set --url or MPUSH_URL")


@pytest_twisted.ensureDeferred
async def test_the_url_from_the_environment() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    _, err, code = await cli("health", MPUSH_URL=url)
    assert code == 2 and f"cannot reach {url}:" in err


@pytest_twisted.ensureDeferred
async def test_token_is_sent_and_never_printed(token_stack: Stack) -> None:
    node = await token_stack.node()
    node.add_user("carol")
    out, err, code = await cli("send", "--user", "carol", "--hello", "hi", url=token_stack.url)
    assert code == 2 and out == ""
    assert "answered 401" in err and "--token or MPUSH_TOKEN" in err
    wrong = "wrong-token-0123456789"
    out, err, code = await cli("send", "--user", "carol", "--hello", "hi",
                               url=token_stack.url, MPUSH_TOKEN=wrong)
    assert code == 2 and wrong not in out + err
    out, err, code = await cli("--token", TOKEN, "send", "--user", "carol", "--hello", "hi",
                               url=token_stack.url)
    assert code == 0, (out, err)
    assert TOKEN not in out + err


@pytest.mark.parametrize("args, says", [
    (["send", "--hello", "hi"], "--user ID (repeatable) or --broadcast"),
    (["send", "--user", "u", "--hello", "hi", "--tag", "t"], "go with --broadcast"),
    (["send", "--user", "u", "--content", "@/nonexistent/file.json"], "cannot read --content"),
    (["send", "--user", "u", "--hello", "hi", "--timeout", "soon"], "not a duration"),
    (["send", "--user", "u"], "one of the arguments --hello --content is required"),
])
@pytest_twisted.ensureDeferred
async def test_usage_errors_exit_2_before_any_request(args: list[str], says: str) -> None:
    url = f"http://127.0.0.1:{free_port()}"  # would fail differently if it were asked
    out, err, code = await cli(*args, url=url)
    assert code == 2 and out == ""
    assert says in err and "cannot reach" not in err


class _Terminal:
    def __init__(self, tty: bool) -> None:
        self.tty = tty

    def isatty(self) -> bool:
        return self.tty


def test_colour_only_on_a_terminal_without_no_color(monkeypatch: pytest.MonkeyPatch) -> None:
    from mpush.cli.tables import Painter, table

    monkeypatch.delenv("NO_COLOR", raising=False)
    paint = Painter(_Terminal(True))  # type: ignore[arg-type]
    text = table(["A", "RESULT"], [["x", "success"], ["yy", "failure"]], paint=paint, column=1,
                 colours=["green", "red"])
    assert text.splitlines() == ["A   RESULT", "x   \x1b[32msuccess\x1b[0m",
                                 "yy  \x1b[31mfailure\x1b[0m"]
    assert not Painter(_Terminal(False)).enabled
    monkeypatch.setenv("NO_COLOR", "1")
    assert not Painter(_Terminal(True)).enabled


# -- cluster: WebSocket servers, the mass-drop hold, handout sharing, UDP gateways --------


async def cluster_when(stack: Stack, check: Callable[[dict[str, Any]], bool],
                       what: str) -> dict[str, Any]:
    """``/cluster`` once ``check`` holds of it; fails the test after 15 s."""
    deadline = time.monotonic() + 15.0
    while True:
        _, _, body = await request("GET", stack.url + "/cluster")
        document: dict[str, Any] = json.loads(body)
        if check(document):
            return document
        assert time.monotonic() < deadline, f"waited 15 s for {what}: {document}"
        await sleep(0.05)


def rows_under(lines: list[str], header: str) -> list[list[str]]:
    """The rows of the table whose header line starts with ``header``, cell by cell."""
    start = next(i for i, line in enumerate(lines) if line.startswith(header))
    end = lines.index("", start)
    return [line.split() for line in lines[start:end]]


@pytest_twisted.ensureDeferred
async def test_cluster_shows_websocket_servers_held_servers_and_udp_gateways(
        tmp_path: Path, zk_server: ZooKeeperServer, zk_namespace: str,
        redis_server: RedisServer) -> None:
    async with running_stack(tmp_path, zk_server.connect_string, zk_namespace,
                             redis_server.port, extra=UDP) as stack:
        kept = await stack.node(udp=True, host="127.0.0.2", ws_port=8080)
        gone = [await stack.node(udp=True, host=h) for h in ("127.0.0.3", "127.0.0.4")]
        kept.add_user("alice")
        await cluster_when(stack, lambda d: len(d["connectionServers"]) == 3
                           and len(d["websocket"]["servers"]) == 1, "3 servers and 1 ws")
        status, answer = await stack.push({"userIds": ["alice"], "content": "hi"})
        assert status == 200 and answer["summary"]["success"] == 1, answer
        # Two of three connection servers leave at once: a mass drop, held.
        for node in gone:
            node.unregister()
        document = await cluster_when(
            stack, lambda d: sum(s["held"] for s in d["connectionServers"]) == 2, "the hold")
        out, err, code = await cli("cluster", url=stack.url)
        assert code == 0, (out, err)
        lines = out.splitlines()
        servers = rows_under(lines, "#  CONNECTION SERVER")
        assert servers[0] == ["#", "CONNECTION", "SERVER", "ONLINE", "HANDED", "OUT", "WEIGHT",
                              "LOAD", "KNOWN", "SINCE", "HELD"]
        held = {row[1]: row[-3:] for row in servers[1:] if row[-1] == "left"}
        assert sorted(held) == sorted(n.cs_address for n in gone)
        assert all(row[0].isdigit() and row[1:] == ["s", "left"] for row in held.values())
        assert [row[1] for row in rows_under(lines, "#  WEBSOCKET SERVER")[1:]] == [
            "127.0.0.2:8080"]
        assert ("Held after a mass drop: 2 servers gone from ZooKeeper, still handed out"
                " (see HELD)") in lines
        assert "Handout sharing: on, last worked" in out  # on by default (250 ms)
        udp = next(line for line in lines if line.startswith("Gateways (udp): "))
        # The nodes that left took their gateways along; one push: one datagram each way.
        assert udp == ("Gateways (udp): 1 of 1 reachable; datagrams: 1 sent, 1 received,"
                       " 0 dropped, 0 not sent")
        assert "SHARED" not in out, "no other instance handed anything out"
        # --json is /cluster as it is: no /health fact added.
        out, err, code = await cli("--json", "cluster", url=stack.url)
        assert code == 0, (out, err)
        raw = json.loads(out)
        assert set(raw) == set(document) and "gateways" not in raw


def test_cluster_text_without_websocket_servers_over_tcp_and_with_shared_handouts() -> None:
    from mpush.cli.cluster_view import cluster_blocks
    from mpush.cli.tables import Painter

    def row(position: int, address: str, shared: int) -> dict[str, Any]:
        return {"position": position, "address": address, "online": 2.0, "handedOut": 1,
                "sharedHandedOut": shared, "weight": 1.0, "load": 3.0 + shared,
                "knownSince": "2025-05-02T08:14:03.512Z", "held": False,
                "heldSecondsLeft": None}

    document = {"connectionServers": [row(1, "10.0.0.6:3000", 0), row(2, "10.0.0.7:3000", 4)],
                "websocket": {"servers": [], "serving": False, "lastRefresh": {}},
                "gatewayServers": [], "zookeeper": {"state": "connected"},
                "redis": {"mode": "single", "reachable": True},
                "lastRefresh": {"ageSeconds": 1.31}, "serving": True}
    failing = {"lastExchangeAgeSeconds": 12.0, "lastError": "redis: down"}
    health = {"allocation": {"handoutSharing": failing},
              "gateways": {"transport": "tcp", "known": 2, "connected": 1, "datagrams": None}}
    servers, websocket, gateways, states = cluster_blocks(document, health,
                                                          Painter(io.StringIO()))
    assert [line.split() for line in servers.splitlines()] == [
        ["#", "CONNECTION", "SERVER", "ONLINE", "HANDED", "OUT", "SHARED", "WEIGHT", "LOAD",
         "KNOWN", "SINCE"],
        ["1", "10.0.0.6:3000", "2", "1", "0", "1", "3", "2025-05-02T08:14:03.512Z"],
        ["2", "10.0.0.7:3000", "2", "1", "4", "1", "7", "2025-05-02T08:14:03.512Z"]]
    assert websocket == "no WebSocket server registered in ZooKeeper"
    assert gateways == "no gateway server registered in ZooKeeper"
    assert states.splitlines()[2:] == [
        "Gateways (tcp): 1 of 2 connected",
        "Handout sharing: failing (last worked 12.0 s ago): redis: down",
        "Last refresh: 1.3 s ago"]
    health["allocation"]["handoutSharing"] = None
    assert "Handout sharing: off (this instance counts its handouts alone)" in cluster_blocks(
        document, health, Painter(io.StringIO()))[3]
