"""The local entry point over the one pipeline definition: :func:`run_local`.

:func:`run_local` runs a :class:`~cnnzoo.orchestration.study.Study` with ``kfp.local`` into
``runs/<timestamp>/``, prints one line per step as it starts and finishes, keeps the
full log in ``run.log``, points ``runs/latest`` at the run, and leaves ``run.json``
with a final status however the run ends (``succeeded``, ``failed``, ``interrupted``).
The cluster entry point (compile and submit) is :mod:`cnnzoo.orchestration.cluster`.

A local run compiles the pipeline to ``<run>/pipeline.yaml``
(:func:`cnnzoo.orchestration.cluster.compile_pipeline`) and runs that package with the public
``kfp.local`` API in a child process of its own (``python -m cnnzoo.orchestration.local_run
SESSION.json``, in a new session). kfp 2.17's local runner changes process globals
while it runs: per task it replaces the ``print`` builtin and the root logger's
handlers and puts back what it found (``kfp/local/logging_utils.py``), from several
threads at once inside a ``ParallelFor`` (the thread pool of
``kfp/local/orchestrator/enhanced_dag_orchestrator.py``), so interleaved tasks can leave
another task's versions behind (no upstream issue found for it as of kfp 2.17.3).
Rather than restore kfp's globals afterwards, the session gets a process whose globals
nobody else uses. It also lets an interrupted run stop the whole session (the child and
the task processes it started) as one process group.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from cnnzoo import __version__
from cnnzoo.core import workers
from cnnzoo.core.errors import CnnzooError, one_line
from cnnzoo.models.registry import list_models
from cnnzoo.orchestration import docker as docker_runner
from cnnzoo.orchestration.cluster import compile_pipeline
from cnnzoo.orchestration.placement import Placement, load_placement
from cnnzoo.orchestration.study import Study
from cnnzoo.pipelines import DEFAULT_GPU_IMAGE, DEFAULT_IMAGE
from cnnzoo.storage.layout import (
    LATEST_RUN,
    REPORT_FILES,
    RUN_KFP_ROOT,
    RUN_LOG,
    RUN_MANIFEST,
    RUN_PIPELINE,
    RUN_RECORD,
    RUN_TENSORBOARD,
    RUNS_DIR,
)
from cnnzoo.storage.local import atomic_write_json, read_json

DEFAULT_RUNS_DIR = RUNS_DIR
#: The most ``dsl.ParallelFor`` iterations kfp.local runs at once, whatever the loop's
#: ``parallelism``: kfp.local's observed cap (kfp 2.17.3, ``ParallelExecutor`` in
#: kfp/local/orchestrator/enhanced_dag_orchestrator.py, a private value cnnzoo does not
#: read). ``ParallelExecutor`` came with https://github.com/kubeflow/pipelines/pull/12511
#: (ParallelFor support in kfp.local); no upstream issue tracks the cap.
#: tests/test_kfp_local_limits.py measures it from kfp.local's public behaviour, so a kfp
#: upgrade that changes it fails that test.
KFP_LOCAL_LOOP_WORKERS = 2
#: The kfp.local runners a local run can use (``run_local(runner=...)``).
LOCAL_RUNNERS = ("subprocess", "docker")
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


class RunInterrupted(KeyboardInterrupt):
    """A local run was stopped by SIGINT (Ctrl-C) or SIGTERM."""


@dataclass
class LocalRun:
    """A finished local run: its folder and the report it produced."""

    run_dir: Path
    report_html: Path
    arguments: dict[str, Any]
    seconds: float


class _Progress:
    """Writes the session's output to the log file and a concise line per step event (the
    ``[cnnzoo]`` lines the components print, task failures, the final status) to the
    console; remembers the failed tasks and the last lines for the error message."""

    _SHOW = (
        re.compile(r"\[cnnzoo\] (?P<msg>.*)"),
        re.compile(r"(?P<msg>Task '(?P<failed>[^']+)' finished with status FAILURE)"),
        re.compile(r"(?P<msg>Task \S+ failed \(attempt .*)"),
        re.compile(r"(?P<msg>Pipeline '[^']+' finished with status \w+)"),
    )

    def __init__(self, log: TextIO, console: TextIO, models: list[str] | tuple[str, ...] = ()):
        self._log, self._console = log, console
        # The run's configurations (variants and sweep points besides the registry's).
        self._models = {*list_models(), *models}
        self.tail: list[str] = []
        self.failed: list[str] = []
        self._started: dict[tuple[str, str], float] = {}

    def _with_elapsed(self, msg: str) -> str:
        """``msg``, with the step's elapsed time appended if it is the step's last line."""

        words = msg.split()
        if len(words) < 2:
            return msg
        # "simple" or, one of several repeats, "simple/seed-7".
        model = words[1].rstrip(":")
        key = (words[0].rstrip(":"), model if model.split("/")[0] in self._models else "")
        if msg.endswith(": started"):
            self._started[key] = time.monotonic()
            return msg
        rest = words[2:] if key[1] else words[1:]
        if rest and rest[0].rstrip(":") in ("done", "FAILED") and key in self._started:
            return f"{msg} [{time.monotonic() - self._started.pop(key):.1f} s]"
        return msg

    def write(self, text: str) -> int:
        """Take text in any pieces; each complete line goes to :meth:`line`."""
        self._buf = getattr(self, "_buf", "") + text
        *lines, self._buf = self._buf.split("\n")
        for one in lines:
            self.line(one)
        return len(text)

    def line(self, line: str) -> None:
        line = _ANSI.sub("", line.rstrip("\n"))
        self._log.write(line + "\n")
        self._log.flush()
        if line.strip():
            self.tail = (self.tail + [line])[-25:]
        for pattern in self._SHOW:
            m = pattern.search(line)
            if m:
                if m.groupdict().get("failed"):
                    self.failed.append(m.group("failed"))
                stamp = datetime.datetime.now().strftime("%H:%M:%S")
                msg = self._with_elapsed(m.group("msg").strip())
                self._console.write(f"{stamp}  {msg}\n")
                self._console.flush()
                break


def _new_run_dir(runs_dir: Path) -> Path:
    runs_dir.mkdir(parents=True, exist_ok=True)
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    for i in range(100):
        run_dir = runs_dir / (stamp if i == 0 else f"{stamp}-{i}")
        try:
            run_dir.mkdir()
            return run_dir
        except FileExistsError:
            continue
    raise CnnzooError(f"{runs_dir}: cannot create a new run folder")


def _point_latest(runs_dir: Path, run_dir: Path) -> None:
    """Make ``runs/latest`` a symlink to the newest run (replaced atomically)."""
    latest = runs_dir / LATEST_RUN
    tmp = runs_dir / f".latest.{os.getpid()}"
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    tmp.symlink_to(run_dir.name, target_is_directory=True)
    os.replace(tmp, latest)


@contextlib.contextmanager
def _sigterm_interrupts():
    """Within the block, SIGTERM raises :class:`RunInterrupted` (as Ctrl-C raises
    KeyboardInterrupt), so the run is stopped and recorded instead of vanishing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        raise RunInterrupted(signal.Signals(signum).name)

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _stop_session(proc: subprocess.Popen, grace_s: float = 10.0) -> None:
    """Stop the local session and every task process it started (its process group)."""
    for sig, wait_s in ((signal.SIGTERM, grace_s), (signal.SIGKILL, grace_s)):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(timeout=wait_s)
            return
        except subprocess.TimeoutExpired:
            continue


def run_pipeline_locally(
    package: str | os.PathLike,
    arguments: dict[str, Any],
    run_dir: str | os.PathLike,
    console: TextIO | None = None,
    runner: str = "subprocess",
    threads_per_task: int | None = None,
) -> Path:
    """Run a compiled pipeline package under ``kfp.local``, in a session process of its own.

    Args:
        package: the pipeline YAML (:func:`compile_pipeline`).
        arguments: the pipeline's arguments (:meth:`Study.arguments`).
        run_dir: the run's folder (gets ``kfp/`` outputs and ``run.log``).
        console: where progress lines go (default: stdout).
        runner: the kfp.local runner, one of :data:`LOCAL_RUNNERS`.
        threads_per_task: TensorFlow's intra- and inter-op threads in each task
            (``TF_NUM_INTRAOP_THREADS``/``TF_NUM_INTEROP_THREADS``, unless set already);
            None: TensorFlow's default, one per CPU.

    Returns:
        The path of the report folder (the pipeline's ``comparison`` output).

    Raises:
        CnnzooError: a task failed (the message names it and the log).
        RunInterrupted, KeyboardInterrupt: SIGTERM or Ctrl-C; the session was stopped.
    """
    if runner not in LOCAL_RUNNERS:
        raise CnnzooError(f"runner {runner!r}: expected one of {', '.join(LOCAL_RUNNERS)}")
    console = console or sys.stdout
    run_dir = Path(run_dir)
    session = {
        "package": str(Path(package).resolve()),
        "arguments": arguments,
        "pipeline_root": str((run_dir / RUN_KFP_ROOT).resolve()),
        "runner": runner,
        "result": str((run_dir / ".session-result.json").resolve()),
    }
    session_file = run_dir / ".session.json"
    atomic_write_json(session_file, session)
    log_path = run_dir / RUN_LOG
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if threads_per_task is not None:
        env.setdefault("TF_NUM_INTRAOP_THREADS", str(threads_per_task))
        env.setdefault("TF_NUM_INTEROP_THREADS", str(threads_per_task))
    with open(log_path, "w", encoding="utf-8") as log, _sigterm_interrupts():
        progress = _Progress(log, console, arguments.get("models") or ())
        proc = subprocess.Popen(
            [sys.executable, "-m", "cnnzoo.orchestration.local_run", str(session_file)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
            env=env,
            start_new_session=True,
        )
        try:
            for line in proc.stdout:
                progress.line(line)
            rc = proc.wait()
        except BaseException:
            _stop_session(proc)
            raise
        finally:
            proc.stdout.close()
    result_path = Path(session["result"])
    result = json.loads(result_path.read_text()) if result_path.is_file() else {}
    if rc == 0 and result.get("status") == "succeeded":
        return Path(result["report"])
    tail = "\n".join("  " + line for line in progress.tail[-15:])
    console.write(f"last log lines:\n{tail}\n")
    where = f"task {', '.join(repr(t) for t in progress.failed)}" if progress.failed else "a task"
    raise CnnzooError(f"pipeline failed in {where}; full log: {log_path}")


def _local_runner(name: str, session: dict[str, Any] | None = None):
    """The kfp.local runner object for a :data:`LOCAL_RUNNERS` name."""
    from kfp import local

    if name == "docker":
        session = session or {}
        return docker_runner.docker_runner(
            Path(session["pipeline_root"]),
            network=docker_runner.needs_network(session.get("arguments", {})),
        )
    if name == "subprocess":
        # No venv per task: the tasks run in this environment, which has cnnzoo installed.
        return local.SubprocessRunner(use_venv=False)
    raise CnnzooError(f"runner {name!r}: expected one of {', '.join(LOCAL_RUNNERS)}")


def _session_main(session_file: str) -> int:
    """The local session process: run the package with the public kfp.local API.

    Writes ``{"status": "succeeded", "report": <folder>}`` or ``{"status": "failed"}`` to
    the session's result file; kfp.local's log goes to stdout, which the parent reads.
    """
    from kfp import components, local

    session = json.loads(Path(session_file).read_text())
    local.init(
        runner=_local_runner(session["runner"], session),
        pipeline_root=session["pipeline_root"],
        raise_on_error=False,
    )
    pipeline = components.load_component_from_file(session["package"])
    with warnings.catch_warnings():
        # Resources and node selectors are for the cluster; kfp.local says so per task.
        warnings.filterwarnings("ignore", message=".*no effect in the current local runner")
        # Local runs use this environment in place of the images, deliberately.
        warnings.filterwarnings("ignore", message=".*custom or non-Python base image")
        task = pipeline(**session["arguments"])
    report = task.outputs.get("Output")
    result = {"status": "succeeded", "report": report.path} if report else {"status": "failed"}
    sys.stdout.flush()
    atomic_write_json(session["result"], result)
    return 0 if report else 1


def _threads_per_task(study: Study, placement, models: list[str]) -> int:
    """TensorFlow threads for each task of a local run: the usable CPUs shared by the
    trainings that run at once (the loop's iterations: ``models`` times the profile's
    repeats, capped by the placement's
    ``parallelism`` and by :data:`KFP_LOCAL_LOOP_WORKERS`). Each TensorFlow process
    would otherwise start one thread per CPU, and several at once oversubscribe the
    machine (measured with ``make bench``'s pipeline: two 1-epoch trainings on 2 CPUs
    took 5.9 and 14.8 s with 2 threads each, 4.8 and 10.6 s with 1)."""

    at_once = len(models) * max(1, int(study.resolved_profile().repeats))
    if placement.parallelism:
        at_once = min(at_once, placement.parallelism)
    at_once = min(at_once, KFP_LOCAL_LOOP_WORKERS)
    return max(1, workers.usable_cpus() // max(1, at_once))


def run_local(
    study: Study,
    runs_dir: str | os.PathLike = DEFAULT_RUNS_DIR,
    placement=None,
    console: TextIO | None = None,
    runner: str = "subprocess",
    image: str = DEFAULT_IMAGE,
    gpu_image: str | None = None,
) -> LocalRun:
    """Run the whole pipeline locally into ``<runs_dir>/<timestamp>/``.

    TensorBoard logs go to ``<run>/tensorboard/<model>/`` (with an output location or a
    TensorBoard root: there); ``<runs_dir>/latest`` points at the run;
    ``<run>/run.json`` records the study, the arguments, the report path, the run
    manifest (``manifest``: the report step's list of the run's artifacts, relative to
    the run folder; see :mod:`cnnzoo.reporting.discovery`) and the status, which is final however
    the run ends: ``succeeded``, ``failed`` (with the error) or
    ``interrupted`` (Ctrl-C or SIGTERM, with the signal).

    Args:
        study: what to run.
        runs_dir: the folder holding the runs.
        placement: cluster placement (its parallelism caps the local fan-out too; its
            retries and ``gcp_secret`` are not used locally).
        console: where progress goes (default: stdout).
        runner: the kfp.local runner, one of :data:`LOCAL_RUNNERS`.

    Returns:
        The finished run.

    Raises:
        CnnzooError: bad arguments (before anything runs) or a failed task.
        RunInterrupted, KeyboardInterrupt: the run was stopped by a signal.
    """

    console = console or sys.stdout
    runs_dir = Path(runs_dir).resolve()
    if runner not in LOCAL_RUNNERS:
        raise CnnzooError(f"--runner {runner!r}: expected one of {', '.join(LOCAL_RUNNERS)}")
    if not isinstance(placement, Placement):
        placement = load_placement(placement)
    arguments = study.arguments(local=True)
    gpu_image = gpu_image or (image if runner == "docker" else DEFAULT_GPU_IMAGE)
    if runner == "docker":
        docker_runner.check_run(arguments, [image, gpu_image])
    run_dir = _new_run_dir(runs_dir)
    if not arguments["tensorboard_root"] and not arguments["output_uri"]:
        # Without an output location the logs stay in the run folder, one root for all.
        arguments["tensorboard_root"] = str(run_dir / RUN_TENSORBOARD)
    if runner == "docker":
        docker_runner.prepare_run(arguments, run_dir)  # stages inputs, prepares kfp/
    record: dict[str, Any] = {
        "run_dir": str(run_dir),
        "started": datetime.datetime.now().isoformat(timespec="seconds"),
        "study": study.to_dict(),
        "arguments": arguments,
        "runner": runner,
        "status": "running",
        "cnnzoo_version": __version__,
        "pid": os.getpid(),
    }
    atomic_write_json(run_dir / RUN_RECORD, record)
    _point_latest(runs_dir, run_dir)
    threads = (
        _threads_per_task(study, placement, arguments["models"]) if runner == "subprocess" else None
    )
    if threads is not None:
        record["threads_per_task"] = threads
    console.write(
        f"run {run_dir.name}: {len(arguments['models'])} models, profile {study.profile}, "
        f"data {study.data_uri} -> {run_dir}"
        + (f" ({threads} TensorFlow thread(s) per task)" if threads else "")
        + "\n"
    )
    console.flush()
    start = time.monotonic()
    try:
        with _sigterm_interrupts():
            package = compile_pipeline(
                run_dir / RUN_PIPELINE, image, gpu_image, placement.for_local_run()
            )
            report_dir = run_pipeline_locally(
                package, arguments, run_dir, console, runner, threads_per_task=threads
            )
            _require_a_model(report_dir)
    except KeyboardInterrupt as e:
        record.update(status="interrupted", signal=str(e) if str(e) else "SIGINT")
        raise
    except BaseException as e:
        record.update(status="failed", error=one_line(e))
        raise
    else:
        record.update(status="succeeded", report=str(report_dir / REPORT_FILES["html"]))
        manifest = report_dir / RUN_MANIFEST  # written by the report step
        if manifest.is_file():
            record["manifest"] = os.path.relpath(manifest, run_dir)
    finally:
        seconds = time.monotonic() - start
        record.update(
            finished=datetime.datetime.now().isoformat(timespec="seconds"),
            seconds=round(seconds, 1),
        )
        atomic_write_json(run_dir / RUN_RECORD, record)
    return LocalRun(run_dir, report_dir / REPORT_FILES["html"], arguments, seconds)


def _require_a_model(report_dir: Path) -> None:
    """Raise unless the report ranks at least one model: a run whose every model failed
    has a report (it lists the failures) but is a failed run."""
    comparison = read_json(report_dir / REPORT_FILES["json"])
    if comparison.get("rows") or comparison.get("pipeline_checks"):
        return
    failed = comparison.get("failed") or []
    first = f" (first: {failed[0].get('model')}: {failed[0].get('error')})" if failed else ""
    raise CnnzooError(f"every model failed{first}; report: {report_dir / REPORT_FILES['html']}")


__all__ = [
    "DEFAULT_RUNS_DIR",
    "LOCAL_RUNNERS",
    "LocalRun",
    "RunInterrupted",
    "run_local",
    "run_pipeline_locally",
]


if __name__ == "__main__":
    sys.exit(_session_main(sys.argv[1]))
