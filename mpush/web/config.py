"""``GET /config``: the settings the daemon runs with, and where each came from.

The document is made once at start (settings never change while running)
by :func:`mpush.config.config_document`, which shows secrets only as
``"set"``/``"unset"``. Access is ``/push``'s: the file names hosts and
networks an outsider has no business reading.
"""

from __future__ import annotations

import json

from twisted.web.server import Request

from mpush.config import Settings, config_document
from mpush.web.base import JsonLeaf
from mpush.web.errors import json_answer
from mpush.web.push_access import PushAccess

__all__ = ["ConfigResource"]


class ConfigResource(JsonLeaf):
    """Leaf at ``/config``."""

    def __init__(self, settings: Settings, access: PushAccess) -> None:
        super().__init__()
        self._body = json.dumps(config_document(settings), separators=(",", ":")).encode()
        self._access = access

    def render_GET(self, request: Request) -> bytes:
        refusal = self._access.check(request, "query")
        if refusal is not None:
            return refusal
        return json_answer(request, self._body)
