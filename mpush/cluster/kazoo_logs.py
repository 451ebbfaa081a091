"""Route stdlib ``logging`` records (kazoo's) into ``twisted.logger``.

kazoo logs through the stdlib; twistd only sees ``twisted.logger``. Without
a bridge, kazoo's warnings go to stderr through logging's last-resort
handler, unformatted and outside the daemon's log file.

kazoo is also chatty during an outage: every reconnect attempt logs
"Connecting to ...", "Connection dropped: ..." or "Connection time-out"
at INFO/WARNING, i.e. a few lines per second while ZooKeeper is down. The
watcher logs each state change once itself, so these per-attempt messages
are demoted to debug here, and a repeated warning of the same text is
demoted after its first appearance. A failed attempt is still reported:
:class:`AttemptReporter`, the logger each watcher gives its kazoo client,
hands the error to the watcher, which logs the outage once, then a reminder
now and then.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from twisted.logger import Logger, LogLevel
from twisted.python.failure import Failure

# Message templates kazoo logs once per connection attempt or per state
# change. Matched on the template, not the rendered text, so hosts and error
# details don't matter; and on any kazoo logger, because the connection
# code logs through the client's logger ("kazoo.client").
_PER_ATTEMPT = frozenset({
    "Connecting to %s(%s):%s, use_ssl: %r",
    "Connection dropped: %s",
    "Connection time-out: %s",
    "Transition to CONNECTING",
    "Closing connection to %s:%s",
    "Session has expired",
    "Zookeeper connection lost",
    "Zookeeper connection established, state: %s",
    "Zookeeper session closed, state: %s",
    # With unlimited retries this only appears when the client is stopped.
    "Failed connecting to Zookeeper within the connection retry policy.",
    # Reported by the watcher (AttemptReporter), once per outage.
    "Cannot resolve %s: %s",
})

#: kazoo's templates of a failed connection attempt (``kazoo.protocol.connection``):
#: the rendered text after the prefix is the error.
CONNECT_FAILURES = frozenset({
    "Connection dropped: %s",
    "Connection time-out: %s",
    "Cannot resolve %s: %s",
})

_LEVELS = (
    (logging.CRITICAL, LogLevel.critical),
    (logging.ERROR, LogLevel.error),
    (logging.WARNING, LogLevel.warn),
    (logging.INFO, LogLevel.info),
)

# How many distinct warning texts to remember for de-duplication; old ones
# are forgotten first, so a warning that comes back much later shows again.
_SEEN_LIMIT = 256


def twisted_level(levelno: int) -> LogLevel:
    """Map a stdlib level number to the nearest ``twisted.logger`` level."""
    for threshold, level in _LEVELS:
        if levelno >= threshold:
            return level
    return LogLevel.debug


class TwistedLoggerHandler(logging.Handler):
    """A ``logging.Handler`` that re-emits records on ``twisted.logger``.

    The Twisted namespace is the stdlib logger name (``kazoo.client``), so
    observers can filter on it. Records come from kazoo's threads and are
    passed to the observers in that thread (``logging.Handler.handle`` holds
    the handler's lock, so bridged records go one at a time). Hopping to the
    reactor instead would lose the records logged while it is not running,
    e.g. kazoo's own shutdown messages.
    """

    def __init__(self, level: int = logging.NOTSET, keep_debug: bool = False) -> None:
        super().__init__(level)
        self.keep_debug = keep_debug
        self._loggers: dict[str, Logger] = {}
        self._seen: OrderedDict[str, None] = OrderedDict()

    def emit(self, record: logging.LogRecord) -> None:
        try:
            level = self._level_for(record)
            if level is LogLevel.debug and not self.keep_debug:
                # twistd's log file shows every level: demoted chatter is
                # dropped here rather than written as debug lines.
                return
            log = self._loggers.get(record.name)
            if log is None:
                log = self._loggers[record.name] = Logger(namespace=record.name)
            text = record.getMessage()
            if record.exc_info and record.exc_info[1] is not None:
                _, value, tb = record.exc_info
                log.failure("{text}", Failure(value, type(value), tb), level=level, text=text)
            else:
                log.emit(level, "{text}", text=text)
        except Exception:
            self.handleError(record)

    def _level_for(self, record: logging.LogRecord) -> LogLevel:
        level = twisted_level(record.levelno)
        if record.name.startswith("kazoo") and record.msg in _PER_ATTEMPT:
            return LogLevel.debug
        if record.levelno >= logging.WARNING and record.levelno < logging.ERROR:
            # Same warning again (e.g. "Cannot resolve host" on every retry):
            # keep the first, demote the repeats.
            text = f"{record.name}\0{record.getMessage()}"
            if text in self._seen:
                self._seen.move_to_end(text)
                return LogLevel.debug
            self._seen[text] = None
            if len(self._seen) > _SEEN_LIMIT:
                self._seen.popitem(last=False)
        return level


class AttemptReporter(logging.LoggerAdapter):  # type: ignore[type-arg]
    """A kazoo client's logger that also passes each failed connection attempt on.

    kazoo retries forever and says why an attempt failed only in a log line
    (demoted above, being one per attempt). Given as the client's ``logger``,
    this calls ``on_failure(error)`` for each such line, in kazoo's
    connection thread, then logs the record as the stdlib logger ``logger``
    (``kazoo.client`` by default) would: the bridge sees the same records.
    """

    def __init__(self, on_failure: Callable[[str], object],
                 logger: logging.Logger | None = None) -> None:
        super().__init__(logger or logging.getLogger("kazoo.client"), {})
        self.on_failure = on_failure

    def log(self, level: int, msg: object, *args: Any, **kwargs: Any) -> None:
        # Every level method of LoggerAdapter (warning, info, ...) ends here.
        if msg in CONNECT_FAILURES:
            try:
                text = str(msg) % args
            except (TypeError, ValueError):
                text = str(msg)
            self.on_failure(text)
        super().log(level, msg, *args, **kwargs)


_installed: dict[str, TwistedLoggerHandler] = {}


def install(name: str = "kazoo", level: int = logging.INFO) -> TwistedLoggerHandler:
    """Bridge the stdlib logger ``name`` (and its children) into twisted.logger.

    Idempotent. Records below ``level`` are dropped before formatting, which
    keeps kazoo's DEBUG/BLATHER chatter cheap. A named logger stops
    propagating to the root logger, so its records are not bridged (or
    printed) twice; ``name=""`` is the root logger itself.
    """
    handler = _installed.get(name)
    std = logging.getLogger(name or None)
    if handler is None:
        handler = TwistedLoggerHandler()
        std.addHandler(handler)
        if name:
            std.propagate = False
        _installed[name] = handler
    std.setLevel(level)
    return handler


def uninstall(name: str = "kazoo") -> None:
    """Undo :func:`install` (used by tests)."""
    handler = _installed.pop(name, None)
    if handler is not None:
        std = logging.getLogger(name or None)
        std.removeHandler(handler)
        if name:
            std.propagate = True
            std.setLevel(logging.NOTSET)


def bridge_stdlib_logging() -> None:
    """The daemon's setup: kazoo from INFO, any other library from WARNING.

    Only installs handlers (no threads, no files), so it is safe before
    twistd daemonizes. Idempotent.
    """
    install("kazoo", logging.INFO)
    install("", logging.WARNING)
