"""``meio train --resume RUN_DIR`` with nothing else: the run folder holds the scenario
(``scenario.yaml``, a copy), the algorithm, the seed and the config (``config.yaml``), for PPO and
HDPO runs alike; a ``--scenario``, ``--algo``, ``--config`` or ``--seed`` that contradicts the folder
is refused naming the flag and both values, and the folder is left as it was. A resume also tidies
an HParams write that was cut short (``tb/.hparams.partial-*``, ``tb/.hparams.old-*``) before it
trains, not only when it writes its own entry at the end.
"""

from __future__ import annotations

import contextlib
import io
import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

import meio.agents.hdpo as hdpo_module
import meio.agents.train as train_module
import meio.baselines.run as baselines_run
from meio.agents.train import SCENARIO_FILE
from meio.cli import main
from meio.envs.scenario import Scenario, load_scenario

#: Warehouse -> two retailers: a scenario file of the user's, not a shipped one.
SCENARIO: dict[str, Any] = {
    "name": "mine",
    "nodes": [
        {"id": "wh", "holding_cost": 0.5, "initial_inventory": 20},
        {"id": "r1", "holding_cost": 1.0, "backorder_cost": 9.0, "demand": {"dist": "poisson", "mean": 4}},
        {"id": "r2", "holding_cost": 1.0, "backorder_cost": 4.0, "demand": {"dist": "poisson", "mean": 3}},
    ],
    "lanes": [
        {"from": "external", "to": "wh", "lead_time": 2},
        {"from": "wh", "to": "r1", "lead_time": 1},
        {"from": "wh", "to": "r2", "lead_time": 1},
    ],
}
EVAL = dict(eval_periods=40, eval_warmup=5, eval_replications=2)
# rollouts of 4 x 32 = 128 steps: checkpoints and evaluations at 128 and 256
PPO_TINY = dict(
    n_envs=4, n_steps=32, batch_size=64, n_epochs=1, total_steps=256, eval_every=128, checkpoint_every=128,
    net_arch=[8], **EVAL,
)  # fmt: skip
HDPO_TINY = dict(iterations=4, batch_size=8, horizon=12, warmup=2, eval_every=2, checkpoint_every=2, hidden=[8], **EVAL)
#: The reference cost, fixed: the baseline search is not under test and would take most of the time.
BASELINE = ("fixed", 20.0)


def _no_reference_search(mp: pytest.MonkeyPatch) -> None:
    mp.setattr(train_module, "best_baseline", lambda *a, **k: BASELINE)

    class Found:
        name = BASELINE[0]

    class Cost:
        cost_mean = BASELINE[1]

    mp.setattr(baselines_run, "reference_baseline", lambda *a, **k: (Found(), Cost()))


def _cli(argv: list[str]) -> tuple[int, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv)
    return code, err.getvalue()


def _files(run: Path) -> dict[Path, bytes]:
    return {p: p.read_bytes() for p in sorted(run.rglob("*")) if p.is_file()}


def _stopped_run(tmp: Path, algo: str, config: dict[str, Any], last: int) -> tuple[Path, Path]:
    """A run of ``algo`` on a scenario file in ``tmp``, trained to ``last`` (steps or iterations)
    through the command line, then put in the state of one killed after its checkpoint before
    ``last``: the last checkpoint and ``final/`` gone. Returns the run and the scenario file."""
    scenario = tmp / "mine.yaml"
    scenario.write_text(yaml.safe_dump(SCENARIO, sort_keys=False))
    cfg = tmp / f"{algo}.yaml"
    cfg.write_text(yaml.safe_dump(config))
    run = tmp / "run"
    with pytest.MonkeyPatch.context() as mp:
        _no_reference_search(mp)
        argv = ["train", "--algo", algo, "--scenario", str(scenario), "--config", str(cfg), "--run-dir", str(run)]
        assert _cli([*argv, "--seed", "3"])[0] == 0
    shutil.rmtree(run / "checkpoints" / str(last))
    shutil.rmtree(run / "final")
    return run, scenario


@pytest.fixture(scope="module")
def ppo_stopped(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return _stopped_run(tmp_path_factory.mktemp("ppo"), "ppo", PPO_TINY, 256)


@pytest.fixture(scope="module")
def hdpo_stopped(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return _stopped_run(tmp_path_factory.mktemp("hdpo"), "hdpo", HDPO_TINY, 4)


def _interrupted_hparams_write(run: Path) -> bytes:
    """Leave ``run/tb`` as a kill inside :func:`write_hparams` can: the complete entry moved aside to
    ``.hparams.old-PID`` and a half-written ``.hparams.partial-PID`` (here a copy of a whole entry,
    which TensorBoard would read as a second session of the run). Returns the entry's event file."""
    tb = run / "tb"
    (event,) = (tb / "hparams").glob("events.out.tfevents.*")
    entry = event.read_bytes()
    shutil.copytree(tb / "hparams", tb / ".hparams.partial-4242")
    (tb / "hparams").rename(tb / ".hparams.old-4243")
    return entry


def _watch_evaluations(mp: pytest.MonkeyPatch, module: Any, run: Path) -> list[dict[str, Any]]:
    """What ``run/tb`` holds at each evaluation of a resumed run (during training, before the run
    writes its own HParams entry at the end)."""
    seen: list[dict[str, Any]] = []
    scalars: Callable[..., Any] = module.evaluation_scalars

    def watch(*args: Any, **kwargs: Any) -> Any:
        tb = run / "tb"
        seen.append(
            {
                "stale": sorted(p.name for p in tb.glob(".hparams.*")),
                "entry": [p.read_bytes() for p in (tb / "hparams").glob("events.out.tfevents.*")],
            }
        )
        return scalars(*args, **kwargs)

    mp.setattr(module, "evaluation_scalars", watch)
    return seen


@pytest.mark.parametrize("algo", ["ppo", "hdpo"])
def test_resume_needs_only_the_run_folder(algo, ppo_stopped, hdpo_stopped, tmp_path):
    stopped, scenario = ppo_stopped if algo == "ppo" else hdpo_stopped
    total = 256 if algo == "ppo" else 4
    run = tmp_path / "run"
    shutil.copytree(stopped, run)
    # the copy is the scenario trained on: the file it came from may change or go afterwards
    assert load_scenario(run / SCENARIO_FILE) == Scenario.from_dict(SCENARIO)
    moved = tmp_path / "elsewhere.yaml"
    scenario.rename(moved)
    entry = _interrupted_hparams_write(run)
    with pytest.MonkeyPatch.context() as mp:
        seen = _watch_evaluations(mp, train_module if algo == "ppo" else hdpo_module, run)
        try:
            code, err = _cli(["train", "--resume", str(run)])
        finally:
            moved.rename(scenario)
    assert code == 0, err
    meta = json.loads((run / "final" / "meta.json").read_text())
    assert (meta["steps"], meta["seed"], meta["scenario"]) == (total, 3, "mine")
    assert meta["scenario_source"] == str(run / SCENARIO_FILE)
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["config"] == {**saved["config"], **(PPO_TINY if algo == "ppo" else HDPO_TINY)}
    # while it trained, before its own entry at the end: the cut write tidied, the old entry back
    assert seen, "the resumed run evaluated nothing"
    assert all(s["stale"] == [] and s["entry"] == [entry] for s in seen), seen


@pytest.mark.parametrize("algo", ["ppo", "hdpo"])
def test_flags_that_contradict_the_run_folder_are_refused_naming_both_values(algo, ppo_stopped, hdpo_stopped, tmp_path):
    stopped, scenario = ppo_stopped if algo == "ppo" else hdpo_stopped
    other_algo = "hdpo" if algo == "ppo" else "ppo"
    run = tmp_path / "run"
    shutil.copytree(stopped, run)
    edited = tmp_path / "edited.yaml"
    data = yaml.safe_load(scenario.read_text())
    data["nodes"][1]["holding_cost"] = 2.0
    edited.write_text(yaml.safe_dump(data, sort_keys=False))
    changed = tmp_path / "changed.yaml"
    tiny = PPO_TINY if algo == "ppo" else HDPO_TINY
    changed.write_text(yaml.safe_dump({**tiny, "learning_rate": 0.5}))
    default_lr = 3e-4 if algo == "ppo" else 0.01
    before = _files(run)
    cases = [
        (
            ["--scenario", str(edited)],
            f"--scenario: {str(edited)!r} ('mine') differs from the scenario the run {run} was trained on, "
            f"'mine' (its copy {run / SCENARIO_FILE}), in nodes[1].holding_cost",
        ),
        (["--algo", other_algo], f"--algo: {other_algo!r}, but {run} was trained with {algo}"),
        (["--seed", "4"], f"--seed: 4, but {run} was trained with seed 3"),
        (["--config", str(changed)], f"learning_rate ({default_lr!r} saved, 0.5 given)"),
    ]
    for extra, message in cases:
        code, err = _cli(["train", "--resume", str(run), *extra])
        assert code == 2, (extra, err)
        assert message in err, (extra, err)
        assert _files(run) == before, extra
    code, err = _cli(["train", "--resume", str(run), "--config", str(changed)])
    assert "drop --config" in err


def test_the_scenario_file_it_was_trained_on_is_accepted_and_a_new_run_still_needs_one(ppo_stopped, tmp_path):
    stopped, scenario = ppo_stopped
    run = tmp_path / "run"
    shutil.copytree(stopped, run)
    code, err = _cli(["train", "--resume", str(run), "--scenario", str(scenario), "--seed", "3", "--algo", "ppo"])
    assert code == 0, err
    assert json.loads((run / "final" / "meta.json").read_text())["steps"] == 256
    code, err = _cli(["train", "--run-dir", str(tmp_path / "new")])
    assert code == 2
    assert "--scenario: a new run needs a scenario" in err
    assert not (tmp_path / "new").exists()


def test_the_copy_keeps_a_demand_traces_values_when_the_csv_changes(tmp_path):
    source = tmp_path / "src"
    source.mkdir()
    (source / "demand.csv").write_text("units\n3\n4\n5.25\n")
    data = {
        "name": "traced",
        "nodes": [
            {
                "id": "r",
                "holding_cost": 1.0,
                "backorder_cost": 3.0,
                "demand": {"dist": "trace", "file": "demand.csv", "column": "units"},
            }
        ],
        "lanes": [{"from": "external", "to": "r", "lead_time": 1}],
    }
    (source / "traced.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    run = tmp_path / "run"
    run.mkdir()
    train_module.write_run_scenario(run, load_scenario(source / "traced.yaml"))
    # the file it came from, unchanged, is the same scenario (its trace named relative, the copy's in RUN)
    assert train_module.run_scenario(run, str(source / "traced.yaml"), "traced").scenario.name == "traced"
    (source / "demand.csv").write_text("units\n3\n4\n6\n")
    own = train_module.run_scenario(run, None, "traced").scenario
    assert own.nodes[0].demand.trace == (3.0, 4.0, 5.25)
    with pytest.raises(ValueError, match=r"in nodes\[0\]\.demand \(the values of its trace\); a run resumes"):
        train_module.run_scenario(run, str(source / "traced.yaml"), "traced")
