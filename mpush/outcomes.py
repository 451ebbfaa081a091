"""The shared vocabularies of a push: gateway outcomes, push results, ack models.

Pure. Each is a ``StrEnum``, so a member compares equal to, and serialises
as, the very string the JSON answers, logs and metrics have always carried:
using them changes no output, it only gives each word one home.
"""

from __future__ import annotations

from enum import Enum, StrEnum

__all__ = ["AckModel", "GatewayOutcome", "PushOutcome", "TimeoutCause"]


class GatewayOutcome(StrEnum):
    """How one request to one gateway server ended (internal, not in /push)."""

    OK = "ok"  # the gateway's OK
    ERROR = "error"  # the gateway's ERROR (its code says why)
    TIMEOUT = "timeout"  # no answer before the deadline
    UNAVAILABLE = "unavailable"  # not sent: no connection, or its pending limit reached
    LOST = "lost"  # sent, then the connection was lost or spoke garbage


class PushOutcome(StrEnum):
    """The ``result`` of one row of a ``/push`` answer (Java PushResult codes 1..4)."""

    SUCCESS = "success"
    FAILURE = "failure"
    OFFLINE = "offline"
    TIMEOUT = "timeout"


class AckModel(StrEnum):
    """The ``ackModel`` of a push: which acknowledgement the device sends."""

    NONE = "none"
    AUTO = "auto"  # the client SDK acks on receipt
    BIZ = "biz"  # the app acks once it has handled the message


class TimeoutCause(Enum):
    """Why a gateway request ended as ``GatewayOutcome.TIMEOUT``."""

    DEADLINE = "no answer in time"
    SHUTDOWN = "daemon stopping: no answer within the shutdown grace"
