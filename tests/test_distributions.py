"""The simulator's random inputs have the distributions the scenario asks for."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from meio.envs.scenario import Scenario
from meio.envs.simulator import Simulator


def one_node(demand: dict, lead_time: object = 1, extra: dict | None = None, n: int = 400) -> Simulator:
    d = {
        "name": "t",
        "nodes": [{"id": "a", "holding_cost": 1, "backorder_cost": 5, "demand": demand}],
        "lanes": [{"from": "external", "to": "a", "lead_time": lead_time}],
        "horizon": 100,
    }
    d.update(extra or {})
    sim = Simulator(Scenario.from_dict(d), n=n)
    sim.reset(seeds=1)
    return sim


@pytest.mark.parametrize(
    "demand",
    [
        {"dist": "poisson", "mean": 7.5},
        {"dist": "poisson", "mean": 0.3},
        {"dist": "normal", "mean": 10, "sd": 3},
        {"dist": "normal", "mean": 1, "sd": 2},  # heavily censored at 0
        {"dist": "gamma", "mean": 4, "sd": 6},
        {"dist": "negative_binomial", "mean": 6, "sd": 4},
        {"dist": "uniform_int", "low": 2, "high": 9},
        {"dist": "discrete", "values": [0, 3, 10], "probs": [0.5, 0.3, 0.2]},
    ],
)
def test_demand_draws_have_the_specified_mean_and_sd(demand):
    sim = one_node(demand)
    x = sim.demand_chunk.ravel()  # 400 rows x 100 periods
    spec = sim.topology.demand_specs[0]
    se = spec.base_sd() / np.sqrt(x.size)
    assert abs(x.mean() - spec.base_mean()) < 5 * se
    assert x.std() == pytest.approx(spec.base_sd(), rel=0.05)
    assert (x >= 0).all()


@pytest.mark.parametrize(
    "demand, dist",
    [
        ({"dist": "poisson", "mean": 12}, stats.poisson(12)),
        ({"dist": "negative_binomial", "mean": 5, "sd": 3}, stats.nbinom(5**2 / (9 - 5), 5 / 9)),
        ({"dist": "uniform_int", "low": 0, "high": 8}, stats.randint(0, 9)),
    ],
)
def test_integer_demand_matches_its_pmf(demand, dist):
    sim = one_node(demand)
    x = sim.demand_chunk.ravel().astype(int)
    support = np.arange(0, int(dist.ppf(0.999)) + 1)
    observed = np.array([(x == k).sum() for k in support] + [(x > support[-1]).sum()])
    expected = np.append(dist.pmf(support), dist.sf(support[-1])) * x.size
    keep = expected > 5
    chi2 = ((observed[keep] - expected[keep]) ** 2 / expected[keep]).sum()
    assert chi2 < stats.chi2.ppf(0.999, keep.sum() - 1)


def test_seasonality_scales_the_mean_by_period():
    sim = one_node({"dist": "poisson", "mean": 10, "seasonality": {"factors": [0.5, 1.0, 2.0, 1.5]}})
    by_phase = [sim.demand_chunk[:, k::4].mean() for k in range(4)]
    np.testing.assert_allclose(by_phase, [5, 10, 20, 15], rtol=0.03)


def test_trend_grows_the_mean():
    sim = one_node({"dist": "normal", "mean": 10, "sd": 1, "trend": 0.01})
    early, late = sim.demand_chunk[:, :10].mean(), sim.demand_chunk[:, -10:].mean()
    assert early == pytest.approx(10 * (1 + 0.01 * 4.5), rel=0.01)
    assert late == pytest.approx(10 * (1 + 0.01 * 94.5), rel=0.01)


def test_correlated_demand_has_the_requested_correlation():
    d = {
        "name": "c",
        "demand_correlation": 0.6,
        "horizon": 100,
        "nodes": [
            {"id": "w", "holding_cost": 1},
            {"id": "a", "holding_cost": 1, "backorder_cost": 5, "demand": {"dist": "normal", "mean": 20, "sd": 4}},
            {"id": "b", "holding_cost": 1, "backorder_cost": 5, "demand": {"dist": "poisson", "mean": 15}},
        ],
        "lanes": [
            {"from": "external", "to": "w", "lead_time": 1},
            {"from": "w", "to": "a", "lead_time": 1},
            {"from": "w", "to": "b", "lead_time": 1},
        ],
    }
    sim = Simulator(Scenario.from_dict(d), n=300)
    sim.reset(seeds=0)
    a, b = sim.demand_chunk[:, :, 0].ravel(), sim.demand_chunk[:, :, 1].ravel()
    assert np.corrcoef(a, b)[0, 1] == pytest.approx(0.6, abs=0.03)  # Poisson(15) barely bends it
    assert a.mean() == pytest.approx(20, rel=0.01) and b.mean() == pytest.approx(15, rel=0.01)
    assert b.var() == pytest.approx(15, rel=0.05)


def test_trace_demand_is_read_as_given(tmp_path):
    (tmp_path / "t.csv").write_text("week,demand\n" + "\n".join(f"{i},{v}" for i, v in enumerate([3, 1, 4, 1, 5])))
    d = {
        "name": "tr",
        "horizon": 12,
        "nodes": [{"id": "a", "holding_cost": 1, "backorder_cost": 5, "demand": {"dist": "trace", "file": "t.csv"}}],
        "lanes": [{"from": "external", "to": "a", "lead_time": 0}],
    }
    sim = Simulator(Scenario.from_dict(d, base_dir=tmp_path), n=2)
    sim.reset(seeds=0)
    np.testing.assert_array_equal(sim.demand_chunk[0, :, 0], [3, 1, 4, 1, 5, 3, 1, 4, 1, 5, 3, 1])
    d["nodes"][0]["demand"]["start"] = "random"
    sim = Simulator(Scenario.from_dict(d, base_dir=tmp_path), n=50)
    sim.reset(seeds=0)
    firsts = {int(x) for x in sim.demand_chunk[:, 0, 0]}
    assert firsts == {1, 3, 4, 5}  # every start row occurs


def _arrival_periods(sim: Simulator, periods: int) -> tuple[np.ndarray, np.ndarray]:
    """Ship one unit a period on the only lane and read, per row, the period each shipment arrives
    in from the pipeline alone: after shipping at ``t``, index ``k`` of the pipeline holds what
    arrives in ``t + 1 + k``, so the new shipment is what index ``k`` holds beyond what index
    ``k + 1`` held before the step. Returns the arrival periods ``(rows, periods)`` and the lead
    times drawn ``(rows, periods)``."""
    arrivals = np.zeros((sim.n, periods), dtype=int)
    drawn = np.zeros((sim.n, periods), dtype=int)
    for t in range(periods):
        before = sim.pipe[:, 0].copy()
        drawn[:, t] = sim.lt_chunk[np.arange(sim.n), sim.pos, 0]
        res = sim.step(np.ones((sim.n, 1)))
        assert (res.shipped[:, 0] == 1.0).all()  # an uncapacitated external lane ships it
        new = sim.pipe[:, 0].copy()
        new[:, :-1] -= before[:, 1:]
        rows, ks = np.nonzero(np.abs(new) > 1e-9)
        assert (np.bincount(rows, minlength=sim.n) == 1).all(), "one shipment must show in one slot"
        assert np.allclose(new[rows, ks], 1.0)
        arrivals[rows, t] = t + 1 + ks
    return arrivals, drawn


def test_random_lead_times_follow_their_distribution_and_do_not_cross():
    lt = {"dist": "discrete", "values": [1, 2, 5], "probs": [0.2, 0.5, 0.3]}
    sim = one_node({"dist": "poisson", "mean": 4}, lead_time=lt)
    draws = sim.lt_chunk[:, :, 0].ravel()
    freq = [(draws == v).mean() for v in (1, 2, 5)]
    np.testing.assert_allclose(freq, [0.2, 0.5, 0.3], atol=0.01)
    for crossing in (False, True):
        sim = Simulator(
            Scenario.from_dict(
                {
                    "name": "t",
                    "horizon": 100,
                    "nodes": [
                        {"id": "a", "holding_cost": 1, "backorder_cost": 5, "demand": {"dist": "poisson", "mean": 4}}
                    ],
                    "lanes": [{"from": "external", "to": "a", "lead_time": lt, "order_crossing": crossing}],
                }
            ),
            n=200,
            chunk=41,
        )  # one block of draws covers the run
        sim.reset(seeds=1)
        arrivals, drawn = _arrival_periods(sim, 40)
        if not crossing:
            # shipments on one lane arrive in shipping order, each no earlier than its drawn lead time
            assert (np.diff(arrivals, axis=1) >= 0).all()
            assert (arrivals >= np.arange(40) + drawn).all()
            assert (arrivals > np.arange(40) + drawn).any(), "no draw would have overtaken: nothing was tested"
    # with order_crossing each shipment takes its own draw, and later shipments do overtake
    np.testing.assert_array_equal(arrivals, np.arange(40) + drawn)
    assert (np.diff(arrivals, axis=1) < 0).any()


def test_outages_start_and_end_at_the_given_rates():
    d = {
        "name": "o",
        "horizon": 100,
        "nodes": [{"id": "a", "holding_cost": 1, "backorder_cost": 5, "demand": {"dist": "poisson", "mean": 4}}],
        "lanes": [
            {
                "from": "external",
                "to": "a",
                "lead_time": 1,
                "disruption": {"start_probability": 0.1, "mean_duration": 5},
            }
        ],
    }
    sim = Simulator(Scenario.from_dict(d), n=200)
    sim.reset(seeds=2)
    states = []
    for _ in range(100):
        sim.step(np.ones((sim.n, 1)))
        states.append(sim.down[:, 0].copy())
    s = np.array(states)
    # stationary probability of an outage: p / (p + 1/d) = 0.1 / 0.3
    assert s[20:].mean() == pytest.approx(1 / 3, abs=0.03)
    ups = (~s[:-1]).sum()
    starts = (~s[:-1] & s[1:]).sum()
    assert starts / ups == pytest.approx(0.1, abs=0.01)
