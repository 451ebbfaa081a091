"""Clients that pipeline requests and do not read the answers: bounded, paced, closed.

Most tests feed a channel over a StringTransport that pauses its producer,
as a TCP transport does, once its unsent bytes pass a bound, on a
task.Clock. One pipelines ``GET /openapi.json`` over real loopback TCP from
a socket with a small receive buffer that never reads.
"""

from __future__ import annotations

import socket
import time
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import reactor, task, threads
from twisted.internet.address import IPv4Address
from twisted.internet.defer import ensureDeferred
from twisted.internet.testing import StringTransport

from mpush.config.keys import default
from mpush.web.openapi import OpenApiResource
from mpush.web.paced import PIPELINE_BURST
from mpush.web.root import RootResource
from mpush.web.site import DEFAULT_CLIENT_STALL_TIMEOUT, AllocSite
from tests.fakes import FakePushClient, FixedAllocator, push_resource
from tests.harness.web import request, until
from tests.http_exchange import Exchange, connect, http_post, listening, split

GET = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
OPENAPI = b"GET /openapi.json HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
STALL = 5.0  # the stall timeout of these sites, s
BOUND = 500  # unsent bytes that pause a BoundedTransport: 3 answers of GET / fit, not 4


class BoundedTransport(StringTransport):
    """Pauses its producer once more than ``bound`` bytes are unsent, and resumes it
    when the client has read them all (``drain``), as a TCP transport does."""

    def __init__(self, bound: int) -> None:
        super().__init__(peerAddress=IPv4Address("TCP", "127.0.0.1", 40000))
        self.bound = bound
        self.unsent = 0
        self.full = False
        self.answered_to: tuple[list[str], str] | None = None  # (log, name): log answers

    def write(self, data: bytes) -> None:
        if self.answered_to is not None and data.startswith(b"HTTP/1.1 "):
            log, name = self.answered_to
            log.append(name)
        super().write(data)
        self.unsent += len(data)
        if self.unsent > self.bound and not self.full and self.producer is not None:
            self.full = True
            self.producer.pauseProducing()

    def writeSequence(self, data: Any) -> None:
        self.write(b"".join(data))

    def drain(self) -> None:
        self.unsent = 0
        if self.full:
            self.full = False
            self.producer.resumeProducing()


def answered(ex: Exchange) -> int:
    return ex.raw.count(b"HTTP/1.1 200 OK")


@pytest.fixture
def clock() -> task.Clock:
    return task.Clock()


@pytest.fixture
def client() -> FakePushClient:
    return FakePushClient(hold=True)


@pytest.fixture
def site(clock: task.Clock, client: FakePushClient) -> AllocSite:
    root = RootResource(FixedAllocator())
    root.putChild(b"push", push_resource(client))
    return AllocSite(root, client_stall_timeout=STALL, reactor=clock)


def paced(site: AllocSite, bound: int = 1 << 20) -> tuple[Exchange, BoundedTransport]:
    transport = BoundedTransport(bound)
    return connect(site, transport=transport), transport


def test_the_default_is_the_config_default() -> None:
    assert DEFAULT_CLIENT_STALL_TIMEOUT == default("mp.alloc.client-stall-timeout") == 30.0


# ------------------------------------------------------------ a few at a time


def test_pipelined_requests_are_served_a_few_per_turn(
    site: AllocSite, clock: task.Clock
) -> None:
    served: list[str] = []  # which connection each answer went to, in order
    connections = {}
    for name in ("a", "b"):
        ex, transport = paced(site)
        transport.answered_to = (served, name)
        connections[name] = (ex, transport)
        ex.feed(GET * 20)
        # The rest waits, unread, while the other connections get their turn.
        assert answered(ex) == PIPELINE_BURST == 8
        assert transport.producerState == "paused"
    clock.advance(0)  # the turns that follow, one after the other
    assert "".join(served) == "a" * 8 + "b" * 8 + "a" * 8 + "b" * 8 + "a" * 4 + "b" * 4
    for ex, transport in connections.values():
        assert answered(ex) == 20 and transport.producerState == "producing"
        assert not transport.disconnecting


def test_requests_sent_one_at_a_time_are_never_held(site: AllocSite, clock: task.Clock) -> None:
    ex, transport = paced(site)
    for count in range(1, 21):
        ex.feed(GET)
        assert answered(ex) == count  # at once: nothing was waiting behind it
        assert transport.producerState == "producing"


# ------------------------------------------------------------ answers not read


def test_no_request_is_read_while_the_answers_wait_to_be_sent(
    site: AllocSite, clock: task.Clock
) -> None:
    ex, transport = paced(site, bound=BOUND)
    ex.feed(GET * 20)
    first = answered(ex)
    assert first == 4 < PIPELINE_BURST  # stopped by the bound, before the burst's end
    assert transport.full and transport.producerState == "paused"
    clock.advance(STALL / 2)
    assert answered(ex) == first  # still held: the client reads nothing
    transport.drain()  # the client reads: the next ones are served
    assert first < answered(ex) < 20
    while answered(ex) < 20:
        transport.drain()
        clock.advance(0)
    transport.drain()  # the last answers read too: reading goes on
    assert transport.producerState == "producing" and not transport.disconnecting
    assert site.stalled_clients == 0 and site.head_timeouts == 0


def test_a_client_that_leaves_its_answers_unread_is_aborted(
    site: AllocSite, clock: task.Clock
) -> None:
    ex, transport = paced(site, bound=BOUND)
    ex.feed(GET * 20)
    clock.advance(STALL - 0.1)
    assert not transport.disconnected
    clock.advance(0.1)
    assert transport.disconnected  # aborted: its unsent answers are dropped
    assert site.stalled_clients == 1 and site.head_timeouts == 0


def test_a_client_that_reads_in_time_is_kept(site: AllocSite, clock: task.Clock) -> None:
    ex, transport = paced(site, bound=BOUND)
    ex.feed(GET * 6 + b"GET / HTTP/1.1\r\nHost: x\r\n")  # the last head not complete
    assert transport.full
    clock.advance(STALL - 1)
    transport.drain()
    clock.advance(STALL)
    assert answered(ex) == 6 and not transport.disconnecting
    assert site.stalled_clients == 0


def test_a_head_held_unread_gets_its_deadline_once_read(
    site: AllocSite, clock: task.Clock
) -> None:
    # Held past the head deadline (10 s) while the answers wait: not the
    # client's fault as far as the head goes, and it was not even read.
    site.client_stall_timeout = 30.0
    ex, transport = paced(site, bound=BOUND)
    ex.feed(GET * 6 + b"GET / HTTP/1.1\r\nHo")
    clock.advance(15)
    transport.drain()
    assert answered(ex) == 6 and not transport.disconnecting
    clock.advance(10)  # now it is read: the unfinished head has its 10 s
    assert site.head_timeouts == 1 and transport.disconnecting


def test_a_pipelined_head_cut_short_has_its_deadline(site: AllocSite, clock: task.Clock) -> None:
    # The second head came with the first request's bytes; nothing more comes.
    ex, transport = paced(site)
    ex.feed(GET + b"GET / HTTP/1.1\r\nHo")
    clock.advance(9.9)
    assert answered(ex) == 1 and not transport.disconnecting
    clock.advance(0.1)  # the head deadline (10 s), not the idle timeout (60 s)
    assert site.head_timeouts == 1 and transport.disconnecting


def test_reading_stops_while_answers_back_up_during_a_request(
    site: AllocSite, client: FakePushClient
) -> None:
    ex, transport = paced(site)
    ex.feed(http_post(b'{"userId": "u", "content": "x"}'))  # held by the fake client
    assert client.pending and transport.producerState == "producing"
    # The transport's buffer fills meanwhile (twisted.web went on reading then).
    ex.channel._channel.pauseProducing()
    assert transport.producerState == "paused"
    ex.feed(GET * 1000)  # what was read already is kept, and nothing more is read
    ex.channel._channel.resumeProducing()
    assert transport.producerState == "paused"  # the push is still being answered
    d, results = client.pending[0]
    d.callback(results)
    assert split(ex.raw)[0] == 200
    assert answered(ex) == PIPELINE_BURST  # the push, then 7 of the waiting ones


# ------------------------------------------------------------ over TCP


def unsent(transport: Any) -> int:
    """Bytes a twisted TCP transport holds that the kernel has not taken yet."""
    return len(transport.dataBuffer) - transport.offset + transport._tempDataLen


def pipeline_and_never_read(port: int, cap: int) -> tuple[int, socket.socket]:
    """Pipeline GET /openapi.json from a socket with a small receive buffer, without
    ever reading, until ``cap`` bytes or the daemon stops taking them for 0.5 s."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connecting
    sock.connect(("127.0.0.1", port))
    sock.setblocking(False)
    burst = OPENAPI * 100
    sent, idle_since = 0, time.monotonic()
    while sent < cap and time.monotonic() - idle_since < 0.5:
        try:
            sent += sock.send(burst)
            idle_since = time.monotonic()
        except BlockingIOError:
            time.sleep(0.01)
    return sent, sock


@pytest.mark.timeout(60)
@pytest_twisted.ensureDeferred
async def test_a_client_that_pipelines_and_never_reads_over_tcp() -> None:
    root = RootResource(FixedAllocator())
    root.putChild(b"openapi.json", OpenApiResource())
    site = AllocSite(root, client_stall_timeout=1.0)
    peak = 0

    def sample() -> None:
        nonlocal peak
        peak = max([peak, *(unsent(c.transport) for c in site.channels)])

    sampler = task.LoopingCall(sample)
    sampler.start(0.005)
    async with listening(site) as port:
        abuse = threads.deferToThread(pipeline_and_never_read, port, 128 * 1024)
        await until(lambda: peak > 0, what="answers waiting for the client to read them")
        # Meanwhile another client is served, within a deadline.
        answer = ensureDeferred(request("GET", f"http://127.0.0.1:{port}/"))
        status, _, body = await answer.addTimeout(5, reactor)
        assert (status, body) == (200, FixedAllocator.DEFAULT_BODY)
        sent, sock = await abuse
        try:
            await until(lambda: site.stalled_clients == 1, timeout=10,
                        what="the client that reads nothing closed")
            await until(lambda: not site.channels, timeout=5, what="its connection gone")
        finally:
            sock.close()
            sampler.stop()
    assert sent > 2 * 1024  # the client got some requests in
    # Two answers of 49 KB at most over the transport's 64 KiB bound, where
    # twisted.web alone buffered one answer per request it could read.
    assert peak < 256 * 1024, peak
