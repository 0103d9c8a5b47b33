"""A batch of independent copies of one scenario, stepped together by the one step function.

:class:`Simulator` owns the state arrays and the exogenous randomness of every row. A row's
randomness comes from independent streams, each a :class:`numpy.random.Generator` on its own
:class:`numpy.random.SeedSequence` derived from the row's seed by a spawn key (the key ``(k, i)``
is child ``i`` of child ``k``, as ``SeedSequence(seed).spawn(k + 1)[k].spawn(i + 1)[i]``):

* ``(0,)`` the draws made at reset: the starting rows of traces with ``start: random``, then the
  exploring starts (:meth:`Simulator.spread_initial_stock`);
* ``(1, d)`` the demand of demand node ``d`` (traces have none); with correlated demand instead one
  stream ``(2,)`` for all demand nodes, through the Gaussian copula;
* ``(3, r)`` the lead time of the ``r``-th slot with a random lead time;
* ``(4, x)`` the outage uniforms of the ``x``-th lane with a disruption.

Each stream gives one value per period (one per demand node and period for the copula), period
after period, and the simulator draws a block of ``chunk`` periods at a time (at reset and whenever
the block is used up). Every NumPy method used takes its values from the stream one after the
other, so a block of ``c`` periods followed by one of ``c'`` periods holds the numbers one block of
``c + c'`` periods would. A row reset without a seed in the middle of its block first puts its
streams back right after the periods it stepped through (:meth:`Simulator._rewind`), so its next
episode too starts from the same stream values at any block size. So

* the block size never changes the numbers: a seed gives the same demand, lead times and outages,
  bit for bit, at any ``chunk``, whether the Python API (block = horizon, at most
  ``MAX_CHUNK``), the command line or the benchmark runs it;
* a row's randomness depends only on its seed, never on the policy or on the other rows:
  evaluating several policies with the same seeds uses common random numbers;
* row ``i`` of a batch seeded ``seed + i`` is the single simulator seeded ``seed + i``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from meio.envs.distributions import DemandModel
from meio.envs.dynamics import (
    PARALLEL_ROWS,
    KernelDraws,
    KernelOut,
    KernelParams,
    KernelState,
    as_struct,
    inventory_positions,
    inventory_positions_serial,
    kernel_params,
    new_draws,
    new_out,
    new_state,
    order_up_to,
    step_kernel,
    step_kernel_serial,
)
from meio.envs.resolve import resolve
from meio.envs.run_settings import check_setting
from meio.envs.scenario import Scenario
from meio.envs.threads import Threads, numba_threads, resolve_threads, with_threads
from meio.envs.topology import Topology

#: First entries of the spawn keys of a row's streams (see the module docstring).
STREAM_RESET, STREAM_DEMAND, STREAM_COPULA, STREAM_LEAD_TIME, STREAM_OUTAGE = 0, 1, 2, 3, 4

#: Longest block of periods drawn at once per row (memory: rows x chunk x (demand nodes + random
#: slots + outage lanes) x 8 bytes).
MAX_CHUNK = 128


@dataclass(frozen=True)
class StepResult:
    """What one period produced, per row. Arrays are the simulator's buffers: copy to keep them."""

    orders: np.ndarray  # (B, S) orders placed, after rounding and clipping at 0
    costs: np.ndarray  # (B, len(COST_NAMES)) columns C_HOLD ... C_PIPE of meio.envs.dynamics
    node_out: np.ndarray  # (B, D, len(OUT_NAMES)) per demand node: O_DEMAND, O_FILLED, O_SHORT
    shipped: np.ndarray  # (B, S) units that left on each slot

    @property
    def total_cost(self) -> np.ndarray:
        return self.costs.sum(axis=1)


class Simulator:
    """``n`` independent copies of a scenario (the rows of the batch).

    ``threads``: 1, ``N > 1`` or ``"auto"``; ``None`` (the default) takes ``meio --threads`` or the
    environment variable ``MEIO_THREADS``, else 1 (:mod:`meio.envs.threads`). With one thread every
    kernel is the serial compilation and numba's thread pool is never started; with more, batches
    of at least ``PARALLEL_ROWS`` rows spread over that many threads. The results are the same bit
    for bit. ``self.threads`` is the count resolved, ``self.parallel`` whether the parallel
    compilation runs.

    The arrays are the fields of the kernels' structures (:mod:`meio.envs.dynamics`): ``params``
    (:class:`~meio.envs.dynamics.KernelParams`), ``state`` (``KernelState``), ``draws``
    (``KernelDraws``) and ``out`` (``KernelOut``). ``on_hand``, ``pipe``, ``t``, ``pos``,
    ``last_costs``, ... name the same arrays; they are updated in place and cannot be rebound.
    """

    def __init__(
        self, scenario: str | Path | Scenario | Topology, n: int = 1, chunk: int | None = None, threads: Threads = None
    ) -> None:
        n = check_setting("n", n)
        # A Topology is used as is (no second compilation): see meio.envs.resolve.
        self.topology: Topology = resolve(scenario)
        self.scenario: Scenario = self.topology.scenario
        topo = self.topology
        self.n = n
        self.chunk = int(chunk or min(topo.horizon, MAX_CHUNK))
        b, nn, s = n, topo.n_nodes, topo.n_slots
        n_rand = int((topo.slot_lt_rand >= 0).sum())
        n_dis = len(topo.dis_start)
        # The kernels' structures (meio.envs.dynamics), built once: every state, draw and output
        # array lives in them, and the attributes on_hand, pipe, pos, last_costs, ... read their fields.
        self.params: KernelParams = kernel_params(topo)
        self.state: KernelState = new_state(topo, n)
        self.draws: KernelDraws = new_draws(topo, n, self.chunk)
        self.out: KernelOut = new_out(topo, n)
        # Their numba mirrors (the same arrays), which the kernels are called with (see as_struct).
        self._structs = (as_struct(self.params), as_struct(self.state), as_struct(self.draws), as_struct(self.out))
        self.trace_offset = np.zeros((b, topo.n_demand), dtype=np.int64)
        # rngs[i] is row i's root generator: its seed sequence is the parent of the row's streams.
        self.rngs: list[np.random.Generator | None] = [None] * n
        # Per row and stream (object arrays, made at the first reset): the generators, and their
        # states where the current block began (plain tuples: few objects for the garbage collector).
        self._streams: np.ndarray | None = None
        self._block_start: np.ndarray | None = None
        self._words = np.zeros(0, dtype=np.int64)
        self._varying = np.zeros(0, dtype=np.int64)
        self._stream_roots: list[np.random.Generator | None] = [None] * n
        # The last period's orders (with self.out, the buffers StepResult points to).
        self.last_orders = np.zeros((b, s))
        self._node_ip = np.zeros((b, nn))
        self._slot_ip = np.zeros((b, s))
        self._n_rand = n_rand
        self._descendants = topo.descendants()
        self.threads = resolve_threads(threads)
        # One thread never touches the parallel compilation: even asking numba for a thread count
        # starts its pool.
        self.parallel = self.threads > 1 and n >= PARALLEL_ROWS
        if self.parallel:
            pool = numba_threads(self.threads)
            self._step_kernel = with_threads(step_kernel, pool)
            self._positions_kernel = with_threads(inventory_positions, pool)
        else:
            self._step_kernel = step_kernel_serial
            self._positions_kernel = inventory_positions_serial
        self._demand_model = DemandModel(topo.demand_specs, topo.correlation_chol)
        self._n_dis = n_dis
        self.reset()

    def __getstate__(self) -> dict:
        # The numba mirrors hold native references that neither pickle nor deepcopy: rebuilt on load.
        saved = self.__dict__.copy()
        del saved["_structs"]
        return saved

    def __setstate__(self, saved: dict) -> None:
        self.__dict__.update(saved)
        for arr in self.params:  # copies come back writeable; the topology's are read-only
            if isinstance(arr, np.ndarray):
                arr.setflags(write=False)
        self._structs = (as_struct(self.params), as_struct(self.state), as_struct(self.draws), as_struct(self.out))

    # ---- fields of self.state, self.draws and self.out by their long-standing names -----------
    @property
    def on_hand(self) -> np.ndarray:
        return self.state.on_hand

    @property
    def raw(self) -> np.ndarray:
        return self.state.raw

    @property
    def cust_bo(self) -> np.ndarray:
        return self.state.cust_bo

    @property
    def owed(self) -> np.ndarray:
        return self.state.owed

    @property
    def owed_depth(self) -> np.ndarray:
        return self.state.owed_depth

    @property
    def pipe(self) -> np.ndarray:
        return self.state.pipe

    @property
    def last_arr(self) -> np.ndarray:
        return self.state.last_arr

    @property
    def down(self) -> np.ndarray:
        return self.state.down

    @property
    def t(self) -> np.ndarray:
        return self.state.t

    @property
    def demand_chunk(self) -> np.ndarray:
        return self.draws.demand_chunk

    @property
    def lt_chunk(self) -> np.ndarray:
        return self.draws.lt_chunk

    @property
    def dis_chunk(self) -> np.ndarray:
        return self.draws.dis_chunk

    @property
    def pos(self) -> np.ndarray:
        return self.draws.pos

    @property
    def last_costs(self) -> np.ndarray:
        return self.out.costs

    @property
    def last_node_out(self) -> np.ndarray:
        return self.out.node_out

    @property
    def last_shipped(self) -> np.ndarray:
        return self.out.shipped

    # ---- reset and randomness -----------------------------------------------------------------
    def reset(
        self, seeds: int | Sequence[int | None] | None = None, rows: Sequence[int] | np.ndarray | None = None
    ) -> None:
        """Reset ``rows`` (all by default) to the initial state and draw their first block.

        ``seeds``: one int for all rows (row ``i`` then gets ``seeds + i``, SB3's convention), one
        per row, or ``None`` to keep each row's streams running (new ones from OS entropy if it
        has none yet). A root generator put in ``rngs[i]`` by the caller (the Gymnasium env puts
        its ``np_random`` there) gives row ``i`` new streams, derived from its seed sequence.
        """
        rows = np.arange(self.n) if rows is None else np.asarray(rows, dtype=np.int64)
        if seeds is None:
            seed_list: list[int | None] = [None] * len(rows)
        elif isinstance(seeds, (int, np.integer)):
            seed_list = [check_setting("seed", seeds) + int(i) for i in rows]
        else:
            seed_list = list(seeds)
            if len(seed_list) != len(rows):
                raise ValueError(f"seeds: {len(seed_list)} seeds for {len(rows)} rows")
            seed_list = [None if x is None else check_setting("seed", x) for x in seed_list]
        topo = self.topology
        random_start = [
            d for d, spec in enumerate(topo.demand_specs) if spec.dist == "trace" and spec.trace_start == "random"
        ]
        self.trace_offset[rows] = 0
        if self._streams is None:
            width = len(self._stream_keys())
            self._streams = np.empty((self.n, width), dtype=object)
            self._block_start = np.empty((self.n, width - 1), dtype=object)
            # 64-bit words per period of each block stream (0: varies, the stream needs snapshots)
            self._words = np.array(
                self._demand_model.words_per_period + (1,) * (self._n_rand + self._n_dis), dtype=np.int64
            )
            self._varying = np.flatnonzero(self._words == 0)
        running = []
        for i, seed in zip(rows, seed_list):
            if seed is not None:
                self.rngs[i] = np.random.default_rng(seed)
            elif self.rngs[i] is None:
                self.rngs[i] = np.random.default_rng()
            if self._stream_roots[i] is not self.rngs[i]:
                self._streams[i] = self._row_streams(self.rngs[i])
                self._stream_roots[i] = self.rngs[i]
            else:
                running.append(i)
        if running:
            self._rewind(np.array(running, dtype=np.int64))
        for i in rows:
            for d in random_start:
                self.trace_offset[i, d] = self._streams[i][0].integers(len(topo.demand_specs[d].trace))
        for arr in self.state:  # every field, so a new state field is reset too
            arr[rows] = 0
        self.state.on_hand[rows] = topo.initial_inventory
        self._draw(rows)
        self.last_node_out[rows] = 0.0

    def _stream_keys(self) -> list[tuple[int, ...]]:
        """Spawn keys of a row's streams, in the order reset, demand, lead times, outages."""
        dm = self._demand_model
        return (
            [(STREAM_RESET,)]
            + ([(STREAM_COPULA,)] if dm.chol is not None else [(STREAM_DEMAND, d) for d in dm.stream_nodes])
            + [(STREAM_LEAD_TIME, r) for r in range(self._n_rand)]
            + [(STREAM_OUTAGE, x) for x in range(self._n_dis)]
        )

    def _row_streams(self, root: np.random.Generator) -> list[np.random.Generator]:
        """A row's streams (:meth:`_stream_keys`), children of ``root``'s seed sequence."""
        seq = root.bit_generator.seed_seq
        if not isinstance(seq, np.random.SeedSequence):
            # A bit generator built without a seed sequence: seed the streams from the root's draws.
            seq = np.random.SeedSequence(root.integers(0, 2**63, size=4))
        return [
            np.random.Generator(
                np.random.PCG64(
                    np.random.SeedSequence(seq.entropy, spawn_key=seq.spawn_key + key, pool_size=seq.pool_size)
                )
            )
            for key in self._stream_keys()
        ]

    def spread_initial_stock(self, rows: Sequence[int] | np.ndarray, spread: float, scale: np.ndarray) -> None:
        """Exploring starts: replace the on-hand stock of ``rows`` (just reset) by independent draws,
        uniform on ``[0, spread * scale_j]`` at node ``j`` (whole units with ``integer_orders``), one
        call per row on the row's reset stream (so the block size of the other draws cannot move them)."""
        top = spread * np.asarray(scale, dtype=float)
        for i in np.asarray(rows, dtype=np.int64):
            stock = self._streams[i][0].random(top.size) * top
            self.on_hand[i] = np.floor(stock + 0.5) if self.topology.integer_orders else stock

    def _draw(self, rows: np.ndarray) -> None:
        """Draw the next block of ``chunk`` periods of exogenous randomness of ``rows``, from each
        row's period ``t``, noting where each stream that varies in words per period stood (for
        :meth:`_rewind`)."""
        for k in self._varying:
            for i, g in zip(rows, self._streams[rows, 1 + k]):
                st = g.bit_generator.state
                self._block_start[i, k] = (st["state"]["state"], st["state"]["inc"], st["has_uint32"], st["uinteger"])
        demand, lead, outage = self._fill(rows, self.chunk, self.t[rows])
        self.demand_chunk[rows] = demand
        if self._n_rand:
            self.lt_chunk[rows] = lead
        if self._n_dis:
            self.dis_chunk[rows] = outage
        self.pos[rows] = 0

    def _rewind(self, rows: np.ndarray) -> None:
        """Put the streams of ``rows`` right after the periods they have stepped through.

        A block draws ahead; a row reset in the middle of its block (``pos < chunk``) winds its
        streams back over the ``chunk - pos`` periods it did not use, so the next episode starts
        from the same stream values whatever the block size. A stream of uniforms goes back by its
        count of 64-bit words (``PCG64.advance`` with a negative count). When the scenario has a
        stream whose words per period vary (gamma, seasonal counts), every stream goes back to
        where the block began (that stream from its snapshot) and the ``pos`` periods used are
        drawn again.
        """
        c, words = self.chunk, self._words
        pos = self.pos[rows]
        for p in np.unique(pos[pos < c]):
            sel = rows[pos == p]
            redraw = bool(p) and self._varying.size > 0
            back = c if redraw else c - int(p)
            for i in sel:
                for k, g in enumerate(self._streams[i, 1:]):
                    if words[k]:
                        g.bit_generator.advance(-int(words[k]) * back)
                    else:
                        state, inc, has_uint32, uinteger = self._block_start[i, k]
                        g.bit_generator.state = {
                            "bit_generator": "PCG64",
                            "state": {"state": state, "inc": inc},
                            "has_uint32": has_uint32,
                            "uinteger": uinteger,
                        }
            if redraw:
                self._fill(sel, int(p), self.t[sel] - p)

    def _fill(self, rows: np.ndarray, c: int, start: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``c`` periods from period ``start`` of ``rows``: demand ``(rows, c, D)``, random lead
        times ``(rows, c, R)`` and outage uniforms ``(rows, c, X)``, taken from the row's streams.

        Each stream gives ``c`` values (see the module docstring): demand through
        :class:`~meio.envs.distributions.DemandModel`, lead times by the inverse distribution function of
        uniforms, outages as uniforms. Buffers are filled one row at a time (a generator call per
        row and stream, never per period) and transformed for all rows at once.
        """
        topo = self.topology
        n_rows = len(rows)
        streams = self._streams[rows]
        periods = start[:, None] + np.arange(c)[None, :]
        demand = np.empty((n_rows, c, topo.n_demand))
        n_dem = self._demand_model.n_streams
        self._demand_model.draw(streams[:, 1 : 1 + n_dem], periods, self.trace_offset[rows], demand)
        n_rand, n_dis = self._n_rand, self._n_dis
        u = np.empty((n_rows, c))
        lead = np.empty((n_rows, c, n_rand), dtype=np.int64)
        for r in range(n_rand):  # inverse distribution function per slot
            for g, row in zip(streams[:, 1 + n_dem + r], u):
                g.random(out=row)
            idx = np.searchsorted(topo.lt_cdf[r], u, side="right")
            lead[:, :, r] = topo.lt_values[r, np.minimum(idx, topo.lt_values.shape[1] - 1)]
        outage = np.empty((n_rows, c, n_dis))
        for x in range(n_dis):
            for g, row in zip(streams[:, 1 + n_dem + n_rand + x], u):
                g.random(out=row)
            outage[:, :, x] = u
        return demand, lead, outage

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
        params, state, draws, out = self._structs
        self._step_kernel(params, state, o, draws, out)
        return StepResult(orders=o, costs=self.out.costs, node_out=self.out.node_out, shipped=self.out.shipped)

    # ---- derived quantities -------------------------------------------------------------------
    def positions(self) -> tuple[np.ndarray, np.ndarray]:
        """Installation inventory positions per node ``(n, N)`` and per slot ``(n, S)``.

        See :func:`meio.envs.dynamics.inventory_positions`. Buffers: copy to keep them.
        """
        self._positions_kernel(self._structs[0], self._structs[1], self._node_ip, self._slot_ip)
        return self._node_ip, self._slot_ip

    def orders_up_to(self, targets: np.ndarray, reorder: np.ndarray | None = None) -> np.ndarray:
        """Orders that raise each slot's position to ``targets`` (``(n, S)``, the slot's units).

        A slot orders only when its position is at or below ``reorder`` (default: the target, the
        base-stock rule; lower, the (s, S) rule). Customers decide first and their orders count in
        their supplier's position (see :func:`meio.envs.dynamics.order_up_to`).
        """
        _, slot_ip = self.positions()
        out = np.zeros_like(slot_ip)
        targets = np.broadcast_to(np.asarray(targets, dtype=float), out.shape)
        reorder = targets if reorder is None else np.broadcast_to(np.asarray(reorder, dtype=float), out.shape)
        order_up_to(self._structs[0], slot_ip, targets, reorder, out)
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
