"""An example cnnzoo plugin: the architecture ``tinycnn``, registered as a configuration.

cnnzoo calls :func:`register` at start-up (the entry point ``tinycnn`` of the group
``cnnzoo.models`` in this package's ``pyproject.toml``). It decorates a builder with
:func:`cnnzoo.models.registry.register_architecture`, the decorator of cnnzoo's own custom
CNNs; with a ``description`` and a ``min_img_size`` that also registers a configuration of
the same name, which trains with the profile's ``models.tinycnn`` schedule (the default
one unless the profile sets it).
"""

from cnnzoo.models.registry import register_architecture


def register() -> None:
    """Register ``tinycnn`` (called once by cnnzoo when it loads its plugins)."""

    @register_architecture(
        "tinycnn",
        strategy="scratch",
        min_img_size=3,
        description="example plugin: 1 conv layer + global average pooling",
    )
    def build_tinycnn(num_classes: int, img_size: int, name: str = "tinycnn"):
        # Keras inside the builder: listing or planning a study never loads it.
        import keras
        from keras import layers

        inputs = keras.Input((img_size, img_size, 3), name="image")
        x = layers.Rescaling(1.0 / 255, name="rescaling")(inputs)
        x = layers.Conv2D(8, 3, activation="relu", name="conv1")(x)
        x = layers.GlobalAveragePooling2D(name="pool")(x)
        outputs = layers.Dense(
            num_classes, activation="softmax", dtype="float32", name="predictions"
        )(x)
        return keras.Model(inputs, outputs, name=name)
