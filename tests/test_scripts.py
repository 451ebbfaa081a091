"""The set-up scripts, without the network: scripts/install-venv installs the
project only when its packaging changed, and the demo (scripts/run-local)
moves ZooKeeper and Redis to free ports when Debian's services hold theirs."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from mpush.config import load_settings
from scripts.demo import demo_config, port_or_free
from tests.harness.daemon import held_port

ROOT = Path(__file__).resolve().parent.parent

# Stands for python: `-m venv DIR` makes DIR/bin/python (this script) and
# DIR/bin/twistd; anything else (pip) is logged and ends with $FAKE_PIP_STATUS.
FAKE_PYTHON = """#!/usr/bin/env bash
if [ "$1 $2" = "-m venv" ]; then
  mkdir -p "$3/bin" && cp "$0" "$3/bin/python" && : > "$3/bin/twistd"
  chmod +x "$3/bin/twistd"
  exit 0
fi
echo "PYTHONWARNINGS=${PYTHONWARNINGS:-} $*" >> "$FAKE_LOG"
exit "${FAKE_PIP_STATUS:-0}"
"""


class Checkout:
    """A copy of scripts/install-venv next to a setup.py, with a fake python."""

    def __init__(self, root: Path) -> None:
        self.root = root
        (root / "scripts").mkdir()
        shutil.copy2(ROOT / "scripts" / "install-venv", root / "scripts" / "install-venv")
        (root / "setup.py").write_text("# version 1\n")
        self.python = root / "fake-python"
        self.python.write_text(FAKE_PYTHON)
        self.python.chmod(0o755)
        self.log = root / "pip.log"
        self.log.touch()

    def install(self, pip_status: int = 0) -> tuple[int, str, list[str]]:
        """Run it: (exit status, its output, the pip commands it ran)."""
        before = len(self.log.read_text().splitlines())
        env = {**os.environ, "FAKE_LOG": str(self.log), "FAKE_PIP_STATUS": str(pip_status)}
        result = subprocess.run([str(self.root / "scripts" / "install-venv"), str(self.python)],
                                capture_output=True, text=True, env=env, timeout=60)
        return (result.returncode, result.stdout + result.stderr,
                self.log.read_text().splitlines()[before:])


def test_the_project_is_installed_only_when_its_packaging_changed(tmp_path: Path) -> None:
    checkout = Checkout(tmp_path)
    status, output, pips = checkout.install()
    assert status == 0, output
    assert output == "setup: installing mpush-alloc into .venv (a new venv, or setup.py changed)\n"
    # Quiet, editable, and without setuptools' warning about the compat mode.
    assert pips == [
        "PYTHONWARNINGS= -m pip --disable-pip-version-check -q install --upgrade pip",
        "PYTHONWARNINGS=ignore:Compat editable installs -m pip --disable-pip-version-check -q"
        " install -e .[test] --config-settings editable_mode=compat",
    ]
    assert checkout.install() == (0, "", [])  # nothing changed: no pip, no output
    (tmp_path / "setup.py").write_text("# version 2\n")
    assert len(checkout.install()[2]) == 2
    assert checkout.install() == (0, "", [])
    (tmp_path / "pyproject.toml").write_text("[build-system]\n")
    status, output, pips = checkout.install()
    assert "setup.py pyproject.toml changed" in output and len(pips) == 2
    # A new venv installs again.
    shutil.rmtree(tmp_path / ".venv")
    assert len(checkout.install()[2]) == 2


def test_a_failed_install_is_tried_again(tmp_path: Path) -> None:
    checkout = Checkout(tmp_path)
    status, _, pips = checkout.install(pip_status=1)
    assert status == 1 and len(pips) == 1  # stopped at the first pip
    assert len(checkout.install()[2]) == 2
    assert checkout.install() == (0, "", [])


def test_a_taken_port_is_given_up_for_a_free_one_saying_why(
        capsys: pytest.CaptureFixture[str]) -> None:
    with held_port() as port:
        assert port_or_free(port, "ZooKeeper", "zookeeper") is None
    assert capsys.readouterr().out == (
        f"demo: port {port} for ZooKeeper is in use (Debian's zookeeper service?"
        " `sudo systemctl stop zookeeper` frees it); using a free port instead\n")
    assert port_or_free(port, "ZooKeeper", "zookeeper") == port  # free again
    assert capsys.readouterr().out == ""


def test_the_demo_config_names_the_ports_used_and_keeps_the_rest(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)  # conf/mpush.conf's relative paths, as run-local runs it
    path = demo_config("conf/mpush.conf", "127.0.0.1:40181", "127.0.0.1:40379", tmp_path)
    demo, original = load_settings(path), load_settings("conf/mpush.conf")
    assert demo.zk.server_address == "127.0.0.1:40181"
    assert demo.redis.nodes == (("127.0.0.1", 40379),)
    assert (demo.port, demo.zk.namespace, demo.alloc.data_dir) == (
        original.port, original.zk.namespace, original.alloc.data_dir)
