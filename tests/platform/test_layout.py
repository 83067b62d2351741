"""The platform's layout holds: no import cycle inside queueing (imports made inside
functions count), settings import no app code, and apps use only queueing's public names
(make lint also runs these contracts; the tests keep them in the suite's report)."""

from __future__ import annotations

import ast
from pathlib import Path

import grimp
from django.conf import settings

import queueing

BASE = Path(settings.BASE_DIR)
DOMAIN_APPS = ("billing", "notifications", "routing", "datasync", "maintenance")


def strongly_connected(graph: dict[str, set[str]]) -> list[set[str]]:
    """Tarjan's algorithm: the groups of modules that import each other in a loop."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[set[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph.get(node, ()):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            group = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.add(member)
                if member == node:
                    break
            if len(group) > 1 or node in graph.get(node, ()):
                groups.append(group)

    for node in graph:
        if node not in index:
            visit(node)
    return groups


def test_no_import_cycles_inside_queueing():
    imports = grimp.build_graph("queueing", cache_dir=None)
    # The package root is the lazy public facade (queueing/__init__.py): it imports its
    # names on first use, and nothing inside queueing imports it.
    modules = {m for m in imports.modules if m != "queueing"}
    graph = {m: imports.find_modules_directly_imported_by(m) & modules for m in modules}
    assert strongly_connected(graph) == []
    importers_of_root = imports.find_modules_that_directly_import("queueing")
    assert importers_of_root == set()


def test_settings_are_plain_data():
    tree = ast.parse((BASE / "config" / "settings.py").read_text())
    imported = {
        node.module if isinstance(node, ast.ImportFrom) else alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.Import | ast.ImportFrom)
        for alias in node.names
    }
    app_code = {
        name for name in imported if name and name.split(".")[0] in ("queueing", *DOMAIN_APPS)
    }
    assert app_code == set()


def test_the_public_surface_resolves():
    for name in queueing.__all__:
        assert getattr(queueing, name) is not None, name


def test_every_status_change_of_a_job_is_in_the_transitions_module():
    """An ``.update(status=...)`` on jobs anywhere but queueing/ledger/transitions.py
    would be a second place where a job's lifecycle is decided."""
    offenders = []
    for path in (BASE / "queueing").rglob("*.py"):
        if path.name == "transitions.py" or "migrations" in path.parts:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr == "update"
                and any(keyword.arg == "status" for keyword in node.keywords)
            ):
                offenders.append(f"{path.relative_to(BASE)}:{node.lineno}")
    # Alerts have a status too; they are not jobs.
    assert [o for o in offenders if "observe/alerts.py" not in o] == []
