"""Scenario files: YAML -> frozen, validated dataclasses.

A scenario describes a network of stock points (nodes) and the lanes between them, the demand, lead
times and costs. ``load_scenario`` accepts a shipped scenario's name (``configs/scenarios/NAME.yaml``)
or a path. Every rule is checked before anything is built; a bad file raises
:class:`ScenarioError` whose message names the field path, the bad value and the rule, e.g.::

    lanes[2].lead_time: -1 is negative; lead times are integers >= 0

The meaning of every key is in ``docs/scenarios.md``; the timing and cost conventions in
``docs/model.md``.
"""

from __future__ import annotations

import csv
import difflib
import math
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path
from typing import Any, Iterable, Literal, Mapping

import numpy as np
import yaml

from envs.distributions import DEMAND_KINDS, DemandSpec, LeadTimeSpec, Seasonality

EXTERNAL = "external"


class ScenarioError(ValueError):
    """A scenario file or dictionary breaks a rule; the message names the field path."""


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
    return Path(str(resources.files("configs"))) / "scenarios"


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
                f"scenario: {text!r} is neither a file nor a shipped scenario{_hint(text, names)}; "
                f"shipped scenarios: {', '.join(names)}"
            )
    elif not path.is_file():
        raise ScenarioError(f"scenario: file {text!r} does not exist")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ScenarioError(f"scenario: {path} is not valid YAML: {exc}") from None
    return Scenario.from_dict(data, base_dir=path.parent, source=str(path))


# ------------------------------------------------------------------------------------------------
# Validation
# ------------------------------------------------------------------------------------------------
def _hint(word: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


_SCENARIO_KEYS = (
    "name", "description", "unmet_demand", "allocation", "horizon", "integer_orders", "action_mode",
    "demand_correlation", "nodes", "lanes",
)
_NODE_KEYS = (
    "id", "holding_cost", "backorder_cost", "lost_sales_cost", "demand", "capacity",
    "initial_inventory", "service_target", "sourcing", "bom",
)
_MODE_KEYS = (
    "lead_time", "unit_cost", "fixed_cost", "capacity", "pipeline_holding_cost", "order_crossing",
    "max_order", "max_level",
)
_LANE_KEYS = ("from", "to", "modes", "disruption") + _MODE_KEYS
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
    """Turns a parsed YAML mapping into a :class:`Scenario`, raising at the first broken rule."""

    def __init__(self, base_dir: Path) -> None:
        self.base_dir = base_dir

    # -- primitives ------------------------------------------------------------------------------
    @staticmethod
    def mapping(value: Any, path: str) -> Mapping[str, Any]:
        if not isinstance(value, Mapping):
            raise ScenarioError(f"{path}: expected a mapping (key: value), got {type(value).__name__} {value!r}")
        return value

    @staticmethod
    def keys(data: Mapping[str, Any], path: str, allowed: Iterable[str], required: Iterable[str] = ()) -> None:
        allowed = tuple(allowed)
        for key in data:
            if key not in allowed:
                where = f"{path}." if path else ""
                raise ScenarioError(
                    f"{where}{key}: unknown key{_hint(str(key), allowed)}; allowed keys: {', '.join(allowed)}"
                )
        for key in required:
            if key not in data:
                where = f"{path}." if path else ""
                raise ScenarioError(f"{where}{key}: required key is missing")

    @staticmethod
    def number(value: Any, path: str, *, minimum: float | None = 0.0, strict: bool = False,
               maximum: float | None = None, allow_inf: bool = False) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ScenarioError(f"{path}: expected a number, got {value!r}")
        v = float(value)
        if math.isnan(v) or (math.isinf(v) and not allow_inf):
            raise ScenarioError(f"{path}: {value!r} is not a finite number")
        if minimum is not None and (v < minimum or (strict and v == minimum)):
            rule = f"> {minimum:g}" if strict else f">= {minimum:g}"
            what = "is negative" if minimum == 0 and v < 0 else "is out of range"
            raise ScenarioError(f"{path}: {value!r} {what}; it must be {rule}")
        if maximum is not None and v > maximum:
            raise ScenarioError(f"{path}: {value!r} is out of range; it must be <= {maximum:g}")
        return v

    @staticmethod
    def integer(value: Any, path: str, *, minimum: int = 0, what: str = "integers") -> int:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not float(value).is_integer():
            raise ScenarioError(f"{path}: {value!r} is not an integer; {what} >= {minimum}")
        if value < minimum:
            neg = "is negative" if minimum == 0 else f"is below {minimum}"
            raise ScenarioError(f"{path}: {value!r} {neg}; {what} >= {minimum}")
        return int(value)

    @staticmethod
    def choice(value: Any, path: str, choices: tuple[str, ...]) -> str:
        if value not in choices:
            raise ScenarioError(
                f"{path}: {value!r} is not one of {', '.join(choices)}{_hint(str(value), choices)}"
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
            vals = tuple(self.integer(v, f"{path}.values[{i}]", what="lead times are integers")
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
                if _hint(str(key), ("dist",)):
                    raise ScenarioError(f"{path}.{key}: unknown key (did you mean 'dist'?)")
            raise ScenarioError(f"{path}.dist: required key is missing")
        return data["dist"]

    def lead_time(self, value: Any, path: str) -> LeadTimeSpec:
        if not isinstance(value, Mapping):
            v = self.integer(value, path, what="lead times are integers")
            return LeadTimeSpec(values=(v,), probs=(1.0,))
        dist = self.dist_key(value, path)
        self.choice(dist, f"{path}.dist", ("constant", "uniform_int", "discrete"))
        if dist == "constant":
            self.keys(value, path, ("dist", "value"), ("value",))
            v = self.integer(value["value"], f"{path}.value", what="lead times are integers")
            return LeadTimeSpec(values=(v,), probs=(1.0,))
        if dist == "uniform_int":
            self.keys(value, path, ("dist", "low", "high"), ("low", "high"))
            lo = self.integer(value["low"], f"{path}.low", what="lead times are integers")
            hi = self.integer(value["high"], f"{path}.high", what="lead times are integers")
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
                f"{path}.column: {file!r} has no column {column!r}{_hint(column, cols)}; columns: {', '.join(cols)}"
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
            values.append(v)
        return DemandSpec("trace", trace=tuple(values), trace_file=file, trace_column=column, trace_start=start)

    def mode(self, data: Mapping[str, Any], path: str, name: str, defaults: Mapping[str, Any]) -> Mode:
        merged = {**defaults, **data}
        if "lead_time" not in merged:
            raise ScenarioError(f"{path}.lead_time: required key is missing")
        cap = merged.get("capacity")
        return Mode(
            name=name,
            lead_time=self.lead_time(merged["lead_time"], f"{path}.lead_time"),
            unit_cost=self.number(merged.get("unit_cost", 0.0), f"{path}.unit_cost"),
            fixed_cost=self.number(merged.get("fixed_cost", 0.0), f"{path}.fixed_cost"),
            capacity=math.inf if cap is None else self.number(cap, f"{path}.capacity", strict=True, allow_inf=True),
            pipeline_holding_cost=self.number(merged.get("pipeline_holding_cost", 0.0),
                                              f"{path}.pipeline_holding_cost"),
            order_crossing=self.boolean(merged.get("order_crossing", False), f"{path}.order_crossing"),
            max_order=None if merged.get("max_order") is None
            else self.number(merged["max_order"], f"{path}.max_order", strict=True),
            max_level=None if merged.get("max_level") is None
            else self.number(merged["max_level"], f"{path}.max_level", strict=True),
        )

    def lane(self, data: Any, path: str) -> Lane:
        data = self.mapping(data, path)
        self.keys(data, path, _LANE_KEYS, ("from", "to"))
        src, dst = data["from"], data["to"]
        for key, v in (("from", src), ("to", dst)):
            if not isinstance(v, str) or not v:
                raise ScenarioError(f"{path}.{key}: expected a node id, got {v!r}")
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
            for i, m in enumerate(modes_data):
                mpath = f"{path}.modes[{i}]"
                m = self.mapping(m, mpath)
                self.keys(m, mpath, ("name",) + _MODE_KEYS, ("name", "lead_time"))
                if not isinstance(m["name"], str) or not m["name"]:
                    raise ScenarioError(f"{mpath}.name: expected a mode name, got {m['name']!r}")
                if any(x.name == m["name"] for x in modes):
                    raise ScenarioError(f"{mpath}.name: {m['name']!r} is used twice on this lane")
                body = {k: v for k, v in m.items() if k != "name"}
                modes.append(self.mode(body, mpath, m["name"], defaults))
        else:
            modes = [self.mode({k: data[k] for k in _MODE_KEYS if k in data}, path, "default", {})]
        disruption = None
        if "disruption" in data:
            dpath = f"{path}.disruption"
            if src != EXTERNAL:
                raise ScenarioError(f"{dpath}: disruptions apply to the external supplier; this lane is from {src!r}")
            d = self.mapping(data["disruption"], dpath)
            self.keys(d, dpath, ("start_probability", "mean_duration"), ("start_probability", "mean_duration"))
            disruption = Disruption(
                start_probability=self.number(d["start_probability"], f"{dpath}.start_probability", maximum=1.0),
                mean_duration=self.number(d["mean_duration"], f"{dpath}.mean_duration", minimum=1.0),
            )
        return Lane(source=src, target=dst, modes=tuple(modes), disruption=disruption)

    def node(self, data: Any, path: str, unmet: str) -> tuple[Node, dict]:
        data = self.mapping(data, path)
        self.keys(data, path, _NODE_KEYS, ("id",))
        nid = data["id"]
        if not isinstance(nid, str) or not nid:
            raise ScenarioError(f"{path}.id: expected a non-empty name, got {nid!r}")
        if nid == EXTERNAL:
            raise ScenarioError(f"{path}.id: {EXTERNAL!r} is reserved for the outside supplier; pick another id")
        demand = self.demand(data["demand"], f"{path}.demand") if data.get("demand") is not None else None
        right, wrong = ("backorder_cost", "lost_sales_cost") if unmet == "backorder" else ("lost_sales_cost", "backorder_cost")
        if demand is None and (right in data or wrong in data):
            key = right if right in data else wrong
            raise ScenarioError(
                f"{path}.{key}: only nodes with customer demand pay a penalty for unmet demand; add demand or drop it"
            )
        if wrong in data:
            raise ScenarioError(
                f"{path}.{wrong}: this scenario has unmet_demand: {unmet}; give {right} instead"
            )
        if demand is not None and right not in data:
            raise ScenarioError(f"{path}.{right}: required for a node with customer demand")
        cap = data.get("capacity")
        target = data.get("service_target")
        node = Node(
            id=nid,
            holding_cost=self.number(data.get("holding_cost", 0.0), f"{path}.holding_cost"),
            penalty_cost=self.number(data.get(right, 0.0), f"{path}.{right}"),
            demand=demand,
            capacity=math.inf if cap is None else self.number(cap, f"{path}.capacity", strict=True, allow_inf=True),
            initial_inventory=self.number(data.get("initial_inventory", 0.0), f"{path}.initial_inventory"),
            service_target=None if target is None
            else self.number(target, f"{path}.service_target", strict=True, maximum=1.0),
        )
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
        self.keys(data, "", _SCENARIO_KEYS, ("name", "nodes", "lanes"))
        name = data["name"]
        if not isinstance(name, str) or not name:
            raise ScenarioError(f"name: expected a non-empty string, got {name!r}")
        unmet = self.choice(data.get("unmet_demand", "backorder"), "unmet_demand", ("backorder", "lost_sales"))
        allocation = self.choice(data.get("allocation", "fcfs_index"), "allocation", ("fcfs_index", "proportional"))
        horizon = self.integer(data.get("horizon", 52), "horizon", minimum=1, what="horizons are integers")
        integer_orders = self.boolean(data.get("integer_orders", False), "integer_orders")
        action_mode = self.choice(data.get("action_mode", "order_quantity"), "action_mode",
                                  ("order_quantity", "order_up_to"))
        description = data.get("description", "")
        if not isinstance(description, str):
            raise ScenarioError(f"description: expected text, got {description!r}")

        raw_nodes = data["nodes"]
        if not isinstance(raw_nodes, list) or not raw_nodes:
            raise ScenarioError(f"nodes: expected a non-empty list of nodes, got {raw_nodes!r}")
        parsed = [self.node(n, f"nodes[{i}]", unmet) for i, n in enumerate(raw_nodes)]
        ids = [n.id for n, _ in parsed]
        for i, nid in enumerate(ids):
            if ids.index(nid) != i:
                raise ScenarioError(f"nodes[{i}].id: {nid!r} is already used by nodes[{ids.index(nid)}]")

        raw_lanes = data["lanes"]
        if not isinstance(raw_lanes, list) or not raw_lanes:
            raise ScenarioError(f"lanes: expected a non-empty list of lanes, got {raw_lanes!r}")
        lanes = [self.lane(l, f"lanes[{i}]") for i, l in enumerate(raw_lanes)]
        self.graph(ids, lanes)

        nodes = [self.sourcing(node, raw, f"nodes[{i}]", lanes) for i, (node, raw) in enumerate(parsed)]
        demand_nodes = [n for n in nodes if n.demand is not None]
        if not demand_nodes:
            raise ScenarioError("nodes: no node has customer demand; give at least one node a demand")
        self.reach_demand(nodes, lanes)

        correlation = None
        if data.get("demand_correlation") is not None:
            if len(demand_nodes) < 2:
                raise ScenarioError("demand_correlation: needs at least two demand nodes")
            traces = [n.id for n in demand_nodes if n.demand.dist == "trace"]
            if traces:
                raise ScenarioError(
                    f"demand_correlation: node {traces[0]!r} has a trace; correlation applies to distributions only"
                )
            correlation = self.correlation(data["demand_correlation"], len(demand_nodes), "demand_correlation")
        return Scenario(
            name=name, nodes=tuple(nodes), lanes=tuple(lanes), unmet_demand=unmet, allocation=allocation,
            horizon=horizon, integer_orders=integer_orders, action_mode=action_mode,
            demand_correlation=correlation, description=description, source=source,
        )

    def graph(self, ids: list[str], lanes: list[Lane]) -> None:
        # A repeated (source, target) pair also covers two external lanes into one node.
        seen: dict[tuple[str, str], int] = {}
        for i, lane in enumerate(lanes):
            if lane.source != EXTERNAL and lane.source not in ids:
                raise ScenarioError(
                    f"lanes[{i}].from: {lane.source!r} is not a node{_hint(lane.source, ids + [EXTERNAL])}; "
                    f"use a node id or {EXTERNAL!r}"
                )
            if lane.target not in ids:
                raise ScenarioError(f"lanes[{i}].to: {lane.target!r} is not a node{_hint(lane.target, ids)}")
            if lane.source == lane.target:
                raise ScenarioError(f"lanes[{i}]: a lane from {lane.source!r} to itself is a cycle")
            key = (lane.source, lane.target)
            if key in seen:
                raise ScenarioError(
                    f"lanes[{i}]: {lane.source} -> {lane.target} repeats lanes[{seen[key]}]; "
                    "give one lane several modes instead"
                )
            seen[key] = i
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

        for n in ids:
            if n not in state:
                visit(n, [])
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
                raise ScenarioError(
                    f"nodes[{i}] ({n}): no supplier can reach it; add a lane from 'external' or from a node "
                    "that is supplied"
                )

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
                        f"{path}.bom.{parent}: {parent!r} is not a supplier of {node.id!r}{_hint(str(parent), parents)}; "
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

    @staticmethod
    def reach_demand(nodes: list[Node], lanes: list[Lane]) -> None:
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
                raise ScenarioError(
                    f"nodes[{i}] ({n.id}): no customer demand is downstream of it, so it can never ship; "
                    "remove it or connect it to a demand node"
                )


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
