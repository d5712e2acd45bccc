"""Process pools for the CPU-bound data steps: ingest's decodes and split's shards.

A step hands a pool whole units of work (ingest: a chunk of images; split: a shard)
whose output depends only on the unit, so the result is the same bytes whether the
units ran in a pool, in threads or in sequence, on any number of CPUs.
"""

from __future__ import annotations

import contextlib
import ctypes
import math
import multiprocessing
import multiprocessing.context
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

from cnnzoo.core.errors import CnnzooError

#: From this many images on, a machine with several CPUs uses a process pool (starting
#: one costs more than it saves below).
PROCESS_THRESHOLD = 1024
_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def usable_cpus() -> int:
    """CPUs this process may use: its affinity mask (a container's cpuset), capped by a
    cgroup CPU quota (a Kubernetes CPU limit, which the mask does not show)."""
    if hasattr(os, "sched_getaffinity"):
        cpus = len(os.sched_getaffinity(0)) or 1
    else:
        cpus = os.cpu_count() or 1
    quota = _cgroup_cpu_quota()
    return max(1, min(cpus, math.ceil(quota))) if quota else cpus


def _cgroup_cpu_quota() -> float | None:
    """CPUs the cgroup's quota allows (``cpu.max``, v2; ``cpu.cfs_quota_us``, v1), or None."""
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        pass
    try:
        quota = int(Path("/sys/fs/cgroup/cpu/cpu.cfs_quota_us").read_text())
        period = int(Path("/sys/fs/cgroup/cpu/cpu.cfs_period_us").read_text())
    except (OSError, ValueError):
        return None
    return quota / period if quota > 0 and period > 0 else None


def pool_size(n_images: int, units: int, processes: int | None) -> int:
    """How many processes work on ``units`` units holding ``n_images``; 0: no pool.

    ``processes`` given wins; otherwise one per usable CPU (at most 32 and at most one
    per unit) from :data:`PROCESS_THRESHOLD` images on with two or more CPUs.
    """
    if processes is not None:
        if processes < 0:
            raise CnnzooError(f"processes: must be 0 or more, got {processes}")
        return min(processes, max(units, 1))
    cpus = usable_cpus()
    if cpus < 2 or n_images < PROCESS_THRESHOLD or units < 2:
        return 0
    return min(cpus, 32, units)


def pool_context() -> multiprocessing.context.BaseContext:
    """``fork`` where this process runs no other thread and has not loaded TensorFlow
    (the ingest and split steps, ``cnnzoo ingest``/``split``): workers start in
    milliseconds; ``spawn`` otherwise (forking a process whose other threads may hold
    locks is unsafe)."""
    if threading.active_count() == 1 and "tensorflow" not in sys.modules:
        return multiprocessing.get_context("fork")
    return multiprocessing.get_context("spawn")


def _start_worker(initializer: Callable[[], None] | None, parent: int) -> None:
    # Ctrl-C is the parent's to handle: it stops the pool (no traceback per worker).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # A worker must not outlive its parent (killed, even by SIGKILL): it would go on
    # writing into the parent's unfinished output. Linux kills it with the parent.
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:  # the parent died before the line above took effect
        os._exit(1)
    # A forked worker's copies of the parent's output locks are closed by the fork hook
    # cnnzoo.storage.local registers (os.register_at_fork), so a lock goes with its owner.
    if initializer is not None:
        initializer()


@contextlib.contextmanager
def process_pool(
    processes: int, what: str, initializer: Callable[[], None] | None = None
) -> Iterator[ProcessPoolExecutor]:
    """A pool of ``processes`` workers (``initializer`` runs in each as it starts).

    On leaving, queued work is cancelled and running work finished; a worker that died
    (killed, out of memory) becomes one :class:`CnnzooError` line naming ``what``.
    """
    pool = ProcessPoolExecutor(
        processes,
        mp_context=pool_context(),
        initializer=_start_worker,
        initargs=(initializer, os.getpid()),
    )
    try:
        yield pool
    except BrokenProcessPool:
        raise CnnzooError(
            f"{what}: a worker process died (killed, or out of memory?); run it again, "
            "or with fewer processes"
        ) from None
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
