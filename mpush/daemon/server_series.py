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


def _label(address: str) -> bytes:
    # The text format's escapes for a label value.
    escaped = address.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")
    return f'{{server="{escaped}"}} '.encode()


class ServerSeries:
    """Renders the per-server families of the given servers (in order)."""

    def __init__(self) -> None:
        self._labels: dict[str, bytes] = {}  # address -> its label set, as written

    def render(self, servers: Sequence[ServerStatus]) -> bytes:
        if not servers:
            return b""
        known, labels = self._labels, {}
        for s in servers:
            labels[s.address] = known.get(s.address) or _label(s.address)
        self._labels = labels  # only the servers listed now: bounded
        (allocated, atype, ahelp), (online, otype, ohelp) = _FAMILIES
        lines = [f"# HELP {allocated} {ahelp}\n# TYPE {allocated} {atype}\n".encode()]
        prefix = allocated.encode()
        lines += [b"%s%s%r\n" % (prefix, labels[s.address], float(s.allocated))
                  for s in servers]
        lines.append(f"# HELP {online} {ohelp}\n# TYPE {online} {otype}\n".encode())
        prefix = online.encode()
        lines += [b"%s%s%r\n" % (prefix, labels[s.address], float(s.online)) for s in servers]
        return b"".join(lines)
