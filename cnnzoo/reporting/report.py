"""The comparison report: which configuration to use, and why.

:func:`build_report` ranks the evaluation records of a run (:mod:`cnnzoo.evaluation.records`) and
writes ``report.html``, ``report.md``, ``comparison.csv`` and ``comparison.json``
(texts from :mod:`cnnzoo.reporting.render`, the page from :mod:`cnnzoo.reporting.html`) into one
report folder, replaced whole and atomically. Every test accuracy carries its 95%
interval, every configuration its exact McNemar test against the best on the same test
images, and the first lines say which are tied with the best and which are clearly
behind (:mod:`cnnzoo.reporting.verdict`); the numbers come from
:func:`cnnzoo.evaluation.stats.compare_configurations`. With repeated seeds (the profile's
``repeats``) a configuration's row is the mean over its seeds, ranked by that mean.
:func:`report_run` rebuilds the report of a finished run from its run manifest
(:mod:`cnnzoo.reporting.discovery`), as ``cnnzoo report RUN_DIR`` does.
"""

from __future__ import annotations

import math
import os
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cnnzoo.config.profile import load_profile
from cnnzoo.core.errors import CnnzooError
from cnnzoo.data.artifacts import read_data_artifact
from cnnzoo.evaluation.records import EvaluationRecord, finite, read_evaluation
from cnnzoo.evaluation.stats import compare_configurations
from cnnzoo.models.registry import get_spec, list_models, notebook_test_accuracy
from cnnzoo.reporting.columns import (
    DERIVED_KEYS,
    NUMERIC_KEYS,
    derived_text,
    format_p,
    format_value,
    table_columns,
)
from cnnzoo.reporting.discovery import ArtifactRef, RunManifest, find_run_outputs
from cnnzoo.reporting.html import html_text
from cnnzoo.reporting.render import (
    comparison_records,
    csv_text,
    json_text,
    markdown_text,
    warnings_markdown,
)
from cnnzoo.reporting.verdict import headline, statistics_summary
from cnnzoo.storage.layout import MANIFEST, REPORT_FILES, REPORT_KIND, SPLIT_INFO, run_label
from cnnzoo.storage.local import atomic_directory, atomic_write_text
from cnnzoo.tensorboard.access import tensorboard_markdown

#: The ownership kind of a report folder (``.cnnzoo.json``; see :mod:`cnnzoo.storage.local`).


def _spec_field(model: str, key: str) -> Any:

    try:
        return getattr(get_spec(model), key)
    except CnnzooError:
        return None


def weights_label(strategy: str | None, base: str | None, weights: Any) -> str:
    """How the table names the initial weights of a configuration.

    A pretrained configuration (one with a ``base``) that ran with random weights is
    marked plainly, since its numbers say nothing about transfer learning.

    Args:
        strategy: the configuration's strategy.
        base: the ImageNet backbone, or None for a custom CNN.
        weights: the evaluation's ``weights`` (``"random"``, ``"imagenet"`` or a URI).

    Returns:
        A short label, e.g. ``"ImageNet"`` or ``"random (not pretrained)"``.
    """
    w = "random" if weights in (None, "", "random") else str(weights)
    if not base:
        return "none (from scratch)" if w == "random" else f"from {w}"
    if w == "random":
        return "random (not pretrained)"
    if w == "imagenet":
        return "ImageNet"
    return f"pretrained: {w}"


def _record(ev: EvaluationRecord | dict[str, Any], index: int) -> EvaluationRecord:
    if isinstance(ev, EvaluationRecord):
        return ev
    name = ev.get("model") if isinstance(ev, dict) else None
    where = f"evaluation #{index + 1}" + (f" ({name})" if isinstance(name, str) else "")
    return EvaluationRecord.from_dict(ev, where)


def split_evaluations(
    evaluations: Sequence[EvaluationRecord | dict[str, Any]],
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Check evaluations and split them into table rows and failures.

    Args:
        evaluations: :class:`EvaluationRecord` objects, or evaluation JSON data (checked
            by :meth:`EvaluationRecord.from_dict`), ok and failed; a configuration may
            have several, one per training ``seed`` (the profile's ``repeats``).

    Returns:
        ``(rows, failed)``: one row per configuration with the table's columns plus
        ``rank``, ``base``, ``weights``, ``pipeline_check``, the losses, the statistics
        of :func:`cnnzoo.evaluation.stats.compare_configurations` (``test_accuracy_ci``,
        ``gap_ci``, ``vs_best``, ``p_vs_best``, ``p_vs_best_adjusted`` (Holm over the
        ranked configurations), ``vs_best_reason``, ``significance``,
        ``repeats``, ``test_accuracy_std``, ``seeds``, ``seed_accuracies``) and the
        ``evaluation`` record it came from (the lowest seed's, for the plots); with
        several seeds the numeric columns are their means. Failures as ``{"model",
        "strategy", "base", "error"}`` (plus ``seed`` when known) in input order. The
        study's rows come first, sorted by (mean) test accuracy, best first, ranked 1,
        2, ...; then the pipeline checks (``pipeline_check`` true, ``rank`` None):
        pretrained configurations that ran with random weights, which only prove that
        their path runs, in registry order.

    Raises:
        CnnzooError: an evaluation is not a valid record (the message names which, the
            key and the value), or two evaluations name the same model and seed.
    """

    groups: dict[str, list[EvaluationRecord]] = {}
    failed: list[dict[str, Any]] = []
    seen: set[tuple[str, int | None]] = set()
    for i, raw in enumerate(evaluations):
        ev = _record(raw, i)
        if (ev.model, ev.seed) in seen:
            raise CnnzooError(
                f"evaluation #{i + 1}: a second evaluation for model {ev.model!r}"
                + (f" with seed {ev.seed}" if ev.seed is not None else "")
            )
        seen.add((ev.model, ev.seed))
        strategy = ev.strategy or _spec_field(ev.model, "strategy") or "unknown"
        base = ev.base if ev.base is not None else _spec_field(ev.model, "base")
        if not ev.ok:
            failed.append(
                {
                    "model": ev.model,
                    "strategy": strategy,
                    "base": base,
                    "error": ev.error or "(no error message recorded)",
                    **({"seed": ev.seed} if ev.seed is not None else {}),
                }
            )
            continue
        groups.setdefault(ev.model, []).append(ev)
    rows = [_row(runs) for runs in groups.values()]
    ranked = [r for r in rows if not r["pipeline_check"]]
    checks = sorted(
        (r for r in rows if r["pipeline_check"]), key=lambda r: _registry_order(r["model"])
    )

    def stats_of(selected: list[dict[str, Any]]) -> dict[str, Any]:
        return compare_configurations(
            {r["model"]: [ev.to_dict() for ev in groups[r["model"]]] for r in selected}
        )

    stats, check_stats = stats_of(ranked), stats_of(checks)
    by_model = {r["model"]: r for r in rows}
    ranked = [by_model[m] for m in stats["order"]]
    for rank, row in enumerate(ranked, 1):
        row["rank"] = rank
        _add_stats(row, stats["models"][row["model"]])
    for row in checks:
        row["rank"] = None
        _add_stats(row, check_stats["models"][row["model"]], versus=False)
    return ranked + checks, failed


def _row(runs: list[EvaluationRecord]) -> dict[str, Any]:
    """One configuration's row from its evaluations (one per seed)."""
    runs = sorted(runs, key=lambda r: (r.seed is None, r.seed or 0))
    ev = runs[0]
    strategy = ev.strategy or _spec_field(ev.model, "strategy") or "unknown"
    base = ev.base if ev.base is not None else _spec_field(ev.model, "base")
    random_pretrained = bool(base) and ev.weights in (None, "", "random")

    def value(key: str) -> Any:
        values = [getattr(r, key, None) for r in runs]
        if len(values) == 1 or not all(finite(v) for v in values):
            return values[0]
        return math.fsum(values) / len(values)

    row = {k: value(k) for k in NUMERIC_KEYS if k not in DERIVED_KEYS}
    row.update(
        reference_accuracy=notebook_test_accuracy(ev.model),
        pipeline_check=random_pretrained,
        model=ev.model,
        strategy=strategy,
        base=base,
        weights=ev.weights,
        weights_used=weights_label(strategy, base, ev.weights),
        derived=derived_text(ev.derived_from, ev.sweep, ev.derived_settings),
        random_pretrained=random_pretrained,
        test_loss=value("test_loss"),
        train_loss=value("train_loss"),
        val_accuracy=value("val_accuracy"),
        evaluation=ev,
    )
    return row


def _add_stats(row: dict[str, Any], stats: dict[str, Any], versus: bool = True) -> None:
    """Merge one configuration's :func:`~cnnzoo.evaluation.stats.compare_configurations` entry."""
    row["test_accuracy_ci"] = stats["test_accuracy_ci"]
    row["gap_ci"] = stats["gap_ci"]
    row["repeats"] = stats["repeats"]
    row["test_accuracy_std"] = stats["test_accuracy_std"]
    row["seeds"] = stats["seeds"]
    row["seed_accuracies"] = ", ".join(
        format_value("pct", s["test_accuracy"]) for s in stats["seeds"]
    )
    vs = stats.get("vs_best") if versus else None
    row["vs_best"] = vs["verdict"] if vs else None
    row["p_vs_best"] = vs.get("p_value") if vs else None
    row["p_vs_best_adjusted"] = vs.get("p_adjusted") if vs else None
    row["vs_best_reason"] = vs.get("reason") if vs else None
    if not vs:
        row["significance"] = ""
    elif vs["verdict"] == "best":
        row["significance"] = "best"
    elif vs["verdict"] == "untested":
        row["significance"] = f"not tested: {vs['reason']}"
    else:
        row["significance"] = (
            f"{vs['verdict']}, Holm {format_p(vs['p_adjusted'])} (raw {format_p(vs['p_value'])})"
        )


def markdown_table(evaluations: Sequence[EvaluationRecord | dict[str, Any]]) -> str:
    """The results table as Markdown (best configuration in bold), failures listed below.

    Raises:
        CnnzooError: as :func:`split_evaluations`.
    """
    return markdown_text(*split_evaluations(evaluations))


def profile_differences(
    profile: dict[str, Any], reference: dict[str, Any]
) -> list[tuple[str, Any, Any]]:
    """Every setting in which ``profile`` differs from ``reference`` (e.g. ``full``).

    Args:
        profile: a resolved profile as plain data (``Profile.to_dict()``).
        reference: the profile to compare against, in the same form.

    Returns:
        ``(dotted key, reference value, profile value)`` for every setting ``profile``
        has, in its field order (``name`` is left out; a setting ``reference`` lacks
        compares against None).
    """

    def flat(data: Any, prefix: str) -> dict[str, Any]:
        if not isinstance(data, dict):
            return {prefix: data}
        out: dict[str, Any] = {}
        for k, v in data.items():
            out.update(flat(v, f"{prefix}.{k}" if prefix else str(k)))
        return out

    a, b = flat(reference, ""), flat(profile, "")
    return [(k, a.get(k), v) for k, v in b.items() if k != "name" and a.get(k) != v]


def _differences_from_full(context: dict[str, Any]) -> list[tuple[str, Any, Any]] | None:
    """The run's profile against ``full``; None when either is unavailable."""

    profile = context.get("profile")
    if not isinstance(profile, dict):
        return None
    try:
        full = load_profile("full").to_dict()
    except CnnzooError:
        return None
    return profile_differences(profile, full)


def build_report(
    evaluations: Sequence[EvaluationRecord | dict[str, Any]],
    out_dir: str | os.PathLike,
    context: dict[str, Any] | None = None,
    *,
    manifest: Any = None,
    overwrite: bool = False,
) -> dict[str, str]:
    """Write the comparison report of a run into the folder ``out_dir``.

    Everything is rendered in memory first; the folder is then built under a temporary
    name and renamed into place (:func:`cnnzoo.storage.local.atomic_directory`), so bad input
    leaves ``out_dir`` untouched and a reader never sees half a report. ``out_dir`` may
    be missing, empty, an earlier report (its ``.cnnzoo.json`` says ``report``), or, with
    ``overwrite``, any folder.

    Args:
        evaluations: evaluation records (or their JSON data), ok and failed.
        out_dir: the report folder.
        context: optional run information: ``data`` (ingest manifest), ``split``
            (split.json), ``profile`` (``Profile.to_dict()``), ``seed``, ``data_uri``,
            ``run_name``, ``tensorboard_root``, ``tensorboard_cr`` (see
            :func:`cnnzoo.tensorboard.access.tensorboard_access`).
        manifest: a :class:`cnnzoo.reporting.discovery.RunManifest` to store beside the report
            (``run-manifest.json``), so that ``cnnzoo report`` can rebuild it later.
        overwrite: replace an ``out_dir`` that cnnzoo did not write.

    Returns:
        Paths written: ``{"html", "markdown", "csv", "json"}``, plus ``best``: the
        best configuration's name (or None).

    Raises:
        CnnzooError: no evaluations, an invalid one (message names which and why), or an
            ``out_dir`` that holds something else (or that another process writes).
    """

    if not evaluations:
        raise CnnzooError("report: no evaluations given (nothing to compare)")
    if context is not None and not isinstance(context, dict):
        raise CnnzooError(f"report: context must be a dict, got {type(context).__name__}")

    context = context or {}
    rows, failed = split_evaluations(evaluations)
    records = comparison_records(rows, failed)
    ranked = [r for r in records if r["status"] == "ok" and not r["pipeline_check"]]
    ranked_rows = [r for r in rows if not r["pipeline_check"]]
    differences = _differences_from_full(context)
    profile_name = (context.get("profile") or {}).get("name")
    comparison = {
        "best": ranked[0]["model"] if ranked else None,
        "headline": headline(rows),
        "sorted_by": "test_accuracy",
        "columns": [
            {"key": k, "header": h, "kind": kind} for k, h, kind in table_columns(ranked_rows)
        ],
        "rows": ranked,
        "pipeline_checks": [r for r in records if r["status"] == "ok" and r["pipeline_check"]],
        "failed": [r for r in records if r["status"] == "failed"],
        "profile": profile_name,
        "profile_vs_full": [
            {"key": k, "full": a, "this_run": b} for k, a, b in (differences or [])
        ],
        "statistics": statistics_summary(ranked_rows),
    }
    texts = {
        "html": html_text(rows, failed, context, differences),
        "markdown": markdown_text(rows, failed, differences, profile_name)
        + tensorboard_markdown(context)
        + warnings_markdown(context),
        "csv": csv_text(records),
        "json": json_text(comparison),
    }
    out = Path(out_dir)
    with atomic_directory(out, overwrite, kind=REPORT_KIND) as tmp:
        for key, name in REPORT_FILES.items():
            atomic_write_text(tmp / name, texts[key])
        if manifest is not None:
            manifest.write(tmp, location=out)
    paths = {key: str(out / name) for key, name in REPORT_FILES.items()}
    paths["best"] = comparison["best"]
    return paths


def report_artifacts(
    evaluations: Sequence[Any],
    dataset: Any,
    splits: Any,
    out_dir: str | os.PathLike,
    context: dict[str, Any],
) -> tuple[dict[str, str], list[EvaluationRecord]]:
    """The pipeline's report step: read a run's artifacts, write the report and its manifest.

    Args:
        evaluations: :class:`cnnzoo.reporting.discovery.ArtifactRef` of each evaluation record.
        dataset: the ingest output's ``ArtifactRef`` (its ``manifest.json`` is read).
        splits: the split output's ``ArtifactRef`` (its ``split.json`` is read).
        out_dir: the report folder.
        context: the run's context (:data:`cnnzoo.reporting.discovery.CONTEXT_KEYS`), stored in
            the run manifest beside the report.

    Returns:
        ``(paths, records)``: :func:`build_report`'s paths and the records read.

    Raises:
        CnnzooError: an artifact is missing or invalid, as :func:`build_report`.
    """

    records = [read_evaluation(ref.path) for ref in evaluations]
    repeats = int((context.get("profile") or {}).get("repeats") or 1)
    manifest = RunManifest(
        evaluations={  # one entry per run: "<model>/seed-<seed>" for one of several repeats
            run_label(r.model, r.seed, repeats): ref
            for r, ref in zip(records, evaluations, strict=True)
        },
        dataset=dataset,
        splits=splits,
        context=dict(context),
    )
    full = {
        **context,
        "data": read_data_artifact(Path(dataset.path) / MANIFEST),
        "split": read_data_artifact(Path(splits.path) / SPLIT_INFO),
    }
    return build_report(records, out_dir, full, manifest=manifest), records


def _registry_order(model: str) -> tuple[int, str]:

    names = list_models()
    return (names.index(model) if model in names else len(names), model)


def report_run(
    run_dir: str | os.PathLike,
    out_dir: str | os.PathLike | None = None,
    *,
    overwrite: bool = False,
) -> tuple[dict[str, str], list[str]]:
    """Rebuild the report of a finished run (what ``cnnzoo report`` does).

    Args:
        run_dir: the run's folder (``runs/<timestamp>``) or a report folder holding a
            ``run-manifest.json`` (see :func:`cnnzoo.reporting.discovery.find_run_outputs`).
        out_dir: where to write; default ``RUN_DIR/report`` (for a report folder: that
            folder). It must be missing, empty or an earlier report, unless ``overwrite``.
        overwrite: replace an ``out_dir`` that cnnzoo did not write.

    Returns:
        ``(paths, notes)``: :func:`build_report`'s paths and the finder's notes.

    Raises:
        CnnzooError: as :func:`cnnzoo.reporting.discovery.find_run_outputs` and
        :func:`build_report`.
    """

    found = find_run_outputs(run_dir)
    out_dir = Path(out_dir) if out_dir else found.default_out
    paths = build_report(
        found.evaluations,
        out_dir,
        found.context,
        manifest=found.manifest,
        overwrite=overwrite,
    )
    return paths, found.notes


def report_files(
    evaluation_files: Sequence[str | os.PathLike],
    out_dir: str | os.PathLike,
    *,
    dataset: str | os.PathLike | None = None,
    splits: str | os.PathLike | None = None,
    overwrite: bool = False,
) -> dict[str, str]:
    """A report over evaluation records named one by one (``cnnzoo report --evaluations``):
    for steps run by hand, where no run manifest exists. The list given is the manifest:
    it is stored beside the report, so ``cnnzoo report OUT_DIR`` rebuilds it later.

    Args:
        evaluation_files: ``cnnzoo evaluate`` outputs; two of one model must differ in seed.
        out_dir: the report folder (missing, empty or an earlier report, or ``overwrite``).
        dataset: the ingest output folder, for the report's data section (optional).
        splits: the split output folder, for its split section (optional).
        overwrite: replace an ``out_dir`` that cnnzoo did not write.

    Raises:
        CnnzooError: a file is missing or not a valid record (named), two records are the
            same run, or as :func:`build_report`.
    """

    paths = [Path(p).absolute() for p in evaluation_files]
    records = [read_evaluation(p) for p in paths]
    per_model = Counter(r.model for r in records)
    runs: dict[str, ArtifactRef] = {}
    for record, path in zip(records, paths, strict=True):
        label = run_label(record.model, record.seed, per_model[record.model])
        if label in runs:
            raise CnnzooError(
                f"{path}: the same run as {runs[label].path} (model {record.model}, seed "
                f"{record.seed}); give each run once"
            )
        runs[label] = ArtifactRef(path)
    context: dict[str, Any] = {}
    refs = {}
    for key, folder, name in (("data", dataset, MANIFEST), ("split", splits, SPLIT_INFO)):
        if folder is not None:
            refs[key] = ArtifactRef(Path(folder).absolute())
            context[key] = read_data_artifact(refs[key].path / name)
    manifest = RunManifest(evaluations=runs, dataset=refs.get("data"), splits=refs.get("split"))
    return build_report(records, out_dir, context, manifest=manifest, overwrite=overwrite)
