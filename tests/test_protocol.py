"""Unit tests of mpush.wire: the gateway wire codec.

Byte vectors are written out by hand from the Java sources (Packet,
ByteBufMessage, GatewayPushMessage, OkMessage, ErrorMessage), not produced
by the code under test.
"""

from __future__ import annotations

import itertools
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mpush.wire import (
    CMD_ERROR,
    CMD_GATEWAY_PUSH,
    CMD_OK,
    DEFAULT_MAX_PACKET_SIZE,
    FLAG_AUTO_ACK,
    FLAG_BIZ_ACK,
    FLAG_COMPRESS,
    HEADER_LEN,
    HEARTBEAT,
    BodyReader,
    BodyWriter,
    ErrorCode,
    ErrorMessage,
    GatewayPush,
    Heartbeat,
    OkMessage,
    Packet,
    PacketDecoder,
    PacketTooLarge,
    ProtocolError,
    broadcast_packet,
    client_type_of,
    decode_reply,
    fastjson_quote,
    java_alloc_content,
    request_packet,
    single_push_packet,
    tags_json,
)

INT32 = st.integers(-(2**31), 2**31 - 1)
BYTE = st.integers(0, 255)
OPT_TEXT = st.none() | st.text(min_size=1)  # "" reads back as None: tested apart


def hexb(text: str) -> bytes:
    """Hex digits, whitespace ignored, '#' starts a comment to the end of the line."""
    return bytes.fromhex("".join(line.split("#", 1)[0] for line in text.splitlines()))


SINGLE = hexb("""
    00 00 00 16   # body length 22
    10            # cmd 16 GATEWAY_PUSH
    00 00         # cc
    00            # flags: no ack
    00 00 00 07   # sessionId 7
    00            # lrc
    00 02 75 31   # userId "u1"
    00 00 00 01   # clientType 1
    00 00 09 c4   # timeout 2500 = 3000 - 500
    00 02 68 69   # content "hi"
    00 00         # taskId null
    00 00         # tags null
    00 00         # condition null
""")

BROADCAST = hexb("""
    00 00 00 31   # body length 49
    10            # cmd 16 GATEWAY_PUSH
    00 00         # cc
    00            # flags: no ack
    00 00 00 09   # sessionId 9
    00            # lrc
    00 00         # userId null: broadcast
    00 00 00 00   # clientType 0
    00 00 00 00   # timeout 0
    00 02 68 69   # content "hi"
    00 00         # taskId null
    00 09 5b 22 61 22 2c 22 62 22 5d          # tags '["a","b"]'
    00 14 74 61 67 73 2e 69 6e 64 65 78 4f 66 # condition (20 bytes) "tags.indexOf
          28 27 61 27 29 3e 3d 30             #   ('a')>=0"
""")

OK_PACKET = hexb("""
    00 00 00 13   # body length 19
    0b            # cmd 11 OK
    00 00 00      # cc, flags
    00 00 00 07   # sessionId 7
    00            # lrc
    10            # cmd answered: 16
    00            # code 0
    00 0f 7b 22 75 73 65 72 49 64 22 3a 22 75 31 22 7d   # data '{"userId":"u1"}'
""")

ERROR_PACKET = hexb("""
    00 00 00 12   # body length 18
    0a            # cmd 10 ERROR
    00 00 00      # cc, flags
    00 00 00 07   # sessionId 7
    00            # lrc
    10            # cmd answered: 16
    01            # code 1 OFFLINE
    00 0c 75 73 65 72 20 6f 66 66 6c 69 6e 65   # reason "user offline"
    00 00         # data null
""")


# ------------------------------------------------------------ field codecs


@given(BYTE)
def test_byte_round_trip(value: int) -> None:
    data = BodyWriter().write_byte(value).getvalue()
    assert data == bytes([value])
    assert BodyReader(data).read_byte() == value


@given(INT32)
def test_int32_round_trip(value: int) -> None:
    data = BodyWriter().write_int32(value).getvalue()
    assert data == value.to_bytes(4, "big", signed=True)
    assert BodyReader(data).read_int32() == value


@pytest.mark.parametrize(
    ("length", "prefix"),
    [
        (0, "0000"),  # null/empty
        (1, "0001"),
        (32766, "7ffe"),  # the longest short form
        (32767, "7fff 00000000"),  # Java: `length < Short.MAX_VALUE` else long form
        (32768, "7fff 00000001"),
        (70000, "7fff 00009171"),  # 70000 - 32767 = 37233 = 0x9171
    ],
)
def test_bytes_length_forms(length: int, prefix: str) -> None:
    value = bytes(i % 251 for i in range(length))
    data = BodyWriter().write_bytes(value).getvalue()
    assert data == hexb(prefix) + value
    reader = BodyReader(data + b"\xaa")
    assert reader.read_bytes() == (value or None)
    assert reader.remaining == 1  # consumed exactly the field


def _sized(lengths: list[int]) -> st.SearchStrategy[bytes]:
    # Long values from a short random pattern: hypothesis cannot draw 70 KB per example.
    return st.builds(
        lambda n, pattern: (pattern * (n // len(pattern) + 1))[:n],
        st.sampled_from(lengths),
        st.binary(min_size=1, max_size=16),
    )


LONG_BYTES = _sized([1, 2, 32765, 32766, 32767, 32768, 32769, 70000])


@given(LONG_BYTES | st.binary(max_size=300))
def test_bytes_round_trip(value: bytes) -> None:
    data = BodyWriter().write_bytes(value).getvalue()
    assert BodyReader(data).read_bytes() == (value or None)


def test_bytes_none_is_length_zero() -> None:
    assert BodyWriter().write_bytes(None).getvalue() == b"\x00\x00"


@given(st.none() | st.text())
def test_string_round_trip(value: str | None) -> None:
    data = BodyWriter().write_string(value).getvalue()
    # None and "" are both length 0 and read back as None (ByteBufMessage.decodeBytes).
    assert BodyReader(data).read_string() == (value or None)


def test_string_is_utf8_with_java_replacements() -> None:
    assert BodyWriter().write_string("é中").getvalue() == hexb("0005 c3a9 e4b8ad")
    # A lone surrogate becomes "?", as Java's getBytes(UTF_8) does.
    assert BodyWriter().write_string("a\ud800").getvalue() == hexb("0002 613f")
    # Bad UTF-8 reads as U+FFFD, as Java's new String(bytes, UTF_8) does.
    assert BodyReader(hexb("0002 61ff")).read_string() == "a\ufffd"


FIELD = st.one_of(
    st.tuples(st.just("byte"), BYTE),
    st.tuples(st.just("int"), INT32),
    st.tuples(st.just("bytes"), st.none() | LONG_BYTES | st.binary(min_size=1, max_size=50)),
    st.tuples(st.just("string"), OPT_TEXT),
)


@given(st.lists(FIELD, max_size=12))
def test_field_sequences_round_trip(fields: list[tuple[str, object]]) -> None:
    writer = BodyWriter()
    for kind, value in fields:
        getattr(writer, f"write_{ {'int': 'int32'}.get(kind, kind) }")(value)
    reader = BodyReader(writer.getvalue())
    for kind, value in fields:
        assert getattr(reader, f"read_{ {'int': 'int32'}.get(kind, kind) }")() == value
    assert reader.remaining == 0


@pytest.mark.parametrize(
    ("method", "value", "error"),
    [
        ("write_byte", 256, ValueError),
        ("write_byte", -1, ValueError),
        ("write_int32", 2**31, ValueError),
        ("write_int32", True, TypeError),
        ("write_string", b"bytes", TypeError),
    ],
)
def test_writer_refuses_out_of_range(method: str, value: object, error: type) -> None:
    with pytest.raises(error):
        getattr(BodyWriter(), method)(value)


@pytest.mark.parametrize(
    ("data", "read", "message"),
    [
        (hexb("00"), "read_int32", "needs 4 bytes"),
        (hexb("0005 6869"), "read_bytes", "needs 5 bytes"),
        (hexb("ffff"), "read_bytes", "negative field length -1"),
        (hexb("7fff ffffffff"), "read_bytes", "negative long field length"),
        (hexb("7fff 0000"), "read_bytes", "long length"),
        (b"", "read_byte", "needs 1 bytes"),
    ],
)
def test_reader_rejects_malformed(data: bytes, read: str, message: str) -> None:
    with pytest.raises(ProtocolError, match=message):
        getattr(BodyReader(data), read)()


# ----------------------------------------------------------------- packets


PACKETS = st.builds(
    Packet,
    cmd=BYTE,
    session_id=INT32,
    flags=BYTE,
    body=st.binary(max_size=300),
    cc=st.integers(0, 0xFFFF),
    lrc=BYTE,
)


@given(PACKETS)
def test_packet_round_trip(packet: Packet) -> None:
    data = packet.encode()
    assert len(data) == HEADER_LEN + len(packet.body)
    assert PacketDecoder().feed(data) == [packet]


def test_packet_validates_fields_and_keeps_body_out_of_repr() -> None:
    with pytest.raises(ValueError):
        Packet(256, 0)
    with pytest.raises(ValueError):
        Packet(CMD_OK, 2**31)
    with pytest.raises(TypeError):
        Packet(CMD_OK, 0, body="text")  # type: ignore[arg-type]
    assert Packet(CMD_OK, 0, body=bytearray(b"ab")).body == b"ab"
    assert "<5000 bytes>" in repr(Packet(CMD_OK, 1, body=b"x" * 5000))
    assert HEARTBEAT.encode() == b"\xdf"


# ----------------------------------------------------------------- decoder


def test_decoder_byte_by_byte() -> None:
    decoder = PacketDecoder()
    for i, byte in enumerate(SINGLE[:-1]):
        assert decoder.feed(bytes([byte])) == [], f"packet emitted early at byte {i}"
    [packet] = decoder.feed(SINGLE[-1:])
    assert packet == Packet(CMD_GATEWAY_PUSH, 7, 0, SINGLE[HEADER_LEN:])
    assert decoder.buffered == 0


def test_decoder_coalesced_frames_and_heartbeats() -> None:
    stream = b"\xdf" + OK_PACKET + b"\xdf\xdf" + ERROR_PACKET + b"\xdf" + OK_PACKET[:5]
    items = PacketDecoder().feed(stream)
    assert [type(i).__name__ for i in items] == [
        "Heartbeat", "Packet", "Heartbeat", "Heartbeat", "Packet", "Heartbeat",
    ]
    assert items[0] == Heartbeat()
    assert [p.cmd for p in items if isinstance(p, Packet)] == [CMD_OK, CMD_ERROR]


def test_decoder_0xdf_inside_a_frame_is_data() -> None:
    # Only a byte where a header would start is a heartbeat.
    packet = Packet(0xDF, -538976289, 0xDF, b"\xdf" * 3, 0xDFDF, 0xDF)  # sessionId 0xdfdfdfdf
    data = packet.encode()
    decoder = PacketDecoder()
    out: list[object] = []
    for i in range(len(data)):
        out += decoder.feed(data[i : i + 1])
    assert out == [packet]


def test_decoder_empty_body_frame() -> None:
    assert PacketDecoder().feed(hexb("00000000 0b 0000 00 00000001 00")) == [Packet(CMD_OK, 1)]


@given(
    st.lists(PACKETS | st.just(HEARTBEAT), max_size=8),
    st.lists(st.integers(0, 2000), max_size=10),
)
def test_decoder_any_split(items: list[Packet | Heartbeat], cuts: list[int]) -> None:
    stream = b"".join(item.encode() for item in items)
    bounds = sorted({0, len(stream), *(c % (len(stream) + 1) for c in cuts)})
    decoder = PacketDecoder()
    out: list[Packet | Heartbeat] = []
    for start, end in itertools.pairwise(bounds):
        out += decoder.feed(stream[start:end])
    assert out == items
    assert decoder.buffered == 0


def test_decoder_rejects_oversize_length_at_once() -> None:
    decoder = PacketDecoder()
    with pytest.raises(ProtocolError, match="10241 exceeds the limit of 10240"):
        decoder.feed(b"\x00\x00\x28\x01")  # just the length: 10241
    # The stream is out of sync for good.
    with pytest.raises(ProtocolError, match="already failed"):
        decoder.feed(OK_PACKET)


def test_decoder_rejects_oversize_length_split_across_feeds() -> None:
    decoder = PacketDecoder(max_body=5)
    assert decoder.feed(b"\x00\x00") == []
    with pytest.raises(ProtocolError, match="6 exceeds the limit of 5"):
        decoder.feed(b"\x00\x06")


@pytest.mark.parametrize("length", [b"\x80\x00\x00\x00", b"\xff\xff\xff\xfe"])
def test_decoder_rejects_negative_length(length: bytes) -> None:
    with pytest.raises(ProtocolError, match="negative packet body length"):
        PacketDecoder().feed(length)


def test_decoder_buffer_bound() -> None:
    limit = DEFAULT_MAX_PACKET_SIZE
    big = Packet(CMD_OK, 3, body=b"z" * limit).encode()  # exactly at the limit: allowed
    decoder = PacketDecoder()
    assert decoder.feed(big[:-1]) == []
    assert decoder.buffered == HEADER_LEN + limit - 1
    assert len(decoder.feed(big[-1:])) == 1
    # Coalesced input is consumed frame by frame, not buffered whole.
    out = decoder.feed(big * 3 + big[:100])
    assert len(out) == 3
    assert decoder.buffered == 100


# ---------------------------------------------------------------- requests


def test_single_push_exact_bytes() -> None:
    assert single_push_packet(7, "u1", 1, 3000, b"hi") == SINGLE
    assert GatewayPush.decode_body(SINGLE[HEADER_LEN:]) == GatewayPush("u1", 1, 2500, b"hi")


def test_broadcast_exact_bytes() -> None:
    data = broadcast_packet(9, b"hi", tags=["a", "b"], condition="tags.indexOf('a')>=0")
    assert data == BROADCAST
    push = GatewayPush.decode_body(BROADCAST[HEADER_LEN:])
    assert push.is_broadcast
    assert (push.user_id, push.client_type, push.timeout) == (None, 0, 0)
    assert push.tags == '["a","b"]'
    assert push.condition == "tags.indexOf('a')>=0"


@pytest.mark.parametrize(("ack", "flag"), [("none", 0), ("auto", 8), ("biz", 4)])
def test_ack_model_is_the_flags_byte(ack: str, flag: int) -> None:
    assert single_push_packet(7, "u1", 1, 3000, b"hi", ack=ack)[7] == flag  # type: ignore[arg-type]
    assert broadcast_packet(7, b"hi", ack=ack)[7] == flag  # type: ignore[arg-type]


def test_unknown_ack_model_refused() -> None:
    with pytest.raises(ValueError, match="ack must be one of"):
        single_push_packet(7, "u1", 1, 3000, b"hi", ack="always")  # type: ignore[arg-type]


@pytest.mark.parametrize("flags", [1, 2, 3, 12, 16, 32, 128])
def test_request_flags_other_than_0_4_8_refused(flags: int) -> None:
    with pytest.raises(ValueError, match="not allowed"):
        request_packet(1, GatewayPush("u1", 1, 2500, b"hi"), flags)


@pytest.mark.parametrize("flags", [0, FLAG_BIZ_ACK, FLAG_AUTO_ACK])
def test_request_flags_allowed(flags: int) -> None:
    [packet] = PacketDecoder().feed(request_packet(1, GatewayPush("u1", 1, 2500, b"hi"), flags))
    assert packet.flags == flags


@pytest.mark.parametrize("user_id", ["", " ", "\t\n", "\u3000"])  # U+3000 is Java whitespace
def test_blank_user_id_refused(user_id: str) -> None:
    with pytest.raises(ValueError, match="broadcast"):
        single_push_packet(7, user_id, 1, 3000, b"hi")


def test_user_id_rules_follow_java() -> None:
    with pytest.raises(TypeError):
        single_push_packet(7, None, 1, 3000, b"hi")  # type: ignore[arg-type]
    # A no-break space is not whitespace to Java's Strings.isBlank: a real (odd) user id.
    data = single_push_packet(7, "\u00a0", 1, 3000, b"hi")
    assert GatewayPush.decode_body(data[HEADER_LEN:]).user_id == "\u00a0"


def test_timeout_floor_and_wire_value() -> None:
    with pytest.raises(ValueError, match="timeout_ms 999"):
        single_push_packet(7, "u1", 1, 999, b"hi")
    data = single_push_packet(7, "u1", 1, 1000, b"hi")
    assert GatewayPush.decode_body(data[HEADER_LEN:]).timeout == 500
    with pytest.raises(TypeError):
        single_push_packet(7, "u1", 1, 3000.0, b"hi")  # type: ignore[arg-type]


def test_empty_content_refused() -> None:
    with pytest.raises(ValueError, match="empty"):
        single_push_packet(7, "u1", 1, 3000, b"")
    with pytest.raises(ValueError, match="empty"):
        broadcast_packet(7, b"")


def test_single_push_limit_is_the_body_size() -> None:
    # Body = 4 (userId "u1") + 4 + 4 + 2 (content length) + L + 2 + 2 + 2 = 20 + L.
    data = single_push_packet(7, "u1", 1, 3000, b"x" * 10220)
    assert len(data) == HEADER_LEN + DEFAULT_MAX_PACKET_SIZE  # exactly at the limit: sent
    with pytest.raises(PacketTooLarge) as info:
        single_push_packet(7, "u1", 1, 3000, b"x" * 10221)
    assert (info.value.size, info.value.limit) == (10241, 10240)
    assert isinstance(info.value, ProtocolError)


def test_broadcast_limit_with_custom_max_body() -> None:
    # Body = 2 + 4 + 4 + 2 + L + 2 + 2 + 2 = 18 + L.
    assert len(broadcast_packet(1, b"x" * 82, max_body=100)) == HEADER_LEN + 100
    with pytest.raises(PacketTooLarge, match="101 bytes, over the gateway limit of 100"):
        broadcast_packet(1, b"x" * 83, max_body=100)


def test_tags_json_like_fastjson() -> None:
    assert tags_json(["a", "b"]) == '["a","b"]'
    assert tags_json(["a", "b", "a"]) == '["a","b"]'  # a Set in Java
    assert tags_json(['q"t', "中"]) == '["q\\"t","中"]'
    assert tags_json([]) == "[]"
    with pytest.raises(TypeError):
        tags_json("ab")
    with pytest.raises(TypeError):
        tags_json([1])  # type: ignore[list-item]


def test_builder_tag_and_condition_rules() -> None:
    with pytest.raises(ValueError, match="tags is empty"):
        broadcast_packet(1, b"hi", tags=[])
    data = single_push_packet(7, "u1", 2, 3000, b"hi", tags=["vip"])
    assert GatewayPush.decode_body(data[HEADER_LEN:]).tags == '["vip"]'
    for blank in ("", "  "):
        push = GatewayPush.decode_body(broadcast_packet(1, b"hi", condition=blank)[HEADER_LEN:])
        assert push.condition is None  # a blank script would match no one on the server
    push = GatewayPush.decode_body(broadcast_packet(1, b"hi", task_id="t-1")[HEADER_LEN:])
    assert push.task_id == "t-1"


# ---------------------------------------------------------------- messages


GATEWAY_PUSHES = st.builds(
    GatewayPush,
    user_id=OPT_TEXT,
    client_type=INT32,
    timeout=INT32,
    content=st.binary(max_size=500),
    task_id=OPT_TEXT,
    tags=OPT_TEXT,
    condition=OPT_TEXT,
)


@given(GATEWAY_PUSHES)
def test_gateway_push_round_trip(push: GatewayPush) -> None:
    assert GatewayPush.decode_body(push.encode_body()) == push


def test_gateway_push_empty_strings_read_back_as_none() -> None:
    push = GatewayPush("", 1, 2, b"c", task_id="", tags="", condition="")
    back = GatewayPush.decode_body(push.encode_body())
    assert back == GatewayPush(None, 1, 2, b"c")
    assert back.is_broadcast


@given(BYTE, BYTE, OPT_TEXT, INT32)
def test_ok_round_trip(cmd: int, code: int, data: str | None, session_id: int) -> None:
    message = OkMessage(cmd, code, data)
    [packet] = PacketDecoder().feed(message.to_packet(session_id).encode())
    assert (packet.cmd, packet.session_id) == (CMD_OK, session_id)
    assert decode_reply(packet) == message


@given(BYTE, BYTE, OPT_TEXT, OPT_TEXT, INT32)
def test_error_round_trip(
    cmd: int, code: int, reason: str | None, data: str | None, session_id: int
) -> None:
    message = ErrorMessage(cmd, code, reason, data)
    [packet] = PacketDecoder().feed(message.to_packet(session_id).encode())
    assert (packet.cmd, packet.session_id) == (CMD_ERROR, session_id)
    assert decode_reply(packet) == message


def test_ok_decodes_from_hand_made_bytes() -> None:
    [packet] = PacketDecoder().feed(OK_PACKET)
    assert packet.session_id == 7
    assert decode_reply(packet) == OkMessage(CMD_GATEWAY_PUSH, 0, '{"userId":"u1"}')
    assert OkMessage(CMD_GATEWAY_PUSH, 0, '{"userId":"u1"}').to_packet(7).encode() == OK_PACKET


def test_error_decodes_from_hand_made_bytes() -> None:
    [packet] = PacketDecoder().feed(ERROR_PACKET)
    assert packet.session_id == 7
    reply = decode_reply(packet)
    assert reply == ErrorMessage(CMD_GATEWAY_PUSH, ErrorCode.OFFLINE, "user offline", None)
    assert ErrorMessage(16, ErrorCode.OFFLINE, "user offline").to_packet(7).encode() == ERROR_PACKET


@pytest.mark.parametrize(
    ("cmd", "body"),
    [
        (CMD_OK, hexb("10 00 000f 7b")),  # data declares 15 bytes, 1 present
        (CMD_OK, hexb("10")),  # no code, no data
        (CMD_OK, hexb("10 00 00")),  # half a length
        (CMD_ERROR, hexb("10 01 0000")),  # reason null, data missing
        (CMD_ERROR, hexb("10 03 fffe")),  # negative length
    ],
)
def test_garbage_reply_bodies_raise(cmd: int, body: bytes) -> None:
    with pytest.raises(ProtocolError, match=r"truncated|negative"):
        decode_reply(Packet(cmd, 7, body=body))


def test_reply_edge_cases_follow_java() -> None:
    # Empty body: Java skips decoding and sees cmd 0 (an answer to nothing).
    assert decode_reply(Packet(CMD_OK, 7)) == OkMessage(0, 0, None)
    assert decode_reply(Packet(CMD_ERROR, 7)) == ErrorMessage(0, 0, None, None)
    # Trailing bytes are ignored, as Java does (room for later fields).
    body = ErrorMessage(16, ErrorCode.ROUTER_CHANGE, "router change").encode_body() + b"\x00\x07"
    assert decode_reply(Packet(CMD_ERROR, 7, body=body)).code == ErrorCode.ROUTER_CHANGE


def test_reply_with_wrong_cmd_or_flags_raises() -> None:
    with pytest.raises(ProtocolError, match="unexpected command 16"):
        decode_reply(Packet(CMD_GATEWAY_PUSH, 7, body=SINGLE[HEADER_LEN:]))
    with pytest.raises(ProtocolError, match="unsupported flags"):
        decode_reply(Packet(CMD_OK, 7, FLAG_COMPRESS, OK_PACKET[HEADER_LEN:]))


# --------------------------------------------------- client type, content


@pytest.mark.parametrize(
    ("os_name", "fallback", "expected"),
    [
        ("android", None, 1),
        ("Android 9", 2, 1),  # osName wins over the hash field
        ("iOS", None, 1),
        ("Windows 10", None, 2),
        ("MacOS", None, 2),
        ("linux", None, 2),
        ("web", None, 3),
        ("H5", None, 3),
        ("linux android", None, 1),  # mobile is checked first
        ("mac web", None, 2),  # then PC, then web
        ("webos", None, 3),
        ("symbian", 1, -1),  # unknown osName: -1, the field is not consulted
        ("", 1, -1),  # Java: "" contains none of the names
        (None, 2, 2),  # missing osName: the hash field
        (None, None, -1),
    ],
)
def test_client_type_of(os_name: str | None, fallback: int | None, expected: int) -> None:
    assert client_type_of(os_name, fallback) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('a"b\\c', r'"a\"b\\c"'),
        ("\b\t\n\f\r", r'"\b\t\n\f\r"'),
        ("\x00\x0b\x1f", r'"\u0000\u000B\u001F"'),  # upper-case hex
        ("\x7f\x9f\xa0", '"\\u007F\\u009F\xa0"'),  # C1 escaped, NBSP not
        ("\u2028\u2029", r'"\u2028\u2029"'),
        ("/<>()'", "\"/<>()'\""),
        ("é中😀", '"é中😀"'),  # non-ASCII as is
    ],
)
def test_fastjson_quote(text: str, expected: str) -> None:
    assert fastjson_quote(text) == expected


@given(st.text())
def test_fastjson_quote_is_valid_json(text: str) -> None:
    assert json.loads(fastjson_quote(text)) == text


def test_java_alloc_content_exact_bytes() -> None:
    expected = (
        r'{"content":"{\"content\":\"MPush开源推送，hello\",\"nid\":1,'
        r'\"ticker\":\"你有一条新的消息,请注意查收\",\"title\":\"MPUSH推送\"}",'
        r'"msgId":"msg_1","msgType":3}'
    ).encode()
    content = java_alloc_content("hello", 1)
    assert content == expected
    assert "，".encode() == b"\xef\xbc\x8c" and b"\xef\xbc\x8chello" in content  # not escaped


def test_java_alloc_content_escapes_twice() -> None:
    expected = (
        r'{"content":"{\"content\":\"MPush开源推送，q\\\"\\n\\u007F\\u2028\",\"nid\":2,'
        r'\"ticker\":\"你有一条新的消息,请注意查收\",\"title\":\"MPUSH推送\"}",'
        r'"msgId":"msg_2","msgType":3}'
    ).encode()
    assert java_alloc_content('q"\n\x7f\u2028', 2) == expected
    inner = json.loads(json.loads(expected)["content"])
    assert inner["content"] == 'MPush开源推送，q"\n\x7f\u2028'


@pytest.mark.parametrize(
    ("n", "nid"),
    [
        (1, 1),  # the Java alloc's first push: counter 0 before, 1 after
        (2, 2),
        (3, 1),
        (0, 0),  # counter -1 before: Java's -1 % 2 + 1 = 0
        (-(2**31), 2),  # the int counter wrapped: before = 2**31 - 1
    ],
)
def test_java_alloc_content_nid(n: int, nid: int) -> None:
    message = json.loads(java_alloc_content("x", n))
    assert message["msgId"] == f"msg_{n}"
    assert json.loads(message["content"])["nid"] == nid


def test_java_alloc_content_null_hello_and_lone_surrogate() -> None:
    assert '"MPush开源推送，null"' in json.loads(java_alloc_content(None, 1))["content"]
    assert "MPush开源推送，a?".encode() in java_alloc_content("a\ud800", 1)
