"""Checks that involve more than one key.

Each runs right after the key it is listed with has been read (as the
loader always did), with the values read so far, keyed by settings field.
A check raises through ``tree.fail``, or adjusts a value that the other
key makes meaningless.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

from mpush.config.addresses import udp_bind_address
from mpush.config.reader import TreeReader
from mpush.config.units import format_duration

__all__ = ["CHECKS", "MIN_SHARE_HANDOUTS_INTERVAL", "Check"]

Values = dict[str, Any]
Check = Callable[[Values, TreeReader], None]


def sentinel_master_in_sentinel_mode(values: Values, tree: TreeReader) -> None:
    mode = values["redis.mode"]
    if mode == "sentinel" and values["redis.sentinel_master"] is None:
        tree.fail("mp.redis.sentinel-master", "required when mp.redis.cluster-model is sentinel")
    if mode != "sentinel":
        values["redis.sentinel_master"] = None  # ignored outside sentinel mode


def tls_cert_and_key_together(values: Values, tree: TreeReader) -> None:
    cert, key = values["alloc.tls_cert"], values["alloc.tls_key"]
    if (cert is None) != (key is None):
        given, missing = ("tls-cert", "tls-key") if key is None else ("tls-key", "tls-cert")
        tree.fail(f"mp.alloc.{missing}", f"must be set together with mp.alloc.{given}")


def tls_files_readable_for_https(values: Values, tree: TreeReader) -> None:
    # Only https uses them; checked now so that a typo fails at start, not at listen.
    if values["protocol"] != "https":
        return
    for key, path in (
        ("mp.alloc.tls-cert", values["alloc.tls_cert"]),
        ("mp.alloc.tls-key", values["alloc.tls_key"]),
    ):
        if path is None:
            continue
        try:
            with open(path, "rb"):
                pass
        except OSError as exc:
            tree.fail(key, f"cannot read {path!r}: {exc.strerror or exc}")


def inflight_covers_users(values: Values, tree: TreeReader) -> None:
    users, inflight = values["alloc.max_users_per_push"], values["alloc.max_inflight_pushes"]
    if inflight < users:
        # Else a request within the users limit could never be admitted.
        tree.fail(
            "mp.alloc.max-inflight-pushes",
            f"must be at least mp.alloc.max-users-per-push ({users}), got {inflight}",
        )


def admin_port_is_another_port(values: Values, tree: TreeReader) -> None:
    port = values["port"]
    if values["alloc.admin_port"] == port:
        tree.fail("mp.alloc.admin-port", f"must differ from mp.net.alloc-server-port ({port})")


def udp_from_ipv4(values: Values, tree: TreeReader) -> None:
    # The UDP gateway socket binds mp.alloc.interface, as IPv4 (udp_bind_address):
    # an IPv6 one could reach no gateway and join no group.
    if values["gateway_net"] != "udp":
        return
    try:
        udp_bind_address(values["alloc.interface"])
    except ValueError as e:
        tree.fail("mp.alloc.interface", str(e))


#: The shortest period of handout sharing (s): each exchange is a Redis round
#: trip and a read of every server's sum on the reactor.
MIN_SHARE_HANDOUTS_INTERVAL: Final = 0.01


def share_interval_off_or_reasonable(values: Values, tree: TreeReader) -> None:
    # A Duration's bounds are one range; 0 (off) sits apart from the others.
    interval = values["alloc.share_handouts_interval"]
    if 0 < interval < MIN_SHARE_HANDOUTS_INTERVAL:
        tree.fail("mp.alloc.share-handouts-interval",
                  f"must be 0 (off) or at least {format_duration(MIN_SHARE_HANDOUTS_INTERVAL)},"
                  f" got {format_duration(interval)}")


#: (the key after which it runs, the check), in the order they run.
CHECKS: Final[tuple[tuple[str, Check], ...]] = (
    ("mp.redis.sentinel-master", sentinel_master_in_sentinel_mode),
    ("mp.alloc.tls-key", tls_cert_and_key_together),
    ("mp.alloc.tls-key", tls_files_readable_for_https),
    ("mp.alloc.max-inflight-pushes", inflight_covers_users),
    ("mp.alloc.admin-port", admin_port_is_another_port),
    ("mp.alloc.udp-broadcast", udp_from_ipv4),
    ("mp.alloc.share-handouts-interval", share_interval_off_or_reasonable),
)
