"""``meio simulate`` and the evaluation behind it, against analytic values."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from meio.cli import main
from meio.envs.metrics import batch_means, evaluate, mean_ci95
from meio.envs.policies import BaseStockPolicy
from meio.envs.scenario import Scenario, load_scenario
from meio.envs.simulator import Simulator

sys.path.insert(0, str(Path(__file__).resolve().parent))
from reference_sim import ReferenceSimulator  # noqa: E402

EX61_LEVELS = "retailer=6.49,dc=12.02,plant=22.71"


def run_cli(capsys, *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_ex61_echelon_levels_reproduce_the_textbook_cost_within_the_ci(capsys):
    """Snyder & Shen Example 6.1: optimal cost about 17.66 per period, excluding pipeline stock."""
    code, out, _ = run_cli(
        capsys,
        "simulate",
        "--scenario",
        "ex61",
        "--policy",
        "base-stock",
        "--kind",
        "echelon",
        "--levels",
        EX61_LEVELS,
        "--periods",
        "20000",
        "--warmup",
        "200",
        "--replications",
        "10",
        "--seed",
        "0",
        "--json",
    )
    assert code == 0
    report = json.loads(out)
    ex = report["cost_per_period_excluding_pipeline"]
    assert ex["ci95"] < 0.25  # precise enough to mean something
    assert abs(ex["mean"] - 17.66) <= ex["ci95"]
    assert report["cost_per_period"]["ci_method"] == "replications"
    assert set(report["cost_split"]) == {"holding", "backorder", "lost_sales", "ordering", "transport", "pipeline"}
    assert sum(report["cost_split"].values()) == pytest.approx(report["cost_per_period"]["mean"], rel=1e-9)
    assert set(report["fill_rate"]) == {"retailer", "network"}
    assert 0.9 < report["fill_rate"]["retailer"] < 1.0
    # Under base-stock every stage orders exactly what it saw: no bullwhip.
    for node, ratio in report["order_variance_ratio"].items():
        assert ratio == pytest.approx(1.0, abs=1e-3), node  # one period of lag at the window edges
    assert report["policy"]["levels"] == {"plant": 22.71, "dc": 12.02, "retailer": 6.49}


def newsvendor_scenario(unmet: str = "backorder") -> Scenario:
    key = "backorder_cost" if unmet == "backorder" else "lost_sales_cost"
    return Scenario.from_dict(
        {
            "name": "newsvendor",
            "unmet_demand": unmet,
            "integer_orders": True,
            "nodes": [{"id": "shop", "holding_cost": 1.0, key: 9.0, "demand": {"dist": "poisson", "mean": 5}}],
            "lanes": [{"from": "external", "to": "shop", "lead_time": 0}],
        }
    )


@pytest.mark.parametrize("unmet", ["backorder", "lost_sales"])
def test_single_stage_zero_lead_time_matches_the_newsvendor_formulas(unmet):
    """With lead time 0 a base-stock level S starts every period with S on hand (after backorders)."""
    level, h, p = 6, 1.0, 9.0
    sc = newsvendor_scenario(unmet)
    sim = Simulator(sc, n=8)
    result = evaluate(
        sim, BaseStockPolicy(sim.topology, {"shop": level}), periods=25_000, warmup=50, replications=8, seed=11
    )
    d = np.arange(0, 60)
    pmf = stats.poisson.pmf(d, 5)
    over = np.maximum(level - d, 0) @ pmf
    short = np.maximum(d - level, 0) @ pmf
    cost = h * over + p * short
    assert abs(result.cost_mean - cost) <= result.cost_ci95
    assert result.fill_rate["shop"] == pytest.approx(1 - short / 5.0, abs=0.004)
    assert result.cycle_service_level["shop"] == pytest.approx(stats.poisson.cdf(level, 5), abs=0.005)
    assert result.mean_on_hand["shop"] == pytest.approx(over, abs=0.02)
    sold = 5.0 if unmet == "backorder" else 5.0 - short  # backorders are all served eventually
    assert result.inventory_turnover["shop"] == pytest.approx(sold / over, rel=0.01)
    if unmet == "lost_sales":
        assert result.lost_sales["shop"] == pytest.approx(short, abs=0.01)
    else:
        assert result.backorders["shop"] == pytest.approx(short, abs=0.01)


def test_single_replication_uses_batch_means():
    sim = Simulator("ex61", n=1)
    policy = BaseStockPolicy(sim.topology, {"retailer": 6.49, "dc": 12.02, "plant": 22.71}, kind="echelon")
    result = evaluate(sim, policy, periods=4000, warmup=50, replications=1, seed=2)
    assert result.ci_method == "batch_means(20)"
    assert result.cost_ci95 > 0
    np.testing.assert_allclose(result.per_period_cost.mean(), result.cost_mean, rtol=1e-12)


def test_mean_ci95_covers_a_known_mean_about_95_percent_of_the_time():
    rng = np.random.default_rng(0)
    trials = 4000
    covered = 0
    for _ in range(trials):
        m, h = mean_ci95(rng.normal(2.0, 3.0, size=10))
        covered += abs(m - 2.0) <= h
    # For normal samples the t interval is exact: coverage 0.95, and 4000 trials give sd 0.0034.
    assert 0.935 <= covered / trials <= 0.965
    with pytest.raises(ValueError, match="at least 2 samples"):
        mean_ci95(np.array([1.0]))


def test_batch_means_drop_the_remainder_and_average_each_batch():
    x = np.arange(43.0)
    bm = batch_means(x, 4)
    np.testing.assert_allclose(bm, [np.mean(x[i * 10 : (i + 1) * 10]) for i in range(4)])


def test_same_seed_same_report_and_policies_share_random_numbers():
    sim = Simulator("distribution", n=2)
    levels = {"warehouse": 150, "north": 25, "central": 35, "south": 45}
    a = evaluate(sim, BaseStockPolicy(sim.topology, levels), periods=500, warmup=20, replications=2, seed=4)
    b = evaluate(sim, BaseStockPolicy(sim.topology, levels), periods=500, warmup=20, replications=2, seed=4)
    np.testing.assert_array_equal(a.per_period_cost, b.per_period_cost)
    levels2 = dict(levels, north=30)
    c = evaluate(sim, BaseStockPolicy(sim.topology, levels2), periods=500, warmup=20, replications=2, seed=4)
    # the same node under a higher level of its own, on the same demand: it fills more
    assert c.fill_rate["north"] > a.fill_rate["north"]
    # common random numbers: the demand a policy faces does not depend on the policy
    sim.reset(seeds=4)
    first = sim.demand_chunk.copy()
    sim.step(np.full((2, sim.topology.n_slots), 100.0))
    sim.reset(seeds=4)
    np.testing.assert_array_equal(sim.demand_chunk, first)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--levels", "retailer=6,dc=12"], "levels: no level for plant"),
        (["--levels", "retailer=6,dc=12,plnt=3"], "--levels plnt: not a node of ex61 (did you mean 'plant'?)"),
        (["--levels", "retailer=6,dc=x,plant=3"], "--levels dc: 'x' is not a number"),
        (["--levels", "retailer=inf,dc=1,plant=3"], "retailer: inf is not a finite number"),
        (["--levels", EX61_LEVELS, "--periods", "0"], "argument --periods: 0 is below 1"),
        ([], "--levels: required with --policy base-stock"),
    ],
)
def test_cli_errors_name_the_field(capsys, args, message):
    code, out, err = run_cli(capsys, "simulate", "--scenario", "ex61", *args)
    assert code == 2
    assert message in err
    assert out == ""


def test_cli_text_report_lists_every_node(capsys):
    code, out, _ = run_cli(
        capsys,
        "simulate",
        "--scenario",
        "general",
        "--levels",
        "plant_a=40,plant_b=30,dc=60,east=25,west=20",
        "--periods",
        "400",
        "--replications",
        "2",
    )
    assert code == 0
    for node in ("plant_a", "plant_b", "dc", "east", "west"):
        assert node in out
    assert "cost per period" in out and "95% CI, replications" in out


def test_fill_rate_of_each_node_is_its_filled_over_its_demand_in_the_reference():
    """The reported fill rate of node ``j`` is ``sum_t filled_jt / sum_t D_jt`` over the window
    (``docs/model.md``, step 4), recomputed for the same node by the per-node reference simulator
    (``tests/reference_sim.py``) fed the orders the policy placed and the simulator's own draws."""
    sc = load_scenario("distribution")
    periods, warmup, reps, seed = 300, 20, 2, 4
    sim = Simulator(sc, n=reps, chunk=warmup + periods + 1)  # one block of draws covers the run
    topo = sim.topology
    levels = {"warehouse": 120, "north": 22, "central": 30, "south": 38}  # short enough to stock out
    policy = BaseStockPolicy(topo, levels)
    ev = evaluate(sim, policy, periods=periods, warmup=warmup, replications=reps, seed=seed)

    sim.reset(seeds=seed)
    refs = [ReferenceSimulator(sc) for _ in range(reps)]
    slots = [(int(topo.slot_lane[s]), int(topo.slot_mode[s])) for s in range(topo.n_slots)]
    names = [topo.node_names[j] for j in topo.demand_nodes]
    dis_lane = {
        int(topo.slot_disruption[s]): int(topo.slot_lane[s])
        for s in range(topo.n_slots)
        if topo.slot_disruption[s] >= 0
    }
    demand = dict.fromkeys(names, 0.0)
    filled = dict.fromkeys(names, 0.0)
    for t in range(warmup + periods):
        orders = policy.act(sim)
        for b, ref in enumerate(refs):
            p = int(sim.pos[b])
            d = {nm: float(sim.demand_chunk[b, p, k]) for k, nm in enumerate(names)}
            lts = {
                key: int(sim.lt_chunk[b, p, topo.slot_lt_rand[s]])
                if topo.slot_lt_rand[s] >= 0
                else int(topo.slot_lt_const[s])
                for s, key in enumerate(slots)
            }
            u = {lane: float(sim.dis_chunk[b, p, x]) for x, lane in dis_lane.items()}
            out = ref.step({key: float(orders[b, s]) for s, key in enumerate(slots)}, d, lts, u)
            if t >= warmup:
                for nm in names:
                    demand[nm] += out["demand"][nm][0]
                    filled[nm] += out["demand"][nm][1]
        sim.step(orders)
    for nm in names:
        expected = filled[nm] / demand[nm]
        assert expected < 0.999, f"{nm} never runs short: the comparison would not tell nodes apart"
        assert ev.fill_rate[nm] == pytest.approx(expected, rel=1e-9), nm
