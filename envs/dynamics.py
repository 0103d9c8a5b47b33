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
"""

from __future__ import annotations

import types

import numba as nb
import numpy as np

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


@nb.njit(cache=True, inline="always")   # inlined: passing a dozen arrays per call costs more than the body
def _dispatch(b, s, q, pos, pipe, last_arr, lt_chunk, slot_lt_const, slot_lt_rand, slot_crossing,
              slot_unit_cost, costs, shipped):
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


@nb.njit(cache=True, inline="always")   # inlined: passing a dozen arrays per call costs more than the body
def _shrink(b, s, owed, depth):
    """Lower ``depth[b, s]`` past emptied age buckets (buckets at or above ``depth`` are all 0)."""
    d = depth[b, s]
    while d > 0 and owed[b, s, d - 1] <= 0.0:
        d -= 1
    depth[b, s] = d


@nb.njit(cache=True, parallel=True)
def step_kernel(
    # topology
    holding, penalty, node_capacity, is_assembly, demand_nodes,
    lane_bom, lane_is_component, lane_raw_holding, in_lane_ptr, in_lanes,
    slot_lane, slot_capacity, slot_unit_cost, slot_fixed_cost, slot_pipeline_cost, slot_crossing,
    slot_lt_const, slot_lt_rand, slot_disruption,
    out_ptr, out_slots, in_ptr, in_slots, ext_slots, dis_start, dis_end,
    backorders, proportional, whole_kits,
    # state, updated in place
    on_hand, raw, cust_bo, owed, depth, pipe, last_arr, down, t,
    # exogenous inputs
    orders, demand_chunk, lt_chunk, dis_chunk, pos,
    # outputs, overwritten
    costs, node_out, shipped,
):
    """Advance every row of the batch by one period. See the module docstring for the order."""
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
            _dispatch(b, s, q, p, pipe, last_arr, lt_chunk, slot_lt_const, slot_lt_rand, slot_crossing,
                      slot_unit_cost, costs, shipped)
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
                _dispatch(b, s, give[b, s], p, pipe, last_arr, lt_chunk, slot_lt_const, slot_lt_rand,
                          slot_crossing, slot_unit_cost, costs, shipped)
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
                if d >= n_ages - 1:                      # the two oldest buckets merge
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
def inventory_positions(on_hand, raw, cust_bo, owed, depth, pipe, slot_src, slot_dst, slot_lane,
                        lane_bom, lane_is_component, out_ptr, out_slots, in_ptr, in_slots, is_assembly,
                        node_ip, slot_ip):
    """Installation inventory positions.

    ``node_ip[b, j]`` = on-hand + inbound (in transit and still owed by suppliers) - customer
    backorders - what ``j`` owes its customers. For an assembly node the inbound part counts whole
    kits: ``min over components (component stock + inbound) / bom``.

    ``slot_ip[b, s]`` is the position that an order on slot ``s`` raises, in the units the slot
    carries: the target node's ``node_ip`` for an ordinary slot, and for a component slot
    ``component stock + inbound of that component + bom * (on-hand - backorders - owed out)``.
    """
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
def order_up_to(slot_ip, targets, reorder, in_ptr, in_slots, out_ptr, out_slots, slot_lane, lane_bom,
                lane_is_component, orders):
    """Orders that raise positions to ``targets`` (per slot, in the slot's units).

    Nodes decide customers first (reverse topological order), and a node's position counts the
    orders its customers place in the same period: ``position - ratio * (this period's orders on
    it)``. Slots into the same node (or, for components, on the same lane) share one position,
    raised in the scenario's slot order: ``order_s = max(0, target_s - position)`` if ``position <=
    reorder_s`` (else 0), then ``position += order_s``. With ``reorder = target`` and one slot per
    node this is the base-stock rule, with a lower ``reorder`` the (s, S) rule; in a serial
    chain installation levels ``S_j - S_{j-1}`` order exactly what echelon levels ``S_j`` do.
    """
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
