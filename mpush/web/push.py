"""``POST /push``: send a push through the gateways and answer with every outcome.

The body is JSON. What the Java alloc's page posts is accepted as it is
(``{"userId","hello","broadcast","condition"}``, sent as ``text/plain`` with
a misspelt ``context-type`` header, ``condition: ""``, ``userId`` together
with ``broadcast: true``), and so are our additions; see `parse_push_body`.
Unlike the Java alloc, the answer waits for the outcomes:
``{"results": [...], "summary": {...}}``.

Access: with a push token configured, ``Authorization: Bearer <token>``
alone decides; without one, the client's address must be in the allow-list
networks, and browser requests must come from this server's own page.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import urlsplit

from twisted.internet.defer import Deferred, succeed
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request

from mpush.config.keys import bounds, default
from mpush.web.errors import json_error, method_not_allowed
from mpush.wire.codec import (
    INT32_MAX,
    INT32_MIN,
    MIN_TIMEOUT_MS,
    PacketTooLarge,
    java_alloc_content,
)

__all__ = [
    "DEFAULT_MAX_INFLIGHT_PUSHES",
    "DEFAULT_MAX_USERS_PER_PUSH",
    "DEFAULT_PUSH_ALLOW",
    "BadRequest",
    "PushOrder",
    "PushResource",
    "parse_push_body",
]

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

DEFAULT_PUSH_ALLOW: tuple[IPNetwork, ...] = default("mp.alloc.push-allow")
ACK_MODELS = ("none", "auto", "biz")
DEFAULT_MAX_USERS_PER_PUSH: int = default("mp.alloc.max-users-per-push")
DEFAULT_MAX_INFLIGHT_PUSHES: int = default("mp.alloc.max-inflight-pushes")
DEFAULT_PUSH_TIMEOUT: float = default("mp.alloc.push-timeout")  # s
DEFAULT_RETRY_AFTER: int = default("mp.alloc.retry-after")  # s
# A body's "timeout" (ms): from the push client's floor to the largest broadcast-timeout.
MAX_TIMEOUT_MS = round(bounds("mp.alloc.broadcast-timeout")[1] * 1000)
RESULT_KINDS = ("success", "failure", "offline", "timeout")
_JAVA_MSG_TYPE = b',"msgType":3}'  # how java_alloc_content ends (MsgType 3)
_FORM_TYPES = (b"multipart/form-data",)
_ALLOWED = (b"POST",)
_JSON = b"application/json"


class PushOutcome(Protocol):
    """What ``mpush.services.pusher.PushResult`` carries (read by attribute)."""

    @property
    def user_id(self) -> str | None: ...
    @property
    def client_type(self) -> int | None: ...
    @property
    def result(self) -> str: ...
    @property
    def gateway(self) -> str | None: ...
    @property
    def ms(self) -> float: ...


class Pusher(Protocol):
    """What the resource needs of ``mpush.services.pusher.PushClient``."""

    def push(self, user_ids: Sequence[str], content: bytes, *, ack: str = ...,
             timeout_ms: int = ..., tags: Sequence[str] | None = ...,
             ) -> Deferred[list[Any]]: ...

    def broadcast(self, content: bytes, *, tags: Sequence[str] | None = ...,
                  condition: str | None = ..., task_id: str | None = ..., ack: str = ...,
                  timeout_ms: int | None = ...) -> Deferred[list[Any]]: ...


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
    ack: str = "none"
    timeout_ms: int | None = None  # None: the configured default


# ---------------------------------------------------------------- parsing


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    return "an object"


def _blank(text: str) -> bool:
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


def _refuse_constant(name: str) -> Any:
    raise BadRequest("body", f"body is not valid JSON: {name} is not a JSON number")


def _string(body: dict[str, Any], key: str) -> str | None:
    value = body.get(key)
    if value is None or isinstance(value, str):
        return value
    raise BadRequest(key, f"{key} must be a string, got {_json_type(value)}")


def _string_list(body: dict[str, Any], key: str) -> list[str] | None:
    value = body.get(key)
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise BadRequest(key, f"{key} must be a list of strings, got {_json_type(value)}"
                         if not isinstance(value, list) else
                         f"{key} must be a list of strings, one item is not a string")
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


def parse_push_body(raw: bytes) -> PushOrder:
    """Validate a ``/push`` body; raises `BadRequest` naming the field at fault.

    Fields (``null`` is the same as absent; unknown fields are ignored, as
    the Java alloc ignores them):

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
    if not raw.strip():
        raise BadRequest("body", "body is empty: send a JSON object")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadRequest("body", f"body is not valid UTF-8 (byte {exc.start})") from None
    try:
        body = json.loads(text.removeprefix("\ufeff"), object_pairs_hook=_no_duplicates,
                          parse_constant=_refuse_constant)
    except json.JSONDecodeError as exc:
        raise BadRequest(
            "body", f"body is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from None
    except RecursionError:
        raise BadRequest("body", "body is not valid JSON: nested too deeply") from None
    if not isinstance(body, dict):
        raise BadRequest("body", f"body must be a JSON object, got {_json_type(body)}")
    for key, value in body.items():
        # "\ud800" escapes decode to lone surrogates, which no UTF-8 push can carry.
        for field, part in (("body", key), (key, value)):
            try:
                json.dumps(part, ensure_ascii=False).encode("utf-8")
            except UnicodeEncodeError:
                raise BadRequest(field, f"{field} holds a lone surrogate (\\ud800-\\udfff"
                                 " escape), which is not valid Unicode text") from None

    broadcast = body.get("broadcast")
    if broadcast is None:
        broadcast = False
    elif not isinstance(broadcast, bool):
        raise BadRequest("broadcast",
                         f"broadcast must be true or false, got {_json_type(broadcast)}")

    user_id = _string(body, "userId")
    user_ids = _string_list(body, "userIds")
    targets: dict[str, None] = {}
    if not broadcast:
        if user_id is not None:
            if _blank(user_id):
                raise BadRequest("userId", "userId is empty")
            targets[user_id] = None
        for index, item in enumerate(user_ids or ()):
            if _blank(item):
                raise BadRequest("userIds", f"userIds[{index}] is empty")
            targets.setdefault(item)
        if not targets:
            raise BadRequest("userId", "no target: give userId, userIds or broadcast: true")

    hello = _string(body, "hello")
    content_value = body.get("content")
    content: bytes | None = None
    if content_value is not None:
        if hello is not None:
            raise BadRequest("content", "give hello or content, not both")
        if isinstance(content_value, str):
            content = content_value.encode("utf-8")
        elif isinstance(content_value, dict):
            content = json.dumps(content_value, ensure_ascii=False,
                                 separators=(",", ":")).encode("utf-8")
        else:
            raise BadRequest("content", "content must be a string or an object, got "
                             + _json_type(content_value))
        if not content:
            raise BadRequest("content", "content is empty")
    elif hello is None:
        raise BadRequest("content", "no content: give hello (Java alloc style) or content")

    msg_type = _integer(body, "msgType", 1, 3)
    if msg_type is not None and hello is None:
        raise BadRequest("msgType", "msgType applies to hello only; content is sent as is")

    tags = _string_list(body, "tags")
    if tags is not None:
        if not tags:
            # [] would be a filter matching no one; leaving it out means everyone.
            raise BadRequest("tags", "tags is empty: leave it out for no tag filter")
        for index, tag in enumerate(tags):
            if _blank(tag):
                raise BadRequest("tags", f"tags[{index}] is empty")

    condition = _string(body, "condition")
    if condition is not None and _blank(condition):
        condition = None  # the Java page sends "" for no condition
    task_id = _string(body, "taskId")
    if task_id is not None:
        if _blank(task_id):
            raise BadRequest("taskId", "taskId is empty")
        if not broadcast:
            raise BadRequest("taskId", "taskId applies to a broadcast only")

    ack = _string(body, "ackModel")
    if ack is None:
        ack = "none"
    elif ack not in ACK_MODELS:
        raise BadRequest("ackModel", f"ackModel must be one of none, auto, biz, got {ack!r}")

    return PushOrder(
        user_ids=tuple(targets),
        broadcast=broadcast,
        hello=hello,
        content=content,
        msg_type=3 if msg_type is None else msg_type,
        tags=None if tags is None else tuple(dict.fromkeys(tags)),
        condition=condition if broadcast else None,
        task_id=task_id,
        ack=ack,
        timeout_ms=_integer(body, "timeout", MIN_TIMEOUT_MS, MAX_TIMEOUT_MS),
    )


# ---------------------------------------------------------------- access


def _header(request: Request, name: bytes) -> str | None:
    value = request.getHeader(name)
    # Header bytes are not necessarily text; latin-1 maps each byte to one char.
    return None if value is None else value.decode("latin-1")


def _client_ip(request: Request) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    host = getattr(request.getClientAddress(), "host", None)
    if not isinstance(host, str):
        return None  # a UNIX socket or unknown transport: never on the allow-list
    try:
        ip = ipaddress.ip_address(host.partition("%")[0])
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped  # a dual-stack listener sees IPv4 clients as ::ffff:a.b.c.d
    return ip


def _host_port(netloc: str, default_port: int) -> tuple[str, int] | None:
    try:
        parts = urlsplit("//" + netloc)
        return (parts.hostname or "").lower(), parts.port or default_port
    except ValueError:
        return None


def _is_ip_or_localhost(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


class PushResource(Resource):
    """``POST /push``; answers once every outcome is known (NOT_DONE_YET).

    ``client`` is an ``mpush.services.pusher.PushClient``; ``token`` the push token
    (``mp.alloc.push-token``), ``allow`` the networks that may push without
    one (``mp.alloc.push-allow``); ``push_timeout`` (s) the default wait of a
    single-user push (a broadcast's default is the client's own).

    Limits: a request naming more than ``max_users`` distinct users is
    ``413`` (field ``userIds``). At most ``max_inflight`` user pushes are in
    flight (a broadcast counts as one): a request that would pass it is
    ``503`` with ``Retry-After: retry_after``, so nothing queues. A push
    counts from its start until its outcome is known, also when the HTTP
    client has left meanwhile (the push goes on); `inflight` is that count.
    """

    isLeaf = True
    log = Logger()

    def __init__(self, client: Pusher, *, token: str | None = None,
                 allow: Iterable[IPNetwork | str] = DEFAULT_PUSH_ALLOW,
                 push_timeout: float = DEFAULT_PUSH_TIMEOUT,
                 max_users: int = DEFAULT_MAX_USERS_PER_PUSH,
                 max_inflight: int = DEFAULT_MAX_INFLIGHT_PUSHES,
                 retry_after: int = DEFAULT_RETRY_AFTER) -> None:
        super().__init__()
        if max_users < 1 or max_inflight < max_users:
            # A request of max_users users must be admissible on an idle daemon.
            raise ValueError(f"need 1 <= max_users ({max_users})"
                             f" <= max_inflight ({max_inflight})")
        self._client = client
        self._token = None if token is None else token.encode("ascii")
        self._allow = tuple(ipaddress.ip_network(net) for net in allow)
        self._push_timeout_ms = max(MIN_TIMEOUT_MS, round(push_timeout * 1000))
        self.max_users = max_users
        self.max_inflight = max_inflight
        self._retry_after = b"%d" % retry_after
        self.inflight = 0  # user pushes (a broadcast: 1) whose outcome is not known yet
        self._sequence = 0  # the Java alloc's idSeq: msg_1 is the first push
        self.closing = False  # shutdown: new pushes are refused (503)
        # Outcomes answered, by result (a target each; a broadcast: a gateway each).
        self.outcomes: dict[str, int] = dict.fromkeys(RESULT_KINDS, 0)
        # Called with each known outcome's time since the push started (s): metrics.
        self.observe_push: Callable[[float], None] | None = None
        self._idle_waiters: list[Deferred[None]] = []
        # Requests whose answer is not written yet -> a function that writes
        # a last-resort answer (every target "timeout") for them.
        self._unanswered: dict[int, Callable[[], None]] = {}
        if self._token is not None:
            self.log.info("/push access: bearer token required (allow-list not applied)")
        else:
            networks = ", ".join(str(net) for net in self._allow) or "none"
            self.log.info("/push access: no token configured; clients from {networks} only",
                          networks=networks)

    # -- shutdown -------------------------------------------------------------

    @property
    def unanswered(self) -> int:
        """``/push`` requests whose answer is not written yet."""
        return len(self._unanswered)

    def when_idle(self) -> Deferred[None]:
        """Fires once no push is in flight (at once if none is)."""
        if self.inflight <= 0:
            return succeed(None)
        d: Deferred[None] = Deferred()
        self._idle_waiters.append(d)
        return d

    def answer_all_as_timeout(self) -> int:
        """Last resort at shutdown: answer every unanswered request now.

        Each target of such a request is reported ``"timeout"`` (a
        broadcast: one row without a gateway); outcomes arriving later are
        only logged. Returns how many requests were answered this way.
        """
        forced = list(self._unanswered.values())
        for force in forced:
            force()
        return len(forced)

    def _released(self, cost: int) -> None:
        self.inflight -= cost
        if self.inflight <= 0 and self._idle_waiters:
            waiters, self._idle_waiters = self._idle_waiters, []
            for d in waiters:
                d.callback(None)

    # -- the request --------------------------------------------------------

    def render(self, request: Request) -> bytes | int:
        if request.postpath:
            # Leaf: "/push/" and "/push/x" land here too; only "/push" is the API.
            path = request.path.decode("utf-8", "replace")
            return json_error(request, 404, f"no resource at {path}")
        if request.method != b"POST":
            return method_not_allowed(request, _ALLOWED)
        if self.closing:
            request.setHeader(b"retry-after", self._retry_after)
            return json_error(request, 503, "the daemon is stopping: push through another one")
        refusal = self._check_access(request)
        if refusal is not None:
            return refusal
        ctype = (_header(request, b"content-type") or "").split(";")[0].strip().lower()
        if ctype.encode() in _FORM_TYPES:
            # Never what the Java page sends, and a cross-site form's shape.
            # (urlencoded is let through: `curl -d '{json}'` sends that type,
            # and a real form body fails the JSON parse anyway.)
            return json_error(request, 415, f"{ctype} bodies are not accepted: send JSON",
                              field="body")
        request.content.seek(0)
        try:
            order = parse_push_body(request.content.read())
        except BadRequest as exc:
            return json_error(request, 400, exc.message, field=exc.field)
        if len(order.user_ids) > self.max_users:
            # Too large in meaning rather than in bytes: refused before any
            # Redis or gateway traffic.
            return json_error(
                request, 413, f"{len(order.user_ids)} users in one push, over the limit of"
                f" {self.max_users} (mp.alloc.max-users-per-push): split the request",
                field="userIds", limit=self.max_users)
        cost = 1 if order.broadcast else len(order.user_ids)
        if self.inflight + cost > self.max_inflight:
            # Refuse rather than queue: a queue would only grow while the
            # gateways are slow, and every waiting push would time out anyway.
            request.setHeader(b"retry-after", self._retry_after)
            return json_error(
                request, 503, f"too many pushes in flight (limit {self.max_inflight},"
                " mp.alloc.max-inflight-pushes): retry later", limit=self.max_inflight)
        return self._send(request, order, cost)

    def _send(self, request: Request, order: PushOrder, cost: int) -> bytes | int:
        content = self._content(order)
        self.inflight += cost  # before the call: its Deferred may fire at once
        try:
            if order.broadcast:
                d = self._client.broadcast(
                    content, tags=order.tags, condition=order.condition,
                    task_id=order.task_id, ack=order.ack, timeout_ms=order.timeout_ms)
            else:
                d = self._client.push(
                    order.user_ids, content, ack=order.ack,
                    timeout_ms=order.timeout_ms or self._push_timeout_ms, tags=order.tags)
        except PacketTooLarge as exc:
            self.inflight -= cost
            return json_error(request, 413, str(exc), field="content")
        except ValueError as exc:
            self.inflight -= cost
            # The client's own checks; ours above should have caught these.
            return json_error(request, 400, str(exc), field=None)
        except BaseException:
            self.inflight -= cost
            raise

        def release(passthrough: Any) -> Any:
            # The outcome is known (whether or not anyone waits for it).
            self._released(cost)
            return passthrough

        d.addBoth(release)
        gone: list[bool] = []
        key = id(request)

        def disconnected(reason: Failure) -> None:
            gone.append(True)

        request.notifyFinish().addErrback(disconnected)
        peer = _client_ip(request)

        def force() -> None:
            # Shutdown, and the outcomes are still not known: say timeout.
            targets: Sequence[str | None] = (None,) if order.broadcast else order.user_ids
            answer([_Forced(user) for user in targets])

        def answer(results: list[PushOutcome]) -> None:
            if self._unanswered.pop(key, None) is None:
                if not gone:
                    self.log.info("push from {peer}: outcome after the shutdown answer: {n}"
                                  " result(s) dropped", peer=str(peer), n=len(results))
                return
            rows = [_row(r) for r in results]
            self._count(results)
            summary = dict.fromkeys(RESULT_KINDS, 0)
            for row in rows:
                summary[row["result"]] = summary.get(row["result"], 0) + 1
            if order.broadcast or gone:
                # Not every push: at thousands a second one line each would
                # flood the log (the access log, when on, has every request).
                self.log.info(
                    "push from {peer}: {what} -> {summary}{left}", peer=str(peer),
                    what="broadcast" if order.broadcast else f"{len(order.user_ids)} user(s)",
                    summary=" ".join(f"{k}={v}" for k, v in summary.items()),
                    left=" (client left before the answer)" if gone else "")
            if gone:
                return  # the client left: the outcome is logged, nobody to tell
            body = json.dumps({"results": rows, "summary": summary}, ensure_ascii=False,
                              separators=(",", ":")).encode("utf-8")
            request.setHeader(b"content-type", _JSON)
            request.setHeader(b"cache-control", b"no-store")
            _finish(request, body)

        def failed(reason: Failure) -> None:
            if self._unanswered.pop(key, None) is None:
                return  # answered already (shutdown) or the client left
            if reason.check(PacketTooLarge):
                status, message, extra = 413, reason.getErrorMessage(), {"field": "content"}
            else:
                self.log.failure("push failed", reason)
                status, message, extra = 500, "push failed: internal error", {}
            if not gone:
                _finish(request, json_error(request, status, message, **extra))

        self._unanswered[key] = force
        d.addCallbacks(answer, failed)
        d.addErrback(lambda f: self.log.failure("writing the /push answer", f))
        return NOT_DONE_YET

    def _count(self, results: list[PushOutcome]) -> None:
        outcomes = self.outcomes
        observe = self.observe_push
        for r in results:
            result = r.result
            if result in outcomes:  # always, for PushClient's results; kept bounded anyway
                outcomes[result] += 1
            if observe is not None and not isinstance(r, _Forced):
                observe(float(r.ms) / 1000.0)

    def _content(self, order: PushOrder) -> bytes:
        if order.content is not None:
            return order.content
        # Java's AtomicInteger: counts every push, wraps past INT32_MAX.
        self._sequence = self._sequence + 1 if self._sequence < INT32_MAX else INT32_MIN
        content = java_alloc_content(order.hello, self._sequence)
        if order.msg_type != 3:
            assert content.endswith(_JAVA_MSG_TYPE)
            content = content[: -len(_JAVA_MSG_TYPE)] + b',"msgType":%d}' % order.msg_type
        return content

    # -- access ---------------------------------------------------------------

    def _check_access(self, request: Request) -> bytes | None:
        if self._token is not None:
            scheme, _, given = (_header(request, b"authorization") or "").partition(" ")
            # Compared as bytes in constant time; the scheme is case-insensitive.
            if scheme.lower() == "bearer" and hmac.compare_digest(
                given.strip().encode("latin-1"), self._token
            ):
                return None
            request.setHeader(b"www-authenticate", b'Bearer realm="mpush-alloc"')
            message = ("wrong push token" if scheme.lower() == "bearer" and given.strip()
                       else "a push token is required: Authorization: Bearer <token>")
            return json_error(request, 401, message)
        ip = _client_ip(request)
        if ip is None or not any(ip in net for net in self._allow):
            return json_error(
                request, 403,
                f"{ip} may not push: not in mp.alloc.push-allow and no push token configured")
        return self._check_origin(request)

    def _check_origin(self, request: Request) -> bytes | None:
        # Address-based access trusts whatever runs on an allowed machine,
        # browsers included: refuse what a browser sends on behalf of another
        # site (it always sends Origin with a POST), and pages reached by a
        # DNS name, which a rebinding attack can point at us.
        origin = _header(request, b"origin")
        if origin is None:
            return None  # not a browser: curl, scripts, the Java client
        parts = urlsplit(origin) if origin != "null" else None
        default = 443 if request.isSecure() else 80
        own = _host_port(_header(request, b"host") or "", default)
        theirs = None
        if parts is not None and parts.scheme == ("https" if request.isSecure() else "http"):
            theirs = _host_port(parts.netloc, default)
        if theirs is None or own is None or theirs != own:
            return json_error(request, 403, f"cross-origin push refused (Origin {origin})")
        if not _is_ip_or_localhost(own[0]):
            return json_error(
                request, 403,
                f"browser push through the name {own[0]!r} refused without a push token:"
                " open the page by IP address or configure mp.alloc.push-token")
        return None


def _finish(request: Request, body: bytes) -> None:
    # A length rather than chunked encoding: simpler for every client.
    request.setHeader(b"content-length", b"%d" % len(body))
    request.write(body)
    request.finish()


@dataclass(frozen=True)
class _Forced:
    """The row of a target whose outcome was not known at shutdown."""

    user_id: str | None
    client_type: int | None = None
    result: str = "timeout"
    gateway: str | None = None
    ms: float = 0.0


def _row(result: PushOutcome) -> dict[str, Any]:
    return {
        "userId": result.user_id,
        "clientType": result.client_type,
        "result": result.result,
        "gateway": result.gateway,
        "ms": round(float(result.ms), 1),
    }
