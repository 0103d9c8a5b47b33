"""A slow, obvious, per-node reference implementation of one period of ``docs/model.md``.

Written from the page alone (not from ``envs/dynamics.py``), to be tested against the project's
batched simulator on random networks (``tests/test_reference.py``). Everything here is plain Python:
floats, dicts and lists keyed by node ids, lane indices and ``(lane_index, mode_index)`` slots. No
numpy in the dynamics.

The exogenous randomness of a period is passed in explicitly (demand per demand node, the lead time
drawn per slot, the outage uniform per disrupted lane), so the reference can be fed exactly the
draws the batched simulator uses.

Conventions this file implements (numbers refer to the steps of ``docs/model.md``):

1. Orders are clipped at 0, rounded to the nearest integer when ``integer_orders`` (round half to
   even, like ``round``), and added to the slot's obligations of age 0; a positive order pays the
   slot's ``fixed_cost``.
2. Each disrupted lane's outage state moves (up -> down when ``u < start_probability``, down -> up
   when ``u < 1 / mean_duration``); then every external slot of a lane that is up ships its
   obligations, oldest first, up to the slot's capacity.
3. Nodes in topological order: receive what is due this period (on-hand, or component stock of the
   lane at an assembly node) and assemble; ship to customers (budget ``min(on_hand, capacity)``,
   oldest obligations first, within an age ``fcfs_index`` or ``proportional``); shipped units pay
   ``unit_cost`` and enter the pipeline with ``L`` (no crossing: ``L = max(L drawn, periods until
   the slot's previous shipment arrives)``).
4. Customer demand: existing backorders first, then new demand; the rest is backordered or lost.
5. Costs on end-of-period quantities; then pipelines advance and obligations age (ages >= 15 pool).

Float dust. Three arithmetic details were settled after the first comparison runs, none of them a
change of the model: a proportional share below 1 counts as using exactly the whole budget (not the
rounded sum of the shares); on-hand after shipping is what was above the budget plus what is left
of the budget (not on-hand minus the sum of the pieces shipped, which can leave an ulp); and whole
kits allow ``KIT_TOLERANCE`` of dust. Without them the reference kept 1e-16-unit leftovers that it
then shipped, which moves the no-crossing clock although the amounts agree to 1e-9. The tests never
copy the simulator's state into the reference: a differing clock fails the comparison.
"""

from __future__ import annotations

import math

from meio.envs.scenario import EXTERNAL, Scenario

#: Obligation age buckets (0..15); the last one holds everything 15 periods old or older.
AGES = 16

#: Float dust allowed below a whole number of kits (step 3.1 with ``integer_orders``): ``kits =
#: floor(min(...) + KIT_TOLERANCE)``. Exact arithmetic would need no tolerance, but proportional
#: shares of large quantities leave component stock such as ``2 - 4e-11`` where the exact value is 2.
#: ``docs/model.md`` ("Precisions", "Whole kits") documents the batched simulator's tolerance of 1e-9;
#: the reference adopts the same value so that the two agree on float dust rather than on a coin flip.
KIT_TOLERANCE = 1e-9

COST_NAMES = ("holding", "backorder", "lost_sales", "ordering", "transport", "pipeline")

Slot = tuple  # (lane_index, mode_index)


class ReferenceSimulator:
    """One copy of a scenario, stepped one period at a time by the rules of ``docs/model.md``."""

    def __init__(self, scenario: Scenario) -> None:
        self.scenario = scenario
        self.integer_orders = bool(scenario.integer_orders)
        self.backorders = scenario.unmet_demand == "backorder"
        self.proportional = scenario.allocation == "proportional"

        self.nodes = {n.id: n for n in scenario.nodes}
        self.file_position = {n.id: i for i, n in enumerate(scenario.nodes)}
        self.lanes = list(scenario.lanes)
        self.demand_node_ids = [n.id for n in scenario.nodes if n.demand is not None]

        # Slots: (lane index, mode index), lane by lane in file order, modes in listed order.
        self.slots: list[Slot] = []
        for li, lane in enumerate(self.lanes):
            for mi in range(len(lane.modes)):
                self.slots.append((li, mi))
        self.pipe_len = max(m.lead_time.max for lane in self.lanes for m in lane.modes) + 1

        # Sourcing: which lanes are component lanes (assembly) and their ratios.
        self.is_assembly = {nid: n.sourcing == "assembly" for nid, n in self.nodes.items()}
        self.ratio: dict[int, float] = {}
        for li, lane in enumerate(self.lanes):
            target = self.nodes[lane.target]
            if target.sourcing == "assembly":
                self.ratio[li] = dict(target.bom)[lane.source]
        self.in_lanes = {nid: [li for li, l in enumerate(self.lanes) if l.target == nid] for nid in self.nodes}

        # Customers of each node, in fcfs_index priority: the customer's position in the file,
        # then the modes of its lane in listed order.
        self.out_slots: dict[str, list[Slot]] = {}
        for nid in self.nodes:
            mine = [s for s in self.slots if self.lanes[s[0]].source == nid]
            mine.sort(key=lambda s: (self.file_position[self.lanes[s[0]].target], s[0], s[1]))
            self.out_slots[nid] = mine
        self.external_slots = [s for s in self.slots if self.lanes[s[0]].is_external]
        self.disrupted_lanes = [li for li, l in enumerate(self.lanes) if l.disruption is not None]

        self.order = self._topological_order()
        self.reset()

    # ------------------------------------------------------------------------------------------
    def _topological_order(self) -> list[str]:
        """Suppliers before customers (depth-first; any topological order gives the same result)."""
        done: list[str] = []
        seen: set[str] = set()

        def visit(nid: str) -> None:
            if nid in seen:
                return
            seen.add(nid)
            for lane in self.lanes:
                if lane.target == nid and not lane.is_external:
                    visit(lane.source)
            done.append(nid)

        for n in self.scenario.nodes:
            visit(n.id)
        return done

    def reset(self) -> None:
        self.t = 0
        self._on_hand = {nid: float(n.initial_inventory) for nid, n in self.nodes.items()}
        self._cust_bo = {nid: 0.0 for nid in self.nodes}
        self._raw = {li: 0.0 for li in range(len(self.lanes))}
        self._owed = {s: [0.0] * AGES for s in self.slots}
        # In transit: explicit shipment records [absolute arrival period, quantity].
        self._transit = {s: [] for s in self.slots}
        # Absolute period in which the slot's last shipment arrives (None: nothing shipped yet).
        self._last_arrival = {s: None for s in self.slots}
        self._down = {li: False for li in self.disrupted_lanes}

    # ---- accessors -----------------------------------------------------------------------------
    def on_hand(self, node: str) -> float:
        return self._on_hand[node]

    def customer_backorders(self, node: str) -> float:
        return self._cust_bo[node]

    def component_stock(self, lane_index: int) -> float:
        return self._raw[lane_index]

    def obligations(self, slot: Slot) -> list[float]:
        """What the slot's supplier still owes, by age 0..15 (after the end-of-period aging)."""
        return list(self._owed[slot])

    def pipeline(self, slot: Slot) -> list[float]:
        """Units in transit by periods until arrival: index ``k`` arrives in period ``t + k``.

        ``t`` is the next period to simulate, so after a step index 0 is what arrives next period.
        """
        out = [0.0] * self.pipe_len
        for arrival, q in self._transit[slot]:
            out[arrival - self.t] += q
        return out

    def periods_until_last_arrival(self, slot: Slot) -> int:
        """Periods from the next period ``t`` until the slot's last shipment arrives (>= 0)."""
        last = self._last_arrival[slot]
        return 0 if last is None else max(0, last - self.t)

    def is_down(self, lane_index: int) -> bool:
        return self._down[lane_index]

    def installation_position(self, node: str) -> float:
        """On hand + in transit to and owed to ``node`` - its backorders - what it owes (a helper
        for order-up-to style test orders; assembly nodes are counted crudely in raw units)."""
        pos = self._on_hand[node] - self._cust_bo[node]
        for s in self.slots:
            lane = self.lanes[s[0]]
            if lane.target == node:
                pos += sum(self._owed[s]) + sum(q for _, q in self._transit[s]) + self._raw[s[0]] * (s[1] == 0)
            if lane.source == node:
                pos -= sum(self._owed[s])
        return pos

    # ---- helpers ---------------------------------------------------------------------------------
    def _mode(self, slot: Slot):
        return self.lanes[slot[0]].modes[slot[1]]

    def _dispatch(self, slot: Slot, q: float, lead_times: dict, shipped: dict) -> None:
        """Step 3.3: ``q`` units leave on ``slot`` this period."""
        shipped[slot] += q
        if q <= 0.0:
            return
        mode = self._mode(slot)
        drawn = int(lead_times[slot])
        if mode.order_crossing or self._last_arrival[slot] is None:
            L = drawn
        else:
            L = max(drawn, self._last_arrival[slot] - self.t)
        arrival = self.t + L
        self._transit[slot].append([arrival, q])
        self._last_arrival[slot] = arrival

    # ---- one period ------------------------------------------------------------------------------
    def step(self, orders: dict, demand: dict, lead_times: dict, outage_u: dict) -> dict:
        """Simulate period ``t``.

        orders: ``{(lane, mode): units}`` (missing slots order 0); demand: ``{node_id: D}`` for every
        demand node; lead_times: ``{(lane, mode): L drawn}`` for every slot (constant ones too);
        outage_u: ``{lane_index: uniform}`` for every disrupted lane.
        """
        t = self.t
        costs = {name: 0.0 for name in COST_NAMES}
        placed: dict[Slot, float] = {}
        shipped: dict[Slot, float] = {s: 0.0 for s in self.slots}

        # 1. Orders.
        for s in self.slots:
            q = float(orders.get(s, 0.0))
            if q < 0.0:
                q = 0.0
            if self.integer_orders:
                q = float(round(q))
            placed[s] = q
            self._owed[s][0] += q
            if q > 0.0:
                costs["ordering"] += self._mode(s).fixed_cost

        # 2. External supply: outages move first, then external slots of up lanes ship.
        for li in self.disrupted_lanes:
            dis = self.lanes[li].disruption
            u = float(outage_u[li])
            if not self._down[li]:
                if u < dis.start_probability:
                    self._down[li] = True
            else:
                if u < 1.0 / dis.mean_duration:
                    self._down[li] = False
        for s in self.external_slots:
            li = s[0]
            if self._down.get(li, False):
                continue
            cap_left = self._mode(s).capacity
            total = 0.0
            for age in range(AGES - 1, -1, -1):
                q = min(self._owed[s][age], cap_left)
                if q > 0.0:
                    self._owed[s][age] -= q
                    cap_left -= q
                    total += q
            self._dispatch(s, total, lead_times, shipped)

        # 3. Nodes in topological order.
        for nid in self.order:
            node = self.nodes[nid]
            # 3.1 receive, then assemble.
            for li in self.in_lanes[nid]:
                lane = self.lanes[li]
                for mi in range(len(lane.modes)):
                    s = (li, mi)
                    arrived = 0.0
                    keep = []
                    for rec in self._transit[s]:
                        if rec[0] == t:
                            arrived += rec[1]
                        else:
                            keep.append(rec)
                    self._transit[s] = keep
                    if self.is_assembly[nid]:
                        self._raw[li] += arrived
                    else:
                        self._on_hand[nid] += arrived
            if self.is_assembly[nid]:
                kits = min(self._raw[li] / self.ratio[li] for li in self.in_lanes[nid])
                if self.integer_orders:
                    # Whole kits. The tolerance only absorbs float dust (e.g. 3 - 4e-16 from
                    # proportional shares) that exact arithmetic would not have.
                    kits = float(math.floor(kits + KIT_TOLERANCE))
                if kits > 0.0:
                    for li in self.in_lanes[nid]:
                        self._raw[li] -= kits * self.ratio[li]
                    self._on_hand[nid] += kits

            # 3.2 ship to customers.
            budget = min(self._on_hand[nid], node.capacity)
            if budget < 0.0:
                budget = 0.0
            out = self.out_slots[nid]
            cap_left = {s: self._mode(s).capacity for s in out}
            sent = {s: 0.0 for s in out}
            budget0 = budget
            for age in range(AGES - 1, -1, -1):
                if self.proportional:
                    want = {s: min(self._owed[s][age], cap_left[s]) for s in out}
                    total = sum(want.values())
                    if total <= 0.0:
                        continue
                    frac = min(1.0, budget / total)
                    for s in out:
                        q = want[s] * frac
                        if q > 0.0:
                            self._owed[s][age] -= q
                            cap_left[s] -= q
                            sent[s] += q
                    # A share below 1 uses exactly the whole budget. Counting it as such (rather
                    # than as the sum of the rounded shares) leaves no float dust on hand to be
                    # shipped later.
                    take = budget if frac < 1.0 else total
                    budget -= take
                else:
                    for s in out:
                        q = min(self._owed[s][age], cap_left[s], budget)
                        if q > 0.0:
                            self._owed[s][age] -= q
                            cap_left[s] -= q
                            sent[s] += q
                            budget -= q
            # On hand after shipping: what was above the budget plus what is left of it. A budget
            # shipped whole leaves exactly 0 (budget - q with q = budget); subtracting the sum of
            # the pieces instead can leave an ulp (q1 + (a - q1) != a in floats).
            self._on_hand[nid] = (self._on_hand[nid] - budget0) + budget
            # 3.3 shipments enter their pipelines.
            for s in out:
                self._dispatch(s, sent[s], lead_times, shipped)

        # 4. Customer demand.
        demand_out = {}
        lost = {}
        for nid in self.demand_node_ids:
            d = float(demand[nid])
            served_bo = min(self._on_hand[nid], self._cust_bo[nid])
            if served_bo > 0.0:
                self._on_hand[nid] -= served_bo
                self._cust_bo[nid] -= served_bo
            filled = min(max(self._on_hand[nid], 0.0), d)
            self._on_hand[nid] -= filled
            short = d - filled
            if self.backorders:
                self._cust_bo[nid] += short
                lost[nid] = 0.0
            else:
                lost[nid] = short
            demand_out[nid] = (d, filled, short)

        # 5. Costs on end-of-period quantities.
        for nid in self.order:
            node = self.nodes[nid]
            costs["holding"] += node.holding_cost * self._on_hand[nid]
            if node.demand is not None:
                if self.backorders:
                    costs["backorder"] += node.penalty_cost * self._cust_bo[nid]
                else:
                    costs["lost_sales"] += node.penalty_cost * lost[nid]
        for li, lane in enumerate(self.lanes):
            if li in self.ratio and lane.source != EXTERNAL:
                costs["holding"] += self.nodes[lane.source].holding_cost * self._raw[li]
        for s in self.slots:
            mode = self._mode(s)
            costs["transport"] += mode.unit_cost * shipped[s]
            in_transit = sum(q for _, q in self._transit[s])
            costs["pipeline"] += mode.pipeline_holding_cost * in_transit

        # End of period: pipelines advance (arrival periods are absolute) and obligations age.
        for s in self.slots:
            o = self._owed[s]
            self._owed[s] = [0.0] + o[: AGES - 2] + [o[AGES - 2] + o[AGES - 1]]
        self.t = t + 1
        return {"costs": costs, "demand": demand_out, "shipped": shipped, "orders": placed}
