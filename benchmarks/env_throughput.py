"""Environment throughput: steps per second and node-steps per second, per scenario and batch size.

Batch 1 is the Gymnasium env as users make it (``gymnasium.make``, with its wrappers); batches 64
and 1024 are the SB3 ``VecEnv`` (``envs.make_vec_env``), actions drawn uniformly in ``[-1, 1]``.
Episodes reset as they end (every ``horizon`` steps), so reset costs are included. The last column
is the memory that 1024 parallel copies hold (state, randomness blocks, observation buffers),
measured with ``tracemalloc``.

Run: ``.venv/bin/python benchmarks/env_throughput.py [--seconds 2] [--scenarios ex61,general]``.
Targets on a 2-core machine: >= 20,000 steps/s for a single 4-stage serial chain (``beer_game``),
>= 5 million node-steps/s at batch 1024, and < 200 MB for 1024 copies of the largest scenario.
"""

from __future__ import annotations

import argparse
import time
import tracemalloc

import gymnasium as gym
import numpy as np

import envs


def steps_per_second(step, n_rows: int, seconds: float) -> float:
    step()                                            # compile and warm up
    done, start = 0, time.perf_counter()
    while True:
        for _ in range(50):
            step()
        done += 50
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            return done * n_rows / elapsed


def single_env(name: str, seconds: float) -> float:
    env = gym.make("meio/MultiEchelon-v0", scenario=name)
    env.reset(seed=0)
    actions = np.random.default_rng(0).uniform(-1, 1, (1000, env.action_space.shape[0])).astype(np.float32)
    k = [0]

    def step() -> None:
        _, _, term, trunc, _ = env.step(actions[k[0] % 1000])
        k[0] += 1
        if term or trunc:
            env.reset()

    return steps_per_second(step, 1, seconds)


def vec_env(name: str, n: int, seconds: float) -> float:
    vec = envs.make_vec_env(name, n_envs=n, seed=0)
    vec.reset()
    actions = np.random.default_rng(0).uniform(-1, 1, (8, n, vec.action_space.shape[0])).astype(np.float32)
    k = [0]

    def step() -> None:
        vec.step(actions[k[0] % 8])
        k[0] += 1

    return steps_per_second(step, n, seconds)


def memory_mb(name: str, n: int = 1024) -> float:
    tracemalloc.start()
    vec = envs.make_vec_env(name, n_envs=n, seed=0)
    vec.reset()
    for _ in range(3):
        vec.step(np.zeros((n, vec.action_space.shape[0]), dtype=np.float32))
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    del vec
    return peak / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="measuring time per cell (default 2)")
    parser.add_argument("--scenarios", default=",".join(envs.list_scenarios()), help="comma-separated names")
    args = parser.parse_args()
    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:
        pass
    rows = []
    header = (f"{'scenario':<23}{'nodes':>6}{'slots':>6}{'steps/s b=1':>14}{'steps/s b=64':>14}"
              f"{'steps/s b=1024':>16}{'node-steps/s b=1024':>21}{'MB b=1024':>11}")
    print(header)
    print("-" * len(header))
    for name in args.scenarios.split(","):
        topo = envs.Simulator(name).topology
        s1 = single_env(name, args.seconds)
        s64 = vec_env(name, 64, args.seconds)
        s1024 = vec_env(name, 1024, args.seconds)
        mem = memory_mb(name)
        rows.append((name, topo.n_nodes, s1, s1024 * topo.n_nodes, mem))
        print(f"{name:<23}{topo.n_nodes:>6}{topo.n_slots:>6}{s1:>14,.0f}{s64:>14,.0f}{s1024:>16,.0f}"
              f"{s1024 * topo.n_nodes:>21,.0f}{mem:>11.1f}", flush=True)
    print()
    print("targets: single 4-stage chain (beer_game) >= 20,000 steps/s; >= 5,000,000 node-steps/s at b=1024; "
          "< 200 MB for 1024 copies of the largest scenario")


if __name__ == "__main__":
    main()
