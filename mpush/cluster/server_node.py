"""One mpush server node as a Java server writes it in ZooKeeper: parsed and checked.

Pure (no I/O): :meth:`ServerNode.parse` takes a child's name and data and
returns the node, or raises :class:`NodeDataError` saying why it is unusable.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from mpush.hosts import host_problem

__all__ = ["MAX_NODE_DATA", "NodeDataError", "ServerNode"]

# A Java node is well under 1 KB; anything this big is not one of ours.
MAX_NODE_DATA = 64 * 1024


class NodeDataError(ValueError):
    """A node's data is not a usable mpush server node."""


@dataclass(frozen=True)
class ServerNode:
    """One child of ``/cluster/cs``, ``/cluster/gs`` or ``/cluster/ws``."""

    name: str
    host: str
    port: int
    # Excluded from the hash (a mapping is not hashable), kept in equality
    # so that an attrs-only change is an "updated" event.
    attrs: Mapping[str, Any] = field(default_factory=dict, hash=False)
    # Reactor time the view first held this node (set by the ZooKeeper reader;
    # None from parse): bookkeeping, not data, so not compared.
    since: float | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        # Read-only copy: nodes are shared with every listener.
        object.__setattr__(self, "attrs", MappingProxyType(dict(self.attrs)))

    @property
    def public_host(self) -> str:
        """The address clients get: ``attrs.public_ip`` if set, else host."""
        return _public_ip(self.attrs) or self.host

    @property
    def weight(self) -> float:
        """``attrs.weight`` as a positive float; 1 if absent or unusable."""
        raw = self.attrs.get("weight", 1)
        if isinstance(raw, bool):
            return 1.0
        try:
            value = float(raw)
        except (TypeError, ValueError):
            return 1.0
        if not math.isfinite(value) or value <= 0:
            return 1.0
        return value

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @classmethod
    def parse(cls, name: str, data: bytes | None, *, served: bool = False) -> ServerNode:
        """Parse the JSON a Java server writes; raise NodeDataError if unusable.

        Lenient where fastjson (the Java reader) is: a port given as a
        decimal string or an integral float is accepted, extra keys ignored.
        Strict on addresses: ``host`` and ``attrs.public_ip`` must each be an
        IPv4 address, an IPv6 one or a host name (:func:`mpush.hosts.host_problem`),
        and the one clients get (``served``: a connection server's) not IPv6.
        """
        if not data:
            raise NodeDataError("no data")
        if len(data) > MAX_NODE_DATA:
            raise NodeDataError(f"data too large ({len(data)} bytes)")
        try:
            doc = json.loads(data.decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError) as e:
            raise NodeDataError(f"not UTF-8 JSON: {e}") from None
        if not isinstance(doc, dict):
            raise NodeDataError("not a JSON object")
        host = doc.get("host")
        if not isinstance(host, str) or not host.strip():
            raise NodeDataError("missing or empty host")
        port = _parse_port(doc.get("port"))
        attrs = doc.get("attrs")
        if attrs is None:
            attrs = {}
        elif not isinstance(attrs, dict):
            raise NodeDataError("attrs is not a JSON object")
        if not isinstance(attrs.get("public_ip"), str | None):
            raise NodeDataError("attrs.public_ip is not a string")
        node = cls(name=name, host=host.strip(), port=port, attrs=attrs)
        public_ip = _public_ip(node.attrs)
        _check_host("host", node.host, ipv6=not served or public_ip is not None)
        if public_ip is not None:
            _check_host("attrs.public_ip", public_ip, ipv6=not served)
        return node


def _public_ip(attrs: Mapping[str, Any]) -> str | None:
    ip = attrs.get("public_ip")
    return ip.strip() if isinstance(ip, str) and ip.strip() else None


def _check_host(field: str, host: str, *, ipv6: bool) -> None:
    problem = host_problem(host, ipv6=ipv6)
    if problem is not None:
        more = "..." if len(host) > 60 else ""
        raise NodeDataError(f"{field} {host[:60]!r}{more} is {problem}")


def _parse_port(raw: Any) -> int:
    port: int | None = None
    if isinstance(raw, bool):
        port = None
    elif isinstance(raw, int):
        port = raw
    elif isinstance(raw, float) and raw.is_integer():
        port = int(raw)
    elif isinstance(raw, str) and raw.strip().isdigit() and len(raw.strip()) <= 5:
        port = int(raw.strip())
    if port is None:
        raise NodeDataError(f"missing or non-numeric port: {raw!r}")
    if not 0 < port < 65536:
        raise NodeDataError(f"port out of range: {port}")
    return port
