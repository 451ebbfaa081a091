"""The layering rules of mpush/, read from the imports with ``ast``.

* The pure core (wire codec, balance policy, routes, outcomes, config,
  argument checks) imports no Twisted and no other layer: it can be read
  and tested alone.
* ``web/`` imports no adapter from ``cluster/``: it renders the status
  snapshot and calls services.
* ``mpush.interfaces`` (the typing protocols every layer may name) imports
  only the pure core and third-party packages: no adapter, service, web
  resource or daemon part, so that importing it never pulls a layer in.
* ``cli/`` (the ``mpush-push`` command) is an HTTP client of the daemon:
  it imports the pure core and itself, no Twisted, no other layer.
* Nothing under ``mpush/`` imports the test harness (it is not installed).
* No import cycles between modules, counting imports made inside functions
  too (they only defer the cycle).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.import_graph import ROOT, imports_of, module_name

PACKAGE = ROOT / "mpush"

#: Module-name prefixes of the pure core.
PURE = ("mpush.wire", "mpush.balance", "mpush.routes", "mpush.outcomes", "mpush.config",
        "mpush.arguments", "mpush.hosts", "mpush.hold",
        "mpush.shared_handouts", "mpush.server_kinds")
#: What the pure core may import from mpush: itself only.
PURE_MAY_IMPORT = PURE
#: Third-party packages that bring an event loop or I/O with them.
IMPURE_PACKAGES = ("twisted", "txredisapi", "kazoo", "zope", "prometheus_client", "OpenSSL")


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def project_imports(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    return {target for target, _ in imports_of(path) if target in known and target != name}


def within(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def test_the_rules_see_the_whole_package() -> None:
    found = modules()
    # A guard against a rule that passes because it reads nothing.
    assert {"mpush.wire", "mpush.balance", "mpush.routes", "mpush.web.push",
            "mpush.daemon.tap", "mpush.services.pusher"} <= set(found)
    assert len(found) > 30


@pytest.mark.parametrize("name", [n for n in modules() if within(n, PURE)])
def test_the_pure_core_imports_no_twisted_and_no_other_layer(name: str) -> None:
    path = modules()[name]
    bad = [
        f"{path.relative_to(PACKAGE.parent)}:{line} imports {target}"
        for target, line in imports_of(path)
        if within(target, IMPURE_PACKAGES)
        or (within(target, ("mpush",)) and not within(target, PURE_MAY_IMPORT))
    ]
    assert not bad, "the pure core must stay pure:\n" + "\n".join(bad)


@pytest.mark.parametrize("name", [n for n in modules() if within(n, ("mpush.web",))])
def test_web_imports_no_cluster_adapter(name: str) -> None:
    path = modules()[name]
    bad = [
        f"{path.relative_to(PACKAGE.parent)}:{line} imports {target}"
        for target, line in imports_of(path)
        if within(target, ("mpush.cluster", "mpush.gateway", "mpush.cache"))
    ]
    assert not bad, "web/ reads the status snapshot and calls services:\n" + "\n".join(bad)


@pytest.mark.parametrize("name", [n for n in modules() if within(n, ("mpush.cli",))])
def test_the_command_is_a_plain_http_client(name: str) -> None:
    path = modules()[name]
    bad = [
        f"{path.relative_to(PACKAGE.parent)}:{line} imports {target}"
        for target, line in imports_of(path)
        if within(target, IMPURE_PACKAGES)
        or (within(target, ("mpush",)) and not within(target, (*PURE, "mpush.cli")))
    ]
    assert not bad, "mpush-push talks HTTP and starts fast:\n" + "\n".join(bad)


#: What ``mpush.interfaces`` may import from mpush: the pure core only.
INTERFACES_MAY_IMPORT = PURE


def test_interfaces_import_only_the_pure_core() -> None:
    path = modules()["mpush.interfaces"]
    bad = [
        f"{path.relative_to(PACKAGE.parent)}:{line} imports {target}"
        for target, line in imports_of(path)
        if within(target, ("mpush",)) and not within(target, INTERFACES_MAY_IMPORT)
    ]
    assert not bad, "mpush.interfaces is importable by every layer:\n" + "\n".join(bad)


def test_nothing_in_the_product_imports_the_harness_or_the_tests() -> None:
    bad = [
        f"{path.relative_to(PACKAGE.parent)}:{line} imports {target}"
        for name, path in modules().items()
        for target, line in imports_of(path)
        if within(target, ("tests", "benchmarks", "scripts", "pytest"))
    ]
    assert not bad, "\n".join(bad)


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a path (first == last), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt):], nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def test_find_cycle_finds_one() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None


def test_no_import_cycles() -> None:
    known = modules()
    graph: dict[str, set[str]] = {}
    for name, path in known.items():
        # A package's __init__ re-exporting its own modules is not a cycle of
        # layers; an edge from a module to its own package's __init__ is.
        graph[name] = {t for t in project_imports(name, path, known)
                       if not t.startswith(name + ".")}
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])
