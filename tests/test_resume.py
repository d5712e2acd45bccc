"""Training that survives preemption: per-epoch checkpoints and resuming from them.

The central test kills a real ``cnnzoo train`` process with SIGKILL after its second
epoch and runs the same command again. The others crash training in-process (a
callback that raises after an epoch, placed after the checkpoint callback, so the
epoch's checkpoint exists as it would after a kill) and resume it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from helpers import TINY_FULL, notebook_profile

from cnnzoo.core.errors import CnnzooError
from cnnzoo.storage.layout import CHECKPOINT_DIR, CHECKPOINT_POINTER
from cnnzoo.storage.local import MARKER, write_marker
from cnnzoo.training.train import train_model

# ReduceLROnPlateau sees no improvement after epoch 1 (min_delta is huge) and waits 2
# epochs: the rate drops after epoch 3 only if the resumed run kept its counter and best.
SCHEDULE = [
    "batch_size=8",
    "min_delta=100",
    "models.simple.lr_patience=2",
    "models.simple.stop_patience=10",
]
LRS = [1e-3, 1e-3, 1e-3, 2e-4, 2e-4]


def _scalar_steps(run_dir, tag):
    """Steps at which ``tag`` was logged in the TensorBoard run folder ``run_dir``."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run_dir))
    acc.Reload()
    if tag not in acc.Tags()["tensors"]:
        return []
    return [e.step for e in acc.Tensors(tag)]


def _callbacks(*extra, val_losses=None) -> list:
    """train_model's ``callbacks=``: with ``val_losses``, one reporting ``val_losses[epoch]``.

    Extra callbacks run before train_model's own and the logs dict is shared, so the
    scripted val_loss is what is recorded: which epoch is best is fixed by the test, not
    by the numerics of a tiny run.
    """
    import keras

    class Scripted(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            logs["val_loss"] = val_losses[epoch]

    return [*([Scripted()] if val_losses else []), *extra]


def _crash_after(epoch: int):
    """A callback raising as (1-based) ``epoch`` + 1 begins, like a node lost right then.

    Epoch ``epoch``'s checkpoint is written by then (it is saved at that epoch's end).
    """
    import keras

    class Crash(keras.callbacks.Callback):
        def on_epoch_begin(self, e, logs=None):
            if e == epoch:
                raise RuntimeError(f"preempted after epoch {epoch}")

    return Crash()


def _train_count(split_dir) -> int:
    from cnnzoo.data.loader import read_split_info

    return int(read_split_info(split_dir)["splits"]["train"]["count"])


def _pointer(checkpoint_dir):
    return json.loads((checkpoint_dir / CHECKPOINT_POINTER).read_text())


def _saved_arrays(checkpoint_dir, part):
    """The arrays of ``part`` (model, optimizer, best) in the checkpoint."""
    saved = _pointer(checkpoint_dir)
    with np.load(checkpoint_dir / saved["arrays_file"]) as npz:
        return [npz[f"{part}_{i:05d}"] for i in range(saved["counts"][part])]


def _same(arrays, other):
    return all(np.array_equal(a, b) for a, b in zip(arrays, other, strict=True))


def test_resume_restores_weights_optimizer_schedule_and_history(
    tiny_split, tmp_path, monkeypatch, capsys
):
    import keras

    out = tmp_path / "out"
    profile = notebook_profile([*SCHEDULE, "max_epochs=5", "models.simple.stop_patience=2"])
    # Epoch 2, the last one checkpointed, stays the best. Early stopping, if it kept its
    # counter and best, stops after epoch 4; reset on resume, it would run epoch 5.
    val_losses = [1.0, 0.5, 0.7, 0.8, 0.9]
    failed = train_model(
        "simple",
        tiny_split,
        out,
        profile,
        callbacks=_callbacks(_crash_after(2), val_losses=val_losses),
    )
    assert failed["status"] == "failed" and "preempted after epoch 2" in failed["error"]
    ckpt = out / CHECKPOINT_DIR
    saved = _pointer(ckpt)
    assert (saved["epoch"], saved["stage"], saved["stage_done"]) == (2, 1, False)
    assert sorted(p.name for p in ckpt.iterdir()) == [CHECKPOINT_POINTER, "state-epoch0002.npz"]
    assert saved["best_is_last"] and saved["counts"]["best"] == 0  # not saved twice
    saved_weights = _saved_arrays(ckpt, "model")
    capsys.readouterr()

    seen = {}

    class Probe(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            seen["weights"] = [w.numpy() for w in self.model.weights]
            seen["iterations"] = int(self.model.optimizer.iterations.numpy())

    hist = train_model(
        "simple", tiny_split, out, profile, callbacks=_callbacks(Probe(), val_losses=val_losses)
    )
    assert "resuming simple from epoch 3 (stage 1)" in capsys.readouterr().out
    assert hist["status"] == "ok"
    assert [e["epoch"] for e in hist["epochs"]] == [1, 2, 3, 4]
    assert hist["epochs"][:2] == saved["records"]  # epochs 1-2 were not trained again
    assert _same(seen["weights"], saved_weights)
    steps_per_epoch = -(-_train_count(tiny_split) // 8)
    assert seen["iterations"] == 2 * steps_per_epoch  # Adam's step count went on
    assert [e["learning_rate"] for e in hist["epochs"]] == pytest.approx(LRS[:4])
    assert not ckpt.exists()  # removed once model.keras and history.json are written
    assert (hist["best_epoch"], hist["best_val_loss"]) == (2, 0.5)
    assert _same(keras.models.load_model(out / "model.keras").weights, saved_weights)
    for part in ("train", "validation"):
        assert _scalar_steps(out / "logs" / "simple" / part, "epoch_loss") == [0, 1, 2, 3]


def test_checkpoint_of_another_configuration_is_ignored(tiny_split, tmp_path, monkeypatch, capsys):
    out = tmp_path / "out"
    train_model(
        "simple",
        tiny_split,
        out,
        notebook_profile([*SCHEDULE, "max_epochs=2"]),
        callbacks=_callbacks(_crash_after(1)),
    )
    assert _pointer(out / CHECKPOINT_DIR)["epoch"] == 1
    capsys.readouterr()

    other = notebook_profile([*SCHEDULE, "max_epochs=2", "models.simple.learning_rate=0.002"])
    hist = train_model("simple", tiny_split, out, other)
    captured = capsys.readouterr()
    assert "resuming" not in captured.out
    assert (
        f"warning: {out / CHECKPOINT_DIR / CHECKPOINT_POINTER}: checkpoint made for a different "
        "model, profile or split; starting over"
    ) in captured.err
    assert [e["epoch"] for e in hist["epochs"]] == [1, 2]
    assert hist["epochs"][0]["learning_rate"] == pytest.approx(0.002)
    assert not (out / CHECKPOINT_DIR).exists()
    assert _scalar_steps(out / "logs" / "simple" / "train", "epoch_loss") == [0, 1]


def test_unreadable_checkpoint_starts_over(tiny_split, tmp_path, capsys):
    ckpt = tmp_path / "out" / CHECKPOINT_DIR
    ckpt.mkdir(parents=True)
    write_marker(tmp_path / "out", "train")  # an earlier, killed run's output
    (ckpt / CHECKPOINT_POINTER).write_text("{not json")
    hist = train_model(
        "simple", tiny_split, tmp_path / "out", notebook_profile([*SCHEDULE[:1], "max_epochs=2"])
    )
    assert hist["status"] == "ok" and [e["epoch"] for e in hist["epochs"]] == [1, 2]
    assert f"warning: {ckpt / CHECKPOINT_POINTER}: unreadable checkpoint" in capsys.readouterr().err
    assert not ckpt.exists()


def test_checkpoint_and_logs_on_cloud_storage(
    tiny_split, tmp_path, monkeypatch, capsys, gcs_emulator
):
    bucket = gcs_emulator.new_bucket("ckpt")
    ckpt = f"gs://{bucket}/ckpt/r1/simple"
    logs = f"gs://{bucket}/tb/r1"
    client = gcs_emulator.client()
    earlier = client.bucket(bucket)  # an earlier attempt's logs, marked as cnnzoo's
    earlier.blob("tb/r1/simple/train/events.out.tfevents.stale").upload_from_string(b"old")
    earlier.blob(f"tb/r1/simple/{MARKER}").upload_from_string(b'{"kind": "tensorboard"}')
    profile = notebook_profile([*SCHEDULE, "max_epochs=3"])
    train_model(
        "simple",
        tiny_split,
        tmp_path / "a",
        profile,
        logs,
        checkpoint_dir=ckpt,
        callbacks=_callbacks(_crash_after(2)),
    )
    objects = gcs_emulator.objects(bucket)
    assert sorted(k for k in objects if k.startswith("ckpt/")) == [
        "ckpt/r1/simple/latest.json",
        "ckpt/r1/simple/state-epoch0002.npz",
    ]
    assert "tb/r1/simple/train/events.out.tfevents.stale" not in objects  # a fresh start
    saved = json.loads(objects["ckpt/r1/simple/latest.json"])
    capsys.readouterr()

    # A retried pod gets a fresh output folder; the state comes from the bucket.
    hist = train_model(
        "simple", tiny_split, tmp_path / "b", profile, logs + "/", checkpoint_dir=ckpt + "/"
    )
    assert "resuming simple from epoch 3 (stage 1)" in capsys.readouterr().out
    assert [e["epoch"] for e in hist["epochs"]] == [1, 2, 3]
    assert hist["epochs"][:2] == saved["records"]
    objects = gcs_emulator.objects(bucket)
    assert not [k for k in objects if k.startswith("ckpt/")]
    # The logs of both attempts were synced; together they hold each epoch once.
    local = tmp_path / "tb"
    for name, data in objects.items():
        (local / name).parent.mkdir(parents=True, exist_ok=True)
        (local / name).write_bytes(data)
    runs = local / "tb" / "r1" / "simple"
    assert len(list((runs / "train").glob("events.out.tfevents.*"))) == 2
    for part in ("train", "validation"):
        assert _scalar_steps(runs / part, "epoch_loss") == [0, 1, 2]
    assert _scalar_steps(runs, "epochs_run") == [0]  # the HParams session, written at the end


# A `cnnzoo train` (the library call behind it, with the CLI's profile) whose epochs each
# start with a pause, so the test can SIGKILL it after epoch 2's checkpoint is written
# and before epoch 3 ends.
_SLOW_TRAIN = """
import sys, time
import keras
from cnnzoo.config.profile import load_profile
from cnnzoo.training.train import train_model

class Pause(keras.callbacks.Callback):
    def on_epoch_begin(self, epoch, logs=None):
        time.sleep(float(sys.argv[1]))

split, out, *overrides = sys.argv[2:]
train_model("simple", split, out, load_profile("full", overrides), callbacks=[Pause()])
"""


@pytest.mark.slow
def test_sigkilled_training_resumes_where_it_stopped(tiny_split, tmp_path):
    out = tmp_path / "out"
    sets = [*TINY_FULL, *SCHEDULE, "max_epochs=5"]
    args = ["train", "simple", str(tiny_split), str(out), "--profile", "full"]
    for item in sets:
        args += ["--set", item]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "CUDA_VISIBLE_DEVICES": ""}
    pointer = out / CHECKPOINT_DIR / CHECKPOINT_POINTER

    proc = subprocess.Popen(
        [sys.executable, "-c", _SLOW_TRAIN, "2.0", str(tiny_split), str(out), *sets],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 300
        while not (pointer.is_file() and _pointer(pointer.parent)["epoch"] >= 2):
            assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
            assert time.monotonic() < deadline, "epoch 2 never finished"
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait(timeout=60)
        proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL
    killed = _pointer(pointer.parent)
    assert killed["epoch"] == 2
    assert not (out / "history.json").exists() and not (out / "model.keras").exists()

    rerun = subprocess.run(
        [sys.executable, "-m", "cnnzoo.cli.main", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert "resuming simple from epoch 3 (stage 1)" in rerun.stdout
    hist = json.loads((out / "history.json").read_text())
    assert hist["status"] == "ok" and hist["epochs_run"] == 5
    assert [e["epoch"] for e in hist["epochs"]] == [1, 2, 3, 4, 5]  # each epoch once
    assert hist["epochs"][:2] == killed["records"]  # epochs 1-2 kept, not redone
    assert [e["learning_rate"] for e in hist["epochs"]] == pytest.approx(LRS)
    assert (out / "model.keras").is_file() and not (out / CHECKPOINT_DIR).exists()
    for part in ("train", "validation"):
        assert _scalar_steps(out / "logs" / "simple" / part, "epoch_loss") == [0, 1, 2, 3, 4]


@pytest.mark.slow
def test_two_stage_finetune_resumes_in_its_second_stage(tiny_split, tmp_path, monkeypatch, capsys):
    import keras

    name = "mobilenetv2_finetune"
    out = tmp_path / "out"
    profile = notebook_profile(["batch_size=8", "max_epochs=2"])
    val_losses = [1.0, 2.0, 3.0, 4.0]  # epoch 1 is the best: stage 2 must start from it
    crash = _callbacks(_crash_after(2), val_losses=val_losses)  # stage 1 has just finished
    assert train_model(name, tiny_split, out, profile, callbacks=crash)["status"] == "failed"
    saved = _pointer(out / CHECKPOINT_DIR)
    assert (saved["epoch"], saved["stage"], saved["stage_done"]) == (2, 1, True)
    assert (saved["best_epoch"], saved["best_is_last"]) == (1, False)
    best = _saved_arrays(out / CHECKPOINT_DIR, "best")
    assert not _same(best, _saved_arrays(out / CHECKPOINT_DIR, "model"))
    capsys.readouterr()

    seen = {}

    class Probe(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            seen["weights"] = [w.numpy() for w in self.model.weights]
            seen["trainable"] = len(self.model.trainable_weights)

    hist = train_model(
        name, tiny_split, out, profile, callbacks=_callbacks(Probe(), val_losses=val_losses)
    )
    assert f"resuming {name} from epoch 3 (stage 2)" in capsys.readouterr().out
    assert hist["status"] == "ok"
    assert [(e["epoch"], e["stage"]) for e in hist["epochs"]] == [(1, 1), (2, 1), (3, 2), (4, 2)]
    assert hist["epochs"][:2] == saved["records"]
    assert [e["learning_rate"] for e in hist["epochs"]] == pytest.approx([1e-3, 1e-3, 1e-5, 1e-5])
    # stage 2 started from stage 1's best weights, with the whole model trainable
    assert _same(seen["weights"], best)
    assert (hist["best_epoch"], hist["best_val_loss"]) == (1, 1.0)
    assert _same(keras.models.load_model(out / "model.keras").weights, best)
    assert 0 < hist["trainable_params"] < hist["total_params"]
    assert seen["trainable"] > 4  # more than the head's two Dense layers
    logs = out / "logs" / name
    assert _scalar_steps(logs / "stage1" / "train", "epoch_loss") == [0, 1]
    assert _scalar_steps(logs / "stage2" / "train", "epoch_loss") == [2, 3]
    assert not (out / CHECKPOINT_DIR).exists()


def test_gcs_checkpoint_refuses_a_second_writer(gcs_emulator, capsys):
    from gcs_fixtures import precondition_client

    from cnnzoo.training.checkpoint import Checkpoint

    bucket = gcs_emulator.new_bucket("lock")
    client = precondition_client(gcs_emulator, bucket)
    uri = f"gs://{bucket}/ckpt/simple"
    arrays = {"model": [np.arange(3.0)], "optimizer": [], "best": []}
    first, second = Checkpoint(uri, "fp", client), Checkpoint(uri, "fp", client)
    assert first.load() is None and second.load() is None  # both find no checkpoint
    first.save({"epoch": 1}, arrays)
    with pytest.raises(CnnzooError) as e:
        second.save({"epoch": 1}, arrays)  # its pointer write must not win
    assert str(e.value) == (
        f"{uri}/latest.json: another process wrote this checkpoint since this one read it "
        "(two trainings of one model into one checkpoint?); stopping this one"
    )
    first.save({"epoch": 2}, arrays)  # the first writer goes on undisturbed
    state = Checkpoint(uri, "fp", client).load()
    assert state["epoch"] == 2 and np.array_equal(state["arrays"]["model"][0], np.arange(3.0))

    second.remove()  # the loser never deletes the winner's checkpoint
    assert "its checkpoint is kept" in capsys.readouterr().err
    assert f"ckpt/simple/{CHECKPOINT_POINTER}" in gcs_emulator.objects(bucket, "ckpt/")

    # An array file replaced behind the pointer's back is not taken for the pointer's.
    gcs_emulator.client().bucket(bucket).blob("ckpt/simple/state-epoch0002.npz").upload_from_string(
        b"another writer's bytes"
    )
    assert Checkpoint(uri, "fp", client).load() is None
    assert "missing or was replaced" in capsys.readouterr().err
    first.remove()
    assert gcs_emulator.objects(bucket, "ckpt/") == {}


def test_training_stops_when_another_writer_takes_its_gcs_checkpoint(
    tiny_split, tmp_path, monkeypatch, gcs_emulator
):
    import keras
    from gcs_fixtures import precondition_client

    import cnnzoo.training.checkpoint

    bucket = gcs_emulator.new_bucket("lock")
    client = precondition_client(gcs_emulator, bucket)
    monkeypatch.setattr(cnnzoo.training.checkpoint, "gcs_client", lambda uri="gs://": client)
    ckpt = f"gs://{bucket}/ckpt/simple"

    class OtherWriter(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            if epoch == 1:  # another trainer writes the pointer while epoch 2 runs
                gcs_emulator.client().bucket(bucket).blob(
                    f"ckpt/simple/{CHECKPOINT_POINTER}"
                ).upload_from_string(b"{}")

    profile = notebook_profile([*SCHEDULE, "max_epochs=3"])
    with pytest.raises(CnnzooError, match="another process wrote this checkpoint"):
        train_model(
            "simple",
            tiny_split,
            tmp_path / "out",
            profile,
            checkpoint_dir=ckpt,
            callbacks=[OtherWriter()],
        )
    assert not (tmp_path / "out" / "history.json").exists()
    assert gcs_emulator.objects(bucket, f"ckpt/simple/{CHECKPOINT_POINTER}") == {
        f"ckpt/simple/{CHECKPOINT_POINTER}": b"{}"
    }  # the other writer's pointer stands
