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

import math
import weakref
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
    demand_penalty: torch.Tensor  # (D,) p_j of the demand nodes
    demand_index: torch.Tensor  # (D,) long: the demand nodes
    one: torch.Tensor  # () 1 and 0 in dtype: where() with a tensor, not a number to convert per call
    nought: torch.Tensor
    slot_fixed_cost: torch.Tensor  # (S,) K_s, charged only with fixed_costs="count"
    slot_pipeline_cost: torch.Tensor  # (S,)
    initial_inventory: torch.Tensor  # (N,)
    pipe_eye: torch.Tensor  # (P, P) identity: row L puts a shipment L periods out
    slot_lead: torch.Tensor  # (S,) long: constant lead time L_s (0 on slots with random ones)
    slot_lead_eye: torch.Tensor  # (S, P) pipe_eye[slot_lead]
    slot_random: torch.Tensor  # (S,) bool: lead time drawn each period
    slot_random_ordered: torch.Tensor  # (S,) bool: drawn and without order crossing
    slot_ordered: torch.Tensor  # (S,) bool: without order crossing
    slot_rand_col: torch.Tensor  # (S,) long: column of draws.lead of the slot (0 if constant)
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
    slot_same_period: tuple[bool, ...]  # its lead time can be 0: arrives in the period it ships
    any_random_lead: bool
    raw_moves: bool  # some lane is a component lane or some node assembles
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
        lt_const = np.asarray(topo.slot_lt_const, dtype=np.int64)
        lt_rand = np.asarray(topo.slot_lt_rand, dtype=np.int64)
        random = lt_rand >= 0
        crossing = np.asarray(topo.slot_crossing, dtype=bool)
        lead = np.where(random, 0, lt_const)
        shortest = np.where(random, topo.lt_values[np.maximum(lt_rand, 0)].min(1), lt_const)
        eye = torch.eye(int(topo.pipe_len), dtype=dtype, device=dev)

        def flags(a: np.ndarray) -> torch.Tensor:
            return torch.tensor(np.asarray(a, dtype=bool), device=dev)

        return cls(
            topology=topo,
            device=dev,
            dtype=dtype,
            holding=f(topo.holding),
            lane_raw_holding=f(topo.lane_raw_holding),
            penalty=f(topo.penalty),
            demand_penalty=f(np.asarray(topo.penalty, dtype=float)[np.asarray(topo.demand_nodes, dtype=np.int64)]),
            demand_index=torch.tensor(np.asarray(topo.demand_nodes, dtype=np.int64), device=dev),
            one=torch.tensor(1.0, dtype=dtype, device=dev),
            nought=torch.tensor(0.0, dtype=dtype, device=dev),
            slot_fixed_cost=f(topo.slot_fixed_cost),
            slot_pipeline_cost=f(topo.slot_pipeline_cost),
            initial_inventory=f(topo.initial_inventory),
            pipe_eye=eye,
            slot_lead=torch.tensor(lead, dtype=torch.long, device=dev),
            slot_lead_eye=eye[torch.tensor(lead, dtype=torch.long, device=dev)],
            slot_random=flags(random),
            slot_random_ordered=flags(random & ~crossing),
            slot_ordered=flags(~crossing),
            slot_rand_col=torch.tensor(np.maximum(lt_rand, 0), dtype=torch.long, device=dev),
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
            slot_same_period=tuple(bool(x == 0) for x in shortest),
            any_random_lead=bool(random.any()),
            raw_moves=bool(np.any(topo.lane_is_component) or np.any(topo.is_assembly)),
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


def _copied(a: np.ndarray, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """``a`` copied into a new tensor: ``from_numpy`` shares the array and ``to(copy=True)`` copies
    it once, converted (about half the cost of ``torch.tensor(a, dtype=...)``, which a policy pays
    every simulated period)."""
    return torch.from_numpy(a).to(dtype=dtype, device=device, copy=True)


def state_from_simulator(sim: Simulator, params: TwinParams) -> TwinState:
    """The simulator's current state (its public arrays), copied into tensors."""
    dt, dev = params.dtype, params.device
    return TwinState(
        on_hand=_copied(sim.on_hand, dt, dev),
        raw=_copied(sim.raw, dt, dev),
        cust_bo=_copied(sim.cust_bo, dt, dev),
        owed=_copied(sim.owed, dt, dev),
        pipe=_copied(sim.pipe, dt, dev),
        last_arr=_copied(sim.last_arr, torch.long, dev),
        down=_copied(sim.down, torch.bool, dev),
        t=_copied(sim.t, torch.long, dev),
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


#: The simulator each TwinParams draws its blocks with, by (batch, periods): building one costs as
#: much as a reset (a seed sequence per row and stream), and a training loop draws a block per step.
_BLOCK_SIMULATORS: weakref.WeakKeyDictionary[TwinParams, dict[tuple[int, int], Simulator]] = weakref.WeakKeyDictionary()


def _block_simulator(params: TwinParams, batch: int, periods: int) -> Simulator:
    """A simulator of ``batch`` rows and blocks of ``periods`` for ``params``, kept between calls
    (every draw resets all its rows with new seeds, so no state carries over)."""
    sims = _BLOCK_SIMULATORS.setdefault(params, {})
    sim = sims.get((batch, periods))
    if sim is None:
        sims.clear()  # a loop draws blocks of one size: keep one simulator
        sim = sims[(batch, periods)] = Simulator(params.topology, n=batch, chunk=periods, threads=1)
    return sim


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
    sim = _block_simulator(params, batch, periods)
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
    # One reduction and one host read per period; the element-wise test only where the sum is not
    # finite (a non-finite order, or finite orders whose sum overflows).
    if not math.isfinite(float(orders.detach().sum())) and not bool(torch.isfinite(orders).all()):
        bad = torch.nonzero(~torch.isfinite(orders))[0].tolist()
        raise ValueError(
            f"orders[{bad[0]}, {bad[1]}] ({p.topology.slot_names[bad[1]]}): "
            f"{orders[bad[0], bad[1]].item()} is not a finite quantity; orders must be finite "
            "numbers >= 0"
        )
    b_n = orders.shape[0]
    dtype, dev = p.dtype, p.device
    n_s = p.n_slots
    q_all = torch.clamp(orders.to(dtype), min=0.0)
    if p.round_orders:
        # rint forward, identity backward (straight-through): q + (rint(q) - q) is rint(q) exactly
        # for q >= 0 (rint(q) - q is exact, Sterbenz), and its derivative in q is 1. Cheaper than
        # a Python autograd.Function, whose backward calls back into Python every period.
        q_all = q_all + (torch.round(q_all) - q_all).detach()
    zero = torch.zeros(b_n, dtype=dtype, device=dev)
    # Ages in use per slot at the start of the period (one host read per period): obligations of
    # ages >= 1 change only when their supplier ships, so this bounds every age loop below, as the
    # kernel's ``depth`` does. Age 0 always counts (this period's orders).
    live = (state.owed > 0).any(0).cpu().numpy()
    top = np.where(live.any(1), AGES - np.argmax(live[:, ::-1], 1), 1).tolist()

    # The period is overhead-bound (a few hundred small tensors per period): each state tensor is
    # taken apart into columns once here and put together once in step 5, so a period costs a fixed
    # number of operations per slot and per age in use, and the autograd graph is as small.
    on_hand = list(state.on_hand.unbind(1))
    # Component stock changes only at assembly nodes; elsewhere it passes through untouched.
    raw = list(state.raw.unbind(1)) if p.raw_moves else []
    # Obligations: only the ages below the oldest in use (``deep``) are taken apart into columns;
    # the older ones are all 0 and only age (step 5). Without that bound every period would take
    # apart and put together S x AGES columns, most of them empty.
    deep = max(top)
    narrow = deep <= AGES - 2
    width = deep if narrow else AGES
    owed_cols = (state.owed[:, :, :deep] if narrow else state.owed).reshape(b_n, n_s * width).unbind(1)
    owed = [list(owed_cols[s * width : (s + 1) * width]) for s in range(n_s)]
    q_cols = q_all.unbind(1)
    trans = zero

    # Lead time of a shipment on each slot this period (B, S) or (S,) and its row of the identity:
    # a shipment x on slot s adds x * eye[L_s] to the slot's pipeline (step 5). Each slot ships
    # once per period, so the last arrival it sees is the one of the state.
    if p.any_random_lead:
        drawn = draws.lead[:, p.slot_rand_col]
        # L = max(L drawn, periods until the previous shipment on the slot arrives) without crossing
        drawn = torch.where(p.slot_random_ordered, torch.maximum(state.last_arr, drawn), drawn)
        lead_all = torch.where(p.slot_random, drawn, p.slot_lead)
        lead_eye = p.pipe_eye[lead_all]
    else:
        # A constant lead time L: the last arrival on the slot is never more than L periods
        # away (it was set to L and only counts down), so max(L, last) = L.
        lead_all = p.slot_lead
        lead_eye = p.slot_lead_eye
    shipped: list[torch.Tensor] = [zero] * n_s

    # 1. orders join the obligations of age 0
    for s in range(n_s):
        owed[s][0] = owed[s][0] + q_cols[s]
    if p.count_fixed:
        ordering = (q_all > 0).to(dtype) @ p.slot_fixed_cost
    else:
        ordering = zero

    def dispatch(s: int, x: torch.Tensor) -> None:
        """``x`` units leave on slot ``s`` (into its pipeline in step 5); transport cost."""
        nonlocal trans
        shipped[s] = x
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
                take = torch.where(up, take, p.nought)
            owed[s][a] = owed[s][a] - take
            sent = take if sent is None else sent + take
        dispatch(s, sent if sent is not None else zero)

    # 3. nodes, suppliers first: receive, assemble, ship
    # What arrives on each slot: column 0 of the pipeline at the start of the period, plus, on a
    # slot whose lead time can be 0, what its supplier shipped earlier in this period.
    arriving = state.pipe[:, :, 0].unbind(1)
    for j in range(len(p.node_cap)):
        for s in p.in_slots[j]:
            arrived = arriving[s]
            if p.slot_same_period[s]:
                arrived = arrived + shipped[s] * lead_eye[..., s, 0]
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
                share = torch.where(full, p.one, budget / torch.where(want_sum > 0, want_sum, p.one))
                share = torch.where(active, share, p.nought)
                for i in here:
                    s = outs[i]
                    g = want[i] * share
                    owed[s][a] = owed[s][a] - g
                    if cap_left[i] is not None:
                        cap_left[i] = cap_left[i] - g
                    give[i] = g if give[i] is None else give[i] + g
                used = torch.where(share == 1.0, want_sum, budget)
                budget = budget - torch.where(active, used, p.nought)
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

    # 4. customer demand: old backorders first, then the new demand. The steps are elementwise, so
    # the demand nodes go through them together as one (B, D) tensor.
    lost = zero
    dn = p.demand_nodes
    dem = draws.demand
    stock = torch.stack([on_hand[j] for j in dn], 1) if dn else dem
    cust_bo_t = state.cust_bo
    if p.backorders and dn:
        backlog = state.cust_bo.index_select(1, p.demand_index)
        served = torch.minimum(stock, backlog)
        stock = stock - served
        backlog = backlog - served
    filled = torch.minimum(stock, dem)
    stock = stock - filled
    short = dem - filled
    for j, col in zip(dn, stock.unbind(1)):
        on_hand[j] = col
    if p.backorders and dn:
        # only demand nodes have customers, so only their backorders change
        cust_bo_t = state.cust_bo.index_copy(1, p.demand_index, backlog + short)
    elif dn:
        for col in (short * p.demand_penalty).unbind(1):
            lost = lost + col
    by_out = {"demand": dem, "filled": filled, "short": short}
    node_out = torch.stack([by_out[name] for name in OUT_NAMES], 2)

    # 5. costs on end-of-period quantities, then pipelines move and obligations age
    on_hand_t = torch.stack(on_hand, 1)
    raw_t = torch.stack(raw, 1) if raw else state.raw
    # Component stock that never moves is 0 (it starts at 0): its holding cost adds nothing.
    hold = on_hand_t @ p.holding + raw_t @ p.lane_raw_holding if raw else on_hand_t @ p.holding
    back = cust_bo_t @ p.penalty if p.backorders else zero
    # Shipments join the pipelines at their lead times; a slot without a shipment adds 0.
    shipped_t = torch.stack(shipped, 1)
    pipe_t = state.pipe + shipped_t[:, :, None] * lead_eye
    moving = pipe_t[:, :, 1:]
    in_transit = moving.sum(2)
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
    new_pipe = torch.cat([moving, torch.zeros_like(pipe_t[:, :, :1])], 2)
    # Obligations age one period: age a becomes a + 1, the two oldest buckets merge, age 0 is empty.
    if narrow:
        head = torch.stack([c for per_slot in owed for c in per_slot], 1).view(b_n, n_s, deep)
        new_owed = torch.cat(
            [
                torch.zeros(b_n, n_s, 1, dtype=dtype, device=dev),
                head,
                state.owed[:, :, deep : AGES - 2],
                state.owed[:, :, AGES - 2 : AGES - 1] + state.owed[:, :, AGES - 1 :],
            ],
            2,
        )
    else:
        aged = [[zero, *o[: AGES - 2], o[AGES - 2] + o[AGES - 1]] for o in owed]
        new_owed = torch.stack([c for per_slot in aged for c in per_slot], 1).view(b_n, n_s, AGES)
    # A slot without order crossing that shipped remembers when its shipment arrives.
    last_arr = torch.where((shipped_t > 0) & p.slot_ordered, lead_all, state.last_arr)
    last_t = torch.clamp(last_arr - 1, min=0)
    down_t = torch.stack(down_cols, 1) if down_cols else state.down
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
