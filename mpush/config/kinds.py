"""How one key is read: its type, its bounds, its messages, and its docs spelling.

Each kind is a small frozen value in the key table (`mpush.config.keys`,
which builds it from a row of keys.toml: the row's other entries are the
kind's fields); `read` turns the raw tree value into what the settings hold,
or fails naming the key. Addresses and ZooKeeper paths are in
`mpush.config.addresses`.
"""

from __future__ import annotations

import json
import math
import os
import re
from abc import ABC, abstractmethod
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, ClassVar, Generic, TypeVar

from mpush.config.reader import MISSING, TreeReader, show
from mpush.config.units import format_duration, format_size, parse_duration, parse_size

__all__ = [
    "CheckedText",
    "Choice",
    "Duration",
    "Integer",
    "Kind",
    "LogLevel",
    "OptionalText",
    "Path",
    "Ranged",
    "RawKind",
    "Size",
    "TextKind",
    "Token",
    "WholeSeconds",
    "spell_text",
]


class Kind(ABC):
    """Reads one key; describes what it accepts, for docs/configuration.md."""

    @abstractmethod
    def read(self, tree: TreeReader, key: str, default: Any) -> Any:
        """The key's value, `default` when absent; ConfigError when wrong."""

    @abstractmethod
    def allowed(self) -> str:
        """What the key accepts, as Markdown for the docs table."""

    def spell(self, value: Any) -> str:
        """A (non-None) value as it would be written in the file, for the docs."""
        return str(value)


class RawKind(Kind, ABC):
    """A kind that reads the key's raw value: an absent key is the default."""

    def read(self, tree: TreeReader, key: str, default: Any) -> Any:
        value = tree.present(key)
        return default if value is MISSING else self.parse(tree, key, value)

    @abstractmethod
    def parse(self, tree: TreeReader, key: str, value: Any) -> Any:
        """What the settings hold for the raw `value` of a present key; ConfigError when wrong."""


_Bound = TypeVar("_Bound", int, float)


@dataclass(frozen=True)
class Ranged(Kind, ABC, Generic[_Bound]):
    """A kind with inclusive bounds; other modules read them through keys.bounds."""

    low: _Bound
    high: _Bound
    #: The one message for a value out of bounds; fields low, high and got.
    out_of_range: ClassVar[str]

    def bound(self, value: Any) -> str:
        """A bound, or a measured value, as the message writes it."""
        return str(value)

    def in_range(self, tree: TreeReader, key: str, measure: Any, got: str | None = None) -> Any:
        """`measure` when within the bounds, else fail showing `got` (default: the measure).

        A None measure (not a number at all) fails the same way.
        """
        if measure is None or not self.low <= measure <= self.high:
            shown = self.bound(measure) if got is None else got
            tree.fail(
                key,
                self.out_of_range.format(
                    low=self.bound(self.low), high=self.bound(self.high), got=shown
                ),
            )
        return measure


def spell_text(value: str) -> str:
    """Bare when HOCON would read it back unquoted as the same text, else quoted."""
    return value if re.fullmatch(r"[A-Za-z][\w-]*", value) else json.dumps(value)


class TextKind(Kind, ABC):
    """A kind whose values are text, spelt for the docs as HOCON reads them back."""

    def spell(self, value: Any) -> str:
        return spell_text(value)


class CheckedText(TextKind, ABC):
    """Text that must be given (not null), read stripped, cleaned, then checked."""

    def read(self, tree: TreeReader, key: str, default: Any) -> Any:
        text = self.clean(tree.string(key, default).strip())
        problem = self.problem(text)
        if problem is not None:
            tree.fail(key, f"{problem}, got {text!r}")
        return text

    def clean(self, text: str) -> str:
        """The stripped text as the settings hold it."""
        return text

    @abstractmethod
    def problem(self, text: str) -> str | None:
        """What is wrong with the cleaned text ("must be ..."), None when nothing."""


def seconds_of(tree: TreeReader, key: str, value: Any) -> float:
    """A duration in any of the forms a file may hold, in seconds."""
    if isinstance(value, timedelta):  # pyhocon already read "5s" and "10 minutes"
        return value.total_seconds()
    if isinstance(value, int | float) and not isinstance(value, bool) and value >= 0:
        return value / 1000.0  # Java: a bare number is milliseconds
    if isinstance(value, str):
        try:
            return parse_duration(value)
        except ValueError:
            pass
    tree.fail(key, f"must be a duration such as 5s or 500ms, got {show(value)}")


@dataclass(frozen=True)
class Integer(Ranged[int], RawKind):
    out_of_range: ClassVar[str] = "must be an integer {low}..{high}, got {got}"

    def parse(self, tree: TreeReader, key: str, value: Any) -> Any:
        number: int | None = None  # None: not an integer, the same message
        if isinstance(value, int) and not isinstance(value, bool):
            number = value
        elif isinstance(value, str) and re.fullmatch(r"\s*[+-]?\d+\s*", value):
            number = int(value)
        return self.in_range(tree, key, number, show(value))

    def allowed(self) -> str:
        return f"integer {self.low}..{self.high}"


@dataclass(frozen=True)
class Duration(Ranged[float], RawKind):  # bounds in seconds
    out_of_range: ClassVar[str] = "must be between {low} and {high}, got {got}"

    def bound(self, value: Any) -> str:
        return format_duration(value)

    def parse(self, tree: TreeReader, key: str, value: Any) -> Any:
        return self.in_range(tree, key, seconds_of(tree, key, value))

    def allowed(self) -> str:
        return f"{format_duration(self.low)}..{format_duration(self.high)}"

    def spell(self, value: Any) -> str:
        return format_duration(value)


@dataclass(frozen=True)
class WholeSeconds(Ranged[int], RawKind):
    """Seconds for an HTTP header: a bare number is seconds (not Java's ms), rounded up."""

    out_of_range: ClassVar[str] = "must be {low}..{high} seconds, got {got}"

    def parse(self, tree: TreeReader, key: str, value: Any) -> Any:
        if isinstance(value, int | float) and not isinstance(value, bool):
            exact = float(value)
        elif isinstance(value, str) and re.fullmatch(r"\s*-?\d+(?:\.\d+)?\s*", value):
            exact = float(value)
        else:
            exact = seconds_of(tree, key, value)  # "5s" or "1m" work too
        return math.ceil(self.in_range(tree, key, exact, show(value)))

    def allowed(self) -> str:
        return f"{self.low}..{self.high} (seconds)"


@dataclass(frozen=True)
class Size(Ranged[int], RawKind):  # bounds in bytes
    out_of_range: ClassVar[str] = "must be between {low} and {high} bytes, got {got}"

    def parse(self, tree: TreeReader, key: str, value: Any) -> Any:
        count = self._bytes(value)
        if count is None:
            tree.fail(key, f"must be a size such as 10k or 1m, got {show(value)}")
        return self.in_range(tree, key, count)

    @staticmethod
    def _bytes(value: Any) -> int | None:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                return parse_size(value)
            except ValueError:
                return None
        if isinstance(value, timedelta):
            # pyhocon reads "1m" as one minute before we see it; in a size it
            # means 1 MiB. Only whole minutes can have come from "<n>m".
            seconds = value.total_seconds()
            if seconds > 0 and seconds % 60 == 0:
                return int(seconds // 60) * 1024 * 1024
        return None

    def allowed(self) -> str:
        return f"{format_size(self.low)}..{format_size(self.high)}"

    def spell(self, value: Any) -> str:
        return format_size(value)


@dataclass(frozen=True)
class Choice(Kind):
    values: tuple[str, ...]
    # Values we know but do not support, each with its own message.
    refused: tuple[tuple[str, str], ...] = ()
    # Other names of values, each with the value it stands for.
    aliases: tuple[tuple[str, str], ...] = ()
    ignore_case: bool = False  # then the values and aliases are written in lower case

    def read(self, tree: TreeReader, key: str, default: Any) -> Any:
        value = tree.string(key, default).strip()
        name = value.lower() if self.ignore_case else value
        name = dict(self.aliases).get(name, name)
        for refused, problem in self.refused:
            if name == refused:
                tree.fail(key, problem)
        if name not in self.values:
            wanted = self.values[0] if len(self.values) == 1 else "one of " + ", ".join(self.values)
            tree.fail(key, f"must be {wanted}, got {value!r}")
        return name

    def allowed(self) -> str:
        text = ", ".join(f"`{v}`" for v in self.values)
        notes = [f"`{alias}` = `{value}`" for alias, value in self.aliases]
        if self.refused:
            notes.append(", ".join(f"`{name}`" for name, _ in self.refused) + " refused")
        if self.ignore_case:
            notes.append("any case")
        return f"{text} ({'; '.join(notes)})" if notes else text


@dataclass(frozen=True)
class LogLevel(Choice):
    """A Choice for mp.log-level, where an unfiltered Maven ``${log.level}`` means the default.

    The Java sources' mpush.conf says ``mp.log-level=${log.level}``, for
    Maven to fill in; a file copied unfiltered still loads.
    """

    def read(self, tree: TreeReader, key: str, default: Any) -> Any:
        if tree.placeholder(key) is not None:
            return default
        return super().read(tree, key, default)

    def allowed(self) -> str:
        placeholder = "an unresolved placeholder such as `${log.level}` = the default"
        return f"{super().allowed()}; {placeholder}"


@dataclass(frozen=True)
class OptionalText(TextKind):
    def read(self, tree: TreeReader, key: str, default: Any) -> Any:
        return tree.optional_string(key, default)

    def allowed(self) -> str:
        return 'text; `""` or `null` = none'


@dataclass(frozen=True)
class Path(TextKind):
    """A file or directory, made absolute against the working directory at start."""

    required: bool = False  # else "" and null mean none

    def read(self, tree: TreeReader, key: str, default: Any) -> Any:
        value = tree.optional_string(key, default)
        if value is None:
            if self.required:
                tree.fail(key, "must not be empty")
            return None
        return os.path.abspath(os.path.expanduser(value))

    def allowed(self) -> str:
        return "a path (not empty)" if self.required else 'a path; `""` or `null` = none'


@dataclass(frozen=True)
class Token(Ranged[int]):  # bounds in characters
    """A secret for an Authorization header: visible ASCII, long enough not to guess."""

    out_of_range: ClassVar[str] = "must be {low} to {high} characters long, got {got}"

    def read(self, tree: TreeReader, key: str, default: Any) -> Any:
        token = tree.optional_string(key, default)
        if token is None:
            return None
        if not re.fullmatch(r"[!-~]+", token):
            tree.fail(key, "must be visible ASCII characters only (no spaces)")
        self.in_range(tree, key, len(token))
        return token

    def allowed(self) -> str:
        return f'{self.low}..{self.high} visible ASCII characters; `""` or `null` = none'
