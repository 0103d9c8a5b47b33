"""Bad input at the edges (command line, Python API, env actions) and the unstable-backlog flag.

Every entry point checks its input once and names the field; a policy whose supply falls short of
demand is reported as unstable instead of with a cost.
"""

from __future__ import annotations

import contextlib
import io
import json
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from meio.baselines import run as baselines_run
from meio.baselines.run import run_baselines
from meio.benchmark import run_benchmark, write_report
from meio.cli import main
from meio.envs.metrics import evaluate
from meio.envs.multi_echelon import MultiEchelonEnv
from meio.envs.policies import BaseStockPolicy
from meio.envs.scenario import Scenario
from meio.envs.simulator import Simulator
from meio.envs.vec_env import make_vec_env

EX61_NODES = ("retailer", "dc", "plant")
EX61_OPTIMAL = {"retailer": 6.49, "dc": 12.02, "plant": 22.71}  # Snyder & Shen Example 6.1, echelon
EX61_LEVELS = ",".join(f"{k}={v}" for k, v in EX61_OPTIMAL.items())


def run_cli(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv)
    return code, out.getvalue(), err.getvalue()


class FixedOrders:
    """Orders ``quantity`` units on every slot every period, whatever the state."""

    def __init__(self, quantity: float) -> None:
        self.quantity = quantity
        self.name = f"fixed_{quantity:g}"

    def act(self, sim: Simulator) -> np.ndarray:
        return np.full((sim.n, sim.topology.n_slots), self.quantity)


# ---- command-line arguments -------------------------------------------------------------------
@pytest.mark.parametrize(
    "option, value, words",
    [
        ("--replications", "0", "0 is below 1"),
        ("--replications", "-3", "-3 is below 1"),
        ("--periods", "-5", "-5 is below 1"),
        ("--periods", "1e12", "'1e12' is not an integer"),
        ("--warmup", "-1", "-1 is below 0"),
        ("--seed", "-1", "-1 is below 0"),
        ("--seed", "4294967296", "4294967296 is above 4294967295"),
    ],
)
def test_a_bad_count_is_refused_by_argparse_naming_the_option(option, value, words):
    argv = ["simulate", "--scenario", "ex61", "--levels", EX61_LEVELS, "--periods", "40", option, value]
    code, out, err = run_cli(argv)
    assert code == 2 and out == ""
    assert f"meio simulate: error: argument {option}: {words}" in err


def test_search_periods_zero_is_refused_not_accepted():
    code, _, err = run_cli(["baselines", "--scenario", "ex61", "--only", "local", "--search-periods", "0"])
    assert code == 2
    assert "argument --search-periods: 0 is below 1" in err


def test_a_node_named_twice_in_levels_is_refused_with_its_name():
    code, _, err = run_cli(
        ["simulate", "--scenario", "ex61", "--periods", "40", "--levels", "retailer=6,dc=12,retailer=7,plant=22"]
    )
    assert code == 2
    assert "--levels retailer: given twice (6 and 7)" in err


def test_an_unknown_node_in_levels_gets_a_hint_and_the_valid_ids():
    code, _, err = run_cli(
        ["simulate", "--scenario", "ex61", "--periods", "40", "--levels", "retailr=6,dc=12,plant=22"]
    )
    assert code == 2
    assert "--levels retailr: not a node of ex61 (did you mean 'retailer'?)" in err
    assert "nodes: plant, dc, retailer" in err


def test_a_node_id_that_levels_cannot_write_is_named(tmp_path):
    path = tmp_path / "comma.yaml"
    path.write_text(
        "name: comma\nunmet_demand: backorder\nnodes:\n"
        "  - {id: 'shop,east', holding_cost: 1, backorder_cost: 9, demand: {dist: poisson, mean: 4}}\n"
        "lanes:\n  - {from: external, to: 'shop,east', lead_time: 1}\n"
    )
    code, _, err = run_cli(["simulate", "--scenario", str(path), "--periods", "40", "--levels", "shop,east=8"])
    assert code == 2
    assert "'shop,east'" in err
    # refused where it is met: by --levels, or by the scenario's own id rule if it has one
    assert "--levels: node 'shop,east' of comma cannot be written as NODE=LEVEL" in err or "nodes[0].id" in err


def test_an_api_field_in_a_command_error_is_named_as_its_option():
    # One replication needs 20 periods for its batch means: a rule of evaluate(), named --periods here.
    code, _, err = run_cli(
        ["simulate", "--scenario", "ex61", "--levels", EX61_LEVELS, "--periods", "5", "--replications", "1"]
    )
    assert code == 2
    assert "meio simulate: error: --periods: 5 is too few" in err


BAD_COUNTS = st.one_of(
    st.sampled_from(["0", "-1", "-0", "abc", "nan", "inf", "-inf", "1e3", "2.5", "", " ", "0x10", "--", "1,2"]),
    st.integers(max_value=-1).map(str),
    st.integers(min_value=10**9 + 1, max_value=10**40).map(str),
)
NODE = st.sampled_from(EX61_NODES)


@st.composite
def bad_levels(draw: st.DrawFn) -> str:
    """A --levels text with one fault: a node twice, an unknown node, no '=', or a value that is no number."""
    items = [f"{k}={v}" for k, v in EX61_OPTIMAL.items()]
    fault = draw(st.sampled_from(["twice", "unknown", "no_equals", "value"]))
    if fault == "twice":
        items.insert(draw(st.integers(0, 3)), f"{draw(NODE)}={draw(st.integers(0, 30))}")
    elif fault == "unknown":
        letters = st.text("abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=10)
        name = draw(letters.filter(lambda s: s not in EX61_NODES))
        items[draw(st.integers(0, 2))] = f"{name}=5"
    elif fault == "no_equals":
        items[draw(st.integers(0, 2))] = draw(NODE)
    else:
        i = draw(st.integers(0, 2))
        items[i] = f"{EX61_NODES[i]}={draw(st.sampled_from(['abc', 'nan', 'inf', '-inf', '', '1e999', '5x']))}"
    return ",".join(items)


@st.composite
def malformed_command(draw: st.DrawFn) -> tuple[list[str], str]:
    """A cheap ``meio simulate`` / ``meio baselines`` command line with one malformed argument, and
    the option an error must name."""
    command = draw(st.sampled_from(["simulate", "baselines"]))
    args = {"--scenario": "ex61", "--periods": "30", "--warmup": "5", "--replications": "2", "--seed": "0"}
    if command == "simulate":
        args.update({"--kind": "echelon", "--levels": EX61_LEVELS})
        options = ["--periods", "--warmup", "--replications", "--seed", "--levels"]
    else:
        args.update({"--only": "local", "--search-periods": "20", "--search-replications": "2"})
        options = ["--periods", "--warmup", "--replications", "--seed", "--search-periods", "--search-replications"]
    option = draw(st.sampled_from(options))
    args[option] = draw(bad_levels()) if option == "--levels" else draw(BAD_COUNTS)
    argv = [command, "--json"]
    for key, value in args.items():
        # both spellings: "--opt value" and "--opt=value" (the only one argparse takes for "-x" values)
        argv += [f"{key}={value}"] if draw(st.booleans()) else [key, value]
    return argv, option


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(malformed_command())
def test_a_malformed_command_line_exits_2_naming_the_option_or_gives_a_finite_result(case):
    argv, option = case
    code, out, err = run_cli(argv)  # any exception fails the test: never a traceback
    if code == 0:
        cost = (
            json.loads(out)["cost_per_period"]["mean"]
            if argv[0] == "simulate"
            else json.loads(out)["local"]["simulated_cost"]["mean"]
        )
        assert math.isfinite(cost)
    else:
        assert code == 2, err
        last = err.strip().splitlines()[-1]
        assert last.startswith(f"meio {argv[0]}: error: ")
        assert option in last, last


# ---- the Python API ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    "kwargs, words",
    [
        ({"replications": 0}, "replications: 0 is below 1"),
        ({"periods": -10}, "periods: -10 is below 1"),
        ({"warmup": 2.5}, "warmup: 2.5 is not an integer"),
        ({"seed": -1}, "seed: -1 is below 0"),
        ({"periods": "100"}, "periods: '100' is not an integer"),
    ],
)
def test_evaluate_names_a_bad_setting(kwargs, words):
    run_kwargs = {"periods": 40, "warmup": 0, "replications": 2, "seed": 0, **kwargs}
    policy = BaseStockPolicy(Simulator("ex61").topology, EX61_OPTIMAL, kind="echelon")
    with pytest.raises(ValueError, match=words):
        evaluate("ex61", policy, **run_kwargs)


def test_run_baselines_and_run_benchmark_check_settings_before_any_search(monkeypatch):
    def no_search(*args, **kwargs):
        raise AssertionError("the search ran before the settings were checked")

    monkeypatch.setattr(baselines_run, "optimise_base_stock", no_search)
    with pytest.raises(ValueError, match="search_replications: 0 is below 1"):
        run_baselines("ex61", search_replications=0)
    with pytest.raises(ValueError, match="seed: -2 is below 0"):
        run_benchmark("ex61", seed=-2)
    with pytest.raises(ValueError, match="periods: 10 is too few for 20 batch means"):
        run_baselines("ex61", periods=10, replications=1)


# ---- env actions ------------------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["order_quantity", "order_up_to"])
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_a_non_finite_action_is_refused_alike_in_both_modes(mode, bad):
    env = MultiEchelonEnv("ex61", action_mode=mode)
    env.reset(seed=0)
    action = np.zeros(3, dtype=np.float32)
    action[1] = bad
    with pytest.raises(ValueError, match=r"action\[1\] \(slot plant->dc\): .* is not a finite number"):
        env.step(action)
    vec = make_vec_env("ex61", n_envs=2, seed=0, action_mode=mode)
    vec.reset()
    actions = np.zeros((2, 3))
    actions[1, 2] = bad
    with pytest.raises(ValueError, match=r"action\[1, 2\] \(slot external->plant\): .* is not a finite number"):
        vec.step(actions)


def test_an_action_of_the_wrong_shape_names_the_slots():
    env = MultiEchelonEnv("ex61")
    env.reset(seed=0)
    with pytest.raises(ValueError, match=r"action: shape \(2,\); expected .*\(3,\).*dc->retailer"):
        env.step(np.zeros(2, dtype=np.float32))


# ---- the unstable-backlog flag ----------------------------------------------------------------
@pytest.mark.parametrize("replications", [1, 4])
def test_a_policy_that_supplies_less_than_demand_is_flagged_with_its_growth(replications):
    """Every stage orders 4 units a period against demand of mean 5 (normal, sd 1): the retailer's
    backlog grows by the shortfall, 5 - 4 = 1 unit per period."""
    ev = evaluate("ex61", FixedOrders(4.0), periods=1000, warmup=50, replications=replications, seed=3)
    assert ev.unstable and ev.unstable_nodes == ("retailer",)
    assert ev.backlog_growth["retailer"] == pytest.approx(1.0, abs=0.1)
    text = ev.format()
    assert "cost not meaningful: backlog at retailer grows by" in text
    assert "cost per period:" not in text  # the cost is not presented as a long-run cost
    d = json.loads(json.dumps(ev.to_dict()))
    assert d["unstable"] is True and d["unstable_nodes"] == ["retailer"]
    assert d["backlog_growth_per_period"]["retailer"] == pytest.approx(1.0, abs=0.1)


@pytest.mark.parametrize("replications", [1, 3])
def test_the_optimal_ex61_policy_is_never_flagged(replications):
    """The same window under the optimal levels: the backlog is stationary, nothing is flagged."""
    sim = Simulator("ex61", n=replications)
    policy = BaseStockPolicy(sim.topology, EX61_OPTIMAL, kind="echelon")
    for seed in range(0, 60, 10):
        ev = evaluate(sim, policy, periods=1000, warmup=50, replications=replications, seed=seed)
        assert "retailer" in ev.backlog_growth  # assessed, and found stable
        assert not ev.unstable, (seed, ev.backlog_growth)
        assert "cost per period:" in ev.format()


def test_lost_sales_cannot_grow_a_backlog_so_nothing_is_assessed():
    sc = Scenario.from_dict(
        {
            "name": "shop",
            "unmet_demand": "lost_sales",
            "nodes": [
                {"id": "shop", "holding_cost": 1.0, "lost_sales_cost": 9.0, "demand": {"dist": "poisson", "mean": 5}}
            ],
            "lanes": [{"from": "external", "to": "shop", "lead_time": 1}],
        }
    )
    ev = evaluate(sc, FixedOrders(4.0), periods=400, warmup=10, replications=2, seed=0)
    assert not ev.unstable and ev.backlog_growth == {}
    assert ev.to_dict()["unstable"] is False


def test_the_benchmark_marks_an_unstable_policy_and_never_measures_gaps_against_it(tmp_path):
    res = run_benchmark(
        "ex61",
        baselines=("local",),
        periods=400,
        warmup=20,
        replications=2,
        seed=0,
        extra_policies={"short": FixedOrders(4.0)},
    )
    row = res.table.set_index("policy")
    assert row.loc["short", "unstable"].startswith("backlog at retailer grows by")
    assert row.loc["local", "unstable"] == ""
    assert res.reference == "local"
    files = write_report(res, tmp_path, frontier=False)
    report = files["report"].read_text()
    assert "Unstable policies: their costs are not meaningful." in report
    assert "- `short`: backlog at retailer grows by" in report
    assert "| unstable |" in files["md"].read_text()


@pytest.mark.parametrize(
    "n, message", [("3", "n: '3' is not an integer"), (0, "n: 0 is below 1"), (2.5, "n: 2.5 is not an integer")]
)
def test_simulator_rows_are_checked_naming_n(n, message):
    with pytest.raises(ValueError, match=message):
        Simulator("ex61", n=n)


def test_negative_seeds_are_refused_naming_seed_in_the_simulator_and_the_vec_env():
    sim = Simulator("ex61", n=2)
    with pytest.raises(ValueError, match="seed: -1 is below 0"):
        sim.reset(seeds=-1)
    with pytest.raises(ValueError, match="seed: -3 is below 0"):
        sim.reset(seeds=[0, -3])
    with pytest.raises(ValueError, match="seed: -1 is below 0"):
        make_vec_env("ex61", n_envs=2, seed=-1).reset()


def test_an_unknown_baseline_is_named_as_the_only_option_with_a_hint(capsys):
    assert main(["baselines", "--scenario", "ex61", "--only", "clark_scarfx", "--periods", "100"]) == 2
    err = capsys.readouterr().err
    assert "--only: 'clark_scarfx' is not a baseline (did you mean 'clark_scarf'?)" in err
