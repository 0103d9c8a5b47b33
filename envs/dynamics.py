"""The step function: one period of the network for a batch of independent copies.

This is the only implementation of the dynamics. The Gymnasium env, the SB3 vector env, the
baselines' evaluation and the benchmark all call :func:`step_kernel` (through
:class:`meio.envs.simulator.Simulator`). It follows the order of events of ``docs/model.md``
("One period ``t``") exactly:

1. orders placed this period join what each supplier owes (age bucket 0); a fixed cost is charged
   per slot with a positive order;
2. outage states of external suppliers move one period; then the external supplier ships what it
   owes (oldest first, up to each slot's capacity, nothing while out);
3. nodes in topological order: receive what is due this period (components of an assembly node
   go to its component stock and are assembled into as many kits as they allow), then ship what is
   owed, oldest obligations first, within a period by customer index (``fcfs_index``) or in
   proportion to what is owed (``proportional``), up to the node's and each slot's capacity. A
   shipment leaving with lead time ``L`` arrives ``L`` periods later; ``L = 0`` arrives now, before
   the customer ships (customers come later in topological order). Without order crossing an
   arrival is never earlier than the slot's previous one;
4. customer demand at demand nodes: old backorders first, then the new demand; what is short is
   backordered or lost;
5. costs on end-of-period quantities; then the pipelines advance one period and obligations age.

Design: the function is pure in the sense of gymnax (no hidden state, no randomness: demand,
lead-time draws and outage uniforms come in as arrays) but updates the state arrays in place, so
a step allocates nothing. It is compiled with numba; its loops over nodes and slots run in
machine code, not Python.

Interface: as gymnax passes ``EnvParams`` and ``EnvState``, the kernels take whole structures,
each defined once below as a :class:`typing.NamedTuple` of arrays (field, shape and meaning are
documented there; ``B`` rows, ``N`` nodes, ``S`` slots, ``M`` lanes, ``D`` demand nodes, ``R``
slots with a random lead time, ``X`` lanes with a disruption, ``A`` obligation age buckets, ``P``
pipeline length, ``C`` periods per block of draws):

* :class:`KernelParams`: the compiled topology the kernels read (:func:`kernel_params` builds it
  from a :class:`~meio.envs.topology.Topology`), never written;
* :class:`KernelState`: what a row carries from period to period, updated in place;
* :class:`KernelDraws`: the exogenous randomness of the current block and each row's position in it;
* :class:`KernelOut`: what one period produced, overwritten by every step.

``step_kernel(params, state, orders, draws, out)``; ``inventory_positions(params, state, node_ip,
slot_ip)``; ``order_up_to(params, slot_ip, targets, reorder, orders)``. Adding a state array is one
field in :class:`KernelState` (and its shape in :func:`new_state`); the simulator zeroes every
field at reset and exposes it as ``Simulator.state.<field>``.

The kernels accept the named tuples themselves, but numba types a named-tuple argument in Python
on every call (field by field), which costs more than the whole step of a small batch. The
simulator therefore passes :func:`as_struct` mirrors: numba ``StructRef`` objects holding the same
arrays (not copies), typed in one look-up. Inside, each kernel binds the fields it reads to local
names once, before its loops, so the compiled loops are those of plain array arguments.
"""

from __future__ import annotations

import types
from typing import TYPE_CHECKING, NamedTuple, TypeVar

import numba as nb
import numpy as np
from numba.core import types as nbtypes
from numba.experimental import structref

if TYPE_CHECKING:
    from meio.envs.topology import Topology

#: With more than one thread asked for (``meio.envs.threads``; the default is one), batches of at
#: least this many rows run the ``parallel`` compilation (rows spread over the threads); smaller
#: ones, and every batch with one thread, its serial twin, which starts no threads. OpenMP threads
#: that must be woken for every small step cost more than they save, and much more on a busy machine.
PARALLEL_ROWS = 128


def serial_twin(dispatcher, name: str):
    """The same Python function compiled without ``parallel`` (``prange`` runs as ``range``).

    A separate function object with its own name, so numba caches the two compilations apart.
    """
    f = dispatcher.py_func
    twin = types.FunctionType(f.__code__, f.__globals__, name, f.__defaults__, f.__closure__)
    twin.__qualname__ = name
    twin.__doc__ = f.__doc__
    return nb.njit(cache=True)(twin)


#: Columns of the per-period cost array ``costs`` ``(batch, len(COST_NAMES))`` of the step function.
COST_NAMES: tuple[str, ...] = ("holding", "backorder", "lost_sales", "ordering", "transport", "pipeline")
#: Column indexes into ``costs``, derived from :data:`COST_NAMES` so the order is written once
#: (plain int globals: numba freezes them as compile-time constants).
C_HOLD: int = COST_NAMES.index("holding")
C_BACK: int = COST_NAMES.index("backorder")
C_LOST: int = COST_NAMES.index("lost_sales")
C_ORDER: int = COST_NAMES.index("ordering")
C_TRANS: int = COST_NAMES.index("transport")
C_PIPE: int = COST_NAMES.index("pipeline")
#: Columns of the per-demand-node outputs ``node_out`` ``(batch, D, len(OUT_NAMES))``: demand,
#: filled from stock in its period, not filled in its period.
OUT_NAMES: tuple[str, ...] = ("demand", "filled", "short")
O_DEMAND: int = OUT_NAMES.index("demand")
O_FILLED: int = OUT_NAMES.index("filled")
O_SHORT: int = OUT_NAMES.index("short")


class KernelParams(NamedTuple):
    """The compiled topology the kernels read (never written); :func:`kernel_params` builds it.

    Node, lane and slot indexes are those of :class:`~meio.envs.topology.Topology` (nodes in
    topological order). CSR pairs ``x_ptr``/``x``: the entries of node ``j`` are
    ``x[x_ptr[j]:x_ptr[j + 1]]``.
    """

    holding: np.ndarray  # (N,) float: h_j, holding cost per unit on hand per period
    penalty: np.ndarray  # (N,) float: p_j, backorder cost per unit per period, or lost-sales cost per unit
    node_capacity: np.ndarray  # (N,) float: units node j may ship per period (inf = none)
    is_assembly: np.ndarray  # (N,) bool: arrivals go to component stock, then into kits
    demand_nodes: np.ndarray  # (D,) int: node of each demand column
    lane_bom: np.ndarray  # (M,) float: units of the source's item per unit made at the target
    lane_is_component: np.ndarray  # (M,) bool: the lane's arrivals go to the target's component stock
    lane_raw_holding: np.ndarray  # (M,) float: holding rate of that component stock
    in_lane_ptr: np.ndarray  # (N+1,) int: CSR pointer of in_lanes
    in_lanes: np.ndarray  # (M,) int: lanes into each node
    slot_lane: np.ndarray  # (S,) int: lane of each slot
    slot_capacity: np.ndarray  # (S,) float: units shipped per period on the slot (inf = none)
    slot_unit_cost: np.ndarray  # (S,) float: transport cost per unit shipped
    slot_fixed_cost: np.ndarray  # (S,) float: cost per period with a positive order
    slot_pipeline_cost: np.ndarray  # (S,) float: cost per unit in transit per period
    slot_crossing: np.ndarray  # (S,) bool: shipments may overtake each other
    slot_lt_const: np.ndarray  # (S,) int: the lead time if constant, else -1
    slot_lt_rand: np.ndarray  # (S,) int: column of KernelDraws.lt_chunk if random, else -1
    slot_disruption: np.ndarray  # (S,) int: column of KernelState.down / dis_start if disrupted, else -1
    out_ptr: np.ndarray  # (N+1,) int: CSR pointer of out_slots
    out_slots: np.ndarray  # (S - external,) int: slots shipped by each node, fcfs priority order
    in_ptr: np.ndarray  # (N+1,) int: CSR pointer of in_slots
    in_slots: np.ndarray  # (S,) int: slots into each node, file order
    ext_slots: np.ndarray  # (E,) int: slots supplied by the external supplier
    dis_start: np.ndarray  # (X,) float: probability per period that an outage starts
    dis_end: np.ndarray  # (X,) float: probability per period that an outage ends
    backorders: bool  # unmet customer demand is backordered (else lost)
    proportional: bool  # allocation in proportion to what is owed (else fcfs_index)
    whole_kits: bool  # assembly makes whole kits only (the scenario's integer_orders)


class KernelState(NamedTuple):
    """What each row carries from one period to the next; the step updates it in place."""

    on_hand: np.ndarray  # (B, N) float: stock on hand at each node (finished item)
    raw: np.ndarray  # (B, M) float: component stock of each component lane at its assembly node
    cust_bo: np.ndarray  # (B, N) float: customer backorders at each demand node
    owed: np.ndarray  # (B, S, A) float: units ordered on each slot and not yet shipped, by age in periods
    owed_depth: np.ndarray  # (B, S) int: age buckets of owed in use (buckets >= owed_depth are 0)
    pipe: np.ndarray  # (B, S, P) float: units in transit on each slot, by periods until arrival
    last_arr: np.ndarray  # (B, S) int: periods until the slot's latest shipment arrives (no crossing)
    down: np.ndarray  # (B, X) bool: the disrupted lane's external supplier is out
    t: np.ndarray  # (B,) int: periods stepped since reset


class KernelDraws(NamedTuple):
    """A block of ``C`` periods of exogenous randomness per row, and where each row is in it."""

    demand_chunk: np.ndarray  # (B, C, D) float: demand per period and demand node
    lt_chunk: np.ndarray  # (B, C, max(R, 1)) int: lead time per period of each random-lead-time slot
    dis_chunk: np.ndarray  # (B, C, max(X, 1)) float: uniforms on [0, 1) deciding outages start and end
    pos: np.ndarray  # (B,) int: the period of the block the next step uses (the step adds 1)


class KernelOut(NamedTuple):
    """What one period produced per row; the step overwrites it."""

    costs: np.ndarray  # (B, len(COST_NAMES)) float: cost of the period, columns C_HOLD ... C_PIPE
    node_out: np.ndarray  # (B, D, len(OUT_NAMES)) float: per demand node O_DEMAND, O_FILLED, O_SHORT
    shipped: np.ndarray  # (B, S) float: units that left on each slot


def kernel_params(topo: Topology) -> KernelParams:
    """The :class:`KernelParams` of a compiled topology (the same read-only arrays, not copies)."""
    return KernelParams(
        **{name: getattr(topo, name) for name in KernelParams._fields if name != "whole_kits"},
        whole_kits=topo.integer_orders,
    )


def new_state(topo: Topology, n: int) -> KernelState:
    """A zero :class:`KernelState` of ``n`` rows (``Simulator.reset`` sets the starting stock)."""
    from meio.envs.topology import AGES  # here: topology imports this module

    s = topo.n_slots
    return KernelState(
        on_hand=np.zeros((n, topo.n_nodes)),
        raw=np.zeros((n, topo.n_lanes)),
        cust_bo=np.zeros((n, topo.n_nodes)),
        owed=np.zeros((n, s, AGES)),
        owed_depth=np.zeros((n, s), dtype=np.int64),
        pipe=np.zeros((n, s, topo.pipe_len)),
        last_arr=np.zeros((n, s), dtype=np.int64),
        down=np.zeros((n, len(topo.dis_start)), dtype=np.bool_),
        t=np.zeros(n, dtype=np.int64),
    )


def new_draws(topo: Topology, n: int, chunk: int) -> KernelDraws:
    """Zero :class:`KernelDraws` of ``n`` rows and blocks of ``chunk`` periods."""
    n_rand = int((topo.slot_lt_rand >= 0).sum())
    return KernelDraws(
        demand_chunk=np.zeros((n, chunk, topo.n_demand)),
        lt_chunk=np.zeros((n, chunk, max(n_rand, 1)), dtype=np.int64),
        dis_chunk=np.zeros((n, chunk, max(len(topo.dis_start), 1))),
        pos=np.zeros(n, dtype=np.int64),
    )


def new_out(topo: Topology, n: int) -> KernelOut:
    """Zero :class:`KernelOut` of ``n`` rows."""
    return KernelOut(
        costs=np.zeros((n, len(COST_NAMES))),
        node_out=np.zeros((n, topo.n_demand, len(OUT_NAMES))),
        shipped=np.zeros((n, topo.n_slots)),
    )


# ---- numba StructRef mirrors of the named tuples (see the module docstring) ---------------------
# One StructRef type and proxy class per named tuple, with its fields; the types are module-level
# classes so that cache=True can pickle signatures naming them.
class _StructType(nbtypes.StructRef):
    def preprocess_fields(self, fields: tuple[tuple[str, nbtypes.Type], ...]) -> tuple[tuple[str, nbtypes.Type], ...]:
        # Python bools arrive as literal types; the field holds the plain type.
        return tuple((name, nbtypes.unliteral(typ)) for name, typ in fields)


@structref.register
class _ParamsType(_StructType):
    pass


@structref.register
class _StateType(_StructType):
    pass


@structref.register
class _DrawsType(_StructType):
    pass


@structref.register
class _OutType(_StructType):
    pass


class ParamsStruct(structref.StructRefProxy):
    """numba mirror of a :class:`KernelParams` (made by :func:`as_struct`)."""


class StateStruct(structref.StructRefProxy):
    """numba mirror of a :class:`KernelState` (made by :func:`as_struct`)."""


class DrawsStruct(structref.StructRefProxy):
    """numba mirror of a :class:`KernelDraws` (made by :func:`as_struct`)."""


class OutStruct(structref.StructRefProxy):
    """numba mirror of a :class:`KernelOut` (made by :func:`as_struct`)."""


structref.define_proxy(ParamsStruct, _ParamsType, list(KernelParams._fields))
structref.define_proxy(StateStruct, _StateType, list(KernelState._fields))
structref.define_proxy(DrawsStruct, _DrawsType, list(KernelDraws._fields))
structref.define_proxy(OutStruct, _OutType, list(KernelOut._fields))


# Compiled, cached constructors (a proxy class's own constructor compiles anew in every process).
@nb.njit(cache=True)
def _params_struct(*fields: np.ndarray | bool) -> ParamsStruct:
    return ParamsStruct(*fields)


@nb.njit(cache=True)
def _state_struct(*fields: np.ndarray | bool) -> StateStruct:
    return StateStruct(*fields)


@nb.njit(cache=True)
def _draws_struct(*fields: np.ndarray | bool) -> DrawsStruct:
    return DrawsStruct(*fields)


@nb.njit(cache=True)
def _out_struct(*fields: np.ndarray | bool) -> OutStruct:
    return OutStruct(*fields)


_MAKERS = {KernelParams: _params_struct, KernelState: _state_struct, KernelDraws: _draws_struct, KernelOut: _out_struct}
Structure = TypeVar("Structure", KernelParams, KernelState, KernelDraws, KernelOut)


def as_struct(value: Structure) -> structref.StructRefProxy:
    """The numba ``StructRef`` mirror of a kernel structure: the same array objects, fields in the
    same order, typed by numba in one look-up per call instead of one per field."""
    maker = _MAKERS.get(type(value))
    if maker is None:
        raise TypeError(
            f"as_struct: a {type(value).__name__} is not a kernel structure; expected one of "
            + ", ".join(cls.__name__ for cls in _MAKERS)
        )
    return maker(*value)


@nb.njit(cache=True, inline="always")  # inlined: passing a dozen arrays per call costs more than the body
def _dispatch(
    b, s, q, pos, pipe, last_arr, lt_chunk, slot_lt_const, slot_lt_rand, slot_crossing, slot_unit_cost, costs, shipped
):
    """Put ``q`` units shipped on slot ``s`` into its pipeline."""
    if q <= 0.0:
        return
    lead = slot_lt_const[s]
    if lead < 0:
        lead = lt_chunk[b, pos, slot_lt_rand[s]]
    if not slot_crossing[s]:
        if last_arr[b, s] > lead:
            lead = last_arr[b, s]
        last_arr[b, s] = lead
    pipe[b, s, lead] += q
    shipped[b, s] += q
    costs[b, C_TRANS] += q * slot_unit_cost[s]


@nb.njit(cache=True, inline="always")  # inlined: passing a dozen arrays per call costs more than the body
def _shrink(b, s, owed, depth):
    """Lower ``depth[b, s]`` past emptied age buckets (buckets at or above ``depth`` are all 0)."""
    d = depth[b, s]
    while d > 0 and owed[b, s, d - 1] <= 0.0:
        d -= 1
    depth[b, s] = d


@nb.njit(cache=True, parallel=True)
def step_kernel(params, state, orders, draws, out):
    """Advance every row of the batch by one period. See the module docstring for the order.

    ``params`` :class:`KernelParams`, ``state`` :class:`KernelState` (updated in place), ``orders``
    ``(B, S)`` units ordered on each slot (finite, >= 0), ``draws`` :class:`KernelDraws` (``pos``
    advances by one), ``out`` :class:`KernelOut` (overwritten); the structures or their
    :func:`as_struct` mirrors.
    """
    # Fields bound once, outside the row loop: the loops below index plain local arrays. One binding
    # per line: in the parallel compilation (numba 0.68) the writes into the last array of a tuple
    # unpacking `a, t = x.a, x.t` were lost (t and pos never advanced).
    holding = params.holding
    penalty = params.penalty
    node_capacity = params.node_capacity
    is_assembly = params.is_assembly
    demand_nodes = params.demand_nodes
    lane_bom = params.lane_bom
    lane_is_component = params.lane_is_component
    lane_raw_holding = params.lane_raw_holding
    in_lane_ptr = params.in_lane_ptr
    in_lanes = params.in_lanes
    slot_lane = params.slot_lane
    slot_capacity = params.slot_capacity
    slot_unit_cost = params.slot_unit_cost
    slot_fixed_cost = params.slot_fixed_cost
    slot_pipeline_cost = params.slot_pipeline_cost
    slot_crossing = params.slot_crossing
    slot_lt_const = params.slot_lt_const
    slot_lt_rand = params.slot_lt_rand
    slot_disruption = params.slot_disruption
    out_ptr = params.out_ptr
    out_slots = params.out_slots
    in_ptr = params.in_ptr
    in_slots = params.in_slots
    ext_slots = params.ext_slots
    dis_start = params.dis_start
    dis_end = params.dis_end
    backorders = params.backorders
    proportional = params.proportional
    whole_kits = params.whole_kits
    on_hand = state.on_hand
    raw = state.raw
    cust_bo = state.cust_bo
    owed = state.owed
    depth = state.owed_depth
    pipe = state.pipe
    last_arr = state.last_arr
    down = state.down
    t = state.t
    demand_chunk = draws.demand_chunk
    lt_chunk = draws.lt_chunk
    dis_chunk = draws.dis_chunk
    pos = draws.pos
    costs = out.costs
    node_out = out.node_out
    shipped = out.shipped
    n_batch, n_nodes = on_hand.shape
    n_slots = orders.shape[1]
    n_ages = owed.shape[2]
    pipe_len = pipe.shape[2]
    n_dis = down.shape[1]
    cap_left = np.empty((n_batch, n_slots))
    give = np.empty((n_batch, n_slots))
    for b in nb.prange(n_batch):
        p = pos[b]
        for c in range(costs.shape[1]):
            costs[b, c] = 0.0
        for s in range(n_slots):
            shipped[b, s] = 0.0
        # 1. orders join the obligations of this period
        for s in range(n_slots):
            q = orders[b, s]
            if q > 0.0:
                owed[b, s, 0] += q
                if depth[b, s] == 0:
                    depth[b, s] = 1
                costs[b, C_ORDER] += slot_fixed_cost[s]
        # 2. external suppliers: outages move, then ship oldest first up to capacity
        for x in range(n_dis):
            u = dis_chunk[b, p, x]
            if down[b, x]:
                if u < dis_end[x]:
                    down[b, x] = False
            elif u < dis_start[x]:
                down[b, x] = True
        for e in range(ext_slots.shape[0]):
            s = ext_slots[e]
            if slot_disruption[s] >= 0 and down[b, slot_disruption[s]]:
                continue
            room = slot_capacity[s]
            q = 0.0
            for a in range(depth[b, s] - 1, -1, -1):
                take = min(owed[b, s, a], room - q)
                if take > 0.0:
                    owed[b, s, a] -= take
                    q += take
            _shrink(b, s, owed, depth)
            _dispatch(
                b,
                s,
                q,
                p,
                pipe,
                last_arr,
                lt_chunk,
                slot_lt_const,
                slot_lt_rand,
                slot_crossing,
                slot_unit_cost,
                costs,
                shipped,
            )
        # 3. nodes, suppliers first: receive, assemble, ship
        for j in range(n_nodes):
            for k in range(in_ptr[j], in_ptr[j + 1]):
                s = in_slots[k]
                q = pipe[b, s, 0]
                if q != 0.0:
                    pipe[b, s, 0] = 0.0
                    if lane_is_component[slot_lane[s]]:
                        raw[b, slot_lane[s]] += q
                    else:
                        on_hand[b, j] += q
            if is_assembly[j]:
                kits = np.inf
                for k in range(in_lane_ptr[j], in_lane_ptr[j + 1]):
                    lane = in_lanes[k]
                    kits = min(kits, raw[b, lane] / lane_bom[lane])
                if whole_kits:
                    kits = np.floor(kits + 1e-9)
                if kits > 0.0:
                    for k in range(in_lane_ptr[j], in_lane_ptr[j + 1]):
                        lane = in_lanes[k]
                        raw[b, lane] = max(raw[b, lane] - kits * lane_bom[lane], 0.0)
                    on_hand[b, j] += kits
            lo, hi = out_ptr[j], out_ptr[j + 1]
            if lo == hi:
                continue
            budget = min(on_hand[b, j], node_capacity[j])
            top = 0
            for k in range(lo, hi):
                s = out_slots[k]
                cap_left[b, s] = slot_capacity[s]
                give[b, s] = 0.0
                top = max(top, depth[b, s])
            budget0 = budget
            for a in range(top - 1, -1, -1):
                if budget <= 0.0:
                    break
                if proportional:
                    want_sum = 0.0
                    for k in range(lo, hi):
                        s = out_slots[k]
                        want_sum += min(owed[b, s, a], cap_left[b, s])
                    if want_sum <= 0.0:
                        continue
                    share = 1.0 if want_sum <= budget else budget / want_sum
                    for k in range(lo, hi):
                        s = out_slots[k]
                        g = min(owed[b, s, a], cap_left[b, s]) * share
                        owed[b, s, a] -= g
                        cap_left[b, s] -= g
                        give[b, s] += g
                    used = want_sum if share == 1.0 else budget
                    budget -= used
                else:
                    for k in range(lo, hi):
                        s = out_slots[k]
                        g = min(owed[b, s, a], cap_left[b, s], budget)
                        if g > 0.0:
                            owed[b, s, a] -= g
                            cap_left[b, s] -= g
                            give[b, s] += g
                            budget -= g
            # Stock left = what the budget left plus what the node's capacity held back; taken this way
            # (not on-hand minus the sum shipped) an exhausted node ends at exactly 0, with no
            # rounding residue to ship as a sliver later.
            on_hand[b, j] = (on_hand[b, j] - budget0) + budget
            for k in range(lo, hi):
                s = out_slots[k]
                _shrink(b, s, owed, depth)
                _dispatch(
                    b,
                    s,
                    give[b, s],
                    p,
                    pipe,
                    last_arr,
                    lt_chunk,
                    slot_lt_const,
                    slot_lt_rand,
                    slot_crossing,
                    slot_unit_cost,
                    costs,
                    shipped,
                )
        # 4. customer demand
        for d in range(demand_nodes.shape[0]):
            j = demand_nodes[d]
            dem = demand_chunk[b, p, d]
            stock = on_hand[b, j]
            if backorders:
                served = min(stock, cust_bo[b, j])
                stock -= served
                cust_bo[b, j] -= served
            filled = min(stock, dem)
            stock -= filled
            short = dem - filled
            on_hand[b, j] = stock
            if backorders:
                cust_bo[b, j] += short
            else:
                costs[b, C_LOST] += penalty[j] * short
            node_out[b, d, O_DEMAND] = dem
            node_out[b, d, O_FILLED] = filled
            node_out[b, d, O_SHORT] = short
        # 5. costs on end-of-period quantities, then time moves on
        hold = 0.0
        back = 0.0
        for j in range(n_nodes):
            hold += holding[j] * on_hand[b, j]
            back += penalty[j] * cust_bo[b, j]
        for lane in range(raw.shape[1]):
            hold += lane_raw_holding[lane] * raw[b, lane]
        costs[b, C_HOLD] = hold
        if backorders:
            costs[b, C_BACK] = back
        transit = 0.0
        for s in range(n_slots):
            if slot_pipeline_cost[s] != 0.0:
                in_transit = 0.0
                for k in range(pipe_len):
                    in_transit += pipe[b, s, k]
                transit += slot_pipeline_cost[s] * in_transit
            for k in range(pipe_len - 1):
                pipe[b, s, k] = pipe[b, s, k + 1]
            pipe[b, s, pipe_len - 1] = 0.0
            if last_arr[b, s] > 0:
                last_arr[b, s] -= 1
            d = depth[b, s]
            if d > 0:
                start = d
                if d >= n_ages - 1:  # the two oldest buckets merge
                    owed[b, s, n_ages - 1] += owed[b, s, n_ages - 2]
                    start = n_ages - 2
                for a in range(start, 0, -1):
                    owed[b, s, a] = owed[b, s, a - 1]
                owed[b, s, 0] = 0.0
                depth[b, s] = min(d + 1, n_ages)
        costs[b, C_PIPE] = transit
        t[b] += 1
        pos[b] += 1


@nb.njit(cache=True, parallel=True)
def inventory_positions(params, state, node_ip, slot_ip):
    """Installation inventory positions of ``state`` (:class:`KernelState`) under ``params``
    (:class:`KernelParams`), written into ``node_ip`` ``(B, N)`` and ``slot_ip`` ``(B, S)``.

    ``node_ip[b, j]`` = on-hand + inbound (in transit and still owed by suppliers) - customer
    backorders - what ``j`` owes its customers. For an assembly node the inbound part counts whole
    kits: ``min over components (component stock + inbound) / bom``.

    ``slot_ip[b, s]`` is the position that an order on slot ``s`` raises, in the units the slot
    carries: the target node's ``node_ip`` for an ordinary slot, and for a component slot
    ``component stock + inbound of that component + bom * (on-hand - backorders - owed out)``.
    """
    slot_lane = params.slot_lane
    lane_bom = params.lane_bom
    lane_is_component = params.lane_is_component
    out_ptr = params.out_ptr
    out_slots = params.out_slots
    in_ptr = params.in_ptr
    in_slots = params.in_slots
    is_assembly = params.is_assembly
    on_hand = state.on_hand
    raw = state.raw
    cust_bo = state.cust_bo
    owed = state.owed
    depth = state.owed_depth
    pipe = state.pipe
    n_batch, n_nodes = on_hand.shape
    n_lanes = raw.shape[1]
    lane_scratch = np.empty((n_batch, n_lanes))
    for b in nb.prange(n_batch):
        inbound_lane = lane_scratch[b]
        for lane in range(n_lanes):
            inbound_lane[lane] = raw[b, lane]
        for j in range(n_nodes):
            net = on_hand[b, j] - cust_bo[b, j]
            for k in range(out_ptr[j], out_ptr[j + 1]):
                s = out_slots[k]
                for a in range(depth[b, s]):
                    net -= owed[b, s, a]
            inbound = 0.0
            for k in range(in_ptr[j], in_ptr[j + 1]):
                s = in_slots[k]
                q = 0.0
                for a in range(depth[b, s]):
                    q += owed[b, s, a]
                for a in range(pipe.shape[2]):
                    q += pipe[b, s, a]
                if lane_is_component[slot_lane[s]]:
                    inbound_lane[slot_lane[s]] += q
                else:
                    inbound += q
            if is_assembly[j]:
                kits = np.inf
                for k in range(in_ptr[j], in_ptr[j + 1]):
                    lane = slot_lane[in_slots[k]]
                    kits = min(kits, inbound_lane[lane] / lane_bom[lane])
                inbound = kits
            node_ip[b, j] = net + inbound
            for k in range(in_ptr[j], in_ptr[j + 1]):
                s = in_slots[k]
                lane = slot_lane[s]
                if lane_is_component[lane]:
                    slot_ip[b, s] = inbound_lane[lane] + lane_bom[lane] * net
                else:
                    slot_ip[b, s] = node_ip[b, j]


step_kernel_serial = serial_twin(step_kernel, "step_kernel_serial")
inventory_positions_serial = serial_twin(inventory_positions, "inventory_positions_serial")


@nb.njit(cache=True)
def order_up_to(params, slot_ip, targets, reorder, orders):
    """Orders that raise positions to ``targets`` (per slot, in the slot's units), written into
    ``orders`` ``(B, S)``; ``slot_ip``, ``targets`` and ``reorder`` are ``(B, S)``, ``params`` a
    :class:`KernelParams`.

    Nodes decide customers first (reverse topological order), and a node's position counts the
    orders its customers place in the same period: ``position - ratio * (this period's orders on
    it)``. Slots into the same node (or, for components, on the same lane) share one position,
    raised in the scenario's slot order: ``order_s = max(0, target_s - position)`` if ``position <=
    reorder_s`` (else 0), then ``position += order_s``. With ``reorder = target`` and one slot per
    node this is the base-stock rule, with a lower ``reorder`` the (s, S) rule; in a serial
    chain installation levels ``S_j - S_{j-1}`` order exactly what echelon levels ``S_j`` do.
    """
    slot_lane = params.slot_lane
    lane_bom = params.lane_bom
    lane_is_component = params.lane_is_component
    out_ptr = params.out_ptr
    out_slots = params.out_slots
    in_ptr = params.in_ptr
    in_slots = params.in_slots
    n_batch = slot_ip.shape[0]
    n_nodes = in_ptr.shape[0] - 1
    for b in range(n_batch):
        for j in range(n_nodes - 1, -1, -1):
            new_out = 0.0
            for k in range(out_ptr[j], out_ptr[j + 1]):
                new_out += orders[b, out_slots[k]]
            for k in range(in_ptr[j], in_ptr[j + 1]):
                s = in_slots[k]
                ratio = lane_bom[slot_lane[s]] if lane_is_component[slot_lane[s]] else 1.0
                pos = slot_ip[b, s] - ratio * new_out
                for k2 in range(in_ptr[j], k):
                    s2 = in_slots[k2]
                    if (not lane_is_component[slot_lane[s]]) or slot_lane[s2] == slot_lane[s]:
                        pos += orders[b, s2]
                orders[b, s] = targets[b, s] - pos if pos <= reorder[b, s] else 0.0
                if orders[b, s] < 0.0:
                    orders[b, s] = 0.0
