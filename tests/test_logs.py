"""Logs an operator can use: JSON lines (``twistd --logger
mpush.daemon.logs.json_observer``), secrets never written, one line per state change,
nothing below ``mp.log-level``, a warning for each unknown ``mp.alloc`` key.

The unit tests check the JSON shape; the daemon tests run ``twistd
mpush-alloc`` against real ZooKeeper and Redis servers, once per format.
"""

from __future__ import annotations

import io
import json
import re
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from twisted.application.app import ApplicationRunner
from twisted.application.service import Application
from twisted.logger import Logger, LogLevel, LogPublisher, globalLogPublisher
from twisted.python.failure import Failure

from mpush.config import Settings, UnknownKey
from mpush.daemon.logs import (
    FIXED_KEYS,
    apply_log_config,
    event_as_dict,
    event_as_json_line,
    json_file_observer,
    level_filtered,
    warn_unknown_keys,
)
from tests.fixtures_redis import REDIS_TEST_PASSWORD
from tests.harness.daemon import BIN, Daemon, free_port, write_config
from tests.harness.redis import RedisServer
from tests.harness.registry import NodeRegistrar
from tests.harness.zookeeper import ZooKeeperServer

PUSH_TOKEN = "pUsh-T0ken-4f9a2c7e81b3"
ZK_DIGEST = "s3cret-digest-7d1e"
SECRETS = (REDIS_TEST_PASSWORD, ZK_DIGEST, PUSH_TOKEN)

# -- the JSON shape ---------------------------------------------------------


def _capture() -> tuple[Logger, list[dict[str, object]]]:
    seen: list[dict[str, object]] = []
    publisher = LogPublisher(lambda event: seen.append(dict(event)))
    return Logger(namespace="mpush.test", observer=publisher), seen


def test_event_shape_is_flat_with_the_rendered_text() -> None:
    log, seen = _capture()
    log.warn("Redis ({mode}) unavailable: {error}", mode="single", error="refused",
             count=3, ratio=0.5, raw=b"\xffab", flag=None)
    line = event_as_dict(seen[0])
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", line["time"])
    assert line["level"] == "warn"
    assert line["namespace"] == "mpush.test"
    assert line["text"] == "Redis (single) unavailable: refused"
    assert (line["mode"], line["error"], line["count"], line["ratio"]) == ("single", "refused",
                                                                         3, 0.5)
    assert line["raw"] == "\\xffab" and line["flag"] is None
    assert not [key for key in line if key.startswith("log_")]
    assert "traceback" not in line


def test_failures_get_a_traceback_and_clashing_fields_are_renamed() -> None:
    log, seen = _capture()
    try:
        raise ValueError("boom")
    except ValueError:
        log.failure("refresh failed {text}", Failure(), text="(text field)",
                    level=LogLevel.error, other=object())
    line = event_as_dict(seen[0])
    assert line["level"] == "error"
    assert line["text"] == "refresh failed (text field)"
    assert line["event_text"] == "(text field)"
    assert "ValueError: boom" in line["traceback"]
    assert line["other"].startswith("<object object")


def test_one_parseable_line_per_event() -> None:
    out = io.StringIO()
    log = Logger(namespace="mpush.test", observer=json_file_observer(out))
    log.info("two\nlines {x}", x="and\nfields", bad=float("nan"))
    log.error("second")
    lines = out.getvalue().splitlines()
    assert len(lines) == 2
    first = json.loads(lines[0])
    assert first["text"] == "two\nlines and\nfields"
    assert first["bad"] == "nan"  # no bare NaN: strict JSON
    assert json.loads(lines[1])["level"] == "error"
    assert event_as_json_line({"log_format": "x"}).endswith("}\n")


# -- the level and the config warnings ---------------------------------------


def _levels_seen(level: str) -> list[str]:
    seen: list[dict[str, object]] = []
    log = Logger(namespace="mpush.test", observer=level_filtered(seen.append, level))
    for emit in (log.debug, log.info, log.warn, log.error, log.critical):
        emit("x")
    return [event["log_level"].name for event in seen]  # type: ignore[attr-defined]


def test_the_level_filter_drops_what_is_below() -> None:
    assert _levels_seen(Settings().log_level) == ["info", "warn", "error", "critical"]
    assert _levels_seen("debug") == ["debug", "info", "warn", "error", "critical"]
    assert _levels_seen("warn") == ["warn", "error", "critical"]
    assert _levels_seen("critical") == ["critical"]


class _Runner(ApplicationRunner):
    """twistd's runner, up to the application: makeService is called from here."""

    def __init__(self, factory: Callable[[], object]) -> None:
        super().__init__({"logger": factory, "logfile": "-"})

    def preApplication(self) -> None: ...

    def postApplication(self) -> None: ...

    def createOrGetApplication(self) -> Application:
        apply_log_config(Settings(log_level="warn"))  # as makeService does
        return Application("t")


def test_twistd_gets_its_observer_filtered_at_the_configured_level() -> None:
    seen: list[dict[str, object]] = []
    runner = _Runner(lambda: seen.append)
    runner.createOrGetApplication()
    # What AppLogger.start installs (without installing it).
    observer = runner.logger._observerFactory()
    log = Logger(namespace="mpush.test", observer=observer)
    log.info("dropped")
    log.warn("kept")
    assert [event["log_format"] for event in seen] == ["kept"]


def test_outside_twistd_there_is_no_observer_to_filter() -> None:
    apply_log_config(Settings(log_level="error"))  # nothing to wrap, nothing fails


def test_one_warning_per_unknown_key() -> None:
    seen: list[dict[str, object]] = []
    globalLogPublisher.addObserver(seen.append)
    try:
        warn_unknown_keys(Settings(source="conf/x.conf", unknown_keys=(
            UnknownKey("mp.alloc.refesh-interval", "mp.alloc.refresh-interval"),
            UnknownKey("mp.alloc.frobnicate", None))))
    finally:
        globalLogPublisher.removeObserver(seen.append)
    lines = [event_as_dict(event) for event in seen]
    assert [(line["level"], line["namespace"], line["text"]) for line in lines] == [
        ("warn", "mpush.config", "unknown key mp.alloc.refesh-interval in conf/x.conf: "
                                 "did you mean mp.alloc.refresh-interval?"),
        ("warn", "mpush.config", "unknown key mp.alloc.frobnicate in conf/x.conf: ignored"),
    ]
    assert lines[0]["key"] == "mp.alloc.refesh-interval"
    assert lines[0]["did_you_mean"] == "mp.alloc.refresh-interval"


# -- the daemon -------------------------------------------------------------


class LoggingDaemon(Daemon):
    """:class:`Daemon` with extra twistd options (before the plugin name)."""

    def __init__(self, *args: object, twistd_args: tuple[str, ...] = (),
                 **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.twistd_args = twistd_args

    def start(self, wait: float = 30.0) -> LoggingDaemon:
        args = [str(BIN / "twistd"), "-n", *self.twistd_args, "--pidfile", str(self.pidfile),
                "--logfile", str(self.logfile), "mpush-alloc", "--config", str(self.config)]
        self.process = subprocess.Popen(args, cwd=self.workdir, stdin=subprocess.DEVNULL,
                                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        self.wait_listening(wait)
        return self


def _post_push(daemon: Daemon, token: str | None) -> int:
    body = json.dumps({"userId": "u-logs", "hello": "hi", "timeout": 1000}).encode()
    req = urllib.request.Request(daemon.url + "/push", data=body, method="POST",
                                 headers={"Content-Type": "application/json"})
    if token is not None:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            resp.read()
            return int(resp.status)
    except urllib.error.HTTPError as e:
        e.read()
        return e.code


def _wait_log(daemon: Daemon, pattern: str, count: int, wait: float) -> None:
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        if len(re.findall(pattern, daemon.log())) >= count:
            return
        time.sleep(0.05)
    raise TimeoutError(f"{pattern!r} not logged {count} time(s): {daemon.log()}")


@pytest.fixture
def protected_redis(redis_factory: Callable[..., RedisServer]) -> RedisServer:
    """A password-protected Redis of this test only (it is stopped and restarted)."""
    return redis_factory(REDIS_TEST_PASSWORD)


@pytest.fixture
def digest_registrar(zk_server: ZooKeeperServer, zk_namespace: str,
                     make_registrar: Callable[..., NodeRegistrar]) -> NodeRegistrar:
    return make_registrar(zk_server.connect_string, namespace=zk_namespace, digest=ZK_DIGEST)


@pytest.fixture
def made_daemons() -> Iterator[list[Daemon]]:
    made: list[Daemon] = []
    yield made
    for daemon in made:
        daemon.kill()


@pytest.mark.integration
@pytest.mark.parametrize("fmt", ["text", "json"])
def test_secrets_never_logged_and_redis_changes_logged_once(
        fmt: str, tmp_path: Path, zk_server: ZooKeeperServer, zk_namespace: str,
        protected_redis: RedisServer, digest_registrar: NodeRegistrar,
        made_daemons: list[Daemon]) -> None:
    protected_redis.call("ZADD", "mp:oul:10.9.0.1", "1", "user-1")
    digest_registrar.register("cs", "10.9.0.1", 3000)
    port = free_port()
    access_log = tmp_path / "access.log"
    config = write_config(
        tmp_path / "mpush.conf", port=port, zk=zk_server.connect_string,
        namespace=zk_namespace, redis_nodes=[f"127.0.0.1:{protected_redis.port}"],
        redis_password=REDIS_TEST_PASSWORD, zk_digest=ZK_DIGEST,
        alloc_extra=f'push-token = "{PUSH_TOKEN}"\n    access-log = "{access_log}"')
    extra = ("--logger", "mpush.daemon.logs.json_observer") if fmt == "json" else ()
    daemon = LoggingDaemon(tmp_path, config, port=port, twistd_args=extra)
    made_daemons.append(daemon)
    daemon.start()
    # Served from ZooKeeper nodes only readable with the digest, counts from
    # the password-protected Redis.
    assert daemon.wait_for_body(lambda body: body == b"10.9.0.1:3000") == b"10.9.0.1:3000"
    for _ in range(3):
        assert daemon.get("/")[0] == 200
    assert daemon.get("/health")[0] == 200
    assert _post_push(daemon, PUSH_TOKEN) == 200
    assert _post_push(daemon, PUSH_TOKEN[::-1]) == 401
    assert _post_push(daemon, None) == 401

    # A Redis outage of ~3 s: one "unavailable" line, one "available" line after.
    down = r"Redis \(single\) unavailable"
    up = r"Redis \(single\) available"
    _wait_log(daemon, up, 1, wait=10)
    protected_redis.stop()
    _wait_log(daemon, down, 1, wait=10)
    time.sleep(3)
    assert daemon.get("/")[0] == 200  # from the last known state
    protected_redis.start()
    _wait_log(daemon, up, 2, wait=15)
    time.sleep(1.5)  # a second refresh after the recovery: nothing more to log

    assert daemon.terminate() == -15
    log = daemon.log()
    for secret in SECRETS:
        assert secret not in log, f"{secret!r} written to the {fmt} log"
        assert secret not in access_log.read_text(), f"{secret!r} in the access log"
    assert access_log.read_text().count("/push") == 3

    if fmt == "json":
        events = [json.loads(line) for line in log.splitlines() if line.strip()]
        assert all(isinstance(e, dict) and set(FIXED_KEYS[:3]) | {"text"} <= e.keys()
                   for e in events)
        texts = [e["text"] for e in events]
        assert any(e["namespace"] == "mpush.cluster.redis" and e["level"] == "warn"
                   and e.get("mode") == "single" for e in events)
    else:
        texts = log.splitlines()
    assert len([t for t in texts if re.search(down, t)]) == 1, log
    assert len([t for t in texts if re.search(up, t)]) == 2, log
    assert len([t for t in texts if "cannot read online counts from Redis" in t]) <= 1, log
    assert any("stopping zookeeper" in t for t in texts)


@pytest.mark.integration
@pytest.mark.parametrize(("fmt", "level"), [("text", None), ("text", "debug"), ("json", None)])
def test_the_log_level_and_unknown_keys_in_the_daemons_log(
        fmt: str, level: str | None, tmp_path: Path, made_daemons: list[Daemon]) -> None:
    # Nothing to connect to: Redis is "unavailable" at once, then probed
    # every 5 s (a debug line), as during an outage.
    port = free_port()
    config = write_config(
        tmp_path / "mpush.conf", port=port, zk="127.0.0.1:1", redis_nodes=["127.0.0.1:1"],
        alloc_extra="refesh-interval = 1s",
        extra=("" if level is None else f"log-level = {level}\n")
        + "thread.pool.boss.min = 4\n  log-dir = logs")
    extra = ("--logger", "mpush.daemon.logs.json_observer") if fmt == "json" else ()
    daemon = LoggingDaemon(tmp_path, config, port=port, twistd_args=extra)
    made_daemons.append(daemon)
    daemon.start()
    _wait_log(daemon, r"Redis \(single\) unavailable", 1, wait=10)
    if level == "debug":
        _wait_log(daemon, r"redis probe", 1, wait=10)
    daemon.terminate()
    log = daemon.log()
    if fmt == "json":
        events = [json.loads(line) for line in log.splitlines() if line.strip()]
        levels = {event["level"] for event in events}
        texts = [event["text"] for event in events]
    else:
        levels = set(re.findall(r"^\S+ \[[^\]#]*#(\w+)\]", log, re.MULTILINE))
        texts = log.splitlines()
    assert ("debug" in levels) == (level == "debug"), log
    assert "info" in levels and "warn" in levels
    warnings = [text for text in texts if "unknown key" in text]
    assert len(warnings) == 1, log
    assert warnings[0].endswith(
        f"unknown key mp.alloc.refesh-interval in {config}: did you mean "
        "mp.alloc.refresh-interval?")
