"""A scenario is resolved once, at the edge (docs: /work/shared/docs/STYLE.md, "Resolve at the edge").

Every entry point (training, the baselines, the benchmark, the sweep) turns a name into a
``Scenario`` and compiles its ``Topology`` once; the layers below take the ``Topology``. The counts
come from wrapping :func:`~meio.envs.scenario.load_scenario`, the YAML reader and
:func:`~meio.envs.topology.compile_topology` wherever a module has bound them. The results must be
the same, bit for bit, whether a layer is given a name or the compiled ``Topology``.
"""

from __future__ import annotations

import collections
import sys
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Any

import numpy as np
import pytest

# Imported before the counters are installed, so that every module that binds a counted function is wrapped.
import meio.agents.train
import meio.baselines.run
import meio.benchmark
import meio.cli
import meio.envs.scenario as scenario_module
import meio.envs.topology as topology_module
import meio.envs.vec_env
import meio.sweep
from meio.agents.config import PPOConfig
from meio.baselines.run import run_baselines
from meio.baselines.search import optimise_base_stock
from meio.envs.metrics import evaluate
from meio.envs.policies import BaseStockPolicy
from meio.envs.resolve import resolve
from meio.envs.scenario import ScenarioError, load_scenario
from meio.envs.simulator import Simulator
from meio.envs.topology import Topology
from meio.envs.vec_env import make_vec_env

TINY = dict(periods=60, warmup=10, replications=2, search_periods=40, search_replications=2)


@pytest.fixture
def counts(monkeypatch) -> Iterator[collections.Counter]:
    """Calls of ``load_scenario``, of the YAML reader and of ``compile_topology`` from now on."""
    seen: collections.Counter = collections.Counter()

    def counted(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            seen[name] += 1
            return fn(*args, **kwargs)

        return wrapper

    originals = {"load_scenario": scenario_module.load_scenario, "compile_topology": topology_module.compile_topology}
    for module in list(sys.modules.values()):
        for name, fn in originals.items():
            if getattr(module, name, None) is fn:
                monkeypatch.setattr(module, name, counted(name, fn))
    monkeypatch.setattr(scenario_module, "_read_yaml", counted("yaml", scenario_module._read_yaml))
    yield seen


def test_training_loads_and_compiles_its_scenario_once(counts, tmp_path):
    cfg = PPOConfig.from_dict(
        dict(
            n_envs=2,
            n_steps=64,
            batch_size=64,
            n_epochs=1,
            total_steps=128,
            eval_every=128,
            checkpoint_every=128,
            eval_periods=30,
            eval_warmup=5,
            eval_replications=2,
        )
    )
    result = meio.agents.train.train("ex61", cfg, tmp_path / "run", seed=1, progress=False)
    assert result.baseline_name == "clark_scarf"  # the reference was searched for: baselines ran too
    assert dict(counts) == {"load_scenario": 1, "yaml": 1, "compile_topology": 1}


def test_the_baselines_load_and_compile_once_however_many_search_rounds(counts):
    include = ("clark_scarf", "local", "optimised_installation", "optimised_echelon", "optimised_s_S")
    report = run_baselines("ex61", include=include, **TINY)
    assert {b.name for b, _ in report.results} >= {"local", "optimised_installation", "optimised_echelon"}
    assert dict(counts) == {"load_scenario": 1, "yaml": 1, "compile_topology": 1}


def test_a_search_given_the_topology_compiles_nothing(counts):
    topo = resolve("ex61")
    counts.clear()
    start = {"retailer": 2.0, "dc": 2.0, "plant": 2.0}  # far from the optimum: many rounds
    _, trace = optimise_base_stock(topo, "installation", start, periods=40, warmup=5, replications=2)
    assert trace.rounds > 3
    assert counts["compile_topology"] == 0 and counts["yaml"] == 0


def test_the_benchmark_loads_and_compiles_once(counts):
    result = meio.benchmark.run_benchmark("ex61", baselines=("clark_scarf", "local", "optimised_echelon"), **TINY)
    assert set(result.table.policy) == {"clark_scarf", "local", "optimised_echelon"}
    assert result.topology.scenario is result.scenario
    assert dict(counts) == {"load_scenario": 1, "yaml": 1, "compile_topology": 1}


def test_the_sweep_loads_once_and_compiles_each_value_once(counts):
    values = [1.0, 2.0, 3.0]
    result = meio.sweep.run_sweep(
        "ex61", "nodes[2].holding_cost", values, periods=60, warmup=10, replications=2, baselines=("local",)
    )
    assert list(result.table.value) == values
    # The base scenario, then one new scenario per value (changed holding cost, new network arrays).
    assert dict(counts) == {"load_scenario": 1, "yaml": 1, "compile_topology": 1 + len(values)}


def test_resolve_passes_a_topology_through_and_compiles_a_scenario_object_once():
    sc = load_scenario("ex61")
    topo = resolve(sc)
    assert isinstance(topo, Topology) and topo.scenario is sc
    assert resolve(topo) is topo
    assert resolve(sc) is topo  # the same frozen object: the same network
    longer = replace(sc, horizon=sc.horizon + 1)  # a changed scenario is a new object
    assert resolve(longer) is not topo and resolve(longer).horizon == sc.horizon + 1
    assert resolve("ex61") is not topo  # a name is loaded afresh


def test_resolve_reports_an_unknown_scenario_by_name():
    with pytest.raises(ScenarioError, match=r"scenario: 'ex6l' is neither a file nor a shipped scenario.*ex61"):
        resolve("ex6l")


def test_a_vec_env_keeps_the_topology_it_is_given_and_recompiles_only_for_another_horizon():
    topo = resolve("ex61")
    assert make_vec_env(topo, n_envs=2).topology is topo
    assert make_vec_env(topo, n_envs=2, horizon=topo.horizon).topology is topo
    other = make_vec_env(topo, n_envs=2, horizon=7)
    assert other.topology is not topo and other.topology.horizon == 7 and other.scenario.horizon == 7
    with pytest.raises(ValueError, match=r"horizon: 0 is not an integer >= 1"):
        make_vec_env(topo, n_envs=2, horizon=0)


def test_a_simulator_from_the_topology_matches_one_from_the_name_bit_for_bit():
    topo = resolve("ex61")
    costs = []
    for source in ("ex61", topo):
        sim = Simulator(source, n=3)
        levels = {"retailer": 6.0, "dc": 7.0, "plant": 11.0}  # installation levels near ex61's optimum
        ev = evaluate(sim, BaseStockPolicy(sim.topology, levels), periods=80, warmup=10, replications=3, seed=4)
        costs.append(ev.per_period_cost)
    assert Simulator(topo).topology is topo
    np.testing.assert_array_equal(costs[0], costs[1])


def test_the_baselines_from_the_topology_match_those_from_the_name_bit_for_bit():
    include = ("local", "optimised_installation")
    by_name = run_baselines("ex61", include=include, **TINY)
    by_topo = run_baselines(resolve("ex61"), include=include, **TINY)
    assert [b.levels for b, _ in by_name.results] == [b.levels for b, _ in by_topo.results]
    for (_, a), (_, b) in zip(by_name.results, by_topo.results):
        np.testing.assert_array_equal(a.per_period_cost, b.per_period_cost)
