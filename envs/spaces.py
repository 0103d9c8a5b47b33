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
``echelon_position``       node (``observe_echelon`` only): echelon position       ``mu_j (1+L^e_j)``
``last_demand``            demand node: last period's demand                       ``mu_j``
``outage``                 disrupted external lane: 1 while the supplier is out    1
``periods_left``           (horizon - t mod horizon) / horizon                     1
=========================  ======================================================  ===============

With ``pipeline_length = P`` every slot has exactly ``P`` ``pipeline[k]`` features (``k = 1..P``,
zeros past the slot's longest lead time): a layout whose size does not depend on the lead times.

``periods_left`` restarts every ``horizon`` periods: at an episode's truncation (``t = horizon``)
it reads 1, as the continuing state would in the next episode, and a policy run for longer than
an episode (a long-run evaluation) sees the values it was trained on, never values below ``1 /
horizon``. With ``observe_time=False`` the feature is left out: a policy for the infinite-horizon
problem, whose truncated episodes are bootstrapped (SB3 does so), has no use for the clock, and
without it the same state always gets the same order. ``mu_j`` is the mean demand per period
passing through node ``j``, ``L_j`` the longest mean lead time into it, ``b`` the lane's bill-of-materials ratio.

``observe_echelon=True`` adds each node's echelon inventory position (the node and everything
downstream of it, :meth:`Simulator.echelon_positions`, docs/model.md), scaled by ``mu_j (1 + L^e_j)``
with ``L^e_j`` the longest chain of mean lead times from the node's supplier down to a customer:
the quantity an ``echelon_order_up_to`` target is compared with, which the other features give
only as a sum of many. It is defined where every node has one supplier; elsewhere it is refused.

Actions are in ``[-1, 1]``, one per slot (lane and mode, in scenario order), mapped affinely to
``[0, max]``: order quantities (``order_quantity``; ``max`` is the mode's ``max_order``, by
default ``min(capacity, 3 mu_j b)``), order-up-to targets for the slot's installation inventory
position (``order_up_to``; ``max`` is ``max_level``, by default
``2 b (mu_j (1 + L) + 4 sigma_j sqrt(1 + L))`` with ``L`` the slot's mean lead time), or order-up-to
targets for the echelon inventory position of the slot's destination (``echelon_order_up_to``: the
node and everything downstream of it, docs/model.md; order ``max(0, target - echelon position)``;
the same default ``max`` with ``L`` the echelon's lead time, the slot's plus the longest chain of
lead times below the node; networks where every node has one supplier). ``base_stock_residual``
is a bounded residual on a base-stock policy (:class:`ResidualBase`, levels ``S_j`` of the kind
the policy uses, installation or echelon): a slot the policy orders on orders up to
``S_j b + a r mu_j b``, any other slot orders ``max(0, a) r mu_j b``, so the zero action is the
base-stock policy and no action moves a target by more than ``r`` periods of mean demand.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numba as nb
import numpy as np

from meio.envs.dynamics import O_DEMAND, serial_twin
from meio.envs.policies import _UNUSED, BaseStockPolicy, primary_slots
from meio.envs.simulator import Simulator
from meio.envs.topology import Topology

ACTION_MODES = ("order_quantity", "order_up_to", "echelon_order_up_to", "base_stock_residual")
#: Observations are clipped to ``[-OBS_BOUND, OBS_BOUND]`` (in scaled units: a thousand times a
#: node's typical stock), so the observation space is bounded as Gymnasium's checker asks.
OBS_BOUND = 1000.0


class ObservationMap:
    """Builds observation rows from a :class:`Simulator`'s state."""

    def __init__(
        self,
        topo: Topology,
        horizon: int | None = None,
        observe_time: bool = True,
        pipeline_length: int | None = None,
        observe_echelon: bool = False,
    ) -> None:
        """``horizon``: the episode length ``periods_left`` counts down (default: the scenario's);
        ``observe_time``: include ``periods_left`` (the last feature); ``pipeline_length``: ``None``
        gives each slot one ``pipeline[k]`` feature per period of its longest lead time; an integer
        ``P`` gives every slot exactly ``P`` (zeros past its longest lead time), so the observation's
        size does not depend on the lead times and an agent trained at one lead time can act at
        another. A scenario with a lead time longer than ``P`` is refused. ``observe_echelon``: add
        each node's echelon position (networks where every node has one supplier)."""
        n = topo.n_nodes
        self.observe_echelon = check_observe_echelon(topo, observe_echelon)
        mu = np.maximum(topo.throughput, 1e-9)
        self.node_scale = mu * (1.0 + topo.lead_in())
        self.slot_scale = mu[topo.slot_dst] * topo.lane_bom[topo.slot_lane]
        self.lane_scale = mu[topo.lane_dst] * topo.lane_bom
        self.component_lanes = np.flatnonzero(topo.lane_is_component).astype(np.int64)
        self.pipe_len = topo.slot_lt_max.astype(np.int64)
        self.pipeline_length = check_pipeline_length(topo, pipeline_length)
        # features per slot: the slot's own pipeline, or the fixed length (padded with zeros)
        fixed = self.pipeline_length
        self.pipe_feats = self.pipe_len.copy() if fixed is None else np.full_like(self.pipe_len, fixed)
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
            for k in range(1, int(self.pipe_feats[q]) + 1)
        ]
        lane_names = [
            f"{names[topo.lane_src[m]] if topo.lane_src[m] >= 0 else 'external'}->{names[topo.lane_dst[m]]}"
            for m in range(topo.n_lanes)
        ]
        feats += [(f"components[{lane_names[m]}]", frozenset({int(topo.lane_dst[m])})) for m in self.component_lanes]
        feats += [(f"position[{x}]", frozenset({j})) for j, x in enumerate(names)]
        if self.observe_echelon:
            feats += [(f"echelon_position[{x}]", frozenset({j})) for j, x in enumerate(names)]
            lead = np.zeros(n)  # L^e_j: the longest echelon lead time of a slot into j
            np.maximum.at(lead, topo.slot_dst, echelon_lead_times(topo))
            self.echelon_scale = mu * (1.0 + lead)
        else:
            self.echelon_scale = np.ones(0)
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
        echelon = sim.echelon_positions() if self.observe_echelon else np.zeros((sim.n, 0))
        (_observe if sim.parallel else _observe_serial)(
            sim.on_hand,
            sim.cust_bo,
            sim.owed,
            sim.owed_depth,
            sim.pipe,
            sim.raw,
            node_ip,
            echelon,
            sim.last_node_out,
            sim.down,
            sim.t,
            self.node_scale,
            self.echelon_scale,
            self.slot_scale,
            self.lane_scale,
            self.component_lanes,
            self.pipe_len,
            self.pipe_feats,
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


def check_observe_echelon(topo: Topology, observe_echelon: bool) -> bool:
    """``observe_echelon`` if it is a bool that the network allows: echelon positions are defined
    where every node has one supplier."""
    if not isinstance(observe_echelon, (bool, np.bool_)):
        raise ValueError(f"observe_echelon: {observe_echelon!r} is not true or false")
    several = topo.node_with_several_suppliers() if observe_echelon else None
    if several is not None:
        raise ValueError(
            f"observe_echelon: echelon positions are defined when every node has one supplier; "
            f"{several!r} of {topo.scenario.name!r} has several (set observe_echelon: false)"
        )
    return bool(observe_echelon)


def check_pipeline_length(topo: Topology, pipeline_length: int | None) -> int | None:
    """``pipeline_length`` if it is ``None`` or an integer at least the scenario's longest lead time
    (``max_s`` of the slots' largest lead times ``L^max_s``), else a ``ValueError`` naming the field."""
    if pipeline_length is None:
        return None
    if isinstance(pipeline_length, bool) or not isinstance(pipeline_length, (int, np.integer)) or pipeline_length < 0:
        raise ValueError(f"pipeline_length: {pipeline_length!r} is not an integer >= 0 (or null)")
    longest = int(topo.slot_lt_max.max()) if topo.n_slots else 0
    if longest > pipeline_length:
        q = int(np.argmax(topo.slot_lt_max))
        raise ValueError(
            f"pipeline_length: {pipeline_length} is shorter than the longest lead time of scenario "
            f"{topo.scenario.name!r} ({longest} periods on {topo.slot_names[q]}); the fixed observation "
            f"layout must cover every lead time: train with pipeline_length >= {longest}"
        )
    return int(pipeline_length)


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
    echelon,
    node_out,
    down,
    t,
    node_scale,
    echelon_scale,
    slot_scale,
    lane_scale,
    component_lanes,
    pipe_len,
    pipe_feats,
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
            for k in range(pipe_feats[s]):
                out[b, f] = pipe[b, s, k] / slot_scale[s] if k < pipe_len[s] else 0.0
                f += 1
        for m in component_lanes:
            out[b, f] = raw[b, m] / lane_scale[m]
            f += 1
        for j in range(n_nodes):
            out[b, f] = node_ip[b, j] / node_scale[j]
            f += 1
        for j in range(echelon.shape[1]):
            out[b, f] = echelon[b, j] / echelon_scale[j]
            f += 1
        for d in range(demand_nodes.shape[0]):
            out[b, f] = node_out[b, d, O_DEMAND] / demand_scale[d]
            f += 1
        for x in range(down.shape[1]):
            out[b, f] = 1.0 if down[b, x] else 0.0
            f += 1
        if observe_time:
            out[b, f] = (horizon - t[b] % horizon) / horizon


@dataclass(frozen=True)
class ResidualBase:
    """The base-stock policy a ``base_stock_residual`` action is a bounded residual on.

    ``kind``: ``installation`` or ``echelon`` levels ``S_j`` per node (``levels``, by node name, as
    :class:`meio.envs.policies.BaseStockPolicy` takes them); ``residual_range``: ``r``, the largest
    change of a target, in units of the mean demand per period through the node (``r mu_j b``);
    ``name``: the baseline the levels come from (for messages and ``meta.json``).
    """

    kind: str
    levels: Mapping[str, float]
    residual_range: float = 2.0
    name: str = ""

    def to_dict(self) -> dict[str, Any]:
        """The JSON form saved in an agent's ``meta.json`` (:meth:`from_dict` reads it back)."""
        return {
            "kind": self.kind,
            "levels": {k: float(v) for k, v in self.levels.items()},
            "residual_range": float(self.residual_range),
            "name": self.name,
        }

    @classmethod
    def from_dict(cls, data: Any, field: str = "residual_base") -> ResidualBase:
        """Read :meth:`to_dict`'s form; a ``ValueError`` naming ``field`` if it is not one."""
        if not isinstance(data, Mapping) or not isinstance(data.get("levels"), Mapping):
            raise ValueError(f"{field}: {data!r} is not a saved residual base (kind, levels, residual_range)")
        try:
            return cls(
                kind=str(data["kind"]),
                levels={str(k): float(v) for k, v in data["levels"].items()},
                residual_range=float(data["residual_range"]),
                name=str(data.get("name", "")),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"{field}: {data!r} is not a saved residual base ({exc!r})") from None


def echelon_lead_times(topo: Topology) -> np.ndarray:
    """``(S,)`` mean lead time of each slot's echelon: ``E[L_q]`` plus the longest chain of mean lead
    times from the slot's destination down to a demand node (``0`` at a node that supplies nobody).

    It sets the default range of ``echelon_order_up_to`` targets, which cover the whole echelon's
    lead time as Clark-Scarf's echelon levels do (Clark & Scarf 1960).
    """
    lane_lead = np.zeros(topo.n_lanes)
    np.maximum.at(lane_lead, topo.slot_lane, topo.slot_lt_mean)
    below = np.zeros(topo.n_nodes)
    # nodes are indexed in topological order (suppliers first): customers are done before suppliers
    for j in range(topo.n_nodes - 1, -1, -1):
        for m in range(topo.n_lanes):
            if topo.lane_src[m] == j:
                below[j] = max(below[j], lane_lead[m] + below[topo.lane_dst[m]])
    return topo.slot_lt_mean + below[topo.slot_dst]


class ActionMap:
    """Maps actions in ``[-1, 1]`` to orders in units, per slot (the modes of :data:`ACTION_MODES`)."""

    def __init__(self, topo: Topology, mode: str, residual: ResidualBase | None = None) -> None:
        """``residual``: the base-stock levels of ``base_stock_residual`` (required there, ignored
        otherwise)."""
        if mode not in ACTION_MODES:
            raise ValueError(f"action_mode: {mode!r} is not one of {', '.join(ACTION_MODES)}")
        self.mode = mode
        self.slot_names = topo.slot_names
        self.topology = topo
        scenario = topo.scenario
        s = topo.n_slots
        mu = topo.throughput
        sd = topo.throughput_sd
        bom = topo.lane_bom[topo.slot_lane]
        self.residual = None
        echelon = mode == "echelon_order_up_to" or (
            mode == "base_stock_residual" and residual is not None and residual.kind == "echelon"
        )
        if echelon:
            several = topo.node_with_several_suppliers()
            if several is not None:
                what = (
                    "echelon_order_up_to" if mode == "echelon_order_up_to" else "base_stock_residual on echelon levels"
                )
                raise ValueError(
                    f"action_mode: {what} needs echelon positions, defined when every node has one "
                    f"supplier; {several!r} of {scenario.name!r} has several (use order_up_to)"
                )
        lead = echelon_lead_times(topo) if mode == "echelon_order_up_to" else topo.slot_lt_mean
        self.high = np.zeros(s)
        for q in range(s):
            m = scenario.lanes[topo.slot_lane[q]].modes[topo.slot_mode[q]]
            j = topo.slot_dst[q]
            if mode in ("order_quantity", "base_stock_residual"):
                default = min(m.capacity, 3.0 * mu[j] * bom[q])
                self.high[q] = m.max_order if m.max_order is not None else default
            else:
                cover = 1.0 + lead[q]
                default = 2.0 * bom[q] * (mu[j] * cover + 4.0 * sd[j] * math.sqrt(cover))
                self.high[q] = m.max_level if m.max_level is not None else default
        self.high = np.maximum(self.high, 1e-6)
        if mode == "base_stock_residual":
            self._init_residual(topo, residual, mu, bom)

    def _init_residual(self, topo: Topology, residual: ResidualBase | None, mu: np.ndarray, bom: np.ndarray) -> None:
        if residual is None:
            raise ValueError(
                "action_mode: base_stock_residual needs the base-stock levels it is a residual on "
                "(residual=ResidualBase(kind, levels, residual_range)); training computes them"
            )
        r = residual.residual_range
        if isinstance(r, bool) or not isinstance(r, (int, float, np.number)) or not math.isfinite(r) or r <= 0:
            raise ValueError(f"residual_range: {r!r} is not a finite number > 0 (units of mean demand per period)")
        if residual.kind not in ("installation", "echelon"):
            raise ValueError(
                f"residual_base.kind: {residual.kind!r} is not 'installation' or 'echelon'; "
                "base_stock_residual needs a base-stock policy"
            )
        # BaseStockPolicy checks the levels (every node, finite numbers) and converts them to slots
        base = BaseStockPolicy(topo, dict(residual.levels), kind=residual.kind)  # type: ignore[arg-type]
        self.residual = residual
        self.kind = residual.kind
        self.primary = np.zeros(topo.n_slots, dtype=bool)
        self.primary[primary_slots(topo)] = True
        self.base = np.where(self.primary, base._targets, 0.0)
        # the largest change of a target (primary slots) or order (other slots): r mu_j b
        self.width = np.maximum(r * mu[topo.slot_dst] * bom, 1e-6)

    def to_orders(self, sim: Simulator, action: np.ndarray) -> np.ndarray:
        """Orders ``(n, S)`` for actions ``(n, S)``, or ``(S,)`` with one row (clipped to ``[-1, 1]`` first).

        This is where every environment's actions come in, so the rule on them is checked here, the
        same in every mode: each entry must be a finite number. Out of ``[-1, 1]`` is clipped, but
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
        a = np.clip(a.reshape(sim.n, s), -1.0, 1.0)
        if self.mode == "base_stock_residual":
            return self._residual_orders(sim, a)
        value = (a + 1.0) * (0.5 * self.high)
        if self.mode == "order_quantity":
            return value
        if self.mode == "echelon_order_up_to":
            return echelon_orders_up_to(sim, value, np.ones(s, dtype=bool))
        return sim.orders_up_to(value)

    def _residual_orders(self, sim: Simulator, a: np.ndarray) -> np.ndarray:
        """``base_stock_residual``: primary slots order up to ``S_q + a_q r mu_j b`` (installation or
        echelon position, as the base policy); other slots order ``max(0, a_q) r mu_j b``, so the zero
        action is the base-stock policy itself."""
        targets = self.base + a * self.width
        extra = np.where(self.primary, 0.0, np.maximum(a, 0.0) * self.width)
        if self.kind == "echelon":
            return echelon_orders_up_to(sim, targets, self.primary) + extra
        return sim.orders_up_to(np.where(self.primary, targets, _UNUSED)) + extra

    def from_orders_up_to(self, targets: np.ndarray) -> np.ndarray:
        """The action that asks for order-up-to ``targets`` (inverse map, ``order_up_to`` and
        ``echelon_order_up_to`` modes)."""
        return np.clip(2.0 * np.asarray(targets) / self.high - 1.0, -1.0, 1.0)


def echelon_orders_up_to(sim: Simulator, targets: np.ndarray, used: np.ndarray) -> np.ndarray:
    """Orders ``max(0, T_q - E_j)`` per slot ``q`` into node ``j`` with ``used[q]``, ``E_j`` the echelon
    position of ``j`` (docs/model.md); slots into one node are served in slot order, each order
    raising ``E_j`` before the next slot's. Obligations inside an echelon cancel, so no order of a
    period changes another node's echelon position: the order in which nodes decide does not matter."""
    position = sim.echelon_positions()
    topo = sim.topology
    out = np.zeros((sim.n, topo.n_slots))
    for q in np.flatnonzero(used):
        j = topo.slot_dst[q]
        out[:, q] = np.maximum(targets[:, q] - position[:, j], 0.0)
        position[:, j] += out[:, q]
    return out


_observe_serial = serial_twin(_observe, "_observe_serial")
