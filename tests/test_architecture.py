"""Code layout rules for the ``sage`` package, checked on its source with ``ast``.

The import graph has one node per module (a package's ``__init__`` is its own node) and one
edge per import of another ``sage`` module, module-level or inside a function: a lazy import
that dodges a cycle at import time is still a cycle in the design. Importing a submodule from
outside its package also runs the package's ``__init__``, so that is an edge too. The rules:

* no import cycles;
* no module imports another module's private name (``from .x import _y`` or ``x._y``);
  a private module (``_common``) may be imported by the modules of its own package;
* no file longer than ``MAX_LINES``.
"""

from __future__ import annotations

import ast
import itertools
from dataclasses import dataclass, field
from pathlib import Path

import pytest

PACKAGE = "sage"
ROOT = Path(__file__).resolve().parents[1] / PACKAGE
MAX_LINES = 600


@dataclass
class ModuleInfo:
    """One source file: its dotted name, whether it is a package ``__init__``, its tree."""

    name: str
    path: Path
    is_package: bool
    tree: ast.Module
    imports: dict[str, int] = field(default_factory=dict)  # target module -> first line
    private: list[str] = field(default_factory=list)  # rule (b) violations, readable


def _module_name(path: Path) -> tuple[str, bool]:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        return ".".join(parts[:-1]), True
    return ".".join(parts), False


def _is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _parent(name: str) -> str:
    return name.rpartition(".")[0]


def _resolve_from(info: ModuleInfo, node: ast.ImportFrom) -> str:
    """The absolute module a ``from ... import`` names, relative levels resolved."""
    if node.level == 0:
        return node.module or ""
    base = info.name if info.is_package else _parent(info.name)
    for _ in range(node.level - 1):
        base = _parent(base)
    return f"{base}.{node.module}" if node.module else base


def _private_module_allowed(importer: str, target: str) -> bool:
    """A private module (``pkg._common``) is its package's own: siblings may import it."""
    private_parts = [p for p in target.split(".") if _is_private(p)]
    if not private_parts:
        return True
    owner = target.split(".")
    owner = owner[: owner.index(private_parts[0])]
    return importer.split(".")[: len(owner)] == owner


def _collect(modules: dict[str, ModuleInfo]) -> None:
    for info in modules.values():
        aliases: dict[str, str] = {}  # local name bound to a sage module -> that module

        def add(target: str, line: int, info: ModuleInfo = info) -> None:
            if target != info.name:
                info.imports.setdefault(target, line)
            if not _private_module_allowed(info.name, target):
                info.private.append(f"{info.name}:{line} imports private module {target}")

        for node in ast.walk(info.tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name.split(".")[0] != PACKAGE:
                        continue
                    add(alias.name, node.lineno)
                    if alias.asname:
                        aliases[alias.asname] = alias.name
            elif isinstance(node, ast.ImportFrom):
                source = _resolve_from(info, node)
                if source.split(".")[0] != PACKAGE:
                    continue
                for alias in node.names:
                    submodule = f"{source}.{alias.name}"
                    if submodule in modules:
                        add(submodule, node.lineno)
                        aliases[alias.asname or alias.name] = submodule
                        continue
                    add(source, node.lineno)
                    if _is_private(alias.name) and source != info.name:
                        info.private.append(
                            f"{info.name}:{node.lineno} imports {alias.name} from {source}"
                        )
        # ``mod._helper`` on a module bound above; a module's own privates are its business.
        for node in ast.walk(info.tree):
            if (
                isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Name)
                and node.value.id in aliases
                and _is_private(node.attr)
                and aliases[node.value.id] != info.name
                and f"{aliases[node.value.id]}.{node.attr}" not in modules
            ):
                info.private.append(
                    f"{info.name}:{node.lineno} uses {aliases[node.value.id]}.{node.attr}"
                )


def load_modules() -> dict[str, ModuleInfo]:
    """Every module of the package with its ``sage`` imports and private-name uses."""
    modules: dict[str, ModuleInfo] = {}
    for path in sorted(ROOT.rglob("*.py")):
        name, is_package = _module_name(path)
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        modules[name] = ModuleInfo(name, path, is_package, tree)
    _collect(modules)
    for info in modules.values():
        info.imports = {t: line for t, line in info.imports.items() if t in modules}
        # Importing ``sage.evaluation.selection`` from outside ``sage.evaluation`` runs
        # ``sage/evaluation/__init__`` first: an edge to every such enclosing package.
        for target, line in list(info.imports.items()):
            parts = target.split(".")
            for i in range(2, len(parts)):
                package = ".".join(parts[:i])
                inside = info.name == package or info.name.startswith(package + ".")
                if not inside and package in modules:
                    info.imports.setdefault(package, line)
    return modules


def find_cycles(modules: dict[str, ModuleInfo]) -> list[list[str]]:
    """One cycle (as a closed path) per strongly connected component of the import graph."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def strongconnect(v: str) -> None:  # Tarjan; the graph is small enough for recursion
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in modules[v].imports:
            if w not in index:
                strongconnect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    for v in sorted(modules):
        if v not in index:
            strongconnect(v)
    return [_cycle_in(modules, set(c), c[0]) for c in components]


def _cycle_in(modules: dict[str, ModuleInfo], component: set[str], start: str) -> list[str]:
    """A shortest path from ``start`` back to itself inside one component (BFS)."""
    previous: dict[str, str] = {}
    frontier = [start]
    while frontier:
        following = []
        for v in frontier:
            for w in modules[v].imports:
                if w not in component:
                    continue
                if w == start:
                    path = [v]
                    while path[-1] != start:
                        path.append(previous[path[-1]])
                    return [start, *reversed(path[:-1]), start]
                if w not in previous:
                    previous[w] = v
                    following.append(w)
        frontier = following
    raise AssertionError(f"no cycle through {start}")  # unreachable for an SCC


def _describe(modules: dict[str, ModuleInfo], cycle: list[str]) -> str:
    return (
        " -> ".join(f"{a} (line {modules[a].imports[b]})" for a, b in itertools.pairwise(cycle))
        + f" -> {cycle[-1]}"
    )


@pytest.fixture(scope="module")
def modules() -> dict[str, ModuleInfo]:
    return load_modules()


def test_no_import_cycles(modules: dict[str, ModuleInfo]) -> None:
    cycles = find_cycles(modules)
    assert not cycles, "import cycles:\n" + "\n".join(_describe(modules, c) for c in cycles)


def test_no_private_imports_across_modules(modules: dict[str, ModuleInfo]) -> None:
    found = list(dict.fromkeys(line for info in modules.values() for line in info.private))
    assert not found, "private names used across modules:\n" + "\n".join(found)


def test_files_are_short(modules: dict[str, ModuleInfo]) -> None:
    long = {
        str(info.path.relative_to(ROOT.parent)): n
        for info in modules.values()
        if (n := len(info.path.read_text(encoding="utf-8").splitlines())) > MAX_LINES
    }
    assert not long, f"files over {MAX_LINES} lines: {long}"


def test_the_checker_sees_what_it_should(tmp_path: Path) -> None:
    """The rules themselves, on a three-module package: a lazy cycle and a private import."""
    pkg = tmp_path / PACKAGE / "pkg"
    pkg.mkdir(parents=True)
    (tmp_path / PACKAGE / "__init__.py").write_text("")
    (pkg / "__init__.py").write_text("from .a import run\n")
    (pkg / "a.py").write_text("from ._common import helper\n\ndef run():\n    from . import b\n")
    (pkg / "b.py").write_text("import sage.pkg.a as a\n\nx = a._secret\n")
    (pkg / "_common.py").write_text("helper = 1\n")
    (tmp_path / PACKAGE / "c.py").write_text("from sage.pkg._common import helper\n")
    (tmp_path / PACKAGE / "d.py").write_text("from .pkg.a import run\n")
    global ROOT
    saved, ROOT = ROOT, tmp_path / PACKAGE
    try:
        found = load_modules()
    finally:
        ROOT = saved
    assert found["sage.pkg"].imports == {"sage.pkg.a": 1}
    assert found["sage.d"].imports == {"sage.pkg.a": 1, "sage.pkg": 1}  # pkg's __init__ runs
    assert find_cycles(found) == [["sage.pkg.a", "sage.pkg.b", "sage.pkg.a"]]
    assert found["sage.pkg.b"].private == ["sage.pkg.b:3 uses sage.pkg.a._secret"]
    assert found["sage.pkg.a"].private == []  # its own package's private module
    assert found["sage.c"].private == ["sage.c:1 imports private module sage.pkg._common"]
