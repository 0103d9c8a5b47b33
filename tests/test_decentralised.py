"""Decentralised control: node views, action assembly, the node-agent VecEnv, a short training."""

from __future__ import annotations

import numpy as np
import pytest

from agents.config import PPOConfig
from agents.policy import PPOPolicy
from agents.train import train
from envs.decentralised import DecentralisedVecEnv, NodeView
from envs.metrics import evaluate
from envs.simulator import Simulator
from envs.vec_env import make_vec_env


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
        row = local[1 * n + j]                                  # copy 1, node j
        k = labels.index(f"on_hand[{node}]")
        assert row[k] == obs[1, vec.observation_labels.index(f"on_hand[{node}]")]
        np.testing.assert_array_equal(row[view.obs_len:], np.eye(n)[j])


@pytest.mark.parametrize("name", ["ex61", "general"])
def test_node_agents_reproduce_the_network_env(name):
    n_copies = 3
    cen = make_vec_env(name, n_envs=n_copies, seed=5, horizon=12)
    dec = DecentralisedVecEnv(name, n_envs=n_copies, seed=5, horizon=12)
    view = dec.view
    cen.reset()
    dec.reset()
    rng = np.random.default_rng(1)
    for _ in range(15):                                          # crosses an episode end
        full = rng.uniform(-1, 1, (n_copies, cen.action_space.shape[0])).astype(np.float32)
        node_actions = np.zeros((n_copies * view.n_nodes, view.act_len), dtype=np.float32)
        for c in range(n_copies):
            for j in range(view.n_nodes):
                slots = view.act_slots[j][view.act_slots[j] >= 0]
                node_actions[c * view.n_nodes + j, :len(slots)] = full[c, slots]
        np.testing.assert_array_equal(view.network_action(node_actions), full)
        obs, rew, done, info = cen.step(full)
        lobs, lrew, ldone, linfo = dec.step(node_actions)
        np.testing.assert_array_equal(lobs, view.local_obs(obs))
        np.testing.assert_array_equal(lrew, np.repeat(rew, view.n_nodes))
        np.testing.assert_array_equal(ldone, np.repeat(done, view.n_nodes))
        if done.any():
            assert linfo[0]["terminal_observation"].shape == (view.size,)
            assert linfo[0]["TimeLimit.truncated"] is True


def test_decentralised_training_and_evaluation(tmp_path):
    cfg = PPOConfig.from_dict(dict(control="decentralised", n_envs=4, n_steps=64, batch_size=64, n_epochs=2,
                                   total_steps=768, eval_every=384, eval_periods=60, eval_warmup=10,
                                   eval_replications=2, checkpoint_every=0))
    result = train("ex61", cfg, tmp_path / "run", seed=0, progress=False)
    assert result.steps >= 768
    policy = PPOPolicy.load(tmp_path / "run" / "final")
    assert policy.control == "decentralised"
    sim = Simulator("ex61", n=2)
    ev = evaluate(sim, policy, periods=100, warmup=10, replications=2, seed=0)
    assert np.isfinite(ev.cost_mean)
    assert (tmp_path / "run" / "evaluations.csv").read_text().count("\n") >= 2
