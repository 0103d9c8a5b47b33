"""The benchmark: every applicable baseline and every given PPO model, on common random numbers.

All policies are simulated on the same seeds (``seed .. seed + replications - 1``), so their cost
differences are paired: the gap of each policy to the best (or, where Clark-Scarf applies, to the
optimum) comes with a confidence interval of the paired difference. The table has one row per
policy; :func:`write_report` writes ``results.csv``, ``results.md``, the plots and ``report.md``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from meio.agents.policy import PPOPolicy, find_saved_agent
from meio.baselines.base import Baseline
from meio.baselines.run import BASELINE_NAMES, choose_reference, run_baselines
from meio.envs.metrics import Evaluation, check_evaluation, evaluate, mean_ci95
from meio.envs.policies import Policy
from meio.envs.run_settings import check_run_settings
from meio.envs.scenario import Scenario, load_scenario
from meio.envs.simulator import Simulator
from meio.envs.topology import COST_NAMES, compile_topology


@dataclass
class BenchmarkResult:
    """The table, the evaluations behind it, and what was skipped and why."""

    scenario: Scenario
    table: pd.DataFrame
    evaluations: dict[str, Evaluation]
    policies: dict[str, Policy]
    skipped: dict[str, str]
    reference: str
    settings: dict[str, object] = field(default_factory=dict)
    models: dict[str, Path] = field(default_factory=dict)
    #: Each baseline's notes (how it was found; the lanes and modes it never orders on).
    notes: dict[str, str] = field(default_factory=dict)


def _row(name: str, kind: str, ev: Evaluation, node_names: Sequence[str]) -> dict[str, object]:
    row: dict[str, object] = {"policy": name, "kind": kind, "cost_mean": ev.cost_mean, "cost_ci95": ev.cost_ci95}
    # "" for a stable policy; else why its cost is no long-run cost (meio.envs.metrics.backlog_trend).
    row["unstable"] = ev.instability()
    row.update({f"cost_{k}": v for k, v in ev.cost_split.items()})
    row["fill_rate"] = ev.fill_rate["network"]
    row["cycle_service_level"] = ev.cycle_service_level["network"]
    row["stockout_frequency"] = ev.stockout_frequency["network"]
    on_hand = np.array([ev.mean_on_hand[n] for n in node_names])
    turnover = np.array([ev.inventory_turnover[n] for n in node_names])
    shipped = np.nansum(np.nan_to_num(turnover) * on_hand)
    row["inventory_turnover"] = float(shipped / on_hand.sum()) if on_hand.sum() > 0 else math.nan
    row.update({f"stock_{n}": ev.mean_on_hand[n] for n in node_names})
    row.update({f"order_var_ratio_{n}": ev.order_variance_ratio[n] for n in node_names})
    return row


def _levels_text(b: Baseline) -> str:
    """``"node=level; ..."`` (with ``s=`` reorder points for (s, S) rules): the policy's parameters."""
    reorder = b.extra.get("reorder_points") or {}
    parts = []
    for node, level in b.levels.items():
        s = f"s={reorder[node]:g} " if node in reorder else ""
        parts.append(f"{node}={s}{'S=' if s else ''}{level:g}")
    return "; ".join(parts)


def run_benchmark(scenario: str | Path | Scenario, models: Sequence[str | Path] = (), periods: int = 10_000,
                  warmup: int = 200, replications: int = 10, seed: int = 0, baselines: Sequence[str] = BASELINE_NAMES,
                  search_periods: int = 1000, search_replications: int = 8, progress: bool = False,
                  extra_policies: Mapping[str, Policy] | None = None) -> BenchmarkResult:
    """Evaluate the baselines and the models on the same seeds and build the table.

    ``extra_policies``: more policies to compare, ``{label: policy}`` (any :class:`Policy`, e.g. a
    rule of one's own), listed with kind ``policy``."""
    check_evaluation(periods, warmup, replications, seed)       # before any model is loaded or searched
    check_run_settings(search_periods=search_periods, search_replications=search_replications)
    sc = load_scenario(scenario)
    loaded: dict[str, PPOPolicy] = {}
    model_dirs: dict[str, Path] = {}
    for k, run in enumerate(models):
        folder = find_saved_agent(run)                  # fails early, before any simulation
        label = f"ppo:{Path(run).resolve().name}"
        if label in loaded:
            label = f"{label}#{k}"
        loaded[label] = PPOPolicy.load(folder, name=label)
        model_dirs[label] = Path(run)
    report = run_baselines(sc, periods=periods, warmup=warmup, replications=replications, seed=seed,
                           search_periods=search_periods, search_replications=search_replications,
                           include=tuple(baselines), progress=progress)
    sim = Simulator(sc, n=replications)
    node_names = sim.topology.node_names
    evaluations: dict[str, Evaluation] = {}
    policies: dict[str, Policy] = {}
    rows = []
    for b, ev in report.results:
        evaluations[b.name] = ev
        policies[b.name] = b.policy(sim.topology)
        rows.append({**_row(b.name, b.kind, ev, node_names), "levels": _levels_text(b)})
    for label, policy in loaded.items():
        ev = evaluate(sim, policy, periods=periods, warmup=warmup, replications=replications, seed=seed,
                      progress=progress)
        evaluations[label] = ev
        policies[label] = policy
        rows.append({**_row(label, "ppo", ev, node_names), "levels": ""})
    for label, policy in (extra_policies or {}).items():
        if label in evaluations:
            raise ValueError(f"extra_policies.{label}: the name of a baseline or model already in the table")
        ev = evaluate(sim, policy, periods=periods, warmup=warmup, replications=replications, seed=seed,
                      progress=progress)
        evaluations[label] = ev
        policies[label] = policy
        rows.append({**_row(label, "policy", ev, node_names), "levels": ""})
    if not rows:
        raise ValueError(f"scenario {sc.name}: no policy to benchmark (skipped: {report.skipped})")
    table = pd.DataFrame(rows)
    reference = choose_reference({b.name: ev for b, ev in report.results})
    if reference is None:
        # None of the reference baselines was run: the cheapest policy of the table, a stable one
        # if any (an unstable policy's cost grows with the window).
        stable = table[table["unstable"] == ""]
        reference = str(table.loc[(stable if len(stable) else table).cost_mean.idxmin(), "policy"])
    ref = evaluations[reference]
    gaps, gap_cis = [], []
    for name in table.policy:
        ev = evaluations[name]
        if replications >= 2:
            diff = ev.per_period_cost.mean(axis=1) - ref.per_period_cost.mean(axis=1)
            d, ci = mean_ci95(diff) if np.any(diff) else (0.0, 0.0)
        else:
            d, ci = ev.cost_mean - ref.cost_mean, math.nan
        gaps.append(100.0 * d / ref.cost_mean)
        gap_cis.append(100.0 * ci / ref.cost_mean)
    table.insert(4, "gap_pct", gaps)
    table.insert(5, "gap_ci95_pct", gap_cis)
    table = table.sort_values("cost_mean", kind="stable").reset_index(drop=True)
    settings = {"periods": periods, "warmup": warmup, "replications": replications, "seed": seed,
                "allocation": sc.allocation, "unmet_demand": sc.unmet_demand,
                "ci_method": ref.ci_method}
    return BenchmarkResult(scenario=sc, table=table, evaluations=evaluations, policies=policies,
                           skipped=report.skipped, reference=reference, settings=settings, models=model_dirs,
                           notes={b.name: b.notes for b, _ in report.results if b.notes})


def markdown_table(df: pd.DataFrame, digits: int = 4) -> str:
    """A GitHub-flavoured Markdown table (no extra dependency)."""
    def cell(v: object) -> str:
        if isinstance(v, float):
            return "" if math.isnan(v) else f"{v:.{digits}g}" if abs(v) >= 1e5 else f"{v:.{digits}f}"
        return str(v)

    head = "| " + " | ".join(df.columns) + " |"
    rule = "|" + "|".join("---" for _ in df.columns) + "|"
    body = ["| " + " | ".join(cell(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join([head, rule, *body])


def summary_columns(df: pd.DataFrame) -> pd.DataFrame:
    """The columns printed on the terminal (the files hold them all)."""
    cols = ["policy", "kind", "cost_mean", "cost_ci95", "gap_pct", "gap_ci95_pct", "fill_rate",
            "cycle_service_level", "inventory_turnover"]
    cols += [f"cost_{k}" for k in COST_NAMES if df[f"cost_{k}"].abs().sum() > 0]
    if (df["unstable"] != "").any():
        cols.insert(2, "unstable")
    return df[cols]


def write_report(result: BenchmarkResult, out_dir: str | Path, frontier: bool = True,
                 frontier_periods: int | None = None) -> dict[str, Path]:
    """Write ``results.csv``, ``results.md``, the PNG plots and ``report.md`` into ``out_dir``."""
    from meio import plots

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files: dict[str, Path] = {}
    table = result.table
    files["csv"] = out / "results.csv"
    table.to_csv(files["csv"], index=False)
    files["md"] = out / "results.md"
    files["md"].write_text(markdown_table(table) + "\n")
    sc = result.scenario
    nodes = compile_topology(sc).node_names
    st = result.settings
    if frontier:
        pts = plots.frontier_points(sc, frontier_periods or min(int(st["periods"]), 4000), int(st["warmup"]),
                                    max(2, min(int(st["replications"]), 8)), int(st["seed"]))
        files["frontier"] = out / "frontier.png"
        plots.plot_frontier(pts, {r.policy: (r.fill_rate, r.cost_mean) for r in table.itertuples()},
                            files["frontier"], f"{sc.name}: cost against fill rate")
    files["stock"] = out / "stock_positioning.png"
    plots.plot_grouped({r["policy"]: {n: r[f"stock_{n}"] for n in nodes} for _, r in table.iterrows()}, nodes,
                       files["stock"], "mean on-hand stock", f"{sc.name}: where the stock is held")
    files["bullwhip"] = out / "bullwhip.png"
    plots.plot_grouped({r["policy"]: {n: r[f"order_var_ratio_{n}"] for n in nodes} for _, r in table.iterrows()},
                       nodes, files["bullwhip"], "order variance / demand variance",
                       f"{sc.name}: order-variance ratio per echelon", hline=1.0)
    if result.models:
        path = out / "learning_curves.png"
        if plots.plot_learning_curves(result.models, path, f"{sc.name}: evaluation cost while training"):
            files["learning"] = path
    lines = [f"# Benchmark: {sc.name}", ""]
    if sc.description:
        lines += [sc.description.strip(), ""]
    lines += [
        f"Every policy simulated on the same {st['replications']} seeds ({st['seed']}.."
        f"{int(st['seed']) + int(st['replications']) - 1}), {st['periods']} periods each after a warm-up of "
        f"{st['warmup']}; unmet demand: {st['unmet_demand']}; allocation: {st['allocation']}. `cost_ci95` is the "
        f"half-width of the 95% confidence interval ({st['ci_method']}); `gap_pct` is the paired difference to "
        f"**{result.reference}** ({'the optimum' if result.reference == 'clark_scarf' else 'the cheapest stable baseline'}) "
        "on common random numbers, with its own interval `gap_ci95_pct`.", "",
        markdown_table(summary_columns(table)), "",
    ]
    unstable = table[table["unstable"] != ""]
    if len(unstable):
        lines += ["**Unstable policies: their costs are not meaningful.** Over the second half of the window the "
                  "customer backlog of these policies grows without bound (their supply falls short of demand), so "
                  "their average cost grows with the length of the run and is no long-run cost:", ""]
        lines += [f"- `{r.policy}`: {r.unstable}" for r in unstable.itertuples()]
        lines.append("")
    lines += [
        "The full table (cost split, stock and order-variance ratio per node) is in `results.csv` and "
        "`results.md`.", "",
    ]
    with_levels = table[table["levels"] != ""]
    if len(with_levels):
        lines += ["Levels of the base-stock policies (echelon or installation, as `kind` says; (s, S) rules "
                  "give both):", ""]
        lines += [f"- `{r.policy}` ({r.kind}): {r.levels}" for r in with_levels.itertuples()]
        lines.append("")
    if result.notes:
        lines += ["Notes on the baselines (how each was found; a single-sourcing baseline names the lanes and "
                  "modes it never orders on):", ""]
        lines += [f"- `{name}`: {note}" for name, note in result.notes.items()]
        lines.append("")
    if result.skipped:
        lines += ["Baselines that do not apply:", ""]
        lines += [f"- `{name}`: {why}" for name, why in result.skipped.items()]
        lines.append("")
    captions = {"frontier": "Cost against fill rate: the base-stock family (local rule at service levels "
                            "0.5 to 0.999) and each policy.",
                "stock": "Where the stock is held: mean on-hand per node.",
                "bullwhip": "Order-variance ratio per node (1 = no amplification).",
                "learning": "Learning curves: evaluation cost on fixed seeds while training, with the "
                            "baseline the run was measured against."}
    for key, caption in captions.items():
        if key in files:
            lines += [f"![{key}]({files[key].name})", "", caption, ""]
    files["report"] = out / "report.md"
    files["report"].write_text("\n".join(lines))
    return files
