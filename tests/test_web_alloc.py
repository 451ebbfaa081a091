"""Unit tests of the allocation resource through a real Site on a StringTransport."""

from __future__ import annotations

from mpush.web.root import RootResource
from mpush.web.site import AllocSite
from tests.fakes import FixedAllocator
from tests.http_exchange import request, split_status_line


def test_get_root_answers_the_policy_body_as_text() -> None:
    alloc = FixedAllocator(b"10.0.0.1:3000,10.0.0.2:3000")
    site = AllocSite(RootResource(alloc))
    status, headers, body = split_status_line(request(site, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"))
    assert status == "HTTP/1.1 200 OK"
    assert headers["content-type"] == "text/plain; charset=utf-8"
    assert headers["content-length"] == str(len(body))
    assert body == b"10.0.0.1:3000,10.0.0.2:3000"
    assert alloc.allocations == 1


def test_head_counts_no_allocation_and_sends_no_body() -> None:
    alloc = FixedAllocator(b"10.0.0.1:3000")
    site = AllocSite(RootResource(alloc))
    status, headers, body = split_status_line(request(site, b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\n"))
    assert status == "HTTP/1.1 200 OK"
    assert headers["content-length"] == "13"
    assert body == b""
    assert alloc.allocations == 0


def test_no_server_known_is_503_with_retry_after() -> None:
    site = AllocSite(RootResource(FixedAllocator(None), retry_after=7))
    status, headers, body = split_status_line(request(site, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"))
    assert status.startswith("HTTP/1.1 503")
    assert headers["retry-after"] == "7"
    assert headers["content-type"] == "application/json"
    assert b"no connection server" in body


def test_other_methods_get_405_with_allow() -> None:
    site = AllocSite(RootResource(FixedAllocator(b"a:1")))
    for method in (b"POST", b"PUT", b"DELETE", b"OPTIONS"):
        raw = method + b" / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n"
        status, headers, body = split_status_line(request(site, raw))
        assert status.startswith("HTTP/1.1 405"), method
        assert headers["allow"] == "GET, HEAD"
        assert b'"status":405' in body


def test_unknown_paths_are_404_json() -> None:
    site = AllocSite(RootResource(FixedAllocator(b"a:1")))
    for path in (b"/nope", b"//", b"/a/b", b"/index.htm"):
        raw = b"GET " + path + b" HTTP/1.1\r\nHost: x\r\n\r\n"
        status, headers, body = split_status_line(request(site, raw))
        assert status.startswith("HTTP/1.1 404"), path
        assert headers["content-type"] == "application/json"
        assert b'"status":404' in body


def test_access_log_is_off_by_default(tmp_path) -> None:
    log = tmp_path / "access.log"
    quiet = AllocSite(RootResource(FixedAllocator(b"a:1")))
    request(quiet, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    noisy = AllocSite(RootResource(FixedAllocator(b"a:1")), access_log=str(log))
    noisy.startFactory()
    request(noisy, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    noisy.stopFactory()
    assert '"GET / HTTP/1.1" 200' in log.read_text()
