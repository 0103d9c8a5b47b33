"""HDPO agents (meio.agents.hdpo): gradients through the twin, training, configs, saving, resuming."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from meio.agents.config import ConfigError
from meio.agents.hdpo import (
    HDPOConfig,
    HDPONet,
    HDPOPolicy,
    load_hdpo_config,
    split_slots,
    stock_value,
    train_hdpo,
    unit_values,
)
from meio.agents.train import EVAL_COLUMNS
from meio.envs.metrics import evaluate
from meio.envs.resolve import resolve
from meio.envs.scenario import Scenario, list_scenarios, read_yaml, scenarios_dir
from meio.envs.simulator import Simulator
from meio.envs.twin import TwinParams, TwinUnsupported, draw_block, initial_state, rollout, state_from_simulator

torch.set_num_threads(1)

#: Small evaluation and training settings: the tests check behaviour, not quality.
TINY = dict(
    batch_size=16,
    horizon=24,
    warmup=4,
    eval_every=0,
    eval_periods=200,
    eval_warmup=20,
    eval_replications=2,
    checkpoint_every=0,
    hidden=[8],
)


def _supported() -> list[str]:
    names = []
    for name in list_scenarios():
        try:
            TwinParams.from_topology(name)
        except TwinUnsupported:
            continue
        names.append(name)
    return names


@pytest.mark.parametrize("name", _supported())
def test_gradients_are_finite_and_nonzero_on_every_supported_scenario(name: str) -> None:
    """The loss (mean cost after the warm-up) has a finite gradient in the network's parameters,
    not zero: the policy's orders reach the costs through the twin."""
    topo = resolve(name)
    cfg = HDPOConfig.from_dict({"hidden": [8]})
    torch.manual_seed(0)
    net = HDPONet(topo, cfg).double()
    params = TwinParams.from_topology(topo)
    draws = draw_block(params, 8, 16, seed=3)
    result = rollout(params, lambda s, k: net(s), initial_state(params, 8), draws)
    result.costs[:, 4:].sum(-1).mean().backward()
    grads = [p.grad for p in net.parameters()]
    assert all(g is not None and bool(torch.isfinite(g).all()) for g in grads)
    assert sum(float(g.abs().sum()) for g in grads) > 0.0


@pytest.mark.parametrize("name", ["ex61", "distribution", "assembly", "dual_sourcing"])
def test_positions_agree_with_the_simulator(name: str) -> None:
    """The network's installation (slot) and echelon positions are the simulator's
    (``Simulator.positions``, ``Simulator.echelon_positions``) on states reached by random orders."""
    topo = resolve(name)
    sim = Simulator(topo, n=6)
    sim.reset(seeds=1)
    rng = np.random.default_rng(2)
    scale = np.maximum(topo.throughput[topo.slot_dst], 1.0)
    for _ in range(25):
        sim.step(rng.uniform(0.0, 2.0, size=(6, topo.n_slots)) * scale)
    net = HDPONet(topo, HDPOConfig.from_dict({"architecture": "installation"})).double()
    slot_ip, _, echelon, _ = net.positions(
        state_from_simulator(sim, TwinParams.from_topology(topo, fixed_costs="count"))
    )
    _, want_slot = sim.positions()
    used = np.array(net.primary)
    np.testing.assert_allclose(slot_ip.numpy()[:, used], want_slot[:, used], atol=1e-9)
    if topo.node_with_several_suppliers() is None:
        np.testing.assert_allclose(echelon.numpy(), sim.echelon_positions(), atol=1e-9)


def test_orders_are_feasible_by_construction() -> None:
    """Whatever the weights, orders are finite and >= 0; capped orders stay under their cap."""
    topo = resolve("distribution")
    params = TwinParams.from_topology(topo)
    state = rollout(
        params,
        lambda s, k: torch.full((4, topo.n_slots), 3.0, dtype=torch.float64),
        initial_state(params, 4),
        draw_block(params, 4, 10, seed=0),
    ).state
    for arch in ("installation", "quantity", "echelon"):
        torch.manual_seed(1)
        net = HDPONet(topo, HDPOConfig.from_dict({"architecture": arch, "share_roles": True})).double()
        with torch.no_grad():
            for p in net.parameters():
                p.normal_(0.0, 5.0)
            q = net(state)
        assert bool(torch.isfinite(q).all()) and bool((q >= 0).all())
        if arch == "quantity":
            cap = 4.0 * torch.tensor(topo.throughput[topo.slot_dst] * topo.lane_bom[topo.slot_lane])
            assert bool((q <= cap + 1e-9).all())


def test_split_orders_the_gap_of_the_nodes_position_in_shares() -> None:
    """``split`` on ``general``: dc and west (two suppliers each) order ``max(S_j - IP_j, 0)`` on
    the simulator's node position (over both suppliers), in the shares their outputs set; the
    express mode (fixed cost) gets nothing; the other nodes order up to ``S_j`` on their one slot."""
    topo = resolve("general")
    names = list(topo.node_names)
    split = split_slots(topo)
    assert sorted(names[j] for j in split) == ["dc", "west"]
    express = [s for s in range(topo.n_slots) if float(topo.slot_fixed_cost[s]) > 0]
    assert express and not any(s in v for v in split.values() for s in express)
    sim = _random_state(topo, seed=1)
    net = HDPONet(topo, HDPOConfig.from_dict({"architecture": "split", "hidden": [8]})).double()
    last = net.own[-1]
    with torch.no_grad():  # outputs = the offsets, but for dc's shares, set to 3:1
        last.weight.zero_()
        last.bias.zero_()
        dc = names.index("dc")
        last.bias[net.node_slice[dc][0] + 1] = float(np.log(3.0))
    with torch.no_grad():
        orders = net(state_from_simulator(sim, TwinParams.from_topology(topo, fixed_costs="count"))).numpy()
    node_pos, slot_pos = (a.copy() for a in sim.positions())
    mu = net.mu.numpy()
    for j in range(topo.n_nodes):
        target = mu[j] * float(torch.nn.functional.softplus(net.offset[net.node_slice[j][0]]))
        if j in split:
            gap = np.maximum(target - node_pos[:, j], 0.0)
            assert gap.max() > 0 and (j != dc or gap.min() == 0)  # dc: rows that order and rows that do not
            shares = [0.75, 0.25] if j == dc else [0.5, 0.5]
            for s, w in zip(split[j], shares):
                np.testing.assert_allclose(orders[:, s], w * gap, atol=1e-9)
        else:
            (s,) = [s for s in net.primary if topo.slot_dst[s] == j]
            np.testing.assert_allclose(orders[:, s], np.maximum(target - slot_pos[:, s], 0.0), atol=1e-9)
    np.testing.assert_array_equal(orders[:, express], 0.0)


def _random_state(topo, rows: int = 6, periods: int = 15, seed: int = 2) -> Simulator:
    """A simulator moved by random orders, each node's mean demand spread over its slots."""
    sim = Simulator(topo, n=rows)
    sim.reset(seeds=seed)
    rng = np.random.default_rng(seed)
    n_in = np.array([len(topo.slots_into(j)) for j in range(topo.n_nodes)])[topo.slot_dst]
    scale = np.maximum(topo.throughput[topo.slot_dst], 1.0) / n_in
    for _ in range(periods):
        sim.step(rng.uniform(0.0, 1.2, size=(rows, topo.n_slots)) * scale)
    return sim


@pytest.mark.parametrize("name", ["distribution", "orgym_invmgmt_backlog", "geevers_divergent"])
def test_stock_value_is_the_echelon_credit_with_one_supplier_per_node(name: str) -> None:
    """With one supplier per node and one slot per lane the stock's value at weighted average cost
    is ``sum_s c_s E_dst(s)``, the echelon form of the transport credit, whatever the flows."""
    data = yaml.safe_load((scenarios_dir() / f"{name}.yaml").read_text())
    for i, lane in enumerate(data["lanes"]):
        lane["unit_cost"] = 0.1 * (i + 1)
    topo = resolve(Scenario.from_dict(data))
    sim = _random_state(topo)
    net = HDPONet(topo, HDPOConfig.from_dict({})).double()
    state = state_from_simulator(sim, TwinParams.from_topology(topo))
    flows = np.random.default_rng(0).uniform(0.0, 5.0, topo.n_slots)
    values = tuple(torch.tensor(v) for v in unit_values(topo, flows))
    unit = torch.tensor(np.asarray(topo.slot_unit_cost, dtype=float))
    want = (net.physical_echelon(state)[:, net.slot_dst] * unit).sum(1)
    assert float(want.abs().min()) > 0
    np.testing.assert_allclose(stock_value(state, values).numpy(), want.numpy(), rtol=0, atol=1e-9)


def test_unit_values_of_general_by_hand() -> None:
    """``general``: plant_a's units cost 1.0, plant_b's 0.8; dc buys 3 units by road (+0.1) for each
    one from plant_b (+0.2), so a unit at dc cost (3 x 1.1 + 1.0) / 4 = 1.075; east adds 0.1; west
    buys 6 from dc (+0.1) for 2 from plant_b (+0.3): (6 x 1.175 + 2 x 1.1) / 8 = 1.15625. Nothing
    ordered into a node: its first source counts (dc at 1.1)."""
    topo = resolve("general")
    slot = {name: i for i, name in enumerate(topo.slot_names)}
    flows = np.zeros(topo.n_slots)
    for name, q in {"plant_a->dc:road": 3, "plant_b->dc": 1, "dc->east": 10, "dc->west": 6, "plant_b->west": 2}.items():
        flows[slot[name]] = q
    v_node, v_slot, v_lane = unit_values(topo, flows)
    by_node = dict(zip(topo.node_names, v_node))
    assert by_node == pytest.approx({"plant_a": 1.0, "plant_b": 0.8, "dc": 1.075, "east": 1.175, "west": 1.15625})
    assert v_slot[slot["plant_a->dc:express"]] == pytest.approx(1.6)
    assert v_slot[slot["plant_b->west"]] == pytest.approx(1.1)
    v_node, _, _ = unit_values(topo, np.zeros(topo.n_slots))
    assert dict(zip(topo.node_names, v_node))["dc"] == pytest.approx(1.1)
    # the value of a state: on hand less backorders at v_j, in transit at v_s, components at v_l
    sim = _random_state(topo)
    state = state_from_simulator(sim, TwinParams.from_topology(topo, fixed_costs="count"))
    v_node, v_slot, v_lane = unit_values(topo, flows)
    want = (sim.on_hand - sim.cust_bo) @ v_node + sim.pipe.sum(2) @ v_slot + sim.raw @ v_lane
    got = stock_value(state, tuple(torch.tensor(v) for v in (v_node, v_slot, v_lane)))
    np.testing.assert_allclose(got.numpy(), want, rtol=0, atol=1e-9)


def test_training_on_several_suppliers_credits_the_stock_value(tmp_path: Path, monkeypatch) -> None:
    """``general`` (dc and west have two suppliers each, unit costs on every lane) trains with the
    weighted-average-cost credit, logged every iteration; switched off, it is not logged. (The
    reference policy's search, a minute here, is left out: the run then reports no gap.)"""
    monkeypatch.setattr("meio.baselines.run.reference_baseline", lambda *args, **kwargs: None)
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    def credits(run: Path) -> list[float]:
        acc = EventAccumulator(str(run / "tb" / "hdpo"))
        acc.Reload()
        tags = acc.Tags()["scalars"]
        return [e.value for e in acc.Scalars("cost/transport_credit")] if "cost/transport_credit" in tags else []

    cfg = HDPOConfig.from_dict({**TINY, "iterations": 2})
    train_hdpo("general", cfg, tmp_path / "on", seed=0, progress=False)
    train_hdpo("general", cfg.replace(transport_credit=False), tmp_path / "off", seed=0, progress=False)
    logged = credits(tmp_path / "on")
    assert len(logged) == 2 and all(np.isfinite(logged)) and all(c != 0 for c in logged)
    assert credits(tmp_path / "off") == []


def test_share_roles_shares_one_network_across_the_retailers() -> None:
    """With share_roles the retailers of one warehouse use one network, fed with each retailer's
    own parameters: changing one retailer's parameters changes its order, not the others'."""
    topo = resolve("distribution")
    net = HDPONet(topo, HDPOConfig.from_dict({"share_roles": True, "architecture": "installation"})).double()
    retailers = [j for j in range(topo.n_nodes) if topo.demand_col[j] >= 0]
    assert len(retailers) > 1 and [sorted(g) for g in net.groups] == [sorted(retailers)]
    assert len(net.shared) == 1 and retailers[0] not in net.own_nodes
    params = TwinParams.from_topology(topo)
    state = rollout(
        params,
        lambda s, k: torch.full((4, topo.n_slots), 1.0, dtype=torch.float64),
        initial_state(params, 4),
        draw_block(params, 4, 8, seed=0),
    ).state
    with torch.no_grad():
        for p in net.parameters():
            p.normal_(0.0, 1.0)
        before = net(state)
        net.node_params[retailers[0], 0] += 1.0  # its holding cost, as the network sees it
        after = net(state)
    slots = {j: [s for s in net.primary if topo.slot_dst[s] == j][0] for j in retailers}
    assert not torch.equal(before[:, slots[retailers[0]]], after[:, slots[retailers[0]]])
    for j in retailers[1:]:
        assert torch.equal(before[:, slots[j]], after[:, slots[j]])


def test_a_short_training_lowers_the_cost_on_ex61(tmp_path: Path) -> None:
    """Untrained versus trained policy, simulated on the same seeds (common random numbers)."""
    cfg = HDPOConfig.from_dict(
        {**TINY, "iterations": 12, "batch_size": 16, "horizon": 30, "warmup": 6, "learning_rate": 0.03}
    )
    torch.manual_seed(0)
    untrained = HDPOPolicy(HDPONet(resolve("ex61"), cfg).state_dict(), cfg)
    seen: list[dict[str, float]] = []
    result = train_hdpo("ex61", cfg, tmp_path / "run", seed=0, progress=False, on_evaluation=seen.append)
    assert result.steps == 12
    trained = HDPOPolicy.load(tmp_path / "run" / "final")
    before = evaluate("ex61", untrained, periods=500, warmup=50, replications=4, seed=500)
    after = evaluate("ex61", trained, periods=500, warmup=50, replications=4, seed=500)
    assert after.cost_mean < 0.8 * before.cost_mean
    run = tmp_path / "run"
    assert (run / "best" / "meta.json").is_file() and (run / "evaluations.csv").is_file()
    assert json.loads((run / "final" / "meta.json").read_text())["algo"] == "hdpo"
    header = (run / "evaluations.csv").read_text().splitlines()[0]
    assert header.split(",") == EVAL_COLUMNS  # PPO's columns, so one plot reads both
    rows = list(csv.reader((run / "evaluations.csv").read_text().splitlines()))
    assert all(len(r) == len(EVAL_COLUMNS) for r in rows) and rows[-1][0] == "12"
    # Each evaluation reached the caller (meio experiment reports them to Ray Tune) as written.
    table = [dict(zip(rows[0], r)) for r in rows[1:]]
    assert [e["steps"] for e in seen] == [float(r["steps"]) for r in table]
    assert [e["eval/cost"] for e in seen] == pytest.approx([float(r["cost"]) for r in table], rel=1e-12)
    assert all("eval/gap_pct" in e for e in seen)  # ex61 has a reference (Clark-Scarf)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_training_on_cuda_takes_the_cpus_steps(tmp_path: Path) -> None:
    """float64 HDPO on the GPU follows the CPU run: the same initial weights (drawn on the CPU,
    then moved) and the same common random numbers, so after 6 iterations the weights agree to
    rounding and the evaluations (in the CPU simulator) to 1e-6; a GPU run stopped at 3 and
    resumed ends there too, and the saved weights are CPU tensors."""
    base = {**TINY, "dtype": "float64", "iterations": 6, "eval_every": 3, "checkpoint_every": 3}
    for device in ("cpu", "cuda"):
        cfg = HDPOConfig.from_dict({**base, "device": device})
        train_hdpo("ex61", cfg, tmp_path / device, seed=2, progress=False)
    train_hdpo("ex61", cfg.replace(iterations=3), tmp_path / "resumed", seed=2, progress=False)
    train_hdpo("ex61", cfg, tmp_path / "resumed", seed=2, progress=False, resume=True)
    weights = {
        run: torch.load(tmp_path / run / "final" / "policy.pt", weights_only=True) for run in ("cpu", "cuda", "resumed")
    }
    for run in ("cuda", "resumed"):
        assert weights[run].keys() == weights["cpu"].keys()
        for key, value in weights[run].items():
            assert value.device.type == "cpu"
            np.testing.assert_allclose(value.numpy(), weights["cpu"][key].numpy(), rtol=1e-7, atol=1e-9, err_msg=key)
        costs = [
            [float(r["cost"]) for r in csv.DictReader((tmp_path / x / "evaluations.csv").open())] for x in ("cpu", run)
        ]
        assert len(costs[0]) == 3 and costs[1] == pytest.approx(costs[0], rel=1e-6)


@pytest.mark.parametrize(
    "data, field",
    [
        ({"learnig_rate": 0.1}, "learnig_rate"),
        ({"learning_rate": -1.0}, "learning_rate"),
        ({"batch_size": 0}, "batch_size"),
        ({"architecture": "echelons"}, "architecture"),
        ({"hidden": [32, 0]}, "hidden"),
        ({"horizon": 10, "warmup": 10}, "warmup"),
        ({"warmup": "autp"}, "warmup"),
        ({"horizon": 1}, "horizon"),
        ({"dtype": "float16"}, "dtype"),
    ],
)
def test_config_errors_name_the_field(data: dict, field: str) -> None:
    with pytest.raises(ConfigError) as err:
        HDPOConfig.from_dict(data)
    assert any(f == field and msg.startswith(f"{field}: ") for f, msg in err.value.errors), err.value.errors


def test_auto_trajectories_let_the_longest_pipeline_fill_before_the_loss_counts(tmp_path: Path) -> None:
    """``warmup: auto`` is twice the network's longest chain of lead times (at least 20) and
    ``horizon: auto`` 40 periods more: orgym_invmgmt_backlog's chain is 10 + 5 + 3 = 18 periods
    (its lanes, read here from the scenario file, not from the code under test), beer_game_basic's
    4 x 4, ex61's 0 + 1 + 2. A run uses the resolved lengths and says so; an auto warm-up that does
    not fit a set horizon is refused naming the field."""
    from meio.agents.hdpo import trajectory_periods

    cfg = HDPOConfig()
    assert cfg.horizon == cfg.warmup == "auto"
    chain = sum(
        int(lane["lead_time"])
        for lane in read_yaml((scenarios_dir() / "orgym_invmgmt_backlog.yaml").read_text())["lanes"]
    )
    assert chain == 18
    assert trajectory_periods(resolve("orgym_invmgmt_backlog"), cfg) == (2 * chain + 40, 2 * chain)
    assert trajectory_periods(resolve("beer_game_basic"), cfg) == (72, 32)
    assert trajectory_periods(resolve("ex61"), cfg) == (60, 20)
    assert trajectory_periods(resolve("ex61"), cfg.replace(horizon=30)) == (30, 20)
    assert trajectory_periods(resolve("ex61"), cfg.replace(warmup=5)) == (45, 5)
    with pytest.raises(ConfigError, match=r"^warmup: auto gives 36 periods on 'orgym_invmgmt_backlog'.*horizon 30"):
        trajectory_periods(resolve("orgym_invmgmt_backlog"), cfg.replace(horizon=30))
    tiny = HDPOConfig.from_dict({**TINY, "horizon": "auto", "warmup": "auto", "iterations": 1})
    result = train_hdpo("beer_game_basic", tiny, tmp_path / "r", progress=False)
    assert result.steps == 1
    assert json.loads((tmp_path / "r" / "final" / "meta.json").read_text())["trajectory"] == "72 periods, 32 warm-up"


def test_unknown_key_gets_a_hint_and_shipped_configs_load() -> None:
    with pytest.raises(ConfigError, match=r"did you mean 'learning_rate'"):
        HDPOConfig.from_dict({"learnig_rate": 0.1})
    assert load_hdpo_config("default").iterations >= 1
    with pytest.raises(ConfigError, match="^config: 'nope'"):
        load_hdpo_config("nope")


def test_save_and_reload_give_identical_actions(tmp_path: Path) -> None:
    topo = resolve("distribution")
    cfg = HDPOConfig.from_dict({"share_roles": True, "hidden": [16]})
    torch.manual_seed(4)
    net = HDPONet(topo, cfg)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.3 * torch.randn_like(p))
    policy = HDPOPolicy(net.state_dict(), cfg, trained_on="distribution")
    policy.save(tmp_path / "agent", {"scenario": "distribution"})
    loaded = HDPOPolicy.load(tmp_path / "agent")
    sim = Simulator(topo, n=5)
    sim.reset(seeds=9)
    for _ in range(20):
        a, b = policy.act(sim), loaded.act(sim)
        np.testing.assert_array_equal(a, b)
        assert np.array_equal(a, np.rint(a))  # distribution has integer_orders
        sim.step(a)
    with pytest.raises(ValueError, match="^scenario: 'ex61'"):
        loaded.check(Simulator("ex61", n=1))


def test_an_agent_saved_when_auto_meant_installation_still_loads(tmp_path: Path) -> None:
    """On ``general`` ``auto`` now builds ``split``; an agent saved with ``auto`` and an
    ``installation`` network's weights (as ``auto`` built there before) loads as that network."""
    topo = resolve("general")
    cfg = HDPOConfig.from_dict({"hidden": [8]})
    assert HDPONet(topo, cfg).arch == "split"
    torch.manual_seed(1)
    old = HDPONet(topo, cfg.replace(architecture="installation"))
    HDPOPolicy(old.state_dict(), cfg, trained_on="general").save(tmp_path / "agent", {"scenario": "general"})
    loaded = HDPOPolicy.load(tmp_path / "agent")
    reference = HDPOPolicy(old.state_dict(), cfg.replace(architecture="installation"))
    sim = Simulator(topo, n=3)
    sim.reset(seeds=4)
    for _ in range(10):
        a = loaded.act(sim)
        np.testing.assert_array_equal(a, reference.act(sim))
        sim.step(a)


def test_resume_reaches_the_same_total_and_the_same_weights(tmp_path: Path) -> None:
    """A run stopped after 2 iterations and resumed to 4 ends where a straight run of 4 ends."""
    cfg = HDPOConfig.from_dict({**TINY, "iterations": 4, "checkpoint_every": 2})
    straight = train_hdpo("ex61", cfg, tmp_path / "a", seed=3, progress=False)
    train_hdpo("ex61", cfg.replace(iterations=2), tmp_path / "b", seed=3, progress=False)
    resumed = train_hdpo("ex61", cfg, tmp_path / "b", seed=3, progress=False, resume=True)
    assert straight.steps == resumed.steps == 4 and resumed.steps_this_call == 2
    wa = torch.load(tmp_path / "a" / "final" / "policy.pt", weights_only=True)
    wb = torch.load(tmp_path / "b" / "final" / "policy.pt", weights_only=True)
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
    # a damaged newest checkpoint is skipped (its manifest no longer matches): the run goes on from
    # the one before and again ends with the same weights
    with (tmp_path / "b" / "checkpoints" / "4" / "policy.pt").open("ab") as fh:
        fh.write(b"x")
    again = train_hdpo("ex61", cfg.replace(iterations=4), tmp_path / "b", seed=3, progress=False, resume=True)
    assert again.steps_this_call == 2
    wc = torch.load(tmp_path / "b" / "final" / "policy.pt", weights_only=True)
    assert all(torch.equal(wa[k], wc[k]) for k in wa)
    with pytest.raises(ConfigError, match="hidden"):
        train_hdpo("ex61", cfg.replace(hidden=[4]), tmp_path / "b", progress=False, resume=True)


def test_resume_sets_aside_a_damaged_checkpoint_and_mends_what_a_kill_left(tmp_path: Path, capsys) -> None:
    """As PPO's resume does: a damaged checkpoint is kept as ``STEP.damaged`` (not overwritten by the
    new one at that iteration), a ``best/`` whose replacement was cut between its two renames is put
    back, and incomplete writes are deleted."""
    from meio.agents.policy import manifest_problem

    cfg = HDPOConfig.from_dict({**TINY, "iterations": 4, "checkpoint_every": 2, "eval_every": 2})
    run = tmp_path / "r"
    train_hdpo("ex61", cfg, run, seed=3, progress=False)
    with (run / "checkpoints" / "4" / "policy.pt").open("ab") as fh:
        fh.write(b"x")
    damaged_bytes = (run / "checkpoints" / "4" / "policy.pt").read_bytes()
    best_meta = (run / "best" / "meta.json").read_text()
    (run / "best").rename(run / ".best.old-123")
    (run / ".final.partial-123").mkdir()
    (run / "checkpoints" / ".6.partial-123").mkdir()
    capsys.readouterr()
    again = train_hdpo("ex61", cfg, run, seed=3, progress=False, resume=True)
    assert f"skipped checkpoint {run / 'checkpoints' / '4'}" in capsys.readouterr().err
    assert again.steps_this_call == 2
    assert (run / "checkpoints" / "4.damaged" / "policy.pt").read_bytes() == damaged_bytes
    assert manifest_problem(run / "checkpoints" / "4") is None
    assert not list(run.glob(".*")) and not list((run / "checkpoints").glob(".*"))
    # best/ came back before the resumed evaluations compared themselves with it
    assert (run / "best").is_dir() and manifest_problem(run / "best") is None
    assert json.loads((run / "best" / "meta.json").read_text())["eval_cost"] <= json.loads(best_meta)["eval_cost"]


@pytest.mark.parametrize(("name", "sold"), [("orgym_invmgmt_backlog", "demand"), ("orgym_invmgmt", "filled")])
def test_transport_credit_is_the_flow_balance_of_the_echelon(name: str, sold: str) -> None:
    """The truncation credit rests on flow conservation: over periods [w, T) the units shipped on a
    lane into node j equal the units sold below j (demand with backorders, filled demand with lost
    sales) plus the change of j's physical echelon stock E_j. Checked on the transport cost the twin
    charges, under random orders that make the capacities bind and stock run out."""
    from meio.envs.dynamics import COST_NAMES, OUT_NAMES

    topo = resolve(name)
    params = TwinParams.from_topology(topo)
    net = HDPONet(topo, HDPOConfig()).double()
    gen = torch.Generator().manual_seed(5)
    mean = torch.tensor(topo.throughput[topo.slot_dst], dtype=torch.float64)
    w, t = 7, 40
    marks = {}

    def policy(state, k):  # type: ignore[no-untyped-def]
        if k == w:
            marks["start"] = net.physical_echelon(state)
        return torch.rand(16, topo.n_slots, generator=gen, dtype=torch.float64) * 6.0 * mean

    result = rollout(params, policy, initial_state(params, 16), draw_block(params, 16, t, seed=11))
    paid = result.costs[:, w:, COST_NAMES.index("transport")].sum(1)
    sales = result.node_out[:, w:, :, OUT_NAMES.index(sold)].sum(1)  # (B, D)
    below = torch.tensor(topo.descendants()[:, topo.demand_nodes], dtype=torch.float64)  # (N, D)
    added = net.physical_echelon(result.state) - marks["start"]
    unit = torch.tensor(topo.slot_unit_cost, dtype=torch.float64)
    dst = torch.tensor(topo.slot_dst)
    expected = ((sales @ below.T + added)[:, dst] * unit).sum(1)
    assert float(paid.min()) > 0.0
    torch.testing.assert_close(paid, expected, rtol=1e-9, atol=1e-9)


def test_fixed_costs_train_only_off_the_slots_the_network_orders_on() -> None:
    """general's fixed cost is on the express mode, a slot the installation network never orders
    on: HDPO trains there and the twin charges no fixed cost; fixed_cost's is on the primary lane:
    refused naming the key."""
    from meio.agents.hdpo import hdpo_scenario_problem, twin_params
    from meio.envs.dynamics import COST_NAMES

    cfg = load_hdpo_config("default")
    with pytest.raises(TwinUnsupported):
        TwinParams.from_topology("general")
    assert hdpo_scenario_problem("general", cfg) is None
    topo = resolve("general")
    params = twin_params(topo, cfg, dtype=torch.float64)
    net = HDPONet(topo, cfg).double()
    with torch.no_grad():
        result = rollout(params, lambda s, k: net(s), initial_state(params, 8), draw_block(params, 8, 20, seed=2))
    assert float(result.costs[..., COST_NAMES.index("ordering")].abs().max()) == 0.0
    why = hdpo_scenario_problem("fixed_cost", cfg)
    assert why is not None and "lanes[0].fixed_cost" in why and "depot->shop" in why
    # capped orders on every slot, express included: the fixed cost would be paid, so refused
    why = hdpo_scenario_problem("general", cfg.replace(architecture="quantity"))
    assert why is not None and "plant_a->dc:express" in why
