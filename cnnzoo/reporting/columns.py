"""The results table's one column list, and how a value is written in a cell.

Every format of the report (:mod:`cnnzoo.reporting.render`: Markdown, CSV, JSON, the console;
:mod:`cnnzoo.reporting.html`: the page) and the verdict (:mod:`cnnzoo.reporting.verdict`) read the
columns from :data:`COLUMNS` (with :data:`REPEAT_COLUMNS` when a configuration ran with
several seeds, :func:`table_columns`) and write their cells with :func:`format_value`,
so the formats cannot disagree. The pipeline checks (pretrained configurations that ran
with random weights) have their own columns, title and explanation here too.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from cnnzoo.evaluation.records import finite

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
#: Not in an evaluation: the report adds them (cnnzoo.models.registry, cnnzoo.evaluation.stats).
DERIVED_KEYS = ["reference_accuracy", "test_accuracy_ci", "gap_ci"]
#: The interval columns, written to the CSV as ``<key>_low`` and ``<key>_high``.
CI_KEYS = ("test_accuracy_ci", "gap_ci")
#: Columns of the pipeline-check table (random-weight backbones): no ranking, no reference.
CHECK_COLUMNS: list[tuple[str, str, str]] = [
    c
    for c in COLUMNS
    if c[0] not in ("reference_accuracy", "best_val_accuracy", "gap", "gap_ci", "significance")
]
CHECK_TITLE = "Pipeline check: random weights"
CHECK_TEXT = (
    "these pretrained configurations ran without pretrained weights (the profile's "
    "weights is null), for a few optimizer steps, to prove that their training path runs; "
    "their accuracy is that of an untrained model and measures nothing. Give the profile "
    "a weights file or folder (weights: PATH) to rank them."
)


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


#: Added after the configuration when a row is a profile's variant or sweep point.
DERIVED_COLUMN = ("derived", "derived from", "text")


def derived_text(
    derived_from: str | None,
    sweep: str | None,
    settings: dict[str, Any] | None,
) -> str:
    """What a variant or sweep point is: ``mid: learning_rate=0.0001, epochs=20`` or
    ``simple (sweep simple_lr): learning_rate=0.01``; ``""`` for a registered one."""
    if not derived_from:
        return ""
    head = f"{derived_from} (sweep {sweep})" if sweep else derived_from
    values = ", ".join(f"{k}={setting_text(v)}" for k, v in (settings or {}).items())
    return f"{head}: {values}" if values else head


def table_columns(rows: Sequence[dict[str, Any]]) -> list[tuple[str, str, str]]:
    """The ranked table's columns: :data:`COLUMNS`, plus :data:`REPEAT_COLUMNS` after the
    test accuracy (then headed as the mean) when a configuration ran with several seeds,
    and :data:`DERIVED_COLUMN` after the configuration when a row is a variant or sweep
    point."""
    cols = list(COLUMNS)
    if any(r.get("derived") for r in rows):
        i = [k for k, _, _ in cols].index("model")
        cols.insert(i + 1, DERIVED_COLUMN)
    if any((r.get("repeats") or 1) > 1 for r in rows):
        i = [k for k, _, _ in cols].index("test_accuracy")
        cols[i] = ("test_accuracy", "test acc (mean)", "pct")
        cols[i + 1 : i + 1] = REPEAT_COLUMNS
    return cols


def setting_text(value: Any) -> str:
    """A profile setting as the report shows it (``null``, ``true``, ``0.001``)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)
