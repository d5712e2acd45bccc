"""KFP components of the cnnzoo pipeline: one thin typed wrapper per step.

Each module defines the step's function and an ``op(image)`` factory that turns it into
a lightweight Python component running on ``image``. The function's signature is what
the compiled pipeline sees; its body is one call of the step's task function
(:mod:`cnnzoo.orchestration.tasks`), the code ``cnnzoo`` CLI steps run too, imported
inside the body (KFP ships only the function's source into the container). So building
and compiling the pipeline needs neither TensorFlow nor a GPU.
"""

from __future__ import annotations

from collections.abc import Callable

from kfp import dsl
from kfp.components import BaseComponent


def make_component(func: Callable, image: str) -> BaseComponent:
    """Wrap ``func`` as a lightweight component on ``image``; the image ships kfp and cnnzoo.

    Args:
        func: a self-contained step function (imports inside its body).
        image: the container image the step runs in.

    Returns:
        The component.
    """
    return dsl.component(func, base_image=image, install_kfp_package=False)
