"""The per-server series of ``/metrics``, written as Prometheus text directly.

Two families, a series per connection server: ``mpush_alloc_allocations_total``
and ``mpush_alloc_server_online``. prometheus-client formats every sample
anew (label escaping, number formatting: ~6 µs each), which at thousands of
servers held the reactor for a tenth of a second per scrape. Here each
server's line prefix is made once and kept while the server is listed, and
only the first :data:`SERVER_SERIES_LIMIT` servers of the ``GET /`` order
(the least loaded: where clients go now) get series, so a scrape costs the
same at 1,000 servers as at 100,000.
"""

from __future__ import annotations

from collections.abc import Sequence

from mpush.balance import ServerStatus

__all__ = ["SERVER_SERIES_LIMIT", "ServerSeries"]

#: Servers with per-server series at most; the others are counted in
#: ``mpush_alloc_server_series_omitted``.
SERVER_SERIES_LIMIT = 1000

_FAMILIES = (
    ("mpush_alloc_allocations_total", "counter",
     "GET / answers that listed this server first, since it joined the list"),
    ("mpush_alloc_server_online", "gauge",
     "Online users of this server at the last refresh (its share of its IP's count)"),
)


def _prefixes(address: str) -> tuple[str, str]:
    """A server's two sample lines up to the value, label value escaped."""
    escaped = address.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")
    label = f'{{server="{escaped}"}} '
    (allocated, _, _), (online, _, _) = _FAMILIES
    return allocated + label, online + label


class ServerSeries:
    """Renders the per-server families of the given servers (in order)."""

    def __init__(self) -> None:
        self._prefixes: dict[str, tuple[str, str]] = {}  # address -> its two line prefixes

    def render(self, servers: Sequence[ServerStatus]) -> bytes:
        if not servers:
            return b""
        known, prefixes = self._prefixes, {}
        for s in servers:
            prefixes[s.address] = known.get(s.address) or _prefixes(s.address)
        self._prefixes = prefixes  # only the servers listed now: bounded
        (allocated, atype, ahelp), (online, otype, ohelp) = _FAMILIES
        text = [f"# HELP {allocated} {ahelp}\n# TYPE {allocated} {atype}\n"]
        text += [f"{prefixes[s.address][0]}{float(s.allocated)!r}\n" for s in servers]
        text.append(f"# HELP {online} {ohelp}\n# TYPE {online} {otype}\n")
        text += [f"{prefixes[s.address][1]}{float(s.online)!r}\n" for s in servers]
        return "".join(text).encode()
