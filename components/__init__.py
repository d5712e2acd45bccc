"""KFP components of the cnnzoo pipeline: one thin typed wrapper per step.

Each module defines the step's function (its body reads the inputs, calls one
``cnnzoo`` function and writes the outputs) and an ``op(image)`` factory that turns it
into a lightweight Python component running on ``image``. TensorFlow is imported only
inside the bodies, so building and compiling the pipeline needs neither it nor a GPU.
"""

from __future__ import annotations

from collections.abc import Callable

from kfp import dsl


def make_component(func: Callable, image: str) -> dsl.base_component.BaseComponent:
    """Wrap ``func`` as a lightweight component on ``image``; the image ships kfp and cnnzoo.

    Args:
        func: a self-contained step function (imports inside its body).
        image: the container image the step runs in.

    Returns:
        The component.
    """
    return dsl.component(func, base_image=image, install_kfp_package=False)
