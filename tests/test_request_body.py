"""A request body's deadline, and ``/push`` refused from its head before its body is read.

Channels are fed over a StringTransport on a task.Clock (deterministic); one
test trickles a body over real loopback TCP.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import task, threads
from twisted.internet.address import IPv4Address
from twisted.web.http import HTTPChannel

from mpush.config.keys import default
from mpush.web.root import RootResource
from mpush.web.site import DEFAULT_REQUEST_BODY_TIMEOUT, AllocSite
from tests.fakes import TOKEN, FakePushClient, FixedAllocator, push_resource
from tests.http_exchange import (
    Exchange,
    connect,
    dribble,
    dribble_over_tcp,
    listening,
    split,
)

BODY = b'{"userId": "u1", "content": "x"}'
DECLARED = 60_000  # what the slow client declared


def body_site(client: FakePushClient, clock: task.Clock | None = None,
              body_timeout: float = 30.0, **push: Any) -> AllocSite:
    root = RootResource(FixedAllocator())
    root.putChild(b"push", push_resource(client, **push))
    return AllocSite(root, request_head_timeout=10.0, request_body_timeout=body_timeout,
                     reactor=clock)


def head(length: int = DECLARED, *extra: bytes) -> bytes:
    return (b"POST /push HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            + b"".join(line + b"\r\n" for line in extra)
            + b"Content-Length: %d\r\n\r\n" % length)


def json_answer(ex: Exchange) -> tuple[int, dict[str, str], dict[str, Any]]:
    status, headers, body = split(ex.raw)
    return status, headers, json.loads(body)


@pytest.fixture
def clock() -> task.Clock:
    return task.Clock()


# ------------------------------------------------------------ the body's deadline


def test_the_default_is_the_config_default() -> None:
    assert DEFAULT_REQUEST_BODY_TIMEOUT == default("mp.alloc.request-body-timeout") == 30.0


def test_a_body_trickled_a_byte_every_15_s_is_408_at_the_deadline(clock: task.Clock) -> None:
    client = FakePushClient()
    site = body_site(client, clock)
    ex = connect(site)
    clock.advance(5)  # the head comes 5 s in: the body's 30 s count from its end
    ex.feed(head())
    dribble(ex, clock, b"x" * 100, step=15.0)  # every byte resets the idle timeout
    assert ex.transport.disconnecting
    assert clock.seconds() == pytest.approx(5 + 30)  # not one byte later
    status, headers, body = json_answer(ex)
    assert (status, headers["connection"]) == (408, "close")
    assert body == {"error": "request body not complete in time", "status": 408}
    assert site.body_timeouts == 1 and site.head_timeouts == 0
    assert client.calls == []
    clock.advance(HTTPChannel.abortTimeout)  # a client that does not let go is aborted
    assert ex.transport.disconnected


def test_a_body_complete_in_time_is_served(clock: task.Clock) -> None:
    client = FakePushClient()
    site = body_site(client, clock)
    ex = connect(site)
    ex.feed(head(len(BODY)))
    dribble(ex, clock, BODY[:-1], step=0.9)  # 28.8 s: slow, but in time
    ex.feed(BODY[-1:])
    assert split(ex.raw)[0] == 200
    assert client.calls and site.body_timeouts == 0
    clock.advance(60)  # the pending check finds no body in progress
    assert site.body_timeouts == 0


def test_each_kept_alive_request_has_its_own_body_deadline(clock: task.Clock) -> None:
    client = FakePushClient()
    site = body_site(client, clock)
    ex = connect(site)
    ex.feed(head(len(BODY)))
    clock.advance(20)
    ex.feed(BODY)  # the first body, 20 s after its head
    clock.advance(20)
    ex.feed(head(len(BODY)))  # 40 s in: the second body is due by 70 s
    clock.advance(29)
    assert ex.raw.count(b"HTTP/1.1 200 OK") == 1 and not ex.transport.disconnecting
    clock.advance(1)
    assert ex.transport.disconnecting
    assert ex.raw.count(b"HTTP/1.1 408 Request Timeout") == 1


def test_a_chunked_body_has_the_deadline_too(clock: task.Clock) -> None:
    client = FakePushClient()
    site = body_site(client, clock)
    ex = connect(site)
    ex.feed(b"POST /push HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
    dribble(ex, clock, b"%x\r\n%s\r\n" % (len(BODY), BODY), step=10.0)  # no last chunk
    assert json_answer(ex)[0] == 408
    assert site.body_timeouts == 1 and client.calls == []


def test_a_request_without_a_body_has_no_body_deadline(clock: task.Clock) -> None:
    site = body_site(FakePushClient(), clock)
    ex = connect(site)
    ex.feed(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    clock.advance(59)  # under the Site's idle timeout (60 s)
    assert not ex.transport.disconnecting and site.body_timeouts == 0


# ------------------------------------------------------------ access from the head


def test_a_wrong_token_is_401_at_once_without_reading_the_body(clock: task.Clock) -> None:
    client = FakePushClient()
    site = body_site(client, clock, token=TOKEN)
    ex = connect(site)
    ex.feed(head(DECLARED, b"Authorization: Bearer wrong", b"Expect: 100-continue"))
    status, headers, body = json_answer(ex)  # the head alone was sent
    assert (status, headers["connection"]) == (401, "close")
    assert headers["www-authenticate"].startswith("Bearer")
    assert body["error"] == "wrong push token"
    assert b"100 Continue" not in ex.raw  # a final answer instead
    assert ex.transport.disconnecting and client.calls == []
    ex.feed(b"{" * 1000)  # the body, if the client sends it anyway, is never read
    assert ex.raw.count(b"HTTP/1.1 ") == 1
    assert site.requests == {(b"/push", 401): 1}


def test_an_address_outside_the_allow_list_is_403_at_once(clock: task.Clock) -> None:
    client = FakePushClient()
    site = body_site(client, clock, allow=["10.0.0.0/8"])
    ex = connect(site, IPv4Address("TCP", "127.0.0.1", 5000))
    ex.feed(head())
    status, _, body = json_answer(ex)
    assert status == 403 and "127.0.0.1 may not push" in body["error"]
    foreign = connect(site, IPv4Address("TCP", "10.1.2.3", 5000))
    foreign.feed(head(DECLARED, b"Origin: http://evil.example"))  # a browser, elsewhere
    assert json_answer(foreign)[0] == 403
    assert client.calls == []


def test_the_right_token_waits_for_the_body(clock: task.Clock) -> None:
    client = FakePushClient()
    site = body_site(client, clock, token=TOKEN)
    ex = connect(site)
    ex.feed(head(len(BODY), b"Authorization: Bearer " + TOKEN.encode()))
    assert ex.raw == b""  # nothing to say before the body
    ex.feed(BODY)
    assert split(ex.raw)[0] == 200 and len(client.calls) == 1


def test_a_chunked_body_without_access_is_refused_at_once(clock: task.Clock) -> None:
    client = FakePushClient()
    site = body_site(client, clock, token=TOKEN)
    ex = connect(site)
    ex.feed(b"POST /push HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
    assert json_answer(ex)[0] == 401 and ex.transport.disconnecting


def test_other_paths_read_their_body_as_before(clock: task.Clock) -> None:
    site = body_site(FakePushClient(), clock, token=TOKEN)
    ex = connect(site)
    ex.feed(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n")
    assert ex.raw == b""  # / has no access rule: its 405 comes once the body is in
    ex.feed(b"{}")
    assert split(ex.raw)[0] == 405


# ------------------------------------------------------------ over TCP


@pytest_twisted.ensureDeferred
async def test_a_trickled_body_is_dropped_over_tcp() -> None:
    site = body_site(FakePushClient(), body_timeout=1.0)
    async with listening(site) as port:
        elapsed, received = await threads.deferToThread(
            dribble_over_tcp, port, head(), b"x" * 1000, 0.2, 5.0)
    assert 0.9 <= elapsed < 2.0, elapsed  # the 1 s deadline, not the 60 s idle timeout
    assert received.startswith(b"HTTP/1.1 408 ")
    assert site.body_timeouts == 1
