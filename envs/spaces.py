"""Observations and actions of the environments, shared by the single and the vector env.

Observation (float32, one row per copy), every quantity divided by a scale so that it is of order
one under a sensible policy; ``labels`` names each feature:

=========================  ======================================================  ===============
feature                    per                                                     scale
=========================  ======================================================  ===============
``on_hand``                node                                                    ``mu_j (1+L_j)``
``backorders``             demand node (backorder scenarios only)                  ``mu_j (1+L_j)``
``owed``                   slot: what the supplier still owes (all ages)           ``mu_j b``
``pipeline[k]``            slot, ``k = 1..max lead time``: arriving in k periods   ``mu_j b``
``components``             component lane of an assembly node                      ``mu_j b``
``position``               node: installation inventory position                   ``mu_j (1+L_j)``
``last_demand``            demand node: last period's demand                       ``mu_j``
``outage``                 disrupted external lane: 1 while the supplier is out    1
``periods_left``           (horizon - t mod horizon) / horizon                     1
=========================  ======================================================  ===============

``periods_left`` restarts every ``horizon`` periods: at an episode's truncation (``t = horizon``)
it reads 1, as the continuing state would in the next episode, and a policy run for longer than
an episode (a long-run evaluation) sees the values it was trained on, never values below ``1 /
horizon``. With ``observe_time=False`` the feature is left out: a policy for the infinite-horizon
problem, whose truncated episodes are bootstrapped (SB3 does so), has no use for the clock, and
without it the same state always gets the same order. ``mu_j`` is the mean demand per period
passing through node ``j``, ``L_j`` the longest mean lead time into it, ``b`` the lane's bill-of-materials ratio.

Actions are in ``[-1, 1]``, one per slot (lane and mode, in scenario order), mapped affinely to
``[0, max]``: order quantities (``order_quantity``; ``max`` is the mode's ``max_order``, by
default ``min(capacity, 3 mu_j b)``) or order-up-to targets for the slot's inventory position
(``order_up_to``; ``max`` is ``max_level``, by default
``2 b (mu_j (1 + L) + 4 sigma_j sqrt(1 + L))`` with ``L`` the slot's mean lead time).
"""

from __future__ import annotations

import math

import numba as nb
import numpy as np

from meio.envs.dynamics import O_DEMAND, serial_twin
from meio.envs.simulator import Simulator
from meio.envs.topology import Topology

ACTION_MODES = ("order_quantity", "order_up_to")
#: Observations are clipped to ``[-OBS_BOUND, OBS_BOUND]`` (in scaled units: a thousand times a
#: node's typical stock), so the observation space is bounded as Gymnasium's checker asks.
OBS_BOUND = 1000.0


class ObservationMap:
    """Builds observation rows from a :class:`Simulator`'s state."""

    def __init__(self, topo: Topology, horizon: int | None = None, observe_time: bool = True) -> None:
        """``horizon``: the episode length ``periods_left`` counts down (default: the scenario's);
        ``observe_time``: include ``periods_left`` (the last feature)."""
        n = topo.n_nodes
        mu = np.maximum(topo.throughput, 1e-9)
        self.node_scale = mu * (1.0 + topo.lead_in())
        self.slot_scale = mu[topo.slot_dst] * topo.lane_bom[topo.slot_lane]
        self.lane_scale = mu[topo.lane_dst] * topo.lane_bom
        self.component_lanes = np.flatnonzero(topo.lane_is_component).astype(np.int64)
        self.pipe_len = topo.slot_lt_max.astype(np.int64)
        names = topo.node_names
        every = frozenset(range(n))
        # (label, nodes that see the feature locally): used by the decentralised view.
        feats: list[tuple[str, frozenset[int]]] = [(f"on_hand[{x}]", frozenset({j})) for j, x in enumerate(names)]
        if topo.backorders:
            feats += [(f"backorders[{names[j]}]", frozenset({int(j)})) for j in topo.demand_nodes]
        feats += [
            (
                f"owed[{x}]",
                frozenset({int(topo.slot_dst[q])} | ({int(topo.slot_src[q])} if topo.slot_src[q] >= 0 else set())),
            )
            for q, x in enumerate(topo.slot_names)
        ]
        feats += [
            (f"pipeline[{x}][{k}]", frozenset({int(topo.slot_dst[q])}))
            for q, x in enumerate(topo.slot_names)
            for k in range(1, topo.slot_lt_max[q] + 1)
        ]
        lane_names = [
            f"{names[topo.lane_src[m]] if topo.lane_src[m] >= 0 else 'external'}->{names[topo.lane_dst[m]]}"
            for m in range(topo.n_lanes)
        ]
        feats += [(f"components[{lane_names[m]}]", frozenset({int(topo.lane_dst[m])})) for m in self.component_lanes]
        feats += [(f"position[{x}]", frozenset({j})) for j, x in enumerate(names)]
        feats += [(f"last_demand[{names[j]}]", frozenset({int(j)})) for j in topo.demand_nodes]
        feats += [
            (f"outage[{lane_names[topo.slot_lane[q]]}]", frozenset({int(topo.slot_dst[q])}))
            for q in _first_slot_per_disruption(topo)
        ]
        if observe_time:
            feats.append(("periods_left", every))
        self.observe_time = bool(observe_time)
        labels = [label for label, _ in feats]
        self.owners: tuple[frozenset[int], ...] = tuple(o for _, o in feats)
        self.labels: tuple[str, ...] = tuple(labels)
        self.size = len(labels)
        self.horizon = int(horizon or topo.horizon)
        self.backorders = topo.backorders
        self.demand_nodes = topo.demand_nodes
        self.demand_scale = mu[topo.demand_nodes]

    def __call__(self, sim: Simulator, out: np.ndarray) -> np.ndarray:
        """Write the observation of every row of ``sim`` into ``out`` (``(n, size)`` float32)."""
        node_ip, _ = sim.positions()
        (_observe if sim.parallel else _observe_serial)(
            sim.on_hand,
            sim.cust_bo,
            sim.owed,
            sim.owed_depth,
            sim.pipe,
            sim.raw,
            node_ip,
            sim.last_node_out,
            sim.down,
            sim.t,
            self.node_scale,
            self.slot_scale,
            self.lane_scale,
            self.component_lanes,
            self.pipe_len,
            self.demand_nodes,
            self.demand_scale,
            self.backorders,
            self.horizon,
            self.observe_time,
            out,
        )
        np.clip(out, -OBS_BOUND, OBS_BOUND, out=out)
        return out

    def space(self):
        """The observation space: ``Box(-OBS_BOUND, OBS_BOUND, (size,), float32)``."""
        from gymnasium import spaces

        return spaces.Box(-OBS_BOUND, OBS_BOUND, (self.size,), np.float32)


def _first_slot_per_disruption(topo: Topology) -> list[int]:
    first: dict[int, int] = {}
    for q in range(topo.n_slots):
        x = topo.slot_disruption[q]
        if x >= 0 and x not in first:
            first[x] = q
    return [first[x] for x in sorted(first)]


@nb.njit(cache=True, parallel=True)
def _observe(
    on_hand,
    cust_bo,
    owed,
    depth,
    pipe,
    raw,
    node_ip,
    node_out,
    down,
    t,
    node_scale,
    slot_scale,
    lane_scale,
    component_lanes,
    pipe_len,
    demand_nodes,
    demand_scale,
    backorders,
    horizon,
    observe_time,
    out,
):
    n_batch, n_nodes = on_hand.shape
    n_slots = owed.shape[1]
    for b in nb.prange(n_batch):
        f = 0
        for j in range(n_nodes):
            out[b, f] = on_hand[b, j] / node_scale[j]
            f += 1
        if backorders:
            for d in range(demand_nodes.shape[0]):
                j = demand_nodes[d]
                out[b, f] = cust_bo[b, j] / node_scale[j]
                f += 1
        for s in range(n_slots):
            q = 0.0
            for a in range(depth[b, s]):
                q += owed[b, s, a]
            out[b, f] = q / slot_scale[s]
            f += 1
        for s in range(n_slots):
            for k in range(pipe_len[s]):
                out[b, f] = pipe[b, s, k] / slot_scale[s]
                f += 1
        for m in component_lanes:
            out[b, f] = raw[b, m] / lane_scale[m]
            f += 1
        for j in range(n_nodes):
            out[b, f] = node_ip[b, j] / node_scale[j]
            f += 1
        for d in range(demand_nodes.shape[0]):
            out[b, f] = node_out[b, d, O_DEMAND] / demand_scale[d]
            f += 1
        for x in range(down.shape[1]):
            out[b, f] = 1.0 if down[b, x] else 0.0
            f += 1
        if observe_time:
            out[b, f] = (horizon - t[b] % horizon) / horizon


class ActionMap:
    """Maps actions in ``[-1, 1]`` to orders in units, per slot."""

    def __init__(self, topo: Topology, mode: str) -> None:
        if mode not in ACTION_MODES:
            raise ValueError(f"action_mode: {mode!r} is not one of {', '.join(ACTION_MODES)}")
        self.mode = mode
        self.slot_names = topo.slot_names
        scenario = topo.scenario
        s = topo.n_slots
        mu = topo.throughput
        sd = topo.throughput_sd
        self.high = np.zeros(s)
        for q in range(s):
            m = scenario.lanes[topo.slot_lane[q]].modes[topo.slot_mode[q]]
            bom = topo.lane_bom[topo.slot_lane[q]]
            j = topo.slot_dst[q]
            if mode == "order_quantity":
                default = min(m.capacity, 3.0 * mu[j] * bom)
                self.high[q] = m.max_order if m.max_order is not None else default
            else:
                cover = 1.0 + topo.slot_lt_mean[q]
                default = 2.0 * bom * (mu[j] * cover + 4.0 * sd[j] * math.sqrt(cover))
                self.high[q] = m.max_level if m.max_level is not None else default
        self.high = np.maximum(self.high, 1e-6)

    def to_orders(self, sim: Simulator, action: np.ndarray) -> np.ndarray:
        """Orders ``(n, S)`` for actions ``(n, S)``, or ``(S,)`` with one row (clipped to ``[-1, 1]`` first).

        This is where every environment's actions come in, so the rule on them is checked here, the
        same in both modes: each entry must be a finite number. Out of ``[-1, 1]`` is clipped, but
        NaN or an infinity is refused, naming the entry as the caller indexed it and its slot: the
        affine map of ``order_quantity`` would make it a NaN order, and in ``order_up_to`` the
        kernel's ``max(0, target - position)`` would quietly turn a NaN target into no order.
        """
        a = np.asarray(action, dtype=np.float64)
        s = len(self.high)
        if a.shape != (sim.n, s) and not (sim.n == 1 and a.shape == (s,)):
            alt = f" or ({s},)" if sim.n == 1 else ""
            raise ValueError(
                f"action: shape {a.shape}; expected ({sim.n}, {s}){alt}, one entry per slot "
                f"({', '.join(self.slot_names)})"
            )
        finite = np.isfinite(a)
        if not finite.all():
            bad = tuple(int(i) for i in np.argwhere(~finite)[0])
            raise ValueError(
                f"action[{', '.join(map(str, bad))}] (slot {self.slot_names[bad[-1]]}): {a[bad]} is "
                "not a finite number; actions are finite numbers (clipped to [-1, 1])"
            )
        value = (np.clip(a.reshape(sim.n, s), -1.0, 1.0) + 1.0) * (0.5 * self.high)
        if self.mode == "order_quantity":
            return value
        return sim.orders_up_to(value)

    def from_orders_up_to(self, targets: np.ndarray) -> np.ndarray:
        """The action that asks for order-up-to ``targets`` (inverse map, ``order_up_to`` mode)."""
        return np.clip(2.0 * np.asarray(targets) / self.high - 1.0, -1.0, 1.0)


_observe_serial = serial_twin(_observe, "_observe_serial")
