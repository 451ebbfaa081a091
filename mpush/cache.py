"""Library name kept stable: the Redis service lives in :mod:`mpush.cluster.redis`."""

from mpush.cluster.redis import RedisService

__all__ = ["RedisService"]
