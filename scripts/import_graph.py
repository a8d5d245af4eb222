"""The import graph between rumpy's packages (rumpy.config, rumpy.tasks, ...), counting every
import in a module, the lazy ones inside functions too (a lazy import hides a cycle, it does not
remove it). Prints the edges and any cycle; exits 1 when there is one.

    python scripts/import_graph.py            # the graph and its cycles
    python scripts/import_graph.py --why A B  # the imports that make package A use package B
"""
from __future__ import annotations

import ast
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] / "rumpy"


def unit(module: str) -> str:
    """The package a module belongs to: rumpy.tasks.sisr -> tasks; top-level modules
    (rumpy/registry.py) are their own unit."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "rumpy"


def module_name(path: Path) -> str:
    rel = path.relative_to(ROOT.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def imports(path: Path) -> list[tuple[str, int]]:
    """Modules of rumpy that `path` imports: (module, line)."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out += [(a.name, node.lineno) for a in node.names if a.name.startswith("rumpy")]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if not target.startswith("rumpy"):
                continue
            if node.module is None or target.count(".") == 0:  # `from . import a, b`
                out += [(f"{target}.{a.name}", node.lineno) for a in node.names]
            else:
                out.append((target, node.lineno))
    return out


def graph() -> dict[str, dict[str, list[str]]]:
    """unit -> {imported unit: ['file:line', ...]}"""
    edges: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    for path in sorted(ROOT.rglob("*.py")):
        src = unit(module_name(path))
        for target, line in imports(path):
            dst = unit(target)
            if dst != src:
                edges[src][dst].append(f"{path.relative_to(ROOT.parent)}:{line}")
    return edges


def cycles(edges) -> list[list[str]]:
    """Strongly connected groups of more than one package (Tarjan)."""
    index, low, stack, on, found, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in edges.get(v, {}):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for v in list(edges):
        if v not in index:
            visit(v)
    return found


def main(argv: list[str]) -> int:
    edges = graph()
    if argv[:1] == ["--why"]:
        for where in edges.get(argv[1], {}).get(argv[2], []):
            print(where)
        return 0
    for src in sorted(edges):
        print(f"{src} -> {', '.join(sorted(edges[src]))}")
    found = cycles(edges)
    for group in found:
        print("cycle:", " <-> ".join(group))
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
