"""TensorBoard: the HParams records of a run, and serving a run's logs locally.

Training writes Keras TensorBoard logs under one root per run, one subfolder per
configuration (``<root>/<model>/``, two-stage: ``<root>/<model>/stage1``, ``stage2``).
:func:`log_hparams` adds the HParams plugin's session to a configuration's folder and
:func:`write_hparams_config` declares the columns once at the root, so one TensorBoard
over the root compares all fourteen, in the HParams dashboard too.
:func:`start_tensorboard` serves a local folder (``cnnzoo tensorboard`` mirrors a
``gs://`` root into one first). There is no KFP UI viewer to feed: KFP v2's UI does not
read ``mlpipeline-ui-metadata`` (kubeflow/pipelines#6912); on a cluster the run's
Kubeflow ``Tensorboard`` (:mod:`cnnzoo.tensorboard.resource`) is the one-click way.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cnnzoo.core.errors import CnnzooError

# The hyperparameters each configuration records (train passes these keys).
HPARAM_KEYS = (
    "model",
    "strategy",
    "base",
    "learning_rate",
    "img_size",
    "batch_size",
    "precision",
)
# Final metrics written as scalars beside the session (tag = metric name).
METRIC_KEYS = ("best_val_accuracy", "best_val_loss", "epochs_run")


def _hparam_value(key: str, value: Any) -> bool | int | float | str:
    import numpy as np

    if value is None:
        return "none"
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value)
    raise CnnzooError(f"hparams[{key!r}]: unsupported value {value!r} (bool, number or string)")


def log_hparams(
    log_dir: str | os.PathLike, hparams: dict[str, Any], metrics: dict[str, Any]
) -> None:
    """Record one configuration's hyperparameters and final metrics for the HParams dashboard.

    Writes an HParams session (``hp.hparams``) into ``log_dir`` and each metric as a
    scalar at step 0 with the metric's name as tag. Call it on the configuration's
    logs folder (``<root>/<model>/``); the Keras callback's ``train``/``validation``
    scalars below it become further metric columns of the same session.

    Args:
        log_dir: the configuration's TensorBoard folder (created if missing).
        hparams: name -> bool/int/float/str (None becomes ``"none"``); the session is
            named after ``hparams["model"]`` when given.
        metrics: name -> number (e.g. best_val_accuracy, best_val_loss, epochs_run).

    Raises:
        CnnzooError: a hyperparameter value that is not a scalar, or a metric that is
            not a number.
    """
    import tensorflow as tf
    from tensorboard.plugins.hparams import api as hp

    values = {str(k): _hparam_value(str(k), v) for k, v in hparams.items()}
    scalars = {}
    for k, v in metrics.items():
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            try:
                v = float(v)
            except (TypeError, ValueError):
                raise CnnzooError(f"metrics[{k!r}]: must be a number, got {v!r}") from None
        scalars[str(k)] = float(v)
    tf.io.gfile.makedirs(str(log_dir))  # also gs:// and other TensorFlow filesystems
    writer = tf.summary.create_file_writer(str(log_dir))
    try:
        with writer.as_default():
            trial = values.get("model")
            hp.hparams(values, trial_id=str(trial) if trial is not None else None)
            for tag, v in scalars.items():
                tf.summary.scalar(tag, v, step=0)
        writer.flush()
    finally:
        writer.close()


def write_hparams_config(logs_root: str | os.PathLike) -> None:
    """Declare the experiment's hyperparameters and metrics once, at the logs root.

    Without it the HParams dashboard infers both from the sessions it has found so far.
    With it, the dashboard lists the hyperparameters in a fixed order with their domains
    and shows the chosen metrics (final metrics, validation/train epoch accuracy and
    loss). The report step calls it on the run's logs root, once the models are trained.

    Args:
        logs_root: the run's TensorBoard root (holding one folder per configuration), a
            local folder or ``gs://bucket/prefix`` (written locally, then uploaded with
            the project's Cloud Storage client, like the training logs).

    Raises:
        CnnzooError: a ``gs://`` upload failed.
    """
    from cnnzoo.storage.gcs import is_gcs, upload_tree
    from cnnzoo.storage.tfrecord import write_event_file

    if is_gcs(str(logs_root)):
        with tempfile.TemporaryDirectory(prefix="cnnzoo-hparams-") as tmp:
            write_hparams_config(tmp)
            upload_tree(tmp, str(logs_root).rstrip("/"))
        return
    # summary_v2, not hparams.api: the api module imports Keras (and so TensorFlow), and
    # the report step writes this file without either (cnnzoo.storage.tfrecord).
    from tensorboard.plugins.hparams import summary_v2 as hp

    from cnnzoo.config.profile import PRECISIONS
    from cnnzoo.models.registry import BASES, STRATEGIES, list_models

    params = [
        hp.HParam("model", hp.Discrete(list_models())),
        hp.HParam("strategy", hp.Discrete(list(STRATEGIES))),
        hp.HParam("base", hp.Discrete(["none", *BASES])),
        hp.HParam("learning_rate", hp.RealInterval(1e-7, 1.0)),
        hp.HParam("img_size", hp.IntInterval(32, 4096)),
        hp.HParam("batch_size", hp.IntInterval(1, 65536)),
        hp.HParam("precision", hp.Discrete(list(PRECISIONS))),
    ]
    metrics = [
        hp.Metric("best_val_accuracy", display_name="best val accuracy"),
        hp.Metric("best_val_loss", display_name="best val loss"),
        hp.Metric("epochs_run", display_name="epochs run"),
        hp.Metric("epoch_accuracy", group="validation", display_name="val accuracy (last)"),
        hp.Metric("epoch_loss", group="validation", display_name="val loss (last)"),
        hp.Metric("epoch_accuracy", group="train", display_name="train accuracy (last)"),
    ]
    summary = hp.hparams_config_pb(hparams=params, metrics=metrics)
    write_event_file(logs_root, [summary.SerializeToString()])


def tensorboard_access(context: dict[str, Any]) -> list[tuple[str, str, str]]:
    """How to open a run's TensorBoard, as the report states it.

    Args:
        context: the report's run context; reads ``tensorboard_root`` (the logs root)
            and ``tensorboard_cr`` (the run's Kubeflow ``Tensorboard``: a
            :meth:`cnnzoo.tensorboard.resource.TensorboardRef.to_dict`, or ``{"error": ...}``
            when the pipeline step could not create it).

    Returns:
        ``(label, text, command)`` per line; ``command`` is "" when there is none.
    """
    lines = []
    root = context.get("tensorboard_root")
    if root:
        lines.append(
            ("TensorBoard logs", f"{root}; serve them locally with", f"cnnzoo tensorboard {root}")
        )
    board = context.get("tensorboard_cr") or {}
    if board.get("error"):
        lines.append(("Kubeflow Tensorboard", f"not created: {board['error']}", ""))
    elif board.get("name"):
        lines.append(
            (
                "Kubeflow Tensorboard",
                f"{board['name']} in namespace {board['namespace']}: Central Dashboard → "
                f"Tensorboards → CONNECT (path {board['dashboard_path']}), or run "
                "this and open http://127.0.0.1:6006/:",
                board["port_forward"],
            )
        )
    return lines


def tensorboard_markdown(context: dict[str, Any]) -> str:
    """:func:`tensorboard_access` as a Markdown section ("" when there is nothing to say)."""
    lines = tensorboard_access(context)
    if not lines:
        return ""
    items = [f"- **{label}**: {text}" + (f" `{cmd}`" if cmd else "") for label, text, cmd in lines]
    return "\n## TensorBoard\n\n" + "\n".join(items) + "\n"


def has_event_files(logdir: str | os.PathLike) -> bool:
    """Whether any TensorBoard event file lies under ``logdir``."""
    return any(Path(logdir).rglob("events.out.tfevents.*"))


def resolve_logdir(run: str | os.PathLike | None = None) -> Path:
    """The TensorBoard folder of a local run.

    Args:
        run: a run folder (its ``tensorboard/`` subfolder is used when present) or a
            logs folder; default ``runs/latest``.

    Returns:
        The folder to give TensorBoard.

    Raises:
        CnnzooError: the folder does not exist.
    """
    path = Path(run) if run else Path("runs") / "latest"
    if not path.exists():
        hint = " (no local run yet: run 'make run' first)" if not run else ""
        raise CnnzooError(f"{path}: no such run or logs folder{hint}")
    if not path.is_dir():
        raise CnnzooError(f"{path}: not a folder")
    tb = path / "tensorboard"
    return (tb if tb.is_dir() else path).resolve()


def _free_port(host: str, preferred: int = 0) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((host, preferred))
        except OSError:
            s.bind((host, 0))
        return s.getsockname()[1]


@dataclass
class TensorBoardServer:
    """A TensorBoard subprocess started by :func:`start_tensorboard`."""

    process: subprocess.Popen
    url: str
    logdir: Path
    log_path: Path

    def stop(self, timeout: float = 10.0) -> None:
        """Terminate TensorBoard (kill it if it does not exit in ``timeout`` s)."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        with contextlib.suppress(FileNotFoundError):
            self.log_path.unlink()

    def wait(self) -> int:
        """Block until TensorBoard exits; its exit status."""
        return self.process.wait()


def start_tensorboard(
    logdir: str | os.PathLike,
    port: int | None = None,
    host: str = "127.0.0.1",
    wait_s: float = 90.0,
) -> TensorBoardServer:
    """Start TensorBoard on ``logdir`` and wait until it answers.

    Args:
        logdir: the logs folder.
        port: TCP port; None: 6006 if free, else any free port; 0: any free port.
        host: interface to bind (loopback by default; TensorBoard has no auth).
        wait_s: how long to wait for the server to answer.

    Returns:
        The running :class:`TensorBoardServer` (call ``stop()`` when done).

    Raises:
        CnnzooError: ``logdir`` is missing, or TensorBoard exits or does not answer in
            time (the message carries the end of its log).
    """
    logdir = Path(logdir)
    if not logdir.is_dir():
        raise CnnzooError(f"{logdir}: TensorBoard logs folder does not exist")
    if port is None:
        port = _free_port(host, preferred=6006)
    elif port == 0:
        port = _free_port(host)
    fd, log_name = tempfile.mkstemp(prefix="cnnzoo-tensorboard-", suffix=".log")
    log_path = Path(log_name)
    cmd = [
        sys.executable,
        "-m",
        "tensorboard.main",
        "--logdir",
        str(logdir),
        "--host",
        host,
        "--port",
        str(port),
        "--reload_interval",
        "15",
    ]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    with os.fdopen(fd, "wb") as log:
        proc = subprocess.Popen(
            cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env
        )
    server = TensorBoardServer(proc, f"http://{host}:{port}/", logdir, log_path)
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = _tail(log_path)
            server.stop()
            raise CnnzooError(f"TensorBoard exited with status {proc.returncode}: {tail}")
        try:
            with urllib.request.urlopen(server.url, timeout=2) as resp:
                if resp.status == 200:
                    return server
        except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
            pass
        time.sleep(0.3)
    tail = _tail(log_path)
    server.stop()
    raise CnnzooError(f"TensorBoard did not answer at {server.url} within {wait_s:.0f} s: {tail}")


def _tail(path: Path, lines: int = 3) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace").strip().splitlines()
    except OSError:
        return "(no log)"
    return " | ".join(text[-lines:]) or "(no output)"
