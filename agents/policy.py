"""A trained PPO model as a :class:`~envs.policies.Policy`: the face every policy shares.

The policy builds the environment's observation from the simulator's state, normalises it with the
statistics saved at training time (frozen), asks the network for its deterministic action and maps
the action to orders exactly as the environment does. So the benchmark and ``meio evaluate`` run a
trained model in the same batched simulator, on the same seeds, as the baselines.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from stable_baselines3 import PPO

from envs.decentralised import NodeView
from envs.simulator import Simulator
from envs.spaces import ActionMap, ObservationMap

#: Files of a saved agent inside a run folder's ``best/``, ``final/`` or ``checkpoints/STEP/``.
MODEL_FILE = "model.zip"
NORMALIZER_FILE = "obs_normalizer.json"
META_FILE = "meta.json"


class PPOPolicy:
    """A PPO model that orders for every row of a simulator."""

    def __init__(self, model: PPO, action_mode: str, obs_mean: np.ndarray | None, obs_var: np.ndarray | None,
                 clip_obs: float = 10.0, epsilon: float = 1e-8, name: str = "ppo",
                 control: str = "centralised", horizon: int | None = None, observe_time: bool = True) -> None:
        self.model = model
        self.control = control
        self.horizon = horizon        # the training episodes' length (periods_left counts it down)
        self.observe_time = observe_time
        self.action_mode = action_mode
        self.obs_mean = obs_mean
        self.obs_var = obs_var
        self.clip_obs = clip_obs
        self.epsilon = epsilon
        self.name = name
        self._maps: dict[int, tuple[ObservationMap, ActionMap]] = {}

    def _for(self, sim: Simulator) -> tuple[ObservationMap, ActionMap, NodeView | None]:
        key = id(sim.topology)
        if key not in self._maps:
            obs_map = ObservationMap(sim.topology, horizon=self.horizon, observe_time=self.observe_time)
            view = NodeView(sim.topology, obs_map) if self.control == "decentralised" else None
            self._maps = {key: (obs_map, ActionMap(sim.topology, self.action_mode), view)}
        return self._maps[key]

    def normalize(self, obs: np.ndarray) -> np.ndarray:
        if self.obs_mean is None:
            return obs
        return np.clip((obs - self.obs_mean) / np.sqrt(self.obs_var + self.epsilon), -self.clip_obs,
                       self.clip_obs).astype(np.float32)

    def act(self, sim: Simulator) -> np.ndarray:
        obs_map, action_map, view = self._for(sim)
        obs = obs_map(sim, np.zeros((sim.n, obs_map.size), dtype=np.float32))
        if view is not None:                         # every node acts on its own view
            action, _ = self.model.predict(self.normalize(view.local_obs(obs)), deterministic=True)
            return action_map.to_orders(sim, view.network_action(action))
        action, _ = self.model.predict(self.normalize(obs), deterministic=True)
        return action_map.to_orders(sim, np.asarray(action, dtype=np.float64).reshape(sim.n, -1))

    # ---- saving and loading ---------------------------------------------------------------------
    def save(self, folder: Path, meta: dict) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.model.save(folder / MODEL_FILE)
        stats = None if self.obs_mean is None else {
            "mean": self.obs_mean.tolist(), "var": self.obs_var.tolist(), "clip_obs": self.clip_obs,
            "epsilon": self.epsilon}
        (folder / NORMALIZER_FILE).write_text(json.dumps(stats))
        (folder / META_FILE).write_text(json.dumps({**meta, "action_mode": self.action_mode, "control": self.control,
                                                    "horizon": self.horizon, "observe_time": self.observe_time},
                                                   indent=2))

    @classmethod
    def load(cls, folder: str | Path, name: str = "ppo") -> "PPOPolicy":
        folder = Path(folder)
        for f in (MODEL_FILE, NORMALIZER_FILE, META_FILE):
            if not (folder / f).is_file():
                raise FileNotFoundError(f"model: {folder} has no {f}; expected a saved agent (best/, final/ or "
                                        "checkpoints/STEP/ of a run folder)")
        meta = json.loads((folder / META_FILE).read_text())
        stats = json.loads((folder / NORMALIZER_FILE).read_text())
        model = PPO.load(folder / MODEL_FILE, device="cpu")
        extra = {"name": name, "control": meta.get("control", "centralised"), "horizon": meta.get("horizon"),
                 "observe_time": meta.get("observe_time", True)}
        if stats is None:
            return cls(model, meta["action_mode"], None, None, **extra)
        return cls(model, meta["action_mode"], np.array(stats["mean"]), np.array(stats["var"]),
                   stats["clip_obs"], stats["epsilon"], **extra)


def find_saved_agent(run_dir: str | Path) -> Path:
    """The agent to use from a run folder: ``best/`` if present, else ``final/``, else the latest
    checkpoint; a folder that is itself a saved agent is returned as is."""
    run = Path(run_dir)
    if (run / MODEL_FILE).is_file():
        return run
    for sub in ("best", "final"):
        if (run / sub / MODEL_FILE).is_file():
            return run / sub
    checkpoints = sorted((run / "checkpoints").glob("*/" + MODEL_FILE), key=lambda p: int(p.parent.name)) \
        if (run / "checkpoints").is_dir() else []
    if checkpoints:
        return checkpoints[-1].parent
    raise FileNotFoundError(f"model: no saved agent in {run} (looked for best/, final/ and checkpoints/)")
