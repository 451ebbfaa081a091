"""UdpGateways on a fake datagram reactor: matching, drops, refusals, multicast, binding.

Nothing here touches a network: the ports are :class:`tests.udp_fakes.FakeUdpPort`
(multicast mode is checked by the destination chosen, never sent).
"""

from __future__ import annotations

import errno
from typing import Any

import pytest
from twisted.internet.defer import succeed

from mpush.cluster.gateway_udp import UdpBindError, UdpGatewayOptions
from mpush.outcomes import PushOutcome, PushReason, TimeoutCause
from mpush.services.pusher import PushClient
from mpush.wire import ErrorCode, Packet, decode_datagram
from tests.gateway_fakes import Recorder, build, err, ok, warnings_about
from tests.gateway_fakes import logs as logs  # a fixture, used by name
from tests.udp_fakes import Udp

A, B = "10.0.0.5:3001", "10.0.0.6:3001"
A_ADDR, B_ADDR = ("10.0.0.5", 3001), ("10.0.0.6", 3001)


def sent(u: Udp) -> list[tuple[Packet, tuple[str, int]]]:
    u.clock.advance(0)  # the end of the reactor turn: the outbox sends
    out = [(decode_datagram(d, 1 << 20), addr) for d, addr in u.port.written]
    u.port.written.clear()
    return out  # type: ignore[return-value]


def send(u: Udp, address: str = A, timeout: float = 3.0) -> tuple[Recorder, int]:
    r = Recorder(u.gateways.request(address, build(), timeout))
    packets = sent(u)
    return r, (packets[-1][0].session_id if packets else 0)


def test_a_push_is_one_datagram_to_the_gateway_and_its_answer_matches() -> None:
    u = Udp(A, B)
    r = Recorder(u.gateways.request(A, build(), 3.0))
    [(packet, addr)] = sent(u)
    assert addr == A_ADDR and packet.cmd == 16 and packet.session_id == 1
    u.port.deliver(ok(packet.session_id), A_ADDR)
    assert r.reply is not None and r.reply.outcome == "ok" and r.reply.gateway == A
    counts = u.gateways.counts
    assert (counts.sent, counts.received, sum(counts.dropped.values())) == (1, 1, 0)
    assert u.gateways.status()[A]["pending"] == 0


def test_an_error_answer_carries_its_code() -> None:
    u = Udp(A)
    r, sid = send(u)
    u.port.deliver(err(sid, ErrorCode.OFFLINE), A_ADDR)
    assert r.reply is not None and (r.reply.outcome, r.reply.code) == ("error", 1)


def test_a_spoofed_answer_from_an_unknown_port_is_dropped_and_counted() -> None:
    u = Udp(A)
    r, sid = send(u)
    u.port.deliver(ok(sid), ("10.0.0.5", 9999))   # the gateway's host, another port
    u.port.deliver(ok(sid), ("10.9.9.9", 3001))   # another host
    assert r.reply is None
    assert u.gateways.counts.dropped == {"unknown_sender": 2}
    u.port.deliver(ok(sid), A_ADDR)
    assert r.reply is not None and r.reply.outcome == "ok"


def test_an_answer_from_another_known_gateway_does_not_end_the_request() -> None:
    u = Udp(A, B)
    r, sid = send(u, A)
    u.port.deliver(ok(sid), B_ADDR)
    assert r.reply is None and u.gateways.counts.dropped == {"unmatched": 1}


def test_malformed_datagrams_are_dropped_and_counted_never_fatal() -> None:
    u = Udp(A)
    r, sid = send(u)
    for junk in (b"", b"\xff" * 5, ok(sid) + b"x", ok(sid)[:-1], b"\xdf"):
        u.port.deliver(junk, A_ADDR)
    assert u.gateways.counts.dropped == {"malformed": 5}
    u.port.deliver(b"\xff" * 5, ("10.9.9.9", 1))  # junk from a stranger: a stranger first
    assert u.gateways.counts.dropped["unknown_sender"] == 1
    u.port.deliver(ok(sid), A_ADDR)
    assert r.reply is not None and r.reply.outcome == "ok"


def test_a_lost_datagram_ends_as_timeout_and_a_late_answer_is_dropped() -> None:
    u = Udp(A)
    r, sid = send(u, timeout=2.0)
    u.clock.advance(2.0)
    assert r.reply is not None and r.reply.outcome == "timeout"
    assert r.reply.cause is TimeoutCause.DEADLINE
    assert u.gateways.status()[A]["unanswering"] == 1
    u.port.deliver(ok(sid), A_ADDR)  # late
    assert len(r.replies) == 1
    assert u.gateways.counts.dropped == {"unmatched": 1}
    assert u.gateways.status()[A]["unanswering"] == 0  # it speaks: alive


def test_oversize_is_refused_before_sending() -> None:
    u = Udp(A, max_packet_size=100)
    r = Recorder(u.gateways.request(A, lambda sid: b"\0" * 114, 3.0))
    assert r.reply is not None and r.reply.outcome == "too_large"
    assert u.port.written == [] and u.gateways.counts.refused == {"too_large": 1}
    assert u.gateways.counts.sent == 0 and u.gateways.status()[A]["pending"] == 0
    fits = Recorder(u.gateways.request(A, lambda sid: b"\0" * 113, 3.0))
    u.clock.advance(0)
    assert fits.reply is None and len(u.port.written) == 1


def test_the_datagram_limit_is_udps_own_even_with_a_larger_packet_size() -> None:
    options = UdpGatewayOptions(max_packet_size=1 << 20)
    assert options.datagram_limit == 65507


@pytest.mark.parametrize(("code", "outcome"), [
    (errno.EAGAIN, "congested"), (errno.ENOBUFS, "congested"), (errno.EPERM, "unavailable")])
def test_a_datagram_the_system_refuses_fails_that_request_honestly(code: int,
                                                                   outcome: str) -> None:
    u = Udp(A)
    u.port.fail_with = OSError(code, "refused")
    r = Recorder(u.gateways.request(A, build(), 3.0))
    assert r.reply is None  # it leaves at the end of the reactor turn
    u.clock.advance(0)
    assert r.reply is not None and r.reply.outcome == outcome
    assert u.gateways.counts.refused == {"send_failed": 1} and u.gateways.counts.sent == 0
    assert u.gateways.status()[A]["pending"] == 0
    assert len(r.replies) == 1 and not u.clock.getDelayedCalls()  # its timer is gone


def test_the_pending_bound_per_gateway() -> None:
    u = Udp(A, B, max_pending_per_gateway=2)
    first, _ = send(u, A)
    send(u, A)
    third, _ = send(u, A)
    assert third.reply is not None and third.reply.outcome == "unavailable"
    assert third.reply.detail == "pending limit reached"
    other, _ = send(u, B)
    assert other.reply is None  # the bound is per gateway
    u.clock.advance(3.0)
    assert first.reply is not None and first.reply.outcome == "timeout"
    again, _ = send(u, A)
    assert again.reply is None


def test_unknown_and_unusable_gateways_are_unavailable_without_sending() -> None:
    u = Udp(A)
    u.view.put("named", "gw.example:3001")
    u.view.put("v6", "[::1]:3001")
    for address in ("10.0.0.99:3001", "gw.example:3001"):
        r = Recorder(u.gateways.request(address, build(), 3.0))
        assert r.reply is not None and r.reply.outcome == "unavailable"
    assert u.port.written == []
    status = u.gateways.status()
    assert status["gw.example:3001"]["connected"] == 0
    assert "not an IP address" in str(status["gw.example:3001"]["last_error"])
    assert status[A]["connected"] == 1


def test_a_removed_gateways_pending_request_still_takes_its_answer() -> None:
    u = Udp(A)
    r, sid = send(u)
    u.view.remove("gs0")
    assert u.gateways.addresses() == []
    u.port.deliver(ok(sid), A_ADDR)
    assert r.reply is not None and r.reply.outcome == "ok"
    gone = Recorder(u.gateways.request(A, build(), 3.0))
    assert gone.reply is not None and gone.reply.outcome == "unavailable"


def test_expire_pending_and_stop_end_requests_as_shutdown_timeouts() -> None:
    u = Udp(A)
    r1, _ = send(u)
    assert u.gateways.expire_pending(TimeoutCause.SHUTDOWN) == 1
    assert r1.reply is not None and r1.reply.cause is TimeoutCause.SHUTDOWN
    r2, _ = send(u)
    u.gateways.stopService()
    assert r2.reply is not None and r2.reply.outcome == "timeout"
    assert u.port.stopped


def test_a_taken_port_fails_the_start_in_one_line_naming_the_key() -> None:
    u = Udp(A)
    u.gateways.stopService()
    u.clock.taken.add(4000)
    fresh = type(u.gateways)(u.view, options=UdpGatewayOptions(port=4000), reactor=u.clock)
    with pytest.raises(UdpBindError) as info:
        fresh.privilegedStartService()
    assert str(info.value).startswith("mp.net.gateway-client-port: cannot bind UDP")
    assert "Address already in use" in str(info.value) and "\n" not in str(info.value)


# -- multicast broadcasts (never sent: the destination is checked) -----------------


def test_multicast_mode_sends_a_broadcast_to_the_group_and_keeps_the_first_answer() -> None:
    u = Udp(A, B, broadcast="multicast")
    assert u.port.multicast and u.port.ttl == 255 and u.port.joined == ["239.239.239.99"]
    assert u.gateways.broadcast_addresses() == ["239.239.239.88:3001"]
    r, sid = send(u, "239.239.239.88:3001")
    assert u.port.written == [] and sid > 0
    u.port.deliver(ok(sid), ("10.9.9.9", 3001))  # not a gateway
    assert r.reply is None
    u.port.deliver(ok(sid), B_ADDR)
    u.port.deliver(ok(sid), A_ADDR)  # the second gateway's answer
    assert r.reply is not None and r.reply.outcome == "ok"
    assert r.reply.gateway == "239.239.239.88:3001"
    assert u.gateways.counts.dropped == {"unknown_sender": 1, "unmatched": 1}


def test_multicast_broadcast_through_the_push_client_is_one_honest_row() -> None:
    u = Udp(A, B, broadcast="multicast")
    client = PushClient(u.gateways, _NoRedis(), max_inflight=10, reactor=u.clock)
    rows: list[Any] = []
    client.broadcast(b"news", timeout_ms=2000).addCallback(rows.extend)
    [(_, addr)] = sent(u)
    assert addr == ("239.239.239.88", 3001)
    u.clock.advance(2.0)
    assert [(r.result, r.reason, r.gateway) for r in rows] == [
        (PushOutcome.TIMEOUT, PushReason.TIMED_OUT, "239.239.239.88:3001")]


def test_unicast_broadcast_is_one_datagram_and_one_row_per_gateway() -> None:
    u = Udp(A, B)
    client = PushClient(u.gateways, _NoRedis(), max_inflight=10, reactor=u.clock)
    rows: list[Any] = []
    client.broadcast(b"news", timeout_ms=2000).addCallback(rows.extend)
    packets = sent(u)
    assert sorted(addr for _, addr in packets) == [A_ADDR, B_ADDR]
    for packet, addr in packets:
        u.port.deliver(ok(packet.session_id), addr)
    assert [(r.gateway, r.result) for r in rows] == [(A, "success"), (B, "success")]


def test_gateways_on_different_ports_multicast_to_the_most_common_port_and_say_so(
        logs: Any) -> None:
    u = Udp("10.0.0.5:3001", "10.0.0.6:3001", "10.0.0.7:3002", broadcast="multicast")
    assert u.gateways.broadcast_addresses() == ["239.239.239.88:3001"]
    u.gateways.broadcast_addresses()
    assert len(warnings_about(logs, "do not get it")) == 1  # said once


def test_a_failed_group_join_is_a_warning_not_a_failure(logs: Any) -> None:
    from tests.udp_fakes import UdpClock

    clock = UdpClock()
    original = clock._listen

    def failing_join(*args: Any) -> Any:
        port = original(*args)
        port.join_fails = True
        return port

    clock._listen = failing_join  # type: ignore[method-assign]
    from mpush.cluster.gateway_udp import UdpGateways
    from tests.gateway_fakes import FakeView

    gateways = UdpGateways(FakeView(), options=UdpGatewayOptions(broadcast="multicast"),
                           reactor=clock)
    gateways.startService()
    assert gateways.running
    assert warnings_about(logs, "cannot join 239.239.239.99")


class _NoRedis:
    """Broadcasts read no route."""

    def hgetall(self, key: str) -> Any:
        return succeed({})


@pytest.mark.parametrize("text", [
    "mp.net.gateway-server-net = udp\nmp.net.snd_buf.gateway-client = 32k\n"
    "mp.net.rcv_buf.gateway-client = 1m\nmp.net.gateway-client-port = 4001\n"
    "mp.alloc.udp-broadcast = multicast\nmp.net.gateway-server-multicast = 239.1.2.3",
    "mp { net { gateway-server-net = udp, gateway-client-port = 4001,"
    " gateway-server-multicast = \"239.1.2.3\","
    " snd_buf { gateway-client = 32k }, rcv_buf { gateway-client = 1m } },"
    " alloc { udp-broadcast = multicast } }",
])
def test_the_java_keys_read_dotted_or_nested(tmp_path: Any, text: str) -> None:
    from mpush.config import load_settings

    path = tmp_path / "mpush.conf"
    path.write_text(text + "\n")
    s = load_settings(str(path))
    assert (s.gateway_net, s.gateway_client_port, s.gateway_server_multicast) == (
        "udp", 4001, "239.1.2.3")
    assert (s.gateway_client_snd_buf, s.gateway_client_rcv_buf) == (32 * 1024, 1024 * 1024)
    assert (s.alloc.udp_broadcast, s.gateway_client_multicast) == ("multicast", "239.239.239.99")
