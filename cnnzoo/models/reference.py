"""The original study's results: the notebook's test accuracy of every configuration.

One source for these figures: the report prints them beside each configuration, and
``docs/the-study.md`` (where the study is described) cites this module. They were
measured by the course notebook on the 5-class animal photo dataset (13,474 training
images at 100 px, ImageNet weights for the backbones, the ``full`` profile's schedules);
a run on other data, at another size or with random weights is not expected to match.
"""

from __future__ import annotations

#: Test accuracy (fraction) the notebook reported per configuration.
NOTEBOOK_TEST_ACCURACY: dict[str, float] = {
    "simple": 0.7695,
    "mid": 0.8764,
    "resnet": 0.8891,
    "inception": 0.8484,
    "resnet_aug": 0.9365,
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


def notebook_test_accuracy(model: str) -> float | None:
    """The notebook's test accuracy for ``model``, or None if it has none (unknown name)."""
    return NOTEBOOK_TEST_ACCURACY.get(model)
