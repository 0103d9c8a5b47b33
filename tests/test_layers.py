"""The house drawn from imports: four floors (``meio.envs`` < ``meio.baselines`` < ``meio.agents`` <
the commands and reports of ``meio``), each importing only from its own floor or below, and no
cycle among the modules' top-level imports (docs/architecture.md)."""

from __future__ import annotations

import ast
from pathlib import Path

import networkx as nx

ROOT = Path(__file__).resolve().parents[1]
#: Folder of each floor (installed as meio.<folder>), lowest first; meio/ holds the top floor.
FLOORS = {"envs": 0, "baselines": 1, "agents": 2, "meio": 3}


def _modules() -> dict[str, Path]:
    out = {}
    for folder in FLOORS:
        for path in sorted((ROOT / folder).glob("*.py")):
            pkg = "meio" if folder == "meio" else f"meio.{folder}"
            out[pkg if path.stem == "__init__" else f"{pkg}.{path.stem}"] = path
    return out


def _floor(module: str) -> int | None:
    parts = module.split(".")
    if parts[0] != "meio":
        return None
    if len(parts) > 1 and parts[1] in ("envs", "baselines", "agents"):
        return FLOORS[parts[1]]
    if len(parts) > 1 and parts[1] == "configs":
        return 0  # data only
    return FLOORS["meio"] if len(parts) > 1 else None  # ``meio`` itself: the namespace, imported by all


def _imports(path: Path, top_level_only: bool) -> list[str]:
    tree = ast.parse(path.read_text())
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    names = []
    for node in nodes:
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module)
            names += [f"{node.module}.{a.name}" for a in node.names]
    return [n for n in names if n.split(".")[0] == "meio"]


def test_every_package_is_found() -> None:
    mods = _modules()
    assert {"meio.envs.dynamics", "meio.baselines.run", "meio.agents.train", "meio.cli"} <= set(mods)


def test_each_floor_imports_only_from_its_own_floor_or_below() -> None:
    upward = []
    for module, path in _modules().items():
        own = _floor(module) if module != "meio" else 0
        for name in _imports(path, top_level_only=False):  # lazy imports count too
            floor = _floor(name)
            if floor is not None and floor > own:
                upward.append(f"{module} imports {name}")
    assert not upward, "\n".join(upward)


def test_no_cycle_among_top_level_imports() -> None:
    mods = _modules()
    graph = nx.DiGraph()
    for module, path in mods.items():
        graph.add_node(module)
        for name in _imports(path, top_level_only=True):
            target = name if name in mods else name.rsplit(".", 1)[0]
            if target in mods and target != module:
                graph.add_edge(module, target)
    # A package's __init__ re-exporting its modules is not a cycle of the design: drop package nodes.
    graph.remove_nodes_from([m for m in mods if mods[m].stem == "__init__"])
    cycles = list(nx.simple_cycles(graph))
    assert not cycles, cycles
