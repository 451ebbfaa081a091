"""The cap on open HTTP connections, on the Site over StringTransports (pure unit tests)."""

from __future__ import annotations

import json

import pytest
from twisted.internet import task
from twisted.logger import LogEvent, formatEvent

from mpush.web.connection_limit import ConnectionLimit
from mpush.web.root import RootResource
from mpush.web.site import AllocSite
from tests.fakes import FixedAllocator
from tests.gateway_fakes import logs
from tests.http_exchange import Exchange, connect, split

__all__ = ["logs"]  # the fixture, used by name

GET = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"


@pytest.fixture
def site() -> AllocSite:
    return AllocSite(RootResource(FixedAllocator()), reactor=task.Clock(),
                     connection_limit=ConnectionLimit(3))


def close(ex: Exchange) -> None:
    """What the reactor does once a connection the server closed is gone."""
    ex.channel.connectionLost(None)


def test_over_the_cap_the_oldest_idle_connection_makes_room(site: AllocSite) -> None:
    first, second, third = connect(site), connect(site), connect(site)
    fourth = connect(site)
    assert first.transport.disconnecting and first.raw == b""
    assert not (second.transport.disconnecting or third.transport.disconnecting)
    fourth.feed(GET)
    assert split(fourth.raw)[0] == 200
    assert site.connection_limit is not None
    assert (site.connection_limit.open, site.connection_limit.idle_closed) == (3, 1)


def test_a_keep_alive_connection_that_just_answered_is_the_newest_idle(
    site: AllocSite,
) -> None:
    first, second, _ = connect(site), connect(site), connect(site)
    first.feed(GET)  # answered: idle again, now after the others
    connect(site)
    assert second.transport.disconnecting
    assert not first.transport.disconnecting


def test_connections_with_a_request_in_progress_are_never_closed_for_room(
    site: AllocSite, logs: list[LogEvent],
) -> None:
    busy = [connect(site) for _ in range(3)]
    for ex in busy:
        ex.feed(b"GET / HT")  # a head in progress
    refused = [connect(site) for _ in range(5)]
    assert not any(ex.transport.disconnecting for ex in busy)
    for ex in refused:
        assert ex.transport.disconnecting
        status, headers, body = split(ex.raw)
        assert (status, headers["connection"], headers["retry-after"]) == (503, "close", "1")
        assert json.loads(body) == {"error": "too many connections", "status": 503}
        close(ex)
    limit = site.connection_limit
    assert limit is not None and (limit.open, limit.refused) == (3, 5)
    assert len(site.channels) == 3
    # One message format, so that the log's repeat limit folds a flood.
    refusals = [e for e in logs if "HTTP connection refused" in formatEvent(e)]
    assert len(refusals) == 5 and len({e["log_format"] for e in refusals}) == 1
    # A busy connection gone: the next one is served.
    close(busy[0])
    again = connect(site)
    again.feed(GET)
    assert split(again.raw)[0] == 200


def test_a_closed_connection_gives_its_place_back(site: AllocSite) -> None:
    for _ in range(10):
        ex = connect(site)
        ex.feed(GET)
        close(ex)
    assert site.connection_limit is not None and site.connection_limit.open == 0
    assert site.connection_limit.idle_closed == site.connection_limit.refused == 0


def test_no_limit_means_no_cap() -> None:
    site = AllocSite(RootResource(FixedAllocator()), reactor=task.Clock())
    opened = [connect(site) for _ in range(50)]
    assert not any(ex.transport.disconnecting for ex in opened)


def test_a_limit_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="max_connections must be >= 1"):
        ConnectionLimit(0)
