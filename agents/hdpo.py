"""HDPO: policies trained by gradient descent through the differentiable twin of the period.

Hindsight differentiable policy optimisation (Alvo, Russo & Kanoria 2023, "Neural inventory
control in networks via hindsight differentiable policy optimization", arXiv:2306.11246): a batch
of ``B`` trajectories of ``T`` periods is simulated from the scenario's start on common random
numbers (demand and lead-time draws fixed before the policy acts, :func:`meio.envs.twin.draw_block`),
the policy's orders go through the twin's period (:mod:`meio.envs.twin`, piecewise linear in the
orders), and the loss

    J(theta) = 1 / (B (T - w)) sum_b sum_{t >= w} c_t^b(theta)

(the mean cost per period after a warm-up of ``w`` periods) is differentiated by autograd with
respect to the network's parameters ``theta`` and minimised with Adam. No value function, no
likelihood ratio: the gradient is the pathwise (hindsight) gradient of the sampled cost.

Reads top to bottom:

1. :class:`HDPOConfig` (pydantic, ``configs/hdpo/*.yaml``), :func:`load_hdpo_config`;
2. :class:`HDPONet`: features of a :class:`~meio.envs.twin.TwinState` scaled by mean demand, a
   multilayer perceptron (optionally one shared per role), and outputs feasible by construction
   (order-up-to targets or capped orders);
3. :class:`HDPOPolicy`: the project's policy face (``act(sim)``) around a network, save/load;
4. :func:`train_hdpo`: the loop, evaluation on fixed seeds with early stopping, ``best/``,
   ``final/``, ``checkpoints/ITER/`` for resuming.

The run folder follows PPO's (``meio.agents.train``): ``config.yaml`` (with ``algo: hdpo``),
``scenario.yaml``, ``tb/``, ``evaluations.csv`` (same columns; ``steps`` counts iterations),
``best/``, ``final/``, ``checkpoints/ITER/``, each saved folder written whole or not at all
(:func:`meio.agents.policy.folder_written_whole`).
"""

from __future__ import annotations

import csv
import json
import math
import os
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal, cast

import numpy as np
import torch
import yaml
from pydantic import ConfigDict, Field, model_validator

from meio.agents.config import ConfigError, TrainingConfig, configs_dir, eval_replications_field, read_config
from meio.agents.policy import (
    HDPO_WEIGHTS_FILE,
    META_FILE,
    checkpoint_steps,
    folder_written_whole,
    manifest_problem,
    one_torch_thread,
    read_json,
    set_aside_damaged,
)
from meio.agents.train import (
    EVAL_COLUMNS,
    TrainResult,
    _trim_evaluations,
    clear_interrupted_hparams,
    evaluation_scalars,
    run_scenario,
    selection_cost,
    write_run_hparams,
    write_run_scenario,
)
from meio.envs.dynamics import COST_NAMES
from meio.envs.metrics import evaluate
from meio.envs.policies import primary_slots
from meio.envs.resolve import ScenarioLike, resolve
from meio.envs.scenario import ScenarioError, read_yaml
from meio.envs.simulator import Simulator
from meio.envs.topology import Topology
from meio.envs.twin import TwinParams, TwinState, draw_block, initial_state, rollout, state_from_simulator

__all__ = [
    "HDPOConfig",
    "HDPONet",
    "HDPOPolicy",
    "hdpo_configs_dir",
    "hdpo_scenario_problem",
    "load_hdpo_config",
    "ordering_slots",
    "split_slots",
    "stock_value",
    "train_hdpo",
    "twin_params",
    "unit_values",
]

#: Files of a saved HDPO agent (``best/``, ``final/``, ``checkpoints/ITER/``).
WEIGHTS_FILE = HDPO_WEIGHTS_FILE
#: Checkpoint-only files: the optimiser's state (tensors) and the loop's state (JSON).
OPTIMIZER_FILE = "optimizer.pt"
STATE_FILE = "state.json"
#: Config fields a resumed run may change: they change the budget or the speed, never a step.
RESUMABLE_CHANGES = ("iterations", "patience", "threads", "torch_threads", "description")
#: Sanity limits against typing slips (not modelling rules).
MAX_LAYER = 65_536
MAX_ROWS = 10**6
MAX_ITERATIONS = 10**9
#: Training row seeds are drawn below this bound (the simulator's streams take 32-bit seeds).
_SEED_TOP = 2**31 - 1


def _note(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------------------------
# Config
# ------------------------------------------------------------------------------------------------
#: ``warmup: auto``: twice the longest echelon lead time, and at least this many periods.
AUTO_MIN_WARMUP = 20
#: ``horizon: auto``: the warm-up plus this many periods in the loss.
AUTO_LOSS_PERIODS = 40


class HDPOConfig(TrainingConfig):
    """Hyper-parameters of :func:`train_hdpo`. Defaults follow the serial-system recipe of Alvo,
    Russo & Kanoria (2023, their ``vanilla_serial`` and ``serial_system`` settings: Adam at
    ``1e-2``, two hidden layers of 32 ELU units, 50-period trajectories with 30 ignored) scaled to
    a small CPU budget."""

    model_config = ConfigDict(title="meio HDPO training config")

    iterations: int = Field(
        600,
        ge=1,
        le=MAX_ITERATIONS,
        description=("Gradient steps of the whole run (one batch of simulated trajectories each)."),
    )
    batch_size: int = Field(
        256,
        ge=1,
        le=MAX_ROWS,
        description=("Trajectories per gradient step B (rows of common random numbers, fresh per step)."),
    )
    horizon: Annotated[int, Field(ge=2, le=100_000)] | Literal["auto"] = Field(
        "auto",
        description=(
            "Periods T simulated per trajectory, from the scenario's initial state; auto: the warm-up plus "
            f"{AUTO_LOSS_PERIODS} periods in the loss."
        ),
    )
    warmup: Annotated[int, Field(ge=0, le=100_000)] | Literal["auto"] = Field(
        "auto",
        description=(
            "First w periods of each trajectory left out of the loss (the start-up transient); w < horizon. "
            f"auto: twice the network's longest echelon lead time, at least {AUTO_MIN_WARMUP}, so that the "
            "pipelines have filled and emptied once before the loss counts."
        ),
    )
    learning_rate: float = Field(0.01, gt=0.0, le=10.0, description="Adam learning rate.")
    transport_credit: bool = Field(
        True,
        description=(
            "Credit the unit (transport) cost of the stock a trajectory adds, so that a unit bought in the "
            "last lead time of a trajectory (paid inside it, delivered after it) is not charged as a pure "
            "loss (see train_hdpo): where every node has one supplier c_s (E_j(T) - E_j(w)) per slot s into "
            "j, E_j the physical echelon stock of j; elsewhere the change of the stock's value at weighted "
            "average cost (unit_values)."
        ),
    )
    grad_clip: float = Field(10.0, gt=0.0, description="Clip of the gradient's global L2 norm.")
    architecture: Literal["auto", "echelon", "installation", "split", "quantity"] = Field(
        "auto",
        description=(
            "echelon: the network sets echelon order-up-to targets, order max(target - echelon position, 0) "
            "(every node one supplier); installation: installation order-up-to targets on each node's primary "
            "slots; split: installation targets on the node's position over all its suppliers, the order "
            "split over its slots without a fixed cost in learned shares (softmax), where a node has several "
            "such slots (installation elsewhere); quantity: capped orders on every slot, quantity_cap x mean "
            "demand x sigmoid; auto: echelon where it applies, else split."
        ),
    )
    hidden: tuple[Annotated[int, Field(ge=1, le=MAX_LAYER)], ...] = Field(
        (32, 32),
        max_length=16,
        description=("Hidden layer sizes of the network(s); [] is a linear map of the features."),
    )
    activation: Literal["elu", "tanh", "relu"] = Field("elu", description="Activation of the hidden layers.")
    share_roles: bool = Field(
        False,
        description=(
            "Nodes of one role (same suppliers, same number of slots in, both with or both without customers "
            "and children: e.g. the retailers of one warehouse) share one network, fed with the whole state "
            "plus the node's own features and parameters (costs, lead time, mean demand)."
        ),
    )
    quantity_cap: float = Field(
        4.0,
        gt=0.0,
        le=1e6,
        description=(
            "architecture quantity: the most a slot orders, in multiples of the mean demand through its node."
        ),
    )
    dtype: Literal["float32", "float64"] = Field("float32", description="Precision of the twin and the network.")
    device: Literal["cpu", "cuda"] = Field("cpu", description="Device of the training rollouts.")
    eval_every: int = Field(
        50,
        ge=0,
        le=MAX_ITERATIONS,
        description=("Evaluate every this many iterations in the simulator (0: only at the end)."),
    )
    eval_replications: int = eval_replications_field(4)  # the rule is TrainingConfig's; only the default differs
    patience: int = Field(
        0,
        ge=0,
        le=MAX_ITERATIONS,
        description=("Early stopping: stop after this many evaluations in a row without a new best (0: never)."),
    )
    checkpoint_every: int = Field(
        100, ge=0, le=MAX_ITERATIONS, description=("Save a checkpoint every this many iterations (0: only at the end).")
    )

    @model_validator(mode="after")
    def _fields_agree(self) -> HDPOConfig:
        problems = []
        if isinstance(self.warmup, int) and isinstance(self.horizon, int) and self.warmup >= self.horizon:
            problems.append(
                f"warmup: {self.warmup} is not below horizon {self.horizon}; the loss needs periods after the warm-up"
            )
        problems += self.evaluation_problems()
        self.refuse(problems)
        return self


def trajectory_periods(topo: Topology, cfg: HDPOConfig) -> tuple[int, int]:
    """``(T, w)``: the periods of each training trajectory and its warm-up on ``topo``, with
    ``auto`` resolved (:class:`HDPOConfig`): ``w = max(20, 2 L)``, ``L`` the longest echelon lead
    time of the network (:func:`_echelon_lead`, the longest chain of mean lead times, rounded up),
    ``T = w + 40``. A trajectory starts from the scenario's initial state, often with empty
    pipelines; the warm-up must let the stock of the longest echelon turn over before the loss
    counts, or the policy learns the start-up transient (e.g. ``orgym_invmgmt_backlog``, lead
    times 3 + 5 + 10 = 18: w = 36)."""
    longest = int(math.ceil(float(_echelon_lead(topo).max(initial=0.0)) - 1e-9))
    warmup = max(AUTO_MIN_WARMUP, 2 * longest) if cfg.warmup == "auto" else int(cfg.warmup)
    horizon = warmup + AUTO_LOSS_PERIODS if cfg.horizon == "auto" else int(cfg.horizon)
    if warmup >= horizon:
        raise ConfigError(
            f"warmup: auto gives {warmup} periods on {topo.scenario.name!r} (twice its longest echelon lead "
            f"time, {longest}), not below horizon {horizon}; set horizon: auto, a horizon above {warmup}, or a "
            "warmup below it"
        )
    return horizon, warmup


def hdpo_configs_dir() -> Path:
    """Folder of the shipped HDPO configs (``configs/hdpo``)."""
    return configs_dir("hdpo")


def load_hdpo_config(name_or_path: str | Path | None) -> HDPOConfig:
    """A shipped config by name (``configs/hdpo/NAME.yaml``), a YAML file by path, or the defaults."""
    return read_config(HDPOConfig, name_or_path, "hdpo")


# ------------------------------------------------------------------------------------------------
# The network
# ------------------------------------------------------------------------------------------------
def _mlp(n_in: int, n_out: int, hidden: tuple[int, ...], activation: str) -> torch.nn.Sequential:
    act = {"elu": torch.nn.ELU, "tanh": torch.nn.Tanh, "relu": torch.nn.ReLU}[activation]
    layers: list[torch.nn.Module] = []
    width = n_in
    for h in hidden:
        layers += [torch.nn.Linear(width, h), act()]
        width = h
    last = torch.nn.Linear(width, n_out)
    # A small last layer: the first policy is close to the constant targets the offsets give
    # (a base-stock rule), and the network learns the state dependence from there.
    with torch.no_grad():
        last.weight.mul_(0.1)
        last.bias.zero_()
    layers.append(last)
    return torch.nn.Sequential(*layers)


def _run_mlp(mlp: torch.nn.Sequential, x: torch.Tensor) -> torch.Tensor:
    """``mlp(x)``, layer by layer without the module-call machinery (no hooks are used here); the
    network runs once per simulated period, so its Python overhead counts."""
    for layer in mlp:
        x = layer.forward(x)
    return x


def _echelon_lead(topo: Topology) -> np.ndarray:
    """``L^e_j``: mean lead time into ``j`` plus the longest such sum on a path down from ``j``."""
    lead = topo.lead_in()
    total = lead.copy()
    for j in reversed(range(topo.n_nodes)):  # topological order: children come later
        children = [int(d) for s, d in zip(topo.lane_src, topo.lane_dst) if int(s) == j]
        if children:
            total[j] = lead[j] + max(total[c] for c in children)
    return total


class HDPONet(torch.nn.Module):
    """Orders ``(B, S)`` from a :class:`~meio.envs.twin.TwinState`, feasible by construction.

    Features, each node's quantities divided by ``mu_j`` (mean demand through node ``j``,
    ``Topology.throughput``): on hand ``I_j``, customer backorders ``B_j``, owed to customers,
    inbound (in transit and owed by suppliers), component stock, installation position and, where
    every node has one supplier, the echelon position (Clark & Scarf 1960); the pipeline of every
    slot by periods until arrival and its open obligations; supplier outages.

    Outputs, ``z`` from the network plus a fixed offset ``b`` (so that the untrained policy is a
    sensible base-stock rule: target ``mu_j (L_j + 1)``):

    * ``echelon``: ``S^e_j = mu_j softplus(z_j + b_j)``, order ``max(S^e_j - IP^e_j, 0)``;
    * ``installation``: ``S_j = mu_j softplus(z_j + b_j)``, order on each primary slot ``s``
      ``max(r_s S_j - IP_s, 0)`` (``r_s`` the bill of materials; ``IP_s`` as
      :func:`meio.envs.dynamics.inventory_positions`);
    * ``split``: where a node ``j`` (not an assembly) has several slots ``s`` in ``P_j`` without a
      fixed cost (alternative suppliers, transport modes), ``S_j`` as above on the node's position
      ``IP_j`` over all its suppliers, and the order ``max(S_j - IP_j, 0)`` split in shares
      ``softmax(y_j)_s`` over ``P_j`` (``y_j`` more outputs, 0 at the start: equal shares); the
      other nodes as ``installation``. A dual-sourcing rule with one learned share and a common
      target (the standard-vs-expedited split of Veeraraghavan & Scheller-Wolf 2008, here as a
      function of the state);
    * ``quantity``: ``q_s = c mu_j r_s sigmoid(z_s + b_s)`` on every slot (``c`` = ``quantity_cap``).

    A short supplier rations by the scenario's allocation rule inside the twin and the simulator.
    """

    def __init__(self, topo: Topology, cfg: HDPOConfig) -> None:
        super().__init__()
        arch = resolved_architecture(topo, cfg)
        single = topo.node_with_several_suppliers() is None
        if arch == "echelon" and not single:
            raise ValueError(
                f"architecture: echelon needs every node to have one supplier; "
                f"{topo.node_with_several_suppliers()!r} of {topo.scenario.name!r} has several "
                "(use installation or quantity)"
            )
        self.arch = arch
        n, s_n, m = topo.n_nodes, topo.n_slots, topo.n_lanes
        self.n_nodes, self.n_slots, self.pipe_len = n, s_n, int(topo.pipe_len)
        mu = np.asarray(topo.throughput, dtype=float)
        mu = np.where(mu > 0, mu, max(float(mu.max(initial=0.0)), 1.0))
        is_comp = topo.lane_is_component[topo.slot_lane].astype(bool)
        bom = topo.lane_bom[topo.slot_lane].astype(float)
        a_in = np.zeros((s_n, n))  # slot -> its node (ordinary slots)
        a_in[np.arange(s_n), topo.slot_dst] = ~is_comp
        a_all = np.zeros((s_n, n))
        a_all[np.arange(s_n), topo.slot_dst] = 1.0
        a_out = np.zeros((s_n, n))  # slot -> its supplying node
        internal = topo.slot_src >= 0
        a_out[np.flatnonzero(internal), topo.slot_src[internal]] = 1.0
        lane_of = np.zeros((s_n, m))
        lane_of[np.arange(s_n), topo.slot_lane] = 1.0
        raw_in = np.zeros((m, n))
        raw_in[np.arange(m), topo.lane_dst] = 1.0

        def f(a: Any) -> torch.Tensor:
            return torch.tensor(np.asarray(a, dtype=float), dtype=torch.float64)

        # Derived from the topology every time the network is built: not part of the saved weights.
        for name, value in dict(
            mu=mu,
            a_in=a_in,
            a_all=a_all,
            a_out=a_out,
            lane_of=lane_of,
            raw_in=raw_in,
            bom=bom,
            is_comp=is_comp.astype(float),
            slot_mu=mu[topo.slot_dst],
            desc=topo.descendants() if single else np.eye(n),
        ).items():
            self.register_buffer(name, f(value), persistent=False)
        # index tensors built once: a Python list as an index would become a tensor on every call
        self.register_buffer("slot_dst", torch.tensor(np.array(topo.slot_dst), dtype=torch.long), persistent=False)
        self.register_buffer(
            "slot_lane_idx", torch.tensor(np.array(topo.slot_lane), dtype=torch.long), persistent=False
        )
        self.echelon_ok = single
        primary = primary_slots(topo)
        self.primary = primary.tolist()
        # outputs: one per node (targets) or one per slot into the node (quantity); split nodes: a
        # target and one share logit per slot they split over
        split_sets = split_slots(topo) if arch == "split" else {}
        if arch == "quantity":
            out_slots = [[int(s) for s in topo.slots_into(j)] for j in range(n)]
        else:
            out_slots = [split_sets.get(j) or [int(s) for s in primary if topo.slot_dst[s] == j] for j in range(n)]
        self.node_outputs = [
            len(out_slots[j]) if arch == "quantity" else 1 + (len(out_slots[j]) if j in split_sets else 0)
            for j in range(n)
        ]
        lead = topo.lead_in()
        guess = lead + 1.0
        if arch == "echelon":
            guess = _echelon_lead(topo) + 1.0
        offsets = []
        for j in range(n):
            if arch == "quantity":
                p = min(1.0 / cfg.quantity_cap, 0.5)
                offsets += [math.log(p / (1 - p))] * self.node_outputs[j]
            else:
                offsets.append(math.log(math.expm1(float(guess[j]))))
                offsets += [0.0] * (self.node_outputs[j] - 1)  # split shares: equal at the start
        self.register_buffer("offset", f(offsets), persistent=False)
        # roles: nodes with the same suppliers, slots in, customers and children
        has_children = np.isin(np.arange(n), topo.lane_src)
        role: dict[tuple, list[int]] = {}
        for j in range(n):
            parents = tuple(
                sorted(
                    int(topo.lane_src[lane]) for lane in topo.in_lanes[topo.in_lane_ptr[j] : topo.in_lane_ptr[j + 1]]
                )
            )
            key = (parents, self.node_outputs[j], bool(topo.demand_col[j] >= 0), bool(has_children[j]))
            role.setdefault(key, []).append(j)
        groups = [g for g in role.values() if len(g) > 1] if cfg.share_roles else []
        shared = {j for g in groups for j in g}
        self.own_nodes = [j for j in range(n) if j not in shared]
        self.groups = groups
        p_max = max(float(np.max(topo.penalty, initial=0.0)), 1e-9)
        h_max = max(float(np.max(topo.holding, initial=0.0)), 1e-9)
        node_params = np.stack(
            [topo.holding / h_max, topo.penalty / p_max, lead / max(float(lead.max()), 1.0), mu / mu.mean()], 1
        )
        self.register_buffer("node_params", f(node_params), persistent=False)
        self.n_node_feats = 7
        n_feat = n * self.n_node_feats + s_n * self.pipe_len + len(topo.dis_start)
        self.n_features = n_feat
        self.own = (
            _mlp(n_feat, sum(self.node_outputs[j] for j in self.own_nodes), cfg.hidden, cfg.activation)
            if self.own_nodes
            else None
        )
        self.shared = torch.nn.ModuleList(
            _mlp(n_feat + self.n_node_feats + node_params.shape[1], self.node_outputs[g[0]], cfg.hidden, cfg.activation)
            for g in groups
        )
        # where each node's outputs go in the flat output vector (node order)
        starts = np.concatenate([[0], np.cumsum(self.node_outputs)]).astype(int)
        self.node_slice = [(int(starts[j]), int(starts[j + 1])) for j in range(n)]
        self.out_slots = out_slots
        # One entry per ordering slot: its output column, node, slot and scale (units per output):
        # c mu_j r_s for capped orders, mu_j for echelon targets, mu_j r_s for installation targets.
        entries = [
            (self.node_slice[j][0] + (i if arch == "quantity" else 0), j, s_, self._scale(arch, cfg, mu, bom, j, s_))
            for j in range(n)
            for i, s_ in enumerate(out_slots[j])
        ]
        self.register_buffer("out_z", torch.tensor([e[0] for e in entries], dtype=torch.long), persistent=False)
        self.register_buffer("out_node", torch.tensor([e[1] for e in entries], dtype=torch.long), persistent=False)
        self.register_buffer("out_slot", torch.tensor([e[2] for e in entries], dtype=torch.long), persistent=False)
        self.register_buffer("out_scale", f([e[3] for e in entries]), persistent=False)
        n_out = sum(self.node_outputs)
        self._z_identity = [e[0] for e in entries] == list(range(n_out))
        self._node_identity = [e[1] for e in entries] == list(range(n))
        self._slot_identity = [e[2] for e in entries] == list(range(s_n))
        # split: per entry, its share logit's column (n_out: a column of zeros, for entries that are
        # a node's only slot) and whether it orders on the node's position; `same` sums the shares'
        # exponentials over each node's entries (a softmax per node)
        self.split_nodes = sorted(split_sets)
        share_col, on_node, same = [], [], np.zeros((len(entries), len(entries)))
        for e, (_, j, s_, _) in enumerate(entries):
            k = out_slots[j].index(s_)
            share_col.append(self.node_slice[j][0] + 1 + k if j in split_sets else n_out)
            on_node.append(j in split_sets)
            for e2, other in enumerate(entries):
                same[e, e2] = float(other[1] == j)
        self.register_buffer("share_col", torch.tensor(share_col, dtype=torch.long), persistent=False)
        self.register_buffer("on_node", torch.tensor(on_node, dtype=torch.bool), persistent=False)
        self.register_buffer("same_node", f(same), persistent=False)

    #: Float buffers the forward pass reads, converted to the state's dtype once (see _buffers_in).
    _FLOAT_BUFFERS = (
        "a_in",
        "a_all",
        "a_out",
        "lane_of",
        "raw_in",
        "bom",
        "is_comp",
        "desc",
        "mu",
        "slot_mu",
        "offset",
        "out_scale",
        "same_node",
    )

    def _buffers_in(self, dt: torch.dtype) -> dict[str, torch.Tensor]:
        """The float buffers in dtype ``dt``, kept per dtype until the module is moved or cast
        (:meth:`_apply`): the network runs once per simulated period, and a ``.to()`` per buffer per
        call was a tenth of its cost."""
        cache = self.__dict__.setdefault("_converted", {})
        if dt not in cache:
            bufs = {k: getattr(self, k).to(dt) for k in self._FLOAT_BUFFERS}
            bufs["mu_col"] = bufs["mu"][None, :, None]
            bufs["slot_mu_col"] = bufs["slot_mu"][None, :, None]
            cache[dt] = bufs
        return cache[dt]

    def _apply(self, fn: Callable[..., Any], recurse: bool = True) -> HDPONet:  # type: ignore[override]
        self.__dict__.pop("_converted", None)  # .to(), .double(), ...: convert again on next use
        return super()._apply(fn, recurse)

    @staticmethod
    def _scale(arch: str, cfg: HDPOConfig, mu: np.ndarray, bom: np.ndarray, j: int, s: int) -> float:
        if arch == "quantity":
            return float(cfg.quantity_cap * mu[j] * bom[s])
        return float(mu[j] if arch == "echelon" else mu[j] * bom[s])

    # ---- positions and features ----------------------------------------------------------------
    def positions(
        self, state: TwinState, slot_positions: bool = True
    ) -> tuple[torch.Tensor | None, torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
        """``(slot positions (B, S), node positions (B, N), echelon positions (B, N), parts)``,
        as :meth:`Simulator.positions` and :meth:`Simulator.echelon_positions` define them
        (``docs/model.md``); echelon positions are zeros where a node has several suppliers.
        ``slot_positions=False`` leaves the slot positions out (``None``): only installation
        targets use them, and the network's forward pass is overhead-bound."""
        bufs = self._buffers_in(state.on_hand.dtype)
        pipe = state.pipe.sum(2)
        owed = state.owed.sum(2)
        inflow = pipe + owed
        owed_out = owed @ bufs["a_out"]
        net = state.on_hand - state.cust_bo - owed_out
        node_in = inflow @ bufs["a_in"]
        node_ip = net + node_in
        slot_ip: torch.Tensor | None = None
        if slot_positions:
            lane_in = inflow @ bufs["lane_of"]
            dst = self.slot_dst
            lanes = self.slot_lane_idx
            comp_ip = state.raw[:, lanes] + lane_in[:, lanes] + bufs["bom"] * net[:, dst]
            slot_ip = torch.where(bufs["is_comp"] > 0, comp_ip, node_ip[:, dst])
        raw_node = state.raw @ bufs["raw_in"]
        if self.echelon_ok:
            physical = state.on_hand + pipe @ bufs["a_all"] + raw_node - state.cust_bo
            echelon = physical @ bufs["desc"].T + owed @ bufs["a_all"]
        else:
            echelon = torch.zeros_like(node_ip)
        parts = {"owed_out": owed_out, "node_in": node_in, "raw_node": raw_node, "owed": owed}
        return slot_ip, node_ip, echelon, parts

    def physical_echelon(self, state: TwinState) -> torch.Tensor:
        """``E_j`` ``(B, N)``: stock on hand, in transit and as components at ``j`` and below it, less
        customer backorders (the echelon position without open obligations); only where every node
        has one supplier (:attr:`echelon_ok`)."""
        bufs = self._buffers_in(state.on_hand.dtype)
        physical = state.on_hand + state.pipe.sum(2) @ bufs["a_all"] + state.raw @ bufs["raw_in"] - state.cust_bo
        return physical @ bufs["desc"].T

    def features(
        self, state: TwinState, slot_positions: bool = True
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Tensor]:
        """``(global features (B, F), per-node features (B, N, 7), slot positions, echelon positions)``;
        ``slot_positions`` as in :meth:`positions`."""
        slot_ip, node_ip, echelon, parts = self.positions(state, slot_positions)
        dt = state.on_hand.dtype
        bufs = self._buffers_in(dt)
        per_node = (
            torch.stack(
                [
                    state.on_hand,
                    state.cust_bo,
                    parts["owed_out"],
                    parts["node_in"],
                    parts["raw_node"],
                    node_ip,
                    echelon,
                ],
                2,
            )
            / bufs["mu_col"]
        )
        # in transit by periods until arrival (column 0 has arrived and is on hand)
        pipe = state.pipe[:, :, 1:] / bufs["slot_mu_col"]
        owed = parts["owed"] / bufs["slot_mu"]
        glob = torch.cat([per_node.flatten(1), pipe.flatten(1), owed, state.down.to(dt)], 1)
        return glob, per_node, slot_ip, echelon

    def forward(self, state: TwinState) -> torch.Tensor:
        glob, per_node, slot_ip, echelon = self.features(state, slot_positions=self.arch in ("installation", "split"))
        dt = state.on_hand.dtype
        w_dt = (self.own if self.own is not None else self.shared[0])[0].weight.dtype
        x = glob.to(w_dt)
        b = x.shape[0]
        if self.own is not None and not self.groups:
            # One network for every node, in node order: its output is z as it stands.
            z = _run_mlp(self.own, x)
        else:
            cols: list[torch.Tensor | None] = [None] * self.n_nodes
            if self.own is not None:
                z = _run_mlp(self.own, x)
                k = 0
                for j in self.own_nodes:
                    cols[j] = z[:, k : k + self.node_outputs[j]]
                    k += self.node_outputs[j]
            for net, group in zip(self.shared, self.groups):
                own = torch.cat(
                    [per_node[:, group].to(w_dt), self.node_params[group].to(w_dt)[None].expand(b, -1, -1)], 2
                )
                inp = torch.cat([x[:, None].expand(-1, len(group), -1), own], 2)
                z = _run_mlp(net, inp)  # (B, G, k)
                for i, j in enumerate(group):
                    cols[j] = z[:, i]
            z = torch.cat([c for c in cols if c is not None], 1)
        bufs = self._buffers_in(dt)
        z = z.to(dt) + bufs["offset"]
        if self.out_slot.numel() == 0:
            return torch.zeros(b, self.n_slots, dtype=dt, device=z.device)
        # Index maps that are the identity (one output per slot, in slot order) are skipped: a
        # gather or scatter by the identity only costs time.
        zk = z if self._z_identity else z[:, self.out_z]
        scale = bufs["out_scale"]
        if self.arch == "quantity":
            q = torch.sigmoid(zk) * scale
        elif self.arch == "echelon":
            target = echelon if self._node_identity else echelon[:, self.out_node]
            q = torch.clamp(torch.nn.functional.softplus(zk) * scale - target, min=0.0)
        elif self.split_nodes:
            # a split node orders max(S_j - IP_j, 0) on its position over every supplier, in shares
            ip = cast(torch.Tensor, slot_ip)[:, self.out_slot]
            node_ip = per_node[:, :, 5] * bufs["mu"]  # the features' installation positions, in units
            ip = torch.where(self.on_node, node_ip[:, self.out_node], ip)
            q = torch.clamp(torch.nn.functional.softplus(zk) * scale - ip, min=0.0)
            y = torch.cat([z, torch.zeros_like(z[:, :1])], 1)[:, self.share_col]
            y = torch.exp(y - y.max(1, keepdim=True).values)
            q = q * (y / (y @ bufs["same_node"]))
        else:
            ip = cast(torch.Tensor, slot_ip)  # computed for installation targets
            q = torch.clamp(torch.nn.functional.softplus(zk) * scale - ip[:, self.out_slot], min=0.0)
        if self._slot_identity:
            return q
        orders = torch.zeros(b, self.n_slots, dtype=dt, device=z.device)
        return orders.index_copy(1, self.out_slot, q)


def resolved_architecture(topo: Topology, cfg: HDPOConfig) -> str:
    """``cfg.architecture``, with ``auto`` resolved: ``echelon`` where every node has one supplier,
    else ``split``."""
    if cfg.architecture != "auto":
        return cfg.architecture
    return "echelon" if topo.node_with_several_suppliers() is None else "split"


def split_slots(topo: Topology) -> dict[int, list[int]]:
    """``{node: slots}`` for the nodes the ``split`` architecture splits orders over: a node that is
    not an assembly and has at least two slots in without a fixed ordering cost (alternative
    suppliers or transport modes), with those slots."""
    out: dict[int, list[int]] = {}
    for j in range(topo.n_nodes):
        if topo.is_assembly[j]:
            continue
        free = [int(s) for s in topo.slots_into(j) if float(topo.slot_fixed_cost[s]) == 0.0]
        if len(free) >= 2:
            out[j] = free
    return out


def unit_values(topo: Topology, flows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """What a unit held in the network has cost to bring there, by weighted average cost
    (``(v_node (N,), v_slot (S,), v_lane (M,))``): a unit in transit on slot ``s`` has cost
    ``v_s = c_s + v_src(s)`` (``c_s`` its unit cost, ``v_src = 0`` for an external supplier); a
    component of lane ``l`` at its node ``v_l = sum_s w_s v_s / sum_s w_s`` over the lane's slots
    (modes), and a unit on hand at ``j`` ``v_j = sum_l W_l v_l / sum_l W_l`` over its lanes
    (alternative suppliers), or ``sum_l r_l v_l`` at an assembly (``r_l`` the bill of materials);
    the weights ``w_s`` are ``flows`` (units ordered on each slot), ``W_l`` their sums per lane.
    Where nothing flowed into a node, its first slot and lane count (the primary source). With
    one slot per lane and one supplier per node, ``v_j`` is the sum of the unit costs on the
    path from outside to ``j``, and ``sum_j v_j E_j`` equals ``sum_s c_s E_dst(s)``
    (:meth:`HDPONet.physical_echelon`).
    """
    flows = np.asarray(flows, dtype=float)
    v_node = np.zeros(topo.n_nodes)
    v_slot = np.zeros(topo.n_slots)
    v_lane = np.zeros(len(topo.lane_src))
    for j in range(topo.n_nodes):  # topological order: a node's suppliers come before it
        lanes = [int(x) for x in topo.in_lanes[topo.in_lane_ptr[j] : topo.in_lane_ptr[j + 1]]]
        if not lanes:
            continue
        lane_flow = []
        for lane in lanes:
            slots = [int(x) for x in topo.slots_into(j) if int(topo.slot_lane[x]) == lane]
            for x in slots:
                src = int(topo.slot_src[x])
                v_slot[x] = float(topo.slot_unit_cost[x]) + (v_node[src] if src >= 0 else 0.0)
            w = np.maximum(flows[slots], 0.0)
            if w.sum() <= 0.0:
                w = np.eye(len(slots))[0]
            v_lane[lane] = float(w @ v_slot[slots] / w.sum())
            lane_flow.append(float(np.maximum(flows[slots], 0.0).sum()))
        if topo.is_assembly[j]:
            v_node[j] = float(sum(topo.lane_bom[lane] * v_lane[lane] for lane in lanes))
        else:
            weights = np.array(lane_flow)
            if weights.sum() <= 0.0:
                weights = np.eye(len(lanes))[0]
            v_node[j] = float(weights @ v_lane[lanes] / weights.sum())
    return v_node, v_slot, v_lane


def stock_value(state: TwinState, values: tuple[torch.Tensor, torch.Tensor, torch.Tensor]) -> torch.Tensor:
    """``(B,)``: the value of the stock of each row at :func:`unit_values` ``values``: on hand less
    customer backorders at ``v_j``, in transit at ``v_s``, components at ``v_l``."""
    v_node, v_slot, v_lane = values
    return (state.on_hand - state.cust_bo) @ v_node + state.pipe.sum(2) @ v_slot + state.raw @ v_lane


def ordering_slots(topo: Topology, cfg: HDPOConfig) -> np.ndarray:
    """The slots an :class:`HDPONet` of ``cfg`` may order on: every slot with ``quantity``; with
    ``split`` (and ``auto`` where a node has several suppliers) the :func:`split_slots` of the nodes
    that have them and the primary slots of the others; else each node's primary slots
    (:func:`meio.envs.policies.primary_slots`). The others get 0."""
    arch = resolved_architecture(topo, cfg)
    if arch == "quantity":
        return np.arange(topo.n_slots)
    if arch != "split":
        return primary_slots(topo)
    split = split_slots(topo)
    slots = [int(s) for s in primary_slots(topo) if int(topo.slot_dst[s]) not in split]
    return np.array(sorted(slots + [s for v in split.values() for s in v]), dtype=np.int64)


def twin_params(
    topo: Topology, cfg: HDPOConfig, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32
) -> TwinParams:
    """The twin of ``topo`` for training a network of ``cfg``.

    A fixed ordering cost ``K_s 1[q_s > 0]`` has no useful gradient, so the twin refuses it
    (``docs/twin.md``). On a slot the network never orders on (an alternative mode or source beside
    the primary slot, under the ``echelon`` and ``installation`` architectures) the cost is never
    incurred; there it is charged as the kernel does (``fixed_costs="count"``, always 0), and the
    scenario trains. On a slot the network orders on it is refused, naming the slot.
    """
    slots = ordering_slots(topo, cfg)
    fixed = [int(s) for s in slots if float(topo.slot_fixed_cost[s]) != 0.0]
    if fixed:
        s = fixed[0]
        try:
            TwinParams.from_topology(topo, device=device, dtype=dtype)
        except ValueError as exc:
            raise ValueError(
                f"architecture {cfg.architecture}: the network orders on {topo.slot_names[s]}, which has a "
                f"fixed cost {float(topo.slot_fixed_cost[s]):g} per order; {exc}"
            ) from None
    return TwinParams.from_topology(topo, device=device, dtype=dtype, fixed_costs="count")


def hdpo_scenario_problem(scenario: ScenarioLike, cfg: HDPOConfig) -> str | None:
    """Why :func:`train_hdpo` with ``cfg`` cannot train on ``scenario`` (the twin refuses a key, or
    the architecture does not fit the network), or ``None`` where it can."""
    topo = resolve(scenario)
    try:
        twin_params(topo, cfg)
        HDPONet(topo, cfg)
    except ValueError as exc:
        return str(exc)
    return None


# ------------------------------------------------------------------------------------------------
# The policy face
# ------------------------------------------------------------------------------------------------
class HDPOPolicy:
    """A trained HDPO network that orders for every row of a simulator (``act(sim) -> (n, S)``).

    The simulator's state (its public arrays) is copied into a :class:`~meio.envs.twin.TwinState`
    in the network's precision (:func:`meio.envs.twin.state_from_simulator`), the network maps it
    to orders, rounded where the scenario has ``integer_orders``. The network is rebuilt for
    the simulator's topology (its scales and offsets come from the scenario) and the saved weights
    loaded into it; a scenario of another shape is refused naming both.
    """

    def __init__(
        self, weights: Mapping[str, torch.Tensor], cfg: HDPOConfig, name: str = "hdpo", trained_on: str | None = None
    ) -> None:
        self.weights = {k: v.detach().clone().cpu() for k, v in weights.items()}
        self.cfg = cfg
        self.name = name
        self.trained_on = trained_on
        self._built: dict[int, tuple[HDPONet, TwinParams]] = {}

    def _for(self, sim: Simulator) -> tuple[HDPONet, TwinParams]:
        key = id(sim.topology)
        if key not in self._built:
            topo = sim.topology
            dtype = torch.float64 if self.cfg.dtype == "float64" else torch.float32
            try:
                net = HDPONet(topo, self.cfg).to(dtype)
            except ValueError as exc:
                raise ValueError(f"scenario: {topo.scenario.name!r}: {exc}") from None
            try:
                try:
                    net.load_state_dict(self.weights, strict=True)
                except RuntimeError:
                    # `auto` chose `installation` where a node has several suppliers before `split`
                    # existed: an agent saved then has that network's weights
                    if self.cfg.architecture != "auto" or net.arch != "split":
                        raise
                    net = HDPONet(topo, self.cfg.replace(architecture="installation")).to(dtype)
                    net.load_state_dict(self.weights, strict=True)
            except RuntimeError:
                on = f" on {self.trained_on!r}" if self.trained_on else ""
                raise ValueError(
                    f"scenario: {topo.scenario.name!r} ({topo.n_nodes} nodes, {topo.n_slots} slots) "
                    f"does not fit the network {self.name!r} trained{on}; use a scenario with the "
                    "same network"
                ) from None
            net.eval()
            # The state in the network's precision: the features and positions are then computed
            # as in training, without a conversion per call.
            params = TwinParams.from_topology(topo, dtype=next(net.parameters()).dtype, fixed_costs="count")
            self._built = {key: (net, params)}
        return self._built[key]

    def check(self, sim: Simulator) -> None:
        """Refuse ``sim``'s scenario if the network does not fit it."""
        self._for(sim)

    def act(self, sim: Simulator) -> np.ndarray:
        net, params = self._for(sim)
        with one_torch_thread(), torch.inference_mode():
            orders = net(state_from_simulator(sim, params)).to(torch.float64).numpy()
        if sim.topology.integer_orders:
            orders = np.rint(orders)
        return orders

    # ---- saving and loading ---------------------------------------------------------------------
    def save(self, folder: Path, meta: Mapping[str, Any]) -> None:
        """Write the agent whole or not at all: ``policy.pt`` (a state_dict), ``meta.json``."""
        with folder_written_whole(Path(folder)) as tmp:
            self.save_into(tmp, meta)

    def save_into(self, folder: Path, meta: Mapping[str, Any]) -> None:
        torch.save(self.weights, folder / WEIGHTS_FILE)
        (folder / META_FILE).write_text(json.dumps({**meta, "algo": "hdpo", "config": self.cfg.to_dict()}, indent=2))

    @classmethod
    def load(cls, folder: str | Path, name: str = "hdpo") -> HDPOPolicy:
        folder = Path(folder)
        for f in (WEIGHTS_FILE, META_FILE):
            if not (folder / f).is_file():
                raise FileNotFoundError(
                    f"model: {folder} has no {f}; expected a saved HDPO agent (best/, final/ "
                    "or checkpoints/ITER/ of a run folder)"
                )
        problem = manifest_problem(folder)
        if problem is not None:
            raise ValueError(f"model: {folder} is damaged: {problem}")
        meta = read_json(folder / META_FILE, "model")
        if not isinstance(meta, dict) or meta.get("algo") != "hdpo":
            raise ValueError(f"model: {folder / META_FILE} does not say algo: hdpo; it is not a saved HDPO agent")
        try:
            cfg = HDPOConfig.from_dict(meta.get("config"))
        except ConfigError as exc:
            raise ValueError(f"model: {folder / META_FILE}: config: {exc}") from None
        try:
            # weights_only: a state_dict is tensors in plain containers; no pickled code runs
            weights = torch.load(folder / WEIGHTS_FILE, map_location="cpu", weights_only=True)
        except Exception as exc:  # torch raises many kinds for a damaged file
            raise ValueError(
                f"model: {folder / WEIGHTS_FILE} is not a readable state_dict ({type(exc).__name__}: {exc})"
            ) from None
        return cls(weights, cfg, name=name, trained_on=meta.get("scenario"))


# ------------------------------------------------------------------------------------------------
# Training
# ------------------------------------------------------------------------------------------------
def _training_base(rng: np.random.Generator, batch: int, eval_lo: int, eval_hi: int) -> int:
    """First row seed of a training batch (rows ``base .. base + batch - 1``), drawn from ``rng``
    so that no row uses an evaluation seed ``[eval_lo, eval_hi)``."""
    while True:
        base = int(rng.integers(0, _SEED_TOP - batch))
        if base + batch <= eval_lo or base >= eval_hi:
            return base


def _write_run_config(run: Path, scenario: str, seed: int, cfg: HDPOConfig) -> None:
    text = yaml.safe_dump(
        {"algo": "hdpo", "scenario": scenario, "seed": seed, "config": cfg.to_dict()}, sort_keys=False
    )
    tmp = run / f".config.yaml.partial-{os.getpid()}"
    with tmp.open("w") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, run / "config.yaml")


def _read_run_config(run: Path) -> tuple[str, int, HDPOConfig]:
    path = run / "config.yaml"
    if not path.is_file():
        raise FileNotFoundError(f"--resume: {run} has no config.yaml; it is not a run folder")
    try:
        data = read_yaml(path.read_text(), str(path))
    except (yaml.YAMLError, UnicodeDecodeError, ScenarioError) as exc:
        raise ConfigError(f"{path}: not a readable run config ({exc})") from None
    if not isinstance(data, dict) or data.get("algo") != "hdpo":
        raise ConfigError(f"{path}: algo: not hdpo; resume the run with the algorithm that made it")
    seed = data.get("seed")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ConfigError(f"{path}: seed: {seed!r} is not an integer >= 0")
    try:
        cfg = HDPOConfig.from_dict(data.get("config"))
    except ConfigError as exc:
        raise ConfigError(errors=[(f"config.{f}", f"{path}: config.{m}") for f, m in exc.errors]) from None
    return str(data.get("scenario")), seed, cfg


def _load_checkpoint(folder: Path) -> dict[str, Any] | str:
    """A checkpoint's contents, or why it cannot be used."""
    problem = manifest_problem(folder)
    if problem is not None:
        return problem
    try:
        state = json.loads((folder / STATE_FILE).read_text())
        weights = torch.load(folder / WEIGHTS_FILE, map_location="cpu", weights_only=True)
        optim = torch.load(folder / OPTIMIZER_FILE, map_location="cpu", weights_only=True)
    except Exception as exc:  # a damaged or missing file
        return f"unreadable ({type(exc).__name__}: {exc})"
    return {"state": state, "weights": weights, "optim": optim}


class _Run:
    """The loop's mutable state: what a checkpoint saves."""

    def __init__(self) -> None:
        self.iteration = 0
        self.best_cost: float | None = None
        self.since_best = 0
        self.stopped = False


def train_hdpo(
    scenario: ScenarioLike | None,
    cfg: HDPOConfig | None,
    run_dir: str | Path,
    seed: int = 0,
    progress: bool = True,
    resume: bool = False,
    on_evaluation: Callable[[dict[str, float]], None] | None = None,
) -> TrainResult:
    """Train (or, with ``resume``, continue) an HDPO agent on ``scenario``; see the module docstring.

    ``on_evaluation``, as in :func:`meio.agents.train.train`, is called after each evaluation is
    written with ``{"steps" (iterations), "eval/cost", "eval/cost_ci95", "eval/fill_rate",
    "eval/gap_pct" (with a reference)}``; ``meio.experiment`` reports them to Ray Tune.

    ``seed`` seeds the network's initialisation (torch) and the numpy ``Generator`` that draws each
    batch's row seeds (never an evaluation seed). With ``resume``, the run's own ``config.yaml``
    holds, ``scenario`` may be ``None`` (the run's own copy; one given must be the same,
    :func:`meio.agents.train.run_scenario`); a ``cfg`` given may differ from it only in
    :data:`RESUMABLE_CHANGES`, and training goes on from the newest sound checkpoint (network, Adam's
    state, the Generator's state) to ``iterations``, step for step as if it had not stopped.
    ``TrainResult.steps`` counts iterations.
    """
    started = time.perf_counter()
    cpu_started = time.process_time()
    run = Path(run_dir)
    if run.exists() and not run.is_dir():
        raise ValueError(f"--run-dir: {run} is a file; a run folder is a directory")
    if resume:
        saved_scenario, seed, saved_cfg = _read_run_config(run)
        if cfg is not None:
            differ = [
                f"{k} ({getattr(saved_cfg, k)!r} saved, {getattr(cfg, k)!r} given)"
                for k in saved_cfg.to_dict()
                if k not in RESUMABLE_CHANGES and getattr(cfg, k) != getattr(saved_cfg, k)
            ]
            if differ:
                raise ConfigError(
                    f"--resume: the config differs from the run's {run / 'config.yaml'} in "
                    f"{', '.join(differ)}; a run resumes with its own settings (only "
                    f"{', '.join(RESUMABLE_CHANGES)} may change): drop --config, or start a new run"
                )
            saved_cfg = saved_cfg.replace(**{k: getattr(cfg, k) for k in RESUMABLE_CHANGES})
        cfg = saved_cfg
    else:
        if cfg is None:
            raise ConfigError("config: a new run needs a config (None is only for resuming)")
        if run.exists() and any(run.iterdir()):
            raise FileExistsError(f"--run-dir: {run} exists and is not empty; pick a new folder or pass --resume")
        if scenario is None:
            raise ScenarioError("scenario: a new run needs a scenario (None is only for resuming)")
    topo = run_scenario(run, scenario, saved_scenario) if resume else resolve(scenario)
    sc = topo.scenario
    torch.set_num_threads(cfg.torch_threads)
    dtype = torch.float64 if cfg.dtype == "float64" else torch.float32
    problem = hdpo_scenario_problem(topo, cfg)
    if problem is not None:
        raise ValueError(f"scenario: {sc.name!r}: {problem}")
    horizon, warmup = trajectory_periods(topo, cfg)
    params = twin_params(topo, cfg, device=cfg.device, dtype=dtype)
    torch.manual_seed(seed)
    net = HDPONet(topo, cfg).to(device=params.device, dtype=dtype)
    opt = torch.optim.Adam(net.parameters(), lr=cfg.learning_rate)
    rng = np.random.default_rng(seed)
    loop = _Run()
    meta = {
        "scenario": sc.name,
        "scenario_source": sc.source,
        "seed": seed,
        "trajectory": f"{horizon} periods, {warmup} warm-up",
    }

    stored_baseline: tuple[str | None, float | None] | None = None
    damaged_folders: list[Path] = []  # set aside once the run goes on
    if resume:
        damaged: list[str] = []
        for candidate in reversed(checkpoint_steps(run)):
            loaded = _load_checkpoint(candidate)
            if not isinstance(loaded, str):
                try:
                    net.load_state_dict(loaded["weights"])
                except RuntimeError:
                    raise ValueError(
                        f"scenario: {sc.name!r} does not fit the network of the run {run} (checkpoint "
                        f"{candidate.name}); resume it on its own scenario"
                    ) from None
                try:
                    opt.load_state_dict(loaded["optim"])
                    st = loaded["state"]
                    rng.bit_generator.state = st["rng"]
                    torch.set_rng_state(torch.tensor(st["torch_rng"], dtype=torch.uint8))
                    loop.iteration, loop.best_cost = int(st["iteration"]), st["best_cost"]
                    loop.since_best, loop.stopped = int(st["since_best"]), bool(st.get("stopped", False))
                    name, cost = st.get("baseline", [None, None])
                    stored_baseline = (name, float(cost)) if cost is not None else None
                except (KeyError, TypeError, ValueError, RuntimeError) as exc:
                    loaded = f"{STATE_FILE} or {OPTIMIZER_FILE} does not hold a training state ({exc!r})"
            if isinstance(loaded, str):
                _note(f"resume: skipped checkpoint {candidate}: {loaded}")
                damaged.append(f"{candidate.name}: {loaded}")
                damaged_folders.append(candidate)
                continue
            _note(f"resume: continuing {run} from iteration {loop.iteration:,} to {cfg.iterations:,}")
            break
        else:
            if damaged:
                raise ValueError(
                    f"--resume: no checkpoint of {run} can be used ({'; '.join(damaged)}); start a new run, or "
                    "remove checkpoints/ to train this one again from iteration 0"
                )

    run.mkdir(parents=True, exist_ok=True)
    if resume:
        set_aside_damaged(run, damaged_folders)
        # a run restarted from iteration 0 (no checkpoint yet) evaluates iteration 0 again: drop its old row too
        _trim_evaluations(run, loop.iteration if loop.iteration else -1)
    clear_interrupted_hparams(run)
    _write_run_config(run, sc.name, seed, cfg)
    write_run_scenario(run, sc)

    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(str(run / "tb" / "hdpo"), purge_step=loop.iteration if resume else None)
    if not resume or loop.iteration == 0:
        rows = "\n".join(f"| {k} | {v} |" for k, v in {**cfg.to_dict(), **meta}.items())
        writer.add_text("hyperparameters", f"| parameter | value |\n|---|---|\n{rows}", 0)

    from meio.baselines.run import reference_baseline

    if stored_baseline is not None:  # the same seeds and settings: no need to simulate it again
        baseline_name, baseline_cost = stored_baseline
    else:
        found = reference_baseline(
            topo,
            periods=cfg.eval_periods,
            warmup=cfg.eval_warmup,
            replications=cfg.eval_replications,
            seed=cfg.eval_seed,
        )
        baseline_name, baseline_cost = (None, None) if found is None else (found[0].name, found[1].cost_mean)
    eval_sim = Simulator(topo, n=cfg.eval_replications, threads=cfg.threads)
    eval_lo, eval_hi = cfg.eval_seed, cfg.eval_seed + cfg.eval_replications

    def policy_now() -> HDPOPolicy:
        return HDPOPolicy(net.state_dict(), cfg, trained_on=sc.name)

    last_scalars: dict[str, float] = {}  # of the last evaluation: the run's final metrics

    def evaluate_now(it: int) -> float:
        result = evaluate(
            eval_sim,
            policy_now(),
            periods=cfg.eval_periods,
            warmup=cfg.eval_warmup,
            replications=cfg.eval_replications,
            seed=cfg.eval_seed,
        )
        # The same scalars, stability measures and selection rule as PPO's runs (meio.agents.train).
        scalars = evaluation_scalars(result, baseline_cost)
        for tag, value in scalars.items():
            writer.add_scalar(tag, value, it)
        last_scalars.clear()
        last_scalars.update(scalars)
        gap = scalars.get("eval/gap_pct")
        drifting = len(result.drifting)
        values = {
            "steps": it,
            "seconds": round(time.perf_counter() - started, 2),
            "cost": result.cost_mean,
            "cost_ci95": result.cost_ci95,
            "fill_rate": result.fill_rate["network"],
            "baseline": baseline_name,
            "baseline_cost": baseline_cost,
            "gap_pct": gap,
            "spread_pct": 100.0 * result.spread,
            "worst_replication": float(result.replication_costs.max()),
            "drifting": drifting,
            "trending": len(result.trending),
        }
        path = run / "evaluations.csv"
        new = not path.exists()
        with path.open("a", newline="") as fh:
            w = csv.writer(fh)
            if new:
                w.writerow(EVAL_COLUMNS)
            w.writerow([values.get(c) for c in EVAL_COLUMNS])
        score = selection_cost(result)
        if loop.best_cost is None or score < loop.best_cost:
            loop.best_cost = score
            loop.since_best = 0
            policy_now().save(run / "best", {**meta, "steps": it, "eval_cost": score})
        else:
            loop.since_best += 1
        if on_evaluation is not None:  # after the row and best/: a caller may stop the run here
            on_evaluation(
                {
                    "steps": float(it),
                    "eval/cost": result.cost_mean,
                    "eval/cost_ci95": result.cost_ci95,
                    "eval/fill_rate": result.fill_rate["network"],
                    **({} if gap is None else {"eval/gap_pct": gap}),
                }
            )
        if progress:
            _note(
                f"iteration {it:,}: eval cost {result.cost_mean:.4f} +- {result.cost_ci95:.4f}"
                + (f" (gap {gap:+.2f}% to {baseline_name})" if gap is not None else "")
            )
        return result.cost_mean

    def checkpoint_now(it: int) -> None:
        with folder_written_whole(run / "checkpoints" / str(it)) as tmp:
            policy_now().save_into(tmp, {**meta, "steps": it})
            torch.save(opt.state_dict(), tmp / OPTIMIZER_FILE)
            (tmp / STATE_FILE).write_text(
                json.dumps(
                    {
                        "iteration": it,
                        "best_cost": loop.best_cost,
                        "since_best": loop.since_best,
                        "stopped": loop.stopped,
                        "rng": rng.bit_generator.state,
                        "torch_rng": torch.get_rng_state().tolist(),
                        "baseline": [baseline_name, baseline_cost],
                    }
                )
            )

    # Truncation credit (HDPOConfig.transport_credit). Over the loss window [w, T) the units shipped
    # on slot s into node j (the only supplier's lane) are the sales below j plus the change of j's
    # physical echelon stock: sum_t x_s,t = D_j + E_j(T) - E_j(w). So v_s sum_t x_s,t - v_s (E_j(T) -
    # E_j(w)) = v_s D_j, the transport cost a stationary policy pays per unit sold; the credit has
    # zero mean in the long run and removes the cost of units paid for inside the window and used
    # after it, which would otherwise push every order in the last lead time to 0.
    # Where a node has several suppliers there is no echelon: the same balance holds for the
    # value of the stock at weighted average cost (unit_values, with the weights of the units
    # ordered on each slot in the window), sum_s c_s sum_t x_s,t ~ cost of the units sold +
    # V(T) - V(w); with one supplier per node the two credits are equal.
    unit = torch.tensor(np.asarray(topo.slot_unit_cost, dtype=float), dtype=dtype, device=params.device)
    credit_on = bool(cfg.transport_credit and bool((unit != 0).any()))
    by_value = credit_on and not net.echelon_ok
    marks: dict[str, Any] = {}

    def policy_fn(state: TwinState, k: int) -> torch.Tensor:
        if credit_on and k == warmup:
            marks["start"] = state if by_value else net.physical_echelon(state)
        orders = net(state)
        if by_value and k >= warmup:
            marks["flow"] = marks.get("flow", 0.0) + orders.detach().sum(0)
        return orders

    done_before = loop.iteration
    last_eval = -1
    if cfg.eval_every and loop.iteration == 0:
        evaluate_now(0)  # the untrained policy: where the learning curve starts (and maybe the best)
    while loop.iteration < cfg.iterations and not loop.stopped:
        t0 = time.perf_counter()
        base = _training_base(rng, cfg.batch_size, eval_lo, eval_hi)
        draws = draw_block(params, cfg.batch_size, horizon, base)
        result = rollout(params, policy_fn, initial_state(params, cfg.batch_size), draws)
        per_part = result.costs[:, warmup:].mean((0, 1))
        loss = per_part.sum()
        if by_value:
            kw = dict(dtype=dtype, device=params.device)
            values = tuple(torch.tensor(v, **kw) for v in unit_values(topo, marks.pop("flow").cpu().numpy()))
            added = stock_value(result.state, values) - stock_value(marks.pop("start"), values)
            credit = added.mean() / (horizon - warmup)
        elif credit_on:
            added = net.physical_echelon(result.state) - marks.pop("start")
            credit = (added[:, net.slot_dst] * unit).sum(1).mean() / (horizon - warmup)
        if credit_on:
            loss = loss - credit
            writer.add_scalar("cost/transport_credit", float(credit.detach()), loop.iteration + 1)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(net.parameters(), cfg.grad_clip)
        opt.step()
        loop.iteration += 1
        it = loop.iteration
        writer.add_scalar("cost/total", float(loss.detach()), it)
        for name, value in zip(COST_NAMES, per_part.detach().tolist()):
            writer.add_scalar(f"cost/{name}", value, it)
        writer.add_scalar("train/grad_norm", float(grad_norm), it)
        writer.add_scalar("time/iteration_ms", 1000.0 * (time.perf_counter() - t0), it)
        writer.add_scalar("time/elapsed_s", time.perf_counter() - started, it)
        writer.add_scalar("time/cpu_s", time.process_time() - cpu_started, it)
        if cfg.eval_every and it % cfg.eval_every == 0:
            evaluate_now(it)
            last_eval = it
            if cfg.patience and loop.since_best >= cfg.patience:
                loop.stopped = True
                _note(f"early stop at iteration {it:,}: {cfg.patience} evaluations without a new best")
        if cfg.checkpoint_every and it % cfg.checkpoint_every == 0 and it < cfg.iterations and not loop.stopped:
            checkpoint_now(it)
    it = loop.iteration
    if it > done_before or not (run / "final").is_dir():
        if last_eval != it:
            evaluate_now(it)
        checkpoint_now(it)
        # before final/: a run stopped between the two completes both on resume
        write_run_hparams(run, "hdpo", cfg.to_dict(), meta, loop.best_cost, last_scalars, it)
        policy_now().save(run / "final", {**meta, "steps": it})
    writer.flush()
    writer.close()
    return TrainResult(
        run_dir=run,
        steps=it,
        best_eval_cost=loop.best_cost,
        baseline_name=baseline_name,
        baseline_cost=baseline_cost,
        seconds=time.perf_counter() - started,
        steps_this_call=it - done_before,
    )
