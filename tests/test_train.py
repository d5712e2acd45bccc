"""Tests of cnnzoo.training.train on the tiny 72 px split: outputs, best model, stages, failures."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import yaml
from helpers import cli_error, notebook_profile

from cnnzoo.cli.main import main
from cnnzoo.config.profile import profile_from_dict
from cnnzoo.core.errors import CnnzooError
from cnnzoo.data.loader import load_split, read_split_info
from cnnzoo.storage.local import output_kind, write_marker
from cnnzoo.training.train import train_model


def _profile(*overrides):
    return notebook_profile(["batch_size=8", "max_epochs=1", *overrides])


def _scalar_steps(run_dir, tag):
    """Steps at which ``tag`` was logged in the TensorBoard run folder ``run_dir``."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run_dir))
    acc.Reload()
    if tag not in acc.Tags()["tensors"]:
        return []
    return [e.step for e in acc.Tensors(tag)]


def _check_epoch(rec):
    for key in ("loss", "val_loss", "learning_rate", "time_s"):
        assert math.isfinite(rec[key]) and rec[key] >= 0, (key, rec)
    for key in ("accuracy", "val_accuracy"):
        assert 0.0 <= rec[key] <= 1.0, (key, rec)


@pytest.mark.parametrize("name", ["simple", "mid"])
def test_train_writes_model_history_config_and_logs(tiny_split, tmp_path, name):
    import keras

    out = tmp_path / "out"
    out.mkdir()  # KFP hands over an existing empty folder
    hist = train_model(name, tiny_split, out, _profile())
    info = read_split_info(tiny_split)

    assert sorted(p.name for p in out.iterdir()) == [
        ".cnnzoo.json",  # the ownership marker
        "config.yaml",
        "history.json",
        "logs",
        "model.keras",
    ]
    assert json.loads((out / "history.json").read_text()) == hist
    assert hist["status"] == "ok" and hist["model"] == name and hist["weights"] == "random"
    assert hist["epochs_run"] == 1 == len(hist["epochs"])
    assert hist["replicas"] == 1  # no MirroredStrategy on a machine without several GPUs
    assert 50 < hist["peak_memory_mb"] < 24 * 1024  # TensorFlow alone takes > 50 MiB
    rec = hist["epochs"][0]
    assert (rec["epoch"], rec["stage"]) == (1, 1)
    assert rec["learning_rate"] == pytest.approx(1e-3)
    _check_epoch(rec)
    assert hist["best_val_loss"] == rec["val_loss"]
    assert hist["best_val_accuracy"] == rec["val_accuracy"]
    assert hist["train_time_s"] > 0
    assert hist["images_per_s"] == pytest.approx(
        info["splits"]["train"]["count"] / hist["train_time_s"], rel=0.01
    )

    config = yaml.safe_load((out / "config.yaml").read_text())
    assert config["model"] == name and config["strategy"] == "scratch"
    assert config["split"]["ingest_manifest_sha256"] == info["ingest_manifest_sha256"]
    assert config["split"]["classes"] == info["classes"]
    assert profile_from_dict(config["profile"]).batch_size == 8

    model = keras.models.load_model(out / "model.keras")
    assert model.count_params() == hist["total_params"] == hist["trainable_params"]
    x, _ = next(iter(load_split(tiny_split, "test", batch_size=4)))
    probs = np.asarray(model.predict_on_batch(x))
    assert probs.shape == (4, len(info["classes"]))
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)

    logs = out / "logs" / name
    assert _scalar_steps(logs / "train", "epoch_loss") == [0]
    assert _scalar_steps(logs / "train", "epoch_learning_rate") == [0]
    assert _scalar_steps(logs / "validation", "epoch_loss") == [0]
    # the HParams session with the run's final metrics sits beside train/ and validation/
    assert _scalar_steps(logs, "best_val_accuracy") == [0]
    assert _scalar_steps(logs, "epochs_run") == [0]


def _script_val_loss(values):
    """train_model callbacks making ``values[epoch]`` each epoch's val_loss, and the
    snapshots of each epoch's weights they fill in.

    Extra callbacks run before train_model's own and rewrite the epoch's logs (the
    same dict goes to every callback), so which epoch is best is fixed by the test, not
    by the numerics of a tiny run.
    """
    import keras

    snapshots = {}

    class Scripted(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            logs["val_loss"] = values[epoch]
            snapshots[epoch + 1] = [w.numpy() for w in self.model.weights]

    return [Scripted()], snapshots


def _same_weights(model, snapshot):
    return all(np.array_equal(w.numpy(), v) for w, v in zip(model.weights, snapshot, strict=True))


def test_saved_model_is_the_best_val_loss_epoch(tiny_split, tmp_path, monkeypatch):
    import keras

    scripted, snapshots = _script_val_loss([1.0, 0.5, 0.7])
    stale = tmp_path / "tb" / "simple" / "train" / "events.out.tfevents.stale"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"")
    write_marker(tmp_path / "tb" / "simple", "tensorboard")  # an earlier run's logs
    profile = _profile("max_epochs=3")
    hist = train_model(
        "simple", tiny_split, tmp_path / "out", profile, f"{tmp_path}/tb/", callbacks=scripted
    )
    assert [e["val_loss"] for e in hist["epochs"]] == [1.0, 0.5, 0.7]
    assert (hist["best_epoch"], hist["best_val_loss"]) == (2, 0.5)

    model = keras.models.load_model(tmp_path / "out" / "model.keras")
    assert _same_weights(model, snapshots[2])
    assert not _same_weights(model, snapshots[3])
    assert _scalar_steps(tmp_path / "tb" / "simple" / "train", "epoch_loss") == [0, 1, 2]
    assert not stale.exists()  # a rerun replaces the configuration's old logs
    assert not (tmp_path / "out" / "logs").exists()


@pytest.mark.slow
def test_two_stage_finetune(tiny_split, tmp_path, monkeypatch):
    import keras

    # stage 2 ends worse than stage 1: the saved model must be stage 1's
    scripted, snapshots = _script_val_loss([1.0, 2.0])
    out = tmp_path / "out"
    hist = train_model("mobilenetv2_finetune", tiny_split, out, _profile(), callbacks=scripted)
    assert hist["status"] == "ok" and hist["weights"] == "random"
    assert [(e["epoch"], e["stage"]) for e in hist["epochs"]] == [(1, 1), (2, 2)]
    assert [e["learning_rate"] for e in hist["epochs"]] == pytest.approx([1e-3, 1e-5])
    for rec in hist["epochs"]:
        _check_epoch(rec)
    assert hist["epochs_run"] == 2
    assert (hist["best_epoch"], hist["best_val_loss"]) == (1, 1.0)
    model = keras.models.load_model(out / "model.keras")
    assert _same_weights(model, snapshots[1]) and not _same_weights(model, snapshots[2])
    # stage 2 trains the whole model except the base's BatchNorm layers
    assert 0 < hist["trainable_params"] < hist["total_params"]
    logs = out / "logs" / "mobilenetv2_finetune"
    assert _scalar_steps(logs / "stage1" / "train", "epoch_loss") == [0]
    assert _scalar_steps(logs / "stage2" / "train", "epoch_loss") == [1]
    assert _scalar_steps(logs / "stage2" / "validation", "epoch_loss") == [1]


def test_training_crash_is_recorded_as_failed(tiny_split, tmp_path):
    import keras

    class Boom(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            raise RuntimeError("boom\nsecond line")

    out = tmp_path / "out"
    out.mkdir()
    write_marker(out, "train")  # an earlier run's output
    (out / "model.keras").write_bytes(b"stale model from an earlier run")
    hist = train_model("simple", tiny_split, out, _profile(), callbacks=[Boom()])
    assert hist["status"] == "failed"
    assert hist["error"] == "RuntimeError: boom"
    assert json.loads((out / "history.json").read_text()) == hist
    assert not (out / "model.keras").exists()
    assert (out / "config.yaml").is_file()


def test_mixed_precision_restores_policy(tiny_split, tmp_path):
    import keras

    before = keras.mixed_precision.global_policy().name
    hist = train_model("simple", tiny_split, tmp_path, _profile("precision=mixed_bfloat16"))
    assert hist["status"] == "ok"
    assert keras.mixed_precision.global_policy().name == before
    model = keras.models.load_model(tmp_path / "model.keras")
    assert model.get_layer("conv1").dtype_policy.name == "mixed_bfloat16"
    assert keras.backend.standardize_dtype(model.outputs[0].dtype) == "float32"


def test_bad_input_raises(tiny_split, tmp_path):
    with pytest.raises(CnnzooError, match=r"img_size is 72 but profile 'full' has img_size 64"):
        train_model("simple", tiny_split, tmp_path / "a", _profile("img_size=64"))
    with pytest.raises(CnnzooError, match="unknown model configuration 'nope'"):
        train_model("nope", tiny_split, tmp_path / "b", _profile())
    with pytest.raises(CnnzooError, match="split.json: file not found"):
        train_model("simple", tmp_path, tmp_path / "c", _profile())
    assert not (tmp_path / "a").exists()


def test_strategy_is_single_device_without_several_gpus():
    """One device here: training must not wrap itself in a MirroredStrategy."""
    import tensorflow as tf

    from cnnzoo.training.train import distribution_strategy

    strategy = distribution_strategy()
    assert not isinstance(strategy, tf.distribute.MirroredStrategy)
    assert len(tf.config.list_logical_devices("GPU")) <= 1
    assert strategy.num_replicas_in_sync == 1


def test_logs_folder_of_the_user_is_refused_unless_overwrite(tiny_split, tmp_path, capsys):
    # `--logs DIR` follows the ownership rule: DIR/<model> holding files cnnzoo did not
    # write is refused with one line and left as it was; --overwrite takes it.
    mine = tmp_path / "tb" / "simple"
    (mine / "sub").mkdir(parents=True)
    (mine / "thesis.txt").write_text("four years")
    args = ["train", "simple", str(tiny_split), str(tmp_path / "out"), "--profile", "full"]
    args += ["--set", "img_size=72", "--set", "weights=null", "--set", "max_epochs=1"]
    args += ["--logs", str(tmp_path / "tb")]
    line = cli_error(capsys, args)
    assert line == (
        f"error: {mine}: exists and is not a cnnzoo tensorboard output; "
        "choose another folder or pass --overwrite"
    )
    assert sorted(p.name for p in mine.iterdir()) == ["sub", "thesis.txt"]
    assert not (tmp_path / "out").exists()  # refused before anything was written

    assert main([*args, "--overwrite"]) == 0
    assert not (mine / "thesis.txt").exists()
    assert output_kind(mine) == "tensorboard" and (mine / "train").is_dir()
    assert main(args) == 0  # its own logs now: replaced without --overwrite


def test_parts_that_would_take_training_over_its_budget_are_streamed(tiny_split, tmp_path, capsys):
    cached = train_model(
        "simple", tiny_split, tmp_path / "cached", _profile("cache_budget_mb=1000000")
    )
    assert "streamed from its shards" not in capsys.readouterr().out
    streamed = train_model(
        "simple", tiny_split, tmp_path / "streamed", _profile("cache_budget_mb=0")
    )
    out = capsys.readouterr().out
    for part in ("train", "val"):
        assert (
            f"data: {part} streamed from its shards every epoch (cached it would take this "
            "process over cache_budget_mb 0)"
        ) in out
    # Streaming reads the same seeded epochs: the same training, epoch for epoch.
    assert [e["loss"] for e in streamed["epochs"]] == [e["loss"] for e in cached["epochs"]]
