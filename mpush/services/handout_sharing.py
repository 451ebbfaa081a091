"""The timer that shares handout counts between alloc instances.

Every ``interval`` it takes this instance's new handouts from the policy,
adds them to the shared sums in Redis and reads the sums back in the same
round trip (:class:`HandoutStore`), then tells the policy what the other
instances handed out (:mod:`mpush.shared_handouts` does the arithmetic).
Never on the ``GET /`` path: ``allocate()`` only counts in memory.

When Redis fails, the policy keeps what it last learned, the next refresh
folds that into the online counts, and the instance counts alone until the
exchange works again (the unsent handouts go with the next batch). Logged
once when it starts failing and once when it is back.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any, Protocol

from twisted.application.service import Service
from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure

from mpush.arguments import require_positive
from mpush.reactor import default_reactor
from mpush.shared_handouts import HandoutLedger, SharedRead

__all__ = ["HandoutSharer", "HandoutStore", "SharingPolicy"]


class HandoutStore(Protocol):
    """Adds a batch to the shared sums and reads back those of ``addresses`` (and
    of the batch's servers), in one round trip."""

    def exchange(self, batch: Mapping[str, int],
                 addresses: Collection[str] = ()) -> Deferred[SharedRead]: ...


class SharingPolicy(Protocol):
    def handout_totals(self) -> dict[str, int]: ...
    def set_shared(self, counter: Mapping[str, int]) -> None: ...


class HandoutSharer(Service):
    """Runs the exchange every ``interval`` seconds; never two at once."""

    log = Logger()

    def __init__(self, policy: SharingPolicy, store: HandoutStore, *, interval: float,
                 timeout: float | None = None, reactor: Any = None) -> None:
        require_positive(interval=interval)
        self.policy = policy
        self.store = store
        self.interval = interval
        # An exchange that hangs must not stop the sharing for good.
        self.timeout = max(interval, 1.0) * 5 if timeout is None else timeout
        self._reactor = default_reactor(reactor)
        self._ledger = HandoutLedger()
        self._loop: LoopingCall | None = None
        self._inflight: Deferred[Any] | None = None
        self.exchanges = 0  # that worked
        self.failures = 0
        self.last_ok: float | None = None  # reactor time of the last exchange that worked
        self.last_error: str | None = None  # None while it works

    def startService(self) -> None:
        if self.running:
            return
        super().startService()
        self._loop = LoopingCall(self.exchange)
        self._loop.clock = self._reactor
        self._loop.start(self.interval, now=True)

    def stopService(self) -> None:
        if not self.running:
            return
        super().stopService()
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        self._loop = None
        if self._inflight is not None:
            self._inflight.cancel()

    def exchange(self) -> None:
        """One exchange, unless one is still in flight (the loop keeps its period)."""
        if self._inflight is not None:
            return
        totals = self.policy.handout_totals()
        batch = self._ledger.take(totals)
        d = maybeDeferred(self.store.exchange, batch, list(totals))
        d.addTimeout(self.timeout, self._reactor)
        self._inflight = d
        d.addCallbacks(self._exchanged, self._failed, callbackArgs=(batch,))
        d.addErrback(self._unexpected)  # raised by _exchanged: never left unhandled

    def _exchanged(self, read: SharedRead, batch: Mapping[str, int]) -> None:
        self._inflight = None
        self.policy.set_shared(self._ledger.settle(batch, read))
        self.exchanges += 1
        self.last_ok = self._reactor.seconds()
        if self.last_error is not None:
            self.log.info("sharing handout counts through Redis again")
            self.last_error = None

    def _unexpected(self, failure: Failure) -> None:
        self.failures += 1
        self.log.failure("cannot apply the shared handout counts", failure)

    def _failed(self, failure: Failure) -> None:
        self._inflight = None
        if not self.running:
            return  # cancelled by stopService
        self.failures += 1
        message = failure.getErrorMessage() or failure.type.__name__
        if self.last_error is None:
            self.log.warn(
                "cannot share handout counts through Redis ({error}); counting this "
                "instance's handouts alone until it works again", error=message)
        self.last_error = message
