"""The benchmark: every applicable baseline and every given trained agent (PPO or HDPO), on common random numbers.

All policies are simulated on the same seeds (``seed .. seed + replications - 1``), so their cost
differences are paired: the gap of each policy to the best (or, where Clark-Scarf applies, to the
optimum) comes with a confidence interval of the paired difference. The table has one row per
policy; :func:`write_report` writes ``results.csv``, ``results.md``, the plots and ``report.md``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from meio.baselines.base import Baseline
from meio.baselines.run import BASELINE_NAMES, choose_reference, run_baselines
from meio.envs.metrics import Evaluation, check_evaluation, evaluate, mean_ci95
from meio.envs.policies import Policy
from meio.envs.resolve import ScenarioLike, resolve
from meio.envs.run_settings import check_run_settings
from meio.envs.scenario import Scenario
from meio.envs.simulator import Simulator
from meio.envs.topology import COST_NAMES, Topology


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
    #: The scenario's compiled network (default: compiled from ``scenario`` when not given).
    topology: Topology | None = None

    def __post_init__(self) -> None:
        if self.topology is None:
            self.topology = resolve(self.scenario)


def _row(name: str, kind: str, ev: Evaluation, node_names: Sequence[str]) -> dict[str, object]:
    row: dict[str, object] = {"policy": name, "kind": kind, "cost_mean": ev.cost_mean, "cost_ci95": ev.cost_ci95}
    # "" for a stable policy; else why its cost is no long-run cost (meio.envs.metrics.backlog_trend).
    row["unstable"] = ev.instability()
    row.update({f"cost_{k}": v for k, v in ev.cost_split.items()})
    row["fill_rate"] = ev.fill_rate["network"]
    row["cycle_service_level"] = ev.cycle_service_level["network"]
    row["stockout_frequency"] = ev.stockout_frequency["network"]
    row.update(service_columns(ev))
    on_hand = np.array([ev.mean_on_hand[n] for n in node_names])
    turnover = np.array([ev.inventory_turnover[n] for n in node_names])
    shipped = np.nansum(np.nan_to_num(turnover) * on_hand)
    row["inventory_turnover"] = float(shipped / on_hand.sum()) if on_hand.sum() > 0 else math.nan
    row.update({f"stock_{n}": ev.mean_on_hand[n] for n in node_names})
    row.update({f"order_var_ratio_{n}": ev.order_variance_ratio[n] for n in node_names})
    return row


def service_columns(ev: Evaluation) -> dict[str, object]:
    """The cost-and-service columns of one evaluation (docs/model.md, "Service by segment"): the
    penalty cost and the inventory investment on hand and in transit per period (with CIs); per
    demand node ``n`` its fill rate with CI, cycle service level, stockout frequency and, with a
    ``service_target``, the target and ``target_met_n``; per segment ``s`` (when the scenario names
    segments) the same demand-weighted as ``segment_s_...``. ``results.csv`` and ``sweep.csv`` carry them."""
    cols: dict[str, object] = {
        "cost_penalty": ev.penalty_cost,
        "investment_on_hand": ev.investment_on_hand[0],
        "investment_on_hand_ci95": ev.investment_on_hand[1],
        "investment_in_transit": ev.investment_in_transit[0],
        "investment_in_transit_ci95": ev.investment_in_transit[1],
    }
    tables = [("", ev.service_table())]
    if any(seg != node for node, seg in ev.segments.items()):
        tables.append(("segment_", ev.segment_table()))
    for prefix, table in tables:
        for name, r in table.iterrows():
            key = f"{prefix}{name}"
            cols[f"fill_rate_{key}"] = r["fill_rate"]
            cols[f"fill_rate_ci95_{key}"] = r["fill_rate_ci95"]
            cols[f"cycle_service_level_{key}"] = r["cycle_service_level"]
            cols[f"stockout_frequency_{key}"] = r["stockout_frequency"]
            if r["target_met"] is not None:
                cols[f"target_{key}"] = r["target"]
                cols[f"target_met_{key}"] = bool(r["target_met"])
    return cols


def _levels_text(b: Baseline) -> str:
    """``"node=level; ..."`` (with ``s=`` reorder points for (s, S) rules): the policy's parameters."""
    reorder = b.extra.get("reorder_points") or {}
    parts = []
    for node, level in b.levels.items():
        s = f"s={reorder[node]:g} " if node in reorder else ""
        parts.append(f"{node}={s}{'S=' if s else ''}{level:g}")
    return "; ".join(parts)


def run_benchmark(
    scenario: ScenarioLike,
    models: Sequence[str | Path] = (),
    periods: int = 10_000,
    warmup: int = 200,
    replications: int = 10,
    seed: int = 0,
    baselines: Sequence[str] = BASELINE_NAMES,
    search_periods: int = 1000,
    search_replications: int = 8,
    progress: bool = False,
    extra_policies: Mapping[str, Policy] | None = None,
) -> BenchmarkResult:
    """Evaluate the baselines and the models on the same seeds and build the table.

    ``extra_policies``: more policies to compare, ``{label: policy}`` (any :class:`Policy`, e.g. a
    rule of one's own), listed with kind ``policy``."""
    check_evaluation(periods, warmup, replications, seed)  # before any model is loaded or searched
    check_run_settings(search_periods=search_periods, search_replications=search_replications)
    topo = resolve(scenario)
    sc = topo.scenario
    loaded: dict[str, Policy] = {}
    algos: dict[str, str] = {}  # the kind column: the algorithm that trained it
    model_dirs: dict[str, Path] = {}
    if models:
        from meio.agents.policy import find_saved_agent, load_agent, saved_agent_algo
    for k, run in enumerate(models):
        folder = find_saved_agent(run)  # fails early, before any simulation
        algo = saved_agent_algo(folder)
        label = f"{algo}:{Path(run).resolve().name}"
        if label in loaded:
            label = f"{label}#{k}"
        loaded[label] = load_agent(folder, name=label)
        algos[label] = algo
        model_dirs[label] = Path(run)
    report = run_baselines(
        topo,
        periods=periods,
        warmup=warmup,
        replications=replications,
        seed=seed,
        search_periods=search_periods,
        search_replications=search_replications,
        include=tuple(baselines),
        progress=progress,
    )
    sim = Simulator(topo, n=replications)
    node_names = topo.node_names
    evaluations: dict[str, Evaluation] = {}
    policies: dict[str, Policy] = {}
    rows = []
    for b, ev in report.results:
        evaluations[b.name] = ev
        policies[b.name] = b.policy(sim.topology)
        rows.append({**_row(b.name, b.kind, ev, node_names), "levels": _levels_text(b)})
    for label, policy in loaded.items():
        ev = evaluate(
            sim, policy, periods=periods, warmup=warmup, replications=replications, seed=seed, progress=progress
        )
        evaluations[label] = ev
        policies[label] = policy
        rows.append({**_row(label, algos[label], ev, node_names), "levels": ""})
    for label, policy in (extra_policies or {}).items():
        if label in evaluations:
            raise ValueError(f"extra_policies.{label}: the name of a baseline or model already in the table")
        ev = evaluate(
            sim, policy, periods=periods, warmup=warmup, replications=replications, seed=seed, progress=progress
        )
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
    settings = {
        "periods": periods,
        "warmup": warmup,
        "replications": replications,
        "seed": seed,
        "allocation": sc.allocation,
        "unmet_demand": sc.unmet_demand,
        "ci_method": ref.ci_method,
    }
    return BenchmarkResult(
        scenario=sc,
        table=table,
        evaluations=evaluations,
        policies=policies,
        skipped=report.skipped,
        reference=reference,
        settings=settings,
        models=model_dirs,
        notes={b.name: b.notes for b, _ in report.results if b.notes},
        topology=topo,
    )


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
    cols = [
        "policy",
        "kind",
        "cost_mean",
        "cost_ci95",
        "gap_pct",
        "gap_ci95_pct",
        "fill_rate",
        "cycle_service_level",
        "inventory_turnover",
    ]
    cols += [f"cost_{k}" for k in COST_NAMES if df[f"cost_{k}"].abs().sum() > 0]
    if (df["unstable"] != "").any():
        cols.insert(2, "unstable")
    return df[cols]


def service_section(result: BenchmarkResult) -> list[str]:
    """Lines of ``report.md``: per policy, each segment's fill rate with its CI against its target
    (a segment is a demand node unless the scenario groups them), then the inventory investment
    beside the penalty cost, so that service and its cost read apart."""

    def cell(r: pd.Series) -> str:
        text = f"{r['fill_rate']:.4f} +- {r['fill_rate_ci95']:.4f}"
        if r["target_met"] is not None:
            text += f" ({'met' if r['target_met'] else '**missed**'} {r['target']:.4f})"
        return text

    lines = [
        "Service per segment (fill rate +- 95% CI; a target is met when the measured fill rate is at least "
        "the target) and what it costs (inventory investment per period on hand and in transit, and the "
        "penalty cost):",
        "",
    ]
    rows = []
    for name in result.table.policy:
        ev = result.evaluations[name]
        seg = ev.segment_table()
        rows.append(
            {
                "policy": name,
                **{str(k): cell(r) for k, r in seg.iterrows()},
                "investment_on_hand": ev.investment_on_hand[0],
                "investment_in_transit": ev.investment_in_transit[0],
                "cost_penalty": ev.penalty_cost,
            }
        )
    return lines + [markdown_table(pd.DataFrame(rows)), ""]


def write_report(
    result: BenchmarkResult, out_dir: str | Path, frontier: bool = True, frontier_periods: int | None = None
) -> dict[str, Path]:
    """Write ``results.csv``, ``results.md``, the PNG plots and ``report.md`` into ``out_dir``."""
    from meio import plots

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    # One colour per policy across every plot of the report, in the table's order.
    colors = plots.policy_colors(list(result.table.policy))
    files: dict[str, Path] = {}
    table = result.table
    files["csv"] = out / "results.csv"
    table.to_csv(files["csv"], index=False)
    files["md"] = out / "results.md"
    files["md"].write_text(markdown_table(table) + "\n")
    sc = result.scenario
    nodes = result.topology.node_names
    st = result.settings
    frontier_skipped = ""
    if frontier:
        # The cost-service frontier (meio.frontier) on a demo budget, said under the plot; every
        # policy of the table is a point on it (colours in the table's order, as in the other plots).
        from meio.frontier import (
            BENCHMARK_BUDGET,
            DEFAULT_TARGETS,
            budget_note,
            cost_service_frontier,
            policy_points,
            write_frontier,
        )

        fper = frontier_periods or min(int(st["periods"]), 2000)
        fset: dict[str, int] = {
            "periods": fper,
            "warmup": int(st["warmup"]),
            "replications": max(2, min(int(st["replications"]), 4)),
            "seed": int(st["seed"]),
            **BENCHMARK_BUDGET,
            "search_periods": min(BENCHMARK_BUDGET["search_periods"], fper),
        }
        try:
            fdf = cost_service_frontier(result.topology, DEFAULT_TARGETS, **fset)  # type: ignore[arg-type]
        except ValueError as why:  # base-stock cannot carry the demand, or a target is out of reach
            frontier_skipped = str(why)
        else:
            ffiles = write_frontier(
                fdf,
                policy_points({p: result.evaluations[p] for p in table.policy}, result.topology),
                out,
                sc.name,
                fset,
                note=f"demo budget (cheaper than meio frontier's default): {budget_note(fset)}; "
                f"policies on {st['replications']} x {st['periods']} periods",
                colors=colors,
            )
            files["frontier"], files["frontier_csv"], files["frontier_md"] = ffiles["png"], ffiles["csv"], ffiles["md"]
    files["stock"] = out / "stock_positioning.png"
    plots.plot_grouped(
        {r["policy"]: {n: r[f"stock_{n}"] for n in nodes} for _, r in table.iterrows()},
        nodes,
        files["stock"],
        "mean on-hand stock (units)",
        f"{sc.name}: where the stock is held",
        colors=colors,
    )
    files["bullwhip"] = out / "bullwhip.png"
    plots.plot_grouped(
        {r["policy"]: {n: r[f"order_var_ratio_{n}"] for n in nodes} for _, r in table.iterrows()},
        nodes,
        files["bullwhip"],
        "order-variance ratio\n(variance of orders placed / of demand seen)",
        f"{sc.name}: order-variance ratio per node (bullwhip)",
        hline=1.0,
        colors=colors,
        # docs/model.md: the ratio is undefined where a node sees no demand (nothing is ordered from it).
        undefined="not ordered from",
        zero="orders never vary",
        hline_label="1: no amplification",
    )
    if result.models:
        path = out / "learning_curves.png"
        if plots.plot_learning_curves(
            result.models, path, f"{sc.name}: evaluation cost while training", colors=colors, n_nodes=len(nodes)
        ):
            files["learning"] = path
    lines = [f"# Benchmark: {sc.name}", ""]
    if sc.description:
        lines += [sc.description.strip(), ""]
    lines += [
        f"Every policy simulated on the same {st['replications']} seeds ({st['seed']}.."
        f"{int(st['seed']) + int(st['replications']) - 1}), {st['periods']} periods each after a warm-up of "
        f"{st['warmup']}; unmet demand: {st['unmet_demand']}; allocation: {st['allocation']}. `cost_ci95` is the "
        f"half-width of the 95% confidence interval ({st['ci_method']}); `gap_pct` is the paired difference to "
        f"**{result.reference}** "
        f"({'the optimum' if result.reference == 'clark_scarf' else 'the cheapest stable baseline'}) "
        "on common random numbers, with its own interval `gap_ci95_pct`.",
        "",
        markdown_table(summary_columns(table)),
        "",
    ]
    unstable = table[table["unstable"] != ""]
    if len(unstable):
        lines += [
            "**Unstable policies: their costs are not meaningful.** Over the second half of the window the "
            "customer backlog of these policies grows without bound (their supply falls short of demand), so "
            "their average cost grows with the length of the run and is no long-run cost:",
            "",
        ]
        lines += [f"- `{r.policy}`: {r.unstable}" for r in unstable.itertuples()]
        lines.append("")
    lines += service_section(result)
    lines += [
        "The full table (cost split, stock and order-variance ratio per node, service per demand node and "
        "segment) is in `results.csv` and `results.md`.",
        "",
    ]
    with_levels = table[table["levels"] != ""]
    if len(with_levels):
        lines += [
            "Levels of the base-stock policies (echelon or installation, as `kind` says; (s, S) rules give both):",
            "",
        ]
        lines += [f"- `{r.policy}` ({r.kind}): {r.levels}" for r in with_levels.itertuples()]
        lines.append("")
    if result.notes:
        lines += [
            "Notes on the baselines (how each was found; a single-sourcing baseline names the lanes and "
            "modes it never orders on):",
            "",
        ]
        lines += [f"- `{name}`: {note}" for name, note in result.notes.items()]
        lines.append("")
    if result.skipped:
        lines += ["Baselines that do not apply:", ""]
        lines += [f"- `{name}`: {why}" for name, why in result.skipped.items()]
        lines.append("")
    if frontier_skipped:
        lines += [f"Cost-service frontier not drawn: {frontier_skipped}", ""]
    captions = {
        "frontier": "Cost-service frontier: for each network fill-rate target, the cheapest installation "
        "base-stock policy meeting it (inventory investment on hand against fill rate, 95% CI "
        "bars; `frontier.csv`, `frontier.md`, docs/frontier.md), and each policy of the table.",
        "stock": "Where the stock is held: mean on-hand per node.",
        "bullwhip": "Order-variance ratio per node (bullwhip; 1 = no amplification). A node that nothing is "
        "ordered from sees no demand and has no ratio: its empty bar says 'not ordered from'; a node whose "
        "orders never vary (none placed, or a constant) is marked so.",
        "learning": "Learning curves: evaluation cost per period on fixed seeds (95% CI band) against the periods "
        "simulated in training (decentralised steps divided by the node-agents, HDPO iterations times batch "
        "and horizon), with the baseline the run was measured against.",
    }
    for key, caption in captions.items():
        if key in files:
            lines += [f"![{key}]({files[key].name})", "", caption, ""]
    files["report"] = out / "report.md"
    files["report"].write_text("\n".join(lines))
    return files
