"""Plots of the benchmark report (matplotlib, PNG, no display needed). The learning curves read the
runs' ``evaluations.csv``, so they need neither TensorBoard nor its event files."""

from __future__ import annotations

import csv
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib import transforms  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.patches import Rectangle  # noqa: E402
from matplotlib.ticker import EngFormatter, MaxNLocator  # noqa: E402

if TYPE_CHECKING:
    import pandas as pd


def policy_colors(names: Sequence[str]) -> dict[str, str]:
    """One colour per policy for every plot of a report: matplotlib's cycle ``C0, C1, ...`` in the
    order of ``names`` (the report's full list of policies, in its table order), so a policy keeps
    its colour in a plot that shows only some of them. Past ten policies the cycle repeats with
    tab20's lighter shades."""
    palette = [f"C{k}" for k in range(10)] + [matplotlib.colors.to_hex(c) for c in plt.get_cmap("tab20").colors[1::2]]
    return {name: palette[k % len(palette)] for k, name in enumerate(dict.fromkeys(names))}


#: Marker shapes of the policies' points, in the order of the report's policies (with their colours).
POLICY_MARKERS = ("s", "o", "^", "D", "v", "P", "X", "<", ">", "p")


def _errorbar_values(value: float) -> list[float] | None:
    """A one-point error bar, or none where the interval is not known (``nan``)."""
    return [value] if math.isfinite(value) else None


def plot_cost_service_frontier(
    df: pd.DataFrame,
    points: Mapping[str, tuple[float, ...]],
    path: Path,
    title: str,
    note: str = "",
    colors: Mapping[str, str] | None = None,
) -> Figure:
    """Inventory investment on hand against fill rate: the frontier of
    :func:`meio.frontier.cost_service_frontier` (``df``, one point per target with its 95% CI bars
    on both axes, labelled with the target) and each policy of ``points``, ``{label: (fill rate,
    investment, investment ci95[, fill-rate ci95])}`` (``nan`` ci: no bar on that axis), coloured by
    ``colors`` (default :func:`policy_colors` of ``points`` in the order given, the report's order);
    ``note`` (the settings) under the axes. Returns the figure (saved to ``path`` and closed)."""
    colors = dict(colors) if colors is not None else policy_colors(list(points))
    fig, ax = plt.subplots(figsize=(7.5, 5))
    group = str(df["group"].iloc[0]) if len(df) else "network"
    col = {
        c: df[c].to_numpy(dtype=float)
        for c in ("fill_rate", "investment_on_hand", "fill_rate_ci95", "investment_on_hand_ci95")
    }
    ax.errorbar(
        col["fill_rate"],
        col["investment_on_hand"],
        xerr=col["fill_rate_ci95"],
        yerr=col["investment_on_hand_ci95"],
        fmt="o-",
        color="0.3",
        capsize=3,
        markersize=5,
        label="frontier: cheapest base-stock policy per target",
    )
    for target, x, y in zip(df["target"], df["fill_rate"], df["investment_on_hand"]):
        ax.annotate(
            f">= {target:g}", (x, y), textcoords="offset points", xytext=(-6, 8), ha="right", fontsize=7, color="0.3"
        )
    order = list(colors)
    for label, point in points.items():
        fill, invest, ci = point[:3]
        fill_ci = point[3] if len(point) > 3 else math.nan
        # Labelled in the legend: policies near the frontier crowd each other, and text on them would not read.
        # A marker shape per policy besides its colour, half see-through: policies at (nearly) the same
        # point stay visible, and the plot still reads in grey print.
        ax.errorbar(
            [fill],
            [invest],
            xerr=_errorbar_values(fill_ci),
            yerr=_errorbar_values(ci),
            fmt=POLICY_MARKERS[order.index(label) % len(POLICY_MARKERS)],
            color=colors[label],
            alpha=0.8,
            markeredgecolor="white",
            markeredgewidth=0.6,
            capsize=3,
            markersize=8,
            label=label,
        )
    ax.set_xlabel(f"fill rate ({group}; fraction of demand filled from stock, 95% CI)")
    ax.set_ylabel("inventory investment on hand\n(holding cost per period, 95% CI)")
    ax.set_title(title)
    ax.legend(fontsize=7, loc="upper left")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    if note:
        fig.subplots_adjust(bottom=0.17)
        fig.text(0.01, 0.01, note, fontsize=7, color="0.3", wrap=True, va="bottom")
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return fig


def plot_grouped(
    values: Mapping[str, Mapping[str, float]],
    nodes: Sequence[str],
    path: Path,
    ylabel: str,
    title: str,
    hline: float | None = None,
    colors: Mapping[str, str] | None = None,
    undefined: str | None = None,
    zero: str | None = None,
    hline_label: str | None = None,
) -> Figure:
    """Bars per node (x) and policy (colour from ``colors``, default :func:`policy_colors` of
    ``values`` in its order); the legend beside the axes. A bar that has no value (``nan``) is not
    dropped without a word: with ``undefined`` it is drawn as an empty dashed outline carrying that
    text, and with ``zero`` a bar of height exactly 0 carries that text (one text per node when every
    policy agrees). ``hline``: a reference level, dashed, named ``hline_label`` at the right.
    Returns the figure (saved to ``path`` and closed)."""
    colors = dict(colors) if colors is not None else policy_colors(list(values))
    # Wide enough for the bars and the legend beside them, but no wider than a page will take.
    fig, ax = plt.subplots(figsize=(min(13.0, max(6.5, 0.25 * len(nodes) * max(1, len(values)) + 4.5)), 4.5))
    width = 0.8 / max(len(values), 1)
    x = np.arange(len(nodes))
    table = np.array([[float(by_node.get(n, np.nan)) for n in nodes] for by_node in values.values()]).reshape(
        len(values), len(nodes)
    )
    for k, name in enumerate(values):
        ax.bar(x + k * width - 0.4 + width / 2, table[k], width, label=name, color=colors[name])
    if hline is not None:
        ax.axhline(hline, color="k", linewidth=0.8, linestyle="--")
        if hline_label:
            ax.annotate(
                hline_label,
                (1.0, hline),
                xycoords=("axes fraction", "data"),
                xytext=(-4, 3),
                textcoords="offset points",
                ha="right",
                va="bottom",
                fontsize=7,
            )
    # Bars that say "no value" or "zero" in words: an invisible bar reads as a node left out.
    low = transforms.blended_transform_factory(ax.transData, ax.transAxes)
    for kind, text in (("undefined", undefined), ("zero", zero)):
        if text is None:
            continue
        marked = np.isnan(table) if kind == "undefined" else table == 0.0
        for j in range(len(nodes)):
            ks = np.flatnonzero(marked[:, j])
            if ks.size == 0:
                continue
            if kind == "undefined":
                for k in ks:
                    left = x[j] + k * width - 0.4
                    ax.add_patch(
                        Rectangle(
                            (left, 0.0),
                            width,
                            0.25,
                            transform=low,
                            fill=False,
                            edgecolor=colors[list(values)[k]],
                            linestyle="--",
                            linewidth=1.0,
                        )
                    )
            if ks.size == len(values):  # every policy: one text for the node
                ax.text(x[j], 0.02, text, transform=low, ha="center", va="bottom", fontsize=7, color="0.2")
            else:
                for k in ks:
                    ax.text(
                        x[j] + k * width - 0.4 + width / 2,
                        0.02,
                        text,
                        transform=low,
                        rotation=90,
                        ha="center",
                        va="bottom",
                        fontsize=6,
                        color="0.2",
                    )
    ax.set_xticks(x, nodes)
    ax.set_xlim(-0.6, len(nodes) - 0.4)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return fig


@dataclass(frozen=True)
class LearningCurve:
    """A run's evaluations while training, oldest first: at environment step ``steps[i]`` the
    deterministic policy cost ``cost[i]`` per period on the fixed evaluation seeds (95% CI half-width
    ``ci95[i]``); ``baseline_cost`` is the run's reference on the same seeds, ``None`` without one."""

    steps: np.ndarray
    cost: np.ndarray
    ci95: np.ndarray
    baseline_cost: float | None


def _number(path: Path, line: int, column: str, text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{path}: line {line}: {column}: {text!r} is not a number") from None
    if not math.isfinite(value):
        raise ValueError(f"{path}: line {line}: {column}: {text!r} is not a finite number")
    return value


def learning_curve(run_dir: Path) -> LearningCurve:
    """The learning curve of a run folder, read from the ``evaluations.csv`` training writes (one row
    per evaluation, ``meio.agents.train.EVAL_COLUMNS``; a resumed run has dropped the rows it trained
    again). A run without the file has an empty curve; a file without the columns, or with a
    value that is no number, is refused naming the file, the line and the column."""
    path = Path(run_dir) / "evaluations.csv"
    if not path.is_file():
        return LearningCurve(np.zeros(0, dtype=np.int64), np.zeros(0), np.zeros(0), None)
    with path.open(newline="") as fh:
        reader = csv.DictReader(fh)
        missing = [c for c in ("steps", "cost", "cost_ci95", "baseline_cost") if c not in (reader.fieldnames or [])]
        if missing:
            raise ValueError(
                f"{path}: no column {', '.join(missing)}; expected the evaluations.csv a training run "
                "writes (steps, seconds, cost, cost_ci95, ...)"
            )
        rows = [(reader.line_num, r) for r in reader]
    steps, cost, ci95, base = [], [], [], None
    for line, r in rows:
        step = _number(path, line, "steps", r["steps"])
        if step != int(step) or step < 0:
            raise ValueError(f"{path}: line {line}: steps: {r['steps']!r} is not a step count (an integer >= 0)")
        steps.append(int(step))
        cost.append(_number(path, line, "cost", r["cost"]))
        ci95.append(_number(path, line, "cost_ci95", r["cost_ci95"]))
        if r["baseline_cost"] not in ("", "None"):  # a run with no applicable baseline writes none
            base = _number(path, line, "baseline_cost", r["baseline_cost"])
    order = np.argsort(steps, kind="stable")
    return LearningCurve(np.array(steps, dtype=np.int64)[order], np.array(cost)[order], np.array(ci95)[order], base)


#: What the ``steps`` column of a run's ``evaluations.csv`` counts, by the run's algorithm.
STEP_UNITS = {"ppo": "environment steps", "hdpo": "gradient iterations (HDPO)"}


def _run_config(run_dir: Path) -> tuple[Path, dict[str, object]]:
    """A run folder's ``config.yaml`` as a mapping (``{}`` without a readable one)."""
    import yaml

    from meio.envs.scenario import read_yaml

    path = Path(run_dir) / "config.yaml"
    try:
        data = read_yaml(path.read_text(), str(path))
    except (OSError, UnicodeDecodeError, ValueError, yaml.YAMLError):
        return path, {}
    return path, data if isinstance(data, dict) else {}


def _positive_int(path: Path, field: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{path}: {field}: {value!r} is not an integer >= 1; the learning curve needs it in periods")
    return value


def periods_per_step(run_dir: Path, n_nodes: int | None = None) -> int | float:
    """Periods simulated per unit of the ``steps`` column of a run's ``evaluations.csv``, from the
    run's ``config.yaml``, so that every learning curve is drawn on one axis, periods simulated in
    training (summed over the batched copies):

    * PPO, centralised: one environment step is one period of one copy: 1;
    * PPO, decentralised: SB3 counts the ``N`` node-agents of a copy as ``N`` steps of one period
      (:class:`meio.envs.decentralised.DecentralisedVecEnv`): ``1 / N``, ``N`` the nodes of the run's
      scenario, or ``n_nodes`` where that scenario cannot be found;
    * HDPO: a gradient iteration simulates ``B`` trajectories of ``T`` periods
      (:mod:`meio.agents.hdpo`): ``B * T`` (``batch_size`` x ``horizon``).

    A run without a readable ``config.yaml`` counts as centralised PPO (what such runs were); a
    decentralised run whose agents cannot be counted is refused naming the file."""
    from meio.agents.policy import run_algo

    path, data = _run_config(run_dir)
    cfg = data.get("config") if isinstance(data.get("config"), dict) else {}
    if run_algo(run_dir) == "hdpo":
        return _positive_int(path, "config.batch_size", cfg.get("batch_size")) * _positive_int(
            path, "config.horizon", cfg.get("horizon")
        )
    if cfg.get("control", "centralised") != "decentralised":
        return 1
    agents: int | None = None
    scenario = data.get("scenario")
    if isinstance(scenario, str):
        from meio.envs.resolve import resolve

        try:
            agents = resolve(scenario).n_nodes
        except (OSError, ValueError):  # a scenario file moved or renamed since training
            agents = None
    if agents is None:
        agents = n_nodes
    if agents is None:
        raise ValueError(
            f"{path}: scenario: {scenario!r} cannot be loaded to count the node-agents of this decentralised "
            "run (its steps are agent steps, N per period); pass the number of nodes"
        )
    return 1.0 / _positive_int(path, "scenario (nodes)", agents)


def plot_learning_curves(
    runs: Mapping[str, Path],
    path: Path,
    title: str,
    colors: Mapping[str, str] | None = None,
    n_nodes: int | None = None,
) -> Figure | None:
    """Evaluation cost per period against the periods simulated in training, one line per run with
    its 95% CI band (``eval/cost_ci95``) and the run's baseline cost dashed, in the run's colour
    (``colors``, default :func:`policy_colors` of ``runs``); ``None`` (and no file) if no run has an
    evaluation. Each run's ``steps`` are turned into periods by :func:`periods_per_step` (``n_nodes``:
    the network's nodes, for a decentralised run whose scenario cannot be loaded), so centralised
    and decentralised PPO and HDPO share one axis. Returns the figure (saved and closed)."""
    colors = dict(colors) if colors is not None else policy_colors(list(runs))
    curves = {name: learning_curve(run) for name, run in runs.items()}
    drawn = {name: curve for name, curve in curves.items() if curve.steps.size}
    if not drawn:
        return None
    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    baselines: dict[float, list[str]] = {}
    for name, curve in drawn.items():
        periods = curve.steps * periods_per_step(runs[name], n_nodes)
        color = colors[name]
        ax.fill_between(periods, curve.cost - curve.ci95, curve.cost + curve.ci95, color=color, alpha=0.2, linewidth=0)
        ax.plot(periods, curve.cost, "o-", color=color, markersize=4, label=f"{name} eval/cost")
        if curve.baseline_cost is not None:
            baselines.setdefault(curve.baseline_cost, []).append(name)
    # Runs measured against the same baseline on the same seeds share one dashed line (in the run's
    # colour when it is one run's), not a stack of equal lines with a legend entry each.
    for cost, names in baselines.items():
        color = colors[names[0]] if len(names) == 1 else "0.2"
        who = "every run's" if len(names) == len(drawn) > 1 else ", ".join(names)
        ax.axhline(cost, color=color, linestyle="--", linewidth=0.8, label=f"{who} eval/baseline_cost")
    ax.set_xlabel("periods simulated in training (summed over copies)")
    ax.set_ylabel("evaluation cost per period\n(95% CI band; dashed: baseline)")
    # Periods are whole numbers, and in the millions: ticks at integers, written 500 k, 1 M.
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.xaxis.set_major_formatter(EngFormatter(sep=" "))
    ax.set_xlim(left=0)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return fig
