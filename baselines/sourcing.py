"""Classical policies for nodes with several supply options (alternative suppliers, transport modes).

A node that can be replenished on several slots (``sourcing: alternative`` lanes, or one lane with
several ``modes``) needs a rule that says how much to order on each. Three families from the
dual-sourcing literature, each applied at every such node and combined with ordinary installation
base-stock levels at the nodes with one slot, so that they run on whole networks:

* ``dual_index`` -- the dual-index policy (Veeraraghavan & Scheller-Wolf 2008, *Operations Research*
  56(4), 850-864). Slots sorted by lead time, fastest first; slot ``k`` raises the node's
  position counting only what arrives within its own lead time ``l_k`` to the level ``z_k``
  (``z_1 <= z_2 <= ...``). With two slots this is exactly the paper's rule (expedited position to
  ``z_e``, regular = full position to ``z_r = z_e + Delta``); with more, the same nesting.
* ``tailored_base_surge`` -- tailored base-surge (Allon & Van Mieghem 2010, *Management Science*
  56(1), 110-124; the form analysed by Janakiraman, Seshadri & Sheopuri, *Management Science*
  2015): every slot but the fastest ships a constant ``q_k`` each period (the base),
  the fastest raises the expedited position to ``S`` (the surge).
* ``fixed_split`` -- a base-stock policy on the node's full position, its order split over the
  slots by fixed shares ``w_k`` (the "proportional" or "fixed allocation" rule of the multiple-
  sourcing literature; e.g. the review of Minner 2003, *Int. J. Production Economics* 81-82, 265-279).

Positions in the project's timing (``docs/model.md``): orders are placed at the start of period
``t``; an order with lead time ``L`` arrives in period ``t + L`` before that period's demand. The
pipeline of a slot is kept by periods until arrival, so at the start of period ``t`` ``pipe[s, a]``
arrives in period ``t + a``. The **position within** ``l`` of node ``j`` is

    IP_j(l) = on-hand - customer backorders - owed to customers (this period's orders included)
              + sum over slots into j of the pipeline arriving in periods t .. t + l
              + what suppliers still owe on slots with lead time <= l,

so ``IP_j(l) + order`` must cover the demand of periods ``t .. t + l`` (``l + 1`` periods, the
review period included). The slowest slot uses the full installation position (every unit in
transit or owed), the regular position of the dual-index policy. A random lead time counts as its
mean rounded up.

Capacities: a capacitated slot never gets an order above its capacity less what it still owes;
what it cannot carry is left to the other slots (dual index: the next slower slot sees the lower
position; fixed split: the share goes to the slots with room), so a fast but small mode never
builds an endless backlog. The parameters are found by the project's pattern search
(:func:`meio.baselines.search.pattern_search`) on common random numbers, on seeds from
:data:`meio.baselines.search.SEARCH_SEED`, apart from the evaluation seeds.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Literal

import numba as nb
import numpy as np

from meio.baselines.base import Baseline
from meio.baselines.search import SEARCH_SEED, SearchTrace, initial_steps, pattern_search
from meio.envs.policies import primary_slots
from meio.envs.resolve import ScenarioLike, resolve
from meio.envs.simulator import Simulator
from meio.envs.topology import Topology

Family = Literal["dual_index", "tailored_base_surge", "fixed_split"]
#: The policy families, in the order ``meio baselines`` computes them.
FAMILIES: tuple[str, ...] = ("dual_index", "tailored_base_surge", "fixed_split")

#: Rule of a node in the kernel.
BASE, INDEX, SURGE, SPLIT = range(4)
_RULE_OF_FAMILY = {"dual_index": INDEX, "tailored_base_surge": SURGE, "fixed_split": SPLIT}
_RULE_NAMES = {BASE: "base-stock", INDEX: "dual index", SURGE: "tailored base-surge", SPLIT: "fixed split"}


def multi_slot_nodes(topo: Topology) -> list[int]:
    """Nodes (topological index) with two or more slots in that bring the node's own item: an
    alternative-sourcing node, or a node whose one lane has several modes. Assembly nodes are
    excluded (each of their lanes brings a different component)."""
    return [j for j in range(topo.n_nodes) if not topo.is_assembly[j] and len(topo.slots_into(j)) >= 2]


def slot_lead(topo: Topology) -> np.ndarray:
    """``l_s``: the lead time of each slot as the policies count it (the mean, rounded up)."""
    return np.ceil(topo.slot_lt_mean - 1e-9).astype(np.int64)


def speed_order(topo: Topology, j: int) -> list[int]:
    """Slots into ``j``, fastest first; equal lead times: the dearer slot first (it is the one to use
    only when needed), then file order."""
    lead = slot_lead(topo)
    return sorted((int(s) for s in topo.slots_into(j)), key=lambda s: (lead[s], -topo.slot_unit_cost[s], s))


@dataclass(frozen=True, eq=False)
class SourcingPlan:
    """Which rule each node follows and, per node, its slots in decision order.

    ``horizon[s]``: the ``l`` of the position slot ``s`` raises (``-1``: the full position).
    """

    family: str
    rule: np.ndarray  # (N,) BASE, INDEX, SURGE or SPLIT
    order_ptr: np.ndarray  # (N+1,) CSR of the slots each node orders on, in decision order
    order_slots: np.ndarray
    horizon: np.ndarray  # (S,)
    lead: np.ndarray  # (S,) l_s

    @staticmethod
    def build(topo: Topology, family: Family) -> SourcingPlan:
        if family not in _RULE_OF_FAMILY:
            raise ValueError(f"family: {family!r} is not one of {', '.join(FAMILIES)}")
        lead = slot_lead(topo)
        rule = np.full(topo.n_nodes, BASE, dtype=np.int64)
        horizon = np.full(topo.n_slots, -1, dtype=np.int64)
        groups: list[list[int]] = []
        primary = set(primary_slots(topo).tolist())
        multi = set(multi_slot_nodes(topo))
        for j in range(topo.n_nodes):
            if j not in multi:
                groups.append([int(s) for s in topo.slots_into(j) if int(s) in primary])
                continue
            rule[j] = _RULE_OF_FAMILY[family]
            order = speed_order(topo, j)
            groups.append(order)
            if rule[j] in (INDEX, SURGE):
                for s in order[:-1]:  # the slowest raises the full position
                    horizon[s] = lead[s]
        ptr = np.zeros(topo.n_nodes + 1, dtype=np.int64)
        ptr[1:] = np.cumsum([len(g) for g in groups])
        flat = np.array([s for g in groups for s in g], dtype=np.int64)
        return SourcingPlan(family=family, rule=rule, order_ptr=ptr, order_slots=flat, horizon=horizon, lead=lead)

    def slots_of(self, j: int) -> np.ndarray:
        return self.order_slots[self.order_ptr[j] : self.order_ptr[j + 1]]


@nb.njit(cache=True)
def sourcing_orders(
    node_ip,
    slot_ip,
    pipe,
    owed,
    depth,
    rule,
    order_ptr,
    order_slots,
    horizon,
    lead,
    in_ptr,
    in_slots,
    out_ptr,
    out_slots,
    slot_lane,
    lane_bom,
    lane_is_component,
    slot_capacity,
    node_level,
    slot_param,
    orders,
):
    """Orders ``(n, S)`` of the sourcing rules (module docstring), nodes from the customers up.

    ``node_level`` ``(n or 1, N)``: ``S_j`` of base-stock and fixed-split nodes; ``slot_param``
    ``(n or 1, S)``: ``z_k`` (dual index), ``S`` on the fastest slot and ``q_k`` on the others
    (tailored base-surge), the weights ``w_k >= 0`` (fixed split). A node's positions count the
    orders its customers place in the same period, as :func:`meio.envs.dynamics.order_up_to` does.
    """
    n_batch, n_slots = orders.shape
    n_nodes = node_ip.shape[1]
    n_pipe = pipe.shape[2]
    per_row_l = node_level.shape[0] > 1
    per_row_s = slot_param.shape[0] > 1
    owed_tot = np.zeros(n_slots)
    pipe_tot = np.zeros(n_slots)
    room = np.zeros(n_slots)
    for b in range(n_batch):
        rl = b if per_row_l else 0
        rs = b if per_row_s else 0
        for s in range(n_slots):
            orders[b, s] = 0.0
            q = 0.0
            for a in range(depth[b, s]):
                q += owed[b, s, a]
            owed_tot[s] = q
            p = 0.0
            for a in range(n_pipe):
                p += pipe[b, s, a]
            pipe_tot[s] = p
        for j in range(n_nodes - 1, -1, -1):
            lo, hi = order_ptr[j], order_ptr[j + 1]
            if lo == hi:
                continue
            new_out = 0.0
            for k in range(out_ptr[j], out_ptr[j + 1]):
                new_out += orders[b, out_slots[k]]
            r = rule[j]
            if r == 0:  # base-stock, as order_up_to does it
                for k in range(lo, hi):
                    s = order_slots[k]
                    lane = slot_lane[s]
                    comp = lane_is_component[lane]
                    ratio = lane_bom[lane] if comp else 1.0
                    pos = slot_ip[b, s] - ratio * new_out
                    for k2 in range(lo, k):
                        if (not comp) or slot_lane[order_slots[k2]] == lane:
                            pos += orders[b, order_slots[k2]]
                    q = node_level[rl, j] * lane_bom[lane] - pos
                    orders[b, s] = q if q > 0.0 else 0.0
                continue
            full = node_ip[b, j] - new_out
            net = full
            for k in range(in_ptr[j], in_ptr[j + 1]):
                s = in_slots[k]
                net -= owed_tot[s] + pipe_tot[s]
            for k in range(lo, hi):
                s = order_slots[k]
                room[s] = max(slot_capacity[s] - owed_tot[s], 0.0)
            if r == 3:  # fixed split of a base-stock order
                want = node_level[rl, j] - full
                if want <= 0.0:
                    continue
                wsum = 0.0
                for k in range(lo, hi):
                    wsum += max(slot_param[rs, order_slots[k]], 0.0)
                left = want
                # Water-filling: shares as given, a full slot's excess to the others by their shares;
                # once every slot with a share is full, the rest to any slot with room, equally.
                for phase in range(2):
                    for _ in range(hi - lo):
                        total_w = 0.0
                        for k in range(lo, hi):
                            s = order_slots[k]
                            w = 1.0 if (phase == 1 or wsum <= 0.0) else max(slot_param[rs, s], 0.0)
                            if room[s] > 1e-12 and w > 0.0:
                                total_w += w
                        if total_w <= 0.0 or left <= 1e-12:
                            break
                        given = 0.0
                        for k in range(lo, hi):
                            s = order_slots[k]
                            w = 1.0 if (phase == 1 or wsum <= 0.0) else max(slot_param[rs, s], 0.0)
                            if room[s] > 1e-12 and w > 0.0:
                                g = min(room[s], left * w / total_w)
                                orders[b, s] += g
                                room[s] -= g
                                given += g
                        left -= given
                continue
            placed = 0.0
            for k in range(lo, hi):
                s = order_slots[k]
                if r == 2 and k > lo:  # base: a constant quantity
                    q = slot_param[rs, s]
                else:
                    h = horizon[s]
                    if h < 0:
                        pos = full + placed
                    else:
                        pos = net + placed
                        top = min(h, n_pipe - 1)
                        for k2 in range(in_ptr[j], in_ptr[j + 1]):
                            s2 = in_slots[k2]
                            for a in range(top + 1):
                                pos += pipe[b, s2, a]
                            if lead[s2] <= h:
                                pos += owed_tot[s2]
                    q = slot_param[rs, s] - pos
                q = min(max(q, 0.0), room[s])
                orders[b, s] = q
                if r == 1:  # faster orders arrive within the slower slot's lead
                    placed += q


class SourcingPolicy:
    """A :class:`~meio.envs.policies.Policy`: the sourcing rules of :class:`SourcingPlan` with parameters.

    ``node_level`` ``(N,)`` or ``(n, N)`` and ``slot_param`` ``(S,)`` or ``(n, S)``, as
    :func:`sourcing_orders` reads them (one set per simulator row when 2-D).
    """

    def __init__(
        self,
        topo: Topology,
        plan: SourcingPlan,
        node_level: np.ndarray,
        slot_param: np.ndarray,
        name: str | None = None,
    ) -> None:
        self.name = name or plan.family
        self.kind = "sourcing"
        self.plan = plan
        self._topo = topo
        self._level = np.ascontiguousarray(np.atleast_2d(np.asarray(node_level, dtype=float)))
        self._param = np.ascontiguousarray(np.atleast_2d(np.asarray(slot_param, dtype=float)))
        if self._level.shape[1] != topo.n_nodes or self._param.shape[1] != topo.n_slots:
            raise ValueError(
                f"node_level {self._level.shape} / slot_param {self._param.shape}: expected "
                f"(rows, {topo.n_nodes}) and (rows, {topo.n_slots})"
            )
        if not (np.isfinite(self._level).all() and np.isfinite(self._param).all()):
            raise ValueError("node_level, slot_param: every parameter must be a finite number")

    def act(self, sim: Simulator) -> np.ndarray:
        topo, plan = self._topo, self.plan
        node_ip, slot_ip = sim.positions()
        out = np.zeros((sim.n, topo.n_slots))
        sourcing_orders(
            node_ip,
            slot_ip,
            sim.pipe,
            sim.owed,
            sim.owed_depth,
            plan.rule,
            plan.order_ptr,
            plan.order_slots,
            plan.horizon,
            plan.lead,
            topo.in_ptr,
            topo.in_slots,
            topo.out_ptr,
            topo.out_slots,
            topo.slot_lane,
            topo.lane_bom,
            topo.lane_is_component,
            topo.slot_capacity,
            self._level,
            self._param,
            out,
        )
        return out


@dataclass(frozen=True)
class SourcingBaseline(Baseline):
    """A baseline of one sourcing family; ``levels`` is each node's order-up-to level on its full
    position where it has one (base-stock and fixed-split nodes: ``S_j``; dual index: the slowest
    slot's ``z``; base-surge: the surge level ``S``), ``extra["sourcing"]`` the per-slot parameters."""

    node_level: tuple[float, ...] = ()
    slot_param: tuple[float, ...] = ()
    family: str = "dual_index"
    skipped_slots: tuple[str, ...] = field(default_factory=tuple)

    def policy(self, topology: Topology) -> SourcingPolicy:  # type: ignore[override]
        return SourcingPolicy(
            topology,
            SourcingPlan.build(topology, self.family),  # type: ignore[arg-type]
            np.array(self.node_level),
            np.array(self.slot_param),
            name=self.name,
        )


# ---- parameters of the search -------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class _Layout:
    """Where each node's parameters sit in the search vector ``x`` and how they decode.

    Base-stock node: ``S_j``. Dual index: ``z_1, Delta_2, ..., Delta_K`` (``z_k = z_1 + Delta_2 +
    ... + Delta_k``, so the levels stay nested). Base-surge: ``S, q_2, ..., q_K`` (``q_k`` clipped
    to ``[0, min(capacity_k, mu_j)]``). Fixed split: ``S_j, w_1, ..., w_K`` (weights; the shares are
    ``w_k / sum w``).
    """

    topo: Topology
    plan: SourcingPlan
    node_cols: dict[int, list[int]]
    q_cap: np.ndarray  # (S,) upper bound of a constant order
    width: int

    @staticmethod
    def build(topo: Topology, plan: SourcingPlan) -> _Layout:
        cols: dict[int, list[int]] = {}
        width = 0
        for j in range(topo.n_nodes):
            k = 1 + (
                len(plan.slots_of(j))
                if plan.rule[j] == SPLIT
                else len(plan.slots_of(j)) - 1
                if plan.rule[j] in (INDEX, SURGE)
                else 0
            )
            cols[j] = list(range(width, width + k))
            width += k
        mu = flow_means(topo)
        q_cap = np.minimum(topo.slot_capacity, mu[topo.slot_dst])
        return _Layout(topo=topo, plan=plan, node_cols=cols, q_cap=q_cap, width=width)

    def decode(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        x = np.atleast_2d(x)
        topo, plan = self.topo, self.plan
        level = np.zeros((len(x), topo.n_nodes))
        param = np.zeros((len(x), topo.n_slots))
        for j, cols in self.node_cols.items():
            slots = plan.slots_of(j)
            r = plan.rule[j]
            if r == BASE:
                level[:, j] = x[:, cols[0]]
            elif r == INDEX:
                z = np.cumsum(x[:, cols], axis=1)
                param[:, slots] = z
                level[:, j] = z[:, -1]
            elif r == SURGE:
                param[:, slots[0]] = x[:, cols[0]]
                param[:, slots[1:]] = np.clip(x[:, cols[1:]], 0.0, self.q_cap[slots[1:]])
                level[:, j] = x[:, cols[0]]
            else:
                level[:, j] = x[:, cols[0]]
                param[:, slots] = x[:, cols[1:]]
        return level, param

    def start(self, start: Mapping[str, float], main: Mapping[int, int] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """A starting vector and first steps from single-sourcing levels ``start`` (``{node: S_j}``).

        A slot's level is shifted by the mean demand over the difference between its lead time and
        that of the node's primary slot (the one ``start`` was found for); base-surge starts with a
        base of ``max(mu - sigma, mu / 2, mu - 0.8 c_e)`` in all (``c_e`` the fast slot's capacity),
        shared equally by the slow slots within their capacities; fixed split with equal weights.

        ``main`` (``{node: slot}``) makes ``slot`` the one supply option of each node it names
        instead: dual index with the levels of the slower slots equal to the main one's (they never
        order), base-surge with the whole base on the main slot (none where it is the fast slot),
        fixed split with all the weight on it; the node's level is shifted to the main slot's lead
        time, and each node upstream whose mean flow changes with it by its change over its own
        lead time plus the review period.
        """
        topo, plan = self.topo, self.plan
        missing = [n for n in topo.node_names if n not in start]
        if missing:
            raise ValueError(f"start: no level for {', '.join(missing)}; every node needs one")
        main = dict(main or {})
        mu = flow_means(topo)
        sd = topo.throughput_sd
        steps_node = initial_steps(topo, "installation")
        primary = primary_slots(topo)
        prim = {int(topo.slot_dst[s]): int(s) for s in primary[::-1]}
        base_level = np.array([max(float(start[n]), 0.0) for n in topo.node_names])
        if main:
            chosen = set(primary.tolist())
            for j, m in main.items():
                chosen.discard(prim.get(j, -1))
                chosen.add(int(m))
            shift = flow_means(topo, np.array(sorted(chosen))) - flow_means(topo, primary)
            base_level = np.maximum(base_level + shift * (topo.lead_in() + 1.0), 0.0)
        x = np.zeros(self.width)
        step = np.zeros(self.width)
        for j, cols in self.node_cols.items():
            s0 = float(base_level[j])
            slots = plan.slots_of(j)
            r = plan.rule[j]
            lp = plan.lead[prim[j]] if j in prim else 0
            m = main.get(j)
            if r == BASE:
                x[cols[0]], step[cols[0]] = s0, steps_node[j]
            elif r == INDEX:
                z = np.maximum.accumulate([max(s0 + mu[j] * (plan.lead[s] - lp), 0.0) for s in slots])
                if m is not None:
                    k = list(slots).index(m)
                    z[k + 1 :] = z[k]
                x[cols] = np.diff(z, prepend=0.0)
                step[cols] = steps_node[j]
            elif r == SURGE:
                x[cols[0]] = max(s0 + mu[j] * (plan.lead[slots[0]] - lp), 0.0)
                step[cols[0]] = steps_node[j]
                base = max(mu[j] - sd[j], 0.5 * mu[j], mu[j] - 0.8 * topo.slot_capacity[slots[0]])
                if m is None:
                    x[cols[1:]] = _equal_fill(base, 0.95 * self.q_cap[slots[1:]])
                elif m != slots[0]:
                    k = list(slots).index(m)
                    x[cols[k]] = min(base, 0.95 * self.q_cap[m])
                step[cols[1:]] = max(0.1 * mu[j], 0.5)
            else:
                x[cols[0]], step[cols[0]] = s0, steps_node[j]
                x[cols[1:]] = 1.0
                if m is not None:
                    x[cols[0]] = max(s0 + mu[j] * (plan.lead[m] - lp), 0.0)
                    x[cols[1:]] = np.asarray(slots) == m
                step[cols[1:]] = 0.5
        return x, step


def _equal_fill(total: float, caps: np.ndarray) -> np.ndarray:
    """``total`` shared equally among slots, none above its cap (water-filling)."""
    out = np.zeros(len(caps))
    left = total
    open_ = np.ones(len(caps), dtype=bool)
    while left > 1e-12 and open_.any():
        share = left / open_.sum()
        give = np.where(open_, np.minimum(share, caps - out), 0.0)
        out += give
        left -= give.sum()
        open_ &= caps - out > 1e-12
    return out


def flow_means(topo: Topology, slots: np.ndarray | None = None) -> np.ndarray:
    """Mean units per period through each node ``(N,)`` when the nodes order only on ``slots``
    (default: all; a node with several slots in is then counted in full at each of its suppliers,
    an upper estimate). Mean demand per period of each demand node, as the simulator draws it."""
    use = set(range(topo.n_slots) if slots is None else np.asarray(slots).tolist())
    mu = np.zeros(topo.n_nodes)
    for j in reversed(range(topo.n_nodes)):
        if topo.demand_col[j] >= 0:
            mu[j] += topo.demand_specs[topo.demand_col[j]].base_mean()
        supplied: set[tuple[int, int]] = set()
        for s in topo.slots_into(j):
            src = int(topo.slot_src[s])
            if int(s) in use and src >= 0 and (src, int(topo.slot_lane[s])) not in supplied:
                supplied.add((src, int(topo.slot_lane[s])))
                mu[src] += topo.lane_bom[topo.slot_lane[s]] * mu[j]
    return mu


# ---- evaluation of many candidates on common random numbers -------------------------------------


def simulate_sourcing(
    scenario: ScenarioLike,
    plan: SourcingPlan,
    level: np.ndarray,
    param: np.ndarray,
    periods: int,
    warmup: int,
    replications: int,
    seed: int,
    sims: dict[int, Simulator] | None = None,
) -> np.ndarray:
    """Mean cost per period ``(K, replications)`` of each candidate (rows of ``level`` ``(K, N)``
    and ``param`` ``(K, S)``), every candidate on the same seeds ``seed .. seed + replications - 1``.

    ``sims``: simulators by row count, reused between calls (building one costs as much as a
    few dozen periods); every call resets the rows to their seeds, so reuse changes no number.
    """
    k = level.shape[0]
    n = k * replications
    sim = sims.get(n) if sims is not None else None
    if sim is None:
        sim = Simulator(scenario, n=n)
        if sims is not None:
            sims[n] = sim
    sim.reset(seeds=[seed + r for _ in range(k) for r in range(replications)])
    policy = SourcingPolicy(
        sim.topology, plan, np.repeat(level, replications, axis=0), np.repeat(param, replications, axis=0)
    )
    total = np.zeros(sim.n)
    for t in range(warmup + periods):
        res = sim.step(policy.act(sim))
        if t >= warmup:
            total += res.costs.sum(axis=1)
    return (total / periods).reshape(k, replications)


def optimise_sourcing(
    scenario: ScenarioLike,
    family: Family,
    start: Mapping[str, float],
    periods: int = 1000,
    warmup: int = 100,
    replications: int = 8,
    seed: int = SEARCH_SEED,
    max_rounds: int = 20,
    min_step: float = 0.1,
    name: str | None = None,
    progress: bool = False,
    other_starts: Mapping[str, Mapping[str, float]] | None = None,
) -> SourcingBaseline:
    """Search the parameters of a sourcing family by pattern search on common random numbers.

    ``start``: single-sourcing installation levels ``{node: S_j}`` (e.g. the optimised installation
    policy's); :meth:`_Layout.start` turns them into the family's first parameters. The search sees
    only the seeds ``seed .. seed + replications - 1``; re-cost the result on other seeds.
    ``other_starts``: more such levels by name (e.g. ``{"local": ...}``), each searched the same way;
    the search is local and lands elsewhere from elsewhere, so the cheapest result on the search's
    seeds is kept, its notes naming its start where it is not ``start``.
    """
    topo = resolve(scenario)
    sc = topo.scenario
    plan = SourcingPlan.build(topo, family)
    if not (plan.rule != BASE).any():
        raise ValueError(f"scenario {sc.name}: no node has two or more supply options; {family} does not apply")
    layout = _Layout.build(topo, plan)

    sims: dict[int, Simulator] = {}

    def objective(c: np.ndarray) -> np.ndarray:
        level, param = layout.decode(c)
        return simulate_sourcing(topo, plan, level, param, periods, warmup, replications, seed, sims).mean(axis=1)

    for how, levels in (other_starts or {}).items():  # refused before any search, naming the start
        try:
            layout.start(levels)
        except ValueError as exc:
            raise ValueError(str(exc).replace("start:", f"other_starts[{how!r}]:", 1)) from None
    label = f"search {family} {sc.name}"
    found = [
        _search_from(
            layout,
            objective,
            levels,
            max_rounds,
            min_step,
            (f"{label} from {how}" if how else label) if progress else None,
        )
        for how, levels in {"": start, **dict(other_starts or {})}.items()
    ]
    k = min(range(len(found)), key=lambda i: found[i][0])
    _, x, trace, how_main = found[k]
    if k > 0:
        how_main = (
            f"started from the {list(other_starts or {})[k - 1]} levels (best of {len(found)} starts); {how_main}"
        )
    level, param = (a[0] for a in layout.decode(x))
    return _baseline(
        topo,
        plan,
        level,
        param,
        name or family,
        f"{how_main}pattern search on {replications} x {periods} periods, common random numbers "
        f"(seeds {seed}..{seed + replications - 1}), {trace.rounds} rounds",
    )


def _search_from(
    layout: _Layout,
    objective: Callable[[np.ndarray], np.ndarray],
    start: Mapping[str, float],
    max_rounds: int,
    min_step: float,
    progress: str | None,
) -> tuple[float, np.ndarray, SearchTrace, str]:
    """The search from one set of single-sourcing levels: ``(cost on the search's seeds, x, trace,
    note on the main supply options)``.

    The single-sourcing start makes the first-listed supplier every node's main one, which a local
    search cannot undo where another is cheaper: moving the flow takes large steps at the node and
    at both suppliers together, and the start that has moved it can cost more than the mixed one
    until the levels around it are searched too. So every start with other main supply options
    is screened by a short search, and the best of them searched in full beside the mixed start;
    the better of the two is kept (on the search's seeds).
    """
    x0, step0 = layout.start(start)
    screened = []
    for main, x_main in main_slot_starts(layout, start, objective):
        x_s, _ = pattern_search(objective, x_main, step0, integer=False, max_rounds=SCREEN_ROUNDS, min_step=min_step)
        screened.append((float(objective(x_s[None, :])[0]), main, x_s))
    # Continuous search even for integer scenarios: shares and constant orders need fractions; the
    # simulator rounds the orders themselves.
    x, trace = pattern_search(
        objective, x0, step0, integer=False, max_rounds=max_rounds, min_step=min_step, progress=progress
    )
    cost = float(objective(x[None, :])[0])
    how_main = ""
    if screened:
        _, main, x_s = min(screened, key=lambda r: r[0])
        x_m, trace_m = pattern_search(
            objective,
            x_s,
            step0,
            integer=False,
            max_rounds=max_rounds,
            min_step=min_step,
            progress=f"{progress} (main supply options)" if progress else None,
        )
        cost_m = float(objective(x_m[None, :])[0])
        if cost_m < cost:
            x, trace, cost = x_m, trace_m, cost_m
            names = layout.topo.slot_names
            how_main = (
                f"main supply options {', '.join(names[m] for m in main.values())} (best of "
                f"{len(screened)} screened starts); "
            )
    return cost, x, trace, how_main


#: Up to this many combinations of main supply options are each screened by a short search;
#: beyond, the main options are chosen node by node by the cost of their starts.
MAIN_SLOT_COMBINATIONS = 12
#: Rounds of each screening search.
SCREEN_ROUNDS = 6


def main_slot_starts(
    layout: _Layout, start: Mapping[str, float], objective: Callable[[np.ndarray], np.ndarray]
) -> list[tuple[dict[int, int], np.ndarray]]:
    """Starts that make one supply option the main one at every node with several
    (``[({node: slot}, x0), ...]``, :meth:`_Layout.start`): every combination where there are at
    most :data:`MAIN_SLOT_COMBINATIONS`; else one, chosen node by node, upstream first, by the cost
    of its start (``objective``, on common random numbers), a node keeping the mixed start where no
    option of its own beats it."""
    plan = layout.plan
    nodes = [j for j in range(layout.topo.n_nodes) if plan.rule[j] != BASE]
    options = [[int(s) for s in plan.slots_of(j)] for j in nodes]
    if math.prod(len(o) for o in options) <= MAIN_SLOT_COMBINATIONS:
        combos = [dict(zip(nodes, c)) for c in itertools.product(*options)]
        return [(m, layout.start(start, m)[0]) for m in combos]
    main: dict[int, int] = {}
    x = layout.start(start)[0]
    best = float(objective(x[None, :])[0])
    for j, opts in zip(nodes, options):
        xs = np.array([layout.start(start, {**main, j: m})[0] for m in opts])
        costs = objective(xs)
        k = int(np.argmin(costs))
        if costs[k] < best:
            main[j], x, best = opts[k], xs[k], float(costs[k])
    return [(main, x)] if main else []


def _baseline(
    topo: Topology, plan: SourcingPlan, level: np.ndarray, param: np.ndarray, name: str, how: str
) -> SourcingBaseline:
    names = topo.slot_names
    sourcing: dict[str, dict[str, object]] = {}
    parts: list[str] = []
    for j in range(topo.n_nodes):
        r = plan.rule[j]
        if r == BASE:
            continue
        slots = plan.slots_of(j)
        node = topo.node_names[j]
        if r == INDEX:
            entry = {
                "rule": "dual_index",
                "levels": {names[s]: float(param[s]) for s in slots},
                "lead_times": {names[s]: int(plan.lead[s]) for s in slots},
            }
            text = ", ".join(
                f"{names[s]} raises IP(l={plan.lead[s]}) to {param[s]:.4g}"
                if plan.horizon[s] >= 0
                else f"{names[s]} raises the full position to {param[s]:.4g}"
                for s in slots
            )
        elif r == SURGE:
            entry = {
                "rule": "tailored_base_surge",
                "surge_slot": names[slots[0]],
                "surge_level": float(param[slots[0]]),
                "base_orders": {names[s]: float(param[s]) for s in slots[1:]},
            }
            text = f"{names[slots[0]]} surges to IP(l={plan.lead[slots[0]]}) {param[slots[0]]:.4g}, " + ", ".join(
                f"{names[s]} ships {param[s]:.4g} every period" for s in slots[1:]
            )
        else:
            w = np.maximum(param[slots], 0.0)
            shares = w / w.sum() if w.sum() > 0 else np.full(len(slots), 1.0 / len(slots))
            entry = {
                "rule": "fixed_split",
                "level": float(level[j]),
                "shares": {names[s]: float(v) for s, v in zip(slots, shares)},
            }
            text = f"order up to {level[j]:.4g}, split " + ", ".join(
                f"{names[s]} {v:.0%}" for s, v in zip(slots, shares)
            )
        sourcing[node] = entry
        parts.append(f"{node}: {text}")
    skipped = unused_component_modes(topo)
    notes = f"{_RULE_NAMES[_RULE_OF_FAMILY[plan.family]]} at " + "; ".join(parts) + f"; base-stock elsewhere. {how}"
    if skipped:
        notes += f"; orders only on the first mode of each component lane, never on {', '.join(skipped)}"
    return SourcingBaseline(
        name=name,
        kind="sourcing",  # type: ignore[arg-type]
        levels={n: float(level[j]) for j, n in enumerate(topo.node_names)},
        notes=notes,
        extra={"sourcing": sourcing},
        node_level=tuple(float(v) for v in level),
        slot_param=tuple(float(v) for v in param),
        family=plan.family,
        skipped_slots=tuple(skipped),
    )


def unused_component_modes(topo: Topology) -> list[str]:
    """Slots no sourcing family orders on: the second and later modes of an assembly node's lanes."""
    prim = set(primary_slots(topo).tolist())
    return [topo.slot_names[s] for s in range(topo.n_slots) if topo.is_assembly[topo.slot_dst[s]] and s not in prim]


# ---- what single-sourcing baselines cannot do ---------------------------------------------------


def single_sourcing_limits(topo: Topology) -> tuple[str, str | None]:
    """What a policy that orders only on :func:`~meio.envs.policies.primary_slots` leaves out, and why
    it cannot work, if it cannot.

    Returns ``(note, problem)``: ``note`` names, per node, the slots it never orders on (empty
    when it uses them all) and the nodes whose stock then never moves; ``problem`` (or ``None``)
    says which primary slot or node cannot carry the mean demand routed through it (capacity at or
    below the mean flow: its backlog grows without bound).
    """
    prim = primary_slots(topo)
    used = set(prim.tolist())
    names = topo.slot_names
    parts = []
    for j in range(topo.n_nodes):
        into = [int(s) for s in topo.slots_into(j)]
        never = [names[s] for s in into if s not in used]
        if never:
            only = [names[s] for s in into if s in used]
            parts.append(f"{topo.node_names[j]} orders only on {', '.join(only)}; never uses {', '.join(never)}")
    mu = flow_means(topo, prim)
    idle = [topo.node_names[j] for j in range(topo.n_nodes) if mu[j] <= 0 and topo.initial_inventory[j] > 0]
    if idle:
        parts.append("stock at " + ", ".join(idle) + " is never shipped (held for ever)")
    problem = None
    for s in prim:
        need = mu[topo.slot_dst[s]] * topo.lane_bom[topo.slot_lane[s]]
        if topo.slot_capacity[s] <= need:
            problem = (
                f"{names[s]} (the first lane and mode into {topo.node_names[topo.slot_dst[s]]}) carries at "
                f"most {topo.slot_capacity[s]:g} per period, not more than the mean demand {need:.4g} routed "
                "through it: the backlog would grow without bound"
            )
            break
    if problem is None:
        for j in range(topo.n_nodes):
            need = sum(
                mu[topo.slot_dst[s]] * topo.lane_bom[topo.slot_lane[s]] for s in topo.slots_out_of(j) if int(s) in used
            )
            if need > 0 and topo.node_capacity[j] <= need:
                problem = (
                    f"node {topo.node_names[j]!r} would ship the mean demand {need:.4g} per period on its "
                    f"customers' first lanes, at or above its capacity {topo.node_capacity[j]:g}: the "
                    "backlog would grow without bound"
                )
                break
    return "; ".join(parts), problem


__all__ = [
    "FAMILIES",
    "SourcingBaseline",
    "SourcingPlan",
    "SourcingPolicy",
    "flow_means",
    "multi_slot_nodes",
    "optimise_sourcing",
    "simulate_sourcing",
    "single_sourcing_limits",
    "sourcing_orders",
    "speed_order",
]
