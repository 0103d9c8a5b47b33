"""How many threads the batched step uses: one, unless the user asks for more.

The step function (and the inventory-position and observation kernels) exist in two numba
compilations: a serial one, and a ``parallel`` one whose ``prange`` spreads the rows of the batch
over numba's thread pool (OpenMP, TBB or numba's workqueue). The threads meet at a barrier at the
end of every step, so one thread that the operating system deschedules holds up the whole step:
with another process busy on one of two cores, 1,024 rows ran at about 50,000 steps/s on two
threads against 1.3-2 million on one, and ``meio baselines`` on a 7-node network took 182-239 s
instead of 15 s (``benchmarks/env_throughput.py`` measures both cases). A run must never
be slower for having threads, so the default is **one thread**: the serial kernels, and numba's
pool is never started.

The thread count comes from the first of these that is set:

1. the ``threads`` argument (:class:`meio.envs.simulator.Simulator`, :func:`meio.envs.make_vec_env`, the
   training config's ``threads`` field);
2. the command line's ``--threads`` for the duration of one ``meio`` command (:func:`default_threads`);
3. the environment variable ``MEIO_THREADS``;
4. 1.

A value is an integer ``N >= 1`` or ``"auto"``. ``N > 1`` runs batches of at least
:data:`meio.envs.dynamics.PARALLEL_ROWS` rows on the parallel compilation with ``N`` threads (at most
numba's ``NUMBA_NUM_THREADS``, with a warning when more are asked for); smaller batches stay
serial. ``"auto"`` takes the cores not busy right now (:func:`free_cores`).
"""

from __future__ import annotations

import math
import os
import threading
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Literal

import numba
import numpy as np

#: Environment variable read when no argument and no ``--threads`` set the count.
ENV_VAR = "MEIO_THREADS"

#: What a thread setting may be: a count, ``"auto"``, or ``None`` (not set here: look further).
Threads = int | str | None

_RULE = "use an integer >= 1 (1: serial kernels, no thread pool) or 'auto' (the cores not busy now)"

#: (value, source) set by :func:`default_threads`, or ``None``.
_command_default: tuple[int | str, str] | None = None


def parse_threads(value: object, source: str = "threads") -> int | Literal["auto"]:
    """Check a thread setting: an integer >= 1, a string of one, or ``"auto"``.

    ``source`` names the option in the error (``threads``, ``--threads``, ``MEIO_THREADS``).
    Raises :class:`ValueError` naming it, the value and the rule.
    """
    if isinstance(value, str):
        text = value.strip().lower()
        if text == "auto":
            return "auto"
        if text.isascii() and text.isdigit() and int(text) >= 1:
            return int(text)
    elif isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_)) and value >= 1:
        return int(value)
    raise ValueError(f"{source}: {value!r} is not a thread count; {_RULE}")


def free_cores() -> int:
    """Cores this process may run on minus the busy ones: ``max(1, C - round(l_1))``.

    ``C`` is the number of cores in the process's affinity mask (``os.sched_getaffinity``, else
    ``os.cpu_count``) and ``l_1`` the one-minute load average (the mean number of runnable
    processes, ``os.getloadavg``), so a core busy more than half of the last minute counts as
    busy. The load average covers the whole machine (in a container, the host), and it counts this
    process too once it has run for a while: ``"auto"`` errs towards fewer threads.
    """
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    try:
        load = max(os.getloadavg()[0], 0.0)
    except (AttributeError, OSError):  # no load average (Windows): trust the core count
        load = 0.0
    return max(1, cores - int(math.floor(load + 0.5)))


@contextmanager
def default_threads(value: Threads, source: str = "--threads") -> Iterator[None]:
    """Within the block, simulators built without a ``threads`` argument use ``value``.

    The command line wraps each command in it, so ``meio baselines --threads 2`` reaches every
    simulator the command builds, however deep. ``None`` changes nothing (``MEIO_THREADS`` or 1
    then apply). The value is checked on entry.
    """
    global _command_default
    if value is None:
        yield
        return
    parse_threads(value, source)
    previous = _command_default
    _command_default = (value, source)
    try:
        yield
    finally:
        _command_default = previous


def resolve_threads(value: Threads = None, source: str = "threads") -> int:
    """The number of threads asked for: the argument, else :func:`default_threads`, else
    ``MEIO_THREADS``, else 1. ``"auto"`` becomes :func:`free_cores` (at most numba's
    ``NUMBA_NUM_THREADS``).

    An explicit count above ``NUMBA_NUM_THREADS`` is returned as asked; :func:`numba_threads` caps
    it when the kernels run.
    """
    if value is None and _command_default is not None:
        value, source = _command_default
    if value is None:
        env = os.environ.get(ENV_VAR, "").strip()
        if env:
            value, source = env, ENV_VAR
    if value is None:
        return 1
    parsed = parse_threads(value, source)
    if parsed == "auto":
        return min(free_cores(), numba.config.NUMBA_NUM_THREADS)
    return parsed


def numba_threads(threads: int) -> int:
    """The threads numba can give to a request of ``threads``: at most ``NUMBA_NUM_THREADS`` (the
    pool's size, fixed when numba is imported), with a warning when fewer than asked."""
    cap = numba.config.NUMBA_NUM_THREADS
    if threads > cap:
        warnings.warn(
            f"threads: {threads} asked for, but numba's pool has NUMBA_NUM_THREADS={cap} threads; "
            f"using {cap} (set NUMBA_NUM_THREADS before starting Python for more)",
            RuntimeWarning,
            stacklevel=3,
        )
        return cap
    return threads


#: The count this module last gave ``numba.set_num_threads`` in each Python thread (numba's own
#: setting is per calling thread too); setting it costs microseconds, a step at 128 rows tens of them.
_last_set = threading.local()


def _set_numba_threads(threads: int) -> None:
    if getattr(_last_set, "threads", None) != threads:
        numba.set_num_threads(threads)
        _last_set.threads = threads


def with_threads(kernel: Callable[..., Any], threads: int) -> Callable[..., Any]:
    """``kernel`` (a ``parallel`` compilation) called with numba's thread count set to ``threads``.

    ``numba.set_num_threads`` holds for the calling thread until it is set again, so the count is
    checked at every call: two simulators with different counts may step in turn. It is set once
    now as well, so that the observation kernel (called right after a step, or after the first
    reset) runs with the same count. Code outside meio that calls ``numba.set_num_threads`` in
    between goes unseen; that changes speed, never results.
    """
    _set_numba_threads(threads)

    def call(*args: Any) -> Any:
        _set_numba_threads(threads)
        return kernel(*args)

    call.__name__ = getattr(kernel, "__name__", "kernel")
    call.__doc__ = kernel.__doc__
    return call
