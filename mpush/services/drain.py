"""The graceful drain run at stop (SIGTERM), before the services stop in reverse.

In this order:

1. ``/health`` answers ``503`` (``"draining": true``) at once, so load
   balancers take the daemon out; everything else is still served;
2. after ``drain_delay`` seconds (``mp.alloc.drain-delay``: time for the
   load balancers to notice) the listener closes: new connections are
   refused; open ones are still served;
3. pushes in flight get ``shutdown_grace`` seconds (``mp.alloc.shutdown-grace``)
   to finish; those still waiting for a gateway then end as ``timeout``
   (:meth:`mpush.services.pusher.PushClient.expire_all`), and so every ``/push`` request
   gets its complete answer. From then on the push client refuses new pushes
   (a ``/push`` on a kept-alive connection is ``503``). A push stuck before
   its gateway request (a Redis lookup) gets ``settle`` seconds more, then
   ends with every target ``timeout``
   (:meth:`mpush.services.pusher.PushClient.end_all_as_timeout`);
4. every HTTP connection is closed once its answer is written (the bytes
   go out before the close; a client that stops reading is aborted after
   ``flush`` seconds): nothing is cut off half-sent when the reactor stops.

Then :class:`mpush.daemon.tap.AllocDaemon` stops the services in reverse, and
twistd removes the pidfile. The whole drain is bounded:
``drain_delay + shutdown_grace + settle + flush`` seconds at most. It never
fails: an error is logged and the stop goes on.
"""

from __future__ import annotations

from twisted.internet.defer import Deferred, ensureDeferred, maybeDeferred
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import deferLater
from twisted.logger import Logger

from mpush.arguments import require_non_negative
from mpush.interfaces import HttpSite, Pusher, WebListener
from mpush.reactor import default_reactor

__all__ = ["DEFAULT_FLUSH", "DEFAULT_SETTLE", "Drain"]

DEFAULT_SETTLE = 2.0  # s: pushes still in flight after expire_all may finish
DEFAULT_FLUSH = 2.0  # s: for the last answers to be written before connections close


class Drain:
    """One drain; :meth:`run` may be called more than once (same Deferred's outcome)."""

    log = Logger(namespace="mpush.services.drain")

    def __init__(self, *, listener: WebListener,
                 pusher: Pusher, site: HttpSite, drain_delay: float,
                 shutdown_grace: float, settle: float = DEFAULT_SETTLE,
                 flush: float = DEFAULT_FLUSH, clock: IReactorTime | None = None) -> None:
        require_non_negative(drain_delay=drain_delay, shutdown_grace=shutdown_grace,
                             settle=settle, flush=flush)
        self.listener = listener
        self.pusher = pusher
        self.site = site
        self.drain_delay = drain_delay
        self.shutdown_grace = shutdown_grace
        self.settle = settle
        self.flush = flush
        self._clock = clock
        self._done: Deferred[None] | None = None
        self._waiters: list[Deferred[None]] = []
        self._over = False
        # What happened, for tests and the last log line.
        self.expired = 0  # gateway requests ended "timeout" after the grace
        self.forced = 0  # push calls (a /push request each) ended without their outcomes
        self.connections: tuple[int, int] = (0, 0)  # (closed, aborted)
        # Owned here, read by /health and /metrics: True from the drain's start on.
        self.draining = False

    @property
    def clock(self) -> IReactorTime:
        if self._clock is None:  # looked up late: twistd installs its reactor first
            self._clock = default_reactor(None)
        return self._clock

    def run(self) -> Deferred[None]:
        """Drain; fires (never fails) once it is over."""
        waiter: Deferred[None] = Deferred()
        if self._done is None:
            self._done = ensureDeferred(self._run())
            self._done.addErrback(lambda f: self.log.failure("drain failed; stopping anyway", f))
            self._done.addCallback(self._finished)
        if self._over:
            waiter.callback(None)
        else:
            self._waiters.append(waiter)
        return waiter

    def _finished(self, _: object) -> None:
        self._over = True
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            waiter.callback(None)

    def _sleep(self, seconds: float) -> Deferred[None]:
        return deferLater(self.clock, seconds, lambda: None)  # type: ignore[arg-type]

    def _within(self, d: Deferred[None], seconds: float) -> Deferred[bool]:
        """True if ``d`` fires within ``seconds``, else False (then; d is left alone)."""
        result: Deferred[bool] = Deferred()

        def timed_out() -> None:
            if not result.called:
                result.callback(False)

        call = self.clock.callLater(seconds, timed_out)

        def fired(_: object) -> None:
            if not result.called:
                if call.active():
                    call.cancel()
                result.callback(True)

        d.addBoth(fired)
        return result

    async def _run(self) -> None:
        clock = self.clock
        started = clock.seconds()
        self.draining = True
        if self.listener.listening is None:
            # Never listened (a stop during start): nobody to drain for.
            self.log.info("draining: /health answers 503; the listener was not open")
        else:
            self.log.info("draining: /health answers 503; the listener closes in {delay:g} s",
                          delay=self.drain_delay)
            if self.drain_delay > 0:
                await self._sleep(self.drain_delay)
        await maybeDeferred(self.listener.stopService)
        await self._end_pushes()
        self.connections = await self.site.close_connections(self.flush)
        closed, aborted = self.connections
        self.log.info("all push requests answered; {c} HTTP connection(s) closed"
                      "{aborted} after {t:.3f} s of drain; stopping services", c=closed,
                      aborted=f", {aborted} aborted (not reading)" if aborted else "",
                      t=clock.seconds() - started)

    async def _end_pushes(self) -> None:
        """Step 3: the grace, then the gateways' expiry, then the last resort."""
        pusher, admission = self.pusher, self.pusher.admission
        # A /push request is one push() or broadcast() call.
        self.log.info("listener closed; {n} push(es) still in flight in {r} request(s),"
                      " {grace:g} s to finish", n=admission.inflight, r=admission.calls,
                      grace=self.shutdown_grace)
        finished = await self._within(admission.when_idle(), self.shutdown_grace)
        admission.close()  # from now on a new push is refused (/push: 503)
        if not finished:
            left = admission.inflight  # read first: expire_all ends them at once
            self.expired = pusher.expire_all()
            self.log.info("shutdown grace over: {n} push(es) still in flight end as timeout"
                          " ({g} gateway request(s) expired)", n=left, g=self.expired)
            if not await self._within(admission.when_idle(), self.settle):
                self.forced = pusher.end_all_as_timeout()
                self.log.warn("{n} push request(s) still without outcomes after {s:g} s more:"
                              " answered with every target timeout", n=self.forced,
                              s=self.settle)
