"""The training config as one declaration (``meio.agents.config``, docs/agents.md "Configs"): the shipped
configs keep the values and Python types their YAML files say (so training stays bit-identical), the JSON
Schema generated from the declaration agrees with the loader, every problem is reported at once, and a
run folder's ``config.yaml`` reads back to the same config."""

from __future__ import annotations

import math
import pickle
import re

import jsonschema
import pytest
import yaml

from meio.agents.config import ConfigError, PPOConfig, config_json_schema, configs_dir, load_config
from meio.agents.train import read_run_config

SHIPPED = sorted(configs_dir().glob("*.yaml"))

# The type each field holds, written out here rather than read from the model: a YAML integer given
# for a number field must arrive as a float (torch and SB3 see the same value either way, but a run's
# saved config.yaml and its hparams table would change), and an integer field must stay an int.
FLOATS = {
    "initial_stock_spread",
    "continue_share",
    "residual_range",
    "gamma",
    "gae_lambda",
    "learning_rate",
    "clip_range",
    "target_kl",
    "ent_coef",
    "vf_coef",
    "max_grad_norm",
    "log_std_init",
    "log_std_final",
}
INTS = {
    "n_envs",
    "horizon",
    "pipeline_length",
    "n_steps",
    "batch_size",
    "n_epochs",
    "total_steps",
    "eval_every",
    "eval_periods",
    "eval_warmup",
    "eval_replications",
    "eval_seed",
    "checkpoint_every",
    "torch_threads",
    "value_warmup_steps",
    "sde_sample_freq",
    "crn_group",
}
BOOLS = {"observe_time", "observe_echelon", "normalize_obs", "normalize_reward", "use_sde"}
TEXTS = {"control", "action_mode", "lr_schedule", "activation", "description", "episode_start"}

# The documented defaults (docs/agents.md, the field descriptions), with their types.
DEFAULTS = {
    "n_envs": 16,
    "control": "centralised",
    "action_mode": "order_up_to",
    "horizon": None,
    "observe_time": True,
    "observe_echelon": False,
    "pipeline_length": None,
    "initial_stock_spread": 0.0,
    "episode_start": "initial",
    "continue_share": 1.0,
    "residual_range": 2.0,
    "normalize_obs": True,
    "normalize_reward": True,
    "gamma": 0.99,
    "gae_lambda": 0.95,
    "learning_rate": 3e-4,
    "lr_schedule": "constant",
    "n_steps": 128,
    "batch_size": 256,
    "n_epochs": 10,
    "clip_range": 0.2,
    "target_kl": None,
    "ent_coef": 0.0,
    "vf_coef": 0.5,
    "max_grad_norm": 0.5,
    "net_arch": (64, 64),
    "activation": "tanh",
    "log_std_init": -1.0,
    "log_std_final": None,
    "use_sde": False,
    "sde_sample_freq": -1,
    "value_warmup_steps": 0,
    "crn_group": 1,
    "total_steps": 200_000,
    "eval_every": 20_000,
    "eval_periods": 2_000,
    "eval_warmup": 100,
    "eval_replications": 8,
    "eval_seed": 10_000,
    "checkpoint_every": 50_000,
    "torch_threads": 1,
    "threads": None,
    "description": "",
}


def expected_from_yaml(data: dict) -> dict:
    """What a config file means, by the rule above: floats for number fields, the rest as YAML gives it."""
    out = dict(DEFAULTS)
    for key, value in data.items():
        if key in FLOATS and value is not None:
            value = float(value)
        elif key == "net_arch":
            value = tuple(value)
        out[key] = value
    return out


def test_the_field_tables_cover_every_field():
    assert FLOATS | INTS | BOOLS | TEXTS | {"net_arch", "threads"} == set(PPOConfig.model_fields)
    assert set(DEFAULTS) == set(PPOConfig.model_fields)


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.stem)
def test_a_shipped_config_holds_exactly_the_values_and_types_its_file_says(path):
    expected = expected_from_yaml(yaml.safe_load(path.read_text()))
    cfg = load_config(path.stem)
    for name, value in expected.items():
        got = getattr(cfg, name)
        assert got == value and type(got) is type(value), (name, got, value)
        if name in FLOATS and value is not None:
            assert got.hex() == value.hex(), name  # the same double, bit for bit


def test_defaults_and_integers_given_for_numbers(tmp_path):
    assert all(type(getattr(PPOConfig(), k)) is type(v) and getattr(PPOConfig(), k) == v for k, v in DEFAULTS.items())
    path = tmp_path / "c.yaml"
    path.write_text("gamma: 1\nlog_std_init: -2\ntarget_kl: 1\nn_envs: 8\nnet_arch: [32]\nthreads: '2'\n")
    cfg = load_config(path)
    assert (cfg.gamma, cfg.log_std_init, cfg.target_kl) == (1.0, -2.0, 1.0)
    assert all(type(v) is float for v in (cfg.gamma, cfg.log_std_init, cfg.target_kl))
    assert type(cfg.n_envs) is int and cfg.net_arch == (32,) and cfg.threads == 2 and type(cfg.threads) is int


def test_every_problem_is_reported_at_once_each_naming_its_field():
    with pytest.raises(ConfigError) as info:
        PPOConfig.from_dict(
            {"n_envs": 0, "gama": 0.9, "net_arch": [64, 0], "activation": "sigmoid", "learning_rate": math.nan}
        )
    assert [path for path, _ in info.value.errors] == ["gama", "n_envs", "learning_rate", "net_arch", "activation"]
    lines = str(info.value).splitlines()
    assert lines[0].startswith("gama: unknown key (did you mean 'gamma'?)")
    assert "n_envs: 0 is not an integer >= 1" in lines
    assert "learning_rate: nan is not a finite number" in lines
    assert lines[4] == "activation: 'sigmoid' is not one of tanh, relu"
    # the rules between fields, once every field is sound, are reported together as well
    with pytest.raises(ConfigError) as info:
        PPOConfig.from_dict({"n_steps": 10**6, "n_envs": 100, "eval_periods": 10**8, "eval_replications": 10})
    assert [path for path, _ in info.value.errors] == ["n_steps", "eval_periods, eval_replications"]


def test_choices_get_a_did_you_mean_hint_and_non_text_keys_are_unknown():
    with pytest.raises(
        ConfigError,
        match=r"^action_mode: 'order_upto' is not one of order_up_to, order_quantity, echelon_order_up_to, "
        r"base_stock_residual \(did you mean 'order_up_to'\?\)$",
    ):
        PPOConfig.from_dict({"action_mode": "order_upto"})
    with pytest.raises(ConfigError, match=rf"^7: unknown key; allowed keys: {', '.join(PPOConfig.model_fields)}$"):
        PPOConfig.from_dict({7: 1})


def test_a_float_written_without_a_dot_is_refused_with_a_hint(tmp_path):
    assert yaml.safe_load("x: 3e-4")["x"] == "3e-4"  # YAML 1.1: a float needs a dot
    path = tmp_path / "c.yaml"
    path.write_text("learning_rate: 3e-4\n")
    with pytest.raises(
        ConfigError,
        match=r"learning_rate: '3e-4' is not a number \(YAML reads it as text: "
        r"write 3\.0e-4\)",
    ):
        load_config(path)
    path.write_text("learning_rate: 3.0e-4\n")
    assert load_config(path).learning_rate == 0.0003


def test_replace_checks_none_keeps_and_the_config_is_frozen():
    cfg = load_config("default")
    assert cfg.replace(total_steps=512, threads=None).total_steps == 512
    assert cfg.replace(threads=None).threads is None and cfg.replace(threads="AUTO").threads == "auto"
    with pytest.raises(ConfigError, match="^gamma: 1.5 is out of range; it must be > 0 and <= 1$"):
        cfg.replace(gamma=1.5)
    with pytest.raises(ValueError):
        cfg.gamma = 0.5
    assert cfg == load_config("default") and hash(cfg) == hash(load_config("default"))


def test_config_error_survives_pickling_with_every_problem():
    with pytest.raises(ConfigError) as info:
        PPOConfig.from_dict({"n_envs": 0, "gamma": 2})
    again = pickle.loads(pickle.dumps(info.value))
    assert again.errors == info.value.errors and str(again) == str(info.value)


# A run folder's config.yaml as runs made before this model store it (yaml.safe_dump of the fields).
OLD_RUN = """\
scenario: ex61
seed: 3
config:
  n_envs: 64
  control: centralised
  action_mode: order_up_to
  horizon: 200
  observe_time: true
  initial_stock_spread: 0.0
  normalize_obs: true
  normalize_reward: true
  gamma: 0.99
  gae_lambda: 0.95
  learning_rate: 0.0003
  lr_schedule: linear
  n_steps: 128
  batch_size: 1024
  n_epochs: 10
  clip_range: 0.2
  target_kl: null
  ent_coef: 0.0
  vf_coef: 0.5
  max_grad_norm: 0.5
  net_arch:
  - 64
  - 64
  activation: tanh
  log_std_init: -2.0
  total_steps: 3000000
  eval_every: 250000
  eval_periods: 2000
  eval_warmup: 100
  eval_replications: 4
  eval_seed: 10000
  checkpoint_every: 500000
  torch_threads: 1
  threads: null
  description: ''
"""


def test_an_old_run_folder_config_reads_back_and_round_trips(tmp_path):
    (tmp_path / "config.yaml").write_text(OLD_RUN)
    saved = read_run_config(tmp_path)
    assert (saved.scenario, saved.seed) == ("ex61", 3)
    assert saved.cfg == load_config("default").replace(description="")
    # what a new run writes: the old file's fields with their values, every field in declaration
    # order (the shared fields of TrainingConfig first), and each field added since at its default;
    # read back, it is the same config
    old = yaml.safe_load(OLD_RUN)["config"]
    written = saved.cfg.to_dict()
    assert {k: v for k, v in written.items() if k in old} == old
    assert list(written) == list(PPOConfig.model_fields)
    assert {k: v for k, v in written.items() if k not in old} == {
        k: PPOConfig.model_fields[k].default for k in written if k not in old
    }
    text = yaml.safe_dump({"scenario": "ex61", "seed": 3, "config": written}, sort_keys=False)
    (tmp_path / "config.yaml").write_text(text)
    assert read_run_config(tmp_path).cfg == saved.cfg


def schema_validator() -> jsonschema.protocols.Validator:
    schema = config_json_schema()
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema)


def test_the_schema_documents_every_field_and_accepts_every_shipped_config():
    validator = schema_validator()
    props = config_json_schema()["properties"]
    assert set(props) == set(PPOConfig.model_fields)
    assert all(len(p.get("description", "")) > 5 for p in props.values())
    for path in SHIPPED:
        assert list(validator.iter_errors(yaml.safe_load(path.read_text()))) == [], path.stem
    assert validator.is_valid({})


def test_the_schema_refuses_unknown_keys_and_broken_rules():
    validator = schema_validator()
    assert not validator.is_valid({"gama": 0.9})
    assert not validator.is_valid({"gamma": 1.5})
    assert not validator.is_valid({"n_envs": "8"})
    assert not validator.is_valid({"threads": 0}) and not validator.is_valid({"threads": "many"})
    assert validator.is_valid({"threads": " Auto "}) and validator.is_valid({"threads": "3"})


# What JSON Schema cannot say: NaN and infinity (JSON has none), 5.0 versus 5 (one number in JSON),
# and the rules between fields; the cross-field messages are matched to leave those out.
CROSS_RULES = re.compile(
    r"exceeds the rollout size|steps per rollout|^eval_periods, eval_replications: |needs episode_start: continue"
    r"|does not divide n_envs"
)
VALUES = [
    -1,
    0,
    1,
    2,
    3,
    20,
    64,
    10**5,
    10**6,
    10**7,
    10**9,
    10**12,
    2**63,
    0.5,
    1.5,
    -0.5,
    0.99,
    True,
    False,
    None,
    "",
    "x",
    "3",
    "auto",
    "1e-3",
    [],
    [0],
    [64, 64],
    [64, -1],
    [1.5],
    {"a": 1},
]


@pytest.mark.parametrize("name", list(PPOConfig.model_fields))
def test_the_schema_and_the_loader_agree_on_each_field(name):
    validator = schema_validator()
    for value in VALUES:
        loaded = True
        try:
            PPOConfig.from_dict({name: value})
        except ConfigError as exc:
            loaded = all(CROSS_RULES.search(msg) for _, msg in exc.errors)
        assert validator.is_valid({name: value}) == loaded, (name, value)
