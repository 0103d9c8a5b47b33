"""The settings of a simulation run and their rules, written once for the Python API and the CLI.

:func:`~meio.envs.metrics.evaluate`, ``run_baselines``, ``run_benchmark`` and the ``meio`` commands all
take the same counts: ``periods`` (per replication, after the warm-up), ``warmup``,
``replications`` (independent copies, seeded ``seed, seed + 1, ...``), ``seed`` and the search's
``search_periods`` / ``search_replications``. :func:`check_setting` checks one of them and names
it in the error; the command line's argparse ``type=`` functions call :func:`setting_problem`, so
both edges give the same rule in the same words.

The upper bounds are sanity limits, not modelling rules: a count beyond them is a typing slip
(``--periods 1e12``) that would otherwise fail deep inside numpy or run for days.
"""

from __future__ import annotations

from typing import Any

import numpy as np

#: ``name: (minimum, maximum)`` of every run setting (integers, both bounds included).
#: ``seed`` stops at ``2**32 - 1`` because ``numpy.random.seed``, which stable-baselines3 calls
#: when it seeds training, takes 32-bit seeds; the other maxima keep one evaluation's per-period
#: record (``replications x periods`` numbers, see :data:`MAX_RECORD`) and the simulator's
#: per-row state within memory.
RUN_SETTINGS: dict[str, tuple[int, int]] = {
    "periods": (1, 10**9),
    "warmup": (0, 10**9),
    "replications": (1, 10**5),
    "seed": (0, 2**32 - 1),
    "search_periods": (1, 10**9),
    "search_replications": (1, 10**5),
    "n": (1, 10**6),  # rows of a Simulator (copies stepped together)
}

#: Most ``replications x periods`` one evaluation records (two float64 arrays of that size: 1.6 GB).
MAX_RECORD = 10**8


def setting_problem(name: str, value: Any) -> str | None:
    """What is wrong with ``value`` for the run setting ``name`` (``None`` if nothing), without the name."""
    lo, hi = RUN_SETTINGS[name]
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        return f"{value!r} is not an integer; {name} is an integer in {lo}..{hi}"
    if value < lo:
        return f"{value} is below {lo}; {name} is an integer in {lo}..{hi}"
    if value > hi:
        return f"{value} is above {hi}; {name} is an integer in {lo}..{hi}"
    return None


def check_setting(name: str, value: Any) -> int:
    """``value`` as an ``int`` if it obeys the rule of the run setting ``name``, else ``ValueError``
    ``"name: value ... rule"``."""
    problem = setting_problem(name, value)
    if problem:
        raise ValueError(f"{name}: {problem}")
    return int(value)


def check_run_settings(**settings: Any) -> None:
    """Check every given run setting (``periods=..., seed=...``) and the size of the record they make."""
    for name, value in settings.items():
        check_setting(name, value)
    periods, replications = settings.get("periods"), settings.get("replications")
    if periods is not None and replications is not None and periods * replications > MAX_RECORD:
        raise ValueError(
            f"replications x periods: {replications} x {periods} = {replications * periods} is above "
            f"{MAX_RECORD:.0e}, the most one evaluation records (one cost per replication and period)"
        )
