"""Decentralised control: every node an agent that sees only its own state, one shared policy.

:class:`NodeView` cuts the network's observation into one local observation per node (its stock,
backorders, what it owes and is owed, its inbound pipeline and component stock, its position, its
last demand, its suppliers' outages, the periods left) padded to a common length, followed by a
one-hot code of the node, so one network (parameter sharing) can act for every node. A node's
action is the orders on the slots into it, padded to the largest number of such slots.

:class:`DecentralisedVecEnv` exposes ``n_envs x N`` node-agents to SB3 over one batched
:class:`~meio.envs.vec_env.MultiEchelonVecEnv`: every agent of a copy acts in the same period, and all
share the copy's reward (a cooperative team), its episode ends and its auto-resets (or, with
``episode_start="continue"``, its episodes that go on from the state the last one ended in).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from stable_baselines3.common.vec_env.base_vec_env import VecEnv, VecEnvIndices

from meio.envs.scenario import Scenario
from meio.envs.spaces import OBS_BOUND, ObservationMap, ResidualBase
from meio.envs.threads import Threads
from meio.envs.topology import Topology
from meio.envs.vec_env import MultiEchelonVecEnv


class NodeView:
    """Index tables between the network's observation/action and the nodes' local ones."""

    def __init__(self, topo: Topology, obs_map: ObservationMap) -> None:
        n = topo.n_nodes
        self.n_nodes = n
        local = [[f for f, owners in enumerate(obs_map.owners) if j in owners] for j in range(n)]
        self.obs_len = max(len(x) for x in local)
        # feature index per (node, position); padding reads a constant zero column at index obs_map.size
        self.obs_index = np.full((n, self.obs_len), obs_map.size, dtype=np.int64)
        for j, feats in enumerate(local):
            self.obs_index[j, : len(feats)] = feats
        self.size = self.obs_len + n
        slots = [list(topo.slots_into(j)) for j in range(n)]
        self.act_len = max(len(x) for x in slots)
        self.act_slots = np.full((n, self.act_len), -1, dtype=np.int64)
        for j, sl in enumerate(slots):
            self.act_slots[j, : len(sl)] = sl
        self.n_slots = topo.n_slots
        self.labels = tuple(tuple(obs_map.labels[f] for f in feats) for feats in local)

    def local_obs(self, obs: np.ndarray) -> np.ndarray:
        """Network observations ``(n, F)`` -> node observations ``(n * N, size)``, copy-major."""
        n = obs.shape[0]
        padded = np.concatenate([obs, np.zeros((n, 1), dtype=obs.dtype)], axis=1)
        local = padded[:, self.obs_index]  # (n, N, obs_len)
        ident = np.broadcast_to(np.eye(self.n_nodes, dtype=obs.dtype), (n, self.n_nodes, self.n_nodes))
        return np.concatenate([local, ident], axis=2).reshape(n * self.n_nodes, self.size)

    def network_action(self, actions: np.ndarray) -> np.ndarray:
        """Node actions ``(n * N, act_len)`` -> network actions ``(n, S)`` (padding dropped)."""
        a = np.asarray(actions, dtype=np.float64).reshape(-1, self.n_nodes, self.act_len)
        out = np.zeros((a.shape[0], self.n_slots))
        used = self.act_slots >= 0
        out[:, self.act_slots[used]] = a[:, used]
        return out


class DecentralisedVecEnv(VecEnv):
    """``n_envs`` copies of a scenario as ``n_envs * N`` node-agents sharing one policy."""

    def __init__(
        self,
        scenario: str | Path | Scenario,
        n_envs: int = 8,
        seed: int | None = None,
        action_mode: str | None = None,
        horizon: int | None = None,
        observe_time: bool = True,
        initial_stock_spread: float = 0.0,
        threads: Threads = None,
        episode_start: str = "initial",
        continue_share: float = 1.0,
        pipeline_length: int | None = None,
        residual: ResidualBase | None = None,
        observe_echelon: bool = False,
    ) -> None:
        self.inner = MultiEchelonVecEnv(
            scenario,
            n_envs=n_envs,
            seed=seed,
            action_mode=action_mode,
            horizon=horizon,
            observe_time=observe_time,
            initial_stock_spread=initial_stock_spread,
            threads=threads,
            episode_start=episode_start,
            continue_share=continue_share,
            pipeline_length=pipeline_length,
            residual=residual,
            observe_echelon=observe_echelon,
        )
        self.view = NodeView(self.inner.topology, self.inner.observation_map)
        self.topology = self.inner.topology
        self.render_mode = None
        n_nodes = self.view.n_nodes
        obs_space = spaces.Box(-OBS_BOUND, OBS_BOUND, (self.view.size,), np.float32)
        act_space = spaces.Box(-1.0, 1.0, (self.view.act_len,), np.float32)
        super().__init__(self.inner.num_envs * n_nodes, obs_space, act_space)
        self._actions: np.ndarray | None = None

    @property
    def n_copies(self) -> int:
        return self.inner.num_envs

    def reset(self) -> np.ndarray:
        if any(s is not None for s in self._seeds):
            self.inner.seed(self._seeds[0])
        self._reset_seeds()
        self._reset_options()
        return self.view.local_obs(self.inner.reset())

    def step_async(self, actions: np.ndarray) -> None:
        self._actions = np.asarray(actions)

    def step_wait(self):
        if self._actions is None:
            raise RuntimeError("step_wait() without step_async(actions)")
        self.inner.step_async(self.view.network_action(self._actions))
        self._actions = None
        obs, rewards, dones, infos = self.inner.step_wait()
        n = self.view.n_nodes
        node_infos: list[dict[str, Any]] = []
        for info in infos:
            local_terminal = (
                self.view.local_obs(info["terminal_observation"][None]) if "terminal_observation" in info else None
            )
            for j in range(n):
                node_info = {k: v for k, v in info.items() if k != "terminal_observation"}
                if local_terminal is not None:
                    node_info["terminal_observation"] = local_terminal[j]
                node_infos.append(node_info)
        return self.view.local_obs(obs), np.repeat(rewards, n), np.repeat(dones, n), node_infos

    def close(self) -> None:
        self.inner.close()

    def get_attr(self, attr_name: str, indices: VecEnvIndices = None) -> list[Any]:
        return [getattr(self, attr_name) for _ in self._get_indices(indices)]

    def set_attr(self, attr_name: str, value: Any, indices: VecEnvIndices = None) -> None:
        setattr(self, attr_name, value)

    def env_method(self, method_name: str, *method_args, indices: VecEnvIndices = None, **method_kwargs) -> list[Any]:
        return [getattr(self, method_name)(*method_args, **method_kwargs) for _ in self._get_indices(indices)]

    def env_is_wrapped(self, wrapper_class: type[gym.Wrapper], indices: VecEnvIndices = None) -> list[bool]:
        return [False for _ in self._get_indices(indices)]
