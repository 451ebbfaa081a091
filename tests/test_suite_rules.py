"""Rules of the test suite itself, read from the imports with ``ast``.

No module imports a test module (``tests/test_*.py``): the fakes shared by
several tests live in tests/fakes.py, the in-memory HTTP helpers in
tests/http_exchange.py, the process harness in tests/harness/. A test module
then runs, and can be moved or deleted, on its own; and a benchmark or a
script never runs a test module's import-time code.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.import_graph import ROOT, imported, module_name

TESTS = ROOT / "tests"
#: Where the modules checked live: every .py under these (recursively).
CHECKED = ("tests", "benchmarks", "scripts")


def is_test_module(name: str) -> bool:
    parts = name.split(".")
    return len(parts) >= 2 and parts[0] == "tests" and parts[-1].startswith("test_")


def imports_of_test_modules(source: str, name: str, is_package: bool = False) -> list[str]:
    return [f"{target} (line {line})" for target, line in imported(source, name, is_package)
            if is_test_module(target) and target != name]


def checked_files() -> list[Path]:
    return sorted(p for d in CHECKED for p in (ROOT / d).rglob("*.py"))


@pytest.mark.parametrize("path", checked_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_no_module_imports_a_test_module(path: Path) -> None:
    found = imports_of_test_modules(path.read_text(), module_name(path), path.name == "__init__.py")
    assert not found, (
        f"{path.relative_to(ROOT)} imports a test module: {', '.join(found)}; "
        "move what it needs to tests/fakes.py or tests/http_exchange.py")


def test_the_rule_sees_the_test_modules_and_the_benchmarks() -> None:
    names = [module_name(p) for p in checked_files()]
    assert "tests.test_push" in names and "benchmarks.balance" in names
    assert len([n for n in names if is_test_module(n)]) >= 30


@pytest.mark.parametrize("source", [
    "from tests.test_push import FakeCache",
    "import tests.test_push",
    "import tests.test_push as tp",
    "from tests import test_push",
    "from .test_push import FakeCache",
    "from . import test_push",
    "def f():\n    from tests.test_push import loc\n",
])
def test_the_rule_catches_every_spelling(source: str) -> None:
    line = source.count("\n", 0, source.index("test_push")) + 1
    assert imports_of_test_modules(source, "tests.test_other") == [f"tests.test_push (line {line})"]


@pytest.mark.parametrize("source", [
    "from tests.fakes import FakeCache",
    "from tests.http_exchange import split",
    "from tests.harness.daemon import write_config",
    "from . import fakes",
    "import pytest",
])
def test_the_rule_lets_shared_modules_through(source: str) -> None:
    assert imports_of_test_modules(source, "tests.test_other") == []
