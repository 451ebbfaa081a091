"""In-memory fakes shared by the tests (and benchmarks/balance.py).

Each stands in for one real collaborator and keeps its contract, nothing more:

* allocation: ``Node``, ``View``, ``Cache`` for ServerNode, ZkWatcher and the
  online counts of RedisService (the Refresher's inputs);
* push: ``FakePool`` (a GatewayPool on a ``task.Clock``), ``FakeCache`` (Redis
  hashes), ``Reply`` and ``loc`` (a route as the Java server writes it);
* web: ``FakePushClient``, ``FixedAllocator``, ``push_resource``, ``make_site``;
* status: ``Fakes`` (every part the Status reads) with ``FakeDrain``, and the
  Redis ``SECRET`` that must never show.

The in-memory HTTP exchange helpers are in tests/http_exchange.py.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.interfaces import IDelayedCall
from twisted.internet.task import Clock

from mpush.config import AllocSettings
from mpush.interfaces import OnlineCounts
from mpush.outcomes import TimeoutCause
from mpush.services.admission import PushAdmission
from mpush.services.push_results import shutdown_results
from mpush.services.status import Status
from mpush.web.health import HealthResource
from mpush.web.page import PageResource
from mpush.web.push import PushResource
from mpush.web.root import RootResource
from mpush.web.site import AllocSite
from mpush.wire import CMD_GATEWAY_PUSH, GatewayPush, Packet, PacketDecoder

# ---------------------------------------------------------------- allocation


@dataclass(frozen=True)
class Node:
    """Stands in for mpush.cluster.zookeeper.ServerNode."""

    name: str
    host: str
    port: int = 3000
    attrs: Mapping[str, Any] = field(default_factory=dict)
    since: float | None = None

    @property
    def public_host(self) -> str:
        return self.attrs.get("public_ip") or self.host

    @property
    def weight(self) -> float:
        return float(self.attrs.get("weight", 1))


class View:
    """Stands in for mpush.cluster.zookeeper.ZkWatcher."""

    def __init__(self, *nodes: Node) -> None:
        self.nodes = {n.name: n for n in nodes}
        self.ws_nodes: dict[str, Node] = {}  # /cluster/ws, set by set_ws()
        self.listeners: list[Callable[[str, str, Any], None]] = []
        self.initialized = True
        self.state = "connected"
        self.reads = 0

    def connection_servers(self) -> dict[str, Node]:
        self.reads += 1
        return dict(self.nodes)

    def websocket_servers(self) -> dict[str, Node]:
        self.reads += 1
        return dict(self.ws_nodes)

    def add_listener(self, cb: Callable[[str, str, Any], None]) -> None:
        self.listeners.append(cb)

    def remove_listener(self, cb: Callable[[str, str, Any], None]) -> None:
        self.listeners.remove(cb)

    def set(self, *nodes: Node) -> None:
        self.nodes = {n.name: n for n in nodes}
        self.notify("cs")

    def set_ws(self, *nodes: Node) -> None:
        self.ws_nodes = {n.name: n for n in nodes}
        self.notify("ws")

    def notify(self, kind: str) -> None:
        for cb in self.listeners:
            cb(kind, "updated", None)


class Cache:
    """Stands in for mpush.cluster.redis.RedisService. ``manual`` leaves each call's
    Deferred to the test; ``error`` fails calls. IPs without a count are left out of
    the answer, or answer ``missing`` when it is set (as Redis, where no key reads 0);
    those in ``unreadable`` answer its error (a key of the wrong type)."""

    def __init__(self, counts: Mapping[str, int] | None = None, *,
                 missing: int | None = None) -> None:
        self.counts = dict(counts or {})
        self.missing = missing
        self.calls: list[list[str]] = []
        self.pending: list[Deferred[dict[str, int]]] = []
        self.manual = False
        self.error: Exception | None = None
        self.unreadable: dict[str, str] = {}

    def read_online_counts(self, ips: Any) -> Deferred[OnlineCounts]:
        ips = list(ips)
        self.calls.append(ips)
        if self.manual:
            d: Deferred[OnlineCounts] = Deferred()
            self.pending.append(d)
            return d
        if self.error is not None:
            return fail(self.error)
        unreadable = {ip: self.unreadable[ip] for ip in ips if ip in self.unreadable}
        if self.missing is not None:
            counts = {ip: self.counts.get(ip, self.missing) for ip in ips}
        else:
            counts = {ip: self.counts[ip] for ip in ips if ip in self.counts}
        return succeed(OnlineCounts(counts, unreadable))


# ---------------------------------------------------------------------- push


# The two gateways the push fakes know; A is loc()'s default route.
A = "10.0.0.5:3001"
B = "10.0.0.6:3001"


@dataclass(frozen=True)
class Reply:
    """A GatewayReply-compatible duck type."""

    outcome: str
    gateway: str
    code: int | None = None
    message: Any = None
    cause: TimeoutCause | None = None  # None unless outcome "timeout" (GatewayReply's contract)


@dataclass(frozen=True)
class Step:
    """How the fake pool answers one request."""

    outcome: str = "ok"  # "ok" | "error" | "unavailable" | "congested" | "lost" | "silent" (timer)
    code: int | None = None
    after: float = 0.01  # s until the reply
    at_timeout: bool = False  # reply in the very tick of the timeout, ahead of the timer
    before: Callable[[], None] | None = None  # run just before replying


@dataclass
class Sent:
    address: str
    timeout: float
    at: float
    packet: Packet
    push: GatewayPush


class FakePool:
    """Records requests; answers them as scripted per address (default: OK after 10 ms)."""

    def __init__(self, clock: Clock, addresses: tuple[str, ...] = ()) -> None:
        self.clock = clock
        self.known = list(addresses)
        self.sent: list[Sent] = []
        self.steps: dict[str, list[Step]] = {}
        self.ended = 0
        self.live: dict[int, tuple[str, Callable[[Reply], None]]] = {}  # sid -> (address, end)
        self._ids: Iterator[int] = itertools.count(1)

    def script(self, address: str, *steps: Step) -> None:
        self.steps.setdefault(address, []).extend(steps)

    def addresses(self) -> list[str]:
        return list(self.known)

    def broadcast_addresses(self) -> list[str]:
        return self.addresses()

    def request(self, address: str, build: Callable[[int], bytes], timeout: float) -> Deferred[Any]:
        if address not in self.known:
            # As the real pool: an address it does not know is unavailable, not sent.
            self.ended += 1
            return succeed(Reply("unavailable", address))
        sid = next(self._ids)
        data = build(sid)  # its exceptions propagate, as the real pool's
        [packet] = PacketDecoder(max_body=1 << 20).feed(data)
        assert isinstance(packet, Packet) and packet.cmd == CMD_GATEWAY_PUSH
        assert packet.session_id == sid
        self.sent.append(
            Sent(address, timeout, self.clock.seconds(), packet,
                 GatewayPush.decode_body(packet.body))
        )
        queue = self.steps.get(address, [])
        step = queue.pop(0) if queue else Step()
        if step.outcome in ("unavailable", "congested"):
            self.ended += 1
            return succeed(Reply(step.outcome, address))  # at once, as the real pool
        d: Deferred[Any] = Deferred()
        calls: list[IDelayedCall] = []

        def end(reply: Reply) -> None:
            for call in calls:
                if call.active():
                    call.cancel()
            assert not d.called, "request ended twice"
            self.ended += 1
            self.live.pop(sid, None)
            d.callback(reply)

        def answer() -> None:
            if step.before is not None:
                step.before()
            end(Reply(step.outcome, address, step.code))

        if step.outcome != "silent":
            # Scheduled before the timer: at an equal time, Clock runs it first.
            calls.append(self.clock.callLater(timeout if step.at_timeout else step.after, answer))
        calls.append(self.clock.callLater(timeout, end, Reply("timeout", address)))
        self.live[sid] = (address, end)
        return d

    def expire_pending(self, cause: TimeoutCause) -> int:
        """GatewayPool's contract: every pending request ends timeout now, with ``cause``."""
        live, self.live = self.live, {}
        for address, end in live.values():
            end(Reply("timeout", address, cause=cause))
        return len(live)


class FakeCache:
    """Redis hashes in a dict; counts HGETALL calls; can hold answers back or fail."""

    def __init__(self) -> None:
        self.hashes: dict[str, dict[str, str]] = {}
        self.calls: list[str] = []
        self.manual = False
        self.pending: list[tuple[dict[str, str], Deferred[dict[str, str]]]] = []
        self.error: Exception | None = None

    def hgetall(self, key: str) -> Deferred[dict[str, str]]:
        self.calls.append(key)
        if self.error is not None:
            return fail(self.error)
        value = dict(self.hashes.get(key, {}))  # what Redis holds when the call arrives
        if self.manual:
            d: Deferred[dict[str, str]] = Deferred()
            self.pending.append((value, d))
            return d
        return succeed(value)

    def release(self, *order: int) -> None:
        """Answer the held calls, in the given order of their indexes (default: as made)."""
        pending, self.pending = self.pending, []
        for i in order or range(len(pending)):
            value, d = pending[i]
            d.callback(value)


def loc(
    address: str = A, os_name: str | None = "android", conn: str | None = "c1", **extra: Any
) -> str:
    """ClientLocation JSON as the Java server writes it (nulls left out)."""
    host, port = address.rsplit(":", 1)
    value: dict[str, Any] = {"port": int(port), "host": host, "deviceId": "d1", **extra}
    if os_name is not None:
        value["osName"] = os_name
    value["clientVersion"] = "1.0"
    if conn is not None:
        value["connId"] = conn
    return json.dumps(value)


# ----------------------------------------------------------------------- web


TOKEN = "t0ken-for-tests-0123456789"
SITE_REQUEST_LIMIT = 2048  # make_site's max_request_size


@dataclass(frozen=True)
class FakeResult:
    """Shaped like mpush.services.pusher.PushResult."""

    user_id: str | None
    client_type: int | None
    result: str
    gateway: str | None
    ms: float
    reason: str | None = None
    code: int | None = None


# The reason (and code) FakePushClient gives each result.
_FAKE_REASONS: dict[str, tuple[str | None, int | None]] = {
    "success": (None, None),
    "offline": ("no_route", None),
    "failure": ("gateway_error", 2),
    "timeout": ("timed_out", None),
}


@dataclass
class FakePushClient:
    """Records calls; answers from ``outcomes`` (user id -> result), at once or when told.

    Each result has the reason the real client gives it most often (``_FAKE_REASONS``).

    Its calls go through a real PushAdmission, as PushClient's do.
    """

    outcomes: dict[str, str] = field(default_factory=dict)
    hold: bool = False  # keep the Deferreds pending in `pending`
    raises: Exception | None = None
    max_inflight: int = field(default_factory=lambda: AllocSettings().max_inflight_pushes)
    calls: list[tuple[str, Any, bytes, dict[str, Any]]] = field(default_factory=list)
    pending: list[tuple[Deferred[list[FakeResult]], list[FakeResult]]] = field(
        default_factory=list)
    admission: PushAdmission = field(init=False)

    def __post_init__(self) -> None:
        self.admission = PushAdmission(max_inflight=self.max_inflight)

    def push(self, user_ids: Sequence[str], content: bytes, *, ack: str = "none",
             timeout_ms: int = 3000, tags: Sequence[str] | None = None,
             ) -> Deferred[list[FakeResult]]:
        self.calls.append(("push", list(user_ids), content,
                           {"ack": ack, "timeout_ms": timeout_ms, "tags": tags}))
        if self.raises is not None:
            raise self.raises
        results = []
        for uid in user_ids:
            outcome = self.outcomes.get(uid, "success")
            reason, code = _FAKE_REASONS[outcome]
            if outcome == "offline":
                results.append(FakeResult(uid, None, "offline", None, 0.4, reason))
            else:
                results.append(FakeResult(uid, 1, outcome, "10.0.0.5:3001", 12.345, reason,
                                          code))
        users = list(dict.fromkeys(user_ids))
        return self.admission.run(len(users), lambda: self._answer(results),
                                  lambda: shutdown_results(users))

    def broadcast(self, content: bytes, *, tags: Sequence[str] | None = None,
                  condition: str | None = None, task_id: str | None = None,
                  ack: str = "none", timeout_ms: int | None = None,
                  ) -> Deferred[list[FakeResult]]:
        self.calls.append(("broadcast", None, content, {
            "tags": tags, "condition": condition, "task_id": task_id, "ack": ack,
            "timeout_ms": timeout_ms}))
        if self.raises is not None:
            raise self.raises
        results = [FakeResult(None, None, "success", "10.0.0.5:3001", 20.0),
                   FakeResult(None, None, "timeout", "10.0.0.6:3001", 30000.0, "timed_out")]
        return self.admission.run(1, lambda: self._answer(results),
                                  lambda: shutdown_results([None]))

    def _answer(self, results: list[FakeResult]) -> Deferred[list[FakeResult]]:
        if self.hold:
            d: Deferred[list[FakeResult]] = Deferred()
            self.pending.append((d, results))
            return d
        return succeed(results)


class FixedAllocator:
    """An allocation policy with a fixed body (``None``: no server known); counts allocations."""

    DEFAULT_BODY = b"10.0.0.1:3000"

    def __init__(self, body: bytes | None = DEFAULT_BODY) -> None:
        self._body = body
        self.allocations = 0

    def allocate(self) -> bytes | None:
        if self._body is not None:
            self.allocations += 1
        return self._body

    @property
    def body(self) -> bytes | None:
        return self._body


def push_resource(client: Any, **options: Any) -> PushResource:
    """A PushResource with the config's defaults (``AllocSettings``), overridden by ``options``."""
    alloc = AllocSettings()
    return PushResource(client, **{
        "allow": alloc.push_allow, "push_timeout": alloc.push_timeout,
        "max_users": alloc.max_users_per_push, "retry_after": alloc.retry_after, **options})


def make_site(client: FakePushClient, *, token: str | None = None,
              allow: Sequence[str] = ("127.0.0.1/32", "::1/128"),
              max_request_size: int = SITE_REQUEST_LIMIT) -> AllocSite:
    root = RootResource(FixedAllocator())
    root.putChild(b"push", push_resource(client, token=token, allow=allow, push_timeout=3.0))
    root.putChild(b"index.html", PageResource())
    return AllocSite(root, max_request_size=max_request_size)


# -------------------------------------------------------------------- status


SECRET = "pw-Zq81-never-shown"


@dataclass
class FakeZk:
    state: str = "connected"
    session_id: int | None = 0x1000ABC
    initialized: bool = True
    last_error: str | None = None
    cs: dict[str, Node] = field(default_factory=lambda: {
        "cs1": Node("cs1", "10.0.0.5", since=50.0), "cs2": Node("cs2", "10.0.0.6", since=60.0)})
    gs: dict[str, Node] = field(default_factory=lambda: {"gs1": Node("gs1", "10.0.0.5", 3001)})
    ws: dict[str, Node] = field(default_factory=lambda: {
        "ws1": Node("ws1", "10.0.0.5", 8080, since=70.0)})
    rejected: dict[str, int] = field(default_factory=dict)  # by kind

    def connection_servers(self) -> Mapping[str, Any]:
        return dict(self.cs)

    def gateway_servers(self) -> Mapping[str, Any]:
        return dict(self.gs)

    def websocket_servers(self) -> Mapping[str, Any]:
        return dict(self.ws)

    def rejected_nodes(self) -> Mapping[str, int]:
        return dict(self.rejected)


@dataclass
class FakeStatusCache:
    """The RedisService attributes the Status reads."""

    mode: str = "single"
    healthy: bool = True
    last_error: str | None = None
    password: str | None = SECRET
    io_calls: int = 0

    # Any of these on the request path would be I/O: count, so a test can
    # show /health makes none.
    def execute(self, *args: Any) -> None:
        self.io_calls += 1

    def read_online_counts(self, ips: Any) -> None:
        self.io_calls += 1


@dataclass
class FakeGateways:
    servers: dict[str, dict[str, int]] = field(default_factory=lambda: {
        "10.0.0.5:3001": {"connected": 2, "configured": 2, "pending": 3},
        "10.0.0.6:3001": {"connected": 2, "configured": 2, "pending": 1},
    })

    def status(self) -> Mapping[str, Mapping[str, int]]:
        return {a: dict(s) for a, s in self.servers.items()}


@dataclass
class FakeRefresher:
    last_success: float | None = 90.0
    last_error: str | None = None
    stale: bool = False
    refreshes: int = 7
    failures: int = 0
    unreadable: dict[str, str] = field(default_factory=dict)
    held: dict[str, float] = field(default_factory=dict)
    holds_started: int = 0


@dataclass
class FakePolicy:
    addresses: tuple[str, ...] = ("10.0.0.5:3000", "10.0.0.6:3000")

    @property
    def body(self) -> bytes | None:
        return ",".join(self.addresses).encode() or None

    @property
    def servers(self) -> tuple[Any, ...]:
        return self.addresses


@dataclass
class FakeDrain:
    draining: bool = False


@dataclass
class Fakes:
    zk: FakeZk = field(default_factory=FakeZk)
    cache: FakeStatusCache = field(default_factory=FakeStatusCache)
    gateways: FakeGateways = field(default_factory=FakeGateways)
    refresher: FakeRefresher = field(default_factory=FakeRefresher)
    policy: FakePolicy = field(default_factory=FakePolicy)
    ws_refresher: FakeRefresher = field(default_factory=FakeRefresher)
    ws_policy: FakePolicy = field(default_factory=lambda: FakePolicy(("10.0.0.5:8080",)))
    drain: FakeDrain | None = field(default_factory=FakeDrain)
    clock: Clock = field(default_factory=Clock)

    def __post_init__(self) -> None:
        self.clock.advance(100.0)

    def status(self) -> Status:
        """A Status of every fake (on the fake clock)."""
        return Status(self.zk, self.cache, self.gateways, self.refresher, self.policy,
                      ws_policy=self.ws_policy, ws_refresher=self.ws_refresher,
                      drain=self.drain, clock=self.clock)

    def site(self) -> tuple[AllocSite, HealthResource]:
        health = HealthResource(self.status())
        # Mounted the way makeService mounts it: routing through the real root.
        root = RootResource(self.policy)
        root.putChild(b"health", health)
        return AllocSite(root), health
