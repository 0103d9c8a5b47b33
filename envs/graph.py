"""Graph algorithms on supply networks, by node name, in one place (on networkx).

A network is given as ``nodes`` (unique names, in the order the scenario file lists them) and
``edges``, ``(upstream, downstream)`` pairs (supplier, customer). Every function here is a thin,
deterministic wrapper around `networkx <https://networkx.org>`_ (Hagberg, Schult & Swart 2008):
where a graph has several valid answers (topological orders, cycles, components), ties are broken by
the order of ``nodes`` and then of ``edges``, so that results never depend on hashing or set order.

Functions
---------
* :func:`find_cycle` -- a directed cycle, or ``None`` for an acyclic network.
* :func:`topological_order` -- suppliers before customers, ties in ``nodes`` order.
* :func:`descendants`, :func:`ancestors` -- everything downstream / upstream of one node.
* :func:`reachable_from`, :func:`reaching` -- the same from / to a set of nodes, the set included.
* :func:`is_tree`, :func:`tree_closing_edge`, :func:`components` -- spanning-tree checks with edge
  directions ignored (the guaranteed-service model, :mod:`meio.baselines.gsm`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import networkx as nx

__all__ = [
    "find_cycle",
    "topological_order",
    "descendants",
    "ancestors",
    "reachable_from",
    "reaching",
    "is_tree",
    "tree_closing_edge",
    "components",
]

Edge = tuple[str, str]


def _digraph(nodes: Sequence[str] | None, edges: Iterable[Edge]) -> nx.DiGraph:
    """A ``DiGraph`` whose node and adjacency orders are those of ``nodes`` and ``edges``.

    networkx keeps insertion order (its adjacency is a dict), which is what makes the traversals
    below deterministic. An edge end that is not in ``nodes`` is added after them.
    """
    g = nx.DiGraph()
    if nodes is not None:
        g.add_nodes_from(nodes)
    g.add_edges_from(edges)
    return g


def find_cycle(edges: Iterable[Edge], nodes: Sequence[str] | None = None) -> list[str] | None:
    """A directed cycle ``[v_0, v_1, ..., v_{k-1}]`` (``v_i -> v_{i+1}`` and ``v_{k-1} -> v_0`` are
    edges; the first node is not repeated), or ``None`` when the graph is acyclic.

    The cycle is the first one a depth-first search meets, starting from the nodes in ``nodes`` order
    (by default the order in which they first appear in ``edges``) and following edges in their
    given order. A self-loop ``(a, a)`` is the cycle ``[a]``.

    Example:
        >>> find_cycle([("a", "b"), ("b", "c"), ("c", "a")])
        ['a', 'b', 'c']
        >>> find_cycle([("a", "b"), ("a", "c"), ("b", "c")]) is None
        True
    """
    g = _digraph(nodes, edges)
    try:
        arcs = nx.find_cycle(g, source=list(g.nodes), orientation="original")
    except nx.NetworkXNoCycle:
        return None
    return [u for u, _, _ in arcs]


def topological_order(nodes: Sequence[str], edges: Iterable[Edge]) -> list[str]:
    """The nodes ordered so that every edge ``(u, v)`` has ``u`` before ``v``, ties in ``nodes`` order.

    Of all topological orders this is the lexicographically smallest by position in ``nodes``: Kahn's
    algorithm (1962) always taking the earliest-listed node whose suppliers are all placed. For the
    simulator this means suppliers before customers and otherwise the scenario file's order.

    Raises:
        ValueError: the graph has a directed cycle (the message names it).

    Example:
        >>> topological_order(["shop", "plant", "depot"], [("plant", "depot"), ("depot", "shop")])
        ['plant', 'depot', 'shop']
    """
    position = {n: i for i, n in enumerate(nodes)}
    edges = list(edges)
    g = _digraph(nodes, edges)
    try:
        return list(nx.lexicographical_topological_sort(g, key=lambda n: position.get(n, len(position))))
    except nx.NetworkXUnfeasible:
        cycle = find_cycle(edges, nodes)
        shown = " -> ".join([*cycle, cycle[0]]) if cycle else "?"
        raise ValueError(
            f"edges: the network has a cycle {shown}; a topological order needs an acyclic network"
        ) from None


def descendants(nodes: Sequence[str], edges: Iterable[Edge], node: str) -> set[str]:
    """Every node reached from ``node`` along directed edges (downstream of it), ``node`` excluded."""
    return set(nx.descendants(_digraph(nodes, edges), node))


def ancestors(nodes: Sequence[str], edges: Iterable[Edge], node: str) -> set[str]:
    """Every node from which ``node`` is reached along directed edges (upstream of it), ``node``
    excluded."""
    return set(nx.ancestors(_digraph(nodes, edges), node))


def reachable_from(nodes: Sequence[str], edges: Iterable[Edge], sources: Iterable[str]) -> set[str]:
    """``sources`` and every node downstream of one of them."""
    g = _digraph(nodes, edges)
    out: set[str] = set()
    for s in sources:
        if s not in out:
            out.add(s)
            out |= nx.descendants(g, s)
    return out


def reaching(nodes: Sequence[str], edges: Iterable[Edge], targets: Iterable[str]) -> set[str]:
    """``targets`` and every node upstream of one of them."""
    return reachable_from(nodes, [(v, u) for u, v in edges], targets)


def tree_closing_edge(nodes: Sequence[str], edges: Iterable[Edge]) -> tuple[int, list[str]] | None:
    """The first edge that closes an undirected cycle, with the cycle; ``None`` for a forest.

    Edges are added in their given order, directions ignored; the answer is ``(e, [u, ..., v, u])``
    where ``edges[e] = (u, v)`` and ``u ... v`` is the path that already joined its two ends (in a
    forest that path is unique). A self-loop ``(u, u)`` gives ``[u, u]``, a repeated or reversed
    edge ``[u, v, u]``.
    """
    g = nx.Graph()
    g.add_nodes_from(nodes)
    joined = nx.utils.UnionFind(nodes)
    for e, (u, v) in enumerate(edges):
        if joined[u] == joined[v]:
            return e, [*nx.shortest_path(g, u, v), u]
        joined.union(u, v)
        g.add_edge(u, v)
    return None


def components(nodes: Sequence[str], edges: Iterable[Edge]) -> list[list[str]]:
    """The connected parts of the network, edge directions ignored (weak components).

    Each part lists its nodes in ``nodes`` order; parts are ordered by their first node.
    """
    g = nx.Graph()
    g.add_nodes_from(nodes)
    g.add_edges_from(edges)
    position = {n: i for i, n in enumerate(g.nodes)}
    parts = [sorted(c, key=position.__getitem__) for c in nx.connected_components(g)]
    return sorted(parts, key=lambda part: position[part[0]])


def is_tree(nodes: Sequence[str], edges: Iterable[Edge]) -> bool:
    """Whether the edges, directions ignored, form a tree spanning ``nodes``: connected, no cycle
    (a repeated or reversed edge counts as a cycle of length 2), and no edge end outside ``nodes``.

    Example:
        >>> is_tree(["a", "b", "c"], [("a", "b"), ("a", "c")])
        True
        >>> is_tree(["a", "b", "c", "d"], [("a", "b"), ("a", "c"), ("b", "d"), ("c", "d")])
        False
    """
    nodes = list(nodes)
    edges = list(edges)
    known = set(nodes)
    if not nodes or any(u not in known or v not in known for u, v in edges):
        return False
    return len(edges) == len(nodes) - 1 and tree_closing_edge(nodes, edges) is None
