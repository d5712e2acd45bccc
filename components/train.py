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
    (:func:`cnnzoo.storage.layout.run_label`), so repeats do not collide.

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
    from cnnzoo.orchestration import tasks

    tasks.train(model_name, splits, profile, tensorboard_root, output_uri, model, tensorboard, seed)


def op(image: str):
    """The train component on ``image``."""
    return make_component(train, image)
