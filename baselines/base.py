"""What every baseline returns, and how it says it does not apply to a scenario."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from meio.envs.policies import BaseStockPolicy
from meio.envs.scenario import EXTERNAL, Scenario
from meio.envs.topology import Topology


class NotApplicable(ValueError):
    """The scenario is outside the baseline's assumptions; the message says which one."""


@dataclass(frozen=True)
class Baseline:
    """A base-stock policy found by a baseline, with its analytic cost where theory gives one.

    ``kind``: ``installation`` or ``echelon`` base-stock levels, or ``sourcing`` for the rules of
    :mod:`meio.baselines.sourcing` (a subclass whose ``policy`` builds their policy)."""

    name: str
    kind: Literal["installation", "echelon", "sourcing"]
    levels: dict[str, float]
    expected_cost: float | None = None
    expected_split: dict[str, float] | None = None
    notes: str = ""
    extra: dict[str, object] = field(default_factory=dict)

    def policy(self, topology: Topology) -> BaseStockPolicy:
        """The policy in the simulator (the same face as every other policy)."""
        reorder = self.extra.get("reorder_points")
        return BaseStockPolicy(topology, self.levels, kind=self.kind, name=self.name, reorder_points=reorder)


def serial_stages(scenario: Scenario) -> list[str]:
    """Node ids of a serial chain, the demand-facing stage first; raises :class:`NotApplicable`.

    A serial chain: one demand node, which ships to nobody; every node has one supplier and at
    most one customer; the top node buys from the external supplier.
    """
    demand = scenario.demand_nodes
    if len(demand) != 1:
        raise NotApplicable(f"not a serial chain: {len(demand)} nodes face demand")
    stages = [demand[0].id]
    if scenario.lanes_from(stages[0]):
        raise NotApplicable(f"not a serial chain: the demand node {stages[0]!r} also supplies other nodes")
    while True:
        lanes_in = scenario.lanes_into(stages[-1])
        if len(lanes_in) != 1:
            raise NotApplicable(f"not a serial chain: {stages[-1]!r} has {len(lanes_in)} suppliers")
        source = lanes_in[0].source
        if source == EXTERNAL:
            break
        if len(scenario.lanes_from(source)) != 1:
            raise NotApplicable(f"not a serial chain: {source!r} supplies {len(scenario.lanes_from(source))} nodes")
        stages.append(source)
    if len(stages) != len(scenario.nodes):
        raise NotApplicable("not a serial chain: some nodes are off the chain")
    return stages
