"""The Gymnasium env and the SB3 vector env: API checks, seeding, batch equivalence, auto-reset."""

from __future__ import annotations

import warnings

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env as gym_check_env
from stable_baselines3.common.env_checker import check_env as sb3_check_env

from meio import envs
from meio.envs.multi_echelon import MultiEchelonEnv
from meio.envs.policies import BaseStockPolicy
from meio.envs.spaces import OBS_BOUND

SCENARIOS = envs.list_scenarios()


def test_shipped_scenarios_are_the_promised_ones():
    expected = {
        "ex61",
        "beer_game",
        "beer_game_basic",
        "distribution",
        "assembly",
        "general",
        "lost_sales",
        "orgym_invmgmt",
        "orgym_invmgmt_backlog",
        "geevers_divergent",
        "disruption",
    }
    assert expected <= set(SCENARIOS)


@pytest.mark.parametrize("name", SCENARIOS)
@pytest.mark.parametrize("action_mode", ["order_quantity", "order_up_to"])
def test_gymnasium_and_sb3_checkers_pass_without_warnings(name, action_mode):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        env = gym.make("meio/MultiEchelon-v0", scenario=name, action_mode=action_mode)
        gym_check_env(env.unwrapped)
        sb3_check_env(MultiEchelonEnv(name, action_mode=action_mode), warn=True)
    assert env.unwrapped.action_space.shape == (env.unwrapped.topology.n_slots,)
    assert len(env.unwrapped.observation_labels) == env.unwrapped.observation_space.shape[0]


def _rollout(env, seed, actions):
    obs, _ = env.reset(seed=seed)
    out = [obs]
    rewards, infos = [], []
    for a in actions:
        obs, r, term, trunc, info = env.step(a)
        out.append(obs)
        rewards.append(r)
        infos.append(info)
        assert not term
    return np.array(out), np.array(rewards), infos


@pytest.mark.parametrize("name", ["beer_game", "general", "disruption"])
def test_same_seed_same_rollout_and_other_seed_differs(name):
    env = gym.make("meio/MultiEchelon-v0", scenario=name)
    actions = np.random.default_rng(5).uniform(-1, 1, (30, env.action_space.shape[0])).astype(np.float32)
    o1, r1, _ = _rollout(env, 7, actions)
    o2, r2, _ = _rollout(env, 7, actions)
    o3, r3, _ = _rollout(env, 8, actions)
    np.testing.assert_array_equal(o1, o2)
    np.testing.assert_array_equal(r1, r2)
    assert not np.array_equal(r1, r3)


@pytest.mark.parametrize("name", ["ex61", "general", "beer_game", "assembly", "orgym_invmgmt"])
@pytest.mark.parametrize("action_mode", ["order_quantity", "order_up_to"])
def test_row_i_of_vec_env_equals_single_env_seeded_seed_plus_i(name, action_mode):
    n, seed = 4, 100
    horizon = 20
    vec = envs.make_vec_env(name, n_envs=n, seed=seed, action_mode=action_mode, horizon=horizon, step_infos=True)
    singles = [MultiEchelonEnv(name, action_mode=action_mode, horizon=horizon) for _ in range(n)]
    rng = np.random.default_rng(0)
    obs = vec.reset()
    for i, env in enumerate(singles):
        o, _ = env.reset(seed=seed + i)
        np.testing.assert_array_equal(obs[i], o)
    for _ in range(horizon + 5):  # crosses an auto-reset
        actions = rng.uniform(-1.2, 1.2, (n, vec.action_space.shape[0])).astype(np.float32)
        obs, rew, dones, infos = vec.step(actions)
        for i, env in enumerate(singles):
            o, r, term, trunc, info = env.step(actions[i])
            assert rew[i] == pytest.approx(r, rel=1e-6, abs=1e-6)
            assert dones[i] == (term or trunc)
            assert infos[i]["cost_split"] == pytest.approx(info["cost_split"])
            np.testing.assert_array_equal(infos[i]["demand"], info["demand"])
            if trunc:
                np.testing.assert_array_equal(infos[i]["terminal_observation"], o)
                o, _ = env.reset()
            np.testing.assert_array_equal(obs[i], o)


def test_vec_env_follows_sb3_truncation_conventions():
    horizon = 5
    vec = envs.make_vec_env("ex61", n_envs=3, seed=1, horizon=horizon)
    first = vec.reset()
    total = np.zeros(3)
    for t in range(horizon):
        obs, rew, dones, infos = vec.step(np.zeros((3, 3), dtype=np.float32))
        total += rew
        assert dones.all() == (t == horizon - 1)
    for i, info in enumerate(infos):
        assert info["TimeLimit.truncated"] is True
        assert info["episode"]["l"] == horizon
        assert info["episode"]["r"] == pytest.approx(total[i], rel=1e-5)
        assert sum(info["episode_cost_split"].values()) == pytest.approx(-total[i], rel=1e-5)
        assert info["terminal_observation"][-1] == pytest.approx(1.0)  # a new cycle of the horizon
    assert obs[:, -1] == pytest.approx(1.0)  # the new episode starts
    # a fresh episode of a row restarts from the initial state (not the seeded first one: new draws)
    np.testing.assert_array_equal(obs[:, :3], first[:, :3])


def test_single_env_truncates_at_horizon_and_refuses_to_step_past_it():
    env = MultiEchelonEnv("ex61", horizon=3)
    env.reset(seed=0)
    flags = [env.step(env.action_space.sample())[3] for _ in range(3)]
    assert flags == [False, False, True]
    with pytest.raises(RuntimeError, match="reset"):
        env.step(env.action_space.sample())


def test_order_up_to_actions_reproduce_the_installation_base_stock_policy():
    levels = {"retailer": 7.0, "dc": 6.0, "plant": 11.0}
    env = MultiEchelonEnv("ex61", action_mode="order_up_to")
    sim_ref = envs.Simulator("ex61", n=1)
    policy = BaseStockPolicy(sim_ref.topology, levels, kind="installation")
    topo = env.topology
    targets = np.array([levels[topo.node_names[j]] for j in topo.slot_dst])
    action = env.action_map.from_orders_up_to(targets).astype(np.float32)
    env.reset(seed=3)
    sim_ref.reset(seeds=3)
    for _ in range(40):
        _, reward, _, _, info = env.step(action)
        res = sim_ref.step(policy.act(sim_ref))
        np.testing.assert_allclose(info["orders"], res.orders[0], rtol=1e-5, atol=1e-5)
        assert reward == pytest.approx(-res.costs[0].sum(), rel=1e-5)


def test_actions_are_clipped_and_extreme_actions_stay_finite():
    env = MultiEchelonEnv("general")
    env.reset(seed=0)
    hi = np.full(env.action_space.shape, 50.0, dtype=np.float32)
    for _ in range(env.scenario.horizon):
        obs, r, _, _, info = env.step(hi)
        assert np.isfinite(obs).all() and np.isfinite(r)
        assert np.all(np.abs(obs) <= OBS_BOUND)
    np.testing.assert_allclose(info["orders"], env.action_map.high)


def test_info_holds_cost_split_and_service_counts_that_add_up():
    env = MultiEchelonEnv("distribution")
    env.reset(seed=0)
    _, reward, _, _, info = env.step(np.zeros(env.action_space.shape, dtype=np.float32))
    assert sum(info["cost_split"].values()) == pytest.approx(-reward)
    np.testing.assert_allclose(info["filled"] + info["short"], info["demand"])
    assert set(info["cost_split"]) == set(envs.COST_NAMES)
    assert len(info["demand"]) == len(env.demand_node_names) == 3


def test_env_arguments_are_checked():
    with pytest.raises(ValueError, match="action_mode"):
        MultiEchelonEnv("ex61", action_mode="order_up")
    with pytest.raises(ValueError, match="horizon"):
        MultiEchelonEnv("ex61", horizon=0)
    with pytest.raises(ValueError, match="n_envs"):
        envs.make_vec_env("ex61", n_envs=0)
    with pytest.raises(envs.ScenarioError, match="did you mean 'ex61'"):
        gym.make("meio/MultiEchelon-v0", scenario="ex16")


def test_render_ansi_shows_every_node():
    env = gym.make("meio/MultiEchelon-v0", scenario="assembly", render_mode="ansi")
    env.reset(seed=0)
    env.step(env.action_space.sample())
    text = env.render()
    for name in env.unwrapped.topology.node_names:
        assert name in text
    assert "cost" in text


@pytest.mark.parametrize("name", ["general", "assembly", "beer_game"])
def test_parallel_batches_equal_serial_rows(name):
    """Large batches with two threads run the parallel compilation; every row must match the serial one."""
    from meio.envs.simulator import Simulator

    big = envs.make_vec_env(name, n_envs=130, seed=7, action_mode="order_up_to", threads=2)
    small = envs.make_vec_env(name, n_envs=2, seed=7 + 128, action_mode="order_up_to")
    assert big.sim.parallel and not small.sim.parallel
    obs_big, obs_small = big.reset(), small.reset()
    np.testing.assert_array_equal(obs_big[128:], obs_small)
    rng = np.random.default_rng(0)
    for _ in range(60):
        a = rng.uniform(-1, 1, (130, big.action_space.shape[0])).astype(np.float32)
        ob, rb, _, _ = big.step(a)
        os_, rs, _, _ = small.step(a[128:])
        np.testing.assert_array_equal(ob[128:], os_)
        np.testing.assert_array_equal(rb[128:], rs)
    assert isinstance(big.sim, Simulator)


def test_periods_left_stays_in_its_training_range_in_long_runs():
    from meio.envs.simulator import Simulator
    from meio.envs.spaces import ObservationMap

    sim = Simulator("ex61", n=2, chunk=64)
    sim.reset(seeds=0)
    obs_map = ObservationMap(sim.topology)
    seen = []
    for _ in range(3 * sim.topology.horizon + 5):
        sim.step(np.full((2, 3), 5.0))
        seen.append(obs_map(sim, np.zeros((2, obs_map.size), dtype=np.float32))[0, -1])
    h = sim.topology.horizon
    assert min(seen) == pytest.approx(1 / h) and max(seen) == pytest.approx(1.0)
    assert seen[h - 1] == pytest.approx(1.0) and seen[h] == pytest.approx((h - 1) / h)


@pytest.mark.parametrize("n_envs", [3, 130])  # serial and parallel observation kernels
def test_observe_time_false_drops_only_the_clock(n_envs):
    with_clock = envs.make_vec_env("general", n_envs=n_envs, seed=4, threads=2)
    clockless = envs.make_vec_env("general", n_envs=n_envs, seed=4, observe_time=False, threads=2)
    assert clockless.observation_labels == with_clock.observation_labels[:-1]
    assert with_clock.observation_labels[-1] == "periods_left"
    assert clockless.observation_space.shape == (with_clock.observation_space.shape[0] - 1,)
    a, b = with_clock.reset(), clockless.reset()
    rng = np.random.default_rng(0)
    for _ in range(60):
        np.testing.assert_array_equal(a[:, :-1], b)
        act = rng.uniform(-1, 1, (n_envs, with_clock.action_space.shape[0]))
        a, ra, _, _ = with_clock.step(act)
        b, rb, _, _ = clockless.step(act)
        np.testing.assert_array_equal(ra, rb)


def test_exploring_starts_draw_stock_per_row_and_match_the_single_env():
    spread = 1.5
    vec = envs.make_vec_env("distribution", n_envs=6, seed=11, initial_stock_spread=spread)
    obs = vec.reset()
    top = spread * vec.observation_map.node_scale
    stock = vec.sim.on_hand.copy()
    assert np.all(stock >= 0) and np.all(stock <= top + 0.5)
    assert np.array_equal(stock, np.round(stock))  # integer scenario: whole units
    assert len({tuple(r) for r in stock}) == 6  # every row its own draw
    plain = envs.make_vec_env("distribution", n_envs=6, seed=11)
    plain.reset()
    assert not np.array_equal(stock, plain.sim.on_hand)
    single = MultiEchelonEnv("distribution", initial_stock_spread=spread)
    rng = np.random.default_rng(0)
    actions = rng.uniform(-1, 1, (2 * vec.scenario.horizon + 3, 6, vec.action_space.shape[0]))
    o, _ = single.reset(seed=13)  # row 2 of the vector env
    np.testing.assert_array_equal(o, obs[2])
    for act in actions:  # across two automatic resets
        obs, rew, done, infos = vec.step(act)
        o, r, _, truncated, _ = single.step(act[2])
        if truncated:
            np.testing.assert_array_equal(o, infos[2]["terminal_observation"])
            o, _ = single.reset()
        np.testing.assert_array_equal(o, obs[2])
        assert r == pytest.approx(rew[2])


@pytest.mark.parametrize("value", [-0.5, "wide", True])
def test_exploring_starts_refuse_a_bad_spread(value):
    with pytest.raises(ValueError, match="initial_stock_spread"):
        envs.make_vec_env("ex61", n_envs=2, initial_stock_spread=value)
