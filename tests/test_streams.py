"""One random stream per seed, whatever the block size.

A seed fixes every draw of a row (demand, lead times, outages, reset-time draws) whatever the
number of periods the simulator draws at once (``chunk``), whichever entry point runs it and
whichever policy acts: bit for bit (``docs/model.md``, Randomness). The stream layout is
checked against NumPy's own ``SeedSequence.spawn``, and the "value after value" property each
sampler must have is checked on NumPy itself.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from meio.baselines.search import local_levels
from meio.cli import main
from meio.envs.policies import BaseStockPolicy
from meio.envs.scenario import Scenario, list_scenarios
from meio.envs.simulator import Simulator

CHUNKS = (1, 7, 52, 128)
PERIODS, ROWS, SEED = 300, 3, 0


def _policy(sim: Simulator) -> BaseStockPolicy:
    return BaseStockPolicy(sim.topology, local_levels(sim.scenario).levels)


def _trajectory(
    scenario: str | Scenario, chunk: int, resets: dict[int, list[dict]] | None = None
) -> dict[str, np.ndarray]:
    """Orders, costs, per-demand-node outcomes and on-hand stock of every period, under local
    base-stock levels; ``resets`` maps a period to the keyword arguments of the resets made then."""
    sim = Simulator(scenario, n=ROWS, chunk=chunk)
    sim.reset(seeds=SEED)
    policy = _policy(sim)
    keys = ("orders", "costs", "node_out", "on_hand")
    out: dict[str, list[np.ndarray]] = {k: [] for k in keys}
    for t in range(PERIODS):
        for kwargs in (resets or {}).get(t, []):
            sim.reset(**kwargs)
        res = sim.step(policy.act(sim))
        for k, v in (
            ("orders", res.orders),
            ("costs", res.costs),
            ("node_out", res.node_out),
            ("on_hand", sim.on_hand),
        ):
            out[k].append(v.copy())
    return {k: np.array(v) for k, v in out.items()}


def _assert_same(runs: list[dict[str, np.ndarray]]) -> None:
    for chunk, run in zip(CHUNKS[1:], runs[1:]):
        for key, first in runs[0].items():
            np.testing.assert_array_equal(run[key], first, err_msg=f"{key} at chunk {chunk} vs chunk {CHUNKS[0]}")


def _mixed(seasonal: bool = False, correlated: bool = False) -> Scenario:
    """A warehouse and one retailer per demand family (the issue's case: Poisson, normal, negative
    binomial and gamma; with ``seasonal``, also uniform, discrete and seasonal or trending counts)."""
    demands = [
        {"dist": "poisson", "mean": 8},
        {"dist": "normal", "mean": 10, "sd": 4},
        {"dist": "negative_binomial", "mean": 6, "sd": 4},
        {"dist": "gamma", "mean": 5, "sd": 3},
    ]
    if seasonal:
        demands += [
            {"dist": "uniform_int", "low": 1, "high": 9},
            {"dist": "discrete", "values": [0, 4, 12], "probs": [0.3, 0.5, 0.2]},
            {"dist": "poisson", "mean": 6, "seasonality": {"amplitude": 0.5, "period": 13}},
            {"dist": "negative_binomial", "mean": 5, "sd": 3, "trend": 0.002},
            {"dist": "gamma", "mean": 4, "sd": 2, "seasonality": {"factors": [0.5, 1.0, 1.5]}},
        ]
    nodes = [{"id": "dc", "holding_cost": 0.5}] + [
        {"id": f"r{i}", "holding_cost": 1.0, "backorder_cost": 9.0, "demand": d} for i, d in enumerate(demands)
    ]
    lanes = [
        {
            "from": "external",
            "to": "dc",
            "lead_time": {"dist": "discrete", "values": [1, 2, 4], "probs": [0.5, 0.3, 0.2]},
            "disruption": {"start_probability": 0.05, "mean_duration": 3},
        }
    ]
    lanes += [{"from": "dc", "to": f"r{i}", "lead_time": 1} for i in range(len(demands))]
    data = {"name": "mixed", "horizon": 52, "nodes": nodes, "lanes": lanes}
    if correlated:
        data["demand_correlation"] = 0.4
    return Scenario.from_dict(data)


# ---- the samplers take their values one after the other (checked on NumPy itself) ------------------
SAMPLERS = {
    "random": lambda g, k: g.random(k),
    "standard_normal": lambda g, k: g.standard_normal(k),
    "standard_gamma shape 0.3": lambda g, k: g.standard_gamma(0.3, k),
    "standard_gamma shape 2.8": lambda g, k: g.standard_gamma(2.8, k),
    "poisson mean 0.4": lambda g, k: g.poisson(np.full(k, 0.4)),
    "poisson mean 60": lambda g, k: g.poisson(np.full(k, 60.0)),
    "negative_binomial": lambda g, k: g.negative_binomial(2.25, np.full(k, 0.27)),
    "integers int64": lambda g, k: g.integers(0, 97, k),
}


def _split_equals_whole(sampler, sizes: tuple[int, ...], seed: int = 11) -> bool:
    g = np.random.default_rng(seed)
    split = np.concatenate([sampler(g, k) for k in sizes])
    whole = sampler(np.random.default_rng(seed), sum(sizes))
    return bool(np.array_equal(split, whole))


@pytest.mark.parametrize("name", sorted(SAMPLERS))
def test_each_sampler_gives_the_same_values_in_one_call_or_several(name):
    assert _split_equals_whole(SAMPLERS[name], (1, 6, 45, 77, 3))


def test_the_split_check_catches_a_sampler_that_buffers_inside_a_call():
    """8-bit integers are cut from 32-bit words inside one call: the check above must see it."""
    assert not _split_equals_whole(lambda g, k: g.integers(0, 10, k, dtype=np.uint8), (1, 6, 45, 77, 3))


# ---- the stream layout is NumPy's spawn tree --------------------------------------------------------
def test_streams_are_the_documented_children_of_the_seed():
    d = {
        "name": "layout",
        "horizon": 40,
        "nodes": [
            {"id": "w", "holding_cost": 0.5},
            {"id": "a", "holding_cost": 1, "backorder_cost": 5, "demand": {"dist": "uniform_int", "low": 0, "high": 9}},
            {"id": "b", "holding_cost": 1, "backorder_cost": 5, "demand": {"dist": "normal", "mean": 10, "sd": 3}},
        ],
        "lanes": [
            {
                "from": "external",
                "to": "w",
                "lead_time": {"dist": "uniform_int", "low": 1, "high": 4},
                "disruption": {"start_probability": 0.2, "mean_duration": 2},
            },
            {"from": "w", "to": "a", "lead_time": 1},
            {"from": "w", "to": "b", "lead_time": 1},
        ],
    }
    sim = Simulator(Scenario.from_dict(d), n=2)
    sim.reset(seeds=[21, 5])
    for row, seed in enumerate((21, 5)):

        def child(kind: int, i: int = 0, seed: int = seed) -> np.random.Generator:
            # child i of child `kind`, as SeedSequence.spawn numbers them
            return np.random.default_rng(np.random.SeedSequence(seed).spawn(kind + 1)[kind].spawn(i + 1)[i])

        np.testing.assert_array_equal(sim.demand_chunk[row, :, 0], np.floor(child(1).random(40) * 10))
        normal = np.maximum(10 + 3 * stats.norm.ppf(child(1, 1).random(40)), 0)
        np.testing.assert_allclose(sim.demand_chunk[row, :, 1], normal, rtol=1e-13)
        np.testing.assert_array_equal(sim.lt_chunk[row, :, 0], 1 + np.floor(child(3).random(40) * 4))
        np.testing.assert_array_equal(sim.dis_chunk[row, :, 0], child(4).random(40))


# ---- the same seed, the same trajectory, at any block size --------------------------------------
@pytest.mark.parametrize("name", list_scenarios())
def test_every_shipped_scenario_gives_one_trajectory_at_any_chunk(name):
    runs = [_trajectory(name, c) for c in CHUNKS]
    _assert_same(runs)
    demand = runs[0]["node_out"][:, :, :, 0]
    assert len(np.unique(demand)) > 1  # random demand, not a constant
    assert runs[0]["orders"].sum() > 0


@pytest.mark.parametrize("scenario", ["beer_game", "disruption", "general", "mixed"])
def test_resets_without_a_seed_mid_block_keep_the_trajectory(scenario):
    """A row reset while its block is half used continues its streams after the periods it used."""
    sc = _mixed(seasonal=True) if scenario == "mixed" else scenario
    # mid-block resets, a seeded one, two in a row (the second with the block untouched), all rows
    resets = {
        40: [{"rows": [0]}],
        97: [{"rows": [1, 2]}],
        150: [{"seeds": [None, 5, None]}],
        201: [{}, {"rows": [1]}],
        255: [{"rows": [2]}],
    }
    runs = [_trajectory(sc, c, resets) for c in CHUNKS]
    _assert_same(runs)
    # the episode after a reset without a seed has new draws, not the first episode's again
    assert not np.array_equal(runs[0]["node_out"][40:60, 0], runs[0]["node_out"][0:20, 0])


@pytest.mark.parametrize("seasonal, correlated", [(False, False), (True, False), (False, True)])
def test_mixed_distributions_cost_the_same_at_any_chunk(seasonal, correlated):
    """The issue's case: Poisson, normal, negative binomial and gamma retailers, one base-stock
    policy, seed 0; the cost per period used to move with the block size."""
    sc = _mixed(seasonal, correlated)
    costs = []
    for chunk in CHUNKS + (64,):
        sim = Simulator(sc, n=1, chunk=chunk)
        sim.reset(seeds=SEED)
        policy = _policy(sim)
        costs.append(np.array([sim.step(policy.act(sim)).total_cost[0] for _ in range(PERIODS)]))
    for chunk, c in zip(CHUNKS[1:] + (64,), costs[1:]):
        np.testing.assert_array_equal(c, costs[0], err_msg=f"chunk {chunk}")
        assert c.mean() == costs[0].mean()


def test_policies_see_the_same_demand_and_lead_times():
    """Common random numbers: the draws do not depend on the orders."""
    sc = _mixed(seasonal=True)
    seen = []
    for scale in (0.5, 1.5):
        sim = Simulator(sc, n=2, chunk=7)
        sim.reset(seeds=3)
        levels = {k: v * scale for k, v in local_levels(sc).levels.items()}
        policy = BaseStockPolicy(sim.topology, levels)
        demand, lead = [], []
        for _ in range(60):
            res = sim.step(policy.act(sim))
            demand.append(res.node_out[:, :, 0].copy())
            lead.append(sim.lt_chunk[np.arange(2), sim.pos - 1].copy())
        seen.append((np.array(demand), np.array(lead)))
    np.testing.assert_array_equal(seen[0][0], seen[1][0])
    np.testing.assert_array_equal(seen[0][1], seen[1][1])


def test_python_api_and_cli_agree(tmp_path: Path, capsys):
    """``Simulator(s)`` (block = horizon, 52) and ``meio simulate`` (block 128) give the same run."""
    sc = _mixed()
    path = tmp_path / "mixed.yaml"
    path.write_text(json.dumps(sc.to_dict()))  # JSON is YAML
    levels = local_levels(sc).levels
    periods, warmup, reps = 500, 50, 2
    sim = Simulator(path, n=reps)
    assert sim.chunk == 52
    from meio.envs.metrics import evaluate

    api = evaluate(
        sim, BaseStockPolicy(sim.topology, levels), periods=periods, warmup=warmup, replications=reps, seed=4
    )
    text = ",".join(f"{k}={v!r}" for k, v in levels.items())
    code = main(
        [
            "simulate",
            "--scenario",
            str(path),
            "--levels",
            text,
            "--periods",
            str(periods),
            "--warmup",
            str(warmup),
            "--replications",
            str(reps),
            "--seed",
            "4",
            "--json",
        ]
    )
    assert code == 0
    cli = json.loads(capsys.readouterr().out)
    assert cli["cost_per_period"]["mean"] == api.cost_mean
    assert cli["cost_per_period"]["ci95"] == api.cost_ci95
    assert cli["fill_rate"] == api.fill_rate


def test_reset_time_draws_do_not_depend_on_the_chunk(tmp_path: Path):
    """Trace starting rows and exploring starts come from the reset stream, at any block size."""
    (tmp_path / "t.csv").write_text("demand\n" + "\n".join(str(v) for v in range(1, 30)))
    d = {
        "name": "starts",
        "horizon": 20,
        "integer_orders": True,
        "nodes": [
            {"id": "w", "holding_cost": 0.5},
            {
                "id": "a",
                "holding_cost": 1,
                "backorder_cost": 5,
                "demand": {"dist": "trace", "file": "t.csv", "start": "random"},
            },
            {"id": "b", "holding_cost": 1, "backorder_cost": 5, "demand": {"dist": "poisson", "mean": 4}},
        ],
        "lanes": [
            {"from": "external", "to": "w", "lead_time": 2},
            {"from": "w", "to": "a", "lead_time": 1},
            {"from": "w", "to": "b", "lead_time": 1},
        ],
    }
    sc = Scenario.from_dict(d, base_dir=tmp_path)
    scale = np.array([30.0, 10.0, 8.0])
    seen = []
    for chunk in CHUNKS:
        sim = Simulator(sc, n=4, chunk=chunk)
        sim.reset(seeds=9)
        sim.spread_initial_stock(np.arange(4), 1.5, scale)
        starts = [(sim.trace_offset.copy(), sim.on_hand.copy())]
        for t in range(1, 90):
            sim.step(np.full((4, sim.topology.n_slots), 4.0))
            if t % 20 == 0 or t % 33 == 0:  # episode ends and mid-block resets
                rows = np.arange(4) if t % 20 == 0 else np.array([1, 3])
                sim.reset(rows=rows)
                sim.spread_initial_stock(rows, 1.5, scale)
                starts.append((sim.trace_offset.copy(), sim.on_hand.copy()))
        seen.append(starts)
    for chunk, starts in zip(CHUNKS[1:], seen[1:]):
        for (off, stock), (off0, stock0) in zip(starts, seen[0]):
            np.testing.assert_array_equal(off, off0, err_msg=f"trace starts at chunk {chunk}")
            np.testing.assert_array_equal(stock, stock0, err_msg=f"exploring starts at chunk {chunk}")
    offsets = np.array([s[0][:, 0] for s in seen[0]])
    assert len(np.unique(offsets)) > 5  # the starting rows are drawn, and redrawn
    assert np.all(seen[0][0][1] <= 1.5 * scale + 0.5)
