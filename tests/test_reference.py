"""Differential tests: the batched simulator (``envs``) against the per-node reference
(``tests/reference_sim.py``, written from ``docs/model.md``).

Every period of every row, the simulator's state (on-hand, customer backorders, component stock,
obligations by age, pipelines, periods until the last arrival, outage state, ``t``) and outputs
(costs, demand/filled/short, shipped, orders) must equal the reference's: exactly in scenarios
where every quantity stays an integer, to ``rtol = atol = 1e-9`` otherwise (costs: ``atol = 1e-9``
times the sum of the scenario's cost rates). The reference is fed the very draws the simulator uses
(its demand, lead-time and outage blocks). Failure messages name the scenario seed, the reset seed
and the period (and the row, first index), so ``random_scenario(seed)`` and ``run_random`` reproduce it.

Run one case by hand::

    python -c "import sys; sys.path.insert(0, 'tests'); import test_reference as T; T.run_random(13, 13011, 50)"
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from reference_sim import AGES, COST_NAMES, ReferenceSimulator  # noqa: E402
from scenario_factory import SHAPES, is_exact, random_scenario  # noqa: E402

from meio.envs.scenario import Scenario  # noqa: E402
from meio.envs.simulator import Simulator  # noqa: E402

RTOL = ATOL = 1e-9


# ------------------------------------------------------------------------------------------------
# Harness
# ------------------------------------------------------------------------------------------------
def _check(actual, expected, what: str, ctx: str, exact: bool, atol: float = ATOL) -> None:
    actual = np.asarray(actual, dtype=float)
    expected = np.asarray(expected, dtype=float)
    assert actual.shape == expected.shape, f"{ctx}: {what} has shape {actual.shape}, reference {expected.shape}"
    if exact:
        ok = np.array_equal(actual, expected)
    else:
        ok = np.allclose(actual, expected, rtol=RTOL, atol=atol)
    if ok:
        return
    bad = np.argwhere(~np.isclose(actual, expected, rtol=0 if exact else RTOL, atol=0 if exact else atol))
    first = tuple(int(i) for i in bad[0])
    msg = (
        f"{ctx}: {what} differs at index {first} (row first): simulator {actual[first]!r}, "
        f"reference {expected[first]!r}"
    )
    if exact:
        np.testing.assert_array_equal(actual, expected, err_msg=msg)
    else:
        np.testing.assert_allclose(actual, expected, rtol=RTOL, atol=atol, err_msg=msg)


class Pair:
    """A batched simulator of ``n_rows`` rows and one reference per row, stepped in lockstep."""

    def __init__(
        self, d: dict, seed: int, periods: int, n_rows: int = 3, label: str = "", exact: bool | None = None
    ) -> None:
        self.d = d
        self.scenario = Scenario.from_dict(d)
        self.sim = Simulator(self.scenario, n=n_rows, chunk=periods + 1)
        self.sim.reset(seeds=seed)
        self.topo = self.sim.topology
        self.refs = [ReferenceSimulator(self.scenario) for _ in range(n_rows)]
        self.n = n_rows
        self.seed = seed
        self.label = label or d["name"]
        self.exact = is_exact(d) if exact is None else exact
        topo = self.topo
        self.slots = [(int(topo.slot_lane[s]), int(topo.slot_mode[s])) for s in range(topo.n_slots)]
        assert self.slots == self.refs[0].slots, "slot numbering differs from (lane, mode) file order"
        self.nodes = list(topo.node_names)
        self.demand_names = [topo.node_names[j] for j in topo.demand_nodes]
        assert self.demand_names == self.refs[0].demand_node_ids
        self.dis_lane = {}
        for s in range(topo.n_slots):
            x = int(topo.slot_disruption[s])
            if x >= 0:
                self.dis_lane[x] = int(topo.slot_lane[s])
        # A cost is a rate-weighted sum of quantities that agree to ATOL each, so it agrees to ATOL
        # times the sum of the rates (1e6-unit orders leave 1-ulp differences of 1.2e-10 units,
        # which a penalty of 20 turns into 2.3e-9 of cost).
        rates = sum(n.holding_cost + n.penalty_cost for n in self.scenario.nodes) + sum(
            m.unit_cost + m.pipeline_holding_cost for lane in self.scenario.lanes for m in lane.modes
        )
        self.cost_atol = ATOL * max(1.0, rates)
        self.history: list[dict] = []
        self.check_state(-1)  # initial state

    def slot(self, name: str) -> int:
        return self.topo.slot_names.index(name)

    def node(self, name: str) -> int:
        return self.nodes.index(name)

    def draws(self, b: int):
        sim, topo = self.sim, self.topo
        p = int(sim.pos[b])
        assert p < sim.chunk, "the harness sizes the block to cover the whole run"
        demand = {name: float(sim.demand_chunk[b, p, d]) for d, name in enumerate(self.demand_names)}
        lts = {}
        for s, key in enumerate(self.slots):
            r = int(topo.slot_lt_rand[s])
            lts[key] = int(sim.lt_chunk[b, p, r]) if r >= 0 else int(topo.slot_lt_const[s])
        outage = {lane: float(sim.dis_chunk[b, p, x]) for x, lane in self.dis_lane.items()}
        return demand, lts, outage

    def step(self, orders: np.ndarray) -> dict:
        orders = np.asarray(orders, dtype=float)
        t = int(self.sim.t[0])
        draws = [self.draws(b) for b in range(self.n)]
        outs = []
        for b, ref in enumerate(self.refs):
            demand, lts, outage = draws[b]
            outs.append(ref.step({key: float(orders[b, s]) for s, key in enumerate(self.slots)}, demand, lts, outage))
        res = self.sim.step(orders.copy())
        ctx = f"[{self.label} reset seed {self.seed}] period {t}"
        exp_costs = np.array([[o["costs"][c] for c in COST_NAMES] for o in outs])
        _check(
            res.costs,
            exp_costs,
            "costs (holding, backorder, lost_sales, ordering, transport, pipeline)",
            ctx,
            exact=False,
            atol=self.cost_atol,
        )
        exp_nodeout = np.array([[o["demand"][name] for name in self.demand_names] for o in outs])
        _check(res.node_out, exp_nodeout, "node_out (demand, filled, short)", ctx, self.exact)
        _check(res.shipped, [[o["shipped"][k] for k in self.slots] for o in outs], "shipped", ctx, self.exact)
        _check(res.orders, [[o["orders"][k] for k in self.slots] for o in outs], "orders", ctx, self.exact)
        # A shipment on a no-crossing slot sets the slot's clock (``docs/model.md``: any shipment
        # does), however small. The reference never adopts the simulator's clock: a difference is
        # a disagreement, reported with the quantities each side shipped on that slot.
        for b, o in enumerate(outs):
            for s in range(self.topo.n_slots):
                key = self.slots[s]
                ref_clock, sim_clock = self.refs[b].periods_until_last_arrival(key), int(self.sim.last_arr[b, s])
                assert self.topo.slot_crossing[s] or ref_clock == sim_clock, (
                    f"{ctx} row {b} slot {self.topo.slot_names[s]}: periods until last arrival: simulator "
                    f"{sim_clock} (shipped {float(res.shipped[b, s])!r}), reference {ref_clock} "
                    f"(shipped {o['shipped'][key]!r})"
                )
        self.check_state(t)
        rec = {
            "t": t,
            "orders": res.orders.copy(),
            "costs": res.costs.copy(),
            "node_out": res.node_out.copy(),
            "shipped": res.shipped.copy(),
            "on_hand": self.sim.on_hand.copy(),
            "cust_bo": self.sim.cust_bo.copy(),
            "raw": self.sim.raw.copy(),
            "owed": self.sim.owed.copy(),
            "pipe": self.sim.pipe.copy(),
            "down": self.sim.down.copy(),
            "lt": [d[1] for d in draws],
            "ref": outs,
        }
        self.history.append(rec)
        return rec

    def check_state(self, t: int) -> None:
        sim, refs, topo = self.sim, self.refs, self.topo
        ctx = f"[{self.label} reset seed {self.seed}] after period {t}"
        ex = self.exact
        _check(sim.on_hand, [[r.on_hand(n) for n in self.nodes] for r in refs], "on_hand", ctx, ex)
        _check(
            sim.cust_bo, [[r.customer_backorders(n) for n in self.nodes] for r in refs], "customer backorders", ctx, ex
        )
        _check(
            sim.raw, [[r.component_stock(li) for li in range(topo.n_lanes)] for r in refs], "component stock", ctx, ex
        )
        _check(sim.owed, [[r.obligations(k) for k in self.slots] for r in refs], "obligations by age", ctx, ex)
        _check(sim.pipe, [[r.pipeline(k) for k in self.slots] for r in refs], "pipeline", ctx, ex)
        nc = [s for s in range(topo.n_slots) if not topo.slot_crossing[s]]
        _check(
            sim.last_arr[:, nc],
            [[r.periods_until_last_arrival(self.slots[s]) for s in nc] for r in refs],
            "periods until last arrival (no-crossing slots)",
            ctx,
            True,
        )
        _check(
            sim.down,
            [[r.is_down(self.dis_lane[x]) for x in range(len(self.dis_lane))] for r in refs],
            "outage state",
            ctx,
            True,
        )
        _check(sim.t, [r.t for r in refs], "t", ctx, True)


def random_orders(pair: Pair, rng: np.random.Generator) -> np.ndarray:
    """Orders for one period, per row: a mix of zeros, small, large, huge, negative (clipped) and
    fractional quantities, or order-up-to style orders on the reference's own positions."""
    topo = pair.topo
    S = topo.n_slots
    out = np.zeros((pair.n, S))
    for b in range(pair.n):
        style = rng.random()
        if style < 0.1:
            continue  # all zeros
        if style < 0.45:  # order-up-to style
            ref = pair.refs[b]
            pos = {n: ref.installation_position(n) for n in pair.nodes}
            for s in range(S):
                dst = pair.nodes[topo.slot_dst[s]]
                target = rng.uniform(0, 40)
                q = max(0.0, target - pos[dst])
                pos[dst] += q
                out[b, s] = q
            continue
        for s in range(S):
            k = rng.random()
            if k < 0.3:
                q = 0.0
            elif k < 0.7:
                q = float(rng.integers(0, 12))
            elif k < 0.82:
                q = rng.uniform(0, 12)  # fractional (rounded if integer)
            elif k < 0.92:
                q = float(rng.integers(20, 200))
            elif k < 0.95:
                q = -rng.uniform(0, 5)  # clipped at 0
            elif k < 0.965:
                q = 1e6
            else:
                q = 2.5  # a tie for the rounding rule
            out[b, s] = q
    return out


def run_random(scenario_seed: int, reset_seed: int, periods: int, n_rows: int = 3) -> Pair:
    d = random_scenario(scenario_seed)
    pair = Pair(d, reset_seed, periods, n_rows, label=f"random_scenario({scenario_seed})")
    rng = np.random.default_rng([scenario_seed, reset_seed])
    for _ in range(periods):
        pair.step(random_orders(pair, rng))
    return pair


# ------------------------------------------------------------------------------------------------
# Random differential tests
# ------------------------------------------------------------------------------------------------
N_SCENARIOS = 240


@pytest.mark.parametrize("scenario_seed", range(N_SCENARIOS))
def test_random_scenario_matches_reference(scenario_seed):
    periods = 30 + (scenario_seed * 7) % 31  # 30..60
    for reset_seed in (1000 * scenario_seed + 11, 1000 * scenario_seed + 517):
        pair = run_random(scenario_seed, reset_seed, periods)
        assert len(pair.history) == periods
        assert int(pair.sim.t[0]) == periods


def test_factory_covers_the_features():
    """The random scenarios of the differential test exercise every feature docs/scenarios.md lists."""
    seen = set()
    for seed in range(N_SCENARIOS):
        d = random_scenario(seed)
        seen.add(d["name"].split("_")[1])
        seen.add(("integer", d["integer_orders"]))
        seen.add(d["allocation"])
        seen.add(d["unmet_demand"])
        if is_exact(d):
            seen.add("exact")
        children = {l["from"] for l in d["lanes"]}
        for nd in d["nodes"]:
            if "bom" in nd and any(r != 1 for r in nd["bom"].values()):
                seen.add("ratio!=1")
            if "bom" in nd and len(nd["bom"]) == 1:
                seen.add("single-lane assembly")
            if nd.get("sourcing") == "alternative":
                seen.add("alternative")
            if "capacity" in nd:
                seen.add("node capacity")
            if "demand" in nd and nd["id"] in children:
                seen.add("internal demand")
            if "demand" in nd:
                seen.add(nd["demand"]["dist"])
        for lane in d["lanes"]:
            if "disruption" in lane:
                seen.add("disruption")
            for m in lane.get("modes", [lane]):
                lt = m["lead_time"]
                seen.add(
                    ("lt", lt if isinstance(lt, int) and lt == 0 else lt["dist"] if isinstance(lt, dict) else "const")
                )
                if m.get("order_crossing") and isinstance(lt, dict) and lt["dist"] != "constant":
                    seen.add("crossing")
                if "capacity" in m:
                    seen.add("mode capacity")
                for key in ("fixed_cost", "unit_cost", "pipeline_holding_cost"):
                    if key in m or key in lane:
                        seen.add(key)
            if "modes" in lane:
                seen.add("modes")
        if any(nd["id"] != f"n{i}" for i, nd in enumerate(d["nodes"])):
            seen.add("shuffled nodes")
    wanted = set(SHAPES) | {
        ("integer", True),
        ("integer", False),
        "fcfs_index",
        "proportional",
        "backorder",
        "lost_sales",
        "exact",
        "ratio!=1",
        "single-lane assembly",
        "alternative",
        "node capacity",
        "internal demand",
        "poisson",
        "uniform_int",
        "normal",
        "gamma",
        "disruption",
        ("lt", 0),
        ("lt", "const"),
        ("lt", "discrete"),
        ("lt", "uniform_int"),
        ("lt", "constant"),
        "crossing",
        "mode capacity",
        "fixed_cost",
        "unit_cost",
        "pipeline_holding_cost",
        "modes",
        "shuffled nodes",
    }
    assert wanted <= seen, f"features never drawn: {wanted - seen}"


def test_factory_is_deterministic():
    assert random_scenario(7) == random_scenario(7)
    assert random_scenario(7) != random_scenario(8)


# ------------------------------------------------------------------------------------------------
# Targeted tests (hand-built scenarios; each also runs the full differential check every period)
# ------------------------------------------------------------------------------------------------
def fixed(v: int) -> dict:
    """Deterministic integer demand ``v`` per period."""
    return {"dist": "uniform_int", "low": v, "high": v}


def scen(nodes, lanes, **kw) -> dict:
    d = {
        "name": kw.pop("name", "targeted"),
        "unmet_demand": "backorder",
        "allocation": "fcfs_index",
        "horizon": 52,
        "integer_orders": True,
        "nodes": nodes,
        "lanes": lanes,
    }
    d.update(kw)
    return d


def drive(pair: Pair, periods: int, orders_by_period: dict) -> None:
    """``orders_by_period[t] = {slot_name: units}`` (same for every row); other slots order 0."""
    for t in range(periods):
        o = np.zeros((pair.n, pair.topo.n_slots))
        for name, q in orders_by_period.get(t, {}).items():
            o[:, pair.slot(name)] = q
        pair.step(o)


def test_proportional_allocation_with_shortage():
    d = scen(
        nodes=[
            {"id": "W", "holding_cost": 1, "initial_inventory": 10},
            {"id": "R1", "holding_cost": 1, "backorder_cost": 5, "demand": fixed(0)},
            {"id": "R2", "holding_cost": 1, "backorder_cost": 5, "demand": fixed(0)},
        ],
        lanes=[
            {"from": "external", "to": "W", "lead_time": 1},
            {"from": "W", "to": "R1", "lead_time": 1},
            {"from": "W", "to": "R2", "lead_time": 1},
        ],
        allocation="proportional",
        integer_orders=False,
    )
    pair = Pair(d, seed=5, periods=3, label="proportional")
    drive(pair, 3, {0: {"W->R1": 10, "W->R2": 5}, 1: {"W->R1": 4, "W->R2": 4}})
    s1, s2 = pair.slot("W->R1"), pair.slot("W->R2")
    np.testing.assert_allclose(pair.history[0]["shipped"][:, [s1, s2]], [[20 / 3, 10 / 3]] * 3, rtol=1e-12)
    # Period 1: W has nothing (its own order was 0), everything stays owed, aged.
    np.testing.assert_allclose(pair.history[1]["owed"][:, s1, 2], 10 / 3, rtol=1e-12)
    np.testing.assert_allclose(pair.history[1]["owed"][:, s2, 2], 5 / 3, rtol=1e-12)
    np.testing.assert_allclose(pair.history[1]["owed"][:, s1, 1], 4.0)


def test_proportional_shares_capacity_left():
    """``min(owed, capacity left) * min(1, budget / total)``: a slot's capacity caps its claim."""
    d = scen(
        nodes=[
            {"id": "W", "holding_cost": 1, "initial_inventory": 9},
            {"id": "R1", "holding_cost": 1, "backorder_cost": 5, "demand": fixed(0)},
            {"id": "R2", "holding_cost": 1, "backorder_cost": 5, "demand": fixed(0)},
        ],
        lanes=[
            {"from": "external", "to": "W", "lead_time": 1},
            {"from": "W", "to": "R1", "lead_time": 0, "capacity": 3},
            {"from": "W", "to": "R2", "lead_time": 0},
        ],
        allocation="proportional",
        integer_orders=False,
    )
    pair = Pair(d, seed=1, periods=1, label="proportional-capacity")
    drive(pair, 1, {0: {"W->R1": 10, "W->R2": 9}})
    # claims 3 and 9, total 12, budget 9: shares 2.25 and 6.75
    np.testing.assert_allclose(
        pair.history[0]["shipped"][:, [pair.slot("W->R1"), pair.slot("W->R2")]], [[2.25, 6.75]] * 3, rtol=1e-12
    )


def test_lost_sales():
    d = scen(
        nodes=[{"id": "S", "holding_cost": 1, "lost_sales_cost": 3, "demand": fixed(8), "initial_inventory": 5}],
        lanes=[{"from": "external", "to": "S", "lead_time": 1}],
        unmet_demand="lost_sales",
    )
    pair = Pair(d, seed=2, periods=3, label="lost_sales")
    drive(pair, 3, {0: {"external->S": 10}})
    h = pair.history
    np.testing.assert_array_equal(h[0]["node_out"][:, 0], [[8, 5, 3]] * 3)
    np.testing.assert_array_equal(h[0]["cust_bo"], 0.0)
    np.testing.assert_allclose(h[0]["costs"][:, 2], 9.0)  # 3 lost x 3
    # Period 1: 10 arrive, demand 8 filled in full: nothing of the lost 3 is served late.
    np.testing.assert_array_equal(h[1]["node_out"][:, 0], [[8, 8, 0]] * 3)
    np.testing.assert_array_equal(h[1]["on_hand"][:, 0], 2.0)
    # Period 2: 2 left, 6 lost.
    np.testing.assert_array_equal(h[2]["node_out"][:, 0], [[8, 2, 6]] * 3)
    np.testing.assert_allclose(h[2]["costs"][:, 2], 18.0)


def test_backorders_served_before_new_demand():
    d = scen(
        nodes=[{"id": "S", "holding_cost": 1, "backorder_cost": 2, "demand": fixed(4), "initial_inventory": 3}],
        lanes=[{"from": "external", "to": "S", "lead_time": 1}],
    )
    pair = Pair(d, seed=2, periods=3, label="backorder")
    drive(pair, 3, {0: {"external->S": 6}})
    h = pair.history
    np.testing.assert_array_equal(h[0]["cust_bo"][:, 0], 1.0)
    # Period 1: 6 arrive: 1 backorder served, then demand 4: filled 4, on hand 1.
    np.testing.assert_array_equal(h[1]["node_out"][:, 0], [[4, 4, 0]] * 3)
    np.testing.assert_array_equal(h[1]["on_hand"][:, 0], 1.0)
    np.testing.assert_array_equal(h[1]["cust_bo"][:, 0], 0.0)


def _arrivals(pair: Pair, s: int) -> list[list[int]]:
    """Per row, arrival period of each positive shipment on slot ``s``, in shipping order (from
    the simulator's pipelines: a shipment at ``t`` with lead time ``L >= 1`` shows at index L-1)."""
    out = []
    for b in range(pair.n):
        arr = []
        prev = np.zeros(pair.topo.pipe_len)
        for rec in pair.history:
            t = rec["t"]
            q = rec["shipped"][b, s]
            if q > 0:
                now = rec["pipe"][b, s]
                diff = now.copy()
                diff[:-1] -= prev[1:]
                ks = np.flatnonzero(np.abs(diff) > 1e-9)
                arr.append(t if len(ks) == 0 else t + 1 + int(ks[0]))
            prev = rec["pipe"][b, s]
        out.append(arr)
    return out


def _random_lt_scenario(crossing: bool) -> dict:
    return scen(
        nodes=[{"id": "S", "holding_cost": 1, "backorder_cost": 5, "demand": fixed(3), "initial_inventory": 5}],
        lanes=[
            {
                "from": "external",
                "to": "S",
                "order_crossing": crossing,
                "lead_time": {"dist": "discrete", "values": [0, 1, 4], "probs": [0.4, 0.2, 0.4]},
            }
        ],
        name=f"random_lt_crossing_{crossing}",
    )


def test_random_lead_times_without_crossing():
    pair = Pair(_random_lt_scenario(False), seed=31, periods=40, n_rows=4, label="no-crossing")
    drive(pair, 40, {t: {"external->S": 3 + t % 4} for t in range(40)})
    binding = 0
    for b, arr in enumerate(_arrivals(pair, 0)):
        assert len(arr) == 40
        assert all(a2 >= a1 for a1, a2 in zip(arr, arr[1:])), f"row {b}: shipments overtook: {arr}"
        drawn = [rec["lt"][b][(0, 0)] for rec in pair.history]
        binding += sum(a > t + L for t, (a, L) in enumerate(zip(arr, drawn)))
    assert binding > 0, "the no-crossing rule never delayed a shipment: the test is not testing it"


def test_random_lead_times_with_crossing():
    pair = Pair(_random_lt_scenario(True), seed=31, periods=40, n_rows=4, label="crossing")
    drive(pair, 40, {t: {"external->S": 3 + t % 4} for t in range(40)})
    crossings = 0
    for b, arr in enumerate(_arrivals(pair, 0)):
        drawn = [rec["lt"][b][(0, 0)] for rec in pair.history]
        assert arr == [t + L for t, L in enumerate(drawn)], f"row {b}: arrivals are not t + L drawn"
        crossings += sum(a2 < a1 for a1, a2 in zip(arr, arr[1:]))
    assert crossings > 0


def test_zero_lead_time_chain_arrives_same_period():
    """L = 0 all the way: external -> A -> B, stock ordered at B arrives within the period, even
    when the file lists B before A."""
    d = scen(
        nodes=[{"id": "B", "holding_cost": 1, "backorder_cost": 5, "demand": fixed(2)}, {"id": "A", "holding_cost": 1}],
        lanes=[{"from": "A", "to": "B", "lead_time": 0}, {"from": "external", "to": "A", "lead_time": 0}],
    )
    pair = Pair(d, seed=3, periods=2, label="zero-lt")
    drive(pair, 2, {0: {"external->A": 5, "A->B": 5}})
    h = pair.history[0]
    np.testing.assert_array_equal(h["node_out"][:, 0], [[2, 2, 0]] * 3)
    np.testing.assert_array_equal(h["on_hand"][:, pair.node("B")], 3.0)
    np.testing.assert_array_equal(h["on_hand"][:, pair.node("A")], 0.0)


def _assembly(integer: bool) -> dict:
    return scen(
        nodes=[
            {"id": "A", "holding_cost": 1, "initial_inventory": 10},
            {"id": "Bc", "holding_cost": 0.5, "initial_inventory": 10},
            {"id": "P", "holding_cost": 2, "bom": {"A": 1, "Bc": 2}, "backorder_cost": 9, "demand": fixed(0)},
        ],
        lanes=[
            {"from": "external", "to": "A", "lead_time": 1},
            {"from": "external", "to": "Bc", "lead_time": 1},
            {"from": "A", "to": "P", "lead_time": 0},
            {"from": "Bc", "to": "P", "lead_time": 1},
        ],
        integer_orders=integer,
        name=f"assembly_{integer}",
    )


def test_assembly_with_ratio_two():
    pair = Pair(_assembly(True), seed=4, periods=3, label="assembly-int")
    drive(pair, 3, {0: {"A->P": 5, "Bc->P": 7}})
    la, lb = 2, 3
    h0, h1 = pair.history[0], pair.history[1]
    # Period 0: A's 5 arrive at once (L=0), Bc's 7 are one period away: no kits yet.
    np.testing.assert_array_equal(h0["raw"][:, [la, lb]], [[5, 0]] * 3)
    np.testing.assert_array_equal(h0["on_hand"][:, pair.node("P")], 0.0)
    # Component stock is charged at the supplier's holding rate: A 5 x 1 + stock at A, Bc.
    np.testing.assert_allclose(h0["costs"][:, 0], 5 * 1 + 5 * 1 + 3 * 0.5)
    # Period 1: 7 of Bc arrive: kits = min(5/1, 7/2) = 3.5 -> 3 whole kits; left A 2, Bc 1.
    np.testing.assert_array_equal(h1["raw"][:, [la, lb]], [[2, 1]] * 3)
    np.testing.assert_array_equal(h1["on_hand"][:, pair.node("P")], 3.0)


def test_assembly_fractional_kits():
    pair = Pair(_assembly(False), seed=4, periods=2, label="assembly-float")
    drive(pair, 2, {0: {"A->P": 5, "Bc->P": 7}})
    h1 = pair.history[1]
    np.testing.assert_allclose(h1["raw"][:, [2, 3]], [[1.5, 0.0]] * 3, atol=1e-12)
    np.testing.assert_allclose(h1["on_hand"][:, pair.node("P")], 3.5)


def test_alternative_sourcing():
    d = scen(
        nodes=[
            {"id": "W1", "holding_cost": 1, "initial_inventory": 4},
            {"id": "W2", "holding_cost": 1, "initial_inventory": 6},
            {
                "id": "X",
                "holding_cost": 2,
                "sourcing": "alternative",
                "backorder_cost": 9,
                "demand": fixed(1),
                "initial_inventory": 1,
            },
        ],
        lanes=[
            {"from": "external", "to": "W1", "lead_time": 1},
            {"from": "external", "to": "W2", "lead_time": 1},
            {"from": "W1", "to": "X", "lead_time": 0},
            {"from": "W2", "to": "X", "lead_time": 1},
        ],
    )
    pair = Pair(d, seed=6, periods=3, label="alternative")
    drive(pair, 3, {0: {"W1->X": 3, "W2->X": 5}})
    h0, h1 = pair.history[0], pair.history[1]
    x = pair.node("X")
    np.testing.assert_array_equal(h0["raw"], 0.0)  # no component stock
    np.testing.assert_array_equal(h0["on_hand"][:, x], 1 + 3 - 1)
    np.testing.assert_array_equal(h1["on_hand"][:, x], 3 + 5 - 1)


def test_node_capacity_fcfs_index():
    d = scen(
        nodes=[
            {"id": "R2", "holding_cost": 1, "backorder_cost": 5, "demand": fixed(0)},
            {"id": "W", "holding_cost": 1, "initial_inventory": 100, "capacity": 4},
            {"id": "R1", "holding_cost": 1, "backorder_cost": 5, "demand": fixed(0)},
        ],
        lanes=[
            {"from": "W", "to": "R1", "lead_time": 1},
            {"from": "external", "to": "W", "lead_time": 1},
            {"from": "W", "to": "R2", "lead_time": 1},
        ],
    )
    pair = Pair(d, seed=8, periods=2, label="node-capacity")
    drive(pair, 2, {0: {"W->R1": 3, "W->R2": 3}})
    s1, s2 = pair.slot("W->R1"), pair.slot("W->R2")
    # R2 is listed first in the file, so fcfs_index serves it first: 3 to R2, 1 to R1.
    np.testing.assert_array_equal(pair.history[0]["shipped"][:, [s2, s1]], [[3, 1]] * 3)
    np.testing.assert_array_equal(pair.history[1]["shipped"][:, [s2, s1]], [[0, 2]] * 3)


def test_mode_capacity():
    d = scen(
        nodes=[{"id": "S", "holding_cost": 1, "backorder_cost": 5, "demand": fixed(0)}],
        lanes=[
            {
                "from": "external",
                "to": "S",
                "modes": [
                    {"name": "fast", "lead_time": 0, "capacity": 2, "unit_cost": 3, "fixed_cost": 1},
                    {"name": "slow", "lead_time": 2, "unit_cost": 1, "pipeline_holding_cost": 0.5},
                ],
            }
        ],
    )
    pair = Pair(d, seed=9, periods=6, label="mode-capacity")
    drive(pair, 6, {0: {"external->S:fast": 5, "external->S:slow": 5}, 1: {"external->S:fast": 1}})
    fast, slow = pair.slot("external->S:fast"), pair.slot("external->S:slow")
    sh = np.array([rec["shipped"][0, [fast, slow]] for rec in pair.history])
    np.testing.assert_array_equal(sh, [[2, 5], [2, 0], [2, 0], [0, 0], [0, 0], [0, 0]])
    np.testing.assert_array_equal(pair.history[0]["owed"][:, fast, 1], 3.0)
    # Period 1 ships the 2 oldest units first: 1 left of period 0's order (now age 2), and
    # period 1's order (age 1) untouched; period 2 ships both.
    np.testing.assert_array_equal(pair.history[1]["owed"][:, fast, :3], [[0, 1, 1]] * 3)
    np.testing.assert_array_equal(pair.history[2]["owed"][:, fast], 0.0)
    np.testing.assert_allclose(pair.history[0]["costs"][:, 3], 1.0)  # fixed cost of the fast order
    np.testing.assert_allclose(pair.history[0]["costs"][:, 4], 2 * 3 + 5 * 1)
    np.testing.assert_allclose(pair.history[0]["costs"][:, 5], 5 * 0.5)  # slow units in transit


def test_slot_capacity_fcfs_index():
    """A slot's capacity caps what it gets; the budget it leaves goes to the next customer."""
    d = scen(
        nodes=[
            {"id": "W", "holding_cost": 1, "initial_inventory": 6},
            {"id": "R1", "holding_cost": 1, "backorder_cost": 5, "demand": fixed(0)},
            {"id": "R2", "holding_cost": 1, "backorder_cost": 5, "demand": fixed(0)},
        ],
        lanes=[
            {"from": "external", "to": "W", "lead_time": 1},
            {"from": "W", "to": "R1", "lead_time": 1, "capacity": 2},
            {"from": "W", "to": "R2", "lead_time": 1},
        ],
    )
    pair = Pair(d, seed=8, periods=2, label="slot-capacity")
    drive(pair, 2, {0: {"W->R1": 5, "W->R2": 5}})
    s1, s2 = pair.slot("W->R1"), pair.slot("W->R2")
    np.testing.assert_array_equal(pair.history[0]["shipped"][:, [s1, s2]], [[2, 4]] * 3)
    np.testing.assert_array_equal(pair.history[1]["shipped"][:, [s1, s2]], 0.0)  # W is empty
    np.testing.assert_array_equal(pair.history[1]["owed"][:, [s1, s2], 2], [[3, 1]] * 3)


def test_outage_follows_its_uniforms():
    """Up -> down when u < start_probability, down -> up when u < 1 / mean_duration."""
    d = scen(
        nodes=[{"id": "S", "holding_cost": 1, "backorder_cost": 5, "demand": fixed(0)}],
        lanes=[
            {
                "from": "external",
                "to": "S",
                "lead_time": 0,
                "disruption": {"start_probability": 0.6, "mean_duration": 4.0},
            }
        ],
    )
    pair = Pair(d, seed=21, periods=40, n_rows=4, label="outage-uniforms")
    u = pair.sim.dis_chunk[:, :40, 0].copy()
    drive(pair, 40, {t: {"external->S": 1} for t in range(40)})
    for b in range(4):
        down, expected = False, []
        for t in range(40):
            down = (u[b, t] >= 0.25) if down else (u[b, t] < 0.6)
            expected.append(down)
        got = [bool(rec["down"][b, 0]) for rec in pair.history]
        assert got == expected, f"row {b}"
        assert any(expected) and not all(expected)


def test_outage_alternates():
    """start_probability 1 and mean_duration 1: down in even periods, up in odd ones."""
    d = scen(
        nodes=[{"id": "S", "holding_cost": 1, "backorder_cost": 5, "demand": fixed(0)}],
        lanes=[
            {
                "from": "external",
                "to": "S",
                "lead_time": 0,
                "disruption": {"start_probability": 1.0, "mean_duration": 1.0},
            }
        ],
    )
    pair = Pair(d, seed=10, periods=4, label="outage")
    drive(pair, 4, {0: {"external->S": 4}, 1: {"external->S": 3}, 2: {"external->S": 1}})
    down = [bool(rec["down"][0, 0]) for rec in pair.history]
    assert down == [True, False, True, False]
    sh = [rec["shipped"][0, 0] for rec in pair.history]
    assert sh == [0, 7, 0, 1]


def test_random_outages():
    d = scen(
        nodes=[
            {"id": "W", "holding_cost": 1, "initial_inventory": 10},
            {"id": "S", "holding_cost": 1, "backorder_cost": 5, "demand": {"dist": "poisson", "mean": 4}},
        ],
        lanes=[
            {
                "from": "external",
                "to": "W",
                "lead_time": 1,
                "disruption": {"start_probability": 0.3, "mean_duration": 3.0},
            },
            {"from": "W", "to": "S", "lead_time": 1},
        ],
    )
    pair = Pair(d, seed=12, periods=50, n_rows=4, label="random-outage")
    drive(pair, 50, {t: {"external->W": 4, "W->S": 4} for t in range(50)})
    downs = np.array([rec["down"][:, 0] for rec in pair.history])
    assert downs.any() and not downs.all()
    ships = np.array([rec["shipped"][:, 0] for rec in pair.history])
    assert (ships[downs] == 0).all()


def _age_scenario(allocation: str, ext_lt: int) -> dict:
    return scen(
        nodes=[
            {"id": "W", "holding_cost": 1},
            {"id": "R1", "holding_cost": 1, "backorder_cost": 5, "demand": fixed(0)},
            {"id": "R2", "holding_cost": 1, "backorder_cost": 5, "demand": fixed(0)},
        ],
        lanes=[
            {"from": "external", "to": "W", "lead_time": ext_lt},
            {"from": "W", "to": "R1", "lead_time": 1},
            {"from": "W", "to": "R2", "lead_time": 1},
        ],
        allocation=allocation,
        name=f"ages_{allocation}",
    )


@pytest.mark.parametrize("allocation", ["fcfs_index", "proportional"])
def test_older_obligation_served_first(allocation):
    """R2 (later in the file) ordered a period before R1: the older obligation goes first."""
    pair = Pair(_age_scenario(allocation, 1), seed=13, periods=3, label=f"ages-{allocation}")
    drive(pair, 3, {0: {"external->W": 5, "W->R2": 5}, 1: {"W->R1": 5}})
    s1, s2 = pair.slot("W->R1"), pair.slot("W->R2")
    np.testing.assert_array_equal(pair.history[1]["shipped"][:, [s1, s2]], [[0, 5]] * 3)
    np.testing.assert_array_equal(pair.history[1]["owed"][:, s1, 1], 5.0)


def test_obligations_older_than_15_share_a_bucket():
    """R2 orders at period 0, R1 at period 1; stock first reaches W at period 17. Both are in
    the pooled age-15 bucket, where fcfs_index serves R1 (earlier in the file) first."""
    pair = Pair(_age_scenario("fcfs_index", 17), seed=14, periods=19, label="ages-pooled")
    drive(pair, 19, {0: {"external->W": 5, "W->R2": 5}, 1: {"W->R1": 5}})
    s1, s2 = pair.slot("W->R1"), pair.slot("W->R2")
    np.testing.assert_array_equal(pair.history[16]["owed"][:, s2, AGES - 1], 5.0)  # pooled by now
    np.testing.assert_array_equal(pair.history[16]["owed"][:, s1, AGES - 1], 5.0)
    np.testing.assert_array_equal(pair.history[17]["shipped"][:, [s1, s2]], [[5, 0]] * 3)
    np.testing.assert_array_equal(pair.history[17]["owed"][:, s2, AGES - 1], 5.0)


def test_integer_orders_are_rounded_and_clipped():
    d = scen(
        nodes=[{"id": "S", "holding_cost": 1, "backorder_cost": 5, "demand": fixed(0)}],
        lanes=[{"from": "external", "to": "S", "lead_time": 1, "fixed_cost": 2}],
    )
    pair = Pair(d, seed=15, periods=4, label="rounding")
    for q in (2.4, 2.5, -3.0, 0.4):
        pair.step(np.full((3, 1), q))
    np.testing.assert_array_equal([rec["orders"][0, 0] for rec in pair.history], [2, 2, 0, 0])
    np.testing.assert_allclose([rec["costs"][0, 3] for rec in pair.history], [2, 2, 0, 0])


def test_reference_detects_a_difference():
    """The harness is not vacuous: a reference fed another demand draw must be caught."""
    d = scen(
        nodes=[
            {
                "id": "S",
                "holding_cost": 1,
                "backorder_cost": 5,
                "demand": {"dist": "poisson", "mean": 5},
                "initial_inventory": 20,
            }
        ],
        lanes=[{"from": "external", "to": "S", "lead_time": 1}],
    )
    pair = Pair(d, seed=16, periods=3, label="sabotage")
    pair.refs[1]._on_hand["S"] += 1.0  # row 1's reference now holds one more unit
    with pytest.raises(AssertionError, match=r"\[sabotage reset seed 16\] period 0"):
        pair.step(np.zeros((3, 1)))
