"""``meio/MultiEchelon-v0``: one copy of a multi-echelon inventory network as a Gymnasium env."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from meio.envs.dynamics import COST_NAMES, OUT_NAMES
from meio.envs.resolve import ScenarioLike, resolve
from meio.envs.simulator import Simulator, StepResult
from meio.envs.spaces import ActionMap, ObservationMap, ResidualBase
from meio.envs.topology import Topology


def check_spread(value: Any) -> float:
    """``initial_stock_spread`` must be a number >= 0."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) or not value >= 0:
        raise ValueError(f"initial_stock_spread: {value!r} is not a number >= 0")
    return float(value)


#: How a training episode starts after a truncation (``episode_start``): ``initial`` resets the row to
#: the scenario's starting state; ``continue`` keeps its inventory state and random streams, and only
#: the episode's clock and totals restart, so episodes start from the states a long run of the current
#: policy visits (the first episode of a row starts from the scenario's state).
EPISODE_STARTS = ("initial", "continue")


def check_episode_start(value: Any, share: Any = 1.0) -> tuple[str, float]:
    """``episode_start`` must be one of :data:`EPISODE_STARTS`; ``continue_share`` a number in (0, 1],
    other than 1 only with ``continue``. Returns both, checked."""
    if value not in EPISODE_STARTS:
        raise ValueError(f"episode_start: {value!r} is not one of {', '.join(EPISODE_STARTS)}")
    if isinstance(share, bool) or not isinstance(share, (int, float, np.integer, np.floating)) or not 0 < share <= 1:
        raise ValueError(f"continue_share: {share!r} is not a number in (0, 1]")
    if value == "initial" and share != 1:
        raise ValueError(f"continue_share: {share!r} needs episode_start: continue (initial restarts every row)")
    return str(value), float(share)


def resolve_topology(scenario: ScenarioLike, horizon: int | None) -> Topology:
    """The compiled network of ``scenario`` (:func:`meio.envs.resolve.resolve`), with a horizon override
    (``horizon`` must be an int >= 1). Only a horizon other than the scenario's compiles a new
    topology: the horizon is part of the scenario and of its topology."""
    topo = resolve(scenario)
    if horizon is not None:
        if isinstance(horizon, bool) or not isinstance(horizon, (int, np.integer)) or horizon < 1:
            raise ValueError(f"horizon: {horizon!r} is not an integer >= 1")
        if int(horizon) != topo.scenario.horizon:
            topo = resolve(replace(topo.scenario, horizon=int(horizon)))
    return topo


def step_info(result: StepResult, row: int) -> dict[str, Any]:
    """The ``info`` of one period for one row: cost split and service counts."""
    costs = result.costs[row]
    out = result.node_out[row]
    return {
        "cost": float(costs.sum()),
        "cost_split": dict(zip(COST_NAMES, costs.tolist())),
        **{name: out[:, col].copy() for col, name in enumerate(OUT_NAMES)},
        "orders": result.orders[row].copy(),
    }


class MultiEchelonEnv(gym.Env[np.ndarray, np.ndarray]):
    """A multi-echelon inventory network (any DAG of stock points) under periodic review.

    The network, demand, lead times and costs come from a scenario (a shipped name such as
    ``"ex61"``, a YAML path, a :class:`~meio.envs.scenario.Scenario` or its compiled
    :class:`~meio.envs.topology.Topology`, used without compiling again); the period's events follow
    ``docs/model.md``.

    ## Action
    ``Box(-1, 1, (S,), float32)``, one entry per slot (lane and transport mode, in scenario
    order; names in ``slot_names``). ``action_mode="order_quantity"`` maps an entry affinely to an
    order quantity in ``[0, max_order]``; ``"order_up_to"`` maps it to a target inventory position
    in ``[0, max_level]`` and orders the shortfall (a base-stock rule when the targets are fixed);
    ``"echelon_order_up_to"`` does the same for the echelon position of the slot's destination;
    ``"base_stock_residual"`` moves the targets of a given base-stock policy by at most ``r`` periods
    of mean demand. Out-of-range actions are clipped; NaN or infinite entries are refused
    (``ValueError`` naming the entry and its slot) in every mode. See :mod:`meio.envs.spaces`.

    ## Observation
    ``Box(-1000, 1000, (F,), float32)``: on-hand stock, customer backorders, what suppliers still owe,
    the pipeline by arrival period, component stock, inventory positions, last demand, supplier
    outages and the fraction of the episode left, each scaled to order one. Names in
    ``observation_labels``.

    ## Reward
    Minus the period's total cost: holding, backorder or lost-sales penalty, fixed ordering,
    per-unit transport and pipeline holding. ``info`` holds the split (``cost_split``) and the
    demand, filled and short units per demand node (order of ``demand_node_names``).

    ## Starting state
    The scenario's initial inventory at every node, nothing in transit or owed.

    ## Episode end
    Never terminates; truncated after ``horizon`` periods (the scenario's, or the ``horizon``
    argument). ``reset(options={"episode_start": "continue"})`` after a truncation starts the next
    episode from the state the last one ended in (stock, pipeline, backorders and random streams
    kept; the clock of the episode restarts, and ``periods_left``, read modulo the horizon, reads 1
    again): the run then goes on as one long run would, period for period. The first reset, and
    ``reset(seed=...)``, always start from the scenario's state.

    ## Arguments
    ``scenario``, ``action_mode`` (default: the scenario's), ``horizon`` (default: the
    scenario's), ``render_mode`` (``"ansi"`` or ``None``), ``observe_time`` (default ``True``: the
    last feature is ``periods_left``; ``False`` leaves it out), ``initial_stock_spread`` (default 0:
    the scenario's initial stock; ``f > 0``: exploring starts, every episode starts with on-hand
    stock drawn uniformly on ``[0, f mu_j (1 + L_j)]`` at each node, the observation's scale),
    ``residual`` (the base-stock levels of ``action_mode="base_stock_residual"``,
    :class:`meio.envs.spaces.ResidualBase`), ``observe_echelon`` (default ``False``; ``True`` adds
    each node's echelon inventory position, where every node has one supplier).

    ## Version history
    * v0: initial version; ``reset`` option ``episode_start``.
    """

    metadata = {"render_modes": ["ansi"], "render_fps": 4}

    def __init__(
        self,
        scenario: ScenarioLike = "ex61",
        action_mode: str | None = None,
        horizon: int | None = None,
        render_mode: str | None = None,
        observe_time: bool = True,
        initial_stock_spread: float = 0.0,
        residual: ResidualBase | None = None,
        observe_echelon: bool = False,
    ) -> None:
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode: {render_mode!r} is not one of {self.metadata['render_modes']} or None")
        topo = resolve_topology(scenario, horizon)
        self.topology = topo
        self.scenario = topo.scenario
        self.sim = Simulator(topo, n=1)
        self.action_mode = action_mode or self.scenario.action_mode
        self.action_map = ActionMap(topo, self.action_mode, residual)
        self.observation_map = ObservationMap(topo, observe_time=observe_time, observe_echelon=observe_echelon)
        self.initial_stock_spread = check_spread(initial_stock_spread)
        self.observation_space = self.observation_map.space()
        self.action_space = spaces.Box(-1.0, 1.0, (topo.n_slots,), np.float32)
        self.render_mode = render_mode
        self.slot_names = topo.slot_names
        self.observation_labels = self.observation_map.labels
        self.demand_node_names = tuple(topo.node_names[j] for j in topo.demand_nodes)
        self._obs = np.zeros((1, self.observation_map.size), dtype=np.float32)
        self._last: StepResult | None = None
        # Period of the simulator's clock at which the current episode began (episode_start continue).
        self._episode_t0 = 0
        self._started = False

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        start, _ = check_episode_start((options or {}).get("episode_start", "initial"))
        if start == "continue" and seed is None and self._started:
            # The simulator's clock runs on (seasonality and traces follow the long run's calendar):
            # only the episode's own clock restarts.
            self._episode_t0 = int(self.sim.t[0])
            self._last = None
            return self.observation_map(self.sim, self._obs)[0].copy(), {}
        super().reset(seed=seed)
        self._started = True
        self._episode_t0 = 0
        self.sim.rngs[0] = self.np_random
        self.sim.reset()
        if self.initial_stock_spread:
            self.sim.spread_initial_stock([0], self.initial_stock_spread, self.observation_map.node_scale)
        self._last = None
        return self.observation_map(self.sim, self._obs)[0].copy(), {}

    def step(self, action: np.ndarray):
        if self.sim.t[0] - self._episode_t0 >= self.scenario.horizon:
            raise RuntimeError("step() called after the episode was truncated; call reset() first")
        orders = self.action_map.to_orders(self.sim, action)  # checks the action (meio.envs.spaces)
        result = self.sim.step(orders)
        self._last = result
        obs = self.observation_map(self.sim, self._obs)[0].copy()
        truncated = bool(self.sim.t[0] - self._episode_t0 >= self.scenario.horizon)
        return obs, -float(result.costs[0].sum()), False, truncated, step_info(result, 0)

    def render(self) -> str | None:
        if self.render_mode != "ansi":
            return None
        topo = self.topology
        lines = [f"period {int(self.sim.t[0]) - self._episode_t0}/{self.scenario.horizon}"]
        node_ip, _ = self.sim.positions()
        for j, name in enumerate(topo.node_names):
            lines.append(
                f"  {name:>12}: on hand {self.sim.on_hand[0, j]:10.2f}  backorders "
                f"{self.sim.cust_bo[0, j]:8.2f}  position {node_ip[0, j]:10.2f}"
            )
        if self._last is not None:
            split = ", ".join(f"{k} {v:.2f}" for k, v in zip(COST_NAMES, self._last.costs[0]))
            lines.append(f"  cost {self._last.costs[0].sum():.2f} ({split})")
        return "\n".join(lines)
