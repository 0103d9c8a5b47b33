"""Scenario files: YAML -> frozen, validated dataclasses.

A scenario describes a network of stock points (nodes) and the lanes between them, the demand, lead
times and costs. ``load_scenario`` accepts a shipped scenario's name (``configs/scenarios/NAME.yaml``)
or a path. Every rule is checked before anything is built; a bad file raises one
:class:`ScenarioError` listing every broken rule, each message naming the field path, the bad
value and the rule, e.g.::

    lanes[2].lead_time: -1 is negative; lead times are integers >= 0

Keys given twice in a YAML mapping, numbers so large that costs overflow or arrays cannot be
allocated, and capacities below the mean demand they must carry are errors too.

The meaning of every key is in ``docs/scenarios.md``; the timing and cost conventions in
``docs/model.md``.
"""

from __future__ import annotations

import csv
import functools
import math
import re
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path
from typing import Any, Iterable, Literal, Mapping

import numpy as np
import yaml

from meio.envs.distributions import DEMAND_KINDS, DemandSpec, LeadTimeSpec, Seasonality
from meio.envs.hints import did_you_mean

EXTERNAL = "external"


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


#: Largest demand parameter, stock quantity or cost rate a scenario may give. Products of two such
#: numbers summed over a long run stay far inside float64 (about 1e308), so costs stay finite.
MAX_QUANTITY = 1e12
#: Longest lead time, in periods: every slot keeps one pipeline entry per period in transit.
MAX_LEAD_TIME = 10_000
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
    action_mode: Literal["order_quantity", "order_up_to"] = "order_quantity"
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
    def from_dict(cls, data: Mapping[str, Any], base_dir: str | Path | None = None,
                  source: str = "") -> "Scenario":
        """Validate ``data`` (a parsed YAML mapping). Relative trace files resolve from ``base_dir``."""
        return _Parser(Path(base_dir) if base_dir else Path.cwd()).scenario(data, source)


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
    except ScenarioError as exc:                    # report repeated keys with the rest
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
    if id(node) in seen:                            # an alias: already walked (and maybe recursive)
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
                    found.append((where, f"{where}: the key is given twice in {origin} ({lines_text}); YAML would "
                                         "keep the last one silently: remove one"))
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
# Validation
# ------------------------------------------------------------------------------------------------
#: How lead times are checked: whole periods, at most MAX_LEAD_TIME.
_LEAD_TIME_RULE: dict[str, Any] = {
    "what": "lead times are integers", "maximum": MAX_LEAD_TIME,
    "why": "a pipeline keeps one entry per period in transit",
}

_SCENARIO_KEYS = (
    "name", "description", "unmet_demand", "allocation", "horizon", "integer_orders", "action_mode",
    "demand_correlation", "nodes", "lanes",
)
_NODE_KEYS = (
    "id", "holding_cost", "backorder_cost", "lost_sales_cost", "demand", "capacity",
    "initial_inventory", "service_target", "sourcing", "bom", "max_service_time",
)
_MODE_KEYS = (
    "lead_time", "unit_cost", "fixed_cost", "capacity", "pipeline_holding_cost", "order_crossing",
    "max_order", "max_level",
)
_LANE_KEYS = ("from", "to", "modes", "disruption", "service_time") + _MODE_KEYS
_DEMAND_KEYS = {
    "poisson": ("mean",),
    "normal": ("mean", "sd"),
    "negative_binomial": ("mean", "sd"),
    "gamma": ("mean", "sd"),
    "uniform_int": ("low", "high"),
    "discrete": ("values", "probs"),
    "trace": ("file",),
}
_DEMAND_OPTIONAL = {"trace": ("column", "start")}


class _Parser:
    """Turns a parsed YAML mapping into a :class:`Scenario`.

    Each field is checked on its own: a broken rule is recorded (:meth:`attempt`) and reading goes
    on with the next field, node and lane. Checks that need the earlier ones to hold (the graph
    needs every lane's endpoints, capacities need the graph) run only once those passed
    (:meth:`checkpoint`), so one mistake is not reported again as its consequences.
    """

    def __init__(self, base_dir: Path) -> None:
        self.base_dir = base_dir
        self.errors: list[tuple[str, str]] = []

    def attempt(self, check: Any, *args: Any, default: Any = None, **kwargs: Any) -> Any:
        """``check(*args, **kwargs)``, or ``default`` after recording its :class:`ScenarioError`."""
        try:
            return check(*args, **kwargs)
        except ScenarioError as exc:
            self.errors.extend(exc.errors)
            return default

    def raise_since(self, start: int) -> None:
        """Raise (and take back) what was recorded after ``len(self.errors) == start``: a piece whose
        fields were checked one by one is then either whole or not built at all."""
        if len(self.errors) > start:
            errors = self.errors[start:]
            del self.errors[start:]
            raise ScenarioError(errors=errors)

    def checkpoint(self) -> None:
        """Raise everything recorded so far, as one :class:`ScenarioError`."""
        if self.errors:
            raise ScenarioError(errors=self.errors)

    # -- primitives ------------------------------------------------------------------------------
    @staticmethod
    def mapping(value: Any, path: str) -> Mapping[str, Any]:
        if not isinstance(value, Mapping):
            raise ScenarioError(f"{path}: expected a mapping (key: value), got {type(value).__name__} {value!r}")
        return value

    @staticmethod
    def keys(data: Mapping[str, Any], path: str, allowed: Iterable[str], required: Iterable[str] = ()) -> None:
        allowed = tuple(allowed)
        where = f"{path}." if path else ""
        messages = [f"{where}{key}: unknown key{did_you_mean(str(key), allowed)}; allowed keys: {', '.join(allowed)}"
                    for key in data if key not in allowed]
        messages += [f"{where}{key}: required key is missing" for key in required if key not in data]
        if messages:
            raise ScenarioError(errors=[(_path_of(m), m) for m in messages])

    @staticmethod
    def number(value: Any, path: str, *, minimum: float | None = 0.0, strict: bool = False,
               maximum: float | None = None, allow_inf: bool = False) -> float:
        """A real number; without ``maximum`` (and unless it may be infinite, as an upper limit such
        as a capacity may) its size is at most :data:`MAX_QUANTITY`, so that costs stay finite."""
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ScenarioError(f"{path}: expected a number, got {value!r}")
        if isinstance(value, int) and abs(value) > 1e300:       # float() of such an int overflows
            if not (allow_inf and value > 0):
                raise ScenarioError(f"{path}: an integer of {len(str(abs(value)))} digits is too large; numbers in a "
                                    f"scenario are at most {MAX_QUANTITY:g} in size (larger ones make the costs overflow)")
            value = math.inf
        v = float(value)
        if math.isnan(v) or (math.isinf(v) and not allow_inf):
            raise ScenarioError(f"{path}: {value!r} is not a finite number")
        if minimum is not None and (v < minimum or (strict and v == minimum)):
            rule = f"> {minimum:g}" if strict else f">= {minimum:g}"
            what = "is negative" if minimum == 0 and v < 0 else "is out of range"
            raise ScenarioError(f"{path}: {value!r} {what}; it must be {rule}")
        if maximum is not None and v > maximum:
            raise ScenarioError(f"{path}: {value!r} is out of range; it must be <= {maximum:g}")
        if maximum is None and not allow_inf and abs(v) > MAX_QUANTITY:
            raise ScenarioError(
                f"{path}: {value!r} is too large; numbers in a scenario are at most {MAX_QUANTITY:g} in size "
                "(larger ones make the costs overflow)"
            )
        return v

    @staticmethod
    def integer(value: Any, path: str, *, minimum: int = 0, what: str = "integers",
                maximum: float = MAX_QUANTITY, why: str = "larger ones make the costs overflow") -> int:
        """An integer in ``[minimum, maximum]``; ``why`` says what the upper bound protects."""
        if isinstance(value, bool) or not isinstance(value, (int, float)) or (
                isinstance(value, float) and not value.is_integer()):
            raise ScenarioError(f"{path}: {value!r} is not an integer; {what} >= {minimum}")
        if value < minimum:
            neg = "is negative" if minimum == 0 else f"is below {minimum}"
            raise ScenarioError(f"{path}: {value!r} {neg}; {what} >= {minimum}")
        if value > maximum:
            raise ScenarioError(f"{path}: {value!r} is too large; {what} <= {maximum:g} ({why})")
        return int(value)

    @staticmethod
    def fail(message: str) -> None:
        """Raise ``message`` (with :meth:`attempt`: record it and go on)."""
        raise ScenarioError(message)

    @staticmethod
    def choice(value: Any, path: str, choices: tuple[str, ...]) -> str:
        if value not in choices:
            raise ScenarioError(
                f"{path}: {value!r} is not one of {', '.join(choices)}{did_you_mean(str(value), choices)}"
            )
        return value

    @staticmethod
    def boolean(value: Any, path: str) -> bool:
        if not isinstance(value, bool):
            raise ScenarioError(f"{path}: expected true or false, got {value!r}")
        return value

    def probabilities(self, values: Any, probs: Any, path: str, *, integer: bool) -> tuple[tuple, tuple]:
        if not isinstance(values, list) or not values:
            raise ScenarioError(f"{path}.values: expected a non-empty list, got {values!r}")
        if not isinstance(probs, list) or len(probs) != len(values):
            raise ScenarioError(
                f"{path}.probs: expected a list of {len(values)} probabilities (one per value), got {probs!r}"
            )
        if integer:
            vals = tuple(self.integer(v, f"{path}.values[{i}]", **_LEAD_TIME_RULE)
                         for i, v in enumerate(values))
        else:
            vals = tuple(self.number(v, f"{path}.values[{i}]") for i, v in enumerate(values))
        ps = tuple(self.number(p, f"{path}.probs[{i}]", maximum=1.0) for i, p in enumerate(probs))
        total = sum(ps)
        if abs(total - 1.0) > 1e-9:
            raise ScenarioError(f"{path}.probs: the probabilities sum to {total:.12g}; they must sum to 1")
        return vals, ps

    # -- pieces ----------------------------------------------------------------------------------
    def dist_key(self, data: Mapping[str, Any], path: str) -> Any:
        """The ``dist`` of a distribution mapping; a misspelt or missing key is named as such."""
        if "dist" not in data:
            for key in data:
                hint = did_you_mean(str(key), ("dist",))
                if hint:
                    raise ScenarioError(f"{path}.{key}: unknown key{hint}")
            raise ScenarioError(f"{path}.dist: required key is missing")
        return data["dist"]

    def lead_time(self, value: Any, path: str) -> LeadTimeSpec:
        if not isinstance(value, Mapping):
            v = self.integer(value, path, **_LEAD_TIME_RULE)
            return LeadTimeSpec(values=(v,), probs=(1.0,))
        dist = self.dist_key(value, path)
        self.choice(dist, f"{path}.dist", ("constant", "uniform_int", "discrete"))
        if dist == "constant":
            self.keys(value, path, ("dist", "value"), ("value",))
            v = self.integer(value["value"], f"{path}.value", **_LEAD_TIME_RULE)
            return LeadTimeSpec(values=(v,), probs=(1.0,))
        if dist == "uniform_int":
            self.keys(value, path, ("dist", "low", "high"), ("low", "high"))
            lo = self.integer(value["low"], f"{path}.low", **_LEAD_TIME_RULE)
            hi = self.integer(value["high"], f"{path}.high", **_LEAD_TIME_RULE)
            if hi < lo:
                raise ScenarioError(f"{path}.high: {hi} is below low ({lo}); need low <= high")
            k = hi - lo + 1
            return LeadTimeSpec(values=tuple(range(lo, hi + 1)), probs=(1.0 / k,) * k, dist="uniform_int")
        self.keys(value, path, ("dist", "values", "probs"), ("values", "probs"))
        vals, ps = self.probabilities(value["values"], value["probs"], path, integer=True)
        if len(set(vals)) != len(vals):
            raise ScenarioError(f"{path}.values: {list(vals)} repeats a value; list each lead time once")
        order = np.argsort(vals)
        return LeadTimeSpec(values=tuple(vals[i] for i in order), probs=tuple(ps[i] for i in order),
                            dist="discrete")

    def seasonality(self, value: Any, path: str) -> Seasonality:
        data = self.mapping(value, path)
        if "factors" in data:
            self.keys(data, path, ("factors",))
            f = data["factors"]
            if not isinstance(f, list) or not f:
                raise ScenarioError(f"{path}.factors: expected a non-empty list of numbers, got {f!r}")
            return Seasonality(factors=tuple(self.number(x, f"{path}.factors[{i}]") for i, x in enumerate(f)))
        self.keys(data, path, ("amplitude", "period", "phase"), ("amplitude", "period"))
        amp = self.number(data["amplitude"], f"{path}.amplitude", maximum=1.0)
        period = self.integer(data["period"], f"{path}.period", minimum=1, what="periods are integers")
        phase = self.number(data.get("phase", 0.0), f"{path}.phase", minimum=None)
        return Seasonality(amplitude=amp, period=period, phase=phase)

    def demand(self, value: Any, path: str) -> DemandSpec:
        data = self.mapping(value, path)
        dist = self.choice(self.dist_key(data, path), f"{path}.dist", DEMAND_KINDS)
        required = _DEMAND_KEYS[dist]
        optional = _DEMAND_OPTIONAL.get(dist, ()) + ("seasonality", "trend")
        self.keys(data, path, ("dist",) + required + optional, required)
        extra: dict[str, Any] = {}
        if "seasonality" in data:
            if dist == "trace":
                raise ScenarioError(f"{path}.seasonality: a trace is data; seasonality applies to distributions only")
            extra["seasonality"] = self.seasonality(data["seasonality"], f"{path}.seasonality")
        if "trend" in data:
            if dist == "trace":
                raise ScenarioError(f"{path}.trend: a trace is data; trend applies to distributions only")
            extra["trend"] = self.number(data["trend"], f"{path}.trend", minimum=None)
        if dist == "poisson":
            return DemandSpec(dist, mean=self.number(data["mean"], f"{path}.mean"), **extra)
        if dist in ("normal", "gamma", "negative_binomial"):
            mean = self.number(data["mean"], f"{path}.mean")
            sd = self.number(data["sd"], f"{path}.sd")
            if dist == "gamma" and mean > 0 and sd == 0:
                raise ScenarioError(f"{path}.sd: 0 is not allowed for gamma demand; sd must be > 0")
            if dist == "negative_binomial" and mean <= 0:
                raise ScenarioError(f"{path}.mean: {mean:g} is not > 0; a negative binomial needs a positive mean")
            if dist == "negative_binomial" and not sd * sd > mean:
                raise ScenarioError(
                    f"{path}.sd: {sd:g} gives variance {sd * sd:g} <= mean {mean:g}; the negative binomial "
                    "needs variance > mean (use poisson for variance == mean)"
                )
            if dist != "normal" and mean > 0 and sd > 0:
                # The sampler's parameters must exist in float64: a gamma's shape (m/s)^2 and scale s^2/m,
                # a negative binomial's n = m^2/(s^2 - m) and p = m/s^2.
                a, b = ((mean / sd) ** 2, sd * sd / mean) if dist == "gamma" else (mean * mean / (sd * sd - mean),
                                                                                  mean / (sd * sd))
                if not (0 < a < math.inf and 0 < b < math.inf):
                    raise ScenarioError(
                        f"{path}.sd: {sd:g} with mean {mean:g} gives a {dist} outside floating-point range "
                        f"({'shape and scale' if dist == 'gamma' else 'n and p'} {a:g}, {b:g}); keep sd / mean "
                        "between about 1e-100 and 1e100"
                    )
            return DemandSpec(dist, mean=mean, sd=sd, **extra)
        if dist == "uniform_int":
            lo = self.integer(data["low"], f"{path}.low", what="demands are integers")
            hi = self.integer(data["high"], f"{path}.high", what="demands are integers")
            if hi < lo:
                raise ScenarioError(f"{path}.high: {hi} is below low ({lo}); need low <= high")
            return DemandSpec(dist, low=lo, high=hi, **extra)
        if dist == "discrete":
            vals, ps = self.probabilities(data["values"], data["probs"], path, integer=False)
            if len(set(vals)) != len(vals):
                raise ScenarioError(f"{path}.values: {list(vals)} repeats a value; list each demand once")
            order = np.argsort(vals)
            vals = tuple(vals[i] for i in order)
            ps = tuple(ps[i] for i in order)
            cdf = np.cumsum(ps)
            cdf[-1] = 1.0
            return DemandSpec(dist, values=vals, probs=ps, _cdf=tuple(cdf), **extra)
        return self.trace(data, path)

    def trace(self, data: Mapping[str, Any], path: str) -> DemandSpec:
        file = data["file"]
        if not isinstance(file, str) or not file:
            raise ScenarioError(f"{path}.file: expected a CSV file path, got {file!r}")
        if "\0" in file:                              # the operating system refuses such names
            raise ScenarioError(f"{path}.file: {file!r} contains a NUL character; give a CSV file path")
        full = Path(file) if Path(file).is_absolute() else self.base_dir / file
        if not full.exists():
            raise ScenarioError(f"{path}.file: {file!r} does not exist (looked for {full})")
        if not full.is_file():
            raise ScenarioError(f"{path}.file: {file!r} is not a file (looked for {full})")
        column = data.get("column", "demand")
        if not isinstance(column, str):
            raise ScenarioError(f"{path}.column: expected a column name, got {column!r}")
        start = self.choice(data.get("start", "first"), f"{path}.start", ("first", "random"))
        try:
            with full.open(newline="") as fh:
                rows = list(csv.DictReader(fh))
        except (OSError, UnicodeDecodeError, csv.Error) as exc:
            raise ScenarioError(f"{path}.file: cannot read {file!r} as CSV: {exc}") from None
        if not rows:
            raise ScenarioError(f"{path}.file: {file!r} has a header but no rows (or is empty)")
        if column not in rows[0]:
            cols = [c for c in rows[0] if c is not None]
            raise ScenarioError(
                f"{path}.column: {file!r} has no column {column!r}{did_you_mean(column, cols)}; "
                f"columns: {', '.join(cols)}"
            )
        values = []
        for i, row in enumerate(rows):
            cell = row.get(column)
            if cell is None or not str(cell).strip():
                raise ScenarioError(f"{path}.file: {file!r} row {i + 2}, column {column!r}: the cell is empty")
            try:
                v = float(cell)
            except (TypeError, ValueError):
                raise ScenarioError(
                    f"{path}.file: {file!r} row {i + 2}, column {column!r}: {cell!r} is not a number"
                ) from None
            if not math.isfinite(v) or v < 0:
                raise ScenarioError(
                    f"{path}.file: {file!r} row {i + 2}, column {column!r}: {cell!r} is not a demand >= 0"
                )
            if v > MAX_QUANTITY:
                raise ScenarioError(
                    f"{path}.file: {file!r} row {i + 2}, column {column!r}: {cell!r} is too large; demands are at "
                    f"most {MAX_QUANTITY:g} (larger ones make the costs overflow)"
                )
            values.append(v)
        return DemandSpec("trace", trace=tuple(values), trace_file=file, trace_column=column, trace_start=start)

    def mode(self, data: Mapping[str, Any], path: str, name: str, defaults: Mapping[str, Any]) -> Mode:
        merged = {**defaults, **data}
        if "lead_time" not in merged:
            raise ScenarioError(f"{path}.lead_time: required key is missing")
        cap = merged.get("capacity")
        start = len(self.errors)
        mode = Mode(
            name=name,
            lead_time=self.attempt(self.lead_time, merged["lead_time"], f"{path}.lead_time"),
            unit_cost=self.attempt(self.number, merged.get("unit_cost", 0.0), f"{path}.unit_cost"),
            fixed_cost=self.attempt(self.number, merged.get("fixed_cost", 0.0), f"{path}.fixed_cost"),
            capacity=math.inf if cap is None
            else self.attempt(self.number, cap, f"{path}.capacity", strict=True, allow_inf=True),
            pipeline_holding_cost=self.attempt(self.number, merged.get("pipeline_holding_cost", 0.0),
                                               f"{path}.pipeline_holding_cost"),
            order_crossing=self.attempt(self.boolean, merged.get("order_crossing", False), f"{path}.order_crossing"),
            max_order=None if merged.get("max_order") is None
            else self.attempt(self.number, merged["max_order"], f"{path}.max_order", strict=True),
            max_level=None if merged.get("max_level") is None
            else self.attempt(self.number, merged["max_level"], f"{path}.max_level", strict=True),
        )
        self.raise_since(start)
        return mode

    def lane_mode(self, data: Any, path: str, defaults: Mapping[str, Any], names: list[Any]) -> Mode:
        """One entry of a lane's ``modes``; ``names`` collects the names seen on the lane so far."""
        m = self.mapping(data, path)
        self.keys(m, path, ("name",) + _MODE_KEYS, ("name", "lead_time"))
        if not isinstance(m["name"], str) or not m["name"]:
            raise ScenarioError(f"{path}.name: expected a mode name, got {m['name']!r}")
        if m["name"] in names:
            raise ScenarioError(f"{path}.name: {m['name']!r} is used twice on this lane")
        names.append(m["name"])
        body = {k: v for k, v in m.items() if k != "name"}
        return self.mode(body, path, m["name"], defaults)

    def disruption(self, value: Any, path: str, src: Any) -> Disruption:
        if src != EXTERNAL:
            raise ScenarioError(f"{path}: disruptions apply to the external supplier; this lane is from {src!r}")
        d = self.mapping(value, path)
        self.keys(d, path, ("start_probability", "mean_duration"), ("start_probability", "mean_duration"))
        return Disruption(
            start_probability=self.number(d["start_probability"], f"{path}.start_probability", maximum=1.0),
            mean_duration=self.number(d["mean_duration"], f"{path}.mean_duration", minimum=1.0),
        )

    def lane(self, data: Any, path: str) -> Lane:
        data = self.mapping(data, path)
        start = len(self.errors)
        self.attempt(self.keys, data, path, _LANE_KEYS, ("from", "to"))
        src, dst = data.get("from"), data.get("to")
        for key, v in (("from", src), ("to", dst)):
            if key in data and (not isinstance(v, str) or not v):
                self.attempt(self.fail, f"{path}.{key}: expected a node id, got {v!r}")
        if "modes" in data:
            for key in ("lead_time", "capacity"):
                if key in data:
                    raise ScenarioError(
                        f"{path}.{key}: a lane with modes takes its {key} from each mode; move it into modes"
                    )
            modes_data = data["modes"]
            if not isinstance(modes_data, list) or not modes_data:
                raise ScenarioError(f"{path}.modes: expected a non-empty list of modes, got {modes_data!r}")
            defaults = {k: data[k] for k in _MODE_KEYS if k in data}
            modes = []
            names: list[Any] = []
            for i, m in enumerate(modes_data):
                mpath = f"{path}.modes[{i}]"
                modes.append(self.attempt(self.lane_mode, m, mpath, defaults, names))
        else:
            modes = [self.attempt(self.mode, {k: data[k] for k in _MODE_KEYS if k in data}, path, "default", {})]
        disruption = None
        if "disruption" in data:
            disruption = self.attempt(self.disruption, data["disruption"], f"{path}.disruption", src)
        self.raise_since(start)
        service_time = 0
        if "service_time" in data:
            spath = f"{path}.service_time"
            if src != EXTERNAL:
                raise ScenarioError(f"{spath}: only the external supplier quotes a service time; this lane is from "
                                    f"{src!r}, whose service time the guaranteed-service model chooses")
            service_time = self.integer(data["service_time"], spath, what="service times are integers (periods)")
            shortest = min(min(m.lead_time.values) for m in modes)
            if service_time > shortest:
                raise ScenarioError(f"{spath}: {service_time} exceeds the lane's shortest lead time {shortest}; the "
                                    "supplier's service time is the first part of the lead time")
        return Lane(source=src, target=dst, modes=tuple(modes), disruption=disruption, service_time=service_time)

    def node(self, data: Any, path: str, unmet: str | None) -> tuple[Node, dict]:
        data = self.mapping(data, path)
        start = len(self.errors)
        self.attempt(self.keys, data, path, _NODE_KEYS, ("id",))
        nid = data.get("id")
        if "id" not in data:
            pass                                    # reported by keys()
        elif not isinstance(nid, str) or not nid:
            self.attempt(self.fail, f"{path}.id: expected a non-empty name, got {nid!r}")
            nid = None
        elif nid == EXTERNAL:
            self.attempt(self.fail, f"{path}.id: {EXTERNAL!r} is reserved for the outside supplier; pick another id")
            nid = None
        # Decided on the raw key, so that a broken demand is not reported again as a misplaced penalty.
        has_demand = data.get("demand") is not None
        demand = self.attempt(self.demand, data["demand"], f"{path}.demand") if has_demand else None
        right, wrong = ("backorder_cost", "lost_sales_cost") if unmet == "backorder" else ("lost_sales_cost", "backorder_cost")
        if unmet is None and "backorder_cost" in data:   # unmet_demand itself is broken (reported already)
            right, wrong = wrong, right
        if not has_demand and (right in data or wrong in data):
            key = right if right in data else wrong
            self.attempt(self.fail,
                         f"{path}.{key}: only nodes with customer demand pay a penalty for unmet demand; "
                         "add demand or drop it")
        elif wrong in data and unmet is not None:
            self.attempt(self.fail, f"{path}.{wrong}: this scenario has unmet_demand: {unmet}; give {right} instead")
        elif has_demand and right not in data:
            self.attempt(self.fail, f"{path}.{right}: required for a node with customer demand")
        cap = data.get("capacity")
        target = data.get("service_target")
        limit = data.get("max_service_time")
        node = Node(
            id=nid,
            holding_cost=self.attempt(self.number, data.get("holding_cost", 0.0), f"{path}.holding_cost"),
            penalty_cost=self.attempt(self.number, data.get(right, 0.0), f"{path}.{right}"),
            demand=demand,
            capacity=math.inf if cap is None
            else self.attempt(self.number, cap, f"{path}.capacity", strict=True, allow_inf=True),
            initial_inventory=self.attempt(self.number, data.get("initial_inventory", 0.0),
                                           f"{path}.initial_inventory"),
            service_target=None if target is None
            else self.attempt(self.number, target, f"{path}.service_target", strict=True, maximum=1.0),
            max_service_time=None if limit is None
            else self.integer(limit, f"{path}.max_service_time", what="service times are integers (periods)"),
        )
        self.raise_since(start)
        return node, data

    def correlation(self, value: Any, n: int, path: str) -> tuple[tuple[float, ...], ...]:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            rho = self.number(value, path, minimum=-1.0, maximum=1.0)
            mat = np.full((n, n), rho)
            np.fill_diagonal(mat, 1.0)
        else:
            if not isinstance(value, list) or len(value) != n or any(not isinstance(r, list) or len(r) != n for r in value):
                shape = (f"{len(value)} rows of lengths {[len(r) if isinstance(r, list) else r for r in value]}"
                         if isinstance(value, list) else repr(value))
                raise ScenarioError(
                    f"{path}: expected a number or a {n}x{n} matrix (one row per demand node, in file order), "
                    f"got {shape}"
                )
            mat = np.array([[self.number(x, f"{path}[{i}][{j}]", minimum=-1.0, maximum=1.0)
                             for j, x in enumerate(row)] for i, row in enumerate(value)])
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
                f"{path}: {value!r} gives a matrix with eigenvalue {smallest:.4g} < 0; a correlation matrix must be "
                "positive semi-definite"
            )
        return tuple(tuple(float(x) for x in row) for row in mat)

    # -- whole scenario --------------------------------------------------------------------------
    def scenario(self, data: Any, source: str) -> Scenario:
        data = self.mapping(data, "scenario")
        # 1. Every field of every node and lane, each on its own.
        self.attempt(self.keys, data, "", _SCENARIO_KEYS, ("name", "nodes", "lanes"))
        name = data.get("name")
        if "name" in data and (not isinstance(name, str) or not name):
            self.attempt(self.fail, f"name: expected a non-empty string, got {name!r}")
        unmet = self.attempt(self.choice, data.get("unmet_demand", "backorder"), "unmet_demand",
                             ("backorder", "lost_sales"))
        allocation = self.attempt(self.choice, data.get("allocation", "fcfs_index"), "allocation",
                                  ("fcfs_index", "proportional"))
        horizon = self.attempt(self.integer, data.get("horizon", 52), "horizon", minimum=1,
                               what="horizons are integers")
        integer_orders = self.attempt(self.boolean, data.get("integer_orders", False), "integer_orders")
        action_mode = self.attempt(self.choice, data.get("action_mode", "order_quantity"), "action_mode",
                                   ("order_quantity", "order_up_to"))
        description = data.get("description", "")
        if not isinstance(description, str):
            self.attempt(self.fail, f"description: expected text, got {description!r}")

        raw_nodes = data.get("nodes", [])
        parsed: list[tuple[Node, dict] | None] = []
        if not isinstance(raw_nodes, list) or (not raw_nodes and "nodes" in data):
            self.attempt(self.fail, f"nodes: expected a non-empty list of nodes, got {raw_nodes!r}")
        else:
            parsed = [self.attempt(self.node, n, f"nodes[{i}]", unmet) for i, n in enumerate(raw_nodes)]
        # Ids as written, so that a node broken elsewhere still takes part in the duplicate check.
        ids = [n.get("id") if isinstance(n, Mapping) else None for n in (raw_nodes if parsed else [])]
        for i, nid in enumerate(ids):
            if isinstance(nid, str) and ids.index(nid) != i:
                self.attempt(self.fail, f"nodes[{i}].id: {nid!r} is already used by nodes[{ids.index(nid)}]")

        raw_lanes = data.get("lanes", [])
        lanes: list[Lane] = []
        if not isinstance(raw_lanes, list) or (not raw_lanes and "lanes" in data):
            self.attempt(self.fail, f"lanes: expected a non-empty list of lanes, got {raw_lanes!r}")
        else:
            lanes = [self.attempt(self.lane, l, f"lanes[{i}]") for i, l in enumerate(raw_lanes)]
        self.checkpoint()

        # 2. The network, which needs every node and lane.
        self.graph(ids, lanes)
        self.checkpoint()
        nodes = [self.attempt(self.sourcing, node, raw, f"nodes[{i}]", lanes) for i, (node, raw) in enumerate(parsed)]
        self.checkpoint()
        demand_nodes = [n for n in nodes if n.demand is not None]
        if not demand_nodes:
            self.fail("nodes: no node has customer demand; give at least one node a demand")
        self.reach_demand(nodes, lanes)

        correlation = None
        if data.get("demand_correlation") is not None:
            correlation = self.attempt(self.demand_correlation, data["demand_correlation"], demand_nodes)
        self.checkpoint()
        scenario = Scenario(
            name=name, nodes=tuple(nodes), lanes=tuple(lanes), unmet_demand=unmet, allocation=allocation,
            horizon=horizon, integer_orders=integer_orders, action_mode=action_mode,
            demand_correlation=correlation, description=description, source=source,
        )
        # 3. What the numbers imply together: array sizes, and capacities that cannot keep up.
        self.attempt(check_sizes, scenario)
        self.errors.extend(capacity_shortfalls(scenario))
        self.checkpoint()
        return scenario

    def demand_correlation(self, value: Any, demand_nodes: list[Node]) -> tuple[tuple[float, ...], ...]:
        if len(demand_nodes) < 2:
            raise ScenarioError("demand_correlation: needs at least two demand nodes")
        traces = [n.id for n in demand_nodes if n.demand.dist == "trace"]
        if traces:
            raise ScenarioError(
                f"demand_correlation: node {traces[0]!r} has a trace; correlation applies to distributions only"
            )
        return self.correlation(value, len(demand_nodes), "demand_correlation")

    def graph(self, ids: list[str], lanes: list[Lane]) -> None:
        # A repeated (source, target) pair also covers two external lanes into one node.
        seen: dict[tuple[str, str], int] = {}
        start = len(self.errors)
        for i, lane in enumerate(lanes):
            problem = None
            if lane.source != EXTERNAL and lane.source not in ids:
                problem = (f"lanes[{i}].from: {lane.source!r} is not a node"
                           f"{did_you_mean(lane.source, ids + [EXTERNAL])}; use a node id or {EXTERNAL!r}")
            elif lane.target not in ids:
                problem = f"lanes[{i}].to: {lane.target!r} is not a node{did_you_mean(lane.target, ids)}"
            elif lane.source == lane.target:
                problem = f"lanes[{i}]: a lane from {lane.source!r} to itself is a cycle"
            elif (lane.source, lane.target) in seen:
                problem = (f"lanes[{i}]: {lane.source} -> {lane.target} repeats lanes[{seen[lane.source, lane.target]}]; "
                           "give one lane several modes instead")
            if problem:
                self.attempt(self.fail, problem)
            else:
                seen[lane.source, lane.target] = i
        if len(self.errors) > start:                # the rest needs every lane's two ends
            return
        # Cycles: depth-first search over internal lanes.
        children: dict[str, list[str]] = {n: [] for n in ids}
        for lane in lanes:
            if not lane.is_external:
                children[lane.source].append(lane.target)
        state: dict[str, int] = {}

        def visit(n: str, stack: list[str]) -> None:
            state[n] = 1
            for c in children[n]:
                if state.get(c) == 1:
                    cyc = stack[stack.index(c):] + [n, c] if c in stack else [n, c]
                    raise ScenarioError(f"lanes: the network has a cycle {' -> '.join(cyc)}; it must be acyclic")
                if c not in state:
                    visit(c, stack + [n])
            state[n] = 2

        try:
            for n in ids:
                if n not in state:
                    visit(n, [])
        except ScenarioError as exc:                # reachability means little in a cyclic graph
            self.errors.extend(exc.errors)
            return
        # Reachability from the external supplier.
        reached = {l.target for l in lanes if l.is_external}
        frontier = list(reached)
        while frontier:
            n = frontier.pop()
            for c in children[n]:
                if c not in reached:
                    reached.add(c)
                    frontier.append(c)
        for i, n in enumerate(ids):
            if n not in reached:
                self.attempt(self.fail, f"nodes[{i}] ({n}): no supplier can reach it; add a lane from 'external' or "
                                        "from a node that is supplied")

    def sourcing(self, node: Node, raw: Mapping[str, Any], path: str, lanes: list[Lane]) -> Node:
        parents = [l.source for l in lanes if l.target == node.id]
        sourcing = raw.get("sourcing")
        if sourcing is not None:
            self.choice(sourcing, f"{path}.sourcing", ("assembly", "alternative"))
            if len(parents) < 2 and sourcing == "alternative":
                raise ScenarioError(f"{path}.sourcing: 'alternative' needs at least two supplying lanes; "
                                    f"{node.id!r} has {len(parents)}")
        else:
            sourcing = "assembly" if len(parents) > 1 or "bom" in raw else "single"
        bom: tuple[tuple[str, float], ...] = ()
        if "bom" in raw:
            if sourcing == "alternative":
                raise ScenarioError(f"{path}.bom: a node with sourcing: alternative buys one item; it has no bill of materials")
            b = self.mapping(raw["bom"], f"{path}.bom")
            for parent, ratio in b.items():
                if parent not in parents:
                    raise ScenarioError(
                        f"{path}.bom.{parent}: {parent!r} is not a supplier of {node.id!r}"
                        f"{did_you_mean(str(parent), parents)}; "
                        f"its suppliers are {', '.join(parents)}"
                    )
            missing = [p for p in parents if p not in b]
            if missing:
                raise ScenarioError(f"{path}.bom: no ratio for supplier {missing[0]!r}; list every supplier of {node.id!r}")
            bom = tuple((p, self.number(b[p], f"{path}.bom.{p}", strict=True)) for p in parents)
        elif sourcing == "assembly":
            bom = tuple((p, 1.0) for p in parents)
        if sourcing == "assembly" and len(parents) == 1 and all(r == 1.0 for _, r in bom):
            sourcing, bom = "single", ()
        return replace(node, sourcing=sourcing, bom=bom)

    def reach_demand(self, nodes: list[Node], lanes: list[Lane]) -> None:
        parents: dict[str, list[str]] = {n.id: [] for n in nodes}
        for lane in lanes:
            if not lane.is_external:
                parents[lane.target].append(lane.source)
        useful = {n.id for n in nodes if n.demand is not None}
        frontier = list(useful)
        while frontier:
            for p in parents[frontier.pop()]:
                if p not in useful:
                    useful.add(p)
                    frontier.append(p)
        for i, n in enumerate(nodes):
            if n.id not in useful:
                self.attempt(self.fail, f"nodes[{i}] ({n.id}): no customer demand is downstream of it, so it can "
                                        "never ship; remove it or connect it to a demand node")


# ------------------------------------------------------------------------------------------------
# Checks of the whole scenario: sizes and capacities
# ------------------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=256)                   # compile_topology checks sizes on every call
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
        (pipeline, f"lanes[{longest_i}].lead_time",
         f"a lead time of {longest} periods needs pipelines of {_bytes(pipeline)} for {SIZE_CHECK_ROWS} copies"),
        (sum(16.0 * len(m.lead_time.values) for _, m in slots), f"lanes[{longest_i}].lead_time",
         "the random lead-time tables"),
    ]
    for i, node in enumerate(scenario.nodes):
        if node.demand is not None:
            table = 8.0 * _demand_table_entries(node.demand)
            sd = f" and sd {node.demand.sd:g}" if node.demand.dist == "negative_binomial" else ""
            parts.append((table, f"nodes[{i}].demand",
                          f"{node.demand.dist} demand with mean {node.demand.mean:g}{sd} needs an inverse-CDF table "
                          f"of {_bytes(table)}; use normal or gamma demand for demand this large"))
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

    need: dict[str, dict[str, float]] = {}     # node -> {demand node: mean units of the node's item}

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
        return ", ".join(f"lanes[{lane_no[lane.source, lane.target]}] ({lane.source} -> {lane.target})"
                         for lane in lanes)

    found: list[tuple[str, str]] = []
    for i, lane in enumerate(scenario.lanes):
        if nodes[lane.target].sourcing == "alternative":
            continue
        cap = lane_capacity(lane)
        parts = {d: ratio(lane) * v for d, v in required(lane.target).items()}
        mean = sum(parts.values())
        if short(cap, mean):
            outage = " (after outages)" if lane.disruption is not None else ""
            found.append((f"lanes[{i}]", (
                f"lanes[{i}] ({lane.source} -> {lane.target}): capacity {cap:g} per period{outage} is below the "
                f"mean demand of {mean:g} per period it must carry ({detail(parts)}); backorders would grow "
                "without bound: raise the capacity or add a mode or supplier")))
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
                found.append((f"nodes[{i}].capacity", (
                    f"nodes[{i}].capacity: {node.capacity:g} per period is below the mean demand of {mean:g} per "
                    f"period ({detail(parts)}) its customers take from {node.id!r} on {names}; backorders would "
                    "grow without bound")))
        if node.sourcing == "alternative":
            inbound = scenario.lanes_into(node.id)
            cap = sum(min(lane_capacity(lane), nodes[lane.source].capacity if lane.source in nodes else math.inf)
                      for lane in inbound)
            parts = required(node.id)
            mean = sum(parts.values())
            if short(cap, mean):
                names = lane_list(inbound)
                found.append((f"nodes[{i}]", (
                    f"nodes[{i}] ({node.id}): its supplying lanes {names} carry at most {cap:g} per period together, "
                    f"below the mean demand of {mean:g} per period that passes through it ({detail(parts)}); "
                    "backorders would grow without bound")))
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
            d["disruption"] = {"start_probability": lane.disruption.start_probability,
                               "mean_duration": lane.disruption.mean_duration}
        if lane.service_time:
            d["service_time"] = lane.service_time
        lanes.append(d)
    out: dict[str, Any] = {
        "name": s.name, "unmet_demand": s.unmet_demand, "allocation": s.allocation, "horizon": s.horizon,
        "integer_orders": s.integer_orders, "action_mode": s.action_mode,
    }
    if s.description:
        out["description"] = s.description
    if s.demand_correlation is not None:
        out["demand_correlation"] = [list(r) for r in s.demand_correlation]
    out["nodes"] = nodes
    out["lanes"] = lanes
    return out
