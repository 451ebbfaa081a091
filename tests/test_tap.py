"""makeService builds the tree without side effects: twistd may fork after it."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import pytest

import mpush
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
    assert [s.name for s in root] == ["log-limits", "zookeeper", "redis", "gateways", "refresher",
                                     "ws-refresher", "handout-sharer", "web"]
    assert not root.running and not any(s.running for s in root)
    # No thread (kazoo's) and no listener before startService.
    assert {t.ident for t in threading.enumerate()} == threads
    assert root.getServiceNamed("zookeeper").client is None
    assert root.getServiceNamed("web").listening is None


def test_version_option_prints_mpush_allocs_version(capsys: pytest.CaptureFixture[str]) -> None:
    # Before --config is read: `twistd mpush-alloc --version` needs no config file.
    with pytest.raises(SystemExit) as exited:
        Options().parseOptions(["--version"])
    assert exited.value.code == 0
    assert capsys.readouterr().out == f"mpush-alloc {mpush.__version__}\n"


def test_setup_reads_the_same_version() -> None:
    setup_py = Path(__file__).parent.parent / "setup.py"
    result = subprocess.run([sys.executable, str(setup_py), "--version"], capture_output=True,
                            text=True, check=True, cwd=setup_py.parent, timeout=60)
    assert result.stdout.strip().splitlines()[-1] == mpush.__version__


def test_the_plugin_imports_no_mpush_module_until_chosen() -> None:
    # twistd imports every plugin module to list them (`twistd --help`).
    code = ("import sys, twisted.plugins.mpush_alloc as p;"
            "print(sorted(m for m in sys.modules if m.startswith('mpush')));"
            "print(p.mpushAlloc.tapname)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True, timeout=60)
    assert result.stdout.splitlines() == ["[]", "mpush-alloc"]


def test_twistd_pidfile_and_logfile_directories_are_made_one_level_deep(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from twisted.scripts.twistd import ServerOptions

    config = write_config(tmp_path / "mpush.conf", port=1, zk="127.0.0.1:1",
                          redis_nodes=["127.0.0.1:1"])
    monkeypatch.chdir(tmp_path)
    # The README's command in a fresh clone: run/ is missing.
    ServerOptions().parseOptions(["--pidfile", "run/alloc.pid", "--logfile", "run/alloc.log",
                                  "mpush-alloc", "--config", str(config)])
    assert (tmp_path / "run").is_dir()
    # A missing parent is rather a typo: one line, nothing made.
    with pytest.raises(SystemExit) as exited:
        ServerOptions().parseOptions(["--logfile", "/nonexistent-dir/mpush/alloc.log",
                                      "mpush-alloc", "--config", str(config)])
    assert str(exited.value) == ("mpush-alloc: cannot create the directory of --logfile"
                                 " /nonexistent-dir/mpush/alloc.log: No such file or directory")
