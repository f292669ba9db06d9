"""The packages stand on each other, never in a circle: data -> models -> train -> evaluate ->
ensemble -> compress -> export -> explain -> benchmark, with edge_runtime at the bottom (it imports
nothing of edgeskin, so a device needs neither torch nor this package).

The graph is read from the source (ast), so an import inside a function counts as much as one at
the top: a lazy import hides a circle from Python until the wrong module is imported first, it
does not remove it. Importing `a.b.c` also runs the package `a.b`'s __init__, so an import edge
also goes to each package above its target that is not above the importer itself.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = {"edgeskin": ROOT / "edgeskin", "edge_runtime": ROOT / "edge_runtime" / "src" / "edge_runtime"}

# Layers, lowest first. A module may import its own layer and the ones below it, never one above.
LAYERS = ("edge_runtime", "core", "data", "models", "train", "evaluate", "ensemble", "compress", "export",
          "explain", "benchmark", "top")
# edgeskin's top-level modules: the foundations every stage uses, and the two that sit on inference.
TOP_LEVEL = {"edgeskin": "core", "_compat": "core", "errors": "core", "fileio": "core", "progress": "core", "extras": "core",
             "card": "core", "config": "core", "metrics": "core", "recipes": "core",
             "predict": "models", "cam": "models",
             "cli": "top", "cli_options": "top", "pipeline": "top", "__main__": "top",
             "reliability": "top", "tune": "top", "tune_report": "top"}  # drives the command lines, so it sits above them


def modules() -> dict[str, Path]:
    found = {}
    for top, base in PACKAGES.items():
        for path in base.rglob("*.py"):
            parts = [top, *path.relative_to(base).with_suffix("").parts]
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


def _owner(name: str, mods: dict[str, Path]) -> str | None:
    """The module a dotted name lives in (`a.b.func` -> `a.b`), if it is one of ours."""
    while name and name not in mods:
        name = name.rpartition(".")[0]
    return name or None


def _targets(node: ast.AST, module: str, is_package: bool, mods: dict[str, Path]) -> set[str]:
    if isinstance(node, ast.Import):
        names = [a.name for a in node.names]
    elif isinstance(node, ast.ImportFrom):
        base = node.module or ""
        if node.level:
            pkg = module.split(".") if is_package else module.split(".")[:-1]
            base = ".".join(pkg[: len(pkg) - node.level + 1] + ([base] if base else []))
        # `from pkg import sub` imports the submodule `pkg.sub`; `from mod import name`, just `mod`.
        names = [f"{base}.{a.name}" if f"{base}.{a.name}" in mods else base for a in node.names]
    else:
        return set()
    out = set()
    for name in names:
        target = _owner(name, mods)
        if target is None:
            continue
        out.add(target)
        parts = target.split(".")  # the packages whose __init__ the import runs on its way
        out.update(".".join(parts[:i]) for i in range(1, len(parts))
                   if not (module + ".").startswith(".".join(parts[:i]) + "."))
    out.discard(module)
    return out


def import_graph() -> dict[str, set[str]]:
    mods = modules()
    graph = {}
    for name, path in mods.items():
        tree = ast.parse(path.read_text(), str(path))
        graph[name] = set().union(*(_targets(n, name, path.name == "__init__.py", mods) for n in ast.walk(tree)))
    return graph


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index, low, stack, on_stack, found, counter = {}, {}, [], set(), [], 0
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            v, children = work[-1]
            for w in children:
                if w not in index:
                    index[w] = low[w] = counter
                    counter += 1
                    stack.append(w)
                    on_stack.add(w)
                    work.append((w, iter(sorted(graph[w]))))
                    break
                if w in on_stack:
                    low[v] = min(low[v], index[w])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[v])
                if low[v] == index[v]:
                    component = []
                    while True:
                        w = stack.pop()
                        on_stack.discard(w)
                        component.append(w)
                        if w == v:
                            break
                    if len(component) > 1:
                        found.append(sorted(component))
    return found


def layer(module: str) -> str:
    parts = module.split(".")
    if parts[0] == "edge_runtime":
        return "edge_runtime"
    name = parts[1] if len(parts) > 1 else "edgeskin"
    if name in TOP_LEVEL:
        return TOP_LEVEL[name]
    if name in LAYERS:
        return name
    raise AssertionError(f"{module}: package {name!r} has no layer; add it to LAYERS or TOP_LEVEL in {__file__}")


def test_no_import_circle():
    found = circles(import_graph())
    assert not found, "import circles (each package must import only downwards):\n" + "\n".join(
        " <-> ".join(c) for c in found)


def test_imports_only_go_down():
    upward = [f"{m} ({layer(m)}) imports {t} ({layer(t)})" for m, targets in sorted(import_graph().items())
              for t in sorted(targets) if LAYERS.index(layer(t)) > LAYERS.index(layer(m))]
    assert not upward, "imports going up a layer:\n" + "\n".join(upward)


def test_edge_runtime_imports_nothing_of_edgeskin():
    graph = import_graph()
    leaks = [f"{m} -> {t}" for m, ts in graph.items() if m.startswith("edge_runtime") for t in ts
             if t.startswith("edgeskin")]
    assert not leaks, leaks


@pytest.mark.parametrize("case", ["lazy", "package-init"])
def test_the_walk_finds_a_circle(tmp_path, monkeypatch, case):
    """The check itself can fail: a circle through a function-level import, and one through a
    package __init__ that re-exports from a module which imports a sibling through that package."""
    pkg = tmp_path / "edgeskin"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    if case == "lazy":
        (pkg / "a.py").write_text("from edgeskin.b import f\n")
        (pkg / "b.py").write_text("def f():\n    from edgeskin.a import g\n")
        expected = ["edgeskin.a", "edgeskin.b"]
    else:
        (pkg / "sub" / "__init__.py").write_text("from edgeskin.sub.x import X\n")
        (pkg / "sub" / "x.py").write_text("from edgeskin.other import Y\nX = 1\n")
        (pkg / "other.py").write_text("from edgeskin.sub.y import Z\nY = 2\n")
        (pkg / "sub" / "y.py").write_text("Z = 3\n")
        expected = ["edgeskin.other", "edgeskin.sub", "edgeskin.sub.x"]
    monkeypatch.setitem(PACKAGES, "edgeskin", pkg)
    monkeypatch.delitem(PACKAGES, "edge_runtime")
    assert circles(import_graph()) == [expected]
