"""The demo demonstrates: its profile's knobs, and (slow) five custom CNNs that learn.

The slow test runs what ``make run`` runs for the custom CNNs — the built-in demo data,
the ``demo`` profile, fixed seeds — and asserts that every one reaches twice chance on
the test set. The other tests check the demo profile's mechanisms on the tiny split.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from helpers import notebook_profile

from cnnzoo.config.profile import load_profile
from cnnzoo.data.loader import read_split_info
from cnnzoo.evaluation.evaluate import evaluate_model
from cnnzoo.models.build import build_model, set_batchnorm_momentum
from cnnzoo.reporting.report import build_report
from cnnzoo.training.callbacks import epoch_line
from cnnzoo.training.train import train_model

CUSTOM_CNNS = ("simple", "mid", "resnet", "inception", "resnet_aug")


def test_epoch_line_text():
    record = {
        "epoch": 3,
        "stage": 1,
        "loss": 1.23456,
        "accuracy": 0.45,
        "val_loss": 1.3,
        "val_accuracy": None,
        "time_s": 2.14,
    }
    assert epoch_line("mid", record, 12, staged=False) == (
        "[cnnzoo] train mid: epoch 3/12 loss 1.2346 acc 0.4500 val_loss 1.3000 val_acc n/a (2.1 s)"
    )
    assert epoch_line("xception_finetune", dict(record, stage=2), 4, staged=True).startswith(
        "[cnnzoo] train xception_finetune: epoch 3/4 stage 2 loss 1.2346"
    )


@pytest.mark.parametrize(
    "monitor, best",
    [("val_loss", 2), ("val_accuracy", 4)],  # epoch 3 ties epoch 4 on accuracy, loses on loss
)
def test_checkpoint_monitor_picks_the_best_epoch(monitor, best):
    from types import SimpleNamespace

    from cnnzoo.training.callbacks import is_better

    epochs = [(1.6, 0.2), (1.2, 0.3), (1.9, 0.45), (1.5, 0.45), (None, None)]
    run = SimpleNamespace(
        profile=SimpleNamespace(checkpoint_monitor=monitor), records=[], best_epoch=None
    )
    for i, (loss, acc) in enumerate(epochs, start=1):
        run.records.append({"epoch": i, "val_loss": loss, "val_accuracy": acc})
        if is_better(run.records[-1], run):
            run.best_epoch = i
    assert run.best_epoch == best


def test_batchnorm_momentum_changes_no_parameter_count():
    import keras

    model = build_model("resnet", num_classes=5, img_size=72)
    before = model.count_params()
    set_batchnorm_momentum(model, 0.9)
    bns = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    assert len(bns) == 17 and all(bn.momentum == 0.9 for bn in bns)
    assert model.count_params() == before
    set_batchnorm_momentum(model, None)  # None keeps what is there
    assert all(bn.momentum == 0.9 for bn in bns)


def _eagerness():
    """A train_model callback list and the ``run_eagerly`` it saw at each fit's start."""
    import keras

    seen = []

    class Eagerness(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            seen.append(self.model.run_eagerly)

    return [Eagerness()], seen


def test_random_weight_backbone_trains_only_the_capped_steps(tiny_split, tmp_path, capsys):
    # 30 training images at batch 2 would be 15 steps an epoch; the cap makes it 2.
    profile = notebook_profile(["batch_size=2", "max_epochs=1", "random_weights_steps=2"])
    eager, seen = _eagerness()
    hist = train_model(
        "mobilenetv2_finetune", tiny_split, tmp_path / "out", profile, callbacks=eager
    )
    assert hist["status"] == "ok" and hist["epochs_run"] == 2  # both stages ran
    assert hist["pipeline_check"] is True  # decided once, by training; evaluation reads it
    assert seen == [True, True]  # a pipeline check's capped steps run untraced
    assert [r["stage"] for r in hist["epochs"]] == [1, 2]
    err = capsys.readouterr().err
    assert "[cnnzoo] train mobilenetv2_finetune: epoch 1/2 stage 1 loss" in err
    assert "[cnnzoo] train mobilenetv2_finetune: epoch 2/2 stage 2 loss" in err
    # Throughput counts the images the capped epochs saw: 2 steps x 2 images each.
    assert hist["images_per_s"] == pytest.approx(2 * 2 * 2 / hist["train_time_s"], abs=0.01)
    # The same profile's learners train whole epochs, traced.
    eager, seen = _eagerness()
    hist = train_model("simple", tiny_split, tmp_path / "simple", profile, callbacks=eager)
    assert hist["status"] == "ok" and seen == [False] and hist["pipeline_check"] is False

    # The check is evaluated on its test images only; the learner on every part.
    check = evaluate_model(tmp_path / "out", tiny_split, tmp_path / "check.json")
    learner = evaluate_model(tmp_path / "simple", tiny_split, tmp_path / "simple.json")
    test_count = read_split_info(tiny_split)["splits"]["test"]["count"]
    assert check["status"] == "ok" and check["test_count"] == test_count
    assert len(check["test_predictions"]) == test_count and 0 <= check["test_accuracy"] <= 1
    train_val = ("train_loss", "train_accuracy", "val_loss", "val_accuracy", "gap")
    assert [check[k] for k in train_val] == [None] * 5
    assert all(isinstance(learner[k], float) for k in train_val)
    # A history.json written before the flag was recorded is evaluated whole.
    older = tmp_path / "older"
    shutil.copytree(tmp_path / "out", older)
    data = json.loads((older / "history.json").read_text())
    del data["pipeline_check"]
    (older / "history.json").write_text(json.dumps(data))
    whole = evaluate_model(older, tiny_split, tmp_path / "older.json")
    assert all(isinstance(whole[k], float) for k in train_val)
    assert whole["test_predictions"] == check["test_predictions"]
    # ... and the report lists it apart, its train accuracy n/a.
    paths = build_report([check, learner], tmp_path / "report")
    comparison = json.loads((tmp_path / "report" / "comparison.json").read_text())
    [row] = comparison["pipeline_checks"]
    assert row["model"] == "mobilenetv2_finetune" and row["train_accuracy"] is None
    assert [r["model"] for r in comparison["rows"]] == ["simple"]
    md = Path(paths["markdown"]).read_text(encoding="utf-8").splitlines()
    header = next(line for line in md if line.startswith("| configuration |"))  # the checks'
    line = next(line for line in md if line.startswith("| mobilenetv2_finetune |"))
    cells = dict(zip(header.split("|"), line.split("|"), strict=True))
    assert cells[" train acc "].strip() == "n/a" and cells[" test acc "].strip() != "n/a"


@pytest.fixture(scope="module")
def demo_split(tmp_path_factory):
    """The built-in demo data (what ``make run`` uses), ingested and split for ``demo``."""
    from cnnzoo.data.demo import make_demo_dataset
    from cnnzoo.data.ingest import ingest
    from cnnzoo.data.split import split_dataset

    base = tmp_path_factory.mktemp("demo")
    profile = load_profile("demo")
    make_demo_dataset(base / "raw")
    ingest(str(base / "raw"), base / "ingested")
    split_dataset(
        base / "ingested",
        base / "split",
        img_size=profile.img_size,
        seed=profile.seed,
        val_fraction=profile.val_fraction,
        test_fraction=profile.test_fraction,
    )
    return base / "split"


@pytest.mark.slow
@pytest.mark.parametrize("name", CUSTOM_CNNS)
def test_demo_profile_custom_cnns_learn(demo_split, tmp_path, name):
    from cnnzoo.evaluation.evaluate import evaluate_model

    train_model(name, demo_split, tmp_path / "model", load_profile("demo"))
    result = evaluate_model(tmp_path / "model", demo_split, tmp_path / "evaluation.json")
    assert result["status"] == "ok"
    # 5 classes: chance is 0.20; the demo must show models that learn: twice chance, the
    # same bar for all five.
    assert result["test_accuracy"] >= 0.40, (name, result["test_accuracy"])
