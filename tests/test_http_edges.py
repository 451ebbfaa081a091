"""HTTP/1.1 edge cases: message framing (RFC 9112), over-long heads, ``OPTIONS *``,
percent-encoded paths in the request counts, and the Twisted version required.

Raw requests are fed to the Site's channel over a StringTransport.
"""

from __future__ import annotations

import json
import re
from importlib.metadata import version
from pathlib import Path

import pytest
from twisted.internet import task
from twisted.web.http import HTTPChannel

from mpush.web.root import RootResource
from mpush.web.site import AllocSite
from tests.fakes import FakePushClient, FixedAllocator, make_site
from tests.http_exchange import Exchange, connect, split

BODY = b'{"userId": "u1", "content": "x"}'
HEAD = b"POST /push HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
LINE_LIMIT = 16384  # twisted.web's longest request line or header line, bytes
Pushing = tuple[AllocSite, FakePushClient]


def chunked(body: bytes) -> bytes:
    return b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body)


def refused_json(ex: Exchange) -> tuple[int, dict[str, str], dict[str, object]]:
    """The one answer on ``ex``: a JSON error, and the connection closing."""
    status, headers, body = split(ex.raw)
    assert ex.raw.count(b"HTTP/1.1 ") == 1, ex.raw[:300]
    assert headers["content-type"] == "application/json"
    assert headers["connection"] == "close"
    assert ex.transport.disconnecting
    document = json.loads(body)
    assert document["status"] == status
    return status, headers, document


@pytest.fixture
def pushing() -> Pushing:
    """make_site's Site, and the fake push client behind its ``/push`` (answers at once)."""
    client = FakePushClient()
    return make_site(client), client


# ------------------------------------------------------------ framing (RFC 9112 6.1, 6.3)

# Each would be read with a body length the sender may not have meant: a
# request smuggled past a proxy that frames it the other way.
AMBIGUOUS_FRAMING = {
    "chunked, then identity": (b"Transfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n",
                               chunked(BODY)),
    "identity with a length": (b"Transfer-Encoding: identity\r\nContent-Length: %d\r\n"
                               % len(BODY), BODY),
    "identity alone": (b"Transfer-Encoding: identity\r\n", BODY),
    "chunked not last": (b"Transfer-Encoding: chunked, identity\r\n", chunked(BODY)),
    "chunked with a length": (b"Transfer-Encoding: chunked\r\nContent-Length: %d\r\n"
                              % len(BODY), chunked(BODY)),
    "a length, then chunked": (b"Content-Length: %d\r\nTransfer-Encoding: chunked\r\n"
                               % len(BODY), chunked(BODY)),
}


@pytest.mark.parametrize("name", list(AMBIGUOUS_FRAMING))
def test_transfer_encoding_other_than_chunked_alone_is_400(pushing: Pushing, name: str) -> None:
    site, client = pushing
    headers, body = AMBIGUOUS_FRAMING[name]
    ex = connect(site)
    ex.feed(HEAD + headers + b"\r\n" + body)
    status, _, document = refused_json(ex)
    assert status == 400
    assert client.calls == []  # nothing of the request was acted on
    assert "Transfer-Encoding" in str(document["error"]) or name.startswith("chunked not")


def test_chunked_alone_is_read(pushing: Pushing) -> None:
    site, client = pushing
    ex = connect(site)
    ex.feed(HEAD + b"Transfer-Encoding: Chunked\r\n\r\n" + chunked(BODY))
    assert split(ex.raw)[0] == 200
    assert client.calls[0][1] == ["u1"]


def test_a_malformed_head_gets_a_json_400(pushing: Pushing) -> None:
    site = pushing[0]
    ex = connect(site)
    ex.feed(b"GET / HTTP/1.1\r\nHost: x\r\nno colon here\r\n\r\n")
    status, _, document = refused_json(ex)
    assert status == 400 and "malformed" in str(document["error"])


# ------------------------------------------------------------ over-long heads


TOO_LONG = {
    "request line": (b"GET /?q=" + b"a" * LINE_LIMIT + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414),
    # No line end yet: refused all the same, without waiting for one.
    "request line, unended": (b"GET /" + b"a" * (LINE_LIMIT + 10), 414),
    "header line": (b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * LINE_LIMIT
                    + b"\r\n\r\n", 431),
    "head in all": (b"GET / HTTP/1.1\r\nHost: x\r\n"
                    + b"".join(b"X-H%d: %s\r\n" % (i, b"a" * 1000) for i in range(20))
                    + b"\r\n", 431),
}


@pytest.mark.parametrize("name", list(TOO_LONG))
def test_a_head_part_over_16_kib_is_414_or_431(pushing: Pushing, name: str) -> None:
    site = pushing[0]
    raw, expected = TOO_LONG[name]
    ex = connect(site)
    ex.feed(raw)
    status, _, document = refused_json(ex)
    assert (status, document["limit"]) == (expected, LINE_LIMIT)


def test_a_refused_client_that_does_not_let_go_is_aborted() -> None:
    clock = task.Clock()
    site = AllocSite(RootResource(FixedAllocator()), reactor=clock)
    ex = connect(site)
    ex.feed(TOO_LONG["request line, unended"][0])
    assert split(ex.raw)[0] == 414 and not ex.transport.disconnected
    clock.advance(HTTPChannel.abortTimeout)  # the head deadline (10 s) passes too
    assert ex.transport.disconnected  # aborted: StringTransport never closes by itself
    assert ex.raw.count(b"HTTP/1.1 ") == 1  # and nothing but the 414 was written
    assert site.head_timeouts == 0


def test_a_long_request_line_within_the_limits_is_served(pushing: Pushing) -> None:
    site = pushing[0]
    # The request line counts in the 16 KiB of the whole head too: leave room for Host.
    line = b"GET /?q=" + b"a" * (LINE_LIMIT - 100) + b" HTTP/1.1"
    ex = connect(site)
    ex.feed(line + b"\r\nHost: x\r\n\r\n")
    assert split(ex.raw)[0] == 200


def test_a_long_header_after_a_kept_alive_request_is_431(pushing: Pushing) -> None:
    site = pushing[0]
    ex = connect(site)
    ex.feed(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    first = ex.raw
    ex.feed(b"GET / HTTP/1.1\r\nX-Big: " + b"a" * (LINE_LIMIT + 10))
    assert split(first)[0] == 200
    assert split(ex.raw[len(first):])[0] == 431 and ex.transport.disconnecting


# ------------------------------------------------------------ OPTIONS *


@pytest.mark.parametrize("method", [b"OPTIONS", b"GET"])
def test_asterisk_form_is_405_json_like_any_other_method(pushing: Pushing, method: bytes) -> None:
    site = pushing[0]
    ex = connect(site)
    ex.feed(method + b" * HTTP/1.1\r\nHost: x\r\n\r\n")
    status, headers, body = split(ex.raw)
    assert status == 405
    assert headers["content-type"] == "application/json"
    assert headers["allow"] == ""  # no method is served on "*"
    document = json.loads(body)
    assert document["status"] == 405 and "*" in document["error"]
    assert site.requests == {(b"other", 405): 1}


# ------------------------------------------------------------ counted paths


def test_a_percent_encoded_path_is_counted_under_the_path_it_reached(pushing: Pushing) -> None:
    site, client = pushing
    for path in (b"/%70ush", b"/pu%73h", b"/push"):
        ex = connect(site)
        ex.feed(b"POST " + path + b" HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s"
                % (len(BODY), BODY))
        assert split(ex.raw)[0] == 200
    assert len(client.calls) == 3
    assert site.requests == {(b"/push", 200): 3}


def test_encoded_slashes_and_unknown_paths_stay_other(pushing: Pushing) -> None:
    site = pushing[0]
    for path in (b"/pu%2Fsh", b"/%2Fpush", b"/nope", b"/%75sers%2Fx"):
        ex = connect(site)
        ex.feed(b"GET " + path + b" HTTP/1.1\r\nHost: x\r\n\r\n")
        assert split(ex.raw)[0] == 404, path
    ex = connect(site)
    ex.feed(b"GET /%75sers/u1 HTTP/1.1\r\nHost: x\r\n\r\n")  # no /users here: 404
    assert site.requests == {(b"other", 404): 4, (b"/users", 404): 1}


# ------------------------------------------------------------ the Twisted required


def test_twisted_is_required_with_the_pipelining_fix() -> None:
    # GHSA-c8m8-j448-xjx7: pipelined answers written out of order, fixed in 24.7.0.
    setup_py = (Path(__file__).parent.parent / "setup.py").read_text()
    match = re.search(r'"twisted\[tls\]>=([0-9.]+),', setup_py)
    assert match is not None
    required = tuple(int(part) for part in match.group(1).split("."))
    assert required >= (24, 7)
    installed = tuple(int(part) for part in version("twisted").split(".")[:2])
    assert installed >= required
