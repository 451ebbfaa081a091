"""Handout counts shared between alloc instances: the arithmetic (pure).

Each instance's :class:`~mpush.balance.BalancePolicy` counts its own
handouts between two refreshes. Behind one load balancer, K instances then
each send their own share to the least loaded server: after a server comes
back empty, all K fill it, K times over. So every instance also adds its new
handouts per server into one Redis hash of sums (``mp:alloc:handouts``,
field = the served ``ip:port``) and reads the hash back in the same
pipeline; what the *others* handed out is the sum minus its own part.

Two pieces, both plain data:

- :class:`HandoutLedger` (the sharing timer's): which of our handouts are
  not in the sums yet, and the others' handouts per server as a counter that
  never goes down, even when the hash is recreated (expired, deleted, Redis
  restarted empty: its ``~epoch`` field changes).
- :class:`RemoteBaseline` (the policy's): the others' handouts that the
  online counts cannot hold yet = counter now - counter when the last
  refresh started. This is the policy's own snapshot/subtract applied to the
  others: a refresh's fresh counts include every handout made before it
  started, by anyone.

A dead instance needs no expiry of its own: its sums stop growing, and the
next refresh's baseline absorbs what it handed out.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass

__all__ = [
    "EPOCH_FIELD",
    "SHARED_HANDOUTS_KEY",
    "HandoutLedger",
    "RemoteBaseline",
    "SharedRead",
]

#: The Redis hash of the summed handouts, one per mpush cluster (not an mpush key).
SHARED_HANDOUTS_KEY = "mp:alloc:handouts"
#: The field that names the hash's incarnation; set with HSETNX by whoever
#: writes first, so a recreated hash has a new one.
EPOCH_FIELD = "~epoch"


@dataclass(frozen=True)
class SharedRead:
    """The hash as read right after our additions."""

    epoch: str | None
    sums: Mapping[str, int]  # address -> every instance's handouts to it, this epoch


def _add(into: dict[str, int], address: str, n: int) -> None:
    left = into.get(address, 0) + n
    if left > 0:
        into[address] = left
    else:
        into.pop(address, None)


class HandoutLedger:
    """Our side of the shared sums. ``take`` the new handouts (from the
    policy's running totals), send the batch, then ``settle`` it with what
    the hash read back; a batch that failed is simply taken again with the
    next (resending is safe: a batch applied twice only shifts the others'
    counter by a constant, which the next refresh's baseline cancels)."""

    def __init__(self) -> None:
        self._totals: dict[str, int] = {}  # the policy's totals at the last take
        self._unsent: dict[str, int] = {}  # ours, not yet acknowledged
        self._sent: dict[str, int] = {}  # ours inside the sums, this epoch
        self._epoch: str | None = None
        self._raw: dict[str, int] = {}  # sum - ours at the last read, this epoch
        self._remote: dict[str, int] = {}  # the others' counter, never decreasing

    def take(self, totals: Mapping[str, int]) -> dict[str, int]:
        """The batch to add: our handouts not yet in the sums. ``totals`` is
        the policy's handouts per current server since it joined."""
        before = self._totals
        unsent = {a: n for a, n in self._unsent.items() if a in totals}  # left: forgotten
        for address, n in totals.items():
            was = before.get(address, 0)
            # A total that went down: the server left and came back (from 0).
            new = n - was if n >= was else n
            if new > 0:
                unsent[address] = unsent.get(address, 0) + new
        self._totals = dict(totals)
        self._unsent = unsent
        return dict(unsent)

    def settle(self, batch: Mapping[str, int], read: SharedRead) -> dict[str, int]:
        """``batch`` was added, then the hash read: the others' handouts per
        current server, a counter that only grows."""
        if read.epoch != self._epoch:
            # A new hash: the old sums are gone, ours included; the batch
            # was added to the new one.
            self._epoch = read.epoch
            self._sent, self._raw = {}, {}
        for address, n in batch.items():
            _add(self._sent, address, n)
            _add(self._unsent, address, -n)
        sent, raw, remote = self._sent, self._raw, self._remote
        current = self._totals
        for address in current:
            now = max(0, read.sums.get(address, 0) - sent.get(address, 0))
            grown = now - raw.get(address, 0)
            raw[address] = now
            # Every current server is named, 0 included: the baseline takes
            # a server's first value as history.
            remote[address] = remote.get(address, 0) + max(0, grown)
        for table in (sent, raw, remote):  # bounded by the current servers
            for address in [a for a in table if a not in current]:
                del table[address]
        return dict(remote)


class RemoteBaseline:
    """The others' handouts not yet inside the online counts, per server."""

    def __init__(self) -> None:
        self._now: Mapping[str, int] = {}
        self._base: dict[str, int] = {}

    def observe(self, counter: Mapping[str, int]) -> None:
        """A new reading of the others' counter (replaces the last one)."""
        base = self._base
        for address, n in counter.items():
            # First sight (we just started, or the server is new): what they
            # handed out before is taken as already counted.
            base.setdefault(address, n)
        for address in [a for a in base if a not in counter]:
            del base[address]
        self._now = counter

    def snapshot(self) -> Mapping[str, int]:
        """Taken when a refresh starts (never mutated afterwards: ``observe``
        replaces the mapping)."""
        return self._now

    def rebase(self, snapshot: Mapping[str, int], keep: Collection[str] = ()) -> None:
        """The refresh that took ``snapshot`` brought fresh counts: what the
        others had handed out by then is in them. Addresses in ``keep`` (their
        count could not be read) keep their baseline."""
        base = self._base
        for address, n in snapshot.items():
            if address in base and address not in keep:
                base[address] = min(n, self._now.get(address, n))

    def extra(self, address: str) -> int:
        now = self._now.get(address)
        if now is None:
            return 0
        return max(0, now - self._base.get(address, now))
