"""PPO training: TensorBoard tags, checkpoints, resume, saved policies, configs, meio evaluate."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from meio.agents.config import ConfigError, PPOConfig, load_config
from meio.agents.policy import PPOPolicy, find_saved_agent
from meio.agents.train import train
from meio.cli import main
from meio.envs.simulator import Simulator

SMALL = dict(
    n_envs=4,
    n_steps=64,
    batch_size=64,
    n_epochs=2,
    total_steps=1024,
    eval_every=512,
    eval_periods=60,
    eval_warmup=10,
    eval_replications=2,
    checkpoint_every=512,
)


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    run_dir = tmp_path_factory.mktemp("runs") / "ex61"
    result = train("ex61", PPOConfig.from_dict(SMALL), run_dir, seed=3, progress=False)
    assert result.steps >= 1024
    assert result.baseline_name == "clark_scarf"
    return run_dir


def _tags(run_dir: Path) -> dict[str, list]:
    files = sorted((run_dir / "tb").rglob("events.out.tfevents.*"))
    assert files, "no TensorBoard event file"
    scalars: dict[str, list] = {}
    texts: set[str] = set()
    for f in files:
        acc = EventAccumulator(str(f), size_guidance={"scalars": 0, "tensors": 0})
        acc.Reload()
        for tag in acc.Tags()["scalars"]:
            scalars.setdefault(tag, []).extend(acc.Scalars(tag))
        texts.update(acc.Tags()["tensors"])
    scalars["__text__"] = sorted(texts)
    return scalars


def test_training_writes_the_promised_tensorboard_tags(run):
    tags = _tags(run)
    expected = [
        "cost/total",
        "cost/holding",
        "cost/backorder",
        "cost/lost_sales",
        "cost/ordering",
        "cost/transport",
        "service/fill_rate/retailer",
        "service/cycle_service_level/retailer",
        "inventory/on_hand/retailer",
        "inventory/on_hand/dc",
        "inventory/on_hand/plant",
        "eval/cost",
        "eval/baseline_cost",
        "eval/gap_pct",
        "time/fps",
        "train/value_loss",
        "train/approx_kl",
        "train/entropy_loss",
    ]
    for tag in expected:
        assert tag in tags, f"{tag} missing; have {sorted(tags)}"
    assert any("hyperparameters" in t for t in tags["__text__"])
    costs = [e.value for e in tags["cost/total"]]
    assert all(c > 0 for c in costs)
    gaps = tags["eval/gap_pct"]
    base = tags["eval/baseline_cost"][0].value
    ev = tags["eval/cost"][0].value
    assert gaps[0].value == pytest.approx(100 * (ev - base) / base, rel=1e-4)


def test_run_folder_has_config_checkpoints_best_and_final(run):
    saved = json.loads(json.dumps(__import__("yaml").safe_load((run / "config.yaml").read_text())))
    assert saved["scenario"] == "ex61" and saved["seed"] == 3
    assert saved["config"]["n_envs"] == 4
    steps = sorted(int(p.name) for p in (run / "checkpoints").iterdir())
    assert steps[0] >= 512 and steps[-1] >= 1024
    for sub in ("best", "final", f"checkpoints/{steps[0]}"):
        assert (run / sub / "model.zip").is_file()
    lines = (run / "evaluations.csv").read_text().strip().splitlines()
    assert lines[0].startswith("steps,seconds,cost")
    assert len(lines) >= 3


def test_resume_continues_to_the_same_total(tmp_path):
    cfg = PPOConfig.from_dict({**SMALL, "total_steps": 512, "eval_every": 0})
    run_dir = tmp_path / "r"
    first = train("ex61", cfg, run_dir, seed=1, progress=False)  # stands in for a killed run
    assert first.steps == 512
    resumed = train("ex61", cfg.replace(total_steps=1280), run_dir, resume=True, progress=False)
    assert resumed.steps == 1280
    again = train("ex61", cfg.replace(total_steps=1280), run_dir, resume=True, progress=False)
    assert again.steps == 1280  # nothing left to do
    with pytest.raises(FileExistsError, match="not empty"):
        train("ex61", cfg, run_dir, progress=False)


def test_saved_policy_gives_identical_actions_after_reload(run, tmp_path):
    original = PPOPolicy.load(run / "final")
    original.save(tmp_path / "copy", {"scenario": "ex61"})
    copy = PPOPolicy.load(tmp_path / "copy")
    obs = np.random.default_rng(0).normal(size=(7, original.obs_mean.size)).astype(np.float32)
    x, _ = original.model.predict(original.normalize(obs), deterministic=True)
    y, _ = copy.model.predict(copy.normalize(obs), deterministic=True)
    np.testing.assert_array_equal(x, y)
    sim_a, sim_b = Simulator("ex61", n=5), Simulator("ex61", n=5)
    sim_a.reset(seeds=0)
    sim_b.reset(seeds=0)
    for _ in range(10):
        a, b = original.act(sim_a), copy.act(sim_b)
        np.testing.assert_array_equal(a, b)
        sim_a.step(a)
        sim_b.step(b)
    assert find_saved_agent(run) == run / "best"


@pytest.mark.parametrize(
    "policy_kwargs",
    [
        {"log_std_init": -2.0},
        {"use_sde": True, "log_std_init": -2.0},  # state-dependent noise: its mode is the mean too
        {"use_sde": True, "squash_output": True},  # squashed: left to predict
    ],
    ids=["gaussian", "sde", "sde-squashed"],
)
def test_the_direct_forward_pass_gives_the_actions_of_predict(policy_kwargs):
    import torch
    from stable_baselines3 import PPO

    from meio.agents.policy import deterministic_actions
    from meio.envs.vec_env import make_vec_env

    venv = make_vec_env("distribution", n_envs=2, seed=0)
    model = PPO(
        "MlpPolicy",
        venv,
        n_steps=8,
        batch_size=16,
        seed=0,
        device="cpu",
        use_sde="use_sde" in policy_kwargs,
        policy_kwargs={k: v for k, v in policy_kwargs.items() if k != "use_sde"},
    )
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():  # large weights: many mean actions fall outside [-1, 1] and are clipped
        for w in model.policy.parameters():
            w.add_(torch.randn(w.shape, generator=gen))
    obs = np.random.default_rng(2).normal(0, 3, (33, venv.observation_space.shape[0])).astype(np.float32)
    expected, _ = model.predict(obs, deterministic=True)
    got = deterministic_actions(model, obs)
    assert got.shape == expected.shape == (33, venv.action_space.shape[0]) and got.dtype == expected.dtype
    np.testing.assert_array_equal(got, expected)
    assert 0.05 < np.mean(np.abs(expected) == 1.0) < 0.95  # both clipped and unclipped actions compared
    model.policy.set_training_mode(True)  # as SB3's train() leaves it; the result is the same
    np.testing.assert_array_equal(deterministic_actions(model, obs), expected)


def test_policies_run_torch_on_one_thread_and_give_the_callers_count_back():
    import torch

    from meio.agents.policy import one_torch_thread

    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        with one_torch_thread():
            assert torch.get_num_threads() == 1
        assert torch.get_num_threads() == 2
        with pytest.raises(RuntimeError, match="inside"), one_torch_thread():
            raise RuntimeError("inside")
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_a_clockless_agent_keeps_its_observation_layout_through_save_and_reload(tmp_path):
    cfg = PPOConfig.from_dict(
        {**SMALL, "total_steps": 256, "eval_every": 0, "checkpoint_every": 0, "observe_time": False}
    )
    train("ex61", cfg, tmp_path / "r", seed=0, progress=False)
    agent = PPOPolicy.load(tmp_path / "r" / "final")
    assert agent.observe_time is False
    assert agent.model.observation_space.shape == (agent.obs_mean.size,)
    sim = Simulator("ex61", n=3)
    sim.reset(seeds=0)
    obs_map, _, _ = agent._for(sim)
    assert "periods_left" not in obs_map.labels and obs_map.size == agent.obs_mean.size
    sim.step(agent.act(sim))  # the network accepts the clockless rows
    assert json.loads((tmp_path / "r" / "final" / "meta.json").read_text())["observe_time"] is False


def test_meio_evaluate_prints_the_simulate_report(run, capsys):
    code = main(
        ["evaluate", "--model", str(run), "--scenario", "ex61", "--periods", "200", "--replications", "2", "--json"]
    )
    out = json.loads(capsys.readouterr().out)
    assert code == 0
    assert set(out["cost_per_period"]) == {"mean", "ci95", "ci_method"}
    assert set(out["cost_split"]) == {"holding", "backorder", "lost_sales", "ordering", "transport", "pipeline"}
    assert "retailer" in out["fill_rate"]
    assert out["policy"].startswith("ppo")


@pytest.mark.parametrize(
    "data, message",
    [
        ({"n_envs": 0}, "n_envs: 0 is not an integer >= 1"),
        ({"learning_rat": 0.1}, "learning_rat: unknown key (did you mean 'learning_rate'?)"),
        ({"gamma": 1.5}, "gamma: 1.5 is out of range"),
        ({"action_mode": "orders"}, "action_mode: 'orders' is not one of order_up_to, order_quantity"),
        ({"net_arch": [64, 0]}, "net_arch: [64, 0] is not a non-empty list of layer sizes"),
        ({"n_envs": 2, "n_steps": 8, "batch_size": 64}, "batch_size: 64 exceeds the rollout size"),
        ({"observe_time": "no"}, "observe_time: 'no' is not true or false"),
        ({"initial_stock_spread": -1}, "initial_stock_spread: -1 is out of range; it must be >= 0"),
    ],
)
def test_malformed_configs_are_refused_naming_the_field(data, message):
    with pytest.raises(ConfigError) as info:
        PPOConfig.from_dict(data)
    assert message in str(info.value)


def test_config_files_load_by_path_and_unknown_names_are_refused(tmp_path, capsys):
    path = tmp_path / "c.yaml"
    path.write_text("n_envs: 8\nnet_arch: [32, 32]\n")
    cfg = load_config(path)
    assert cfg.n_envs == 8 and cfg.net_arch == (32, 32)
    with pytest.raises(ConfigError, match="neither a file nor a shipped config"):
        load_config("no_such_config")
    code = main(
        ["train", "--scenario", "ex61", "--config", str(tmp_path / "missing.yaml"), "--run-dir", str(tmp_path / "x")]
    )
    assert code == 2
    assert "neither a file nor a shipped config" in capsys.readouterr().err


def test_a_config_key_given_twice_is_refused_with_both_lines(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("learning_rate: 0.001\ngamma: 0.9\nlearning_rate: 0.002\n")
    with pytest.raises(ConfigError, match=r"learning_rate: the key is given twice .*lines 1 and 3"):
        load_config(path)
