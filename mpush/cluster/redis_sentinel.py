"""Finding the Redis master through Sentinel.

:class:`SentinelResolver` is a :data:`~mpush.cluster.redis_connection.Resolver`:
the master's :class:`~mpush.cluster.redis_connection.RedisConnection` calls
it before each connection attempt, so every reconnect follows a failover.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred
from twisted.python.failure import Failure

from mpush.cluster.redis_cluster import Address
from mpush.cluster.redis_connection import RedisConnection, RedisUnavailable

__all__ = ["SentinelResolver"]


class SentinelResolver:
    """Asks all sentinels at once for the master's address; the first
    answer wins. Sentinels get no password (theirs is not the master's)."""

    def __init__(self, sentinels: list[RedisConnection], master_name: str) -> None:
        self.sentinels = sentinels
        self.master_name = master_name

    def __call__(self) -> Deferred[Address]:
        result: Deferred[Address] = Deferred()
        errors: list[str] = []
        name = self.master_name

        def settle() -> None:
            if not result.called and len(errors) == len(self.sentinels):
                result.errback(
                    RedisUnavailable(
                        f"no sentinel gave the address of master {name!r}: " + "; ".join(errors)
                    )
                )

        def answered(reply: Any, sentinel: RedisConnection) -> None:
            if result.called:
                return
            if isinstance(reply, list) and len(reply) >= 2 and reply[0]:
                result.callback((str(reply[0]), int(reply[1])))
            else:
                errors.append(f"{sentinel.name}: does not know master {name!r}")
                settle()

        def failed(f: Failure, sentinel: RedisConnection) -> None:
            errors.append(f.getErrorMessage())
            settle()

        for sentinel in self.sentinels:
            d = sentinel.execute("SENTINEL", "get-master-addr-by-name", name)
            d.addCallbacks(answered, failed, callbackArgs=(sentinel,), errbackArgs=(sentinel,))
        return result
