"""What the comparison concludes, in words and as data.

:func:`headline` is the first lines of every format of the report (the best
configuration, which are tied with it, which are clearly behind, and with several seeds
the pairs whose order flips); :data:`STATS_NOTE` says under the table how to read the
intervals and the tests; :func:`statistics_summary` is ``comparison.json``'s
``statistics``, the same groups and methods as data. The numbers come from
:func:`cnnzoo.evaluation.stats.compare_configurations` through the rows of
:func:`cnnzoo.reporting.report.split_evaluations`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from cnnzoo.evaluation.stats import ALPHA, order_flips
from cnnzoo.reporting.columns import format_p, format_value

#: How to read the intervals and the tests (shown under the results table).
STATS_NOTE = (
    "95% interval: the Wilson score interval of the test accuracy over the test images "
    "(with several seeds: all seeds' test predictions pooled; the seeds' spread is the "
    "std). vs best: an exact McNemar test (two-sided binomial test on the images only one "
    "of the two got right) of each configuration against the best on the same test "
    "images; tied = not distinguishable from the best at 5%, behind = worse at 5%. With "
    "several seeds it is tested seed by seed and the p-value is the largest. Many "
    "comparisons: every p-value is also shown Holm-adjusted over all the configurations "
    "tested against the best (so the chance of any false 'behind' stays at 5%), and "
    "tied/behind use the adjusted values. "
    "Gap interval: Newcombe's hybrid score interval of train accuracy − test accuracy "
    "(two independent proportions on disjoint images)."
)
#: At most this many order flips are named in the headline (all are in comparison.json).
MAX_FLIPS_NAMED = 8


def _seed_accuracies(ranked: Sequence[dict[str, Any]]) -> dict[str, dict[int, float]]:
    """Each configuration's test accuracy by seed, as :func:`cnnzoo.evaluation.stats.order_flips`
    takes it."""
    return {r["model"]: {s["seed"]: s["test_accuracy"] for s in r["seeds"]} for r in ranked}


def headline(rows: Sequence[dict[str, Any]]) -> list[str]:
    """The report's first lines, plain text: the best configuration, which ones are tied
    with it, which are clearly behind, which were not tested, and (with several seeds)
    the pairs whose order flips between seeds.

    Args:
        rows: from :func:`cnnzoo.reporting.report.split_evaluations`.

    Returns:
        Sentences, one a line; empty when no configuration is ranked.
    """
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
            if verdict == "untested":
                return r["vs_best_reason"]
            return f"Holm {format_p(r['p_vs_best_adjusted'])}"

        return [f"{r['model']} ({why(r)})" for r in ranked[1:] if r["vs_best"] == verdict]

    tied, behind, untested = named("tied"), named("behind"), named("untested")
    family = sum(1 for r in ranked[1:] if r.get("p_vs_best_adjusted") is not None)
    holm = (
        f", p-values Holm-adjusted over the {family} configurations tested against the best"
        if family
        else ""
    )
    lines.append(
        "Tied with the best (not distinguishable at 5%, exact McNemar test on the same test "
        f"images{holm}): " + (", ".join(tied) if tied else "none") + "."
    )
    lines.append(
        "Clearly behind the best (worse at 5%): " + (", ".join(behind) if behind else "none") + "."
    )
    if untested:
        lines.append("Not tested against the best: " + ", ".join(untested) + ".")
    if any((r.get("repeats") or 1) > 1 for r in ranked):
        flips = order_flips(_seed_accuracies(ranked))
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


def statistics_summary(ranked: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """comparison.json's ``statistics``: the groups against the best, every order flip,
    and the methods (what :data:`STATS_NOTE` says, as data)."""
    repeats = any((r.get("repeats") or 1) > 1 for r in ranked)
    return {
        "alpha": ALPHA,
        "tied_with_best": [r["model"] for r in ranked if r["vs_best"] == "tied"],
        "behind_best": [r["model"] for r in ranked if r["vs_best"] == "behind"],
        "not_tested": [r["model"] for r in ranked if r["vs_best"] == "untested"],
        "order_flips": order_flips(_seed_accuracies(ranked)) if repeats else [],
        "methods": {
            "test_accuracy_ci": "Wilson score interval, 95%, over the test images (seeds pooled)",
            "vs_best": "exact McNemar test (two-sided binomial on discordant images) against "
            "the best on the same test images, per paired seed; p_vs_best is the largest p "
            "over the seeds; p_vs_best_adjusted is it Holm-adjusted over every configuration "
            "tested against the best; behind when the adjusted p < alpha and the best is "
            "ahead in every seed",
            "multiple_comparisons": "Holm step-down over the ranked configurations tested "
            "against the best (family-wise error rate at alpha)",
            "gap_ci": "Newcombe hybrid score interval (1998, method 10) of train - test accuracy",
            "test_accuracy_std": "sample standard deviation over seeds (n - 1)",
        },
    }


def data_warnings(context: dict[str, Any]) -> list[str]:
    """The data-quality warnings of the run's ingest manifest and split (``warnings``
    in ``manifest.json`` and ``split.json``), as text lines."""
    out = []
    for key in ("data", "split"):
        found = (context.get(key) or {}).get("warnings") if isinstance(context, dict) else None
        if isinstance(found, list):
            out += [str(w) for w in found]
    return out
