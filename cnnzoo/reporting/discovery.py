"""A finished run's outputs, found from the run manifest that lists them.

The pipeline's report step writes ``run-manifest.json`` into the report folder: the run's
context (run name, data URI, resolved profile, TensorBoard root) and the artifacts the
report was built from — each model's evaluation record, the ingest output and the split
output — as paths relative to the report folder (so a run folder can be moved) and the
artifacts' URIs. ``cnnzoo run`` records that file's place in ``run.json`` (``manifest``)
when the run ends. :func:`find_run_outputs` reads it back; nothing is inferred from
what a JSON file happens to contain.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cnnzoo.core.errors import CnnzooError
from cnnzoo.data.artifacts import read_data_artifact
from cnnzoo.evaluation.records import EvaluationRecord, read_evaluation
from cnnzoo.storage.layout import MANIFEST, OUTPUT_REPORT, RUN_MANIFEST, RUN_RECORD, SPLIT_INFO
from cnnzoo.storage.local import atomic_write_json, read_json

MANIFEST_KIND = "cnnzoo-run-manifest"
SCHEMA_VERSION = 1
#: The context keys a manifest carries (see :func:`cnnzoo.reporting.report.build_report`).
CONTEXT_KEYS = ("run_name", "data_uri", "profile", "seed", "tensorboard_root", "tensorboard_cr")


@dataclass(frozen=True)
class ArtifactRef:
    """One artifact of a run: a local path (absolute once read) and its URI, if any."""

    path: Path
    uri: str = ""


@dataclass
class RunManifest:
    """What a run produced that its report reads (``run-manifest.json``).

    Attributes:
        evaluations: run name -> its evaluation record file; the run name is the model's
            (``<model>/seed-<seed>`` for one of several repeats,
            :func:`cnnzoo.config.profile.run_label`).
        dataset: the ingest output folder (``manifest.json``), or None.
        splits: the split output folder (``split.json``), or None.
        context: the run's :data:`CONTEXT_KEYS`.
    """

    evaluations: dict[str, ArtifactRef]
    dataset: ArtifactRef | None = None
    splits: ArtifactRef | None = None
    context: dict[str, Any] = field(default_factory=dict)

    def to_dict(self, location: str | os.PathLike) -> dict[str, Any]:
        """The manifest as JSON data, its paths relative to the folder ``location``."""

        def ref(a: ArtifactRef) -> dict[str, str]:
            return {"path": os.path.relpath(os.path.abspath(a.path), location), "uri": a.uri}

        return {
            "kind": MANIFEST_KIND,
            "schema_version": SCHEMA_VERSION,
            "context": {k: self.context[k] for k in CONTEXT_KEYS if k in self.context},
            "artifacts": {
                "evaluations": {m: ref(a) for m, a in self.evaluations.items()},
                "dataset": ref(self.dataset) if self.dataset else None,
                "splits": ref(self.splits) if self.splits else None,
            },
        }

    def write(self, folder: str | os.PathLike, location: str | os.PathLike | None = None) -> Path:
        """Write ``folder/run-manifest.json`` atomically.

        Args:
            folder: where to write it.
            location: the folder whose place the relative paths start from, when
                ``folder`` is a temporary one that will be renamed to it.
        """

        location = os.path.abspath(location or folder)
        path = Path(folder) / RUN_MANIFEST
        atomic_write_json(path, self.to_dict(location))
        return path


def read_run_manifest(path: str | os.PathLike) -> RunManifest:
    """Read ``run-manifest.json``; its relative paths are resolved against its folder.

    Raises:
        CnnzooError: missing, not JSON, another kind or version, or a malformed entry
            (the message names the file and the key).
    """

    path = Path(path)
    data = read_json(path)
    if not isinstance(data, dict) or data.get("kind") != MANIFEST_KIND:
        raise CnnzooError(f"{path}: not a cnnzoo run manifest (kind {MANIFEST_KIND!r})")
    if data.get("schema_version") != SCHEMA_VERSION:
        raise CnnzooError(
            f"{path}: schema_version {data.get('schema_version')!r} is not one this cnnzoo "
            f"reads ({SCHEMA_VERSION}); rebuild the report with the cnnzoo that ran it"
        )
    artifacts = data.get("artifacts")
    context = data.get("context")
    if not isinstance(artifacts, dict) or not isinstance(context, dict):
        raise CnnzooError(f"{path}: 'artifacts' and 'context' must be objects")

    def ref(key: str, entry: Any) -> ArtifactRef:
        if not (isinstance(entry, dict) and isinstance(entry.get("path"), str)):
            raise CnnzooError(f"{path}: {key} must be {{'path': ..., 'uri': ...}}, got {entry!r}")
        where = Path(os.path.normpath(path.parent / entry["path"]))
        return ArtifactRef(where, str(entry.get("uri") or ""))

    evaluations = artifacts.get("evaluations")
    if not isinstance(evaluations, dict) or not evaluations:
        raise CnnzooError(f"{path}: artifacts.evaluations must name at least one model")
    return RunManifest(
        evaluations={m: ref(f"artifacts.evaluations.{m}", e) for m, e in evaluations.items()},
        dataset=ref("artifacts.dataset", artifacts["dataset"])
        if artifacts.get("dataset")
        else None,
        splits=ref("artifacts.splits", artifacts["splits"]) if artifacts.get("splits") else None,
        context={k: context[k] for k in CONTEXT_KEYS if k in context},
    )


@dataclass
class RunOutputs:
    """What :func:`find_run_outputs` found: the records, the report's context, notes."""

    evaluations: list[EvaluationRecord]
    context: dict[str, Any]
    manifest: RunManifest
    default_out: Path
    notes: list[str] = field(default_factory=list)


def manifest_path(run_dir: str | os.PathLike) -> Path:
    """Where the run manifest of ``run_dir`` is.

    ``run_dir`` is a run folder of ``cnnzoo run`` (``run.json`` names the manifest) or a
    report folder (it holds ``run-manifest.json``).

    Raises:
        CnnzooError: neither, or a run that ended before its report step.
    """

    root = Path(run_dir)
    if not root.is_dir():
        raise CnnzooError(f"{root}: not a folder (expected a finished run's output folder)")
    if (root / RUN_MANIFEST).is_file():
        return root / RUN_MANIFEST
    run_json = root / RUN_RECORD
    if not run_json.is_file():
        raise CnnzooError(
            f"{root}: no run.json or {RUN_MANIFEST} (expected a run folder of 'cnnzoo run' "
            "or a report folder)"
        )
    record = read_json(run_json)
    if not isinstance(record, dict):
        raise CnnzooError(f"{run_json}: must be a JSON object")
    if isinstance(record.get("manifest"), str):
        return root / record["manifest"]
    status = record.get("status")
    if status != "succeeded":
        why = f" ({record['error']})" if record.get("error") else ""
        raise CnnzooError(
            f"{run_json}: status {status!r}{why}: the run did not reach its report step, "
            "so there is no report to rebuild"
        )
    raise CnnzooError(
        f"{run_json}: no 'manifest' key (a run by a cnnzoo older than run manifests); "
        "run it again to rebuild its report"
    )


def _local(ref: ArtifactRef, name: str) -> Path | None:
    """The artifact's file (``name`` inside it, if given) on this machine, or None.

    The relative path first; then the URI when it is a local path (a report folder
    copied out of its run, e.g. to the output location, still finds a local run's files).
    """
    candidates = [ref.path]
    if ref.uri and "://" not in ref.uri:
        candidates.append(Path(ref.uri))
    for base in candidates:
        path = base / name if name else base
        if path.is_file():
            return path
    return None


def find_run_outputs(run_dir: str | os.PathLike) -> RunOutputs:
    """Read a finished run's evaluations and context through its run manifest.

    Args:
        run_dir: a run folder (``runs/<timestamp>``, ``runs/latest``) or a report folder
            holding ``run-manifest.json``.

    Returns:
        A :class:`RunOutputs`; its ``default_out`` is ``RUN_DIR/report`` for a run
        folder and the folder itself for a report folder.

    Raises:
        CnnzooError: no manifest (see :func:`manifest_path`), an artifact it lists is
            missing, or an evaluation record is invalid (file, key and value named).
    """

    path = manifest_path(run_dir)
    manifest = read_run_manifest(path)
    evaluations = []
    for model, ref in manifest.evaluations.items():
        found = _local(ref, "")
        if found is None:
            raise CnnzooError(
                f"{path}: the evaluation of {model}, {ref.path}, is missing"
                + (f" (artifact {ref.uri})" if ref.uri else "")
            )
        record = read_evaluation(found)
        if record.model != model.split("/")[0]:  # "<model>/seed-<seed>": one of several repeats
            raise CnnzooError(f"{found}: model {record.model!r}, but {path} lists {model!r}")
        evaluations.append(record)
    context = dict(manifest.context)
    notes = []
    for key, ref, name in (
        ("data", manifest.dataset, MANIFEST),
        ("split", manifest.splits, SPLIT_INFO),
    ):
        if ref is None:
            continue
        found = _local(ref, name)
        if found is not None:
            context[key] = read_data_artifact(found)
        else:
            notes.append(f"{ref.path / name} is missing; the report's run section lacks it")
    root = Path(run_dir)
    context.setdefault("run_name", root.resolve().name)
    default_out = root if path.parent == root else root / OUTPUT_REPORT
    return RunOutputs(evaluations, context, manifest, default_out, notes)
