"""What-if sweeps: change scenario parameters, re-optimise the baselines, re-evaluate (or retrain) agents.

A parameter is named by a path into the scenario file: ``nodes[retailer].demand.mean``,
``nodes[0].holding_cost``, ``lanes[plant->dc].lead_time``, ``lanes[2].modes[1].unit_cost``. A node
or lane is selected by position or by id (``from->to`` for lanes). Each value is validated like a
scenario file (a bad value raises the usual message naming the field).

One pseudo-parameter is not a key of the file: ``lanes[LANE].lead_time_spread`` (or
``lanes[LANE].modes[M].lead_time_spread``) replaces that lead time ``L`` by the mean-preserving
spread :func:`lead_time_spread` of width ``w`` (the value; 0 keeps ``L``), a discrete distribution
with mean exactly ``L`` and a variance that grows with ``w``.

Several parameters make a grid: every combination of their values (the Cartesian product, the first
parameter varying slowest). Every combination is evaluated on the same seeds (common random
numbers), so each policy's cost and fill rate at a combination are compared with its own at the
first combination by paired differences, per replication.
"""

from __future__ import annotations

import copy
import itertools
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import yaml  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from meio.baselines.run import BASELINE_NAMES, run_baselines  # noqa: E402
from meio.benchmark import service_columns  # noqa: E402
from meio.envs.hints import did_you_mean  # noqa: E402
from meio.envs.metrics import Evaluation, batch_means, evaluate, mean_ci95  # noqa: E402
from meio.envs.resolve import ScenarioLike, resolve  # noqa: E402
from meio.envs.scenario import Scenario, ScenarioError  # noqa: E402
from meio.envs.simulator import Simulator  # noqa: E402
from meio.envs.spaces import ObservationMap  # noqa: E402
from meio.envs.topology import Topology  # noqa: E402
from meio.plots import policy_colors  # noqa: E402

if TYPE_CHECKING:
    from meio.agents.config import PPOConfig

_STEP = re.compile(r"([A-Za-z_]\w*)(?:\[([^\]]+)\])?")
#: The last key of the lead-time spread pseudo-parameter (see :func:`lead_time_spread`).
SPREAD_KEY = "lead_time_spread"
#: Name of the agents trained per combination by ``--retrain``.
RETRAINED = "ppo:retrained"


def _select(items: list, key: str, kind: str, path: str) -> Any:
    if key.lstrip("-").isdigit():
        i = int(key)
        if not -len(items) <= i < len(items):
            raise ValueError(f"--param {path}: {kind}[{key}] is out of range; there are {len(items)} {kind}")
        return items[i]
    for item in items:
        ident = (
            item.get("id")
            if kind == "nodes"
            else (f"{item.get('from')}->{item.get('to')}" if kind == "lanes" else item.get("name"))
        )
        if ident == key:
            return item
    idents = [
        str(
            item.get("id")
            if kind == "nodes"
            else f"{item.get('from')}->{item.get('to')}"
            if kind == "lanes"
            else item.get("name")
        )
        for item in items
    ]
    raise ValueError(f"--param {path}: no {kind[:-1]} {key!r}{did_you_mean(key, idents)}; {kind}: {', '.join(idents)}")


def lead_time_spread(mean: int, spread: float) -> tuple[tuple[int, ...], tuple[Fraction, ...]]:
    """A lead-time distribution with mean exactly ``L = mean`` and a spread of width ``w = spread``.

    With ``w = k + f`` (``k`` an integer, ``0 <= f < 1``), the deviation ``D`` from ``L`` is uniform
    on the integers ``-k..k`` with probability ``1 - f`` and on ``-(k+1)..k+1`` with probability
    ``f``; the lead time is ``L + sign(D) min(|D|, L)``: deviations beyond ``L`` are cut to ``L`` on
    both sides, so the support stays in ``0..2L`` and the distribution stays symmetric about ``L``.
    Hence ``E[lead time] = L`` exactly for every ``w``, and ``Var = E[min(|D|, L)^2]``, which for
    ``w <= L - 1`` is the discrete uniform's ``(1 - f) k (k+1) / 3 + f (k+1)(k+2) / 3`` (an integer
    ``w`` gives ``w (w+1) / 3``, the variance ``(n^2 - 1) / 12`` of ``n = 2w + 1`` equally likely
    integers). ``|D|`` grows stochastically with ``w`` and ``min(|D|, L)^2`` is non-decreasing in
    ``|D|``, so the variance grows with ``w``, strictly up to its limit ``L^2`` (two points, 0 and
    ``2L``). ``w = 0`` is the constant ``L``.

    Returns the values (ascending) and their probabilities as exact fractions (``spread`` is read as
    the exact binary number it is). ``ValueError`` for ``L`` not an integer ``>= 0``, ``w`` negative
    or not finite, or ``w > 0`` with ``L = 0`` (no spread keeps a mean of 0 on lead times ``>= 0``).
    """
    if isinstance(mean, bool) or not isinstance(mean, (int, np.integer)) or mean < 0:
        raise ValueError(f"lead time: {mean!r} is not an integer >= 0; a spread is taken around a fixed lead time")
    if isinstance(spread, bool) or not isinstance(spread, (int, float)) or not math.isfinite(spread) or spread < 0:
        raise ValueError(f"{SPREAD_KEY}: {spread!r} is not a number >= 0 (0 keeps the lead time fixed)")
    if spread > 0 and mean == 0:
        raise ValueError(
            f"{SPREAD_KEY}: {spread!r} around a lead time of 0; lead times are >= 0, so only 0 keeps a mean of 0"
        )
    w = Fraction(spread)
    k = math.floor(w)
    f = w - k
    probs: dict[int, Fraction] = {}
    for width, weight in ((k, 1 - f), (k + 1, f)):
        if weight == 0:
            continue
        for d in range(-width, width + 1):
            value = int(mean) + (1 if d > 0 else -1) * min(abs(d), int(mean))
            probs[value] = probs.get(value, Fraction(0)) + weight / (2 * width + 1)
    values = tuple(sorted(probs))
    return values, tuple(probs[v] for v in values)


def _spread_lead_time(node: dict, value: Any, path: str) -> None:
    """Replace ``node["lead_time"]`` (a lane's or a mode's) by its :func:`lead_time_spread` ``value``."""
    where = path.rsplit(".", 1)[0]
    if "lead_time" not in node:
        raise ValueError(
            f"--param {path}: {where} has no lead_time of its own (a lane with modes has one per mode: "
            f"{where}.modes[0].{SPREAD_KEY})"
        )
    base = node["lead_time"]
    if isinstance(base, dict) and base.get("dist") == "constant":
        base = base.get("value")
    if isinstance(base, bool) or not isinstance(base, int):
        raise ValueError(
            f"--param {path}: {where}.lead_time is {node['lead_time']!r}; a spread is taken around a fixed "
            "lead time (an integer)"
        )
    try:
        values, probs = lead_time_spread(base, value)
    except ValueError as exc:
        raise ValueError(f"--param {path}: {exc}") from None
    node["lead_time"] = (
        base if len(values) == 1 else {"dist": "discrete", "values": list(values), "probs": [float(p) for p in probs]}
    )


def set_param(data: dict, path: str, value: Any) -> dict:
    """A copy of the scenario mapping ``data`` with ``path`` set to ``value`` (a path ending in
    ``lead_time_spread`` sets the lead time beside it to :func:`lead_time_spread`)."""
    out = copy.deepcopy(data)
    parts = path.split(".")
    node: Any = out
    for k, part in enumerate(parts):
        m = _STEP.fullmatch(part)
        if not m:
            raise ValueError(f"--param {path}: {part!r} is not a key or key[index]")
        key, index = m.groups()
        last = k == len(parts) - 1 and index is None
        if last and key == SPREAD_KEY and isinstance(node, dict):
            _spread_lead_time(node, value, path)
            return out
        if not isinstance(node, dict) or (key not in node and not last):
            raise ValueError(f"--param {path}: no key {key!r} at {'.'.join(parts[:k]) or 'the top level'}")
        if last:
            node[key] = value
            return out
        node = node[key]
        if index is not None:
            if not isinstance(node, list):
                raise ValueError(f"--param {path}: {key} is not a list")
            node = _select(node, index, key, path)
            if k == len(parts) - 1:
                raise ValueError(f"--param {path}: name a field of {key}[{index}], e.g. {path}.holding_cost")
    return out


def set_params(data: dict, changes: Sequence[tuple[str, Any]]) -> dict:
    """``data`` with every ``(path, value)`` of ``changes`` set; lead-time spreads last, so that a
    grid over a lane's ``lead_time`` and its ``lead_time_spread`` spreads the new lead time."""
    out = data
    for path, value in sorted(changes, key=lambda c: c[0].endswith(SPREAD_KEY)):
        out = set_param(out, path, value)
    return out


@dataclass
class SweepResult:
    """The table of a sweep (one row per combination of values and policy) and what was skipped."""

    param: str
    table: pd.DataFrame
    skipped: dict[str, str]
    #: The swept parameters, in the order given (``param`` is their names joined by `` x ``).
    params: tuple[str, ...] = field(default_factory=tuple)


def _cost_samples(ev: Evaluation) -> np.ndarray:
    """Per sample ``i`` the average cost per period: the replications', or with one replication the
    20 batch means of its post-warm-up periods (the samples of the cost's own interval)."""
    if ev.per_period_cost.shape[0] >= 2:
        return ev.replication_costs
    return batch_means(ev.per_period_cost[0])


def _fill_linearised(ev: Evaluation) -> tuple[float, np.ndarray]:
    """The network fill rate ``beta = sum x_i / sum y_i`` and its linearisation ``(x_i - beta y_i) / ybar``
    per sample ``i`` (Cochran, Sampling Techniques, sec. 6.4), whose mean-zero deviations carry the
    ratio's sampling error: a paired difference of two fill rates has the standard error of the
    difference of their linearisations."""
    x = ev.filled_samples.sum(axis=1)
    y = ev.demand_samples.sum(axis=1)
    beta = float(x.sum() / max(y.sum(), 1e-300))
    return beta, (x - beta * y) / max(float(y.mean()), 1e-300)


def paired_differences(ev: Evaluation, ref: Evaluation) -> dict[str, float]:
    """Cost and network fill rate of ``ev`` minus those of ``ref`` (the same policy at the first
    combination, on the same seeds), with 95% Student-t half-widths from the per-sample differences
    (:func:`meio.envs.metrics.mean_ci95`): ``Delta c = mean_i (c_i - c^ref_i)``; ``Delta beta =
    beta - beta^ref`` with the interval of the difference of the linearised ratios."""
    dc = _cost_samples(ev) - _cost_samples(ref)
    cost, cost_ci = mean_ci95(dc) if np.any(dc) else (0.0, 0.0)
    beta, z = _fill_linearised(ev)
    beta_ref, z_ref = _fill_linearised(ref)
    dz = z - z_ref
    _, fill_ci = mean_ci95(dz) if np.any(dz) else (0.0, 0.0)
    return {
        "cost_diff": cost,
        "cost_diff_ci95": cost_ci,
        "fill_rate_diff": beta - beta_ref,
        "fill_rate_diff_ci95": fill_ci,
    }


def combination_label(combo: Sequence[tuple[str, Any]]) -> str:
    """``"path=value, path=value"``: a combination's name in messages."""
    return ", ".join(f"{p}={v}" for p, v in combo)


def _grid(param: str | Sequence[str], values: Sequence[Any]) -> tuple[tuple[str, ...], list[list[Any]]]:
    if isinstance(param, str):
        return (param,), [list(values)]
    params = tuple(param)
    grid = [list(v) for v in values]
    if not params or len(grid) != len(params):
        raise ValueError(
            f"--param/--values: {len(params)} parameters and {len(grid)} value lists; give one --values per --param"
        )
    if len(set(params)) != len(params):
        raise ValueError(f"--param: {', '.join(params)} names a parameter twice; give each once with all its values")
    for p, v in zip(params, grid):
        if not v:
            raise ValueError(f"--values for {p}: give one or more values")
    return params, grid


def _train_per_combination(
    topos: list[Topology], labels: list[str], cfg: PPOConfig, out: Path, seed: int, parallel: bool
) -> list[Path]:
    """Run folders of one PPO agent per combination, trained with ``cfg`` and ``seed``: one after
    the other, or with ``parallel`` as trials of the Ray Tune runner of :mod:`meio.experiment`."""
    from meio.agents.train import train

    out.mkdir(parents=True, exist_ok=True)
    if not parallel:
        runs = []
        for i, (topo, label) in enumerate(zip(topos, labels)):
            print(f"retrain {i + 1}/{len(topos)}: {label}", flush=True)
            run = out / f"combo{i:03d}"
            train(topo, cfg, run, seed=seed, progress=False)
            runs.append(run)
        return runs
    from meio.experiment import Budget, EvaluationSpec, ExperimentSpec, MethodSpec, run_experiment

    scen_dir = out / "scenarios"
    scen_dir.mkdir(exist_ok=True)
    refs = []
    for i, topo in enumerate(topos):
        path = scen_dir / f"combo{i:03d}.yaml"
        path.write_text(yaml.safe_dump(topo.scenario.to_dict(), sort_keys=False))
        refs.append(str(path.resolve()))
    # a trial sets its budget, checkpoints and threads itself (meio.experiment._budget_fields)
    budget = {"total_steps", "eval_every", "checkpoint_every", "threads", "torch_threads"}
    fields = {k: v for k, v in cfg.to_dict().items() if k not in budget}
    spec = ExperimentSpec(
        name="sweep-retrain",
        scenarios=refs,
        methods={"ppo": MethodSpec(config="default", set=fields)},
        seeds=[seed],
        budget=Budget(total_steps=cfg.total_steps, eval_every=cfg.eval_every),
        # the experiment's own comparison is not used here (the sweep evaluates the agents): keep it small
        evaluation=EvaluationSpec(
            periods=20, warmup=0, replications=2, search_periods=20, search_replications=2, baselines=["local"]
        ),
    )
    run_experiment(spec, out / "experiment")
    trials = pd.read_csv(out / "experiment" / "trials.csv")
    run_of = dict(zip(trials.scenario_ref, trials.run_dir))
    return [Path(run_of[r]) for r in refs]


def run_sweep(
    scenario: ScenarioLike,
    param: str | Sequence[str],
    values: Sequence[Any] | Sequence[Sequence[Any]],
    models: Sequence[str | Path] = (),
    periods: int = 5000,
    warmup: int = 200,
    replications: int = 8,
    seed: int = 0,
    baselines: Sequence[str] = BASELINE_NAMES,
    progress: bool = False,
    retrain: PPOConfig | None = None,
    retrain_dir: str | Path | None = None,
    parallel: bool = False,
) -> SweepResult:
    """Re-optimise the baselines and re-evaluate the models at each value of ``param``, or at each
    combination of values of several parameters (``param`` a list of paths, ``values`` one list per path).

    Each combination makes a new scenario, compiled once and passed as its
    :class:`~meio.envs.topology.Topology` to the baselines and the simulator. Every combination uses
    the same seeds, so the table's ``cost_diff`` and ``fill_rate_diff`` (with ``_ci95``) are paired
    differences to the same policy at the first combination (:func:`paired_differences`).
    ``retrain``: a PPO config; one agent per combination is trained with it (seed ``seed``) in
    ``retrain_dir`` and evaluated there as ``ppo:retrained`` (``parallel``: through Ray Tune)."""
    params, grid = _grid(param, values)
    base_topo = resolve(scenario)
    base = base_topo.scenario
    data = base.to_dict()
    base_dir = Path(base.source).parent if base.source else None
    from meio.agents.policy import PPOPolicy, agent_label, load_agent  # torch only when agents are swept

    labels = [agent_label(m) for m in models]  # ALGO:RUN
    loaded = {label: load_agent(m, name=label) for label, m in zip(labels, models)}
    base_obs = ObservationMap(base_topo).size
    combos = [tuple(zip(params, c)) for c in itertools.product(*grid)]
    topos = []
    for combo in combos:
        try:
            topos.append(resolve(Scenario.from_dict(set_params(data, combo), base_dir=base_dir, source=base.source)))
        except ScenarioError as exc:
            raise ValueError(f"--values {combination_label(combo)}: {exc}") from None
    retrained: list[Path] = []
    if retrain is not None:
        if retrain_dir is None:
            raise ValueError("--retrain: give the folder for the trained agents (retrain_dir)")
        retrained = _train_per_combination(
            topos, [combination_label(c) for c in combos], retrain, Path(retrain_dir), seed, parallel
        )
    rows: list[dict[str, Any]] = []
    evals: list[Evaluation] = []
    skipped: dict[str, str] = {}
    for i, (combo, topo) in enumerate(zip(combos, topos)):
        key = {p: v for p, v in combo}
        if len(params) == 1:
            key = {"value": combo[0][1], **key}
        where = combination_label(combo) if len(params) > 1 else str(combo[0][1])
        report = run_baselines(
            topo,
            periods=periods,
            warmup=warmup,
            replications=replications,
            seed=seed,
            include=tuple(baselines),
            progress=progress,
        )
        for name, why in report.skipped.items():
            skipped[name] = why
        for b, ev in report.results:
            rows.append(
                {
                    **key,
                    "policy": b.name,
                    "cost_mean": ev.cost_mean,
                    "cost_ci95": ev.cost_ci95,
                    "fill_rate": ev.fill_rate["network"],
                    **service_columns(ev),
                    **{f"level_{k}": v for k, v in b.levels.items()},
                }
            )
            evals.append(ev)
        sim = Simulator(topo, n=replications)
        agents = dict(loaded)
        if retrained:
            agents[RETRAINED] = load_agent(retrained[i], name=RETRAINED)
        for label, policy in agents.items():
            if (
                isinstance(policy, PPOPolicy)
                and policy.pipeline_length is None
                and ObservationMap(topo).size != base_obs
                and label != RETRAINED
            ):
                skipped[f"{label} at {where}"] = (
                    "the observation has another size (e.g. a longer lead time); an agent trained with "
                    "pipeline_length keeps one layout across lead times"
                )
                continue
            try:  # any agent: its network (and its fixed pipeline length) must fit the new scenario
                getattr(policy, "check", lambda _: None)(sim)
            except ValueError as exc:
                skipped[f"{label} at {where}"] = f"the agent does not fit the scenario at this value: {exc}"
                continue
            ev = evaluate(sim, policy, periods=periods, warmup=warmup, replications=replications, seed=seed)
            rows.append(
                {
                    **key,
                    "policy": label,
                    "cost_mean": ev.cost_mean,
                    "cost_ci95": ev.cost_ci95,
                    "fill_rate": ev.fill_rate["network"],
                    **service_columns(ev),
                }
            )
            evals.append(ev)
    first: dict[str, Evaluation] = {}
    first_key = tuple(v for _, v in combos[0])
    for row, ev in zip(rows, evals):
        if tuple(row[p] for p in params) == first_key:
            first[row["policy"]] = ev
    nan = {
        "cost_diff": math.nan,
        "cost_diff_ci95": math.nan,
        "fill_rate_diff": math.nan,
        "fill_rate_diff_ci95": math.nan,
    }
    for row, ev in zip(rows, evals):
        row.update(paired_differences(ev, first[row["policy"]]) if row["policy"] in first else nan)
    table = pd.DataFrame(rows)
    front = [c for c in ("value", *params, "policy", "cost_mean", "cost_ci95", "fill_rate", *nan) if c in table]
    table = table[front + [c for c in table.columns if c not in front]]
    return SweepResult(param=" x ".join(params), table=table, skipped=skipped, params=params)


def parse_values(text: str) -> list[Any]:
    """``"1,2,3.5"`` -> ``[1, 2, 3.5]`` (each item read as a YAML scalar)."""
    values = [yaml.safe_load(v) for v in text.split(",") if v.strip()]
    if not values:
        raise ValueError("--values: give one or more comma-separated values")
    return values


def _is_int(values: pd.Series) -> bool:
    return bool(pd.api.types.is_integer_dtype(values)) or (
        pd.api.types.is_numeric_dtype(values) and bool(np.all(np.mod(values.astype(float), 1.0) == 0.0))
    )


def _x_axis(ax: plt.Axes, values: pd.Series, name: str) -> tuple[bool, dict[Any, int]]:
    """Label ``ax``'s x axis with the parameter ``name``; integer values get integer ticks, text
    values one tick per value. Returns whether the values are numeric and the text values' positions."""
    numeric = bool(pd.api.types.is_numeric_dtype(values))
    ax.set_xlabel(name)
    if numeric and _is_int(values):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    positions: dict[Any, int] = {}
    if not numeric:
        positions = {v: k for k, v in enumerate(dict.fromkeys(values))}
        ax.set_xticks(list(positions.values()), [str(v) for v in positions])
    return numeric, positions


def write_sweep(result: SweepResult, out_dir: str | Path) -> dict[str, Path]:
    """``sweep.csv``, ``sweep.md`` and ``sweep.png``: cost, fill rate and one baseline's levels
    against the value (one parameter), or against the first parameter with one line per value of
    the others and a heatmap of the paired cost difference (a grid)."""
    from meio.benchmark import markdown_table

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    t = result.table
    params = result.params or (result.param,)
    files = {"csv": out / "sweep.csv", "md": out / "sweep.md", "png": out / "sweep.png"}
    t.to_csv(files["csv"], index=False)
    files["md"].write_text(
        f"# Sweep of {' x '.join(f'`{p}`' for p in params)}\n\n"
        + "`cost_diff` and `fill_rate_diff` (with `_ci95`, the half-width of the 95% interval) are each "
        + "policy's paired differences to its own row at the first combination, on common random numbers.\n\n"
        + markdown_table(t)
        + "\n"
        + "".join(f"\n- skipped `{k}`: {v}" for k, v in result.skipped.items())
        + "\n"
    )
    if len(params) == 1 and "value" in t:
        _plot_one(t, params[0], files["png"])
    else:
        _plot_grid(t, params, files["png"])
    return files


def _plot_one(t: pd.DataFrame, param: str, path: Path) -> None:
    level_cols = [c for c in t.columns if c.startswith("level_")]
    fig, axes = plt.subplots(1, 3 if level_cols else 2, figsize=(15 if level_cols else 10, 4.2))
    colors = policy_colors(list(t["policy"]))
    numeric, pos = _x_axis(axes[0], t["value"], param)
    for ax in axes[1:]:
        _x_axis(ax, t["value"], param)
    for policy, g in t.groupby("policy", sort=False):
        x = g["value"] if numeric else [pos[v] for v in g["value"]]
        axes[0].errorbar(
            x, g["cost_mean"], yerr=g["cost_ci95"], marker="o", capsize=3, label=policy, color=colors[policy]
        )
        axes[1].plot(x, g["fill_rate"], marker="o", label=policy, color=colors[policy])
    if level_cols:
        # One baseline's levels across the values (mixing echelon and installation levels would
        # mislead): the cheapest on average among those computed at every value.
        n_values = t["value"].nunique()
        with_levels = t.dropna(subset=level_cols, how="all")
        complete = with_levels.groupby("policy").filter(lambda g: len(g) == n_values)
        if len(complete):
            chosen = complete.groupby("policy")["cost_mean"].mean().idxmin()
            rows = complete[complete.policy == chosen]
            for k, col in enumerate(level_cols):
                x = rows["value"] if numeric else [pos[v] for v in rows["value"]]
                axes[2].plot(x, rows[col], marker="o", label=col.removeprefix("level_"), color=f"C{k}")
            axes[2].set_title(f"levels of {chosen}")
            axes[2].legend(fontsize=8, title="node")
        axes[2].set_ylabel("base-stock level (units)")
    axes[0].set_title("cost per period (95% CI)")
    axes[0].set_ylabel("cost per period")
    axes[1].set_title("fill rate")
    axes[1].set_ylabel("fill rate (share of demand filled from stock)")
    for ax in axes:
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _plot_grid(t: pd.DataFrame, params: Sequence[str], path: Path) -> None:
    """Cost and fill rate against the first parameter, one colour per policy and one line style per
    combination of the other parameters; with two parameters, a heatmap of the paired cost
    difference to the first combination for the policy cheapest on average."""
    first, others = params[0], list(params[1:])
    heat = len(params) == 2
    fig, axes = plt.subplots(1, 3 if heat else 2, figsize=(17 if heat else 12, 4.8))
    colors = policy_colors(list(t["policy"]))
    numeric, pos = _x_axis(axes[0], t[first], first)
    _x_axis(axes[1], t[first], first)
    rest = list(dict.fromkeys(zip(*(t[p] for p in others))))
    styles = ["-", "--", ":", "-."]
    markers = ["o", "s", "^", "D", "v", "P", "X"]
    for policy, g in t.groupby("policy", sort=False):
        for k, r in enumerate(rest):
            sel = g[np.all([g[p] == v for p, v in zip(others, r)], axis=0)]
            if sel.empty:
                continue
            x = sel[first] if numeric else [pos[v] for v in sel[first]]
            style = dict(color=colors[policy], linestyle=styles[k % 4], marker=markers[k % len(markers)])
            axes[0].errorbar(x, sel["cost_mean"], yerr=sel["cost_ci95"], capsize=3, **style)
            axes[1].plot(x, sel["fill_rate"], **style)
    axes[0].set_title("cost per period (95% CI)")
    axes[0].set_ylabel("cost per period")
    axes[1].set_title("fill rate")
    axes[1].set_ylabel("fill rate (share of demand filled from stock)")
    policy_handles = [Line2D([], [], color=c, label=p) for p, c in colors.items()]
    rest_handles = [
        Line2D(
            [],
            [],
            color="0.3",
            linestyle=styles[k % 4],
            marker=markers[k % len(markers)],
            label=", ".join(f"{v}" for v in r),
        )
        for k, r in enumerate(rest)
    ]
    legend = axes[0].legend(handles=policy_handles, fontsize=8, title="policy", loc="upper left")
    axes[0].add_artist(legend)
    axes[1].legend(handles=rest_handles, fontsize=8, title=", ".join(others))
    for ax in axes[:2]:
        ax.grid(alpha=0.3)
    if heat:
        ax = axes[2]
        n_combos = len(t[list(params)].drop_duplicates())
        complete = t.dropna(subset=["cost_diff"]).groupby("policy").filter(lambda g: len(g) == n_combos)
        if len(complete):
            chosen = complete.groupby("policy")["cost_mean"].mean().idxmin()
            rows = complete[complete.policy == chosen]
            xs, ys = list(dict.fromkeys(rows[first])), list(dict.fromkeys(rows[others[0]]))
            grid = np.full((len(ys), len(xs)), np.nan)
            ci = np.full_like(grid, np.nan)
            for _, r in rows.iterrows():
                i, j = ys.index(r[others[0]]), xs.index(r[first])
                grid[i, j], ci[i, j] = r["cost_diff"], r["cost_diff_ci95"]
            lim = float(np.nanmax(np.abs(grid))) or 1.0
            im = ax.imshow(grid, cmap="RdBu_r", vmin=-lim, vmax=lim, origin="lower", aspect="auto")
            for i in range(len(ys)):
                for j in range(len(xs)):
                    dark = abs(grid[i, j]) > 0.6 * lim  # white text where the colour is deep
                    ax.text(
                        j,
                        i,
                        f"{grid[i, j]:+.2f}\n±{ci[i, j]:.2f}",
                        ha="center",
                        va="center",
                        fontsize=8,
                        color="white" if dark else "black",
                    )
            ax.set_xticks(range(len(xs)), [str(v) for v in xs])
            ax.set_yticks(range(len(ys)), [str(v) for v in ys])
            fig.colorbar(im, ax=ax, label="cost difference per period")
            ax.set_title(
                f"{chosen}: paired cost difference per period\nto the first combination (bottom left), ± 95% CI"
            )
        ax.set_xlabel(first)
        ax.set_ylabel(others[0])
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
