"""The schemas of ``POST /push`` in the OpenAPI document: request, result, answer.

The enums come from the code's own vocabularies (:mod:`mpush.outcomes`) and
limits (the wire codec, :mod:`mpush.web.push_body`).
"""

from __future__ import annotations

from mpush.outcomes import AckModel, PushOutcome, PushReason
from mpush.web.openapi_json import Json, count, nullable, record, ref, string, strings
from mpush.web.push_body import MAX_TIMEOUT_MS
from mpush.wire import MIN_TIMEOUT_MS

__all__ = ["push_answer", "push_request", "push_result"]


def push_request() -> Json:
    return {
        "type": "object",
        "description": "A push. `null` is the same as absent; an unknown field is a 400"
                       " naming it (`field`) and the closest known one (the Java alloc"
                       " ignored them, so a typo went unnoticed). A target (`userId`, `userIds` or"
                       " `broadcast: true`) and a content (`hello` or `content`, not both)"
                       " are required. The Java alloc's own body"
                       " `{\"userId\",\"hello\",\"broadcast\":false,\"condition\":\"\"}`"
                       " works as it is. Any `Content-Type` but multipart.",
        "additionalProperties": False,
        "properties": {**_push_targets(), **_push_contents(), **_push_options()},
    }


def _push_targets() -> Json:
    return {
        "userId": nullable({**string(), "description":
                             "one user (with `userIds`: the union, order kept,"
                             " duplicates once); not blank"}),
        "userIds": nullable({**strings(), "description":
                              "several users; none blank; at most"
                              " `mp.alloc.max-users-per-push` distinct (else 413)"}),
        "broadcast": nullable({"type": "boolean", "description":
                                "push to every connected user; wins over user ids"}),
    }


def _push_contents() -> Json:
    return {
        "hello": nullable({**string(), "description":
                            "text wrapped as the Java alloc wraps it (a notification"
                            " titled MPUSH推送)"}),
        "msgType": {"type": ["integer", "null"], "enum": [1, 2, 3, None],
                    "description": "with `hello` only: 1 notification, 2 message,"
                                   " 3 both (default)"},
        "content": {"type": ["string", "object", "null"], "description":
                    "raw content instead of `hello`: a string is sent as its UTF-8"
                    " bytes, an object as its compact JSON; not empty; at most"
                    " `mp.core.max-packet-size` once framed (else 413)"},
    }


def _push_options() -> Json:
    return {
        "tags": nullable({"type": "array", "minItems": 1,
                           "items": {"type": "string", "minLength": 1},
                           "description": "broadcast: only users with one of these"
                                          " tags"}),
        "condition": nullable({**string(), "description":
                                "broadcast: a script the connection servers evaluate;"
                                " blank = none"}),
        "taskId": nullable({**string(), "description":
                             "broadcast only (400 on a single push): task id"}),
        "ackModel": {"type": ["string", "null"], "enum": [*(m.value for m in AckModel), None],
                     "description": "delivery ack asked of the device (default none)"},
        "timeout": {"type": ["integer", "null"], "minimum": MIN_TIMEOUT_MS,
                    "maximum": MAX_TIMEOUT_MS,
                    "description": "ms to wait for the gateway's answer (default"
                                   " `mp.alloc.push-timeout`, a broadcast's"
                                   " `mp.alloc.broadcast-timeout`); the gateway is"
                                   " given 500 ms less"},
    }


def push_result() -> Json:
    return record({
        "userId": {"type": ["string", "null"],
                   "description": "the user; null for a broadcast's per-gateway row"},
        "clientType": {"type": ["integer", "null"],
                       "description": "1 mobile, 2 PC, 3 web, -1 other (from the"
                                      " route's osName); null when the user has no"
                                      " route, and for a broadcast"},
        "result": {"type": "string", "enum": [m.value for m in PushOutcome]},
        "gateway": {"type": ["string", "null"],
                    "description": "the gateway `host:port` asked; null if none"},
        "ms": {"type": "number", "minimum": 0, "description": "time taken, ms"},
        "reason": {"type": ["string", "null"], "enum": [*(m.value for m in PushReason), None],
                   "description": "why not a success, one word (docs/api.md lists"
                                  " them); null on success"},
        "code": {"type": ["integer", "null"],
                 "description": "the gateway's ERROR code: with reason `not_online` (1)"
                                " or `gateway_error` (null if that ERROR did not"
                                " answer the push); otherwise null"},
    })


def push_answer() -> Json:
    return record({
        "results": {"type": "array", "items": ref("schemas", "PushResult")},
        "summary": record({m.value: count() for m in PushOutcome}),
    }, description="Sent once every outcome is known (also when every user is"
                   " offline): one result per user and client type, or per gateway"
                   " server for a broadcast.")
