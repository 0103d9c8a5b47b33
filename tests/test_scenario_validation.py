"""Validation of scenario files (``envs/scenario.py``).

Every rule gets a case asserting the error type (:class:`ScenarioError`) and the message: the field
path, the bad value and the rule (with a "did you mean" hint where one applies). Positive cases:
the shipped ``ex61`` loads as documented, and a rich scenario round-trips through ``to_dict``.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from scenario_factory import small_serial as base

from meio.envs.scenario import (
    EXTERNAL,
    Scenario,
    ScenarioError,
    list_scenarios,
    load_scenario,
    scenarios_dir,
)
from meio.envs.topology import compile_topology


# ------------------------------------------------------------------------------------------------
# Helpers
# ------------------------------------------------------------------------------------------------
def pat(*parts: str) -> str:
    """Regex: the message starts with ``parts[0]`` and contains the other literal parts in order."""
    return "^" + ".*".join(re.escape(p) for p in parts)


def two_suppliers(d: dict) -> dict:
    """Give the retailer a second supplier (plant -> retailer, lanes[3])."""
    d["lanes"].append({"from": "plant", "to": "retailer", "lead_time": 2})
    return d


def two_retailers(d: dict) -> dict:
    """Add a second demand node ``store`` (nodes[3]) supplied by the dc (lanes[3])."""
    d["nodes"].append(
        {"id": "store", "holding_cost": 1.0, "backorder_cost": 5.0, "demand": {"dist": "normal", "mean": 3, "sd": 1}}
    )
    d["lanes"].append({"from": "dc", "to": "store", "lead_time": 1})
    return d


def three_retailers(d: dict) -> dict:
    two_retailers(d)
    d["nodes"].append({"id": "kiosk", "backorder_cost": 5.0, "demand": {"dist": "poisson", "mean": 2}})
    d["lanes"].append({"from": "dc", "to": "kiosk", "lead_time": 1})
    return d


def with_modes(d: dict) -> dict:
    """lanes[0] (dc -> retailer) gets two transport modes."""
    lane = d["lanes"][0]
    lane.pop("lead_time")
    lane["modes"] = [{"name": "truck", "lead_time": 2}, {"name": "air", "lead_time": 0, "unit_cost": 3.0}]
    return d


_STEP = re.compile(r"([^.\[\]]+)|\[(\d+)\]")


def _walk(d: Any, path: str) -> tuple[Any, Any]:
    keys: list[Any] = [int(i) if i else k for k, i in _STEP.findall(path)]
    for k in keys[:-1]:
        d = d[k]
    return d, keys[-1]


def setp(path: str, value: Any) -> Callable[[dict], None]:
    """Mutator: set the value at a field path such as ``lanes[0].lead_time``."""

    def f(d: dict) -> None:
        parent, key = _walk(d, path)
        parent[key] = value

    return f


def delp(path: str) -> Callable[[dict], None]:
    def f(d: dict) -> None:
        parent, key = _walk(d, path)
        del parent[key]

    return f


def chain(*fs: Callable[[dict], Any]) -> Callable[[dict], None]:
    def f(d: dict) -> None:
        for g in fs:
            g(d)

    return f


def expect_error(data: dict, regex: str, base_dir: Path | None = None) -> ScenarioError:
    before = copy.deepcopy(data)
    result = None
    with pytest.raises(ScenarioError, match=regex) as info:
        result = Scenario.from_dict(data, base_dir)
    assert result is None
    assert data == before, "from_dict must not modify its input, even when it fails"
    return info.value


def case(id_: str, mutate: Callable[[dict], Any], regex: str):
    return pytest.param(mutate, regex, id=id_)


def test_base_is_valid():
    s = Scenario.from_dict(base())
    assert s.node_ids == ("retailer", "dc", "plant")
    for extra in (two_suppliers, two_retailers, three_retailers, with_modes):
        Scenario.from_dict(extra(base()))


def run_case(mutate: Callable[[dict], Any], regex: str) -> None:
    d = base()
    mutate(d)
    expect_error(d, regex)


# ------------------------------------------------------------------------------------------------
# Unknown keys, with "did you mean"
# ------------------------------------------------------------------------------------------------
UNKNOWN_KEYS = [
    case(
        "top-level",
        setp("horizn", 10),
        pat("horizn: unknown key (did you mean 'horizon'?)", "allowed keys:", "horizon"),
    ),
    case(
        "node",
        setp("nodes[0].holdng_cost", 1.0),
        pat("nodes[0].holdng_cost: unknown key (did you mean 'holding_cost'?)", "allowed keys:"),
    ),
    case(
        "node-2",
        setp("nodes[2].intial_inventory", 3),
        pat("nodes[2].intial_inventory: unknown key (did you mean 'initial_inventory'?)"),
    ),
    case(
        "lane",
        setp("lanes[1].lead_tme", 1),
        pat("lanes[1].lead_tme: unknown key (did you mean 'lead_time'?)", "allowed keys:"),
    ),
    case(
        "mode",
        chain(with_modes, setp("lanes[0].modes[1].unit_cst", 2.0)),
        pat("lanes[0].modes[1].unit_cst: unknown key (did you mean 'unit_cost'?)", "allowed keys:"),
    ),
    case(
        "demand",
        setp("nodes[0].demand.maen", 4),
        pat("nodes[0].demand.maen: unknown key (did you mean 'mean'?)", "allowed keys:"),
    ),
    case(
        "demand-param-of-other-dist",
        setp("nodes[0].demand.sd", 1),
        pat("nodes[0].demand.sd: unknown key", "allowed keys: dist, mean"),
    ),
    case(
        "lead-time-mapping",
        setp("lanes[0].lead_time", {"dist": "constant", "valu": 2}),
        pat("lanes[0].lead_time.valu: unknown key (did you mean 'value'?)"),
    ),
    case(
        "disruption",
        setp("lanes[2].disruption", {"start_prob": 0.1, "mean_duration": 2}),
        pat("lanes[2].disruption.start_prob: unknown key (did you mean 'start_probability'?)"),
    ),
]


@pytest.mark.parametrize("mutate, regex", UNKNOWN_KEYS)
def test_unknown_key(mutate, regex):
    run_case(mutate, regex)


MISSING_KEYS = [
    case("name", delp("name"), pat("name: required key is missing")),
    case("nodes", delp("nodes"), pat("nodes: required key is missing")),
    case("node-id", delp("nodes[1].id"), pat("nodes[1].id: required key is missing")),
    case("lane-to", delp("lanes[0].to"), pat("lanes[0].to: required key is missing")),
    case("lane-lead-time", delp("lanes[1].lead_time"), pat("lanes[1].lead_time: required key is missing")),
    case(
        "mode-lead-time",
        chain(with_modes, delp("lanes[0].modes[1].lead_time")),
        pat("lanes[0].modes[1].lead_time: required key is missing"),
    ),
    case("demand-param", delp("nodes[0].demand.mean"), pat("nodes[0].demand.mean: required key is missing")),
]


@pytest.mark.parametrize("mutate, regex", MISSING_KEYS)
def test_missing_required_key(mutate, regex):
    run_case(mutate, regex)


# ------------------------------------------------------------------------------------------------
# Structure: shapes, ids
# ------------------------------------------------------------------------------------------------
STRUCTURE = [
    case("empty-nodes", setp("nodes", []), pat("nodes: expected a non-empty list of nodes, got []")),
    case("empty-lanes", setp("lanes", []), pat("lanes: expected a non-empty list of lanes, got []")),
    case("node-not-mapping", lambda d: d["nodes"].append("x"), pat("nodes[3]: expected a mapping", "'x'")),
    case(
        "duplicate-node-id",
        lambda d: d["nodes"].append({"id": "dc"}),
        pat("nodes[3].id: 'dc' is already used by nodes[1]"),
    ),
    case("reserved-external-id", setp("nodes[1].id", "external"), pat("nodes[1].id: 'external' is reserved")),
    case("empty-name", setp("name", ""), pat("name: expected a non-empty string, got ''")),
    case("horizon-zero", setp("horizon", 0), pat("horizon: 0 is below 1", ">= 1")),
    case("horizon-fraction", setp("horizon", 5.5), pat("horizon: 5.5 is not an integer")),
    case(
        "integer-orders-not-bool",
        setp("integer_orders", "yes"),
        pat("integer_orders: expected true or false, got 'yes'"),
    ),
    case(
        "order-crossing-not-bool",
        setp("lanes[0].order_crossing", 1),
        pat("lanes[0].order_crossing: expected true or false, got 1"),
    ),
    case(
        "cost-not-a-number",
        setp("nodes[0].holding_cost", "1"),
        pat("nodes[0].holding_cost: expected a number, got '1'"),
    ),
    case(
        "cost-nan",
        setp("nodes[0].holding_cost", float("nan")),
        pat("nodes[0].holding_cost: nan is not a finite number"),
    ),
    case(
        "lane-modes-and-lead-time",
        chain(with_modes, setp("lanes[0].lead_time", 1)),
        pat("lanes[0].lead_time: a lane with modes takes its lead_time from each mode", "move it into modes"),
    ),
    case(
        "mode-name-twice",
        chain(with_modes, setp("lanes[0].modes[1].name", "truck")),
        pat("lanes[0].modes[1].name: 'truck' is used twice on this lane"),
    ),
]


@pytest.mark.parametrize("mutate, regex", STRUCTURE)
def test_structure(mutate, regex):
    run_case(mutate, regex)


def test_not_a_mapping():
    with pytest.raises(ScenarioError, match=pat("scenario: expected a mapping", "list")):
        Scenario.from_dict([1, 2])  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------------------
# The network graph
# ------------------------------------------------------------------------------------------------
GRAPH = [
    case(
        "lane-to-unknown-node",
        setp("lanes[0].to", "retialer"),
        pat("lanes[0].to: 'retialer' is not a node (did you mean 'retailer'?)"),
    ),
    case(
        "lane-from-unknown-node",
        setp("lanes[0].from", "dcc"),
        pat("lanes[0].from: 'dcc' is not a node (did you mean 'dc'?)", "use a node id or 'external'"),
    ),
    case(
        "lane-from-misspelt-external",
        setp("lanes[2].from", "exteral"),
        pat("lanes[2].from: 'exteral' is not a node (did you mean 'external'?)"),
    ),
    case(
        "lane-to-external",
        lambda d: d["lanes"].append({"from": "retailer", "to": "external", "lead_time": 1}),
        pat("lanes[3].to: 'external' is not a node"),
    ),
    case(
        "lane-to-itself",
        lambda d: d["lanes"].append({"from": "dc", "to": "dc", "lead_time": 1}),
        pat("lanes[3]: a lane from 'dc' to itself is a cycle"),
    ),
    case(
        "repeated-lane",
        lambda d: d["lanes"].append({"from": "dc", "to": "retailer", "lead_time": 3}),
        pat("lanes[3]: dc -> retailer repeats lanes[0]", "several modes"),
    ),
    # Two external lanes into one node: the lane (external, plant) is repeated, so either the
    # "repeats" message or the dedicated "already has an external lane" message is acceptable.
    case(
        "two-external-lanes-into-one-node",
        lambda d: d["lanes"].append({"from": "external", "to": "plant", "lead_time": 5}),
        r"^lanes\[3\]: .*(external -> plant|'plant' already has an external lane).*lanes\[2\].*modes",
    ),
    case(
        "unreachable-node",
        lambda d: (
            d["nodes"].append({"id": "extra"}),
            d["lanes"].append({"from": "extra", "to": "retailer", "lead_time": 1}),
        ),
        pat("nodes[3] (extra): no supplier can reach it", "'external'"),
    ),
    case(
        "no-demand-downstream",
        lambda d: (
            d["nodes"].append({"id": "spare"}),
            d["lanes"].append({"from": "external", "to": "spare", "lead_time": 1}),
        ),
        pat("nodes[3] (spare): no customer demand is downstream of it"),
    ),
    case(
        "no-demand-anywhere",
        chain(delp("nodes[0].demand"), delp("nodes[0].backorder_cost")),
        pat("nodes: no node has customer demand", "at least one"),
    ),
]


@pytest.mark.parametrize("mutate, regex", GRAPH)
def test_graph(mutate, regex):
    run_case(mutate, regex)


def _rotations(cycle: list[str]) -> str:
    loop = cycle[:-1]
    alts = []
    for k in range(len(loop)):
        r = loop[k:] + loop[:k]
        alts.append(re.escape(" -> ".join(r + [r[0]])))
    return "(" + "|".join(alts) + ")"


@pytest.mark.parametrize(
    "extra, cycle",
    [
        ({"from": "retailer", "to": "plant", "lead_time": 1}, ["retailer", "plant", "dc", "retailer"]),
        ({"from": "retailer", "to": "dc", "lead_time": 1}, ["retailer", "dc", "retailer"]),
    ],
    ids=["three-node-cycle", "two-node-cycle"],
)
def test_cycle_message_shows_the_cycle(extra, cycle):
    d = base()
    d["lanes"].append(extra)
    expect_error(d, r"^lanes: the network has a cycle " + _rotations(cycle) + r"; it must be acyclic")


# ------------------------------------------------------------------------------------------------
# Numbers: costs, lead times, inventories, capacities
# ------------------------------------------------------------------------------------------------
NUMBERS = [
    case("holding-cost", setp("nodes[1].holding_cost", -1), pat("nodes[1].holding_cost: -1 is negative", ">= 0")),
    case(
        "backorder-cost",
        setp("nodes[0].backorder_cost", -2.5),
        pat("nodes[0].backorder_cost: -2.5 is negative", ">= 0"),
    ),
    case(
        "lost-sales-cost",
        chain(
            setp("unmet_demand", "lost_sales"), delp("nodes[0].backorder_cost"), setp("nodes[0].lost_sales_cost", -3)
        ),
        pat("nodes[0].lost_sales_cost: -3 is negative", ">= 0"),
    ),
    case("unit-cost", setp("lanes[0].unit_cost", -1), pat("lanes[0].unit_cost: -1 is negative", ">= 0")),
    case(
        "mode-unit-cost",
        chain(with_modes, setp("lanes[0].modes[1].unit_cost", -0.5)),
        pat("lanes[0].modes[1].unit_cost: -0.5 is negative", ">= 0"),
    ),
    case("fixed-cost", setp("lanes[1].fixed_cost", -10), pat("lanes[1].fixed_cost: -10 is negative", ">= 0")),
    case(
        "pipeline-holding-cost",
        setp("lanes[2].pipeline_holding_cost", -0.1),
        pat("lanes[2].pipeline_holding_cost: -0.1 is negative", ">= 0"),
    ),
    case(
        "lead-time-negative",
        setp("lanes[2].lead_time", -1),
        pat("lanes[2].lead_time: -1 is negative", "lead times are integers >= 0"),
    ),
    case(
        "mode-lead-time-negative",
        chain(with_modes, setp("lanes[0].modes[0].lead_time", -2)),
        pat("lanes[0].modes[0].lead_time: -2 is negative", "lead times are integers >= 0"),
    ),
    case(
        "lead-time-fraction",
        setp("lanes[0].lead_time", 1.5),
        pat("lanes[0].lead_time: 1.5 is not an integer", "lead times are integers"),
    ),
    case(
        "lead-time-string",
        setp("lanes[0].lead_time", "2"),
        pat("lanes[0].lead_time: '2' is not an integer", "lead times are integers"),
    ),
    case("lead-time-bool", setp("lanes[0].lead_time", True), pat("lanes[0].lead_time: True is not an integer")),
    case(
        "lead-time-constant-fraction",
        setp("lanes[0].lead_time", {"dist": "constant", "value": 0.5}),
        pat("lanes[0].lead_time.value: 0.5 is not an integer", "lead times are integers"),
    ),
    case(
        "lead-time-uniform-negative",
        setp("lanes[0].lead_time", {"dist": "uniform_int", "low": -1, "high": 2}),
        pat("lanes[0].lead_time.low: -1 is negative", "lead times are integers >= 0"),
    ),
    case(
        "lead-time-uniform-reversed",
        setp("lanes[0].lead_time", {"dist": "uniform_int", "low": 3, "high": 1}),
        pat("lanes[0].lead_time.high: 1 is below low (3)", "low <= high"),
    ),
    case(
        "lead-time-discrete-fraction",
        setp("lanes[0].lead_time", {"dist": "discrete", "values": [1, 1.5], "probs": [0.5, 0.5]}),
        pat("lanes[0].lead_time.values[1]: 1.5 is not an integer", "lead times are integers"),
    ),
    case(
        "lead-time-discrete-negative",
        setp("lanes[0].lead_time", {"dist": "discrete", "values": [1, -1], "probs": [0.5, 0.5]}),
        pat("lanes[0].lead_time.values[1]: -1 is negative", ">= 0"),
    ),
    case(
        "lead-time-discrete-repeated",
        setp("lanes[0].lead_time", {"dist": "discrete", "values": [1, 1], "probs": [0.5, 0.5]}),
        pat("lanes[0].lead_time.values: [1, 1] repeats a value"),
    ),
    case(
        "initial-inventory",
        setp("nodes[1].initial_inventory", -3),
        pat("nodes[1].initial_inventory: -3 is negative", ">= 0"),
    ),
    case("node-capacity-zero", setp("nodes[1].capacity", 0), pat("nodes[1].capacity: 0 is out of range", "> 0")),
    case("node-capacity-negative", setp("nodes[1].capacity", -5), pat("nodes[1].capacity: -5 is negative", "> 0")),
    case("lane-capacity-zero", setp("lanes[0].capacity", 0), pat("lanes[0].capacity: 0 is out of range", "> 0")),
    case(
        "mode-capacity-negative",
        chain(with_modes, setp("lanes[0].modes[0].capacity", -1)),
        pat("lanes[0].modes[0].capacity: -1 is negative", "> 0"),
    ),
    case("max-order-zero", setp("lanes[0].max_order", 0), pat("lanes[0].max_order: 0 is out of range", "> 0")),
    case(
        "service-target-above-1",
        setp("nodes[0].service_target", 1.5),
        pat("nodes[0].service_target: 1.5 is out of range", "<= 1"),
    ),
    case("demand-mean-negative", setp("nodes[0].demand.mean", -4), pat("nodes[0].demand.mean: -4 is negative", ">= 0")),
    case(
        "disruption-probability",
        setp("lanes[2].disruption", {"start_probability": 1.5, "mean_duration": 2}),
        pat("lanes[2].disruption.start_probability: 1.5 is out of range", "<= 1"),
    ),
    case(
        "disruption-duration",
        setp("lanes[2].disruption", {"start_probability": 0.1, "mean_duration": 0.5}),
        pat("lanes[2].disruption.mean_duration: 0.5 is out of range", ">= 1"),
    ),
    case(
        "disruption-internal-lane",
        setp("lanes[0].disruption", {"start_probability": 0.1, "mean_duration": 2}),
        pat("lanes[0].disruption: disruptions apply to the external supplier", "'dc'"),
    ),
]


@pytest.mark.parametrize("mutate, regex", NUMBERS)
def test_numbers(mutate, regex):
    run_case(mutate, regex)


# ------------------------------------------------------------------------------------------------
# Probabilities and demand distributions
# ------------------------------------------------------------------------------------------------
DISTRIBUTIONS = [
    case(
        "lead-time-probs-sum",
        setp("lanes[0].lead_time", {"dist": "discrete", "values": [1, 2], "probs": [0.5, 0.6]}),
        pat("lanes[0].lead_time.probs: the probabilities sum to 1.1", "must sum to 1"),
    ),
    case(
        "lead-time-probs-length",
        setp("lanes[0].lead_time", {"dist": "discrete", "values": [1, 2], "probs": [1.0]}),
        pat("lanes[0].lead_time.probs: expected a list of 2 probabilities", "got [1.0]"),
    ),
    case(
        "lead-time-prob-negative",
        setp("lanes[0].lead_time", {"dist": "discrete", "values": [1, 2], "probs": [-0.5, 1.5]}),
        pat("lanes[0].lead_time.probs[0]: -0.5 is negative"),
    ),
    case(
        "demand-probs-sum",
        setp("nodes[0].demand", {"dist": "discrete", "values": [1, 2, 3], "probs": [0.2, 0.3, 0.4]}),
        pat("nodes[0].demand.probs: the probabilities sum to 0.9", "must sum to 1"),
    ),
    case(
        "demand-probs-length",
        setp("nodes[0].demand", {"dist": "discrete", "values": [1, 2, 3], "probs": [0.5, 0.5]}),
        pat("nodes[0].demand.probs: expected a list of 3 probabilities", "got [0.5, 0.5]"),
    ),
    case(
        "demand-values-empty",
        setp("nodes[0].demand", {"dist": "discrete", "values": [], "probs": []}),
        pat("nodes[0].demand.values: expected a non-empty list, got []"),
    ),
    case(
        "negative-binomial-variance-below-mean",
        setp("nodes[0].demand", {"dist": "negative_binomial", "mean": 5, "sd": 2}),
        pat("nodes[0].demand.sd: 2 gives variance 4 <= mean 5", "variance > mean"),
    ),
    case(
        "negative-binomial-variance-equals-mean",
        setp("nodes[0].demand", {"dist": "negative_binomial", "mean": 4, "sd": 2}),
        pat("nodes[0].demand.sd: 2 gives variance 4 <= mean 4", "variance > mean"),
    ),
    case(
        "gamma-sd-zero",
        setp("nodes[0].demand", {"dist": "gamma", "mean": 3, "sd": 0}),
        pat("nodes[0].demand.sd: 0 is not allowed for gamma demand", "> 0"),
    ),
    case(
        "uniform-demand-reversed",
        setp("nodes[0].demand", {"dist": "uniform_int", "low": 5, "high": 2}),
        pat("nodes[0].demand.high: 2 is below low (5)", "low <= high"),
    ),
    case(
        "seasonality-amplitude",
        setp("nodes[0].demand.seasonality", {"amplitude": 1.5, "period": 4}),
        pat("nodes[0].demand.seasonality.amplitude: 1.5 is out of range", "<= 1"),
    ),
    case(
        "seasonality-period",
        setp("nodes[0].demand.seasonality", {"amplitude": 0.5, "period": 0}),
        pat("nodes[0].demand.seasonality.period: 0 is below 1", ">= 1"),
    ),
    case(
        "seasonality-factor-negative",
        setp("nodes[0].demand.seasonality", {"factors": [1, -1]}),
        pat("nodes[0].demand.seasonality.factors[1]: -1 is negative"),
    ),
]


@pytest.mark.parametrize("mutate, regex", DISTRIBUTIONS)
def test_distributions(mutate, regex):
    run_case(mutate, regex)


# ------------------------------------------------------------------------------------------------
# Enumerations, with hints
# ------------------------------------------------------------------------------------------------
ENUMS = [
    case(
        "unmet_demand",
        setp("unmet_demand", "lost_sale"),
        pat("unmet_demand: 'lost_sale' is not one of backorder, lost_sales (did you mean 'lost_sales'?)"),
    ),
    case(
        "allocation",
        setp("allocation", "proportionl"),
        pat("allocation: 'proportionl' is not one of fcfs_index, proportional (did you mean 'proportional'?)"),
    ),
    case(
        "allocation-no-hint", setp("allocation", "lifo"), r"^allocation: 'lifo' is not one of fcfs_index, proportional$"
    ),
    case(
        "action_mode",
        setp("action_mode", "order_upto"),
        pat(
            "action_mode: 'order_upto' is not one of order_quantity, order_up_to, echelon_order_up_to "
            "(did you mean 'order_up_to'?)"
        ),
    ),
    case(
        "demand-dist",
        setp("nodes[0].demand.dist", "poison"),
        pat("nodes[0].demand.dist: 'poison' is not one of poisson", "(did you mean 'poisson'?)"),
    ),
    case(
        "lead-time-dist",
        setp("lanes[0].lead_time", {"dist": "discret", "values": [1], "probs": [1]}),
        pat(
            "lanes[0].lead_time.dist: 'discret' is not one of constant, uniform_int, discrete",
            "(did you mean 'discrete'?)",
        ),
    ),
    case(
        "sourcing",
        chain(two_suppliers, setp("nodes[0].sourcing", "asembly")),
        pat("nodes[0].sourcing: 'asembly' is not one of assembly, alternative (did you mean 'assembly'?)"),
    ),
    # trace ``start`` is in TRACE_ERRORS (it needs a CSV file)
]


@pytest.mark.parametrize("mutate, regex", ENUMS)
def test_enums(mutate, regex):
    run_case(mutate, regex)


# ------------------------------------------------------------------------------------------------
# Penalties and unmet demand
# ------------------------------------------------------------------------------------------------
PENALTIES = [
    case(
        "backorder-cost-in-lost-sales-scenario",
        setp("unmet_demand", "lost_sales"),
        pat("nodes[0].backorder_cost: this scenario has unmet_demand: lost_sales", "give lost_sales_cost instead"),
    ),
    case(
        "lost-sales-cost-in-backorder-scenario",
        chain(delp("nodes[0].backorder_cost"), setp("nodes[0].lost_sales_cost", 9)),
        pat("nodes[0].lost_sales_cost: this scenario has unmet_demand: backorder", "give backorder_cost instead"),
    ),
    case(
        "penalty-on-non-demand-node",
        setp("nodes[1].backorder_cost", 3),
        pat("nodes[1].backorder_cost: only nodes with customer demand pay a penalty"),
    ),
    case(
        "demand-node-without-penalty",
        delp("nodes[0].backorder_cost"),
        pat("nodes[0].backorder_cost: required for a node with customer demand"),
    ),
    case(
        "demand-node-without-lost-sales-cost",
        chain(setp("unmet_demand", "lost_sales"), delp("nodes[0].backorder_cost")),
        pat("nodes[0].lost_sales_cost: required for a node with customer demand"),
    ),
]


@pytest.mark.parametrize("mutate, regex", PENALTIES)
def test_penalties(mutate, regex):
    run_case(mutate, regex)


# ------------------------------------------------------------------------------------------------
# Sourcing and bills of materials
# ------------------------------------------------------------------------------------------------
SOURCING = [
    case(
        "bom-names-non-parent",
        chain(two_suppliers, setp("nodes[0].bom", {"dc": 1, "plnt": 2})),
        pat(
            "nodes[0].bom.plnt: 'plnt' is not a supplier of 'retailer' (did you mean 'plant'?)",
            "its suppliers are dc, plant",
        ),
    ),
    case(
        "bom-missing-parent",
        chain(two_suppliers, setp("nodes[0].bom", {"dc": 1})),
        pat("nodes[0].bom: no ratio for supplier 'plant'", "every supplier of 'retailer'"),
    ),
    case(
        "bom-with-alternative",
        chain(two_suppliers, setp("nodes[0].sourcing", "alternative"), setp("nodes[0].bom", {"dc": 1, "plant": 1})),
        pat("nodes[0].bom: a node with sourcing: alternative", "no bill of materials"),
    ),
    case(
        "alternative-with-one-supplier",
        setp("nodes[0].sourcing", "alternative"),
        pat("nodes[0].sourcing: 'alternative' needs at least two supplying lanes; 'retailer' has 1"),
    ),
    case(
        "bom-ratio-zero",
        chain(two_suppliers, setp("nodes[0].bom", {"dc": 0, "plant": 1})),
        pat("nodes[0].bom.dc: 0 is out of range", "> 0"),
    ),
    case(
        "bom-not-a-mapping",
        chain(two_suppliers, setp("nodes[0].bom", ["dc", "plant"])),
        pat("nodes[0].bom: expected a mapping", "['dc', 'plant']"),
    ),
]


@pytest.mark.parametrize("mutate, regex", SOURCING)
def test_sourcing(mutate, regex):
    run_case(mutate, regex)


def test_sourcing_defaults():
    s = Scenario.from_dict(two_suppliers(base()))
    assert s.node("retailer").sourcing == "assembly"
    assert s.node("retailer").bom == (("dc", 1.0), ("plant", 1.0))
    assert s.node("dc").sourcing == "single" and s.node("dc").bom == ()
    d = two_suppliers(base())
    d["nodes"][0]["sourcing"] = "alternative"
    assert Scenario.from_dict(d).node("retailer").sourcing == "alternative"
    d = base()
    d["nodes"][0]["bom"] = {"dc": 2}
    r = Scenario.from_dict(d).node("retailer")
    assert (r.sourcing, r.bom) == ("assembly", (("dc", 2.0),))


# ------------------------------------------------------------------------------------------------
# Demand correlation
# ------------------------------------------------------------------------------------------------
CORRELATION = [
    case(
        "single-demand-node",
        setp("demand_correlation", 0.5),
        pat("demand_correlation: needs at least two demand nodes"),
    ),
    case(
        "not-psd-scalar",
        chain(three_retailers, setp("demand_correlation", -0.9)),
        pat("demand_correlation: -0.9 gives a matrix with eigenvalue -0.8 < 0", "positive semi-definite"),
    ),
    case(
        "not-psd-matrix",
        chain(three_retailers, setp("demand_correlation", [[1, 0.9, -0.9], [0.9, 1, 0.9], [-0.9, 0.9, 1]])),
        pat("demand_correlation: [[1, 0.9, -0.9], [0.9, 1, 0.9], [-0.9, 0.9, 1]] gives a matrix with eigenvalue"),
    ),
    case(
        "not-symmetric",
        chain(two_retailers, setp("demand_correlation", [[1, 0.2], [0.5, 1]])),
        pat("demand_correlation: [0][1] is 0.2 but [1][0] is 0.5; the matrix must be symmetric"),
    ),
    case(
        "wrong-size",
        chain(two_retailers, setp("demand_correlation", [[1, 0, 0], [0, 1, 0], [0, 0, 1]])),
        pat("demand_correlation: expected a number or a 2x2 matrix", "one row per demand node"),
    ),
    case(
        "ragged",
        chain(two_retailers, setp("demand_correlation", [[1, 0.2], [0.2]])),
        pat("demand_correlation: expected a number or a 2x2 matrix"),
    ),
    case(
        "diagonal-not-one",
        chain(two_retailers, setp("demand_correlation", [[0.5, 0.2], [0.2, 1]])),
        pat("demand_correlation: the diagonal must be 1, got [0.5, 1.0]"),
    ),
    case(
        "entry-out-of-range",
        chain(two_retailers, setp("demand_correlation", [[1, 1.2], [1.2, 1]])),
        pat("demand_correlation[0][1]: 1.2 is out of range", "<= 1"),
    ),
    case(
        "scalar-out-of-range",
        chain(two_retailers, setp("demand_correlation", -1.5)),
        pat("demand_correlation: -1.5 is out of range", ">= -1"),
    ),
]


@pytest.mark.parametrize("mutate, regex", CORRELATION)
def test_correlation(mutate, regex):
    run_case(mutate, regex)


@pytest.mark.parametrize(
    "value, shown",
    [
        (-0.9, "-0.9"),  # not PSD: shows the value given
        ([[1, 0.2], [0.5, 1]], "0.5"),  # not symmetric: shows the entries
        ([[1, 0, 0], [0, 1, 0], [0, 0, 1]], "got 3 rows"),  # wrong size: says what it got
    ],
    ids=["not-psd", "not-symmetric", "wrong-size"],
)
def test_correlation_message_names_the_value(value, shown):
    d = three_retailers(base()) if value == -0.9 else two_retailers(base())
    d["demand_correlation"] = value
    with pytest.raises(ScenarioError) as info:
        Scenario.from_dict(d)
    assert shown in str(info.value)


def test_correlation_scalar_becomes_matrix():
    d = two_retailers(base())
    d["demand_correlation"] = 0.5
    assert Scenario.from_dict(d).demand_correlation == ((1.0, 0.5), (0.5, 1.0))


# ------------------------------------------------------------------------------------------------
# Traces (CSV files written in tmp_path)
# ------------------------------------------------------------------------------------------------
def trace_scenario(file: str, **extra: Any) -> dict:
    d = base()
    d["nodes"][0]["demand"] = {"dist": "trace", "file": file, **extra}
    return d


def write(tmp_path: Path, name: str, text: str) -> str:
    (tmp_path / name).write_text(text)
    return name


def test_trace_valid_loads(tmp_path):
    write(tmp_path, "weekly.csv", "week,demand\n1,4\n2,2.5\n3,0\n4,7\n")
    s = Scenario.from_dict(trace_scenario("weekly.csv"), tmp_path)
    dem = s.node("retailer").demand
    assert dem.dist == "trace"
    assert dem.trace == (4.0, 2.5, 0.0, 7.0)
    assert (dem.trace_file, dem.trace_column, dem.trace_start) == ("weekly.csv", "demand", "first")


def test_trace_named_column_and_random_start(tmp_path):
    write(tmp_path, "sales.csv", "week,sales,returns\n1,10,1\n2,12,0\n")
    s = Scenario.from_dict(trace_scenario("sales.csv", column="sales", start="random"), tmp_path)
    dem = s.node("retailer").demand
    assert dem.trace == (10.0, 12.0) and dem.trace_column == "sales" and dem.trace_start == "random"


def test_trace_relative_to_yaml_file(tmp_path):
    sub = tmp_path / "scen"
    sub.mkdir()
    write(sub, "d.csv", "demand\n3\n5\n")
    (sub / "s.yaml").write_text(yaml.safe_dump(trace_scenario("d.csv")))
    s = load_scenario(sub / "s.yaml")
    assert s.node("retailer").demand.trace == (3.0, 5.0)
    assert s.source == str(sub / "s.yaml")


def test_trace_absolute_path(tmp_path):
    f = tmp_path / "abs.csv"
    f.write_text("demand\n1\n")
    s = Scenario.from_dict(trace_scenario(str(f)), base_dir=tmp_path / "elsewhere")
    assert s.node("retailer").demand.trace == (1.0,)


TRACE_ERRORS = [
    # (id, file name, file text or None for "do not write", extra demand keys, regex)
    ("missing-file", "nope.csv", None, {}, pat("nodes[0].demand.file: 'nope.csv' does not exist")),
    (
        "non-numeric-cell",
        "nn.csv",
        "week,demand\n1,4\n2,abc\n",
        {},
        pat("nodes[0].demand.file: 'nn.csv' row 3, column 'demand': 'abc' is not a number"),
    ),
    (
        "blank-cell",
        "bl.csv",
        "week,demand\n1,4\n2,5\n3,\n",
        {},
        pat("nodes[0].demand.file: 'bl.csv' row 4, column 'demand': the cell is empty"),
    ),
    (
        "non-numeric-in-named-column",
        "nc.csv",
        "week,sales\n1,x7\n",
        {"column": "sales"},
        pat("nodes[0].demand.file: 'nc.csv' row 2, column 'sales': 'x7' is not a number"),
    ),
    (
        "missing-column-hint",
        "mc.csv",
        "week,demnd\n1,4\n",
        {},
        pat("nodes[0].demand.column: 'mc.csv' has no column 'demand' (did you mean 'demnd'?)", "columns: week, demnd"),
    ),
    (
        "missing-named-column",
        "mn.csv",
        "week,sales\n1,4\n",
        {"column": "sale"},
        pat("nodes[0].demand.column: 'mn.csv' has no column 'sale' (did you mean 'sales'?)"),
    ),
    (
        "empty-file",
        "empty.csv",
        "",
        {},
        pat("nodes[0].demand.file: 'empty.csv' has a header but no rows (or is empty)"),
    ),
    ("header-only", "h.csv", "demand\n", {}, pat("nodes[0].demand.file: 'h.csv' has a header but no rows")),
    (
        "negative-demand",
        "neg.csv",
        "demand\n1\n-3\n",
        {},
        pat("nodes[0].demand.file: 'neg.csv' row 3, column 'demand': '-3' is not a demand >= 0"),
    ),
    (
        "infinite-demand",
        "inf.csv",
        "demand\n1\ninf\n",
        {},
        pat("nodes[0].demand.file: 'inf.csv' row 3, column 'demand': 'inf' is not a demand >= 0"),
    ),
    (
        "bad-start",
        "ok.csv",
        "demand\n1\n",
        {"start": "rand"},
        pat("nodes[0].demand.start: 'rand' is not one of first, random (did you mean 'random'?)"),
    ),
    (
        "seasonality-on-trace",
        "ok.csv",
        "demand\n1\n",
        {"seasonality": {"amplitude": 0.1, "period": 4}},
        pat("nodes[0].demand.seasonality: a trace is data", "distributions only"),
    ),
    (
        "unknown-key-on-trace",
        "ok.csv",
        "demand\n1\n",
        {"colum": "x"},
        pat("nodes[0].demand.colum: unknown key (did you mean 'column'?)"),
    ),
]


@pytest.mark.parametrize("name, text, extra, regex", [pytest.param(*c[1:], id=c[0]) for c in TRACE_ERRORS])
def test_trace_errors(tmp_path, name, text, extra, regex):
    if text is not None:
        write(tmp_path, name, text)
    expect_error(trace_scenario(name, **extra), regex, base_dir=tmp_path)


def test_trace_undecodable_file(tmp_path):
    (tmp_path / "bin.csv").write_bytes(b"demand\n\xff\xfe\n")
    expect_error(trace_scenario("bin.csv"), pat("nodes[0].demand.file: cannot read 'bin.csv' as CSV"), tmp_path)


def test_correlation_with_a_trace(tmp_path):
    write(tmp_path, "t.csv", "demand\n1\n2\n")
    d = two_retailers(trace_scenario("t.csv"))
    d["demand_correlation"] = 0.2
    expect_error(d, pat("demand_correlation: node 'retailer' has a trace", "distributions only"), tmp_path)


# ------------------------------------------------------------------------------------------------
# A misspelt or missing ``dist`` is named as such
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("where", ["demand", "lead_time"])
def test_misspelt_dist_key_is_named(where):
    d = base()
    if where == "demand":
        d["nodes"][0]["demand"] = {"dsit": "poisson", "mean": 4}
        path = "nodes[0].demand"
    else:
        d["lanes"][0]["lead_time"] = {"dsit": "constant", "value": 1}
        path = "lanes[0].lead_time"
    with pytest.raises(ScenarioError) as info:
        Scenario.from_dict(d)
    msg = str(info.value)
    assert msg.startswith(f"{path}.dsit: unknown key (did you mean 'dist'?)"), msg


# ------------------------------------------------------------------------------------------------
# load_scenario
# ------------------------------------------------------------------------------------------------
def test_load_unknown_shipped_name():
    with pytest.raises(
        ScenarioError,
        match=pat(
            "scenario: 'ex16' is neither a file nor a shipped scenario",
            "(did you mean 'ex61'?)",
            "shipped scenarios:",
            "ex61",
        ),
    ):
        load_scenario("ex16")


def test_load_unknown_name_lists_all_shipped():
    with pytest.raises(ScenarioError) as info:
        load_scenario("zzzz_nothing_like_it")
    msg = str(info.value)
    assert "did you mean" not in msg
    assert msg.endswith("shipped scenarios: " + ", ".join(list_scenarios()))


def test_load_missing_path(tmp_path):
    missing = tmp_path / "nope.yaml"
    with pytest.raises(ScenarioError, match=pat(f"scenario: file '{missing}' does not exist")):
        load_scenario(missing)
    with pytest.raises(ScenarioError, match=pat("scenario: file 'no/such/dir.yaml' does not exist")):
        load_scenario("no/such/dir.yaml")


def test_load_invalid_yaml(tmp_path):
    f = tmp_path / "bad.yaml"
    f.write_text("name: x\nnodes: [\n")
    with pytest.raises(ScenarioError, match=pat(f"scenario: {f} is not valid YAML")):
        load_scenario(f)


def test_load_rule_error_from_file(tmp_path):
    d = base()
    d["lanes"][2]["lead_time"] = -1
    f = tmp_path / "neg.yaml"
    f.write_text(yaml.safe_dump(d))
    with pytest.raises(ScenarioError, match=pat("lanes[2].lead_time: -1 is negative")):
        load_scenario(f)


# ------------------------------------------------------------------------------------------------
# Nothing half-built survives an error
# ------------------------------------------------------------------------------------------------
def test_nothing_half_built_survives(tmp_path):
    good = load_scenario("ex61")
    snapshot = copy.deepcopy(good.to_dict())
    # Errors found at different stages: node parsing, lanes, graph, sourcing, late correlation check.
    write(tmp_path, "t.csv", "demand\n1\n2\n")
    late = three_retailers(trace_scenario("t.csv"))
    late["nodes"][0]["demand"] = {"dist": "poisson", "mean": 2}
    late["demand_correlation"] = -0.9
    bad_inputs = [
        setp("nodes[0].holding_cost", -1),
        setp("lanes[1].lead_time", 1.5),
        lambda d: d["lanes"].append({"from": "retailer", "to": "plant", "lead_time": 1}),
        setp("nodes[0].sourcing", "alternative"),
    ]
    for mutate in bad_inputs:
        d = base()
        mutate(d)
        result = None
        with pytest.raises(ScenarioError):
            result = Scenario.from_dict(d)
        assert result is None
    with pytest.raises(ScenarioError):
        Scenario.from_dict(late, tmp_path)
    bad_file = tmp_path / "bad.yaml"
    bad = base()
    bad["name"] = "ex61"
    bad["nodes"][1]["holding_cost"] = -4
    bad_file.write_text(yaml.safe_dump(bad))
    with pytest.raises(ScenarioError):
        good = load_scenario(bad_file)  # the assignment must not happen
    # The previously loaded scenario is unchanged and still usable.
    assert good.name == "ex61" and good.source.endswith("ex61.yaml")
    assert good == load_scenario("ex61")
    assert good.to_dict() == snapshot
    assert Scenario.from_dict(good.to_dict()) == good
    topo = compile_topology(good)
    assert set(topo.node_names) == {"retailer", "dc", "plant"}
    # And a good scenario still loads after the failures.
    assert Scenario.from_dict(base()).node_ids == ("retailer", "dc", "plant")


def test_scenario_is_immutable():
    s = load_scenario("ex61")
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.name = "x"  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.nodes[0].holding_cost = 0.0  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.lanes[0].modes[0].unit_cost = 1.0  # type: ignore[misc]
    assert isinstance(s.nodes, tuple) and isinstance(s.lanes, tuple) and isinstance(s.lanes[0].modes, tuple)


# ------------------------------------------------------------------------------------------------
# Positive: ex61 and round-trips
# ------------------------------------------------------------------------------------------------
def test_ex61_loads():
    assert "ex61" in list_scenarios()
    assert (scenarios_dir() / "ex61.yaml").is_file()
    s = load_scenario("ex61")
    assert s.name == "ex61"
    assert (s.unmet_demand, s.allocation, s.horizon) == ("backorder", "fcfs_index", 52)
    assert s.penalty_name == "backorder_cost"
    assert s.node_ids == ("retailer", "dc", "plant")
    assert [n.holding_cost for n in s.nodes] == [7.0, 4.0, 2.0]
    assert [n.penalty_cost for n in s.nodes] == [37.12, 0.0, 0.0]
    assert [n.initial_inventory for n in s.nodes] == [6.0, 5.0, 10.0]
    assert all(n.sourcing == "single" and math.isinf(n.capacity) for n in s.nodes)
    r = s.node("retailer")
    assert (r.demand.dist, r.demand.mean, r.demand.sd) == ("normal", 5.0, 1.0)
    assert [n.id for n in s.demand_nodes] == ["retailer"]
    assert [(l.source, l.target, l.modes[0].lead_time.values) for l in s.lanes] == [
        ("dc", "retailer", (0,)),
        ("plant", "dc", (1,)),
        (EXTERNAL, "plant", (2,)),
    ]
    assert all(len(l.modes) == 1 and l.modes[0].name == "default" and l.disruption is None for l in s.lanes)
    assert s.lanes[2].is_external and not s.lanes[0].is_external
    assert s.lanes_into("dc") == (s.lanes[1],) and s.lanes_from("dc") == (s.lanes[0],)
    assert load_scenario(s) is s


def rich() -> dict:
    """Modes, random lead times, assembly bom, alternative sourcing, seasonality, correlation, disruption."""
    return {
        "name": "rich",
        "description": "round-trip test",
        "unmet_demand": "backorder",
        "allocation": "proportional",
        "horizon": 26,
        "integer_orders": True,
        "action_mode": "order_up_to",
        "demand_correlation": 0.3,
        "nodes": [
            {
                "id": "store",
                "holding_cost": 2.0,
                "backorder_cost": 10.0,
                "service_target": 0.95,
                "sourcing": "alternative",
                "initial_inventory": 4,
                "demand": {
                    "dist": "poisson",
                    "mean": 4,
                    "seasonality": {"amplitude": 0.3, "period": 12, "phase": 2},
                    "trend": 0.01,
                },
            },
            {
                "id": "outlet",
                "holding_cost": 1.5,
                "backorder_cost": 6.0,
                "demand": {
                    "dist": "discrete",
                    "values": [3, 0, 1],
                    "probs": [0.2, 0.5, 0.3],
                    "seasonality": {"factors": [0.8, 1.2, 1.0]},
                },
            },
            {"id": "dc_east", "holding_cost": 1.0, "capacity": 40},
            {"id": "dc_west", "holding_cost": 1.0},
            {"id": "plant", "holding_cost": 0.8, "bom": {"comp1": 2, "comp2": 1}, "initial_inventory": 20},
            {"id": "comp1", "holding_cost": 0.3},
            {"id": "comp2", "holding_cost": 0.2},
        ],
        "lanes": [
            {"from": "dc_east", "to": "store", "lead_time": 1},
            {
                "from": "dc_west",
                "to": "store",
                "lead_time": {"dist": "uniform_int", "low": 1, "high": 3},
                "order_crossing": True,
            },
            {
                "from": "dc_west",
                "to": "outlet",
                "unit_cost": 0.5,
                "modes": [
                    {"name": "van", "lead_time": 2},
                    {"name": "courier", "lead_time": 0, "unit_cost": 2.0, "fixed_cost": 5.0, "capacity": 10},
                ],
            },
            {"from": "plant", "to": "dc_east", "lead_time": 2, "pipeline_holding_cost": 0.1},
            {"from": "plant", "to": "dc_west", "lead_time": {"dist": "constant", "value": 1}},
            {"from": "comp1", "to": "plant", "lead_time": 1, "max_order": 100},
            {"from": "comp2", "to": "plant", "lead_time": 1, "max_level": 60},
            {
                "from": "external",
                "to": "comp1",
                "modes": [
                    {"name": "sea", "lead_time": {"dist": "discrete", "values": [5, 2, 3], "probs": [0.2, 0.5, 0.3]}},
                    {"name": "air", "lead_time": 1, "unit_cost": 3.0},
                ],
                "disruption": {"start_probability": 0.05, "mean_duration": 4},
            },
            {"from": "external", "to": "comp2", "lead_time": 3, "capacity": 50},
        ],
    }


def test_rich_scenario_parses_as_described():
    s = Scenario.from_dict(rich())
    assert s.node("store").sourcing == "alternative" and s.node("store").bom == ()
    assert s.node("plant").sourcing == "assembly"
    assert s.node("plant").bom == (("comp1", 2.0), ("comp2", 1.0))
    assert s.demand_correlation == ((1.0, 0.3), (0.3, 1.0))
    outlet = s.node("outlet").demand
    assert outlet.values == (0.0, 1.0, 3.0) and outlet.probs == (0.5, 0.3, 0.2)  # sorted by value
    assert outlet.seasonality.factors == (0.8, 1.2, 1.0)
    store = s.node("store").demand
    assert (store.seasonality.amplitude, store.seasonality.period, store.seasonality.phase) == (0.3, 12, 2.0)
    assert store.trend == 0.01
    van, courier = s.lanes[2].modes
    assert (van.name, van.unit_cost, van.lead_time.values) == ("van", 0.5, (2,))  # lane default
    assert (courier.unit_cost, courier.fixed_cost, courier.capacity) == (2.0, 5.0, 10.0)
    sea = s.lanes[7].modes[0]
    assert sea.lead_time.values == (2, 3, 5) and sea.lead_time.probs == (0.5, 0.3, 0.2)
    assert s.lanes[1].modes[0].lead_time.values == (1, 2, 3)
    assert s.lanes[1].modes[0].order_crossing
    assert s.lanes[7].disruption.start_probability == 0.05 and s.lanes[7].disruption.end_probability == 0.25
    assert s.lanes[5].modes[0].max_order == 100.0 and s.lanes[6].modes[0].max_level == 60.0


@pytest.mark.parametrize(
    "make",
    [rich, base, lambda: two_suppliers(base()), lambda: with_modes(two_retailers(base()))],
    ids=["rich", "base", "assembly-default", "modes"],
)
def test_round_trip(make):
    s = Scenario.from_dict(make())
    d = s.to_dict()
    s2 = Scenario.from_dict(copy.deepcopy(d))
    assert s2 == s
    assert s2.to_dict() == d


def test_round_trip_lost_sales_with_trace(tmp_path):
    write(tmp_path, "t.csv", "demand\n1\n0\n4\n")
    d = trace_scenario("t.csv", start="random")
    d["unmet_demand"] = "lost_sales"
    d["nodes"][0]["lost_sales_cost"] = d["nodes"][0].pop("backorder_cost")
    s = Scenario.from_dict(d, tmp_path)
    assert s.penalty_name == "lost_sales_cost"
    assert Scenario.from_dict(s.to_dict(), tmp_path) == s


def test_round_trip_through_a_yaml_file(tmp_path):
    s = Scenario.from_dict(rich())
    f = tmp_path / "rich.yaml"
    f.write_text(yaml.safe_dump(s.to_dict(), sort_keys=False))
    s2 = load_scenario(f)
    assert s2 == s and s2.source == str(f)
