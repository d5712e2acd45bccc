"""The report's texts other than the page: Markdown, CSV, JSON and the console summary.

Every format takes the ranked rows and failures of
:func:`cnnzoo.reporting.report.split_evaluations`,
reads the one column list of :mod:`cnnzoo.reporting.columns` and starts with the same
:func:`cnnzoo.reporting.verdict.headline` (best, tied with it, clearly behind). The HTML page is
:mod:`cnnzoo.reporting.html`.
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
from collections.abc import Sequence
from typing import Any

from cnnzoo.reporting.columns import (
    CHECK_COLUMNS,
    CHECK_TEXT,
    CHECK_TITLE,
    CI_KEYS,
    COLUMNS,
    format_value,
    setting_text,
    table_columns,
)
from cnnzoo.reporting.verdict import STATS_NOTE, data_warnings, headline

#: ``comparison.csv``'s columns, in order.
CSV_FIELDS = (
    ["rank", "model", "derived", "status", "strategy", "base"]
    + [
        f
        for k, _, _ in COLUMNS
        if k not in ("model", "strategy", "significance")
        for f in ([f"{k}_low", f"{k}_high"] if k in CI_KEYS else [k])
    ]
    + [
        "vs_best",
        "p_vs_best",
        "p_vs_best_adjusted",
        "repeats",
        "test_accuracy_std",
        "seed_test_accuracies",
    ]
    + ["weights", "pipeline_check", "test_loss", "train_loss", "val_accuracy", "error"]
)


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
            p_vs_best_adjusted=r["p_vs_best_adjusted"],
            derived=r["derived"],
            derived_from=r["evaluation"].derived_from,
            sweep=r["evaluation"].sweep,
            sweep_point=r["evaluation"].sweep_point,
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
    """``text`` as plain Markdown: what the HTML page escapes is escaped here too (a tag,
    an entity), and so are links, code spans and the table's ``|``."""
    text = text.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")
    text = re.sub(r"&(?=[A-Za-z#])", "&amp;", text)  # could start an entity
    text = re.sub(r"<(?=[A-Za-z/!?])", "&lt;", text)  # could start a tag or an autolink
    return re.sub(r"([`\[\]])", r"\\\1", text)


def _md_code(text: str) -> str:
    """``text`` as a Markdown code span (shown literally), fenced past any backticks in it."""
    text = text.replace("\n", " ").replace("|", "\\|")
    fence = "`" * (max((len(m) for m in re.findall(r"`+", text)), default=0) + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{pad}{text}{pad}{fence}"


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
        lines.append(f"**What profile {_md_code(str(profile_name))} changes against `full`:**")
        lines.append("")
        lines.append("| setting | `full` | this run |")
        lines.append("|---|---|---|")
        for key, ref, value in differences:
            lines.append(
                f"| {_md_code(key)} | {_md_cell(setting_text(ref))} | "
                f"{_md_cell(setting_text(value))} |"
            )
    if failed:
        lines.append("")
        lines.append(f"**Failed ({len(failed)}):**")
        lines.append("")
        for f in failed:
            lines.append(f"- {_md_code(f['model'])}: {_md_cell(f['error'])}")
    return "\n".join(lines) + "\n"


def warnings_markdown(context: dict[str, Any]) -> str:
    """The data-quality warnings as a Markdown section ("" when there are none)."""
    found = data_warnings(context)
    if not found:
        return ""
    return "\n## Data warnings\n\n" + "".join(f"- {_md_cell(w)}\n" for w in found)


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
