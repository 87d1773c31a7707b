"""Import circles between the modules of a package, found statically with :mod:`ast`.

Why a static scan: a circle hidden behind a function-local import (``def f(): from voxuda.x import y``)
never fails at import time, so running ``import voxuda`` proves nothing; yet it still ties two modules
together (neither can be read, tested or moved without the other). This script therefore counts every
``import voxuda...`` / ``from voxuda... import ...`` statement, at module level *and* inside functions, and
reports the strongly connected components (SCCs) of more than one module: each is a circle.

What is not an arrow:

- imports under ``if TYPE_CHECKING:`` (never executed, so they cannot form a run-time circle);
- the implicit import of a parent package (``voxuda.engine`` before ``voxuda.engine.trainer``): a package's
  ``__init__`` that imports its children is Python's normal layout, not a circle between rooms;
- dynamic imports (``importlib.import_module(name)``, the registry's ``"module:attr"`` refs): those are the
  plugin seams, resolved by name on purpose.

``from voxuda.engine import provenance`` is an arrow to ``voxuda.engine.provenance`` (the submodule) and to
``voxuda.engine`` (its package, which Python runs first).

    python scripts/import_cycles.py [PACKAGE_DIR] [--fail-on-cycle]

exits 1 with ``--fail-on-cycle`` when a circle remains (tests/foundation/test_import_cycles.py runs
:func:`find_cycles` on ``voxuda/``).
"""

from __future__ import annotations

import argparse
import ast
import sys
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

DEFAULT_PACKAGE = Path(__file__).resolve().parents[1] / "voxuda"


@dataclass(frozen=True)
class Arrow:
    """One import statement from ``source`` to ``target``; ``local`` when it sits inside a function."""

    source: str
    target: str
    line: int
    local: bool


def module_names(package_dir: Path) -> dict[str, Path]:
    """Dotted module name -> file, for every ``.py`` file under ``package_dir`` (the package's own name is the
    folder's name; a package is named by its ``__init__.py``)."""
    root = package_dir.resolve()
    names: dict[str, Path] = {}
    for path in sorted(root.rglob("*.py")):
        parts = [root.name, *path.relative_to(root).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts.pop()
        names[".".join(parts)] = path
    return names


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.Module) -> Iterator[tuple[ast.Import | ast.ImportFrom, bool]]:
    """Every import statement of ``tree`` that runs at some point, with whether it is inside a function."""

    def walk(nodes: Iterable[ast.AST], local: bool) -> Iterator[tuple[ast.Import | ast.ImportFrom, bool]]:
        for node in nodes:
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                yield node, local
            elif isinstance(node, ast.If) and _is_type_checking(node.test):
                yield from walk(node.orelse, local)  # the ``else`` of ``if TYPE_CHECKING`` does run
            else:
                inner = local or isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
                yield from walk(ast.iter_child_nodes(node), inner)

    return walk(tree.body, False)


def _absolute(module: str, node: ast.ImportFrom, is_package: bool) -> str:
    """The absolute module an ``ImportFrom`` names (relative imports resolved against ``module``)."""
    if node.level == 0:
        return node.module or ""
    base = module.split(".")
    base = base if is_package else base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join([*base, node.module] if node.module else base)


def arrows(package_dir: Path) -> list[Arrow]:
    """Every import arrow between two modules of the package in ``package_dir``."""
    names = module_names(package_dir)
    found: list[Arrow] = []
    for module, path in names.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        is_package = path.name == "__init__.py"
        for node, local in _imports(tree):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                base = _absolute(module, node, is_package)
                targets = [base, *(f"{base}.{alias.name}" for alias in node.names)]
            for target in targets:
                if target in names and target != module:
                    found.append(Arrow(module, target, node.lineno, local))
    return found


def graph(found: Iterable[Arrow]) -> dict[str, set[str]]:
    """Adjacency sets: module -> the modules it imports."""
    edges: dict[str, set[str]] = {}
    for arrow in found:
        edges.setdefault(arrow.source, set()).add(arrow.target)
        edges.setdefault(arrow.target, set())
    return edges


def strongly_connected(edges: Mapping[str, set[str]]) -> list[list[str]]:
    """Tarjan's strongly connected components (iterative: import chains can be deeper than the recursion
    limit cares for), each sorted, largest first."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    components: list[list[str]] = []
    counter = 0
    for start in sorted(edges):
        if start in index:
            continue
        work: list[tuple[str, Iterator[str]]] = [(start, iter(sorted(edges[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                components.append(sorted(component))
    return sorted(components, key=lambda c: (-len(c), c))


def find_cycles(package_dir: Path = DEFAULT_PACKAGE) -> list[list[str]]:
    """The import circles of the package: its strongly connected components of two or more modules."""
    return [c for c in strongly_connected(graph(arrows(package_dir))) if len(c) > 1]


def describe(cycle: list[str], found: Iterable[Arrow]) -> list[str]:
    """The arrows inside one circle, one line each (``a -> b (line 12, local)``)."""
    members = set(cycle)
    return [
        f"{a.source} -> {a.target} (line {a.line}{', local' if a.local else ''})"
        for a in sorted(found, key=lambda a: (a.source, a.target, a.line))
        if a.source in members and a.target in members
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("package", nargs="?", type=Path, default=DEFAULT_PACKAGE,
                        help="the package folder to scan (default: this checkout's voxuda/)")
    parser.add_argument("--fail-on-cycle", action="store_true", help="exit 1 when any circle remains")
    args = parser.parse_args(argv)
    found = arrows(args.package)
    cycles = [c for c in strongly_connected(graph(found)) if len(c) > 1]
    local = sum(a.local for a in found)
    print(f"{len(module_names(args.package))} modules, {len(found)} import arrows ({local} function-local), "
          f"{len(cycles)} circle(s)")
    for number, cycle in enumerate(cycles, 1):
        print(f"circle {number}: {', '.join(cycle)}")
        for line in describe(cycle, found):
            print(f"    {line}")
    return 1 if cycles and args.fail_on_cycle else 0


if __name__ == "__main__":
    sys.exit(main())
