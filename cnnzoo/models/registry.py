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

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any

from cnnzoo.core.errors import CnnzooError, one_line

STRATEGIES = ("scratch", "augment", "transfer", "finetune", "partial")

#: The input size (px) the registry's :attr:`ModelSpec.macs` figures are counted at: the
#: notebook's.
MACS_IMG_SIZE = 100

#: Pretrained bases, in the registry's order: base -> (title, smallest input size
#: keras.applications accepts, forward multiply-accumulates per image at
#: :data:`MACS_IMG_SIZE` in millions, the Flatten + Dense head of 5 classes included).
_BASE_TABLE: dict[str, tuple[str, int, float]] = {
    "resnet50v2": ("ResNet50V2", 32, 902.2),
    "mobilenetv2": ("MobileNetV2", 32, 95.9),
    "xception": ("Xception", 71, 857.9),
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
            :data:`ARCHITECTURE_BUILDERS`; None for a pretrained one.
        derived_from: for a profile's variant or sweep point
            (:meth:`cnnzoo.config.profile.Profile.spec_for`), the configuration it derives
            from; None for a registered one.
        plugin: for a configuration a plugin registered, its entry point
            (``name = module:function`` of the group :data:`PLUGIN_GROUP`); else None.
        macs: forward multiply-accumulates per image at :data:`MACS_IMG_SIZE`, in
            millions (convolutions and dense layers: half of
            :func:`cnnzoo.models.flops.count_flops`' forward figure for the built model,
            which tests/test_models.py checks), or None when unknown. The plan's cost estimate
            (:meth:`cnnzoo.config.profile.Profile.training_cost`) starts the costliest
            trainings first.
    """

    name: str
    strategy: str
    base: str | None
    min_img_size: int
    description: str
    notebook_test_accuracy: float | None = None
    architecture: str | None = None
    derived_from: str | None = None
    plugin: str | None = None
    macs: float | None = None

    @property
    def pretrained(self) -> bool:
        """Whether the configuration is built on a pretrained base."""
        return self.base is not None


_REGISTRY: dict[str, ModelSpec] = {}

#: Custom architectures by key (a spec's ``architecture``): ``builder(num_classes,
#: img_size, name=...)`` -> uncompiled ``keras.Model``, filled by
#: :func:`register_architecture` (the built-ins in :mod:`cnnzoo.models.custom`, plugins').
ARCHITECTURE_BUILDERS: dict[str, Callable[..., Any]] = {}

#: The entry-point group through which an installed package registers architectures: each
#: entry point names a function that registers them with :func:`register_architecture`.
PLUGIN_GROUP = "cnnzoo.models"
_plugins: dict[str, Any] = {"loaded": False}

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
    macs: float | None = None,
) -> ModelSpec:
    """Register a configuration under ``name``; registration order is the study's.

    Args:
        name: the configuration's stable registry name.
        strategy: one of :data:`STRATEGIES`.
        base: one of :data:`BASES` for a pretrained configuration, else None.
        architecture: for a custom configuration, the key of its builder in
            :data:`ARCHITECTURE_BUILDERS` (default: ``name``); must be
            None for a pretrained one.
        min_img_size: smallest square input size the architecture accepts.
        description: one line for tables and ``cnnzoo models``.
        notebook_test_accuracy: the original study's test accuracy, if it has one.
        macs: forward multiply-accumulates per image at :data:`MACS_IMG_SIZE`, in
            millions, if known (:attr:`ModelSpec.macs`).

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
    if macs is not None and (
        isinstance(macs, bool) or not isinstance(macs, (int, float)) or not macs > 0
    ):
        raise ValueError(
            f"{name}: macs must be a number > 0 (millions of multiply-accumulates per image), "
            f"got {macs!r}"
        )
    spec = ModelSpec(
        name,
        strategy,
        base,
        min_img_size,
        description,
        notebook_test_accuracy,
        architecture,
        macs=macs,
    )
    _REGISTRY[name] = spec
    return spec


def register_architecture(
    key: str,
    *,
    strategy: str = "scratch",
    min_img_size: int | None = None,
    description: str | None = None,
    notebook_test_accuracy: float | None = None,
    macs: float | None = None,
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator: make ``builder(num_classes, img_size, name=...)`` the architecture ``key``.

    The built-in custom CNNs (:mod:`cnnzoo.models.custom`) are decorated with the key
    alone (their configurations are registered below, as data). A plugin also gives a
    ``description`` and ``min_img_size``, which registers a configuration named ``key``
    that builds with it (:func:`register_model`). The builder imports Keras inside itself
    and returns an uncompiled ``keras.Model`` taking ``(img_size, img_size, 3)`` inputs in
    0..255 and ending in a float32 softmax of ``num_classes``.

    Args:
        key: the architecture's key (and, with a ``description``, the configuration's name).
        strategy: ``scratch`` or ``augment`` (a custom architecture).
        min_img_size: smallest square input size it accepts (needed with ``description``).
        description: one line for tables and ``cnnzoo models``; None registers no
            configuration.
        notebook_test_accuracy: a reference test accuracy, if there is one.
        macs: its forward multiply-accumulates per image at :data:`MACS_IMG_SIZE` in
            millions, if known: the plan then starts it by its cost (unknown: before
            the configurations whose cost is known).

    Raises:
        ValueError: ``key`` already has a builder or a configuration, or a configuration
            is asked for without ``min_img_size``.
    """

    def decorate(builder: Callable[..., Any]) -> Callable[..., Any]:
        if description is not None and key in _REGISTRY:
            raise ValueError(f"model configuration {key!r} is registered twice")
        if key in ARCHITECTURE_BUILDERS:
            raise ValueError(f"architecture {key!r} is registered twice")
        if description is not None:
            if min_img_size is None:
                raise ValueError(f"{key}: a configuration needs min_img_size")
            register_model(
                key,
                strategy=strategy,
                architecture=key,
                min_img_size=min_img_size,
                description=description,
                notebook_test_accuracy=notebook_test_accuracy,
                macs=macs,
            )
        ARCHITECTURE_BUILDERS[key] = builder
        return builder

    return decorate


def load_plugins() -> list[str]:
    """Load the architectures installed packages register (entry points of :data:`PLUGIN_GROUP`).

    Runs once per process (every query of the registry calls it first), so a pipeline
    task sees the same configurations as the command that compiled the pipeline. Each
    entry point names a function called without arguments that registers its
    architectures with :func:`register_architecture`.

    Returns:
        The names of the configurations the plugins registered (empty on later calls).

    Raises:
        CnnzooError: a plugin cannot be loaded or fails, or registers a name that is
            already taken (one line naming the entry point and the name).
    """
    if _plugins["loaded"]:
        return []
    _plugins["loaded"] = True
    added: list[str] = []
    for ep in sorted(entry_points(group=PLUGIN_GROUP), key=lambda e: e.name):
        where = f"plugin {ep.name} = {ep.value} ({PLUGIN_GROUP})"
        before = set(_REGISTRY)
        try:
            ep.load()()
        except ValueError as e:
            if "registered twice" in str(e):
                raise CnnzooError(
                    f"{where}: {one_line(e)}; the name is taken, rename the plugin's architecture"
                ) from None
            raise CnnzooError(f"{where}: {one_line(e)}") from None
        except CnnzooError:
            raise
        except Exception as e:  # a plugin's bug: one line naming it
            raise CnnzooError(f"{where} failed: {type(e).__name__}: {one_line(e)}") from None
        for name in [n for n in _REGISTRY if n not in before]:
            _REGISTRY[name] = dataclasses.replace(_REGISTRY[name], plugin=f"{ep.name} = {ep.value}")
            added.append(name)
    return added


def list_models() -> list[str]:
    """The registered configuration names, in the study's order.

    Returns:
        Every registered name: the five custom configurations, the pretrained ones, then
        those of plugins (:func:`load_plugins`).
    """
    load_plugins()
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
    load_plugins()
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
    load_plugins()
    spec = _REGISTRY.get(name)
    return spec.notebook_test_accuracy if spec is not None else None


# --- the study's configurations -----------------------------------------------------------

# The five custom CNNs, in the study's order: (name, strategy, min_img_size, description,
# notebook test accuracy, forward MACs per image at MACS_IMG_SIZE in millions).
# Each min_img_size is derived in cnnzoo.models.custom.
_CUSTOM_CONFIGURATIONS = (
    ("simple", "scratch", 8, "2 conv layers + dense head", 0.7695, 49.7),
    ("mid", "scratch", 36, "3 double-conv blocks + dense head", 0.8764, 282.2),
    ("resnet", "scratch", 1, "ResNet-style, 4 stages of residual blocks", 0.8891, 449.5),
    ("inception", "scratch", 46, "3 Inception blocks with 7x7 convs", 0.8484, 7546.6),
    ("resnet_aug", "augment", 1, "resnet with data augmentation", 0.9365, 449.5),
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

for _name, _strategy, _min_size, _description, _accuracy, _macs in _CUSTOM_CONFIGURATIONS:
    register_model(
        _name,
        strategy=_strategy,
        min_img_size=_min_size,
        description=_description,
        notebook_test_accuracy=_accuracy,
        macs=_macs,
    )

# transfer, finetune, partial for each base
for _base, (_title, _min_size, _macs) in _BASE_TABLE.items():
    for _strategy, _template in _PRETRAINED_STRATEGIES.items():
        _name = f"{_base}_{_strategy}"
        register_model(
            _name,
            strategy=_strategy,
            base=_base,
            min_img_size=_min_size,
            description=_template.format(title=_title, partial_layers=PARTIAL_LAYERS),
            notebook_test_accuracy=_PRETRAINED_ACCURACY[_name],
            macs=_macs,
        )

del _name, _strategy, _min_size, _description, _accuracy, _base, _title, _template, _macs

#: Test accuracy (fraction) the notebook reported per configuration of the study.
NOTEBOOK_TEST_ACCURACY: dict[str, float] = {
    spec.name: spec.notebook_test_accuracy
    for spec in _REGISTRY.values()
    if spec.notebook_test_accuracy is not None
}
