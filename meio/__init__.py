"""meio: multi-echelon inventory optimisation with a fast exact simulator, classical policies and
reinforcement-learning agents.

The packages live under this one namespace: :mod:`meio.envs` (scenarios, the batched simulator and
the Gymnasium environments), :mod:`meio.baselines` (the classical policies), :mod:`meio.agents`
(PPO training and trained policies), :mod:`meio.configs` (the shipped scenarios and training
configs), and the commands of :mod:`meio.cli`.

Importing ``meio`` registers the Gymnasium id ``meio/MultiEchelon-v0``. Gymnasium 1.x loads no
plugins from entry points; to make the environment without importing ``meio`` first, name the
module in the id and Gymnasium imports it::

    import gymnasium as gym
    env = gym.make("meio:meio/MultiEchelon-v0", scenario="ex61")
"""

from gymnasium.envs.registration import register, registry

#: The Gymnasium id of :class:`meio.envs.multi_echelon.MultiEchelonEnv`.
ENV_ID = "meio/MultiEchelon-v0"

if ENV_ID not in registry:
    register(id=ENV_ID, entry_point="meio.envs.multi_echelon:MultiEchelonEnv")

__all__ = ["ENV_ID"]
