"""Reading ZooKeeper from the reactor thread: the kazoo-thread bridge, and
the reader of one path of server nodes.

:class:`KazooBridge` hands what kazoo's threads produce (state changes,
watch events, async results) to the reactor thread with ``callFromThread``.
:class:`PathReader` keeps one kind's part of the view (``/cluster/cs``,
``/cluster/gs`` or ``/cluster/ws``) current for :class:`mpush.cluster.zookeeper.ZkWatcher`:
rounds that re-read everything, one-shot watches in between, errors retried.
Everything here past the bridge runs in the reactor thread only.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any, Protocol

from kazoo.client import KazooClient
from kazoo.exceptions import (
    ConnectionClosedError,
    ConnectionLoss,
    NoAuthError,
    NoNodeError,
    SessionExpiredError,
)
from kazoo.interfaces import IAsyncResult
from kazoo.protocol.states import WatchedEvent, ZnodeStat
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall
from twisted.logger import Logger
from twisted.python.failure import Failure

from mpush.cluster.server_node import NodeDataError, ServerNode
from mpush.server_kinds import KIND_NAMES, SERVED_KINDS

__all__ = ["KazooBridge", "PathReader", "ReaderHost"]


# Errors that only mean "the connection went away": the next CONNECTED
# starts a fresh round, so there is nothing to retry or report.
_CONNECTION_ERRORS = (ConnectionLoss, SessionExpiredError, ConnectionClosedError)

_MISSING = object()


class KazooBridge:
    """From kazoo's threads to the reactor thread."""

    def __init__(self, reactor: Any) -> None:
        self.reactor = reactor

    def call(self, f: Callable[..., object], *args: Any) -> None:
        """Run ``f(*args)`` in the reactor thread (callable from any thread)."""
        self.reactor.callFromThread(f, *args)

    def deferred(self, result: IAsyncResult) -> Deferred[Any]:
        """A Deferred fired in the reactor thread with a kazoo async result."""
        d: Deferred[Any] = Deferred()

        def done(res: IAsyncResult) -> None:
            # kazoo's callback thread.
            if res.successful():
                self.reactor.callFromThread(d.callback, res.value)
            else:
                self.reactor.callFromThread(d.errback, Failure(res.exception))

        result.rawlink(done)
        return d


class ReaderHost(Protocol):
    """What a :class:`PathReader` uses of its watcher (``zookeeper.ZkWatcher``)."""

    log: Logger
    error_retry_delay: float  # s before re-reading after an unexpected error
    running: bool | int
    state: str
    client: KazooClient | None
    generation: int  # bumped on every start and stop: older replies are dropped

    def kazoo_watch(self, event: WatchedEvent) -> None: ...  # the one watch callback

    def emit(self, kind: str, event: str, node: ServerNode | None) -> None: ...

    def kind_synced(self, kind: str) -> None: ...  # a round of ``kind`` completed


class PathReader:
    """One kind's nodes: read in rounds, kept current by watches.

    A *round* (after every CONNECTED, or the error retry) lists the
    children, reads every child and drops what is gone; when all its reads
    succeeded the host hears ``kind_synced``. ``view`` holds the usable
    nodes (each stamped with the reactor time it entered the view, ``since``),
    ``raw`` the data of every child read, usable or not.
    """

    def __init__(self, kind: str, path: str, host: ReaderHost, bridge: KazooBridge) -> None:
        self.kind = kind
        self.path = path
        self._host = host
        self._bridge = bridge
        self.view: dict[str, ServerNode] = {}
        self.raw: dict[str, bytes | None] = {}  # the children we know
        self._bad: dict[str, bytes | None] = {}  # name -> data already reported as malformed
        self._round = 0
        self._pending = 0
        self._round_ok = True
        self._retry: IDelayedCall | None = None
        self.error: str | None = None  # the last read error, None once reads work

    # -- rounds ----------------------------------------------------------------

    def start_round(self) -> None:
        """Re-read everything of this kind (after every (re)connect)."""
        self.cancel_retry()
        self._round += 1
        self._round_ok = True
        self.list(full=True, round_no=self._round)

    def cancel_retry(self) -> None:
        call, self._retry = self._retry, None
        if call is not None and call.active():
            call.cancel()

    def list(self, *, full: bool, round_no: int | None = None) -> None:
        client = self._host.client
        if client is None:
            return
        generation = self._host.generation
        d = self._bridge.deferred(client.get_children_async(self.path,
                                                            watch=self._host.kazoo_watch))
        d.addCallbacks(self._listed, self._list_failed,
                       callbackArgs=(generation, full, round_no),
                       errbackArgs=(generation, round_no))

    def _current(self, generation: int, round_no: int | None = None) -> bool:
        # The reply is for the running client (and, if given, the current round).
        if generation != self._host.generation:
            return False
        return round_no is None or round_no == self._round

    def _listed(self, children: list[str], generation: int, full: bool,
                round_no: int | None) -> None:
        if not self._current(generation):
            return
        self.clear_error()
        names = set(children)
        for name in [n for n in self.raw if n not in names]:
            self.forget(name)
        # A round re-reads every node (which also re-arms its data watch);
        # a watch-triggered re-list only reads the new ones.
        wanted = sorted(names if full else names - self.raw.keys())
        counted = round_no is not None and round_no == self._round
        if counted:
            self._pending = len(wanted)
        for name in wanted:
            self.fetch(name, round_no if counted else None)
        if counted and not wanted:
            self._round_done()

    def _list_failed(self, failure: Failure, generation: int, round_no: int | None) -> None:
        if not self._current(generation):
            return
        in_round = round_no is not None and round_no == self._round
        if failure.check(NoNodeError):
            # No /cluster/cs yet (no server ever registered; /cluster/ws while
            # no server enables websocket): an empty list,
            # and an exists watch to notice its creation.
            self.clear_error()
            for name in list(self.raw):
                self.forget(name)
            self._watch_parent()
            if in_round:
                self._round_done()
            return
        if in_round:
            self._round_ok = False
        self._report_error(failure, f"listing {self.path}")

    def _watch_parent(self) -> None:
        client = self._host.client
        if client is None:
            return
        generation = self._host.generation
        d = self._bridge.deferred(client.exists_async(self.path, watch=self._host.kazoo_watch))

        def exists(stat: ZnodeStat | None) -> None:
            # Created between our list and this call: the watch won't fire.
            if self._current(generation) and stat is not None:
                self.list(full=False)

        def failed(failure: Failure) -> None:
            if self._current(generation):
                self._report_error(failure, f"watching {self.path}")

        d.addCallbacks(exists, failed)

    def fetch(self, name: str, round_no: int | None) -> None:
        client = self._host.client
        if client is None:
            return
        generation = self._host.generation
        d = self._bridge.deferred(client.get_async(f"{self.path}/{name}",
                                                   watch=self._host.kazoo_watch))
        d.addCallbacks(self._fetched, self._fetch_failed,
                       callbackArgs=(generation, name), errbackArgs=(generation, name))
        if round_no is not None:
            d.addCallback(self._count_down, generation, round_no)

    def _fetched(self, result: tuple[bytes, ZnodeStat], generation: int, name: str) -> bool:
        if self._current(generation):
            self.apply(name, result[0])
        return True

    def _fetch_failed(self, failure: Failure, generation: int, name: str) -> bool:
        if not self._current(generation):
            return True
        if failure.check(NoNodeError):
            # Listed, then gone before we read it: a normal race.
            self.forget(name)
            return True
        self._report_error(failure, f"reading {self.path}/{name}")
        return False

    def _count_down(self, ok: bool, generation: int, round_no: int) -> None:
        if not self._current(generation, round_no):
            return
        if not ok:
            self._round_ok = False
        self._pending -= 1
        if self._pending == 0:
            self._round_done()

    def _round_done(self) -> None:
        if not self._round_ok:
            # Part of the round failed (connection lost mid-way): the next
            # CONNECTED, or the error retry, runs a new one.
            return
        self._host.kind_synced(self.kind)

    # -- the view ----------------------------------------------------------------

    @property
    def rejected(self) -> int:
        """Children left out of the view as unusable (each logged once, with why)."""
        return len(self._bad)

    def apply(self, name: str, data: bytes | None) -> None:
        self.raw[name] = data
        try:
            # Connection and WebSocket servers are what GET / and GET /ws serve.
            node = ServerNode.parse(name, data, served=self.kind in SERVED_KINDS)
        except NodeDataError as e:
            self._ignore(name, data, str(e))
            return
        self._bad.pop(name, None)
        old = self.view.get(name)
        # Known since it first entered the view; an update keeps that time.
        node = replace(node, since=self._bridge.reactor.seconds() if old is None else old.since)
        self.view[name] = node
        if old is None:
            self._log_node("added", node)
            self._host.emit(self.kind, "added", node)
        elif old != node:
            self._log_node("updated", node)
            self._host.emit(self.kind, "updated", node)

    def _ignore(self, name: str, data: bytes | None, reason: str) -> None:
        if self._bad.get(name, _MISSING) != data:
            self._bad[name] = data
            self._host.log.warn(
                "ZooKeeper: ignoring {kind_name} node {zk_path}: {reason}; data: {preview}",
                kind_name=KIND_NAMES[self.kind], zk_path=f"{self.path}/{name}",
                reason=reason, preview=_preview(data))
        old = self.view.pop(name, None)
        if old is not None:
            self._host.emit(self.kind, "removed", old)

    def forget(self, name: str) -> None:
        self.raw.pop(name, None)
        self._bad.pop(name, None)
        old = self.view.pop(name, None)
        if old is not None:
            self._log_node("removed", old)
            self._host.emit(self.kind, "removed", old)

    def _log_node(self, what: str, node: ServerNode) -> None:
        self._host.log.info("ZooKeeper: {kind_name} " + what + ": {address} ({zk_node})",
                            kind_name=KIND_NAMES[self.kind], address=node.address,
                            zk_node=node.name)

    # -- errors ------------------------------------------------------------------

    def _report_error(self, failure: Failure, what: str) -> None:
        log = self._host.log
        if failure.check(*_CONNECTION_ERRORS):
            log.debug("ZooKeeper: {what} interrupted: {error}",
                      what=what, error=failure.getErrorMessage())
            return
        text = f"{what}: {failure.type.__name__} {failure.getErrorMessage()}".rstrip()
        if failure.check(NoAuthError):
            # The Java servers create every node readable with their digest only.
            text += " (not readable with our digest: check mp.zk.digest)"
        delay = self._host.error_retry_delay
        if self.error != text:
            self.error = text
            log.error("ZooKeeper: {error}; retrying every {delay} s",
                      error=text, delay=delay, zk_error=self.kind)
        if self._retry is None or not self._retry.active():
            self._retry = self._bridge.reactor.callLater(delay, self._retry_round)

    def _retry_round(self) -> None:
        self._retry = None
        if self._host.running and self._host.state == "connected":
            self.start_round()

    def clear_error(self) -> None:
        if self.error is not None:
            self.error = None
            self._host.log.info("ZooKeeper: reading {zk_path} works again", zk_path=self.path)


def _preview(data: bytes | None, limit: int = 200) -> str:
    if data is None:
        return "(none)"
    text = repr(data[:limit])
    return text + ("..." if len(data) > limit else "")
