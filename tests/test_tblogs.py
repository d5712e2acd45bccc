"""TensorBoard logs of a tiny training run, read back with TensorBoard's own readers.

Two configurations are logged the way training does it: one single-stage
(``<root>/simple``) and one two-stage (``<root>/xception_finetune/stage1``, ``stage2``),
each with :func:`cnnzoo.tensorboard.hparams.log_hparams` on its folder. Then TensorBoard's event
multiplexer must find the per-epoch scalars, and a real TensorBoard server started by
``cnnzoo tensorboard`` must tabulate one HParams session per configuration — from a
local folder, and from ``gs://`` (the emulator) for a cluster run found by its ID through
a loopback KFP API.
"""

from __future__ import annotations

import json
import os
import select
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
from kfp_fixtures import FakeKfpRuns

from cnnzoo.core.errors import CnnzooError
from cnnzoo.models.registry import list_models
from cnnzoo.storage.logsync import LogSync
from cnnzoo.tensorboard.access import tensorboard_access, tensorboard_markdown
from cnnzoo.tensorboard.hparams import HPARAM_KEYS, log_hparams, write_hparams_config
from cnnzoo.tensorboard.resource import TensorboardRef
from cnnzoo.tensorboard.server import resolve_logdir

CONFIGS = {
    # name: (strategy, base, learning rate, stages, final metrics)
    "simple": ("scratch", None, 1e-3, ["."], {"best_val_accuracy": 0.625, "epochs_run": 2}),
    "xception_finetune": (
        "finetune",
        "xception",
        1e-5,
        ["stage1", "stage2"],
        {"best_val_accuracy": 0.75, "epochs_run": 4},
    ),
}


def _fit(log_dir: Path, lr: float, initial_epoch: int) -> None:
    import keras
    import numpy as np

    rng = np.random.default_rng(0)
    x = rng.random((32, 6, 6, 3), dtype="float32")
    y = rng.integers(0, 2, 32)
    model = keras.Sequential(
        [
            keras.Input((6, 6, 3)),
            keras.layers.Flatten(),
            keras.layers.Dense(4, activation="relu"),
            keras.layers.Dense(2, activation="softmax"),
        ]
    )
    model.compile(
        keras.optimizers.Adam(lr), "sparse_categorical_crossentropy", metrics=["accuracy"]
    )
    model.fit(
        x,
        y,
        validation_data=(x, y),
        batch_size=16,
        epochs=initial_epoch + 2,
        initial_epoch=initial_epoch,
        verbose=0,
        callbacks=[keras.callbacks.TensorBoard(str(log_dir), write_graph=False)],
    )


@pytest.fixture(scope="module")
def logs_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("tensorboard")
    for name, (strategy, base, lr, stages, metrics) in CONFIGS.items():
        for i, stage in enumerate(stages):
            _fit(root / name / stage, lr, initial_epoch=2 * i)
        hparams = {
            "model": name,
            "strategy": strategy,
            "base": base,
            "learning_rate": lr,
            "img_size": 6,
            "batch_size": 16,
            "precision": "float32",
        }
        log_hparams(root / name, hparams, dict(metrics, best_val_loss=0.5))
    return root


def _multiplexer(root: Path):
    from tensorboard.backend.event_processing import plugin_event_multiplexer as pem

    mx = pem.EventMultiplexer()
    mx.AddRunsFromDirectory(str(root))
    mx.Reload()
    return mx


def test_epoch_scalars_are_readable(logs_root):
    import tensorflow as tf

    mx = _multiplexer(logs_root)
    runs = mx.Runs()
    expected_runs = {
        "simple/train": [0, 1],
        "simple/validation": [0, 1],
        "xception_finetune/stage1/train": [0, 1],
        "xception_finetune/stage1/validation": [0, 1],
        "xception_finetune/stage2/train": [2, 3],
        "xception_finetune/stage2/validation": [2, 3],
    }
    for run, steps in expected_runs.items():
        assert run in runs, sorted(runs)
        tags = set(runs[run]["tensors"])
        wanted = {"epoch_loss", "epoch_accuracy"}
        if run.endswith("/train"):
            wanted.add("epoch_learning_rate")
        assert wanted <= tags, (run, tags)
        for tag in wanted:
            events = mx.Tensors(run, tag)
            assert [e.step for e in events] == steps, (run, tag)
            values = [float(tf.make_ndarray(e.tensor_proto)) for e in events]
            assert all(v == v for v in values)  # no NaN
        if run.endswith("/train"):
            lr = float(tf.make_ndarray(mx.Tensors(run, "epoch_learning_rate")[0].tensor_proto))
            name = run.split("/")[0]
            assert lr == pytest.approx(CONFIGS[name][2], rel=1e-5)


def test_one_hparams_session_per_configuration(logs_root):
    from tensorboard.plugins.hparams import metadata

    mx = _multiplexer(logs_root)
    content = mx.PluginRunToTagToContent("hparams")
    sessions = {
        run: metadata.parse_session_start_info_plugin_data(tags[metadata.SESSION_START_INFO_TAG])
        for run, tags in content.items()
        if metadata.SESSION_START_INFO_TAG in tags
    }
    assert set(sessions) == set(CONFIGS)
    for run, info in sessions.items():
        strategy, base, lr, _, metrics = CONFIGS[run]
        hp = info.hparams
        assert set(hp) == set(HPARAM_KEYS)
        assert hp["model"].string_value == run
        assert hp["strategy"].string_value == strategy
        assert hp["base"].string_value == (base or "none")
        assert hp["learning_rate"].number_value == lr
        assert info.group_name == run
        final = {t: mx.Tensors(run, t) for t in ("best_val_accuracy", "best_val_loss")}
        import tensorflow as tf

        value = float(tf.make_ndarray(final["best_val_accuracy"][0].tensor_proto))
        assert value == pytest.approx(metrics["best_val_accuracy"])


def test_hparams_config_declares_the_hyperparameters(tmp_path):
    from tensorboard.plugins.hparams import metadata

    write_hparams_config(tmp_path)
    content = _multiplexer(tmp_path).PluginRunToTagToContent("hparams")
    experiment = metadata.parse_experiment_plugin_data(content["."][metadata.EXPERIMENT_TAG])
    assert [h.name for h in experiment.hparam_infos] == list(HPARAM_KEYS)

    domain = experiment.hparam_infos[0].domain_discrete.values
    assert sorted(v.string_value for v in domain) == sorted(list_models())
    tags = {(m.name.group, m.name.tag) for m in experiment.metric_infos}
    assert ("", "best_val_accuracy") in tags and ("validation", "epoch_accuracy") in tags


def test_log_hparams_rejects_bad_values(tmp_path):
    with pytest.raises(CnnzooError, match=r"hparams\['layers'\]"):
        log_hparams(tmp_path, {"layers": {"a": 1}}, {})
    with pytest.raises(CnnzooError, match=r"metrics\['best_val_accuracy'\]"):
        log_hparams(tmp_path, {"model": "x"}, {"best_val_accuracy": "high"})


def test_the_report_says_how_to_open_the_runs_tensorboard(tmp_path):
    from cnnzoo.reporting.report import build_report

    board = TensorboardRef("cnnzoo-run-7", "team-vision", "created").to_dict()
    context = {"tensorboard_root": "gs://bkt/one/tensorboard", "tensorboard_cr": board}
    assert tensorboard_access(context) == [
        (
            "TensorBoard logs",
            "gs://bkt/one/tensorboard; serve them locally with",
            "cnnzoo tensorboard gs://bkt/one/tensorboard",
        ),
        (
            "Kubeflow Tensorboard",
            "cnnzoo-run-7 in namespace team-vision: Central Dashboard → Tensorboards → "
            "CONNECT (path /tensorboard/team-vision/cnnzoo-run-7/), or run this and open "
            "http://127.0.0.1:6006/:",
            "kubectl -n team-vision port-forward svc/cnnzoo-run-7 6006:80",
        ),
    ]
    failed = {"model": "simple", "strategy": "scratch", "status": "failed", "error": "boom"}
    paths = build_report([failed], tmp_path, context=context)
    md = Path(paths["markdown"]).read_text(encoding="utf-8")
    assert md.endswith(tensorboard_markdown(context))
    assert "- **Kubeflow Tensorboard**: cnnzoo-run-7 in namespace team-vision" in md
    assert "`kubectl -n team-vision port-forward svc/cnnzoo-run-7 6006:80`" in md
    page = Path(paths["html"]).read_text(encoding="utf-8")
    assert "<code>cnnzoo tensorboard gs://bkt/one/tensorboard</code>" in page
    assert "/tensorboard/team-vision/cnnzoo-run-7/" in page
    error = {"tensorboard_cr": {"error": "Kubernetes API: creating ... 403 Forbidden"}}
    assert tensorboard_access(error) == [
        ("Kubeflow Tensorboard", "not created: Kubernetes API: creating ... 403 Forbidden", "")
    ]
    assert tensorboard_markdown({}) == ""


def test_resolve_logdir(tmp_path, monkeypatch):
    run = tmp_path / "runs" / "20260101-000000"
    (run / "tensorboard").mkdir(parents=True)
    assert resolve_logdir(run) == (run / "tensorboard").resolve()
    assert resolve_logdir(run / "tensorboard") == (run / "tensorboard").resolve()
    monkeypatch.chdir(tmp_path)
    with pytest.raises(CnnzooError, match="make run"):
        resolve_logdir(None)  # no runs/latest yet
    os.symlink(run.name, tmp_path / "runs" / "latest")
    assert resolve_logdir(None) == (run / "tensorboard").resolve()
    with pytest.raises(CnnzooError, match="nope: no such run or logs folder"):
        resolve_logdir(tmp_path / "nope")


_MAIN = "import sys; from cnnzoo.cli.main import main; sys.exit(main(sys.argv[1:]))"


def _post(url: str, body: dict) -> dict:
    req = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.load(r)


def test_cnnzoo_tensorboard_serves_the_hparams_comparison(logs_root):
    proc = subprocess.Popen(
        [sys.executable, "-c", _MAIN, "tensorboard", str(logs_root), "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        ready, _, _ = select.select([proc.stdout], [], [], 120)
        assert ready, "cnnzoo tensorboard printed no URL within 120 s"
        line = proc.stdout.readline()
        if not line:
            raise AssertionError(f"cnnzoo tensorboard exited: {proc.stderr.read()[-1000:]}")
        assert line.startswith("TensorBoard: http://127.0.0.1:"), line
        url = line.split()[1]
        deadline = time.monotonic() + 60
        while True:
            with urllib.request.urlopen(url + "data/runs", timeout=10) as r:
                runs = json.load(r)
            if {"simple", "xception_finetune/stage2/validation"} <= set(runs):
                break
            assert time.monotonic() < deadline, f"runs not loaded: {runs}"
            time.sleep(0.5)
        groups = _post(
            url + "data/plugin/hparams/session_groups",
            {
                "experimentName": "",
                "allowedStatuses": ["STATUS_UNKNOWN", "STATUS_SUCCESS"],
                "colParams": [],
                "startIndex": 0,
                "sliceSize": 100,
            },
        )["sessionGroups"]
        assert sorted(g["name"] for g in groups) == sorted(CONFIGS)
        for g in groups:
            assert g["hparams"]["model"] == g["name"]
            best = {
                m["name"]["tag"]: m["value"] for m in g["metricValues"] if not m["name"]["group"]
            }
            assert best["best_val_accuracy"] == pytest.approx(
                CONFIGS[g["name"]][4]["best_val_accuracy"]
            )
        port = int(url.rstrip("/").rsplit(":", 1)[1])
        proc.send_signal(signal.SIGINT)
        assert proc.wait(30) == 0
        with pytest.raises(OSError), socket.create_connection(("127.0.0.1", port), timeout=2):
            pass  # TensorBoard is gone with the command
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
        proc.stderr.close()


# --- logs on Cloud Storage (the emulator) --------------------------------------------------


def test_log_mirror_follows_growing_event_files(gcs_emulator, tmp_path):
    bucket = gcs_emulator.client().bucket(gcs_emulator.new_bucket("mirror"))
    event = "tb/simple/train/events.out.tfevents.1"
    bucket.blob(event).upload_from_string(b"abc")
    bucket.blob("tb/simple/LOGS_AT.txt").upload_from_string(b"one")
    local = tmp_path / "cache"
    mirror = LogSync(f"gs://{bucket.name}/tb", local, interval_s=0.2)
    assert mirror.sync() == 2
    assert mirror.sync() == 0
    path = local / "simple" / "train" / "events.out.tfevents.1"
    inode = path.stat().st_ino
    with path.open("rb") as reader:  # as TensorBoard holds an event file open
        assert reader.read() == b"abc"
        bucket.blob(event).upload_from_string(b"abcdef")  # LogSync re-uploads it whole
        bucket.blob("tb/simple/LOGS_AT.txt").upload_from_string(b"two")
        bucket.blob("tb/mid/train/events.out.tfevents.2").upload_from_string(b"new")
        with mirror:  # the background thread picks the changes up
            deadline = time.monotonic() + 30
            while not (local / "mid" / "train" / "events.out.tfevents.2").exists():
                assert time.monotonic() < deadline, "the mirror did not re-sync"
                time.sleep(0.1)
            while (local / "simple" / "LOGS_AT.txt").read_bytes() != b"two":
                assert time.monotonic() < deadline, "a rewritten file was not replaced"
                time.sleep(0.1)
        assert reader.read() == b"def"  # appended in place: the open reader sees it
    assert path.stat().st_ino == inode
    assert mirror.failures == 0
    assert sorted(p.relative_to(local).as_posix() for p in local.rglob("*") if p.is_file()) == [
        "mid/train/events.out.tfevents.2",
        "simple/LOGS_AT.txt",
        "simple/train/events.out.tfevents.1",
    ]


def _get(url: str):
    with urllib.request.urlopen(url, timeout=30) as r:
        return json.load(r)


def test_cnnzoo_tensorboard_serves_a_cluster_runs_gs_logs(logs_root, gcs_emulator):
    """From a run ID to its TensorBoard: the logs root from the KFP API, the logs from gs://."""
    bucket = gcs_emulator.new_bucket("study")
    root = f"gs://{bucket}/studies/one/tensorboard"
    gcs_emulator.upload_folder(logs_root, bucket, "studies/one/tensorboard")
    write_hparams_config(root)  # what the report step does
    at_root = [k for k in gcs_emulator.objects(bucket, "studies/one/tensorboard/events")]
    assert len(at_root) == 1, at_root
    params = {"output_uri": f"gs://{bucket}/studies/one", "tensorboard_root": ""}
    with FakeKfpRuns({"run-42": params}) as kfp:
        proc = subprocess.Popen(
            [sys.executable, "-c", _MAIN, "tensorboard", "run-42", "--host", kfp.url]
            + ["--port", "0", "--sync-interval", "1"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )  # the emulator's address reaches it through STORAGE_EMULATOR_HOST
        try:
            ready, _, _ = select.select([proc.stdout], [], [], 120)
            assert ready, "cnnzoo tensorboard printed no URL within 120 s"
            line = proc.stdout.readline()
            if not line:
                raise AssertionError(f"cnnzoo tensorboard exited: {proc.stderr.read()[-1000:]}")
            assert line.startswith("TensorBoard: http://127.0.0.1:"), line
            assert f"(logs: {root}, re-synced every 1 s)" in line, line
            url = line.split()[1]
            every_run = {
                "simple/train",
                "simple/validation",
                "xception_finetune/stage1/train",
                "xception_finetune/stage2/validation",
            }
            deadline = time.monotonic() + 60
            while not every_run <= set(_get(url + "data/runs")):
                assert time.monotonic() < deadline, _get(url + "data/runs")
                time.sleep(0.5)
            for run in every_run:
                query = urllib.parse.urlencode({"run": run, "tag": "epoch_loss"})
                points = _get(f"{url}data/plugin/scalars/scalars?{query}")
                steps = [2, 3] if "stage2" in run else [0, 1]
                assert [p[1] for p in points] == steps, (run, points)
            experiment = _post(url + "data/plugin/hparams/experiment", {"experimentName": ""})
            # the declared columns (TensorBoard sorts them), not ones inferred from 2 sessions
            infos = {h["name"]: h for h in experiment["hparamInfos"]}
            assert sorted(infos) == sorted(HPARAM_KEYS)
            assert sorted(infos["model"]["domainDiscrete"]) == sorted(list_models())
            shown = {m.get("displayName") for m in experiment["metricInfos"]}
            assert {"best val accuracy", "val accuracy (last)"} <= shown, shown
            groups = _post(
                url + "data/plugin/hparams/session_groups",
                {
                    "experimentName": "",
                    "allowedStatuses": ["STATUS_UNKNOWN", "STATUS_SUCCESS"],
                    "colParams": [],
                    "startIndex": 0,
                    "sliceSize": 100,
                },
            )["sessionGroups"]
            assert sorted(g["name"] for g in groups) == sorted(CONFIGS)

            # a model that logs after the server started shows up: the mirror re-syncs
            gcs_emulator.upload_folder(logs_root / "simple", bucket, "studies/one/tensorboard/mid")
            deadline = time.monotonic() + 90
            while "mid/train" not in _get(url + "data/runs"):
                assert time.monotonic() < deadline, "a new model's logs never appeared"
                time.sleep(1)
            proc.send_signal(signal.SIGINT)
            assert proc.wait(30) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            proc.stdout.close()
            proc.stderr.close()
    assert ("GET", "/apis/v2beta1/runs/run-42") in kfp.calls()
