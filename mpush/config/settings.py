"""The typed settings the daemon runs with; every default comes from the key table.

``Settings()`` is what an empty config file gives (but for ``data_dir``,
which loading makes absolute), so tests of other modules can build one.
Besides the values, loaded settings say where they came from: which keys
of the table the file set, and which keys of our own namespace it holds
that we do not know. Equality compares the values only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from mpush.config.addresses import IPNetwork
from mpush.config.keys import default

__all__ = [
    "AllocSettings",
    "IPNetwork",
    "RedisSettings",
    "Settings",
    "UnknownKey",
    "ZkSettings",
    "value_of",
]


@dataclass(frozen=True)
class UnknownKey:
    """A key of the file under mp.alloc that the table does not have (a typo, most likely)."""

    key: str
    did_you_mean: str | None  # the nearest key of the table, if one is near


@dataclass(frozen=True)
class ZkSettings:
    server_address: str = default("mp.zk.server-address")  # kazoo "h1:p1,h2:p2[/chroot]"
    namespace: str = default("mp.zk.namespace")  # "" = the ZooKeeper root
    digest: str | None = default("mp.zk.digest")  # None = no auth
    session_timeout: float = default("mp.zk.sessionTimeoutMs")  # s
    connection_timeout: float = default("mp.zk.connectionTimeoutMs")  # s


@dataclass(frozen=True)
class RedisSettings:
    mode: str = default("mp.redis.cluster-model")  # "single" | "sentinel" | "cluster"
    nodes: tuple[tuple[str, int], ...] = default("mp.redis.nodes")  # IPv6 without brackets
    password: str | None = default("mp.redis.password")
    sentinel_master: str | None = default("mp.redis.sentinel-master")  # sentinel mode only
    connect_timeout: float = default("mp.alloc.redis-connect-timeout")  # s
    reply_timeout: float = default("mp.alloc.redis-reply-timeout")  # s


@dataclass(frozen=True)
class AllocSettings:
    interface: str = default("mp.alloc.interface")
    refresh_interval: float = default("mp.alloc.refresh-interval")  # s
    change_delay: float = default("mp.alloc.change-delay")  # s
    mass_drop_hold: float = default("mp.alloc.mass-drop-hold")  # s, 0: off
    mass_drop_window: float = default("mp.alloc.mass-drop-window")  # s: removals of one burst
    # s between two exchanges of handout counts with other instances; 0: off
    share_handouts_interval: float = default("mp.alloc.share-handouts-interval")
    tls_cert: str | None = default("mp.alloc.tls-cert")  # absolute path once loaded
    tls_key: str | None = default("mp.alloc.tls-key")
    data_dir: str = default("mp.alloc.data-dir")  # made absolute (against the CWD) once loaded
    access_log: str | None = default("mp.alloc.access-log")
    retry_after: int = default("mp.alloc.retry-after")  # whole seconds (Retry-After of a 503)
    push_timeout: float = default("mp.alloc.push-timeout")  # s, one push to one gateway
    broadcast_timeout: float = default("mp.alloc.broadcast-timeout")  # s, for each gateway
    gateway_connect_timeout: float = default("mp.alloc.gateway-connect-timeout")  # s
    shutdown_grace: float = default("mp.alloc.shutdown-grace")  # s, in-flight pushes at stop
    drain_delay: float = default("mp.alloc.drain-delay")  # s, /health 503 before closing
    max_request_size: int = default("mp.alloc.max-request-size")  # bytes of a request body
    max_users_per_push: int = default("mp.alloc.max-users-per-push")  # else 413
    max_inflight_pushes: int = default("mp.alloc.max-inflight-pushes")  # else 503
    request_head_timeout: float = default("mp.alloc.request-head-timeout")  # s
    request_body_timeout: float = default("mp.alloc.request-body-timeout")  # s, after the head
    client_stall_timeout: float = default("mp.alloc.client-stall-timeout")  # s, answers unread
    max_connections: int | None = default("mp.alloc.max-connections")  # HTTP; None: derived
    listen_backlog: int = default("mp.alloc.listen-backlog")  # listen() backlog
    max_pending_per_gateway: int = default("mp.alloc.max-pending-per-gateway")  # per connection
    max_queued_bytes_per_gateway: int = default("mp.alloc.max-queued-bytes-per-gateway")  # bytes
    push_token: str | None = default("mp.alloc.push-token")  # Bearer token for /push
    admin_port: int | None = default("mp.alloc.admin-port")  # /metrics on its own port
    push_allow: tuple[IPNetwork, ...] = default("mp.alloc.push-allow")  # without a token
    udp_broadcast: str = default("mp.alloc.udp-broadcast")  # "unicast" | "multicast"


@dataclass(frozen=True)
class Settings:
    source: str = "<defaults>"  # the config file as given, for messages
    port: int = default("mp.net.alloc-server-port")
    protocol: str = default("mp.net.alloc-server-protocol")  # "http" | "https"
    gateway_net: str = default("mp.net.gateway-server-net")
    max_packet_size: int = default("mp.core.max-packet-size")  # bytes
    zk: ZkSettings = field(default_factory=ZkSettings)
    redis: RedisSettings = field(default_factory=RedisSettings)
    alloc: AllocSettings = field(default_factory=AllocSettings)
    gateway_client_num: int = default("mp.net.gateway-client-num")  # connections per gateway
    # gateway_net "udp": the socket, its buffers (0: the system's) and the groups.
    gateway_client_port: int = default("mp.net.gateway-client-port")
    gateway_server_multicast: str = default("mp.net.gateway-server-multicast")
    gateway_client_multicast: str = default("mp.net.gateway-client-multicast")
    gateway_client_snd_buf: int = default("mp.net.snd_buf.gateway-client")  # bytes
    gateway_client_rcv_buf: int = default("mp.net.rcv_buf.gateway-client")  # bytes
    log_level: str = default("mp.log-level")  # "debug" | "info" | "warn" | "error" | "critical"
    # Where the values came from (not compared): the table's keys the file
    # sets (the others have their default), and the unknown mp.alloc keys.
    from_file: frozenset[str] = field(default=frozenset(), compare=False)
    unknown_keys: tuple[UnknownKey, ...] = field(default=(), compare=False)


def value_of(settings: Settings, field_name: str) -> Any:
    """The value a row of the table fills: its field ``"port"``, ``"zk.namespace"``, ..."""
    section, _, name = field_name.rpartition(".")
    return getattr(getattr(settings, section) if section else settings, name)
