"""TensorBoard's HParams records of a run: one session per configuration, the columns
declared once at the root, so one TensorBoard over a run's logs root compares every
configuration in the HParams dashboard too.

Training writes Keras TensorBoard logs under one root per run, one subfolder per
configuration (``<root>/<model>/``, two-stage: ``<root>/<model>/stage1``, ``stage2``).
:func:`log_hparams` (in the training process, through TensorFlow's summary writer) adds
the session to a configuration's folder; :func:`write_hparams_config` (in the report
process, which never loads TensorFlow: cnnzoo's own event-file writer) declares the
columns at the root.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from typing import Any

import numpy as np

from cnnzoo.config.profile import PRECISIONS
from cnnzoo.core.errors import CnnzooError
from cnnzoo.models.registry import BASES, STRATEGIES, list_models
from cnnzoo.storage.gcs import is_gcs, upload_tree
from cnnzoo.storage.tfrecord import write_event_file

# The hyperparameters each configuration records (train passes these keys).
HPARAM_KEYS = (
    "model",
    "strategy",
    "base",
    "learning_rate",
    "img_size",
    "batch_size",
    "precision",
)


# Final metrics written as scalars beside the session (tag = metric name).
METRIC_KEYS = ("best_val_accuracy", "best_val_loss", "epochs_run")


def _hparam_value(key: str, value: Any) -> bool | int | float | str:

    if value is None:
        return "none"
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value)
    raise CnnzooError(f"hparams[{key!r}]: unsupported value {value!r} (bool, number or string)")


def log_hparams(
    log_dir: str | os.PathLike, hparams: dict[str, Any], metrics: dict[str, Any]
) -> None:
    """Record one configuration's hyperparameters and final metrics for the HParams dashboard.

    Writes an HParams session (``hp.hparams``) into ``log_dir`` and each metric as a
    scalar at step 0 with the metric's name as tag. Call it on the configuration's
    logs folder (``<root>/<model>/``); the Keras callback's ``train``/``validation``
    scalars below it become further metric columns of the same session.

    Args:
        log_dir: the configuration's TensorBoard folder (created if missing).
        hparams: name -> bool/int/float/str (None becomes ``"none"``); the session is
            named after ``hparams["model"]`` when given.
        metrics: name -> number (e.g. best_val_accuracy, best_val_loss, epochs_run).

    Raises:
        CnnzooError: a hyperparameter value that is not a scalar, or a metric that is
            not a number.
    """
    import tensorflow as tf
    from tensorboard.plugins.hparams import api as hp

    values = {str(k): _hparam_value(str(k), v) for k, v in hparams.items()}
    scalars = {}
    for k, v in metrics.items():
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            try:
                v = float(v)
            except (TypeError, ValueError):
                raise CnnzooError(f"metrics[{k!r}]: must be a number, got {v!r}") from None
        scalars[str(k)] = float(v)
    tf.io.gfile.makedirs(str(log_dir))  # also gs:// and other TensorFlow filesystems
    writer = tf.summary.create_file_writer(str(log_dir))
    try:
        with writer.as_default():
            trial = values.get("model")
            hp.hparams(values, trial_id=str(trial) if trial is not None else None)
            for tag, v in scalars.items():
                tf.summary.scalar(tag, v, step=0)
        writer.flush()
    finally:
        writer.close()


def write_hparams_config(logs_root: str | os.PathLike, models: Sequence[str] = ()) -> None:
    """Declare the experiment's hyperparameters and metrics once, at the logs root.

    Without it the HParams dashboard infers both from the sessions it has found so far.
    With it, the dashboard lists the hyperparameters in a fixed order with their domains
    and shows the chosen metrics (final metrics, validation/train epoch accuracy and
    loss). The report step calls it on the run's logs root, once the models are trained.

    Args:
        logs_root: the run's TensorBoard root (holding one folder per configuration), a
            local folder or ``gs://bucket/prefix`` (written locally, then uploaded with
            the project's Cloud Storage client, like the training logs).
        models: the run's configurations beyond the registry's (a profile's variants and
            sweep points), added to the ``model`` hyperparameter's domain.

    Raises:
        CnnzooError: a ``gs://`` upload failed.
    """

    if is_gcs(str(logs_root)):
        with tempfile.TemporaryDirectory(prefix="cnnzoo-hparams-") as tmp:
            write_hparams_config(tmp, models)
            upload_tree(tmp, str(logs_root).rstrip("/"))
        return
    # summary_v2, not hparams.api: the api module imports Keras (and so TensorFlow), and
    # the report step writes this file without either (cnnzoo.storage.tfrecord).
    from tensorboard.plugins.hparams import summary_v2 as hp

    params = [
        hp.HParam("model", hp.Discrete(list(dict.fromkeys([*list_models(), *models])))),
        hp.HParam("strategy", hp.Discrete(list(STRATEGIES))),
        hp.HParam("base", hp.Discrete(["none", *BASES])),
        hp.HParam("learning_rate", hp.RealInterval(1e-7, 1.0)),
        hp.HParam("img_size", hp.IntInterval(32, 4096)),
        hp.HParam("batch_size", hp.IntInterval(1, 65536)),
        hp.HParam("precision", hp.Discrete(list(PRECISIONS))),
    ]
    metrics = [
        hp.Metric("best_val_accuracy", display_name="best val accuracy"),
        hp.Metric("best_val_loss", display_name="best val loss"),
        hp.Metric("epochs_run", display_name="epochs run"),
        hp.Metric("epoch_accuracy", group="validation", display_name="val accuracy (last)"),
        hp.Metric("epoch_loss", group="validation", display_name="val loss (last)"),
        hp.Metric("epoch_accuracy", group="train", display_name="train accuracy (last)"),
    ]
    summary = hp.hparams_config_pb(hparams=params, metrics=metrics)
    write_event_file(logs_root, [summary.SerializeToString()])
