"""Clark-Scarf checked in the simulator, on every shipped serial scenario it applies to.

For each scenario: the analytic expected cost of the optimal echelon base-stock levels next to the
simulated cost (independent replications, 95% CI); then each level moved by one step (1 unit for
integer demand, 0.5 standard deviation of the per-period demand otherwise), up and down, with the
paired difference to the optimum on common random numbers (95% CI). The optimum should lie inside
its CI and no neighbour should be cheaper beyond noise.

Run: ``.venv/bin/python benchmarks/clark_scarf_check.py [--periods 20000] [--replications 20]``.
"""

from __future__ import annotations

import argparse

import numpy as np

from meio.baselines.analytic import clark_scarf_baseline
from meio.baselines.base import NotApplicable
from meio.baselines.search import simulate_levels
from meio.envs.metrics import mean_ci95
from meio.envs.scenario import list_scenarios, load_scenario
from meio.envs.simulator import Simulator


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--periods", type=int, default=20_000)
    parser.add_argument("--replications", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=500)
    args = parser.parse_args()
    for name in list_scenarios():
        sc = load_scenario(name)
        try:
            cs = clark_scarf_baseline(sc)
        except NotApplicable as why:
            print(f"{name}: skipped ({why})")
            continue
        topo = Simulator(sc).topology
        spec = topo.demand_specs[0]
        step = 1.0 if spec.is_integer else 0.5 * spec.base_sd()
        x = np.array([cs.levels[n] for n in topo.node_names])
        cands = [x]
        labels = ["optimum"]
        for j, node in enumerate(topo.node_names):
            for d in (-step, step):
                cands.append(x + d * np.eye(len(x))[j])
                labels.append(f"{node} {d:+g}")
        costs = simulate_levels(sc, np.array(cands), "echelon", args.periods, args.warmup, args.replications, seed=0)
        mean, ci = mean_ci95(costs[0])
        inside = abs(mean - cs.expected_cost) <= ci
        print(f"\n{name}: Clark-Scarf echelon levels " + ", ".join(f"{k}={v:.4g}" for k, v in cs.levels.items()))
        print(
            f"  analytic {cs.expected_cost:.4f}   simulated {mean:.4f} +- {ci:.4f} "
            f"({args.replications} x {args.periods} periods)   {'inside' if inside else 'OUTSIDE'} the CI"
        )
        print(f"  {'levels':<22}{'cost':>10}{'paired diff':>14}{'ci95':>10}  verdict")
        for label, row in zip(labels[1:], costs[1:]):
            d_mean, d_ci = mean_ci95(row - costs[0])
            verdict = (
                "cheaper beyond noise" if d_mean + d_ci < 0 else ("dearer" if d_mean - d_ci > 0 else "within noise")
            )
            print(f"  {label:<22}{row.mean():>10.4f}{d_mean:>14.4f}{d_ci:>10.4f}  {verdict}")


if __name__ == "__main__":
    main()
