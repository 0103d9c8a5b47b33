"""Tests of meio.envs.graph and of the node and slot orders the compiled topology takes from it.

The order of the simulator's nodes is defined, not computed by whatever the library does: of all
topological orders, the one that always places the earliest-listed node whose suppliers are all
placed (docs/model.md; ``Topology`` keeps node arrays in that order and the action vector keeps the
file's lane order). The tests check that definition with a direct, slow implementation of it.
"""

from __future__ import annotations

import random

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from meio.envs.graph import (
    ancestors,
    components,
    descendants,
    find_cycle,
    is_tree,
    reachable_from,
    reaching,
    topological_order,
    tree_closing_edge,
)
from meio.envs.scenario import list_scenarios, load_scenario
from meio.envs.topology import compile_topology


def earliest_ready_order(nodes: list[str], edges: list[tuple[str, str]]) -> list[str]:
    """The definition, O(n^2): repeatedly place the first listed node whose suppliers are placed."""
    placed: list[str] = []
    while len(placed) < len(nodes):
        ready = [n for n in nodes if n not in placed and all(u in placed for u, v in edges if v == n)]
        placed.append(ready[0])
    return placed


@st.composite
def dags(draw: st.DrawFn) -> tuple[list[str], list[tuple[str, str]]]:
    """A random DAG: edges only run forward along a hidden random order, listed in random order."""
    n = draw(st.integers(1, 12))
    nodes = [f"n{i}" for i in range(n)]
    hidden = draw(st.permutations(nodes))
    pairs = [(hidden[i], hidden[j]) for i in range(n) for j in range(i + 1, n)]
    edges = draw(st.lists(st.sampled_from(pairs), unique=True, max_size=len(pairs))) if pairs else []
    return nodes, edges


def is_cycle_of(cycle: list[str], edges: list[tuple[str, str]]) -> bool:
    """Every consecutive pair of ``cycle`` (wrapping round) is an edge and no node repeats."""
    arcs = set(edges)
    return len(set(cycle)) == len(cycle) and all(
        (cycle[i], cycle[(i + 1) % len(cycle)]) in arcs for i in range(len(cycle))
    )


# =================================================================================================
# Cycles
# =================================================================================================
def test_find_cycle_finds_a_three_cycle_and_nothing_in_a_dag():
    edges = [("src", "a"), ("a", "b"), ("b", "c"), ("c", "a"), ("c", "sink")]
    cycle = find_cycle(edges)
    assert cycle is not None and sorted(cycle) == ["a", "b", "c"]
    assert is_cycle_of(cycle, edges)
    assert find_cycle([("a", "b"), ("a", "c"), ("b", "c"), ("c", "d")]) is None
    assert find_cycle([]) is None
    assert find_cycle([("a", "a")]) == ["a"]


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(dags(), st.data())
def test_find_cycle_on_random_graphs(dag, data):
    nodes, edges = dag
    assert find_cycle(edges, nodes) is None
    order = earliest_ready_order(nodes, edges)
    if len(order) < 2:
        return
    # A path order[i] -> ... -> order[j] closed by a back edge is a cycle; find_cycle must see one.
    i = data.draw(st.integers(0, len(order) - 2))
    j = data.draw(st.integers(i + 1, len(order) - 1))
    looped = edges + [(order[k], order[k + 1]) for k in range(i, j)] + [(order[j], order[i])]
    cycle = find_cycle(looped, nodes)
    assert cycle is not None and is_cycle_of(cycle, looped)


def test_topological_order_names_the_cycle():
    with pytest.raises(ValueError, match=r"^edges: the network has a cycle b -> c -> b"):
        topological_order(["a", "b", "c"], [("a", "b"), ("b", "c"), ("c", "b")])


# =================================================================================================
# Topological order
# =================================================================================================
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(dags(), st.randoms(use_true_random=False))
def test_topological_order_respects_every_edge_and_breaks_ties_by_listing(dag, rnd: random.Random):
    nodes, edges = dag
    order = topological_order(nodes, edges)
    assert sorted(order) == sorted(nodes)
    position = {n: k for k, n in enumerate(order)}
    assert all(position[u] < position[v] for u, v in edges)
    assert order == earliest_ready_order(nodes, edges)
    # Deterministic: the same answer again, and whatever order the edges come in.
    shuffled = list(edges)
    rnd.shuffle(shuffled)
    assert topological_order(nodes, shuffled) == order


def test_topological_order_keeps_the_listing_where_edges_allow():
    assert topological_order(["c", "a", "b"], []) == ["c", "a", "b"]
    assert topological_order(["shop", "plant", "depot"], [("plant", "depot"), ("depot", "shop")]) == [
        "plant",
        "depot",
        "shop",
    ]
    # "x" is listed before "plant" and free, so it comes first; "y" waits for its supplier "plant".
    assert topological_order(["y", "x", "plant"], [("plant", "y")]) == ["x", "plant", "y"]


# =================================================================================================
# Reachability
# =================================================================================================
# plant -> dc1 -> shop1, plant -> dc2 -> shop2, dc1 -> shop2; other is unconnected.
NODES = ["shop1", "shop2", "dc1", "dc2", "plant", "other"]
EDGES = [("plant", "dc1"), ("plant", "dc2"), ("dc1", "shop1"), ("dc2", "shop2"), ("dc1", "shop2")]


def test_descendants_and_ancestors():
    assert descendants(NODES, EDGES, "plant") == {"dc1", "dc2", "shop1", "shop2"}
    assert descendants(NODES, EDGES, "dc1") == {"shop1", "shop2"}
    assert descendants(NODES, EDGES, "shop1") == set()
    assert ancestors(NODES, EDGES, "shop2") == {"dc1", "dc2", "plant"}
    assert ancestors(NODES, EDGES, "other") == set()
    assert reachable_from(NODES, EDGES, ["dc2", "other"]) == {"dc2", "shop2", "other"}
    assert reaching(NODES, EDGES, ["shop1"]) == {"shop1", "dc1", "plant"}


# =================================================================================================
# Trees (edge directions ignored)
# =================================================================================================
def test_is_tree_on_a_tree_a_diamond_and_broken_graphs():
    assert is_tree(["a", "b", "c", "d"], [("a", "b"), ("c", "b"), ("b", "d")])  # assembly then distribution
    assert is_tree(["a"], [])
    diamond = [("a", "b"), ("a", "c"), ("b", "d"), ("c", "d")]
    assert not is_tree(["a", "b", "c", "d"], diamond)
    assert not is_tree(["a", "b", "c", "d"], [("a", "b"), ("c", "d")])  # disconnected
    assert not is_tree(["a", "b"], [("a", "b"), ("b", "a")])  # a 2-cycle
    assert not is_tree(["a", "b"], [("a", "z")])  # z is not a node
    assert not is_tree([], [])
    closing = tree_closing_edge(["a", "b", "c", "d"], diamond)
    assert closing is not None and closing[0] == 3
    assert closing[1][0] == closing[1][-1] == "c" and sorted(closing[1][:-1]) == ["a", "b", "c", "d"]
    assert components(["a", "b", "c", "d", "e"], [("e", "b"), ("a", "c")]) == [["a", "c"], ["b", "e"], ["d"]]


# =================================================================================================
# The compiled topology of every shipped scenario
# =================================================================================================
@pytest.mark.parametrize("name", list_scenarios())
def test_shipped_topologies_order_nodes_and_slots_as_defined(name):
    sc = load_scenario(name)
    topo = compile_topology(sc)
    ids = list(sc.node_ids)
    internal = [(lane.source, lane.target) for lane in sc.lanes if not lane.is_external]
    # Nodes: suppliers first, ties in file order; file_index maps back to the file.
    assert list(topo.node_names) == earliest_ready_order(ids, internal)
    assert [ids[i] for i in topo.file_index] == list(topo.node_names)
    # Slots: lane by lane in file order, modes in their listed order.
    expected = [(k, m) for k, lane in enumerate(sc.lanes) for m in range(len(lane.modes))]
    assert list(zip(topo.slot_lane.tolist(), topo.slot_mode.tolist())) == expected
    names = [
        f"{lane.source}->{lane.target}" + (f":{mode.name}" if len(lane.modes) > 1 else "")
        for lane in sc.lanes
        for mode in lane.modes
    ]
    assert list(topo.slot_names) == names
    # Slots out of a node: by the customer's position in the file, then lane, then mode.
    for j in range(topo.n_nodes):
        out = topo.slots_out_of(j).tolist()
        keys = [
            (ids.index(sc.lanes[topo.slot_lane[q]].target), int(topo.slot_lane[q]), int(topo.slot_mode[q])) for q in out
        ]
        assert keys == sorted(keys)
        assert sorted(out) == [q for q in range(topo.n_slots) if topo.slot_src[q] == j]
    # descendants(): the reflexive-transitive closure of the lanes, by repeated squaring.
    adj = np.eye(topo.n_nodes, dtype=bool)
    for lane in range(topo.n_lanes):
        if topo.lane_src[lane] >= 0:
            adj[topo.lane_src[lane], topo.lane_dst[lane]] = True
    for _ in range(topo.n_nodes.bit_length()):
        adj = (adj.astype(int) @ adj.astype(int)) > 0
    np.testing.assert_array_equal(topo.descendants(), adj.astype(float))


def test_example_6_1_nodes_run_from_the_plant_down():
    """ex61.yaml lists retailer, dc, plant with lanes plant -> dc -> retailer: the order reverses."""
    assert compile_topology(load_scenario("ex61")).node_names == ("plant", "dc", "retailer")
