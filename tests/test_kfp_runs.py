"""A cluster run's logs root through the KFP API, and ``cnnzoo tensorboard`` argument errors."""

from __future__ import annotations

import pytest
from helpers import cli_error
from kfp_fixtures import FakeKfpRuns

from cnnzoo.core.errors import CnnzooError
from cnnzoo.orchestration.kfp_runs import get_run_parameters, run_logs_root_from_kfp

RUNS = {
    "run-out": {"output_uri": "gs://bkt/studies/one", "tensorboard_root": "", "seed": 42},
    "run-tb": {"output_uri": "gs://bkt/studies/two", "tensorboard_root": "gs://bkt/tb/two/"},
    "run-none": {"output_uri": "", "tensorboard_root": ""},
}


@pytest.fixture
def kfp_runs():
    with FakeKfpRuns(RUNS) as server:
        yield server


def test_logs_root_from_the_runs_parameters(kfp_runs):
    assert run_logs_root_from_kfp("run-out", kfp_runs.url) == "gs://bkt/studies/one/tensorboard"
    assert run_logs_root_from_kfp("run-tb", kfp_runs.url) == "gs://bkt/tb/two"
    assert get_run_parameters("run-out", kfp_runs.url)["seed"] == 42
    assert ("GET", "/apis/v2beta1/runs/run-out") in kfp_runs.calls()


@pytest.mark.parametrize(
    "run_id, message",
    [
        ("run-none", "run run-none: it ran without --output or --tensorboard-root"),
        ("run-gone", "run run-gone: no such run on http://127.0.0.1:"),
    ],
)
def test_runs_without_logs_are_named(kfp_runs, run_id, message):
    with pytest.raises(CnnzooError, match=message):
        run_logs_root_from_kfp(run_id, kfp_runs.url)


def test_unreachable_and_bad_hosts():
    with FakeKfpRuns() as server:
        url = server.url
    with pytest.raises(CnnzooError, match=f"reading run r1 from {url} failed"):
        get_run_parameters("r1", url)
    with pytest.raises(CnnzooError, match="--host 'localhost:8080': expected an http"):
        get_run_parameters("r1", "localhost:8080")


def test_cli_errors_are_one_line(kfp_runs, capsys, tmp_path):
    base = ["tensorboard", "--port", "0"]
    line = cli_error(capsys, [*base, "run-none", "--host", kfp_runs.url])
    assert line.startswith("error: run run-none: it ran without --output")
    line = cli_error(capsys, [*base, "--host", kfp_runs.url])
    assert line == "error: tensorboard --host: give the cluster run's ID (and no --output)"
    line = cli_error(capsys, [*base, "runs/x", "--output", "gs://bkt/out"])
    assert line == "error: tensorboard: give either RUN or --output, not both"
    line = cli_error(capsys, [*base, "pvc://cnnzoo-tensorboard-logs/run1"])
    assert line.startswith("error: pvc://cnnzoo-tensorboard-logs/run1: logs on a cluster volume")
    line = cli_error(capsys, [*base, "--output", str(tmp_path / "nothing")])
    assert line == f"error: {tmp_path / 'nothing' / 'tensorboard'}: no such run or logs folder"
    line = cli_error(capsys, [*base, "--sync-interval", "0", "gs://bkt/tb"])
    assert line == "error: --sync-interval: must be positive, got 0"
