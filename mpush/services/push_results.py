"""What a push gives back (:class:`PushResult`), and how a gateway's reply becomes one.

Pure: no Twisted, no I/O. The push client (:mod:`mpush.services.pusher`)
asks the gateways; this module says what their replies mean.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from mpush.outcomes import GatewayOutcome, PushOutcome, PushReason, TimeoutCause
from mpush.wire import ErrorCode

if TYPE_CHECKING:  # annotations only: this module stays free of Twisted at runtime
    from mpush.interfaces import GatewayReplyInfo

__all__ = [
    "PushResult",
    "ShutdownReply",
    "is_router_change",
    "reply_result",
    "shutdown_results",
]


@dataclass(frozen=True)
class PushResult:
    """The outcome of one push to one user on one client type, or of a broadcast on one gateway.

    ``client_type`` is None when the user had no route at all (or the lookup
    failed); ``gateway`` ("host:port") is the gateway last asked, None when
    none was. ``ms`` is the time since ``push()``/``broadcast()`` was called.
    ``reason`` says in one word (a :class:`~mpush.outcomes.PushReason`) why
    a result is not a success, None for a success; ``code`` is the gateway's
    ERROR code when its answer ended it (``gateway_error``, ``not_online``),
    else None.
    """

    user_id: str | None
    client_type: int | None
    result: PushOutcome
    gateway: str | None
    ms: float
    reason: PushReason | None = None
    code: int | None = None


@dataclass(frozen=True)
class ShutdownReply:
    """What a gateway request made after ``PushClient.expire_all`` gets at once."""

    gateway: str
    outcome: GatewayOutcome = GatewayOutcome.TIMEOUT
    code: int | None = None
    cause: TimeoutCause = TimeoutCause.SHUTDOWN


def shutdown_results(targets: Iterable[str | None]) -> list[PushResult]:
    """A shutdown that cannot wait: every target ``timeout``, nothing else known.

    One row per user (a broadcast: one row, ``None``), without client type,
    gateway or time (what the ``/push`` answer has always said then), reason
    ``shutdown``.
    """
    return [PushResult(user, None, PushOutcome.TIMEOUT, None, 0.0, PushReason.SHUTDOWN)
            for user in targets]


def is_router_change(reply: GatewayReplyInfo | None) -> bool:
    return (reply is not None and reply.outcome == GatewayOutcome.ERROR
            and reply.code == ErrorCode.ROUTER_CHANGE)


def reply_result(reply: GatewayReplyInfo | None, *, single: bool
                 ) -> tuple[PushOutcome, PushReason | None, int | None]:
    """(result, reason, code) of a reply; None is a pool that broke its never-fails contract.

    ``code`` is the gateway's ERROR code (None for any other outcome, and
    for an ERROR that did not answer the push). ``single``: a single push,
    where the gateway's OFFLINE error means the user is not online there;
    to a broadcast it is a ``gateway_error`` like any other. UNAVAILABLE
    is ``gateway_unreachable``; the caller, which can ask the pool, makes it
    ``unknown_gateway`` when the pool does not know the gateway at all.
    CONGESTED (not sent: the connection's write queue is full) is
    ``gateway_congested``.
    """
    if reply is None:
        return PushOutcome.FAILURE, PushReason.INTERNAL_ERROR, None
    outcome = reply.outcome
    if outcome == GatewayOutcome.OK:
        return PushOutcome.SUCCESS, None, None
    if outcome == GatewayOutcome.ERROR:
        if single and reply.code == ErrorCode.OFFLINE:
            return PushOutcome.OFFLINE, PushReason.NOT_ONLINE, reply.code
        return PushOutcome.FAILURE, PushReason.GATEWAY_ERROR, reply.code
    if outcome == GatewayOutcome.TIMEOUT:
        # A typed cause, set by the pool's shutdown expiry; anything else is the deadline.
        shutdown = getattr(reply, "cause", None) is TimeoutCause.SHUTDOWN
        return PushOutcome.TIMEOUT, PushReason.SHUTDOWN if shutdown else PushReason.TIMED_OUT, None
    if outcome == GatewayOutcome.UNAVAILABLE:
        # As the Java client: no gateway connection is a failure.
        return PushOutcome.FAILURE, PushReason.GATEWAY_UNREACHABLE, None
    if outcome == GatewayOutcome.CONGESTED:
        return PushOutcome.FAILURE, PushReason.GATEWAY_CONGESTED, None
    if outcome == GatewayOutcome.TOO_LARGE:
        return PushOutcome.FAILURE, PushReason.PACKET_TOO_LARGE, None
    if outcome == GatewayOutcome.LOST:
        return PushOutcome.FAILURE, PushReason.CONNECTION_LOST, None
    return PushOutcome.FAILURE, PushReason.INTERNAL_ERROR, None  # an outcome no pool gives
