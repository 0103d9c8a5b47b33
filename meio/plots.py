"""Plots of the benchmark report (matplotlib, PNG, no display needed)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from meio.baselines.search import local_levels, simulate_candidates  # noqa: E402
from meio.envs.metrics import fill_rate  # noqa: E402
from meio.envs.topology import compile_topology  # noqa: E402

#: Service levels that trace the base-stock family's cost-service frontier.
FRONTIER_LEVELS = (0.5, 0.7, 0.8, 0.9, 0.95, 0.975, 0.99, 0.995, 0.999)


def frontier_points(scenario, periods: int, warmup: int, replications: int, seed: int,
                    levels: Sequence[float] = FRONTIER_LEVELS) -> np.ndarray:
    """(service level, fill rate, cost) of the local base-stock rule at each service level, all
    simulated on the same seeds. Every node's target is set to the level."""
    topo = compile_topology(scenario)
    rows = []
    for alpha in levels:
        sc = replace(scenario, nodes=tuple(replace(n, service_target=alpha) for n in scenario.nodes))
        b = local_levels(sc)
        rows.append([b.levels[n] for n in topo.node_names])
    res = simulate_candidates(scenario, np.array(rows), "installation", periods, warmup, replications, seed)
    fill = fill_rate(res.filled, res.demand, axis=(1, 2))
    return np.column_stack([np.array(levels), fill, res.cost.mean(axis=1)])


def plot_frontier(points: np.ndarray, policies: dict[str, tuple[float, float]], path: Path, title: str) -> None:
    fig, ax = plt.subplots(figsize=(7, 4.5))
    ax.plot(points[:, 1], points[:, 2], "o-", color="0.5", label="base-stock family (local rule)")
    for (alpha, x, y) in points:
        ax.annotate(f"{alpha:g}", (x, y), textcoords="offset points", xytext=(4, 4), fontsize=7, color="0.4")
    for k, (name, (fill, cost)) in enumerate(policies.items()):
        ax.plot(fill, cost, "s", markersize=8, label=name, color=f"C{k}")
    ax.set_xlabel("fill rate (network)")
    ax.set_ylabel("cost per period")
    ax.set_title(title)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_grouped(values: dict[str, dict[str, float]], nodes: Sequence[str], path: Path, ylabel: str,
                 title: str, hline: float | None = None) -> None:
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


def learning_curve(run_dir: Path) -> tuple[np.ndarray, np.ndarray, float | None]:
    """(steps, eval/cost) from a run's TensorBoard logs, and its eval/baseline_cost."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    steps, costs, base = [], [], None
    for f in sorted((run_dir / "tb").rglob("events.out.tfevents.*")):
        acc = EventAccumulator(str(f), size_guidance={"scalars": 0})
        acc.Reload()
        tags = acc.Tags()["scalars"]
        if "eval/cost" in tags:
            for e in acc.Scalars("eval/cost"):
                steps.append(e.step)
                costs.append(e.value)
        if "eval/baseline_cost" in tags:
            base = acc.Scalars("eval/baseline_cost")[-1].value
    order = np.argsort(steps)
    return np.array(steps)[order], np.array(costs)[order], base


def plot_learning_curves(runs: dict[str, Path], path: Path, title: str) -> bool:
    fig, ax = plt.subplots(figsize=(7, 4.5))
    drawn = False
    for k, (name, run) in enumerate(runs.items()):
        steps, costs, base = learning_curve(run)
        if steps.size == 0:
            continue
        drawn = True
        ax.plot(steps, costs, "o-", color=f"C{k}", label=f"{name} eval/cost")
        if base is not None:
            ax.axhline(base, color=f"C{k}", linestyle="--", linewidth=0.8, label=f"{name} eval/baseline_cost")
    ax.set_xlabel("environment steps")
    ax.set_ylabel("evaluation cost per period")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    if drawn:
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(path, dpi=120)
    plt.close(fig)
    return drawn
