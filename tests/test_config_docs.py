"""docs/configuration.md is what scripts/gen-config-docs makes from the key table."""

from __future__ import annotations

import difflib
from pathlib import Path

import pytest

from mpush.config.docs import COMMAND, DOCS_PATH, render
from mpush.config.keys import KEYS, Key
from mpush.config.kinds import Duration, Size
from mpush.config.units import parse_duration, parse_size

ROOT = Path(__file__).resolve().parent.parent


def test_configuration_md_is_up_to_date() -> None:
    path = ROOT / DOCS_PATH
    committed = path.read_text(encoding="utf-8") if path.exists() else ""
    expected = render()
    if committed != expected:
        diff = difflib.unified_diff(
            committed.splitlines(), expected.splitlines(), "committed", "generated",
            lineterm="", n=0,
        )
        excerpt = "\n".join(list(diff)[:20])
        pytest.fail(
            f"{DOCS_PATH} differs from the key table (mpush/config/keys.toml): "
            f"run `{COMMAND}` and commit the result.\n{excerpt}"
        )


def test_every_key_has_one_row() -> None:
    text = render()
    for key in KEYS:
        assert text.count(f"| `{key.key}` |") == 1, key.key


@pytest.mark.parametrize("key", KEYS, ids=[k.key for k in KEYS])
def test_documented_defaults_read_back_as_the_defaults(key: Key) -> None:
    """The default column is spelled so that writing it in the file changes nothing."""
    if isinstance(key.kind, Duration):
        assert parse_duration(key.kind.spell(key.default)) == pytest.approx(key.default)
    elif isinstance(key.kind, Size):
        assert parse_size(key.kind.spell(key.default)) == key.default
    assert key.doc.strip() and "\n" not in key.doc and "|" not in key.doc
