"""Seeded random scenario dictionaries (for ``Scenario.from_dict``) covering the model's features.

``random_scenario(seed)`` draws a shape (serial chain, distribution tree, assembly, alternative
sourcing or a general DAG) and decorates it at random with: constant and random lead times
(``discrete`` / ``uniform_int``, zero included), ``order_crossing``, transport modes, node and mode
capacities, both allocation rules, backorders or lost sales, internal demand nodes, outages on
external lanes, integer or continuous quantities, initial inventory, and all cost kinds. The node
list and the lane list are shuffled in some scenarios, so file order differs from topological order.

Only ``numpy.random.Generator`` is used; the same seed gives the same dictionary.
"""

from __future__ import annotations

import numpy as np

SHAPES = ("serial", "distribution", "assembly", "alternative", "dag")


def _r(x: float, nd: int = 3) -> float:
    return float(round(float(x), nd))


class _Builder:
    def __init__(self, rng: np.random.Generator, integer: bool) -> None:
        self.rng = rng
        self.integer = integer
        self.names: list[str] = []
        self.parents: dict[str, list[str]] = {}
        self.sourcing: dict[str, str] = {}  # "", "assembly" (with bom), "alternative"
        self.demand: set[str] = set()

    def add(self, parents: list[str]) -> str:
        name = f"n{len(self.names)}"
        self.names.append(name)
        self.parents[name] = list(parents)
        self.sourcing[name] = ""
        return name

    def children(self, name: str) -> list[str]:
        return [c for c in self.names if name in self.parents[c]]


def _lead_time(rng: np.random.Generator):
    k = rng.random()
    if k < 0.45:
        return int(rng.choice([0, 0, 1, 1, 2, 3]))
    if k < 0.55:
        return {"dist": "constant", "value": int(rng.integers(0, 4))}
    if k < 0.8:
        n = int(rng.integers(2, 4))
        values = sorted(int(v) for v in rng.choice(5, size=n, replace=False))
        p = rng.dirichlet(np.ones(n))
        p = [_r(x, 4) for x in p[:-1]]
        p.append(_r(1.0 - sum(p), 4))
        if p[-1] <= 0:
            p = [_r(1.0 / n, 6)] * (n - 1)
            p.append(1.0 - sum(p))
        order = rng.permutation(n)  # the parser sorts them back
        return {"dist": "discrete", "values": [values[i] for i in order], "probs": [p[i] for i in order]}
    lo = int(rng.integers(0, 3))
    return {"dist": "uniform_int", "low": lo, "high": lo + int(rng.integers(0, 4))}


def _mode_body(rng: np.random.Generator, integer: bool) -> dict:
    body: dict = {"lead_time": _lead_time(rng)}
    if rng.random() < 0.5:
        body["unit_cost"] = _r(rng.uniform(0, 2))
    if rng.random() < 0.4:
        body["fixed_cost"] = _r(rng.uniform(0, 10))
    if rng.random() < 0.35:
        body["capacity"] = int(rng.integers(1, 25)) if integer else _r(rng.uniform(0.5, 25))
    if rng.random() < 0.4:
        body["pipeline_holding_cost"] = _r(rng.uniform(0, 1))
    if rng.random() < 0.4:
        body["order_crossing"] = True
    return body


def _demand(rng: np.random.Generator, integer: bool) -> dict:
    if integer:
        if rng.random() < 0.6:
            return {"dist": "poisson", "mean": _r(rng.uniform(1, 10), 2)}
        lo = int(rng.integers(0, 4))
        return {"dist": "uniform_int", "low": lo, "high": lo + int(rng.integers(0, 9))}
    if rng.random() < 0.5:
        return {"dist": "normal", "mean": _r(rng.uniform(2, 10), 2), "sd": _r(rng.uniform(0.5, 5), 2)}
    return {"dist": "gamma", "mean": _r(rng.uniform(2, 10), 2), "sd": _r(rng.uniform(1, 5), 2)}


def _ratio(rng: np.random.Generator, integer: bool) -> float:
    if integer and rng.random() < 0.8:
        return int(rng.choice([1, 2, 2, 3]))
    return float(rng.choice([0.5, 1.0, 1.5, 2.0, 2.5]))


def _multi_sourcing(b: _Builder, name: str, rng: np.random.Generator) -> None:
    """A node with several suppliers: assembly (default or with a bom) or alternative sourcing."""
    k = rng.random()
    if k < 0.35:
        b.sourcing[name] = "alternative"
    elif k < 0.7:
        b.sourcing[name] = "bom"
    else:
        b.sourcing[name] = ""  # assembly by default, ratios 1


def random_scenario(seed: int, shape: str | None = None) -> dict:
    """A random valid scenario dictionary; ``shape`` is one of :data:`SHAPES` (random if None).

    Backorder scenarios are stable: capacities a load would refuse as below the mean demand they
    carry are doubled until they are not (:func:`_stable`)."""
    rng = np.random.default_rng(seed)
    shape = shape or SHAPES[int(rng.integers(len(SHAPES)))]
    integer = bool(rng.random() < 0.5)
    b = _Builder(rng, integer)

    if shape == "serial":
        k = int(rng.integers(2, 5))
        prev = b.add(["external"])
        for _ in range(k - 1):
            prev = b.add([prev])
    elif shape == "distribution":
        k = int(rng.integers(3, 8))
        b.add(["external"])
        for i in range(1, k):
            if rng.random() < 0.12:
                b.add(["external"])
            else:
                b.add([b.names[int(rng.integers(0, i))]])
    elif shape == "assembly":
        c = int(rng.integers(2, 4))
        comps = [b.add(["external"]) for _ in range(c)]
        parents = comps + (["external"] if rng.random() < 0.3 else [])
        a = b.add(parents)
        b.sourcing[a] = "bom" if rng.random() < 0.7 else ""
        for _ in range(int(rng.integers(0, 3))):
            b.add([a])
    elif shape == "alternative":
        w = [b.add(["external"]) for _ in range(int(rng.integers(2, 4)))]
        parents = w + (["external"] if rng.random() < 0.3 else [])
        x = b.add(parents)
        b.sourcing[x] = "alternative"
        for _ in range(int(rng.integers(0, 3))):
            b.add([x])
    else:  # general DAG
        k = int(rng.integers(3, 8))
        b.add(["external"])
        for i in range(1, k):
            m = int(rng.choice([1, 2, 3], p=[0.5, 0.35, 0.15]))
            pool = b.names[:i] + ["external"]
            m = min(m, len(pool))
            ps = [pool[j] for j in sorted(rng.choice(len(pool), size=m, replace=False))]
            name = b.add(ps)
            if len(ps) > 1:
                _multi_sourcing(b, name, rng)

    # Single-supplier nodes sometimes get a ratio other than 1 (an assembly node with one lane).
    for name in b.names:
        if len(b.parents[name]) == 1 and rng.random() < 0.12:
            b.sourcing[name] = "bom1"

    # Demand: every sink, and some internal nodes.
    for name in b.names:
        if not b.children(name) or rng.random() < 0.25:
            b.demand.add(name)

    unmet = "backorder" if rng.random() < 0.6 else "lost_sales"
    penalty_key = "backorder_cost" if unmet == "backorder" else "lost_sales_cost"
    nodes = []
    for name in b.names:
        nd: dict = {"id": name, "holding_cost": _r(rng.uniform(0, 2))}
        if name in b.demand:
            nd["demand"] = _demand(rng, integer)
            nd[penalty_key] = _r(rng.uniform(1, 20))
        if rng.random() < 0.2:
            nd["capacity"] = int(rng.integers(1, 30)) if integer else _r(rng.uniform(0.5, 30))
        if rng.random() < 0.7:
            nd["initial_inventory"] = int(rng.integers(0, 31)) if integer else _r(rng.uniform(0, 30))
        src = b.sourcing[name]
        if src == "alternative":
            nd["sourcing"] = "alternative"
        elif src == "bom":
            nd["bom"] = {p: _ratio(rng, integer) for p in b.parents[name]}
        elif src == "bom1":
            nd["bom"] = {
                b.parents[name][0]: float(rng.choice([0.5, 2.0, 3.0])) if not integer else int(rng.choice([2, 3]))
            }
        nodes.append(nd)

    lanes = []
    for name in b.names:
        for p in b.parents[name]:
            lane: dict = {"from": p, "to": name}
            if rng.random() < 0.25:
                n_modes = int(rng.integers(2, 4))
                lane["modes"] = [{"name": f"m{i}", **_mode_body(rng, integer)} for i in range(n_modes)]
                if rng.random() < 0.3:  # a lane-level default inherited by the modes
                    lane["unit_cost"] = _r(rng.uniform(0, 1))
                    for m in lane["modes"]:
                        m.pop("unit_cost", None)
            else:
                lane.update(_mode_body(rng, integer))
            if p == "external" and rng.random() < 0.3:
                lane["disruption"] = {
                    "start_probability": _r(rng.uniform(0.05, 0.5)),
                    "mean_duration": _r(rng.uniform(1.0, 4.0)),
                }
            lanes.append(lane)

    if rng.random() < 0.5:
        nodes = [nodes[i] for i in rng.permutation(len(nodes))]
    if rng.random() < 0.5:
        lanes = [lanes[i] for i in rng.permutation(len(lanes))]
    return _stable(
        {
            "name": f"random_{shape}_{seed}",
            "unmet_demand": unmet,
            "allocation": "proportional" if rng.random() < 0.4 else "fcfs_index",
            "horizon": 52,
            "integer_orders": integer,
            "nodes": nodes,
            "lanes": lanes,
        }
    )


def _stable(d: dict) -> dict:
    """``d`` with every capacity that loading names as below the mean demand it must carry
    (``meio.envs.scenario.capacity_shortfalls``) doubled until none is; draws nothing, so the other
    features of the scenario stay those of its seed. Capacities still bind in single periods."""
    from meio.envs.scenario import Scenario, ScenarioError

    def double(where: dict) -> None:
        for m in where.get("modes", [where]):
            if "capacity" in m:
                m["capacity"] *= 2

    for _ in range(64):
        try:
            Scenario.from_dict(d)
            return d
        except ScenarioError as exc:
            for path, _ in exc.errors:
                index = int(path.split("[")[1].split("]")[0]) if "[" in path else -1
                if path == f"lanes[{index}]":
                    double(d["lanes"][index])
                elif path == f"nodes[{index}].capacity":
                    d["nodes"][index]["capacity"] *= 2
                elif path != f"nodes[{index}]":
                    raise
                else:  # alternative suppliers, together too small
                    target = d["nodes"][index]["id"]
                    for lane in d["lanes"]:
                        if lane["to"] == target:
                            double(lane)
                            for node in d["nodes"]:
                                if node["id"] == lane["from"] and "capacity" in node:
                                    node["capacity"] *= 2
    raise AssertionError(f"{d['name']}: capacities could not be made to carry the mean demand")


def is_exact(d: dict) -> bool:
    """True when every quantity of the scenario stays an integer (so the two simulators must agree
    exactly): integer orders, integer demand, integer stock and capacities, integer bom ratios and
    ``fcfs_index`` allocation (proportional shares are fractions)."""
    if not d.get("integer_orders") or d.get("allocation", "fcfs_index") != "fcfs_index":
        return False
    for nd in d["nodes"]:
        if nd.get("demand") is not None and nd["demand"]["dist"] not in ("poisson", "uniform_int"):
            return False
        for key in ("initial_inventory", "capacity"):
            if key in nd and not float(nd[key]).is_integer():
                return False
        if any(not float(r).is_integer() for r in nd.get("bom", {}).values()):
            return False
    for lane in d["lanes"]:
        for m in lane.get("modes", [lane]):
            if "capacity" in m and not float(m["capacity"]).is_integer():
                return False
    return True


def small_serial() -> dict:
    """A small valid serial chain: external -> plant -> dc -> retailer, Poisson demand of mean 4 at the retailer."""
    return {
        "name": "serial",
        "nodes": [
            {"id": "retailer", "holding_cost": 1.0, "backorder_cost": 9.0, "demand": {"dist": "poisson", "mean": 4}},
            {"id": "dc", "holding_cost": 0.5},
            {"id": "plant", "holding_cost": 0.2},
        ],
        "lanes": [
            {"from": "dc", "to": "retailer", "lead_time": 1},
            {"from": "plant", "to": "dc", "lead_time": 1},
            {"from": "external", "to": "plant", "lead_time": 2},
        ],
    }
