"""Every config key we read, as `Key` rows built from the table in keys.toml.

One row per HOCON key: ``mpush/config/keys.toml`` (data shipped with the
package) is the single home of each default and bound. The settings
dataclasses take their defaults from it, the modules that need a default
outside a config (``mpush.services.refresher``, ``mpush.web.*``, ...) ask
`default`, and ``docs/configuration.md`` is generated from it
(``scripts/gen-config-docs``).

Each default is written there as in a config file and read at import by the
key's own kind, so a default its kind refuses fails at once, naming
keys.toml and the key. Rows are read in table order, which decides which
error is reported when several keys are wrong; the docs group them by
section. Checks that involve more than one key are in `mpush.config.checks`.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from types import MappingProxyType
from typing import Any, Final

from pyhocon import ConfigFactory

from mpush.config.addresses import (
    HostList,
    IPAddress,
    MulticastAddress,
    NetworkList,
    ZkHosts,
    ZkPath,
)
from mpush.config.errors import ConfigError
from mpush.config.kinds import (
    Choice,
    Duration,
    Integer,
    Kind,
    LogLevel,
    OptionalText,
    Path,
    Ranged,
    Size,
    Token,
    WholeSeconds,
)
from mpush.config.reader import TreeReader

__all__ = ["BY_KEY", "DEFAULTS", "KEYS", "Key", "bounds", "default"]

_TABLE: Final = "mpush/config/keys.toml"  # as named in messages
#: The kinds a row may name, by class name.
_KINDS: Final[Mapping[str, type[Kind]]] = MappingProxyType(
    {
        kind.__name__: kind
        for kind in (Choice, Duration, HostList, Integer, IPAddress, LogLevel,
                     MulticastAddress, NetworkList, OptionalText, Path, Size, Token,
                     WholeSeconds, ZkHosts, ZkPath)
    }
)


@dataclass(frozen=True)
class Key:
    key: str  # the HOCON path, as in the Java files
    field: str  # what it fills: a Settings field, or "zk.x" / "redis.x" / "alloc.x"
    default: Any  # the settings' value when the key is absent (None: none)
    kind: Kind
    doc: str  # one line for an operator (Markdown)
    secret: bool = False  # its value is never shown, only whether it is set


def _frozen(value: Any) -> Any:
    """TOML arrays and tables as tuples, so that kinds stay hashable values."""
    if isinstance(value, list):
        return tuple(_frozen(item) for item in value)
    if isinstance(value, dict):
        return tuple((name, _frozen(item)) for name, item in value.items())
    return value


def _load() -> tuple[Key, ...]:
    text = resources.files("mpush.config").joinpath("keys.toml").read_text(encoding="utf-8")
    table = tomllib.loads(text)  # tables in file order
    # A config holding only the defaults, for each kind to read its own.
    given = {key: row["default"] for key, row in table.items() if "default" in row}
    defaults = TreeReader(_TABLE, ConfigFactory.from_dict(given))
    rows = []
    for key, entries in table.items():
        arguments = dict(entries)
        try:
            field, doc, name = arguments.pop("field"), arguments.pop("doc"), arguments.pop("kind")
            raw = arguments.pop("default", None)
            secret = bool(arguments.pop("secret", False))
            kind = _KINDS[name](**{arg: _frozen(value) for arg, value in arguments.items()})
        except (KeyError, TypeError) as exc:  # a missing entry, an unknown kind or argument
            raise ConfigError(_TABLE, key, f"bad row: {exc!r}") from exc
        value = None if raw is None else kind.read(defaults, key, None)
        # Loading makes a path absolute against the working directory at start;
        # its default stays as written (read above only to check it).
        rows.append(Key(key, field, raw if isinstance(kind, Path) else value, kind, doc, secret))
    return tuple(rows)


KEYS: Final[tuple[Key, ...]] = _load()

BY_KEY: Final[Mapping[str, Key]] = MappingProxyType({row.key: row for row in KEYS})
#: HOCON key -> default, for modules that take a config value as a parameter.
DEFAULTS: Final[Mapping[str, Any]] = MappingProxyType({row.key: row.default for row in KEYS})


def default(key: str) -> Any:
    """The default of one HOCON key (KeyError for a key not in the table)."""
    return DEFAULTS[key]


def bounds(key: str) -> tuple[Any, Any]:
    """The inclusive (low, high) a key accepts (seconds, bytes or a count)."""
    kind = BY_KEY[key].kind
    if not isinstance(kind, Ranged):
        raise TypeError(f"{key} has no bounds")
    return kind.low, kind.high
