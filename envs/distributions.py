"""Demand and lead-time distributions of a scenario.

Every draw takes an explicit :class:`numpy.random.Generator`; nothing here touches global random
state. :class:`DemandModel` draws the demand of all demand nodes for a block of periods and many
copies at once: one generator call per copy and random stream (a demand node, or a correlated
group), parameters and inverse distribution functions computed for all copies together, so the
step function only indexes.

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
from scipy import special, stats

DEMAND_KINDS: tuple[str, ...] = (
    "poisson",
    "normal",
    "negative_binomial",
    "gamma",
    "uniform_int",
    "discrete",
    "trace",
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
                {"factors": list(s.factors)}
                if s.factors
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


#: Smallest uniform put through the normal inverse distribution function: ``random()`` can return
#: exactly 0, whose normal quantile is ``-inf``; ``ndtri(2**-54)`` is about -8.29.
_U_MIN = 2.0**-54


def _standard_normal(u: np.ndarray) -> np.ndarray:
    """Standard normals ``Phi^{-1}(u)`` from uniforms on ``[0, 1)`` (one uniform per normal, so a
    stream of them can be wound back by a count of words)."""
    return special.ndtri(np.maximum(u, _U_MIN))


class DemandModel:
    """Draws blocks of demand for all demand nodes of a scenario, for many copies at once.

    Every copy has its own random streams (see :class:`~meio.envs.simulator.Simulator`), and each
    stream yields one value per period, taken in period order, so the demand of a copy depends
    only on its streams and never on how many periods are drawn at once: ``c`` periods then ``c'``
    periods give the numbers that ``c + c'`` periods at once give.

    * Without correlation, each demand node with a distribution has a stream of its own
      (:attr:`stream_nodes`): standard gammas (``gamma``), per-period Poisson or negative binomial
      draws at the period's mean (seasonal or trending Poisson and negative binomial), or uniforms
      mapped through the inverse distribution function (``normal``, through ``Phi^{-1}``;
      ``uniform_int``, ``discrete``, stationary Poisson and negative binomial, the last two
      tabulated until the tail is below ``TABLE_TAIL``).
    * With correlation (a Gaussian copula over all demand nodes), one stream for the group:
      ``D`` uniforms per period, period after period, made standard normals ``z_t`` by
      ``Phi^{-1}``, correlated as ``L z_t`` with ``L`` the Cholesky factor of the correlation
      matrix, and mapped through each node's inverse distribution function.

    Locations, scales and inverse distribution functions are then applied to all copies at once,
    element by element, so a value does not depend on the shape of the block it is computed in.
    Traces use no randomness (only their starting row, drawn at reset).
    """

    def __init__(self, specs: tuple[DemandSpec, ...], chol: np.ndarray | None) -> None:
        self.specs = specs
        self.chol = chol
        seasonal = [sp.seasonality is not None or bool(sp.trend) for sp in specs]
        #: Per demand node, how its stream is turned into demand (traces: "trace", no stream).
        self.method: list[str] = []
        for d, sp in enumerate(specs):
            if sp.dist in ("normal", "gamma", "trace"):
                self.method.append(sp.dist)
            elif sp.dist in ("poisson", "negative_binomial") and seasonal[d]:
                self.method.append("counted")
            else:
                self.method.append("inverse")
        #: Demand nodes with a stream of their own (none when the copula draws them together).
        self.stream_nodes: tuple[int, ...] = (
            () if chol is not None else tuple(d for d, m in enumerate(self.method) if m != "trace")
        )
        self.tables = {
            d: _cdf_table(specs[d])
            for d, m in enumerate(self.method)
            if m == "inverse" and specs[d].dist in ("poisson", "negative_binomial")
        }
        self.gamma_shape = {
            d: (specs[d].mean / specs[d].sd) ** 2 if specs[d].mean > 0 else 1.0
            for d, m in enumerate(self.method)
            if m == "gamma"
        }

    @property
    def n_streams(self) -> int:
        """Random streams per copy: one per node in :attr:`stream_nodes`, or one for the copula."""
        return 1 if self.chol is not None else len(self.stream_nodes)

    @property
    def words_per_period(self) -> tuple[int, ...]:
        """Per stream, the 64-bit words of the bit generator one period takes, or 0 where it varies.

        A uniform takes one word, so a stream of uniforms (inverse distribution functions,
        normals through ``ndtri``, the copula's ``D`` per period) can be wound back by a count;
        the gamma and Poisson samplers use a varying number of words per value.
        """
        if self.chol is not None:
            return (len(self.specs),)
        return tuple(0 if self.method[d] in ("gamma", "counted") else 1 for d in self.stream_nodes)

    def draw(self, streams: np.ndarray, periods: np.ndarray, offsets: np.ndarray, out: np.ndarray) -> None:
        """Fill ``out`` ``(rows, periods, nodes)``; ``streams[r, k]`` (an object array of
        :class:`numpy.random.Generator`) is copy ``r``'s ``k``-th stream.

        ``periods`` ``(rows, block)`` are the absolute periods, ``offsets`` ``(rows, nodes)`` the
        traces' starting rows. Each stream gives exactly ``block`` values (``block * nodes`` for the
        copula), in period order.
        """
        specs = self.specs
        n_rows, c = periods.shape
        if self.chol is not None:
            n_dem = len(specs)
            z = np.empty((n_rows, c, n_dem))
            for g, row in zip(streams[:, 0], z):
                g.random(out=row)
            z = _standard_normal(z)
            # L z_t written out as sums in a fixed order: a matrix product may group the sums
            # differently for different block shapes, and a seed must give the same bits.
            y = np.zeros_like(z)
            for i in range(n_dem):
                for j in range(i + 1):
                    y[:, :, i] += self.chol[i, j] * z[:, :, j]
            for d, sp in enumerate(specs):
                f = sp.mean_factor(periods)
                if sp.dist == "normal":  # no round trip through the uniform for normals
                    out[:, :, d] = np.maximum(sp.mean * f + sp.sd * f * y[:, :, d], 0.0)
                else:
                    out[:, :, d] = sp.ppf(stats.norm.cdf(y[:, :, d]), periods)
            return
        x = np.empty((n_rows, c))
        for k, d in enumerate(self.stream_nodes):
            sp, method = specs[d], self.method[d]
            if method == "counted":
                mean = sp.mean * sp.mean_factor(periods)
                if sp.dist == "poisson":
                    for r, g in enumerate(streams[:, k]):
                        out[r, :, d] = g.poisson(mean[r])
                else:
                    n, _ = sp.nb_params()
                    for r, g in enumerate(streams[:, k]):
                        out[r, :, d] = g.negative_binomial(n, n / (n + mean[r]))
                continue
            if method == "normal":
                for g, row in zip(streams[:, k], x):
                    g.random(out=row)
                f = sp.mean_factor(periods)
                out[:, :, d] = np.maximum(sp.mean * f + sp.sd * f * _standard_normal(x), 0.0)
            elif method == "gamma":
                for g, row in zip(streams[:, k], x):
                    g.standard_gamma(self.gamma_shape[d], out=row)
                scale = sp.sd**2 / sp.mean if sp.mean > 0 else 0.0
                out[:, :, d] = x * scale * sp.mean_factor(periods)
            else:
                for g, row in zip(streams[:, k], x):
                    g.random(out=row)
                if d in self.tables:
                    out[:, :, d] = np.searchsorted(self.tables[d], x, side="right")
                else:
                    out[:, :, d] = sp.ppf(x, periods)
        for d, method in enumerate(self.method):
            if method == "trace":
                trace = np.asarray(specs[d].trace)
                out[:, :, d] = trace[(offsets[:, d][:, None] + periods) % trace.size]
