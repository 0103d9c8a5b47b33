"""The figures of a report read as a paper's would: one colour per policy across every plot, CI bars or
bands where the data has an interval, axes with units, every node named in the bullwhip plot, and
learning curves on periods simulated whatever the run's control or algorithm.

Each test reads the figure back (the plotting functions return it, and ``write_report``'s figures are
kept as ``plt.close`` receives them) and checks what is drawn, not the file."""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
import yaml
from matplotlib.colors import to_rgba
from matplotlib.container import BarContainer, ErrorbarContainer
from matplotlib.figure import Figure

from meio import frontier as frontier_module
from meio.benchmark import run_benchmark, write_report
from meio.envs.policies import BaseStockPolicy
from meio.envs.resolve import resolve
from meio.experiment import write_results
from meio.plots import (
    learning_curve,
    periods_per_step,
    plot_cost_service_frontier,
    plot_grouped,
    plot_learning_curves,
    policy_colors,
)

TINY = dict(periods=100, warmup=10, replications=2, search_periods=50, search_replications=2)
EVAL_HEADER = "steps,seconds,cost,cost_ci95,fill_rate,baseline,baseline_cost,gap_pct\n"


def _run(folder: Path, config: dict, rows: list[tuple[int, float, float]], baseline: float = 5.0) -> Path:
    """A run folder holding what training leaves for the plots: ``config.yaml`` and ``evaluations.csv``."""
    folder.mkdir(parents=True)
    (folder / "config.yaml").write_text(yaml.safe_dump(config))
    lines = [f"{s},1,{c},{ci},0.9,clark_scarf,{baseline},0" for s, c, ci in rows]
    (folder / "evaluations.csv").write_text(EVAL_HEADER + "\n".join(lines) + "\n")
    return folder


def _fake_frontier(topo, targets=(0.8, 0.9), **_: object) -> pd.DataFrame:
    """A frontier table of the right columns (the search itself is tested in test_frontier.py)."""
    rows = []
    for k, t in enumerate(targets):
        row = {
            "target": t,
            "group": "network",
            "fill_rate": t + 0.01,
            "fill_rate_ci95": 0.01,
            "network_fill_rate": t + 0.01,
            "meets_target": True,
            "repairs": 0,
            "dominated_by": math.nan,
        }
        for c in ("investment_on_hand", "investment_in_transit", "cost_of_service", "total_cost"):
            row[c], row[f"{c}_ci95"] = 5.0 + k, 0.5
        for n in topo.node_names:
            row[f"level_{n}"], row[f"stock_{n}"] = 10.0, 1.0
        rows.append(row)
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    """A benchmark of ex61 (two baselines and a rule labelled as a trained PPO agent, whose run folder
    holds a learning curve), a node made to see no demand, and the report's figures by file name."""
    tmp_path = tmp_path_factory.mktemp("report")
    topo = resolve("ex61")
    levels = np.array([[10.0, 8.0, 6.0]])
    res = run_benchmark(
        topo,
        baselines=("clark_scarf", "local"),
        extra_policies={"ppo:agent": BaseStockPolicy(topo, levels, kind="installation")},
        **TINY,
    )
    res.models = {
        "ppo:agent": _run(
            tmp_path / "agent", {"scenario": "ex61", "seed": 0, "config": {}}, [(512, 30.0, 2.0), (1024, 20.0, 1.0)]
        )
    }
    # As where nothing is ordered from a node: its ratio is undefined (docs/model.md, Service metrics).
    res.table["order_var_ratio_dc"] = math.nan
    closed: list[Figure] = []
    real_close = plt.close
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(frontier_module, "cost_service_frontier", _fake_frontier)
        mp.setattr(plt, "close", lambda fig=None: (closed.append(fig), real_close(fig)))
        files = write_report(res, tmp_path / "out")
    figs = dict(zip(("frontier", "stock", "bullwhip", "learning"), closed[-4:]))
    assert set(files) >= set(figs)
    return res, figs


def _bar_colours(fig: Figure) -> dict[str, tuple]:
    return {c.get_label(): to_rgba(c.patches[0].get_facecolor()) for c in fig.axes[0].containers}


def test_a_policy_has_one_colour_in_every_plot_of_the_report(report):
    res, figs = report
    policies = list(res.table.policy)
    expected = {p: to_rgba(c) for p, c in policy_colors(policies).items()}
    assert len(set(expected.values())) == len(policies)  # distinct colours
    assert _bar_colours(figs["stock"]) == expected
    assert _bar_colours(figs["bullwhip"]) == expected
    ax = figs["frontier"].axes[0]
    frontier_curve, *points = ax.containers
    assert {c.get_label(): to_rgba(c.lines[0].get_color()) for c in points} == expected
    curve = next(line for line in figs["learning"].axes[0].lines if line.get_label() == "ppo:agent eval/cost")
    assert to_rgba(curve.get_color()) == expected["ppo:agent"]


def test_the_report_draws_its_intervals(report):
    res, figs = report
    ax = figs["frontier"].axes[0]
    _, *points = ax.containers
    for c in points:
        ev = res.evaluations[c.get_label()]
        assert isinstance(c, ErrorbarContainer) and c.has_xerr and c.has_yerr
        xbar, ybar = c.lines[2]
        (x0, _), (x1, _) = xbar.get_segments()[0]
        assert x1 - x0 == pytest.approx(2 * ev.fill_rate_ci95["network"])
        (_, y0), (_, y1) = ybar.get_segments()[0]
        assert y1 - y0 == pytest.approx(2 * ev.investment_on_hand[1])
    band = figs["learning"].axes[0].collections[0].get_paths()[0].vertices
    assert band[:, 1].min() == pytest.approx(20.0 - 1.0) and band[:, 1].max() == pytest.approx(30.0 + 2.0)


def test_every_axis_says_its_unit(report):
    _, figs = report
    stock, bullwhip, frontier, learning = (figs[k].axes[0] for k in ("stock", "bullwhip", "frontier", "learning"))
    assert "(units)" in stock.get_ylabel()
    assert "variance of orders placed / of demand seen" in bullwhip.get_ylabel()
    assert "fraction of demand" in frontier.get_xlabel() and "cost per period" in frontier.get_ylabel()
    assert learning.get_xlabel().startswith("periods") and "cost per period" in learning.get_ylabel()
    ticks = learning.get_xticks()
    assert np.array_equal(ticks, np.round(ticks))  # periods are whole


def test_the_bullwhip_plot_is_per_node_and_names_a_node_nothing_is_ordered_from(report):
    res, figs = report
    ax = figs["bullwhip"].axes[0]
    nodes = list(res.topology.node_names)
    assert "per node" in ax.get_title()
    assert [t.get_text() for t in ax.get_xticklabels()] == nodes
    dc = nodes.index("dc")
    texts = [t for t in ax.texts if t.get_text() == "not ordered from"]
    assert len(texts) == 1 and texts[0].get_position()[0] == pytest.approx(dc)  # one text: every policy


def test_a_real_node_nothing_is_ordered_from_is_marked_per_policy(tmp_path, figures):
    # dual_sourcing's dc has two suppliers; the local rule orders on each node's first lane only, so
    # plant_b sees no demand, while the dual-sourcing rule orders from both.
    res = run_benchmark("dual_sourcing", baselines=("local", "fixed_split"), **TINY)
    ratios = res.table.set_index("policy")["order_var_ratio_plant_b"]
    assert math.isnan(ratios["local"]) and not math.isnan(ratios["fixed_split"])
    write_report(res, tmp_path / "out", frontier=False)
    ax = figures[-1].axes[0]
    nodes = [t.get_text() for t in ax.get_xticklabels()]
    k = list(res.table.policy).index("local")
    width = 0.8 / len(res.table)
    marked = [t.get_position()[0] for t in ax.texts if t.get_text() == "not ordered from"]
    assert marked == [pytest.approx(nodes.index("plant_b") - 0.4 + (k + 0.5) * width)]
    outline = [p for p in ax.patches if not p.get_fill()]
    local = to_rgba(policy_colors(res.table.policy)["local"])
    assert len(outline) == 1 and to_rgba(outline[0].get_edgecolor()) == local


def test_a_zero_bar_is_said_in_words(tmp_path):
    fig = plot_grouped(
        {"a": {"x": 0.0, "y": 1.0}, "b": {"x": 2.0, "y": 1.0}}, ["x", "y"], tmp_path / "g.png", "u", "t", zero="none"
    )
    assert [t.get_text() for t in fig.axes[0].texts] == ["none"]


def test_learning_curves_are_on_periods_for_every_kind_of_run(tmp_path, figures):
    rows = [(0, 40.0, 4.0), (3000, 30.0, 2.0), (6000, 25.0, 1.0)]
    runs = {
        "central": _run(tmp_path / "c", {"scenario": "ex61", "seed": 0, "config": {"control": "centralised"}}, rows),
        "decentral": _run(
            tmp_path / "d", {"scenario": "ex61", "seed": 0, "config": {"control": "decentralised"}}, rows
        ),
        "hdpo": _run(
            tmp_path / "h",
            {"algo": "hdpo", "scenario": "ex61", "seed": 0, "config": {"batch_size": 8, "horizon": 30}},
            [(0, 40.0, 4.0), (5, 30.0, 2.0)],
        ),
    }
    fig = plot_learning_curves(runs, tmp_path / "lc.png", "t")
    assert fig is not None and len(fig.axes) == 1  # one axis: every run in the same unit
    lines = {line.get_label(): line for line in fig.axes[0].lines}
    steps = learning_curve(runs["decentral"]).steps
    n_agents = resolve("ex61").n_nodes  # one node-agent per node
    np.testing.assert_array_equal(lines["central eval/cost"].get_xdata(), steps)
    np.testing.assert_allclose(lines["decentral eval/cost"].get_xdata(), steps / n_agents)
    np.testing.assert_array_equal(lines["hdpo eval/cost"].get_xdata(), [0, 5 * 8 * 30])
    # the three runs share one baseline: one dashed line, one legend entry
    assert [k for k in lines if "baseline" in k] == ["every run's eval/baseline_cost"]
    assert fig.axes[0].get_xlabel() == "periods simulated in training (summed over copies)"


def test_a_decentralised_run_whose_agents_cannot_be_counted_is_refused_naming_the_file(tmp_path):
    run = _run(
        tmp_path / "d", {"scenario": "gone.yaml", "seed": 0, "config": {"control": "decentralised"}}, [(8, 1.0, 0.1)]
    )
    with pytest.raises(ValueError, match=r"d/config.yaml: scenario: 'gone.yaml' cannot be loaded"):
        periods_per_step(run)
    assert periods_per_step(run, n_nodes=4) == 0.25
    bad = _run(tmp_path / "h", {"algo": "hdpo", "scenario": "ex61", "config": {"batch_size": 0}}, [(1, 1.0, 0.1)])
    with pytest.raises(ValueError, match=r"config.batch_size: 0 is not an integer >= 1"):
        periods_per_step(bad)


def test_frontier_policies_keep_the_report_colours_when_only_some_are_drawn(tmp_path):
    df = _fake_frontier(resolve("ex61"))
    colors = policy_colors(["a", "b", "c"])
    fig = plot_cost_service_frontier(
        df, {"c": (0.9, 5.0, 0.2, 0.01), "a": (0.95, 6.0, math.nan)}, tmp_path / "f.png", "t", colors=colors
    )
    _, c, a = fig.axes[0].containers
    assert to_rgba(c.lines[0].get_color()) == to_rgba(colors["c"]) and c.has_xerr and c.has_yerr
    assert to_rgba(a.lines[0].get_color()) == to_rgba(colors["a"]) and not a.has_xerr and not a.has_yerr


def test_the_experiment_gap_plot_has_ci_bars_a_colour_per_series_and_units(tmp_path, figures):
    table = pd.DataFrame(
        {
            "scenario": ["ex61", "ex61", "serial4"],
            "method": ["ppo", "hdpo", "ppo"],
            "cell": ["c0", "c0", "c0"],
            "config": ["-", "-", "-"],
            "gap_pct": [1.0, 0.5, 2.0],
            "gap_ci95_pct": [0.4, 0.2, math.nan],  # serial4: one seed, no interval
            "reference": ["clark_scarf", "clark_scarf", "clark_scarf"],
        }
    )
    write_results(table, table, tmp_path)
    ax = figures[-1].axes[0]
    bars = [c for c in ax.containers if isinstance(c, ErrorbarContainer)]
    assert [c.get_label() for c in bars] == ["ppo c0", "hdpo c0"]
    ppo = bars[0]
    ex61, serial4 = ppo.lines[2][0].get_segments()
    assert ex61[1, 1] - ex61[0, 1] == pytest.approx(0.8) and len(serial4) == 0  # no bar claims a certain gap
    assert to_rgba(bars[0].lines[0].get_color()) != to_rgba(bars[1].lines[0].get_color())
    assert "% of its cost per period" in ax.get_ylabel()
    assert not any(isinstance(c, BarContainer) for c in ax.containers)
