"""The key table: one home per default and bound, and a config package that stays pure."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import textwrap
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mpush.config import AllocSettings, RedisSettings, Settings, ZkSettings
from mpush.config.checks import CHECKS
from mpush.config.keys import BY_KEY, DEFAULTS, KEYS, bounds, default
from mpush.config.units import format_size, parse_size

_SECTIONS: dict[str, Any] = {
    "": Settings(),
    "zk": ZkSettings(),
    "redis": RedisSettings(),
    "alloc": AllocSettings(),
}


def test_importing_the_config_package_stays_pure() -> None:
    """No Twisted, and no mpush module outside mpush.config (a fresh interpreter)."""
    code = textwrap.dedent(
        """
        import sys
        import mpush.config
        import mpush.config.docs
        loaded = sorted(sys.modules)
        print("\\n".join(m for m in loaded if m.split(".")[0] in ("twisted", "mpush")))
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.split()
    assert not [m for m in out if m == "twisted" or m.startswith("twisted.")], out
    assert [m for m in out if not (m == "mpush" or m.startswith("mpush.config"))] == []


def test_keys_and_fields_are_unique() -> None:
    assert len(BY_KEY) == len(KEYS)
    assert len({row.field for row in KEYS}) == len(KEYS)


def test_every_settings_field_comes_from_one_row_with_its_default() -> None:
    filled = set()
    for row in KEYS:
        section, _, name = row.field.rpartition(".")
        assert getattr(_SECTIONS[section], name) == row.default, row.key
        filled.add((section, name))
    for section, instance in _SECTIONS.items():
        for f in dataclasses.fields(instance):
            if section == "" and f.name in ("source", "zk", "redis", "alloc", "from_file",
                                            "unknown_keys"):
                continue
            assert (section, f.name) in filled, f"{section}.{f.name} has no row in KEYS"


def test_checks_name_keys_of_the_table() -> None:
    for after, _ in CHECKS:
        assert after in BY_KEY


def test_default_and_bounds_accessors() -> None:
    assert default("mp.alloc.push-timeout") == DEFAULTS["mp.alloc.push-timeout"] == 3.0
    assert bounds("mp.alloc.push-timeout") == (1.0, 600.0)
    assert bounds("mp.core.max-packet-size") == (1, 2**31 - 1)
    with pytest.raises(TypeError):
        bounds("mp.redis.nodes")
    with pytest.raises(KeyError):
        default("mp.no.such-key")


def test_defaults_other_modules_take_are_the_tables() -> None:
    """Modules keep their names for a default, but the value is the table's."""
    from mpush import wire as protocol
    from mpush.cluster import gateway_options as gateway
    from mpush.services import pusher as push
    from mpush.services import refresher as alloc
    from mpush.web import push_body
    from mpush.web import site as server

    assert alloc.DEFAULT_REFRESH_INTERVAL == default("mp.alloc.refresh-interval")
    assert alloc.DEFAULT_CHANGE_DELAY == default("mp.alloc.change-delay")
    assert server.DEFAULT_MAX_REQUEST_SIZE == default("mp.alloc.max-request-size")
    assert server.DEFAULT_REQUEST_HEAD_TIMEOUT == default("mp.alloc.request-head-timeout")
    assert push_body.MAX_TIMEOUT_MS == 86_400_000
    assert protocol.DEFAULT_MAX_PACKET_SIZE == default("mp.core.max-packet-size")
    assert protocol.DEFAULT_TIMEOUT_MS == 3000
    assert push.DEFAULT_BROADCAST_TIMEOUT == default("mp.alloc.broadcast-timeout")
    assert gateway.DEFAULT_CONNECT_TIMEOUT == default("mp.alloc.gateway-connect-timeout")


def test_push_timeout_floor_is_the_push_clients() -> None:
    """Two facts that must agree: the config's lowest push-timeout, the client's floor."""
    from mpush.wire import MIN_TIMEOUT_MS

    assert bounds("mp.alloc.push-timeout")[0] * 1000 == MIN_TIMEOUT_MS


@given(st.integers(min_value=1, max_value=2**45))
def test_format_size_round_trips(count: int) -> None:
    assert parse_size(format_size(count)) == count


@pytest.mark.parametrize(
    ("count", "text"),
    [(1, "1 byte"), (100, "100 bytes"), (1024, "1 KiB"), (65536, "64 KiB"), (1536, "1536 bytes"),
     (16 * 1024 * 1024, "16 MiB"), (2**31 - 1, "2147483647 bytes")],
)
def test_format_size(count: int, text: str) -> None:
    assert format_size(count) == text
