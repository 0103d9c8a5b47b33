"""``meio``: the command line. ``meio COMMAND --help`` describes each command."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Sequence


def _simulate(args: argparse.Namespace) -> int:
    from envs.metrics import evaluate
    from envs.policies import BaseStockPolicy, parse_levels
    from envs.simulator import Simulator

    sim = Simulator(args.scenario, n=args.replications, chunk=min(args.warmup + args.periods, 128))
    if args.policy == "base-stock":
        if not args.levels:
            raise ValueError("--levels: required with --policy base-stock (NODE=LEVEL,...)")
        policy = BaseStockPolicy(sim.topology, parse_levels(args.levels), kind=args.kind)
    else:
        raise ValueError(f"--policy: {args.policy!r} is not supported")
    result = evaluate(sim, policy, periods=args.periods, warmup=args.warmup, replications=args.replications,
                      seed=args.seed, progress=not args.json)
    if args.json:
        payload = result.to_dict()
        payload["policy"] = {"name": policy.name, "kind": policy.kind, "levels": policy.levels}
        print(json.dumps(payload, indent=2))
    else:
        print(result.format())
    return 0


def _baselines(args: argparse.Namespace) -> int:
    from baselines.run import BASELINE_NAMES, run_baselines

    include = tuple(x.strip() for x in args.only.split(",")) if args.only else BASELINE_NAMES
    report = run_baselines(args.scenario, periods=args.periods, warmup=args.warmup,
                           replications=args.replications, seed=args.seed, search_periods=args.search_periods,
                           search_replications=args.search_replications, include=include,
                           progress=not args.json)
    print(json.dumps(report.to_dict(), indent=2) if args.json else report.format())
    return 0


def _train(args: argparse.Namespace) -> int:
    from agents.config import load_config
    from agents.train import train

    cfg = load_config(args.config).replace(total_steps=args.total_steps)
    run_dir = args.run_dir or f"runs/{args.scenario if '/' not in args.scenario else 'scenario'}-ppo-seed{args.seed}"
    result = train(args.scenario, cfg, run_dir, seed=args.seed, resume=args.resume, progress=True)
    gap = ""
    if result.baseline_cost is not None and result.best_eval_cost is not None:
        gap = (f"; best baseline {result.baseline_name} {result.baseline_cost:.4f}, gap "
               f"{100 * (result.best_eval_cost - result.baseline_cost) / result.baseline_cost:+.2f}%")
    best = f"{result.best_eval_cost:.4f}" if result.best_eval_cost is not None else "-"
    print(f"trained {result.steps} steps in {result.seconds:.0f} s; best evaluation cost {best}{gap}")
    print(f"run folder: {result.run_dir} (tensorboard --logdir {result.run_dir / 'tb'})")
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from agents.policy import PPOPolicy, find_saved_agent
    from envs.metrics import evaluate
    from envs.simulator import Simulator

    folder = find_saved_agent(args.model)
    policy = PPOPolicy.load(folder, name=f"ppo:{folder}")
    sim = Simulator(args.scenario, n=args.replications, chunk=min(args.warmup + args.periods, 128))
    result = evaluate(sim, policy, periods=args.periods, warmup=args.warmup, replications=args.replications,
                      seed=args.seed, progress=not args.json)
    print(json.dumps(result.to_dict(), indent=2) if args.json else result.format())
    return 0


def _benchmark(args: argparse.Namespace) -> int:
    import time

    from meio.benchmark import markdown_table, run_benchmark, summary_columns, write_report

    started = time.perf_counter()
    result = run_benchmark(args.scenario, models=args.models or (), periods=args.periods, warmup=args.warmup,
                           replications=args.replications, seed=args.seed, search_periods=args.search_periods,
                           search_replications=args.search_replications, progress=True)
    out = args.out or f"runs/benchmark-{result.scenario.name}"
    files = write_report(result, out, frontier=not args.no_frontier)
    print(markdown_table(summary_columns(result.table)))
    for name, why in result.skipped.items():
        print(f"skipped {name}: {why}")
    print(f"reference: {result.reference}; report: {files['report']} ({time.perf_counter() - started:.0f} s)")
    return 0


def _sweep(args: argparse.Namespace) -> int:
    from meio.benchmark import markdown_table
    from meio.sweep import parse_values, run_sweep, write_sweep

    baselines = tuple(x.strip() for x in args.baselines.split(",")) if args.baselines else None
    kwargs = {"baselines": baselines} if baselines else {}
    result = run_sweep(args.scenario, args.param, parse_values(args.values), models=args.models or (),
                       periods=args.periods, warmup=args.warmup, replications=args.replications, seed=args.seed,
                       progress=True, **kwargs)
    out = args.out or f"runs/sweep-{args.param.replace('/', '_')}"
    files = write_sweep(result, out)
    cols = [c for c in ("value", "policy", "cost_mean", "cost_ci95", "fill_rate") if c in result.table]
    print(markdown_table(result.table[cols]))
    for name, why in result.skipped.items():
        print(f"skipped {name}: {why}")
    print(f"table and plot: {files['md']}, {files['png']}")
    return 0


SCENARIO_HELP = "shipped scenario name (e.g. ex61) or path to a YAML file"


def _evaluation_args(parser: argparse.ArgumentParser, periods: int, warmup: int, replications: int) -> None:
    """--scenario, --periods, --warmup, --replications, --seed: how every command simulates."""
    parser.add_argument("--scenario", required=True, help=SCENARIO_HELP)
    parser.add_argument("--periods", type=int, default=periods,
                        help=f"periods per replication after the warm-up (default {periods})")
    parser.add_argument("--warmup", type=int, default=warmup, help=f"periods discarded at the start (default {warmup})")
    parser.add_argument("--replications", type=int, default=replications,
                        help=f"independent copies, seeds SEED, SEED+1, ... (default {replications})")
    parser.add_argument("--seed", type=int, default=0, help="seed of the first copy (default 0)")


def _search_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--search-periods", type=int, default=1000, help="periods per search replication (default 1000)")
    parser.add_argument("--search-replications", type=int, default=8, help="search replications (default 8)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="meio", description="Multi-echelon inventory optimisation: simulate, optimise and learn policies.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    sim = sub.add_parser(
        "simulate", help="run a scenario under a policy and print its KPIs",
        description="Run a scenario under a policy for --replications independent copies of --periods periods "
                    "(after --warmup) and print cost per period with a 95% confidence interval (over replications, or from 20 batch means with one replication), its split, fill "
                    "rate, cycle service level, mean stock, turnover and order-variance ratio per node.")
    _evaluation_args(sim, periods=10_000, warmup=100, replications=1)
    sim.add_argument("--policy", choices=["base-stock"], default="base-stock", help="policy family (default: base-stock)")
    sim.add_argument("--kind", choices=["installation", "echelon"], default="installation",
                     help="base-stock positions: installation (local) or echelon (default: installation)")
    sim.add_argument("--levels", help="base-stock levels, one per node: NODE=LEVEL,NODE=LEVEL,...")
    sim.add_argument("--json", action="store_true", help="print one JSON object instead of the text report")
    sim.set_defaults(func=_simulate)

    base = sub.add_parser(
        "baselines", help="compute and simulate the classical policies that apply to a scenario",
        description="Compute every applicable baseline (Clark-Scarf and Shang-Song for serial chains with "
                    "backorders, the guaranteed-service model for spanning trees, the local heuristic for any network, simulation-optimised installation and "
                    "echelon base-stock levels), print its levels and analytic cost, and simulate each on the same "
                    "seeds (95% CI over replications). Baselines that do not apply are listed with the reason.")
    _evaluation_args(base, periods=10_000, warmup=200, replications=10)
    _search_args(base)
    base.add_argument("--only", help="comma-separated baseline names to compute (default: all)")
    base.add_argument("--json", action="store_true", help="print one JSON object keyed by baseline name")
    base.set_defaults(func=_baselines)

    tr = sub.add_parser(
        "train", help="train a PPO agent on a scenario (TensorBoard, checkpoints, evaluation)",
        description="Train stable-baselines3 PPO over the batched environment with the hyper-parameters of a "
                    "config (configs/ppo/NAME.yaml or a path). Logs to TensorBoard under RUN_DIR/tb, evaluates on "
                    "fixed seeds against the best applicable baseline, keeps the best model and writes checkpoints; "
                    "--resume continues an interrupted run to the same total.")
    tr.add_argument("--scenario", required=True, help=SCENARIO_HELP)
    tr.add_argument("--config", default="default",
                    help="training config: shipped name (configs/ppo/NAME.yaml) or YAML path (default: default)")
    tr.add_argument("--seed", type=int, default=0, help="seed of PPO and of the first env copy (default 0)")
    tr.add_argument("--total-steps", type=int, help="environment steps in total (overrides the config)")
    tr.add_argument("--run-dir", help="output folder (default runs/SCENARIO-ppo-seedSEED)")
    tr.add_argument("--resume", action="store_true", help="continue the run in --run-dir from its latest checkpoint")
    tr.set_defaults(func=_train)

    ev = sub.add_parser(
        "evaluate", help="measure a trained agent like meio simulate measures a base-stock policy",
        description="Load the agent of a run folder (best/, else final/, else the latest checkpoint) and print "
                    "the KPIs of meio simulate for it.")
    ev.add_argument("--model", required=True, help="run folder, or a saved agent folder")
    _evaluation_args(ev, periods=10_000, warmup=100, replications=10)
    ev.add_argument("--json", action="store_true", help="print one JSON object")
    ev.set_defaults(func=_evaluate)

    bm = sub.add_parser(
        "benchmark", help="compare every applicable baseline and given PPO models on common random numbers",
        description="Evaluate every applicable baseline and each --models run on the same seeds; write results.csv, "
                    "results.md, plots (cost-service frontier, stock positioning, bullwhip, learning curves) and "
                    "report.md to --out, and print the table.")
    _evaluation_args(bm, periods=10_000, warmup=200, replications=10)
    _search_args(bm)
    bm.add_argument("--models", nargs="*", help="run folders of trained agents (meio train --run-dir)")
    bm.add_argument("--out", help="output folder (default runs/benchmark-SCENARIO)")
    bm.add_argument("--no-frontier", action="store_true", help="skip the cost-service frontier (saves time)")
    bm.set_defaults(func=_benchmark)

    sw = sub.add_parser(
        "sweep", help="what if: change one scenario parameter over values, re-optimise and compare",
        description="For each value of --param (a path into the scenario file such as nodes[retailer].demand.mean, "
                    "lanes[plant->dc].lead_time or nodes[0].holding_cost), re-optimise the baselines and re-evaluate "
                    "the given models on common random numbers; write sweep.csv, sweep.md and sweep.png.")
    _evaluation_args(sw, periods=5000, warmup=200, replications=8)
    sw.add_argument("--param", required=True, help="path of the parameter to change")
    sw.add_argument("--values", required=True, help="comma-separated values")
    sw.add_argument("--models", nargs="*", help="run folders of trained agents to re-evaluate")
    sw.add_argument("--baselines", help="comma-separated baseline names (default: all that apply)")
    sw.add_argument("--out", help="output folder (default runs/sweep-PARAM)")
    sw.set_defaults(func=_sweep)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, FileNotFoundError, FileExistsError) as exc:   # messages name the field and the rule
        print(f"meio {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
