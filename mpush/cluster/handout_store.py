"""The shared handout sums in Redis: one hash, ``mp:alloc:handouts``.

Field = a served ``ip:port``, value = the handouts every alloc instance made
to it since the hash was made; field ``~epoch`` names that incarnation. One
exchange is one pipeline on that one key (so one hash slot: in cluster mode
it goes to one master): HSETNX the epoch, HINCRBY our new handouts, PEXPIRE,
HLEN, HMGET of the epoch and our servers' fields. Only our servers' fields
are read: the reply grows with our list, not with what the hash gathered
(servers long gone, fields something else wrote). The hash outlives no
instance by more than :data:`HASH_TTL`.
"""

from __future__ import annotations

import secrets
from collections.abc import Collection, Mapping
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
#: is deleted and started afresh: the hash stays bounded.
MAX_FIELDS = 20_000
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

    def exchange(self, batch: Mapping[str, int],
                 addresses: Collection[str] = ()) -> Deferred[SharedRead]:
        """Add ``batch``, then read the sums of ``addresses`` and of the batch's servers."""
        key = self.key
        fields = list(dict.fromkeys([*batch, *addresses]))
        commands: list[tuple[Any, ...]] = [("HSETNX", key, EPOCH_FIELD, secrets.token_hex(8))]
        commands += [("HINCRBY", key, address, n) for address, n in batch.items()]
        commands += [("PEXPIRE", key, self.ttl_ms), ("HLEN", key),
                     ("HMGET", key, EPOCH_FIELD, *fields)]
        return self.redis.pipeline(commands).addCallback(self._read, fields)

    def _read(self, replies: list[Any], fields: list[str]) -> SharedRead:
        for reply in replies:
            if isinstance(reply, ResponseError):
                raise SharedHandoutsError(f"{self.key}: {reply}")
        length, values = replies[-2], replies[-1] or []
        if not isinstance(length, int) or length > self.max_fields + 1:
            # Servers that came and went for weeks: start afresh, so that
            # the hash (and its PEXPIRE'd lifetime) stays bounded.
            self.redis.execute("DEL", self.key).addErrback(lambda _: None)
            raise SharedHandoutsError(
                f"{self.key} has {length} fields (more than {self.max_fields}); "
                "deleted, sharing starts afresh")
        if len(values) != len(fields) + 1:
            raise SharedHandoutsError(f"{self.key}: HMGET answered {len(values)} values"
                                      f" for {len(fields) + 1} fields")
        epoch = None if values[0] is None else _text(values[0])[:64]
        sums: dict[str, int] = {}
        for name, raw_value in zip(fields, values[1:], strict=True):
            try:
                # Length first: int() of thousands of digits costs for nothing.
                n = int(raw_value) if len(raw_value) <= _MAX_SUM_DIGITS else 0
            except (TypeError, ValueError):
                continue  # absent, or not ours: ignored rather than trusted
            if 0 < n <= MAX_SUM:
                sums[name] = n
        return SharedRead(epoch, sums)


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
