"""OR-Gym's own InvManagement environments as the outside reference for ``orgym_invmgmt(_backlog)``.

Runs OR-Gym 0.5.0 (Hubbs et al. 2020) itself, not this project: its ``InvManagement-v1`` (lost
sales) and ``-v0`` (backlog) default instance, 30-period episodes from the default initial state,
under echelon base-stock rules, and prints per-episode numbers in both currencies:

- OR-Gym's reward: the whole chain's profit, discounted by 0.97 per period (what the paper reports)
  and undiscounted;
- the same episodes as a cost per period in this project's terms (``orgym_invmgmt``'s
  description): retailer penalty (lost sales at 2.10 in v1, backlog at 0.10 per unit and period in
  v0), raw material at 0.50 and holding; OR-Gym's further charge on unfilled replenishment orders
  (``k`` at the upstream stages, which this project does not charge) is shown apart.

Echelon base-stock ("DFO") levels are optimised on OR-Gym's own episodes by an integer pattern search
on common random numbers (search episodes seeded 100000..), then evaluated on fresh episodes
(seeds 0..E-1); levels given with ``--levels`` are evaluated too (for instance the ones this
project's search finds, to price them in OR-Gym). The rule is OR-Gym's ``base_stock_action``
(order ``z - IP`` per stage, IP the echelon position ``cumsum(I + T - B)``, capped by the
capacity and by the supplier's stock), evaluated here because 0.5.0's method returns no position.

OR-Gym pins ``gym<=0.19``, which does not build on Python 3.11; it runs with gym 0.26 in a
separate environment (this script imports nothing of the project):

    python3 -m venv /tmp/orgym && /tmp/orgym/bin/pip install "numpy<2" scipy matplotlib networkx "gym==0.26.2"
    /tmp/orgym/bin/pip install --no-deps or-gym==0.5.0
    /tmp/orgym/bin/python benchmarks/orgym_reference.py [--episodes 1000] [--levels v1=60,150,400 ...]
"""

from __future__ import annotations

import argparse
import math

import numpy as np

SEARCH_SEED = 100_000


def _envs():
    from or_gym.envs.supply_chain.inventory_management import InvManagementBacklogEnv, InvManagementLostSalesEnv

    return {"v1": InvManagementLostSalesEnv, "v0": InvManagementBacklogEnv}


def base_stock_orders(env, z: np.ndarray) -> np.ndarray:
    """OR-Gym's echelon base-stock rule at the current period."""
    n = env.period
    position = env.I[n, :] + env.T[n, :] - (env.B[n - 1, :-1] if n >= 1 else 0.0)
    want = np.maximum(z - np.cumsum(position), 0.0)
    upstream = np.append(env.I[n, 1:], np.inf)
    return np.minimum(np.minimum(env.supply_capacity, want), upstream)


def run_episodes(env_cls, z, seeds) -> dict[str, np.ndarray]:
    """Per-episode totals: discounted and undiscounted profit, cost in the project's terms
    (per period), and OR-Gym's charge on unfilled replenishment orders (per period)."""
    env = env_cls()
    out = {
        k: np.zeros(len(seeds))
        for k in ("profit_discounted", "profit", "cost", "retailer_penalty", "raw", "holding", "internal_penalty")
    }
    z = np.asarray(z, dtype=float)
    lost_sales = not env.backlog
    for e, seed in enumerate(seeds):
        env.reset()
        np.random.seed(int(seed))
        disc = undisc = 0.0
        for n in range(env.num_periods):
            _, reward, _, _ = env.step(base_stock_orders(env, z))
            disc += reward
            undisc += reward / env.discount**n
        periods = env.num_periods
        unfilled = env.LS if lost_sales else env.B
        retailer = (
            (env.unit_price[0] + env.demand_cost[0]) * unfilled[:, 0].sum()
            if lost_sales
            else env.demand_cost[0] * unfilled[:, 0].sum()
        )
        raw = env.unit_cost[-1] * env.S[:, -1].sum()
        holding = float((env.I[1:] * env.holding_cost[: env.I.shape[1]]).sum())
        internal = float((unfilled[:, 1:] * env.demand_cost[1:]).sum())
        out["profit_discounted"][e] = disc
        out["profit"][e] = undisc
        out["cost"][e] = (retailer + raw + holding) / periods
        out["retailer_penalty"][e] = retailer / periods
        out["raw"][e] = raw / periods
        out["holding"][e] = holding / periods
        out["internal_penalty"][e] = internal / periods
    return out


def ci95(x: np.ndarray) -> float:
    from scipy import stats

    return float(stats.t.ppf(0.975, len(x) - 1) * x.std(ddof=1) / math.sqrt(len(x))) if len(x) > 1 else math.nan


def dfo_search(env_cls, episodes: int, start: np.ndarray) -> np.ndarray:
    """Integer pattern search on mean discounted profit over common search episodes."""
    seeds = np.arange(SEARCH_SEED, SEARCH_SEED + episodes)
    best = np.round(start).astype(float)
    best_value = run_episodes(env_cls, best, seeds)["profit_discounted"].mean()
    step = 16.0
    while step >= 1.0:
        improved = False
        for i in range(best.size):
            for sign in (1.0, -1.0):
                cand = best.copy()
                cand[i] = max(0.0, cand[i] + sign * step)
                value = run_episodes(env_cls, cand, seeds)["profit_discounted"].mean()
                if value > best_value + 1e-12:
                    best, best_value, improved = cand, value, True
        if not improved:
            step /= 2.0
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--episodes", type=int, default=1000, help="evaluation episodes, seeds 0..E-1")
    parser.add_argument("--search-episodes", type=int, default=200, help="episodes per search evaluation")
    parser.add_argument(
        "--levels",
        action="append",
        default=[],
        help="extra echelon levels to evaluate, VERSION=z_retailer,z_distributor,z_manufacturer "
        "(VERSION v0 or v1); repeatable",
    )
    args = parser.parse_args()
    extra: dict[str, list[np.ndarray]] = {"v0": [], "v1": []}
    for item in args.levels:
        version, _, values = item.partition("=")
        if version not in extra or len(values.split(",")) != 3:
            parser.error(f"--levels {item!r}: expected v0=a,b,c or v1=a,b,c")
        extra[version].append(np.array([float(v) for v in values.split(",")]))
    seeds = np.arange(args.episodes)
    print(
        f"OR-Gym 0.5.0 InvManagement default instance, 30-period episodes, {args.episodes} episodes (seeds "
        f"0..{args.episodes - 1}); mean +- 95% CI per episode"
    )
    head = (
        f"{'env':<4} {'policy':<22} {'levels (echelon)':<20} {'profit disc.':>16} {'profit':>16} "
        f"{'cost/period':>15} {'+ internal k':>12}  split per period: retailer penalty, raw material, holding"
    )
    print(head)
    for version, env_cls in _envs().items():
        start = 20.0 * np.cumsum([3 + 1, 5, 10])  # mean demand over the cumulative lead times
        rows = [("dfo_base_stock", dfo_search(env_cls, args.search_episodes, start))]
        rows += [("given", z) for z in extra[version]]
        name = {"v1": "InvManagement-v1 (lost sales)", "v0": "InvManagement-v0 (backlog)"}[version]
        print(f"-- {name}")
        for label, z in rows:
            r = run_episodes(env_cls, z, seeds)
            levels = ",".join(f"{v:g}" for v in z)
            print(
                f"{version:<4} {label:<22} {levels:<20} {r['profit_discounted'].mean():>8.2f} +- "
                f"{ci95(r['profit_discounted']):<5.2f} {r['profit'].mean():>8.2f} +- {ci95(r['profit']):<5.2f} "
                f"{r['cost'].mean():>7.4f} +- {ci95(r['cost']):.4f} {r['internal_penalty'].mean():>8.4f}  "
                f"{r['retailer_penalty'].mean():.4f}, {r['raw'].mean():.4f}, {r['holding'].mean():.4f}",
                flush=True,
            )


if __name__ == "__main__":
    main()
