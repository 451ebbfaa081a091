"""The repeat limit of the daemon's log: unit tests with a fake clock, and the
real daemon (twistd) with a gateway flooding it with unknown sessionIds."""

from __future__ import annotations

from typing import Any

import pytest
from twisted.logger import LogEvent, LogLevel, formatEvent

from mpush.daemon.log_limits import MAX_TRACKED, RepeatLimiter


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def event(fmt: str, namespace: str = "mpush.x", level: LogLevel = LogLevel.warn,
          **fields: Any) -> LogEvent:
    return {"log_format": fmt, "log_namespace": namespace, "log_level": level, **fields}


def limited(burst: int = 3, window: float = 10.0) -> tuple[RepeatLimiter, list[LogEvent], Clock]:
    written: list[LogEvent] = []
    clock = Clock()
    return RepeatLimiter(written.append, burst=burst, window=window, clock=clock), written, clock


def test_a_flood_is_its_first_lines_then_one_count_per_flush() -> None:
    limiter, written, clock = limited()
    for sid in range(1000):
        limiter(event("answer for sessionId {sid} matches nothing", sid=sid))
    assert [formatEvent(e) for e in written] == [
        f"answer for sessionId {sid} matches nothing" for sid in range(3)]
    clock.now += 10
    limiter.flush()
    summary = written[-1]
    assert len(written) == 4
    assert formatEvent(summary) == ("997 more like this in the last 10 s: answer for sessionId 3"
                                    " matches nothing")
    assert (summary["log_level"], summary["log_namespace"]) == (LogLevel.warn, "mpush.x")
    # Still flooding: only counts, one per flush.
    for sid in range(50):
        limiter(event("answer for sessionId {sid} matches nothing", sid=sid))
    clock.now += 10
    limiter.flush()
    assert len(written) == 5 and written[-1]["count"] == 50
    # Nothing to say: no line.
    clock.now += 10
    limiter.flush()
    assert len(written) == 5


def test_a_message_quiet_for_a_window_is_fresh_again() -> None:
    limiter, written, clock = limited(burst=1)
    limiter(event("connected {n}", n=1))
    limiter(event("connected {n}", n=2))
    clock.now += 10
    limiter.flush()  # the count of the one left out
    clock.now += 10
    limiter.flush()  # quiet for a window: forgotten
    limiter(event("connected {n}", n=3))
    assert [formatEvent(e) for e in written] == [
        "connected 1", "1 more like this in the last 10 s: connected 2", "connected 3"]


def test_messages_are_limited_apart() -> None:
    limiter, written, _ = limited(burst=1)
    for _ in range(5):
        limiter(event("a {x}", x=1))
        limiter(event("b {x}", x=1))
        limiter(event("a {x}", namespace="mpush.other", x=1))
    assert [(e["log_namespace"], e["log_format"]) for e in written] == [
        ("mpush.x", "a {x}"), ("mpush.x", "b {x}"), ("mpush.other", "a {x}")]


def test_legacy_events_are_keyed_by_their_text() -> None:
    limiter, written, _ = limited(burst=2)
    for _ in range(10):
        limiter({"log_namespace": "twisted", "log_level": LogLevel.info, "log_format": None,
                 "message": ("Could not accept new connection (EMFILE)",), "log_text":
                 "Could not accept new connection (EMFILE)"})
    assert len(written) == 2


def test_the_tracked_messages_are_bounded() -> None:
    limiter, written, clock = limited(burst=1)
    for n in range(MAX_TRACKED + 5):
        limiter(event(f"message {n}"))
    assert len(written) == MAX_TRACKED + 5  # all distinct: all pass
    assert len(limiter._seen) == MAX_TRACKED
    clock.now += 10
    limiter.flush()
    assert not limiter._seen  # all quiet: forgotten


def test_bad_parameters_are_refused() -> None:
    with pytest.raises(ValueError):
        RepeatLimiter(print, burst=0)
    with pytest.raises(ValueError):
        RepeatLimiter(print, window=0)
