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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="meio", description="Multi-echelon inventory optimisation: simulate, optimise and learn policies.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    sim = sub.add_parser(
        "simulate", help="run a scenario under a policy and print its KPIs",
        description="Run a scenario under a policy for --replications independent copies of --periods periods "
                    "(after --warmup) and print cost per period with a 95%% confidence interval, its split, fill "
                    "rate, cycle service level, mean stock, turnover and order-variance ratio per node.")
    sim.add_argument("--scenario", required=True, help="shipped scenario name (e.g. ex61) or path to a YAML file")
    sim.add_argument("--policy", choices=["base-stock"], default="base-stock", help="policy family (default: base-stock)")
    sim.add_argument("--kind", choices=["installation", "echelon"], default="installation",
                     help="base-stock positions: installation (local) or echelon (default: installation)")
    sim.add_argument("--levels", help="base-stock levels, one per node: NODE=LEVEL,NODE=LEVEL,...")
    sim.add_argument("--periods", type=int, default=10_000, help="periods per replication after warm-up (default 10000)")
    sim.add_argument("--warmup", type=int, default=100, help="periods discarded at the start (default 100)")
    sim.add_argument("--replications", type=int, default=1,
                     help="independent copies; >= 2 gives a CI over replications, 1 a CI from 20 batch means (default 1)")
    sim.add_argument("--seed", type=int, default=0, help="seed of the first copy; copy i uses seed + i (default 0)")
    sim.add_argument("--json", action="store_true", help="print one JSON object instead of the text report")
    sim.set_defaults(func=_simulate)

    base = sub.add_parser(
        "baselines", help="compute and simulate the classical policies that apply to a scenario",
        description="Compute every applicable baseline (Clark-Scarf and Shang-Song for serial chains with "
                    "backorders, the guaranteed-service model for spanning trees, the local heuristic for any network, simulation-optimised installation and "
                    "echelon base-stock levels), print its levels and analytic cost, and simulate each on the same "
                    "seeds (95%% CI over replications). Baselines that do not apply are listed with the reason.")
    base.add_argument("--scenario", required=True, help="shipped scenario name or path to a YAML file")
    base.add_argument("--periods", type=int, default=10_000, help="evaluation periods per replication (default 10000)")
    base.add_argument("--warmup", type=int, default=200, help="warm-up periods (default 200)")
    base.add_argument("--replications", type=int, default=10, help="evaluation replications (default 10)")
    base.add_argument("--seed", type=int, default=0, help="first evaluation seed (default 0)")
    base.add_argument("--search-periods", type=int, default=1000, help="periods per search replication (default 1000)")
    base.add_argument("--search-replications", type=int, default=8, help="search replications (default 8)")
    base.add_argument("--only", help="comma-separated baseline names to compute (default: all)")
    base.add_argument("--json", action="store_true", help="print one JSON object keyed by baseline name")
    base.set_defaults(func=_baselines)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except ValueError as exc:          # includes ScenarioError: a message naming the field and the rule
        print(f"meio {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
