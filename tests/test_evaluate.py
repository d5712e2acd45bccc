"""Tests of cnnzoo.evaluation.evaluate: a model trained on the tiny split, and failed-model
records."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import yaml

from cnnzoo.core.errors import CnnzooError
from cnnzoo.data.loader import load_split, read_split_info
from cnnzoo.evaluation.evaluate import (
    confusion_matrix,
    evaluate_model,
    identify_test_set,
    per_class_metrics,
)
from cnnzoo.evaluation.stats import wilson_interval


@pytest.fixture(scope="module")
def trained(trained_simple):
    """The session's ``simple`` (tests/conftest.py), trained once for every module."""
    return trained_simple


def test_evaluation_numbers_are_consistent(trained, tiny_split, tmp_path):
    out_json = tmp_path / "eval" / "simple.json"
    res = evaluate_model(trained, tiny_split, out_json)
    assert json.loads(out_json.read_text()) == res
    info = read_split_info(tiny_split)
    history = json.loads((trained / "history.json").read_text())

    assert res["status"] == "ok" and res["model"] == "simple"
    assert (res["strategy"], res["base"]) == ("scratch", None)
    assert res["classes"] == info["classes"]
    cm = np.array(res["confusion_matrix"])
    n = len(info["classes"])
    assert cm.shape == (n, n) and cm.min() >= 0
    assert cm.sum() == info["splits"]["test"]["count"] == res["test_count"]
    assert abs(np.trace(cm) / cm.sum() - res["test_accuracy"]) < 1e-6
    assert cm.sum(axis=1).tolist() == [
        info["splits"]["test"]["per_class"][c] for c in res["classes"]
    ]
    for i, c in enumerate(res["classes"]):
        pc = res["per_class"][c]
        assert pc["support"] == info["splits"]["test"]["per_class"][c]
        assert pc["recall"] == pytest.approx(cm[i, i] / cm[i].sum())
        assert 0.0 <= pc["precision"] <= 1.0 and 0.0 <= pc["f1"] <= 1.0
    for key in ("test_accuracy", "train_accuracy", "val_accuracy"):
        assert 0.0 <= res[key] <= 1.0
    assert res["gap"] == pytest.approx(res["train_accuracy"] - res["test_accuracy"], abs=1e-12)
    # the saved model is the best-val_loss one: evaluating it on val reproduces that loss
    assert res["val_loss"] == pytest.approx(history["best_val_loss"], rel=1e-4)
    for key in ("total_params", "trainable_params", "epochs_run", "best_val_accuracy", "weights"):
        assert res[key] == history[key]
    assert res["history"] == history["epochs"]
    # The test part's loss and accuracy, computed from its predictions in one pass, are
    # those Keras' own evaluate gives.
    import keras

    model = keras.models.load_model(trained / "model.keras", compile=False)
    model.compile(loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    test = load_split(tiny_split, "test", 8, training=False)
    keras_res = model.evaluate(test, verbose=0, return_dict=True)
    assert res["test_loss"] == pytest.approx(keras_res["loss"], rel=1e-5)
    assert res["test_accuracy"] == pytest.approx(keras_res["accuracy"], abs=1e-6)


def test_evaluation_records_the_per_image_predictions(trained, tiny_split, tmp_path):
    res = evaluate_model(trained, tiny_split, tmp_path / "simple.json")
    info = read_split_info(tiny_split)
    n = info["splits"]["test"]["count"]
    labels, preds = res["test_labels"], res["test_predictions"]
    assert len(labels) == len(preds) == n == res["test_count"]
    # the predictions are those the confusion matrix counts
    cm = np.zeros_like(np.array(res["confusion_matrix"]))
    for y, p in zip(labels, preds, strict=True):
        cm[y, p] += 1
    assert cm.tolist() == res["confusion_matrix"]
    correct = sum(y == p for y, p in zip(labels, preds, strict=True))
    assert res["test_accuracy"] == pytest.approx(correct / n, abs=1e-6)
    assert res["test_accuracy_ci"] == list(wilson_interval(correct, n))
    assert res["train_count"] == info["splits"]["train"]["count"]
    assert res["seed"] == 7  # trained_simple's profile (tests/conftest.py): one run, no repeats
    # the test set's identity: the same split gives the same id, another file list another
    assert res["test_set"] == identify_test_set(info) and len(res["test_set"]) == 64
    other = json.loads(json.dumps(info))
    other["splits"]["test"]["files"] = other["splits"]["test"]["files"][::-1]
    assert identify_test_set(other) != res["test_set"]


def test_a_failed_repeat_names_its_seed(tmp_path, tiny_split):
    model_dir = tmp_path / "mid"
    model_dir.mkdir()
    (model_dir / "history.json").write_text(
        json.dumps({"model": "mid", "status": "failed", "error": "NonFiniteLoss: nan"})
    )
    (model_dir / "config.yaml").write_text(yaml.safe_dump({"profile": {"seed": 1234}}))
    res = evaluate_model(model_dir, tiny_split, tmp_path / "out.json")
    assert res["status"] == "failed" and res["seed"] == 1234


def test_batch_size_does_not_change_results(trained, tiny_split, tmp_path):
    default = evaluate_model(trained, tiny_split, tmp_path / "a.json")
    small = evaluate_model(trained, tiny_split, tmp_path / "b.json", batch_size=3)
    assert small["confusion_matrix"] == default["confusion_matrix"]
    assert small["test_loss"] == pytest.approx(default["test_loss"], rel=1e-5)


def test_failed_training_passes_through(tmp_path, tiny_split):
    model_dir = tmp_path / "xception_partial"
    model_dir.mkdir()
    failed = {
        "model": "xception_partial",
        "status": "failed",
        "error": "ResourceExhaustedError: OOM",
    }
    (model_dir / "history.json").write_text(json.dumps(failed))
    res = evaluate_model(model_dir, tiny_split, tmp_path / "out.json")
    assert res == {
        "model": "xception_partial",
        "strategy": "partial",
        "base": "xception",
        "status": "failed",
        "error": "ResourceExhaustedError: OOM",
        "schema_version": 1,
    }
    assert json.loads((tmp_path / "out.json").read_text()) == res


def test_bad_input(trained, tiny_split, tmp_path):
    with pytest.raises(CnnzooError, match="history.json: file not found"):
        evaluate_model(tmp_path, tiny_split, tmp_path / "x.json")
    other = tmp_path / "other"
    shutil.copytree(trained, other)
    config = yaml.safe_load((other / "config.yaml").read_text())
    config["split"]["classes"] = ["x", "y"]
    (other / "config.yaml").write_text(yaml.safe_dump(config))
    with pytest.raises(CnnzooError, match="differ from those simple was trained on"):
        evaluate_model(other, tiny_split, tmp_path / "x.json")
    (other / "model.keras").unlink()
    shutil.copy(trained / "config.yaml", other / "config.yaml")
    with pytest.raises(CnnzooError, match="model.keras: file not found"):
        evaluate_model(other, tiny_split, tmp_path / "x.json")
    assert not (tmp_path / "x.json").exists()


def test_per_class_metrics_by_hand():
    cm = confusion_matrix([0, 0, 0, 2, 2, 2, 2], [0, 0, 1, 0, 2, 2, 2], 3)
    assert cm.tolist() == [[2, 1, 0], [0, 0, 0], [1, 0, 3]]
    m = per_class_metrics(cm, ["a", "b", "c"])
    assert m["a"] == pytest.approx({"precision": 2 / 3, "recall": 2 / 3, "f1": 2 / 3, "support": 3})
    # never right, never present: zero division gives 0.0, not NaN
    assert m["b"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}
    assert m["c"] == pytest.approx({"precision": 1.0, "recall": 0.75, "f1": 6 / 7, "support": 4})


def test_evaluate_component_logs_the_interval_in_the_metrics_artifact(
    trained, tiny_split, tmp_path
):
    from kfp import dsl

    from cnnzoo.components.evaluate import evaluate

    metrics = dsl.Metrics(uri=str(tmp_path / "metrics"))
    evaluation = dsl.Artifact(uri=str(tmp_path / "evaluation"))
    evaluate(
        model=dsl.Model(uri=str(trained)),
        splits=dsl.Dataset(uri=str(tiny_split)),
        evaluation=evaluation,
        metrics=metrics,
        confusion=dsl.ClassificationMetrics(uri=str(tmp_path / "confusion")),
    )
    record = json.loads((tmp_path / "evaluation").read_text())
    low, high = record["test_accuracy_ci"]
    assert metrics.metadata["test_accuracy_ci95_low"] == low
    assert metrics.metadata["test_accuracy_ci95_high"] == high
    assert low <= metrics.metadata["test_accuracy"] <= high
    assert metrics.metadata["seed"] == 7 == evaluation.metadata["seed"]
