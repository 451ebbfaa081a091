"""The ordered parent service: Java ``BaseService`` semantics on Twisted.

``MultiService`` starts its children all at once and ignores the Deferreds
their ``startService`` returns. The daemon needs more: ZooKeeper before the
refresher, the refresher before the web listener. So children start one by
one, each awaited; they stop in reverse; a failed start stops whatever had
started and fails the whole start. Start and stop are idempotent.

Like buildbot's ``AsyncMultiService``, a child added to a running parent is
started (``addService`` returns its start) and one removed is stopped
(``removeService`` returns its stop). Every start, stop and late add or
remove is queued on one lock, so they never interleave: a child added
during the start starts after the ones added before it, and the stop
order is always the reverse of the order the children actually started.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from twisted.application.service import IService, MultiService, Service
from twisted.internet.defer import (
    Deferred,
    DeferredLock,
    ensureDeferred,
    maybeDeferred,
    succeed,
)
from twisted.logger import Logger
from twisted.python.failure import Failure


class StartError(Exception):
    """A child service failed to start; names the child and the reason."""

    def __init__(self, name: str, reason: Failure) -> None:
        self.name = name
        self.reason = reason
        super().__init__(f"{name} failed to start: {reason.getErrorMessage()}")


def _name(child: IService) -> str:
    return child.name or type(child).__name__


class OrderedService(MultiService):
    """Starts children in the order they were added, each awaited."""

    log = Logger()

    def __init__(self) -> None:
        super().__init__()
        # Held by every start, stop, late add and remove: they never interleave.
        self._lock = DeferredLock()
        # In the order they finished starting: the stop goes backwards.
        self._started: list[IService] = []

    def privilegedStartService(self) -> None:
        """Passes twistd's privileged start on to the children, in order.

        It runs before twistd reports a start to a daemonizing parent, so
        what fails here fails the command: a listener binds its port here
        (and accepts only from its ``startService``). A child's exception is
        raised as a :class:`StartError`; nothing else has started yet.
        """
        Service.privilegedStartService(self)
        for child in list(self.services):
            try:
                child.privilegedStartService()
            except Exception as e:
                raise StartError(_name(child), Failure()) from e

    def startService(self) -> Deferred[None]:
        if self.running:
            # Idempotent: a second caller waits for the start in progress.
            return self._queue(_nothing)
        Service.startService(self)
        return self._queue(self._start_children)

    def stopService(self) -> Deferred[None]:
        if not self.running:
            return self._queue(_nothing)
        # At once, so that a start in progress starts no further child.
        Service.stopService(self)
        return self._queue(self._stop_children)

    def addService(self, service: IService) -> Deferred[None]:
        """Adds a child; on a running parent, starts it (after any start in progress).

        Unlike ``MultiService``, neither ``privilegedStartService`` (too late:
        privileges are gone) nor an immediate ``startService``.
        """
        if service.name is not None:
            if service.name in self.namedServices:
                raise RuntimeError(f"cannot have two services with same name {service.name!r}")
            self.namedServices[service.name] = service
        self.services.append(service)
        if not self.running:
            return _done()
        return self._queue(lambda: self._start_late(service))

    def removeService(self, service: IService) -> Deferred[None]:
        """Removes a child; if it had started, stops it (queued like a stop)."""
        if service.name:
            del self.namedServices[service.name]
        self.services.remove(service)
        # A child not started yet is simply never reached by the start loop.
        return self._queue(lambda: self._stop_removed(service))

    def _queue(self, step: Callable[[], Awaitable[None]]) -> Deferred[None]:
        # A fresh Deferred per caller: fired (``called``) only once the step is over.
        result: Deferred[None] = Deferred()
        self._lock.run(lambda: ensureDeferred(step())).chainDeferred(result)
        return result

    async def _start_children(self) -> None:
        # The list is read afresh for each child: one added meanwhile is
        # started in its turn, one removed is skipped.
        while self.running:
            child = next((s for s in self.services if s not in self._started), None)
            if child is None:
                return
            await self._start_one(child, unwind=True)

    async def _start_late(self, child: IService) -> None:
        if self.running and child in self.services and child not in self._started:
            # The parent has started: a failed late child fails its own add only.
            await self._start_one(child, unwind=False)

    async def _start_one(self, child: IService, *, unwind: bool) -> None:
        name = _name(child)
        self.log.info("starting {name}", name=name)
        try:
            await maybeDeferred(child.startService)
        except Exception:
            reason = Failure()
            self.log.failure("{name} failed to start", reason, name=name)
            if unwind:
                Service.stopService(self)
                await self._stop_children()
            raise StartError(name, reason) from reason.value
        self._started.append(child)

    async def _stop_children(self) -> None:
        while self._started:
            child = self._started.pop()
            name = _name(child)
            self.log.info("stopping {name}", name=name)
            try:
                await maybeDeferred(child.stopService)
            except Exception:
                # Keep stopping the rest: one bad stop must not leave the
                # other services running.
                self.log.failure("{name} failed to stop", Failure(), name=name)

    async def _stop_removed(self, child: IService) -> None:
        if child in self._started:
            self._started.remove(child)
            self.log.info("stopping {name} (removed)", name=_name(child))
            await maybeDeferred(child.stopService)


async def _nothing() -> None:
    return None


def _done() -> Deferred[None]:
    return succeed(None)

