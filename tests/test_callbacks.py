"""Training's callbacks on SB3's own pieces (``EveryNTimesteps``, ``CheckpointCallback``,
``VecNormalize.save/.load``), the learning curve read from ``evaluations.csv``, and the simulator
layer importing neither stable-baselines3 nor PyTorch until a ``VecEnv`` is asked for
(docs/agents.md, "What a run does" and "Which parts are SB3's").
"""

from __future__ import annotations

import csv
import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from stable_baselines3 import PPO
from stable_baselines3.common.callbacks import BaseCallback, CallbackList, CheckpointCallback, EveryNTimesteps
from stable_baselines3.common.vec_env import VecNormalize

import meio.agents.train as train_module
from meio.agents.config import PPOConfig
from meio.agents.policy import PPOPolicy, manifest_problem
from meio.agents.train import EvaluationCallback, RunCheckpointCallback, train
from meio.envs.scenario import load_scenario
from meio.envs.vec_env import make_vec_env
from meio.plots import learning_curve, plot_learning_curves

ROOT = Path(__file__).resolve().parents[1]
# rollouts of R = n_envs * n_steps = 256 steps; none of total, eval_every, checkpoint_every is a whole number of them
TINY = dict(
    n_envs=4,
    n_steps=64,
    batch_size=64,
    n_epochs=2,
    total_steps=1100,
    eval_every=300,
    checkpoint_every=200,
    eval_periods=40,
    eval_warmup=5,
    eval_replications=2,
    net_arch=[16, 16],
    normalize_reward=True,
)


class Recorder(BaseCallback):
    """Notes the step count and PPO's update count each time it is called."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[int, int]] = []

    def _on_step(self) -> bool:
        self.calls.append((self.num_timesteps, self.model._n_updates))
        return True


def _stats(vn: VecNormalize) -> dict[str, Any]:
    return {
        "obs_mean": vn.obs_rms.mean.copy(),
        "obs_var": vn.obs_rms.var.copy(),
        "obs_count": vn.obs_rms.count,
        "ret_mean": vn.ret_rms.mean.copy(),
        "ret_var": vn.ret_rms.var.copy(),
        "ret_count": vn.ret_rms.count,
        "clip_obs": vn.clip_obs,
        "clip_reward": vn.clip_reward,
        "gamma": vn.gamma,
        "epsilon": vn.epsilon,
        "norm_obs": vn.norm_obs,
        "norm_reward": vn.norm_reward,
    }


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> dict[str, Any]:
    """A short ``train`` run that notes, as it goes, when the evaluations and checkpoints fired (with
    PPO's update count then), the live ``VecNormalize`` statistics at each checkpoint, and when SB3's
    plain ``EveryNTimesteps`` (checked after every env step) fires for the same intervals."""
    run = tmp_path_factory.mktemp("callbacks") / "run"
    seen: dict[str, Any] = {"evaluations": [], "checkpoints": [], "live": {}, "plain": {}}
    evaluate_step, checkpoint_step, make_callbacks = (
        EvaluationCallback._on_step,
        RunCheckpointCallback._on_step,
        train_module.run_callbacks,
    )

    def evaluation(self: EvaluationCallback) -> bool:
        seen["evaluations"].append((self.num_timesteps, self.model._n_updates))
        return evaluate_step(self)

    def checkpoint(self: RunCheckpointCallback) -> bool:
        seen["checkpoints"].append((self.num_timesteps, self.model._n_updates))
        seen["live"][self.num_timesteps] = _stats(self.model.get_vec_normalize_env())
        return checkpoint_step(self)

    def callbacks(
        evaluator: EvaluationCallback, checkpointer: RunCheckpointCallback, eval_every: int, checkpoint_every: int
    ) -> CallbackList:
        seen["plain"] = {"eval": Recorder(), "checkpoint": Recorder()}
        ours = make_callbacks(evaluator, checkpointer, eval_every, checkpoint_every)
        return CallbackList(
            [
                *ours.callbacks,
                EveryNTimesteps(eval_every, seen["plain"]["eval"]),
                EveryNTimesteps(checkpoint_every, seen["plain"]["checkpoint"]),
            ]
        )

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(EvaluationCallback, "_on_step", evaluation)
        mp.setattr(RunCheckpointCallback, "_on_step", checkpoint)
        mp.setattr(train_module, "run_callbacks", callbacks)
        result = train("ex61", PPOConfig.from_dict(TINY), run, seed=5, progress=False)
    return {"run": run, "result": result, **seen}


def _rounded(steps: int, rollout: int) -> int:
    return math.ceil(steps / rollout) * rollout


def _csv_rows(run: Path) -> list[dict[str, str]]:
    with (run / "evaluations.csv").open(newline="") as fh:
        return list(csv.DictReader(fh))


def test_evaluations_and_checkpoints_fall_on_the_configs_intervals_in_whole_rollouts(trained):
    rollout = TINY["n_envs"] * TINY["n_steps"]
    total = _rounded(TINY["total_steps"], rollout)
    every_eval, every_checkpoint = _rounded(TINY["eval_every"], rollout), _rounded(TINY["checkpoint_every"], rollout)
    assert (total, every_eval, every_checkpoint) == (1280, 512, 256)
    # each interval's multiples up to the total, and the total itself (the end of the run)
    want_evals = sorted({*range(every_eval, total + 1, every_eval), total})
    want_checkpoints = sorted({*range(every_checkpoint, total + 1, every_checkpoint), total})
    run = trained["run"]
    # the untrained policy is evaluated at step 0 as well (from _on_training_start, not _on_step)
    assert [int(r["steps"]) for r in _csv_rows(run)] == [0, *want_evals]
    assert sorted(int(p.name) for p in (run / "checkpoints").iterdir()) == want_checkpoints
    assert [s for s, _ in trained["evaluations"]] == want_evals
    assert [s for s, _ in trained["checkpoints"]] == want_checkpoints
    assert trained["result"].steps == total


def test_the_schedule_is_sb3s_every_n_timesteps_seen_after_the_update(trained):
    """SB3's plain ``EveryNTimesteps`` fires at the same step counts, but on the rollout's last env step,
    before PPO learns from it; ours fires at the next rollout's start, after that update: PPO's update
    count is ``n_epochs`` per rollout learnt (SB3's ``PPO._n_updates``)."""
    rollout, epochs = TINY["n_envs"] * TINY["n_steps"], TINY["n_epochs"]
    total = trained["result"].steps
    for ours, plain in (
        (trained["evaluations"], trained["plain"]["eval"].calls),
        (trained["checkpoints"], trained["plain"]["checkpoint"].calls),
    ):
        # during learn; the event at the total comes after learn (no rollout starts after the last one)
        assert [s for s, _ in plain if s < total] == [s for s, _ in ours if s < total] != []
        for steps, updates in plain:
            assert updates == (steps // rollout - 1) * epochs
        for steps, updates in ours:
            assert updates == steps // rollout * epochs
        assert ours[-1][0] == total


def test_a_checkpoints_vecnormalize_round_trips_through_sb3s_load(trained):
    run = trained["run"]
    for steps, live in trained["live"].items():
        folder = run / "checkpoints" / str(steps)
        assert manifest_problem(folder) is None  # written whole, manifest last
        venv = make_vec_env("ex61", n_envs=TINY["n_envs"], seed=0)
        loaded = VecNormalize.load(str(folder / "vecnormalize.pkl"), venv)
        got = _stats(loaded)
        assert got.keys() == live.keys()
        for key, value in live.items():
            np.testing.assert_array_equal(got[key], value, err_msg=f"checkpoint {steps}: {key}")
        assert loaded.obs_rms.count > 0 and loaded.norm_reward
        # the saved agent's JSON normaliser (what others load) normalises as SB3's pickle does
        agent = PPOPolicy.load(folder)
        loaded.training = False
        obs = np.random.default_rng(steps).normal(5.0, 3.0, size=(6, live["obs_mean"].size)).astype(np.float32)
        np.testing.assert_allclose(agent.normalize(obs), loaded.normalize_obs(obs), rtol=1e-6, atol=1e-6)
    assert sorted(trained["live"]) == sorted(int(p.name) for p in (run / "checkpoints").iterdir())


def test_an_sb3_checkpoint_callback_that_writes_elsewhere_is_refused_and_leaves_no_folder(tmp_path, monkeypatch):
    cfg = PPOConfig.from_dict(TINY)
    sc = load_scenario("ex61")
    env = VecNormalize(make_vec_env(sc, n_envs=2, seed=0))
    model = PPO("MlpPolicy", env, n_steps=8, batch_size=16, policy_kwargs={"net_arch": [8]}, device="cpu", seed=0)
    evaluator = EvaluationCallback(tmp_path, cfg, sc, {"scenario": sc.name}, (None, None))
    checkpointer = RunCheckpointCallback(tmp_path, evaluator)
    for callback in (evaluator, checkpointer):
        callback.init_callback(model)
    monkeypatch.setattr(CheckpointCallback, "_on_step", lambda self: True)
    model.num_timesteps = 16
    with pytest.raises(
        RuntimeError, match=r"checkpoint: SB3's CheckpointCallback wrote no model.zip into .*\.16\.partial"
    ):
        checkpointer.on_step()
    assert list((tmp_path / "checkpoints").iterdir()) == []


def test_the_learning_curve_is_the_rows_of_evaluations_csv(trained, tmp_path):
    run = trained["run"]
    rows = _csv_rows(run)
    curve = learning_curve(run)
    assert curve.steps.tolist() == [int(r["steps"]) for r in rows]
    assert curve.cost.tolist() == [float(r["cost"]) for r in rows]
    assert curve.ci95.tolist() == [float(r["cost_ci95"]) for r in rows]
    assert curve.baseline_cost == float(rows[-1]["baseline_cost"]) == trained["result"].baseline_cost
    # no TensorBoard needed: the same curve from a folder holding the csv alone
    (tmp_path / "copy").mkdir()
    (tmp_path / "copy" / "evaluations.csv").write_text((run / "evaluations.csv").read_text())
    copy = learning_curve(tmp_path / "copy")
    assert copy.steps.tolist() == curve.steps.tolist() and copy.cost.tolist() == curve.cost.tolist()


def test_the_learning_curve_plot_draws_the_csv(trained, tmp_path, monkeypatch):
    import matplotlib.pyplot as plt

    closed = []
    real_close = plt.close
    monkeypatch.setattr(plt, "close", lambda fig=None: (closed.append(fig), real_close(fig)))
    assert plot_learning_curves({"a": trained["run"]}, tmp_path / "lc.png", "t")
    assert (tmp_path / "lc.png").stat().st_size > 0
    rows = _csv_rows(trained["run"])
    curve_line, base_line = closed[-1].axes[0].lines
    np.testing.assert_array_equal(curve_line.get_xdata(), [int(r["steps"]) for r in rows])
    np.testing.assert_array_equal(curve_line.get_ydata(), [float(r["cost"]) for r in rows])
    np.testing.assert_array_equal(base_line.get_ydata(), [float(rows[-1]["baseline_cost"])] * 2)
    band = closed[-1].axes[0].collections[0].get_paths()[0].vertices  # the 95% CI band
    low = np.array([float(r["cost"]) - float(r["cost_ci95"]) for r in rows])
    assert np.isclose(band[:, 1].min(), low.min())
    assert not plot_learning_curves({"a": tmp_path / "empty"}, tmp_path / "none.png", "t")
    assert not (tmp_path / "none.png").exists()


@pytest.mark.parametrize(
    "text, message",
    [
        ("steps,cost\n512,1.0\n", r"no column cost_ci95, baseline_cost"),
        (
            "steps,seconds,cost,cost_ci95,fill_rate,baseline,baseline_cost,gap_pct\n512,1,2.5,0.1,0.9,cs,2.0,25\n"
            "1024,2,abc,0.1,0.9,cs,2.0,25\n",
            r"line 3: cost: 'abc' is not a number",
        ),
        (
            "steps,seconds,cost,cost_ci95,fill_rate,baseline,baseline_cost,gap_pct\n512,1,nan,0.1,0.9,,,\n",
            r"line 2: cost: 'nan' is not a finite number",
        ),
        ("steps,cost,cost_ci95,baseline_cost\n512.5,1.0,0.1,\n", r"line 2: steps: '512.5' is not a step count"),
    ],
)
def test_a_malformed_evaluations_csv_is_refused_naming_file_line_and_column(tmp_path, text, message):
    (tmp_path / "evaluations.csv").write_text(text)
    with pytest.raises(ValueError, match=rf"evaluations.csv: {message}"):
        learning_curve(tmp_path)


def test_a_run_without_a_baseline_has_a_curve_without_one(tmp_path):
    (tmp_path / "evaluations.csv").write_text(
        "steps,seconds,cost,cost_ci95,fill_rate,baseline,baseline_cost,gap_pct\n"
        "1024,2,3.5,0.2,0.9,,,\n512,1,4.0,0.3,0.8,,,\n"
    )
    curve = learning_curve(tmp_path)
    assert curve.baseline_cost is None
    assert curve.steps.tolist() == [512, 1024] and curve.cost.tolist() == [4.0, 3.5]  # in step order


def _fresh(code: str) -> dict[str, Any]:
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


HEAVY = "sorted(m for m in ('torch', 'stable_baselines3') if m in sys.modules)"


def test_the_simulator_layer_loads_without_sb3_or_torch_until_a_vec_env_is_asked_for():
    got = _fresh(
        "import json, sys\n"
        "import meio.envs\n"
        "sc = meio.envs.load_scenario('ex61')\n"
        "sim = meio.envs.Simulator(sc, n=2)\n"
        f"before = {HEAVY}\n"
        "venv = meio.envs.make_vec_env('ex61', n_envs=3, seed=0)\n"
        "obs = venv.reset()\n"
        "from meio.envs import MultiEchelonVecEnv\n"
        "from stable_baselines3.common.vec_env import VecEnv\n"
        f"print(json.dumps({{'before': before, 'after': {HEAVY}, 'shape': list(obs.shape),\n"
        "                   'vec_env': isinstance(venv, MultiEchelonVecEnv) and isinstance(venv, VecEnv),\n"
        "                   'listed': 'make_vec_env' in dir(meio.envs)}))\n"
    )
    assert got["before"] == []
    assert got["after"] == ["stable_baselines3", "torch"]
    assert got["vec_env"] and got["listed"] and got["shape"][0] == 3


def test_meio_validate_imports_neither_sb3_nor_torch():
    got = _fresh(
        "import contextlib, io, json, sys\n"
        "from meio.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()) as out:\n"
        "    code = main(['validate', 'ex61'])\n"
        f"print(json.dumps({{'code': code, 'valid': 'valid' in out.getvalue(), 'heavy': {HEAVY}}}))\n"
    )
    assert got == {"code": 0, "valid": True, "heavy": []}


def test_an_unknown_name_of_the_simulator_layer_is_an_attribute_error():
    import meio.envs

    with pytest.raises(AttributeError, match="module 'meio.envs' has no attribute 'make_vecenv'"):
        meio.envs.make_vecenv  # noqa: B018
    from meio.envs import MultiEchelonVecEnv
    from meio.envs import make_vec_env as lazy_make_vec_env

    assert lazy_make_vec_env is make_vec_env and MultiEchelonVecEnv.__module__ == "meio.envs.vec_env"
