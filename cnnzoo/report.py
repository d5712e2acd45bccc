"""The comparison report: which configuration to use, and why.

:func:`build_report` turns the evaluation JSONs of a run (see ``docs/architecture.md``)
into ``report.html`` (one self-contained page: run data, results table, the notebook's
comparison plots, per-model curves and confusion matrices, failures), ``report.md``
(the results table), ``comparison.csv`` and ``comparison.json``.
:func:`find_run_outputs` collects those inputs from a finished run folder so that
``cnnzoo report RUN_DIR`` can rebuild the report.
"""

from __future__ import annotations

import base64
import csv
import datetime as _dt
import html
import io
import json
import math
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cnnzoo.errors import CnnzooError
from cnnzoo.reference import notebook_test_accuracy
from cnnzoo.tblogs import tensorboard_access, tensorboard_markdown

# (key, header, kind): kind selects the formatter; the table, CSV, JSON and Markdown
# all use this one list so they cannot disagree.
COLUMNS: list[tuple[str, str, str]] = [
    ("model", "configuration", "text"),
    ("strategy", "strategy", "text"),
    ("total_params", "total params", "int"),
    ("trainable_params", "trainable params", "int"),
    ("epochs_run", "epochs run", "int"),
    ("best_val_accuracy", "best val acc", "pct"),
    ("train_accuracy", "train acc", "pct"),
    ("test_accuracy", "test acc", "pct"),
    ("reference_accuracy", "notebook test acc", "pct"),
    ("gap", "gap (train − test)", "pp"),
    ("train_time_s", "training time", "duration"),
    ("images_per_s", "images/s", "rate"),
    ("weights_used", "weights used", "text"),
]
NUMERIC_KEYS = [k for k, _, kind in COLUMNS if kind != "text"]
# Not in an evaluation: the report adds them (cnnzoo.reference).
DERIVED_KEYS = ["reference_accuracy"]
EXTRA_KEYS = ["base", "weights", "test_loss", "train_loss", "val_accuracy"]
CSV_FIELDS = (
    ["rank", "model", "status", "strategy", "base"]
    + [k for k, _, _ in COLUMNS if k not in ("model", "strategy")]
    + ["weights", "pipeline_check", "test_loss", "train_loss", "val_accuracy", "error"]
)
#: Columns of the pipeline-check table (random-weight backbones): no ranking, no reference.
CHECK_COLUMNS: list[tuple[str, str, str]] = [
    c for c in COLUMNS if c[0] not in ("reference_accuracy", "best_val_accuracy", "gap")
]

REPORT_FILES = {
    "html": "report.html",
    "markdown": "report.md",
    "csv": "comparison.csv",
    "json": "comparison.json",
}


# --- validation and the comparison rows ------------------------------------------------


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _finite(x: Any) -> bool:
    return _is_number(x) and math.isfinite(x)


def _spec_field(model: str, key: str) -> Any:
    from cnnzoo.models import get_spec

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


def _where(ev: dict[str, Any], index: int) -> str:
    name = ev.get("model") if isinstance(ev, dict) else None
    return f"evaluation #{index + 1}" + (f" ({name})" if isinstance(name, str) else "")


def _check_ok(ev: dict[str, Any], where: str) -> None:
    for key in ("test_accuracy", "train_accuracy", "gap", "total_params", "trainable_params"):
        if key not in ev:
            raise CnnzooError(f"{where}: missing key {key!r}")
    for key in [k for k in NUMERIC_KEYS if k not in DERIVED_KEYS] + [
        "test_loss",
        "train_loss",
        "val_accuracy",
    ]:
        if key in ev and ev[key] is not None and not _is_number(ev[key]):
            raise CnnzooError(f"{where}: {key} must be a number, got {ev[key]!r}")
    classes = ev.get("classes")
    cm = ev.get("confusion_matrix")
    if cm is not None:
        if not isinstance(classes, list) or not classes:
            raise CnnzooError(f"{where}: confusion_matrix given but classes is missing or empty")
        if (
            not isinstance(cm, list)
            or len(cm) != len(classes)
            or any(not isinstance(r, list) or len(r) != len(classes) for r in cm)
            or any(not _is_number(v) for r in cm for v in r)
        ):
            raise CnnzooError(
                f"{where}: confusion_matrix must be {len(classes)}x{len(classes)} numbers "
                "(one row and column per class)"
            )
    if "per_class" in ev and not isinstance(ev["per_class"], dict):
        raise CnnzooError(f"{where}: per_class must be an object (class -> metrics)")
    hist = ev.get("history")
    if hist is not None and (
        not isinstance(hist, list) or any(not isinstance(e, dict) for e in hist)
    ):
        raise CnnzooError(f"{where}: history must be a list of epoch records")


def split_evaluations(
    evaluations: Sequence[dict[str, Any]],
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Validate evaluations and split them into table rows and failures.

    Args:
        evaluations: evaluation dicts in the contract's format (``status`` ok or failed).

    Returns:
        ``(rows, failed)``: rows with the table's columns plus ``rank``, ``base``,
        ``weights``, ``pipeline_check``, the losses and the ``evaluation`` it came from;
        failures as ``{"model", "strategy", "base", "error"}`` in input order. The
        study's rows come first, sorted by test accuracy (best first) and ranked 1, 2,
        ...; then the pipeline checks (``pipeline_check`` true, ``rank`` None): pretrained
        configurations that ran with random weights, which only prove that their path
        runs, in registry order.

    Raises:
        CnnzooError: an evaluation is not an object, lacks a key, has a non-numeric
            value, an unknown status, or two evaluations name the same model.
    """
    rows: list[dict[str, Any]] = []
    failed: list[dict[str, Any]] = []
    seen: set[str] = set()
    for i, ev in enumerate(evaluations):
        where = _where(ev, i)
        if not isinstance(ev, dict):
            raise CnnzooError(f"{where}: must be a JSON object, got {type(ev).__name__}")
        model = ev.get("model")
        if not isinstance(model, str) or not model:
            raise CnnzooError(f"{where}: missing or empty key 'model'")
        if model in seen:
            raise CnnzooError(f"{where}: a second evaluation for model {model!r}")
        seen.add(model)
        strategy = ev.get("strategy") or _spec_field(model, "strategy") or "unknown"
        base = ev.get("base") if "base" in ev else _spec_field(model, "base")
        status = ev.get("status")
        if status == "failed":
            error = ev.get("error")
            failed.append(
                {
                    "model": model,
                    "strategy": strategy,
                    "base": base,
                    "error": str(error) if error else "(no error message recorded)",
                }
            )
            continue
        if status != "ok":
            raise CnnzooError(f"{where}: status must be 'ok' or 'failed', got {status!r}")
        _check_ok(ev, where)
        random_pretrained = bool(base) and ev.get("weights") in (None, "", "random")
        row = {k: ev.get(k) for k in NUMERIC_KEYS}
        row.update(
            reference_accuracy=notebook_test_accuracy(model),
            pipeline_check=random_pretrained,
            model=model,
            strategy=strategy,
            base=base,
            weights=ev.get("weights"),
            weights_used=weights_label(strategy, base, ev.get("weights")),
            random_pretrained=random_pretrained,
            test_loss=ev.get("test_loss"),
            train_loss=ev.get("train_loss"),
            val_accuracy=ev.get("val_accuracy"),
            evaluation=ev,
        )
        rows.append(row)
    ranked = [r for r in rows if not r["pipeline_check"]]
    ranked.sort(key=lambda r: -r["test_accuracy"] if _finite(r["test_accuracy"]) else math.inf)
    for rank, row in enumerate(ranked, 1):
        row["rank"] = rank
    checks = sorted(
        (r for r in rows if r["pipeline_check"]), key=lambda r: _registry_order(r["model"])
    )
    for row in checks:
        row["rank"] = None
    return ranked + checks, failed


# --- formatting ------------------------------------------------------------------------


def format_value(kind: str, value: Any) -> str:
    """Format one table cell (the HTML and Markdown tables use the same text).

    Args:
        kind: ``text``, ``int``, ``pct`` (fraction shown as percent), ``pp`` (fraction
            difference shown as signed percentage points), ``duration`` (seconds),
            ``rate``.
        value: the raw value; None or non-finite numbers show as ``n/a``.

    Returns:
        The cell text.
    """
    if kind == "text":
        return "" if value is None else str(value)
    if not _finite(value):
        return "n/a"
    if kind == "int":
        return f"{int(value):,}"
    if kind == "pct":
        return f"{100 * value:.2f}%"
    if kind == "pp":
        return f"{100 * value:+.2f} pp"
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


def _json_number(x: Any) -> Any:
    return x if not _is_number(x) or math.isfinite(x) else None


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
            }
        )
    return out


def _csv_text(records: Sequence[dict[str, Any]]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=CSV_FIELDS, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    for rec in records:
        w.writerow({k: ("" if rec.get(k) is None else rec.get(k)) for k in CSV_FIELDS})
    return buf.getvalue()


def _md_cell(text: str) -> str:
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def markdown_table(evaluations: Sequence[dict[str, Any]]) -> str:
    """The results table as Markdown (best configuration in bold), failures listed below.

    Args:
        evaluations: evaluation dicts in the contract's format.

    Returns:
        Markdown text ending in a newline.

    Raises:
        CnnzooError: as :func:`split_evaluations`.
    """
    rows, failed = split_evaluations(evaluations)
    return _markdown(rows, failed)


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


def _markdown(
    rows: Sequence[dict[str, Any]],
    failed: Sequence[dict[str, Any]],
    differences: Sequence[tuple[str, Any, Any]] | None = None,
    profile_name: str | None = None,
) -> str:
    ranked = [r for r in rows if not r["pipeline_check"]]
    checks = [r for r in rows if r["pipeline_check"]]
    lines = []
    if ranked:
        lines += _md_table(ranked, COLUMNS, ranked=True)
        lines.append("")
        lines.append(
            f"Sorted by test accuracy; best: **{_md_cell(ranked[0]['model'])}**. "
            "Notebook test acc: the original study's figure (its data, 100 px, ImageNet "
            "weights)."
        )
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
                f"| `{_md_cell(key)}` | {_md_cell(_setting(ref))} | {_md_cell(_setting(value))} |"
            )
    if failed:
        lines.append("")
        lines.append(f"**Failed ({len(failed)}):**")
        lines.append("")
        for f in failed:
            lines.append(f"- `{_md_cell(f['model'])}`: {_md_cell(f['error'])}")
    return "\n".join(lines) + "\n"


CHECK_TITLE = "Pipeline check: random weights"
CHECK_TEXT = (
    "these pretrained configurations ran without pretrained weights (the profile's "
    "weights is null), for a few optimizer steps, to prove that their training path runs; "
    "their accuracy is that of an untrained model and measures nothing. Give the profile "
    "a weights file or folder (weights: PATH) to rank them."
)


def _setting(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


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
    from cnnzoo.config import load_profile

    profile = context.get("profile")
    if not isinstance(profile, dict):
        return None
    try:
        full = load_profile("full").to_dict()
    except CnnzooError:
        return None
    return profile_differences(profile, full)


def summary_table(comparison: dict[str, Any]) -> str:
    """The end-of-run console summary, from a report's ``comparison.json`` data.

    Args:
        comparison: the parsed ``comparison.json`` (``rows``, ``pipeline_checks``,
            ``failed``).

    Returns:
        Plain text ending in a newline: the ranking (test accuracy, the notebook's
        figure, train accuracy, gap, training time), then the pipeline checks and the
        failures, one line each.
    """
    header = ("#", "configuration", "test acc", "notebook", "train acc", "gap", "time")
    table = [header]
    for r in comparison.get("rows") or []:
        table.append(
            (
                str(r.get("rank")),
                str(r.get("model")),
                format_value("pct", r.get("test_accuracy")),
                format_value("pct", r.get("reference_accuracy")),
                format_value("pct", r.get("train_accuracy")),
                format_value("pp", r.get("gap")),
                format_value("duration", r.get("train_time_s")),
            )
        )
    lines = ["Ranking by test accuracy (notebook: the original study's test accuracy):"]
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

_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:2em auto;
max-width:1300px;padding:0 1em;color:#222;line-height:1.4}
h1{margin-bottom:.2em} h2{border-bottom:2px solid #ddd;padding-bottom:.2em;margin-top:2em}
h3{margin-top:1.6em} .muted{color:#666} .summary{font-size:1.1em}
table{border-collapse:collapse;margin:.5em 0;font-size:.92em}
th,td{border:1px solid #ccc;padding:.3em .55em;text-align:left;vertical-align:top}
th{background:#f2f2f2} td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
tr.best td{background:#fff3b0;font-weight:600}
.warn{color:#a14600;font-weight:600} .failed td{background:#fde8e8}
img.plot{max-width:100%;height:auto;display:block;margin:.5em 0;border:1px solid #eee}
.model{border-top:1px solid #ddd;margin-top:1.5em}
.pair{display:flex;flex-wrap:wrap;gap:1.5em;align-items:flex-start}
pre{background:#f7f7f7;padding:.6em;overflow:auto;font-size:.85em;white-space:pre-wrap}
code{background:#f3f3f3;padding:0 .2em}
.wide{overflow-x:auto;max-width:100%}
"""


def _e(x: Any) -> str:
    return html.escape("" if x is None else str(x), quote=True)


def _img(png: bytes, alt: str, plot_id: str) -> str:
    data = base64.b64encode(png).decode("ascii")
    return (
        f'<img class="plot" id="{_e(plot_id)}" alt="{_e(alt)}" src="data:image/png;base64,{data}">'
    )


def _anchor(model: str) -> str:
    return "model-" + re.sub(r"[^A-Za-z0-9_-]", "-", model)


def _kv_table(items: Sequence[tuple[str, Any]], table_id: str) -> str:
    body = "".join(f"<tr><th>{_e(k)}</th><td>{v}</td></tr>" for k, v in items)
    return f'<table id="{_e(table_id)}">{body}</table>'


def _run_section(context: dict[str, Any]) -> str:
    parts = ['<section id="run"><h2>Run</h2>']
    data = context.get("data") or {}
    split = context.get("split") or {}
    profile = context.get("profile") or {}
    items: list[tuple[str, Any]] = []
    if context.get("run_name"):
        items.append(("run", _e(context["run_name"])))
    source = context.get("data_uri") or data.get("source")
    items.append(("data source", _e(source) if source else '<span class="muted">unknown</span>'))
    classes = data.get("classes") or split.get("classes") or []
    if classes:
        items.append((f"classes ({len(classes)})", _e(", ".join(map(str, classes)))))
    seed = context.get("seed", profile.get("seed", split.get("seed")))
    items.append(("seed", _e(seed) if seed is not None else '<span class="muted">unknown</span>'))
    if profile:
        items.append(
            (
                "profile",
                _e(
                    f"{profile.get('name', '?')}: {profile.get('img_size', '?')} px, "
                    f"batch {profile.get('batch_size', '?')}, "
                    f"precision {profile.get('precision', '?')}, "
                    f"max epochs {profile.get('max_epochs') or 'per schedule'}, "
                    f"weights {profile.get('weights') or 'random'}"
                ),
            )
        )
    if split:
        counts = ", ".join(
            f"{k} {v.get('count', '?')}" for k, v in (split.get("splits") or {}).items()
        )
        items.append(
            (
                "split",
                _e(
                    f"{counts} at {split.get('img_size', '?')} px "
                    f"(val {split.get('val_fraction', '?')}, test "
                    f"{split.get('test_fraction', '?')}, test from "
                    f"{split.get('test_source') or 'the training images'})"
                ),
            )
        )
    for label, text, command in tensorboard_access(context):
        items.append((label, _e(text) + (f" <code>{_e(command)}</code>" if command else "")))
    parts.append(_kv_table(items, "run-info"))

    counts = data.get("counts") or {}
    if counts and classes:
        split_names = list(counts)
        head = "".join(f"<th>{_e(s)} images</th>" for s in split_names)
        body = ""
        for c in classes:
            cells = "".join(f'<td class="num">{_e(counts[s].get(c, 0))}</td>' for s in split_names)
            body += f"<tr><td>{_e(c)}</td>{cells}</tr>"
        totals = "".join(f'<td class="num">{_e(sum(counts[s].values()))}</td>' for s in split_names)
        body += f"<tr><th>total</th>{totals}</tr>"
        parts.append(
            f'<h3>Images per class (ingested)</h3><table id="class-counts"><tr><th>class</th>'
            f"{head}</tr>{body}</table>"
        )
    skipped = data.get("skipped")
    if skipped is not None:
        if skipped:
            lis = "".join(
                f"<li><code>{_e(s.get('path'))}</code>: {_e(s.get('reason'))}</li>" for s in skipped
            )
            parts.append(
                f'<p id="skipped" class="warn">{len(skipped)} source file(s) skipped '
                f"(not decodable as images):</p><details><summary>show</summary><ul>{lis}"
                "</ul></details>"
            )
        else:
            parts.append('<p id="skipped">No source files were skipped.</p>')
    if profile:
        parts.append(
            "<details><summary>Full resolved profile</summary><pre>"
            + _e(json.dumps(profile, indent=2, default=str))
            + "</pre></details>"
        )
    parts.append("</section>")
    return "".join(parts)


def _results_table(
    rows: Sequence[dict[str, Any]], columns=COLUMNS, table_id: str = "results"
) -> str:
    ranked = columns is COLUMNS
    head = ("<th>#</th>" if ranked else "") + "".join(
        f'<th data-key="{k}">{_e(h)}</th>' for k, h, _ in columns
    )
    body = []
    for r in rows:
        cells = (
            [f'<td class="num" data-key="rank" data-value="{r["rank"]}">{r["rank"]}</td>']
            if ranked
            else []
        )
        for key, _, kind in columns:
            text = _e(format_value(kind, r[key]))
            if key == "model":
                text = f'<a href="#{_anchor(r["model"])}">{text}</a>'
            if key == "weights_used" and r["random_pretrained"]:
                text = f'<span class="warn">{text}</span>'
            cls = "" if kind == "text" else ' class="num"'
            raw = r[key]
            value = "" if raw is None else (repr(raw) if _is_number(raw) else str(raw))
            cells.append(f'<td{cls} data-key="{key}" data-value="{_e(value)}">{text}</td>')
        tr_cls = ' class="best"' if r["rank"] == 1 else ""
        body.append(f'<tr{tr_cls} data-model="{_e(r["model"])}">{"".join(cells)}</tr>')
    return (
        f'<div class="wide"><table id="{table_id}"><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(body)}</tbody></table></div>"
    )


def _checks_section(checks: Sequence[dict[str, Any]]) -> str:
    if not checks:
        return ""
    return (
        f'<section id="pipeline-checks-section"><h2>{_e(CHECK_TITLE)} ({len(checks)})</h2>'
        f"<p>Not ranked: {_e(CHECK_TEXT)}</p>"
        + _results_table(checks, CHECK_COLUMNS, "pipeline-checks")
        + "</section>"
    )


def _differences_section(
    differences: Sequence[tuple[str, Any, Any]] | None, profile_name: Any
) -> str:
    if differences is None:
        return ""
    parts = [f'<section id="profile-differences"><h2>Profile {_e(profile_name)} vs full</h2>']
    if not differences:
        parts.append("<p>This run used the notebook's settings (<code>full</code>) unchanged.</p>")
    else:
        parts.append(
            f"<p>What this run's profile (<code>{_e(profile_name)}</code>) changes against "
            "<code>full</code>, the notebook's study; the notebook test accuracies in the "
            "table above were measured with <code>full</code> on the notebook's data.</p>"
        )
        body = "".join(
            f"<tr><td><code>{_e(k)}</code></td><td>{_e(_setting(a))}</td>"
            f"<td>{_e(_setting(b))}</td></tr>"
            for k, a, b in differences
        )
        parts.append(
            '<table id="differences"><tr><th>setting</th><th><code>full</code></th>'
            f"<th>this run</th></tr>{body}</table>"
        )
    parts.append("</section>")
    return "".join(parts)


def _per_class_table(model: str, ev: dict[str, Any]) -> str:
    per_class = ev.get("per_class")
    if not per_class:
        return '<p class="muted">No per-class metrics recorded.</p>'
    classes = ev.get("classes") or list(per_class)
    body = ""
    for c in classes:
        m = per_class.get(c) or {}
        body += (
            f"<tr><td>{_e(c)}</td>"
            + "".join(
                f'<td class="num">{_e(format_value("pct", m.get(k)))}</td>'
                for k in ("precision", "recall", "f1")
            )
            + f'<td class="num">{_e(format_value("int", m.get("support")))}</td></tr>'
        )
    return (
        f'<table class="per-class" id="per-class-{_e(_anchor(model))}"><tr><th>class</th>'
        "<th>precision</th><th>recall</th><th>F1</th><th>support</th></tr>"
        f"{body}</table>"
    )


def _model_section(row: dict[str, Any]) -> str:
    from cnnzoo import plots

    ev = row["evaluation"]
    model = row["model"]
    anchor = _anchor(model)
    summary = (
        f"{_e(row['strategy'])}"
        + (f", base {_e(row['base'])}" if row["base"] else "")
        + f", weights: {_e(row['weights_used'])}; test accuracy "
        f"{_e(format_value('pct', row['test_accuracy']))}, test loss "
        f"{_e(format_value('text', _fmt_loss(row['test_loss'])))}, "
        f"{_e(format_value('int', row['epochs_run']))} epochs"
    )
    title = (
        f"{_e(model)} ({_e(CHECK_TITLE.lower())})"
        if row["pipeline_check"]
        else f"{row['rank']}. {_e(model)}"
    )
    parts = [f'<div class="model" id="{anchor}"><h3>{title}</h3>']
    parts.append(f"<p>{summary}</p>")
    history = ev.get("history") or []
    if history:
        parts.append(
            _img(
                plots.training_curves(model, history),
                f"{model}: training curves (loss, accuracy, learning rate)",
                f"curves-{anchor}",
            )
        )
    else:
        parts.append('<p class="muted">No per-epoch history recorded.</p>')
    parts.append('<div class="pair">')
    if ev.get("confusion_matrix") is not None:
        parts.append(
            _img(
                plots.confusion_matrix(model, ev["classes"], ev["confusion_matrix"]),
                f"{model}: confusion matrix",
                f"cm-{anchor}",
            )
        )
    else:
        parts.append('<p class="muted">No confusion matrix recorded.</p>')
    parts.append(_per_class_table(model, ev))
    parts.append("</div></div>")
    return "".join(parts)


def _fmt_loss(x: Any) -> str:
    return f"{x:.4f}" if _finite(x) else "n/a"


def _failed_section(failed: Sequence[dict[str, Any]]) -> str:
    if not failed:
        return (
            '<section id="failed"><h2>Failed configurations</h2>'
            "<p>None: every configuration finished.</p></section>"
        )
    body = "".join(
        f'<tr class="failed" data-model="{_e(f["model"])}"><td>{_e(f["model"])}</td>'
        f"<td>{_e(f['strategy'])}</td><td>{_e(f['base'] or '')}</td>"
        f"<td><pre>{_e(f['error'])}</pre></td></tr>"
        for f in failed
    )
    return (
        f'<section id="failed"><h2>Failed configurations ({len(failed)})</h2>'
        '<table id="failed-table"><tr><th>configuration</th><th>strategy</th><th>base</th>'
        f"<th>error</th></tr>{body}</table></section>"
    )


def render_html(
    rows: Sequence[dict[str, Any]],
    failed: Sequence[dict[str, Any]],
    context: dict[str, Any] | None = None,
) -> str:
    """The whole self-contained report page.

    Args:
        rows: from :func:`split_evaluations`.
        failed: from :func:`split_evaluations`.
        context: run information (see :func:`build_report`).

    Returns:
        The HTML text (plots embedded as base64 PNGs; no external resources).
    """
    from cnnzoo import __version__, plots

    context = context or {}
    title = "cnnzoo comparison report" + (
        f" — {context['run_name']}" if context.get("run_name") else ""
    )
    now = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    out = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{_e(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{_e(title)}</h1>",
        f'<p class="muted">Generated {now} by cnnzoo {_e(__version__)}.</p>',
    ]
    ranked = [r for r in rows if not r["pipeline_check"]]
    checks = [r for r in rows if r["pipeline_check"]]
    if ranked:
        best = ranked[0]
        out.append(
            f'<p class="summary" id="summary">Best configuration: <strong>{_e(best["model"])}'
            f"</strong> with test accuracy {_e(format_value('pct', best['test_accuracy']))} "
            f"(train {_e(format_value('pct', best['train_accuracy']))}, gap "
            f"{_e(format_value('pp', best['gap']))}). {len(ranked)} configuration(s) compared"
            + (
                f', <a href="#pipeline-checks-section">{len(checks)} pipeline check(s)</a>'
                if checks
                else ""
            )
            + (f', <a href="#failed">{len(failed)} failed</a>' if failed else "")
            + ".</p>"
        )
    elif checks:
        out.append(
            '<p class="summary warn" id="summary">No configuration to rank: '
            f'<a href="#pipeline-checks-section">{len(checks)} pipeline check(s)</a> only.</p>'
        )
    else:
        out.append('<p class="summary warn" id="summary">No configuration finished.</p>')
    if checks:
        out.append(
            f'<p class="warn">{len(checks)} pretrained configuration(s) ran with random weights '
            "(not ImageNet) as a pipeline check: they are listed apart and not ranked.</p>"
        )
    out.append(_run_section(context))
    out.append('<section id="results-section"><h2>Results</h2>')
    if ranked:
        out.append(
            "<p>One row per configuration, sorted by test accuracy; the best is highlighted. "
            "Gap = train accuracy − test accuracy (overfitting). Images/s is training "
            "throughput. Notebook test acc is the original study's figure (its data, "
            "100 px, ImageNet weights, the <code>full</code> schedules).</p>"
        )
        out.append(_results_table(ranked))
    else:
        out.append("<p>No results.</p>")
    out.append("</section>")
    out.append(_checks_section(checks))
    out.append(
        _differences_section(
            _differences_from_full(context), (context.get("profile") or {}).get("name")
        )
    )
    if ranked:
        out.append('<section id="comparison"><h2>Comparison</h2>')
        out.append(
            _img(plots.bar_chart_test_accuracy(ranked), "test accuracy per configuration", "bars")
        )
        out.append(
            _img(
                plots.accuracy_vs_params(ranked),
                "train and test accuracy vs trainable parameters",
                "acc-vs-params",
            )
        )
        out.append(
            _img(plots.gap_vs_params(ranked), "overfitting gap vs trainable parameters", "gap")
        )
        out.append("</section>")
    if rows:
        out.append('<section id="models"><h2>Per configuration</h2>')
        out.extend(_model_section(r) for r in rows)
        out.append("</section>")
    out.append(_failed_section(failed))
    out.append("</body></html>\n")
    return "\n".join(out)


def build_report(
    evaluations: Sequence[dict[str, Any]],
    out_dir: str | os.PathLike,
    context: dict[str, Any] | None = None,
) -> dict[str, str]:
    """Write the comparison report of a run.

    Everything is rendered in memory first and then written file by file atomically,
    so bad input leaves ``out_dir`` untouched and no file is ever half written.

    Args:
        evaluations: evaluation dicts (``docs/architecture.md``), ok and failed.
        out_dir: folder to write into (created if missing).
        context: optional run information: ``data`` (ingest manifest), ``split``
            (split.json), ``profile`` (``Profile.to_dict()``), ``seed``, ``data_uri``,
            ``run_name``, ``tensorboard_root``, ``tensorboard_cr`` (see
            :func:`cnnzoo.tblogs.tensorboard_access`).

    Returns:
        Paths written: ``{"html", "markdown", "csv", "json"}``, plus ``best``: the
        best configuration's name (or None).

    Raises:
        CnnzooError: no evaluations, or an invalid one (message names which and why).
    """
    from cnnzoo.fsutil import atomic_write_bytes

    if not evaluations:
        raise CnnzooError("report: no evaluations given (nothing to compare)")
    if context is not None and not isinstance(context, dict):
        raise CnnzooError(f"report: context must be a dict, got {type(context).__name__}")
    rows, failed = split_evaluations(evaluations)
    records = comparison_records(rows, failed)
    ranked = [r for r in records if r["status"] == "ok" and not r["pipeline_check"]]
    differences = _differences_from_full(context or {})
    profile_name = ((context or {}).get("profile") or {}).get("name")
    comparison = {
        "best": ranked[0]["model"] if ranked else None,
        "sorted_by": "test_accuracy",
        "columns": [{"key": k, "header": h, "kind": kind} for k, h, kind in COLUMNS],
        "rows": ranked,
        "pipeline_checks": [r for r in records if r["status"] == "ok" and r["pipeline_check"]],
        "failed": [r for r in records if r["status"] == "failed"],
        "profile": profile_name,
        "profile_vs_full": [
            {"key": k, "full": a, "this_run": b} for k, a, b in (differences or [])
        ],
    }
    texts = {
        "html": render_html(rows, failed, context),
        "markdown": _markdown(rows, failed, differences, profile_name)
        + tensorboard_markdown(context or {}),
        "csv": _csv_text(records),
        "json": json.dumps(comparison, indent=2, allow_nan=False) + "\n",
    }
    out = Path(out_dir)
    paths: dict[str, str] = {}
    for key, name in REPORT_FILES.items():
        atomic_write_bytes(out / name, texts[key].encode("utf-8"))
        paths[key] = str(out / name)
    paths["best"] = comparison["best"]
    return paths


# --- finding a finished run's outputs --------------------------------------------------

_MAX_JSON_BYTES = 64 * 1024 * 1024


@dataclass
class RunOutputs:
    """What :func:`find_run_outputs` found in a run folder."""

    evaluations: list[dict[str, Any]] = field(default_factory=list)
    context: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def _load_json_candidate(path: Path) -> Any:
    """Parse ``path`` if it looks like JSON (``*.json`` or an extension-less KFP artifact)."""
    if path.suffix not in (".json", ""):
        return None
    try:
        if path.stat().st_size > _MAX_JSON_BYTES:
            return None
        with path.open("rb") as f:
            head = f.read(64).lstrip()
            if not head.startswith(b"{"):
                return None
            raw = head + f.read()
        return json.loads(raw.decode("utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None


def _is_evaluation(obj: Any) -> bool:
    return (
        isinstance(obj, dict)
        and "model" in obj
        and "status" in obj
        and "epochs" not in obj  # history.json has "model" and "status" too
        and ("strategy" in obj or "test_accuracy" in obj)
    )


def _is_failed_history(obj: Any) -> bool:
    return (
        isinstance(obj, dict)
        and isinstance(obj.get("model"), str)
        and obj.get("status") == "failed"
        and "strategy" not in obj
    )


def find_run_outputs(run_dir: str | os.PathLike, exclude: str | os.PathLike | None = None):
    """Collect the evaluations and run information of a finished run.

    Looks recursively for evaluation JSONs (objects with ``model``, ``status`` and
    ``strategy``/``test_accuracy``; ``*.json`` files or extension-less KFP artifacts),
    the ingest ``manifest.json``, ``split.json`` and a model's ``config.yaml`` (for
    the profile), and ``run.json`` (``cnnzoo run``'s record: data URI, seed). A failed
    training's ``history.json`` counts as a failed evaluation when that model has no
    evaluation. If a model has several evaluations, the newest file wins and a note
    says so.

    Args:
        run_dir: a local run folder (``runs/<timestamp>``), a KFP local-runner outputs
            folder, or downloaded artifacts.
        exclude: a folder to skip (the report's own output folder).

    Returns:
        A :class:`RunOutputs`.

    Raises:
        CnnzooError: ``run_dir`` is not a folder, or holds no evaluation.
    """
    import yaml

    root = Path(run_dir)
    if not root.is_dir():
        raise CnnzooError(f"{root}: not a folder (expected a finished run's output folder)")
    root = root.resolve()
    skip = Path(exclude).resolve() if exclude else None
    found: dict[str, list[tuple[float, Path, dict]]] = {}
    failed_histories: dict[str, tuple[Path, dict]] = {}
    out = RunOutputs()
    ctx = out.context
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        if skip is not None and (here == skip or skip in here.parents):
            dirnames[:] = []
            continue
        dirnames[:] = sorted(d for d in dirnames if d not in ("images", "logs", "tensorboard"))
        for name in sorted(filenames):
            path = here / name
            if name == "config.yaml" and "profile" not in ctx:
                try:
                    cfg = yaml.safe_load(path.read_text(encoding="utf-8"))
                except (OSError, yaml.YAMLError):
                    cfg = None
                if isinstance(cfg, dict) and isinstance(cfg.get("profile"), dict):
                    ctx["profile"] = cfg["profile"]
                continue
            obj = _load_json_candidate(path)
            if not isinstance(obj, dict):
                continue
            if _is_evaluation(obj):
                found.setdefault(str(obj["model"]), []).append((path.stat().st_mtime, path, obj))
            elif _is_failed_history(obj):
                failed_histories.setdefault(obj["model"], (path, obj))
            elif {"classes", "counts", "skipped"} <= obj.keys() and "data" not in ctx:
                ctx["data"] = obj
            elif {"splits", "img_size", "classes"} <= obj.keys() and "split" not in ctx:
                ctx["split"] = obj
    for model in sorted(found):
        cands = sorted(found[model], key=lambda t: (t[0], str(t[1])))
        if len(cands) > 1:
            out.notes.append(
                f"{len(cands)} evaluations of {model}; using the newest, {cands[-1][1]}"
            )
        out.evaluations.append(cands[-1][2])
    for model, (path, hist) in sorted(failed_histories.items()):
        if model not in found:
            out.evaluations.append(
                {
                    "model": model,
                    "strategy": _spec_field(model, "strategy"),
                    "base": _spec_field(model, "base"),
                    "status": "failed",
                    "error": hist.get("error") or f"training failed (see {path})",
                }
            )
    if not out.evaluations:
        raise CnnzooError(
            f"{root}: no evaluation JSON found (files with 'model', 'status' and "
            "'strategy' keys, as written by 'cnnzoo evaluate')"
        )
    out.evaluations.sort(key=lambda e: _registry_order(e["model"]))
    if "data" in ctx:
        ctx["data_uri"] = ctx["data"].get("source")
    if "profile" in ctx:
        ctx["seed"] = ctx["profile"].get("seed")
    elif "split" in ctx:
        ctx["seed"] = ctx["split"].get("seed")
    ctx["run_name"] = root.name
    run_record = _load_json_candidate(root / "run.json")  # written by `cnnzoo run`
    args = run_record.get("arguments") if isinstance(run_record, dict) else None
    if isinstance(args, dict):
        if args.get("data_uri"):
            ctx["data_uri"] = args["data_uri"]
        if args.get("seed") is not None:
            ctx["seed"] = args["seed"]
    tb = root / "tensorboard"
    if tb.is_dir():
        ctx["tensorboard_root"] = str(tb)
    return out


def _registry_order(model: str) -> tuple[int, str]:
    from cnnzoo.models import list_models

    names = list_models()
    return (names.index(model) if model in names else len(names), model)


def report_run(run_dir: str | os.PathLike, out_dir: str | os.PathLike | None = None):
    """Rebuild the report of a finished run (what ``cnnzoo report`` does).

    Args:
        run_dir: the run's output folder (see :func:`find_run_outputs`).
        out_dir: where to write; default ``RUN_DIR/report``.

    Returns:
        ``(paths, notes)``: :func:`build_report`'s paths and the finder's notes.

    Raises:
        CnnzooError: as :func:`find_run_outputs` and :func:`build_report`.
    """
    out_dir = Path(out_dir) if out_dir else Path(run_dir) / "report"
    found = find_run_outputs(run_dir, exclude=out_dir)
    paths = build_report(found.evaluations, out_dir, found.context)
    return paths, found.notes
