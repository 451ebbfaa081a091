"""A config file to `Settings`: the tree read key by key against the table."""

from __future__ import annotations

import difflib
import os
from collections import defaultdict
from typing import Any, Final

from pyhocon import ConfigTree

from mpush.config.checks import CHECKS, Check
from mpush.config.hocon import parse_tree, read_text
from mpush.config.keys import BY_KEY, KEYS
from mpush.config.reader import TreeReader
from mpush.config.settings import AllocSettings, RedisSettings, Settings, UnknownKey, ZkSettings

__all__ = ["DEFAULT_CONFIG_FILE", "OWN_NAMESPACE", "load_settings", "parse_settings",
           "unknown_keys"]

#: The file ``twistd mpush-alloc`` reads without --config (relative to its CWD).
DEFAULT_CONFIG_FILE: Final = "conf/mpush.conf"
#: Where the keys of mpush-alloc alone are: any other key there is a mistake.
#: The rest of ``mp`` is the Java servers' (most of it we do not read).
OWN_NAMESPACE: Final = "mp.alloc"
_OWN_NAMES: Final = tuple(
    key.removeprefix(OWN_NAMESPACE + ".") for key in BY_KEY if key.startswith(OWN_NAMESPACE + ".")
)

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
    values = read_values(tree)
    given = frozenset(row.key for row in KEYS if tree.given(row.key))
    return _build(source, values, given, unknown_keys(tree))


def read_values(tree: TreeReader) -> dict[str, Any]:
    """Every key of the table, by settings field, checked; ConfigError on the first problem."""
    values: dict[str, Any] = {}
    for row in KEYS:
        values[row.field] = row.kind.read(tree, row.key, row.default)
        for check in _CHECKS_AFTER.get(row.key, ()):
            check(values, tree)
    return values


def unknown_keys(tree: TreeReader) -> tuple[UnknownKey, ...]:
    """The keys under mp.alloc that the table does not have, in file order.

    Each comes with the nearest key of the table (``difflib``), if one is
    near: ``mp.alloc.refesh-interval`` -> ``mp.alloc.refresh-interval``. A
    key holding an object is one unknown key (``mp.alloc.tls { ... }``).
    """
    own = tree.get(OWN_NAMESPACE) if tree.given(OWN_NAMESPACE) else None
    if not isinstance(own, ConfigTree):
        return ()
    found = []
    for name in own:
        key = f"{OWN_NAMESPACE}.{name}"
        if key not in BY_KEY:
            near = difflib.get_close_matches(name, _OWN_NAMES, n=1)
            found.append(UnknownKey(key, f"{OWN_NAMESPACE}.{near[0]}" if near else None))
    return tuple(found)


def _build(
    source: str, values: dict[str, Any], given: frozenset[str], unknown: tuple[UnknownKey, ...]
) -> Settings:
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
        from_file=given,
        unknown_keys=unknown,
        **sections[""],
    )
