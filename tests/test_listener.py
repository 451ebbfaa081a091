"""The web listener: bound in twistd's privileged start, accepting only once started.

A port that is taken, an interface that is not local or a TLS pair that
cannot be used must fail ``privilegedStartService`` (which twistd reports to
a daemonizing parent) with one line; a bound listener must answer nothing
before its ``startService``. Real sockets on 127.0.0.1.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
import pytest_twisted
from twisted.internet import reactor, threads
from twisted.web.resource import Resource
from twisted.web.server import Request, Site

from mpush.daemon import tls
from mpush.daemon.listener import ListenError, TlsOptions, WebService
from tests.harness.daemon import free_port, held_port


class Ok(Resource):
    isLeaf = True

    def render_GET(self, request: Request) -> bytes:
        return b"ok"


def make_service(port: int, tls_options: TlsOptions | None = None,
                 interface: str = "127.0.0.1") -> WebService:
    return WebService(Site(Ok()), port, interface=interface, tls=tls_options, reactor=reactor)


def bindable(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def ask(port: int, timeout: float) -> bytes:
    """GET / on a fresh connection; what came back within ``timeout`` (b"" if nothing)."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(b"GET / HTTP/1.0\r\n\r\n")
        sock.settimeout(timeout)
        try:
            return sock.recv(65536)
        except TimeoutError:
            return b""


@pytest.fixture
def taken_port() -> Iterator[int]:
    with held_port() as port:
        yield port


@pytest_twisted.ensureDeferred
async def test_privileged_start_binds_and_the_start_accepts() -> None:
    port = free_port()
    service = make_service(port)
    service.privilegedStartService()
    try:
        assert not bindable(port)
        assert service.listening is None
        # The kernel completes the connection, but nobody reads it yet.
        assert await threads.deferToThread(ask, port, 0.3) == b""
        waiting = threads.deferToThread(ask, port, 5.0)
        await service.startService()
        assert service.listening is not None
        assert (await waiting).startswith(b"HTTP/1.0 200")
    finally:
        await service.stopService()
    assert bindable(port)


@pytest_twisted.ensureDeferred
async def test_a_stop_before_the_start_closes_the_bound_port() -> None:
    port = free_port()
    service = make_service(port)
    service.privilegedStartService()
    await service.stopService()
    assert bindable(port)


def test_a_taken_port_is_one_line_naming_it(taken_port: int) -> None:
    service = make_service(taken_port)
    with pytest.raises(ListenError) as raised:
        service.privilegedStartService()
    assert str(raised.value) == f"cannot listen on 127.0.0.1:{taken_port}: Address already in use"


def test_an_interface_that_is_not_local_is_one_line() -> None:
    service = make_service(free_port(), interface="192.0.2.1")  # TEST-NET-1: never local
    with pytest.raises(ListenError, match=r"^cannot listen on 192\.0\.2\.1:\d+: Cannot assign"):
        service.privilegedStartService()


@pytest.fixture
def pairs(tmp_path: Path) -> tuple[tuple[Path, Path], tuple[Path, Path]]:
    """Two self-signed pairs: (cert, key) each."""
    first = tls.ensure_self_signed(str(tmp_path / "first"), "localhost")
    second = tls.ensure_self_signed(str(tmp_path / "second"), "localhost")
    return (first[0], first[1]), (second[0], second[1])


@pytest.mark.parametrize(("case", "fragment"), [
    ("missing-cert", "cannot read the TLS certificate {missing}: No such file or directory"),
    ("garbage-cert", "TLS certificate {garbage}: no PEM certificate in it"),
    ("garbage-key", "TLS key {garbage}: not an unencrypted PEM private key"),
    ("other-key", "TLS key {key2} is not the key of {cert1}"),
])
def test_a_tls_pair_that_cannot_serve_is_one_line_naming_the_file(
        tmp_path: Path, pairs: tuple[tuple[Path, Path], tuple[Path, Path]],
        case: str, fragment: str) -> None:
    (cert1, key1), (_, key2) = pairs
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not PEM\n")
    missing = tmp_path / "missing.pem"
    cert, key = {"missing-cert": (missing, key1), "garbage-cert": (garbage, key1),
                 "garbage-key": (cert1, garbage), "other-key": (cert1, key2)}[case]
    port = free_port()
    service = make_service(port, TlsOptions(str(cert), str(key)))
    with pytest.raises(ListenError) as raised:
        service.privilegedStartService()
    assert str(raised.value) == fragment.format(missing=missing, garbage=garbage, key2=key2,
                                                cert1=cert1)
    assert bindable(port)


def test_a_self_signed_pair_that_cannot_be_written_is_one_line(tmp_path: Path) -> None:
    blocked = tmp_path / "file"
    blocked.write_text("")  # a file where the data directory should be
    service = make_service(free_port(), TlsOptions(data_dir=str(blocked / "data")))
    with pytest.raises(ListenError, match=r"^cannot make a self-signed certificate in .*/data: "):
        service.privilegedStartService()
