"""The documentation points at things that exist, and at nothing outside the repository.

* In README.md and docs/*.md, every relative markdown link (``](path)``) and
  every backticked repository path (``docs/x.md``, ``scripts/test``,
  ``mpush/web/openapi.py``) names a file or folder of the repository.
* No file under mpush/, tests/, benchmarks/, scripts/ or docs/, nor README.md,
  cites the design notes kept outside the repository (their names are in
  ``OUTSIDE``): whatever is still true of them lives in docs/.
* Every docs/*.md that the code cites exists.
* Every ``curl -d '…' …/push`` example sends a body the daemon takes, and the
  README's push to the users that ``scripts/run-local`` has online.

Pure file reading: no server, no network.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mpush.web.push_body import parse_push_body

ROOT = Path(__file__).resolve().parent.parent
THIS = Path(__file__).resolve()

#: Notes that are not in the repository; spelt in pieces so that this file
#: does not cite them itself.
OUTSIDE = tuple(name + ".md" for name in ("DESIGN", "MPUSH", "push-client"))

#: Where the code may cite a doc or a note.
CODE_DIRS = ("mpush", "tests", "benchmarks", "scripts")

#: The first segment of a backticked path that names a file of the repository.
TOP_LEVEL = ("docs", "scripts", "mpush", "tests", "benchmarks", "conf", "twisted")
TOP_FILES = ("README.md", "setup.py", "pytest.ini", "ruff.toml")

_FENCE = re.compile(r"^(```|~~~).*?^\1[ \t]*$", re.MULTILINE | re.DOTALL)
_LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+[\"'][^)]*[\"'])?\s*\)")
_CODE_SPAN = re.compile(r"(`+)([^`]+?)\1")
_TOPS = "|".join(TOP_LEVEL)
_FILES = "|".join(re.escape(f) for f in TOP_FILES)
_REPO_PATH = re.compile(rf"(?:\./)?(?:(?:{_TOPS})/[\w.@+-]*(?:/[\w.@+-]+)*/?|{_FILES})")
_SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")
_DOC_CITATION = re.compile(r"\bdocs/[\w.-]+\.md\b")


def doc_files() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def _rel(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def _without_fences(text: str) -> str:
    # Code blocks hold commands and output, not references.
    return _FENCE.sub("", text)


def link_targets(text: str) -> Iterator[str]:
    """Relative link targets of markdown links, without their #fragment."""
    for match in _LINK.finditer(_without_fences(text)):
        target = match.group(1)
        if target.startswith("#") or _SCHEME.match(target) or target.startswith("//"):
            continue
        target = target.split("#", 1)[0].split("?", 1)[0]
        if target:
            yield target


def backticked_paths(text: str) -> Iterator[str]:
    """Code spans that are, as a whole, a path in the repository."""
    for match in _CODE_SPAN.finditer(_without_fences(text)):
        span = match.group(2).strip()
        if _REPO_PATH.fullmatch(span):
            yield span


def missing_targets(doc: Path, root: Path = ROOT) -> list[str]:
    """What ``doc`` links to or names that is not in the repository at ``root``."""
    text = doc.read_text(encoding="utf-8")
    name = doc.relative_to(root).as_posix()
    missing: list[str] = []
    for target in link_targets(text):
        # Relative to the file holding the link, as a markdown viewer reads it.
        if not (doc.parent / target).exists():
            missing.append(f"{name}: link to {target!r}")
    for path in backticked_paths(text):
        # Written from the repository root (`docs/api.md`, `scripts/test`).
        if not (root / path.removeprefix("./")).exists():
            missing.append(f"{name}: path `{path}`")
    return missing


def text_files(*roots: Path) -> Iterator[Path]:
    for root in roots:
        if root.is_file():
            yield root
            continue
        for path in sorted(root.rglob("*")):
            if not path.is_file() or "__pycache__" in path.parts or path == THIS:
                continue
            try:
                path.read_text(encoding="utf-8")
            except (UnicodeDecodeError, OSError):
                continue  # binary
            yield path


@pytest.mark.parametrize("doc", doc_files(), ids=_rel)
def test_links_and_paths_exist(doc: Path) -> None:
    missing = missing_targets(doc)
    assert not missing, "missing targets:\n" + "\n".join(missing)


def test_nothing_cites_notes_outside_the_repository() -> None:
    roots = [ROOT / d for d in (*CODE_DIRS, "docs")] + [ROOT / "README.md"]
    found = []
    for path in text_files(*roots):
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            for name in OUTSIDE:
                if name in line:
                    found.append(f"{_rel(path)}:{number}: {name}")
    assert not found, ("cites notes that are not in the repository (cite docs/ instead):\n"
                       + "\n".join(found))


def test_docs_cited_by_the_code_exist() -> None:
    found = []
    for path in text_files(*(ROOT / d for d in CODE_DIRS)):
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            for cited in _DOC_CITATION.findall(line):
                if not (ROOT / cited).is_file():
                    found.append(f"{_rel(path)}:{number}: {cited}")
    assert not found, "cites docs that do not exist:\n" + "\n".join(found)


# -- the checker itself ---------------------------------------------------------------


def test_the_checker_finds_links_and_paths() -> None:
    text = (
        "See [ops](operations.md#logs), [site](https://example.com/x.md), [top](#top),\n"
        "`docs/api.md`, `scripts/test`, `tests/harness/`, `mp.alloc.push-token`,\n"
        "`twistd -n mpush-alloc --config conf/mpush.conf`, `README.md`, `run/alloc.pid`.\n"
        "```sh\nscripts/nothing-here\n[x](nowhere.md)\n```\n"
    )
    assert list(link_targets(text)) == ["operations.md"]
    assert list(backticked_paths(text)) == ["docs/api.md", "scripts/test", "tests/harness/",
                                            "README.md"]


def test_the_checker_reports_the_file_and_the_target(tmp_path: Path) -> None:
    (tmp_path / "docs").mkdir()
    (tmp_path / "scripts").mkdir()
    (tmp_path / "scripts" / "test").write_text("")
    (tmp_path / "docs" / "api.md").write_text("")
    doc = tmp_path / "docs" / "ops.md"
    doc.write_text("[a](api.md), [b](no-such-file.md#x), `scripts/test`,"
                   " `scripts/no-such-script`, `docs/api.md`\n", encoding="utf-8")
    assert missing_targets(doc, root=tmp_path) == [
        "docs/ops.md: link to 'no-such-file.md'",
        "docs/ops.md: path `scripts/no-such-script`",
    ]


# -- the push examples ----------------------------------------------------------------

_CURL_BODY = re.compile(r"curl [^\n]*?(?:\\\n[^\n]*?)*-d '([^']*)'[^\n]*?(?:\\\n[^\n]*?)*/push\b")


def push_examples(text: str) -> list[dict[str, Any]]:
    """The bodies of the ``curl -d '…' …/push`` commands in the code blocks of ``text``."""
    blocks = "\n".join(match.group(0) for match in _FENCE.finditer(text))
    return [json.loads(body) for body in _CURL_BODY.findall(blocks)]


def demo_users() -> set[str]:
    from scripts.demo import DEMO_USER_PREFIX, DEMO_USERS

    return {f"{DEMO_USER_PREFIX}{i}" for i in range(DEMO_USERS)}


@pytest.mark.parametrize("doc", doc_files(), ids=_rel)
def test_push_examples_are_bodies_the_daemon_takes(doc: Path) -> None:
    for body in push_examples(doc.read_text(encoding="utf-8")):
        parse_push_body(json.dumps(body).encode())  # raises BadRequest otherwise


def test_readme_pushes_to_the_demo_users() -> None:
    # Run with scripts/run-local: a user the demo does not have is shown offline.
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    examples = push_examples(text)
    assert examples, "no curl … /push example in README.md"
    users = demo_users()
    for body in examples:
        ids = [body["userId"]] if "userId" in body else body["userIds"]
        assert set(ids) & users, f"{ids}: none of the demo's users {sorted(users)}"
        for user in set(ids) - users:
            assert f'"userId":"{user}","clientType":null,"result":"offline"' in text, user
