"""What the speed work on HDPO training relies on (``benchmarks/hdpo_speed.py`` measures the speed).

- ``draw_block`` keeps one simulator per twin between calls: each block must still be the fresh
  simulator's numbers for its seeds, whatever was drawn before;
- the network keeps its buffers converted per dtype: after a cast it must compute with the cast
  buffers;
- the straight-through rounding of integer orders is ``numpy.rint`` forward (halves to even) in
  float32 and float64, and the identity backward.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from meio.agents.hdpo import HDPOConfig, HDPONet
from meio.envs.resolve import resolve
from meio.envs.simulator import Simulator
from meio.envs.twin import TwinParams, draw_block, initial_state, period, state_from_simulator

torch.set_num_threads(1)


@pytest.mark.parametrize("name", ["general", "disruption"])
def test_draw_block_after_other_draws_is_the_fresh_simulators_block(name: str) -> None:
    """Blocks of other seeds and another size drawn in between change nothing: the block for seeds
    ``s .. s + B - 1`` is the first ``T`` periods of a new simulator reset with those seeds
    (demand, random lead times and outage uniforms)."""
    topo = resolve(name)
    params = TwinParams.from_topology(topo, fixed_costs="count")
    rows, periods, seed = 6, 9, 123
    draw_block(params, rows, periods, seed=7)
    draw_block(params, rows + 2, periods + 3, seed=8)  # another size: another simulator
    got = draw_block(params, rows, periods, seed=seed)
    sim = Simulator(topo, n=rows, chunk=periods)
    sim.reset(seeds=seed)
    np.testing.assert_array_equal(got.demand.numpy(), sim.demand_chunk)
    np.testing.assert_array_equal(got.lead.numpy(), sim.lt_chunk[:, :, : params.n_random_lead])
    np.testing.assert_array_equal(got.outage.numpy(), sim.dis_chunk[:, :, : params.n_disrupted])
    assert got.lead.shape[-1] + got.outage.shape[-1] > 0  # the scenario has random leads or outages


def test_network_cast_after_use_computes_with_its_cast_buffers() -> None:
    """A network used in float64, then cast to float32 and back, computes as a network that went
    through the same casts unused: its derived buffers (scales, offsets) now hold float32-rounded
    values, and no float64 copy kept from the first use may stand in for them."""
    topo = resolve("distribution")
    cfg = HDPOConfig.from_dict({"hidden": [8]})
    sim = Simulator(topo, n=5)
    sim.reset(seeds=3)
    for _ in range(12):
        sim.step(np.full((5, topo.n_slots), 7.0))
    state = state_from_simulator(sim, TwinParams.from_topology(topo, fixed_costs="count"))
    torch.manual_seed(0)
    net = HDPONet(topo, cfg).double()
    before = net(state)
    net.float().double()
    cast = HDPONet(topo, cfg).float().double()
    cast.load_state_dict(net.state_dict())
    never_cast = HDPONet(topo, cfg).double()
    never_cast.load_state_dict(net.state_dict())
    got = net(state)
    torch.testing.assert_close(got, cast(state), rtol=0.0, atol=0.0)
    # the casts changed the numbers, so a stale float64 copy would have shown
    assert not torch.equal(got, never_cast(state))
    assert before.dtype == got.dtype == torch.float64


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_integer_orders_round_as_rint_and_pass_the_gradient_through(dtype: torch.dtype) -> None:
    """On ``beer_game_basic`` (integer orders; the external supplier ships what is ordered at once,
    4 periods out) an order ``q`` lands in the pipeline as ``numpy.rint(q)``, halves to even, and
    the pipeline's derivative in ``q`` is 1."""
    topo = resolve("beer_game_basic")
    params = TwinParams.from_topology(topo, dtype=dtype)
    (ext,) = params.ext_slots
    lead = params.slot_lt_const[ext]
    q_ext = np.array([0.0, 0.4, 0.5, 1.5, 2.5, 3.5000002, 7.49, 1000.5, 2.0**20 + 0.5])
    orders = torch.zeros(len(q_ext), params.n_slots, dtype=dtype)
    orders[:, ext] = torch.tensor(q_ext, dtype=dtype)
    orders.requires_grad_(True)
    draws = draw_block(params, len(q_ext), 1, seed=0)
    state, _, _ = period(params, initial_state(params, len(q_ext)), orders, draws.at(0))
    landed = state.pipe[:, ext, lead - 1]  # the pipeline moved one period at the end of the period
    want = np.rint(np.asarray(torch.tensor(q_ext, dtype=dtype), dtype=float))
    np.testing.assert_array_equal(landed.detach().numpy().astype(float), want)
    landed.sum().backward()
    np.testing.assert_array_equal(orders.grad[:, ext].numpy(), np.ones(len(q_ext)))
