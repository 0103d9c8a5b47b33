"""The step's thread count: one by default, the serial kernels, no thread pool; more on request.

Where the count comes from (argument, ``meio --threads``, ``MEIO_THREADS``, 1), how bad values are
refused, and that the parallel compilation gives the serial one's numbers bit for bit. Whether a
thread pool starts is measured in a fresh interpreter, where nothing else can have started it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import numba
import numpy as np
import pytest

import meio.envs.simulator
from meio import cli, envs
from meio.agents.config import ConfigError, PPOConfig
from meio.envs.decentralised import DecentralisedVecEnv
from meio.envs.dynamics import PARALLEL_ROWS, step_kernel_serial
from meio.envs.threads import ENV_VAR, default_threads, free_cores, resolve_threads

ROWS = 256


@pytest.fixture(autouse=True)
def _no_env_threads(monkeypatch):
    monkeypatch.delenv(ENV_VAR, raising=False)


def _quiet(fn, *args, **kwargs):
    """Call ``fn`` without the warning that numba has fewer threads than asked for (NUMBA_NUM_THREADS=1)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return fn(*args, **kwargs)


def test_default_is_one_thread_and_the_serial_kernels():
    sim = envs.Simulator("general", n=ROWS)
    assert ROWS >= PARALLEL_ROWS  # big enough that more threads would go parallel
    assert sim.threads == 1 and not sim.parallel
    assert sim._step_kernel is step_kernel_serial
    assert resolve_threads() == 1


def test_env_variable_and_argument_override_the_default(monkeypatch):
    monkeypatch.setenv(ENV_VAR, "2")
    from_env = _quiet(envs.Simulator, "general", n=ROWS)
    assert from_env.threads == 2 and from_env.parallel
    explicit = envs.Simulator("general", n=ROWS, threads=1)  # the argument beats MEIO_THREADS
    assert explicit.threads == 1 and not explicit.parallel
    with default_threads(3):  # meio --threads beats MEIO_THREADS
        assert resolve_threads() == 3
        assert resolve_threads(1) == 1  # ... and the argument beats it
    assert resolve_threads() == 2  # the block restores the previous one
    small = _quiet(envs.Simulator, "general", n=PARALLEL_ROWS - 1)  # small batches stay serial
    assert small.threads == 2 and not small.parallel


@pytest.mark.parametrize("bad", [0, -1, "x", float("nan"), 1.5, True, "0", "two", "\u00b2"])
def test_bad_values_are_refused_naming_the_option(bad, monkeypatch):
    with pytest.raises(ValueError, match=r"^threads: .* integer >= 1"):
        envs.Simulator("ex61", threads=bad)
    with pytest.raises(ConfigError, match=r"^threads: .* integer >= 1"):
        PPOConfig.from_dict({"threads": bad})
    monkeypatch.setenv(ENV_VAR, str(bad))
    with pytest.raises(ValueError, match=rf"^{ENV_VAR}: .* integer >= 1"):
        envs.Simulator("ex61")


def test_auto_is_the_cores_not_busy(monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(8)))
    for load, free in ((0.2, 8), (2.6, 5), (3.4, 5), (7.9, 1), (30.0, 1)):
        monkeypatch.setattr(os, "getloadavg", lambda load=load: (load, 0.0, 0.0))
        assert free_cores() == free
    monkeypatch.setattr(os, "getloadavg", lambda: (2.6, 0.0, 0.0))
    assert resolve_threads("auto") == min(5, numba.config.NUMBA_NUM_THREADS)
    assert PPOConfig.from_dict({"threads": "auto"}).threads == "auto"


def test_more_threads_than_numba_has_warn_and_are_capped():
    cap = numba.config.NUMBA_NUM_THREADS
    with pytest.warns(RuntimeWarning, match=f"NUMBA_NUM_THREADS={cap}"):
        sim = envs.Simulator("general", n=ROWS, threads=cap + 1)
    assert sim.parallel


def test_training_config_field_validates_and_reaches_the_env(tmp_path, monkeypatch):
    assert PPOConfig().threads is None
    assert PPOConfig.from_dict({"threads": 2}).threads == 2
    assert PPOConfig.from_dict({"threads": "3"}).threads == 3
    seen = {}

    class Built(Exception):
        pass

    def fake_make_vec_env(scenario, **kwargs):
        seen.update(kwargs)
        raise Built

    import meio.agents.train

    monkeypatch.setattr(meio.agents.train, "make_vec_env", fake_make_vec_env)
    with pytest.raises(Built):
        meio.agents.train.train("ex61", PPOConfig.from_dict({"threads": 2}), tmp_path / "run", progress=False)
    assert seen["threads"] == 2
    dec = _quiet(DecentralisedVecEnv, "general", n_envs=ROWS, threads=2)
    assert dec.inner.sim.threads == 2 and dec.inner.sim.parallel


@pytest.mark.parametrize("command", ["simulate", "baselines", "train", "evaluate", "benchmark", "sweep"])
def test_every_simulating_command_has_the_option(command):
    required = {
        "simulate": [],
        "baselines": [],
        "train": [],
        "evaluate": ["--model", "m"],
        "benchmark": [],
        "sweep": ["--param", "p", "--values", "1"],
    }[command]
    args = cli.build_parser().parse_args([command, "--scenario", "ex61", *required, "--threads", "auto"])
    assert args.threads == "auto"


def test_cli_option_reaches_every_simulator_and_bad_values_exit_2(monkeypatch, capsys):
    resolved = []
    real = meio.envs.simulator.resolve_threads

    def spy(value=None, source="threads"):
        resolved.append(real(value, source))
        return resolved[-1]

    monkeypatch.setattr(meio.envs.simulator, "resolve_threads", spy)
    assert (
        cli.main(
            [
                "baselines",
                "--scenario",
                "ex61",
                "--only",
                "local,optimised_installation",
                "--periods",
                "40",
                "--warmup",
                "5",
                "--replications",
                "2",
                "--search-periods",
                "40",
                "--search-replications",
                "2",
                "--threads",
                "3",
                "--json",
            ]
        )
        == 0
    )
    assert len(resolved) >= 2 and set(resolved) == {3}  # evaluation and search simulators alike
    assert real() == 1  # the command's setting ends with it
    assert (
        cli.main(
            [
                "simulate",
                "--scenario",
                "ex61",
                "--levels",
                "plant=22,dc=12,retailer=6",
                "--periods",
                "30",
                "--threads",
                "0",
            ]
        )
        == 2
    )
    assert "--threads: '0'" in capsys.readouterr().err


# ---- in a fresh interpreter: the pool stays asleep with one thread; two threads give the same numbers

_PROBE = textwrap.dedent("""
    import json, os, sys
    import numpy as np
    from meio import envs
    from numba.np.ufunc import parallel

    def tasks():
        return len(os.listdir("/proc/self/task")) if os.path.isdir("/proc/self/task") else -1

    def run(threads):
        vec = envs.make_vec_env("general", n_envs=%(rows)d, seed=3, threads=threads)
        out = [vec.reset()]
        rng = np.random.default_rng(0)
        for _ in range(40):
            obs, rew, _, _ = vec.step(rng.uniform(-1, 1, (%(rows)d, vec.action_space.shape[0])))
            out += [obs, rew]
        vec.sim.positions()
        out += [vec.sim.on_hand, vec.sim.pipe, vec.sim.owed, vec.sim._slot_ip]
        return vec.sim.parallel, out

    before = tasks()
    par1, one = run(1)
    report = {"parallel_1": par1, "pool_after_1": bool(parallel._is_initialized), "tasks_before": before,
              "tasks_after_1": tasks()}
    par2, two = run(2)
    report.update(parallel_2=par2, pool_after_2=bool(parallel._is_initialized), tasks_after_2=tasks())
    np.savez(sys.argv[1], *one, *[x for x in two])
    report["arrays"] = len(one)
    print(json.dumps(report))
""") % {"rows": ROWS}


@pytest.fixture(scope="module")
def probe(tmp_path_factory) -> tuple[dict, list[np.ndarray]]:
    path = tmp_path_factory.mktemp("threads") / "out.npz"
    env = {k: v for k, v in os.environ.items() if k != ENV_VAR}
    env["NUMBA_NUM_THREADS"] = "2"  # a real pool of two, whatever the test run uses
    root = Path(__file__).resolve().parents[1]
    done = subprocess.run(
        [sys.executable, "-c", _PROBE, str(path)], cwd=root, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    with np.load(path) as data:
        arrays = [data[f"arr_{i}"] for i in range(2 * report["arrays"])]
    return report, arrays


def test_one_thread_never_starts_the_pool(probe):
    report, _ = probe
    assert not report["parallel_1"]
    assert not report["pool_after_1"]
    if report["tasks_before"] >= 0:
        assert report["tasks_after_1"] == report["tasks_before"]
        assert report["tasks_after_2"] > report["tasks_before"]  # the count does see a pool when one starts
    assert report["parallel_2"] and report["pool_after_2"]


def test_two_threads_equal_one_thread_bit_for_bit(probe):
    report, arrays = probe
    n = report["arrays"]
    for a, b in zip(arrays[:n], arrays[n:]):
        np.testing.assert_array_equal(a, b)
    assert not all((a == 0).all() for a in arrays[:n])  # the rollout did something
