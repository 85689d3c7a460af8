"""The floor plan holds: no import cycle between apps, the project package imports apps only
from its entry points, the data-plane contract depends on nothing of ours, and no module
imports one of ours inside a function without saying why.

Read from the source with `ast` (nothing is imported), so a new cycle fails here with
the modules that make it, before anyone has to untangle it at run time.
"""

from __future__ import annotations

import ast
import itertools
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# Every Django app of ours, and the contract package both sides import.
APPS = (
    "accounts", "audit", "dashboard", "gateway", "observability", "ops", "registry", "rollouts", "variants", "workers",
)  # fmt: skip
CONTRACT = "dataplane"
PROJECT = "controlplane"
# The project's entry points wire the apps together (URLs, ASGI, WSGI); its shared
# bases (redis_client, htmx, admin_base, celery, settings) must not import any app.
PROJECT_ENTRY_POINTS = {"controlplane.urls", "controlplane.asgi", "controlplane.wsgi"}
OURS = (*APPS, CONTRACT, PROJECT)


def modules() -> dict[str, Path]:
    found = {}
    for package in OURS:
        for path in (ROOT / package).rglob("*.py"):
            if "migrations" in path.parts:
                continue
            name = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
            found[name] = path
    return found


def imported(node: ast.AST) -> list[str]:
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
        return [node.module]
    return []


def top(module: str) -> str:
    return module.split(".")[0]


def imports_of(path: Path) -> list[tuple[str, int]]:
    """(module, line) for every import of one of our packages, anywhere in the file."""
    tree = ast.parse(path.read_text(), filename=str(path))
    return [(name, node.lineno) for node in ast.walk(tree) for name in imported(node) if top(name) in OURS]


def app_graph() -> dict[str, dict[str, list[str]]]:
    """app -> imported app -> the importing modules (for the failure message)."""
    graph: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    for module, path in modules().items():
        source = top(module)
        if source not in APPS:
            continue
        for name, _ in imports_of(path):
            target = top(name)
            if target in APPS and target != source:
                graph[source][target].append(f"{module} -> {name}")
    return graph


def cycles(graph: dict[str, dict[str, list[str]]]) -> list[list[str]]:
    """Every elementary cycle's apps, found by a depth-first walk from each app."""
    found: list[list[str]] = []
    for start in sorted(graph):
        stack = [(start, [start])]
        while stack:
            node, path = stack.pop()
            for nxt in sorted(graph.get(node, {})):
                if nxt == start:
                    if min(path) == start:  # report each cycle once, from its smallest app
                        found.append([*path, start])
                elif nxt not in path and nxt > start:
                    stack.append((nxt, [*path, nxt]))
    return found


def test_no_import_cycle_between_apps() -> None:
    graph = app_graph()
    found = cycles(graph)
    detail = [
        " -> ".join(cycle) + ": " + "; ".join(graph[a][b][0] for a, b in itertools.pairwise(cycle)) for cycle in found
    ]
    assert not found, "import cycles between apps:\n" + "\n".join(detail)


def test_the_cycle_check_finds_a_cycle() -> None:
    graph = {"registry": {"workers": ["registry.services -> workers.tasks"]}, "workers": {"registry": ["x"]}}
    assert cycles(graph) == [["registry", "workers", "registry"]]
    assert cycles({"a": {"b": ["a.x -> b.y"]}, "b": {"c": ["b -> c"]}, "c": {"a": ["c -> a"]}}) == [
        ["a", "b", "c", "a"]
    ]
    assert cycles({"a": {"b": ["a -> b"]}, "b": {}}) == []


def test_the_project_package_imports_apps_only_from_its_entry_points() -> None:
    offending = [
        f"{module}:{line} imports {name}"
        for module, path in modules().items()
        if top(module) == PROJECT and module not in PROJECT_ENTRY_POINTS
        for name, line in imports_of(path)
        if top(name) in APPS
    ]
    assert not offending, "controlplane's shared bases must not import apps:\n" + "\n".join(offending)


def test_the_data_plane_contract_imports_nothing_of_ours_and_no_django() -> None:
    offending = []
    for module, path in modules().items():
        if top(module) != CONTRACT:
            continue
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            for name in imported(node):
                if top(name) in (*APPS, PROJECT, "django", "celery"):
                    offending.append(f"{module}:{node.lineno} imports {name}")
    assert not offending, "dataplane/ is the neutral contract:\n" + "\n".join(offending)


def test_no_app_imports_the_workers_or_the_gateway() -> None:
    """The web side and the workers meet in dataplane/, never in each other's code: key
    names, wire formats and control task names all live there."""
    offending = [
        edge
        for source, targets in app_graph().items()
        for target, edges in targets.items()
        if target in ("workers", "gateway")
        for edge in edges
    ]
    assert not offending, "\n".join(offending)


def test_function_level_imports_of_our_modules_say_why() -> None:
    unexplained = []
    for path in modules().values():
        lines = path.read_text().splitlines()
        tree = ast.parse("\n".join(lines))
        for function in ast.walk(tree):
            if not isinstance(function, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            for node in ast.walk(function):
                if not any(top(name) in OURS for name in imported(node)):
                    continue
                above = lines[node.lineno - 2].strip() if node.lineno >= 2 else ""
                if not above.startswith("#") and "#" not in lines[node.lineno - 1]:
                    unexplained.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert not unexplained, "imports inside functions need a comment saying why:\n" + "\n".join(unexplained)
