"""Where each pipeline step runs on a cluster: node pools, resources, retries, fan-out cap.

``cluster.yaml`` (the packaged ``cnnzoo.configs`` copy of ``configs/cluster.yaml``, or
``$CNNZOO_CONFIG_DIR/cluster.yaml``, or a user's ``--placement FILE``) names node pools
(CPU, memory, an optional accelerator with its node selector and tolerations), assigns
a pool to each fixed step and to each model configuration, and sets the ``ParallelFor``
cap, the retry policy of training, the Kubernetes service account of runs and,
optionally, a Kubernetes secret holding a Google service-account key (``gcp_secret``)
that every task mounts. The pipeline factory reads it at compile time: fixed steps get
their pool's settings as constants, and :meth:`Placement.model_placements` (one plain
record per model) is compiled into the pipeline's plan step, whose records place each
loop iteration's train task. Local runs ignore the resources (the KFP local runner
cannot apply them).

Example::

    placement = load_placement("configs/cluster.yaml")
    placement.pool_for_model("xception_finetune").accelerator_type  # 'nvidia-l4'
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from cnnzoo.errors import CnnzooError

GKE_ACCELERATOR_LABEL = "cloud.google.com/gke-accelerator"
#: Where a task mounts the ``gcp_secret`` (read-only); the key file is ``<here>/<key>``.
GCP_SECRET_MOUNT_PATH = "/var/secrets/google"
# plan and fingerprint are tiny CPU steps (default: the ingest pool); pool_for_model is
# the former name of plan, still accepted.
STEPS = ("ingest", "split", "evaluate", "report", "plan", "fingerprint", "pool_for_model")
_CPU_RE = re.compile(r"^(\d+(\.\d+)?|\d+m)$")
_MEMORY_RE = re.compile(r"^\d+(\.\d+)?(E|Ei|P|Pi|T|Ti|G|Gi|M|Mi|K|Ki)?$")
_DURATION_RE = re.compile(r"^(\d+(\.\d+)?)(s|m|h)?$")
# Kubernetes: a secret name is a DNS subdomain; a data key is [-._a-zA-Z0-9]+.
_SECRET_NAME_RE = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")
_SECRET_KEY_RE = re.compile(r"^[-._a-zA-Z0-9]{1,253}$")
_POOL_KEYS = (
    "accelerator",
    "accelerator_type",
    "accelerator_count",
    "node_selector",
    "tolerations",
    "cpu",
    "memory",
    "cpu_limit",
    "memory_limit",
)
_TOP_KEYS = (
    "parallelism",
    "retries",
    "pools",
    "steps",
    "default_model_pool",
    "model_pools",
    "service_account",
    "gcp_secret",
)


@dataclass(frozen=True)
class Pool:
    """A node pool: the resources a task requests there and how it is scheduled onto it.

    Attributes:
        name: the key under ``pools``.
        cpu: CPU request (Kubernetes quantity, e.g. ``"8"`` or ``"500m"``).
        memory: memory request (e.g. ``"32G"``).
        cpu_limit: CPU limit (defaults to ``cpu``).
        memory_limit: memory limit (defaults to ``memory``).
        accelerator: the accelerator resource name (``nvidia.com/gpu``), or None.
        accelerator_type: the node label value of the accelerator (``nvidia-l4``), or None.
        accelerator_count: how many accelerators a task requests (0 without one).
        node_selector: node labels a task must match.
        tolerations: Kubernetes tolerations (``key``, ``operator``, ``value``, ``effect``).
    """

    name: str
    cpu: str
    memory: str
    cpu_limit: str
    memory_limit: str
    accelerator: str | None = None
    accelerator_type: str | None = None
    accelerator_count: int = 0
    node_selector: dict[str, str] = field(default_factory=dict)
    tolerations: tuple[dict[str, Any], ...] = ()


@dataclass(frozen=True)
class Retries:
    """Retry policy of the training tasks (spot GPU nodes can vanish mid-run)."""

    count: int = 3
    backoff: str = "60s"
    factor: float = 2.0
    max: str = "600s"


@dataclass(frozen=True)
class GcpSecret:
    """A Kubernetes secret holding a Google service-account key file (``gcp_secret``).

    Only these names reach the compiled pipeline; the key itself stays in the cluster.

    Attributes:
        name: the secret's name in the run's namespace (e.g. ``cnnzoo-gcp-sa``).
        key: the data key holding the JSON key file (e.g. ``key.json``).
    """

    name: str
    key: str

    @property
    def credentials_path(self) -> str:
        """The key file's path in a task: the value of ``GOOGLE_APPLICATION_CREDENTIALS``."""
        return f"{GCP_SECRET_MOUNT_PATH}/{self.key}"


@dataclass(frozen=True)
class Placement:
    """A validated ``cluster.yaml``."""

    parallelism: int
    retries: Retries
    pools: dict[str, Pool]
    steps: dict[str, str]
    default_model_pool: str
    model_pools: dict[str, str]
    service_account: str | None = None
    gcp_secret: GcpSecret | None = None

    def pool_for_step(self, step: str) -> Pool:
        """The pool of a fixed step (``ingest``, ``split``, ``evaluate``, ``report``...)."""
        return self.pools[self.steps[step]]

    def pool_for_model(self, model: str) -> Pool:
        """The pool that trains ``model`` (its ``model_pools`` entry or the default)."""
        return self.pools[self.model_pools.get(model, self.default_model_pool)]

    def model_placements(self) -> dict[str, dict[str, Any]]:
        """Every registered model's train placement as plain data (the pipeline's plan step
        hands one record per model to the loop): ``pool``, ``accelerator``,
        ``accelerator_count`` (a string, as KFP takes it), ``cpu``, ``memory``,
        ``cpu_limit``, ``memory_limit``, ``node_selector``, ``tolerations``."""
        from cnnzoo.models import list_models

        return {model: pool_record(self.pool_for_model(model)) for model in list_models()}

    def train_pool_names(self) -> list[str]:
        """Distinct pools that train models: the default last, others in first-use order."""
        names = [
            p for p in dict.fromkeys(self.model_pools.values()) if p != self.default_model_pool
        ]
        return names + [self.default_model_pool]

    def without_retries(self) -> Placement:
        """A copy with retries off (local runs: a crash there is not a lost spot node)."""
        return replace(
            self, retries=Retries(0, self.retries.backoff, self.retries.factor, self.retries.max)
        )

    def for_local_run(self) -> Placement:
        """A copy for ``kfp.local``: retries off and no ``gcp_secret`` (the local runner
        would set ``GOOGLE_APPLICATION_CREDENTIALS`` to a path that exists only in pods)."""
        return replace(self.without_retries(), gcp_secret=None)


def default_placement_path() -> Path:
    """``$CNNZOO_CONFIG_DIR/cluster.yaml``, else the installed package's ``cluster.yaml``."""
    from cnnzoo.config import config_dir

    return config_dir() / "cluster.yaml"


def load_placement(path: str | Path | None = None) -> Placement:
    """Read and validate a placement file.

    Args:
        path: the YAML file; None means :func:`default_placement_path`.

    Returns:
        The validated placement.

    Raises:
        CnnzooError: missing file, bad YAML, unknown key or bad value (the message names
            the file and the key).
    """
    path = Path(path) if path is not None else default_placement_path()
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CnnzooError(f"{path}: placement file not found") from None
    except yaml.YAMLError as e:
        raise CnnzooError(f"{path}: not valid YAML ({str(e).splitlines()[0]})") from None
    try:
        return placement_from_dict(data)
    except CnnzooError as e:
        raise CnnzooError(f"{path}: {e}") from None


def placement_from_dict(data: Any) -> Placement:
    """Validate plain data (the parsed YAML) into a :class:`Placement`.

    Raises:
        CnnzooError: the message names the offending key.
    """
    from cnnzoo.models import list_models

    _expect(isinstance(data, dict), "expected a mapping at the top level")
    _no_unknown(data, _TOP_KEYS, "")
    parallelism = data.get("parallelism", 4)
    _expect(
        isinstance(parallelism, int) and not isinstance(parallelism, bool) and parallelism >= 0,
        f"parallelism must be an integer >= 0 (0: no cap), got {parallelism!r}",
    )
    retries = _retries(data.get("retries") or {})

    pools_raw = data.get("pools")
    _expect(isinstance(pools_raw, dict) and pools_raw, "pools: expected a non-empty mapping")
    pools = {str(name): _pool(str(name), raw) for name, raw in pools_raw.items()}

    def known_pool(value: Any, key: str) -> str:
        _expect(
            value in pools,
            f"{key}: unknown pool {value!r} (pools: {', '.join(pools)})",
        )
        return value

    steps_raw = data.get("steps")
    _expect(isinstance(steps_raw, dict), "steps: expected a mapping of step to pool")
    _no_unknown(steps_raw, STEPS, "steps.")
    for required in ("ingest", "split", "evaluate", "report"):
        _expect(required in steps_raw, f"steps.{required}: missing (pool name)")
    steps = {k: known_pool(v, f"steps.{k}") for k, v in steps_raw.items()}
    if "pool_for_model" in steps:
        steps.setdefault("plan", steps.pop("pool_for_model"))
    steps.setdefault("plan", steps["ingest"])
    steps.setdefault("fingerprint", steps["ingest"])

    _expect("default_model_pool" in data, "default_model_pool: missing (pool name)")
    default_model_pool = known_pool(data["default_model_pool"], "default_model_pool")
    model_pools_raw = data.get("model_pools") or {}
    _expect(isinstance(model_pools_raw, dict), "model_pools: expected a mapping of model to pool")
    valid_models = list_models()
    model_pools = {}
    for model, pool in model_pools_raw.items():
        _expect(
            model in valid_models,
            f"model_pools.{model}: unknown model configuration (valid: {', '.join(valid_models)})",
        )
        model_pools[str(model)] = known_pool(pool, f"model_pools.{model}")

    train_pools = {model_pools.get(m, default_model_pool) for m in valid_models}
    with_gpu = sorted(p for p in train_pools if pools[p].accelerator)
    without = sorted(p for p in train_pools if not pools[p].accelerator)
    # One train task serves every model, on one image: its pools must agree on having
    # an accelerator (the GPU image) or not.
    _expect(
        not (with_gpu and without),
        f"model_pools: train pools {', '.join(without)} (no accelerator) and "
        f"{', '.join(with_gpu)} (accelerator) cannot be mixed; give every train pool an "
        "accelerator, or train every model on one pool",
    )

    sa = data.get("service_account")
    _expect(sa is None or (isinstance(sa, str) and sa), "service_account: expected a name or null")
    return Placement(
        parallelism=parallelism,
        retries=retries,
        pools=pools,
        steps=steps,
        default_model_pool=default_model_pool,
        model_pools=model_pools,
        service_account=sa,
        gcp_secret=_gcp_secret(data.get("gcp_secret")),
    )


def pool_record(pool: Pool) -> dict[str, Any]:
    """``pool`` as the plain record a train task is placed from (see
    :meth:`Placement.model_placements`)."""
    return {
        "pool": pool.name,
        "accelerator": pool.accelerator or "",
        "accelerator_count": str(pool.accelerator_count),
        "cpu": pool.cpu,
        "memory": pool.memory,
        "cpu_limit": pool.cpu_limit,
        "memory_limit": pool.memory_limit,
        "node_selector": dict(pool.node_selector),
        "tolerations": [dict(t) for t in pool.tolerations],
    }


def _expect(ok: bool, message: str) -> None:
    if not ok:
        raise CnnzooError(message)


def _no_unknown(data: dict, valid: tuple[str, ...], prefix: str) -> None:
    for key in data:
        hint = " (train pools: default_model_pool, model_pools)" if prefix == "steps." else ""
        _expect(
            key in valid, f"unknown key {prefix + str(key)!r} (valid: {', '.join(valid)}){hint}"
        )


def _quantity(value: Any, key: str, pattern: re.Pattern, example: str) -> str:
    text = str(value) if isinstance(value, (int, float, str)) and value != "" else None
    _expect(
        text is not None and not isinstance(value, bool) and bool(pattern.match(text)),
        f"{key} must be a Kubernetes quantity like {example}, got {value!r}",
    )
    return text


def _duration(value: Any, key: str) -> str:
    text = str(value)
    m = _DURATION_RE.match(text)
    _expect(bool(m) and not isinstance(value, bool), f"{key} must be a duration like 60s, 5m, 1h")
    seconds = float(m.group(1)) * {"s": 1, None: 1, "m": 60, "h": 3600}[m.group(3)]
    return f"{int(seconds)}s"


def _retries(raw: Any) -> Retries:
    _expect(isinstance(raw, dict), "retries: expected a mapping (count, backoff, factor, max)")
    _no_unknown(raw, ("count", "backoff", "factor", "max"), "retries.")
    count = raw.get("count", 3)
    _expect(
        isinstance(count, int) and not isinstance(count, bool) and count >= 0,
        f"retries.count must be an integer >= 0, got {count!r}",
    )
    factor = raw.get("factor", 2.0)
    _expect(
        isinstance(factor, (int, float)) and not isinstance(factor, bool) and factor >= 1,
        f"retries.factor must be a number >= 1, got {factor!r}",
    )
    return Retries(
        count=count,
        backoff=_duration(raw.get("backoff", "60s"), "retries.backoff"),
        factor=float(factor),
        max=_duration(raw.get("max", "600s"), "retries.max"),
    )


def _gcp_secret(raw: Any) -> GcpSecret | None:
    if raw is None:
        return None
    _expect(
        isinstance(raw, dict),
        "gcp_secret: expected a mapping like {name: cnnzoo-gcp-sa, key: key.json} or null",
    )
    _no_unknown(raw, ("name", "key"), "gcp_secret.")
    name, key = raw.get("name"), raw.get("key")
    # A bad value is echoed only if short: a pasted key file must not end up in a log.
    shown = f", got {name!r}" if len(repr(name)) <= 70 else ""
    _expect(
        isinstance(name, str) and bool(_SECRET_NAME_RE.match(name)),
        f"gcp_secret.name must be a Kubernetes secret name like cnnzoo-gcp-sa{shown}",
    )
    _expect(
        isinstance(key, str) and bool(_SECRET_KEY_RE.match(key)) and key not in (".", ".."),
        "gcp_secret.key must name the secret's data key (like key.json: letters, digits,"
        " '-', '_', '.'), not hold the key",
    )
    return GcpSecret(name=name, key=key)


def _pool(name: str, raw: Any) -> Pool:
    where = f"pools.{name}"
    _expect(isinstance(raw, dict), f"{where}: expected a mapping")
    _no_unknown(raw, _POOL_KEYS, f"{where}.")
    for required in ("cpu", "memory"):
        _expect(required in raw, f"{where}.{required}: missing")
    cpu = _quantity(raw["cpu"], f"{where}.cpu", _CPU_RE, '"8" or "500m"')
    memory = _quantity(raw["memory"], f"{where}.memory", _MEMORY_RE, "32G or 512Mi")
    cpu_limit = _quantity(raw.get("cpu_limit", cpu), f"{where}.cpu_limit", _CPU_RE, '"8"')
    memory_limit = _quantity(
        raw.get("memory_limit", memory), f"{where}.memory_limit", _MEMORY_RE, "32G"
    )
    accelerator = raw.get("accelerator")
    accel_type = raw.get("accelerator_type")
    count = raw.get("accelerator_count", 1 if accelerator else 0)
    node_selector = raw.get("node_selector")
    tolerations = raw.get("tolerations")
    if accelerator is None:
        _expect(
            accel_type is None and not count,
            f"{where}: accelerator_type/accelerator_count need 'accelerator' (e.g. nvidia.com/gpu)",
        )
    else:
        _expect(
            isinstance(accelerator, str) and accelerator,
            f"{where}.accelerator must be a resource name like nvidia.com/gpu",
        )
        _expect(
            isinstance(count, int) and not isinstance(count, bool) and count >= 1,
            f"{where}.accelerator_count must be an integer >= 1, got {count!r}",
        )
        _expect(
            accel_type is None or (isinstance(accel_type, str) and accel_type),
            f"{where}.accelerator_type must be a label value like nvidia-l4",
        )
        if node_selector is None and accel_type:
            node_selector = {GKE_ACCELERATOR_LABEL: accel_type}
        if tolerations is None:
            tolerations = [{"key": accelerator, "operator": "Exists", "effect": "NoSchedule"}]
    node_selector = node_selector or {}
    _expect(
        isinstance(node_selector, dict)
        and all(isinstance(v, str) and v for v in node_selector.values()),
        f"{where}.node_selector must map label names to non-empty strings",
    )
    tolerations = tolerations or []
    _expect(isinstance(tolerations, list), f"{where}.tolerations must be a list")
    checked = []
    for i, tol in enumerate(tolerations):
        key = f"{where}.tolerations[{i}]"
        _expect(isinstance(tol, dict), f"{key}: expected a mapping")
        _no_unknown(tol, ("key", "operator", "value", "effect"), f"{key}.")
        op = tol.get("operator", "Equal")
        _expect(op in ("Equal", "Exists"), f"{key}.operator must be Equal or Exists, got {op!r}")
        effect = tol.get("effect")
        _expect(
            effect in (None, "NoSchedule", "PreferNoSchedule", "NoExecute"),
            f"{key}.effect must be NoSchedule, PreferNoSchedule or NoExecute, got {effect!r}",
        )
        checked.append({k: str(v) for k, v in tol.items()})
    return Pool(
        name=name,
        cpu=cpu,
        memory=memory,
        cpu_limit=cpu_limit,
        memory_limit=memory_limit,
        accelerator=accelerator,
        accelerator_type=accel_type,
        accelerator_count=count if accelerator else 0,
        node_selector={str(k): v for k, v in node_selector.items()},
        tolerations=tuple(checked),
    )
