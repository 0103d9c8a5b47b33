"""``crn_group``: env copies in groups that share their random numbers, and advantages measured
against the other members of the group (an input-driven baseline)."""

from __future__ import annotations

import numpy as np
import pytest
from stable_baselines3 import PPO
from stable_baselines3.common.callbacks import BaseCallback, CallbackList

from meio.agents.config import ConfigError, PPOConfig
from meio.agents.train import GroupBaseline, read_run_config, train
from meio.envs.multi_echelon import MultiEchelonEnv
from meio.envs.vec_env import make_vec_env


def test_row_i_of_a_grouped_batch_is_the_single_env_seeded_seed_plus_i_over_the_group():
    venv = make_vec_env("ex61", n_envs=6, seed=10, crn_group=3, horizon=100)
    obs = venv.reset()
    singles = [MultiEchelonEnv("ex61", horizon=100) for _ in range(6)]
    firsts = [env.reset(seed=10 + i // 3)[0] for i, env in enumerate(singles)]
    np.testing.assert_allclose(obs, np.stack(firsts), rtol=1e-6)
    rng = np.random.default_rng(0)
    for _ in range(60):
        # each row its own actions: the members of a group share the demand, not the states
        actions = rng.uniform(-1, 1, (6, venv.action_space.shape[0])).astype(np.float32)
        obs, rewards, _, _ = venv.step(actions)
        for i, env in enumerate(singles):
            o, r, *_ = env.step(actions[i])
            np.testing.assert_allclose(obs[i], o, rtol=1e-5, atol=1e-6)
            assert rewards[i] == pytest.approx(r, rel=1e-6)


def test_the_members_of_a_group_see_the_same_demand_whatever_their_orders_and_groups_differ():
    venv = make_vec_env("beer_game_basic", n_envs=8, seed=3, crn_group=4)
    venv.reset()
    rng = np.random.default_rng(1)
    for _ in range(3 * venv.sim.chunk + 5):  # past several blocks of draws
        obs, *_ = venv.step(rng.uniform(-1, 1, (8, venv.action_space.shape[0])).astype(np.float32))
    demand = venv.sim.demand_chunk
    for group in (range(0, 4), range(4, 8)):
        for i in group:
            np.testing.assert_array_equal(demand[i], demand[group[0]])
    assert not np.array_equal(demand[0], demand[4])
    # the orders differed, so the states did too: only the random numbers are common
    assert not np.array_equal(obs[0], obs[1])


def test_the_seed_rule_holds_when_sb3_seeds_the_env_again():
    venv = make_vec_env("ex61", n_envs=4, seed=0, crn_group=2)
    assert venv.seed(7) == [7, 7, 8, 8]
    assert make_vec_env("ex61", n_envs=3, seed=0).seed(7) == [7, 8, 9]


class _Capture(BaseCallback):
    """The rollout buffer's returns and advantages as PPO's update will read them."""

    def _on_rollout_end(self) -> None:
        buffer = self.model.rollout_buffer
        self.returns = buffer.returns.copy()
        self.advantages = buffer.advantages.copy()

    def _on_step(self) -> bool:
        return True


def _one_rollout(crn_group: int, log_std_init: float) -> _Capture:
    venv = make_vec_env("ex61", n_envs=8, seed=0, crn_group=crn_group)
    model = PPO(
        "MlpPolicy",
        venv,
        n_steps=64,
        batch_size=128,
        n_epochs=1,
        seed=0,
        device="cpu",
        policy_kwargs={"log_std_init": log_std_init},
    )
    capture = _Capture()
    model.learn(64 * 8, callback=CallbackList([GroupBaseline(4), capture]))
    return capture


def test_advantages_are_each_return_minus_the_mean_of_the_other_members():
    capture = _one_rollout(crn_group=4, log_std_init=0.0)
    returns = capture.returns.reshape(64, 2, 4)
    advantages = capture.advantages.reshape(64, 2, 4)
    tol = 1e-6 * np.abs(returns).max()  # float32 buffers
    for i in range(4):
        others = np.delete(returns, i, axis=2).mean(axis=2)
        np.testing.assert_allclose(advantages[:, :, i], returns[:, :, i] - others, atol=tol)
    # so they sum to 0 over each group at each step
    np.testing.assert_allclose(advantages.sum(axis=2), 0.0, atol=4 * tol)


def test_shared_demand_cancels_in_the_advantages_of_a_deterministic_policy():
    # With (almost) no exploration the members of a group act alike: sharing their demand, they
    # earn the same returns, so every advantage is 0 although the returns vary with the demand.
    shared = _one_rollout(crn_group=4, log_std_init=-20.0)
    assert np.abs(shared.advantages).max() < 1e-3 * np.abs(shared.returns).std()
    assert shared.returns.std() > 0.1
    # copies on their own streams earn different returns: the same baseline leaves the noise in
    alone = _one_rollout(crn_group=1, log_std_init=-20.0)
    assert np.abs(alone.advantages).std() > 0.1 * np.abs(alone.returns).std()


def test_a_training_run_with_groups_trains_and_saves_its_setting(tmp_path):
    cfg = PPOConfig.from_dict(
        {
            "n_envs": 8,
            "crn_group": 4,
            "n_steps": 32,
            "batch_size": 64,
            "n_epochs": 1,
            "net_arch": [8],
            "total_steps": 2 * 256,
            "eval_every": 0,
            "checkpoint_every": 0,
        }
    )
    result = train("ex61", cfg, tmp_path / "run", seed=0, progress=False)
    assert result.steps == 512
    assert read_run_config(tmp_path / "run").cfg.crn_group == 4


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"crn_group": 0}, r"^crn_group: "),
        ({"crn_group": 1.5}, r"^crn_group: "),
        ({"n_envs": 64, "crn_group": 3}, r"crn_group: 3 does not divide n_envs 64"),
        ({"n_envs": 8, "crn_group": 4, "control": "decentralised"}, r"crn_group: 4 needs control: centralised"),
        (
            {"n_envs": 8, "crn_group": 4, "episode_start": "continue", "continue_share": 0.25},
            r"crn_group: 4 needs the members of a group to start their episodes alike: continue_share 0.25 "
            r"lets ceil\(0.25 x 8\) = 2 copies continue, not a multiple of 4",
        ),
    ],
)
def test_bad_group_settings_are_refused_naming_the_field(settings, message):
    with pytest.raises(ConfigError, match=message):
        PPOConfig.from_dict(settings)


def test_the_env_refuses_a_group_that_does_not_divide_its_copies():
    with pytest.raises(ValueError, match=r"^crn_group: 3 does not divide n_envs 8"):
        make_vec_env("ex61", n_envs=8, crn_group=3)
    with pytest.raises(ValueError, match=r"^crn_group: 4 needs the members of a group to start their episodes alike"):
        make_vec_env("ex61", n_envs=8, crn_group=4, episode_start="continue", continue_share=0.75)


def test_whole_groups_continue_and_the_others_restart_together():
    # continue_share 0.5 of 8 copies in groups of 4: the first group continues, the second restarts
    assert PPOConfig.from_dict(
        {"n_envs": 8, "crn_group": 4, "episode_start": "continue", "continue_share": 0.5}
    ).continue_share == pytest.approx(0.5)
    venv = make_vec_env("ex61", n_envs=8, seed=0, crn_group=4, horizon=5, episode_start="continue", continue_share=0.5)
    venv.reset()
    rng = np.random.default_rng(2)
    for _ in range(5):  # one episode, then every copy is truncated at once
        obs, _, dones, _ = venv.step(rng.uniform(-1, 1, (8, venv.action_space.shape[0])).astype(np.float32))
    assert dones.all()
    np.testing.assert_array_equal(venv.sim.t, [5, 5, 5, 5, 0, 0, 0, 0])
    # the restarted group is back at the scenario's state, all four alike
    for i in range(5, 8):
        np.testing.assert_array_equal(obs[i], obs[4])
    assert not np.array_equal(obs[0], obs[4])
