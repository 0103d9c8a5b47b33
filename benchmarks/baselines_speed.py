"""Solve times of the baselines.

* Clark-Scarf (exact, Chen-Zheng recursion) on a 6-stage serial chain with normal demand;
* Shang-Song on the same chain;
* the guaranteed-service dynamic program on a random 50-node spanning tree (mixed distribution and
  assembly arcs);
* the simulation search (installation base-stock, then echelon) on the shipped ``distribution``
  scenario, with the settings of ``meio baselines``.

Run: ``.venv/bin/python benchmarks/baselines_speed.py``. Targets on a 2-core machine: Clark-Scarf
< 0.2 s, GSM < 1 s, the search a few minutes at most.
"""

from __future__ import annotations

import time

import numpy as np

from meio.baselines.gsm import optimize_gsm
from meio.baselines.run import run_baselines
from meio.baselines.serial import clark_scarf, shang_song


def timed(fn, repeat: int = 3) -> tuple[float, object]:
    best, out = float("inf"), None
    for _ in range(repeat):
        start = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - start)
    return best, out


def random_tree(n: int, seed: int = 0) -> dict:
    """A random spanning tree: node k > 0 attaches to an earlier node, as its supplier or customer."""
    rng = np.random.default_rng(seed)
    nodes = [f"n{k}" for k in range(n)]
    edges = []
    for k in range(1, n):
        other = nodes[int(rng.integers(0, k))]
        edges.append((other, nodes[k]) if rng.random() < 0.7 else (nodes[k], other))
    has_succ = {a for a, _ in edges}
    sinks = [x for x in nodes if x not in has_succ]
    return dict(
        nodes=nodes,
        edges=edges,
        processing_times={x: int(rng.integers(0, 6)) for x in nodes},
        holding_costs={x: float(rng.uniform(0.5, 5)) for x in nodes},
        demand_mean={x: float(rng.uniform(5, 50)) for x in sinks},
        demand_sd={x: float(rng.uniform(1, 10)) for x in sinks},
        service_level=0.95,
    )


def main() -> None:
    lead = [1, 2, 1, 3, 2, 4]
    echelon_h = [1.0, 0.8, 0.6, 0.5, 0.3, 0.2]
    demand = {"dist": "normal", "mean": 20, "sd": 5}
    rows = []
    t, sol = timed(lambda: clark_scarf(lead, echelon_h, 30.0, demand))
    rows.append(("Clark-Scarf, 6-stage serial, normal demand", t, f"cost {sol.expected_cost:.4f}", "< 0.2 s"))
    t, sol = timed(lambda: shang_song(lead, echelon_h, 30.0, demand))
    rows.append(("Shang-Song, same chain", t, f"cost {sol.expected_cost:.4f}", ""))
    inst = random_tree(50)
    t, sol = timed(lambda: optimize_gsm(**inst))
    rows.append(("GSM dynamic program, 50-node tree", t, f"safety-stock cost {sol.expected_cost:.2f}", "< 1 s"))
    t, report = timed(
        lambda: run_baselines(
            "distribution",
            periods=5000,
            replications=10,
            include=("local", "optimised_installation", "optimised_echelon"),
        ),
        repeat=1,
    )
    costs = ", ".join(f"{b.name} {ev.cost_mean:.2f}" for b, ev in report.results)
    rows.append(("search + evaluation, distribution scenario", t, costs, "a few minutes"))
    width = max(len(r[0]) for r in rows)
    print(f"{'task':<{width}}  {'seconds':>9}  {'target':<14} result")
    for name, secs, result, target in rows:
        print(f"{name:<{width}}  {secs:>9.3f}  {target:<14} {result}")


if __name__ == "__main__":
    main()
