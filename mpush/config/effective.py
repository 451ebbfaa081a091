"""The settings in effect, key by key, for an operator (``GET /config``): never a secret.

`effective` lists every key of the table, in table order, with its value
spelt as it would be written in the config file and where it came from;
`config_document` is the same, ready for JSON.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final, Literal

from mpush.config.keys import KEYS
from mpush.config.settings import Settings, value_of

__all__ = ["SECRET_SET", "SECRET_UNSET", "ConfigEntry", "config_document", "effective"]

#: What a secret key shows instead of its value.
SECRET_SET: Final = "set"
SECRET_UNSET: Final = "unset"

Source = Literal["file", "default"]


@dataclass(frozen=True)
class ConfigEntry:
    """One key of the table as the daemon runs with it."""

    key: str  # the HOCON path, as in the Java files
    # As written in the file (``30s``, ``"127.0.0.1"``, ``64 KiB``); None: none
    # (the key takes "" or null). A secret: "set" or "unset", never the value.
    value: str | None
    source: Source  # "file": the file sets it; "default": the table's default
    file: str | None  # for "file": the config file given (included files are merged into it)
    secret: bool


def effective(settings: Settings) -> list[ConfigEntry]:
    """Every key of the table, in table order, as `settings` hold it.

    The source is ``"file"`` for the keys the loaded file sets (its includes
    counted), ``"default"`` for the others, and for settings not loaded from
    a file (``Settings()``). A value a check makes meaningless is shown as
    the daemon uses it (``mp.redis.sentinel-master`` outside sentinel mode:
    None).
    """
    entries = []
    for row in KEYS:
        value = value_of(settings, row.field)
        if row.secret:
            shown: str | None = SECRET_UNSET if value is None else SECRET_SET
        else:
            shown = None if value is None else row.kind.spell(value)
        given = row.key in settings.from_file
        entries.append(
            ConfigEntry(
                key=row.key,
                value=shown,
                source="file" if given else "default",
                file=settings.source if given else None,
                secret=row.secret,
            )
        )
    return entries


def config_document(settings: Settings) -> dict[str, Any]:
    """`effective` and the unknown keys, as the JSON body of ``GET /config``::

        {"file": "conf/mpush.conf",
         "keys": [{"key": "mp.log-level", "value": "info", "source": "default",
                   "secret": false},
                  {"key": "mp.redis.password", "value": "set", "source": "file",
                   "secret": true}, ...],
         "unknownKeys": [{"key": "mp.alloc.refesh-interval",
                          "didYouMean": "mp.alloc.refresh-interval"}]}

    ``file`` is the config file as given to the daemon (``<defaults>`` for
    ``Settings()``). ``keys`` has every key of the table, in table order:
    ``value`` is spelt as in a config file (a string; null when the key is
    none), ``source`` is ``"file"`` or ``"default"``, and a ``secret`` key
    (Redis password, ZooKeeper digest, push token) has ``"set"`` or
    ``"unset"`` as its value. ``unknownKeys`` lists the keys under mp.alloc
    the daemon does not know, in file order; ``didYouMean`` is the nearest
    known key, or null.
    """
    return {
        "file": settings.source,
        "keys": [
            {"key": entry.key, "value": entry.value, "source": entry.source,
             "secret": entry.secret}
            for entry in effective(settings)
        ],
        "unknownKeys": [
            {"key": unknown.key, "didYouMean": unknown.did_you_mean}
            for unknown in settings.unknown_keys
        ],
    }
