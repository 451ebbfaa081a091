"""``mpush-push cluster`` as text: ``/cluster``'s servers, with ``/health``'s
facts that ``/cluster`` does not carry (the gateways' transport, handout sharing).

Columns that are about other setups appear only when they say something:
``SHARED`` when another alloc instance handed a server out, ``HELD`` when a
server is kept after a mass drop. So a single instance over TCP reads as before.
"""

from __future__ import annotations

from typing import Any, Final

from mpush.cli.tables import Painter, table, text

__all__ = ["cluster_blocks"]

#: Why a datagram was dropped or refused, in words (docs/operations.md: gateways.datagrams).
DATAGRAM_WORDS: Final = {"unknown_sender": "from an unknown sender", "malformed": "malformed",
                         "unmatched": "late or unmatched", "too_large": "too large",
                         "send_failed": "send failed"}



def server_table(kind: str, servers: list[dict[str, Any]], paint: Painter) -> str:
    """Connection or WebSocket servers in their answer's order, a table or a line."""
    if not servers:
        return f"no {kind} registered in ZooKeeper"
    shared = any(s.get("sharedHandedOut") for s in servers)
    held = any(s.get("held") for s in servers)
    headers = ["#", kind.upper(), "ONLINE", "HANDED OUT"] + (["SHARED"] if shared else []) + [
        "WEIGHT", "LOAD", "KNOWN SINCE"] + (["HELD"] if held else [])
    rows = []
    for s in servers:
        row = [text(s.get("position")), text(s.get("address")), text(s.get("online")),
               text(s.get("handedOut"))]
        row += [text(s.get("sharedHandedOut"))] if shared else []
        row += [text(s.get("weight")), text(s.get("load")), text(s.get("knownSince"))]
        if held:
            left = s.get("heldSecondsLeft")
            row.append(f"{left:.0f} s left" if s.get("held") and left is not None else "")
        rows.append(row)
    colours = ["yellow" if s.get("held") else None for s in servers]
    return table(headers, rows, paint=paint, column=1, colours=colours)


def gateway_table(gateways: list[dict[str, Any]], paint: Painter) -> str:
    if not gateways:
        return "no gateway server registered in ZooKeeper"
    rows = [[text(g.get("address")),
             f"{text(g.get('connections'))}/{text(g.get('configuredConnections'))}",
             text(g.get("pending")), text(g.get("lastError"))] for g in gateways]
    colours = ["green" if g.get("connections") else "red" for g in gateways]
    return table(["GATEWAY", "CONNECTIONS", "PENDING", "LAST ERROR"], rows,
                 paint=paint, column=1, colours=colours)


def by_reason(counts: dict[str, Any]) -> str:
    """" (3 late or unmatched)": the non-zero reasons of a count, or nothing."""
    parts = [f"{n} {DATAGRAM_WORDS.get(reason, reason)}" for reason, n in counts.items() if n]
    return f" ({', '.join(parts)})" if parts else ""


def gateways_line(gateways: dict[str, Any]) -> str:
    """"Gateways (udp): 1 of 1 reachable; datagrams: 10 sent, …" or "Gateways (tcp): 1 of 1
    connected"."""
    transport = text(gateways.get("transport"))
    counts = gateways.get("datagrams")
    if transport == "udp" and isinstance(counts, dict):
        dropped, refused = counts.get("dropped") or {}, counts.get("refused") or {}
        # Over UDP "connected" means datagrams can be sent to it (docs/operations.md).
        return (f"Gateways (udp): {text(gateways.get('connected'))} of"
                f" {text(gateways.get('known'))} reachable; datagrams:"
                f" {text(counts.get('sent'))} sent, {text(counts.get('received'))} received,"
                f" {sum(dropped.values())} dropped{by_reason(dropped)},"
                f" {sum(refused.values())} not sent{by_reason(refused)}")
    return (f"Gateways ({transport}): {text(gateways.get('connected'))} of"
            f" {text(gateways.get('known'))} connected")


def sharing_line(sharing: dict[str, Any] | None) -> str:
    if sharing is None:
        return "Handout sharing: off (this instance counts its handouts alone)"
    age = sharing.get("lastExchangeAgeSeconds")
    last = "never worked" if age is None else f"last worked {age:.1f} s ago"
    if sharing.get("lastError"):
        return f"Handout sharing: failing ({last}): {sharing['lastError']}"
    return f"Handout sharing: on, {last}"


def refresh_line(name: str, refresh: dict[str, Any]) -> str:
    age = refresh.get("ageSeconds")
    return (f"{name}: " + ("never" if age is None else f"{age:.1f} s ago")
            + (f", failing: {refresh['error']}" if refresh.get("error") else "")
            + (", stale" if refresh.get("stale") else ""))


def state_lines(document: dict[str, Any], health: dict[str, Any]) -> list[str]:
    zk, redis = document.get("zookeeper") or {}, document.get("redis") or {}
    redis_state = ("reachable" if redis.get("reachable")
                   else f"unreachable ({text(redis.get('lastError'))})")
    lines = [
        f"ZooKeeper: {text(zk.get('state'))}"
        + (f" ({zk['lastError']})" if zk.get("lastError") else ""),
        f"Redis ({text(redis.get('mode'))}): {redis_state}",
        gateways_line(health.get("gateways") or {}),
        sharing_line((health.get("allocation") or {}).get("handoutSharing")),
        refresh_line("Last refresh", document.get("lastRefresh") or {}),
    ]
    websocket = document.get("websocket") or {}
    if websocket.get("servers"):
        lines.append(refresh_line("Last WebSocket refresh", websocket.get("lastRefresh") or {}))
    held = [s for s in document.get("connectionServers", []) + websocket.get("servers", [])
            if s.get("held")]
    if held:
        # Each until it registers again, at most the time its HELD cell says.
        lines.append(f"Held after a mass drop: {len(held)} server{'s' if len(held) > 1 else ''}"
                     " gone from ZooKeeper, still handed out (see HELD)")
    if document.get("draining"):
        lines.append("Draining: the daemon is stopping")
    return lines


def cluster_blocks(document: dict[str, Any], health: dict[str, Any], paint: Painter,
                   ) -> list[str]:
    """The text of ``/cluster`` and ``/health``: blocks to print with a blank line between."""
    websocket = document.get("websocket") or {}
    return [server_table("connection server", document.get("connectionServers", []), paint),
            server_table("WebSocket server", websocket.get("servers", []), paint),
            gateway_table(document.get("gatewayServers", []), paint),
            "\n".join(state_lines(document, health))]
