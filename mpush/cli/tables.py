"""Plain-text tables for a terminal, coloured only when it is one."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any, Final, TextIO

__all__ = ["Painter", "table", "text"]

_COLOURS: Final = {"green": "32", "yellow": "33", "red": "31", "dim": "2"}


class Painter:
    """Colours words for a terminal; a pipe, a file or ``NO_COLOR`` gets them bare."""

    def __init__(self, stream: TextIO) -> None:
        isatty = getattr(stream, "isatty", None)
        self.enabled = bool(isatty and isatty()) and "NO_COLOR" not in os.environ

    def __call__(self, text: str, colour: str | None) -> str:
        if not self.enabled or colour is None:
            return text
        return f"\x1b[{_COLOURS[colour]}m{text}\x1b[0m"


def table(headers: Sequence[str], rows: Sequence[Sequence[str]], *,
          paint: Painter | None = None, column: int | None = None,
          colours: Sequence[str | None] = ()) -> str:
    """Columns aligned on the widest cell; cell ``column`` of row i painted ``colours[i]``.

    Padding is computed on the bare text, so colour codes never skew columns.
    """
    widths = [len(h) for h in headers]
    for row in rows:
        widths = [max(w, len(cell)) for w, cell in zip(widths, row, strict=True)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    for index, row in enumerate(rows):
        cells = [cell.ljust(w) for cell, w in zip(row, widths, strict=True)]
        if paint is not None and column is not None and index < len(colours):
            cells[column] = paint(cells[column], colours[index])
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)


def text(value: Any) -> str:
    """A JSON value as a table cell."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))  # a count or weight the JSON carries as a float
    return str(value)
