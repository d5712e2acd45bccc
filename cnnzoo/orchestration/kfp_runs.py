"""Where a cluster run's results are, read back through the Kubeflow Pipelines API.

A run submitted with ``cnnzoo submit`` carries its study parameters; ``output_uri`` and
``tensorboard_root`` say where its TensorBoard logs went (``cnnzoo.storage.outputs.run_logs_root``).
:func:`run_logs_root_from_kfp` reads them with ``kfp.Client().get_run`` (KFP v2beta1 API),
so ``cnnzoo tensorboard RUN_ID --host URL`` needs nothing but the run's ID.
"""

from __future__ import annotations

from typing import Any

from cnnzoo.core.errors import CnnzooError
from cnnzoo.orchestration import kfp_api
from cnnzoo.orchestration.kfp_api import KfpConnection
from cnnzoo.storage.layout import run_logs_root


def get_run_parameters(
    run_id: str, conn: KfpConnection | str, namespace: str | None = None
) -> dict[str, Any]:
    """The pipeline parameters a KFP run was started with.

    Args:
        run_id: the run's ID (``cnnzoo submit`` prints it).
        conn: the KFP API endpoint and credentials, or just its URL
            (e.g. ``http://localhost:8080``).
        namespace: the Kubeflow profile namespace (multi-user installs), with a URL.

    Returns:
        ``{parameter name: value}`` from the run's runtime config.

    Raises:
        CnnzooError: a bad host, an unknown run, or the backend could not be reached.
    """
    run = get_run(run_id, conn, namespace)
    config = getattr(run, "runtime_config", None)
    return dict(getattr(config, "parameters", None) or {})


def get_run(run_id: str, conn: KfpConnection | str, namespace: str | None = None):
    """The run ``run_id`` as ``kfp.Client().get_run`` returns it (a ``V2beta1Run``).

    Raises:
        CnnzooError: a bad host or ID, an unknown run, or the backend refused or could not
            be reached (one line, credentials redacted).
    """
    if not isinstance(conn, KfpConnection):
        conn = kfp_api.connect(conn, namespace or "kubeflow")
    if not run_id or not run_id.strip():
        raise CnnzooError("run ID: empty (cnnzoo submit prints the run's ID)")
    doing = f"reading run {run_id} from"
    client = kfp_api.client(conn, doing)
    try:
        return client.get_run(run_id)
    except Exception as e:  # the client raises urllib3 errors and kfp_server_api.ApiException
        if getattr(e, "status", None) == 404:
            raise CnnzooError(f"run {run_id}: no such run on {conn.host}") from None
        raise CnnzooError(kfp_api.api_error(conn, doing, e)) from None


def run_logs_root_from_kfp(
    run_id: str, conn: KfpConnection | str, namespace: str | None = None
) -> str:
    """A KFP run's TensorBoard logs root: ``tensorboard_root``, else ``<output_uri>/tensorboard``.

    Raises:
        CnnzooError: as :func:`get_run_parameters`, or the run has no logs root (it ran
            without ``--output`` or ``--tensorboard-root``).
    """

    params = get_run_parameters(run_id, conn, namespace)
    root = run_logs_root(
        str(params.get("tensorboard_root") or ""), str(params.get("output_uri") or "")
    )
    if not root:
        raise CnnzooError(
            f"run {run_id}: it ran without --output or --tensorboard-root, so its TensorBoard "
            "logs are only inside each train task's 'tensorboard' artifact"
        )
    return root
