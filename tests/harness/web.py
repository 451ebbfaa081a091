"""Small async helpers for tests that run under the reactor (pytest-twisted):
bounded waits and HTTP requests through twisted.web's Agent."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from twisted.internet import reactor
from twisted.internet.task import deferLater
from twisted.web.client import Agent, readBody
from twisted.web.http_headers import Headers
from twisted.web.iweb import IBodyProducer
from zope.interface import implementer


async def sleep(seconds: float) -> None:
    await deferLater(reactor, seconds)


async def until(predicate: Callable[[], Any], timeout: float = 5.0, what: str = "") -> None:
    """Wait until ``predicate()`` is true; fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what or predicate}"
        await sleep(0.01)


@implementer(IBodyProducer)
class _Bytes:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.length = len(data)

    def startProducing(self, consumer: Any) -> Any:
        consumer.write(self.data)
        return deferLater(reactor, 0)

    def pauseProducing(self) -> None:
        pass

    def stopProducing(self) -> None:
        pass


async def request(method: str, url: str, body: bytes | None = None,
                  headers: dict[str, str] | None = None,
                  bind: str | None = None) -> tuple[int, Headers, bytes]:
    """One HTTP request, from the local address ``bind`` if given; (status, headers, body)."""
    agent = Agent(reactor, bindAddress=None if bind is None else (bind, 0))
    raw_headers = Headers({k.encode(): [v.encode()] for k, v in (headers or {}).items()})
    producer = _Bytes(body) if body is not None else None
    response = await agent.request(method.encode(), url.encode(), raw_headers, producer)
    data = await readBody(response)
    return response.code, response.headers, data


async def post_json(url: str, payload: Any, headers: dict[str, str] | None = None,
                    ) -> tuple[int, Any]:
    """POST ``payload`` as JSON; (status, decoded JSON answer)."""
    all_headers = {"Content-Type": "application/json", **(headers or {})}
    status, _, data = await request("POST", url, json.dumps(payload).encode(), all_headers)
    return status, json.loads(data)
