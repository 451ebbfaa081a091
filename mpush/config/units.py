"""Durations and sizes in the HOCON / Typesafe Config spelling (case-sensitive).

Java's rules: a bare number is milliseconds in a duration and bytes in a
size; ``k``/``K``/``KiB`` are powers of 1024, ``kB`` powers of 1000.
"""

from __future__ import annotations

import re
from fractions import Fraction
from typing import Final

__all__ = [
    "INT32_MAX",
    "format_duration",
    "format_size",
    "parse_duration",
    "parse_size",
]

#: Java's Integer.MAX_VALUE: the largest int a Java server reads from its
#: config (sizes are read as ints) or from the wire.
INT32_MAX: Final = 2**31 - 1

_DURATION_UNITS: Final[dict[str, Fraction]] = {
    **dict.fromkeys(
        ("", "ms", "milli", "millis", "millisecond", "milliseconds"), Fraction(1, 1000)
    ),
    **dict.fromkeys(("us", "micro", "micros", "microsecond", "microseconds"), Fraction(1, 10**6)),
    **dict.fromkeys(("ns", "nano", "nanos", "nanosecond", "nanoseconds"), Fraction(1, 10**9)),
    **dict.fromkeys(("s", "second", "seconds"), Fraction(1)),
    **dict.fromkeys(("m", "min", "mins", "minute", "minutes"), Fraction(60)),
    **dict.fromkeys(("h", "hour", "hours"), Fraction(3600)),
    **dict.fromkeys(("d", "day", "days"), Fraction(86400)),
    # Not Java, but pyhocon already turns "1w" into a week before we see it.
    **dict.fromkeys(("w", "week", "weeks"), Fraction(7 * 86400)),
}

_SIZE_UNITS: Final[dict[str, int]] = {
    **dict.fromkeys(("", "b", "B", "byte", "bytes"), 1),
    **dict.fromkeys(("kB", "kilobyte", "kilobytes"), 1000),
    **dict.fromkeys(("MB", "megabyte", "megabytes"), 1000**2),
    **dict.fromkeys(("GB", "gigabyte", "gigabytes"), 1000**3),
    **dict.fromkeys(("TB", "terabyte", "terabytes"), 1000**4),
    # "kb", "mb", ... are not Java units; people who write them mean 1024-based.
    **dict.fromkeys(("k", "K", "Ki", "KiB", "kibibyte", "kibibytes", "kb"), 1024),
    **dict.fromkeys(("m", "M", "Mi", "MiB", "mebibyte", "mebibytes", "mb"), 1024**2),
    **dict.fromkeys(("g", "G", "Gi", "GiB", "gibibyte", "gibibytes", "gb"), 1024**3),
    **dict.fromkeys(("t", "T", "Ti", "TiB", "tebibyte", "tebibytes", "tb"), 1024**4),
}

_NUMBER_UNIT = re.compile(r"\s*(?P<number>\d+(?:\.\d*)?|\.\d+)\s*(?P<unit>[A-Za-z]*)\s*")


def parse_duration(text: str) -> float:
    """``"5s"`` → 5.0, ``"500ms"`` → 0.5, ``"5000"`` → 5.0 (bare = ms). ValueError if not."""
    match = _NUMBER_UNIT.fullmatch(text)
    if match is None or match["unit"] not in _DURATION_UNITS:
        raise ValueError(f"not a duration: {text!r}")
    # Fractions, so that "0.1s" is exactly a tenth before the one rounding to float.
    return float(Fraction(match["number"]) * _DURATION_UNITS[match["unit"]])


def parse_size(text: str) -> int:
    """``"10k"`` → 10240, ``"10kB"`` → 10000, ``"512"`` → 512 (bare = bytes). ValueError if not."""
    match = _NUMBER_UNIT.fullmatch(text)
    if match is None or match["unit"] not in _SIZE_UNITS:
        raise ValueError(f"not a size: {text!r}")
    # Java truncates fractional byte counts ("0.1k" = 102); so do we.
    return int(Fraction(match["number"]) * _SIZE_UNITS[match["unit"]])


def format_duration(seconds: float) -> str:
    """A short exact spelling that parse_duration reads back (for messages)."""
    if seconds == 0:
        return "0s"
    for unit, size in (("d", 86400.0), ("h", 3600.0), ("m", 60.0), ("s", 1.0), ("ms", 1e-3)):
        count = seconds / size
        if abs(count) >= 1 and abs(count - round(count)) <= 1e-12 * abs(count):
            return f"{round(count)}{unit}"
    return f"{seconds:.9f}".rstrip("0").rstrip(".") + "s"


def format_size(count: int) -> str:
    """``65536`` → ``"64 KiB"``; parse_size reads it back (for the docs)."""
    for unit, size in (("TiB", 1024**4), ("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if count >= size and count % size == 0:
            return f"{count // size} {unit}"
    return "1 byte" if count == 1 else f"{count} bytes"
