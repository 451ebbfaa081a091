"""Outgoing TCP connections kept up by ``ClientService`` (the gateway pool's).

An endpoint for ``host:port`` that skips the resolver for IP literals, an
endpoint wrapper that reports each failed attempt (for one log line per
state change instead of one per attempt), and a ``ClientService`` whose
per-retry message is demoted to debug. Nothing here is gateway-specific
but the endpoint's repr; the Redis client keeps its own connection model
(see :mod:`mpush.cluster.redis_connection` for why).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.application.internet import ClientService
from twisted.internet.abstract import isIPAddress, isIPv6Address
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import (
    HostnameEndpoint,
    TCP4ClientEndpoint,
    TCP6ClientEndpoint,
)
from twisted.internet.interfaces import IProtocol, IProtocolFactory, IStreamClientEndpoint
from twisted.logger import Logger, LogLevel, globalLogPublisher
from twisted.python.failure import Failure
from zope.interface import implementer

__all__ = ["QuietClientService", "ReportingEndpoint", "tcp_endpoint"]


def tcp_endpoint(reactor: Any, host: str, port: int, timeout: float) -> IStreamClientEndpoint:
    """A client endpoint for ``host:port`` with a connect ``timeout`` (seconds)."""
    # IP literals (what mpush registers) skip the resolver entirely.
    if isIPAddress(host):
        return TCP4ClientEndpoint(reactor, host, port, timeout=timeout)
    if isIPv6Address(host):
        return TCP6ClientEndpoint(reactor, host, port, timeout=timeout)
    return HostnameEndpoint(reactor, host, port, timeout=timeout)


def _relay_demoted(event: dict[str, Any]) -> None:
    # ClientService logs "Scheduling retry N ..." at info on every attempt;
    # its owner logs each state change once instead.
    if event.get("log_level") == LogLevel.info:
        event = dict(event, log_level=LogLevel.debug)
    globalLogPublisher(event)


class QuietClientService(ClientService):
    """A ``ClientService`` whose per-attempt info lines are logged at debug."""

    _log = Logger(observer=_relay_demoted)


@implementer(IStreamClientEndpoint)
class ReportingEndpoint:
    """Passes connection-attempt failures to ``on_failure``, for its owner's state log."""

    def __init__(self, inner: IStreamClientEndpoint, address: str,
                 on_failure: Callable[[Failure], object]) -> None:
        self._inner = inner
        self._address = address
        self._on_failure = on_failure

    def __repr__(self) -> str:
        # Shown in ClientService's (debug) retry messages.
        return f"<gateway endpoint {self._address}>"

    def connect(self, factory: IProtocolFactory) -> Deferred[IProtocol]:
        d = self._inner.connect(factory)

        def failed(f: Failure) -> Failure:
            self._on_failure(f)
            return f

        return d.addErrback(failed)
