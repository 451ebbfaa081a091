"""Which host texts from the cluster's own data may be served or connected to.

Pure (no Twisted, no I/O). A ZooKeeper node's ``host`` and ``attrs.public_ip``
end up in ``GET /``, which the client SDK splits on ``,`` and then on ``:``,
and in the gateway connections: whatever a node says is checked here first.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Final

__all__ = ["MAX_HOST_NAME", "host_problem"]

#: The longest host name, in text (RFC 1035 section 2.3.4, RFC 1123 section 2.1).
MAX_HOST_NAME: Final = 253
# A label of a host name: letters, digits and inner hyphens, 1 to 63 of them.
_LABEL: Final = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?")
_FOREIGN: Final = re.compile(r"[^A-Za-z0-9.-]")  # what no IPv4 address or host name holds
_NOT_A_HOST: Final = "not an IPv4 address or host name"


def host_problem(host: str, *, ipv6: bool = False) -> str | None:
    """Why ``host`` is not an IPv4 address or an RFC 1123 host name (nor an IPv6
    address, when ``ipv6``), as words to follow "host ... is"; None when it is one."""
    if ":" in host and _ip_version(host) == 6:
        if ipv6:
            return None
        return ("an IPv6 address, which the client SDK cannot parse"
                " (it splits each entry of GET / on ':')")
    if len(host) > MAX_HOST_NAME:
        return f"{_NOT_A_HOST}: {len(host)} characters long (at most {MAX_HOST_NAME})"
    foreign = _FOREIGN.search(host)
    if foreign is not None:
        return f"{_NOT_A_HOST}: it holds {foreign.group()!r}"
    labels = host.split(".")
    if labels[-1].isdigit():
        # RFC 1123: a name's last label is never all digits, so this meant an IPv4 address.
        if _ip_version(host) == 4:
            return None
        return f"{_NOT_A_HOST}: numeric, but not a valid IPv4 address"
    if not all(_LABEL.fullmatch(label) for label in labels):
        return (f"{_NOT_A_HOST}: a label is empty, longer than 63 characters,"
                " or starts or ends with '-'")
    return None


def _ip_version(text: str) -> int | None:
    try:
        return ipaddress.ip_address(text).version
    except ValueError:
        return None
