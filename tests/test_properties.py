"""Property tests of the step function: conservation of units, signs, finiteness under any orders."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meio import envs
from meio.envs.simulator import Simulator

SCENARIOS = envs.list_scenarios()
PERIODS = 25

order_patterns = st.lists(
    st.one_of(
        st.just(0.0),
        st.floats(min_value=0.0, max_value=50.0, allow_nan=False),
        st.floats(min_value=-1e3, max_value=0.0, allow_nan=False),  # negative orders are clipped to 0
        st.just(1e9),  # absurdly large orders
    ),
    min_size=1,
    max_size=8,
)


def _orders(pattern: list[float], t: int, n: int, s: int) -> np.ndarray:
    flat = np.array([pattern[(t * s + k) % len(pattern)] for k in range(n * s)])
    return flat.reshape(n, s)


@pytest.mark.parametrize("name", SCENARIOS)
@settings(max_examples=15, deadline=None)
@given(pattern=order_patterns, seed=st.integers(0, 2**31 - 1))
def test_units_are_conserved_node_by_node_and_nothing_goes_negative(name, pattern, seed):
    sim = Simulator(name, n=3)
    sim.reset(seeds=seed)
    topo = sim.topology
    n_rows = sim.n
    start_on_hand, start_raw = sim.on_hand.copy(), sim.raw.copy()
    start_pipe, start_owed = sim.pipe.sum(axis=2), sim.owed.sum(axis=2)
    shipped = np.zeros((n_rows, topo.n_slots))
    ordered = np.zeros((n_rows, topo.n_slots))
    sales = np.zeros((n_rows, topo.n_nodes))
    for t in range(PERIODS):
        bo_before = sim.cust_bo.copy()
        res = sim.step(_orders(pattern, t, n_rows, topo.n_slots))
        shipped += res.shipped
        ordered += res.orders
        dn = topo.demand_nodes
        filled = res.node_out[:, :, 1]
        served = (bo_before[:, dn] + res.node_out[:, :, 2] - sim.cust_bo[:, dn]) if topo.backorders else 0.0
        sales[:, dn] += filled + served
        for arr in (sim.on_hand, sim.raw, sim.cust_bo, sim.owed, sim.pipe, res.shipped, res.costs, res.node_out):
            assert np.isfinite(arr).all()
            assert (arr >= -1e-9 * max(1.0, np.abs(arr).max())).all()
        np.testing.assert_allclose(res.node_out[:, :, 1] + res.node_out[:, :, 2], res.node_out[:, :, 0])
    tol = dict(rtol=1e-9, atol=1e-9 * max(1.0, ordered.max()))
    # Obligations: what was ordered and not shipped is still owed.
    np.testing.assert_allclose(sim.owed.sum(axis=2) - start_owed, ordered - shipped, **tol)
    d_pipe = sim.pipe.sum(axis=2) - start_pipe
    received = shipped - d_pipe  # per slot, over the run
    out_of = np.zeros((n_rows, topo.n_nodes))
    for s in range(topo.n_slots):
        if topo.slot_src[s] >= 0:
            out_of[:, topo.slot_src[s]] += shipped[:, s]
    made = sim.on_hand - start_on_hand + out_of + sales  # units that appeared at each node
    for j in range(topo.n_nodes):
        slots = topo.slots_into(j)
        if topo.is_assembly[j]:
            for lane in topo.in_lanes[topo.in_lane_ptr[j] : topo.in_lane_ptr[j + 1]]:
                lane_slots = [s for s in slots if topo.slot_lane[s] == lane]
                np.testing.assert_allclose(
                    received[:, lane_slots].sum(axis=1),
                    sim.raw[:, lane] - start_raw[:, lane] + topo.lane_bom[lane] * made[:, j],
                    **tol,
                )
        else:
            np.testing.assert_allclose(made[:, j], received[:, slots].sum(axis=1), **tol)


@pytest.mark.parametrize("name", ["general", "assembly", "disruption"])
@settings(max_examples=10, deadline=None)
@given(
    actions=st.lists(st.sampled_from([-1.0, 1.0, -1e6, 1e6, 0.0]), min_size=1, max_size=6), seed=st.integers(0, 10_000)
)
def test_extreme_actions_give_finite_observations_and_rewards(name, actions, seed):
    vec = envs.make_vec_env(name, n_envs=2, seed=seed, action_mode="order_up_to")
    vec.reset()
    n_act = vec.action_space.shape[0]
    for t in range(vec.scenario.horizon + 3):
        a = np.array([[actions[(t + i + k) % len(actions)] for k in range(n_act)] for i in range(2)], dtype=np.float32)
        obs, rew, _, _ = vec.step(a)
        assert np.isfinite(obs).all() and np.isfinite(rew).all()
        assert (rew <= 0).all()


def test_integer_scenarios_stay_integral():
    sim = Simulator("beer_game", n=4)
    sim.reset(seeds=3)
    rng = np.random.default_rng(0)
    for _ in range(60):
        sim.step(rng.uniform(0, 12, (4, sim.topology.n_slots)))  # rounded: integer_orders
        for arr in (sim.on_hand, sim.cust_bo, sim.owed, sim.pipe):
            np.testing.assert_array_equal(arr, np.rint(arr))


def test_non_finite_orders_are_refused_with_the_slot_named():
    sim = Simulator("ex61", n=2)
    orders = np.zeros((2, 3))
    orders[1, 2] = np.nan
    with pytest.raises(ValueError, match=r"orders\[1, 2\] \(external->plant\): nan is not a finite quantity"):
        sim.step(orders)
