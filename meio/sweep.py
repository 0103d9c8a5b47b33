"""What-if sweeps: change one scenario parameter, re-optimise the baselines, re-evaluate models.

A parameter is named by a path into the scenario file: ``nodes[retailer].demand.mean``,
``nodes[0].holding_cost``, ``lanes[plant->dc].lead_time``, ``lanes[2].modes[1].unit_cost``. A node
or lane is selected by position or by id (``from->to`` for lanes). Each value is validated like a
scenario file (a bad value raises the usual message naming the field).
"""

from __future__ import annotations

import copy
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import yaml  # noqa: E402

from meio.baselines.run import BASELINE_NAMES, run_baselines  # noqa: E402
from meio.benchmark import service_columns  # noqa: E402
from meio.envs.hints import did_you_mean  # noqa: E402
from meio.envs.metrics import evaluate  # noqa: E402
from meio.envs.resolve import ScenarioLike, resolve  # noqa: E402
from meio.envs.scenario import Scenario, ScenarioError  # noqa: E402
from meio.envs.simulator import Simulator  # noqa: E402
from meio.envs.spaces import ObservationMap  # noqa: E402

_STEP = re.compile(r"([A-Za-z_]\w*)(?:\[([^\]]+)\])?")


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


def set_param(data: dict, path: str, value: Any) -> dict:
    """A copy of the scenario mapping ``data`` with ``path`` set to ``value``."""
    out = copy.deepcopy(data)
    parts = path.split(".")
    node: Any = out
    for k, part in enumerate(parts):
        m = _STEP.fullmatch(part)
        if not m:
            raise ValueError(f"--param {path}: {part!r} is not a key or key[index]")
        key, index = m.groups()
        last = k == len(parts) - 1 and index is None
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


@dataclass
class SweepResult:
    param: str
    table: pd.DataFrame
    skipped: dict[str, str]


def run_sweep(
    scenario: ScenarioLike,
    param: str,
    values: Sequence[Any],
    models: Sequence[str | Path] = (),
    periods: int = 5000,
    warmup: int = 200,
    replications: int = 8,
    seed: int = 0,
    baselines: Sequence[str] = BASELINE_NAMES,
    progress: bool = False,
) -> SweepResult:
    """Re-optimise the baselines and re-evaluate the models at each value of ``param``.

    Each value makes a new scenario, compiled once and passed as its :class:`~meio.envs.topology.Topology`
    to the baselines and the simulator."""
    base_topo = resolve(scenario)
    base = base_topo.scenario
    data = base.to_dict()
    base_dir = Path(base.source).parent if base.source else None
    from meio.agents.policy import PPOPolicy, agent_label, load_agent  # torch only when agents are swept

    labels = [agent_label(m) for m in models]  # ALGO:RUN
    loaded = {label: load_agent(m, name=label) for label, m in zip(labels, models)}
    base_obs = ObservationMap(base_topo).size
    rows, skipped = [], {}
    for value in values:
        try:
            topo = resolve(Scenario.from_dict(set_param(data, param, value), base_dir=base_dir, source=base.source))
        except ScenarioError as exc:
            raise ValueError(f"--values {value!r}: {exc}") from None
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
                    "value": value,
                    "policy": b.name,
                    "cost_mean": ev.cost_mean,
                    "cost_ci95": ev.cost_ci95,
                    "fill_rate": ev.fill_rate["network"],
                    **service_columns(ev),
                    **{f"level_{k}": v for k, v in b.levels.items()},
                }
            )
        sim = Simulator(topo, n=replications)
        for label, policy in loaded.items():
            if isinstance(policy, PPOPolicy) and ObservationMap(topo).size != base_obs:
                skipped[f"{label} at {value}"] = "the observation has another size (e.g. a longer lead time)"
                continue
            try:  # any agent: its network must fit the new scenario
                getattr(policy, "check", lambda _: None)(sim)
            except ValueError as exc:
                skipped[f"{label} at {value}"] = f"the agent does not fit the scenario at this value: {exc}"
                continue
            ev = evaluate(sim, policy, periods=periods, warmup=warmup, replications=replications, seed=seed)
            rows.append(
                {
                    "value": value,
                    "policy": label,
                    "cost_mean": ev.cost_mean,
                    "cost_ci95": ev.cost_ci95,
                    "fill_rate": ev.fill_rate["network"],
                    **service_columns(ev),
                }
            )
    return SweepResult(param=param, table=pd.DataFrame(rows), skipped=skipped)


def parse_values(text: str) -> list[Any]:
    """``"1,2,3.5"`` -> ``[1, 2, 3.5]`` (each item read as a YAML scalar)."""
    values = [yaml.safe_load(v) for v in text.split(",") if v.strip()]
    if not values:
        raise ValueError("--values: give one or more comma-separated values")
    return values


def write_sweep(result: SweepResult, out_dir: str | Path) -> dict[str, Path]:
    """``sweep.csv``, ``sweep.md`` and ``sweep.png`` (cost, fill rate and levels against the value)."""
    from meio.benchmark import markdown_table

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    t = result.table
    files = {"csv": out / "sweep.csv", "md": out / "sweep.md", "png": out / "sweep.png"}
    t.to_csv(files["csv"], index=False)
    files["md"].write_text(
        f"# Sweep of `{result.param}`\n\n"
        + markdown_table(t)
        + "\n"
        + "".join(f"\n- skipped `{k}`: {v}" for k, v in result.skipped.items())
        + "\n"
    )
    level_cols = [c for c in t.columns if c.startswith("level_")]
    fig, axes = plt.subplots(1, 3 if level_cols else 2, figsize=(15 if level_cols else 10, 4.2))
    numeric = pd.api.types.is_numeric_dtype(t["value"])
    for k, (policy, g) in enumerate(t.groupby("policy", sort=False)):
        x = g["value"] if numeric else range(len(g))
        axes[0].errorbar(x, g["cost_mean"], yerr=g["cost_ci95"], marker="o", capsize=3, label=policy, color=f"C{k}")
        axes[1].plot(x, g["fill_rate"], marker="o", label=policy, color=f"C{k}")
    if level_cols:
        # One baseline's levels across the values (mixing echelon and installation levels would
        # mislead): the cheapest on average among those computed at every value.
        n_values = t["value"].nunique()
        with_levels = t.dropna(subset=level_cols, how="all")
        complete = with_levels.groupby("policy").filter(lambda g: len(g) == n_values)
        chosen = complete.groupby("policy")["cost_mean"].mean().idxmin()
        rows = complete[complete.policy == chosen]
        for k, col in enumerate(level_cols):
            x = rows["value"] if numeric else range(len(rows))
            axes[2].plot(x, rows[col], marker="o", label=col.removeprefix("level_"), color=f"C{k}")
        axes[2].set_title(f"levels of {chosen}")
        axes[2].legend(fontsize=8)
    axes[0].set_title("cost per period (95% CI)")
    axes[1].set_title("fill rate")
    for ax in axes:
        ax.set_xlabel(result.param)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(files["png"], dpi=110)
    plt.close(fig)
    return files
