"""How many CPU threads torch uses, chosen so that a shared machine does not collapse.

torch's OpenMP threads wait for each other at every parallel step. When other jobs hold some
of the cores, a thread that is not scheduled keeps the others waiting: on 2 shared cores the
10-epoch digits training took 25-73 s with torch's default (2 threads) against 5 s with one
thread (``benchmarks/threads.py``, ``benchmarks/results/threads-cpu2.md``); passive OpenMP
waiting (``OMP_WAIT_POLICY=PASSIVE``) did not help (33-57 s). So, unless told otherwise,
hashret uses only the cores the load average leaves free, at least one.

``--threads N`` (or ``OMP_NUM_THREADS``) overrides the count; ``--threads 0`` is torch's
own default (every core). Nothing here imports torch unless torch is already loaded.
"""

from __future__ import annotations

import os
import sys

#: environment variable torch reads for its thread count at start-up
THREADS_ENV = "OMP_NUM_THREADS"


def available_cores() -> int:
    """Cores this process may run on (its CPU affinity), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def choose_threads(requested: int | None = None, *, cores: int | None = None,
                   load: float | None = None) -> int:
    """The torch thread count to use.

    Args:
        requested: ``--threads``: ``N >= 1`` is used as is; ``0`` means every core (torch's
            default); ``None`` decides: ``$OMP_NUM_THREADS`` when set, else the cores the
            1-minute load average leaves free (``round(cores - load)``, between 1 and cores).
        cores, load: the machine's (for tests); default :func:`available_cores` and
            ``os.getloadavg()[0]``.

    Raises:
        ValueError: a negative ``requested`` or a non-integer ``$OMP_NUM_THREADS``.
    """
    cores = cores or available_cores()
    if requested is not None:
        if requested < 0:
            raise ValueError(f"--threads {requested}: give 1 or more, or 0 for every core")
        return requested or cores
    env = os.environ.get(THREADS_ENV, "").strip()
    if env:
        try:
            return max(1, int(env))
        except ValueError:
            raise ValueError(f"{THREADS_ENV}={env!r} is not a whole number: unset it or set it to "
                             "e.g. 1") from None
    if load is None:
        try:
            load = os.getloadavg()[0]
        except OSError:
            load = 0.0
    return max(1, min(cores, int(cores - load + 0.5)))


def apply_threads(requested: int | None = None) -> int:
    """Set torch's thread count for this process (:func:`choose_threads`); return the count.

    Before torch is imported this sets the environment torch reads at start-up; after, it
    calls ``torch.set_num_threads``.
    """
    n = choose_threads(requested)
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(n)
    else:
        os.environ[THREADS_ENV] = str(n)
    return n
