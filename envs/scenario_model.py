"""What a scenario file may hold, declared once: pydantic models of every key, its rule and its doc.

Each key of a scenario YAML is one typed field here, with its bounds (``ge``, ``gt``, ``le``) and
the description an editor shows (``meio schema`` writes these models as a JSON Schema). Rules that
concern one mapping only (``low <= high``, probabilities that sum to 1, a penalty on a node without
demand) are model validators next to the fields they read. Rules between nodes and lanes (the graph,
bills of materials, correlation, capacities) need the whole network and stay in
:mod:`meio.envs.scenario`, which runs them once these models have validated.

Validation never stops at the first problem: :func:`messages` turns every entry of pydantic's
:class:`~pydantic.ValidationError` into the project's ``(path, message)`` pair, e.g.
``nodes[0].holding_cost: -1 is negative; it must be >= 0``, with "did you mean" hints for unknown
keys and choices (:func:`meio.envs.hints.did_you_mean`).
"""

from __future__ import annotations

import ast
import csv
import math
import re
import types
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, Union, get_args, get_origin

import annotated_types
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    PrivateAttr,
    Strict,
    Tag,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic.fields import FieldInfo
from pydantic_core import PydanticCustomError

from meio.envs.hints import did_you_mean

#: The name lanes use for the supplier outside the network.
EXTERNAL = "external"
#: Largest demand parameter, stock quantity or cost rate a scenario may give. Products of two such
#: numbers summed over a long run stay far inside float64 (about 1e308), so costs stay finite.
MAX_QUANTITY = 1e12
#: Longest lead time, in periods: every slot keeps one pipeline entry per period in transit.
MAX_LEAD_TIME = 10_000
#: JSON Schema dialect pydantic emits.
SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"


# ------------------------------------------------------------------------------------------------
# Field types: each carries its rule once; the messages read it back (Hint, bounds)
# ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Hint:
    """How messages describe a field: ``what`` integers it holds (``lead times are integers``), ``why``
    its upper bound exists, or what was ``expected`` (``a node id``) when the type is wrong."""

    what: str = ""
    why: str = "larger ones make the costs overflow"
    expected: str = ""


def fail(at: str, text: str) -> PydanticCustomError:
    """An error of a model validator: ``at`` is the key (or ``key[i].sub``) below the model it names."""
    return PydanticCustomError("meio", "{text}", {"text": text, "at": at})


def _finite_int(value: Any) -> Any:
    """Integers too large for float64 are refused here, with their size, rather than as 'not a number'."""
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > 1e300:
        raise fail(
            "",
            f"an integer of {len(str(abs(value)))} digits is too large; numbers in a scenario are at "
            f"most {MAX_QUANTITY:g} in size (larger ones make the costs overflow)",
        )
    return value


def _int_or_inf(value: Any) -> Any:
    """An upper limit may be unbounded: an integer beyond float64 is infinite."""
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > 1e300:
        return math.inf if value > 0 else -math.inf
    return value


def _whole(value: Any) -> Any:
    """YAML's ``2.0`` is the integer 2; ``2.5``, ``'2'`` and ``true`` stay refused."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**63:
        return int(value)
    return value


def _number(**bounds: float) -> Any:
    """A finite real number (an int or float, never a string or a boolean) within ``bounds``."""
    return Annotated[float, Strict(), Field(allow_inf_nan=False, **bounds), BeforeValidator(_finite_int)]


def _integer(what: str, *, ge: int, le: int = int(MAX_QUANTITY), why: str = Hint.why) -> Any:
    return Annotated[int, Strict(), Field(ge=ge, le=le), BeforeValidator(_whole), Hint(what=what, why=why)]


def _text(expected: str, min_length: int = 1) -> Any:
    return Annotated[str, Strict(), Field(min_length=min_length), Hint(expected=expected)]


Quantity = _number(ge=0, le=MAX_QUANTITY)
Positive = _number(gt=0, le=MAX_QUANTITY)
Probability = _number(ge=0, le=1)
Signed = _number(ge=-MAX_QUANTITY, le=MAX_QUANTITY)
Correlation = _number(ge=-1, le=1)
#: An upper limit (a capacity): positive, and unbounded (``.inf``) when not given.
Limit = Annotated[float, Strict(), Field(gt=0, allow_inf_nan=True), BeforeValidator(_int_or_inf)]
LeadTimeInt = _integer(
    "lead times are integers", ge=0, le=MAX_LEAD_TIME, why="a pipeline keeps one entry per period in transit"
)
ServiceTime = _integer("service times are integers (periods)", ge=0)
Flag = Annotated[bool, Strict()]


class _Model(BaseModel):
    """Unknown keys are errors (``additionalProperties: false`` in the schema)."""

    model_config = ConfigDict(extra="forbid")
    #: Keys that are not allowed here, with the reason shown instead of "unknown key".
    refused: ClassVar[dict[str, str]] = {}


def _uniform_rule(low: int, high: int) -> None:
    if high < low:
        raise fail("high", f"{high} is below low ({low}); need low <= high")


def _probability_rule(values: list[Any], probs: list[float], what: str) -> None:
    if len(probs) != len(values):
        raise fail("probs", f"expected a list of {len(values)} probabilities (one per value), got {probs!r}")
    total = sum(probs)
    if abs(total - 1.0) > 1e-9:
        raise fail("probs", f"the probabilities sum to {total:.12g}; they must sum to 1")
    if len(set(values)) != len(values):
        raise fail("values", f"{list(values)} repeats a value; list each {what} once")


# ------------------------------------------------------------------------------------------------
# Lead times
# ------------------------------------------------------------------------------------------------
_LEAD_TIME_DIST = "Kind of lead time: constant, uniform_int or discrete (or write a plain integer)."
_DEMAND_DIST = "Demand distribution: poisson, normal, negative_binomial, gamma, uniform_int, discrete or trace."


class ConstantLeadTime(_Model):
    """A fixed lead time written as a distribution."""

    dist: Literal["constant"] = Field(description=_LEAD_TIME_DIST)
    value: LeadTimeInt = Field(description="Lead time in periods (0 = arrives in the period it is ordered).")


class UniformLeadTime(_Model):
    """A lead time drawn uniformly from the integers low..high, independently per order."""

    dist: Literal["uniform_int"] = Field(description=_LEAD_TIME_DIST)
    low: LeadTimeInt = Field(description="Shortest lead time, in periods.")
    high: LeadTimeInt = Field(description="Longest lead time, in periods (>= low).")

    @model_validator(mode="after")
    def _order(self) -> UniformLeadTime:
        _uniform_rule(self.low, self.high)
        return self


class DiscreteLeadTime(_Model):
    """A lead time drawn from listed values with listed probabilities, independently per order."""

    dist: Literal["discrete"] = Field(description=_LEAD_TIME_DIST)
    values: list[LeadTimeInt] = Field(min_length=1, description="Possible lead times in periods, each once.")
    probs: list[Probability] = Field(description="Probability of each value, in the same order; they sum to 1.")

    @model_validator(mode="after")
    def _probabilities(self) -> DiscreteLeadTime:
        _probability_rule(self.values, self.probs, "lead time")
        return self


def _lead_time_kind(value: Any) -> str | None:
    if not isinstance(value, Mapping):
        return "int"
    return _tag(value)


def _tag(value: Any) -> str | None:
    """The ``dist`` of a distribution mapping; a non-text ``dist`` is an invalid tag, a missing one no tag."""
    if not isinstance(value, Mapping) or "dist" not in value:
        return None
    return value["dist"] if isinstance(value["dist"], str) else repr(value["dist"])


LeadTime = Annotated[
    Annotated[LeadTimeInt, Tag("int")]
    | Annotated[ConstantLeadTime, Tag("constant")]
    | Annotated[UniformLeadTime, Tag("uniform_int")]
    | Annotated[DiscreteLeadTime, Tag("discrete")],
    Discriminator(_lead_time_kind),
]


def shortest_lead_time(lead_time: Any) -> int:
    """The smallest lead time a validated ``lead_time`` value allows."""
    if isinstance(lead_time, int):
        return lead_time
    if isinstance(lead_time, ConstantLeadTime):
        return lead_time.value
    if isinstance(lead_time, UniformLeadTime):
        return lead_time.low
    return min(lead_time.values)


# ------------------------------------------------------------------------------------------------
# Demand
# ------------------------------------------------------------------------------------------------
class SineSeasonality(_Model):
    """Mean demand times 1 + amplitude * sin(2 pi (t + phase) / period) in period t."""

    amplitude: Probability = Field(description="Relative swing of the mean, 0..1.")
    period: _integer("periods are integers", ge=1) = Field(description="Length of one cycle, in periods.")
    phase: Signed = Field(0.0, description="Shift of the cycle, in periods.")


class FactorSeasonality(_Model):
    """Mean demand times factors[t % len(factors)] in period t."""

    factors: list[Quantity] = Field(min_length=1, description="Seasonal factors, repeated cyclically.")


def _seasonality_kind(value: Any) -> str:
    return "factors" if isinstance(value, Mapping) and "factors" in value else "sine"


SeasonalityField = Annotated[
    Annotated[
        Annotated[SineSeasonality, Tag("sine")] | Annotated[FactorSeasonality, Tag("factors")],
        Discriminator(_seasonality_kind),
    ]
    | None,
    Field(description="Seasonal factor of the mean: a sine wave or a list of factors."),
]
TrendField = Annotated[Signed, Field(description="Linear trend: the mean of period t is scaled by 1 + trend * t.")]
Mean = Annotated[Quantity, Field(description="Mean demand per period.")]
Sd = Annotated[Quantity, Field(description="Standard deviation of demand per period.")]


class PoissonDemand(_Model):
    """Poisson demand per period."""

    dist: Literal["poisson"] = Field(description=_DEMAND_DIST)
    mean: Mean
    seasonality: SeasonalityField = None
    trend: TrendField = 0.0


class NormalDemand(_Model):
    """Normal demand N(mean, sd) per period, censored at 0 (a negative draw is no demand)."""

    dist: Literal["normal"] = Field(description=_DEMAND_DIST)
    mean: Mean
    sd: Sd
    seasonality: SeasonalityField = None
    trend: TrendField = 0.0


def _sampler_range(dist: str, mean: float, sd: float) -> None:
    """The sampler's parameters must exist in float64: a gamma's shape (m/s)^2 and scale s^2/m, a
    negative binomial's n = m^2/(s^2 - m) and p = m/s^2."""
    if mean > 0 and sd > 0:
        a, b = (
            ((mean / sd) ** 2, sd * sd / mean)
            if dist == "gamma"
            else (mean * mean / (sd * sd - mean), mean / (sd * sd))
        )
        if not (0 < a < math.inf and 0 < b < math.inf):
            names = "shape and scale" if dist == "gamma" else "n and p"
            raise fail(
                "sd",
                f"{sd:g} with mean {mean:g} gives a {dist} outside floating-point range ({names} "
                f"{a:g}, {b:g}); keep sd / mean between about 1e-100 and 1e100",
            )


class NegativeBinomialDemand(_Model):
    """Negative binomial demand given by its mean and standard deviation (variance > mean)."""

    dist: Literal["negative_binomial"] = Field(description=_DEMAND_DIST)
    mean: Mean
    sd: Sd
    seasonality: SeasonalityField = None
    trend: TrendField = 0.0

    @model_validator(mode="after")
    def _overdispersed(self) -> NegativeBinomialDemand:
        if self.mean <= 0:
            raise fail("mean", f"{self.mean:g} is not > 0; a negative binomial needs a positive mean")
        if not self.sd * self.sd > self.mean:
            raise fail(
                "sd",
                f"{self.sd:g} gives variance {self.sd * self.sd:g} <= mean {self.mean:g}; the negative "
                "binomial needs variance > mean (use poisson for variance == mean)",
            )
        _sampler_range(self.dist, self.mean, self.sd)
        return self


class GammaDemand(_Model):
    """Gamma demand given by its mean and standard deviation (shape (mean/sd)^2, scale sd^2/mean)."""

    dist: Literal["gamma"] = Field(description=_DEMAND_DIST)
    mean: Mean
    sd: Sd
    seasonality: SeasonalityField = None
    trend: TrendField = 0.0

    @model_validator(mode="after")
    def _spread(self) -> GammaDemand:
        if self.mean > 0 and self.sd == 0:
            raise fail("sd", "0 is not allowed for gamma demand; sd must be > 0")
        _sampler_range(self.dist, self.mean, self.sd)
        return self


DemandInt = _integer("demands are integers", ge=0)


class UniformDemand(_Model):
    """Demand drawn uniformly from the integers low..high."""

    dist: Literal["uniform_int"] = Field(description=_DEMAND_DIST)
    low: DemandInt = Field(description="Smallest demand.")
    high: DemandInt = Field(description="Largest demand (>= low).")
    seasonality: SeasonalityField = None
    trend: TrendField = 0.0

    @model_validator(mode="after")
    def _order(self) -> UniformDemand:
        _uniform_rule(self.low, self.high)
        return self


class DiscreteDemand(_Model):
    """Demand drawn from listed values with listed probabilities."""

    dist: Literal["discrete"] = Field(description=_DEMAND_DIST)
    values: list[Quantity] = Field(min_length=1, description="Possible demands, each once.")
    probs: list[Probability] = Field(description="Probability of each value, in the same order; they sum to 1.")
    seasonality: SeasonalityField = None
    trend: TrendField = 0.0

    @model_validator(mode="after")
    def _probabilities(self) -> DiscreteDemand:
        _probability_rule(self.values, self.probs, "demand")
        return self


class TraceDemand(_Model):
    """Demand replayed from a column of a CSV file (relative paths start at the scenario file's folder)."""

    refused: ClassVar[dict[str, str]] = {
        "seasonality": "a trace is data; seasonality applies to distributions only",
        "trend": "a trace is data; trend applies to distributions only",
    }
    dist: Literal["trace"] = Field(description=_DEMAND_DIST)
    file: _text("a CSV file path") = Field(description="CSV file with a header row.")
    column: _text("a column name", 0) = Field("demand", description="Column holding the demand per period.")
    start: Literal["first", "random"] = Field(
        "first", description="Start each episode at the first row, or at a random row (wrapping around)."
    )
    _values: tuple[float, ...] = PrivateAttr(default=())

    @property
    def values(self) -> tuple[float, ...]:
        """The demand of each row, read when the model was validated."""
        return self._values

    @model_validator(mode="after")
    def _read(self, info: ValidationInfo) -> TraceDemand:
        base = (info.context or {}).get("base_dir") or Path.cwd()
        self._values = read_trace(self.file, self.column, Path(base))
        return self


def read_trace(file: str, column: str, base_dir: Path) -> tuple[float, ...]:
    """The demands in ``column`` of the CSV ``file``: numbers in ``[0, MAX_QUANTITY]``, no empty cell."""
    if "\0" in file:  # the operating system refuses such names
        raise fail("file", f"{file!r} contains a NUL character; give a CSV file path")
    full = Path(file) if Path(file).is_absolute() else base_dir / file
    if not full.exists():
        raise fail("file", f"{file!r} does not exist (looked for {full})")
    if not full.is_file():
        raise fail("file", f"{file!r} is not a file (looked for {full})")
    try:
        with full.open(newline="") as fh:
            rows = list(csv.DictReader(fh))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise fail("file", f"cannot read {file!r} as CSV: {exc}") from None
    if not rows:
        raise fail("file", f"{file!r} has a header but no rows (or is empty)")
    if column not in rows[0]:
        cols = [c for c in rows[0] if c is not None]
        raise fail(
            "column", f"{file!r} has no column {column!r}{did_you_mean(column, cols)}; columns: {', '.join(cols)}"
        )
    values = []
    for i, row in enumerate(rows):
        where = f"{file!r} row {i + 2}, column {column!r}"
        cell = row.get(column)
        if cell is None or not str(cell).strip():
            raise fail("file", f"{where}: the cell is empty")
        try:
            v = float(cell)
        except (TypeError, ValueError):
            raise fail("file", f"{where}: {cell!r} is not a number") from None
        if not math.isfinite(v) or v < 0:
            raise fail("file", f"{where}: {cell!r} is not a demand >= 0")
        if v > MAX_QUANTITY:
            raise fail(
                "file",
                f"{where}: {cell!r} is too large; demands are at most {MAX_QUANTITY:g} "
                "(larger ones make the costs overflow)",
            )
        values.append(v)
    return tuple(values)


Demand = Annotated[
    Annotated[PoissonDemand, Tag("poisson")]
    | Annotated[NormalDemand, Tag("normal")]
    | Annotated[NegativeBinomialDemand, Tag("negative_binomial")]
    | Annotated[GammaDemand, Tag("gamma")]
    | Annotated[UniformDemand, Tag("uniform_int")]
    | Annotated[DiscreteDemand, Tag("discrete")]
    | Annotated[TraceDemand, Tag("trace")],
    Discriminator(_tag),
]


# ------------------------------------------------------------------------------------------------
# Lanes and modes
# ------------------------------------------------------------------------------------------------
class _Transport(_Model):
    """Keys of one transport mode; on a lane with ``modes`` they are defaults for every mode."""

    lead_time: LeadTime | None = Field(
        None,
        description=("Periods from order to arrival: an integer, or {dist: constant | uniform_int | discrete, ...}."),
    )
    unit_cost: Quantity = Field(0.0, description="Cost per unit ordered.")
    fixed_cost: Quantity = Field(0.0, description="Cost per order placed (any quantity > 0).")
    capacity: Limit | None = Field(None, description="Most units shipped per period (default: no limit).")
    pipeline_holding_cost: Quantity = Field(0.0, description="Holding cost per unit in transit and period.")
    order_crossing: Flag = Field(
        False, description=("With a random lead time: whether a later order may arrive before an earlier one.")
    )
    max_order: Positive | None = Field(None, description="Largest order per period (a policy's orders are cut).")
    max_level: Positive | None = Field(None, description="Largest order-up-to level (order_up_to action mode).")


class _ModeName(_Model):
    name: _text("a mode name") = Field(description="Name of the mode, unique on its lane.")


class ModeModel(_Transport, _ModeName):
    """One transport mode of a lane (e.g. sea or air): its own lead time, costs and capacity."""

    lead_time: LeadTime = Field(
        description=("Periods from order to arrival: an integer, or {dist: constant | uniform_int | discrete, ...}.")
    )


class DisruptionModel(_Model):
    """Random outages of the external supplier: a two-state Markov chain per period."""

    start_probability: Probability = Field(description="Probability an outage starts in a period the supplier is up.")
    mean_duration: _number(ge=1, le=MAX_QUANTITY) = Field(
        description="Mean length of an outage, in periods (geometric; ends with probability 1/mean_duration)."
    )


class _LaneKeys(_Model):
    """The keys of a lane besides its transport keys (listed first in messages and the schema)."""

    source: _text("a node id") = Field(alias="from", description="Supplying node, or 'external'.")
    target: _text("a node id") = Field(alias="to", description="Ordering node.")
    modes: list[ModeModel] | None = Field(
        None,
        min_length=1,
        description=("Transport modes; lane-level keys other than lead_time and capacity are their defaults."),
    )
    disruption: DisruptionModel | None = Field(None, description="Outages of the external supplier.")
    service_time: ServiceTime = Field(
        0, description=("Guaranteed-service model only, lanes from 'external': the supplier's committed service time.")
    )


class LaneModel(_Transport, _LaneKeys):
    """A supply relation: ``to`` orders from ``from`` (a node, or ``external``)."""

    @model_validator(mode="after")
    def _lane_rules(self) -> LaneModel:
        given = self.model_fields_set
        if self.modes is not None:
            for key in ("lead_time", "capacity"):
                if key in given:
                    raise fail(key, f"a lane with modes takes its {key} from each mode; move it into modes")
            names: list[str] = []
            for i, mode in enumerate(self.modes):
                if mode.name in names:
                    raise fail(f"modes[{i}].name", f"{mode.name!r} is used twice on this lane")
                names.append(mode.name)
        elif self.lead_time is None:
            raise fail("lead_time", "required key is missing")
        if self.disruption is not None and self.source != EXTERNAL:
            raise fail("disruption", f"disruptions apply to the external supplier; this lane is from {self.source!r}")
        if "service_time" in given:
            if self.source != EXTERNAL:
                raise fail(
                    "service_time",
                    f"only the external supplier quotes a service time; this lane is from "
                    f"{self.source!r}, whose service time the guaranteed-service model chooses",
                )
            shortest = min(shortest_lead_time(m.lead_time) for m in self.mode_list())
            if self.service_time > shortest:
                raise fail(
                    "service_time",
                    f"{self.service_time} exceeds the lane's shortest lead time {shortest}; "
                    "the supplier's service time is the first part of the lead time",
                )
        return self

    def mode_list(self) -> list[_Transport]:
        """The modes, each with the lane's keys as defaults; a lane without modes is its one mode."""
        if self.modes is None:
            return [self]
        defaults = {k: getattr(self, k) for k in self.model_fields_set & set(_Transport.model_fields)}
        return [
            m.model_copy(update={k: v for k, v in defaults.items() if k not in m.model_fields_set}) for m in self.modes
        ]


# ------------------------------------------------------------------------------------------------
# Nodes and the scenario
# ------------------------------------------------------------------------------------------------
class NodeModel(_Model):
    """A stock point. Costs are local (installation) rates per unit and period."""

    id: _text("a non-empty name") = Field(description="Unique name of the node ('external' is reserved).")
    holding_cost: Quantity = Field(0.0, description="Cost per unit on hand at the end of a period.")
    backorder_cost: Quantity | None = Field(
        None, description=("Penalty per unit backordered and period; nodes with demand, unmet_demand: backorder.")
    )
    lost_sales_cost: Quantity | None = Field(
        None, description=("Penalty per unit of demand lost; nodes with demand, unmet_demand: lost_sales.")
    )
    demand: Demand | None = Field(None, description="Customer demand at this node, per period.")
    capacity: Limit | None = Field(
        None, description=("Most units the node ships per period, all customers together (default: no limit).")
    )
    initial_inventory: Quantity = Field(0.0, description="Stock on hand at the start of an episode.")
    service_target: _number(gt=0, le=1) | None = Field(
        None, description=("Fill-rate target in (0, 1] that the service_target baseline meets.")
    )
    segment: _text("a non-empty name") | None = Field(
        None,
        description=(
            "Customer segment (channel, market, product line) of a node with demand; reports aggregate "
            "service by segment, demand-weighted (default: the node is its own segment)."
        ),
    )
    sourcing: Literal["assembly", "alternative"] | None = Field(
        None,
        description=(
            "With several suppliers: assembly (needs all, in bom ratios; the default) or alternative (any one)."
        ),
    )
    bom: dict[str, Positive] | None = Field(
        None, description=("Bill of materials: units of each supplier's item per unit made, one entry per supplier.")
    )
    max_service_time: ServiceTime | None = Field(
        None, description=("Guaranteed-service model only: the largest outbound service time the node may quote.")
    )

    @field_validator("id")
    @classmethod
    def _not_external(cls, value: str) -> str:
        if value == EXTERNAL:
            raise fail("", f"{EXTERNAL!r} is reserved for the outside supplier; pick another id")
        return value

    @model_validator(mode="after")
    def _penalty(self, info: ValidationInfo) -> NodeModel:
        # ``unmet_demand`` of the file, or None where it is broken itself (reported already).
        unmet = (info.context or {}).get("unmet_demand", "backorder")
        given = self.model_fields_set
        right, wrong = (
            ("backorder_cost", "lost_sales_cost") if unmet == "backorder" else ("lost_sales_cost", "backorder_cost")
        )
        if unmet is None and "backorder_cost" in given:
            right, wrong = wrong, right
        if self.demand is None and (right in given or wrong in given):
            raise fail(
                right if right in given else wrong,
                "only nodes with customer demand pay a penalty for unmet demand; add demand or drop it",
            )
        if wrong in given and unmet is not None:
            raise fail(wrong, f"this scenario has unmet_demand: {unmet}; give {right} instead")
        if self.demand is not None and right not in given:
            raise fail(right, "required for a node with customer demand")
        if self.segment is not None and self.demand is None:
            raise fail("segment", "only nodes with customer demand belong to a segment; add demand or drop it")
        if self.sourcing == "alternative" and self.bom is not None:
            raise fail("bom", "a node with sourcing: alternative buys one item; it has no bill of materials")
        return self

    def penalty_cost(self) -> float:
        """The penalty rate given (backorder or lost sales; the validator allows only the right one)."""
        return self.backorder_cost if self.backorder_cost is not None else self.lost_sales_cost or 0.0


class ScenarioModel(_Model):
    """A meio scenario: a network of stock points (nodes) and the lanes between them, with demand,
    lead times and costs. See docs/scenarios.md."""

    model_config = ConfigDict(title="meio scenario")

    name: _text("a non-empty string") = Field(description="Name of the scenario.")
    description: _text("text", 0) = Field("", description="Free text shown by meio validate.")
    unmet_demand: Literal["backorder", "lost_sales"] = Field(
        "backorder", description="What happens to demand not met from stock."
    )
    allocation: Literal["fcfs_index", "proportional"] = Field(
        "fcfs_index", description="How a node short of stock splits it among its customers."
    )
    horizon: _integer("horizons are integers", ge=1) = Field(52, description="Periods per training episode.")
    integer_orders: Flag = Field(False, description="Round every order to a whole number of units.")
    action_mode: Literal["order_quantity", "order_up_to", "echelon_order_up_to"] = Field(
        "order_quantity",
        description=(
            "What an environment's action means by default: an order quantity, an installation order-up-to "
            "level, or an echelon order-up-to level (every node one supplier). base_stock_residual needs the "
            "levels training computes: set it in the PPO config's action_mode instead."
        ),
    )
    demand_correlation: (
        Annotated[
            Annotated[Correlation, Tag("scalar")] | Annotated[list[list[Correlation]], Tag("matrix")],
            Discriminator(lambda v: "matrix" if isinstance(v, list) else "scalar"),
        ]
        | None
    ) = Field(
        None,
        description=(
            "Correlation of the demand nodes' demand (Gaussian copula): one number for every pair, or a matrix "
            "with one row per demand node in file order."
        ),
    )
    nodes: list[NodeModel] = Field(min_length=1, description="Stock points, in any order.")
    lanes: list[LaneModel] = Field(min_length=1, description="Supply relations between nodes.")

    @field_validator("action_mode", mode="before")
    @classmethod
    def _no_residual(cls, value: Any) -> Any:
        # The fourth mode of the environments is a residual on base-stock levels that training
        # computes (meio.agents.train.residual_base); a scenario file cannot hold them.
        if value == "base_stock_residual":
            raise fail(
                "",
                "'base_stock_residual' cannot be a scenario's action mode: it is a residual on the base-stock "
                "levels training computes for the run; keep order_quantity, order_up_to or echelon_order_up_to "
                "here and set action_mode: base_stock_residual in the PPO training config (configs/ppo/*.yaml)",
            )
        return value


def json_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of scenario files, with every key's description."""
    schema = ScenarioModel.model_json_schema(mode="validation")
    return {"$schema": SCHEMA_DIALECT, **schema}


def validate(data: Any, base_dir: Path) -> tuple[ScenarioModel | None, list[tuple[str, str]]]:
    """The validated model of ``data``, or ``None`` with every error as ``(path, message)`` in file order."""
    unmet = data.get("unmet_demand", "backorder") if isinstance(data, Mapping) else "backorder"
    context = {"base_dir": base_dir, "unmet_demand": unmet if unmet in ("backorder", "lost_sales") else None}
    try:
        return ScenarioModel.model_validate(data, context=context), []
    except ValidationError as exc:
        return None, messages(exc, data)


# ------------------------------------------------------------------------------------------------
# Pydantic's errors in the project's words
# ------------------------------------------------------------------------------------------------
_UNIONS = (Union, types.UnionType)


def _unwrap(ann: Any, meta: list[Any]) -> tuple[Any, list[Any]]:
    """Strip ``Annotated`` (keeping its metadata, FieldInfo's too) and ``X | None``."""
    while True:
        if get_origin(ann) is Annotated:
            ann, *extra = get_args(ann)
            for m in extra:
                meta = meta + (list(m.metadata) if isinstance(m, FieldInfo) else [m])
        elif get_origin(ann) in _UNIONS and not any(isinstance(m, Discriminator) for m in meta):
            args = [a for a in get_args(ann) if a is not type(None)]
            if len(args) != 1:
                return ann, meta
            ann = args[0]
        else:
            return ann, meta


def _resolve(loc: tuple[Any, ...]) -> tuple[list[Any], Any, list[Any]]:
    """The field path of ``loc`` without union tags, and the annotation and metadata found there."""
    ann, meta = ScenarioModel, []
    parts: list[Any] = []
    for seg in loc:
        ann, meta = _unwrap(ann, meta)
        if get_origin(ann) in _UNIONS:  # a tagged union: the tag is not part of the path
            tags = {}
            for member in get_args(ann):
                inner, inner_meta = _unwrap(member, [])
                tag = next((m.tag for m in inner_meta if isinstance(m, Tag)), None)
                tags[tag] = (inner, inner_meta)
            if seg in tags:
                ann, meta = tags[seg]
                continue
        parts.append(seg)
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            field = next((f for n, f in ann.model_fields.items() if (f.alias or n) == seg), None)
            ann, meta = (field.annotation, list(field.metadata)) if field else (None, [])
        elif get_origin(ann) is list:
            ann, meta = get_args(ann)[0], []
        elif get_origin(ann) is dict:
            ann, meta = get_args(ann)[1], []
        else:
            ann, meta = None, []
    ann, meta = _unwrap(ann, meta)
    return parts, ann, meta


def _format(parts: list[Any]) -> str:
    out = ""
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out


def _position(data: Any, path: str) -> tuple[int, ...]:
    """Where ``path`` is in the file: key and item positions, so errors come in reading order."""
    out = []
    for key, index in _STEPS.findall(path):
        step: Any = int(index) if index else key
        if isinstance(data, Mapping):
            keys = list(data)
            out.append(keys.index(step) if step in keys else len(keys))  # a missing key: after the others
            data = data.get(step)
        elif isinstance(data, list) and isinstance(step, int) and step < len(data):
            out.append(step)
            data = data[step]
        else:
            out.append(1 << 30)
            data = None
    return tuple(out)


_STEPS = re.compile(r"([^.\[\]]+)|\[(\d+)\]")


def _lower_bound(meta: list[Any]) -> float:
    """The ``ge`` bound among a field's constraints (integer fields have one)."""
    return next((float(m.ge) for m in meta if isinstance(m, annotated_types.Ge)), 0.0)


def _hint(meta: list[Any]) -> Hint:
    return next((m for m in meta if isinstance(m, Hint)), Hint())


def _message(error: Any) -> tuple[str, str]:
    """One pydantic error entry as ``(path, message)``: the path without union tags, the value and the
    rule read from the field's declaration (its bounds and :class:`Hint`)."""
    kind, loc, value = error["type"], error["loc"], error.get("input")
    ctx = error.get("ctx") or {}
    parts, ann, meta = _resolve(loc)
    path = _format(parts)
    hint = _hint(meta)
    is_int = ann is int

    def say(text: str, where: str = path) -> tuple[str, str]:
        where = where or "scenario"
        return where, f"{where}: {text}"

    if kind == "meio":
        at = ctx.get("at", "")
        where = path + (("" if at.startswith("[") else ".") + at if at and path else at)
        return say(ctx["text"], where)
    if kind == "extra_forbidden":
        _, owner, _ = _resolve(loc[:-1])
        key = str(parts[-1])
        if isinstance(owner, type) and key in getattr(owner, "refused", {}):
            return say(owner.refused[key])
        allowed = [f.alias or n for n, f in owner.model_fields.items()] if isinstance(owner, type) else []
        return say(f"unknown key{did_you_mean(key, allowed)}; allowed keys: {', '.join(allowed)}")
    if kind == "missing":
        return say("required key is missing")
    if isinstance(value, float) and math.isnan(value) or kind == "finite_number":
        return say(f"{value!r} is not a finite number")
    if kind in ("model_type", "model_attributes_type", "dict_type") or (
        kind == "union_tag_not_found" and not isinstance(value, Mapping)
    ):
        return say(f"expected a mapping (key: value), got {type(value).__name__} {value!r}")
    if kind == "union_tag_not_found":
        for key in value:
            close = did_you_mean(str(key), ("dist",))
            if close:
                return say(f"unknown key{close}", f"{path}.{key}")
        return say("required key is missing", f"{path}.dist")
    if kind == "union_tag_invalid":
        choices = [t for t in ast.literal_eval(f"[{ctx['expected_tags']}]") if t != "int"]
        dist = value["dist"]
        return say(f"{dist!r} is not one of {', '.join(choices)}{did_you_mean(str(dist), choices)}", f"{path}.dist")
    if kind == "literal_error":
        choices = [str(c) for c in get_args(ann)]
        return say(f"{value!r} is not one of {', '.join(choices)}{did_you_mean(str(value), choices)}")
    if kind == "bool_type":
        return say(f"expected true or false, got {value!r}")
    if kind in ("int_type", "int_from_float", "int_parsing"):
        return say(f"{value!r} is not an integer; {hint.what} >= {_lower_bound(meta):g}")
    if kind in ("float_type", "float_parsing"):
        return say(f"expected a number, got {value!r}")
    if kind in ("string_type", "string_too_short", "list_type", "too_short"):
        nouns = {"nodes": " of nodes", "lanes": " of lanes", "modes": " of modes", "factors": " of numbers"}
        expected = hint.expected or "a non-empty list" + nouns.get(str(parts[-1]) if parts else "", "")
        return say(f"expected {expected}, got {value!r}")
    if kind in ("greater_than_equal", "greater_than"):
        low = float(ctx.get("ge", ctx.get("gt")))
        if low == -MAX_QUANTITY:
            return say(_too_large(value))
        if is_int:
            return say(f"{value!r} {'is negative' if low == 0 else f'is below {low:g}'}; {hint.what} >= {low:g}")
        what = "is negative" if low == 0 and value < 0 else "is out of range"
        return say(f"{value!r} {what}; it must be {'>=' if kind == 'greater_than_equal' else '>'} {low:g}")
    if kind == "less_than_equal":
        high = float(ctx["le"])
        if is_int:
            return say(f"{value!r} is too large; {hint.what} <= {high:g} ({hint.why})")
        if high == MAX_QUANTITY:
            return say(_too_large(value))
        return say(f"{value!r} is out of range; it must be <= {high:g}")
    return say(error["msg"])


def _too_large(value: Any) -> str:
    return (
        f"{value!r} is too large; numbers in a scenario are at most {MAX_QUANTITY:g} in size "
        "(larger ones make the costs overflow)"
    )


def messages(exc: ValidationError, data: Any) -> list[tuple[str, str]]:
    """Every entry of ``exc`` as ``(path, message)``, in the order the file is read."""
    found = [_message(e) for e in exc.errors()]
    return sorted(dict.fromkeys(found), key=lambda pm: _position(data, pm[0]))
