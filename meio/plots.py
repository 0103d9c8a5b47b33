"""Plots of the benchmark report (matplotlib, PNG, no display needed). The learning curves read the
runs' ``evaluations.csv``, so they need neither TensorBoard nor its event files."""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

if TYPE_CHECKING:
    import pandas as pd


def plot_cost_service_frontier(
    df: pd.DataFrame, points: dict[str, tuple[float, float, float]], path: Path, title: str, note: str = ""
) -> None:
    """Inventory investment on hand against fill rate: the frontier of
    :func:`meio.frontier.cost_service_frontier` (``df``, one point per target with its 95% CI bars
    on both axes, labelled with the target) and each policy of ``points``, ``{label: (fill rate,
    investment, investment ci95)}`` (``nan`` ci: no bar), in colour ``C0, C1, ...`` in the order
    given (the order of the report's other plots); ``note`` (the settings) under the axes."""
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
    for k, (label, (fill, invest, ci)) in enumerate(points.items()):
        # Labelled in the legend: policies near the frontier crowd each other, and text on them would not read.
        ax.errorbar(
            [fill],
            [invest],
            yerr=None if not math.isfinite(ci) else [ci],
            fmt="s",
            color=f"C{k}",
            capsize=3,
            markersize=7,
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


def plot_grouped(
    values: dict[str, dict[str, float]],
    nodes: Sequence[str],
    path: Path,
    ylabel: str,
    title: str,
    hline: float | None = None,
) -> None:
    """Bars per node (x) and policy (colour)."""
    fig, ax = plt.subplots(figsize=(max(6, 1.2 * len(nodes) * max(1, len(values)) / 3 + 3), 4.5))
    width = 0.8 / max(len(values), 1)
    x = np.arange(len(nodes))
    for k, (name, by_node) in enumerate(values.items()):
        ax.bar(x + k * width - 0.4 + width / 2, [by_node.get(n, np.nan) for n in nodes], width, label=name)
    if hline is not None:
        ax.axhline(hline, color="k", linewidth=0.8, linestyle="--")
    ax.set_xticks(x, nodes)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


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


def plot_learning_curves(runs: dict[str, Path], path: Path, title: str) -> bool:
    """Evaluation cost against training progress, one line per run with its 95% CI band, and the
    run's baseline cost dashed; ``False`` (and no file) if no run has an evaluation. PPO counts
    environment steps and HDPO gradient iterations (:data:`STEP_UNITS`), so the runs of each
    algorithm (``algo`` of the run's ``config.yaml``) share a panel of their own, side by side."""
    from meio.agents.policy import run_algo

    curves = {name: (run_algo(run) or "ppo", learning_curve(run)) for name, run in runs.items()}
    algos = list(dict.fromkeys(algo for algo, curve in curves.values() if curve.steps.size))
    if not algos:
        return False
    fig, axes = plt.subplots(1, len(algos), figsize=(7 * len(algos), 4.5), squeeze=False)
    for k, (name, (algo, curve)) in enumerate(curves.items()):  # colour k: the run's place in `runs`
        if curve.steps.size == 0:
            continue
        ax = axes[0, algos.index(algo)]
        ax.fill_between(
            curve.steps, curve.cost - curve.ci95, curve.cost + curve.ci95, color=f"C{k}", alpha=0.2, linewidth=0
        )
        ax.plot(curve.steps, curve.cost, "o-", color=f"C{k}", label=f"{name} eval/cost")
        if curve.baseline_cost is not None:
            ax.axhline(
                curve.baseline_cost, color=f"C{k}", linestyle="--", linewidth=0.8, label=f"{name} eval/baseline_cost"
            )
    for algo, ax in zip(algos, axes[0]):
        ax.set_xlabel(STEP_UNITS.get(algo, "training steps"))
        ax.set_ylabel("evaluation cost per period (95% CI)")
        ax.set_title(title if len(algos) == 1 else f"{title} ({algo})")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True
