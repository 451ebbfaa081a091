"""Who may ``POST /push``: the bearer token, or the allow-list and the Origin check.

With a push token configured, ``Authorization: Bearer <token>`` alone
decides; without one, the client's address must be in the allow-list
networks, and browser requests must come from this server's own page.
The operator endpoints (``GET /cluster``, ``GET /users/{userId}``) use the
same rule; ``action`` names what is refused in the messages.
"""

from __future__ import annotations

import hmac
import ipaddress
from collections.abc import Iterable
from urllib.parse import urlsplit

from twisted.web.server import Request

from mpush.web.errors import json_error

__all__ = ["IPNetwork", "PushAccess", "client_ip", "header"]

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class PushAccess:
    """The access rule of ``/push``: ``check(request)`` is None or the refusal's body."""

    def __init__(self, *, token: str | None, allow: Iterable[IPNetwork | str]) -> None:
        self.token = None if token is None else token.encode("ascii")
        self.allow = tuple(ipaddress.ip_network(net) for net in allow)

    def describe(self) -> str:
        """The rule in force, for the start-up log (never the token itself)."""
        if self.token is not None:
            return "bearer token required (allow-list not applied)"
        networks = ", ".join(str(net) for net in self.allow) or "none"
        return f"no token configured; clients from {networks} only"

    def check(self, request: Request, action: str = "push") -> bytes | None:
        """None if ``request`` may do ``action`` (a noun: "push", "query"),
        else the refusal's body (401 or 403), its status set."""
        if self.token is not None:
            return self._check_token(request, self.token)
        ip = client_ip(request)
        if ip is None or not any(ip in net for net in self.allow):
            return json_error(
                request, 403,
                f"{ip} may not {action}: not in mp.alloc.push-allow and no push token configured")
        return _check_origin(request, action)

    @staticmethod
    def _check_token(request: Request, token: bytes) -> bytes | None:
        scheme, _, given = (header(request, b"authorization") or "").partition(" ")
        # Compared as bytes in constant time; the scheme is case-insensitive.
        if scheme.lower() == "bearer" and hmac.compare_digest(
            given.strip().encode("latin-1"), token
        ):
            return None
        request.setHeader(b"www-authenticate", b'Bearer realm="mpush-alloc"')
        message = ("wrong push token" if scheme.lower() == "bearer" and given.strip()
                   else "a push token is required: Authorization: Bearer <token>")
        return json_error(request, 401, message)


def header(request: Request, name: bytes) -> str | None:
    value = request.getHeader(name)
    # Header bytes are not necessarily text; latin-1 maps each byte to one char.
    return None if value is None else value.decode("latin-1")


def client_ip(request: Request) -> IPAddress | None:
    host = getattr(request.getClientAddress(), "host", None)
    if not isinstance(host, str):
        return None  # a UNIX socket or unknown transport: never on the allow-list
    try:
        ip = ipaddress.ip_address(host.partition("%")[0])
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped  # a dual-stack listener sees IPv4 clients as ::ffff:a.b.c.d
    return ip


def _check_origin(request: Request, action: str) -> bytes | None:
    # Address-based access trusts whatever runs on an allowed machine,
    # browsers included: refuse what a browser sends on behalf of another
    # site (it always sends Origin with a POST), and pages reached by a
    # DNS name, which a rebinding attack can point at us.
    origin = header(request, b"origin")
    if origin is None:
        return None  # not a browser: curl, scripts, the Java client
    parts = urlsplit(origin) if origin != "null" else None
    default = 443 if request.isSecure() else 80
    own = _host_port(header(request, b"host") or "", default)
    theirs = None
    if parts is not None and parts.scheme == ("https" if request.isSecure() else "http"):
        theirs = _host_port(parts.netloc, default)
    if theirs is None or own is None or theirs != own:
        return json_error(request, 403, f"cross-origin {action} refused (Origin {origin})")
    if not _is_ip_or_localhost(own[0]):
        return json_error(
            request, 403,
            f"browser {action} through the name {own[0]!r} refused without a push token:"
            " open the page by IP address or configure mp.alloc.push-token")
    return None


def _host_port(netloc: str, default_port: int) -> tuple[str, int] | None:
    try:
        parts = urlsplit("//" + netloc)
        return (parts.hostname or "").lower(), parts.port or default_port
    except ValueError:
        return None


def _is_ip_or_localhost(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True
