"""The simulator layer: scenarios, topology, the batched step function and the environments.

Importing it (as any module of ``meio``) registers ``meio/MultiEchelon-v0`` with Gymnasium::

    import gymnasium as gym
    import meio
    env = gym.make("meio/MultiEchelon-v0", scenario="ex61")
"""

from meio.envs.scenario import Scenario, ScenarioError, list_scenarios, load_scenario
from meio.envs.simulator import Simulator
from meio.envs.topology import COST_NAMES, Topology, compile_topology
from meio.envs.vec_env import MultiEchelonVecEnv, make_vec_env

__all__ = [
    "COST_NAMES", "MultiEchelonVecEnv", "Scenario", "ScenarioError", "Simulator", "Topology",
    "compile_topology", "list_scenarios", "load_scenario", "make_vec_env",
]
