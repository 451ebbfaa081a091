"""What a push gives back (:class:`PushResult`), and how a gateway's reply becomes one.

Pure: no Twisted, no I/O. The push client (:mod:`mpush.services.pusher`)
asks the gateways; this module says what their replies mean.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from mpush.outcomes import GatewayOutcome, PushOutcome, TimeoutCause
from mpush.wire import ERROR_REASONS, ErrorCode

if TYPE_CHECKING:  # annotations only: this module stays free of Twisted at runtime
    from mpush.interfaces import GatewayReplyInfo

__all__ = [
    "PushResult",
    "ShutdownReply",
    "error_reason",
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
    ``reason`` says briefly why a result is not a success (for logs and
    operators; not a stable API).
    """

    user_id: str | None
    client_type: int | None
    result: PushOutcome
    gateway: str | None
    ms: float
    reason: str | None = None


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
    gateway or time: what the ``/push`` answer has always said then.
    """
    reason = TimeoutCause.SHUTDOWN.value
    return [PushResult(user, None, PushOutcome.TIMEOUT, None, 0.0, reason) for user in targets]


def error_reason(code: int | None) -> str:
    text = ERROR_REASONS.get(code) if code is not None else None
    return f"gateway error {code}" + (f" ({text})" if text else "")


def is_router_change(reply: GatewayReplyInfo | None) -> bool:
    return (reply is not None and reply.outcome == GatewayOutcome.ERROR
            and reply.code == ErrorCode.ROUTER_CHANGE)


def reply_result(reply: GatewayReplyInfo | None, *, single: bool) -> tuple[PushOutcome, str | None]:
    """(result, reason) of a reply; None is a pool that broke its never-fails contract.

    ``single``: a single push, where the gateway's OFFLINE error means the
    user is offline; to a broadcast it is a failure like any error.
    """
    if reply is None:
        return PushOutcome.FAILURE, "internal error"
    outcome = reply.outcome
    if outcome == GatewayOutcome.OK:
        return PushOutcome.SUCCESS, None
    if outcome == GatewayOutcome.ERROR:
        if single and reply.code == ErrorCode.OFFLINE:
            return PushOutcome.OFFLINE, "gateway: user offline"
        return PushOutcome.FAILURE, error_reason(reply.code)
    if outcome == GatewayOutcome.TIMEOUT:
        # A typed cause, set by the pool's shutdown expiry; anything else is the deadline.
        cause = getattr(reply, "cause", None)
        if cause is not TimeoutCause.SHUTDOWN:
            cause = TimeoutCause.DEADLINE
        return PushOutcome.TIMEOUT, cause.value
    if outcome == GatewayOutcome.UNAVAILABLE:
        # As the Java client: no gateway connection is a failure.
        return PushOutcome.FAILURE, "no gateway connection"
    if outcome == GatewayOutcome.LOST:
        return PushOutcome.FAILURE, "gateway connection lost"
    return PushOutcome.FAILURE, f"unknown reply outcome {outcome!r}"
