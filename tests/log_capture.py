"""The daemon's log lines, as a test reads them."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from twisted.logger import LogEvent, formatEvent, globalLogPublisher


@contextmanager
def log_lines(namespace: str) -> Iterator[list[str]]:
    """The formatted twisted.logger lines whose namespace starts with ``namespace``,
    logged while the block runs."""
    lines: list[str] = []

    def observe(event: LogEvent) -> None:
        if event.get("log_namespace", "").startswith(namespace):
            lines.append(formatEvent(event))

    globalLogPublisher.addObserver(observe)
    try:
        yield lines
    finally:
        globalLogPublisher.removeObserver(observe)
