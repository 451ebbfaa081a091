"""Redis Cluster routing on top of per-node connections.

txredisapi knows nothing of Redis Cluster, so this module adds it: the key
slot function, the slot map read from ``CLUSTER SLOTS``, and a router that
sends each command to the master owning its key's slot and follows
``MOVED`` / ``ASK`` redirects. Connections themselves are not made here: the
router is given a ``connection_for(address)`` callable (see
:class:`mpush.cluster.redis_connection.RedisConnection`), which keeps this module free of
sockets and easy to test.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from twisted.internet.defer import Deferred, FirstError, ensureDeferred, gatherResults
from twisted.logger import Logger
from twisted.python.failure import Failure
from txredisapi import ConnectionError as RedisConnectionError
from txredisapi import ResponseError

SLOTS = 16384
MAX_REDIRECTS = 5

Address = tuple[str, int]

log = Logger(namespace="mpush.cluster.redis_cluster")


# --------------------------------------------------------------------------
# Key slots (pure)
# --------------------------------------------------------------------------


def _crc16_table() -> list[int]:
    table = []
    for byte in range(256):
        crc = byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else (crc << 1)
        table.append(crc & 0xFFFF)
    return table


_CRC16_TABLE = _crc16_table()


def crc16(data: bytes) -> int:
    """CRC16-XMODEM (poly 0x1021, init 0), the one Redis Cluster uses."""
    crc = 0
    for byte in data:
        crc = ((crc << 8) & 0xFFFF) ^ _CRC16_TABLE[((crc >> 8) ^ byte) & 0xFF]
    return crc


def hash_tag(key: bytes) -> bytes:
    """The part of ``key`` that is hashed: the content of the first ``{...}``
    if it is non-empty, else the whole key (Redis Cluster spec)."""
    start = key.find(b"{")
    if start != -1:
        end = key.find(b"}", start + 1)
        if end > start + 1:
            return key[start + 1 : end]
    return key


def key_slot(key: str | bytes) -> int:
    if isinstance(key, str):
        key = key.encode("utf-8")
    return crc16(hash_tag(key)) % SLOTS


# --------------------------------------------------------------------------
# Replies (pure)
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class Redirect:
    kind: str  # "MOVED" | "ASK"
    slot: int
    address: Address


def parse_redirect(message: str, replier: Address | None = None) -> Redirect | None:
    """``"MOVED 3999 127.0.0.1:6381"`` -> Redirect; None for other errors.

    An empty host (``"MOVED 3999 :6381"``: the node does not know its own
    endpoint) means the host of the node that replied.
    """
    parts = message.split()
    if len(parts) != 3 or parts[0] not in ("MOVED", "ASK"):
        return None
    host, sep, port = parts[2].rpartition(":")
    if not sep or not port.isdigit() or not parts[1].isdigit():
        return None
    if not host and replier is not None:
        host = replier[0]
    return Redirect(parts[0], int(parts[1]), (host, int(port)))


def parse_cluster_slots(reply: Any, replier: Address) -> list[Address | None]:
    """``CLUSTER SLOTS`` reply -> slot-indexed list of master addresses."""
    table: list[Address | None] = [None] * SLOTS
    if not isinstance(reply, list):
        raise ValueError(f"unexpected CLUSTER SLOTS reply: {reply!r:.200}")
    for entry in reply:
        start, end, master = int(entry[0]), int(entry[1]), entry[2]
        host = master[0]
        if isinstance(host, bytes):
            host = host.decode("utf-8", "replace")
        if not host or host == "?":
            host = replier[0]
        address = (host, int(master[1]))
        for slot in range(max(start, 0), min(end, SLOTS - 1) + 1):
            table[slot] = address
    return table


def command_key(args: Sequence[Any]) -> Any | None:
    """The key a command is routed by: its first argument (``args[1]``).

    Right for every command this project sends (ZCARD, HGETALL, GET, ...);
    key-less commands (PING, INFO) go to any node.
    """
    return args[1] if len(args) > 1 else None


# --------------------------------------------------------------------------
# Router
# --------------------------------------------------------------------------


class NodeClient(Protocol):
    """What the router needs from a connection to one node (``RedisConnection``)."""

    def execute(self, *args: Any, asking: bool = False) -> Deferred[Any]:
        """Send one command; with ``asking`` send ``ASKING`` right before it
        on the same connection."""
        ...

    def pipeline(self, commands: Sequence[Sequence[Any]]) -> Deferred[list[Any]]:
        """Send ``commands`` in one write; their replies in order, an error
        reply as its ``ResponseError``."""
        ...


class ClusterUnavailable(RedisConnectionError):
    """No slot map could be loaded, or redirects did not settle."""


class ClusterRouter:
    """Routes commands by key slot; follows MOVED and ASK.

    * MOVED: the slot now belongs to another master. Record it, refresh the
      whole map in the background (one refresh at a time) and retry there.
    * ASK: the slot is being migrated and this key already moved. Retry at
      the given node after ``ASKING`` on the same connection, and leave the
      map alone (the slot still belongs to the old owner).
    """

    def __init__(
        self,
        seeds: Sequence[Address],
        connection_for: Callable[[Address], NodeClient],
        *,
        max_redirects: int = MAX_REDIRECTS,
        on_map_changed: Callable[[], None] | None = None,
    ) -> None:
        if not seeds:
            raise ValueError("a Redis Cluster needs at least one seed node")
        self.seeds = tuple(seeds)
        self._connection_for = connection_for
        self.max_redirects = max_redirects
        self._on_map_changed = on_map_changed
        self.slots: list[Address | None] = [None] * SLOTS
        self.loaded = False
        self.refreshes = 0  # completed map loads, for tests and metrics
        self._refreshing: Deferred[None] | None = None
        self._refresh_waiters: list[Deferred[None]] = []

    # -- the map

    def masters(self) -> list[Address]:
        """The masters owning at least one slot, in slot order."""
        return list(dict.fromkeys(a for a in self.slots if a is not None))

    def node_for_slot(self, slot: int) -> Address | None:
        return self.slots[slot]

    def refresh(self) -> Deferred[None]:
        """Reload the slot map; concurrent callers share one load."""
        d: Deferred[None] = Deferred(self._cancel_refresh_waiter)
        self._refresh_waiters.append(d)
        if self._refreshing is None:
            self._refreshing = ensureDeferred(self._load())
            self._refreshing.addBoth(self._refreshed)
        return d

    def _cancel_refresh_waiter(self, d: Deferred[None]) -> None:
        if d in self._refresh_waiters:
            self._refresh_waiters.remove(d)

    def refresh_in_background(self) -> None:
        self.refresh().addErrback(
            lambda f: log.debug("slot map refresh failed: {error}", error=f.getErrorMessage())
        )

    def _refreshed(self, result: Failure | None) -> None:
        self._refreshing = None
        waiters, self._refresh_waiters = self._refresh_waiters, []
        for d in waiters:
            if isinstance(result, Failure):
                d.errback(result)
            else:
                d.callback(None)

    async def _load(self) -> None:
        # Known masters first (they have the freshest view), then the seeds.
        candidates = list(dict.fromkeys([*self.masters(), *self.seeds]))
        errors: list[str] = []
        for address in candidates:
            try:
                reply = await self._connection_for(address).execute("CLUSTER", "SLOTS")
                table = parse_cluster_slots(reply, address)
            except (RedisConnectionError, ResponseError, ValueError) as e:
                errors.append(f"{address[0]}:{address[1]}: {e}")
                continue
            if all(a is None for a in table):
                errors.append(f"{address[0]}:{address[1]}: no slot assigned")
                continue
            changed = table != self.slots
            self.slots = table
            self.loaded = True
            self.refreshes += 1
            if changed and self._on_map_changed is not None:
                self._on_map_changed()
            return
        raise ClusterUnavailable("no cluster node gave a slot map: " + "; ".join(errors))

    # -- commands

    def execute(self, *args: Any) -> Deferred[Any]:
        if self.loaded:
            return ensureDeferred(self._execute(args))
        # No map yet: every caller waits for the same load, then all send in
        # the same reactor turn (so many calls still pipeline per node).
        d = self.refresh()
        d.addCallback(lambda _: ensureDeferred(self._execute(args)))
        return d

    def pipeline(self, commands: Sequence[tuple[Any, ...]]) -> Deferred[list[Any]]:
        """The replies of ``commands`` in order, an error reply as its
        ``ResponseError``: one pipeline per master owning some of their keys;
        a command redirected (a slot moving) is sent again on its own."""
        return ensureDeferred(self._pipeline(commands))

    async def _pipeline(self, commands: Sequence[tuple[Any, ...]]) -> list[Any]:
        if not self.loaded:
            await self.refresh()
        by_node: dict[Address, list[int]] = {}
        for i, args in enumerate(commands):
            by_node.setdefault(self._pick(command_key(args))[1], []).append(i)
        groups = list(by_node.items())
        sent = [self._connection_for(address).pipeline([commands[i] for i in indexes])
                for address, indexes in groups]
        replies: list[Any] = [None] * len(commands)
        redirected: list[int] = []
        for (_, indexes), got in zip(groups, await _all(sent), strict=True):
            for i, reply in zip(indexes, got, strict=True):
                replies[i] = reply
                if isinstance(reply, ResponseError) and parse_redirect(str(reply)):
                    redirected.append(i)
        if redirected:
            again = await _all([self.execute(*commands[i]).addErrback(_error_reply)
                                for i in redirected])
            for i, reply in zip(redirected, again, strict=True):
                replies[i] = reply
        return replies

    def _pick(self, key: Any | None) -> tuple[int | None, Address]:
        if key is None:
            masters = self.masters()
            if not masters:
                raise ClusterUnavailable("the slot map is empty")
            return None, masters[0]
        slot = key_slot(key if isinstance(key, str | bytes) else str(key))
        address = self.slots[slot]
        if address is None:
            raise ClusterUnavailable(f"slot {slot} is not served by any node")
        return slot, address

    async def _execute(self, args: tuple[Any, ...]) -> Any:
        slot, address = self._pick(command_key(args))
        asking = False
        for _ in range(self.max_redirects + 1):
            node = self._connection_for(address)
            try:
                return await node.execute(*args, asking=asking)
            except ResponseError as e:
                redirect = parse_redirect(str(e), address)
                if redirect is None:
                    raise
            except RedisConnectionError:
                # The node may be gone for good (failover, resharding): have
                # a fresh map for the next call; this one fails.
                self.refresh_in_background()
                raise
            address = redirect.address
            if redirect.kind == "MOVED":
                asking = False
                if 0 <= redirect.slot < SLOTS:
                    self.slots[redirect.slot] = address
                self.refresh_in_background()
            else:
                asking = True
        raise ClusterUnavailable(f"{args[0]} slot {slot}: more than {self.max_redirects} redirects")


def _error_reply(f: Failure) -> ResponseError:
    """An error reply as a value, as pipelines give it; other failures go on."""
    f.trap(ResponseError)
    return f.value


async def _all(calls: list[Deferred[Any]]) -> list[Any]:
    """Every result, or the first failure itself (not wrapped in FirstError)."""
    try:
        return await gatherResults(calls, consumeErrors=True)
    except FirstError as e:
        e.subFailure.raiseException()
        raise  # not reached


__all__ = [
    "MAX_REDIRECTS",
    "SLOTS",
    "ClusterRouter",
    "ClusterUnavailable",
    "NodeClient",
    "Redirect",
    "command_key",
    "crc16",
    "hash_tag",
    "key_slot",
    "parse_cluster_slots",
    "parse_redirect",
]
