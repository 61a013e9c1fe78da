"""The package's layers and the directions its imports may run (docs/DESIGN.md).

Every ``import`` of a camwatch module anywhere in camwatch/ (module level or
inside a function) is read with ``ast`` and checked against the table below; a
new import that runs the wrong way, or a cycle between modules, fails here with
the file and line, before it becomes a tangle.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "camwatch"

#: layer -> the layers it may import (besides itself). Kept in step with docs/DESIGN.md.
ALLOWED: dict[str, set[str]] = {
    "core": set(),
    "config": {"core"},
    "vision": {"core"},
    "sources": {"core", "config", "vision"},
    "store": {"core", "config", "vision"},
    "service": {"core", "config", "vision", "sources", "store"},
    "tools": {"core", "config", "vision", "sources", "store", "service"},
    "cli": {"core", "config", "vision", "sources", "store", "service", "tools"},
}
#: modules at the package's top: they may import nothing but the layers named here.
TOP = {"__init__": set(), "__main__": {"cli"}}


def _module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _imports(path: Path) -> list[tuple[int, str, bool]]:
    """(line, imported camwatch module, at module level) for every import in the file."""
    tree = ast.parse(path.read_text(), str(path))
    me = _module_name(path)
    is_pkg = path.name == "__init__.py"
    top_level = {id(n) for n in tree.body}
    found: list[tuple[int, str, bool]] = []
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = me.split(".") if is_pkg else me.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            # "from camwatch.core import decision" imports the module camwatch.core.decision
            names = [mod] + [f"{mod}.{a.name}" for a in node.names]
        for name in names:
            if name == "camwatch" or name.startswith("camwatch."):
                found.append((node.lineno, name, id(node) in top_level))
    return found


def _layer(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def _files() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py"))


def _known_modules() -> set[str]:
    return {_module_name(p) for p in _files()}


def test_every_module_is_in_a_layer() -> None:
    stray = [str(p.relative_to(PACKAGE)) for p in _files()
             if p.parent == PACKAGE and p.stem not in TOP]
    assert not stray, f"modules outside every layer (put each in a package of docs/DESIGN.md): {stray}"
    layers = {p.relative_to(PACKAGE).parts[0] for p in _files() if p.parent != PACKAGE}
    unknown = layers - set(ALLOWED) - {"models"}
    assert not unknown, f"packages missing from the layer table in tests/test_layers.py and docs/DESIGN.md: {unknown}"


def test_imports_run_down_the_layers() -> None:
    known = _known_modules()
    wrong = []
    for path in _files():
        me = _module_name(path)
        mine = _layer(me) if path.parent != PACKAGE else path.stem
        allowed = TOP.get(mine) if path.parent == PACKAGE else ALLOWED[mine] | {mine}
        assert allowed is not None
        for line, name, _ in _imports(path):
            if name not in known and name.rsplit(".", 1)[0] in known:
                continue  # a name imported from a module, not a module
            target = _layer(name)
            if name == "camwatch" or target in allowed or (path.parent != PACKAGE and target == mine):
                continue
            if name == "camwatch" or not target:
                continue
            wrong.append(f"camwatch/{path.relative_to(PACKAGE)}:{line}: {mine} imports {name} ({target})")
    assert not wrong, "imports against the layer order of docs/DESIGN.md:\n" + "\n".join(wrong)


def test_no_import_cycles() -> None:
    known = _known_modules()
    graph: dict[str, set[str]] = {m: set() for m in known}
    for path in _files():
        me = _module_name(path)
        for _, name, top_level in _imports(path):
            if not top_level:
                continue
            target = name if name in known else name.rsplit(".", 1)[0]
            if target in known and target != me and not me.startswith(target + "."):
                # a package's __init__ is imported on the way to any of its modules
                graph[me].add(target)
    cycles: list[list[str]] = []
    state: dict[str, int] = {}

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt, stack)
        stack.pop()
        state[node] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m, [])
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


@pytest.mark.parametrize("bad, layer", [("camwatch.service.daemon", "service")])
def test_the_check_itself_sees_a_wrong_import(tmp_path: Path, bad: str, layer: str) -> None:
    """A core module importing the service layer is caught (the check can fail)."""
    assert layer not in ALLOWED["core"]
    probe = PACKAGE / "core" / "_probe_layers.py"
    probe.write_text(f"import {bad}\n")
    try:
        with pytest.raises(AssertionError, match="core imports camwatch.service.daemon"):
            test_imports_run_down_the_layers()
    finally:
        probe.unlink()
