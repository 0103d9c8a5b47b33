"""Simulation-optimised base-stock levels for any network, found on common random numbers.

The search (a coordinate pattern search, Hooke & Jeeves 1961, on a sample-average approximation):

1. start from given levels (an analytic solution, or the local heuristic);
2. each round, simulate the current levels, every neighbour ``x +- step_j e_j`` and, after a
   successful move ``d``, the pattern moves ``x + 2d`` and ``x + 4d``, together, each
   candidate on the *same* ``replications`` seeds (common random numbers: differences between
   candidates are not noise from different demand), in one batched simulator;
3. move to the cheapest candidate if it beats the current levels; otherwise halve every step
   (integer scenarios: never below 1 unit; continuous ones: stop below ``min_step``);
4. stop when no step can shrink further, or after ``max_rounds``.

The search sees only its own seeds (from ``SEARCH_SEED``). The levels it finds are then
**re-costed on fresh random numbers** (the evaluation's seeds, a longer run), so the reported cost
is not biased downwards by the search having fitted its own noise.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Literal

import numpy as np
from tqdm.auto import tqdm

from meio.baselines.base import Baseline
from meio.envs.dynamics import C_HOLD, O_DEMAND, O_FILLED
from meio.envs.metrics import fill_rate
from meio.envs.policies import BaseStockPolicy
from meio.envs.resolve import ScenarioLike, resolve
from meio.envs.scenario import Scenario
from meio.envs.simulator import Simulator
from meio.envs.topology import Topology

#: First seed of the search's replications; evaluations use other seeds (0, 1, ... by default).
SEARCH_SEED = 1_000_003


@dataclass(frozen=True)
class CandidateResults:
    """Per candidate and replication ``(K, R)``: mean cost, mean holding cost per period, and per
    demand node ``(K, R, D)`` the units demanded and filled from stock."""

    cost: np.ndarray
    holding: np.ndarray
    demand: np.ndarray
    filled: np.ndarray

    @property
    def fill_rate(self) -> np.ndarray:
        """``(K, D)`` fill rate of each candidate over all its replications."""
        return fill_rate(self.filled, self.demand, axis=1)


def simulate_candidates(
    scenario: ScenarioLike,
    levels: np.ndarray,
    kind: Literal["installation", "echelon"],
    periods: int,
    warmup: int,
    replications: int,
    seed: int,
    reorder_points: np.ndarray | None = None,
) -> CandidateResults:
    """Simulate each candidate row of ``levels`` ``(K, N)`` (topological order; with
    ``reorder_points`` an (s, S) rule) on the same ``replications`` seeds, all in one batch.
    A search calls it every round: pass the :class:`Topology`, which is used without compiling."""
    levels = np.atleast_2d(np.asarray(levels, dtype=float))
    k = levels.shape[0]
    sim = Simulator(scenario, n=k * replications)
    sim.reset(seeds=[seed + r for _ in range(k) for r in range(replications)])
    reorder = None if reorder_points is None else np.repeat(np.atleast_2d(reorder_points), replications, axis=0)
    policy = BaseStockPolicy(sim.topology, np.repeat(levels, replications, axis=0), kind=kind, reorder_points=reorder)
    total = np.zeros(sim.n)
    holding = np.zeros(sim.n)
    demand = np.zeros((sim.n, sim.topology.n_demand))
    filled = np.zeros((sim.n, sim.topology.n_demand))
    for t in range(warmup + periods):
        res = sim.step(policy.act(sim))
        if t >= warmup:
            total += res.costs.sum(axis=1)
            holding += res.costs[:, C_HOLD]
            demand += res.node_out[:, :, O_DEMAND]
            filled += res.node_out[:, :, O_FILLED]
    shape = (k, replications)
    return CandidateResults(
        cost=(total / periods).reshape(shape),
        holding=(holding / periods).reshape(shape),
        demand=demand.reshape(shape + (-1,)),
        filled=filled.reshape(shape + (-1,)),
    )


def simulate_levels(
    scenario: ScenarioLike,
    levels: np.ndarray,
    kind: Literal["installation", "echelon"],
    periods: int,
    warmup: int,
    replications: int,
    seed: int,
) -> np.ndarray:
    """Mean cost per period ``(K, replications)`` of each candidate row of ``levels``."""
    return simulate_candidates(scenario, levels, kind, periods, warmup, replications, seed).cost


def _integer_levels(topo: Topology) -> bool:
    return topo.integer_orders and all(spec.is_integer for spec in topo.demand_specs)


def initial_steps(topo: Topology, kind: str) -> np.ndarray:
    """One standard deviation of the demand a node's level covers (at least 1 unit)."""
    lead = topo.lead_in()
    cover = lead + 1.0
    if kind == "echelon":
        cover = topo.descendants() @ lead + 1.0  # an echelon level covers its whole downstream
    return np.maximum(topo.throughput_sd * np.sqrt(cover), 1.0)


@dataclass(frozen=True)
class SearchTrace:
    """How the search went: rounds, simulated candidates, the path of the sample-average objective."""

    rounds: int
    candidates: int
    path: tuple[float, ...]


def pattern_search(
    objective: Callable[[np.ndarray], np.ndarray],
    x0: np.ndarray,
    step0: np.ndarray,
    integer: bool,
    max_rounds: int = 60,
    min_step: float = 0.05,
    progress: str | None = None,
) -> tuple[np.ndarray, SearchTrace]:
    """Minimise ``objective`` (candidates ``(K, n)`` -> values ``(K,)``) over ``x >= 0`` by pattern
    search: neighbours ``x +- step_j e_j`` and, after a successful move ``d``, ``x + 2d``, ``x + 4d``;
    halve the steps after a round without improvement (integer: never below 1); stop when the
    steps cannot shrink (continuous: below ``min_step`` times the first ones) or after ``max_rounds``."""
    x = np.maximum(np.asarray(x0, dtype=float), 0.0)
    step = np.asarray(step0, dtype=float).copy()
    if integer:
        x, step = np.round(x), np.maximum(np.round(step), 1.0)
    n = len(x)
    path: list[float] = []
    evaluated = rounds = 0
    last_move = np.zeros(n)
    bar = tqdm(total=max_rounds, desc=progress or "search", disable=progress is None, unit="round")
    for rounds in range(1, max_rounds + 1):  # noqa: B007 (the count is reported after the loop)
        moves = np.concatenate([np.diag(step), -np.diag(step)])
        if last_move.any():  # pattern moves: keep going the way that paid
            moves = np.vstack([moves, 2 * last_move, 4 * last_move])
        candidates = np.vstack([x, np.maximum(x + moves, 0.0)])
        values = objective(candidates)
        evaluated += len(candidates)
        path.append(float(values[0]))
        best = int(np.argmin(values))
        bar.update(1)
        if values[best] < values[0] - 1e-12 * abs(values[0]):
            last_move = candidates[best] - x
            x = candidates[best]
            continue
        last_move = np.zeros(n)
        if integer:
            if (step <= 1).all():
                break
            step = np.maximum(np.floor(step / 2), 1.0)
        elif (step < min_step * np.asarray(step0)).all():
            break
        else:
            step = step / 2
    bar.close()
    return x, SearchTrace(rounds=rounds, candidates=evaluated, path=tuple(path))


def _start_vector(topo: Topology, start: Mapping[str, float], field: str) -> np.ndarray:
    missing = [n for n in topo.node_names if n not in start]
    if missing:
        raise ValueError(f"{field}: no level for {', '.join(missing)}")
    return np.array([max(float(start[n]), 0.0) for n in topo.node_names])


def optimise_base_stock(
    scenario: ScenarioLike,
    kind: Literal["installation", "echelon"],
    start: Mapping[str, float],
    periods: int = 1000,
    warmup: int = 100,
    replications: int = 8,
    seed: int = SEARCH_SEED,
    max_rounds: int = 60,
    min_step: float = 0.05,
    name: str | None = None,
    progress: bool = False,
) -> tuple[Baseline, SearchTrace]:
    """Search base-stock levels minimising the mean cost per period; see the module docstring.

    The search sees only the seeds ``seed .. seed + replications - 1``; evaluate the result on other
    seeds (:func:`meio.baselines.run.run_baselines` does) so that its cost is not biased by the search.
    """
    topo = resolve(scenario)
    sc = topo.scenario
    x, trace = pattern_search(
        lambda c: simulate_levels(topo, c, kind, periods, warmup, replications, seed).mean(axis=1),
        _start_vector(topo, start, "start"),
        initial_steps(topo, kind),
        _integer_levels(topo),
        max_rounds,
        min_step,
        progress=f"search {kind} {sc.name}" if progress else None,
    )
    levels = {nm: float(x[j]) for j, nm in enumerate(topo.node_names)}
    baseline = Baseline(
        name=name or f"optimised_{kind}",
        kind=kind,
        levels=levels,
        notes=f"pattern search on {replications} x {periods} periods, common random numbers "
        f"(seeds {seed}..{seed + replications - 1})",
    )
    return baseline, trace


def optimise_s_S(
    scenario: ScenarioLike,
    start: Mapping[str, float],
    periods: int = 1000,
    warmup: int = 100,
    replications: int = 8,
    seed: int = SEARCH_SEED,
    max_rounds: int = 80,
    name: str = "optimised_s_S",
    progress: bool = False,
) -> tuple[Baseline, SearchTrace]:
    """Search installation (s, S) levels for networks with fixed ordering costs.

    Parameters searched: reorder points ``s_j`` and order sizes ``Q_j = S_j - s_j >= 0``, started at
    ``s_j = start_j`` (a base-stock level) and ``Q_j`` = the economic order quantity
    ``sqrt(2 K_j mu_j / h_j)`` of the node's primary lane (Harris 1913), then the pattern search on
    common random numbers minimising the mean cost per period.
    """
    topo = resolve(scenario)
    sc = topo.scenario
    from meio.envs.policies import primary_slots

    n = topo.n_nodes
    fixed = np.zeros(n)
    for q in primary_slots(topo):
        fixed[topo.slot_dst[q]] = max(fixed[topo.slot_dst[q]], topo.slot_fixed_cost[q])
    h = np.maximum(topo.holding, 1e-9)
    eoq = np.sqrt(2.0 * fixed * topo.throughput / h)
    s0 = _start_vector(topo, start, "start")
    x0 = np.concatenate([s0, eoq])
    step0 = np.concatenate([initial_steps(topo, "installation"), np.maximum(eoq / 2, 1.0)])

    def objective(c: np.ndarray) -> np.ndarray:
        return simulate_candidates(
            topo, c[:, :n] + c[:, n:], "installation", periods, warmup, replications, seed, reorder_points=c[:, :n]
        ).cost.mean(axis=1)

    x, trace = pattern_search(
        objective,
        x0,
        step0,
        _integer_levels(topo),
        max_rounds,
        progress=f"search (s, S) {sc.name}" if progress else None,
    )
    names = topo.node_names
    reorder = {nm: float(x[j]) for j, nm in enumerate(names)}
    levels = {nm: float(x[j] + x[n + j]) for j, nm in enumerate(names)}
    baseline = Baseline(
        name=name,
        kind="installation",
        levels=levels,
        notes=f"(s, S) pattern search on {replications} x {periods} periods, common random numbers",
        extra={"reorder_points": reorder},
    )
    return baseline, trace


def optimise_service_target(
    scenario: ScenarioLike,
    start: Mapping[str, float],
    targets: Mapping[str, float] | None = None,
    periods: int = 1000,
    warmup: int = 100,
    replications: int = 8,
    seed: int = SEARCH_SEED,
    max_rounds: int = 60,
    name: str = "service_target",
    progress: bool = False,
) -> tuple[Baseline, SearchTrace]:
    """Installation base-stock levels minimising holding cost subject to fill-rate targets.

    ``targets``: fill-rate target per demand node (default: the scenario's ``service_target``s;
    every demand node needs one). The search minimises ``holding cost + M * sum_k max(0, target_k -
    fill rate_k)`` with ``M`` a thousand times the start's holding cost per unit of fill rate, so
    that any feasible candidate beats any infeasible one in practice (an exact penalty).
    """
    topo = resolve(scenario)
    sc = topo.scenario
    dnames = [topo.node_names[j] for j in topo.demand_nodes]
    if targets is None:
        targets = {nm: sc.node(nm).service_target for nm in dnames if sc.node(nm).service_target is not None}
    missing = [nm for nm in dnames if nm not in targets]
    if missing:
        raise ValueError(f"targets: no fill-rate target for demand node {missing[0]!r} (set its service_target)")
    goal = np.array([targets[nm] for nm in dnames])
    x0 = _start_vector(topo, start, "start")
    base = simulate_candidates(topo, x0[None], "installation", periods, warmup, replications, seed)
    big = 1000.0 * max(float(base.holding.mean()), 1.0)

    def objective(c: np.ndarray) -> np.ndarray:
        res = simulate_candidates(topo, c, "installation", periods, warmup, replications, seed)
        shortfall = np.maximum(goal[None, :] - res.fill_rate, 0.0).sum(axis=1)
        return res.holding.mean(axis=1) + big * shortfall

    x, trace = pattern_search(
        objective,
        x0,
        initial_steps(topo, "installation"),
        _integer_levels(topo),
        max_rounds,
        progress=f"search service {sc.name}" if progress else None,
    )
    levels = {nm: float(x[j]) for j, nm in enumerate(topo.node_names)}
    baseline = Baseline(
        name=name,
        kind="installation",
        levels=levels,
        notes="minimum holding cost subject to fill-rate targets "
        + ", ".join(f"{k} >= {v:g}" for k, v in targets.items()),
        extra={"fill_rate_targets": dict(targets)},
    )
    return baseline, trace


#: Highest service level a rule plans for: ``Phi^{-1}(alpha)`` is infinite at ``alpha = 1``.
MAX_SERVICE_LEVEL = 1 - 1e-9


def critical_ratio(penalty: float, holding: float) -> float:
    """Newsvendor critical ratio ``p / (p + h)`` (Snyder & Shen 2019, ch. 4, the newsvendor problem): the service
    level at which one more unit of stock saves as much penalty as it costs holding. 0.5 when both
    costs are 0 (nothing to trade off)."""
    return penalty / (penalty + holding) if penalty + holding > 0 else 0.5


def service_levels(scenario: Scenario, topo: Topology, default_service: float | None = None) -> np.ndarray:
    """Planned service level ``alpha_j`` of every node (topological order) of the planning rules
    (the local rule, the guaranteed-service model).

    ``alpha_j`` is the node's ``service_target`` if given; else, at a node facing customers, its
    :func:`critical_ratio`; else ``default_service`` if given; else the largest critical ratio of
    the demand nodes it serves. At most :data:`MAX_SERVICE_LEVEL`, so that ``z_j`` is finite.
    """
    ratio = np.full(topo.n_nodes, np.nan)
    for j in topo.demand_nodes:
        ratio[j] = critical_ratio(float(topo.penalty[j]), float(topo.holding[j]))
    desc = topo.descendants()
    alpha = np.empty(topo.n_nodes)
    for j, node_id in enumerate(topo.node_names):
        target = scenario.node(node_id).service_target
        if target is not None:
            alpha[j] = target
        elif not math.isnan(ratio[j]):
            alpha[j] = ratio[j]
        elif default_service is not None:
            alpha[j] = default_service
        else:
            alpha[j] = np.nanmax(ratio[np.flatnonzero(desc[j] > 0)])
    return np.minimum(alpha, MAX_SERVICE_LEVEL)


def local_levels(scenario: ScenarioLike, default_service: float | None = None) -> Baseline:
    """Local (installation) base-stock levels from each node's lead-time demand (normal approximation).

    Node ``j`` covers its demand over ``c_j = E[L_j] + 1`` periods if it faces customers, ``E[L_j]``
    otherwise (``L_j`` the lead time of its primary lane): mean ``mu_j c_j``, variance
    ``c_j sigma_j^2 + mu_j^2 Var(L_j)``, where
    ``mu_j, sigma_j`` are the mean and standard deviation of the demand passing through ``j`` (its
    own plus its customers', independent; a normal demand untruncated, as in every analytic
    baseline: :func:`meio.baselines.analytic.analysis_moments`). The level is that mean plus ``z_j``
    standard deviations, ``z_j = Phi^{-1}(alpha_j)`` with ``alpha_j`` (:func:`service_levels`) the node's
    ``service_target`` if given, else the critical ratio ``p / (p + h)`` at a demand node, and at
    an internal node the largest critical ratio of the demand nodes it serves (or
    ``default_service``). Integer scenarios round up.
    This is the rule most planners use today; it ignores how stages interact.
    """
    from scipy import stats

    from meio.baselines.analytic import analysis_moments
    from meio.envs.policies import primary_slots

    topo = resolve(scenario)
    sc = topo.scenario
    through_mu, through_sd = topo.demand_through(analysis_moments)
    alpha = service_levels(sc, topo, default_service)
    levels: dict[str, float] = {}
    primary = {int(topo.slot_dst[s]): int(s) for s in primary_slots(topo)[::-1]}
    for j, node_id in enumerate(topo.node_names):
        lane = sc.lanes[topo.slot_lane[primary[j]]]
        lt = lane.modes[topo.slot_mode[primary[j]]].lead_time
        var_l = float(np.dot(np.square(np.array(lt.values) - lt.mean), lt.probs))
        # A node facing customers adds the review period; an internal node's customers order at the
        # start of a period, with the node's own order, so it covers its lead time only.
        cover = lt.mean + (1.0 if topo.demand_col[j] >= 0 else 0.0)
        mu, sd = through_mu[j], through_sd[j]
        level = mu * cover + stats.norm.ppf(alpha[j]) * math.sqrt(cover * sd**2 + mu**2 * var_l)
        level = max(level, 0.0)
        levels[node_id] = float(math.ceil(level - 1e-9)) if _integer_levels(topo) else float(level)
    return Baseline(
        name="local",
        kind="installation",
        levels=levels,
        notes="installation levels from each node's lead-time demand at its critical ratio or service target",
    )
