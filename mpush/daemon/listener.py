"""The web listener service: binds in ``privilegedStartService``, accepts in ``startService``.

twistd calls ``privilegedStartService`` before it tells a daemonizing parent
that the start went well (and before it drops to ``--uid``), so a port that
is taken, an interface that is not local or a TLS pair that cannot be
loaded fails the ``twistd`` command itself (see
:meth:`mpush.daemon.tap.AllocDaemon.privilegedStartService`). The bound
port accepts no connection until ``startService``, which the ordered root
calls once the services above the listener have started.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from twisted.application.service import Service
from twisted.internet.defer import Deferred, succeed
from twisted.internet.error import CannotListenError
from twisted.internet.interfaces import IListeningPort
from twisted.internet.ssl import CertificateOptions
from twisted.logger import Logger
from twisted.web.server import Site

from mpush.config.keys import default
from mpush.daemon import tls
from mpush.reactor import default_reactor

#: A reconnect storm of mobile clients is this server's normal case: 1024
#: queued connections, where Twisted's 50 made clients wait for a SYN resend.
DEFAULT_BACKLOG: int = default("mp.alloc.listen-backlog")


@dataclass(frozen=True)
class TlsOptions:
    """What ``https`` serves with: ``cert`` and ``key`` (PEM files), or, when
    either is None, a self-signed pair made (once) in ``data_dir``."""

    cert: str | None = None
    key: str | None = None
    data_dir: str = "."


class ListenError(Exception):
    """The listener cannot serve: its port or its TLS pair. One line, no traceback."""


class WebService(Service):
    """Binds its port in ``privilegedStartService`` (or in ``startService`` if
    that was not called), accepts from ``startService`` on, and closes the
    port first on shutdown.

    ``tls``: serve ``https`` with these options; None: plain ``http``.
    ``listening`` is the port while it accepts, None otherwise. ``backlog``:
    the ``listen()`` queue (the kernel caps it at ``net.core.somaxconn``).
    """

    log = Logger()

    def __init__(self, site: Site, port: int, interface: str = "0.0.0.0",
                 tls: TlsOptions | None = None, reactor: Any = None,
                 backlog: int = DEFAULT_BACKLOG) -> None:
        self._reactor = default_reactor(reactor)
        self.site = site
        self.port = port
        self.interface = interface
        self.tls = tls
        self.backlog = backlog
        self.listening: IListeningPort | None = None  # once accepting
        self._bound: Any = None  # the twisted.internet.tcp.Port, bound and listening

    @property
    def protocol(self) -> str:
        return "http" if self.tls is None else "https"

    def privilegedStartService(self) -> None:
        Service.privilegedStartService(self)
        self._bind()

    def startService(self) -> Deferred[None]:
        Service.startService(self)
        port = self._bind()
        port.startReading()  # accept the connections the kernel has queued, and more
        self.listening = port
        address = port.getHost()
        self.log.info("{protocol} listening on {host}:{port}",
                      protocol=self.protocol, host=address.host, port=address.port)
        return succeed(None)

    def stopService(self) -> Deferred[None]:
        Service.stopService(self)
        port, self._bound, self.listening = self._bound, None, None
        if port is None:
            return succeed(None)
        return port.stopListening()  # type: ignore[no-any-return]

    def _bind(self) -> Any:
        """The port, bound and listening but not accepting yet; raises ListenError."""
        if self._bound is None:
            port = self._listen()
            # The kernel queues connections meanwhile; startService reads them.
            port.stopReading()
            self._bound = port
        return self._bound

    def _listen(self) -> Any:
        try:
            if self.tls is None:
                return self._reactor.listenTCP(self.port, self.site, backlog=self.backlog,
                                               interface=self.interface)
            return self._reactor.listenSSL(self.port, self.site, self._tls_options(),
                                           backlog=self.backlog, interface=self.interface)
        except CannotListenError as e:
            host = f"[{self.interface}]" if ":" in self.interface else self.interface
            reason = getattr(e.socketError, "strerror", None) or e.socketError
            raise ListenError(f"cannot listen on {host}:{self.port}: {reason}") from None

    def _tls_options(self) -> CertificateOptions:
        assert self.tls is not None
        cert, key = self.tls.cert, self.tls.key
        if cert is None or key is None:
            try:
                cert_path, key_path, created = tls.ensure_self_signed(self.tls.data_dir)
            except OSError as e:
                raise ListenError(f"cannot make a self-signed certificate in"
                                  f" {self.tls.data_dir}: {e.strerror or e}") from None
            cert, key = str(cert_path), str(key_path)
            self.log.info("https: {what} self-signed certificate {cert}",
                          what="generated" if created else "using", cert=cert)
        try:
            return tls.server_options(cert, key)
        except tls.TlsError as e:
            raise ListenError(str(e)) from None
