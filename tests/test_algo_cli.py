"""``meio train --algo``: HDPO runs next to PPO runs in train, resume, evaluate, benchmark and the plots."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from meio import cli
from meio.agents.config import PPOConfig
from meio.agents.policy import AGENT_KINDS, PPOPolicy, find_saved_agent, load_agent, saved_agent_algo
from meio.agents.train import train
from meio.cli import main
from meio.envs.metrics import evaluate
from meio.envs.scenario import Scenario, load_scenario
from meio.envs.simulator import Simulator

hdpo = pytest.importorskip("meio.agents.hdpo")

#: The fewest HDPO iterations that still give an evaluation, a checkpoint and best/ and final/:
#: 5 in the file, cut to 2 by --total-steps (which the test checks).
TINY_HDPO = dict(
    iterations=5,
    batch_size=8,
    horizon=8,
    warmup=2,
    hidden=[8],
    eval_every=1,
    eval_periods=20,
    eval_warmup=0,
    eval_replications=2,
    checkpoint_every=1,
    patience=0,
)
TINY_PPO = dict(
    n_envs=4,
    n_steps=64,
    batch_size=64,
    n_epochs=1,
    total_steps=256,
    eval_every=256,
    eval_periods=40,
    eval_warmup=5,
    eval_replications=2,
)
EVAL = dict(periods=60, warmup=5, replications=2, seed=0)


def _train_hdpo_cli(run: Path, config: Path, *extra: str) -> int:
    return main(
        [
            "train",
            "--algo",
            "hdpo",
            "--scenario",
            "ex61",
            "--config",
            str(config),
            "--run-dir",
            str(run),
            "--total-steps",
            "2",
            *extra,
        ]
    )


@pytest.fixture(scope="module")
def tiny_config(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("cfg") / "tiny.yaml"
    path.write_text(yaml.safe_dump(TINY_HDPO))
    return path


@pytest.fixture(scope="module")
def hdpo_run(tmp_path_factory, tiny_config) -> Path:
    run = tmp_path_factory.mktemp("runs") / "ex61-hdpo"
    assert _train_hdpo_cli(run, tiny_config) == 0
    return run


@pytest.fixture(scope="module")
def ppo_run(tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("runs") / "ex61-ppo"
    train("ex61", PPOConfig.from_dict(TINY_PPO), run, seed=0, progress=False)
    return run


def _meta(folder: Path) -> dict:
    return json.loads((folder / "meta.json").read_text())


def _simulator(scenario: str | Scenario, seed: int) -> Simulator:
    sim = Simulator(scenario, n=4)
    sim.reset(seed)
    return sim


def test_train_algo_hdpo_writes_an_hdpo_run(hdpo_run):
    saved = yaml.safe_load((hdpo_run / "config.yaml").read_text())
    assert saved["algo"] == "hdpo"
    # the config file was read (not configs/hdpo/default.yaml), with --total-steps as its iterations
    assert saved["config"]["batch_size"] == TINY_HDPO["batch_size"] and saved["config"]["iterations"] == 2
    for sub in ("best", "final"):
        assert _meta(hdpo_run / sub)["algo"] == "hdpo"
        assert (hdpo_run / sub / AGENT_KINDS["hdpo"][1]).is_file()
    assert _meta(hdpo_run / "final")["steps"] == 2
    assert list(pd.read_csv(hdpo_run / "evaluations.csv").steps) == [0, 1, 2]
    assert find_saved_agent(hdpo_run) == hdpo_run / "best"


def test_algorithm_names_agree_across_layers():
    """The CLI's --algo names, the loaders' table and the HDPO module's weights file name."""
    assert cli.ALGOS == tuple(AGENT_KINDS)
    assert AGENT_KINDS["hdpo"][1] == hdpo.WEIGHTS_FILE
    assert AGENT_KINDS["ppo"][1] == "model.zip"


def test_load_agent_dispatches_on_the_saved_meta(hdpo_run, ppo_run, tmp_path):
    assert "algo" not in _meta(ppo_run / "best")  # PPO runs name no algorithm: PPO by default
    assert isinstance(load_agent(ppo_run), PPOPolicy)
    agent = load_agent(hdpo_run)
    assert isinstance(agent, hdpo.HDPOPolicy) and agent.name == "hdpo"
    # the same orders as the HDPO class's own loader, on the same state
    sim = _simulator("ex61", seed=5)
    np.testing.assert_array_equal(agent.act(sim), hdpo.HDPOPolicy.load(hdpo_run / "best").act(sim))
    # an algorithm this version does not know is refused with a hint, before any weights are read
    copy = tmp_path / "copy"
    shutil.copytree(hdpo_run / "final", copy)
    (copy / "manifest.json").unlink()
    (copy / "meta.json").write_text(json.dumps({**_meta(copy), "algo": "hdpoo"}))
    with pytest.raises(ValueError, match=r"algo: 'hdpoo'.*did you mean 'hdpo'"):
        load_agent(copy)
    with pytest.raises(ValueError, match="hdpoo"):
        saved_agent_algo(copy)


def test_hdpo_orders_are_whole_units_where_the_scenario_says_integer_orders(hdpo_run):
    data = load_scenario("ex61").to_dict()
    agent = load_agent(hdpo_run)
    for integer in (True, False):
        sim = _simulator(Scenario.from_dict({**data, "integer_orders": integer}), seed=1)
        orders = [agent.act(sim)]
        for _ in range(3):  # off the initial state, where orders may be whole anyway
            sim.step(orders[-1])
            orders.append(agent.act(sim))
        whole = all(np.array_equal(o, np.rint(o)) for o in orders)
        assert whole == integer  # fractional without the flag: the rounding is its doing


def test_evaluate_takes_hdpo_and_ppo_runs(hdpo_run, ppo_run, capsys):
    for run, cls in ((hdpo_run, hdpo.HDPOPolicy), (ppo_run, PPOPolicy)):
        capsys.readouterr()
        assert (
            main(
                [
                    "evaluate",
                    "--model",
                    str(run),
                    "--scenario",
                    "ex61",
                    "--periods",
                    str(EVAL["periods"]),
                    "--warmup",
                    str(EVAL["warmup"]),
                    "--replications",
                    str(EVAL["replications"]),
                    "--json",
                ]
            )
            == 0
        )
        printed = json.loads(capsys.readouterr().out)
        expected = evaluate("ex61", cls.load(run / "best"), **EVAL)
        assert printed["cost_per_period"]["mean"] == pytest.approx(expected.cost_mean, rel=1e-12)


def test_benchmark_models_labels_rows_by_algorithm(hdpo_run, ppo_run, tmp_path, monkeypatch, capsys):
    import matplotlib.pyplot as plt

    closed = []
    real_close = plt.close
    monkeypatch.setattr(plt, "close", lambda fig=None: (closed.append(fig), real_close(fig)))
    out = tmp_path / "bm"
    assert (
        main(
            [
                "benchmark",
                "--scenario",
                "ex61",
                "--models",
                str(ppo_run),
                str(hdpo_run),
                "--periods",
                str(EVAL["periods"]),
                "--warmup",
                str(EVAL["warmup"]),
                "--replications",
                str(EVAL["replications"]),
                "--search-periods",
                "40",
                "--search-replications",
                "2",
                "--no-frontier",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    table = pd.read_csv(out / "results.csv").set_index("policy")
    for kind, run, cls in (("ppo", ppo_run, PPOPolicy), ("hdpo", hdpo_run, hdpo.HDPOPolicy)):
        label = f"{kind}:{run.name}"
        assert table.loc[label, "kind"] == kind
        # the row is the agent of the run's best/ on the benchmark's seeds
        expected = evaluate("ex61", cls.load(run / "best"), **EVAL)
        assert table.loc[label, "cost_mean"] == pytest.approx(expected.cost_mean, rel=1e-12)
    assert f"hdpo:{hdpo_run.name}" in capsys.readouterr().out
    # learning curves: both algorithms on one axis, periods simulated in training; an HDPO
    # iteration simulates batch_size trajectories of horizon periods
    learning = [f for f in closed if f is not None and f.axes and "while training" in f.axes[0].get_title()][-1]
    assert learning.axes[0].get_xlabel() == "periods simulated in training (summed over copies)"
    (curve,) = [line for line in learning.axes[0].lines if line.get_label() == f"hdpo:{hdpo_run.name} eval/cost"]
    evals = pd.read_csv(hdpo_run / "evaluations.csv")
    np.testing.assert_array_equal(curve.get_xdata(), evals.steps * TINY_HDPO["batch_size"] * TINY_HDPO["horizon"])
    np.testing.assert_allclose(curve.get_ydata(), evals.cost, rtol=1e-12)


def test_unknown_algo_is_refused_with_a_hint(tmp_path, capsys):
    run = tmp_path / "r"
    assert main(["train", "--algo", "hdp", "--scenario", "ex61", "--run-dir", str(run)]) == 2
    err = capsys.readouterr().err
    assert "--algo" in err and "did you mean 'hdpo'" in err and "ppo, hdpo" in err
    assert not run.exists()


@pytest.mark.parametrize("algo", ["ppo", "hdpo"])
def test_config_name_not_found_lists_the_algorithms_configs(algo, tmp_path, capsys):
    assert (
        main(["train", "--algo", algo, "--scenario", "ex61", "--config", "nosuch", "--run-dir", str(tmp_path / "r")])
        == 2
    )
    err = capsys.readouterr().err
    listed = err.rsplit("shipped: ", 1)[1].strip().split(", ")
    shipped = Path(__file__).resolve().parents[1] / "configs" / algo
    assert sorted(listed) == sorted(p.stem for p in shipped.glob("*.yaml"))


def test_a_ppo_config_given_to_hdpo_names_its_unknown_fields(tmp_path, capsys):
    ppo_default = Path(__file__).resolve().parents[1] / "configs" / "ppo" / "default.yaml"
    assert (
        main(
            [
                "train",
                "--algo",
                "hdpo",
                "--scenario",
                "ex61",
                "--config",
                str(ppo_default),
                "--run-dir",
                str(tmp_path / "r"),
            ]
        )
        == 2
    )
    err = capsys.readouterr().err
    ppo_only = set(yaml.safe_load(ppo_default.read_text())) - set(hdpo.HDPOConfig.model_fields)
    assert ppo_only and all(f"{key}: unknown key" in err for key in ppo_only)
    assert "holds ppo settings" in err and "--algo ppo" in err
    assert not (tmp_path / "r").exists()


def test_resume_of_an_hdpo_run_needs_no_algo(hdpo_run, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(hdpo_run, run)
    # --resume RUN (no --algo, no --run-dir) goes on from the checkpoint at 2 to the new total of 3
    assert main(["train", "--scenario", "ex61", "--resume", str(run), "--total-steps", "3"]) == 0
    assert "3 iterations (hdpo)" in capsys.readouterr().out
    assert _meta(run / "final")["steps"] == 3 and _meta(run / "final")["algo"] == "hdpo"
    assert list(pd.read_csv(run / "evaluations.csv").steps) == [0, 1, 2, 3]
    assert yaml.safe_load((run / "config.yaml").read_text())["algo"] == "hdpo"
    # at its total: nothing to do, in the run's own unit
    assert main(["train", "--scenario", "ex61", "--run-dir", str(run), "--resume"]) == 0
    assert "is at 3 iterations; nothing was trained" in capsys.readouterr().out
    # an --algo that contradicts the run, and two different folders, are refused before anything runs
    assert main(["train", "--algo", "ppo", "--scenario", "ex61", "--resume", str(run)]) == 2
    assert "was trained with hdpo" in capsys.readouterr().err
    assert main(["train", "--scenario", "ex61", "--resume", str(run), "--run-dir", str(tmp_path / "other")]) == 2
    assert "name two folders" in capsys.readouterr().err


def test_sweep_models_takes_hdpo_and_ppo_runs(hdpo_run, ppo_run, tmp_path):
    # the sweep's one value is the scenario's own, so each agent's row is its cost on ex61 itself
    holding = next(n.holding_cost for n in load_scenario("ex61").nodes if n.id == "retailer")
    out = tmp_path / "sw"
    assert (
        main(
            [
                "sweep",
                "--scenario",
                "ex61",
                "--param",
                "nodes[retailer].holding_cost",
                "--values",
                str(holding),
                "--models",
                str(ppo_run),
                str(hdpo_run),
                "--baselines",
                "clark_scarf",
                "--periods",
                str(EVAL["periods"]),
                "--warmup",
                str(EVAL["warmup"]),
                "--replications",
                str(EVAL["replications"]),
                "--out",
                str(out),
            ]
        )
        == 0
    )
    table = pd.read_csv(out / "sweep.csv").set_index("policy")
    for kind, run, cls in (("ppo", ppo_run, PPOPolicy), ("hdpo", hdpo_run, hdpo.HDPOPolicy)):
        expected = evaluate("ex61", cls.load(run / "best"), **EVAL)
        assert table.loc[f"{kind}:{run.name}", "cost_mean"] == pytest.approx(expected.cost_mean, rel=1e-12)
