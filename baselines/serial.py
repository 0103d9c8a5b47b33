"""Exact and approximate echelon base-stock levels for a serial chain with backorders.

A serial chain of ``N`` stages: stage 1 (index 0 in every Python list here) faces i.i.d. customer
demand, stage ``j`` orders from stage ``j+1`` and stage ``N`` from an ample external supplier.
Unfilled customer demand is backordered at cost ``p`` per unit and period; on-hand stock at stage
``j`` costs the local rate ``h_j = sum_{i >= j} hh_i`` per unit and period, where ``hh_i`` are the
*echelon* holding costs (the arguments). Internal shortages are backordered. Under these
assumptions an echelon base-stock policy is optimal (Clark & Scarf 1960).

Timing (the project's, ``docs/model.md``, "One period ``t``"): in each period the policy orders,
then shipments move (a lane with lead time 0 delivers in the same period), then demand arrives,
then costs are charged on end-of-period quantities. Consequently stage 1 protects against demand
over ``L_1 + 1`` periods and an upstream stage ``j`` against demand over ``L_j`` periods. Snyder &
Shen (2019) order after seeing the demand, so their instance with lead times ``(l_1, ..., l_N)`` is
ours with ``(l_1 - 1, l_2, ..., l_N)``: the "effective lead times" of the recursion below,
``tau_1 = L_1 + 1`` and ``tau_j = L_j`` (``j >= 2``), are exactly their ``l_j``.

Public API
----------
* :func:`clark_scarf` -- exact optimal echelon base-stock levels (Clark & Scarf 1960; the algorithm of
  Chen & Zheng 1994 / Gallego & Zipkin 1999, as in Snyder & Shen, *Fundamentals of Supply Chain
  Theory*, 2nd ed., section 6.2, and Zipkin, *Foundations of Inventory Management*, ch. 8).
* :func:`shang_song` -- the closed-form newsvendor heuristic of Shang & Song (2003).
* :func:`evaluate_echelon_policy` -- the exact long-run cost and service of any echelon base-stock
  levels.
* :class:`SerialSolution` -- what the three return.
* :func:`demand_spec` -- a plain demand mapping checked by the scenario's rules (the solvers call it
  on a mapping; a scenario's :class:`~meio.envs.distributions.DemandSpec` is taken as it is).
* :func:`check_serial_demand` -- the model's own demand assumptions (:func:`check_iid_demand`,
  positive mean, ...).

Numerics
--------
Everything is computed on a lattice ``x = k * delta``. For integer-valued demand (``poisson``,
``negative_binomial``, ``uniform_int``, ``discrete``) ``delta = 1`` and the computation is exact up
to floating point and a truncation of each demand pmf at a total tail mass below ``1e-12``; the
levels are integers. For continuous demand (``normal``, ``gamma``) ``delta`` is the smallest
lead-time-demand standard deviation divided by ``_STEPS_PER_SD``; the demand is represented by its
exact "hat" masses ``E[max(0, 1 - |D - k delta| / delta)]`` (second differences of the loss function
``E[(D - x)^+]``), which keeps the mean exact and integrates every piecewise-linear function with
kinks on the lattice exactly, so the only error is the linear interpolation of the smooth cost
functions (``O(delta^2)``: a few ``1e-6`` relative in the cost for the normal and moderate-CV
gamma, below ``1e-4`` for gamma up to CV 4). Levels are then refined off the lattice with
:func:`scipy.optimize.minimize_scalar` on the exact expectation of the interpolated cost
function. The forward evaluation keeps the atoms that the levels create (``Y_j = S_j`` with
positive probability) exact, off the lattice, so it reproduces the optimisation recursion's value.

The normal distribution is used **untruncated** (as in Snyder & Shen and in Clark-Scarf theory), so
negative demand has its (normally negligible) normal probability; the simulator censors normal
demand at zero, which differs by ``O(P(D < 0))``. Likewise the modified-levels correction
(``S_j <- min_{i >= j} S_i``), exact for non-negative demand, is exact for the normal only up to
the probability of negative demand.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import optimize, signal, special, stats

from meio.envs.distributions import DemandSpec
from meio.envs.scenario import Scenario, ScenarioError

__all__ = [
    "SerialSolution",
    "clark_scarf",
    "shang_song",
    "evaluate_echelon_policy",
    "demand_spec",
    "check_iid_demand",
    "check_serial_demand",
]

#: Total probability mass of a demand distribution that may be cut off (both tails together).
_TAIL = 1e-12
#: Lattice points per standard deviation of the narrowest lead-time demand (continuous demand).
_STEPS_PER_SD = 96
#: Above this many multiply-adds a convolution goes through the FFT.
_FFT_THRESHOLD = 200_000


# =================================================================================================
# Result
# =================================================================================================
@dataclass(frozen=True)
class SerialSolution:
    """Echelon base-stock levels of a serial chain and their exact long-run performance.

    Stage 1 (the demand-facing stage) comes first in every array. All expectations are long-run
    averages per period of end-of-period quantities in the project's timing.

    Attributes:
        echelon_levels: ``S_j``, the echelon base-stock levels (order-up-to levels of the echelon
            inventory position: stock at and below ``j``, in transit to and below ``j``, minus
            customer backorders). Non-decreasing (levels of an evaluated policy are reported after
            the modified-levels correction ``S_j <- min_{i >= j} S_i``). Integral for integer-valued
            demand.
        local_levels: the equivalent installation (local) base-stock levels ``S_1`` and
            ``S_j - S_{j-1}``.
        expected_cost: expected holding plus backorder cost per period, ``sum_j h_j E[I_j] +
            p E[B_1]`` with the local holding rates ``h_j``; stock in transit is not charged.
        cost_split: ``{"holding": sum_j h_j E[I_j], "backorder": p E[B_1]}``.
        expected_on_hand: ``E[I_j]``, the expected local on-hand stock at each stage at the end of
            a period.
        expected_backorders: ``E[B_1]``, expected customer backorders at the end of a period.
        fill_rate: expected demand filled from stock in the period it arrives over expected demand.
        method: ``"clark_scarf"``, ``"shang_song"`` or ``"evaluation"``.
    """

    echelon_levels: np.ndarray
    local_levels: np.ndarray
    expected_cost: float
    cost_split: dict[str, float]
    expected_on_hand: np.ndarray
    expected_backorders: float
    fill_rate: float
    method: str


# =================================================================================================
# Demand models: the distribution of the demand over k periods, on a lattice
# =================================================================================================
class _Demand:
    """Per-period demand; knows the distribution of the sum of ``k`` i.i.d. periods."""

    discrete: bool = False
    mean: float = 0.0
    sd: float = 0.0

    def __init__(self) -> None:
        self._lat: dict[tuple[int, float], tuple[int, np.ndarray]] = {}

    # -- to be provided by subclasses ----------------------------------------------------------
    def _support(self, k: int) -> tuple[float, float]:
        """Values outside which the sum of ``k`` periods has total mass below ``_TAIL``."""
        raise NotImplementedError

    def quantile(self, k: int, q: float) -> float:
        """``F^{-1}(q)`` of the demand over ``k`` periods (smallest ``x`` with ``F(x) >= q``)."""
        raise NotImplementedError

    # -- lattice ---------------------------------------------------------------------------------
    def lattice(self, k: int, delta: float) -> tuple[int, np.ndarray]:
        """``(i0, m)``: the demand over ``k`` periods has mass ``m[i]`` at ``(i0 + i) * delta``."""
        key = (k, delta)
        if key not in self._lat:
            if k == 0:
                self._lat[key] = (0, np.ones(1))
            else:
                self._lat[key] = self._make_lattice(k, delta)
        return self._lat[key]

    def _make_lattice(self, k: int, delta: float) -> tuple[int, np.ndarray]:
        raise NotImplementedError

    def step(self, ks: Sequence[int]) -> float:
        """Lattice step: 1 for integer demand, else the narrowest sd divided by _STEPS_PER_SD."""
        if self.discrete:
            return 1.0
        kmin = min((k for k in ks if k > 0), default=1)
        return self.sd * math.sqrt(kmin) / _STEPS_PER_SD


class _ContinuousDemand(_Demand):
    """A continuous demand given by its loss function ``G_k(x) = E[(D_k - x)^+]``."""

    discrete = False

    def loss(self, k: int, x: np.ndarray) -> np.ndarray:
        """``E[(D_k - x)^+]`` for the demand over ``k`` periods (``D_0 = 0``)."""
        x = np.asarray(x, dtype=float)
        if k == 0:
            return np.maximum(-x, 0.0)
        return self._loss(k, x)

    def _loss(self, k: int, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def hat_weights(self, k: int, c: np.ndarray, delta: float) -> np.ndarray:
        """``E[max(0, 1 - |D_k - c| / delta)]``: the second difference of the loss function."""
        g = self.loss(k, np.concatenate(([c[0] - delta], c, [c[-1] + delta])))
        w = (g[:-2] - 2.0 * g[1:-1] + g[2:]) / delta
        return np.maximum(w, 0.0)

    def _make_lattice(self, k: int, delta: float) -> tuple[int, np.ndarray]:
        lo, hi = self._support(k)
        i0 = math.floor(lo / delta) - 1
        i1 = math.ceil(hi / delta) + 1
        idx = np.arange(i0, i1 + 1)
        return i0, self.hat_weights(k, idx * delta, delta)


class _Normal(_ContinuousDemand):
    def __init__(self, mean: float, sd: float) -> None:
        super().__init__()
        self.mean, self.sd = mean, sd

    def _ms(self, k: int) -> tuple[float, float]:
        return k * self.mean, math.sqrt(k) * self.sd

    def _support(self, k: int) -> tuple[float, float]:
        m, s = self._ms(k)
        z = -special.ndtri(_TAIL / 4)
        return m - z * s, m + z * s

    def quantile(self, k: int, q: float) -> float:
        if k == 0:
            return 0.0
        m, s = self._ms(k)
        return float(m + s * special.ndtri(q)) if q < 1 else math.inf

    def _loss(self, k: int, x: np.ndarray) -> np.ndarray:
        m, s = self._ms(k)
        z = (x - m) / s
        return s * (np.exp(-0.5 * z * z) / math.sqrt(2 * math.pi) - z * special.ndtr(-z))


class _Gamma(_ContinuousDemand):
    def __init__(self, mean: float, sd: float) -> None:
        super().__init__()
        self.mean, self.sd = mean, sd
        self.shape = (mean / sd) ** 2
        self.scale = sd * sd / mean

    def _support(self, k: int) -> tuple[float, float]:
        a = k * self.shape
        return (
            float(stats.gamma.ppf(_TAIL / 4, a, scale=self.scale)),
            float(stats.gamma.isf(_TAIL / 4, a, scale=self.scale)),
        )

    def quantile(self, k: int, q: float) -> float:
        if k == 0:
            return 0.0
        return float(stats.gamma.ppf(q, k * self.shape, scale=self.scale)) if q < 1 else math.inf

    def _loss(self, k: int, x: np.ndarray) -> np.ndarray:
        a = k * self.shape
        xp = np.maximum(x, 0.0) / self.scale
        # E[D 1{D > x}] = a * scale * Q(a + 1, x / scale);  E[(D - x)^+] = that - x * Q(a, x / scale)
        out = a * self.scale * special.gammaincc(a + 1.0, xp) - np.maximum(x, 0.0) * special.gammaincc(a, xp)
        return np.where(x > 0, out, a * self.scale - x)


class _DiscreteDemand(_Demand):
    """Integer-valued demand; the lattice is the integers and the masses are the pmf."""

    discrete = True

    def _make_lattice(self, k: int, delta: float) -> tuple[int, np.ndarray]:
        return self._pmf(k)

    def _pmf(self, k: int) -> tuple[int, np.ndarray]:
        raise NotImplementedError

    def quantile(self, k: int, q: float) -> float:
        if q >= 1:
            return math.inf
        i0, m = self.lattice(k, 1.0)
        cdf = np.cumsum(m)
        i = int(np.searchsorted(cdf, q * (1 - 1e-14), side="left"))
        return float(i0 + min(i, len(m) - 1))


class _ScipyDiscrete(_DiscreteDemand):
    """Poisson or negative binomial: the sum of k periods is of the same family."""

    def __init__(self, frozen_of_k: Callable[[int], Any], mean: float, sd: float) -> None:
        super().__init__()
        self.frozen_of_k, self.mean, self.sd = frozen_of_k, mean, sd

    def _pmf(self, k: int) -> tuple[int, np.ndarray]:
        rv = self.frozen_of_k(k)
        lo = int(rv.ppf(_TAIL / 4))
        hi = int(rv.isf(_TAIL / 4))
        xs = np.arange(lo, hi + 1)
        return lo, rv.pmf(xs)


class _FinitePmf(_DiscreteDemand):
    """A pmf on a finite set of non-negative integers; k-period sums by numeric convolution."""

    def __init__(self, i0: int, pmf: np.ndarray) -> None:
        super().__init__()
        self.base = (i0, pmf / pmf.sum())
        xs = i0 + np.arange(len(pmf))
        self.mean = float(np.dot(xs, self.base[1]))
        self.sd = math.sqrt(max(float(np.dot((xs - self.mean) ** 2, self.base[1])), 0.0))

    @staticmethod
    def _trim(i0: int, m: np.ndarray) -> tuple[int, np.ndarray]:
        m = np.maximum(m, 0.0)
        c = np.cumsum(m)
        tot = c[-1]
        lo = int(np.searchsorted(c, _TAIL / 256 * tot, side="right"))
        r = np.cumsum(m[::-1])
        hi = len(m) - int(np.searchsorted(r, _TAIL / 256 * tot, side="right"))
        lo = min(lo, hi - 1)
        return i0 + lo, m[lo:hi]

    def _pmf(self, k: int) -> tuple[int, np.ndarray]:
        # Binary powering: at most 2 log2(k) convolutions, each trimmed at mass _TAIL / 256 a
        # side, so the total mass cut stays below _TAIL for any k < 2**60.
        result: tuple[int, np.ndarray] | None = None
        power = self.base
        while True:
            if k & 1:
                result = (
                    power if result is None else self._trim(result[0] + power[0], _convolve_full(result[1], power[1]))
                )
            k >>= 1
            if not k:
                break
            power = self._trim(2 * power[0], _convolve_full(power[1], power[1]))
        assert result is not None
        return result


def _convolve_full(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    if len(a) * len(b) > _FFT_THRESHOLD:
        return np.maximum(signal.fftconvolve(a, b, mode="full"), 0.0)
    return np.convolve(a, b, mode="full")


def _convolve_valid(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    if len(a) * len(b) > _FFT_THRESHOLD:
        return signal.fftconvolve(a, b, mode="valid")
    return np.convolve(a, b, mode="valid")


# =================================================================================================
# Validation
# =================================================================================================
def _real(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name}: {value!r} is not a real number")
    v = float(value)
    if not math.isfinite(v):
        raise ValueError(f"{name}: {value!r} is not finite")
    return v


def _int(value: Any, name: str, rule: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not float(value).is_integer():
        raise ValueError(f"{name}: {value!r} is not an integer; {rule}")
    return int(value)


def _trace_rule(dist: str, path: str) -> None:
    if dist == "trace":
        raise ValueError(
            f"{path}.dist: 'trace' replays recorded data; the analytic models need i.i.d. demand from a distribution"
        )


def demand_spec(demand: DemandSpec | Mapping[str, Any]) -> DemandSpec:
    """The validated demand of a plain mapping in the scenario format (``{"dist": "poisson", "mean": 4}``).

    A :class:`~meio.envs.distributions.DemandSpec` (what a loaded scenario holds) is returned as it
    is. A mapping is checked by the scenario's own rules for a node's ``demand`` (one place for them:
    :meth:`meio.envs.scenario.Scenario.from_dict`), so a demand the simulator accepts is read the
    same way here; messages name the field as ``demand.<key>``.

    Raises:
        ValueError: (a :class:`~meio.envs.scenario.ScenarioError`) the mapping breaks a rule.

    Example:
        A scenario's demand goes to the solvers as it is; the same numbers as a mapping give the same
        answer (Example 6.1, see :func:`clark_scarf`):

        >>> from meio.envs.scenario import load_scenario
        >>> spec = load_scenario("ex61").node("retailer").demand
        >>> spec == demand_spec({"dist": "normal", "mean": 5, "sd": 1})
        True
        >>> a = clark_scarf([0, 1, 2], [3.0, 2.0, 2.0], 37.12, spec)
        >>> b = clark_scarf([0, 1, 2], [3.0, 2.0, 2.0], 37.12, {"dist": "normal", "mean": 5, "sd": 1})
        >>> a.expected_cost == b.expected_cost, bool((a.echelon_levels == b.echelon_levels).all())
        (True, True)

        A broken mapping is refused by the scenario's rule, named by its field:

        >>> try:
        ...     demand_spec({"dist": "negative_binomial", "mean": 5, "sd": 2})   # variance 4 <= mean 5
        ... except ValueError as exc:
        ...     print(str(exc).split(":")[0])
        demand.sd
    """
    if isinstance(demand, DemandSpec):
        return demand
    if not isinstance(demand, Mapping):
        raise ValueError(
            f"demand: expected a mapping such as {{'dist': 'poisson', 'mean': 4}} or a DemandSpec, got {demand!r}"
        )
    # Before the scenario reads it: a trace's file is not worth opening for a model that cannot use it.
    _trace_rule(demand.get("dist"), "demand")
    inner = "nodes[0].demand"
    stage = {"id": "stage", "holding_cost": 1.0, "backorder_cost": 1.0, "demand": dict(demand)}
    try:
        scenario = Scenario.from_dict(
            {"name": "demand", "nodes": [stage], "lanes": [{"from": "external", "to": "stage", "lead_time": 0}]}
        )
    except ScenarioError as exc:
        # Only the demand can be wrong in this one-stage scenario; say where in the caller's terms.
        raise ScenarioError(
            errors=[(p.replace(inner, "demand", 1), m.replace(inner, "demand", 1)) for p, m in exc.errors]
        ) from None
    spec = scenario.nodes[0].demand
    assert spec is not None
    return spec


def check_iid_demand(demand: DemandSpec, path: str = "demand") -> None:
    """Refuse demand that is not i.i.d. across periods (a trace, seasonality or a trend), naming
    ``path``'s field: the analytic models (this module's, and the GSM's moments per period in
    :func:`meio.baselines.analytic.gsm_baseline`) assume i.i.d. demand.

    Raises:
        ValueError: the demand is not i.i.d.; the message names the field and the rule.

    Example:
        >>> from meio.envs.distributions import Seasonality
        >>> check_iid_demand(DemandSpec("poisson", mean=4.0, seasonality=Seasonality(amplitude=0.2)),
        ...                  "nodes[2].demand")
        Traceback (most recent call last):
        ...
        ValueError: nodes[2].demand.seasonality: the analytic models need i.i.d. demand (no seasonality)
    """
    _trace_rule(demand.dist, path)
    if demand.seasonality is not None:
        raise ValueError(f"{path}.seasonality: the analytic models need i.i.d. demand (no seasonality)")
    if demand.trend:
        raise ValueError(f"{path}.trend: {demand.trend:g}; the analytic models need i.i.d. demand (no trend)")


def check_serial_demand(demand: DemandSpec, path: str = "demand", written_values: Sequence[Any] = ()) -> None:
    """Refuse a validated demand the analytic serial model cannot take, naming ``path``'s field.

    The model (module docstring) needs i.i.d. demand (:func:`check_iid_demand`) with a positive
    mean: a positive ``sd`` for ``normal`` and ``gamma`` (the lattice step is proportional to it)
    and integer ``values`` for ``discrete`` (their lattice is the integers). ``written_values`` are
    the discrete values as the caller listed them (the spec holds them sorted), so that a message
    names the caller's position.

    Raises:
        ValueError: the model does not apply; the message names the field, its value and the rule.

    Example:
        >>> check_serial_demand(DemandSpec("poisson", mean=0.0), "nodes[0].demand")
        Traceback (most recent call last):
        ...
        ValueError: nodes[0].demand.mean: 0 must be > 0 for the analytic serial model
    """
    check_iid_demand(demand, path)
    if demand.dist in ("poisson", "normal", "gamma", "negative_binomial"):
        if demand.mean <= 0:
            raise ValueError(f"{path}.mean: {demand.mean:g} must be > 0 for the analytic serial model")
        if demand.dist != "poisson" and demand.sd <= 0:
            raise ValueError(f"{path}.sd: {demand.sd:g} must be > 0 for the analytic serial model")
    elif demand.dist == "uniform_int" and demand.high == 0:
        raise ValueError(f"{path}.high: 0 makes demand identically zero; the analytic serial model needs high > 0")
    elif demand.dist == "discrete":
        for v in demand.values:
            if not float(v).is_integer():
                i = next((k for k, w in enumerate(written_values) if w == v), demand.values.index(v))
                raise ValueError(
                    f"{path}.values[{i}]: {v:g} is not an integer; the analytic serial model needs "
                    "integer demand values"
                )
        if np.dot(demand.values, demand.probs) <= 0:
            raise ValueError(
                f"{path}.values: demand is identically zero; the analytic serial model needs a positive mean"
            )


def _make_demand(demand: DemandSpec | Mapping[str, Any]) -> _Demand:
    """The lattice model of a demand (a mapping is validated first, see :func:`demand_spec`)."""
    spec = demand_spec(demand)
    written = demand.get("values", ()) if isinstance(demand, Mapping) else ()
    check_serial_demand(spec, written_values=written if isinstance(written, Sequence) else ())
    dist, mean, sd = spec.dist, spec.mean, spec.sd
    if dist == "poisson":
        return _ScipyDiscrete(lambda k: stats.poisson(k * mean), mean, math.sqrt(mean))
    if dist == "normal":
        return _Normal(mean, sd)
    if dist == "gamma":
        return _Gamma(mean, sd)
    if dist == "negative_binomial":
        n, p = spec.nb_params()
        return _ScipyDiscrete(lambda k: stats.nbinom(k * n, p), mean, sd)
    if dist == "uniform_int":
        return _FinitePmf(spec.low, np.ones(spec.high - spec.low + 1))
    vals = [int(v) for v in spec.values]
    lo = min(vals)
    pmf = np.zeros(max(vals) - lo + 1)
    for v, q in zip(vals, spec.probs):
        pmf[v - lo] += q
    return _FinitePmf(lo, pmf)


def _validate(
    lead_times: Sequence[int],
    echelon_holding: Sequence[float],
    backorder_cost: float,
    demand: DemandSpec | Mapping[str, Any],
) -> tuple[list[int], np.ndarray, float, _Demand]:
    for name, seq in (("lead_times", lead_times), ("echelon_holding", echelon_holding)):
        if isinstance(seq, (str, bytes)) or not hasattr(seq, "__len__") or not hasattr(seq, "__getitem__"):
            raise ValueError(f"{name}: expected a sequence with one entry per stage, got {seq!r}")
    if len(lead_times) == 0:
        raise ValueError("lead_times: empty; a serial chain has at least one stage")
    if len(echelon_holding) != len(lead_times):
        raise ValueError(
            f"echelon_holding: has {len(echelon_holding)} entries but lead_times has "
            f"{len(lead_times)}; both need one entry per stage (stage 1 first)"
        )
    rule = "lead times are integers >= 0"
    L = [_int(v, f"lead_times[{i}]", rule) for i, v in enumerate(lead_times)]
    for i, v in enumerate(L):
        if v < 0:
            raise ValueError(f"lead_times[{i}]: {v} is negative; {rule}")
    hh = np.array([_real(v, f"echelon_holding[{i}]") for i, v in enumerate(echelon_holding)])
    for i, v in enumerate(hh):
        if v < 0:
            raise ValueError(f"echelon_holding[{i}]: {v} is negative; echelon holding costs are >= 0")
    p = _real(backorder_cost, "backorder_cost")
    if p <= 0:
        raise ValueError(f"backorder_cost: {p} must be > 0")
    return L, hh, p, _make_demand(demand)


# =================================================================================================
# Lattice functions
# =================================================================================================
class _LatFun:
    """Values ``v[i]`` of a function at ``(i0 + i) * delta``; constant to the right of the last
    point, linear to the left of the first (only used as a safety net)."""

    def __init__(self, i0: int, v: np.ndarray) -> None:
        self.i0, self.v = i0, v

    def at(self, i_lo: int, i_hi: int) -> np.ndarray:
        """Values at the consecutive indices ``i_lo .. i_hi``."""
        idx = np.arange(i_lo, i_hi + 1) - self.i0
        n = len(self.v)
        out = self.v[np.clip(idx, 0, n - 1)]
        left = idx < 0
        if left.any():
            slope = self.v[1] - self.v[0] if n > 1 else 0.0
            out = np.where(left, self.v[0] + slope * idx, out)
        return out


class _C0:
    """``C_0(x) = (p + h_1) x^-`` on the lattice (the backorder part of the stage-1 cost)."""

    def __init__(self, rate: float, delta: float) -> None:
        self.rate, self.delta = rate, delta

    def at(self, i_lo: int, i_hi: int) -> np.ndarray:
        return self.rate * np.maximum(-np.arange(i_lo, i_hi + 1) * self.delta, 0.0)


# =================================================================================================
# The Clark-Scarf / Chen-Zheng recursion
# =================================================================================================
def _effective_lead_times(L: Sequence[int]) -> list[int]:
    """``tau_1 = L_1 + 1`` (review period plus lead time) and ``tau_j = L_j`` upstream."""
    return [L[0] + 1] + list(L[1:])


def _local_holding(hh: np.ndarray) -> np.ndarray:
    """``h_j = sum_{i >= j} hh_i``."""
    return np.cumsum(hh[::-1])[::-1]


def _recursion_constant(L: Sequence[int], hh: np.ndarray, mean: float) -> float:
    """``C~_N(S_N)`` minus the expected cost per period as this module defines it.

    ``C~_N(S_N) = sum_j hh_j E[Y_j - D[tau_j]] + (p + h_1) E[B_1]`` (``Y_j`` the echelon inventory
    position of ``j`` after shipments). The end-of-period echelon inventory level of ``j`` is
    ``Y_j - D[L_j + 1]``, one period more than ``tau_j`` for ``j >= 2``; and
    ``sum_j h_j I_j + p B_1 = sum_j hh_j IL^e_j + (p + h_1) B_1 - sum_{j<N} h_{j+1} T_j`` with
    ``E[T_j] = L_j * mean`` the stock in transit into ``j``.
    """
    h = _local_holding(hh)
    N = len(L)
    return mean * (float(np.sum(hh[1:])) + sum(h[j + 1] * L[j] for j in range(N - 1)))


def _truncated(f: Callable[[float], float], s: float, f_s: float) -> Callable[[float], float]:
    """``x -> f(min(s, x))`` given ``f_s = f(s)``."""
    return lambda x: f_s if x >= s else f(x)


def _optimize_levels(L: list[int], hh: np.ndarray, p: float, dem: _Demand) -> tuple[np.ndarray, float]:
    """Minimisers ``S*_j`` of the recursion (``inf`` where ``hh_j = 0``) and ``C~_N(S*_N)``."""
    N = len(L)
    tau = _effective_lead_times(L)
    delta = dem.step(tau + [L[0]])
    h = _local_holding(hh)
    lat = [dem.lattice(t, delta) for t in tau]
    dmin = [i0 for i0, _ in lat]
    dmax = [i0 + len(m) - 1 for i0, m in lat]
    lam = np.cumsum(tau)

    # Search ranges [a_j, b_j] (lattice indices) for S*_j. S*_j lies between the Shang-Song
    # bounds, quantiles of the demand over tau_1 + ... + tau_j periods at the fractiles
    # (p + h_{j+1}) / (p + h_1) and (p + h_{j+1}) / (p + h_j) < 1 - 1e-12 (unless hh_j ~ 0, the
    # flat case below); [a_j, b_j] spans the quantiles at min(1e-13, half the lower fractile) and
    # 1 - 2.5e-13, padded by two lattice steps.
    a = np.zeros(N, dtype=np.int64)
    b = np.zeros(N, dtype=np.int64)
    for j in range(N):
        h_next = h[j + 1] if j + 1 < N else 0.0
        q_lo = min(_TAIL / 4, 0.5 * (p + h_next) / (p + h[0]))
        a[j] = math.floor(dem.quantile(int(lam[j]), q_lo) / delta) - 2
        b[j] = math.ceil(dem.quantile(int(lam[j]), 1 - _TAIL / 4) / delta) + 2
        if j > 0:
            # C~_j is flat beyond b_{j-1} + dmax_j (C_{j-1} is constant above S*_{j-1} <= b_{j-1}).
            b[j] = max(b[j], b[j - 1] + dmax[j])
            a[j] = min(a[j], b[j] - 1)
    # Domains [lo_j, b_j] on which C~_j is needed: its search range, and wherever stage j+1's
    # expectation reads C_j.
    lo = a.copy()
    for j in range(N - 2, -1, -1):
        lo[j] = min(a[j], lo[j + 1] - dmax[j + 1])

    dem_lo = [i * delta for i in dmin]
    dem_hi = [i * delta for i in dmax]
    rate0 = p + h[0]
    prev: _LatFun | _C0 = _C0(rate0, delta)

    def prev_exact(x: float) -> float:  # C_0 off the lattice
        return rate0 * max(-x, 0.0)

    levels = np.full(N, math.inf)
    cost_at_opt = math.nan
    for j in range(N):
        m = lat[j][1]
        ylo, yhi = int(lo[j]), int(b[j])
        arr = prev.at(ylo - dmax[j], yhi - dmin[j])
        ys = np.arange(ylo, yhi + 1) * delta
        Ct = hh[j] * (ys - tau[j] * dem.mean) + _convolve_valid(arr, m)

        def exact(
            y: float, j: int = j, prev: _LatFun | _C0 = prev, prev_exact: Callable[[float], float] = prev_exact
        ) -> float:
            """C~_j off the lattice: the exact expectation of the interpolated C_{j-1}, or (zero
            lead time) C_{j-1} itself, evaluated exactly through the stages below."""
            if tau[j] == 0:
                return hh[j] * y + prev_exact(y)
            assert isinstance(dem, _ContinuousDemand)
            k_lo = math.floor((y - dem_hi[j]) / delta) - 1
            k_hi = math.ceil((y - dem_lo[j]) / delta) + 1
            xs = np.arange(k_lo, k_hi + 1)
            w = dem.hat_weights(tau[j], y - xs * delta, delta)
            return float(hh[j] * (y - tau[j] * dem.mean) + np.dot(w, prev.at(k_lo, k_hi)))

        cmin = float(Ct.min())
        k = int(np.argmax(Ct <= cmin + 1e-12 * max(1.0, abs(cmin))))
        if j < N - 1 and (hh[j] == 0.0 or k == len(Ct) - 1):
            # C~_j is non-increasing: every level on its flat part is optimal. +inf ("pass
            # everything down"), which the modified-levels correction turns into S_{j+1}.
            prev = _LatFun(ylo, Ct)
            prev_exact = exact
            continue
        if dem.discrete:
            s, c_s = float(ylo + k), float(Ct[k])
        else:
            y_l = (ylo + max(k - 1, 0)) * delta
            y_r = (ylo + min(k + 1, len(Ct) - 1)) * delta
            res = optimize.minimize_scalar(exact, bounds=(y_l, y_r), method="bounded", options={"xatol": 1e-7 * delta})
            s, c_s = float(res.x), float(res.fun)
            if c_s > Ct[k]:  # keep the lattice point if the refinement did not improve on it
                s, c_s = (ylo + k) * delta, float(Ct[k])
        levels[j] = s
        v = Ct.copy()
        v[ys > s] = c_s
        prev = _LatFun(ylo, v)
        prev_exact = _truncated(exact, s, c_s)
        cost_at_opt = c_s
    return levels, cost_at_opt


# =================================================================================================
# Exact evaluation of an echelon base-stock policy (forward in the distribution of Y_j)
# =================================================================================================
def _modified_levels(levels: np.ndarray) -> np.ndarray:
    """``S_j <- min_{i >= j} S_i``: in steady state stage j's echelon position never exceeds
    stage j+1's echelon inventory, so a larger ``S_j`` behaves exactly like ``S_{j+1}``."""
    return np.minimum.accumulate(levels[::-1])[::-1]


@dataclass
class _Dist:
    """A distribution: lattice masses ``m[i]`` at ``(i0 + i) * delta`` plus one atom of mass
    ``atom_p`` at ``atom_x`` (an echelon position capped at an off-lattice level ``S``)."""

    i0: int
    m: np.ndarray
    atom_x: float = 0.0
    atom_p: float = 0.0

    def xs(self, delta: float) -> np.ndarray:
        return (self.i0 + np.arange(len(self.m))) * delta

    def mean_pos(self, delta: float, shift: float = 0.0) -> float:
        """``E[(Z - shift)^+]``."""
        return float(np.dot(self.m, np.maximum(self.xs(delta) - shift, 0.0))) + self.atom_p * max(
            self.atom_x - shift, 0.0
        )


def _add(a: tuple[int, np.ndarray], b: tuple[int, np.ndarray]) -> tuple[int, np.ndarray]:
    """Sum of two lattice mass arrays."""
    lo = min(a[0], b[0])
    hi = max(a[0] + len(a[1]), b[0] + len(b[1]))
    out = np.zeros(hi - lo)
    out[a[0] - lo : a[0] - lo + len(a[1])] += a[1]
    out[b[0] - lo : b[0] - lo + len(b[1])] += b[1]
    return lo, out


def _minus_demand(z: _Dist, dem: _Demand, k: int, delta: float) -> _Dist:
    """Distribution of ``Z - D[k]`` with ``D[k]`` independent of ``Z``."""
    if k == 0:
        return z
    d0, md = dem.lattice(k, delta)
    d1 = d0 + len(md) - 1
    lat = (z.i0 - d1, _convolve_full(z.m, md[::-1]) if len(z.m) else np.zeros(0))
    if z.atom_p > 0.0:
        if dem.discrete:
            part = (int(round(z.atom_x)) - d1, z.atom_p * md[::-1])
        else:
            # A point minus a continuous demand: its exact hat weights (no splitting of the atom).
            assert isinstance(dem, _ContinuousDemand)
            k_lo = math.floor(z.atom_x / delta) - d1 - 2
            k_hi = math.ceil(z.atom_x / delta) - d0 + 2
            xs = np.arange(k_lo, k_hi + 1) * delta
            part = (k_lo, z.atom_p * dem.hat_weights(k, z.atom_x - xs, delta))
        lat = _add(lat, part) if len(z.m) else part
    return _Dist(lat[0], lat[1])


def _cap(x: _Dist, s: float, delta: float) -> tuple[_Dist, float]:
    """``(min(S, X), E[(X - S)^+])``; every mass above ``S`` becomes the atom at ``S``."""
    excess = x.mean_pos(delta, s)
    xs = x.xs(delta)
    above = xs > s
    # An incoming atom (zero lead time upstream) sits at S_{j+1} >= S_j (levels are
    # non-decreasing), so it moves to (or stays at) S.
    assert x.atom_p == 0.0 or x.atom_x >= s - 1e-9 * max(1.0, abs(s))
    mass = float(x.m[above].sum()) + x.atom_p
    keep = np.where(above, 0.0, x.m)
    nz = np.flatnonzero(keep)
    if len(nz):
        return _Dist(x.i0 + int(nz[0]), keep[nz[0] : nz[-1] + 1], s, mass), excess
    return _Dist(0, np.zeros(0), s, mass), excess


def _evaluate(L: list[int], hh: np.ndarray, p: float, dem: _Demand, levels: np.ndarray, method: str) -> SerialSolution:
    """Exact long-run performance of the echelon base-stock levels ``levels`` (already modified).

    ``Y_N = S_N``; for ``j = N, ..., 2``: ``X_j = Y_j - D[L_j]`` (stage j's echelon stock available
    when it ships), ``I_j = (X_j - S_{j-1})^+`` (its on-hand stock after shipping, which is its
    end-of-period on-hand) and ``Y_{j-1} = min(S_{j-1}, X_j)``; at stage 1 the end-of-period
    inventory level is ``IL_1 = Y_1 - D[L_1 + 1]``, ``I_1 = IL_1^+``, ``B_1 = IL_1^-``, and the
    inventory level before the period's demand is ``A = Y_1 - D[L_1]``, so the demand filled from
    stock is ``E[A^+] - E[I_1]`` (the demand intervals are disjoint, hence independent).
    """
    N = len(L)
    tau = _effective_lead_times(L)
    delta = dem.step(tau + [L[0]])
    h = _local_holding(hh)
    on_hand = np.zeros(N)
    y = _Dist(0, np.zeros(0), float(levels[-1]), 1.0)  # Y_N = S_N
    for j in range(N - 1, 0, -1):
        y, on_hand[j] = _cap(_minus_demand(y, dem, L[j], delta), float(levels[j - 1]), delta)
    il = _minus_demand(y, dem, tau[0], delta)
    on_hand[0] = il.mean_pos(delta)
    backorders = float(np.dot(il.m, np.maximum(-il.xs(delta), 0.0))) + il.atom_p * max(-il.atom_x, 0.0)
    pos_before = _minus_demand(y, dem, L[0], delta).mean_pos(delta)
    fill = (pos_before - on_hand[0]) / dem.mean
    holding = float(np.dot(h, on_hand))
    backorder = p * backorders
    lv = np.array(levels, dtype=float)
    local = np.diff(np.concatenate(([0.0], lv)))
    for arr in (lv, local, on_hand):
        arr.setflags(write=False)
    return SerialSolution(
        echelon_levels=lv,
        local_levels=local,
        expected_cost=holding + backorder,
        cost_split={"holding": holding, "backorder": backorder},
        expected_on_hand=on_hand,
        expected_backorders=backorders,
        fill_rate=float(min(max(fill, 0.0), 1.0)),
        method=method,
    )


# =================================================================================================
# Public functions
# =================================================================================================


def clark_scarf(
    lead_times: Sequence[int],
    echelon_holding: Sequence[float],
    backorder_cost: float,
    demand: DemandSpec | Mapping[str, Any],
) -> SerialSolution:
    """Exact optimal echelon base-stock levels of a serial chain (Clark & Scarf 1960).

    The exact algorithm of Chen & Zheng (1994) / Gallego & Zipkin (1999) as given by Snyder & Shen
    (2019), section 6.2, and Zipkin (2000), chapter 8, written in the project's timing. With
    ``tau_1 = L_1 + 1``, ``tau_j = L_j`` (``j >= 2``), ``D[k]`` the demand over ``k`` periods,
    ``h_1 = sum_i hh_i`` and ``x^- = max(-x, 0)``::

        C_0(x)   = (p + h_1) x^-
        for j = 1, ..., N:
            C^_j(x) = hh_j x + C_{j-1}(x)
            C~_j(y) = E[ C^_j(y - D[tau_j]) ]
            S*_j    = argmin_y C~_j(y)
            C_j(x)  = C~_j(min(S*_j, x))

    ``C~_N(S*_N)`` is the optimal cost in Snyder & Shen's accounting; the expected cost reported
    here (holding on end-of-period on-hand stock plus backorders, nothing in transit) is
    ``C~_N(S*_N) - mean * (sum_{j>=2} hh_j + sum_{j<N} h_{j+1} L_j)``: for Example 6.1 (ours:
    ``L = (0, 1, 2)``, ``hh = (3, 2, 2)``, ``p = 37.12``, N(5, 1) demand) 47.66 - 30 = 17.66 with
    ``S* = (6.49, 12.02, 22.71)``. The cost, split, on-hand stock, backorders and fill rate are then
    computed by :func:`evaluate_echelon_policy`'s exact evaluation of the levels found.

    Where ``hh_j = 0`` (``j < N``) every level above the flat part of ``C~_j`` is optimal; the
    reported ``S_j`` is then ``S_{j+1}`` (pass everything down). ``hh_N`` must be > 0 (with a free
    top stage the optimal level is unbounded).

    Integer-valued demand: exact, integer levels (the smallest minimiser on ties). Normal or gamma
    demand: ``C~_j`` on a fine lattice, then :func:`scipy.optimize.minimize_scalar` between the
    lattice neighbours of the lattice minimum; the normal is the untruncated normal (as in the
    analytic literature). Accuracy in the cost: a few 1e-6 relative for the normal and for gamma
    with a coefficient of variation up to about 1 (measured against an 8x finer lattice and, for
    Example 6.1, against adaptive quadrature), below 1e-4 up to CV 4.

    The reduction of ``S_j = +inf`` (or of ``S_j > S_{j+1}``) to ``S_{j+1}`` assumes non-negative
    demand; with the untruncated normal it holds up to the probability of negative demand (which
    the simulator's censored normal does not have).

    Args:
        lead_times: ``L_j``, the lead time in periods of the lane into stage ``j``; ``lead_times[0]``
            is the lane into stage 1 (may be 0), ``lead_times[-1]`` the lane from the external
            supplier into the top stage ``N``. Integers >= 0, in the project's timing (Snyder &
            Shen's ``l_1`` is ``lead_times[0] + 1``).
        echelon_holding: ``h_j`` in Snyder & Shen (written ``hh_j`` here), the echelon holding cost
            per unit and period of stage ``j`` (>= 0), stage 1 first; the local rate is
            ``sum_{i >= j} hh_i``.
        backorder_cost: ``p``, the cost per customer backorder per period at stage 1 (> 0).
        demand: per-period demand, i.i.d. across periods: a node's validated
            :class:`~meio.envs.distributions.DemandSpec` (``scenario.node(id).demand``), or a mapping
            in the scenario's YAML format, checked by the scenario's rules (:func:`demand_spec`):
            ``{"dist": "poisson", "mean": m}``, ``{"dist": "normal" | "gamma" |
            "negative_binomial", "mean": m, "sd": s}``, ``{"dist": "uniform_int", "low": a, "high":
            b}`` (inclusive) or ``{"dist": "discrete", "values": [...], "probs": [...]}``. The model
            needs a positive mean, ``sd > 0`` and integer discrete values
            (:func:`check_serial_demand`).

    Returns:
        :class:`SerialSolution` with ``method == "clark_scarf"``.

    Raises:
        ValueError: an argument breaks its rule (the message names it).

    Example:
        Snyder & Shen's Example 6.1 (their lead times ``(1, 1, 2)``, ours ``(0, 1, 2)``). The book
        gives ``S* = (6.49, 12.02, 22.71)`` and ``C* = 47.66``, which charges the pipeline stock
        (30 per period here) that this cost leaves out:

        >>> sol = clark_scarf([0, 1, 2], [3.0, 2.0, 2.0], 37.12, {"dist": "normal", "mean": 5.0, "sd": 1.0})
        >>> [round(float(s), 2) for s in sol.echelon_levels]
        [6.49, 12.02, 22.71]
        >>> round(sol.expected_cost, 2), round(sol.expected_cost + 30.0, 2)
        (17.66, 47.66)

        Stage 1 is a newsvendor for the demand of ``tau_1 = 1`` period at the critical fractile
        ``(p + h_2) / (p + h_1)``, with ``h_2 = 2 + 2`` and ``h_1 = 3 + 2 + 2``:

        >>> from scipy.stats import norm
        >>> round(5.0 + float(norm.ppf((37.12 + 4.0) / (37.12 + 7.0))), 2)
        6.49
    """
    L, hh, p, dem = _validate(lead_times, echelon_holding, backorder_cost, demand)
    _require_top_holding(hh)
    levels, _ = _optimize_levels(L, hh, p, dem)
    return _evaluate(L, hh, p, dem, _modified_levels(levels), "clark_scarf")


def shang_song(
    lead_times: Sequence[int],
    echelon_holding: Sequence[float],
    backorder_cost: float,
    demand: DemandSpec | Mapping[str, Any],
) -> SerialSolution:
    """Shang & Song (2003) closed-form newsvendor approximation of the optimal echelon levels.

    Shang, K. H. and J.-S. Song (2003), Newsvendor bounds and heuristic for optimal policies in
    serial supply chains, *Management Science* 49(5):618-638; also in Snyder & Shen (2019), section 6.2.
    Stage ``j`` is replaced by a single-stage newsvendor facing the demand over the total lead time
    downstream-inclusive, ``Lambda_j = (L_1 + 1) + L_2 + ... + L_j`` periods in our timing, with
    backorder cost ``p + h_{j+1}`` (``h_{j+1} = sum_{i > j} hh_i``, 0 for ``j = N``) and a holding
    cost bracketed by the local rates ``h_j = sum_{i >= j} hh_i`` (upper bound on ``S*_j``) and
    ``h_1 = sum_i hh_i`` (lower bound)::

        S^u_j = F_{Lambda_j}^{-1}( (p + h_{j+1}) / (p + h_j) )
        S^l_j = F_{Lambda_j}^{-1}( (p + h_{j+1}) / (p + h_1) )
        S~_j  = (S^l_j + S^u_j) / 2

    ``S^l_j <= S*_j <= S^u_j`` (their Theorem); the heuristic is the simple average. For
    integer-valued demand ``F^{-1}(q)`` is the smallest integer with ``F >= q`` and ``S~_j`` is
    rounded to the nearest integer (halves up). The levels then get the modified-levels correction
    (``S_j <- min_{i >= j} S_i``) and are evaluated *exactly* with the same evaluation as
    :func:`clark_scarf` and :func:`evaluate_echelon_policy`, so the costs are comparable.

    Args:
        lead_times, echelon_holding, backorder_cost, demand: as in :func:`clark_scarf`.

    Returns:
        :class:`SerialSolution` with ``method == "shang_song"``.

    Raises:
        ValueError: an argument breaks its rule (the message names it).

    Example:
        Snyder & Shen's Example 6.1 (as in :func:`clark_scarf`). stockpyl's Shang-Song heuristic
        gives the same levels (6.490880975, 12.027434723, 22.634032392); their exact cost is
        within 0.04% of the optimum 17.6602:

        >>> sol = shang_song([0, 1, 2], [3.0, 2.0, 2.0], 37.12, {"dist": "normal", "mean": 5.0, "sd": 1.0})
        >>> [round(float(s), 4) for s in sol.echelon_levels]
        [6.4909, 12.0274, 22.634]
        >>> round(sol.expected_cost, 3)
        17.667
    """
    L, hh, p, dem = _validate(lead_times, echelon_holding, backorder_cost, demand)
    _require_top_holding(hh)
    h = np.append(_local_holding(hh), 0.0)
    lam = np.cumsum(_effective_lead_times(L))
    levels = np.empty(len(L))
    for j in range(len(L)):
        r_u = (p + h[j + 1]) / (p + h[j])
        r_l = (p + h[j + 1]) / (p + h[0])
        s = 0.5 * (dem.quantile(int(lam[j]), r_l) + dem.quantile(int(lam[j]), r_u))
        levels[j] = math.floor(s + 0.5) if (dem.discrete and math.isfinite(s)) else s
    return _evaluate(L, hh, p, dem, _modified_levels(levels), "shang_song")


def evaluate_echelon_policy(
    lead_times: Sequence[int],
    echelon_holding: Sequence[float],
    backorder_cost: float,
    demand: DemandSpec | Mapping[str, Any],
    echelon_levels: Sequence[float],
) -> SerialSolution:
    """Exact long-run cost and service of given echelon base-stock levels.

    The evaluation recursion of Snyder & Shen (2019, section 6.2) / Zipkin (2000, chapter 8) run
    forward in distribution, in the project's timing: ``Y_N = S_N``; for ``j = N, ..., 2``,
    ``X_j = Y_j - D[L_j]`` is stage j's echelon stock when it ships (its echelon position
    ``L_j`` periods earlier minus the demand since), stage j's end-of-period on-hand stock is
    ``I_j = (X_j - S_{j-1})^+`` and stage j-1's echelon position after the shipment is
    ``Y_{j-1} = min(S_{j-1}, X_j)`` (shortfall from upstream); at stage 1 the end-of-period
    inventory level is ``IL_1 = Y_1 - D[L_1 + 1]``. Then ``E[I_1] = E[IL_1^+]``,
    ``E[B_1] = E[IL_1^-]``, cost ``= sum_j h_j E[I_j] + p E[B_1]`` (local rates, nothing in transit)
    and fill rate ``= (E[(Y_1 - D[L_1])^+] - E[I_1]) / mean``.

    Levels that are not non-decreasing get the standard modified-levels correction
    ``S_j <- min_{i >= j} S_i`` (stage j can never raise its echelon position above stage j+1's
    echelon inventory, so the long-run behaviour is identical); the returned solution reports the
    corrected levels. With integer-valued demand the levels must be integers (evaluation is exact);
    with normal or gamma demand any real levels are accepted (lattice evaluation with the atoms at
    the levels kept exact; accuracy as in :func:`clark_scarf`; the normal is untruncated, and the
    modified-levels correction is exact for non-negative demand only).

    Args:
        lead_times, echelon_holding, backorder_cost, demand: as in :func:`clark_scarf`.
        echelon_levels: ``S_j``, one echelon base-stock level per stage, stage 1 first.

    Returns:
        :class:`SerialSolution` with ``method == "evaluation"``.

    Raises:
        ValueError: an argument breaks its rule (the message names it).

    Example:
        One stage, lead time 1, Poisson demand of mean 4 per period, level 10: the stock faces the
        demand ``D ~ Poisson(8)`` of ``L_1 + 1 = 2`` periods, so ``E[B_1] = E[(D - 10)^+]`` and
        ``E[I_1] = E[(10 - D)^+] = 10 - 8 + E[B_1]``:

        >>> sol = evaluate_echelon_policy([1], [1.0], 9.0, {"dist": "poisson", "mean": 4}, [10])
        >>> from scipy.stats import poisson
        >>> loss = sum((k - 10) * float(poisson.pmf(k, 8)) for k in range(11, 100))
        >>> abs(sol.expected_backorders - loss) < 1e-9
        True
        >>> abs(float(sol.expected_on_hand[0]) - (2 + loss)) < 1e-9
        True
        >>> round(sol.expected_cost, 4)        # 1 * E[I_1] + 9 * E[B_1]
        6.2586
    """
    L, hh, p, dem = _validate(lead_times, echelon_holding, backorder_cost, demand)
    if isinstance(echelon_levels, (str, bytes)) or not hasattr(echelon_levels, "__len__"):
        raise ValueError(f"echelon_levels: expected one level per stage, got {echelon_levels!r}")
    if len(echelon_levels) != len(L):
        raise ValueError(f"echelon_levels: has {len(echelon_levels)} entries but lead_times has {len(L)}")
    lv = np.array([_real(v, f"echelon_levels[{i}]") for i, v in enumerate(echelon_levels)])
    if dem.discrete:
        for i, v in enumerate(lv):
            if not float(v).is_integer():
                raise ValueError(
                    f"echelon_levels[{i}]: {v} is not an integer; with integer-valued "
                    "demand the levels must be integers"
                )
    return _evaluate(L, hh, p, dem, _modified_levels(lv), "evaluation")


def _require_top_holding(hh: np.ndarray) -> None:
    if hh[-1] <= 0:
        raise ValueError(
            f"echelon_holding[{len(hh) - 1}]: {hh[-1]} must be > 0 at the top stage to "
            "optimise (its local holding cost; at 0 the optimal level is unbounded)"
        )
