"""Training configuration of a PPO agent: every hyper-parameter in one typed, validated record.

A config is a YAML mapping (``configs/ppo/*.yaml``) whose keys are the fields of
:class:`PPOConfig`; missing keys take the defaults below. Unknown keys, wrong types and values out
of range raise :class:`ConfigError` naming the field, the value and the rule.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import yaml

from meio.envs.hints import did_you_mean
from meio.envs.run_settings import RUN_SETTINGS, check_run_settings
from meio.envs.scenario import ScenarioError, read_yaml
from meio.envs.threads import parse_threads


#: Upper bounds of the sizes a config sets: beyond them a value is a typing slip that would fail deep
#: inside numpy or torch (an allocation of terabytes) or run for years, not a setting.
WHY_MAX = "a sanity limit against typing slips, not a modelling rule"
MAX_ROLLOUT = 10**7          # n_steps x n_envs observations, actions and values in SB3's rollout buffer
MAX_STEPS = 10**12           # environment steps of one run
MAX_LAYER = 65_536           # units of one hidden layer


class ConfigError(ValueError):
    """A training config breaks a rule; the message names the field."""


@dataclass(frozen=True)
class PPOConfig:
    """Hyper-parameters of :func:`meio.agents.train.train` (stable-baselines3 PPO over the batched VecEnv)."""

    #: Parallel copies of the scenario in the batched ``VecEnv`` (rows of one step call).
    n_envs: int = 16
    #: ``centralised``: one agent sees the whole network and orders on every lane;
    #: ``decentralised``: every node is an agent seeing only its own state, all nodes share one
    #: policy (parameter sharing) and the network's reward (``meio.envs.decentralised``).
    control: str = "centralised"
    #: ``order_up_to`` (actions are target positions: a base-stock rule is one constant action) or
    #: ``order_quantity`` (actions are order sizes).
    action_mode: str = "order_up_to"
    #: Episode length in periods (truncation); ``null`` keeps the scenario's horizon.
    horizon: int | None = None
    #: Observe ``periods_left`` (the clock of the truncated training episodes). ``false`` suits
    #: infinite-horizon tasks: SB3 bootstraps truncated episodes, so the clock carries no
    #: information and only lets the policy's orders drift with it.
    observe_time: bool = True
    #: Exploring starts: 0 starts every training episode from the scenario's initial stock; ``f > 0``
    #: draws each node's starting on-hand stock uniformly on ``[0, f mu_j (1 + L_j)]`` (mean demand
    #: through the node times one plus its lead time), so training visits overstocked and empty
    #: states that a long run can reach. Evaluations always start from the scenario's state.
    initial_stock_spread: float = 0.0
    #: Normalise observations with running statistics (SB3 ``VecNormalize``); saved with the model.
    normalize_obs: bool = True
    #: Scale rewards by a running estimate of the return's standard deviation (``VecNormalize``).
    normalize_reward: bool = True
    #: Discount factor of PPO's returns (and of the reward normaliser).
    gamma: float = 0.99
    #: GAE lambda.
    gae_lambda: float = 0.95
    #: Adam learning rate (constant, or linearly decayed to 0 with ``lr_schedule: linear``).
    learning_rate: float = 3e-4
    #: ``constant`` or ``linear`` (decay to 0 over the run).
    lr_schedule: str = "constant"
    #: Steps per environment per rollout (rollout size = ``n_steps * n_envs``).
    n_steps: int = 128
    #: Minibatch size of the gradient steps.
    batch_size: int = 256
    #: Passes over each rollout.
    n_epochs: int = 10
    #: PPO's clipping range.
    clip_range: float = 0.2
    #: Stop an update's epochs early when the approximate KL divergence exceeds this (``null``: never).
    target_kl: float | None = None
    #: Entropy bonus coefficient.
    ent_coef: float = 0.0
    #: Value loss coefficient.
    vf_coef: float = 0.5
    #: Gradient norm clip.
    max_grad_norm: float = 0.5
    #: Hidden layer sizes of the policy and value networks (separate networks of this shape).
    net_arch: tuple[int, ...] = (64, 64)
    #: ``tanh`` or ``relu``.
    activation: str = "tanh"
    #: Initial log standard deviation of the Gaussian policy.
    log_std_init: float = -1.0
    #: Environment steps of the whole run, summed over the ``n_envs`` copies (SB3's timesteps; with
    #: decentralised control, summed over the node-agents, so N times the network's periods).
    total_steps: int = 200_000
    #: Evaluate every this many environment steps (0: never).
    eval_every: int = 20_000
    #: Periods per evaluation replication (after ``eval_warmup``).
    eval_periods: int = 2_000
    #: Warm-up periods discarded in evaluations.
    eval_warmup: int = 100
    #: Evaluation replications, seeds ``eval_seed, eval_seed + 1, ...`` (fixed for the whole run).
    eval_replications: int = 8
    #: First evaluation seed.
    eval_seed: int = 10_000
    #: Save a checkpoint every this many environment steps (0: only at the end).
    checkpoint_every: int = 50_000
    #: Threads of PyTorch (1 is fastest on small machines, and stable when they are busy).
    torch_threads: int = 1
    #: Threads of the batched environment's step (``meio.envs.threads``): ``null`` takes ``meio train
    #: --threads``, else the environment variable ``MEIO_THREADS``, else 1; an integer >= 1; or
    #: ``auto`` (the cores not busy when training starts). More than one only pays for ``n_envs >= 128``
    #: on an idle machine; on a busy one a single thread is many times faster.
    threads: int | str | None = None
    #: Free text: what the config is for and the budget it needs.
    description: str = ""

    def to_dict(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        out["net_arch"] = list(self.net_arch)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> "PPOConfig":
        data = dict(data or {})
        names = [f.name for f in dataclasses.fields(cls)]
        for key in data:
            if key not in names:
                raise ConfigError(f"{key}: unknown key{did_you_mean(str(key), names)}; "
                                  f"allowed keys: {', '.join(names)}")
        values = {}
        for f in dataclasses.fields(cls):
            if f.name not in data:
                continue
            values[f.name] = _check(f.name, data[f.name])
        cfg = cls(**values)
        if cfg.batch_size > cfg.n_steps * cfg.n_envs:
            raise ConfigError(f"batch_size: {cfg.batch_size} exceeds the rollout size n_steps * n_envs = "
                              f"{cfg.n_steps * cfg.n_envs}")
        if cfg.n_steps * cfg.n_envs > MAX_ROLLOUT:
            raise ConfigError(f"n_steps: {cfg.n_steps} x n_envs {cfg.n_envs} = {cfg.n_steps * cfg.n_envs:,} steps per "
                              f"rollout is above {MAX_ROLLOUT:,}, the most one rollout buffer holds ({WHY_MAX})")
        try:
            check_run_settings(periods=cfg.eval_periods, replications=cfg.eval_replications)
        except ValueError as exc:
            raise ConfigError(f"eval_periods, eval_replications: {exc}") from None
        return cfg

    def replace(self, **changes: Any) -> "PPOConfig":
        return PPOConfig.from_dict({**self.to_dict(), **{k: v for k, v in changes.items() if v is not None}})


def _check(name: str, value: Any) -> Any:
    def integer(lo: int, hi: int | None = None) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < lo:
            raise ConfigError(f"{name}: {value!r} is not an integer >= {lo}")
        if hi is not None and value > hi:
            raise ConfigError(f"{name}: {value!r} is above {hi:,}, the most this setting takes ({WHY_MAX})")
        return value

    def number(lo: float, hi: float | None = None, strict: bool = False) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{name}: {value!r} is not a number")
        try:
            v = float(value)
        except OverflowError:               # an integer beyond float range
            v = math.inf
        if not math.isfinite(v):            # NaN passes every comparison below; inf reaches torch as is
            raise ConfigError(f"{name}: {value!r} is not a finite number")
        if v < lo or (strict and v == lo) or (hi is not None and v > hi):
            rng = f"{'>' if strict else '>='} {lo:g}" + (f" and <= {hi:g}" if hi is not None else "")
            raise ConfigError(f"{name}: {value!r} is out of range; it must be {rng}")
        return v

    def choice(*options: str) -> str:
        if value not in options:
            raise ConfigError(f"{name}: {value!r} is not one of {', '.join(options)}")
        return value

    def env_threads() -> int | str:
        try:
            return parse_threads(value, name)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None

    def boolean() -> bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{name}: {value!r} is not true or false")
        return value

    rules = {
        "n_envs": lambda: integer(1, RUN_SETTINGS["n"][1]), "control": lambda: choice("centralised", "decentralised"),
        "action_mode": lambda: choice("order_up_to", "order_quantity"),
        "horizon": lambda: None if value is None else integer(1, RUN_SETTINGS["periods"][1]),
        "observe_time": boolean, "initial_stock_spread": lambda: number(0.0),
        "normalize_obs": boolean, "normalize_reward": boolean,
        "gamma": lambda: number(0.0, 1.0, strict=True), "gae_lambda": lambda: number(0.0, 1.0),
        "learning_rate": lambda: number(0.0, strict=True), "lr_schedule": lambda: choice("constant", "linear"),
        "n_steps": lambda: integer(2, MAX_ROLLOUT), "batch_size": lambda: integer(2, MAX_ROLLOUT),
        "n_epochs": lambda: integer(1, 10_000),
        "clip_range": lambda: number(0.0, 1.0, strict=True),
        "target_kl": lambda: None if value is None else number(0.0, strict=True), "ent_coef": lambda: number(0.0),
        "vf_coef": lambda: number(0.0), "max_grad_norm": lambda: number(0.0, strict=True),
        "activation": lambda: choice("tanh", "relu"), "log_std_init": lambda: number(-20.0, 5.0),
        "total_steps": lambda: integer(1, MAX_STEPS), "eval_every": lambda: integer(0, MAX_STEPS),
        "eval_periods": lambda: integer(20, RUN_SETTINGS["periods"][1]),
        "eval_warmup": lambda: integer(0, RUN_SETTINGS["warmup"][1]),
        "eval_replications": lambda: integer(2, RUN_SETTINGS["replications"][1]),
        "eval_seed": lambda: integer(0, RUN_SETTINGS["seed"][1]),
        "checkpoint_every": lambda: integer(0, MAX_STEPS), "torch_threads": lambda: integer(1, 1024),
        "threads": lambda: None if value is None else env_threads(),
    }
    if name == "net_arch":
        if not isinstance(value, (list, tuple)) or not value or any(
                isinstance(x, bool) or not isinstance(x, int) or x < 1 or x > MAX_LAYER for x in value):
            raise ConfigError(f"{name}: {value!r} is not a non-empty list of layer sizes (integers 1..{MAX_LAYER:,})")
        return tuple(value)
    if name == "description":
        if not isinstance(value, str):
            raise ConfigError(f"{name}: expected text, got {value!r}")
        return value
    return rules[name]()


def configs_dir() -> Path:
    """Folder of the shipped training configs (``configs/ppo``)."""
    from importlib import resources

    return Path(str(resources.files("meio.configs"))) / "ppo"


def load_config(name_or_path: str | Path | None) -> PPOConfig:
    """A shipped config by name (``configs/ppo/NAME.yaml``), a YAML file by path, or the defaults."""
    if name_or_path is None:
        return PPOConfig()
    path = Path(name_or_path)
    if not path.is_file():
        shipped = configs_dir() / f"{name_or_path}.yaml"
        if not shipped.is_file():
            names = sorted(p.stem for p in configs_dir().glob("*.yaml"))
            raise ConfigError(f"config: {str(name_or_path)!r} is neither a file nor a shipped config; "
                              f"shipped: {', '.join(names)}")
        path = shipped
    try:
        data = read_yaml(path.read_text(), str(path))
    except yaml.YAMLError as exc:
        raise ConfigError(f"config: {path} is not valid YAML: {exc}") from None
    except ScenarioError as exc:                    # a key given twice: the last would silently win
        raise ConfigError(f"config: {path}: {exc}") from None
    if data is not None and not isinstance(data, Mapping):
        raise ConfigError(f"config: {path} must hold a mapping of hyper-parameters, got {type(data).__name__}")
    return PPOConfig.from_dict(data)
