"""The two entry points over the one pipeline definition: a local run and a cluster run.

* :func:`compile_pipeline` writes the pipeline YAML (images and placement baked in).
* :func:`run_local` runs the pipeline with ``kfp.local`` and the ``SubprocessRunner`` (no
  venv per task) into ``runs/<timestamp>/``, prints one line per step as it starts and
  finishes, keeps the full log in ``run.log`` and points ``runs/latest`` at the run.
* :func:`submit` compiles and submits through ``kfp.Client``.

The pipeline itself lives in ``pipelines/cnn_comparison.py`` beside this package.
"""

from __future__ import annotations

import builtins
import contextlib
import datetime
import io
import logging
import os
import re
import sys
import tempfile
import threading
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from cnnzoo import __version__
from cnnzoo.errors import CnnzooError
from cnnzoo.fsutil import atomic_write_json

REPO_ROOT = Path(__file__).resolve().parent.parent
IMAGE_REGISTRY = "ghcr.io/example/cnnzoo"
DEFAULT_IMAGE = f"{IMAGE_REGISTRY}/cnnzoo:{__version__}"
DEFAULT_GPU_IMAGE = f"{IMAGE_REGISTRY}/cnnzoo-gpu:{__version__}"
DEFAULT_RUNS_DIR = "runs"
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _pipeline_module():
    """Import ``pipelines.cnn_comparison`` from the checkout this package lives in."""
    if (REPO_ROOT / "pipelines").is_dir() and str(REPO_ROOT) not in sys.path:
        sys.path.insert(0, str(REPO_ROOT))
    try:
        import pipelines.cnn_comparison as module
    except ModuleNotFoundError as e:
        if e.name in ("pipelines", "pipelines.cnn_comparison", "components"):
            raise CnnzooError(
                f"the pipeline definition (pipelines/, components/) is not beside {REPO_ROOT};"
                " compile and run from a checkout of the repository"
            ) from None
        raise
    return module


def build(image: str = DEFAULT_IMAGE, gpu_image: str = DEFAULT_GPU_IMAGE, placement=None):
    """The pipeline function for these images and placement (a path, a Placement or None).

    Returns:
        The ``@dsl.pipeline`` function of ``pipelines.cnn_comparison.build_pipeline``.
    """
    from cnnzoo.placement import Placement, load_placement

    if not isinstance(placement, Placement):
        placement = load_placement(placement)
    return _pipeline_module().build_pipeline(image=image, gpu_image=gpu_image, placement=placement)


def compile_pipeline(
    out: str | os.PathLike,
    image: str = DEFAULT_IMAGE,
    gpu_image: str = DEFAULT_GPU_IMAGE,
    placement=None,
) -> Path:
    """Compile the pipeline to a YAML file a Kubeflow Pipelines 2.x backend accepts.

    Args:
        out: the YAML file to write (atomically).
        image: the CPU image of the steps.
        gpu_image: the image of steps placed on an accelerator pool.
        placement: path to a cluster.yaml, a Placement, or None for ``configs/cluster.yaml``.

    Returns:
        The path written.

    Raises:
        CnnzooError: bad placement file.
    """
    from kfp import compiler

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    pipeline = build(image, gpu_image, placement)
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".yaml", dir=out.parent)
    os.close(fd)
    try:
        compiler.Compiler().compile(pipeline, tmp)
        os.replace(tmp, out)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
    return out


def pipeline_arguments(
    data_uri: str = "demo",
    models: list[str] | None = None,
    profile: str = "demo",
    overrides: list[str] | tuple[str, ...] = (),
    seed: int | None = None,
    tensorboard_root: str = "",
    local: bool = True,
    output_uri: str = "",
) -> dict[str, Any]:
    """Validate a run's parameters before anything starts; return the pipeline arguments.

    Checks the model names against the registry, that the profile and overrides load,
    that the image size suits every chosen model, and (``local=False``) that the data
    URI is one a cluster can read and the output location one it can write.

    Args:
        data_uri: ``demo``, a local folder or archive (local runs), or ``gs://...``.
        models: registered configuration names; None means all of them.
        profile: profile name (or, for local runs, a YAML path).
        overrides: ``key=value`` profile overrides.
        seed: the run's seed (applied as override ``seed=<n>``); None keeps the profile's.
        tensorboard_root: where TensorBoard logs go ("" keeps them in the train artifacts).
        local: whether the run is local (paths are made absolute) or on a cluster.
        output_uri: where the run exports its report, models, checkpoints and (without
            ``tensorboard_root``) TensorBoard logs: "" (nowhere), a local folder (local
            runs) or ``gs://bucket/prefix``.

    Returns:
        The pipeline's arguments.

    Raises:
        CnnzooError: the message names the bad value.
    """
    from cnnzoo.config import load_profile
    from cnnzoo.models import get_spec, list_models

    valid = list_models()
    models = list(valid) if models is None else list(models)
    if not models:
        raise CnnzooError("--models: no model configuration given")
    for name in models:
        if name not in valid:
            raise CnnzooError(
                f"--models: unknown model configuration {name!r} (valid: {', '.join(valid)})"
            )
    dupes = sorted({m for m in models if models.count(m) > 1})
    if dupes:
        raise CnnzooError(f"--models: listed more than once: {', '.join(dupes)}")
    overrides = list(overrides)
    if profile.endswith((".yaml", ".yml")):
        if not local:
            raise CnnzooError(
                f"--profile {profile!r}: a cluster run needs a profile name from the image;"
                " pass changes with --set"
            )
        profile = str(Path(profile).resolve())
    prof = load_profile(profile, overrides + ([f"seed={seed}"] if seed is not None else []))
    for name in models:
        need = get_spec(name).min_img_size
        if prof.img_size < need:
            raise CnnzooError(f"img_size {prof.img_size} is too small for {name} (needs >= {need})")
    if local:
        if data_uri != "demo" and "://" not in data_uri:
            path = Path(data_uri)
            if not path.exists():
                raise CnnzooError(f"--data {data_uri}: no such file or folder")
            data_uri = str(path.resolve())
    elif data_uri != "demo" and not data_uri.startswith("gs://"):
        raise CnnzooError(
            f"--data {data_uri!r}: a cluster run reads 'demo' or a gs://bucket/prefix URI"
        )
    return {
        "data_uri": data_uri,
        "models": models,
        "profile": profile,
        "overrides": overrides,
        "seed": prof.seed,
        "tensorboard_root": tensorboard_root,
        "output_uri": _output_uri(output_uri, local),
    }


def _output_uri(output_uri: str, local: bool) -> str:
    """``--output`` checked: gs:// with a bucket, or (local runs) a folder made absolute."""
    from cnnzoo.storage import is_gcs, parse_gs_uri

    if not output_uri:
        return ""
    if is_gcs(output_uri):
        try:
            bucket, _ = parse_gs_uri(output_uri)
        except CnnzooError as e:
            raise CnnzooError(f"--output {e}") from None
        if not re.match(r"^[a-z0-9][-a-z0-9_.]{1,220}[a-z0-9]$", bucket):
            raise CnnzooError(f"--output {output_uri!r}: {bucket!r} is not a bucket name")
        return output_uri.rstrip("/")
    if not local:
        raise CnnzooError(
            f"--output {output_uri!r}: a cluster run writes to a gs://bucket/prefix URI"
        )
    if "://" in output_uri:
        raise CnnzooError(f"--output {output_uri!r}: expected a local folder or gs://bucket/prefix")
    path = Path(output_uri).resolve()
    if path.exists() and not path.is_dir():
        raise CnnzooError(f"--output {output_uri}: exists and is not a folder")
    return str(path)


# --- local runs -------------------------------------------------------------------------


@dataclass
class LocalRun:
    """A finished local run: its folder and the report it produced."""

    run_dir: Path
    report_html: Path
    arguments: dict[str, Any]
    seconds: float


class _Progress(io.TextIOBase):
    """Stands in for stdout during a local run: everything goes to the log file, and a
    concise line per step event (the ``[cnnzoo]`` lines the components print, task
    failures, retries, the final status) goes to the console. A step's last line
    (``... done``, ``... FAILED``) gets the time since its ``...: started`` line, e.g.
    ``train mid done: ... [52.3 s]``."""

    _SHOW = (
        re.compile(r"\[cnnzoo\] (?P<msg>.*)"),
        re.compile(r"(?P<msg>Task '[^']+' finished with status FAILURE)"),
        re.compile(r"(?P<msg>Task \S+ failed \(attempt .*)"),
        re.compile(r"(?P<msg>Pipeline '[^']+' finished with status \w+)"),
    )

    def __init__(self, log: TextIO, console: TextIO):
        self._log, self._console = log, console
        self._buf = ""
        self._lock = threading.Lock()
        self.tail: list[str] = []
        self._started: dict[tuple[str, str], float] = {}

    def writable(self) -> bool:
        return True

    def write(self, s: str) -> int:
        with self._lock:
            self._buf += s
            *lines, self._buf = self._buf.split("\n")
            for line in lines:
                self._line(_ANSI.sub("", line))
        return len(s)

    def _line(self, line: str) -> None:
        self._log.write(line + "\n")
        if line.strip():
            self.tail = (self.tail + [line])[-25:]
        for pattern in self._SHOW:
            m = pattern.search(line)
            if m:
                stamp = datetime.datetime.now().strftime("%H:%M:%S")
                msg = self._with_elapsed(m.group("msg").strip())
                self._console.write(f"{stamp}  {msg}\n")
                self._console.flush()
                break

    def flush(self) -> None:
        with self._lock:
            self._log.flush()

    def _with_elapsed(self, msg: str) -> str:
        """``msg``, with the step's elapsed time appended if it is the step's last line."""
        from cnnzoo.models import list_models

        words = msg.split()
        if len(words) < 2:
            return msg
        # A step is its first word and, for per-model steps, the model's name:
        # "train mid: started" ... "train mid done: ...", "ingest demo: started" ...
        # "ingest done: ...".
        model = words[1].rstrip(":")
        key = (words[0].rstrip(":"), model if model in list_models() else "")
        if msg.endswith(": started"):
            self._started[key] = time.monotonic()
            return msg
        rest = words[2:] if key[1] else words[1:]
        if rest and rest[0].rstrip(":") in ("done", "FAILED") and key in self._started:
            return f"{msg} [{time.monotonic() - self._started.pop(key):.1f} s]"
        return msg


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
    latest = runs_dir / "latest"
    tmp = runs_dir / f".latest.{os.getpid()}"
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    tmp.symlink_to(run_dir.name, target_is_directory=True)
    os.replace(tmp, latest)


def _patch_kfp_local_oneof() -> None:
    """Let ``kfp.local`` resolve ``dsl.OneOf`` over artifacts (kfp 2.17 handles only
    parameters there): a branch DAG's artifact output is whichever branch produced it.
    Cluster backends resolve OneOf themselves; this only affects local runs."""
    from kfp.local.orchestrator import orchestrator_utils

    utils = orchestrator_utils.OrchestratorUtils
    if getattr(utils, "_cnnzoo_oneof", False):
        return

    def get_dag_output_artifacts(cls, dag_outputs_spec, io_store):
        outputs = {}
        for key, spec in dag_outputs_spec.artifacts.items():
            found = []
            for selector in spec.artifact_selectors:
                try:
                    found.append(
                        io_store.get_task_output(
                            selector.producer_subtask, selector.output_artifact_key
                        )
                    )
                except (KeyError, ValueError):
                    continue  # that branch did not run
            if len(found) != 1:
                raise ValueError(f"output {key!r}: {len(found)} branches produced it, expected 1")
            outputs[key] = found[0]
        return outputs

    utils.get_dag_output_artifacts = classmethod(get_dag_output_artifacts)
    utils._cnnzoo_oneof = True


def run_pipeline_locally(
    pipeline,
    arguments: dict[str, Any],
    run_dir: Path,
    console: TextIO | None = None,
    runner=None,
) -> Path:
    """Run a pipeline (function or loaded YAML component) under ``kfp.local``.

    Args:
        pipeline: the ``@dsl.pipeline`` function, or ``load_component_from_file(...)``.
        arguments: the pipeline's arguments.
        run_dir: the run's folder (gets ``kfp/`` outputs and ``run.log``).
        console: where progress lines go (default: stdout).
        runner: a ``kfp.local`` runner (default: ``SubprocessRunner`` without venvs).

    Returns:
        The path of the report folder (the pipeline's ``comparison`` output).

    Raises:
        CnnzooError: a task failed (the message names it and the log).
    """
    from kfp import local

    console = console or sys.stdout
    _patch_kfp_local_oneof()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    local.init(
        runner=runner or local.SubprocessRunner(use_venv=False),
        pipeline_root=str(run_dir / "kfp"),
        raise_on_error=True,
    )
    log_path = run_dir / "run.log"
    # kfp.local swaps builtins.print and the root logger's handlers per task; parallel
    # tasks can restore each other's versions (which write to this run's log), so put
    # the originals back afterwards.
    original_print = builtins.print
    root_logger = logging.getLogger()
    original_handlers, original_level = root_logger.handlers[:], root_logger.level
    with open(log_path, "w", encoding="utf-8") as log:
        progress = _Progress(log, console)
        with warnings.catch_warnings(), contextlib.redirect_stdout(progress):
            # Resources and node selectors are for the cluster; kfp.local says so per task.
            warnings.filterwarnings("ignore", message=".*no effect in the current local runner")
            # Local runs use this environment in place of the images, deliberately.
            warnings.filterwarnings("ignore", message=".*custom or non-Python base image")
            try:
                task = pipeline(**arguments)
            except RuntimeError as e:
                failed = re.search(r"Inner task failed: (.*)\.$", _ANSI.sub("", str(e)))
                where = failed.group(1) if failed else str(e)
                progress.flush()
                tail = "\n".join("  " + line for line in progress.tail[-15:])
                console.write(f"last log lines:\n{tail}\n")
                raise CnnzooError(
                    f"pipeline failed in task {where}; full log: {log_path}"
                ) from None
            finally:
                builtins.print = original_print
                root_logger.handlers[:] = original_handlers
                root_logger.setLevel(original_level)
                progress.flush()
    report = task.output
    return Path(report.path)


def run_local(
    data_uri: str = "demo",
    models: list[str] | None = None,
    profile: str = "demo",
    overrides: list[str] | tuple[str, ...] = (),
    seed: int | None = None,
    runs_dir: str | os.PathLike = DEFAULT_RUNS_DIR,
    placement=None,
    console: TextIO | None = None,
    output_uri: str = "",
    runner: str = "subprocess",
    image: str = DEFAULT_IMAGE,
    gpu_image: str | None = None,
) -> LocalRun:
    """Run the whole pipeline locally into ``<runs_dir>/<timestamp>/``.

    TensorBoard logs go to ``<run>/tensorboard/<model>/`` (with ``output_uri``: to
    ``<output_uri>/tensorboard/<model>/``); ``<runs_dir>/latest`` points at the run;
    ``<run>/run.json`` records the arguments, status and report path.

    Args:
        data_uri: ``demo``, a local folder or archive, or ``gs://...``.
        models: configuration names (None: all fourteen).
        profile: profile name or YAML path.
        overrides: ``key=value`` profile overrides.
        seed: the run's seed; None keeps the profile's.
        runs_dir: the folder holding the runs.
        placement: cluster placement (its parallelism caps the local fan-out too; its
            retries and ``gcp_secret`` are not used locally).
        console: where progress goes (default: stdout).
        output_uri: also export the report, models, checkpoints and TensorBoard logs
            there (a local folder or ``gs://bucket/prefix``); "" for none.
        runner: ``subprocess`` (steps run in this environment) or ``docker`` (every step
            in its image under ``kfp.local.DockerRunner``; see :mod:`cnnzoo.docker_runner`).
        image, gpu_image: the step images of a ``docker`` run (``gpu_image`` defaults to
            ``image``: accelerator pools run on the CPU image locally).

    Returns:
        The finished run.

    Raises:
        CnnzooError: bad arguments (before anything runs) or a failed task.
    """
    from cnnzoo import docker_runner
    from cnnzoo.placement import Placement, load_placement

    console = console or sys.stdout
    runs_dir = Path(runs_dir).resolve()
    if runner not in docker_runner.RUNNERS:
        raise CnnzooError(
            f"--runner {runner!r}: expected one of {', '.join(docker_runner.RUNNERS)}"
        )
    if not isinstance(placement, Placement):
        placement = load_placement(placement)
    arguments = pipeline_arguments(
        data_uri, models, profile, overrides, seed, local=True, output_uri=output_uri
    )
    gpu_image = gpu_image or (image if runner == "docker" else DEFAULT_GPU_IMAGE)
    if runner == "docker":
        docker_runner.check_run(arguments, [image, gpu_image])
    run_dir = _new_run_dir(runs_dir)
    # With an output location the logs go there, beside the exported report and models.
    arguments["tensorboard_root"] = "" if arguments["output_uri"] else str(run_dir / "tensorboard")
    kfp_runner = None
    if runner == "docker":
        kfp_runner = docker_runner.prepare_run(arguments, run_dir)
    pipeline = build(image, gpu_image, placement=placement.for_local_run())
    record = {
        "run_dir": str(run_dir),
        "started": datetime.datetime.now().isoformat(timespec="seconds"),
        "arguments": arguments,
        "status": "running",
        "cnnzoo_version": __version__,
        "runner": runner,
    }
    atomic_write_json(run_dir / "run.json", record)
    _point_latest(runs_dir, run_dir)
    console.write(
        f"run {run_dir.name}: {len(arguments['models'])} models, profile {profile}, "
        f"data {data_uri} -> {run_dir}\n"
    )
    console.flush()
    start = time.monotonic()
    try:
        report_dir = run_pipeline_locally(pipeline, arguments, run_dir, console, kfp_runner)
    except CnnzooError:
        record.update(
            status="failed", finished=datetime.datetime.now().isoformat(timespec="seconds")
        )
        atomic_write_json(run_dir / "run.json", record)
        raise
    report_html = report_dir / "report.html"
    seconds = time.monotonic() - start
    record.update(
        status="succeeded",
        finished=datetime.datetime.now().isoformat(timespec="seconds"),
        seconds=round(seconds, 1),
        report=str(report_html),
    )
    atomic_write_json(run_dir / "run.json", record)
    return LocalRun(run_dir, report_html, arguments, seconds)


# --- cluster runs -----------------------------------------------------------------------


@dataclass
class SubmittedRun:
    """A run created on a Kubeflow Pipelines backend."""

    run_id: str
    url: str
    experiment: str


def submit(
    host: str,
    namespace: str | None = None,
    experiment: str = "cnnzoo",
    run_name: str | None = None,
    data_uri: str = "demo",
    models: list[str] | None = None,
    profile: str = "demo",
    overrides: list[str] | tuple[str, ...] = (),
    seed: int | None = None,
    tensorboard_root: str = "",
    image: str = DEFAULT_IMAGE,
    gpu_image: str = DEFAULT_GPU_IMAGE,
    placement=None,
    pipeline_root: str | None = None,
    output_uri: str = "",
) -> SubmittedRun:
    """Compile the pipeline and create a run of it on a Kubeflow Pipelines backend.

    Args:
        host: the KFP API endpoint, e.g. ``http://localhost:8080`` (a port-forward of
            ``ml-pipeline-ui``) or the cluster's pipelines URL.
        namespace: the Kubeflow profile namespace (multi-user installs).
        experiment: the experiment to file the run under (created if missing).
        run_name: the run's display name (default: ``cnn-comparison <timestamp>``).
        data_uri, models, profile, overrides, seed, tensorboard_root: the run's
            parameters (see :func:`pipeline_arguments`).
        image, gpu_image, placement: compile-time settings (see :func:`compile_pipeline`).
        pipeline_root: where the backend stores artifacts (default: the backend's).
        output_uri: ``gs://bucket/prefix`` to export the report, models and TensorBoard
            logs to, and to keep training checkpoints in (so a retried pod resumes).

    Returns:
        The run's ID and URL.

    Raises:
        CnnzooError: bad arguments, or the backend could not be reached or refused the run.
    """
    import kfp

    from cnnzoo.placement import Placement, load_placement

    if not re.match(r"^https?://", host):
        raise CnnzooError(f"--host {host!r}: expected an http:// or https:// URL")
    if not isinstance(placement, Placement):
        placement = load_placement(placement)
    arguments = pipeline_arguments(
        data_uri,
        models,
        profile,
        overrides,
        seed,
        tensorboard_root,
        local=False,
        output_uri=output_uri,
    )
    run_name = run_name or f"cnn-comparison {datetime.datetime.now():%Y-%m-%d %H:%M:%S}"
    with tempfile.TemporaryDirectory(prefix="cnnzoo-submit-") as tmp:
        package = compile_pipeline(Path(tmp) / "cnn_comparison.yaml", image, gpu_image, placement)
        try:
            with warnings.catch_warnings():
                # "This client only works with Kubeflow Pipeline v2.0.0-beta.2 and later"
                warnings.filterwarnings("ignore", category=FutureWarning, module="kfp.client")
                client = kfp.Client(host=host, namespace=namespace)
            result = client.create_run_from_pipeline_package(
                str(package),
                arguments=arguments,
                run_name=run_name,
                experiment_name=experiment,
                namespace=namespace,
                pipeline_root=pipeline_root,
                service_account=placement.service_account,
            )
        except Exception as e:  # the client raises urllib3/ApiException types
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise CnnzooError(f"submitting to {host} failed: {first}") from None
    run_id = result.run_id
    return SubmittedRun(run_id, f"{host.rstrip('/')}/#/runs/details/{run_id}", experiment)


__all__ = [
    "DEFAULT_IMAGE",
    "DEFAULT_GPU_IMAGE",
    "build",
    "compile_pipeline",
    "pipeline_arguments",
    "run_local",
    "run_pipeline_locally",
    "submit",
    "LocalRun",
    "SubmittedRun",
]
