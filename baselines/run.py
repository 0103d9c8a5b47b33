"""Every baseline that applies to a scenario, evaluated alike on common random numbers.

Order: the analytic policies (Clark-Scarf, Shang-Song, the guaranteed-service model) where their
assumptions hold, the local
heuristic for any network, then the simulation-optimised installation and echelon policies,
warm-started from the best analytic levels available. Each is then simulated on the same seeds
(``seed, seed+1, ...``), which the search never saw.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from baselines.analytic import clark_scarf_baseline, gsm_baseline, shang_song_baseline
from baselines.base import Baseline, NotApplicable
from baselines.search import SEARCH_SEED, local_levels, optimise_base_stock, optimise_s_S, optimise_service_target
from envs.metrics import Evaluation, evaluate
from envs.policies import primary_slots
from envs.scenario import Scenario, load_scenario
from envs.simulator import Simulator
from envs.topology import compile_topology

#: Names ``meio baselines --json`` uses, in the order they are computed.
BASELINE_NAMES = ("clark_scarf", "shang_song", "gsm", "local", "optimised_installation", "optimised_echelon",
                  "optimised_s_S", "service_target")


@dataclass
class BaselineReport:
    """Baselines found for one scenario, their simulations, and those skipped with the reason."""

    scenario: str
    results: list[tuple[Baseline, Evaluation]] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for b, ev in self.results:
            out[b.name] = {
                "kind": b.kind,
                "levels": b.levels,
                **({"reorder_points": b.extra["reorder_points"]} if "reorder_points" in b.extra else {}),
                "expected_cost": b.expected_cost,
                "simulated_cost": {"mean": ev.cost_mean, "ci95": ev.cost_ci95, "ci_method": ev.ci_method},
                "cost_split": ev.cost_split,
                "fill_rate": ev.fill_rate,
                "notes": b.notes,
            }
        out["skipped"] = dict(self.skipped)
        return out

    def format(self) -> str:
        lines = [f"baselines for {self.scenario}"]
        for b, ev in self.results:
            exp = f"{b.expected_cost:.4f}" if b.expected_cost is not None else "-"
            lines.append(f"  {b.name:<24} {b.kind:<12} expected {exp:>10}   simulated {ev.cost_mean:.4f} "
                         f"+- {ev.cost_ci95:.4f}   fill rate {ev.fill_rate['network']:.4f}")
            lines.append("      levels: " + ", ".join(f"{k}={v:.4g}" for k, v in b.levels.items()))
            if "reorder_points" in b.extra:
                lines.append("      reorder points: " + ", ".join(f"{k}={v:.4g}" for k, v in b.extra["reorder_points"].items()))
        for name, why in self.skipped.items():
            lines.append(f"  {name:<24} skipped: {why}")
        return "\n".join(lines)


def echelon_from_local(scenario: Scenario, local: dict[str, float]) -> dict[str, float]:
    """Echelon levels that sum the installation levels of each node's echelon."""
    topo = compile_topology(scenario)
    vec = np.array([local[n] for n in topo.node_names])
    return {n: float(v) for n, v in zip(topo.node_names, topo.descendants() @ vec)}


def run_baselines(scenario: str | Path | Scenario, periods: int = 10_000, warmup: int = 200,
                  replications: int = 10, seed: int = 0, search_periods: int = 1000,
                  search_replications: int = 8, include: tuple[str, ...] = BASELINE_NAMES,
                  progress: bool = False) -> BaselineReport:
    """Compute and simulate every applicable baseline in ``include``."""
    unknown = [n for n in include if n not in BASELINE_NAMES]
    if unknown:
        raise ValueError(f"include: {unknown[0]!r} is not a baseline; choose from {', '.join(BASELINE_NAMES)}")
    sc = load_scenario(scenario)
    report = BaselineReport(scenario=sc.name)
    found: dict[str, Baseline] = {}
    analytic: dict[str, Callable[[Scenario], Baseline]] = {
        "clark_scarf": clark_scarf_baseline, "shang_song": shang_song_baseline,
        "gsm": gsm_baseline, "local": local_levels,
    }
    for name, fn in analytic.items():
        if name not in include:
            continue
        try:
            found[name] = fn(sc)
        except NotApplicable as why:
            report.skipped[name] = str(why)
    topo = compile_topology(sc)
    several = topo.node_with_several_suppliers()
    local = found.get("local") or local_levels(sc)
    cs = found.get("clark_scarf")
    starts = {
        "optimised_installation": ("installation", cs.extra["local_levels"] if cs else local.levels),
        "optimised_echelon": ("echelon", cs.levels if cs else echelon_from_local(sc, local.levels)),
    }
    for name, (kind, start) in starts.items():
        if name not in include:
            continue
        if kind == "echelon" and several is not None:
            report.skipped[name] = f"node {several!r} has several suppliers; echelon positions need one per node"
            continue
        found[name], _ = optimise_base_stock(sc, kind, start, periods=search_periods, warmup=warmup,
                                             replications=search_replications, seed=SEARCH_SEED,
                                             name=name, progress=progress)
    start = (found.get("optimised_installation") or local).levels
    if "optimised_s_S" in include:
        if (topo.slot_fixed_cost[primary_slots(topo)] > 0).any():
            found["optimised_s_S"], _ = optimise_s_S(sc, start, periods=search_periods, warmup=warmup,
                                                     replications=search_replications, progress=progress)
        else:
            report.skipped["optimised_s_S"] = ("no lane a node orders on has a fixed ordering cost; "
                                               "base-stock policies suffice")
    if "service_target" in include:
        without = [n.id for n in sc.demand_nodes if n.service_target is None]
        if without:
            report.skipped["service_target"] = f"demand node {without[0]!r} has no service_target"
        else:
            found["service_target"], _ = optimise_service_target(sc, local.levels, periods=search_periods,
                                                                 warmup=warmup, replications=search_replications,
                                                                 progress=progress)
    sim = Simulator(sc, n=replications, chunk=min(warmup + periods, 128))
    for name in include:
        if name in found:
            b = found[name]
            report.results.append((b, evaluate(sim, b.policy(sim.topology), periods=periods, warmup=warmup,
                                               replications=replications, seed=seed, progress=progress)))
    return report
