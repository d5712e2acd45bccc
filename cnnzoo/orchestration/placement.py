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

The file's schema is declared once, as frozen pydantic models with ``extra="forbid"``
(:class:`Placement`, :class:`Pool`, :class:`Toleration`, :class:`Retries`,
:class:`GcpSecret`); what refers to another part of the file (a pool name, a model
name, the train pools' images) is checked by their validators. A bad value is one
:class:`~cnnzoo.core.errors.CnnzooError` line naming the file, the key and the value
(:func:`cnnzoo.core.yamlconfig.validate`).

Example::

    placement = load_placement("configs/cluster.yaml")
    placement.pool_for_model("xception_finetune").accelerator_type  # 'nvidia-l4'
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictInt,
    StrictStr,
    field_validator,
    model_validator,
)

from cnnzoo.config.profile import config_dir
from cnnzoo.core.yamlconfig import Number, invalid, read_yaml, validate
from cnnzoo.models.registry import list_models

GKE_ACCELERATOR_LABEL = "cloud.google.com/gke-accelerator"
#: Where a task mounts the ``gcp_secret`` (read-only); the key file is ``<here>/<key>``.
GCP_SECRET_MOUNT_PATH = "/var/secrets/google"
# plan and fingerprint are tiny CPU steps (default: the ingest pool); pool_for_model is
# the former name of plan, still accepted.
STEPS = ("ingest", "split", "evaluate", "report", "plan", "fingerprint", "pool_for_model")
_REQUIRED_STEPS = ("ingest", "split", "evaluate", "report")
_DURATION_RE = re.compile(r"^(\d+(\.\d+)?)(s|m|h)?$")
_FROZEN = ConfigDict(extra="forbid", frozen=True)


def _text(value: Any) -> Any:
    """YAML reads ``cpu: 8`` as a number; Kubernetes quantities and labels are strings."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    return value


def _seconds(value: Any) -> Any:
    """``60``, ``60s``, ``5m`` or ``1h`` as ``"<n>s"`` (what KFP's retry policy takes)."""
    m = _DURATION_RE.match(str(value)) if not isinstance(value, bool) else None
    if not m:
        raise ValueError("not a duration")
    return f"{int(float(m.group(1)) * {'s': 1, None: 1, 'm': 60, 'h': 3600}[m.group(3)])}s"


Cpu = Annotated[
    str,
    BeforeValidator(_text),
    Field(pattern=r"^(\d+(\.\d+)?|\d+m)$", description='a Kubernetes quantity like "8" or "500m"'),
]
Memory = Annotated[
    str,
    BeforeValidator(_text),
    Field(
        pattern=r"^\d+(\.\d+)?(E|Ei|P|Pi|T|Ti|G|Gi|M|Mi|K|Ki)?$",
        json_schema_extra={"expected": "a Kubernetes quantity like 32G or 512Mi"},
    ),
]
Duration = Annotated[
    str,
    BeforeValidator(_seconds),
    Field(json_schema_extra={"expected": "a duration like 60s, 5m, 1h"}),
]
Label = Annotated[str, BeforeValidator(_text), Field(min_length=1)]


class Toleration(BaseModel):
    """A Kubernetes toleration; :meth:`to_dict` holds only the keys that were given."""

    model_config = _FROZEN

    key: Label | None = None
    operator: Literal["Equal", "Exists"] = "Equal"
    value: Label | None = None
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = None

    def to_dict(self) -> dict[str, str]:
        return self.model_dump(exclude_unset=True)


class Pool(BaseModel):
    """A node pool: the resources a task requests there and how it is scheduled onto it.

    Attributes:
        name: the key under ``pools``.
        cpu: CPU request (Kubernetes quantity, e.g. ``"8"`` or ``"500m"``).
        memory: memory request (e.g. ``"32G"``).
        cpu_limit: CPU limit (defaults to ``cpu``).
        memory_limit: memory limit (defaults to ``memory``).
        accelerator: the accelerator resource name (``nvidia.com/gpu``), or None.
        accelerator_type: the node label value of the accelerator (``nvidia-l4``), or None;
            with an accelerator it defaults the node selector to
            ``{cloud.google.com/gke-accelerator: <type>}``.
        accelerator_count: how many accelerators a task requests (0 without one;
            default 1 with one).
        node_selector: node labels a task must match.
        tolerations: Kubernetes tolerations (with an accelerator, default: tolerate its
            ``NoSchedule`` taint).
    """

    model_config = _FROZEN

    name: StrictStr = Field(json_schema_extra={"internal": True})
    cpu: Cpu
    memory: Memory
    cpu_limit: Cpu
    memory_limit: Memory
    accelerator: StrictStr | None = Field(
        None, min_length=1, json_schema_extra={"expected": "a resource name like nvidia.com/gpu"}
    )
    accelerator_type: StrictStr | None = Field(
        None, min_length=1, json_schema_extra={"expected": "a label value like nvidia-l4"}
    )
    accelerator_count: StrictInt = Field(0, ge=0, le=64)  # a node holds 8 or 16
    node_selector: dict[str, Label] = Field(default_factory=dict)
    tolerations: tuple[Toleration, ...] = ()

    @model_validator(mode="before")
    @classmethod
    def _defaults(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        data = dict(data)
        for limit, request in (("cpu_limit", "cpu"), ("memory_limit", "memory")):
            if request in data:
                data.setdefault(limit, data[request])
        accelerator = data.get("accelerator")
        if accelerator:
            data.setdefault("accelerator_count", 1)
            if data.get("node_selector") is None and data.get("accelerator_type"):
                data["node_selector"] = {GKE_ACCELERATOR_LABEL: data["accelerator_type"]}
            if data.get("tolerations") is None:
                data["tolerations"] = [
                    {"key": accelerator, "operator": "Exists", "effect": "NoSchedule"}
                ]
        for key in ("node_selector", "tolerations"):
            if data.get(key) is None:
                data.pop(key, None)
        return data

    @model_validator(mode="after")
    def _accelerator_settings_need_an_accelerator(self) -> Pool:
        if self.accelerator is None and (self.accelerator_type or self.accelerator_count):
            raise invalid(
                "", "accelerator_type/accelerator_count need 'accelerator' (e.g. nvidia.com/gpu)"
            )
        if self.accelerator is not None and self.accelerator_count < 1:
            raise invalid(
                "accelerator_count",
                f"must be >= 1 with an accelerator, got {self.accelerator_count}",
            )
        return self


class Retries(BaseModel):
    """Retry policy of the training tasks (spot GPU nodes can vanish mid-run)."""

    model_config = _FROZEN

    count: StrictInt = Field(3, ge=0, le=100)
    backoff: Duration = "60s"
    factor: Number = Field(2.0, ge=1)
    max: Duration = "600s"


class GcpSecret(BaseModel):
    """A Kubernetes secret holding a Google service-account key file (``gcp_secret``).

    Only these names reach the compiled pipeline; the key itself stays in the cluster.

    Attributes:
        name: the secret's name in the run's namespace (e.g. ``cnnzoo-gcp-sa``).
        key: the data key holding the JSON key file (e.g. ``key.json``).
    """

    model_config = _FROZEN

    # Kubernetes: a secret name is a DNS subdomain; a data key is [-._a-zA-Z0-9]+.
    name: StrictStr = Field(
        pattern=r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$",
        json_schema_extra={"expected": "a Kubernetes secret name like cnnzoo-gcp-sa"},
    )
    key: StrictStr = Field(
        pattern=r"^[-._a-zA-Z0-9]{1,253}$",
        json_schema_extra={
            "expected": "the secret's data key (like key.json: letters, digits, '-', '_', '.'),"
            " not hold the key",
            "secret": True,
        },
    )

    @field_validator("key")
    @classmethod
    def _not_a_path(cls, key: str) -> str:
        if key in (".", ".."):
            raise ValueError("not a file name")
        return key

    @property
    def credentials_path(self) -> str:
        """The key file's path in a task: the value of ``GOOGLE_APPLICATION_CREDENTIALS``."""
        return f"{GCP_SECRET_MOUNT_PATH}/{self.key}"


#: The largest ``parallelism`` (more tasks than any study has; KFP keeps it in an int32).
MAX_PARALLELISM = 10_000


class Placement(BaseModel):
    """A validated ``cluster.yaml``."""

    model_config = _FROZEN

    # KFP keeps parallelism in an int32; a study has at most a few hundred training tasks.
    parallelism: StrictInt = Field(
        4,
        ge=0,
        le=MAX_PARALLELISM,
        json_schema_extra={"expected": f"an integer 0..{MAX_PARALLELISM} (0: no cap)"},
    )
    retries: Retries = Field(default_factory=Retries)
    pools: dict[str, Pool] = Field(min_length=1)
    steps: dict[str, str]
    default_model_pool: str
    model_pools: dict[str, str] = Field(default_factory=dict)
    service_account: StrictStr | None = Field(None, min_length=1)
    gcp_secret: GcpSecret | None = None

    @model_validator(mode="before")
    @classmethod
    def _names_and_defaults(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        data = dict(data)
        if data.get("retries") is None:
            data.pop("retries", None)
        if data.get("model_pools") is None:
            data.pop("model_pools", None)
        pools = data.get("pools")
        if isinstance(pools, dict):
            for name, raw in pools.items():
                if isinstance(raw, dict) and "name" in raw:
                    raise invalid(f"pools.{name}.name", "not a setting (a pool's name is its key)")
            data["pools"] = {
                str(n): {**raw, "name": str(n)} if isinstance(raw, dict) else raw
                for n, raw in pools.items()
            }
        steps = data.get("steps")
        if isinstance(steps, dict):
            steps = dict(steps)
            for key in steps:
                if key not in STEPS:
                    raise invalid(
                        f"steps.{key}",
                        f"unknown step (valid: {', '.join(STEPS)}; train pools: "
                        "default_model_pool, model_pools)",
                    )
            for required in _REQUIRED_STEPS:
                if required not in steps:
                    raise invalid(f"steps.{required}", "missing (pool name)")
            if "pool_for_model" in steps:
                steps.setdefault("plan", steps.pop("pool_for_model"))
            steps.setdefault("plan", steps["ingest"])
            steps.setdefault("fingerprint", steps["ingest"])
            data["steps"] = steps
        return data

    @model_validator(mode="after")
    def _references_resolve(self) -> Placement:

        def known_pool(value: str, key: str) -> None:
            if value not in self.pools:
                raise invalid(key, f"unknown pool {value!r} (pools: {', '.join(self.pools)})")

        for step, pool in self.steps.items():
            known_pool(pool, f"steps.{step}")
        known_pool(self.default_model_pool, "default_model_pool")
        valid_models = list_models()
        for model, pool in self.model_pools.items():
            if model not in valid_models:
                raise invalid(
                    f"model_pools.{model}",
                    f"unknown model configuration (valid: {', '.join(valid_models)})",
                )
            known_pool(pool, f"model_pools.{model}")
        train_pools = {self.model_pools.get(m, self.default_model_pool) for m in valid_models}
        with_gpu = sorted(p for p in train_pools if self.pools[p].accelerator)
        without = sorted(p for p in train_pools if not self.pools[p].accelerator)
        # One train task serves every model, on one image: its pools must agree on having
        # an accelerator (the GPU image) or not.
        if with_gpu and without:
            raise invalid(
                "model_pools",
                f"train pools {', '.join(without)} (no accelerator) and {', '.join(with_gpu)}"
                " (accelerator) cannot be mixed; give every train pool an accelerator, or"
                " train every model on one pool",
            )
        return self

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

        return {model: pool_record(self.pool_for_model(model)) for model in list_models()}

    def train_pool_names(self) -> list[str]:
        """Distinct pools that train models: the default last, others in first-use order."""
        names = [
            p for p in dict.fromkeys(self.model_pools.values()) if p != self.default_model_pool
        ]
        return names + [self.default_model_pool]

    def without_retries(self) -> Placement:
        """A copy with retries off (local runs: a crash there is not a lost spot node)."""
        return self.model_copy(update={"retries": self.retries.model_copy(update={"count": 0})})

    def for_local_run(self) -> Placement:
        """A copy for ``kfp.local``: retries off and no ``gcp_secret`` (the local runner
        would set ``GOOGLE_APPLICATION_CREDENTIALS`` to a path that exists only in pods)."""
        return self.without_retries().model_copy(update={"gcp_secret": None})


def default_placement_path() -> Path:
    """``$CNNZOO_CONFIG_DIR/cluster.yaml``, else the installed package's ``cluster.yaml``."""

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
    return validate(Placement, read_yaml(path, what="placement file"), str(path))


def placement_from_dict(data: Any) -> Placement:
    """Validate plain data (the parsed YAML) into a :class:`Placement`.

    Raises:
        CnnzooError: the message names the offending key.
    """
    return validate(Placement, data)


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
        "tolerations": [t.to_dict() for t in pool.tolerations],
    }
