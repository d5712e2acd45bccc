"""Statistics of a comparison: intervals, significance against the best, seed spread.

The report asks, for every configuration, whether its difference from the best one is
real. This module answers with plain data (no formatting) so that every renderer
(Markdown, HTML, CSV, JSON, the console) shows the same numbers:

- :func:`wilson_interval`: a 95% Wilson score interval of an accuracy (correct test
  images out of ``n``); well behaved at accuracy 0 and 1, unlike the normal
  approximation.
- :func:`mcnemar_exact`: the exact McNemar test of two models on the same test images:
  a two-sided binomial test (p = 1/2) on the discordant pairs, the images exactly one of
  the two got right.
- :func:`difference_interval`: Newcombe's hybrid score interval (Newcombe 1998, method
  10) of a difference of two independent proportions; used for the overfitting gap
  (train accuracy - test accuracy, on disjoint image sets).
- :func:`mean_std`, :func:`order_flips`: mean and sample standard deviation over seeds,
  and the pairs of configurations whose order changes from one seed to another.
- :func:`holm_adjust`: Holm's step-down adjustment of a family of p-values (the tests of
  every ranked configuration against the best), so the verdicts hold together at 5%
  however many configurations a study has.
- :func:`compare_configurations`: all of the above for a run's evaluations, ranked by
  mean test accuracy, with each configuration's verdict against the best.

The tests are small exact code on the standard library (``math.comb``, integer
arithmetic), because no statistics library is a dependency of cnnzoo.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from statistics import NormalDist
from typing import Any

from cnnzoo.evaluation.records import finite

#: Two-sided 95% normal quantile (1.959963984540054).
Z95 = NormalDist().inv_cdf(0.975)
#: The significance level of the ties with the best.
ALPHA = 0.05

#: Verdicts of a configuration against the best one.
BEST, TIED, BEHIND, UNTESTED = "best", "tied", "behind", "untested"


def wilson_interval(successes: int, n: int, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval of a proportion ``successes / n``.

    Args:
        successes: correct images (0 <= successes <= n).
        n: images (>= 1).
        z: the normal quantile; the default gives a 95% interval.

    Returns:
        ``(low, high)`` within [0, 1]; ``low`` is 0 when ``successes`` is 0, ``high``
        is 1 when ``successes`` is ``n``.

    Raises:
        ValueError: ``n < 1`` or ``successes`` outside ``[0, n]``.
    """
    if n < 1 or not 0 <= successes <= n:
        raise ValueError(
            f"wilson_interval: need 0 <= successes <= n and n >= 1, got {successes}/{n}"
        )
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    low, high = centre - half, centre + half
    # Exact at the ends (the formula gives them up to rounding).
    return (0.0 if successes == 0 else max(0.0, low), 1.0 if successes == n else min(1.0, high))


def mcnemar_exact(b: int, c: int) -> float:
    """Two-sided exact McNemar p-value from the discordant counts.

    Args:
        b: images model A got right and model B wrong.
        c: images model A got wrong and model B right.

    Returns:
        ``min(1, 2 * P[X <= min(b, c)])`` for ``X ~ Binomial(b + c, 1/2)``, computed
        with integers (exact up to the final division); 1.0 when ``b + c == 0``
        (identical correctness on every image).

    Raises:
        ValueError: a negative count.
    """
    if b < 0 or c < 0:
        raise ValueError(f"mcnemar_exact: counts must be >= 0, got b={b}, c={c}")
    n = b + c
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, k) for k in range(min(b, c) + 1))
    return min(1.0, 2 * tail / 2**n)


def discordant_counts(
    labels: Sequence[int], pred_a: Sequence[int], pred_b: Sequence[int]
) -> tuple[int, int]:
    """``(b, c)``: images only A got right, images only B got right.

    Raises:
        ValueError: the three sequences differ in length.
    """
    if not len(labels) == len(pred_a) == len(pred_b):
        raise ValueError(
            f"discordant_counts: {len(labels)} labels, {len(pred_a)} and {len(pred_b)} predictions"
        )
    b = c = 0
    for y, a, p in zip(labels, pred_a, pred_b, strict=True):
        if (a == y) != (p == y):
            if a == y:
                b += 1
            else:
                c += 1
    return b, c


def difference_interval(x1: int, n1: int, x2: int, n2: int, z: float = Z95) -> tuple[float, float]:
    """Newcombe's hybrid score interval of ``x1/n1 - x2/n2`` (independent samples).

    The limits combine the Wilson intervals ``(l1, u1)``, ``(l2, u2)`` of the two
    proportions: ``d - sqrt((p1-l1)^2 + (u2-p2)^2)`` and ``d + sqrt((u1-p1)^2 +
    (p2-l2)^2)``.

    Returns:
        ``(low, high)`` within [-1, 1].

    Raises:
        ValueError: as :func:`wilson_interval`, for either proportion.
    """
    l1, u1 = wilson_interval(x1, n1, z)
    l2, u2 = wilson_interval(x2, n2, z)
    p1, p2 = x1 / n1, x2 / n2
    d = p1 - p2
    return (
        max(-1.0, d - math.sqrt((p1 - l1) ** 2 + (u2 - p2) ** 2)),
        min(1.0, d + math.sqrt((u1 - p1) ** 2 + (p2 - l2) ** 2)),
    )


def mean_std(values: Sequence[float]) -> tuple[float, float | None]:
    """Mean and sample standard deviation (n - 1); the deviation is None for one value.

    Raises:
        ValueError: no values.
    """
    if not values:
        raise ValueError("mean_std: no values")
    mean = math.fsum(values) / len(values)
    if len(values) == 1:
        return mean, None
    var = math.fsum((v - mean) ** 2 for v in values) / (len(values) - 1)
    return mean, math.sqrt(var)


def order_flips(per_seed: Mapping[str, Mapping[int, float]]) -> list[dict[str, Any]]:
    """Pairs of configurations that swap places between seeds.

    Args:
        per_seed: ``{model: {seed: test accuracy}}``, models in ranking order.

    Returns:
        ``{"a", "b", "a_ahead": [seeds], "b_ahead": [seeds]}`` for every pair (``a``
        ranked above ``b``) with at least one seed where ``a`` is strictly ahead and one
        where ``b`` is; seeds are compared only where both configurations ran them.
    """
    models = list(per_seed)
    out = []
    for i, a in enumerate(models):
        for b in models[i + 1 :]:
            common = sorted(set(per_seed[a]) & set(per_seed[b]))
            a_ahead = [s for s in common if per_seed[a][s] > per_seed[b][s]]
            b_ahead = [s for s in common if per_seed[b][s] > per_seed[a][s]]
            if a_ahead and b_ahead:
                out.append({"a": a, "b": b, "a_ahead": a_ahead, "b_ahead": b_ahead})
    return out


# --- a run's comparison -----------------------------------------------------------------


def _correct(run: Mapping[str, Any]) -> tuple[int, int] | None:
    """(correct, n) on the test set: from the predictions, else from accuracy × count."""
    labels, preds = run.get("test_labels"), run.get("test_predictions")
    if isinstance(labels, list) and isinstance(preds, list) and len(labels) == len(preds) > 0:
        return sum(1 for y, p in zip(labels, preds, strict=True) if y == p), len(labels)
    n, acc = run.get("test_count"), run.get("test_accuracy")
    if isinstance(n, int) and n > 0 and finite(acc):
        return round(acc * n), n
    return None


def _train_correct(run: Mapping[str, Any]) -> tuple[int, int] | None:
    n, acc = run.get("train_count"), run.get("train_accuracy")
    if isinstance(n, int) and n > 0 and finite(acc):
        return round(acc * n), n
    return None


def _sum_counts(counts: Sequence[tuple[int, int] | None]) -> tuple[int, int] | None:
    if not counts or any(c is None for c in counts):
        return None
    return sum(c[0] for c in counts), sum(c[1] for c in counts)


def _pairs(a: Sequence[Mapping], b: Sequence[Mapping]) -> list[tuple[Mapping, Mapping]]:
    """The runs of two configurations to compare: same seed; one run each pairs anyway."""
    by_seed = {r.get("seed"): r for r in b}
    pairs = [(r, by_seed[r.get("seed")]) for r in a if r.get("seed") in by_seed]
    if not pairs and len(a) == len(b) == 1:
        pairs = [(a[0], b[0])]
    return pairs


def holm_adjust(p_values: Sequence[float]) -> list[float]:
    """Holm's (1979) step-down adjusted p-values, in the order given.

    With the ``m`` p-values sorted ascending, the ``i``-th (1-based) is adjusted to
    ``max_{j <= i} min(1, (m - j + 1) * p_(j))``; rejecting where the adjusted value is
    below ``alpha`` controls the family-wise error rate at ``alpha``.

    Args:
        p_values: the family's p-values, each in [0, 1].

    Returns:
        The adjusted p-values, in the input order.

    Raises:
        ValueError: a p-value outside [0, 1] or not a number.
    """
    for p in p_values:
        if not (finite(p) and 0 <= p <= 1):
            raise ValueError(f"holm_adjust: p-values must be in [0, 1], got {p!r}")
    m = len(p_values)
    adjusted = [0.0] * m
    running = 0.0
    for rank, i in enumerate(sorted(range(m), key=lambda k: p_values[k])):
        running = max(running, min(1.0, (m - rank) * p_values[i]))
        adjusted[i] = running
    return adjusted


def _versus(best: Sequence[Mapping], other: Sequence[Mapping]) -> dict[str, Any]:
    """The other configuration against the best: McNemar on every paired seed."""
    pairs = _pairs(best, other)
    if not pairs:
        return {"verdict": UNTESTED, "p_value": None, "reason": "no run with a common seed"}
    tests = []
    for rb, ro in pairs:
        labels = rb.get("test_labels")
        if not (isinstance(labels, list) and isinstance(rb.get("test_predictions"), list)):
            return {"verdict": UNTESTED, "p_value": None, "reason": "no per-image predictions"}
        if not isinstance(ro.get("test_predictions"), list):
            return {"verdict": UNTESTED, "p_value": None, "reason": "no per-image predictions"}
        if rb.get("test_set") != ro.get("test_set") or ro.get("test_labels") != labels:
            return {"verdict": UNTESTED, "p_value": None, "reason": "different test images"}
        b, c = discordant_counts(labels, rb["test_predictions"], ro["test_predictions"])
        tests.append({"seed": rb.get("seed"), "b": b, "c": c, "p_value": mcnemar_exact(b, c)})
    # Conservative over seeds: the configuration's p-value is the largest of its seeds',
    # and it can be behind only with the best ahead in every seed (b > c: images only
    # the best got right outnumber the others). The verdict is set once the family's
    # p-values are adjusted (compare_configurations).
    return {
        "verdict": TIED,
        "p_value": max(t["p_value"] for t in tests),
        "best_ahead": all(t["b"] > t["c"] for t in tests),
        "tests": tests,
    }


def compare_configurations(runs_by_model: Mapping[str, Sequence[Mapping[str, Any]]]) -> dict:
    """Rank configurations by mean test accuracy and test each against the best.

    Args:
        runs_by_model: ``{model: [evaluation records, one per seed]}``. A record's keys
            used here: ``seed``, ``test_accuracy``, ``test_count``, ``train_accuracy``,
            ``train_count``, ``gap``, and for the significance test ``test_predictions``,
            ``test_labels`` (class indices in test order) and ``test_set`` (the test
            images' identity; only records with equal ``test_set`` are compared).

    Returns:
        Plain data::

            {"order": [models, best first by mean test accuracy], "best": model | None,
             "models": {model: {
                 "repeats", "seeds": [{"seed", "test_accuracy", "test_accuracy_ci",
                                       "gap", "gap_ci"}] (by seed),
                 "test_accuracy_mean", "test_accuracy_std" (None for one seed),
                 "test_accuracy_ci" ([low, high]: Wilson on the correct images of all
                     seeds pooled; None without counts),
                 "gap_mean", "gap_std", "gap_ci" (Newcombe on the pooled counts),
                 "vs_best": {"verdict": best|tied|behind|untested, "p_value",
                             "p_adjusted", "family_size", "tests"
                             [{"seed", "b", "c", "p_value"}] or "reason"}}},
             "tied": [...], "behind": [...], "untested": [...],
             "flips": order_flips(...)}

        ``p_value`` is the largest over the paired seeds; ``p_adjusted`` is it
        Holm-adjusted (:func:`holm_adjust`) over the family of every configuration
        tested against the best (``family_size`` of them). A configuration is
        ``behind`` when its adjusted p-value is below 5% and the best is ahead in every
        paired seed, else ``tied``.
    """
    models: dict[str, dict[str, Any]] = {}
    for model, runs in runs_by_model.items():
        runs = sorted(runs, key=lambda r: (r.get("seed") is None, r.get("seed") or 0))
        seeds = []
        for r in runs:
            counts, train = _correct(r), _train_correct(r)
            seeds.append(
                {
                    "seed": r.get("seed"),
                    "test_accuracy": r.get("test_accuracy"),
                    "test_accuracy_ci": list(wilson_interval(*counts)) if counts else None,
                    "gap": r.get("gap"),
                    "gap_ci": list(difference_interval(*train, *counts))
                    if counts and train
                    else None,
                }
            )
        accs = [s["test_accuracy"] for s in seeds if finite(s["test_accuracy"])]
        gaps = [s["gap"] for s in seeds if finite(s["gap"])]
        mean, std = mean_std(accs) if accs else (None, None)
        gap_mean, gap_std = mean_std(gaps) if gaps else (None, None)
        pooled = _sum_counts([_correct(r) for r in runs])
        pooled_train = _sum_counts([_train_correct(r) for r in runs])
        models[model] = {
            "repeats": len(runs),
            "seeds": seeds,
            "test_accuracy_mean": mean,
            "test_accuracy_std": std,
            "test_accuracy_ci": list(wilson_interval(*pooled)) if pooled else None,
            "gap_mean": gap_mean,
            "gap_std": gap_std,
            "gap_ci": list(difference_interval(*pooled_train, *pooled))
            if pooled and pooled_train
            else None,
        }
    order = sorted(
        models,
        key=lambda m: (
            -models[m]["test_accuracy_mean"]
            if models[m]["test_accuracy_mean"] is not None
            else math.inf
        ),
    )
    best = order[0] if order else None
    groups: dict[str, list[str]] = {TIED: [], BEHIND: [], UNTESTED: []}
    for m in order:
        if m == best:
            models[m]["vs_best"] = {"verdict": BEST, "p_value": None, "p_adjusted": None}
            continue
        models[m]["vs_best"] = _versus(runs_by_model[best], runs_by_model[m])
    # The family: every ranked configuration tested against the best.
    tested = [m for m in order if models[m]["vs_best"]["p_value"] is not None]
    adjusted = holm_adjust([models[m]["vs_best"]["p_value"] for m in tested])
    for m, p_adjusted in zip(tested, adjusted, strict=True):
        vs = models[m]["vs_best"]
        vs["p_adjusted"] = p_adjusted
        vs["family_size"] = len(tested)
        best_ahead = vs.pop("best_ahead")
        vs["verdict"] = BEHIND if p_adjusted < ALPHA and best_ahead else TIED
    for m in order[1:]:
        models[m]["vs_best"].setdefault("p_adjusted", None)
        groups[models[m]["vs_best"]["verdict"]].append(m)
    per_seed = {
        m: {s["seed"]: s["test_accuracy"] for s in models[m]["seeds"] if finite(s["test_accuracy"])}
        for m in order
    }
    return {
        "order": order,
        "best": best,
        "models": models,
        "tied": groups[TIED],
        "behind": groups[BEHIND],
        "untested": groups[UNTESTED],
        "flips": order_flips(per_seed) if any(models[m]["repeats"] > 1 for m in order) else [],
    }
