"""Following a cluster run: ``cnnzoo submit --wait`` and ``cnnzoo status`` against a
loopback KFP API whose run changes state between reads."""

from __future__ import annotations

import pytest
from kfp_fixtures import AuthProxy, FakeKfpFollow, task_detail

from cnnzoo.cli.main import main

IMAGES = ["--image", "registry.test/cnnzoo:t9", "--gpu-image", "registry.test/cnnzoo-gpu:t9"]
STUDY = ["--models", "simple,mid", "--output", "gs://bkt/out", "--poll", "0.01"]


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch, tmp_path):
    for var in ("CNNZOO_KFP_TOKEN", "CNNZOO_KFP_COOKIES"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("KF_PIPELINES_SA_TOKEN_PATH", str(tmp_path / "no-sa-token"))


def _dags():
    """The DAG tasks around the steps: the loop, its two iterations, each one's model DAG."""
    return [
        task_detail("loop", "for-loop-2", "RUNNING"),
        task_detail("it0", "iteration-0", "RUNNING", parent="loop"),
        task_detail("it1", "iteration-1", "RUNNING", parent="loop"),
        task_detail("m0", "model", "RUNNING", parent="it0"),
        task_detail("m1", "model", "RUNNING", parent="it1"),
    ]


def _script(mid_fails=False):
    ingest_done = task_detail("ing", "ingest", "SUCCEEDED", start=0, end=42)
    first = [task_detail("ing", "ingest", "RUNNING", start=0), *_dags()]
    second = [
        ingest_done,
        *_dags(),
        task_detail("t0", "train", "RUNNING", parent="m0", start=50),
        task_detail("t1", "train", "RUNNING", parent="m1", start=50),
    ]
    mid = (
        task_detail("t1", "train", "FAILED", parent="m1", start=50, end=80, error="OOMKilled")
        if mid_fails
        else task_detail("t1", "train", "SUCCEEDED", parent="m1", start=50, end=170)
    )
    last = [
        ingest_done,
        *_dags(),
        task_detail("t0", "train", "SUCCEEDED", parent="m0", start=50, end=110),
        mid,
    ]
    if not mid_fails:
        last.append(task_detail("rep", "report", "SUCCEEDED", start=200, end=215))
    final = "FAILED" if mid_fails else "SUCCEEDED"
    # the second snapshot is read twice: a task whose state did not change prints nothing
    return [("RUNNING", first), ("RUNNING", second), ("RUNNING", second), (final, last)]


def test_submit_wait_follows_the_run_and_names_the_report(capsys):
    with FakeKfpFollow(_script()) as server:
        rc = main(["submit", "--host", server.url, *IMAGES, *STUDY, "--wait"])
    out = capsys.readouterr().out.splitlines()
    assert rc == 0
    start = out.index("run url: " + f"{server.url}/#/runs/details/run-1234") + 1
    assert out[start:] == [
        "  ingest: RUNNING",
        "  ingest: SUCCEEDED (42 s)",
        "  train simple: RUNNING",
        "  train mid: RUNNING",
        "  train simple: SUCCEEDED (60 s)",
        "  train mid: SUCCEEDED (120 s)",
        "  report: SUCCEEDED (15 s)",
        "run run-1234: SUCCEEDED",
        "report: gs://bkt/out/report/report.html",
    ]
    assert server.reads == 4


def test_submit_wait_fails_naming_the_failed_task(capsys):
    with FakeKfpFollow(_script(mid_fails=True)) as server:
        rc = main(["submit", "--host", server.url, *IMAGES, *STUDY, "--wait"])
    captured = capsys.readouterr()
    assert rc == 1
    assert "  train mid: FAILED (30 s): OOMKilled" in captured.out.splitlines()
    assert captured.err == "error: run run-1234 FAILED: task train mid failed: OOMKilled\n"


def test_status_prints_the_same_summary_for_any_run(capsys):
    params = {"models": ["simple", "mid"], "repeats": 1, "output_uri": ""}
    done = _script()[-1]
    with FakeKfpFollow([done], parameters=params) as server:
        assert main(["status", "run-1234", "--host", server.url]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "run run-1234: SUCCEEDED",
        "  ingest: SUCCEEDED (42 s)",
        "  train simple: SUCCEEDED (60 s)",
        "  train mid: SUCCEEDED (120 s)",
        "  report: SUCCEEDED (15 s)",
        "report: the report task's 'comparison' artifact (KFP UI: the run's report step)",
    ]
    failed = _script(mid_fails=True)[-1]
    with FakeKfpFollow([failed], parameters=params) as server:
        assert main(["status", "run-1234", "--host", server.url]) == 1
        assert main(["status", "run-other", "--host", server.url]) == 1
    err = capsys.readouterr().err.splitlines()
    assert err == [
        "error: run run-1234 FAILED: task train mid failed: OOMKilled",
        f"error: run run-other: no such run on {server.url}",
    ]


def test_repeats_name_each_training_run(capsys):
    params = {"models": ["simple"], "repeats": 2, "output_uri": ""}
    tasks = [
        task_detail("it0", "iteration-0", "SUCCEEDED"),
        task_detail("it1", "iteration-1", "SUCCEEDED"),
        task_detail("t0", "train", "SUCCEEDED", parent="it0", start=0, end=5),
        task_detail("t1", "train", "RUNNING", parent="it1", start=0),
    ]
    with FakeKfpFollow([("RUNNING", tasks)], parameters=params) as server:
        assert main(["status", "run-1234", "--host", server.url]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "run run-1234: RUNNING",
        "  train simple: SUCCEEDED (5 s)",
        "  train simple #2: RUNNING",
    ]


def test_status_sends_the_token(capsys):
    params = {"models": ["simple"], "repeats": 1, "output_uri": ""}
    inner = FakeKfpFollow([("RUNNING", [])], parameters=params)
    with AuthProxy(inner, "tok-123", "c") as proxy:
        assert main(["status", "run-1234", "--host", proxy.url]) == 1
        assert "--token" in capsys.readouterr().err
        assert main(["status", "run-1234", "--host", proxy.url, "--token", "tok-123"]) == 0
    assert capsys.readouterr().out == "run run-1234: RUNNING\n"
    assert inner.reads == 1
