"""Where an HDPO training iteration's CPU time goes, phase by phase.

Runs the loop of :func:`meio.agents.hdpo.train_hdpo` by hand for ``--iterations`` gradient steps
(default 20) of a config on each scenario, one torch thread, and times every phase in CPU seconds
of this process (``time.process_time``; the machine may be shared, so wall time says little):

- ``draws``: the block of common random numbers (:func:`meio.envs.twin.draw_block`);
- ``policy``: the network's forward pass, summed over the ``T`` periods of the rollout;
- ``twin``: the twin's period (:func:`meio.envs.twin.period`), summed over the ``T`` periods;
- ``loss``: the loss and the transport credit from the rollout's costs;
- ``backward``: ``loss.backward()``;
- ``optimiser``: gradient clipping and Adam's step;
- ``evaluation``: one evaluation in the simulator as the run makes every ``eval_every`` iterations
  (:func:`meio.envs.metrics.evaluate`, ``eval_replications x (eval_warmup + eval_periods)``), with
  its share per iteration (divided by ``eval_every``);
- ``checkpoint``: one checkpoint folder written, and its share per iteration;
- ``reference``: the reference baseline the run computes once at its start.

Prints one table per scenario: seconds per iteration of each phase and its share of the total.

Run: ``.venv/bin/python benchmarks/hdpo_speed.py [--scenarios a,b] [--iterations 20] [--config NAME]
[--weights RUN/checkpoints/ITER/policy.pt] [--no-reference] [--device cpu|cuda] [--batch-size B]``.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from meio.agents.hdpo import HDPONet, HDPOPolicy, load_hdpo_config, trajectory_periods, twin_params
from meio.agents.policy import folder_written_whole
from meio.baselines.run import reference_baseline
from meio.envs.metrics import evaluate
from meio.envs.resolve import resolve
from meio.envs.simulator import Simulator
from meio.envs.twin import draw_block, initial_state, period


def profile(
    scenario: str,
    config: str,
    iterations: int,
    seed: int = 0,
    reference: bool = True,
    weights: str | None = None,
    device: str | None = None,
    batch_size: int | None = None,
) -> dict[str, float]:
    """Seconds per iteration of each phase (see the module docstring): CPU seconds on the CPU,
    wall seconds after a ``torch.cuda.synchronize()`` on CUDA. ``weights``: start from a saved
    network (``policy.pt`` of a run's ``best/`` or ``checkpoints/ITER/``) instead of a new one;
    ``device`` and ``batch_size`` override the config's."""
    cfg = load_hdpo_config(config)
    cfg = cfg.replace(device=device or cfg.device, batch_size=batch_size or cfg.batch_size)
    torch.set_num_threads(1)
    topo = resolve(scenario)
    horizon, warmup = trajectory_periods(topo, cfg)
    dtype = torch.float64 if cfg.dtype == "float64" else torch.float32
    params = twin_params(topo, cfg, device=cfg.device, dtype=dtype)
    torch.manual_seed(seed)
    net = HDPONet(topo, cfg).to(device=params.device, dtype=dtype)
    if weights is not None:
        net.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
    opt = torch.optim.Adam(net.parameters(), lr=cfg.learning_rate)
    rng = np.random.default_rng(seed)
    unit = torch.tensor(np.asarray(topo.slot_unit_cost, dtype=float), dtype=dtype, device=params.device)
    credit_on = bool(cfg.transport_credit and net.echelon_ok and bool((unit != 0).any()))
    spent = dict.fromkeys(("draws", "policy", "twin", "loss", "backward", "optimiser"), 0.0)
    clock = _clock(params.device)
    for _ in range(iterations):
        t = clock()
        draws = draw_block(params, cfg.batch_size, horizon, int(rng.integers(0, 2**30)))
        spent["draws"] += clock() - t
        state = initial_state(params, cfg.batch_size)
        costs = []
        start = None
        for k in range(horizon):
            t = clock()
            if credit_on and k == warmup:
                start = net.physical_echelon(state)
            orders = net(state)
            t1 = clock()
            state, c, _ = period(params, state, orders, draws.at(k))
            spent["policy"] += t1 - t
            spent["twin"] += clock() - t1
            costs.append(c)
        t = clock()
        loss = torch.stack(costs, 1)[:, warmup:].mean((0, 1)).sum()
        if credit_on and start is not None:
            added = net.physical_echelon(state) - start
            loss = loss - (added[:, net.slot_dst] * unit).sum(1).mean() / (horizon - warmup)
        spent["loss"] += clock() - t
        t = clock()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        spent["backward"] += clock() - t
        t = clock()
        torch.nn.utils.clip_grad_norm_(net.parameters(), cfg.grad_clip)
        opt.step()
        spent["optimiser"] += clock() - t
    out = {k: v / iterations for k, v in spent.items()}
    out["_batch"] = float(cfg.batch_size)
    policy = HDPOPolicy(net.state_dict(), cfg, trained_on=topo.scenario.name)
    sim = Simulator(topo, n=cfg.eval_replications, threads=1)
    evaluate(sim, policy, periods=20, warmup=0, replications=cfg.eval_replications, seed=cfg.eval_seed)  # jit
    t = clock()
    evaluate(
        sim,
        policy,
        periods=cfg.eval_periods,
        warmup=cfg.eval_warmup,
        replications=cfg.eval_replications,
        seed=cfg.eval_seed,
    )
    one_eval = clock() - t
    out["evaluation"] = one_eval / cfg.eval_every if cfg.eval_every else 0.0
    with tempfile.TemporaryDirectory() as tmp:
        t = clock()
        with folder_written_whole(Path(tmp) / "ck") as folder:
            policy.save_into(folder, {"steps": iterations})
            torch.save(opt.state_dict(), folder / "optimizer.pt")
        one_ck = clock() - t
    out["checkpoint"] = one_ck / cfg.checkpoint_every if cfg.checkpoint_every else 0.0
    out["_one_evaluation"] = one_eval
    out["_one_checkpoint"] = one_ck
    if reference:
        t = clock()
        reference_baseline(
            topo,
            periods=cfg.eval_periods,
            warmup=cfg.eval_warmup,
            replications=cfg.eval_replications,
            seed=cfg.eval_seed,
        )
        out["_reference"] = clock() - t
    return out


def _clock(device: torch.device) -> Callable[[], float]:
    """CPU seconds of this process on the CPU; on CUDA, where the work is queued and the CPU waits,
    wall seconds once the queue is empty."""
    if device.type != "cuda":
        return time.process_time

    def wall() -> float:
        torch.cuda.synchronize(device)
        return time.perf_counter()

    return wall


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--scenarios", default="beer_game_basic,distribution,geevers_divergent")
    ap.add_argument("--iterations", type=int, default=20, help="gradient steps timed per scenario")
    ap.add_argument("--config", default="default", help="HDPO config name or path")
    ap.add_argument("--no-reference", action="store_true", help="skip timing the reference baseline")
    ap.add_argument(
        "--weights",
        default=None,
        help="policy.pt to start from (one scenario): an iteration's cost depends on the policy, since "
        "obligations of more ages stay open under some policies than under others",
    )
    ap.add_argument("--device", choices=("cpu", "cuda"), default=None, help="device of the rollouts (config's)")
    ap.add_argument("--batch-size", type=int, default=None, help="trajectories per step (config's)")
    args = ap.parse_args()
    if args.batch_size is not None and args.batch_size < 1:
        ap.error(f"--batch-size: {args.batch_size} is not an integer >= 1")
    if args.iterations < 1:
        ap.error(f"--iterations: {args.iterations} is not an integer >= 1")
    for name in args.scenarios.split(","):
        r = profile(
            name,
            args.config,
            args.iterations,
            reference=not args.no_reference,
            weights=args.weights,
            device=args.device,
            batch_size=args.batch_size,
        )
        phases = [k for k in r if not k.startswith("_")]
        total = sum(r[k] for k in phases)
        on = args.device or load_hdpo_config(args.config).device
        unit = "wall seconds on CUDA" if on == "cuda" else "CPU seconds, one thread"
        print(f"\n{name} ({args.iterations} iterations, config {args.config}, batch {r['_batch']:.0f}, {unit})")
        print("| phase | ms / iteration | share % |\n|---|---:|---:|")
        for k in phases:
            print(f"| {k} | {1000 * r[k]:.1f} | {100 * r[k] / total:.1f} |")
        print(f"| total | {1000 * total:.1f} | 100.0 |")
        step = sum(r[k] for k in ("draws", "policy", "twin", "loss", "backward", "optimiser"))
        print(f"gradient step alone: {1000 * step:.1f} ms, {r['_batch'] / step:,.0f} trajectories per second")
        print(f"one evaluation: {r['_one_evaluation']:.2f} s; one checkpoint: {r['_one_checkpoint']:.3f} s", end="")
        print(f"; reference baseline (once): {r['_reference']:.2f} s" if "_reference" in r else "")


if __name__ == "__main__":
    main()
