"""Following a cluster run: each step's state, once per change, and how the run ended.

``cnnzoo submit --wait`` and ``cnnzoo status RUN_ID`` read the run with
``kfp.Client().get_run`` (KFP v2beta1: the run's ``state`` and ``run_details.task_details``).
A step task is named by its display name (``train``, ``evaluate``, ``report``, ...); a
task inside a ``ParallelFor`` iteration also by the model configuration it trains: the plan
makes its records model by model, ``repeats`` per model (:func:`cnnzoo.orchestration.tasks.plan`),
so iteration ``i`` is ``models[i // repeats]``, read from the run's own parameters.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from cnnzoo.core.errors import CnnzooError, one_line
from cnnzoo.orchestration import kfp_api
from cnnzoo.orchestration.kfp_api import KfpConnection
from cnnzoo.storage.layout import REPORT_FILES, report_location

#: The pipeline's step tasks (the DAG tasks around them are not reported).
STEPS = (
    "fingerprint",
    "resolve-profile",
    "plan",
    "ingest",
    "split",
    "train",
    "evaluate",
    "report",
    "tensorboard-cr",
)
#: States after which a run or a task does not change.
FINAL_STATES = ("SUCCEEDED", "SKIPPED", "FAILED", "CANCELED")
_ITERATION_RE = re.compile(r"iteration-(\d+)$")


@dataclass(frozen=True)
class TaskState:
    """One step task of a run, as last read."""

    task_id: str
    name: str  # e.g. "train simple" (with the repeat when the run repeats: "train simple #2")
    state: str
    seconds: float | None  # start to end, once it ended
    error: str = ""

    def line(self) -> str:
        took = f" ({self.seconds:.0f} s)" if self.seconds is not None else ""
        why = f": {self.error}" if self.error else ""
        return f"  {self.name}: {self.state}{took}{why}"


@dataclass(frozen=True)
class RunState:
    """A run as last read: its state, its step tasks, where its report goes."""

    run_id: str
    state: str
    tasks: list[TaskState]
    report: str
    error: str = ""

    @property
    def done(self) -> bool:
        return self.state in FINAL_STATES

    def failed_tasks(self) -> list[TaskState]:
        return [t for t in self.tasks if t.state in ("FAILED", "CANCELED")]


def _state(value: Any) -> str:
    return str(value or "PENDING").upper()


def _model_of(index: int, params: dict[str, Any]) -> tuple[str, int] | None:
    """The model and repeat (1-based) of loop iteration ``index``, from the run's parameters."""
    models = params.get("models") or []
    repeats = params.get("repeats")
    if not isinstance(repeats, (int, float)):
        try:
            repeats = json.loads(params.get("profile") or "{}").get("repeats", 1)
        except (ValueError, AttributeError):
            repeats = 1
    repeats = max(1, int(repeats or 1))
    if not isinstance(models, list) or index // repeats >= len(models):
        return None
    return str(models[index // repeats]), index % repeats + 1


def _report_line(params: dict[str, Any]) -> str:
    output = str(params.get("output_uri") or "")
    if output:
        return f"{report_location(output)}/{REPORT_FILES['html']}"
    return "the report task's 'comparison' artifact (KFP UI: the run's report step)"


def run_state(run: Any) -> RunState:
    """A ``V2beta1Run`` as a :class:`RunState`."""
    params = dict(getattr(getattr(run, "runtime_config", None), "parameters", None) or {})
    details = getattr(getattr(run, "run_details", None), "task_details", None) or []
    by_id = {t.task_id: t for t in details if getattr(t, "task_id", None)}
    tasks = []
    for task in details:
        name = task.display_name or ""
        if name not in STEPS:
            continue
        label, parent = name, by_id.get(task.parent_task_id)
        while parent is not None:
            match = _ITERATION_RE.search(parent.display_name or "")
            if match:
                found = _model_of(int(match.group(1)), params)
                if found:
                    model, repeat = found
                    label = f"{name} {model}" + (f" #{repeat}" if repeat > 1 else "")
                break
            parent = by_id.get(parent.parent_task_id)
        seconds = None
        state = _state(task.state)
        if state in FINAL_STATES and task.start_time and task.end_time:
            seconds = max(0.0, (task.end_time - task.start_time).total_seconds())
        error = getattr(getattr(task, "error", None), "message", None) or ""
        tasks.append(
            TaskState(task.task_id, label, state, seconds, one_line(error) if error else "")
        )
    run_error = getattr(getattr(run, "error", None), "message", None) or ""
    return RunState(
        run.run_id,
        _state(run.state),
        tasks,
        _report_line(params),
        one_line(run_error) if run_error else "",
    )


def read_run(conn: KfpConnection, run_id: str, client=None) -> RunState:
    """Read run ``run_id`` once.

    Raises:
        CnnzooError: an unknown run; the backend refused or could not be reached.
    """
    doing = f"reading run {run_id} from"
    client = client or kfp_api.client(conn, doing)
    try:
        return run_state(client.get_run(run_id))
    except Exception as e:  # urllib3 errors, kfp_server_api.ApiException
        if getattr(e, "status", None) == 404:
            raise CnnzooError(f"run {run_id}: no such run on {conn.host}") from None
        raise CnnzooError(kfp_api.api_error(conn, doing, e)) from None


def follow_run(
    conn: KfpConnection,
    run_id: str,
    emit: Callable[[str], None] = print,
    poll_s: float = 10.0,
    timeout_s: float | None = None,
) -> RunState:
    """Poll run ``run_id`` until it ends, emitting each step task's state change once.

    Returns:
        The run as it ended.

    Raises:
        CnnzooError: as :func:`read_run`, or ``timeout_s`` passed first.
    """
    client = kfp_api.client(conn, f"reading run {run_id} from")
    seen: dict[str, str] = {}
    start = time.monotonic()
    while True:
        run = read_run(conn, run_id, client)
        for task in run.tasks:
            if seen.get(task.task_id) != task.state:
                seen[task.task_id] = task.state
                emit(task.line())
        if run.done:
            return run
        if timeout_s is not None and time.monotonic() - start > timeout_s:
            raise CnnzooError(f"run {run_id}: still {run.state} after {timeout_s:g} s")
        time.sleep(poll_s)


def summary_lines(run: RunState) -> list[str]:
    """The lines ``cnnzoo status`` prints: the run's state, its tasks, its report."""
    lines = [f"run {run.run_id}: {run.state}"]
    lines += [t.line() for t in run.tasks]
    if run.state == "SUCCEEDED":
        lines.append(f"report: {run.report}")
    return lines


def check_outcome(run: RunState) -> None:
    """Raise for a run that ended without success, naming the failed task.

    Raises:
        CnnzooError: ``run <id> FAILED: task <name> failed[: <error>]``.
    """
    if run.state in ("SUCCEEDED", "SKIPPED") or not run.done:
        return
    failed = run.failed_tasks()
    if failed:
        names = ", ".join(t.name for t in failed)
        why = f": {failed[0].error}" if failed[0].error else ""
        raise CnnzooError(f"run {run.run_id} {run.state}: task {names} failed{why}")
    why = f": {run.error}" if run.error else ""
    raise CnnzooError(f"run {run.run_id} {run.state}{why}")
