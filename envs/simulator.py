"""A batch of independent copies of one scenario, stepped together by the one step function.

:class:`Simulator` owns the state arrays, one :class:`numpy.random.Generator` per row and the
exogenous randomness drawn from it. Each row draws its demand, lead times and outage uniforms a
block of ``chunk`` periods at a time (at reset and whenever the block is used up), always in the
same order: demand (node by node, or all at once through the Gaussian copula), then random lead
times, then outages. So

* a row's randomness depends only on its seed, never on the policy or on the other rows:
  evaluating several policies with the same seeds uses common random numbers;
* row ``i`` of a batch seeded ``seed + i`` is the single simulator seeded ``seed + i``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from envs.distributions import DemandModel
from envs.dynamics import (PARALLEL_ROWS, inventory_positions, inventory_positions_serial, order_up_to,
                           step_kernel, step_kernel_serial)
from envs.scenario import Scenario, load_scenario
from envs.topology import AGES, Topology, compile_topology

#: Longest block of periods drawn at once per row (memory: rows x chunk x (demand nodes + random
#: slots + outage lanes) x 8 bytes).
MAX_CHUNK = 128


@dataclass(frozen=True)
class StepResult:
    """What one period produced, per row. Arrays are the simulator's buffers: copy to keep them."""

    orders: np.ndarray      # (B, S) orders placed, after rounding and clipping at 0
    costs: np.ndarray       # (B, 6) holding, backorder, lost_sales, ordering, transport, pipeline
    node_out: np.ndarray    # (B, D, 3) per demand node: demand, filled from stock, short
    shipped: np.ndarray     # (B, S) units that left on each slot

    @property
    def total_cost(self) -> np.ndarray:
        return self.costs.sum(axis=1)


class Simulator:
    """``n`` independent copies of a scenario (the rows of the batch)."""

    def __init__(self, scenario: str | Path | Scenario, n: int = 1, chunk: int | None = None) -> None:
        if n < 1:
            raise ValueError(f"n: {n} rows requested; a simulator needs at least 1")
        self.scenario = load_scenario(scenario)
        self.topology: Topology = compile_topology(self.scenario)
        topo = self.topology
        self.n = n
        self.chunk = int(chunk or min(topo.horizon, MAX_CHUNK))
        b, nn, s = n, topo.n_nodes, topo.n_slots
        n_rand = int((topo.slot_lt_rand >= 0).sum())
        n_dis = len(topo.dis_start)
        self.on_hand = np.zeros((b, nn))
        self.raw = np.zeros((b, topo.n_lanes))
        self.cust_bo = np.zeros((b, nn))
        self.owed = np.zeros((b, s, AGES))
        self.owed_depth = np.zeros((b, s), dtype=np.int64)     # age buckets in use per slot
        self.pipe = np.zeros((b, s, topo.pipe_len))
        self.last_arr = np.zeros((b, s), dtype=np.int64)
        self.down = np.zeros((b, n_dis), dtype=np.bool_)
        self.t = np.zeros(b, dtype=np.int64)
        self.pos = np.zeros(b, dtype=np.int64)
        self.demand_chunk = np.zeros((b, self.chunk, topo.n_demand))
        self.lt_chunk = np.zeros((b, self.chunk, max(n_rand, 1)), dtype=np.int64)
        self.dis_chunk = np.zeros((b, self.chunk, max(n_dis, 1)))
        self.trace_offset = np.zeros((b, topo.n_demand), dtype=np.int64)
        self.rngs: list[np.random.Generator | None] = [None] * n
        # The last period's results (the buffers StepResult points to).
        self.last_orders = np.zeros((b, s))
        self.last_costs = np.zeros((b, 6))
        self.last_node_out = np.zeros((b, topo.n_demand, 3))
        self.last_shipped = np.zeros((b, s))
        self._node_ip = np.zeros((b, nn))
        self._slot_ip = np.zeros((b, s))
        self._n_rand = n_rand
        self._descendants = topo.descendants()
        parallel = n >= PARALLEL_ROWS
        self.parallel = parallel
        self._step_kernel = step_kernel if parallel else step_kernel_serial
        self._positions_kernel = inventory_positions if parallel else inventory_positions_serial
        self._demand_model = DemandModel(topo.demand_specs, topo.correlation_chol)
        self._n_dis = n_dis
        self._topo_args = (
            topo.holding, topo.penalty, topo.node_capacity, topo.is_assembly, topo.demand_nodes,
            topo.lane_bom, topo.lane_is_component, topo.lane_raw_holding, topo.in_lane_ptr, topo.in_lanes,
            topo.slot_lane, topo.slot_capacity, topo.slot_unit_cost, topo.slot_fixed_cost,
            topo.slot_pipeline_cost, topo.slot_crossing, topo.slot_lt_const, topo.slot_lt_rand,
            topo.slot_disruption, topo.out_ptr, topo.out_slots, topo.in_ptr, topo.in_slots,
            topo.ext_slots, topo.dis_start, topo.dis_end,
            topo.backorders, topo.proportional, topo.integer_orders,
        )
        self._state_args = (self.on_hand, self.raw, self.cust_bo, self.owed, self.owed_depth, self.pipe,
                            self.last_arr, self.down, self.t)
        self._out_args = (self.last_costs, self.last_node_out, self.last_shipped)
        self.reset()

    # ---- reset and randomness -----------------------------------------------------------------
    def reset(self, seeds: int | Sequence[int | None] | None = None,
              rows: Sequence[int] | np.ndarray | None = None) -> None:
        """Reset ``rows`` (all by default) to the initial state and draw their first block.

        ``seeds``: one int for all rows (row ``i`` then gets ``seeds + i``, SB3's convention), one
        per row, or ``None`` to keep each row's generator running (a fresh one from OS entropy if it
        has none yet).
        """
        rows = np.arange(self.n) if rows is None else np.asarray(rows, dtype=np.int64)
        if seeds is None:
            seed_list: list[int | None] = [None] * len(rows)
        elif isinstance(seeds, (int, np.integer)):
            seed_list = [int(seeds) + int(i) for i in rows]
        else:
            seed_list = list(seeds)
            if len(seed_list) != len(rows):
                raise ValueError(f"seeds: {len(seed_list)} seeds for {len(rows)} rows")
        topo = self.topology
        for i, seed in zip(rows, seed_list):
            if seed is not None:
                self.rngs[i] = np.random.default_rng(seed)
            elif self.rngs[i] is None:
                self.rngs[i] = np.random.default_rng()
            for d, spec in enumerate(topo.demand_specs):
                if spec.dist == "trace" and spec.trace_start == "random":
                    self.trace_offset[i, d] = self.rngs[i].integers(len(spec.trace))
                else:
                    self.trace_offset[i, d] = 0
        self.on_hand[rows] = topo.initial_inventory
        for arr in (self.raw, self.cust_bo, self.owed, self.owed_depth, self.pipe, self.last_arr, self.down, self.t):
            arr[rows] = 0
        self._draw(rows)
        self.last_node_out[rows] = 0.0

    def spread_initial_stock(self, rows: Sequence[int] | np.ndarray, spread: float, scale: np.ndarray) -> None:
        """Exploring starts: replace the on-hand stock of ``rows`` (just reset) by independent draws,
        uniform on ``[0, spread * scale_j]`` at node ``j`` (whole units with ``integer_orders``), one
        call per row on the row's own generator."""
        top = spread * np.asarray(scale, dtype=float)
        for i in np.asarray(rows, dtype=np.int64):
            stock = self.rngs[i].uniform(0.0, 1.0, top.size) * top
            self.on_hand[i] = np.floor(stock + 0.5) if self.topology.integer_orders else stock

    def _draw(self, rows: np.ndarray) -> None:
        """Draw the next block of exogenous randomness of ``rows``, from each row's period ``t``.

        Per row, in this order: demand (see :class:`~envs.distributions.DemandModel`), then one
        call of uniforms for the random lead times and the outages together.
        """
        topo = self.topology
        c = self.chunk
        rngs = [self.rngs[i] for i in rows]
        periods = self.t[rows][:, None] + np.arange(c)[None, :]
        block = np.empty((len(rows), c, topo.n_demand))
        self._demand_model.draw(rngs, periods, self.trace_offset[rows], block)
        self.demand_chunk[rows] = block
        n_rand, n_dis = self._n_rand, self._n_dis
        if n_rand or n_dis:
            u = np.stack([rng.random((c, n_rand + n_dis)) for rng in rngs])
            if n_rand:
                block_lt = np.empty((len(rows), c, n_rand), dtype=np.int64)
                for r in range(n_rand):                  # inverse distribution function per slot
                    idx = np.searchsorted(topo.lt_cdf[r], u[:, :, r], side="right")
                    block_lt[:, :, r] = topo.lt_values[r, np.minimum(idx, topo.lt_values.shape[1] - 1)]
                self.lt_chunk[rows] = block_lt
            if n_dis:
                self.dis_chunk[rows] = u[:, :, n_rand:]
        self.pos[rows] = 0

    # ---- stepping -----------------------------------------------------------------------------
    def step(self, orders: np.ndarray) -> StepResult:
        """Advance every row one period under ``orders`` (units per slot, shape ``(n, S)``)."""
        o = self.last_orders
        np.copyto(o, orders)
        if not np.isfinite(o).all():
            bad = np.argwhere(~np.isfinite(o))[0]
            raise ValueError(
                f"orders[{bad[0]}, {bad[1]}] ({self.topology.slot_names[bad[1]]}): {o[tuple(bad)]} is not a "
                "finite quantity; orders must be finite numbers >= 0"
            )
        np.maximum(o, 0.0, out=o)
        if self.topology.integer_orders:
            np.rint(o, out=o)
        if self.pos.max() >= self.chunk:
            self._draw(np.flatnonzero(self.pos >= self.chunk))
        self._step_kernel(*self._topo_args, *self._state_args, o, self.demand_chunk, self.lt_chunk, self.dis_chunk,
                          self.pos, *self._out_args)
        return StepResult(orders=o, costs=self.last_costs, node_out=self.last_node_out, shipped=self.last_shipped)

    # ---- derived quantities -------------------------------------------------------------------
    def positions(self) -> tuple[np.ndarray, np.ndarray]:
        """Installation inventory positions per node ``(n, N)`` and per slot ``(n, S)``.

        See :func:`envs.dynamics.inventory_positions`. Buffers: copy to keep them.
        """
        topo = self.topology
        self._positions_kernel(self.on_hand, self.raw, self.cust_bo, self.owed, self.owed_depth, self.pipe,
                               topo.slot_src, topo.slot_dst, topo.slot_lane, topo.lane_bom, topo.lane_is_component,
                               topo.out_ptr, topo.out_slots, topo.in_ptr, topo.in_slots, topo.is_assembly,
                               self._node_ip, self._slot_ip)
        return self._node_ip, self._slot_ip

    def orders_up_to(self, targets: np.ndarray, reorder: np.ndarray | None = None) -> np.ndarray:
        """Orders that raise each slot's position to ``targets`` (``(n, S)``, the slot's units).

        A slot orders only when its position is at or below ``reorder`` (default: the target, the
        base-stock rule; lower, the (s, S) rule). Customers decide first and their orders count in
        their supplier's position (see :func:`envs.dynamics.order_up_to`).
        """
        _, slot_ip = self.positions()
        out = np.zeros_like(slot_ip)
        topo = self.topology
        targets = np.broadcast_to(np.asarray(targets, dtype=float), out.shape)
        reorder = targets if reorder is None else np.broadcast_to(np.asarray(reorder, dtype=float), out.shape)
        order_up_to(slot_ip, targets, reorder, topo.in_ptr, topo.in_slots, topo.out_ptr, topo.out_slots,
                    topo.slot_lane, topo.lane_bom, topo.lane_is_component, out)
        return out

    def echelon_positions(self) -> np.ndarray:
        """Echelon inventory positions ``(n, N)`` of a network where each node has one supplier.

        Echelon ``j`` is ``j`` and everything downstream: its position is the stock on hand, in
        transit and owed to ``j`` by its supplier, plus on hand and in transit inside the echelon,
        minus the echelon's customer backorders. Obligations inside the echelon cancel.
        """
        topo = self.topology
        pipe_in = np.zeros((self.n, topo.n_nodes))
        owed_in = np.zeros((self.n, topo.n_nodes))
        np.add.at(pipe_in.T, topo.slot_dst, self.pipe.sum(axis=2).T)
        np.add.at(owed_in.T, topo.slot_dst, self.owed.sum(axis=2).T)
        raw_in = np.zeros((self.n, topo.n_nodes))
        np.add.at(raw_in.T, topo.lane_dst, self.raw.T)
        physical = self.on_hand + pipe_in + raw_in - self.cust_bo
        return physical @ self._descendants.T + owed_in
