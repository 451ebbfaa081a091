"""Reading imports with ``ast``, for the tests that keep the import rules
(tests/test_layers.py for mpush/, tests/test_suite_rules.py for the suite)."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def module_name(path: Path) -> str:
    """``mpush/web/push.py`` -> ``mpush.web.push``; a package is its folder's name."""
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported(source: str, name: str, is_package: bool = False) -> Iterator[tuple[str, int]]:
    """Every module the source of module ``name`` may import, absolute, with the line.

    All scopes count (an import inside a function only defers it), and
    ``from a import b`` yields both ``a`` and ``a.b`` (``b`` may be a module).
    """
    package = name if is_package else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".") if package else []
                base = base[: len(base) - (node.level - 1)]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            yield target, node.lineno
            for alias in node.names:
                yield f"{target}.{alias.name}", node.lineno


def imports_of(path: Path) -> Iterator[tuple[str, int]]:
    """:func:`imported` for a file of the repository."""
    return imported(path.read_text(), module_name(path), path.name == "__init__.py")
