"""The cost-service frontier: for each fill-rate target, the cheapest base-stock policy that meets it.

For a target ``beta*`` the frontier point solves (sample-average approximation on common random
numbers, docs/frontier.md)

    min_S  E[c(S)]   subject to   beta_g(S) >= beta*_g   for every constrained group g,

over installation base-stock levels ``S >= 0`` (one per node), where ``c(S)`` is the cost per
period that the policy pays for its stock and its orders (holding, ordering, transport and
in-transit holding: every cost but the backorder and lost-sales penalties, which the fill-rate
constraint replaces) and ``beta_g = sum_{d in g} filled_d / sum_{d in g} demanded_d`` is the
demand-weighted fill rate (type-2 service, MODEL.md "Service metrics") of a group of demand nodes:

* network-wide (``node=None``): one group, every demand node, target ``beta*``;
* one node or segment (``node=N``): the group of node ``N`` (or of the demand nodes whose
  ``segment`` is ``N``) has target ``beta*``, every other demand node keeps its scenario
  ``service_target`` (none: unconstrained).

Each target is solved afresh (re-optimised per target): the local rule at that target
(:func:`meio.baselines.search.local_levels`) starts a coordinate pattern search
(:func:`meio.baselines.search.pattern_search`, Hooke & Jeeves 1961) of ``c(S) + M * sum_g
max(0, beta*_g - beta_g(S))`` (an exact penalty, ``M`` a thousand times the start's cost per unit
of fill rate, as the ``service_target`` baseline does) on the search's own seeds (from
:data:`~meio.baselines.search.SEARCH_SEED`), followed by trades of stock between two nodes where
the one-coordinate moves stall on the constraint's boundary (:func:`constrained_search`). The
levels found are then evaluated on the
evaluation seeds ``seed, seed+1, ...`` (the same seeds as every benchmarked policy). Two repairs
make the reported frontier what it claims:

1. **Feasibility on the evaluation seeds.** A search that stops on the boundary of its own
   seeds' constraint misses the target on other seeds about half the time. Where a group falls
   short on the evaluation seeds, the levels are raised greedily, one step of one node at a time
   (the step that buys the most fill rate per unit of cost), until every group meets its target;
   ``repairs`` counts the steps. The achieved fill rate is then read on the seeds that certified
   it (slightly optimistic, by at most one step's worth of fill rate).
2. **Monotonicity.** More service never costs less on a frontier: a policy that meets a higher
   target also meets every lower one. If a higher target's optimum is cheaper (on the evaluation
   seeds) than a lower target's (the search stopped in a local optimum, or noise), the lower
   target's answer is dominated and is replaced by the cheaper one (``dominated_by`` names the
   target whose policy it took).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from meio.baselines.search import SEARCH_SEED, initial_steps, local_levels, pattern_search
from meio.baselines.sourcing import single_sourcing_limits
from meio.envs.dynamics import C_BACK, C_HOLD, C_LOST, O_DEMAND, O_FILLED
from meio.envs.metrics import Evaluation, check_evaluation, mean_ci95, meets_target, ratio_ci95, transit_value
from meio.envs.policies import BaseStockPolicy
from meio.envs.resolve import ScenarioLike, resolve
from meio.envs.run_settings import check_run_settings
from meio.envs.simulator import Simulator
from meio.envs.topology import Topology

#: Fill-rate targets of ``meio frontier`` when ``--targets`` is not given.
DEFAULT_TARGETS = (0.80, 0.90, 0.95, 0.98, 0.99)

#: The search budget of the benchmark report's frontier (a demo: cheaper than ``meio frontier``'s
#: default, and said under its plot).
BENCHMARK_BUDGET: dict[str, int] = {"search_periods": 300, "search_replications": 4, "max_rounds": 30, "max_trades": 5}

#: Sizes of the trades between two nodes' levels (:func:`constrained_search`), as fractions of the
#: search's first steps (integer scenarios: at least 1 unit).
TRADE_SCALES = (1.0, 0.5, 0.25, 0.125, 0.0625)

#: At most this many greedy steps raise a policy that misses its target on the evaluation seeds.
MAX_REPAIRS = 50


def check_targets(targets: Sequence[float], field: str = "targets") -> tuple[float, ...]:
    """``targets`` as floats, each in the open interval (0, 1), strictly increasing; else a
    ``ValueError`` naming ``field``, the bad value and the rule."""
    out: list[float] = []
    if len(targets) == 0:
        raise ValueError(f"{field}: no target given; give fill rates in (0, 1), e.g. 0.8,0.9,0.95")
    for t in targets:
        try:
            value = float(t)
        except (TypeError, ValueError):
            raise ValueError(f"{field}: {t!r} is not a number; give fill rates in (0, 1), e.g. 0.8,0.9,0.95") from None
        if not (0.0 < value < 1.0):  # also refuses nan
            raise ValueError(
                f"{field}: {t!r} is outside (0, 1); a fill-rate target is a fraction of demand "
                "filled from stock, above 0 and below 1"
            )
        if out and value <= out[-1]:
            raise ValueError(f"{field}: {t!r} follows {out[-1]!r}; list the targets in increasing order, each once")
        out.append(value)
    return tuple(out)


def parse_targets(text: str, field: str = "targets") -> tuple[float, ...]:
    """``"0.8,0.9,0.95"`` -> ``(0.8, 0.9, 0.95)``, checked by :func:`check_targets`."""
    parts = [p.strip() for p in text.split(",")]
    if any(p == "" for p in parts):
        raise ValueError(f"{field}: {text!r} has an empty entry; write comma-separated fill rates, e.g. 0.8,0.9")
    return check_targets(parts, field)


@dataclass(frozen=True)
class StockResults:
    """Per candidate and replication ``(K, R)``: cost per period paid for stock and orders (no
    penalties), total cost, inventory investment on hand and in transit per period (units times the
    holding cost of the node that holds or awaits them); per demand node ``(K, R, D)`` units demanded
    and filled from stock; per node ``(K, R, N)`` mean on-hand stock."""

    cost: np.ndarray
    total: np.ndarray
    on_hand: np.ndarray
    in_transit: np.ndarray
    demand: np.ndarray
    filled: np.ndarray
    stock: np.ndarray


def simulate_stock(
    topo: Topology, levels: np.ndarray, periods: int, warmup: int, replications: int, seed: int
) -> StockResults:
    """Simulate each candidate row of installation base-stock ``levels`` ``(K, N)`` on the same seeds
    ``seed .. seed + replications - 1`` (common random numbers), all in one batch.

    Investment on hand per period is the holding cost ``sum_j h_j I_j`` (plus component stock at its
    holding rate, as the simulator charges it); in transit it is ``sum_s h_{dst(s)} P_s / b_s``
    with ``P_s`` the units in slot ``s``'s pipeline at the end of the period and ``b_s`` its lane's
    bill of materials (units of the source's item per unit of the destination's)."""
    levels = np.atleast_2d(np.asarray(levels, dtype=float))
    k = levels.shape[0]
    sim = Simulator(topo, n=k * replications)
    sim.reset(seeds=[seed + r for _ in range(k) for r in range(replications)])
    policy = BaseStockPolicy(sim.topology, np.repeat(levels, replications, axis=0), kind="installation")
    t_topo = sim.topology
    value_in_transit = transit_value(t_topo)  # (S,), as meio.envs.metrics.evaluate values it
    cost = np.zeros(sim.n)
    total = np.zeros(sim.n)
    hold = np.zeros(sim.n)
    transit = np.zeros(sim.n)
    demand = np.zeros((sim.n, t_topo.n_demand))
    filled = np.zeros((sim.n, t_topo.n_demand))
    stock = np.zeros((sim.n, t_topo.n_nodes))
    for t in range(warmup + periods):
        res = sim.step(policy.act(sim))
        if t < warmup:
            continue
        row = res.costs.sum(axis=1)
        total += row
        cost += row - res.costs[:, C_BACK] - res.costs[:, C_LOST]
        hold += res.costs[:, C_HOLD]
        transit += sim.pipe.sum(axis=2) @ value_in_transit
        demand += res.node_out[:, :, O_DEMAND]
        filled += res.node_out[:, :, O_FILLED]
        stock += sim.on_hand
    shape = (k, replications)
    return StockResults(
        cost=(cost / periods).reshape(shape),
        total=(total / periods).reshape(shape),
        on_hand=(hold / periods).reshape(shape),
        in_transit=(transit / periods).reshape(shape),
        demand=demand.reshape(shape + (-1,)),
        filled=filled.reshape(shape + (-1,)),
        stock=(stock / periods).reshape(shape + (-1,)),
    )


@dataclass(frozen=True)
class Constraint:
    """A fill-rate target ``target`` on the pooled demand of the demand columns ``columns``."""

    label: str
    columns: tuple[int, ...]
    target: float


def _segment(node: object) -> str | None:
    # A demand node's segment name where the scenario format has one.
    seg = getattr(node, "segment", None)
    return None if seg is None else str(seg)


def constrained_group(topo: Topology, node: str | None) -> tuple[str, tuple[int, ...]]:
    """The label and demand columns whose pooled fill rate the frontier's target is on: every demand
    node (``node=None``), the demand node ``node``, or the demand nodes of segment ``node``."""
    sc = topo.scenario
    dnames = [topo.node_names[j] for j in topo.demand_nodes]
    if node is None:
        return "network", tuple(range(len(dnames)))
    if node in dnames:
        return node, (dnames.index(node),)
    segments: dict[str, list[int]] = {}
    for d, nm in enumerate(dnames):
        seg = _segment(sc.node(nm))
        if seg is not None:
            segments.setdefault(seg, []).append(d)
    if node in segments:
        return node, tuple(segments[node])
    choices = dnames + sorted(set(segments) - set(dnames))
    kind = "node" if node in topo.node_names else "name"
    raise ValueError(
        f"node: {node!r} is not a demand node or segment of {sc.name} (a {kind} without customer "
        f"demand has no fill rate); choose from {', '.join(choices)}"
    )


def constraints(topo: Topology, group: tuple[str, tuple[int, ...]], target: float) -> list[Constraint]:
    """The target on ``group``, and, when the group is not the whole network, every other demand
    node's scenario ``service_target`` (nodes without one are not constrained)."""
    label, columns = group
    out = [Constraint(label, columns, target)]
    if label == "network":
        return out
    for d, j in enumerate(topo.demand_nodes):
        goal = topo.scenario.node(topo.node_names[j]).service_target
        if d not in columns and goal is not None:
            out.append(Constraint(topo.node_names[j], (d,), float(goal)))
    return out


def _fill(res: StockResults, columns: tuple[int, ...]) -> np.ndarray:
    """``(K,)`` pooled fill rate of ``columns`` over every replication of each candidate."""
    cols = list(columns)
    return res.filled[:, :, cols].sum(axis=(1, 2)) / np.maximum(res.demand[:, :, cols].sum(axis=(1, 2)), 1e-300)


def _shortfall(res: StockResults, cons: list[Constraint]) -> np.ndarray:
    """``(K,)`` total fill rate missing over the constraints."""
    return sum((np.maximum(c.target - _fill(res, c.columns), 0.0) for c in cons), np.zeros(res.cost.shape[0]))


def _start_levels(topo: Topology, group: tuple[str, tuple[int, ...]], target: float) -> np.ndarray:
    """The local rule's levels with the group's demand nodes planned at ``target`` (the others keep
    their scenario's service targets, or their critical ratios)."""
    sc = topo.scenario
    names = {topo.node_names[topo.demand_nodes[d]] for d in group[1]}
    planned = replace(sc, nodes=tuple(replace(n, service_target=target) if n.id in names else n for n in sc.nodes))
    levels = local_levels(planned).levels
    return np.array([levels[n] for n in topo.node_names])


def _integer(topo: Topology) -> bool:
    return topo.integer_orders and all(spec.is_integer for spec in topo.demand_specs)


def _repair(
    topo: Topology,
    x: np.ndarray,
    cons: list[Constraint],
    step: np.ndarray,
    periods: int,
    warmup: int,
    replications: int,
    seed: int,
) -> tuple[np.ndarray, StockResults, int]:
    """Raise ``x`` one node's ``step`` at a time, the step with the most fill rate gained per unit of
    cost, until every constraint holds on the seeds ``seed ..``; returns the levels, their results
    and the number of steps taken."""
    res = simulate_stock(topo, x[None], periods, warmup, replications, seed)
    repairs = 0
    while _shortfall(res, cons)[0] > 0:
        if repairs >= MAX_REPAIRS:
            missed = ", ".join(f"{c.label} >= {c.target:g}" for c in cons)
            raise ValueError(
                f"targets: {missed} not met on the evaluation seeds after {MAX_REPAIRS} repair steps of the "
                f"searched levels {x.tolist()}; search on more periods or replications (--search-periods, "
                "--search-replications), or lower the target"
            )
        cand = x[None, :] + np.diag(step)
        trial = simulate_stock(topo, cand, periods, warmup, replications, seed)
        gain = _shortfall(res, cons)[0] - _shortfall(trial, cons)
        extra = np.maximum(trial.cost.mean(axis=1) - res.cost.mean(axis=1)[0], 1e-12)
        best = int(np.argmax(np.where(gain > 0, gain / extra, -np.inf)))
        if gain[best] <= 0:  # no single step helps: raise every node at once
            x = x + step
            res = simulate_stock(topo, x[None], periods, warmup, replications, seed)
        else:
            x = cand[best]
            res = StockResults(*(getattr(trial, f)[best : best + 1] for f in StockResults.__dataclass_fields__))
        repairs += 1
    return x, res, repairs


def constrained_search(
    objective: Callable[[np.ndarray], np.ndarray],
    x0: np.ndarray,
    step0: np.ndarray,
    integer: bool,
    max_rounds: int,
    max_trades: int = 20,
    progress: str | None = None,
) -> np.ndarray:
    """Minimise a penalised objective (candidates ``(K, n)`` -> ``(K,)``) over ``x >= 0``: the pattern
    search (:func:`meio.baselines.search.pattern_search`), then trades between two coordinates.

    On the boundary of a service constraint the pattern search's moves, one coordinate at a time,
    all fail: raising a level costs more, lowering one breaks the constraint; moving stock from one
    node to another (``x + a e_i - b e_j``) may do both at once. So, once the pattern search stops,
    every such pair at the first steps, then at :data:`TRADE_SCALES` of them, is tried in one batch; the
    best that improves the objective is taken and the pattern search restarts from it with those
    steps. It stops when no trade improves the objective, or after ``max_trades`` trades.
    """
    x = np.asarray(x0, dtype=float)
    step = np.asarray(step0, dtype=float)
    n = len(x)
    pairs = [(i, j) for i in range(n) for j in range(n) if i != j]
    for _ in range(max_trades + 1):
        x, _ = pattern_search(objective, x, step, integer, max_rounds, progress=progress)
        if not pairs:
            break
        current = float(objective(x[None])[0])
        for scale in TRADE_SCALES:
            s = np.maximum(np.round(step0 * scale), 1.0) if integer else step0 * scale
            moves = np.zeros((len(pairs), n))
            for k, (i, j) in enumerate(pairs):
                moves[k, i], moves[k, j] = s[i], -s[j]
            cand = np.maximum(x[None, :] + moves, 0.0)
            values = objective(cand)
            best = int(np.argmin(values))
            if values[best] < current - 1e-12 * abs(current):
                x, step = cand[best], s
                break
        else:
            break
    return x


def _ci(samples: np.ndarray) -> float:
    return mean_ci95(samples)[1] if samples.size >= 2 else math.nan


def _row(
    topo: Topology, target: float, label: str, cons: list[Constraint], x: np.ndarray, res: StockResults, repairs: int
) -> dict[str, object]:
    """One frontier row from the evaluation ``res`` (one candidate) of levels ``x``."""
    cols = list(cons[0].columns)
    # The fill rate as defined (ratio of totals) with the ratio estimator's interval over replications.
    fill, fill_ci = ratio_ci95(res.filled[0][:, cols].sum(axis=1), res.demand[0][:, cols].sum(axis=1))
    row: dict[str, object] = {
        "target": target,
        "group": label,
        "fill_rate": float(fill),
        "fill_rate_ci95": float(fill_ci),
        "network_fill_rate": float(_fill(res, tuple(range(topo.n_demand)))[0]),
        "meets_target": all(meets_target(float(_fill(res, c.columns)[0]), c.target) for c in cons),
    }
    for name, arr in (
        ("investment_on_hand", res.on_hand[0]),
        ("investment_in_transit", res.in_transit[0]),
        ("cost_of_service", res.cost[0]),
        ("total_cost", res.total[0]),
    ):
        row[name] = float(arr.mean())
        row[f"{name}_ci95"] = _ci(arr)
    row["repairs"] = repairs
    row["dominated_by"] = math.nan
    row.update({f"level_{n}": float(x[j]) for j, n in enumerate(topo.node_names)})
    row.update({f"stock_{n}": float(res.stock[0, :, j].mean()) for j, n in enumerate(topo.node_names)})
    row.update({f"fill_rate_{topo.node_names[j]}": float(_fill(res, (d,))[0]) for d, j in enumerate(topo.demand_nodes)})
    return row


def enforce_monotone(df: pd.DataFrame, column: str = "cost_of_service") -> pd.DataFrame:
    """Make ``column`` non-decreasing in ``target``: a row whose cost exceeds a higher target's row
    is dominated (the higher target's policy meets the lower target too, and costs less), and takes
    that row's policy and measurements, keeping its own ``target`` and naming the other in
    ``dominated_by``. Rows are sorted by ``target``; the cheapest row at or above each target wins."""
    out = df.sort_values("target", kind="stable").reset_index(drop=True).copy()
    for i in range(len(out) - 2, -1, -1):
        if out.at[i + 1, column] < out.at[i, column]:
            keep = {"target": out.at[i, "target"]}
            src = out.iloc[i + 1].copy()
            src["dominated_by"] = (
                src["target"]
                if (isinstance(src["dominated_by"], float) and math.isnan(src["dominated_by"]))
                else src["dominated_by"]
            )
            src["target"] = keep["target"]
            out.iloc[i] = src
    return out


def cost_service_frontier(
    scenario: ScenarioLike,
    targets: Sequence[float] = DEFAULT_TARGETS,
    node: str | None = None,
    periods: int = 2000,
    warmup: int = 200,
    replications: int = 8,
    seed: int = 0,
    search_periods: int = 1000,
    search_replications: int = 8,
    max_rounds: int = 60,
    max_trades: int = 20,
    progress: bool = False,
) -> pd.DataFrame:
    """The cheapest installation base-stock policy meeting each fill-rate target (module docstring).

    ``node``: ``None`` for the network's demand-weighted fill rate, else a demand node or segment
    whose target varies while the other demand nodes keep theirs. The search sees the seeds from
    :data:`~meio.baselines.search.SEARCH_SEED` (``search_replications`` x ``search_periods``); every
    row is measured on ``seed .. seed + replications - 1`` (``replications`` x ``periods``, 95%
    Student-t intervals over replications, so ``replications >= 2``). ``max_rounds`` bounds each
    pattern search, ``max_trades`` the trades between two nodes' levels (:func:`constrained_search`).

    One row per target, in increasing order: ``target``, ``group``, ``fill_rate`` (the group's,
    with ``fill_rate_ci95``), ``network_fill_rate``, ``meets_target``, ``investment_on_hand``,
    ``investment_in_transit``, ``cost_of_service`` (every cost but the penalties: the objective),
    ``total_cost`` (each with ``_ci95``), ``repairs``, ``dominated_by``, and per node
    ``level_<node>`` (the policy) and ``stock_<node>`` (mean on-hand: where the stock is held), per
    demand node ``fill_rate_<node>``.
    """
    targets = check_targets(targets)
    check_evaluation(periods, warmup, replications, seed)
    if replications < 2:
        raise ValueError(f"replications: {replications} gives no confidence interval; the frontier needs at least 2")
    check_run_settings(search_periods=search_periods, search_replications=search_replications)
    for name, value in (("max_rounds", max_rounds), ("max_trades", max_trades)):
        if isinstance(value, bool) or not isinstance(value, int) or value < (1 if name == "max_rounds" else 0):
            raise ValueError(f"{name}: {value!r} is not a whole number >= {1 if name == 'max_rounds' else 0}")
    topo = resolve(scenario)
    _, problem = single_sourcing_limits(topo)
    if problem is not None:
        # Base-stock policies order on each node's first lane and mode only.
        raise ValueError(f"scenario: base-stock policies order on each node's first lane and mode only, and {problem}")
    group = constrained_group(topo, node)
    integer = _integer(topo)
    step0 = initial_steps(topo, "installation")
    repair_step = np.ones(topo.n_nodes) if integer else np.maximum(step0 / 10, 1e-6)
    rows = []
    for target in targets:
        cons = constraints(topo, group, target)
        x0 = _start_levels(topo, group, target)
        base = simulate_stock(topo, x0[None], search_periods, warmup, search_replications, SEARCH_SEED)
        big = 1000.0 * max(float(base.cost.mean()), 1.0)

        def objective(c: np.ndarray, cons: list[Constraint] = cons, big: float = big) -> np.ndarray:
            res = simulate_stock(topo, c, search_periods, warmup, search_replications, SEARCH_SEED)
            return res.cost.mean(axis=1) + big * _shortfall(res, cons)

        x = constrained_search(
            objective,
            x0,
            step0,
            integer,
            max_rounds,
            max_trades,
            progress=f"frontier {topo.scenario.name} {group[0]} >= {target:g}" if progress else None,
        )
        x, res, repairs = _repair(topo, x, cons, repair_step, periods, warmup, replications, seed)
        rows.append(_row(topo, target, group[0], cons, x, res, repairs))
    df = enforce_monotone(pd.DataFrame(rows))
    df.attrs["scenario"] = topo.scenario.name
    return df


def levels_text(row: pd.Series, node_names: Sequence[str]) -> str:
    """``"node=level (stock s); ..."``: a frontier row's policy and where its stock is held."""
    return "; ".join(f"{n}={row[f'level_{n}']:g} (on hand {row[f'stock_{n}']:.3g})" for n in node_names)


def frontier_markdown(df: pd.DataFrame, scenario: str, settings: Mapping[str, Any]) -> str:
    """``frontier.md``: what was solved, the table, and the marginal cost of each step of service."""
    from meio.benchmark import markdown_table

    nodes = [c[len("level_") :] for c in df.columns if c.startswith("level_")]
    cols = [
        "target",
        "fill_rate",
        "fill_rate_ci95",
        "investment_on_hand",
        "investment_on_hand_ci95",
        "investment_in_transit",
        "cost_of_service",
        "cost_of_service_ci95",
        "total_cost",
        "repairs",
        "dominated_by",
    ]
    group = str(df["group"].iloc[0])
    last_seed = int(settings["seed"]) + int(settings["replications"]) - 1
    lines = [
        f"# Cost-service frontier: {scenario}",
        "",
        f"For each fill-rate target on **{group}**"
        + ("" if group == "network" else " (the other demand nodes keep their service targets)")
        + ", the installation base-stock policy of least cost of service (holding, ordering, transport "
        "and in-transit holding; no penalties) that meets it, searched on "
        f"{settings['search_replications']} x {settings['search_periods']} periods (seeds from {SEARCH_SEED}) "
        f"and measured on {settings['replications']} x {settings['periods']} periods after a warm-up of "
        f"{settings['warmup']} (seeds {settings['seed']}..{last_seed}); "
        "`_ci95` columns are 95% confidence half-widths over replications. Investment is mean stock times "
        "the holding cost of the node holding (or awaiting) it, per period. `repairs`: steps that raised "
        "the search's levels until the target held on the measuring seeds; `dominated_by`: a higher "
        "target whose policy was cheaper and so replaced this one's (docs/frontier.md).",
        "",
        markdown_table(df[cols]),
        "",
    ]
    lines += [
        "Marginal cost of service (change in investment on hand per point of fill rate, between consecutive targets):",
        "",
    ]
    for a, b in zip(df.iloc[:-1].itertuples(), df.iloc[1:].itertuples()):
        d_fill = 100.0 * (b.fill_rate - a.fill_rate)
        d_inv = b.investment_on_hand - a.investment_on_hand
        per = f"{d_inv / d_fill:.4g} per point" if d_fill > 1e-9 else "same policy"
        lines.append(f"- {a.target:g} -> {b.target:g}: {d_inv:+.4g} for {d_fill:+.3g} points ({per})")
    lines += ["", "Where the stock is held (levels and mean on-hand stock per node):", ""]
    lines += [f"- {r['target']:g}: {levels_text(r, nodes)}" for _, r in df.iterrows()]
    return "\n".join(lines) + "\n"


def _investment(ev: Evaluation) -> tuple[float, float]:
    """``(mean, ci95)`` of an evaluation's investment on hand per period: its own measurement where
    the evaluation has one, else its holding cost (the same quantity, ``sum_j h_j E[I_j]``) without
    an interval."""
    own = getattr(ev, "investment_on_hand", None)
    if own is not None:
        mean, ci = own
        return float(mean), float(ci)
    return float(ev.cost_split["holding"]), math.nan


def policy_points(
    evaluations: Mapping[str, Evaluation], scenario: ScenarioLike, node: str | None = None
) -> dict[str, tuple[float, float, float, float]]:
    """``{policy: (fill rate, investment on hand, its ci95, fill rate ci95)}`` of evaluated policies,
    the fill rate of the frontier's group (:func:`constrained_group`): the network's, a demand node's,
    or a segment's (the demand-weighted mean of its nodes' fill rates, weighted by their mean demand
    per period), with its 95% interval (:func:`~meio.envs.metrics.ratio_ci95` over the evaluation's
    samples; ``nan`` where the evaluation keeps none)."""
    topo = resolve(scenario)
    label, columns = constrained_group(topo, node)
    names = [topo.node_names[topo.demand_nodes[d]] for d in columns]
    weights = np.array([topo.demand_specs[d].base_mean() for d in columns])
    out: dict[str, tuple[float, float, float, float]] = {}
    for name, ev in evaluations.items():
        samples = getattr(ev, "filled_samples", np.zeros((0, 0)))
        fill_ci = math.nan
        if label == "network" or (len(columns) == 1 and label in ev.fill_rate):
            fill = float(ev.fill_rate[label])
            fill_ci = float(getattr(ev, "fill_rate_ci95", {}).get(label, math.nan))
        elif samples.size:  # the segment's units filled over its units demanded
            cols = list(columns)
            fill = float(samples[:, cols].sum() / max(ev.demand_samples[:, cols].sum(), 1e-300))
            if samples.shape[0] >= 2:
                fill_ci = float(ratio_ci95(samples[:, cols].sum(axis=1), ev.demand_samples[:, cols].sum(axis=1))[1])
        else:
            fill = float(np.dot([ev.fill_rate[n] for n in names], weights) / max(weights.sum(), 1e-300))
        out[name] = (fill, *_investment(ev), fill_ci)
    return out


def write_frontier(
    df: pd.DataFrame,
    points: Mapping[str, tuple[float, ...]],
    out_dir: str | Path,
    scenario: str,
    settings: Mapping[str, Any],
    note: str = "",
    colors: Mapping[str, str] | None = None,
) -> dict[str, Path]:
    """Write ``frontier.csv`` (every column), ``frontier.md`` (:func:`frontier_markdown`) and
    ``frontier.png`` (:func:`meio.plots.plot_cost_service_frontier`; ``colors``: each policy's colour
    in the report it belongs to) into ``out_dir``."""
    from meio import plots

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files = {"csv": out / "frontier.csv", "md": out / "frontier.md", "png": out / "frontier.png"}
    df.to_csv(files["csv"], index=False)
    files["md"].write_text(frontier_markdown(df, scenario, settings))
    group = str(df["group"].iloc[0])
    where = "network-wide" if group == "network" else f"at {group}, the others keeping their targets"
    plots.plot_cost_service_frontier(
        df,
        dict(points),
        files["png"],
        f"{scenario}: cost-service frontier ({where})",
        note or budget_note(settings),
        colors=colors,
    )
    return files


def budget_note(settings: Mapping[str, Any]) -> str:
    """The frontier's budget in words, printed under its plot."""
    return (
        f"frontier: search on {settings['search_replications']} x {settings['search_periods']} periods per target, "
        f"measured on {settings['replications']} x {settings['periods']} periods (seeds {settings['seed']}.."
        f"{int(settings['seed']) + int(settings['replications']) - 1})"
    )
