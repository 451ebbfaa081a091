"""The daemon's live view of the mpush cluster in ZooKeeper.

One kazoo session watches ``/cluster/cs`` (connection servers),
``/cluster/gs`` (gateway servers) and ``/cluster/ws`` (WebSocket servers)
under the namespace, the way the Java alloc's TreeCache does (which reads
cs and gs only), and keeps an in-memory view of the three.

Threads: kazoo runs its own connection and callback threads. Everything
kazoo hands us (state changes, watch events, async results) is passed to the
reactor thread with ``callFromThread``; the view and all bookkeeping are only
touched there, so no locks are needed.

Why not kazoo's TreeCache: its ``start()`` blocks and fails while ZooKeeper
is down, it creates the watched path (with our ACL) when missing, and it
re-reads on reconnect without telling "this was a resync". Instead:

* every CONNECTED (first connect, reconnect after a blip, new session after
  expiry) starts a *round* per kind: list the children, read every child,
  drop what is gone. kazoo forgets all watches on a disconnect, so this is
  also what re-arms them. A completed round is reported as a ``"resync"``;
* between rounds, one-shot watches keep the view current: a child watch on
  the parent (re-list), a data watch per node (re-read or drop), an exists
  watch while the parent does not exist yet.

Replies on one ZooKeeper connection come in request order and are handed to
the reactor in that order, so the last reply applied is the newest state.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from kazoo.client import KazooClient
from kazoo.protocol.states import EventType, KazooState, WatchedEvent
from kazoo.retry import KazooRetry
from twisted.application.service import Service
from twisted.internet.defer import Deferred, succeed
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.python.failure import Failure

from mpush.cluster import kazoo_logs as logbridge
from mpush.cluster.server_node import NodeDataError, ServerNode
from mpush.cluster.zk_reader import KazooBridge, PathReader
from mpush.config import ZkSettings
from mpush.reactor import default_reactor

__all__ = [
    "KINDS",
    "PATHS",
    "NodeDataError",
    "ServerNode",
    "ZkWatcher",
]

KINDS = ("cs", "gs", "ws")
PATHS = {"cs": "/cluster/cs", "gs": "/cluster/gs", "ws": "/cluster/ws"}
_KIND_BY_PATH = {path: kind for kind, path in PATHS.items()}


# cb(kind, event, node): kind "cs"|"gs"|"ws"; event "added"|"updated"|"removed"
# (with the node) or "resync" (node None: a full re-read just completed).
Listener = Callable[[str, str, "ServerNode | None"], object]


def _make_client(settings: ZkSettings, logger: Any = None) -> KazooClient:
    # server_address is a kazoo hosts string and may carry a chroot of its
    # own; the namespace is appended to it (h1:p1,h2:p2/chroot/mpush).
    digest = settings.digest or None
    namespace = (settings.namespace or "").strip("/")
    hosts = settings.server_address.strip()
    # The namespace is a kazoo chroot, as Curator's namespace is a prefix.
    return KazooClient(
        hosts=f"{hosts}/{namespace}" if namespace else hosts,
        timeout=settings.session_timeout,
        # Curator sends the bare digest string; so do we.
        auth_data=[("digest", digest)] if digest else None,
        # Retry forever: an unreachable ZooKeeper is an outage to ride
        # out, not a reason to stop. kazoo has no separate connect
        # timeout (it uses the session timeout), so connection_timeout
        # caps the back-off between attempts instead.
        connection_retry=KazooRetry(
            max_tries=-1, delay=0.1, backoff=2,
            max_delay=max(0.2, float(settings.connection_timeout))),
        logger=logger,
    )


class ZkWatcher(Service):
    """A kazoo session and the live view of the three server lists.

    ``startService`` returns once kazoo is started; it never waits for
    ZooKeeper, which may be down for as long as it likes: kazoo retries
    forever and the state is logged once per change. While no attempt
    connects, the first failure is logged with its error, then a reminder
    at most every ``reminder_interval`` seconds (reactor time); ``last_error``
    says why ZooKeeper cannot be used now. Reading and watching each path is
    a :class:`~mpush.cluster.zk_reader.PathReader`'s job.
    """

    log = Logger()

    # Delay before re-reading after an unexpected error (e.g. NoAuth) while
    # connected; connection errors need none (reconnects trigger a round).
    error_retry_delay = 5.0
    # At most one "still cannot connect" line per this many seconds of an outage.
    reminder_interval = 60.0

    def __init__(self, settings: ZkSettings, reactor: Any = None) -> None:
        self._settings = settings
        self._reactor = default_reactor(reactor)
        self._bridge = KazooBridge(self._reactor)
        self.client: KazooClient | None = None
        self.state = "stopped"
        self.session_id: int | None = None
        self.initialized = False
        self._readers = {kind: PathReader(kind, PATHS[kind], self, self._bridge)
                         for kind in KINDS}
        self._listeners: list[Listener] = []
        # Bumped on every start and stop: replies for an older client are dropped.
        self.generation = 0
        self._synced: set[str] = set()
        self._last_session: int | None = None
        self._stopping: Deferred[None] | None = None
        self._connect_error: str | None = None  # the last failed attempt, while not connected
        self._unreachable_since: float | None = None  # reactor time of the outage's first failure
        self._reminded_at = 0.0

    # -- public view -------------------------------------------------------

    def connection_servers(self) -> dict[str, ServerNode]:
        """Connection servers by node name (a copy)."""
        return dict(self._readers["cs"].view)

    def gateway_servers(self) -> dict[str, ServerNode]:
        """Gateway servers by node name (a copy)."""
        return dict(self._readers["gs"].view)

    def websocket_servers(self) -> dict[str, ServerNode]:
        """WebSocket servers by node name (a copy)."""
        return dict(self._readers["ws"].view)

    def rejected_nodes(self) -> dict[str, int]:
        """By kind ("cs", "gs", "ws"): the nodes left out of the view as unusable."""
        return {kind: reader.rejected for kind, reader in self._readers.items()}

    def add_listener(self, cb: Listener) -> None:
        """Call ``cb(kind, event, node)`` on every change, in the reactor thread."""
        self._listeners.append(cb)

    def remove_listener(self, cb: Listener) -> None:
        if cb in self._listeners:
            self._listeners.remove(cb)

    @property
    def servers(self) -> str:
        return self._settings.server_address

    @property
    def last_error(self) -> str | None:
        """Why ZooKeeper cannot be used now, None if it can: the last failed
        connection attempt while not connected, else a read error (NoAuth ...)."""
        if self._connect_error is not None:
            return self._connect_error
        return next((r.error for r in self._readers.values() if r.error is not None), None)

    # -- lifecycle ---------------------------------------------------------

    def startService(self) -> Deferred[None]:
        if self.running:
            return succeed(None)
        if self._stopping is not None:
            # Restarted while the old client is still closing: start after.
            later: Deferred[None] = Deferred()
            self._stopping.addBoth(lambda _: later.callback(None))
            later.addCallback(lambda _: self.startService())
            return later
        generation = self.generation + 1
        client = _make_client(self._settings, logbridge.AttemptReporter(
            lambda error: self._bridge.call(self._attempt_failed, generation, error)))
        Service.startService(self)
        logbridge.install("kazoo")
        self.generation = generation
        self._synced = set()
        self._reachable()
        self.client = client
        client.add_listener(lambda state: self._kazoo_state(generation, client, state))
        self._set_state("connecting")
        # Non-blocking: spawns kazoo's threads, which then connect.
        client.start_async()
        return succeed(None)

    def stopService(self) -> Deferred[None]:
        if not self.running:
            return self._stopping if self._stopping is not None else succeed(None)
        Service.stopService(self)
        self.generation += 1
        for reader in self._readers.values():
            reader.cancel_retry()
        client, self.client = self.client, None
        self.session_id = None
        self._reachable()
        self._set_state("stopped")
        if client is None:
            return succeed(None)
        # stop() waits for kazoo's threads (and for ZooKeeper to confirm the
        # close, bounded by the session timeout): never on the reactor thread.
        d: Deferred[None] = deferToThreadPool(
            self._reactor, self._reactor.getThreadPool(), _close_client, client)
        self._stopping = d

        def closed(result: object) -> object:
            self._stopping = None
            if isinstance(result, Failure):
                self.log.failure("ZooKeeper: error while closing the client", result)
            return None

        d.addBoth(closed)
        return d

    # -- kazoo threads -> reactor -------------------------------------------

    def _kazoo_state(self, generation: int, client: KazooClient, state: str) -> None:
        # kazoo's connection thread: read what we need, hop to the reactor.
        session = None
        if state == KazooState.CONNECTED:
            cid = client.client_id
            session = cid[0] if cid else None
        self._bridge.call(self._on_state, generation, state, session)

    def kazoo_watch(self, event: WatchedEvent) -> None:
        """kazoo's callback thread: the watch callback of every read.

        One bound method for every watch: kazoo keeps watchers in a set per
        path, so re-arming never duplicates.
        """
        self._bridge.call(self._on_watch, event)

    # -- reactor thread: state ----------------------------------------------

    def _on_state(self, generation: int, state: str, session: int | None) -> None:
        if generation != self.generation or not self.running:
            return
        if state == KazooState.CONNECTED:
            self.session_id = session
            self._reachable()
            self._set_state("connected")
            for reader in self._readers.values():
                reader.start_round()
        elif state == KazooState.SUSPENDED:
            self._set_state("suspended")
        elif state == KazooState.LOST:
            self.session_id = None
            self._set_state("lost")

    def _set_state(self, new: str) -> None:
        if new == self.state:
            return
        old, self.state = self.state, new
        counts = {"cs_count": len(self._readers["cs"].view),
                  "gs_count": len(self._readers["gs"].view)}
        if new == "connecting":
            self.log.info("ZooKeeper: connecting to {zk_servers}",
                          zk_state=new, zk_previous=old, zk_servers=self.servers)
        elif new == "connected":
            session = self.session_id or 0
            self.log.info("ZooKeeper: connected to {zk_servers} ({how} 0x{session:x})",
                          zk_state=new, zk_previous=old, zk_servers=self.servers,
                          how=self._session_change(session), session=session)
        elif new == "suspended":
            self.log.warn(
                "ZooKeeper: connection to {zk_servers} lost, reconnecting; keeping the last view "
                "({cs_count} connection, {gs_count} gateway servers)",
                zk_state=new, zk_previous=old, zk_servers=self.servers, **counts)
        elif new == "lost":
            self.log.warn(
                "ZooKeeper: session expired, reconnecting with a new one; keeping the last view "
                "({cs_count} connection, {gs_count} gateway servers) until it is re-read",
                zk_state=new, zk_previous=old, **counts)
        else:
            self.log.info("ZooKeeper: watcher {zk_state}", zk_state=new, zk_previous=old)

    def _attempt_failed(self, generation: int, error: str) -> None:
        """A connection attempt failed (kazoo's log line, via AttemptReporter)."""
        if generation != self.generation or not self.running or self.state == "connected":
            # An established connection dropping: "suspended" follows and says so.
            return
        self._connect_error = f"cannot connect to {self.servers}: {error}"
        now = self._reactor.seconds()
        if self._unreachable_since is None:
            self._unreachable_since = self._reminded_at = now
            self.log.warn("ZooKeeper: cannot connect to {zk_servers}: {error}; retrying"
                          " (a reminder every {interval:g} s while it lasts)",
                          zk_servers=self.servers, error=error, interval=self.reminder_interval)
        elif now - self._reminded_at >= self.reminder_interval:
            self._reminded_at = now
            self.log.warn("ZooKeeper: still cannot connect to {zk_servers} after {seconds:.0f} s:"
                          " {error}", zk_servers=self.servers, error=error,
                          seconds=now - self._unreachable_since)

    def _reachable(self) -> None:
        # Connected, or (re)started/stopped: the outage, if any, is over.
        self._connect_error = None
        self._unreachable_since = None

    def _session_change(self, session: int) -> str:
        if self._last_session is None:
            how = "new session"
        elif self._last_session == session:
            how = "same session"
        else:
            how = "new session, the previous one expired"
        self._last_session = session
        return how

    # -- reactor thread: what the readers report -------------------------------

    def kind_synced(self, kind: str) -> None:
        """A round of ``kind`` completed: the view of it is complete again."""
        self._synced.add(kind)
        if not self.initialized and self._synced.issuperset(KINDS):
            self.initialized = True
            self.log.info(
                "ZooKeeper: view loaded, {cs_count} connection, {gs_count} gateway and"
                " {ws_count} WebSocket servers", cs_count=len(self._readers["cs"].view),
                gs_count=len(self._readers["gs"].view), ws_count=len(self._readers["ws"].view))
        self.emit(kind, "resync", None)

    def _on_watch(self, event: WatchedEvent) -> None:
        # NONE events are kazoo dropping its watches on a disconnect; the
        # round after the reconnect re-arms them.
        if not self.running or event.type == EventType.NONE or event.path is None:
            return
        kind = _KIND_BY_PATH.get(event.path)
        if kind is not None:
            # The parent: children changed, or it was created or deleted.
            self._readers[kind].list(full=False)
            return
        parent, _, name = event.path.rpartition("/")
        kind = _KIND_BY_PATH.get(parent)
        if kind is None or not name:
            return
        if event.type == EventType.DELETED:
            self._readers[kind].forget(name)
        elif event.type == EventType.CHANGED:
            self._readers[kind].fetch(name, None)

    def emit(self, kind: str, event: str, node: ServerNode | None) -> None:
        """Tell every listener; a failing listener is logged and skipped."""
        for cb in list(self._listeners):
            try:
                cb(kind, event, node)
            except Exception:
                # A broken listener must not break the view or the others.
                self.log.failure("ZooKeeper: listener {cb!r} failed on {event} {kind}",
                                 cb=cb, event=event, kind=kind)


def _close_client(client: KazooClient) -> None:
    """Close a kazoo client (blocking: runs in a worker thread)."""
    try:
        client.stop()
    finally:
        client.close()
