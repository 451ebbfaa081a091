"""The kinds of server node mpush registers in ZooKeeper (pure: no Twisted).

One place for what each kind is called and which kinds are handed to
clients: the ZooKeeper reader (:mod:`mpush.cluster.zk_reader`) and the
refreshers (:mod:`mpush.services.refresher`) both read them here.
"""

from __future__ import annotations

from typing import Final

__all__ = ["KIND_NAMES", "SERVED_KINDS"]

#: Kind (the ``/cluster/<kind>`` path's last part) -> its name in logs.
KIND_NAMES: Final = {"cs": "connection server", "gs": "gateway server",
                     "ws": "WebSocket server"}
#: The kinds whose nodes are handed to clients (``GET /``, ``GET /ws``): their
#: served address must be one the Java client SDK can split (not IPv6).
SERVED_KINDS: Final = frozenset({"cs", "ws"})
