"""An in-memory stand-in for the shared handout sums in Redis (unit tests, benchmarks)."""

from __future__ import annotations

from collections.abc import Collection, Mapping

from twisted.internet.defer import Deferred, fail, succeed

from mpush.shared_handouts import SharedRead


class MemorySums:
    """What :class:`mpush.cluster.handout_store.RedisHandoutStore` does, in a dict:
    one hash shared by every instance given this object. ``error`` fails
    exchanges; ``drop()`` forgets the hash (as an expiry or a Redis restart)."""

    def __init__(self) -> None:
        self.sums: dict[str, int] = {}
        self.epoch: str | None = None
        self.epochs = 0
        self.error: Exception | None = None
        self.exchanges = 0

    def drop(self) -> None:
        self.sums, self.epoch = {}, None

    def exchange(self, batch: Mapping[str, int],
                 addresses: Collection[str] = ()) -> Deferred[SharedRead]:
        if self.error is not None:
            return fail(self.error)
        self.exchanges += 1
        if self.epoch is None:
            self.epochs += 1
            self.epoch = f"e{self.epochs}"
        for address, n in batch.items():
            self.sums[address] = self.sums.get(address, 0) + n
        wanted = {*batch, *addresses}  # as HMGET: the asked fields only
        return succeed(SharedRead(self.epoch, {a: n for a, n in self.sums.items()
                                               if a in wanted}))
