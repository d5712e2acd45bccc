"""Variants and sweep points in the report: what each derives from, with its values, and the
sweep plot (test accuracy against each swept setting, one line per other grid value)."""

from __future__ import annotations

import csv
import json
import random
from pathlib import Path

import pytest
from fixtures.report_run import make_evaluation

from cnnzoo.core.errors import CnnzooError
from cnnzoo.evaluation.records import EvaluationRecord
from cnnzoo.reporting.plots import sweep_plot, sweep_series
from cnnzoo.reporting.report import build_report, split_evaluations

LABELS = [i % 5 for i in range(200)]


def _ev(model: str, wrong: int, base: str = "simple", **derived) -> dict:
    """An evaluation of ``model`` (built like ``base``), wrong on its first ``wrong`` images."""
    ev = make_evaluation(base, random.Random(1))
    preds = [(y + 1) % 5 if i < wrong else y for i, y in enumerate(LABELS)]
    ev.update(
        model=model,
        seed=42,
        test_count=200,
        train_count=1000,
        test_accuracy=(200 - wrong) / 200,
        test_set="a" * 64,
        test_labels=LABELS,
        test_predictions=preds,
        **derived,
    )
    return ev


def _point(lr: float, epochs: int, wrong: int) -> dict:
    name = f"s__learning_rate_{lr:g}__epochs_{epochs}".replace(".", "p").replace("-", "m")
    point = {"learning_rate": lr, "epochs": epochs}
    return _ev(
        name,
        wrong,
        derived_from="simple",
        sweep="s",
        sweep_point=point,
        derived_settings=point,
    )


EVALS = [
    _ev("mid", 10, base="mid"),
    _ev("mid_slow", 30, base="mid", derived_from="mid", derived_settings={"learning_rate": 1e-4}),
    _point(0.01, 1, 40),
    _point(0.001, 1, 20),
    _point(0.01, 2, 50),
    _point(0.001, 2, 16),
]


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    out = tmp_path_factory.mktemp("sweep-report")
    paths = build_report(EVALS, out)
    return paths, json.loads(Path(paths["json"]).read_text(encoding="utf-8"))


def test_rows_say_what_they_derive_from_with_their_values(report):
    paths, data = report
    rows = {r["model"]: r for r in data["rows"]}
    assert rows["mid"]["derived"] == "" and rows["mid"]["sweep"] is None
    assert rows["mid_slow"]["derived"] == "mid: learning_rate=0.0001"
    point = rows["s__learning_rate_0p001__epochs_2"]
    assert point["derived"] == "simple (sweep s): learning_rate=0.001, epochs=2"
    assert point["sweep"] == "s" and point["sweep_point"] == {"learning_rate": 0.001, "epochs": 2}
    md = Path(paths["markdown"]).read_text(encoding="utf-8")
    assert "| configuration | derived from |" in md
    assert (
        "| s__learning_rate_0p01__epochs_1 | simple (sweep s): learning_rate=0.01, epochs=1 |" in md
    )
    with open(paths["csv"], newline="", encoding="utf-8") as f:
        by_model = {r["model"]: r for r in csv.DictReader(f)}
    assert by_model["mid_slow"]["derived"] == "mid: learning_rate=0.0001"
    assert by_model["mid"]["derived"] == ""


def test_every_configuration_is_in_one_family_for_holm(report):
    _, data = report
    others = data["rows"][1:]
    assert len(others) == 5
    # mid vs simple-ish points: the largest raw p is kept or raised, never lowered
    for r in others:
        assert r["p_vs_best"] <= r["p_vs_best_adjusted"] <= 1
    smallest = min(others, key=lambda r: r["p_vs_best"])
    assert smallest["p_vs_best_adjusted"] == pytest.approx(min(1, 5 * smallest["p_vs_best"]))


def test_the_page_draws_one_plot_per_sweep(report):
    paths, _ = report
    html = Path(paths["html"]).read_text(encoding="utf-8")
    assert html.count('id="sweep-s"') == 1
    assert 'alt="test accuracy against the settings of sweep s"' in html


def test_sweep_series_one_line_per_other_grid_value():
    rows, _ = split_evaluations(EVALS)
    members = [r for r in rows if r["evaluation"].sweep == "s"]
    by_lr = sweep_series(members, "learning_rate")
    assert sorted(by_lr) == ["epochs=1", "epochs=2"]
    assert [(x, acc) for x, acc, _ in by_lr["epochs=1"]] == [(0.001, 0.9), (0.01, 0.8)]
    assert [(x, acc) for x, acc, _ in by_lr["epochs=2"]] == [(0.001, 0.92), (0.01, 0.75)]
    for points in by_lr.values():
        for _, acc, ci in points:  # the 95% interval travels with each point
            assert ci is not None and ci[0] < acc < ci[1]
    by_epochs = sweep_series(members, "epochs")
    assert sorted(by_epochs) == ["learning_rate=0.001", "learning_rate=0.01"]
    png = sweep_plot("s", members)
    assert png.startswith(b"\x89PNG") and len(png) > 5000


def test_a_bad_sweep_point_in_a_record_is_named():
    bad = _point(0.01, 1, 40)
    bad["sweep_point"] = {"learning_rate": [0.01]}
    with pytest.raises(CnnzooError, match="eval.json: sweep_point must be an object"):
        EvaluationRecord.from_dict(bad, "eval.json")
    # and a record of a registered configuration round-trips without the new keys
    plain = EvaluationRecord.from_dict(_ev("mid", 3, base="mid"), "x").to_dict()
    assert not {"derived_from", "sweep", "sweep_point", "derived_settings"} & set(plain)
