"""The mpush gateway wire protocol: a pure codec (no I/O, no Twisted).

What the Java peers (``mpusher/mpush`` 0.8.x) put on a gateway connection,
read from their sources; file names below are the Java ones.

Frame (``Packet.java``): a 13-byte big-endian header, then the body::

    length int32 | cmd byte | cc int16 | flags byte | sessionId int32 | lrc byte | body

``cc`` and ``lrc`` are never computed nor checked by Java (always 0). A lone
``0xDF`` byte where a header would start is a heartbeat (``PacketDecoder``).

Body fields (``ByteBufMessage.java``): byte; int32; bytes = int16 length
(0 = null), or for 32767 bytes and more the int16 32767 followed by an int32
of ``length - 32767``; string = its UTF-8 as bytes, so null and "" are the
same on the wire and both read back as null.

Conventions here: one-byte and two-byte *header* fields and body "byte"
fields are unsigned (0..255; Java's signed byte -1 is 255 here); int32
fields, sessionId included, are signed like Java's ``int``.

Errors: :class:`ProtocolError` is what the peer sent (or would refuse) —
close the connection on it; ``ValueError``/``TypeError`` are bad arguments
from our own caller.
"""

from __future__ import annotations

import struct
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Final, Literal

from mpush.config.keys import default
from mpush.config.units import INT32_MAX

__all__ = [
    "ACK_FLAGS",
    "CMD_ERROR",
    "CMD_GATEWAY_KICK",
    "CMD_GATEWAY_PUSH",
    "CMD_HEARTBEAT",
    "CMD_OK",
    "DEFAULT_MAX_PACKET_SIZE",
    "DEFAULT_TIMEOUT_MS",
    "ERROR_REASONS",
    "ERR_ACK_TIMEOUT",
    "ERR_DISPATCH_ERROR",
    "ERR_OFFLINE",
    "ERR_PUSH_CLIENT_FAILURE",
    "ERR_ROUTER_CHANGE",
    "ERR_UNSUPPORTED_CMD",
    "FLAG_AUTO_ACK",
    "FLAG_BIZ_ACK",
    "FLAG_COMPRESS",
    "FLAG_CRYPTO",
    "FLAG_JSON_BODY",
    "HEADER_LEN",
    "HEARTBEAT",
    "HEARTBEAT_BYTE",
    "INT32_MAX",
    "INT32_MIN",
    "MIN_TIMEOUT_MS",
    "REQUEST_FLAGS",
    "SERVER_TIMEOUT_MARGIN_MS",
    "AckModel",
    "BodyReader",
    "BodyWriter",
    "ErrorMessage",
    "GatewayPush",
    "Heartbeat",
    "OkMessage",
    "Packet",
    "PacketDecoder",
    "PacketTooLarge",
    "ProtocolError",
    "broadcast_packet",
    "client_type_of",
    "decode_reply",
    "fastjson_quote",
    "java_alloc_content",
    "request_packet",
    "single_push_packet",
    "tags_json",
]

# ------------------------------------------------------------------ constants

# Command.java (the enum's values; HEARTBEAT never appears in a header).
CMD_HEARTBEAT: Final = 1
CMD_ERROR: Final = 10
CMD_OK: Final = 11
CMD_GATEWAY_KICK: Final = 14
CMD_GATEWAY_PUSH: Final = 16

# Packet.java flags.
FLAG_CRYPTO: Final = 1
FLAG_COMPRESS: Final = 2
FLAG_BIZ_ACK: Final = 4
FLAG_AUTO_ACK: Final = 8
FLAG_JSON_BODY: Final = 16

# ErrorCode.java (102..104 exist too but concern device connections only).
ERR_OFFLINE: Final = 1
ERR_PUSH_CLIENT_FAILURE: Final = 2
ERR_ROUTER_CHANGE: Final = 3
ERR_ACK_TIMEOUT: Final = 4
ERR_DISPATCH_ERROR: Final = 100
ERR_UNSUPPORTED_CMD: Final = 101

#: ErrorCode.errorMsg: the ``reason`` the Java server puts in its ERROR body
#: (used by the fake gateway in tests, and handy in logs).
ERROR_REASONS: Final = {
    ERR_OFFLINE: "user offline",
    ERR_PUSH_CLIENT_FAILURE: "push to client failure",
    ERR_ROUTER_CHANGE: "router change",
    ERR_ACK_TIMEOUT: "ack timeout",
    ERR_DISPATCH_ERROR: "handle message error",
    ERR_UNSUPPORTED_CMD: "unsupported command",
}

HEARTBEAT_BYTE: Final = 0xDF  # Packet.HB_PACKET_BYTE = -33
HEADER_LEN: Final = 13
#: ``mp.core.max-packet-size`` default (10k): the largest body either side's
#: decoder accepts (``PacketDecoder``: ``bodyLength > max`` is rejected).
DEFAULT_MAX_PACKET_SIZE: Final[int] = default("mp.core.max-packet-size")

AckModel = Literal["none", "auto", "biz"]
#: AckModel.java: the ack model travels as a packet flag.
ACK_FLAGS: Final[dict[str, int]] = {"none": 0, "auto": FLAG_AUTO_ACK, "biz": FLAG_BIZ_ACK}
#: The only flags a request may carry: the server copies a single push's
#: flags onto the packet it sends to the device (SingleUserPushTask), so
#: crypto/compress would corrupt it, and json-body makes the server fail to
#: decode the request and close the connection.
REQUEST_FLAGS: Final = frozenset(ACK_FLAGS.values())

#: PushContext's default request timeout (ms): 3 s, mp.alloc.push-timeout's default.
DEFAULT_TIMEOUT_MS: Final[int] = round(default("mp.alloc.push-timeout") * 1000)
#: The Java client puts ``timeout - 500`` on the wire (PushRequest), so that
#: the server gives up before the client does.
SERVER_TIMEOUT_MARGIN_MS: Final = 500
#: Our floor (Java has none): below it the server's own budget (timeout - 500)
#: is so short that it drops its OK as "timed out" and the client only ever
#: sees its own timeout.
MIN_TIMEOUT_MS: Final = 1000

INT32_MIN: Final = -INT32_MAX - 1  # INT32_MAX: Java's Integer.MAX_VALUE, from mpush.config.units
_SHORT_MAX: Final = 0x7FFF  # Short.MAX_VALUE: the "long length follows" marker

_HEADER = struct.Struct(">iBHBiB")
_INT32 = struct.Struct(">i")
_INT16 = struct.Struct(">h")


class ProtocolError(Exception):
    """Bytes that break the protocol (from the peer, or that the peer would refuse).

    From :meth:`PacketDecoder.feed`, ``decoded`` holds the packets complete
    *before* the bad bytes in that same call: the peer did send them, so
    they count (as Netty's decoder passes on what it decoded before
    failing), whichever way the stream was split into reads.
    """

    decoded: tuple[Packet | Heartbeat, ...] = ()


class PacketTooLarge(ProtocolError):
    """A request body over the gateway's ``max-packet-size``.

    Raised before sending: the Java decoder would reject it and close the
    connection, taking every other request pending on it down too.
    """

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(
            f"push request body is {size} bytes, over the gateway limit of {limit} bytes"
            " (mp.core.max-packet-size)"
        )
        self.size = size
        self.limit = limit


def _check_int(name: str, value: object, low: int, high: int) -> int:
    # bool is an int subclass: refuse it, it is always a caller bug here.
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{name} must be an int, not {type(value).__name__}")
    if not low <= value <= high:
        raise ValueError(f"{name} {value} is out of range [{low}, {high}]")
    return value


# ------------------------------------------------------------------- framing


@dataclass(frozen=True)
class Heartbeat:
    """The one-byte heartbeat packet."""

    def encode(self) -> bytes:
        return bytes([HEARTBEAT_BYTE])


HEARTBEAT: Final = Heartbeat()


@dataclass(frozen=True)
class Packet:
    """One framed packet. ``session_id`` is signed int32; the rest unsigned."""

    cmd: int
    session_id: int
    flags: int = 0
    body: bytes = field(default=b"")
    cc: int = 0
    lrc: int = 0

    def __post_init__(self) -> None:
        _check_int("cmd", self.cmd, 0, 0xFF)
        _check_int("session_id", self.session_id, INT32_MIN, INT32_MAX)
        _check_int("flags", self.flags, 0, 0xFF)
        _check_int("cc", self.cc, 0, 0xFFFF)
        _check_int("lrc", self.lrc, 0, 0xFF)
        if not isinstance(self.body, bytes):
            if not isinstance(self.body, bytearray | memoryview):
                raise TypeError(f"body must be bytes, not {type(self.body).__name__}")
            object.__setattr__(self, "body", bytes(self.body))

    def encode(self) -> bytes:
        header = _HEADER.pack(
            len(self.body), self.cmd, self.cc, self.flags, self.session_id, self.lrc
        )
        return header + self.body

    def __repr__(self) -> str:
        # Bodies run to 10 KB: log their size, not their bytes.
        return (
            f"Packet(cmd={self.cmd}, session_id={self.session_id}, flags={self.flags},"
            f" body=<{len(self.body)} bytes>, cc={self.cc}, lrc={self.lrc})"
        )


class PacketDecoder:
    """Incremental frame decoder for one connection's byte stream.

    A declared body length over ``max_body`` (or negative) raises at once,
    as soon as its four bytes are in, so the buffer never holds more than
    ``HEADER_LEN + max_body`` bytes. After an error the decoder stays failed:
    the stream is out of sync and the connection must be closed.
    """

    def __init__(self, max_body: int = DEFAULT_MAX_PACKET_SIZE) -> None:
        self.max_body = _check_int("max_body", max_body, 0, INT32_MAX)
        self._buf = bytearray()
        self._length: int | None = None  # body length of the frame in _buf, once known
        self._error: ProtocolError | None = None

    @property
    def buffered(self) -> int:
        """Bytes held for an incomplete frame."""
        return len(self._buf)

    def feed(self, data: bytes) -> list[Packet | Heartbeat]:
        if self._error is not None:
            raise ProtocolError(f"decoder already failed: {self._error}")
        out: list[Packet | Heartbeat] = []
        try:
            self._feed(memoryview(data), out)
        except ProtocolError as e:
            e.decoded = tuple(out)
            self._error = e
            self._buf.clear()
            raise
        return out

    def _feed(self, data: memoryview, out: list[Packet | Heartbeat]) -> None:
        buf = self._buf
        pos, end = 0, len(data)
        while pos < end:
            if not buf and data[pos] == HEARTBEAT_BYTE:
                # Only where a header would start; a valid length never begins
                # with 0xDF (it would be negative).
                out.append(HEARTBEAT)
                pos += 1
                continue
            if len(buf) < HEADER_LEN:
                take = min(HEADER_LEN - len(buf), end - pos)
                buf += data[pos : pos + take]
                pos += take
                if self._length is None and len(buf) >= 4:
                    self._length = self._check_length(_INT32.unpack_from(buf)[0])
                if len(buf) < HEADER_LEN:
                    break
            assert self._length is not None
            frame_len = HEADER_LEN + self._length
            take = min(frame_len - len(buf), end - pos)
            buf += data[pos : pos + take]
            pos += take
            if len(buf) < frame_len:
                break
            _, cmd, cc, flags, session_id, lrc = _HEADER.unpack_from(buf)
            out.append(Packet(cmd, session_id, flags, bytes(buf[HEADER_LEN:]), cc, lrc))
            buf.clear()
            self._length = None

    def _check_length(self, length: int) -> int:
        if length < 0:
            # Java would read it as an empty body; no peer sends one, so it
            # can only mean a desynchronised stream.
            raise ProtocolError(f"negative packet body length {length}")
        if length > self.max_body:
            raise ProtocolError(
                f"packet body length {length} exceeds the limit of {self.max_body} bytes"
            )
        return length


# ------------------------------------------------------------- field codecs


class BodyWriter:
    """Writes body fields the way ByteBufMessage.encodeXxx does."""

    def __init__(self) -> None:
        self._out = bytearray()

    def __len__(self) -> int:
        return len(self._out)

    def getvalue(self) -> bytes:
        return bytes(self._out)

    def write_byte(self, value: int) -> BodyWriter:
        self._out.append(_check_int("byte field", value, 0, 0xFF))
        return self

    def write_int32(self, value: int) -> BodyWriter:
        self._out += _INT32.pack(_check_int("int field", value, INT32_MIN, INT32_MAX))
        return self

    def write_bytes(self, value: bytes | None) -> BodyWriter:
        if value is None or len(value) == 0:
            self._out += b"\x00\x00"
        elif len(value) < _SHORT_MAX:
            self._out += _INT16.pack(len(value))
            self._out += value
        else:
            # Exactly 32767 also takes the long form (Java: `length < Short.MAX_VALUE`).
            self._out += _INT16.pack(_SHORT_MAX)
            extra = _check_int("bytes length", len(value) - _SHORT_MAX, 0, INT32_MAX)
            self._out += _INT32.pack(extra)
            self._out += value
        return self

    def write_string(self, value: str | None) -> BodyWriter:
        if value is None:
            return self.write_bytes(None)
        if not isinstance(value, str):
            raise TypeError(f"string field must be str, not {type(value).__name__}")
        # "replace" turns a lone surrogate into "?", as Java's getBytes(UTF_8) does.
        return self.write_bytes(value.encode("utf-8", "replace"))


class BodyReader:
    """Reads body fields the way ByteBufMessage.decodeXxx does; bytes left over are ignored."""

    def __init__(self, data: bytes) -> None:
        self._data = bytes(data)
        self._pos = 0

    @property
    def remaining(self) -> int:
        return len(self._data) - self._pos

    def _take(self, n: int, what: str) -> bytes:
        if n > self.remaining:
            raise ProtocolError(
                f"truncated body: {what} at offset {self._pos} needs {n} bytes,"
                f" {self.remaining} left"
            )
        chunk = self._data[self._pos : self._pos + n]
        self._pos += n
        return chunk

    def read_byte(self) -> int:
        return self._take(1, "byte")[0]

    def read_int32(self) -> int:
        return _INT32.unpack(self._take(4, "int"))[0]

    def read_bytes(self) -> bytes | None:
        start = self._pos
        length = _INT16.unpack(self._take(2, "length"))[0]
        if length == 0:
            return None
        if length == _SHORT_MAX:
            extra = _INT32.unpack(self._take(4, "long length"))[0]
            if extra < 0:
                raise ProtocolError(f"negative long field length at offset {start}")
            length += extra
        elif length < 0:
            # No Java writer produces one (Java's reader would throw too).
            raise ProtocolError(f"negative field length {length} at offset {start}")
        return self._take(length, "field")

    def read_string(self) -> str | None:
        raw = self.read_bytes()
        # "replace" as Java's new String(bytes, UTF_8) does: a stray byte in
        # a server's JSON must not turn a delivered push into an error.
        return None if raw is None else raw.decode("utf-8", "replace")


# ------------------------------------------------------------------ messages


@dataclass(frozen=True)
class GatewayPush:
    """GatewayPushMessage body. ``None`` and ``""`` strings are the same on the wire.

    ``content`` b"" is null on the wire. ``tags`` is the JSON text of the tag set.
    """

    user_id: str | None
    client_type: int
    timeout: int  # ms, what the server gets (the Java client sends its timeout - 500)
    content: bytes
    task_id: str | None = None
    tags: str | None = None
    condition: str | None = None

    @property
    def is_broadcast(self) -> bool:
        # The server's test (GatewayPushMessage.isBroadcast): userId == null,
        # which an empty userId also reads back as.
        return not self.user_id

    def encode_body(self) -> bytes:
        return (
            BodyWriter()
            .write_string(self.user_id)
            .write_int32(self.client_type)
            .write_int32(self.timeout)
            .write_bytes(self.content)
            .write_string(self.task_id)
            .write_string(self.tags)
            .write_string(self.condition)
            .getvalue()
        )

    @classmethod
    def decode_body(cls, body: bytes) -> GatewayPush:
        r = BodyReader(body)
        return cls(
            user_id=r.read_string(),
            client_type=r.read_int32(),
            timeout=r.read_int32(),
            content=r.read_bytes() or b"",
            task_id=r.read_string(),
            tags=r.read_string(),
            condition=r.read_string(),
        )


@dataclass(frozen=True)
class OkMessage:
    """OK body: the command answered (16 for a push), a code (0), optional JSON data."""

    cmd: int
    code: int = 0
    data: str | None = None

    def encode_body(self) -> bytes:
        return (
            BodyWriter()
            .write_byte(self.cmd)
            .write_byte(self.code)
            .write_string(self.data)
            .getvalue()
        )

    @classmethod
    def decode_body(cls, body: bytes) -> OkMessage:
        if not body:
            # BaseMessage.decodeBody skips an empty body, leaving cmd 0, which
            # the Java client then ignores; do the same rather than fail.
            return cls(0)
        r = BodyReader(body)
        return cls(r.read_byte(), r.read_byte(), r.read_string())

    def to_packet(self, session_id: int) -> Packet:
        return Packet(CMD_OK, session_id, body=self.encode_body())


@dataclass(frozen=True)
class ErrorMessage:
    """ERROR body: the command answered, an ErrorCode, its reason text, optional JSON data."""

    cmd: int
    code: int
    reason: str | None = None
    data: str | None = None

    def encode_body(self) -> bytes:
        return (
            BodyWriter()
            .write_byte(self.cmd)
            .write_byte(self.code)
            .write_string(self.reason)
            .write_string(self.data)
            .getvalue()
        )

    @classmethod
    def decode_body(cls, body: bytes) -> ErrorMessage:
        if not body:
            return cls(0, 0)  # as OkMessage.decode_body
        r = BodyReader(body)
        return cls(r.read_byte(), r.read_byte(), r.read_string(), r.read_string())

    def to_packet(self, session_id: int) -> Packet:
        return Packet(CMD_ERROR, session_id, body=self.encode_body())


def decode_reply(packet: Packet) -> OkMessage | ErrorMessage:
    """Decode what a gateway server sends back: OK or ERROR, plain binary bodies only."""
    if packet.flags & (FLAG_CRYPTO | FLAG_COMPRESS | FLAG_JSON_BODY):
        raise ProtocolError(
            f"gateway reply cmd {packet.cmd} has unsupported flags {packet.flags:#04x}"
        )
    if packet.cmd == CMD_OK:
        return OkMessage.decode_body(packet.body)
    if packet.cmd == CMD_ERROR:
        return ErrorMessage.decode_body(packet.body)
    raise ProtocolError(f"unexpected command {packet.cmd} on a gateway connection")


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


# ------------------------------------------------------------------ requests


def _java_is_blank(text: str) -> bool:
    # mpush Strings.isBlank: every char passes Character.isWhitespace, which
    # (unlike str.isspace) excludes the no-break spaces.
    def ws(ch: str) -> bool:
        if ch in "\t\n\x0b\x0c\r\x1c\x1d\x1e\x1f":
            return True
        return unicodedata.category(ch) in ("Zs", "Zl", "Zp") and ch not in (
            "\u00a0", "\u2007", "\u202f"
        )

    # Java's whitespace is a subset of Python's: a string with any
    # non-isspace() character is not blank, decided without the per-char scan.
    if text and not text.isspace():
        return False
    return all(ws(ch) for ch in text)


def request_packet(
    session_id: int, push: GatewayPush, flags: int = 0,
    max_body: int = DEFAULT_MAX_PACKET_SIZE,
) -> bytes:
    """Frame a GATEWAY_PUSH request, refusing flags the server mishandles and oversize bodies."""
    if flags not in REQUEST_FLAGS:
        raise ValueError(
            f"request flags {flags!r} not allowed: only 0, {FLAG_BIZ_ACK} (biz ack)"
            f" or {FLAG_AUTO_ACK} (auto ack)"
        )
    body = push.encode_body()
    if len(body) > max_body:
        raise PacketTooLarge(len(body), max_body)
    return Packet(CMD_GATEWAY_PUSH, session_id, flags, body).encode()


def _ack_flag(ack: str) -> int:
    try:
        return ACK_FLAGS[ack]
    except (KeyError, TypeError):
        raise ValueError(f"ack must be one of {sorted(ACK_FLAGS)}, not {ack!r}") from None


def _content(content: bytes) -> bytes:
    if not isinstance(content, bytes | bytearray | memoryview):
        raise TypeError(f"content must be bytes, not {type(content).__name__}")
    if len(content) == 0:
        # It would travel as null: the device gets an empty push.
        raise ValueError("push content is empty")
    return bytes(content)


def _tags(tags: Iterable[str] | None) -> str | None:
    if tags is None:
        return None
    text = tags_json(tags)
    if text == "[]":
        # The server would build a tag filter that matches no one (TagsCondition).
        raise ValueError("tags is empty; pass None for no tag filter")
    return text


def single_push_packet(
    session_id: int,
    user_id: str,
    client_type: int,
    timeout_ms: int,
    content: bytes,
    tags: Iterable[str] | None = None,
    ack: AckModel = "none",
    max_body: int = DEFAULT_MAX_PACKET_SIZE,
) -> bytes:
    """A push to one user on one client type, as PushRequest.sendToConnServer builds it.

    ``timeout_ms`` is our own wait; the server gets ``timeout_ms - 500``.
    ``tags`` are sent as Java does, though the server ignores them for a single push.
    """
    if not isinstance(user_id, str):
        raise TypeError(f"user_id must be str, not {type(user_id).__name__}")
    if _java_is_blank(user_id):
        # An empty userId reads back as null, i.e. as a broadcast.
        raise ValueError("user_id is blank: that would be a broadcast")
    _check_int("timeout_ms", timeout_ms, MIN_TIMEOUT_MS, INT32_MAX + SERVER_TIMEOUT_MARGIN_MS)
    push = GatewayPush(
        user_id=user_id,
        client_type=_check_int("client_type", client_type, INT32_MIN, INT32_MAX),
        timeout=timeout_ms - SERVER_TIMEOUT_MARGIN_MS,
        content=_content(content),
        tags=_tags(tags),
    )
    return request_packet(session_id, push, _ack_flag(ack), max_body)


def broadcast_packet(
    session_id: int,
    content: bytes,
    tags: Iterable[str] | None = None,
    condition: str | None = None,
    task_id: str | None = None,
    ack: AckModel = "none",
    max_body: int = DEFAULT_MAX_PACKET_SIZE,
) -> bytes:
    """A broadcast to the users of one gateway server, as PushRequest.broadcast builds it.

    The server filters by ``condition`` (a JS expression) if given, else by
    ``tags``. A blank condition counts as none (the Java alloc does the same;
    the server would evaluate it to "match no one").
    """
    if condition is not None:
        if not isinstance(condition, str):
            raise TypeError(f"condition must be str, not {type(condition).__name__}")
        if _java_is_blank(condition):
            condition = None
    push = GatewayPush(
        user_id=None,
        client_type=0,
        timeout=0,
        content=_content(content),
        task_id=task_id or None,
        tags=_tags(tags),
        condition=condition,
    )
    return request_packet(session_id, push, _ack_flag(ack), max_body)


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
    _check_int("n", n, INT32_MIN, INT32_MAX)
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
