"""Rules written once and shared: the column names of the step's outputs, the fill rate, the planned
service level and the choice of a run's reference policy."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest
from scipy import stats

from meio.baselines.run import REFERENCE_CANDIDATES, choose_reference
from meio.baselines.search import MAX_SERVICE_LEVEL, critical_ratio, local_levels, service_levels, simulate_candidates
from meio.envs import dynamics, topology
from meio.envs.dynamics import C_HOLD, COST_NAMES, O_DEMAND, O_FILLED, O_SHORT, OUT_NAMES
from meio.envs.metrics import evaluate, fill_rate
from meio.envs.multi_echelon import step_info
from meio.envs.policies import BaseStockPolicy
from meio.envs.scenario import Scenario
from meio.envs.simulator import Simulator
from meio.envs.topology import compile_topology


def _scenario(retailers: dict[str, tuple[float, float, float | None]], wh_target: float | None = None) -> Scenario:
    """A warehouse supplying retailers ``{id: (holding, backorder, service_target)}``, Poisson demand 5."""
    nodes = [{"id": "wh", "holding_cost": 0.5, **({"service_target": wh_target} if wh_target else {})}]
    lanes = [{"from": "external", "to": "wh", "lead_time": 2}]
    for rid, (h, p, target) in retailers.items():
        node = {
            "id": rid,
            "holding_cost": h,
            "backorder_cost": p,
            "demand": {"dist": "poisson", "mean": 5},
            "initial_inventory": 3,
        }
        if target is not None:
            node["service_target"] = target
        nodes.append(node)
        lanes.append({"from": "wh", "to": rid, "lead_time": 1})
    return Scenario.from_dict({"name": "rules", "nodes": nodes, "lanes": lanes})


# --- column names -----------------------------------------------------------------------------


def test_column_constants_follow_the_one_list_of_names():
    assert topology.COST_NAMES is dynamics.COST_NAMES
    assert [dynamics.C_HOLD, dynamics.C_BACK, dynamics.C_LOST, dynamics.C_ORDER, dynamics.C_TRANS, dynamics.C_PIPE] == [
        COST_NAMES.index(n) for n in ("holding", "backorder", "lost_sales", "ordering", "transport", "pipeline")
    ]
    assert (O_DEMAND, O_FILLED, O_SHORT) == tuple(OUT_NAMES.index(n) for n in ("demand", "filled", "short"))


def test_named_columns_hold_what_their_names_say():
    """One period by hand: the holding column is h * on-hand (MODEL.md step 4) and the demand,
    filled and short columns are the demand drawn split by what stock covered."""
    sc = _scenario({"r": (2.0, 9.0, None)})
    sim = Simulator(sc, n=3)
    sim.reset(seeds=7)
    demand = sim.demand_chunk[:, sim.pos[0], 0].copy()
    res = sim.step(np.zeros((3, sim.topology.n_slots)))
    out = res.node_out[:, 0]
    np.testing.assert_array_equal(out[:, O_DEMAND], demand)
    np.testing.assert_array_equal(out[:, O_FILLED], np.minimum(demand, 3.0))  # 3 units on hand
    np.testing.assert_array_equal(out[:, O_SHORT], np.maximum(demand - 3.0, 0.0))
    np.testing.assert_allclose(res.costs[:, C_HOLD], (sim.on_hand * sim.topology.holding).sum(axis=1))
    info = step_info(res, 1)
    assert info["filled"][0] == out[1, O_FILLED] and info["short"][0] == out[1, O_SHORT]
    assert info["cost_split"]["holding"] == res.costs[1, C_HOLD]


# --- fill rate ----------------------------------------------------------------------------------


def test_fill_rate_is_the_ratio_of_totals():
    # two periods x two demand nodes; node 1 has no demand in period 0
    filled = np.array([[3.0, 0.0], [2.0, 5.0]])
    demand = np.array([[4.0, 0.0], [2.0, 10.0]])
    np.testing.assert_allclose(fill_rate(filled, demand, axis=0), [5 / 6, 5 / 10])
    assert fill_rate(filled, demand) == pytest.approx(10 / 16)
    # not the mean of per-period ratios (3/4 and 1 for node 0 would give 7/8)
    assert fill_rate(filled[:, 0], demand[:, 0]) != pytest.approx(7 / 8)
    assert fill_rate(np.zeros(3), np.zeros(3)) == 0.0  # no demand, nothing filled


def test_evaluation_and_candidate_search_report_the_same_fill_rate():
    """evaluate and simulate_candidates (the search, the frontier plot) share one rule: the same
    levels on the same seeds give the same fill rates."""
    sc = _scenario({"a": (1.0, 9.0, None), "b": (1.0, 4.0, None)})
    topo = compile_topology(sc)
    levels = np.array([[20.0, 8.0, 6.0]])
    res = simulate_candidates(sc, levels, "installation", periods=60, warmup=5, replications=3, seed=11)
    ev = evaluate(sc, BaseStockPolicy(topo, levels[0]), periods=60, warmup=5, replications=3, seed=11)
    names = [topo.node_names[j] for j in topo.demand_nodes]
    np.testing.assert_allclose(res.fill_rate[0], [ev.fill_rate[n] for n in names], rtol=1e-12)
    assert 0.0 < ev.fill_rate["network"] < 1.0


# --- planned service level ----------------------------------------------------------------------


def test_critical_ratio():
    assert critical_ratio(9.0, 1.0) == 0.9
    assert critical_ratio(0.0, 0.0) == 0.5


def test_service_levels_targets_ratios_and_the_largest_served():
    sc = _scenario({"a": (1.0, 9.0, None), "b": (1.0, 19.0, None), "c": (1.0, 1.0, 0.99)})
    topo = compile_topology(sc)
    alpha = dict(zip(topo.node_names, service_levels(sc, topo)))
    # wh: the largest critical ratio of the demand nodes it serves (c's is 0.5; its target is its own)
    assert alpha == {"wh": 0.95, "a": 0.9, "b": 0.95, "c": 0.99}
    alpha = dict(zip(topo.node_names, service_levels(sc, topo, default_service=0.8)))
    assert alpha["wh"] == 0.8 and alpha["a"] == 0.9


def test_service_levels_are_capped_below_one_and_the_local_rule_uses_them():
    sc = _scenario({"a": (1.0, 9.0, 1.0)})
    topo = compile_topology(sc)
    alpha = service_levels(sc, topo)
    assert alpha.max() == MAX_SERVICE_LEVEL
    # The local rule's level at "a": mean + z sd over lead time + review (2 periods of Poisson 5).
    level = local_levels(sc).levels["a"]
    expected = 10.0 + stats.norm.ppf(MAX_SERVICE_LEVEL) * math.sqrt(10.0)
    assert level == pytest.approx(expected, rel=1e-12)


# --- a run's reference ----------------------------------------------------------------------------


def _ev(cost: float, unstable: bool = False) -> SimpleNamespace:
    return SimpleNamespace(cost_mean=cost, unstable=unstable)


def test_reference_is_clark_scarf_else_the_cheapest_stable_candidate():
    assert choose_reference({"clark_scarf": _ev(10.0), "optimised_installation": _ev(9.0)}) == "clark_scarf"
    evs = {
        "local": _ev(12.0),
        "optimised_installation": _ev(11.0),
        "dual_index": _ev(10.5),
        "optimised_echelon": _ev(3.0, unstable=True),
        "gsm": _ev(1.0),
        "ppo:run": _ev(2.0),
    }
    assert choose_reference(evs) == "dual_index"  # never unstable, never outside the candidates
    assert choose_reference({"gsm": _ev(1.0)}) is None
    assert choose_reference({"optimised_s_S": _ev(1.0, unstable=True)}) is None
    assert {"dual_index", "tailored_base_surge", "fixed_split", "optimised_installation"} <= set(REFERENCE_CANDIDATES)


# --- longest lead time into a node --------------------------------------------------------------


def test_lead_in_is_the_longest_mean_lead_time_over_lanes_and_modes():
    sc = Scenario.from_dict(
        {
            "name": "lead_in",
            "nodes": [
                {"id": "dc", "holding_cost": 1.0},
                {"id": "shop", "holding_cost": 2.0, "backorder_cost": 9.0, "demand": {"dist": "poisson", "mean": 3}},
            ],
            "lanes": [
                {
                    "from": "external",
                    "to": "dc",
                    "lead_time": {"dist": "discrete", "values": [1, 4], "probs": [0.5, 0.5]},
                },
                {
                    "from": "dc",
                    "to": "shop",
                    "modes": [{"name": "slow", "lead_time": 3}, {"name": "fast", "lead_time": 1, "unit_cost": 1.0}],
                },
            ],
        }
    )
    topo = compile_topology(sc)
    lead = dict(zip(topo.node_names, topo.lead_in()))
    assert lead == {"dc": 2.5, "shop": 3.0}
