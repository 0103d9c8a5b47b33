"""Demand and lead-time distributions of a scenario.

Every draw takes an explicit :class:`numpy.random.Generator`; nothing here touches global random
state. :class:`DemandModel` draws the demand of all demand nodes for a block of periods and many
copies at once: one generator call per copy and distribution family, parameters and inverse
distribution functions computed for all copies together, so the step function only indexes.

Conventions (see ``docs/model.md``):

* ``normal`` demand is censored at zero: a negative draw becomes 0. The mean and standard deviation
  given in the scenario are those of the underlying normal.
* ``negative_binomial`` is given by its mean ``m`` and standard deviation ``s`` (``s**2 > m``); in
  NumPy's parametrisation ``n = m**2 / (s**2 - m)`` successes and ``p = m / s**2``.
* ``gamma`` is given by its mean and standard deviation: shape ``(m/s)**2``, scale ``s**2/m``.
* Seasonality and trend scale the *mean* of period ``t`` by ``f(t) = season(t) * (1 + trend * t)``
  and keep the shape: Poisson ``lam * f``; normal and gamma keep their coefficient of variation;
  the negative binomial keeps ``n`` (its dispersion); ``uniform_int`` and ``discrete`` scale their
  support and round to the nearest integer.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from scipy import stats

DEMAND_KINDS: tuple[str, ...] = (
    "poisson", "normal", "negative_binomial", "gamma", "uniform_int", "discrete", "trace",
)


@dataclass(frozen=True)
class Seasonality:
    """Multiplicative seasonal factor of the mean demand in period ``t``.

    Either a sine wave ``1 + amplitude * sin(2 pi (t + phase) / period)`` or an explicit list of
    ``factors`` repeated cyclically (``factors[t % len(factors)]``).
    """

    amplitude: float = 0.0
    period: int = 52
    phase: float = 0.0
    factors: tuple[float, ...] = ()

    def factor(self, t: np.ndarray) -> np.ndarray:
        if self.factors:
            return np.asarray(self.factors, dtype=float)[t % len(self.factors)]
        return 1.0 + self.amplitude * np.sin(2.0 * np.pi * (t + self.phase) / self.period)


@dataclass(frozen=True)
class DemandSpec:
    """Per-period customer demand at one node (i.i.d. across periods unless seasonal or a trace)."""

    dist: str
    mean: float = 0.0
    sd: float = 0.0
    low: int = 0
    high: int = 0
    values: tuple[float, ...] = ()
    probs: tuple[float, ...] = ()
    trace: tuple[float, ...] = ()
    trace_file: str = ""
    trace_column: str = ""
    trace_start: Literal["first", "random"] = "first"
    seasonality: Seasonality | None = None
    trend: float = 0.0
    _cdf: tuple[float, ...] = field(default=(), repr=False, compare=False)

    # ---- moments (of the stationary, un-seasoned distribution) ----------------------------------
    def base_mean(self) -> float:
        """Mean demand per period before seasonality and trend (the trace's average for traces)."""
        if self.dist in ("poisson", "negative_binomial", "gamma"):
            return self.mean
        if self.dist == "normal":
            # Mean of max(X, 0) for X ~ N(mean, sd): the censoring at zero is part of the model.
            if self.sd == 0:
                return max(self.mean, 0.0)
            z = self.mean / self.sd
            return self.mean * stats.norm.cdf(z) + self.sd * stats.norm.pdf(z)
        if self.dist == "uniform_int":
            return 0.5 * (self.low + self.high)
        if self.dist == "discrete":
            return float(np.dot(self.values, self.probs))
        return float(np.mean(self.trace))

    def base_sd(self) -> float:
        """Standard deviation per period before seasonality and trend."""
        if self.dist == "poisson":
            return math.sqrt(self.mean)
        if self.dist in ("negative_binomial", "gamma"):
            return self.sd
        if self.dist == "normal":
            if self.sd == 0:
                return 0.0
            z = self.mean / self.sd
            m1 = self.base_mean()
            m2 = (self.mean**2 + self.sd**2) * stats.norm.cdf(z) + self.mean * self.sd * stats.norm.pdf(z)
            return math.sqrt(max(m2 - m1 * m1, 0.0))
        if self.dist == "uniform_int":
            k = self.high - self.low + 1
            return math.sqrt((k * k - 1) / 12.0)
        if self.dist == "discrete":
            v = np.asarray(self.values)
            m = float(np.dot(v, self.probs))
            return math.sqrt(max(float(np.dot((v - m) ** 2, self.probs)), 0.0))
        return float(np.std(self.trace))

    @property
    def is_integer(self) -> bool:
        """True when every draw is an integer (so integer orders keep stock integral)."""
        if self.dist in ("poisson", "negative_binomial", "uniform_int"):
            return True
        if self.dist == "discrete":
            return all(float(v).is_integer() for v in self.values)
        if self.dist == "trace":
            return all(float(v).is_integer() for v in self.trace)
        return False

    # ---- sampling --------------------------------------------------------------------------------
    def mean_factor(self, t: np.ndarray) -> np.ndarray:
        """``f(t)``: seasonal factor times trend factor for absolute periods ``t``."""
        f = np.ones(t.shape, dtype=float)
        if self.seasonality is not None:
            f = f * self.seasonality.factor(t)
        if self.trend:
            f = f * np.maximum(1.0 + self.trend * t, 0.0)
        return f

    def ppf(self, u: np.ndarray, t: np.ndarray) -> np.ndarray:
        """Inverse distribution function of period ``t``'s demand (used by the Gaussian copula)."""
        f = self.mean_factor(np.asarray(t))
        d = self.dist
        if d == "poisson":
            return stats.poisson.ppf(u, self.mean * f)
        if d == "normal":
            return np.maximum(self.mean * f + self.sd * f * stats.norm.ppf(u), 0.0)
        if d == "gamma":
            if self.mean == 0:
                return np.zeros_like(u)
            shape = (self.mean / self.sd) ** 2
            return stats.gamma.ppf(u, shape, scale=(self.sd**2 / self.mean) * f)
        if d == "negative_binomial":
            nn, _ = self.nb_params()
            return stats.nbinom.ppf(u, nn, nn / (nn + self.mean * f))
        if d == "uniform_int":
            k = self.high - self.low + 1
            base = self.low + np.minimum(np.floor(u * k), k - 1)
            return np.rint(base * f) if (self.seasonality or self.trend) else base
        if d == "discrete":
            idx = np.searchsorted(np.asarray(self._cdf), u, side="right")
            base = np.asarray(self.values)[np.minimum(idx, len(self.values) - 1)]
            return np.rint(base * f) if (self.seasonality or self.trend) else base
        raise ValueError(f"demand.dist: {d!r} has no inverse distribution function (traces are data)")

    def nb_params(self) -> tuple[float, float]:
        """NumPy's ``(n, p)`` of the negative binomial with this mean and standard deviation."""
        var = self.sd**2
        return self.mean**2 / (var - self.mean), self.mean / var

    def to_dict(self) -> dict:
        out: dict = {"dist": self.dist}
        if self.dist in ("poisson",):
            out["mean"] = self.mean
        elif self.dist in ("normal", "gamma", "negative_binomial"):
            out.update(mean=self.mean, sd=self.sd)
        elif self.dist == "uniform_int":
            out.update(low=self.low, high=self.high)
        elif self.dist == "discrete":
            out.update(values=list(self.values), probs=list(self.probs))
        else:
            out.update(file=self.trace_file, column=self.trace_column, start=self.trace_start)
        if self.seasonality is not None:
            s = self.seasonality
            out["seasonality"] = (
                {"factors": list(s.factors)} if s.factors
                else {"amplitude": s.amplitude, "period": s.period, "phase": s.phase}
            )
        if self.trend:
            out["trend"] = self.trend
        return out


@dataclass(frozen=True)
class LeadTimeSpec:
    """Lead time of one lane (or transport mode), in periods: constant or a discrete distribution."""

    values: tuple[int, ...]
    probs: tuple[float, ...]
    dist: str = "constant"

    @property
    def is_constant(self) -> bool:
        return len(self.values) == 1

    @property
    def max(self) -> int:
        return max(self.values)

    @property
    def mean(self) -> float:
        return float(np.dot(self.values, self.probs))

    @property
    def cdf(self) -> np.ndarray:
        c = np.cumsum(self.probs)
        c[-1] = 1.0
        return c

    def to_dict(self) -> int | dict:
        if self.dist == "constant":
            return self.values[0]
        if self.dist == "uniform_int":
            return {"dist": "uniform_int", "low": self.values[0], "high": self.values[-1]}
        return {"dist": "discrete", "values": list(self.values), "probs": list(self.probs)}


#: A tabulated distribution function stops where its upper tail falls below this.
TABLE_TAIL = 1e-16


def _cdf_table(spec: DemandSpec) -> np.ndarray:
    """``F(0), F(1), ...`` of a stationary Poisson or negative binomial until ``1 - F < TABLE_TAIL``."""
    if spec.dist == "poisson":
        dist = stats.poisson(spec.mean)
    else:
        n, p = spec.nb_params()
        dist = stats.nbinom(n, p)
    top = int(dist.isf(TABLE_TAIL)) + 2
    cdf = dist.cdf(np.arange(top + 1))
    cdf[-1] = 1.0
    return cdf


class DemandModel:
    """Draws blocks of demand for all demand nodes of a scenario, for many copies at once.

    Each copy makes a fixed sequence of generator calls, so its demand depends only on its own
    generator: without correlation, one call of standard normals for the normal nodes, one of
    standard gammas for the gamma nodes, per-period calls for seasonal Poisson and negative
    binomial nodes, and one call of uniforms for all other integer nodes, which go through their
    inverse distribution function (Poisson and negative binomial tabulated until the tail is below
    ``TABLE_TAIL``); with correlation, one call of standard normals ``(periods, nodes)``, mapped
    through a Gaussian copula. Locations, scales and inverse distribution functions are then
    applied to all copies at once. Traces use no randomness (only their starting row, at reset).
    """

    def __init__(self, specs: tuple[DemandSpec, ...], chol: np.ndarray | None) -> None:
        self.specs = specs
        self.chol = chol
        seasonal = [sp.seasonality is not None or bool(sp.trend) for sp in specs]
        self.normal = [d for d, sp in enumerate(specs) if sp.dist == "normal"]
        self.gamma = [d for d, sp in enumerate(specs) if sp.dist == "gamma"]
        self.counted = [d for d, sp in enumerate(specs)                 # seasonal Poisson / neg. binomial
                        if sp.dist in ("poisson", "negative_binomial") and seasonal[d]]
        self.uniform = [d for d, sp in enumerate(specs)
                        if sp.dist in ("uniform_int", "discrete")
                        or (sp.dist in ("poisson", "negative_binomial") and not seasonal[d])]
        self.tables = {d: _cdf_table(specs[d]) for d in self.uniform
                       if specs[d].dist in ("poisson", "negative_binomial")}
        self.traces = [d for d, sp in enumerate(specs) if sp.dist == "trace"]
        self.gamma_shape = np.array([(specs[d].mean / specs[d].sd) ** 2 if specs[d].mean > 0 else 1.0
                                     for d in self.gamma])

    def _factor(self, d: int, periods: np.ndarray) -> np.ndarray:
        return self.specs[d].mean_factor(periods)

    def draw(self, rngs: list[np.random.Generator], periods: np.ndarray, offsets: np.ndarray,
             out: np.ndarray) -> None:
        """Fill ``out`` ``(rows, periods, nodes)`` for copies with generators ``rngs``.

        ``periods`` ``(rows, block)`` are the absolute periods, ``offsets`` ``(rows, nodes)`` the
        traces' starting rows.
        """
        specs = self.specs
        n_rows, c = periods.shape
        if self.chol is not None:
            z = np.stack([rng.standard_normal((c, len(specs))) for rng in rngs]) @ self.chol.T
            for d, sp in enumerate(specs):
                f = sp.mean_factor(periods)
                if sp.dist == "normal":            # no round trip through the uniform for normals
                    out[:, :, d] = np.maximum(sp.mean * f + sp.sd * f * z[:, :, d], 0.0)
                else:
                    out[:, :, d] = sp.ppf(stats.norm.cdf(z[:, :, d]), periods)
            return
        normal = np.empty((n_rows, c, len(self.normal)))
        gamma = np.empty((n_rows, c, len(self.gamma)))
        uniform = np.empty((n_rows, c, len(self.uniform)))
        counted_means = {d: specs[d].mean * self._factor(d, periods) for d in self.counted}
        for r, rng in enumerate(rngs):
            if self.normal:
                normal[r] = rng.standard_normal((c, len(self.normal)))
            if self.gamma:
                gamma[r] = rng.standard_gamma(self.gamma_shape, (c, len(self.gamma)))
            for d, mean in counted_means.items():
                if specs[d].dist == "poisson":
                    out[r, :, d] = rng.poisson(mean[r])
                else:
                    n, _ = specs[d].nb_params()
                    out[r, :, d] = rng.negative_binomial(n, n / (n + mean[r]))
            if self.uniform:
                uniform[r] = rng.random((c, len(self.uniform)))
        for k, d in enumerate(self.normal):
            sp, f = specs[d], self._factor(d, periods)
            out[:, :, d] = np.maximum(sp.mean * f + sp.sd * f * normal[:, :, k], 0.0)
        for k, d in enumerate(self.gamma):
            sp = specs[d]
            scale = sp.sd**2 / sp.mean if sp.mean > 0 else 0.0
            out[:, :, d] = gamma[:, :, k] * scale * self._factor(d, periods)
        for k, d in enumerate(self.uniform):
            if d in self.tables:
                out[:, :, d] = np.searchsorted(self.tables[d], uniform[:, :, k], side="right")
            else:
                out[:, :, d] = specs[d].ppf(uniform[:, :, k], periods)
        for d in self.traces:
            trace = np.asarray(specs[d].trace)
            out[:, :, d] = trace[(offsets[:, d][:, None] + periods) % trace.size]
