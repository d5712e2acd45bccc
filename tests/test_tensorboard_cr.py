"""The run's Kubeflow ``Tensorboard``: its resource against the CRD, its RBAC, its API calls.

The resource is validated offline against the Kubeflow Tensorboard CRD's OpenAPI schema
(vendored in ``tools/schemas/``), the RBAC in ``manifests/tensorboard-rbac.yaml`` against
the Kubernetes schemas, and :func:`cnnzoo.tensorboard.resource.apply_tensorboard` against a
loopback fake Kubernetes API server that stores custom objects, answers create/get/replace
the way the real one does (201, 409 AlreadyExists, resourceVersion conflicts) and records
every request.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from kfp_fixtures import LoopbackServer, Request

from cnnzoo.core.errors import CnnzooError
from cnnzoo.tensorboard.resource import (
    TensorboardRef,
    apply_run_tensorboard,
    apply_tensorboard,
    in_cluster_namespace,
    tensorboard_name,
    tensorboard_resource,
)

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))

import validate_manifests as vm  # noqa: E402

RUN_ID = "8a1d6c2e-55b1-4c0e-9f3e-1b2c3d4e5f60"
COLLECTION = "/apis/tensorboard.kubeflow.org/v1alpha1/namespaces/{ns}/tensorboards"


# --- the resource against the CRD ---------------------------------------------------------


def test_resource_is_valid_against_the_kubeflow_crd():
    resource = tensorboard_resource(RUN_ID, "gs://bkt/studies/one/tensorboard/", "study one")
    assert resource == {
        "apiVersion": "tensorboard.kubeflow.org/v1alpha1",
        "kind": "Tensorboard",
        "metadata": {
            "name": "cnnzoo-8a1d6c2e-55b1-4c0e-9f3e-1b2c3d4e5f60",
            "labels": {
                "app.kubernetes.io/name": "cnnzoo-tensorboard",
                "app.kubernetes.io/part-of": "cnnzoo",
                "cnnzoo/run-id": RUN_ID,
            },
            "annotations": {
                "cnnzoo/logs-root": "gs://bkt/studies/one/tensorboard",
                "cnnzoo/run-name": "study one",
            },
        },
        "spec": {"logspath": "gs://bkt/studies/one/tensorboard"},
    }
    assert vm.validate_custom_resource(resource, "t") == []
    pvc = tensorboard_resource(RUN_ID, "pvc://cnnzoo-tensorboard-logs/run-7", namespace="team")
    assert pvc["spec"] == {"logspath": "pvc://cnnzoo-tensorboard-logs/run-7"}
    assert pvc["metadata"]["namespace"] == "team"
    assert vm.validate_custom_resource(pvc, "t") == []


def test_crd_validation_rejects_what_the_api_server_would():
    """Guards the test above against a validator that accepts anything."""
    good = tensorboard_resource(RUN_ID, "gs://bkt/tb")
    typo = dict(good, spec={"logsPath": "gs://bkt/tb"})
    problems = vm.validate_custom_resource(typo, "t")
    assert any("'logspath' is a required property" in p for p in problems), problems
    assert any("'logsPath' was unexpected" in p for p in problems), problems
    wrong_type = dict(good, spec={"logspath": ["gs://bkt/tb"]})
    assert any("is not of type 'string'" in p for p in vm.validate_custom_resource(wrong_type))
    bad_name = dict(good, metadata={"name": "Cnnzoo_Run"})
    assert any("DNS-1123" in p for p in vm.validate_custom_resource(bad_name))
    bad_label = dict(good, metadata={"name": "x", "labels": {"cnnzoo/run-id": "a b"}})
    assert any("label value" in p for p in vm.validate_custom_resource(bad_label))
    # the schema really is the vendored CRD's, with its one required spec field
    schema = vm.crd_schemas()[("tensorboard.kubeflow.org/v1alpha1", "Tensorboard")]
    assert schema["properties"]["spec"]["required"] == ["logspath"]


@pytest.mark.parametrize(
    "run_id, name",
    [
        (RUN_ID, f"cnnzoo-{RUN_ID}"),
        ("Run_42 (retry)", "cnnzoo-run-42-retry"),
        ("x" * 80, "cnnzoo-" + "x" * 56),
    ],
)
def test_names_are_service_names(run_id, name):
    assert tensorboard_name(run_id) == name
    assert len(name) <= 63 and vm.DNS_SUBDOMAIN.fullmatch(name)
    assert vm.validate_custom_resource(tensorboard_resource(run_id, "gs://bkt/tb")) == []


@pytest.mark.parametrize(
    "run_id, logs_root, message",
    [
        ("", "gs://bkt/tb", "cannot name a resource after run ID ''"),
        (RUN_ID, "", "logs root '' is not gs://"),
        (RUN_ID, "/runs/20260101/tensorboard", "logs root '/runs/20260101/tensorboard'"),
        (RUN_ID, "s3://bkt/tb", "logs root 's3://bkt/tb'"),
        (RUN_ID, "gs://", "logs root 'gs://'"),
    ],
)
def test_resource_rejects_what_the_controller_cannot_read(run_id, logs_root, message):
    with pytest.raises(CnnzooError, match=message.replace("(", r"\(")):
        tensorboard_resource(run_id, logs_root)


def test_ref_says_how_to_open_it():
    ref = TensorboardRef("cnnzoo-abc", "team-vision", "created")
    assert ref.dashboard_path == "/tensorboard/team-vision/cnnzoo-abc/"
    assert ref.port_forward == "kubectl -n team-vision port-forward svc/cnnzoo-abc 6006:80"
    assert ref.to_dict()["action"] == "created"


def test_namespace_comes_from_the_service_account_mount(tmp_path):
    (tmp_path / "namespace").write_text("team-vision\n")
    assert in_cluster_namespace(tmp_path / "namespace") == "team-vision"
    with pytest.raises(CnnzooError, match="not running in a Kubernetes pod"):
        in_cluster_namespace(tmp_path / "missing")


# --- the RBAC ---------------------------------------------------------------------------


def test_rbac_allows_exactly_what_the_step_does():
    docs = vm.render(vm.KUSTOMIZATIONS["cnnzoo"])[0]
    assert vm.validate_docs(docs, "manifests") == []  # Kubernetes schemas, strict
    roles = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Role"}
    bindings = [d for d in docs if d["kind"] == "RoleBinding"]
    role = roles["cnnzoo-tensorboard-writer"]
    assert role["metadata"]["namespace"] == "cnnzoo"
    assert role["rules"] == [
        {
            "apiGroups": ["tensorboard.kubeflow.org"],
            "resources": ["tensorboards"],
            "verbs": ["create", "get", "update"],
        }
    ]
    (binding,) = [b for b in bindings if b["roleRef"]["name"] == "cnnzoo-tensorboard-writer"]
    assert binding["roleRef"]["kind"] == "Role"
    sa = next(d for d in docs if d["kind"] == "ServiceAccount")
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": sa["metadata"]["name"], "namespace": "cnnzoo"}
    ]


# --- the API calls, against a fake API server ----------------------------------------------


class FakeKubeApi(LoopbackServer):
    """A loopback Kubernetes API server for ``tensorboards`` that records every request."""

    def __init__(self, deny: bool = False):
        super().__init__()
        self.objects: dict[tuple[str, str], dict] = {}
        self.deny = deny
        self.conflicts_on_next_put = 0

    @staticmethod
    def _status(code: int, reason: str) -> tuple[int, dict]:
        status = {"kind": "Status", "status": "Failure", "reason": reason, "code": code}
        return code, dict(status, apiVersion="v1")

    def route(self, request: Request) -> tuple[int, dict]:
        if self.deny:
            return self._status(403, "Forbidden")
        method, body = request.method, request.body
        parts = request.path.strip("/").split("/")
        # apis/tensorboard.kubeflow.org/v1alpha1/namespaces/<ns>/tensorboards[/<name>]
        if parts[:3] != ["apis", "tensorboard.kubeflow.org", "v1alpha1"] or (
            len(parts) not in (6, 7) or parts[3] != "namespaces" or parts[5] != PLURAL
        ):
            return self._status(404, "NotFound")
        ns = parts[4]
        name = parts[6] if len(parts) == 7 else None
        if body is not None:
            problems = vm.validate_custom_resource(body, "api")
            if problems or body["metadata"].get("namespace", ns) != ns:
                return self._status(422, "Invalid")
        if method == "POST" and name is None:
            key = (ns, body["metadata"]["name"])
            if key in self.objects:
                return self._status(409, "AlreadyExists")
            self.objects[key] = _stored(body, ns, 1)
            return 201, self.objects[key]
        if method == "GET" and name:
            if (ns, name) not in self.objects:
                return self._status(404, "NotFound")
            return 200, self.objects[(ns, name)]
        if method == "PUT" and name:
            current = self.objects.get((ns, name))
            if current is None:
                return self._status(404, "NotFound")
            if self.conflicts_on_next_put:
                self.conflicts_on_next_put -= 1
                current["metadata"]["resourceVersion"] = str(
                    int(current["metadata"]["resourceVersion"]) + 1
                )
            sent = body["metadata"].get("resourceVersion")
            if sent != current["metadata"]["resourceVersion"]:
                return self._status(409, "Conflict")
            self.objects[(ns, name)] = _stored(body, ns, int(sent) + 1)
            return 200, self.objects[(ns, name)]
        return self._status(405, "MethodNotAllowed")

    def api_client(self):
        """A ``kubernetes`` API client pointed at this server."""
        from kubernetes import client

        configuration = client.Configuration(host=self.url)
        configuration.retries = 0
        return client.ApiClient(configuration)


PLURAL = "tensorboards"


def _stored(body: dict, ns: str, version: int) -> dict:
    meta = {**body["metadata"], "namespace": ns, "resourceVersion": str(version)}
    return dict(body, metadata=meta)


@pytest.fixture
def kube():
    with FakeKubeApi() as fake:
        yield fake


def test_apply_creates_then_replaces_the_runs_tensorboard(kube):
    collection = COLLECTION.format(ns="team-vision")
    item = f"{collection}/cnnzoo-{RUN_ID}"
    ref = apply_run_tensorboard(
        RUN_ID, "gs://bkt/one/tensorboard", "one", "team-vision", kube.api_client()
    )
    assert ref == TensorboardRef(f"cnnzoo-{RUN_ID}", "team-vision", "created")
    assert kube.calls() == [("POST", collection)]
    (post,) = kube.requests
    assert post.content_type == "application/json"
    assert post.body["spec"] == {"logspath": "gs://bkt/one/tensorboard"}
    assert post.body["metadata"]["namespace"] == "team-vision"

    # the same run again (a retried or re-run step), now logging elsewhere: one resource
    kube.requests.clear()
    again = apply_run_tensorboard(
        RUN_ID, "gs://bkt/two/tensorboard", "one", "team-vision", kube.api_client()
    )
    assert again.action == "updated"
    assert kube.calls() == [("POST", collection), ("GET", item), ("PUT", item)]
    assert kube.requests[2].body["metadata"]["resourceVersion"] == "1"
    assert list(kube.objects) == [("team-vision", f"cnnzoo-{RUN_ID}")]
    stored = kube.objects[("team-vision", f"cnnzoo-{RUN_ID}")]
    assert stored["spec"] == {"logspath": "gs://bkt/two/tensorboard"}
    assert stored["metadata"]["resourceVersion"] == "2"


def test_apply_retries_a_replace_that_lost_a_race(kube):
    resource = tensorboard_resource(RUN_ID, "gs://bkt/tb")
    assert apply_tensorboard(resource, "ns1", kube.api_client()) == "created"
    kube.conflicts_on_next_put = 1
    kube.requests.clear()
    assert apply_tensorboard(resource, "ns1", kube.api_client()) == "updated"
    methods = [m for m, _ in kube.calls()]
    assert methods == ["POST", "GET", "PUT", "GET", "PUT"]


def test_apply_names_a_denied_request_and_the_rbac_to_apply():
    with FakeKubeApi(deny=True) as fake:
        with pytest.raises(CnnzooError) as info:
            apply_tensorboard(tensorboard_resource(RUN_ID, "gs://bkt/tb"), "ns1", fake.api_client())
    message = str(info.value)
    assert message.startswith(f"Kubernetes API: creating Tensorboard ns1/cnnzoo-{RUN_ID} failed")
    assert "403 Forbidden" in message and "manifests/tensorboard-rbac.yaml" in message


# --- the pipeline step --------------------------------------------------------------------


def test_the_pipeline_step_applies_it_and_hands_the_report_how_to_open_it(kube, monkeypatch):
    import cnnzoo.tensorboard.resource as tc

    monkeypatch.syspath_prepend(str(ROOT))  # components/
    from components.tensorboard_cr import tensorboard_cr

    # in a pod these come from the mounted service account
    monkeypatch.setattr(tc, "in_cluster_api_client", kube.api_client)
    monkeypatch.setattr(tc, "in_cluster_namespace", lambda: "team-vision")
    out = json.loads(tensorboard_cr(RUN_ID, "study one", "", "gs://bkt/studies/one"))
    assert out == {
        "name": f"cnnzoo-{RUN_ID}",
        "namespace": "team-vision",
        "action": "created",
        "dashboard_path": f"/tensorboard/team-vision/cnnzoo-{RUN_ID}/",
        "port_forward": f"kubectl -n team-vision port-forward svc/cnnzoo-{RUN_ID} 6006:80",
    }
    stored = kube.objects[("team-vision", f"cnnzoo-{RUN_ID}")]
    assert stored["spec"] == {"logspath": "gs://bkt/studies/one/tensorboard"}
    assert stored["metadata"]["annotations"]["cnnzoo/run-name"] == "study one"

    # no gs:// logs root: nothing is sent, and the report is told why
    kube.requests.clear()
    out = json.loads(tensorboard_cr(RUN_ID, "study two", "", ""))
    assert out["error"].startswith("Tensorboard: logs root '' is not gs://bucket/prefix")
    assert kube.requests == []
    # the API refuses (no RBAC): recorded, not raised
    kube.deny = True
    out = json.loads(tensorboard_cr(RUN_ID, "study one", "gs://bkt/tb", ""))
    assert "403 Forbidden" in out["error"] and "manifests/tensorboard-rbac.yaml" in out["error"]


# --- the pipeline option ------------------------------------------------------------------


def _compiled_tasks(tmp_path, **kwargs) -> dict:
    import yaml

    from cnnzoo.orchestration.cluster import compile_pipeline

    spec = next(yaml.safe_load_all(compile_pipeline(tmp_path / "p.yaml", **kwargs).read_text()))
    return spec["root"]["dag"]["tasks"]


def test_the_option_adds_the_step_and_feeds_the_report(tmp_path):
    assert "tensorboard-cr" not in _compiled_tasks(tmp_path)
    tasks = _compiled_tasks(tmp_path, tensorboard_cr=True)
    step = tasks["tensorboard-cr"]
    assert step["inputs"]["parameters"] == {
        "run_id": {"runtimeValue": {"constant": "{{$.pipeline_job_uuid}}"}},
        "run_name": {"runtimeValue": {"constant": "{{$.pipeline_job_name}}"}},
        "tensorboard_root": {"componentInputParameter": "tensorboard_root"},
        "output_uri": {"componentInputParameter": "output_uri"},
    }
    assert "dependentTasks" not in step  # it starts with the run, beside ingest
    assert tasks["report"]["inputs"]["parameters"]["tensorboard_resource"] == {
        "taskOutputParameter": {"outputParameterKey": "Output", "producerTask": "tensorboard-cr"}
    }


def test_submit_with_the_option_needs_a_gs_logs_root(capsys):
    from helpers import cli_error

    # refused before any request: the host is never contacted
    line = cli_error(
        capsys,
        ["submit", "--host", "http://127.0.0.1:9", "--tensorboard-cr", "--image", "r/c:1"],
    )
    assert line.startswith("error: Tensorboard: logs root '' is not gs://bucket/prefix")
