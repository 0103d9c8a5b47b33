"""The action modes of PPO beyond installation order-up-to: ``echelon_order_up_to`` and
``base_stock_residual`` (``meio.envs.spaces.ActionMap``).

Anchors outside the code under test: echelon positions are recomputed by hand from the per-node
reference implementation of ``docs/model.md`` (``tests/reference_sim.py``), fed the simulator's
demand draws; orders on hand-built states are worked out with the numbers in the comments; the
residual's zero action is compared with :class:`meio.envs.policies.BaseStockPolicy`, the policy the
baselines are evaluated with.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from reference_sim import ReferenceSimulator  # noqa: E402

from meio.agents.config import ConfigError, PPOConfig  # noqa: E402
from meio.envs.policies import BaseStockPolicy  # noqa: E402
from meio.envs.resolve import resolve  # noqa: E402
from meio.envs.scenario import Scenario  # noqa: E402
from meio.envs.simulator import Simulator  # noqa: E402
from meio.envs.spaces import ActionMap, ObservationMap, ResidualBase, echelon_lead_times  # noqa: E402


def _serial() -> dict:
    """Three stages, lead times 2, 1, 3 (retailer, dc, plant), Poisson demand."""
    return {
        "name": "serial_test",
        "unmet_demand": "backorder",
        "horizon": 50,
        "nodes": [
            {
                "id": "retailer",
                "holding_cost": 3,
                "backorder_cost": 20,
                "demand": {"dist": "poisson", "mean": 4},
                "initial_inventory": 6,
            },
            {"id": "dc", "holding_cost": 2, "initial_inventory": 5},
            {"id": "plant", "holding_cost": 1, "initial_inventory": 10},
        ],
        "lanes": [
            {"from": "dc", "to": "retailer", "lead_time": 2},
            {"from": "plant", "to": "dc", "lead_time": 1},
            {"from": "external", "to": "plant", "lead_time": 3},
        ],
    }


def _distribution() -> dict:
    """A warehouse (lead time 2) supplying two retailers (lead times 1 and 2)."""
    return {
        "name": "distribution_test",
        "unmet_demand": "backorder",
        "horizon": 50,
        "nodes": [
            {
                "id": "r1",
                "holding_cost": 2,
                "backorder_cost": 10,
                "demand": {"dist": "poisson", "mean": 3},
                "initial_inventory": 3,
            },
            {
                "id": "r2",
                "holding_cost": 2,
                "backorder_cost": 10,
                "demand": {"dist": "poisson", "mean": 5},
                "initial_inventory": 4,
            },
            {"id": "wh", "holding_cost": 1, "initial_inventory": 20},
        ],
        "lanes": [
            {"from": "wh", "to": "r1", "lead_time": 1},
            {"from": "wh", "to": "r2", "lead_time": 2},
            {"from": "external", "to": "wh", "lead_time": 2},
        ],
    }


def _hand_echelon(ref: ReferenceSimulator, node: str) -> float:
    """Echelon position of ``node`` from the reference's per-node state (docs/model.md): on hand,
    in transit and as components at ``node`` and every node below it, plus what its supplier still
    owes it, minus the customer backorders in the echelon."""
    below = {node}
    grew = True
    while grew:
        grew = False
        for lane in ref.lanes:
            if not lane.is_external and lane.source in below and lane.target not in below:
                below.add(lane.target)
                grew = True
    total = 0.0
    for k in below:
        total += ref.on_hand(k) - ref.customer_backorders(k)
        for s in ref.slots:
            if ref.lanes[s[0]].target == k:
                total += sum(ref.pipeline(s)) + ref.component_stock(s[0]) * (s[1] == 0)
    for s in ref.slots:
        if ref.lanes[s[0]].target == node:
            total += sum(ref.obligations(s))
    return total


def _step_both(sim: Simulator, refs: list[ReferenceSimulator], orders: np.ndarray) -> None:
    """One period of the simulator and of each row's reference, with the simulator's demand draws."""
    topo = sim.topology
    slots = [(int(topo.slot_lane[q]), int(topo.slot_mode[q])) for q in range(topo.n_slots)]
    demand_names = [topo.node_names[j] for j in topo.demand_nodes]
    lts = {key: int(topo.slot_lt_const[q]) for q, key in enumerate(slots)}
    for b, ref in enumerate(refs):
        p = int(sim.pos[b])
        demand = {x: float(sim.demand_chunk[b, p, d]) for d, x in enumerate(demand_names)}
        ref.step({key: float(orders[b, q]) for q, key in enumerate(slots)}, demand, lts, {})
    sim.step(orders)


@pytest.mark.parametrize("make", [_serial, _distribution])
def test_echelon_positions_and_orders_agree_with_a_hand_computation_on_the_reference(make):
    scenario = Scenario.from_dict(make())
    periods, n = 30, 2
    sim = Simulator(scenario, n=n, chunk=periods + 1)
    sim.reset(seeds=3)
    topo = sim.topology
    refs = [ReferenceSimulator(scenario) for _ in range(n)]
    amap = ActionMap(topo, "echelon_order_up_to")
    rng = np.random.default_rng(0)
    for t in range(periods):
        hand = np.array([[_hand_echelon(ref, x) for x in topo.node_names] for ref in refs])
        np.testing.assert_allclose(sim.echelon_positions(), hand, atol=1e-9, err_msg=f"period {t}")
        action = rng.uniform(-1, 1, (n, topo.n_slots))
        orders = amap.to_orders(sim, action)
        targets = (action + 1.0) / 2.0 * amap.high
        # one supplier per node: order = max(0, target - echelon position of the slot's destination)
        expected = np.maximum(targets - hand[:, topo.slot_dst], 0.0)
        np.testing.assert_allclose(orders, expected, atol=1e-9)
        _step_both(sim, refs, orders)


@pytest.mark.parametrize("make", [_serial, _distribution])
def test_echelon_observations_are_the_hand_computed_echelon_positions(make):
    """``observe_echelon``: one feature per node, the echelon position of the reference's per-node
    state over its scale ``mu_j (1 + L^e_j)``; every other feature as without the option."""
    scenario = Scenario.from_dict(make())
    periods, n = 30, 2
    sim = Simulator(scenario, n=n, chunk=periods + 1)
    sim.reset(seeds=5)
    topo = sim.topology
    plain, with_echelon = ObservationMap(topo), ObservationMap(topo, observe_echelon=True)
    names = list(topo.node_names)
    cols = [with_echelon.labels.index(f"echelon_position[{x}]") for x in names]
    others = [i for i in range(with_echelon.size) if i not in cols]
    assert [with_echelon.labels[i] for i in others] == list(plain.labels)
    # the scale: mean demand through the node times 1 + the lead times from its supplier down
    lead_down = {"serial_test": {"retailer": 2, "dc": 3, "plant": 6}, "distribution_test": {"r1": 1, "r2": 2, "wh": 4}}
    mu = {"retailer": 4, "dc": 4, "plant": 4, "r1": 3, "r2": 5, "wh": 8}
    np.testing.assert_allclose(with_echelon.echelon_scale, [mu[x] * (1 + lead_down[scenario.name][x]) for x in names])
    refs = [ReferenceSimulator(scenario) for _ in range(n)]
    rng = np.random.default_rng(1)
    for t in range(periods):
        obs = with_echelon(sim, np.zeros((n, with_echelon.size), dtype=np.float32))
        hand = np.array([[_hand_echelon(ref, x) for x in names] for ref in refs])
        np.testing.assert_allclose(
            obs[:, cols] * with_echelon.echelon_scale, hand, rtol=1e-6, atol=1e-4, err_msg=f"period {t}"
        )
        np.testing.assert_array_equal(obs[:, others], plain(sim, np.zeros((n, plain.size), dtype=np.float32)))
        orders = rng.uniform(0, 12, (n, topo.n_slots))
        _step_both(sim, refs, orders)


def test_the_parallel_observation_kernel_writes_the_same_echelon_positions():
    sim = Simulator("beer_game_basic", n=130, threads=2)
    sim.reset(seeds=0)
    obs_map = ObservationMap(sim.topology, observe_echelon=True)
    cols = [i for i, label in enumerate(obs_map.labels) if label.startswith("echelon_position[")]
    rng = np.random.default_rng(0)
    for _ in range(25):
        sim.step(rng.uniform(0, 3, (130, sim.topology.n_slots)))
    assert sim.parallel
    obs = obs_map(sim, np.zeros((130, obs_map.size), dtype=np.float32))
    np.testing.assert_allclose(obs[:, cols] * obs_map.echelon_scale, sim.echelon_positions(), rtol=1e-6)


def test_echelon_observations_are_refused_where_a_node_has_several_suppliers():
    with pytest.raises(
        ValueError,
        match=r"observe_echelon: echelon positions are defined when every node has one supplier; 'dc' of 'general'",
    ):
        ObservationMap(resolve("general"), observe_echelon=True)
    with pytest.raises(ValueError, match=r"observe_echelon: 'yes' is not true or false"):
        ObservationMap(resolve("ex61"), observe_echelon="yes")
    with pytest.raises(ConfigError, match="observe_echelon"):
        PPOConfig.from_dict({"observe_echelon": "sometimes"})


def _perturbed(model):
    """``model`` with weights moved off their initial values, so that actions depend on the state."""
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for w in model.policy.parameters():
            w.add_(0.3 * torch.randn(w.shape, generator=gen))
    return model


def _assert_same_actions(agent, loaded, scenario="ex61", periods=20):
    """``agent`` and ``loaded`` order the same on the same seeds, period after period."""
    sims = [Simulator(scenario, n=4) for _ in range(2)]
    for sim in sims:
        sim.reset(seeds=11)
    for _ in range(periods):
        a, b = agent.act(sims[0]), loaded.act(sims[1])
        np.testing.assert_array_equal(a, b)
        sims[0].step(a)
        sims[1].step(b)
    return sims[0]


def test_a_saved_and_reloaded_agent_that_observes_echelon_positions_gives_identical_actions(tmp_path):
    from stable_baselines3 import PPO

    from meio.agents.policy import PPOPolicy
    from meio.envs.vec_env import make_vec_env

    venv = make_vec_env("ex61", n_envs=2, seed=0, action_mode="echelon_order_up_to", observe_echelon=True)
    assert venv.observation_space.shape[0] == ObservationMap(resolve("ex61")).size + 3
    model = _perturbed(PPO("MlpPolicy", venv, n_steps=8, batch_size=16, seed=0, device="cpu"))
    agent = PPOPolicy(model, "echelon_order_up_to", None, None, observe_echelon=True)
    agent.save(tmp_path / "a", {"scenario": "ex61"})
    loaded = PPOPolicy.load(tmp_path / "a")
    assert loaded.observe_echelon is True
    sim = _assert_same_actions(agent, loaded)
    other = Simulator("general", n=2)
    other.reset(seeds=0)
    with pytest.raises(
        ValueError,
        match=r"scenario: 'general': the model 'ppo' was trained on 'ex61' observing echelon positions .*'dc' has",
    ):
        loaded.act(other)
    # without the echelon features the network would get 3 inputs too few: refused, not misread
    blind = PPOPolicy(model, "echelon_order_up_to", None, None, observe_echelon=False)
    with pytest.raises(ValueError, match="observation"):
        blind.act(sim)


def test_echelon_orders_on_a_hand_built_state():
    # At reset nothing is in transit or owed: echelon positions are sums of on-hand stock below.
    # Serial (retailer 6, dc 5, plant 10): E = (6, 11, 21); targets (10, 12, 30) order (4, 1, 9).
    topo = resolve(Scenario.from_dict(_serial()))
    sim = Simulator(topo, n=1)
    sim.reset(seeds=0)
    amap = ActionMap(topo, "echelon_order_up_to")
    order = {topo.slot_names[q]: q for q in range(topo.n_slots)}
    targets = np.zeros(topo.n_slots)
    for name, value in (("dc->retailer", 10.0), ("plant->dc", 12.0), ("external->plant", 30.0)):
        targets[order[name]] = value
    got = amap.to_orders(sim, amap.from_orders_up_to(targets))[0]
    assert got[order["dc->retailer"]] == pytest.approx(4.0)
    assert got[order["plant->dc"]] == pytest.approx(1.0)
    assert got[order["external->plant"]] == pytest.approx(9.0)
    # Distribution (r1 3, r2 4, wh 20): E_wh = 27 is the whole subtree; target 25 orders nothing.
    topo = resolve(Scenario.from_dict(_distribution()))
    sim = Simulator(topo, n=1)
    sim.reset(seeds=0)
    amap = ActionMap(topo, "echelon_order_up_to")
    order = {topo.slot_names[q]: q for q in range(topo.n_slots)}
    targets = np.zeros(topo.n_slots)
    for name, value in (("wh->r1", 5.0), ("wh->r2", 4.0), ("external->wh", 25.0)):
        targets[order[name]] = value
    got = amap.to_orders(sim, amap.from_orders_up_to(targets))[0]
    np.testing.assert_allclose(got[[order["wh->r1"], order["wh->r2"], order["external->wh"]]], [2.0, 0.0, 0.0])


def test_echelon_target_range_covers_the_echelon_lead_time():
    # ex61: lead times 0, 1, 2 into retailer, dc, plant: echelon lead times 0, 1, 3 (slot order).
    topo = resolve("ex61")
    np.testing.assert_allclose(echelon_lead_times(topo), [0.0, 1.0, 3.0])
    # default max 2 b (mu (1 + L) + 4 sigma sqrt(1 + L)) with mu 5, sigma 1: plant 2 (20 + 8) = 56
    assert ActionMap(topo, "echelon_order_up_to").high[2] == pytest.approx(56.0, rel=1e-5)


@pytest.mark.parametrize(
    "scenario, kind, levels",
    [
        ("ex61", "echelon", {"retailer": 6.49, "dc": 12.02, "plant": 22.71}),  # the book's example 6.1
        ("distribution", "installation", None),
    ],
)
def test_residual_at_zero_action_is_the_base_stock_policy(scenario, kind, levels):
    topo = resolve(scenario)
    if levels is None:  # installation levels: about a period and a half of demand per node
        levels = {x: 1.5 * float(topo.throughput[j]) * (1.0 + topo.lead_in()[j]) for j, x in enumerate(topo.node_names)}
    amap = ActionMap(topo, "base_stock_residual", ResidualBase(kind, levels, residual_range=2.0))
    policy = BaseStockPolicy(topo, levels, kind=kind)
    sim = Simulator(topo, n=3)
    sim.reset(seeds=5)
    for _ in range(40):
        ours = amap.to_orders(sim, np.zeros((3, topo.n_slots)))
        np.testing.assert_array_equal(ours, policy.act(sim))
        sim.step(ours)


def test_residual_moves_the_target_by_at_most_r_periods_of_demand():
    # ex61 at reset: retailer echelon position 6 (its on-hand); base 6.49; r 2, mu 5: the action
    # 0.5 asks for 6.49 + 5 = 11.49 (order 5.49), and any action above 1 is clipped to 16.49.
    topo = resolve("ex61")
    levels = {"retailer": 6.49, "dc": 12.02, "plant": 22.71}
    amap = ActionMap(topo, "base_stock_residual", ResidualBase("echelon", levels, residual_range=2.0))
    sim = Simulator(topo, n=1)
    sim.reset(seeds=0)
    q = topo.slot_names.index("dc->retailer")
    a = np.zeros(topo.n_slots)
    a[q] = 0.5
    assert amap.to_orders(sim, a)[0, q] == pytest.approx(5.49)
    a[q] = 7.0
    assert amap.to_orders(sim, a)[0, q] == pytest.approx(10.49)
    a[q] = -1.0  # 6.49 - 10 < 6: no order
    assert amap.to_orders(sim, a)[0, q] == 0.0


def test_a_saved_and_reloaded_residual_agent_gives_identical_actions(tmp_path):
    from stable_baselines3 import PPO

    from meio.agents.policy import PPOPolicy
    from meio.envs.vec_env import make_vec_env

    levels = {"retailer": 6.49, "dc": 12.02, "plant": 22.71}
    base = ResidualBase("echelon", levels, residual_range=1.5, name="clark_scarf")
    venv = make_vec_env("ex61", n_envs=2, seed=0, action_mode="base_stock_residual", residual=base)
    # weights moved off their initial values (the mean action would be ~0, the base policy itself)
    model = _perturbed(
        PPO("MlpPolicy", venv, n_steps=8, batch_size=16, seed=0, device="cpu", policy_kwargs={"log_std_init": 0.0})
    )
    agent = PPOPolicy(model, "base_stock_residual", None, None, residual=base)
    agent.save(tmp_path / "a", {"scenario": "ex61"})
    loaded = PPOPolicy.load(tmp_path / "a")
    assert loaded.residual == base
    _assert_same_actions(agent, loaded)
    # the saved levels, not the scenario's current baseline, drive the loaded agent
    meta = (tmp_path / "a" / "meta.json").read_text()
    assert '"residual_range": 1.5' in meta and '"kind": "echelon"' in meta


def test_a_saved_residual_agent_without_its_levels_is_refused(tmp_path):
    from stable_baselines3 import PPO

    from meio.agents.policy import PPOPolicy
    from meio.envs.vec_env import make_vec_env

    base = ResidualBase("echelon", {"retailer": 6.0, "dc": 12.0, "plant": 22.0})
    venv = make_vec_env("ex61", n_envs=2, seed=0, action_mode="base_stock_residual", residual=base)
    model = PPO("MlpPolicy", venv, n_steps=8, batch_size=16, seed=0, device="cpu")
    # an agent folder whose meta.json names the mode but carries no levels
    PPOPolicy(model, "base_stock_residual", None, None, residual=None).save(tmp_path / "a", {"scenario": "ex61"})
    with pytest.raises(ValueError, match=r"meta.json: residual_base: None is not a saved residual base"):
        PPOPolicy.load(tmp_path / "a")


@pytest.mark.parametrize(
    "data, message",
    [
        ({"action_mode": "echelon"}, "action_mode: 'echelon' is not one of"),
        ({"action_mode": "base_stock_residual", "residual_range": 0}, "residual_range: 0 is out of range"),
        ({"action_mode": "base_stock_residual", "residual_range": "wide"}, "residual_range: 'wide'"),
    ],
)
def test_bad_action_settings_in_a_config_are_refused_naming_the_field(data, message):
    with pytest.raises(ConfigError) as info:
        PPOConfig.from_dict(data)
    assert message in str(info.value)


def test_bad_action_maps_are_refused_naming_the_field():
    topo = resolve("ex61")
    with pytest.raises(ValueError, match="action_mode: base_stock_residual needs the base-stock levels"):
        ActionMap(topo, "base_stock_residual")
    with pytest.raises(ValueError, match=r"residual_range: -1\.0 is not a finite number > 0"):
        ActionMap(topo, "base_stock_residual", ResidualBase("echelon", {"retailer": 1, "dc": 2, "plant": 3}, -1.0))
    with pytest.raises(ValueError, match=r"levels: no level for plant"):
        ActionMap(topo, "base_stock_residual", ResidualBase("echelon", {"retailer": 1, "dc": 2}))
    with pytest.raises(ValueError, match=r"residual_base.kind: 'sourcing'"):
        ActionMap(topo, "base_stock_residual", ResidualBase("sourcing", {"retailer": 1, "dc": 2, "plant": 3}))
    with pytest.raises(ValueError, match=r"action_mode: echelon_order_up_to needs echelon positions.*'plant'"):
        ActionMap(resolve("assembly"), "echelon_order_up_to")
