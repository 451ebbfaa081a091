"""Error answers written straight to a connection, before any Request can answer.

Used when the request is refused before twisted.web has a Request ready to
render (a head too slow or too long, a body too large or too slow, framing
that is not HTTP/1.1): the answer is the same JSON error every endpoint
writes (:func:`mpush.web.errors.json_error`), and it always closes the
connection, since the rest of what the client sends cannot be read as a
request.
"""

from __future__ import annotations

import json

__all__ = ["raw_error"]

# RFC 9110's phrases (twisted.web's table has older ones, and no 431).
_PHRASES = {400: b"Bad Request", 408: b"Request Timeout", 413: b"Content Too Large",
            414: b"URI Too Long", 431: b"Request Header Fields Too Large"}


def raw_error(status: int, message: str, **extra: object) -> bytes:
    """A whole HTTP/1.1 answer: ``status``, a JSON error body, ``Connection: close``."""
    body = json.dumps({"error": message, "status": status, **extra},
                      separators=(",", ":")).encode()
    return (b"HTTP/1.1 %d %s\r\n"
            b"Content-Type: application/json\r\n"
            b"Cache-Control: no-store\r\n"
            b"Connection: close\r\n"
            b"Content-Length: %d\r\n\r\n%s") % (status, _PHRASES[status], len(body), body)
