"""User routes: the ``mp:ur:<userId>`` hash of the mpush servers, parsed.

Pure (no Twisted, no I/O). Each hash field is a client type and its value
the Java ``ClientLocation`` as JSON: which gateway server holds the user's
connection of that client type, or nothing when the user is offline on it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from mpush.wire import client_type_of

__all__ = ["ROUTE_KEY_PREFIX", "Route", "parse_route", "parse_routes"]

#: The user route hash (Java ``CacheKeys.getUserRouteKey``).
ROUTE_KEY_PREFIX: Final = "mp:ur:"

_INT_FIELD = re.compile(r"[+-]?[0-9]+")  # what Java's Integer.parseInt takes
_DIGITS = re.compile(r"[0-9]{1,5}")
_SHOWN = 40  # a reason quotes at most this much of a bad value: it reaches logs and answers


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= _SHOWN else text[:_SHOWN] + "…"


@dataclass(frozen=True)
class Route:
    """One ClientLocation of a user (a value of the ``mp:ur:<userId>`` hash)."""

    field: str  # the hash field it was read from
    client_type: int  # derived from osName, as the Java client sends it
    host: str | None  # the *gateway* server holding the connection
    port: int | None
    conn_id: str | None  # None: offline on this client type
    os_name: str | None = None
    device_id: str | None = None
    client_version: str | None = None

    @property
    def online(self) -> bool:
        # Java ClientLocation.isOnline: connId != null (an empty one counts).
        return self.conn_id is not None

    @property
    def gateway(self) -> str:
        return f"{self.host}:{self.port}"


def _optional_str(location: Mapping[str, Any], key: str) -> str | None:
    value = location.get(key)
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)  # fastjson would coerce a number into a String field
    raise ValueError(f"{key} is not a string: {_shown(value)}")


def parse_route(field: str, value: str) -> Route:
    """One hash entry as a Route; ValueError says why it cannot be used."""
    try:
        location = json.loads(value)
    except (ValueError, RecursionError):  # RecursionError: nested too deeply
        raise ValueError("not JSON") from None
    if not isinstance(location, dict):
        raise ValueError("not a JSON object")
    os_name = _optional_str(location, "osName")
    fallback = int(field) if _INT_FIELD.fullmatch(field) else None
    if os_name is None and fallback is None:
        raise ValueError("no osName and the field is not a client type")
    client_type = client_type_of(os_name, fallback=fallback)
    conn_id = _optional_str(location, "connId")
    host = location.get("host")
    port = location.get("port")
    if isinstance(port, str) and _DIGITS.fullmatch(port):
        port = int(port)
    host_ok = isinstance(host, str) and host != ""
    port_ok = isinstance(port, int) and not isinstance(port, bool) and 0 < port < 65536
    if conn_id is not None and not (host_ok and port_ok):
        # Online but nowhere to send to.
        raise ValueError(f"bad gateway address host={_shown(host)} port={_shown(port)}")
    return Route(
        field=field,
        client_type=client_type,
        host=host if host_ok else None,
        port=port if port_ok else None,
        conn_id=conn_id,
        os_name=os_name,
        device_id=_optional_str(location, "deviceId"),
        client_version=_optional_str(location, "clientVersion"),
    )


def _preference(route: Route) -> tuple[bool, bool, str]:
    # The field named after the derived type is the one the gateway itself
    # reads (hget mp:ur:<u> <clientType>) when it checks a route; then online.
    return (route.field != str(route.client_type), not route.online, route.field)


def parse_routes(fields: Mapping[str, str]) -> tuple[tuple[Route, ...], list[tuple[str, str, str]]]:
    """The usable routes of a ``mp:ur:`` hash, one per client type, by client type.

    Also returns the unusable entries as ``(field, value, why)``. Two entries
    deriving the same client type (Java keeps one of them, in a HashSet) give
    one route: the one whose field is that type, else an online one, else
    the lowest field.
    """
    by_type: dict[int, Route] = {}
    bad: list[tuple[str, str, str]] = []
    for field, value in fields.items():
        try:
            route = parse_route(field, value)
        except ValueError as e:
            bad.append((field, value, str(e)))
            continue
        known = by_type.get(route.client_type)
        if known is None or _preference(route) < _preference(known):
            by_type[route.client_type] = route
    return tuple(by_type[t] for t in sorted(by_type)), bad


