"""The optional ``tensorboard-cr`` step: the run's Kubeflow ``Tensorboard``, at the start.

Added by ``cnnzoo compile/submit --tensorboard-cr``. It creates (or updates) the
``Tensorboard`` named after the run, reading the run's logs root, so the Central
Dashboard's Tensorboards page lists it while the models train. A refusal (no CRD, no
RBAC, a local logs root) is recorded in the step's output for the report and logged,
not raised: a failed task would stop Argo from scheduling the training.
"""

from cnnzoo.components import make_component


def tensorboard_cr(run_id: str, run_name: str, tensorboard_root: str, output_uri: str) -> str:
    """Apply the run's ``Tensorboard``; return JSON: its name, namespace and how to open it,
    or ``{"error": ...}``."""
    from cnnzoo.orchestration import tasks

    return tasks.tensorboard_cr(run_id, run_name, tensorboard_root, output_uri)


def op(image: str):
    """The ``tensorboard-cr`` component on ``image``."""
    return make_component(tensorboard_cr, image)
