"""A bound on the bytes one connection has written and its peer has not yet read.

A gateway that stops reading fills the kernel's socket buffers, then
Twisted's write buffer, which has no limit of its own: every push written
after that stays in the daemon's memory, and would reach the devices late
if the gateway woke up. :class:`WriteQueue` is registered with the transport
as a streaming producer: the transport pauses it once its buffer holds more
than ``transport.bufferSize`` (64 KiB for TCP) and resumes it once the
buffer is empty. While paused, every byte written counts on top of that
buffer size, so ``queued`` never understates what the transport holds (the
kernel may have taken some since); a write that would take it past
``limit`` is refused. (Not paused, the transport holds at most its buffer
size, and a write is let through: so ``queued`` stays within ``limit`` as
long as ``limit`` is at least that size plus the largest write.)

Once a write has been refused the queue is *full* until the transport
empties it: every write is refused meanwhile, so a slow reader catches up
instead of being fed a frame at a time. A queue still full
``stall_timeout`` seconds after its first refusal is stalled: ``on_stall``
is called, once (the connection then closes itself).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet.interfaces import IDelayedCall, IPushProducer, IReactorTime
from zope.interface import implementer

from mpush.arguments import require_positive

__all__ = ["WriteQueue"]


@implementer(IPushProducer)
class WriteQueue:
    """The bytes queued on one connection, against ``limit`` (see the module docstring)."""

    def __init__(self, limit: int, *, stall_timeout: float, clock: IReactorTime,
                 on_stall: Callable[[], object]) -> None:
        require_positive(limit=limit, stall_timeout=stall_timeout)
        self.limit = limit
        self.stall_timeout = stall_timeout
        self._clock = clock
        self._on_stall = on_stall
        self._floor = 0  # what the transport buffers before it pauses us
        self.paused = False  # the transport's buffer is over its own size
        self.queued = 0  # bytes the transport may hold; 0 while not paused
        self._stall: IDelayedCall | None = None  # runs while full

    def attach(self, transport: Any) -> None:
        """Learn the transport's pauses and resumes (call once, when connected)."""
        self._floor = int(getattr(transport, "bufferSize", 0))
        transport.registerProducer(self, True)

    @property
    def full(self) -> bool:
        """A write was refused and the transport has not emptied its buffer since."""
        return self._stall is not None

    def admits(self, size: int) -> bool:
        """True if ``size`` more bytes may be written; False makes (or keeps) it full."""
        if not self.full and (not self.paused or self.queued + size <= self.limit):
            return True
        if self._stall is None:
            self._stall = self._clock.callLater(self.stall_timeout, self._stalled)
        return False

    def wrote(self, size: int) -> None:
        """``size`` bytes were just written to the transport."""
        if self.paused:
            self.queued += size

    def stop(self) -> None:
        """The connection is gone: no stall to report any more."""
        if self._stall is not None:
            if self._stall.active():
                self._stall.cancel()
            self._stall = None

    def _stalled(self) -> None:
        self._stall = None
        self._on_stall()

    # -- IPushProducer: called by the transport ----------------------------

    def pauseProducing(self) -> None:
        # Called inside transport.write(), on every write while over its size.
        if not self.paused:
            self.paused = True
            self.queued = self._floor

    def resumeProducing(self) -> None:
        # The transport's buffer is empty: the gateway has read everything.
        self.paused = False
        self.queued = 0
        self.stop()

    def stopProducing(self) -> None:
        self.stop()
