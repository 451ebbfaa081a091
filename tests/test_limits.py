"""The configurable limits: users per push, pushes in flight, request-head deadline,
pending requests per gateway connection (the body-size limit is in test_web_push).

Each limit is driven to the point where it answers, and checked to let
through what is just under it. Channels are fed over a StringTransport on a
task.Clock (deterministic); one test dribbles a header over real loopback TCP.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import reactor, task, threads
from twisted.web.http import HTTPChannel

from mpush.cluster import kazoo_logs as logbridge
from mpush.config import AllocSettings, load_settings
from mpush.daemon.tap import Options, makeService
from mpush.web.channels import RequestDeadlineChannel, TrackedChannel
from mpush.web.push import PushResource
from mpush.web.root import RootResource
from mpush.web.site import DEFAULT_REQUEST_HEAD_TIMEOUT, AllocSite
from mpush.wire import PacketTooLarge
from tests.fakes import FakePushClient, FixedAllocator, push_resource
from tests.harness.daemon import write_config
from tests.http_exchange import (
    Exchange,
    connect,
    dribble,
    dribble_over_tcp,
    http_post,
    split,
)

# ------------------------------------------------------------ helpers


def push_site(client: FakePushClient, *, max_users: int = 3,
              retry_after: int = 7) -> tuple[AllocSite, PushResource]:
    root = RootResource(FixedAllocator())
    resource = push_resource(client, push_timeout=3.0, max_users=max_users,
                             retry_after=retry_after)
    root.putChild(b"push", resource)
    return AllocSite(root), resource


def send(site: AllocSite, body: dict[str, Any]) -> Exchange:
    ex = connect(site)
    ex.feed(http_post(json.dumps(body).encode()))
    return ex


def answer(ex: Exchange) -> tuple[int, dict[str, str], Any]:
    status, headers, payload = split(ex.raw)
    return status, headers, json.loads(payload)


def users(*ids: str) -> dict[str, Any]:
    return {"userIds": list(ids), "content": "x"}


def test_defaults_agree_with_the_config() -> None:
    # What an empty config file gives (the push limits have no other default).
    alloc = AllocSettings()
    assert alloc.max_users_per_push == 1000
    assert alloc.max_inflight_pushes == 10_000
    assert DEFAULT_REQUEST_HEAD_TIMEOUT == alloc.request_head_timeout == 10.0
    assert alloc.max_pending_per_gateway == 10_000


# ------------------------------------------------------------ users per push


def test_more_distinct_users_than_the_limit_is_413_before_any_push() -> None:
    client = FakePushClient()
    site, _ = push_site(client, max_users=3)
    status, headers, body = answer(send(site, users("a", "b", "c", "d")))
    assert status == 413
    assert headers["content-type"] == "application/json"
    assert (body["field"], body["limit"], body["status"]) == ("userIds", 3, 413)
    assert "4 users" in body["error"]
    assert client.calls == []  # no lookup, no gateway request


def test_users_at_the_limit_pass_counting_duplicates_once() -> None:
    client = FakePushClient()
    site, _ = push_site(client, max_users=3)
    # userId joins userIds; five names, three distinct users.
    body = {"userId": "a", "userIds": ["a", "b", "c", "b"], "content": "x"}
    status, _, payload = answer(send(site, body))
    assert status == 200
    assert client.calls[0][1] == ["a", "b", "c"]
    assert payload["summary"]["success"] == 3


def test_a_broadcast_is_not_limited_by_users() -> None:
    client = FakePushClient()
    site, _ = push_site(client, max_users=1)
    # The Java page sends its user id along with broadcast: true; it is ignored.
    status, _, _ = answer(send(site, {"broadcast": True, "userIds": ["a", "b"],
                                      "content": "x"}))
    assert status == 200
    assert client.calls[0][0] == "broadcast"


def test_limits_that_could_never_admit_a_request_are_refused() -> None:
    with pytest.raises(ValueError, match="max_users"):
        push_resource(FakePushClient(max_inflight=9), max_users=10)
    with pytest.raises(ValueError):
        push_resource(FakePushClient(), max_users=0)


# ------------------------------------------------------------ pushes in flight


def test_pushes_past_the_in_flight_limit_are_503_with_retry_after() -> None:
    client = FakePushClient(hold=True, max_inflight=5)
    site, _ = push_site(client, max_users=3, retry_after=7)
    first = send(site, users("a", "b", "c"))
    assert first.raw == b"" and client.admission.inflight == 3
    refused = send(site, users("d", "e", "f"))  # 3 + 3 > 5
    status, headers, body = answer(refused)
    assert (status, headers["retry-after"]) == (503, "7")
    assert (body["status"], body["limit"]) == (503, 5)
    assert "in flight" in body["error"]
    assert len(client.calls) == 1  # the refused request sent nothing
    assert client.admission.inflight == 3
    fits = send(site, users("d", "e"))  # 3 + 2 == 5: admitted
    assert fits.raw == b"" and client.admission.inflight == 5
    # A broadcast counts one: no room for it now.
    assert answer(send(site, {"broadcast": True, "content": "x"}))[0] == 503
    # As outcomes arrive the room comes back, and requests are admitted again.
    d, results = client.pending[0]
    d.callback(results)
    assert answer(first)[0] == 200
    assert client.admission.inflight == 2
    again = send(site, users("g", "h", "i"))
    assert again.raw == b"" and client.admission.inflight == 5
    for d, results in client.pending[1:]:
        d.callback(results)
    assert (answer(fits)[0], answer(again)[0]) == (200, 200)
    assert client.admission.inflight == 0


def test_a_push_counts_until_its_outcome_even_when_the_client_left() -> None:
    client = FakePushClient(hold=True, max_inflight=2)
    site, _ = push_site(client, max_users=2)
    ex = send(site, users("a", "b"))
    assert client.admission.inflight == 2
    ex.channel.connectionLost(ConnectionError("client went away"))
    # The push is still running on the gateways: it still counts.
    assert client.admission.inflight == 2
    assert answer(send(site, users("c")))[0] == 503
    d, results = client.pending[0]
    d.callback(results)
    assert client.admission.inflight == 0
    assert ex.raw == b""  # nobody to answer
    assert send(site, users("c")).raw == b""  # admitted (held by the fake)
    assert client.admission.inflight == 1


def test_failed_or_refused_pushes_give_their_count_back() -> None:
    client = FakePushClient(hold=True, max_inflight=2)
    site, _ = push_site(client, max_users=2)
    ex = send(site, users("a", "b"))
    client.pending[0][0].errback(RuntimeError("bug in the client"))
    assert answer(ex)[0] == 500
    assert client.admission.inflight == 0
    # Refused synchronously by the client (too large for a gateway frame).
    client.raises = PacketTooLarge(20000, 10240)
    assert answer(send(site, users("a", "b")))[0] == 413
    assert client.admission.inflight == 0
    client.raises = ValueError("bad argument")
    assert answer(send(site, users("a")))[0] == 400
    assert client.admission.inflight == 0


def test_answers_given_at_once_leave_nothing_counted() -> None:
    client = FakePushClient(max_inflight=3)  # answers synchronously, inside the call
    site, _ = push_site(client, max_users=3)
    for _ in range(5):
        assert answer(send(site, users("a", "b", "c")))[0] == 200
    assert client.admission.inflight == 0


# ------------------------------------------------------------ request-head deadline


@pytest.fixture
def clock() -> task.Clock:
    return task.Clock()


def head_site(clock: task.Clock, head_timeout: float | None = 10.0) -> AllocSite:
    return AllocSite(RootResource(FixedAllocator()), request_head_timeout=head_timeout,
                     reactor=clock)


def inner(ex: Exchange) -> Any:
    return ex.channel._channel  # the HTTP/1.1 channel inside twisted's generic wrapper


def test_a_head_dribbled_a_byte_a_second_is_dropped_at_the_deadline(
    clock: task.Clock,
) -> None:
    site = head_site(clock)
    ex = connect(site)
    assert isinstance(inner(ex), RequestDeadlineChannel)
    # Nine bytes over nine seconds: every byte resets the idle timeout, and
    # the head deadline has not come yet.
    dribble(ex, clock, b"GET / HTT")
    assert not ex.transport.disconnecting and ex.raw == b""
    dribble(ex, clock, b"P")  # the tenth second
    assert ex.transport.disconnecting
    status, headers, body = split(ex.raw)
    assert (status, headers["connection"]) == (408, "close")
    assert json.loads(body) == {"error": "request head not complete in time", "status": 408}
    assert site.head_timeouts == 1
    # What the client sends after that starts nothing.
    ex.feed(b"/1.1\r\nHost: x\r\n\r\n")
    assert split(ex.raw)[0] == 408 and ex.raw.count(b"HTTP/1.1") == 1


def test_a_head_completed_in_time_is_served_and_its_deadline_dropped(
    clock: task.Clock,
) -> None:
    site = head_site(clock)
    ex = connect(site)
    dribble(ex, clock, b"GET / HTTP/1.1\r\nHost: x\r\n", step=0.3)  # 7.8 s
    ex.feed(b"\r\n")
    assert split(ex.raw)[0] == 200
    assert inner(ex)._head_started is None  # no head in progress
    clock.advance(20)  # the connection's check fires at 10 s and finds nothing to do
    assert not ex.transport.disconnecting and site.head_timeouts == 0
    assert inner(ex)._deadline_call is None
    # Only the Site's idle timeout is left scheduled.
    assert len(clock.getDelayedCalls()) == 1


def test_a_silent_connection_is_closed_at_the_deadline_without_an_answer(
    clock: task.Clock,
) -> None:
    site = head_site(clock)
    ex = connect(site)
    clock.advance(9.9)
    assert not ex.transport.disconnecting
    clock.advance(0.1)
    assert ex.transport.disconnecting
    assert ex.raw == b""  # nothing was asked, so nothing is answered
    assert site.head_timeouts == 1


def test_keep_alive_deadline_starts_at_the_next_requests_first_byte(
    clock: task.Clock,
) -> None:
    site = head_site(clock)
    ex = connect(site)
    ex.feed(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    first = ex.raw
    assert split(first)[0] == 200
    # Idle between requests is the Site's idle timeout (60 s), not the head's.
    clock.advance(30)
    assert not ex.transport.disconnecting
    assert clock.getDelayedCalls()[0].getTime() == pytest.approx(60)  # idle timeout only
    dribble(ex, clock, b"GET / HTTP/1.1\r\nHo")  # 18 bytes, one a second
    assert ex.transport.disconnecting
    assert clock.seconds() == pytest.approx(40)  # 30 idle + 10 from the first byte
    later = ex.raw[len(first):]
    assert split(later)[0] == 408


def test_keep_alive_requests_in_time_are_all_served(clock: task.Clock) -> None:
    site = head_site(clock)
    ex = connect(site)
    for index in range(3):
        if index:
            clock.advance(30)  # idle between requests (not before the first)
        dribble(ex, clock, b"GET / HTTP/1.1\r\nHost: x\r\n", step=0.3)
        ex.feed(b"\r\n")
    assert ex.raw.count(b"HTTP/1.1 200 OK") == 3
    assert not ex.transport.disconnecting and site.head_timeouts == 0


def test_pipelined_requests_are_served_with_no_deadline_left(clock: task.Clock) -> None:
    site = head_site(clock)
    ex = connect(site)
    ex.feed(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" * 3)
    assert ex.raw.count(b"HTTP/1.1 200 OK") == 3
    assert inner(ex)._head_started is None
    clock.advance(59)
    assert not ex.transport.disconnecting and site.head_timeouts == 0


def test_a_later_head_gets_its_own_full_deadline(clock: task.Clock) -> None:
    # The check armed at the connection's opening (due at 10 s) is still
    # pending when the second head starts at 8 s: it must move to 18 s.
    site = head_site(clock)
    ex = connect(site)
    ex.feed(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    clock.advance(8)
    dribble(ex, clock, b"GET / HTTP/1.1\r\nHo")  # a byte a second from 8 s on
    assert clock.seconds() == pytest.approx(18)  # dropped at the 10th byte, not at 10 s
    assert ex.transport.disconnecting
    assert ex.raw.count(b"HTTP/1.1 200 OK") == 1
    assert ex.raw.count(b"HTTP/1.1 408 Request Timeout") == 1


def test_the_deadline_covers_the_head_not_the_body(clock: task.Clock) -> None:
    client = FakePushClient()
    root = RootResource(FixedAllocator())
    root.putChild(b"push", push_resource(client))
    site = AllocSite(root, request_head_timeout=10.0, reactor=clock)
    ex = connect(site)
    body = b'{"userId": "u", "content": "x"}'
    ex.feed(b"POST /push HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(body))
    clock.advance(8)
    dribble(ex, clock, body[:5], step=2.0)  # the body arrives past the 10 s mark
    ex.feed(body[5:])
    assert split(ex.raw)[0] == 200
    assert client.calls and site.head_timeouts == 0


def test_the_connection_is_aborted_if_it_does_not_close(clock: task.Clock) -> None:
    site = head_site(clock)
    ex = connect(site)
    ex.feed(b"GET")
    clock.advance(10)
    assert ex.transport.disconnecting and not ex.transport.disconnected
    # StringTransport never reports the close: twisted's abort timer takes over.
    clock.advance(HTTPChannel.abortTimeout)
    assert ex.transport.disconnected


def test_no_head_timeout_means_a_plain_channel(clock: task.Clock) -> None:
    ex = connect(head_site(clock, head_timeout=None))
    channel = inner(ex)
    # No head deadline: only the open-connection tracking the drain needs.
    assert type(channel) is TrackedChannel
    dribble(ex, clock, b"GET / HTTP/1.1\r\nHost: x\r\n", step=1.0)
    assert not ex.transport.disconnecting


def test_closing_cancels_the_deadline(clock: task.Clock) -> None:
    site = head_site(clock)
    ex = connect(site)
    ex.feed(b"GET / HT")
    ex.channel.connectionLost(ConnectionError("gone"))
    assert inner(ex)._deadline_call is None
    assert clock.getDelayedCalls() == []
    clock.advance(20)
    assert site.head_timeouts == 0


@pytest.fixture
def slow_port() -> Iterator[tuple[AllocSite, int]]:
    site = AllocSite(RootResource(FixedAllocator()), request_head_timeout=1.0)
    port = reactor.listenTCP(0, site, interface="127.0.0.1")
    yield site, port.getHost().port
    pytest_twisted.blockon(port.stopListening())


@pytest_twisted.ensureDeferred
async def test_a_slow_header_client_is_dropped_over_tcp(
    slow_port: tuple[AllocSite, int],
) -> None:
    site, port = slow_port
    head = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: " + b"a" * 1000
    elapsed, received = await threads.deferToThread(dribble_over_tcp, port, b"", head, 0.2,
                                                    5.0)
    # About five bytes in, at the 1 s deadline (the Site's idle timeout, 60 s,
    # is reset by each of them and would never fire).
    assert 0.9 <= elapsed < 2.0, elapsed
    assert received.startswith(b"HTTP/1.1 408 ")
    assert site.head_timeouts == 1


# ------------------------------------------------------------ wiring from the config


def test_the_config_keys_reach_the_services(tmp_path: Path) -> None:
    config = write_config(
        tmp_path / "mpush.conf", port=1, zk="127.0.0.1:1", redis_nodes=["127.0.0.1:1"],
        alloc_extra=("max-users-per-push = 20\nmax-inflight-pushes = 50\n"
                     "request-head-timeout = 2s\nmax-pending-per-gateway = 7\n"
                     "request-body-timeout = 3s\nclient-stall-timeout = 4s\n"
                     "retry-after = 3\n"))
    assert load_settings(str(config)).alloc.max_pending_per_gateway == 7
    options = Options()
    options.parseOptions(["--config", str(config)])
    try:
        root = makeService(options)
    finally:
        logbridge.uninstall("")
        logbridge.uninstall("kazoo")
    assert root.getServiceNamed("gateways").options.max_pending_per_connection == 7
    site = root.getServiceNamed("web").site
    assert (site.request_head_timeout, site.request_body_timeout,
            site.client_stall_timeout) == (2.0, 3.0, 4.0)
    push = site.resource.children[b"push"]
    assert (push.max_users, push.client.admission.max_inflight, push._retry_after) == (
        20, 50, b"3")
