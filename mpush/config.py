"""The config file (HOCON, the Java alloc's format) as typed, validated settings.

Pure: apart from reading the config file (and any file it includes) and
checking that a configured TLS certificate and key can be opened, nothing
here touches the outside world. Every problem is raised as a `ConfigError`
whose text is one line naming the file and, where there is one, the key.

Java compatibility (see README.md (Configuration) for the whole story):

* `${user.dir}`, `${user.home}`, `${user.name}` and `${java.io.tmpdir}` are
  answered the way a JVM would; any other substitution that neither the file
  nor the environment defines (`${log.level}`, a Maven placeholder) is left
  alone unless a key we read depends on it, which is then an error.
* Durations: a bare number is milliseconds; sizes: a bare number is bytes.
* `//` and `#` end an unquoted value even with no space before them
  (`cluster-model=single//single,cluster`), as in Java but not in pyhocon.
* `include classpath(...)` is skipped (our built-in defaults stand in for the
  Java reference.conf); file includes are read; url/package includes are
  refused, so loading a config never touches the network or imports code.
"""

from __future__ import annotations

import getpass
import ipaddress
import math
import os
import re
import tempfile
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from fractions import Fraction
from typing import Any, NoReturn

from pyhocon import ConfigFactory, ConfigTree
from pyhocon.config_tree import ConfigSubstitution, ConfigValues, NoneValue

from mpush.services.refresher import DEFAULT_CHANGE_DELAY, DEFAULT_REFRESH_INTERVAL

__all__ = [
    "AllocSettings",
    "ConfigError",
    "RedisSettings",
    "Settings",
    "ZkSettings",
    "format_duration",
    "load_settings",
    "parse_duration",
    "parse_settings",
    "parse_size",
]


class ConfigError(Exception):
    """A config problem, rendered as one line: ``<file>: <key>: <problem>``."""

    def __init__(self, source: str, key: str | None, problem: str) -> None:
        self.source = source
        self.key = key
        # Callers show this on one line (twistd exits with it), so fold any
        # newline a library message might carry.
        self.problem = " ".join(problem.split())
        super().__init__(source, key, self.problem)

    def __str__(self) -> str:
        if self.key is None:
            return f"{self.source}: {self.problem}"
        return f"{self.source}: {self.key}: {self.problem}"


@dataclass(frozen=True)
class ZkSettings:
    server_address: str = "127.0.0.1:2181"  # kazoo hosts string "h1:p1,h2:p2[/chroot]"
    namespace: str = "mpush"  # "" = the ZooKeeper root
    digest: str | None = "mpush"  # None = no auth
    session_timeout: float = 5.0  # s
    connection_timeout: float = 5.0  # s


@dataclass(frozen=True)
class RedisSettings:
    mode: str = "single"  # "single" | "sentinel" | "cluster"
    nodes: tuple[tuple[str, int], ...] = (("127.0.0.1", 6379),)  # IPv6 hosts without brackets
    password: str | None = None
    sentinel_master: str | None = None
    connect_timeout: float = 2.0  # s
    reply_timeout: float = 2.0  # s


IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class AllocSettings:
    interface: str = "0.0.0.0"
    refresh_interval: float = DEFAULT_REFRESH_INTERVAL  # s
    change_delay: float = DEFAULT_CHANGE_DELAY  # s
    tls_cert: str | None = None  # absolute path once loaded
    tls_key: str | None = None
    data_dir: str = "run/data"  # made absolute (against the CWD) once loaded
    access_log: str | None = None
    # Additions beyond docs/INTERNALS.md; each is documented in README.md (Configuration).
    retry_after: int = 5  # whole seconds, for the Retry-After header of a 503
    push_timeout: float = 3.0  # s, one /push request to one gateway
    broadcast_timeout: float = 30.0  # s, a broadcast's wait for each gateway
    gateway_connect_timeout: float = 4.0  # s
    shutdown_grace: float = 5.0  # s, for in-flight pushes at stop
    drain_delay: float = 2.0  # s, at stop: /health 503 before the listener closes
    max_request_size: int = 65536  # bytes, largest accepted HTTP request body
    max_users_per_push: int = 1000  # distinct users one /push may name (else 413)
    max_inflight_pushes: int = 10_000  # user pushes in flight (else 503 + Retry-After)
    request_head_timeout: float = 10.0  # s, for a request line + headers to arrive
    max_pending_per_gateway: int = 10_000  # requests waiting on one gateway connection
    push_token: str | None = None  # /push needs "Authorization: Bearer <token>" when set
    admin_port: int | None = None  # /metrics on its own plain-http port (not the main one)
    # Without a token, only these client networks may use /push.
    push_allow: tuple[IPNetwork, ...] = (
        ipaddress.ip_network("127.0.0.1/32"),
        ipaddress.ip_network("::1/128"),
    )


@dataclass(frozen=True)
class Settings:
    source: str = "<defaults>"  # the config file as given, for messages
    port: int = 9999
    protocol: str = "http"  # "http" | "https"
    gateway_net: str = "tcp"
    max_packet_size: int = 10240  # bytes
    zk: ZkSettings = field(default_factory=ZkSettings)
    redis: RedisSettings = field(default_factory=RedisSettings)
    alloc: AllocSettings = field(default_factory=AllocSettings)
    gateway_client_num: int = 1  # TCP connections per gateway server


# --------------------------------------------------------------------------
# Durations and sizes (the HOCON / Typesafe Config formats, case-sensitive)

_DURATION_UNITS: dict[str, Fraction] = {
    **dict.fromkeys(
        ("", "ms", "milli", "millis", "millisecond", "milliseconds"), Fraction(1, 1000)
    ),
    **dict.fromkeys(("us", "micro", "micros", "microsecond", "microseconds"), Fraction(1, 10**6)),
    **dict.fromkeys(("ns", "nano", "nanos", "nanosecond", "nanoseconds"), Fraction(1, 10**9)),
    **dict.fromkeys(("s", "second", "seconds"), Fraction(1)),
    **dict.fromkeys(("m", "min", "mins", "minute", "minutes"), Fraction(60)),
    **dict.fromkeys(("h", "hour", "hours"), Fraction(3600)),
    **dict.fromkeys(("d", "day", "days"), Fraction(86400)),
    # Not Java, but pyhocon already turns "1w" into a week before we see it.
    **dict.fromkeys(("w", "week", "weeks"), Fraction(7 * 86400)),
}

_SIZE_UNITS: dict[str, int] = {
    **dict.fromkeys(("", "b", "B", "byte", "bytes"), 1),
    **dict.fromkeys(("kB", "kilobyte", "kilobytes"), 1000),
    **dict.fromkeys(("MB", "megabyte", "megabytes"), 1000**2),
    **dict.fromkeys(("GB", "gigabyte", "gigabytes"), 1000**3),
    **dict.fromkeys(("TB", "terabyte", "terabytes"), 1000**4),
    # "kb", "mb", ... are not Java units; people who write them mean 1024-based.
    **dict.fromkeys(("k", "K", "Ki", "KiB", "kibibyte", "kibibytes", "kb"), 1024),
    **dict.fromkeys(("m", "M", "Mi", "MiB", "mebibyte", "mebibytes", "mb"), 1024**2),
    **dict.fromkeys(("g", "G", "Gi", "GiB", "gibibyte", "gibibytes", "gb"), 1024**3),
    **dict.fromkeys(("t", "T", "Ti", "TiB", "tebibyte", "tebibytes", "tb"), 1024**4),
}

_NUMBER_UNIT = re.compile(r"\s*(?P<number>\d+(?:\.\d*)?|\.\d+)\s*(?P<unit>[A-Za-z]*)\s*")


def parse_duration(text: str) -> float:
    """``"5s"`` → 5.0, ``"500ms"`` → 0.5, ``"5000"`` → 5.0 (bare = ms). ValueError if not."""
    match = _NUMBER_UNIT.fullmatch(text)
    if match is None or match["unit"] not in _DURATION_UNITS:
        raise ValueError(f"not a duration: {text!r}")
    return float(Fraction(match["number"]) * _DURATION_UNITS[match["unit"]])


def parse_size(text: str) -> int:
    """``"10k"`` → 10240, ``"10kB"`` → 10000, ``"512"`` → 512 (bare = bytes). ValueError if not."""
    match = _NUMBER_UNIT.fullmatch(text)
    if match is None or match["unit"] not in _SIZE_UNITS:
        raise ValueError(f"not a size: {text!r}")
    # Java truncates fractional byte counts ("0.1k" = 102); so do we.
    return int(Fraction(match["number"]) * _SIZE_UNITS[match["unit"]])


def format_duration(seconds: float) -> str:
    """A short exact spelling that parse_duration reads back (for messages)."""
    if seconds == 0:
        return "0s"
    for unit, size in (("d", 86400.0), ("h", 3600.0), ("m", 60.0), ("s", 1.0), ("ms", 1e-3)):
        count = seconds / size
        if abs(count) >= 1 and abs(count - round(count)) <= 1e-12 * abs(count):
            return f"{round(count)}{unit}"
    return f"{seconds:.9f}".rstrip("0").rstrip(".") + "s"


# --------------------------------------------------------------------------
# Reading and parsing the file

_MAX_FILE_SIZE = 1 << 20  # a config file is a few KiB; refuse anything absurd
_MAX_INCLUDE_DEPTH = 8

# Tokens that matter when looking for include statements: strings and
# comments are skipped whole so that "include" inside them is not seen.
_LEX = re.compile(
    r'(?P<triple>"""[\s\S]*?"*""")'
    r'|(?P<quoted>"(?:[^"\\\n]|\\.)*")'
    r"|(?P<comment>(?:#|//)[^\n]*)"
    r"|(?P<word>[A-Za-z_][\w.\-]*)"
    r'|(?P<other>[^"#/A-Za-z_]+|[\s\S])'
)
_INCLUDE_ARG = re.compile(
    r"[ \t]*(?P<req>required[ \t]*\([ \t]*)?"
    r"(?:(?P<kind>url|file|classpath|package)[ \t]*\([ \t]*)?"
    r'"(?P<target>(?:[^"\\\n]|\\.)*)"'
    r"(?(kind)[ \t]*\))(?(req)[ \t]*\))"
)
_URL_LIKE = re.compile(r"^(?:https?|file)://")


@dataclass(frozen=True)
class _Include:
    start: int
    end: int
    line: int
    kind: str  # "file" | "classpath" | "url" | "package"
    target: str
    required: bool


def _scan(text: str) -> tuple[list[_Include], list[tuple[int, int]]]:
    """The include statements and the comments of one file, outside strings."""
    includes: list[_Include] = []
    comments: list[tuple[int, int]] = []
    pos = 0
    while pos < len(text):
        match = _LEX.match(text, pos)
        assert match is not None  # the last alternative takes any character
        pos = match.end()
        if match["comment"] is not None:
            comments.append(match.span())
            continue
        if match["word"] is None or match["word"].lower() != "include":
            continue
        arg = _INCLUDE_ARG.match(text, pos)
        if arg is None:
            continue  # a key that happens to be called "include"
        kind = arg["kind"] or ("url" if _URL_LIKE.match(arg["target"]) else "file")
        target = re.sub(r"\\(.)", r"\1", arg["target"])
        line = text.count("\n", 0, match.start()) + 1
        includes.append(
            _Include(match.start(), arg.end(), line, kind, target, arg["req"] is not None)
        )
        pos = arg.end()
    return includes, comments


def _blank(text: str, spans: list[tuple[int, int]]) -> str:
    """Spaces over each span, so that lines and columns stay where they were."""
    parts = []
    last = 0
    for start, end in sorted(spans):
        parts += [text[last:start], " " * (end - start)]
        last = end
    parts.append(text[last:])
    return "".join(parts)


def _read_text(path: str, source: str, what: str = "cannot read config file") -> str:
    try:
        with open(path, "rb") as handle:
            data = handle.read(_MAX_FILE_SIZE + 1)
    except OSError as exc:
        raise ConfigError(source, None, f"{what}: {exc.strerror or exc}") from None
    if len(data) > _MAX_FILE_SIZE:
        raise ConfigError(source, None, f"{what}: larger than {_MAX_FILE_SIZE} bytes")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ConfigError(source, None, f"{what}: not UTF-8 text (byte {exc.start})") from None


def _prepare(text: str, source: str, basedir: str, seen: tuple[str, ...]) -> str:
    """Check the include statements of one file; return its text ready for pyhocon.

    pyhocon reads file includes itself, so the files they name are checked
    here first, recursively: that keeps pyhocon from fetching URLs or
    importing packages anywhere in the tree, turns an include cycle into an
    error instead of a RecursionError, and names the right file on a syntax
    error inside an included file. Only the main file's text can be changed
    (pyhocon reads the others from disk), so only there are classpath
    includes and comments blanked out.
    """
    main = len(seen) == 1
    includes, comments = _scan(text)
    # HOCON ends an unquoted value at "//" ("cluster-model=single//x", as the
    # Java reference.conf writes it); pyhocon would take "single//x" whole.
    blanks = list(comments) if main else []
    for inc in includes:
        where = f"line {inc.line}: include"
        if inc.kind == "classpath":
            if not main:
                raise ConfigError(
                    source, None, f"{where} classpath(...) only works in the main file"
                )
            # Java resources do not exist here; our defaults play reference.conf.
            blanks.append((inc.start, inc.end))
            continue
        if inc.kind in ("url", "package"):
            raise ConfigError(source, None, f"{where} {inc.kind}(...) is not supported, only files")
        if "*" in inc.target or "?" in inc.target:
            raise ConfigError(source, None, f"{where} patterns are not supported: {inc.target!r}")
        # The same path pyhocon will open (relative to the including file).
        path = os.path.join(basedir, inc.target)
        real = os.path.realpath(path)
        if real in seen:
            raise ConfigError(source, None, f"{where} {inc.target!r} makes a cycle")
        if len(seen) >= _MAX_INCLUDE_DEPTH:
            raise ConfigError(source, None, f"{where} nested more than {_MAX_INCLUDE_DEPTH} deep")
        if not os.path.exists(path):
            if inc.required:
                raise ConfigError(source, None, f"{where} required {inc.target!r}: no such file")
            continue  # HOCON: a missing include is not an error
        nested = _read_text(path, path, "cannot read included file")
        nested_dir = os.path.dirname(path)
        _parse_tree(_prepare(nested, path, nested_dir, (*seen, real)), path, nested_dir)
    return _blank(text, blanks)


def _parse_tree(text: str, source: str, basedir: str) -> ConfigTree:
    """pyhocon, unresolved; any failure becomes one short line."""
    try:
        tree = ConfigFactory.parse_string(text, basedir=basedir, resolve=False)
    except Exception as exc:  # pyparsing and pyhocon raise many kinds; none may escape raw
        raise ConfigError(source, None, _describe_parse_error(exc)) from None
    if not isinstance(tree, ConfigTree):
        raise ConfigError(source, None, "the top level must be an object, not a list")
    return tree


def _describe_parse_error(exc: Exception) -> str:
    lineno = getattr(exc, "lineno", None)
    column = getattr(exc, "col", None)
    if lineno is not None:  # pyparsing: its message lists the whole grammar, so keep it short
        msg = str(getattr(exc, "msg", ""))
        detail = f": {msg}" if msg and "\n" not in msg and len(msg) <= 80 else ""
        return f"syntax error at line {lineno}, column {column}{detail}"
    text = " ".join(str(exc).split()) or type(exc).__name__
    if len(text) > 200:
        text = text[:197] + "..."
    return f"syntax error: {text}"


# Java system properties that real mpush config files refer to.
_JAVA_PROPERTIES: dict[str, Callable[[], str]] = {
    "user.dir": os.getcwd,
    "user.home": lambda: os.path.expanduser("~"),
    "user.name": getpass.getuser,
    "java.io.tmpdir": tempfile.gettempdir,
}

# An unresolvable ${x} resolves to this text around "${x}"; reading a key
# whose value holds it is an error, and nothing else ever looks at it.
_UNRESOLVED = "\x00"
_UNRESOLVED_RE = re.compile("\x00(.*?)\x00")


def _substitutions(item: Any) -> Iterator[ConfigSubstitution]:
    if isinstance(item, ConfigSubstitution):
        yield item
    elif isinstance(item, ConfigValues):
        for token in item.tokens:
            yield from _substitutions(token)
    elif isinstance(item, ConfigTree):
        for value in item.values():
            yield from _substitutions(value)
    elif isinstance(item, list):
        for value in item:
            yield from _substitutions(value)


def _has_path(tree: ConfigTree, key: str) -> bool:
    try:
        tree.get(key)
    except Exception:  # missing, or a path through a non-object
        return False
    return True


def _resolve(tree: ConfigTree, source: str) -> ConfigTree:
    fallback = ConfigTree(root=True)
    for sub in _substitutions(tree):
        name = sub.variable.strip()
        if sub.optional or _has_path(tree, name) or name in os.environ or _has_path(fallback, name):
            continue  # pyhocon handles these by itself
        if name in _JAVA_PROPERTIES:
            try:
                value = _JAVA_PROPERTIES[name]()
            except Exception:  # getpass.getuser() fails without a user entry
                value = _UNRESOLVED + "${" + name + "}" + _UNRESOLVED
        else:
            value = _UNRESOLVED + "${" + name + "}" + _UNRESOLVED
        try:
            fallback.put(name, value)
        except Exception:  # clashes with another name; pyhocon then reports it
            pass
    try:
        return tree.with_fallback(fallback, resolve=True)
    except Exception as exc:
        raise ConfigError(
            source, None, _describe_parse_error(exc).replace("syntax error", "cannot resolve", 1)
        ) from None


def load_settings(path: str | os.PathLike[str]) -> Settings:
    """Read, parse and validate one config file. Raises ConfigError."""
    source = os.fspath(path)
    return parse_settings(
        _read_text(source, source), source=source, basedir=os.path.dirname(source)
    )


def parse_settings(text: str, source: str = "<string>", basedir: str = "") -> Settings:
    """Like `load_settings` for text already in hand (includes resolve against basedir)."""
    real = os.path.realpath(source) if os.path.isfile(source) else source
    prepared = _prepare(text, source, basedir, (real,))
    tree = _resolve(_parse_tree(prepared, source, basedir), source)
    return _Reader(source, tree).settings()


# --------------------------------------------------------------------------
# Typed, validated reading

_MISSING: Any = object()
_INT32_MAX = 2**31 - 1
_MAX_LIMIT = 1_000_000  # upper bound of the count limits (users, pushes, pending)
_MIN_TOKEN = 16
_MAX_TOKEN = 4096


def _show(value: Any) -> str:
    """A short rendering of a config value for messages."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, str):
        text = value if len(value) <= 60 else value[:57] + "..."
        return repr(text)
    if isinstance(value, timedelta):
        return format_duration(value.total_seconds())
    if isinstance(value, ConfigTree):
        return "an object"
    if isinstance(value, list):
        return "a list"
    if value is None:
        return "null"
    return f"a {type(value).__name__}"


class _Reader:
    def __init__(self, source: str, tree: ConfigTree) -> None:
        self.source = source
        self.tree = tree

    def fail(self, key: str, problem: str) -> NoReturn:
        raise ConfigError(self.source, key, problem)

    def check_resolved(self, key: str, value: Any) -> None:
        if isinstance(value, str) and _UNRESOLVED in value:
            found = _UNRESOLVED_RE.search(value)
            name = found.group(1) if found else "${...}"
            self.fail(
                key, f"unresolved substitution {name} (define it in the file or the environment)"
            )

    def get(self, key: str) -> Any:
        """The raw value, None for null, _MISSING when absent."""
        node: Any = self.tree
        parts = key.split(".")
        for index, part in enumerate(parts):
            if not isinstance(node, ConfigTree):
                self.fail(".".join(parts[:index]), f"must be an object, got {_show(node)}")
            node = OrderedDict.get(node, part, _MISSING)
            if node is _MISSING:
                return _MISSING
            self.check_resolved(".".join(parts[: index + 1]), node)
        return None if isinstance(node, NoneValue) else node

    def present(self, key: str) -> Any:
        """The value, or _MISSING when absent; null is an error (only optional keys take it)."""
        value = self.get(key)
        if value is None:
            self.fail(key, "must not be null")
        return value

    def string(self, key: str, default: str) -> str:
        value = self.present(key)
        if value is _MISSING:
            return default
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, int):
            return str(value)  # as Java's getString; a leading zero is lost, so quote such values
        if not isinstance(value, str):
            self.fail(key, f"must be a string, got {_show(value)}")
        return str(value)

    def optional_string(self, key: str, default: str | None = None) -> str | None:
        """null and "" mean 'none' (password:"" in the Java files)."""
        if self.get(key) is None:
            return None
        value = self.string(key, default or "")
        return value or None

    def choice(self, key: str, default: str, choices: tuple[str, ...]) -> str:
        value = self.string(key, default).strip()
        if value not in choices:
            self.fail(key, f"must be one of {', '.join(choices)}, got {value!r}")
        return value

    def integer(self, key: str, default: int, low: int, high: int) -> int:
        value = self.present(key)
        if value is _MISSING:
            return default
        number: int | None = None
        if isinstance(value, int) and not isinstance(value, bool):
            number = value
        elif isinstance(value, str) and re.fullmatch(r"\s*[+-]?\d+\s*", value):
            number = int(value)
        if number is None or not low <= number <= high:
            self.fail(key, f"must be an integer {low}..{high}, got {_show(value)}")
        return number

    def duration(self, key: str, default: float, low: float, high: float) -> float:
        value = self.present(key)
        if value is _MISSING:
            return default
        seconds = self._to_seconds(key, value)
        if not low <= seconds <= high:
            self.fail(
                key,
                f"must be between {format_duration(low)} and {format_duration(high)}, "
                f"got {format_duration(seconds)}",
            )
        return seconds

    def _to_seconds(self, key: str, value: Any) -> float:
        if isinstance(value, timedelta):  # pyhocon already read "5s" and "10 minutes"
            return value.total_seconds()
        if isinstance(value, int | float) and not isinstance(value, bool) and value >= 0:
            return value / 1000.0  # Java: a bare number is milliseconds
        if isinstance(value, str):
            try:
                return parse_duration(value)
            except ValueError:
                pass
        self.fail(key, f"must be a duration such as 5s or 500ms, got {_show(value)}")

    def size(self, key: str, default: int, low: int, high: int) -> int:
        value = self.present(key)
        if value is _MISSING:
            return default
        count: int | None = None
        if isinstance(value, int) and not isinstance(value, bool):
            count = value
        elif isinstance(value, float) and value.is_integer():
            count = int(value)
        elif isinstance(value, str):
            try:
                count = parse_size(value)
            except ValueError:
                count = None
        elif isinstance(value, timedelta):
            # pyhocon reads "1m" as one minute before we see it; in a size it
            # means 1 MiB. Only whole minutes can have come from "<n>m".
            seconds = value.total_seconds()
            if seconds > 0 and seconds % 60 == 0:
                count = int(seconds // 60) * 1024 * 1024
        if count is None:
            self.fail(key, f"must be a size such as 10k or 1m, got {_show(value)}")
        if not low <= count <= high:
            self.fail(key, f"must be between {low} and {high} bytes, got {count}")
        return count

    def path(self, key: str, default: str | None) -> str | None:
        value = self.optional_string(key, default)
        return None if value is None else os.path.abspath(os.path.expanduser(value))

    # ---- the settings, key by key ------------------------------------

    def settings(self) -> Settings:
        protocol = self.choice("mp.net.alloc-server-protocol", Settings.protocol, ("http", "https"))
        port = self.integer("mp.net.alloc-server-port", Settings.port, 1, 65535)
        net = self.string("mp.net.gateway-server-net", Settings.gateway_net).strip()
        if net == "udp":
            self.fail("mp.net.gateway-server-net", "udp is not supported yet, use tcp")
        if net != "tcp":
            self.fail("mp.net.gateway-server-net", f"must be tcp, got {net!r}")
        return Settings(
            source=self.source,
            port=port,
            protocol=protocol,
            gateway_net=net,
            max_packet_size=self.size(
                "mp.core.max-packet-size", Settings.max_packet_size, 1, _INT32_MAX
            ),
            zk=self.zk(),
            redis=self.redis(),
            alloc=self.alloc(protocol, port),
            gateway_client_num=self.integer(
                "mp.net.gateway-client-num", Settings.gateway_client_num, 1, 64
            ),
        )

    def zk(self) -> ZkSettings:
        key = "mp.zk.namespace"
        namespace = self.string(key, ZkSettings.namespace).strip().strip("/")
        if re.search(r"\s|//", namespace):
            self.fail(key, f"must be a ZooKeeper path like mpush, got {namespace!r}")
        return ZkSettings(
            server_address=self.zk_hosts(),
            namespace=namespace,
            digest=self.optional_string("mp.zk.digest", ZkSettings.digest),
            session_timeout=self.duration(
                "mp.zk.sessionTimeoutMs", ZkSettings.session_timeout, 1.0, 3600.0
            ),
            connection_timeout=self.duration(
                "mp.zk.connectionTimeoutMs", ZkSettings.connection_timeout, 0.1, 3600.0
            ),
        )

    def zk_hosts(self) -> str:
        key = "mp.zk.server-address"
        text = self.string(key, ZkSettings.server_address).strip()
        hosts, slash, chroot = text.partition("/")
        if slash and not re.fullmatch(r"[^/\s]+(?:/[^/\s]+)*", chroot):
            self.fail(key, f"bad chroot after the hosts, got {text!r}")
        entries = [entry.strip() for entry in hosts.split(",")]
        if not any(entries):
            self.fail(key, "must list at least one host:port")
        parts = []
        for entry in entries:
            if not entry:
                self.fail(key, f"has an empty entry, got {text!r}")
            host, port = self.host_port(key, entry, default_port=2181)
            parts.append(f"[{host}]:{port}" if ":" in host else f"{host}:{port}")
        return ",".join(parts) + (f"/{chroot}" if slash else "")

    def host_port(self, key: str, entry: str, default_port: int | None) -> tuple[str, int]:
        """'host:port' or '[v6]:port' (port optional when default_port is given)."""
        match = re.fullmatch(
            r"\[(?P<v6>[0-9A-Fa-f:.]+)\](?::(?P<p6>\d+))?|(?P<host>[^\s:/\[\]]+)(?::(?P<port>\d+))?",
            entry,
        )
        if match is None:
            self.fail(key, f"entries must be host:port, got {entry!r}")
        host = match["v6"] or match["host"]
        port_text = match["p6"] or match["port"]
        if port_text is None:
            if default_port is None:
                self.fail(key, f"entries must be host:port, got {entry!r} (no port)")
            return host, default_port
        port = int(port_text)
        if not 1 <= port <= 65535:
            self.fail(key, f"port must be 1..65535, got {entry!r}")
        return host, port

    def redis(self) -> RedisSettings:
        mode = self.choice(
            "mp.redis.cluster-model", RedisSettings.mode, ("single", "sentinel", "cluster")
        )
        master = self.optional_string("mp.redis.sentinel-master")
        if mode == "sentinel" and master is None:
            self.fail(
                "mp.redis.sentinel-master", "required when mp.redis.cluster-model is sentinel"
            )
        return RedisSettings(
            mode=mode,
            nodes=self.redis_nodes(),
            password=self.optional_string("mp.redis.password"),
            sentinel_master=master if mode == "sentinel" else None,
            connect_timeout=self.duration(
                "mp.alloc.redis-connect-timeout", RedisSettings.connect_timeout, 0.01, 300.0
            ),
            reply_timeout=self.duration(
                "mp.alloc.redis-reply-timeout", RedisSettings.reply_timeout, 0.01, 300.0
            ),
        )

    def redis_nodes(self) -> tuple[tuple[str, int], ...]:
        key = "mp.redis.nodes"
        value = self.present(key)
        if value is _MISSING:
            return RedisSettings.nodes
        if isinstance(value, str):
            items: list[Any] = value.split(",")
        elif isinstance(value, list):
            items = list(value)
        else:
            self.fail(key, f'must be a list like ["127.0.0.1:6379"], got {_show(value)}')
        nodes = []
        for item in items:
            self.check_resolved(key, item)
            if not isinstance(item, str):
                self.fail(key, f'entries must be "host:port" strings, got {_show(item)}')
            for entry in item.split(","):  # a list item may itself be "h1:p1,h2:p2"
                nodes.append(self.host_port(key, entry.strip(), default_port=None))
        if not nodes:
            self.fail(key, "must list at least one host:port")
        return tuple(nodes)

    def alloc(self, protocol: str, port: int = 9999) -> AllocSettings:
        interface = self.string("mp.alloc.interface", AllocSettings.interface).strip()
        try:
            ipaddress.ip_address(interface)
        except ValueError:
            self.fail(
                "mp.alloc.interface",
                f"must be an IP address such as 0.0.0.0 or ::, got {interface!r}",
            )
        tls_cert = self.path("mp.alloc.tls-cert", None)
        tls_key = self.path("mp.alloc.tls-key", None)
        if (tls_cert is None) != (tls_key is None):
            given, missing = ("tls-cert", "tls-key") if tls_key is None else ("tls-key", "tls-cert")
            self.fail(f"mp.alloc.{missing}", f"must be set together with mp.alloc.{given}")
        if protocol == "https":
            for key, path in (("mp.alloc.tls-cert", tls_cert), ("mp.alloc.tls-key", tls_key)):
                if path is not None:
                    self.readable(key, path)
        data_dir = self.path("mp.alloc.data-dir", AllocSettings.data_dir)
        if data_dir is None:
            self.fail("mp.alloc.data-dir", "must not be empty")
        return AllocSettings(
            interface=interface,
            refresh_interval=self.duration(
                "mp.alloc.refresh-interval", AllocSettings.refresh_interval, 0.1, 86400.0
            ),
            change_delay=self.duration(
                "mp.alloc.change-delay", AllocSettings.change_delay, 0.0, 600.0
            ),
            tls_cert=tls_cert,
            tls_key=tls_key,
            data_dir=data_dir,
            access_log=self.path("mp.alloc.access-log", None),
            retry_after=self.retry_after(),
            push_timeout=self.duration(
                "mp.alloc.push-timeout", AllocSettings.push_timeout, 1.0, 600.0
            ),
            broadcast_timeout=self.duration(
                "mp.alloc.broadcast-timeout", AllocSettings.broadcast_timeout, 1.0, 86400.0
            ),
            gateway_connect_timeout=self.duration(
                "mp.alloc.gateway-connect-timeout",
                AllocSettings.gateway_connect_timeout,
                0.1,
                300.0,
            ),
            shutdown_grace=self.duration(
                "mp.alloc.shutdown-grace", AllocSettings.shutdown_grace, 0.0, 600.0
            ),
            drain_delay=self.duration(
                "mp.alloc.drain-delay", AllocSettings.drain_delay, 0.0, 600.0
            ),
            max_request_size=self.size(
                "mp.alloc.max-request-size", AllocSettings.max_request_size, 1024, 16 * 1024 * 1024
            ),
            **self.push_limits(),
            request_head_timeout=self.duration(
                "mp.alloc.request-head-timeout", AllocSettings.request_head_timeout, 0.1, 3600.0
            ),
            max_pending_per_gateway=self.integer(
                "mp.alloc.max-pending-per-gateway",
                AllocSettings.max_pending_per_gateway,
                1,
                _MAX_LIMIT,
            ),
            push_token=self.push_token(),
            push_allow=self.push_allow(),
            admin_port=self.admin_port(port),
        )

    def admin_port(self, port: int) -> int | None:
        key = "mp.alloc.admin-port"
        if self.present(key) is _MISSING:
            return None
        admin = self.integer(key, 0, 1, 65535)
        if admin == port:
            self.fail(key, f"must differ from mp.net.alloc-server-port ({port})")
        return admin

    def push_limits(self) -> dict[str, int]:
        users = self.integer(
            "mp.alloc.max-users-per-push", AllocSettings.max_users_per_push, 1, _MAX_LIMIT
        )
        key = "mp.alloc.max-inflight-pushes"
        inflight = self.integer(key, AllocSettings.max_inflight_pushes, 1, _MAX_LIMIT)
        if inflight < users:
            # Else a request within the users limit could never be admitted.
            self.fail(
                key, f"must be at least mp.alloc.max-users-per-push ({users}), got {inflight}"
            )
        return {"max_users_per_push": users, "max_inflight_pushes": inflight}

    def push_token(self) -> str | None:
        key = "mp.alloc.push-token"
        token = self.optional_string(key)
        if token is None:
            return None
        # It travels in an Authorization header: visible ASCII only, and long
        # enough that guessing it is not an option.
        if not re.fullmatch(r"[!-~]+", token):
            self.fail(key, "must be visible ASCII characters only (no spaces)")
        if not _MIN_TOKEN <= len(token) <= _MAX_TOKEN:
            self.fail(
                key, f"must be {_MIN_TOKEN} to {_MAX_TOKEN} characters long, got {len(token)}"
            )
        return token

    def push_allow(self) -> tuple[IPNetwork, ...]:
        key = "mp.alloc.push-allow"
        value = self.present(key)
        if value is _MISSING:
            return AllocSettings.push_allow
        if isinstance(value, str):
            items: list[Any] = [part for part in value.split(",") if part.strip()]
        elif isinstance(value, list):
            items = list(value)
        else:
            self.fail(key, f'must be a list like ["127.0.0.1/32", "::1/128"], got {_show(value)}')
        networks: dict[IPNetwork, None] = {}
        for item in items:
            self.check_resolved(key, item)
            if not isinstance(item, str):
                self.fail(key, f'entries must be "address/prefix" strings, got {_show(item)}')
            text = item.strip()
            try:
                network = ipaddress.ip_network(text)
            except ValueError as exc:
                if "host bits set" in str(exc):
                    wider = ipaddress.ip_network(text, strict=False)
                    self.fail(key, f"{text!r} has host bits set; did you mean {str(wider)!r}?")
                self.fail(key, f"entries must be networks like 10.0.0.0/8 or ::1/128, got {text!r}")
            networks.setdefault(network)
        return tuple(networks)

    def retry_after(self) -> int:
        # The header counts whole seconds, so a bare number here is seconds
        # (not Java's milliseconds); "5s" or "1m" work too, rounded up.
        key = "mp.alloc.retry-after"
        value = self.present(key)
        if value is _MISSING:
            return AllocSettings.retry_after
        if isinstance(value, int | float) and not isinstance(value, bool):
            exact = float(value)
        elif isinstance(value, str) and re.fullmatch(r"\s*-?\d+(?:\.\d+)?\s*", value):
            exact = float(value)
        else:
            exact = self._to_seconds(key, value)
        if not 0 <= exact <= 86400:
            self.fail(key, f"must be 0..86400 seconds, got {_show(value)}")
        return math.ceil(exact)

    def readable(self, key: str, path: str) -> None:
        try:
            with open(path, "rb"):
                pass
        except OSError as exc:
            self.fail(key, f"cannot read {path!r}: {exc.strerror or exc}")
