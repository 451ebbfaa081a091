"""The ``POST /push`` body: JSON in, a validated :class:`PushOrder` out.

Pure (no Twisted, no I/O). What the Java alloc's page posts is accepted as
it is (``{"userId","hello","broadcast","condition"}``, ``condition: ""``,
``userId`` together with ``broadcast: true``), and so are our additions;
see :func:`parse_push_body`. An unknown field is refused, with the closest
known name as a hint (``ackmodel``: did you mean ``ackModel``?), rather than
silently ignored. Fields are checked in a fixed order, so a body with
several faults always names the same one.
"""

from __future__ import annotations

import difflib
import json
import math
import sys
from dataclasses import dataclass
from typing import Any, Final

from mpush.config.keys import bounds
from mpush.outcomes import AckModel
from mpush.wire import MIN_TIMEOUT_MS

__all__ = ["FIELDS", "JAVA_ALLOC_FIELDS", "MAX_TIMEOUT_MS", "BadRequest", "PushOrder",
           "is_blank", "parse_push_body"]

# What the Java alloc reads of a /push body: its PushHandler (mpusher/alloc,
# every version) takes userId, hello, broadcast and condition from the JSON
# map, which is all its page sends; it ignores anything else.
JAVA_ALLOC_FIELDS: Final = ("userId", "hello", "broadcast", "condition")
# Every field a body may carry: the Java alloc's, then ours. Any other is a 400.
FIELDS: Final = (*JAVA_ALLOC_FIELDS, "userIds", "content", "msgType", "tags", "taskId",
                 "ackModel", "timeout")
_FIELDS_BY_LOWER: Final = {name.lower(): name for name in FIELDS}

# A body's "timeout" (ms): from the push client's floor to the largest broadcast-timeout.
MAX_TIMEOUT_MS: Final = round(bounds("mp.alloc.broadcast-timeout")[1] * 1000)
_ACK_NAMES: Final = ", ".join(AckModel)  # "none, auto, biz", for the 400 message
# Longer integers are refused unread: Python's int() takes no more by default,
# and converting one costs time quadratic in its length.
MAX_INT_DIGITS: Final = sys.int_info.default_max_str_digits


class BadRequest(Exception):
    """A body we refuse; ``field`` is the JSON key at fault (``"body"`` for the whole)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


@dataclass(frozen=True)
class PushOrder:
    """A validated ``/push`` body."""

    user_ids: tuple[str, ...]  # empty for a broadcast
    broadcast: bool
    hello: str | None  # Java alloc style: wrapped by java_alloc_content
    content: bytes | None  # raw content, sent as is
    msg_type: int = 3  # for hello only: 1 notification, 2 message, 3 both
    tags: tuple[str, ...] | None = None
    condition: str | None = None  # broadcast only
    task_id: str | None = None  # broadcast only
    ack: AckModel = AckModel.NONE
    timeout_ms: int | None = None  # None: the configured default

    @property
    def cost(self) -> int:
        """What it counts against the pushes in flight: a user each, a broadcast one."""
        return 1 if self.broadcast else len(self.user_ids)


def parse_push_body(raw: bytes) -> PushOrder:
    """Validate a ``/push`` body; raises `BadRequest` naming the field at fault.

    Fields (``null`` is the same as absent; any field not in `FIELDS` is
    refused, naming it and the closest known field):

    * target: ``userId`` (string) and/or ``userIds`` (list of strings): their
      union, order kept, each once; or ``broadcast: true``, which wins over
      any user ids (the Java page sends its user id field along).
    * content: ``hello`` (string, wrapped as the Java alloc does, so stock
      clients show it; ``msgType`` 1/2/3 picks the wrapping's type, default
      3) or ``content`` (a string: its UTF-8 bytes; an object: its compact
      JSON), not both.
    * ``tags`` (non-empty list of non-empty strings), ``condition`` (string,
      blank = none; broadcast only, ignored otherwise as by the Java alloc),
      ``taskId`` (broadcast only), ``ackModel`` (none|auto|biz), ``timeout``
      (ms, integer 1000..86400000).
    """
    body = _json_object(raw)
    _refuse_unknown_fields(body)
    broadcast = _broadcast(body)
    targets = _targets(body, broadcast)
    hello, content = _hello_or_content(body)
    msg_type = _msg_type(body, hello)
    tags = _tags(body)
    condition, task_id = _broadcast_options(body, broadcast)
    ack = _ack(body)
    return PushOrder(
        user_ids=targets,
        broadcast=broadcast,
        hello=hello,
        content=content,
        msg_type=msg_type,
        tags=None if tags is None else tuple(dict.fromkeys(tags)),
        condition=condition if broadcast else None,
        task_id=task_id,
        ack=ack,
        timeout_ms=_integer(body, "timeout", MIN_TIMEOUT_MS, MAX_TIMEOUT_MS),
    )


# ---------------------------------------------------------------- the fields, in order


def _json_object(raw: bytes) -> dict[str, Any]:
    """The body as a JSON object of valid Unicode text, or BadRequest("body"/key)."""
    if not raw.strip():
        raise BadRequest("body", "body is empty: send a JSON object")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadRequest("body", f"body is not valid UTF-8 (byte {exc.start})") from None
    try:
        body = json.loads(text.removeprefix("\ufeff"), object_pairs_hook=_no_duplicates,
                          parse_constant=_constant, parse_float=_float, parse_int=_int)
    except json.JSONDecodeError as exc:
        raise BadRequest(
            "body", f"body is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from None
    except RecursionError:
        raise BadRequest("body", "body is not valid JSON: nested too deeply") from None
    if not isinstance(body, dict):
        raise BadRequest("body", f"body must be a JSON object, got {_json_type(body)}")
    _refuse_unsendable(body)
    return body


def _refuse_unsendable(body: dict[str, Any]) -> None:
    """The first field (in body order) holding what no push can carry."""
    for key, value in body.items():
        for field, part in (("body", key), (key, value)):
            try:
                json.dumps(part, ensure_ascii=False, default=_refuse_number).encode("utf-8")
            except UnicodeEncodeError:
                # "\ud800" escapes decode to lone surrogates, which no UTF-8 push can carry.
                raise BadRequest(field, f"{field} holds a lone surrogate (\\ud800-\\udfff"
                                 " escape), which is not valid Unicode text") from None
            except _Unsendable as exc:
                raise BadRequest(field, f"{field} holds {exc}") from None


def _refuse_unknown_fields(body: dict[str, Any]) -> None:
    """The first field (in body order) that is not in FIELDS, with a hint."""
    for key in body:
        if key in FIELDS:
            continue
        # Case-blind, so that ackmodel and USERID find their field.
        close = difflib.get_close_matches(key.lower(), _FIELDS_BY_LOWER, n=1, cutoff=0.6)
        hint = (f"did you mean {_FIELDS_BY_LOWER[close[0]]}?" if close
                else "the fields are " + ", ".join(FIELDS))
        raise BadRequest(key, f"unknown field {key!r}: {hint}")


def _broadcast(body: dict[str, Any]) -> bool:
    broadcast = body.get("broadcast")
    if broadcast is None:
        return False
    if not isinstance(broadcast, bool):
        raise BadRequest("broadcast",
                         f"broadcast must be true or false, got {_json_type(broadcast)}")
    return broadcast


def _targets(body: dict[str, Any], broadcast: bool) -> tuple[str, ...]:
    user_id = _string(body, "userId")
    user_ids = _string_list(body, "userIds")
    if broadcast:
        return ()  # the types are still checked above: the Java page sends its user id along
    targets: dict[str, None] = {}
    if user_id is not None:
        if is_blank(user_id):
            raise BadRequest("userId", "userId is empty")
        targets[user_id] = None
    for index, item in enumerate(user_ids or ()):
        if is_blank(item):
            raise BadRequest("userIds", f"userIds[{index}] is empty")
        targets.setdefault(item)
    if not targets:
        raise BadRequest("userId", "no target: give userId, userIds or broadcast: true")
    return tuple(targets)


def _hello_or_content(body: dict[str, Any]) -> tuple[str | None, bytes | None]:
    hello = _string(body, "hello")
    value = body.get("content")
    if value is None:
        if hello is None:
            raise BadRequest("content", "no content: give hello (Java alloc style) or content")
        return hello, None
    if hello is not None:
        raise BadRequest("content", "give hello or content, not both")
    if isinstance(value, str):
        content = value.encode("utf-8")
    elif isinstance(value, dict):
        content = json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    else:
        raise BadRequest("content", "content must be a string or an object, got "
                         + _json_type(value))
    if not content:
        raise BadRequest("content", "content is empty")
    return None, content


def _msg_type(body: dict[str, Any], hello: str | None) -> int:
    msg_type = _integer(body, "msgType", 1, 3)
    if msg_type is None:
        return 3
    if hello is None:
        raise BadRequest("msgType", "msgType applies to hello only; content is sent as is")
    return msg_type


def _tags(body: dict[str, Any]) -> list[str] | None:
    tags = _string_list(body, "tags")
    if tags is None:
        return None
    if not tags:
        # [] would be a filter matching no one; leaving it out means everyone.
        raise BadRequest("tags", "tags is empty: leave it out for no tag filter")
    for index, tag in enumerate(tags):
        if is_blank(tag):
            raise BadRequest("tags", f"tags[{index}] is empty")
    return tags


def _broadcast_options(body: dict[str, Any], broadcast: bool) -> tuple[str | None, str | None]:
    """(condition, taskId): a blank condition is none; a taskId needs a broadcast."""
    condition = _string(body, "condition")
    if condition is not None and is_blank(condition):
        condition = None  # the Java page sends "" for no condition
    task_id = _string(body, "taskId")
    if task_id is not None:
        if is_blank(task_id):
            raise BadRequest("taskId", "taskId is empty")
        if not broadcast:
            raise BadRequest("taskId", "taskId applies to a broadcast only")
    return condition, task_id


def _ack(body: dict[str, Any]) -> AckModel:
    ack = _string(body, "ackModel")
    if ack is None:
        return AckModel.NONE
    try:
        return AckModel(ack)
    except ValueError:
        raise BadRequest("ackModel", f"ackModel must be one of {_ACK_NAMES}, got {ack!r}"
                         ) from None


# ---------------------------------------------------------------- typed reads


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float | _Unsendable):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    return "an object"


def is_blank(text: str) -> bool:
    """The rule for user ids (and tags, task ids): blank (empty or spaces) is refused."""
    return not text.strip()


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # json.loads would keep the last of two equal keys; a body that says
    # two things at once is refused instead.
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise BadRequest(key, f"{key} is given twice")
        result[key] = value
    return result


class _Unsendable(Exception):
    """A number json.loads takes but no push can carry. The parser's hooks put one
    in its place (they do not know the field); :func:`_refuse_unsendable` raises it."""


def _constant(name: str) -> _Unsendable:
    return _Unsendable(f"{name}, which is not a JSON number")


def _float(text: str) -> float | _Unsendable:
    value = float(text)
    if math.isfinite(value):
        return value
    # json.dumps would send it on as Infinity, which is not JSON.
    shown = text if len(text) <= 20 else text[:20] + "..."
    return _Unsendable(f"{shown}, beyond the range of a double")


def _int(text: str) -> int | _Unsendable:
    # Also within a lower limit set for this interpreter (0 there means none).
    limit = min(MAX_INT_DIGITS, sys.get_int_max_str_digits() or MAX_INT_DIGITS)
    digits = len(text.lstrip("-"))
    if digits <= limit:
        return int(text)
    return _Unsendable(f"an integer of {digits} digits (at most {limit})")


def _refuse_number(value: object) -> Any:
    # json.dumps calls this for what it cannot encode: only our placeholders.
    if isinstance(value, _Unsendable):
        raise value
    raise TypeError(f"not JSON: {type(value).__name__}")


def _string(body: dict[str, Any], key: str) -> str | None:
    value = body.get(key)
    if value is None or isinstance(value, str):
        return value
    raise BadRequest(key, f"{key} must be a string, got {_json_type(value)}")


def _string_list(body: dict[str, Any], key: str) -> list[str] | None:
    value = body.get(key)
    if value is None:
        return None
    if not isinstance(value, list):
        raise BadRequest(key, f"{key} must be a list of strings, got {_json_type(value)}")
    if not all(isinstance(item, str) for item in value):
        raise BadRequest(key, f"{key} must be a list of strings, one item is not a string")
    return value


def _integer(body: dict[str, Any], key: str, low: int, high: int) -> int | None:
    value = body.get(key)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool):
        raise BadRequest(key, f"{key} must be an integer, got {_json_type(value)}")
    if not low <= value <= high:
        raise BadRequest(key, f"{key} must be between {low} and {high}, got {value}")
    return value
