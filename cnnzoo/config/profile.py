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

import dataclasses
import hashlib
import itertools
import os
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    StrictBool,
    StrictInt,
    StrictStr,
    ValidationError,
    field_validator,
    model_validator,
)

import cnnzoo.configs
from cnnzoo.core.errors import CnnzooError
from cnnzoo.core.yamlconfig import (
    Number,
    deep_merge,
    describe,
    invalid,
    parse_override,
    read_yaml,
    validate,
)
from cnnzoo.models.registry import (
    AUGMENTED_ARCHITECTURES,
    MACS_IMG_SIZE,
    ModelSpec,
    get_spec,
    list_models,
)

__all__ = [
    "CHECKPOINT_MONITORS",
    "Configuration",
    "MAX_REPEATS",
    "MAX_SWEEP_POINTS",
    "PRECISIONS",
    "Profile",
    "Schedule",
    "Stage",
    "Sweep",
    "Variant",
    "expand_configurations",
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
#: Default cap on one sweep's grid points (the profile's ``max_sweep_points``).
MAX_SWEEP_POINTS = 64
#: A variant's or sweep's name: a folder name, a KFP parameter value and a TensorBoard run.
_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_]{0,47}$")


_FORBID = ConfigDict(extra="forbid")


class Stage(BaseModel):
    """One training stage: optimiser learning rate, epoch cap and callback patiences."""

    model_config = _FORBID

    learning_rate: Number = Field(1e-3, gt=0, description="Adam's initial learning rate.")
    epochs: StrictInt = Field(
        50, ge=1, description="Most epochs of the stage (early stopping may end it sooner)."
    )
    lr_patience: StrictInt = Field(
        5,
        ge=0,
        description="Epochs without improvement of the validation loss before"
        " ReduceLROnPlateau multiplies the learning rate by `lr_factor`.",
    )
    stop_patience: StrictInt = Field(
        10,
        ge=0,
        description="Epochs without improvement before EarlyStopping ends the stage"
        " (the best epoch's weights are kept).",
    )


class Schedule(Stage):
    """A model configuration's schedule: stage 1, plus ``finetune`` (stage 2) if two-stage."""

    finetune: Stage | None = Field(
        None,
        description="The second stage of a `*_finetune` configuration: the whole model"
        " (BatchNorm frozen) at a low learning rate; absent for every other configuration.",
    )


#: The largest seed: ``keras.utils.set_random_seed`` seeds numpy, which takes < 2**32.
MAX_SEED = 2**32 - 1


class StageSettings(BaseModel):
    """A variant's changes to a stage: the :class:`Stage` keys it sets (unset: inherited)."""

    model_config = _FORBID

    learning_rate: Number | None = Field(
        None, gt=0, description="The stage's learning rate (unset: inherited)."
    )
    epochs: StrictInt | None = Field(
        None, ge=1, description="The stage's epoch cap (unset: inherited)."
    )
    lr_patience: StrictInt | None = Field(
        None, ge=0, description="ReduceLROnPlateau's patience (unset: inherited)."
    )
    stop_patience: StrictInt | None = Field(
        None, ge=0, description="EarlyStopping's patience (unset: inherited)."
    )


class VariantSettings(StageSettings):
    """The per-model settings a variant or sweep may change; unset keys are inherited."""

    finetune: StageSettings | None = Field(
        None, description="Changes to the second stage of a `*_finetune` configuration."
    )
    augment: StrictBool | None = Field(
        None, description="Train with the data-augmentation layers (unset: inherited)."
    )


class Variant(VariantSettings):
    """``variants.<name>``: a configuration derived from ``from`` with its own settings."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    from_: StrictStr = Field(
        alias="from",
        description="The configuration it derives from: a registered one or another variant.",
    )


#: The settings a sweep's ``grid`` may vary (``finetune.<key>``: the second stage's).
GRID_KEYS = (
    "learning_rate",
    "epochs",
    "lr_patience",
    "stop_patience",
    "augment",
    *(f"finetune.{k}" for k in StageSettings.model_fields),
)


class Sweep(Variant):
    """``sweeps.<name>``: one configuration per point of ``grid`` (key -> values), each
    derived from ``from`` with the sweep's settings and the point's values."""

    grid: dict[str, list[Any]] = Field(
        description="Setting -> the values it takes; one configuration per combination."
    )

    @field_validator("grid")
    @classmethod
    def _grid_keys(cls, grid: dict[str, list[Any]]) -> dict[str, list[Any]]:
        if not grid:
            raise invalid("", "must name at least one setting to vary")
        for key, values in grid.items():
            if key not in GRID_KEYS:
                raise invalid(key, f"unknown setting (valid: {', '.join(GRID_KEYS)})")
            if not values:
                raise invalid(key, "must list at least one value")
            if len({repr(v) for v in values}) != len(values):
                raise invalid(key, f"lists a value twice: {values!r}")
        return grid


@dataclasses.dataclass(frozen=True)
class Configuration:
    """A configuration a profile adds to the registry's: a variant or one sweep point.

    Attributes:
        name: its name (a variant's key, or ``<sweep>__<key>_<value>...`` for a point).
        derives_from: the configuration named by ``from``.
        registered: the registered configuration at the root of the ``from`` chain (its
            architecture, and its pool on a cluster).
        spec: what it is: the root's spec under ``name``, with ``derived_from`` set (and
            the augmented architecture if ``augment`` says so).
        schedule: its resolved training schedule.
        settings: what differs from ``derives_from`` (the variant's or sweep's keys and
            the point's values, dotted keys for ``finetune``).
        sweep: the sweep it is a point of, or None for a variant.
        point: the point's values (grid key -> value); empty for a variant.
    """

    name: str
    derives_from: str
    registered: str
    spec: ModelSpec
    schedule: Schedule
    settings: dict[str, Any]
    sweep: str | None = None
    point: dict[str, Any] = dataclasses.field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Plain data for ``config.yaml`` and ``cnnzoo models``."""
        return {
            "from": self.derives_from,
            "registered": self.registered,
            "strategy": self.spec.strategy,
            "architecture": self.spec.architecture,
            "settings": dict(self.settings),
            "sweep": self.sweep,
            "point": dict(self.point),
        }


class Profile(BaseModel):
    """A resolved, validated training profile (see ``configs/profiles/full.yaml``)."""

    model_config = _FORBID

    name: StrictStr = Field("custom", description="The profile's name, shown in the report.")
    img_size: StrictInt = Field(  # larger: one image fills a shard
        100, ge=32, le=4096, description="Side in pixels every image is resized to, once, at split."
    )
    batch_size: StrictInt = Field(258, ge=1, description="Training batch size.")
    seed: StrictInt = Field(  # numpy's and TensorFlow's rule
        42,
        ge=0,
        le=MAX_SEED,
        description="The run's seed: the split, weight initialisation and shuffling derive"
        " from it (`--seed` overrides it).",
    )
    repeats: StrictInt = Field(
        1,
        ge=1,
        le=MAX_REPEATS,
        description="Training runs per configuration, each with its own seed derived from"
        " `seed`; the report ranks by the mean and shows the spread.",
    )
    val_fraction: Number = Field(
        0.15,
        gt=0,
        lt=1,
        json_schema_extra={"expected": "in (0, 1)"},
        description="Share of each class's training images held out for validation.",
    )
    test_fraction: Number = Field(
        0.1,
        gt=0,
        lt=1,
        json_schema_extra={"expected": "in (0, 1)"},
        description="Share of each class split off as the test set when the data has no"
        " `val/` or `test/` folder.",
    )
    max_epochs: StrictInt | None = Field(
        None,
        ge=1,
        description="Caps every stage's `epochs` (null: each configuration's own caps).",
    )
    lr_factor: Number = Field(
        0.2,
        gt=0,
        lt=1,
        json_schema_extra={"expected": "in (0, 1)"},
        description="ReduceLROnPlateau's factor: the learning rate is multiplied by it.",
    )
    min_delta: Number = Field(
        1e-5,
        ge=0,
        description="Smallest change of the monitored value that counts as an improvement"
        " (ReduceLROnPlateau, EarlyStopping).",
    )
    weights: StrictStr | None = Field(
        None,
        description="Pretrained bases' weights: `imagenet` (Keras' download), a path or"
        " gs:// URI of a weights file or folder, or null (random initialisation).",
    )
    precision: Literal["float32", "mixed_float16", "mixed_bfloat16"] = Field(
        "float32", description="Keras mixed-precision policy of training."
    )
    jit_compile: StrictBool = Field(False, description="Compile training steps with XLA.")
    shuffle_buffer: StrictInt = Field(
        2048, ge=1, description="Examples in the training input's shuffle buffer."
    )
    eval_batch_size: StrictInt = Field(
        512, ge=1, description="Batch size of evaluation (no gradients: larger fits)."
    )
    bn_momentum: Number | None = Field(
        None,
        ge=0,
        lt=1,
        json_schema_extra={"expected": "in [0, 1) or null"},
        description="Momentum of the custom CNNs' BatchNorm moving statistics"
        " (null: Keras' 0.99; the demo's short epochs need less).",
    )
    random_weights_steps: StrictInt | None = Field(
        None,
        ge=1,
        description="With random weights, pretrained configurations run this many steps"
        " per stage, as a pipeline check listed apart in the report (null: whole epochs).",
    )
    checkpoint_monitor: Literal["val_loss", "val_accuracy"] = Field(
        "val_loss", description="What picks the kept epoch among a run's epochs."
    )
    #: Training's memory budget (MiB): the train and val parts are cached in memory only
    #: while the process stays under it (cnnzoo.data.loader.plan_cache), otherwise streamed from
    #: their shards, so peak memory stays bounded as the data grows.
    cache_budget_mb: StrictInt = Field(
        4096,
        ge=0,
        description="Training's memory budget in MiB: train and validation data are cached"
        " in memory while under it, else streamed from their shards.",
    )
    models: dict[str, Schedule] = Field(
        default_factory=dict,
        description="Per-configuration schedule (see below), keyed by configuration name.",
    )
    variants: dict[str, Variant] = Field(
        default_factory=dict,
        description="Named configurations derived from a registered one (or another variant):"
        " `from` plus the schedule keys it changes (see your-own-configurations.md).",
    )
    sweeps: dict[str, Sweep] = Field(
        default_factory=dict,
        description="Grid sweeps: `from`, fixed settings and a `grid` (setting -> values);"
        " one configuration per grid point.",
    )
    max_sweep_points: StrictInt = Field(
        MAX_SWEEP_POINTS,
        ge=1,
        description="The most points one sweep may have; a larger grid is refused before"
        " anything runs.",
    )
    _configurations: dict[str, Configuration] = PrivateAttr(default_factory=dict)

    @field_validator("variants", "sweeps", mode="before")
    @classmethod
    def _none_is_empty(cls, value: Any) -> Any:
        return {} if value is None else value

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
        for name in valid:  # a plugin's configuration trains with the default schedule
            if name not in self.models and get_spec(name).plugin is not None:
                self.models[name] = Schedule()
        missing = [m for m in valid if m not in self.models]
        if missing:
            raise invalid("models", f"no schedule for {', '.join(missing)}")
        self._configurations = expand_configurations(self)
        return self

    def derived_configurations(self) -> dict[str, Configuration]:
        """The profile's variants, then its sweeps' points, by name (YAML order)."""
        return dict(self._configurations)

    def configuration_names(self) -> list[str]:
        """Every configuration this profile can train: the registry's, then its own."""
        return [*list_models(), *self._configurations]

    def select(self, models: list[str] | tuple[str, ...] | None) -> list[str]:
        """The configurations ``--models`` names, a sweep's name standing for its points.

        Args:
            models: registered, variant, sweep or sweep point names; None for every
                configuration (:meth:`configuration_names`).

        Returns:
            The names, in the order given (a sweep's points in grid order), each once.

        Raises:
            CnnzooError: an unknown name, or one listed twice (directly or by its sweep).
        """
        if models is None:
            return self.configuration_names()
        valid = [*self.configuration_names(), *self.sweeps]
        chosen: list[str] = []
        for name in models:
            if name in self.sweeps:
                names = [c.name for c in self._configurations.values() if c.sweep == name]
            elif name in valid:
                names = [name]
            else:
                raise CnnzooError(
                    f"--models: unknown model configuration {name!r} (valid: {', '.join(valid)})"
                )
            twice = [n for n in names if n in chosen]
            if twice:
                raise CnnzooError(f"--models: listed more than once: {', '.join(twice)}")
            chosen += names
        return chosen

    def registered_for(self, model_name: str) -> str:
        """The registered configuration ``model_name`` is or derives from."""
        derived = self._configurations.get(model_name)
        if derived is not None:
            return derived.registered
        return get_spec(model_name).name

    def spec_for(self, model_name: str) -> ModelSpec:
        """The spec of a registered configuration or of one of this profile's own.

        Raises:
            CnnzooError: the name is neither (the message lists the valid names).
        """
        derived = self._configurations.get(model_name)
        if derived is not None:
            return derived.spec
        try:
            return get_spec(model_name)
        except CnnzooError:
            raise CnnzooError(
                f"unknown model configuration {model_name!r} "
                f"(valid: {', '.join(self.configuration_names())})"
            ) from None

    def schedule_for(self, model_name: str) -> Schedule:
        """The training schedule of a registered configuration or of one of the profile's."""
        derived = self._configurations.get(model_name)
        if derived is not None:
            return derived.schedule
        self.spec_for(model_name)  # raises for unknown names
        return self.models[model_name]

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

        if self.weights is None and self.spec_for(model_name).pretrained:
            return self.random_weights_steps
        return None

    def stages_for(self, model_name: str) -> list[Stage]:
        """The stages to train ``model_name`` with, ``max_epochs`` applied to each."""

        sched = self.schedule_for(model_name)
        stages = [Stage(**sched.model_dump(exclude={"finetune"}))]
        if sched.finetune is not None:
            stages.append(sched.finetune.model_copy())
        if self.max_epochs is not None:
            for s in stages:
                s.epochs = min(s.epochs, self.max_epochs)
        return stages

    def training_cost(self, model_name: str) -> float | None:
        """An estimate of what training ``model_name`` costs, in millions of
        multiply-accumulates per training image of an epoch (or per capped step's image,
        for a pipeline check): comparable between configurations, not a time.

        Per stage: its epochs x the registry's forward figure (:attr:`ModelSpec.macs`,
        counted at :data:`~cnnzoo.models.registry.MACS_IMG_SIZE`) scaled by the image
        area at this profile's ``img_size`` x 3 where every layer trains (forward and
        both backward passes) or 1 where the pretrained base is frozen (``transfer`` and
        ``finetune``'s first stage: the base runs forward only; ``partial`` too, whose few
        unfrozen base layers this estimate leaves out).

        Returns:
            The estimate, or None when the registry has no figure (a plugin's
            architecture that gives none).
        """
        spec = self.spec_for(model_name)
        if spec.macs is None:
            return None
        forward = spec.macs * (self.img_size / MACS_IMG_SIZE) ** 2
        cost = 0.0
        for k, stage in enumerate(self.stages_for(model_name), start=1):
            whole_model = not spec.pretrained or (spec.strategy == "finetune" and k == 2)
            cost += stage.epochs * forward * (3 if whole_model else 1)
        return cost

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form (what ``load_profile`` accepts back), for saving beside results."""
        return self.model_dump(by_alias=True)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)


def expand_configurations(profile: Profile) -> dict[str, Configuration]:
    """A profile's own configurations: its variants, then every point of its sweeps.

    A pure function of the profile's data, so a profile gives the same configurations
    whether it came from YAML files, ``--set`` or the pipeline's profile JSON. A point of
    sweep ``S`` is named ``S__<key>_<value>`` per grid key (grid order; a dotted key's
    ``.`` becomes ``_``, a value's ``.`` ``p`` and ``-`` ``m``), e.g.
    ``simple_lr__learning_rate_0p001``: a valid folder, KFP and TensorBoard name.

    Raises:
        PydanticCustomError: (inside validation: one line naming the key) a name that is
            not lower-case letters, digits and ``_`` or clashes with another, a ``from``
            that names no configuration or forms a cycle, a setting the base cannot
            take, a grid value that is not valid for its key, a sweep of more than
            ``max_sweep_points`` points.
    """
    registered = list_models()
    out: dict[str, Configuration] = {}
    for kind, entries in (("variants", profile.variants), ("sweeps", profile.sweeps)):
        for name in entries:
            if not _NAME_RE.match(name):
                raise invalid(
                    f"{kind}.{name}",
                    "a name is 1-48 lower-case letters, digits and _, starting with a"
                    " letter or digit",
                )
            if name in registered:
                raise invalid(f"{kind}.{name}", "is the name of a registered configuration")
    for name in profile.sweeps:
        if name in profile.variants:
            raise invalid(f"sweeps.{name}", "is also the name of a variant")

    resolving: list[str] = []

    def resolve(name: str) -> None:
        if name in out:
            return
        variant = profile.variants[name]
        if name in resolving:
            raise invalid(
                f"variants.{name}.from", f"'from' forms a cycle: {' -> '.join([*resolving, name])}"
            )
        resolving.append(name)
        base = _parent(profile, variant.from_, f"variants.{name}.from", resolve, out)
        out[name] = _derive(profile, name, base, variant, f"variants.{name}")
        resolving.pop()

    for name in profile.variants:
        resolve(name)
    for sweep_name, sweep in profile.sweeps.items():
        base = _parent(profile, sweep.from_, f"sweeps.{sweep_name}.from", resolve, out)
        keys = list(sweep.grid)
        n_points = 1
        for values in sweep.grid.values():
            n_points *= len(values)
        if n_points > profile.max_sweep_points:
            raise invalid(
                f"sweeps.{sweep_name}.grid",
                f"{n_points} points is more than max_sweep_points ({profile.max_sweep_points});"
                " shrink the grid or raise max_sweep_points",
            )
        for values in itertools.product(*(sweep.grid[k] for k in keys)):
            point = dict(zip(keys, values, strict=True))
            settings = sweep.model_dump(exclude={"from_", "grid"}, exclude_none=True)
            for key, value in point.items():
                _set_dotted(settings, key, value)
            where = f"sweeps.{sweep_name}.grid"
            try:
                variant = Variant.model_validate({**settings, "from": sweep.from_})
            except ValidationError as err:
                loc, message = describe(Variant, err.errors(include_url=False)[0])
                raise invalid(where, f"{message} (point {point})") from None
            name = point_name(sweep_name, point)
            if name in out or name in registered:
                raise invalid(where, f"point name {name!r} clashes with another configuration")
            derived = _derive(profile, name, base, variant, where)
            out[name] = dataclasses.replace(derived, sweep=sweep_name, point=point)
    return out


def point_name(sweep: str, point: dict[str, Any]) -> str:
    """The name of a sweep's grid point (see :func:`expand_configurations`)."""

    def text(value: Any) -> str:
        if isinstance(value, bool):
            return str(value).lower()
        shown = format(value, "g") if isinstance(value, float) else str(value)
        return shown.replace(".", "p").replace("-", "m").replace("+", "")

    parts = [f"{key.replace('.', '_')}_{text(value)}" for key, value in point.items()]
    return "__".join([sweep, *parts])


def _set_dotted(data: dict[str, Any], key: str, value: Any) -> None:
    head, _, rest = key.partition(".")
    if rest:
        _set_dotted(data.setdefault(head, {}), rest, value)
    else:
        data[head] = value


def _parent(profile: Profile, name: str, key: str, resolve, out) -> tuple[str, ModelSpec, Schedule]:
    """The configuration ``from`` names: (its name, spec, schedule)."""
    if name in profile.variants:
        resolve(name)
        parent = out[name]
        return name, parent.spec, parent.schedule
    if name in list_models():
        return name, get_spec(name), profile.models[name]
    valid = [*list_models(), *profile.variants]
    raise invalid(key, f"unknown configuration {name!r} (valid: {', '.join(valid)})")


def _derive(
    profile: Profile, name: str, base: tuple[str, ModelSpec, Schedule], variant: Variant, key: str
) -> Configuration:
    """``variant``'s configuration ``name`` over its parent ``base``."""
    parent_name, parent_spec, parent_schedule = base
    registered = _root(profile, parent_name)
    settings = variant.model_dump(exclude={"from_"}, exclude_none=True)
    finetune = settings.pop("finetune", None)
    augment = settings.pop("augment", None)
    schedule = parent_schedule.model_dump()
    schedule.update(settings)
    if finetune is not None:
        if parent_schedule.finetune is None:
            raise invalid(
                f"{key}.finetune", f"{parent_name} has one stage; only *_finetune have a second"
            )
        schedule["finetune"].update(finetune)
    spec = dataclasses.replace(
        parent_spec, name=name, derived_from=parent_name, notebook_test_accuracy=None
    )
    if augment is not None:
        spec = _augmented(spec, augment, parent_name, f"{key}.augment")
    flat = {**settings, **{f"finetune.{k}": v for k, v in (finetune or {}).items()}}
    if augment is not None:
        flat["augment"] = augment
    return Configuration(
        name=name,
        derives_from=parent_name,
        registered=registered,
        spec=spec,
        schedule=Schedule.model_validate(schedule),
        settings=flat,
    )


def _root(profile: Profile, name: str) -> str:
    while name in profile.variants:
        name = profile.variants[name].from_
    return name


def _augmented(spec: ModelSpec, augment: bool, parent: str, key: str) -> ModelSpec:
    """``spec`` with its architecture's augmented (or plain) form."""
    plain = {aug: arch for arch, aug in AUGMENTED_ARCHITECTURES.items()}
    if augment and spec.architecture in AUGMENTED_ARCHITECTURES:
        return dataclasses.replace(
            spec, architecture=AUGMENTED_ARCHITECTURES[spec.architecture], strategy="augment"
        )
    if not augment and spec.architecture in plain:
        return dataclasses.replace(spec, architecture=plain[spec.architecture], strategy="scratch")
    if augment == (spec.strategy == "augment"):
        return spec  # already what was asked
    have = ", ".join(sorted({*AUGMENTED_ARCHITECTURES, *plain}))
    raise invalid(key, f"{parent} has no {'augmented' if augment else 'plain'} form (only: {have})")


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
        """The last file or ``--set`` item that set ``loc`` (else the profile's file).

        A variant's or sweep's key that is missing is named in the file that set the
        variant or sweep."""
        own = len(loc) >= 2 and loc[0] in ("variants", "sweeps")
        for n in range(len(loc), 1 if own else len(loc) - 1, -1):
            for where, layer in reversed(layers):
                if _sets(layer, loc[:n]):
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
