"""The differentiable twin (``meio.envs.twin``, ``docs/twin.md``) against the numba kernel.

The parity tests are the contract that keeps the two implementations of ``docs/model.md`` in
step: the same state, the same orders and the very random numbers the simulator's step used
(``last_draws``) must give the same next state, costs and demand outputs, float64, ``atol 1e-9``,
every period of every row. A change to the dynamics must change both.

Orders are drawn from a seeded generator, uniform on ``[-0.2, 2.2]`` times each slot's share of
the mean demand through its node (negative draws test the clipping at 0; integer scenarios test the
rounding), so stock runs out, obligations age over many buckets and backlogs grow and shrink.
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from scenario_factory import random_scenario  # noqa: E402

from meio.envs.scenario import Scenario, list_scenarios, load_scenario  # noqa: E402
from meio.envs.simulator import Simulator  # noqa: E402
from meio.envs.topology import Topology, compile_topology  # noqa: E402
from meio.envs.twin import (  # noqa: E402
    TwinParams,
    TwinState,
    TwinUnsupported,
    draw_block,
    initial_state,
    last_draws,
    period,
    rollout,
    state_from_simulator,
)

ATOL = 1e-9
ROWS = 64
#: Scenarios run for the tracker's full 1,000 periods x 64 rows: together they have correlated
#: normal demand, every other demand distribution, transport modes, a random lead time without
#: crossing, node and slot capacities, alternative sourcing, unit and fixed costs. The other shipped
#: scenarios (outages, assembly with whole kits, lost sales, proportional allocation, ...) run
#: SHORT_PERIODS periods to keep the suite fast: the twin takes a few ms per period at 64 rows,
#: mostly Python overhead of its loops over nodes, slots and obligation ages.
LONG = ("general", "dual_sourcing")
LONG_PERIODS = 1000
SHORT_PERIODS = 150


def _orders(topo: Topology, rng: np.random.Generator, rows: int) -> np.ndarray:
    """Uniform orders around each slot's share of the mean demand through its node."""
    mean = topo.throughput[topo.slot_dst] * topo.lane_bom[topo.slot_lane]
    n_in = np.array([len(topo.slots_into(j)) for j in range(topo.n_nodes)])
    return rng.uniform(-0.2, 2.2, size=(rows, topo.n_slots)) * (mean / n_in[topo.slot_dst])


def _compare(
    sim: Simulator,
    state: TwinState,
    costs: torch.Tensor,
    node_out: torch.Tensor,
    sim_costs: np.ndarray,
    sim_out: np.ndarray,
    ctx: str,
    atol: float = ATOL,
) -> None:
    pairs = (
        ("on_hand", state.on_hand, sim.on_hand),
        ("raw", state.raw, sim.raw),
        ("cust_bo", state.cust_bo, sim.cust_bo),
        ("owed", state.owed, sim.owed),
        ("pipe", state.pipe, sim.pipe),
        ("last_arr", state.last_arr, sim.last_arr),
        ("down", state.down, sim.down),
        ("t", state.t, sim.t),
        ("costs", costs, sim_costs),
        ("node_out", node_out, sim_out),
    )
    for what, twin, kernel in pairs:
        a = twin.detach().cpu().numpy().astype(float)
        b = np.asarray(kernel, dtype=float)
        assert a.shape == b.shape, f"{ctx}: {what} has shape {a.shape}, kernel {b.shape}"
        if a.size and not np.abs(a - b).max() <= atol:
            first = tuple(int(i) for i in np.argwhere(~(np.abs(a - b) <= atol))[0])
            raise AssertionError(
                f"{ctx}: {what} differs at {first} (row first): twin {a[first]!r}, kernel {b[first]!r}"
            )


def _lockstep(scenario: str | Scenario, periods: int, rows: int, seed: int, **twin_options) -> None:
    sim = Simulator(scenario, n=rows, threads=1)
    sim.reset(seeds=seed)
    topo = sim.topology
    params = TwinParams.from_topology(topo, **twin_options)
    state = state_from_simulator(sim, params)
    rng = np.random.default_rng(seed)
    name = topo.scenario.name
    with torch.no_grad():
        for k in range(periods):
            orders = _orders(topo, rng, rows)
            step = sim.step(orders)
            given = torch.tensor(orders, device=params.device)
            state, costs, node_out = period(params, state, given, last_draws(sim, params))
            _compare(sim, state, costs, node_out, step.costs, step.node_out, f"{name}, seed {seed}, period {k}")


@pytest.mark.parametrize("name", list_scenarios())
def test_parity_with_kernel_on_shipped_scenarios(name: str) -> None:
    """Same states, costs and outputs as the numba kernel, every period, float64, 1e-9. Fixed
    ordering costs (fixed_cost, general) are counted without gradient (``fixed_costs="count"``)."""
    periods = LONG_PERIODS if name in LONG else SHORT_PERIODS
    _lockstep(name, periods, ROWS, seed=7, fixed_costs="count")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
@pytest.mark.parametrize("name", list_scenarios())
def test_parity_with_kernel_on_cuda(name: str) -> None:
    """The same contract on a CUDA device: the twin's tensors live on the GPU, the kernel's on the
    CPU, and every state, cost and output agrees to 1e-9 in float64, period by period."""
    _lockstep(name, SHORT_PERIODS, ROWS, seed=11, fixed_costs="count", device="cuda")


@pytest.mark.parametrize("seed", range(8))
def test_parity_with_kernel_on_random_networks(seed: int) -> None:
    """Random scenarios of every shape (tests/scenario_factory.py): order crossing, pipeline
    costs, node capacities, zero lead times, internal demand nodes, shuffled file order."""
    _lockstep(Scenario.from_dict(random_scenario(1000 + seed)), 100, 16, seed=seed, fixed_costs="count")


def test_shipped_scenarios_cover_the_features_of_the_twin() -> None:
    """The parity runs above see every feature the twin claims (a test of the test's coverage)."""
    topos = {n: compile_topology(load_scenario(n)) for n in list_scenarios()}
    seen = {
        "lost sales": any(not t.backorders for t in topos.values()),
        "proportional": any(t.proportional for t in topos.values()),
        "assembly": any(t.is_assembly.any() for t in topos.values()),
        "alternative": any(nd.sourcing == "alternative" for t in topos.values() for nd in t.scenario.nodes),
        "modes": any((t.slot_mode > 0).any() for t in topos.values()),
        "random lead times": any((t.slot_lt_rand >= 0).any() for t in topos.values()),
        "outages": any(len(t.dis_start) for t in topos.values()),
        "slot capacity": any(np.isfinite(t.slot_capacity).any() for t in topos.values()),
        "node capacity": any(np.isfinite(t.node_capacity).any() for t in topos.values()),
        "correlation": any(t.correlation_chol is not None for t in topos.values()),
        "unit cost": any((t.slot_unit_cost > 0).any() for t in topos.values()),
        "continuous": any(not t.integer_orders for t in topos.values()),
    }
    dists = {spec.dist for t in topos.values() for spec in t.demand_specs}
    assert all(seen.values()), [k for k, v in seen.items() if not v]
    assert {"poisson", "normal", "negative_binomial", "gamma", "uniform_int", "discrete"} <= dists


# ------------------------------------------------------------------------------------------------
# Gradients
# ------------------------------------------------------------------------------------------------
def _cost_of_orders(
    params: TwinParams, state: TwinState, first: torch.Tensor, later: torch.Tensor, draws
) -> torch.Tensor:
    """Total cost per row over the block, ``first`` ordered in period 0, ``later`` afterwards."""
    result = rollout(params, lambda st, k: first if k == 0 else later[k], state, draws)
    return result.costs.sum((1, 2))


def test_gradient_matches_finite_difference() -> None:
    """d(total cost over 12 periods) / d(period-0 order) by autograd equals a central finite
    difference, per row and slot, where the cost is smooth (the two step sizes agree)."""
    params = TwinParams.from_topology("dual_sourcing")
    rows, periods = 32, 12
    draws = draw_block(params, rows, periods, seed=3)
    rng = np.random.default_rng(3)
    topo = params.topology
    start = initial_state(params, rows)
    # a continuous, non-trivial starting point: 30 periods of random orders
    with torch.no_grad():
        warm = draw_block(params, rows, 30, seed=4)
        warm_orders = torch.tensor(np.stack([_orders(topo, rng, rows) for _ in range(30)]))
        start = rollout(params, lambda st, k: warm_orders[k], start, warm).state
    first = torch.tensor(_orders(topo, rng, rows), requires_grad=True)
    later = torch.tensor(np.stack([_orders(topo, rng, rows) for _ in range(periods)]))
    _cost_of_orders(params, start, first, later, draws).sum().backward()
    grad = first.grad.numpy()
    checked = 0
    for s in range(params.n_slots):
        fd = []
        for eps in (1e-5, 1e-6):
            bump = torch.zeros_like(first)
            bump[:, s] = eps
            with torch.no_grad():
                up = _cost_of_orders(params, start, first + bump, later, draws)
                down = _cost_of_orders(params, start, first - bump, later, draws)
            fd.append(((up - down) / (2 * eps)).numpy())
        smooth = np.abs(fd[0] - fd[1]) <= 1e-6 * (1 + np.abs(fd[0]))
        np.testing.assert_allclose(
            grad[smooth, s], fd[1][smooth], rtol=1e-6, atol=1e-6, err_msg=f"slot {topo.slot_names[s]}"
        )
        checked += int(smooth.sum())
    assert checked >= 0.8 * rows * params.n_slots  # the comparison is not vacuous
    assert np.abs(grad).max() > 0


def test_gradient_of_an_order_that_sits_in_stock_is_its_holding_cost() -> None:
    """Analytic anchor: one more unit ordered at the plant of ex61 (lead time 2), never shipped on
    within the horizon (the dc orders nothing), adds h_plant to the holding cost of every period
    from its arrival (period 2) on: d cost / d q = h_plant * (T - 2)."""
    params = TwinParams.from_topology("ex61")
    topo = params.topology
    rows, periods = 4, 6
    draws = draw_block(params, rows, periods, seed=0)
    plant_slot = int(topo.slots_into(topo.node_index("plant"))[0])
    first = torch.zeros(rows, params.n_slots, dtype=torch.float64)
    first[:, plant_slot] = 3.0
    first.requires_grad_(True)
    later = torch.zeros(periods, rows, params.n_slots, dtype=torch.float64)
    _cost_of_orders(params, initial_state(params, rows), first, later, draws).sum().backward()
    h_plant = topo.scenario.node("plant").holding_cost
    np.testing.assert_allclose(first.grad[:, plant_slot].numpy(), h_plant * (periods - 2), rtol=1e-12)


def test_integer_orders_forward_rounds_backward_is_straight_through() -> None:
    """The surrogate: with integer orders the forward pass rounds as the kernel (the parity tests
    check the values), and the gradient equals that of the continuous scenario at integer orders."""
    scenario = load_scenario("serial4")
    continuous = dataclasses.replace(scenario, integer_orders=False)
    p_int = TwinParams.from_topology(compile_topology(scenario))
    p_cont = TwinParams.from_topology(compile_topology(continuous))
    rows, periods = 8, 10
    draws = draw_block(p_int, rows, periods, seed=1)
    rng = np.random.default_rng(1)
    base = np.rint(np.stack([_orders(p_int.topology, rng, rows) for _ in range(periods)]))
    grads = []
    for params, shift in ((p_int, 0.2), (p_cont, 0.0)):
        first = torch.tensor(base[0] + shift, requires_grad=True)  # 0.2 rounds back to the integer
        _cost_of_orders(params, initial_state(params, rows), first, torch.tensor(base), draws).sum().backward()
        grads.append(first.grad.numpy())
    np.testing.assert_allclose(grads[0], grads[1], rtol=1e-12, atol=1e-12)
    assert np.abs(grads[0]).max() > 0


# ------------------------------------------------------------------------------------------------
# Draws, rollouts, dtypes and devices
# ------------------------------------------------------------------------------------------------
def test_rollout_on_draw_block_equals_the_simulator_with_the_same_seeds() -> None:
    """draw_block gives the simulator's own numbers: a rollout of fixed orders on a block of 300
    periods (longer than the simulator's blocks of 52) has the simulator's costs."""
    rows, periods, seed = 8, 300, 11
    params = TwinParams.from_topology("general", fixed_costs="count")
    topo = params.topology
    draws = draw_block(params, rows, periods, seed=seed)
    rng = np.random.default_rng(seed)
    orders = np.stack([_orders(topo, rng, rows) for _ in range(periods)])
    sim = Simulator("general", n=rows, threads=1)
    sim.reset(seeds=seed)
    expected = np.stack([sim.step(orders[k]).costs.copy() for k in range(periods)], 1)
    with torch.no_grad():
        result = rollout(params, lambda st, k: torch.tensor(orders[k]), initial_state(params, rows), draws)
    np.testing.assert_allclose(result.costs.numpy(), expected, rtol=0, atol=ATOL)
    # a generator gives seeds drawn from it, reproducibly
    a = draw_block(params, 4, 20, seed=np.random.default_rng(5))
    b = draw_block(params, 4, 20, seed=np.random.default_rng(5))
    assert torch.equal(a.demand, b.demand) and not torch.equal(a.demand, draws.demand[:4, :20])


@pytest.mark.parametrize(
    "device", ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA"))]
)
def test_float32_follows_float64(device: str) -> None:
    """float32 runs the same dynamics: 100 periods of ex61 stay within float32 rounding of float64
    on the CPU (on CUDA, float32 on the GPU against float64 on the CPU)."""
    rows, periods = 16, 100
    out = {}
    for dtype, dev in ((torch.float32, device), (torch.float64, "cpu")):
        params = TwinParams.from_topology("ex61", dtype=dtype, device=dev)
        draws = draw_block(params, rows, periods, seed=2)
        rng = np.random.default_rng(2)
        orders = torch.tensor(
            np.stack([_orders(params.topology, rng, rows) for _ in range(periods)]), dtype=dtype, device=dev
        )
        result = rollout(params, lambda st, k, o=orders: o[k], initial_state(params, rows), draws)
        assert result.costs.dtype == dtype and result.state.on_hand.dtype == dtype
        assert result.costs.device.type == dev
        out[dtype] = result.costs.sum(2).double().cpu().numpy()
    np.testing.assert_allclose(out[torch.float32], out[torch.float64], rtol=1e-4, atol=1e-3)


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is present: the refusal cannot be tested")
def test_cuda_refused_when_absent() -> None:
    with pytest.raises(ValueError, match=r"device: 'cuda'.*not available"):
        TwinParams.from_topology("ex61", device="cuda")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_equals_cpu() -> None:
    rows, periods = 64, 200
    results = []
    for device in ("cpu", "cuda"):
        params = TwinParams.from_topology("general", device=device, fixed_costs="count")
        draws = draw_block(params, rows, periods, seed=0)
        rng = np.random.default_rng(0)
        orders = torch.tensor(np.stack([_orders(params.topology, rng, rows) for _ in range(periods)]), device=device)
        with torch.no_grad():
            result = rollout(params, lambda st, k, o=orders: o[k], initial_state(params, rows), draws)
        results.append(result.costs.cpu())
    np.testing.assert_allclose(results[1].numpy(), results[0].numpy(), rtol=0, atol=ATOL)


def test_bad_options_are_refused_with_their_name() -> None:
    with pytest.raises(ValueError, match="dtype"):
        TwinParams.from_topology("ex61", dtype=torch.float16)
    with pytest.raises(ValueError, match="device"):
        TwinParams.from_topology("ex61", device="tpu")
    with pytest.raises(ValueError, match="fixed_costs"):
        TwinParams.from_topology("ex61", fixed_costs="smooth")  # type: ignore[arg-type]
    params = TwinParams.from_topology("ex61")
    state = initial_state(params, 2)
    draws = draw_block(params, 2, 1, seed=0).at(0)
    with pytest.raises(ValueError, match=r"orders: shape \(2, 2\)"):
        period(params, state, torch.zeros(2, 2, dtype=torch.float64), draws)
    bad = torch.zeros(2, 3, dtype=torch.float64)
    bad[1, 2] = float("nan")
    with pytest.raises(ValueError, match=r"orders\[1, 2\].*not a finite"):
        period(params, state, bad, draws)


# ------------------------------------------------------------------------------------------------
# Refusals
# ------------------------------------------------------------------------------------------------
def test_fixed_ordering_costs_refused_naming_the_key() -> None:
    with pytest.raises(TwinUnsupported, match=r"^lanes\[0\]\.fixed_cost: 30 per order") as err:
        TwinParams.from_topology("fixed_cost")
    assert err.value.key == "lanes[0].fixed_cost"
    # a mode of a lane with several modes is named by its mode
    with pytest.raises(TwinUnsupported, match=r"^lanes\[2\]\.modes\[1\]\.fixed_cost: 5 per order"):
        TwinParams.from_topology("general")


def test_integer_orders_refused_on_request() -> None:
    with pytest.raises(TwinUnsupported, match=r"^integer_orders: true"):
        TwinParams.from_topology("serial4", integer_orders="refuse")
    TwinParams.from_topology("ex61", integer_orders="refuse")  # continuous: accepted


def test_gradient_descent_through_the_twin_finds_the_newsvendor_level() -> None:
    """Training through the dynamics reaches a known optimum. One node, lead time 0, demand
    N(10, 2), h = 1, p = 9: an order-up-to level S leaves S - D each period, so the cost per period
    is the newsvendor's h (S - D)^+ + p (D - S)^+, minimised at the critical fractile
    S* = mu + sigma Phi^{-1}(p / (p + h)) = 10 + 2 * 1.28155 = 12.563 (Snyder & Shen 2019, section
    3.2). Gradient descent on S, the loss the mean cost over 512 rows x 4 periods of one block of
    common random numbers, must end at the block's 0.9-quantile of demand (the sample minimiser)
    and within 4 standard errors of that quantile (0.076) of S*."""
    scenario = Scenario.from_dict(
        {
            "name": "newsvendor",
            "nodes": [
                {
                    "id": "shop",
                    "holding_cost": 1.0,
                    "backorder_cost": 9.0,
                    "demand": {"dist": "normal", "mean": 10, "sd": 2},
                }
            ],
            "lanes": [{"from": "external", "to": "shop", "lead_time": 0}],
        }
    )
    params = TwinParams.from_topology(compile_topology(scenario))
    rows, periods = 512, 4
    draws = draw_block(params, rows, periods, seed=0)
    level = torch.tensor(8.0, dtype=torch.float64, requires_grad=True)

    def policy(state: TwinState, k: int) -> torch.Tensor:
        net = state.on_hand - state.cust_bo  # nothing in transit: lead time 0
        return torch.relu(level - net)

    for _ in range(40):
        loss = rollout(params, policy, initial_state(params, rows), draws).costs.sum(-1).mean()
        (grad,) = torch.autograd.grad(loss, level)
        with torch.no_grad():
            level -= 0.5 * grad  # near S*, grad ~ (h + p) f(S*) (S - S*): contracts by ~0.56
    sample_opt = float(np.quantile(draws.demand.numpy(), 0.9))
    assert abs(level.item() - sample_opt) < 0.02, (level.item(), sample_opt)
    assert abs(level.item() - 12.563) < 0.3, level.item()
