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
    import json

    from cnnzoo.core.errors import CnnzooError
    from cnnzoo.storage.layout import run_logs_root
    from cnnzoo.tensorboard.resource import apply_run_tensorboard

    try:
        ref = apply_run_tensorboard(run_id, run_logs_root(tensorboard_root, output_uri), run_name)
    except CnnzooError as e:
        print(f"[cnnzoo] warning: no Kubeflow Tensorboard for this run: {e}", flush=True)
        return json.dumps({"error": str(e)})
    print(
        f"[cnnzoo] Tensorboard {ref.namespace}/{ref.name} {ref.action}: Central Dashboard "
        f"{ref.dashboard_path}, or: {ref.port_forward}",
        flush=True,
    )
    return json.dumps(ref.to_dict())


def op(image: str):
    """The ``tensorboard-cr`` component on ``image``."""
    return make_component(tensorboard_cr, image)
