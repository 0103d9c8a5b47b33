"""Long-run stability: the spread of the replications' costs and the drift detector
(:func:`meio.envs.metrics.drifting_replications`), and their use in training (``evaluations.csv``,
the choice of ``best/``)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from meio.agents import train as train_module
from meio.agents.config import PPOConfig
from meio.agents.train import selection_cost, train
from meio.envs.metrics import DRIFT_TOL, drifting_replications, evaluate, replication_spread
from meio.envs.policies import BaseStockPolicy
from meio.envs.resolve import resolve
from meio.envs.simulator import Simulator

#: Installation levels for beer_game_basic (demand uniform on {0, 1, 2}, lead time 4 per lane): the
#: retailer covers 5 periods of mean demand plus a safety stock, the others their lead-time demand.
LEVELS = {"retailer": 7.0, "wholesaler": 5.0, "distributor": 5.0, "manufacturer": 5.0}
#: The same with 10 more units at the retailer: 10 units more on hand, 20 more holding cost a period.
HIGH = {**LEVELS, "retailer": 17.0}


class RunsAway:
    """``LEVELS`` in every row, except that row ``row`` switches to ``HIGH`` from period ``start``
    on and keeps them: a policy that, in one replication, settles into a costlier regime."""

    name = "runs_away"

    def __init__(self, row: int | None, start: int) -> None:
        topo = resolve("beer_game_basic")
        self.low, self.high = BaseStockPolicy(topo, LEVELS), BaseStockPolicy(topo, HIGH)
        self.row, self.start = row, start

    def act(self, sim: Simulator) -> np.ndarray:
        orders = self.low.act(sim)
        if self.row is not None and sim.t[self.row] >= self.start:
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
    assert len(rows) == 3
    scores = []
    for r in rows:
        cost, worst, spread = float(r["cost"]), float(r["worst_replication"]), float(r["spread_pct"])
        assert worst >= cost and spread >= 0.0
        scores.append(worst if int(r["drifting"]) else cost)
    best = json.loads((run / "best" / "meta.json").read_text())
    assert best["eval_cost"] == pytest.approx(min(scores))
    assert best["steps"] == int(rows[int(np.argmin(scores))]["steps"])
    assert result.best_eval_cost == pytest.approx(min(scores))
