"""The pipeline's task functions: everything one step of a run does, in one function.

A task function is what a KFP component body (``components/``) calls, and all it calls:
it reads the step's inputs, calls the library, writes the outputs, sets the artifacts'
metadata and logs the metrics, exports to the run's output location and prints the
step's ``[cnnzoo] ...`` progress lines. The component keeps only its signature (what
the compiled pipeline sees) and the one call, so the ``cnnzoo`` CLI, calling the same
task function with :class:`LocalArtifact` objects, does exactly what a KFP task does:
there is one implementation of each step, tested without kfp.

Artifacts are duck-typed: anything with ``.path``, ``.uri`` and a ``.metadata`` dict
(``log_metric`` for metrics, ``log_confusion_matrix`` for a confusion matrix), i.e.
kfp's own ``dsl`` artifact objects or a :class:`LocalArtifact`. kfp is not imported here.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cnnzoo.config.profile import Profile, override_profile, profile_from_dict
from cnnzoo.core.errors import CnnzooError, one_line
from cnnzoo.data.fingerprint import data_fingerprint
from cnnzoo.data.ingest import ingest as ingest_dataset
from cnnzoo.data.split import split_dataset
from cnnzoo.evaluation.evaluate import evaluate_model
from cnnzoo.orchestration.study import parameter_overrides, profile_json
from cnnzoo.reporting.discovery import ArtifactRef
from cnnzoo.reporting.report import report_artifacts
from cnnzoo.storage.layout import (
    LOGS_POINTER,
    OUTPUT_MODELS,
    OUTPUT_REPORT,
    checkpoint_location,
    run_label,
    run_logs_root,
)
from cnnzoo.storage.local import atomic_write_text
from cnnzoo.storage.outputs import export_folder
from cnnzoo.tensorboard.hparams import write_hparams_config
from cnnzoo.tensorboard.resource import apply_run_tensorboard

# The module, not its function: ``training.train_model`` is looked up at call time, so a
# test can wrap it (cnnzoo.training.train.train_model) for the task and the CLI alike.
from cnnzoo.training import train as training

#: The training history's fields a train task copies into its model's metadata.
_TRAIN_METADATA = (
    "status",
    "epochs_run",
    "best_val_accuracy",
    "best_val_loss",
    "total_params",
    "train_time_s",
    "error",
)
#: The evaluation record's fields an evaluate task logs as metrics.
_EVALUATE_METRICS = ("test_accuracy", "test_loss", "train_accuracy", "gap", "total_params")


@dataclass
class LocalArtifact:
    """A local stand-in for a KFP artifact, so the CLI can call the task functions.

    Behaves as kfp's ``dsl`` artifacts do as far as the tasks use them: ``metadata`` is a
    plain dict, :meth:`log_metric` and :meth:`log_confusion_matrix` store into it the way
    ``dsl.Metrics`` and ``dsl.ClassificationMetrics`` do.

    Attributes:
        path: the local file or folder the task reads or writes.
        uri: where the artifact lives; defaults to ``path``.
        metadata: the artifact's metadata, filled in by the task.
    """

    path: str
    uri: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.path = os.fspath(self.path)
        if self.uri is None:
            self.uri = self.path

    def log_metric(self, metric: str, value: float) -> None:
        """Record the scalar metric ``metric`` in the metadata, as ``dsl.Metrics`` does."""
        self.metadata[metric] = value

    def log_confusion_matrix(self, categories: list[str], matrix: list[list[int]]) -> None:
        """Record a confusion matrix in the metadata, as ``dsl.ClassificationMetrics`` does
        (``{"confusionMatrix": {"annotationSpecs": [...], "rows": [{"row": [...]}, ...]}}``).

        Raises:
            ValueError: ``matrix`` is not square with one row and column per category.
        """
        if len(matrix) != len(categories) or any(len(r) != len(categories) for r in matrix):
            raise ValueError(f"Invalid matrix: {matrix} passed for categories: {categories}")
        self.metadata["confusionMatrix"] = {
            "annotationSpecs": [{"displayName": c} for c in categories],
            "rows": [{"row": list(r)} for r in matrix],
        }


def fingerprint(data_uri: str) -> str:
    """The fingerprint step: a hash of the listing behind ``data_uri``.

    Args:
        data_uri: the run's data (a folder, archive, ``gs://`` prefix or ``demo``).

    Returns:
        :func:`cnnzoo.data.fingerprint.data_fingerprint` of ``data_uri``.
    """
    value = data_fingerprint(data_uri)
    print(f"[cnnzoo] fingerprint {data_uri}: {value[:12]}", flush=True)
    return value


def ingest(data_uri: str, fingerprint: str, dataset: Any) -> dict[str, Any]:
    """The ingest step: copy the usable images of ``data_uri`` into ``dataset``.

    Args:
        data_uri: the run's data (a folder, archive, ``gs://`` prefix or ``demo``).
        fingerprint: the fingerprint step's output; recorded in the metadata only.
        dataset: the output artifact; gets the images and their manifest, and metadata
            ``source``, ``fingerprint``, ``classes``, ``counts`` and ``skipped``.

    Returns:
        The ingest manifest.
    """
    print(f"[cnnzoo] ingest {data_uri}: started", flush=True)
    manifest = ingest_dataset(data_uri, dataset.path)
    counts = {split: sum(per_class.values()) for split, per_class in manifest["counts"].items()}
    dataset.metadata.update(
        {
            "source": data_uri,
            "fingerprint": fingerprint,
            "classes": manifest["classes"],
            "counts": counts,
            "skipped": len(manifest["skipped"]),
        }
    )
    print(
        f"[cnnzoo] ingest done: {len(manifest['classes'])} classes, "
        + ", ".join(f"{k} {v}" for k, v in counts.items())
        + f", {len(manifest['skipped'])} skipped",
        flush=True,
    )
    return manifest


def split(dataset: Any, profile: str, splits: Any) -> dict[str, Any]:
    """The split step: a seeded stratified split of ``dataset``, decoded into TFRecords.

    Args:
        dataset: the ingest output artifact.
        profile: the resolved profile as JSON (``Profile.to_dict()``).
        splits: the output artifact; gets the shards and split.json, and metadata
            ``classes``, ``img_size`` and ``counts``.

    Returns:
        The split's description (split.json).
    """
    prof = profile_from_dict(_profile_data(profile))
    print(f"[cnnzoo] split at {prof.img_size}px: started", flush=True)
    info = split_dataset(
        dataset.path,
        splits.path,
        img_size=prof.img_size,
        seed=prof.seed,
        val_fraction=prof.val_fraction,
        test_fraction=prof.test_fraction,
    )
    counts = {name: part["count"] for name, part in info["splits"].items()}
    splits.metadata.update(
        {"classes": info["classes"], "img_size": info["img_size"], "counts": counts}
    )
    print("[cnnzoo] split done: " + ", ".join(f"{k} {v}" for k, v in counts.items()), flush=True)
    return info


def _profile_data(profile: str) -> dict[str, Any]:
    """A task's ``profile`` input (JSON text) as data.

    Raises:
        CnnzooError: the text is not a JSON object.
    """
    try:
        data = json.loads(profile)
    except (TypeError, ValueError) as e:
        raise CnnzooError(f"profile: not JSON ({one_line(e, first=True)})") from None
    if not isinstance(data, dict):
        raise CnnzooError("profile: expected a JSON object")
    return data


def resolve_profile(
    profile: str,
    max_epochs: int,
    img_size: int,
    batch_size: int,
    seed: int,
    repeats: int,
    weights: str,
) -> str:
    """The resolve-profile step: the run's profile, its typed parameters applied.

    The pipeline's typed parameters (:data:`cnnzoo.orchestration.study.UI_PARAMETERS`)
    are the profile's common fields a person can edit in the KFP UI; their defaults are
    the compiled-in profile's values. A value that differs from ``profile``'s wins, and
    is validated as ``--set`` is (the same one-line message).

    Args:
        profile: the resolved profile as JSON (the ``profile`` parameter).
        max_epochs, img_size, batch_size, seed, repeats, weights: the typed parameters.

    Returns:
        The profile every later step uses, as JSON
        (:func:`~cnnzoo.orchestration.study.profile_json`).

    Raises:
        CnnzooError: a bad value (``--set <name>=<value>: ...``).
    """
    base = profile_from_dict(_profile_data(profile), "the profile parameter")
    values = {
        "max_epochs": max_epochs,
        "img_size": img_size,
        "batch_size": batch_size,
        "seed": seed,
        "repeats": repeats,
        "weights": weights,
    }
    items = parameter_overrides(base, values)
    resolved = override_profile(base, items)
    for item in items:
        print(f"[cnnzoo] profile {resolved.name}: {item} (run parameter)", flush=True)
    return profile_json(resolved)


def plan(models: list, placements: dict, profile: str) -> list:
    """The plan step: one record per training run (model and seed).

    Args:
        models: the configurations to train, in order: registered ones, the profile's
            variants and sweep points, or a sweep's name for all its points.
        placements: every registered configuration's placement record
            (``Placement.model_placements()``); a variant or sweep point gets the record
            of the registered configuration it derives from.
        profile: the resolved profile as JSON; its ``repeats`` and ``seed`` give the seeds
            (:meth:`cnnzoo.config.profile.Profile.repeat_seeds`).

    Returns:
        Model by model, costliest first (:func:`costliest_first`: the order the loop
        starts them in), one record per seed: its placement plus ``"model"``, ``"seed"``,
        ``"repeat"`` (1-based) and ``"profile"`` (the text given). The loop hands each
        train task its record's profile: kfp.local (2.17) turns a JSON text that reaches
        a loop body as a task output into a dict of floats, a loop item's field it keeps.

    Raises:
        CnnzooError: a model is neither registered nor one of the profile's own
            configurations, or has no placement; the one-line message names them.
    """
    prof = profile_from_dict(_profile_data(profile))
    known = [*prof.configuration_names(), *prof.sweeps]
    unknown = [m for m in models if m not in known]
    if unknown:
        raise CnnzooError(one_line(f"unknown model configurations: {', '.join(map(str, unknown))}"))
    # A sweep's name stands for its points; a variant or point trains where the registered
    # configuration it derives from does.
    names = prof.select(models)
    pool_of = {name: placements.get(prof.registered_for(name)) for name in names}
    missing = [name for name, record in pool_of.items() if record is None]
    if missing:
        raise CnnzooError(one_line(f"no placement for: {', '.join(missing)}"))
    for name in names:
        need = prof.spec_for(name).min_img_size
        if prof.img_size < need:
            raise CnnzooError(f"img_size {prof.img_size} is too small for {name} (needs >= {need})")
    seeds = prof.repeat_seeds()
    names = costliest_first(prof, names)
    for name in names:
        print(f"[cnnzoo] plan {name}: pool {pool_of[name]['pool']}", flush=True)
    if len(names) > 1:
        print(f"[cnnzoo] plan: training order, costliest first: {', '.join(names)}", flush=True)
    if len(seeds) > 1:
        print(f"[cnnzoo] plan: {len(seeds)} repeats, seeds {seeds}", flush=True)
    return [
        {**pool_of[name], "model": name, "seed": seed, "repeat": i, "profile": profile}
        for name in names
        for i, seed in enumerate(seeds, 1)
    ]


def costliest_first(prof: Profile, names: list[str]) -> list[str]:
    """``names`` in the order their trainings should start: whole-epoch trainings before
    pipeline checks (a few capped steps each), each group costliest first
    (:meth:`~cnnzoo.config.profile.Profile.training_cost`), a configuration of unknown
    cost first in its group; ties keep the given order.

    The loop runs a bounded number of iterations at once (kfp.local two, a cluster its
    ``parallelism``) and starts them in list order: the longest training started last
    would run alone at the end, long after the others (in the demo, ``inception``'s
    training takes about as long as the other thirteen's together).
    """

    def key(item: tuple[int, str]) -> tuple[bool, bool, float, int]:
        i, name = item
        cost = prof.training_cost(name)
        capped = prof.steps_cap(name) is not None
        return (capped, cost is not None, -(cost or 0.0), i)

    return [name for _, name in sorted(enumerate(names), key=key)]


def train(
    model_name: str,
    splits: Any,
    profile: str,
    tensorboard_root: str,
    output_uri: str,
    model: Any,
    tensorboard: Any,
    seed: int = -1,
    *,
    overwrite: bool = False,
) -> dict[str, Any]:
    """The train step: train ``model_name`` into ``model``, checkpoint and export it.

    The run's label is :func:`cnnzoo.storage.layout.run_label` (``<model_name>``, or
    ``<model_name>/seed-<seed>`` with repeats). TensorBoard logs go to
    ``<logs root>/<label>/``, the logs root being ``tensorboard_root``, else
    ``<output_uri>/tensorboard``, else ``tensorboard.path``; in the first two cases
    ``tensorboard`` gets a pointer file (:data:`~cnnzoo.storage.layout.LOGS_POINTER`)
    naming where the logs are. With an ``output_uri`` the training state is
    checkpointed to ``<output_uri>/checkpoints/<label>/`` (a retry resumes from it) and
    the finished ``model`` folder is exported to ``<output_uri>/models/<label>/``.

    Args:
        model_name: a registered configuration.
        splits: the split output artifact.
        profile: the resolved profile as JSON (``Profile.to_dict()``).
        tensorboard_root: the run's TensorBoard root, or ``""``.
        output_uri: the run's output location (a local folder or ``gs://``), or ``""``.
        model: the output artifact: model.keras, config.yaml, history.json; its metadata
            gets ``model``, ``seed``, the history's summary and ``exported``.
        tensorboard: the logs artifact; its metadata ``logs`` names the run's logs.
        seed: this run's training seed; -1 for the profile's.
        overwrite: replace a ``model`` folder (and logs) cnnzoo did not write.

    Returns:
        The training history (history.json); a training error is recorded in it
        (status ``failed``), not raised.
    """
    prof = profile_from_dict(_profile_data(profile))
    if seed >= 0:  # this repeat's seed, checked like any profile value
        prof = profile_from_dict({**prof.to_dict(), "seed": seed})
    label = run_label(model_name, prof.seed, prof.repeats)
    logs_root = run_logs_root(tensorboard_root, output_uri) or tensorboard.path
    checkpoint = checkpoint_location(output_uri, label) if output_uri else None
    print(f"[cnnzoo] train {label}: started", flush=True)
    history = training.train_model(
        model_name,
        splits.path,
        model.path,
        prof,
        logs_dir=logs_root,
        checkpoint_dir=checkpoint,
        logs_name=label,
        overwrite=overwrite,
    )
    model.metadata.update(
        {
            "model": model_name,
            "seed": prof.seed,
            **{k: history[k] for k in _TRAIN_METADATA if k in history},
        }
    )
    tensorboard.metadata["logs"] = f"{logs_root}/{label}"
    if logs_root != tensorboard.path:
        # The artifact must exist; it points at the shared logs root.
        os.makedirs(tensorboard.path, exist_ok=True)
        atomic_write_text(os.path.join(tensorboard.path, LOGS_POINTER), f"{logs_root}/{label}\n")
    if output_uri:
        exported = export_folder(model.path, output_uri, OUTPUT_MODELS, *label.split("/"))
        model.metadata["exported"] = exported
        print(f"[cnnzoo] train {label}: model exported to {exported}", flush=True)
    if history.get("status") == "ok":
        print(
            f"[cnnzoo] train {label} done: {history['epochs_run']} epochs, "
            f"best val_accuracy {history['best_val_accuracy']:.4f}, "
            f"peak memory {history['peak_memory_mb']:.0f} MiB",
            flush=True,
        )
    else:
        print(f"[cnnzoo] train {label} FAILED: {history.get('error')}", flush=True)
    return history


def evaluate(model: Any, splits: Any, evaluation: Any, metrics: Any, confusion: Any) -> dict:
    """The evaluate step: test-set metrics and confusion matrix of one trained model.

    Args:
        model: the train output artifact.
        splits: the split output artifact.
        evaluation: the output artifact: the evaluation record (JSON); its metadata gets
            ``model``, ``status`` and ``seed``.
        metrics: gets (``log_metric``) the test accuracy and loss, train accuracy, gap,
            parameters, the 95% interval (``test_accuracy_ci95_low``/``_high``) and the
            training seed, when the model was evaluated.
        confusion: gets (``log_confusion_matrix``) the test confusion matrix, likewise.

    Returns:
        The evaluation record; status ``failed`` (nothing logged) when the model did
        not train or its loss is not finite.
    """
    print(f"[cnnzoo] evaluate {model.metadata.get('model', '')}: started", flush=True)
    result = evaluate_model(model.path, splits.path, evaluation.path)
    name = result["model"]
    evaluation.metadata.update(
        {"model": name, "status": result["status"], "seed": result.get("seed")}
    )
    if result["status"] != "ok":
        print(f"[cnnzoo] evaluate {name}: no trained model ({result.get('error')})", flush=True)
        return result
    for key in _EVALUATE_METRICS:
        if result[key] is not None:  # a pipeline check has no train accuracy, no gap
            metrics.log_metric(key, result[key])
    if result.get("test_accuracy_ci"):  # the 95% Wilson interval (cnnzoo.evaluation.stats)
        low, high = result["test_accuracy_ci"]
        metrics.log_metric("test_accuracy_ci95_low", low)
        metrics.log_metric("test_accuracy_ci95_high", high)
    if result.get("seed") is not None:
        metrics.log_metric("seed", result["seed"])
    confusion.log_confusion_matrix(result["classes"], result["confusion_matrix"])
    gap = "n/a (pipeline check)" if result["gap"] is None else f"{result['gap']:+.4f}"
    print(
        f"[cnnzoo] evaluate {name} done: test_accuracy {result['test_accuracy']:.4f}, gap {gap}",
        flush=True,
    )
    return result


def report(
    evaluations: Sequence[Any],
    dataset: Any,
    splits: Any,
    data_uri: str,
    profile: str,
    tensorboard_root: str,
    output_uri: str,
    run_name: str,
    comparison: Any,
    html: Any,
    markdown: Any,
    tensorboard_resource: str = "",
) -> dict[str, str]:
    """The report step: every evaluation into the comparison report.

    The run's logs root (``tensorboard_root``, else ``<output_uri>/tensorboard``) gets
    the HParams column declaration; with an ``output_uri`` the report folder is exported
    to ``<output_uri>/report/``.

    Args:
        evaluations: the evaluate tasks' ``evaluation`` artifacts.
        dataset: the ingest output artifact.
        splits: the split output artifact.
        data_uri: the run's data.
        profile: the resolved profile as JSON.
        tensorboard_root: the run's TensorBoard root, or ``""``.
        output_uri: the run's output location, or ``""``.
        run_name: the run's name, shown in the report.
        comparison: the output artifact: every file of the report and run-manifest.json;
            its metadata gets ``models``, ``best``, ``failed`` (and ``exported``).
        html: gets a copy of report.html.
        markdown: gets a copy of report.md.
        tensorboard_resource: the ``tensorboard-cr`` step's JSON output, or ``""``.

    Returns:
        The report's paths by format, and ``"best"`` (as
        :func:`cnnzoo.reporting.report.report_artifacts`).
    """
    print("[cnnzoo] report: started", flush=True)
    resolved = _profile_data(profile)
    context = {
        "run_name": run_name,
        "data_uri": data_uri,
        "profile": resolved,
        "seed": resolved.get("seed"),
        "tensorboard_root": run_logs_root(tensorboard_root, output_uri),
        "tensorboard_cr": json.loads(tensorboard_resource) if tensorboard_resource else {},
    }
    paths, results = report_artifacts(
        [ArtifactRef(Path(a.path), a.uri) for a in evaluations],
        ArtifactRef(Path(dataset.path), dataset.uri),
        ArtifactRef(Path(splits.path), splits.uri),
        comparison.path,
        context,
    )
    if context["tensorboard_root"]:
        write_hparams_config(context["tensorboard_root"], [r.model for r in results])
    shutil.copyfile(paths["html"], html.path)
    shutil.copyfile(paths["markdown"], markdown.path)
    failed = [r.model for r in results if not r.ok]
    comparison.metadata.update(
        {"models": [r.model for r in results], "best": paths["best"], "failed": failed}
    )
    if output_uri:
        exported = export_folder(comparison.path, output_uri, OUTPUT_REPORT)
        comparison.metadata["exported"] = exported
        print(f"[cnnzoo] report exported to {exported}", flush=True)
    print(
        f"[cnnzoo] report done: {len(results)} models, best {paths['best']}, "
        f"{len(failed)} failed" + (f" ({', '.join(failed)})" if failed else ""),
        flush=True,
    )
    return paths


def tensorboard_cr(run_id: str, run_name: str, tensorboard_root: str, output_uri: str) -> str:
    """The ``tensorboard-cr`` step: apply the run's Kubeflow ``Tensorboard``.

    A refusal (no CRD, no RBAC, a local logs root) is logged and returned, not raised:
    a failed task would stop the training from being scheduled.

    Args:
        run_id: the KFP run's id.
        run_name: the run's name.
        tensorboard_root: the run's TensorBoard root, or ``""``.
        output_uri: the run's output location, or ``""``.

    Returns:
        JSON: the ``Tensorboard``'s name, namespace and how to open it, or
        ``{"error": ...}``.
    """
    try:
        ref = apply_run_tensorboard(run_id, run_logs_root(tensorboard_root, output_uri), run_name)
    except CnnzooError as e:
        print(f"[cnnzoo] warning: no Kubeflow Tensorboard for this run: {e}", flush=True)
        return json.dumps({"error": str(e)})
    print(
        f"[cnnzoo] Tensorboard {ref.namespace}/{ref.name} {ref.action}: Central Dashboard "
        f"{ref.dashboard_path}, or: {ref.port_forward}",
        flush=True,
    )
    return json.dumps(ref.to_dict())
