"""The registry of the fourteen model configurations of the study, and their builders.

Every configuration is registered once, under a stable name, by ``@register_model(...)``
on its builder (which carries its strategy, base and minimum input size); the CLI, the
pipeline's fan-out, the tests and the report all enumerate :func:`list_models`.
:func:`build_model` turns a name into an uncompiled ``keras.Model`` and
:func:`prepare_stage` sets which weights train in each stage of a run.

Architectures and parameter counts are the original study's (``docs/the-study.md``):
at 100 px and 5 classes every model has exactly the notebook's total parameter count.

BatchNorm inside a pretrained base always runs in inference mode (its statistics and
its scale/offset stay as loaded). Keras 3 does not honour ``base(x, training=False)``
once the outer model is called with ``training=True`` (``fit`` does; see
keras-team/keras#20285), so this is done the way Keras 3 does honour: every
``BatchNormalization`` layer of the base has ``trainable = False``, which makes it
use its moving statistics whatever ``training`` is. The flag is saved with the model,
so a reloaded model behaves the same.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cnnzoo.core.errors import CnnzooError

STRATEGIES = ("scratch", "augment", "transfer", "finetune", "partial")
BASES = ("resnet50v2", "mobilenetv2", "xception")

#: Layer name of the pretrained backbone inside a built model (``model.get_layer(BASE_LAYER)``).
BASE_LAYER = "base"
#: How many of the base's last layers the ``partial`` strategy unfreezes.
PARTIAL_LAYERS = 10


@dataclass(frozen=True)
class ModelSpec:
    """What a registered configuration is.

    Attributes:
        name: registry name, e.g. ``"xception_partial"``.
        strategy: ``scratch`` (custom CNN), ``augment`` (custom CNN with augmentation),
            ``transfer``, ``finetune`` (two stages) or ``partial``.
        base: the ImageNet backbone for pretrained configurations, else None.
        min_img_size: smallest input size the architecture accepts.
        description: one line for tables and ``cnnzoo models``.
        builder: the registered function, ``builder(num_classes, img_size, weights)`` ->
            uncompiled ``keras.Model``, with no argument checks (:func:`build_model`
            checks them).
    """

    name: str
    strategy: str
    base: str | None
    min_img_size: int
    description: str
    builder: Callable[..., Any] = field(repr=False, compare=False)

    @property
    def pretrained(self) -> bool:
        return self.base is not None


_REGISTRY: dict[str, ModelSpec] = {}


def register_model(
    name: str, *, strategy: str, base: str | None = None, min_img_size: int, description: str
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register the decorated builder under ``name``; registration order is the study's.

    Args:
        name: the configuration's stable registry name.
        strategy: one of :data:`STRATEGIES`.
        base: one of :data:`BASES` for a pretrained configuration, else None.
        min_img_size: smallest square input size the architecture accepts.
        description: one line for tables and ``cnnzoo models``.

    Returns:
        A decorator that records the builder and returns it unchanged.

    Raises:
        ValueError: ``name`` is already registered, or ``strategy``/``base`` is unknown.
    """
    if name in _REGISTRY:
        raise ValueError(f"model configuration {name!r} is registered twice")
    if strategy not in STRATEGIES or (base is not None and base not in BASES):
        raise ValueError(f"{name}: unknown strategy {strategy!r} or base {base!r}")

    def decorator(builder: Callable[..., Any]) -> Callable[..., Any]:
        _REGISTRY[name] = ModelSpec(name, strategy, base, min_img_size, description, builder)
        return builder

    return decorator


def list_models() -> list[str]:
    """The registered configuration names, in the study's order."""
    return list(_REGISTRY)


def get_spec(name: str) -> ModelSpec:
    """The spec of a registered configuration.

    Raises:
        CnnzooError: ``name`` is not registered (the message lists the valid names).
    """
    try:
        return _REGISTRY[name]
    except KeyError:
        raise CnnzooError(
            f"unknown model configuration {name!r} (valid: {', '.join(_REGISTRY)})"
        ) from None


def build_model(
    name: str, num_classes: int, img_size: int, weights: str | os.PathLike | None = None
):
    """Build the uncompiled ``keras.Model`` of a registered configuration.

    Custom models start with ``Rescaling(1/255)``; pretrained ones with the scaling
    their base was trained with (``[-1, 1]`` for all three bases). Pretrained models
    are ``Input -> Rescaling -> base (layer "base") -> Flatten -> Dense 1000 relu ->
    Dense num_classes softmax``, with the base's trainable layers set for the strategy:
    ``transfer`` and ``finetune`` (its stage 1) freeze the whole base; ``partial``
    unfreezes the last 10 entries of ``base.layers`` (every layer counts, including
    ones without weights such as activations, paddings and adds), except BatchNorm
    layers, which stay frozen in inference mode in every strategy (see the module
    docstring). Call :func:`prepare_stage` before each training stage.

    Args:
        name: a name from :func:`list_models`.
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
    spec = get_spec(name)
    if num_classes < 2:
        raise CnnzooError(f"{name}: num_classes must be >= 2, got {num_classes}")
    if img_size < spec.min_img_size:
        raise CnnzooError(
            f"{name}: img_size {img_size} is below the minimum of {spec.min_img_size} px"
        )
    return spec.builder(num_classes, img_size, weights)


def prepare_stage(model, name: str, stage: int) -> None:
    """Set which weights of a built model train in ``stage`` (1 or 2) of its run.

    ``*_finetune``: stage 1 freezes the whole base (only the head trains); stage 2
    makes every layer trainable except the base's BatchNorm layers, which keep their
    loaded scale, offset and statistics and run in inference mode. For every other
    configuration there is one stage and stage 1 is a no-op. Recompile the model
    after calling this (trainability is captured when the train function is built).

    Args:
        model: a model from :func:`build_model` (or reloaded from its saved file).
        name: its configuration name.
        stage: 1 or 2.

    Raises:
        CnnzooError: unknown name, a stage other than 1 or 2, or stage 2 for a
            configuration with one stage.
    """
    spec = get_spec(name)
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
        _freeze_batchnorm(base)


def get_base(model):
    """The pretrained base (layer ``"base"``) of a model built for a pretrained config.

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
    """Number of scalar parameters in ``model.trainable_weights``."""
    import math

    return int(sum(math.prod(w.shape) for w in model.trainable_weights))


# --- custom models -----------------------------------------------------------------------
# Each min_img_size is the smallest size for which every spatial dimension stays >= 1
# (valid convs and 2x2 pools shrink it):
#   simple     s-2 -> /2 -> -2 >= 1                                  => 8
#   mid        (s-4)/2 -> (-4)/2 -> (-4)/2 >= 1                      => 36
#   inception  (s-6)/2 -> (-6)/2 -> -6 >= 1                          => 46
#   resnet     pad 3 then 7x7/2 valid needs s+6 >= 7; everything after is "same" => 1


def _layers():
    from keras import layers

    return layers


def _classifier(x, num_classes: int):
    # float32 output even under a mixed-precision policy, for a stable loss
    dense = _layers().Dense(num_classes, activation="softmax", dtype="float32", name="predictions")
    return dense(x)


def _custom_input(img_size: int):
    import keras

    inputs = keras.Input((img_size, img_size, 3), name="image")
    return inputs, _layers().Rescaling(1.0 / 255, name="rescaling")(inputs)


@register_model(
    "simple", strategy="scratch", min_img_size=8, description="2 conv layers + dense head"
)
def _build_simple(num_classes: int, img_size: int, weights=None):
    import keras

    L = _layers()
    inputs, x = _custom_input(img_size)
    x = L.Conv2D(32, 3, activation="relu", name="conv1")(x)
    x = L.MaxPooling2D(2, name="pool1")(x)
    x = L.Conv2D(64, 3, activation="relu", name="conv2")(x)
    x = L.Flatten(name="flatten")(x)
    return keras.Model(inputs, _classifier(x, num_classes), name="simple")


@register_model(
    "mid", strategy="scratch", min_img_size=36, description="3 double-conv blocks + dense head"
)
def _build_mid(num_classes: int, img_size: int, weights=None):
    import keras

    L = _layers()
    inputs, x = _custom_input(img_size)
    for i, filters in enumerate((32, 64, 128), start=1):
        x = L.Conv2D(filters, 3, activation="relu", name=f"block{i}_conv1")(x)
        x = L.Conv2D(filters, 3, activation="relu", name=f"block{i}_conv2")(x)
        x = L.MaxPooling2D(2, name=f"block{i}_pool")(x)
        if i == 1:
            x = L.Dropout(0.25, name="block1_dropout")(x)
    x = L.Flatten(name="flatten")(x)
    x = L.Dense(128, activation="relu", name="fc")(x)
    return keras.Model(inputs, _classifier(x, num_classes), name="mid")


def _identity_block(x, filters: int, name: str):
    L = _layers()
    shortcut = x
    x = L.Conv2D(filters, 3, padding="same", name=f"{name}_conv1")(x)
    x = L.BatchNormalization(name=f"{name}_bn1")(x)
    x = L.ReLU(name=f"{name}_relu1")(x)
    x = L.Conv2D(filters, 3, padding="same", name=f"{name}_conv2")(x)
    x = L.BatchNormalization(name=f"{name}_bn2")(x)
    x = L.Add(name=f"{name}_add")([x, shortcut])
    return L.ReLU(name=f"{name}_out")(x)


def _conv_block(x, filters: int, name: str):
    L = _layers()
    shortcut = L.Conv2D(filters, 1, strides=2, name=f"{name}_shortcut")(x)
    x = L.Conv2D(filters, 3, strides=2, padding="same", name=f"{name}_conv1")(x)
    x = L.BatchNormalization(name=f"{name}_bn1")(x)
    x = L.ReLU(name=f"{name}_relu1")(x)
    x = L.Conv2D(filters, 3, padding="same", name=f"{name}_conv2")(x)
    x = L.BatchNormalization(name=f"{name}_bn2")(x)
    x = L.Add(name=f"{name}_add")([x, shortcut])
    return L.ReLU(name=f"{name}_out")(x)


def _resnet_body(x, num_classes: int):
    L = _layers()
    x = L.ZeroPadding2D(3, name="stem_pad")(x)
    x = L.Conv2D(64, 7, strides=2, name="stem_conv")(x)
    x = L.BatchNormalization(name="stem_bn")(x)
    x = L.ReLU(name="stem_relu")(x)
    x = L.MaxPooling2D(3, strides=2, padding="same", name="stem_pool")(x)
    x = _identity_block(x, 64, "stage1_id1")
    x = _identity_block(x, 64, "stage1_id2")
    for stage, filters in enumerate((128, 256, 512), start=2):
        x = _conv_block(x, filters, f"stage{stage}_conv")
        x = _identity_block(x, filters, f"stage{stage}_id")
    # Dense on the 4-D map acts per position (the notebook's order: dense, then pool)
    x = L.Dense(1000, activation="relu", name="fc")(x)
    x = L.GlobalAveragePooling2D(name="avg_pool")(x)
    return _classifier(x, num_classes)


@register_model(
    "resnet",
    strategy="scratch",
    min_img_size=1,
    description="ResNet-style, 4 stages of residual blocks",
)
def _build_resnet(num_classes: int, img_size: int, weights=None):
    import keras

    inputs, x = _custom_input(img_size)
    return keras.Model(inputs, _resnet_body(x, num_classes), name="resnet")


def _inception_block(x, filters: tuple[int, int, int, int], name: str):
    L = _layers()
    n0, n1, n2, n3 = filters

    def conv(t, n, k, suffix):
        return L.Conv2D(n, k, padding="same", activation="relu", name=f"{name}_{suffix}")(t)

    b0 = conv(x, n0, 1, "b0_1x1")
    b1 = conv(conv(x, n1, 1, "b1_1x1"), n1, 3, "b1_3x3")
    b2 = L.MaxPooling2D(2, strides=1, padding="same", name=f"{name}_b2_pool")(x)
    b2 = conv(b2, n2, 1, "b2_1x1")
    b3 = conv(conv(conv(x, n3, 1, "b3_1x1"), n3, 3, "b3_3x3a"), n3, 3, "b3_3x3b")
    return L.Concatenate(name=f"{name}_concat")([b0, b1, b2, b3])


@register_model(
    "inception",
    strategy="scratch",
    min_img_size=46,
    description="3 Inception blocks with 7x7 convs",
)
def _build_inception(num_classes: int, img_size: int, weights=None):
    import keras

    L = _layers()
    inputs, x = _custom_input(img_size)
    n_blocks = 3
    for i in range(1, n_blocks + 1):
        x = _inception_block(x, (32, 32, 64, 64), f"inception{i}")
        x = L.BatchNormalization(name=f"inception{i}_bn")(x)
        x = L.Conv2D(64, 7, activation="relu", name=f"inception{i}_conv7x7")(x)
        if i < n_blocks:
            x = L.MaxPooling2D(2, name=f"inception{i}_pool")(x)
    x = L.Flatten(name="flatten")(x)
    x = L.Dense(1000, activation="relu", name="fc")(x)
    return keras.Model(inputs, _classifier(x, num_classes), name="inception")


@register_model(
    "resnet_aug", strategy="augment", min_img_size=1, description="resnet with data augmentation"
)
def _build_resnet_aug(num_classes: int, img_size: int, weights=None):
    import keras

    L = _layers()
    inputs, x = _custom_input(img_size)
    # Augmentation after the 1/255 rescaling, so the noise's stddev of 0.01 is in [0, 1]
    # units; these layers only act when the model is called with training=True.
    x = L.RandomFlip("horizontal", name="aug_flip")(x)
    x = L.RandomRotation(0.1, name="aug_rotation")(x)
    x = L.RandomZoom(0.2, name="aug_zoom")(x)
    x = L.GaussianNoise(0.01, name="aug_noise")(x)
    return keras.Model(inputs, _resnet_body(x, num_classes), name="resnet_aug")


# --- pretrained models -------------------------------------------------------------------

# keras.applications constructor of each base; also its title in messages.
_BASE_CONSTRUCTOR = {
    "resnet50v2": "ResNet50V2",
    "mobilenetv2": "MobileNetV2",
    "xception": "Xception",
}


def _notop_file_names(base: str, img_size: int) -> list[str]:
    """Keras' own file names for the base's ImageNet notop weights, preferred first."""
    if base == "resnet50v2":
        return ["resnet50v2_weights_tf_dim_ordering_tf_kernels_notop.h5"]
    if base == "xception":
        return ["xception_weights_tf_dim_ordering_tf_kernels_notop.h5"]
    # MobileNetV2 has one file per input size; Keras uses 224's for other sizes
    sizes = [img_size] if img_size in (96, 128, 160, 192, 224) else []
    sizes += [s for s in (224, 192, 160, 128, 96) if s not in sizes]
    return [f"mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_{s}_no_top.h5" for s in sizes]


def _candidate_names(base: str, img_size: int) -> list[str]:
    return [f"{base}.weights.h5", *_notop_file_names(base, img_size)]


def _build_pretrained(name: str, num_classes: int, img_size: int, weights):
    import keras

    spec = get_spec(name)

    L = _layers()
    use_imagenet = weights is not None and str(weights) == "imagenet"
    constructor = getattr(keras.applications, _BASE_CONSTRUCTOR[spec.base])
    base = constructor(
        include_top=False,
        weights="imagenet" if use_imagenet else None,
        input_shape=(img_size, img_size, 3),
        name=BASE_LAYER,
    )
    if weights is not None and not use_imagenet:
        with _local_weights_file(weights, spec.base, img_size) as path:
            try:
                base.load_weights(str(path))
            except Exception as e:  # OSError from h5py, ValueError for mismatches, ...
                where = "" if str(path) == str(weights) else f" (read from {path})"
                reason = (str(e).strip().splitlines() or [""])[0][:200]
                raise CnnzooError(
                    f"{weights}: cannot load {_BASE_CONSTRUCTOR[spec.base]} weights{where}: "
                    f"{type(e).__name__}: {reason}"
                ) from None

    inputs = keras.Input((img_size, img_size, 3), name="image")
    # All three bases were trained on inputs scaled to [-1, 1] ("tf" preprocessing)
    x = L.Rescaling(1.0 / 127.5, offset=-1.0, name="rescaling")(inputs)
    x = base(x)
    x = L.Flatten(name="flatten")(x)
    x = L.Dense(1000, activation="relu", name="fc")(x)
    model = keras.Model(inputs, _classifier(x, num_classes), name=spec.name)

    if spec.strategy == "partial":
        base.trainable = True
        for layer in base.layers[:-PARTIAL_LAYERS]:
            layer.trainable = False
        _freeze_batchnorm(base)
    else:  # transfer, and finetune's stage 1
        base.trainable = False
    return model


# Smallest inputs keras.applications accepts: 32 px for ResNet50V2 and MobileNetV2, 71 for
# Xception. Each builder is registered where it is defined, so the order here is the
# registry's: transfer, finetune, partial for each base.


@register_model(
    "resnet50v2_transfer",
    strategy="transfer",
    base="resnet50v2",
    min_img_size=32,
    description="ResNet50V2: frozen base, head trained",
)
def _build_resnet50v2_transfer(num_classes: int, img_size: int, weights=None):
    return _build_pretrained("resnet50v2_transfer", num_classes, img_size, weights)


@register_model(
    "resnet50v2_finetune",
    strategy="finetune",
    base="resnet50v2",
    min_img_size=32,
    description="ResNet50V2: head first, then the whole model (two stages)",
)
def _build_resnet50v2_finetune(num_classes: int, img_size: int, weights=None):
    return _build_pretrained("resnet50v2_finetune", num_classes, img_size, weights)


@register_model(
    "resnet50v2_partial",
    strategy="partial",
    base="resnet50v2",
    min_img_size=32,
    description="ResNet50V2: last 10 base layers + head trained",
)
def _build_resnet50v2_partial(num_classes: int, img_size: int, weights=None):
    return _build_pretrained("resnet50v2_partial", num_classes, img_size, weights)


@register_model(
    "mobilenetv2_transfer",
    strategy="transfer",
    base="mobilenetv2",
    min_img_size=32,
    description="MobileNetV2: frozen base, head trained",
)
def _build_mobilenetv2_transfer(num_classes: int, img_size: int, weights=None):
    return _build_pretrained("mobilenetv2_transfer", num_classes, img_size, weights)


@register_model(
    "mobilenetv2_finetune",
    strategy="finetune",
    base="mobilenetv2",
    min_img_size=32,
    description="MobileNetV2: head first, then the whole model (two stages)",
)
def _build_mobilenetv2_finetune(num_classes: int, img_size: int, weights=None):
    return _build_pretrained("mobilenetv2_finetune", num_classes, img_size, weights)


@register_model(
    "mobilenetv2_partial",
    strategy="partial",
    base="mobilenetv2",
    min_img_size=32,
    description="MobileNetV2: last 10 base layers + head trained",
)
def _build_mobilenetv2_partial(num_classes: int, img_size: int, weights=None):
    return _build_pretrained("mobilenetv2_partial", num_classes, img_size, weights)


@register_model(
    "xception_transfer",
    strategy="transfer",
    base="xception",
    min_img_size=71,
    description="Xception: frozen base, head trained",
)
def _build_xception_transfer(num_classes: int, img_size: int, weights=None):
    return _build_pretrained("xception_transfer", num_classes, img_size, weights)


@register_model(
    "xception_finetune",
    strategy="finetune",
    base="xception",
    min_img_size=71,
    description="Xception: head first, then the whole model (two stages)",
)
def _build_xception_finetune(num_classes: int, img_size: int, weights=None):
    return _build_pretrained("xception_finetune", num_classes, img_size, weights)


@register_model(
    "xception_partial",
    strategy="partial",
    base="xception",
    min_img_size=71,
    description="Xception: last 10 base layers + head trained",
)
def _build_xception_partial(num_classes: int, img_size: int, weights=None):
    return _build_pretrained("xception_partial", num_classes, img_size, weights)


def _freeze_batchnorm(base) -> None:
    from keras import layers

    for layer in base.layers:
        if isinstance(layer, layers.BatchNormalization):
            layer.trainable = False


@contextlib.contextmanager
def _local_weights_file(weights, base: str, img_size: int) -> Iterator[Path]:
    """Yield a local file holding the base's weights named by ``weights``."""
    text = str(weights)
    if text.startswith("gs://"):
        with tempfile.TemporaryDirectory(prefix="cnnzoo-weights-") as tmp:
            yield _download_gcs_weights(text, base, img_size, Path(tmp))
        return
    path = Path(weights).expanduser()
    if path.is_dir():
        names = _candidate_names(base, img_size)
        for candidate in names:
            if (path / candidate).is_file():
                yield path / candidate
                return
        raise CnnzooError(
            f"{path}: no weights file for {base} in this directory (looked for {', '.join(names)})"
        )
    if not path.is_file():
        raise CnnzooError(f"{path}: weights file not found")
    yield path


def _download_gcs_weights(uri: str, base: str, img_size: int, dest_dir: Path) -> Path:
    """Download the weights at ``uri``: an object, or a folder holding a candidate name."""
    from cnnzoo.storage import gcs

    bucket, prefix = gcs.parse_gs_uri(uri)
    client = gcs.gcs_client(uri)
    if prefix and not prefix.endswith("/"):
        # keep the object's file name: load_weights picks the format by its suffix
        try:
            return gcs.download_file(uri, dest_dir / Path(prefix).name, client)
        except CnnzooError as e:
            if not str(e).endswith("no such object"):
                raise
        # not an object: perhaps a folder named without its trailing "/"
    folder = prefix.rstrip("/") + "/" if prefix.strip("/") else ""
    present = {b.name for b in gcs.list_objects(uri, client)}
    names = _candidate_names(base, img_size)
    for name in names:
        if folder + name in present:
            return gcs.download_file(f"gs://{bucket}/{folder}{name}", dest_dir / name, client)
    raise CnnzooError(
        f"{uri}: weights file not found (no such object, nor a folder holding {', '.join(names)})"
    )
