"""The HTTP side of ``mpush-push``: one request, its JSON, and errors in words.

Blocking ``urllib`` on purpose: a shell command makes one request and
exits, so an event loop would only add start-up time.
"""

from __future__ import annotations

import json
import socket
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any, Final

__all__ = ["Answer", "ApiClient", "ApiError"]

#: Largest answer read; the daemon's biggest (a 1,000-user push) is far below.
MAX_ANSWER: Final = 16 * 1024 * 1024


class ApiError(Exception):
    """A request that got no usable answer; the message is one line for a person."""


@dataclass(frozen=True)
class Answer:
    status: int
    document: Any  # the decoded JSON body


class ApiClient:
    """Requests to one daemon; the token is sent, never shown."""

    def __init__(self, url: str, token: str | None, timeout: float) -> None:
        self.url = url.rstrip("/")
        self._token = token or None
        self.timeout = timeout

    def get(self, path: str, *, accept: tuple[int, ...] = ()) -> Answer:
        return self._send(urllib.request.Request(self.url + path, method="GET"), accept)

    def post(self, path: str, body: Any, *, accept: tuple[int, ...] = ()) -> Answer:
        data = json.dumps(body, ensure_ascii=False).encode()
        request = urllib.request.Request(self.url + path, data=data, method="POST",
                                         headers={"Content-Type": "application/json"})
        return self._send(request, accept)

    def _send(self, request: urllib.request.Request, accept: tuple[int, ...]) -> Answer:
        """The answer when 2xx or a status in ``accept``; else ApiError in words."""
        if self._token is not None:
            request.add_header("Authorization", f"Bearer {self._token}")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return Answer(response.status, self._decode(response.read(MAX_ANSWER + 1)))
        except urllib.error.HTTPError as error:
            with error:
                body = self._decode(error.read(MAX_ANSWER + 1), strict=False)
            if error.code in accept:
                return Answer(error.code, body)
            raise ApiError(self._scrub(self._refusal(error.code, body))) from None
        except (urllib.error.URLError, OSError) as error:
            raise ApiError(self._scrub(self._unreachable(error))) from None

    def _decode(self, raw: bytes, *, strict: bool = True) -> Any:
        if len(raw) > MAX_ANSWER:
            raise ApiError(f"{self.url} answered more than {MAX_ANSWER} bytes: is it mpush-alloc?")
        try:
            return json.loads(raw)
        except ValueError:
            if not strict:
                return None
            raise ApiError(f"{self.url} did not answer JSON: is it mpush-alloc?") from None

    def _unreachable(self, error: BaseException) -> str:
        reason = getattr(error, "reason", error)
        if isinstance(reason, ConnectionRefusedError):
            why = "connection refused"
        elif isinstance(reason, socket.timeout | TimeoutError):
            why = f"no answer within {self.timeout:g} s"
        elif isinstance(reason, socket.gaierror):
            why = "unknown host name"
        else:
            why = str(reason) or type(reason).__name__
        return (f"cannot reach {self.url}: {why} — is mpush-alloc running?"
                " set --url or MPUSH_URL")

    def _refusal(self, status: int, body: Any) -> str:
        detail = body.get("error") if isinstance(body, dict) else None
        field = body.get("field") if isinstance(body, dict) else None
        text = f"{self.url} answered {status}" + (f": {detail}" if detail else "")
        if field:
            text += f" (field {field})"
        if status == 401:
            text += " — pass the push token with --token or MPUSH_TOKEN"
        elif status == 403:
            text += (" — this address may not use the API: run it from an address in"
                     " mp.alloc.push-allow, or configure mp.alloc.push-token and pass --token")
        return text

    def _scrub(self, text: str) -> str:
        # Whatever an error echoes, the token never reaches the terminal.
        return text.replace(self._token, "***") if self._token else text
