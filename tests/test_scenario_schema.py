"""The JSON Schema of scenario files (``meio schema``, ``configs/scenario.schema.json``) and the
pydantic models it is written from (``envs/scenario_model.py``).

The schema is checked against the outside: the JSON Schema meta-schema (draft 2020-12), the
independent ``jsonschema`` validator on every shipped scenario, and the key tables of
``docs/scenarios.md``, written before the models. Errors of the models keep the loader's field paths.
"""

from __future__ import annotations

import copy
import json
import re
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
import yaml

from meio.cli import main
from meio.envs import scenario_model
from meio.envs.scenario import Scenario, ScenarioError, list_scenarios, load_scenario, scenarios_dir
from meio.envs.scenario_model import json_schema

jsonschema = pytest.importorskip("jsonschema")

SCHEMA_FILE = Path(str(resources.files("meio.configs"))) / "scenario.schema.json"
DOCS = Path(__file__).resolve().parents[1] / "docs" / "scenarios.md"


@pytest.fixture(scope="module")
def schema() -> dict[str, Any]:
    return json_schema()


@pytest.fixture(scope="module")
def validator(schema: dict[str, Any]) -> Any:
    return jsonschema.Draft202012Validator(schema)


def shipped(name: str) -> dict[str, Any]:
    return yaml.safe_load((scenarios_dir() / f"{name}.yaml").read_text())


def props(schema: dict[str, Any], name: str) -> list[str]:
    return list((schema if name == "" else schema["$defs"][name])["properties"])


# ------------------------------------------------------------------------------------------------
# The schema file and the command
# ------------------------------------------------------------------------------------------------
def test_shipped_schema_file_is_what_meio_schema_writes(tmp_path, capsys):
    assert main(["schema"]) == 0
    printed = capsys.readouterr().out
    assert printed == SCHEMA_FILE.read_text(), "configs/scenario.schema.json is stale: run meio schema --out"
    out = tmp_path / "s.json"
    assert main(["schema", "scenario", "--out", str(out)]) == 0
    assert out.read_text() == printed
    assert json.loads(printed) == json_schema()


def test_schema_is_valid_draft_2020_12(schema):
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    jsonschema.Draft202012Validator.check_schema(schema)  # raises on an invalid schema
    assert schema["title"] == "meio scenario" and schema["required"] == ["name", "nodes", "lanes"]


def test_unwritable_out_is_an_error_naming_the_option(tmp_path, capsys):
    assert main(["schema", "--out", str(tmp_path / "no" / "such" / "s.json")]) == 2
    assert "--out: cannot write" in capsys.readouterr().err


def test_config_kind_writes_the_training_config_schema(capsys):
    try:
        from meio.agents.config import config_json_schema
    except ImportError:
        assert main(["schema", "config"]) == 2
        assert "config schema is not available" in capsys.readouterr().err
        return
    assert main(["schema", "config"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == json.loads(json.dumps(config_json_schema()))
    jsonschema.Draft202012Validator.check_schema(printed)


# ------------------------------------------------------------------------------------------------
# Shipped scenarios and the keys
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", list_scenarios())
def test_every_shipped_scenario_validates_against_the_schema(name, validator):
    data = shipped(name)
    errors = [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(data)]
    assert errors == []
    assert load_scenario(name).name == data["name"]


def _objects(node: Any) -> list[dict[str, Any]]:
    """Every schema object with properties, anywhere in the schema."""
    found = []
    if isinstance(node, dict):
        if "properties" in node:
            found.append(node)
        for v in node.values():
            found += _objects(v)
    elif isinstance(node, list):
        for v in node:
            found += _objects(v)
    return found


def test_every_mapping_refuses_unknown_keys_and_describes_every_key(schema):
    objects = _objects(schema)
    # the scenario, node, lane, mode, disruption, 7 demands, 3 lead times, 2 seasonalities
    assert len(objects) == 17
    for obj in objects:
        assert obj["additionalProperties"] is False, obj.get("title")
        for key, spec in obj["properties"].items():
            assert spec.get("description"), f"{obj.get('title')}.{key} has no description"


def test_schema_lists_exactly_the_model_fields(schema):
    models = {name: getattr(scenario_model, name) for name in schema["$defs"]}
    models[""] = scenario_model.ScenarioModel
    for name, model in models.items():
        accepted = [field.alias or key for key, field in model.model_fields.items()]
        assert sorted(props(schema, name)) == sorted(accepted), name


def _documented(section: str) -> list[str]:
    """Keys in the first column of the table under ``## section`` of docs/scenarios.md."""
    text = DOCS.read_text()
    body = text.split(f"## {section}\n", 1)[1].split("\n#", 1)[0]
    keys: list[str] = []
    for line in body.splitlines():
        if line.startswith("| `"):
            keys += re.findall(r"`([a-z_]+)`", line.split("|")[1])
    return keys


@pytest.mark.parametrize("section, model", [("Top level", ""), ("Nodes", "NodeModel"), ("Lanes", "LaneModel")])
def test_schema_keys_are_the_documented_keys(schema, section, model):
    assert sorted(props(schema, model)) == sorted(_documented(section))


def test_demand_keys_are_the_documented_keys(schema):
    text = DOCS.read_text().split("### Demand\n", 1)[1].split("\n\n", 1)[0]
    documented = {}
    for line in text.splitlines()[2:]:
        cells = line.split("|")
        documented[re.findall(r"`(\w+)`", cells[1])[0]] = set(re.findall(r"`([a-z_]+)`", cells[2])) - {
            "demand",
            "first",
            "random",
        }
    by_dist = {}
    for name, spec in schema["$defs"].items():
        if name.endswith("Demand"):
            by_dist[spec["properties"]["dist"]["const"]] = set(spec["properties"]) - {"dist", "seasonality", "trend"}
    assert by_dist == documented


# ------------------------------------------------------------------------------------------------
# The schema and the loader refuse the same mistakes, at the same field path
# ------------------------------------------------------------------------------------------------
MISTAKES = [
    ("nodes[0].holding_cost", -1),
    ("nodes[0].holdng_cost", 1.0),
    ("nodes[0].service_target", 1.5),
    ("nodes[0].demand.dist", "poison"),
    ("lanes[0].lead_time", 1.5),
    ("lanes[0].capacity", 0),
    ("lanes[1].unit_cst", 1.0),
    ("horizon", 0),
    ("unmet_demand", "lost_sale"),
    ("integer_orders", "yes"),
    ("horizn", 10),
]


def _set(data: dict, path: str, value: Any) -> None:
    steps = [int(i) if i else k for k, i in re.findall(r"([^.\[\]]+)|\[(\d+)\]", path)]
    for step in steps[:-1]:
        data = data[step]
    data[steps[-1]] = value


@pytest.mark.parametrize("path, value", MISTAKES, ids=[m[0] for m in MISTAKES])
def test_schema_and_loader_refuse_the_same_mistake_at_its_path(validator, path, value):
    data = copy.deepcopy(shipped("ex61"))
    _set(data, path, value)
    assert not validator.is_valid(data)
    with pytest.raises(ScenarioError) as info:
        Scenario.from_dict(data)
    assert [p for p, _ in info.value.errors] == [path]
    assert str(info.value).startswith(f"{path}: ")


def test_errors_inside_unions_keep_the_file_path_in_file_order_with_hints():
    text = """\
name: nested
nodes:
  - {id: shop, backorder_cost: 9, demand: {dist: poisson, mean: 4, seasonality: {amplitude: 0.2, period: 0}}}
  - {id: dc, holding_cost: 1}
lanes:
  - from: dc
    to: shop
    modes:
      - {name: road, lead_time: 1}
      - {name: air, lead_time: {dist: discrete, values: [1, 1.5], probs: [0.5, 0.5]}, unit_cots: 2}
  - {from: external, to: dc, lead_time: {dist: uniform_int, low: 1, hihg: 3}}
"""
    with pytest.raises(ScenarioError) as info:
        Scenario.from_dict(yaml.safe_load(text))
    assert [p for p, _ in info.value.errors] == [
        "nodes[0].demand.seasonality.period",
        "lanes[0].modes[1].lead_time.values[1]",
        "lanes[0].modes[1].unit_cots",
        "lanes[1].lead_time.hihg",  # a key written comes before one missing
        "lanes[1].lead_time.high",
    ]
    messages = str(info.value).splitlines()
    assert messages[0] == "nodes[0].demand.seasonality.period: 0 is below 1; periods are integers >= 1"
    assert messages[1] == "lanes[0].modes[1].lead_time.values[1]: 1.5 is not an integer; lead times are integers >= 0"
    assert messages[2].startswith("lanes[0].modes[1].unit_cots: unknown key (did you mean 'unit_cost'?)")
    assert messages[3].startswith(
        "lanes[1].lead_time.hihg: unknown key (did you mean 'high'?); allowed keys: dist, low, high"
    )
    assert messages[4] == "lanes[1].lead_time.high: required key is missing"


def test_lane_defaults_reach_every_mode_unless_the_mode_sets_its_own():
    data = shipped("ex61")
    lane = data["lanes"][0]
    lane.pop("lead_time")
    lane.update(
        unit_cost=0.5,
        order_crossing=False,
        modes=[{"name": "van", "lead_time": 1}, {"name": "air", "lead_time": 0, "unit_cost": 3.0}],
    )
    van, air = Scenario.from_dict(data).lanes[0].modes
    assert (van.unit_cost, air.unit_cost) == (0.5, 3.0)
    assert van.lead_time.values == (1,) and air.lead_time.values == (0,)
