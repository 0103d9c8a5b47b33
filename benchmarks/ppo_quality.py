"""PPO solution quality: train with the shipped config, then compare with the best baseline on CRN.

Per scenario (``ex61``, ``distribution``, ``lost_sales``):

1. train PPO with the shipped config (``default`` for ``ex61``, ``configs/ppo/<scenario>.yaml``
   for the others, or ``--config``; its full ``total_steps`` unless ``--quick`` runs a short smoke
   test instead) and print the learning curve read from the run's
   ``evaluations.csv`` (env steps, wall seconds, evaluation cost +- CI, gap to the run's reference);
2. evaluate the saved agent (``best/``, which ``meio evaluate`` uses, and ``final/``) on
   ``--replications x --periods`` periods (default 10 x 10,000 = 100,000) on common random numbers
   against the run's reference policy (:func:`meio.baselines.run.reference_baseline`, as training
   uses): Clark-Scarf on ``ex61`` (exact for serial chains), elsewhere the cheapest stable local or
   simulation-optimised policy, sourcing families included;
3. print the paired difference PPO - reference (per-replication means, Student-t 95% CI) and a
   verdict (``ex61``: is PPO within 2% of the optimum?).

Run: ``.venv/bin/python benchmarks/ppo_quality.py [--scenarios ex61,distribution,lost_sales] [--quick]``.
"""

from __future__ import annotations

import argparse
import csv
import time
from pathlib import Path

import torch

from meio.agents.config import load_config
from meio.agents.policy import MODEL_FILE, PPOPolicy
from meio.agents.train import train
from meio.baselines.run import REFERENCE_CANDIDATES, reference_baseline
from meio.envs.metrics import Evaluation, evaluate, mean_ci95
from meio.envs.simulator import Simulator

SCENARIOS = ("ex61", "distribution", "lost_sales")
#: Gap to the reference (percent of its cost) that counts as "matches it" in the verdict.
TOLERANCE_PCT = 2.0
QUICK_STEPS = 60_000


def reference(scenario: str, periods: int, warmup: int, replications: int, seed: int) -> tuple[str, Evaluation]:
    """The run's reference policy (:func:`meio.baselines.run.reference_baseline`) and its evaluation."""
    found = reference_baseline(scenario, periods=periods, warmup=warmup, replications=replications, seed=seed)
    if found is None:
        raise ValueError(
            f"scenario {scenario}: no reference baseline applies (clark_scarf and "
            f"{', '.join(REFERENCE_CANDIDATES)} are skipped or unstable)"
        )
    b, ev = found
    return b.name, ev


def paired(agent: Evaluation, ref: Evaluation) -> tuple[float, float]:
    """Mean and 95% CI half-width of agent - reference, over per-replication means (CRN)."""
    diff = agent.per_period_cost.mean(axis=1) - ref.per_period_cost.mean(axis=1)
    return mean_ci95(diff)


def learning_curve(run_dir: Path) -> None:
    path = run_dir / "evaluations.csv"
    if not path.is_file():
        print("  (no evaluations.csv)")
        return
    print(f"  {'env steps':>10} {'wall s':>8} {'eval cost':>10} {'ci95':>7} {'reference':>10} {'gap %':>8}")
    with path.open() as fh:
        for row in csv.DictReader(fh):
            gap = f"{float(row['gap_pct']):+8.2f}" if row["gap_pct"] not in ("", "None") else f"{'-':>8}"
            ref = f"{float(row['baseline_cost']):10.4f}" if row["baseline_cost"] not in ("", "None") else f"{'-':>10}"
            print(
                f"  {int(row['steps']):>10,} {float(row['seconds']):>8.1f} {float(row['cost']):>10.4f} "
                f"{float(row['cost_ci95']):>7.4f} {ref} {gap}"
            )


def run_scenario(scenario: str, args: argparse.Namespace) -> dict:
    config = args.config or ("default" if scenario == "ex61" else scenario)
    cfg = load_config(config)
    if args.quick:
        cfg = cfg.replace(total_steps=QUICK_STEPS, eval_every=QUICK_STEPS // 3, checkpoint_every=0)
    if args.total_steps:
        cfg = cfg.replace(total_steps=args.total_steps)
    run_dir = Path(args.out) / f"{scenario}-seed{args.seed}-{time.strftime('%Y%m%d-%H%M%S')}"
    print(
        f"\n=== {scenario}: config {config}, {cfg.total_steps:,} env steps, seed {args.seed}, run folder {run_dir}",
        flush=True,
    )
    result = train(scenario, cfg, run_dir, seed=args.seed, progress=False)
    print(
        f"  trained {result.steps:,} steps in {result.seconds:.0f} s "
        f"({result.steps / result.seconds:,.0f} steps/s); run reference {result.baseline_name} "
        f"{result.baseline_cost if result.baseline_cost is None else round(result.baseline_cost, 4)}"
    )
    learning_curve(run_dir)

    p, w, r, s = args.periods, args.warmup, args.replications, args.eval_seed
    sim = Simulator(scenario, n=r)
    ref_name, ref = reference(scenario, p, w, r, s)
    print(f"  long-run evaluation: {r} replications x {p:,} periods (+{w} warm-up), seeds {s}..{s + r - 1}, CRN")
    print(f"  {'policy':<34} {'cost/period':>12} {'ci95':>7} {'PPO - ref':>10} {'ci95':>7} {'gap %':>8}")
    print(f"  {'reference ' + ref_name:<34} {ref.cost_mean:>12.4f} {ref.cost_ci95:>7.4f}")
    out = {"scenario": scenario, "reference": ref_name, "reference_cost": ref.cost_mean}
    for sub in ("best", "final"):
        folder = run_dir / sub
        if not (folder / MODEL_FILE).is_file():
            continue
        agent = PPOPolicy.load(folder, name=f"ppo:{sub}")
        label = f"PPO {sub}/"
        ev = evaluate(sim, agent, periods=p, warmup=w, replications=r, seed=s)
        d, dci = paired(ev, ref)
        gap = 100.0 * d / ref.cost_mean
        print(f"  {label:<34} {ev.cost_mean:>12.4f} {ev.cost_ci95:>7.4f} {d:>+10.4f} {dci:>7.4f} {gap:>+8.2f}")
        out[label] = (ev.cost_mean, d, dci, gap)
    best = out.get("PPO best/") or out.get("PPO final/")
    d, dci, gap = best[1], best[2], best[3]
    if scenario == "ex61":
        ok = gap <= TOLERANCE_PCT
        verdict = (
            f"{'PASS' if ok else 'FAIL'}: PPO is {gap:+.2f}% from the Clark-Scarf optimum "
            f"(target within {TOLERANCE_PCT:g}%; paired diff {d:+.4f} +- {dci:.4f})"
        )
    else:
        if d + dci < 0:
            word = "BEATS"
        elif d - dci > 0:
            word = "LOSES TO"
        else:
            word = "TIES WITH"
        verdict = (
            f"PPO {word} {ref_name}: {gap:+.2f}% (paired diff {d:+.4f} +- {dci:.4f}; "
            f"within {TOLERANCE_PCT:g}%: {'yes' if gap <= TOLERANCE_PCT else 'no'})"
        )
    print(f"  verdict ({scenario}, agent best/ as meio evaluate runs it): {verdict}", flush=True)
    out["verdict"] = verdict
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--scenarios", default=",".join(SCENARIOS), help="comma-separated scenarios (default: all three)"
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"smoke test: {QUICK_STEPS:,} training steps instead of the config's budget",
    )
    parser.add_argument(
        "--config",
        default=None,
        help="shipped config name or YAML path (default: 'default' for ex61, else the scenario's shipped config)",
    )
    parser.add_argument("--total-steps", type=int, default=None, help="override the config's total_steps")
    parser.add_argument("--seed", type=int, default=0, help="training seed")
    parser.add_argument("--periods", type=int, default=10_000)
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--replications", type=int, default=10)
    parser.add_argument("--eval-seed", type=int, default=0, help="first seed of the long-run evaluation")
    parser.add_argument("--out", default="runs/ppo_quality", help="parent folder of the run folders")
    args = parser.parse_args()
    torch.set_num_threads(1)
    scenarios = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    for s in scenarios:
        if s not in SCENARIOS:
            parser.error(f"--scenarios: {s!r} is not one of {', '.join(SCENARIOS)}")
    results = [run_scenario(s, args) for s in scenarios]
    print("\nsummary")
    for res in results:
        print(f"  {res['scenario']:<13} {res['verdict']}")


if __name__ == "__main__":
    main()
