"""Tests of meio.baselines.serial: exact (Clark-Scarf) and Shang-Song echelon base-stock levels.

Timing (docs/model.md): order, then shipments (lead time 0 delivers in the same period), then
demand, then costs on end-of-period quantities. Snyder & Shen's lead times (l_1, l_2, ...) are ours
(l_1 - 1, l_2, ...).
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from scipy import stats

from meio.baselines.serial import (
    SerialSolution,
    _optimize_levels,
    _recursion_constant,
    _validate,
    clark_scarf,
    evaluate_echelon_policy,
    shang_song,
)

# Snyder & Shen (2019), Fundamentals of Supply Chain Theory, 2nd ed., Example 6.1, in our timing.
EX61 = dict(
    lead_times=[0, 1, 2],
    echelon_holding=[3.0, 2.0, 2.0],
    backorder_cost=37.12,
    demand={"dist": "normal", "mean": 5.0, "sd": 1.0},
)
EX61_BOOK_LEVELS = (6.49, 12.02, 22.71)
EX61_BOOK_COST_WITH_PIPELINE = 47.66
# Pipeline stock in the book's accounting (its timing, l = (1, 1, 2)), charged at the shipping
# stage's local rate: h_2 * l_1 * mean + h_3 * l_2 * mean = 4*1*5 + 2*1*5; the supplier lane is free.
EX61_PIPELINE = 30.0
# Our own high-accuracy values: an independent adaptive-quadrature (scipy.integrate.quad, splines
# with 8001 knots) implementation of the book-timing recursion gave S* = (6.4908810, 12.0176058,
# 22.7054978) and C* = 47.66014958; this module at 8x its default resolution agrees to 3e-6.
EX61_ACCURATE_LEVELS = (6.4908810, 12.0176058, 22.7054978)
EX61_ACCURATE_COST = 47.66014958 - EX61_PIPELINE


def _solve(fn, case, **kw):
    return fn(case["lead_times"], case["echelon_holding"], case["backorder_cost"], case["demand"], **kw)


# =================================================================================================
# Example 6.1 (normal demand)
# =================================================================================================
def test_example_6_1_golden_values():
    sol = _solve(clark_scarf, EX61)
    assert isinstance(sol, SerialSolution)
    assert sol.method == "clark_scarf"
    # The book's digits.
    assert tuple(round(float(s), 2) for s in sol.echelon_levels) == EX61_BOOK_LEVELS
    assert abs(sol.expected_cost - 17.66) <= 0.01
    assert abs(sol.expected_cost + EX61_PIPELINE - EX61_BOOK_COST_WITH_PIPELINE) <= 0.01
    # Our high-accuracy values (the lattice error of the default resolution is ~1e-5).
    np.testing.assert_allclose(sol.echelon_levels, EX61_ACCURATE_LEVELS, atol=5e-5)
    assert sol.expected_cost == pytest.approx(EX61_ACCURATE_COST, rel=1e-5)
    # Stage 1 is the newsvendor of demand over L_1 + 1 = 1 period at fractile (p + h_2)/(p + h_1).
    assert sol.echelon_levels[0] == pytest.approx(5 + stats.norm.ppf(41.12 / 44.12), abs=1e-6)
    np.testing.assert_allclose(sol.local_levels, np.diff(np.r_[0.0, sol.echelon_levels]))
    assert sum(sol.cost_split.values()) == pytest.approx(sol.expected_cost, rel=1e-12)
    h_local = np.array([7.0, 4.0, 2.0])
    assert sol.cost_split["holding"] == pytest.approx(float(h_local @ sol.expected_on_hand), rel=1e-12)
    assert sol.cost_split["backorder"] == pytest.approx(37.12 * sol.expected_backorders, rel=1e-12)
    assert 0.9 < sol.fill_rate < 1.0


def _book_timing_recursion(l, hh, p, mu, sd, dx=0.01):
    """Snyder & Shen's recursion in *their* timing (stage j sees demand over l_j periods), written
    independently of meio.baselines.serial: midpoint-weighted normal on a grid, np.convolve, parabolic
    refinement of each minimum. Returns (levels, C~_N(S*_N))."""
    x = np.arange(-80.0, 60.0 + dx / 2, dx)
    C = (p + sum(hh)) * np.maximum(-x, 0.0)
    levels, c_opt = [], math.nan
    for j, lj in enumerate(l):
        m, s = lj * mu, sd * math.sqrt(lj)
        k = np.arange(math.floor((m - 9 * s) / dx), math.ceil((m + 9 * s) / dx) + 1)
        w = stats.norm.pdf(k * dx, m, s)
        w /= w.sum()
        chat = hh[j] * x + C
        conv = np.convolve(chat, w)  # conv[t] = sum_i w[i] chat[t - i]
        ct = np.full_like(x, np.inf)
        n = np.arange(len(x))
        ok = (n - k[0] >= len(w) - 1) & (n - k[0] <= len(x) - 1)
        ct[ok] = conv[n[ok] - k[0]]  # ct[n] = E[chat(x_n - D)], D on the grid k * dx
        i = int(np.argmin(ct))
        a, b, c = ct[i - 1], ct[i], ct[i + 1]
        curv = a - 2 * b + c
        s_opt = x[i] + dx * (a - c) / (2 * curv)
        c_opt = b - (c - a) ** 2 / (8 * curv)
        levels.append(s_opt)
        C = np.where(x > s_opt, c_opt, ct)  # inf far below, where no minimum ever looks
    return np.array(levels), c_opt


def test_example_6_1_in_both_timings():
    # The book's instance in the book's timing, by an independent implementation ...
    book_levels, book_cost = _book_timing_recursion([1, 1, 2], [3.0, 2.0, 2.0], 37.12, 5.0, 1.0)
    assert tuple(round(float(s), 2) for s in book_levels) == EX61_BOOK_LEVELS
    assert abs(book_cost - EX61_BOOK_COST_WITH_PIPELINE) <= 0.01
    # ... is ours with lead times (l_1 - 1, l_2, l_3): same levels, cost minus the pipeline.
    ours = _solve(clark_scarf, EX61)
    np.testing.assert_allclose(ours.echelon_levels, book_levels, atol=2e-3)
    assert ours.expected_cost + EX61_PIPELINE == pytest.approx(book_cost, abs=2e-3)
    # The module's own recursion value C~_N(S*_N) is the book's accounting, and its forward
    # evaluation (a different computation) agrees with it after removing the pipeline constant.
    L, hh, p, dem = _validate(**EX61)
    levels, c_n = _optimize_levels(L, hh, p, dem)
    assert _recursion_constant(L, hh, 5.0) == pytest.approx(20.0 + 10.0)
    assert c_n == pytest.approx(book_cost, abs=2e-3)
    assert c_n - _recursion_constant(L, hh, 5.0) == pytest.approx(ours.expected_cost, rel=1e-8)
    # Passing the book's lead times unconverted (wrong timing) gives a visibly different answer.
    wrong = clark_scarf([1, 1, 2], [3.0, 2.0, 2.0], 37.12, EX61["demand"])
    assert abs(wrong.echelon_levels[0] - book_levels[0]) > 1.0


def test_example_6_1_shang_song_levels():
    # S~_j = (F^-1((p+h_{j+1})/(p+h_j)) + F^-1((p+h_{j+1})/(p+h_1)))/2 over l_1+...+l_j periods
    # (book timing), computed here from the formula; stockpyl's newsvendor_heuristic docstring
    # prints the same levels for Example 6.1: 6.490880975, 12.027434723, 22.634032392.
    sol = _solve(shang_song, EX61)
    h = [7.0, 4.0, 2.0, 0.0]
    lam = [1, 2, 4]
    want = [
        0.5
        * sum(
            stats.norm.ppf(r, 5 * n, math.sqrt(n))
            for r in ((37.12 + h[j + 1]) / (37.12 + h[j]), (37.12 + h[j + 1]) / (37.12 + h[0]))
        )
        for j, n in enumerate(lam)
    ]
    np.testing.assert_allclose(sol.echelon_levels, want, rtol=1e-9)
    np.testing.assert_allclose(sol.echelon_levels, [6.490880975, 12.027434723, 22.634032392], atol=1e-8)
    assert sol.method == "shang_song"
    cs = _solve(clark_scarf, EX61)
    assert cs.expected_cost <= sol.expected_cost <= 1.05 * cs.expected_cost


# =================================================================================================
# Poisson: exactness on the integer lattice
# =================================================================================================
# No published Poisson serial example could be confirmed (the Shang & Song 2003 / Gallego & Zipkin
# test beds are continuous-time and their tables were not available to check); optimality is
# established instead by exhaustive search with the exact evaluation and by simulation below.
POISSON_CASES = [
    dict(
        lead_times=[0, 1, 1],
        echelon_holding=[1.0, 0.5, 0.25],
        backorder_cost=10.0,
        demand={"dist": "poisson", "mean": 3.0},
    ),
    dict(
        lead_times=[1, 0, 2],
        echelon_holding=[1.0, 0.5, 0.25],
        backorder_cost=10.0,
        demand={"dist": "poisson", "mean": 3.0},
    ),
    # Shang & Song's 4-stage instance (rate 16, lead time 0.25, h = 0.25 each, b = 9, as stockpyl's
    # example builds it) on periods of 0.25 time units: Poisson(4) per period, per-period costs
    # h = 0.0625 and p = 2.25, book lead times (1, 1, 1, 1), i.e. ours (0, 1, 1, 1).
    dict(
        lead_times=[0, 1, 1, 1],
        echelon_holding=[0.0625] * 4,
        backorder_cost=2.25,
        demand={"dist": "poisson", "mean": 4.0},
    ),
]


@pytest.mark.parametrize("case", POISSON_CASES)
def test_poisson_exhaustive_search_confirms_optimum(case):
    sol = _solve(clark_scarf, case)
    S = sol.echelon_levels
    assert np.all(S == np.round(S)), "integer demand must give integer levels"
    assert np.all(np.diff(S) >= 0)
    n = len(S)
    span = [-2, -1, 0, 1, 2] if n <= 3 else [-1, 0, 1]
    costs = {}
    for d in itertools.product(span, repeat=n):
        costs[d] = evaluate_echelon_policy(
            case["lead_times"], case["echelon_holding"], case["backorder_cost"], case["demand"], S + np.array(d)
        ).expected_cost
    assert min(costs.values()) >= sol.expected_cost - 1e-10
    assert costs[(0,) * n] == pytest.approx(sol.expected_cost, rel=1e-12)
    # The recursion's value and the forward evaluation agree (two different computations).
    L, hh, p, dem = _validate(**case)
    _, c_n = _optimize_levels(L, hh, p, dem)
    assert c_n - _recursion_constant(L, hh, dem.mean) == pytest.approx(sol.expected_cost, rel=1e-9)


# =================================================================================================
# Single stage = newsvendor over L + 1 periods
# =================================================================================================
@pytest.mark.parametrize("L", [0, 2])
def test_single_stage_poisson_is_newsvendor(L):
    h, p, lam = 1.5, 9.0, 4.0
    sol = clark_scarf([L], [h], p, {"dist": "poisson", "mean": lam})
    rv = stats.poisson(lam * (L + 1))
    S = int(rv.ppf(p / (p + h)))
    assert sol.echelon_levels[0] == S
    d = np.arange(0, 200)
    pmf = rv.pmf(d)
    direct = float(np.sum(pmf * (h * np.maximum(S - d, 0) + p * np.maximum(d - S, 0))))
    assert sol.expected_cost == pytest.approx(direct, rel=1e-10)
    assert sol.expected_backorders == pytest.approx(float(np.sum(pmf * np.maximum(d - S, 0))), rel=1e-10)
    assert sol.expected_on_hand[0] == pytest.approx(float(np.sum(pmf * np.maximum(S - d, 0))), rel=1e-10)
    # Fill rate: E[min(D_t, (S - D[L])^+)] / E[D_t], written out by brute force.
    pa = stats.poisson(lam * L).pmf(d) if L else (d == 0).astype(float)
    p1 = stats.poisson(lam).pmf(d)
    avail = np.maximum(S - d, 0)
    filled = sum(pa[i] * np.sum(p1 * np.minimum(d, avail[i])) for i in range(60))
    assert sol.fill_rate == pytest.approx(filled / lam, rel=1e-9)
    for dS in (-1, 1):
        assert (
            evaluate_echelon_policy([L], [h], p, {"dist": "poisson", "mean": lam}, [S + dS]).expected_cost
            > sol.expected_cost
        )


def test_single_stage_normal_is_newsvendor():
    h, p, mu, sd, L = 2.0, 18.0, 10.0, 3.0, 3
    sol = clark_scarf([L], [h], p, {"dist": "normal", "mean": mu, "sd": sd})
    s = sd * math.sqrt(L + 1)
    z = stats.norm.ppf(p / (p + h))
    assert sol.echelon_levels[0] == pytest.approx(mu * (L + 1) + z * s, abs=1e-6)
    # Optimal newsvendor cost (h + p) * s * phi(z).
    assert sol.expected_cost == pytest.approx((h + p) * s * stats.norm.pdf(z), rel=1e-6)
    loss = s * (stats.norm.pdf(z) - z * stats.norm.sf(z))
    assert sol.expected_backorders == pytest.approx(loss, rel=1e-6)


# =================================================================================================
# Shang-Song versus Clark-Scarf; local optimality
# =================================================================================================
SS_CASES = [
    EX61,
    POISSON_CASES[0],
    POISSON_CASES[2],
    dict(
        lead_times=[1, 2, 1],
        echelon_holding=[1.0, 1.0, 0.5],
        backorder_cost=20.0,
        demand={"dist": "gamma", "mean": 10.0, "sd": 4.0},
    ),
    dict(
        lead_times=[0, 2],
        echelon_holding=[2.0, 1.0],
        backorder_cost=15.0,
        demand={"dist": "negative_binomial", "mean": 6.0, "sd": 4.0},
    ),
    dict(
        lead_times=[2, 1, 0, 1],
        echelon_holding=[0.5, 0.5, 0.5, 0.5],
        backorder_cost=9.0,
        demand={"dist": "uniform_int", "low": 0, "high": 8},
    ),
    dict(
        lead_times=[0, 1],
        echelon_holding=[1.0, 1.0],
        backorder_cost=9.0,
        demand={"dist": "discrete", "values": [0, 1, 5], "probs": [0.5, 0.3, 0.2]},
    ),
]


@pytest.mark.parametrize("case", SS_CASES)
def test_shang_song_close_to_clark_scarf(case):
    cs = _solve(clark_scarf, case)
    ss = _solve(shang_song, case)
    assert cs.expected_cost <= ss.expected_cost + 1e-9 * cs.expected_cost
    assert ss.expected_cost <= 1.05 * cs.expected_cost
    # Shang-Song's cost is the exact evaluation of its levels.
    ev = _solve(evaluate_echelon_policy, case, echelon_levels=ss.echelon_levels)
    assert ev.expected_cost == pytest.approx(ss.expected_cost, rel=1e-12)


@pytest.mark.parametrize("case", SS_CASES)
def test_neighbouring_levels_are_not_cheaper(case):
    cs = _solve(clark_scarf, case)
    discrete = case["demand"]["dist"] not in ("normal", "gamma")
    step = 1.0 if discrete else 0.05 * case["demand"]["sd"]
    for j in range(len(cs.echelon_levels)):
        for sign in (-1, 1):
            S = cs.echelon_levels.copy()
            S[j] += sign * step
            other = _solve(evaluate_echelon_policy, case, echelon_levels=S)
            assert other.expected_cost >= cs.expected_cost - 1e-9 * cs.expected_cost, (j, sign)


def test_continuous_accuracy_against_finer_lattice(monkeypatch):
    import meio.baselines.serial as serial

    coarse = _solve(clark_scarf, SS_CASES[3])
    monkeypatch.setattr(serial, "_STEPS_PER_SD", 4 * serial._STEPS_PER_SD)
    fine = _solve(clark_scarf, SS_CASES[3])
    assert coarse.expected_cost == pytest.approx(fine.expected_cost, rel=1e-4)
    np.testing.assert_allclose(coarse.echelon_levels, fine.echelon_levels, atol=2e-3)


# =================================================================================================
# evaluate_echelon_policy: modified levels, zero echelon holding
# =================================================================================================
def test_non_monotone_levels_use_modified_levels():
    case = POISSON_CASES[0]
    bad = _solve(evaluate_echelon_policy, case, echelon_levels=[12, 9, 14])
    mod = _solve(evaluate_echelon_policy, case, echelon_levels=[9, 9, 14])
    np.testing.assert_array_equal(bad.echelon_levels, [9, 9, 14])
    assert bad.expected_cost == pytest.approx(mod.expected_cost, rel=1e-14)
    assert bad.method == "evaluation"
    assert np.all(bad.local_levels >= 0)


def test_zero_intermediate_echelon_holding():
    case = dict(
        lead_times=[1, 1, 0],
        echelon_holding=[1.0, 0.0, 0.5],
        backorder_cost=9.0,
        demand={"dist": "poisson", "mean": 2.0},
    )
    sol = _solve(clark_scarf, case)
    S = sol.echelon_levels
    assert S[1] == S[2]  # nothing is gained by holding at stage 2: everything passes down
    for d in itertools.product([-1, 0, 1], repeat=3):
        other = _solve(evaluate_echelon_policy, case, echelon_levels=S + np.array(d))
        assert other.expected_cost >= sol.expected_cost - 1e-10


# =================================================================================================
# Monte-Carlo check of the exact evaluation, simulating the project's timing directly
# =================================================================================================
def _simulate(lead_times, echelon_holding, p, levels, draw, rng, reps, periods, warmup):
    """Echelon base-stock chain, ``reps`` independent replications vectorised.

    Each period: (1) every stage orders S_j minus its echelon inventory position (on hand at and
    below j, in transit to and below j, owed to j by j+1, minus customer backorders); stage N's
    order enters its supplier lane at once; (2) top-down, each stage receives what is due, then
    ships what it owes downstream as stock allows (lead time 0 arrives before the downstream stage
    ships); stage 1 clears old backorders first; (3) demand is filled from stock, the rest
    backordered; (4) costs on end-of-period on-hand and backorders.
    Returns per-replication averages: cost, on-hand per stage, fill rate, backorders.
    """
    N = len(lead_times)
    S = np.asarray(levels, dtype=float)
    h = np.cumsum(np.asarray(echelon_holding, dtype=float)[::-1])[::-1]
    onhand = [np.full(reps, S[0])] + [np.full(reps, S[j] - S[j - 1]) for j in range(1, N)]
    owed = [np.zeros(reps) for _ in range(N)]  # owed[j]: what stage j owes stage j-1 (j >= 1)
    back = np.zeros(reps)
    pipe = [np.zeros((reps, L + 1)) for L in lead_times]  # pipe[j][:, k]: arrives at j in k periods
    cost = np.zeros(reps)
    oh_sum = np.zeros((N, reps))
    filled_sum = np.zeros(reps)
    dem_sum = np.zeros(reps)
    bo_sum = np.zeros(reps)
    for t in range(warmup + periods):
        cum = np.zeros(reps)
        for j in range(N):
            cum = cum + onhand[j] + pipe[j].sum(axis=1)
            position = cum - back + (owed[j + 1] if j + 1 < N else 0.0)
            q = S[j] - position
            assert q.min() >= -1e-9
            if j == N - 1:
                pipe[j][:, lead_times[j]] += q
            else:
                owed[j + 1] += q
        for j in range(N - 1, -1, -1):
            onhand[j] += pipe[j][:, 0]
            pipe[j][:, 0] = 0.0
            if j >= 1:
                ship = np.minimum(owed[j], onhand[j])
                onhand[j] -= ship
                owed[j] -= ship
                pipe[j - 1][:, lead_times[j - 1]] += ship
        clear = np.minimum(back, onhand[0])
        back -= clear
        onhand[0] -= clear
        d = draw(rng, reps)
        filled = np.minimum(d, onhand[0])
        onhand[0] -= filled
        back += d - filled
        if t >= warmup:
            cost += sum(h[j] * onhand[j] for j in range(N)) + p * back
            for j in range(N):
                oh_sum[j] += onhand[j]
            filled_sum += filled
            dem_sum += d
            bo_sum += back
        for pp in pipe:
            pp[:, :-1] = pp[:, 1:].copy()
            pp[:, -1] = 0.0
    return cost / periods, oh_sum / periods, filled_sum / dem_sum, bo_sum / periods


def _within(sample, exact, k=4.0):
    se = sample.std(ddof=1) / math.sqrt(len(sample))
    return abs(sample.mean() - exact) <= k * se + 1e-12, (sample.mean(), exact, se)


def test_monte_carlo_three_stage_poisson():
    lead_times, hh, p, lam = [1, 0, 2], [1.0, 0.5, 0.25], 10.0, 3.0
    levels = [7, 10, 19]  # every stage holds stock; not the optimum on purpose
    exact = evaluate_echelon_policy(lead_times, hh, p, {"dist": "poisson", "mean": lam}, levels)
    assert np.all(exact.expected_on_hand > 0.3)
    rng = np.random.default_rng(20240611)
    cost, oh, fill, bo = _simulate(
        lead_times, hh, p, levels, lambda g, n: g.poisson(lam, n).astype(float), rng, reps=400, periods=800, warmup=60
    )
    ok, info = _within(cost, exact.expected_cost)
    assert ok, info
    for j in range(3):
        ok, info = _within(oh[j], exact.expected_on_hand[j])
        assert ok, (j, info)
    ok, info = _within(fill, exact.fill_rate)
    assert ok, info
    ok, info = _within(bo, exact.expected_backorders)
    assert ok, info


def test_monte_carlo_example_6_1_in_our_timing():
    # The simulator-style chain in our timing with the book's levels costs 17.66 (not 47.66).
    sol = _solve(clark_scarf, EX61)
    rng = np.random.default_rng(7)
    cost, oh, fill, _ = _simulate(
        EX61["lead_times"],
        EX61["echelon_holding"],
        EX61["backorder_cost"],
        sol.echelon_levels,
        lambda g, n: np.maximum(g.normal(5.0, 1.0, n), 0.0),
        rng,
        reps=300,
        periods=600,
        warmup=40,
    )
    ok, info = _within(cost, sol.expected_cost)
    assert ok, info
    assert abs(cost.mean() - 17.66) < 0.1
    for j in range(3):
        ok, info = _within(oh[j], sol.expected_on_hand[j])
        assert ok, (j, info)
    ok, info = _within(fill, sol.fill_rate)
    assert ok, info


# =================================================================================================
# Other demand distributions
# =================================================================================================
def test_closed_form_sums_match_numeric_convolution():
    # The k-period sums of Poisson and negative binomial use closed forms (same family); a
    # "discrete" pmf equal to the same distribution (cut where its tail is below 1e-16) goes
    # through numeric convolution. Lead times 1 and 3 exercise sums of 2 and 3 periods.
    for dist, rv in (
        ({"dist": "poisson", "mean": 2.0}, stats.poisson(2.0)),
        ({"dist": "negative_binomial", "mean": 3.0, "sd": 2.5}, stats.nbinom(9.0 / (6.25 - 3.0), 3.0 / 6.25)),
    ):
        vals = list(range(int(rv.isf(1e-16)) + 1))
        probs = rv.pmf(vals)
        probs = list(probs / probs.sum())
        closed = clark_scarf([1, 3], [1.0, 0.5], 6.0, dist)
        numeric = clark_scarf([1, 3], [1.0, 0.5], 6.0, {"dist": "discrete", "values": vals, "probs": probs})
        np.testing.assert_array_equal(closed.echelon_levels, numeric.echelon_levels)
        assert closed.expected_cost == pytest.approx(numeric.expected_cost, rel=1e-9)
        np.testing.assert_allclose(closed.expected_on_hand, numeric.expected_on_hand, rtol=1e-9)
    # Negative binomial with sd^2 -> mean tends to Poisson; gamma with a tiny CV to the normal.
    nb = clark_scarf([1, 1], [1.0, 1.0], 9.0, {"dist": "negative_binomial", "mean": 5.0, "sd": math.sqrt(5.0 + 1e-6)})
    po = clark_scarf([1, 1], [1.0, 1.0], 9.0, {"dist": "poisson", "mean": 5.0})
    np.testing.assert_array_equal(nb.echelon_levels, po.echelon_levels)
    assert nb.expected_cost == pytest.approx(po.expected_cost, rel=1e-5)
    ga = clark_scarf([0, 1], [1.0, 1.0], 9.0, {"dist": "gamma", "mean": 100.0, "sd": 1.0})
    no = clark_scarf([0, 1], [1.0, 1.0], 9.0, {"dist": "normal", "mean": 100.0, "sd": 1.0})
    np.testing.assert_allclose(ga.echelon_levels, no.echelon_levels, atol=0.05)
    assert ga.expected_cost == pytest.approx(no.expected_cost, rel=0.02)


def test_uniform_int_equals_discrete():
    u = clark_scarf([1, 1], [1.0, 0.5], 5.0, {"dist": "uniform_int", "low": 2, "high": 6})
    d = clark_scarf([1, 1], [1.0, 0.5], 5.0, {"dist": "discrete", "values": [2, 3, 4, 5, 6], "probs": [0.2] * 5})
    np.testing.assert_array_equal(u.echelon_levels, d.echelon_levels)
    assert u.expected_cost == pytest.approx(d.expected_cost, rel=1e-12)


# =================================================================================================
# Input errors
# =================================================================================================
GOOD = dict(lead_times=[0, 1], echelon_holding=[1.0, 1.0], backorder_cost=9.0, demand={"dist": "poisson", "mean": 3})


@pytest.mark.parametrize(
    "change, field",
    [
        (dict(lead_times=[0, -1]), "lead_times[1]"),
        (dict(lead_times=[0, 1.5]), "lead_times[1]"),
        (dict(lead_times=[]), "lead_times"),
        (dict(lead_times=[0, 1, 1]), "echelon_holding"),
        (dict(echelon_holding=[1.0, -0.5]), "echelon_holding[1]"),
        (dict(echelon_holding=[1.0, float("nan")]), "echelon_holding[1]"),
        (dict(echelon_holding=[1.0, 0.0]), "echelon_holding[1]"),  # top stage must be > 0 to optimise
        (dict(backorder_cost=0.0), "backorder_cost"),
        (dict(backorder_cost=-3.0), "backorder_cost"),
        (dict(demand={"dist": "weibull", "mean": 3}), "demand.dist"),
        (dict(demand={"dist": "trace", "file": "x.csv"}), "demand.dist"),
        (dict(demand={"mean": 3}), "demand.dist"),
        (dict(demand={"dist": "poisson"}), "demand.mean"),
        (dict(demand={"dist": "poisson", "mean": -1}), "demand.mean"),
        (dict(demand={"dist": "normal", "mean": 5, "sd": 0}), "demand.sd"),
        (dict(demand={"dist": "gamma", "mean": 5}), "demand.sd"),
        (dict(demand={"dist": "negative_binomial", "mean": 5, "sd": 2}), "demand.sd"),
        (dict(demand={"dist": "uniform_int", "low": 5, "high": 2}), "demand.high"),
        (dict(demand={"dist": "uniform_int", "low": -1, "high": 2}), "demand.low"),
        (dict(demand={"dist": "discrete", "values": [0, 1], "probs": [0.5, 0.6]}), "demand.probs"),
        (dict(demand={"dist": "discrete", "values": [0, 1.5], "probs": [0.5, 0.5]}), "demand.values[1]"),
        (dict(demand={"dist": "discrete", "values": [0, -1], "probs": [0.5, 0.5]}), "demand.values[1]"),
        (dict(demand={"dist": "poisson", "mean": 3, "seasonality": {"amplitude": 0.2}}), "demand.seasonality"),
        (dict(demand={"dist": "poisson", "mean": 3, "sd": 2}), "demand"),
    ],
)
@pytest.mark.parametrize("fn", [clark_scarf, shang_song])
def test_input_errors_name_the_field(fn, change, field):
    args = {**GOOD, **change}
    with pytest.raises(ValueError) as exc:
        fn(args["lead_times"], args["echelon_holding"], args["backorder_cost"], args["demand"])
    assert str(exc.value).startswith(field), str(exc.value)


def test_lead_time_message_states_the_rule():
    with pytest.raises(ValueError, match=r"^lead_times\[1\]: -1 is negative; lead times are integers >= 0"):
        clark_scarf([0, -1], [1.0, 1.0], 9.0, {"dist": "poisson", "mean": 3})


@pytest.mark.parametrize(
    "levels, field",
    [
        ([5], "echelon_levels"),
        ([5, 7.5], "echelon_levels[1]"),
        ([5, float("inf")], "echelon_levels[1]"),
        ("57", "echelon_levels"),
    ],
)
def test_evaluation_input_errors(levels, field):
    with pytest.raises(ValueError) as exc:
        evaluate_echelon_policy(
            GOOD["lead_times"], GOOD["echelon_holding"], GOOD["backorder_cost"], GOOD["demand"], levels
        )
    assert str(exc.value).startswith(field), str(exc.value)


def test_evaluation_accepts_zero_top_holding_and_real_levels_for_normal():
    sol = evaluate_echelon_policy([0, 1], [1.0, 0.0], 9.0, {"dist": "normal", "mean": 5, "sd": 1}, [6.3, 12.7])
    assert sol.cost_split["holding"] > 0 and sol.expected_on_hand[1] > 0
    np.testing.assert_allclose(sol.echelon_levels, [6.3, 12.7])
