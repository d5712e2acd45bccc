"""Train one registered model configuration on a split dataset.

:func:`train_model` builds the model, runs its one or two stages (Adam, sparse
categorical cross-entropy, early stopping, reduce-LR-on-plateau, best weights by
validation loss) and writes ``model.keras``, ``history.json`` and ``config.yaml``
into the output folder, plus TensorBoard logs. A configuration whose training
crashes still gets a ``history.json`` (``"status": "failed"``) so a pipeline that
trains many configurations can report the failure instead of stopping.
"""

from __future__ import annotations

import contextlib
import importlib.util
import math
import os
import shutil
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

import yaml

from cnnzoo.config import Profile
from cnnzoo.data import load_split, read_split_info
from cnnzoo.errors import CnnzooError
from cnnzoo.fsutil import atomic_write_json, atomic_write_text

MODEL_FILE = "model.keras"
HISTORY_FILE = "history.json"
CONFIG_FILE = "config.yaml"


def train_model(
    model_name: str,
    split_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    profile: Profile,
    logs_dir: str | os.PathLike | None = None,
) -> dict[str, Any]:
    """Train ``model_name`` on ``split_dir`` and write the results into ``out_dir``.

    Args:
        model_name: a registered configuration (see :func:`cnnzoo.models.list_models`).
        split_dir: output folder of ``cnnzoo split``; its ``img_size`` must equal
            ``profile.img_size``.
        out_dir: folder for ``model.keras`` (best validation loss), ``history.json`` and
            ``config.yaml``; may exist (KFP creates it empty).
        profile: the resolved training profile.
        logs_dir: TensorBoard logs root, a local path or a URI such as ``gs://bucket/tb``;
            the run logs to ``<logs_dir>/<model_name>``
            (``stage1``/``stage2`` below it for two-stage configurations). Defaults to
            ``<out_dir>/logs``.

    Returns:
        The history written to ``history.json`` (docs/architecture.md): ``status`` is
        ``"ok"``, or ``"failed"`` with ``error`` (``"<ExceptionType>: <first line>"``)
        when training itself raised. ``best_val_loss`` and ``best_epoch`` are those of
        the saved model; ``best_val_accuracy`` is the highest of any epoch;
        ``trainable_params`` counts what the last stage trained; ``images_per_s`` is
        training images processed per second of ``fit`` (validation passes included).

    Raises:
        CnnzooError: bad input (unknown model, unreadable split, image size mismatch,
            image size below the model's minimum...).
    """
    from cnnzoo import __version__
    from cnnzoo.models import get_spec

    spec = get_spec(model_name)
    info = read_split_info(split_dir)
    split_json = Path(split_dir) / "split.json"
    if info["img_size"] != profile.img_size:
        raise CnnzooError(
            f"{split_json}: img_size is {info['img_size']} but profile {profile.name!r} has "
            f"img_size {profile.img_size}; re-split or pass --set img_size={info['img_size']}"
        )
    if spec.min_img_size > profile.img_size:
        raise CnnzooError(
            f"{model_name} needs img_size >= {spec.min_img_size}, got {profile.img_size}"
        )
    stages = profile.stages_for(model_name)
    train_count = int(info["splits"]["train"]["count"])

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    # An earlier run's results must not pass for this run's if this one is killed.
    for stale in (MODEL_FILE, HISTORY_FILE):
        with contextlib.suppress(FileNotFoundError):
            (out / stale).unlink()
    # Kept as a string: the logs root may be a URI (gs://...) that Path would mangle.
    logs_root = str(logs_dir).rstrip("/") if logs_dir is not None else str(out / "logs")
    model_logs = f"{logs_root}/{model_name}"
    _remove_logs(model_logs)  # a rerun (or a KFP retry) replaces its own logs

    config = {
        "model": model_name,
        "strategy": spec.strategy,
        "base": spec.base,
        "cnnzoo_version": __version__,
        "split": {
            "path": str(split_dir),
            "ingest_manifest_sha256": info.get("ingest_manifest_sha256"),
            "img_size": info["img_size"],
            "classes": info["classes"],
        },
        "profile": profile.to_dict(),
    }
    atomic_write_text(out / CONFIG_FILE, yaml.safe_dump(config, sort_keys=False))
    weights = profile.weights if (spec.pretrained and profile.weights) else "random"

    run = _Run(model_name, spec, stages, profile, info, split_dir, model_logs, train_count)
    try:
        history = run.train(out / MODEL_FILE)
    except CnnzooError:
        raise
    except Exception as e:  # a crash in training is reported, not fatal to the pipeline
        traceback.print_exc(file=sys.stderr)
        history = {
            "model": model_name,
            "status": "failed",
            "error": f"{type(e).__name__}: {_one_line(str(e))}",
            "weights": weights,
            "epochs": run.records,
        }
        atomic_write_json(out / HISTORY_FILE, history)
        return history

    history = {
        "model": model_name,
        "status": "ok",
        "weights": weights,
        **history,
    }
    atomic_write_json(out / HISTORY_FILE, history)
    _log_hparams(model_logs, model_name, spec, profile, history)
    return history


class _Run:
    """State of one training run: epoch records and the best weights seen so far."""

    def __init__(self, model_name, spec, stages, profile, info, split_dir, logs, train_count):
        self.model_name = model_name
        self.spec = spec
        self.stages = stages
        self.profile = profile
        self.info = info
        self.split_dir = split_dir
        self.logs = logs
        self.train_count = train_count
        self.records: list[dict[str, Any]] = []
        self.best_val_loss = math.inf
        self.best_epoch: int | None = None
        self.best_weights: list | None = None

    def train(self, model_path: Path) -> dict[str, Any]:
        import keras

        from cnnzoo.models import build_model, count_trainable_params, prepare_stage

        profile = self.profile
        previous_policy = keras.mixed_precision.global_policy()
        try:
            keras.utils.set_random_seed(profile.seed)
            keras.mixed_precision.set_global_policy(profile.precision)
            model = build_model(
                self.model_name,
                num_classes=len(self.info["classes"]),
                img_size=profile.img_size,
                weights=profile.weights if self.spec.pretrained else None,
            )
            model = _float32_output(model)
            train_ds = load_split(
                self.split_dir,
                "train",
                profile.batch_size,
                training=True,
                shuffle_buffer=profile.shuffle_buffer,
                seed=profile.seed,
            )
            val_ds = load_split(self.split_dir, "val", profile.batch_size)
            verbose = 1 if sys.stdout.isatty() else 2
            two_stage = len(self.stages) > 1
            fit_seconds = 0.0
            for k, stage in enumerate(self.stages, start=1):
                if k > 1 and self.best_weights is not None:
                    _restore(self.best_weights)  # stage 2 starts from the best stage-1 model
                prepare_stage(model, self.model_name, k)
                model.compile(
                    optimizer=keras.optimizers.Adam(learning_rate=stage.learning_rate),
                    loss="sparse_categorical_crossentropy",
                    metrics=["accuracy"],
                    jit_compile=profile.jit_compile,
                )
                first = len(self.records)
                # TensorBoard precedes ReduceLROnPlateau so it logs the rate the epoch used.
                callbacks = [
                    _epoch_recorder(self, k),
                    keras.callbacks.TensorBoard(
                        log_dir=f"{self.logs}/stage{k}" if two_stage else self.logs,
                        write_graph=True,
                        update_freq="epoch",
                    ),
                    keras.callbacks.ReduceLROnPlateau(
                        monitor="val_loss",
                        factor=profile.lr_factor,
                        patience=stage.lr_patience,
                        min_delta=profile.min_delta,
                        verbose=1,
                    ),
                    keras.callbacks.EarlyStopping(
                        monitor="val_loss",
                        patience=stage.stop_patience,
                        restore_best_weights=False,
                        verbose=1,
                    ),
                ]
                t0 = time.perf_counter()
                model.fit(
                    train_ds,
                    validation_data=val_ds,
                    epochs=first + stage.epochs,
                    initial_epoch=first,
                    callbacks=callbacks,
                    shuffle=False,  # the dataset shuffles itself
                    verbose=verbose,
                )
                fit_seconds += time.perf_counter() - t0
            if not self.records:
                raise RuntimeError("training ran no epochs")
            if self.best_weights is not None:
                _restore(self.best_weights)
            _save_model(model, model_path)
        finally:
            keras.mixed_precision.set_global_policy(previous_policy)

        epochs_run = len(self.records)
        val_accs = [r["val_accuracy"] for r in self.records if r["val_accuracy"] is not None]
        return {
            "epochs": self.records,
            "epochs_run": epochs_run,
            "best_epoch": self.best_epoch,
            "best_val_accuracy": max(val_accs) if val_accs else None,
            "best_val_loss": self.best_val_loss if self.best_epoch is not None else None,
            "train_time_s": round(fit_seconds, 3),
            "images_per_s": round(self.train_count * epochs_run / fit_seconds, 2),
            "total_params": int(model.count_params()),
            "trainable_params": count_trainable_params(model),
        }


def _epoch_recorder(run: _Run, stage: int):
    """A callback recording each epoch's metrics, learning rate and time into ``run``.

    It also keeps a copy of the weights whenever ``val_loss`` improves on the best so far
    (over all stages), so the saved model is the best one without checkpoint files.
    """
    import keras

    class EpochRecorder(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self._t0 = time.perf_counter()
            # float32 in the optimizer; 7 significant digits give back 0.001, not 0.0010000000475
            self._lr = float(f"{float(self.model.optimizer.learning_rate.numpy()):.7g}")

        def on_epoch_end(self, epoch, logs=None):
            logs = logs or {}
            record = {
                "epoch": epoch + 1,
                "stage": stage,
                "loss": _finite(logs.get("loss")),
                "accuracy": _finite(logs.get("accuracy")),
                "val_loss": _finite(logs.get("val_loss")),
                "val_accuracy": _finite(logs.get("val_accuracy")),
                "learning_rate": self._lr,
                "time_s": round(time.perf_counter() - self._t0, 3),
            }
            run.records.append(record)
            val_loss = record["val_loss"]
            if val_loss is not None and val_loss < run.best_val_loss:
                run.best_val_loss = val_loss
                run.best_epoch = epoch + 1
                run.best_weights = [(w, w.numpy()) for w in self.model.weights]

    return EpochRecorder()


def _restore(snapshot: list) -> None:
    for variable, value in snapshot:
        variable.assign(value)


def _float32_output(model):
    """Under a mixed policy, make sure the softmax leaves the model as float32."""
    import keras

    if keras.backend.standardize_dtype(model.outputs[0].dtype) == "float32":
        return model
    out = keras.layers.Activation("linear", dtype="float32", name="float32_output")(
        model.outputs[0]
    )
    return keras.Model(model.inputs, out, name=model.name)


def _save_model(model, path: Path) -> None:
    """Save atomically, uncompiled: the optimizer's state is of no use to evaluation."""
    import keras

    # A new functional model over the same layers carries no optimizer or compile config.
    plain = keras.Model(model.inputs, model.outputs, name=model.name)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".keras", dir=path.parent)
    os.close(fd)
    try:
        plain.save(tmp)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _remove_logs(path: str) -> None:
    """Delete a TensorBoard folder, local or remote (``tf.io.gfile`` knows ``gs://``)."""
    if "://" not in path:
        shutil.rmtree(path, ignore_errors=True)
        return
    import tensorflow as tf

    if tf.io.gfile.exists(path):
        tf.io.gfile.rmtree(path)


def _log_hparams(model_logs: str, model_name, spec, profile: Profile, history) -> None:
    if importlib.util.find_spec("cnnzoo.tblogs") is None:
        return
    from cnnzoo.tblogs import log_hparams

    log_hparams(
        model_logs,
        {
            "model": model_name,
            "strategy": spec.strategy,
            "base": spec.base or "none",
            "learning_rate": profile.stages_for(model_name)[0].learning_rate,
            "img_size": profile.img_size,
            "batch_size": profile.batch_size,
            "precision": profile.precision,
        },
        {  # None (no finite val_loss ever) is left out: HParams metrics are numbers
            k: history[k]
            for k in ("best_val_accuracy", "best_val_loss", "epochs_run")
            if history[k] is not None
        },
    )


def _finite(value) -> float | None:
    """A float for JSON, or None for a missing or non-finite value (JSON has no NaN)."""
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _one_line(text: str) -> str:
    lines = [s.strip() for s in text.strip().splitlines() if s.strip()]
    return lines[0] if lines else "(no message)"
