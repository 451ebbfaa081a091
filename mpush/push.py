"""Library name kept stable: the push client lives in :mod:`mpush.services.pusher`."""

from mpush.services.pusher import PushClient, PushRefused, PushResult

__all__ = ["PushClient", "PushRefused", "PushResult"]
