"""The step kernel's interface: the named structures of ``meio.envs.dynamics``.

The kernel takes ``KernelParams``, ``KernelState``, ``KernelDraws`` and ``KernelOut`` whole. These
tests hold the structures to what they promise:

* the state structure *is* the state: a copy of a scenario stepped only through freshly built
  structures (no :class:`Simulator` stepping) matches the per-node reference of ``docs/model.md``
  (``tests/reference_sim.py``) field by field, every field of ``KernelState`` and ``KernelOut`` is
  compared (a new field without a comparison fails), and every state field changes in some run;
* the simulator's reset sets every state field from the field list, and its long-standing
  attributes (``on_hand``, ``pipe``, ``pos``, ``last_costs``, ...) are the structures' arrays;
* the numba mirrors (``as_struct``) hold the same arrays, and the ``parallel`` compilation
  updates them as the serial one does.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from reference_sim import COST_NAMES as REF_COST_NAMES
from reference_sim import ReferenceSimulator
from scenario_factory import SHAPES, is_exact, random_scenario

from meio.envs.dynamics import (
    COST_NAMES,
    KernelDraws,
    KernelOut,
    KernelParams,
    KernelState,
    as_struct,
    kernel_params,
    new_draws,
    new_out,
    new_state,
    step_kernel,
    step_kernel_serial,
)
from meio.envs.scenario import Scenario
from meio.envs.simulator import Simulator

ROWS = 2
PERIODS = 25

#: The attribute names the rest of the code base uses for the structures' fields.
LEGACY = {
    "on_hand": ("state", "on_hand"),
    "raw": ("state", "raw"),
    "cust_bo": ("state", "cust_bo"),
    "owed": ("state", "owed"),
    "owed_depth": ("state", "owed_depth"),
    "pipe": ("state", "pipe"),
    "last_arr": ("state", "last_arr"),
    "down": ("state", "down"),
    "t": ("state", "t"),
    "demand_chunk": ("draws", "demand_chunk"),
    "lt_chunk": ("draws", "lt_chunk"),
    "dis_chunk": ("draws", "dis_chunk"),
    "pos": ("draws", "pos"),
    "last_costs": ("out", "costs"),
    "last_node_out": ("out", "node_out"),
    "last_shipped": ("out", "shipped"),
}


class Driven:
    """A copy of a scenario stepped by calling ``step_kernel_serial`` on its own structures.

    Only the draws come from a :class:`Simulator` (its first block after ``reset(seeds)``, sized to
    cover the run); the state starts from :func:`new_state` and the scenario's initial stock.
    """

    def __init__(self, d: dict, seed: int) -> None:
        self.scenario = Scenario.from_dict(d)
        source = Simulator(self.scenario, n=ROWS, chunk=PERIODS + 1)
        source.reset(seeds=seed)
        topo = self.topo = source.topology
        self.params = kernel_params(topo)
        self.state = new_state(topo, ROWS)
        self.state.on_hand[:] = topo.initial_inventory
        self.draws = new_draws(topo, ROWS, PERIODS + 1)
        for mine, theirs in zip(self.draws, source.draws):
            mine[...] = theirs
        self.out = new_out(topo, ROWS)
        self.structs = [as_struct(x) for x in (self.params, self.state, self.draws, self.out)]

    def step(self, orders: np.ndarray) -> None:
        p, s, d, o = self.structs
        step_kernel_serial(p, s, orders, d, o)


def _reference_readers(
    topo, slots: list[tuple[int, int]], dis_lane: dict[int, int]
) -> dict[str, Callable[[ReferenceSimulator], object]]:
    """Per KernelState field, the reference's value of it for one row."""
    nodes = topo.node_names
    return {
        "on_hand": lambda r: [r.on_hand(n) for n in nodes],
        "raw": lambda r: [r.component_stock(lane) for lane in range(topo.n_lanes)],
        "cust_bo": lambda r: [r.customer_backorders(n) for n in nodes],
        "owed": lambda r: [r.obligations(k) for k in slots],
        # buckets in use: one past the oldest non-zero obligation (0: none owed)
        "owed_depth": lambda r: [
            max((a + 1 for a, q in enumerate(r.obligations(k)) if q > 0), default=0) for k in slots
        ],
        "pipe": lambda r: [r.pipeline(k) for k in slots],
        # the clock of a slot whose shipments may overtake each other is never kept (stays 0)
        "last_arr": lambda r: [
            0 if topo.slot_crossing[s] else r.periods_until_last_arrival(k) for s, k in enumerate(slots)
        ],
        "down": lambda r: [r.is_down(dis_lane[x]) for x in range(len(dis_lane))],
        "t": lambda r: r.t,
    }


def _orders(rng: np.random.Generator, n_slots: int, integer: bool) -> np.ndarray:
    """Orders as Simulator.step passes them on: >= 0, whole units when the scenario asks."""
    q = np.where(rng.random((ROWS, n_slots)) < 0.3, 0.0, rng.uniform(0, 30, (ROWS, n_slots)))
    return np.rint(q) if integer else q


def _compare(actual: np.ndarray, expected, what: str, exact: bool) -> None:
    if exact:
        np.testing.assert_array_equal(actual, np.asarray(expected, dtype=actual.dtype), err_msg=what)
    else:
        np.testing.assert_allclose(actual, np.asarray(expected, dtype=float), rtol=1e-9, atol=1e-9, err_msg=what)


@pytest.fixture(scope="module")
def changed_fields() -> set[str]:
    """Filled by the reference test: the state fields that changed in some run."""
    return set()


@pytest.mark.parametrize("shape", SHAPES)
def test_structures_alone_step_as_the_reference(shape: str, changed_fields: set[str]) -> None:
    d = random_scenario(31 + SHAPES.index(shape), shape=shape)
    run = Driven(d, seed=5)
    topo, state, out = run.topo, run.state, run.out
    slots = [(int(topo.slot_lane[s]), int(topo.slot_mode[s])) for s in range(topo.n_slots)]
    dis_lane = {
        int(topo.slot_disruption[s]): int(topo.slot_lane[s])
        for s in range(topo.n_slots)
        if topo.slot_disruption[s] >= 0
    }
    readers = _reference_readers(topo, slots, dis_lane)
    assert set(readers) == set(KernelState._fields), "every state field needs its reference counterpart"
    exact = is_exact(d)
    refs = [ReferenceSimulator(run.scenario) for _ in range(ROWS)]
    demand_names = [topo.node_names[j] for j in topo.demand_nodes]
    rng = np.random.default_rng([31, SHAPES.index(shape)])
    start = {f: getattr(state, f).copy() for f in KernelState._fields}
    for period in range(PERIODS):
        orders = _orders(rng, topo.n_slots, topo.integer_orders)
        p = int(run.draws.pos[0])
        outs = []
        for b, ref in enumerate(refs):
            demand = {name: float(run.draws.demand_chunk[b, p, k]) for k, name in enumerate(demand_names)}
            lts = {
                key: int(run.draws.lt_chunk[b, p, topo.slot_lt_rand[s]])
                if topo.slot_lt_rand[s] >= 0
                else int(topo.slot_lt_const[s])
                for s, key in enumerate(slots)
            }
            outage = {lane: float(run.draws.dis_chunk[b, p, x]) for x, lane in dis_lane.items()}
            outs.append(ref.step({key: float(orders[b, s]) for s, key in enumerate(slots)}, demand, lts, outage))
        run.step(orders)
        where = f"{d['name']} period {period}"
        for field in KernelState._fields:  # the state, read only through the structure
            _compare(
                getattr(state, field),
                [readers[field](r) for r in refs],
                f"{where}: state.{field}",
                exact or field in ("owed_depth", "last_arr", "down", "t"),
            )
        expected_out = {
            "costs": [[o["costs"][c] for c in COST_NAMES] for o in outs],
            "node_out": [[o["demand"][name] for name in demand_names] for o in outs],
            "shipped": [[o["shipped"][k] for k in slots] for o in outs],
        }
        assert set(expected_out) == set(KernelOut._fields), "every output field needs its reference counterpart"
        for field in KernelOut._fields:
            _compare(getattr(out, field), expected_out[field], f"{where}: out.{field}", exact and field != "costs")
        np.testing.assert_array_equal(run.draws.pos, period + 1)
    changed_fields.update(f for f in KernelState._fields if not np.array_equal(start[f], getattr(state, f)))


def test_every_state_field_is_stepped(changed_fields: set[str]) -> None:
    """Each KernelState field changed in one of the runs above: none is dead weight."""
    if len(changed_fields) == 0:
        pytest.skip("needs the reference runs of this module")
    assert changed_fields == set(KernelState._fields)


def test_cost_columns_are_the_references() -> None:
    assert COST_NAMES == REF_COST_NAMES


def test_reset_sets_every_state_field_from_the_field_list() -> None:
    sim = Simulator("disruption", n=3)  # every state field non-empty (an outage lane)
    assert all(getattr(sim.state, f).size for f in KernelState._fields)
    rng = np.random.default_rng(0)
    for _ in range(7):
        sim.step(rng.uniform(0, 20, (3, sim.topology.n_slots)))
    for field in KernelState._fields:  # dirty every field, whatever the step left
        arr = getattr(sim.state, field)
        arr[...] = True if arr.dtype == np.bool_ else 3
    sim.reset(seeds=1, rows=[1])
    for field in KernelState._fields:
        arr = getattr(sim.state, field)
        want = sim.topology.initial_inventory if field == "on_hand" else 0
        np.testing.assert_array_equal(arr[1], np.broadcast_to(want, arr[1].shape).astype(arr.dtype), err_msg=field)
        assert (arr[[0, 2]] != 0).any(), f"{field}: reset of row 1 touched other rows"
    assert sim.pos[1] == 0


def test_simulator_attributes_are_the_structures_arrays() -> None:
    sim = Simulator("general", n=2)
    names = {"state": KernelState._fields, "draws": KernelDraws._fields, "out": KernelOut._fields}
    assert {f for group, fields in names.items() for f in fields} == {f for _, f in LEGACY.values()}
    for attr, (group, field) in LEGACY.items():
        assert getattr(sim, attr) is getattr(getattr(sim, group), field), attr
    before = sim.on_hand.copy()
    sim.step(np.zeros((2, sim.topology.n_slots)))
    np.testing.assert_array_equal(sim.state.t, 1)  # the kernel wrote into the named-tuple arrays
    assert not np.array_equal(before, sim.state.on_hand)
    with pytest.raises(AttributeError):
        sim.on_hand = np.zeros_like(before)  # rebinding would split the simulator from its state


def test_params_are_the_topologys_arrays() -> None:
    topo = Simulator("assembly").topology
    params = kernel_params(topo)
    for field in KernelParams._fields:
        if field == "whole_kits":
            assert params.whole_kits is topo.integer_orders
        else:
            assert getattr(params, field) is getattr(topo, field), field
    assert isinstance(params.backorders, bool) and isinstance(params.proportional, bool)


def test_as_struct_rejects_other_values() -> None:
    with pytest.raises(TypeError, match="as_struct: a tuple is not a kernel structure; expected one of KernelParams"):
        as_struct((np.zeros(1),))  # a plain tuple, even of arrays, is none


def test_parallel_compilation_updates_the_structures_as_the_serial_one() -> None:
    """The ``parallel`` compilation (one thread here) against its serial twin, every field bit for bit."""
    runs = []
    for kernel in (step_kernel_serial, step_kernel):
        sim = Simulator("disruption", n=4)
        sim.reset(seeds=2)
        rng = np.random.default_rng(1)
        p, s, d, o = (as_struct(x) for x in (sim.params, sim.state, sim.draws, sim.out))
        for _ in range(6):
            kernel(p, s, rng.uniform(0, 10, (4, sim.topology.n_slots)), d, o)
        runs.append([a.copy() for a in (*sim.state, *sim.draws, *sim.out)])
    np.testing.assert_array_equal(runs[0][KernelState._fields.index("t")], 6)
    for a, b in zip(*runs):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("how", ["pickle", "deepcopy"])
def test_a_copied_simulator_steps_on_its_own_arrays(how: str) -> None:
    import copy
    import pickle

    sim = Simulator("disruption", n=2)
    sim.reset(seeds=4)
    rng = np.random.default_rng(2)
    sim.step(rng.uniform(0, 10, (2, sim.topology.n_slots)))
    twin = pickle.loads(pickle.dumps(sim)) if how == "pickle" else copy.deepcopy(sim)
    assert twin.state.on_hand is not sim.state.on_hand
    orders = rng.uniform(0, 10, (3, 2, sim.topology.n_slots))
    for o in orders:
        sim.step(o)
    t_before = twin.t.copy()
    for o in orders:
        twin.step(o)
    np.testing.assert_array_equal(t_before, 1)  # the original's steps did not move the copy
    for a, b in zip((*sim.state, *sim.draws, *sim.out), (*twin.state, *twin.draws, *twin.out)):
        np.testing.assert_array_equal(a, b)
