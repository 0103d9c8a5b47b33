"""The simulator layer: scenarios, topology, the batched step function and the environments.

Importing ``envs`` registers ``meio/MultiEchelon-v0`` with Gymnasium::

    import gymnasium as gym
    import envs
    env = gym.make("meio/MultiEchelon-v0", scenario="ex61")
"""

from gymnasium.envs.registration import register

from envs.scenario import Scenario, ScenarioError, list_scenarios, load_scenario
from envs.simulator import Simulator
from envs.topology import COST_NAMES, Topology, compile_topology
from envs.vec_env import MultiEchelonVecEnv, make_vec_env

register(id="meio/MultiEchelon-v0", entry_point="envs.multi_echelon:MultiEchelonEnv")

__all__ = [
    "COST_NAMES", "MultiEchelonVecEnv", "Scenario", "ScenarioError", "Simulator", "Topology",
    "compile_topology", "list_scenarios", "load_scenario", "make_vec_env",
]
