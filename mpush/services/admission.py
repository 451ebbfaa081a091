"""Admission of pushes: the in-flight limit, the outcome counts, the shutdown's last word.

:class:`mpush.services.pusher.PushClient` runs every ``push()`` and
``broadcast()`` through one :class:`PushAdmission`, so every caller of the
client (the ``/push`` resource, a library user) gets the same limit, and
the drain finds every call still in flight in one place. Reactor thread
only; no I/O.

A call counts its cost (a user each, a broadcast one) from its start until
its outcome is known, whether or not anyone still waits for it. Over
``max_inflight`` a call is refused before anything is sent: refuse rather
than queue, as a queue would only grow while the gateways are slow, and
every waiting push would time out anyway.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from twisted.internet.defer import Deferred, succeed
from twisted.logger import Logger
from twisted.python.failure import Failure

from mpush.interfaces import PushOutcomeRow
from mpush.outcomes import PushOutcome

__all__ = ["PushAdmission", "PushRefused"]

log = Logger(namespace="mpush.services.admission")


R = TypeVar("R", bound=PushOutcomeRow)  # counted: its result and ms


class PushRefused(Exception):
    """A push or broadcast refused before anything was sent.

    ``closing``: the client is shutting down (else: no room under the limit).
    Not a ValueError: the arguments were fine, the moment was not.
    """

    def __init__(self, message: str, *, closing: bool) -> None:
        super().__init__(message)
        self.closing = closing


@dataclass(eq=False)  # identity: each call is its own key
class _Call(Generic[R]):
    cost: int
    answer: Deferred[list[R]]  # what the caller holds; fires exactly once
    forced: Callable[[], list[R]]  # the results to give if shutdown cannot wait


class PushAdmission:
    """Counts the calls in flight against ``max_inflight``; ends them at shutdown.

    ``outcomes`` counts every result given (a target each; a broadcast: a
    gateway each), shutdown answers included; ``observe_push``, when set
    (``mpush.daemon.metrics.Metrics.attach``), gets each real result's time
    since its call started, in seconds.
    """

    def __init__(self, *, max_inflight: int) -> None:
        if not isinstance(max_inflight, int) or max_inflight < 1:
            raise ValueError(f"max_inflight must be an int >= 1, not {max_inflight!r}")
        self.max_inflight = max_inflight
        self.inflight = 0  # user pushes (a broadcast: 1) whose outcome is not known yet
        self.closing = False  # close(): every new call is refused
        self.outcomes: dict[str, int] = dict.fromkeys(PushOutcome, 0)
        self.observe_push: Callable[[float], None] | None = None
        self._calls: dict[_Call[Any], None] = {}  # in flight, oldest first
        self._idle_waiters: list[Deferred[None]] = []

    @property
    def calls(self) -> int:
        """Calls (push() or broadcast()) whose outcome is not given yet."""
        return len(self._calls)

    def admits(self, cost: int) -> bool:
        """Whether a call of ``cost`` would be admitted now."""
        return not self.closing and self.inflight + cost <= self.max_inflight

    def close(self) -> None:
        """Refuse every new call from now on (shutdown)."""
        self.closing = True

    def when_idle(self) -> Deferred[None]:
        """Fires once no call is in flight (at once if none is)."""
        if self.inflight <= 0:
            return succeed(None)
        d: Deferred[None] = Deferred()
        self._idle_waiters.append(d)
        return d

    def run(self, cost: int, start: Callable[[], Deferred[list[R]]],
            forced: Callable[[], list[R]]) -> Deferred[list[R]]:
        """``start()`` the call's work, counted as ``cost`` until its outcome.

        Raises :class:`PushRefused` (nothing started) when closing or
        without room; what ``start`` raises propagates, its count given
        back. The Deferred returned fires once: with the work's outcome, or
        with ``forced()`` if :meth:`end_all_as_timeout` comes first.
        """
        if self.closing:
            raise PushRefused("the push client is closing", closing=True)
        if not self.admits(cost):
            raise PushRefused(f"too many pushes in flight (limit {self.max_inflight})",
                              closing=False)
        self.inflight += cost  # before the call: its Deferred may fire at once
        try:
            work = start()
        except BaseException:
            self._release(cost)
            raise
        call: _Call[R] = _Call(cost, Deferred(), forced)
        self._calls[call] = None
        work.addCallbacks(self._ended, self._failed, callbackArgs=(call,), errbackArgs=(call,))
        return call.answer

    def end_all_as_timeout(self) -> int:
        """Shutdown, last resort: every call in flight ends now with ``forced()``.

        Those results (``timeout`` for every target) are counted, not
        observed; an outcome arriving later is dropped. Returns how many
        calls ended this way.
        """
        calls = list(self._calls)
        for call in calls:
            if self._settle(call):
                results = call.forced()
                self._count(results, observed=False)
                call.answer.callback(results)
        return len(calls)

    # -- internals --------------------------------------------------------

    def _ended(self, results: list[R], call: _Call[R]) -> None:
        if not self._settle(call):
            log.info("push outcome after the shutdown answer: {n} result(s) dropped",
                     n=len(results))
            return
        self._count(results, observed=True)
        call.answer.callback(results)

    def _failed(self, failure: Failure, call: _Call[R]) -> None:
        if self._settle(call):
            call.answer.errback(failure)
        # Else answered at shutdown already: nobody waits for this failure.

    def _settle(self, call: _Call[R]) -> bool:
        """The call's count is given back now; False if that happened already."""
        if call not in self._calls:
            return False
        del self._calls[call]
        # Before the answer goes out: a drain waiting for idle resumes first,
        # so the answer already carries its "Connection: close".
        self._release(call.cost)
        return True

    def _release(self, cost: int) -> None:
        self.inflight -= cost
        if self.inflight <= 0 and self._idle_waiters:
            waiters, self._idle_waiters = self._idle_waiters, []
            for d in waiters:
                d.callback(None)

    def _count(self, results: list[R], *, observed: bool) -> None:
        outcomes = self.outcomes
        observe = self.observe_push if observed else None
        for r in results:
            if r.result in outcomes:  # always, for PushClient's results; kept bounded anyway
                outcomes[r.result] += 1
            if observe is not None:
                observe(float(r.ms) / 1000.0)
