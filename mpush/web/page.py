"""``/index.html``: the self-contained console page (/cluster, /users/{userId}, /push)."""

from __future__ import annotations

import base64
import hashlib
import re
from importlib import resources

from twisted.web.server import Request

from mpush.web.base import JsonLeaf

__all__ = ["PageResource", "load_page"]

_INLINE = re.compile(rb"<(script|style)>(.*?)</\1>", re.DOTALL)


def load_page() -> bytes:
    """The page as shipped in the package (``mpush/web/static/index.html``)."""
    return resources.files("mpush.web").joinpath("static/index.html").read_bytes()


def _content_security_policy(html: bytes) -> bytes:
    # The page's only script and style are inline: allow exactly those (by
    # hash), for fetch this origin, and images (its favicon) from data: URIs;
    # nothing else may load or frame it.
    hashes: dict[bytes, list[bytes]] = {b"script": [], b"style": []}
    for kind, text in _INLINE.findall(html):
        digest = base64.b64encode(hashlib.sha256(text).digest())
        hashes[kind].append(b"'sha256-" + digest + b"'")
    return b"; ".join([
        b"default-src 'none'",
        b"script-src " + (b" ".join(hashes[b"script"]) or b"'none'"),
        b"style-src " + (b" ".join(hashes[b"style"]) or b"'none'"),
        b"connect-src 'self'",
        b"img-src 'self' data:",  # the favicon is a data: URI
        b"base-uri 'none'",
        b"form-action 'none'",
        b"frame-ancestors 'none'",
    ])


class PageResource(JsonLeaf):
    """Serves one HTML page from memory (``GET``/``HEAD``), ``text/html; charset=utf-8``.

    ``html`` defaults to the packaged page, read once here.
    """

    def __init__(self, html: bytes | None = None) -> None:
        super().__init__()
        self._html = load_page() if html is None else html
        self._csp = _content_security_policy(self._html)

    def render_GET(self, request: Request) -> bytes:
        request.setHeader(b"content-type", b"text/html; charset=utf-8")
        request.setHeader(b"content-security-policy", self._csp)
        request.setHeader(b"x-content-type-options", b"nosniff")
        request.setHeader(b"referrer-policy", b"no-referrer")
        request.setHeader(b"cache-control", b"no-cache")
        return self._html
