"""Environment throughput: steps per second and node-steps per second, per scenario and batch size.

Batch 1 is the Gymnasium env as users make it (``gymnasium.make``, with its wrappers); batches 64
and 1024 are the SB3 ``VecEnv`` (``meio.envs.make_vec_env``), actions drawn uniformly in ``[-1, 1]``.
Episodes reset as they end (every ``horizon`` steps), so reset costs are included. The last column
is the memory that 1024 parallel copies hold (state, randomness blocks, observation buffers),
measured with ``tracemalloc``.

A second table measures one scenario at 1024 copies with 1 and 2 threads of the step
(``meio.envs.threads``), once on the machine as it is and once while separate processes spin, one core
each (``--busy``, default 1; started and stopped here, never running past the measurement): the
parallel kernel's threads meet at a barrier every step, so a thread that loses its core stalls all
of them, and the default of one thread must never be the slower choice. The busy case bites when
the spinning processes leave fewer free cores than threads, as one does on a 2-core machine.

``--only kernel`` prints a third table instead: :class:`meio.envs.Simulator` stepped directly (no
env, no observations, constant orders) at 1 and 1024 rows, best of five short runs: the step
kernel and its Python call, which the env tables include together with observations and wrappers.

Run: ``.venv/bin/python benchmarks/env_throughput.py [--seconds 2] [--scenarios ex61,general]
[--threads N] [--only scenarios|threads|kernel] [--busy 1]``. Targets on a 2-core machine: >= 20,000 steps/s for a
single 4-stage serial chain (``beer_game``), >= 5 million node-steps/s at batch 1024, < 200 MB for
1024 copies of the largest scenario, and with a core busy, one thread no slower than two.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import time
import tracemalloc
from collections.abc import Iterator
from contextlib import contextmanager
from multiprocessing.synchronize import Event

import gymnasium as gym
import numba
import numpy as np

from meio import envs
from meio.envs.threads import Threads, resolve_threads


def steps_per_second(step, n_rows: int, seconds: float) -> float:
    step()  # compile and warm up
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


def vec_env(name: str, n: int, seconds: float, threads: Threads = None) -> float:
    vec = envs.make_vec_env(name, n_envs=n, seed=0, threads=threads)
    vec.reset()
    actions = np.random.default_rng(0).uniform(-1, 1, (8, n, vec.action_space.shape[0])).astype(np.float32)
    k = [0]

    def step() -> None:
        vec.step(actions[k[0] % 8])
        k[0] += 1

    return steps_per_second(step, n, seconds)


def simulator_rate(name: str, n: int, seconds: float, threads: Threads = None) -> float:
    """Steps/s of ``Simulator.step`` alone, ``n`` rows, constant orders; best of five runs of
    ``seconds / 5`` (a busy machine slows some runs, never speeds one up)."""
    sim = envs.Simulator(name, n=n, threads=threads)
    sim.reset(seeds=0)
    orders = np.full((n, sim.topology.n_slots), 3.0)
    sim.step(orders)  # compile and warm up
    best = 0.0
    for _ in range(5):
        done, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds / 5:
            for _ in range(20):
                sim.step(orders)
            done += 20
        best = max(best, done * n / (time.perf_counter() - start))
    return best


def kernel_table(names: list[str], seconds: float, threads: Threads) -> None:
    """Steps/s of the simulator alone at 1 and 1024 rows, per scenario."""
    print(f"Simulator.step alone; threads of the step: {resolve_threads(threads)}")
    header = f"{'scenario':<23}{'steps/s n=1':>14}{'steps/s n=1024':>16}"
    print(header)
    print("-" * len(header))
    for name in names:
        print(
            f"{name:<23}{simulator_rate(name, 1, seconds, threads):>14,.0f}"
            f"{simulator_rate(name, 1024, seconds, threads):>16,.0f}",
            flush=True,
        )


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


def scenario_table(names: list[str], seconds: float, threads: Threads) -> None:
    """Steps/s at batch 1, 64 and 1024 and the memory of 1024 copies, per scenario."""
    print(f"threads of the step: {resolve_threads(threads)}")
    header = (
        f"{'scenario':<23}{'nodes':>6}{'slots':>6}{'steps/s b=1':>14}{'steps/s b=64':>14}"
        f"{'steps/s b=1024':>16}{'node-steps/s b=1024':>21}{'MB b=1024':>11}"
    )
    print(header)
    print("-" * len(header))
    for name in names:
        topo = envs.Simulator(name).topology
        s1 = single_env(name, seconds)
        s64 = vec_env(name, 64, seconds, threads)
        s1024 = vec_env(name, 1024, seconds, threads)
        mem = memory_mb(name)
        print(
            f"{name:<23}{topo.n_nodes:>6}{topo.n_slots:>6}{s1:>14,.0f}{s64:>14,.0f}{s1024:>16,.0f}"
            f"{s1024 * topo.n_nodes:>21,.0f}{mem:>11.1f}",
            flush=True,
        )
    print()
    print(
        "targets: single 4-stage chain (beer_game) >= 20,000 steps/s; >= 5,000,000 node-steps/s at b=1024; "
        "< 200 MB for 1024 copies of the largest scenario"
    )


def _spin(stop: Event, spinning: Event, deadline: float) -> None:
    """Keep one core busy until told to stop, and in any case until ``deadline`` (wall clock)."""
    spinning.set()
    x = 0
    while not stop.is_set() and time.time() < deadline:
        for _ in range(100_000):  # pure arithmetic between checks: the core stays at 100%
            x += 1


@contextmanager
def cores_spinning(busy: int, deadline_s: float) -> Iterator[None]:
    """``busy`` processes, one core each, spinning inside the block (and never past ``deadline_s``
    seconds from now)."""
    # fork starts the spinner at once (spawn would import the script again); the child runs only the
    # pure-Python loop of _spin, touching nothing of numba's or torch's threads that a fork does not copy.
    ctx = mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")
    stop = ctx.Event()
    procs = []
    try:
        for _ in range(busy):
            spinning = ctx.Event()
            proc = ctx.Process(target=_spin, args=(stop, spinning, time.time() + deadline_s), daemon=True)
            proc.start()
            procs.append(proc)
            if not spinning.wait(120):
                raise RuntimeError("a busy process did not start within 120 s")
        yield
    finally:
        stop.set()
        for proc in procs:
            proc.join(10)
            if proc.is_alive():
                proc.terminate()
                proc.join()


def busy_rate(name: str, n: int, seconds: float, threads: int, busy: int) -> float:
    """Steps/s of ``n`` copies with ``threads`` threads while ``busy`` processes spin."""
    with cores_spinning(busy, 3 * seconds + 120):
        return vec_env(name, n, seconds, threads=threads)


def threads_table(name: str, n: int, seconds: float, busy: int) -> None:
    """Steps/s of ``n`` copies with 1 and 2 threads, as the machine is and with ``busy`` cores spinning."""
    topo = envs.Simulator(name).topology
    print(
        f"{name} ({topo.n_nodes} nodes), {n} copies; numba's pool: NUMBA_NUM_THREADS="
        f"{numba.config.NUMBA_NUM_THREADS}; cores: {os.cpu_count()}"
    )
    header = f"{'threads':>8}  {'machine':<28}{'steps/s':>14}{'node-steps/s':>16}"
    print(header)
    print("-" * len(header))
    for spinning in (0, busy):
        machine = "idle" if not spinning else f"busy ({spinning} process{'es' if spinning > 1 else ''} spinning)"
        for threads in (1, 2):
            rate = busy_rate(name, n, seconds, threads, spinning)
            print(f"{threads:>8}  {machine:<28}{rate:>14,.0f}{rate * topo.n_nodes:>16,.0f}", flush=True)
    print()
    print("target: with a core busy, 1 thread (the default) no slower than 2")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="measuring time per cell (default 2)")
    parser.add_argument("--scenarios", default=",".join(envs.list_scenarios()), help="comma-separated names")
    parser.add_argument("--threads", help="threads of the step in the scenario table (default: $MEIO_THREADS, else 1)")
    parser.add_argument("--threads-scenario", default="general", help="scenario of the threads table (default general)")
    parser.add_argument("--threads-rows", type=int, default=1024, help="copies in the threads table (default 1024)")
    parser.add_argument("--busy", type=int, default=1, help="spinning processes in the busy case (default 1)")
    parser.add_argument(
        "--only",
        choices=["scenarios", "threads", "kernel"],
        help="print only one of the two tables, or the table of the simulator alone",
    )
    args = parser.parse_args()
    if args.busy < 1:
        parser.error(f"--busy: {args.busy} is not an integer >= 1")
    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:
        pass
    if args.only == "kernel":
        kernel_table(args.scenarios.split(","), args.seconds, args.threads)
        return
    if args.only != "threads":
        scenario_table(args.scenarios.split(","), args.seconds, args.threads)
    if args.only is None:
        print()
    if args.only != "scenarios":
        threads_table(args.threads_scenario, args.threads_rows, args.seconds, args.busy)


if __name__ == "__main__":
    main()
