"""Gateway messages: the push request, the OK and ERROR answers, and request framing.

``GatewayPushMessage``, ``OkMessage``, ``ErrorMessage`` and the requests
``PushRequest`` builds (the Java file names), on top of :mod:`.frames` and
:mod:`.body`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import IntEnum
from typing import ClassVar, Final, Self

from mpush.config.keys import default
from mpush.outcomes import AckModel
from mpush.wire.body import BodyReader, BodyWriter
from mpush.wire.frames import (
    CMD_ERROR,
    CMD_GATEWAY_PUSH,
    CMD_OK,
    DEFAULT_MAX_PACKET_SIZE,
    FLAG_AUTO_ACK,
    FLAG_BIZ_ACK,
    FLAG_COMPRESS,
    FLAG_CRYPTO,
    FLAG_JSON_BODY,
    INT32_MAX,
    INT32_MIN,
    Packet,
    PacketTooLarge,
    ProtocolError,
    check_int,
)
from mpush.wire.javacompat import java_is_blank, tags_json

__all__ = [
    "ACK_FLAGS",
    "DEFAULT_TIMEOUT_MS",
    "ERROR_REASONS",
    "MIN_TIMEOUT_MS",
    "REQUEST_FLAGS",
    "SERVER_TIMEOUT_MARGIN_MS",
    "ErrorCode",
    "ErrorMessage",
    "GatewayPush",
    "OkMessage",
    "broadcast_packet",
    "decode_reply",
    "request_packet",
    "single_push_packet",
]

class ErrorCode(IntEnum):
    """ErrorCode.java (102..104 exist too but concern device connections only).

    Each code carries its ``reason``: ErrorCode.errorMsg, what the Java server
    puts in its ERROR body (used by the fake gateway in tests, handy in logs).
    """

    reason: str

    def __new__(cls, code: int, reason: str) -> ErrorCode:
        member = int.__new__(cls, code)
        member._value_ = code
        member.reason = reason
        return member

    OFFLINE = 1, "user offline"
    PUSH_CLIENT_FAILURE = 2, "push to client failure"
    ROUTER_CHANGE = 3, "router change"
    ACK_TIMEOUT = 4, "ack timeout"
    DISPATCH_ERROR = 100, "handle message error"
    UNSUPPORTED_CMD = 101, "unsupported command"


#: Each :class:`ErrorCode`'s reason, keyed by code (a plain int finds it too).
ERROR_REASONS: Final[dict[int, str]] = {code: code.reason for code in ErrorCode}

#: AckModel.java: the ack model travels as a packet flag. (StrEnum keys: a
#: plain "biz" finds its flag too.)
ACK_FLAGS: Final[dict[str, int]] = {
    AckModel.NONE: 0,
    AckModel.AUTO: FLAG_AUTO_ACK,
    AckModel.BIZ: FLAG_BIZ_ACK,
}
_ACK_NAMES: Final = sorted(str(model) for model in ACK_FLAGS)  # for error messages
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


class _Reply:
    """OK and ERROR bodies: the command answered and a code (bytes), then strings.

    ``STRINGS`` names the string fields, in wire order; ``CMD`` is the packet's.
    """

    CMD: ClassVar[int]
    STRINGS: ClassVar[tuple[str, ...]]
    cmd: int
    code: int

    def encode_body(self) -> bytes:
        writer = BodyWriter().write_byte(self.cmd).write_byte(self.code)
        for name in self.STRINGS:
            writer.write_string(getattr(self, name))
        return writer.getvalue()

    @classmethod
    def decode_body(cls, body: bytes) -> Self:
        if not body:
            # BaseMessage.decodeBody skips an empty body, leaving cmd 0, which
            # the Java client then ignores; do the same rather than fail.
            return cls(0, 0)  # type: ignore[call-arg]
        r = BodyReader(body)
        return cls(r.read_byte(), r.read_byte(),  # type: ignore[call-arg]
                   *(r.read_string() for _ in cls.STRINGS))

    def to_packet(self, session_id: int) -> Packet:
        return Packet(self.CMD, session_id, body=self.encode_body())


@dataclass(frozen=True)
class OkMessage(_Reply):
    """OK body: the command answered (16 for a push), a code (0), optional JSON data."""

    CMD: ClassVar[int] = CMD_OK
    STRINGS: ClassVar[tuple[str, ...]] = ("data",)
    cmd: int
    code: int = 0
    data: str | None = None


@dataclass(frozen=True)
class ErrorMessage(_Reply):
    """ERROR body: the command answered, an ErrorCode, its reason text, optional JSON data."""

    CMD: ClassVar[int] = CMD_ERROR
    STRINGS: ClassVar[tuple[str, ...]] = ("reason", "data")
    cmd: int
    code: int
    reason: str | None = None
    data: str | None = None


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


# ------------------------------------------------------------------ requests


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


def _ack_flag(ack: AckModel | str) -> int:
    try:
        return ACK_FLAGS[ack]
    except (KeyError, TypeError):
        raise ValueError(f"ack must be one of {_ACK_NAMES}, not {ack!r}") from None


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
    ack: AckModel | str = AckModel.NONE,
    max_body: int = DEFAULT_MAX_PACKET_SIZE,
) -> bytes:
    """A push to one user on one client type, as PushRequest.sendToConnServer builds it.

    ``timeout_ms`` is our own wait; the server gets ``timeout_ms - 500``.
    ``tags`` are sent as Java does, though the server ignores them for a single push.
    """
    if not isinstance(user_id, str):
        raise TypeError(f"user_id must be str, not {type(user_id).__name__}")
    if java_is_blank(user_id):
        # An empty userId reads back as null, i.e. as a broadcast.
        raise ValueError("user_id is blank: that would be a broadcast")
    check_int("timeout_ms", timeout_ms, MIN_TIMEOUT_MS, INT32_MAX + SERVER_TIMEOUT_MARGIN_MS)
    push = GatewayPush(
        user_id=user_id,
        client_type=check_int("client_type", client_type, INT32_MIN, INT32_MAX),
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
    ack: AckModel | str = AckModel.NONE,
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
        if java_is_blank(condition):
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
