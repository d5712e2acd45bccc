"""Typed training profiles: defaults in YAML, overrides from files or ``key=value``.

A profile (``configs/profiles/<name>.yaml``) holds everything that shapes a run:
image size, batch size, seed, split fractions, accelerator switches and, per
registered model configuration, its learning-rate schedule. ``full`` reproduces the
seed notebook; ``demo`` is sized for a 2-core CPU. A profile may ``extends:`` another
and override only what differs. Unknown keys and bad values are rejected with a
:class:`~cnnzoo.errors.CnnzooError` that names the key.

Example::

    profile = load_profile("demo", overrides=["max_epochs=1", "models.simple.learning_rate=0.01"])
    stages = profile.stages_for("resnet50v2_finetune")
"""

from __future__ import annotations

import copy
import dataclasses
import os
import types
import typing
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from cnnzoo.errors import CnnzooError

PRECISIONS = ("float32", "mixed_float16", "mixed_bfloat16")
#: What picks the saved model among a run's epochs (the notebook: validation loss).
CHECKPOINT_MONITORS = ("val_loss", "val_accuracy")


@dataclass
class Stage:
    """One training stage: optimiser learning rate, epoch cap and callback patiences."""

    learning_rate: float = 1e-3
    epochs: int = 50
    lr_patience: int = 5
    stop_patience: int = 10

    def validate(self, where: str) -> None:
        _check(
            self.learning_rate > 0, f"{where}.learning_rate must be > 0, got {self.learning_rate}"
        )
        _check(self.epochs >= 1, f"{where}.epochs must be >= 1, got {self.epochs}")
        _check(self.lr_patience >= 0, f"{where}.lr_patience must be >= 0, got {self.lr_patience}")
        _check(
            self.stop_patience >= 0, f"{where}.stop_patience must be >= 0, got {self.stop_patience}"
        )


@dataclass
class Schedule(Stage):
    """A model configuration's schedule: stage 1, plus ``finetune`` (stage 2) if two-stage."""

    finetune: Stage | None = None


@dataclass
class Profile:
    """A resolved, validated training profile."""

    name: str = "custom"
    img_size: int = 100
    batch_size: int = 258
    seed: int = 42
    val_fraction: float = 0.15
    test_fraction: float = 0.1
    max_epochs: int | None = None
    lr_factor: float = 0.2
    min_delta: float = 1e-5
    weights: str | None = None
    precision: str = "float32"
    jit_compile: bool = False
    shuffle_buffer: int = 2048
    eval_batch_size: int = 512
    bn_momentum: float | None = None
    random_weights_steps: int | None = None
    checkpoint_monitor: str = "val_loss"
    models: dict[str, Schedule] = field(default_factory=dict)

    def validate(self) -> None:
        """Check every field; raise CnnzooError naming the first bad one."""
        from cnnzoo.models import get_spec, list_models

        _check(self.img_size >= 32, f"img_size must be >= 32, got {self.img_size}")
        # Larger is no CNN input: one raw image would fill a 100 MB shard (and memory).
        _check(self.img_size <= 4096, f"img_size must be <= 4096, got {self.img_size}")
        _check(self.seed >= 0, f"seed must be >= 0, got {self.seed}")  # numpy's rule
        _check(self.batch_size >= 1, f"batch_size must be >= 1, got {self.batch_size}")
        _check(
            self.eval_batch_size >= 1, f"eval_batch_size must be >= 1, got {self.eval_batch_size}"
        )
        _check(
            0 < self.val_fraction < 1, f"val_fraction must be in (0, 1), got {self.val_fraction}"
        )
        _check(
            0 < self.test_fraction < 1, f"test_fraction must be in (0, 1), got {self.test_fraction}"
        )
        _check(
            self.max_epochs is None or self.max_epochs >= 1,
            f"max_epochs must be >= 1 or null, got {self.max_epochs}",
        )
        _check(0 < self.lr_factor < 1, f"lr_factor must be in (0, 1), got {self.lr_factor}")
        _check(self.min_delta >= 0, f"min_delta must be >= 0, got {self.min_delta}")
        _check(
            self.precision in PRECISIONS,
            f"precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}",
        )
        _check(self.shuffle_buffer >= 1, f"shuffle_buffer must be >= 1, got {self.shuffle_buffer}")
        _check(
            self.bn_momentum is None or 0 <= self.bn_momentum < 1,
            f"bn_momentum must be in [0, 1) or null, got {self.bn_momentum}",
        )
        _check(
            self.checkpoint_monitor in CHECKPOINT_MONITORS,
            f"checkpoint_monitor must be one of {', '.join(CHECKPOINT_MONITORS)}, "
            f"got {self.checkpoint_monitor!r}",
        )
        _check(
            self.random_weights_steps is None or self.random_weights_steps >= 1,
            f"random_weights_steps must be >= 1 or null, got {self.random_weights_steps}",
        )
        valid = list_models()
        for name, sched in self.models.items():
            _check(
                name in valid,
                f"models.{name}: unknown model configuration (valid: {', '.join(valid)})",
            )
            sched.validate(f"models.{name}")
            two_stage = get_spec(name).strategy == "finetune"
            if two_stage:
                _check(sched.finetune is not None, f"models.{name}.finetune is required")
                sched.finetune.validate(f"models.{name}.finetune")
            else:
                _check(
                    sched.finetune is None,
                    f"models.{name}.finetune: only *_finetune configurations have a second stage",
                )
        missing = [m for m in valid if m not in self.models]
        _check(not missing, f"models: no schedule for {', '.join(missing)}")

    def steps_cap(self, model_name: str) -> int | None:
        """Optimizer steps per epoch for ``model_name``, or None for whole epochs.

        ``random_weights_steps`` applies to pretrained configurations run without
        pretrained weights (``weights: null``) only: they cannot learn in a short run,
        so a few steps prove that their path (transfer, partial, two-stage fine-tune)
        executes. With weights they train whole epochs like every other model.
        """
        from cnnzoo.models import get_spec

        if self.weights is None and get_spec(model_name).pretrained:
            return self.random_weights_steps
        return None

    def stages_for(self, model_name: str) -> list[Stage]:
        """The stages to train ``model_name`` with, ``max_epochs`` applied to each."""
        from cnnzoo.models import get_spec

        get_spec(model_name)  # raises for unknown names
        sched = self.models[model_name]
        stages = [Stage(sched.learning_rate, sched.epochs, sched.lr_patience, sched.stop_patience)]
        if sched.finetune is not None:
            stages.append(copy.copy(sched.finetune))
        if self.max_epochs is not None:
            for s in stages:
                s.epochs = min(s.epochs, self.max_epochs)
        return stages

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form (what ``load_profile`` accepts back), for saving beside results."""
        return dataclasses.asdict(self)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise CnnzooError(message)


def config_dir() -> Path:
    """``$CNNZOO_CONFIG_DIR``, else the installed package data ``cnnzoo.configs`` (the
    repository's ``configs/`` folder, mapped into the package by ``pyproject.toml``)."""
    env = os.environ.get("CNNZOO_CONFIG_DIR")
    if env:
        if not Path(env).is_dir():
            raise CnnzooError(f"CNNZOO_CONFIG_DIR: no such folder: {env}")
        return Path(env)
    import cnnzoo.configs

    return Path(cnnzoo.configs.__file__).resolve().parent


def profiles_dir() -> Path:
    """Where named profiles live: ``<config_dir()>/profiles``."""
    return config_dir() / "profiles"


def list_profiles() -> list[str]:
    """Names of the profiles in :func:`profiles_dir`."""
    d = profiles_dir()
    return sorted(p.stem for p in d.glob("*.yaml")) if d.is_dir() else []


def read_yaml(path: str | os.PathLike) -> dict[str, Any]:
    """Read a YAML mapping, raising CnnzooError naming the file if missing or malformed."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CnnzooError(f"{path}: file not found") from None
    except yaml.YAMLError as e:
        raise CnnzooError(f"{path}: not valid YAML ({str(e).splitlines()[0]})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise CnnzooError(f"{path}: expected a mapping at the top level")
    return data


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


def _raw_profile(name_or_path: str, seen: tuple[str, ...] = ()) -> dict[str, Any]:
    path = _profile_path(name_or_path)
    if str(path) in seen:
        raise CnnzooError(f"{path}: 'extends' forms a cycle")
    data = read_yaml(path)
    base_name = data.pop("extends", None)
    name = data.get("name", path.stem)
    if base_name is not None:
        base = _raw_profile(str(base_name), seen + (str(path),))
        data = deep_merge(base, data)
    data["name"] = name
    return data


def deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """Return ``base`` with ``over`` merged in, recursively for nested mappings."""
    out = copy.deepcopy(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def parse_override(item: str) -> dict[str, Any]:
    """Turn ``a.b.c=value`` into ``{"a": {"b": {"c": value}}}`` (value parsed as YAML)."""
    key, sep, raw = item.partition("=")
    key = key.strip()
    if not sep or not key:
        raise CnnzooError(f"override {item!r}: expected key=value")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError:
        value = raw
    out: dict[str, Any] = {}
    cur = out
    parts = key.split(".")
    for part in parts[:-1]:
        cur[part] = {}
        cur = cur[part]
    cur[parts[-1]] = value
    return out


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
    data = _raw_profile(name_or_path)
    for f in override_files:
        data = deep_merge(data, read_yaml(Path(f)))
    for item in overrides:
        data = deep_merge(data, parse_override(item))
    return profile_from_dict(data)


def profile_from_dict(data: dict[str, Any]) -> Profile:
    """Build and validate a Profile from plain data (e.g. a saved resolved config)."""
    models_raw = data.get("models", {}) or {}
    if not isinstance(models_raw, dict):
        raise CnnzooError("models: expected a mapping of model name to schedule")
    top = {k: v for k, v in data.items() if k != "models"}
    profile = _build(Profile, top, "")
    for name, sched in models_raw.items():
        if not isinstance(sched, dict):
            raise CnnzooError(f"models.{name}: expected a mapping, got {sched!r}")
        sched = dict(sched)
        ft = sched.pop("finetune", None)
        s = _build(Schedule, sched, f"models.{name}.")
        if ft is not None:
            if not isinstance(ft, dict):
                raise CnnzooError(f"models.{name}.finetune: expected a mapping, got {ft!r}")
            s.finetune = _build(Stage, ft, f"models.{name}.finetune.")
        profile.models[str(name)] = s
    profile.validate()
    return profile


def _build(cls: type, data: dict[str, Any], prefix: str) -> Any:
    hints = typing.get_type_hints(cls)
    names = {f.name for f in fields(cls) if f.name not in ("models", "finetune")}
    kwargs = {}
    for key, value in data.items():
        if key not in names:
            raise CnnzooError(f"unknown key '{prefix}{key}' (valid: {', '.join(sorted(names))})")
        kwargs[key] = _coerce(value, hints[key], f"{prefix}{key}")
    return cls(**kwargs)


def _coerce(value: Any, hint: Any, key: str) -> Any:
    args = typing.get_args(hint)
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        hint = next(a for a in args if a is not type(None))
    if hint is bool:
        if isinstance(value, bool):
            return value
    elif hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)  # YAML 1.1 reads "1e-3" as a string
            except ValueError:
                pass
    elif hint is str:
        if isinstance(value, str):
            return value
    kind = getattr(hint, "__name__", str(hint))
    raise CnnzooError(f"{key} must be {kind}, got {value!r}")
