"""A differentiable twin of one period, in PyTorch, for gradient-based policy search.

The twin runs the order of events of ``docs/model.md`` ("One period ``t``") on a batch of copies
as a pure function of tensors::

    new_state, costs, node_out = period(params, state, orders, draws)

with the same states, costs and outputs as the numba kernel :func:`meio.envs.dynamics.step_kernel`
(``tests/test_twin.py`` holds the two in step on every shipped scenario, float64, ``1e-9``). Every
quantity is made of ``min``, ``max``, sums and products of the orders, so the period's cost is a
piecewise-linear function of the orders and ``torch.autograd`` gives its derivative wherever it
exists (almost everywhere) and a subgradient at the kinks. Randomness (demand ``D``, random lead
times ``L``, outage uniforms) comes in as tensors, drawn outside the graph as common random
numbers: :func:`last_draws` reads the very numbers a :class:`~meio.envs.simulator.Simulator` step
used; :func:`draw_block` draws a block of periods for training with the simulator's own streams.

What has no useful derivative is refused with :class:`TwinUnsupported`, naming the scenario key,
or handled by a documented surrogate (``docs/twin.md``):

* fixed ordering costs ``K * 1[q > 0]`` (``lanes[i].fixed_cost``): a step in ``q`` whose
  derivative is 0 wherever it exists. Refused by default; ``fixed_costs="count"`` charges them
  in the forward pass without a gradient.
* ``integer_orders``: orders are rounded (NumPy's ``rint``, halves to even) and kits are whole
  (``floor(k + 1e-9)``) in the forward pass, exactly as the kernel does; the backward pass treats
  both roundings as the identity (the straight-through estimator, Bengio, Leonard & Courville
  2013). ``integer_orders="refuse"`` refuses such scenarios instead.

The shape follows gymnax: :class:`TwinParams` is built once from a
:class:`~meio.envs.topology.Topology`; :class:`TwinState` is a tuple of batch-first tensors; no
tensor is changed in place, so autograd goes through any number of periods (:func:`rollout`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, NamedTuple

import numpy as np
import torch

from meio.envs.dynamics import COST_NAMES, OUT_NAMES
from meio.envs.scenario import Scenario, load_scenario
from meio.envs.simulator import Simulator
from meio.envs.topology import AGES, Topology, compile_topology

__all__ = [
    "RolloutResult",
    "TwinDraws",
    "TwinParams",
    "TwinState",
    "TwinUnsupported",
    "draw_block",
    "initial_state",
    "last_draws",
    "period",
    "rollout",
    "state_from_simulator",
]


class TwinUnsupported(ValueError):
    """A scenario feature the twin cannot differentiate; ``key`` is its path in the scenario file."""

    def __init__(self, key: str, message: str) -> None:
        self.key = key
        super().__init__(f"{key}: {message}")


class TwinState(NamedTuple):
    """The state of ``B`` copies at the end of a period (``docs/model.md``, "State").

    Float tensors carry gradients; ``last_arr``, ``down`` and ``t`` are integer or boolean. States
    are those the kernel can reach (``initial_state``, ``state_from_simulator``, ``period``): in
    them ``last_arr`` of a slot with a constant lead time ``L`` is at most ``L``.
    """

    on_hand: torch.Tensor  # (B, N) on-hand stock I_j per node
    raw: torch.Tensor  # (B, M) component stock per lane (assembly nodes; else 0)
    cust_bo: torch.Tensor  # (B, N) customer backorders B_j
    owed: torch.Tensor  # (B, S, AGES) obligations per slot by age (periods since ordered)
    pipe: torch.Tensor  # (B, S, P) in transit per slot by periods until arrival
    last_arr: torch.Tensor  # (B, S) long: periods until the slot's last shipment arrives
    down: torch.Tensor  # (B, X) bool: outage state per disrupted lane
    t: torch.Tensor  # (B,) long: period index


class TwinDraws(NamedTuple):
    """Exogenous randomness of one period (``(B, ...)``) or of a block (``(B, T, ...)``)."""

    demand: torch.Tensor  # (B, D) customer demand D per demand node
    lead: torch.Tensor  # (B, R) long: lead times of the slots with random lead times
    outage: torch.Tensor  # (B, X) uniforms on [0, 1) of the disrupted lanes

    def at(self, k: int) -> TwinDraws:
        """Period ``k`` of a block."""
        return TwinDraws(self.demand[:, k], self.lead[:, k], self.outage[:, k])


class _RoundST(torch.autograd.Function):
    """``rint(x)`` forward (halves to even, as ``numpy.rint``), identity backward."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return torch.round(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return grad


class _WholeKitsST(torch.autograd.Function):
    """``floor(k + 1e-9)`` forward (the kernel's whole kits, ``docs/model.md``), identity backward."""

    @staticmethod
    def forward(ctx, k: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return torch.floor(k + 1e-9)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return grad


def _resolve_device(device: str | torch.device) -> torch.device:
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(f"device: {device!r} is not a torch device; use 'cpu' or 'cuda'") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(
            f"device: {device!r} asked for, but CUDA is not available in this torch build or on "
            "this machine (torch.cuda.is_available() is False); use device='cpu'"
        )
    if dev.type not in ("cpu", "cuda"):
        raise ValueError(f"device: {device!r} is not supported; the twin runs on 'cpu' or 'cuda'")
    return dev


def _slot_key(topo: Topology, s: int, field: str) -> str:
    """Scenario path of a slot's mode field: ``lanes[i].field`` or ``lanes[i].modes[m].field``."""
    lane = int(topo.slot_lane[s])
    if len(topo.scenario.lanes[lane].modes) > 1:
        return f"lanes[{lane}].modes[{int(topo.slot_mode[s])}].{field}"
    return f"lanes[{lane}].{field}"


@dataclass(frozen=True, eq=False)
class TwinParams:
    """A :class:`~meio.envs.topology.Topology` as tensors on one device and dtype, plus its index
    structure as Python tuples (the loops over nodes and slots unroll in Python; the batch is the
    tensor dimension). Build it with :meth:`from_topology`.
    """

    topology: Topology
    device: torch.device
    dtype: torch.dtype
    holding: torch.Tensor  # (N,) h_j
    lane_raw_holding: torch.Tensor  # (M,) holding rate of component stock
    penalty: torch.Tensor  # (N,) p_j (backorder or lost-sales cost)
    slot_fixed_cost: torch.Tensor  # (S,) K_s, charged only with fixed_costs="count"
    slot_pipeline_cost: torch.Tensor  # (S,)
    initial_inventory: torch.Tensor  # (N,)
    pipe_eye: torch.Tensor  # (P, P) identity: row L puts a shipment L periods out
    count_fixed: bool
    round_orders: bool
    # index structure (Python ints, floats and bools)
    node_cap: tuple[float, ...]
    is_assembly: tuple[bool, ...]
    in_slots: tuple[tuple[int, ...], ...]  # per node, slots in (file order)
    in_lanes: tuple[tuple[int, ...], ...]  # per node, lanes in
    out_slots: tuple[tuple[int, ...], ...]  # per node, slots out in fcfs priority order
    ext_slots: tuple[int, ...]
    slot_lane: tuple[int, ...]
    slot_cap: tuple[float, ...]
    slot_unit: tuple[float, ...]
    slot_lt_const: tuple[int, ...]
    slot_lt_rand: tuple[int, ...]
    slot_crossing: tuple[bool, ...]
    slot_disruption: tuple[int, ...]
    lane_bom: tuple[float, ...]
    lane_is_component: tuple[bool, ...]
    demand_nodes: tuple[int, ...]
    dis_start: tuple[float, ...]
    dis_end: tuple[float, ...]
    backorders: bool
    proportional: bool
    pipe_len: int

    @classmethod
    def from_topology(
        cls,
        topo: Topology | Scenario | str,
        *,
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float64,
        fixed_costs: Literal["refuse", "count"] = "refuse",
        integer_orders: Literal["straight_through", "refuse"] = "straight_through",
    ) -> TwinParams:
        """Tensors of ``topo`` (a Topology, a Scenario or a scenario name) on ``device`` in ``dtype``.

        ``fixed_costs``: ``"refuse"`` (default) raises :class:`TwinUnsupported` naming the first
        ``lanes[i].fixed_cost`` that is not 0; ``"count"`` charges ``K_s`` per slot with a positive
        order, as the kernel does, with zero gradient. ``integer_orders``: ``"straight_through"``
        (default) rounds as the kernel does and differentiates as if it did not;
        ``"refuse"`` raises on ``integer_orders: true``.
        """
        if not isinstance(topo, Topology):
            topo = compile_topology(load_scenario(topo))
        dev = _resolve_device(device)
        if dtype not in (torch.float32, torch.float64):
            raise ValueError(f"dtype: {dtype!r} is not supported; use torch.float32 or torch.float64")
        if fixed_costs not in ("refuse", "count"):
            raise ValueError(f"fixed_costs: {fixed_costs!r} is not 'refuse' or 'count'")
        if integer_orders not in ("straight_through", "refuse"):
            raise ValueError(f"integer_orders: {integer_orders!r} is not 'straight_through' or 'refuse'")
        if fixed_costs == "refuse":
            for s in range(topo.n_slots):
                k = float(topo.slot_fixed_cost[s])
                if k != 0.0:
                    raise TwinUnsupported(
                        _slot_key(topo, s, "fixed_cost"),
                        f"{k:g} per order on {topo.slot_names[s]} is a fixed ordering cost K * 1[q > 0]; its "
                        "derivative in the order q is 0 wherever it exists, so gradients would ignore it. "
                        "The twin refuses it; set it to 0, or pass fixed_costs='count' to charge it without "
                        "a gradient",
                    )
        if integer_orders == "refuse" and topo.integer_orders:
            raise TwinUnsupported(
                "integer_orders",
                "true rounds orders and kits to whole units, a step function with zero "
                "derivative; pass integer_orders='straight_through' for the straight-through surrogate "
                "(rounded forward, identity backward)",
            )

        def f(a: np.ndarray) -> torch.Tensor:
            return torch.tensor(np.array(a, dtype=float), dtype=dtype, device=dev)

        def ints(a: np.ndarray) -> tuple[int, ...]:
            return tuple(int(x) for x in a)

        n = topo.n_nodes
        return cls(
            topology=topo,
            device=dev,
            dtype=dtype,
            holding=f(topo.holding),
            lane_raw_holding=f(topo.lane_raw_holding),
            penalty=f(topo.penalty),
            slot_fixed_cost=f(topo.slot_fixed_cost),
            slot_pipeline_cost=f(topo.slot_pipeline_cost),
            initial_inventory=f(topo.initial_inventory),
            pipe_eye=torch.eye(int(topo.pipe_len), dtype=dtype, device=dev),
            count_fixed=fixed_costs == "count",
            round_orders=bool(topo.integer_orders),
            node_cap=tuple(float(x) for x in topo.node_capacity),
            is_assembly=tuple(bool(x) for x in topo.is_assembly),
            in_slots=tuple(ints(topo.slots_into(j)) for j in range(n)),
            in_lanes=tuple(ints(topo.in_lanes[topo.in_lane_ptr[j] : topo.in_lane_ptr[j + 1]]) for j in range(n)),
            out_slots=tuple(ints(topo.slots_out_of(j)) for j in range(n)),
            ext_slots=ints(topo.ext_slots),
            slot_lane=ints(topo.slot_lane),
            slot_cap=tuple(float(x) for x in topo.slot_capacity),
            slot_unit=tuple(float(x) for x in topo.slot_unit_cost),
            slot_lt_const=ints(topo.slot_lt_const),
            slot_lt_rand=ints(topo.slot_lt_rand),
            slot_crossing=tuple(bool(x) for x in topo.slot_crossing),
            slot_disruption=ints(topo.slot_disruption),
            lane_bom=tuple(float(x) for x in topo.lane_bom),
            lane_is_component=tuple(bool(x) for x in topo.lane_is_component),
            demand_nodes=ints(topo.demand_nodes),
            dis_start=tuple(float(x) for x in topo.dis_start),
            dis_end=tuple(float(x) for x in topo.dis_end),
            backorders=bool(topo.backorders),
            proportional=bool(topo.proportional),
            pipe_len=int(topo.pipe_len),
        )

    @property
    def n_slots(self) -> int:
        return len(self.slot_lane)

    @property
    def n_random_lead(self) -> int:
        return sum(1 for r in self.slot_lt_rand if r >= 0)

    @property
    def n_disrupted(self) -> int:
        return len(self.dis_start)


# ------------------------------------------------------------------------------------------------
# States and draws
# ------------------------------------------------------------------------------------------------
def initial_state(params: TwinParams, batch: int) -> TwinState:
    """The state :meth:`Simulator.reset` gives (initial inventory, nothing owed or in transit)."""
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise ValueError(f"batch: {batch!r} is not an integer >= 1")
    topo, kw = params.topology, dict(dtype=params.dtype, device=params.device)
    s = topo.n_slots
    return TwinState(
        on_hand=params.initial_inventory.expand(batch, -1).clone(),
        raw=torch.zeros(batch, topo.n_lanes, **kw),
        cust_bo=torch.zeros(batch, topo.n_nodes, **kw),
        owed=torch.zeros(batch, s, AGES, **kw),
        pipe=torch.zeros(batch, s, params.pipe_len, **kw),
        last_arr=torch.zeros(batch, s, dtype=torch.long, device=params.device),
        down=torch.zeros(batch, params.n_disrupted, dtype=torch.bool, device=params.device),
        t=torch.zeros(batch, dtype=torch.long, device=params.device),
    )


def state_from_simulator(sim: Simulator, params: TwinParams) -> TwinState:
    """The simulator's current state (its public arrays), copied into tensors."""
    kw = dict(dtype=params.dtype, device=params.device)
    ints = dict(dtype=torch.long, device=params.device)
    return TwinState(
        on_hand=torch.tensor(sim.on_hand, **kw),
        raw=torch.tensor(sim.raw, **kw),
        cust_bo=torch.tensor(sim.cust_bo, **kw),
        owed=torch.tensor(sim.owed, **kw),
        pipe=torch.tensor(sim.pipe, **kw),
        last_arr=torch.tensor(sim.last_arr, **ints),
        down=torch.tensor(sim.down, dtype=torch.bool, device=params.device),
        t=torch.tensor(sim.t, **ints),
    )


def last_draws(sim: Simulator, params: TwinParams) -> TwinDraws:
    """The demand, lead-time draws and outage uniforms that ``sim``'s last :meth:`Simulator.step`
    used (entry ``pos - 1`` of its blocks): the twin's period on the same state and orders then
    reproduces that step exactly. Call it after ``sim.step`` and before the next one."""
    pos = np.asarray(sim.pos)
    if (pos < 1).any():
        raise ValueError(
            "sim: a row has not stepped since its block was drawn (pos = 0); call last_draws right after Simulator.step"
        )
    rows = np.arange(sim.n)
    p = pos - 1
    kw = dict(dtype=params.dtype, device=params.device)
    return TwinDraws(
        demand=torch.tensor(sim.demand_chunk[rows, p], **kw),
        lead=torch.tensor(sim.lt_chunk[rows, p][:, : params.n_random_lead], dtype=torch.long, device=params.device),
        outage=torch.tensor(sim.dis_chunk[rows, p][:, : params.n_disrupted], **kw),
    )


def draw_block(params: TwinParams, batch: int, periods: int, seed: int | np.random.Generator) -> TwinDraws:
    """Common random numbers for ``periods`` periods of ``batch`` copies, as a block ``(B, T, ...)``.

    The numbers are the :class:`~meio.envs.simulator.Simulator`'s own: row ``i`` gets the first
    ``periods`` periods of demand, lead times and outage uniforms of the simulator seeded
    ``seed + i`` (every demand distribution, correlation, seasonality and trace included,
    ``docs/model.md``, "Randomness"); with a :class:`numpy.random.Generator`, the row seeds are
    ``batch`` integers drawn from it. A training loop draws a block per update (or reuses one to
    compare policies on the same numbers); the block is data, outside the autograd graph.
    """
    if isinstance(periods, bool) or not isinstance(periods, int) or periods < 1:
        raise ValueError(f"periods: {periods!r} is not an integer >= 1")
    if isinstance(seed, np.random.Generator):
        seeds: list[int] | int = [int(x) for x in seed.integers(0, 2**31 - 1, size=batch)]
    elif isinstance(seed, (int, np.integer)) and not isinstance(seed, bool):
        seeds = int(seed)
    else:
        raise ValueError(f"seed: {seed!r} is not an integer or a numpy.random.Generator")
    sim = Simulator(params.topology.scenario, n=batch, chunk=periods, threads=1)
    sim.reset(seeds=seeds)
    kw = dict(dtype=params.dtype, device=params.device)
    return TwinDraws(
        demand=torch.tensor(sim.demand_chunk, **kw),
        lead=torch.tensor(sim.lt_chunk[:, :, : params.n_random_lead], dtype=torch.long, device=params.device),
        outage=torch.tensor(sim.dis_chunk[:, :, : params.n_disrupted], **kw),
    )


# ------------------------------------------------------------------------------------------------
# The period
# ------------------------------------------------------------------------------------------------
def period(
    params: TwinParams, state: TwinState, orders: torch.Tensor, draws: TwinDraws
) -> tuple[TwinState, torch.Tensor, torch.Tensor]:
    """One period ``t`` for every copy: ``(new_state, costs (B, 6), node_out (B, D, 3))``.

    ``costs`` has the columns of :data:`meio.envs.dynamics.COST_NAMES`, ``node_out`` those of
    :data:`~meio.envs.dynamics.OUT_NAMES` (demand ``D``, filled, short). The steps, with the
    symbols of ``docs/model.md``; ``o_{s,a}`` is what slot ``s``'s supplier owes by age ``a``,
    ``P_{s,k}`` what arrives on ``s`` in ``k`` periods:

    1. ``q_s = max(q_s, 0)`` (``rint(q_s)`` with ``integer_orders``); ``o_{s,0} += q_s``; ordering
       cost ``sum_s K_s 1[q_s > 0]`` (only with ``fixed_costs="count"``).
    2. Outages: a lane up goes down if ``u < start_probability``, one down comes back if
       ``u < 1 / mean_duration``. Each external slot up ships ``x_s = sum_a take_a``,
       ``take_a = min(o_{s,a}, c_s - shipped so far)``, oldest ``a`` first.
    3. Nodes ``j`` in topological order: receive ``P_{s,0}`` (to on-hand ``I_j``, or to component
       stock ``R_l``); assembly ``k = min_l R_l / r_l`` (``floor(k + 1e-9)`` with integer
       orders), ``R_l = max(R_l - k r_l, 0)``, ``I_j += k``. Ship from the budget
       ``b = min(I_j, C_j)``, oldest age first: ``fcfs_index`` gives each slot in priority order
       ``g = min(o_{s,a}, c_s^left, b)``; ``proportional`` gives ``g_s = w_s min(1, b / sum w)``,
       ``w_s = min(o_{s,a}, c_s^left)``. ``I_j = (I_j - b_0) + b``. A slot shipping ``x > 0``
       puts it in ``P_{s,L}`` with ``L`` constant or drawn, ``L = max(L, last_s)`` without
       order crossing; transport cost ``v_s x``.
    4. Demand ``D_j``: backorders first, ``served = min(I_j, B_j)``; then
       ``filled = min(I_j, D_j)``, ``short = D_j - filled`` is backordered or lost
       (``p_j short``).
    5. Costs: ``sum_j h_j I_j + sum_l h_l R_l``; ``sum_j p_j B_j``; pipeline
       ``sum_s c^pipe_s sum_k P_{s,k}``; then ``P`` moves one period and ``o`` ages one period
       (the two oldest buckets merge).

    Every branch of the kernel is a ``min``/``max``/``where`` here, in the kernel's order of
    operations, so float64 results agree with it to rounding; no tensor is modified in place.
    """
    p = params
    if orders.dim() != 2 or orders.shape[1] != p.n_slots or orders.shape[0] != state.on_hand.shape[0]:
        raise ValueError(
            f"orders: shape {tuple(orders.shape)}; expected ({state.on_hand.shape[0]}, {p.n_slots}) (rows, slots)"
        )
    if not bool(torch.isfinite(orders).all()):
        bad = torch.nonzero(~torch.isfinite(orders))[0].tolist()
        raise ValueError(
            f"orders[{bad[0]}, {bad[1]}] ({p.topology.slot_names[bad[1]]}): "
            f"{orders[bad[0], bad[1]].item()} is not a finite quantity; orders must be finite "
            "numbers >= 0"
        )
    b_n = orders.shape[0]
    dtype, dev = p.dtype, p.device
    q_all = torch.clamp(orders.to(dtype), min=0.0)
    if p.round_orders:
        q_all = _RoundST.apply(q_all)
    zero = torch.zeros(b_n, dtype=dtype, device=dev)
    # Ages in use per slot at the start of the period (one host read per period): obligations of
    # ages >= 1 change only when their supplier ships, so this bounds every age loop below, as the
    # kernel's ``depth`` does. Age 0 always counts (this period's orders).
    live = (state.owed > 0).any(0).cpu().numpy()
    top = np.where(live.any(1), AGES - np.argmax(live[:, ::-1], 1), 1).tolist()

    on_hand = list(state.on_hand.unbind(1))
    raw = list(state.raw.unbind(1))
    cust_bo = list(state.cust_bo.unbind(1))
    # Only the ages in use are taken apart into columns; the others stay one (zero) tensor per slot.
    owed = [list(state.owed[:, s, : top[s]].unbind(1)) for s in range(p.n_slots)]
    pipe = list(state.pipe.unbind(1))
    last_arr = list(state.last_arr.unbind(1))
    q_cols = q_all.unbind(1)
    trans = zero
    eye = p.pipe_eye

    # 1. orders join the obligations of age 0
    for s in range(p.n_slots):
        owed[s][0] = owed[s][0] + q_cols[s]
    if p.count_fixed:
        ordering = (q_all > 0).to(dtype) @ p.slot_fixed_cost
    else:
        ordering = zero

    def dispatch(s: int, x: torch.Tensor) -> None:
        """``x`` units leave on slot ``s``: into the pipeline at its lead time; transport cost."""
        nonlocal trans
        const = p.slot_lt_const[s]
        if const >= 0:
            # A constant lead time L: the last arrival on the slot is never more than L periods
            # away (it was set to L and only counts down), so max(L, last) = L.
            if not p.slot_crossing[s]:
                last_arr[s] = torch.where(x > 0, const, last_arr[s])
            pipe[s] = pipe[s] + x[:, None] * eye[const]
        else:
            lead = draws.lead[:, p.slot_lt_rand[s]]
            if not p.slot_crossing[s]:
                # L = max(L drawn, periods until the previous shipment on the slot arrives)
                lead = torch.maximum(last_arr[s], lead)
                last_arr[s] = torch.where(x > 0, lead, last_arr[s])
            pipe[s] = pipe[s] + x[:, None] * eye[lead]
        if p.slot_unit[s] != 0.0:
            trans = trans + x * p.slot_unit[s]

    # 2. outages move, then the external supplier ships oldest first up to each slot's capacity
    down_cols = list(state.down.unbind(1))
    for x_i in range(p.n_disrupted):
        u = draws.outage[:, x_i]
        down_cols[x_i] = torch.where(down_cols[x_i], ~(u < p.dis_end[x_i]), u < p.dis_start[x_i])
    for s in p.ext_slots:
        room = p.slot_cap[s]
        sent: torch.Tensor | None = None
        up = None if p.slot_disruption[s] < 0 else ~down_cols[p.slot_disruption[s]]
        for a in range(top[s] - 1, -1, -1):
            if a > 0 and not live[s, a]:
                continue  # nothing of this age owed in any row: take would be 0
            take = owed[s][a] if sent is None else torch.minimum(owed[s][a], room - sent)
            if sent is None and room != float("inf"):
                take = torch.clamp(take, max=room)
            if up is not None:
                take = torch.where(up, take, 0.0)
            owed[s][a] = owed[s][a] - take
            sent = take if sent is None else sent + take
        dispatch(s, sent if sent is not None else zero)

    # 3. nodes, suppliers first: receive, assemble, ship
    for j in range(len(p.node_cap)):
        for s in p.in_slots[j]:
            # Column 0 of the pipeline is read here and dropped when the pipelines move (step 5):
            # nothing is dispatched on a slot after its customer has received.
            arrived = pipe[s][:, 0]
            lane = p.slot_lane[s]
            if p.lane_is_component[lane]:
                raw[lane] = raw[lane] + arrived
            else:
                on_hand[j] = on_hand[j] + arrived
        if p.is_assembly[j]:
            kits: torch.Tensor | None = None
            for lane in p.in_lanes[j]:
                r = raw[lane] / p.lane_bom[lane]
                kits = r if kits is None else torch.minimum(kits, r)
            if kits is None:  # compile_topology gives every assembly node a lane in
                continue
            if p.round_orders:
                kits = _WholeKitsST.apply(kits)
            kits = torch.clamp(kits, min=0.0)
            for lane in p.in_lanes[j]:
                raw[lane] = torch.clamp(raw[lane] - kits * p.lane_bom[lane], min=0.0)
            on_hand[j] = on_hand[j] + kits
        outs = p.out_slots[j]
        if not outs:
            continue
        cap = p.node_cap[j]
        budget = on_hand[j] if cap == float("inf") else torch.clamp(on_hand[j], max=cap)
        budget0 = budget
        cap_left: list[torch.Tensor | None] = [
            None if p.slot_cap[s] == float("inf") else torch.full((b_n,), p.slot_cap[s], dtype=dtype, device=dev)
            for s in outs
        ]
        give: list[torch.Tensor | None] = [None] * len(outs)
        for a in range(max(top[s] for s in outs) - 1, -1, -1):
            # Slots owing nothing of age a in any row are left out: their share is 0 and every
            # update by 0 is exact, so this changes no number.
            here = [i for i, s in enumerate(outs) if a < top[s] and (a == 0 or live[s, a])]
            if not here:
                continue
            if p.proportional:
                # The kernel stops at an empty budget; here such a row gets share 0 and uses nothing.
                active = budget > 0
                want = {
                    i: owed[outs[i]][a] if cap_left[i] is None else torch.minimum(owed[outs[i]][a], cap_left[i])
                    for i in here
                }
                want_sum = want[here[0]]
                for i in here[1:]:
                    want_sum = want_sum + want[i]
                full = want_sum <= budget
                # where() evaluates both branches: a safe denominator keeps 0/0 out of the gradient
                share = torch.where(full, 1.0, budget / torch.where(want_sum > 0, want_sum, 1.0))
                share = torch.where(active, share, 0.0)
                for i in here:
                    s = outs[i]
                    g = want[i] * share
                    owed[s][a] = owed[s][a] - g
                    if cap_left[i] is not None:
                        cap_left[i] = cap_left[i] - g
                    give[i] = g if give[i] is None else give[i] + g
                used = torch.where(share == 1.0, want_sum, budget)
                budget = budget - torch.where(active, used, 0.0)
            else:
                for i in here:
                    s = outs[i]
                    g = torch.minimum(owed[s][a], budget)
                    if cap_left[i] is not None:
                        g = torch.minimum(g, cap_left[i])
                        cap_left[i] = cap_left[i] - g
                    owed[s][a] = owed[s][a] - g
                    give[i] = g if give[i] is None else give[i] + g
                    budget = budget - g
        on_hand[j] = (on_hand[j] - budget0) + budget
        for i, s in enumerate(outs):
            dispatch(s, give[i] if give[i] is not None else zero)

    # 4. customer demand: old backorders first, then the new demand
    lost = zero
    outs_d = []
    for d, j in enumerate(p.demand_nodes):
        dem = draws.demand[:, d]
        stock = on_hand[j]
        if p.backorders:
            served = torch.minimum(stock, cust_bo[j])
            stock = stock - served
            cust_bo[j] = cust_bo[j] - served
        filled = torch.minimum(stock, dem)
        stock = stock - filled
        short = dem - filled
        on_hand[j] = stock
        if p.backorders:
            cust_bo[j] = cust_bo[j] + short
        else:
            lost = lost + short * p.penalty[j]
        by_out = {"demand": dem, "filled": filled, "short": short}
        outs_d.append(torch.stack([by_out[name] for name in OUT_NAMES], 1))

    # 5. costs on end-of-period quantities, then pipelines move and obligations age
    on_hand_t = torch.stack(on_hand, 1)
    raw_t = torch.stack(raw, 1) if raw else state.raw
    cust_bo_t = torch.stack(cust_bo, 1)
    hold = on_hand_t @ p.holding + (raw_t @ p.lane_raw_holding if raw else zero)
    back = cust_bo_t @ p.penalty if p.backorders else zero
    pipe_t = torch.stack(pipe, 1)
    in_transit = pipe_t[:, :, 1:].sum(2)
    pipeline = in_transit @ p.slot_pipeline_cost
    by_name = {
        "holding": hold,
        "backorder": back,
        "lost_sales": lost,
        "ordering": ordering,
        "transport": trans,
        "pipeline": pipeline,
    }
    costs = torch.stack([by_name[name] for name in COST_NAMES], 1)
    new_pipe = torch.cat([pipe_t[:, :, 1:], torch.zeros_like(pipe_t[:, :, :1])], 2)
    owed_t = torch.stack(
        [
            torch.cat([torch.stack(o, 1), state.owed[:, s, top[s] :]], 1) if top[s] < AGES else torch.stack(o, 1)
            for s, o in enumerate(owed)
        ],
        1,
    )
    new_owed = torch.cat(
        [
            torch.zeros_like(owed_t[:, :, :1]),
            owed_t[:, :, : AGES - 2],
            owed_t[:, :, AGES - 2 : AGES - 1] + owed_t[:, :, AGES - 1 :],
        ],
        2,
    )
    last_t = torch.clamp(torch.stack(last_arr, 1) - 1, min=0)
    down_t = torch.stack(down_cols, 1) if down_cols else state.down
    node_out = torch.stack(outs_d, 1) if outs_d else torch.zeros(b_n, 0, len(OUT_NAMES), dtype=dtype, device=dev)
    new_state = TwinState(
        on_hand=on_hand_t,
        raw=raw_t,
        cust_bo=cust_bo_t,
        owed=new_owed,
        pipe=new_pipe,
        last_arr=last_t,
        down=down_t,
        t=state.t + 1,
    )
    return new_state, costs, node_out


# ------------------------------------------------------------------------------------------------
# Rollouts
# ------------------------------------------------------------------------------------------------
class RolloutResult(NamedTuple):
    """What :func:`rollout` produced: per-period costs ``(B, T, 6)``, outputs ``(B, T, D, 3)``, the
    final state. ``costs.sum(-1).mean()`` is the mean cost per period, the loss of a policy trained
    by backpropagation through the periods (HDPO; Alvo, Russo & Kanoria 2023)."""

    costs: torch.Tensor
    node_out: torch.Tensor
    state: TwinState


Policy = Callable[[TwinState, int], torch.Tensor]


def rollout(
    params: TwinParams, policy: Policy, state: TwinState, draws: TwinDraws, periods: int | None = None
) -> RolloutResult:
    """Run ``periods`` periods (default: the block's length) from ``state``; in period ``k``
    ``policy(state, k)`` returns the orders ``(B, S)`` from the state at the end of the previous
    period. Gradients flow from the costs to whatever the policy's orders depend on."""
    n = draws.demand.shape[1] if periods is None else periods
    if n > draws.demand.shape[1]:
        raise ValueError(f"periods: {n} is more than the {draws.demand.shape[1]} periods of draws")
    costs, outs = [], []
    for k in range(n):
        orders = policy(state, k)
        if orders.shape != (state.on_hand.shape[0], params.n_slots):
            raise ValueError(
                f"policy: orders of shape {tuple(orders.shape)}; expected "
                f"({state.on_hand.shape[0]}, {params.n_slots}) (rows, slots)"
            )
        state, c, o = period(params, state, orders, draws.at(k))
        costs.append(c)
        outs.append(o)
    return RolloutResult(costs=torch.stack(costs, 1), node_out=torch.stack(outs, 1), state=state)
