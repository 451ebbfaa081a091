"""Body fields, written and read the way ``ByteBufMessage.java`` does.

byte (unsigned here, 0..255); int32 (signed); bytes = int16 length
(0 = null), or for 32767 bytes and more the int16 32767 followed by an int32
of ``length - 32767``; string = its UTF-8 as bytes, so null and "" are the
same on the wire and both read back as null.
"""

from __future__ import annotations

import struct
from typing import Final

from mpush.wire.frames import INT32, INT32_MAX, INT32_MIN, ProtocolError, check_int

__all__ = ["BodyReader", "BodyWriter"]

_INT16 = struct.Struct(">h")
_SHORT_MAX: Final = 0x7FFF  # Short.MAX_VALUE: the "long length follows" marker


class BodyWriter:
    """Writes body fields the way ByteBufMessage.encodeXxx does."""

    def __init__(self) -> None:
        self._out = bytearray()

    def __len__(self) -> int:
        return len(self._out)

    def getvalue(self) -> bytes:
        return bytes(self._out)

    def write_byte(self, value: int) -> BodyWriter:
        self._out.append(check_int("byte field", value, 0, 0xFF))
        return self

    def write_int32(self, value: int) -> BodyWriter:
        self._out += INT32.pack(check_int("int field", value, INT32_MIN, INT32_MAX))
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
            extra = check_int("bytes length", len(value) - _SHORT_MAX, 0, INT32_MAX)
            self._out += INT32.pack(extra)
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
        return INT32.unpack(self._take(4, "int"))[0]

    def read_bytes(self) -> bytes | None:
        start = self._pos
        length = _INT16.unpack(self._take(2, "length"))[0]
        if length == 0:
            return None
        if length == _SHORT_MAX:
            extra = INT32.unpack(self._take(4, "long length"))[0]
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
