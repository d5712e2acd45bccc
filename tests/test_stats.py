"""The comparison's statistics, against values worked out here or published.

Published values: the Wilson intervals and the hybrid score difference intervals are
those of Newcombe's worked examples (Statistics in Medicine 1998, 17: 857-872 and
873-890), printed to four decimals there.
"""

from __future__ import annotations

import math
import random

import pytest

from cnnzoo.config.profile import load_profile, repeat_seeds
from cnnzoo.core.errors import CnnzooError
from cnnzoo.evaluation.stats import (
    Z95,
    compare_configurations,
    difference_interval,
    discordant_counts,
    holm_adjust,
    mcnemar_exact,
    mean_std,
    order_flips,
    wilson_interval,
)
from cnnzoo.storage.layout import run_label


@pytest.mark.parametrize(
    "x, n, low, high",
    [
        (81, 263, 0.2553, 0.3662),
        (15, 148, 0.0624, 0.1605),
        (0, 20, 0.0, 0.1611),
        (1, 29, 0.0061, 0.1718),
    ],
)
def test_wilson_interval_matches_newcombes_examples(x, n, low, high):
    lo, hi = wilson_interval(x, n)
    assert (round(lo, 4), round(hi, 4)) == (low, high)


def test_wilson_interval_from_its_formula():
    # 1,350 of 1,497 test images right: the centre and half width written out.
    x, n, z = 1350, 1497, 1.959963984540054
    p = x / n
    centre = (2 * x + z**2) / (2 * (n + z**2))
    half = z * math.sqrt(n) * math.sqrt(p * (1 - p) + z**2 / (4 * n)) / (n + z**2)
    lo, hi = wilson_interval(x, n)
    assert lo == pytest.approx(centre - half, abs=1e-12)
    assert hi == pytest.approx(centre + half, abs=1e-12)
    # about ±1.5 points at 90% on the notebook's test set
    assert 0.014 < (hi - lo) / 2 < 0.016
    assert Z95 == pytest.approx(z, abs=1e-12)


def test_wilson_interval_at_accuracy_zero_and_one():
    lo, hi = wilson_interval(0, 50)
    assert lo == 0.0 and hi == pytest.approx(Z95**2 / (50 + Z95**2))
    lo, hi = wilson_interval(50, 50)
    assert hi == 1.0 and lo == pytest.approx(50 / (50 + Z95**2))
    with pytest.raises(ValueError, match="0 <= successes <= n"):
        wilson_interval(3, 0)
    with pytest.raises(ValueError):
        wilson_interval(6, 5)


def test_mcnemar_on_a_hand_worked_table():
    # Ten test images; A right on 1-8, B right on 1-3 and 9: b = 5 (4..8), c = 1 (9).
    labels = [0] * 10
    a = [0] * 8 + [1, 1]
    bb = [0, 0, 0, 1, 1, 1, 1, 1, 0, 1]
    assert discordant_counts(labels, a, bb) == (5, 1)
    # P(X <= 1 | n=6, 1/2) = (1 + 6) / 64; two-sided: 14 / 64
    assert mcnemar_exact(5, 1) == 14 / 64
    assert mcnemar_exact(1, 5) == 14 / 64
    assert mcnemar_exact(0, 5) == 2 / 32
    assert mcnemar_exact(0, 1) == 1.0  # 2 * 1/2
    assert mcnemar_exact(3, 3) == 1.0  # capped at 1
    # 20 vs 5: sum_{k<=5} C(25,k) = 1 + 25 + 300 + 2300 + 12650 + 53130
    assert mcnemar_exact(20, 5) == pytest.approx(2 * 68406 / 2**25, rel=1e-15)


def test_identical_predictions_give_p_one():
    labels = [0, 1, 2, 1, 0]
    preds = [0, 2, 2, 1, 1]
    assert discordant_counts(labels, preds, preds) == (0, 0)
    assert mcnemar_exact(0, 0) == 1.0


def test_mcnemar_rejects_bad_input():
    with pytest.raises(ValueError, match="length|labels"):
        discordant_counts([0, 1], [0], [0, 1])
    with pytest.raises(ValueError, match=">= 0"):
        mcnemar_exact(-1, 2)


@pytest.mark.parametrize(
    "x1, n1, x2, n2, low, high",
    [(56, 70, 48, 80, 0.0524, 0.3339), (9, 10, 3, 10, 0.1705, 0.8090)],
)
def test_difference_interval_matches_newcombes_examples(x1, n1, x2, n2, low, high):
    lo, hi = difference_interval(x1, n1, x2, n2)
    assert (round(lo, 4), round(hi, 4)) == (low, high)


def test_difference_interval_at_the_ends():
    lo, hi = difference_interval(10, 10, 0, 10)
    assert 0 < lo < 1 and hi == 1.0
    lo, hi = difference_interval(0, 10, 0, 10)
    assert lo < 0 < hi and lo == pytest.approx(-hi)


def test_mean_std_is_the_sample_deviation():
    mean, std = mean_std([0.80, 0.84, 0.82])
    assert mean == pytest.approx(0.82)
    assert std == pytest.approx(0.02)  # sqrt((0.0004 + 0.0004 + 0) / 2)
    assert mean_std([0.7]) == (0.7, None)
    with pytest.raises(ValueError):
        mean_std([])


def test_order_flips_names_the_pairs_and_seeds():
    per_seed = {
        "a": {1: 0.90, 2: 0.88, 3: 0.91},
        "b": {1: 0.89, 2: 0.89, 3: 0.90},
        "c": {1: 0.70, 2: 0.71, 3: 0.72},
    }
    assert order_flips(per_seed) == [{"a": "a", "b": "b", "a_ahead": [1, 3], "b_ahead": [2]}]
    # equal accuracies are no flip; seeds only one of the two ran are not compared
    assert order_flips({"a": {1: 0.5, 2: 0.6}, "b": {1: 0.5, 3: 0.9}}) == []


def test_repeat_seeds_are_deterministic_and_distinct():
    seeds = repeat_seeds(42, 5)
    assert seeds[0] == 42 and len(set(seeds)) == 5
    assert repeat_seeds(42, 5) == seeds and repeat_seeds(42, 2) == seeds[:2]
    assert repeat_seeds(7, 2) != seeds[:2]
    assert all(0 <= s < 2**31 for s in seeds)
    assert load_profile("demo", ["repeats=3"]).repeat_seeds() == repeat_seeds(42, 3)
    assert run_label("simple", 42, 1) == "simple"
    assert run_label("simple", 42, 3) == "simple/seed-42"


@pytest.mark.parametrize("value", [0, -1, 101, "two"])
def test_repeats_must_be_a_small_positive_int(value):
    with pytest.raises(CnnzooError, match="repeats"):
        load_profile("demo", [f"repeats={value}"])


# --- a run's comparison -----------------------------------------------------------------


def _run(seed, labels, preds, train_acc=0.95, train_count=200):
    correct = sum(1 for y, p in zip(labels, preds, strict=True) if y == p)
    acc = correct / len(labels)
    return {
        "seed": seed,
        "test_accuracy": acc,
        "test_count": len(labels),
        "train_accuracy": train_acc,
        "train_count": train_count,
        "gap": train_acc - acc,
        "test_set": "t1",
        "test_labels": labels,
        "test_predictions": preds,
    }


def _preds(labels, wrong):
    """Predictions right except at the indices in ``wrong``."""
    return [(y + 1) % 3 if i in wrong else y for i, y in enumerate(labels)]


LABELS = [i % 3 for i in range(100)]


def test_compare_one_seed_ties_and_behind():
    best = _run(42, LABELS, _preds(LABELS, set(range(5))))  # 95 right
    close = _run(42, LABELS, _preds(LABELS, set(range(7))))  # 93: b=2, c=0
    far = _run(42, LABELS, _preds(LABELS, set(range(30))))  # 70: b=25, c=0
    out = compare_configurations({"far": [far], "best": [best], "close": [close]})
    assert out["order"] == ["best", "close", "far"] and out["best"] == "best"
    assert out["tied"] == ["close"] and out["behind"] == ["far"] and out["untested"] == []
    m = out["models"]
    assert m["best"]["vs_best"] == {"verdict": "best", "p_value": None, "p_adjusted": None}
    assert m["close"]["vs_best"]["p_value"] == 0.5  # 2 * (1/2)^2
    assert m["far"]["vs_best"]["p_value"] == pytest.approx(2 / 2**25)
    assert m["far"]["vs_best"]["tests"] == [
        {"seed": 42, "b": 25, "c": 0, "p_value": m["far"]["vs_best"]["p_value"]}
    ]
    assert m["best"]["test_accuracy_ci"] == list(wilson_interval(95, 100))
    assert m["best"]["gap_ci"] == list(difference_interval(190, 200, 95, 100))
    assert m["best"]["test_accuracy_std"] is None and out["flips"] == []


def test_compare_needs_the_same_test_images_and_predictions():
    best = _run(42, LABELS, LABELS)
    other = dict(_run(42, LABELS, _preds(LABELS, {1})), test_set="another")
    old = {
        k: v for k, v in _run(42, LABELS, _preds(LABELS, {1, 2})).items() if k != "test_predictions"
    }
    out = compare_configurations({"best": [best], "other": [other], "old": [old]})
    assert out["untested"] == ["other", "old"]
    assert out["models"]["other"]["vs_best"]["reason"] == "different test images"
    assert out["models"]["old"]["vs_best"]["reason"] == "no per-image predictions"
    # the interval of an old record comes from accuracy and count
    assert out["models"]["old"]["test_accuracy_ci"] == list(wilson_interval(98, 100))


def test_compare_repeats_mean_std_flips_and_conservative_verdict():
    a = [
        _run(1, LABELS, _preds(LABELS, set(range(5)))),
        _run(2, LABELS, _preds(LABELS, set(range(9)))),
    ]
    # a: 95 then 91 right (mean 0.93); b: 94 then 93 (mean 0.935), so b is the best
    b = [
        _run(1, LABELS, _preds(LABELS, set(range(6)))),
        _run(2, LABELS, _preds(LABELS, set(range(7)))),
    ]
    # c: far behind on seed 1 only (b=25), on seed 2 close: not "behind" (one seed ties)
    c = [
        _run(1, LABELS, _preds(LABELS, set(range(30)))),
        _run(2, LABELS, _preds(LABELS, set(range(10)))),
    ]
    out = compare_configurations({"a": a, "b": b, "c": c})
    ma, mb = out["models"]["a"], out["models"]["b"]
    assert ma["repeats"] == 2 and [s["seed"] for s in ma["seeds"]] == [1, 2]
    assert ma["test_accuracy_mean"] == pytest.approx(0.93)
    assert ma["test_accuracy_std"] == pytest.approx(math.sqrt(2 * 0.02**2))
    assert ma["test_accuracy_ci"] == list(wilson_interval(186, 200))  # seeds pooled
    assert mb["test_accuracy_mean"] == pytest.approx(0.935)
    assert out["order"] == ["b", "a", "c"]
    # a beats b on seed 1 (95 vs 94), b beats a on seed 2 (93 vs 91)
    assert {"a": "b", "b": "a", "a_ahead": [2], "b_ahead": [1]} in out["flips"]
    vc = out["models"]["c"]["vs_best"]
    assert vc["verdict"] == "tied"
    assert [t["seed"] for t in vc["tests"]] == [1, 2]
    assert vc["tests"][0]["p_value"] < 0.05 < vc["tests"][1]["p_value"] == vc["p_value"]


# --- Holm's adjustment over the comparisons with the best ------------------------------------


def test_holm_adjust_by_hand():
    # sorted: 0.005*4 = 0.02, 0.01*3 = 0.03, 0.03*2 = 0.06, 0.04*1 = 0.04 -> kept at 0.06
    assert holm_adjust([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm_adjust([0.5, 0.9]) == [1.0, 1.0]  # capped at 1
    assert holm_adjust([0.02]) == [0.02]  # a family of one is not adjusted
    assert holm_adjust([]) == []
    with pytest.raises(ValueError, match="p-values must be in"):
        holm_adjust([0.1, 1.5])


def test_holm_adjust_never_lowers_and_keeps_the_order():
    rng = random.Random(0)
    for _ in range(50):
        ps = [rng.random() ** 3 for _ in range(rng.randint(1, 12))]
        adj = holm_adjust(ps)
        assert all(a >= p for a, p in zip(adj, ps, strict=True))
        by_p = sorted(range(len(ps)), key=ps.__getitem__)
        assert [adj[i] for i in by_p] == sorted(adj[i] for i in by_p)


def test_the_verdict_uses_the_holm_adjusted_p_values():
    best = _run(42, LABELS, _preds(LABELS, set(range(5))))  # 95 right
    # each other: 6 images only the best got right, none the other way: p = 2/2**6
    others = {
        f"other{i}": [_run(42, LABELS, _preds(LABELS, set(range(5)) | set(range(5 + i, 11 + i))))]
        for i in range(3)
    }
    alone = compare_configurations({"best": [best], "other0": others["other0"]})
    assert alone["models"]["other0"]["vs_best"]["p_value"] == 2 / 2**6
    assert alone["models"]["other0"]["vs_best"]["p_adjusted"] == 2 / 2**6
    assert alone["behind"] == ["other0"]  # 0.031 < 0.05 in a family of one

    out = compare_configurations({"best": [best], **others})
    for name in others:
        vs = out["models"][name]["vs_best"]
        assert vs["p_value"] == 2 / 2**6  # raw unchanged
        assert vs["p_adjusted"] == pytest.approx(3 * 2 / 2**6)  # 0.094: not below 5%
        assert vs["family_size"] == 3 and vs["verdict"] == "tied"
    assert out["behind"] == [] and sorted(out["tied"]) == sorted(others)
