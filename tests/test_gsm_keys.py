"""Details found against stockpyl's test suite: the analytic baselines' demand convention,
the guaranteed-service keys of scenario files, negative base-stock levels.

* Every analytic baseline reads a normal demand as the untruncated ``N(mean, sd)`` (as Snyder & Shen
  and stockpyl do); on one stage each of them is the newsvendor whose level has a closed form.
* ``max_service_time`` (node) and ``service_time`` (lane from ``external``) make the published GSM
  examples of Snyder & Shen (2019), section 6.3, reachable from scenario files: the cost and
  service times are the book's (and stockpyl's test suite's).
* Base-stock levels may be negative; the rule then orders as it says.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from scipy import stats

sys.path.insert(0, str(Path(__file__).resolve().parent))

from test_gsm import _CAMERA_ORDER, CAMERA_EDGES, CAMERA_H, CAMERA_OPTIMA, CAMERA_T  # noqa: E402

from meio.baselines.analytic import analysis_moments, clark_scarf_baseline, gsm_baseline, shang_song_baseline  # noqa: E402
from meio.baselines.search import local_levels  # noqa: E402
from meio.cli import main  # noqa: E402
from meio.envs.distributions import DemandSpec  # noqa: E402
from meio.envs.policies import BaseStockPolicy  # noqa: E402
from meio.envs.scenario import Scenario, ScenarioError, load_scenario  # noqa: E402
from meio.envs.simulator import Simulator  # noqa: E402

Z1 = float(stats.norm.cdf(1.0))  # the service level whose safety factor is z = 1


# =================================================================================================
# One convention for normal demand: untruncated in every analytic baseline
# =================================================================================================
def one_stage(mean: float, sd: float, lead: int, h: float, p: float, pipeline: float = 0.0) -> Scenario:
    return Scenario.from_dict(
        {
            "name": "one_stage",
            "nodes": [
                {
                    "id": "shop",
                    "holding_cost": h,
                    "backorder_cost": p,
                    "demand": {"dist": "normal", "mean": mean, "sd": sd},
                }
            ],
            "lanes": [{"from": "external", "to": "shop", "lead_time": lead, "pipeline_holding_cost": pipeline}],
        }
    )


def test_analysis_moments_are_the_untruncated_normals_and_others_own():
    wide = DemandSpec("normal", mean=5.0, sd=5.0)
    assert analysis_moments(wide) == (5.0, 5.0)
    # the simulator's censored max(X, 0) has other moments (closed form of the censored normal)
    z = 1.0
    censored_mean = 5.0 * stats.norm.cdf(z) + 5.0 * stats.norm.pdf(z)
    assert wide.base_mean() == pytest.approx(censored_mean, rel=1e-12)
    assert abs(wide.base_mean() - 5.0) > 0.4
    assert analysis_moments(DemandSpec("poisson", mean=4.0)) == (4.0, 2.0)


def test_every_analytic_baseline_reads_a_wide_normal_untruncated():
    """Mean 5, sd 5 (P(X < 0) = 0.16): on one stage with lead time 1, Clark-Scarf, Shang-Song, the
    GSM and the local heuristic are all the newsvendor on the L + 1 = 2 periods of demand the
    stage covers, N(10, 5 sqrt 2) at the critical ratio p / (p + h); with the censored moments
    the level would be 2% lower."""
    h, p, lead = 1.0, 9.0, 1
    sc = one_stage(5.0, 5.0, lead, h, p, pipeline=0.5)
    z = stats.norm.ppf(p / (p + h))
    level = 5.0 * (lead + 1) + z * 5.0 * math.sqrt(lead + 1)
    censored = DemandSpec("normal", mean=5.0, sd=5.0)
    wrong = censored.base_mean() * (lead + 1) + z * censored.base_sd() * math.sqrt(lead + 1)
    assert abs(wrong - level) > 0.01 * level  # the two conventions are told apart below

    cs, ss = clark_scarf_baseline(sc), shang_song_baseline(sc)
    gsm, local = gsm_baseline(sc), local_levels(sc)
    for b in (cs, ss):
        assert b.levels["shop"] == pytest.approx(level, rel=2e-4)
        # in-transit holding, which no policy changes, at the untruncated mean: 0.5 * 5 * L
        assert b.expected_split["policy_independent"] == pytest.approx(0.5 * 5.0 * lead, rel=1e-12)
    # the newsvendor's exact cost: (h + p) * sigma * phi(z) for the untruncated normal (Snyder &
    # Shen 2019, section 4.3), plus the in-transit holding
    newsvendor = (h + p) * 5.0 * math.sqrt(lead + 1) * stats.norm.pdf(z)
    assert cs.expected_cost == pytest.approx(newsvendor + 0.5 * 5.0 * lead, rel=1e-4)
    assert gsm.levels["shop"] == pytest.approx(level, rel=1e-12)
    assert gsm.extra["safety_stock_cost"] == pytest.approx(h * z * 5.0 * math.sqrt(lead + 1), rel=1e-12)
    assert local.levels["shop"] == pytest.approx(level, rel=1e-12)


def test_gsm_pools_the_untruncated_variances_of_two_retailers():
    """A warehouse serving two retailers with normal demand sd 4 and 3 (means 2 and 1), z = 1:
    whatever net lead time tau > 0 the optimum gives it, the warehouse's safety stock is
    z * sqrt(4^2 + 3^2) * sqrt(tau) = 5 sqrt(tau) (independent demands pool their variances);
    the censored sds would not add up to 5."""
    sc = Scenario.from_dict(
        {
            "name": "pool",
            "nodes": [
                {"id": "wh", "holding_cost": 1.0, "service_target": Z1},
                {
                    "id": "a",
                    "holding_cost": 5.0,
                    "backorder_cost": 9.0,
                    "service_target": Z1,
                    "demand": {"dist": "normal", "mean": 2.0, "sd": 4.0},
                },
                {
                    "id": "b",
                    "holding_cost": 5.0,
                    "backorder_cost": 9.0,
                    "service_target": Z1,
                    "demand": {"dist": "normal", "mean": 1.0, "sd": 3.0},
                },
            ],
            "lanes": [
                {"from": "external", "to": "wh", "lead_time": 2},
                {"from": "wh", "to": "a", "lead_time": 1},
                {"from": "wh", "to": "b", "lead_time": 1},
            ],
        }
    )
    g = gsm_baseline(sc)
    tau = g.extra["net_lead_times"]["wh"]
    assert tau > 0
    assert g.extra["safety_stock"]["wh"] == pytest.approx(5.0 * math.sqrt(tau), rel=1e-12)
    assert g.levels["wh"] == pytest.approx(3.0 * tau + 5.0 * math.sqrt(tau), rel=1e-12)
    assert g.extra["safety_stock"]["a"] == pytest.approx(4.0 * math.sqrt(g.extra["net_lead_times"]["a"]), rel=1e-12)


# =================================================================================================
# The guaranteed-service keys: published examples from scenario files
# =================================================================================================
def node(nid: str, h: float, alpha: float, **more: Any) -> dict[str, Any]:
    return {"id": nid, "holding_cost": h, "service_target": alpha, **more}


def customers(sd: float, **more: Any) -> dict[str, Any]:
    # The textbook's demand has mean 0: only untruncated moments give its sd to the model.
    return {"backorder_cost": 10.0, "demand": {"dist": "normal", "mean": 0.0, "sd": sd}, **more}


#: Snyder & Shen (2019), Example 6.5 as a scenario: T = (2, 1, 1, 1) are the lead times here
#: (minus the review period at the customer-facing nodes 2 and 4; node 1's lead time 3 includes its
#: supplier's service time 1), s_4 = 1, z = 1, h = (1, 3, 2, 3).
EX65_YAML = """
name: snyder_shen_6_5
nodes:
  - {id: "1", holding_cost: 1, service_target: %(a)r}
  - {id: "2", holding_cost: 3, service_target: %(a)r, backorder_cost: 10, demand: {dist: normal, mean: 0, sd: 1}}
  - {id: "3", holding_cost: 2, service_target: %(a)r}
  - {id: "4", holding_cost: 3, service_target: %(a)r, backorder_cost: 10, max_service_time: 1,
     demand: {dist: normal, mean: 0, sd: 1}}
lanes:
  - {from: external, to: "1", lead_time: 3, service_time: 1}
  - {from: "1", to: "3", lead_time: 1}
  - {from: "3", to: "2", lead_time: 0}
  - {from: "3", to: "4", lead_time: 0}
""" % {"a": Z1}  # noqa: UP031 (braces of the YAML flow mappings)


def test_example_6_5_from_a_scenario_file_gives_the_published_optimum(tmp_path):
    path = tmp_path / "ex65.yaml"
    path.write_text(EX65_YAML)
    sc = load_scenario(path)
    assert sc.node("4").max_service_time == 1 and sc.node("2").max_service_time is None
    assert sc.lanes[0].service_time == 1
    g = gsm_baseline(sc)
    assert g.extra["service_times"] == {"1": 0, "2": 0, "3": 0, "4": 1}
    assert g.extra["net_lead_times"] == {"1": 3, "2": 1, "3": 1, "4": 0}
    # published: sqrt(6) + 3 + 2 sqrt(2) = 8.2779 (stockpyl's documentation: 8.277916867529369)
    assert g.extra["safety_stock_cost"] == pytest.approx(8.277916867529369, rel=1e-12)
    # without the keys the same network is a different instance (node 4 must serve at once)
    plain = yaml.safe_load(EX65_YAML)
    del plain["nodes"][3]["max_service_time"]
    del plain["lanes"][0]["service_time"]
    plain["lanes"][0]["lead_time"] = 2
    assert gsm_baseline(Scenario.from_dict(plain)).extra["service_times"]["4"] == 0


def test_example_6_3_serial_from_a_scenario_gives_the_published_optimum():
    """Snyder & Shen (2019), Example 6.3: 3 -> 2 -> 1, h = (7, 4, 2), T = (1, 0, 1), s_1 = 1,
    si_3 = 1, z = 1; optimum S = (1, 0, 0), cost 2 sqrt(2)."""
    sc = Scenario.from_dict(
        {
            "name": "snyder_shen_6_3",
            "nodes": [node("3", 2.0, Z1), node("2", 4.0, Z1), node("1", 7.0, Z1, max_service_time=1, **customers(1.0))],
            "lanes": [
                {"from": "external", "to": "3", "lead_time": 2, "service_time": 1},
                {"from": "3", "to": "2", "lead_time": 0},
                {"from": "2", "to": "1", "lead_time": 0},
            ],
        }
    )
    g = gsm_baseline(sc)
    assert g.extra["service_times"] == {"3": 0, "2": 0, "1": 1}
    assert g.extra["safety_stock_cost"] == pytest.approx(2 * math.sqrt(2), rel=1e-12)


def camera(s: int) -> dict[str, Any]:
    """Snyder & Shen's Figure 6.14 (the camera network) with customer service time ``s``."""
    targets = {v for _, v in CAMERA_EDGES}
    nodes = [
        node(x, CAMERA_H[x], 0.95, **(customers(10.0, max_service_time=s) if x == "Build_Test_Pack" else {}))
        for x in _CAMERA_ORDER
    ]
    # a lead time is T, less the review period at the customer-facing node
    lanes = [{"from": u, "to": v, "lead_time": CAMERA_T[v] - (v == "Build_Test_Pack")} for u, v in CAMERA_EDGES]
    lanes = [{"from": "external", "to": x, "lead_time": CAMERA_T[x]} for x in _CAMERA_ORDER if x not in targets] + lanes
    return {"name": f"camera_s{s}", "nodes": nodes, "lanes": lanes}


@pytest.mark.parametrize("s", sorted(CAMERA_OPTIMA))
def test_camera_network_from_a_scenario_gives_stockpyls_optima(s):
    cost, times = CAMERA_OPTIMA[s]
    g = gsm_baseline(Scenario.from_dict(camera(s)))
    assert g.extra["safety_stock_cost"] == pytest.approx(cost, rel=1e-12)
    assert tuple(g.extra["service_times"][x] for x in _CAMERA_ORDER) == times


def test_meio_baselines_prices_the_camera_networks_published_optimum(tmp_path, capsys):
    """Through the command line: with mean-0 demand the GSM's levels are its safety stocks, so
    sum_j h_j * level_j is the published optimum (s = 8: 3.2579)."""
    path = tmp_path / "camera.yaml"
    path.write_text(yaml.safe_dump(camera(8)))
    code = main(
        [
            "baselines",
            "--scenario",
            str(path),
            "--only",
            "gsm",
            "--json",
            "--periods",
            "50",
            "--warmup",
            "5",
            "--replications",
            "2",
        ]
    )
    out, err = capsys.readouterr()
    assert code == 0, err
    levels = json.loads(out)["gsm"]["levels"]
    assert math.fsum(CAMERA_H[x] * levels[x] for x in CAMERA_T) == pytest.approx(CAMERA_OPTIMA[8][0], rel=1e-12)


def test_service_keys_round_trip_through_to_dict():
    sc = Scenario.from_dict(yaml.safe_load(EX65_YAML))
    data = sc.to_dict()
    assert data["nodes"][3]["max_service_time"] == 1 and "max_service_time" not in data["nodes"][1]
    assert data["lanes"][0]["service_time"] == 1 and "service_time" not in data["lanes"][1]
    assert Scenario.from_dict(data) == sc


@pytest.mark.parametrize(
    "edit, message",
    [
        (
            lambda d: d["nodes"][3].update(max_service_time=-1),
            "nodes[3].max_service_time: -1 is negative; service times are integers (periods) >= 0",
        ),
        (lambda d: d["nodes"][3].update(max_service_time=1.5), "nodes[3].max_service_time: 1.5 is not an integer"),
        (
            lambda d: d["nodes"][3].update(max_service_tme=1),
            "nodes[3].max_service_tme: unknown key (did you mean 'max_service_time'?)",
        ),
        (
            lambda d: d["lanes"][0].update(service_time=-2),
            "lanes[0].service_time: -2 is negative; service times are integers (periods) >= 0",
        ),
        (
            lambda d: d["lanes"][0].update(service_time=4),
            "lanes[0].service_time: 4 exceeds the lane's shortest lead time 3",
        ),
        (
            lambda d: d["lanes"][1].update(service_time=1),
            "lanes[1].service_time: only the external supplier quotes a service time",
        ),
        (
            lambda d: d["lanes"][0].update(service_tim=1),
            "lanes[0].service_tim: unknown key (did you mean 'service_time'?)",
        ),
    ],
)
def test_bad_service_keys_name_the_field_and_the_rule(edit, message):
    data = yaml.safe_load(EX65_YAML)
    edit(data)
    with pytest.raises(ScenarioError) as info:
        Scenario.from_dict(data)
    assert message in str(info.value)


# =================================================================================================
# Negative base-stock levels
# =================================================================================================
TWO_STAGE = {
    "name": "two_stage",
    "nodes": [
        {"id": "dc", "holding_cost": 1.0, "initial_inventory": 1000.0},
        {"id": "shop", "holding_cost": 2.0, "backorder_cost": 10.0, "demand": {"dist": "poisson", "mean": 4}},
    ],
    "lanes": [{"from": "external", "to": "dc", "lead_time": 1}, {"from": "dc", "to": "shop", "lead_time": 0}],
}


@pytest.mark.parametrize(
    "kind, levels",
    [
        ("echelon", {"shop": -3.0, "dc": 2000.0}),
        ("installation", {"shop": -3.0, "dc": 2003.0}),
    ],
)
def test_a_negative_level_orders_as_the_rule_says(kind, levels):
    """The shop's supplier never runs short and ships at once, so the shop's position is its net
    inventory x and the rule orders max(0, -3 - x): x_t = max(x_{t-1}, -3) - D_t, and once x has
    fallen below -3 the shop ends every period with exactly 3 + D_t units backordered."""
    sim = Simulator(Scenario.from_dict(TWO_STAGE), n=4)
    sim.reset(seeds=[11, 12, 13, 14])
    policy = BaseStockPolicy(sim.topology, levels, kind=kind)
    shop = sim.topology.node_index("shop")
    slot = int(np.flatnonzero(sim.topology.slot_dst == shop)[0])
    x = np.zeros(4)
    ordered = 0
    for _ in range(80):
        orders = policy.act(sim)
        expected = np.maximum(-3.0 - x, 0.0)
        np.testing.assert_array_equal(orders[:, slot], expected)
        ordered += int((expected > 0).sum())
        demand = sim.step(orders).node_out[:, 0, 0].copy()
        x = np.maximum(x, -3.0) - demand
        np.testing.assert_array_equal(sim.on_hand[:, shop] - sim.cust_bo[:, shop], x)
    assert ordered > 200  # the rule did order, most periods
    np.testing.assert_array_equal(sim.on_hand[:, shop], 0.0)


def test_meio_simulate_accepts_a_negative_echelon_level(tmp_path, capsys):
    """``meio simulate --kind echelon`` with the shop's level at -3: every period ends with 3 + D
    units backordered (after the first), so the backorder cost is about p * (3 + E[D]) = 70."""
    path = tmp_path / "two_stage.yaml"
    path.write_text(json.dumps(TWO_STAGE))
    code = main(
        [
            "simulate",
            "--scenario",
            str(path),
            "--policy",
            "base-stock",
            "--kind",
            "echelon",
            "--levels",
            "shop=-3,dc=2000",
            "--periods",
            "400",
            "--warmup",
            "10",
            "--replications",
            "4",
            "--json",
        ]
    )
    out, err = capsys.readouterr()
    assert code == 0, err
    payload = json.loads(out)
    assert payload["policy"]["levels"]["shop"] == -3.0
    assert payload["cost_split"]["backorder"] == pytest.approx(70.0, rel=0.05)
