"""The web listener service: serves a Site on http or https in ``startService``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from twisted.application.service import Service
from twisted.internet.defer import Deferred, succeed
from twisted.internet.endpoints import (
    SSL4ServerEndpoint,
    TCP4ServerEndpoint,
    TCP6ServerEndpoint,
)
from twisted.internet.interfaces import IListeningPort, IStreamServerEndpoint
from twisted.logger import Logger
from twisted.web.server import Site

from mpush.daemon import tls
from mpush.reactor import default_reactor


@dataclass(frozen=True)
class TlsOptions:
    """What ``https`` serves with: ``cert`` and ``key`` (PEM files), or, when
    either is None, a self-signed pair made (once) in ``data_dir``."""

    cert: str | None = None
    key: str | None = None
    data_dir: str = "."


class WebService(Service):
    """Listens in ``startService``; stops listening first on shutdown.

    ``tls``: serve ``https`` with these options; None: plain ``http``.
    """

    log = Logger()

    def __init__(self, site: Site, port: int, interface: str = "0.0.0.0",
                 tls: TlsOptions | None = None, reactor: Any = None) -> None:
        self._reactor = default_reactor(reactor)
        self.site = site
        self.port = port
        self.interface = interface
        self.tls = tls
        self.listening: IListeningPort | None = None

    @property
    def protocol(self) -> str:
        return "http" if self.tls is None else "https"

    def _endpoint(self) -> IStreamServerEndpoint:
        if self.tls is not None:
            cert, key = self.tls.cert, self.tls.key
            if cert is None or key is None:
                cert_path, key_path, created = tls.ensure_self_signed(self.tls.data_dir)
                cert, key = str(cert_path), str(key_path)
                self.log.info("https: {what} self-signed certificate {cert}",
                              what="generated" if created else "using", cert=cert)
            options = tls.server_options(cert, key)
            return SSL4ServerEndpoint(self._reactor, self.port, options,
                                      interface=self.interface)
        if ":" in self.interface:
            return TCP6ServerEndpoint(self._reactor, self.port, interface=self.interface)
        return TCP4ServerEndpoint(self._reactor, self.port, interface=self.interface)

    def startService(self) -> Deferred[None]:
        Service.startService(self)
        d = self._endpoint().listen(self.site)

        def listening(port: IListeningPort) -> None:
            self.listening = port
            address = port.getHost()
            self.log.info("{protocol} listening on {host}:{port}",
                          protocol=self.protocol, host=address.host, port=address.port)

        d.addCallback(listening)
        return d

    def stopService(self) -> Deferred[None]:
        Service.stopService(self)
        port, self.listening = self.listening, None
        if port is None:
            return succeed(None)
        return port.stopListening()  # type: ignore[return-value]
