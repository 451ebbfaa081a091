"""How a :class:`~mpush.cluster.gateways.GatewayPool` connects: its options and defaults.

The defaults come from the config key table; ``max_reply_size`` is the
receive limit of a reply body (see :mod:`mpush.cluster.gateways`).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from twisted.application.internet import backoffPolicy

from mpush.arguments import require_non_negative, require_positive
from mpush.cluster.gateway_connection import (
    DEFAULT_MAX_QUEUED_BYTES,
    DEFAULT_MAX_UNANSWERED,
    DEFAULT_QUEUE_STALL_TIMEOUT,
    ConnectionLimits,
)
from mpush.config.keys import default
from mpush.wire import DEFAULT_MAX_PACKET_SIZE

__all__ = ["REPLY_LIMIT_FLOOR", "GatewayPoolOptions", "default_retry_policy"]

#: Smallest receive limit for a reply body (see the module docstring).
REPLY_LIMIT_FLOOR: Final = 64 * 1024
#: The config's defaults, for a pool built without a config.
DEFAULT_CONNECTIONS: Final[int] = default("mp.net.gateway-client-num")
DEFAULT_CONNECT_TIMEOUT: Final[float] = default("mp.alloc.gateway-connect-timeout")
DEFAULT_MAX_PENDING: Final[int] = default("mp.alloc.max-pending-per-gateway")
#: How long a gateway server's connections outlive its ZooKeeper node: the
#: Java server re-creates its node within milliseconds after a reconnect.
DEFAULT_REMOVAL_GRACE: Final = 2.0


def default_retry_policy() -> Callable[[int], float]:
    """Reconnect delays 0.2, 0.4, ... up to 8 s, plus up to 0.5 s of jitter.

    Short at first (a restarted gateway is back within a second), capped low
    because pushes to that server fail while it is away; the jitter keeps
    many alloc instances from reconnecting in lockstep.
    """
    return backoffPolicy(
        initialDelay=0.1, maxDelay=8.0, factor=2.0, jitter=lambda: random.uniform(0.0, 0.5)
    )


def _at_least(name: str, value: float, minimum: float = 1) -> None:
    if not value >= minimum:
        raise ValueError(f"{name} must be >= {minimum:g}, not {value}")


@dataclass(frozen=True)
class GatewayPoolOptions:
    """How a :class:`GatewayPool` connects to the gateway servers; checked when built.

    ``retry_policy`` maps the number of failed attempts to the delay before
    the next one (None: :func:`default_retry_policy`). The ``max_queued_bytes``,
    ``queue_stall_timeout`` and ``max_unanswered`` of each connection are
    those of :class:`~mpush.cluster.gateway_connection.GatewayProtocol`.
    """

    connections_per_server: int = DEFAULT_CONNECTIONS
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT
    max_packet_size: int = DEFAULT_MAX_PACKET_SIZE  # the servers'; see max_reply_size
    max_pending_per_connection: int = DEFAULT_MAX_PENDING
    max_queued_bytes_per_connection: int = DEFAULT_MAX_QUEUED_BYTES
    queue_stall_timeout: float = DEFAULT_QUEUE_STALL_TIMEOUT  # s a full write queue may last
    max_unanswered: int = DEFAULT_MAX_UNANSWERED  # timeouts in a row, no frame between
    retry_policy: Callable[[int], float] | None = None
    removal_grace: float = DEFAULT_REMOVAL_GRACE  # s, connections outliving their node
    max_connections: int | None = None  # all servers together; None: no budget

    def __post_init__(self) -> None:
        _at_least("connections_per_server", self.connections_per_server)
        _at_least("max_pending_per_connection", self.max_pending_per_connection)
        require_positive(connect_timeout=self.connect_timeout)
        if self.max_connections is not None:
            _at_least("max_connections", self.max_connections)
        require_non_negative(removal_grace=self.removal_grace)
        self.connection_limits()  # checks the connections' own figures

    def connection_limits(self) -> ConnectionLimits:
        """What each connection may hold."""
        return ConnectionLimits(self.max_reply_size, self.max_pending_per_connection,
                                self.max_queued_bytes_per_connection,
                                self.queue_stall_timeout, self.max_unanswered)

    @property
    def max_reply_size(self) -> int:
        """The receive limit of a reply body (see the module docstring)."""
        return max(self.max_packet_size, REPLY_LIMIT_FLOOR)
