"""``meio explain``: the levels and allocation a policy acts on, read from its simulation.

Anchors: a base-stock policy is a constant order-up-to level (sd 0, slope 0, the level it was
given); a rule ``y = a + b x`` has slope ``b``; the shares a proportional warehouse ships follow
the rule of docs/model.md computed by hand; bad input names its flag.
"""

from __future__ import annotations

import contextlib
import io
import json

import numpy as np
import pandas as pd
import pytest

from meio.cli import main
from meio.envs.metrics import evaluate
from meio.envs.policies import BaseStockPolicy
from meio.envs.resolve import resolve
from meio.envs.scenario import Scenario
from meio.envs.simulator import Simulator
from meio.explain import Explanation, allocation_table, explain, level_table, record


def _retailer(name: str, demand: dict, initial: float) -> dict:
    return {"id": name, "holding_cost": 2, "backorder_cost": 10, "demand": demand, "initial_inventory": initial}


def _distribution(**retailer_demand: dict) -> dict:
    """A warehouse (external lead time 2) supplying r1 (lead time 1) and r2 (lead time 2)."""
    d1 = retailer_demand.get("r1", {"dist": "poisson", "mean": 3})
    d2 = retailer_demand.get("r2", {"dist": "poisson", "mean": 5})
    return {
        "name": "explain_test",
        "unmet_demand": "backorder",
        "allocation": "proportional",
        "horizon": 50,
        "nodes": [
            {"id": "wh", "holding_cost": 1, "initial_inventory": 20},
            _retailer("r1", d1, 3),
            _retailer("r2", d2, 4),
        ],
        "lanes": [
            {"from": "external", "to": "wh", "lead_time": 2},
            {"from": "wh", "to": "r1", "lead_time": 1},
            {"from": "wh", "to": "r2", "lead_time": 2},
        ],
    }


def _row(table, policy: str, node: str, basis: str = "installation"):
    sel = table[(table.policy == policy) & (table.node == node) & (table.basis == basis)]
    assert len(sel) == 1, (policy, node, basis)
    return sel.iloc[0]


@pytest.mark.parametrize(
    "kind, levels",
    [("installation", {"wh": 30.0, "r1": 8.0, "r2": 15.0}), ("echelon", {"wh": 60.0, "r1": 8.0, "r2": 15.0})],
)
def test_a_base_stock_policy_acts_as_its_constant_level(kind, levels):
    topo = resolve(Scenario.from_dict(_distribution()))
    policy = BaseStockPolicy(topo, levels, kind=kind, name="bs")
    tr = record(topo, policy, periods=400, warmup=50, seed=1, kind=kind)
    tr.levels = levels
    table = level_table(topo, [tr])
    for node, level in levels.items():
        row = _row(table, "bs", node, kind if node == "wh" else "installation")  # a leaf has one position
        # Position before ordering never exceeds S here (no capacity), so the position after is S.
        assert row["sd"] < 1e-9
        assert row["mean"] == pytest.approx(level, abs=1e-9)
        assert row["p5"] == pytest.approx(level) and row["p95"] == pytest.approx(level)
        assert row["slope_own"] == 0.0 and np.isnan(row["r2_own"])
        assert row["level"] == level
    # What it orders from moves (demand is random): the level is constant, not the record.
    before = tr.position_before if kind == "installation" else tr.echelon_before
    assert (before.std(axis=0) > 0.5).all()
    assert not (table.node.isin(["r1", "r2"]) & (table.basis == "echelon")).any()  # a leaf's echelon is itself


def test_recording_leaves_the_run_bit_for_bit_as_it_was():
    topo = resolve(Scenario.from_dict(_distribution()))
    policy = BaseStockPolicy(topo, {"wh": 30.0, "r1": 8.0, "r2": 15.0})
    plain = evaluate(Simulator(topo, n=1), policy, periods=300, warmup=50, seed=4)
    tr = record(topo, policy, periods=350, warmup=50, seed=4)
    np.testing.assert_array_equal(tr.evaluation.per_period_cost, plain.per_period_cost)
    assert tr.position_after.shape == (300, 3)


class _LinearTargets:
    """r1 orders up to ``12 + 0.5 x`` (``x`` its position before ordering); r2 up to ``5 + 0.25 I_wh``;
    the warehouse orders 40 per period, far above what the retailers take, so its stock grows and
    neither retailer's order is ever clipped at 0."""

    name = "linear"

    def act(self, sim: Simulator) -> np.ndarray:
        topo = sim.topology
        ip = sim.positions()[0]
        wh, r1, r2 = (topo.node_index(n) for n in ("wh", "r1", "r2"))
        orders = np.zeros((sim.n, topo.n_slots))
        for s in range(topo.n_slots):
            dst = topo.slot_dst[s]
            if dst == wh:
                orders[:, s] = 40.0
            elif dst == r1:
                orders[:, s] = 12.0 + 0.5 * ip[:, r1] - ip[:, r1]
            else:
                orders[:, s] = 5.0 + 0.25 * sim.on_hand[:, wh] - ip[:, r2]
        return orders


def test_a_linear_target_comes_out_as_its_slope():
    topo = resolve(Scenario.from_dict(_distribution()))
    tr = record(topo, _LinearTargets(), periods=300, warmup=20, seed=2)
    table = level_table(topo, [tr])
    r1, r2 = _row(table, "linear", "r1"), _row(table, "linear", "r2")
    assert r1["order_share"] == 1.0 and r2["order_share"] == 1.0  # never clipped: the rule held
    assert r1["slope_own"] == pytest.approx(0.5, abs=1e-9)
    assert r1["r2_own"] == pytest.approx(1.0, abs=1e-9)
    assert r2["slope_supplier_on_hand"] == pytest.approx(0.25, abs=1e-9)
    assert r2["r2_supplier_on_hand"] == pytest.approx(1.0, abs=1e-9)
    assert np.isnan(_row(table, "linear", "wh")["slope_supplier_on_hand"])  # external supplier


class _Scripted:
    """Orders given per period: ``{period: {slot name: units}}``, 0 elsewhere."""

    name = "scripted"

    def __init__(self, script: dict[int, dict[str, float]]) -> None:
        self.script = script

    def act(self, sim: Simulator) -> np.ndarray:
        topo = sim.topology
        orders = np.zeros((sim.n, topo.n_slots))
        for slot, q in self.script.get(int(sim.t[0]), {}).items():
            orders[:, topo.slot_names.index(slot)] = q
        return orders


def test_allocation_shares_match_a_hand_computation_of_proportional_rationing():
    # Warehouse: 10 on hand, its orders arrive a period later (external lead time 1). Demand is
    # 1 a period at r1 and 3 at r2 (discrete, one value), from 100 units each.
    d = _distribution(
        r1={"dist": "discrete", "values": [1], "probs": [1.0]}, r2={"dist": "discrete", "values": [3], "probs": [1.0]}
    )
    d["nodes"][0]["initial_inventory"] = 10
    d["nodes"][1]["initial_inventory"] = d["nodes"][2]["initial_inventory"] = 100
    d["lanes"][0]["lead_time"] = 1
    script = {
        0: {"external->wh": 9, "wh->r1": 8, "wh->r2": 4},
        1: {"external->wh": 1, "wh->r1": 2, "wh->r2": 6},
    }
    topo = resolve(Scenario.from_dict(d))
    tr = record(topo, _Scripted(script), periods=20, warmup=0, seed=0)
    # By hand (docs/model.md, proportional: each slot gets owed * budget / total owed of the age served):
    # t=0: owed (8, 4), stock 10 -> ships (8, 4) * 10/12; short. Left owed (4/3, 2/3).
    # t=1: 9 arrive; age 1 (4/3, 2/3) served whole, 7 left for age 0 (2, 6) -> (1.75, 5.25); short.
    # t=2: 1 arrives, owed (1/4, 3/4) shipped whole; not short. Later: nothing owed, nothing shipped.
    got = np.array([[8 * 10 / 12, 4 * 10 / 12], [4 / 3 + 1.75, 2 / 3 + 5.25], [0.25, 0.75]])
    owed = np.array([[8, 4], [4 / 3 + 2, 2 / 3 + 6], [0.25, 0.75]])
    share = got / got.sum(axis=1, keepdims=True)
    owed_share = owed / owed.sum(axis=1, keepdims=True)
    table = allocation_table(topo, [tr]).set_index("child")
    assert table.loc["r1", "short_periods"] == pytest.approx(2 / 20)
    for c, child in enumerate(("r1", "r2")):
        assert table.loc[child, "share_short"] == pytest.approx(share[:2, c].mean(), abs=1e-12)
        assert table.loc[child, "share_owed_short"] == pytest.approx(owed_share[:2, c].mean(), abs=1e-12)
        assert table.loc[child, "share_all"] == pytest.approx(share[:, c].mean(), abs=1e-12)
    assert table.loc["r1", "demand_share"] == pytest.approx(0.25)
    assert table.loc["r2", "demand_share"] == pytest.approx(0.75)
    # The positions before and after ordering of period 0 (customers decide first): r1 100 -> 108,
    # the warehouse 10 - 12 = -2 before its order of 9, 7 after; its echelon 10 + 100 + 100 + 9 after.
    wh, r1 = topo.node_index("wh"), topo.node_index("r1")
    assert (tr.position_before[0, r1], tr.position_after[0, r1]) == (100.0, 108.0)
    assert (tr.position_before[0, wh], tr.position_after[0, wh]) == (-2.0, 7.0)
    assert tr.echelon_after[0, wh] == pytest.approx(10 + 100 + 100 + 9)


def test_explain_writes_the_tables_and_the_plot(tmp_path):
    topo = resolve(Scenario.from_dict(_distribution()))
    policy = BaseStockPolicy(topo, {"wh": 30.0, "r1": 8.0, "r2": 15.0}, name="bs")
    ex = explain(topo, baselines="none", periods=300, warmup=50, policies=[policy, _LinearTargets()])
    assert isinstance(ex, Explanation)
    files = ex.write(tmp_path)
    assert {p.name for p in tmp_path.iterdir()} == {"levels.csv", "allocation.csv", "levels.png"}
    assert files["plot"].stat().st_size > 10_000
    assert set(ex.allocation.policy) == {"bs", "linear"} and set(ex.allocation.child) == {"r1", "r2"}


def run_cli(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv)
    return code, out.getvalue(), err.getvalue()


def test_an_agent_of_another_scenario_is_refused_naming_model(tmp_path):
    agent = tmp_path / "best"
    agent.mkdir()
    (agent / "policy.pt").write_bytes(b"")
    (agent / "meta.json").write_text(json.dumps({"algo": "hdpo", "scenario": "ex61"}))
    code, _, err = run_cli(["explain", "--model", str(tmp_path), "--scenario", "distribution", "--baselines", "none"])
    assert code == 2
    assert "--model" in err and "'ex61'" in err and "'distribution'" in err


@pytest.mark.parametrize(
    "argv, words",
    [
        (["--baselines", "refrence"], ["--baselines", "'refrence'", "reference"]),
        (["--baselines", "optimised_installation,bogus"], ["--baselines", "'bogus'"]),
        (["--periods", "200", "--warmup", "200"], ["--periods", "200", "warmup"]),
        (["--periods", "0"], ["--periods", "below 1"]),
        (["--baselines", "none"], ["--model", "no policy"]),
    ],
)
def test_bad_input_names_the_flag(argv, words):
    code, out, err = run_cli(["explain", "--scenario", "distribution", *argv])
    assert code == 2 and not out
    for w in words:
        assert w in err


def test_the_command_writes_its_files_and_prints_the_levels(tmp_path):
    import yaml

    path = tmp_path / "explain_test.yaml"
    path.write_text(yaml.safe_dump(_distribution()))
    out = tmp_path / "out"
    argv = ["explain", "--scenario", str(path), "--baselines", "local", "--periods", "300", "--warmup", "50"]
    code, text, err = run_cli([*argv, "--out", str(out)])
    assert code == 0, err
    assert {p.name for p in out.iterdir()} == {"levels.csv", "allocation.csv", "levels.png"}
    rows = [line for line in text.splitlines() if line.startswith("| local |")]
    rows = [line for line in rows if line.split(" | ")[2] in ("installation", "echelon")]  # the levels table
    assert len(rows) == 4  # wh on both bases, r1, r2
    assert all(line.split(" | ")[4] == "0.0000" for line in rows)  # sd of a base-stock level


class _FixedSplit:
    """On ``general``: dc orders 3 units by road and 1 from plant_b every period, west 2 from dc and
    nothing from plant_b; the plants order 4 each; east nothing."""

    name = "split"

    def act(self, sim: Simulator) -> np.ndarray:
        topo = sim.topology
        want = {"external->plant_a": 4.0, "external->plant_b": 4.0, "plant_a->dc:road": 3.0, "plant_b->dc": 1.0}
        want["dc->west"] = 2.0
        orders = np.zeros((sim.n, topo.n_slots))
        for s, name in enumerate(topo.slot_names):
            orders[:, s] = want.get(name, 0.0)
        return orders


def test_sourcing_shows_where_each_node_bought(tmp_path):
    """A fixed 3:1 split at dc shows as shares 0.75 and 0.25, express 0, and west buying only from
    dc as share 1; only dc and west (several slots in) are listed; a base-stock policy, which
    orders on primary slots only, has share 1 on the first slot of each."""
    topo = resolve("general")
    policy = BaseStockPolicy(
        topo, {"plant_a": 40.0, "plant_b": 30.0, "dc": 50.0, "east": 25.0, "west": 20.0}, name="bs"
    )
    ex = explain(topo, baselines="none", periods=120, warmup=20, policies=[_FixedSplit(), policy])
    table = ex.sourcing.set_index(["policy", "slot"])
    assert set(ex.sourcing.node) == {"dc", "west"}
    got = {s: table.loc[("split", s)] for s in ("plant_a->dc:road", "plant_a->dc:express", "plant_b->dc")}
    assert [got[s]["share"] for s in got] == pytest.approx([0.75, 0.0, 0.25])
    assert [got[s]["mean_order"] for s in got] == pytest.approx([3.0, 0.0, 1.0])
    assert got["plant_a->dc:express"]["fixed_cost"] == 5.0 and got["plant_b->dc"]["unit_cost"] == 0.2
    assert table.loc[("split", "dc->west")]["share"] == 1.0 and table.loc[("split", "plant_b->west")]["share"] == 0.0
    for s in ("plant_a->dc:road", "dc->west"):  # the primary slots of dc and west
        assert table.loc[("bs", s)]["share"] == 1.0
    files = ex.write(tmp_path)
    assert files["sourcing"].name == "sourcing.csv" and len(pd.read_csv(files["sourcing"])) == len(ex.sourcing)
