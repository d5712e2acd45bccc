"""The whole pipeline under the KFP local runner (SubprocessRunner) on tiny generated data.

The two full runs are slow (minutes on 2 CPU cores) and run in CI: one from the compiled
YAML loaded back as a component, one of the pipeline function with all fourteen model
configurations at the smallest sizes they allow.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from cnnzoo.cli import main
from cnnzoo.models import get_spec, list_models
from cnnzoo.pipeline_runner import compile_pipeline, pipeline_arguments, run_pipeline_locally
from cnnzoo.placement import load_placement

# One epoch per stage, tiny batches: the smallest run every configuration allows.
TINY = ["max_epochs=1", "batch_size=8", "eval_batch_size=16"]


def _evaluations(run_root: Path) -> dict[str, dict]:
    """The evaluate steps' JSON outputs in a local run, by model."""
    found = {}
    for path in run_root.glob("**/evaluate/evaluation"):
        data = json.loads(path.read_text())
        found[data["model"]] = data
    return found


def _histories(run_root: Path) -> dict[str, dict]:
    found = {}
    for path in run_root.glob("**/train*/model/history.json"):
        data = json.loads(path.read_text())
        found[data["model"]] = {"history": data, "dir": path.parent}
    return found


@pytest.mark.slow
def test_compiled_yaml_runs_under_the_local_runner(tmp_path, tiny_raw_dataset):
    from kfp import components

    # retries off: a failure here should fail fast, not back off for minutes
    placement = load_placement().without_retries()
    package = compile_pipeline(tmp_path / "cnn_comparison.yaml", placement=placement)
    pipeline = components.load_component_from_file(str(package))
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    args = pipeline_arguments(str(tiny_raw_dataset), ["simple", "mid"], "demo", TINY)
    report_dir = run_pipeline_locally(pipeline, args, run_dir, console=open(os.devnull, "w"))

    evaluations = _evaluations(run_dir / "kfp")
    assert sorted(evaluations) == ["mid", "simple"]
    assert all(e["status"] == "ok" for e in evaluations.values())
    comparison = json.loads((report_dir / "comparison.json").read_text())
    assert sorted(r["model"] for r in comparison["rows"]) == ["mid", "simple"]
    assert (report_dir / "report.html").read_text().count("<html") == 1
    # TensorBoard logs stayed inside the train artifacts (no root given)
    assert list(run_dir.glob("kfp/**/train*/tensorboard/simple"))


@pytest.mark.slow
def test_all_fourteen_configurations_end_to_end(tmp_path, tiny_raw_dataset, capsys):
    runs = tmp_path / "runs"
    rc = main(
        ["run", "--data", str(tiny_raw_dataset), "--out", str(runs), "--seed", "3"]
        + [x for o in TINY for x in ("--set", o)]
    )
    out = capsys.readouterr().out
    assert rc == 0, out
    last = out.strip().splitlines()[-1]
    assert last.startswith("report: ")
    report_html = Path(last[len("report: ") :])
    assert report_html.is_absolute() and report_html.is_file()

    run_dir = (runs / "latest").resolve()
    assert report_html.is_relative_to(run_dir)
    record = json.loads((run_dir / "run.json").read_text())
    assert record["status"] == "succeeded"
    assert record["arguments"]["models"] == list_models()
    assert record["arguments"]["seed"] == 3

    trained = _histories(run_dir / "kfp")
    assert sorted(trained) == sorted(list_models())
    for name, t in trained.items():
        assert t["history"]["status"] == "ok", (name, t["history"].get("error"))
        assert (t["dir"] / "model.keras").is_file(), name
        assert (t["dir"] / "config.yaml").is_file(), name
        assert (run_dir / "tensorboard" / name).is_dir(), name

    evaluations = _evaluations(run_dir / "kfp")
    assert sorted(evaluations) == sorted(list_models())
    assert all(e["status"] == "ok" for e in evaluations.values())

    comparison = json.loads((report_html.parent / "comparison.json").read_text())
    assert sorted(r["model"] for r in comparison["rows"]) == sorted(list_models())
    assert comparison["failed"] == []
    html = report_html.read_text()
    assert all(name in html for name in list_models())
    # progress: one line per step start and finish, not the runner's raw log
    for name in list_models():
        assert f"train {name}: started" in out and f"evaluate {name} done" in out
    assert "executor_input" not in out
    assert "executor_input" in (run_dir / "run.log").read_text()


def test_failed_task_is_reported_with_its_name(tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    runs = tmp_path / "runs"
    rc = main(["run", "--data", str(empty), "--models", "simple", "--out", str(runs)])
    captured = capsys.readouterr()
    assert rc == 1
    assert captured.err.startswith("error: pipeline failed in task 'ingest'")
    assert "run.log" in captured.err
    record = json.loads((runs / "latest" / "run.json").read_text())
    assert record["status"] == "failed"
    assert "report: " not in captured.out


_BIGGEST_MIN = max(get_spec(m).min_img_size for m in list_models())
_FIRST_BIGGEST = next(m for m in list_models() if get_spec(m).min_img_size == _BIGGEST_MIN)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--models", "simple,alexnet"], "unknown model configuration 'alexnet'"),
        (["--models", "simple,simple"], "listed more than once: simple"),
        (["--models", ","], "--models"),
        (["--profile", "tiny"], "unknown profile 'tiny'"),
        (["--set", f"img_size={_BIGGEST_MIN - 1}"], f"too small for {_FIRST_BIGGEST}"),
        (["--set", "nonsense=1"], "nonsense"),
        (["--data", "/no/such/folder"], "/no/such/folder"),
    ],
)
def test_run_rejects_bad_arguments_before_starting(tmp_path, capsys, args, message):
    runs = tmp_path / "runs"
    rc = main(["run", "--out", str(runs), *args])
    err = capsys.readouterr().err
    assert rc == 1
    assert err.startswith("error: ") and message in err
    assert not runs.exists()
