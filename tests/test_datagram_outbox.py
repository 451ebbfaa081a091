"""DatagramOutbox: a reactor turn's datagrams leave back to back at its end, each at most once.

On a ``Clock`` with fake sockets (what ``sendto`` raises is chosen), and one
test on a real loopback socket pair.
"""

from __future__ import annotations

import errno
import socket
from typing import Any

import pytest
from twisted.internet.task import Clock

from mpush.cluster.datagram_outbox import DatagramOutbox
from mpush.cluster.gateway_pending import GatewayReply, Pending, PendingRequests
from mpush.cluster.gateway_udp import _normal
from mpush.outcomes import GatewayOutcome
from mpush.wire import decode_datagram
from tests.gateway_fakes import Recorder, build, ok
from tests.udp_fakes import Udp

A, A_ADDR = "10.0.0.5:3001", ("10.0.0.5", 3001)


class FakeSocket:
    def __init__(self) -> None:
        self.sent: list[tuple[bytes, tuple[str, int]]] = []
        self.fail_with: OSError | None = None

    def sendto(self, data: bytes, addr: tuple[str, int]) -> int:
        if self.fail_with is not None:
            raise self.fail_with
        self.sent.append((data, addr))
        return len(data)


class SocketPort:
    """A bound port as the outbox sees it: only its ``socket`` is used."""

    def __init__(self, sock: Any) -> None:
        self.socket = sock

    def write(self, data: bytes, addr: tuple[str, int]) -> None:
        raise AssertionError("the socket is written directly, not through the port")


class Box:
    def __init__(self, port: Any, max_batch: int = 256) -> None:
        self.clock = Clock()
        self.port = port
        self.pending = PendingRequests(self.clock)
        self.sent = 0
        self.refused: list[tuple[str, GatewayReply]] = []
        self.outbox = DatagramOutbox(self.clock, lambda: self.port, on_sent=self._sent,
                                     on_refused=self._refused, max_batch=max_batch)

    def _sent(self, n: int) -> None:
        assert n > 0  # said once a burst, never for nothing
        self.sent += n

    def _refused(self, entry: Pending, counter: str, reply: GatewayReply) -> None:
        self.refused.append((counter, reply))
        self.pending.finish(entry, reply)

    def put(self, data: bytes) -> Recorder:
        entry = self.pending.add(self.pending.allocate(), A, 3.0)
        self.outbox.put(data, A_ADDR, entry)
        return Recorder(entry.deferred)


def test_a_turns_datagrams_leave_together_at_its_end_in_order() -> None:
    sock = FakeSocket()
    box = Box(SocketPort(sock))
    for i in range(5):
        box.put(bytes([i]))
    assert sock.sent == [] and len(box.outbox) == 5
    # One call for the whole burst, besides the five requests' own timers.
    assert len(box.clock.getDelayedCalls()) == 6
    box.clock.advance(0)
    assert [d for d, _ in sock.sent] == [bytes([i]) for i in range(5)]
    assert {a for _, a in sock.sent} == {A_ADDR} and box.sent == 5 and len(box.outbox) == 0
    box.put(b"next")
    box.clock.advance(0)
    assert sock.sent[-1][0] == b"next" and box.sent == 6


def test_a_full_batch_is_sent_at_once() -> None:
    sock = FakeSocket()
    box = Box(SocketPort(sock), max_batch=3)
    box.put(b"1")
    box.put(b"2")
    assert sock.sent == []
    box.put(b"3")
    assert [d for d, _ in sock.sent] == [b"1", b"2", b"3"] and len(box.outbox) == 0
    box.clock.advance(0)  # the turn's end finds nothing more
    assert box.sent == 3


def test_max_batch_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_batch"):
        DatagramOutbox(Clock(), lambda: None, on_sent=lambda _n: None,
                       on_refused=lambda *_: None, max_batch=0)


@pytest.mark.parametrize(("error", "counter", "outcome"), [
    (OSError(errno.EAGAIN, "busy"), "send_failed", "congested"),
    (OSError(errno.ENOBUFS, "no buffer"), "send_failed", "congested"),
    (OSError(errno.EMSGSIZE, "too long"), "too_large", "too_large"),
    (OSError(errno.ENETUNREACH, "unreachable"), "send_failed", "unavailable"),
])
def test_a_refused_datagram_ends_its_request_and_the_rest_still_leave(
        error: OSError, counter: str, outcome: str) -> None:
    sock = FakeSocket()
    box = Box(SocketPort(sock))
    sock.fail_with = error
    first = box.put(b"first")
    box.outbox.flush()
    sock.fail_with = None
    second = box.put(b"second")
    box.clock.advance(0)
    assert first.reply is not None and first.reply.outcome == outcome
    assert [c for c, _ in box.refused] == [counter] and second.reply is None
    assert [d for d, _ in sock.sent] == [b"second"] and box.sent == 1
    assert len(box.pending) == 1


def test_an_earlier_icmp_error_reported_on_send_does_not_refuse_this_datagram() -> None:
    sock = FakeSocket()
    box = Box(SocketPort(sock))
    sock.fail_with = ConnectionRefusedError(errno.ECONNREFUSED, "refused")
    r = box.put(b"x")
    box.clock.advance(0)
    assert r.reply is None and box.sent == 1 and box.refused == []


def test_a_closed_socket_sends_nothing_and_says_unavailable() -> None:
    box = Box(None)
    r = box.put(b"x")
    box.clock.advance(0)
    assert r.reply is not None and r.reply.outcome == "unavailable"
    assert "closed" in (r.reply.detail or "") and box.sent == 0


def test_a_request_that_ended_before_the_turns_end_is_not_sent() -> None:
    u = Udp(A)
    d = u.gateways.request(A, build(), 3.0)
    r = Recorder(d)
    d.cancel()  # the caller gave up before the datagram left
    u.clock.advance(0)
    assert r.reply is not None and r.reply.outcome == "timeout" and r.reply.detail == "cancelled"
    assert u.port.written == [] and u.gateways.counts.sent == 0
    assert u.gateways.status()[A]["pending"] == 0


def test_stopping_drops_the_held_datagrams_and_ends_their_requests() -> None:
    u = Udp(A)
    r = Recorder(u.gateways.request(A, build(), 3.0))
    port = u.port
    u.gateways.stopService()
    u.clock.advance(0)
    assert r.reply is not None and r.reply.outcome == "timeout"
    assert port.written == [] and u.gateways.counts.sent == 0
    assert u.clock.getDelayedCalls() == []


def test_datagrams_reach_a_real_loopback_socket() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as rx, \
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as tx:
        rx.bind(("127.0.0.1", 0))
        rx.settimeout(10)  # a deadline, not a synchronisation: loopback is immediate
        box = Box(SocketPort(tx))
        entries = []
        for data in (b"one", b"two"):
            entry = box.pending.add(box.pending.allocate(), A, 3.0)
            box.outbox.put(data, rx.getsockname(), entry)
            entries.append(entry)
        box.clock.advance(0)
        assert [rx.recv(100), rx.recv(100)] == [b"one", b"two"] and box.sent == 2


def test_many_answers_from_one_gateway_all_match_through_the_sender_cache() -> None:
    u = Udp(A)
    recorders = [Recorder(u.gateways.request(A, build(), 3.0)) for _ in range(3)]
    u.clock.advance(0)
    for data, addr in u.port.written:
        u.port.deliver(ok(decode_datagram(data, 1 << 20).session_id), addr)  # type: ignore[union-attr]
    assert [r.reply.outcome for r in recorders if r.reply is not None] == ["ok"] * 3
    assert u.gateways.counts.received == 3 and not u.gateways.counts.dropped


@pytest.mark.parametrize(("addr", "normal"), [
    (("127.0.0.1", 3001), ("127.0.0.1", 3001)),
    (("::ffff:10.0.0.5", 3001), ("10.0.0.5", 3001)),
    (("0:0::1", 7), ("::1", 7)),
    (["10.0.0.5", 3001], ("10.0.0.5", 3001)),  # unhashable: parsed, not cached
    (("not an ip", 1), None),
])
def test_a_sender_address_is_normalised_the_same_cached_or_not(addr: Any,
                                                             normal: Any) -> None:
    assert _normal(addr) == normal
    assert _normal(addr) == normal  # the second time from the cache


def test_on_finished_runs_once_per_request_before_its_deferred_fires() -> None:
    clock = Clock()
    seen: list[tuple[int, object, bool]] = []
    fired: list[int] = []
    table = PendingRequests(clock, on_finished=lambda e: seen.append(
        (e.session_id, e.owner, e.session_id in fired)))
    ended = [table.add(table.allocate(), A, 1.0, owner="gw") for _ in range(3)]
    for entry in ended:
        entry.deferred.addCallback(lambda _r, sid=entry.session_id: fired.append(sid))
    ended[0].deferred.cancel()                       # the caller gives up
    table.fail_all(GatewayOutcome.LOST, "lost", which=lambda e: e.session_id == 2)
    clock.advance(1.0)                               # the third's timer
    table.fail_all(GatewayOutcome.LOST, "again")     # nothing left: no second end
    assert [s for s, _, _ in seen] == [1, 2, 3] and fired == [1, 2, 3]
    assert all(owner == "gw" for _, owner, _ in seen)
    # Each hook ran while its own Deferred had not fired yet.
    assert [already for _, _, already in seen] == [False, False, False]
    assert len(table) == 0
