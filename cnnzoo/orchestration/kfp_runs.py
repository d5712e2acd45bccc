"""Where a cluster run's results are, read back through the Kubeflow Pipelines API.

A run submitted with ``cnnzoo submit`` carries its study parameters; ``output_uri`` and
``tensorboard_root`` say where its TensorBoard logs went (``cnnzoo.storage.outputs.run_logs_root``).
:func:`run_logs_root_from_kfp` reads them with ``kfp.Client().get_run`` (KFP v2beta1 API),
so ``cnnzoo tensorboard RUN_ID --host URL`` needs nothing but the run's ID.
"""

from __future__ import annotations

import re
import warnings
from typing import Any

from cnnzoo.core.errors import CnnzooError, one_line
from cnnzoo.storage.layout import run_logs_root


def get_run_parameters(run_id: str, host: str, namespace: str | None = None) -> dict[str, Any]:
    """The pipeline parameters a KFP run was started with.

    Args:
        run_id: the run's ID (``cnnzoo submit`` prints it).
        host: the KFP API endpoint, e.g. ``http://localhost:8080``.
        namespace: the Kubeflow profile namespace (multi-user installs).

    Returns:
        ``{parameter name: value}`` from the run's runtime config.

    Raises:
        CnnzooError: a bad host, an unknown run, or the backend could not be reached.
    """
    import kfp

    if not re.match(r"^https?://", host):
        raise CnnzooError(f"--host {host!r}: expected an http:// or https:// URL")
    if not run_id or not run_id.strip():
        raise CnnzooError("run ID: empty (cnnzoo submit prints the run's ID)")
    try:
        with warnings.catch_warnings():
            # "This client only works with Kubeflow Pipeline v2.0.0-beta.2 and later"
            warnings.filterwarnings("ignore", category=FutureWarning, module="kfp.client")
            client = kfp.Client(host=host, namespace=namespace or "kubeflow")
        run = client.get_run(run_id)
    except Exception as e:  # the client raises urllib3 errors and kfp_server_api.ApiException
        if getattr(e, "status", None) == 404:
            raise CnnzooError(f"run {run_id}: no such run on {host}") from None
        first = one_line(e, first=True)
        raise CnnzooError(f"reading run {run_id} from {host} failed: {first}") from None
    config = getattr(run, "runtime_config", None)
    return dict(getattr(config, "parameters", None) or {})


def run_logs_root_from_kfp(run_id: str, host: str, namespace: str | None = None) -> str:
    """A KFP run's TensorBoard logs root: ``tensorboard_root``, else ``<output_uri>/tensorboard``.

    Raises:
        CnnzooError: as :func:`get_run_parameters`, or the run has no logs root (it ran
            without ``--output`` or ``--tensorboard-root``).
    """

    params = get_run_parameters(run_id, host, namespace)
    root = run_logs_root(
        str(params.get("tensorboard_root") or ""), str(params.get("output_uri") or "")
    )
    if not root:
        raise CnnzooError(
            f"run {run_id}: it ran without --output or --tensorboard-root, so its TensorBoard "
            "logs are only inside each train task's 'tensorboard' artifact"
        )
    return root
