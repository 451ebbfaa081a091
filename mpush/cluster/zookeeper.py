"""The daemon's live view of the mpush cluster in ZooKeeper.

One kazoo session watches ``/cluster/cs`` (connection servers) and
``/cluster/gs`` (gateway servers) under the namespace, the way the Java
alloc's TreeCache does, and keeps an in-memory view of both.

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

import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Protocol

from kazoo.client import KazooClient
from kazoo.exceptions import (
    ConnectionClosedError,
    ConnectionLoss,
    NoNodeError,
    SessionExpiredError,
)
from kazoo.interfaces import IAsyncResult
from kazoo.protocol.states import EventType, KazooState, WatchedEvent, ZnodeStat
from kazoo.retry import KazooRetry
from twisted.application.service import Service
from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IDelayedCall
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.python.failure import Failure

from mpush.cluster import kazoo_logs as logbridge

__all__ = [
    "KINDS",
    "PATHS",
    "NodeDataError",
    "ServerNode",
    "ZkWatcher",
]

KINDS = ("cs", "gs")
PATHS = {"cs": "/cluster/cs", "gs": "/cluster/gs"}
_KIND_BY_PATH = {path: kind for kind, path in PATHS.items()}
_KIND_NAMES = {"cs": "connection server", "gs": "gateway server"}

# A Java node is well under 1 KB; anything this big is not one of ours.
MAX_NODE_DATA = 64 * 1024

# Errors that only mean "the connection went away": the next CONNECTED
# starts a fresh round, so there is nothing to retry or report.
_CONNECTION_ERRORS = (ConnectionLoss, SessionExpiredError, ConnectionClosedError)

_MISSING = object()


class NodeDataError(ValueError):
    """A node's data is not a usable mpush server node."""


@dataclass(frozen=True)
class ServerNode:
    """One child of ``/cluster/cs`` or ``/cluster/gs``."""

    name: str
    host: str
    port: int
    # Excluded from the hash (a mapping is not hashable), kept in equality
    # so that an attrs-only change is an "updated" event.
    attrs: Mapping[str, Any] = field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        # Read-only copy: nodes are shared with every listener.
        object.__setattr__(self, "attrs", MappingProxyType(dict(self.attrs)))

    @property
    def public_host(self) -> str:
        """The address clients get: ``attrs.public_ip`` if set, else host."""
        ip = self.attrs.get("public_ip")
        if isinstance(ip, str) and ip.strip():
            return ip.strip()
        return self.host

    @property
    def weight(self) -> float:
        """``attrs.weight`` as a positive float; 1 if absent or unusable."""
        raw = self.attrs.get("weight", 1)
        if isinstance(raw, bool):
            return 1.0
        try:
            value = float(raw)
        except (TypeError, ValueError):
            return 1.0
        if not math.isfinite(value) or value <= 0:
            return 1.0
        return value

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @classmethod
    def parse(cls, name: str, data: bytes | None) -> ServerNode:
        """Parse the JSON a Java server writes; raise NodeDataError if unusable.

        Lenient where fastjson (the Java reader) is: a port given as a
        decimal string or an integral float is accepted, extra keys ignored.
        """
        if not data:
            raise NodeDataError("no data")
        if len(data) > MAX_NODE_DATA:
            raise NodeDataError(f"data too large ({len(data)} bytes)")
        try:
            doc = json.loads(data.decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError) as e:
            raise NodeDataError(f"not UTF-8 JSON: {e}") from None
        if not isinstance(doc, dict):
            raise NodeDataError("not a JSON object")
        host = doc.get("host")
        if not isinstance(host, str) or not host.strip():
            raise NodeDataError("missing or empty host")
        port = _parse_port(doc.get("port"))
        attrs = doc.get("attrs")
        if attrs is None:
            attrs = {}
        elif not isinstance(attrs, dict):
            raise NodeDataError("attrs is not a JSON object")
        return cls(name=name, host=host.strip(), port=port, attrs=attrs)


def _parse_port(raw: Any) -> int:
    port: int | None = None
    if isinstance(raw, bool):
        port = None
    elif isinstance(raw, int):
        port = raw
    elif isinstance(raw, float) and raw.is_integer():
        port = int(raw)
    elif isinstance(raw, str) and raw.strip().isdigit() and len(raw.strip()) <= 5:
        port = int(raw.strip())
    if port is None:
        raise NodeDataError(f"missing or non-numeric port: {raw!r}")
    if not 0 < port < 65536:
        raise NodeDataError(f"port out of range: {port}")
    return port


class ZkSettingsLike(Protocol):
    """The fields of ``mpush.config.ZkSettings`` this module reads.

    ``server_address`` is a kazoo hosts string and may carry a chroot of its
    own; the namespace is appended to it (``h1:p1,h2:p2/chroot/mpush``).
    """

    @property
    def server_address(self) -> str: ...
    @property
    def namespace(self) -> str | None: ...
    @property
    def digest(self) -> str | None: ...
    @property
    def session_timeout(self) -> float: ...
    @property
    def connection_timeout(self) -> float: ...


# cb(kind, event, node): kind "cs"|"gs"; event "added"|"updated"|"removed"
# (with the node) or "resync" (node None: a full re-read just completed).
Listener = Callable[[str, str, "ServerNode | None"], object]


class ZkWatcher(Service):
    """A kazoo session and the live view of both server lists.

    ``startService`` returns once kazoo is started; it never waits for
    ZooKeeper, which may be down for as long as it likes: kazoo retries
    forever and the state is logged once per change.
    """

    log = Logger()

    # Delay before re-reading after an unexpected error (e.g. NoAuth) while
    # connected; connection errors need none (reconnects trigger a round).
    error_retry_delay = 5.0

    def __init__(self, settings: ZkSettingsLike, reactor: Any = None) -> None:
        if reactor is None:
            from twisted.internet import reactor as default_reactor

            reactor = default_reactor
        self._settings = settings
        self._reactor = reactor
        self.client: KazooClient | None = None
        self.state = "stopped"
        self.session_id: int | None = None
        self.initialized = False
        self._views: dict[str, dict[str, ServerNode]] = {kind: {} for kind in KINDS}
        # Raw data of every child read, valid or not: the children we know.
        self._raw: dict[str, dict[str, bytes | None]] = {kind: {} for kind in KINDS}
        # path -> the data already reported as malformed (report it once).
        self._bad: dict[str, bytes | None] = {}
        self._listeners: list[Listener] = []
        # Bumped on every start and stop: replies for an older client are dropped.
        self._generation = 0
        self._round: dict[str, int] = dict.fromkeys(KINDS, 0)
        self._pending: dict[str, int] = dict.fromkeys(KINDS, 0)
        self._round_ok: dict[str, bool] = dict.fromkeys(KINDS, True)
        self._synced: set[str] = set()
        self._retry: dict[str, IDelayedCall] = {}
        self._errors: dict[str, str] = {}
        self._last_session: int | None = None
        self._stopping: Deferred[None] | None = None

    # -- public view -------------------------------------------------------

    def connection_servers(self) -> dict[str, ServerNode]:
        """Connection servers by node name (a copy)."""
        return dict(self._views["cs"])

    def gateway_servers(self) -> dict[str, ServerNode]:
        """Gateway servers by node name (a copy)."""
        return dict(self._views["gs"])

    def add_listener(self, cb: Listener) -> None:
        """Call ``cb(kind, event, node)`` on every change, in the reactor thread."""
        self._listeners.append(cb)

    def remove_listener(self, cb: Listener) -> None:
        if cb in self._listeners:
            self._listeners.remove(cb)

    @property
    def servers(self) -> str:
        return self._settings.server_address

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
        settings = self._settings
        digest = settings.digest or None
        namespace = (settings.namespace or "").strip("/")
        hosts = settings.server_address.strip()
        # The namespace is a kazoo chroot, as Curator's namespace is a prefix.
        client = KazooClient(
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
        )
        Service.startService(self)
        logbridge.install("kazoo")
        self._generation += 1
        generation = self._generation
        self._synced = set()
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
        self._generation += 1
        for call in self._retry.values():
            if call.active():
                call.cancel()
        self._retry.clear()
        client, self.client = self.client, None
        self.session_id = None
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
        self._reactor.callFromThread(self._on_state, generation, state, session)

    def _watch(self, event: WatchedEvent) -> None:
        # kazoo's callback thread. One bound method for every watch: kazoo
        # keeps watchers in a set per path, so re-arming never duplicates.
        self._reactor.callFromThread(self._on_watch, event)

    def _deferred(self, result: IAsyncResult) -> Deferred[Any]:
        """A Deferred fired in the reactor thread with a kazoo async result."""
        d: Deferred[Any] = Deferred()

        def done(res: IAsyncResult) -> None:
            # kazoo's callback thread.
            if res.successful():
                self._reactor.callFromThread(d.callback, res.value)
            else:
                self._reactor.callFromThread(d.errback, Failure(res.exception))

        result.rawlink(done)
        return d

    # -- reactor thread: state ----------------------------------------------

    def _on_state(self, generation: int, state: str, session: int | None) -> None:
        if generation != self._generation or not self.running:
            return
        if state == KazooState.CONNECTED:
            self.session_id = session
            self._set_state("connected")
            for kind in KINDS:
                self._start_round(kind)
        elif state == KazooState.SUSPENDED:
            self._set_state("suspended")
        elif state == KazooState.LOST:
            self.session_id = None
            self._set_state("lost")

    def _set_state(self, new: str) -> None:
        if new == self.state:
            return
        old, self.state = self.state, new
        counts = {"cs_count": len(self._views["cs"]), "gs_count": len(self._views["gs"])}
        if new == "connecting":
            self.log.info("ZooKeeper: connecting to {zk_servers}",
                          zk_state=new, zk_previous=old, zk_servers=self.servers)
        elif new == "connected":
            session = self.session_id or 0
            if self._last_session is None:
                how = "new session"
            elif self._last_session == session:
                how = "same session"
            else:
                how = "new session, the previous one expired"
            self._last_session = session
            self.log.info("ZooKeeper: connected to {zk_servers} ({how} 0x{session:x})",
                          zk_state=new, zk_previous=old, zk_servers=self.servers,
                          how=how, session=session)
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

    # -- reactor thread: reading --------------------------------------------

    def _start_round(self, kind: str) -> None:
        """Re-read everything of one kind (after every (re)connect)."""
        call = self._retry.pop(kind, None)
        if call is not None and call.active():
            call.cancel()
        self._round[kind] += 1
        self._round_ok[kind] = True
        self._list(kind, full=True, round_no=self._round[kind])

    def _list(self, kind: str, *, full: bool, round_no: int | None = None) -> None:
        if self.client is None:
            return
        generation = self._generation
        d = self._deferred(self.client.get_children_async(PATHS[kind], watch=self._watch))
        d.addCallbacks(self._listed, self._list_failed,
                       callbackArgs=(generation, kind, full, round_no),
                       errbackArgs=(generation, kind, round_no))

    def _listed(self, children: list[str], generation: int, kind: str, full: bool,
                round_no: int | None) -> None:
        if generation != self._generation:
            return
        self._clear_error(kind)
        names = set(children)
        known = self._raw[kind]
        for name in [n for n in known if n not in names]:
            self._forget(kind, name)
        # A round re-reads every node (which also re-arms its data watch);
        # a watch-triggered re-list only reads the new ones.
        wanted = sorted(names if full else names - known.keys())
        counted = round_no is not None and round_no == self._round[kind]
        if counted:
            self._pending[kind] = len(wanted)
        for name in wanted:
            self._fetch(kind, name, round_no if counted else None)
        if counted and not wanted:
            self._round_done(kind)

    def _list_failed(self, failure: Failure, generation: int, kind: str,
                     round_no: int | None) -> None:
        if generation != self._generation:
            return
        if failure.check(NoNodeError):
            # No /cluster/cs yet (no server ever registered): an empty list,
            # and an exists watch to notice its creation.
            self._clear_error(kind)
            for name in list(self._raw[kind]):
                self._forget(kind, name)
            self._watch_parent(kind)
            if round_no is not None and round_no == self._round[kind]:
                self._round_done(kind)
            return
        if round_no is not None and round_no == self._round[kind]:
            self._round_ok[kind] = False
        self._report_error(failure, kind, f"listing {PATHS[kind]}")

    def _watch_parent(self, kind: str) -> None:
        if self.client is None:
            return
        generation = self._generation
        d = self._deferred(self.client.exists_async(PATHS[kind], watch=self._watch))

        def exists(stat: ZnodeStat | None) -> None:
            # Created between our list and this call: the watch won't fire.
            if generation == self._generation and stat is not None:
                self._list(kind, full=False)

        def failed(failure: Failure) -> None:
            if generation == self._generation:
                self._report_error(failure, kind, f"watching {PATHS[kind]}")

        d.addCallbacks(exists, failed)

    def _fetch(self, kind: str, name: str, round_no: int | None) -> None:
        if self.client is None:
            return
        generation = self._generation
        path = f"{PATHS[kind]}/{name}"
        d = self._deferred(self.client.get_async(path, watch=self._watch))
        d.addCallbacks(self._fetched, self._fetch_failed,
                       callbackArgs=(generation, kind, name),
                       errbackArgs=(generation, kind, name))
        if round_no is not None:
            d.addCallback(self._count_down, generation, kind, round_no)

    def _fetched(self, result: tuple[bytes, ZnodeStat], generation: int, kind: str,
                 name: str) -> bool:
        if generation == self._generation:
            self._apply(kind, name, result[0])
        return True

    def _fetch_failed(self, failure: Failure, generation: int, kind: str, name: str) -> bool:
        if generation != self._generation:
            return True
        if failure.check(NoNodeError):
            # Listed, then gone before we read it: a normal race.
            self._forget(kind, name)
            return True
        self._report_error(failure, kind, f"reading {PATHS[kind]}/{name}")
        return False

    def _count_down(self, ok: bool, generation: int, kind: str, round_no: int) -> None:
        if generation != self._generation or round_no != self._round[kind]:
            return
        if not ok:
            self._round_ok[kind] = False
        self._pending[kind] -= 1
        if self._pending[kind] == 0:
            self._round_done(kind)

    def _round_done(self, kind: str) -> None:
        if not self._round_ok[kind]:
            # Part of the round failed (connection lost mid-way): the next
            # CONNECTED, or the error retry, runs a new one.
            return
        self._synced.add(kind)
        if not self.initialized and self._synced.issuperset(KINDS):
            self.initialized = True
            self.log.info(
                "ZooKeeper: view loaded, {cs_count} connection and {gs_count} gateway servers",
                cs_count=len(self._views["cs"]), gs_count=len(self._views["gs"]))
        self._emit(kind, "resync", None)

    # -- reactor thread: watches ---------------------------------------------

    def _on_watch(self, event: WatchedEvent) -> None:
        # NONE events are kazoo dropping its watches on a disconnect; the
        # round after the reconnect re-arms them.
        if not self.running or event.type == EventType.NONE or event.path is None:
            return
        kind = _KIND_BY_PATH.get(event.path)
        if kind is not None:
            # The parent: children changed, or it was created or deleted.
            self._list(kind, full=False)
            return
        parent, _, name = event.path.rpartition("/")
        kind = _KIND_BY_PATH.get(parent)
        if kind is None or not name:
            return
        if event.type == EventType.DELETED:
            self._forget(kind, name)
        elif event.type == EventType.CHANGED:
            self._fetch(kind, name, None)

    # -- reactor thread: the view ----------------------------------------------

    def _apply(self, kind: str, name: str, data: bytes | None) -> None:
        path = f"{PATHS[kind]}/{name}"
        self._raw[kind][name] = data
        view = self._views[kind]
        try:
            node = ServerNode.parse(name, data)
        except NodeDataError as e:
            if self._bad.get(path, _MISSING) != data:
                self._bad[path] = data
                self.log.warn(
                    "ZooKeeper: ignoring {kind_name} node {zk_path}: {reason}; data: {preview}",
                    kind_name=_KIND_NAMES[kind], zk_path=path, reason=str(e),
                    preview=_preview(data))
            old = view.pop(name, None)
            if old is not None:
                self._emit(kind, "removed", old)
            return
        self._bad.pop(path, None)
        old = view.get(name)
        view[name] = node
        if old is None:
            self.log.info("ZooKeeper: {kind_name} added: {address} ({zk_node})",
                          kind_name=_KIND_NAMES[kind], address=node.address, zk_node=name)
            self._emit(kind, "added", node)
        elif old != node:
            self.log.info("ZooKeeper: {kind_name} updated: {address} ({zk_node})",
                          kind_name=_KIND_NAMES[kind], address=node.address, zk_node=name)
            self._emit(kind, "updated", node)

    def _forget(self, kind: str, name: str) -> None:
        self._raw[kind].pop(name, None)
        self._bad.pop(f"{PATHS[kind]}/{name}", None)
        old = self._views[kind].pop(name, None)
        if old is not None:
            self.log.info("ZooKeeper: {kind_name} removed: {address} ({zk_node})",
                          kind_name=_KIND_NAMES[kind], address=old.address, zk_node=name)
            self._emit(kind, "removed", old)

    def _emit(self, kind: str, event: str, node: ServerNode | None) -> None:
        for cb in list(self._listeners):
            try:
                cb(kind, event, node)
            except Exception:
                # A broken listener must not break the view or the others.
                self.log.failure("ZooKeeper: listener {cb!r} failed on {event} {kind}",
                                 cb=cb, event=event, kind=kind)

    # -- reactor thread: errors ------------------------------------------------

    def _report_error(self, failure: Failure, kind: str, what: str) -> None:
        if failure.check(*_CONNECTION_ERRORS):
            self.log.debug("ZooKeeper: {what} interrupted: {error}",
                           what=what, error=failure.getErrorMessage())
            return
        text = f"{what}: {failure.type.__name__} {failure.getErrorMessage()}".rstrip()
        if self._errors.get(kind) != text:
            self._errors[kind] = text
            self.log.error("ZooKeeper: {error}; retrying every {delay} s",
                           error=text, delay=self.error_retry_delay, zk_error=kind)
        call = self._retry.get(kind)
        if call is None or not call.active():
            self._retry[kind] = self._reactor.callLater(
                self.error_retry_delay, self._retry_round, kind)

    def _retry_round(self, kind: str) -> None:
        self._retry.pop(kind, None)
        if self.running and self.state == "connected":
            self._start_round(kind)

    def _clear_error(self, kind: str) -> None:
        if self._errors.pop(kind, None) is not None:
            self.log.info("ZooKeeper: reading {zk_path} works again", zk_path=PATHS[kind])


def _close_client(client: KazooClient) -> None:
    """Close a kazoo client (blocking: runs in a worker thread)."""
    try:
        client.stop()
    finally:
        client.close()


def _preview(data: bytes | None, limit: int = 200) -> str:
    if data is None:
        return "(none)"
    text = repr(data[:limit])
    return text + ("..." if len(data) > limit else "")
