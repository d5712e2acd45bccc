"""The registry of the fourteen model configurations of the study: what each one is.

Every configuration is registered once, under a stable name, with its strategy, its
pretrained base or custom architecture, its minimum input size, its one-line description
and the original study's test accuracy; the CLI, the pipeline's fan-out, the tests and
the report all enumerate :func:`list_models`. The five custom configurations are declared
below as data; the nine pretrained ones are generated from a table of bases × strategies.
Building a configuration is :mod:`cnnzoo.models.build`'s job.

This module never imports Keras or TensorFlow: the report, which never loads them, reads
the registry and the notebook's figures from here.

The notebook's test accuracies (:data:`NOTEBOOK_TEST_ACCURACY`, cited by
``docs/the-study.md``; the report prints them beside each configuration) were measured by
the course notebook on the 5-class animal photo dataset (13,474 training images at 100 px,
ImageNet weights for the backbones, the ``full`` profile's schedules); a run on other
data, at another size or with random weights is not expected to match.
"""

from __future__ import annotations

from dataclasses import dataclass

from cnnzoo.core.errors import CnnzooError

STRATEGIES = ("scratch", "augment", "transfer", "finetune", "partial")

#: Pretrained bases, in the registry's order: base -> (title, smallest input size
#: keras.applications accepts).
_BASE_TABLE: dict[str, tuple[str, int]] = {
    "resnet50v2": ("ResNet50V2", 32),
    "mobilenetv2": ("MobileNetV2", 32),
    "xception": ("Xception", 71),
}
BASES = tuple(_BASE_TABLE)

#: Layer name of the pretrained backbone inside a built model (``model.get_layer(BASE_LAYER)``).
BASE_LAYER = "base"
#: How many of the base's last layers the ``partial`` strategy unfreezes.
PARTIAL_LAYERS = 10

#: Pretrained strategies, in the registry's order, with their description templates.
_PRETRAINED_STRATEGIES: dict[str, str] = {
    "transfer": "{title}: frozen base, head trained",
    "finetune": "{title}: head first, then the whole model (two stages)",
    "partial": "{title}: last {partial_layers} base layers + head trained",
}


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
        notebook_test_accuracy: the original study's test accuracy (a fraction), or
            None for a configuration the study did not have.
        architecture: for a custom configuration, the key of its builder in
            :data:`cnnzoo.models.custom.ARCHITECTURES`; None for a pretrained one.
        derived_from: for a profile's variant or sweep point
            (:meth:`cnnzoo.config.profile.Profile.spec_for`), the configuration it derives
            from; None for a registered one.
    """

    name: str
    strategy: str
    base: str | None
    min_img_size: int
    description: str
    notebook_test_accuracy: float | None = None
    architecture: str | None = None
    derived_from: str | None = None

    @property
    def pretrained(self) -> bool:
        """Whether the configuration is built on a pretrained base."""
        return self.base is not None


_REGISTRY: dict[str, ModelSpec] = {}

#: Custom architectures with an augmented form (``augment: true`` in a profile's variant):
#: architecture -> its augmented architecture.
AUGMENTED_ARCHITECTURES: dict[str, str] = {"resnet": "resnet_aug"}


def register_model(
    name: str,
    *,
    strategy: str,
    base: str | None = None,
    architecture: str | None = None,
    min_img_size: int,
    description: str,
    notebook_test_accuracy: float | None = None,
) -> ModelSpec:
    """Register a configuration under ``name``; registration order is the study's.

    Args:
        name: the configuration's stable registry name.
        strategy: one of :data:`STRATEGIES`.
        base: one of :data:`BASES` for a pretrained configuration, else None.
        architecture: for a custom configuration, the key of its builder in
            :data:`cnnzoo.models.custom.ARCHITECTURES` (default: ``name``); must be
            None for a pretrained one.
        min_img_size: smallest square input size the architecture accepts.
        description: one line for tables and ``cnnzoo models``.
        notebook_test_accuracy: the original study's test accuracy, if it has one.

    Returns:
        The registered spec.

    Raises:
        ValueError: ``name`` is already registered, ``strategy``/``base`` is unknown, or
            both ``base`` and ``architecture`` are given.
    """
    if name in _REGISTRY:
        raise ValueError(f"model configuration {name!r} is registered twice")
    if strategy not in STRATEGIES or (base is not None and base not in BASES):
        raise ValueError(f"{name}: unknown strategy {strategy!r} or base {base!r}")
    if base is not None and architecture is not None:
        raise ValueError(f"{name}: a pretrained configuration has no custom architecture")
    if base is None and architecture is None:
        architecture = name
    spec = ModelSpec(
        name, strategy, base, min_img_size, description, notebook_test_accuracy, architecture
    )
    _REGISTRY[name] = spec
    return spec


def list_models() -> list[str]:
    """The registered configuration names, in the study's order.

    Returns:
        Every registered name: the five custom configurations, then the pretrained ones.
    """
    return list(_REGISTRY)


def get_spec(name: str) -> ModelSpec:
    """The spec of a registered configuration.

    Args:
        name: a name from :func:`list_models`.

    Returns:
        Its :class:`ModelSpec`.

    Raises:
        CnnzooError: ``name`` is not registered (the message lists the valid names).
    """
    try:
        return _REGISTRY[name]
    except KeyError:
        raise CnnzooError(
            f"unknown model configuration {name!r} (valid: {', '.join(_REGISTRY)})"
        ) from None


def notebook_test_accuracy(name: str) -> float | None:
    """The notebook's test accuracy for a configuration.

    Args:
        name: a configuration name.

    Returns:
        The accuracy as a fraction, or None if it has none (unknown name, or a
        configuration the study did not have).
    """
    spec = _REGISTRY.get(name)
    return spec.notebook_test_accuracy if spec is not None else None


# --- the study's configurations -----------------------------------------------------------

# The five custom CNNs, in the study's order:
# (name, strategy, min_img_size, description, notebook test accuracy).
# Each min_img_size is derived in cnnzoo.models.custom.
_CUSTOM_CONFIGURATIONS = (
    ("simple", "scratch", 8, "2 conv layers + dense head", 0.7695),
    ("mid", "scratch", 36, "3 double-conv blocks + dense head", 0.8764),
    ("resnet", "scratch", 1, "ResNet-style, 4 stages of residual blocks", 0.8891),
    ("inception", "scratch", 46, "3 Inception blocks with 7x7 convs", 0.8484),
    ("resnet_aug", "augment", 1, "resnet with data augmentation", 0.9365),
)

# The notebook's test accuracy of each pretrained configuration, "<base>_<strategy>".
_PRETRAINED_ACCURACY = {
    "resnet50v2_transfer": 0.9446,
    "resnet50v2_finetune": 0.9212,
    "resnet50v2_partial": 0.9279,
    "mobilenetv2_transfer": 0.9519,
    "mobilenetv2_finetune": 0.9352,
    "mobilenetv2_partial": 0.9359,
    "xception_transfer": 0.9432,
    "xception_finetune": 0.9185,
    "xception_partial": 0.9486,
}

for _name, _strategy, _min_size, _description, _accuracy in _CUSTOM_CONFIGURATIONS:
    register_model(
        _name,
        strategy=_strategy,
        min_img_size=_min_size,
        description=_description,
        notebook_test_accuracy=_accuracy,
    )

# transfer, finetune, partial for each base
for _base, (_title, _min_size) in _BASE_TABLE.items():
    for _strategy, _template in _PRETRAINED_STRATEGIES.items():
        _name = f"{_base}_{_strategy}"
        register_model(
            _name,
            strategy=_strategy,
            base=_base,
            min_img_size=_min_size,
            description=_template.format(title=_title, partial_layers=PARTIAL_LAYERS),
            notebook_test_accuracy=_PRETRAINED_ACCURACY[_name],
        )

del _name, _strategy, _min_size, _description, _accuracy, _base, _title, _template

#: Test accuracy (fraction) the notebook reported per configuration of the study.
NOTEBOOK_TEST_ACCURACY: dict[str, float] = {
    spec.name: spec.notebook_test_accuracy
    for spec in _REGISTRY.values()
    if spec.notebook_test_accuracy is not None
}
