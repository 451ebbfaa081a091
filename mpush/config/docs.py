"""docs/configuration.md, generated from the key table (``scripts/gen-config-docs``).

tests/test_config_docs.py fails when the committed file differs from what
`render` gives, so the page cannot drift from the loader.
"""

from __future__ import annotations

from typing import Final

from mpush.config.keys import KEYS, Key

__all__ = ["COMMAND", "DOCS_PATH", "render"]

DOCS_PATH: Final = "docs/configuration.md"  # relative to the repository root
COMMAND: Final = ".venv/bin/python scripts/gen-config-docs"

# The docs list keys by section (the table is in reading order).
_SECTIONS: Final = ("mp.log-level", "mp.net.", "mp.core.", "mp.zk.", "mp.redis.", "mp.alloc.")

_INTRO: Final = """\
# Configuration

<!-- Generated from mpush/config/keys.toml by `{command}`; do not edit. -->

The daemon reads one HOCON file in the format of the Java `mpusher/alloc`
server (`twistd mpush-alloc --config FILE`, default `conf/mpush.conf`, which
in this repository is a working config for the local stack). An unmodified
Java alloc or mpush config file loads as it is: the keys under `mp.net`,
`mp.core`, `mp.zk` and `mp.redis`, and `mp.log-level`, mean what they mean
to the Java servers, `mp.alloc` holds our own, and every other key
(`mp.thread`, `mp.security`, …) is ignored. A key under `mp.alloc` that is
not in the table below is logged at start, once per key, with the nearest
known key (`unknown key mp.alloc.refesh-interval in conf/mpush.conf: did
you mean mp.alloc.refresh-interval?`); the start goes on. What Java accepts
and a plain HOCON parser would not, or would read differently:

* **Durations**: a bare number is milliseconds, as in Java
  (`sessionTimeoutMs = 5000` is 5 s), except in `mp.alloc.retry-after`,
  which counts seconds. Units: `ns`, `us`, `ms`, `s`, `m`, `h`, `d`, their
  long forms, `min`, `w`; case-sensitive; decimals are fine (`1.5s`).
* **Sizes**: a bare number is bytes; `k`/`K`/`KiB`, `m`, `g`, `t` are powers
  of 1024 and `kB`, `MB`, `GB`, `TB` powers of 1000, as in Java (lower-case
  `kb`, `mb`, … are taken as powers of 1024). Fractional bytes are dropped.
* **Concatenations**: several values on one line are one string, as
  written (`30 seconds please`, `10s 5ms`): a key that wants a duration or
  a size refuses it, quoting that text.
* **Strings**: an unquoted number is taken as its digits
  (`password=123456`), but a leading zero is lost first: quote passwords.
  On a key that may be "none", `""` and `null` mean none; elsewhere `null`
  is an error.
* **Substitutions**: `${{user.dir}}`, `${{user.home}}`, `${{user.name}}` and
  `${{java.io.tmpdir}}` get the values a JVM started here would see; others
  resolve against the file, then the environment. One that cannot (an
  unfiltered Maven placeholder such as `${{min.hb}}`) is harmless unless a
  key below depends on it; then start fails naming that key. Except in
  `mp.log-level`: the Java sources' `mp.log-level=${{log.level}}` means the
  default.
* **Comments**: `//` and `#` end an unquoted value even with no space before
  them (`cluster-model=single//single,cluster`, as the Java reference.conf
  writes it); in an included file, leave a space.
* **Includes**: `include "x.conf"` and `include file("x.conf")` are read
  relative to the including file (a missing one is ignored unless
  `required(...)`); `include classpath(...)` is skipped, our defaults standing
  in for the Java reference.conf; `url(...)`, `package(...)`, glob patterns
  and cycles are refused, so loading never reaches the network.
* **Paths** (`tls-cert`, `tls-key`, `data-dir`, `access-log`) are taken
  against the working directory at start; `~` is expanded.
* **Errors** are one line naming the file and the key (a syntax error: its
  line and column), e.g.
  `conf/mpush.conf: mp.net.alloc-server-port: must be an integer 1..65535, got 'abc'`.

## Keys

| key | default | allowed | what it does |
| --- | --- | --- | --- |
"""


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def _row(key: Key) -> str:
    shown = "none" if key.default is None else f"`{key.kind.spell(key.default)}`"
    cells = (f"`{key.key}`", shown, key.kind.allowed(), key.doc)
    return "| " + " | ".join(_cell(cell) for cell in cells) + " |\n"


def _section(key: Key) -> int:
    return next(i for i, prefix in enumerate(_SECTIONS) if key.key.startswith(prefix))


def render() -> str:
    """The whole of docs/configuration.md."""
    rows = sorted(KEYS, key=_section)  # stable: table order within a section
    return _INTRO.format(command=COMMAND) + "".join(_row(key) for key in rows)
