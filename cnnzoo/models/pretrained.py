"""The pretrained configurations' builder: an ImageNet base from keras.applications, a head.

A pretrained model is ``Input -> Rescaling -> base (layer "base") -> Flatten -> Dense
1000 relu -> Dense num_classes softmax``, with the base's trainable layers set for the
spec's strategy. The base's weights are random, Keras' ImageNet download, or a weights
file (local, or on GCS) found by :func:`_local_weights_file`.

BatchNorm inside a pretrained base always runs in inference mode (its statistics and
its scale/offset stay as loaded). Keras 3 does not honour ``base(x, training=False)``
once the outer model is called with ``training=True`` (``fit`` does; see
keras-team/keras#20285), so this is done the way Keras 3 does honour: every
``BatchNormalization`` layer of the base has ``trainable = False``, which makes it
use its moving statistics whatever ``training`` is (:func:`freeze_batchnorm`). The flag
is saved with the model, so a reloaded model behaves the same.
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterator
from pathlib import Path

from cnnzoo.core.errors import CnnzooError
from cnnzoo.models.custom import classifier
from cnnzoo.models.registry import BASE_LAYER, PARTIAL_LAYERS, ModelSpec
from cnnzoo.storage import gcs

# Keras is imported inside the functions: it is heavy, and importing this module is not.

# keras.applications constructor of each base; also its title in messages.
_BASE_CONSTRUCTOR = {
    "resnet50v2": "ResNet50V2",
    "mobilenetv2": "MobileNetV2",
    "xception": "Xception",
}


def build_pretrained(spec: ModelSpec, num_classes: int, img_size: int, weights=None):
    """Build the uncompiled model of a pretrained configuration, with no argument checks.

    ``transfer`` and ``finetune`` (its stage 1) freeze the whole base; ``partial``
    unfreezes the last :data:`~cnnzoo.models.registry.PARTIAL_LAYERS` entries of
    ``base.layers`` (every layer counts, including ones without weights such as
    activations, paddings and adds), except BatchNorm layers, which stay frozen in
    inference mode in every strategy (see the module docstring).

    Args:
        spec: a pretrained configuration's spec (``spec.base`` is set).
        num_classes: size of the softmax output.
        img_size: square input size in pixels.
        weights: None (random init), ``"imagenet"`` (Keras download), or the local path
            or ``gs://`` URI of a weights file or of a folder holding one (see
            :func:`cnnzoo.models.build.build_model`).

    Returns:
        An uncompiled ``keras.Model`` named ``spec.name``.

    Raises:
        CnnzooError: missing or unreadable weights.
    """
    import keras
    from keras import layers as L

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
    model = keras.Model(inputs, classifier(x, num_classes), name=spec.name)

    if spec.strategy == "partial":
        base.trainable = True
        for layer in base.layers[:-PARTIAL_LAYERS]:
            layer.trainable = False
        freeze_batchnorm(base)
    else:  # transfer, and finetune's stage 1
        base.trainable = False
    return model


def freeze_batchnorm(base) -> None:
    """Make every BatchNorm layer of ``base`` non-trainable, i.e. always in inference mode.

    Args:
        base: a pretrained base (a ``keras.Model``).
    """
    from keras import layers

    for layer in base.layers:
        if isinstance(layer, layers.BatchNormalization):
            layer.trainable = False


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
