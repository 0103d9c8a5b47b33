"""Train a PPO agent on a scenario: config, TensorBoard, evaluation against baselines, checkpoints.

Reads top to bottom (after cleanrl's single-file style, with SB3 holding the loop):

1. resolve the config and the run folder (with ``resume``: read and check the run's own
   ``config.yaml`` and its newest sound checkpoint before writing anything);
2. seed everything in one place: the batched env's rows get ``seed, seed+1, ...`` (SB3's
   convention), PyTorch and SB3 get ``seed``;
3. build the batched ``VecEnv`` with ``VecNormalize`` (observation statistics, optional reward
   scaling) and PPO;
4. before training, simulate the best applicable baseline on the evaluation seeds: the target
   ``eval/baseline_cost`` of the run;
5. ``learn`` with callbacks that log costs, service and stock to TensorBoard, evaluate on fixed
   seeds (``eval/cost``, ``eval/gap_pct``), keep the best model and write checkpoints (SB3's
   ``EveryNTimesteps`` rule and ``CheckpointCallback``, see :class:`BetweenRollouts` and
   :class:`RunCheckpointCallback`); with ``resume``, continue from the newest sound checkpoint
   (SB3's ``PPO.load`` and ``VecNormalize.load``) to the run's total.

PPO learns in whole rollouts of ``R = n_steps * num_envs`` steps, so the total, the evaluation and
the checkpoint intervals round up to multiples of ``R`` (said once at the start). Evaluations and
checkpoints happen between rollouts, after the update, so a checkpoint at step ``s`` is exactly the
state of training after ``s`` steps, and resuming from it repeats no update and skips none.

Every saved folder (checkpoints, ``best/``, ``final/``) is written whole or not at all: into a
``.partial`` folder, flushed, a ``manifest.json`` of sizes and SHA-256 written last, then renamed
(:func:`meio.agents.policy.folder_written_whole`). A run killed at any moment (SIGKILL included) resumes
from its newest sound checkpoint and loses at most one checkpoint interval; a damaged checkpoint is
reported, set aside as ``checkpoints/STEP.damaged``, and the one before it used.

Run folder layout: ``config.yaml``, ``scenario.yaml`` (the scenario trained on, which ``--resume``
reads), ``tb/`` (TensorBoard), ``checkpoints/STEP/``, ``best/``,
``final/`` (each a saved agent: ``model.zip``, ``obs_normalizer.json``, ``meta.json``,
``manifest.json``), ``vecnormalize.pkl`` and ``state.json`` inside each checkpoint for resuming, and
``evaluations.csv``.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import shutil
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from stable_baselines3 import PPO
from stable_baselines3.common.callbacks import BaseCallback, CallbackList, CheckpointCallback, EveryNTimesteps
from stable_baselines3.common.utils import configure_logger
from stable_baselines3.common.vec_env import VecNormalize

from meio.agents.config import ConfigError, PPOConfig
from meio.agents.policy import (
    META_FILE,
    MODEL_FILE,
    NORMALIZER_FILE,
    STATE_FILE,
    VECNORM_FILE,
    PPOPolicy,
    check_model_fits,
    checkpoint_steps,
    folder_written_whole,
    load_model,
    manifest_problem,
    read_json,
    set_aside_damaged,
)
from meio.envs.decentralised import DecentralisedVecEnv
from meio.envs.dynamics import O_DEMAND, O_FILLED, O_SHORT
from meio.envs.metrics import SHORT_TOL, Evaluation, evaluate, fill_rate
from meio.envs.resolve import ScenarioLike, resolve
from meio.envs.scenario import Scenario, ScenarioError, load_scenario, read_yaml
from meio.envs.simulator import Simulator
from meio.envs.spaces import ResidualBase
from meio.envs.topology import COST_NAMES, Topology
from meio.envs.vec_env import MultiEchelonVecEnv, make_vec_env

#: Config fields a resumed run may change: they change speed or bookkeeping, never what is learnt.
RESUMABLE_CHANGES = ("total_steps", "threads", "torch_threads", "description")

#: Called after each part of a checkpoint is written, with the ``.partial`` folder and the part's
#: file name (the manifest and the rename follow the last part). ``None`` in normal use; the
#: tests set it to kill the process in the middle of a checkpoint write.
checkpoint_write_hook: Callable[[Path, str], None] | None = None


@dataclass(frozen=True)
class TrainResult:
    """Where the run is and how it ended."""

    run_dir: Path
    steps: int
    best_eval_cost: float | None
    baseline_name: str | None
    baseline_cost: float | None
    seconds: float
    #: Environment steps learnt by this call (0: a resumed run that had nothing left to do).
    steps_this_call: int = 0


class LinearDecay:
    """Learning rate ``alpha(p) = alpha_0 max(p, 0)`` of SB3's progress remaining ``p``
    (``1 - t / T``: 1 at the start, 0 at the total ``T``). SB3 updates after a rollout ends, so
    ``t`` may pass ``T`` (a total that is no whole number of rollouts, a checkpoint of an older
    version taken mid-rollout); the clamp keeps the rate at 0 there instead of negative. A class,
    not a closure, so the model's zip pickles it by reference."""

    def __init__(self, start: float) -> None:
        self.start = float(start)

    def __call__(self, progress_remaining: float) -> float:
        return self.start * max(float(progress_remaining), 0.0)


def _note(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _round_up(steps: int, rollout: int) -> int:
    return -(-steps // rollout) * rollout


def _base_env(env: Any) -> MultiEchelonVecEnv:
    while not isinstance(env, MultiEchelonVecEnv):
        env = env.inner if isinstance(env, DecentralisedVecEnv) else env.venv
    return env


def best_baseline(scenario: ScenarioLike, cfg: PPOConfig, progress: bool = False) -> tuple[str | None, float | None]:
    """The run's reference (:func:`meio.baselines.run.reference_baseline`: Clark-Scarf where it applies,
    else the cheapest stable local or simulation-optimised policy, sourcing families included): its
    name and its cost on the evaluation seeds, or ``(None, None)`` where there is none."""
    from meio.baselines.run import reference_baseline

    found = reference_baseline(
        scenario,
        periods=cfg.eval_periods,
        warmup=cfg.eval_warmup,
        replications=cfg.eval_replications,
        seed=cfg.eval_seed,
        progress=progress,
    )
    if found is None:
        return None, None
    b, ev = found
    return b.name, ev.cost_mean


def residual_base(scenario: ScenarioLike, cfg: PPOConfig) -> ResidualBase | None:
    """``action_mode: base_stock_residual``: the base-stock policy the actions are a residual on; ``None``
    in the other modes. It is the run's reference (:func:`meio.baselines.run.reference_baseline`:
    Clark-Scarf on a serial chain) when that is a base-stock policy, else the cheapest stable one of
    the local and simulation-optimised installation and echelon base-stock policies, all evaluated on
    the evaluation seeds, so a resumed run computes the same levels again. The levels are saved in
    the agent's ``meta.json``."""
    if cfg.action_mode != "base_stock_residual":
        return None
    from meio.baselines.run import choose_reference, reference_baseline, run_baselines

    settings: dict[str, Any] = dict(
        periods=cfg.eval_periods, warmup=cfg.eval_warmup, replications=cfg.eval_replications, seed=cfg.eval_seed
    )
    found = reference_baseline(scenario, **settings)
    if found is None or found[0].kind not in ("installation", "echelon") or found[0].extra.get("reorder_points"):
        # an (s, S) or dual-sourcing reference: the best plain base-stock policy instead
        report = run_baselines(scenario, include=("local", "optimised_installation", "optimised_echelon"), **settings)
        results = {b.name: (b, ev) for b, ev in report.results}
        name = choose_reference({n: ev for n, (_, ev) in results.items()})
        if name is None:
            raise ConfigError(
                "action_mode: base_stock_residual needs a stable base-stock policy to be a residual on; this "
                "scenario has none (use order_up_to)"
            )
        found = results[name]
    b = found[0]
    return ResidualBase(kind=b.kind, levels=dict(b.levels), residual_range=cfg.residual_range, name=b.name)


class MetricsCallback(BaseCallback):
    """Costs, service and stock of the training rollouts, logged at the end of each rollout.

    ``cost/total`` and ``cost/<part>`` (mean per period and env), ``service/fill_rate/<node>``,
    ``service/cycle_service_level/<node>``, ``inventory/on_hand/<node>``.
    """

    def _on_training_start(self) -> None:
        env = _base_env(self.training_env)
        self.env = env
        self.demand_names = env.demand_node_names
        self.node_names = env.topology.node_names
        self._reset()

    def _reset(self) -> None:
        self.steps = 0
        self.costs = np.zeros(len(COST_NAMES))
        self.demand = np.zeros(len(self.demand_names))
        self.filled = np.zeros(len(self.demand_names))
        self.stockouts = np.zeros(len(self.demand_names))
        self.on_hand = np.zeros(len(self.node_names))

    def _on_step(self) -> bool:
        env = self.env
        n = env.num_envs
        self.steps += n
        self.costs += env.last_costs.sum(axis=0)
        out = env.last_node_out
        self.demand += out[:, :, O_DEMAND].sum(axis=0)
        self.filled += out[:, :, O_FILLED].sum(axis=0)
        self.stockouts += (out[:, :, O_SHORT] > SHORT_TOL).sum(axis=0)
        self.on_hand += env.sim.on_hand.sum(axis=0)
        return True

    def _on_rollout_end(self) -> None:
        if not self.steps:
            return
        per = self.costs / self.steps
        self.logger.record("cost/total", float(per.sum()))
        for name, value in zip(COST_NAMES, per):
            self.logger.record(f"cost/{name}", float(value))
        for d, node in enumerate(self.demand_names):
            self.logger.record(f"service/fill_rate/{node}", fill_rate(self.filled[d], self.demand[d]))
            self.logger.record(f"service/cycle_service_level/{node}", float(1 - self.stockouts[d] / self.steps))
        for j, node in enumerate(self.node_names):
            self.logger.record(f"inventory/on_hand/{node}", float(self.on_hand[j] / self.steps))
        self._reset()


class BetweenRollouts(EveryNTimesteps):
    """SB3's :class:`~stable_baselines3.common.callbacks.EveryNTimesteps` (its child fires once
    ``n`` steps have passed since it last fired), checked when a rollout starts instead of after
    every env step.

    PPO's step count reaches a multiple of the rollout size ``R`` on the last step of a rollout,
    before the update that learns from it: a checkpoint taken there would hold the model before
    that update and a half-filled rollout buffer. At the start of the next rollout the update is
    done, so the event at step ``s`` sees exactly the state of training after ``s`` steps. With
    ``n`` a multiple of ``R`` (``train`` rounds it up) the events fall on ``n, 2n, ...``; a resumed
    run counts from the last multiple of ``n`` at or below its start, so it keeps those steps.
    ``n = 0`` never fires.
    """

    def _on_training_start(self) -> None:
        super()._on_training_start()
        if self.n_steps:
            self.last_time_trigger = self.num_timesteps // self.n_steps * self.n_steps

    def _on_rollout_start(self) -> None:
        if self.n_steps:
            self.num_timesteps = self.model.num_timesteps  # SB3 updates it only in on_step
            super()._on_step()  # SB3's rule, and the child's on_step

    def _on_step(self) -> bool:
        return True


def selection_cost(result: Evaluation) -> float:
    """The cost by which ``best/`` is chosen among a run's evaluations: the mean cost per period of a
    stable evaluation; where a replication drifted (:attr:`~meio.envs.metrics.Evaluation.drifting`),
    at least the cost of the worst replication; where a replication trends upward
    (:attr:`~meio.envs.metrics.Evaluation.trending`), at least the worst replication's cost over the
    window's last quarter (:attr:`~meio.envs.metrics.Evaluation.late_costs`), where it is heading.
    A policy that runs away in the evaluation's replications, one of them or all, will run away in a
    planner's long run too; ranking it by where its worst replication got to puts it behind every
    stable evaluation of similar mean, while a run whose every evaluation drifts still keeps its
    least bad."""
    score = float(result.cost_mean)
    if result.drifting:
        score = max(score, float(result.replication_costs.max()))
    if result.trending:
        score = max(score, float(result.late_costs.max()))
    return score


def gap_pct(cost: float, baseline_cost: float | None) -> float | None:
    """Gap of an evaluation cost ``c`` to the run's reference ``c*``: ``100 (c - c*) / c*`` per cent,
    ``None`` where the run has no reference."""
    return None if baseline_cost is None else 100.0 * (cost - baseline_cost) / baseline_cost


def evaluation_scalars(result: Evaluation, baseline_cost: float | None) -> dict[str, float]:
    """Every TensorBoard scalar of one evaluation, by tag: the one list PPO's and HDPO's runs log.

    ``eval/cost``, ``eval/cost_ci95``, ``eval/fill_rate`` (network), ``eval/baseline_cost`` and
    ``eval/gap_pct`` (:func:`gap_pct`, with a reference), ``eval/spread_pct``, ``eval/drifting``,
    ``eval/worst_replication``, ``eval/trending`` (replications whose cost climbs within the window)
    and ``eval/max_trend_pct`` (the largest rise, first to last quarter, in per cent); per demand
    node ``d`` its fill rate ``eval/fill_rate/<d>`` (``beta_d``, MODEL.md "Service metrics") and,
    where the scenario gives it a ``service_target``
    ``beta*_d``, ``eval/target_gap/<d>`` ``= beta_d - beta*_d`` (met when ``>= 0``, the rule of
    :func:`meio.envs.metrics.meets_target`); per named segment ``g`` its demand-weighted fill rate
    ``eval/segment_fill_rate/<g>`` (:meth:`~meio.envs.metrics.Evaluation.segment_table`). A node
    without a segment of its own name is its own segment, already logged as a node.
    """
    out = {
        "eval/cost": float(result.cost_mean),
        "eval/cost_ci95": float(result.cost_ci95),
        "eval/fill_rate": float(result.fill_rate["network"]),
    }
    gap = gap_pct(result.cost_mean, baseline_cost)
    if baseline_cost is not None and gap is not None:
        out["eval/baseline_cost"] = float(baseline_cost)
        out["eval/gap_pct"] = gap
    # Replications that disagree (a spread, a drifting seed) expose a policy that wanders off in
    # some runs: the mean alone hides it (docs/agents.md, "Long-run stability").
    out["eval/spread_pct"] = 100.0 * result.spread
    out["eval/drifting"] = float(len(result.drifting))
    out["eval/worst_replication"] = float(result.replication_costs.max())
    # A replication compared with itself: catches a run-away in every replication at once.
    out["eval/trending"] = float(len(result.trending))
    rises = result.trends
    if not np.isnan(rises).all():
        out["eval/max_trend_pct"] = 100.0 * float(np.nanmax(rises))
    for node in result.mean_demand:  # the demand nodes, in the scenario's order
        out[f"eval/fill_rate/{node}"] = float(result.fill_rate[node])
        target = result.service_targets.get(node)
        if target is not None:
            out[f"eval/target_gap/{node}"] = float(result.fill_rate[node]) - float(target)
    named = {seg for node, seg in result.segments.items() if seg != node}
    if named:
        table = result.segment_table()
        for seg in table.index:
            if seg in named:
                out[f"eval/segment_fill_rate/{seg}"] = float(table.at[seg, "fill_rate"])
    return out


#: Tags of the run's final metrics, the metric columns of TensorBoard's HParams dashboard.
FINAL_METRICS = ("final/best_eval_cost", "final/eval_cost", "final/gap_pct", "final/fill_rate")


def final_metrics(best_cost: float | None, last: Mapping[str, float] | None) -> dict[str, float]:
    """The run's final metrics (:data:`FINAL_METRICS`) from its best selection cost
    (:func:`selection_cost`, what ``best/`` was chosen by) and the scalars of its last evaluation
    (:func:`evaluation_scalars`); those a run does not have (no evaluation, no reference) are left out."""
    out = {} if best_cost is None else {"final/best_eval_cost": float(best_cost)}
    pairs = (("final/eval_cost", "eval/cost"), ("final/gap_pct", "eval/gap_pct"), ("final/fill_rate", "eval/fill_rate"))
    for tag, key in pairs:
        if last is not None and key in last:
            out[tag] = float(last[key])
    return out


def hparam_values(config: Mapping[str, Any], prefix: str = "") -> dict[str, bool | int | float | str]:
    """A config as HParams values: nested mappings flattened to ``a.b`` keys; booleans, numbers and
    strings as they are; anything else (lists, ``None``) as its JSON text (``[64, 64]``, ``null``),
    since the HParams dashboard holds only booleans, numbers and strings."""
    out: dict[str, bool | int | float | str] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(hparam_values(value, f"{name}."))
        elif isinstance(value, (bool, int, float, str)):
            out[name] = value
        else:
            out[name] = json.dumps(value)
    return out


def write_hparams(
    tb: Path, hparams: Mapping[str, bool | int | float | str], metrics: Mapping[str, float], step: int
) -> None:
    """The run's entry in TensorBoard's HParams dashboard: the folder ``tb/hparams/``, one event file
    in the HParams plugin's format (``tensorboard.plugins.hparams``): a session start holding
    ``hparams``, the ``metrics`` as scalars at ``step`` and a session end. TensorBoard takes every
    run folder with a session start for a session, and a session's metrics from its scalars.

    No experiment summary is written (``torch.utils.tensorboard``'s ``hparams`` and SB3's ``HParam``
    write one per run): TensorBoard then builds the dashboard's columns from the union of all runs'
    hyper-parameters and metric tags, so PPO and HDPO runs compare in one table, where one run's
    experiment summary would set the columns for all. The folder is replaced whole
    (:func:`meio.agents.policy.folder_written_whole`), so a run resumed and finished again still has
    one entry, with its own final values.
    """
    from tensorboard.compat.proto.summary_pb2 import Summary
    from tensorboard.plugins.hparams import api_pb2, metadata, plugin_data_pb2
    from torch.utils.tensorboard import SummaryWriter

    def summary(tag: str, data: plugin_data_pb2.HParamsPluginData) -> Summary:
        value = Summary.Value(tag=tag, metadata=metadata.create_summary_metadata(data), tensor=metadata.NULL_TENSOR)
        return Summary(value=[value])

    start = plugin_data_pb2.SessionStartInfo(start_time_secs=time.time())
    for key, value in hparams.items():
        if isinstance(value, bool):  # before numbers: a bool is an int in Python
            start.hparams[key].bool_value = value
        elif isinstance(value, (int, float)):
            start.hparams[key].number_value = float(value)
        else:
            start.hparams[key].string_value = str(value)
    end = plugin_data_pb2.SessionEndInfo(status=api_pb2.STATUS_SUCCESS, end_time_secs=time.time())
    for stale in [*tb.glob(".hparams.partial-*"), *tb.glob(".hparams.old-*")]:  # a write cut short
        shutil.rmtree(stale, ignore_errors=True)
    with folder_written_whole(tb / "hparams") as folder:
        writer = SummaryWriter(str(folder))
        try:
            writer.file_writer.add_summary(
                summary(metadata.SESSION_START_INFO_TAG, plugin_data_pb2.HParamsPluginData(session_start_info=start)),
                step,
            )
            for tag, value in metrics.items():
                writer.add_scalar(tag, value, step)
            writer.file_writer.add_summary(
                summary(metadata.SESSION_END_INFO_TAG, plugin_data_pb2.HParamsPluginData(session_end_info=end)), step
            )
        finally:
            writer.close()


def write_run_hparams(
    run: Path,
    algo: str,
    config: Mapping[str, Any],
    meta: Mapping[str, Any],
    best_cost: float | None,
    last: Mapping[str, float] | None,
    steps: int,
) -> None:
    """A finished run's HParams entry (:func:`write_hparams` into ``run/tb``): the algorithm, the
    config (:func:`hparam_values`), the scenario and seed (``meta``), and the final metrics
    (:func:`final_metrics`) at the run's last step."""
    values = {"algo": algo, **hparam_values(config), **hparam_values(meta)}
    write_hparams(run / "tb", values, final_metrics(best_cost, last), steps)


class EvaluationCallback(BaseCallback):
    """One evaluation per ``on_step`` (scheduled by :class:`BetweenRollouts`): the deterministic
    policy with frozen normalisation on the fixed evaluation seeds, logged as ``eval/*``
    (:func:`evaluation_scalars`), a row of ``evaluations.csv``, and ``best/`` when its cost is the
    lowest so far. At the start of training it logs the hyper-parameters as a text table and, in a
    run that starts from step 0 and evaluates at all, evaluates the untrained policy at step 0 (which
    may stay the best: then ``best/`` is the untrained policy)."""

    def __init__(
        self,
        run_dir: Path,
        cfg: PPOConfig,
        scenario: Scenario,
        meta: dict,
        baseline: tuple[str | None, float | None],
        on_evaluation: Callable[[dict[str, float]], None] | None = None,
    ) -> None:
        super().__init__()
        self.on_evaluation = on_evaluation
        self.run_dir, self.cfg, self.scenario, self.meta = run_dir, cfg, scenario, meta
        self.baseline_name, self.baseline_cost = baseline
        self.best_cost: float | None = None
        #: Scalars of the last evaluation (:func:`evaluation_scalars`), for the run's final metrics.
        self.last: dict[str, float] | None = None
        self.horizon = cfg.horizon or scenario.horizon
        self.eval_sim = Simulator(scenario, n=cfg.eval_replications, threads=cfg.threads)
        self.started = time.perf_counter()

    def _on_training_start(self) -> None:
        cfg = self.cfg
        rows = "\n".join(f"| {k} | {v} |" for k, v in {**cfg.to_dict(), **self.meta}.items())
        self.logger.record(
            "hyperparameters", f"| parameter | value |\n|---|---|\n{rows}", exclude=("stdout", "log", "json", "csv")
        )
        # The HParams entry is written at the end (write_hparams), with the final metrics.
        if cfg.eval_every and self.num_timesteps == 0:
            self.evaluate_now()  # the untrained policy: where the learning curve starts

    def policy(self) -> PPOPolicy:
        env = self.training_env
        stats: tuple = (None, None)
        if isinstance(env, VecNormalize) and env.norm_obs:
            stats = (env.obs_rms.mean.copy(), env.obs_rms.var.copy(), env.clip_obs, env.epsilon)
        return PPOPolicy(
            self.model,
            self.cfg.action_mode,
            *stats,
            control=self.cfg.control,
            horizon=self.horizon,
            observe_time=self.cfg.observe_time,
            pipeline_length=self.cfg.pipeline_length,
            observe_echelon=self.cfg.observe_echelon,
            trained_on=self.scenario.name,
            residual=_base_env(self.training_env).action_map.residual,
        )

    def _on_step(self) -> bool:
        self.evaluate_now()
        return True

    def evaluate_now(self) -> float:
        """Evaluate at ``self.num_timesteps`` (``on_step`` sets it to the model's count first)."""
        cfg = self.cfg
        result = evaluate(
            self.eval_sim,
            self.policy(),
            periods=cfg.eval_periods,
            warmup=cfg.eval_warmup,
            replications=cfg.eval_replications,
            seed=cfg.eval_seed,
        )
        scalars = evaluation_scalars(result, self.baseline_cost)
        for tag, value in scalars.items():
            self.logger.record(tag, value)
        self.last = scalars
        gap = scalars.get("eval/gap_pct")
        drifting = len(result.drifting)
        # Written now, at the step evaluated: SB3 dumps the logger only after the coming rollout, which
        # would put every evaluation one rollout late on the learning curves (and the last update's
        # train/* values, recorded at this same step, go with it).
        self.logger.dump(self.num_timesteps)
        path = self.run_dir / "evaluations.csv"
        new = not path.exists()
        with path.open("a", newline="") as fh:
            w = csv.writer(fh)
            if new:
                w.writerow(EVAL_COLUMNS)
            w.writerow(
                [
                    self.num_timesteps,
                    round(time.perf_counter() - self.started, 2),
                    result.cost_mean,
                    result.cost_ci95,
                    result.fill_rate["network"],
                    self.baseline_name,
                    self.baseline_cost,
                    gap,
                    100.0 * result.spread,
                    float(result.replication_costs.max()),
                    drifting,
                    len(result.trending),
                ]
            )
        score = selection_cost(result)
        if self.best_cost is None or score < self.best_cost:
            self.best_cost = score
            self.policy().save(self.run_dir / "best", {**self.meta, "steps": self.num_timesteps, "eval_cost": score})
        if self.on_evaluation is not None:  # after the row and best/: a caller may stop the run here
            self.on_evaluation(
                {
                    "steps": float(self.num_timesteps),
                    "eval/cost": result.cost_mean,
                    "eval/cost_ci95": result.cost_ci95,
                    "eval/fill_rate": result.fill_rate["network"],
                    **({} if gap is None else {"eval/gap_pct": gap}),
                }
            )
        return result.cost_mean


class RunCheckpointCallback(CheckpointCallback):
    """SB3's ``CheckpointCallback(save_vecnormalize=True)``, one checkpoint per ``on_step``
    (scheduled by :class:`BetweenRollouts`), its writes landing in ``checkpoints/STEP/`` written
    whole or not at all (:func:`meio.agents.policy.folder_written_whole`); the previous checkpoints
    stay.

    SB3 writes ``model.zip`` and ``vecnormalize.pkl`` (its ``VecNormalize.save``; resuming reads it
    back with ``VecNormalize.load``); this class adds the saved agent's ``obs_normalizer.json`` and
    ``meta.json``, and ``state.json`` (step count, best evaluation, baseline, PyTorch random state).
    """

    def __init__(self, run_dir: Path, evaluator: EvaluationCallback) -> None:
        super().__init__(save_freq=1, save_path=str(run_dir / "checkpoints"), save_vecnormalize=True)
        self.run_dir, self.evaluator = run_dir, evaluator
        self._folder: Path | None = None

    def _checkpoint_path(self, checkpoint_type: str = "", extension: str = "") -> str:
        # SB3 names its files by prefix and step count; in a folder of their own per step they
        # take the fixed names the rest of the project reads, inside the .partial folder
        if self._folder is None:
            raise RuntimeError("RunCheckpointCallback: SB3 asked for a checkpoint path outside a checkpoint write")
        return str(self._folder / (VECNORM_FILE if checkpoint_type == "vecnormalize_" else MODEL_FILE))

    def _on_step(self) -> bool:
        steps = self.num_timesteps
        ev = self.evaluator
        state = {
            "steps": steps,
            "best_eval_cost": ev.best_cost,
            "baseline": [ev.baseline_name, ev.baseline_cost],
            "torch_rng": torch.get_rng_state().tolist(),
        }
        with folder_written_whole(self.run_dir / "checkpoints" / str(steps)) as folder:
            self._folder = folder
            try:
                super()._on_step()  # SB3: model.zip and vecnormalize.pkl
            finally:
                self._folder = None
            for part in (MODEL_FILE, VECNORM_FILE):
                if not (folder / part).is_file():  # an SB3 that saves elsewhere must not pass silently
                    raise RuntimeError(f"checkpoint: SB3's CheckpointCallback wrote no {part} into {folder}")
                _part_written(folder, part)
            ev.policy().save_normalizer_and_meta(folder, {**ev.meta, "steps": steps})
            _part_written(folder, NORMALIZER_FILE)
            (folder / STATE_FILE).write_text(json.dumps(state))
            _part_written(folder, STATE_FILE)
        return True


class ValueWarmup(BaseCallback):
    """``value_warmup_steps``: the updates of the rollouts that end at or before step ``steps`` train
    only the critic.

    At the start of a run the advantages come from a value network with random weights, so PPO's
    first policy updates follow noise; from a good start (a residual on a base-stock policy, whose
    zero action is that policy) they move the policy away from it. Freezing the policy's own
    parameters (its hidden layers, the action mean layer and ``log_std``) leaves the ratio
    ``pi / pi_old`` at 1, so those updates fit the value function alone (Adam skips parameters
    without a gradient). The rule is read at every rollout's end from the step count, so a resumed
    run freezes exactly the same updates. ``train/value_warmup`` logs 1 for a frozen update.
    """

    def __init__(self, steps: int) -> None:
        super().__init__()
        self.steps = steps

    def _policy_parameters(self) -> list[torch.nn.Parameter]:
        policy = self.model.policy
        return [*policy.mlp_extractor.policy_net.parameters(), *policy.action_net.parameters(), policy.log_std]

    def _on_rollout_end(self) -> None:
        frozen = self.model.num_timesteps <= self.steps
        for parameter in self._policy_parameters():
            parameter.requires_grad_(not frozen)
        self.logger.record("train/value_warmup", float(frozen))

    def _on_step(self) -> bool:
        return True


class GroupBaseline(BaseCallback):
    """``crn_group``: the advantages of a rollout measured against the other members of each group
    of env copies that share their random numbers (an input-driven baseline: Mao, Venkatakrishnan,
    Schwarzkopf and Alizadeh, "Variance Reduction for Reinforcement Learning in Input-Driven
    Environments", ICLR 2019).

    In an inventory network every random number is exogenous: the demand, lead times and outages a
    copy sees do not depend on its orders. On a long pipeline they move the return far more than an
    action does, and a critic that sees only the state cannot predict them, so GAE's advantages
    are mostly demand noise. The
    members of a group start together from the same state and see the same demand; they differ only
    by their own exploration. An action's advantage is its lambda-return (SB3's ``returns``: GAE
    plus the critic's value) minus the mean lambda-return of the group's other members at the same
    step. That baseline does not depend on the action (the others' noise is independent of it), so
    the policy gradient stays unbiased, and the demand noise the members share cancels. The critic
    is still trained on the lambda-returns and still bootstraps truncated episodes. Set in the
    rollout buffer when the rollout ends, before PPO's update reads it.
    """

    def __init__(self, group: int) -> None:
        super().__init__()
        self.group = group

    def _on_rollout_end(self) -> None:
        buffer = self.model.rollout_buffer
        steps, n = buffer.returns.shape
        returns = buffer.returns.reshape(steps, n // self.group, self.group)
        others = (returns.sum(axis=2, keepdims=True) - returns) / (self.group - 1)
        buffer.advantages = (returns - others).reshape(steps, n).astype(buffer.advantages.dtype)

    def _on_step(self) -> bool:
        return True


class ExplorationSchedule(BaseCallback):
    """``log_std_final``: the policy's ``log_std`` set before every rollout to the linear
    interpolation from ``log_std_init`` (step 0) to ``log_std_final`` (``total`` steps), and not learned.

    PPO optimises the cost of its stochastic policy. In a pipeline each stage's exploration noise is
    demand to its supplier, so the best mean action under noise holds stock against the agent's own
    noise; shrinking the noise over the run moves that optimum to the deterministic policy's, the one
    evaluations judge. The value depends only on the step count, so a resumed run sets the same one.
    """

    def __init__(self, start: float, final: float, total: int) -> None:
        super().__init__()
        self.start, self.final, self.total = start, final, total

    def value(self, steps: int) -> float:
        share = min(max(steps / self.total, 0.0), 1.0) if self.total else 1.0
        return self.start + share * (self.final - self.start)

    def _on_training_start(self) -> None:
        self._on_rollout_start()

    def _on_rollout_end(self) -> None:
        self.model.policy.log_std.requires_grad_(False)

    def _on_rollout_start(self) -> None:
        self.model.policy.log_std.requires_grad_(False)
        value = self.value(self.model.num_timesteps)
        with torch.no_grad():
            self.model.policy.log_std.fill_(value)
        self.logger.record("train/log_std", value)

    def _on_step(self) -> bool:
        return True


def run_callbacks(
    evaluator: EvaluationCallback, checkpointer: RunCheckpointCallback, eval_every: int, checkpoint_every: int
) -> CallbackList:
    """The callbacks of ``learn``: metrics of every rollout, then, between rollouts, the evaluation
    every ``eval_every`` steps and the checkpoint every ``checkpoint_every`` steps (0: never), the
    evaluation first so that the checkpoint records its result."""
    return CallbackList(
        [MetricsCallback(), BetweenRollouts(eval_every, evaluator), BetweenRollouts(checkpoint_every, checkpointer)]
    )


EVAL_COLUMNS = [
    "steps",
    "seconds",
    "cost",
    "cost_ci95",
    "fill_rate",
    "baseline",
    "baseline_cost",
    "gap_pct",
    "spread_pct",
    "worst_replication",
    "drifting",
    "trending",
]


def _part_written(folder: Path, part: str) -> None:
    if checkpoint_write_hook is not None:
        checkpoint_write_hook(folder, part)


# ---- reading a run folder back ---------------------------------------------------------------------
@dataclass(frozen=True)
class SavedRun:
    """A run folder's ``config.yaml``: scenario name, seed and config."""

    scenario: str
    seed: int
    cfg: PPOConfig


def resume_seed(seed: int, steps: int) -> int:
    """Seed of the env copies of a run resumed after ``steps`` (row ``i`` gets it ``+ i``).

    Derived from the run's seed and the step count, so a resume is reproducible and its episodes
    do not replay the demand the run saw from its start.
    """
    return int(np.random.SeedSequence([seed, steps]).generate_state(1, np.uint32)[0])


def read_run_config(run: Path) -> SavedRun:
    """Read and check ``RUN/config.yaml``; :class:`ConfigError` names the file and the field."""
    path = run / "config.yaml"
    if not path.is_file():
        raise FileNotFoundError(f"--resume: {run} has no config.yaml; it is not a run folder")
    try:
        data = read_yaml(path.read_text(), str(path))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc})") from None
    except ScenarioError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping with scenario, seed and config, got {type(data).__name__}")
    for key in ("scenario", "seed", "config"):
        if key not in data:
            raise ConfigError(f"{path}: {key}: missing; a run's config.yaml holds scenario, seed and config")
    seed = data["seed"]
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ConfigError(f"{path}: seed: {seed!r} is not an integer >= 0")
    if not isinstance(data["config"], dict):
        raise ConfigError(f"{path}: config: expected a mapping of hyper-parameters, got {data['config']!r}")
    try:
        cfg = PPOConfig.from_dict(data["config"])
    except ConfigError as exc:
        raise ConfigError(errors=[(f"config.{field}", f"{path}: config.{msg}") for field, msg in exc.errors]) from None
    return SavedRun(str(data["scenario"]), seed, cfg)


def _write_run_config(run: Path, scenario: str, seed: int, cfg: PPOConfig) -> None:
    """Write ``config.yaml`` through a temporary file and a rename: the old one or the new one."""
    text = yaml.safe_dump({"scenario": scenario, "seed": seed, "config": cfg.to_dict()}, sort_keys=False)
    write_file_whole(run / "config.yaml", text)


def write_file_whole(path: Path, text: str) -> None:
    """Write ``path`` through a temporary file (``.NAME.partial-PID``, removed by a resume) and a
    rename, so ``path`` is the old file or the whole new one."""
    tmp = path.with_name(f".{path.name}.partial-{os.getpid()}")
    with tmp.open("w") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


#: A run folder's copy of the scenario it trains on (PPO and HDPO runs): ``--resume`` reads it, so a
#: resumed run needs no ``--scenario``, and trains on what the run began with even if the file it
#: came from has changed since.
SCENARIO_FILE = "scenario.yaml"


def write_run_scenario(run: Path, scenario: Scenario) -> None:
    """Write ``RUN/scenario.yaml``: ``scenario`` as :meth:`Scenario.to_dict` gives it. A demand trace
    is copied too, as the values the run replays, to ``RUN/scenario-trace-I.csv`` (``I`` the node's
    place in the file; the copy names it relative to the run folder), so the copy is whole: an edited
    or moved CSV file changes no resumed run, and the folder can move."""
    data = scenario.to_dict()
    for i, (node, spec) in enumerate(zip(data["nodes"], scenario.nodes)):
        if spec.demand is not None and spec.demand.dist == "trace":
            text = io.StringIO()
            csv.writer(text, lineterminator="\n").writerows(
                [[spec.demand.trace_column], *([v] for v in spec.demand.trace)]
            )
            name = f"scenario-trace-{i}.csv"
            write_file_whole(run / name, text.getvalue())
            node["demand"]["file"] = name
    write_file_whole(run / SCENARIO_FILE, yaml.safe_dump(data, sort_keys=False))


def _without_trace_files(scenario: Scenario) -> Scenario:
    """``scenario`` with its demand traces' file names blanked: two scenarios that replay the same
    values are the same scenario, whether their file was named relative or absolute."""
    nodes = tuple(
        replace(n, demand=replace(n.demand, trace_file="")) if n.demand is not None and n.demand.dist == "trace" else n
        for n in scenario.nodes
    )
    return replace(scenario, nodes=nodes)


def _first_difference(a: Any, b: Any, path: str = "") -> str | None:
    """The first key path (``nodes[1].holding_cost``) where two plain YAML trees differ."""
    if isinstance(a, dict) and isinstance(b, dict):
        for key in [*a, *(k for k in b if k not in a)]:
            if key not in a or key not in b:
                return f"{path}.{key}" if path else str(key)
            found = _first_difference(a[key], b[key], f"{path}.{key}" if path else str(key))
            if found is not None:
                return found
        return None
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return f"{path} ({len(a)} entries, {len(b)} given)"
        for i, (x, y) in enumerate(zip(a, b)):
            found = _first_difference(x, y, f"{path}[{i}]")
            if found is not None:
                return found
        return None
    return None if a == b else path


def run_scenario(run: Path, given: ScenarioLike | None, saved_name: str) -> Topology:
    """The scenario a resumed run trains on, compiled: its own copy (:data:`SCENARIO_FILE`) when
    ``given`` is ``None``. A scenario ``given`` must be the same as the copy (or, in a run made
    before runs kept one, have the name its ``config.yaml`` records): a run resumes on its own
    scenario, so another one is refused, naming both, rather than trained on silently.
    """
    path = run / SCENARIO_FILE
    own: Scenario | None = None
    if path.is_file():
        try:
            own = load_scenario(path)
        except ScenarioError as exc:
            raise ScenarioError(
                f"--resume: {path} is the run's copy of its scenario and does not load: {exc}"
            ) from None
    if given is None:
        if own is not None:
            return resolve(own)
        try:
            return resolve(saved_name)
        except ScenarioError:
            raise ScenarioError(
                f"scenario: the run {run} keeps no copy of its scenario ({SCENARIO_FILE}: runs made before "
                f"this version) and {saved_name!r}, the name its config.yaml records, is not a shipped "
                "scenario; pass the scenario the run was trained on with --scenario"
            ) from None
    topo = resolve(given)
    sc = topo.scenario
    label = sc.source or sc.name
    if own is None:
        if sc.name != saved_name:
            raise ScenarioError(
                f"scenario: {label!r} is named {sc.name!r}, but the run {run} was trained on {saved_name!r} "
                "(its config.yaml says so); a run resumes on its own scenario: leave --scenario out, or "
                "start a new run"
            )
        return topo
    mine, theirs = _without_trace_files(own), _without_trace_files(sc)
    if mine != theirs:
        where = _first_difference(mine.to_dict(), theirs.to_dict()) or next(
            (
                f"nodes[{i}].demand (the values of its trace)"
                for i, (a, b) in enumerate(zip(mine.nodes, theirs.nodes))
                if a.demand != b.demand
            ),
            "the values of a demand trace",
        )
        raise ScenarioError(
            f"scenario: {label!r} ({sc.name!r}) differs from the scenario the run {run} was trained on, "
            f"{own.name!r} (its copy {path}){'' if where == 'name' else f', in {where}'}; a run resumes on its "
            "own scenario: leave --scenario out, or start a new run"
        )
    return topo


def clear_interrupted_hparams(run: Path) -> None:
    """Tidy ``RUN/tb`` after a write of the HParams entry (:func:`write_hparams`) that was cut short:
    a ``.hparams.partial-*`` folder holds an incomplete session that TensorBoard would read as a
    second entry of the run, so it is deleted; a ``.hparams.old-*`` is the complete previous entry,
    put back if the kill fell between its two renames, else deleted. Called when a run (new or
    resumed) starts writing, so a resume stopped again before its end leaves no stale entry."""
    tb = run / "tb"
    for partial in sorted(tb.glob(".hparams.partial-*")):
        shutil.rmtree(partial, ignore_errors=True)
    old = sorted(tb.glob(".hparams.old-*"))
    if old and not (tb / "hparams").exists():
        os.rename(old.pop(), tb / "hparams")
    for folder in old:
        shutil.rmtree(folder, ignore_errors=True)


@dataclass
class Checkpoint:
    """A checkpoint that passed every check, loaded (its ``VecNormalize`` already wraps the run's
    new batched env; the model gets it with ``set_env``)."""

    folder: Path
    steps: int
    state: dict
    model: PPO
    vecnormalize: VecNormalize


def _load_checkpoint(
    folder: Path, learning_rate: float | LinearDecay, tb: Path, venv: Any, fits: Callable[[PPO], None]
) -> Checkpoint | str:
    """The loaded checkpoint, or why it cannot be used. ``fits`` refuses (raises) a model of another
    shape than ``venv``'s: a scenario of another network, not a damaged checkpoint, so it is checked
    before SB3's ``VecNormalize.load``, which would refuse it less clearly."""
    for f in (MODEL_FILE, VECNORM_FILE, STATE_FILE):
        if not (folder / f).is_file():
            return f"{f} is missing"
    problem = manifest_problem(folder)
    if problem is not None:
        return problem
    try:
        state = read_json(folder / STATE_FILE, "checkpoint")
        steps = int(state["steps"])
        missing = [k for k in ("torch_rng",) if k not in state]
    except (ValueError, KeyError, TypeError) as exc:
        return f"{STATE_FILE} is unreadable ({exc})"
    if missing:
        return f"{STATE_FILE} lacks {', '.join(missing)}"
    if steps != int(folder.name):
        return f"{STATE_FILE} says {steps} steps, the folder's name {folder.name}"
    try:
        model = load_model(
            folder / MODEL_FILE, custom_objects={"learning_rate": learning_rate}, tensorboard_log=str(tb)
        )
    except ValueError as exc:
        return str(exc)
    fits(model)
    # SB3's own reader: the pickle of this run's own VecNormalize (written by RunCheckpointCallback),
    # wrapped around the new env. A saved agent's normaliser, which others load, is JSON instead.
    try:
        vecnormalize = VecNormalize.load(str(folder / VECNORM_FILE), venv)
    except Exception as exc:  # pickle raises many kinds for a damaged file
        return f"{VECNORM_FILE} is unreadable ({type(exc).__name__}: {exc})"
    if not isinstance(vecnormalize, VecNormalize):
        return f"{VECNORM_FILE} holds a {type(vecnormalize).__name__}, not a VecNormalize"
    return Checkpoint(folder, steps, state, model, vecnormalize)


def _newest_sound_checkpoint(
    run: Path, learning_rate: float | LinearDecay, venv: Any, fits: Callable[[PPO], None]
) -> tuple[Checkpoint | None, list[tuple[Path, str]]]:
    """The newest checkpoint that passes every check, and the newer ones that failed (each reported);
    ``venv`` and ``fits`` as in :func:`_load_checkpoint`."""
    folder = run / "checkpoints"
    for partial in sorted(folder.glob(".*.partial-*")) if folder.is_dir() else []:
        _note(f"resume: skipped {partial}: an incomplete checkpoint write (the run was stopped during it)")
    damaged: list[tuple[Path, str]] = []
    for candidate in reversed(checkpoint_steps(run)):
        loaded = _load_checkpoint(candidate, learning_rate, run / "tb", venv, fits)
        if isinstance(loaded, Checkpoint):
            return loaded, damaged
        _note(f"resume: skipped checkpoint {candidate}: {loaded}")
        damaged.append((candidate, loaded))
    return None, damaged


def _trim_evaluations(run: Path, steps: int) -> None:
    """Drop the rows of ``evaluations.csv`` past ``steps``: that stretch of training is redone."""
    path = run / "evaluations.csv"
    if not path.is_file():
        return
    rows = list(csv.reader(path.read_text().splitlines()))
    keep = [r for r in rows[1:] if r and r[0].isdigit() and int(r[0]) <= steps]
    if len(keep) == len(rows) - 1:
        return
    tmp = path.with_name(f".evaluations.csv.partial-{os.getpid()}")
    with tmp.open("w", newline="") as fh:
        csv.writer(fh).writerows([rows[0], *keep])
    os.replace(tmp, path)


def _sound_meta(folder: Path) -> dict[str, Any]:
    """``meta.json`` of a saved agent whose files match its manifest; ``{}`` if there is none."""
    if not (folder / MODEL_FILE).is_file() or manifest_problem(folder) is not None:
        return {}
    try:
        meta = json.loads((folder / META_FILE).read_text())
    except (OSError, ValueError):
        return {}
    return meta if isinstance(meta, dict) else {}


def _best_saved_cost(run: Path) -> float | None:
    """The evaluation cost recorded in a sound ``best/``, if any."""
    cost = _sound_meta(run / "best").get("eval_cost")
    return float(cost) if isinstance(cost, (int, float)) and math.isfinite(cost) else None


def _best_cost(run: Path, checkpoint: Checkpoint) -> float | None:
    """The best evaluation so far: the checkpoint's, or ``best/``'s if lower (an evaluation after
    the checkpoint, in the stretch that is trained again, may have saved a better agent there)."""
    stored = checkpoint.state.get("best_eval_cost")
    costs = [c for c in (stored if isinstance(stored, (int, float)) else None, _best_saved_cost(run)) if c is not None]
    return min(costs) if costs else None


def _stored_baseline(checkpoint: Checkpoint) -> tuple[str | None, float | None]:
    """The baseline a checkpoint recorded (checkpoints before this field: none, recompute it)."""
    stored = checkpoint.state.get("baseline")
    if isinstance(stored, list) and len(stored) == 2 and stored[1] is not None:
        return stored[0], float(stored[1])
    return None, None


def _sound_final(run: Path, steps: int) -> bool:
    """Whether ``final/`` is whole and saved at ``steps``."""
    saved = _sound_meta(run / "final").get("steps")
    return isinstance(saved, int) and not isinstance(saved, bool) and saved == steps


def _resolve_resume(
    run: Path, cfg: PPOConfig | None, total_steps: int | None, threads: int | str | None
) -> tuple[SavedRun, PPOConfig]:
    saved = read_run_config(run)
    if cfg is not None:
        differ = [
            f"{k} ({getattr(saved.cfg, k)!r} saved, {getattr(cfg, k)!r} given)"
            for k in saved.cfg.to_dict()
            if k not in RESUMABLE_CHANGES and getattr(cfg, k) != getattr(saved.cfg, k)
        ]
        if differ:
            raise ConfigError(
                f"--resume: the config differs from the run's {run / 'config.yaml'} in "
                f"{', '.join(differ)}; a run resumes with its own settings (only "
                f"{', '.join(RESUMABLE_CHANGES)} may change): drop --config, or start a new run"
            )
        new = {k: getattr(cfg, k) for k in RESUMABLE_CHANGES}
    else:
        new = {}
    if total_steps is not None:
        new["total_steps"] = total_steps
    if threads is not None:
        new["threads"] = threads  # threads change speed, never results: the caller's choice holds
    return saved, saved.cfg.replace(**new)


def train(
    scenario: ScenarioLike | None,
    cfg: PPOConfig | None,
    run_dir: str | Path,
    seed: int = 0,
    resume: bool = False,
    progress: bool = True,
    total_steps: int | None = None,
    threads: int | str | None = None,
    on_evaluation: Callable[[dict[str, float]], None] | None = None,
) -> TrainResult:
    """Train (or, with ``resume``, continue training) a PPO agent; see the module docstring.

    Args:
        scenario: the scenario to train on; with ``resume``, ``None`` takes the run's own copy
            (:data:`SCENARIO_FILE`), and a scenario given must be the same (:func:`run_scenario`).
        cfg: the hyper-parameters; with ``resume``, ``None`` takes the run's own ``config.yaml``, and a
            config given must agree with it except in :data:`RESUMABLE_CHANGES`.
        run_dir: the run folder: new or empty, or with ``resume`` an existing run.
        seed: seed of PPO and of the first env copy (with ``resume``, the run's seed holds).
        resume: continue the run in ``run_dir`` from its newest sound checkpoint.
        progress: show SB3's progress bar.
        total_steps: with ``resume``, the new total (default: the run's own, or ``cfg``'s).
        threads: with ``resume``, the environment's threads for this session (``meio.envs.threads``).
        on_evaluation: called after each evaluation is written with ``{"steps", "eval/cost",
            "eval/cost_ci95", "eval/fill_rate", "eval/gap_pct"}`` (the gap only where there is a baseline);
            ``meio.experiment`` reports them to Ray Tune.
    """
    started = time.perf_counter()
    run = Path(run_dir)
    if run.exists() and not run.is_dir():
        raise ValueError(f"--run-dir: {run} is a file; a run folder is a directory")
    if resume:
        saved, cfg = _resolve_resume(run, cfg, total_steps, threads)
        seed = saved.seed
    else:
        if cfg is None:
            raise ConfigError("config: a new run needs a config (None is only for resuming)")
        if run.exists() and any(run.iterdir()):
            raise FileExistsError(f"--run-dir: {run} exists and is not empty; pick a new folder or pass --resume")
        if scenario is None:
            raise ScenarioError("scenario: a new run needs a scenario (None is only for resuming)")
    # once: the envs, the evaluation and the baselines share it
    topo = run_scenario(run, scenario, saved.scenario) if resume else resolve(scenario)
    sc = topo.scenario
    torch.set_num_threads(cfg.torch_threads)

    env_kwargs = dict(
        n_envs=cfg.n_envs,
        seed=seed,
        action_mode=cfg.action_mode,
        horizon=cfg.horizon,
        observe_time=cfg.observe_time,
        pipeline_length=cfg.pipeline_length,
        observe_echelon=cfg.observe_echelon,
        initial_stock_spread=cfg.initial_stock_spread,
        threads=cfg.threads,
        episode_start=cfg.episode_start,
        continue_share=cfg.continue_share,
        residual=residual_base(topo, cfg),
    )
    venv = (
        DecentralisedVecEnv(topo, **env_kwargs)
        if cfg.control == "decentralised"
        else make_vec_env(topo, crn_group=cfg.crn_group, **env_kwargs)
    )
    rollout = cfg.n_steps * venv.num_envs
    total = _round_up(cfg.total_steps, rollout)
    eval_every, checkpoint_every = _round_up(cfg.eval_every, rollout), _round_up(cfg.checkpoint_every, rollout)
    lr = cfg.learning_rate if cfg.lr_schedule == "constant" else LinearDecay(cfg.learning_rate)

    checkpoint: Checkpoint | None = None
    damaged: list[tuple[Path, str]] = []
    if resume:

        def fits(model: PPO) -> None:
            check_model_fits(
                model,
                sc.name,
                int(np.prod(venv.observation_space.shape)),
                int(np.prod(venv.action_space.shape)),
                cfg.control,
                f"the run {run} was trained on {saved.scenario!r}",
                "resume it on its own scenario",
            )

        checkpoint, damaged = _newest_sound_checkpoint(run, lr, venv, fits)
        if checkpoint is None and damaged:
            reasons = "; ".join(f"{folder.name}: {why}" for folder, why in damaged)
            raise ValueError(
                f"--resume: no checkpoint of {run} can be used ({reasons}); its training state is "
                "lost: start a new run, or remove checkpoints/ to train this one again from step 0"
            )
    done = checkpoint.steps if checkpoint is not None else 0
    meta = {"scenario": sc.name, "scenario_source": sc.source, "seed": seed}
    if resume and checkpoint is not None and done >= total:
        return _finish_resumed(run, cfg, sc, meta, checkpoint, started)

    if total != cfg.total_steps:
        print(
            f"total_steps {cfg.total_steps:,} rounds up to {total:,} = {total // rollout} rollouts of "
            f"{rollout:,} steps (n_steps {cfg.n_steps} x {venv.num_envs} envs)",
            flush=True,
        )
    for name, asked, used in (
        ("eval_every", cfg.eval_every, eval_every),
        ("checkpoint_every", cfg.checkpoint_every, checkpoint_every),
    ):
        if asked != used:
            print(f"{name} {asked:,} rounds up to {used:,} (whole rollouts)", flush=True)

    if checkpoint is not None:
        env = checkpoint.vecnormalize  # wraps venv (VecNormalize.load)
        model = checkpoint.model
        model.set_env(env)
        torch.set_rng_state(torch.tensor(checkpoint.state["torch_rng"], dtype=torch.uint8))
        # The env copies start new episodes (the one in progress at the checkpoint is not saved), on
        # streams of their own: the run's seed would replay the demand of its first episodes.
        venv.seed(resume_seed(seed, checkpoint.steps))
    else:
        env = VecNormalize(venv, norm_obs=cfg.normalize_obs, norm_reward=cfg.normalize_reward, gamma=cfg.gamma)
        policy_kwargs = {
            "net_arch": {"pi": list(cfg.net_arch), "vf": list(cfg.net_arch)},
            "activation_fn": torch.nn.Tanh if cfg.activation == "tanh" else torch.nn.ReLU,
            "log_std_init": cfg.log_std_init,
        }
        model = PPO(
            "MlpPolicy",
            env,
            learning_rate=lr,
            n_steps=cfg.n_steps,
            batch_size=cfg.batch_size,
            n_epochs=cfg.n_epochs,
            gamma=cfg.gamma,
            gae_lambda=cfg.gae_lambda,
            clip_range=cfg.clip_range,
            target_kl=cfg.target_kl,
            ent_coef=cfg.ent_coef,
            vf_coef=cfg.vf_coef,
            max_grad_norm=cfg.max_grad_norm,
            use_sde=cfg.use_sde,
            sde_sample_freq=cfg.sde_sample_freq,
            policy_kwargs=policy_kwargs,
            tensorboard_log=str(run / "tb"),
            seed=seed,
            device="cpu",
            verbose=0,
        )

    # everything is checked: from here on the run folder changes
    run.mkdir(parents=True, exist_ok=True)
    if resume:
        set_aside_damaged(run, [folder for folder, _ in damaged])
        # a run restarted from step 0 (no checkpoint yet) evaluates step 0 again: drop its old row too
        _trim_evaluations(run, done if checkpoint is not None else -1)
        _note(
            f"resume: continuing {run} from step {done:,}"
            + (f" (checkpoint {checkpoint.folder.name})" if checkpoint is not None else " (no checkpoint yet)")
            + f" to {total:,}"
        )
    clear_interrupted_hparams(run)
    _write_run_config(run, sc.name, seed, cfg)
    write_run_scenario(run, sc)

    baseline = _stored_baseline(checkpoint) if checkpoint is not None else (None, None)
    if baseline == (None, None):
        baseline = best_baseline(topo, cfg)
    evaluator = EvaluationCallback(run, cfg, sc, meta, baseline, on_evaluation)
    checkpointer = RunCheckpointCallback(run, evaluator)
    if checkpoint is not None:
        evaluator.best_cost = _best_cost(run, checkpoint)
    callbacks = run_callbacks(evaluator, checkpointer, eval_every, checkpoint_every)
    if cfg.value_warmup_steps:
        callbacks = CallbackList([callbacks, ValueWarmup(cfg.value_warmup_steps)])
    if cfg.crn_group > 1:
        callbacks = CallbackList([callbacks, GroupBaseline(cfg.crn_group)])
    if cfg.log_std_final is not None:  # last: its freeze of log_std overrides the warm-up's thaw
        callbacks = CallbackList([callbacks, ExplorationSchedule(cfg.log_std_init, cfg.log_std_final, total)])
    model.learn(
        total_timesteps=total - done,
        callback=callbacks,
        tb_log_name="ppo",
        reset_num_timesteps=checkpoint is None,
        progress_bar=progress,
    )
    checkpointer.on_step()  # the training state first: the rest can be redone
    if cfg.eval_every:
        evaluator.on_step()
    model.logger.dump(model.num_timesteps)  # the last update's train/* and the last evaluation
    # before final/: a run stopped between the two completes both on resume
    write_run_hparams(run, "ppo", cfg.to_dict(), meta, evaluator.best_cost, evaluator.last, model.num_timesteps)
    evaluator.policy().save(run / "final", {**meta, "steps": model.num_timesteps})
    return TrainResult(
        run_dir=run,
        steps=int(model.num_timesteps),
        best_eval_cost=evaluator.best_cost,
        baseline_name=baseline[0],
        baseline_cost=baseline[1],
        seconds=time.perf_counter() - started,
        steps_this_call=int(model.num_timesteps) - done,
    )


def _finish_resumed(
    run: Path, cfg: PPOConfig, sc: Scenario, meta: dict, checkpoint: Checkpoint, started: float
) -> TrainResult:
    """A resumed run already at its total: nothing to learn. If it was stopped after its last
    checkpoint but before ``final/`` was complete, redo the last evaluation and ``final/``."""
    clear_interrupted_hparams(run)
    baseline = _stored_baseline(checkpoint)
    best = _best_cost(run, checkpoint)
    if not _sound_final(run, checkpoint.steps):
        model = checkpoint.model
        model.set_env(checkpoint.vecnormalize)
        model.num_timesteps = checkpoint.steps
        model.set_logger(configure_logger(0, str(run / "tb"), "ppo", reset_num_timesteps=False))
        if baseline == (None, None):
            baseline = best_baseline(sc, cfg)
        evaluator = EvaluationCallback(run, cfg, sc, meta, baseline)
        evaluator.init_callback(model)
        evaluator.best_cost = best
        _note(
            f"resume: {run} reached its total of {checkpoint.steps:,} steps; completing its final evaluation and final/"
        )
        _trim_evaluations(run, checkpoint.steps - 1)  # the final evaluation, if it got that far, is redone
        if cfg.eval_every:
            evaluator.on_step()  # at the model's count, checkpoint.steps
            model.logger.dump(checkpoint.steps)
        write_run_hparams(run, "ppo", cfg.to_dict(), meta, evaluator.best_cost, evaluator.last, checkpoint.steps)
        evaluator.policy().save(run / "final", {**meta, "steps": checkpoint.steps})
        best = evaluator.best_cost
    else:
        _note(
            f"resume: {run} is finished at {checkpoint.steps:,} steps (total_steps {cfg.total_steps:,}); nothing to do"
        )
    return TrainResult(
        run_dir=run,
        steps=checkpoint.steps,
        best_eval_cost=best,
        baseline_name=baseline[0],
        baseline_cost=baseline[1],
        seconds=time.perf_counter() - started,
        steps_this_call=0,
    )
