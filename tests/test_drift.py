"""Long-run stability: the spread of the replications' costs and the drift detector
(:func:`meio.envs.metrics.drifting_replications`), and their use in training (``evaluations.csv``,
the choice of ``best/``)."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
from scipy.signal import lfilter

from meio.agents import train as train_module
from meio.agents.config import ConfigError, PPOConfig
from meio.agents.train import evaluation_scalars, selection_cost, train
from meio.envs.metrics import (
    DRIFT_TOL,
    drifting_replications,
    evaluate,
    long_run_problems,
    outlying_replications,
    paired_spread,
    quarter_levels,
    replication_spread,
    replication_trends,
)
from meio.envs.multi_echelon import MultiEchelonEnv
from meio.envs.policies import BaseStockPolicy
from meio.envs.resolve import resolve
from meio.envs.simulator import Simulator
from meio.envs.vec_env import MultiEchelonVecEnv

#: Installation levels for beer_game_basic (demand uniform on {0, 1, 2}, lead time 4 per lane): the
#: retailer covers 5 periods of mean demand plus a safety stock, the others their lead-time demand.
LEVELS = {"retailer": 7.0, "wholesaler": 5.0, "distributor": 5.0, "manufacturer": 5.0}
#: The same with 10 more units at the retailer: 10 units more on hand, 20 more holding cost a period.
HIGH = {**LEVELS, "retailer": 17.0}


class RunsAway:
    """``LEVELS`` in every row, except that row ``row`` switches to ``HIGH`` from period ``start``
    on and keeps them: a policy that, in one replication, settles into a costlier regime."""

    name = "runs_away"

    def __init__(self, row: int | None | str, start: int) -> None:
        topo = resolve("beer_game_basic")
        self.low, self.high = BaseStockPolicy(topo, LEVELS), BaseStockPolicy(topo, HIGH)
        self.row, self.start = row, start

    def act(self, sim: Simulator) -> np.ndarray:
        orders = self.low.act(sim)
        if self.row == "all":  # every replication switches: no replication leaves the others' band
            if sim.t[0] >= self.start:
                return self.high.act(sim)
        elif self.row is not None and sim.t[self.row] >= self.start:
            orders[self.row] = self.high.act(sim)[self.row]
        return orders


def test_spread_is_the_worst_replication_over_the_median_less_one():
    assert replication_spread(np.array([4.0, 5.0, 5.0, 6.0, 7.5])) == pytest.approx(7.5 / 5.0 - 1.0)
    assert replication_spread(np.array([3.0, 3.0])) == 0.0
    assert replication_spread(np.array([3.0])) == 0.0


def test_iid_replications_raise_no_drift_and_a_shifted_one_does():
    # Ten replications of i.i.d. N(10, 1) costs share one mean: over 20 seeds no row may be flagged.
    for seed in range(20):
        x = np.random.default_rng(seed).normal(10.0, 1.0, size=(10, 10_000))
        assert drifting_replications(x) == (), seed
        # Row 6 moves up by 1.0 (10%) for the second half: 5% above the others over the window.
        x[6, 5_000:] += 1.0
        assert drifting_replications(x) == (6,), seed


def test_a_shift_within_the_tolerance_is_no_drift():
    x = np.random.default_rng(3).normal(10.0, 1.0, size=(8, 50_000))
    x[2] += 0.5 * DRIFT_TOL * 10.0  # half the tolerance: a replication slightly costlier, not adrift
    assert drifting_replications(x) == ()


def test_a_policy_that_runs_away_in_one_replication_is_flagged_and_reported():
    ev = evaluate("beer_game_basic", RunsAway(row=3, start=300), periods=2_000, warmup=100, replications=6, seed=7)
    assert ev.drifting == (3,)
    costs = ev.per_period_cost.mean(axis=1)
    # 20 more holding cost a period over most of the window lifts row 3 far above the others
    assert costs[3] - np.median(costs) > 10.0
    assert ev.spread == pytest.approx(costs.max() / np.median(costs) - 1.0)
    assert ev.spread > 1.0
    d = ev.to_dict()
    assert d["drifting_seeds"] == [10] and d["spread"] == ev.spread
    assert d["replication_costs"] == pytest.approx(costs.tolist())
    assert "DRIFTING: seed(s) 10" in ev.format()
    # best/ ranks such an evaluation by its worst replication, a stable one by its mean
    assert selection_cost(ev) == pytest.approx(costs.max())


def test_a_stable_base_stock_policy_is_not_flagged():
    # The beer game's costs are strongly autocorrelated (16 periods of lead time in all): over a
    # window this short the replications differ by a few per cent, which the band allows for.
    ev = evaluate("beer_game_basic", RunsAway(row=None, start=0), periods=6_000, warmup=100, replications=5, seed=7)
    assert ev.drifting == ()
    assert "DRIFTING" not in ev.format()
    assert selection_cost(ev) == ev.cost_mean


def test_training_writes_the_spread_and_chooses_best_among_evaluations_by_selection_cost(tmp_path: Path, monkeypatch):
    monkeypatch.setattr(train_module, "best_baseline", lambda *a, **k: (None, None))  # not under test
    cfg = PPOConfig.from_dict(
        dict(
            n_envs=4,
            n_steps=64,
            batch_size=64,
            n_epochs=2,
            total_steps=768,
            eval_every=256,
            checkpoint_every=0,
            eval_periods=60,
            eval_warmup=5,
            eval_replications=3,
            net_arch=[16, 16],
        )
    )
    run = tmp_path / "run"
    result = train("beer_game_basic", cfg, run, seed=1, progress=False)
    with (run / "evaluations.csv").open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [int(r["steps"]) for r in rows][-3:] == [256, 512, 768]
    scores = []
    for r in rows:
        cost, worst, spread = float(r["cost"]), float(r["worst_replication"]), float(r["spread_pct"])
        assert worst >= cost and spread >= 0.0
        assert int(r["trending"]) == 0  # 60 periods: too short for the trend check
        scores.append(worst if int(r["drifting"]) else cost)
    best = json.loads((run / "best" / "meta.json").read_text())
    assert best["eval_cost"] == pytest.approx(min(scores))
    assert best["steps"] == int(rows[int(np.argmin(scores))]["steps"])
    assert result.best_eval_cost == pytest.approx(min(scores))


# ---- the within-replication trend check ---------------------------------------------------------


def ar1(rng: np.random.Generator, phi: float, shape: tuple[int, int]) -> np.ndarray:
    """Stationary AR(1) ``x_t = phi x_{t-1} + e_t``, ``e_t ~ N(0, 1)``, started in its stationary law."""
    e = rng.normal(size=shape)
    e[:, 0] /= math.sqrt(1.0 - phi * phi)
    return lfilter([1.0], [1.0, -phi], e, axis=1)


def test_the_trend_standard_error_is_the_ar1_one_and_a_stationary_series_is_not_flagged():
    # AR(1) with phi 0.95 (a correlation time of about 40 periods, like the beer game's 16-period
    # pipeline): the mean of m periods has variance ~ 1 / ((1 - phi)^2 m) (Box & Jenkins), so the
    # difference of two quarter means of T / 4 periods has sd sqrt(2 / ((1 - phi)^2 T / 4)).
    phi, t = 0.95, 40_000
    expected = math.sqrt(2.0 / ((1.0 - phi) ** 2 * (t / 4)))
    rises = []
    for seed in range(10):
        x = 10.0 + ar1(np.random.default_rng(seed), phi, (8, t))
        early, late, se = quarter_levels(x)
        assert se.mean() == pytest.approx(expected, rel=0.2), seed
        rises.append(late - early)
        assert replication_trends(x)[1] == (), seed
    assert np.std(np.concatenate(rises)) == pytest.approx(expected, rel=0.2)


def test_a_ramp_is_flagged_in_every_replication_and_the_band_misses_it():
    phi, t = 0.95, 40_000
    x = 10.0 + ar1(np.random.default_rng(1), phi, (6, t))
    # Every replication climbs by 4 units (40%) over the window: they stay together, so the
    # across-replication band sees nothing, while each replication against itself does.
    ramp = x + np.linspace(0.0, 4.0, t)
    rise, rows = replication_trends(ramp)
    assert rows == tuple(range(6))
    # late quarter minus early quarter: 3/4 of the ramp, over the early level near 10 + 0.5
    assert rise == pytest.approx(3.0 / 10.5, abs=0.05)
    assert drifting_replications(ramp) == ()
    # a ramp of 1% is below the tolerance: a slow rise of that size is noise on such a chain
    assert replication_trends(x + np.linspace(0.0, 0.1, t))[1] == ()


def test_a_window_too_short_is_not_assessed():
    rise, rows = replication_trends(np.arange(2 * 150, dtype=float).reshape(2, 150))
    assert rows == () and np.isnan(rise).all()


def test_an_evaluation_whose_every_replication_runs_away_is_trending_and_ranked_by_where_it_got():
    ev = evaluate(
        "beer_game_basic", RunsAway(row="all", start=1_100), periods=2_000, warmup=100, replications=4, seed=7
    )
    assert ev.drifting == ()  # the replications agree with each other
    assert ev.trending == (0, 1, 2, 3)
    late = ev.late_costs
    # from period 1,000 of the window on, 10 more units at the retailer cost 20 a period more
    assert (late - ev.per_period_cost[:, :500].mean(axis=1) > 15.0).all()
    assert selection_cost(ev) == pytest.approx(late.max())
    assert selection_cost(ev) > ev.cost_mean + 5.0
    d = ev.to_dict()
    assert d["trending_seeds"] == [7, 8, 9, 10] and len(d["replication_trends"]) == 4
    assert "TRENDING: seed(s) 7" in ev.format()
    scalars = evaluation_scalars(ev, None)
    assert scalars["eval/trending"] == 4.0 and scalars["eval/max_trend_pct"] > 100.0


# ---- the paired spread ------------------------------------------------------------------------------


def test_paired_spread_divides_out_the_common_random_numbers():
    reference = np.array([5.0, 5.5, 4.8, 5.2, 6.0])  # costs differ by the demand each seed drew
    policy = 1.1 * reference  # 10% above the reference on every seed: a stable policy
    spread, ratios = paired_spread(policy, reference)
    assert ratios == pytest.approx(np.full(5, 1.1)) and spread == pytest.approx(0.0, abs=1e-12)
    assert replication_spread(policy) == pytest.approx(6.6 / 5.72 - 1.0)  # the plain spread is 15%
    policy[3] = 1.1 * 1.03 * reference[3]  # one seed 3% above the others' ratio
    spread, _ = paired_spread(policy, reference)
    assert spread == pytest.approx(0.03)
    assert paired_spread(reference, reference)[0] == 0.0
    with pytest.raises(ValueError, match="reference"):
        paired_spread(policy, reference[:4])
    with pytest.raises(ValueError, match="reference"):
        paired_spread(policy, np.array([5.0, 0.0, 4.8, 5.2, 6.0]))


def test_a_replication_is_outlying_only_when_high_in_cost_and_in_ratio():
    reference = np.array([5.0, 5.0, 5.0, 5.0, 5.5])  # seed 4 drew costly demand
    # near the optimum: seed 4 costs 10% more, as the reference does; its ratio is ordinary
    assert outlying_replications(1.01 * reference, reference) == ()
    # far above the optimum, cost mostly holding: flat cost, so seed 4's ratio is low and the
    # others' ratios are high only against a reference that was lucky (none here)
    flat = np.full(5, 17.0)
    assert outlying_replications(flat, reference) == ()
    assert outlying_replications(flat, np.array([5.0, 5.0, 4.5, 5.0, 5.0])) == ()  # high ratio, cost ordinary
    drifted = 1.01 * reference
    drifted[1] *= 1.5  # seed 1 ran away: high in cost and in ratio
    assert outlying_replications(drifted, reference) == (1,)


def test_an_evaluation_pairs_only_with_one_on_the_same_seeds():
    a = evaluate("beer_game_basic", RunsAway(row=None, start=0), periods=300, warmup=10, replications=3, seed=1)
    b = evaluate("beer_game_basic", RunsAway(row=1, start=100), periods=300, warmup=10, replications=3, seed=1)
    spread, ratios = b.paired_spread(a)
    assert ratios[1] > 1.5 and ratios[0] == pytest.approx(1.0) and spread > 0.4
    assert long_run_problems(a, a) == []
    assert any("seed(s) 2 over 2% above the median" in p for p in long_run_problems(b, a))
    c = evaluate("beer_game_basic", RunsAway(row=None, start=0), periods=300, warmup=10, replications=3, seed=2)
    with pytest.raises(ValueError, match="same random numbers"):
        b.paired_spread(c)


# ---- episode_start: continue --------------------------------------------------------------------

H = 40


def _rollout(n: int, horizon: int, periods: int, **kw) -> tuple[MultiEchelonVecEnv, list[int], list[int]]:
    """A fixed state-feedback policy (orders fall as the observed stock rises) for ``periods`` periods;
    the periods at which some row's episode ended and the lengths of the episodes ended."""
    env = MultiEchelonVecEnv("beer_game_basic", n_envs=n, seed=11, horizon=horizon, observe_time=False, **kw)
    obs = env.reset()
    s = env.action_space.shape[0]
    ends, lengths = [], []
    for t in range(periods):
        obs, _, dones, infos = env.step(np.tanh(0.4 - 0.6 * obs[:, :s]))
        if dones.any():
            ends.append(t + 1)
            lengths += [info["episode"]["l"] for info in infos if "episode" in info]
    return env, ends, lengths


def _state(sim: Simulator) -> tuple[np.ndarray, ...]:
    return tuple(arr.copy() for arr in (sim.on_hand, sim.cust_bo, sim.owed, sim.pipe, sim.last_arr))


def test_continue_keeps_the_state_across_truncations_as_one_long_run():
    cont, ends, lengths = _rollout(3, H, 2 * H, episode_start="continue")
    long, long_ends, _ = _rollout(3, 100 * H, 2 * H)  # the same policy and seeds, never truncated
    restart, _, _ = _rollout(3, H, 2 * H)
    assert ends == [H, 2 * H] and lengths == [H] * 6 and long_ends == []
    for mine, theirs in zip(_state(cont.sim), _state(long.sim)):
        np.testing.assert_array_equal(mine, theirs)
    # and the random streams run on as well: the next periods' demand is the long run's
    orders = np.ones((3, cont.topology.n_slots))
    for _ in range(3):
        np.testing.assert_array_equal(cont.sim.step(orders).costs, long.sim.step(orders).costs)
        np.testing.assert_array_equal(cont.sim.last_node_out, long.sim.last_node_out)
    assert not np.array_equal(restart.sim.on_hand, long.sim.on_hand)  # restarting does differ


def test_a_share_of_the_rows_continues_and_the_rest_restart():
    mixed, _, _ = _rollout(4, H, 2 * H + 5, episode_start="continue", continue_share=0.5)
    long, _, _ = _rollout(4, 100 * H, 2 * H + 5)
    restart, _, _ = _rollout(4, H, 2 * H + 5)
    np.testing.assert_array_equal(mixed.sim.on_hand[:2], long.sim.on_hand[:2])
    np.testing.assert_array_equal(mixed.sim.on_hand[2:], restart.sim.on_hand[2:])


def test_the_single_env_continues_on_request():
    def run(horizon: int, continues: bool) -> np.ndarray:
        env = MultiEchelonEnv("beer_game_basic", horizon=horizon, observe_time=False)
        env.reset(seed=4)
        for _ in range(2):
            for _ in range(H):
                obs, _, _, truncated, _ = env.step(np.full(env.action_space.shape, 0.1, dtype=np.float32))
            if horizon == H:
                assert truncated
                env.reset(options={"episode_start": "continue" if continues else "initial"})
        return env.sim.on_hand.copy()

    np.testing.assert_array_equal(run(H, True), run(10 * H, False))
    assert not np.array_equal(run(H, False), run(10 * H, False))


def test_episode_start_is_checked_naming_the_field():
    with pytest.raises(ConfigError, match="episode_start: 'contine' is not one of initial, continue"):
        PPOConfig.from_dict({"episode_start": "contine"})
    with pytest.raises(ConfigError, match="continue_share: 0.5 needs episode_start: continue"):
        PPOConfig.from_dict({"continue_share": 0.5})
    with pytest.raises(ConfigError, match="continue_share: 0 is out of range"):
        PPOConfig.from_dict({"episode_start": "continue", "continue_share": 0})
    assert PPOConfig.from_dict({"episode_start": "continue"}).continue_share == 1.0
    with pytest.raises(ValueError, match="episode_start: 'again'"):
        MultiEchelonVecEnv("beer_game_basic", n_envs=2, episode_start="again")
    with pytest.raises(ValueError, match="episode_start: 'again'"):
        MultiEchelonEnv("beer_game_basic").reset(options={"episode_start": "again"})
