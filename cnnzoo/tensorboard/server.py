"""Serving a run's TensorBoard logs locally (``cnnzoo tensorboard``).

:func:`start_tensorboard` serves a local folder (``cnnzoo tensorboard`` mirrors a
``gs://`` root into one first, :class:`cnnzoo.storage.logsync.LogSync`).
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

from cnnzoo.core.errors import CnnzooError
from cnnzoo.storage.layout import LATEST_RUN, RUN_TENSORBOARD, RUNS_DIR


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
    path = Path(run) if run else Path(RUNS_DIR) / LATEST_RUN
    if not path.exists():
        hint = " (no local run yet: run 'make run' first)" if not run else ""
        raise CnnzooError(f"{path}: no such run or logs folder{hint}")
    if not path.is_dir():
        raise CnnzooError(f"{path}: not a folder")
    tb = path / RUN_TENSORBOARD
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
