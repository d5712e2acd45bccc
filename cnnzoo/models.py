"""The registry of the fourteen model configurations of the study.

Every configuration is registered once, under a stable name; the CLI, the
pipeline's fan-out, the tests and the report all enumerate :func:`list_models`.
"""

from __future__ import annotations

from dataclasses import dataclass

from cnnzoo.errors import CnnzooError

STRATEGIES = ("scratch", "augment", "transfer", "finetune", "partial")
BASES = ("resnet50v2", "mobilenetv2", "xception")


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
    """

    name: str
    strategy: str
    base: str | None
    min_img_size: int
    description: str

    @property
    def pretrained(self) -> bool:
        return self.base is not None


_MIN_SIZE = {"resnet50v2": 32, "mobilenetv2": 32, "xception": 71}
_BASE_TITLE = {"resnet50v2": "ResNet50V2", "mobilenetv2": "MobileNetV2", "xception": "Xception"}
_STRATEGY_TEXT = {
    "transfer": "frozen base, head trained",
    "finetune": "head first, then the whole model (two stages)",
    "partial": "last 10 base layers + head trained",
}

_REGISTRY: dict[str, ModelSpec] = {}


def _register(spec: ModelSpec) -> None:
    _REGISTRY[spec.name] = spec


_register(ModelSpec("simple", "scratch", None, 32, "2 conv layers + dense head"))
_register(ModelSpec("mid", "scratch", None, 32, "3 double-conv blocks + dense head"))
_register(ModelSpec("resnet", "scratch", None, 32, "ResNet-style, 4 stages of residual blocks"))
_register(ModelSpec("inception", "scratch", None, 64, "3 Inception blocks with 7x7 convs"))
_register(ModelSpec("resnet_aug", "augment", None, 32, "resnet with data augmentation"))
for _base in BASES:
    for _strategy in ("transfer", "finetune", "partial"):
        _register(
            ModelSpec(
                f"{_base}_{_strategy}",
                _strategy,
                _base,
                _MIN_SIZE[_base],
                f"{_BASE_TITLE[_base]}: {_STRATEGY_TEXT[_strategy]}",
            )
        )


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


def build_model(name: str, num_classes: int, img_size: int, weights: str | None = None):
    """Build the uncompiled ``keras.Model`` of a registered configuration.

    Args:
        name: a name from :func:`list_models`.
        num_classes: size of the softmax output.
        img_size: square input size in pixels (RGB, uint8-range values 0..255).
        weights: for pretrained bases: None (random init), ``"imagenet"`` (Keras
            download) or a path/URI to a weights file for the base.

    Returns:
        An uncompiled ``keras.Model`` taking ``(img_size, img_size, 3)`` float inputs
        in 0..255 (scaling is inside the model).

    Raises:
        CnnzooError: unknown name, img_size below the minimum, unreadable weights.
    """
    raise NotImplementedError("being written")
