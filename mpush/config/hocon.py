"""HOCON text to a resolved pyhocon tree, with the Java alloc's quirks.

What a Java (Typesafe Config) file may hold that plain pyhocon refuses or
reads differently, handled here before and after pyhocon sees the text:

* ``//`` and ``#`` end an unquoted value even with no space before them
  (``cluster-model=single//single,cluster``), as in Java.
* ``include classpath(...)`` is skipped (our built-in defaults stand in for
  the Java reference.conf); file includes are read; url/package includes,
  glob patterns and cycles are refused, so loading a config never touches
  the network or imports code.
* A value concatenation holding a duration, a boolean or null
  (``30 seconds please``, ``10s 5ms``, ``true x``) is its text as written,
  as Java reads it; pyhocon would join the ``str()`` of each part
  (``'0:00:30please'``, ``'Truex'``).
* ``${user.dir}``, ``${user.home}``, ``${user.name}``, ``${java.io.tmpdir}``
  are answered as a JVM started here would; any other substitution neither
  the file nor the environment defines (``${log.level}``, a Maven
  placeholder) is left as a marker: harmless unless a key we read holds it.
"""

from __future__ import annotations

import getpass
import json
import os
import re
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Final

from pyhocon import ConfigFactory, ConfigTree, config_parser
from pyhocon.config_tree import ConfigQuotedString, ConfigSubstitution, ConfigValues
from pyparsing import TokenConverter

from mpush.config.errors import ConfigError

__all__ = ["MAX_FILE_SIZE", "parse_tree", "read_text", "unresolved_name"]

MAX_FILE_SIZE: Final = 1 << 20  # a config file is a few KiB; refuse anything absurd
_MAX_INCLUDE_DEPTH: Final = 8

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

# Java system properties that real mpush config files refer to.
_JAVA_PROPERTIES: Final[dict[str, Callable[[], str]]] = {
    "user.dir": os.getcwd,
    "user.home": lambda: os.path.expanduser("~"),
    "user.name": getpass.getuser,
    "java.io.tmpdir": tempfile.gettempdir,
}

# An unresolvable ${x} resolves to this text around "${x}"; reading a key
# whose value holds it is an error, and nothing else ever looks at it.
_UNRESOLVED: Final = "\x00"
_UNRESOLVED_RE = re.compile("\x00(.*?)\x00")


@dataclass(frozen=True)
class _Include:
    start: int
    end: int
    line: int
    kind: str  # "file" | "classpath" | "url" | "package"
    target: str
    required: bool


def read_text(path: str, source: str, what: str = "cannot read config file") -> str:
    """The file's text (UTF-8, BOM allowed, at most MAX_FILE_SIZE bytes)."""
    try:
        with open(path, "rb") as handle:
            data = handle.read(MAX_FILE_SIZE + 1)
    except OSError as exc:
        raise ConfigError(source, None, f"{what}: {exc.strerror or exc}") from None
    if len(data) > MAX_FILE_SIZE:
        raise ConfigError(source, None, f"{what}: larger than {MAX_FILE_SIZE} bytes")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ConfigError(source, None, f"{what}: not UTF-8 text (byte {exc.start})") from None


def parse_tree(text: str, source: str, basedir: str) -> ConfigTree:
    """The main file's text, includes checked, parsed and resolved."""
    real = os.path.realpath(source) if os.path.isfile(source) else source
    prepared = _prepare(text, source, basedir, (real,))
    return _resolve(_parse(prepared, source, basedir), source)


def unresolved_name(value: Any) -> str | None:
    """``"${x}"`` when value holds the marker of an unresolvable ${x}, else None."""
    if not isinstance(value, str) or _UNRESOLVED not in value:
        return None
    found = _UNRESOLVED_RE.search(value)
    return found.group(1) if found else "${...}"


# ---------------------------------------------------------------- includes


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
        if inc.kind == "classpath":
            if not main:
                problem = f"line {inc.line}: include classpath(...) only works in the main file"
                raise ConfigError(source, None, problem)
            # Java resources do not exist here; our defaults play reference.conf.
            blanks.append((inc.start, inc.end))
            continue
        _check_file_include(inc, source, basedir, seen)
    return _blank(text, blanks)


def _check_file_include(inc: _Include, source: str, basedir: str, seen: tuple[str, ...]) -> None:
    """Refuse what pyhocon must not open; check what it will open, recursively."""
    where = f"line {inc.line}: include"
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
        return  # HOCON: a missing include is not an error
    nested = read_text(path, path, "cannot read included file")
    nested_dir = os.path.dirname(path)
    _parse(_prepare(nested, path, nested_dir, (*seen, real)), path, nested_dir)


# ---------------------------------------------------------------- parsing


class _ConcatenationAsWritten(TokenConverter):
    """pyhocon's ConcatenatedValueParser, except for a concatenation it would garble.

    pyhocon reads ``30 seconds`` as a timedelta and ``true`` as a bool before
    it sees that more follows, then joins the ``str()`` of each part:
    ``30 seconds please`` becomes ``'0:00:30please'``. Java (Typesafe Config)
    reads any concatenation of simple values as its text. So when a
    concatenation holds a part that is not text, its value is the text of
    the file from its first part to its last (see `_as_written`).
    """

    def parseImpl(self, instring: str, loc: int, do_actions: bool = True) -> Any:
        end, tokens = super().parseImpl(instring, loc, do_actions)
        # pyparsing calls postParse right after, with the end only. Set once
        # the parts (which may hold nested concatenations) have been parsed.
        self._start = loc
        return end, tokens

    def postParse(self, instring: str, loc: int, tokenlist: Any) -> Any:
        parts = [part for part in tokenlist if part is not None]
        lossy = any(not isinstance(part, str | ConfigQuotedString) for part in parts)
        joined = ConfigValues(tokenlist, instring, loc).transform()
        if len(parts) > 1 and lossy and isinstance(joined, str):
            return [_as_written(instring[self._start : loc])]
        return [joined]


def _as_written(text: str) -> str:
    """A concatenation's text: quoted parts unquoted, comments dropped, ends stripped."""
    parts = []
    for match in _LEX.finditer(text.replace("\\\n", "")):  # a "\" line continuation
        if match["comment"] is not None:
            continue
        if match["triple"] is not None:
            parts.append(match["triple"][3:-3])
        elif match["quoted"] is not None:
            parts.append(_unquoted(match["quoted"]))
        else:
            parts.append(match.group())
    return "".join(parts).strip()


def _unquoted(quoted: str) -> str:
    """A quoted HOCON string's text (its escapes are JSON's; pyhocon keeps others as written)."""
    try:
        return str(json.loads(quoted, strict=False))
    except ValueError:
        return quoted[1:-1]


# pyhocon builds its grammar on each parse from the names of its module.
_SWAPPING = threading.RLock()


@contextmanager
def _concatenations_as_written() -> Iterator[None]:
    """pyhocon parses with `_ConcatenationAsWritten` meanwhile (one parse at a time)."""
    with _SWAPPING:
        original = config_parser.ConcatenatedValueParser
        config_parser.ConcatenatedValueParser = _ConcatenationAsWritten
        try:
            yield
        finally:
            config_parser.ConcatenatedValueParser = original


def _parse(text: str, source: str, basedir: str) -> ConfigTree:
    """pyhocon, unresolved; any failure becomes one short line."""
    try:
        with _concatenations_as_written():
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


# ---------------------------------------------------------------- substitutions


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


def _fallback_value(name: str) -> str:
    """A Java property's value, else the marker that reading the key reports."""
    marker = _UNRESOLVED + "${" + name + "}" + _UNRESOLVED
    if name not in _JAVA_PROPERTIES:
        return marker
    try:
        return _JAVA_PROPERTIES[name]()
    except Exception:  # getpass.getuser() fails without a user entry
        return marker


def _resolve(tree: ConfigTree, source: str) -> ConfigTree:
    fallback = ConfigTree(root=True)
    for sub in _substitutions(tree):
        name = sub.variable.strip()
        if sub.optional or _has_path(tree, name) or name in os.environ or _has_path(fallback, name):
            continue  # pyhocon handles these by itself
        try:
            fallback.put(name, _fallback_value(name))
        except Exception:  # clashes with another name; pyhocon then reports it
            pass
    try:
        return tree.with_fallback(fallback, resolve=True)
    except Exception as exc:
        raise ConfigError(
            source, None, _describe_parse_error(exc).replace("syntax error", "cannot resolve", 1)
        ) from None
