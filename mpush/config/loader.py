"""A config file to `Settings`: the tree read key by key against the table."""

from __future__ import annotations

import os
from collections import defaultdict
from typing import Any, Final

from mpush.config.checks import CHECKS, Check
from mpush.config.hocon import parse_tree, read_text
from mpush.config.keys import KEYS
from mpush.config.reader import TreeReader
from mpush.config.settings import AllocSettings, RedisSettings, Settings, ZkSettings

__all__ = ["DEFAULT_CONFIG_FILE", "load_settings", "parse_settings"]

#: The file ``twistd mpush-alloc`` reads without --config (relative to its CWD).
DEFAULT_CONFIG_FILE: Final = "conf/mpush.conf"

_CHECKS_AFTER: Final[dict[str, list[Check]]] = defaultdict(list)
for _after, _check in CHECKS:
    _CHECKS_AFTER[_after].append(_check)


def load_settings(path: str | os.PathLike[str]) -> Settings:
    """Read, parse and validate one config file. Raises ConfigError."""
    source = os.fspath(path)
    return parse_settings(
        read_text(source, source), source=source, basedir=os.path.dirname(source)
    )


def parse_settings(text: str, source: str = "<string>", basedir: str = "") -> Settings:
    """Like `load_settings` for text already in hand (includes resolve against basedir)."""
    tree = TreeReader(source, parse_tree(text, source, basedir))
    return _build(source, read_values(tree))


def read_values(tree: TreeReader) -> dict[str, Any]:
    """Every key of the table, by settings field, checked; ConfigError on the first problem."""
    values: dict[str, Any] = {}
    for row in KEYS:
        values[row.field] = row.kind.read(tree, row.key, row.default)
        for check in _CHECKS_AFTER.get(row.key, ()):
            check(values, tree)
    return values


def _build(source: str, values: dict[str, Any]) -> Settings:
    # "zk.namespace" goes to ZkSettings.namespace, "port" to Settings.port.
    sections: dict[str, dict[str, Any]] = {"": {}, "zk": {}, "redis": {}, "alloc": {}}
    for field, value in values.items():
        section, _, name = field.rpartition(".")
        sections[section][name] = value
    return Settings(
        source=source,
        zk=ZkSettings(**sections["zk"]),
        redis=RedisSettings(**sections["redis"]),
        alloc=AllocSettings(**sections["alloc"]),
        **sections[""],
    )
