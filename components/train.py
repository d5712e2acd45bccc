"""The train step: train one registered model configuration."""

from kfp.dsl import Artifact, Dataset, Input, Model, Output

from cnnzoo.components import make_component


def train(
    model_name: str,
    splits: Input[Dataset],
    profile: str,
    tensorboard_root: str,
    output_uri: str,
    model: Output[Model],
    tensorboard: Output[Artifact],
    seed: int = -1,
):
    """Train ``model_name`` on ``splits``; ``model`` gets model.keras, config.yaml, history.json.

    ``profile`` is the resolved profile as JSON (``Profile.to_dict()``); ``seed`` (the
    plan record's; -1 for the profile's) is this run's training seed. With
    ``repeats > 1`` in the profile every path below names the run
    ``<model_name>/seed-<seed>`` instead of ``<model_name>``
    (:func:`cnnzoo.config.profile.run_label`), so repeats do not collide.

    TensorBoard logs go to ``<tensorboard_root>/<model_name>/`` when a root is given
    (e.g. ``gs://bucket/tb/<run>``, one place for every model), else to
    ``<output_uri>/tensorboard/<model_name>/`` when an output location is given, else into
    ``tensorboard``. A training error is recorded in history.json (status "failed") for
    the report; a crash (lost node, OOM kill) fails the task so the retry policy applies.

    With an ``output_uri`` (a local folder or ``gs://bucket/prefix``) the training state
    is checkpointed every epoch to ``<output_uri>/checkpoints/<model_name>/``, and the
    finished ``model`` folder is copied to ``<output_uri>/models/<model_name>/``. A retried
    pod gets a fresh ``model`` path, so only a checkpoint there lets a retry after
    preemption resume instead of starting over; without ``output_uri`` the checkpoint
    lives in ``model`` and a retry starts from epoch 1.
    """
    import json
    import os

    from cnnzoo.config.profile import profile_from_dict
    from cnnzoo.storage.layout import output_location, run_label, run_logs_root
    from cnnzoo.storage.local import atomic_write_text
    from cnnzoo.storage.outputs import export_folder
    from cnnzoo.training.train import train_model

    prof = profile_from_dict(json.loads(profile))
    if seed >= 0:  # this repeat's seed, checked like any profile value
        prof = profile_from_dict({**prof.to_dict(), "seed": seed})
    label = run_label(model_name, prof.seed, prof.repeats)
    logs_root = run_logs_root(tensorboard_root, output_uri) or tensorboard.path
    checkpoint = output_location(output_uri, "checkpoints", label) if output_uri else None
    print(f"[cnnzoo] train {label}: started", flush=True)
    history = train_model(
        model_name,
        splits.path,
        model.path,
        prof,
        logs_dir=logs_root,
        checkpoint_dir=checkpoint,
        logs_name=label,
    )
    keys = (
        "status",
        "epochs_run",
        "best_val_accuracy",
        "best_val_loss",
        "total_params",
        "train_time_s",
        "error",
    )
    model.metadata.update(
        {"model": model_name, "seed": prof.seed, **{k: history[k] for k in keys if k in history}}
    )
    tensorboard.metadata["logs"] = f"{logs_root}/{label}"
    if logs_root != tensorboard.path:
        # The artifact must exist; it points at the shared logs root.
        os.makedirs(tensorboard.path, exist_ok=True)
        atomic_write_text(os.path.join(tensorboard.path, "LOGS_AT.txt"), f"{logs_root}/{label}\n")
    if output_uri:
        exported = export_folder(model.path, output_uri, "models", *label.split("/"))
        model.metadata["exported"] = exported
        print(f"[cnnzoo] train {label}: model exported to {exported}", flush=True)
    if history.get("status") == "ok":
        print(
            f"[cnnzoo] train {label} done: {history['epochs_run']} epochs, "
            f"best val_accuracy {history['best_val_accuracy']:.4f}, "
            f"peak memory {history['peak_memory_mb']:.0f} MiB",
            flush=True,
        )
    else:
        print(f"[cnnzoo] train {label} FAILED: {history.get('error')}", flush=True)


def op(image: str):
    """The train component on ``image``."""
    return make_component(train, image)
