"""The folders are the architecture: imports inside pcnets point down the layers only."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "pcnets"
# Top to bottom: a module may import its own layer and the layers below it, never one above.
LAYERS = ("cli", "experiments", "reporting", "runtime", "backbones", "core", "data", "base")
BASE = ("bounds", "config", "errors", "intervals", "metrics", "progress", "schema", "validate")


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
        if p.parent == PACKAGE and p.stem not in (*BASE, "__init__", "__main__")
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
