"""Train a PPO agent on a scenario: config, TensorBoard, evaluation against baselines, checkpoints.

Reads top to bottom (after cleanrl's single-file style, with SB3 holding the loop):

1. resolve the config and the run folder; write ``config.yaml`` (the resolved config, scenario and
   seed) into it;
2. seed everything in one place: the batched env's rows get ``seed, seed+1, ...`` (SB3's
   convention), PyTorch and SB3 get ``seed``;
3. build the batched ``VecEnv`` with ``VecNormalize`` (observation statistics, optional reward
   scaling) and PPO;
4. before training, simulate the best applicable baseline on the evaluation seeds: the target
   ``eval/baseline_cost`` of the run;
5. ``learn`` with callbacks that log costs, service and stock to TensorBoard, evaluate on fixed
   seeds (``eval/cost``, ``eval/gap_pct``), keep the best model and write checkpoints; with
   ``resume``, continue from the latest checkpoint to the same total.

Run folder layout: ``config.yaml``, ``tb/`` (TensorBoard), ``checkpoints/STEP/``, ``best/``,
``final/`` (each a saved agent: ``model.zip``, ``obs_normalizer.json``, ``meta.json``), ``vecnormalize.pkl``
inside each checkpoint for resuming, and ``evaluations.csv``.
"""

from __future__ import annotations

import csv
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from stable_baselines3 import PPO
from stable_baselines3.common.callbacks import BaseCallback, CallbackList
from stable_baselines3.common.logger import HParam
from stable_baselines3.common.vec_env import VecNormalize

from agents.config import PPOConfig
from agents.policy import PPOPolicy
from baselines.base import NotApplicable
from envs.decentralised import DecentralisedVecEnv
from envs.metrics import evaluate
from envs.scenario import Scenario, load_scenario
from envs.simulator import Simulator
from envs.topology import COST_NAMES
from envs.vec_env import MultiEchelonVecEnv, make_vec_env


@dataclass(frozen=True)
class TrainResult:
    """Where the run is and how it ended."""

    run_dir: Path
    steps: int
    best_eval_cost: float | None
    baseline_name: str | None
    baseline_cost: float | None
    seconds: float


def _base_env(env: Any) -> MultiEchelonVecEnv:
    while not isinstance(env, MultiEchelonVecEnv):
        env = env.inner if isinstance(env, DecentralisedVecEnv) else env.venv
    return env


def best_baseline(scenario: Scenario, cfg: PPOConfig, progress: bool = False) -> tuple[str | None, float | None]:
    """The cheapest applicable baseline's cost on the evaluation seeds: Clark-Scarf where it is
    exact, otherwise the simulation-optimised installation base-stock policy."""
    from baselines.analytic import clark_scarf_baseline
    from baselines.run import run_baselines

    sim = Simulator(scenario, n=cfg.eval_replications)
    try:
        b = clark_scarf_baseline(scenario)
        ev = evaluate(sim, b.policy(sim.topology), periods=cfg.eval_periods, warmup=cfg.eval_warmup,
                      replications=cfg.eval_replications, seed=cfg.eval_seed)
        return b.name, ev.cost_mean
    except NotApplicable:
        pass
    report = run_baselines(scenario, periods=cfg.eval_periods, warmup=cfg.eval_warmup,
                           replications=cfg.eval_replications, seed=cfg.eval_seed,
                           include=("local", "optimised_installation", "optimised_s_S"), progress=progress)
    if not report.results:
        return None, None
    b, ev = min(report.results, key=lambda r: r[1].cost_mean)
    return b.name, ev.cost_mean


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
        self.demand += out[:, :, 0].sum(axis=0)
        self.filled += out[:, :, 1].sum(axis=0)
        self.stockouts += (out[:, :, 2] > 1e-9).sum(axis=0)
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
            self.logger.record(f"service/fill_rate/{node}", float(self.filled[d] / max(self.demand[d], 1e-300)))
            self.logger.record(f"service/cycle_service_level/{node}", float(1 - self.stockouts[d] / self.steps))
        for j, node in enumerate(self.node_names):
            self.logger.record(f"inventory/on_hand/{node}", float(self.on_hand[j] / self.steps))
        self._reset()


class EvalCheckpointCallback(BaseCallback):
    """Evaluates on fixed seeds, keeps the best model, writes checkpoints, and logs hyper-parameters."""

    def __init__(self, run_dir: Path, cfg: PPOConfig, scenario: Scenario, meta: dict,
                 baseline: tuple[str | None, float | None]) -> None:
        super().__init__()
        self.run_dir, self.cfg, self.scenario, self.meta = run_dir, cfg, scenario, meta
        self.baseline_name, self.baseline_cost = baseline
        self.best_cost: float | None = None
        self.next_eval = cfg.eval_every or None
        self.next_checkpoint = cfg.checkpoint_every or None
        self.horizon = cfg.horizon or scenario.horizon
        self.eval_sim = Simulator(scenario, n=cfg.eval_replications)
        self.started = time.perf_counter()

    def _on_training_start(self) -> None:
        cfg = self.cfg
        rows = "\n".join(f"| {k} | {v} |" for k, v in {**cfg.to_dict(), **self.meta}.items())
        self.logger.record("hyperparameters", f"| parameter | value |\n|---|---|\n{rows}",
                           exclude=("stdout", "log", "json", "csv"))
        hparams = {k: (v if isinstance(v, (int, float, str, bool)) else str(v)) for k, v in cfg.to_dict().items()}
        self.logger.record("hparams", HParam(hparams, {"eval/cost": 0.0}), exclude=("stdout", "log", "json", "csv"))
        if self.next_eval is not None:
            while self.next_eval <= self.num_timesteps:
                self.next_eval += self.cfg.eval_every
        if self.next_checkpoint is not None:
            while self.next_checkpoint <= self.num_timesteps:
                self.next_checkpoint += self.cfg.checkpoint_every

    def policy(self) -> PPOPolicy:
        env = self.training_env
        stats: tuple = (None, None)
        if isinstance(env, VecNormalize) and env.norm_obs:
            stats = (env.obs_rms.mean.copy(), env.obs_rms.var.copy(), env.clip_obs, env.epsilon)
        return PPOPolicy(self.model, self.cfg.action_mode, *stats, control=self.cfg.control, horizon=self.horizon,
                         observe_time=self.cfg.observe_time)

    def evaluate_now(self) -> float:
        cfg = self.cfg
        result = evaluate(self.eval_sim, self.policy(), periods=cfg.eval_periods, warmup=cfg.eval_warmup,
                          replications=cfg.eval_replications, seed=cfg.eval_seed)
        self.logger.record("eval/cost", result.cost_mean)
        self.logger.record("eval/cost_ci95", result.cost_ci95)
        self.logger.record("eval/fill_rate", result.fill_rate["network"])
        gap = None
        if self.baseline_cost is not None:
            gap = 100.0 * (result.cost_mean - self.baseline_cost) / self.baseline_cost
            self.logger.record("eval/baseline_cost", self.baseline_cost)
            self.logger.record("eval/gap_pct", gap)
        path = self.run_dir / "evaluations.csv"
        new = not path.exists()
        with path.open("a", newline="") as fh:
            w = csv.writer(fh)
            if new:
                w.writerow(["steps", "seconds", "cost", "cost_ci95", "fill_rate", "baseline", "baseline_cost", "gap_pct"])
            w.writerow([self.num_timesteps, round(time.perf_counter() - self.started, 2), result.cost_mean,
                        result.cost_ci95, result.fill_rate["network"], self.baseline_name, self.baseline_cost, gap])
        if self.best_cost is None or result.cost_mean < self.best_cost:
            self.best_cost = result.cost_mean
            self.policy().save(self.run_dir / "best", {**self.meta, "steps": self.num_timesteps,
                                                       "eval_cost": result.cost_mean})
        return result.cost_mean

    def save_checkpoint(self) -> None:
        folder = self.run_dir / "checkpoints" / str(self.num_timesteps)
        self.policy().save(folder, {**self.meta, "steps": self.num_timesteps})
        env = self.training_env
        if isinstance(env, VecNormalize):
            env.save(str(folder / "vecnormalize.pkl"))
        base = _base_env(env)
        state = {"steps": self.num_timesteps, "best_eval_cost": self.best_cost,
                 "torch_rng": torch.get_rng_state().tolist(),
                 "env_rngs": [r.bit_generator.state for r in base.sim.rngs]}
        (folder / "state.json").write_text(json.dumps(state))

    def _on_step(self) -> bool:
        if self.next_eval is not None and self.num_timesteps >= self.next_eval:
            self.evaluate_now()
            self.next_eval += self.cfg.eval_every
        if self.next_checkpoint is not None and self.num_timesteps >= self.next_checkpoint:
            self.save_checkpoint()
            self.next_checkpoint += self.cfg.checkpoint_every
        return True


def _latest_checkpoint(run_dir: Path) -> Path | None:
    folder = run_dir / "checkpoints"
    if not folder.is_dir():
        return None
    done = sorted((p for p in folder.iterdir() if (p / "state.json").is_file()), key=lambda p: int(p.name))
    return done[-1] if done else None


def train(scenario: str | Path | Scenario, cfg: PPOConfig, run_dir: str | Path, seed: int = 0,
          resume: bool = False, progress: bool = True) -> TrainResult:
    """Train (or, with ``resume``, continue training) a PPO agent; see the module docstring."""
    started = time.perf_counter()
    sc = load_scenario(scenario)
    run = Path(run_dir)
    checkpoint = _latest_checkpoint(run) if resume else None
    if resume:
        if not (run / "config.yaml").is_file():
            raise FileNotFoundError(f"--resume: {run} has no config.yaml; it is not a run folder")
        saved = yaml.safe_load((run / "config.yaml").read_text())
        cfg = PPOConfig.from_dict(saved["config"]).replace(total_steps=cfg.total_steps)
        seed = saved["seed"]
    elif run.exists() and any(run.iterdir()):
        raise FileExistsError(f"--run-dir: {run} exists and is not empty; pick a new folder or pass --resume")
    run.mkdir(parents=True, exist_ok=True)
    meta = {"scenario": sc.name, "scenario_source": sc.source, "seed": seed}
    (run / "config.yaml").write_text(yaml.safe_dump({"scenario": sc.name, "seed": seed, "config": cfg.to_dict()},
                                                    sort_keys=False))
    torch.set_num_threads(cfg.torch_threads)

    env_kwargs = dict(n_envs=cfg.n_envs, seed=seed, action_mode=cfg.action_mode, horizon=cfg.horizon,
                      observe_time=cfg.observe_time, initial_stock_spread=cfg.initial_stock_spread)
    venv = DecentralisedVecEnv(sc, **env_kwargs) if cfg.control == "decentralised" else make_vec_env(sc, **env_kwargs)
    if checkpoint is not None and (checkpoint / "vecnormalize.pkl").is_file():
        env = VecNormalize.load(str(checkpoint / "vecnormalize.pkl"), venv)
    else:
        env = VecNormalize(venv, norm_obs=cfg.normalize_obs, norm_reward=cfg.normalize_reward, gamma=cfg.gamma)
    lr = cfg.learning_rate if cfg.lr_schedule == "constant" else (lambda frac: cfg.learning_rate * frac)
    policy_kwargs = {"net_arch": {"pi": list(cfg.net_arch), "vf": list(cfg.net_arch)},
                     "activation_fn": torch.nn.Tanh if cfg.activation == "tanh" else torch.nn.ReLU,
                     "log_std_init": cfg.log_std_init}
    if checkpoint is not None:
        model = PPO.load(checkpoint / "model.zip", env=env, device="cpu", tensorboard_log=str(run / "tb"))
        state = json.loads((checkpoint / "state.json").read_text())
        torch.set_rng_state(torch.tensor(state["torch_rng"], dtype=torch.uint8))
        for rng, st in zip(_base_env(venv).sim.rngs, state["env_rngs"]):
            if rng is not None:
                rng.bit_generator.state = st
        done = int(state["steps"])
    else:
        model = PPO("MlpPolicy", env, learning_rate=lr, n_steps=cfg.n_steps, batch_size=cfg.batch_size,
                    n_epochs=cfg.n_epochs, gamma=cfg.gamma, gae_lambda=cfg.gae_lambda, clip_range=cfg.clip_range,
                    target_kl=cfg.target_kl,
                    ent_coef=cfg.ent_coef, vf_coef=cfg.vf_coef, max_grad_norm=cfg.max_grad_norm,
                    policy_kwargs=policy_kwargs, tensorboard_log=str(run / "tb"), seed=seed, device="cpu",
                    verbose=0)
        done = 0

    baseline = best_baseline(sc, cfg)
    evaluator = EvalCheckpointCallback(run, cfg, sc, meta, baseline)
    if checkpoint is not None:
        evaluator.best_cost = json.loads((checkpoint / "state.json").read_text()).get("best_eval_cost")
    remaining = max(cfg.total_steps - done, 0)
    if remaining:
        model.learn(total_timesteps=remaining, callback=CallbackList([MetricsCallback(), evaluator]),
                    tb_log_name="ppo", reset_num_timesteps=checkpoint is None, progress_bar=progress)
    else:
        evaluator.init_callback(model)         # nothing left to learn: set up for the final evaluation
    if cfg.eval_every:
        evaluator.evaluate_now()
        model.logger.dump(model.num_timesteps)
    evaluator.save_checkpoint()
    evaluator.policy().save(run / "final", {**meta, "steps": model.num_timesteps})
    return TrainResult(run_dir=run, steps=int(model.num_timesteps), best_eval_cost=evaluator.best_cost,
                       baseline_name=baseline[0], baseline_cost=baseline[1],
                       seconds=time.perf_counter() - started)
