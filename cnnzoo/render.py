"""The report's texts: the results table as HTML, Markdown, CSV and JSON, and the console summary.

Every format takes the ranked rows and failures of :func:`cnnzoo.report.split_evaluations`
and reads the one column list, :data:`COLUMNS` (with :data:`REPEAT_COLUMNS` when a
configuration ran with several seeds, :func:`table_columns`), so the formats cannot
disagree; every format starts with the same :func:`headline` (best, tied with it,
clearly behind). The HTML
page is the Jinja2 template ``cnnzoo/templates/report.html.j2`` (package data), rendered
with autoescape on: every value reaches the page escaped unless the code here marks it
as markup, which only the embedded plots are.
"""

from __future__ import annotations

import base64
import csv
import datetime as _dt
import io
import json
import math
import re
from collections.abc import Sequence
from typing import Any

from cnnzoo.records import finite

# (key, header, kind): kind selects the formatter.
COLUMNS: list[tuple[str, str, str]] = [
    ("model", "configuration", "text"),
    ("strategy", "strategy", "text"),
    ("total_params", "total params", "int"),
    ("trainable_params", "trainable params", "int"),
    ("epochs_run", "epochs run", "int"),
    ("best_val_accuracy", "best val acc", "pct"),
    ("train_accuracy", "train acc", "pct"),
    ("test_accuracy", "test acc", "pct"),
    ("test_accuracy_ci", "95% interval", "ci"),
    ("significance", "vs best (McNemar)", "text"),
    ("reference_accuracy", "notebook test acc", "pct"),
    ("gap", "gap (train − test)", "pp"),
    ("gap_ci", "gap 95% interval", "ci_pp"),
    ("train_time_s", "training time", "duration"),
    ("images_per_s", "images/s", "rate"),
    ("weights_used", "weights used", "text"),
]
#: Added after the test accuracy when a configuration ran with more than one seed.
REPEAT_COLUMNS: list[tuple[str, str, str]] = [
    ("test_accuracy_std", "std over seeds", "spread"),
    ("seed_accuracies", "per seed", "text"),
]
NUMERIC_KEYS = [k for k, _, kind in COLUMNS if kind != "text"]
#: Not in an evaluation: the report adds them (cnnzoo.reference, cnnzoo.stats).
DERIVED_KEYS = ["reference_accuracy", "test_accuracy_ci", "gap_ci"]
#: The interval columns, written to the CSV as ``<key>_low`` and ``<key>_high``.
CI_KEYS = ("test_accuracy_ci", "gap_ci")
#: Columns of the pipeline-check table (random-weight backbones): no ranking, no reference.
CHECK_COLUMNS: list[tuple[str, str, str]] = [
    c
    for c in COLUMNS
    if c[0] not in ("reference_accuracy", "best_val_accuracy", "gap", "gap_ci", "significance")
]
CSV_FIELDS = (
    ["rank", "model", "status", "strategy", "base"]
    + [
        f
        for k, _, _ in COLUMNS
        if k not in ("model", "strategy", "significance")
        for f in ([f"{k}_low", f"{k}_high"] if k in CI_KEYS else [k])
    ]
    + ["vs_best", "p_vs_best", "repeats", "test_accuracy_std", "seed_test_accuracies"]
    + ["weights", "pipeline_check", "test_loss", "train_loss", "val_accuracy", "error"]
)
#: How to read the intervals and the tests (shown under the results table).
STATS_NOTE = (
    "95% interval: the Wilson score interval of the test accuracy over the test images "
    "(with several seeds: all seeds' test predictions pooled; the seeds' spread is the "
    "std). vs best: an exact McNemar test (two-sided binomial test on the images only one "
    "of the two got right) of each configuration against the best on the same test "
    "images; tied = not distinguishable from the best at 5%, behind = worse at 5%. With "
    "several seeds it is tested seed by seed: behind only if every seed separates them, "
    "and the p-value shown is the largest. No correction for the number of comparisons. "
    "Gap interval: Newcombe's hybrid score interval of train accuracy − test accuracy "
    "(two independent proportions on disjoint images)."
)
#: At most this many order flips are named in the headline (all are in comparison.json).
MAX_FLIPS_NAMED = 8
CHECK_TITLE = "Pipeline check: random weights"
CHECK_TEXT = (
    "these pretrained configurations ran without pretrained weights (the profile's "
    "weights is null), for a few optimizer steps, to prove that their training path runs; "
    "their accuracy is that of an untrained model and measures nothing. Give the profile "
    "a weights file or folder (weights: PATH) to rank them."
)
TEMPLATE = "report.html.j2"


def format_value(kind: str, value: Any) -> str:
    """Format one table cell (the HTML and Markdown tables use the same text).

    Args:
        kind: ``text``, ``int``, ``pct`` (fraction shown as percent), ``pp`` (fraction
            difference shown as signed percentage points), ``duration`` (seconds),
            ``rate``, ``ci`` (``[low, high]`` fractions shown as a percent range),
            ``ci_pp`` (the same in signed percentage points), ``spread`` (a standard
            deviation, ``±`` percentage points).
        value: the raw value; None or non-finite numbers show as ``n/a``.

    Returns:
        The cell text.
    """
    if kind == "text":
        return "" if value is None else str(value)
    if kind in ("ci", "ci_pp"):
        if not (isinstance(value, (list, tuple)) and len(value) == 2 and all(map(finite, value))):
            return "n/a"
        lo, hi = (100 * v for v in value)
        return f"{lo:.2f}–{hi:.2f}%" if kind == "ci" else f"{lo:+.2f} to {hi:+.2f} pp"
    if not finite(value):
        return "n/a"
    if kind == "int":
        return f"{int(value):,}"
    if kind == "pct":
        return f"{100 * value:.2f}%"
    if kind == "pp":
        return f"{100 * value:+.2f} pp"
    if kind == "spread":
        return f"±{100 * value:.2f} pp"
    if kind == "rate":
        return f"{value:,.1f}"
    if kind == "duration":
        total = int(round(value))
        if value < 60:
            return f"{value:.1f} s"
        h, rem = divmod(total, 3600)
        m, s = divmod(rem, 60)
        return f"{h}h {m:02d}m {s:02d}s" if h else f"{m}m {s:02d}s"
    raise ValueError(f"unknown column kind {kind!r}")


def format_p(p: float | None) -> str:
    """A p-value as the report prints it: ``p = 0.041``, ``p < 0.001``; ``""`` for None."""
    if p is None:
        return ""
    return "p < 0.001" if p < 0.001 else f"p = {p:.3f}"


def table_columns(rows: Sequence[dict[str, Any]]) -> list[tuple[str, str, str]]:
    """The ranked table's columns: :data:`COLUMNS`, plus :data:`REPEAT_COLUMNS` after the
    test accuracy (then headed as the mean) when a configuration ran with several seeds."""
    cols = list(COLUMNS)
    if any((r.get("repeats") or 1) > 1 for r in rows):
        i = [k for k, _, _ in cols].index("test_accuracy")
        cols[i] = ("test_accuracy", "test acc (mean)", "pct")
        cols[i + 1 : i + 1] = REPEAT_COLUMNS
    return cols


def headline(rows: Sequence[dict[str, Any]]) -> list[str]:
    """The report's first lines, plain text: the best configuration, which ones are tied
    with it, which are clearly behind, which were not tested, and (with several seeds)
    the pairs whose order flips between seeds.

    Args:
        rows: from :func:`cnnzoo.report.split_evaluations`.

    Returns:
        Sentences, one a line; empty when no configuration is ranked.
    """
    from cnnzoo.stats import order_flips

    ranked = [r for r in rows if not r["pipeline_check"]]
    if not ranked:
        return []
    best = ranked[0]
    spread = (
        f" ± {100 * best['test_accuracy_std']:.2f} pp over {best['repeats']} seeds"
        if best.get("test_accuracy_std") is not None
        else ""
    )
    interval = (
        f" (95% interval {format_value('ci', best['test_accuracy_ci'])})"
        if best.get("test_accuracy_ci")
        else ""
    )
    lines = [
        f"Best: {best['model']}, test accuracy {format_value('pct', best['test_accuracy'])}"
        f"{spread}{interval}."
    ]
    if len(ranked) == 1:
        return lines + ["No other configuration to compare it with."]

    def named(verdict: str) -> list[str]:
        def why(r: dict[str, Any]) -> str:
            return r["vs_best_reason"] if verdict == "untested" else format_p(r["p_vs_best"])

        return [f"{r['model']} ({why(r)})" for r in ranked[1:] if r["vs_best"] == verdict]

    tied, behind, untested = named("tied"), named("behind"), named("untested")
    lines.append(
        "Tied with the best (not distinguishable at 5%, exact McNemar test on the same test "
        "images): " + (", ".join(tied) if tied else "none") + "."
    )
    lines.append(
        "Clearly behind the best (worse at 5%): " + (", ".join(behind) if behind else "none") + "."
    )
    if untested:
        lines.append("Not tested against the best: " + ", ".join(untested) + ".")
    if any((r.get("repeats") or 1) > 1 for r in ranked):
        flips = order_flips(
            {r["model"]: {s["seed"]: s["test_accuracy"] for s in r["seeds"]} for r in ranked}
        )
        if not flips:
            lines.append(
                "Ranked by the mean over seeds; no two configurations swap places between seeds."
            )
        else:
            text = [
                f"{f['a']}/{f['b']} ({f['b']} ahead with seed {', '.join(map(str, f['b_ahead']))})"
                for f in flips[:MAX_FLIPS_NAMED]
            ]
            more = len(flips) - MAX_FLIPS_NAMED
            lines.append(
                f"Ranked by the mean over seeds; {len(flips)} pair(s) swap places between "
                "seeds: " + "; ".join(text) + (f"; and {more} more" if more > 0 else "") + "."
            )
    return lines


def setting_text(value: Any) -> str:
    """A profile setting as the report shows it (``null``, ``true``, ``0.001``)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


# --- CSV and JSON ----------------------------------------------------------------------


def _json_number(x: Any) -> Any:
    return None if isinstance(x, float) and not math.isfinite(x) else x


def comparison_records(
    rows: Sequence[dict[str, Any]], failed: Sequence[dict[str, Any]]
) -> list[dict[str, Any]]:
    """The table's data as flat records (ok rows in rank order, then failures)."""
    out = []
    for r in rows:
        rec = {"rank": r["rank"], "model": r["model"], "status": "ok"}
        rec.update({k: r[k] for k in ("strategy", "base")})
        rec.update({k: _json_number(r[k]) for k, _, _ in COLUMNS if k not in rec})
        rec.update(
            weights=r["weights"],
            random_pretrained=r["random_pretrained"],
            pipeline_check=r["pipeline_check"],
            test_loss=_json_number(r["test_loss"]),
            train_loss=_json_number(r["train_loss"]),
            val_accuracy=_json_number(r["val_accuracy"]),
            vs_best=r["vs_best"],
            p_vs_best=r["p_vs_best"],
            repeats=r["repeats"],
            test_accuracy_std=r["test_accuracy_std"],
            seeds=r["seeds"],
        )
        out.append(rec)
    for f in failed:
        out.append(
            {
                "rank": None,
                "model": f["model"],
                "status": "failed",
                "strategy": f["strategy"],
                "base": f["base"],
                "error": f["error"],
                **({"seed": f["seed"]} if "seed" in f else {}),
            }
        )
    return out


def _csv_row(rec: dict[str, Any]) -> dict[str, Any]:
    """A comparison record with its intervals and per-seed accuracies flattened."""
    out = dict(rec)
    for key in CI_KEYS:
        ci = rec.get(key)
        if isinstance(ci, (list, tuple)) and len(ci) == 2:
            out[f"{key}_low"], out[f"{key}_high"] = ci
    seeds = rec.get("seeds") or []
    out["seed_test_accuracies"] = ";".join(f"{s['seed']}:{s['test_accuracy']}" for s in seeds)
    return out


def csv_text(records: Sequence[dict[str, Any]]) -> str:
    """``comparison.csv``: one line per record, :data:`CSV_FIELDS` in order."""
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=CSV_FIELDS, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    for rec in map(_csv_row, records):
        w.writerow({k: ("" if rec.get(k) is None else rec.get(k)) for k in CSV_FIELDS})
    return buf.getvalue()


def json_text(comparison: dict[str, Any]) -> str:
    """``comparison.json``: the comparison, indented, NaN refused."""
    return json.dumps(comparison, indent=2, allow_nan=False) + "\n"


# --- Markdown --------------------------------------------------------------------------


def _md_cell(text: str) -> str:
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def _md_table(rows: Sequence[dict[str, Any]], columns, ranked: bool) -> list[str]:
    first = ["#"] if ranked else []
    lines = ["| " + " | ".join(first + [h for _, h, _ in columns]) + " |"]
    kinds = (["int"] if ranked else []) + [c[2] for c in columns]
    lines.append("|" + "|".join("---" if kind == "text" else "---:" for kind in kinds) + "|")
    for r in rows:
        cells = [str(r["rank"])] if ranked else []
        cells += [_md_cell(format_value(kind, r[key])) for key, _, kind in columns]
        if r["rank"] == 1:
            cells = [f"**{c}**" if c else c for c in cells]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def markdown_text(
    rows: Sequence[dict[str, Any]],
    failed: Sequence[dict[str, Any]],
    differences: Sequence[tuple[str, Any, Any]] | None = None,
    profile_name: str | None = None,
) -> str:
    """The results table as Markdown (best in bold), the pipeline checks, the profile's
    differences from ``full`` and the failures; text ending in a newline."""
    ranked = [r for r in rows if not r["pipeline_check"]]
    checks = [r for r in rows if r["pipeline_check"]]
    lines = [f"- {_md_cell(line)}" for line in headline(rows)]
    if lines:
        lines.append("")
    if ranked:
        lines += _md_table(ranked, table_columns(ranked), ranked=True)
        lines.append("")
        lines.append(
            "Sorted by test accuracy (the mean over seeds where there are several); best: "
            f"**{_md_cell(ranked[0]['model'])}**. "
            "Notebook test acc: the original study's figure (its data, 100 px, ImageNet "
            "weights)."
        )
        lines.append("")
        lines.append(STATS_NOTE)
    elif not checks:
        lines.append("No configuration finished successfully.")
    else:
        lines.append("No configuration to rank: every one that finished is a pipeline check.")
    if checks:
        lines.append("")
        lines.append(f"**{CHECK_TITLE} ({len(checks)}, not ranked):** {CHECK_TEXT}")
        lines.append("")
        lines += _md_table(checks, CHECK_COLUMNS, ranked=False)
    if differences:
        lines.append("")
        lines.append(f"**What profile `{_md_cell(str(profile_name))}` changes against `full`:**")
        lines.append("")
        lines.append("| setting | `full` | this run |")
        lines.append("|---|---|---|")
        for key, ref, value in differences:
            lines.append(
                f"| `{_md_cell(key)}` | {_md_cell(setting_text(ref))} | "
                f"{_md_cell(setting_text(value))} |"
            )
    if failed:
        lines.append("")
        lines.append(f"**Failed ({len(failed)}):**")
        lines.append("")
        for f in failed:
            lines.append(f"- `{_md_cell(f['model'])}`: {_md_cell(f['error'])}")
    return "\n".join(lines) + "\n"


# --- the console summary ---------------------------------------------------------------


def summary_table(comparison: dict[str, Any]) -> str:
    """The end-of-run console summary, from a report's ``comparison.json`` data.

    Args:
        comparison: the parsed ``comparison.json`` (``headline``, ``rows``,
            ``pipeline_checks``, ``failed``).

    Returns:
        Plain text ending in a newline: the headline (best, tied, behind), the ranking
        (test accuracy, with its interval and test against the best when the rows have
        them, the notebook's figure, train accuracy, gap, training time), then the
        pipeline checks and the failures, one line each.
    """
    rows = comparison.get("rows") or []
    with_stats = any("test_accuracy_ci" in r for r in rows)
    header = ("#", "configuration", "test acc", "notebook", "train acc", "gap", "time")
    if with_stats:
        header = header[:3] + ("95% interval", "vs best") + header[3:]
    table = [header]
    for r in rows:
        cells = (
            str(r.get("rank")),
            str(r.get("model")),
            format_value("pct", r.get("test_accuracy")),
            format_value("pct", r.get("reference_accuracy")),
            format_value("pct", r.get("train_accuracy")),
            format_value("pp", r.get("gap")),
            format_value("duration", r.get("train_time_s")),
        )
        if with_stats:
            cells = (
                cells[:3]
                + (format_value("ci", r.get("test_accuracy_ci")), str(r.get("significance", "")))
                + cells[3:]
            )
        table.append(cells)
    lines = list(comparison.get("headline") or [])
    lines.append("Ranking by test accuracy (notebook: the original study's test accuracy):")
    if len(table) == 1:
        lines.append("  (no configuration to rank)")
    else:
        widths = [max(len(row[i]) for row in table) for i in range(len(header))]
        for row in table:
            cells = [
                cell.ljust(w) if i == 1 else cell.rjust(w)
                for i, (cell, w) in enumerate(zip(row, widths, strict=True))
            ]
            lines.append("  " + "  ".join(cells).rstrip())
    checks = comparison.get("pipeline_checks") or []
    if checks:
        lines.append(f"{CHECK_TITLE} (not ranked, {len(checks)}):")
        lines.append(
            "  "
            + ", ".join(
                f"{r.get('model')} {format_value('pct', r.get('test_accuracy'))}" for r in checks
            )
        )
    for f in comparison.get("failed") or []:
        lines.append(f"failed: {f.get('model')}: {f.get('error')}")
    return "\n".join(lines) + "\n"


# --- HTML ------------------------------------------------------------------------------


def _png_src(png: bytes):
    """A PNG as a ``data:`` URI, marked safe for the template (base64 needs no escaping)."""
    from markupsafe import Markup

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
    from cnnzoo.tblogs import tensorboard_access

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
    from cnnzoo import plots

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
        rows: from :func:`cnnzoo.report.split_evaluations`.
        failed: from :func:`cnnzoo.report.split_evaluations`.
        context: run information (see :func:`cnnzoo.report.build_report`).
        differences: the run's profile against ``full`` (None: not known).

    Returns:
        The HTML text (plots embedded as base64 PNGs; no external resources).
    """
    import jinja2

    from cnnzoo import __version__, plots

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
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("cnnzoo", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    return env.get_template(TEMPLATE).render(
        title="cnnzoo comparison report"
        + (f" — {context['run_name']}" if context.get("run_name") else ""),
        generated=_dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        version=__version__,
        best=ranked[0] if ranked else None,
        fmt=format_value,
        ranked_count=len(ranked),
        checks_count=len(checks),
        failed=failed,
        run_items=_run_items(context),
        class_counts=_class_counts(context),
        skipped=(context.get("data") or {}).get("skipped"),
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
