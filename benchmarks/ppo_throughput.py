"""PPO training throughput: the batched VecEnv against SB3's DummyVecEnv over the single env.

Same PPO settings (MlpPolicy 64x64, n_steps 128, minibatch ``--batch-size`` (256; the ``default``
config uses 1,024 with 64 copies), 10 epochs, one torch thread), same
scenario and number of copies; only the vector environment differs. Prints env steps per second
of ``model.learn`` (rollouts and gradient steps together) and of the rollouts alone (PPO with
``n_epochs`` so small that the update is negligible).

Run: ``.venv/bin/python benchmarks/ppo_throughput.py [--scenario ex61] [--steps 60000] [--n-envs 8,32]
[--batch-size 256]``.
"""

from __future__ import annotations

import argparse
import time

import gymnasium as gym
import torch
from stable_baselines3 import PPO
from stable_baselines3.common.vec_env import DummyVecEnv

from meio import envs  # noqa: F401  (registers meio/MultiEchelon-v0)
from meio.envs.vec_env import make_vec_env


def steps_per_second(env, steps: int, n_epochs: int, batch_size: int) -> float:
    model = PPO(
        "MlpPolicy", env, n_steps=128, batch_size=batch_size, n_epochs=n_epochs, seed=0, device="cpu", verbose=0
    )
    model.learn(total_timesteps=env.num_envs * 128)  # warm-up: compile, allocate
    start = time.perf_counter()
    model.learn(total_timesteps=steps, reset_num_timesteps=False)
    return steps / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scenario", default="ex61")
    parser.add_argument("--steps", type=int, default=60_000)
    parser.add_argument("--n-envs", default="8,32")
    parser.add_argument("--batch-size", type=int, default=256, help="PPO minibatch size")
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(f"PPO n_steps 128, minibatch {args.batch_size}, 10 epochs (rollouts alone: 1 epoch)")
    print(f"{'scenario':<10}{'n_envs':>7}{'vec env':>12}{'learn steps/s':>15}{'rollout steps/s':>17}")
    for n in (int(x) for x in args.n_envs.split(",")):
        rows = {}
        for label, make in (
            ("batched", lambda n=n: make_vec_env(args.scenario, n_envs=n, seed=0, action_mode="order_up_to")),
            (
                "dummy",
                lambda n=n: DummyVecEnv(
                    [lambda: gym.make("meio/MultiEchelon-v0", scenario=args.scenario, action_mode="order_up_to")] * n
                ),
            ),
        ):
            rows[label] = (
                steps_per_second(make(), args.steps, 10, args.batch_size),
                steps_per_second(make(), args.steps, 1, args.batch_size),
            )
            learn, rollout = rows[label]
            print(f"{args.scenario:<10}{n:>7}{label:>12}{learn:>15,.0f}{rollout:>17,.0f}", flush=True)
        b, d = rows["batched"], rows["dummy"]
        print(f"{'':<10}{n:>7}{'ratio':>12}{b[0] / d[0]:>15.2f}{b[1] / d[1]:>17.2f}")


if __name__ == "__main__":
    main()
