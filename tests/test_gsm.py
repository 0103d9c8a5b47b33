"""Tests of meio.baselines.gsm: the guaranteed-service model on spanning trees (Graves & Willems 2000).

Golden values from Snyder & Shen, *Fundamentals of Supply Chain Theory*, 2nd ed. (2019), section 6.3;
exactness against an independent brute-force enumeration of every feasible service-time vector on
small random trees; Simpson's all-or-nothing property on serial chains; feasibility; input errors.
"""

from __future__ import annotations

import dataclasses
import math
import re
from typing import Any

import numpy as np
import pytest
from scipy import stats

from meio.baselines.gsm import GSMSolution, _build, _dp, evaluate_gsm, optimize_gsm

Z1 = float(stats.norm.cdf(1.0))  # the service level whose safety factor is z = 1


def pat(*parts: str) -> str:
    """Regex: the message starts with ``parts[0]`` and contains the other literal parts in order."""
    return "^" + ".*".join(re.escape(p) for p in parts)


# =================================================================================================
# Published examples
# =================================================================================================
# Snyder & Shen (2019), Example 6.5: a tree 1 -> 3, 3 -> 2, 3 -> 4; T = (2, 1, 1, 1), h = (1, 3, 2, 3),
# z = 1, customer demand with sd 1 (mean 0) at nodes 2 and 4; node 1's supplier quotes si = 1;
# s_2 = 0, s_4 = 1. Published optimum: S = (0, 0, 0, 1) for nodes (1, 2, 3, 4), cost
# sqrt(6) + 3 + 2 sqrt(2) + 0 = 8.2779 (the book's example, reproduced digit for digit as
# 8.277916867529369 in the documentation of stockpyl, the book's companion package by Snyder:
# docs/tutorial/tutorial_meio.rst).
EX65 = dict(
    nodes=["1", "2", "3", "4"],
    edges=[("1", "3"), ("3", "2"), ("3", "4")],
    processing_times={"1": 2, "2": 1, "3": 1, "4": 1},
    holding_costs={"1": 1.0, "2": 3.0, "3": 2.0, "4": 3.0},
    demand_mean={"2": 0.0, "4": 0.0},
    demand_sd={"2": 1.0, "4": 1.0},
    service_level=Z1,
    max_service_time={"4": 1},
    external_service_time={"1": 1},
)

# Snyder & Shen (2019), Example 6.3 (serial, Inderfurth's DP): 3 -> 2 -> 1, local holding costs
# (7, 4, 2) for stages (1, 2, 3), T = (1, 0, 1), z = 1, sd 1 at stage 1, s_1 = 1, si_3 = 1.
# Published optimum: S = (1, 0, 0) for stages (1, 2, 3), cost 2 sqrt(2) = 2.8284 (stockpyl's
# documentation, as above: ({3: 0, 2: 0, 1: 1}, 2.8284271247461903)).
EX63 = dict(
    nodes=["1", "2", "3"],
    edges=[("3", "2"), ("2", "1")],
    processing_times={"1": 1, "2": 0, "3": 1},
    holding_costs={"1": 7.0, "2": 4.0, "3": 2.0},
    demand_mean={"1": 0.0},
    demand_sd={"1": 1.0},
    service_level=Z1,
    max_service_time={"1": 1},
    external_service_time={"3": 1},
)

# Snyder & Shen (2019), Figure 6.14: the digital-camera assembly network (after Graves & Willems),
# customer demand with sd 10 at Build_Test_Pack, 95% service everywhere. The optimal service
# times and costs for several customer service times s are those of stockpyl's test suite
# (LarrySnyder/stockpyl, tests/test_gsm_tree.py, TestOptimizeCommittedServiceTimes).
CAMERA_T = {
    "Raw_Material": 2,
    "Process_Wafers": 3,
    "Package_Test_Wafers": 2,
    "Imager_Base": 4,
    "Imager_Assembly": 2,
    "Ship_to_Final_Assembly": 3,
    "Camera": 6,
    "Circuit_Board": 4,
    "Other_Parts": 3,
    "Build_Test_Pack": 2,
}
CAMERA_H = {
    "Raw_Material": 0.01,
    "Process_Wafers": 0.03,
    "Package_Test_Wafers": 0.04,
    "Imager_Base": 0.06,
    "Imager_Assembly": 0.12,
    "Ship_to_Final_Assembly": 0.13,
    "Camera": 0.20,
    "Circuit_Board": 0.08,
    "Other_Parts": 0.04,
    "Build_Test_Pack": 0.50,
}
CAMERA_EDGES = [
    ("Raw_Material", "Process_Wafers"),
    ("Process_Wafers", "Package_Test_Wafers"),
    ("Package_Test_Wafers", "Imager_Assembly"),
    ("Imager_Base", "Imager_Assembly"),
    ("Imager_Assembly", "Ship_to_Final_Assembly"),
    ("Camera", "Build_Test_Pack"),
    ("Ship_to_Final_Assembly", "Build_Test_Pack"),
    ("Circuit_Board", "Build_Test_Pack"),
    ("Other_Parts", "Build_Test_Pack"),
]
_CAMERA_ORDER = [
    "Raw_Material",
    "Process_Wafers",
    "Package_Test_Wafers",
    "Imager_Base",
    "Imager_Assembly",
    "Ship_to_Final_Assembly",
    "Camera",
    "Circuit_Board",
    "Other_Parts",
    "Build_Test_Pack",
]
CAMERA_OPTIMA = {  # s -> (cost, service times in _CAMERA_ORDER)
    2: (18.8240044725922, (0, 3, 5, 4, 7, 0, 0, 0, 0, 2)),
    5: (12.4686888061037, (0, 3, 5, 4, 0, 3, 3, 3, 3, 5)),
    8: (3.25788236403285, (0, 3, 1, 1, 3, 6, 6, 4, 3, 8)),
    12: (0.232617430735335, (0, 3, 5, 4, 7, 10, 6, 4, 3, 12)),
}


def test_example_6_5_tree():
    sol = optimize_gsm(**EX65)
    assert isinstance(sol, GSMSolution) and sol.method == "gsm_dp"
    assert sol.service_times == {"1": 0, "2": 0, "3": 0, "4": 1}
    assert sol.inbound_service_times == {"1": 1, "2": 0, "3": 0, "4": 0}
    assert sol.net_lead_times == {"1": 3, "2": 1, "3": 1, "4": 0}
    assert sol.expected_cost == pytest.approx(8.277916867529369, rel=1e-12)
    assert sol.expected_cost == pytest.approx(math.sqrt(6) + 3 + 2 * math.sqrt(2), rel=1e-12)
    # Node 1 and node 3 see the pooled demand of 2 and 4: sigma = sqrt(1 + 1).
    assert sol.safety_stock["1"] == pytest.approx(math.sqrt(2) * math.sqrt(3), rel=1e-12)
    assert sol.safety_stock["3"] == pytest.approx(math.sqrt(2), rel=1e-12)
    assert sol.safety_stock["4"] == 0.0


def test_example_6_3_serial():
    sol = optimize_gsm(**EX63)
    assert sol.service_times == {"1": 1, "2": 0, "3": 0}
    assert sol.net_lead_times == {"1": 0, "2": 0, "3": 2}
    assert sol.expected_cost == pytest.approx(2 * math.sqrt(2), rel=1e-12)


@pytest.mark.parametrize("s", sorted(CAMERA_OPTIMA))
def test_camera_network_figure_6_14(s):
    cost, times = CAMERA_OPTIMA[s]
    sol = optimize_gsm(
        list(CAMERA_T),
        CAMERA_EDGES,
        CAMERA_T,
        CAMERA_H,
        {"Build_Test_Pack": 0.0},
        {"Build_Test_Pack": 10.0},
        0.95,
        max_service_time={"Build_Test_Pack": s},
    )
    assert sol.expected_cost == pytest.approx(cost, rel=1e-12)
    assert tuple(sol.service_times[x] for x in _CAMERA_ORDER) == times


# =================================================================================================
# Random instances and an independent brute force
# =================================================================================================
def random_tree(rng: np.random.Generator, n: int, shape: str) -> tuple[list[str], list[tuple[str, str]]]:
    names = [f"v{i}" for i in range(n)]
    edges = []
    for i in range(1, n):
        j = i - 1 if shape == "serial" else int(rng.integers(0, i))
        down = {"serial": True, "distribution": True, "assembly": False}.get(shape, rng.random() < 0.5)
        edges.append((names[j], names[i]) if down else (names[i], names[j]))
    order = rng.permutation(n)
    return [names[i] for i in order], [edges[i] for i in rng.permutation(len(edges))]


def random_instance(
    rng: np.random.Generator, n: int, shape: str, t_max: int = 2, extras: bool = True
) -> dict[str, Any]:
    nodes, edges = random_tree(rng, n, shape)
    has_succ = {u for u, _ in edges}
    has_pred = {v for _, v in edges}
    demand = [x for x in nodes if x not in has_succ]
    if extras:
        demand += [x for x in nodes if x in has_succ and rng.random() < 0.2]  # internal demand
    inst: dict[str, Any] = dict(
        nodes=nodes,
        edges=edges,
        processing_times={x: int(rng.integers(0, t_max + 1)) for x in nodes},
        holding_costs={
            x: float(rng.choice([0.0, rng.uniform(0.1, 3.0)], p=[0.1, 0.9])) if extras else float(rng.uniform(0.1, 3.0))
            for x in nodes
        },
        demand_mean={x: float(rng.uniform(0.0, 10.0)) for x in demand},
        demand_sd={x: float(rng.uniform(0.1, 3.0)) for x in demand},
        service_level={x: float(rng.uniform(0.5, 0.99)) for x in nodes},
    )
    if extras:
        inst["external_service_time"] = {
            x: int(rng.integers(0, 2)) for x in nodes if x not in has_pred and rng.random() < 0.5
        }
        inst["max_service_time"] = {
            x: int(rng.integers(0, 5)) for x in nodes if rng.random() < (0.6 if x in demand else 0.2)
        }
    return inst


def reference(inst: dict[str, Any]) -> dict[str, Any]:
    """Independent model data: predecessors, topological order, pooled demand, z, bounds."""
    nodes, edges = inst["nodes"], inst["edges"]
    preds = {x: [u for u, v in edges if v == x] for x in nodes}
    succs = {x: [v for u, v in edges if u == x] for x in nodes}

    def below(x: str) -> list[str]:
        return [x] + [y for s in succs[x] for y in below(s)]

    dm, ds = inst["demand_mean"], inst["demand_sd"]
    mu = {x: sum(dm.get(y, 0.0) for y in below(x)) for x in nodes}
    sigma = {x: math.sqrt(sum(ds.get(y, 0.0) ** 2 for y in below(x))) for x in nodes}
    sl = inst["service_level"]
    z = {x: float(stats.norm.ppf(sl[x] if isinstance(sl, dict) else sl)) for x in nodes}
    ext = inst.get("external_service_time") or {}
    limit = {x: (inst.get("max_service_time") or {}).get(x, 0 if x in dm else None) for x in nodes}
    topo: list[str] = []
    while len(topo) < len(nodes):
        topo += [x for x in nodes if x not in topo and all(p in topo for p in preds[x])]
    return dict(preds=preds, mu=mu, sigma=sigma, z=z, ext=ext, limit=limit, topo=topo)


def brute_force(inst: dict[str, Any]) -> tuple[float, int]:
    """Minimum GSM cost over every feasible integer service-time vector, and how many there are.

    Enumerates, in topological order, S_j = 0, ..., min(s_j, SI_j + T_j) with SI_j the maximum of the
    predecessors' S (the external service time at a node without predecessor).
    """
    ref = reference(inst)
    topo, preds = ref["topo"], ref["preds"]
    col = {x: i for i, x in enumerate(topo)}
    rows = np.zeros((1, 0), dtype=np.int64)
    for x in topo:
        si = rows[:, [col[p] for p in preds[x]]].max(axis=1) if preds[x] else np.full(len(rows), ref["ext"].get(x, 0))
        ub = si + inst["processing_times"][x]
        if ref["limit"][x] is not None:
            ub = np.minimum(ub, ref["limit"][x])
        reps = ub + 1
        rows = np.repeat(rows, reps, axis=0)
        start = np.repeat(np.cumsum(reps) - reps, reps)
        rows = np.column_stack([rows, np.arange(len(rows)) - start])
    cost = np.zeros(len(rows))
    for x in topo:
        si = rows[:, [col[p] for p in preds[x]]].max(axis=1) if preds[x] else np.full(len(rows), ref["ext"].get(x, 0))
        tau = si + inst["processing_times"][x] - rows[:, col[x]]
        assert (tau >= 0).all()
        cost += inst["holding_costs"][x] * ref["z"][x] * ref["sigma"][x] * np.sqrt(tau)
    return float(cost.min()), len(rows)


def assert_feasible_and_consistent(inst: dict[str, Any], sol: GSMSolution) -> None:
    """The solution obeys the model and its numbers follow from its service times."""
    ref = reference(inst)
    total = 0.0
    for x in inst["nodes"]:
        p = ref["preds"][x]
        si = max(sol.service_times[u] for u in p) if p else ref["ext"].get(x, 0)
        assert sol.inbound_service_times[x] == si
        tau = si + inst["processing_times"][x] - sol.service_times[x]
        assert sol.net_lead_times[x] == tau >= 0
        assert sol.service_times[x] >= 0
        if ref["limit"][x] is not None:
            assert sol.service_times[x] <= ref["limit"][x]
        ss = ref["z"][x] * ref["sigma"][x] * math.sqrt(tau)
        assert sol.safety_stock[x] == pytest.approx(ss, rel=1e-12, abs=1e-12)
        assert sol.base_stock_levels[x] == pytest.approx(ref["mu"][x] * tau + ss, rel=1e-12, abs=1e-12)
        total += inst["holding_costs"][x] * ss
    assert sol.expected_cost == pytest.approx(total, rel=1e-12, abs=1e-12)


SHAPES = ["serial", "distribution", "assembly", "mixed"]


@pytest.mark.parametrize("shape", SHAPES)
def test_dp_matches_brute_force_on_small_trees(shape):
    rng = np.random.default_rng(["serial", "distribution", "assembly", "mixed"].index(shape))
    enumerated = 0
    for _ in range(250):
        inst = random_instance(rng, int(rng.integers(1, 7)), shape, t_max=3)
        best, count = brute_force(inst)
        enumerated += count
        sol = optimize_gsm(**inst)
        assert sol.expected_cost == pytest.approx(best, rel=1e-12, abs=1e-12)
        assert_feasible_and_consistent(inst, sol)
        # The recursion's own optimum (the relaxation SI_j >= max S_i) is the same number, and
        # evaluating the returned service times reproduces the solution.
        relaxed, _ = _dp(
            _build(
                **{
                    k: inst.get(k)
                    for k in (
                        "nodes",
                        "edges",
                        "processing_times",
                        "holding_costs",
                        "demand_mean",
                        "demand_sd",
                        "service_level",
                        "max_service_time",
                        "external_service_time",
                    )
                }
            )
        )
        assert relaxed == pytest.approx(best, rel=1e-12, abs=1e-12)
        again = evaluate_gsm(**inst, service_times=sol.service_times)
        assert again.method == "evaluation"
        assert dataclasses.replace(again, method="gsm_dp") == sol
    assert enumerated > 5_000  # the enumeration did real work


def test_serial_optimum_is_all_or_nothing():
    """Simpson (1958): in a serial chain with immediate customer service (s_1 = 0), every stage
    quotes either S_j = 0 or S_j = SI_j + T_j (it holds no safety stock)."""
    rng = np.random.default_rng(7)
    interior = 0
    for _ in range(80):
        inst = random_instance(rng, int(rng.integers(2, 9)), "serial", t_max=6, extras=False)
        top = next(x for x in inst["nodes"] if all(v != x for _, v in inst["edges"]))
        inst["external_service_time"] = {top: int(rng.integers(0, 4))}
        sol = optimize_gsm(**inst)
        assert_feasible_and_consistent(inst, sol)
        for x in inst["nodes"]:
            assert sol.service_times[x] in (0, sol.inbound_service_times[x] + inst["processing_times"][x])
            interior += 0 < sol.service_times[x]
        if len(inst["nodes"]) <= 5:
            assert sol.expected_cost == pytest.approx(brute_force(inst)[0], rel=1e-12)
    assert interior > 0  # some stages do quote S = SI + T > 0 (the property is not vacuous)


def test_demand_node_with_slack_quotes_its_bound():
    """With s_1 > 0 the customer-facing stage quotes min(s_1, SI_1 + T_1): a later promise only
    lowers its own stock and it has no one downstream to hurt."""
    rng = np.random.default_rng(11)
    for _ in range(40):
        inst = random_instance(rng, int(rng.integers(2, 7)), "serial", t_max=4, extras=False)
        sink = next(x for x in inst["nodes"] if all(u != x for u, _ in inst["edges"]))
        s1 = int(rng.integers(1, 6))
        inst["max_service_time"] = {sink: s1}
        sol = optimize_gsm(**inst)
        ready = sol.inbound_service_times[sink] + inst["processing_times"][sink]
        assert sol.service_times[sink] == min(s1, ready)


def test_feasible_and_locally_optimal_on_larger_trees():
    """30-node mixed trees (too big to enumerate): feasibility, consistency, and no single service
    time can be moved by one period to a feasible, cheaper solution."""
    rng = np.random.default_rng(3)
    for _ in range(5):
        inst = random_instance(rng, 30, "mixed", t_max=5)
        sol = optimize_gsm(**inst)
        assert_feasible_and_consistent(inst, sol)
        for x in inst["nodes"]:
            for step in (-1, 1):
                trial = dict(sol.service_times)
                trial[x] += step
                try:
                    other = evaluate_gsm(**inst, service_times=trial)
                except ValueError:
                    continue
                assert other.expected_cost >= sol.expected_cost - 1e-9


def test_risk_pooling_and_base_stock_levels():
    """A warehouse feeding two retailers sees the summed means and sqrt of the summed variances."""
    inst = dict(
        nodes=["w", "r1", "r2"],
        edges=[("w", "r1"), ("w", "r2")],
        processing_times={"w": 4, "r1": 1, "r2": 2},
        holding_costs={"w": 1.0, "r1": 2.0, "r2": 2.0},
        demand_mean={"r1": 10.0, "r2": 6.0},
        demand_sd={"r1": 3.0, "r2": 4.0},
        service_level=0.95,
    )
    z = float(stats.norm.ppf(0.95))
    sol = evaluate_gsm(**inst, service_times={"w": 1, "r1": 0, "r2": 0})
    assert sol.net_lead_times == {"w": 3, "r1": 2, "r2": 3}
    assert sol.safety_stock["w"] == pytest.approx(z * 5.0 * math.sqrt(3), rel=1e-12)
    assert sol.base_stock_levels["w"] == pytest.approx(16.0 * 3 + z * 5.0 * math.sqrt(3), rel=1e-12)
    assert sol.base_stock_levels["r2"] == pytest.approx(6.0 * 3 + z * 4.0 * math.sqrt(3), rel=1e-12)
    assert sol.expected_cost == pytest.approx(
        z * (5 * math.sqrt(3) + 2 * 3 * math.sqrt(2) + 2 * 4 * math.sqrt(3)), rel=1e-12
    )
    # Optimal: pooling makes stock at the warehouse (sigma 5 < 3 + 4) worth keeping.
    best = optimize_gsm(**inst)
    assert best.service_times == {"w": 0, "r1": 0, "r2": 0}
    assert best.expected_cost == pytest.approx(brute_force(inst)[0], rel=1e-12)


def test_single_node():
    sol = optimize_gsm(["a"], [], {"a": 3}, {"a": 2.0}, {"a": 5.0}, {"a": 2.0}, Z1, external_service_time={"a": 1})
    assert sol.service_times == {"a": 0} and sol.net_lead_times == {"a": 4}
    assert sol.expected_cost == pytest.approx(2.0 * 2.0 * 2.0, rel=1e-12)
    assert sol.base_stock_levels["a"] == pytest.approx(5.0 * 4 + 4.0, rel=1e-12)


def test_result_is_frozen():
    sol = optimize_gsm(**EX65)
    with pytest.raises(dataclasses.FrozenInstanceError):
        sol.expected_cost = 0.0  # type: ignore[misc]


# =================================================================================================
# Input errors
# =================================================================================================
def with_(**changes: Any) -> dict[str, Any]:
    d = {k: dict(v) if isinstance(v, dict) else list(v) if isinstance(v, list) else v for k, v in EX65.items()}
    d.update(changes)
    return d


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (
            with_(edges=[("1", "3"), ("3", "2"), ("3", "4"), ("4", "1")]),
            pat("edges[3]: ('4', '1') closes the cycle 4 - 3 - 1 - 4", "spanning tree"),
        ),
        (
            with_(edges=[("1", "3"), ("3", "2"), ("2", "3")]),
            pat("edges[2]: ('2', '3') reverses edges[1]", "cycle 2 - 3 - 2"),
        ),
        (with_(edges=[("1", "3"), ("3", "2"), ("1", "3")]), pat("edges[2]: ('1', '3') repeats edges[0]")),
        (with_(edges=[("1", "3"), ("3", "3")]), pat("edges[1]: ('3', '3') is a self-loop")),
        (
            with_(edges=[("1", "3"), ("2", "4")]),
            pat("edges: the network is disconnected", "2 parts", "{1, 3} and {2, 4}", "connected"),
        ),
        (with_(edges=[("1", "3"), ("3", "2"), ("3", "44")]), pat("edges[2]: '44' is not a node", "did you mean '4'?")),
        (with_(edges=[("1", "3", "2")]), pat("edges[0]: ('1', '3', '2') is not an (upstream, downstream) pair")),
        (with_(nodes=["1", "2", "3", "3"]), pat("nodes[3]: '3' repeats nodes[2]")),
        (with_(nodes=[]), pat("nodes: empty")),
        (
            with_(processing_times={"1": -1, "2": 1, "3": 1, "4": 1}),
            pat("processing_times[1]: -1 is negative; processing times are integers >= 0"),
        ),
        (with_(processing_times={"1": 1.5, "2": 1, "3": 1, "4": 1}), pat("processing_times[1]: 1.5 is not an integer")),
        (with_(processing_times={"1": 2, "2": 1, "3": 1}), pat("processing_times: no value for 4")),
        (
            with_(processing_times={"1": 2, "2": 1, "3": 1, "4": 1, "44": 1}),
            pat("processing_times[44]: not a node (did you mean '4'?)"),
        ),
        (with_(holding_costs={"1": 1.0, "2": -3.0, "3": 2.0, "4": 3.0}), pat("holding_costs[2]: -3.0 is negative")),
        (
            with_(holding_costs={"1": 1.0, "2": math.nan, "3": 2.0, "4": 3.0}),
            pat("holding_costs[2]: nan is not a finite real number"),
        ),
        (
            with_(demand_mean={"2": 0.0}, demand_sd={"2": 1.0}),
            pat("demand_mean[4]: missing; 4 has no successor, so it must face customer demand"),
        ),
        (with_(demand_sd={"2": 1.0}), pat("demand_sd[4]: missing; demand_mean gives 4 customer demand")),
        (with_(demand_sd={"2": 1.0, "4": -1.0}), pat("demand_sd[4]: -1.0 is negative")),
        (with_(demand_mean={"2": 0.0, "4": 0.0, "x": 1.0}), pat("demand_mean[x]: not a node")),
        (with_(service_level=1.0), pat("service_level: 1.0 is not in [0.5, 1)")),
        (with_(service_level=0.3), pat("service_level: 0.3 is not in [0.5, 1)")),
        (with_(service_level={"1": 0.9, "2": 0.9, "3": 0.9}), pat("service_level: no value for 4")),
        (
            with_(service_level={"1": 0.9, "2": 0.9, "3": 0.9, "4": 1.2}),
            pat("service_level[4]: 1.2 is not in [0.5, 1)"),
        ),
        (with_(max_service_time={"4": -2}), pat("max_service_time[4]: -2 is negative")),
        (with_(max_service_time={"7": 1}), pat("max_service_time[7]: not a node")),
        (
            with_(external_service_time={"3": 1}),
            pat("external_service_time[3]: 3 is supplied by 1 inside the network", "no predecessor"),
        ),
        (with_(external_service_time={"1": "2"}), pat("external_service_time[1]: '2' is not an integer")),
    ],
)
def test_input_errors_name_the_field(kwargs, message):
    with pytest.raises(ValueError, match=message):
        optimize_gsm(**kwargs)
    with pytest.raises(ValueError, match=message):
        evaluate_gsm(**kwargs, service_times={"1": 0, "2": 0, "3": 0, "4": 0})


@pytest.mark.parametrize(
    "times, message",
    [
        (
            {"1": 0, "2": 0, "3": 2, "4": 0},
            pat("service_times[3]: 2 exceeds SI + T = 1 (SI = S[1] = 0, T = 1); the net lead time would be -1"),
        ),
        (
            {"1": 4, "2": 0, "3": 0, "4": 0},
            pat("service_times[1]: 4 exceeds SI + T = 3 (SI = external service time 1, T = 2)"),
        ),
        (
            {"1": 0, "2": 1, "3": 1, "4": 0},
            pat("service_times[2]: 1 exceeds the maximum service time 0 of 2 (the default for a node facing"),
        ),
        ({"1": 1, "2": 0, "3": 2, "4": 2}, pat("service_times[4]: 2 exceeds the maximum service time 1 of 4")),
        ({"1": 0, "2": 0, "3": 0}, pat("service_times: no value for 4")),
        ({"1": 0, "2": 0, "3": 0, "4": -1}, pat("service_times[4]: -1 is negative")),
    ],
)
def test_evaluate_rejects_infeasible_service_times(times, message):
    with pytest.raises(ValueError, match=message):
        evaluate_gsm(**EX65, service_times=times)
