"""The mass-drop hold: no herding after a ZooKeeper glitch.

When a ZooKeeper hiccup expires many connection servers' sessions at once,
their nodes vanish although the servers are alive, and they re-register a
few seconds later. Applied literally, that removal sends every new client to
the few servers left. :class:`MassDropHold` decides, for each refresh, which
removed servers stay in the answer a while longer.

The rules (time is passed in; pure, no Twisted):

* A *burst* is the removals seen by refreshes that follow each other within
  ``window`` seconds (the refresher passes ``mp.alloc.mass-drop-window``, at
  least twice ``mp.alloc.change-delay``: ZooKeeper expires sessions once per
  tick, so one glitch's servers leave over a few ticks). It compares
  the live servers before its first removal (held ones not counted) with the
  live ones now: a server that came and went within the burst does not count.
* When a burst has removed more than half of the servers live before it,
  and more than one (one server leaving is a normal removal, whatever the
  cluster's size), every server it removed is held: kept in the answer
  until ``hold`` seconds after the refresh that saw the mass drop. A
  smaller removal is applied at once.
* A held server is released as soon as a live server serves the same
  address again (a re-registration, maybe under a new node name), or when
  its time is up. Nothing extends a hold; a second mass drop during a
  hold holds its own servers for their own ``hold`` seconds, so no server is
  held longer than ``hold`` (plus one burst) after it left.
* ``hold == 0`` disables it all: the view is served as it is.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from mpush.arguments import require_non_negative
from mpush.balance import Candidate

__all__ = ["HeldServer", "HoldStep", "MassDropHold"]


@dataclass(frozen=True, slots=True)
class HeldServer:
    """A server kept in the answer after it left the view."""

    candidate: Candidate  # as it was served before it left
    until: float  # the time its hold ends


@dataclass(frozen=True, slots=True)
class HoldStep:
    """What one :meth:`MassDropHold.update` decided."""

    serve: list[Candidate]  # the live servers, then the held ones
    started: int = 0  # servers newly held by a mass drop now (0: none)
    removed: int = 0  # when started: the burst's removals ...
    base: int = 0  # ... out of this many live servers before it
    # When the last held server left: (came back, dropped at the end), over the hold.
    ended: tuple[int, int] | None = None


@dataclass
class MassDropHold:
    """Decides which removed servers stay in the answer (see the module doc)."""

    hold: float  # s a server may be held after it left the view; 0: never
    window: float  # s between two refreshes of one burst
    held: dict[str, HeldServer] = field(default_factory=dict)  # by served address
    holds_started: int = 0  # mass drops that held servers (only grows: metrics)
    _live: dict[str, Candidate] = field(default_factory=dict)  # at the last update
    _burst_at: float | None = None  # the last refresh that saw a removal of the burst
    _burst_before: dict[str, Candidate] = field(default_factory=dict)  # live before it
    _burst_held: set[str] = field(default_factory=set)  # held once by this burst
    _came_back: int = 0  # tallies of the hold in progress, for its end
    _dropped: int = 0

    def __post_init__(self) -> None:
        require_non_negative(hold=self.hold, window=self.window)

    def update(self, now: float, live: Sequence[Candidate]) -> HoldStep:
        """The servers to serve at ``now`` when the view shows ``live``."""
        current = {c.address: c for c in live}
        previous, self._live = self._live, current
        if not self.hold:
            return HoldStep(list(live))
        was_holding = bool(self.held)
        self._release(now, current)
        started, removed, base = self._note_burst(now, previous, current)
        ended = None
        if was_holding and not self.held:
            ended = (self._came_back, self._dropped)
            self._came_back = self._dropped = 0
        serve = list(live) + [h.candidate for h in self.held.values()]
        return HoldStep(serve, started, removed, base, ended)

    def next_end(self) -> float | None:
        """When the next held server's time is up (None: nothing held)."""
        return min((h.until for h in self.held.values()), default=None)

    def frozen_ips(self) -> frozenset[str]:
        """IPs only held servers use: their online count is not read again (the
        last known count stays, plus what is handed out meanwhile)."""
        live_ips = {c.ip for c in self._live.values()}
        return frozenset(h.candidate.ip for h in self.held.values()
                         if h.candidate.ip not in live_ips)

    # -- the steps ------------------------------------------------------

    def _release(self, now: float, live: dict[str, Candidate]) -> None:
        for address, h in list(self.held.items()):
            if address in live:
                del self.held[address]
                self._came_back += 1
            elif now >= h.until:
                del self.held[address]
                self._dropped += 1

    def _note_burst(self, now: float, previous: dict[str, Candidate],
                    current: dict[str, Candidate]) -> tuple[int, int, int]:
        """Add this refresh's removals to the burst; hold them on a mass drop.
        Returns (newly held, the burst's removals, its base), zeros if none."""
        if all(a in current for a in previous):
            return 0, 0, 0  # nothing removed
        if self._burst_at is None or now - self._burst_at > self.window:
            self._burst_before = previous
            self._burst_held = set()
        self._burst_at = now
        base = len(self._burst_before)
        removed = [c for a, c in self._burst_before.items() if a not in current]
        if len(removed) < 2 or len(removed) * 2 <= base:
            return 0, 0, 0
        fresh = self._hold_all(removed, now + self.hold)
        if fresh:
            self.holds_started += 1
        return fresh, len(removed), base

    def _hold_all(self, removed: Iterable[Candidate], until: float) -> int:
        # A server this burst held once is not held again (its hold may be
        # over already), and one held keeps its end: a hold is never extended.
        fresh = 0
        for c in removed:
            if c.address not in self.held and c.address not in self._burst_held:
                self.held[c.address] = HeldServer(c, until)
                self._burst_held.add(c.address)
                fresh += 1
        return fresh
