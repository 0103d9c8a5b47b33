"""The cost-service frontier: monotone, feasible on the evaluation seeds, no dearer than the
service-target baseline, one node's target at a time, bad targets refused, the plot read back."""

from __future__ import annotations

import math
from dataclasses import replace

import matplotlib.image as mpimg
import numpy as np
import pandas as pd
import pytest
from matplotlib.container import ErrorbarContainer

from meio.baselines.run import run_baselines
from meio.cli import main
from meio.envs.metrics import evaluate
from meio.envs.policies import BaseStockPolicy
from meio.envs.resolve import resolve
from meio.envs.scenario import Scenario, load_scenario
from meio.envs.simulator import Simulator
from meio.frontier import (
    check_targets,
    constrained_group,
    constraints,
    cost_service_frontier,
    enforce_monotone,
    parse_targets,
    policy_points,
)
from meio.plots import plot_cost_service_frontier

EVAL = dict(periods=300, warmup=20, replications=4, seed=0)
BUDGET = dict(search_periods=200, search_replications=4)
SEARCH = dict(**BUDGET, max_rounds=20, max_trades=2)
TARGETS = (0.8, 0.9, 0.95, 0.98)


def with_targets(name: str, targets: dict[str, float], segments: dict[str, str] | None = None) -> Scenario:
    """A shipped scenario with fill-rate targets (and segments) on its demand nodes."""
    sc = load_scenario(name)
    seg = segments or {}
    nodes = tuple(replace(n, service_target=targets.get(n.id), segment=seg.get(n.id)) for n in sc.nodes)
    return replace(sc, nodes=nodes)


@pytest.fixture(scope="module")
def ex61_frontier() -> pd.DataFrame:
    return cost_service_frontier("ex61", TARGETS, **EVAL, **SEARCH)


def test_frontier_is_monotone_within_its_cis(ex61_frontier):
    df = ex61_frontier
    assert list(df.target) == list(TARGETS)
    # the objective is enforced non-decreasing; the investment it is made of rises within its CIs
    assert (np.diff(df.cost_of_service) >= 0).all()
    inv, ci = df.investment_on_hand.to_numpy(), df.investment_on_hand_ci95.to_numpy()
    assert (inv[1:] + ci[1:] >= inv[:-1] - ci[:-1]).all()
    assert (ci > 0).all() and (df.fill_rate_ci95 > 0).all()
    # a serial chain's only demand node is the network: one point of service costs more as it rises
    assert inv[-1] > inv[0] + ci[-1] + ci[0]


def test_every_point_meets_its_target_on_the_evaluation_seeds(ex61_frontier):
    """Each row's levels, evaluated by :func:`meio.envs.metrics.evaluate` on the same seeds, meet
    the row's target, with the fill rate and investment the frontier reports."""
    topo = resolve("ex61")
    sim = Simulator(topo, n=EVAL["replications"])
    for _, row in ex61_frontier.iterrows():
        levels = {n: row[f"level_{n}"] for n in topo.node_names}
        ev = evaluate(sim, BaseStockPolicy(topo, levels, kind="installation"), **EVAL)
        assert ev.fill_rate["network"] >= row.target
        assert row.meets_target and row.fill_rate >= row.target
        assert ev.fill_rate["network"] == pytest.approx(row.fill_rate, rel=1e-9)
        assert ev.investment_on_hand[0] == pytest.approx(row.investment_on_hand, rel=1e-9)
        assert ev.investment_in_transit[0] == pytest.approx(row.investment_in_transit, rel=1e-9)
        assert ev.cost_mean == pytest.approx(row.total_cost, rel=1e-9)


def test_frontier_point_is_no_dearer_than_the_service_target_baseline():
    """Every retailer at 0.9 (the baseline) meets the network's 0.9 too, so the frontier's optimum
    at 0.9 costs no more, on the same seeds, within the two intervals."""
    sc = with_targets("distribution", {"north": 0.9, "central": 0.9, "south": 0.9})
    ((base, ev),) = run_baselines(sc, include=("service_target",), **EVAL, **BUDGET).results
    df = cost_service_frontier(sc, (0.9,), **EVAL, **SEARCH)
    row = df.iloc[0]
    assert row.fill_rate >= 0.9
    assert row.investment_on_hand <= ev.investment_on_hand[0] + ev.investment_on_hand[1] + row.investment_on_hand_ci95


def test_node_target_varies_while_the_others_keep_theirs():
    targets = {"north": 0.95, "central": 0.9, "south": 0.85}
    sc = with_targets("distribution", targets)
    topo = resolve(sc)
    cons = constraints(topo, constrained_group(topo, "north"), 0.7)
    assert {(c.label, c.target) for c in cons} == {("north", 0.7), ("central", 0.9), ("south", 0.85)}
    # network-wide: one constraint on every demand node, the scenario's targets ignored
    (net,) = constraints(topo, constrained_group(topo, None), 0.7)
    assert net.target == 0.7 and sorted(net.columns) == [0, 1, 2]
    df = cost_service_frontier(sc, (0.8, 0.97), node="north", **EVAL, **SEARCH)
    assert list(df.group) == ["north", "north"]
    for _, row in df.iterrows():
        assert row.fill_rate == row.fill_rate_north >= row.target
        assert row.fill_rate_central >= 0.9 and row.fill_rate_south >= 0.85
    # north's own level carries its higher target
    assert df.level_north.iloc[1] > df.level_north.iloc[0]


def test_segment_pools_its_nodes():
    sc = with_targets("distribution", {"south": 0.9}, segments={"north": "east", "central": "east"})
    topo = resolve(sc)
    label, cols = constrained_group(topo, "east")
    dnames = [topo.node_names[j] for j in topo.demand_nodes]
    assert label == "east" and sorted(dnames[c] for c in cols) == ["central", "north"]
    assert {(c.label, c.target) for c in constraints(topo, (label, cols), 0.8)} == {("east", 0.8), ("south", 0.9)}
    with pytest.raises(ValueError, match=r"node: 'warehouse' is not a demand node or segment.*east"):
        constrained_group(topo, "warehouse")


def test_dominated_target_takes_the_cheaper_policy():
    df = pd.DataFrame(
        {
            "target": [0.8, 0.9, 0.95],
            "cost_of_service": [5.0, 4.0, 6.0],
            "level_a": [10.0, 9.0, 12.0],
            "dominated_by": [math.nan] * 3,
        }
    )
    out = enforce_monotone(df)
    assert list(out.target) == [0.8, 0.9, 0.95]
    assert list(out.cost_of_service) == [4.0, 4.0, 6.0]
    assert list(out.level_a) == [9.0, 9.0, 12.0]
    assert out.dominated_by.iloc[0] == 0.9 and out.dominated_by.iloc[1:].isna().all()
    chain = enforce_monotone(
        pd.DataFrame({"target": [0.8, 0.9, 0.95], "cost_of_service": [7.0, 6.0, 5.0], "dominated_by": [math.nan] * 3})
    )
    assert list(chain.cost_of_service) == [5.0, 5.0, 5.0] and list(chain.dominated_by.iloc[:2]) == [0.95, 0.95]


@pytest.mark.parametrize(
    ("text", "rule"),
    [
        ("0.8,1.2", "outside"),
        ("0,0.5", "outside"),
        ("0.9,0.8", "increasing"),
        ("0.8,0.8", "increasing"),
        ("0.8,abc", "not a number"),
        ("0.8,,0.9", "empty"),
        ("nan", "outside"),
    ],
)
def test_bad_targets_are_refused_naming_the_option(text, rule, capsys):
    with pytest.raises(ValueError, match=rf"^targets: .*{rule}"):
        parse_targets(text)
    assert main(["frontier", "--scenario", "ex61", "--targets", text, "--baselines", "none"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("meio frontier: error: --targets: ") and rule in err
    assert check_targets([0.5, 0.75]) == (0.5, 0.75)


def test_unknown_node_is_refused_naming_the_option(capsys):
    assert main(["frontier", "--scenario", "ex61", "--node", "dc", "--baselines", "none"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("meio frontier: error: --node: 'dc' is not a demand node or segment of ex61")
    assert main(["frontier", "--scenario", "ex61", "--baselines", "local,nope"]) == 2
    assert capsys.readouterr().err.startswith("meio frontier: error: --baselines: 'nope' is not a baseline")


def test_plot_has_one_point_per_target_with_error_bars(ex61_frontier, tmp_path, figures):
    points = {"a policy": (0.93, 9.0, 0.5), "no interval": (0.97, 12.0, math.nan)}
    path = tmp_path / "f.png"
    plot_cost_service_frontier(ex61_frontier, points, path, "title", note="budget note")
    fig = figures[-1]
    img = mpimg.imread(path)[:, :, :3]
    w, h = fig.get_size_inches()
    assert img.shape[:2] == (round(h * 120), round(w * 120))
    assert 0.3 < (img > 0.98).all(axis=2).mean() < 0.98
    ax = fig.axes[0]
    frontier, first, second = ax.containers
    assert isinstance(frontier, ErrorbarContainer) and frontier.has_xerr and frontier.has_yerr
    line, _, (xbars, ybars) = frontier
    np.testing.assert_allclose(line.get_xdata(), ex61_frontier.fill_rate)
    np.testing.assert_allclose(line.get_ydata(), ex61_frontier.investment_on_hand)
    # one vertical bar per target, spanning the investment's CI
    segs = ybars.get_segments()
    assert len(segs) == len(TARGETS) == len(xbars.get_segments())
    np.testing.assert_allclose([s[1, 1] - s[0, 1] for s in segs], 2 * ex61_frontier.investment_on_hand_ci95)
    assert first.has_yerr and not second.has_yerr
    np.testing.assert_allclose(first[0].get_xydata(), [[0.93, 9.0]])
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels[1:] == ["a policy", "no interval"]
    assert "fill rate" in ax.get_xlabel() and "investment" in ax.get_ylabel() and "per period" in ax.get_ylabel()
    assert any(t.get_text() == "budget note" for t in fig.texts)


def test_cli_writes_csv_md_png_with_baselines_as_points(tmp_path, capsys, figures):
    out = tmp_path / "fr"
    code = main(
        [
            "frontier",
            "--scenario",
            "ex61",
            "--targets",
            "0.85,0.95",
            "--periods",
            "200",
            "--warmup",
            "20",
            "--replications",
            "3",
            "--search-periods",
            "150",
            "--search-replications",
            "3",
            "--baselines",
            "local",
            "--out",
            str(out),
        ]
    )
    assert code == 0, capsys.readouterr().err
    df = pd.read_csv(out / "frontier.csv")
    assert list(df.target) == [0.85, 0.95] and (df.fill_rate >= df.target).all()
    assert "Marginal cost of service" in (out / "frontier.md").read_text()
    ax = figures[-1].axes[0]
    assert [t.get_text() for t in ax.get_legend().get_texts()][1:] == ["local"]
    # the point is the local rule's evaluation on the frontier's seeds
    topo = resolve("ex61")
    ((_, ev),) = run_baselines("ex61", include=("local",), periods=200, warmup=20, replications=3, seed=0).results
    assert policy_points({"local": ev}, topo)["local"][:2] == pytest.approx(
        (ev.fill_rate["network"], ev.investment_on_hand[0])
    )
    np.testing.assert_allclose(
        ax.containers[1][0].get_xydata(), [[ev.fill_rate["network"], ev.investment_on_hand[0]]], rtol=1e-9
    )
