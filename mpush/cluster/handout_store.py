"""The shared handout sums in Redis: one hash, ``mp:alloc:handouts``.

Field = a served ``ip:port``, value = the handouts every alloc instance made
to it since the hash was made; field ``~epoch`` names that incarnation. One
exchange is one pipeline on that one key (so one hash slot: in cluster mode
it goes to one master): HSETNX the epoch, HINCRBY our new handouts, PEXPIRE,
HGETALL. The hash outlives no instance by more than :data:`HASH_TTL`.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from typing import Any

from twisted.internet.defer import Deferred
from txredisapi import ResponseError

from mpush.cluster.redis import RedisService
from mpush.shared_handouts import EPOCH_FIELD, SHARED_HANDOUTS_KEY, SharedRead

__all__ = ["HASH_TTL", "MAX_FIELDS", "RedisHandoutStore", "SharedHandoutsError"]

#: The hash goes when no instance has written for this long (s): its sums only
#: matter between two refreshes, and a fresh epoch costs nothing.
HASH_TTL = 600.0
#: More fields than this (servers that came and went for weeks) and the hash
#: is deleted and started afresh: the read stays bounded.
MAX_FIELDS = 20_000
#: Longest field (an ``ip:port`` or host name and port) taken from the hash.
MAX_FIELD_LENGTH = 300
#: The largest sum HINCRBY can make (a signed 64-bit integer): a bigger value
#: was written by something else, and would overflow the policy's float load.
MAX_SUM = 2**63 - 1
_MAX_SUM_DIGITS = len(str(MAX_SUM)) + 1  # a sign or a leading zero


class SharedHandoutsError(Exception):
    """The hash holds something this daemon did not write."""


class RedisHandoutStore:
    """:class:`mpush.services.handout_sharing.HandoutStore` over our Redis client."""

    def __init__(self, redis: RedisService, *, key: str = SHARED_HANDOUTS_KEY,
                 ttl: float = HASH_TTL, max_fields: int = MAX_FIELDS) -> None:
        self.redis = redis
        self.key = key
        self.ttl_ms = int(ttl * 1000)
        self.max_fields = max_fields

    def exchange(self, batch: Mapping[str, int]) -> Deferred[SharedRead]:
        key = self.key
        commands: list[tuple[Any, ...]] = [("HSETNX", key, EPOCH_FIELD, secrets.token_hex(8))]
        commands += [("HINCRBY", key, address, n) for address, n in batch.items()]
        commands += [("PEXPIRE", key, self.ttl_ms), ("HGETALL", key)]
        return self.redis.pipeline(commands).addCallback(self._read)

    def _read(self, replies: list[Any]) -> SharedRead:
        for reply in replies:
            if isinstance(reply, ResponseError):
                raise SharedHandoutsError(f"{self.key}: {reply}")
        items = replies[-1] or []
        if len(items) > 2 * (self.max_fields + 1):
            self.redis.execute("DEL", self.key).addErrback(lambda _: None)
            raise SharedHandoutsError(
                f"{self.key} has {len(items) // 2} fields (more than {self.max_fields}); "
                "deleted, sharing starts afresh")
        epoch: str | None = None
        sums: dict[str, int] = {}
        for raw_field, raw_value in zip(items[::2], items[1::2], strict=True):
            name = _text(raw_field)
            if name == EPOCH_FIELD:
                epoch = _text(raw_value)[:64]
            elif 0 < len(name) <= MAX_FIELD_LENGTH:
                try:
                    # Length first: int() of thousands of digits costs for nothing.
                    n = int(raw_value) if len(raw_value) <= _MAX_SUM_DIGITS else 0
                except (TypeError, ValueError):
                    continue  # not ours: ignored rather than trusted
                if 0 < n <= MAX_SUM:
                    sums[name] = n
        return SharedRead(epoch, sums)


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
