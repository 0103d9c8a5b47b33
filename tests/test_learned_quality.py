"""benchmarks/learned_quality.py: the leaderboard of learned policies, on a tiny budget."""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pandas as pd
import pytest
from scipy import stats

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--steps-scale", "0.005", "--periods", "300", "--replications", "3", "--eval-seed", "7"]


def _script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("learned_quality", ROOT / "benchmarks" / "learned_quality.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["learned_quality"] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[ModuleType, Path, pd.DataFrame]:
    out = tmp_path_factory.mktemp("lq")
    lq = _script()
    table = lq.main(["--scenarios", "ex61,fixed_cost", "--methods", "hdpo", "--out", str(out), *TINY])
    return lq, out, table


def test_table_has_a_row_per_scenario_with_finite_intervals(tiny_run: tuple[ModuleType, Path, pd.DataFrame]) -> None:
    _, out, table = tiny_run
    csv = pd.read_csv(out / "results.csv")
    assert list(csv.scenario) == ["ex61", "fixed_cost"]
    ex61 = csv[csv.scenario == "ex61"].iloc[0]
    assert ex61.classical == "clark_scarf"  # the optimum is the yardstick on a serial chain
    for col in ("classical_ci95", "hdpo_cost", "hdpo_ci95", "hdpo_gap_ci95_pct", "hdpo_train_cpu_s"):
        assert math.isfinite(ex61[col]) and ex61[col] > 0, col
    assert ex61.hdpo_config == "default"  # no configs/hdpo/ex61.yaml ships
    md = (out / "results.md").read_text()
    assert "benchmarks/learned_quality.py" in md and "| ex61 |" in md and "| fixed_cost |" in md


def test_paired_gap_is_the_paired_difference_of_the_replications(
    tiny_run: tuple[ModuleType, Path, pd.DataFrame],
) -> None:
    _, out, table = tiny_run
    ev_dir = out / "evaluations" / "ex61"
    agent = json.loads((ev_dir / "hdpo-seed0.json").read_text())
    ref = json.loads((ev_dir / "classical.json").read_text())
    a, b = np.array(agent["replication_costs"]), np.array(ref["replication_costs"])
    assert a.shape == b.shape == (3,)
    # Independently: the agent re-simulated on the stated seeds gives the stored replication costs.
    from meio.agents.policy import load_agent
    from meio.envs.simulator import Simulator

    sim = Simulator("ex61", n=3)
    sim.reset(seeds=7)
    costs = np.zeros(3)
    policy = load_agent(out / "runs" / "ex61" / "hdpo-seed0")
    for _ in range(300):
        costs += sim.step(policy.act(sim)).costs.sum(axis=1)
    np.testing.assert_allclose(costs / 300, a, rtol=1e-9)
    d = a - b
    half = stats.t.ppf(0.975, 2) * d.std(ddof=1) / math.sqrt(3)
    row = table[table.scenario == "ex61"].iloc[0]
    assert row.hdpo_gap_pct == pytest.approx(100 * d.mean() / b.mean(), rel=1e-9)
    assert row.hdpo_gap_ci95_pct == pytest.approx(100 * half / b.mean(), rel=1e-9)


def test_refused_scenario_appears_with_the_reason(tiny_run: tuple[ModuleType, Path, pd.DataFrame]) -> None:
    _, out, _ = tiny_run
    row = pd.read_csv(out / "results.csv").set_index("scenario").loc["fixed_cost"]
    assert row.hdpo_note.startswith("skipped:")
    assert "lanes[0].fixed_cost" in row.hdpo_note  # the key the twin refuses
    assert not (out / "runs" / "fixed_cost").exists()  # nothing trained


def test_reuse_rebuilds_the_table_without_training(tiny_run: tuple[ModuleType, Path, pd.DataFrame]) -> None:
    lq, out, table = tiny_run
    timing = out / "runs" / "ex61" / "hdpo-seed0" / "timing.json"
    before = timing.stat().st_mtime_ns
    again = lq.main(["--scenarios", "ex61", "--methods", "hdpo", "--out", str(out), "--reuse", *TINY])
    assert timing.stat().st_mtime_ns == before
    assert again.iloc[0].hdpo_gap_pct == table.iloc[0].hdpo_gap_pct


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--methods", "sac"], "--methods: 'sac' is not a learned method"),
        (["--scenarios", "ex62"], "--scenarios: 'ex62' is not a shipped scenario"),
        (["--replications", "1"], "--replications: 1"),
        (["--steps-scale", "0"], "--steps-scale: 0.0 is not a number > 0"),
        (["--seeds", "a"], "--seeds: 'a'"),
        (["--quick", "--steps-scale", "0.1"], "not allowed with argument"),
    ],
)
def test_bad_options_are_refused_clearly(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    lq = _script()
    with pytest.raises(SystemExit):
        lq.parse_args(argv)
    assert message in capsys.readouterr().err


def test_existing_run_needs_reuse(
    tiny_run: tuple[ModuleType, Path, pd.DataFrame], capsys: pytest.CaptureFixture[str]
) -> None:
    lq, out, _ = tiny_run
    with pytest.raises(SystemExit):
        lq.parse_args(["--scenarios", "ex61", "--methods", "hdpo", "--out", str(out)])
    assert "pass --reuse" in capsys.readouterr().err


def test_a_configs_folder_replaces_the_shipped_configs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    lq = _script()
    (tmp_path / "ppo").mkdir()
    (tmp_path / "ppo" / "default.yaml").write_text("crn_group: 8\n")
    (tmp_path / "ppo" / "serial4.yaml").write_text("gamma: 0.95\n")
    assert lq.config_for("ppo", "ex61", tmp_path) == ("default", tmp_path / "ppo" / "default.yaml")
    assert lq.config_for("ppo", "serial4", tmp_path) == ("serial4", tmp_path / "ppo" / "serial4.yaml")
    # without the folder, the shipped one: distribution has its own PPO config there
    name, path = lq.config_for("ppo", "distribution")
    assert (name, path.parent.name) == ("distribution", "ppo") and path.is_file()
    assert lq.parse_args(["--methods", "ppo", "--configs", str(tmp_path)]).configs == tmp_path
    with pytest.raises(SystemExit):
        lq.parse_args(["--methods", "ppo,hdpo", "--configs", str(tmp_path)])
    assert f"--configs: {tmp_path / 'hdpo' / 'default.yaml'} not found" in capsys.readouterr().err
