"""Building a registered configuration, and setting which of its weights train.

:func:`build_model` turns a registry name into an uncompiled ``keras.Model``: a
pretrained configuration (``spec.base`` set) through
:func:`cnnzoo.models.pretrained.build_pretrained`, a custom one through its architecture
in :data:`cnnzoo.models.custom.ARCHITECTURES`. :func:`prepare_stage` sets which weights
train in each stage of a run.
"""

from __future__ import annotations

import math
import os

from cnnzoo.core.errors import CnnzooError
from cnnzoo.models.custom import ARCHITECTURES
from cnnzoo.models.pretrained import build_pretrained, freeze_batchnorm
from cnnzoo.models.registry import BASE_LAYER, ModelSpec, get_spec

# Keras is imported inside the functions: it is heavy, and importing this module is not.


def build_model(
    name: str | ModelSpec,
    num_classes: int,
    img_size: int,
    weights: str | os.PathLike | None = None,
):
    """Build the uncompiled ``keras.Model`` of a registered configuration.

    Custom models start with ``Rescaling(1/255)``; pretrained ones with the scaling
    their base was trained with (``[-1, 1]`` for all three bases). Pretrained models
    are ``Input -> Rescaling -> base (layer "base") -> Flatten -> Dense 1000 relu ->
    Dense num_classes softmax``, with the base's trainable layers set for the strategy:
    ``transfer`` and ``finetune`` (its stage 1) freeze the whole base; ``partial``
    unfreezes the last 10 entries of ``base.layers`` (every layer counts, including
    ones without weights such as activations, paddings and adds), except BatchNorm
    layers, which stay frozen in inference mode in every strategy (see
    :mod:`cnnzoo.models.pretrained`). Call :func:`prepare_stage` before each training
    stage.

    Args:
        name: a name from :func:`cnnzoo.models.registry.list_models`, or the spec of a
            profile's own configuration (:meth:`cnnzoo.config.profile.Profile.spec_for`).
        num_classes: size of the softmax output.
        img_size: square input size in pixels (RGB, uint8-range values 0..255).
        weights: ignored for custom models. For pretrained bases: None (random init),
            ``"imagenet"`` (Keras download), or the local path or ``gs://`` URI of a
            weights file for the base (``.weights.h5`` as written by
            ``base.save_weights``, or a legacy ``.h5`` such as Keras' own notop file),
            loaded with ``base.load_weights``. A directory (or a ``gs://`` folder) is
            searched for ``<base>.weights.h5`` (e.g. ``xception.weights.h5``), then for
            Keras' standard notop file name for that base (e.g.
            ``xception_weights_tf_dim_ordering_tf_kernels_notop.h5``; for MobileNetV2
            the one for ``img_size`` if Keras has it, else 224's, then the other sizes).
            ``gs://`` objects are fetched with :mod:`cnnzoo.storage.gcs` into a temporary
            file that is removed after loading.

    Returns:
        An uncompiled ``keras.Model`` named ``name``, taking ``(img_size, img_size, 3)``
        float inputs in 0..255 (scaling is inside the model).

    Raises:
        CnnzooError: unknown name, ``num_classes`` < 2, ``img_size`` below the
            configuration's minimum, missing or unreadable weights.
    """
    spec = name if isinstance(name, ModelSpec) else get_spec(name)
    name = spec.name
    if num_classes < 2:
        raise CnnzooError(f"{name}: num_classes must be >= 2, got {num_classes}")
    if img_size < spec.min_img_size:
        raise CnnzooError(
            f"{name}: img_size {img_size} is below the minimum of {spec.min_img_size} px"
        )
    if spec.pretrained:
        return build_pretrained(spec, num_classes, img_size, weights)
    return ARCHITECTURES[spec.architecture](num_classes, img_size, name=spec.name)


def prepare_stage(model, name: str | ModelSpec, stage: int) -> None:
    """Set which weights of a built model train in ``stage`` (1 or 2) of its run.

    ``*_finetune``: stage 1 freezes the whole base (only the head trains); stage 2
    makes every layer trainable except the base's BatchNorm layers, which keep their
    loaded scale, offset and statistics and run in inference mode. For every other
    configuration there is one stage and stage 1 is a no-op. Recompile the model
    after calling this (trainability is captured when the train function is built).

    Args:
        model: a model from :func:`build_model` (or reloaded from its saved file).
        name: its configuration name (or spec, as for :func:`build_model`).
        stage: 1 or 2.

    Raises:
        CnnzooError: unknown name, a stage other than 1 or 2, or stage 2 for a
            configuration with one stage.
    """
    spec = name if isinstance(name, ModelSpec) else get_spec(name)
    name = spec.name
    if stage not in (1, 2):
        raise CnnzooError(f"{name}: stage must be 1 or 2, got {stage!r}")
    if spec.strategy != "finetune":
        if stage == 2:
            raise CnnzooError(f"{name}: has one training stage, there is no stage 2")
        return
    base = get_base(model)
    if stage == 1:
        base.trainable = False
    else:
        base.trainable = True
        freeze_batchnorm(base)


def get_base(model):
    """The pretrained base (layer ``"base"``) of a model built for a pretrained config.

    Args:
        model: a model from :func:`build_model` for a pretrained configuration.

    Returns:
        Its base layer (a ``keras.Model``).

    Raises:
        CnnzooError: the model has no layer named ``"base"``.
    """
    try:
        return model.get_layer(BASE_LAYER)
    except ValueError:
        raise CnnzooError(f"model {model.name!r} has no {BASE_LAYER!r} layer") from None


def set_batchnorm_momentum(model, momentum: float | None) -> None:
    """Set the moving-statistics momentum of a built model's own BatchNorm layers.

    Keras' default (0.99) needs a few hundred steps before the moving mean and variance
    that inference uses describe the data; a short CPU run has a few dozen steps per
    epoch. The momentum is not a weight, so architecture and parameter counts are
    unchanged. BatchNorm layers inside a pretrained base are left alone: they always
    run in inference mode with their loaded statistics.

    Args:
        model: a model from :func:`build_model`.
        momentum: the new momentum in [0, 1), or None to keep Keras' default.
    """
    if momentum is None:
        return
    from keras import layers

    for layer in model.layers:
        if isinstance(layer, layers.BatchNormalization):
            layer.momentum = float(momentum)


def count_trainable_params(model) -> int:
    """Number of scalar parameters in ``model.trainable_weights``.

    Args:
        model: a built Keras model.

    Returns:
        The sum of the sizes of its trainable weights.
    """
    return int(sum(math.prod(w.shape) for w in model.trainable_weights))
