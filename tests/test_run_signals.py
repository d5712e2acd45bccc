"""``run.json`` ends with a final status however a local ``cnnzoo run`` ends.

Success and a failing task are covered by tests/test_pipeline_local.py; here a real
``cnnzoo run`` subprocess is stopped with SIGINT (Ctrl-C) and with SIGTERM while a step
runs, and must leave ``status: interrupted`` (never ``running``), stop the task
processes it started, and exit with status 130.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest


def _wait_for(predicate, timeout_s: float, what: str):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def _run_json(runs: Path) -> dict | None:
    path = runs / "latest" / "run.json"
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def _processes_mentioning(text: str) -> list[int]:
    """PIDs whose command line mentions ``text`` (Linux /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if text in cmdline:
            found.append(int(entry.name))
    return found


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_interrupted_run_records_its_final_status(tmp_path, tiny_raw_dataset, sig):
    runs = tmp_path / "runs"
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""}
    proc = subprocess.Popen(
        [sys.executable, "-m", "cnnzoo.cli.main", "run", "--data", str(tiny_raw_dataset)]
        + ["--models", "simple", "--out", str(runs), "--set", "max_epochs=50"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        record = _wait_for(lambda: _run_json(runs), 120, "run.json")
        assert record["status"] == "running"
        run_dir = Path(record["run_dir"])
        # wait until a step's task process is running, then stop the run
        _wait_for(lambda: _processes_mentioning(str(run_dir / "kfp")), 180, "a task process")
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 130, (out, err)
    assert err.strip().splitlines()[-1] == "error: interrupted"
    assert "Traceback" not in err
    record = json.loads((run_dir / "run.json").read_text())
    assert record["status"] == "interrupted"
    assert record["signal"] == sig.name
    assert record["finished"] and "report" not in record
    # the session and the task processes it started are gone
    _wait_for(lambda: not _processes_mentioning(str(run_dir)), 30, "task processes to end")
