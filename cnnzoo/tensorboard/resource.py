"""A Kubeflow ``Tensorboard`` resource per pipeline run: build it, and create or update it.

The Kubeflow Tensorboard controller (part of a full Kubeflow install) turns a
``tensorboard.kubeflow.org/v1alpha1`` ``Tensorboard`` into a TensorBoard Deployment and a
Service of the same name, reading ``spec.logspath`` (``gs://...`` or
``pvc://<claim>/<path>``), and routes the Central Dashboard's
``/tensorboard/<namespace>/<name>/`` to it. KFP v2's UI has no TensorBoard viewer
(kubeflow/pipelines#6912, #8794), so this is how a cluster run gets one click to its
TensorBoard: the pipeline's optional ``tensorboard-cr`` step calls
:func:`apply_run_tensorboard` with the run's ID and logs root.

The resource is named after the run (:func:`tensorboard_name`), so re-running the step
(a retry, a cached rerun) updates the same resource instead of adding one. Kubernetes is
reached with the ``kubernetes`` client (a dependency of kfp) and the pod's in-cluster
service account; the RBAC it needs is ``manifests/tensorboard-rbac.yaml``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cnnzoo.core.errors import CnnzooError

GROUP = "tensorboard.kubeflow.org"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
KIND = "Tensorboard"
PLURAL = "tensorboards"
#: Label carrying the KFP run ID (find a run's board: ``kubectl get tensorboards -l ...``).
RUN_ID_LABEL = "cnnzoo/run-id"
#: The namespace of the pod's service account, mounted into every pod.
SERVICE_ACCOUNT_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
# The controller names a Deployment and a Service after the resource: a DNS-1035 label.
_DNS_LABEL = re.compile(r"[a-z]([-a-z0-9]{0,61}[a-z0-9])?")


def tensorboard_name(run_id: str) -> str:
    """The ``Tensorboard`` name of a run: ``cnnzoo-<run id>``, a valid Service name.

    Args:
        run_id: the KFP run ID (a UUID on KFP v2 backends).

    Raises:
        CnnzooError: ``run_id`` is empty or has no letter or digit.
    """
    slug = re.sub(r"[^a-z0-9]+", "-", str(run_id).lower()).strip("-")
    if not slug:
        raise CnnzooError(f"Tensorboard: cannot name a resource after run ID {run_id!r}")
    return f"cnnzoo-{slug}"[:63].rstrip("-")


def label_value(text: str) -> str:
    """``text`` made a valid Kubernetes label value (63 characters of ``[-._a-zA-Z0-9]``)."""
    value = re.sub(r"[^-._a-zA-Z0-9]+", "-", str(text))[:63]
    return re.sub(r"^[^a-zA-Z0-9]+|[^a-zA-Z0-9]+$", "", value)


def logspath(logs_root: str) -> str:
    """The ``spec.logspath`` for a run's logs root, checked for what the controller reads.

    Args:
        logs_root: ``gs://bucket/prefix`` or ``pvc://<claim>/<path>``.

    Raises:
        CnnzooError: any other location (a local path means nothing to a server pod).
    """
    root = str(logs_root).rstrip("/")
    if re.fullmatch(r"gs://[a-z0-9][-_.a-z0-9]{1,220}[a-z0-9](/.*)?", root):
        return root
    if re.fullmatch(r"pvc://[a-z0-9]([-.a-z0-9]*[a-z0-9])?(/.*)?", root):
        return root
    raise CnnzooError(
        f"Tensorboard: logs root {logs_root!r} is not gs://bucket/prefix or pvc://claim/path "
        "(give the run --output gs://... or --tensorboard-root gs://...)"
    )


def tensorboard_resource(
    run_id: str, logs_root: str, run_name: str = "", namespace: str | None = None
) -> dict[str, Any]:
    """The ``Tensorboard`` resource of a run.

    Args:
        run_id: the KFP run ID; the resource is named :func:`tensorboard_name` of it.
        logs_root: the run's logs root (see :func:`logspath`).
        run_name: the run's display name, recorded as an annotation.
        namespace: set ``metadata.namespace`` (omitted when None).

    Returns:
        The resource as a dict, ready for the Kubernetes API.

    Raises:
        CnnzooError: a run ID or logs root that cannot be used.
    """
    metadata: dict[str, Any] = {
        "name": tensorboard_name(run_id),
        "labels": {
            "app.kubernetes.io/name": "cnnzoo-tensorboard",
            "app.kubernetes.io/part-of": "cnnzoo",
            RUN_ID_LABEL: label_value(run_id),
        },
        "annotations": {"cnnzoo/logs-root": str(logs_root).rstrip("/")},
    }
    if run_name:
        metadata["annotations"]["cnnzoo/run-name"] = str(run_name)
    if namespace:
        metadata["namespace"] = namespace
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": metadata,
        "spec": {"logspath": logspath(logs_root)},
    }


@dataclass(frozen=True)
class TensorboardRef:
    """Where a run's ``Tensorboard`` is, and how to open it."""

    name: str
    namespace: str
    action: str = ""  # "created" or "updated"

    @property
    def dashboard_path(self) -> str:
        """The Central Dashboard path the controller routes to the server."""
        return f"/tensorboard/{self.namespace}/{self.name}/"

    @property
    def port_forward(self) -> str:
        """The command that opens it without the dashboard (then http://127.0.0.1:6006/)."""
        return f"kubectl -n {self.namespace} port-forward svc/{self.name} 6006:80"

    def to_dict(self) -> dict[str, str]:
        """Name, namespace, action, dashboard path and port-forward command."""
        return {
            "name": self.name,
            "namespace": self.namespace,
            "action": self.action,
            "dashboard_path": self.dashboard_path,
            "port_forward": self.port_forward,
        }


def in_cluster_namespace(path: Path = SERVICE_ACCOUNT_NAMESPACE) -> str:
    """The namespace the current pod runs in (from its service-account mount).

    Raises:
        CnnzooError: not running in a pod (no mounted service account).
    """
    try:
        namespace = Path(path).read_text().strip()
    except OSError:
        namespace = ""
    if not namespace:
        raise CnnzooError(f"{path}: no pod namespace (not running in a Kubernetes pod?)")
    return namespace


def in_cluster_api_client() -> Any:
    """A ``kubernetes.client.ApiClient`` with the pod's service-account credentials.

    Raises:
        CnnzooError: not running in a pod.
    """
    from kubernetes import client, config

    try:
        config.load_incluster_config()
    except config.ConfigException as e:
        raise CnnzooError(f"Kubernetes API: no in-cluster configuration ({e})") from None
    return client.ApiClient()


def _api_error(e: Any, what: str) -> CnnzooError:
    status = getattr(e, "status", None)
    reason = getattr(e, "reason", "") or type(e).__name__
    hint = ""
    if status == 403:
        hint = " (the pipeline's service account needs manifests/tensorboard-rbac.yaml)"
    elif status == 404:
        hint = " (no Tensorboard CRD: the Kubeflow Tensorboard controller is not installed)"
    return CnnzooError(f"Kubernetes API: {what} failed: {status} {reason}{hint}")


def apply_tensorboard(resource: dict[str, Any], namespace: str, api_client: Any) -> str:
    """Create ``resource`` in ``namespace``, or replace the one of that name.

    Create first; on 409 (it exists) read it and replace it with its current
    ``resourceVersion`` (once more if it changed in between).

    Args:
        resource: a ``Tensorboard`` dict (see :func:`tensorboard_resource`).
        namespace: the namespace to apply it in.
        api_client: a ``kubernetes.client.ApiClient``.

    Returns:
        ``"created"`` or ``"updated"``.

    Raises:
        CnnzooError: the API refused the request (the status and a hint in the message).
    """
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    api = client.CustomObjectsApi(api_client)
    name = resource["metadata"]["name"]
    body = dict(resource, metadata={**resource["metadata"], "namespace": namespace})
    what = f"{KIND} {namespace}/{name}"
    try:
        api.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, body)
        return "created"
    except ApiException as e:
        if e.status != 409:
            raise _api_error(e, f"creating {what}") from None
    for _attempt in range(2):
        try:
            current = api.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
            version = current["metadata"]["resourceVersion"]
            replacement = dict(body, metadata={**body["metadata"], "resourceVersion": version})
            api.replace_namespaced_custom_object(
                GROUP, VERSION, namespace, PLURAL, name, replacement
            )
            return "updated"
        except ApiException as e:
            if e.status != 409:
                raise _api_error(e, f"updating {what}") from None
    raise CnnzooError(f"Kubernetes API: updating {what} failed: it kept changing (409)")


def apply_run_tensorboard(
    run_id: str,
    logs_root: str,
    run_name: str = "",
    namespace: str | None = None,
    api_client: Any = None,
) -> TensorboardRef:
    """Create or update the ``Tensorboard`` of a run, in the pod's own namespace.

    Args:
        run_id: the KFP run ID.
        logs_root: the run's logs root (``gs://`` or ``pvc://``).
        run_name: the run's display name (an annotation).
        namespace: default: the pod's namespace (:func:`in_cluster_namespace`).
        api_client: default: :func:`in_cluster_api_client`.

    Returns:
        The resource's name and namespace, and whether it was created or updated.

    Raises:
        CnnzooError: a bad run ID or logs root, no cluster, or the API refused.
    """
    resource = tensorboard_resource(run_id, logs_root, run_name)
    namespace = namespace or in_cluster_namespace()
    api_client = api_client or in_cluster_api_client()
    action = apply_tensorboard(resource, namespace, api_client)
    return TensorboardRef(resource["metadata"]["name"], namespace, action)
