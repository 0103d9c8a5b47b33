"""A scenario file's ``action_mode``: the environments' default action mode.

``echelon_order_up_to`` is accepted where every node has one supplier (echelon positions, Clark &
Scarf 1960) and refused at load otherwise, naming the field and the rule; ``base_stock_residual``
is refused with what to do instead (it needs levels only training computes); ``meio schema`` says
the same.
"""

from __future__ import annotations

import copy
from typing import Any

import jsonschema
import numpy as np
import pytest
import yaml

from meio.envs.scenario import Scenario, ScenarioError, load_scenario
from meio.envs.scenario_model import json_schema
from meio.envs.spaces import ACTION_MODES
from meio.envs.vec_env import make_vec_env

#: Warehouse w (supplied from outside, lead time 2) -> retailer r (lead time 1), with customers at r.
SERIAL: dict[str, Any] = {
    "name": "serial2",
    "action_mode": "echelon_order_up_to",
    "nodes": [
        {"id": "w", "holding_cost": 0.5, "initial_inventory": 5},
        {
            "id": "r",
            "holding_cost": 1.0,
            "backorder_cost": 9.0,
            "initial_inventory": 3,
            "demand": {"dist": "poisson", "mean": 4},
        },
    ],
    "lanes": [{"from": "external", "to": "w", "lead_time": 2}, {"from": "w", "to": "r", "lead_time": 1}],
}


def _two_suppliers() -> dict[str, Any]:
    """SERIAL with a second warehouse v that also supplies r: r has two lanes in."""
    data = copy.deepcopy(SERIAL)
    data["nodes"].insert(1, {"id": "v", "holding_cost": 0.5})
    data["lanes"] += [{"from": "external", "to": "v", "lead_time": 1}, {"from": "v", "to": "r", "lead_time": 1}]
    return data


def test_an_echelon_scenario_file_sets_the_environments_default_mode(tmp_path):
    path = tmp_path / "serial2.yaml"
    path.write_text(yaml.safe_dump(SERIAL, sort_keys=False))
    scenario = load_scenario(path)
    assert scenario.action_mode == "echelon_order_up_to"
    env = make_vec_env(scenario, n_envs=1, seed=0)  # no action_mode given: the scenario's
    env.reset()
    # Ask for echelon targets S^e_w = 20, S^e_r = 10. Clark-Scarf: each stage orders up to its echelon
    # position (own stock plus everything downstream, nothing in transit at the start): r orders
    # 10 - 3 = 7, w orders 20 - (5 + 3) = 12. An installation order-up-to reading would order 15 at w.
    slot = {name.split(":")[0].split("->")[-1].strip(): q for q, name in enumerate(env.slot_names)}
    targets = np.zeros(len(env.slot_names))
    targets[slot["w"]], targets[slot["r"]] = 20.0, 10.0
    orders = env.action_map.to_orders(env.sim, env.action_map.from_orders_up_to(targets)[None, :])[0]
    assert orders[slot["w"]] == pytest.approx(12.0)
    assert orders[slot["r"]] == pytest.approx(7.0)
    # the copy a run keeps of its scenario reads back with the same mode
    assert Scenario.from_dict(scenario.to_dict()).action_mode == "echelon_order_up_to"


def test_echelon_mode_on_a_node_with_two_suppliers_is_refused_naming_the_field_and_the_rule():
    with pytest.raises(ScenarioError) as info:
        Scenario.from_dict(_two_suppliers())
    assert [path for path, _ in info.value.errors] == ["action_mode"]
    assert str(info.value) == (
        "action_mode: 'echelon_order_up_to' needs echelon positions, defined only when every node has one "
        "supplier (one lane in, no bill of materials); node 'r' has 2 lanes in (lanes[1], lanes[3]): use "
        "order_up_to or order_quantity"
    )
    # the same network with an installation mode is a sound scenario
    assert Scenario.from_dict({**_two_suppliers(), "action_mode": "order_up_to"}).action_mode == "order_up_to"


def test_base_stock_residual_in_a_scenario_is_refused_with_what_to_do_instead():
    with pytest.raises(ScenarioError) as info:
        Scenario.from_dict({**SERIAL, "action_mode": "base_stock_residual"})
    assert [path for path, _ in info.value.errors] == ["action_mode"]
    message = str(info.value)
    assert message.startswith("action_mode: 'base_stock_residual' cannot be a scenario's action mode")
    assert "set action_mode: base_stock_residual in the PPO training config" in message


def test_an_unknown_mode_lists_the_three_a_scenario_takes():
    with pytest.raises(
        ScenarioError,
        match=r"^action_mode: 'echelon' is not one of order_quantity, order_up_to, "
        r"echelon_order_up_to",
    ):
        Scenario.from_dict({**SERIAL, "action_mode": "echelon"})


def test_the_schema_offers_every_environment_mode_but_the_residual():
    schema = json_schema()
    enum = schema["properties"]["action_mode"]["enum"]
    assert set(enum) == set(ACTION_MODES) - {"base_stock_residual"}
    validator = jsonschema.Draft202012Validator(schema)
    assert not list(validator.iter_errors(SERIAL))
    assert list(validator.iter_errors({**SERIAL, "action_mode": "base_stock_residual"}))
