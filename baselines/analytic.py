"""Analytic baselines on scenarios: Clark-Scarf and Shang-Song for serial chains, the GSM on trees.

These adapters read a :class:`~meio.envs.scenario.Scenario`, check that it meets the model's
assumptions (raising :class:`~meio.baselines.base.NotApplicable` with the reason otherwise), call the
solvers of :mod:`meio.baselines.serial` and :mod:`meio.baselines.gsm` and return a
:class:`~meio.baselines.base.Baseline`. For Clark-Scarf and Shang-Song the ``expected_cost`` is
comparable with the simulator's total cost per period: the solvers' holding and backorder cost plus
the costs no policy changes (per-unit transport ``unit_cost * mean demand`` per lane and in-transit
holding ``pipeline_holding_cost * mean demand * L`` per lane).

Demand moments: every analytic baseline reads a scenario's demand through :func:`analysis_moments`.
A ``normal`` demand is analysed as the untruncated ``N(mean, sd)`` the file gives, as in Snyder &
Shen (2019) and stockpyl, so published instances reproduce from scenario files; the simulator
censors it at 0 (``docs/baselines.md``, "Normal demand").
"""

from __future__ import annotations

import math

from meio.baselines.base import Baseline, NotApplicable, serial_stages
from meio.baselines.serial import (
    SerialSolution,
    check_iid_demand,
    check_serial_demand,
    clark_scarf,
    shang_song,
)
from meio.envs.distributions import DemandSpec
from meio.envs.scenario import Scenario


def analysis_moments(spec: DemandSpec) -> tuple[float, float]:
    """Mean and standard deviation per period of one node's demand as the analytic baselines read it.

    A ``normal`` demand is taken as given, the untruncated ``N(mu, sigma)`` of the textbook models
    (Snyder & Shen 2019, ch. 4 and 6; Graves & Willems 2000): ``(mu, sigma)``. The simulator draws
    ``max(X, 0)``, whose moments (:meth:`~meio.envs.distributions.DemandSpec.base_mean`, ``base_sd``)
    differ from these by terms of the order of ``P(X < 0)``: negligible for ``sigma`` small against
    ``mu`` (``P(X < 0) = 3e-7`` at ``mu / sigma = 5``), large otherwise (mean 5, sd 5: 5.42 and 4.33
    censored). Every other distribution is non-negative already, so its moments are its own.
    """
    if spec.dist == "normal":
        return float(spec.mean), float(spec.sd)
    return spec.base_mean(), spec.base_sd()


def _serial_inputs(scenario: Scenario) -> tuple[list[str], list[int], list[float], float, DemandSpec, float]:
    """Stages, lead times, echelon holding costs, backorder cost, demand and policy-free costs."""
    stages = serial_stages(scenario)
    if scenario.unmet_demand != "backorder":
        raise NotApplicable("unmet demand is lost; Clark-Scarf assumes backorders")
    lead_times, fixed_costs = [], 0.0
    constant = 0.0
    demand = scenario.node(stages[0]).demand
    try:
        check_serial_demand(demand, f"nodes[{scenario.node_ids.index(stages[0])}].demand")
    except ValueError as exc:
        raise NotApplicable(str(exc)) from None
    mean, _ = analysis_moments(demand)
    for node_id in stages:
        node = scenario.node(node_id)
        if math.isfinite(node.capacity):
            raise NotApplicable(f"node {node_id!r} has a capacity; Clark-Scarf assumes none")
        lane = scenario.lanes_into(node_id)[0]
        if len(lane.modes) != 1:
            raise NotApplicable(f"the lane into {node_id!r} has several transport modes")
        if lane.disruption is not None:
            raise NotApplicable(f"the supplier of {node_id!r} has outages")
        mode = lane.modes[0]
        if not mode.lead_time.is_constant:
            raise NotApplicable(f"the lead time into {node_id!r} is random; Clark-Scarf assumes constant lead times")
        if math.isfinite(mode.capacity):
            raise NotApplicable(f"the lane into {node_id!r} has a capacity; Clark-Scarf assumes none")
        fixed_costs += mode.fixed_cost
        lead_times.append(mode.lead_time.values[0])
        constant += mean * (mode.unit_cost + mode.pipeline_holding_cost * mode.lead_time.values[0])
    if fixed_costs:
        raise NotApplicable("lanes have fixed ordering costs; base-stock policies are not optimal with them")
    local = [scenario.node(s).holding_cost for s in stages] + [0.0]
    echelon = [local[k] - local[k + 1] for k in range(len(stages))]
    for k, value in enumerate(echelon):
        if value < 0:
            raise NotApplicable(
                f"holding cost falls from {stages[k + 1]!r} to {stages[k]!r} (echelon holding cost {value:g} < 0); "
                "Clark-Scarf needs local holding costs that do not decrease downstream"
            )
    if echelon[-1] <= 0:
        raise NotApplicable(f"the top stage {stages[-1]!r} has no holding cost; its optimal level is unbounded")
    return stages, lead_times, echelon, scenario.node(stages[0]).penalty_cost, demand, constant


def _baseline(name: str, stages: list[str], solution: SerialSolution, constant: float, notes: str) -> Baseline:
    split = {
        "holding": solution.cost_split["holding"],
        "backorder": solution.cost_split["backorder"],
        "policy_independent": constant,
    }
    return Baseline(
        name=name,
        kind="echelon",
        levels={s: float(v) for s, v in zip(stages, solution.echelon_levels)},
        expected_cost=solution.expected_cost + constant,
        expected_split=split,
        notes=notes,
        extra={
            "local_levels": {s: float(v) for s, v in zip(stages, solution.local_levels)},
            "fill_rate": solution.fill_rate,
            "expected_backorders": solution.expected_backorders,
            "expected_on_hand": {s: float(v) for s, v in zip(stages, solution.expected_on_hand)},
        },
    )


_NORMAL_NOTE = (
    "normal demand is untruncated in the analysis and censored at 0 in the simulator; "
    "the difference is of the order of P(demand < 0)"
)


def clark_scarf_baseline(scenario: Scenario) -> Baseline:
    """Exact optimal echelon base-stock levels of a serial chain (Clark & Scarf 1960)."""
    stages, lead, echelon, p, demand, constant = _serial_inputs(scenario)
    sol = clark_scarf(lead, echelon, p, demand)
    return _baseline("clark_scarf", stages, sol, constant, _NORMAL_NOTE if demand.dist == "normal" else "")


def shang_song_baseline(scenario: Scenario) -> Baseline:
    """Shang & Song (2003) closed-form approximation of the same levels, costed exactly."""
    stages, lead, echelon, p, demand, constant = _serial_inputs(scenario)
    sol = shang_song(lead, echelon, p, demand)
    return _baseline("shang_song", stages, sol, constant, _NORMAL_NOTE if demand.dist == "normal" else "")


def gsm_baseline(scenario: Scenario) -> Baseline:
    """Safety-stock placement by the guaranteed-service model (Graves & Willems 2000), as levels.

    Mapping to the model (Snyder & Shen 2019, section 6.3): the processing time ``T_j`` is the
    lead time ``L_j`` into ``j`` (its mean, rounded up, when random) less the external supplier's
    service time ``si_j`` (the lane's ``service_time``, which is the first part of ``L_j``), plus
    the review period at a node facing customers (in this project's timing an internal node's
    customers order at the start of a period, with the node's own order); the external inbound
    service time is ``si_j``, so the replenishment time ``si_j + T_j`` is the simulator's; the
    maximum service time ``s_j`` is the node's ``max_service_time`` (default: 0 at a node facing
    customers, no limit elsewhere); ``h_j`` the local holding cost; demand per period at demand
    nodes, mean and standard deviation by :func:`analysis_moments` (a normal is untruncated);
    service level ``alpha_j`` by :func:`meio.baselines.search.service_levels` (the node's
    ``service_target``, else the critical ratio ``p / (p + h)``; at an internal node the largest
    of the demand nodes it serves), at least 0.5. The resulting
    base-stock level ``mu_j tau_j + z_j sigma_j sqrt(tau_j)`` of each node is run as an installation
    base-stock level. ``expected_cost`` is left empty: the model's objective (in ``extra``) is the
    holding cost of safety stock only, not a long-run total cost.
    """
    from meio.baselines.gsm import optimize_gsm
    from meio.baselines.search import service_levels
    from meio.envs.resolve import resolve

    if scenario.unmet_demand != "backorder":
        raise NotApplicable("unmet demand is lost; the guaranteed-service model assumes demand is always met")
    edges: list[tuple[str, str]] = []
    processing: dict[str, int] = {}
    external_service: dict[str, int] = {}
    for node in scenario.nodes:
        lanes = scenario.lanes_into(node.id)
        internal = [l for l in lanes if not l.is_external]
        if node.sourcing == "alternative":
            raise NotApplicable(f"{node.id!r} buys one item from several suppliers; the GSM needs a spanning tree")
        if any(ratio != 1.0 for _, ratio in node.bom):
            raise NotApplicable(f"{node.id!r} has a bill of materials with ratios other than 1")
        if node.sourcing == "assembly" and len(internal) != len(lanes):
            raise NotApplicable(
                f"{node.id!r} assembles an externally bought component; the GSM tree needs one "
                "external supplier per node"
            )
        edges += [(l.source, node.id) for l in internal]
        lead = max(math.ceil(l.modes[0].lead_time.mean - 1e-9) for l in lanes)
        # Without predecessors the node has one lane, from the external supplier: its quoted service
        # time is the first si_j periods of the lead time (checked <= the lead time at load time).
        si = lanes[0].service_time if not internal else 0
        if si:
            external_service[node.id] = si
        processing[node.id] = lead - si + (1 if node.demand is not None else 0)
    demand = {n.id: n.demand for n in scenario.nodes if n.demand is not None}
    for i, node in enumerate(scenario.nodes):
        if node.demand is not None:
            try:
                check_iid_demand(node.demand, f"nodes[{i}].demand")
            except ValueError as exc:
                raise NotApplicable(f"{exc}; the GSM needs demand moments per period") from None
    topo = resolve(scenario)
    alpha = service_levels(scenario, topo)
    ratio = {}
    for j, name in enumerate(topo.node_names):
        # The GSM's safety stock z_j sigma_j sqrt(tau_j) needs z_j >= 0 (alpha_j >= 0.5): a critical
        # ratio below 0.5 plans no safety stock. A service_target is passed as given (the model
        # refuses one below 0.5).
        planned = float(alpha[j])
        ratio[name] = planned if scenario.node(name).service_target is not None else max(planned, 0.5)
    try:
        sol = optimize_gsm(
            nodes=[n.id for n in scenario.nodes],
            edges=edges,
            processing_times=processing,
            holding_costs={n.id: n.holding_cost for n in scenario.nodes},
            demand_mean={k: analysis_moments(d)[0] for k, d in demand.items()},
            demand_sd={k: analysis_moments(d)[1] for k, d in demand.items()},
            service_level=ratio,
            max_service_time={n.id: n.max_service_time for n in scenario.nodes if n.max_service_time is not None},
            external_service_time=external_service,
        )
    except ValueError as exc:  # not a spanning tree, etc.
        raise NotApplicable(f"the guaranteed-service model does not fit: {exc}") from None
    return Baseline(
        name="gsm",
        kind="installation",
        levels=dict(sol.base_stock_levels),
        notes="guaranteed-service model (Graves & Willems 2000); levels mu*tau + z*sigma*sqrt(tau) run as "
        "installation base-stock levels; the simulator ships as soon as it can instead of quoting service times"
        + ("; " + _NORMAL_NOTE if any(d.dist == "normal" for d in demand.values()) else ""),
        extra={
            "service_times": sol.service_times,
            "net_lead_times": sol.net_lead_times,
            "safety_stock": sol.safety_stock,
            "safety_stock_cost": sol.expected_cost,
        },
    )
