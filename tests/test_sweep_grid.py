"""Sweeps as sensitivity studies: grids of parameters, paired differences on common random numbers,
the mean-preserving lead-time spread, agents with a fixed observation layout and retraining per value."""

from __future__ import annotations

import itertools
import json
from fractions import Fraction
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from meio.agents.config import ConfigError, PPOConfig
from meio.agents.policy import PPOPolicy
from meio.agents.train import train
from meio.cli import main
from meio.envs.metrics import evaluate
from meio.envs.policies import BaseStockPolicy
from meio.envs.scenario import Scenario, load_scenario
from meio.envs.simulator import Simulator
from meio.envs.spaces import ObservationMap
from meio.envs.topology import compile_topology
from meio.plots import policy_colors
from meio.sweep import lead_time_spread, paired_differences, run_sweep, set_param, write_sweep

TINY = dict(periods=60, warmup=5, replications=2, seed=0)
LT = "lanes[plant->dc].lead_time"
#: The optimal echelon base-stock levels of ex61 (MODEL.md: Snyder & Shen, Example 6.1, in our timing).
EX61_ECHELON = {"retailer": 6.49, "dc": 12.02, "plant": 22.71}
TINY_PPO = dict(
    n_envs=4,
    n_steps=32,
    batch_size=64,
    n_epochs=1,
    total_steps=128,
    eval_every=128,
    checkpoint_every=128,
    eval_periods=40,
    eval_warmup=5,
    eval_replications=2,
)


@pytest.fixture(scope="module")
def fixed_layout_agent(tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("sweep") / "fixed"
    train("ex61", PPOConfig.from_dict({**TINY_PPO, "pipeline_length": 4}), run, seed=0, progress=False)
    return run


# ---- the grid ---------------------------------------------------------------------------------------
def test_a_two_parameter_grid_has_one_row_per_combination(tmp_path, figures):
    hold = "nodes[retailer].holding_cost"
    grid = [[0, 1, 2], [7.0, 9.0]]
    res = run_sweep("ex61", [LT, hold], grid, baselines=("clark_scarf", "local"), **TINY)
    t = res.table
    policies = ["clark_scarf", "local"]
    assert len(t) == 3 * 2 * len(policies)
    assert sorted(zip(t[LT], t[hold], t.policy)) == sorted(itertools.product(*grid, policies))
    assert "value" not in t  # one column per parameter instead
    # common random numbers: the first combination differs from itself by exactly nothing
    first = t[(t[LT] == 0) & (t[hold] == 7.0)]
    assert (first[["cost_diff", "cost_diff_ci95", "fill_rate_diff", "fill_rate_diff_ci95"]] == 0).all().all()
    # the paired difference of costs is the difference of the replication means
    for policy, g in t.groupby("policy"):
        base = float(g.loc[(g[LT] == 0) & (g[hold] == 7.0), "cost_mean"].iloc[0])
        np.testing.assert_allclose(g.cost_diff, g.cost_mean - base, rtol=1e-9, atol=1e-9)
        np.testing.assert_allclose(g.fill_rate_diff, g.fill_rate - float(first.set_index("policy").fill_rate[policy]))
    cs = t[t.policy == "clark_scarf"].set_index([LT, hold])
    assert cs.loc[(2, 7.0), "cost_diff"] > 0  # a longer lead time costs more
    files = write_sweep(res, tmp_path)
    csv = pd.read_csv(files["csv"])
    assert len(csv) == len(t) and {LT, hold, "cost_diff_ci95"} <= set(csv.columns)
    assert f"`{LT}` x `{hold}`" in files["md"].read_text()
    cost_ax, fill_ax, heat_ax = figures[-1].axes[:3]
    colours = policy_colors(list(t.policy))
    for policy in policies:  # each policy's lines are in its report colour, one per holding cost
        drawn = [c.lines[0] for c in cost_ax.containers if c.lines[0].get_color() == colours[policy]]
        assert len(drawn) == 2 and all(len(line.get_xdata()) == 3 for line in drawn)
    assert [tick for tick in cost_ax.get_xticks() if 0 <= tick <= 2] == [0, 1, 2]  # integer ticks
    assert cost_ax.get_ylabel() == "cost per period" and cost_ax.get_xlabel() == LT
    assert heat_ax.get_xlabel() == LT and heat_ax.get_ylabel() == hold
    cheapest = t.groupby("policy").cost_mean.mean().idxmin()
    assert heat_ax.get_title().startswith(cheapest)
    img = heat_ax.images[0].get_array()
    expected = t[t.policy == cheapest].pivot(index=hold, columns=LT, values="cost_diff").to_numpy()
    np.testing.assert_allclose(np.asarray(img), expected)


def test_paired_differences_are_the_paired_t_interval():
    base = Scenario.from_dict(set_param(load_scenario("ex61").to_dict(), LT, 1))
    longer = Scenario.from_dict(set_param(base.to_dict(), LT, 2))
    evs = []
    for sc in (base, longer):
        topo = compile_topology(sc)
        policy = BaseStockPolicy(topo, EX61_ECHELON, kind="echelon")
        evs.append(evaluate(Simulator(topo, n=6), policy, periods=200, warmup=20, replications=6, seed=3))
    d = paired_differences(evs[1], evs[0])
    test = stats.ttest_rel(evs[1].replication_costs, evs[0].replication_costs)
    low, high = test.confidence_interval(0.95)
    assert d["cost_diff"] == pytest.approx((low + high) / 2, rel=1e-9)
    assert d["cost_diff_ci95"] == pytest.approx((high - low) / 2, rel=1e-9)
    assert d["fill_rate_diff"] == pytest.approx(evs[1].fill_rate["network"] - evs[0].fill_rate["network"], abs=1e-12)
    assert d["fill_rate_diff_ci95"] > 0
    same = paired_differences(evs[0], evs[0])
    assert same == {"cost_diff": 0.0, "cost_diff_ci95": 0.0, "fill_rate_diff": 0.0, "fill_rate_diff_ci95": 0.0}


def test_the_grid_command_and_its_errors(tmp_path, capsys):
    out = tmp_path / "grid"
    args = ["sweep", "--scenario", "ex61", "--baselines", "local", "--periods", "60", "--warmup", "5"]
    args += ["--replications", "2", "--out", str(out)]
    grid = ["--param", LT, "--values", "0,1", "--param", "nodes[plant].holding_cost", "--values", "1.0,2.0,3.0"]
    assert main([*args, *grid]) == 0
    csv = pd.read_csv(out / "sweep.csv")
    assert len(csv) == 2 * 3 and len(csv[[LT, "nodes[plant].holding_cost"]].drop_duplicates()) == 6
    assert main([*args, "--param", LT, "--values", "0,1", "--param", "nodes[plant].holding_cost"]) == 2
    assert "one --values after each --param" in capsys.readouterr().err
    assert main([*args, "--param", LT, "--values", "0", "--steps", "100"]) == 2
    assert "--steps and --parallel go with --retrain" in capsys.readouterr().err


# ---- the mean-preserving spread of a lead time ------------------------------------------------------
@pytest.mark.parametrize("mean", [1, 2, 4])
def test_the_spread_keeps_the_mean_exactly_and_widens(mean):
    variances = []
    for w in [0, 0.25, 0.5, 1, 1.5, 2, 3, 4.5, 7, 12]:
        values, probs = lead_time_spread(mean, w)
        assert all(isinstance(p, Fraction) for p in probs) and sum(probs) == 1
        assert sum(v * p for v, p in zip(values, probs)) == mean  # exactly, in rational arithmetic
        assert min(values) >= 0 and max(values) <= 2 * mean
        pmf = dict(zip(values, probs))
        assert all(pmf.get(mean - d) == pmf[mean + d] for d in range(mean + 1) if mean + d in pmf)  # symmetric
        var = sum((v - mean) ** 2 * p for v, p in zip(values, probs))
        if w == int(w) and w <= mean:  # untruncated: the discrete uniform on 2w + 1 integers, (n^2 - 1) / 12
            assert var == Fraction((2 * int(w) + 1) ** 2 - 1, 12)
        variances.append(var)
    assert variances[0] == 0 and all(b > a for a, b in zip(variances, variances[1:]))
    assert variances[-1] < mean**2  # the limit: two points, 0 and 2L


def test_the_spread_as_a_sweep_parameter(tmp_path):
    data = load_scenario("ex61").to_dict()
    spread = set_param(data, "lanes[plant->dc].lead_time_spread", 1)
    assert spread["lanes"][1]["lead_time"] == {"dist": "discrete", "values": [0, 1, 2], "probs": [1 / 3] * 3}
    assert set_param(data, "lanes[plant->dc].lead_time_spread", 0)["lanes"][1]["lead_time"] == 1
    topo = compile_topology(Scenario.from_dict(spread))
    q = topo.slot_names.index("plant->dc")
    assert topo.slot_lt_mean[q] == pytest.approx(1.0, abs=1e-15) and topo.slot_lt_max[q] == 2
    with pytest.raises(ValueError, match=r"lanes\[dc->retailer\]\.lead_time_spread: lead_time_spread: 1 around a lead"):
        set_param(data, "lanes[dc->retailer].lead_time_spread", 1)  # lead time 0
    with pytest.raises(ValueError, match=r"lead_time_spread: -1 is not a number >= 0"):
        set_param(data, "lanes[plant->dc].lead_time_spread", -1)
    with pytest.raises(ValueError, match=r"lanes\[plant->dc\]\.lead_time is \{'dist': 'discrete'"):
        set_param(spread, "lanes[plant->dc].lead_time_spread", 1)  # already random
    # in a grid the spread is taken around the lead time the grid sets, whatever the order given
    res = run_sweep("ex61", ["lanes[plant->dc].lead_time_spread", LT], [[0, 2], [2, 3]], baselines=("local",), **TINY)
    assert len(res.table) == 4
    local = res.table.set_index(["lanes[plant->dc].lead_time_spread", LT])
    assert local.loc[(2, 3), "cost_mean"] != local.loc[(0, 3), "cost_mean"]


# ---- a fixed observation layout ---------------------------------------------------------------------
def test_a_fixed_pipeline_length_pads_and_keeps_the_shared_features():
    sim = Simulator("ex61", n=3)
    sim.reset(seeds=5)
    policy = BaseStockPolicy(sim.topology, EX61_ECHELON, kind="echelon")
    for _ in range(7):
        sim.step(policy.act(sim))
    default = ObservationMap(sim.topology)
    fixed = ObservationMap(sim.topology, pipeline_length=4)
    lt_max = sim.topology.slot_lt_max
    assert fixed.size == default.size + int((4 - lt_max).sum())
    a = default(sim, np.zeros((3, default.size), dtype=np.float32))
    b = fixed(sim, np.full((3, fixed.size), 99.0, dtype=np.float32))  # padding is written, not left over
    where = {label: k for k, label in enumerate(fixed.labels)}
    assert set(default.labels) <= set(where)
    np.testing.assert_array_equal(b[:, [where[label] for label in default.labels]], a)
    padded = [k for k, label in enumerate(fixed.labels) if label not in default.labels]
    assert len(padded) == int((4 - lt_max).sum()) and np.all(b[:, padded] == 0.0)
    assert np.any(a[:, [k for k, label in enumerate(default.labels) if label.startswith("pipeline")]] != 0)
    with pytest.raises(ValueError, match=r"pipeline_length: 1 is shorter than the longest lead time .* \(2 periods"):
        ObservationMap(sim.topology, pipeline_length=1)
    with pytest.raises(ConfigError, match="pipeline_length"):
        PPOConfig.from_dict({"pipeline_length": -1})


def test_an_agent_with_a_fixed_layout_is_evaluated_across_a_lead_time_sweep(fixed_layout_agent):
    meta = json.loads((fixed_layout_agent / "best" / "meta.json").read_text())
    assert meta["pipeline_length"] == 4
    agent = PPOPolicy.load(fixed_layout_agent / "best")
    assert agent.pipeline_length == 4
    res = run_sweep("ex61", LT, [1, 2, 3], models=[fixed_layout_agent], baselines=("local",), **TINY)
    label = f"ppo:{fixed_layout_agent.name}"
    rows = res.table[res.table.policy == label].set_index("value")
    assert list(rows.index) == [1, 2, 3] and not res.skipped
    # at ex61's own lead time the row is the agent's cost on ex61 itself
    assert rows.loc[1, "cost_mean"] == pytest.approx(evaluate("ex61", agent, **TINY).cost_mean, rel=1e-12)
    too_long = run_sweep("ex61", LT, [5], models=[fixed_layout_agent], baselines=("local",), **TINY)
    assert "pipeline_length: 4 is shorter" in too_long.skipped[f"{label} at 5"]


def test_retrain_trains_and_evaluates_one_agent_per_value(tmp_path):
    cfg = PPOConfig.from_dict(TINY_PPO)
    res = run_sweep("ex61", LT, [0, 2], baselines=("local",), retrain=cfg, retrain_dir=tmp_path, **TINY)
    runs = sorted(p for p in tmp_path.iterdir() if p.is_dir())
    assert [p.name for p in runs] == ["combo000", "combo001"]
    ours = res.table[res.table.policy == "ppo:retrained"].set_index("value")
    assert list(ours.index) == [0, 2]
    for run, value in zip(runs, [0, 2]):  # each agent was trained at its own value and is evaluated there
        agent = PPOPolicy.load(run / "best")
        sc = Scenario.from_dict(set_param(load_scenario("ex61").to_dict(), LT, value))
        assert ours.loc[value, "cost_mean"] == pytest.approx(evaluate(sc, agent, **TINY).cost_mean, rel=1e-12)
