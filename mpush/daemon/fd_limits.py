"""File descriptors: the open-file limit raised at start, and how it is shared.

systemd starts services with a soft limit of 1024 and a higher hard limit;
a few hundred slow clients would use up 1024. At start the soft limit is
raised to the hard limit, and the descriptors are shared out
(:func:`fd_budget`): a fixed reserve for what is not an HTTP or gateway
connection (ZooKeeper, Redis, log files, listeners, the reactor's own),
then the HTTP connections (``mp.alloc.max-connections``), then the gateway
connections get the rest. Neither kind can then take the descriptors the
other, or the reserve, needs.
"""

from __future__ import annotations

import resource
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from twisted.logger import Logger

log = Logger(namespace="mpush.daemon.fd_limits")

#: Descriptors kept for all but HTTP and gateway connections: stdio, log
#: files, epoll and the waker, the listeners, ZooKeeper, Redis (a sentinel
#: or cluster setup holds a few), the thread pool's and kazoo's pipes.
RESERVE: Final = 128
#: The most HTTP connections by default, whatever the limit allows.
DEFAULT_MAX_HTTP: Final = 10_000
#: The soft limit asked for when the hard limit is unlimited (Linux refuses
#: more than fs.nr_open, 1048576 by default).
UNLIMITED_TARGET: Final = 1_048_576
SOMAXCONN: Final = Path("/proc/sys/net/core/somaxconn")

GetLimit = Callable[[int], tuple[int, int]]
SetLimit = Callable[[int, tuple[int, int]], None]


def raise_open_file_limit(getrlimit: GetLimit = resource.getrlimit,
                          setrlimit: SetLimit = resource.setrlimit) -> int:
    """Raises the soft RLIMIT_NOFILE to the hard limit; logs both once; the soft limit now."""
    soft, hard = getrlimit(resource.RLIMIT_NOFILE)
    target = UNLIMITED_TARGET if hard == resource.RLIM_INFINITY else hard
    raised = soft
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            raised = target
        except (OSError, ValueError) as e:
            log.warn("open-file limit: cannot raise the soft limit {soft} to {target}: {why}",
                     soft=soft, target=target, why=e)
    log.info("open-file limit: soft {before} -> {soft}, hard {hard}",
             before=soft, soft=raised, hard="unlimited" if target != hard else hard)
    return UNLIMITED_TARGET if raised == resource.RLIM_INFINITY else raised


@dataclass(frozen=True)
class FdBudget:
    """How many connections of each kind may be open at once."""

    http: int  # HTTP connections, both ports together
    gateways: int  # gateway connections, all servers together


def fd_budget(open_files: int, max_connections: int | None, gateway_floor: int) -> FdBudget:
    """The budget under the soft limit ``open_files`` (see the module docstring).

    ``max_connections`` None: min(DEFAULT_MAX_HTTP, half of what the reserve
    leaves). A configured value is lowered (and said) when it would leave
    the gateways fewer than ``gateway_floor`` (one server's connections).
    """
    room = max(open_files - RESERVE, 2)
    floor = min(gateway_floor, room - 1)
    if max_connections is None:
        http = max(min(DEFAULT_MAX_HTTP, room // 2), 1)
    else:
        http = max_connections
        if http > room - floor:
            http = room - floor
            log.warn("mp.alloc.max-connections {wanted} does not fit the open-file limit"
                     " {limit} ({reserve} kept for other files, {floor} for gateways);"
                     " using {http}", wanted=max_connections, limit=open_files,
                     reserve=RESERVE, floor=floor, http=http)
    budget = FdBudget(http=http, gateways=room - http)
    log.info("connections allowed: {http} HTTP, {gateways} to gateways",
             http=budget.http, gateways=budget.gateways)
    return budget


def effective_backlog(wanted: int, somaxconn: Path = SOMAXCONN) -> int:
    """The listen backlog the kernel will use for ``wanted``; logs when it caps it."""
    try:
        cap = int(somaxconn.read_text().strip())
    except (OSError, ValueError):
        return wanted  # not Linux, or unreadable: the kernel caps it silently
    if wanted > cap:
        log.warn("mp.alloc.listen-backlog {wanted} is over net.core.somaxconn {cap}:"
                 " the kernel queues {cap}; raise it with sysctl", wanted=wanted, cap=cap)
        return cap
    return wanted
