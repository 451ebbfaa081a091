"""The daemon as an operator runs it: ``twistd mpush-alloc`` in a child
process, against real ZooKeeper and Redis servers started by the tests."""

from __future__ import annotations

import json
import os
import re
import shlex
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import mpush
from tests.harness.daemon import (
    BIN,
    Daemon,
    free_port,
    held_port,
    refused_ports,
    write_config,
)
from tests.harness.redis import RedisServer
from tests.harness.registry import NodeRegistrar
from tests.harness.zookeeper import ZooKeeperServer

pytestmark = pytest.mark.integration


def twistd(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN / "twistd"), *args], capture_output=True, text=True,
                          timeout=60, cwd=cwd, stdin=subprocess.DEVNULL)


def online(redis: RedisServer, ip: str, count: int) -> None:
    """Make mp:oul:<ip> hold ``count`` users, as the connection servers do."""
    key = f"mp:oul:{ip}"
    redis.call("DEL", key)
    for i in range(count):
        redis.call("ZADD", key, str(i), f"user-{ip}-{i}")


@pytest.fixture
def start_daemon(tmp_path: Path, zk_server: ZooKeeperServer, zk_namespace: str,
                 redis_server: RedisServer) -> Iterator[Callable[..., Daemon]]:
    made: list[Daemon] = []

    def start(*, foreground: bool = True, protocol: str = "http",
              alloc_extra: str = "") -> Daemon:
        port = free_port()
        config = write_config(tmp_path / "mpush.conf", port=port,
                              zk=zk_server.connect_string, namespace=zk_namespace,
                              redis_nodes=[f"127.0.0.1:{redis_server.port}"],
                              protocol=protocol, alloc_extra=alloc_extra)
        daemon = Daemon(tmp_path, config, port=port, foreground=foreground, protocol=protocol)
        made.append(daemon)
        return daemon.start()

    yield start
    for daemon in made:
        daemon.kill()


@pytest.fixture
def registrar(zk_server: ZooKeeperServer, zk_namespace: str,
              make_registrar: Callable[..., NodeRegistrar]) -> NodeRegistrar:
    return make_registrar(zk_server.connect_string, namespace=zk_namespace)


def test_twistd_lists_the_plugin() -> None:
    result = twistd("--help")
    assert result.returncode == 0
    assert re.search(r"^\s+mpush-alloc\s", result.stdout, re.MULTILINE), result.stdout


def test_plugin_version_is_mpush_allocs() -> None:
    result = twistd("mpush-alloc", "--version")
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"mpush-alloc {mpush.__version__}\n"


def test_plugin_help_documents_its_options() -> None:
    result = twistd("mpush-alloc", "--help")
    assert result.returncode == 0
    assert "--config=" in result.stdout
    assert "HOCON" in result.stdout


@pytest.mark.parametrize(("body", "key"), [
    ("mp.net.alloc-server-port = 70000", "mp.net.alloc-server-port"),
    ("mp.net.alloc-server-protocol = gopher", "mp.net.alloc-server-protocol"),
    ("mp.redis.cluster-model = galaxy", "mp.redis.cluster-model"),
    ("mp.net.gateway-server-net = udp\nmp.net.gateway-server-multicast = 10.1.1.1",
     "mp.net.gateway-server-multicast"),
    ("mp.net.alloc-server-protocol = https\nmp.alloc.tls-cert = /nonexistent/cert.pem\n"
     "mp.alloc.tls-key = /nonexistent/key.pem", "mp.alloc.tls-cert"),
    ("mp { net { alloc-server-port = ", None),
])
def test_config_errors_are_one_clear_line(tmp_path: Path, body: str, key: str | None) -> None:
    config = tmp_path / "bad.conf"
    config.write_text(body + "\n")
    result = twistd("-n", "mpush-alloc", "--config", str(config), cwd=tmp_path)
    output = (result.stdout + result.stderr).strip()
    assert result.returncode != 0
    assert len(output.splitlines()) == 1, output
    assert output.startswith(f"mpush-alloc: config error: {config}: ")
    if key is not None:
        assert f": {key}: " in output
    assert "Traceback" not in output and "Usage" not in output


def test_missing_config_file_is_one_line(tmp_path: Path) -> None:
    result = twistd("-n", "mpush-alloc", "--config", str(tmp_path / "nope.conf"))
    output = (result.stdout + result.stderr).strip()
    assert result.returncode != 0
    assert output.count("\n") == 0 and "nope.conf" in output


def test_serves_java_registered_servers_least_loaded_first(
        start_daemon: Callable[..., Daemon], registrar: NodeRegistrar,
        redis_server: RedisServer) -> None:
    online(redis_server, "10.1.0.1", 30)
    online(redis_server, "10.1.0.2", 10)
    online(redis_server, "10.1.0.3", 20)
    online(redis_server, "203.0.113.9", 5)
    registrar.register("cs", "10.1.0.1", 3000)
    registrar.register("cs", "10.1.0.2", 3000)
    registrar.register("cs", "10.1.0.3", 3001)
    # A NATed server: clients must be sent to its public_ip.
    registrar.register("cs", "192.168.7.7", 3000, {"weight": 1, "public_ip": "203.0.113.9"})
    registrar.register("cs", "fe80::1", 3000)  # IPv6: the Java SDK cannot parse it
    daemon = start_daemon()
    expected = b"203.0.113.9:3000,10.1.0.2:3000,10.1.0.3:3001,10.1.0.1:3000"
    # HEAD never counts as an allocation, so polling with it keeps the order.
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        status, headers, _ = daemon.get("/", method="HEAD")
        if status == 200 and int(headers["Content-Length"]) == len(expected):
            break
        time.sleep(0.05)
    status, headers, body = daemon.get("/")
    assert status == 200
    assert headers["Content-Type"] == "text/plain; charset=utf-8"
    assert body == expected
    log = daemon.log()
    assert len(re.findall(r"ignoring connection server node .*IPv6", log)) == 1, (
        "an IPv6 server is logged once")
    assert "message body" not in log  # HEAD answered without a body


def test_nodes_with_addresses_clients_cannot_use_are_never_served(
        start_daemon: Callable[..., Daemon], registrar: NodeRegistrar) -> None:
    # What GET / served verbatim (the SDK splits on ',' then ':'), left out as
    # "IPv6", or took as a port: each node left out, logged once with why, counted.
    bad_hosts = {"comma": "10.9.9.9,6.6.6.6", "crlf": "10.9.9.9\r\n6.6.6.6",
                 "nul": "10.9.9.9\x00", "space": "10.9.9.9 6.6.6.6", "accent": "10.9.9.\u00e9",
                 "long": "a" * 1000, "ipv6": "fe80::1"}
    reasons = {"comma": "it holds ','", "crlf": "it holds '\\r'", "nul": "it holds '\\x00'",
               "space": "it holds ' '", "accent": "it holds '\u00e9'",
               "long": "1000 characters long", "ipv6": "is an IPv6 address",
               "public": "it holds ','", "port0": "port out of range: 0",
               "port65536": "port out of range: 65536", "portx": "non-numeric port",
               "gateway": "it holds ','"}
    for name, host in bad_hosts.items():
        registrar.register("cs", host, 3000, name=name)
    registrar.register("cs", "10.9.0.2", 3000, {"public_ip": "10.9.9.9,6.6.6.6"}, name="public")
    for name, port in (("port0", 0), ("port65536", 65536), ("portx", "x")):
        registrar.register_raw("cs", b'{"host":"10.9.0.3","port":%s}' % json.dumps(port).encode(),
                               name=name)
    registrar.register("gs", "10.9.9.9,6.6.6.6", 3001, name="gateway")
    registrar.register("cs", "10.9.0.1", 3000)
    daemon = start_daemon()
    daemon.wait_for_body(lambda body: body == b"10.9.0.1:3000")
    registrar.register("cs", "cs-2.example", 3000)  # a change: a new round, nothing relogged
    daemon.wait_for_body(lambda body: b"cs-2.example:3000" in body)

    _, _, metrics = daemon.get("/metrics")
    assert b"\nmpush_alloc_zookeeper_rejected_connection_servers 11.0\n" in metrics
    assert b"\nmpush_alloc_zookeeper_rejected_gateway_servers 1.0\n" in metrics
    _, _, body = daemon.get("/")
    assert sorted(body.split(b",")) == [b"10.9.0.1:3000", b"cs-2.example:3000"]
    ignored = [line for line in daemon.log().splitlines() if "ZooKeeper: ignoring" in line]
    for name, reason in reasons.items():
        lines = [line for line in ignored if f"/{name}: " in line]
        assert len(lines) == 1, (name, ignored)
        assert reason in lines[0], lines[0]
    assert len(ignored) == len(reasons)
    assert all(line.isprintable() for line in ignored)  # no raw control characters


def test_nodes_added_and_removed_show_within_a_second(
        start_daemon: Callable[..., Daemon], registrar: NodeRegistrar) -> None:
    first = registrar.register("cs", "10.2.0.1", 3000)
    daemon = start_daemon()
    daemon.wait_for_body(lambda body: body == b"10.2.0.1:3000")
    started = time.monotonic()
    registrar.register("cs", "10.2.0.2", 3000)
    daemon.wait_for_body(lambda body: b"10.2.0.2:3000" in body, wait=1.0)
    added = time.monotonic() - started
    started = time.monotonic()
    registrar.unregister(first)
    daemon.wait_for_body(lambda body: body == b"10.2.0.2:3000", wait=1.0)
    removed = time.monotonic() - started
    assert added < 1.0 and removed < 1.0


def test_count_changes_show_after_a_refresh(
        start_daemon: Callable[..., Daemon], registrar: NodeRegistrar,
        redis_server: RedisServer) -> None:
    online(redis_server, "10.3.0.1", 5)
    online(redis_server, "10.3.0.2", 50)
    registrar.register("cs", "10.3.0.1", 3000)
    registrar.register("cs", "10.3.0.2", 3000)
    daemon = start_daemon()
    daemon.wait_for_body(lambda body: body.startswith(b"10.3.0.1:3000,"))
    online(redis_server, "10.3.0.1", 500)
    # refresh-interval is 1 s in the test config.
    daemon.wait_for_body(lambda body: body.startswith(b"10.3.0.2:3000,"), wait=5.0)


def test_no_server_known_is_503_with_retry_after(start_daemon: Callable[..., Daemon]) -> None:
    daemon = start_daemon()
    status, headers, body = daemon.get("/")
    assert status == 503
    assert headers["Retry-After"] == "5"
    assert b"no connection server" in body


def test_sigterm_stops_in_reverse_order_and_removes_the_pidfile(
        start_daemon: Callable[..., Daemon], registrar: NodeRegistrar) -> None:
    registrar.register("cs", "10.4.0.1", 3000)
    daemon = start_daemon()
    daemon.wait_for_body(lambda body: body == b"10.4.0.1:3000")
    assert daemon.pidfile.exists()
    started = time.monotonic()
    status = daemon.terminate()
    took = time.monotonic() - started
    # twistd re-raises SIGTERM after its clean shutdown.
    assert status == -15
    assert took < 10
    assert not daemon.pidfile.exists()
    log = daemon.log()
    stops = re.findall(r"\] stopping (\w+)$", log, re.MULTILINE)
    assert stops == ["web", "refresher", "gateways", "redis", "zookeeper"], log
    starts = re.findall(r"\] starting (\w+)$", log, re.MULTILINE)
    assert starts == ["zookeeper", "redis", "gateways", "refresher", "web"], log
    bad = [line for line in log.splitlines()
           if "#error]" in line or "#critical]" in line or "Traceback" in line]
    assert bad == []


def test_runs_as_a_daemon_without_n(start_daemon: Callable[..., Daemon],
                                    registrar: NodeRegistrar) -> None:
    registrar.register("cs", "10.5.0.1", 3000)
    daemon = start_daemon(foreground=False)
    pid = daemon.pid
    assert pid != os.getpid()
    daemon.wait_for_body(lambda body: body == b"10.5.0.1:3000")
    daemon.terminate()
    assert not daemon.pidfile.exists()


def unreachable_config(path: Path, port: int, **kw: str) -> Path:
    """A config whose ZooKeeper and Redis are on port 1, where nothing listens:
    the daemon starts all the same (``GET /`` answers 503)."""
    return write_config(path, port=port, zk="127.0.0.1:1", redis_nodes=["127.0.0.1:1"], **kw)


@pytest.fixture
def taken_port() -> Iterator[int]:
    with held_port() as port:
        yield port


def test_port_in_use_fails_the_start_with_status_1(tmp_path: Path, taken_port: int) -> None:
    config = unreachable_config(tmp_path / "mpush.conf", taken_port)
    result = twistd("-n", "--pidfile", str(tmp_path / "p.pid"), "--logfile",
                    str(tmp_path / "t.log"), "mpush-alloc", "--config", str(config),
                    cwd=tmp_path)
    assert result.returncode == 1
    reason = f"web: cannot listen on 127.0.0.1:{taken_port}: Address already in use"
    # One line on stderr, no traceback; the same line in the log.
    assert result.stderr == f"mpush-alloc could not start: {reason}\n"
    log = (tmp_path / "t.log").read_text()
    assert f"[mpush.daemon.tap.AllocDaemon#critical] mpush-alloc could not start: {reason}\n" in log
    # The port is bound before any service starts: nothing to stop.
    assert re.findall(r"\] (?:starting|stopping) \w+$", log, re.MULTILINE) == []
    assert not (tmp_path / "p.pid").exists()


@pytest.mark.parametrize("cause", ["port-taken", "interface-not-local", "tls-not-pem"])
def test_a_listener_that_cannot_serve_fails_the_daemonizing_command(
        tmp_path: Path, taken_port: int, cause: str) -> None:
    # Without -n: twistd's parent waits for the privileged start, where the
    # listener binds, so an init script sees the failure.
    port, extra = taken_port, {}
    reason = f"web: cannot listen on 127.0.0.1:{taken_port}: Address already in use"
    if cause == "interface-not-local":
        port = free_port()
        extra = {"alloc_extra": 'interface = "192.0.2.1"'}  # TEST-NET-1: never local
        reason = f"web: cannot listen on 192.0.2.1:{port}: Cannot assign requested address"
    elif cause == "tls-not-pem":
        port = free_port()
        (tmp_path / "cert.pem").write_text("not PEM\n")
        extra = {"protocol": "https",
                 "alloc_extra": 'tls-cert = "cert.pem"\n    tls-key = "cert.pem"'}
        reason = f"web: TLS certificate {tmp_path}/cert.pem: no PEM certificate in it"
    config = unreachable_config(tmp_path / "mpush.conf", port, **extra)
    result = twistd("--pidfile", "p.pid", "--logfile", "t.log", "mpush-alloc",
                    "--config", str(config), cwd=tmp_path)
    assert result.returncode == 1, result.stderr
    # twistd prints what the daemon wrote to its status pipe: 100 bytes at most.
    shown = f"1 RuntimeError: {reason}".encode()[:100][2:]
    assert result.stderr.splitlines()[0] == f"An error has occurred: {shown!r}"
    assert not (tmp_path / "p.pid").exists()
    log = (tmp_path / "t.log").read_text()
    assert log.count(f"mpush-alloc could not start: {reason}\n") == 1
    assert re.findall(r"\] (?:starting|stopping) \w+$", log, re.MULTILINE) == []


def readme_daemon_command() -> list[str]:
    """The README's daemon command (``twistd --pidfile …``), as its words."""
    readme = (Path(mpush.__file__).parent.parent / "README.md").read_text()
    blocks = re.findall(r"^```sh\n(.*?)^```", readme, re.MULTILINE | re.DOTALL)
    commands = [line for block in blocks for line in block.splitlines()
                if line.startswith("twistd --pidfile")]
    assert len(commands) == 1, commands
    return shlex.split(commands[0])


def test_the_readme_daemon_command_daemonizes_in_a_fresh_copy(tmp_path: Path) -> None:
    # As in a fresh clone: conf/mpush.conf as committed, no run/. Only its
    # ports change, so that the copy runs next to anything else on this host.
    port = free_port()
    conf = (Path(mpush.__file__).parent.parent / "conf" / "mpush.conf").read_text()
    for old, new in (("alloc-server-port = 9999", f"alloc-server-port = {port}"),
                     ('"127.0.0.1:2181"', '"127.0.0.1:1"'), ('"127.0.0.1:6379"', '"127.0.0.1:1"')):
        assert conf.count(old) == 1, old
        conf = conf.replace(old, new)
    (tmp_path / "conf").mkdir()
    (tmp_path / "conf" / "mpush.conf").write_text(conf)
    # What `. .venv/bin/activate` does for the command.
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    daemon = Daemon(tmp_path, tmp_path / "conf" / "mpush.conf", port=port, foreground=False)
    daemon.pidfile, daemon.logfile = tmp_path / "run" / "alloc.pid", tmp_path / "run" / "alloc.log"
    try:
        result = subprocess.run(readme_daemon_command(), cwd=tmp_path, env=env, timeout=60,
                                capture_output=True, text=True, stdin=subprocess.DEVNULL)
        assert result.returncode == 0, result.stderr + daemon.log()
        assert daemon.pid != os.getpid()
        daemon.wait_listening(10.0)
        status, headers, _ = daemon.get()
        assert (status, headers["Retry-After"]) == (503, "5")  # no ZooKeeper: no server yet
        daemon.terminate()
    finally:
        daemon.kill()
    assert not daemon.pidfile.exists()


def test_https_with_a_generated_self_signed_certificate(
        start_daemon: Callable[..., Daemon], registrar: NodeRegistrar, tmp_path: Path) -> None:
    registrar.register("cs", "10.6.0.1", 3000)
    daemon = start_daemon(protocol="https")
    cert = tmp_path / "data" / "selfsigned-cert.pem"
    assert cert.is_file()
    assert str(cert) in daemon.log()
    # A real TLS client that verifies the certificate and the name localhost.
    context = ssl.create_default_context(cafile=str(cert))
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    url = f"https://localhost:{daemon.port}/"
    deadline = time.monotonic() + 10
    body = b""
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, context=context, timeout=5) as resp:
                body = resp.read()
                break
        except urllib.error.HTTPError as e:
            assert e.code == 503  # until the first refresh
        time.sleep(0.05)
    assert body == b"10.6.0.1:3000"
    # TLS 1.1 and older are refused.
    old = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    old.check_hostname = False
    old.verify_mode = ssl.CERT_NONE
    # Let our side offer TLS 1.0/1.1 (OpenSSL refuses them at its default
    # security level), so that the refusal we see is the server's.
    old.set_ciphers("DEFAULT:@SECLEVEL=0")
    old.minimum_version = ssl.TLSVersion.TLSv1
    old.maximum_version = ssl.TLSVersion.TLSv1_1
    with pytest.raises(urllib.error.URLError, match=r"PROTOCOL_VERSION|protocol version"):
        urllib.request.urlopen(url, context=old, timeout=5)
    # The same certificate is kept across restarts.
    before = cert.read_bytes()
    daemon.terminate()
    start_daemon(protocol="https")
    assert cert.read_bytes() == before


def _until(predicate: Callable[[], bool], wait: float, what: str) -> None:
    deadline = time.monotonic() + wait
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def test_many_unreachable_gateways_are_a_few_log_lines_and_a_count(
        start_daemon: Callable[..., Daemon], registrar: NodeRegistrar) -> None:
    # 60 gateway servers on loopback ports nothing listens on: each one's
    # "unreachable" warning is the same message; the log keeps its first 20
    # (mpush.daemon.log_limits) and then says how many it left out.
    registrar.register("cs", "10.5.0.1", 3000)
    for port in refused_ports(60):
        registrar.register("gs", "127.0.0.1", port)
    daemon = start_daemon()

    seen: list[dict[str, Any]] = [{}]

    def all_down() -> bool:
        status, _, body = daemon.get("/health")
        seen[0] = json.loads(body)["gateways"] if status in (200, 503) else {}
        return seen[0].get("known") == 60 and seen[0].get("connected") == 0

    _until(all_down, 20, "60 gateway servers known, none connected")
    # Each server warns once, on its way down: 60 warnings in all, 20 written.
    pattern = r"gateway server 127\.0\.0\.1:\d+: unreachable"

    def left_out() -> int:
        counts = re.findall(r"(\d+) more like this in the last 10 s: " + pattern, daemon.log())
        return sum(map(int, counts))

    _until(lambda: left_out() == 40, 25, "the count of the 40 warnings left out")
    log = daemon.log()
    written = [line for line in log.splitlines()
               if re.search(pattern, line) and "more like this" not in line]
    assert len(written) == 20, log
    assert "Scheduling retry" not in log
