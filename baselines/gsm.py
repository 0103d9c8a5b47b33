"""Safety-stock placement in spanning-tree networks: the guaranteed-service model (GSM).

The model of Simpson (1958), Inderfurth (1991) for serial chains and Graves & Willems (2000; erratum
2003) for spanning trees, as presented in Snyder & Shen, *Fundamentals of Supply Chain Theory*, 2nd ed.
(2019), section 6.3 "The guaranteed-service model".

Model
-----
Every node ``j`` of the network (a stage: a plant, a warehouse, a retailer) runs a base-stock policy and
*guarantees* its downstream neighbours (or its customers) a committed outbound service time ``S_j``: an
order placed at time ``t`` is shipped by ``t + S_j``. Node ``j`` itself is served by its predecessors
within its inbound service time ``SI_j = max_{i -> j} S_i`` (a node supplied from outside gets the
external supplier's service time ``si_j``, 0 by default). After its inputs arrive, node ``j`` needs its
processing time ``T_j`` (production plus inbound transport). Its stock must therefore cover the demand
of its *net lead time*

    tau_j = SI_j + T_j - S_j  (>= 0),

and with i.i.d. normal demand of mean ``mu_j`` and standard deviation ``sigma_j`` per period the
base-stock level is the demand bound ``B_j = mu_j tau_j + z_j sigma_j sqrt(tau_j)`` with
``z_j = Phi^{-1}(alpha_j)`` for the service level ``alpha_j``. Demand beyond the bound is assumed to be
met by means outside the model (overtime, expediting): the guarantee is never broken in the model. The
GSM chooses the integer service times that minimise the holding cost of safety stock,

    min  sum_j h_j z_j sigma_j sqrt(SI_j + T_j - S_j)
    s.t. SI_j = max_{i -> j} S_i   (SI_j = si_j for a node with no predecessor)
         0 <= S_j <= SI_j + T_j
         S_j <= s_j                (the maximum service time; 0 by default for a node facing customers)
         S_j integer,

with ``h_j`` the local (installation) holding cost rate of node ``j``'s stock. The expected pipeline
stock ``mu_j T_j`` does not depend on the service times and is not part of the objective.

Demand is given at the nodes facing customers (every sink, and optionally internal nodes). A node
supplies one unit per unit that its successors need, so the demand a node sees is the sum of the
customer demand of itself and of every node below it: means add up, and, demand being independent
across customers, variances add up (``sigma_j = sqrt(sum of the variances below j)``: risk pooling).
In a spanning tree every node below ``j`` is reached along one directed path only, so nothing is
counted twice.

Algorithm
---------
Graves & Willems' dynamic program over the tree, exact for spanning trees (any mix of distribution and
assembly structure; a serial chain is the special case of Inderfurth 1991). Label the nodes by
repeatedly removing a leaf of the remaining tree: the ``k``-th node removed gets label ``k`` and its one
remaining neighbour ``p(k)`` (``k < N``) has a larger label. ``k`` is *downstream-connected* when the
arc runs ``k -> p(k)`` (``p(k)`` is its customer) and *upstream-connected* when it runs ``p(k) -> k``.
With ``N_k`` the part of the tree that hangs on ``k`` through smaller labels::

    c_k(S, SI) = h_k z_k sigma_k sqrt(SI + T_k - S)
                 + sum_{i -> k, i < k} min_{x <= SI} f_i(x)        (upstream neighbours: S_i <= SI_k)
                 + sum_{k -> j, j < k} min_{y >= S}  g_j(y)         (downstream ones:   SI_j >= S_k)
    f_k(S)  = min_{SI} c_k(S, SI)      evaluated when k -> p(k)   (the best cost of N_k given S_k = S)
    g_k(SI) = min_{S}  c_k(S, SI)      evaluated when p(k) -> k   (the best cost of N_k given SI_k = SI)
    optimum = min_{S, SI} c_N(S, SI)

over integers ``0 <= S <= min(s_k, M_k)``, ``S - T_k <= SI <= M_k - T_k`` (``SI = si_k`` for a node
supplied externally), where ``M_k`` is the longest replenishment time into ``k`` (the largest sum of
``T`` plus the external service time along a directed path ending at ``k``), which bounds every useful
service time. Taking the minima over ``x <= SI`` and ``y >= S``, rather than ``f_i(SI)`` and
``g_j(S)`` alone, matters where a node has several upstream neighbours: it waits for the slowest, so
each of them only needs ``S_i <= SI_k`` (the brute-force tests of this module fail without it).

The recursion solves the problem with ``SI_j >= max_{i -> j} S_i`` (a relaxation). Its optimum is also
optimal for the model above: every term is non-decreasing in ``SI_j``, and where ``S_j`` exceeds the
real ``max_i S_i + T_j`` lowering it to that value keeps node ``j``'s cost at 0 and can only lower the
inbound service times (and costs) downstream. The solution returned is repaired that way, in
topological order, so that ``SI_j`` is exactly the maximum of the predecessors' service times and every
net lead time is >= 0; its cost equals the recursion's optimum. Work: ``O(sum_k M_k^2)``.

Periods and the project's simulator
-----------------------------------
All times are integers in one period unit; this module takes ``T_j`` as given and the caller converts.
In the project's timing (``docs/model.md``, "One period ``t``" and "Customers decide first") order-up-to
rules decide from the customers up and a node sees the orders its customers placed in the same
period, while customer demand arrives after the period's orders. With ``L_j`` the lead time of the lane
into ``j``, that gives ``T_j = L_j`` for a node that supplies other nodes and ``T_j = L_j + 1`` for a
node facing customers (``meio.baselines.serial``'s ``tau_1 = L_1 + 1``). Where a scenario's external
supplier quotes a service time ``si_j`` (the lane's ``service_time``), it is the first part of the
lane's lead time and ``T_j`` the rest (``L_j - si_j``, plus 1 at a node facing customers), so the
replenishment time ``si_j + T_j`` is the simulator's; a node's ``max_service_time`` is ``s_j``
(``meio.baselines.analytic.gsm_baseline``). Demand moments there are the untruncated normal's
(``meio.baselines.analytic.analysis_moments``). The ``base_stock_levels`` returned are the GSM's local
levels ``mu_j tau_j + z_j sigma_j sqrt(tau_j)``. The simulator neither enforces the guarantees nor
waits ``S_j`` periods before shipping (it ships what stock allows), so simulated service differs from
the nominal ``alpha_j``.

Public API
----------
* :func:`optimize_gsm` -- optimal committed service times, safety stocks and base-stock levels.
* :func:`evaluate_gsm` -- the same quantities for given service times (checks their feasibility).
* :class:`GSMSolution` -- what both return.
"""

from __future__ import annotations

import heapq
import math
import numbers
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import special

from meio.envs.graph import components, topological_order, tree_closing_edge
from meio.envs.hints import did_you_mean

__all__ = ["GSMSolution", "optimize_gsm", "evaluate_gsm"]


# =================================================================================================
# Result
# =================================================================================================
@dataclass(frozen=True)
class GSMSolution:
    """Committed service times of a spanning-tree network and the safety stock they require.

    All dictionaries are keyed by node name, in the order of ``nodes``.

    Attributes:
        service_times: ``S_j``, the committed outbound service time of each node (periods).
        inbound_service_times: ``SI_j = max_{i -> j} S_i`` over the node's predecessors, or the external
            supplier's service time ``si_j`` for a node with no predecessor.
        net_lead_times: ``tau_j = SI_j + T_j - S_j`` (>= 0), the number of periods of demand that node
            ``j``'s stock covers.
        safety_stock: ``z_j sigma_j sqrt(tau_j)``.
        base_stock_levels: the local base-stock level ``mu_j tau_j + z_j sigma_j sqrt(tau_j)``.
        expected_cost: ``sum_j h_j * safety_stock_j``, the GSM objective (holding cost of safety stock
            per period; pipeline and cycle stock excluded).
        method: ``"gsm_dp"`` (from :func:`optimize_gsm`) or ``"evaluation"`` (from
            :func:`evaluate_gsm`).
    """

    service_times: dict[str, int]
    inbound_service_times: dict[str, int]
    net_lead_times: dict[str, int]
    safety_stock: dict[str, float]
    base_stock_levels: dict[str, float]
    expected_cost: float
    method: str = "gsm_dp"


# =================================================================================================
# The validated instance
# =================================================================================================
@dataclass(frozen=True)
class _Instance:
    """An instance in index form (index = position in ``nodes``); built only by :func:`_build`."""

    names: tuple[str, ...]
    preds: tuple[tuple[int, ...], ...]
    succs: tuple[tuple[int, ...], ...]
    topo: tuple[int, ...]  # a topological order (every arc i -> j has i before j)
    T: np.ndarray  # processing times (int)
    si: np.ndarray  # external service times (int; 0 for nodes with predecessors)
    M: np.ndarray  # longest replenishment time into each node (int)
    s_max: np.ndarray  # bound on S_j: min(max service time, M_j) (int)
    limit: tuple[int | None, ...]  # the maximum service time s_j (None: unbounded)
    limit_is_default: tuple[bool, ...]
    mu: np.ndarray  # demand mean per period seen by each node
    sigma: np.ndarray  # demand standard deviation per period seen by each node
    z: np.ndarray  # safety factors Phi^{-1}(alpha_j)
    h: np.ndarray  # local holding cost rates


def _is_int(value: Any) -> bool:
    return (
        not isinstance(value, bool)
        and isinstance(value, numbers.Real)
        and math.isfinite(float(value))
        and float(value).is_integer()
    )


def _is_real(value: Any) -> bool:
    return not isinstance(value, bool) and isinstance(value, numbers.Real) and math.isfinite(float(value))


def _check_mapping(value: Any, field: str, names: Sequence[str], complete: bool, what: str) -> Mapping:
    """A mapping keyed by node names: no unknown keys; every node present when ``complete``."""
    if not isinstance(value, Mapping):
        raise ValueError(f"{field}: expected a mapping from node name to {what}, got {value!r}")
    known = set(names)
    for key in value:
        if key not in known:
            raise ValueError(f"{field}[{key}]: not a node{did_you_mean(key, names)}; nodes: {', '.join(names)}")
    if complete:
        missing = [n for n in names if n not in value]
        if missing:
            raise ValueError(f"{field}: no value for {', '.join(missing)}; every node needs {what}")
    return value


def _nonneg_int(value: Any, field: str, rule: str) -> int:
    if not _is_int(value):
        raise ValueError(f"{field}: {value!r} is not an integer; {rule}")
    if value < 0:
        raise ValueError(f"{field}: {int(value)} is negative; {rule}")
    return int(value)


def _nonneg_real(value: Any, field: str, rule: str) -> float:
    if not _is_real(value):
        raise ValueError(f"{field}: {value!r} is not a finite real number; {rule}")
    if value < 0:
        raise ValueError(f"{field}: {float(value)} is negative; {rule}")
    return float(value)


def _check_nodes(nodes: Any) -> tuple[str, ...]:
    if isinstance(nodes, (str, bytes)) or not isinstance(nodes, Sequence):
        raise ValueError(f"nodes: expected a list of node names, got {nodes!r}")
    if len(nodes) == 0:
        raise ValueError("nodes: empty; the network needs at least one node")
    seen: dict[str, int] = {}
    for i, n in enumerate(nodes):
        if not isinstance(n, str) or not n:
            raise ValueError(f"nodes[{i}]: {n!r} is not a non-empty string")
        if n in seen:
            raise ValueError(f"nodes[{i}]: {n!r} repeats nodes[{seen[n]}]; node names must be unique")
        seen[n] = i
    return tuple(nodes)


def _check_edges(edges: Any, names: tuple[str, ...]) -> tuple[tuple[int, int], ...]:
    """Arcs as index pairs; the undirected graph must be a spanning tree of ``names``.

    The first edge with a problem is reported: a malformed pair or unknown node, or the edge that
    closes a cycle (:func:`meio.envs.graph.tree_closing_edge`), whichever comes first in ``edges``.
    """
    if isinstance(edges, (str, bytes)) or not isinstance(edges, Sequence):
        raise ValueError(f"edges: expected a list of (upstream, downstream) pairs, got {edges!r}")
    pairs: list[tuple[str, str]] = []
    malformed: ValueError | None = None
    for e, pair in enumerate(edges):
        if isinstance(pair, (str, bytes)) or not isinstance(pair, Sequence) or len(pair) != 2:
            malformed = ValueError(f"edges[{e}]: {pair!r} is not an (upstream, downstream) pair")
            break
        unknown = [end for end in pair if end not in names]
        if unknown:
            malformed = ValueError(
                f"edges[{e}]: {unknown[0]!r} is not a node{did_you_mean(unknown[0], names)}; nodes: {', '.join(names)}"
            )
            break
        pairs.append((pair[0], pair[1]))
    closing = tree_closing_edge(names, pairs)  # only edges before a malformed one
    if closing is not None:
        e, cycle = closing
        u, v = pairs[e]
        if u == v:
            raise ValueError(f"edges[{e}]: ({u!r}, {v!r}) is a self-loop; the GSM here needs a spanning tree")
        if len(cycle) == 3:  # [u, v, u]: the edge repeats or reverses an earlier one
            f = next(i for i, p in enumerate(pairs) if set(p) == {u, v})
            how = "repeats" if pairs[f] == (u, v) else "reverses"
            raise ValueError(
                f"edges[{e}]: ({u!r}, {v!r}) {how} edges[{f}], which makes the cycle "
                f"{u} - {v} - {u}; the GSM here needs a spanning tree (no cycles, even undirected)"
            )
        raise ValueError(
            f"edges[{e}]: ({u!r}, {v!r}) closes the cycle {' - '.join(cycle)} (edge directions "
            "ignored); the GSM here needs a spanning tree (no cycles)"
        )
    if malformed is not None:
        raise malformed
    parts = components(names, pairs)
    if len(parts) > 1:
        shown = " and ".join("{" + ", ".join(g) + "}" for g in parts[:4])
        more = f" and {len(parts) - 4} more" if len(parts) > 4 else ""
        raise ValueError(
            f"edges: the network is disconnected: it falls into {len(parts)} parts, "
            f"{shown}{more}; the GSM here needs a spanning tree (connected)"
        )
    index = {x: i for i, x in enumerate(names)}
    return tuple((index[u], index[v]) for u, v in pairs)


def _build(
    nodes: Sequence[str],
    edges: Sequence[tuple[str, str]],
    processing_times: Mapping[str, int],
    holding_costs: Mapping[str, float],
    demand_mean: Mapping[str, float],
    demand_sd: Mapping[str, float],
    service_level: float | Mapping[str, float],
    max_service_time: Mapping[str, int] | None,
    external_service_time: Mapping[str, int] | None,
) -> _Instance:
    """Validate the arguments and compute the derived quantities (demand seen, bounds ``M_j``)."""
    names = _check_nodes(nodes)
    arcs = _check_edges(edges, names)
    n = len(names)
    index = {x: j for j, x in enumerate(names)}
    preds: list[list[int]] = [[] for _ in range(n)]
    succs: list[list[int]] = [[] for _ in range(n)]
    for u, v in arcs:
        preds[v].append(u)
        succs[u].append(v)

    rule_t = "processing times are integers >= 0 (periods)"
    pt = _check_mapping(processing_times, "processing_times", names, True, "a processing time")
    T = np.array([_nonneg_int(pt[x], f"processing_times[{x}]", rule_t) for x in names], dtype=np.int64)

    hc = _check_mapping(holding_costs, "holding_costs", names, True, "a holding cost")
    h = np.array([_nonneg_real(hc[x], f"holding_costs[{x}]", "holding costs are finite and >= 0") for x in names])

    dm = _check_mapping(demand_mean, "demand_mean", names, False, "a demand mean")
    ds = _check_mapping(demand_sd, "demand_sd", names, False, "a demand standard deviation")
    for x in names:
        if x in dm and x not in ds:
            raise ValueError(
                f"demand_sd[{x}]: missing; demand_mean gives {x} customer demand, so it needs a standard deviation too"
            )
        if x in ds and x not in dm:
            raise ValueError(f"demand_mean[{x}]: missing; demand_sd gives {x} customer demand, so it needs a mean too")
        if not succs[index[x]] and x not in dm:
            raise ValueError(
                f"demand_mean[{x}]: missing; {x} has no successor, so it must face "
                "customer demand (give its mean and standard deviation)"
            )
    own_mu = np.array(
        [
            _nonneg_real(dm[x], f"demand_mean[{x}]", "demand means are finite and >= 0") if x in dm else 0.0
            for x in names
        ]
    )
    own_var = np.array(
        [
            _nonneg_real(ds[x], f"demand_sd[{x}]", "demand standard deviations are finite and >= 0") ** 2
            if x in ds
            else 0.0
            for x in names
        ]
    )

    if isinstance(service_level, Mapping):
        sl = _check_mapping(service_level, "service_level", names, True, "a service level")
        levels = [(f"service_level[{x}]", sl[x]) for x in names]
    else:
        levels = [("service_level", service_level)] * n
    z = np.empty(n)
    for j, (field, a) in enumerate(levels):
        if not _is_real(a) or not 0.5 <= a < 1.0:
            raise ValueError(
                f"{field}: {a!r} is not in [0.5, 1); the safety factor z = Phi^-1(level) must be finite and >= 0"
            )
        z[j] = float(special.ndtri(float(a)))

    rule_si = "service times are integers >= 0 (periods)"
    si = np.zeros(n, dtype=np.int64)
    if external_service_time is not None:
        es = _check_mapping(external_service_time, "external_service_time", names, False, "an external service time")
        for x, v in es.items():
            j = index[x]
            if preds[j]:
                raise ValueError(
                    f"external_service_time[{x}]: {x} is supplied by "
                    f"{', '.join(names[i] for i in preds[j])} inside the network; only a "
                    "node with no predecessor has an external supplier"
                )
            si[j] = _nonneg_int(v, f"external_service_time[{x}]", rule_si)

    # The directed graph of a tree has no directed cycle, so a topological order exists.
    topo = [index[x] for x in topological_order(names, [(names[u], names[v]) for u, v in arcs])]

    M = np.zeros(n, dtype=np.int64)
    for j in topo:
        M[j] = T[j] + (max(M[i] for i in preds[j]) if preds[j] else si[j])
    mu, var = own_mu.copy(), own_var.copy()
    for j in reversed(topo):
        for k in succs[j]:
            mu[j] += mu[k]
            var[j] += var[k]

    limit: list[int | None] = [0 if x in dm else None for x in names]
    default = [True] * n
    if max_service_time is not None:
        ms = _check_mapping(max_service_time, "max_service_time", names, False, "a maximum service time")
        for x, v in ms.items():
            j = index[x]
            limit[j] = _nonneg_int(v, f"max_service_time[{x}]", rule_si)
            default[j] = False
    s_max = np.array([M[j] if limit[j] is None else min(limit[j], M[j]) for j in range(n)], dtype=np.int64)

    return _Instance(
        names=names,
        preds=tuple(map(tuple, preds)),
        succs=tuple(map(tuple, succs)),
        topo=tuple(topo),
        T=T,
        si=si,
        M=M,
        s_max=s_max,
        limit=tuple(limit),
        limit_is_default=tuple(default),
        mu=mu,
        sigma=np.sqrt(var),
        z=z,
        h=h,
    )


# =================================================================================================
# The dynamic program
# =================================================================================================
def _label(inst: _Instance) -> tuple[list[int], list[int]]:
    """Graves & Willems' labelling: ``order[k-1]`` is the node labelled ``k``; ``nbr[j]`` is ``p(j)``.

    Leaves are removed smallest index first, so the labelling (and the tie-breaking) is deterministic.
    """
    n = len(inst.names)
    adj = [list(inst.preds[j]) + list(inst.succs[j]) for j in range(n)]
    deg = [len(a) for a in adj]
    heap = [j for j in range(n) if deg[j] <= 1]
    heapq.heapify(heap)
    done = [False] * n
    order: list[int] = []
    nbr = [-1] * n
    while heap:
        k = heapq.heappop(heap)
        if done[k]:
            continue
        done[k] = True
        order.append(k)
        for v in adj[k]:
            if not done[v]:
                nbr[k] = v
                deg[v] -= 1
                if deg[v] == 1:
                    heapq.heappush(heap, v)
    return order, nbr


def _prefix_min(v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(min_{x <= y} v[x], its first argmin)`` for every ``y``."""
    m = np.minimum.accumulate(v)
    new = np.ones(len(v), dtype=bool)
    new[1:] = v[1:] < m[:-1]
    arg = np.maximum.accumulate(np.where(new, np.arange(len(v)), 0))
    return m, arg


def _suffix_min(v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(min_{x >= y} v[x], its first argmin)`` for every ``y``."""
    r = v[::-1]
    m = np.minimum.accumulate(r)
    new = np.ones(len(r), dtype=bool)
    new[1:] = r[1:] <= m[:-1]  # on a tie the smaller x (later in r) wins
    arg = np.maximum.accumulate(np.where(new, np.arange(len(r)), 0))
    return m[::-1], (len(r) - 1 - arg)[::-1]


def _dp(inst: _Instance) -> tuple[float, np.ndarray]:
    """Optimal cost of the relaxed problem and service times attaining it (Graves & Willems 2000)."""
    n = len(inst.names)
    order, nbr = _label(inst)
    coef = inst.h * inst.z * inst.sigma
    # Prefix minima (with argmin) of f_k over S, for downstream-connected nodes; suffix minima of
    # g_k over SI (indexed from SI = 0), for upstream-connected ones.
    F: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    G: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    best_si: dict[int, np.ndarray] = {}  # argmin SI of c_k(S, .) for each S   (f_k)
    best_s: dict[int, np.ndarray] = {}  # argmin S  of c_k(., SI) for each SI  (g_k)
    lo = np.where([len(p) == 0 for p in inst.preds], inst.si, 0)
    hi = np.where([len(p) == 0 for p in inst.preds], inst.si, inst.M - inst.T)
    S_opt = np.zeros(n, dtype=np.int64)
    SI_opt = np.zeros(n, dtype=np.int64)
    total = math.inf
    labelled: set[int] = set()
    for k in order:
        s_vals = np.arange(inst.s_max[k] + 1)
        si_vals = np.arange(lo[k], hi[k] + 1)
        tau = si_vals[None, :] + inst.T[k] - s_vals[:, None]
        c = np.where(tau >= 0, coef[k] * np.sqrt(np.maximum(tau, 0)), np.inf)
        for i in inst.preds[k]:
            if i in labelled:
                m = F[i][0]
                c = c + m[np.minimum(si_vals, len(m) - 1)][None, :]
        for j in inst.succs[k]:
            if j in labelled:
                m = G[j][0]
                c = c + np.where(s_vals < len(m), m[np.minimum(s_vals, len(m) - 1)], np.inf)[:, None]
        labelled.add(k)
        p = nbr[k]
        if p < 0:
            flat = int(np.argmin(c))
            a, b = divmod(flat, c.shape[1])
            total = float(c[a, b])
            S_opt[k], SI_opt[k] = a, si_vals[b]
        elif k in inst.preds[p]:
            arg = np.argmin(c, axis=1)
            best_si[k] = si_vals[arg]
            F[k] = _prefix_min(c[np.arange(len(s_vals)), arg])
        else:
            arg = np.argmin(c, axis=0)
            best_s[k] = arg
            g = np.full(hi[k] + 1, np.inf)
            g[lo[k] :] = c[arg, np.arange(len(si_vals))]
            G[k] = _suffix_min(g)

    # Back out the service times, from the last label down: p(k) is always fixed before k.
    for k in reversed(order[:-1]):
        p = nbr[k]
        if k in inst.preds[p]:
            arg = F[k][1]
            S_opt[k] = arg[min(SI_opt[p], len(arg) - 1)]
            SI_opt[k] = best_si[k][S_opt[k]]
        else:
            SI_opt[k] = G[k][1][S_opt[p]]
            S_opt[k] = best_s[k][SI_opt[k] - lo[k]]
    return total, S_opt


def _repair(inst: _Instance, S: np.ndarray) -> np.ndarray:
    """Lower each ``S_j`` to at most ``max_{i -> j} S_i + T_j`` (topological order); see the module doc."""
    S = S.copy()
    for j in inst.topo:
        si = max(S[i] for i in inst.preds[j]) if inst.preds[j] else inst.si[j]
        S[j] = min(S[j], si + inst.T[j])
    return S


def _solution(inst: _Instance, S: np.ndarray, method: str) -> GSMSolution:
    SI = np.array(
        [max(S[i] for i in inst.preds[j]) if inst.preds[j] else inst.si[j] for j in range(len(inst.names))],
        dtype=np.int64,
    )
    tau = SI + inst.T - S
    ss = inst.z * inst.sigma * np.sqrt(tau)
    base = inst.mu * tau + ss
    names = inst.names
    return GSMSolution(
        service_times={x: int(S[j]) for j, x in enumerate(names)},
        inbound_service_times={x: int(SI[j]) for j, x in enumerate(names)},
        net_lead_times={x: int(tau[j]) for j, x in enumerate(names)},
        safety_stock={x: float(ss[j]) for j, x in enumerate(names)},
        base_stock_levels={x: float(base[j]) for j, x in enumerate(names)},
        expected_cost=math.fsum(float(v) for v in inst.h * ss),
        method=method,
    )


# =================================================================================================
# Public functions
# =================================================================================================
def optimize_gsm(
    nodes: Sequence[str],
    edges: Sequence[tuple[str, str]],
    processing_times: Mapping[str, int],
    holding_costs: Mapping[str, float],
    demand_mean: Mapping[str, float],
    demand_sd: Mapping[str, float],
    service_level: float | Mapping[str, float],
    max_service_time: Mapping[str, int] | None = None,
    external_service_time: Mapping[str, int] | None = None,
) -> GSMSolution:
    """Optimal committed service times of a spanning-tree network (Graves & Willems 2000).

    Solves the guaranteed-service model exactly by the dynamic program of Graves & Willems (2000, with
    the 2003 erratum) as given in Snyder & Shen (2019), section 6.3 (stated in the module docstring)::

        min sum_j h_j z_j sigma_j sqrt(SI_j + T_j - S_j)
        s.t. SI_j = max_{i -> j} S_i (si_j without predecessors), 0 <= S_j <= SI_j + T_j, S_j <= s_j.

    Ties between optimal solutions are broken deterministically: each step of the recursion takes
    the smallest minimising service time.

    Args:
        nodes: the stages, by unique name.
        edges: ``(i, j)`` pairs: ``j`` is supplied by ``i`` (``i`` upstream). Directions ignored, the
            graph must be a tree that spans ``nodes`` (connected, no cycle): serial, distribution,
            assembly or any mix.
        processing_times: ``T_j``, integer periods >= 0 from the arrival of node ``j``'s inputs to its
            output being ready (production plus inbound transport).
        holding_costs: ``h_j``, the local (installation) holding cost rate per unit and period of node
            ``j``'s stock (>= 0).
        demand_mean: ``mu`` of the i.i.d. per-period customer demand at each node facing customers
            (every node without successors must have one; internal nodes may). The demand a node sees is
            computed: the sum of the means at and below it.
        demand_sd: the standard deviation of the same demand (the same keys). A node sees
            ``sigma_j = sqrt(sum of the variances at and below it)`` (independent customers).
        service_level: ``alpha_j`` in [0.5, 1), one for all nodes or one per node; ``z_j =
            Phi^{-1}(alpha_j)``.
        max_service_time: ``s_j``, an upper bound (integer >= 0) on ``S_j``. By default 0 for every node
            facing customer demand (immediate service) and unbounded (in effect ``M_j``, the longest
            replenishment time into ``j``) for the others; a value given here replaces the default.
        external_service_time: ``si_j``, the service time (integer >= 0) of the external supplier of a
            node with no predecessor; 0 by default.

    Returns:
        :class:`GSMSolution` with ``method == "gsm_dp"``.

    Raises:
        ValueError: an argument breaks its rule (the message names it), or the graph is not a spanning
            tree (the message names the cycle or the disconnected parts).

    Example:
        Snyder & Shen's Example 6.3, the serial chain 3 -> 2 -> 1 (Inderfurth's DP): ``T = (1, 0, 1)``,
        ``h = (7, 4, 2)``, ``z = 1``, demand sd 1 at stage 1, which must quote ``s_1 <= 1``, and an
        external service time 1 into stage 3. The book's optimum: ``S = (1, 0, 0)``, so only stage 3
        holds safety stock, for a net lead time of 2 periods, at cost ``2 sqrt(2)``:

        >>> from scipy.stats import norm
        >>> sol = optimize_gsm(["1", "2", "3"], [("3", "2"), ("2", "1")],
        ...                    processing_times={"1": 1, "2": 0, "3": 1},
        ...                    holding_costs={"1": 7.0, "2": 4.0, "3": 2.0},
        ...                    demand_mean={"1": 0.0}, demand_sd={"1": 1.0}, service_level=float(norm.cdf(1.0)),
        ...                    max_service_time={"1": 1}, external_service_time={"3": 1})
        >>> sol.service_times, sol.net_lead_times
        ({'1': 1, '2': 0, '3': 0}, {'1': 0, '2': 0, '3': 2})
        >>> round(sol.expected_cost, 6), round(2 * math.sqrt(2), 6)
        (2.828427, 2.828427)
    """
    inst = _build(
        nodes,
        edges,
        processing_times,
        holding_costs,
        demand_mean,
        demand_sd,
        service_level,
        max_service_time,
        external_service_time,
    )
    _, S = _dp(inst)
    return _solution(inst, _repair(inst, S), "gsm_dp")


def evaluate_gsm(
    nodes: Sequence[str],
    edges: Sequence[tuple[str, str]],
    processing_times: Mapping[str, int],
    holding_costs: Mapping[str, float],
    demand_mean: Mapping[str, float],
    demand_sd: Mapping[str, float],
    service_level: float | Mapping[str, float],
    max_service_time: Mapping[str, int] | None = None,
    external_service_time: Mapping[str, int] | None = None,
    *,
    service_times: Mapping[str, int],
) -> GSMSolution:
    """Safety stock, base-stock levels and cost of given committed service times.

    The arguments are those of :func:`optimize_gsm` plus ``service_times`` (``S_j`` for every node),
    which must be feasible: integers >= 0, ``S_j <= s_j`` (the maximum service time, 0 by default at
    nodes facing customers) and ``S_j <= SI_j + T_j`` with ``SI_j = max_{i -> j} S_i`` (``si_j`` for a
    node with no predecessor), i.e. every net lead time ``tau_j >= 0``.

    Returns:
        :class:`GSMSolution` with ``method == "evaluation"``.

    Raises:
        ValueError: an argument breaks its rule or the service times are infeasible (the message names
            the node and the bound it breaks).

    Example:
        Example 6.3 (see :func:`optimize_gsm`) with stage 3 quoting ``S_3 = 1`` instead of 0: stages 3
        and 2 then each cover one period, ``h_2 z sigma sqrt(1) + h_3 z sigma sqrt(1) = 4 + 2``, more
        than the optimum ``2 sqrt(2)``:

        >>> from scipy.stats import norm
        >>> sol = evaluate_gsm(["1", "2", "3"], [("3", "2"), ("2", "1")],
        ...                    processing_times={"1": 1, "2": 0, "3": 1},
        ...                    holding_costs={"1": 7.0, "2": 4.0, "3": 2.0},
        ...                    demand_mean={"1": 0.0}, demand_sd={"1": 1.0}, service_level=float(norm.cdf(1.0)),
        ...                    max_service_time={"1": 1}, external_service_time={"3": 1},
        ...                    service_times={"1": 1, "2": 0, "3": 1})
        >>> sol.net_lead_times
        {'1': 0, '2': 1, '3': 1}
        >>> round(sol.expected_cost, 6)
        6.0
    """
    inst = _build(
        nodes,
        edges,
        processing_times,
        holding_costs,
        demand_mean,
        demand_sd,
        service_level,
        max_service_time,
        external_service_time,
    )
    names = inst.names
    st = _check_mapping(service_times, "service_times", names, True, "a service time")
    S = np.array(
        [_nonneg_int(st[x], f"service_times[{x}]", "service times are integers >= 0 (periods)") for x in names],
        dtype=np.int64,
    )
    for j in inst.topo:
        x = names[j]
        if inst.preds[j]:
            up = max(inst.preds[j], key=lambda i: S[i])
            si, why = int(S[up]), f"SI = S[{names[up]}] = {int(S[up])}"
        else:
            si, why = int(inst.si[j]), f"SI = external service time {int(inst.si[j])}"
        if S[j] > si + inst.T[j]:
            raise ValueError(
                f"service_times[{x}]: {int(S[j])} exceeds SI + T = {si + int(inst.T[j])} "
                f"({why}, T = {int(inst.T[j])}); the net lead time would be "
                f"{si + int(inst.T[j]) - int(S[j])} < 0"
            )
        bound = inst.limit[j]
        if bound is not None and S[j] > bound:
            note = " (the default for a node facing customer demand)" if inst.limit_is_default[j] else ""
            raise ValueError(f"service_times[{x}]: {int(S[j])} exceeds the maximum service time {bound} of {x}{note}")
    return _solution(inst, S, "evaluation")
