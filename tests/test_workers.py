"""cnnzoo.core.workers: how many processes, and what a pool does when a worker or its parent
dies."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from cnnzoo.core import workers
from cnnzoo.core.errors import CnnzooError
from cnnzoo.storage.local import output_lock


def test_pool_size(monkeypatch):
    monkeypatch.setattr(workers, "usable_cpus", lambda: 4)
    assert workers.pool_size(5000, 40, None) == 4
    assert workers.pool_size(5000, 3, None) == 3  # at most one process per unit
    assert workers.pool_size(1023, 40, None) == 0  # below the threshold: threads
    assert workers.pool_size(5000, 1, None) == 0  # one unit: nothing to share
    assert workers.pool_size(10, 5, 2) == 2  # asked for: the threshold does not apply
    assert workers.pool_size(10, 1, 2) == 1
    assert workers.pool_size(10, 5, 0) == 0
    monkeypatch.setattr(workers, "usable_cpus", lambda: 1)
    assert workers.pool_size(100_000, 100, None) == 0
    with pytest.raises(CnnzooError, match="processes: must be 0 or more, got -1"):
        workers.pool_size(10, 5, -1)


def test_usable_cpus_follows_a_cgroup_quota(monkeypatch):
    monkeypatch.setattr(workers, "_cgroup_cpu_quota", lambda: 1.5)
    assert workers.usable_cpus() == min(2, len(os.sched_getaffinity(0)))
    monkeypatch.setattr(workers, "_cgroup_cpu_quota", lambda: None)
    assert workers.usable_cpus() == len(os.sched_getaffinity(0))


def test_pool_context_forks_only_a_process_without_threads_or_tensorflow(monkeypatch):
    import threading

    # Earlier tests may leave threads in this process: the count is what is decided on.
    monkeypatch.setattr(threading, "active_count", lambda: 1)
    monkeypatch.delitem(sys.modules, "tensorflow", raising=False)
    assert workers.pool_context().get_start_method() == "fork"
    monkeypatch.setitem(sys.modules, "tensorflow", object())
    assert workers.pool_context().get_start_method() == "spawn"
    monkeypatch.delitem(sys.modules, "tensorflow")
    monkeypatch.setattr(threading, "active_count", lambda: 2)
    assert workers.pool_context().get_start_method() == "spawn"


def _exit_at_once(_job):
    os._exit(3)


def test_a_worker_that_dies_is_one_error_line():
    with pytest.raises(CnnzooError) as e:
        with workers.process_pool(2, "split /data/x") as pool:
            list(pool.map(_exit_at_once, range(4)))
    assert str(e.value) == (
        "split /data/x: a worker process died (killed, or out of memory?); run it again, "
        "or with fewer processes"
    )


def test_workers_die_with_their_parent_and_do_not_keep_its_lock(tmp_path):
    """SIGKILL the parent mid-pool: its workers go too, and the output lock is free."""
    dest = tmp_path / "out"
    script = textwrap.dedent(
        f"""
        import os, sys, time
        from cnnzoo.core import workers
        from cnnzoo.storage.local import output_lock

        with output_lock({str(dest)!r}):
            with workers.process_pool(2, "test") as pool:
                futures = [pool.submit(time.sleep, 60) for _ in range(2)]
                time.sleep(1.0)
                print("running", flush=True)
                time.sleep(60)
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline() == "running\n"
    pids = _children(proc.pid)
    assert len(pids) == 2
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    deadline = time.monotonic() + 10
    while any(_alive(p) for p in pids):
        assert time.monotonic() < deadline, f"workers {pids} outlived their parent"
        time.sleep(0.05)
    with output_lock(dest):  # taken at once: no worker holds a copy of the lock
        pass


def _children(pid: int) -> list[int]:
    """The child processes of ``pid`` (Linux ``/proc``)."""
    found = []
    for task in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{task}/children") as f:
            found += [int(c) for c in f.read().split()]
    return found


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (dead, not yet reaped by init) counts as gone.
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] != "Z"
    except FileNotFoundError:
        return False
