"""The report's page: the context of the Jinja2 template, and the page rendered from it.

The page is the template ``cnnzoo/reporting/templates/report.html.j2`` (package data), rendered
with autoescape on: every value reaches the page escaped unless the code here marks it
as markup, which only the embedded plots are. Its tables read the column list of
:mod:`cnnzoo.reporting.columns` and its first lines are :func:`cnnzoo.reporting.verdict.headline`,
as in
every other format (:mod:`cnnzoo.reporting.render`).
"""

from __future__ import annotations

import base64
import datetime as _dt
import json
import re
from collections.abc import Sequence
from typing import Any

import jinja2
from markupsafe import Markup

from cnnzoo import __version__
from cnnzoo.evaluation.records import finite
from cnnzoo.reporting import plots
from cnnzoo.reporting.columns import (
    CHECK_COLUMNS,
    CHECK_TEXT,
    CHECK_TITLE,
    format_value,
    setting_text,
    table_columns,
)
from cnnzoo.reporting.verdict import STATS_NOTE, data_warnings, headline
from cnnzoo.tensorboard.access import tensorboard_access

TEMPLATE = "report.html.j2"


def _png_src(png: bytes):
    """A PNG as a ``data:`` URI, marked safe for the template (base64 needs no escaping)."""

    return Markup("data:image/png;base64," + base64.b64encode(png).decode("ascii"))


def _anchor(model: str) -> str:
    return "model-" + re.sub(r"[^A-Za-z0-9_-]", "-", model)


def _data_value(raw: Any) -> str:
    if raw is None:
        return ""
    if isinstance(raw, (list, tuple)):
        return json.dumps(list(raw))
    return repr(raw) if isinstance(raw, (int, float)) and not isinstance(raw, bool) else str(raw)


def _table_rows(rows: Sequence[dict[str, Any]], columns, ranked: bool) -> list[dict[str, Any]]:
    """Each row's cells for the template: key, raw value, text, link, warning."""
    out = []
    for r in rows:
        cells = []
        if ranked:
            rank = str(r["rank"])
            cells.append(
                {
                    "key": "rank",
                    "num": True,
                    "value": rank,
                    "text": rank,
                    "link": None,
                    "warn": False,
                }
            )
        for key, _, kind in columns:
            cells.append(
                {
                    "key": key,
                    "num": kind != "text",
                    "value": _data_value(r[key]),
                    "text": format_value(kind, r[key]),
                    "link": _anchor(r["model"]) if key == "model" else None,
                    "warn": key == "weights_used" and r["random_pretrained"],
                }
            )
        verdict = r.get("vs_best") if ranked else None
        out.append(
            {
                "model": r["model"],
                "best": ranked and r["rank"] == 1,
                "verdict": verdict if verdict in ("tied", "behind") else None,
                "cells": cells,
            }
        )
    return out


def _run_items(context: dict[str, Any]) -> list[dict[str, Any]]:

    data = context.get("data") or {}
    split = context.get("split") or {}
    profile = context.get("profile") or {}
    items: list[dict[str, Any]] = []

    def add(label: str, text: Any, muted: bool = False, code: str = "") -> None:
        items.append({"label": label, "text": text, "muted": muted, "code": code})

    if context.get("run_name"):
        add("run", context["run_name"])
    source = context.get("data_uri") or data.get("source")
    add("data source", source or "unknown", muted=not source)
    classes = data.get("classes") or split.get("classes") or []
    if classes:
        add(f"classes ({len(classes)})", ", ".join(map(str, classes)))
    seed = context.get("seed", profile.get("seed", split.get("seed")))
    add("seed", "unknown" if seed is None else seed, muted=seed is None)
    if profile:
        add(
            "profile",
            f"{profile.get('name', '?')}: {profile.get('img_size', '?')} px, "
            f"batch {profile.get('batch_size', '?')}, "
            f"precision {profile.get('precision', '?')}, "
            f"max epochs {profile.get('max_epochs') or 'per schedule'}, "
            f"weights {profile.get('weights') or 'random'}",
        )
    if split:
        counts = ", ".join(
            f"{k} {v.get('count', '?')}" for k, v in (split.get("splits") or {}).items()
        )
        add(
            "split",
            f"{counts} at {split.get('img_size', '?')} px "
            f"(val {split.get('val_fraction', '?')}, test {split.get('test_fraction', '?')}, "
            f"test from {split.get('test_source') or 'the training images'})",
        )
    for label, text, command in tensorboard_access(context):
        add(label, text, code=command)
    return items


def _class_counts(context: dict[str, Any]) -> dict[str, Any] | None:
    data = context.get("data") or {}
    counts = data.get("counts") or {}
    classes = data.get("classes") or (context.get("split") or {}).get("classes") or []
    if not (counts and classes):
        return None
    splits = list(counts)
    return {
        "splits": splits,
        "rows": [(c, [counts[s].get(c, 0) for s in splits]) for c in classes],
        "totals": [sum(counts[s].values()) for s in splits],
    }


def _model_view(row: dict[str, Any]) -> dict[str, Any]:

    ev = row["evaluation"]
    model = row["model"]
    anchor = _anchor(model)
    history = ev.history or []
    per_class = []
    for c in ev.classes or list(ev.per_class or {}):
        m = (ev.per_class or {}).get(c) or {}
        cells = [format_value("pct", m.get(k)) for k in ("precision", "recall", "f1")]
        per_class.append((c, [*cells, format_value("int", m.get("support"))]))
    return {
        "model": model,
        "anchor": anchor,
        "title": f"{model} ({CHECK_TITLE.lower()})"
        if row["pipeline_check"]
        else f"{row['rank']}. {model}",
        "strategy": row["strategy"],
        "base": row["base"],
        "weights_used": row["weights_used"],
        "test_accuracy": format_value("pct", row["test_accuracy"]),
        "test_accuracy_ci": format_value("ci", row["test_accuracy_ci"])
        if row["test_accuracy_ci"]
        else None,
        "seeds": f"over {row['repeats']} seeds ({row['seed_accuracies']}; plots: seed {ev.seed})"
        if row["repeats"] > 1
        else None,
        "test_loss": f"{row['test_loss']:.4f}" if finite(row["test_loss"]) else "n/a",
        "epochs_run": format_value("int", row["epochs_run"]),
        "curves": _png_src(plots.training_curves(model, history)) if history else None,
        "confusion": _png_src(plots.confusion_matrix(model, ev.classes, ev.confusion_matrix))
        if ev.confusion_matrix is not None
        else None,
        "per_class": per_class if ev.per_class else None,
    }


def html_text(
    rows: Sequence[dict[str, Any]],
    failed: Sequence[dict[str, Any]],
    context: dict[str, Any] | None = None,
    differences: Sequence[tuple[str, Any, Any]] | None = None,
) -> str:
    """The whole self-contained report page.

    Args:
        rows: from :func:`cnnzoo.reporting.report.split_evaluations`.
        failed: from :func:`cnnzoo.reporting.report.split_evaluations`.
        context: run information (see :func:`cnnzoo.reporting.report.build_report`).
        differences: the run's profile against ``full`` (None: not known).

    Returns:
        The HTML text (plots embedded as base64 PNGs; no external resources).
    """

    context = context or {}
    profile = context.get("profile") or {}
    ranked = [r for r in rows if not r["pipeline_check"]]
    checks = [r for r in rows if r["pipeline_check"]]
    plots_view = []
    if ranked:
        plots_view = [
            ("bars", "test accuracy per configuration", plots.bar_chart_test_accuracy(ranked)),
            (
                "acc-vs-params",
                "train and test accuracy vs trainable parameters",
                plots.accuracy_vs_params(ranked),
            ),
            ("gap", "overfitting gap vs trainable parameters", plots.gap_vs_params(ranked)),
        ]
        sweeps = dict.fromkeys(r["evaluation"].sweep for r in ranked if r["evaluation"].sweep)
        for sweep in sweeps:
            members = [r for r in ranked if r["evaluation"].sweep == sweep]
            plots_view.append(
                (
                    f"sweep-{sweep}",
                    f"test accuracy against the settings of sweep {sweep}",
                    plots.sweep_plot(sweep, members),
                )
            )
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("cnnzoo.reporting", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    return env.get_template(TEMPLATE).render(
        title="cnnzoo comparison report"
        + (f" — {context['run_name']}" if context.get("run_name") else ""),
        generated=_dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        version=__version__,
        best=ranked[0] if ranked else None,
        fmt=format_value,
        ranked_count=len(ranked),
        checks_count=len(checks),
        failed=failed,
        run_items=_run_items(context),
        class_counts=_class_counts(context),
        skipped=(context.get("data") or {}).get("skipped"),
        data_warnings=data_warnings(context),
        profile_json=json.dumps(profile, indent=2, default=str) if profile else None,
        verdict=headline(rows),
        stats_note=STATS_NOTE,
        columns=table_columns(ranked),
        check_columns=CHECK_COLUMNS,
        results=_table_rows(ranked, table_columns(ranked), ranked=True),
        checks=_table_rows(checks, CHECK_COLUMNS, ranked=False),
        check_title=CHECK_TITLE,
        check_text=CHECK_TEXT,
        differences=None
        if differences is None
        else [(k, setting_text(a), setting_text(b)) for k, a, b in differences],
        profile_name=profile.get("name"),
        plots=[(i, alt, _png_src(png)) for i, alt, png in plots_view],
        models=[_model_view(r) for r in rows],
    )
