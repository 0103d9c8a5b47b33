"""The benchmark and the sweep: reproducibility, paired comparisons, skipped baselines, report files."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from agents.config import PPOConfig
from agents.train import train
from envs.scenario import load_scenario
from meio.benchmark import run_benchmark, write_report
from meio.cli import main
from meio.sweep import run_sweep, set_param, write_sweep

FAST = dict(periods=300, warmup=20, replications=3, seed=0)


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    run = tmp_path_factory.mktemp("bm") / "agent"
    cfg = PPOConfig.from_dict(dict(n_envs=4, n_steps=64, batch_size=64, n_epochs=1, total_steps=512,
                                   eval_every=256, eval_periods=40, eval_warmup=5, eval_replications=2))
    train("ex61", cfg, run, seed=0, progress=False)
    return run


def test_same_seed_gives_identical_tables(model):
    a = run_benchmark("ex61", models=[model], baselines=("clark_scarf", "local"), **FAST)
    b = run_benchmark("ex61", models=[model], baselines=("clark_scarf", "local"), **FAST)
    pd.testing.assert_frame_equal(a.table, b.table)
    assert set(a.table.policy) == {"clark_scarf", "local", f"ppo:{model.name}"}
    for col in ("cost_mean", "cost_ci95", "gap_pct", "fill_rate", "cycle_service_level", "stockout_frequency",
                "inventory_turnover", "cost_holding", "stock_retailer", "order_var_ratio_dc"):
        assert col in a.table


def test_a_policy_against_itself_has_zero_paired_difference(model):
    res = run_benchmark("ex61", models=[model, model], baselines=("clark_scarf",), **FAST)
    t = res.table.set_index("policy")
    first, second = f"ppo:{model.name}", f"ppo:{model.name}#1"
    np.testing.assert_array_equal(res.evaluations[first].per_period_cost, res.evaluations[second].per_period_cost)
    assert t.loc[first, "gap_pct"] == t.loc[second, "gap_pct"]
    assert res.reference == "clark_scarf"
    assert t.loc["clark_scarf", "gap_pct"] == 0.0 and t.loc["clark_scarf", "gap_ci95_pct"] == 0.0


def test_scenario_without_analytic_baselines_still_benchmarks_and_says_why(tmp_path):
    res = run_benchmark("lost_sales", search_periods=150, search_replications=2, **FAST)
    assert {"local", "optimised_installation", "optimised_echelon"} <= set(res.table.policy)
    for name in ("clark_scarf", "shang_song", "gsm"):
        assert "lost" in res.skipped[name]
    assert res.reference == res.table.policy[0]               # the cheapest when no optimum is known
    files = write_report(res, tmp_path / "out", frontier=False)
    report = files["report"].read_text()
    assert "clark_scarf" in report and "unmet demand is lost" in report
    assert pd.read_csv(files["csv"]).shape[0] == len(res.table)
    row = res.table.set_index("policy").loc["optimised_installation"]
    pairs = dict(part.split("=") for part in row.levels.split("; "))
    assert sorted(pairs) == sorted(n.id for n in load_scenario("lost_sales").nodes)
    assert all(float(v) >= 0 for v in pairs.values())
    assert f"- `optimised_installation` (installation): {row.levels}" in report
    for key in ("stock", "bullwhip"):
        assert files[key].stat().st_size > 1000


def test_cli_benchmark_writes_the_report_with_plots(tmp_path, model, capsys):
    code = main(["benchmark", "--scenario", "ex61", "--models", str(model), "--periods", "200", "--warmup", "10",
                 "--replications", "2", "--search-periods", "100", "--search-replications", "2", "--out",
                 str(tmp_path / "b")])
    out = capsys.readouterr().out
    assert code == 0
    assert "| clark_scarf |" in out and f"ppo:{model.name}" in out
    for name in ("results.csv", "results.md", "report.md", "frontier.png", "stock_positioning.png", "bullwhip.png",
                 "learning_curves.png"):
        assert (tmp_path / "b" / name).is_file(), name
    assert "![frontier](frontier.png)" in (tmp_path / "b" / "report.md").read_text()


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


def test_sweep_reoptimises_per_value(tmp_path, model):
    res = run_sweep("ex61", "lanes[plant->dc].lead_time", [0, 2], models=[model], baselines=("clark_scarf",),
                    periods=300, warmup=20, replications=3)
    cs = res.table[res.table.policy == "clark_scarf"].set_index("value")
    assert cs.loc[2, "cost_mean"] > cs.loc[0, "cost_mean"]          # a longer lead time costs more
    assert cs.loc[2, "level_plant"] > cs.loc[0, "level_plant"]       # and needs more stock upstream
    assert any("observation has another size" in why for why in res.skipped.values())
    files = write_sweep(res, tmp_path)
    assert files["png"].stat().st_size > 1000 and "clark_scarf" in files["md"].read_text()
    code = main(["sweep", "--scenario", "ex61", "--param", "nodes[retailer].holding_cost", "--values", "-1"])
    assert code == 2
