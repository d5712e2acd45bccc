"""The comparison report's plots, rendered with matplotlib (Agg) to PNG bytes.

Every function builds its own ``matplotlib.figure.Figure`` (no pyplot global state),
so plots can be made from any thread and nothing needs a display. The report embeds
the returned bytes as base64 ``data:`` URIs.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from typing import Any

from cnnzoo.evaluation.records import finite

STRATEGY_COLORS = {
    "scratch": "#1f77b4",
    "augment": "#17becf",
    "transfer": "#2ca02c",
    "finetune": "#d62728",
    "partial": "#9467bd",
}
_OTHER_COLOR = "#7f7f7f"
_DPI = 90


def _figure(width: float, height: float, ncols: int = 1):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=_DPI, layout="constrained")
    axes = fig.subplots(1, ncols)
    return fig, axes


def _png(fig) -> bytes:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=_DPI)
    return buf.getvalue()


def _color(strategy: str | None) -> str:
    return STRATEGY_COLORS.get(strategy or "", _OTHER_COLOR)


def _strategy_legend(ax, strategies: Sequence[str]) -> None:
    from matplotlib.patches import Patch

    seen = [s for s in STRATEGY_COLORS if s in strategies]
    seen += sorted({s for s in strategies if s not in STRATEGY_COLORS})
    ax.legend(
        handles=[Patch(color=_color(s), label=s) for s in seen],
        title="strategy",
        fontsize=8,
        title_fontsize=8,
        loc="best",
    )


def bar_chart_test_accuracy(rows: Sequence[dict[str, Any]]) -> bytes:
    """Horizontal bar chart of test accuracy per configuration, best at the top.

    Args:
        rows: comparison rows (``model``, ``strategy``, ``test_accuracy``, optionally
            ``reference_accuracy``, drawn as a tick, ``test_accuracy_ci`` ``[low,
            high]``, drawn as an error bar, and ``seeds`` (``[{"test_accuracy"}]``),
            drawn as one dot per seed when there are several), best first.

    Returns:
        PNG bytes.
    """
    rows = [r for r in rows if finite(r["test_accuracy"])]
    fig, ax = _figure(8, 0.35 * max(len(rows), 3) + 1.2)
    rows = rows[::-1]
    names = [r["model"] for r in rows]
    values = [100 * r["test_accuracy"] for r in rows]
    colors = [_color(r["strategy"]) for r in rows]
    bars = ax.barh(names, values, color=colors)
    cis = [_interval(r.get("test_accuracy_ci")) for r in rows]
    if any(ci is not None for ci in cis):  # the 95% interval as an error bar
        lo = [v - 100 * ci[0] if ci else 0 for v, ci in zip(values, cis, strict=True)]
        hi = [100 * ci[1] - v if ci else 0 for v, ci in zip(values, cis, strict=True)]
        ax.errorbar(
            values,
            range(len(rows)),
            xerr=[lo, hi],
            fmt="none",
            ecolor="#333333",
            elinewidth=1.2,
            capsize=3,
            zorder=3,
        )
    per_seed = False
    for i, r in enumerate(rows):  # one dot per seed
        seeds = [s["test_accuracy"] for s in r.get("seeds") or [] if finite(s.get("test_accuracy"))]
        if len(seeds) > 1:
            per_seed = True
            ax.scatter(
                [100 * v for v in seeds],
                [i] * len(seeds),
                s=14,
                color="white",
                edgecolors="black",
                linewidths=0.8,
                zorder=4,
            )
    for bar, v, ci in zip(bars, values, cis, strict=True):
        end = 100 * ci[1] if ci else bar.get_width()
        ax.text(end + 0.8, bar.get_y() + bar.get_height() / 2, f"{v:.2f}%", va="center", fontsize=8)
    refs = [r.get("reference_accuracy") for r in rows]
    marked = [(i, 100 * v) for i, v in enumerate(refs) if finite(v)]
    if marked:  # the original study's figure, as a tick across each bar
        ax.scatter(
            [v for _, v in marked],
            [i for i, _ in marked],
            marker="|",
            s=250,
            linewidths=2,
            color="black",
            zorder=3,
            label="notebook",
        )
    ax.set_xlim(0, 115)
    ax.set_xlabel(
        (
            "test accuracy (%, mean over seeds; white dots: each seed)"
            if per_seed
            else "test accuracy (%)"
        )
        + "; error bar: 95% interval; black tick: the notebook's"
    )
    ax.set_title("Test accuracy per configuration")
    ax.tick_params(axis="y", labelsize=9)
    ax.grid(axis="x", alpha=0.3)
    _strategy_legend(ax, [r["strategy"] for r in rows])
    return _png(fig)


def _interval(ci: Any) -> tuple[float, float] | None:
    if isinstance(ci, (list, tuple)) and len(ci) == 2 and all(finite(v) for v in ci):
        return float(ci[0]), float(ci[1])
    return None


def _params_axes(ax, rows) -> None:
    ax.set_xscale("log")
    ax.set_xlabel("trainable parameters (log scale)")
    ax.grid(True, which="both", alpha=0.3)
    for r in rows:
        ax.annotate(
            r["model"],
            (r["trainable_params"], r["_y"]),
            textcoords="offset points",
            xytext=(4, 3),
            fontsize=7,
        )


def accuracy_vs_params(rows: Sequence[dict[str, Any]]) -> bytes:
    """Train and test accuracy against trainable parameters (log x), one point pair per model.

    Args:
        rows: comparison rows with ``trainable_params``, ``train_accuracy``, ``test_accuracy``.

    Returns:
        PNG bytes.
    """
    rows = [
        r
        for r in rows
        if finite(r["trainable_params"])
        and r["trainable_params"] > 0
        and finite(r["train_accuracy"])
        and finite(r["test_accuracy"])
    ]
    fig, ax = _figure(8, 5)
    xs = [r["trainable_params"] for r in rows]
    for r in rows:
        ax.plot(
            [r["trainable_params"]] * 2,
            [100 * r["train_accuracy"], 100 * r["test_accuracy"]],
            color="#cccccc",
            lw=1,
            zorder=1,
        )
    ax.scatter(xs, [100 * r["train_accuracy"] for r in rows], marker="^", label="train", zorder=2)
    ax.scatter(xs, [100 * r["test_accuracy"] for r in rows], marker="o", label="test", zorder=2)
    _params_axes(ax, [dict(r, _y=100 * r["test_accuracy"]) for r in rows])
    ax.set_ylabel("accuracy (%)")
    ax.set_title("Train and test accuracy vs trainable parameters")
    ax.legend(fontsize=8)
    return _png(fig)


def gap_vs_params(rows: Sequence[dict[str, Any]]) -> bytes:
    """Train-test accuracy gap (overfitting) against trainable parameters (log x).

    Args:
        rows: comparison rows with ``trainable_params``, ``gap`` and ``strategy``.

    Returns:
        PNG bytes.
    """
    rows = [
        r
        for r in rows
        if finite(r["trainable_params"]) and r["trainable_params"] > 0 and finite(r["gap"])
    ]
    fig, ax = _figure(8, 5)
    ax.axhline(0, color="black", lw=0.8)
    ax.scatter(
        [r["trainable_params"] for r in rows],
        [100 * r["gap"] for r in rows],
        c=[_color(r["strategy"]) for r in rows],
        zorder=2,
    )
    _params_axes(ax, [dict(r, _y=100 * r["gap"]) for r in rows])
    ax.set_ylabel("train − test accuracy (percentage points)")
    ax.set_title("Overfitting gap vs trainable parameters")
    _strategy_legend(ax, [r["strategy"] for r in rows])
    return _png(fig)


def _series(epochs: Sequence[dict[str, Any]], key: str) -> list[float]:
    return [float(e[key]) if finite(e.get(key)) else math.nan for e in epochs]


def epoch_markers(epochs: Sequence[dict[str, Any]]) -> tuple[list[float], list[float]]:
    """Where the learning rate dropped and where a new stage began.

    Args:
        epochs: a history's epoch records (``learning_rate``, ``stage``), in order.

    Returns:
        ``(lr_drops, stage_starts)``: x positions (between epochs, e.g. 7.5 means the
        drop took effect from the 8th plotted epoch) on the 1-based running epoch axis.
    """
    drops, stages = [], []
    for i in range(1, len(epochs)):
        prev, cur = epochs[i - 1], epochs[i]
        x = i + 0.5
        if cur.get("stage", 1) != prev.get("stage", 1):
            stages.append(x)
            continue
        lr0, lr1 = prev.get("learning_rate"), cur.get("learning_rate")
        if finite(lr0) and finite(lr1) and lr1 < lr0 * (1 - 1e-6):
            drops.append(x)
    return drops, stages


def training_curves(model: str, epochs: Sequence[dict[str, Any]]) -> bytes:
    """Loss, accuracy (train vs validation) and learning rate per epoch of one model.

    Learning-rate drops are dashed vertical lines; the start of a second training stage
    (two-stage fine-tuning) is a solid vertical line. Epochs are numbered 1..N across
    stages.

    Args:
        model: the configuration name (for the title).
        epochs: the history's epoch records.

    Returns:
        PNG bytes.
    """
    fig, axes = _figure(12, 3.6, ncols=3)
    x = list(range(1, len(epochs) + 1))
    drops, stages = epoch_markers(epochs)
    panels = [
        (axes[0], "loss", "loss", "val_loss"),
        (axes[1], "accuracy", "accuracy", "val_accuracy"),
    ]
    for ax, title, train_key, val_key in panels:
        ax.plot(x, _series(epochs, train_key), marker=".", label="train")
        ax.plot(x, _series(epochs, val_key), marker=".", label="validation")
        ax.set_title(title)
    lr = _series(epochs, "learning_rate")
    axes[2].plot(x, lr, marker=".", color="#555555", label="learning rate")
    if any(v > 0 for v in lr if not math.isnan(v)):
        axes[2].set_yscale("log")
    axes[2].set_title("learning rate")
    from matplotlib.ticker import MaxNLocator

    for ax in axes:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        for i, d in enumerate(drops):
            ax.axvline(d, color="#ff7f0e", ls="--", lw=1, label="LR drop" if i == 0 else None)
        for i, s in enumerate(stages):
            ax.axvline(s, color="black", lw=1.5, label="stage 2 starts" if i == 0 else None)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(f"{model}: training curves")
    return _png(fig)


def confusion_matrix(model: str, classes: Sequence[str], matrix: Sequence[Sequence[int]]) -> bytes:
    """Confusion matrix heat map with the count in every cell.

    Args:
        model: the configuration name (for the title).
        classes: class names, in label order.
        matrix: counts, rows = true class, columns = predicted class.

    Returns:
        PNG bytes.
    """
    n = len(classes)
    side = min(2.4 + 0.4 * n, 14)
    fig, ax = _figure(side + 1, side)
    im = ax.imshow(matrix, cmap="Blues")
    fig.colorbar(im, ax=ax, shrink=0.8)
    peak = max((max(row) for row in matrix), default=0) or 1
    if n <= 30:
        for i, row in enumerate(matrix):
            for j, v in enumerate(row):
                ax.text(
                    j,
                    i,
                    str(v),
                    ha="center",
                    va="center",
                    fontsize=8,
                    color="white" if v > peak / 2 else "black",
                )
    ax.set_xticks(range(n), labels=list(classes), rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(n), labels=list(classes), fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(f"{model}: confusion matrix (test)")
    return _png(fig)


def sweep_series(
    rows: Sequence[dict[str, Any]], key: str
) -> dict[str, list[tuple[Any, float, tuple[float, float] | None]]]:
    """One sweep's test accuracies along ``key``: one series per combination of the
    other grid keys' values.

    Args:
        rows: the sweep's comparison rows; each row's ``evaluation.sweep_point`` holds its
            grid values (rows without a finite test accuracy are left out).
        key: the swept setting drawn on the x axis.

    Returns:
        ``{label: [(value, test accuracy, 95% interval or None), ...]}`` sorted by value;
        the label names the other keys' values (``""`` when ``key`` is the only one).
    """
    series: dict[str, list[tuple[Any, float, tuple[float, float] | None]]] = {}
    for r in rows:
        point = r["evaluation"].sweep_point or {}
        if key not in point or not finite(r["test_accuracy"]):
            continue
        label = ", ".join(f"{k}={v}" for k, v in point.items() if k != key)
        series.setdefault(label, []).append(
            (point[key], r["test_accuracy"], _interval(r.get("test_accuracy_ci")))
        )
    for points in series.values():
        points.sort(key=lambda p: (isinstance(p[0], str), p[0]))
    return series


def sweep_plot(sweep: str, rows: Sequence[dict[str, Any]]) -> bytes:
    """Test accuracy (with its 95% interval) against each swept setting of a sweep.

    One panel per grid key; in each, one line per combination of the other keys' values.
    A learning rate is drawn on a log axis; a setting that is not a number (``augment``)
    on categories.

    Args:
        sweep: the sweep's name (the title).
        rows: its comparison rows (``evaluation.sweep_point``, ``test_accuracy``,
            ``test_accuracy_ci``).

    Returns:
        PNG bytes.
    """
    keys = list(dict.fromkeys(k for r in rows for k in (r["evaluation"].sweep_point or {})))
    fig, axes = _figure(5.5 * max(len(keys), 1), 4, ncols=max(len(keys), 1))
    axes = list(axes) if len(keys) > 1 else [axes]
    for ax, key in zip(axes, keys, strict=False):
        series = sweep_series(rows, key)
        values = [v for points in series.values() for v, _, _ in points]
        numeric = all(finite(v) for v in values)
        categories = sorted({str(v) for v in values})
        for label, points in series.items():
            xs = [v if numeric else categories.index(str(v)) for v, _, _ in points]
            ys = [100 * acc for _, acc, _ in points]
            lo = [y - 100 * ci[0] if ci else 0 for y, (_, _, ci) in zip(ys, points, strict=True)]
            hi = [100 * ci[1] - y if ci else 0 for y, (_, _, ci) in zip(ys, points, strict=True)]
            ax.errorbar(xs, ys, yerr=[lo, hi], marker="o", capsize=3, label=label or None)
        if numeric and "learning_rate" in key and values and min(values) > 0:
            ax.set_xscale("log")
        if not numeric:
            ax.set_xticks(range(len(categories)), categories)
        elif all(isinstance(v, int) for v in values):  # epochs, patiences: whole numbers
            ax.set_xticks(sorted(set(values)))
        ax.set_xlabel(key)
        ax.set_ylabel("test accuracy (%); error bar: 95% interval")
        ax.grid(True, alpha=0.3)
        if any(series):
            ax.legend(fontsize=8, title="other settings", title_fontsize=8)
    fig.suptitle(f"Sweep {sweep}: test accuracy against each swept setting")
    return _png(fig)
