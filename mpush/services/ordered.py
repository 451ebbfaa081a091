"""The ordered parent service: Java ``BaseService`` semantics on Twisted.

``MultiService`` starts its children all at once and ignores the Deferreds
their ``startService`` returns. The daemon needs more: ZooKeeper before the
refresher, the refresher before the web listener. So children start one by
one, each awaited; they stop in reverse; a failed start stops whatever had
started and fails the whole start. Start and stop are idempotent.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.application.service import MultiService, Service
from twisted.internet.defer import Deferred, maybeDeferred, succeed
from twisted.logger import Logger
from twisted.python.failure import Failure


class StartError(Exception):
    """A child service failed to start; names the child and the reason."""

    def __init__(self, name: str, reason: Failure) -> None:
        self.name = name
        self.reason = reason
        super().__init__(f"{name} failed to start: {reason.getErrorMessage()}")


class OrderedService(MultiService):
    """Starts children in the order they were added, each awaited."""

    log = Logger()

    def __init__(self) -> None:
        super().__init__()
        # Every start and stop is queued on this chain so they never
        # interleave; it always carries None (outcomes go to the callers).
        self._tail: Deferred[None] = succeed(None)
        self._started: list[Service] = []

    def privilegedStartService(self) -> None:
        # Deliberately not passed on to the children: a listener that binds
        # here would accept requests before ZooKeeper and Redis are started.
        Service.privilegedStartService(self)

    def startService(self) -> Deferred[None]:
        if self.running:
            # Idempotent: a second caller waits for the start in progress.
            return self._queue(lambda: succeed(None))
        Service.startService(self)
        return self._queue(self._start_children)

    def stopService(self) -> Deferred[None]:
        if not self.running:
            return self._queue(lambda: succeed(None))
        Service.stopService(self)
        return self._queue(self._stop_children)

    def _queue(self, step: Callable[[], Deferred[None]]) -> Deferred[None]:
        result: Deferred[None] = Deferred()

        def report(outcome: Any) -> None:
            if isinstance(outcome, Failure):
                result.errback(outcome)
            else:
                result.callback(None)

        self._tail.addCallback(lambda _: step()).addBoth(report)
        return result

    def _start_children(self) -> Deferred[None]:
        done: Deferred[None] = Deferred()
        pending = list(self)

        def next_child(_: Any = None) -> None:
            if not self.running:
                # stopService was called while we were starting: stop here.
                done.callback(None)
                return
            if not pending:
                done.callback(None)
                return
            child = pending.pop(0)
            name = child.name or type(child).__name__
            self.log.info("starting {name}", name=name)
            d = maybeDeferred(child.startService)

            def ok(_: Any) -> None:
                self._started.append(child)
                next_child()

            def failed(reason: Failure) -> None:
                self.log.failure("{name} failed to start", reason, name=name)
                error = StartError(name, reason)
                Service.stopService(self)
                unwind = self._stop_children()
                unwind.addBoth(lambda _: done.errback(Failure(error)))

            d.addCallbacks(ok, failed)

        next_child()
        return done

    def _stop_children(self) -> Deferred[None]:
        done: Deferred[None] = Deferred()

        def next_child(_: Any = None) -> None:
            if not self._started:
                done.callback(None)
                return
            child = self._started.pop()
            name = child.name or type(child).__name__
            self.log.info("stopping {name}", name=name)
            d = maybeDeferred(child.stopService)

            def failed(reason: Failure) -> None:
                # Keep stopping the rest: one bad stop must not leave the
                # other services running.
                self.log.failure("{name} failed to stop", reason, name=name)

            d.addErrback(failed)
            d.addCallback(next_child)

        next_child()
        return done
