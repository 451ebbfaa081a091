"""The JSON resource base (mpush.web.base) on small leaves through a real Site."""

from __future__ import annotations

import json

from twisted.web.server import Request

from mpush.web.base import JsonLeaf, JsonResource
from mpush.web.site import AllocSite
from tests.http_exchange import request, split_status_line


class Both(JsonLeaf):
    def render_GET(self, request: Request) -> bytes:
        request.setResponseCode(202)
        request.setHeader(b"content-type", b"text/plain")
        return b"got it"

    def render_POST(self, request: Request) -> bytes:
        return b"posted"


class PostOnly(JsonLeaf):
    def render_POST(self, request: Request) -> bytes:
        return b"posted"


def site_with(**children: JsonResource) -> AllocSite:
    root = JsonLeaf()  # no render_*: every method 405
    root.isLeaf = False
    for name, child in children.items():
        root.putChild(name.encode(), child)
    return AllocSite(root)


def ask(site: AllocSite, method: bytes, path: bytes) -> tuple[str, dict[str, str], bytes]:
    raw = method + b" " + path + b" HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n"
    return split_status_line(request(site, raw))


def test_allowed_methods_come_from_the_render_methods() -> None:
    assert Both.allowed_methods == (b"GET", b"HEAD", b"POST")
    assert PostOnly.allowed_methods == (b"POST",)
    assert JsonLeaf.allowed_methods == ()


def test_each_method_reaches_its_render() -> None:
    site = site_with(both=Both())
    assert ask(site, b"GET", b"/both")[0].startswith("HTTP/1.1 202")
    assert ask(site, b"POST", b"/both")[2] == b"posted"


def test_head_has_the_get_status_headers_and_length_without_body() -> None:
    site = site_with(both=Both())
    status, headers, body = ask(site, b"HEAD", b"/both")
    assert status.startswith("HTTP/1.1 202")
    assert headers["content-type"] == "text/plain"
    assert headers["content-length"] == str(len(b"got it"))
    assert body == b""


def test_a_method_without_render_is_405_json_with_allow() -> None:
    site = site_with(post=PostOnly())
    for method in (b"GET", b"HEAD", b"PUT", b"OPTIONS"):
        status, headers, body = ask(site, method, b"/post")
        assert status.startswith("HTTP/1.1 405"), method
        assert headers["allow"] == "POST"
        if method != b"HEAD":
            assert json.loads(body) == {"error": f"method {method.decode()} not allowed",
                                        "status": 405, "allow": ["POST"]}


def test_paths_below_a_leaf_are_404_json() -> None:
    site = site_with(both=Both())
    for path in (b"/both/", b"/both/x"):
        status, headers, body = ask(site, b"GET", path)
        assert status.startswith("HTTP/1.1 404"), path
        assert headers["content-type"] == "application/json"
        assert json.loads(body) == {"error": f"no resource at {path.decode()}", "status": 404}
