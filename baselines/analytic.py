"""Analytic baselines on scenarios: Clark-Scarf and Shang-Song for serial chains.

These adapters read a :class:`~envs.scenario.Scenario`, check that it meets the model's
assumptions (raising :class:`~baselines.base.NotApplicable` with the reason otherwise), call the
solvers of :mod:`baselines.serial` and return a :class:`~baselines.base.Baseline` whose
``expected_cost`` is comparable with the simulator's total cost per period: the solvers' holding
and backorder cost plus the costs no policy changes (per-unit transport ``unit_cost * mean demand``
per lane and in-transit holding ``pipeline_holding_cost * mean demand * L`` per lane).
"""

from __future__ import annotations

import math

from baselines.base import Baseline, NotApplicable, serial_stages
from baselines.serial import SerialSolution, clark_scarf, shang_song
from envs.scenario import Scenario


def _serial_inputs(scenario: Scenario) -> tuple[list[str], list[int], list[float], float, dict, float]:
    """Stages, lead times, echelon holding costs, backorder cost, demand dict and policy-free costs."""
    stages = serial_stages(scenario)
    if scenario.unmet_demand != "backorder":
        raise NotApplicable("unmet demand is lost; Clark-Scarf assumes backorders")
    lead_times, fixed_costs = [], 0.0
    constant = 0.0
    demand = scenario.node(stages[0]).demand
    if demand.dist == "trace" or demand.seasonality is not None or demand.trend:
        raise NotApplicable("demand is a trace or not stationary; Clark-Scarf needs i.i.d. demand")
    mean = demand.base_mean()
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
    return stages, lead_times, echelon, scenario.node(stages[0]).penalty_cost, demand.to_dict(), constant


def _baseline(name: str, stages: list[str], solution: SerialSolution, constant: float, notes: str) -> Baseline:
    split = {"holding": solution.cost_split["holding"], "backorder": solution.cost_split["backorder"],
             "policy_independent": constant}
    return Baseline(
        name=name, kind="echelon",
        levels={s: float(v) for s, v in zip(stages, solution.echelon_levels)},
        expected_cost=solution.expected_cost + constant, expected_split=split, notes=notes,
        extra={"local_levels": {s: float(v) for s, v in zip(stages, solution.local_levels)},
               "fill_rate": solution.fill_rate, "expected_backorders": solution.expected_backorders,
               "expected_on_hand": {s: float(v) for s, v in zip(stages, solution.expected_on_hand)}},
    )


_NORMAL_NOTE = ("normal demand is untruncated in the analysis and censored at 0 in the simulator; "
                "the difference is of the order of P(demand < 0)")


def clark_scarf_baseline(scenario: Scenario) -> Baseline:
    """Exact optimal echelon base-stock levels of a serial chain (Clark & Scarf 1960)."""
    stages, lead, echelon, p, demand, constant = _serial_inputs(scenario)
    sol = clark_scarf(lead, echelon, p, demand)
    return _baseline("clark_scarf", stages, sol, constant, _NORMAL_NOTE if demand["dist"] == "normal" else "")


def shang_song_baseline(scenario: Scenario) -> Baseline:
    """Shang & Song (2003) closed-form approximation of the same levels, costed exactly."""
    stages, lead, echelon, p, demand, constant = _serial_inputs(scenario)
    sol = shang_song(lead, echelon, p, demand)
    return _baseline("shang_song", stages, sol, constant, _NORMAL_NOTE if demand["dist"] == "normal" else "")
