"""The web listener service: serves a Site on http or https in ``startService``."""

from __future__ import annotations

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


class WebService(Service):
    """Listens in ``startService``; stops listening first on shutdown."""

    log = Logger()

    def __init__(self, site: Site, port: int, interface: str = "0.0.0.0",
                 protocol: str = "http", tls_cert: str | None = None,
                 tls_key: str | None = None, data_dir: str = ".",
                 reactor: Any = None) -> None:
        self._reactor = default_reactor(reactor)
        self.site = site
        self.port = port
        self.interface = interface
        self.protocol = protocol
        self.tls_cert = tls_cert
        self.tls_key = tls_key
        self.data_dir = data_dir
        self.listening: IListeningPort | None = None

    def _endpoint(self) -> IStreamServerEndpoint:
        if self.protocol == "https":
            cert, key = self.tls_cert, self.tls_key
            if cert is None or key is None:
                cert_path, key_path, created = tls.ensure_self_signed(self.data_dir)
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
