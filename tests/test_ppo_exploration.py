"""PPO's exploration settings: ``value_warmup_steps`` (the first rollouts' updates fit the critic and
leave the policy as it was), ``log_std_final`` (a fixed, linearly annealed exploration noise) and
``use_sde`` (SB3's state-dependent exploration)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from stable_baselines3 import PPO
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from meio.agents.config import ConfigError, PPOConfig
from meio.agents.policy import PPOPolicy
from meio.agents.train import ExplorationSchedule, ValueWarmup, train
from meio.envs.vec_env import make_vec_env

ROLLOUT = 4 * 32


def _parameters(model: PPO) -> dict[str, np.ndarray]:
    return {name: p.detach().numpy().copy() for name, p in model.policy.named_parameters()}


def _changed(before: dict[str, np.ndarray], after: dict[str, np.ndarray], prefix: tuple[str, ...]) -> set[str]:
    return {k for k in before if k.startswith(prefix) and not np.array_equal(before[k], after[k])}


POLICY = ("mlp_extractor.policy_net", "action_net", "log_std")
VALUE = ("mlp_extractor.value_net", "value_net")


def test_frozen_updates_change_the_critic_only_and_later_updates_the_policy_too():
    venv = make_vec_env("ex61", n_envs=4, seed=0, action_mode="order_up_to")
    model = PPO("MlpPolicy", venv, n_steps=32, batch_size=64, n_epochs=2, seed=0, device="cpu")
    start = _parameters(model)
    warmup = ValueWarmup(2 * ROLLOUT)
    model.learn(2 * ROLLOUT, callback=warmup)
    frozen = _parameters(model)
    # every policy parameter is exactly where it started; every value parameter moved
    assert _changed(start, frozen, POLICY) == set()
    assert _changed(start, frozen, VALUE) == {k for k in start if k.startswith(VALUE)}
    model.learn(ROLLOUT, callback=warmup, reset_num_timesteps=False)
    after = _parameters(model)
    assert _changed(frozen, after, POLICY) == {k for k in start if k.startswith(POLICY)}
    assert all(p.requires_grad for p in model.policy.parameters())


SMALL = dict(
    n_envs=4,
    n_steps=32,
    batch_size=64,
    n_epochs=1,
    net_arch=[8],
    total_steps=4 * ROLLOUT,
    eval_every=0,
    checkpoint_every=0,
)


def _scalars(run, tag: str) -> dict[int, float]:
    (events,) = (run / "tb").glob("ppo_*")
    acc = EventAccumulator(str(events))
    acc.Reload()
    return {e.step: e.value for e in acc.Scalars(tag)}


def test_a_run_logs_which_updates_were_frozen(tmp_path):
    cfg = PPOConfig.from_dict({**SMALL, "value_warmup_steps": 2 * ROLLOUT})
    train("ex61", cfg, tmp_path / "run", seed=0, progress=False)
    logged = _scalars(tmp_path / "run", "train/value_warmup")
    assert logged == {ROLLOUT: 1.0, 2 * ROLLOUT: 1.0, 3 * ROLLOUT: 0.0, 4 * ROLLOUT: 0.0}


def test_the_exploration_noise_follows_its_schedule_and_is_not_learned(tmp_path):
    cfg = PPOConfig.from_dict({**SMALL, "log_std_init": -1.0, "log_std_final": -3.0, "value_warmup_steps": ROLLOUT})
    train("ex61", cfg, tmp_path / "run", seed=0, progress=False)
    # set before each rollout r (steps r * ROLLOUT so far), logged with that rollout's update
    logged = _scalars(tmp_path / "run", "train/log_std")
    expected = {(r + 1) * ROLLOUT: -1.0 - 2.0 * r / 4 for r in range(4)}
    assert logged == pytest.approx(expected, abs=1e-6)
    # the updates left it where the schedule put it: the warm-up's thaw does not make it learnable
    agent = PPOPolicy.load(tmp_path / "run" / "final")
    np.testing.assert_allclose(agent.model.policy.log_std.detach().numpy(), -1.0 - 2.0 * 3 / 4, atol=1e-6)


def test_the_schedule_is_linear_in_the_steps_and_ends_at_its_final_value():
    schedule = ExplorationSchedule(-2.0, -5.0, 1000)
    assert [schedule.value(s) for s in (0, 250, 1000, 4000)] == [-2.0, -2.75, -5.0, -5.0]


def test_state_dependent_exploration_reaches_sb3(tmp_path):
    cfg = PPOConfig.from_dict({**SMALL, "total_steps": ROLLOUT, "use_sde": True, "sde_sample_freq": 8})
    train("ex61", cfg, tmp_path / "run", seed=0, progress=False)
    model = PPOPolicy.load(tmp_path / "run" / "final").model
    assert (model.use_sde, model.sde_sample_freq) == (True, 8)
    # gSDE's log_std is one weight per (hidden unit, action), not one per action
    assert model.policy.log_std.shape == (8, model.action_space.shape[0])


@pytest.mark.parametrize(
    ("field", "value"),
    [("value_warmup_steps", -1), ("value_warmup_steps", 1.5), ("log_std_final", 6.0), ("sde_sample_freq", -2)],
)
def test_bad_exploration_settings_are_refused_naming_the_field(field, value):
    with pytest.raises(ConfigError, match=rf"^{field}: "):
        PPOConfig.from_dict({field: value})


def test_the_frozen_parameters_are_the_policys_own():
    # the rule names layers by SB3's attribute names: a renamed layer must fail here, not train silently
    venv = make_vec_env("ex61", n_envs=2, seed=0)
    model = PPO("MlpPolicy", venv, n_steps=8, batch_size=16, seed=0, device="cpu")
    warmup = ValueWarmup(8)
    warmup.init_callback(model)
    frozen = {id(p) for p in warmup._policy_parameters()}
    names = {name for name, p in model.policy.named_parameters() if id(p) in frozen}
    assert names == {name for name, _ in model.policy.named_parameters() if name.startswith(POLICY)}
    assert isinstance(model.policy.log_std, torch.nn.Parameter)
