"""The leaderboard of learned policies: each shipped learned config, trained on every shipped
scenario it applies to, against the best classical policy on common random numbers.

Per scenario and training seed:

1. the best classical policy: the benchmark's reference (:func:`meio.baselines.run.reference_baseline`,
   the rule of :func:`meio.baselines.run.choose_reference`): Clark-Scarf, the optimum, on serial
   chains; elsewhere the cheapest stable local or simulation-optimised policy (sourcing families
   included); where none applies, the cheapest stable baseline of :func:`meio.benchmark.run_benchmark`;
2. per method (``ppo``, ``hdpo``), the config: ``configs/<method>/<scenario>.yaml`` where the file
   exists, else ``configs/<method>/default.yaml``, read from disk when the script runs. HDPO is
   skipped, with the reason in the table, where the differentiable twin or the network refuses the
   scenario (:func:`meio.agents.hdpo.hdpo_scenario_problem`, e.g. a fixed ordering cost on a lane
   the network orders on);
3. training (``meio.agents.train.train`` or :func:`meio.agents.hdpo.train_hdpo`), timed in wall and
   CPU seconds of this process (``time.perf_counter``, ``time.process_time``);
4. the saved agent (:func:`meio.agents.policy.load_agent`: ``best/``, as ``meio evaluate`` uses it)
   and the classical policy evaluated by :func:`meio.envs.metrics.evaluate` on the same seeds
   ``eval_seed .. eval_seed + R - 1`` (default ``R = 10`` replications of 100,000 periods from the
   scenario's start);
5. the paired gap: with ``c_r`` the agent's and ``b_r`` the classical policy's mean cost per period
   in replication ``r`` (common random numbers), ``d_r = c_r - b_r``, the gap is
   ``100 mean(d) / mean(b)`` with the Student-t 95% half-width ``100 t_{0.975, R-1} s_d / sqrt(R) / mean(b)``
   (:func:`meio.envs.metrics.mean_ci95`; the same rule as ``meio benchmark``'s ``gap_pct``);
   the replication spread ``max_r c_r / median_r c_r - 1`` (:func:`meio.envs.metrics.replication_spread`).

Output folder ``--out`` (default ``runs/learned_quality``):

- ``results.csv`` (numbers) and ``results.md`` (the command and the table);
- ``runs/<scenario>/<method>-seed<S>/``: the training run folder plus ``timing.json``
  (``wall_s``, ``cpu_s``, ``config``, ``steps_scale``);
- ``evaluations/<scenario>/<label>.json``: each evaluation's settings, cost, CI, spread and the
  per-replication costs ``c_r``, so a table can be rebuilt (``--reuse``) and checked.

``--reuse`` takes finished runs and evaluations with the same settings from ``--out`` instead of
training or simulating again; without it an existing run folder is an error (nothing is
overwritten).

Run: ``.venv/bin/python benchmarks/learned_quality.py [--scenarios a,b] [--methods ppo,hdpo]
[--seeds 0] [--periods 100000] [--replications 10] [--out DIR] [--reuse] [--steps-scale F | --quick]``.
"""

from __future__ import annotations

import argparse
import json
import math
import shlex
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from meio.agents.config import ConfigError, configs_dir
from meio.envs.metrics import Evaluation, check_evaluation, evaluate, mean_ci95, replication_spread
from meio.envs.resolve import resolve
from meio.envs.scenario import ScenarioError
from meio.envs.simulator import Simulator
from meio.envs.topology import Topology

METHODS = ("ppo", "hdpo")
#: ``--quick``: a smoke run (training budgets x 0.01, 4 x 2,000 evaluation periods unless given).
QUICK_SCALE = 0.01
QUICK_PERIODS = 2_000
QUICK_REPLICATIONS = 4
DEFAULT_PERIODS = 100_000
DEFAULT_REPLICATIONS = 10
TIMING_FILE = "timing.json"


def shipped_scenarios() -> list[str]:
    """Names of the shipped scenarios (``configs/scenarios/*.yaml``), sorted."""
    return sorted(p.stem for p in configs_dir("scenarios").glob("*.yaml"))


def config_for(method: str, scenario: str, root: Path | None = None) -> tuple[str, Path]:
    """``(name, path)`` of ``method``'s config for ``scenario``: the file named after the scenario
    where there is one, else ``default``; in ``root/<method>/`` where given (``--configs``), else in
    the shipped ``configs/<method>/``."""
    folder = configs_dir(method) if root is None else root / method
    own = folder / f"{scenario}.yaml"
    return (scenario, own) if own.is_file() else ("default", folder / "default.yaml")


def load_method_config(method: str, path: Path) -> Any:
    if method == "hdpo":
        from meio.agents.hdpo import load_hdpo_config

        return load_hdpo_config(path)
    from meio.agents.config import load_config

    return load_config(path)


def scale_config(method: str, cfg: Any, scale: float) -> Any:
    """The config with its training budget times ``scale`` (at least one step); below 1 the
    in-training evaluations and checkpoints only at the end, and at most 500 periods each, so a
    smoke run is short."""
    if scale == 1.0:
        return cfg
    if method == "hdpo":
        cfg = cfg.replace(iterations=max(1, round(cfg.iterations * scale)))
    else:
        cfg = cfg.replace(total_steps=max(cfg.n_envs, round(cfg.total_steps * scale)))
    if scale < 1.0:
        cfg = cfg.replace(eval_every=0, checkpoint_every=0, eval_periods=min(cfg.eval_periods, 500))
    return cfg


def skip_reason(method: str, topo: Topology, cfg: Any) -> str | None:
    """Why ``method`` with ``cfg`` cannot train on ``topo``, or ``None``."""
    if method == "hdpo":
        from meio.agents.hdpo import hdpo_scenario_problem

        return hdpo_scenario_problem(topo, cfg)
    return None


@dataclass
class Settings:
    """The final evaluation's settings (the same for every policy of a scenario: common random numbers)."""

    periods: int
    warmup: int
    replications: int
    seed: int

    def as_dict(self) -> dict[str, int]:
        return {"periods": self.periods, "warmup": self.warmup, "replications": self.replications, "seed": self.seed}


@dataclass
class Measured:
    """What the table needs of one evaluation."""

    policy: str
    cost_mean: float
    cost_ci95: float
    replication_costs: np.ndarray
    spread: float
    drifting: int

    @classmethod
    def of(cls, policy: str, ev: Evaluation) -> Measured:
        return cls(policy, ev.cost_mean, ev.cost_ci95, ev.replication_costs, ev.spread, len(ev.drifting))

    def to_json(self, settings: Settings) -> dict[str, Any]:
        return {
            "policy": self.policy,
            "settings": settings.as_dict(),
            "cost_mean": self.cost_mean,
            "cost_ci95": self.cost_ci95,
            "replication_costs": [float(x) for x in self.replication_costs],
            "spread": self.spread,
            "drifting": self.drifting,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Measured:
        return cls(
            str(data["policy"]),
            float(data["cost_mean"]),
            float(data["cost_ci95"]),
            np.asarray(data["replication_costs"], dtype=float),
            float(data["spread"]),
            int(data["drifting"]),
        )


def cached(path: Path, settings: Settings, reuse: bool, newer_than: float = 0.0) -> Measured | None:
    """The evaluation stored at ``path`` if ``reuse`` and it was made with ``settings`` after
    ``newer_than`` (a run's training), else ``None``."""
    if not reuse or not path.is_file() or path.stat().st_mtime < newer_than:
        return None
    try:
        data = json.loads(path.read_text())
        if data.get("settings") != settings.as_dict():
            return None
        return Measured.from_json(data)
    except (ValueError, KeyError, TypeError):
        return None  # unreadable: evaluate again


def store(path: Path, m: Measured, settings: Settings) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.partial")
    tmp.write_text(json.dumps(m.to_json(settings), indent=1))
    tmp.replace(path)


def best_classical(topo: Topology, settings: Settings, out: Path, reuse: bool) -> Measured:
    """The benchmark's reference policy, evaluated on ``settings`` (see the module docstring)."""
    path = out / "evaluations" / topo.scenario.name / "classical.json"
    hit = cached(path, settings, reuse)
    if hit is not None:
        return hit
    from meio.baselines.run import reference_baseline

    kw = dict(settings.as_dict())
    found = reference_baseline(topo, **kw)
    if found is not None:
        b, ev = found
        m = Measured.of(b.name, ev)
    else:
        from meio.benchmark import run_benchmark

        res = run_benchmark(topo, **kw)
        m = Measured.of(res.reference, res.evaluations[res.reference])
    store(path, m, settings)
    return m


class LazyReference:
    """The best classical policy's evaluation and the evaluation simulator of one scenario, computed
    when a method first needs them: a scenario no method applies to costs no search."""

    def __init__(self, topo: Topology, settings: Settings, out: Path, reuse: bool) -> None:
        self.topo, self.settings, self.out, self.reuse = topo, settings, out, reuse
        self.value: tuple[Measured, Simulator] | None = None

    def __call__(self) -> tuple[Measured, Simulator]:
        if self.value is None:
            st = self.settings
            _note(f"{self.topo.scenario.name}: best classical policy on {st.replications} x {st.periods:,} periods")
            ref = best_classical(self.topo, st, self.out, self.reuse)
            self.value = (ref, Simulator(self.topo, n=st.replications))
        return self.value


def paired_gap(agent: np.ndarray, reference: np.ndarray) -> tuple[float, float]:
    """``(gap %, 95% half-width %)`` of ``agent - reference`` (per-replication mean costs on the same
    seeds) relative to the reference's mean cost; see the module docstring."""
    d, ci = mean_ci95(np.asarray(agent, dtype=float) - np.asarray(reference, dtype=float))
    base = float(np.mean(reference))
    return 100.0 * d / base, 100.0 * ci / base


def run_folder_done(run: Path) -> bool:
    from meio.agents.policy import find_saved_agent

    if not (run / TIMING_FILE).is_file():
        return False
    try:
        find_saved_agent(run)
    except (FileNotFoundError, ValueError):
        return False
    return True


def train_method(method: str, scenario: str, cfg: Any, run: Path, seed: int) -> None:
    """Train and write ``timing.json`` (wall and CPU seconds of the training call)."""
    wall, cpu = time.perf_counter(), time.process_time()
    if method == "hdpo":
        from meio.agents.hdpo import train_hdpo

        result = train_hdpo(scenario, cfg, run, seed=seed, progress=False)
    else:
        from meio.agents.train import train

        result = train(scenario, cfg, run, seed=seed, progress=False)
    timing = {
        "wall_s": time.perf_counter() - wall,
        "cpu_s": time.process_time() - cpu,
        "steps": result.steps,
    }
    (run / TIMING_FILE).write_text(json.dumps(timing, indent=1))


def method_row(
    method: str,
    scenario: str,
    topo: Topology,
    seed: int,
    settings: Settings,
    args: argparse.Namespace,
    reference: Callable[[], tuple[Measured, Simulator]],
) -> dict[str, Any]:
    """The table's columns of one method on one scenario and seed (training it first if needed);
    ``reference()`` gives the best classical policy's evaluation and the evaluation simulator."""
    name, path = config_for(method, scenario, args.configs)
    cfg = scale_config(method, load_method_config(method, path), args.steps_scale)
    row: dict[str, Any] = {f"{method}_config": name}
    why = skip_reason(method, topo, cfg)
    if why is not None:
        row[f"{method}_note"] = f"skipped: {why}"
        return row
    run = args.out / "runs" / scenario / f"{method}-seed{seed}"
    if not (args.reuse and run_folder_done(run)):
        if run.exists() and any(run.iterdir()):
            raise SystemExit(
                f"--reuse: {run} is an unfinished run (no {TIMING_FILE} or no saved agent); remove it or give "
                "another --out"
            )
        _note(f"{scenario}: training {method} (config {name}, seed {seed}) in {run}")
        train_method(method, scenario, cfg, run, seed)
    timing = json.loads((run / TIMING_FILE).read_text())
    ref, sim = reference()
    eval_path = args.out / "evaluations" / scenario / f"{method}-seed{seed}.json"
    m = cached(eval_path, settings, args.reuse, newer_than=(run / TIMING_FILE).stat().st_mtime)
    if m is None:
        from meio.agents.policy import load_agent

        _note(f"{scenario}: evaluating {method} seed {seed} on {settings.replications} x {settings.periods:,}")
        ev = evaluate(sim, load_agent(run, name=f"{method}-seed{seed}"), **settings.as_dict())
        m = Measured.of(f"{method}-seed{seed}", ev)
        store(eval_path, m, settings)
    gap, gap_ci = paired_gap(m.replication_costs, ref.replication_costs)
    row.update(
        {
            f"{method}_cost": m.cost_mean,
            f"{method}_ci95": m.cost_ci95,
            f"{method}_gap_pct": gap,
            f"{method}_gap_ci95_pct": gap_ci,
            f"{method}_spread_pct": 100.0 * m.spread,
            f"{method}_drifting": m.drifting,
            f"{method}_train_wall_s": timing["wall_s"],
            f"{method}_train_cpu_s": timing["cpu_s"],
            f"{method}_note": "",
        }
    )
    return row


def _note(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _fmt(value: Any, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return f"{value:.{digits}f}"


def display_table(df: pd.DataFrame, methods: Sequence[str]) -> pd.DataFrame:
    """The table of ``results.md``: ``x ± ci`` cells, one column group per method, notes last."""
    cols: dict[str, list[str]] = {"scenario": [], "seed": [], "best classical": []}
    for m in methods:
        for c in (f"{m} cost", f"{m} gap %", f"{m} spread %", f"{m} train s (wall / CPU)"):
            cols[c] = []
    cols["notes"] = []
    for _, r in df.iterrows():
        cols["scenario"].append(r["scenario"])
        cols["seed"].append(str(r["seed"]))
        cols["best classical"].append(
            f"{r['classical']}: {_fmt(r['classical_cost'])} ± {_fmt(r['classical_ci95'])}"
            if r["classical"]
            else "— (no method applies)"
        )
        notes = []
        for m in methods:
            has = f"{m}_cost" in r and not pd.isna(r.get(f"{m}_cost"))
            cols[f"{m} cost"].append(f"{_fmt(r[f'{m}_cost'])} ± {_fmt(r[f'{m}_ci95'])}" if has else "—")
            cols[f"{m} gap %"].append(f"{r[f'{m}_gap_pct']:+.2f} ± {r[f'{m}_gap_ci95_pct']:.2f}" if has else "—")
            cols[f"{m} spread %"].append(f"{r[f'{m}_spread_pct']:.2f}" if has else "—")
            cols[f"{m} train s (wall / CPU)"].append(
                f"{r[f'{m}_train_wall_s']:.0f} / {r[f'{m}_train_cpu_s']:.0f}" if has else "—"
            )
            note = r.get(f"{m}_note")
            if isinstance(note, str) and note:
                notes.append(f"{m} ({r[f'{m}_config']}): {note}")
            elif has:
                notes.append(f"{m}: config {r[f'{m}_config']}")
        cols["notes"].append("; ".join(notes))
    return pd.DataFrame(cols)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scenarios", default="all", help="comma-separated shipped scenarios (default: all)")
    parser.add_argument("--methods", default=",".join(METHODS), help="comma-separated of ppo, hdpo (default: both)")
    parser.add_argument("--seeds", "--seed", default="0", help="comma-separated training seeds (default: 0)")
    parser.add_argument(
        "--periods", type=int, default=None, help=f"periods per evaluation replication (default {DEFAULT_PERIODS:,})"
    )
    parser.add_argument(
        "--replications", type=int, default=None, help=f"evaluation replications (default {DEFAULT_REPLICATIONS})"
    )
    parser.add_argument("--warmup", type=int, default=0, help="evaluation warm-up periods (default 0: from the start)")
    parser.add_argument("--eval-seed", type=int, default=0, help="first seed of the evaluation (default 0)")
    parser.add_argument("--out", type=Path, default=Path("runs/learned_quality"), help="output folder")
    parser.add_argument(
        "--configs",
        type=Path,
        default=None,
        help="folder of configs to train with, DIR/<method>/<scenario>.yaml or DIR/<method>/default.yaml "
        "(default: the shipped configs/)",
    )
    parser.add_argument("--reuse", action="store_true", help="reuse finished runs and evaluations in --out")
    budget = parser.add_mutually_exclusive_group()
    budget.add_argument("--steps-scale", type=float, default=None, help="training budget x this (default 1)")
    budget.add_argument(
        "--quick",
        action="store_true",
        help=f"smoke run: budgets x {QUICK_SCALE}, {QUICK_REPLICATIONS} x {QUICK_PERIODS:,} evaluation periods",
    )
    args = parser.parse_args(argv)

    known = shipped_scenarios()
    args.scenarios = known if args.scenarios == "all" else [s.strip() for s in args.scenarios.split(",") if s.strip()]
    if not args.scenarios:
        parser.error("--scenarios: empty; give shipped scenario names or 'all'")
    for s in args.scenarios:
        if s not in known:
            parser.error(f"--scenarios: {s!r} is not a shipped scenario; choose from {', '.join(known)}")
    args.methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    if not args.methods:
        parser.error(f"--methods: empty; choose from {', '.join(METHODS)}")
    for m in args.methods:
        if m not in METHODS:
            parser.error(f"--methods: {m!r} is not a learned method; choose from {', '.join(METHODS)}")
    try:
        args.seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    except ValueError:
        parser.error(f"--seeds: {args.seeds!r} is not a comma-separated list of integers")
    if not args.seeds or any(s < 0 for s in args.seeds):
        parser.error(f"--seeds: {args.seeds!r}; give integers >= 0")
    if args.quick:
        args.steps_scale = QUICK_SCALE
    elif args.steps_scale is None:
        args.steps_scale = 1.0
    if not (math.isfinite(args.steps_scale) and args.steps_scale > 0):
        parser.error(f"--steps-scale: {args.steps_scale} is not a number > 0")
    if args.periods is None:
        args.periods = QUICK_PERIODS if args.quick else DEFAULT_PERIODS
    if args.replications is None:
        args.replications = QUICK_REPLICATIONS if args.quick else DEFAULT_REPLICATIONS
    if args.replications < 2:
        parser.error(f"--replications: {args.replications}; a paired confidence interval needs at least 2")
    try:
        check_evaluation(args.periods, args.warmup, args.replications, args.eval_seed)
    except ValueError as exc:
        parser.error(f"--periods/--warmup/--replications/--eval-seed: {exc}")
    if args.out.exists() and not args.out.is_dir():
        parser.error(f"--out: {args.out} is a file; give a folder")
    if args.configs is not None:
        for m in args.methods:
            default = args.configs / m / "default.yaml"
            if not default.is_file():
                parser.error(f"--configs: {default} not found; each method needs a default.yaml")
    if not args.reuse:
        for s in args.scenarios:
            for m in args.methods:
                for seed in args.seeds:
                    run = args.out / "runs" / s / f"{m}-seed{seed}"
                    if run.exists() and any(run.iterdir()):
                        parser.error(
                            f"--out: {run} exists; pass --reuse to use its finished runs, or give another --out"
                        )
    return args


def main(argv: Sequence[str] | None = None) -> pd.DataFrame:
    """Run the leaderboard; returns the table also written to ``results.csv``."""
    import torch

    args = parse_args(argv)
    torch.set_num_threads(1)  # a small, shared machine: one thread is fastest and steadiest
    settings = Settings(args.periods, args.warmup, args.replications, args.eval_seed)
    rows = []
    for scenario in args.scenarios:
        try:
            topo = resolve(scenario)
        except ScenarioError as exc:
            raise SystemExit(f"--scenarios: {scenario}: {exc}") from None
        reference = LazyReference(topo, settings, args.out, args.reuse)
        for seed in args.seeds:
            row: dict[str, Any] = {"scenario": scenario, "seed": seed}
            for method in args.methods:
                try:
                    row.update(method_row(method, scenario, topo, seed, settings, args, reference))
                except ConfigError as exc:
                    raise SystemExit(f"{method} config for {scenario}: {exc}") from None
            rows.append(row)
        for row in rows[len(rows) - len(args.seeds) :]:
            ref = reference.value[0] if reference.value else None
            row.update(
                {
                    "classical": ref.policy if ref else "",
                    "classical_cost": ref.cost_mean if ref else math.nan,
                    "classical_ci95": ref.cost_ci95 if ref else math.nan,
                    "classical_spread_pct": 100.0 * replication_spread(ref.replication_costs) if ref else math.nan,
                }
            )
    df = pd.DataFrame(rows)
    first = ["scenario", "seed", "classical", "classical_cost", "classical_ci95", "classical_spread_pct"]
    df = df[first + [c for c in df.columns if c not in first]]
    args.out.mkdir(parents=True, exist_ok=True)
    df.to_csv(args.out / "results.csv", index=False)
    from meio.benchmark import markdown_table

    command = " ".join(
        shlex.quote(a) for a in [".venv/bin/python", "benchmarks/learned_quality.py", *(argv or sys.argv[1:])]
    )
    text = [
        "# Learned policies against the best classical policy",
        "",
        f"Command: `{command}`",
        "",
        f"Evaluation: {settings.replications} replications x {settings.periods:,} periods "
        f"(warm-up {settings.warmup}), seeds {settings.seed}..{settings.seed + settings.replications - 1}, "
        f"common random numbers; training budget x {args.steps_scale:g}. Cost per period ± 95% CI; "
        "gap: paired difference to the best classical policy, % of its cost ± 95% CI; spread: "
        "max / median replication cost - 1.",
        "",
        markdown_table(display_table(df, args.methods)),
        "",
    ]
    (args.out / "results.md").write_text("\n".join(text))
    print("\n".join(text))
    return df


if __name__ == "__main__":
    main()
