"""The config file (HOCON, the Java alloc's format) as typed, validated settings.

Pure: apart from reading the config file (and any file it includes), its
own key table (keys.toml, shipped with it) and checking that a configured
TLS certificate and key can be opened, nothing here touches the outside
world, and nothing here imports Twisted or any other part of mpush. Every
problem is raised as a `ConfigError` whose text is one line naming the
file and, where there is one, the key.

The layers, bottom up: `errors` and `units` (durations, sizes); `hocon`
(the text to a resolved tree, with the Java quirks); `reader`, `kinds` and
`addresses` (one key's typed reading); `keys` (the table of every key: its
default, bounds and meaning, read from keys.toml) and `checks` (rules
across keys); `settings` (the dataclasses); `loader` (a file to Settings,
and the unknown keys of our own namespace); `effective` (the settings in
effect, key by key, secrets hidden, for ``GET /config``); `docs` (the
operator's page, docs/configuration.md, from the table).
"""

from mpush.config.effective import ConfigEntry, config_document, effective
from mpush.config.errors import ConfigError
from mpush.config.loader import DEFAULT_CONFIG_FILE, load_settings, parse_settings
from mpush.config.settings import (
    AllocSettings,
    RedisSettings,
    Settings,
    UnknownKey,
    ZkSettings,
)
from mpush.config.units import format_duration, parse_duration, parse_size

__all__ = [
    "DEFAULT_CONFIG_FILE",
    "AllocSettings",
    "ConfigEntry",
    "ConfigError",
    "RedisSettings",
    "Settings",
    "UnknownKey",
    "ZkSettings",
    "config_document",
    "effective",
    "format_duration",
    "load_settings",
    "parse_duration",
    "parse_settings",
    "parse_size",
]
