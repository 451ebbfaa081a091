"""Repeated log events cut to a few lines and a count, whatever floods the log.

A gateway answering with unknown sessionIds at line rate, a thousand
unreachable gateways retrying, a listener out of file descriptors: each
repeats one message (one ``log_format``) as fast as the peer can make it,
and a log that writes each copy costs the CPU and disk the daemon needs.
:class:`RepeatLimiter` sits in front of the log's observer: per message
(namespace and format), the first ``burst`` events pass; the rest are
counted, and :meth:`RepeatLimiter.flush` (every ``window``) writes one line
per message saying how many were left out. A message that goes quiet for a
window starts afresh.

Thread-safe: kazoo logs from its own thread.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from constantly import NamedConstant
from twisted.logger import ILogObserver, LogEvent, LogLevel, formatEvent
from zope.interface import implementer

__all__ = ["RepeatLimiter"]

#: How much of a message a summary quotes.
SAMPLE_CHARS: Final = 200
#: Messages tracked at once; past it, new messages pass unlimited until the
#: next flush clears the quiet ones (a flood is of one message, not of many).
MAX_TRACKED: Final = 10_000


@dataclass
class _Repeats:
    last_seen: float
    passed: int = 1
    left_out: int = 0
    sample: str = ""
    level: NamedConstant = LogLevel.info


@implementer(ILogObserver)
class RepeatLimiter:
    """An observer passing the first ``burst`` events of a message, then a count per flush.

    A message is fresh again once it has been quiet for ``window`` seconds
    and a flush has passed.
    """

    def __init__(self, observer: ILogObserver, *, burst: int = 20, window: float = 10.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if burst < 1 or window <= 0:
            raise ValueError("burst must be >= 1 and window > 0")
        self._observer = observer
        self.burst = burst
        self.window = window
        self._clock = clock
        self._lock = threading.Lock()
        self._seen: dict[tuple[str, str], _Repeats] = {}

    def __call__(self, event: LogEvent) -> None:
        if self._admit(event):
            self._observer(event)

    def _admit(self, event: LogEvent) -> bool:
        key = _key(event)
        now = self._clock()
        with self._lock:
            repeats = self._seen.get(key)
            if repeats is None:
                if len(self._seen) < MAX_TRACKED:
                    self._seen[key] = _Repeats(now)
                return True
            repeats.last_seen = now
            if repeats.passed < self.burst:
                repeats.passed += 1
                return True
            if not repeats.left_out:
                repeats.sample = _sample(event)
                level = event.get("log_level")
                repeats.level = level if isinstance(level, NamedConstant) else LogLevel.info
            repeats.left_out += 1
            return False

    def flush(self) -> None:
        """One line per message with events left out since the last flush; the
        messages quiet for a window are forgotten (fresh again)."""
        now = self._clock()
        with self._lock:
            counts = [(key[0], r.left_out, r.sample, r.level)
                      for key, r in self._seen.items() if r.left_out]
            for key, repeats in list(self._seen.items()):
                if repeats.left_out:
                    repeats.left_out = 0
                elif now - repeats.last_seen >= self.window:
                    del self._seen[key]
        for namespace, count, sample, level in counts:
            self._observer({
                "log_namespace": namespace, "log_level": level, "log_time": time.time(),
                "log_format": "{count} more like this in the last {window:g} s: {sample}",
                "count": count, "window": self.window, "sample": sample,
            })


def _key(event: LogEvent) -> tuple[str, str]:
    namespace = str(event.get("log_namespace") or "-")
    template = event.get("log_format")
    if not isinstance(template, str):  # legacy events: the text is all there is
        template = _sample(event)
    return namespace, template[:SAMPLE_CHARS]


def _sample(event: LogEvent) -> str:
    text = formatEvent(event)
    return text if len(text) <= SAMPLE_CHARS else text[: SAMPLE_CHARS - 3] + "..."
