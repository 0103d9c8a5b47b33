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
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Mapping

import numpy as np
from tqdm.auto import tqdm

from baselines.base import Baseline
from envs.policies import BaseStockPolicy
from envs.scenario import Scenario, load_scenario
from envs.simulator import Simulator
from envs.topology import Topology, compile_topology

#: First seed of the search's replications; evaluations use other seeds (0, 1, ... by default).
SEARCH_SEED = 1_000_003


def simulate_levels(scenario: Scenario, levels: np.ndarray, kind: Literal["installation", "echelon"],
                    periods: int, warmup: int, replications: int, seed: int) -> np.ndarray:
    """Mean cost per period of each candidate row of ``levels`` ``(K, N)`` (topological order) on
    each of ``replications`` common seeds: an array ``(K, replications)``."""
    levels = np.atleast_2d(np.asarray(levels, dtype=float))
    k = levels.shape[0]
    sim = Simulator(scenario, n=k * replications, chunk=min(warmup + periods, 128))
    sim.reset(seeds=[seed + r for _ in range(k) for r in range(replications)])
    policy = BaseStockPolicy(sim.topology, np.repeat(levels, replications, axis=0), kind=kind)
    total = np.zeros(sim.n)
    for t in range(warmup + periods):
        res = sim.step(policy.act(sim))
        if t >= warmup:
            total += res.costs.sum(axis=1)
    return (total / periods).reshape(k, replications)


def _integer_levels(topo: Topology) -> bool:
    return topo.integer_orders and all(spec.is_integer for spec in topo.demand_specs)


def initial_steps(topo: Topology, kind: str) -> np.ndarray:
    """One standard deviation of the demand a node's level covers (at least 1 unit)."""
    lead = np.zeros(topo.n_nodes)
    for s in range(topo.n_slots):
        lead[topo.slot_dst[s]] = max(lead[topo.slot_dst[s]], topo.slot_lt_mean[s])
    cover = lead + 1.0
    if kind == "echelon":
        cover = topo.descendants() @ lead + 1.0       # an echelon level covers its whole downstream
    return np.maximum(topo.throughput_sd * np.sqrt(cover), 1.0)


@dataclass(frozen=True)
class SearchTrace:
    """How the search went: rounds, simulated candidates, the path of the sample-average cost."""

    rounds: int
    candidates: int
    path: tuple[float, ...]


def optimise_base_stock(scenario: str | Path | Scenario, kind: Literal["installation", "echelon"],
                        start: Mapping[str, float], periods: int = 1000, warmup: int = 100,
                        replications: int = 8, seed: int = SEARCH_SEED, max_rounds: int = 60,
                        min_step: float = 0.05, name: str | None = None,
                        progress: bool = False) -> tuple[Baseline, SearchTrace]:
    """Search base-stock levels in simulation from ``start``; see the module docstring.

    The search sees only the seeds ``seed .. seed + replications - 1``; evaluate the result on other
    seeds (:func:`baselines.run.run_baselines` does) so that its cost is not biased by the search.
    """
    sc = load_scenario(scenario)
    topo = compile_topology(sc)
    names = topo.node_names
    missing = [n for n in names if n not in start]
    if missing:
        raise ValueError(f"start: no level for {', '.join(missing)}")
    integer = _integer_levels(topo)
    x = np.array([max(float(start[n]), 0.0) for n in names])
    step = initial_steps(topo, kind)
    if integer:
        x, step = np.round(x), np.maximum(np.round(step), 1.0)
    n = len(names)
    path: list[float] = []
    evaluated = 0
    rounds = 0
    bar = tqdm(total=max_rounds, desc=f"search {kind} {sc.name}", disable=not progress, unit="round")
    last_move = np.zeros(n)
    for rounds in range(1, max_rounds + 1):
        moves = np.concatenate([np.diag(step), -np.diag(step)])
        if last_move.any():                       # pattern moves: keep going the way that paid
            moves = np.vstack([moves, 2 * last_move, 4 * last_move])
        candidates = np.vstack([x, np.maximum(x + moves, 0.0)])
        costs = simulate_levels(sc, candidates, kind, periods, warmup, replications, seed).mean(axis=1)
        evaluated += len(candidates)
        path.append(float(costs[0]))
        best = int(np.argmin(costs))
        bar.update(1)
        if costs[best] < costs[0] - 1e-12 * abs(costs[0]):
            last_move = candidates[best] - x
            x = candidates[best]
            continue
        last_move = np.zeros(n)
        if integer:
            if (step <= 1).all():
                break
            step = np.maximum(np.floor(step / 2), 1.0)
        else:
            if (step / initial_steps(topo, kind) < min_step).all():
                break
            step = step / 2
    bar.close()
    levels = {nm: float(x[j]) for j, nm in enumerate(names)}
    baseline = Baseline(name=name or f"optimised_{kind}", kind=kind, levels=levels,
                        notes=f"pattern search on {replications} x {periods} periods, common random numbers "
                              f"(seeds {seed}..{seed + replications - 1})")
    return baseline, SearchTrace(rounds=rounds, candidates=evaluated, path=tuple(path))


def local_levels(scenario: str | Path | Scenario, default_service: float | None = None) -> Baseline:
    """Local (installation) base-stock levels from each node's lead-time demand (normal approximation).

    Node ``j`` covers its demand over ``c_j = E[L_j] + 1`` periods if it faces customers, ``E[L_j]``
    otherwise (``L_j`` the lead time of its primary lane): mean ``mu_j c_j``, variance
    ``c_j sigma_j^2 + mu_j^2 Var(L_j)``, where
    ``mu_j, sigma_j`` are the mean and standard deviation of the demand passing through ``j`` (its
    own plus its customers', independent). The level is that mean plus ``z_j`` standard deviations,
    ``z_j = Phi^{-1}(alpha_j)`` with ``alpha_j`` the node's ``service_target`` if given, else the
    critical ratio ``p / (p + h)`` at a demand node, and at an internal node the largest critical
    ratio of the demand nodes it serves (or ``default_service``). Integer scenarios round up.
    This is the rule most planners use today; it ignores how stages interact.
    """
    from scipy import stats

    from envs.policies import primary_slots

    sc = load_scenario(scenario)
    topo = compile_topology(sc)
    desc = topo.descendants()
    ratio = np.full(topo.n_nodes, np.nan)
    for j in topo.demand_nodes:
        p, h = topo.penalty[j], topo.holding[j]
        ratio[j] = p / (p + h) if p + h > 0 else 0.5
    levels: dict[str, float] = {}
    primary = {int(topo.slot_dst[s]): int(s) for s in primary_slots(topo)[::-1]}
    for j, node_id in enumerate(topo.node_names):
        node = sc.node(node_id)
        if node.service_target is not None:
            alpha = node.service_target
        elif not math.isnan(ratio[j]):
            alpha = ratio[j]
        elif default_service is not None:
            alpha = default_service
        else:
            served = ratio[np.flatnonzero(desc[j] > 0)]
            alpha = float(np.nanmax(served))
        alpha = min(alpha, 1 - 1e-9)
        lane = sc.lanes[topo.slot_lane[primary[j]]]
        lt = lane.modes[topo.slot_mode[primary[j]]].lead_time
        var_l = float(np.dot(np.square(np.array(lt.values) - lt.mean), lt.probs))
        # A node facing customers adds the review period; an internal node's customers order at the
        # start of a period, with the node's own order, so it covers its lead time only.
        cover = lt.mean + (1.0 if topo.demand_col[j] >= 0 else 0.0)
        mu, sd = topo.throughput[j], topo.throughput_sd[j]
        level = mu * cover + stats.norm.ppf(alpha) * math.sqrt(cover * sd**2 + mu**2 * var_l)
        level = max(level, 0.0)
        levels[node_id] = float(math.ceil(level - 1e-9)) if _integer_levels(topo) else float(level)
    return Baseline(name="local", kind="installation", levels=levels,
                    notes="installation levels from each node's lead-time demand at its critical ratio or service target")
