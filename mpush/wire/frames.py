"""Gateway frames: the 13-byte header, packets, heartbeats and the stream decoder.

Frame (``Packet.java``): a 13-byte big-endian header, then the body::

    length int32 | cmd byte | cc int16 | flags byte | sessionId int32 | lrc byte | body

``cc`` and ``lrc`` are never computed nor checked by Java (always 0). A lone
``0xDF`` byte where a header would start is a heartbeat (``PacketDecoder``).

One-byte and two-byte *header* fields are unsigned (0..255; Java's signed
byte -1 is 255 here); int32 fields, sessionId included, are signed like
Java's ``int``.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Final

from mpush.config.keys import default
from mpush.config.units import INT32_MAX

__all__ = [
    "CMD_ERROR",
    "CMD_GATEWAY_KICK",
    "CMD_GATEWAY_PUSH",
    "CMD_HEARTBEAT",
    "CMD_OK",
    "DEFAULT_MAX_PACKET_SIZE",
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
    "UDP_MAX_PAYLOAD",
    "Heartbeat",
    "Packet",
    "PacketDecoder",
    "PacketTooLarge",
    "ProtocolError",
    "decode_datagram",
]

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

HEARTBEAT_BYTE: Final = 0xDF  # Packet.HB_PACKET_BYTE = -33
HEADER_LEN: Final = 13
#: The most one UDP datagram can carry over IPv4 (65535 - 20 IP - 8 UDP bytes).
UDP_MAX_PAYLOAD: Final = 65507
#: ``mp.core.max-packet-size`` default (10k): the largest body either side's
#: decoder accepts (``PacketDecoder``: ``bodyLength > max`` is rejected).
DEFAULT_MAX_PACKET_SIZE: Final[int] = default("mp.core.max-packet-size")

#: Java's ``int`` range: sessionIds, body int fields (INT32_MAX: Java's
#: Integer.MAX_VALUE, from mpush.config.units).
INT32_MIN: Final = -INT32_MAX - 1

_HEADER = struct.Struct(">iBHBiB")
#: One big-endian Java ``int`` (the header's length prefix; body int fields).
INT32: Final = struct.Struct(">i")


class ProtocolError(Exception):
    """Bytes that break the protocol (from the peer, or that the peer would refuse).

    Close the connection on it (``ValueError``/``TypeError`` are bad
    arguments from our own caller instead). From :meth:`PacketDecoder.feed`,
    ``decoded`` holds the packets complete *before* the bad bytes in that
    same call: the peer did send them, so they count (as Netty's decoder
    passes on what it decoded before failing), whichever way the stream was
    split into reads.
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


def check_int(name: str, value: object, low: int, high: int) -> int:
    """``value`` if it is an int in ``[low, high]``; TypeError/ValueError otherwise.

    For the wire modules, which import it by name; not in ``__all__``, so
    ``mpush.wire`` does not re-export it.
    """
    # bool is an int subclass: refuse it, it is always a caller bug here.
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{name} must be an int, not {type(value).__name__}")
    if not low <= value <= high:
        raise ValueError(f"{name} {value} is out of range [{low}, {high}]")
    return value


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
        check_int("cmd", self.cmd, 0, 0xFF)
        check_int("session_id", self.session_id, INT32_MIN, INT32_MAX)
        check_int("flags", self.flags, 0, 0xFF)
        check_int("cc", self.cc, 0, 0xFFFF)
        check_int("lrc", self.lrc, 0, 0xFF)
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
        self.max_body = check_int("max_body", max_body, 0, INT32_MAX)
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
                    self._length = self._check_length(INT32.unpack_from(buf)[0])
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


def decode_datagram(data: bytes, max_body: int) -> Packet | Heartbeat:
    """The one packet a UDP datagram carries (mpush's UDP transport: one packet each).

    ProtocolError unless ``data`` is exactly a heartbeat byte or one header
    and the body it declares (at most ``max_body`` bytes): a datagram is
    never split nor joined, so any other length is garbage.
    """
    if data == bytes((HEARTBEAT_BYTE,)):
        return HEARTBEAT
    if len(data) < HEADER_LEN:
        raise ProtocolError(f"datagram of {len(data)} bytes is shorter than a packet header")
    length, cmd, cc, flags, session_id, lrc = _HEADER.unpack_from(data)
    if length < 0 or length > max_body:
        raise ProtocolError(f"packet body length {length} outside 0..{max_body}")
    if HEADER_LEN + length != len(data):
        raise ProtocolError(f"datagram of {len(data)} bytes declares a body of {length} bytes")
    return Packet(cmd, session_id, flags, bytes(data[HEADER_LEN:]), cc, lrc)
