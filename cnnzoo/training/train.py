"""Train one registered model configuration on a split dataset.

:func:`train_model` builds the model, runs its one or two stages (Adam, sparse
categorical cross-entropy, early stopping, reduce-LR-on-plateau, best weights by
validation loss, or by validation accuracy if the profile's ``checkpoint_monitor`` says
so) and writes ``model.keras``, ``history.json`` and ``config.yaml`` into the output
folder, plus TensorBoard logs (to a local folder, or mirrored live to
a ``gs://`` logs root). A configuration whose training crashes still gets a
``history.json`` (``"status": "failed"``) so a pipeline that trains many
configurations can report the failure instead of stopping.

Training survives preemption. After every epoch the full training state (model and
optimizer variables, stage, epoch, history so far, best weights and best
``val_loss``, and the state of the learning-rate and early-stopping callbacks) is
saved to a checkpoint (:mod:`cnnzoo.training.checkpoint`; ``<out_dir>/checkpoint/`` by default,
or any local path or ``gs://`` URI). Run again with the same arguments, training
resumes after the last completed epoch; a checkpoint made for a different model,
profile or split is ignored (with a warning) and training starts over. The checkpoint
is deleted once ``model.keras`` and ``history.json`` are written.

Extra Keras callbacks (``train_model(..., callbacks=[...])``) run before train_model's
own in every ``fit``: tests use them to simulate a preemption or a failure at a chosen
epoch without replacing ``keras.Model.fit``. train_model's own callbacks (epoch records,
progress lines, resumable learning-rate and early-stopping state, the per-epoch
checkpoint) are in :mod:`cnnzoo.training.callbacks`.
"""

from __future__ import annotations

import contextlib
import errno
import math
import os
import re
import resource
import sys
import tempfile
import time
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from cnnzoo import __version__
from cnnzoo.config.profile import Profile
from cnnzoo.core.errors import CnnzooError, one_line
from cnnzoo.data.loader import load_split, plan_cache, read_split_info
from cnnzoo.models.build import (
    build_model,
    count_trainable_params,
    prepare_stage,
    set_batchnorm_momentum,
)
from cnnzoo.storage.gcs import is_gcs
from cnnzoo.storage.layout import (
    CHECKPOINT_DIR,
    CONFIG_FILE,
    HISTORY_FILE,
    LOGS_DIR,
    MODEL_FILE,
    SPLIT_INFO,
    TENSORBOARD_KIND,
    TRAIN_KIND,
)
from cnnzoo.storage.local import (
    atomic_write_json,
    atomic_write_text,
    check_replaceable,
    output_kind,
    output_lock,
    write_marker,
)
from cnnzoo.storage.logsync import LogSync
from cnnzoo.storage.outputs import claim_folder
from cnnzoo.tensorboard.hparams import log_hparams
from cnnzoo.training.callbacks import (
    NonFiniteLoss,
    checkpointer,
    epoch_recorder,
    progress_printer,
    resumable,
)
from cnnzoo.training.checkpoint import (
    Checkpoint,
    assign_arrays,
    check_fit,
    restore_optimizer,
    run_fingerprint,
)

#: Seconds between uploads of new TensorBoard events to a ``gs://`` logs root.
LOG_SYNC_S = 30.0


def train_model(
    model_name: str,
    split_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    profile: Profile,
    logs_dir: str | os.PathLike | None = None,
    checkpoint_dir: str | os.PathLike | None = None,
    *,
    overwrite: bool = False,
    callbacks: Sequence[Any] = (),
    logs_name: str | None = None,
) -> dict[str, Any]:
    """Train ``model_name`` on ``split_dir`` and write the results into ``out_dir``.

    One process at a time trains into ``out_dir`` (:func:`cnnzoo.storage.local.output_lock`;
    a second gets a ``CnnzooError`` naming the first). A loss or validation loss that
    is not finite (the training diverged) stops training: the run is ``failed``, its
    error says so, and no ``model.keras`` is written.

    The training state is checkpointed after every epoch. If ``checkpoint_dir`` holds a
    checkpoint of this same run (same model, resolved profile and ``split.json``; the
    run's fingerprint is stored in the checkpoint), training resumes after its last
    epoch, in its stage, with its learning rate, optimizer moments, callback counters,
    history and best weights, and prints ``resuming <model> from epoch N (stage K)``.
    The TensorBoard logs are kept and the resumed epochs continue their step numbers.
    A checkpoint of another run, or one that cannot be read, is ignored with a
    ``warning:`` line on stderr and training starts over (replacing the logs). What is
    not restored is the position in the shuffled data stream: resumed epochs see a
    different shuffle order than an uninterrupted run would.

    Args:
        model_name: a registered configuration (see :func:`cnnzoo.models.registry.list_models`).
        split_dir: output folder of ``cnnzoo split``; its ``img_size`` must equal
            ``profile.img_size``.
        out_dir: folder for ``model.keras`` (the best epoch by the profile's
            ``checkpoint_monitor``, validation loss by default), ``history.json`` and
            ``config.yaml``; may be missing, empty (KFP creates it so) or an earlier
            train output (marked ``.cnnzoo.json``), else it is refused unless
            ``overwrite``.
        profile: the resolved training profile.
        logs_dir: TensorBoard logs root, a local path or a URI such as ``gs://bucket/tb``;
            the run logs to ``<logs_dir>/<model_name>``
            (``stage1``/``stage2`` below it for two-stage configurations). Defaults to
            ``<out_dir>/logs``. A ``gs://`` root gets the events written locally and
            uploaded every :data:`LOG_SYNC_S` seconds and at the end. The folder
            ``<logs_dir>/<model_name>`` is owned like an output (marker kind
            :data:`TENSORBOARD_KIND`): missing, empty or an earlier one of cnnzoo's, else
            refused unless ``overwrite``; a fresh (not resumed) run replaces it.
        checkpoint_dir: where to keep the training state between epochs, a local path or
            a ``gs://`` URI that survives the task (on KFP, a retried pod may get a fresh
            ``out_dir``). Defaults to ``<out_dir>/checkpoint``. Removed after success.
        overwrite: train into an ``out_dir`` (and log into a ``<logs_dir>/<model_name>``)
            that cnnzoo did not write; only the files named above (and
            ``logs/<model>``, ``checkpoint/``) are replaced.
        callbacks: extra Keras callbacks for every ``fit`` (each stage), run before
            train_model's own, so they see an epoch's logs before they are recorded and
            checkpointed (tests use them to simulate a preemption or to script metrics).
        logs_name: the logs folder below ``logs_dir`` instead of ``model_name`` (one of
            several repeats of a configuration logs to ``<model>/seed-<seed>``).

    Returns:
        The history written to ``history.json`` (docs/formats.md): ``status`` is
        ``"ok"``, or ``"failed"`` with ``error`` (``"<ExceptionType>: <first line>"``)
        when training itself raised or diverged (the checkpoint is then kept, so a
        rerun resumes).
        ``best_val_loss`` and ``best_epoch`` are those of the saved model;
        ``best_val_accuracy`` is the highest of any epoch; ``trainable_params`` counts
        what the last stage trained; ``images_per_s`` is training images processed per
        second of ``fit`` (validation passes included), over all attempts.

    Raises:
        CnnzooError: bad input (unknown model, unreadable split, image size mismatch,
            image size below the model's minimum, an unreachable ``gs://`` checkpoint
            or logs location, an ``out_dir`` or logs folder cnnzoo did not write,
            another process training into ``out_dir`` or writing the checkpoint...).
    """
    with contextlib.ExitStack() as stack:
        stack.enter_context(output_lock(out_dir))
        check_replaceable(out_dir, TRAIN_KIND, overwrite)
        _remove_own_temporaries(Path(out_dir))
        if checkpoint_dir is not None and not is_gcs(str(checkpoint_dir)):
            stack.enter_context(output_lock(checkpoint_dir))  # one writer (gs://: see Checkpoint)
        if logs_dir is not None and not is_gcs(str(logs_dir)):
            # Two trainings with different OUT must not interleave in one logs folder.
            stack.enter_context(output_lock(Path(logs_dir) / (logs_name or model_name)))
        return _train_model_locked(
            model_name,
            split_dir,
            out_dir,
            profile,
            logs_dir,
            checkpoint_dir,
            overwrite,
            callbacks,
            logs_name,
        )


def _remove_own_temporaries(out: Path) -> None:
    """Delete temporary files a killed earlier run left in ``out`` (only cnnzoo's names)."""

    if not out.is_dir():
        return
    own = re.compile(r"\.(model\.[a-z0-9_]{8}\.keras|[^/]+\.[a-z0-9_]{8}\.tmp)")
    for p in out.iterdir():
        if p.is_file() and own.fullmatch(p.name):
            p.unlink(missing_ok=True)


def _train_model_locked(
    model_name,
    split_dir,
    out_dir,
    profile,
    logs_dir,
    checkpoint_dir,
    overwrite,
    callbacks,
    logs_name=None,
) -> dict[str, Any]:
    """:func:`train_model`'s work, once it holds its locks."""
    spec = profile.spec_for(model_name)  # a registered configuration or a variant
    info = read_split_info(split_dir)
    split_json = Path(split_dir) / SPLIT_INFO
    _check_img_size(model_name, spec, profile, info, split_json)
    stages = profile.stages_for(model_name)
    train_count = int(info["splits"]["train"]["count"])

    out = Path(out_dir)
    checkpoint = Checkpoint(
        str(checkpoint_dir) if checkpoint_dir is not None else str(out / CHECKPOINT_DIR),
        run_fingerprint(model_name, profile, split_json),
    )
    if checkpoint_dir is not None:  # the default one lies inside OUT, checked above
        checkpoint.check_owned(overwrite)
    checkpoint.remove_temporaries()
    resume = checkpoint.load()
    model_logs = _claim_logs(out, logs_dir, logs_name or model_name, overwrite, resume is None)
    _prepare_out(out)
    _write_config(out, model_name, spec, split_dir, info, profile)
    weights = profile.weights if (spec.pretrained and profile.weights) else "random"

    with _log_folder(model_logs) as local_logs:
        run = _Run(model_name, spec, stages, profile, info, split_dir, local_logs, train_count)
        run.extra_callbacks = list(callbacks)
        history = _train_or_fail(run, weights, out / MODEL_FILE, checkpoint, resume)
    # Written once the logs are complete (and synced to gs://): it marks the run done.
    atomic_write_json(out / HISTORY_FILE, history)
    if history["status"] == "ok":
        checkpoint.remove()
    return history


def _check_img_size(model_name, spec, profile: Profile, info, split_json: Path) -> None:
    """Refuse a split of another image size than the profile's, or one below the model's."""
    if info["img_size"] != profile.img_size:
        raise CnnzooError(
            f"{split_json}: img_size is {info['img_size']} but profile {profile.name!r} has "
            f"img_size {profile.img_size}; re-split or pass --set img_size={info['img_size']}"
        )
    if spec.min_img_size > profile.img_size:
        raise CnnzooError(
            f"{model_name} needs img_size >= {spec.min_img_size}, got {profile.img_size}"
        )


def _claim_logs(out: Path, logs_dir, logs_name: str, overwrite: bool, fresh: bool) -> str:
    """Claim the run's TensorBoard logs folder (replaced when ``fresh``); return it."""
    # Kept as a string: the logs root may be a URI (gs://...) that Path would mangle.
    logs_root = str(logs_dir).rstrip("/") if logs_dir is not None else str(out / LOGS_DIR)
    model_logs = f"{logs_root}/{logs_name}"
    # A fresh run (or a retry from scratch) replaces its logs; OUT/logs is OUT's.
    claim_folder(
        model_logs,
        TENSORBOARD_KIND,
        overwrite=overwrite or logs_dir is None,
        replace=fresh,
        what="TensorBoard logs",
    )
    return model_logs


def _prepare_out(out: Path) -> None:
    """Create and mark ``out`` as a train output; delete an earlier run's results."""
    out.mkdir(parents=True, exist_ok=True)
    if output_kind(out) != TRAIN_KIND:
        write_marker(out, TRAIN_KIND)
    # An earlier run's results must not pass for this run's if this one is killed.
    for stale in (MODEL_FILE, HISTORY_FILE):
        with contextlib.suppress(FileNotFoundError):
            (out / stale).unlink()


def _write_config(out: Path, model_name, spec, split_dir, info, profile: Profile) -> None:
    """Write the resolved configuration (model, split, profile) to ``out``'s config file."""
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
        "stages": [stage.model_dump() for stage in profile.stages_for(model_name)],
        "profile": profile.to_dict(),
    }
    derived = profile.derived_configurations().get(model_name)
    if derived is not None:  # a variant or sweep point: what it derives from and how
        config["derived"] = derived.to_dict()
    atomic_write_text(out / CONFIG_FILE, yaml.safe_dump(config, sort_keys=False))


#: Errors of the storage, not of the training: no space, over quota, read-only.
_STORAGE_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS)


def _train_or_fail(run: _Run, weights: str, model_path: Path, checkpoint, resume) -> dict:
    """Train ``run``: its history, or a failed one if training crashed or diverged."""
    try:
        history = {
            "model": run.model_name,
            "status": "ok",
            "weights": weights,
            "pipeline_check": run.pipeline_check,
            **run.train(model_path, checkpoint, resume),
        }
    except CnnzooError:
        raise
    except OSError as e:
        if e.errno not in _STORAGE_ERRNOS:
            raise
        # The disk, not the model: one line, and the checkpoint kept for the rerun.
        where = e.filename or model_path.parent
        raise CnnzooError(
            f"{where}: {e.strerror} while training {run.model_name}; make room and run "
            "it again (it resumes from the last checkpoint)"
        ) from None
    except Exception as e:  # a crash in training is reported, not fatal to the pipeline
        _raise_if_bad_data(e, run.split_dir)
        if not isinstance(e, NonFiniteLoss):  # a divergence is no bug: its line suffices
            traceback.print_exc(file=sys.stderr)
        return {
            "model": run.model_name,
            "status": "failed",
            "error": f"{type(e).__name__}: {one_line(str(e), first=True)}",
            "weights": weights,
            "pipeline_check": run.pipeline_check,
            "epochs": run.records,
        }
    _log_hparams(run.logs, run.model_name, run.spec, run.profile, history)
    return history


def _raise_if_bad_data(e: Exception, split_dir) -> None:
    """Turn a corrupt-shard error from ``tf.data`` into the input error it is."""
    import tensorflow as tf

    # DataLossError: a truncated or corrupt record; the cardinality assertion: fewer or
    # more records than split.json counts (a shard cut at a record boundary).
    if isinstance(e, tf.errors.DataLossError) or (
        isinstance(e, tf.errors.OpError) and "expected to contain" in str(e)
    ):
        raise CnnzooError(
            f"{split_dir}: a TFRecord shard is corrupt or truncated "
            f"({type(e).__name__}: {one_line(str(e), first=True)}); run the split again"
        ) from None


class _Run:
    """State of one training run: epoch records and the best weights seen so far (the
    run the callbacks of :mod:`cnnzoo.training.callbacks` are bound to)."""

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
        self.fit_seconds = 0.0  # in earlier stages and attempts
        self.fit_started = 0.0  # perf_counter() at the start of the current fit
        self.replicas = 1  # devices the model is replicated on (MirroredStrategy)
        self.extra_callbacks: list = []  # train_model's callbacks=, first in every fit
        self.steps_cap = profile.steps_cap(model_name)  # None: whole epochs

    @property
    def pipeline_check(self) -> bool:
        """A pretrained configuration run from random weights for the profile's capped
        steps: it proves that its path runs, no more. Recorded in history.json, where
        evaluation reads it (its test part only)."""
        return self.steps_cap is not None

    def train(
        self, model_path: Path, checkpoint: Checkpoint, resume: dict[str, Any] | None
    ) -> dict[str, Any]:
        """Build the model, fit its stages (from ``resume`` if given), save the best
        weights to ``model_path``; return the history's figures."""
        import keras

        previous_policy = keras.mixed_precision.global_policy()
        scope = contextlib.ExitStack()
        try:
            # Variables made in a MirroredStrategy's scope are replicated on every GPU; the
            # dataset's batch (the profile's batch_size) is the global batch, split between them.
            strategy = distribution_strategy()
            scope.enter_context(strategy.scope())
            self.replicas = strategy.num_replicas_in_sync
            model = self._build_model()
            first_stage, continuing = 1, None
            if resume is not None:
                first_stage, continuing = self._resume(model, checkpoint, resume)
            train_ds, val_ds = self._datasets()
            self._fit_stages(model, checkpoint, first_stage, continuing, train_ds, val_ds)
            if not self.records:
                raise RuntimeError("training ran no epochs")
            if self.best_weights is not None:
                _restore(self.best_weights)
            _save_model(model, model_path)
        finally:
            scope.close()
            keras.mixed_precision.set_global_policy(previous_policy)
        return self._results(model)

    def _build_model(self):
        """Seed, set the precision policy and build the model (float32 output)."""
        import keras

        profile = self.profile
        keras.utils.set_random_seed(profile.seed)
        keras.mixed_precision.set_global_policy(profile.precision)
        model = build_model(
            self.spec,
            num_classes=len(self.info["classes"]),
            img_size=profile.img_size,
            weights=profile.weights if self.spec.pretrained else None,
        )
        set_batchnorm_momentum(model, profile.bn_momentum)
        return _float32_output(model)

    def _datasets(self):
        """The train and val datasets, each cached in memory if it fits the budget."""
        profile = self.profile
        # Peak memory stays under the budget: cache what fits beside the model.
        cached = plan_cache(
            self.split_dir,
            ("train", "val"),
            profile.cache_budget_mb,
            profile.batch_size,
            profile.shuffle_buffer,
        )
        for part, cache in cached.items():
            if not cache:
                print(
                    f"data: {part} streamed from its shards every epoch (cached it would "
                    f"take this process over cache_budget_mb {profile.cache_budget_mb})",
                    flush=True,
                )
        train_ds = load_split(
            self.split_dir,
            "train",
            profile.batch_size,
            training=True,
            shuffle_buffer=profile.shuffle_buffer,
            seed=profile.seed,
            cache=cached["train"],
            cache_budget_mb=math.inf,  # planned above, against the whole process
        )
        val_ds = load_split(
            self.split_dir,
            "val",
            profile.batch_size,
            cache=cached["val"],
            cache_budget_mb=math.inf,
        )
        if self.pipeline_check:  # a random-weight backbone's few capped steps
            train_ds = train_ds.take(self.steps_cap)
            self.train_count = min(self.train_count, self.steps_cap * profile.batch_size)
        return train_ds, val_ds

    def _fit_stages(self, model, checkpoint, first_stage, continuing, train_ds, val_ds) -> None:
        """Fit the stages from ``first_stage`` on (it continued from ``continuing``)."""
        verbose = 1 if sys.stdout.isatty() else 2
        for k, stage in enumerate(self.stages, start=1):
            if k < first_stage:
                continue
            resumed = continuing if k == first_stage else None
            if k > 1 and resumed is None and self.best_weights is not None:
                _restore(self.best_weights)  # stage 2 starts from the best stage-1 model
            self._fit_stage(model, k, stage, resumed, checkpoint, train_ds, val_ds, verbose)
        if first_stage > len(self.stages):  # resumed after the last epoch: nothing ran
            prepare_stage(model, self.spec, len(self.stages))

    def _fit_stage(self, model, k, stage, resumed, checkpoint, train_ds, val_ds, verbose):
        """Compile the model for stage ``k`` (its optimizer ``resumed`` if given) and fit it."""
        import keras

        prepare_stage(model, self.spec, k)
        # A pipeline check (a random-weight backbone's few capped steps) runs eagerly:
        # tracing a 20-56 M-parameter backbone's train and test functions costs more than
        # its steps (14 of xception_finetune's 30 s in the demo). Whole epochs are traced.
        model.compile(
            optimizer=keras.optimizers.Adam(learning_rate=stage.learning_rate),
            loss="sparse_categorical_crossentropy",
            metrics=["accuracy"],
            jit_compile=self.profile.jit_compile and not self.pipeline_check,
            run_eagerly=self.pipeline_check,
        )
        if resumed is not None:
            restore_optimizer(model, resumed["optimizer"], checkpoint.location)
        callback_state = resumed["callbacks"] if resumed is not None else {}
        stage_start = sum(1 for r in self.records if r["stage"] < k)
        callbacks = self._callbacks(k, stage, stage_start, callback_state, checkpoint)
        self.fit_started = time.perf_counter()
        model.fit(
            train_ds,
            validation_data=val_ds,
            epochs=stage_start + stage.epochs,
            initial_epoch=len(self.records),
            callbacks=callbacks,
            shuffle=False,  # the dataset shuffles itself
            verbose=verbose,
        )
        self.fit_seconds += time.perf_counter() - self.fit_started

    def _callbacks(self, k, stage, stage_start, callback_state, checkpoint) -> list:
        """Stage ``k``'s callbacks, the resumable ones from ``callback_state``."""
        import keras

        profile = self.profile
        stateful = {
            "reduce_lr": resumable(
                keras.callbacks.ReduceLROnPlateau,
                ("wait", "best", "cooldown_counter"),
                callback_state.get("reduce_lr"),
                monitor="val_loss",
                factor=profile.lr_factor,
                patience=stage.lr_patience,
                min_delta=profile.min_delta,
                verbose=1,
            ),
            "early_stopping": resumable(
                keras.callbacks.EarlyStopping,
                ("wait", "best", "best_epoch", "stopped_epoch"),
                callback_state.get("early_stopping"),
                monitor="val_loss",
                patience=stage.stop_patience,
                restore_best_weights=False,
                verbose=1,
            ),
        }
        # TensorBoard precedes ReduceLROnPlateau so it logs the rate the epoch used;
        # the checkpoint comes last, to save what every other callback did.
        return [
            *self.extra_callbacks,
            epoch_recorder(self, k),
            progress_printer(self, k, sum(s.epochs for s in self.stages)),
            keras.callbacks.TensorBoard(
                log_dir=f"{self.logs}/stage{k}" if len(self.stages) > 1 else self.logs,
                write_graph=True,
                update_freq="epoch",
            ),
            stateful["reduce_lr"],
            stateful["early_stopping"],
            checkpointer(self, checkpoint, k, stage_start + stage.epochs, stateful),
        ]

    def _results(self, model) -> dict[str, Any]:
        """The history's figures of the finished run (``model`` is the saved one)."""
        epochs_run = len(self.records)
        val_accs = [r["val_accuracy"] for r in self.records if r["val_accuracy"] is not None]
        return {
            "epochs": self.records,
            "epochs_run": epochs_run,
            "best_epoch": self.best_epoch,
            "best_val_accuracy": max(val_accs) if val_accs else None,
            "best_val_loss": self.best_val_loss if self.best_epoch is not None else None,
            "train_time_s": round(self.fit_seconds, 3),
            "images_per_s": round(self.train_count * epochs_run / self.fit_seconds, 2),
            "total_params": int(model.count_params()),
            "trainable_params": count_trainable_params(model),
            "replicas": self.replicas,
            "peak_memory_mb": peak_memory_mb(),
        }

    def _resume(self, model, checkpoint: Checkpoint, state: dict[str, Any]):
        """Load a checkpoint's state into this run and ``model``.

        Returns:
            ``(first stage to run, state to continue that stage with or None)``: after
            a finished stage the next one starts afresh.
        """
        arrays = state["arrays"]
        assign_arrays(model.weights, arrays["model"], checkpoint.location, "model")
        best = arrays["model"] if state["best_is_last"] else arrays["best"]
        if best:
            check_fit(model.weights, best, checkpoint.location, "best")
            self.best_weights = list(zip(model.weights, best, strict=True))
        self.records = state["records"]
        self.best_val_loss = state["best_val_loss"]
        self.best_epoch = state["best_epoch"]
        self.fit_seconds = state["fit_seconds"]
        stage = state["stage"]
        if state["stage_done"]:
            first_stage, continuing = stage + 1, None
        else:
            first_stage = stage
            continuing = {"optimizer": arrays["optimizer"], "callbacks": state["callbacks"]}
        n = len(self.records)
        if first_stage <= len(self.stages):
            print(f"resuming {self.model_name} from epoch {n + 1} (stage {first_stage})")
        else:
            print(f"resuming {self.model_name} after its last epoch ({n}): saving the model")
        sys.stdout.flush()
        return first_stage, continuing

    def save_checkpoint(self, model, checkpoint, stage, stage_done, callbacks_state) -> None:
        """Save the state after the epoch just recorded
        (:class:`cnnzoo.training.checkpoint.Checkpoint`)."""
        fit_seconds = self.fit_seconds + (time.perf_counter() - self.fit_started)
        # The best weights are often this epoch's: then they are not saved twice.
        best_is_last = self.best_weights is not None and self.best_epoch == len(self.records)
        checkpoint.save(
            {
                "model": self.model_name,
                "epoch": len(self.records),
                "stage": stage,
                "stage_done": stage_done,
                "records": self.records,
                "best_val_loss": self.best_val_loss,
                "best_epoch": self.best_epoch,
                "fit_seconds": fit_seconds,
                "callbacks": callbacks_state,
                "best_is_last": best_is_last,
            },
            {
                "model": [w.numpy() for w in model.weights],
                "optimizer": [v.numpy() for v in model.optimizer.variables],
                "best": []
                if best_is_last or not self.best_weights
                else [a for _, a in self.best_weights],
            },
        )


def peak_memory_mb() -> float:
    """This process's peak resident memory so far, in MiB (Linux reports KiB)."""

    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def distribution_strategy():
    """``MirroredStrategy`` over every visible GPU when there is more than one, else the
    default (single-device) strategy."""
    import tensorflow as tf

    gpus = tf.config.list_logical_devices("GPU")
    if len(gpus) > 1:
        print(f"training on {len(gpus)} GPUs with MirroredStrategy", flush=True)
        return tf.distribute.MirroredStrategy([g.name for g in gpus])
    return tf.distribute.get_strategy()


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


@contextlib.contextmanager
def _log_folder(model_logs: str):
    """The folder Keras writes TensorBoard events to while training.

    A local ``model_logs`` is used as is. For a ``gs://`` one, the events are written
    to a local scratch folder that :class:`cnnzoo.storage.logsync.LogSync` uploads every
    :data:`LOG_SYNC_S` seconds (so TensorBoard shows training live) and once more at
    the end; new event files get new names, so a resumed run adds to the old ones.
    """
    if not is_gcs(model_logs):
        yield model_logs
        return

    with tempfile.TemporaryDirectory(prefix="cnnzoo-tb-") as tmp:
        with LogSync(tmp, model_logs, interval_s=LOG_SYNC_S):
            yield tmp


def _log_hparams(model_logs: str, model_name, spec, profile: Profile, history) -> None:
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
