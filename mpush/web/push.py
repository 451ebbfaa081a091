"""``POST /push``: send a push through the gateways and answer with every outcome.

The body is JSON. What the Java alloc's page posts is accepted as it is
(``{"userId","hello","broadcast","condition"}``, sent as ``text/plain`` with
a misspelt ``context-type`` header, ``condition: ""``, ``userId`` together
with ``broadcast: true``), and so are our additions; see
:func:`mpush.web.push_body.parse_push_body`. Unlike the Java alloc, the
answer waits for the outcomes: ``{"results": [...], "summary": {...}}``.

Access (:mod:`mpush.web.push_access`): with a push token configured,
``Authorization: Bearer <token>`` alone decides; without one, the client's
address must be in the allow-list networks, and browser requests must come
from this server's own page.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from twisted.internet.defer import Deferred, succeed
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request

from mpush.outcomes import PushOutcome
from mpush.web.errors import json_error, method_not_allowed
from mpush.web.push_access import IPNetwork, PushAccess, client_ip, header
from mpush.web.push_body import BadRequest, PushOrder, parse_push_body
from mpush.wire.codec import (
    INT32_MAX,
    INT32_MIN,
    MIN_TIMEOUT_MS,
    PacketTooLarge,
    java_alloc_content,
)

__all__ = ["PushResource"]

_JAVA_MSG_TYPE = b',"msgType":3}'  # how java_alloc_content ends (MsgType 3)
_FORM_TYPES = (b"multipart/form-data",)
_ALLOWED = (b"POST",)
_JSON = b"application/json"


class ResultLike(Protocol):
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
                 allow: Iterable[IPNetwork | str], push_timeout: float, max_users: int,
                 max_inflight: int, retry_after: int) -> None:
        super().__init__()
        if max_users < 1 or max_inflight < max_users:
            # A request of max_users users must be admissible on an idle daemon.
            raise ValueError(f"need 1 <= max_users ({max_users})"
                             f" <= max_inflight ({max_inflight})")
        self._client = client
        self._access = PushAccess(token=token, allow=allow)
        self._push_timeout_ms = max(MIN_TIMEOUT_MS, round(push_timeout * 1000))
        self.max_users = max_users
        self.max_inflight = max_inflight
        self._retry_after = b"%d" % retry_after
        self.inflight = 0  # user pushes (a broadcast: 1) whose outcome is not known yet
        self._sequence = 0  # the Java alloc's idSeq: msg_1 is the first push
        self.closing = False  # shutdown: new pushes are refused (503)
        # Outcomes answered, by result (a target each; a broadcast: a gateway each).
        self.outcomes: dict[str, int] = dict.fromkeys(PushOutcome, 0)
        # Called with each known outcome's time since the push started (s): metrics.
        self.observe_push: Callable[[float], None] | None = None
        self._idle_waiters: list[Deferred[None]] = []
        # Requests whose answer is not written yet -> a function that writes
        # a last-resort answer (every target "timeout") for them.
        self._unanswered: dict[int, Callable[[], None]] = {}
        if self._access.token is not None:
            self.log.info("/push access: bearer token required (allow-list not applied)")
        else:
            networks = ", ".join(str(net) for net in self._access.allow) or "none"
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
        refusal = self._access.check(request)
        if refusal is not None:
            return refusal
        ctype = (header(request, b"content-type") or "").split(";")[0].strip().lower()
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
        peer = client_ip(request)

        def force() -> None:
            # Shutdown, and the outcomes are still not known: say timeout.
            targets: Sequence[str | None] = (None,) if order.broadcast else order.user_ids
            answer([_Forced(user) for user in targets])

        def answer(results: list[ResultLike]) -> None:
            if self._unanswered.pop(key, None) is None:
                if not gone:
                    self.log.info("push from {peer}: outcome after the shutdown answer: {n}"
                                  " result(s) dropped", peer=str(peer), n=len(results))
                return
            rows = [_row(r) for r in results]
            self._count(results)
            summary = dict.fromkeys(PushOutcome, 0)
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

    def _count(self, results: list[ResultLike]) -> None:
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
    result: PushOutcome = PushOutcome.TIMEOUT
    gateway: str | None = None
    ms: float = 0.0


def _row(result: ResultLike) -> dict[str, Any]:
    return {
        "userId": result.user_id,
        "clientType": result.client_type,
        "result": result.result,
        "gateway": result.gateway,
        "ms": round(float(result.ms), 1),
    }
