"""Policies: anything that maps a batch of simulator states to a batch of orders.

Every policy, a base-stock rule given by hand, one computed by a baseline, or a trained agent,
has the same face, :class:`Policy`: ``policy.act(sim)`` returns orders of shape ``(n, S)`` in units
for every row of the :class:`~meio.envs.simulator.Simulator`. The evaluation code treats them alike.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal, Protocol, runtime_checkable

import numpy as np

from meio.envs.hints import did_you_mean
from meio.envs.simulator import Simulator
from meio.envs.topology import Topology

#: Target of a slot a base-stock policy does not use: its order is always 0.
_UNUSED = -1e300


@runtime_checkable
class Policy(Protocol):
    """Maps the state of every row of a simulator to orders ``(n, S)`` in units."""

    name: str

    def act(self, sim: Simulator) -> np.ndarray: ...


def primary_slots(topo: Topology) -> np.ndarray:
    """The slot each node orders on under a single-sourcing rule: its first lane in, first mode.

    For an assembly node, the first slot of each component lane (it orders every component).
    """
    chosen: list[int] = []
    for j in range(topo.n_nodes):
        seen_lanes: set[int] = set()
        for s in topo.slots_into(j):
            lane = int(topo.slot_lane[s])
            if topo.is_assembly[j]:
                if lane not in seen_lanes:
                    chosen.append(int(s))
                    seen_lanes.add(lane)
            elif not seen_lanes:
                chosen.append(int(s))
                seen_lanes.add(lane)
    return np.array(sorted(chosen), dtype=np.int64)


def parse_levels(text: str) -> dict[str, float]:
    """``"retailer=6.49,dc=12.02"`` -> ``{"retailer": 6.49, "dc": 12.02}``."""
    levels: dict[str, float] = {}
    for i, part in enumerate(p for p in text.split(",") if p.strip()):
        if "=" not in part:
            raise ValueError(f"levels: item {i + 1} ({part.strip()!r}) is not NODE=LEVEL")
        node, value = (x.strip() for x in part.split("=", 1))
        if node in levels:
            raise ValueError(f"levels.{node}: given twice ({levels[node]:g} and {value}); give one level per node")
        try:
            levels[node] = float(value)
        except ValueError:
            raise ValueError(f"levels.{node}: {value!r} is not a number") from None
    if not levels:
        raise ValueError("levels: give one NODE=LEVEL per node, separated by commas")
    return levels


class BaseStockPolicy:
    """Order-up-to (base-stock) levels per node, installation or echelon.

    * ``installation``: node ``j`` orders ``max(0, S_j - installation position_j)`` on its primary
      slot (its first lane in, first mode; each component lane of an assembly node, at
      ``ratio * S_j``).
    * ``echelon`` (every node has one supplier): ``max(0, S^e_j - echelon position_j)``, the
      echelon of ``j`` being ``j`` and everything downstream (Clark & Scarf 1960).

    Positions are defined in ``docs/model.md``. Other slots (alternative sources, other modes) get no
    orders.

    Levels (and reorder points) are any finite numbers, negative ones included: a negative level
    makes the node order only once its position has fallen below it, i.e. it plans to owe that
    many units (to its customers or its downstream nodes) before it replenishes. Such levels arise
    in theory (echelon levels converted from installation ones, ``S^e_j = sum_{i <= j} S_i``;
    Snyder & Shen 2019, section 6.2; stockpyl's ``local_to_echelon_base_stock_levels`` test has
    installation levels (3, -4, 5) for echelon levels (3, -1, 4)) and the rule is well defined
    for them, so they are simulated as given rather than refused.
    """

    def __init__(
        self,
        topo: Topology,
        levels: Mapping[str, float] | np.ndarray,
        kind: Literal["installation", "echelon"] = "installation",
        name: str | None = None,
        reorder_points: Mapping[str, float] | np.ndarray | None = None,
    ) -> None:
        """``levels``: ``{node: level}``, or an array in topological order, ``(N,)`` or ``(n, N)``
        for one set of levels per simulator row (used to evaluate many candidates at once).
        ``reorder_points`` (same forms, installation only) turn the rule into (s, S): node ``j``
        orders up to ``S_j`` only when its position is at or below ``s_j <= S_j``."""
        if kind not in ("installation", "echelon"):
            raise ValueError(f"kind: {kind!r} is not 'installation' or 'echelon'")
        level_by_node = self._as_vector(topo, levels, "levels")
        reorder_by_node = None
        if reorder_points is not None:
            if kind != "installation":
                raise ValueError("reorder_points: (s, S) rules are installation rules; use kind: installation")
            reorder_by_node = self._as_vector(topo, reorder_points, "reorder_points")
            if (reorder_by_node > level_by_node + 1e-12).any():
                j = int(np.argwhere(reorder_by_node > level_by_node + 1e-12)[0][-1])
                raise ValueError(f"reorder_points.{topo.node_names[j]}: above the order-up-to level; need s <= S")
        names = topo.node_names
        several = topo.node_with_several_suppliers() if kind == "echelon" else None
        if several is not None:
            raise ValueError(
                f"kind: echelon base-stock needs every node to have one supplier; {several!r} has "
                "several (use kind: installation)"
            )
        self.kind = kind
        self.levels = {n: level_by_node[..., j].tolist() for j, n in enumerate(names)}
        self.reorder_points = (
            None if reorder_by_node is None else {n: reorder_by_node[..., j].tolist() for j, n in enumerate(names)}
        )
        self.name = name or ("s_S" if reorder_by_node is not None else f"base_stock_{kind}")
        self._topo = topo
        self._slots = primary_slots(topo)
        self._targets = self._slot_values(topo, level_by_node)
        self._reorder = None if reorder_by_node is None else self._slot_values(topo, reorder_by_node)
        self._node_of_slot = topo.slot_dst[self._slots]

    def _slot_values(self, topo: Topology, by_node: np.ndarray) -> np.ndarray:
        out = np.full(by_node.shape[:-1] + (topo.n_slots,), _UNUSED)
        slots = self._slots
        out[..., slots] = by_node[..., topo.slot_dst[slots]] * topo.lane_bom[topo.slot_lane[slots]]
        return out

    @staticmethod
    def _as_vector(topo: Topology, levels: Mapping[str, float] | np.ndarray, field: str) -> np.ndarray:
        names = topo.node_names
        if isinstance(levels, Mapping):
            for node, value in levels.items():
                if node not in names:
                    raise ValueError(
                        f"{field}.{node}: not a node of {topo.scenario.name}"
                        f"{did_you_mean(str(node), names)}; nodes: {', '.join(names)}"
                    )
                if isinstance(value, bool) or not isinstance(value, (int, float, np.number)) or not np.isfinite(value):
                    raise ValueError(
                        f"{field}.{node}: {value!r} is not a finite number; base-stock levels are "
                        "finite numbers (negative ones allowed)"
                    )
            missing = [n for n in names if n not in levels]
            if missing:
                raise ValueError(f"{field}: no level for {', '.join(missing)}; every node needs one")
            return np.array([float(levels[n]) for n in names])
        arr = np.asarray(levels, dtype=float)
        if arr.shape[-1:] != (len(names),) or arr.ndim > 2:
            raise ValueError(f"{field}: shape {arr.shape}; expected ({len(names)},) or (rows, {len(names)})")
        if not np.isfinite(arr).all():
            raise ValueError(f"{field}: every level must be a finite number (negative ones allowed)")
        return arr

    def act(self, sim: Simulator) -> np.ndarray:
        if self.kind == "installation":
            return sim.orders_up_to(self._targets, self._reorder)
        echelon = sim.echelon_positions()
        orders = np.zeros((sim.n, self._topo.n_slots))
        orders[:, self._slots] = np.maximum(self._targets[..., self._slots] - echelon[:, self._node_of_slot], 0.0)
        return orders
