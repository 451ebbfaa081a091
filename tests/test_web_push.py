"""``POST /push``, ``/index.html`` and the request-size limit, through a real Site.

Most tests feed raw HTTP to the Site's channel over a StringTransport (the
fake push client answers at once unless told otherwise); the address and
size tests that need real sockets use a listening port on loopback.
"""

from __future__ import annotations

import ipaddress
import json
import re
import socket
import sys
from collections.abc import Iterator
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import reactor, threads
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.logger import LogEvent, globalLogPublisher

from mpush.outcomes import PushReason
from mpush.web.openapi import build_document
from mpush.web.page import load_page
from mpush.web.push_body import FIELDS, JAVA_ALLOC_FIELDS
from mpush.web.root import RootResource
from mpush.web.site import AllocSite
from mpush.wire import PacketTooLarge, java_alloc_content
from tests.fakes import (
    SITE_REQUEST_LIMIT,
    TOKEN,
    FakePushClient,
    FixedAllocator,
    make_site,
    push_resource,
)
from tests.http_exchange import connect, http_post, split

LIMIT = SITE_REQUEST_LIMIT  # make_site's default max_request_size



def post(site: AllocSite, body: bytes | dict[str, Any], headers: dict[str, str] | None = None,
         peer: IPv4Address | IPv6Address | None = None, path: str = "/push",
         method: str = "POST") -> tuple[int, dict[str, str], Any]:
    raw_body = body if isinstance(body, bytes) else json.dumps(body).encode()
    ex = connect(site, peer)
    ex.feed(http_post(raw_body, headers, path, method))
    status, head, payload = split(ex.raw)
    is_json = head.get("content-type") == "application/json" and payload  # HEAD: no body
    parsed = json.loads(payload) if is_json else payload
    return status, head, parsed


@pytest.fixture
def client() -> FakePushClient:
    return FakePushClient()


@pytest.fixture
def site(client: FakePushClient) -> AllocSite:
    return make_site(client)


@pytest.fixture
def log_events() -> Iterator[list[LogEvent]]:
    events: list[LogEvent] = []
    globalLogPublisher.addObserver(events.append)
    yield events
    globalLogPublisher.removeObserver(events.append)


# ------------------------------------------------------------ Java alloc page

# Exactly what the Java alloc's index.html sends: XMLHttpRequest with a
# misspelt "context-type" header, so the string body goes as text/plain.
JAVA_PAGE_HEADERS = {
    "context-type": "application/json; charset=utf-8",
    "Content-Type": "text/plain;charset=UTF-8",
    "Origin": "http://127.0.0.1:9999",
}
JAVA_PAGE_BODY = b'{"userId":"user-0","hello":"hello mpush","broadcast":false,"condition":""}'


def test_java_page_body_is_pushed_wrapped_like_the_java_alloc(
    site: AllocSite, client: FakePushClient
) -> None:
    status, headers, body = post(site, JAVA_PAGE_BODY, JAVA_PAGE_HEADERS)
    assert status == 200
    assert headers["content-type"] == "application/json"
    assert client.calls == [("push", ["user-0"], java_alloc_content("hello mpush", 1),
                             {"ack": "none", "timeout_ms": 3000, "tags": None})]
    assert body == {
        "results": [{"userId": "user-0", "clientType": 1, "result": "success",
                     "gateway": "10.0.0.5:3001", "ms": 12.3, "reason": None, "code": None}],
        "summary": {"success": 1, "failure": 0, "offline": 0, "timeout": 0},
    }


def test_the_message_number_counts_pushes_from_one(
    site: AllocSite, client: FakePushClient
) -> None:
    for _ in range(3):
        assert post(site, JAVA_PAGE_BODY, JAVA_PAGE_HEADERS)[0] == 200
    contents = [call[2] for call in client.calls]
    assert contents == [java_alloc_content("hello mpush", n) for n in (1, 2, 3)]
    assert b'"msgId":"msg_2"' in contents[1]


def test_the_message_number_wraps_like_a_java_int(client: FakePushClient) -> None:
    resource = push_resource(client)
    resource._sequence = 2**31 - 1  # as after 2^31 - 1 pushes
    root = RootResource(FixedAllocator())
    root.putChild(b"push", resource)
    assert post(AllocSite(root), JAVA_PAGE_BODY)[0] == 200
    assert client.calls[0][2] == java_alloc_content("hello mpush", -(2**31))


def test_java_page_broadcast_wins_over_its_user_id(
    site: AllocSite, client: FakePushClient
) -> None:
    body = b'{"userId":"user-0","hello":"hi","broadcast":true,"condition":""}'
    status, _, answer = post(site, body, JAVA_PAGE_HEADERS)
    assert status == 200
    kind, _, content, options = client.calls[0]
    assert kind == "broadcast"
    assert content == java_alloc_content("hi", 1)
    assert options == {"tags": None, "condition": None, "task_id": None, "ack": "none",
                       "timeout_ms": None}
    # One result per gateway, no user.
    assert [(r["userId"], r["gateway"], r["result"]) for r in answer["results"]] == [
        (None, "10.0.0.5:3001", "success"), (None, "10.0.0.6:3001", "timeout")]
    assert answer["summary"] == {"success": 1, "failure": 0, "offline": 0, "timeout": 1}


def test_broadcast_condition_and_options_are_passed_on(
    site: AllocSite, client: FakePushClient
) -> None:
    status, _, _ = post(site, {
        "broadcast": True, "content": "raw", "condition": "tags.indexOf('vip')>=0",
        "tags": ["vip", "beta", "vip"], "taskId": "task-7", "ackModel": "biz", "timeout": 60000,
    })
    assert status == 200
    assert client.calls == [("broadcast", None, b"raw", {
        "tags": ("vip", "beta"), "condition": "tags.indexOf('vip')>=0", "task_id": "task-7",
        "ack": "biz", "timeout_ms": 60000})]


def test_every_field_the_java_alloc_reads_is_accepted(
    site: AllocSite, client: FakePushClient
) -> None:
    # mpusher/alloc's PushHandler reads userId, hello, broadcast and condition
    # (every version; its page sends these four) and ignores anything else.
    assert JAVA_ALLOC_FIELDS == ("userId", "hello", "broadcast", "condition")
    single = {"userId": "u", "hello": "x", "broadcast": False, "condition": "",
              "userIds": ["v"], "msgType": 1, "tags": ["t"], "ackModel": "auto",
              "timeout": 5000}
    broadcast = {"broadcast": True, "content": "raw", "condition": "true", "taskId": "t"}
    assert set(single) | set(broadcast) == set(FIELDS)
    for body in (single, broadcast):
        status, _, answer = post(site, body)
        assert status == 200, answer
    assert [call[0] for call in client.calls] == ["push", "broadcast"]
    # The OpenAPI document lists the same fields, and no other.
    schema = build_document()["components"]["schemas"]["PushRequest"]
    assert set(schema["properties"]) == set(FIELDS)
    assert schema["additionalProperties"] is False


def test_condition_is_ignored_on_a_single_push(site: AllocSite, client: FakePushClient) -> None:
    # As the Java alloc: its page sends the condition field whatever the target.
    assert post(site, {"userId": "u", "hello": "x", "condition": "true"})[0] == 200
    assert client.calls[0][0] == "push"


# ------------------------------------------------------------ our additions


def test_user_id_and_user_ids_are_united_in_order(
    site: AllocSite, client: FakePushClient
) -> None:
    status, _, answer = post(site, {"userId": "b", "userIds": ["a", "b", "c", "a"],
                                    "content": "x"})
    assert status == 200
    assert client.calls[0][1] == ["b", "a", "c"]
    assert [r["userId"] for r in answer["results"]] == ["b", "a", "c"]


def test_content_string_is_sent_as_its_utf8_bytes(
    site: AllocSite, client: FakePushClient
) -> None:
    assert post(site, {"userId": "u", "content": "héllo ✓"})[0] == 200
    assert client.calls[0][2] == "héllo ✓".encode()


def test_content_object_is_sent_as_compact_json(
    site: AllocSite, client: FakePushClient
) -> None:
    body = b'{"userId": "u", "content": {"z": 1, "a": {"t\\u00e9": [1, 2]}, "n": null}}'
    assert post(site, body)[0] == 200
    assert client.calls[0][2] == '{"z":1,"a":{"té":[1,2]},"n":null}'.encode()


def test_msg_type_changes_the_java_wrapping(site: AllocSite, client: FakePushClient) -> None:
    assert post(site, {"userId": "u", "hello": "x", "msgType": 1})[0] == 200
    expected = java_alloc_content("x", 1).replace(b'"msgType":3}', b'"msgType":1}')
    assert client.calls[0][2] == expected


def test_single_push_options_are_passed_on(site: AllocSite, client: FakePushClient) -> None:
    status, _, _ = post(site, {"userIds": ["u"], "hello": "x", "tags": ["t"],
                               "ackModel": "auto", "timeout": 1000})
    assert status == 200
    assert client.calls[0][3] == {"ack": "auto", "timeout_ms": 1000, "tags": ("t",)}


def test_all_offline_is_still_200_with_every_outcome(client: FakePushClient) -> None:
    client.outcomes = {"a": "offline", "b": "offline"}
    status, _, answer = post(make_site(client), {"userIds": ["a", "b"], "hello": "x"})
    assert status == 200
    assert answer["summary"] == {"success": 0, "failure": 0, "offline": 2, "timeout": 0}
    assert answer["results"][0] == {"userId": "a", "clientType": None, "result": "offline",
                                    "gateway": None, "ms": 0.4, "reason": "no_route",
                                    "code": None}


def test_mixed_outcomes_are_counted(client: FakePushClient) -> None:
    client.outcomes = {"a": "failure", "b": "timeout", "c": "offline"}
    _, _, answer = post(make_site(client), {"userIds": ["a", "b", "c", "d"], "hello": "x"})
    assert answer["summary"] == {"success": 1, "failure": 1, "offline": 1, "timeout": 1}


# ------------------------------------------------------------ 400s

BAD_BODIES: list[tuple[str, bytes, str, str]] = [
    ("invalid-json", b'{"userId": "u", "hello": ', "body", "not valid JSON"),
    ("invalid-utf8", b'{"userId": "u\xff", "hello": "x"}', "body", "not valid UTF-8"),
    ("empty", b"", "body", "body is empty"),
    ("not-an-object", b'["u", "x"]', "body", "must be a JSON object, got a list"),
    # Numbers json.loads takes but no push can carry: each names its field.
    ("nan", b'{"userId": "u", "hello": "x", "timeout": NaN}', "timeout", "timeout holds NaN"),
    ("content-nan", b'{"userId": "u", "content": {"a": [NaN]}}', "content", "holds NaN"),
    ("content-infinity", b'{"userId": "u", "content": {"a": Infinity}}', "content",
     "holds Infinity"),
    ("content-minus-infinity", b'{"userId": "u", "content": {"a": -Infinity}}', "content",
     "holds -Infinity"),
    ("content-1e999", b'{"userId": "u", "content": {"a": 1e999}}', "content",
     "content holds 1e999, beyond the range of a double"),
    ("content-minus-1e999", b'{"userId": "u", "content": {"a": -1e999}}', "content",
     "holds -1e999"),
    ("number-body", b"1e999", "body", "must be a JSON object, got a number"),
    ("surrogate-user", b'{"userId": "\\ud800", "hello": "x"}', "userId", "lone surrogate"),
    ("surrogate-content", b'{"userId": "u", "content": {"k": "\\udfff"}}', "content",
     "lone surrogate"),
    ("surrogate-key", b'{"userId": "u", "hello": "x", "\\ud800": 1}', "body", "lone surrogate"),
    ("duplicate-key", b'{"userId": "u", "userId": "v", "hello": "x"}', "userId", "twice"),
    ("user-number", b'{"userId": 5, "hello": "x"}', "userId", "must be a string, got a number"),
    ("user-empty", b'{"userId": "", "hello": "x"}', "userId", "userId is empty"),
    ("user-blank", b'{"userId": " \\t", "hello": "x"}', "userId", "userId is empty"),
    ("user-ids-string", b'{"userIds": "a,b", "hello": "x"}', "userIds", "list of strings"),
    ("user-ids-item", b'{"userIds": ["a", 1], "hello": "x"}', "userIds", "not a string"),
    ("user-ids-blank", b'{"userIds": ["a", " "], "hello": "x"}', "userIds", "userIds[1] is empty"),
    ("no-target", b'{"hello": "x"}', "userId", "no target"),
    ("no-target-empty-list", b'{"userIds": [], "hello": "x"}', "userId", "no target"),
    ("no-content", b'{"userId": "u"}', "content", "no content"),
    ("hello-and-content", b'{"userId": "u", "hello": "x", "content": "y"}', "content",
     "not both"),
    ("hello-number", b'{"userId": "u", "hello": 5}', "hello", "must be a string"),
    ("content-number", b'{"userId": "u", "content": 5}', "content", "string or an object"),
    ("content-list", b'{"userId": "u", "content": [1]}', "content", "string or an object"),
    ("content-empty", b'{"userId": "u", "content": ""}', "content", "content is empty"),
    ("broadcast-string", b'{"broadcast": "true", "hello": "x"}', "broadcast",
     "must be true or false"),
    ("tags-string", b'{"userId": "u", "hello": "x", "tags": "a"}', "tags", "list of strings"),
    ("tags-numbers", b'{"userId": "u", "hello": "x", "tags": [1]}', "tags", "not a string"),
    ("tags-empty", b'{"userId": "u", "hello": "x", "tags": []}', "tags", "tags is empty"),
    ("tags-blank", b'{"userId": "u", "hello": "x", "tags": [""]}', "tags", "tags[0] is empty"),
    ("condition-number", b'{"broadcast": true, "hello": "x", "condition": 1}', "condition",
     "must be a string"),
    ("task-id-single", b'{"userId": "u", "hello": "x", "taskId": "t"}', "taskId",
     "broadcast only"),
    ("task-id-number", b'{"broadcast": true, "hello": "x", "taskId": 7}', "taskId",
     "must be a string"),
    ("ack-model", b'{"userId": "u", "hello": "x", "ackModel": "always"}', "ackModel",
     "none, auto, biz"),
    ("timeout-string", b'{"userId": "u", "hello": "x", "timeout": "5000"}', "timeout",
     "must be an integer, got a string"),
    ("timeout-float", b'{"userId": "u", "hello": "x", "timeout": 1500.5}', "timeout",
     "must be an integer"),
    ("timeout-bool", b'{"userId": "u", "hello": "x", "timeout": true}', "timeout",
     "must be an integer, got a boolean"),
    ("timeout-low", b'{"userId": "u", "hello": "x", "timeout": 999}', "timeout",
     "between 1000 and"),
    ("timeout-high", b'{"userId": "u", "hello": "x", "timeout": 86400001}', "timeout",
     "between 1000 and"),
    ("msg-type-with-content", b'{"userId": "u", "content": "x", "msgType": 1}', "msgType",
     "hello only"),
    ("msg-type-range", b'{"userId": "u", "hello": "x", "msgType": 4}', "msgType",
     "between 1 and 3"),
    # An unknown field is named, with the closest known one; it comes before
    # the other checks, so that a misspelt target is named as such.
    ("unknown-ack-model", b'{"userId":"demo-0","hello":"x","ackmodel":"auto"}', "ackmodel",
     "unknown field 'ackmodel': did you mean ackModel?"),
    ("unknown-user-id", b'{"hello": "x", "userid": "u"}', "userid",
     "unknown field 'userid': did you mean userId?"),
    ("unknown-user-ids", b'{"user_ids": ["u"], "hello": "x"}', "user_ids",
     "did you mean userIds?"),
    ("unknown-far", b'{"userId": "u", "hello": "x", "title": "t"}', "title",
     "unknown field 'title': the fields are userId, hello, broadcast, condition, userIds,"),
    ("unknown-null", b'{"userId": "u", "hello": "x", "tag": null}', "tag", "did you mean tags?"),
]


@pytest.mark.parametrize(("body", "field_name", "fragment"),
                         [b[1:] for b in BAD_BODIES], ids=[b[0] for b in BAD_BODIES])
def test_bad_bodies_are_400_naming_the_field(
    site: AllocSite, client: FakePushClient, body: bytes, field_name: str, fragment: str
) -> None:
    status, headers, answer = post(site, body)
    assert status == 400
    assert headers["content-type"] == "application/json"
    assert answer["status"] == 400
    assert answer["field"] == field_name
    assert fragment in answer["error"], answer["error"]
    assert client.calls == []


DIGITS = b"9" * 5000  # past the 4,300 digits Python's int() takes by default
LONG_NUMBERS = [
    (b'{"userId": "u", "content": {"a": [' + DIGITS + b"]}}", "content"),
    (b'{"userId": "u", "hello": "x", "timeout": -' + DIGITS + b"}", "timeout"),
    (b'{"userIds": ["u", ' + DIGITS + b'], "hello": "x"}', "userIds"),
    (b'{"userId": "u", "hello": "x", "msgType": ' + DIGITS + b"}", "msgType"),
]


@pytest.mark.parametrize(("body", "field_name"), LONG_NUMBERS,
                         ids=[field for _, field in LONG_NUMBERS])
def test_a_5000_digit_integer_anywhere_is_400_naming_its_field(
    client: FakePushClient, body: bytes, field_name: str
) -> None:
    site = make_site(client, max_request_size=64 * 1024)  # the daemon's default
    status, headers, answer = post(site, body)
    assert (status, headers["content-type"]) == (400, "application/json"), answer
    assert answer["field"] == field_name
    assert f"{field_name} holds an integer of 5000 digits" in answer["error"]
    assert client.calls == []


def test_an_integer_past_a_lower_interpreter_limit_is_400_too(client: FakePushClient) -> None:
    before = sys.get_int_max_str_digits()
    sys.set_int_max_str_digits(640)  # as PYTHONINTMAXSTRDIGITS=640 would
    try:
        status, _, answer = post(make_site(client), b'{"userId": "u", "content": {"n": '
                                 + b"1" * 1000 + b"}}")
    finally:
        sys.set_int_max_str_digits(before)
    assert status == 400 and answer["field"] == "content"
    assert "an integer of 1000 digits (at most 640)" in answer["error"]


def test_form_bodies_are_refused(site: AllocSite, client: FakePushClient) -> None:
    status, _, answer = post(site, b"userId=u&hello=x",
                             {"Content-Type": "multipart/form-data; boundary=x"})
    assert status == 415
    assert "send JSON" in answer["error"]
    # A real urlencoded form is no JSON: 400, not delivered.
    status, _, answer = post(site, b"userId=u&hello=x",
                             {"Content-Type": "application/x-www-form-urlencoded"})
    assert status == 400 and answer["field"] == "body"
    assert client.calls == []


def test_json_sent_as_curl_d_sends_it(site: AllocSite, client: FakePushClient) -> None:
    # `curl -d '{...}'` labels JSON as a urlencoded form.
    status, _, answer = post(site, b'{"userId":"u1","content":"hi"}',
                             {"Content-Type": "application/x-www-form-urlencoded"})
    assert status == 200, answer
    assert len(client.calls) == 1


def test_content_too_large_for_the_gateway_is_413_naming_content(
    client: FakePushClient,
) -> None:
    client.raises = PacketTooLarge(20000, 10240)
    status, _, answer = post(make_site(client), {"userId": "u", "content": "x"})
    assert status == 413
    assert answer["field"] == "content"
    assert "10240" in answer["error"]


def test_client_value_error_is_400(client: FakePushClient) -> None:
    client.raises = ValueError("user_id is blank: that would be a broadcast")
    status, _, answer = post(make_site(client), {"userId": "u", "content": "x"})
    assert (status, answer["error"]) == (400, "user_id is blank: that would be a broadcast")


def test_content_too_large_found_late_is_413_too(client: FakePushClient) -> None:
    client.hold = True
    ex = connect(make_site(client))
    ex.feed(http_post(b'{"userId": "u", "content": "x"}'))
    client.pending[0][0].errback(PacketTooLarge(20000, 10240))
    status, _, body = split(ex.raw)
    assert (status, json.loads(body)["field"]) == (413, "content")


def test_a_failing_client_is_500(client: FakePushClient, log_events: list[LogEvent]) -> None:
    client.hold = True
    ex = connect(make_site(client))
    ex.feed(http_post(b'{"userId": "u", "content": "x"}'))
    client.pending[0][0].errback(RuntimeError("bug"))
    status, _, body = split(ex.raw)
    assert status == 500
    assert json.loads(body)["error"] == "push failed: internal error"
    assert any(e.get("log_failure") is not None for e in log_events)


# ------------------------------------------------------------ 405, 404


def test_other_methods_on_push_are_405_with_allow(site: AllocSite) -> None:
    for method in ("GET", "PUT", "DELETE", "HEAD"):
        status, headers, _ = post(site, b"", method=method)
        assert status == 405, method
        assert headers["allow"] == "POST"


def test_paths_below_push_are_404(site: AllocSite, client: FakePushClient) -> None:
    for path in ("/push/", "/push/x"):
        assert post(site, JAVA_PAGE_BODY, path=path)[0] == 404
    assert client.calls == []


# ------------------------------------------------------------ access


def test_token_missing_or_wrong_is_401_and_right_is_200(client: FakePushClient) -> None:
    site = make_site(client, token=TOKEN)
    body = {"userId": "u", "hello": "x"}
    for headers, fragment in (
        ({}, "push token is required"),
        ({"Authorization": f"Basic {TOKEN}"}, "push token is required"),
        ({"Authorization": "Bearer wrong"}, "wrong push token"),
        ({"Authorization": f"Bearer {TOKEN}x"}, "wrong push token"),
    ):
        status, head, answer = post(site, body, headers)
        assert status == 401, headers
        assert head["www-authenticate"].startswith("Bearer")
        assert fragment in answer["error"]
    assert client.calls == []
    # The token alone decides: no allow-list, no Origin check.
    status, _, _ = post(site, body, {"Authorization": f"bearer {TOKEN}",
                                     "Origin": "http://elsewhere.example"},
                        peer=IPv4Address("TCP", "10.9.8.7", 5000))
    assert status == 200
    assert len(client.calls) == 1


def test_without_a_token_the_allow_list_decides(client: FakePushClient) -> None:
    site = make_site(client, allow=["10.0.0.0/8"])
    body = {"userId": "u", "hello": "x"}
    assert post(site, body, peer=IPv4Address("TCP", "10.1.2.3", 5000))[0] == 200
    status, _, answer = post(site, body, peer=IPv4Address("TCP", "127.0.0.1", 5000))
    assert status == 403
    assert "127.0.0.1 may not push" in answer["error"]
    assert len(client.calls) == 1


def test_ipv4_mapped_clients_match_ipv4_networks(
    site: AllocSite, client: FakePushClient
) -> None:
    # A dual-stack listener ("::") reports IPv4 clients like this.
    peer = IPv6Address("TCP", "::ffff:127.0.0.1", 5000)
    assert post(site, {"userId": "u", "hello": "x"}, peer=peer)[0] == 200
    assert post(site, {"userId": "u", "hello": "x"}, peer=IPv6Address("TCP", "::1", 1))[0] == 200
    assert post(site, {"userId": "u", "hello": "x"}, peer=IPv6Address("TCP", "::2", 1))[0] == 403


def test_cross_origin_browser_requests_are_refused_without_a_token(
    site: AllocSite, client: FakePushClient
) -> None:
    body = {"userId": "u", "hello": "x"}
    for origin in ("http://evil.example", "null", "http://127.0.0.1:9998",
                   "https://127.0.0.1:9999"):
        status, _, answer = post(site, body, {"Origin": origin})
        assert status == 403, origin
        assert "cross-origin" in answer["error"]
    assert client.calls == []
    assert post(site, body, {"Origin": "http://127.0.0.1:9999"})[0] == 200


def test_browser_push_through_a_dns_name_needs_a_token(
    site: AllocSite, client: FakePushClient
) -> None:
    # DNS rebinding: a name the attacker controls, pointed at 127.0.0.1.
    raw = (b"POST /push HTTP/1.1\r\nHost: rebind.example:9999\r\n"
           b"Origin: http://rebind.example:9999\r\nContent-Length: 31\r\n\r\n"
           b'{"userId": "u", "content": "x"}')
    ex = connect(site)
    ex.feed(raw)
    status, _, body = split(ex.raw)
    assert status == 403
    assert "mp.alloc.push-token" in json.loads(body)["error"]
    assert client.calls == []


def test_the_access_mode_is_logged_without_the_token(
    client: FakePushClient, log_events: list[LogEvent]
) -> None:
    from twisted.logger import formatEvent

    push_resource(client, token=TOKEN)
    push_resource(client, allow=[ipaddress.ip_network("10.0.0.0/8")])
    texts = [formatEvent(e) for e in log_events if "/push access" in formatEvent(e)]
    assert texts == ["/push access: bearer token required (allow-list not applied)",
                     "/push access: no token configured; clients from 10.0.0.0/8 only"]
    assert not any(TOKEN in formatEvent(e) for e in log_events)


# ------------------------------------------------------------ body size limit


def test_declared_length_over_the_limit_is_413_before_the_body(
    site: AllocSite, client: FakePushClient
) -> None:
    ex = connect(site)
    ex.feed(b"POST /push HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
            b"Content-Length: %d\r\n\r\n" % (LIMIT + 1) + b"{" * 100)
    status, headers, body = split(ex.raw)
    assert status == 413
    assert headers["connection"] == "close"
    assert json.loads(body)["limit"] == LIMIT
    assert b"100 Continue" not in ex.raw  # a final answer instead
    assert ex.transport.disconnecting  # closing, reading stopped
    request = ex.channel._channel.requests[0]  # the HTTP/1.1 channel inside the generic one
    assert request.content is None  # no buffer was ever made for the body
    answered = ex.raw
    ex.feed(b"{" * (LIMIT + 1))
    assert ex.raw == answered
    assert client.calls == []


def test_declared_length_at_the_limit_is_read(client: FakePushClient) -> None:
    body = json.dumps({"userId": "u", "content": "x" * 10}).encode()
    body += b" " * (LIMIT - len(body))
    assert len(body) == LIMIT
    assert post(make_site(client), body)[0] == 200


def chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


def test_chunked_body_is_counted_and_413_once_past_the_limit(
    site: AllocSite, client: FakePushClient
) -> None:
    ex = connect(site)
    ex.feed(b"POST /push HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
    ex.feed(chunk(b'{"userId": "u", "content": "') + chunk(b"x" * (LIMIT - 100)))
    assert ex.raw == b""  # still under the limit: reading on
    ex.feed(chunk(b"x" * 200))
    status, headers, _ = split(ex.raw)
    assert status == 413
    assert headers["connection"] == "close"
    assert ex.transport.disconnecting
    answered = ex.raw
    ex.feed(chunk(b'"}') + b"0\r\n\r\n")  # the end of the body starts no push
    assert ex.raw == answered
    assert client.calls == []


def test_chunked_body_under_the_limit_is_pushed(
    site: AllocSite, client: FakePushClient
) -> None:
    ex = connect(site)
    ex.feed(b"POST /push HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
    for part in (b'{"userId": ', b'"u", "content"', b': "x"}'):
        ex.feed(chunk(part))
    ex.feed(b"0\r\n\r\n")
    assert split(ex.raw)[0] == 200
    assert client.calls[0][1:3] == (["u"], b"x")


# ------------------------------------------------------------ disconnects


def test_client_leaving_before_the_outcome_is_not_written_to(
    client: FakePushClient, log_events: list[LogEvent]
) -> None:
    client.hold = True
    ex = connect(make_site(client))
    ex.feed(http_post(b'{"userIds": ["a", "b"], "hello": "x"}'))
    assert ex.raw == b""  # waiting for the gateways
    ex.channel.connectionLost(ConnectionError("client went away"))
    d, results = client.pending[0]
    d.callback(results)  # the outcome arrives after the client left
    assert ex.raw == b""
    assert not any(e.get("log_failure") is not None for e in log_events)
    assert any("push from 127.0.0.1" in e.get("log_format", "") or
               e.get("peer") == "127.0.0.1" for e in log_events)


def test_the_answer_waits_for_the_outcomes(client: FakePushClient) -> None:
    client.hold = True
    ex = connect(make_site(client))
    ex.feed(http_post(b'{"userId": "a", "hello": "x"}'))
    assert ex.raw == b""
    d, results = client.pending[0]
    d.callback(results)
    status, _, body = split(ex.raw)
    assert status == 200
    assert json.loads(body)["summary"]["success"] == 1


# ------------------------------------------------------------ page and root


def test_index_html_is_served_as_utf8_html(site: AllocSite) -> None:
    ex = connect(site)
    ex.feed(b"GET /index.html HTTP/1.1\r\nHost: x\r\n\r\n")
    status, headers, body = split(ex.raw)
    assert status == 200
    assert headers["content-type"] == "text/html; charset=utf-8"
    assert body == load_page()
    assert b"<script" in body and b"src=" not in body  # self-contained
    assert "script-src 'sha256-" in headers["content-security-policy"]
    assert "img-src 'self' data:" in headers["content-security-policy"]  # the favicon
    ex = connect(site)
    ex.feed(b"HEAD /index.html HTTP/1.1\r\nHost: x\r\n\r\n")
    status, headers, body = split(ex.raw)
    assert (status, headers["content-length"], body) == (200, str(len(load_page())), b"")
    assert post(site, b"", path="/index.html")[0] == 405


def test_the_page_puts_every_reason_in_words() -> None:
    # The page's map of reasons names exactly the vocabulary of the answers.
    script = load_page().decode("utf-8")
    reasons = script.split("const REASONS = {", 1)[1].split("};", 1)[0]
    assert re.findall(r"^\s*(\w+): \"", reasons, re.M) == [m.value for m in PushReason]


def test_root_stays_the_allocation_api(site: AllocSite) -> None:
    ex = connect(site)
    ex.feed(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    status, headers, body = split(ex.raw)
    assert (status, headers["content-type"], body) == (
        200, "text/plain; charset=utf-8", FixedAllocator.DEFAULT_BODY)


# ------------------------------------------------------------ real sockets


def exchange(port: int, data: bytes, bind: str | None = None, timeout: float = 5.0) -> bytes:
    """Send ``data`` from ``bind`` (a local address) and read until the server closes."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        if bind is not None:
            sock.bind((bind, 0))
        sock.connect(("127.0.0.1", port))
        sock.sendall(data)
        received = b""
        while True:
            part = sock.recv(65536)
            if not part:
                return received
            received += part


@pytest.fixture
def listening() -> Iterator[tuple[FakePushClient, int]]:
    client = FakePushClient()
    port = reactor.listenTCP(0, make_site(client, allow=["127.0.0.1/32"]), interface="127.0.0.1")
    yield client, port.getHost().port
    pytest_twisted.blockon(port.stopListening())


@pytest_twisted.ensureDeferred
async def test_address_outside_the_allow_list_is_403_over_tcp(
    listening: tuple[FakePushClient, int],
) -> None:
    client, port = listening
    request = http_post(b'{"userId": "u", "hello": "x"}', {"Connection": "close"})
    refused = await threads.deferToThread(exchange, port, request, "127.0.0.2")
    status, _, body = split(refused)
    assert status == 403
    assert "127.0.0.2 may not push" in json.loads(body)["error"]
    assert client.calls == []
    accepted = await threads.deferToThread(exchange, port, request, "127.0.0.1")
    assert split(accepted)[0] == 200
    assert len(client.calls) == 1


@pytest_twisted.ensureDeferred
async def test_declared_length_over_the_limit_is_413_without_sending_the_body_over_tcp(
    listening: tuple[FakePushClient, int],
) -> None:
    client, port = listening
    # Headers only: the answer and the close come without the body ever sent.
    head = b"POST /push HTTP/1.1\r\nHost: x\r\nContent-Length: 10000000\r\n\r\n"
    answer = await threads.deferToThread(exchange, port, head)
    status, headers, _ = split(answer)
    assert (status, headers["connection"]) == (413, "close")
    assert client.calls == []


@pytest_twisted.ensureDeferred
async def test_chunked_body_past_the_limit_is_413_over_tcp(
    listening: tuple[FakePushClient, int],
) -> None:
    client, port = listening
    # No terminating chunk: the answer must come while the body is still open.
    data = (b"POST /push HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
            + chunk(b"x" * 1000) * 3)
    answer = await threads.deferToThread(exchange, port, data)
    assert split(answer)[0] == 413
    assert client.calls == []
