"""Library name kept stable: the gateway pool lives in :mod:`mpush.cluster.gateways`."""

from mpush.cluster.gateways import GatewayPool, GatewayPoolOptions

__all__ = ["GatewayPool", "GatewayPoolOptions"]
