"""A service that follows the gateway servers of the ZooKeeper view while it runs.

Shared by both gateway transports (:class:`~mpush.cluster.gateways.GatewayPool`,
:class:`~mpush.cluster.gateway_udp.UdpGateways`): subscribe on start and read
the whole view once, unsubscribe on stop.
"""

from __future__ import annotations

from typing import Any

from twisted.application.service import Service

from mpush.interfaces import ClusterView

__all__ = ["ViewFollower"]


class ViewFollower(Service):
    """Subclasses set ``_view`` and define ``_on_view`` and ``_reconcile``."""

    _view: ClusterView

    def startService(self) -> None:
        if self.running:
            return
        super().startService()
        self._view.add_listener(self._on_view)
        self._reconcile()

    def stop_following(self) -> bool:
        """Mark the service stopped and unsubscribe; False if it was not running."""
        if not self.running:
            return False
        Service.stopService(self)
        self._view.remove_listener(self._on_view)
        return True

    def _on_view(self, kind: str, event: str, node: Any) -> None:
        raise NotImplementedError

    def _reconcile(self) -> None:
        raise NotImplementedError
