"""The report's uncertainty: intervals, the test against the best, repeated seeds.

Evaluations are built here with per-image predictions chosen so that the discordant
counts, and so every p-value and interval, are known: 200 test images, a model wrong
exactly on the images listed.
"""

from __future__ import annotations

import csv
import json
import random
from pathlib import Path

import pytest
from fixtures.report_run import make_evaluation

from cnnzoo.core.errors import CnnzooError
from cnnzoo.reporting.discovery import ArtifactRef, RunManifest, find_run_outputs
from cnnzoo.reporting.plots import bar_chart_test_accuracy
from cnnzoo.reporting.render import summary_table
from cnnzoo.reporting.report import build_report

LABELS = [i % 5 for i in range(200)]


def _ev(model: str, wrong, seed: int = 42, train_accuracy: float = 0.99) -> dict:
    ev = make_evaluation(model, random.Random(1))
    preds = [(y + 1) % 5 if i in set(wrong) else y for i, y in enumerate(LABELS)]
    acc = (200 - len(set(wrong))) / 200
    ev.update(
        seed=seed,
        weights="imagenet" if ev["base"] else "random",
        test_count=200,
        train_count=1000,
        test_accuracy=acc,
        train_accuracy=train_accuracy,
        gap=train_accuracy - acc,
        test_set="a" * 64,
        test_labels=LABELS,
        test_predictions=preds,
    )
    return ev


# mid: wrong on 0-9 (190 right). resnet: wrong on 2-15 (186 right); against mid, 6 images
# only mid got right (10-15) and 2 only resnet (0, 1). simple: wrong on 0-39 (160 right):
# 30 only mid got right, none only simple.
ONE_SEED = [_ev("simple", range(40)), _ev("mid", range(10)), _ev("resnet", range(2, 16))]


@pytest.fixture(scope="module")
def one_seed(tmp_path_factory):
    out = tmp_path_factory.mktemp("stats-report")
    paths = build_report(ONE_SEED, out)
    return paths, json.loads(Path(paths["json"]).read_text(encoding="utf-8"))


def test_the_first_lines_say_which_are_tied_and_which_are_behind(one_seed):
    paths, data = one_seed
    md = Path(paths["markdown"]).read_text(encoding="utf-8").splitlines()
    assert md[:3] == [
        "- Best: mid, test accuracy 95.00% (95% interval 91.04–97.26%).",
        "- Tied with the best (not distinguishable at 5%, exact McNemar test on the same test "
        "images, p-values Holm-adjusted over the 2 configurations tested against the best): "
        "resnet (Holm p = 0.289).",
        "- Clearly behind the best (worse at 5%): simple (Holm p < 0.001).",
    ]
    assert data["headline"] == [line[2:] for line in md[:3]]
    html = Path(paths["html"]).read_text(encoding="utf-8")
    assert '<ul class="summary" id="verdict"><li>Best: mid, test accuracy 95.00%' in html
    assert html.index('id="verdict"') < html.index('id="results"')
    assert data["statistics"]["tied_with_best"] == ["resnet"]
    assert data["statistics"]["behind_best"] == ["simple"]
    assert data["statistics"]["not_tested"] == [] and data["statistics"]["order_flips"] == []


def test_intervals_and_p_values_in_json_csv_and_html(one_seed):
    paths, data = one_seed
    rows = {r["model"]: r for r in data["rows"]}
    assert [r["model"] for r in data["rows"]] == ["mid", "resnet", "simple"]
    # Wilson 190/200 and 186/200, Newcombe for 990/1000 - 190/200 (worked in test_stats)
    assert rows["mid"]["test_accuracy_ci"] == pytest.approx([0.910422, 0.972617], abs=1e-6)
    assert rows["resnet"]["test_accuracy_ci"] == pytest.approx([0.885945, 0.957848], abs=1e-6)
    assert rows["mid"]["gap_ci"] == pytest.approx([0.015905, 0.079840], abs=1e-6)
    assert rows["mid"]["vs_best"] == "best" and rows["mid"]["p_vs_best"] is None
    assert rows["resnet"]["vs_best"] == "tied"
    assert rows["resnet"]["p_vs_best"] == 74 / 256  # 2 * (1 + 8 + 28) / 2**8
    assert rows["simple"]["vs_best"] == "behind"
    assert rows["simple"]["p_vs_best"] == 2 / 2**30
    # Holm over the two tested: simple's p doubled (the smaller), resnet's kept (the larger)
    assert rows["simple"]["p_vs_best_adjusted"] == 2 * 2 / 2**30
    assert rows["resnet"]["p_vs_best_adjusted"] == 74 / 256
    assert rows["mid"]["p_vs_best_adjusted"] is None
    assert rows["mid"]["repeats"] == 1 and rows["mid"]["test_accuracy_std"] is None
    with open(paths["csv"], newline="", encoding="utf-8") as f:
        csv_rows = {r["model"]: r for r in csv.DictReader(f)}
    assert (
        float(csv_rows["resnet"]["test_accuracy_ci_low"]) == rows["resnet"]["test_accuracy_ci"][0]
    )
    assert (
        float(csv_rows["resnet"]["test_accuracy_ci_high"]) == rows["resnet"]["test_accuracy_ci"][1]
    )
    assert float(csv_rows["mid"]["gap_ci_low"]) == rows["mid"]["gap_ci"][0]
    assert csv_rows["resnet"]["vs_best"] == "tied"
    assert float(csv_rows["resnet"]["p_vs_best"]) == 74 / 256
    assert float(csv_rows["simple"]["p_vs_best_adjusted"]) == 4 / 2**30
    assert csv_rows["mid"]["seed_test_accuracies"] == "42:0.95"
    html = Path(paths["html"]).read_text(encoding="utf-8")
    assert '<tr class="tied" data-model="resnet">' in html
    assert '<tr class="behind" data-model="simple">' in html
    assert ">88.59–95.78%</td>" in html
    assert ">tied, Holm p = 0.289 (raw p = 0.289)</td>" in html
    assert ">+1.59 to +7.98 pp</td>" in html  # mid's gap interval
    assert "exact McNemar test" in html and "Wilson score interval" in html


def test_configurations_on_other_test_images_are_not_tested(tmp_path):
    other = dict(_ev("resnet", range(2, 16)), test_set="b" * 64)
    old = _ev("simple", range(40))
    del old["test_predictions"], old["test_labels"]
    paths = build_report([_ev("mid", range(10)), other, old], tmp_path)
    data = json.loads(Path(paths["json"]).read_text(encoding="utf-8"))
    assert data["headline"][1:] == [
        "Tied with the best (not distinguishable at 5%, exact McNemar test on the same test "
        "images): none.",
        "Clearly behind the best (worse at 5%): none.",
        "Not tested against the best: resnet (different test images), simple (no per-image "
        "predictions).",
    ]
    # an old record still gets its interval, from test_accuracy and test_count
    simple = next(r for r in data["rows"] if r["model"] == "simple")
    assert simple["test_accuracy_ci"] == pytest.approx([0.739145, 0.849548], abs=1e-6)


# Two seeds: mid 190 then 186 right (mean 94.0%), resnet 186 then 188 (93.5%): mid is
# ranked first by its mean, yet resnet is ahead with seed 2.
REPEATS = [
    _ev("mid", range(10), seed=1),
    _ev("mid", range(14), seed=2),
    _ev("resnet", range(2, 16), seed=1),
    _ev("resnet", range(12), seed=2),
]


def test_repeats_show_mean_std_per_seed_points_and_flips(tmp_path):
    paths = build_report(REPEATS, tmp_path)
    data = json.loads(Path(paths["json"]).read_text(encoding="utf-8"))
    mid, resnet = data["rows"]
    assert (mid["model"], resnet["model"]) == ("mid", "resnet")
    assert mid["repeats"] == 2 and mid["test_accuracy"] == pytest.approx(0.94)
    assert mid["test_accuracy_std"] == pytest.approx(0.0141421, abs=1e-6)  # sqrt(2e-4)
    assert [(s["seed"], s["test_accuracy"]) for s in mid["seeds"]] == [(1, 0.95), (2, 0.93)]
    # the interval of the mean pools both seeds' predictions: Wilson 376/400
    assert mid["test_accuracy_ci"] == pytest.approx([0.912277, 0.959352], abs=1e-6)
    assert resnet["vs_best"] == "tied"
    assert data["statistics"]["order_flips"] == [
        {"a": "mid", "b": "resnet", "a_ahead": [1], "b_ahead": [2]}
    ]
    assert data["headline"][-1] == (
        "Ranked by the mean over seeds; 1 pair(s) swap places between seeds: mid/resnet "
        "(resnet ahead with seed 2)."
    )
    assert data["headline"][0] == (
        "Best: mid, test accuracy 94.00% ± 1.41 pp over 2 seeds (95% interval 91.23–95.94%)."
    )
    keys = [c["key"] for c in data["columns"]]
    assert keys[keys.index("test_accuracy") : keys.index("test_accuracy") + 3] == [
        "test_accuracy",
        "test_accuracy_std",
        "seed_accuracies",
    ]
    md = Path(paths["markdown"]).read_text(encoding="utf-8")
    assert "| test acc (mean) | std over seeds | per seed |" in md
    assert "| 93.50% | ±0.71 pp | 93.00%, 94.00% |" in md  # resnet (the best is in bold)
    with open(paths["csv"], newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert rows[0]["repeats"] == "2" and rows[0]["seed_test_accuracies"] == "1:0.95;2:0.93"


def test_a_second_evaluation_of_one_seed_is_rejected(tmp_path):
    with pytest.raises(
        CnnzooError, match="evaluation #2: a second evaluation for model 'mid' with seed 1"
    ):
        build_report([REPEATS[0], dict(REPEATS[0])], tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_the_run_manifest_keeps_every_seed(tmp_path):
    refs = {}
    for ev in REPEATS:
        path = tmp_path / "run" / f"{ev['model']}-{ev['seed']}" / "evaluation"
        path.parent.mkdir(parents=True)
        path.write_text(json.dumps(ev))
        refs[f"{ev['model']}/seed-{ev['seed']}"] = ArtifactRef(path)
    report = tmp_path / "run" / "report"
    build_report(REPEATS, report, manifest=RunManifest(evaluations=refs))
    found = find_run_outputs(report)
    assert sorted((e.model, e.seed) for e in found.evaluations) == [
        ("mid", 1),
        ("mid", 2),
        ("resnet", 1),
        ("resnet", 2),
    ]
    assert found.notes == []


def test_the_bar_chart_draws_the_intervals_and_the_seeds():
    rows = [
        {"model": "mid", "strategy": "scratch", "test_accuracy": 0.94, "reference_accuracy": None}
    ]
    plain = bar_chart_test_accuracy(rows)
    with_ci = bar_chart_test_accuracy([dict(rows[0], test_accuracy_ci=[0.91, 0.96])])
    with_seeds = bar_chart_test_accuracy(
        [
            dict(
                rows[0],
                test_accuracy_ci=[0.91, 0.96],
                seeds=[{"test_accuracy": 0.95}, {"test_accuracy": 0.93}],
            )
        ]
    )
    assert len({plain, with_ci, with_seeds}) == 3


def test_console_summary_starts_with_the_verdict(one_seed):
    _, data = one_seed
    text = summary_table(data)
    lines = text.splitlines()
    assert lines[:3] == data["headline"]
    assert lines[3] == "Ranking by test accuracy (notebook: the original study's test accuracy):"
    assert lines[4].split() == (
        "# configuration test acc 95% interval vs best notebook train acc gap time".split()
    )
    assert lines[6].split()[:7] == ["2", "resnet", "93.00%", "88.59–95.78%", "tied,", "Holm", "p"]
