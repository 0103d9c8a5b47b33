"""Long-run stability of learned policies: each replication's cost over a long window, its spread,
its paired spread against the reference, its trend, drift.

A learned policy can be fine over the short evaluations of training and run away over a long run:
some replications (or all of them) wander into states the training episodes never visited and stay
there. This script evaluates saved agents over ``--replications x --periods`` periods from the
scenario's start (after ``--warmup`` periods) and prints, per policy, the mean cost, the median and
worst replication, the spread ``max_r c_r / median_r c_r - 1``
(:func:`meio.envs.metrics.replication_spread`), the paired spread ``max_r rho_r / median_r rho_r - 1``
of the ratios ``rho_r = c_r / b_r`` to the scenario's reference policy ``b``
(:func:`meio.baselines.run.reference_baseline`, Clark-Scarf where it applies) on the same seeds
(:func:`meio.envs.metrics.paired_spread`), the largest rise from the window's first to its last
quarter (:func:`meio.envs.metrics.replication_trends`), the seeds the trend rule and the drift rule
(:func:`meio.envs.metrics.drifting_replications`) flag, the fill rate, the gap to the reference and
the verdict of the stability criterion (no replication over 2% above the median both in cost and in
paired ratio, none trending, none drifting: :func:`meio.envs.metrics.long_run_problems`;
docs/agents.md, "Drift and long runs").

Run::

    .venv/bin/python benchmarks/drift.py --scenario beer_game_basic --runs runs/a runs/b [--agents best,final]
    .venv/bin/python benchmarks/drift.py --scenario beer_game_basic --train default --steps 1000000 --out runs/drift
    .venv/bin/python benchmarks/drift.py --scenario all      # the references alone, every shipped scenario

``--train`` first trains one run per config (``meio train`` with ``--threads 1``) into ``--out``
and then measures those runs. ``--scenario`` takes several names (``all``: every shipped scenario);
runs are measured on each.
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import numpy as np

from meio.agents.config import load_config
from meio.agents.policy import load_agent
from meio.agents.train import train
from meio.baselines.run import reference_baseline
from meio.envs.metrics import PAIRED_TOL, TREND_TOL, TREND_Z, Evaluation, evaluate, long_run_problems
from meio.envs.resolve import resolve
from meio.envs.scenario import list_scenarios

HEADER = (
    f"{'scenario':<22} {'policy':<30} {'cost':>9} {'ci95':>8} {'median r':>9} {'worst r':>9} {'spread':>8} "
    f"{'paired':>8} {'trend':>8} {'trending':>9} {'drifting':>9} {'fill':>6} {'gap':>9} {'verdict':>8} {'s':>5}"
)


def _row(scenario: str, name: str, ev: Evaluation, reference: Evaluation | None, seconds: float) -> str:
    costs = ev.replication_costs
    paired = f"{100 * ev.paired_spread(reference)[0]:7.2f}%" if reference is not None else f"{'-':>8}"
    gap = f"{100 * (ev.cost_mean - reference.cost_mean) / reference.cost_mean:+8.2f}%" if reference else f"{'-':>9}"
    rises = ev.trends
    trend = f"{100 * np.nanmax(rises):+7.2f}%" if not np.isnan(rises).all() else f"{'-':>8}"
    trending = ",".join(str(ev.seed + r) for r in ev.trending) or "-"
    drift = ",".join(str(ev.seed + r) for r in ev.drifting) or "-"
    verdict = "stable" if not long_run_problems(ev, reference) else "UNSTABLE"
    return (
        f"{scenario:<22} {name:<30} {ev.cost_mean:9.4f} {ev.cost_ci95:8.4f} {np.median(costs):9.4f} "
        f"{costs.max():9.4f} {100 * ev.spread:7.2f}% {paired} {trend} {trending:>9} {drift:>9} "
        f"{ev.fill_rate['network']:6.3f} {gap} {verdict:>8} {seconds:5.0f}"
    )


def _detail(name: str, ev: Evaluation, reference: Evaluation | None) -> list[str]:
    """Per replication: the cost, the paired ratio and the first-to-last-quarter rise."""
    ratios = ev.paired_spread(reference)[1] if reference is not None else np.full(ev.replications, math.nan)
    return [
        f"{name}: cost " + " ".join(f"{c:8.3f}" for c in ev.replication_costs),
        f"{'':>{len(name)}}  ratio" + " ".join(f"{x:8.4f}" for x in ratios),
        f"{'':>{len(name)}}  rise%" + " ".join(f"{100 * x:+8.2f}" for x in ev.trends),
    ]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--scenario", nargs="+", required=True, help="shipped scenario names or YAML paths; all: every one")
    ap.add_argument("--runs", nargs="*", default=[], help="run folders (or saved agent folders) to measure")
    ap.add_argument("--agents", default="best", help="comma-separated saved agents of each run: best, final")
    ap.add_argument("--train", nargs="*", default=[], help="configs to train first (shipped names or YAML paths)")
    ap.add_argument("--steps", type=int, default=None, help="total env steps of each --train run")
    ap.add_argument("--seed", type=int, default=0, help="training seed of --train runs (default 0)")
    ap.add_argument("--out", type=Path, default=Path("runs/drift"), help="folder of the --train runs")
    ap.add_argument("--periods", type=int, default=100_000, help="periods per replication (default 100,000)")
    ap.add_argument("--replications", type=int, default=10, help="replications (default 10)")
    ap.add_argument("--warmup", type=int, default=100, help="periods dropped at the start (default 100)")
    ap.add_argument("--eval-seed", type=int, default=0, help="seed of the first replication (default 0)")
    ap.add_argument("--no-reference", action="store_true", help="skip the reference policy")
    args = ap.parse_args()

    names = list_scenarios() if args.scenario == ["all"] else args.scenario
    settings = dict(periods=args.periods, warmup=args.warmup, replications=args.replications, seed=args.eval_seed)
    print(
        f"{args.replications} x {args.periods:,} periods after {args.warmup} warm-up, seeds "
        f"{args.eval_seed}..{args.eval_seed + args.replications - 1}; stable: no replication over "
        f"{100 * PAIRED_TOL:.0f}% above the median in cost and in ratio, no trending replication "
        f"(last vs first quarter > {100 * TREND_TOL:.0f}% + "
        f"{TREND_Z:g} se), no drifting one",
        flush=True,
    )
    print(HEADER, "\n" + "-" * len(HEADER), flush=True)
    lines, details = [], []
    for scenario in names:
        topo = resolve(scenario)
        sc = topo.scenario.name
        runs = [Path(r) for r in args.runs]
        for config in args.train:
            cfg = load_config(config)
            if args.steps is not None:
                cfg = cfg.replace(total_steps=args.steps)
            run = args.out / f"{sc}-{Path(config).stem}-seed{args.seed}"
            result = train(topo, cfg, run, seed=args.seed, progress=False, threads=1)
            print(f"trained {run}: {result.steps:,} steps in {result.seconds:.0f} s", flush=True)
            runs.append(run)
        reference = None
        if not args.no_reference:
            started = time.perf_counter()
            found = reference_baseline(topo, **settings)
            if found is not None:
                base, reference = found
                lines.append(_row(sc, base.name, reference, None, time.perf_counter() - started))
                print(lines[-1], flush=True)
                details += _detail(f"{sc}/{base.name}", reference, None)
        for run in runs:
            for agent in args.agents.split(","):
                folder = run / agent if (run / agent).is_dir() else run
                started = time.perf_counter()
                ev = evaluate(topo, load_agent(folder), **settings)
                name = f"{run.name}/{agent}"
                lines.append(_row(sc, name, ev, reference, time.perf_counter() - started))
                print(lines[-1], flush=True)
                details += _detail(name, ev, reference)
    print("\n".join(["", HEADER, "-" * len(HEADER), *lines, "", "per replication:", *details]))


if __name__ == "__main__":
    main()
