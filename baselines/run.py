"""Every baseline that applies to a scenario, evaluated alike on common random numbers.

Order: the analytic policies (Clark-Scarf, Shang-Song, the guaranteed-service model) where their
assumptions hold, the local
heuristic for any network, then the simulation-optimised installation and echelon policies,
warm-started from the best analytic levels available, then, where a node has several supply
options (alternative suppliers or transport modes), the dual-index, tailored base-surge and
fixed-split policies (:mod:`meio.baselines.sourcing`). Each is then simulated on the same seeds
(``seed, seed+1, ...``), which the search never saw.

The single-sourcing baselines order on each node's first lane and mode only
(:func:`meio.envs.policies.primary_slots`): their notes say which slots they never use, and they are
skipped, with the reason, where such a slot (or node) cannot carry the demand routed through it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from meio.baselines.analytic import clark_scarf_baseline, gsm_baseline, shang_song_baseline
from meio.baselines.base import Baseline, NotApplicable
from meio.baselines.search import SEARCH_SEED, local_levels, optimise_base_stock, optimise_s_S, optimise_service_target
from meio.baselines.sourcing import FAMILIES, multi_slot_nodes, optimise_sourcing, single_sourcing_limits
from meio.envs.hints import did_you_mean
from meio.envs.metrics import Evaluation, check_evaluation, evaluate
from meio.envs.policies import primary_slots
from meio.envs.resolve import ScenarioLike, resolve
from meio.envs.run_settings import check_run_settings
from meio.envs.scenario import Scenario
from meio.envs.simulator import Simulator
from meio.envs.topology import Topology

#: Names ``meio baselines --json`` uses, in the order they are computed.
BASELINE_NAMES = (
    "clark_scarf",
    "shang_song",
    "gsm",
    "local",
    "optimised_installation",
    "optimised_echelon",
    "optimised_s_S",
    "service_target",
    *FAMILIES,
)

#: Where Clark-Scarf (the optimum) does not apply, a run's reference is the cheapest stable one of
#: these: the local rule, the simulation-optimised policies and the sourcing families
#: (:func:`choose_reference`).
REFERENCE_CANDIDATES = ("local", "optimised_installation", "optimised_echelon", "optimised_s_S", *FAMILIES)

#: The sourcing searches evaluate more candidates per round (parameters per slot), so they run on
#: at most this many periods and replications of the search's seeds; the result is re-costed on
#: the full evaluation like every baseline.
SOURCING_SEARCH_PERIODS = 400
SOURCING_SEARCH_REPLICATIONS = 4


#: What a baseline may carry beyond its levels, written by ``meio baselines --json`` when present:
#: (s, S) reorder points, Clark-Scarf's local levels, the guaranteed-service model's service times,
#: net lead times, safety stocks and its objective, the sourcing rule's parameters, unused slots.
JSON_EXTRAS = (
    "reorder_points",
    "local_levels",
    "service_times",
    "net_lead_times",
    "safety_stock",
    "safety_stock_cost",
    "sourcing",
    "never_uses",
)


@dataclass
class BaselineReport:
    """Baselines found for one scenario, their simulations, and those skipped with the reason."""

    scenario: str
    results: list[tuple[Baseline, Evaluation]] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for b, ev in self.results:
            out[b.name] = {
                "kind": b.kind,
                "levels": b.levels,
                "expected_cost": b.expected_cost,
                "simulated_cost": {"mean": ev.cost_mean, "ci95": ev.cost_ci95, "ci_method": ev.ci_method},
                "unstable": ev.unstable,
                "backlog_growth_per_period": ev.backlog_growth,
                "cost_split": ev.cost_split,
                "fill_rate": ev.fill_rate,
                **{k: b.extra[k] for k in JSON_EXTRAS if k in b.extra},
                "notes": b.notes,
            }
        out["skipped"] = dict(self.skipped)
        return out

    def format(self) -> str:
        lines = [f"baselines for {self.scenario}"]
        for b, ev in self.results:
            exp = f"{b.expected_cost:.4f}" if b.expected_cost is not None else "-"
            lines.append(
                f"  {b.name:<24} {b.kind:<12} expected {exp:>10}   simulated {ev.cost_mean:.4f} "
                f"+- {ev.cost_ci95:.4f}   fill rate {ev.fill_rate['network']:.4f}"
            )
            if ev.unstable:
                lines.append(f"      UNSTABLE: simulated cost not meaningful: {ev.instability()}")
            lines.append("      levels: " + ", ".join(f"{k}={v:.4g}" for k, v in b.levels.items()))
            if "reorder_points" in b.extra:
                lines.append(
                    "      reorder points: " + ", ".join(f"{k}={v:.4g}" for k, v in b.extra["reorder_points"].items())
                )
            if b.notes:
                lines.append(f"      notes: {b.notes}")
        for name, why in self.skipped.items():
            lines.append(f"  {name:<24} skipped: {why}")
        return "\n".join(lines)


#: The baselines computed from the scenario alone (no search), by the function that computes each;
#: each raises :class:`NotApplicable` with the reason where its assumptions fail.
ANALYTIC: dict[str, Callable[[Scenario], Baseline]] = {
    "clark_scarf": clark_scarf_baseline,
    "shang_song": shang_song_baseline,
    "gsm": gsm_baseline,
    "local": local_levels,
}


def echelon_from_local(scenario: ScenarioLike, local: dict[str, float]) -> dict[str, float]:
    """Echelon levels that sum the installation levels of each node's echelon."""
    topo = resolve(scenario)
    vec = np.array([local[n] for n in topo.node_names])
    return {n: float(v) for n, v in zip(topo.node_names, topo.descendants() @ vec)}


def _sourcing_skip_reason(name: str, topo: Topology) -> str | None:
    """Why ``name`` cannot work with the scenario's supply options, or ``None``.

    A sourcing family needs a node with two or more slots in; every other baseline orders on the
    first lane and mode into each node only, and fails where that slot or its supplier cannot carry
    the mean demand routed through it (:func:`meio.baselines.sourcing.single_sourcing_limits`).
    """
    if name in FAMILIES:
        if not multi_slot_nodes(topo):
            return "every node orders on one lane and mode; the base-stock baselines cover it"
        return None
    _, problem = single_sourcing_limits(topo)
    if problem is not None:
        return f"orders on each node's first lane and mode only, and {problem}; use {', '.join(FAMILIES)}"
    return None


def _single_sourcing_notes(baseline: Baseline, topo: Topology) -> Baseline:
    """``baseline`` with the slots it never orders on in its notes and ``extra["never_uses"]``."""
    note, _ = single_sourcing_limits(topo)
    if not note:
        return baseline
    used = set(primary_slots(topo).tolist())
    never = [topo.slot_names[s] for s in range(topo.n_slots) if s not in used]
    return replace(
        baseline,
        notes=f"{baseline.notes}; {note}" if baseline.notes else note,
        extra={**baseline.extra, "never_uses": never},
    )


def _search_skip_reason(name: str, scenario: Scenario, topo: Topology) -> str | None:
    """Why the simulation-optimised baseline ``name`` does not apply, or ``None`` if it does."""
    if name == "optimised_echelon":
        several = topo.node_with_several_suppliers()
        if several is not None:
            return f"node {several!r} has several suppliers; echelon positions need one per node"
    elif name == "optimised_s_S":
        if not (topo.slot_fixed_cost[primary_slots(topo)] > 0).any():
            return "no lane a node orders on has a fixed ordering cost; base-stock policies suffice"
    elif name == "service_target":
        without = [n.id for n in scenario.demand_nodes if n.service_target is None]
        if without:
            return f"demand node {without[0]!r} has no service_target"
    return None


def applicability(scenario: ScenarioLike) -> dict[str, str | None]:
    """For each of :data:`BASELINE_NAMES`, ``None`` if it applies to ``scenario``, else the reason.

    The analytic baselines are computed (their assumptions are checked as they are solved, in well
    under a second on the shipped scenarios); the searches are not run.
    """
    topo = resolve(scenario)
    sc = topo.scenario
    out: dict[str, str | None] = {}
    for name in BASELINE_NAMES:
        if name in ANALYTIC:
            try:
                ANALYTIC[name](sc)
                out[name] = _sourcing_skip_reason(name, topo)
            except NotApplicable as why:
                out[name] = str(why)
        else:
            out[name] = _search_skip_reason(name, sc, topo) or _sourcing_skip_reason(name, topo)
    return out


def run_baselines(
    scenario: ScenarioLike,
    periods: int = 10_000,
    warmup: int = 200,
    replications: int = 10,
    seed: int = 0,
    search_periods: int = 1000,
    search_replications: int = 8,
    include: tuple[str, ...] = BASELINE_NAMES,
    progress: bool = False,
) -> BaselineReport:
    """Compute and simulate every applicable baseline in ``include``."""
    check_evaluation(periods, warmup, replications, seed)  # before the search, not after it
    check_run_settings(search_periods=search_periods, search_replications=search_replications)
    unknown = [n for n in include if n not in BASELINE_NAMES]
    if unknown:
        raise ValueError(
            f"include: {unknown[0]!r} is not a baseline{did_you_mean(unknown[0], BASELINE_NAMES)}; "
            f"choose from {', '.join(BASELINE_NAMES)}"
        )
    topo = resolve(scenario)
    sc = topo.scenario
    report = BaselineReport(scenario=sc.name)
    found: dict[str, Baseline] = {}
    for name, fn in ANALYTIC.items():
        if name not in include:
            continue
        try:
            found[name] = fn(sc)
        except NotApplicable as why:
            report.skipped[name] = str(why)
    local = found.get("local") or local_levels(topo)
    single_skip = _sourcing_skip_reason("local", topo)
    if single_skip is not None:
        for name in [n for n in found if n in ANALYTIC]:
            del found[name]
            report.skipped[name] = single_skip
    cs = found.get("clark_scarf")
    starts = {
        "optimised_installation": ("installation", cs.extra["local_levels"] if cs else local.levels),
        "optimised_echelon": ("echelon", cs.levels if cs else echelon_from_local(topo, local.levels)),
    }
    for name, (kind, start) in starts.items():
        if name not in include:
            continue
        why = _search_skip_reason(name, sc, topo) or single_skip
        if why is not None:
            report.skipped[name] = why
            continue
        found[name], _ = optimise_base_stock(
            topo,
            kind,
            start,
            periods=search_periods,
            warmup=warmup,
            replications=search_replications,
            seed=SEARCH_SEED,
            name=name,
            progress=progress,
        )
    start = (found.get("optimised_installation") or local).levels
    if "optimised_s_S" in include:
        why = _search_skip_reason("optimised_s_S", sc, topo) or single_skip
        if why is None:
            found["optimised_s_S"], _ = optimise_s_S(
                topo, start, periods=search_periods, warmup=warmup, replications=search_replications, progress=progress
            )
        else:
            report.skipped["optimised_s_S"] = why
    if "service_target" in include:
        why = _search_skip_reason("service_target", sc, topo) or single_skip
        if why is not None:
            report.skipped["service_target"] = why
        else:
            found["service_target"], _ = optimise_service_target(
                topo,
                local.levels,
                periods=search_periods,
                warmup=warmup,
                replications=search_replications,
                progress=progress,
            )
    found = {name: _single_sourcing_notes(b, topo) for name, b in found.items()}
    wanted = [name for name in FAMILIES if name in include]
    why = _sourcing_skip_reason(FAMILIES[0], topo)
    # The searches are local: from the optimised installation levels and from the local rule's
    # they can land on optima a few per cent apart (docs/baselines.md), so both are searched.
    other_starts = {"local rule": local.levels} if start != local.levels else None
    for name in wanted:
        if why is not None:
            report.skipped[name] = why
            continue
        # Started from the single-sourcing levels found above (``start``: the optimised installation
        # policy's where it ran), which each family's search turns into its own parameters.
        found[name] = optimise_sourcing(
            topo,
            name,
            start,  # type: ignore[arg-type]
            periods=min(search_periods, SOURCING_SEARCH_PERIODS),
            warmup=min(warmup, 50),
            replications=min(search_replications, SOURCING_SEARCH_REPLICATIONS),
            seed=SEARCH_SEED,
            name=name,
            progress=progress,
            other_starts=other_starts,
        )
    sim = Simulator(topo, n=replications)
    for name in include:
        if name in found:
            b = found[name]
            report.results.append(
                (
                    b,
                    evaluate(
                        sim,
                        b.policy(sim.topology),
                        periods=periods,
                        warmup=warmup,
                        replications=replications,
                        seed=seed,
                        progress=progress,
                    ),
                )
            )
    return report


def choose_reference(evaluations: Mapping[str, Evaluation]) -> str | None:
    """The yardstick among evaluated policies ``{name: evaluation}`` (same seeds): ``clark_scarf``,
    the optimum, where it was evaluated; else the cheapest of :data:`REFERENCE_CANDIDATES` whose
    cost is a long-run cost (not :attr:`~meio.envs.metrics.Evaluation.unstable`: an unstable policy's
    cost grows with the window); ``None`` if there is none."""
    if "clark_scarf" in evaluations:
        return "clark_scarf"
    stable = {n: ev.cost_mean for n, ev in evaluations.items() if n in REFERENCE_CANDIDATES and not ev.unstable}
    return min(stable, key=stable.__getitem__) if stable else None


def reference_baseline(
    scenario: ScenarioLike,
    periods: int = 10_000,
    warmup: int = 200,
    replications: int = 10,
    seed: int = 0,
    search_periods: int = 1000,
    search_replications: int = 8,
    progress: bool = False,
) -> tuple[Baseline, Evaluation] | None:
    """The reference policy of a run and its evaluation on seeds ``seed, seed+1, ...``
    (:func:`choose_reference`): Clark-Scarf where it applies, else the candidates are searched and
    the cheapest stable one is returned; ``None`` where no candidate applies or all are unstable."""
    topo = resolve(scenario)
    settings: dict[str, Any] = dict(
        periods=periods,
        warmup=warmup,
        replications=replications,
        seed=seed,
        search_periods=search_periods,
        search_replications=search_replications,
        progress=progress,
    )
    report = run_baselines(topo, include=("clark_scarf",), **settings)
    if not report.results:
        report = run_baselines(topo, include=REFERENCE_CANDIDATES, **settings)
    results = {b.name: (b, ev) for b, ev in report.results}
    name = choose_reference({n: ev for n, (_, ev) in results.items()})
    return None if name is None else results[name]
