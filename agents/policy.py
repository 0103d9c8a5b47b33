"""A trained PPO model as a :class:`~meio.envs.policies.Policy`: the face every policy shares.

The policy builds the environment's observation from the simulator's state, normalises it with the
statistics saved at training time (frozen), asks the network for its deterministic action and maps
the action to orders exactly as the environment does. So the benchmark and ``meio evaluate`` run a
trained model in the same batched simulator, on the same seeds, as the baselines.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch
from stable_baselines3 import PPO
from stable_baselines3.common.distributions import DiagGaussianDistribution, StateDependentNoiseDistribution

from meio.envs.decentralised import NodeView
from meio.envs.hints import did_you_mean
from meio.envs.policies import Policy
from meio.envs.simulator import Simulator
from meio.envs.spaces import ACTION_MODES, ActionMap, ObservationMap, ResidualBase

#: Files of a saved agent inside a run folder's ``best/``, ``final/`` or ``checkpoints/STEP/``.
MODEL_FILE = "model.zip"
#: The weights of a saved HDPO agent (a torch ``state_dict``, read with ``weights_only=True``).
HDPO_WEIGHTS_FILE = "policy.pt"
NORMALIZER_FILE = "obs_normalizer.json"
META_FILE = "meta.json"
#: Sizes and SHA-256 of every other file of a saved folder, written last: a folder whose files do
#: not match it was cut short or damaged after the write.
MANIFEST_FILE = "manifest.json"
#: Files a training checkpoint holds besides the saved agent's (written and read by ``meio.agents.train``).
VECNORM_FILE = "vecnormalize.pkl"
STATE_FILE = "state.json"


@contextmanager
def one_torch_thread() -> Iterator[None]:
    """Run torch on one intra-op thread inside the block, then put the caller's count back.

    A policy's forward pass per period works on a few rows (one per replication): the work of one
    layer is microseconds, less than waking a second thread, and torch's threads wait for work by
    spinning, so on a machine where another process holds a core two threads ran an evaluation 2.5x
    slower than one (``benchmarks/policy_speed.py``). Setting the count costs under a microsecond.
    """
    before = torch.get_num_threads()
    if before != 1:
        torch.set_num_threads(1)
    try:
        yield
    finally:
        if before != 1:
            torch.set_num_threads(before)


def deterministic_actions(model: PPO, obs: np.ndarray) -> np.ndarray:
    """``model.predict(obs, deterministic=True)[0]`` for a batch of observations, without its
    per-call overhead where the action distribution is a Gaussian used as is (the mode is the
    network's mean action, clipped to the action space; SB3 itself does the same).

    ``predict`` also switches every module to evaluation mode, converts and checks the observation
    and builds the distribution object at every call: three quarters of its time at a few rows.
    Other distributions (squashed state-dependent noise) go through ``predict``.
    """
    policy = model.policy
    dist = getattr(policy, "action_dist", None)
    plain = type(dist) is DiagGaussianDistribution or (
        type(dist) is StateDependentNoiseDistribution and dist.bijector is None
    )
    if not plain or not hasattr(policy, "mlp_extractor"):
        return model.predict(obs, deterministic=True)[0]
    if policy.training:  # predict leaves the policy in evaluation mode too
        policy.set_training_mode(False)
    space = model.action_space
    with torch.inference_mode():
        x = torch.as_tensor(np.asarray(obs, dtype=np.float32), device=policy.device)
        features = policy.extract_features(x, policy.pi_features_extractor)
        mean = policy.action_net(policy.mlp_extractor.forward_actor(features))
        actions = mean.cpu().numpy().reshape((-1, *space.shape))
    return np.clip(actions, space.low, space.high)


# ---- folders written whole or not at all -----------------------------------------------------------
def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def write_manifest(folder: Path) -> None:
    """Flush every file of ``folder`` to disk, then record their sizes and SHA-256 in ``manifest.json``."""
    files = {}
    for f in sorted(folder.iterdir()):
        if f.is_file() and f.name != MANIFEST_FILE:
            _fsync(f)
            files[f.name] = {"bytes": f.stat().st_size, "sha256": _sha256(f)}
    (folder / MANIFEST_FILE).write_text(json.dumps({"files": files}, indent=1))
    _fsync(folder / MANIFEST_FILE)
    _fsync(folder)


def manifest_problem(folder: Path) -> str | None:
    """Why the files of ``folder`` do not match its manifest, or ``None`` when they do. A folder
    without a manifest (saved before manifests existed) is not checked here; loading it is."""
    path = folder / MANIFEST_FILE
    if not path.is_file():
        return None
    try:
        files = json.loads(path.read_text())["files"]
        items = [(str(k), int(v["bytes"]), str(v["sha256"])) for k, v in files.items()]
    except (ValueError, KeyError, TypeError, AttributeError):
        return f"{MANIFEST_FILE} is unreadable"
    for name, size, digest in items:
        f = folder / name
        if not f.is_file():
            return f"{name} is missing"
        if f.stat().st_size != size:
            return f"{name} has {f.stat().st_size} bytes, the manifest says {size} (truncated or overwritten)"
        if _sha256(f) != digest:
            return f"{name} does not match its SHA-256 in the manifest (damaged)"
    return None


@contextmanager
def folder_written_whole(target: Path) -> Iterator[Path]:
    """Yield an empty folder next to ``target`` to write into; on success add the manifest, flush
    everything to disk and rename it to ``target``, so ``target`` is either the old folder or the
    complete new one (a kill mid-write leaves only a ``.partial`` folder). An existing ``target`` is
    replaced after the new folder is complete."""
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.parent / f".{target.name}.partial-{os.getpid()}"
    if partial.exists():
        shutil.rmtree(partial)
    partial.mkdir()
    try:
        yield partial
        write_manifest(partial)
        if target.exists():
            old = target.parent / f".{target.name}.old-{os.getpid()}"
            if old.exists():
                shutil.rmtree(old)
            os.rename(target, old)
            os.rename(partial, target)
            shutil.rmtree(old)
        else:
            os.rename(partial, target)
        _fsync(target.parent)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise


def set_aside_damaged(run: Path, damaged: list[Path]) -> None:
    """On resuming ``run`` (PPO or HDPO): move the ``damaged`` checkpoint folders to ``STEP.damaged``
    (kept for inspection, out of the way of the new checkpoint at that step), delete incomplete
    writes, and put back a ``best/`` or ``final/`` whose replacement was cut between its two renames."""
    for folder in damaged:
        target = folder.with_name(folder.name + ".damaged")
        k = 1
        while target.exists():
            k += 1
            target = folder.with_name(f"{folder.name}.damaged-{k}")
        os.rename(folder, target)
    for name in ("best", "final"):  # a kill between the two renames of a replacement
        old = sorted(run.glob(f".{name}.old-*"))
        if old and not (run / name).exists():
            os.rename(old.pop(), run / name)
        for folder in old:
            shutil.rmtree(folder, ignore_errors=True)
    for partial in [*run.glob(".*.partial-*"), *run.glob("checkpoints/.*.partial-*")]:
        if partial.is_dir():
            shutil.rmtree(partial, ignore_errors=True)
        else:
            partial.unlink()


def check_model_fits(
    model: PPO, scenario: str, obs_size: int, action_size: int, control: str, trained: str, remedy: str
) -> None:
    """Refuse ``scenario`` (``ValueError`` naming it) if its observations or actions, as ``control``
    lays them out, have other sizes than ``model``'s; ``trained`` says where the model came from."""
    want_obs = int(np.prod(model.observation_space.shape))
    want_act = int(np.prod(model.action_space.shape))
    if (obs_size, action_size) != (want_obs, want_act):
        raise ValueError(
            f"scenario: {scenario!r} gives observations of {obs_size} values and actions of {action_size} "
            f"({control} control), but {trained} with observations of {want_obs} and actions of {want_act}; "
            f"{remedy}"
        )


class PPOPolicy:
    """A PPO model that orders for every row of a simulator."""

    def __init__(
        self,
        model: PPO,
        action_mode: str,
        obs_mean: np.ndarray | None,
        obs_var: np.ndarray | None,
        clip_obs: float = 10.0,
        epsilon: float = 1e-8,
        name: str = "ppo",
        control: str = "centralised",
        horizon: int | None = None,
        observe_time: bool = True,
        trained_on: str | None = None,
        pipeline_length: int | None = None,
        residual: ResidualBase | None = None,
        observe_echelon: bool = False,
    ) -> None:
        self.model = model
        # base_stock_residual: the base-stock levels the actions are a residual on (saved in meta.json)
        self.residual = residual
        self.trained_on = trained_on  # the training scenario's name, for messages
        self.control = control
        self.horizon = horizon  # the training episodes' length (periods_left counts it down)
        self.observe_time = observe_time
        # the fixed number of pipeline features per slot it was trained with (None: the lead times')
        self.pipeline_length = pipeline_length
        self.observe_echelon = observe_echelon  # echelon positions among the features
        self.action_mode = action_mode
        self.obs_mean = obs_mean
        self.obs_var = obs_var
        self.clip_obs = clip_obs
        self.epsilon = epsilon
        self.name = name
        # one entry: the maps (and, for decentralised control, the node view) of the last topology seen
        self._maps: dict[int, tuple[ObservationMap, ActionMap, NodeView | None]] = {}

    def _for(self, sim: Simulator) -> tuple[ObservationMap, ActionMap, NodeView | None]:
        key = id(sim.topology)
        if key not in self._maps:
            several = sim.topology.node_with_several_suppliers() if self.observe_echelon else None
            if several is not None:
                on = f" on {self.trained_on!r}" if self.trained_on else ""
                raise ValueError(
                    f"scenario: {sim.scenario.name!r}: the model {self.name!r} was trained{on} observing "
                    f"echelon positions (observe_echelon), defined when every node has one supplier; "
                    f"{several!r} has several"
                )
            obs_map = ObservationMap(
                sim.topology,
                horizon=self.horizon,
                observe_time=self.observe_time,
                pipeline_length=self.pipeline_length,
                observe_echelon=self.observe_echelon,
            )
            view = NodeView(sim.topology, obs_map) if self.control == "decentralised" else None
            self._check_fits(
                sim.scenario.name,
                *((view.size, view.act_len) if view is not None else (obs_map.size, sim.topology.n_slots)),
            )
            self._maps = {key: (obs_map, ActionMap(sim.topology, self.action_mode, self.residual), view)}
        return self._maps[key]

    def check(self, sim: Simulator) -> None:
        """Refuse ``sim``'s scenario if its observations or actions have other sizes than the network's."""
        self._for(sim)

    def _check_fits(self, scenario: str, obs_size: int, action_size: int) -> None:
        """Refuse a scenario whose observations or actions have other sizes than the network's."""
        on = f" on {self.trained_on!r}" if self.trained_on else ""
        check_model_fits(
            self.model,
            scenario,
            obs_size,
            action_size,
            self.control,
            f"the model {self.name!r} was trained{on}",
            "use a scenario with the same network",
        )

    def normalize(self, obs: np.ndarray) -> np.ndarray:
        if self.obs_mean is None:
            return obs
        return np.clip(
            (obs - self.obs_mean) / np.sqrt(self.obs_var + self.epsilon), -self.clip_obs, self.clip_obs
        ).astype(np.float32)

    def act(self, sim: Simulator) -> np.ndarray:
        obs_map, action_map, view = self._for(sim)
        obs = obs_map(sim, np.zeros((sim.n, obs_map.size), dtype=np.float32))
        with one_torch_thread():
            if view is not None:  # every node acts on its own view
                action = deterministic_actions(self.model, self.normalize(view.local_obs(obs)))
                return action_map.to_orders(sim, view.network_action(action))
            action = deterministic_actions(self.model, self.normalize(obs))
        return action_map.to_orders(sim, np.asarray(action, dtype=np.float64).reshape(sim.n, -1))

    # ---- saving and loading ---------------------------------------------------------------------
    def save(self, folder: Path, meta: dict[str, Any]) -> None:
        """Write the agent to ``folder`` whole or not at all (see :func:`folder_written_whole`)."""
        with folder_written_whole(folder) as tmp:
            self.save_into(tmp, meta)

    def save_into(self, folder: Path, meta: dict[str, Any]) -> None:
        """Write the agent's files into an existing folder (no manifest, no atomic rename)."""
        self.model.save(folder / MODEL_FILE)
        self.save_normalizer_and_meta(folder, meta)

    def save_normalizer_and_meta(self, folder: Path, meta: dict[str, Any]) -> None:
        """Write ``obs_normalizer.json`` and ``meta.json`` into an existing folder: the agent's files
        besides ``model.zip`` (a training checkpoint has SB3's ``CheckpointCallback`` write that).

        The normaliser is JSON (the running mean ``mu`` and variance ``sigma^2`` of SB3's
        ``VecNormalize``, its clip ``c`` and ``epsilon``), not SB3's pickled ``VecNormalize``, so loading
        someone else's saved agent reads its normaliser as plain numbers, never as pickled objects
        (:func:`load_model` likewise replaces ``model.zip``'s pickled schedules)."""
        stats = (
            None
            if self.obs_mean is None
            else {
                "mean": self.obs_mean.tolist(),
                "var": self.obs_var.tolist(),
                "clip_obs": self.clip_obs,
                "epsilon": self.epsilon,
            }
        )
        (folder / NORMALIZER_FILE).write_text(json.dumps(stats))
        (folder / META_FILE).write_text(
            json.dumps(
                {
                    **meta,
                    "action_mode": self.action_mode,
                    "control": self.control,
                    "horizon": self.horizon,
                    "observe_time": self.observe_time,
                    "pipeline_length": self.pipeline_length,
                    "observe_echelon": self.observe_echelon,
                    **({} if self.residual is None else {"residual_base": self.residual.to_dict()}),
                },
                indent=2,
            )
        )

    @classmethod
    def load(cls, folder: str | Path, name: str = "ppo") -> PPOPolicy:
        folder = Path(folder)
        for f in (MODEL_FILE, NORMALIZER_FILE, META_FILE):
            if not (folder / f).is_file():
                raise FileNotFoundError(
                    f"model: {folder} has no {f}; expected a saved agent (best/, final/ or "
                    "checkpoints/STEP/ of a run folder)"
                )
        problem = manifest_problem(folder)
        if problem is not None:
            raise ValueError(f"model: {folder} is damaged: {problem}")
        meta = read_json(folder / META_FILE, "model")
        stats = read_json(folder / NORMALIZER_FILE, "model")
        if not isinstance(meta, dict) or meta.get("action_mode") not in ACTION_MODES:
            raise ValueError(f"model: {folder / META_FILE} has no valid action_mode; it is not a saved agent's")
        action_mode = str(meta["action_mode"])
        try:
            norm = (
                None
                if stats is None
                else (
                    np.array(stats["mean"], dtype=float),
                    np.array(stats["var"], dtype=float),
                    float(stats["clip_obs"]),
                    float(stats["epsilon"]),
                )
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"model: {folder / NORMALIZER_FILE} is not a saved normaliser ({exc!r})") from None
        model = load_model(folder / MODEL_FILE)
        extra: dict[str, Any] = {
            "name": name,
            "control": meta.get("control", "centralised"),
            "horizon": meta.get("horizon"),
            "observe_time": meta.get("observe_time", True),
            "trained_on": meta.get("scenario"),
            "pipeline_length": meta.get("pipeline_length"),
            "observe_echelon": meta.get("observe_echelon", False),
        }
        if action_mode == "base_stock_residual":
            extra["residual"] = ResidualBase.from_dict(
                meta.get("residual_base"), f"model: {folder / META_FILE}: residual_base"
            )
        if norm is None:
            return cls(model, action_mode, None, None, **extra)
        return cls(model, action_mode, *norm, **extra)


def read_json(path: Path, field: str) -> Any:
    """A JSON file's content; unreadable JSON is refused naming the file."""
    try:
        return json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValueError(f"{field}: {path} is not valid JSON ({exc})") from None


def load_model(path: Path, **kwargs: Any) -> PPO:
    """Load an SB3 PPO zip; a file that is not one is refused naming it. The training schedules are
    replaced (prediction needs none, and ``meio.agents.train`` passes its own), so no pickled code runs."""
    custom = {"learning_rate": 0.0, "lr_schedule": lambda _: 0.0, **kwargs.pop("custom_objects", {})}
    try:
        return PPO.load(path, device="cpu", custom_objects=custom, **kwargs)
    except Exception as exc:  # zipfile, pickle and torch raise many kinds for a damaged file
        raise ValueError(f"model: {path} is not a readable SB3 model ({type(exc).__name__}: {exc})") from None


def checkpoint_steps(run_dir: Path) -> list[Path]:
    """The checkpoint folders ``checkpoints/STEP/`` of a run, oldest first (other names ignored)."""
    folder = run_dir / "checkpoints"
    if not folder.is_dir():
        return []
    return sorted((p for p in folder.iterdir() if p.name.isdigit() and p.is_dir()), key=lambda p: int(p.name))


#: The kinds of saved agent, by the ``"algo"`` of their ``meta.json``: the policy class
#: (``module:Class``, imported only when such an agent is loaded, so PPO alone never imports the
#: others) and the file holding its weights. A ``meta.json`` without ``"algo"`` is PPO's: runs saved
#: before there was a second algorithm wrote none.
AGENT_KINDS: dict[str, tuple[str, str]] = {
    "ppo": ("meio.agents.policy:PPOPolicy", MODEL_FILE),
    "hdpo": ("meio.agents.hdpo:HDPOPolicy", HDPO_WEIGHTS_FILE),
}
_WEIGHT_FILES = tuple(dict.fromkeys(f for _, f in AGENT_KINDS.values()))


def _holds_agent(folder: Path) -> bool:
    return any((folder / f).is_file() for f in _WEIGHT_FILES)


def find_saved_agent(run_dir: str | Path) -> Path:
    """The agent to use from a run folder (of any algorithm in :data:`AGENT_KINDS`): ``best/`` if
    present, else ``final/``, else the latest checkpoint; a folder that is itself a saved agent is
    returned as is."""
    run = Path(run_dir)
    if run.exists() and not run.is_dir():
        raise ValueError(f"model: {run} is a file; expected a run folder or a saved agent folder")
    if _holds_agent(run):
        return run
    for sub in ("best", "final"):
        if _holds_agent(run / sub):
            return run / sub
    checkpoints = [p for p in checkpoint_steps(run) if _holds_agent(p)]
    if checkpoints:
        return checkpoints[-1]
    raise FileNotFoundError(f"model: no saved agent in {run} (looked for best/, final/ and checkpoints/)")


def saved_agent_algo(folder: str | Path) -> str:
    """The algorithm that trained the saved agent in ``folder``: its ``meta.json``'s ``"algo"``,
    ``"ppo"`` where there is none (older runs); one not in :data:`AGENT_KINDS` is refused."""
    path = Path(folder) / META_FILE
    meta = read_json(path, "model") if path.is_file() else {}
    algo = meta.get("algo", "ppo") if isinstance(meta, dict) else "ppo"
    if algo not in AGENT_KINDS:
        raise ValueError(
            f"model: {path}: algo: {algo!r} is not an algorithm this version loads "
            f"({', '.join(AGENT_KINDS)}){did_you_mean(algo, AGENT_KINDS)}"
        )
    return str(algo)


def run_algo(run_dir: str | Path) -> str | None:
    """The algorithm of a run folder, as its ``config.yaml`` says (``algo``; ``"ppo"`` where it names
    none, as PPO runs write none), or ``None`` without a readable one; one not in
    :data:`AGENT_KINDS` is refused naming the file."""
    import yaml

    from meio.envs.scenario import read_yaml

    path = Path(run_dir) / "config.yaml"
    try:
        data = read_yaml(path.read_text(), str(path))
    except (OSError, UnicodeDecodeError, ValueError, yaml.YAMLError):
        return None
    if not isinstance(data, dict):
        return None
    algo = data.get("algo", "ppo")
    if algo not in AGENT_KINDS:
        raise ValueError(
            f"{path}: algo: {algo!r} is not a training algorithm of this version "
            f"({', '.join(AGENT_KINDS)}){did_you_mean(algo, AGENT_KINDS)}"
        )
    return str(algo)


def agent_label(run_dir: str | Path) -> str:
    """``ALGO:RUN``, the name of a run's agent in tables and plots (``ppo:ex61-ppo``, ``hdpo:ex61-hdpo``)."""
    return f"{saved_agent_algo(find_saved_agent(run_dir))}:{Path(run_dir).resolve().name}"


def load_agent(path: str | Path, name: str | None = None) -> Policy:
    """The saved agent of a run folder (:func:`find_saved_agent`) or a saved agent folder, loaded by
    the class its ``meta.json``'s ``"algo"`` names (:data:`AGENT_KINDS`), as a
    :class:`~meio.envs.policies.Policy`; ``name`` defaults to the algorithm."""
    import importlib

    folder = find_saved_agent(path)
    algo = saved_agent_algo(folder)
    module, cls = AGENT_KINDS[algo][0].split(":")
    return getattr(importlib.import_module(module), cls).load(folder, name=name or algo)
