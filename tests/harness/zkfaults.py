"""ZooKeeper faults a test can cause on purpose: a network partition and an
expired session.

* :class:`CuttableProxy`: a loopback TCP proxy (in the reactor) between a
  client and ZooKeeper whose link can be cut and restored. While cut, the
  client cannot reach ZooKeeper but every other client can.
* :func:`expire_session`: ends a session from outside, the reliable way
  ZooKeeper offers: connect a second client with the session's id and
  password, then close it. Blocking; run it in a thread.

Expiring the session of a client that can still reach the server races with
it (it reconnects within ~0.1 s and may take its session back before the
close): cut its proxy first, expire, then restore the link. The client then
learns of the expiry on its next connect, exactly as after a real partition.
"""

from __future__ import annotations

from typing import Any

from kazoo.client import KazooClient
from twisted.internet.defer import Deferred, maybeDeferred, succeed
from twisted.internet.protocol import Factory
from twisted.protocols import portforward


def expire_session(connect_string: str, session: tuple[int, bytes],
                   timeout: float = 10.0) -> None:
    """Take the session over with its id and password, then close it."""
    other = KazooClient(hosts=connect_string, client_id=session, timeout=2.0)
    other.start(timeout=timeout)
    try:
        other.stop()
    finally:
        other.close()


class CuttableProxy:
    """A loopback TCP proxy to ``target_port`` that can be cut and restored.

    :meth:`cut` drops every proxied connection and stops listening (new
    connections are refused); :meth:`open` listens again on the same port.
    """

    def __init__(self, target_port: int, reactor: Any = None,
                 target_host: str = "127.0.0.1") -> None:
        if reactor is None:
            from twisted.internet import reactor as default_reactor

            reactor = default_reactor
        self._reactor = reactor
        self.target_port = target_port
        self.port_number = 0
        self.connections: set[portforward.ProxyServer] = set()
        self._listening: Any = None
        proxy = self

        class Server(portforward.ProxyServer):
            def connectionMade(self) -> None:
                proxy.connections.add(self)
                super().connectionMade()

            def connectionLost(self, reason: Any) -> None:
                proxy.connections.discard(self)
                super().connectionLost(reason)

        self.factory: Factory = portforward.ProxyFactory(target_host, target_port)
        self.factory.protocol = Server

    @property
    def connect_string(self) -> str:
        return f"127.0.0.1:{self.port_number}"

    @property
    def is_open(self) -> bool:
        return self._listening is not None

    def open(self) -> None:
        """Listen (first time: on a free port; later: on the same one)."""
        if self._listening is None:
            self._listening = self._reactor.listenTCP(self.port_number, self.factory,
                                                      interface="127.0.0.1")
            self.port_number = self._listening.getHost().port

    def cut(self) -> Deferred[None]:
        """Refuse new connections and abort every open one."""
        listening, self._listening = self._listening, None
        d: Deferred[None] = (maybeDeferred(listening.stopListening)
                             if listening is not None else succeed(None))
        for conn in list(self.connections):
            conn.transport.abortConnection()
            if conn.peer is not None and conn.peer.transport is not None:
                conn.peer.transport.abortConnection()
        return d
