"""The mass-drop hold in the service layer: its timer and its log lines.

:class:`mpush.hold.MassDropHold` decides (pure); :class:`HoldKeeper` gives it
the reactor's time, logs once when a hold starts and once when it ends, and
asks for a refresh when the next held server's time is up, so the answer
loses it then and not at the next periodic refresh.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from twisted.internet.interfaces import IDelayedCall
from twisted.logger import Logger

from mpush.balance import Candidate
from mpush.hold import MassDropHold

__all__ = ["HoldKeeper"]


class HoldKeeper:
    """One kind of server's hold (``what`` names it in the log): ``serve``
    at each refresh, ``stop`` when the refresher stops."""

    log = Logger()

    def __init__(self, hold: float, window: float, reactor: Any,
                 refresh: Callable[[], object], what: str = "connection servers") -> None:
        self.rules = MassDropHold(hold, window)
        self._reactor = reactor
        self._refresh = refresh
        self._what = what
        self._due: IDelayedCall | None = None

    @property
    def held(self) -> Mapping[str, float]:
        """Served address -> reactor time its hold ends."""
        return {address: h.until for address, h in self.rules.held.items()}

    @property
    def holds_started(self) -> int:
        return self.rules.holds_started

    def frozen_ips(self) -> frozenset[str]:
        return self.rules.frozen_ips()

    def serve(self, live: Sequence[Candidate]) -> list[Candidate]:
        """The candidates to serve when the view shows ``live``."""
        step = self.rules.update(self._reactor.seconds(), live)
        if step.started:
            self.log.warn(
                "mass drop: {removed} of {base} {what} left ZooKeeper at once; keeping "
                "{held} of them in the answer for at most {hold:g} s until they register again",
                removed=step.removed, base=step.base, what=self._what, held=step.started,
                hold=self.rules.hold)
        if step.ended is not None:
            back, dropped = step.ended
            self.log.info("mass-drop hold over: {back} {what} came back, {dropped} dropped",
                          back=back, dropped=dropped, what=self._what)
        self._arm()
        return step.serve

    def stop(self) -> None:
        if self._due is not None and self._due.active():
            self._due.cancel()
        self._due = None

    def _arm(self) -> None:
        end = self.rules.next_end()
        if self._due is not None and self._due.active():
            if end is not None and self._due.getTime() == end:
                return
            self._due.cancel()
        self._due = None
        if end is not None:
            delay = max(0.0, end - self._reactor.seconds())
            self._due = self._reactor.callLater(delay, self._on_due)

    def _on_due(self) -> None:
        self._due = None
        self._refresh()
