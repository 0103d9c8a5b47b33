"""``meio experiment``: learned methods on a suite of scenarios, over seeds and configs, on Ray Tune.

A spec (YAML, :class:`ExperimentSpec`) names scenarios, methods with their configs, seeds, a budget,
and optionally a search space over config fields, a search algorithm and early stopping. The
experiment runs in two stages:

1. with ``search.algorithm: optuna``, one Tune search per scenario and method (Optuna's TPE through
   Tune's ``OptunaSearch``, on the first seed) finds the config with the lowest final metric;
2. one Tune grid runs every *cell* (a scenario, a method and a config: the grid's points, the random
   draws, or the best config found by Optuna) on every seed.

One trial is one training run (:func:`meio.agents.train.train` for ``ppo``) with its own run folder
``OUT/runs/SCENARIO/METHOD-CELL-seedK`` (``config.yaml``, ``tb/``, ``evaluations.csv``, checkpoints),
reporting ``eval/cost`` and ``eval/gap_pct`` to Tune at every evaluation, so that ASHA or the median
rule can stop bad trials. Checkpoints are written at every evaluation, so a trial that is stopped
loses at most one evaluation interval: ``--resume`` restores the Tune experiments
(``Tuner.restore``), finished trials are kept as they are, and unfinished ones continue their run
folder (``train(..., resume=True)``).

Each trial pins its threads to the CPUs Tune gave it (``c``): ``torch.set_num_threads(c)``,
``numba.set_num_threads(c)``, the config's ``threads`` and ``torch_threads`` and ``MEIO_THREADS``
set to ``c``, and numba's pool sized by ``NUMBA_NUM_THREADS = c`` in the workers' environment. N
trials on N cores therefore run N threads, never N^2.

The results table (:func:`results_table`) has one row per scenario, method and config: for each
seed the trained agent (``best/``) and every applicable classical policy are simulated on common
random numbers (:func:`meio.benchmark.run_benchmark`), giving the agent's cost and its paired gap
``g_k = 100 (C_agent - C_ref) / C_ref`` to the reference classical policy (Clark-Scarf where it
applies, else the cheapest stable one). These simulations run as Ray tasks (one per scenario for
the classical policies, one per trial for its agent), one CPU and one thread each. Over the seeds
``k = 1..K`` the table gives the mean with its 95% Student-t interval and the interquartile mean
(IQM: the mean of the middle half of the sorted values, Agarwal et al., "Deep Reinforcement
Learning at the Edge of the Statistical Precipice", NeurIPS 2021, as ``rliable`` computes it).
"""

from __future__ import annotations

import inspect
import itertools
import json
import math
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from scipy import stats

__all__ = [
    "ExperimentError",
    "ExperimentSpec",
    "Method",
    "METHODS",
    "iqm",
    "load_spec",
    "run_experiment",
    "results_table",
    "start_ray",
]


class ExperimentError(ValueError):
    """An experiment spec breaks a rule; the message names the field path, the value and the rule."""


# ---------------------------------------------------------------------------------------------------
# The spec


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Dimension(_Strict):
    """One searched config field: exactly one of ``grid`` (every value), ``choice`` (one value drawn),
    ``uniform`` or ``loguniform`` (``[low, high]``, drawn uniformly in the value or its logarithm)."""

    grid: list[Any] | None = Field(None, min_length=1)
    choice: list[Any] | None = Field(None, min_length=1)
    uniform: tuple[float, float] | None = None
    loguniform: tuple[float, float] | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> Dimension:
        given = [k for k in ("grid", "choice", "uniform", "loguniform") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(
                f"give exactly one of grid, choice, uniform, loguniform (got {', '.join(given) or 'none'})"
            )
        for kind in ("uniform", "loguniform"):
            bounds = getattr(self, kind)
            if bounds is not None:
                lo, hi = bounds
                if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
                    raise ValueError(f"{kind}: [{lo}, {hi}] is not a range low < high of finite numbers")
                if kind == "loguniform" and lo <= 0:
                    raise ValueError(f"loguniform: [{lo}, {hi}] needs low > 0")
        return self

    @property
    def kind(self) -> str:
        return next(k for k in ("grid", "choice", "uniform", "loguniform") if getattr(self, k) is not None)

    def values(self) -> list[Any]:
        """The values a config may take that bound the dimension (checked against the config's rules)."""
        return list(self.grid or self.choice or self.uniform or self.loguniform)


class Budget(_Strict):
    """Length of each trial (``total_steps``, in the method's unit) and its evaluation (and
    checkpoint) interval."""

    total_steps: int = Field(ge=1)
    eval_every: int = Field(ge=1)


class MethodSpec(_Strict):
    """A learned method's config: ``config`` (a shipped name or a path), fields ``set`` on top of
    it, and a ``search`` space over fields."""

    config: str = "default"
    set: dict[str, Any] = Field(default_factory=dict)
    search: dict[str, Dimension] = Field(default_factory=dict)
    #: This method's budget, in its own unit (PPO: environment steps; HDPO: gradient iterations); default: the spec's.
    budget: Budget | None = None


class SearchSpec(_Strict):
    """How configs are chosen: ``grid`` (every combination of the dimensions' values), ``random``
    (``samples`` draws with a seeded numpy Generator), ``optuna`` (``samples`` TPE trials per scenario
    and method on the first seed; then the best config runs on every seed)."""

    algorithm: Literal["grid", "random", "optuna"] = "grid"
    samples: int = Field(1, ge=1, le=10_000)
    seed: int = Field(0, ge=0)
    metric: Literal["eval/gap_pct", "eval/cost"] = "eval/gap_pct"


class StoppingSpec(_Strict):
    """Early stopping of bad trials: ASHA (Li et al. 2020) or the median stopping rule (Golovin et
    al. 2017), on the search metric, in evaluations (each method's own ``eval_every``); no trial is
    stopped before ``grace_evaluations`` evaluations."""

    scheduler: Literal["asha", "median"]
    grace_evaluations: int = Field(1, ge=1)
    reduction_factor: float = Field(2.0, gt=1.0)


class EvaluationSpec(_Strict):
    """The final comparison on common random numbers (:func:`meio.benchmark.run_benchmark`)."""

    periods: int = Field(2000, ge=20)
    warmup: int = Field(200, ge=0)
    replications: int = Field(10, ge=2)
    seed: int = Field(0, ge=0)
    search_periods: int = Field(1000, ge=20)
    search_replications: int = Field(8, ge=2)
    baselines: list[str] | None = None

    @field_validator("baselines")
    @classmethod
    def _known(cls, value: list[str] | None) -> list[str] | None:
        from meio.baselines.run import BASELINE_NAMES

        for name in value or []:
            if name not in BASELINE_NAMES:
                raise ValueError(f"{name!r} is not a baseline; known: {', '.join(BASELINE_NAMES)}")
        return value


class ExperimentSpec(_Strict):
    """An experiment: scenarios x methods x configs x seeds (see the module docstring)."""

    name: str = Field("experiment", pattern=r"^[A-Za-z0-9_.-]+$")
    scenarios: list[str] = Field(min_length=1)
    methods: dict[str, MethodSpec] = Field(min_length=1)
    seeds: list[int] = Field(min_length=1)
    budget: Budget
    search: SearchSpec = Field(default_factory=SearchSpec)
    early_stopping: StoppingSpec | None = None
    cpus_per_trial: int = Field(1, ge=1)
    evaluation: EvaluationSpec = Field(default_factory=EvaluationSpec)
    #: Where Tune keeps its experiment state (default ``OUT/tune``): a shared folder or an object-store URI.
    storage: str | None = None

    @field_validator("seeds")
    @classmethod
    def _seeds(cls, value: list[int]) -> list[int]:
        if any(s < 0 for s in value) or len(set(value)) != len(value):
            raise ValueError(f"{value} must be distinct integers >= 0")
        return value

    @field_validator("methods")
    @classmethod
    def _methods(cls, value: dict[str, MethodSpec]) -> dict[str, MethodSpec]:
        for name in value:
            method_for(name)
        return value


def _error_text(exc: ValidationError) -> str:
    lines = []
    for e in exc.errors(include_url=False):
        path = "".join(f"[{p}]" if isinstance(p, int) else (f".{p}" if i else str(p)) for i, p in enumerate(e["loc"]))
        msg = "unknown key" if e["type"] == "extra_forbidden" else e["msg"].removeprefix("Value error, ")
        lines.append(f"{path or 'spec'}: {msg} (got {e['input']!r})")
    return "\n".join(lines)


def load_spec(path_or_data: str | Path | dict[str, Any], base_dir: Path | None = None) -> ExperimentSpec:
    """Read and check a spec, everything before any trial starts: the keys and ranges, that every
    scenario loads, that every method's config (with ``set``, the budget and each end of each
    searched range) passes the method's config rules. Raises :class:`ExperimentError` naming the field."""
    from meio.envs.scenario import ScenarioError, load_scenario

    if isinstance(path_or_data, dict):
        data, base = path_or_data, base_dir or Path.cwd()
    else:
        path = Path(path_or_data)
        if not path.is_file():
            raise ExperimentError(f"spec: {path} is not a file")
        try:
            data = yaml.safe_load(path.read_text())
        except yaml.YAMLError as exc:
            raise ExperimentError(f"spec: {path} is not valid YAML: {exc}") from None
        base = base_dir or path.parent
    if not isinstance(data, dict):
        raise ExperimentError(f"spec: expected a mapping, got {type(data).__name__}")
    try:
        spec = ExperimentSpec.model_validate(data)
    except ValidationError as exc:
        raise ExperimentError(_error_text(exc)) from None
    scenarios = []
    for i, name in enumerate(spec.scenarios):
        local = base / name
        ref = str(local.resolve()) if local.is_file() else name
        try:
            load_scenario(ref)
        except (ScenarioError, FileNotFoundError, ValueError) as exc:
            raise ExperimentError(f"scenarios[{i}]: {name!r}: {exc}") from None
        scenarios.append(ref)
    if len({_scenario_label(s) for s in scenarios}) != len(scenarios):
        raise ExperimentError(f"scenarios: {spec.scenarios} name one scenario twice")
    for name, m in spec.methods.items():
        method = method_for(name)
        where = f"methods.{name}"
        cfg_ref = str((base / m.config).resolve()) if (base / m.config).is_file() else m.config
        try:
            cfg = method.load_config(cfg_ref)
        except ValueError as exc:
            raise ExperimentError(f"{where}.config: {exc}") from None
        fixed = {**m.set, **_budget_fields(spec, name, 1)}
        try:
            cfg = cfg.replace(**fixed)
        except ValueError as exc:
            raise ExperimentError(f"{where}.set: {exc}") from None
        for field, dim in m.search.items():
            if field not in type(cfg).model_fields or field in fixed:
                raise ExperimentError(
                    f"{where}.search.{field}: not a searchable field of the {name} config "
                    f"(the budget fields and those in set are fixed)"
                )
            if spec.search.algorithm == "grid" and dim.kind in ("uniform", "loguniform"):
                raise ExperimentError(
                    f"{where}.search.{field}: {dim.kind} needs search.algorithm random or optuna; "
                    "grid search takes grid or choice"
                )
            for v in dim.values():
                try:
                    cfg.replace(**{field: v})
                except ValueError as exc:
                    raise ExperimentError(f"{where}.search.{field}: {v!r}: {exc}") from None
        spec.methods[name] = m.model_copy(update={"config": cfg_ref})
    return spec.model_copy(update={"scenarios": scenarios})


def _budget_fields(spec: ExperimentSpec, method: str, cpus: int) -> dict[str, Any]:
    """The config fields a trial fixes: its budget, checkpoints at every evaluation, threads = its CPUs."""
    b = spec.methods[method].budget or spec.budget
    return {
        method_for(method).total_field: b.total_steps,
        "eval_every": b.eval_every,
        "checkpoint_every": b.eval_every,
        "threads": cpus,
        "torch_threads": cpus,
    }


def _scenario_label(ref: str) -> str:
    return Path(ref).stem if ref.endswith((".yaml", ".yml")) else ref


# ---------------------------------------------------------------------------------------------------
# Methods: how to load a config, train, and load the trained policy


@dataclass(frozen=True)
class Method:
    """A learned method: its config loader (name or path -> a pydantic config with ``replace``), its
    training function ``train(scenario, cfg, run_dir, seed=, resume=, progress=, on_evaluation=)``
    (writing the run folder layout of :mod:`meio.agents.train`), and its saved-policy loader."""

    name: str
    load_config: Callable[[str], Any]
    train: Callable[..., Any]
    #: The config field of the run's length (the spec's ``budget.total_steps`` goes there).
    total_field: str = "total_steps"

    def load_policy(self, run: Path, label: str) -> Any:
        """The run's saved agent (``best/``, else ``final/``), by the class its ``meta.json`` names."""
        from meio.agents.policy import load_agent

        return load_agent(run, name=label)

    @property
    def reports_evaluations(self) -> bool:
        """Whether ``train`` takes ``on_evaluation`` (else the trial reports the evaluations when it ends)."""
        return "on_evaluation" in inspect.signature(self.train).parameters


def _ppo() -> Method:
    from meio.agents.config import load_config
    from meio.agents.train import train

    return Method("ppo", load_config, train)


def _hdpo() -> Method:
    from meio.agents.hdpo import load_hdpo_config, train_hdpo

    return Method("hdpo", load_hdpo_config, train_hdpo, total_field="iterations")


#: Method name -> a function building its :class:`Method` (imports happen there, in the trial).
METHODS: dict[str, Callable[[], Method]] = {"ppo": _ppo, "hdpo": _hdpo}


def method_for(name: str) -> Method:
    """The method ``name``; a ``ValueError`` naming it when it is unknown or cannot be loaded here."""
    if name not in METHODS:
        raise ValueError(f"{name!r} is not a method; known: {', '.join(METHODS)}")
    try:
        return METHODS[name]()
    except (ImportError, AttributeError) as exc:
        raise ValueError(f"{name!r} is not available in this installation ({exc})") from None


# ---------------------------------------------------------------------------------------------------
# Cells: the configs that run on every seed


def _label(overrides: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in overrides.items()) or "-"


def cells(spec: ExperimentSpec) -> list[dict[str, Any]]:
    """The (scenario, method, config) cells of the seed grid, before any Optuna search: every grid
    point, or ``samples`` random draws (numpy ``default_rng(search.seed)``; ``choice`` and ``grid``
    values are drawn uniformly, ``loguniform`` uniformly in the logarithm)."""
    out = []
    rng = np.random.default_rng(spec.search.seed)
    for name, m in spec.methods.items():
        if not m.search or spec.search.algorithm == "optuna":
            points = [{}]
        elif spec.search.algorithm == "grid":
            keys = list(m.search)
            points = [dict(zip(keys, combo)) for combo in itertools.product(*(m.search[k].values() for k in keys))]
        else:
            points = []
            for _ in range(spec.search.samples):
                point = {}
                for k, d in m.search.items():
                    if d.kind in ("grid", "choice"):
                        vals = d.values()
                        point[k] = vals[int(rng.integers(len(vals)))]
                    elif d.kind == "uniform":
                        point[k] = float(rng.uniform(*d.uniform))
                    else:
                        point[k] = float(math.exp(rng.uniform(math.log(d.loguniform[0]), math.log(d.loguniform[1]))))
                points.append(point)
        for s in spec.scenarios:
            for i, p in enumerate(points):
                out.append({"scenario": s, "method": name, "cell": f"c{i}" if m.search else "base", "overrides": p})
    return out


# ---------------------------------------------------------------------------------------------------
# The trial


def trial_threads() -> int:
    """CPUs Ray assigned to this trial (1 outside Ray)."""
    try:
        import ray

        if not ray.is_initialized():  # asking a context outside Ray would start a Ray instance
            return 1
        return max(1, int(round(ray.get_runtime_context().get_assigned_resources().get("CPU", 1))))
    except Exception:  # noqa: BLE001 - outside a Ray worker there is nothing assigned
        return 1


def pin_threads(cpus: int) -> dict[str, int]:
    """Pin this process's numeric threads to ``cpus``; returns what is now in force (reported to Tune)."""
    import numba
    import torch

    from meio.envs.threads import ENV_VAR, resolve_threads

    os.environ[ENV_VAR] = str(cpus)
    torch.set_num_threads(cpus)
    numba.set_num_threads(min(cpus, numba.config.NUMBA_NUM_THREADS))
    return {
        "threads/cpus": cpus,
        "threads/torch": torch.get_num_threads(),
        "threads/numba": numba.get_num_threads(),
        "threads/numba_pool": numba.config.NUMBA_NUM_THREADS,
        "threads/meio": resolve_threads(),
    }


def _run_trial(config: dict[str, Any]) -> None:
    """One training run, reporting every evaluation (with a checkpoint naming the run) to Tune."""
    from ray import tune

    t = config["trial"]
    spec = ExperimentSpec.model_validate(config["spec"])
    overrides = {**t["overrides"], **config.get("hp", {})}
    cell = t["cell"] if t["cell"] != "search" else f"search-{tune.get_context().get_trial_id()}"
    cpus = trial_threads()
    pinned = pin_threads(cpus)
    method = method_for(t["method"])
    m = spec.methods[t["method"]]
    cfg = method.load_config(m.config).replace(**m.set, **overrides, **_budget_fields(spec, t["method"], cpus))
    run = Path(config["out"]) / "runs" / _scenario_label(t["scenario"]) / f"{t['method']}-{cell}-seed{t['seed']}"
    interrupt = config.get("interrupt")
    last: dict[str, float] = {}

    interval = (m.budget or spec.budget).eval_every

    def report(metrics: dict[str, float]) -> None:
        # Tune's schedulers need the metric in every result: NaN where the scenario has no baseline;
        # they count time in evaluations, a unit every method shares
        metrics = {"eval/gap_pct": math.nan, **metrics, "evaluations": metrics["steps"] / interval}
        last.update(metrics)
        if (
            interrupt
            and interrupt == [t["scenario"], t["seed"]]
            and metrics["steps"] > 0  # after some training (step 0 evaluates the untrained policy)
            and not (run / ".interrupted").exists()
        ):
            (run / ".interrupted").touch()
            raise RuntimeError(f"interrupted {run} at step {metrics['steps']:.0f} (the test's fault)")
        with tempfile.TemporaryDirectory() as tmp:
            (Path(tmp) / "trial.json").write_text(json.dumps({"run_dir": str(run), "steps": metrics["steps"]}))
            tune.report(
                {**metrics, **pinned, "cell": cell, "run_dir": str(run)}, checkpoint=tune.Checkpoint.from_directory(tmp)
            )

    resume = (run / "config.yaml").is_file()
    hook = {"on_evaluation": report} if method.reports_evaluations else {}
    result = method.train(t["scenario"], cfg, run, seed=t["seed"], resume=resume, progress=False, **hook)
    if not last:  # a method without the hook, or a resumed run that was already finished: the run's own rows
        for row in pd.read_csv(run / "evaluations.csv").itertuples():
            report({"steps": float(row.steps), "eval/cost": float(row.cost), "eval/gap_pct": float(row.gap_pct)})
    steps = float(result.steps)
    tune.report(
        {
            **last,
            "steps": steps,
            "evaluations": steps / interval,
            "trial/finished": 1.0,
            **pinned,
            "cell": cell,
            "run_dir": str(run),
        }
    )


# ---------------------------------------------------------------------------------------------------
# Running


def start_ray(address: str | None = None, cpus: int | None = None, cpus_per_trial: int = 1) -> None:
    """Join the cluster at ``address`` (``auto``, ``ray://HOST:PORT``), or start a local Ray with
    ``cpus`` (default: the machine's cores). The workers' numba pool is sized ``cpus_per_trial``
    (``NUMBA_NUM_THREADS`` is read once, when numba is imported in the worker)."""
    import ray

    # Tune warns at every forced snapshot of its state; with a checkpoint at every evaluation that is all the time
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    if ray.is_initialized():
        return
    env = {"NUMBA_NUM_THREADS": str(cpus_per_trial), "MEIO_THREADS": str(cpus_per_trial)}
    if address:
        ray.init(address=address, runtime_env={"env_vars": env}, log_to_driver=False)
    else:
        ray.init(
            # "local": a new instance of our own, never a cluster another user left running (ray start)
            address="local",
            num_cpus=cpus or os.cpu_count() or 1,
            runtime_env={"env_vars": env},
            include_dashboard=False,
            log_to_driver=False,
        )


def _scheduler(spec: ExperimentSpec) -> Any:
    """Tune's scheduler for ``early_stopping``, timed in evaluations (the reported ``evaluations``:
    a trial's steps over its method's ``eval_every``), so that methods of different units (PPO's
    environment steps, HDPO's iterations) reach their rungs after the same number of evaluations."""
    from ray.tune.schedulers import ASHAScheduler, MedianStoppingRule

    es = spec.early_stopping
    if es is None:
        return None
    if es.scheduler == "asha":
        budgets = [m.budget or spec.budget for m in spec.methods.values()]
        # max_t beyond the longest trial: ASHA stops a trial that reaches max_t, which would cut it before final/
        return ASHAScheduler(
            time_attr="evaluations",
            max_t=4 * max(math.ceil(b.total_steps / b.eval_every) for b in budgets),
            grace_period=es.grace_evaluations,
            reduction_factor=es.reduction_factor,
        )
    return MedianStoppingRule(time_attr="evaluations", grace_period=es.grace_evaluations, min_samples_required=2)


def _tuner(
    name: str, spec: ExperimentSpec, out: Path, param_space: dict[str, Any], resume: bool, tune_config: Any
) -> Any:
    from ray import tune

    storage = spec.storage or str((out / "tune").resolve())
    trainable = tune.with_resources(_run_trial, {"cpu": spec.cpus_per_trial})
    path = f"{storage.rstrip('/')}/{name}"
    if resume and tune.Tuner.can_restore(path):
        return tune.Tuner.restore(path, trainable, resume_errored=True)
    run_config = tune.RunConfig(
        name=name,
        storage_path=storage,
        verbose=0,
        failure_config=tune.FailureConfig(max_failures=0),
        checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
    )
    return tune.Tuner(trainable, param_space=param_space, tune_config=tune_config, run_config=run_config)


def _search_best(
    spec: ExperimentSpec, out: Path, scenario: str, method: str, resume: bool, interrupt: Any
) -> dict[str, Any]:
    """Optuna TPE over the method's search space on ``scenario`` and the first seed: the best overrides."""
    from ray import tune
    from ray.tune.search.optuna import OptunaSearch

    space = {}
    for k, d in spec.methods[method].search.items():
        if d.kind in ("grid", "choice"):
            space[k] = tune.choice(d.values())
        elif d.kind == "uniform":
            space[k] = tune.uniform(*d.uniform)
        else:
            space[k] = tune.loguniform(*d.loguniform)
    metric = spec.search.metric
    tune_config = tune.TuneConfig(
        metric=metric,
        mode="min",
        num_samples=spec.search.samples,
        search_alg=OptunaSearch(seed=spec.search.seed),
        scheduler=_scheduler(spec),
        reuse_actors=True,
    )
    trial = {"scenario": scenario, "method": method, "cell": "search", "overrides": {}, "seed": spec.seeds[0]}
    params = {"trial": trial, "hp": space, "spec": spec.model_dump(), "out": str(out.resolve()), "interrupt": interrupt}
    grid = _tuner(f"search-{_scenario_label(scenario)}-{method}", spec, out, params, resume, tune_config).fit()
    best = grid.get_best_result(metric=metric, mode="min", scope="last")
    return dict(best.config["hp"])


def run_experiment(
    spec: ExperimentSpec,
    out: str | Path,
    address: str | None = None,
    cpus: int | None = None,
    resume: bool = False,
    interrupt: tuple[str, int] | None = None,
) -> dict[str, Path]:
    """Run every trial of ``spec`` (see the module docstring) and write the results into ``out``:
    ``results.csv``, ``results.md``, ``gaps.png``, ``trials.csv``; ``runs/`` holds the run folders.

    ``interrupt``: ``(scenario, seed)`` whose trial fails once at its first evaluation after step 0
    (a stand-in for a lost node, for the tests of ``resume``)."""
    from ray import tune

    out = Path(out)
    if out.exists() and any(out.iterdir()) and not resume:
        raise FileExistsError(f"--out: {out} exists and is not empty; pick a new folder or pass --resume")
    out.mkdir(parents=True, exist_ok=True)
    (out / "spec.yaml").write_text(yaml.safe_dump(spec.model_dump(), sort_keys=False))
    started = time.perf_counter()
    start_ray(address, cpus, spec.cpus_per_trial)
    todo = cells(spec)
    fault = list(interrupt) if interrupt else None
    if spec.search.algorithm == "optuna":
        for c in todo:
            if spec.methods[c["method"]].search:
                c.update(cell="best", overrides=_search_best(spec, out, c["scenario"], c["method"], resume, fault))
    trials = [{**c, "seed": s} for c in todo for s in spec.seeds]
    scheduler = None if spec.search.algorithm == "optuna" else _scheduler(spec)
    tune_config = tune.TuneConfig(metric=spec.search.metric, mode="min", scheduler=scheduler, reuse_actors=True)
    params = {
        "trial": tune.grid_search(trials),
        "spec": spec.model_dump(),
        "out": str(out.resolve()),
        "interrupt": fault,
    }
    grid = _tuner("seeds", spec, out, params, resume, tune_config).fit()
    errors = [str(r.error) for r in grid if r.error is not None]
    if errors:
        raise RuntimeError(f"{len(errors)} trial(s) failed; fix the cause and run again with --resume: {errors[0]}")
    trained = time.perf_counter()
    rows = []
    for r in grid:
        t, m = r.config["trial"], r.metrics or {}
        run = Path(m.get("run_dir", ""))
        rows.append(
            {
                "scenario": _scenario_label(t["scenario"]),
                "scenario_ref": t["scenario"],
                "method": t["method"],
                "cell": t["cell"],
                "config": _label(t["overrides"]),
                "seed": t["seed"],
                "run_dir": str(run),
                "steps": m.get("steps", 0.0),
                "stopped": not m.get("trial/finished"),
                "train_seconds": m.get("time_total_s", math.nan),
                **{k: v for k, v in m.items() if k.startswith("threads/")},
            }
        )
    trials_df = pd.DataFrame(rows)
    trials_df.to_csv(out / "trials.csv", index=False)
    table, per_seed = results_table(spec, trials_df)
    files = write_results(table, per_seed, out)
    (out / "timing.json").write_text(
        json.dumps(
            {"trials": len(rows), "trials_seconds": trained - started, "table_seconds": time.perf_counter() - trained}
        )
    )
    return files


# ---------------------------------------------------------------------------------------------------
# The table


def iqm(x: np.ndarray) -> float:
    """Interquartile mean: the mean of the values left after cutting the lowest and the highest 25%
    (``scipy.stats.trim_mean(x, 0.25)``, as rliable computes it)."""
    return float(stats.trim_mean(np.asarray(x, dtype=float), 0.25))


def _mean_ci(x: np.ndarray) -> tuple[float, float]:
    from meio.envs.metrics import mean_ci95

    return mean_ci95(x) if len(x) >= 2 else (float(np.mean(x)), math.nan)


def _evaluation_settings(spec: ExperimentSpec) -> dict[str, Any]:
    """The keyword arguments of :func:`meio.benchmark.run_benchmark` the spec's ``evaluation`` fixes."""
    ev = spec.evaluation
    kw: dict[str, Any] = {
        "periods": ev.periods,
        "warmup": ev.warmup,
        "replications": ev.replications,
        "seed": ev.seed,
        "search_periods": ev.search_periods,
        "search_replications": ev.search_replications,
    }
    if ev.baselines:
        kw["baselines"] = tuple(ev.baselines)
    return kw


def classical_side(ref: str, settings: dict[str, Any]) -> dict[str, Any]:
    """The classical policies of one scenario on the table's seeds (:func:`meio.benchmark.run_benchmark`
    with no agent): the reference policy's name, its cost ``C_ref`` and its per-replication mean costs
    ``c_ref[i]``. ``reference`` is ``None`` where no classical policy of ``settings`` applies."""
    from meio.benchmark import run_benchmark

    try:
        bench = run_benchmark(ref, **settings)
    except ValueError as exc:
        # every baseline asked for was skipped as not applicable: no yardstick, so no gaps
        if "no policy to benchmark" not in str(exc):
            raise
        return {"reference": None, "reference_cost": math.nan, "reference_means": None}
    reference = bench.evaluations[bench.reference]
    return {
        "reference": bench.reference,
        "reference_cost": float(reference.cost_mean),
        "reference_means": reference.per_period_cost.mean(axis=1),
    }


def learned_side(ref: str, method: str, run_dir: str, settings: dict[str, Any]) -> dict[str, Any] | None:
    """One trial's agent (``best/``, else ``final/``) on the table's seeds, simulated as
    :func:`meio.benchmark.run_benchmark` simulates its policies (one :class:`~meio.envs.simulator.Simulator`
    of ``replications`` rows, seeds ``seed ..``): its cost ``C_k`` and per-replication mean costs
    ``c_k[i]``; ``None`` for a run without a saved agent."""
    from meio.envs.metrics import evaluate
    from meio.envs.resolve import resolve
    from meio.envs.simulator import Simulator

    run = Path(run_dir)
    if not ((run / "best").is_dir() or (run / "final").is_dir()):
        return None
    policy = method_for(method).load_policy(run, run.name)
    n = settings["replications"]
    ev = evaluate(
        Simulator(resolve(ref), n=n),
        policy,
        periods=settings["periods"],
        warmup=settings["warmup"],
        replications=n,
        seed=settings["seed"],
    )
    return {"cost": float(ev.cost_mean), "means": ev.per_period_cost.mean(axis=1)}


def paired_gap(agent_means: np.ndarray, reference_means: np.ndarray, reference_cost: float) -> float:
    """The paired gap in % of :func:`meio.benchmark.run_benchmark`: ``100 mean_i(c_k[i] - c_ref[i]) / C_ref``
    over the replications ``i`` (common random numbers), the same operations in the same order, so the
    table's gaps equal the benchmark's bit for bit (a test compares them)."""
    from meio.envs.metrics import mean_ci95

    diff = agent_means - reference_means
    d = mean_ci95(diff)[0] if np.any(diff) else 0.0
    return 100.0 * d / reference_cost


def _pinned_call(f: Callable[..., Any], *args: Any) -> Any:
    """``f(*args)`` in a Ray task, its numeric threads pinned to the CPUs Ray gave it, as a trial's."""
    pin_threads(trial_threads())
    return f(*args)


def _run_all(calls: list[tuple[Callable[..., Any], tuple[Any, ...]]]) -> list[Any]:
    """``[f(*args) ...]``: as Ray tasks of one CPU (and one thread) each when Ray is running, in
    parallel over the cluster, started in the order given; else one after another here."""
    import ray

    if not ray.is_initialized():
        return [f(*args) for f, args in calls]
    task = ray.remote(num_cpus=1)(_pinned_call)
    return ray.get([task.remote(f, *args) for f, args in calls])


def results_table(spec: ExperimentSpec, trials: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Every trained agent and the classical policies on common random numbers, per scenario; then
    one row per scenario, method and config over seeds.

    The simulations are independent, so each is one task (:func:`classical_side` per scenario,
    :func:`learned_side` per trial) run on Ray when it is up, one CPU and one thread each, like a
    trial; the driver only pairs the results (:func:`paired_gap`). The numbers are those of
    :func:`meio.benchmark.run_benchmark` with the agents as ``extra_policies``, bit for bit."""
    settings = _evaluation_settings(spec)
    refs = list(dict.fromkeys(trials["scenario_ref"]))
    # the classical searches are the long tasks: submitted first, so they start first
    calls: list[tuple[Callable[..., Any], tuple[Any, ...]]] = [(classical_side, (ref, settings)) for ref in refs]
    trial_rows = trials.to_dict("records")
    calls += [(learned_side, (r["scenario_ref"], r["method"], r["run_dir"], settings)) for r in trial_rows]
    done = _run_all(calls)
    classical = dict(zip(refs, done[: len(refs)]))
    per_seed = []
    for r, agent in zip(trial_rows, done[len(refs) :]):
        c = classical[r["scenario_ref"]]
        known = agent is not None and c["reference"] is not None
        per_seed.append(
            {
                **r,
                "reference": c["reference"] or "-",
                "reference_cost": c["reference_cost"],
                "cost": agent["cost"] if agent is not None else math.nan,
                "gap_pct": paired_gap(agent["means"], c["reference_means"], c["reference_cost"]) if known else math.nan,
            }
        )
    seeds = pd.DataFrame(per_seed)
    rows = []
    for (scenario, method, cell), g in seeds.groupby(["scenario", "method", "cell"], sort=False):
        g = g.dropna(subset=["cost"])
        cost, cost_ci = _mean_ci(g["cost"].to_numpy())
        gap, gap_ci = _mean_ci(g["gap_pct"].to_numpy())
        rows.append(
            {
                "scenario": scenario,
                "method": method,
                "cell": cell,
                "config": g["config"].iloc[0],
                "seeds": len(g),
                "cost_mean": cost,
                "cost_ci95": cost_ci,
                "cost_iqm": iqm(g["cost"]),
                "gap_pct": gap,
                "gap_ci95_pct": gap_ci,
                "gap_iqm_pct": iqm(g["gap_pct"]),
                "reference": g["reference"].iloc[0],
                "reference_cost": g["reference_cost"].iloc[0],
                "train_seconds": float(g["train_seconds"].mean()),
                "stopped": int(g["stopped"].sum()),
            }
        )
    table = pd.DataFrame(rows)
    table["best"] = table.groupby(["scenario", "method"])["gap_pct"].transform("min") == table["gap_pct"]
    return table, seeds


def write_results(table: pd.DataFrame, per_seed: pd.DataFrame, out: Path) -> dict[str, Path]:
    """``results.csv``, ``results.md``, ``per_seed.csv`` and ``gaps.png`` (mean gap per scenario with its 95% CI)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from meio.benchmark import markdown_table
    from meio.plots import policy_colors

    files = {
        "csv": out / "results.csv",
        "md": out / "results.md",
        "per_seed": out / "per_seed.csv",
        "png": out / "gaps.png",
    }
    table.to_csv(files["csv"], index=False)
    per_seed.to_csv(files["per_seed"], index=False)
    files["md"].write_text(markdown_table(table) + "\n")
    scenarios = list(dict.fromkeys(table["scenario"]))
    series = list(dict.fromkeys(zip(table["method"], table["cell"])))
    colors = policy_colors([f"{method} {cell}" for method, cell in series])  # one per method and config
    fig, ax = plt.subplots(figsize=(max(6.5, 1.4 * len(scenarios) + 4.5), 4))
    width = 0.8 / max(len(series), 1)
    for k, (method, cell) in enumerate(series):
        sub = table[(table["method"] == method) & (table["cell"] == cell)].set_index("scenario")
        xs = [i - 0.4 + width * (k + 0.5) for i, s in enumerate(scenarios) if s in sub.index]
        ys = [sub.loc[s, "gap_pct"] for s in scenarios if s in sub.index]
        # No bar where there is no interval (one seed): a bar of zero would claim a certain gap.
        es = [float(sub.loc[s, "gap_ci95_pct"]) for s in scenarios if s in sub.index]
        label = f"{method} {cell}" + (f" ({sub['config'].iloc[0]})" if sub["config"].iloc[0] != "-" else "")
        ax.errorbar(xs, ys, yerr=es, fmt="o", capsize=4, label=label, color=colors[f"{method} {cell}"])
    ax.axhline(0.0, color="grey", lw=1, ls="--")
    refs = dict(zip(table["scenario"], table["reference"]))
    ax.set_xticks(range(len(scenarios)), [f"{s}\nvs {refs[s]}" for s in scenarios], fontsize=8)
    ax.set_xlim(-0.6, len(scenarios) - 0.4)
    ax.set_ylabel("cost gap to the reference classical policy\n(% of its cost per period)")
    ax.set_title("learned policies: mean gap over seeds, 95% CI")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(files["png"], dpi=120)
    plt.close(fig)
    return files
