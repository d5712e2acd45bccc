"""Evaluate a trained model on its split: test, train and validation metrics.

:func:`evaluate_model` reads the output folder of ``cnnzoo train`` and writes one JSON
record per model (:class:`cnnzoo.evaluation.records.EvaluationRecord`): losses and accuracies on
test, train and validation (all without shuffling or augmentation), the test confusion
matrix, per-class precision, recall and F1, the train-test accuracy gap and the
training facts from ``history.json``.
It also records the per-image test predictions (class indices in test order, with the
true labels and the test set's identity, :func:`identify_test_set`) so that the report can
test two models against each other on the same images (:mod:`cnnzoo.evaluation.stats`), the 95%
Wilson interval of the test accuracy, and the training seed.
A model whose training failed is passed on as a ``"status": "failed"`` record.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from cnnzoo.config.profile import read_yaml
from cnnzoo.config.train_output import read_history, read_train_config
from cnnzoo.core.errors import CnnzooError, one_line
from cnnzoo.data.loader import load_split, read_split_info
from cnnzoo.evaluation.records import EvaluationRecord, read_evaluation, write_evaluation
from cnnzoo.evaluation.stats import wilson_interval
from cnnzoo.models.registry import get_spec
from cnnzoo.storage.layout import CONFIG_FILE, HISTORY_FILE, MODEL_FILE, SPLIT_INFO
from cnnzoo.storage.local import output_lock

#: Fields copied from history.json into the evaluation record.
HISTORY_FIELDS = (
    "total_params",
    "trainable_params",
    "epochs_run",
    "best_val_accuracy",
    "train_time_s",
    "images_per_s",
    "weights",
)


#: The split parts a model is evaluated on, the test part first.
PARTS = ("test", "train", "val")


def evaluate_model(
    model_dir: str | os.PathLike,
    split_dir: str | os.PathLike,
    out_json: str | os.PathLike,
    batch_size: int | None = None,
    *,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Evaluate the model in ``model_dir`` on ``split_dir`` and write ``out_json``.

    Args:
        model_dir: output folder of ``cnnzoo train`` (``history.json``, ``config.yaml``
            and, when training succeeded, ``model.keras``).
        split_dir: the split dataset the model was trained on (same classes and size).
        out_json: file to write the evaluation record to (atomically); an existing
            file must be an earlier evaluation record, unless ``overwrite``.
        batch_size: evaluation batch size; defaults to the training profile's
            ``eval_batch_size`` saved in ``config.yaml``.
        overwrite: replace an ``out_json`` that is not an evaluation record.

    Returns:
        The record written, as :meth:`EvaluationRecord.to_dict` (see
        docs/formats.md, "Evaluation"); for a model whose training failed,
        ``{"model", "strategy", "base", "status": "failed", "error", "schema_version"}``;
        a model whose loss on any part is not finite is recorded as failed too.

    Raises:
        CnnzooError: missing, unreadable or corrupt files (``model.keras``, shards), a
            split that does not match the model (classes or image size), an
            ``out_json`` that is not an evaluation record, or another process writing it.
    """
    with output_lock(out_json):
        _check_out_json(Path(out_json), overwrite)
        return _evaluate_locked(model_dir, split_dir, out_json, batch_size)


def _check_out_json(path: Path, overwrite: bool) -> None:
    """Refuse to replace a file that is not an evaluation record (or a folder)."""
    if path.is_dir():
        raise CnnzooError(f"{path}: is a folder; name a JSON file to write")
    if not path.exists() or overwrite:
        return
    try:
        read_evaluation(path)
    except CnnzooError:
        raise CnnzooError(
            f"{path}: exists and is not a cnnzoo evaluation record; choose another file "
            "or pass --overwrite"
        ) from None


def _evaluate_locked(model_dir, split_dir, out_json, batch_size) -> dict[str, Any]:
    import tensorflow  # noqa: F401  (loaded first, for a failed training's record too)

    model_dir = Path(model_dir)
    history, name = _read_history(model_dir)
    head = _record_head(name, model_dir / CONFIG_FILE)
    if history.get("status") != "ok":
        error = str(history.get("error") or "training failed")
        # One of several repeats: the report names the seed that failed.
        seed = _trained_seed(model_dir / CONFIG_FILE)
        return _write(out_json, EvaluationRecord.failed(**head, error=error, seed=seed))

    config = read_train_config(model_dir / CONFIG_FILE)
    info = read_split_info(split_dir)
    _check_classes(config, info, name, model_dir, split_dir)
    if batch_size is None:
        batch_size = int(config.get("profile", {}).get("eval_batch_size", 512))
    if batch_size < 1:
        raise CnnzooError(f"batch_size must be >= 1, got {batch_size}")

    model = _load_model(model_dir / MODEL_FILE)
    _check_input_size(model, info, model_dir, split_dir)
    # A pipeline check's accuracy measures the pipeline, not a model: its test part only,
    # its train and val figures (and the gap) null.
    parts = ("test",) if history.get("pipeline_check") else PARTS
    metrics, y_true, y_pred, error = _evaluate_parts(model, split_dir, batch_size, parts)
    if error is not None:
        # Its seed too: with repeats, diverged seeds of one model stay two records.
        seed = _trained_seed(model_dir / CONFIG_FILE)
        return _write(out_json, EvaluationRecord.failed(**head, error=error, seed=seed))
    record = _ok_record(head, config, info, history, metrics, y_true, y_pred)
    return _write(out_json, record)


def _read_history(model_dir: Path) -> tuple[dict[str, Any], str]:
    """The training's ``history.json`` and the model it names."""
    history = read_history(model_dir / HISTORY_FILE)
    return history, history["model"]


def _check_classes(config, info, name: str, model_dir: Path, split_dir) -> None:
    """Refuse a split whose classes are not those the model was trained on."""
    trained = config.get("split", {})
    if trained.get("classes") != info["classes"]:
        raise CnnzooError(
            f"{Path(split_dir) / SPLIT_INFO}: classes {info['classes']} differ from those "
            f"{name} was trained on ({trained.get('classes')}, {model_dir / CONFIG_FILE})"
        )


def _check_input_size(model, info, model_dir: Path, split_dir) -> None:
    """Refuse a split whose image size the model does not take."""
    input_size = model.inputs[0].shape[1]
    if input_size is not None and input_size != info["img_size"]:
        raise CnnzooError(
            f"{Path(split_dir) / SPLIT_INFO}: img_size {info['img_size']} but "
            f"{model_dir / MODEL_FILE} takes {input_size} px images"
        )


def _evaluate_parts(model, split_dir, batch_size: int, parts: tuple[str, ...] = PARTS):
    """Loss and accuracy on ``parts`` (test first), and the test labels and predictions.

    Returns:
        ``(metrics, y_true, y_pred, error)``: ``error`` is None, or says which part's
        loss is not finite (the parts after it are then not evaluated).
    """

    import tensorflow as tf

    metrics = {}
    for part in parts:
        # Each part is read once: the test part's loss and accuracy come from its
        # per-image predictions, which the record keeps.
        ds = load_split(split_dir, part, batch_size, training=False)
        try:
            if part == "test":
                y_true, probs = _predict(model, ds)
                y_pred = np.argmax(probs, axis=-1)
                res = {"loss": _mean_loss(y_true, probs), "accuracy": np.mean(y_true == y_pred)}
            else:
                res = model.evaluate(ds, verbose=0, return_dict=True)
        except tf.errors.OpError as e:
            # Truncated or corrupt shards, or records that do not fit split.json.
            raise CnnzooError(
                f"{split_dir}: cannot read the {part} shards ({type(e).__name__}: "
                f"{one_line(e.message, 300)}); run the split again"
            ) from None
        metrics[part] = {"loss": float(res["loss"]), "accuracy": float(res["accuracy"])}
        if not math.isfinite(metrics[part]["loss"]):
            error = (
                f"{part} loss is {metrics[part]['loss']}: the model outputs "
                "non-finite values (training diverged?)"
            )
            return metrics, y_true, y_pred, error
    return metrics, y_true, y_pred, None


def _ok_record(head, config, info, history, metrics, y_true, y_pred) -> EvaluationRecord:
    """The evaluation record of a trained model from its metrics and test predictions
    (a pipeline check's has no train and val metrics: null there, and no gap)."""
    train, val = metrics.get("train", {}), metrics.get("val", {})
    classes = info["classes"]
    cm = confusion_matrix(y_true, y_pred, len(classes))
    test_count = int(cm.sum())
    correct = int((y_true == y_pred).sum())
    return EvaluationRecord(
        **head,
        status="ok",
        seed=config.get("profile", {}).get("seed"),
        classes=classes,
        test_count=test_count,
        train_count=int(info["splits"]["train"]["count"]),
        test_loss=metrics["test"]["loss"],
        test_accuracy=metrics["test"]["accuracy"],
        test_accuracy_ci=list(wilson_interval(correct, test_count)) if test_count else None,
        train_loss=train.get("loss"),
        train_accuracy=train.get("accuracy"),
        val_loss=val.get("loss"),
        val_accuracy=val.get("accuracy"),
        gap=train["accuracy"] - metrics["test"]["accuracy"] if train else None,
        per_class=per_class_metrics(cm, classes),
        confusion_matrix=cm.tolist(),
        **{k: history.get(k) for k in HISTORY_FIELDS},
        history=history.get("epochs", []),
        test_set=identify_test_set(info),
        test_labels=[int(v) for v in y_true],
        test_predictions=[int(v) for v in y_pred],
    )


def _write(out_json, record: EvaluationRecord) -> dict[str, Any]:
    """Write ``record`` to ``out_json`` and return it as data."""
    write_evaluation(out_json, record)
    return record.to_dict()


def identify_test_set(split_info: dict[str, Any]) -> str:
    """The identity of a split's test images, in record order: a sha256 of the ingest
    manifest's hash (which covers every image's bytes) and the test files' ingested paths.

    Two evaluations are compared image by image only when their ``test_set`` is equal.
    """

    test = split_info.get("splits", {}).get("test", {})
    identity = {
        "ingest_manifest_sha256": split_info.get("ingest_manifest_sha256"),
        "img_size": split_info.get("img_size"),
        "files": test.get("files"),
        "count": test.get("count"),
    }
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()


def confusion_matrix(y_true, y_pred, num_classes: int):
    """Counts ``cm[t, p]`` of examples of true class ``t`` predicted as ``p`` (int64)."""

    cm = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(cm, (np.asarray(y_true, dtype=np.int64), np.asarray(y_pred, dtype=np.int64)), 1)
    return cm


def per_class_metrics(cm, classes: list[str]) -> dict[str, dict[str, float | int]]:
    """Precision, recall, F1 and support per class from a confusion matrix.

    A ratio whose denominator is zero (a class never predicted, or absent) is 0.0.
    """

    cm = np.asarray(cm)
    tp = np.diag(cm).astype(float)
    predicted = cm.sum(axis=0).astype(float)
    support = cm.sum(axis=1)
    out = {}
    for i, c in enumerate(classes):
        p = tp[i] / predicted[i] if predicted[i] else 0.0
        r = tp[i] / support[i] if support[i] else 0.0
        f1 = 2 * p * r / (p + r) if p + r else 0.0
        out[c] = {
            "precision": float(p),
            "recall": float(r),
            "f1": float(f1),
            "support": int(support[i]),
        }
    return out


def _record_head(name: str, config_yaml: Path) -> dict[str, Any]:
    """The record's first fields: model, strategy, base and, for a profile's variant or
    sweep point (config.yaml's ``derived``), what it derives from and its sweep point."""
    config: dict[str, Any] = {}
    if config_yaml.is_file():
        with contextlib.suppress(CnnzooError):
            config = read_yaml(config_yaml)
    derived = config.get("derived")
    if not isinstance(derived, dict):
        spec = get_spec(name)  # a registered configuration (raises for an unknown name)
        return {"model": name, "strategy": spec.strategy, "base": spec.base}
    return {
        "model": name,
        "strategy": config.get("strategy"),
        "base": config.get("base"),
        "derived_from": derived.get("from"),
        "sweep": derived.get("sweep"),
        "sweep_point": derived.get("point") or None,
        "derived_settings": derived.get("settings") or None,
    }


def _trained_seed(config_yaml: Path) -> int | None:
    """The training seed in a train output's config.yaml, or None if it has none."""
    if not config_yaml.is_file():
        return None
    try:
        seed = read_yaml(config_yaml).get("profile", {}).get("seed")
    except (CnnzooError, AttributeError):
        return None
    return seed if isinstance(seed, int) and not isinstance(seed, bool) else None


def _predict(model, ds):
    """The true labels and the predicted class probabilities of every image of ``ds``."""
    y_true, probs = [], []
    for images, labels in ds:
        probs.append(np.asarray(model.predict_on_batch(images)))
        y_true.append(labels.numpy())
    return np.concatenate(y_true), np.concatenate(probs)


def _mean_loss(y_true, probs) -> float:
    """The mean sparse categorical cross-entropy of ``probs``, as the model's loss."""
    import keras

    losses = keras.losses.sparse_categorical_crossentropy(y_true, probs)
    return float(np.mean(np.asarray(losses), dtype=np.float64))


def _load_model(path: Path):
    import keras

    if not path.is_file():
        raise CnnzooError(f"{path}: file not found (history.json says training succeeded)")
    try:
        model = keras.models.load_model(path, compile=False)
    except Exception as e:  # a truncated zip, a foreign file: Keras raises many types
        raise CnnzooError(
            f"{path}: cannot load the model ({type(e).__name__}: {one_line(str(e), 300)}); "
            "train it again"
        ) from None
    model.compile(loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model
