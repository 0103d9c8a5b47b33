"""Checking scenarios at the edge: every error at once, ``meio validate``, sizes, magnitudes, capacities.

A scenario file is checked completely before anything is built: every broken field is reported with
its path (not only the first), YAML keys given twice are errors, numbers so large that costs
overflow or arrays cannot be allocated are refused naming the field, and a capacity below the mean
demand it must carry (an unstable system under backorders) is refused naming the lanes. A property
test mutates the shipped scenarios at random: loading either raises :class:`ScenarioError` with
field paths or gives a scenario whose short simulation has finite costs, never another exception.
"""

from __future__ import annotations

import copy
import math
import re
import tracemalloc
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scenario_factory import small_serial as serial

from meio.baselines.run import BASELINE_NAMES
from meio.cli import main
from meio.envs.scenario import (
    MAX_ARRAY_BYTES,
    MAX_LEAD_TIME,
    MAX_QUANTITY,
    Scenario,
    ScenarioError,
    list_scenarios,
    load_scenario,
    scenarios_dir,
)
from meio.envs.simulator import Simulator


def distribution() -> dict:
    """external -> warehouse -> three retailers with mean demands 3, 4 and 5 (12 in all)."""
    means = {"north": 3, "central": 4, "south": 5}
    return {
        "name": "distribution",
        "nodes": [{"id": "warehouse", "holding_cost": 0.5}]
        + [
            {"id": r, "holding_cost": 1.0, "backorder_cost": 9.0, "demand": {"dist": "poisson", "mean": m}}
            for r, m in means.items()
        ],
        "lanes": [{"from": "external", "to": "warehouse", "lead_time": 2}]
        + [{"from": "warehouse", "to": r, "lead_time": 1} for r in means],
    }


def errors_of(data: dict) -> list[tuple[str, str]]:
    with pytest.raises(ScenarioError) as info:
        Scenario.from_dict(data)
    return info.value.errors


def write(tmp_path: Path, text: str, name: str = "s.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


# ------------------------------------------------------------------------------------------------
# Every error at once
# ------------------------------------------------------------------------------------------------
THREE_MISTAKES = """\
name: three
horizn: 10
nodes:
  - {id: retailer, holding_cost: -1, backorder_cost: 9, demand: {dist: poisson, mean: 4}}
  - {id: dc, holding_cost: 0.5}
lanes:
  - {from: dc, to: retailer, lead_time: 1.5}
  - {from: external, to: dc, lead_time: 1}
"""


def test_three_independent_mistakes_are_three_lines_and_exit_2(tmp_path, capsys):
    path = write(tmp_path, THREE_MISTAKES)
    assert main(["validate", str(path)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = [line.strip() for line in captured.err.splitlines() if line.startswith("  ")]
    assert len(lines) == 3, captured.err
    assert lines[0].startswith("horizn: unknown key (did you mean 'horizon'?)")
    assert lines[1] == "nodes[0].holding_cost: -1 is negative; it must be >= 0"
    assert lines[2].startswith("lanes[0].lead_time: 1.5 is not an integer")
    assert "3 errors" in captured.err.splitlines()[0]


def test_python_api_raises_one_error_listing_all_first_first(tmp_path):
    with pytest.raises(ScenarioError, match=r"^horizn: unknown key") as info:
        load_scenario(write(tmp_path, THREE_MISTAKES))
    assert [path for path, _ in info.value.errors] == ["horizn", "nodes[0].holding_cost", "lanes[0].lead_time"]
    assert str(info.value).splitlines() == [message for _, message in info.value.errors]


def test_a_bad_node_does_not_hide_a_bad_lane_nor_a_second_field_of_the_same_node():
    d = serial()
    d["nodes"][1]["holding_cost"] = "cheap"
    d["nodes"][1]["initial_inventory"] = -2
    d["lanes"][2]["lead_time"] = -1
    d["lanes"][0]["unit_cost"] = float("nan")
    assert [p for p, _ in errors_of(d)] == [
        "nodes[1].holding_cost",
        "nodes[1].initial_inventory",
        "lanes[0].unit_cost",
        "lanes[2].lead_time",
    ]


def test_consequences_of_one_mistake_are_not_reported_as_more_mistakes():
    # A misspelt lane end makes the retailer unreachable too, but only the cause is reported.
    d = serial()
    d["lanes"][0]["to"] = "retialer"
    assert errors_of(d) == [("lanes[0].to", "lanes[0].to: 'retialer' is not a node (did you mean 'retailer'?)")]
    # A broken demand is not reported again as a penalty on a node without demand.
    d = serial()
    d["nodes"][0]["demand"]["mean"] = -1
    assert [p for p, _ in errors_of(d)] == ["nodes[0].demand.mean"]


def test_graph_errors_are_collected_per_node():
    d = serial()
    d["nodes"] += [{"id": "spare_a"}, {"id": "spare_b"}]
    d["lanes"] += [
        {"from": "external", "to": "spare_a", "lead_time": 1},
        {"from": "external", "to": "spare_b", "lead_time": 1},
    ]
    assert [p for p, _ in errors_of(d)] == ["nodes[3]", "nodes[4]"]


# ------------------------------------------------------------------------------------------------
# Keys given twice
# ------------------------------------------------------------------------------------------------
def test_duplicate_yaml_key_is_an_error_with_path_and_lines(tmp_path):
    text = """\
name: dup
nodes:
  - id: retailer
    backorder_cost: 9
    demand: {dist: poisson, mean: 4}
  - id: dc
    holding_cost: 0.5
    holding_cost: 5
lanes:
  - {from: dc, to: retailer, lead_time: 1}
  - {from: external, to: dc, lead_time: 1}
"""
    # what PyYAML alone does: the second value wins silently
    assert yaml.safe_load(text)["nodes"][1]["holding_cost"] == 5
    with pytest.raises(ScenarioError) as info:
        load_scenario(write(tmp_path, text))
    ((where, message),) = info.value.errors
    assert where == "nodes[1].holding_cost"
    assert re.search(r"given twice in .*s\.yaml \(lines 7 and 8\)", message), message


def test_overriding_a_merged_key_is_not_a_repeat(tmp_path):
    text = """\
name: merged
costs: &costs {holding_cost: 1.0, backorder_cost: 9.0}
nodes:
  - {<<: *costs, id: retailer, holding_cost: 2.0, demand: {dist: poisson, mean: 4}}
lanes:
  - {from: external, to: retailer, lead_time: 1}
"""
    with pytest.raises(ScenarioError) as info:  # only the unknown top-level key ``costs``
        load_scenario(write(tmp_path, text))
    assert [p for p, _ in info.value.errors] == ["costs"]


def test_duplicate_keys_are_reported_with_the_other_errors(tmp_path, capsys):
    text = THREE_MISTAKES.replace("name: three\n", "name: three\nname: four\n")
    assert main(["validate", str(write(tmp_path, text))]) == 2
    err = capsys.readouterr().err
    assert "4 errors" in err
    assert "  name: the key is given twice" in err and "  nodes[0].holding_cost: -1 is negative" in err


# ------------------------------------------------------------------------------------------------
# Magnitudes and sizes, refused before anything is allocated
# ------------------------------------------------------------------------------------------------
def test_poisson_mean_1e300_names_the_field():
    d = serial()
    d["nodes"][0]["demand"]["mean"] = 1e300
    ((where, message),) = errors_of(d)
    assert where == "nodes[0].demand.mean"
    assert message.startswith("nodes[0].demand.mean: 1e+300 is too large") and f"{MAX_QUANTITY:g}" in message


def test_huge_initial_inventory_is_refused_not_inf_cost():
    d = serial()
    d["nodes"][1]["initial_inventory"] = 1e300
    d["nodes"][2]["initial_inventory"] = 10**400  # float() of this int overflows
    assert [p for p, _ in errors_of(d)] == ["nodes[1].initial_inventory", "nodes[2].initial_inventory"]
    # the cost that would have been charged in the first period is inf in float64
    assert math.isinf(0.5 * 1e300 * 1e10)


@pytest.mark.parametrize(
    "lead_time, path",
    [
        (10**9, "lanes[1].lead_time"),
        ({"dist": "uniform_int", "low": 0, "high": 10**9}, "lanes[1].lead_time.high"),
        ({"dist": "discrete", "values": [1, 10**9], "probs": [0.5, 0.5]}, "lanes[1].lead_time.values[1]"),
    ],
    ids=["constant", "uniform", "discrete"],
)
def test_huge_lead_time_refused_before_allocation(lead_time, path):
    d = serial()
    d["lanes"][1]["lead_time"] = lead_time
    tracemalloc.start()
    try:
        ((where, message),) = errors_of(d)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert where == path
    assert f"<= {MAX_LEAD_TIME}" in message and "pipeline" in message
    assert peak < 50 * 2**20  # a 1e9-entry pipeline or support list was never built


def test_many_long_lanes_exceed_the_memory_budget_naming_the_longest_lane():
    def pipeline_bytes(lead_times: list[int]) -> int:
        # 1024 copies: float64 pipelines of length max L + 1 per slot, float32 observations per period in transit
        return 1024 * (len(lead_times) * (max(lead_times) + 1) * 8 + sum(lead_times) * 4)

    d = distribution()
    for k, lane in enumerate(d["lanes"]):
        lane["lead_time"] = MAX_LEAD_TIME - k  # each allowed alone
    assert pipeline_bytes([lane["lead_time"] for lane in d["lanes"]]) < MAX_ARRAY_BYTES
    Scenario.from_dict(d)
    d["lanes"][0].pop("lead_time")
    d["lanes"][0]["modes"] = [{"name": f"m{i}", "lead_time": MAX_LEAD_TIME} for i in range(10)]
    assert pipeline_bytes([MAX_LEAD_TIME] * 10 + [9999, 9998, 9997]) > MAX_ARRAY_BYTES
    ((where, message),) = errors_of(d)
    assert where == "lanes[0].lead_time"
    assert "at most 1 GiB" in message and "1024 copies" in message


def test_poisson_mean_whose_table_is_too_large_names_the_demand():
    d = serial()
    d["nodes"][0]["demand"]["mean"] = 1e9  # below MAX_QUANTITY, table of ~1e9 entries
    ((where, message),) = errors_of(d)
    assert where == "nodes[0].demand"
    table_bytes = 8 * 1e9
    assert table_bytes > MAX_ARRAY_BYTES and "inverse-CDF table" in message and "normal or gamma" in message


@pytest.mark.parametrize(
    "demand",
    [
        {"dist": "negative_binomial", "mean": 1e-300, "sd": 1.0},  # n = m^2 / (s^2 - m) underflows to 0
        {"dist": "gamma", "mean": 1e-300, "sd": 1e12},  # scale s^2 / m overflows to inf
        {"dist": "gamma", "mean": 1e12, "sd": 1e-300},  # shape (m / s)^2 overflows to inf
    ],
    ids=["nbinom-n-zero", "gamma-scale-inf", "gamma-shape-inf"],
)
def test_demand_whose_sampler_parameters_leave_float_range_names_the_sd(demand):
    d = serial()
    d["nodes"][0]["demand"] = demand
    ((where, message),) = errors_of(d)
    assert where == "nodes[0].demand.sd" and "outside floating-point range" in message


# ------------------------------------------------------------------------------------------------
# Capacity that cannot keep up with mean demand
# ------------------------------------------------------------------------------------------------
def test_serial_capacity_below_mean_demand_names_the_lane_and_both_numbers():
    d = serial()
    d["lanes"][1]["capacity"] = 3.5  # plant -> dc must carry the retailer's 4
    ((where, message),) = errors_of(d)
    assert where == "lanes[1]"
    assert message.startswith("lanes[1] (plant -> dc): capacity 3.5 per period is below the mean demand of 4")
    d["lanes"][1]["capacity"] = 4.5
    Scenario.from_dict(d)


def test_distribution_warehouse_carries_the_sum_of_its_retailers():
    d = distribution()
    d["lanes"][0]["capacity"] = 11  # each retailer alone is below 11; together 12
    ((where, message),) = errors_of(d)
    assert where == "lanes[0]" and "mean demand of 12 per period" in message
    assert "north 3, central 4, south 5" in message
    d["lanes"][0]["capacity"] = 12.5
    Scenario.from_dict(d)
    d["nodes"][0]["capacity"] = 10  # the warehouse's own shipping capacity
    ((where, message),) = errors_of(d)
    assert where == "nodes[0].capacity" and "lanes[1] (warehouse -> north)" in message


def test_assembly_ratio_and_outages_and_modes_in_the_capacity_check():
    d = serial()
    d["nodes"][1]["bom"] = {"plant": 2}  # 2 plant units per dc unit: the lane carries 8
    d["lanes"][1]["capacity"] = 7
    ((where, message),) = errors_of(d)
    assert where == "lanes[1]" and "mean demand of 8" in message
    d["lanes"][1]["capacity"] = 9
    d["lanes"][2]["capacity"] = 10  # up 1 / (1 + 0.25 * 2) = 2/3 of the time: 6.67
    d["lanes"][2]["disruption"] = {"start_probability": 0.25, "mean_duration": 2}
    ((where, message),) = errors_of(d)
    assert where == "lanes[2]" and "capacity 6.66667 per period (after outages)" in message
    d["lanes"][2].pop("capacity")
    d["lanes"][2].pop("lead_time")
    d["lanes"][2]["modes"] = [
        {"name": "slow", "lead_time": 2, "capacity": 5},
        {"name": "fast", "lead_time": 1, "capacity": 5},
    ]
    ((where, message),) = errors_of(d)  # 10 per period, 6.67 when up
    assert where == "lanes[2]"
    d["lanes"][2]["modes"][1].pop("capacity")  # an uncapacitated mode makes it fine
    Scenario.from_dict(d)


def test_alternative_suppliers_add_up_and_an_uncapacitated_one_makes_it_fine():
    d = serial()
    d["lanes"].append({"from": "plant", "to": "retailer", "lead_time": 2, "capacity": 1})
    d["nodes"][0]["sourcing"] = "alternative"
    d["lanes"][0]["capacity"] = 2  # 2 + 1 < 4
    ((where, message),) = errors_of(d)
    assert where == "nodes[0]" and "lanes[0] (dc -> retailer), lanes[3] (plant -> retailer)" in message
    assert "at most 3 per period together" in message
    d["lanes"][0].pop("capacity")
    Scenario.from_dict(d)


def test_lost_sales_capacity_is_not_an_instability():
    d = serial()
    d["unmet_demand"] = "lost_sales"
    d["nodes"][0]["lost_sales_cost"] = d["nodes"][0].pop("backorder_cost")
    d["lanes"][1]["capacity"] = 1
    assert Scenario.from_dict(d).lanes[1].modes[0].capacity == 1


# ------------------------------------------------------------------------------------------------
# meio validate on a valid scenario: the summary
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["general", "ex61"])
def test_summary_names_every_node_lane_and_baseline(name, capsys):
    assert main(["validate", name]) == 0
    out = capsys.readouterr().out
    sc = load_scenario(name)
    for node in sc.nodes:
        assert re.search(rf"^  {re.escape(node.id)}: ", out, re.M), node.id
    for i, lane in enumerate(sc.lanes):
        assert f"lanes[{i}] {lane.source} -> {lane.target}" in out
        for mode in lane.modes:
            if len(lane.modes) > 1:
                assert f"[{mode.name}]" in out
    for b in BASELINE_NAMES:
        assert re.search(rf"^  {b} +(applies|skipped: .+)$", out, re.M), b
    assert sc.allocation in out and sc.unmet_demand in out


def test_summary_says_which_baselines_apply(capsys):
    assert main(["validate", "ex61"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"^  clark_scarf +applies$", out, re.M)  # a serial chain with backorders
    assert re.search(r"^  service_target +skipped: .*no service_target", out, re.M)
    assert main(["validate", "general"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"^  clark_scarf +skipped: not a serial chain", out, re.M)


def test_every_shipped_scenario_validates():
    for name in list_scenarios():
        assert (
            Scenario.from_dict(
                yaml.safe_load((scenarios_dir() / f"{name}.yaml").read_text()), base_dir=scenarios_dir()
            ).name
            == name
        )


# ------------------------------------------------------------------------------------------------
# Property: malformed scenarios give a clear error or a finite simulation, nothing else
# ------------------------------------------------------------------------------------------------
_SHIPPED = {name: load_scenario(name).to_dict() for name in list_scenarios()}

_BAD_VALUES = st.sampled_from(
    [
        None,
        True,
        "x",
        "",
        [],
        {},
        [1, 2],
        {"a": 1},
        -1,
        -0.5,
        0,
        1,
        2.5,
        1e-300,
        5e-324,
        3,
        7,
        float("nan"),
        float("inf"),
        -float("inf"),
        1e300,
        10**400,
        1e13,
        1e12,
        1e9,
        10**9,
        MAX_LEAD_TIME,
        {"dist": "poisson", "mean": 1e300},
        {"dist": "uniform_int", "low": 0, "high": 10**9},
        {"dist": "negative_binomial", "mean": 1e-300, "sd": 1},
        {"dist": "gamma", "mean": 1e-12, "sd": 1e12},
    ]
)


def _places(tree: Any, path: tuple = ()) -> list[tuple]:
    """Paths of every value inside a scenario dictionary (containers included)."""
    out = [path]
    if isinstance(tree, dict):
        for k, v in tree.items():
            out += _places(v, path + (k,))
    elif isinstance(tree, list):
        for i, v in enumerate(tree):
            out += _places(v, path + (i,))
    return out


@st.composite
def malformed(draw: st.DrawFn) -> dict:
    data = copy.deepcopy(_SHIPPED[draw(st.sampled_from(sorted(_SHIPPED)))])
    for _ in range(draw(st.integers(1, 3))):
        places = [p for p in _places(data) if p]
        where = draw(st.sampled_from(places))
        parent = data
        for key in where[:-1]:
            parent = parent[key]
        action = draw(st.sampled_from(["set", "set", "set", "delete", "unknown_key"]))
        if action == "set":
            parent[where[-1]] = copy.deepcopy(draw(_BAD_VALUES))
        elif action == "delete":
            del parent[where[-1]]
        elif isinstance(parent[where[-1]], dict):
            parent[where[-1]][draw(st.sampled_from(["holdng_cost", "mean_", "x", "capacity", "lead_time"]))] = 1
    return data


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(malformed())
def test_malformed_scenarios_give_a_clear_error_or_finite_costs(data):
    try:
        scenario = Scenario.from_dict(data, base_dir=scenarios_dir())
    except ScenarioError as exc:
        assert exc.errors
        for path, message in exc.errors:
            assert path and message.startswith(path), message
        return
    sim = Simulator(scenario, n=2)
    sim.reset(0)
    total = np.zeros(2)
    for _ in range(5):
        total += sim.step(np.zeros((2, sim.topology.n_slots))).total_cost
    assert np.isfinite(total).all(), total
