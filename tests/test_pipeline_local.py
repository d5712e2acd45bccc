"""The whole pipeline under the KFP local runner (SubprocessRunner) on tiny generated data.

The full runs are slow (minutes on 2 CPU cores) and run in CI: one of the compiled
package with two models on two node pools (placed by the plan step, one train task in
the loop, kfp.local as kfp ships it), one through ``cnnzoo run`` with all fourteen model
configurations at the smallest sizes they allow, and two one-model runs exporting to an
output location (a local folder, and a bucket on the Cloud Storage emulator). The train
component is also called directly, to show a retry resuming from the output location.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from cnnzoo.cli.main import main
from cnnzoo.models.registry import get_spec, list_models
from cnnzoo.orchestration.cluster import compile_pipeline
from cnnzoo.orchestration.local_run import run_pipeline_locally
from cnnzoo.orchestration.study import Study, profile_json

REPORT_FILES = [
    "comparison.csv",
    "comparison.json",
    "report.html",
    "report.md",
    "run-manifest.json",
]

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


# Two GPU pools, written here: `simple` on one, `mid` on the other (kfp.local ignores
# the resources, but the plan and the one train task of the loop serve both).
TWO_POOLS = """
parallelism: 2
retries: {count: 0}
pools:
  big: {accelerator: nvidia.com/gpu, accelerator_type: nvidia-l4, cpu: "8", memory: 32G}
  small: {accelerator: nvidia.com/gpu, accelerator_type: nvidia-tesla-t4, cpu: "4", memory: 16G}
  cpu: {cpu: "2", memory: 8G}
steps: {ingest: cpu, split: cpu, report: cpu, evaluate: small}
default_model_pool: big
model_pools: {simple: small}
"""


@pytest.mark.slow
def test_two_models_on_two_pools_under_the_real_local_runner(tmp_path, tiny_raw_dataset):
    import kfp.local

    cluster = tmp_path / "cluster.yaml"
    cluster.write_text(TWO_POOLS)
    package = compile_pipeline(tmp_path / "cnn_comparison.yaml", placement=cluster)
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    args = Study(str(tiny_raw_dataset), ("simple", "mid"), "demo", TINY).arguments(local=True)
    with open(os.devnull, "w") as devnull:
        report_dir = run_pipeline_locally(package, args, run_dir, console=devnull)

    evaluations = _evaluations(run_dir / "kfp")
    assert sorted(evaluations) == ["mid", "simple"]
    assert all(e["status"] == "ok" for e in evaluations.values())
    comparison = json.loads((report_dir / "comparison.json").read_text())
    assert sorted(r["model"] for r in comparison["rows"]) == ["mid", "simple"]
    assert (report_dir / "report.html").read_text().count("<html") == 1
    # the plan step placed each model on its pool
    log = (run_dir / "run.log").read_text()
    assert "plan simple: pool small" in log and "plan mid: pool big" in log
    # TensorBoard logs stayed inside the train artifacts (no root given)
    assert list(run_dir.glob("kfp/**/train*/tensorboard/simple"))
    # nothing in this process was patched: kfp.local is as kfp ships it
    from kfp.local.orchestrator import orchestrator_utils

    assert not hasattr(orchestrator_utils.OrchestratorUtils, "_cnnzoo_oneof")
    assert kfp.local.SubprocessRunner.__module__.startswith("kfp.local")


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
    assert record["study"]["seed"] == 3
    assert json.loads(record["arguments"]["profile"])["seed"] == 3

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
    # Random-weight backbones are pipeline checks, apart from the ranked custom CNNs.
    ranked = [r["model"] for r in comparison["rows"]]
    checks = [r["model"] for r in comparison["pipeline_checks"]]
    assert sorted(ranked) == sorted(m for m in list_models() if get_spec(m).base is None)
    assert sorted(ranked + checks) == sorted(list_models())
    assert comparison["failed"] == []
    html = report_html.read_text()
    assert all(name in html for name in list_models())
    # progress: one line per step start and finish, not the runner's raw log
    for name in list_models():
        assert f"train {name}: started" in out and f"evaluate {name} done" in out
        assert f"train {name}: epoch 1/" in out
    assert "Ranking by test accuracy" in out
    assert "Pipeline check: random weights (not ranked, 9):" in out
    assert "executor_input" not in out
    assert "executor_input" in (run_dir / "run.log").read_text()


def _tiny_run_args(data: Path, runs: Path, output: str) -> list[str]:
    return ["run", "--data", str(data), "--models", "simple", "--out", str(runs)] + [
        *("--output", output),
        *[x for o in TINY for x in ("--set", o)],
    ]


@pytest.mark.slow
def test_run_exports_report_models_and_logs_to_a_local_output(tmp_path, tiny_raw_dataset, capsys):
    runs, output = tmp_path / "runs", tmp_path / "study"
    rc = main(_tiny_run_args(tiny_raw_dataset, runs, str(output)))
    out = capsys.readouterr().out
    assert rc == 0, out
    assert f"exported to: {output}" in out
    run_dir = (runs / "latest").resolve()
    assert json.loads((run_dir / "run.json").read_text())["arguments"]["output_uri"] == str(output)

    assert sorted(p.name for p in (output / "report").iterdir()) == sorted(
        [".cnnzoo.json", *REPORT_FILES]  # the report files and the export's ownership marker
    )
    report_dir = Path(out.strip().splitlines()[-1][len("report: ") :]).parent
    assert (output / "report" / "comparison.json").read_bytes() == (
        report_dir / "comparison.json"
    ).read_bytes()
    model = output / "models" / "simple"
    assert {"model.keras", "config.yaml", "history.json"} <= {p.name for p in model.iterdir()}
    assert json.loads((model / "history.json").read_text())["status"] == "ok"
    # no tensorboard_root given: the logs went to the output location, not the run folder
    assert list((output / "tensorboard" / "simple").rglob("events.out.tfevents.*"))
    assert not (run_dir / "tensorboard").exists()
    assert str(output / "tensorboard") in (output / "report" / "report.html").read_text()
    # the report step declared the HParams columns once, at the logs root
    assert len(list((output / "tensorboard").glob("events.out.tfevents.*"))) == 1
    assert (
        f"cnnzoo tensorboard {output / 'tensorboard'}"
        in (output / "report" / "report.md").read_text()
    )
    # the checkpoint lived in the output location and was removed after success
    assert not (output / "checkpoints" / "simple").exists()
    assert "model exported to" in out and "report exported to" in out
    # run.json names the report step's run manifest; `cnnzoo report` rebuilds from it.
    record = json.loads((run_dir / "run.json").read_text())
    manifest = json.loads((run_dir / record["manifest"]).read_text())
    assert (run_dir / record["manifest"]).parent == report_dir
    assert sorted(manifest["artifacts"]["evaluations"]) == ["simple"]
    listed = report_dir / manifest["artifacts"]["evaluations"]["simple"]["path"]
    assert json.loads(listed.read_text())["schema_version"] == 1
    assert (report_dir / manifest["artifacts"]["splits"]["path"] / "split.json").is_file()
    assert main(["report", str(run_dir), "--out", str(tmp_path / "rebuilt")]) == 0
    rebuilt = json.loads((tmp_path / "rebuilt" / "comparison.json").read_text())
    assert rebuilt == json.loads((report_dir / "comparison.json").read_text())


@pytest.mark.slow
def test_run_exports_to_cloud_storage(tmp_path, tiny_raw_dataset, capsys, gcs_emulator):
    # The runner's task subprocesses inherit STORAGE_EMULATOR_HOST from this process.
    bucket = gcs_emulator.new_bucket("out")
    rc = main(_tiny_run_args(tiny_raw_dataset, tmp_path / "runs", f"gs://{bucket}/study/"))
    out = capsys.readouterr().out
    assert rc == 0, out
    objects = gcs_emulator.objects(bucket)
    assert sorted(k for k in objects if k.startswith("study/report/")) == sorted(
        f"study/report/{name}" for name in [".cnnzoo.json", *REPORT_FILES]
    )
    assert json.loads(objects["study/report/.cnnzoo.json"])["state"] == "complete"
    comparison = json.loads(objects["study/report/comparison.json"])
    assert [r["model"] for r in comparison["rows"]] == ["simple"]
    assert json.loads(objects["study/models/simple/history.json"])["status"] == "ok"
    assert objects["study/models/simple/model.keras"]
    assert any(k.startswith("study/tensorboard/simple/") and "tfevents" in k for k in objects)
    # the HParams columns, declared once by the report step at the root
    assert len([k for k in objects if k.startswith("study/tensorboard/events.out.")]) == 1
    assert not [k for k in objects if k.startswith("study/checkpoints/")]


def test_train_component_retry_resumes_from_the_output_location(
    tiny_split, tmp_path, monkeypatch, capsys
):
    """A retried pod gets a fresh model path; the checkpoint under output_uri survives."""
    import keras
    from kfp import dsl

    import cnnzoo.training.train
    from cnnzoo.components.train import train
    from cnnzoo.config.profile import load_profile
    from cnnzoo.data.loader import read_split_info

    class Preempted(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            if epoch == 1:  # epoch 1's checkpoint is written by then
                raise RuntimeError("node lost after epoch 1")

    output = tmp_path / "study"
    overrides = [f"img_size={read_split_info(tiny_split)['img_size']}", "batch_size=8"]
    profile = profile_json(load_profile("demo", [*overrides, "max_epochs=2", "seed=1"]))

    def attempt(n: int) -> dsl.Model:
        model = dsl.Model(uri=str(tmp_path / f"attempt{n}" / "model"))
        train(
            model_name="simple",
            splits=dsl.Dataset(uri=str(tiny_split)),
            profile=profile,
            tensorboard_root="",
            output_uri=str(output),
            model=model,
            tensorboard=dsl.Artifact(uri=str(tmp_path / f"attempt{n}" / "tensorboard")),
        )
        return model

    # The component calls cnnzoo.training.train.train_model; its callbacks hook adds the preemption.
    real_train = cnnzoo.training.train.train_model
    with monkeypatch.context() as m:
        m.setattr(
            cnnzoo.training.train,
            "train_model",
            lambda *a, **kw: real_train(*a, **kw, callbacks=[Preempted()]),
        )
        first = attempt(1)
    assert first.metadata["status"] == "failed"
    checkpoint = output / "checkpoints" / "simple"
    assert (checkpoint / "latest.json").is_file()
    assert not (tmp_path / "attempt1" / "model" / "checkpoint").exists()
    capsys.readouterr()

    second = attempt(2)
    assert "resuming simple from epoch 2 (stage 1)" in capsys.readouterr().out
    assert second.metadata["status"] == "ok" and second.metadata["epochs_run"] == 2
    assert not checkpoint.exists()
    history = json.loads((output / "models" / "simple" / "history.json").read_text())
    assert [e["epoch"] for e in history["epochs"]] == [1, 2]  # the export is the retry's
    assert (output / "models" / "simple" / "model.keras").is_file()
    assert second.metadata["exported"] == str(output / "models" / "simple")


@pytest.mark.parametrize(
    "output, message",
    [
        ("s3://bucket/out", "expected a local folder or gs://bucket/prefix"),
        ("gs://", "--output gs://: no bucket name"),
    ],
)
def test_run_rejects_a_bad_output_location(tmp_path, capsys, output, message):
    runs = tmp_path / "runs"
    rc = main(["run", "--out", str(runs), "--output", output])
    err = capsys.readouterr().err
    assert rc == 1
    assert err.startswith("error: ") and message in err
    assert not runs.exists()


def test_run_rejects_an_output_that_is_a_file(tmp_path, capsys):
    (tmp_path / "taken").write_text("")
    rc = main(["run", "--out", str(tmp_path / "runs"), "--output", str(tmp_path / "taken")])
    assert rc == 1
    assert "is not a folder" in capsys.readouterr().err


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


@pytest.mark.slow
def test_values_edited_in_the_ui_win_over_the_compiled_in_profile(tmp_path, tiny_raw_dataset):
    """A run started from the UI: typed parameters changed, ``profile`` left as compiled."""
    import yaml

    from cnnzoo.storage.layout import CONFIG_FILE

    package = compile_pipeline(tmp_path / "p.yaml")
    args = Study(str(tiny_raw_dataset), ("simple",), "demo", TINY).arguments(local=True)
    assert (args["batch_size"], args["img_size"], args["seed"]) == (8, 72, 42)
    edited = dict(args, batch_size=4, img_size=64, seed=5)  # as typed into the KFP UI
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    with open(os.devnull, "w") as devnull:
        run_pipeline_locally(package, edited, run_dir, console=devnull)
    (config,) = run_dir.glob(f"kfp/**/train*/model/{CONFIG_FILE}")
    saved = yaml.safe_load(config.read_text())
    assert (saved["profile"]["batch_size"], saved["profile"]["seed"]) == (4, 5)
    assert saved["split"]["img_size"] == 64 == saved["profile"]["img_size"]
    assert saved["profile"]["max_epochs"] == 1  # the rest of the compiled-in profile kept
    assert "profile demo: batch_size=4 (run parameter)" in (run_dir / "run.log").read_text()

    # a bad value fails the resolve-profile step with the --set line, before any training
    bad_dir = tmp_path / "bad"
    bad_dir.mkdir()
    with open(os.devnull, "w") as devnull, pytest.raises(Exception) as failed:
        run_pipeline_locally(package, dict(args, batch_size=0), bad_dir, console=devnull)
    assert "resolve-profile" in str(failed.value)
    log = (bad_dir / "run.log").read_text()
    assert "--set batch_size=0: batch_size must be >= 1, got 0" in log
    assert not list(bad_dir.glob("kfp/**/train/model"))
