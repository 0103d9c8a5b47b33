"""What a policy learned: its order-up-to levels and its allocation as the state changes.

A base-stock policy raises a node's inventory position to a constant level ``S_j`` every period.
A learned policy (PPO, HDPO) maps the whole state to orders, so the position it raises a node to,
``y_{j,t}``, may move with the state. :func:`explain` runs every policy on the same seed (common
random numbers, through :func:`meio.envs.metrics.evaluate`) and records per period ``t`` and node
``j`` (positions as in ``docs/model.md``):

* ``x_{j,t}``, the installation position **before** ``j`` orders: on hand + inbound - customer
  backorders - owed to customers, counting the orders its customers placed this period
  (customers decide first), not ``j``'s own;
* ``y_{j,t}``, the installation position **after** ``j`` orders (``x`` plus ``j``'s orders for an
  ordinary node, whole kits for an assembly node): the order-up-to level the policy acted as;
* the same two for the **echelon** position ``x^e, y^e`` where every node has one supplier (the
  echelon of ``j`` is ``j`` and everything downstream; orders inside it cancel, so ``y^e - x^e`` is
  ``j``'s own order); for a node with nothing downstream it is the installation position;
* the order on every slot, ``j``'s on hand ``I_j`` and its supplier's on hand at decision time;
* for a node with several customers (a warehouse), what each slot was owed before shipping and
  what it was shipped.

Summaries (:func:`level_table`, :func:`allocation_table`, :func:`sourcing_table`):

* **levels**: mean, sd and 5/50/95th percentiles of ``y``; the OLS slopes of ``y`` on ``x`` and on the
  supplier's on hand ``I_{u(j)}``, each a simple regression with its ``R^2``; the mean of ``y`` in
  the periods that start with the supplier's on hand at 0 and in the others. A base-stock policy
  that always orders has ``sd(y) = 0`` and slopes 0 (``R^2`` undefined: empty); a rule
  ``y = a + b x`` gives slope ``b`` with ``R^2 = 1``.
* **allocation**: in the periods where a warehouse ships less than it is owed (short periods),
  child ``c``'s share ``q_{c,t} / sum_k q_{k,t}`` of the units shipped, averaged over those periods
  and over all periods with a shipment, beside its share of what was owed in short periods (the
  share proportional rationing gives) and its share of the customer demand below it.
* **sourcing**: for a node with several slots in (alternative suppliers, transport modes), each
  slot's mean order and share of what the node ordered, beside its unit and fixed cost.

The simulator applies the scenario's allocation rule; a policy moves the shares only through what
its orders make the warehouse owe. Shares are what each child received, not what was decided for it.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from meio.envs.dynamics import O_DEMAND
from meio.envs.hints import did_you_mean
from meio.envs.metrics import N_BATCHES, Evaluation, evaluate
from meio.envs.policies import Policy, primary_slots
from meio.envs.resolve import ScenarioLike, resolve
from meio.envs.run_settings import check_setting
from meio.envs.simulator import Simulator
from meio.envs.topology import Topology

#: ``--baselines`` value that stands for the benchmark's reference policy
#: (:func:`meio.baselines.run.reference_baseline`).
REFERENCE = "reference"

#: Relative tolerance under which a level counts as constant and a warehouse as having shipped all it owed.
TOL = 1e-9

#: Points per policy and panel in ``levels.png`` (evenly spaced periods of the record).
PLOT_POINTS = 3000


@dataclass
class Trace:
    """Per period ``t`` of the record (after the warm-up) of one policy, one simulator row.

    Arrays ``(T, N)`` are per node in topological order, ``(T, S)`` per slot."""

    name: str
    kind: str  # "agent", or the baseline's kind: installation, echelon, sourcing
    on_hand: np.ndarray  # (T, N) I_j at decision time (end of t-1)
    position_before: np.ndarray  # (T, N) x_{j,t}
    position_after: np.ndarray  # (T, N) y_{j,t}
    echelon_before: np.ndarray | None  # (T, N), None where a node has several suppliers
    echelon_after: np.ndarray | None
    orders: np.ndarray  # (T, S) after clipping at 0 and rounding, as the simulator applies them
    owed: np.ndarray  # (T, S) owed on each slot before shipping (this period's orders included)
    shipped: np.ndarray  # (T, S)
    demand: np.ndarray  # (T, D) customer demand per demand node
    evaluation: Evaluation
    levels: dict[str, float] | None = None  # a classical policy's constant levels


class _Recorder:
    """Wraps a policy and records the state it saw and what it ordered (see :class:`Trace`).

    Read-only for the run: the positions after ordering are computed by adding the orders to the
    obligations of age 0 (as step 1 of the period does), reading the positions and putting the
    arrays back as they were, bit for bit."""

    def __init__(self, policy: Policy, topo: Topology, total: int) -> None:
        self.policy = policy
        self.name = policy.name
        self.topo = topo
        n, s, d = topo.n_nodes, topo.n_slots, topo.n_demand
        self.echelon = topo.node_with_several_suppliers() is None
        self.on_hand = np.zeros((total, n))
        self.before = np.zeros((total, n))
        self.after = np.zeros((total, n))
        self.ech_before = np.zeros((total, n))
        self.ech_after = np.zeros((total, n))
        self.orders = np.zeros((total, s))
        self.owed = np.zeros((total, s))
        self.shipped = np.zeros((total, s))
        self.demand = np.zeros((total, d))
        # owed out of node j: sum of the orders on the slots it ships (slot units = j's units).
        internal = np.flatnonzero(topo.slot_src >= 0)
        self.out_map = np.zeros((s, n))
        self.out_map[internal, topo.slot_src[internal]] = 1.0
        self.k = 0

    def _close(self, sim: Simulator) -> None:
        """What the previous period shipped and was owed before shipping, read after its step."""
        k = self.k - 1
        shipped = sim.last_shipped[0]
        self.shipped[k] = shipped
        # Buckets at or past owed_depth are 0 (KernelState), so the plain sum is what is still owed.
        self.owed[k] = sim.owed[0].sum(axis=1) + shipped
        self.demand[k] = sim.last_node_out[0, :, O_DEMAND]

    def act(self, sim: Simulator) -> np.ndarray:
        if self.k > 0:
            self._close(sim)
        k = self.k
        self.on_hand[k] = sim.on_hand[0]
        base = sim.positions()[0][0].copy()  # no order of this period yet
        ech = sim.echelon_positions()[0].copy() if self.echelon else None
        orders = self.policy.act(sim)
        o = np.maximum(np.asarray(orders, dtype=float), 0.0)
        if self.topo.integer_orders:
            o = np.rint(o)
        self.orders[k] = o[0]
        self.before[k] = base - o[0] @ self.out_map
        state = sim.state
        owed0, depth = state.owed[:, :, 0].copy(), state.owed_depth.copy()
        try:
            state.owed[:, :, 0] += np.where(o > 0.0, o, 0.0)
            state.owed_depth[o > 0.0] = np.maximum(state.owed_depth[o > 0.0], 1)
            self.after[k] = sim.positions()[0][0]
            if ech is not None:
                self.ech_before[k] = ech
                self.ech_after[k] = sim.echelon_positions()[0]
        finally:
            state.owed[:, :, 0] = owed0
            state.owed_depth[...] = depth
        self.k += 1
        return orders

    def trace(self, sim: Simulator, warmup: int, kind: str, evaluation: Evaluation) -> Trace:
        self._close(sim)
        w = slice(warmup, self.k)
        return Trace(
            name=self.name,
            kind=kind,
            on_hand=self.on_hand[w],
            position_before=self.before[w],
            position_after=self.after[w],
            echelon_before=self.ech_before[w] if self.echelon else None,
            echelon_after=self.ech_after[w] if self.echelon else None,
            orders=self.orders[w],
            owed=self.owed[w],
            shipped=self.shipped[w],
            demand=self.demand[w],
            evaluation=evaluation,
        )


def record(
    scenario: ScenarioLike | Simulator,
    policy: Policy,
    periods: int = 5000,
    warmup: int = 200,
    seed: int = 0,
    kind: str = "agent",
) -> Trace:
    """Simulate ``policy`` for ``periods`` periods (the first ``warmup`` discarded) on seed ``seed``
    and return its :class:`Trace`: one row of :func:`meio.envs.metrics.evaluate`, so policies
    recorded with the same seed face the same demand and lead times."""
    check_periods(periods, warmup)
    sim = scenario if isinstance(scenario, Simulator) else Simulator(resolve(scenario), n=1)
    if sim.n != 1:
        raise ValueError(f"scenario: a simulator of {sim.n} rows; record runs one")
    rec = _Recorder(policy, sim.topology, periods)
    ev = evaluate(sim, rec, periods=periods - warmup, warmup=warmup, replications=1, seed=seed)
    return rec.trace(sim, warmup, kind, ev)


def check_periods(periods: int, warmup: int) -> None:
    """``periods`` counts the warm-up: the record is the ``periods - warmup`` periods after it."""
    check_setting("periods", periods)
    check_setting("warmup", warmup)
    if periods <= warmup:
        raise ValueError(
            f"periods: {periods} is not above warmup ({warmup}); periods counts the warm-up, so nothing would "
            "be recorded; give more periods or a shorter warm-up"
        )
    if periods - warmup < N_BATCHES:
        raise ValueError(
            f"periods: {periods} leaves {periods - warmup} periods after the warm-up ({warmup}); the cost's "
            f"confidence interval (batch means) needs at least {N_BATCHES}"
        )


# ---- summaries ----------------------------------------------------------------------------------
def _ols(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Slope ``b`` and ``R^2`` of the least-squares line ``y = a + b x``. A constant ``y`` has slope 0
    and no ``R^2`` (nan); a constant ``x`` has neither."""
    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok], y[ok]
    if len(y) < 2:
        return math.nan, math.nan
    dy = y - y.mean()
    if np.abs(dy).max() <= TOL * (1.0 + np.abs(y).max()):
        return 0.0, math.nan
    dx = x - x.mean()
    sxx = float(dx @ dx)
    if sxx <= 0.0:
        return math.nan, math.nan
    b = float(dx @ dy) / sxx
    return b, float((dx @ dy) ** 2 / (sxx * float(dy @ dy)))


def _supplier(topo: Topology) -> np.ndarray:
    """(N,) the node each node orders from on its primary slot, -1 for the external supplier."""
    sup = np.full(topo.n_nodes, -1, dtype=np.int64)
    for s in primary_slots(topo)[::-1]:  # the first slot of a node wins
        sup[topo.slot_dst[s]] = topo.slot_src[s]
    return sup


def _bases(topo: Topology, tr: Trace, j: int) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """The positions of node ``j`` (before, after) by basis: installation, and echelon for a node
    with nodes downstream (a node without any has echelon position = installation position)."""
    out = [("installation", tr.position_before, tr.position_after)]
    if tr.echelon_before is not None and len(topo.slots_out_of(j)) > 0:
        out.append(("echelon", tr.echelon_before, tr.echelon_after))
    return out


def _constant_level(topo: Topology, tr: Trace, j: int, basis: str) -> float:
    """A classical policy's level of node ``j`` on ``basis`` (nan for an agent or another basis);
    a node without nodes downstream has one position, so an echelon level is its installation level."""
    node = topo.node_names[j]
    if tr.levels is None or node not in tr.levels:
        return math.nan
    leaf = len(topo.slots_out_of(j)) == 0
    if tr.kind == basis or (tr.kind == "echelon" and leaf):
        return float(tr.levels[node])
    return math.nan


def level_table(topo: Topology, traces: Sequence[Trace]) -> pd.DataFrame:
    """One row per policy x node x basis (``installation``; ``echelon`` too for a node with nodes
    downstream where every node has one supplier): the position after ordering ``y`` (mean, sd,
    5/50/95th percentiles), its OLS slopes on the position before ordering and on the supplier's
    (primary slot's) on hand with their ``R^2``; the share of periods that start with the supplier's
    on hand at 0 (``supplier_empty``) and the mean of ``y`` in them and in the others; the share of
    periods with an order into the node and its mean order per period (units, summed over its
    slots); a classical policy's constant level on its own basis."""
    sup = _supplier(topo)
    into = np.zeros((topo.n_slots, topo.n_nodes))
    into[np.arange(topo.n_slots), topo.slot_dst] = 1.0
    rows = []
    for tr in traces:
        placed = tr.orders @ into
        for j, node in enumerate(topo.node_names):
            for basis, x, y in _bases(topo, tr, j):
                yj = y[:, j]
                b_own, r2_own = _ols(x[:, j], yj)
                if sup[j] >= 0:
                    b_sup, r2_sup = _ols(tr.on_hand[:, sup[j]], yj)
                    empty = tr.on_hand[:, sup[j]] <= 0.0
                else:
                    b_sup, r2_sup = math.nan, math.nan
                    empty = np.zeros(len(yj), dtype=bool)
                p5, p50, p95 = np.percentile(yj, [5, 50, 95])
                rows.append(
                    {
                        "policy": tr.name,
                        "node": node,
                        "basis": basis,
                        "mean": float(yj.mean()),
                        "sd": float(yj.std()),
                        "p5": float(p5),
                        "p50": float(p50),
                        "p95": float(p95),
                        "slope_own": b_own,
                        "r2_own": r2_own,
                        "slope_supplier_on_hand": b_sup,
                        "r2_supplier_on_hand": r2_sup,
                        "supplier_empty": float(empty.mean()) if sup[j] >= 0 else math.nan,
                        "mean_supplier_empty": float(yj[empty].mean()) if empty.any() else math.nan,
                        "mean_supplier_stocked": float(yj[~empty].mean())
                        if (sup[j] >= 0 and (~empty).any())
                        else math.nan,
                        "order_share": float((placed[:, j] > 0.0).mean()),
                        "mean_order": float(placed[:, j].mean()),
                        "level": _constant_level(topo, tr, j, basis),
                    }
                )
    return pd.DataFrame(rows)


def warehouses(topo: Topology) -> dict[int, list[tuple[int, np.ndarray]]]:
    """Nodes that ship to several customers: ``{node: [(child, its slots from node), ...]}``."""
    out: dict[int, list[tuple[int, np.ndarray]]] = {}
    for j in range(topo.n_nodes):
        slots = topo.slots_out_of(j)
        children = list(dict.fromkeys(int(c) for c in topo.slot_dst[slots]))
        if len(children) >= 2:
            out[j] = [(c, slots[topo.slot_dst[slots] == c]) for c in children]
    return out


def allocation_table(topo: Topology, traces: Sequence[Trace]) -> pd.DataFrame:
    """Per policy x warehouse x child (:func:`warehouses`): ``short_periods``, the share of periods
    where the warehouse shipped less than it owed (this period's orders included); ``share_short``,
    the child's mean share of the units shipped in those periods (periods that shipped nothing have
    no share and are left out); ``share_owed_short``, its mean share of what was owed in them (what
    proportional rationing gives it); ``share_all``, its mean share of the units shipped over every
    period with a shipment; ``demand_share``, its share of the customer demand in the record at the
    demand nodes below it (itself included), relative to the demand below the warehouse's children."""
    below = topo.descendants()
    dn = topo.demand_nodes
    rows = []
    for tr in traces:
        for w, children in warehouses(topo).items():
            slots = [s for _, s in children]
            got = np.stack([tr.shipped[:, s].sum(axis=1) for s in slots], axis=1)  # (T, C)
            owed = np.stack([tr.owed[:, s].sum(axis=1) for s in slots], axis=1)
            total_got, total_owed = got.sum(axis=1), owed.sum(axis=1)
            short = total_got < total_owed - TOL * (1.0 + total_owed)
            shipped_any = total_got > 0.0
            share = np.divide(got, total_got[:, None], out=np.full_like(got, np.nan), where=shipped_any[:, None])
            owed_share = np.divide(
                owed, total_owed[:, None], out=np.full_like(owed, np.nan), where=(total_owed > 0.0)[:, None]
            )
            sel = short & shipped_any
            demand_below = np.array([tr.demand[:, below[c, dn] > 0].sum() for c, _ in children])
            demand_total = demand_below.sum()
            for i, (c, _) in enumerate(children):
                rows.append(
                    {
                        "policy": tr.name,
                        "warehouse": topo.node_names[w],
                        "child": topo.node_names[c],
                        "short_periods": float(short.mean()),
                        "share_short": float(share[sel, i].mean()) if sel.any() else math.nan,
                        "share_owed_short": float(owed_share[sel, i].mean()) if sel.any() else math.nan,
                        "share_all": float(share[shipped_any, i].mean()) if shipped_any.any() else math.nan,
                        "demand_share": float(demand_below[i] / demand_total) if demand_total > 0 else math.nan,
                    }
                )
    return pd.DataFrame(rows)


def sourcing_table(topo: Topology, traces: Sequence[Trace]) -> pd.DataFrame:
    """Per policy x node with several slots in (alternative suppliers, transport modes) x slot: the
    mean order per period on the slot (``mean_order``, the node's units), its share of what the
    node ordered over the record (``share``; NaN where the node ordered nothing), the share of
    periods with an order on it (``order_periods``), and the slot's unit and fixed cost per order,
    so that where a policy buys, and at what price, can be read side by side."""
    rows = []
    multi = [j for j in range(topo.n_nodes) if len(topo.slots_into(j)) >= 2 and not topo.is_assembly[j]]
    for tr in traces:
        for j in multi:
            slots = [int(s) for s in topo.slots_into(j)]
            total = float(tr.orders[:, slots].sum())
            for s in slots:
                rows.append(
                    {
                        "policy": tr.name,
                        "node": topo.node_names[j],
                        "slot": topo.slot_names[s],
                        "mean_order": float(tr.orders[:, s].mean()),
                        "share": float(tr.orders[:, s].sum() / total) if total > 0 else math.nan,
                        "order_periods": float((tr.orders[:, s] > 0.0).mean()),
                        "unit_cost": float(topo.slot_unit_cost[s]),
                        "fixed_cost": float(topo.slot_fixed_cost[s]),
                    }
                )
    return pd.DataFrame(rows)


# ---- the plot -----------------------------------------------------------------------------------
def plot_levels(topo: Topology, traces: Sequence[Trace], path: Path) -> None:
    """``levels.png``: one panel per node and basis (installation for every node, echelon for a node
    with nodes downstream), the position after ordering against the position before ordering, at
    most :data:`PLOT_POINTS` evenly spaced periods per policy in the colours of
    :func:`meio.plots.policy_colors`, and a classical policy's constant level as a dashed line."""
    import matplotlib.pyplot as plt

    from meio.plots import policy_colors

    colors = policy_colors([t.name for t in traces])
    panels = [(j, basis) for j in range(topo.n_nodes) for basis, _, _ in _bases(topo, traces[0], j)]
    ncols = min(5, len(panels))
    nrows = -(-len(panels) // ncols)
    height = 3.3 * nrows + 0.8
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.6 * ncols, height), squeeze=False)
    for ax in axes.flat[len(panels) :]:
        ax.set_visible(False)
    for ax, (j, basis) in zip(axes.flat, panels):
        node = topo.node_names[j]
        for t in traces:
            x, y = next((x, y) for b, x, y in _bases(topo, t, j) if b == basis)
            x, y = x[:, j], y[:, j]
            idx = np.unique(np.linspace(0, len(x) - 1, min(PLOT_POINTS, len(x))).astype(np.int64))
            ax.scatter(x[idx], y[idx], s=5, alpha=0.3, color=colors[t.name], label=t.name, linewidths=0)
            level = _constant_level(topo, t, j, basis)
            if math.isfinite(level):
                ax.axhline(level, color=colors[t.name], lw=1.0, ls="--", label=f"{t.name}: its level")
        ax.set_title(f"{node}, {basis} position", fontsize=9)
        ax.set_xlabel("before ordering (units)", fontsize=8)
        ax.set_ylabel("after ordering (units)", fontsize=8)
        ax.tick_params(labelsize=7)
    labels: dict[str, object] = {}
    for ax in axes.flat[: len(panels)]:
        for h, lab in zip(*ax.get_legend_handles_labels()):
            labels.setdefault(lab, h)
    legend = fig.legend(
        list(labels.values()), list(labels), loc="lower center", ncol=min(4, len(labels)), fontsize=8, markerscale=3
    )
    for h in legend.legend_handles:
        h.set_alpha(1.0)
    fig.suptitle(
        f"{topo.scenario.name}: inventory position after ordering (the order-up-to level acted on) "
        "against before ordering",
        fontsize=10,
    )
    fig.tight_layout(rect=(0, 0.6 / height, 1, 1 - 0.25 / height))  # room for the legend and the title
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ---- building the policies ----------------------------------------------------------------------
@dataclass
class Explanation:
    """Traces of every policy of one scenario, on one seed, and their summaries."""

    topology: Topology
    traces: list[Trace]
    settings: dict[str, int]
    levels: pd.DataFrame = field(init=False)
    allocation: pd.DataFrame = field(init=False)
    sourcing: pd.DataFrame = field(init=False)

    def __post_init__(self) -> None:
        self.levels = level_table(self.topology, self.traces)
        self.allocation = allocation_table(self.topology, self.traces)
        self.sourcing = sourcing_table(self.topology, self.traces)

    def costs(self) -> dict[str, float]:
        """Mean cost per period of each policy over the record (the same seed for all)."""
        return {t.name: t.evaluation.cost_mean for t in self.traces}

    def write(self, out: str | Path) -> dict[str, Path]:
        folder = Path(out)
        folder.mkdir(parents=True, exist_ok=True)
        files = {
            "levels": folder / "levels.csv",
            "allocation": folder / "allocation.csv",
            "plot": folder / "levels.png",
        }
        if len(self.sourcing):
            files["sourcing"] = folder / "sourcing.csv"
            self.sourcing.to_csv(files["sourcing"], index=False)
        self.levels.to_csv(files["levels"], index=False)
        self.allocation.to_csv(files["allocation"], index=False)
        plot_levels(self.topology, self.traces, files["plot"])
        return files


def _agent(run: str | Path, topo: Topology, k: int, taken: set[str]) -> Policy:
    from meio.agents.policy import META_FILE, find_saved_agent, load_agent, read_json, saved_agent_algo

    folder = find_saved_agent(run)
    meta_path = folder / META_FILE
    meta = read_json(meta_path, "model") if meta_path.is_file() else {}
    trained_on = meta.get("scenario") if isinstance(meta, dict) else None
    if trained_on is not None and trained_on != topo.scenario.name:
        raise ValueError(
            f"model: {run} was trained on {trained_on!r}, not on {topo.scenario.name!r}; give --scenario "
            f"{trained_on} or an agent trained on {topo.scenario.name}"
        )
    label = f"{saved_agent_algo(folder)}:{Path(run).resolve().name}"
    if label in taken:
        label = f"{label}#{k}"
    taken.add(label)
    policy = load_agent(folder, name=label)
    check = getattr(policy, "check", None)
    if check is not None:
        check(Simulator(topo, n=1))  # a network of another shape is refused before any simulation
    return policy


def parse_baselines(text: str | Sequence[str]) -> tuple[str, ...]:
    """``"reference"``, ``"local,optimised_installation"`` or ``"none"`` -> the names, checked."""
    from meio.baselines.run import BASELINE_NAMES

    names = tuple(x.strip() for x in text.split(",")) if isinstance(text, str) else tuple(text)
    if names == ("none",):
        return ()
    choices = (REFERENCE, *BASELINE_NAMES)
    for name in names:
        if name not in choices:
            raise ValueError(
                f"baselines: {name!r} is not a baseline{did_you_mean(name, choices)}; choose "
                f"{REFERENCE}, none, or from {', '.join(BASELINE_NAMES)}"
            )
    if not names:
        raise ValueError("baselines: empty; give reference, none, or baseline names separated by commas")
    return tuple(dict.fromkeys(names))


def _classical(
    topo: Topology, names: tuple[str, ...], periods: int, warmup: int, seed: int, search: dict[str, int]
) -> list:
    """The baselines ``names`` (:data:`REFERENCE`: the benchmark's reference), found as the benchmark
    finds them; each is judged on the record's own periods and seed (one replication)."""
    from meio.baselines.run import reference_baseline, run_baselines

    settings = dict(periods=periods - warmup, warmup=warmup, replications=1, seed=seed, **search)
    found = []
    if REFERENCE in names:
        ref = reference_baseline(topo, **settings)
        if ref is None:
            raise ValueError(f"baselines: {topo.scenario.name} has no stable reference policy; name the baselines")
        found.append(ref[0])
    rest = tuple(n for n in names if n != REFERENCE and n not in {b.name for b in found})
    if rest:
        report = run_baselines(topo, include=rest, **settings)
        missing = [n for n in rest if n not in {b.name for b, _ in report.results}]
        if missing:
            raise ValueError(
                f"baselines: {missing[0]!r} does not apply to {topo.scenario.name}: "
                f"{report.skipped.get(missing[0], 'not found')}"
            )
        found += [b for b, _ in report.results]
    return found


def explain(
    scenario: ScenarioLike,
    models: Sequence[str | Path] = (),
    baselines: str | Sequence[str] = REFERENCE,
    periods: int = 5000,
    warmup: int = 200,
    seed: int = 0,
    search_periods: int = 1000,
    search_replications: int = 8,
    policies: Sequence[Policy] = (),
) -> Explanation:
    """Record every policy (the agents of ``models``, the classical ``baselines``, and any
    ``policies`` given as objects) for ``periods`` periods, the first ``warmup`` discarded, all on
    seed ``seed``, and summarise them (:class:`Explanation`). ``periods`` counts the warm-up."""
    check_periods(periods, warmup)
    check_setting("seed", seed)
    names = parse_baselines(baselines)
    topo = resolve(scenario)
    taken: set[str] = set()
    agents = [_agent(run, topo, k, taken) for k, run in enumerate(models)]
    classical = _classical(
        topo,
        names,
        periods,
        warmup,
        seed,
        {"search_periods": search_periods, "search_replications": search_replications},
    )
    if not (agents or classical or policies):
        raise ValueError("model: no policy to explain; give --model, or --baselines other than none")
    traces = []
    for b in classical:
        tr = record(topo, b.policy(topo), periods, warmup, seed, kind=b.kind)
        tr.levels = dict(b.levels)
        traces.append(tr)
    for p in [*agents, *policies]:
        traces.append(record(topo, p, periods, warmup, seed, kind="agent"))
    return Explanation(topo, traces, {"periods": periods, "warmup": warmup, "seed": seed})


# ---- the command --------------------------------------------------------------------------------
#: API fields whose messages name the command line's flags instead.
_FLAGS = {"model": "--model", "baselines": "--baselines", "periods": "--periods", "warmup": "--warmup"}


def _as_flag(exc: Exception) -> Exception:
    text = str(exc)
    for field_name, flag in _FLAGS.items():
        if text.startswith(field_name + ":"):
            return type(exc)(flag + text[len(field_name) :])
    return exc


#: Columns of ``levels.csv`` the command prints (the file has them all).
PRINTED = (
    "policy",
    "node",
    "basis",
    "mean",
    "sd",
    "p5",
    "p95",
    "slope_own",
    "r2_own",
    "slope_supplier_on_hand",
    "r2_supplier_on_hand",
    "mean_supplier_empty",
    "mean_supplier_stocked",
    "order_share",
    "level",
)


def run_cli(args: argparse.Namespace) -> int:
    """``meio explain``: record, write ``levels.csv``, ``allocation.csv`` and ``levels.png`` under
    ``--out`` and print the levels as a Markdown table."""
    from meio.benchmark import markdown_table

    try:
        ex = explain(
            args.scenario,
            models=args.model or (),
            baselines=args.baselines,
            periods=args.periods,
            warmup=args.warmup,
            seed=args.seed,
            search_periods=args.search_periods,
            search_replications=args.search_replications,
        )
    except (ValueError, FileNotFoundError) as exc:
        raise _as_flag(exc) from None
    out = args.out or f"runs/explain/{ex.topology.scenario.name}"
    files = ex.write(out)
    record_len = args.periods - args.warmup
    print(f"{ex.topology.scenario.name}: seed {args.seed}, {record_len} periods after a warm-up of {args.warmup}")
    for name, cost in ex.costs().items():
        print(f"  {name}: cost per period {cost:.4f}")
    print(markdown_table(ex.levels[list(PRINTED)]))
    if len(ex.allocation):
        print()
        print(markdown_table(ex.allocation))
    if len(ex.sourcing):
        print()
        print(markdown_table(ex.sourcing))
    print(f"wrote {', '.join(str(p) for p in files.values())}")
    return 0
