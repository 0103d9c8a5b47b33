"""Decentralised control: node views, action assembly, the node-agent VecEnv, a short training."""

from __future__ import annotations

import numpy as np
import pytest

from meio.agents.config import PPOConfig
from meio.agents.policy import PPOPolicy
from meio.agents.train import train
from meio.envs.decentralised import DecentralisedVecEnv, NodeView
from meio.envs.metrics import evaluate, mean_ci95
from meio.envs.simulator import Simulator
from meio.envs.spaces import ActionMap
from meio.envs.vec_env import make_vec_env


@pytest.mark.parametrize("name", ["ex61", "general", "assembly", "disruption"])
def test_node_views_hold_only_local_features(name):
    vec = make_vec_env(name, n_envs=2, seed=0)
    view = NodeView(vec.topology, vec.observation_map)
    obs = vec.reset()
    local = view.local_obs(obs)
    n = vec.topology.n_nodes
    assert local.shape == (2 * n, view.size)
    for j, node in enumerate(vec.topology.node_names):
        labels = view.labels[j]
        assert f"on_hand[{node}]" in labels and f"position[{node}]" in labels and "periods_left" in labels
        others = [x for x in vec.topology.node_names if x != node]
        assert not any(f"on_hand[{x}]" in labels for x in others)
        row = local[1 * n + j]  # copy 1, node j
        k = labels.index(f"on_hand[{node}]")
        assert row[k] == obs[1, vec.observation_labels.index(f"on_hand[{node}]")]
        np.testing.assert_array_equal(row[view.obs_len :], np.eye(n)[j])


@pytest.mark.parametrize("name", ["ex61", "general"])
def test_node_agents_reproduce_the_network_env(name):
    n_copies = 3
    cen = make_vec_env(name, n_envs=n_copies, seed=5, horizon=12)
    dec = DecentralisedVecEnv(name, n_envs=n_copies, seed=5, horizon=12)
    view = dec.view
    cen.reset()
    dec.reset()
    rng = np.random.default_rng(1)
    for _ in range(15):  # crosses an episode end
        full = rng.uniform(-1, 1, (n_copies, cen.action_space.shape[0])).astype(np.float32)
        node_actions = np.zeros((n_copies * view.n_nodes, view.act_len), dtype=np.float32)
        for c in range(n_copies):
            for j in range(view.n_nodes):
                slots = view.act_slots[j][view.act_slots[j] >= 0]
                node_actions[c * view.n_nodes + j, : len(slots)] = full[c, slots]
        np.testing.assert_array_equal(view.network_action(node_actions), full)
        obs, rew, done, info = cen.step(full)
        lobs, lrew, ldone, linfo = dec.step(node_actions)
        np.testing.assert_array_equal(lobs, view.local_obs(obs))
        np.testing.assert_array_equal(lrew, np.repeat(rew, view.n_nodes))
        np.testing.assert_array_equal(ldone, np.repeat(done, view.n_nodes))
        if done.any():
            assert linfo[0]["terminal_observation"].shape == (view.size,)
            assert linfo[0]["TimeLimit.truncated"] is True


class RandomOrders:
    """Uniform actions in ``[-1, 1]`` per slot through the same action map as the agent (a seeded
    Generator, so the comparison is repeatable)."""

    name = "random"

    def __init__(self, action_map: ActionMap, seed: int) -> None:
        self.action_map = action_map
        self.rng = np.random.default_rng(seed)

    def act(self, sim: Simulator) -> np.ndarray:
        return self.action_map.to_orders(sim, self.rng.uniform(-1.0, 1.0, (sim.n, sim.topology.n_slots)))


def test_decentralised_training_beats_random_orders_and_each_node_acts_on_its_own_view(tmp_path):
    cfg = PPOConfig.from_dict(
        dict(
            control="decentralised",
            n_envs=4,
            n_steps=64,
            batch_size=64,
            n_epochs=2,
            total_steps=768,
            eval_every=384,
            eval_periods=60,
            eval_warmup=10,
            eval_replications=2,
            checkpoint_every=0,
        )
    )
    result = train("ex61", cfg, tmp_path / "run", seed=0, progress=False)
    assert result.steps >= 768
    assert (tmp_path / "run" / "evaluations.csv").read_text().count("\n") >= 2
    policy = PPOPolicy.load(tmp_path / "run" / "final")
    assert policy.control == "decentralised"

    # Computed by the agents, not by chance: on the same demand (common seeds) they cost less than
    # uniformly random actions through the same action map, by more than the paired 95% half-width.
    reps = 4
    sim = Simulator("ex61", n=reps)
    ev = evaluate(sim, policy, periods=100, warmup=10, replications=reps, seed=0)
    rnd = evaluate(
        sim,
        RandomOrders(ActionMap(sim.topology, policy.action_mode), seed=7),
        periods=100,
        warmup=10,
        replications=reps,
        seed=0,
    )
    diff = rnd.per_period_cost.mean(axis=1) - ev.per_period_cost.mean(axis=1)
    mean, half = mean_ci95(diff)
    assert mean - half > 0, (ev.cost_mean, rnd.cost_mean, half)

    # Decentralised: the retailer's order depends on its own view only. Changing the plant's stock
    # (not in the retailer's view) leaves it alone; changing the retailer's own stock does not.
    names = list(sim.topology.node_names)
    r_slot = int(np.flatnonzero(sim.topology.slot_dst == names.index("retailer"))[0])
    sim.reset(seeds=3)
    for _ in range(5):
        sim.step(policy.act(sim))
    base = policy.act(sim)[:, r_slot].copy()
    sim.on_hand[:, names.index("plant")] += 50.0
    np.testing.assert_array_equal(policy.act(sim)[:, r_slot], base)
    sim.on_hand[:, names.index("retailer")] += 50.0
    assert (policy.act(sim)[:, r_slot] != base).any()
