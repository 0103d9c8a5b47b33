"""Long-run stability of learned policies: each replication's cost over a long window, its spread, drift.

A learned policy can be fine over the short evaluations of training and run away over a long run:
some replications wander into states the training episodes never visited and stay there. This
script evaluates saved agents over ``--replications x --periods`` periods from the scenario's start
(after ``--warmup`` periods) and prints, per agent, the mean cost, the median and worst
replication, the spread ``max_r c_r / median_r c_r - 1`` (:func:`meio.envs.metrics.replication_spread`),
the replications the drift rule flags (:func:`meio.envs.metrics.drifting_replications`), the fill
rate and the gap to the scenario's reference policy (:func:`meio.baselines.run.reference_baseline`,
Clark-Scarf where it applies) on the same seeds (common random numbers). The target of
``docs/agents.md`` ("Long-run stability") is a spread of at most 2%.

Run::

    .venv/bin/python benchmarks/drift.py --scenario beer_game_basic --runs runs/a runs/b [--agents best,final]
    .venv/bin/python benchmarks/drift.py --scenario beer_game_basic --train default --steps 1000000 --out runs/drift

``--train`` first trains one run per config (``meio train`` with ``--threads 1``) into ``--out``
and then measures those runs.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from meio.agents.config import load_config
from meio.agents.policy import load_agent
from meio.agents.train import train
from meio.baselines.run import reference_baseline
from meio.envs.metrics import DRIFT_TOL, Evaluation, evaluate
from meio.envs.resolve import resolve


def _row(name: str, ev: Evaluation, reference: float | None, seconds: float) -> str:
    costs = ev.replication_costs
    gap = f"{100 * (ev.cost_mean - reference) / reference:+9.2f}%" if reference else f"{'-':>10}"
    drift = ",".join(str(ev.seed + r) for r in ev.drifting) or "-"
    return (
        f"{name:<34} {ev.cost_mean:9.4f} {ev.cost_ci95:8.4f} {np.median(costs):9.4f} {costs.max():9.4f} "
        f"{100 * ev.spread:8.2f}% {drift:>10} {ev.fill_rate['network']:6.3f} {gap} {seconds:7.0f}"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--scenario", required=True, help="shipped scenario name or YAML path")
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

    topo = resolve(args.scenario)
    runs = [Path(r) for r in args.runs]
    for config in args.train:
        cfg = load_config(config)
        if args.steps is not None:
            cfg = cfg.replace(total_steps=args.steps)
        run = args.out / f"{topo.scenario.name}-{Path(config).stem}-seed{args.seed}"
        result = train(topo, cfg, run, seed=args.seed, progress=False, threads=1)
        print(f"trained {run}: {result.steps:,} steps in {result.seconds:.0f} s", flush=True)
        runs.append(run)

    settings = dict(periods=args.periods, warmup=args.warmup, replications=args.replications, seed=args.eval_seed)
    print(
        f"{topo.scenario.name}: {args.replications} x {args.periods:,} periods after {args.warmup} warm-up, "
        f"seeds {args.eval_seed}..{args.eval_seed + args.replications - 1}; target spread <= "
        f"{100 * DRIFT_TOL:.0f}%",
        flush=True,
    )
    header = (
        f"{'policy':<34} {'cost':>9} {'ci95':>8} {'median r':>9} {'worst r':>9} {'spread':>9} "
        f"{'drifting':>10} {'fill':>6} {'gap':>10} {'seconds':>7}"
    )
    lines = [header, "-" * len(header)]
    reference = None
    if not args.no_reference:
        started = time.perf_counter()
        found = reference_baseline(topo, **settings)
        if found is not None:
            base, ev = found
            reference = ev.cost_mean
            lines.append(_row(base.name, ev, None, time.perf_counter() - started))
            print(lines[-1], flush=True)
    per_replication = []
    for run in runs:
        for agent in args.agents.split(","):
            folder = run / agent if (run / agent).is_dir() else run
            started = time.perf_counter()
            ev = evaluate(topo, load_agent(folder), **settings)
            name = f"{run.name}/{agent}"
            lines.append(_row(name, ev, reference, time.perf_counter() - started))
            print(lines[-1], flush=True)
            per_replication.append(f"{name:<34} " + " ".join(f"{c:8.3f}" for c in ev.replication_costs))
    print("\n".join(["", *lines, "", "cost per replication:", *per_replication]))


if __name__ == "__main__":
    main()
