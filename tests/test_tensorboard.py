"""What a training run shows in TensorBoard, for PPO and HDPO alike: every evaluation's fill rate per
demand node, its gap to the node's fill-rate target and the fill rate of each named segment; an
evaluation of the untrained policy at step 0; the step numbers of ``evaluations.csv``; and one
HParams entry per run (the config and the final metrics), read back with TensorBoard's own readers.

The per-node values are checked against a fresh :func:`meio.envs.metrics.evaluate` of the saved
agent on the evaluation seeds, and the segment's fill rate against the ratio of the segment's filled
to demanded units summed here from the evaluation's samples.
"""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import yaml
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.backend.event_processing.event_file_loader import EventFileLoader
from tensorboard.plugins.hparams import metadata

import meio.agents.train as train_module
import meio.baselines.run as baselines_run
from meio.agents.config import PPOConfig
from meio.agents.hdpo import HDPOConfig, HDPONet, HDPOPolicy, train_hdpo
from meio.agents.policy import PPOPolicy
from meio.agents.train import FINAL_METRICS, train
from meio.envs.metrics import Evaluation, evaluate
from meio.envs.resolve import resolve
from meio.envs.scenario import Scenario

# A warehouse and three retailers: r1 and r2 form segment "gold", each with a fill-rate target; r3
# has neither segment nor target (its own segment, no target gap).
SCENARIO: dict[str, Any] = {
    "name": "tb_segments",
    "unmet_demand": "backorder",
    "horizon": 40,
    "nodes": [
        {"id": "wh", "holding_cost": 0.5, "initial_inventory": 40},
        {
            "id": "r1",
            "holding_cost": 1.0,
            "backorder_cost": 9.0,
            "demand": {"dist": "poisson", "mean": 5},
            "segment": "gold",
            "service_target": 0.95,
            "initial_inventory": 10,
        },
        {
            "id": "r2",
            "holding_cost": 1.0,
            "backorder_cost": 9.0,
            "demand": {"dist": "poisson", "mean": 8},
            "segment": "gold",
            "service_target": 0.9,
            "initial_inventory": 16,
        },
        {
            "id": "r3",
            "holding_cost": 1.0,
            "backorder_cost": 4.0,
            "demand": {"dist": "poisson", "mean": 4},
            "initial_inventory": 8,
        },
    ],
    "lanes": [
        {"from": "external", "to": "wh", "lead_time": 2},
        {"from": "wh", "to": "r1", "lead_time": 1},
        {"from": "wh", "to": "r2", "lead_time": 1},
        {"from": "wh", "to": "r3", "lead_time": 1},
    ],
}
DEMAND_NODES = ("r1", "r2", "r3")
TARGETS = {"r1": 0.95, "r2": 0.9}
#: The run's reference cost, fixed: the gap is then checkable by hand (the search is not under test).
BASELINE = ("fixed", 20.0)
EVAL = dict(eval_periods=60, eval_warmup=5, eval_replications=2, eval_seed=777, checkpoint_every=0)
# rollouts of 4 x 32 = 128 steps: evaluations at 0, 128, 256
PPO_TINY = dict(n_envs=4, n_steps=32, batch_size=64, n_epochs=1, total_steps=256, eval_every=128, net_arch=[8], **EVAL)
HDPO_TINY = dict(iterations=2, batch_size=8, horizon=12, warmup=2, eval_every=1, hidden=[8], **EVAL)
F32 = dict(rel=1e-6, abs=1e-6)  # TensorBoard stores scalars as float32


def _scenario() -> Scenario:
    return Scenario.from_dict(SCENARIO)


def _no_reference_search(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(train_module, "best_baseline", lambda *a, **k: BASELINE)

    class Found:
        name = BASELINE[0]

    class Cost:
        cost_mean = BASELINE[1]

    monkeypatch.setattr(baselines_run, "reference_baseline", lambda *a, **k: (Found(), Cost()))


@pytest.fixture(scope="module")
def ppo_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Any]:
    run = tmp_path_factory.mktemp("tb") / "ppo"
    with pytest.MonkeyPatch.context() as mp:
        _no_reference_search(mp)
        result = train(_scenario(), PPOConfig.from_dict(PPO_TINY), run, seed=3, progress=False)
    return run, result


@pytest.fixture(scope="module")
def hdpo_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Any]:
    run = tmp_path_factory.mktemp("tb") / "hdpo"
    with pytest.MonkeyPatch.context() as mp:
        _no_reference_search(mp)
        result = train_hdpo(_scenario(), HDPOConfig.from_dict(HDPO_TINY), run, seed=4, progress=False)
    return run, result


def _rows(run: Path) -> list[dict[str, str]]:
    with (run / "evaluations.csv").open(newline="") as fh:
        return list(csv.DictReader(fh))


def _scalars(run: Path) -> dict[str, dict[int, float]]:
    """Every scalar of the run's training logs (not its HParams entry): tag -> step -> value."""
    out: dict[str, dict[int, float]] = {}
    for f in sorted((run / "tb").rglob("events.out.tfevents.*")):
        if "hparams" in f.relative_to(run / "tb").parts:
            continue
        acc = EventAccumulator(str(f), size_guidance={"scalars": 0})
        acc.Reload()
        for tag in acc.Tags()["scalars"]:
            for e in acc.Scalars(tag):
                assert e.step not in out.get(tag, {}), f"{tag} logged twice at step {e.step}"
                out.setdefault(tag, {})[e.step] = e.value
    return out


def _hparams_entries(run: Path) -> list[dict[str, Any]]:
    """The session starts of every event file of the run's ``tb/`` (TensorBoard's HParams plugin
    format), each as ``{name: value}``."""
    found = []
    for f in sorted((run / "tb").rglob("events.out.tfevents.*")):
        for event in EventFileLoader(str(f)).Load():
            for v in event.summary.value:
                if v.tag == metadata.SESSION_START_INFO_TAG:
                    info = metadata.parse_session_start_info_plugin_data(v.metadata.plugin_data.content)
                    found.append({k: getattr(x, x.WhichOneof("kind")) for k, x in info.hparams.items()})
    return found


def _final_metrics(run: Path) -> tuple[dict[str, Any], dict[str, tuple[int, float]]]:
    """The HParams entry as the dashboard reads it: the session start's values from the summary
    metadata of ``tb/hparams``, and the metrics' scalars in the same run (step, value)."""
    acc = EventAccumulator(str(run / "tb" / "hparams"), size_guidance={"scalars": 0})
    acc.Reload()
    content = acc.PluginTagToContent(metadata.PLUGIN_NAME)
    assert metadata.SESSION_END_INFO_TAG in content
    info = metadata.parse_session_start_info_plugin_data(content[metadata.SESSION_START_INFO_TAG])
    values = {k: getattr(x, x.WhichOneof("kind")) for k, x in info.hparams.items()}
    metrics = {}
    for tag in acc.Tags()["scalars"]:
        (event,) = acc.Scalars(tag)
        metrics[tag] = (event.step, event.value)
    return values, metrics


def _expected_hparams(run: Path, algo: str) -> dict[str, Any]:
    """The run's ``config.yaml`` as HParams values: booleans, numbers and strings as they are, lists
    and nulls as JSON text; with the algorithm, scenario (and its file, as ``final/`` records it),
    seed and, for HDPO, the trajectory lengths."""
    saved = yaml.safe_load((run / "config.yaml").read_text())
    source = json.loads((run / "final" / "meta.json").read_text())["scenario_source"]
    out: dict[str, Any] = {
        "algo": algo,
        "scenario": saved["scenario"],
        "scenario_source": source,
        "seed": float(saved["seed"]),
    }
    if algo == "hdpo":  # the trajectory lengths the run used (set as integers in this test's config)
        out["trajectory"] = f"{saved['config']['horizon']} periods, {saved['config']['warmup']} warm-up"

    def add(prefix: str, config: dict[str, Any]) -> None:
        for key, value in config.items():
            if isinstance(value, dict):  # nested settings: flattened to a.b
                add(f"{prefix}{key}.", value)
            elif isinstance(value, (bool, str)):
                out[prefix + key] = value
            elif isinstance(value, (int, float)):
                out[prefix + key] = float(value)
            else:
                out[prefix + key] = json.dumps(value)

    add("", saved["config"])
    return out


def _check_per_node(tags: dict[str, dict[int, float]], step: int, ev: Evaluation) -> None:
    for node in DEMAND_NODES:
        assert tags[f"eval/fill_rate/{node}"][step] == pytest.approx(ev.fill_rate[node], **F32)
    for node, target in TARGETS.items():
        assert tags[f"eval/target_gap/{node}"][step] == pytest.approx(ev.fill_rate[node] - target, **F32)
    assert "eval/target_gap/r3" not in tags  # no target, no gap
    # segment gold: its filled over its demanded units (replications' totals), not a mean of the rates
    gold = [DEMAND_NODES.index(n) for n in ("r1", "r2")]
    expected = ev.filled_samples[:, gold].sum() / ev.demand_samples[:, gold].sum()
    assert tags["eval/segment_fill_rate/gold"][step] == pytest.approx(expected, **F32)
    assert not [t for t in tags if t.startswith("eval/segment_fill_rate/") and t != "eval/segment_fill_rate/gold"]


def _evaluate(policy: Any) -> Evaluation:
    return evaluate(
        _scenario(),
        policy,
        periods=EVAL["eval_periods"],
        warmup=EVAL["eval_warmup"],
        replications=EVAL["eval_replications"],
        seed=EVAL["eval_seed"],
    )


def _check_steps_and_values(run: Path, want_steps: list[int]) -> dict[str, dict[int, float]]:
    rows, tags = _rows(run), _scalars(run)
    assert [int(r["steps"]) for r in rows] == want_steps
    for tag, column in (("eval/cost", "cost"), ("eval/fill_rate", "fill_rate"), ("eval/gap_pct", "gap_pct")):
        assert sorted(tags[tag]) == want_steps, tag  # the csv's step numbers, step 0 included
        assert [tags[tag][s] for s in want_steps] == pytest.approx([float(r[column]) for r in rows], **F32)
    for node in DEMAND_NODES:
        assert sorted(tags[f"eval/fill_rate/{node}"]) == want_steps
    for r in rows:  # the gap to the fixed reference, by hand
        assert float(r["gap_pct"]) == pytest.approx(100 * (float(r["cost"]) - BASELINE[1]) / BASELINE[1], rel=1e-12)
    return tags


def _check_hparams(run: Path, algo: str, result: Any) -> None:
    values, metrics = _final_metrics(run)
    assert values == _expected_hparams(run, algo)
    last = _rows(run)[-1]
    assert set(metrics) == set(FINAL_METRICS)
    assert {step for step, _ in metrics.values()} == {result.steps}
    assert metrics["final/eval_cost"][1] == pytest.approx(float(last["cost"]), **F32)
    assert metrics["final/gap_pct"][1] == pytest.approx(float(last["gap_pct"]), **F32)
    assert metrics["final/fill_rate"][1] == pytest.approx(float(last["fill_rate"]), **F32)
    assert metrics["final/best_eval_cost"][1] == pytest.approx(result.best_eval_cost, **F32)
    assert len(_hparams_entries(run)) == 1  # one entry per run: no placeholder at the start


def test_ppo_evaluates_at_step_0_and_logs_the_csvs_steps(ppo_run):
    run, result = ppo_run
    assert result.steps == 256
    _check_steps_and_values(run, [0, 128, 256])


def test_ppo_logs_fill_rate_target_gap_and_segment_fill_rate_per_evaluation(ppo_run):
    run, result = ppo_run
    tags = _scalars(run)
    ev = _evaluate(PPOPolicy.load(run / "final"))
    _check_per_node(tags, result.steps, ev)


def test_ppo_run_has_one_hparams_entry_with_its_config_and_final_metrics(ppo_run):
    run, result = ppo_run
    _check_hparams(run, "ppo", result)
    best = json.loads((run / "best" / "meta.json").read_text())
    assert best["steps"] in (0, 128, 256) and best["eval_cost"] == pytest.approx(result.best_eval_cost, rel=1e-12)


def test_hdpo_evaluates_the_untrained_policy_at_step_0(hdpo_run):
    run, result = hdpo_run
    assert result.steps == 2
    tags = _check_steps_and_values(run, [0, 1, 2])
    # step 0 is the network as initialised from the run's seed, before any gradient step
    cfg = HDPOConfig.from_dict(HDPO_TINY)
    torch.manual_seed(4)
    untrained = HDPOPolicy(HDPONet(resolve(_scenario()), cfg).state_dict(), cfg)
    ev = _evaluate(untrained)
    assert tags["eval/cost"][0] == pytest.approx(ev.cost_mean, **F32)
    _check_per_node(tags, 0, ev)
    _check_per_node(tags, 2, _evaluate(HDPOPolicy.load(run / "final")))


def test_hdpo_run_has_one_hparams_entry_with_its_config_and_final_metrics(hdpo_run):
    run, result = hdpo_run
    _check_hparams(run, "hdpo", result)


def test_a_resumed_hdpo_run_keeps_one_step_0_row_and_one_hparams_entry(hdpo_run, tmp_path, monkeypatch):
    run = tmp_path / "r"
    shutil.copytree(hdpo_run[0], run)
    _no_reference_search(monkeypatch)
    cfg = HDPOConfig.from_dict({**HDPO_TINY, "iterations": 3})
    result = train_hdpo(_scenario(), cfg, run, resume=True, progress=False)
    assert result.steps == 3 and result.steps_this_call == 1
    _check_steps_and_values(run, [0, 1, 2, 3])
    _check_hparams(run, "hdpo", result)
    assert _final_metrics(run)[0]["iterations"] == 3.0


def test_a_ppo_run_restarted_before_its_first_checkpoint_evaluates_step_0_once(ppo_run, tmp_path, monkeypatch):
    # no checkpoint (checkpoint_every 0 and the end's checkpoint removed): training starts again at 0
    run = tmp_path / "r"
    shutil.copytree(ppo_run[0], run)
    shutil.rmtree(run / "checkpoints")
    shutil.rmtree(run / "final")
    _no_reference_search(monkeypatch)
    result = train(_scenario(), None, run, resume=True, progress=False)
    assert result.steps == 256
    rows = _rows(run)
    assert [int(r["steps"]) for r in rows] == [0, 128, 256]
    # the same seed and settings from step 0: the same evaluations as the first time
    assert [r["cost"] for r in rows] == [r["cost"] for r in _rows(ppo_run[0])]
    assert len(_hparams_entries(run)) == 1
    np.testing.assert_array_equal(
        [float(r["fill_rate"]) for r in rows], [float(r["fill_rate"]) for r in _rows(ppo_run[0])]
    )


def _rising_scores(monkeypatch: pytest.MonkeyPatch, module: Any) -> None:
    """Every evaluation scores worse than the one before: the untrained policy stays the best."""
    calls = iter(range(1, 1_000))
    monkeypatch.setattr(module, "selection_cost", lambda result: float(next(calls)))


def test_best_may_be_the_untrained_policy_of_step_0(tmp_path, monkeypatch):
    import meio.agents.hdpo as hdpo_module

    _no_reference_search(monkeypatch)
    _rising_scores(monkeypatch, train_module)
    ppo = tmp_path / "ppo"
    train(_scenario(), PPOConfig.from_dict({**PPO_TINY, "total_steps": 128}), ppo, seed=3, progress=False)
    _rising_scores(monkeypatch, hdpo_module)
    hdpo = tmp_path / "hdpo"
    train_hdpo(_scenario(), HDPOConfig.from_dict(HDPO_TINY), hdpo, seed=4, progress=False)
    for run, load in ((ppo, PPOPolicy.load), (hdpo, HDPOPolicy.load)):
        assert json.loads((run / "best" / "meta.json").read_text())["steps"] == 0
        # best/ is the policy evaluated at step 0: the same cost on the same seeds
        assert _evaluate(load(run / "best")).cost_mean == pytest.approx(float(_rows(run)[0]["cost"]), rel=1e-12)
        assert float(_rows(run)[-1]["cost"]) != float(_rows(run)[0]["cost"])  # training did change the policy
