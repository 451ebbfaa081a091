"""The daemon's log: its level (``mp.log-level``), the config's warnings, and JSON lines.

**Level.** twistd installs its log observer (its text log, or the one of
``--logger``) after ``makeService``; :func:`apply_log_config`, called there,
makes that observer drop the events below ``mp.log-level``, cut repeated
messages to their first lines and a count every 10 s
(:mod:`mpush.daemon.log_limits`), and logs a warning for each unknown
``mp.alloc`` key of the config file.

**JSON lines** for log shippers: ``twistd --logger mpush.daemon.logs.json_observer``.

twistd builds its log observer itself (before the reactor runs, after
``makeService``); its ``--logger`` option names a factory that it calls with
no arguments. :func:`json_observer` is such a factory: it writes where
twistd's own text observer would have written (``--logfile FILE``, with the
``SIGUSR1`` rotation; stdout for ``-n`` without ``--logfile`` or with
``--logfile -``), one JSON object per line::

    {"time": "2024-05-01T12:00:00.123Z", "level": "warn",
     "namespace": "mpush.cluster.redis", "system": "-",
     "text": "Redis (single) unavailable: connection refused",
     "mode": "single", "error": "connection refused"}

``time`` (UTC, ISO 8601, milliseconds), ``level`` (debug, info, warn, error,
critical), ``namespace`` (the logger's), ``system`` (Twisted's context, when
there is one) and ``text`` (the same message as the text log) are always
there; ``traceback`` is added when the event carries a failure. The event's
own fields follow at the top level: JSON scalars as they are, anything else
as its ``str``; a field whose name is one of the fixed keys above is written
as ``event_<name>`` instead. Twisted's internal ``log_*`` keys and the keys of
its legacy log system are left out.

The log calls never pass a secret (Redis password, ZooKeeper digest, push
token) as a field or in a message, so neither format writes one.
"""

from __future__ import annotations

import inspect
import json
import math
import sys
from datetime import UTC, datetime
from typing import IO, Any

from constantly import NamedConstant
from twisted.logger import (
    FileLogObserver,
    FilteringLogObserver,
    ILogObserver,
    LegacyLogObserverWrapper,
    LogEvent,
    Logger,
    LogLevel,
    LogLevelFilterPredicate,
    formatEvent,
)
from twisted.python.failure import Failure

from mpush.config import Settings
from mpush.daemon.log_limits import RepeatLimiter

#: The keys every line has (plus ``traceback`` for failures).
FIXED_KEYS = ("time", "level", "namespace", "system", "text", "traceback")

# What twisted.python.log (the legacy system) adds to events, in either
# direction; all of it is already in the fixed keys.
_LEGACY_KEYS = frozenset({"message", "time", "system", "format", "isError", "failure",
                          "why", "logLevel", "printed"})


def _value(value: Any) -> Any:
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", "backslashreplace")
    if isinstance(value, NamedConstant):
        return value.name
    if isinstance(value, Failure):
        return value.getErrorMessage()
    try:
        return str(value)
    except Exception as e:  # a broken __str__ must not lose the line
        return f"<unprintable {type(value).__name__}: {e!r}>"


def _stamp(when: object) -> str:
    """``log_time`` as UTC ISO 8601 with milliseconds: 2024-05-01T12:00:00.123Z."""
    if not isinstance(when, (int, float)) or not math.isfinite(when):
        when = datetime.now(UTC).timestamp()
    return datetime.fromtimestamp(when, UTC).isoformat(timespec="milliseconds")[:-6] + "Z"


def event_as_dict(event: LogEvent) -> dict[str, Any]:
    """The flat JSON shape of one ``twisted.logger`` event (see the module doc)."""
    level = event.get("log_level")
    line: dict[str, Any] = {
        "time": _stamp(event.get("log_time")),
        "level": level.name if isinstance(level, NamedConstant) else "info",
        "namespace": str(event.get("log_namespace") or "-"),
    }
    system = event.get("log_system")
    if system is not None:
        line["system"] = _value(system)
    line["text"] = formatEvent(event)
    failure = event.get("log_failure")
    if isinstance(failure, Failure):
        try:
            line["traceback"] = failure.getTraceback()
        except Exception:
            line["traceback"] = failure.getErrorMessage()
    for key, value in event.items():
        if not isinstance(key, str) or key.startswith("log_") or key in _LEGACY_KEYS:
            continue
        name = f"event_{key}" if key in FIXED_KEYS else key
        line[name] = _value(value)
    return line


def event_as_json_line(event: LogEvent) -> str:
    """One event as one line: JSON (ASCII only, so no raw newline) and ``\\n``."""
    try:
        text = json.dumps(event_as_dict(event), ensure_ascii=True, allow_nan=False)
    except Exception as e:  # never lose an event to a serialisation problem
        text = json.dumps({"time": _stamp(None), "level": "error",
                           "namespace": "mpush.daemon.logs",
                           "text": f"unserialisable event: {e!r}"})
    return text + "\n"


def json_file_observer(out: IO[Any]) -> FileLogObserver:
    """An observer writing :func:`event_as_json_line` lines to ``out``."""
    return FileLogObserver(out, event_as_json_line)


def _twistd_app_logger() -> Any:
    """twistd's ``AppLogger``: the one calling the ``--logger`` factory, or the
    one of the runner calling ``makeService``; None outside twistd."""
    from twisted.application.app import ApplicationRunner, AppLogger

    frame = inspect.currentframe()
    try:
        while frame is not None:
            candidate = frame.f_locals.get("self")
            if isinstance(candidate, AppLogger):
                return candidate
            if isinstance(candidate, ApplicationRunner):
                return candidate.logger
            frame = frame.f_back
        return None
    finally:
        del frame


def twistd_log_file() -> IO[Any]:
    """Where twistd's own observer would write: its ``--logfile`` (a rotating
    ``LogFile``), or stdout. Outside twistd: stdout."""
    app_logger = _twistd_app_logger()
    if app_logger is None:
        return sys.stdout
    if getattr(app_logger, "_syslog", False):
        raise SystemExit("mpush-alloc: --logger mpush.daemon.logs.json_observer cannot be "
                         "combined with --syslog")
    # twistd's text observer for these options: it opens the log file (or
    # refuses stdout for a daemon) and installs the SIGUSR1 rotation.
    text_observer = app_logger._getLogObserver()
    out = getattr(text_observer, "_outFile", None)
    return out if out is not None else sys.stdout


def json_observer() -> ILogObserver:
    """The ``twistd --logger`` factory: JSON lines where the text log would go."""
    return json_file_observer(twistd_log_file())


# -- level and config warnings ---------------------------------------------------

_config_log = Logger(namespace="mpush.config")


def level_filtered(observer: ILogObserver, level: str) -> ILogObserver:
    """``observer`` without the events below ``level`` (a LogLevel name: ``info``, ...)."""
    predicate = LogLevelFilterPredicate(defaultLogLevel=LogLevel.levelWithName(level))
    return FilteringLogObserver(observer, [predicate])


class LogLimits:
    """The repeat limit of twistd's log (:class:`RepeatLimiter`), once twistd has
    made its observer; the daemon calls :meth:`flush` every ``window`` seconds."""

    def __init__(self, *, burst: int = 20, window: float = 10.0) -> None:
        self.burst = burst
        self.window = window
        self.limiter: RepeatLimiter | None = None

    def wrap(self, observer: ILogObserver) -> ILogObserver:
        self.limiter = RepeatLimiter(observer, burst=self.burst, window=self.window)
        return self.limiter

    def flush(self) -> None:
        if self.limiter is not None:
            self.limiter.flush()


def filter_twistd_log(level: str, limits: LogLimits | None = None) -> None:
    """Make the observer twistd installs next drop the events below ``level``
    and, with ``limits``, cut repeated messages to a few lines and a count.

    twistd's ``AppLogger`` is made before ``makeService`` and builds its
    observer after it (its text log, or the ``--logger`` factory's): from
    ``makeService``, its factory is wrapped. Outside twistd, nothing to do.
    """
    app_logger = _twistd_app_logger()
    if app_logger is None:
        return
    make = app_logger._observerFactory or app_logger._getLogObserver

    def filtered() -> ILogObserver:
        observer = make()
        if not ILogObserver.providedBy(observer):  # a legacy one (--syslog)
            observer = LegacyLogObserverWrapper(observer)
        if limits is not None:
            observer = limits.wrap(observer)
        return level_filtered(observer, level)

    app_logger._observerFactory = filtered


def warn_unknown_keys(settings: Settings) -> None:
    """One warning per unknown ``mp.alloc`` key of the config file, with the nearest key."""
    for unknown in settings.unknown_keys:
        if unknown.did_you_mean is None:
            _config_log.warn("unknown key {key} in {file}: ignored", key=unknown.key,
                             file=settings.source)
        else:
            _config_log.warn("unknown key {key} in {file}: did you mean {did_you_mean}?",
                             key=unknown.key, file=settings.source,
                             did_you_mean=unknown.did_you_mean)


def apply_log_config(settings: Settings) -> LogLimits:
    """What the config says of the log, from ``makeService``: its level, and the
    unknown keys (logged when twistd's log starts, at any level but critical).
    Returns the repeat limit, for the daemon to flush."""
    limits = LogLimits()
    filter_twistd_log(settings.log_level, limits)
    warn_unknown_keys(settings)
    return limits
