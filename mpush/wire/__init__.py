"""The mpush gateway wire protocol: a pure codec (no I/O, no Twisted).

What the Java peers (``mpusher/mpush`` 0.8.x) put on a gateway connection,
read from their sources; file names in the modules are the Java ones.

* :mod:`.frames` — the 13-byte header, :class:`Packet`, heartbeats, the
  stream decoder, the CMD_/FLAG_ constants;
* :mod:`.body` — body fields (:class:`BodyWriter`, :class:`BodyReader`);
* :mod:`.messages` — the push request, OK and ERROR, request builders;
* :mod:`.javacompat` — what Java computes its own way (fastjson quoting,
  blankness, clientType, the Java alloc's push content).

Errors: :class:`ProtocolError` is what the peer sent (or would refuse) —
close the connection on it; ``ValueError``/``TypeError`` are bad arguments
from our own caller. Import from here: ``from mpush.wire import Packet``.
"""

from mpush.outcomes import AckModel
from mpush.wire.body import BodyReader, BodyWriter
from mpush.wire.frames import (
    CMD_ERROR,
    CMD_GATEWAY_KICK,
    CMD_GATEWAY_PUSH,
    CMD_HEARTBEAT,
    CMD_OK,
    DEFAULT_MAX_PACKET_SIZE,
    FLAG_AUTO_ACK,
    FLAG_BIZ_ACK,
    FLAG_COMPRESS,
    FLAG_CRYPTO,
    FLAG_JSON_BODY,
    HEADER_LEN,
    HEARTBEAT,
    HEARTBEAT_BYTE,
    INT32_MAX,
    INT32_MIN,
    Heartbeat,
    Packet,
    PacketDecoder,
    PacketTooLarge,
    ProtocolError,
)
from mpush.wire.javacompat import (
    client_type_of,
    fastjson_quote,
    java_alloc_content,
    java_is_blank,
    tags_json,
)
from mpush.wire.messages import (
    ACK_FLAGS,
    DEFAULT_TIMEOUT_MS,
    ERR_ACK_TIMEOUT,
    ERR_DISPATCH_ERROR,
    ERR_OFFLINE,
    ERR_PUSH_CLIENT_FAILURE,
    ERR_ROUTER_CHANGE,
    ERR_UNSUPPORTED_CMD,
    ERROR_REASONS,
    MIN_TIMEOUT_MS,
    REQUEST_FLAGS,
    SERVER_TIMEOUT_MARGIN_MS,
    ErrorMessage,
    GatewayPush,
    OkMessage,
    broadcast_packet,
    decode_reply,
    request_packet,
    single_push_packet,
)

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
    "java_is_blank",
    "request_packet",
    "single_push_packet",
    "tags_json",
]
