"""Training configuration of a PPO agent: every hyper-parameter in one typed, validated record.

A config is a YAML mapping (``configs/ppo/*.yaml``) whose keys are the fields of
:class:`PPOConfig`; missing keys take the defaults. Each field is declared once, as a pydantic v2
field with its type, default, rule (bounds, choices) and description; the loader, the error
messages and the JSON Schema of config files (:func:`config_json_schema`) all read that one
declaration. Unknown keys, wrong types, non-finite numbers and values out of range raise
:class:`ConfigError`, which lists every problem at once, each naming the field, the value and the
rule.

Types are strict, as YAML gives them: an integer field takes only integers (``64``, not ``64.0``
nor ``"64"``), a number field takes integers and floats and stores a float, and a switch takes only
``true`` / ``false``. So a value is what the file says, with the Python type the trainer has always
been given (``tests/test_config_model.py`` checks the shipped configs field by field). One pitfall
this keeps visible: PyYAML reads ``3e-4`` (no dot) as text, which is refused with a hint to write
``3.0e-4``.
"""

from __future__ import annotations

import functools
import math
import re
import types
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal, Self, TypeVar, Union, get_args, get_origin

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
    model_validator,
)
from pydantic_core import ErrorDetails, PydanticCustomError

from meio.envs.hints import did_you_mean
from meio.envs.run_settings import RUN_SETTINGS, check_run_settings
from meio.envs.scenario import ScenarioError, read_yaml
from meio.envs.threads import parse_threads

__all__ = ["ConfigError", "PPOConfig", "config_json_schema", "configs_dir", "load_config"]

#: Upper bounds of the sizes a config sets: beyond them a value is a typing slip that would fail deep
#: inside numpy or torch (an allocation of terabytes) or run for years, not a setting.
WHY_MAX = "a sanity limit against typing slips, not a modelling rule"
MAX_ROLLOUT = 10**7  # n_steps x n_envs observations, actions and values in SB3's rollout buffer
MAX_STEPS = 10**12  # environment steps of one run
MAX_LAYER = 65_536  # units of one hidden layer

#: Error type of the messages this module's validators write whole (``field: value ... rule``), one
#: per line: the thread setting and the rules between fields.
OWN_ERROR = "meio_config"

#: JSON Schema of the ``threads`` field: what :func:`meio.envs.threads.parse_threads` accepts.
THREADS_SCHEMA = {
    "anyOf": [
        {"type": "integer", "minimum": 1},
        {"type": "string", "pattern": r"^\s*([Aa][Uu][Tt][Oo]|0*[1-9][0-9]*)\s*$"},
        {"type": "null"},
    ]
}


class ConfigError(ValueError):
    """A training config breaks one or more rules; each message names its field.

    ``errors`` lists every problem found as ``(field, message)`` pairs: unknown keys first, then
    the fields in declaration order, then the rules between fields (checked once every field is
    sound). ``str(error)`` is the messages, one per line.
    """

    def __init__(self, message: str = "", *, errors: list[tuple[str, str]] | None = None) -> None:
        self.errors: list[tuple[str, str]] = (
            list(errors) if errors is not None else [(message.split(": ", 1)[0], message)]
        )
        super().__init__("\n".join(msg for _, msg in self.errors))

    def __reduce__(self) -> tuple:
        return (_rebuild_error, (self.errors,))


def _rebuild_error(errors: list[tuple[str, str]]) -> ConfigError:
    return ConfigError(errors=errors)


def eval_replications_field(default: int) -> Any:
    """The ``eval_replications`` field with ``default``: one declaration of its rule and meaning for
    every algorithm, whose defaults differ (PPO 8, HDPO 4)."""
    return Field(
        default,
        ge=2,
        le=RUN_SETTINGS["replications"][1],
        description=("Evaluation replications, seeds eval_seed, eval_seed + 1, ... (fixed for the whole run)."),
    )


class TrainingConfig(BaseModel):
    """What every training config (PPO's, HDPO's) shares: strict, frozen, no unknown keys; a
    ``threads`` field read by the one thread rule (:func:`meio.envs.threads.parse_threads`); YAML
    lists for the tuple fields; ``from_dict`` raising :class:`ConfigError` with every problem; and
    ``to_dict`` / ``replace``; and the fields that mean the same in every algorithm (how evaluations
    simulate, the thread counts, the free-text description), declared once here. Subclasses declare
    their own fields and their rules between fields; where a shared field's default differs, a
    subclass redeclares it through the same ``*_field`` function with its own default only."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)

    eval_periods: int = Field(
        2_000,
        ge=20,
        le=RUN_SETTINGS["periods"][1],
        description=("Periods per evaluation replication (after eval_warmup)."),
    )
    eval_warmup: int = Field(
        100, ge=0, le=RUN_SETTINGS["warmup"][1], description=("Warm-up periods discarded in evaluations.")
    )
    eval_replications: int = eval_replications_field(8)
    eval_seed: int = Field(10_000, ge=0, le=RUN_SETTINGS["seed"][1], description="First evaluation seed.")
    torch_threads: int = Field(
        1,
        ge=1,
        le=1024,
        description=("Threads of PyTorch (1 is fastest on small machines, and stable when they are busy)."),
    )
    threads: Annotated[int | Literal["auto"] | None, WithJsonSchema(THREADS_SCHEMA)] = Field(
        None,
        description=(
            "Threads of the batched simulator's step (meio.envs.threads): PPO's training environment and every "
            "evaluation (HDPO trains in PyTorch, on torch_threads). null takes meio train --threads, else the "
            "environment variable MEIO_THREADS, else 1; an integer >= 1; or auto (the cores not busy when "
            "training starts). More than one only pays for 128 rows or more (n_envs; eval_replications in "
            "evaluations) on an idle machine; on a busy one a single thread is many times faster."
        ),
    )
    description: str = Field("", description="Free text: what the config is for and the budget it needs.")

    @field_validator("*", mode="before")
    @classmethod
    def _tuples_from_lists(cls, value: Any, info: ValidationInfo) -> Any:
        # YAML gives a list; strict mode takes only a tuple, so lists (and only lists) are converted,
        # for the fields declared as tuples (layer sizes).
        if isinstance(value, list) and get_origin(cls.model_fields[info.field_name].annotation) is tuple:
            return tuple(value)
        return value

    @field_validator("threads", mode="before", check_fields=False)
    @classmethod
    def _thread_count(cls, value: Any) -> Any:
        # One rule for every thread setting (threads, --threads, MEIO_THREADS): "3" -> 3, "AUTO" -> "auto".
        if value is None:
            return None
        try:
            return parse_threads(value, "threads")
        except ValueError as exc:
            raise PydanticCustomError(OWN_ERROR, "{message}", {"message": str(exc)}) from None

    def evaluation_problems(self) -> list[str]:
        """The rule between the shared evaluation fields: the size of one evaluation
        (:func:`meio.envs.run_settings.check_run_settings`); subclasses add it to their own rules, so
        that every problem is reported together."""
        try:
            check_run_settings(periods=self.eval_periods, replications=self.eval_replications)
        except ValueError as exc:
            return [f"eval_periods, eval_replications: {exc}"]
        return []

    @staticmethod
    def refuse(problems: list[str]) -> None:
        """Raise the rules between fields that failed, all together (one ``field: ...`` message each)."""
        if problems:
            raise PydanticCustomError(OWN_ERROR, "{message}", {"message": "\n".join(problems)})

    def to_dict(self) -> dict[str, Any]:
        """Every field by name, in declaration order (tuples as lists): what a run's ``config.yaml`` stores."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in self.model_dump().items()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> Self:
        """Check ``data`` (a config file's mapping; ``None`` is empty) and fill in the defaults.

        Raises :class:`ConfigError` listing every problem.
        """
        if data is None:
            data = {}
        if not isinstance(data, Mapping):
            raise ConfigError(f"config: expected a mapping of hyper-parameters, got {type(data).__name__}")
        data = dict(data)
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise config_error(cls, exc, data) from None

    def replace(self, **changes: Any) -> Self:
        """A checked copy with ``changes``; a change of ``None`` means "not given" and keeps the value.

        Unlike pydantic's ``model_copy(update=...)``, which copies without checking, this applies every rule.
        """
        return self.from_dict({**self.to_dict(), **{k: v for k, v in changes.items() if v is not None}})


class PPOConfig(TrainingConfig):
    """Hyper-parameters of :func:`meio.agents.train.train` (stable-baselines3 PPO over the batched VecEnv).

    Symbols follow Schulman et al., "Proximal Policy Optimization Algorithms" (2017) for the
    clipping range epsilon, and Schulman et al., "High-Dimensional Continuous Control Using
    Generalized Advantage Estimation" (2016) for gamma and lambda.
    """

    model_config = ConfigDict(title="meio training config")

    n_envs: int = Field(
        16,
        ge=1,
        le=RUN_SETTINGS["n"][1],
        description=("Parallel copies of the scenario in the batched VecEnv (rows of one step call)."),
    )
    control: Literal["centralised", "decentralised"] = Field(
        "centralised",
        description=(
            "centralised: one agent sees the whole network and orders on every lane; decentralised: every "
            "node is an agent seeing only its own state, all nodes share one policy (parameter sharing) and "
            "the network's reward (meio.envs.decentralised)."
        ),
    )
    action_mode: Literal["order_up_to", "order_quantity", "echelon_order_up_to", "base_stock_residual"] = Field(
        "order_up_to",
        description=(
            "order_up_to (actions are target installation positions: a base-stock rule is one constant "
            "action), order_quantity (actions are order sizes), echelon_order_up_to (targets for the echelon "
            "position of the slot's destination: the node and everything downstream; one supplier per node) "
            "or base_stock_residual (a residual of at most residual_range periods of mean demand on the "
            "targets of the run's reference base-stock policy, computed when training starts and saved with "
            "the agent; the zero action is that policy)."
        ),
    )
    residual_range: float = Field(
        2.0,
        gt=0.0,
        le=1000.0,
        description=(
            "base_stock_residual: the largest change r of a target, in periods of mean demand through the "
            "node (an action a in [-1, 1] moves the target by a r mu_j); ignored by the other action modes."
        ),
    )
    horizon: int | None = Field(
        None,
        ge=1,
        le=RUN_SETTINGS["periods"][1],
        description=("Episode length in periods (truncation); null keeps the scenario's horizon."),
    )
    observe_time: bool = Field(
        True,
        description=(
            "Observe periods_left (the clock of the truncated training episodes). false suits "
            "infinite-horizon tasks: SB3 bootstraps truncated episodes, so the clock carries no information "
            "and only lets the policy's orders drift with it."
        ),
    )
    observe_echelon: bool = Field(
        False,
        description=(
            "Add each node's echelon inventory position (the node and everything downstream of it) to the "
            "observation, the quantity echelon_order_up_to targets are compared with; networks where every "
            "node has one supplier."
        ),
    )
    pipeline_length: int | None = Field(
        None,
        ge=0,
        le=RUN_SETTINGS["periods"][1],
        description=(
            "Pipeline features the agent sees per slot (lane and mode): null gives one per period of the "
            "slot's longest lead time (the layout changes with the lead times); P gives exactly P per slot, "
            "zeros past the slot's lead time, so the agent can be evaluated on the same network with other "
            "lead times up to P (meio sweep --models). A scenario with a longer lead time is refused."
        ),
    )
    initial_stock_spread: float = Field(
        0.0,
        ge=0.0,
        description=(
            "Exploring starts: 0 starts every training episode from the scenario's initial stock; f > 0 "
            "draws each node's starting on-hand stock uniformly on [0, f mu_j (1 + L_j)] (mean demand "
            "through the node times one plus its lead time), so training visits overstocked and empty states "
            "that a long run can reach. Evaluations always start from the scenario's state."
        ),
    )
    episode_start: Literal["initial", "continue"] = Field(
        "initial",
        description=(
            "What a training episode starts from after a truncation: initial, the scenario's starting state; "
            "continue, the state the last episode ended in (stock, pipeline, backorders, random streams and "
            "calendar run on; only the episode's clock, its totals and periods_left restart), so episodes "
            "start from the states a long run of the current policy visits and a run-away state is trained "
            "on, not left behind. A row's first episode starts from the scenario's state "
            "(meio.envs.vec_env; docs/agents.md, 'Drift and long runs')."
        ),
    )
    continue_share: float = Field(
        1.0,
        gt=0.0,
        le=1.0,
        description=(
            "With episode_start continue: the share f of the env copies that continue (the first "
            "ceil(f n_envs)); the others restart from the scenario's state (a mixed form). 1 with initial."
        ),
    )
    normalize_obs: bool = Field(
        True, description=("Normalise observations with running statistics (SB3 VecNormalize); saved with the model.")
    )
    normalize_reward: bool = Field(
        True, description=("Scale rewards by a running estimate of the return's standard deviation (VecNormalize).")
    )
    gamma: float = Field(
        0.99, gt=0.0, le=1.0, description=("Discount factor gamma of PPO's returns (and of the reward normaliser).")
    )
    gae_lambda: float = Field(
        0.95, ge=0.0, le=1.0, description=("GAE lambda (bias-variance trade-off of the advantages).")
    )
    learning_rate: float = Field(
        3e-4, gt=0.0, description=("Adam learning rate (constant, or linearly decayed to 0 with lr_schedule: linear).")
    )
    lr_schedule: Literal["constant", "linear"] = Field(
        "constant", description=("constant or linear (decay to 0 over the run).")
    )
    n_steps: int = Field(
        128,
        ge=2,
        le=MAX_ROLLOUT,
        description=("Steps per environment per rollout (rollout size = n_steps * n_envs, at most 10,000,000)."),
    )
    batch_size: int = Field(
        256,
        ge=2,
        le=MAX_ROLLOUT,
        description=("Minibatch size of the gradient steps (at most the rollout size n_steps * n_envs)."),
    )
    n_epochs: int = Field(10, ge=1, le=10_000, description="Passes over each rollout.")
    clip_range: float = Field(0.2, gt=0.0, le=1.0, description="PPO's clipping range epsilon.")
    target_kl: float | None = Field(
        None,
        gt=0.0,
        description=("Stop an update's epochs early when the approximate KL divergence exceeds this (null: never)."),
    )
    ent_coef: float = Field(0.0, ge=0.0, description="Entropy bonus coefficient.")
    vf_coef: float = Field(0.5, ge=0.0, description="Value loss coefficient.")
    max_grad_norm: float = Field(0.5, gt=0.0, description="Gradient norm clip.")
    net_arch: tuple[Annotated[int, Field(ge=1, le=MAX_LAYER)], ...] = Field(
        (64, 64),
        min_length=1,
        description=("Hidden layer sizes of the policy and value networks (separate networks of this shape)."),
    )
    activation: Literal["tanh", "relu"] = Field("tanh", description="tanh or relu.")
    log_std_init: float = Field(
        -1.0, ge=-20.0, le=5.0, description=("Initial log standard deviation of the Gaussian policy.")
    )
    log_std_final: float | None = Field(
        None,
        ge=-20.0,
        le=5.0,
        description=(
            "Anneal the exploration: log_std moves linearly from log_std_init at step 0 to this value at "
            "total_steps (set before each rollout, not learned), so the last updates optimise a nearly "
            "deterministic policy (null: log_std is learned from log_std_init)."
        ),
    )
    use_sde: bool = Field(
        False,
        description=(
            "Generalised state-dependent exploration (Raffin et al. 2022, SB3's use_sde): the Gaussian noise "
            "of the actions is a linear function of the policy's last hidden layer, with weights drawn "
            "once per sde_sample_freq steps instead of fresh noise every period; log_std_init is then "
            "the log standard deviation of those weights."
        ),
    )
    sde_sample_freq: int = Field(
        -1,
        ge=-1,
        le=MAX_STEPS,
        description=("use_sde: draw new noise weights every this many steps of each env copy (-1: once per rollout)."),
    )
    value_warmup_steps: int = Field(
        0,
        ge=0,
        le=MAX_STEPS,
        description=(
            "Environment steps at the start of a run during which only the value network learns: the "
            "policy's own layers and log_std are frozen for the updates of those rollouts, so the first "
            "policy updates follow advantages from a fitted critic instead of a random one (0: none)."
        ),
    )
    crn_group: int = Field(
        1,
        ge=1,
        le=RUN_SETTINGS["n"][1],
        description=(
            "Common random numbers in training: the env copies form groups of this many that share their "
            "demand, lead times and outages (copy i is seeded seed + i // crn_group), and an action's "
            "advantage is its lambda-return minus the mean of the other members' at the same step (an "
            "input-driven baseline, Mao et al. 2019), so the demand noise that every member sees cancels. "
            "1: independent copies, advantages from the critic (GAE). n_envs must be a multiple, and so must "
            "the number of copies that continue their episodes (continue_share)."
        ),
    )
    total_steps: int = Field(
        200_000,
        ge=1,
        le=MAX_STEPS,
        description=(
            "Environment steps of the whole run, summed over the n_envs copies (SB3's timesteps; with "
            "decentralised control, summed over the node-agents, so N times the network's periods)."
        ),
    )
    eval_every: int = Field(
        20_000, ge=0, le=MAX_STEPS, description=("Evaluate every this many environment steps (0: never).")
    )
    checkpoint_every: int = Field(
        50_000,
        ge=0,
        le=MAX_STEPS,
        description=("Save a checkpoint every this many environment steps (0: only at the end)."),
    )

    @model_validator(mode="after")
    def _sizes_fit(self) -> PPOConfig:
        # Rules between fields, checked once each field is sound; all of them are reported together.
        problems = []
        rollout = self.n_steps * self.n_envs
        if self.batch_size > rollout:
            problems.append(f"batch_size: {self.batch_size} exceeds the rollout size n_steps * n_envs = {rollout}")
        if rollout > MAX_ROLLOUT:
            problems.append(
                f"n_steps: {self.n_steps} x n_envs {self.n_envs} = {rollout:,} steps per rollout is "
                f"above {MAX_ROLLOUT:,}, the most one rollout buffer holds ({WHY_MAX})"
            )
        problems += self.evaluation_problems()
        if self.episode_start == "initial" and self.continue_share != 1.0:
            problems.append(
                f"continue_share: {self.continue_share!r} needs episode_start: continue (initial restarts every copy)"
            )
        if self.crn_group > 1:
            if self.n_envs % self.crn_group:
                problems.append(f"crn_group: {self.crn_group} does not divide n_envs {self.n_envs}")
            if self.control != "centralised":
                problems.append(f"crn_group: {self.crn_group} needs control: centralised (one copy per network)")
            going_on = math.ceil(self.continue_share * self.n_envs)
            if going_on % self.crn_group and not self.n_envs % self.crn_group:
                problems.append(
                    f"crn_group: {self.crn_group} needs the members of a group to start their episodes alike: "
                    f"continue_share {self.continue_share!r} lets ceil({self.continue_share!r} x {self.n_envs}) = "
                    f"{going_on} copies continue, not a multiple of {self.crn_group}"
                )
        self.refuse(problems)
        return self


@functools.cache
def _declared_rule(model: type[BaseModel], name: str) -> tuple[Any, float | None, bool, float | None]:
    """``(type, lower bound, lower bound strict, upper bound)`` of field ``name`` of ``model`` as declared
    (``None`` dropped from an optional type)."""
    info = model.model_fields[name]
    kind: Any = info.annotation
    metadata = list(info.metadata)
    if get_origin(kind) in (Union, types.UnionType):
        options = [a for a in get_args(kind) if a is not type(None)]
        words = [a for a in options if get_origin(a) is Literal]
        numbers = [a for a in options if get_origin(a) is not Literal]
        if words and numbers:  # e.g. an integer or "auto": the number's rule, the words named
            kind = numbers[0]
            if get_origin(kind) is Annotated:
                kind, *extra = get_args(kind)
                metadata += [r for f in extra for r in getattr(f, "metadata", [f])]
            kind = (kind, words[0])
        else:
            kind = options[0]
    lo: float | None = None
    strict = False
    hi: float | None = None
    for rule in metadata:
        if getattr(rule, "ge", None) is not None:
            lo = rule.ge
        if getattr(rule, "gt", None) is not None:
            lo, strict = rule.gt, True
        if getattr(rule, "le", None) is not None:
            hi = rule.le
    return kind, lo, strict, hi


def _problem(model: type[BaseModel], name: str, error: ErrorDetails, value: Any) -> str:
    """What is wrong with ``value`` for field ``name``, in the words of the field's declared rule."""
    kind, lo, strict, hi = _declared_rule(model, name)
    if isinstance(kind, tuple):  # a number or one of some words
        number, words = kind[0], get_args(kind[1])
        what = "an integer" if number is int else "a number"
        bounds = f" in {lo:g}..{hi:g}" if lo is not None and hi is not None else f" >= {lo:g}" if lo is not None else ""
        hint = did_you_mean(value, words) if isinstance(value, str) else ""
        return f"{value!r} is not {', '.join(map(repr, words))} or {what}{bounds}{hint}"
    if kind is bool:
        return f"{value!r} is not true or false"
    if kind is str:
        return f"expected text, got {value!r}"
    if get_origin(kind) is Literal:
        return f"{value!r} is not one of {', '.join(get_args(kind))}{did_you_mean(value, get_args(kind))}"
    if get_origin(kind) is tuple:
        return f"{value!r} is not a non-empty list of layer sizes (integers 1..{MAX_LAYER:,})"
    if kind is int:
        if error["type"] == "less_than_equal":
            return f"{value!r} is above {hi:,}, the most this setting takes ({WHY_MAX})"
        return f"{value!r} is not an integer >= {lo}"
    # a number
    if error["type"] == "finite_number" or (
        error["type"] == "float_type" and isinstance(value, int) and not isinstance(value, bool)
    ):  # an integer beyond float range
        return f"{value!r} is not a finite number"
    if error["type"] == "float_type":
        # PyYAML follows YAML 1.1, whose floats need a dot: 3e-4 is read as text, 3.0e-4 as a number.
        mantissa = re.fullmatch(r"\s*([-+]?[0-9]+)([eE][-+]?[0-9]+)\s*", value) if isinstance(value, str) else None
        hint = f" (YAML reads it as text: write {mantissa[1]}.0{mantissa[2]})" if mantissa else ""
        return f"{value!r} is not a number{hint}"
    parts = [f"{'>' if strict else '>='} {lo:g}"] if lo is not None else []
    parts += [f"<= {hi:g}"] if hi is not None else []
    return f"{value!r} is out of range; it must be {' and '.join(parts)}"


def config_error(model: type[BaseModel], exc: ValidationError, data: Mapping[Any, Any]) -> ConfigError:
    """pydantic's errors of a training config ``model`` (PPO's, HDPO's) in the project's words: one
    message per field, naming the field, the value and the rule. Validators write their own whole
    messages as errors of type :data:`OWN_ERROR`."""
    names = list(model.model_fields)
    unknown: list[tuple[str, str]] = []
    found: list[tuple[str, str]] = []
    seen: set[str] = set()
    for error in exc.errors(include_url=False):
        loc = error["loc"]
        if error["type"] in ("extra_forbidden", "invalid_key"):  # invalid_key: a key that is not text
            key = str(loc[0]) if loc else str(error["input"])
            unknown.append((key, f"{key}: unknown key{did_you_mean(key, names)}; allowed keys: {', '.join(names)}"))
        elif error["type"] == OWN_ERROR:
            found.extend((line.split(": ", 1)[0], line) for line in error["msg"].splitlines())
        elif loc and loc[0] not in seen:  # the first problem of a field says it all
            name = str(loc[0])
            seen.add(name)
            value = data[name] if name in data else error["input"]  # the whole value, not one item of a list
            found.append((name, f"{name}: {_problem(model, name, error, value)}"))
    return ConfigError(errors=unknown + found)


def config_json_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of a training config file (``configs/ppo/*.yaml``).

    Generated from the declaration of :class:`PPOConfig`: every field with its type, default, bounds,
    choices and description; unknown keys are refused (``additionalProperties: false``). It cannot
    say two things the loader checks: that numbers are finite (JSON has no NaN; YAML's ``.nan``
    passes a JSON Schema validator) and the rules between fields (``batch_size <= n_steps * n_envs``,
    the rollout and evaluation sizes, ``continue_share`` other than 1 only with ``episode_start: continue``).
    """
    return {
        **PPOConfig.model_json_schema(),
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "description": "A meio PPO training config (configs/ppo/*.yaml): hyper-parameters of meio train; "
        "missing keys take the defaults.",
    }


def configs_dir(algo: str = "ppo") -> Path:
    """Folder of the shipped training configs of ``algo`` (``configs/ppo``, ``configs/hdpo``)."""
    from importlib import resources

    return Path(str(resources.files("meio.configs"))) / algo


ConfigModel = TypeVar("ConfigModel", bound=BaseModel)


def read_config(model: type[ConfigModel], name_or_path: str | Path | None, algo: str) -> ConfigModel:
    """A config of ``model`` (which has ``from_dict``): a shipped one by name
    (``configs/<algo>/NAME.yaml``), a YAML file by path, or the defaults (``None``)."""
    if name_or_path is None:
        return model()
    path = Path(name_or_path)
    if not path.is_file():
        shipped = configs_dir(algo) / f"{name_or_path}.yaml"
        if not shipped.is_file():
            names = sorted(p.stem for p in configs_dir(algo).glob("*.yaml"))
            raise ConfigError(
                f"config: {str(name_or_path)!r} is neither a file nor a shipped config of {algo}; "
                f"shipped: {', '.join(names)}"
            )
        path = shipped
    try:
        data = read_yaml(path.read_text(), str(path))
    except yaml.YAMLError as exc:
        raise ConfigError(f"config: {path} is not valid YAML: {exc}") from None
    except ScenarioError as exc:  # a key given twice: the last would silently win
        raise ConfigError(f"config: {path}: {exc}") from None
    if data is not None and not isinstance(data, Mapping):
        raise ConfigError(f"config: {path} must hold a mapping of hyper-parameters, got {type(data).__name__}")
    return model.from_dict(data)  # type: ignore[attr-defined]


def load_config(name_or_path: str | Path | None) -> PPOConfig:
    """A shipped PPO config by name (``configs/ppo/NAME.yaml``), a YAML file by path, or the defaults."""
    return read_config(PPOConfig, name_or_path, "ppo")
