"""``meio experiment``: the spec's checks, the IQM, and small experiments on one local Ray session."""

from __future__ import annotations

import copy
import math
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from meio.agents.policy import load_agent
from meio.benchmark import run_benchmark
from meio.experiment import ExperimentError, cells, iqm, load_spec, results_table, run_experiment, start_ray

#: Two serial chains whose reference (Clark-Scarf) is analytic, so the table costs little beyond training.
TINY: dict[str, Any] = {
    "name": "test",
    "scenarios": ["ex61", "serial4"],
    "methods": {
        "ppo": {
            "config": "default",
            "set": {
                "n_envs": 8,
                "n_steps": 32,
                "batch_size": 64,
                "n_epochs": 1,
                "eval_periods": 100,
                "eval_warmup": 10,
                "eval_replications": 2,
            },
        }
    },
    "seeds": [0, 1],
    "budget": {"total_steps": 1024, "eval_every": 512},
    "evaluation": {"periods": 200, "warmup": 20, "replications": 4, "baselines": ["clark_scarf"]},
}


def _spec(**changes: Any) -> dict[str, Any]:
    data = copy.deepcopy(TINY)
    data.update(changes)
    return data


@pytest.mark.parametrize(
    "change, field",
    [
        ({"seedz": [0]}, "seedz: unknown key"),
        ({"budget": {"total_steps": 0, "eval_every": 512}}, "budget.total_steps"),
        ({"seeds": [0, 0]}, "seeds"),
        ({"methods": {"sac": {}}}, "methods: 'sac' is not a method"),
        ({"methods": {"ppo": {"set": {"n_envs": 0}}}}, "methods.ppo.set: n_envs"),
        (
            {
                "methods": {"ppo": {"search": {"learning_rate": {"loguniform": [0.0, 1e-3]}}}},
                "search": {"algorithm": "random"},
            },
            "methods.ppo.search.learning_rate",
        ),
        (
            {"methods": {"ppo": {"search": {"gamma": {"uniform": [0.9, 0.99]}}}}},
            "methods.ppo.search.gamma: uniform needs",
        ),
        ({"methods": {"ppo": {"search": {"gamma": {"grid": [0.9, 1.5]}}}}}, "methods.ppo.search.gamma: 1.5"),
        ({"methods": {"ppo": {"search": {"no_such": {"grid": [1]}}}}}, "methods.ppo.search.no_such"),
        ({"early_stopping": {"scheduler": "hyperband"}}, "early_stopping.scheduler"),
        ({"scenarios": ["ex61", "no_such_scenario"]}, "scenarios[1]"),
    ],
)
def test_malformed_specs_are_refused_naming_the_field(change: dict[str, Any], field: str) -> None:
    with pytest.raises(ExperimentError) as err:
        load_spec(_spec(**change))
    assert field in str(err.value)


def test_shipped_specs_load() -> None:
    root = Path(__file__).resolve().parents[1] / "configs" / "experiments"
    suite = load_spec(root / "suite.yaml")
    from meio.envs.scenario import list_scenarios

    assert sorted(suite.scenarios) == sorted(list_scenarios()) and len(suite.seeds) == 3
    assert load_spec(root / "tiny.yaml").budget.total_steps > 0


def test_iqm_is_the_mean_of_the_middle_half() -> None:
    # Definition (Agarwal et al. 2021): sort, drop the lowest and highest quarter, average the rest.
    assert iqm(np.array([8.0, 1.0, 7.0, 2.0, 6.0, 3.0, 5.0, 4.0])) == pytest.approx((3 + 4 + 5 + 6) / 4)
    assert iqm(np.array([1.0, 2.0, 100.0, 3.0])) == pytest.approx(2.5)


def test_random_search_draws_are_seeded_and_in_range() -> None:
    data = _spec(
        search={"algorithm": "random", "samples": 5, "seed": 3},
        methods={"ppo": {"search": {"learning_rate": {"loguniform": [1e-5, 1e-3]}, "n_epochs": {"choice": [1, 2]}}}},
    )
    a, b = cells(load_spec(data)), cells(load_spec(data))
    assert a == b and len(a) == 5 * 2
    lrs = [c["overrides"]["learning_rate"] for c in a]
    assert all(1e-5 <= x <= 1e-3 for x in lrs) and len(set(lrs)) == 5


@pytest.fixture(scope="module")
def local_ray() -> Iterator[None]:
    import ray

    start_ray(cpus=2, cpus_per_trial=1)
    yield
    ray.shutdown()


def test_interrupted_experiment_resumes_and_table(local_ray: None, tmp_path: Path) -> None:
    spec = load_spec(_spec())
    with pytest.raises(RuntimeError, match="failed"):
        run_experiment(spec, tmp_path, interrupt=("serial4", 1))
    runs = sorted((tmp_path / "runs").glob("*/ppo-base-seed*"))
    assert len(runs) == 4
    cut = tmp_path / "runs" / "serial4" / "ppo-base-seed1"
    finished = {r: (r / "evaluations.csv").read_bytes() for r in runs if r != cut}
    stamps = {r: (r / "final" / "meta.json").stat().st_mtime_ns for r in finished}
    before = pd.read_csv(cut / "evaluations.csv")
    assert list(before.steps) == [0, 512]  # stopped at its first evaluation after training
    files = run_experiment(spec, tmp_path, resume=True)
    for r, text in finished.items():  # finished trials are not trained again
        assert (r / "evaluations.csv").read_bytes() == text
        assert (r / "final" / "meta.json").stat().st_mtime_ns == stamps[r]
    after = pd.read_csv(cut / "evaluations.csv")
    assert list(after.steps) == [0, 512, 1024] and list(after.cost.iloc[:2]) == list(before.cost)

    table = pd.read_csv(files["csv"])
    assert sorted(zip(table.scenario, table.method)) == [("ex61", "ppo"), ("serial4", "ppo")]
    assert (table.seeds == 2).all()
    for col in ("cost_mean", "cost_ci95", "gap_pct", "gap_ci95_pct", "gap_iqm_pct"):
        assert np.isfinite(table[col]).all(), col
    assert (table.reference == "clark_scarf").all() and (table.cost_ci95 > 0).all()
    assert files["png"].stat().st_size > 0

    # the table's evaluations ran as Ray tasks; they equal the benchmark's own serial computation (every
    # agent as an extra policy of run_benchmark, here in this process), bit for bit
    trials_df = pd.read_csv(tmp_path / "trials.csv")
    assert len(trials_df) == 4
    again, per_seed = results_table(spec, trials_df)
    assert list(again.reference_cost) == list(table.reference_cost) and list(again.cost_mean) == list(table.cost_mean)
    for ref, group in per_seed.groupby("scenario_ref"):
        agents = {Path(r).name: load_agent(r, name=Path(r).name) for r in group.run_dir}
        ev = spec.evaluation
        bench = run_benchmark(
            ref,
            periods=ev.periods,
            warmup=ev.warmup,
            replications=ev.replications,
            seed=ev.seed,
            baselines=tuple(ev.baselines or ()),
            extra_policies=agents,
        ).table.set_index("policy")
        for r in group.itertuples():
            assert r.reference_cost == bench.loc["clark_scarf", "cost_mean"]
            assert r.cost == bench.loc[Path(r.run_dir).name, "cost_mean"]
            assert r.gap_pct == bench.loc[Path(r.run_dir).name, "gap_pct"]

    # each trial's threads are the one CPU Tune gave it (a fresh process would have torch use both cores)
    trials = pd.read_csv(tmp_path / "trials.csv")
    for col in ("threads/cpus", "threads/torch", "threads/numba", "threads/numba_pool", "threads/meio"):
        assert (trials[col] == 1).all(), col


def test_asha_stops_bad_trials_early(local_ray: None, tmp_path: Path) -> None:
    # order_quantity starts from near-zero orders (a huge backorder cost), order_up_to near a base-stock
    # rule: at the first rung the bad half is cut. Two CPUs per trial run the trials one at a time in the
    # grid's order (order_up_to first), so the rung holds the good trials when a bad one reaches it
    # (asynchronous halving cuts only against results already in).
    data = _spec(
        cpus_per_trial=2,
        scenarios=["ex61"],
        seeds=[0, 1],
        budget={"total_steps": 1024, "eval_every": 256},
        early_stopping={"scheduler": "asha", "grace_evaluations": 1, "reduction_factor": 2},
        methods={
            "ppo": {**TINY["methods"]["ppo"], "search": {"action_mode": {"grid": ["order_up_to", "order_quantity"]}}}
        },
    )
    files = run_experiment(load_spec(data), tmp_path)
    trials = pd.read_csv(tmp_path / "trials.csv")
    assert len(trials) == 4 and trials.stopped.sum() >= 1
    assert (trials[trials.stopped].steps < 1024).all() and (trials[~trials.stopped].steps == 1024).all()
    table = pd.read_csv(files["csv"])
    assert len(table) == 2 and table.best.sum() == 1
    assert not math.isnan(table.loc[table.best, "gap_pct"].iloc[0])


def test_cli_refuses_a_malformed_spec_before_ray_starts(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import yaml

    from meio.cli import main

    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(_spec(budget={"total_steps": 1024, "eval_every": 512, "evry": 1})))
    assert main(["experiment", str(path), "--out", str(tmp_path / "out")]) == 2
    assert "budget.evry: unknown key" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
    assert main(["experiment", str(path), "--cpus", "0"]) == 2
    assert "--cpus: 0" in capsys.readouterr().err


#: PPO and HDPO on one spec, each in its own unit: PPO 1,024 env steps evaluated (and checkpointed) once at
#: the end, HDPO 6 gradient iterations evaluated and checkpointed every 2.
MIXED: dict[str, Any] = _spec(
    name="mixed",
    scenarios=["ex61"],
    budget={"total_steps": 1024, "eval_every": 1024},
    methods={
        "ppo": TINY["methods"]["ppo"],
        "hdpo": {
            "config": "default",
            "set": {
                "batch_size": 16,
                "horizon": 12,
                "warmup": 2,
                "eval_periods": 100,
                "eval_warmup": 10,
                "eval_replications": 2,
                "patience": 0,
            },
            "budget": {"total_steps": 6, "eval_every": 2},
        },
    },
)


@pytest.fixture(scope="module")
def mixed_run(local_ray: None, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The MIXED experiment, run without interruption."""
    out = tmp_path_factory.mktemp("mixed")
    run_experiment(load_spec(MIXED), out)
    return out


def test_hdpo_and_ppo_trials_run_on_tune_and_enter_the_table(mixed_run: Path) -> None:
    table = pd.read_csv(mixed_run / "results.csv")
    assert sorted(table.method) == ["hdpo", "ppo"] and (table.seeds == 2).all()
    for col in ("cost_mean", "cost_ci95", "gap_pct", "gap_ci95_pct"):
        assert np.isfinite(table[col]).all(), col
    trials = pd.read_csv(mixed_run / "trials.csv").set_index("method")
    # each method ran to its own budget, in its own unit, and Tune saw every HDPO evaluation (0, 2, 4, 6)
    assert (trials.loc["hdpo", "steps"] == 6).all() and (trials.loc["ppo", "steps"] == 1024).all()
    for run in trials.loc["hdpo", "run_dir"]:
        assert list(pd.read_csv(Path(run) / "evaluations.csv").steps) == [0, 2, 4, 6]
    reported = [pd.read_csv(p) for p in (mixed_run / "tune" / "seeds").glob("*/progress.csv")]
    hdpo = [r for r in reported if "/hdpo-" in r.run_dir.iloc[0]]
    assert len(hdpo) == 2
    for r in hdpo:  # every evaluation, as it happened, then the trial's end
        assert list(r.steps) == [0, 2, 4, 6, 6] and r["eval/gap_pct"].notna().all()


@pytest.mark.skipif(
    not os.environ.get("MEIO_SLOW_TESTS"),
    reason="a second experiment in a driver process of its own, killed and resumed (minutes on 2 busy cores): "
    "set MEIO_SLOW_TESTS=1",
)
def test_a_killed_driver_resumes_without_training_finished_trials_again(mixed_run: Path, tmp_path: Path) -> None:
    import signal
    import subprocess
    import sys
    import time

    import yaml

    from meio.cli import main

    spec_file = tmp_path / "mixed.yaml"
    spec_file.write_text(yaml.safe_dump(MIXED))
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "meio.cli", "experiment", str(spec_file), "--out", str(out), "--cpus", "2"]
    # a session of its own: the driver's Ray processes can be found (and cleaned up) by its process group
    driver = subprocess.Popen(cmd, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 240
        while not list(out.glob("runs/*/*/final/meta.json")):
            assert driver.poll() is None, "the experiment ended before it could be killed"
            assert time.monotonic() < deadline, "no trial finished in time"
            time.sleep(0.2)
        os.kill(driver.pid, signal.SIGKILL)
        driver.wait()
    finally:
        time.sleep(2)  # Ray's own processes share the driver's fate; whatever is left goes with its group
        try:
            os.killpg(driver.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    runs = sorted(p for p in out.glob("runs/*/*") if p.is_dir())
    finished = {
        r: (r / "final" / "meta.json").stat().st_mtime_ns for r in runs if (r / "final" / "meta.json").is_file()
    }
    evaluations = {r: (r / "evaluations.csv").read_bytes() for r in finished}
    assert finished and not (out / "results.csv").exists()

    assert main(["experiment", str(spec_file), "--out", str(out), "--resume"]) == 0
    for r, stamp in finished.items():  # trials finished before the kill are not trained again
        assert (r / "final" / "meta.json").stat().st_mtime_ns == stamp
        assert (r / "evaluations.csv").read_bytes() == evaluations[r]
    # the same table as the run without the kill: every trial seeded, its threads fixed, HDPO resumed step
    # for step from its checkpoints and PPO (one checkpoint, at its end) started again from step 0
    ref = pd.read_csv(mixed_run / "per_seed.csv").set_index(["method", "seed"]).sort_index()
    got = pd.read_csv(out / "per_seed.csv").set_index(["method", "seed"]).sort_index()
    assert list(got.reference_cost) == list(ref.reference_cost)
    assert list(got.cost) == list(ref.cost) and list(got.gap_pct) == list(ref.gap_pct)
