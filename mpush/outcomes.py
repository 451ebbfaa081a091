"""The shared vocabularies of a push: gateway outcomes, push results and reasons, ack models.

Pure. Each is a ``StrEnum``, so a member compares equal to, and serialises
as, the very string the JSON answers, logs and metrics have always carried:
using them changes no output, it only gives each word one home.
"""

from __future__ import annotations

from enum import Enum, StrEnum

__all__ = ["AckModel", "GatewayOutcome", "PushOutcome", "PushReason", "TimeoutCause"]


class GatewayOutcome(StrEnum):
    """How one request to one gateway server ended (internal, not in /push)."""

    OK = "ok"  # the gateway's OK
    ERROR = "error"  # the gateway's ERROR (its code says why)
    TIMEOUT = "timeout"  # no answer before the deadline
    UNAVAILABLE = "unavailable"  # not sent: no connection, or its pending limit reached
    CONGESTED = "congested"  # not sent: the connection's write queue is full (not reading)
    TOO_LARGE = "too_large"  # not sent: over the datagram limit (UDP)
    LOST = "lost"  # sent, then the connection was lost or spoke garbage


class PushOutcome(StrEnum):
    """The ``result`` of one row of a ``/push`` answer (Java PushResult codes 1..4)."""

    SUCCESS = "success"
    FAILURE = "failure"
    OFFLINE = "offline"
    TIMEOUT = "timeout"


class PushReason(StrEnum):
    """The ``reason`` of one row of a ``/push`` answer: why it is not a success.

    One word per distinct case; a success has none (None). docs/api.md
    says, for each, when it happens and what an operator does about it.
    """

    NO_ROUTE = "no_route"  # Redis has no route for the user (on that client type)
    NO_CONNECTION = "no_connection"  # a route, without a connection (no connId): offline there
    UNKNOWN_GATEWAY = "unknown_gateway"  # the route's gateway is not among those ZooKeeper lists
    GATEWAY_UNREACHABLE = "gateway_unreachable"  # no connection up, or all at their pending limit
    GATEWAY_CONGESTED = "gateway_congested"  # not sent: its write queue is full (not reading)
    PACKET_TOO_LARGE = "packet_too_large"  # not sent: the datagram would exceed the limit (UDP)
    NOT_ONLINE = "not_online"  # the gateway answered OFFLINE (code 1)
    GATEWAY_ERROR = "gateway_error"  # the gateway answered another ERROR (``code`` says which)
    CONNECTION_LOST = "connection_lost"  # sent, then the connection closed or spoke garbage
    REDIS_UNAVAILABLE = "redis_unavailable"  # the route lookup failed
    TIMED_OUT = "timed_out"  # no answer before the deadline
    SHUTDOWN = "shutdown"  # the daemon stopped before the answer
    INTERNAL_ERROR = "internal_error"  # a bug: a part broke its contract (logged)


class AckModel(StrEnum):
    """The ``ackModel`` of a push: which acknowledgement the device sends."""

    NONE = "none"
    AUTO = "auto"  # the client SDK acks on receipt
    BIZ = "biz"  # the app acks once it has handled the message


class TimeoutCause(Enum):
    """Why a gateway request ended as ``GatewayOutcome.TIMEOUT``."""

    DEADLINE = "no answer in time"
    SHUTDOWN = "daemon stopping: no answer within the shutdown grace"
