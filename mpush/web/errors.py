"""JSON answers, and the error bodies: every 4xx/5xx the daemon writes looks the same."""

from __future__ import annotations

import json

from twisted.web.resource import Resource
from twisted.web.server import Request


def json_answer(request: Request, document: object, status: int = 200) -> bytes:
    """Set ``status`` and the JSON headers (not cached) on ``request``; the body of ``document``
    (``bytes``: JSON already).

    ASCII JSON (``\\u`` escapes): safe for any text, lone surrogates included.
    """
    request.setResponseCode(status)
    request.setHeader(b"content-type", b"application/json")
    request.setHeader(b"cache-control", b"no-store")
    if isinstance(document, bytes):
        return document
    return json.dumps(document, separators=(",", ":")).encode()


def json_error(request: Request, status: int, message: str, **extra: object) -> bytes:
    """Set ``status`` on ``request`` and return a JSON body ``{"error": ...}``."""
    return json_answer(request, {"error": message, "status": status, **extra}, status)


def not_found(request: Request) -> bytes:
    """``404``: no resource at the request's path."""
    path = request.path.decode("utf-8", "replace")
    return json_error(request, 404, f"no resource at {path}")


class JsonNotFound(Resource):
    """What unknown paths get: ``404`` with a JSON body."""

    isLeaf = True

    def render(self, request: Request) -> bytes:
        return not_found(request)


def method_not_allowed(request: Request, allowed: tuple[bytes, ...]) -> bytes:
    """``405`` with ``Allow`` (header and body) listing ``allowed``."""
    request.setHeader(b"allow", b", ".join(allowed))
    method = request.method.decode("ascii", "replace")
    return json_error(request, 405, f"method {method} not allowed", allow=[
        m.decode() for m in allowed])
