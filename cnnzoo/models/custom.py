"""The study's five custom CNN architectures, built from scratch.

Each architecture is a function ``builder(num_classes, img_size, name=...)`` returning
an uncompiled ``keras.Model`` that starts with ``Rescaling(1/255)`` and ends with a
float32 softmax layer named ``"predictions"``. It performs no argument checks
(:func:`cnnzoo.models.build.build_model` checks them first). A custom configuration of
the registry names its architecture by its key in :data:`ARCHITECTURES`; each builder
is registered there with :func:`~cnnzoo.models.registry.register_architecture`, the
decorator a plugin uses too.

Architectures and parameter counts are the original study's (``docs/the-study.md``):
at 100 px and 5 classes every model has exactly the notebook's total parameter count.

Each configuration's min_img_size is the smallest size for which every spatial dimension
stays >= 1 (valid convs and 2x2 pools shrink it):

- simple:     s-2 -> /2 -> -2 >= 1                                  => 8
- mid:        (s-4)/2 -> (-4)/2 -> (-4)/2 >= 1                      => 36
- inception:  (s-6)/2 -> (-6)/2 -> -6 >= 1                          => 46
- resnet:     pad 3 then 7x7/2 valid needs s+6 >= 7; everything after is "same" => 1
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from cnnzoo.models.registry import ARCHITECTURE_BUILDERS, register_architecture

# Keras is imported inside the functions: it is heavy, and importing this module is not.


def _layers():
    from keras import layers

    return layers


def classifier(x, num_classes: int):
    """The softmax head every model of the study ends with (pretrained ones too).

    Args:
        x: the features (a Keras tensor).
        num_classes: size of the softmax output.

    Returns:
        The output of a ``Dense(num_classes, softmax)`` layer named ``"predictions"``,
        in float32 even under a mixed-precision policy, for a stable loss.
    """
    dense = _layers().Dense(num_classes, activation="softmax", dtype="float32", name="predictions")
    return dense(x)


def _custom_input(img_size: int):
    import keras

    inputs = keras.Input((img_size, img_size, 3), name="image")
    return inputs, _layers().Rescaling(1.0 / 255, name="rescaling")(inputs)


@register_architecture("simple")
def build_simple(num_classes: int, img_size: int, name: str = "simple"):
    """2 conv layers + dense head.

    Args:
        num_classes: size of the softmax output.
        img_size: square input size in pixels.
        name: the model's name.

    Returns:
        An uncompiled ``keras.Model``.
    """
    import keras

    L = _layers()
    inputs, x = _custom_input(img_size)
    x = L.Conv2D(32, 3, activation="relu", name="conv1")(x)
    x = L.MaxPooling2D(2, name="pool1")(x)
    x = L.Conv2D(64, 3, activation="relu", name="conv2")(x)
    x = L.Flatten(name="flatten")(x)
    return keras.Model(inputs, classifier(x, num_classes), name=name)


@register_architecture("mid")
def build_mid(num_classes: int, img_size: int, name: str = "mid"):
    """3 double-conv blocks + dense head.

    Args:
        num_classes: size of the softmax output.
        img_size: square input size in pixels.
        name: the model's name.

    Returns:
        An uncompiled ``keras.Model``.
    """
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
    return keras.Model(inputs, classifier(x, num_classes), name=name)


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
    return classifier(x, num_classes)


@register_architecture("resnet")
def build_resnet(num_classes: int, img_size: int, name: str = "resnet"):
    """ResNet-style, 4 stages of residual blocks.

    Args:
        num_classes: size of the softmax output.
        img_size: square input size in pixels.
        name: the model's name.

    Returns:
        An uncompiled ``keras.Model``.
    """
    import keras

    inputs, x = _custom_input(img_size)
    return keras.Model(inputs, _resnet_body(x, num_classes), name=name)


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


@register_architecture("inception")
def build_inception(num_classes: int, img_size: int, name: str = "inception"):
    """3 Inception blocks with 7x7 convs.

    Args:
        num_classes: size of the softmax output.
        img_size: square input size in pixels.
        name: the model's name.

    Returns:
        An uncompiled ``keras.Model``.
    """
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
    return keras.Model(inputs, classifier(x, num_classes), name=name)


@register_architecture("resnet_aug")
def build_resnet_aug(num_classes: int, img_size: int, name: str = "resnet_aug"):
    """The resnet architecture with data augmentation layers after the rescaling.

    Args:
        num_classes: size of the softmax output.
        img_size: square input size in pixels.
        name: the model's name.

    Returns:
        An uncompiled ``keras.Model``.
    """
    import keras

    L = _layers()
    inputs, x = _custom_input(img_size)
    # Augmentation after the 1/255 rescaling, so the noise's stddev of 0.01 is in [0, 1]
    # units; these layers only act when the model is called with training=True.
    x = L.RandomFlip("horizontal", name="aug_flip")(x)
    x = L.RandomRotation(0.1, name="aug_rotation")(x)
    x = L.RandomZoom(0.2, name="aug_zoom")(x)
    x = L.GaussianNoise(0.01, name="aug_noise")(x)
    return keras.Model(inputs, _resnet_body(x, num_classes), name=name)


#: Custom architectures by key (a spec's ``architecture``): ``builder(num_classes,
#: img_size, name=...)`` -> uncompiled ``keras.Model``. The registry's table, which
#: :func:`~cnnzoo.models.registry.register_architecture` fills: the five above, and any a
#: plugin registers (``docs/your-own-configurations.md``).
ARCHITECTURES: dict[str, Callable[..., Any]] = ARCHITECTURE_BUILDERS
