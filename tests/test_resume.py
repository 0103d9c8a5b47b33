"""Resuming training: to the run's own total, of a finished run, after SIGKILL mid-checkpoint, from a
damaged checkpoint; the learning-rate schedule; bad input refused at the edge with the field named."""

from __future__ import annotations

import contextlib
import io
import json
import math
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import meio.agents.train as train_module
from meio.agents.config import ConfigError, PPOConfig, load_config
from meio.agents.policy import MANIFEST_FILE, PPOPolicy, manifest_problem
from meio.agents.train import train
from meio.cli import main

ROOT = Path(__file__).resolve().parents[1]
# rollouts of n_envs * n_steps = 256 steps; 1,000 is no whole number of them
TINY = dict(
    n_envs=4,
    n_steps=64,
    batch_size=64,
    n_epochs=2,
    total_steps=1000,
    eval_every=512,
    eval_periods=40,
    eval_warmup=5,
    eval_replications=2,
    checkpoint_every=256,
    lr_schedule="linear",
    learning_rate=1e-3,
)


class Interrupted(Exception):
    """Stands in for a run stopped between two checkpoints."""


def _steps(run: Path) -> list[int]:
    return sorted(int(p.name) for p in (run / "checkpoints").iterdir() if p.name.isdigit())


def _evaluated_steps(run: Path) -> list[int]:
    return [int(line.split(",")[0]) for line in (run / "evaluations.csv").read_text().splitlines()[1:]]


def _learning_rates(run: Path) -> list[float]:
    values = []
    for f in sorted((run / "tb").rglob("events.out.tfevents.*")):
        acc = EventAccumulator(str(f), size_guidance={"scalars": 0})
        acc.Reload()
        if "train/learning_rate" in acc.Tags()["scalars"]:
            values += [e.value for e in acc.Scalars("train/learning_rate")]
    return values


def _run_cli(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv)
    return code, out.getvalue(), err.getvalue()


def _resume_args(run: Path, *extra: str, scenario: str = "ex61") -> list[str]:
    return ["train", "--scenario", scenario, "--run-dir", str(run), "--resume", *extra]


@pytest.fixture(scope="module")
def stopped(tmp_path_factory) -> Path:
    """A run (total 1,000 steps) stopped while it wrote its checkpoint at 768 steps."""
    run = tmp_path_factory.mktemp("resume") / "stopped"

    def stop(folder: Path, part: str) -> None:
        if folder.name.startswith(".768.partial"):
            raise Interrupted

    train_module.checkpoint_write_hook = stop
    try:
        with pytest.raises(Interrupted):
            train("ex61", PPOConfig.from_dict(TINY), run, seed=2, progress=False)
    finally:
        train_module.checkpoint_write_hook = None
    assert _steps(run) == [256, 512]
    assert not list((run / "checkpoints").glob(".*"))  # the interrupted write left nothing behind
    return run


@pytest.fixture(scope="module")
def finished(stopped, tmp_path_factory) -> tuple[Path, int, str, str]:
    """The stopped run resumed with ``meio train --resume`` and no ``--total-steps``."""
    run = tmp_path_factory.mktemp("resume") / "finished"
    shutil.copytree(stopped, run)
    return (run, *_run_cli(_resume_args(run)))


def test_resume_without_total_steps_continues_to_the_runs_own_total(finished, stopped):
    run, code, out, err = finished
    assert code == 0, err
    # the run's own total (1,000, rounded up to whole rollouts of 256), not the default config's 3M
    assert "total_steps 1,000 rounds up to 1,024 = 4 rollouts of 256 steps" in out
    assert "continuing" in err and "from step 512" in err
    assert "trained 1024 steps" in out
    assert _steps(run) == [256, 512, 768, 1024]
    assert json.loads((run / "final" / "meta.json").read_text())["steps"] == 1024
    assert _evaluated_steps(run) == [0, 512, 1024]
    # the rows up to the checkpoint (the untrained policy's at step 0 included) are kept as written
    kept = (stopped / "evaluations.csv").read_text().splitlines()
    assert _evaluated_steps(stopped) == [0, 512]
    assert (run / "evaluations.csv").read_text().splitlines()[: len(kept)] == kept
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["config"]["total_steps"] == 1000 and saved["seed"] == 2


def test_resuming_a_finished_run_does_nothing_and_exits_0(finished):
    run = finished[0]
    before = {p: p.stat().st_mtime_ns for p in run.rglob("*")}
    config = (run / "config.yaml").read_bytes()
    code, out, err = _run_cli(_resume_args(run))
    assert code == 0, err
    assert "nothing to do" in err and "nothing was trained" in out
    assert {p: p.stat().st_mtime_ns for p in run.rglob("*")} == before
    assert (run / "config.yaml").read_bytes() == config


def test_the_linear_learning_rate_decays_to_zero_and_never_below(finished):
    run = finished[0]
    rates = _learning_rates(run)
    # updates after 256, 512, 768 and 1,024 of T = 1,024 steps: alpha_0 (1 - t / T), SB3's progress
    # remaining; the first run logged the first two, the resumed run the last two
    expected = [1e-3 * (1 - t / 1024) for t in (256, 512, 768, 1024)]
    assert sorted(rates, reverse=True) == pytest.approx(expected, abs=1e-9)
    assert min(rates) >= 0.0


def test_a_failed_resume_leaves_the_run_untouched(finished, tmp_path):
    run = tmp_path / "r"
    shutil.copytree(finished[0], run)
    config = (run / "config.yaml").read_bytes()
    files = sorted(p.relative_to(run) for p in run.rglob("*"))
    code, _, err = _run_cli(_resume_args(run, "--total-steps", "2048", scenario="serial4"))
    assert code == 2
    # the run keeps a copy of its scenario: another one is refused before anything is built
    assert "--scenario: " in err and "serial4.yaml' ('serial4') differs from the scenario the run " in err
    assert f"{run} was trained on, 'ex61' (its copy {run / 'scenario.yaml'});" in err
    assert (run / "config.yaml").read_bytes() == config
    assert sorted(p.relative_to(run) for p in run.rglob("*")) == files


def test_evaluating_a_model_on_a_scenario_of_another_shape_is_refused(finished):
    code, _, err = _run_cli(
        ["evaluate", "--model", str(finished[0]), "--scenario", "serial4", "--periods", "50", "--replications", "2"]
    )
    assert code == 2
    assert "scenario: 'serial4' gives observations of 21 values and actions of 4" in err
    assert "trained on 'ex61' with observations of 15 and actions of 3" in err


@pytest.mark.parametrize(
    "part, damage, reason",
    [
        ("model.zip", lambda p: p.write_bytes(p.read_bytes()[:1000]), "model.zip has 1000 bytes, the manifest says"),
        ("state.json", lambda p: p.write_text("{not json"), "state.json has 9 bytes, the manifest says"),
        ("vecnormalize.pkl", lambda p: p.write_bytes(b"\0" * p.stat().st_size), "vecnormalize.pkl does not match"),
    ],
)
def test_a_damaged_checkpoint_is_reported_and_the_one_before_used(finished, tmp_path, capsys, part, damage, reason):
    run = tmp_path / "r"
    shutil.copytree(finished[0], run)
    damage(run / "checkpoints" / "1024" / part)
    result = train("ex61", None, run, resume=True, progress=False)
    err = capsys.readouterr().err
    assert f"skipped checkpoint {run / 'checkpoints' / '1024'}: {reason}" in err
    assert "from step 768" in err
    assert result.steps == 1024 and result.steps_this_call == 256
    assert (run / "checkpoints" / "1024.damaged" / part).is_file()
    assert manifest_problem(run / "checkpoints" / "1024") is None
    # the evaluation at 1,024 of the stretch trained again was dropped, then made again
    assert _evaluated_steps(run) == [0, 512, 1024]


def test_a_run_stopped_after_its_last_checkpoint_completes_its_final_evaluation(finished, tmp_path, capsys):
    run = tmp_path / "r"
    shutil.copytree(finished[0], run)
    shutil.rmtree(run / "final")
    result = train("ex61", None, run, resume=True, progress=False)
    assert "completing its final evaluation and final/" in capsys.readouterr().err
    assert result.steps == 1024 and result.steps_this_call == 0
    assert json.loads((run / "final" / "meta.json").read_text())["steps"] == 1024
    assert manifest_problem(run / "final") is None
    assert _evaluated_steps(run) == [0, 512, 1024]  # redone, not repeated
    assert result.baseline_name == "clark_scarf"


def test_a_checkpoint_without_its_manifest_is_still_checked_by_loading_it(finished, tmp_path, capsys):
    run = tmp_path / "r"
    shutil.copytree(finished[0], run)
    folder = run / "checkpoints" / "1024"
    (folder / MANIFEST_FILE).unlink()  # as written before manifests existed
    (folder / "vecnormalize.pkl").write_bytes(b"garbage")
    train("ex61", None, run, resume=True, progress=False)
    assert f"skipped checkpoint {folder}: vecnormalize.pkl is unreadable" in capsys.readouterr().err


def test_sigkill_in_the_middle_of_a_checkpoint_write_loses_at_most_one_interval(tmp_path, capsys):
    run = tmp_path / "killed"
    cfg = {**TINY, "total_steps": 1024, "eval_every": 0}
    code = (
        "import os, signal, sys\n"
        "import meio.agents.train as t\n"
        "from meio.agents.config import PPOConfig\n"
        "def kill(folder, part):\n"
        "    if folder.name.startswith('.768.partial') and part == 'vecnormalize.pkl':\n"
        "        os.kill(os.getpid(), signal.SIGKILL)\n"
        "t.checkpoint_write_hook = kill\n"
        f"t.train('ex61', PPOConfig.from_dict({cfg!r}), {str(run)!r}, seed=4, progress=False)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    partial = list((run / "checkpoints").glob(".768.partial-*"))
    assert len(partial) == 1 and (partial[0] / "vecnormalize.pkl").is_file()
    assert not (partial[0] / MANIFEST_FILE).exists()
    assert _steps(run) == [256, 512]

    # a replacement of best/ cut between its two renames, and a write of final/ cut short
    (run / "best").mkdir()
    (run / "best" / "meta.json").write_text('{"eval_cost": 1.5}')
    (run / "best").rename(run / ".best.old-123")
    (run / ".final.partial-123").mkdir()
    result = train("ex61", None, run, resume=True, progress=False)
    err = capsys.readouterr().err
    assert json.loads((run / "best" / "meta.json").read_text()) == {"eval_cost": 1.5}
    assert not list(run.glob(".*"))
    assert f"skipped {partial[0]}: an incomplete checkpoint write" in err
    assert "from step 512" in err
    assert result.steps == 1024
    lost = 768 - 512  # steps learnt before the kill and learnt again
    assert lost <= cfg["checkpoint_every"]
    assert _steps(run) == [256, 512, 768, 1024]
    assert not list((run / "checkpoints").glob(".*"))
    assert all(manifest_problem(run / "checkpoints" / str(s)) is None for s in _steps(run))


def test_a_run_whose_only_checkpoint_is_damaged_is_refused_and_left_as_it_was(stopped, tmp_path):
    run = tmp_path / "r"
    shutil.copytree(stopped, run)
    shutil.rmtree(run / "checkpoints" / "256")
    (run / "checkpoints" / "512" / "state.json").write_text("{}")
    files = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    with pytest.raises(ValueError, match=r"no checkpoint of .* can be used \(512: state.json has 2 bytes"):
        train("ex61", None, run, resume=True, progress=False)
    assert {p: p.read_bytes() for p in run.rglob("*") if p.is_file()} == files


def test_a_config_given_on_resume_must_agree_with_the_runs(finished):
    changed = PPOConfig.from_dict({**TINY, "gamma": 0.9, "total_steps": 2048})
    with pytest.raises(ConfigError, match=r"differs from the run's .*config.yaml in gamma \(0.99 saved, 0.9 given\)"):
        train("ex61", changed, finished[0], resume=True, progress=False)


@pytest.mark.parametrize(
    "text, message",
    [
        ("scenario: ex61\nseed: 0\nconfig: {gamma: [", "not valid YAML"),
        ("just text", "expected a mapping with scenario, seed and config, got str"),
        ("scenario: ex61\nconfig: {}\n", "seed: missing"),
        ("scenario: ex61\nseed: 0\nconfig: {gamma: .nan}\n", "config.gamma: nan is not a finite number"),
    ],
)
def test_a_corrupt_config_yaml_is_refused_naming_the_file(tmp_path, text, message):
    run = tmp_path / "r"
    run.mkdir()
    (run / "config.yaml").write_text(text)
    code, _, err = _run_cli(_resume_args(run))
    assert code == 2
    assert f"{run / 'config.yaml'}: " in err and message in err
    assert (run / "config.yaml").read_text() == text


def test_a_run_dir_that_is_a_file_is_refused(tmp_path):
    path = tmp_path / "file"
    path.write_text("x")
    for extra in ([], ["--resume"]):
        code, _, err = _run_cli(["train", "--scenario", "ex61", "--run-dir", str(path), "--total-steps", "256", *extra])
        assert code == 2
        assert f"--run-dir: {path} is a file" in err
    code, _, err = _run_cli(["evaluate", "--model", str(path), "--scenario", "ex61"])
    assert code == 2 and f"model: {path} is a file" in err


def test_a_damaged_saved_agent_is_refused_naming_the_file(finished, tmp_path):
    agent = tmp_path / "final"
    shutil.copytree(finished[0] / "final", agent)
    (agent / "model.zip").write_bytes((agent / "model.zip").read_bytes()[:-10])
    with pytest.raises(ValueError, match=r"model: .*final is damaged: model.zip has \d+ bytes"):
        PPOPolicy.load(agent)
    (agent / MANIFEST_FILE).unlink()
    with pytest.raises(ValueError, match=r"model: .*model.zip is not a readable SB3 model"):
        PPOPolicy.load(agent)


@pytest.mark.parametrize(
    "field",
    [
        "clip_range",
        "gamma",
        "learning_rate",
        "ent_coef",
        "log_std_init",
        "initial_stock_spread",
        "gae_lambda",
        "vf_coef",
        "max_grad_norm",
        "target_kl",
    ],
)
@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_non_finite_numbers_are_refused_naming_the_field(field, value):
    with pytest.raises(ConfigError) as info:
        PPOConfig.from_dict({field: value})
    assert str(info.value) == f"{field}: {value!r} is not a finite number"


def test_non_finite_numbers_in_a_config_file_are_refused(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("clip_range: .nan\n")
    with pytest.raises(ConfigError, match="clip_range: nan is not a finite number"):
        load_config(path)


def test_a_resumed_run_draws_new_episodes_from_its_seed_and_step(stopped, tmp_path, monkeypatch):
    run = tmp_path / "copy"
    shutil.copytree(stopped, run)
    made = []

    def recording(*args, **kwargs):
        venv = make_vec_env(*args, **kwargs)
        made.append(venv)
        return venv

    from meio.envs.vec_env import make_vec_env

    monkeypatch.setattr(train_module, "make_vec_env", recording)
    train("ex61", None, run, resume=True, total_steps=None, progress=False)
    sim = made[0].sim
    first = train_module.resume_seed(2, 512)
    # row i of the resumed env is seeded resume_seed + i (SB3's convention), not the run's seed 2 + i,
    # whose streams the run's first episodes already used
    assert [int(r.bit_generator.seed_seq.entropy) for r in sim.rngs] == [first + i for i in range(4)]
    assert first not in (2, train_module.resume_seed(2, 768), train_module.resume_seed(3, 512))
