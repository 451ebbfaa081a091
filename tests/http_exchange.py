"""In-memory HTTP exchanges with a Site: raw bytes in over a StringTransport, raw bytes out.

``request`` is one whole request on a fresh channel, closed after; ``connect``
keeps the channel open as an ``Exchange`` to feed by hand (``dribble``: a byte
at a time on a task.Clock; ``dribble_over_tcp``: the same to a real port).
``split`` parses the answer (``split_status_line`` keeps the status line whole).
``listening`` serves a Site on a real loopback port, for the tests over TCP.
"""

from __future__ import annotations

import socket
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from twisted.internet import reactor
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport

from mpush.web.site import AllocSite


@dataclass
class Exchange:
    """A channel of the Site on a StringTransport: ``feed`` bytes in, read ``raw`` out."""

    transport: StringTransport
    channel: Any

    def feed(self, data: bytes) -> None:
        self.channel.dataReceived(data)

    @property
    def raw(self) -> bytes:
        return self.transport.value()


def dribble(ex: Exchange, clock: Clock, data: bytes, step: float = 1.0) -> None:
    """Feed ``data`` a byte per ``step`` seconds of ``clock``; stop once the server closes."""
    for byte in data:
        if ex.transport.disconnecting:
            return
        ex.feed(bytes([byte]))
        clock.advance(step)


def connect(site: AllocSite, peer: IPv4Address | IPv6Address | None = None,
            transport: StringTransport | None = None) -> Exchange:
    peer = peer or IPv4Address("TCP", "127.0.0.1", 40000)
    channel = site.buildProtocol(peer)
    transport = transport or StringTransport(peerAddress=peer)
    channel.makeConnection(transport)
    return Exchange(transport, channel)


def request(site: AllocSite, raw: bytes) -> bytes:
    """Feed one raw HTTP/1.1 request to a fresh channel; return what it wrote."""
    channel = site.buildProtocol(IPv4Address("TCP", "127.0.0.1", 40000))
    transport = StringTransport()
    channel.makeConnection(transport)
    channel.dataReceived(raw)
    channel.connectionLost(None)
    return transport.value()


def split_status_line(response: bytes) -> tuple[str, dict[str, str], bytes]:
    """(status line, headers by lower-case name, body)."""
    head, _, body = response.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return lines[0], headers, body


def split(response: bytes) -> tuple[int, dict[str, str], bytes]:
    """(status code, headers by lower-case name, body)."""
    status_line, headers, body = split_status_line(response)
    return int(status_line.split()[1]), headers, body


def http_post(body: bytes, headers: dict[str, str] | None = None, path: str = "/push",
              method: str = "POST") -> bytes:
    """A raw HTTP/1.1 request with a body (JSON unless ``headers`` say otherwise)."""
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1:9999"]
    all_headers = {"Content-Type": "application/json", **(headers or {})}
    lines += [f"{k}: {v}" for k, v in all_headers.items()]
    lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def dribble_over_tcp(port: int, prefix: bytes, data: bytes, interval: float,
                     limit: float) -> tuple[float, bytes]:
    """Send ``prefix`` to 127.0.0.1:``port``, then ``data`` a byte every ``interval`` s;
    return (seconds until the server closed or ``limit`` passed, what it sent).

    Blocking: for a thread, while the server answers in the reactor's."""
    received = b""
    with socket.create_connection(("127.0.0.1", port), timeout=2.0) as sock:
        start = time.monotonic()
        sock.sendall(prefix)
        for byte in data:
            if time.monotonic() - start > limit:
                break
            try:
                sock.sendall(bytes([byte]))
                sock.settimeout(interval)
                part = sock.recv(65536)
            except TimeoutError:
                continue  # still open: next byte
            except OSError:
                break  # reset by the server
            if not part:
                break  # closed by the server
            received += part
        return time.monotonic() - start, received


@asynccontextmanager
async def listening(site: AllocSite) -> AsyncIterator[int]:
    """``site`` on a free port of 127.0.0.1 until the block ends (in an async test)."""
    port = reactor.listenTCP(0, site, interface="127.0.0.1")
    try:
        yield port.getHost().port
    finally:
        await port.stopListening()
