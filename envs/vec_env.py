"""A batched stable-baselines3 ``VecEnv``: ``n_envs`` copies stepped by one call of the step function.

Row ``i`` behaves exactly like :class:`meio.envs.multi_echelon.MultiEchelonEnv` reset with seed
``seed + i`` (SB3's seeding convention): same observations, rewards and episode ends. With
``crn_group`` ``k > 1`` the rows form groups of ``k`` that share their seed, ``seed + i // k``: the
members of a group see the same demand, lead times and outages (common random numbers), whatever
their actions.

Following SB3, an episode that reaches the horizon is reset in the same ``step_wait``: the returned
observation is the new episode's first, ``info["terminal_observation"]`` holds the last one and
``info["TimeLimit.truncated"]`` is ``True`` (a horizon is a truncation, never a termination, so
SB3 bootstraps from the terminal observation). The episode's totals are in ``info["episode"]``
(``r``, ``l``, ``t`` as SB3's ``Monitor`` writes them) and ``info["episode_cost_split"]``.

``episode_start`` (:data:`meio.envs.multi_echelon.EPISODE_STARTS`) says what the new episode starts
from: ``initial``, the scenario's starting state; ``continue``, the state the row ended in (its
stock, pipeline, backorders, random streams and the simulator's clock run on; only the episode's
clock and totals restart, and ``periods_left``, read modulo the horizon, reads 1), so that the
episodes start from the states a long run of the current policy visits, and a row's periods are,
one for one, those of a single untruncated run. With ``continue_share`` ``f < 1`` only the first
``ceil(f n_envs)`` rows continue, the others restart (a mixed form). ``reset()`` always starts every
row from the scenario's state.

Per-period infos for every row cost more than the step itself at large batches, so by default
``infos`` only carry the episode-end entries and the period's arrays are attributes:
``last_costs`` ``(n, len(COST_NAMES))``, ``last_node_out`` ``(n, D, len(OUT_NAMES))`` (columns
``meio.envs.dynamics.C_*`` and ``O_*``), ``last_orders`` ``(n, S)``. Pass
``step_infos=True`` for the single env's per-period ``info`` in every row.

``threads`` (default: ``meio --threads``, else ``MEIO_THREADS``, else 1) is the number of threads
of the step (see :mod:`meio.envs.threads`); more than one only pays on an idle machine, and only for
batches of at least ``meio.envs.dynamics.PARALLEL_ROWS`` rows.
"""

from __future__ import annotations

import math
import time
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from stable_baselines3.common.vec_env.base_vec_env import VecEnv, VecEnvIndices

from meio.envs.multi_echelon import check_episode_start, check_spread, resolve_topology, step_info
from meio.envs.resolve import ScenarioLike
from meio.envs.simulator import Simulator
from meio.envs.spaces import ActionMap, ObservationMap, ResidualBase
from meio.envs.threads import Threads
from meio.envs.topology import COST_NAMES


class MultiEchelonVecEnv(VecEnv):
    """``n_envs`` copies of a scenario in one :class:`~meio.envs.simulator.Simulator`."""

    def __init__(
        self,
        scenario: ScenarioLike,
        n_envs: int = 8,
        seed: int | None = None,
        action_mode: str | None = None,
        horizon: int | None = None,
        step_infos: bool = False,
        observe_time: bool = True,
        initial_stock_spread: float = 0.0,
        threads: Threads = None,
        episode_start: str = "initial",
        continue_share: float = 1.0,
        pipeline_length: int | None = None,
        residual: ResidualBase | None = None,
        observe_echelon: bool = False,
        crn_group: int = 1,
    ) -> None:
        if isinstance(n_envs, bool) or not isinstance(n_envs, (int, np.integer)) or n_envs < 1:
            raise ValueError(f"n_envs: {n_envs!r} is not an integer >= 1")
        if isinstance(crn_group, bool) or not isinstance(crn_group, (int, np.integer)) or crn_group < 1:
            raise ValueError(f"crn_group: {crn_group!r} is not an integer >= 1")
        if n_envs % crn_group:
            raise ValueError(f"crn_group: {crn_group} does not divide n_envs {n_envs}")
        # Copies i and j share their random numbers where i // crn_group == j // crn_group.
        self.crn_group = int(crn_group)
        topo = resolve_topology(scenario, horizon)
        self.topology = topo
        self.scenario = topo.scenario
        self.sim = Simulator(topo, n=int(n_envs), threads=threads)
        self.action_mode = action_mode or self.scenario.action_mode
        self.action_map = ActionMap(topo, self.action_mode, residual)
        self.observation_map = ObservationMap(
            topo, observe_time=observe_time, pipeline_length=pipeline_length, observe_echelon=observe_echelon
        )
        self.initial_stock_spread = check_spread(initial_stock_spread)
        self.episode_start, self.continue_share = check_episode_start(episode_start, continue_share)
        # Rows whose episodes continue from the state they ended in (the rest restart).
        self._continues = np.zeros(int(n_envs), dtype=bool)
        if self.episode_start == "continue":
            going_on = math.ceil(self.continue_share * int(n_envs))
            if going_on % self.crn_group:
                raise ValueError(
                    f"crn_group: {self.crn_group} needs the members of a group to start their episodes alike: "
                    f"continue_share {self.continue_share!r} lets {going_on} copies continue, not a multiple of "
                    f"{self.crn_group}"
                )
            self._continues[:going_on] = True
        self._ep_t0 = np.zeros(int(n_envs), dtype=np.int64)
        self.render_mode = None
        self.step_infos = step_infos
        self.slot_names = topo.slot_names
        self.observation_labels = self.observation_map.labels
        self.demand_node_names = tuple(topo.node_names[j] for j in topo.demand_nodes)
        observation_space = self.observation_map.space()
        action_space = spaces.Box(-1.0, 1.0, (topo.n_slots,), np.float32)
        super().__init__(int(n_envs), observation_space, action_space)
        self._obs = np.zeros((self.num_envs, self.observation_map.size), dtype=np.float32)
        self._actions: np.ndarray | None = None
        self._ep_return = np.zeros(self.num_envs)
        self._ep_costs = np.zeros((self.num_envs, len(COST_NAMES)))
        self._ep_start = np.full(self.num_envs, time.perf_counter())
        self.last_costs = self.sim.last_costs
        self.last_node_out = self.sim.last_node_out
        self.last_orders = self.sim.last_orders
        if seed is not None:
            self.seed(seed)

    # ---- VecEnv API ---------------------------------------------------------------------------
    def seed(self, seed: int | None = None) -> list[int | None]:
        """Seeds for the next reset: copy ``i`` gets ``seed + i // crn_group`` (SB3's ``seed + i``
        with groups of one), so the copies of a group draw the same demand, lead times and outages."""
        seeds = super().seed(seed)
        self._seeds = [seeds[0] + i // self.crn_group for i in range(self.num_envs)]
        return self._seeds

    def reset(self) -> np.ndarray:
        seeds = self._seeds if any(s is not None for s in self._seeds) else None
        self._start_episodes(np.arange(self.num_envs), seeds)
        self._reset_seeds()
        self._reset_options()
        self._ep_return[:] = 0.0
        self._ep_costs[:] = 0.0
        self._ep_start[:] = time.perf_counter()
        return self.observation_map(self.sim, self._obs).copy()

    def _start_episodes(self, rows: np.ndarray, seeds: Any = None) -> None:
        """Reset ``rows`` to the scenario's initial state (with exploring starts if asked)."""
        self._ep_t0[rows] = 0
        self.sim.reset(seeds=seeds, rows=rows)
        if self.initial_stock_spread:
            self.sim.spread_initial_stock(rows, self.initial_stock_spread, self.observation_map.node_scale)

    def step_async(self, actions: np.ndarray) -> None:
        self._actions = np.asarray(actions, dtype=np.float64).reshape(self.num_envs, -1)

    def step_wait(self):
        if self._actions is None:
            raise RuntimeError("step_wait() without step_async(actions)")
        orders = self.action_map.to_orders(self.sim, self._actions)
        self._actions = None
        result = self.sim.step(orders)
        rewards = -result.costs.sum(axis=1)
        self._ep_return += rewards
        self._ep_costs += result.costs
        dones = self.sim.t - self._ep_t0 >= self.scenario.horizon
        infos: list[dict[str, Any]] = (
            [step_info(result, i) for i in range(self.num_envs)]
            if self.step_infos
            else [{} for _ in range(self.num_envs)]
        )
        obs = self.observation_map(self.sim, self._obs)
        if dones.any():
            done_rows = np.flatnonzero(dones)
            now = time.perf_counter()
            returns = self._ep_return[done_rows].tolist()
            lengths = (self.sim.t[done_rows] - self._ep_t0[done_rows]).tolist()
            elapsed = np.round(now - self._ep_start[done_rows], 6).tolist()
            splits = self._ep_costs[done_rows].tolist()
            for k, i in enumerate(done_rows):
                info = infos[i]
                info["terminal_observation"] = obs[i].copy()
                info["TimeLimit.truncated"] = True
                info["episode"] = {"r": returns[k], "l": lengths[k], "t": elapsed[k]}
                info["episode_cost_split"] = dict(zip(COST_NAMES, splits[k]))
            going_on = self._continues[done_rows]
            self._ep_t0[done_rows[going_on]] = self.sim.t[done_rows[going_on]]
            if not going_on.all():
                self._start_episodes(done_rows[~going_on])
            self._ep_return[done_rows] = 0.0
            self._ep_costs[done_rows] = 0.0
            self._ep_start[done_rows] = now
            obs = self.observation_map(self.sim, self._obs)
        return obs.copy(), rewards.astype(np.float32), dones.copy(), infos

    def close(self) -> None:
        return None

    def _indices(self, indices: VecEnvIndices) -> list[int]:
        return list(self._get_indices(indices))

    def get_attr(self, attr_name: str, indices: VecEnvIndices = None) -> list[Any]:
        value = getattr(self, attr_name)
        return [value for _ in self._indices(indices)]

    def set_attr(self, attr_name: str, value: Any, indices: VecEnvIndices = None) -> None:
        setattr(self, attr_name, value)

    def env_method(self, method_name: str, *method_args, indices: VecEnvIndices = None, **method_kwargs) -> list[Any]:
        method = getattr(self, method_name)
        return [method(*method_args, **method_kwargs) for _ in self._indices(indices)]

    def env_is_wrapped(self, wrapper_class: type[gym.Wrapper], indices: VecEnvIndices = None) -> list[bool]:
        return [False for _ in self._indices(indices)]


def make_vec_env(scenario: ScenarioLike, n_envs: int = 8, seed: int | None = None, **kwargs: Any) -> MultiEchelonVecEnv:
    """The batched SB3 ``VecEnv`` of a scenario; row ``i`` is seeded ``seed + i`` at its first reset."""
    return MultiEchelonVecEnv(scenario, n_envs=n_envs, seed=seed, **kwargs)
