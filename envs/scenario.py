"""Scenario files: YAML -> frozen, validated dataclasses.

A scenario describes a network of stock points (nodes) and the lanes between them, the demand, lead
times and costs. ``load_scenario`` accepts a shipped scenario's name (``configs/scenarios/NAME.yaml``)
or a path. Every rule is checked before anything is built; a bad file raises one
:class:`ScenarioError` listing every broken rule, each message naming the field path, the bad
value and the rule, e.g.::

    lanes[2].lead_time: -1 is negative; lead times are integers >= 0

Keys given twice in a YAML mapping, numbers so large that costs overflow or arrays cannot be
allocated, and capacities below the mean demand they must carry are errors too.

Every key a file may hold is declared once, with its rule and doc, by the pydantic models of
:mod:`meio.envs.scenario_model` (``meio schema`` writes them as a JSON Schema for editors); this
module checks what needs the whole network (the graph, bills of materials, correlation, sizes,
capacities) and builds the dataclasses the simulator uses. The meaning of every key is in
``docs/scenarios.md``; the timing and cost conventions in ``docs/model.md``.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import numpy as np
import yaml

from meio.envs.distributions import DemandSpec, LeadTimeSpec, Seasonality
from meio.envs.graph import find_cycle, reachable_from, reaching
from meio.envs.hints import did_you_mean
from meio.envs.scenario_model import (
    EXTERNAL,
    MAX_LEAD_TIME,
    MAX_QUANTITY,
    ConstantLeadTime,
    DiscreteDemand,
    FactorSeasonality,
    LaneModel,
    NodeModel,
    PoissonDemand,
    TraceDemand,
    UniformDemand,
    UniformLeadTime,
    validate,
)

__all__ = [
    "EXTERNAL",
    "MAX_LEAD_TIME",
    "MAX_QUANTITY",
    "Disruption",
    "Lane",
    "Mode",
    "Node",
    "Scenario",
    "ScenarioError",
    "capacity_shortfalls",
    "check_sizes",
    "list_scenarios",
    "load_scenario",
    "read_yaml",
    "scenarios_dir",
]


class ScenarioError(ValueError):
    """A scenario file or dictionary breaks one or more rules; each message names its field path.

    ``errors`` lists every problem found as ``(path, message)`` pairs, in the order the file is
    read; ``str(error)`` is their messages, one per line, the first one first. Loading checks every
    node and lane before it raises, so one bad field does not hide another.
    """

    def __init__(self, message: str = "", *, errors: Iterable[tuple[str, str]] | None = None) -> None:
        self.errors: list[tuple[str, str]] = list(errors) if errors is not None else [(_path_of(message), message)]
        super().__init__("\n".join(msg for _, msg in self.errors))

    def __reduce__(self) -> tuple:
        return (_rebuild_error, (self.errors,))


def _rebuild_error(errors: list[tuple[str, str]]) -> ScenarioError:
    return ScenarioError(errors=errors)


def _path_of(message: str) -> str:
    """The field path a message starts with (``nodes[3] (extra): ...`` -> ``nodes[3]``)."""
    head = message.split(": ", 1)[0] if ": " in message else ""
    return re.sub(r" \(.*\)$", "", head)


#: Copies (rows) the memory estimate assumes: a training batch of this many must fit.
SIZE_CHECK_ROWS = 1024
#: Bytes the arrays whose size the scenario sets (pipelines of SIZE_CHECK_ROWS copies with their
#: observation entries, random lead-time tables, demand tables) may take together.
MAX_ARRAY_BYTES = 2**30


# ------------------------------------------------------------------------------------------------
# Dataclasses
# ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Disruption:
    """Random outages of an external supplier: a two-state Markov chain per period.

    An outage starts with probability ``start_probability`` in a period the supplier is up and ends
    with probability ``1 / mean_duration`` in a period it is down (geometric durations with mean
    ``mean_duration``). During an outage the supplier ships nothing; what is ordered stays owed.
    """

    start_probability: float
    mean_duration: float

    @property
    def end_probability(self) -> float:
        return 1.0 / self.mean_duration


@dataclass(frozen=True)
class Mode:
    """One transport mode of a lane: its lead time, costs and capacity."""

    name: str
    lead_time: LeadTimeSpec
    unit_cost: float = 0.0
    fixed_cost: float = 0.0
    capacity: float = math.inf
    pipeline_holding_cost: float = 0.0
    order_crossing: bool = False
    max_order: float | None = None
    max_level: float | None = None


@dataclass(frozen=True)
class Lane:
    """A supply relation ``source -> target``: ``target`` orders from ``source`` (or ``external``)."""

    source: str
    target: str
    modes: tuple[Mode, ...]
    disruption: Disruption | None = None
    #: Guaranteed-service model only (lanes from ``external``): the external supplier's committed
    #: service time ``si_j``, the first part of the lane's lead time (``meio.baselines.gsm``).
    service_time: int = 0

    @property
    def is_external(self) -> bool:
        return self.source == EXTERNAL


@dataclass(frozen=True)
class Node:
    """A stock point. Costs are local (installation) rates per unit and period."""

    id: str
    holding_cost: float = 0.0
    penalty_cost: float = 0.0
    demand: DemandSpec | None = None
    capacity: float = math.inf
    initial_inventory: float = 0.0
    service_target: float | None = None
    #: Customer segment of a demand node (reports aggregate service by it); ``None``: its own.
    segment: str | None = None
    sourcing: Literal["single", "assembly", "alternative"] = "single"
    bom: tuple[tuple[str, float], ...] = ()
    #: Guaranteed-service model only: the largest outbound service time ``s_j`` the node may quote;
    #: ``None`` is the model's default (0 at a node facing customers, no limit elsewhere).
    max_service_time: int | None = None


@dataclass(frozen=True)
class Scenario:
    """A validated scenario. Nodes keep the file's order; lanes too."""

    name: str
    nodes: tuple[Node, ...]
    lanes: tuple[Lane, ...]
    unmet_demand: Literal["backorder", "lost_sales"] = "backorder"
    allocation: Literal["fcfs_index", "proportional"] = "fcfs_index"
    horizon: int = 52
    integer_orders: bool = False
    action_mode: Literal["order_quantity", "order_up_to", "echelon_order_up_to"] = "order_quantity"
    demand_correlation: tuple[tuple[float, ...], ...] | None = None
    description: str = ""
    source: str = field(default="", compare=False)

    @property
    def node_ids(self) -> tuple[str, ...]:
        return tuple(n.id for n in self.nodes)

    def node(self, node_id: str) -> Node:
        for n in self.nodes:
            if n.id == node_id:
                return n
        raise KeyError(node_id)

    @property
    def demand_nodes(self) -> tuple[Node, ...]:
        return tuple(n for n in self.nodes if n.demand is not None)

    @property
    def penalty_name(self) -> str:
        return "backorder_cost" if self.unmet_demand == "backorder" else "lost_sales_cost"

    def lanes_into(self, node_id: str) -> tuple[Lane, ...]:
        return tuple(l for l in self.lanes if l.target == node_id)

    def lanes_from(self, node_id: str) -> tuple[Lane, ...]:
        return tuple(l for l in self.lanes if l.source == node_id)

    def to_dict(self) -> dict:
        """The scenario as a plain dictionary that :meth:`from_dict` reads back."""
        return _scenario_to_dict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], base_dir: str | Path | None = None, source: str = "") -> Scenario:
        """Validate ``data`` (a parsed YAML mapping). Relative trace files resolve from ``base_dir``."""
        return _parse(data, Path(base_dir) if base_dir else Path.cwd(), source)


# ------------------------------------------------------------------------------------------------
# Loading
# ------------------------------------------------------------------------------------------------
def scenarios_dir() -> Path:
    """Folder of the shipped scenarios (``configs/scenarios``)."""
    return Path(str(resources.files("meio.configs"))) / "scenarios"


def list_scenarios() -> list[str]:
    """Names of the shipped scenarios."""
    return sorted(p.stem for p in scenarios_dir().glob("*.yaml"))


def load_scenario(name_or_path: str | Path | Scenario) -> Scenario:
    """Load a shipped scenario by name, or a YAML file by path; a :class:`Scenario` passes through."""
    if isinstance(name_or_path, Scenario):
        return name_or_path
    text = str(name_or_path)
    path = Path(text)
    if not path.is_file() and not text.endswith((".yaml", ".yml")) and "/" not in text:
        path = scenarios_dir() / f"{text}.yaml"
        if not path.is_file():
            names = list_scenarios()
            raise ScenarioError(
                f"scenario: {text!r} is neither a file nor a shipped scenario{did_you_mean(text, names)}; "
                f"shipped scenarios: {', '.join(names)}"
            )
    elif not path.is_file():
        raise ScenarioError(f"scenario: file {text!r} does not exist")
    try:
        data, repeated = _read_yaml(path.read_text(), str(path))
    except yaml.YAMLError as exc:
        raise ScenarioError(f"scenario: {path} is not valid YAML: {exc}") from None
    try:
        scenario = Scenario.from_dict(data, base_dir=path.parent, source=str(path))
    except ScenarioError as exc:  # report repeated keys with the rest
        raise ScenarioError(errors=repeated + exc.errors) from None
    if repeated:
        raise ScenarioError(errors=repeated)
    return scenario


def read_yaml(text: str, origin: str = "<text>") -> Any:
    """``yaml.safe_load(text)``, except that a key given twice in one mapping is an error.

    PyYAML keeps the last of two equal keys without a word, so a setting written twice silently
    loses its first value. Every repeated key is reported (:class:`ScenarioError`) with its field
    path and both lines in ``origin``; syntax errors still raise ``yaml.YAMLError``.
    """
    data, repeated = _read_yaml(text, origin)
    if repeated:
        raise ScenarioError(errors=repeated)
    return data


def _read_yaml(text: str, origin: str) -> tuple[Any, list[tuple[str, str]]]:
    """The document (as ``yaml.safe_load`` builds it) and its repeated keys."""
    loader = yaml.SafeLoader(text)
    try:
        root = loader.get_single_node()
        if root is None:
            return None, []
        # Walked before construction, which folds merge keys (<<) into the node tree in place.
        repeated = _repeated_keys(root, "", origin, set())
        return loader.construct_document(root), repeated
    finally:
        loader.dispose()


def _repeated_keys(node: yaml.Node, path: str, origin: str, seen: set[int]) -> list[tuple[str, str]]:
    """Keys that occur twice in a mapping of the YAML node tree below ``node``, as ``(path, message)``."""
    if id(node) in seen:  # an alias: already walked (and maybe recursive)
        return []
    seen.add(id(node))
    found: list[tuple[str, str]] = []
    if isinstance(node, yaml.MappingNode):
        lines: dict[tuple[str, str], int] = {}
        for key, value in node.value:
            if isinstance(key, yaml.ScalarNode) and key.tag != "tag:yaml.org,2002:merge":
                where = f"{path}.{key.value}" if path else key.value
                line = key.start_mark.line + 1
                if (key.tag, key.value) in lines:
                    first = lines[key.tag, key.value]
                    lines_text = f"line {line}" if first == line else f"lines {first} and {line}"
                    found.append(
                        (
                            where,
                            (
                                f"{where}: the key is given twice in {origin} ({lines_text}); YAML would "
                                "keep the last one silently: remove one"
                            ),
                        )
                    )
                else:
                    lines[key.tag, key.value] = line
                found += _repeated_keys(value, where, origin, seen)
            else:
                found += _repeated_keys(value, path, origin, seen)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            found += _repeated_keys(item, f"{path}[{i}]", origin, seen)
    return found


# ------------------------------------------------------------------------------------------------
# Validation: the models of ``scenario_model`` check every key; the rules between nodes and lanes
# (the graph, bills of materials, correlation) and of the whole scenario (sizes, capacities) follow.
# ------------------------------------------------------------------------------------------------
def _parse(data: Any, base_dir: Path, source: str) -> Scenario:
    """Validate ``data`` in three stages, each reporting every error it finds before stopping: the
    keys of every node and lane each on its own; the network, which needs every node and lane; what
    the numbers imply together. So one mistake is not reported again as its consequences."""
    if not isinstance(data, Mapping):
        raise ScenarioError(f"scenario: expected a mapping (key: value), got {type(data).__name__} {data!r}")
    # 1. Every key (pydantic models, one declaration per key).
    model, errors = validate(data, base_dir)
    _raise(errors)
    assert model is not None
    # 2. The network.
    ids = [n.id for n in model.nodes]
    lanes = [_lane(lane) for lane in model.lanes]
    _raise(_network_errors(ids, lanes))
    nodes: list[Node] = []
    for i, raw in enumerate(model.nodes):
        nodes.append(_collect(errors, _node, raw, f"nodes[{i}]", lanes))
    _raise(errors)
    demand_nodes = [n for n in nodes if n.demand is not None]
    if not demand_nodes:
        raise ScenarioError("nodes: no node has customer demand; give at least one node a demand")
    errors = _idle_nodes(nodes, lanes) + _echelon_mode_errors(model.action_mode, nodes, lanes)
    correlation = None
    if model.demand_correlation is not None:
        correlation = _collect(errors, _correlation, data["demand_correlation"], model.demand_correlation, demand_nodes)
    _raise(errors)
    scenario = Scenario(
        name=model.name,
        nodes=tuple(nodes),
        lanes=tuple(lanes),
        unmet_demand=model.unmet_demand,
        allocation=model.allocation,
        horizon=model.horizon,
        integer_orders=model.integer_orders,
        action_mode=model.action_mode,
        demand_correlation=correlation,
        description=model.description,
        source=source,
    )
    # 3. What the numbers imply together: array sizes, and capacities that cannot keep up.
    _collect(errors, check_sizes, scenario)
    _raise(errors + capacity_shortfalls(scenario))
    return scenario


def _raise(errors: list[tuple[str, str]]) -> None:
    if errors:
        raise ScenarioError(errors=errors)


def _collect(errors: list[tuple[str, str]], check: Any, *args: Any) -> Any:
    """``check(*args)``, or ``None`` after adding its :class:`ScenarioError` to ``errors``."""
    try:
        return check(*args)
    except ScenarioError as exc:
        errors.extend(exc.errors)
        return None


def _lead_time(value: Any) -> LeadTimeSpec:
    """A validated ``lead_time`` as the simulator's table of values and probabilities."""
    if isinstance(value, int):
        return LeadTimeSpec(values=(value,), probs=(1.0,))
    if isinstance(value, ConstantLeadTime):
        return LeadTimeSpec(values=(value.value,), probs=(1.0,))
    if isinstance(value, UniformLeadTime):
        k = value.high - value.low + 1
        return LeadTimeSpec(values=tuple(range(value.low, value.high + 1)), probs=(1.0 / k,) * k, dist="uniform_int")
    order = np.argsort(value.values)
    return LeadTimeSpec(
        values=tuple(value.values[i] for i in order), probs=tuple(value.probs[i] for i in order), dist="discrete"
    )


def _demand(d: Any) -> DemandSpec:
    """A validated demand mapping as a :class:`DemandSpec`; discrete values sorted, with their CDF."""
    if isinstance(d, TraceDemand):
        return DemandSpec("trace", trace=d.values, trace_file=d.file, trace_column=d.column, trace_start=d.start)
    extra: dict[str, Any] = {"trend": d.trend}
    if isinstance(d.seasonality, FactorSeasonality):
        extra["seasonality"] = Seasonality(factors=tuple(d.seasonality.factors))
    elif d.seasonality is not None:
        s = d.seasonality
        extra["seasonality"] = Seasonality(amplitude=s.amplitude, period=s.period, phase=s.phase)
    if isinstance(d, PoissonDemand):
        return DemandSpec(d.dist, mean=d.mean, **extra)
    if isinstance(d, UniformDemand):
        return DemandSpec(d.dist, low=d.low, high=d.high, **extra)
    if isinstance(d, DiscreteDemand):
        order = np.argsort(d.values)
        vals = tuple(d.values[i] for i in order)
        ps = tuple(d.probs[i] for i in order)
        cdf = np.cumsum(ps)
        cdf[-1] = 1.0
        return DemandSpec(d.dist, values=vals, probs=ps, _cdf=tuple(cdf), **extra)
    return DemandSpec(d.dist, mean=d.mean, sd=d.sd, **extra)


def _lane(lane: LaneModel) -> Lane:
    names = [m.name for m in lane.modes] if lane.modes is not None else ["default"]
    modes = tuple(
        Mode(
            name=name,
            lead_time=_lead_time(m.lead_time),
            unit_cost=m.unit_cost,
            fixed_cost=m.fixed_cost,
            capacity=math.inf if m.capacity is None else m.capacity,
            pipeline_holding_cost=m.pipeline_holding_cost,
            order_crossing=m.order_crossing,
            max_order=m.max_order,
            max_level=m.max_level,
        )
        for name, m in zip(names, lane.mode_list())
    )
    disruption = (
        None
        if lane.disruption is None
        else Disruption(
            start_probability=lane.disruption.start_probability, mean_duration=lane.disruption.mean_duration
        )
    )
    return Lane(
        source=lane.source, target=lane.target, modes=modes, disruption=disruption, service_time=lane.service_time
    )


def _node(raw: NodeModel, path: str, lanes: list[Lane]) -> Node:
    """The node, with its sourcing rule and bill of materials checked against its supplying lanes."""
    parents = [lane.source for lane in lanes if lane.target == raw.id]
    sourcing = raw.sourcing
    if sourcing == "alternative" and len(parents) < 2:
        raise ScenarioError(
            f"{path}.sourcing: 'alternative' needs at least two supplying lanes; {raw.id!r} has {len(parents)}"
        )
    if sourcing is None:
        sourcing = "assembly" if len(parents) > 1 or raw.bom is not None else "single"
    bom: tuple[tuple[str, float], ...] = ()
    if raw.bom is not None:
        for parent in raw.bom:
            if parent not in parents:
                raise ScenarioError(
                    f"{path}.bom.{parent}: {parent!r} is not a supplier of {raw.id!r}"
                    f"{did_you_mean(parent, parents)}; its suppliers are {', '.join(parents)}"
                )
        missing = [p for p in parents if p not in raw.bom]
        if missing:
            raise ScenarioError(f"{path}.bom: no ratio for supplier {missing[0]!r}; list every supplier of {raw.id!r}")
        bom = tuple((p, raw.bom[p]) for p in parents)
    elif sourcing == "assembly":
        bom = tuple((p, 1.0) for p in parents)
    if sourcing == "assembly" and len(parents) == 1 and all(r == 1.0 for _, r in bom):
        sourcing, bom = "single", ()
    return Node(
        id=raw.id,
        holding_cost=raw.holding_cost,
        penalty_cost=raw.penalty_cost(),
        demand=None if raw.demand is None else _demand(raw.demand),
        capacity=math.inf if raw.capacity is None else raw.capacity,
        initial_inventory=raw.initial_inventory,
        service_target=raw.service_target,
        segment=raw.segment,
        sourcing=sourcing,
        bom=bom,
        max_service_time=raw.max_service_time,
    )


def _internal(lanes: list[Lane]) -> list[tuple[str, str]]:
    return [(lane.source, lane.target) for lane in lanes if not lane.is_external]


def _error(path: str, text: str, name: str = "") -> tuple[str, str]:
    """A ``(path, message)`` pair whose message starts with the path (and the node's ``name``)."""
    return path, f"{path}{f' ({name})' if name else ''}: {text}"


def _network_errors(ids: list[str], lanes: list[Lane]) -> list[tuple[str, str]]:
    """Unique node ids; lanes between known nodes, once per pair; no cycle; every node supplied."""
    errors = [
        _error(f"nodes[{i}].id", f"{nid!r} is already used by nodes[{ids.index(nid)}]")
        for i, nid in enumerate(ids)
        if ids.index(nid) != i
    ]
    # A repeated (source, target) pair also covers two external lanes into one node.
    seen: dict[tuple[str, str], int] = {}
    for i, lane in enumerate(lanes):
        if lane.source != EXTERNAL and lane.source not in ids:
            hint = did_you_mean(lane.source, [*ids, EXTERNAL])
            errors.append(
                _error(f"lanes[{i}].from", f"{lane.source!r} is not a node{hint}; use a node id or {EXTERNAL!r}")
            )
        elif lane.target not in ids:
            errors.append(_error(f"lanes[{i}].to", f"{lane.target!r} is not a node{did_you_mean(lane.target, ids)}"))
        elif lane.source == lane.target:
            errors.append(_error(f"lanes[{i}]", f"a lane from {lane.source!r} to itself is a cycle"))
        elif (lane.source, lane.target) in seen:
            errors.append(
                _error(
                    f"lanes[{i}]",
                    f"{lane.source} -> {lane.target} repeats "
                    f"lanes[{seen[lane.source, lane.target]}]; give one lane several "
                    "modes instead",
                )
            )
        else:
            seen[lane.source, lane.target] = i
    if errors:  # the rest needs every lane's two ends
        return errors
    cycle = find_cycle(_internal(lanes), ids)
    if cycle:  # reachability means little in a cyclic graph
        return [_error("lanes", f"the network has a cycle {' -> '.join(cycle + cycle[:1])}; it must be acyclic")]
    reached = reachable_from(ids, _internal(lanes), [lane.target for lane in lanes if lane.is_external])
    return [
        _error(f"nodes[{i}]", "no supplier can reach it; add a lane from 'external' or from a node that is supplied", n)
        for i, n in enumerate(ids)
        if n not in reached
    ]


def _echelon_mode_errors(mode: str, nodes: list[Node], lanes: list[Lane]) -> list[tuple[str, str]]:
    """``action_mode: echelon_order_up_to`` needs every node's echelon inventory position (its own
    position plus everything downstream; Clark & Scarf 1960), which is defined only where every node
    has one supplier: one lane in and no bill of materials (the rule of
    :meth:`meio.envs.topology.Topology.node_with_several_suppliers`, checked here at the file's edge)."""
    if mode != "echelon_order_up_to":
        return []
    for node in nodes:
        into = [f"lanes[{i}]" for i, lane in enumerate(lanes) if lane.target == node.id]
        if len(into) > 1 or node.sourcing == "assembly":
            has = f"{len(into)} lanes in ({', '.join(into)})" if len(into) > 1 else "a bill of materials"
            return [
                _error(
                    "action_mode",
                    f"'echelon_order_up_to' needs echelon positions, defined only when every node has one "
                    f"supplier (one lane in, no bill of materials); node {node.id!r} has {has}: use order_up_to "
                    "or order_quantity",
                )
            ]
    return []


def _idle_nodes(nodes: list[Node], lanes: list[Lane]) -> list[tuple[str, str]]:
    """Nodes with no customer demand downstream: they could never ship."""
    useful = reaching([n.id for n in nodes], _internal(lanes), [n.id for n in nodes if n.demand is not None])
    return [
        _error(
            f"nodes[{i}]",
            "no customer demand is downstream of it, so it can never ship; remove it or connect it to a demand node",
            n.id,
        )
        for i, n in enumerate(nodes)
        if n.id not in useful
    ]


def _correlation(raw: Any, value: float | list[list[float]], demand_nodes: list[Node]) -> tuple[tuple[float, ...], ...]:
    """The correlation matrix of the demand nodes (file order): symmetric, unit diagonal, positive
    semi-definite. ``raw`` is the value as written, which the messages show."""
    path = "demand_correlation"
    if len(demand_nodes) < 2:
        raise ScenarioError(f"{path}: needs at least two demand nodes")
    traces = [n.id for n in demand_nodes if n.demand.dist == "trace"]
    if traces:
        raise ScenarioError(f"{path}: node {traces[0]!r} has a trace; correlation applies to distributions only")
    n = len(demand_nodes)
    if isinstance(value, float):
        mat = np.full((n, n), value)
        np.fill_diagonal(mat, 1.0)
    else:
        if len(value) != n or any(len(r) != n for r in value):
            raise ScenarioError(
                f"{path}: expected a number or a {n}x{n} matrix (one row per demand node, in file "
                f"order), got {len(value)} rows of lengths {[len(r) for r in value]}"
            )
        mat = np.array(value)
        if not np.allclose(np.diag(mat), 1.0):
            raise ScenarioError(f"{path}: the diagonal must be 1, got {np.diag(mat).tolist()}")
        if not np.allclose(mat, mat.T):
            i, j = np.argwhere(~np.isclose(mat, mat.T))[0]
            raise ScenarioError(
                f"{path}: [{i}][{j}] is {mat[i, j]:g} but [{j}][{i}] is {mat[j, i]:g}; the matrix must be symmetric"
            )
    smallest = float(np.linalg.eigvalsh(mat).min())
    if smallest < -1e-10:
        raise ScenarioError(
            f"{path}: {raw!r} gives a matrix with eigenvalue {smallest:.4g} < 0; a correlation "
            "matrix must be positive semi-definite"
        )
    return tuple(tuple(float(x) for x in row) for row in mat)


# ------------------------------------------------------------------------------------------------
# Checks of the whole scenario: sizes and capacities
# ------------------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=256)  # compile_topology checks sizes on every call
def _demand_table_entries(spec: DemandSpec) -> float:
    """Length of the inverse-CDF table :class:`~meio.envs.distributions.DemandModel` builds for a Poisson
    or negative binomial node (``F(0), F(1), ...`` until the tail is below ``TABLE_TAIL``); 0 for
    other distributions; ``inf`` where SciPy cannot find the tail (the table cannot be built)."""
    if spec.dist not in ("poisson", "negative_binomial"):
        return 0.0
    from scipy import stats

    from meio.envs.distributions import TABLE_TAIL

    if spec.dist == "poisson":
        top = float(stats.poisson.isf(TABLE_TAIL, spec.mean))
    else:
        top = float(stats.nbinom.isf(TABLE_TAIL, *spec.nb_params()))
    return top + 3.0 if math.isfinite(top) else math.inf


def _bytes(n: float) -> str:
    if not math.isfinite(n):
        return "unbounded size"
    for unit, size in (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= size:
            return f"{n / size:.3g} {unit}"
    return f"{n:.0f} bytes"


def check_sizes(scenario: Scenario) -> None:
    """Refuse a scenario whose arrays would exceed :data:`MAX_ARRAY_BYTES`, before any is allocated.

    Estimated for :data:`SIZE_CHECK_ROWS` copies: pipelines (``rows x slots x (longest lead time +
    1)`` float64) with their observation entries (``rows x sum of lead times`` float32), the
    inverse-CDF tables of Poisson and negative binomial demand (float64, once per simulator) and
    the random lead-time tables. The error names the field that takes the most.
    """
    slots = [(i, m) for i, lane in enumerate(scenario.lanes) for m in lane.modes]
    longest_i, longest = max(((i, m.lead_time.max) for i, m in slots), key=lambda x: x[1])
    pipeline = SIZE_CHECK_ROWS * (len(slots) * (longest + 1) * 8 + sum(m.lead_time.max for _, m in slots) * 4)
    parts: list[tuple[float, str, str]] = [
        (
            pipeline,
            f"lanes[{longest_i}].lead_time",
            f"a lead time of {longest} periods needs pipelines of {_bytes(pipeline)} for {SIZE_CHECK_ROWS} copies",
        ),
        (
            sum(16.0 * len(m.lead_time.values) for _, m in slots),
            f"lanes[{longest_i}].lead_time",
            "the random lead-time tables",
        ),
    ]
    for i, node in enumerate(scenario.nodes):
        if node.demand is not None:
            table = 8.0 * _demand_table_entries(node.demand)
            sd = f" and sd {node.demand.sd:g}" if node.demand.dist == "negative_binomial" else ""
            parts.append(
                (
                    table,
                    f"nodes[{i}].demand",
                    (
                        f"{node.demand.dist} demand with mean {node.demand.mean:g}{sd} needs an inverse-CDF "
                        f"table of {_bytes(table)}; use normal or gamma demand for demand this large"
                    ),
                )
            )
    total = sum(p[0] for p in parts)
    if total > MAX_ARRAY_BYTES:
        _, path, what = max(parts, key=lambda p: p[0])
        raise ScenarioError(
            f"{path}: {what}; the arrays of a scenario may take at most {_bytes(MAX_ARRAY_BYTES)} "
            f"(this one {_bytes(total)})"
        )


def _mean_demand(spec: DemandSpec) -> float:
    """Long-run mean demand per period: the stationary mean times the mean seasonal factor (a sine
    averages 1; the trend is left out, as it has no long-run mean)."""
    factor = float(np.mean(spec.seasonality.factors)) if spec.seasonality and spec.seasonality.factors else 1.0
    return spec.base_mean() * factor


def capacity_shortfalls(scenario: Scenario) -> list[tuple[str, str]]:
    """Capacities below the mean demand they must carry: ``(path, message)`` per shortfall.

    With backorders such a set-up is unstable: the backlog grows without bound whatever the policy
    (utilisation above 1). The mean demand a node ``j`` must receive is ``r_j = d_j + sum_k b_jk r_k``
    over its customers ``k`` (``b_jk`` the bill-of-materials ratio, 1 without one), ``d_j`` its
    own mean demand. Checked: a lane (all its modes together, times the supplier's availability
    ``1 / (1 + start_probability * mean_duration)`` under outages) against ``b_jk r_k``; a node's
    capacity against what its customers take from it; the lanes into a node with alternative
    suppliers, together, against ``r_k``. How an alternative node splits its orders is the policy's
    choice, so its suppliers are not charged with any part of it: the check is necessary, not
    sufficient, there. With lost sales unmet demand leaves the system, so nothing is checked.
    """
    if scenario.unmet_demand != "backorder":
        return []
    nodes = {n.id: n for n in scenario.nodes}
    lane_no = {(lane.source, lane.target): i for i, lane in enumerate(scenario.lanes)}

    def ratio(lane: Lane) -> float:
        target = nodes[lane.target]
        return dict(target.bom)[lane.source] if target.sourcing == "assembly" else 1.0

    need: dict[str, dict[str, float]] = {}  # node -> {demand node: mean units of the node's item}

    def required(j: str) -> dict[str, float]:
        if j not in need:
            out: dict[str, float] = {}
            if nodes[j].demand is not None:
                out[j] = _mean_demand(nodes[j].demand)
            for lane in scenario.lanes_from(j):
                if nodes[lane.target].sourcing != "alternative":
                    for d, amount in required(lane.target).items():
                        out[d] = out.get(d, 0.0) + ratio(lane) * amount
            need[j] = out
        return need[j]

    def lane_capacity(lane: Lane) -> float:
        cap = sum(m.capacity for m in lane.modes)
        if lane.disruption is not None:
            cap *= 1.0 / (1.0 + lane.disruption.start_probability * lane.disruption.mean_duration)
        return cap

    def detail(parts: dict[str, float]) -> str:
        return ", ".join(f"{d} {v:g}" for d, v in parts.items())

    def short(cap: float, mean: float) -> bool:
        return cap < mean * (1.0 - 1e-12)

    def lane_list(lanes: list[Lane]) -> str:
        return ", ".join(
            f"lanes[{lane_no[lane.source, lane.target]}] ({lane.source} -> {lane.target})" for lane in lanes
        )

    found: list[tuple[str, str]] = []
    for i, lane in enumerate(scenario.lanes):
        if nodes[lane.target].sourcing == "alternative":
            continue
        cap = lane_capacity(lane)
        parts = {d: ratio(lane) * v for d, v in required(lane.target).items()}
        mean = sum(parts.values())
        if short(cap, mean):
            outage = " (after outages)" if lane.disruption is not None else ""
            found.append(
                (
                    f"lanes[{i}]",
                    (
                        f"lanes[{i}] ({lane.source} -> {lane.target}): capacity {cap:g} "
                        f"per period{outage} is below the "
                        f"mean demand of {mean:g} per period it must carry ({detail(parts)}); backorders would grow "
                        "without bound: raise the capacity or add a mode or supplier"
                    ),
                )
            )
    for i, node in enumerate(scenario.nodes):
        outgoing = [lane for lane in scenario.lanes_from(node.id) if nodes[lane.target].sourcing != "alternative"]
        if math.isfinite(node.capacity) and outgoing:
            parts = {}
            for lane in outgoing:
                for d, v in required(lane.target).items():
                    parts[d] = parts.get(d, 0.0) + ratio(lane) * v
            mean = sum(parts.values())
            if short(node.capacity, mean):
                names = lane_list(outgoing)
                found.append(
                    (
                        f"nodes[{i}].capacity",
                        (
                            f"nodes[{i}].capacity: {node.capacity:g} per period "
                            f"is below the mean demand of {mean:g} per "
                            f"period ({detail(parts)}) "
                            f"its customers take from {node.id!r} on {names}; backorders would "
                            "grow without bound"
                        ),
                    )
                )
        if node.sourcing == "alternative":
            inbound = scenario.lanes_into(node.id)
            cap = sum(
                min(lane_capacity(lane), nodes[lane.source].capacity if lane.source in nodes else math.inf)
                for lane in inbound
            )
            parts = required(node.id)
            mean = sum(parts.values())
            if short(cap, mean):
                names = lane_list(inbound)
                found.append(
                    (
                        f"nodes[{i}]",
                        (
                            f"nodes[{i}] ({node.id}): its supplying lanes {names} "
                            f"carry at most {cap:g} per period together, "
                            f"below the mean demand of {mean:g} per period that passes through it ({detail(parts)}); "
                            "backorders would grow without bound"
                        ),
                    )
                )
    return found


def _scenario_to_dict(s: Scenario) -> dict:
    nodes = []
    for n in s.nodes:
        d: dict[str, Any] = {"id": n.id, "holding_cost": n.holding_cost}
        if n.demand is not None:
            d[s.penalty_name] = n.penalty_cost
            d["demand"] = n.demand.to_dict()
        if math.isfinite(n.capacity):
            d["capacity"] = n.capacity
        if n.initial_inventory:
            d["initial_inventory"] = n.initial_inventory
        if n.service_target is not None:
            d["service_target"] = n.service_target
        if n.segment is not None:
            d["segment"] = n.segment
        if n.sourcing == "alternative":
            d["sourcing"] = "alternative"
        elif n.sourcing == "assembly":
            d["bom"] = dict(n.bom)
        if n.max_service_time is not None:
            d["max_service_time"] = n.max_service_time
        nodes.append(d)
    lanes = []
    for lane in s.lanes:
        d = {"from": lane.source, "to": lane.target}
        mode_dicts = []
        for m in lane.modes:
            md: dict[str, Any] = {"lead_time": m.lead_time.to_dict()}
            for key in ("unit_cost", "fixed_cost", "pipeline_holding_cost"):
                if getattr(m, key):
                    md[key] = getattr(m, key)
            if math.isfinite(m.capacity):
                md["capacity"] = m.capacity
            if m.order_crossing:
                md["order_crossing"] = True
            for key in ("max_order", "max_level"):
                if getattr(m, key) is not None:
                    md[key] = getattr(m, key)
            mode_dicts.append((m.name, md))
        if len(mode_dicts) == 1 and mode_dicts[0][0] == "default":
            d.update(mode_dicts[0][1])
        else:
            d["modes"] = [{"name": name, **md} for name, md in mode_dicts]
        if lane.disruption is not None:
            d["disruption"] = {
                "start_probability": lane.disruption.start_probability,
                "mean_duration": lane.disruption.mean_duration,
            }
        if lane.service_time:
            d["service_time"] = lane.service_time
        lanes.append(d)
    out: dict[str, Any] = {
        "name": s.name,
        "unmet_demand": s.unmet_demand,
        "allocation": s.allocation,
        "horizon": s.horizon,
        "integer_orders": s.integer_orders,
        "action_mode": s.action_mode,
    }
    if s.description:
        out["description"] = s.description
    if s.demand_correlation is not None:
        out["demand_correlation"] = [list(r) for r in s.demand_correlation]
    out["nodes"] = nodes
    out["lanes"] = lanes
    return out
