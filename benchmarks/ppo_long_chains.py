"""PPO on long serial pipelines: train candidates of the PPO config, compare with Clark-Scarf on CRN.

For each scenario (default: the serial target set ``ex61``, ``serial4``, ``beer_game_basic``,
``serial3_long``) and each candidate (a config plus overrides, see ``CANDIDATES``), this

1. trains PPO (:func:`meio.agents.train.train`) and records the training's wall time and the
   process's CPU time (``time.process_time``: every thread of this process, so with
   ``--threads 1`` and ``NUMBA_NUM_THREADS=1`` the cost on a shared machine);
2. evaluates the saved ``best/`` agent (the one ``meio evaluate`` uses) on ``--replications x
   --periods`` periods (default 10 x 100,000) after ``--warmup`` periods, seeds ``0..R-1``, and the
   run's reference policy (:func:`meio.baselines.run.reference_baseline`: Clark-Scarf on a serial
   chain with backorders) on the same seeds (common random numbers);
3. prints, per scenario and candidate, both costs, the paired gap ``PPO - reference`` in percent of
   the reference's cost with its Student-t 95% CI over the replications, and the time;
4. with ``--diagnose``, the mean and standard deviation of each stage's echelon position right after
   ordering (the echelon order-up-to level the agent acts as) against Clark-Scarf's levels ``S^e_j``
   (Clark & Scarf 1960), over the first 5,000 periods of the first replication.

Candidates: ``installation`` (the config as given), ``echelon`` (``action_mode:
echelon_order_up_to``), ``residual`` (``action_mode: base_stock_residual``), and ``NAME=KEY:VALUE;...``
for any other set of overrides on the config (values are YAML). ``--set KEY=VALUE`` overrides every
candidate's config.

Run: ``NUMBA_NUM_THREADS=1 .venv/bin/python benchmarks/ppo_long_chains.py --scenarios beer_game_basic
--candidates installation,echelon,residual --total-steps 1000000 --periods 20000``.
"""

from __future__ import annotations

import argparse
import csv
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from meio.agents.config import PPOConfig, load_config
from meio.agents.policy import MODEL_FILE, PPOPolicy
from meio.agents.train import train
from meio.baselines.run import reference_baseline
from meio.envs.metrics import Evaluation, evaluate, mean_ci95
from meio.envs.resolve import resolve
from meio.envs.simulator import Simulator

SCENARIOS = ("ex61", "serial4", "beer_game_basic", "serial3_long")
#: Built-in candidates: overrides on the config.
CANDIDATES: dict[str, dict[str, Any]] = {
    "installation": {},
    "echelon": {"action_mode": "echelon_order_up_to"},
    "residual": {"action_mode": "base_stock_residual"},
}


def parse_candidate(text: str) -> tuple[str, dict[str, Any]]:
    """``installation`` / ``echelon`` / ``residual`` or ``NAME=KEY:VALUE;KEY:VALUE`` (values YAML)."""
    if "=" not in text:
        if text not in CANDIDATES:
            raise ValueError(f"--candidates: {text!r} is not one of {', '.join(CANDIDATES)} nor NAME=KEY:VALUE;...")
        return text, dict(CANDIDATES[text])
    name, spec = text.split("=", 1)
    changes: dict[str, Any] = {}
    for item in filter(None, (x.strip() for x in spec.split(";"))):
        if ":" not in item:
            raise ValueError(f"--candidates: {item!r} in {text!r} is not KEY:VALUE")
        key, value = item.split(":", 1)
        changes[key.strip()] = yaml.safe_load(value)
    return name.strip(), changes


def paired_gap(agent: Evaluation, ref: Evaluation) -> tuple[float, float]:
    """Gap ``100 (PPO - ref) / ref`` and its 95% CI half-width over per-replication means (CRN)."""
    diff = agent.per_period_cost.mean(axis=1) - ref.per_period_cost.mean(axis=1)
    d, ci = mean_ci95(diff)
    return 100.0 * d / ref.cost_mean, 100.0 * ci / ref.cost_mean


def echelon_targets(scenario: str, policy: PPOPolicy, periods: int, warmup: int, seed: int) -> np.ndarray:
    """``(periods, N)`` echelon position of every node right after the period's orders (one row)."""
    sim = Simulator(scenario, n=1)
    sim.reset(seeds=seed)
    topo = sim.topology
    out = np.zeros((periods, topo.n_nodes))
    for t in range(warmup + periods):
        orders = policy.act(sim)
        if t >= warmup:
            by_node = np.zeros(topo.n_nodes)
            np.add.at(by_node, topo.slot_dst, orders[0])
            out[t - warmup] = sim.echelon_positions()[0] + by_node
        sim.step(orders)
    return out


def run_one(scenario: str, name: str, cfg: PPOConfig, args: argparse.Namespace, ref: Any) -> dict[str, Any]:
    run_dir = Path(args.out) / f"{scenario}-{name}-seed{args.seed}-{time.strftime('%Y%m%d-%H%M%S')}"
    print(f"\n=== {scenario} / {name}: {cfg.total_steps:,} steps, seed {args.seed}, {run_dir}", flush=True)
    wall0, cpu0 = time.perf_counter(), time.process_time()
    result = train(scenario, cfg, run_dir, seed=args.seed, progress=False)
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    print(f"  trained {result.steps:,} steps: {wall:.0f} s wall, {cpu:.0f} s CPU", flush=True)
    folder = run_dir / "best"
    if not (folder / MODEL_FILE).is_file():
        folder = run_dir / "final"
    agent = PPOPolicy.load(folder, name=f"ppo:{name}")
    b, ref_ev = ref
    r = args.replications
    ev = evaluate(Simulator(scenario, n=r), agent, periods=args.periods, warmup=args.warmup, replications=r, seed=0)
    gap, ci = paired_gap(ev, ref_ev)
    row = {
        "scenario": scenario,
        "candidate": name,
        "steps": result.steps,
        "ppo": ev.cost_mean,
        "reference": ref_ev.cost_mean,
        "reference_name": b.name,
        "gap_pct": gap,
        "gap_ci95": ci,
        "wall_s": wall,
        "cpu_s": cpu,
        "run_dir": str(run_dir),
    }
    print(
        f"  {folder.name}/ {ev.cost_mean:.4f} vs {b.name} {ref_ev.cost_mean:.4f}: {gap:+.2f}% +- {ci:.2f}%", flush=True
    )
    if args.diagnose:
        topo = resolve(scenario)
        e = echelon_targets(scenario, agent, min(args.periods, 5_000), args.warmup, 0)
        levels = b.levels if b.kind == "echelon" else {}
        for j, node in enumerate(topo.node_names):
            opt = f"{levels[node]:.2f}" if node in levels else "-"
            print(
                f"    {node:<14} echelon position after ordering {e[:, j].mean():8.2f} +- sd {e[:, j].std():6.2f} "
                f"(S^e {opt})"
            )
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scenarios", default=",".join(SCENARIOS), help="comma-separated scenarios")
    parser.add_argument("--candidates", default="installation,echelon,residual", help="comma-separated candidates")
    parser.add_argument("--config", default="default", help="base config: shipped name or YAML path")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override for every candidate")
    parser.add_argument("--total-steps", type=int, default=None, help="override total_steps")
    parser.add_argument("--seed", type=int, default=0, help="training seed")
    parser.add_argument("--periods", type=int, default=100_000)
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--replications", type=int, default=10)
    parser.add_argument("--threads", type=int, default=1, help="threads of the batched step (and of PyTorch)")
    parser.add_argument("--diagnose", action="store_true", help="print the agent's echelon levels per stage")
    parser.add_argument("--out", default="runs/ppo_long_chains", help="parent folder of the run folders")
    parser.add_argument("--csv", default=None, help="append the table's rows to this CSV file")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    base = load_config(args.config)
    common: dict[str, Any] = {"threads": args.threads, "torch_threads": args.threads}
    for item in args.set:
        if "=" not in item:
            parser.error(f"--set: {item!r} is not KEY=VALUE")
        key, value = item.split("=", 1)
        common[key.strip()] = yaml.safe_load(value)
    if args.total_steps:
        common["total_steps"] = args.total_steps
    try:
        candidates = [parse_candidate(c.strip()) for c in args.candidates.split(",") if c.strip()]
    except ValueError as exc:
        parser.error(str(exc))
    rows = []
    for scenario in (s.strip() for s in args.scenarios.split(",") if s.strip()):
        found = reference_baseline(scenario, periods=args.periods, warmup=args.warmup, replications=args.replications)
        if found is None:
            print(f"{scenario}: no reference baseline applies; skipped")
            continue
        for name, changes in candidates:
            cfg = base.from_dict({**base.to_dict(), **common, **changes})
            rows.append(run_one(scenario, name, cfg, args, found))
    print(
        f"\n{'scenario':<16} {'candidate':<14} {'steps':>9} {'PPO best/':>10} {'Clark-Scarf':>11} "
        f"{'gap %':>7} {'ci95':>6} {'wall s':>7} {'CPU s':>6}"
    )
    for r in rows:
        print(
            f"{r['scenario']:<16} {r['candidate']:<14} {r['steps']:>9,} {r['ppo']:>10.4f} {r['reference']:>11.4f} "
            f"{r['gap_pct']:>+7.2f} {r['gap_ci95']:>6.2f} {r['wall_s']:>7.0f} {r['cpu_s']:>6.0f}"
        )
    print(
        f"({args.replications} x {args.periods:,} periods after {args.warmup} warm-up, "
        f"seeds 0..{args.replications - 1}, CRN)"
    )
    if args.csv and rows:
        path = Path(args.csv)
        new = not path.exists()
        with path.open("a", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=list(rows[0]))
            if new:
                w.writeheader()
            w.writerows(rows)


if __name__ == "__main__":
    main()
