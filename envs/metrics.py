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
from typing import TYPE_CHECKING, Any

import numpy as np
from scipy import stats
from tqdm.auto import tqdm

from meio.envs.dynamics import C_HOLD, C_PIPE, O_DEMAND, O_FILLED, O_SHORT
from meio.envs.policies import Policy
from meio.envs.run_settings import check_run_settings
from meio.envs.scenario import Scenario
from meio.envs.simulator import Simulator
from meio.envs.topology import COST_NAMES, Topology

if TYPE_CHECKING:
    import pandas as pd

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

#: Columns of :meth:`Evaluation.service_table` (after the index ``node``); the segment table has
#: the same but ``segment``, and a ``nodes`` column first.
SERVICE_COLUMNS: tuple[str, ...] = (
    "segment",
    "demand",
    "fill_rate",
    "fill_rate_ci95",
    "cycle_service_level",
    "stockout_frequency",
    "target",
    "target_met",
)

#: Unfilled units below this count as none: a period with ``short > SHORT_TOL`` at a demand node is
#: a stockout (cycle service level), float dust of proportional allocation is not.
SHORT_TOL = 1e-9


def fill_rate(filled: np.ndarray, demand: np.ndarray, axis: int | tuple[int, ...] | None = None) -> np.ndarray | float:
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


def ratio_ci95(num: np.ndarray, den: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Ratio of totals ``R = sum_i x_i / sum_i y_i`` and the half-width of its 95% confidence interval.

    ``num`` and ``den`` ``(K, ...)``: per sample ``i`` (a replication, or a batch of periods) the
    totals ``x_i`` (units filled) and ``y_i`` (units demanded). The interval is the ratio
    estimator's (Cochran, Sampling Techniques, 3rd ed., sec. 6.3-6.4; Law, Simulation Modeling and
    Analysis, 5th ed., sec. 9.5): ``t_{0.975, K-1} * s_e / (sqrt(K) * ybar)`` with ``s_e`` the
    standard deviation of the residuals ``e_i = x_i - R y_i``. It is centred on the ratio of totals
    (the fill rate as defined), not on the mean of the per-sample ratios, which weights a sample of
    little demand as much as one of much. Where nothing was demanded both are 0.
    """
    x = np.asarray(num, dtype=float)
    y = np.asarray(den, dtype=float)
    k = x.shape[0]
    if k < 2:
        raise ValueError(f"a confidence interval needs at least 2 samples, got {k}")
    ratio = x.sum(axis=0) / np.maximum(y.sum(axis=0), 1e-300)
    resid = x - ratio * y
    ybar = y.mean(axis=0)
    half = stats.t.ppf(0.975, k - 1) * resid.std(axis=0, ddof=1) / (math.sqrt(k) * np.maximum(ybar, 1e-300))
    return ratio, np.where(ybar > 0, half, 0.0)


def meets_target(fill: float, target: float | None) -> bool | None:
    """The project's one rule for "a fill-rate target is met" (docs/model.md, "Service by segment"):
    the fill rate measured on the evaluation's seeds is at least the target, ``beta >= beta*``; the
    confidence interval is reported beside it, not folded in. ``None`` where there is no target.
    It is the rule the ``service_target`` search optimises (a shortfall ``max(0, beta* - beta)``)."""
    return None if target is None else bool(fill >= target)


def transit_value(topo: Topology) -> np.ndarray:
    """Value per unit in transit on each slot, ``(S,)``: ``h_v / b_s``, the holding rate of the node
    ``v`` that receives it over the lane's bill-of-materials ratio ``b_s`` (units of the shipped item
    per unit of ``v``'s). A unit in transit is stock the network has paid for and will hold at ``v``
    on arrival; its investment is ``sum_s h_v P_s / b_s`` with ``P_s`` the units in the slot's
    pipeline at the end of the period (docs/model.md, "Service by segment"). This is not the
    simulator's pipeline cost, which charges the scenario's own ``pipeline_holding_cost`` (0 unless
    given) on the same units."""
    return topo.holding[topo.slot_dst] / topo.lane_bom[topo.slot_lane]


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
    slope = np.einsum("k,rkd->rd", x, batch_backlog) / sxx  # per batch, per replication
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


#: The drift rule (:func:`drifting_replications`): a replication drifts when its average cost over
#: the window exceeds the median of the other replications' by more than ``DRIFT_TOL`` of that
#: median plus ``DRIFT_Z`` standard errors of the difference (from ``N_BATCHES`` batch means).
DRIFT_TOL = 0.02
DRIFT_Z = 4.0


def replication_spread(costs: np.ndarray) -> float:
    """Spread of the replications' average costs ``c_r``: ``max_r c_r / median_r c_r - 1``.

    A policy whose every replication settles on the same long-run cost has a spread that shrinks to
    0 as the window grows; one that wanders, in some replications, into states it never leaves
    keeps a positive spread however long the window. 0 with one replication; ``inf`` when the
    median is 0 and some replication costs more.
    """
    c = np.asarray(costs, dtype=float)
    if c.size < 2:
        return 0.0
    med, top = float(np.median(c)), float(c.max())
    if med <= 0.0:
        return 0.0 if top <= med else math.inf
    return top / med - 1.0


def drifting_replications(per_period: np.ndarray, tol: float = DRIFT_TOL, z: float = DRIFT_Z) -> tuple[int, ...]:
    """Rows of ``per_period`` ``(R, T)`` (cost per period of each replication) whose running cost
    has left the others' band by the window's end.

    Row ``r``'s running cost at the end is its average ``c_r``; the others' band is centred on the
    median ``m_{-r}`` of the other rows' averages, with half-width
    ``h_r = tol |m_{-r}| + z sqrt(2 v / K)``, where ``v`` is the median over the other rows of the
    variance of their ``K`` batch means (``K = min(N_BATCHES, T)``): ``sqrt(2 v / K)`` is the
    standard error of the difference of two replications' averages by the batch-means method (Law,
    Simulation Modeling and Analysis, 5th ed., sec. 9.5.3). The noise is taken from the others, not
    from row ``r``: a replication that jumps to a costlier regime inflates its own batch variance.
    Row ``r`` drifts when ``c_r > m_{-r} + h_r``. Replications of a stable policy share one
    long-run cost, so ``c_r - m_{-r}`` shrinks with ``T`` and the rule stays silent; one row that
    settled in a costlier regime is flagged once the window is long enough to tell.
    """
    x = np.asarray(per_period, dtype=float)
    r, t = x.shape
    if r < 2 or t < 2:
        return ()
    k = min(N_BATCHES, t)
    size = t // k
    batches = x[:, : size * k].reshape(r, k, size).mean(axis=2)
    var = batches.var(axis=1, ddof=1)
    costs = x.mean(axis=1)
    flagged = []
    for row in range(r):
        others = np.delete(np.arange(r), row)
        centre = float(np.median(costs[others]))
        half = tol * abs(centre) + z * math.sqrt(2.0 * float(np.median(var[others])) / k)
        if costs[row] > centre + half:
            flagged.append(row)
    return tuple(flagged)


#: The trend rule (:func:`replication_trends`): a replication trends when the mean of its last quarter
#: of the window exceeds the mean of its first quarter by more than ``TREND_TOL`` of the first
#: quarter's plus ``TREND_Z`` standard errors of the difference, from ``TREND_BATCHES`` batch means
#: of the replication (five per quarter). A window under ``TREND_MIN_PERIODS`` periods (batches under
#: 10 periods) is not assessed. Calibrated in docs/agents.md ("Drift and long runs").
TREND_TOL = 0.05
TREND_Z = 4.0
TREND_BATCHES = 20
TREND_MIN_PERIODS = 200

#: The stability criterion (:func:`outlying_replications`): no replication more than ``PAIRED_TOL``
#: above the median both in cost and in cost ratio to the reference on the same random numbers.
PAIRED_TOL = 0.02


def replication_trends(
    per_period: np.ndarray, tol: float = TREND_TOL, z: float = TREND_Z
) -> tuple[np.ndarray, tuple[int, ...]]:
    """Rise of each replication's cost from the first to the last quarter of the window, and the rows
    that trend upward.

    ``per_period`` ``(R, T)``: the cost per period of each replication after the warm-up. Per row,
    ``K = TREND_BATCHES`` batch means ``Y_1..Y_K`` of ``T // K`` periods; with ``q = K / 4``, the
    early level ``E = mean(Y_1..Y_q)``, the late level ``L = mean(Y_{K-q+1}..Y_K)`` and the rise
    ``d = L - E``. Its standard error ``se = sqrt(2 v / q)`` takes ``v``, the variance of one batch
    mean, pooled within the four quarters (each quarter's batches about their own mean, ``4 (q - 1)``
    degrees of freedom), so a level that moves between quarters does not hide itself by inflating
    ``v``. Batch means of long batches are nearly independent (the batch-means argument, Law,
    Simulation Modeling and Analysis, 5th ed., sec. 9.5.3). Row ``r`` trends when
    ``d_r > tol |E_r| + z se_r``: a stationary cost has ``d`` of mean 0 and sd ``se``, however
    strongly autocorrelated from period to period, so only a rise beyond ``tol`` and the noise is
    flagged; a replication that runs away during the window, or keeps climbing, is. This compares a
    replication with itself: an evaluation whose every replication runs away is caught too, which
    the across-replication band (:func:`drifting_replications`) cannot do.

    Returns ``(rise, rows)``: ``rise`` ``(R,)`` is ``d_r / |E_r|`` (NaN where ``E_r = 0``), ``rows``
    the flagged rows; both empty / all-NaN where ``T < TREND_MIN_PERIODS``.
    """
    x = np.asarray(per_period, dtype=float)
    r, t = x.shape
    if t < TREND_MIN_PERIODS:
        return np.full(r, np.nan), ()
    early, late, se = quarter_levels(x)
    rise = late - early
    flagged = rise > tol * np.abs(early) + z * se
    rel = np.where(early != 0, rise / np.where(early != 0, np.abs(early), 1.0), np.nan)
    return rel, tuple(int(i) for i in np.flatnonzero(flagged))


def quarter_levels(per_period: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per row of ``per_period`` ``(R, T)``, ``T >= TREND_BATCHES``: the early level ``E``, the late
    level ``L`` and the standard error ``se`` of ``L - E`` that :func:`replication_trends` uses, each ``(R,)``."""
    x = np.asarray(per_period, dtype=float)
    r, t = x.shape
    k = TREND_BATCHES
    q = k // 4
    size = t // k
    if size < 1:
        raise ValueError(f"{t} periods cannot make {k} batches; run more periods")
    quarters = x[:, : size * k].reshape(r, 4, q, size).mean(axis=3)
    v = ((quarters - quarters.mean(axis=2, keepdims=True)) ** 2).sum(axis=(1, 2)) / (4 * (q - 1))
    return quarters[:, 0].mean(axis=1), quarters[:, 3].mean(axis=1), np.sqrt(2.0 * v / q)


def late_costs(per_period: np.ndarray) -> np.ndarray:
    """Mean cost of each replication over the last quarter of its ``TREND_BATCHES`` batches ``(R,)``:
    where a trending replication is heading (the level :func:`replication_trends` compares)."""
    x = np.asarray(per_period, dtype=float)
    size = x.shape[1] // TREND_BATCHES
    if size < 1:
        return x.mean(axis=1)
    used = size * TREND_BATCHES
    return x[:, used - size * (TREND_BATCHES // 4) : used].mean(axis=1)


def paired_spread(costs: np.ndarray, reference: np.ndarray) -> tuple[float, np.ndarray]:
    """Spread of the paired ratios: ``max_r rho_r / median_r rho_r - 1`` with ``rho_r = c_r / b_r``.

    ``costs`` and ``reference`` ``(R,)``: per replication, the average cost of the policy and of a
    reference policy (the best classical one) run on the same random numbers (same seed). The
    common demand cancels from the ratio: a stretch of high demand raises both, so a stable policy's
    ratios agree much more closely than its costs do, and the reference's own ratio is 1 in every
    replication. A policy that runs away in some replications keeps a high ratio in those however
    long the window. Returns ``(spread, ratios)``; raises ``ValueError`` when the shapes differ or a
    reference cost is not positive.
    """
    c = np.asarray(costs, dtype=float)
    b = np.asarray(reference, dtype=float)
    if c.shape != b.shape or c.ndim != 1:
        raise ValueError(f"reference: {b.shape} replication costs for {c.shape}; pair the same replications")
    if not (b > 0).all():
        raise ValueError(f"reference: replication costs {b.tolist()} must all be > 0 to form ratios")
    ratios = c / b
    return replication_spread(ratios), ratios


def outlying_replications(costs: np.ndarray, reference: np.ndarray, tol: float = PAIRED_TOL) -> tuple[int, ...]:
    """Replications more than ``tol`` above the median both in cost and in paired ratio:
    ``c_r > (1 + tol) median(c)`` and ``rho_r > (1 + tol) median(rho)``, ``rho_r = c_r / b_r``
    (:func:`paired_spread`).

    A replication that ran away is high on both. Chance is high on one only: a stretch of costly
    demand lifts ``c_r`` and ``b_r`` together, so a policy whose cost follows the reference's (one
    near the optimum) has a high ``c_r`` with an ordinary ratio; a policy whose cost does not follow
    it (one holding far more stock, its cost mostly holding) has a high ratio where the reference
    was lucky, with an ordinary ``c_r``.
    """
    c = np.asarray(costs, dtype=float)
    _, ratios = paired_spread(c, reference)
    if c.size < 2:
        return ()
    high = (c > (1.0 + tol) * np.median(c)) & (ratios > (1.0 + tol) * np.median(ratios))
    return tuple(int(i) for i in np.flatnonzero(high))


def long_run_problems(ev: Evaluation, reference: Evaluation | None = None, tol: float = PAIRED_TOL) -> list[str]:
    """The stability criterion of a long evaluation (docs/agents.md, "Drift and long runs"): what it
    breaks, ``[]`` when it holds.

    A policy is stable over the window when (1) no replication trends upward
    (:func:`replication_trends`), (2) none left the others' band (:func:`drifting_replications`) and
    (3) with a ``reference`` (the best classical policy on the same seeds), no replication is more
    than ``tol`` above the median both in cost and in paired ratio ``c_r / b_r``
    (:func:`outlying_replications`). Neither spread alone is a criterion: on a long pipeline the
    optimum's own replications spread by more than 2% in cost over 100,000 periods, and a stable
    policy far from the optimum spreads by more than 2% in ratio where the reference's cost moves
    and its own does not.
    """
    problems = []
    if ev.trending:
        problems.append("trending seed(s) " + ",".join(str(ev.seed + r) for r in ev.trending))
    if ev.drifting:
        problems.append("drifting seed(s) " + ",".join(str(ev.seed + r) for r in ev.drifting))
    if reference is not None and ev.replications > 1:
        ev.paired_spread(reference)  # the same seeds and window, or ValueError
        out = outlying_replications(ev.replication_costs, reference.replication_costs, tol)
        if out:
            problems.append(
                f"seed(s) {','.join(str(ev.seed + r) for r in out)} over {100 * tol:.0f}% above the median in cost "
                "and in ratio to the reference"
            )
    return problems


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
    per_period_cost: np.ndarray = field(repr=False)  # (replications, periods) total cost
    #: Per demand node, the growth of its customer backorders in units per period over the second
    #: half of the window (:func:`backlog_trend`); empty with lost sales or a window too short to tell.
    backlog_growth: dict[str, float] = field(default_factory=dict)
    #: Demand nodes whose backlog grows without bound: the average cost then grows with the window
    #: and is no long-run cost.
    unstable_nodes: tuple[str, ...] = ()
    #: Half-width of the 95% CI of each demand node's fill rate and of the network's (:func:`ratio_ci95`
    #: over the replications, or over the batches of one replication).
    fill_rate_ci95: dict[str, float] = field(default_factory=dict)
    #: Mean customer demand per period, per demand node.
    mean_demand: dict[str, float] = field(default_factory=dict)
    #: Segment of each demand node (the node's own id where the scenario gives none).
    segments: dict[str, str] = field(default_factory=dict)
    #: Fill-rate target of each demand node (``None`` where the scenario gives none).
    service_targets: dict[str, float | None] = field(default_factory=dict)
    #: Per sample (replication, or batch of one replication) and demand node: units filled from stock
    #: and units demanded, ``(K, D)`` each, for the confidence intervals of aggregated fill rates.
    filled_samples: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)), repr=False)
    demand_samples: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)), repr=False)
    #: Inventory investment per period, network total, ``(mean, ci95)``: stock on hand (and component
    #: stock) times its holding rate, and stock in transit valued at the receiving node's holding rate
    #: (:func:`transit_value`; docs/model.md, "Service by segment").
    investment_on_hand: tuple[float, float] = (0.0, 0.0)
    investment_in_transit: tuple[float, float] = (0.0, 0.0)

    @property
    def stockout_frequency(self) -> dict[str, float]:
        return {k: 1.0 - v for k, v in self.cycle_service_level.items()}

    @property
    def penalty_cost(self) -> float:
        """Mean penalty per period: backorder plus lost-sales cost (the price of the service missed)."""
        return self.cost_split["backorder"] + self.cost_split["lost_sales"]

    def service_table(self) -> pd.DataFrame:
        """Service per demand node (index ``node``, in the scenario's order), docs/model.md "Service by segment".

        Columns: ``segment``; ``demand`` (mean units per period); ``fill_rate`` and ``fill_rate_ci95``;
        ``cycle_service_level``; ``stockout_frequency``; ``target`` (the node's ``service_target``,
        NaN without one); ``target_met`` (:func:`meets_target`: True / False, None without a target).
        """
        import pandas as pd

        nodes = list(self.mean_demand)
        rows = [
            {
                "node": nm,
                "segment": self.segments.get(nm, nm),
                "demand": self.mean_demand[nm],
                "fill_rate": self.fill_rate[nm],
                "fill_rate_ci95": self.fill_rate_ci95.get(nm, math.nan),
                "cycle_service_level": self.cycle_service_level[nm],
                "stockout_frequency": 1.0 - self.cycle_service_level[nm],
                "target": self.service_targets.get(nm),
                "target_met": meets_target(self.fill_rate[nm], self.service_targets.get(nm)),
            }
            for nm in nodes
        ]
        table = pd.DataFrame(rows, columns=["node", *SERVICE_COLUMNS]).set_index("node")
        table["target"] = table["target"].astype(float)
        table["target_met"] = table["target_met"].astype(object)
        return table

    def segment_table(self) -> pd.DataFrame:
        """Service per segment (index ``segment``, in order of first appearance), demand-weighted.

        With ``w_d`` node ``d``'s share of its segment's demand: ``demand`` is the segment's total;
        ``fill_rate`` the ratio of its filled to its demanded units (``sum_d w_d beta_d``), its CI the
        ratio estimator's over the same samples as the nodes' (:func:`ratio_ci95`);
        ``cycle_service_level`` is ``sum_d w_d CSL_d`` (the chance that a unit of demand arrives in a
        period without shortage at its node) and ``stockout_frequency`` its complement; ``target`` is
        ``sum_d w_d beta*_d`` where every node of the segment has a target (else NaN), met by the
        rule of :func:`meets_target` on the segment's fill rate; ``nodes`` lists the members.
        """
        import pandas as pd

        nodes = list(self.mean_demand)
        groups: dict[str, list[int]] = {}
        for d, nm in enumerate(nodes):
            groups.setdefault(self.segments.get(nm, nm), []).append(d)
        have_samples = self.filled_samples.shape[0] >= 2 and self.filled_samples.shape[1] == len(nodes)
        rows = []
        for seg, members in groups.items():
            names = [nodes[d] for d in members]
            mu = np.array([self.mean_demand[nm] for nm in names])
            w = mu / mu.sum() if mu.sum() > 0 else np.full(len(names), 1.0 / len(names))
            # sum_d w_d beta_d is the segment's filled over demanded units of the whole window (as the
            # nodes' rates are); the samples (batches drop a remainder of periods) give only its CI.
            fill = float(w @ np.array([self.fill_rate[nm] for nm in names]))
            half = (
                float(
                    ratio_ci95(
                        self.filled_samples[:, members].sum(axis=1), self.demand_samples[:, members].sum(axis=1)
                    )[1]
                )
                if have_samples
                else math.nan
            )
            csl = float(w @ np.array([self.cycle_service_level[nm] for nm in names]))
            goals = [self.service_targets.get(nm) for nm in names]
            target = float(w @ np.array(goals, dtype=float)) if all(g is not None for g in goals) else None
            rows.append(
                {
                    "segment": seg,
                    "nodes": ",".join(names),
                    "demand": float(mu.sum()),
                    "fill_rate": fill,
                    "fill_rate_ci95": half,
                    "cycle_service_level": csl,
                    "stockout_frequency": 1.0 - csl,
                    "target": target,
                    "target_met": meets_target(fill, target),
                }
            )
        table = pd.DataFrame(rows, columns=["segment", "nodes", *SERVICE_COLUMNS[1:]]).set_index("segment")
        table["target"] = table["target"].astype(float)
        table["target_met"] = table["target_met"].astype(object)
        return table

    @property
    def unstable(self) -> bool:
        """Whether a customer backlog grows without bound over the window (see ``unstable_nodes``)."""
        return bool(self.unstable_nodes)

    @property
    def replication_costs(self) -> np.ndarray:
        """Average cost per period of each replication ``c_r`` ``(replications,)``."""
        return self.per_period_cost.mean(axis=1)

    @property
    def spread(self) -> float:
        """``max_r c_r / median_r c_r - 1`` (:func:`replication_spread`)."""
        return replication_spread(self.replication_costs)

    @property
    def drifting(self) -> tuple[int, ...]:
        """Replications (rows; seed ``seed + row``) whose running cost left the others' band
        (:func:`drifting_replications`)."""
        return drifting_replications(self.per_period_cost)

    @property
    def trends(self) -> np.ndarray:
        """Per replication, the rise of its cost from the first to the last quarter of the window
        relative to the first (:func:`replication_trends`; NaN for a window too short to tell)."""
        return replication_trends(self.per_period_cost)[0]

    @property
    def trending(self) -> tuple[int, ...]:
        """Replications (rows; seed ``seed + row``) whose cost climbs over the window
        (:func:`replication_trends`)."""
        return replication_trends(self.per_period_cost)[1]

    @property
    def late_costs(self) -> np.ndarray:
        """Average cost of each replication over the last quarter of the window (:func:`late_costs`)."""
        return late_costs(self.per_period_cost)

    def paired_spread(self, reference: Evaluation) -> tuple[float, np.ndarray]:
        """:func:`paired_spread` against ``reference``, an evaluation of another policy on the same
        scenario, seeds and window (``ValueError`` otherwise)."""
        mine = (self.scenario, self.seed, self.replications, self.periods, self.warmup)
        theirs = (reference.scenario, reference.seed, reference.replications, reference.periods, reference.warmup)
        if mine != theirs:
            raise ValueError(
                f"reference: (scenario, seed, replications, periods, warmup) {theirs} differ from {mine}; "
                "paired ratios need the same random numbers"
            )
        return paired_spread(self.replication_costs, reference.replication_costs)

    def instability(self) -> str:
        """``"backlog at retailer grows by 1.0000 units/period"`` for the unstable nodes ("" if none)."""
        return "; ".join(
            f"backlog at {n} grows by {self.backlog_growth[n]:.4f} units/period" for n in self.unstable_nodes
        )

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
            "replication_costs": [float(c) for c in self.replication_costs],
            "spread": self.spread,
            "drifting_seeds": [self.seed + row for row in self.drifting],
            "replication_trends": [None if math.isnan(x) else float(x) for x in self.trends],
            "trending_seeds": [self.seed + row for row in self.trending],
            "cost_per_period_excluding_pipeline": {
                "mean": self.cost_ex_pipeline_mean,
                "ci95": self.cost_ex_pipeline_ci95,
            },
            "cost_split": self.cost_split,
            "fill_rate": self.fill_rate,
            "cycle_service_level": self.cycle_service_level,
            "stockout_frequency": self.stockout_frequency,
            "mean_on_hand": self.mean_on_hand,
            "inventory_turnover": self.inventory_turnover,
            "order_variance_ratio": self.order_variance_ratio,
            "fill_rate_ci95": self.fill_rate_ci95,
            "penalty_cost_per_period": self.penalty_cost,
            "investment_per_period": {
                "on_hand": {"mean": self.investment_on_hand[0], "ci95": self.investment_on_hand[1]},
                "in_transit": {"mean": self.investment_in_transit[0], "ci95": self.investment_in_transit[1]},
            },
            "service_by_node": _records(self.service_table()),
            "service_by_segment": _records(self.segment_table()),
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
            f"{self.replications} replication(s) x {self.periods} periods after {self.warmup} warm-up, "
            f"seed {self.seed}",
            (
                f"cost per period: {self.cost_mean:.4f} +- {self.cost_ci95:.4f} (95% CI, {self.ci_method})"
                if not self.unstable
                else f"UNSTABLE: cost not meaningful: {self.instability()} over the second half of the window; the "
                f"window's average cost {self.cost_mean:.4f} grows with the window length"
            ),
            "cost split: " + ", ".join(f"{k} {v:.4f}" for k, v in self.cost_split.items()),
        ]
        trending = self.trending
        if trending:
            rises = self.trends
            lines.append(
                "TRENDING: seed(s) "
                + ", ".join(f"{self.seed + r} (+{100 * rises[r]:.1f}%)" for r in trending)
                + " cost more in the window's last quarter than in its first"
            )
        if self.replications > 1:
            costs = self.replication_costs
            drift = self.drifting
            lines.append(
                f"replications: min {costs.min():.4f}  median {np.median(costs):.4f}  max {costs.max():.4f}  "
                f"(spread max/median - 1: {100 * self.spread:.2f}%)"
                + (
                    f"; DRIFTING: seed(s) {', '.join(str(self.seed + r) for r in drift)} left the others' band"
                    if drift
                    else ""
                )
            )
        if self.cost_split["pipeline"]:
            lines.append(
                f"cost excluding pipeline: {self.cost_ex_pipeline_mean:.4f} +- {self.cost_ex_pipeline_ci95:.4f}"
            )
        inv, transit = self.investment_on_hand, self.investment_in_transit
        lines.append(
            f"inventory investment per period: on hand {inv[0]:.4f} +- {inv[1]:.4f}, in transit "
            f"{transit[0]:.4f} +- {transit[1]:.4f}; penalty cost {self.penalty_cost:.4f}"
        )
        service = "backorders" if self.unmet_demand == "backorder" else "lost_sales"
        targets = any(v is not None for v in self.service_targets.values())
        lines.append(
            f"{'node':>14} {'fill rate':>10} {'+-':>7} {'cycle SL':>9} {service:>11}"
            + (f" {'target':>7} {'met':>5}" if targets else "")
        )
        table = self.service_table()
        for node in self.fill_rate:
            goal = (
                f" {table.at[node, 'target']:7.4f} {'yes' if table.at[node, 'target_met'] else 'NO':>5}"
                if node in table.index and table.at[node, "target_met"] is not None
                else ""
            )
            lines.append(
                f"{node:>14} {self.fill_rate[node]:10.4f} {self.fill_rate_ci95.get(node, math.nan):7.4f} "
                f"{self.cycle_service_level[node]:9.4f} {d[service][node]:11.4f}{goal}"
            )
        if any(seg != node for node, seg in self.segments.items()):
            segments = self.segment_table()
            lines.append(
                f"{'segment':>14} {'fill rate':>10} {'+-':>7} {'cycle SL':>9} {'demand':>11} {'target':>7} "
                f"{'met':>5}  nodes"
            )
            for seg, row in segments.iterrows():
                goal = (
                    f"{row['target']:7.4f} {'yes' if row['target_met'] else 'NO':>5}"
                    if row["target_met"] is not None
                    else f"{'':>7} {'':>5}"
                )
                lines.append(
                    f"{seg:>14} {row['fill_rate']:10.4f} {row['fill_rate_ci95']:7.4f} "
                    f"{row['cycle_service_level']:9.4f} {row['demand']:11.4f} {goal}  {row['nodes']}"
                )
        lines.append(f"{'node':>14} {'on hand':>10} {'turnover':>9} {'order var ratio':>16}")
        for node in self.mean_on_hand:
            lines.append(
                f"{node:>14} {self.mean_on_hand[node]:10.4f} {self.inventory_turnover[node]:9.4f} "
                f"{self.order_variance_ratio[node]:16.4f}"
            )
        return "\n".join(lines)


def _records(table: pd.DataFrame) -> dict[str, dict[str, Any]]:
    """A service table as JSON-ready ``{index: {column: value}}``, NaN as ``None``."""

    def plain(v: Any) -> Any:
        if v is None or isinstance(v, (bool, str)):
            return v
        return None if math.isnan(float(v)) else float(v)

    return {str(i): {c: plain(v) for c, v in row.items()} for i, row in table.iterrows()}


def check_evaluation(periods: int, warmup: int, replications: int, seed: int) -> None:
    """The rules of :func:`evaluate`'s settings (:mod:`meio.envs.run_settings`, and enough periods for
    batch means with one replication); entry points that evaluate after other work check first."""
    check_run_settings(periods=periods, warmup=warmup, replications=replications, seed=seed)
    if replications == 1 and periods < N_BATCHES:
        raise ValueError(f"periods: {periods} is too few for {N_BATCHES} batch means; run at least {N_BATCHES}")


def evaluate(
    scenario: str | Path | Scenario | Simulator,
    policy: Policy,
    periods: int = 10_000,
    warmup: int = 100,
    replications: int = 1,
    seed: int = 0,
    progress: bool = False,
) -> Evaluation:
    """Run ``policy`` and measure it (the simulator is built here unless one is passed)."""
    check_evaluation(periods, warmup, replications, seed)
    sim = scenario if isinstance(scenario, Simulator) else Simulator(scenario, n=replications)
    if sim.n != replications:
        raise ValueError(f"replications: {replications} but the simulator has {sim.n} rows")
    sim.reset(seeds=seed)
    topo = sim.topology
    r, n_nodes, n_dem = replications, topo.n_nodes, topo.n_demand
    in_units = 1.0 / topo.lane_bom[topo.slot_lane]  # slot units -> the ordering node's units
    order_map = np.zeros((topo.n_slots, n_nodes))
    order_map[np.arange(topo.n_slots), topo.slot_dst] = in_units
    seen_map = np.zeros((topo.n_slots, n_nodes))  # orders a node receives, in its units
    internal = topo.slot_src >= 0
    seen_map[np.flatnonzero(internal), topo.slot_src[internal]] = 1.0

    per_period = np.zeros((r, periods))
    per_period_pipe = np.zeros((r, periods))
    # Inventory investment per period (on hand at its holding rate, in transit at the receiving
    # node's) and, with one replication, units filled / demanded per batch for the fill-rate CIs.
    per_period_hold = np.zeros((r, periods))
    per_period_transit = np.zeros((r, periods))
    value_in_transit = transit_value(topo)
    service_batch = periods // N_BATCHES if r == 1 else 0
    batch_filled = np.zeros((N_BATCHES, n_dem))
    batch_demand = np.zeros((N_BATCHES, n_dem))
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
    for t in tqdm(
        range(warmup + periods),
        desc=f"simulate {topo.scenario.name}",
        disable=not progress,
        unit="period",
        mininterval=0.5,
    ):
        bo_before = sim.cust_bo[:, dn].copy()
        res = sim.step(policy.act(sim))
        if t < warmup:
            continue
        k = t - warmup
        per_period[:, k] = res.costs.sum(axis=1)
        per_period_pipe[:, k] = res.costs[:, C_PIPE]
        per_period_hold[:, k] = res.costs[:, C_HOLD]
        per_period_transit[:, k] = sim.pipe.sum(axis=2) @ value_in_transit
        if service_batch and k < service_batch * N_BATCHES:
            batch_filled[k // service_batch] += res.node_out[0, :, O_FILLED]
            batch_demand[k // service_batch] += res.node_out[0, :, O_DEMAND]
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
    f_samples, d_samples = (filled_sum, demand_sum) if r > 1 else (batch_filled, batch_demand)
    _, node_half = ratio_ci95(f_samples, d_samples)
    _, net_half = ratio_ci95(f_samples.sum(axis=1), d_samples.sum(axis=1))
    fill_ci = {**{nm: float(node_half[d]) for d, nm in enumerate(dnames)}, "network": float(net_half)}
    hold_mean = mean_ci95(per_period_hold.mean(axis=1) if r > 1 else batch_means(per_period_hold[0]))
    transit_mean = mean_ci95(per_period_transit.mean(axis=1) if r > 1 else batch_means(per_period_transit[0]))
    nodes_by_name = {nd.id: nd for nd in topo.scenario.nodes}
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
    turnover = np.where(
        mean_on_hand > 0, out_sum.sum(axis=0) / n_obs / np.where(mean_on_hand > 0, mean_on_hand, 1), np.nan
    )
    return Evaluation(
        scenario=topo.scenario.name,
        policy=getattr(policy, "name", type(policy).__name__),
        periods=periods,
        warmup=warmup,
        replications=r,
        seed=seed,
        ci_method="replications" if r > 1 else f"batch_means({N_BATCHES})",
        cost_mean=cost_mean,
        cost_ci95=cost_ci,
        cost_ex_pipeline_mean=ex_mean,
        cost_ex_pipeline_ci95=ex_ci,
        cost_split={k: float(v / n_obs) for k, v in zip(COST_NAMES, cost_sum)},
        fill_rate=fill,
        cycle_service_level=csl,
        backorders={
            **{nm: float(bo_sum[:, d].sum() / n_obs) for d, nm in enumerate(dnames)},
            "network": float(bo_sum.sum() / n_obs),
        },
        lost_sales={
            **{nm: float(short_sum[:, d].sum() / n_obs) for d, nm in enumerate(dnames)},
            "network": float(short_sum.sum() / n_obs),
        },
        mean_on_hand={nm: float(mean_on_hand[j]) for j, nm in enumerate(names)},
        inventory_turnover={nm: float(turnover[j]) for j, nm in enumerate(names)},
        order_variance_ratio={nm: float(ratio[j]) for j, nm in enumerate(names)},
        unmet_demand=topo.scenario.unmet_demand,
        allocation=topo.scenario.allocation,
        per_period_cost=per_period,
        backlog_growth=growth,
        unstable_nodes=unstable,
        fill_rate_ci95=fill_ci,
        mean_demand={nm: float(demand_sum[:, d].sum() / n_obs) for d, nm in enumerate(dnames)},
        segments={nm: nodes_by_name[nm].segment or nm for nm in dnames},
        service_targets={nm: nodes_by_name[nm].service_target for nm in dnames},
        filled_samples=f_samples,
        demand_samples=d_samples,
        investment_on_hand=hold_mean,
        investment_in_transit=transit_mean,
    )
