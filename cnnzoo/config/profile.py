"""Typed training profiles: defaults in YAML, overrides from files or ``key=value``.

A profile (``configs/profiles/<name>.yaml``) holds everything that shapes a run:
image size, batch size, seed, split fractions, accelerator switches and, per
registered model configuration, its learning-rate schedule. ``full`` reproduces the
seed notebook; ``demo`` is sized for a 2-core CPU. A profile may ``extends:`` another
and override only what differs. The fields are declared once, as pydantic models with
``extra="forbid"`` (a new field is one line); unknown keys and bad values are rejected
with one :class:`~cnnzoo.core.errors.CnnzooError` line naming the file or ``--set`` item, the
key and the value (:mod:`cnnzoo.core.yamlconfig`).

Example::

    profile = load_profile("demo", overrides=["max_epochs=1", "models.simple.learning_rate=0.01"])
    stages = profile.stages_for("resnet50v2_finetune")
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    StrictStr,
    field_validator,
    model_validator,
)

import cnnzoo.configs
from cnnzoo.core.errors import CnnzooError
from cnnzoo.core.yamlconfig import Number, deep_merge, invalid, parse_override, read_yaml, validate
from cnnzoo.models.registry import get_spec, list_models

__all__ = [
    "CHECKPOINT_MONITORS",
    "MAX_REPEATS",
    "PRECISIONS",
    "Profile",
    "Schedule",
    "Stage",
    "config_dir",
    "deep_merge",
    "list_profiles",
    "load_profile",
    "parse_override",
    "profile_from_dict",
    "profiles_dir",
    "read_yaml",
    "repeat_seeds",
]

PRECISIONS = ("float32", "mixed_float16", "mixed_bfloat16")
#: What picks the saved model among a run's epochs (the notebook: validation loss).
CHECKPOINT_MONITORS = ("val_loss", "val_accuracy")
#: Most training runs per configuration (``repeats``).
MAX_REPEATS = 100


_FORBID = ConfigDict(extra="forbid")


class Stage(BaseModel):
    """One training stage: optimiser learning rate, epoch cap and callback patiences."""

    model_config = _FORBID

    learning_rate: Number = Field(1e-3, gt=0)
    epochs: StrictInt = Field(50, ge=1)
    lr_patience: StrictInt = Field(5, ge=0)
    stop_patience: StrictInt = Field(10, ge=0)


class Schedule(Stage):
    """A model configuration's schedule: stage 1, plus ``finetune`` (stage 2) if two-stage."""

    finetune: Stage | None = None


class Profile(BaseModel):
    """A resolved, validated training profile (see ``configs/profiles/full.yaml``)."""

    model_config = _FORBID

    name: StrictStr = "custom"
    img_size: StrictInt = Field(100, ge=32, le=4096)  # larger: one image fills a shard
    batch_size: StrictInt = Field(258, ge=1)
    seed: StrictInt = Field(42, ge=0)  # numpy's rule
    repeats: StrictInt = Field(1, ge=1, le=MAX_REPEATS)  # training runs per configuration
    val_fraction: Number = Field(0.15, gt=0, lt=1, description="in (0, 1)")
    test_fraction: Number = Field(0.1, gt=0, lt=1, description="in (0, 1)")
    max_epochs: StrictInt | None = Field(None, ge=1)
    lr_factor: Number = Field(0.2, gt=0, lt=1, description="in (0, 1)")
    min_delta: Number = Field(1e-5, ge=0)
    weights: StrictStr | None = None
    precision: Literal["float32", "mixed_float16", "mixed_bfloat16"] = "float32"
    jit_compile: StrictBool = False
    shuffle_buffer: StrictInt = Field(2048, ge=1)
    eval_batch_size: StrictInt = Field(512, ge=1)
    bn_momentum: Number | None = Field(None, ge=0, lt=1, description="in [0, 1) or null")
    random_weights_steps: StrictInt | None = Field(None, ge=1)
    checkpoint_monitor: Literal["val_loss", "val_accuracy"] = "val_loss"
    #: Training's memory budget (MiB): the train and val parts are cached in memory only
    #: while the process stays under it (cnnzoo.data.loader.plan_cache), otherwise streamed from
    #: their shards, so peak memory stays bounded as the data grows.
    cache_budget_mb: StrictInt = Field(4096, ge=0)
    models: dict[str, Schedule] = Field(default_factory=dict)

    @field_validator("models", mode="before")
    @classmethod
    def _no_models_is_empty(cls, value: Any) -> Any:
        return {} if value is None else value

    @model_validator(mode="after")
    def _one_schedule_per_registered_model(self) -> Profile:

        valid = list_models()
        for name, sched in self.models.items():
            if name not in valid:
                raise invalid(
                    f"models.{name}", f"unknown model configuration (valid: {', '.join(valid)})"
                )
            two_stage = get_spec(name).strategy == "finetune"
            if two_stage and sched.finetune is None:
                raise invalid(f"models.{name}.finetune", "missing (the second stage)")
            if not two_stage and sched.finetune is not None:
                raise invalid(
                    f"models.{name}.finetune", "only *_finetune configurations have a second stage"
                )
        missing = [m for m in valid if m not in self.models]
        if missing:
            raise invalid("models", f"no schedule for {', '.join(missing)}")
        return self

    def repeat_seeds(self) -> list[int]:
        """The training seeds of the ``repeats`` runs of every configuration."""
        return repeat_seeds(self.seed, self.repeats)

    def steps_cap(self, model_name: str) -> int | None:
        """Optimizer steps per epoch for ``model_name``, or None for whole epochs.

        ``random_weights_steps`` applies to pretrained configurations run without
        pretrained weights (``weights: null``) only: they cannot learn in a short run,
        so a few steps prove that their path (transfer, partial, two-stage fine-tune)
        executes. With weights they train whole epochs like every other model.
        """

        if self.weights is None and get_spec(model_name).pretrained:
            return self.random_weights_steps
        return None

    def stages_for(self, model_name: str) -> list[Stage]:
        """The stages to train ``model_name`` with, ``max_epochs`` applied to each."""

        get_spec(model_name)  # raises for unknown names
        sched = self.models[model_name]
        stages = [Stage(**sched.model_dump(exclude={"finetune"}))]
        if sched.finetune is not None:
            stages.append(sched.finetune.model_copy())
        if self.max_epochs is not None:
            for s in stages:
                s.epochs = min(s.epochs, self.max_epochs)
        return stages

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form (what ``load_profile`` accepts back), for saving beside results."""
        return self.model_dump()

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)


def repeat_seeds(seed: int, repeats: int) -> list[int]:
    """The training seeds of ``repeats`` runs, derived deterministically from ``seed``.

    The first is ``seed`` itself (so ``repeats: 1`` trains exactly as before); repeat
    ``r`` >= 1 gets the first 4 bytes of ``sha256("cnnzoo-repeat:<seed>:<r>")`` modulo
    2**31, skipping a value already taken. Every configuration gets the same seeds, so
    runs with equal seeds pair up in the comparison.
    """

    seeds = [seed]
    r = 1
    while len(seeds) < repeats:
        digest = hashlib.sha256(f"cnnzoo-repeat:{seed}:{r}".encode()).digest()
        candidate = int.from_bytes(digest[:4], "big") % 2**31
        if candidate not in seeds:
            seeds.append(candidate)
        r += 1
    return seeds


def config_dir() -> Path:
    """``$CNNZOO_CONFIG_DIR``, else the installed package data ``cnnzoo.configs`` (the
    repository's ``configs/`` folder, mapped into the package by ``pyproject.toml``)."""
    env = os.environ.get("CNNZOO_CONFIG_DIR")
    if env:
        if not Path(env).is_dir():
            raise CnnzooError(f"CNNZOO_CONFIG_DIR: no such folder: {env}")
        return Path(env)

    return Path(cnnzoo.configs.__file__).resolve().parent


def profiles_dir() -> Path:
    """Where named profiles live: ``<config_dir()>/profiles``."""
    return config_dir() / "profiles"


def list_profiles() -> list[str]:
    """Names of the profiles in :func:`profiles_dir`."""
    d = profiles_dir()
    return sorted(p.stem for p in d.glob("*.yaml")) if d.is_dir() else []


def _profile_path(name_or_path: str) -> Path:
    p = Path(name_or_path)
    if p.suffix in (".yaml", ".yml"):
        return p
    d = profiles_dir()
    candidate = d / f"{name_or_path}.yaml"
    if not candidate.is_file():
        raise CnnzooError(
            f"unknown profile {name_or_path!r} (valid: {', '.join(list_profiles()) or 'none'};"
            f" looked in {d})"
        )
    return candidate


def _profile_layers(name_or_path: str, seen: tuple[str, ...] = ()) -> list[tuple[str, dict]]:
    """The profile's files as (file name, data), the ``extends`` chain's root first."""
    path = _profile_path(name_or_path)
    if str(path) in seen:
        raise CnnzooError(f"{path}: 'extends' forms a cycle")
    data = read_yaml(path)
    base_name = data.pop("extends", None)
    data.setdefault("name", path.stem)
    if base_name is None:
        return [(str(path), data)]
    return [*_profile_layers(str(base_name), seen + (str(path),)), (str(path), data)]


def _sets(data: Any, loc: tuple[str, ...]) -> bool:
    for part in loc:
        if not isinstance(data, dict) or part not in data:
            return False
        data = data[part]
    return True


def load_profile(
    name_or_path: str = "demo",
    overrides: list[str] | tuple[str, ...] = (),
    override_files: list[str] | tuple[str, ...] = (),
) -> Profile:
    """Load a named profile (or a YAML path), apply override files then ``key=value`` items.

    Args:
        name_or_path: a profile name in :func:`profiles_dir` or a path to a YAML file.
        overrides: ``key=value`` items; dotted keys reach nested fields
            (``models.simple.epochs=3``).
        override_files: YAML files merged over the profile, in order.

    Returns:
        The validated profile.

    Raises:
        CnnzooError: unknown profile, unknown key or bad value (the message names it).
    """
    layers = _profile_layers(name_or_path)
    layers += [(str(f), read_yaml(Path(f))) for f in override_files]
    layers += [(f"--set {item}", parse_override(item)) for item in overrides]
    data: dict[str, Any] = {}
    for _, layer in layers:
        data = deep_merge(data, layer)

    def source(loc: tuple[str, ...]) -> str:
        """The last file or ``--set`` item that set ``loc`` (else the profile's file)."""
        for where, layer in reversed(layers):
            if _sets(layer, loc):
                return where
        return layers[len(layers) - len(override_files) - len(overrides) - 1][0]

    return validate(Profile, data, source)


def override_profile(profile: Profile, overrides: list[str] | tuple[str, ...]) -> Profile:
    """``profile`` with ``key=value`` items applied and validated, as ``--set`` is by
    :func:`load_profile` (the same parsing, the same one-line message naming the item).

    Raises:
        CnnzooError: unknown key or bad value (``--set <item>: <key>: <problem>``).
    """
    layers = [(f"--set {item}", parse_override(item)) for item in overrides]
    data = profile.to_dict()
    for _, layer in layers:
        data = deep_merge(data, layer)

    def source(loc: tuple[str, ...]) -> str | None:
        for where, layer in reversed(layers):
            if _sets(layer, loc):
                return where
        return None

    return validate(Profile, data, source)


def profile_from_dict(data: dict[str, Any], source: str | None = None) -> Profile:
    """Build and validate a Profile from plain data (e.g. a saved resolved config).

    Args:
        data: the profile's fields (``Profile.to_dict()``'s form).
        source: what to name in an error message (a file), or None.

    Raises:
        CnnzooError: unknown key or bad value (the message names the key and the value).
    """
    return validate(Profile, data, source)
