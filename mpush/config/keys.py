"""Every config key we read, in one table: default, kind with bounds, and meaning.

One row per HOCON key. This table is the single home of each default and
bound: the settings dataclasses take their defaults from it, the modules
that need a default outside a config (``mpush.services.refresher``, ``mpush.web.*``, ...)
ask `default`, and ``docs/configuration.md`` is generated from it
(``scripts/gen-config-docs``).

Rows are read in table order, which decides which error is reported when
several keys are wrong; the docs group them by section. Checks that involve
more than one key are in `mpush.config.checks`.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Final

from mpush.config.addresses import HostList, IPAddress, NetworkList, ZkHosts, ZkPath
from mpush.config.kinds import (
    Choice,
    Duration,
    Integer,
    Kind,
    OptionalText,
    Path,
    Ranged,
    Size,
    Token,
    WholeSeconds,
)
from mpush.config.units import INT32_MAX

__all__ = ["BY_KEY", "DEFAULTS", "KEYS", "Key", "bounds", "default"]

_MAX_LIMIT: Final = 1_000_000  # upper bound of the count limits (users, pushes, pending)
_MIB: Final = 1024 * 1024


@dataclass(frozen=True)
class Key:
    key: str  # the HOCON path, as in the Java files
    field: str  # what it fills: a Settings field, or "zk.x" / "redis.x" / "alloc.x"
    default: Any  # the settings' value when the key is absent (None: none)
    kind: Kind
    doc: str  # one line for an operator (Markdown)


KEYS: Final[tuple[Key, ...]] = (
    Key("mp.net.alloc-server-protocol", "protocol", "http", Choice(("http", "https")),
        "Scheme of the listener clients ask `GET /`. `https` without `mp.alloc.tls-cert`:"
        " a self-signed certificate is made in `mp.alloc.data-dir` (the Java client SDK"
        " accepts any certificate)."),
    Key("mp.net.alloc-server-port", "port", 9999, Integer(1, 65535),
        "TCP port of the listener clients ask `GET /`."),
    Key("mp.net.gateway-server-net", "gateway_net", "tcp",
        Choice(("tcp",), refused=(("udp", "udp is not supported yet, use tcp"),)),
        "How the gateway servers are reached; `udp` (a Java option) is refused at start."),
    Key("mp.core.max-packet-size", "max_packet_size", 10 * 1024, Size(1, INT32_MAX),
        "Largest packet body the gateway servers accept: a larger push is refused before it"
        " is sent. Must match the connection servers' value."),
    Key("mp.zk.namespace", "zk.namespace", "mpush", ZkPath(),
        "Prefix of every ZooKeeper path (Curator's namespace); surrounding `/` are dropped."),
    Key("mp.zk.server-address", "zk.server_address", "127.0.0.1:2181", ZkHosts(2181),
        "The ZooKeeper ensemble; IPv6 as `[::1]:2181`."),
    Key("mp.zk.digest", "zk.digest", "mpush", OptionalText(),
        "Digest auth sent to ZooKeeper (`addauth digest mpush`), as the Java servers do."),
    Key("mp.zk.sessionTimeoutMs", "zk.session_timeout", 5.0, Duration(1.0, 3600.0),
        "ZooKeeper session timeout."),
    Key("mp.zk.connectionTimeoutMs", "zk.connection_timeout", 5.0, Duration(0.1, 3600.0),
        "How long one connection attempt to ZooKeeper may take."),
    Key("mp.redis.cluster-model", "redis.mode", "single",
        Choice(("single", "sentinel", "cluster")),
        "One Redis server, a master found through sentinels, or a Redis Cluster."),
    Key("mp.redis.sentinel-master", "redis.sentinel_master", None, OptionalText(),
        "Name of the master the sentinels watch; required in `sentinel` mode, ignored"
        " otherwise."),
    Key("mp.redis.nodes", "redis.nodes", (("127.0.0.1", 6379),), HostList(),
        "The server (`single`: the first node, as in Java), the sentinels (`sentinel`) or the"
        " seed nodes (`cluster`); IPv6 as `[::1]:6379`."),
    Key("mp.redis.password", "redis.password", None, OptionalText(),
        "Redis password (`AUTH \"\"` is never sent); unlike the Java alloc, also used in"
        " `cluster` mode."),
    Key("mp.alloc.redis-connect-timeout", "redis.connect_timeout", 2.0, Duration(0.01, 300.0),
        "Limit on connecting to a Redis node."),
    Key("mp.alloc.redis-reply-timeout", "redis.reply_timeout", 2.0, Duration(0.01, 300.0),
        "Limit on waiting for a Redis reply."),
    Key("mp.alloc.interface", "alloc.interface", "0.0.0.0", IPAddress(),
        "Address the listener binds (`127.0.0.1`: this machine only; `::` for IPv6)."),
    Key("mp.alloc.tls-cert", "alloc.tls_cert", None, Path(),
        "PEM certificate (chain) for `https`; set together with `tls-key`, and with `https`"
        " both must be readable."),
    Key("mp.alloc.tls-key", "alloc.tls_key", None, Path(),
        "PEM private key for `https`."),
    Key("mp.alloc.data-dir", "alloc.data_dir", "run/data", Path(required=True),
        "Directory for the files the daemon makes itself (the self-signed certificate)."),
    Key("mp.alloc.refresh-interval", "alloc.refresh_interval", 30.0, Duration(0.1, 86400.0),
        "How often online counts are re-read from Redis and the server list re-ordered (the"
        " Java alloc: every 5 minutes)."),
    Key("mp.alloc.change-delay", "alloc.change_delay", 0.2, Duration(0.0, 600.0),
        "After a connection server comes, changes or goes in ZooKeeper, refresh this much"
        " later, so that a burst of changes costs one refresh."),
    Key("mp.alloc.access-log", "alloc.access_log", None, Path(),
        "File to log every HTTP request to; none = no per-request log (it costs throughput)."),
    Key("mp.alloc.retry-after", "alloc.retry_after", 5, WholeSeconds(0, 86400),
        "`Retry-After` sent with a `503` (no connection server known, or pushes in flight at"
        " their limit). A bare number is **seconds** here; `5s` works too; fractions round"
        " up."),
    Key("mp.alloc.push-timeout", "alloc.push_timeout", 3.0, Duration(1.0, 600.0),
        "How long `/push` waits for a gateway's answer to a single-user push (also the"
        " Python push client's default, as in Java); the gateway is given 500 ms less."),
    Key("mp.alloc.broadcast-timeout", "alloc.broadcast_timeout", 30.0, Duration(1.0, 86400.0),
        "How long `/push` waits for each gateway's answer to a broadcast; gateways deliver"
        " about 3,000 users per second."),
    Key("mp.alloc.gateway-connect-timeout", "alloc.gateway_connect_timeout", 4.0,
        Duration(0.1, 300.0),
        "Limit on opening a TCP connection to a gateway server (the Java client's value)."),
    Key("mp.alloc.shutdown-grace", "alloc.shutdown_grace", 5.0, Duration(0.0, 600.0),
        "At stop, how long pushes in flight may finish once the listener has closed; those"
        " still pending then end `timeout`."),
    Key("mp.alloc.drain-delay", "alloc.drain_delay", 2.0, Duration(0.0, 600.0),
        "At stop, how long `/health` answers `503` before the listener closes: a bit more than"
        " the load balancer's check interval × its failure threshold (`0`: close at once)."),
    Key("mp.alloc.max-request-size", "alloc.max_request_size", 64 * 1024, Size(1024, 16 * _MIB),
        "Largest HTTP request body accepted; a larger one is `413`."),
    Key("mp.alloc.max-users-per-push", "alloc.max_users_per_push", 1000,
        Integer(1, _MAX_LIMIT),
        "Most distinct users one `POST /push` may name; more is `413`."),
    Key("mp.alloc.max-inflight-pushes", "alloc.max_inflight_pushes", 10_000,
        Integer(1, _MAX_LIMIT),
        "Most user pushes in flight across all `/push` requests (a broadcast counts 1), at"
        " least `max-users-per-push`; a request that would pass it is `503`."),
    Key("mp.alloc.request-head-timeout", "alloc.request_head_timeout", 10.0,
        Duration(0.1, 3600.0),
        "Time a client has to send a request line and headers; then `408`, connection"
        " closed."),
    Key("mp.alloc.max-pending-per-gateway", "alloc.max_pending_per_gateway", 10_000,
        Integer(1, _MAX_LIMIT),
        "Most requests awaiting an answer on one gateway connection; a push beyond it ends"
        " `failure`."),
    Key("mp.alloc.push-token", "alloc.push_token", None, Token(16, 4096),
        "When set, `POST /push` needs `Authorization: Bearer <token>` (else `401`) and the"
        " token alone decides: `push-allow` is not applied. Never logged."),
    Key("mp.alloc.push-allow", "alloc.push_allow",
        (ipaddress.ip_network("127.0.0.1/32"), ipaddress.ip_network("::1/128")), NetworkList(),
        "Without a push token, only clients in these networks may `POST /push` (else `403`);"
        " the TCP peer is checked, never `X-Forwarded-For`."),
    Key("mp.alloc.admin-port", "alloc.admin_port", None, Integer(1, 65535),
        "A port of its own, plain http on `mp.alloc.interface`, for `GET /metrics` alone (the"
        " main port then has none); must differ from `mp.net.alloc-server-port`."),
    Key("mp.net.gateway-client-num", "gateway_client_num", 1, Integer(1, 64),
        "TCP connections opened to each gateway server, as in the Java push client."),
)

BY_KEY: Final[Mapping[str, Key]] = MappingProxyType({row.key: row for row in KEYS})
#: HOCON key -> default, for modules that take a config value as a parameter.
DEFAULTS: Final[Mapping[str, Any]] = MappingProxyType({row.key: row.default for row in KEYS})


def default(key: str) -> Any:
    """The default of one HOCON key (KeyError for a key not in the table)."""
    return DEFAULTS[key]


def bounds(key: str) -> tuple[Any, Any]:
    """The inclusive (low, high) a key accepts (seconds, bytes or a count)."""
    kind = BY_KEY[key].kind
    if not isinstance(kind, Ranged):
        raise TypeError(f"{key} has no bounds")
    return kind.low, kind.high
