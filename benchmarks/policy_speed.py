"""Evaluation speed of learned policies: periods per second of ``meio.envs.metrics.evaluate``.

A learned policy's forward pass runs once per period on one row per replication (10 in
``meio evaluate`` by default), so its cost is fixed overhead, not arithmetic. Three ways of running
a PPO agent's network, on the same untrained weights (speed does not depend on them) and the same
simulator:

* ``predict, torch threads as set``: SB3's ``model.predict(obs, deterministic=True)`` with torch's
  default intra-op threads (one per core), the way the agents ran before;
* ``predict, 1 thread``: the same inside :func:`meio.agents.policy.one_torch_thread`;
* ``shipped``: :class:`meio.agents.policy.PPOPolicy` as it is (one thread and the network's mean
  action computed directly, :func:`meio.agents.policy.deterministic_actions`).

and an HDPO agent (:class:`meio.agents.hdpo.HDPOPolicy`) with torch's threads as set against as shipped
(one thread). Each is timed once on the machine as it is and once while ``--busy`` processes spin,
one core each (torch's threads wait for work by spinning, so a thread that loses its core stalls
the others). Times are the best of three runs of ``--periods`` periods; the last two columns are
the ratio to the way the same kind of agent ran before (``predict`` on torch's threads as set).

Run: ``.venv/bin/python benchmarks/policy_speed.py [--scenarios beer_game_basic,distribution]
[--replications 10] [--periods 1000] [--busy 1]``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from env_throughput import cores_spinning  # noqa: E402

from meio.agents.hdpo import HDPOConfig, HDPONet, HDPOPolicy, state_from_simulator  # noqa: E402
from meio.agents.policy import PPOPolicy, one_torch_thread  # noqa: E402
from meio.envs.metrics import evaluate  # noqa: E402
from meio.envs.simulator import Simulator  # noqa: E402
from meio.envs.vec_env import make_vec_env  # noqa: E402


class PredictPolicy(PPOPolicy):
    """A PPO agent run through SB3's ``predict``, on one torch thread or on torch's threads as set."""

    def __init__(self, *args, one_thread: bool, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.one_thread = one_thread

    def act(self, sim: Simulator) -> np.ndarray:
        obs_map, action_map, _ = self._for(sim)
        obs = self.normalize(obs_map(sim, np.zeros((sim.n, obs_map.size), dtype=np.float32)))
        if self.one_thread:
            with one_torch_thread():
                action, _ = self.model.predict(obs, deterministic=True)
        else:
            action, _ = self.model.predict(obs, deterministic=True)
        return action_map.to_orders(sim, np.asarray(action, dtype=np.float64).reshape(sim.n, -1))


class ThreadedHDPOPolicy(HDPOPolicy):
    """An HDPO agent whose forward pass uses torch's threads as set."""

    def act(self, sim: Simulator) -> np.ndarray:
        net, params = self._for(sim)
        with torch.inference_mode():
            orders = net(state_from_simulator(sim, params)).to(torch.float64).numpy()
        return np.rint(orders) if sim.topology.integer_orders else orders


#: The way each kind of agent ran before: the reference of the last column.
OLD = {"ppo": "ppo: predict, torch threads as set", "hdpo": "hdpo: torch threads as set"}


def ppo_agents(scenario: str) -> dict[str, PPOPolicy]:
    from stable_baselines3 import PPO

    venv = make_vec_env(scenario, n_envs=2, seed=0, action_mode="order_up_to")
    model = PPO("MlpPolicy", venv, seed=0, device="cpu", policy_kwargs={"net_arch": [64, 64]})
    stats = (np.zeros(venv.observation_space.shape), np.ones(venv.observation_space.shape))
    return {
        "ppo: predict, torch threads as set": PredictPolicy(model, "order_up_to", *stats, one_thread=False),
        "ppo: predict, 1 thread": PredictPolicy(model, "order_up_to", *stats, one_thread=True),
        "ppo: shipped": PPOPolicy(model, "order_up_to", *stats),
    }


def hdpo_agents(scenario: str) -> dict[str, HDPOPolicy]:
    cfg = HDPOConfig()
    torch.manual_seed(0)
    weights = HDPONet(Simulator(scenario).topology, cfg).state_dict()
    return {
        "hdpo: torch threads as set": ThreadedHDPOPolicy(weights, cfg),
        "hdpo: shipped": HDPOPolicy(weights, cfg),
    }


def periods_per_second(run: Callable[[], object], periods: int) -> float:
    run()  # compile and warm up
    best = min(_timed(run) for _ in range(3))
    return periods / best


def _timed(run: Callable[[], object]) -> float:
    start = time.perf_counter()
    run()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenarios", default="beer_game_basic,distribution")
    parser.add_argument("--replications", type=int, default=10)
    parser.add_argument("--periods", type=int, default=1000)
    parser.add_argument("--busy", type=int, default=1, help="spinning processes in the busy case (default 1)")
    args = parser.parse_args()
    for flag, value in (("--replications", args.replications), ("--periods", args.periods), ("--busy", args.busy)):
        if value < 1:
            parser.error(f"{flag}: {value} is not an integer >= 1")
    print(
        f"torch threads as set: {torch.get_num_threads()}; cores: {os.cpu_count()}; "
        f"{args.replications} replications x {args.periods} periods, best of 3"
    )
    header = f"{'scenario':<18}{'policy':<38}{'idle':>12}{'busy':>12}{'idle / old':>12}{'busy / old':>12}"
    print(header)
    print(" " * 56 + f"{'periods/s':>12}{'periods/s':>12}")
    print("-" * len(header))
    for scenario in args.scenarios.split(","):
        sim = Simulator(scenario, n=args.replications)
        agents = {**ppo_agents(scenario), **hdpo_agents(scenario)}
        rates: dict[str, tuple[float, float]] = {}
        for name, agent in agents.items():

            def run(agent=agent, sim=sim) -> object:
                return evaluate(sim, agent, periods=args.periods, warmup=0, replications=args.replications)

            idle = periods_per_second(run, args.periods)
            with cores_spinning(args.busy, 3600):
                busy = periods_per_second(run, args.periods)
            rates[name] = (idle, busy)
        for name, (idle, busy) in rates.items():
            old = rates[
                f"{name.split(':')[0]}: "
                + ("predict, torch threads as set" if name.startswith("ppo") else "torch threads as set")
            ]
            print(f"{scenario:<18}{name:<38}{idle:>12,.0f}{busy:>12,.0f}{idle / old[0]:>11.2f}x{busy / old[1]:>11.2f}x")


if __name__ == "__main__":
    main()
