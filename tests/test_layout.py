"""The folders are the architecture: imports inside pcnets point down the layers only."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "pcnets"
# Top to bottom: a module may import its own layer and the layers below it, never one above.
LAYERS = (
    "cli",
    "experiments",
    "loggers",
    "reporting",
    "runtime",
    "backbones",
    "core",
    "data",
    "base",
)
BASE = ("bounds", "config", "errors", "intervals", "metrics", "progress", "schema", "validate")
# Public names at the top that only re-export a lower layer's API, as __init__ does.
FACADES = ("results",)


def layer_of(module: str) -> str | None:
    """'pcnets.core.pnet' -> 'core'; the top-level helper modules are the base layer."""
    parts = module.split(".")
    if parts[0] != "pcnets" or len(parts) < 2:
        return None
    if parts[1] in BASE:
        return "base"
    return parts[1] if parts[1] in LAYERS else None


def imports_of(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
    return found


def upward_imports() -> list[str]:
    bad = []
    for path in sorted(PACKAGE.rglob("*.py")):
        module = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        own = layer_of(module)
        if own is None:
            continue
        for target in imports_of(path):
            other = layer_of(target)
            if other is not None and LAYERS.index(other) < LAYERS.index(own):
                bad.append(f"{module} ({own}) imports {target} ({other})")
    return sorted(set(bad))


def test_every_module_belongs_to_a_layer():
    stray = [
        str(p.relative_to(PACKAGE))
        for p in PACKAGE.rglob("*.py")
        if p.parent == PACKAGE and p.stem not in (*BASE, *FACADES, "__init__", "__main__")
    ]
    assert stray == []


def test_imports_point_down_only():
    assert upward_imports() == []


def test_core_imports_nothing_above_the_base():
    core = [p for p in (PACKAGE / "core").rglob("*.py")]
    above = [
        f"{p.name}: {t}"
        for p in core
        for t in imports_of(p)
        if layer_of(t) not in (None, "core", "base")
    ]
    assert core and above == []


def module_name(path: Path) -> str:
    return ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts)


def import_graph() -> dict[str, set[str]]:
    """Module -> the modules of pcnets it imports (TYPE_CHECKING imports included), for every
    module of the package; ``from pcnets.core import loop`` counts as importing pcnets.core.loop."""
    modules = {module_name(p).removesuffix(".__init__"): p for p in sorted(PACKAGE.rglob("*.py"))}
    return {
        name: {t for t in imports_of(path) if t in modules and t != name}
        for name, path in modules.items()
    }


def circles_inside_folders(graph: dict[str, set[str]] | None = None) -> list[list[str]]:
    """Import cycles among the modules of one folder (a package importing its own modules from
    its __init__ is not a cycle: the package is the folder)."""
    graph = import_graph() if graph is None else graph
    folder = {m: m.rsplit(".", 1)[0] for m in graph}
    packages = {m for m in graph if any(o.startswith(m + ".") for o in graph)}
    edges = {
        m: {t for t in targets if t not in packages and folder[t] == folder[m]}
        for m, targets in graph.items()
        if m not in packages
    }
    found, done = [], set()

    def visit(node: str, path: list[str]) -> None:
        if node in path:
            found.append([*path[path.index(node) :], node])
            return
        if node in done:
            return
        for nxt in sorted(edges.get(node, ())):
            visit(nxt, [*path, node])
        done.add(node)

    for start in sorted(edges):
        visit(start, [])
    return found


def test_no_import_circle_inside_a_folder():
    assert circles_inside_folders() == []


def test_the_circle_check_sees_a_circle():
    graph = import_graph()  # dynamics imports guards; add the way back
    graph["pcnets.core.guards"] = {*graph["pcnets.core.guards"], "pcnets.core.dynamics"}
    cycles = circles_inside_folders(graph)
    assert any("pcnets.core.guards" in c and "pcnets.core.dynamics" in c for c in cycles)
