"""What the file gave: the unknown keys of our namespace, and the settings in effect
key by key (the source of ``GET /config``), secrets never shown."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import pytest

from mpush.config import (
    ConfigEntry,
    Settings,
    UnknownKey,
    config_document,
    effective,
    load_settings,
)
from mpush.config.docs import DOCS_PATH
from mpush.config.keys import KEYS
from mpush.config.kinds import Path as PathKind

ROOT = Path(__file__).resolve().parent.parent
JAVA_ALLOC = ROOT / "tests" / "data" / "java-alloc.conf"

REDIS_PASSWORD = "r3dis-Pa55word-91c"
ZK_DIGEST = "zk-d1gest-44e0"
PUSH_TOKEN = "pUsh-T0ken-0b8d2c7e61a5"

def conf(tmp_path: Path, text: str, name: str = "mpush.conf") -> Path:
    (tmp_path / name).write_text(text, encoding="utf-8")
    return tmp_path / name


def by_key(settings: Settings) -> dict[str, ConfigEntry]:
    return {entry.key: entry for entry in effective(settings)}


# ---------------------------------------------------------------- unknown keys


def test_a_misspelt_key_of_ours_is_reported_with_the_nearest(tmp_path: Path) -> None:
    path = conf(
        tmp_path,
        "mp.alloc.refesh-interval = 1s\n"
        "mp.alloc { push-tokn = abc, retry-after = 3 }\n"
        "mp.alloc.frobnicate = yes\n"
        "mp.alloc.tls { cert = x }\n"
    )
    loaded = load_settings(path)
    assert loaded.unknown_keys == (
        UnknownKey("mp.alloc.refesh-interval", "mp.alloc.refresh-interval"),
        UnknownKey("mp.alloc.push-tokn", "mp.alloc.push-token"),
        UnknownKey("mp.alloc.frobnicate", None),
        UnknownKey("mp.alloc.tls", "mp.alloc.tls-key"),
    )
    assert loaded.alloc.refresh_interval == 30.0  # the typo did not set it
    assert loaded.alloc.retry_after == 3


def test_the_java_servers_keys_are_not_unknown(tmp_path: Path) -> None:
    # Everything under mp but mp.alloc is the Java servers' (we read a few).
    assert load_settings(JAVA_ALLOC).unknown_keys == ()
    path = conf(
        tmp_path,
        "mp.thread.pool.boss.min = 4\nmp.net.connect-server-port = 3000\n"
        "mp.redis.config.maxTotal = 8\nmp.zk.retry.maxRetries = 3\nmp.log-dir = logs\n"
        "mp.allocx = 1\nother.alloc.refesh-interval = 1s\n"
    )
    assert load_settings(path).unknown_keys == ()


def test_no_alloc_object_no_unknown_keys(tmp_path: Path) -> None:
    assert load_settings(conf(tmp_path, "")).unknown_keys == ()
    assert load_settings(conf(tmp_path, "mp.alloc {}\n")).unknown_keys == ()
    assert Settings().unknown_keys == ()


# ---------------------------------------------------------------- effective settings


def test_every_key_in_table_order_from_the_defaults(tmp_path: Path) -> None:
    path = conf(tmp_path, "# nothing\n")
    entries = effective(load_settings(path))
    assert [entry.key for entry in entries] == [row.key for row in KEYS]
    assert {(entry.source, entry.file) for entry in entries} == {("default", None)}
    assert [entry.key for entry in entries if entry.secret] == [
        "mp.zk.digest", "mp.redis.password", "mp.alloc.push-token"]
    shown = by_key(load_settings(path))
    assert shown["mp.zk.digest"].value == "set"  # the default digest, mpush
    assert shown["mp.redis.password"].value == "unset"
    assert shown["mp.alloc.push-token"].value == "unset"
    assert shown["mp.alloc.tls-cert"].value is None


def _documented_defaults() -> dict[str, str]:
    """The default column of docs/configuration.md, by key."""
    text = (ROOT / DOCS_PATH).read_text(encoding="utf-8")
    return dict(re.findall(r"^\| `([^`]+)` \| (`[^|]*`|none) \|", text, re.MULTILINE))


def test_default_values_are_spelt_as_in_the_docs_table(tmp_path: Path) -> None:
    documented = _documented_defaults()
    assert set(documented) == {row.key for row in KEYS}
    shown = by_key(load_settings(conf(tmp_path, "")))
    for row in KEYS:
        if row.secret or isinstance(row.kind, PathKind):
            continue  # never shown; made absolute
        entry = shown[row.key]
        expected = None if documented[row.key] == "none" else documented[row.key].strip("`")
        assert entry.value == expected, row.key


def test_values_from_the_file_are_spelt_as_written_and_read_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # relative paths are taken against it
    path = conf(
        tmp_path,
        "mp.log-level = WARN\n"
        "mp.net.alloc-server-port = 8080\n"
        "mp.core.max-packet-size = 20k\n"
        'mp.zk { server-address = "zk1,zk2:2182/chroot", namespace = "/push/", '
        "sessionTimeoutMs = 7000 }\n"
        'mp.redis.nodes = "10.0.0.1:6379, [::1]:6380"\n'
        "mp.alloc { refresh-interval = 1.5s, change-delay = 0, max-request-size = 128 KiB,\n"
        '  interface = "::", push-allow = ["10.0.0.0/8", "::1"], retry-after = 2500ms,\n'
        '  access-log = "logs/access.log" }\n'
    )
    loaded = load_settings(path)
    shown = by_key(loaded)
    assert {key: shown[key].value for key in (
        "mp.log-level", "mp.net.alloc-server-port", "mp.core.max-packet-size",
        "mp.zk.server-address", "mp.zk.namespace", "mp.zk.sessionTimeoutMs", "mp.redis.nodes",
        "mp.alloc.refresh-interval", "mp.alloc.change-delay", "mp.alloc.max-request-size",
        "mp.alloc.interface", "mp.alloc.push-allow", "mp.alloc.retry-after",
    )} == {
        "mp.log-level": "warn",
        "mp.net.alloc-server-port": "8080",
        "mp.core.max-packet-size": "20 KiB",
        "mp.zk.server-address": '"zk1:2181,zk2:2182/chroot"',
        "mp.zk.namespace": "push",
        "mp.zk.sessionTimeoutMs": "7s",
        "mp.redis.nodes": '["10.0.0.1:6379", "[::1]:6380"]',
        "mp.alloc.refresh-interval": "1500ms",
        "mp.alloc.change-delay": "0s",
        "mp.alloc.max-request-size": "128 KiB",
        "mp.alloc.interface": '"::"',
        "mp.alloc.push-allow": '["10.0.0.0/8", "::1/128"]',
        "mp.alloc.retry-after": "3",
    }
    assert shown["mp.alloc.access-log"].value == json.dumps(str(tmp_path / "logs/access.log"))
    assert (shown["mp.net.alloc-server-port"].source, shown["mp.net.alloc-server-port"].file) == (
        "file", str(path))
    assert shown["mp.alloc.push-timeout"].source == "default"
    # Written back as shown, every value reads as the same settings.
    shown_again = "".join(f"{entry.key} = {entry.value}\n" for entry in effective(loaded)
                          if entry.value is not None and not entry.secret)
    again = conf(tmp_path, shown_again, "again.conf")
    assert dataclasses.replace(load_settings(again), source=loaded.source) == loaded


def test_a_key_from_an_included_file_comes_from_the_file(tmp_path: Path) -> None:
    conf(tmp_path, "mp.alloc.push-timeout = 5s\n", "base.conf")
    path = conf(tmp_path, 'include "base.conf"\nmp.net.alloc-server-port = 8080\n')
    shown = by_key(load_settings(path))
    assert (shown["mp.alloc.push-timeout"].source, shown["mp.alloc.push-timeout"].value) == (
        "file", "5s")
    assert shown["mp.alloc.push-timeout"].file == str(path)


def test_null_in_the_file_is_from_the_file_and_a_placeholder_is_not(tmp_path: Path) -> None:
    path = conf(tmp_path, "mp.alloc.access-log = null\nmp.log-level = ${log.level}\n")
    shown = by_key(load_settings(path))
    assert (shown["mp.alloc.access-log"].source, shown["mp.alloc.access-log"].value) == (
        "file", None)
    assert (shown["mp.log-level"].source, shown["mp.log-level"].value) == ("default", "info")


# ---------------------------------------------------------------- the JSON document


def test_secrets_set_in_the_file_never_appear(tmp_path: Path) -> None:
    path = conf(
        tmp_path,
        f'mp.redis.password = "{REDIS_PASSWORD}"\nmp.zk.digest = "{ZK_DIGEST}"\n'
        f'mp.alloc.push-token = "{PUSH_TOKEN}"\n'
        # A secret also as the value of an unknown key: its name is shown, not its value.
        f'mp.alloc.push-tokn = "{PUSH_TOKEN}"\n'
    )
    document = config_document(load_settings(path))
    dumped = json.dumps(document)
    for secret in (REDIS_PASSWORD, ZK_DIGEST, PUSH_TOKEN):
        assert secret not in dumped
    keys = {entry["key"]: entry for entry in document["keys"]}
    for key in ("mp.redis.password", "mp.zk.digest", "mp.alloc.push-token"):
        assert keys[key] == {"key": key, "value": "set", "source": "file", "secret": True}


def test_document_shape(tmp_path: Path) -> None:
    path = conf(tmp_path, "mp.alloc.refesh-interval = 1s\nmp.zk.digest = \"\"\n")
    document = config_document(load_settings(path))
    assert set(document) == {"file", "keys", "unknownKeys"}
    assert document["file"] == str(path)
    assert document["unknownKeys"] == [
        {"key": "mp.alloc.refesh-interval", "didYouMean": "mp.alloc.refresh-interval"}]
    assert [entry["key"] for entry in document["keys"]] == [row.key for row in KEYS]
    assert all(set(entry) == {"key", "value", "source", "secret"} for entry in document["keys"])
    first = document["keys"][0]
    assert first == {"key": "mp.log-level", "value": "info", "source": "default",
                     "secret": False}
    digest = next(entry for entry in document["keys"] if entry["key"] == "mp.zk.digest")
    assert digest == {"key": "mp.zk.digest", "value": "unset", "source": "file", "secret": True}
    assert json.loads(json.dumps(document)) == document


def test_document_of_settings_built_in_code() -> None:
    document = config_document(Settings())
    assert document["file"] == "<defaults>"
    assert {entry["source"] for entry in document["keys"]} == {"default"}
    assert document["unknownKeys"] == []
