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

from cnnzoo.config.profile import load_profile
from cnnzoo.core.errors import CnnzooError
from cnnzoo.data.sources import DEMO_URI, is_demo
from cnnzoo.storage.gcs import is_gcs, parse_gs_uri

_BUCKET_RE = re.compile(r"^[a-z0-9][-a-z0-9_.]{1,220}[a-z0-9]$")


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
            ``{"data_uri", "models", "profile" (the resolved profile, :func:`profile_json`),
            "tensorboard_root", "output_uri"}``.

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
