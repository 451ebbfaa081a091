"""The one way to default a ``reactor=None`` argument to the global reactor."""

from __future__ import annotations

from typing import Any

from twisted.internet.interfaces import IReactorTime


def default_reactor(reactor: IReactorTime | None) -> Any:
    """``reactor`` itself, or the global ``twisted.internet.reactor``.

    Imported only when needed (and so late): importing it installs the
    default reactor, which must not happen at module import, before twistd
    or a test has chosen one.
    """
    if reactor is not None:
        return reactor
    from twisted.internet import reactor as global_reactor

    return global_reactor
