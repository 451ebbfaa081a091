"""Fixtures for tests against a real ZooKeeper (a pytest plugin, see conftest).

* ``zk_server``: one JVM for the whole session (starting one costs ~0.5 s;
  sessions and namespaces are cheap), restarted if a test broke it. Tests
  isolate themselves with ``zk_namespace``. Never stop or freeze it.
* ``zk_fresh_server``: a server of the test's own, for tests that stop,
  kill, freeze or restart it.
* ``zk_registrar``: a Java-style node registrar in the test's namespace.
* ``make_registrar`` / ``make_zk_watcher`` / ``zk_settings``: factories;
  everything they make is closed at teardown.
"""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted

from tests.harness.registry import NodeRegistrar
from tests.harness.zookeeper import CLASSPATH_JARS, JAVA_DIR, ZooKeeperServer


def _zookeeper_missing() -> str | None:
    if shutil.which("java") is None:
        return "java is not installed"
    for jar in CLASSPATH_JARS:
        if not (JAVA_DIR / jar).exists():
            return f"{JAVA_DIR / jar} is missing (Debian packages zookeeper, libslf4j-java)"
    return None


@pytest.fixture(scope="session")
def _zk_shared() -> Iterator[ZooKeeperServer]:
    missing = _zookeeper_missing()
    if missing:
        pytest.fail(f"no ZooKeeper: {missing}; scripts/setup installs it")
    server = ZooKeeperServer()
    server.start()
    yield server
    server.close()


@pytest.fixture
def zk_server(_zk_shared: ZooKeeperServer) -> ZooKeeperServer:
    """The shared server; restarted (same port) if an earlier test broke it."""
    if not _zk_shared.running:
        _zk_shared.start()
    return _zk_shared


@pytest.fixture
def zk_fresh_server(tmp_path: Path) -> Iterator[ZooKeeperServer]:
    """A server of the test's own, started; may be stopped, killed, frozen."""
    missing = _zookeeper_missing()
    if missing:
        pytest.fail(f"no ZooKeeper: {missing}; scripts/setup installs it")
    server = ZooKeeperServer(base_dir=str(tmp_path / "zk"))
    yield server
    # kill, not stop: a frozen or half-started server must not slow teardown.
    server.kill()
    server.close()


@pytest.fixture
def zk_namespace() -> str:
    """A namespace of the test's own on the shared server."""
    return f"mpush-test-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def make_registrar() -> Iterator[Callable[..., NodeRegistrar]]:
    made: list[NodeRegistrar] = []

    def make(connect_string: str, **kwargs: Any) -> NodeRegistrar:
        registrar = NodeRegistrar(connect_string, **kwargs)
        registrar.start()
        made.append(registrar)
        return registrar

    yield make
    for registrar in made:
        try:
            registrar.close()
        except Exception:  # teardown of a registrar whose server is gone
            pass


@pytest.fixture
def zk_registrar(zk_server: ZooKeeperServer, zk_namespace: str,
                 make_registrar: Callable[..., NodeRegistrar]) -> NodeRegistrar:
    return make_registrar(zk_server.connect_string, namespace=zk_namespace)


@pytest.fixture
def zk_settings() -> Callable[..., Any]:
    """``zk_settings(connect_string, namespace, **overrides)`` -> ZkSettings.

    Short timeouts by default: the test server grants 1-10 s sessions.
    """
    from mpush.config import ZkSettings

    def make(connect_string: str, namespace: str = "mpush", **overrides: Any) -> Any:
        values: dict[str, Any] = {
            "server_address": connect_string,
            "namespace": namespace,
            "digest": "mpush",
            "session_timeout": 2.0,
            "connection_timeout": 0.5,
        }
        values.update(overrides)
        return ZkSettings(**values)

    return make


@pytest.fixture
def make_zk_watcher(zk_settings: Callable[..., Any]) -> Iterator[Callable[..., Any]]:
    """``make_zk_watcher(connect_string, namespace, start=True, **settings)``.

    Returns a ZkWatcher, started unless ``start=False``; stopped at teardown.
    """
    from mpush.cluster.zookeeper import ZkWatcher

    made: list[ZkWatcher] = []

    def make(connect_string: str, namespace: str = "mpush", *, start: bool = True,
             **overrides: Any) -> ZkWatcher:
        watcher = ZkWatcher(zk_settings(connect_string, namespace, **overrides))
        made.append(watcher)
        if start:
            watcher.startService()
        return watcher

    yield make
    for watcher in made:
        if watcher.running:
            pytest_twisted.blockon(watcher.stopService())
