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

The resource parses, checks access and asks the push client's admission
(:class:`mpush.services.admission.PushAdmission`) for room; the client
counts the push in flight, its outcomes, and ends it at shutdown.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.server import NOT_DONE_YET, Request

from mpush.interfaces import Pusher, PushOutcomeRow
from mpush.outcomes import PushOutcome
from mpush.services.admission import PushRefused
from mpush.web.base import JsonLeaf
from mpush.web.errors import json_error
from mpush.web.push_access import IPNetwork, PushAccess, client_ip, header
from mpush.web.push_body import BadRequest, PushOrder, parse_push_body
from mpush.wire import (
    INT32_MAX,
    INT32_MIN,
    MIN_TIMEOUT_MS,
    PacketTooLarge,
    java_alloc_content,
)

__all__ = ["PushResource"]

_JAVA_MSG_TYPE = b',"msgType":3}'  # how java_alloc_content ends (MsgType 3)
_FORM_TYPES = (b"multipart/form-data",)
_JSON = b"application/json"


class PushResource(JsonLeaf):
    """``POST /push``; answers once every outcome is known (NOT_DONE_YET).

    ``client`` is an ``mpush.services.pusher.PushClient``; ``token`` the push token
    (``mp.alloc.push-token``), ``allow`` the networks that may push without
    one (``mp.alloc.push-allow``); ``push_timeout`` (s) the default wait of a
    single-user push (a broadcast's default is the client's own).

    Limits: a request naming more than ``max_users`` distinct users is
    ``413`` (field ``userIds``). A request the client's admission has no
    room for (``client.admission.max_inflight`` user pushes in flight, a
    broadcast counting one) is ``503`` with ``Retry-After: retry_after``, so
    nothing queues; so is every request once the client is closing.
    """

    log = Logger()

    def __init__(self, client: Pusher, *, token: str | None = None,
                 allow: Iterable[IPNetwork | str], push_timeout: float, max_users: int,
                 retry_after: int) -> None:
        super().__init__()
        max_inflight = client.admission.max_inflight
        if max_users < 1 or max_inflight < max_users:
            # A request of max_users users must be admissible on an idle daemon.
            raise ValueError(f"need 1 <= max_users ({max_users})"
                             f" <= max_inflight ({max_inflight})")
        self.client = client
        self._access = PushAccess(token=token, allow=allow)
        self._push_timeout_ms = max(MIN_TIMEOUT_MS, round(push_timeout * 1000))
        self.max_users = max_users
        self._retry_after = b"%d" % retry_after
        self._sequence = 0  # the Java alloc's idSeq: msg_1 is the first push
        if self._access.token is not None:
            self.log.info("/push access: bearer token required (allow-list not applied)")
        else:
            networks = ", ".join(str(net) for net in self._access.allow) or "none"
            self.log.info("/push access: no token configured; clients from {networks} only",
                          networks=networks)

    def refuses_from_head(self, request: Request, method: bytes) -> bool:
        """Whether a request is refused whatever its body: the Site then serves it
        before reading the body (``render_POST`` answers the refusal)."""
        if method != b"POST":
            return False
        # check() sets the refusal's status and headers: the render sets the same.
        return self.client.admission.closing or self._access.check(request) is not None

    def render_POST(self, request: Request) -> bytes | int:
        if self.client.admission.closing:
            return self._unavailable(request, closing=True)
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
        if not self.client.admission.admits(order.cost):
            # Asked before the content is made: a refused push takes no message number.
            return self._unavailable(request, closing=False)
        return self._send(request, order)

    def _unavailable(self, request: Request, *, closing: bool) -> bytes:
        """503 + Retry-After: the client is closing, or has no room for this push."""
        request.setHeader(b"retry-after", self._retry_after)
        if closing:
            return json_error(request, 503, "the daemon is stopping: push through another one")
        limit = self.client.admission.max_inflight
        return json_error(
            request, 503, f"too many pushes in flight (limit {limit},"
            " mp.alloc.max-inflight-pushes): retry later", limit=limit)

    def _send(self, request: Request, order: PushOrder) -> bytes | int:
        content = self._content(order)
        try:
            d = self._call(order, content)
        except PacketTooLarge as exc:
            return json_error(request, 413, str(exc), field="content")
        except ValueError as exc:
            # The client's own checks; ours above should have caught these.
            return json_error(request, 400, str(exc), field=None)
        except PushRefused as exc:
            return self._unavailable(request, closing=exc.closing)  # admitted just above
        _PushExchange(request, order, self.log).wait(d)
        return NOT_DONE_YET

    def _call(self, order: PushOrder, content: bytes) -> Deferred[list[Any]]:
        if order.broadcast:
            return self.client.broadcast(
                content, tags=order.tags, condition=order.condition,
                task_id=order.task_id, ack=order.ack, timeout_ms=order.timeout_ms)
        return self.client.push(
            order.user_ids, content, ack=order.ack,
            timeout_ms=order.timeout_ms or self._push_timeout_ms, tags=order.tags)

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


class _PushExchange:
    """One admitted ``/push`` request, from the push call to its answer.

    The push goes on if the HTTP client leaves: its outcome is then only
    logged. The client fires the push's Deferred once (at shutdown with
    every target ``timeout``), so the answer is written at most once.
    """

    def __init__(self, request: Request, order: PushOrder, log: Logger) -> None:
        self.request = request
        self.order = order
        self.log = log
        self.gone = False  # the HTTP client left before the answer
        self.peer = client_ip(request)
        request.notifyFinish().addErrback(self._disconnected)

    def wait(self, d: Deferred[list[Any]]) -> None:
        d.addCallbacks(self._answer, self._failed)
        d.addErrback(lambda f: self.log.failure("writing the /push answer", f))

    def _disconnected(self, reason: Failure) -> None:
        self.gone = True

    def _answer(self, results: list[PushOutcomeRow]) -> None:
        rows = [_row(r) for r in results]
        summary = dict.fromkeys(PushOutcome, 0)
        for row in rows:
            summary[row["result"]] = summary.get(row["result"], 0) + 1
        if self.order.broadcast or self.gone:
            self._log_summary(summary)
        if self.gone:
            return  # the client left: the outcome is logged, nobody to tell
        body = json.dumps({"results": rows, "summary": summary}, ensure_ascii=False,
                          separators=(",", ":")).encode("utf-8")
        self.request.setHeader(b"content-type", _JSON)
        self.request.setHeader(b"cache-control", b"no-store")
        _finish(self.request, body)

    def _log_summary(self, summary: dict[str, int]) -> None:
        # Not every push: at thousands a second one line each would flood
        # the log (the access log, when on, has every request).
        order = self.order
        self.log.info(
            "push from {peer}: {what} -> {summary}{left}", peer=str(self.peer),
            what="broadcast" if order.broadcast else f"{len(order.user_ids)} user(s)",
            summary=" ".join(f"{k}={v}" for k, v in summary.items()),
            left=" (client left before the answer)" if self.gone else "")

    def _failed(self, reason: Failure) -> None:
        if reason.check(PacketTooLarge):
            status, message, extra = 413, reason.getErrorMessage(), {"field": "content"}
        else:
            self.log.failure("push failed", reason)
            status, message, extra = 500, "push failed: internal error", {}
        if not self.gone:
            _finish(self.request, json_error(self.request, status, message, **extra))


def _finish(request: Request, body: bytes) -> None:
    # A length rather than chunked encoding: simpler for every client.
    request.setHeader(b"content-length", b"%d" % len(body))
    request.write(body)
    request.finish()


def _row(result: PushOutcomeRow) -> dict[str, Any]:
    return {
        "userId": result.user_id,
        "clientType": result.client_type,
        "result": result.result,
        "gateway": result.gateway,
        "ms": round(float(result.ms), 1),
        "reason": result.reason,
        "code": result.code,
    }
