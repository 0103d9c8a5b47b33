"""Resolve a scenario once, at the edge: a name, a path or a :class:`Scenario` becomes its compiled
:class:`Topology`, which the inner layers (simulator, environments, baselines, searches) take as is.

The public functions of the project accept ``str | Path | Scenario | Topology`` (:data:`ScenarioLike`)
and call :func:`resolve` once; what they pass inward is the :class:`Topology`, which carries its
scenario (``topology.scenario``), so nothing below loads a file or compiles the network again.

A :class:`Scenario` is frozen, so its topology never goes stale: :func:`resolve` remembers the
topology of each scenario object for as long as that topology is in use (held weakly), and a layer
that only holds the scenario (e.g. a callback given ``topology.scenario``) gets the same topology
back instead of a second compilation. A changed scenario (``dataclasses.replace``, a sweep's new
value) is a new object, compiled afresh.
"""

from __future__ import annotations

import weakref
from pathlib import Path
from typing import TypeAlias

from meio.envs.scenario import Scenario, load_scenario
from meio.envs.topology import Topology, compile_topology

#: What the public entry points accept as a scenario: a shipped scenario's name, a YAML path, a
#: loaded :class:`Scenario` or its compiled :class:`Topology`.
ScenarioLike: TypeAlias = str | Path | Scenario | Topology

#: ``id(scenario) -> topology`` of the scenarios compiled by :func:`resolve` whose topology is still
#: alive. The topology holds its scenario, so while an entry exists its id cannot be reused by
#: another object; the entry goes when the topology is collected.
_COMPILED: weakref.WeakValueDictionary[int, Topology] = weakref.WeakValueDictionary()


def resolve(scenario: ScenarioLike) -> Topology:
    """The compiled :class:`Topology` of ``scenario`` (its scenario is ``.scenario``).

    A :class:`Topology` passes through; a :class:`Scenario` is compiled once per object (see the
    module docstring); a name or path is loaded (:func:`~meio.envs.scenario.load_scenario`, which
    raises :class:`~meio.envs.scenario.ScenarioError` naming the bad field) and compiled.
    """
    if isinstance(scenario, Topology):
        return scenario
    sc = scenario if isinstance(scenario, Scenario) else load_scenario(scenario)
    topo = _COMPILED.get(id(sc))
    if topo is None or topo.scenario is not sc:
        topo = compile_topology(sc)
        _COMPILED[id(sc)] = topo
    return topo
