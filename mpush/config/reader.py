"""Raw access to a resolved tree: one key's value, null and absence, and failing.

The typed reading (durations, ports, ...) is in `mpush.config.kinds`; this
is what every kind shares: walking a dotted key, noticing an unresolved
substitution on the way, and raising a ConfigError that names the key.
"""

from __future__ import annotations

from collections import OrderedDict
from datetime import timedelta
from typing import Any, Final, NoReturn

from pyhocon import ConfigTree
from pyhocon.config_tree import NoneValue

from mpush.config.errors import ConfigError
from mpush.config.hocon import unresolved_name
from mpush.config.units import format_duration

__all__ = ["MISSING", "TreeReader", "show"]

#: What `TreeReader.get` returns for an absent key (None means null).
MISSING: Final[Any] = object()


def show(value: Any) -> str:
    """A short rendering of a config value for messages."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, str):
        text = value if len(value) <= 60 else value[:57] + "..."
        return repr(text)
    if isinstance(value, timedelta):
        return format_duration(value.total_seconds())
    if isinstance(value, ConfigTree):
        return "an object"
    if isinstance(value, list):
        return "a list"
    if value is None:
        return "null"
    return f"a {type(value).__name__}"


class TreeReader:
    """One loaded file's tree, and its name for messages."""

    def __init__(self, source: str, tree: ConfigTree) -> None:
        self.source = source
        self.tree = tree

    def fail(self, key: str, problem: str) -> NoReturn:
        raise ConfigError(self.source, key, problem)

    def check_resolved(self, key: str, value: Any) -> None:
        name = unresolved_name(value)
        if name is not None:
            self.fail(
                key, f"unresolved substitution {name} (define it in the file or the environment)"
            )

    def get(self, key: str) -> Any:
        """The raw value, None for null, MISSING when absent."""
        node = self._walk(key, checked=True)
        return None if isinstance(node, NoneValue) else node

    def placeholder(self, key: str) -> str | None:
        """``"${x}"`` when the key holds an unresolvable ${x} (a Maven placeholder), else None."""
        return unresolved_name(self._walk(key, checked=False))

    def given(self, key: str) -> bool:
        """Whether the file sets the key (null included), to something other than a placeholder."""
        node = self._walk(key, checked=False)
        return node is not MISSING and unresolved_name(node) is None

    def _walk(self, key: str, checked: bool) -> Any:
        """The raw node at `key`, MISSING when absent; unchecked, MISSING through a non-object."""
        node: Any = self.tree
        parts = key.split(".")
        for index, part in enumerate(parts):
            if not isinstance(node, ConfigTree):
                if not checked:
                    return MISSING
                self.fail(".".join(parts[:index]), f"must be an object, got {show(node)}")
            # OrderedDict.get: ConfigTree.get would parse the part as a path.
            node = OrderedDict.get(node, part, MISSING)
            if node is MISSING:
                return MISSING
            if checked:
                self.check_resolved(".".join(parts[: index + 1]), node)
        return node

    def present(self, key: str) -> Any:
        """The value, or MISSING when absent; null is an error (only optional keys take it)."""
        value = self.get(key)
        if value is None:
            self.fail(key, "must not be null")
        return value

    def string(self, key: str, default: str) -> str:
        value = self.present(key)
        if value is MISSING:
            return default
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, int):
            return str(value)  # as Java's getString; a leading zero is lost, so quote such values
        if not isinstance(value, str):
            self.fail(key, f"must be a string, got {show(value)}")
        return str(value)

    def optional_string(self, key: str, default: str | None = None) -> str | None:
        """null and "" mean 'none' (password:"" in the Java files)."""
        if self.get(key) is None:
            return None
        value = self.string(key, default or "")
        return value or None
