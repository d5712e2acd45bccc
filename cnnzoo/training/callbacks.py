"""The Keras callbacks of a training run (:func:`cnnzoo.training.train.train_model`).

Each factory returns one callback bound to the run it serves (an object with
``model_name``, ``stages``, ``profile``, ``records``, ``best_val_loss``, ``best_epoch``,
``best_weights`` and ``save_checkpoint``; ``cnnzoo.training.train`` makes it):

* :func:`epoch_recorder` records every epoch's metrics, learning rate and time, keeps
  the best weights (by the profile's ``checkpoint_monitor``, see :func:`is_better`) and
  stops a run whose loss is not finite (:class:`NonFiniteLoss`);
* :func:`progress_printer` prints one ``[cnnzoo]`` line per epoch (:func:`epoch_line`);
* :func:`resumable` makes a Keras callback (ReduceLROnPlateau, EarlyStopping) whose
  counters can be saved and put back;
* :func:`checkpointer` saves the run's state after every epoch.

Keras is imported inside the factories: importing this module needs no TensorFlow.
"""

from __future__ import annotations

import math
import sys
import time
from typing import Any


class NonFiniteLoss(RuntimeError):
    """The loss became NaN or infinite: the run failed, whatever its accuracy."""


def epoch_recorder(run, stage: int):
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
            for key in ("loss", "val_loss"):
                if key in logs and record[key] is None:
                    raise NonFiniteLoss(
                        f"{key} is {logs[key]} after epoch {epoch + 1}: training "
                        "diverged (try a lower learning rate); no model saved"
                    )
            if is_better(record, run):
                run.best_val_loss = record["val_loss"]
                run.best_epoch = epoch + 1
                run.best_weights = [(w, w.numpy()) for w in self.model.weights]

    return EpochRecorder()


def _checkpoint_score(record: dict[str, Any], monitor: str) -> tuple | None:
    """How good an epoch is by the profile's ``checkpoint_monitor`` (lower is better).

    ``val_accuracy`` breaks ties (frequent on a small validation set) by ``val_loss``.
    None when the monitored value is missing (not finite).
    """
    if monitor == "val_accuracy":
        if record["val_accuracy"] is None:
            return None
        loss = record["val_loss"]
        return (-record["val_accuracy"], math.inf if loss is None else loss)
    return None if record["val_loss"] is None else (record["val_loss"],)


def is_better(record: dict[str, Any], run) -> bool:
    """Whether ``record`` (just appended to ``run.records``) beats the best epoch so far."""
    monitor = run.profile.checkpoint_monitor
    score = _checkpoint_score(record, monitor)
    if score is None:
        return False
    if run.best_epoch is None:
        return True
    return score < _checkpoint_score(run.records[run.best_epoch - 1], monitor)


def progress_printer(run, stage: int, total_epochs: int):
    """A callback printing one ``[cnnzoo]`` line per epoch to stderr (after the recorder).

    ``cnnzoo run`` relays ``[cnnzoo]`` lines to its console, so a local run shows each
    model's progress; ``total_epochs`` is the cap over all stages (early stopping may end
    a run before it).
    """
    import keras

    class ProgressPrinter(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            print(
                epoch_line(run.model_name, run.records[-1], total_epochs, len(run.stages) > 1),
                file=sys.stderr,
                flush=True,
            )

    return ProgressPrinter()


def epoch_line(model_name: str, record: dict[str, Any], total_epochs: int, staged: bool) -> str:
    """The console line for one epoch record (see :func:`epoch_recorder`).

    Example: ``[cnnzoo] train mid: epoch 3/12 loss 1.2345 acc 0.4500 val_loss 1.3000
    val_acc 0.4000 (2.1 s)``; two-stage runs add ``stage K`` after the epoch.
    """

    def num(key: str) -> str:
        value = record.get(key)
        return "n/a" if value is None else f"{value:.4f}"

    stage = f" stage {record['stage']}" if staged else ""
    return (
        f"[cnnzoo] train {model_name}: epoch {record['epoch']}/{total_epochs}{stage} "
        f"loss {num('loss')} acc {num('accuracy')} val_loss {num('val_loss')} "
        f"val_acc {num('val_accuracy')} ({record['time_s']:.1f} s)"
    )


def resumable(cls, keys: tuple[str, ...], state: dict[str, Any] | None, **kwargs):
    """An instance of the Keras callback ``cls`` whose attributes ``keys`` can be saved.

    ``state`` (from :meth:`state` of an earlier instance) is put back after the
    callback's own ``on_train_begin`` has reset it.
    """

    class Resumable(cls):
        def on_train_begin(self, logs=None):
            super().on_train_begin(logs)
            if state is not None:
                for key in keys:
                    setattr(self, key, state[key])

        def state(self) -> dict[str, Any]:
            return {key: _plain(getattr(self, key)) for key in keys}

    Resumable.__name__ = cls.__name__
    return Resumable(**kwargs)


def checkpointer(run, checkpoint, stage: int, stage_end: int, stateful):
    """A callback saving the run's state to ``checkpoint`` at the end of every epoch.

    It must come after every other callback: it saves what they did (the reduced
    learning rate, the ``state()`` of the ``stateful`` callbacks by name, the
    early-stopping decision). Keras' TensorBoard callback writes an epoch's summaries
    inside ``writer.as_default()``, whose exit flushes them, so an epoch that is in
    the checkpoint is in the logs too; an epoch logged but killed before its
    checkpoint is written (a window of one file write) is logged again on resume.
    """
    import keras

    class Checkpointer(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            states = {name: callback.state() for name, callback in stateful.items()}
            done = bool(self.model.stop_training) or epoch + 1 >= stage_end
            run.save_checkpoint(self.model, checkpoint, stage, done, states)

    return Checkpointer()


def _plain(value):
    """A callback attribute as plain JSON data (numpy scalars become Python numbers)."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return value.item() if hasattr(value, "item") else float(value)


def _finite(value) -> float | None:
    """A float for JSON, or None for a missing or non-finite value (JSON has no NaN)."""
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None
