"""The simulator layer: scenarios, topology, the batched step function and the environments.

Importing it (as any module of ``meio``) registers ``meio/MultiEchelon-v0`` with Gymnasium::

    import gymnasium as gym
    import meio
    env = gym.make("meio/MultiEchelon-v0", scenario="ex61")

The batched ``VecEnv`` (:func:`make_vec_env`, :class:`MultiEchelonVecEnv`) is built on
stable-baselines3, which imports PyTorch (seconds of start-up). It is loaded on first use, so
reading a scenario or simulating a policy (``meio validate``, ``meio simulate``, the baselines)
never imports either.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from meio.envs.scenario import Scenario, ScenarioError, list_scenarios, load_scenario
from meio.envs.simulator import Simulator
from meio.envs.topology import COST_NAMES, Topology, compile_topology

if TYPE_CHECKING:
    from meio.envs.vec_env import MultiEchelonVecEnv, make_vec_env

#: Names served by :func:`__getattr__` from :mod:`meio.envs.vec_env` (which imports stable-baselines3).
_LAZY = {"MultiEchelonVecEnv": "meio.envs.vec_env", "make_vec_env": "meio.envs.vec_env"}

__all__ = [
    "COST_NAMES",
    "MultiEchelonVecEnv",
    "Scenario",
    "ScenarioError",
    "Simulator",
    "Topology",
    "compile_topology",
    "list_scenarios",
    "load_scenario",
    "make_vec_env",
]


def __getattr__(name: str) -> Any:
    """Import the ``VecEnv`` names on first access (PEP 562), then keep them as module attributes."""
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(_LAZY[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})
