"""Long-run evaluation of a policy: costs with confidence intervals and the service metrics.

:func:`evaluate` runs ``replications`` independent copies (rows ``seed, seed+1, ...``) for
``warmup + periods`` periods under a :class:`~meio.envs.policies.Policy` and reports, over the
post-warm-up periods, the quantities defined in ``docs/model.md`` ("Service metrics"). Two
policies evaluated with the same seed face the same demand, lead times and outages (common random
numbers).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats
from tqdm.auto import tqdm

from meio.envs.dynamics import C_PIPE, O_DEMAND, O_FILLED, O_SHORT
from meio.envs.policies import Policy
from meio.envs.run_settings import check_run_settings
from meio.envs.scenario import Scenario
from meio.envs.simulator import Simulator
from meio.envs.topology import COST_NAMES

#: Number of batches for batch-means confidence intervals from a single replication.
N_BATCHES = 20

#: The unstable-backlog rule (:func:`backlog_trend`): over the second half of the evaluation window,
#: a demand node's customer backorders are said to grow without bound when their fitted growth is
#: at least ``GROWTH_SHARE`` of the node's mean demand per period and significantly positive at
#: level ``GROWTH_ALPHA``, judged on ``TREND_BATCHES`` batch means of the half window per
#: replication. A half window shorter than ``MIN_TREND_PERIODS`` (batches under 10 periods, too
#: short to be nearly independent) is not assessed.
GROWTH_SHARE = 0.02
GROWTH_ALPHA = 1e-3
TREND_BATCHES = 10
MIN_TREND_PERIODS = 100

#: Unfilled units below this count as none: a period with ``short > SHORT_TOL`` at a demand node is
#: a stockout (cycle service level), float dust of proportional allocation is not.
SHORT_TOL = 1e-9


def fill_rate(filled: np.ndarray, demand: np.ndarray,
              axis: int | tuple[int, ...] | None = None) -> np.ndarray | float:
    """Fill rate (type-2 service, MODEL.md "Service metrics"): ``beta = sum filled / sum demand``.

    ``filled`` and ``demand`` are units filled from stock in the period they were demanded and
    units demanded (columns ``O_FILLED`` and ``O_DEMAND`` of the step's ``node_out``), summed over
    ``axis`` (all axes by default) before dividing: the ratio of totals, not a mean of per-period
    ratios, as the type-2 (beta) service is defined. Where nothing was demanded nothing was filled and the
    rate is 0. Returns a float when everything is summed, else an array.
    """
    num = np.sum(filled, axis=axis)
    den = np.sum(demand, axis=axis)
    rate = num / np.maximum(den, 1e-300)
    return float(rate) if np.ndim(rate) == 0 else rate


def mean_ci95(samples: np.ndarray) -> tuple[float, float]:
    """Mean and half-width of the 95% Student-t confidence interval of i.i.d. ``samples``."""
    x = np.asarray(samples, dtype=float)
    if x.size < 2:
        raise ValueError(f"a confidence interval needs at least 2 samples, got {x.size}")
    half = stats.t.ppf(0.975, x.size - 1) * x.std(ddof=1) / math.sqrt(x.size)
    return float(x.mean()), float(half)


def backlog_trend(batch_backlog: np.ndarray, batch_len: int, mean_demand: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Growth per period of each demand node's customer backlog, and whether it grows without bound.

    ``batch_backlog`` ``(R, K, D)``: per replication, the means of the end-of-period backorders
    ``B_t`` over ``K`` consecutive batches of ``batch_len`` periods (the second half of the
    window); ``mean_demand`` ``(D,)``: ``mu_d``. Per replication a least-squares line through the
    ``K`` batch means gives a slope; the growth ``g`` is their mean over replications, per period.
    Node ``d`` is flagged when ``g >= GROWTH_SHARE * mu_d`` and ``g`` is significantly positive:
    one-sided Student-t test of the slope at level ``GROWTH_ALPHA`` with the residual variance
    pooled over replications (``R (K - 2)`` degrees of freedom). Batch means of long batches are
    nearly independent (the batch-means argument, Law, Simulation Modeling and Analysis, 5th ed.,
    sec. 9.5.3), and pooling keeps the test strong with few replications.

    Under a stable policy ``B_t`` is stationary after the warm-up and the slope is 0 on average, so
    the test alone raises a false alarm with probability about ``GROWTH_ALPHA`` (a little more when
    the backlog is strongly autocorrelated), and the size rule removes the rest: a stationary
    backlog's fitted slope shrinks like ``periods^(-3/2)``. Under a policy that supplies less than
    the demand, ``B_t`` grows by the shortfall every period. Returns ``(g, flagged)``, both ``(D,)``.
    """
    r, k, _ = batch_backlog.shape
    x = np.arange(k) - (k - 1) / 2.0
    sxx = float(x @ x)
    slope = np.einsum("k,rkd->rd", x, batch_backlog) / sxx            # per batch, per replication
    resid = batch_backlog - batch_backlog.mean(axis=1, keepdims=True) - x[None, :, None] * slope[:, None, :]
    df = r * (k - 2)
    spread = np.sqrt((resid * resid).sum(axis=(0, 1)) / df / (r * sxx))
    estimate = slope.mean(axis=0)
    # A spread of 0 (every batch on the line, as with constant demand) makes any rise significant.
    t_stat = np.where(spread > 0, estimate / np.where(spread > 0, spread, 1.0), np.where(estimate > 0, np.inf, 0.0))
    growth = estimate / batch_len
    flagged = (growth > 0) & (growth >= GROWTH_SHARE * mean_demand) & (stats.t.sf(t_stat, df) < GROWTH_ALPHA)
    return growth, flagged


def batch_means(series: np.ndarray, n_batches: int = N_BATCHES) -> np.ndarray:
    """Means of ``n_batches`` consecutive, equal batches of ``series`` (the remainder is dropped)."""
    size = series.size // n_batches
    if size < 1:
        raise ValueError(f"{series.size} periods cannot make {n_batches} batches; run more periods")
    return series[: size * n_batches].reshape(n_batches, size).mean(axis=1)


@dataclass
class Evaluation:
    """KPIs of one policy on one scenario (see ``to_dict`` for the reported fields)."""

    scenario: str
    policy: str
    periods: int
    warmup: int
    replications: int
    seed: int
    ci_method: str
    cost_mean: float
    cost_ci95: float
    cost_ex_pipeline_mean: float
    cost_ex_pipeline_ci95: float
    cost_split: dict[str, float]
    fill_rate: dict[str, float]
    cycle_service_level: dict[str, float]
    backorders: dict[str, float]
    lost_sales: dict[str, float]
    mean_on_hand: dict[str, float]
    inventory_turnover: dict[str, float]
    order_variance_ratio: dict[str, float]
    unmet_demand: str
    allocation: str
    per_period_cost: np.ndarray = field(repr=False)   # (replications, periods) total cost
    #: Per demand node, the growth of its customer backorders in units per period over the second
    #: half of the window (:func:`backlog_trend`); empty with lost sales or a window too short to tell.
    backlog_growth: dict[str, float] = field(default_factory=dict)
    #: Demand nodes whose backlog grows without bound: the average cost then grows with the window
    #: and is no long-run cost.
    unstable_nodes: tuple[str, ...] = ()

    @property
    def stockout_frequency(self) -> dict[str, float]:
        return {k: 1.0 - v for k, v in self.cycle_service_level.items()}

    @property
    def unstable(self) -> bool:
        """Whether a customer backlog grows without bound over the window (see ``unstable_nodes``)."""
        return bool(self.unstable_nodes)

    def instability(self) -> str:
        """``"backlog at retailer grows by 1.0000 units/period"`` for the unstable nodes ("" if none)."""
        return "; ".join(f"backlog at {n} grows by {self.backlog_growth[n]:.4f} units/period"
                         for n in self.unstable_nodes)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "scenario": self.scenario,
            "policy": self.policy,
            "unmet_demand": self.unmet_demand,
            "allocation": self.allocation,
            "periods": self.periods,
            "warmup": self.warmup,
            "replications": self.replications,
            "seed": self.seed,
            "unstable": self.unstable,
            "unstable_nodes": list(self.unstable_nodes),
            "backlog_growth_per_period": self.backlog_growth,
            "cost_per_period": {"mean": self.cost_mean, "ci95": self.cost_ci95, "ci_method": self.ci_method},
            "cost_per_period_excluding_pipeline": {"mean": self.cost_ex_pipeline_mean,
                                                   "ci95": self.cost_ex_pipeline_ci95},
            "cost_split": self.cost_split,
            "fill_rate": self.fill_rate,
            "cycle_service_level": self.cycle_service_level,
            "stockout_frequency": self.stockout_frequency,
            "mean_on_hand": self.mean_on_hand,
            "inventory_turnover": self.inventory_turnover,
            "order_variance_ratio": self.order_variance_ratio,
        }
        out["backorders" if self.unmet_demand == "backorder" else "lost_sales"] = (
            self.backorders if self.unmet_demand == "backorder" else self.lost_sales
        )
        return out

    def format(self) -> str:
        """A plain-text report."""
        d = self.to_dict()
        lines = [
            f"scenario {self.scenario}  policy {self.policy}  ({self.unmet_demand}, allocation {self.allocation})",
            f"{self.replications} replication(s) x {self.periods} periods after {self.warmup} warm-up, seed {self.seed}",
            (f"cost per period: {self.cost_mean:.4f} +- {self.cost_ci95:.4f} (95% CI, {self.ci_method})"
             if not self.unstable else
             f"UNSTABLE: cost not meaningful: {self.instability()} over the second half of the window; the "
             f"window's average cost {self.cost_mean:.4f} grows with the window length"),
            "cost split: " + ", ".join(f"{k} {v:.4f}" for k, v in self.cost_split.items()),
        ]
        if self.cost_split["pipeline"]:
            lines.append(f"cost excluding pipeline: {self.cost_ex_pipeline_mean:.4f} +- {self.cost_ex_pipeline_ci95:.4f}")
        service = ("backorders" if self.unmet_demand == "backorder" else "lost_sales")
        header = f"{'node':>14} {'fill rate':>10} {'cycle SL':>9} {service:>11}"
        lines.append(header)
        for node in self.fill_rate:
            lines.append(f"{node:>14} {self.fill_rate[node]:10.4f} {self.cycle_service_level[node]:9.4f} "
                         f"{d[service][node]:11.4f}")
        lines.append(f"{'node':>14} {'on hand':>10} {'turnover':>9} {'order var ratio':>16}")
        for node in self.mean_on_hand:
            lines.append(f"{node:>14} {self.mean_on_hand[node]:10.4f} {self.inventory_turnover[node]:9.4f} "
                         f"{self.order_variance_ratio[node]:16.4f}")
        return "\n".join(lines)


def check_evaluation(periods: int, warmup: int, replications: int, seed: int) -> None:
    """The rules of :func:`evaluate`'s settings (:mod:`meio.envs.run_settings`, and enough periods for
    batch means with one replication); entry points that evaluate after other work check first."""
    check_run_settings(periods=periods, warmup=warmup, replications=replications, seed=seed)
    if replications == 1 and periods < N_BATCHES:
        raise ValueError(f"periods: {periods} is too few for {N_BATCHES} batch means; run at least {N_BATCHES}")


def evaluate(scenario: str | Path | Scenario | Simulator, policy: Policy, periods: int = 10_000,
             warmup: int = 100, replications: int = 1, seed: int = 0, progress: bool = False) -> Evaluation:
    """Run ``policy`` and measure it (the simulator is built here unless one is passed)."""
    check_evaluation(periods, warmup, replications, seed)
    sim = scenario if isinstance(scenario, Simulator) else Simulator(scenario, n=replications)
    if sim.n != replications:
        raise ValueError(f"replications: {replications} but the simulator has {sim.n} rows")
    sim.reset(seeds=seed)
    topo = sim.topology
    r, n_nodes, n_dem = replications, topo.n_nodes, topo.n_demand
    in_units = 1.0 / topo.lane_bom[topo.slot_lane]           # slot units -> the ordering node's units
    order_map = np.zeros((topo.n_slots, n_nodes))
    order_map[np.arange(topo.n_slots), topo.slot_dst] = in_units
    seen_map = np.zeros((topo.n_slots, n_nodes))              # orders a node receives, in its units
    internal = topo.slot_src >= 0
    seen_map[np.flatnonzero(internal), topo.slot_src[internal]] = 1.0

    per_period = np.zeros((r, periods))
    per_period_pipe = np.zeros((r, periods))
    cost_sum = np.zeros(len(COST_NAMES))
    demand_sum = np.zeros((r, n_dem))
    filled_sum = np.zeros((r, n_dem))
    short_sum = np.zeros((r, n_dem))
    stockout_periods = np.zeros((r, n_dem))
    stockout_any = 0.0
    bo_sum = np.zeros((r, n_dem))
    on_hand_sum = np.zeros((r, n_nodes))
    out_sum = np.zeros((r, n_nodes))
    o_sum = np.zeros((r, n_nodes))
    o_sq = np.zeros((r, n_nodes))
    s_sum = np.zeros((r, n_nodes))
    s_sq = np.zeros((r, n_nodes))
    dn = topo.demand_nodes
    # Trend of the customer backlog over the second half of the window (backlog_trend): batch sums
    # of B_k accumulate as the periods pass, so nothing per period is kept.
    half_start = periods // 2
    n_half = periods - half_start
    assess = topo.backorders and n_half >= MIN_TREND_PERIODS
    batch_len = n_half // TREND_BATCHES
    trend_batches = np.zeros((r, TREND_BATCHES, n_dem))
    for t in tqdm(range(warmup + periods), desc=f"simulate {topo.scenario.name}", disable=not progress,
                  unit="period", mininterval=0.5):
        bo_before = sim.cust_bo[:, dn].copy()
        res = sim.step(policy.act(sim))
        if t < warmup:
            continue
        k = t - warmup
        per_period[:, k] = res.costs.sum(axis=1)
        per_period_pipe[:, k] = res.costs[:, C_PIPE]
        cost_sum += res.costs.sum(axis=0)
        out = res.node_out
        demand_sum += out[:, :, O_DEMAND]
        filled_sum += out[:, :, O_FILLED]
        short_sum += out[:, :, O_SHORT]
        stockout_periods += out[:, :, O_SHORT] > SHORT_TOL
        stockout_any += float((out[:, :, O_SHORT] > SHORT_TOL).any(axis=1).sum())
        bo_after = sim.cust_bo[:, dn]
        bo_sum += bo_after
        if assess and half_start <= k < half_start + batch_len * TREND_BATCHES:
            trend_batches[:, (k - half_start) // batch_len] += bo_after
        served_backorders = bo_before + out[:, :, O_SHORT] - bo_after if topo.backorders else 0.0
        on_hand_sum += sim.on_hand
        leaving = res.shipped @ seen_map
        leaving[:, dn] += out[:, :, O_FILLED] + served_backorders
        out_sum += leaving
        placed = res.orders @ order_map
        seen = res.orders @ seen_map
        seen[:, dn] += out[:, :, O_DEMAND]
        o_sum += placed
        o_sq += placed * placed
        s_sum += seen
        s_sq += seen * seen

    total = per_period.mean(axis=1) if r > 1 else batch_means(per_period[0])
    ex_pipe = (per_period - per_period_pipe).mean(axis=1) if r > 1 else batch_means(per_period[0] - per_period_pipe[0])
    cost_mean, cost_ci = mean_ci95(total)
    ex_mean, ex_ci = mean_ci95(ex_pipe)
    names = topo.node_names
    dnames = [names[j] for j in dn]
    n_obs = r * periods

    fill = {name: float(f) for name, f in zip(dnames, fill_rate(filled_sum, demand_sum, axis=0))}
    fill["network"] = fill_rate(filled_sum, demand_sum)
    csl = {nm: 1.0 - float(stockout_periods[:, d].sum() / n_obs) for d, nm in enumerate(dnames)}
    csl["network"] = 1.0 - stockout_any / n_obs
    var_o = o_sq / periods - (o_sum / periods) ** 2
    var_s = s_sq / periods - (s_sum / periods) ** 2
    ratio = np.where(var_s > 1e-12, var_o / np.where(var_s > 1e-12, var_s, 1.0), np.nan).mean(axis=0)
    mean_on_hand = on_hand_sum.sum(axis=0) / n_obs
    growth: dict[str, float] = {}
    unstable: tuple[str, ...] = ()
    if assess:
        g, flagged = backlog_trend(trend_batches / batch_len, batch_len, demand_sum.sum(axis=0) / n_obs)
        growth = {nm: float(g[d]) for d, nm in enumerate(dnames)}
        unstable = tuple(nm for d, nm in enumerate(dnames) if flagged[d])
    turnover = np.where(mean_on_hand > 0, out_sum.sum(axis=0) / n_obs / np.where(mean_on_hand > 0, mean_on_hand, 1), np.nan)
    return Evaluation(
        scenario=topo.scenario.name, policy=getattr(policy, "name", type(policy).__name__), periods=periods,
        warmup=warmup, replications=r, seed=seed,
        ci_method="replications" if r > 1 else f"batch_means({N_BATCHES})",
        cost_mean=cost_mean, cost_ci95=cost_ci, cost_ex_pipeline_mean=ex_mean, cost_ex_pipeline_ci95=ex_ci,
        cost_split={k: float(v / n_obs) for k, v in zip(COST_NAMES, cost_sum)},
        fill_rate=fill, cycle_service_level=csl,
        backorders={**{nm: float(bo_sum[:, d].sum() / n_obs) for d, nm in enumerate(dnames)},
                    "network": float(bo_sum.sum() / n_obs)},
        lost_sales={**{nm: float(short_sum[:, d].sum() / n_obs) for d, nm in enumerate(dnames)},
                    "network": float(short_sum.sum() / n_obs)},
        mean_on_hand={nm: float(mean_on_hand[j]) for j, nm in enumerate(names)},
        inventory_turnover={nm: float(turnover[j]) for j, nm in enumerate(names)},
        order_variance_ratio={nm: float(ratio[j]) for j, nm in enumerate(names)},
        unmet_demand=topo.scenario.unmet_demand, allocation=topo.scenario.allocation,
        per_period_cost=per_period, backlog_growth=growth, unstable_nodes=unstable,
    )
