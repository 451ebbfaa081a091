"""The balance policy of ``GET /``: which connection server a client is told to use.

Pure (no Twisted, no I/O): :class:`BalancePolicy` holds the ordered server
list and the pre-rendered body; :class:`JavaPolicy` does what the Java alloc
does, for comparison. :class:`mpush.services.refresher.Refresher` feeds them.

How the Java ``mpusher/alloc`` (0.8.x ``AllocHandler``) does it, for
reference: every 5 minutes and on every add/update/remove under
``/cluster/cs`` it reads the cached nodes, takes ``attrs.public_ip`` (else
``host``) as the address, ZCARDs ``mp:oul:<that ip>`` one key after another,
sorts ascending by that count (a stable sort, so ties keep ZK order) and
serves ``ip:port,ip:port``. It only replaces its list when ZK returns at least
one node. Between refreshes it hands the same first server to every client:
with a 5-minute period every new client herds onto one server.

Our policy counts its own handouts between refreshes, so the head moves on as
soon as it is no longer the least loaded (load = (online + handed out) /
weight), and reconciles them exactly against fresh counts: the handed-out
counts are snapshot when a refresh starts and that snapshot is subtracted
when the fresh counts arrive. Other alloc instances' handouts (shared
through Redis, :mod:`mpush.shared_handouts`) weigh the same way.

The policies are literal (``set_servers([])`` empties them); the rule "never
go from servers to none" lives in the Refresher.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol

from mpush.shared_handouts import RemoteBaseline

__all__ = [
    "JAVA_REFRESH_INTERVAL",
    "ONLINE_KEY_PREFIX",
    "AllocPolicy",
    "BalancePolicy",
    "Candidate",
    "JavaPolicy",
    "RefreshToken",
    "ServerStatus",
]

#: The Redis key of an IP's online users is this + the IP (a sorted set).
ONLINE_KEY_PREFIX = "mp:oul:"

#: The Java alloc's fixed period (``scheduleAtFixedRate(..., 5, MINUTES)``).
JAVA_REFRESH_INTERVAL = 300.0


@dataclass(frozen=True)
class Candidate:
    """One connection server as clients see it."""

    address: str  # "ip:port", exactly as served; ip = the node's public host
    ip: str  # the IP whose mp:oul:<ip> sorted set counts this server's users
    weight: float = 1.0

    def __post_init__(self) -> None:
        if not (self.weight > 0 and math.isfinite(self.weight)):
            raise ValueError(f"weight must be a finite number > 0, not {self.weight!r}")
        if not self.address or not self.ip:
            raise ValueError("address and ip must not be empty")


@dataclass(frozen=True)
class RefreshToken:
    """What :meth:`begin_refresh` hands out: the IPs to count (``ips``) and
    the handouts made so far, which the fresh counts will already include."""

    seq: int
    ips: tuple[str, ...]
    handouts: Mapping[str, int]  # address -> handed out before the snapshot
    # address -> the other instances' handout counter at the snapshot (sharing)
    shared: Mapping[str, int] = field(default_factory=dict)


class ServerStatus(NamedTuple):
    """Inspection view of one server (the status snapshot, tests).

    A named tuple: immutable, and cheap to make for every server on every
    ``/metrics`` scrape and ``/cluster`` read.
    """

    address: str
    ip: str
    weight: float
    online: float  # this server's share of its IP's last known count
    handed: int  # handed out since the last applied count
    load: float  # (online + handed + shared) / weight
    allocated: int = 0  # handed out since it joined the list (only grows; metrics)
    shared: int = 0  # handed out by other instances since the last applied count


class AllocPolicy(Protocol):
    """The policy as the refresher feeds it; implemented by BalancePolicy and JavaPolicy."""

    def set_servers(self, candidates: Iterable[Candidate]) -> None: ...
    def begin_refresh(self) -> RefreshToken: ...
    def apply_counts(self, token: RefreshToken, counts: Mapping[str, int],
                     unreadable: Collection[str] = ()) -> bool: ...
    def allocate(self) -> bytes | None: ...
    @property
    def body(self) -> bytes | None: ...
    @property
    def servers(self) -> tuple[Candidate, ...]: ...


def _dedupe(candidates: Iterable[Candidate]) -> list[Candidate]:
    # Two ZK nodes can name one address (a restarted server whose old
    # ephemeral node has not expired yet): serve it once, first one wins.
    seen: dict[str, Candidate] = {}
    for c in candidates:
        seen.setdefault(c.address, c)
    return list(seen.values())


def _count(value: Any) -> int:
    # A count from Redis: anything odd (None, negative, garbage) counts as 0
    # rather than poisoning the order.
    try:
        n = int(value)
    except (TypeError, ValueError):
        return 0
    return n if n > 0 else 0


class _Server:
    __slots__ = ("address", "candidate", "encoded", "given", "handed", "ip", "online", "shared",
                 "weight")

    def __init__(self, candidate: Candidate) -> None:
        self.candidate = candidate
        self.address = candidate.address
        self.ip = candidate.ip
        self.weight = candidate.weight
        self.encoded = candidate.address.encode("utf-8")
        self.online = 0.0
        self.handed = 0
        self.given = 0  # handouts already inside an applied count (handed moves here)
        self.shared = 0  # other instances' handouts not inside the count yet

    def key(self) -> tuple[float, str]:
        # The one place the load is computed, so every comparison sees the
        # same float for the same state.
        return ((self.online + self.handed + self.shared) / self.weight, self.address)


class BalancePolicy:
    """Least loaded first, counting our own handouts between refreshes.

    ``allocate()`` is O(log n) plus a small list move: after a handout only
    the head's load grows, so only the head can move, and only down. The body
    is re-rendered lazily, only when the order changed.
    """

    def __init__(self) -> None:
        self._order: list[_Server] = []
        self._keys: list[tuple[float, str]] = []  # parallel to _order, ascending
        self._by_address: dict[str, _Server] = {}
        self._groups: dict[str, list[_Server]] = {}  # the servers of each IP
        self._ips: tuple[str, ...] = ()  # the keys of _groups, sorted
        self._ip_counts: dict[str, int] = {}  # last known ZCARD per IP
        self._body: bytes | None = None
        self._seq = 0  # seq of the latest begin_refresh; only that token applies
        self._remote = RemoteBaseline()  # other instances' handouts (sharing)

    # -- feeding --------------------------------------------------------

    def set_servers(self, candidates: Iterable[Candidate]) -> None:
        """Replace the server set. Servers that stay keep their counts and
        handouts. A new server gets its share of its IP's last known count,
        or 0 when the IP is new: a freshly registered server is usually empty,
        the refresh that follows a change corrects it within one Redis round
        trip, and until then handout counting stops it from taking more than
        its share."""
        previous = self._by_address
        by_address: dict[str, _Server] = {}
        groups: dict[str, list[_Server]] = {}
        for c in candidates:
            if c.address in by_address:
                continue  # as _dedupe: the first one wins
            s = previous.get(c.address)
            if s is None or s.ip != c.ip:
                s = _Server(c)
            else:
                s.candidate, s.weight = c, c.weight
            by_address[c.address] = s
            groups.setdefault(c.ip, []).append(s)
        self._by_address = by_address
        self._groups = groups
        self._ips = tuple(sorted(groups))
        self._split_counts(self._ip_counts.keys())
        self._resort(by_address.values())

    def begin_refresh(self) -> RefreshToken:
        self._seq += 1
        handouts = {s.address: s.handed for s in self._order if s.handed}
        return RefreshToken(self._seq, self._ips, handouts, self._remote.snapshot())

    def apply_counts(self, token: RefreshToken, counts: Mapping[str, int],
                     unreadable: Collection[str] = ()) -> bool:
        """Take fresh online counts (by IP) for the IPs of ``token``; an IP
        missing from ``counts`` has 0 users. Handouts made before the token
        are now inside the counts, so they are subtracted; later ones stay.
        An IP in ``unreadable`` (its count could not be read) keeps its last
        count, and its servers their handouts.
        Returns False (and changes nothing) for a token that a later
        :meth:`begin_refresh` superseded: its snapshot would be subtracted
        twice."""
        if token.seq != self._seq:
            return False
        self._seq += 1  # a token applies once
        moved: dict[_Server, tuple[float, str]] = {}  # server -> its key before
        for address, n in token.handouts.items():
            s = self._by_address.get(address)
            if s is not None and s.ip not in unreadable:
                # min(): the server may have been removed and re-added since
                # the snapshot, starting again from 0.
                taken = min(n, s.handed)
                if taken:
                    moved.setdefault(s, s.key())
                    s.handed -= taken
                    s.given += taken
        fresh = [ip for ip in token.ips if ip not in unreadable] if unreadable else token.ips
        ip_counts = self._ip_counts
        for ip in fresh:
            n = counts.get(ip, 0)
            ip_counts[ip] = n if type(n) is int and n >= 0 else _count(n)
        if len(ip_counts) > len(self._groups):
            # Forget IPs no server uses any more, so the dict stays bounded.
            for ip in [ip for ip in ip_counts if ip not in self._groups]:
                del ip_counts[ip]
        self._split_counts(fresh, moved)
        if token.shared:
            keep = [s.address for ip in unreadable for s in self._groups.get(ip, ())]
            self._remote.rebase(token.shared, keep)
            self._update_shared(moved)
        self._reorder(moved)
        return True

    def handout_totals(self) -> dict[str, int]:
        """Our handouts per server since it joined the list (for sharing)."""
        return {s.address: s.given + s.handed for s in self._order}

    def set_shared(self, counter: Mapping[str, int]) -> None:
        """The other instances' handout counter per server (only grows),
        as the sharing timer read it; what they handed out since the last
        refresh started weighs like our own handouts."""
        self._remote.observe(counter)
        moved: dict[_Server, tuple[float, str]] = {}
        self._update_shared(moved)
        self._reorder(moved)

    def _update_shared(self, moved: dict[_Server, tuple[float, str]]) -> None:
        extra = self._remote.extra
        for s in self._order:
            n = extra(s.address)
            if n != s.shared:
                moved.setdefault(s, s.key())
                s.shared = n

    def _split_counts(self, ips: Iterable[str],
                      moved: dict[_Server, tuple[float, str]] | None = None) -> None:
        # mp:oul is keyed by IP only: servers sharing an IP share one count.
        # Split it in proportion to weight, i.e. assume the group is already
        # balanced the way we balance; handouts then spread inside the group.
        # A server whose share changes is noted in ``moved`` with its old key.
        groups, ip_counts = self._groups, self._ip_counts
        for ip in ips:
            group = groups.get(ip)
            total = ip_counts.get(ip)
            if group is None or total is None:
                continue
            wsum = group[0].weight if len(group) == 1 else sum(s.weight for s in group)
            for s in group:
                share = total * s.weight / wsum
                if s.online != share:
                    if moved is not None:
                        moved.setdefault(s, s.key())
                    s.online = share

    def _reorder(self, moved: Mapping[_Server, tuple[float, str]]) -> None:
        """Put back in order the servers whose key changed (their old keys given):
        in a steady cluster few do, and moving them is cheaper than sorting all."""
        keys, order = self._keys, self._order
        if len(moved) * 8 > len(order):
            self._resort(order)  # nearly sorted already: close to linear
            return
        for old in moved.values():
            i = bisect_left(keys, old)  # keys are unique: the server itself
            del keys[i], order[i]
        for s in moved:
            key = s.key()
            i = bisect_left(keys, key)
            keys.insert(i, key)
            order.insert(i, s)
        if moved:
            self._body = None

    def _resort(self, servers: Iterable[_Server]) -> None:
        # Addresses are unique, so the sort never compares two servers.
        pairs = [(s.key(), s) for s in servers]
        pairs.sort()
        self._order = [s for _, s in pairs]
        self._keys = [k for k, _ in pairs]
        self._body = None

    # -- serving --------------------------------------------------------

    def allocate(self) -> bytes | None:
        """The body for one client; counts one handout to its first server."""
        order = self._order
        if not order:
            return None
        body = self._body
        if body is None:
            body = self._body = b",".join([s.encoded for s in order])
        head = order[0]
        head.handed += 1
        key = ((head.online + head.handed + head.shared) / head.weight, head.address)
        keys = self._keys
        if len(keys) > 1 and key > keys[1]:
            del keys[0], order[0]
            i = bisect_left(keys, key)
            keys.insert(i, key)
            order.insert(i, head)
            self._body = None
        else:
            keys[0] = key
        return body

    @property
    def body(self) -> bytes | None:
        """The current body, without counting a handout."""
        if not self._order:
            return None
        if self._body is None:
            self._body = b",".join([s.encoded for s in self._order])
        return self._body

    @property
    def servers(self) -> tuple[Candidate, ...]:
        return tuple([s.candidate for s in self._order])

    def describe(self, limit: int | None = None) -> list[ServerStatus]:
        """Every server (or the first ``limit``) in ``GET /`` order."""
        order, keys = self._order, self._keys
        if limit is not None:
            order, keys = order[:limit], keys[:limit]
        make = tuple.__new__  # skips the named tuple's argument handling (per row)
        return [
            make(ServerStatus, (s.address, s.ip, s.weight, s.online, s.handed, k[0],
                                s.given + s.handed, s.shared))
            for s, k in zip(order, keys, strict=True)
        ]


class JavaPolicy:
    """The Java alloc's order, for comparison: ascending by the IP's online
    count as of the last refresh (every server on an IP gets the whole IP's
    count), ties in candidate order (Java's sort is stable); handouts are
    not counted, so the head only changes at a refresh."""

    def __init__(self) -> None:
        self._candidates: list[Candidate] = []
        self._ip_counts: dict[str, int] = {}
        self._order: tuple[Candidate, ...] = ()
        self._body: bytes | None = None
        self._seq = 0

    def set_servers(self, candidates: Iterable[Candidate]) -> None:
        self._candidates = _dedupe(candidates)
        self._resort()

    def begin_refresh(self) -> RefreshToken:
        self._seq += 1
        return RefreshToken(self._seq, tuple(sorted({c.ip for c in self._candidates})), {})

    def apply_counts(self, token: RefreshToken, counts: Mapping[str, int],
                     unreadable: Collection[str] = ()) -> bool:
        if token.seq != self._seq:
            return False
        self._seq += 1
        for ip in token.ips:
            if ip not in unreadable:
                self._ip_counts[ip] = _count(counts.get(ip, 0))
        self._resort()
        return True

    def _resort(self) -> None:
        self._order = tuple(sorted(self._candidates, key=lambda c: self._ip_counts.get(c.ip, 0)))
        self._body = b",".join(c.address.encode("utf-8") for c in self._order) or None

    def allocate(self) -> bytes | None:
        return self._body

    @property
    def body(self) -> bytes | None:
        return self._body

    @property
    def servers(self) -> tuple[Candidate, ...]:
        return self._order


