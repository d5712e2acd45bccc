"""kfp.local's limits that cnnzoo relies on, measured from kfp's public behaviour.

:data:`cnnzoo.orchestration.local_run.KFP_LOCAL_LOOP_WORKERS` is how many
``dsl.ParallelFor`` iterations kfp.local runs at once, whatever the loop's
``parallelism``. kfp keeps that value private, so cnnzoo does not read it: this test runs a
five-item loop under ``kfp.local`` (SubprocessRunner, this environment, as
:func:`~cnnzoo.orchestration.local_run.run_pipeline_locally` uses it) and counts the
iterations that were running at the same time. A kfp upgrade that changes the cap fails it.
"""

# No `from __future__ import annotations`: kfp reads the component's annotations as types.
import json
import subprocess
import sys
from pathlib import Path

import pytest
from kfp import dsl

from cnnzoo.orchestration.local_run import KFP_LOCAL_LOOP_WORKERS

ITEMS = [0, 1, 2, 3, 4]
# How long an iteration waits for the others to start (seconds): longer than a task's start
# (a Python process importing kfp) on a loaded 2-CPU machine, so iterations that kfp runs
# at once are seen to overlap.
WAIT_S = 2.0


# The SubprocessRunner runs the task in this environment (which has kfp), not in the image:
# base_image only states the default explicitly, and install_kfp_package=False leaves
# out the command's `pip install` step.
@dsl.component(base_image="python:3.11", install_kfp_package=False)
def mark_interval(folder: str, item: int, others: int, wait_s: float):
    """Write this iteration's [start, end] times to ``folder/<item>.json``.

    Between the two it waits until ``others`` iterations (itself included) have started,
    or ``wait_s`` seconds have passed, so iterations that run at once overlap for sure.
    """
    import json
    import time
    from pathlib import Path

    marks = Path(folder)
    start = time.time()
    (marks / f"{item}.start").write_text(str(start))
    while len(list(marks.glob("*.start"))) < others and time.time() - start < wait_s:
        time.sleep(0.05)
    end = time.time()
    (marks / f"{item}.json").write_text(json.dumps({"start": start, "end": end}))


@dsl.pipeline(name="loop-with-parallelism")
def loop_with_parallelism(folder: str):
    with dsl.ParallelFor(ITEMS, parallelism=len(ITEMS)) as item:
        mark_interval(folder=folder, item=item, others=len(ITEMS), wait_s=WAIT_S)


@dsl.pipeline(name="loop-without-parallelism")
def loop_without_parallelism(folder: str):
    with dsl.ParallelFor(ITEMS) as item:
        mark_interval(folder=folder, item=item, others=len(ITEMS), wait_s=WAIT_S)


def most_at_once(intervals: list[tuple[float, float]]) -> int:
    """The most ``[start, end]`` intervals that overlap at one time.

    An interval that starts when another ends does not overlap it (an end sorts before a
    start at the same time).
    """
    events = sorted([(start, 1) for start, _ in intervals] + [(end, -1) for _, end in intervals])
    running = most = 0
    for _, step in events:
        running += step
        most = max(most, running)
    return most


def test_most_at_once_counts_overlapping_intervals():
    assert most_at_once([]) == 0
    assert most_at_once([(0, 1), (1, 2), (2, 3)]) == 1  # back to back
    assert most_at_once([(0, 2), (1, 3), (2.5, 4)]) == 2
    assert most_at_once([(0, 5), (1, 4), (2, 3), (6, 7)]) == 3
    assert most_at_once([(0, 9)] * 5) == 5


def run_loop(name: str, root: str) -> None:
    """Run the pipeline ``name`` under kfp.local into ``root`` (in a child process: kfp.local
    changes process globals, e.g. it indents ``print``, and keeps them)."""
    from kfp import local

    workspace = Path(root) / "workspace"
    workspace.mkdir()
    local.init(
        runner=local.SubprocessRunner(use_venv=False),
        pipeline_root=str(Path(root) / "kfp"),
        workspace_root=str(workspace),
    )
    globals()[name](folder=str(Path(root) / "marks"))


@pytest.mark.parametrize(
    "pipeline, parallelism",
    [("loop_with_parallelism", len(ITEMS)), ("loop_without_parallelism", None)],
    ids=["parallelism-5", "no-parallelism"],
)
def test_kfp_local_runs_loop_workers_iterations_at_once(tmp_path: Path, pipeline, parallelism):
    marks = tmp_path / "marks"
    marks.mkdir()
    code = (
        f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); "
        f"import test_kfp_local_limits as t; t.run_loop({pipeline!r}, {str(tmp_path)!r})"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]

    intervals = [
        (mark["start"], mark["end"])
        for mark in (json.loads(p.read_text()) for p in sorted(marks.glob("*.json")))
    ]
    assert len(intervals) == len(ITEMS)
    measured = most_at_once(intervals)
    assert measured == KFP_LOCAL_LOOP_WORKERS, (
        f"kfp.local ran {measured} of {len(ITEMS)} ParallelFor iterations at once (loop"
        f" parallelism {parallelism}); KFP_LOCAL_LOOP_WORKERS says {KFP_LOCAL_LOOP_WORKERS}:"
        " update it (and its comment) in cnnzoo/orchestration/local_run.py"
    )
