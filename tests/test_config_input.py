"""Malformed training configs: a ConfigError that names a field it was given, or a valid config; never
an exception of another type (a property test over mutated copies of the shipped configs)."""

from __future__ import annotations

import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from meio.agents.config import ConfigError, PPOConfig, configs_dir, load_config

FIELDS = list(PPOConfig().to_dict())
SHIPPED = sorted(p.stem for p in configs_dir().glob("*.yaml"))

BAD = st.one_of(
    st.sampled_from(
        [
            math.nan,
            math.inf,
            -math.inf,
            -1,
            0,
            -0.5,
            1e300,
            10**12,
            10**400,
            True,
            None,
            "",
            "x",
            [],
            [0],
            [64, -1],
            {"a": 1},
            "auto",
            1.5,
            2**63,
        ]
    ),
    st.integers(min_value=-(10**15), max_value=10**15),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=5),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(base=st.sampled_from(SHIPPED), edits=st.dictionaries(st.sampled_from(FIELDS), BAD, min_size=1, max_size=3))
def test_a_mutated_config_is_refused_naming_a_field_it_changed_or_is_valid(base, edits):
    data = {**load_config(base).to_dict(), **edits}
    try:
        cfg = PPOConfig.from_dict(data)
    except ConfigError as exc:
        named = str(exc).split(":")[0].replace(" ", "").split(",")
        # the field named first is one the edit changed, or a field a changed one is checked against
        # (batch_size against the rollout n_steps x n_envs, eval_periods against eval_replications)
        related = set(edits) | {"batch_size", "n_steps", "eval_periods"}
        assert set(named) & related, (edits, str(exc))
        return
    for name, value in cfg.to_dict().items():  # what is accepted is what its rule says
        if isinstance(value, float):
            assert math.isfinite(value), (name, value)
    assert cfg.n_steps * cfg.n_envs <= 10**7 and cfg.batch_size <= cfg.n_steps * cfg.n_envs


@pytest.mark.parametrize(
    "edit, message",
    [
        ({"n_envs": 10**9}, "n_envs: 1000000000 is above 1,000,000"),
        ({"n_steps": 10**6, "n_envs": 100}, "n_steps: 1000000 x n_envs 100 = 100,000,000 steps per rollout is above"),
        ({"eval_periods": 10**8, "eval_replications": 10}, "eval_periods, eval_replications: replications x periods"),
        ({"net_arch": [10**6]}, "net_arch: [1000000] is not a non-empty list of layer sizes (integers 1..65,536)"),
        ({"gama": 0.9}, "gama: unknown key (did you mean 'gamma'?)"),
    ],
)
def test_sizes_beyond_memory_are_refused_before_anything_is_built(edit, message):
    with pytest.raises(ConfigError) as info:
        PPOConfig.from_dict(edit)
    assert message in str(info.value)
