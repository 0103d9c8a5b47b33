"""The benchmark and the sweep: reproducibility, paired comparisons, skipped baselines, report files."""

from __future__ import annotations

from pathlib import Path

import matplotlib.image as mpimg
import numpy as np
import pandas as pd
import pytest
from matplotlib.colors import to_rgb
from matplotlib.figure import Figure
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from meio.agents.config import PPOConfig
from meio.agents.train import train
from meio.benchmark import run_benchmark, write_report
from meio.cli import main
from meio.envs.scenario import load_scenario
from meio.envs.topology import compile_topology
from meio.sweep import run_sweep, set_param, write_sweep

FAST = dict(periods=300, warmup=20, replications=3, seed=0)


def check_png(path: Path, fig: Figure, dpi: int) -> np.ndarray:
    """Read the saved PNG back: the figure's size in pixels, not blank, and every series drawn in
    its colour (bars by face colour, lines by line colour) visible somewhere in the image."""
    img = mpimg.imread(path)[:, :, :3]
    w, h = fig.get_size_inches()
    assert img.shape[:2] == (round(h * dpi), round(w * dpi))
    white = (img > 0.98).all(axis=2).mean()
    assert 0.3 < white < 0.98, f"{path.name}: {white:.0%} of the pixels are white"
    series = {
        to_rgb(p.get_facecolor())
        for ax in fig.axes
        for p in ax.patches
        if p.get_height() > 0
        and p.get_width() > 0
        and p.get_facecolor()[3] > 0
        and to_rgb(p.get_facecolor()) != (1.0, 1.0, 1.0)
    }
    series |= {to_rgb(line.get_color()) for ax in fig.axes for line in ax.lines if len(line.get_xdata()) > 1}
    for colour in series:
        near = (np.abs(img - np.array(colour)) < 0.04).all(axis=2).sum()
        assert near >= 20, f"{path.name}: the colour {colour} of a series is not in the image"
    return img


def bar_heights(fig: Figure) -> dict[str, list[float]]:
    """Bar heights per legend entry (one bar container per policy) of a grouped bar chart."""
    ax = fig.axes[0]
    return {c.get_label(): [float(b.get_height()) for b in c] for c in ax.containers}


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    run = tmp_path_factory.mktemp("bm") / "agent"
    cfg = PPOConfig.from_dict(
        dict(
            n_envs=4,
            n_steps=64,
            batch_size=64,
            n_epochs=1,
            total_steps=512,
            eval_every=256,
            eval_periods=40,
            eval_warmup=5,
            eval_replications=2,
        )
    )
    train("ex61", cfg, run, seed=0, progress=False)
    return run


def test_same_seed_gives_identical_tables(model):
    a = run_benchmark("ex61", models=[model], baselines=("clark_scarf", "local"), **FAST)
    b = run_benchmark("ex61", models=[model], baselines=("clark_scarf", "local"), **FAST)
    pd.testing.assert_frame_equal(a.table, b.table)
    assert set(a.table.policy) == {"clark_scarf", "local", f"ppo:{model.name}"}
    for col in (
        "cost_mean",
        "cost_ci95",
        "gap_pct",
        "fill_rate",
        "cycle_service_level",
        "stockout_frequency",
        "inventory_turnover",
        "cost_holding",
        "stock_retailer",
        "order_var_ratio_dc",
    ):
        assert col in a.table


def test_a_policy_against_itself_has_zero_paired_difference(model):
    res = run_benchmark("ex61", models=[model, model], baselines=("clark_scarf",), **FAST)
    t = res.table.set_index("policy")
    first, second = f"ppo:{model.name}", f"ppo:{model.name}#1"
    np.testing.assert_array_equal(res.evaluations[first].per_period_cost, res.evaluations[second].per_period_cost)
    assert t.loc[first, "gap_pct"] == t.loc[second, "gap_pct"]
    assert res.reference == "clark_scarf"
    assert t.loc["clark_scarf", "gap_pct"] == 0.0 and t.loc["clark_scarf", "gap_ci95_pct"] == 0.0


def test_scenario_without_analytic_baselines_still_benchmarks_and_says_why(tmp_path, figures):
    res = run_benchmark("lost_sales", search_periods=150, search_replications=2, **FAST)
    assert {"local", "optimised_installation", "optimised_echelon"} <= set(res.table.policy)
    for name in ("clark_scarf", "shang_song", "gsm"):
        assert "lost" in res.skipped[name]
    assert res.reference == res.table.policy[0]  # the cheapest when no optimum is known
    files = write_report(res, tmp_path / "out", frontier=False)
    report = files["report"].read_text()
    assert "clark_scarf" in report and "unmet demand is lost" in report
    assert pd.read_csv(files["csv"]).shape[0] == len(res.table)
    row = res.table.set_index("policy").loc["optimised_installation"]
    pairs = dict(part.split("=") for part in row.levels.split("; "))
    assert sorted(pairs) == sorted(n.id for n in load_scenario("lost_sales").nodes)
    assert all(float(v) >= 0 for v in pairs.values())
    assert f"- `optimised_installation` (installation): {row.levels}" in report
    # the two bar charts hold the table: one bar per node and policy, at the table's value
    stock_fig, bullwhip_fig = figures[-2:]
    nodes = list(compile_topology(load_scenario("lost_sales")).node_names)
    for fig, key, column in ((stock_fig, "stock", "stock_"), (bullwhip_fig, "bullwhip", "order_var_ratio_")):
        check_png(files[key], fig, dpi=120)
        ax = fig.axes[0]
        assert [t.get_text() for t in ax.get_xticklabels()] == nodes
        assert [t.get_text() for t in ax.get_legend().get_texts()] == list(res.table.policy)
        heights = bar_heights(fig)
        for _, r in res.table.iterrows():
            np.testing.assert_allclose(heights[r["policy"]], [r[column + n] for n in nodes], equal_nan=True)
    assert stock_fig.axes[0].get_ylabel() == "mean on-hand stock (units)"
    assert "where the stock is held" in stock_fig.axes[0].get_title()
    assert [list(line.get_ydata()) for line in bullwhip_fig.axes[0].lines] == [[1.0, 1.0]]  # the no-bullwhip line


def test_cli_benchmark_writes_the_report_with_plots(tmp_path, model, capsys, figures):
    code = main(
        [
            "benchmark",
            "--scenario",
            "ex61",
            "--models",
            str(model),
            "--periods",
            "200",
            "--warmup",
            "10",
            "--replications",
            "2",
            "--search-periods",
            "100",
            "--search-replications",
            "2",
            "--out",
            str(tmp_path / "b"),
        ]
    )
    out = capsys.readouterr().out
    assert code == 0
    assert "| clark_scarf |" in out and f"ppo:{model.name}" in out
    for name in (
        "results.csv",
        "results.md",
        "report.md",
        "frontier.png",
        "stock_positioning.png",
        "bullwhip.png",
        "learning_curves.png",
    ):
        assert (tmp_path / "b" / name).is_file(), name
    assert "![frontier](frontier.png)" in (tmp_path / "b" / "report.md").read_text()
    frontier, stock, bullwhip, learning = figures[-4:]
    table = pd.read_csv(tmp_path / "b" / "results.csv")
    for fig, name in (
        (frontier, "frontier"),
        (stock, "stock_positioning"),
        (bullwhip, "bullwhip"),
        (learning, "learning_curves"),
    ):
        check_png(tmp_path / "b" / f"{name}.png", fig, dpi=120)
    # frontier: the cheapest policy meeting each target (frontier.csv), then one marker per policy
    ax = frontier.axes[0]
    curve, *markers = ax.containers
    fdf = pd.read_csv(tmp_path / "b" / "frontier.csv")
    np.testing.assert_allclose(curve[0].get_xdata(), fdf.fill_rate, rtol=1e-12)
    assert (fdf.fill_rate >= fdf.target).all()
    assert [t.get_text() for t in ax.get_legend().get_texts()][1:] == list(table.policy)
    for m, (_, r) in zip(markers, table.iterrows()):
        np.testing.assert_allclose(m[0].get_xydata()[0], [r.fill_rate, r.investment_on_hand], rtol=1e-12)
    assert ax.get_xlabel().startswith("fill rate (network") and "investment" in ax.get_ylabel()
    assert [line.get_label() for line in learning.axes[0].lines] == [
        f"ppo:{model.name} eval/cost",
        f"ppo:{model.name} eval/baseline_cost",
    ]


def test_learning_curve_plots_each_evaluation_at_its_step(tmp_path, model, figures):
    """The curve's points are the run's evaluations as TensorBoard logged them (``eval/cost`` and
    ``eval/baseline_cost``; the plot reads ``evaluations.csv``): same steps, same costs."""
    from meio.plots import plot_learning_curves

    assert plot_learning_curves({"agent": model}, tmp_path / "lc.png", "curves")
    fig = figures[-1]
    check_png(tmp_path / "lc.png", fig, dpi=120)
    evals = pd.read_csv(model / "evaluations.csv")
    assert len(evals) >= 2
    curve, base = fig.axes[0].lines
    np.testing.assert_allclose(base.get_ydata(), evals.baseline_cost.iloc[-1], rtol=1e-12)
    np.testing.assert_allclose(curve.get_ydata(), evals.cost, rtol=1e-12)
    np.testing.assert_array_equal(curve.get_xdata(), evals.steps)
    # The same points as TensorBoard's eval/cost (logged as float32).
    logged = {}
    for f in sorted((model / "tb").rglob("events.out.tfevents.*")):
        acc = EventAccumulator(str(f), size_guidance={"scalars": 0})
        acc.Reload()
        logged.update(
            {e.step: e.value for e in acc.Scalars("eval/cost")} if "eval/cost" in acc.Tags()["scalars"] else {}
        )
    assert sorted(logged) == list(curve.get_xdata())
    np.testing.assert_allclose([logged[s] for s in sorted(logged)], curve.get_ydata(), rtol=1e-6)


def test_set_param_by_id_and_index():
    data = load_scenario("ex61").to_dict()
    changed = set_param(data, "lanes[plant->dc].lead_time", 3)
    assert changed["lanes"][1]["lead_time"] == 3 and data["lanes"][1]["lead_time"] == 1
    assert set_param(data, "nodes[0].demand.mean", 7)["nodes"][0]["demand"]["mean"] == 7
    assert set_param(data, "nodes[retailer].holding_cost", 9)["nodes"][0]["holding_cost"] == 9
    with pytest.raises(ValueError, match="no node 'retailr' \\(did you mean 'retailer'\\?\\)"):
        set_param(data, "nodes[retailr].holding_cost", 1)
    with pytest.raises(ValueError, match="out of range"):
        set_param(data, "lanes[7].lead_time", 1)


def test_sweep_reoptimises_per_value(tmp_path, model, figures):
    res = run_sweep(
        "ex61",
        "lanes[plant->dc].lead_time",
        [0, 2],
        models=[model],
        baselines=("clark_scarf",),
        periods=300,
        warmup=20,
        replications=3,
    )
    cs = res.table[res.table.policy == "clark_scarf"].set_index("value")
    assert cs.loc[2, "cost_mean"] > cs.loc[0, "cost_mean"]  # a longer lead time costs more
    assert cs.loc[2, "level_plant"] > cs.loc[0, "level_plant"]  # and needs more stock upstream
    assert any("observation has another size" in why for why in res.skipped.values())
    files = write_sweep(res, tmp_path)
    assert "clark_scarf" in files["md"].read_text()
    fig = figures[-1]
    check_png(files["png"], fig, dpi=110)
    cost_ax, fill_ax, level_ax = fig.axes
    policies = list(dict.fromkeys(res.table.policy))
    assert [t.get_text() for t in cost_ax.get_legend().get_texts()] == policies
    for k, policy in enumerate(policies):
        g = res.table[res.table.policy == policy]
        data = cost_ax.containers[k].lines[0]  # the errorbar's line through the means
        np.testing.assert_array_equal(np.asarray(data.get_xdata(), dtype=float), g.value.astype(float))
        np.testing.assert_allclose(np.asarray(data.get_ydata(), dtype=float), g.cost_mean.astype(float))
        np.testing.assert_allclose(np.asarray(fill_ax.lines[k].get_ydata(), dtype=float), g.fill_rate.astype(float))
    assert level_ax.get_title() == "levels of clark_scarf"
    assert sorted(line.get_label() for line in level_ax.lines) == ["dc", "plant", "retailer"]
    plant = next(line for line in level_ax.lines if line.get_label() == "plant")
    np.testing.assert_allclose(np.asarray(plant.get_ydata(), dtype=float), cs.level_plant.loc[[0, 2]].astype(float))
    code = main(["sweep", "--scenario", "ex61", "--param", "nodes[retailer].holding_cost", "--values", "-1"])
    assert code == 2
