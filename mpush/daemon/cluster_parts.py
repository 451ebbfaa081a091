"""The cluster side of the service tree: one ``make_*`` per part.

ZooKeeper, Redis, the gateway servers (TCP pool or UDP socket), the push
client, the refreshers of ``GET /`` and ``GET /ws`` and the handout
sharer, as :func:`mpush.daemon.tap.makeService` wires them (and re-exports
them). Each imports its own modules, so that ``twistd mpush-alloc --help``
does not load kazoo or txredisapi.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mpush.config import Settings
from mpush.config.addresses import udp_bind_address

if TYPE_CHECKING:
    from mpush.balance import BalancePolicy
    from mpush.cluster.gateway_udp import UdpGateways
    from mpush.cluster.gateways import GatewayPool
    from mpush.cluster.redis import RedisService
    from mpush.cluster.zookeeper import ZkWatcher
    from mpush.services.handout_sharing import HandoutSharer
    from mpush.services.pusher import PushClient
    from mpush.services.refresher import Refresher

__all__ = [
    "make_gateways",
    "make_pusher",
    "make_redis",
    "make_refresher",
    "make_sharer",
    "make_udp_gateways",
    "make_zookeeper",
]


def make_zookeeper(settings: Settings, reactor: Any = None) -> ZkWatcher:
    from mpush.cluster.zookeeper import ZkWatcher

    zk = ZkWatcher(settings.zk, reactor=reactor)
    zk.setName("zookeeper")
    return zk


def make_redis(settings: Settings, reactor: Any = None) -> RedisService:
    from mpush.cluster.redis import RedisService

    cache = RedisService(settings.redis, reactor=reactor)
    cache.setName("redis")
    return cache


def make_gateways(settings: Settings, zk: ZkWatcher, reactor: Any = None,
                  max_connections: int | None = None) -> GatewayPool | UdpGateways:
    """The gateway requester of ``mp.net.gateway-server-net``: TCP connections or a UDP socket."""
    from mpush.cluster.gateways import GatewayPool, GatewayPoolOptions

    alloc = settings.alloc
    if settings.gateway_net == "udp":
        return make_udp_gateways(settings, zk, reactor)
    options = GatewayPoolOptions(connections_per_server=settings.gateway_client_num,
                                 connect_timeout=alloc.gateway_connect_timeout,
                                 max_packet_size=settings.max_packet_size,
                                 max_pending_per_connection=alloc.max_pending_per_gateway,
                                 max_queued_bytes_per_connection=(
                                     alloc.max_queued_bytes_per_gateway),
                                 max_connections=max_connections)
    gateways = GatewayPool(zk, options=options, reactor=reactor)
    gateways.setName("gateways")
    return gateways


def make_udp_gateways(settings: Settings, zk: ZkWatcher, reactor: Any = None) -> UdpGateways:
    from mpush.cluster.gateway_udp import UdpGatewayOptions, UdpGateways

    alloc = settings.alloc
    options = UdpGatewayOptions(port=settings.gateway_client_port,
                                interface=udp_bind_address(alloc.interface),
                                max_packet_size=settings.max_packet_size,
                                max_pending_per_gateway=alloc.max_pending_per_gateway,
                                broadcast=alloc.udp_broadcast,
                                server_multicast=settings.gateway_server_multicast,
                                client_multicast=settings.gateway_client_multicast,
                                snd_buf=settings.gateway_client_snd_buf,
                                rcv_buf=settings.gateway_client_rcv_buf)
    gateways = UdpGateways(zk, options=options, reactor=reactor)
    gateways.setName("gateways")
    return gateways


def make_pusher(settings: Settings, gateways: GatewayPool | UdpGateways, cache: RedisService,
                reactor: Any = None) -> PushClient:
    from mpush.services.pusher import PushClient
    from mpush.wire import HEADER_LEN, UDP_MAX_PAYLOAD

    body_limit = settings.max_packet_size
    if settings.gateway_net == "udp":
        # A push must fit one datagram: refused at the call (413) like any oversize body.
        body_limit = min(body_limit, UDP_MAX_PAYLOAD - HEADER_LEN)
    return PushClient(gateways, cache, max_inflight=settings.alloc.max_inflight_pushes,
                      max_packet_size=body_limit,
                      broadcast_timeout=settings.alloc.broadcast_timeout, reactor=reactor)


def make_refresher(settings: Settings, policy: BalancePolicy, zk: ZkWatcher,
                   cache: RedisService, reactor: Any = None, kind: str = "cs") -> Refresher:
    """The refresher of ``GET /`` (``kind`` "cs") or of ``GET /ws`` ("ws")."""
    from mpush.services.refresher import Refresher, RefreshSchedule

    schedule = RefreshSchedule(interval=settings.alloc.refresh_interval,
                               change_delay=settings.alloc.change_delay,
                               mass_drop_hold=settings.alloc.mass_drop_hold,
                               mass_drop_window=settings.alloc.mass_drop_window)
    refresher = Refresher(policy, zk, cache, schedule=schedule, reactor=reactor, kind=kind)
    refresher.setName("refresher" if kind == "cs" else f"{kind}-refresher")
    return refresher


def make_sharer(settings: Settings, policy: BalancePolicy, cache: RedisService,
                reactor: Any = None) -> HandoutSharer | None:
    """The timer that shares handout counts with the other alloc instances
    through Redis; None when ``mp.alloc.share-handouts-interval`` is 0."""
    interval = settings.alloc.share_handouts_interval
    if interval <= 0:
        return None
    from mpush.cluster.handout_store import RedisHandoutStore
    from mpush.services.handout_sharing import HandoutSharer

    # A hung exchange gives up when a Redis call would have failed anyway.
    timeout = settings.redis.connect_timeout + settings.redis.reply_timeout
    sharer = HandoutSharer(policy, RedisHandoutStore(cache), interval=interval,
                           timeout=timeout, reactor=reactor)
    sharer.setName("handout-sharer")
    return sharer
