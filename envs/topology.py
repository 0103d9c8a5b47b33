"""Compile a :class:`~meio.envs.scenario.Scenario` once into index arrays for the step function.

Node names live only here and at the edges (loading, logging, reports). Inside, a node is an index
in topological order (suppliers before customers; ties keep the file's order) and a *slot* is one
(lane, transport mode) pair: orders, obligations, shipments and pipelines are all per slot.

Slots are numbered lane by lane in file order, modes in their listed order, so the action vector
of the environments reads like the scenario file.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from meio.envs.distributions import DemandSpec
from meio.envs.dynamics import COST_NAMES  # noqa: F401  (re-exported: callers import it from here)
from meio.envs.graph import descendants, topological_order
from meio.envs.scenario import Scenario, check_sizes

#: Obligation age buckets: an upstream node serves what it owes oldest first, by the period the
#: order was placed. Obligations older than ``AGES - 1`` periods share the last bucket and are
#: served among themselves by the scenario's within-period rule (see docs/model.md).
AGES = 16


@dataclass(frozen=True, eq=False)
class Topology:
    """Index arrays of a scenario. ``N`` nodes, ``S`` slots, ``M`` lanes, ``D`` demand nodes.

    All arrays are read-only. Slots out of each node (``out_ptr``/``out_slots``) are sorted by the
    customer's position in the scenario file, then mode: the ``fcfs_index`` priority order.
    """

    scenario: Scenario
    node_names: tuple[str, ...]  # (N,) topological order
    file_index: np.ndarray  # (N,) position of each node in the scenario file
    holding: np.ndarray  # (N,) h_j, local holding cost rate
    penalty: np.ndarray  # (N,) p_j, backorder or lost-sales cost (0 if no demand)
    node_capacity: np.ndarray  # (N,) units a node may ship per period (inf = none)
    initial_inventory: np.ndarray  # (N,)
    is_assembly: np.ndarray  # (N,) bool: arrivals go to component stock, then kits
    demand_col: np.ndarray  # (N,) column of the node in the demand arrays, -1 if none
    demand_nodes: np.ndarray  # (D,) node index of each demand column
    demand_specs: tuple[DemandSpec, ...]  # (D,) in scenario file order of the demand nodes
    correlation_chol: np.ndarray | None  # (D, D) Cholesky factor of the demand correlation
    # lanes
    lane_src: np.ndarray  # (M,) node index, -1 for the external supplier
    lane_dst: np.ndarray  # (M,)
    lane_bom: np.ndarray  # (M,) units of the source's item per unit made at dst
    lane_is_component: np.ndarray  # (M,) bool: arrivals go to the component stock at dst
    lane_raw_holding: np.ndarray  # (M,) holding rate of component stock (source's h_j)
    in_lane_ptr: np.ndarray  # (N+1,) CSR: lanes into each node
    in_lanes: np.ndarray
    # slots (lane, mode)
    slot_lane: np.ndarray  # (S,)
    slot_mode: np.ndarray  # (S,) index of the mode within its lane
    slot_src: np.ndarray  # (S,) -1 for external
    slot_dst: np.ndarray  # (S,)
    slot_capacity: np.ndarray  # (S,) units shipped per period (inf = none)
    slot_unit_cost: np.ndarray  # (S,) per unit shipped
    slot_fixed_cost: np.ndarray  # (S,) per period with a positive order
    slot_pipeline_cost: np.ndarray  # (S,) per unit in transit per period
    slot_crossing: np.ndarray  # (S,) bool: shipments may overtake each other
    slot_lt_const: np.ndarray  # (S,) the lead time if constant, else -1
    slot_lt_rand: np.ndarray  # (S,) row in lt_values / lt_cdf if random, else -1
    slot_lt_max: np.ndarray  # (S,)
    slot_lt_mean: np.ndarray  # (S,)
    slot_disruption: np.ndarray  # (S,) row in dis_start / dis_end, else -1
    slot_names: tuple[str, ...]  # (S,) "src->dst" or "src->dst:mode"
    out_ptr: np.ndarray  # (N+1,) CSR: slots shipped by each node, priority order
    out_slots: np.ndarray
    in_ptr: np.ndarray  # (N+1,) CSR: slots into each node, file order
    in_slots: np.ndarray
    ext_slots: np.ndarray  # slots supplied by the external supplier
    lt_values: np.ndarray  # (R, V) random lead-time supports (padded)
    lt_cdf: np.ndarray  # (R, V) their cumulative probabilities (padded with 1)
    dis_start: np.ndarray  # (X,) outage start probability per period
    dis_end: np.ndarray  # (X,) outage end probability per period
    backorders: bool  # unmet customer demand is backordered (else lost)
    proportional: bool  # allocation rule
    integer_orders: bool
    horizon: int
    pipe_len: int  # max lead time + 1
    throughput: np.ndarray  # (N,) mean units per period passing through each node
    throughput_sd: np.ndarray  # (N,) their standard deviation (independence assumed)

    @property
    def n_nodes(self) -> int:
        return len(self.node_names)

    @property
    def n_slots(self) -> int:
        return len(self.slot_names)

    @property
    def n_lanes(self) -> int:
        return len(self.lane_src)

    @property
    def n_demand(self) -> int:
        return len(self.demand_nodes)

    def node_index(self, name: str) -> int:
        return self.node_names.index(name)

    def slots_into(self, j: int) -> np.ndarray:
        return self.in_slots[self.in_ptr[j] : self.in_ptr[j + 1]]

    def slots_out_of(self, j: int) -> np.ndarray:
        return self.out_slots[self.out_ptr[j] : self.out_ptr[j + 1]]

    def demand_through(self, moments: Callable[[DemandSpec], tuple[float, float]]) -> tuple[np.ndarray, np.ndarray]:
        """``throughput`` and ``throughput_sd`` with each demand node's (mean, sd) given by
        ``moments`` instead of the simulated distribution's (the analytic baselines' convention)."""
        return _throughput(
            self.node_names, self.lane_src, self.lane_dst, self.lane_bom, self.demand_col, self.demand_specs, moments
        )

    def node_with_several_suppliers(self) -> str | None:
        """The first node (topological order) with more than one lane in, or an assembly node; ``None``
        when every node has one supplier, as echelon positions need."""
        for j, name in enumerate(self.node_names):
            if self.is_assembly[j] or self.in_lane_ptr[j + 1] - self.in_lane_ptr[j] > 1:
                return name
        return None

    def descendants(self) -> np.ndarray:
        """(N, N) 0/1 matrix: ``E[j, k] = 1`` if ``k`` is ``j`` or downstream of ``j``."""
        names = self.node_names
        edges = [(names[s], names[d]) for s, d in zip(self.lane_src, self.lane_dst) if s >= 0]
        e = np.eye(self.n_nodes)
        for j, name in enumerate(names):
            below = descendants(names, edges, name)
            e[j, [k for k, other in enumerate(names) if other in below]] = 1.0
        return e

    def lead_in(self) -> np.ndarray:
        """(N,) longest mean lead time ``max_s E[L_s]`` over the slots (lanes and modes) into each
        node; 0 for a node without one."""
        lead = np.zeros(self.n_nodes)
        np.maximum.at(lead, self.slot_dst, self.slot_lt_mean)
        return lead


def _csr(groups: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
    ptr = np.zeros(len(groups) + 1, dtype=np.int64)
    ptr[1:] = np.cumsum([len(g) for g in groups])
    flat = np.array([x for g in groups for x in g], dtype=np.int64)
    return ptr, flat


def _topological_order(scenario: Scenario) -> list[int]:
    """File positions of the nodes in topological order, ties in file order (see :mod:`meio.envs.graph`)."""
    ids = scenario.node_ids
    position = {name: i for i, name in enumerate(ids)}
    edges = [(lane.source, lane.target) for lane in scenario.lanes if not lane.is_external]
    return [position[name] for name in topological_order(ids, edges)]


def _readonly(**arrays: np.ndarray) -> dict[str, np.ndarray]:
    for a in arrays.values():
        a.setflags(write=False)
    return arrays


def compile_topology(scenario: Scenario) -> Topology:
    """Build the :class:`Topology` of a validated scenario (done once per environment)."""
    # Loading checks this too; a Scenario built or changed in code (dataclasses.replace) is
    # checked here, before any array is sized from its lead times or demand.
    check_sizes(scenario)
    order = _topological_order(scenario)
    nodes = [scenario.nodes[i] for i in order]
    names = tuple(n.id for n in nodes)
    idx = {name: k for k, name in enumerate(names)}
    n = len(nodes)

    demand_file_order = [i for i, nd in enumerate(scenario.nodes) if nd.demand is not None]
    demand_nodes = np.array([idx[scenario.nodes[i].id] for i in demand_file_order], dtype=np.int64)
    demand_col = np.full(n, -1, dtype=np.int64)
    demand_col[demand_nodes] = np.arange(len(demand_nodes))
    specs = tuple(scenario.nodes[i].demand for i in demand_file_order)
    chol = None
    if scenario.demand_correlation is not None:
        corr = np.array(scenario.demand_correlation)
        # A tiny ridge keeps the factorisation defined for a singular (e.g. all-ones) matrix.
        chol = np.linalg.cholesky(corr + 1e-12 * np.eye(len(corr)))

    lanes = scenario.lanes
    m = len(lanes)
    lane_src = np.array([-1 if l.is_external else idx[l.source] for l in lanes], dtype=np.int64)
    lane_dst = np.array([idx[l.target] for l in lanes], dtype=np.int64)
    is_assembly = np.array([nd.sourcing == "assembly" for nd in nodes])
    lane_bom = np.ones(m)
    for k, lane in enumerate(lanes):
        nd = nodes[lane_dst[k]]
        if nd.sourcing == "assembly":
            lane_bom[k] = dict(nd.bom)[lane.source]
    lane_is_component = is_assembly[lane_dst]
    holding = np.array([nd.holding_cost for nd in nodes])
    lane_raw_holding = np.where(lane_src >= 0, holding[np.maximum(lane_src, 0)], 0.0)
    in_lane_ptr, in_lanes = _csr([[k for k in range(m) if lane_dst[k] == j] for j in range(n)])

    # slots
    rows: list[dict] = []
    rand_tables: list[tuple[tuple[int, ...], np.ndarray]] = []
    disruptions: list[tuple[float, float]] = []
    dis_row: dict[int, int] = {}
    for k, lane in enumerate(lanes):
        for mi, mode in enumerate(lane.modes):
            lt = mode.lead_time
            rand = -1
            if not lt.is_constant:
                rand = len(rand_tables)
                rand_tables.append((lt.values, lt.cdf))
            dis = -1
            if lane.disruption is not None:
                if k not in dis_row:
                    dis_row[k] = len(disruptions)
                    disruptions.append((lane.disruption.start_probability, lane.disruption.end_probability))
                dis = dis_row[k]
            label = f"{lane.source}->{lane.target}" + (f":{mode.name}" if len(lane.modes) > 1 else "")
            rows.append(
                dict(
                    lane=k,
                    mode=mi,
                    src=lane_src[k],
                    dst=lane_dst[k],
                    cap=mode.capacity,
                    unit=mode.unit_cost,
                    fixed=mode.fixed_cost,
                    pipe=mode.pipeline_holding_cost,
                    cross=mode.order_crossing,
                    const=lt.values[0] if lt.is_constant else -1,
                    rand=rand,
                    ltmax=lt.max,
                    ltmean=lt.mean,
                    dis=dis,
                    name=label,
                )
            )
    s = len(rows)
    col = lambda key, dtype: np.array([r[key] for r in rows], dtype=dtype)  # noqa: E731
    file_index = np.array(order, dtype=np.int64)
    slot_dst = col("dst", np.int64)
    slot_src = col("src", np.int64)
    out_groups = []
    for j in range(n):
        mine = [q for q in range(s) if slot_src[q] == j]
        mine.sort(key=lambda q: (file_index[slot_dst[q]], rows[q]["lane"], rows[q]["mode"]))
        out_groups.append(mine)
    out_ptr, out_slots = _csr(out_groups)
    in_ptr, in_slots = _csr([[q for q in range(s) if slot_dst[q] == j] for j in range(n)])
    vmax = max((len(v) for v, _ in rand_tables), default=1)
    lt_values = np.zeros((max(len(rand_tables), 1), vmax), dtype=np.int64)
    lt_cdf = np.ones((max(len(rand_tables), 1), vmax))
    for r, (vals, cdf) in enumerate(rand_tables):
        lt_values[r, : len(vals)] = vals
        lt_values[r, len(vals) :] = vals[-1]
        lt_cdf[r, : len(vals)] = cdf

    throughput, throughput_sd = _throughput(nodes, lane_src, lane_dst, lane_bom, demand_col, specs)
    arrays = _readonly(
        file_index=file_index,
        holding=holding,
        penalty=np.array([nd.penalty_cost for nd in nodes]),
        node_capacity=np.array([nd.capacity for nd in nodes]),
        initial_inventory=np.array([nd.initial_inventory for nd in nodes]),
        is_assembly=is_assembly,
        demand_col=demand_col,
        demand_nodes=demand_nodes,
        lane_src=lane_src,
        lane_dst=lane_dst,
        lane_bom=lane_bom,
        lane_is_component=lane_is_component,
        lane_raw_holding=lane_raw_holding,
        in_lane_ptr=in_lane_ptr,
        in_lanes=in_lanes,
        slot_lane=col("lane", np.int64),
        slot_mode=col("mode", np.int64),
        slot_src=slot_src,
        slot_dst=slot_dst,
        slot_capacity=col("cap", float),
        slot_unit_cost=col("unit", float),
        slot_fixed_cost=col("fixed", float),
        slot_pipeline_cost=col("pipe", float),
        slot_crossing=col("cross", bool),
        slot_lt_const=col("const", np.int64),
        slot_lt_rand=col("rand", np.int64),
        slot_lt_max=col("ltmax", np.int64),
        slot_lt_mean=col("ltmean", float),
        slot_disruption=col("dis", np.int64),
        out_ptr=out_ptr,
        out_slots=out_slots,
        in_ptr=in_ptr,
        in_slots=in_slots,
        ext_slots=np.flatnonzero(slot_src < 0).astype(np.int64),
        lt_values=lt_values,
        lt_cdf=lt_cdf,
        dis_start=np.array([d[0] for d in disruptions], dtype=float),
        dis_end=np.array([d[1] for d in disruptions], dtype=float),
        throughput=throughput,
        throughput_sd=throughput_sd,
    )
    return Topology(
        scenario=scenario,
        node_names=names,
        demand_specs=specs,
        correlation_chol=chol,
        slot_names=tuple(r["name"] for r in rows),
        backorders=scenario.unmet_demand == "backorder",
        proportional=scenario.allocation == "proportional",
        integer_orders=scenario.integer_orders,
        horizon=scenario.horizon,
        pipe_len=int(max(r["ltmax"] for r in rows)) + 1,
        **arrays,
    )


def _throughput(
    nodes,
    lane_src,
    lane_dst,
    lane_bom,
    demand_col,
    specs,
    moments: Callable[[DemandSpec], tuple[float, float]] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Mean and sd of the units per period each node passes on (its own demand plus its customers').

    A node with several suppliers is counted in full at each of them: this sets scales for
    observations and action ranges, where an upper estimate is what is wanted.
    """
    n = len(nodes)
    mu = np.zeros(n)
    var = np.zeros(n)
    for j in reversed(range(n)):
        if demand_col[j] >= 0:
            spec = specs[demand_col[j]]
            m, s = (spec.base_mean(), spec.base_sd()) if moments is None else moments(spec)
            mu[j] += m
            var[j] += s**2
        for k in np.flatnonzero(lane_dst == j):
            src = lane_src[k]
            if src >= 0:
                mu[src] += lane_bom[k] * mu[j]
                var[src] += lane_bom[k] ** 2 * var[j]
    return mu, np.sqrt(var)
