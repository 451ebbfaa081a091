"""Kinds for addresses: listen address, host:port lists, networks, ZooKeeper paths."""

from __future__ import annotations

import ipaddress
import json
import re
from dataclasses import dataclass
from typing import Any

from mpush.config.kinds import CheckedText, Kind, RawKind
from mpush.config.reader import TreeReader, show

__all__ = ["HostList", "IPAddress", "IPNetwork", "MulticastAddress", "NetworkList", "ZkHosts",
           "ZkPath", "udp_bind_address"]

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

_HOST_PORT = re.compile(
    r"\[(?P<v6>[0-9A-Fa-f:.]+)\](?::(?P<p6>\d+))?|(?P<host>[^\s:/\[\]]+)(?::(?P<port>\d+))?"
)


def host_port(
    tree: TreeReader, key: str, entry: str, default_port: int | None
) -> tuple[str, int]:
    """'host:port' or '[v6]:port' (port optional when default_port is given)."""
    match = _HOST_PORT.fullmatch(entry)
    if match is None:
        tree.fail(key, f"entries must be host:port, got {entry!r}")
    host = match["v6"] or match["host"]
    port_text = match["p6"] or match["port"]
    if port_text is None:
        if default_port is None:
            tree.fail(key, f"entries must be host:port, got {entry!r} (no port)")
        return host, default_port
    port = int(port_text)
    if not 1 <= port <= 65535:
        tree.fail(key, f"port must be 1..65535, got {entry!r}")
    return host, port


def _list_items(tree: TreeReader, key: str, value: Any, example: str) -> list[Any]:
    """A list, or one comma-separated string, as its items."""
    if isinstance(value, str):
        items: list[Any] = value.split(",")
    elif isinstance(value, list):
        items = list(value)
    else:
        tree.fail(key, f"must be a list like {example}, got {show(value)}")
    return items


@dataclass(frozen=True)
class IPAddress(CheckedText):
    def problem(self, text: str) -> str | None:
        try:
            ipaddress.ip_address(text)
        except ValueError:
            return "must be an IP address such as 0.0.0.0 or ::"
        return None

    def allowed(self) -> str:
        return "an IPv4 or IPv6 address"


@dataclass(frozen=True)
class MulticastAddress(CheckedText):
    def problem(self, text: str) -> str | None:
        try:
            if ipaddress.IPv4Address(text).is_multicast:
                return None
        except ValueError:
            pass
        # IPv4 only, as the Java servers (their UDP channels are IPv4).
        return "must be an IPv4 multicast address (224.0.0.0/4) such as 239.239.239.88"

    def allowed(self) -> str:
        return "an IPv4 multicast address"


@dataclass(frozen=True)
class ZkPath(CheckedText):
    """A ZooKeeper path prefix; surrounding slashes are dropped, "" is the root."""

    def clean(self, text: str) -> str:
        return text.strip("/")

    def problem(self, text: str) -> str | None:
        return "must be a ZooKeeper path like mpush" if re.search(r"\s|//", text) else None

    def allowed(self) -> str:
        return 'a ZooKeeper path; `""` = the root'


@dataclass(frozen=True)
class ZkHosts(Kind):
    """A kazoo hosts string "h1:p1,h2:p2[/chroot]", normalised (IPv6 bracketed)."""

    default_port: int

    def read(self, tree: TreeReader, key: str, default: Any) -> Any:
        text = tree.string(key, default).strip()
        hosts, slash, chroot = text.partition("/")
        if slash and not re.fullmatch(r"[^/\s]+(?:/[^/\s]+)*", chroot):
            tree.fail(key, f"bad chroot after the hosts, got {text!r}")
        entries = [entry.strip() for entry in hosts.split(",")]
        if not any(entries):
            tree.fail(key, "must list at least one host:port")
        parts = []
        for entry in entries:
            if not entry:
                tree.fail(key, f"has an empty entry, got {text!r}")
            host, port = host_port(tree, key, entry, self.default_port)
            parts.append(f"[{host}]:{port}" if ":" in host else f"{host}:{port}")
        return ",".join(parts) + (f"/{chroot}" if slash else "")

    def allowed(self) -> str:
        return f"`host[:port],...[/chroot]` (port {self.default_port} if left out)"

    def spell(self, value: Any) -> str:
        return json.dumps(value)


@dataclass(frozen=True)
class HostList(RawKind):
    """("host", port) pairs from ["h:p", ...] or one "h:p,h:p" string; IPv6 as [::1]:p."""

    def parse(self, tree: TreeReader, key: str, value: Any) -> Any:
        nodes = []
        for item in _list_items(tree, key, value, '["127.0.0.1:6379"]'):
            tree.check_resolved(key, item)
            if not isinstance(item, str):
                tree.fail(key, f'entries must be "host:port" strings, got {show(item)}')
            for entry in item.split(","):  # a list item may itself be "h1:p1,h2:p2"
                nodes.append(host_port(tree, key, entry.strip(), default_port=None))
        if not nodes:
            tree.fail(key, "must list at least one host:port")
        return tuple(nodes)

    def allowed(self) -> str:
        return 'a list of `"host:port"` (or one comma-separated string)'

    def spell(self, value: Any) -> str:
        return json.dumps([f"[{h}]:{p}" if ":" in h else f"{h}:{p}" for h, p in value])


@dataclass(frozen=True)
class NetworkList(RawKind):
    """Networks, duplicates dropped in order; a bare address is that one host."""

    def parse(self, tree: TreeReader, key: str, value: Any) -> Any:
        if isinstance(value, str):  # blank parts of "a, ,b" are skipped, not errors
            value = [part for part in value.split(",") if part.strip()]
        networks: dict[IPNetwork, None] = {}
        for item in _list_items(tree, key, value, '["127.0.0.1/32", "::1/128"]'):
            tree.check_resolved(key, item)
            if not isinstance(item, str):
                tree.fail(key, f'entries must be "address/prefix" strings, got {show(item)}')
            networks.setdefault(self._network(tree, key, item.strip()))
        return tuple(networks)

    @staticmethod
    def _network(tree: TreeReader, key: str, text: str) -> IPNetwork:
        try:
            return ipaddress.ip_network(text)
        except ValueError as exc:
            if "host bits set" in str(exc):
                wider = ipaddress.ip_network(text, strict=False)
                tree.fail(key, f"{text!r} has host bits set; did you mean {str(wider)!r}?")
            tree.fail(key, f"entries must be networks like 10.0.0.0/8 or ::1/128, got {text!r}")

    def allowed(self) -> str:
        return 'a list of networks such as `"10.0.0.0/8"` (a bare address: that host); `[]` = none'

    def spell(self, value: Any) -> str:
        return json.dumps([str(network) for network in value])


def udp_bind_address(interface: str) -> str:
    """The address the UDP gateway socket binds for the listener's ``interface``.

    mpush gateways register IPv4 addresses and the Java push client speaks
    IPv4 only, so the socket is IPv4: ``::`` (every address, for the HTTP
    listener) becomes ``0.0.0.0``; another IPv6 address is a ValueError, in
    words to follow the interface's name."""
    address = ipaddress.ip_address(interface)  # mp.alloc.interface: checked when read
    if address.version == 4:
        return interface
    if address.is_unspecified:
        return "0.0.0.0"
    raise ValueError(f"is {interface!r}, an IPv6 address, but gateways over UDP are reached"
                     " from IPv4 (mpush gateways register IPv4 addresses): use an IPv4"
                     " address or '::' (the UDP socket then binds 0.0.0.0)")
