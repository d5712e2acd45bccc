"""The parameters of one study, named once: what the CLI, the local and the cluster runner share.

A :class:`Study` is what a user asks for (data, models, profile and its overrides, seed,
TensorBoard root, output location). :meth:`Study.arguments` validates it before anything
starts and turns it into the pipeline's arguments, with the profile resolved here, on the
submitting side, into data (JSON text, :func:`profile_json`: KFP parameters cannot hold
the profile's nulls inside a dict). The tasks rebuild it with
``cnnzoo.config.profile.profile_from_dict(json.loads(profile))`` and never read profile YAML
files themselves, so a run uses exactly the profile the user edited.

Example::

    study = Study(data_uri="gs://b/flowers.tar.gz", models=("simple", "mid"),
                  profile="full", overrides=("max_epochs=3",), seed=7)
    arguments = study.arguments(local=False)
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from cnnzoo.config.profile import Profile, load_profile
from cnnzoo.core.errors import CnnzooError
from cnnzoo.data.sources import DEMO_URI, is_demo
from cnnzoo.storage.gcs import is_gcs, parse_gs_uri

_BUCKET_RE = re.compile(r"^[a-z0-9][-a-z0-9_.]{1,220}[a-z0-9]$")

#: The study's common profile fields as typed pipeline parameters a person can edit in the
#: KFP UI: name -> (type, meaning). Their defaults are the compiled-in profile's values; a
#: value given for a run wins over the profile (``cnnzoo.orchestration.tasks.resolve_profile``).
UI_PARAMETERS: dict[str, tuple[type, str]] = {
    "max_epochs": (int, "cap on every training stage's epochs; 0: no cap (each model's own)"),
    "img_size": (int, "side of the square images the models see, in pixels (32 to 4096)"),
    "batch_size": (int, "training batch size (>= 1)"),
    "seed": (int, "the run's seed: split, initialisation, shuffling (>= 0)"),
    "repeats": (int, "training runs per configuration, each with its own seed (1 to 100)"),
    "weights": (
        str,
        "'imagenet': pretrained bases start from ImageNet weights; empty: random weights "
        "(a quick pipeline check, not a study)",
    ),
}


#: What every top-level parameter of the pipeline means (the typed ones: UI_PARAMETERS).
PARAMETER_HELP: dict[str, str] = {
    "data_uri": "the dataset: 'demo' (the built-in generated set) or gs://bucket/prefix (an "
    "image folder, one subfolder per class, or a .tar.gz/.zip archive of one)",
    "models": "the configurations to train and compare ('cnnzoo models' lists them)",
    **{name: meaning for name, (_, meaning) in UI_PARAMETERS.items()},
    "profile": "the whole resolved profile as JSON (every other setting: learning rates, "
    "patiences, fractions, precision, ...); the typed parameters above win over it",
    "tensorboard_root": "where every model's TensorBoard logs go (gs://...); empty: "
    "`<output_uri>/tensorboard`, else only inside each train task's artifact",
    "output_uri": "gs://bucket/prefix to export the report, models and checkpoints to (a "
    "retried train task resumes from them); empty: nowhere",
}


def parameter_values(profile: Profile) -> dict[str, Any]:
    """The :data:`UI_PARAMETERS` values of ``profile`` (no cap: 0, no weights: "")."""
    values = {name: getattr(profile, name) for name in UI_PARAMETERS}
    values["max_epochs"] = values["max_epochs"] or 0
    values["weights"] = values["weights"] or ""
    return values


def parameter_overrides(profile: Profile, values: dict[str, Any]) -> list[str]:
    """``--set`` items that give ``profile`` the :data:`UI_PARAMETERS` ``values`` (those
    that differ from its own; 0 epochs and empty weights become ``null``)."""
    current = parameter_values(profile)
    items = []
    for name in UI_PARAMETERS:
        value = values[name]
        if value == current[name] and type(value) is type(current[name]):
            continue
        if (name == "max_epochs" and value == 0) or (name == "weights" and value == ""):
            items.append(f"{name}=null")
        else:
            items.append(f"{name}={value}")
    return items


@dataclass(frozen=True)
class Study:
    """One study's parameters.

    Attributes:
        data_uri: ``demo``, a local folder or archive (local runs), or ``gs://...``.
        models: configuration names (registered ones, the profile's variants, sweeps
            and sweep points); None means all of them.
        profile: a profile name or a YAML file.
        overrides: ``key=value`` profile overrides (``--set``), applied last.
        override_files: YAML files merged over the profile (``--config``), in order.
        seed: the run's seed (the override ``seed=<n>``); None keeps the profile's.
        tensorboard_root: where every model's TensorBoard logs go ("" for the default:
            ``<output_uri>/tensorboard``, else inside the train artifacts).
        output_uri: where the run exports its report, models and checkpoints: "" for
            nowhere, a local folder (local runs) or ``gs://bucket/prefix``.
    """

    data_uri: str = "demo"
    models: tuple[str, ...] | None = None
    profile: str = "demo"
    overrides: tuple[str, ...] = ()
    override_files: tuple[str, ...] = ()
    seed: int | None = None
    tensorboard_root: str = ""
    output_uri: str = ""

    def __post_init__(self) -> None:
        # Accept lists from callers; keep the object hashable and immutable.
        if self.models is not None:
            object.__setattr__(self, "models", tuple(self.models))
        object.__setattr__(self, "overrides", tuple(self.overrides))
        object.__setattr__(self, "override_files", tuple(self.override_files))

    def to_dict(self) -> dict[str, Any]:
        """Plain data (for ``run.json``)."""
        data = asdict(self)
        data["models"] = list(self.models) if self.models is not None else None
        data["overrides"] = list(self.overrides)
        data["override_files"] = list(self.override_files)
        return data

    def resolved_profile(self):
        """The profile with override files, ``overrides`` and ``seed`` applied.

        Raises:
            CnnzooError: unknown profile, unknown key or bad value.
        """

        seed = [f"seed={self.seed}"] if self.seed is not None else []
        return load_profile(self.profile, [*self.overrides, *seed], self.override_files)

    def arguments(self, local: bool = True) -> dict[str, Any]:
        """Validate the study; return the pipeline's arguments.

        Checks the model names against the registry and the profile's own configurations
        (a sweep's name becomes its points), that the profile and its overrides
        load, that the image size suits every chosen model, and (``local=False``) that
        the data URI is one a cluster can read and the output location one it can write.

        Args:
            local: whether the run is local (paths are made absolute) or on a cluster.

        Returns:
            ``{"data_uri", "models", <the UI_PARAMETERS of the resolved profile>, "profile"
            (the resolved profile, :func:`profile_json`), "tensorboard_root", "output_uri"}``.

        Raises:
            CnnzooError: the message names the bad value.
        """

        if self.models is not None and not self.models:
            raise CnnzooError("--models: no model configuration given")
        profile = self.resolved_profile()
        # Registered names, the profile's variants and sweep points; a sweep's name
        # stands for all its points (the plan step expands names the same way).
        models = profile.select(self.models)
        for name in models:
            need = profile.spec_for(name).min_img_size
            if profile.img_size < need:
                raise CnnzooError(
                    f"img_size {profile.img_size} is too small for {name} (needs >= {need})"
                )
        return {
            "data_uri": _data_uri(self.data_uri, local),
            "models": models,
            **parameter_values(profile),
            "profile": profile_json(profile),
            "tensorboard_root": _tensorboard_root(self.tensorboard_root, local),
            "output_uri": _output_uri(self.output_uri, local),
        }


def profile_json(profile) -> str:
    """A resolved :class:`~cnnzoo.config.profile.Profile` as the pipeline's ``profile`` argument:
    ``Profile.to_dict()`` as JSON with sorted keys (equal profiles, equal cache keys)."""
    return json.dumps(profile.to_dict(), sort_keys=True)


def _data_uri(data_uri: str, local: bool) -> str:
    if is_demo(data_uri) if local else data_uri in ("demo", DEMO_URI):
        return data_uri
    if local:
        if "://" in data_uri:
            return data_uri
        path = Path(data_uri)
        if not path.exists():
            raise CnnzooError(f"--data {data_uri}: no such file or folder")
        return str(path.resolve())
    if not data_uri.startswith("gs://"):
        raise CnnzooError(
            f"--data {data_uri!r}: a cluster run reads 'demo' or a gs://bucket/prefix URI"
        )
    return data_uri


def _tensorboard_root(root: str, local: bool) -> str:
    """Local runs: a folder made absolute; URIs and cluster runs' roots as given."""
    if not root or "://" in root or not local:
        return root
    return str(Path(root).resolve())


def _output_uri(output_uri: str, local: bool) -> str:
    """``--output`` checked: gs:// with a bucket, or (local runs) a folder made absolute."""

    if not output_uri:
        return ""
    if is_gcs(output_uri):
        try:
            bucket, _ = parse_gs_uri(output_uri)
        except CnnzooError as e:
            raise CnnzooError(f"--output {e}") from None
        if not _BUCKET_RE.match(bucket):
            raise CnnzooError(f"--output {output_uri!r}: {bucket!r} is not a bucket name")
        return output_uri.rstrip("/")
    if not local:
        raise CnnzooError(
            f"--output {output_uri!r}: a cluster run writes to a gs://bucket/prefix URI"
        )
    if "://" in output_uri:
        raise CnnzooError(f"--output {output_uri!r}: expected a local folder or gs://bucket/prefix")
    path = Path(output_uri).resolve()
    if path.exists() and not path.is_dir():
        raise CnnzooError(f"--output {output_uri}: exists and is not a folder")
    return str(path)
