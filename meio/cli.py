"""``meio``: the command line. ``meio COMMAND --help`` describes each command."""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the commands import what they use, so that --help stays fast
    from meio.agents.train import TrainResult
    from meio.envs.distributions import DemandSpec, LeadTimeSpec
    from meio.envs.scenario import Scenario


def _simulate(args: argparse.Namespace) -> int:
    from meio.envs.metrics import check_evaluation, evaluate
    from meio.envs.policies import BaseStockPolicy, parse_levels
    from meio.envs.simulator import Simulator

    check_evaluation(args.periods, args.warmup, args.replications, args.seed)  # before any allocation
    sim = Simulator(args.scenario, n=args.replications)
    if args.policy == "base-stock":
        if not args.levels:
            raise ValueError("--levels: required with --policy base-stock (NODE=LEVEL,...)")
        # NODE=LEVEL,... splits at ',' and '=' and trims blanks: an id with them cannot be written.
        unnameable = [n for n in sim.topology.node_names if "," in n or "=" in n or n != n.strip()]
        if unnameable:
            raise ValueError(
                f"--levels: node {unnameable[0]!r} of {sim.scenario.name} cannot be written as "
                "NODE=LEVEL (its id has ',', '=' or blanks at an end); rename it in the scenario file"
            )
        policy = BaseStockPolicy(sim.topology, parse_levels(args.levels), kind=args.kind)
    else:
        raise ValueError(f"--policy: {args.policy!r} is not supported")
    result = evaluate(
        sim,
        policy,
        periods=args.periods,
        warmup=args.warmup,
        replications=args.replications,
        seed=args.seed,
        progress=not args.json,
    )
    if args.json:
        payload = result.to_dict()
        payload["policy"] = {"name": policy.name, "kind": policy.kind, "levels": policy.levels}
        print(json.dumps(payload, indent=2))
    else:
        print(result.format())
    return 0


def _baselines(args: argparse.Namespace) -> int:
    from meio.baselines.run import BASELINE_NAMES, run_baselines

    include = tuple(x.strip() for x in args.include.split(",")) if args.include else BASELINE_NAMES
    report = run_baselines(
        args.scenario,
        periods=args.periods,
        warmup=args.warmup,
        replications=args.replications,
        seed=args.seed,
        search_periods=args.search_periods,
        search_replications=args.search_replications,
        include=include,
        progress=not args.json,
    )
    print(json.dumps(report.to_dict(), indent=2) if args.json else report.format())
    return 0


#: Training algorithms of ``meio train --algo``, the default first: PPO (``meio.agents.train``) and
#: HDPO (``meio.agents.hdpo``); each reads its configs from ``configs/ALGO/``. The names of the saved
#: agents ``meio.agents.policy.AGENT_KINDS`` loads (kept here so that parsing imports no torch).
ALGOS = ("ppo", "hdpo")


def _algo(text: str) -> str:
    """The argparse ``type=`` of ``--algo``: a name of :data:`ALGOS`, else a hint."""
    if text not in ALGOS:
        from meio.envs.hints import did_you_mean

        raise argparse.ArgumentTypeError(
            f"{text!r} is not a training algorithm; choose from {', '.join(ALGOS)}{did_you_mean(text, ALGOS)}"
        )
    return text


def _config_fields(algo: str) -> frozenset[str]:
    if algo == "hdpo":
        from meio.agents.hdpo import HDPOConfig

        return frozenset(HDPOConfig.model_fields)
    from meio.agents.config import PPOConfig

    return frozenset(PPOConfig.model_fields)


def _load_algo_config(algo: str, name: str) -> Any:
    """The training config ``name`` (``configs/ALGO/NAME.yaml``, or a path) of ``algo``. A config
    whose unknown keys all belong to the other algorithm gets a first line saying so."""
    from meio.agents.config import ConfigError

    if algo == "hdpo":
        from meio.agents.hdpo import load_hdpo_config as load
    else:
        from meio.agents.config import load_config as load
    try:
        return load(name)
    except ConfigError as exc:
        unknown = {field for field, message in exc.errors if "unknown key" in message}
        for other in ALGOS:
            if other != algo and unknown and unknown <= _config_fields(other):
                hint = (
                    f"config: {name} holds {other} settings ({', '.join(sorted(unknown))}); train it with "
                    f"--algo {other}, or give a config of configs/{algo}/"
                )
                raise ConfigError(errors=[("config", hint), *exc.errors]) from None
        raise


def _saved_seed(run_dir: str) -> int | None:
    """The seed a run folder's ``config.yaml`` records, or ``None`` without a readable one (the
    trainers then name what is wrong with the file)."""
    import yaml

    from meio.envs.scenario import read_yaml

    path = Path(run_dir) / "config.yaml"
    try:
        data = read_yaml(path.read_text(), str(path))
    except (OSError, UnicodeDecodeError, ValueError, yaml.YAMLError):
        return None
    seed = data.get("seed") if isinstance(data, dict) else None
    return seed if isinstance(seed, int) and not isinstance(seed, bool) else None


def _train(args: argparse.Namespace) -> int:
    resume = args.resume is not None
    if args.resume and args.run_dir and Path(args.resume) != Path(args.run_dir):
        raise ValueError(f"--resume: {args.resume!r} and --run-dir {args.run_dir!r} name two folders; give one")
    if args.scenario is None and not resume:
        raise ValueError(
            "--scenario: a new run needs a scenario (a shipped name or a YAML file); only --resume RUN_DIR "
            "takes it from the run folder"
        )
    if args.scenario is None and not (args.resume or args.run_dir):
        raise ValueError("--resume: name the run folder to continue (--resume RUN_DIR)")
    seed = 0 if args.seed is None else args.seed
    scenario_part = "scenario" if args.scenario is None or "/" in args.scenario else args.scenario
    run_dir = args.resume or args.run_dir or f"runs/{scenario_part}-{args.algo or 'ppo'}-seed{seed}"
    algo = args.algo or "ppo"
    if resume:
        # the run folder holds its algorithm, seed, config (config.yaml) and scenario (scenario.yaml), so
        # resuming needs none of them; one given that contradicts the folder is refused, never applied
        from meio.agents.policy import run_algo

        try:
            saved = run_algo(run_dir)
        except ValueError as exc:
            raise ValueError(f"--resume: {exc}") from None
        if saved is not None and args.algo is not None and args.algo != saved:
            raise ValueError(
                f"--algo: {args.algo!r}, but {run_dir} was trained with {saved} (its config.yaml "
                "says so); leave --algo out to resume it"
            )
        saved_seed = _saved_seed(run_dir)
        if args.seed is not None and saved_seed is not None and args.seed != saved_seed:
            raise ValueError(
                f"--seed: {args.seed}, but {run_dir} was trained with seed {saved_seed} (its config.yaml "
                "says so); leave --seed out to resume it"
            )
        algo = saved or algo
    result: TrainResult
    if algo == "hdpo":
        result = _train_hdpo(args, run_dir, resume)
    elif resume:
        from meio.agents.train import train

        # the run's own config.yaml holds its settings and total; a --config given is checked against it
        cfg = None if args.config is None else _load_algo_config("ppo", args.config)
        result = train(
            args.scenario, cfg, run_dir, resume=True, progress=True, total_steps=args.total_steps, threads=args.threads
        )
    else:
        from meio.agents.train import train

        cfg = _load_algo_config("ppo", args.config or "default").replace(
            total_steps=args.total_steps, threads=args.threads
        )
        result = train(args.scenario, cfg, run_dir, seed=seed, progress=True)
    unit = "iterations" if algo == "hdpo" else "steps"
    if resume and result.steps_this_call == 0:
        print(f"run folder: {result.run_dir} is at {result.steps} {unit}; nothing was trained")
        return 0
    gap = ""
    if result.baseline_cost is not None and result.best_eval_cost is not None:
        gap = (
            f"; best baseline {result.baseline_name} {result.baseline_cost:.4f}, gap "
            f"{100 * (result.best_eval_cost - result.baseline_cost) / result.baseline_cost:+.2f}%"
        )
    best = f"{result.best_eval_cost:.4f}" if result.best_eval_cost is not None else "-"
    print(f"trained {result.steps} {unit} ({algo}) in {result.seconds:.0f} s; best evaluation cost {best}{gap}")
    print(f"run folder: {result.run_dir} (tensorboard --logdir {result.run_dir / 'tb'})")
    return 0


def _train_hdpo(args: argparse.Namespace, run_dir: str, resume: bool) -> TrainResult:
    """``meio train --algo hdpo``: ``--config`` names a file in ``configs/hdpo/`` (or a path) and
    ``--total-steps`` sets its ``iterations`` (HDPO counts gradient steps, not environment steps)."""
    import yaml

    from meio.agents.hdpo import HDPOConfig, train_hdpo

    cfg = None if resume and args.config is None else _load_algo_config("hdpo", args.config or "default")
    if resume and cfg is None and (args.total_steps is not None or args.threads is not None):
        # the run's own settings with the new total or speed (train_hdpo checks that only those
        # differ); a missing or broken config.yaml is left to train_hdpo, which names the problem
        from meio.envs.scenario import read_yaml

        path = Path(run_dir) / "config.yaml"
        try:
            saved = read_yaml(path.read_text(), str(path))
        except (OSError, UnicodeDecodeError, ValueError, yaml.YAMLError):
            saved = None
        if isinstance(saved, dict) and isinstance(saved.get("config"), dict):
            cfg = HDPOConfig.from_dict(saved["config"])
    if cfg is not None:
        cfg = cfg.replace(iterations=args.total_steps, threads=args.threads)
    if resume:
        return train_hdpo(args.scenario, cfg, run_dir, progress=True, resume=True)
    return train_hdpo(args.scenario, cfg, run_dir, seed=0 if args.seed is None else args.seed, progress=True)


def _evaluate(args: argparse.Namespace) -> int:
    from meio.agents.policy import find_saved_agent, load_agent, saved_agent_algo
    from meio.envs.metrics import evaluate
    from meio.envs.simulator import Simulator

    folder = find_saved_agent(args.model)
    policy = load_agent(folder, name=f"{saved_agent_algo(folder)}:{folder}")
    sim = Simulator(args.scenario, n=args.replications)
    check = getattr(policy, "check", None)
    if check is not None:
        check(sim)  # a scenario of another shape is refused before any simulation
    result = evaluate(
        sim,
        policy,
        periods=args.periods,
        warmup=args.warmup,
        replications=args.replications,
        seed=args.seed,
        progress=not args.json,
    )
    print(json.dumps(result.to_dict(), indent=2) if args.json else result.format())
    return 0


def _benchmark(args: argparse.Namespace) -> int:
    import time

    from meio.benchmark import markdown_table, run_benchmark, summary_columns, write_report

    started = time.perf_counter()
    result = run_benchmark(
        args.scenario,
        models=args.models or (),
        periods=args.periods,
        warmup=args.warmup,
        replications=args.replications,
        seed=args.seed,
        search_periods=args.search_periods,
        search_replications=args.search_replications,
        progress=True,
    )
    out = args.out or f"runs/benchmark-{result.scenario.name}"
    files = write_report(result, out, frontier=not args.no_frontier)
    print(markdown_table(summary_columns(result.table)))
    for name, why in result.skipped.items():
        print(f"skipped {name}: {why}")
    print(f"reference: {result.reference}; report: {files['report']} ({time.perf_counter() - started:.0f} s)")
    return 0


def _explain(args: argparse.Namespace) -> int:
    from meio.explain import run_cli

    return run_cli(args)


def _sweep(args: argparse.Namespace) -> int:
    from meio.benchmark import markdown_table
    from meio.sweep import parse_values, run_sweep, write_sweep

    baselines = tuple(x.strip() for x in args.baselines.split(",")) if args.baselines else None
    kwargs: dict = {"baselines": baselines} if baselines else {}
    if len(args.param) != len(args.values):
        raise ValueError(
            f"--param/--values: {len(args.param)} --param and {len(args.values)} --values; "
            "give one --values after each --param"
        )
    out = args.out or f"runs/sweep-{'_x_'.join(args.param).replace('/', '_')}"
    if args.retrain:
        from meio.agents.config import load_config

        cfg = load_config(args.retrain)
        kwargs.update(retrain=cfg.replace(total_steps=args.steps), retrain_dir=Path(out) / "retrain")
        kwargs["parallel"] = args.parallel
    elif args.steps is not None or args.parallel:
        raise ValueError("--steps and --parallel go with --retrain CONFIG")
    one = len(args.param) == 1
    result = run_sweep(
        args.scenario,
        args.param[0] if one else args.param,
        parse_values(args.values[0]) if one else [parse_values(v) for v in args.values],
        models=args.models or (),
        periods=args.periods,
        warmup=args.warmup,
        replications=args.replications,
        seed=args.seed,
        progress=True,
        **kwargs,
    )
    files = write_sweep(result, out)
    keys = ["value"] if one else list(result.params)
    shown = (*keys, "policy", "cost_mean", "cost_ci95", "fill_rate", "cost_diff", "cost_diff_ci95")
    cols = [c for c in shown if c in result.table]
    print(markdown_table(result.table[cols]))
    for name, why in result.skipped.items():
        print(f"skipped {name}: {why}")
    print(f"table and plot: {files['md']}, {files['png']}")
    return 0


def _frontier(args: argparse.Namespace) -> int:
    from meio.baselines.run import BASELINE_NAMES
    from meio.benchmark import markdown_table, run_benchmark
    from meio.frontier import DEFAULT_TARGETS, cost_service_frontier, parse_targets, policy_points, write_frontier

    targets = parse_targets(args.targets) if args.targets else DEFAULT_TARGETS
    none = args.baselines is not None and args.baselines.strip() == "none"
    baselines = () if none else tuple(b.strip() for b in args.baselines.split(",")) if args.baselines else None
    unknown = [b for b in baselines or () if b not in BASELINE_NAMES]
    if unknown:  # before any search
        raise ValueError(
            f"--baselines: {unknown[0]!r} is not a baseline; choose from {', '.join(BASELINE_NAMES)} or none"
        )
    settings = {
        "periods": args.periods,
        "warmup": args.warmup,
        "replications": args.replications,
        "seed": args.seed,
        "search_periods": args.search_periods,
        "search_replications": args.search_replications,
    }
    df = cost_service_frontier(args.scenario, targets, node=args.node, progress=True, **settings)
    points: dict[str, tuple[float, float, float]] = {}
    if baselines != () or args.models:
        # The policies are measured on the frontier's evaluation seeds (common random numbers).
        kwargs = {} if baselines is None else {"baselines": baselines}
        result = run_benchmark(args.scenario, models=args.models or (), progress=True, **settings, **kwargs)
        points = policy_points({p: result.evaluations[p] for p in result.table.policy}, result.topology, args.node)
    name = str(df.attrs["scenario"])
    files = write_frontier(df, points, args.out or f"runs/frontier-{name}", name, settings)
    cols = [
        "target",
        "fill_rate",
        "fill_rate_ci95",
        "investment_on_hand",
        "investment_on_hand_ci95",
        "cost_of_service",
        "dominated_by",
    ]
    print(markdown_table(df[cols]))
    print(f"frontier: {files['csv']}, {files['md']}, {files['png']}")
    return 0


def _experiment(args: argparse.Namespace) -> int:
    import pandas as pd

    from meio.benchmark import markdown_table
    from meio.experiment import load_spec, run_experiment

    if args.cpus is not None and args.cpus < 1:
        raise ValueError(f"--cpus: {args.cpus} is not a CPU count; use an integer >= 1")
    spec = load_spec(args.spec)  # every field checked before Ray starts
    out = args.out or f"runs/experiment-{spec.name}"
    files = run_experiment(spec, out, address=args.address, cpus=args.cpus, resume=args.resume)
    table = pd.read_csv(files["csv"])
    cols = [
        "scenario",
        "method",
        "cell",
        "seeds",
        "cost_mean",
        "cost_ci95",
        "gap_pct",
        "gap_ci95_pct",
        "gap_iqm_pct",
        "reference",
        "train_seconds",
        "stopped",
    ]
    print(markdown_table(table[cols]))
    print(f"results: {files['md']}, {files['csv']}, {files['png']}; tensorboard --logdir {out}")
    return 0


def _validate(args: argparse.Namespace) -> int:
    """Every error of a scenario file (exit 2), or a one-screen summary of the network (exit 0)."""
    from meio.envs.scenario import ScenarioError, load_scenario

    try:
        scenario = load_scenario(args.scenario)
    except ScenarioError as exc:
        n = len(exc.errors)
        print(f"meio validate: {args.scenario}: {n} error{'s' if n != 1 else ''}", file=sys.stderr)
        for _, message in exc.errors:
            print(f"  {message}", file=sys.stderr)
        return 2
    print(_scenario_summary(scenario))
    return 0


def _schema(args: argparse.Namespace) -> int:
    """The JSON Schema (draft 2020-12) of scenario files or of training configs, for editors."""
    if args.kind == "config":
        try:
            from meio.agents.config import config_json_schema
        except ImportError as exc:
            raise ValueError(f"kind: the config schema is not available in this version ({exc})") from None
        schema = config_json_schema()
    else:
        from meio.envs.scenario_model import json_schema

        schema = json_schema()
    text = json.dumps(schema, indent=2) + "\n"
    if args.out is None:
        sys.stdout.write(text)
        return 0
    try:
        Path(args.out).write_text(text)
    except OSError as exc:
        raise ValueError(f"--out: cannot write {args.out!r}: {exc.strerror or exc}") from None
    print(f"{args.kind} schema: {args.out}")
    return 0


def _describe_demand(spec: DemandSpec) -> str:
    """``poisson(mean 4)``, ``discrete (46 values)``, ``trace f.csv (52 rows)``, with mean and sd."""
    if spec.dist == "trace":
        text = f"trace {spec.trace_file} column {spec.trace_column} ({len(spec.trace)} rows)"
    elif spec.dist == "discrete":
        text = f"discrete ({len(spec.values)} values)"
    else:
        params = {k: v for k, v in spec.to_dict().items() if k not in ("dist", "seasonality", "trend")}
        text = f"{spec.dist}(" + ", ".join(f"{k} {v:g}" for k, v in params.items()) + ")"
    if spec.seasonality is not None or spec.trend:
        text += " with " + " and ".join(w for w, on in (("seasonality", spec.seasonality), ("trend", spec.trend)) if on)
    return f"{text}: mean {spec.base_mean():.4g}, sd {spec.base_sd():.4g} per period"


def _describe_lead_time(lt: LeadTimeSpec) -> str:
    if lt.is_constant:
        return f"lead time {lt.values[0]}"
    if lt.dist == "uniform_int":
        return f"lead time uniform {lt.values[0]}..{lt.values[-1]} (mean {lt.mean:.3g})"
    return "lead time " + ", ".join(f"{v} w.p. {p:.3g}" for v, p in zip(lt.values, lt.probs)) + f" (mean {lt.mean:.3g})"


def _scenario_summary(scenario: Scenario) -> str:
    """The network on one screen: settings, nodes, lanes with their modes, and the baselines."""
    import math

    from meio.baselines.run import applicability
    from meio.envs.resolve import resolve

    def cap(x: float) -> str:
        return "unlimited" if math.isinf(x) else f"{x:g}"

    topo = resolve(scenario)
    through = dict(zip(topo.node_names, topo.throughput))
    # A node with alternative suppliers counts in full at each of them: then the flows are upper bounds.
    approx = "<= " if any(n.sourcing == "alternative" for n in scenario.nodes) else ""
    sc = scenario
    lines = [
        f"{sc.name}: valid ({len(sc.nodes)} nodes, {len(sc.lanes)} lanes, {topo.n_slots} order slots)"
        + (f" from {sc.source}" if sc.source else ""),
        f"  unmet demand: {sc.unmet_demand} ({sc.penalty_name}); allocation: {sc.allocation}; horizon {sc.horizon}; "
        f"integer orders: {'yes' if sc.integer_orders else 'no'}; action mode: {sc.action_mode}",
        "nodes (file order):",
    ]
    for node in sc.nodes:
        customers = len(sc.lanes_from(node.id))
        role = (
            ("demand node" if customers == 0 else "demand and supply node")
            if node.demand is not None
            else "supply node"
        )
        if node.sourcing == "assembly":
            role += ", assembles " + " + ".join(f"{r:g} {p}" for p, r in node.bom)
        elif node.sourcing == "alternative":
            role += ", alternative suppliers"
        costs = f"h {node.holding_cost:g}" + (f", {sc.penalty_name} {node.penalty_cost:g}" if node.demand else "")
        extra = "".join(
            [
                f", capacity {cap(node.capacity)}" if math.isfinite(node.capacity) else "",
                f", initial {node.initial_inventory:g}" if node.initial_inventory else "",
                f", fill-rate target {node.service_target:g}" if node.service_target is not None else "",
                f", segment {node.segment}" if node.segment is not None else "",
            ]
        )
        lines.append(
            f"  {node.id}: {role}; {costs}{extra}; mean flow through it {approx}{through[node.id]:.4g} per period"
        )
        if node.demand is not None:
            lines.append(f"      demand {_describe_demand(node.demand)}")
    if sc.demand_correlation is not None:
        lines.append(
            "  demand correlation: " + "; ".join(" ".join(f"{x:g}" for x in row) for row in sc.demand_correlation)
        )
    lines.append("lanes (file order):")
    for i, lane in enumerate(sc.lanes):
        outage = (
            f"; outages start w.p. {lane.disruption.start_probability:g}, last {lane.disruption.mean_duration:g} "
            "periods on average"
            if lane.disruption
            else ""
        )
        for k, m in enumerate(lane.modes):
            head = f"  lanes[{i}] {lane.source} -> {lane.target}" if k == 0 else " " * (len(f"  lanes[{i}] ") - 2)
            name = f" [{m.name}]" if len(lane.modes) > 1 else ""
            costs = ", ".join(
                f"{label} {getattr(m, key):g}"
                for key, label in (
                    ("unit_cost", "unit cost"),
                    ("fixed_cost", "fixed cost"),
                    ("pipeline_holding_cost", "pipeline holding"),
                )
                if getattr(m, key)
            )
            lines.append(
                f"{head}{name}: {_describe_lead_time(m.lead_time)}, capacity {cap(m.capacity)}"
                + (f", {costs}" if costs else "")
                + (", crossing allowed" if m.order_crossing else "")
                + (outage if k == 0 else "")
            )
    lines.append("baselines (meio baselines):")
    for name, why in applicability(topo).items():
        lines.append(f"  {name:<24} {'applies' if why is None else 'skipped: ' + why}")
    return "\n".join(lines)


SCENARIO_HELP = "shipped scenario name (e.g. ex61) or path to a YAML file"


def _setting(name: str) -> Callable[[str], int]:
    """The argparse ``type=`` of the run setting ``name``: the rule of :mod:`meio.envs.run_settings`, so
    ``--replications 0`` reads ``argument --replications: 0 is below 1; ...`` like the Python API's
    ``replications: 0 is below 1; ...``."""
    from meio.envs.run_settings import setting_problem

    def parse(text: str) -> int:
        try:
            value: object = int(text)
        except ValueError:
            value = text
        problem = setting_problem(name, value)
        if problem:
            raise argparse.ArgumentTypeError(problem)
        return int(text)

    parse.__name__ = name  # argparse names the type in some messages
    return parse


def _evaluation_args(parser: argparse.ArgumentParser, periods: int, warmup: int, replications: int) -> None:
    """--scenario, --periods, --warmup, --replications, --seed: how every command simulates."""
    parser.add_argument("--scenario", required=True, help=SCENARIO_HELP)
    parser.add_argument(
        "--periods",
        type=_setting("periods"),
        default=periods,
        help=f"periods per replication after the warm-up (default {periods})",
    )
    parser.add_argument(
        "--warmup", type=_setting("warmup"), default=warmup, help=f"periods discarded at the start (default {warmup})"
    )
    parser.add_argument(
        "--replications",
        type=_setting("replications"),
        default=replications,
        help=f"independent copies, seeds SEED, SEED+1, ... (default {replications})",
    )
    parser.add_argument("--seed", type=_setting("seed"), default=0, help="seed of the first copy (default 0)")
    _threads_arg(parser)


def _threads_arg(parser: argparse.ArgumentParser) -> None:
    """--threads: how many threads the simulators of the command step with (``meio.envs.threads``)."""
    parser.add_argument(
        "--threads",
        metavar="N|auto",
        help="threads of the batched step: an integer >= 1, or 'auto' for the cores not busy now; "
        "more than one only pays for batches of >= 128 copies on an idle machine "
        "(default: $MEIO_THREADS, else 1)",
    )


def _search_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--search-periods",
        type=_setting("search_periods"),
        default=1000,
        help="periods per search replication (default 1000)",
    )
    parser.add_argument(
        "--search-replications", type=_setting("search_replications"), default=8, help="search replications (default 8)"
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="meio", description="Multi-echelon inventory optimisation: simulate, optimise and learn policies."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    sim = sub.add_parser(
        "simulate",
        help="run a scenario under a policy and print its KPIs",
        description="Run a scenario under a policy for --replications independent copies of --periods periods "
        "(after --warmup) and print cost per period with a 95% confidence interval (over replications, or "
        "from 20 batch means with one replication), its split, fill rate (with its CI) against the node's "
        "service_target, cycle service level, mean stock, turnover "
        "and order-variance ratio per node, service per segment, and the inventory investment on hand "
        "and in transit beside the penalty cost.",
    )
    _evaluation_args(sim, periods=10_000, warmup=100, replications=1)
    sim.add_argument(
        "--policy", choices=["base-stock"], default="base-stock", help="policy family (default: base-stock)"
    )
    sim.add_argument(
        "--kind",
        choices=["installation", "echelon"],
        default="installation",
        help="base-stock positions: installation (local) or echelon (default: installation)",
    )
    sim.add_argument("--levels", help="base-stock levels, one per node: NODE=LEVEL,NODE=LEVEL,...")
    sim.add_argument("--json", action="store_true", help="print one JSON object instead of the text report")
    sim.set_defaults(func=_simulate)

    base = sub.add_parser(
        "baselines",
        help="compute and simulate the classical policies that apply to a scenario",
        description="Compute every applicable baseline (Clark-Scarf and Shang-Song for serial chains with "
        "backorders, the guaranteed-service model for spanning trees, the local heuristic for any network, "
        "simulation-optimised installation and "
        "echelon base-stock levels), print its levels and analytic cost, and simulate each on the same "
        "seeds (95% CI over replications). Baselines that do not apply are listed with the reason.",
    )
    _evaluation_args(base, periods=10_000, warmup=200, replications=10)
    _search_args(base)
    base.add_argument("--only", dest="include", help="comma-separated baseline names to compute (default: all)")
    base.add_argument("--json", action="store_true", help="print one JSON object keyed by baseline name")
    base.set_defaults(func=_baselines)

    tr = sub.add_parser(
        "train",
        help="train a PPO or HDPO agent on a scenario (TensorBoard, checkpoints, evaluation)",
        description="Train an agent with --algo: stable-baselines3 PPO over the batched environment (default), or "
        "HDPO, gradient descent through the differentiable twin, with the hyper-parameters of a config "
        "(configs/ALGO/NAME.yaml or a path). Logs to TensorBoard under RUN_DIR/tb, evaluates on fixed "
        "seeds against the best applicable baseline, keeps the best agent and writes checkpoints; "
        "--resume RUN_DIR continues an interrupted run to the same total, with the scenario, algorithm, "
        "seed and config the run folder holds (config.yaml, scenario.yaml); a --scenario, --algo, --seed "
        "or --config given with it must agree with them.",
    )
    tr.add_argument("--scenario", help=f"{SCENARIO_HELP} (required, except with --resume: the run's own)")
    tr.add_argument(
        "--algo",
        type=_algo,
        metavar="|".join(ALGOS),
        help="training algorithm (default ppo; with --resume, the run's own)",
    )
    tr.add_argument(
        "--config",
        help="training config: shipped name (configs/ALGO/NAME.yaml) or YAML path (default: default; with "
        "--resume, the run's own)",
    )
    tr.add_argument(
        "--seed",
        type=_setting("seed"),
        help="seed of the agent and of the first env copy (default 0; with --resume, the run's own)",
    )
    tr.add_argument(
        "--total-steps",
        type=int,
        help="training total, overriding the config: environment steps (ppo) or gradient iterations (hdpo)",
    )
    tr.add_argument("--run-dir", help="output folder (default runs/SCENARIO-ALGO-seedSEED)")
    tr.add_argument(
        "--resume",
        nargs="?",
        const="",
        metavar="RUN_DIR",
        help="continue the run in RUN_DIR (or --run-dir) from its latest checkpoint",
    )
    _threads_arg(tr)
    tr.set_defaults(func=_train)

    ev = sub.add_parser(
        "evaluate",
        help="measure a trained agent like meio simulate measures a base-stock policy",
        description="Load the agent of a run folder (best/, else final/, else the latest checkpoint) and print "
        "the KPIs of meio simulate for it.",
    )
    ev.add_argument("--model", required=True, help="run folder, or a saved agent folder")
    _evaluation_args(ev, periods=10_000, warmup=100, replications=10)
    ev.add_argument("--json", action="store_true", help="print one JSON object")
    ev.set_defaults(func=_evaluate)

    bm = sub.add_parser(
        "benchmark",
        help="compare every applicable baseline and given PPO models on common random numbers",
        description="Evaluate every applicable baseline and each --models run on the same seeds; write results.csv, "
        "results.md, plots (cost-service frontier, stock positioning, bullwhip, learning curves) and "
        "report.md to --out, and print the table.",
    )
    _evaluation_args(bm, periods=10_000, warmup=200, replications=10)
    _search_args(bm)
    bm.add_argument("--models", nargs="*", help="run folders of trained agents (meio train --run-dir)")
    bm.add_argument("--out", help="output folder (default runs/benchmark-SCENARIO)")
    bm.add_argument("--no-frontier", action="store_true", help="skip the cost-service frontier (saves time)")
    bm.set_defaults(func=_benchmark)

    xp = sub.add_parser(
        "explain",
        help="what a learned policy learned: its order-up-to levels and allocation as the state changes",
        description="Simulate each --model agent and the classical --baselines on the same seed and record, per "
        "period and node, the inventory position before and after ordering (installation, and echelon where "
        "every node has one supplier), the orders and the on-hand stock, and what each customer of a warehouse "
        "received when it ran short. Write levels.csv, allocation.csv, levels.png and, where a node has several "
        "suppliers or modes, sourcing.csv (where each node bought) to --out and print the tables as Markdown "
        "(docs/results.md).",
    )
    xp.add_argument("--model", action="append", help="run folder or saved agent folder (repeat for several)")
    xp.add_argument("--scenario", required=True, help=SCENARIO_HELP)
    xp.add_argument(
        "--baselines",
        default="reference",
        help="'reference' (the benchmark's reference policy), comma-separated baseline names, or 'none' "
        "(default: reference)",
    )
    xp.add_argument(
        "--periods",
        type=_setting("periods"),
        default=5000,
        help="periods simulated per policy, the warm-up included (default 5000)",
    )
    xp.add_argument(
        "--warmup", type=_setting("warmup"), default=200, help="periods discarded at the start (default 200)"
    )
    xp.add_argument("--seed", type=_setting("seed"), default=0, help="seed of every policy's run (default 0)")
    _search_args(xp)
    xp.add_argument("--out", help="output folder (default runs/explain/SCENARIO)")
    _threads_arg(xp)
    xp.set_defaults(func=_explain)

    sw = sub.add_parser(
        "sweep",
        help="what if: change scenario parameters over values (a grid), re-optimise and compare",
        description="For each value of --param (a path into the scenario file such as nodes[retailer].demand.mean, "
        "lanes[plant->dc].lead_time or nodes[0].holding_cost, or lanes[LANE].lead_time_spread: a mean-preserving "
        "spread of that lead time), re-optimise the baselines and re-evaluate the given models on common random "
        "numbers; repeat --param/--values for a grid of every combination. Writes sweep.csv, sweep.md and "
        "sweep.png, with paired differences to the first combination.",
    )
    _evaluation_args(sw, periods=5000, warmup=200, replications=8)
    sw.add_argument("--param", required=True, action="append", help="path of a parameter to change (repeat for a grid)")
    sw.add_argument(
        "--values", required=True, action="append", help="comma-separated values (one --values per --param)"
    )
    sw.add_argument("--models", nargs="*", help="run folders of trained agents to re-evaluate")
    sw.add_argument(
        "--retrain",
        metavar="CONFIG",
        help="train a new PPO agent with this config (shipped name or YAML path) at every value or "
        "combination and evaluate it there (as ppo:retrained); runs go to OUT/retrain/",
    )
    sw.add_argument("--steps", type=int, help="with --retrain: training steps per agent, overriding the config")
    sw.add_argument("--parallel", action="store_true", help="with --retrain: train the agents in parallel on Ray Tune")
    sw.add_argument("--baselines", help="comma-separated baseline names (default: all that apply)")
    sw.add_argument("--out", help="output folder (default runs/sweep-PARAM)")
    sw.set_defaults(func=_sweep)

    fr = sub.add_parser(
        "frontier",
        help="the cost-service frontier: the cheapest base-stock policy for each fill-rate target",
        description="For each fill-rate target (network-wide, or at one demand node or segment while the others "
        "keep their service targets), search the installation base-stock policy of least cost of "
        "service that meets it (re-optimised per target on common random numbers), check it on the "
        "evaluation seeds and make the frontier monotone (docs/frontier.md); plot investment on hand "
        "against fill rate with 95% CI bars, every applicable baseline and each --models agent as a "
        "labelled point; write frontier.csv, frontier.md and frontier.png to --out.",
    )
    _evaluation_args(fr, periods=2000, warmup=200, replications=8)
    _search_args(fr)
    fr.add_argument(
        "--targets", help="comma-separated fill-rate targets in (0, 1), increasing (default 0.8,0.9,0.95,0.98,0.99)"
    )
    fr.add_argument("--node", help="a demand node or segment whose target varies (default: the network's fill rate)")
    fr.add_argument("--models", nargs="*", help="run folders of trained agents to plot as points")
    fr.add_argument(
        "--baselines", help="comma-separated baseline names to plot as points, or 'none' (default: all that apply)"
    )
    fr.add_argument("--out", help="output folder (default runs/frontier-SCENARIO)")
    fr.set_defaults(func=_frontier)

    ex = sub.add_parser(
        "experiment",
        help="train learned methods over scenarios x configs x seeds on Ray Tune, with a results table",
        description="Run the experiment of a spec (docs/experiments.md): every scenario x method x config x seed "
        "as Ray Tune trials (grid, random or Optuna search, ASHA or median early stopping), then "
        "compare each trained agent with the classical policies on common random numbers; write "
        "results.csv, results.md and gaps.png to --out, with every run's TensorBoard log under it.",
    )
    ex.add_argument("spec", metavar="SPEC", help="experiment spec (YAML), e.g. configs/experiments/suite.yaml")
    ex.add_argument("--address", help="join a running Ray cluster: auto, or ray://HOST:PORT (default: a local Ray)")
    ex.add_argument("--cpus", type=int, help="CPUs of the local Ray (default: the machine's cores)")
    ex.add_argument("--out", help="output folder (default runs/experiment-NAME)")
    ex.add_argument(
        "--resume",
        action="store_true",
        help="continue a stopped experiment in --out: finished trials are kept, the others resume",
    )
    ex.set_defaults(func=_experiment)

    va = sub.add_parser(
        "validate",
        help="check a scenario file: every error at once, or a summary of the network",
        description="Load a scenario and check every rule (docs/scenarios.md). A broken file: every error, one per "
        "line with its field path, and exit status 2. A valid one: a one-screen summary (nodes with "
        "their role, demand and costs, lanes with modes, lead times and capacities, the unmet-demand "
        "and allocation rules, and which baselines apply) and exit status 0.",
    )
    va.add_argument("scenario", metavar="SCENARIO", help=SCENARIO_HELP)
    va.set_defaults(func=_validate)

    sc = sub.add_parser(
        "schema",
        help="write the JSON Schema of scenario files (or training configs) for editors",
        description="Print (or write to --out) the JSON Schema, draft 2020-12, of scenario files (default) or of "
        "training config files: every key with its type, bounds and description, unknown keys refused. "
        "Editors use it to complete and check the files (docs/scenarios.md).",
    )
    sc.add_argument(
        "kind",
        nargs="?",
        choices=("scenario", "config"),
        default="scenario",
        help="which files: scenario (default) or config",
    )
    sc.add_argument("--out", help="file to write (default: standard output)")
    sc.set_defaults(func=_schema)
    return parser


#: API fields whose value only ever comes from the option of the same name: a message about one of
#: them is about that option. (``total_steps`` or ``threads`` may come from a config file instead,
#: so their messages keep the config's field name.)
_OPTION_FIELDS = frozenset(
    {
        "periods",
        "warmup",
        "replications",
        "seed",
        "search_periods",
        "search_replications",
        "levels",
        "kind",
        "scenario",
        "include",
        "targets",
        "node",
    }
)


def _as_option(parser: argparse.ArgumentParser, command: str, message: str) -> str:
    """A Python API message names the field (``periods: ...``, ``levels.dc: ...``); on the command
    line the same field is an option, so say ``--periods: ...``, ``--levels dc: ...``."""
    # argparse keeps its subcommands in a private action; there is no public accessor.
    commands = next(a.choices for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    head, sep, rest = re.match(r"([a-z_]*)([.:]?)(.*)", message, re.DOTALL).groups()
    if not sep or head not in _OPTION_FIELDS:
        return message
    for action in commands[command]._actions:
        if action.dest == head and action.option_strings:
            flag = max(action.option_strings, key=len)
            return f"{flag}{':' if sep == ':' else ' '}{rest}"
    return message


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; returns the exit status: 0, or 2 with ``meio COMMAND: error: FIELD: ...``
    on stderr for bad input (argparse's own errors included), never a traceback for it."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse printed usage and the error (2), or the help (0)
        return exc.code if isinstance(exc.code, int) else 2
    try:
        from meio.envs.threads import default_threads

        with default_threads(getattr(args, "threads", None), "--threads"):
            return args.func(args)
    except (ValueError, FileNotFoundError, FileExistsError) as exc:  # messages name the field and the rule
        print(f"meio {args.command}: error: {_as_option(parser, args.command, str(exc))}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # the reader went away (`meio ... --json | head`): not an error of ours
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
