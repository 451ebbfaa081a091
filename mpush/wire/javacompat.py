"""What the Java peers compute that Python would compute differently.

fastjson's string quoting, Java's notion of a blank string, the clientType
of a route (``ClientType.find``) and the content the Java alloc's page
pushes. Pure functions, each matching one Java source named below.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable
from typing import Final

from mpush.wire.frames import INT32_MAX, INT32_MIN, check_int

__all__ = [
    "client_type_of",
    "fastjson_quote",
    "java_alloc_content",
    "java_is_blank",
    "tags_json",
]

# ------------------------------------------------------------------- JSON text

# fastjson 1.2.x (SerializeWriter, default features) escapes exactly these in
# a string: C0 controls, '"', '\\', U+007F..U+009F, U+2028/U+2029; upper-case
# hex; everything else, non-ASCII included, is written as is.
_FASTJSON_ESCAPES: Final[dict[int, str]] = {
    **{c: f"\\u{c:04X}" for c in (*range(0x20), *range(0x7F, 0xA0), 0x2028, 0x2029)},
    0x08: "\\b", 0x09: "\\t", 0x0A: "\\n", 0x0C: "\\f", 0x0D: "\\r",
    0x22: '\\"', 0x5C: "\\\\",
}


def fastjson_quote(text: str) -> str:
    """A JSON string literal exactly as fastjson writes it."""
    return '"' + text.translate(_FASTJSON_ESCAPES) + '"'


def tags_json(tags: Iterable[str]) -> str:
    """The tag set as fastjson writes a ``Set<String>``: ``["a","b"]``.

    Duplicates are dropped (Java sends a Set); order is kept, which the
    server does not care about (it only asks "any tag matches").
    """
    if isinstance(tags, str | bytes):
        raise TypeError("tags must be an iterable of str, not a single string")
    seen: dict[str, None] = {}
    for tag in tags:
        if not isinstance(tag, str):
            raise TypeError(f"tag must be str, not {type(tag).__name__}")
        seen.setdefault(tag)
    return "[" + ",".join(fastjson_quote(t) for t in seen) + "]"


# ------------------------------------------------------------------ blankness


def _java_whitespace(ch: str) -> bool:
    # Character.isWhitespace, which (unlike str.isspace) excludes the no-break spaces.
    if ch in "\t\n\x0b\x0c\r\x1c\x1d\x1e\x1f":
        return True
    return unicodedata.category(ch) in ("Zs", "Zl", "Zp") and ch not in (
        "\u00a0", "\u2007", "\u202f"
    )


def java_is_blank(text: str) -> bool:
    """mpush ``Strings.isBlank``: every char passes ``Character.isWhitespace``."""
    # Java's whitespace is a subset of Python's: a string with any
    # non-isspace() character is not blank, decided without the per-char scan.
    if text and not text.isspace():
        return False
    return all(_java_whitespace(ch) for ch in text)


# ------------------------------------------------------- routes and content

# ClientType.java, in its declaration order (the first match wins).
_CLIENT_TYPES: Final = (
    (1, ("android", "ios")),
    (2, ("windows", "mac", "linux")),
    (3, ("web", "h5")),
)


def client_type_of(os_name: str | None, fallback: int | None = None) -> int:
    """The clientType the Java client sends for a route (ClientType.find).

    ``fallback`` (the Redis hash field) is used only when ``osName`` is
    missing, where Java would throw; an empty osName is -1 as in Java.
    """
    if os_name is None:
        return -1 if fallback is None else fallback
    lowered = os_name.lower()
    for client_type, names in _CLIENT_TYPES:
        if any(name in lowered for name in names):
            return client_type
    return -1


_ALLOC_PREFIX: Final = "MPush开源推送，"
_ALLOC_TITLE: Final = "MPUSH推送"
_ALLOC_TICKER: Final = "你有一条新的消息,请注意查收"


def java_alloc_content(hello: str | None, n: int) -> bytes:
    """The push content the Java alloc's ``/push`` sends (PushHandler.sendPush).

    ``n`` is the number in ``"msgId":"msg_<n>"``: the Java alloc's counter
    after ``incrementAndGet``, so 1 for its first push. ``nid`` is read from
    the counter *before* the increment: ``(n - 1) % 2 + 1``, i.e. 1, 2, 1, ...
    ``hello`` None gives "...null", as Java's string concatenation does.
    """
    check_int("n", n, INT32_MIN, INT32_MAX)
    before = n - 1 if n != INT32_MIN else INT32_MAX  # the int counter wraps
    rem = abs(before) % 2
    nid = (rem if before >= 0 else -rem) + 1  # Java's % keeps the dividend's sign
    notification = (
        '{"content":' + fastjson_quote(_ALLOC_PREFIX + ("null" if hello is None else hello))
        + ',"nid":' + str(nid)
        + ',"ticker":' + fastjson_quote(_ALLOC_TICKER)
        + ',"title":' + fastjson_quote(_ALLOC_TITLE)
        + "}"
    )
    message = (
        '{"content":' + fastjson_quote(notification)
        + ',"msgId":' + fastjson_quote(f"msg_{n}")
        + ',"msgType":3}'  # MsgType.NOTIFICATION_AND_MESSAGE
    )
    return message.encode("utf-8", "replace")
