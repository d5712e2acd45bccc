"""The comparison report: table, plots, CSV/JSON/Markdown, atomic writes, ``cnnzoo report``.

Expected texts are written out literally; the fixture's random evaluations are only
compared value for value (a cell's raw ``data-value`` against the evaluation).
"""

from __future__ import annotations

import base64
import csv
import io
import json
import random
import shutil
from html.parser import HTMLParser
from pathlib import Path

import pytest
from fixtures.report_run import (
    FAILED_ERROR,
    FAILED_MODEL,
    RANDOM_WEIGHTS_MODEL,
    built_report,
    make_evaluation,
    make_evaluations,
    write_fake_run,
)
from PIL import Image

from cnnzoo.cli.main import main
from cnnzoo.core.errors import CnnzooError
from cnnzoo.models.registry import NOTEBOOK_TEST_ACCURACY, list_models
from cnnzoo.reporting.columns import format_value
from cnnzoo.reporting.plots import epoch_markers
from cnnzoo.reporting.render import summary_table
from cnnzoo.reporting.report import build_report, markdown_table, profile_differences
from cnnzoo.reporting.verdict import STATS_NOTE


class _Page(HTMLParser):
    """Collects the results table's cells, the failed table's rows and every image."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[dict] = []  # results rows: {"model", "class", "cells": {key: (v, text)}}
        self.checks: list[str] = []  # the pipeline-check table's models
        self.failed: list[str] = []
        self.images: list[dict] = []
        self.tags: set[str] = set()
        self._table: str | None = None
        self._cell: dict | None = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.tags.add(tag)
        if tag == "table":
            self._table = a.get("id")
        elif tag == "tr" and self._table == "results" and "data-model" in a:
            self.rows.append({"model": a["data-model"], "class": a.get("class"), "cells": {}})
        elif tag == "tr" and self._table == "pipeline-checks" and "data-model" in a:
            self.checks.append(a["data-model"])
        elif tag == "tr" and self._table == "failed-table" and "data-model" in a:
            self.failed.append(a["data-model"])
        elif tag == "td" and self._table == "results" and "data-key" in a:
            self._cell = {"key": a["data-key"], "value": a["data-value"], "text": ""}
        elif tag == "img":
            self.images.append(a)

    def handle_endtag(self, tag):
        if tag == "td" and self._cell is not None:
            c = self._cell
            self.rows[-1]["cells"][c["key"]] = (c["value"], c["text"])
            self._cell = None
        elif tag == "table":
            self._table = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell["text"] += data


def _parse(html_text: str) -> _Page:
    page = _Page()
    page.feed(html_text)
    return page


@pytest.fixture(scope="module")
def full(tmp_path_factory):
    return built_report(tmp_path_factory.mktemp("full-report"))


def _by_model(evals):
    return {e["model"]: e for e in evals}


def test_rows_sorted_best_highlighted_random_weights_apart_and_failure_listed(full):
    evals, paths, html_text = full
    page = _parse(html_text)
    ok = [e for e in evals if e["status"] == "ok" and e["model"] != RANDOM_WEIGHTS_MODEL]
    assert [r["model"] for r in page.rows] == [
        e["model"] for e in sorted(ok, key=lambda e: -e["test_accuracy"])
    ]
    assert len(page.rows) == 13
    # The backbone that ran with random weights is a pipeline check, not a result.
    assert page.checks == [RANDOM_WEIGHTS_MODEL]
    assert sorted([r["model"] for r in page.rows] + page.checks) == sorted(list_models())
    assert "Pipeline check: random weights (1)" in html_text
    assert [r["class"] for r in page.rows].count("best") == 1
    assert page.rows[0]["class"] == "best"
    assert paths["best"] == page.rows[0]["model"]
    assert page.failed == [FAILED_MODEL]
    # Text is escaped: the error's "<shape ...> & more" must not become markup.
    assert "OOM when allocating tensor &lt;shape [258,2048,10,10]&gt; &amp; more" in html_text
    assert FAILED_ERROR not in html_text


def test_numbers_in_html_equal_the_evaluations(full):
    evals, _, html_text = full
    by_model = _by_model(evals)
    page = _parse(html_text)
    numeric = [
        "total_params",
        "trainable_params",
        "epochs_run",
        "best_val_accuracy",
        "train_accuracy",
        "test_accuracy",
        "gap",
        "train_time_s",
        "images_per_s",
    ]
    for rank, row in enumerate(page.rows, 1):
        ev = by_model[row["model"]]
        cells = row["cells"]
        assert int(cells["rank"][0]) == rank
        assert cells["strategy"][1] == ev["strategy"]
        for key in numeric:
            value, text = cells[key]
            assert float(value) == ev[key], (row["model"], key)
            assert text and text != "n/a", (row["model"], key)
        value, text = cells["reference_accuracy"]
        assert float(value) == NOTEBOOK_TEST_ACCURACY[row["model"]]
        weights_text = cells["weights_used"][1]
        assert weights_text == ("ImageNet" if ev["base"] else "none (from scratch)")
    # The fixture's simple model, drawn with seed 7: its cells as the table shows them.
    simple = next(r["cells"] for r in page.rows if r["model"] == "simple")
    assert simple["total_params"][1] == "726,277"
    assert simple["reference_accuracy"][1] == "76.95%"


@pytest.mark.parametrize(
    "kind, value, text",
    [
        ("int", 11_697_525, "11,697,525"),
        ("pct", 0.8764, "87.64%"),
        ("pct", 1.0, "100.00%"),
        ("pp", 0.157, "+15.70 pp"),
        ("pp", -0.0123, "-1.23 pp"),
        ("pp", 0.0, "+0.00 pp"),
        ("duration", 42.04, "42.0 s"),
        ("duration", 75.6, "1m 16s"),
        ("duration", 3725.2, "1h 02m 05s"),
        ("rate", 1234.56, "1,234.6"),
        ("pct", None, "n/a"),
        ("pct", float("nan"), "n/a"),
        ("rate", float("inf"), "n/a"),
        ("text", None, ""),
        ("text", "mid", "mid"),
    ],
)
def test_cell_formats(kind, value, text):
    assert format_value(kind, value) == text


def _hand_evaluation(model: str, test_acc: float, **extra) -> dict:
    """An ok evaluation with round numbers, for tests that spell out the expected text."""
    spec = {"simple": ("scratch", None), "mid": ("scratch", None)}[model]
    return {
        "model": model,
        "strategy": spec[0],
        "base": spec[1],
        "status": "ok",
        "classes": ["a", "b"],
        "test_loss": 0.5,
        "test_accuracy": test_acc,
        "train_loss": 0.25,
        "train_accuracy": 0.9,
        "val_accuracy": 0.8,
        "gap": 0.9 - test_acc,
        "per_class": {
            "a": {"precision": 0.75, "recall": 0.6, "f1": 2 / 3, "support": 5},
            "b": {"precision": 0.5, "recall": 1.0, "f1": 0.5, "support": 3},
        },
        "confusion_matrix": [[3, 2], [0, 3]],
        "total_params": 1_614_885,
        "trainable_params": 1_614_885,
        "epochs_run": 12,
        "best_val_accuracy": 0.8125,
        "train_time_s": 75.6,
        "images_per_s": 1234.56,
        "weights": "random",
        "history": [],
        **extra,
    }


def test_markdown_and_html_cells_spelled_out(tmp_path):
    evals = [
        _hand_evaluation("simple", 0.625),
        _hand_evaluation("mid", 0.75),
        {"model": "inception", "strategy": "scratch", "status": "failed", "error": "a|b"},
    ]
    # No test_count and no per-image predictions (a record from before the statistics):
    # no interval, and no test against the best.
    assert markdown_table(evals) == (
        "- Best: mid, test accuracy 75.00%.\n"
        "- Tied with the best (not distinguishable at 5%, exact McNemar test on the same "
        "test images): none.\n"
        "- Clearly behind the best (worse at 5%): none.\n"
        "- Not tested against the best: simple (no per-image predictions).\n"
        "\n"
        "| # | configuration | strategy | total params | trainable params | epochs run "
        "| best val acc | train acc | test acc | 95% interval | vs best (McNemar) "
        "| notebook test acc | gap (train − test) | gap 95% interval "
        "| training time | images/s | weights used |\n"
        "|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|---|\n"
        "| **1** | **mid** | **scratch** | **1,614,885** | **1,614,885** | **12** "
        "| **81.25%** | **90.00%** | **75.00%** | **n/a** | **best** | **87.64%** "
        "| **+15.00 pp** | **n/a** | **1m 16s** | **1,234.6** | **none (from scratch)** |\n"
        "| 2 | simple | scratch | 1,614,885 | 1,614,885 | 12 | 81.25% | 90.00% | 62.50% "
        "| n/a | not tested: no per-image predictions | 76.95% | +27.50 pp | n/a | 1m 16s "
        "| 1,234.6 | none (from scratch) |\n"
        "\n"
        "Sorted by test accuracy (the mean over seeds where there are several); best: "
        "**mid**. Notebook test acc: the original study's figure (its data, 100 px, "
        "ImageNet weights).\n"
        "\n"
        f"{STATS_NOTE}\n"
        "\n"
        "**Failed (1):**\n"
        "\n"
        "- `inception`: a\\|b\n"
    )
    paths = build_report(evals, tmp_path / "r")
    page = _parse(Path(paths["html"]).read_text(encoding="utf-8"))
    mid = page.rows[0]["cells"]
    assert {k: text for k, (_, text) in mid.items()} == {
        "rank": "1",
        "model": "mid",
        "strategy": "scratch",
        "total_params": "1,614,885",
        "trainable_params": "1,614,885",
        "epochs_run": "12",
        "best_val_accuracy": "81.25%",
        "train_accuracy": "90.00%",
        "test_accuracy": "75.00%",
        "test_accuracy_ci": "n/a",
        "significance": "best",
        "reference_accuracy": "87.64%",
        "gap": "+15.00 pp",
        "gap_ci": "n/a",
        "train_time_s": "1m 16s",
        "images_per_s": "1,234.6",
        "weights_used": "none (from scratch)",
    }
    assert mid["gap"][0] == "0.15000000000000002"  # data-value: the raw number, repr'd
    html_text = Path(paths["html"]).read_text(encoding="utf-8")
    assert (
        '<table class="per-class" id="per-class-model-mid"><tr><th>class</th><th>precision</th>'
        "<th>recall</th><th>F1</th><th>support</th></tr>\n"
        '<tr><td>a</td><td class="num">75.00%</td><td class="num">60.00%</td>'
        '<td class="num">66.67%</td><td class="num">5</td></tr>\n'
    ) in html_text
    assert (
        "<p>scratch, weights: none (from scratch); test accuracy 75.00%, test loss 0.5000, "
        "12 epochs</p>"
    ) in html_text
    assert '<tr class="failed" data-model="inception"><td>inception</td>' in html_text


def test_every_plot_is_embedded_and_non_empty(full):
    evals, _, html_text = full
    page = _parse(html_text)
    ids = {img["id"] for img in page.images}
    expected = {"bars", "acc-vs-params", "gap"}
    for e in evals:
        if e["status"] == "ok":
            expected |= {f"curves-model-{e['model']}", f"cm-model-{e['model']}"}
    assert ids == expected
    assert len(page.images) == 3 + 2 * 14
    for img in page.images:
        prefix = "data:image/png;base64,"
        assert img["src"].startswith(prefix), img["id"]
        png = base64.b64decode(img["src"][len(prefix) :], validate=True)
        assert png[:8] == b"\x89PNG\r\n\x1a\n"
        im = Image.open(io.BytesIO(png)).convert("L")
        assert im.width >= 300 and im.height >= 200, img["id"]
        lo, hi = im.getextrema()
        assert hi - lo > 100, f"{img['id']} is blank"
        assert img.get("alt")
    # Self-contained: no scripts, stylesheets or remote resources.
    assert not page.tags & {"script", "link", "iframe"}
    assert 'src="http' not in html_text and "url(" not in html_text


def test_run_context_is_shown(full):
    _, _, html_text = full
    assert "gs://example-bucket/flowers.tar.gz" in html_text
    assert "broken &lt;1&gt;.jpg" in html_text  # the skipped file, escaped
    assert "daisy, dandelion, rose, sunflower, tulip" in html_text
    assert "/runs/fixture-run/tensorboard" in html_text


def test_csv_and_json_agree_with_the_evaluations(full):
    evals, paths, html_text = full
    by_model = _by_model(evals)
    with open(paths["csv"], newline="", encoding="utf-8") as f:
        csv_rows = list(csv.DictReader(f))
    data = json.loads(Path(paths["json"]).read_text(encoding="utf-8"))
    assert len(csv_rows) == 15
    assert [r["model"] for r in csv_rows[:13]] == [r["model"] for r in data["rows"]]
    assert csv_rows[13]["model"] == RANDOM_WEIGHTS_MODEL
    assert csv_rows[13]["pipeline_check"] == "True" and csv_rows[13]["rank"] == ""
    assert [r["model"] for r in data["pipeline_checks"]] == [RANDOM_WEIGHTS_MODEL]
    assert [r["model"] for r in data["rows"]] == [r["model"] for r in _parse(html_text).rows]
    assert data["best"] == data["rows"][0]["model"]
    keys = ["test_accuracy", "train_accuracy", "gap", "best_val_accuracy", "train_time_s"]
    keys += ["images_per_s", "total_params", "trainable_params", "epochs_run", "test_loss"]
    for c, j in zip(csv_rows, data["rows"] + data["pipeline_checks"], strict=False):
        ev = by_model[c["model"]]
        assert c["status"] == j["status"] == "ok"
        for key in keys:
            assert float(c[key]) == ev[key] == j[key], (c["model"], key)
        assert j["random_pretrained"] == j["pipeline_check"] == (c["model"] == RANDOM_WEIGHTS_MODEL)
        assert float(c["reference_accuracy"]) == NOTEBOOK_TEST_ACCURACY[c["model"]]
    assert csv_rows[14]["model"] == FAILED_MODEL and csv_rows[14]["status"] == "failed"
    assert csv_rows[14]["error"] == FAILED_ERROR
    assert data["failed"] == [
        {
            "rank": None,
            "model": FAILED_MODEL,
            "status": "failed",
            "strategy": "finetune",
            "base": "xception",
            "error": FAILED_ERROR,
        }
    ]


def test_markdown_table(full):
    evals, paths, _ = full
    md = markdown_table(evals)
    text = Path(paths["markdown"]).read_text(encoding="utf-8")
    assert text.startswith(md)  # the table, then how to open the run's TensorBoard
    assert text[len(md) :].startswith("\n## TensorBoard\n")
    assert "`cnnzoo tensorboard /runs/fixture-run/tensorboard`" in text[len(md) :]
    lines = md.splitlines()
    table = [ln for ln in lines if ln.startswith("| ") and not ln.startswith("| #")]
    # 13 ranked rows, then the pipeline-check table's header and its one row.
    assert len(table) == 15
    assert table[13].startswith("| configuration |")
    assert table[14].startswith(f"| {RANDOM_WEIGHTS_MODEL} |")
    assert "**Pipeline check: random weights (1, not ranked):**" in md
    best = max((e for e in evals if e["status"] == "ok"), key=lambda e: e["test_accuracy"])
    assert best["model"] == "xception_transfer"  # the fixture's seed-7 draw
    assert table[0].startswith("| **1** | **xception_transfer** | **transfer** |")
    assert "| **97.87%** |" in table[0]
    assert any(ln.startswith(f"- `{FAILED_MODEL}`:") for ln in lines)


def test_lr_drops_and_stage_start_are_found():
    lrs = [(1, 1e-3), (1, 1e-3), (1, 2e-4), (1, 2e-4), (2, 1e-5), (2, 1e-5), (2, 2e-6)]
    epochs = [{"stage": s, "learning_rate": lr} for s, lr in lrs]
    drops, stages = epoch_markers(epochs)
    assert drops == [2.5, 6.5]  # after epochs 2 and 6
    assert stages == [4.5]  # the stage boundary is not counted as a drop


def _one(model="simple", seed=1):
    return make_evaluation(model, random.Random(seed))


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda evs: evs[0].pop("test_accuracy"), "(simple): missing key 'test_accuracy'"),
        (lambda evs: evs[0].update(gap="high"), "(simple): gap must be a number"),
        (lambda evs: evs[0].update(status="done"), "status must be 'ok' or 'failed'"),
        (lambda evs: evs.append(dict(evs[0])), "a second evaluation for model 'simple'"),
        (lambda evs: evs[0]["confusion_matrix"].pop(), "confusion_matrix must be 5x5"),
        (lambda evs: evs[0].pop("model"), "evaluation #1: missing key 'model'"),
        (lambda evs: evs[0].update(model=""), "(): model must be a non-empty string, got ''"),
        (lambda evs: evs[0].update(notes=3), "(simple): unknown key 'notes'"),
        (lambda evs: evs[0].update(seed="3"), "(simple): seed must be an integer or null"),
        (
            lambda evs: evs[0].update(test_predictions=[0, 1.5]),
            "test_predictions must be a list of class indices or null",
        ),
        (lambda evs: evs[0].update(schema_version=2), "schema_version 2 is not one"),
        (lambda evs: evs.__setitem__(0, [1]), "evaluation #1: must be a JSON object, got list"),
    ],
)
def test_bad_evaluations_are_rejected_and_leave_no_output(tmp_path, mutate, message):
    evs = [_one()]
    mutate(evs)
    with pytest.raises(CnnzooError, match=None) as exc:
        build_report(evs, tmp_path / "out")
    assert message in str(exc.value)
    assert not (tmp_path / "out").exists()


def test_empty_input_is_rejected(tmp_path):
    with pytest.raises(CnnzooError, match="no evaluations"):
        build_report([], tmp_path)


def test_writes_are_atomic(tmp_path, monkeypatch):
    out = tmp_path / "report"
    build_report([_one()], out)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    assert set(before) == {
        ".cnnzoo.json",  # the ownership marker: a report folder
        "report.html",
        "report.md",
        "comparison.csv",
        "comparison.json",
    }
    assert json.loads(before[".cnnzoo.json"])["kind"] == "report"

    import cnnzoo.storage.local

    def failing_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(cnnzoo.storage.local.os, "replace", failing_replace)
    with pytest.raises(OSError, match="disk full"):
        build_report([_one(seed=2)], out)
    # The interrupted rebuild left the previous report whole and no temporary files.
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert [p.name for p in tmp_path.iterdir()] == ["report"]


def test_report_without_context_or_successes(tmp_path):
    paths = build_report(
        [{"model": "simple", "strategy": "scratch", "status": "failed", "error": "boom"}],
        tmp_path,
    )
    html_text = Path(paths["html"]).read_text(encoding="utf-8")
    assert paths["best"] is None
    assert "No configuration finished" in html_text and "boom" in html_text
    assert "<img" not in html_text


def _fake_run(tmp_path):
    evals = [_one("simple", 1), _one("xception_finetune", 2), _one("mobilenetv2_partial", 3)]
    evals.append(make_evaluations()[-1])  # the failed one
    profile = {"name": "demo", "img_size": 72, "batch_size": 16, "seed": 7}
    return evals, write_fake_run(tmp_path / "runs" / "20260101-000000", evals, profile)


def test_cli_report_rebuilds_from_the_run_manifest(tmp_path, capsys):
    evals, run = _fake_run(tmp_path)
    # A stray evaluation-like file the manifest does not list is not picked up.
    (run / "old-simple.json").write_text(json.dumps(dict(evals[0], test_accuracy=0.01)))
    assert main(["report", str(run)]) == 0
    out = capsys.readouterr().out
    html_path = run / "report" / "report.html"
    assert f"report: {html_path}" in out.splitlines()
    text = html_path.read_text(encoding="utf-8")
    page = _parse(text)
    by_acc = sorted(evals[:2], key=lambda e: -e["test_accuracy"])
    assert [r["model"] for r in page.rows] == [e["model"] for e in by_acc]
    assert page.checks == ["mobilenetv2_partial"]  # random weights: not ranked
    assert page.failed == [FAILED_MODEL]
    simple = next(r["cells"] for r in page.rows if r["model"] == "simple")
    assert float(simple["test_accuracy"][0]) == evals[0]["test_accuracy"]
    assert "<th>data source</th><td>demo</td>" in text
    assert "<th>run</th><td>cnn-comparison-20260101</td>" in text
    assert "<th>seed</th><td>7</td>" in text  # the resolved profile's seed
    assert "broken &lt;1&gt;.jpg" in text  # the ingest manifest the run manifest lists
    assert f"cnnzoo tensorboard {run / 'tensorboard'}" in text
    # The rebuilt report carries its own manifest: it can be rebuilt again, from there.
    rebuilt = json.loads((run / "report" / "run-manifest.json").read_text())
    assert rebuilt["artifacts"]["evaluations"]["simple"]["path"] == (
        "../kfp/cnn-comparison-20260101/for-loop-1-iteration-0/evaluate/evaluation"
    )
    assert main(["report", str(run / "report"), "--out", str(tmp_path / "again")]) == 0
    again = json.loads((tmp_path / "again" / "comparison.json").read_text())
    assert [r["model"] for r in again["rows"]] == [e["model"] for e in by_acc]
    # A report folder copied out of its run (as to an output location) finds the run's
    # files through their local URIs; the split, listed without one, is noted missing.
    exported = tmp_path / "exported"
    shutil.copytree(run / "kfp" / "cnn-comparison-20260101" / "report" / "comparison", exported)
    capsys.readouterr()
    assert main(["report", str(exported)]) == 0
    assert "broken &lt;1&gt;.jpg" in (exported / "report.html").read_text(encoding="utf-8")
    assert capsys.readouterr().err == (
        f"warning: {tmp_path.parent / 'split/splits/split.json'} is missing; the report's run "
        "section lacks it\n"
    )
    # The run folder moved elsewhere still resolves: the paths are relative.
    moved = tmp_path / "moved"
    run.rename(moved)
    assert main(["report", str(moved), "--out", str(tmp_path / "from-moved")]) == 0
    page = _parse((tmp_path / "from-moved" / "report.html").read_text(encoding="utf-8"))
    assert [r["model"] for r in page.rows] == [e["model"] for e in by_acc]


def test_cli_report_out_follows_the_ownership_rule(tmp_path, capsys):
    _, run = _fake_run(tmp_path)
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "thesis.txt").write_text("my own work")
    assert main(["report", str(run), "--out", str(mine)]) == 1
    err = capsys.readouterr().err
    assert err == (
        f"error: {mine}: exists and is not a cnnzoo report output; choose another folder "
        "or pass --overwrite\n"
    )
    assert [p.name for p in mine.iterdir()] == ["thesis.txt"]
    # An earlier report is replaced whole, with no leftovers beside it.
    assert main(["report", str(run), "--out", str(tmp_path / "r")]) == 0
    (tmp_path / "r" / "stale.txt").write_text("from an earlier report")
    assert main(["report", str(run), "--out", str(tmp_path / "r")]) == 0
    assert sorted(p.name for p in (tmp_path / "r").iterdir()) == [
        ".cnnzoo.json",
        "comparison.csv",
        "comparison.json",
        "report.html",
        "report.md",
        "run-manifest.json",
    ]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine", "r", "runs"]
    # Another kind of cnnzoo output is not a report either.
    split = tmp_path / "split"
    split.mkdir()
    (split / ".cnnzoo.json").write_text('{"kind": "split"}')
    assert main(["report", str(run), "--out", str(split)]) == 1
    assert "(it holds a cnnzoo split output)" in capsys.readouterr().err
    # --overwrite takes the user's folder.
    capsys.readouterr()
    assert main(["report", str(run), "--out", str(mine), "--overwrite"]) == 0
    assert (mine / "report.html").is_file() and not (mine / "thesis.txt").exists()


def _error(capsys, argv) -> str:
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    return err.strip()


def test_cli_report_errors(tmp_path, capsys):
    missing = tmp_path / "missing"
    assert _error(capsys, ["report", str(missing)]) == (
        f"error: {missing}: not a folder (expected a finished run's output folder)"
    )
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "evaluation.json").write_text(json.dumps(_one()))
    assert "no run.json or run-manifest.json" in _error(capsys, ["report", str(tmp_path / "empty")])
    # A run.json from before run manifests, and a run that failed before its report.
    old = tmp_path / "old"
    old.mkdir()
    (old / "run.json").write_text(json.dumps({"status": "succeeded", "arguments": {}}))
    assert _error(capsys, ["report", str(old)]) == (
        f"error: {old / 'run.json'}: no 'manifest' key (a run by a cnnzoo older than run "
        "manifests); run it again to rebuild its report"
    )
    (old / "run.json").write_text(json.dumps({"status": "failed", "error": "task 'split'"}))
    assert _error(capsys, ["report", str(old)]) == (
        f"error: {old / 'run.json'}: status 'failed' (task 'split'): the run did not reach "
        "its report step, so there is no report to rebuild"
    )
    # A listed evaluation that is gone, and one that is not a valid record.
    _, run = _fake_run(tmp_path)
    first = run / "kfp" / "cnn-comparison-20260101" / "for-loop-1-iteration-0" / "evaluate"
    record = json.loads((first / "evaluation").read_text())
    (first / "evaluation").write_text(json.dumps(dict(record, gap="high")))
    assert _error(capsys, ["report", str(run)]) == (
        f"error: {first / 'evaluation'}: gap must be a number in [-1, 1] or null, got 'high'"
    )
    (first / "evaluation").unlink()
    assert "the evaluation of simple" in _error(capsys, ["report", str(run)])
    assert not (run / "report").exists()


def test_pretrained_weights_make_a_backbone_ranked(tmp_path):
    ev = dict(_one("mobilenetv2_partial", 3), weights="/data/weights")
    paths = build_report([_one(), ev], tmp_path)
    data = json.loads(Path(paths["json"]).read_text(encoding="utf-8"))
    assert sorted(r["model"] for r in data["rows"]) == ["mobilenetv2_partial", "simple"]
    assert data["pipeline_checks"] == []
    page = _parse(Path(paths["html"]).read_text(encoding="utf-8"))
    assert page.checks == [] and len(page.rows) == 2


def test_profile_differences_against_full():
    full = {
        "name": "full",
        "img_size": 100,
        "weights": "imagenet",
        "models": {"simple": {"epochs": 20, "finetune": None}},
    }
    demo = {
        "name": "demo",
        "img_size": 72,
        "weights": None,
        "models": {"simple": {"epochs": 15, "finetune": None}},
    }
    assert profile_differences(demo, full) == [
        ("img_size", 100, 72),
        ("weights", "imagenet", None),
        ("models.simple.epochs", 20, 15),
    ]
    assert profile_differences(full, full) == []


def test_report_shows_what_the_profile_changes_against_full(tmp_path):
    from cnnzoo.config.profile import load_profile

    profile = load_profile("full", ["img_size=72", "models.mid.epochs=3"]).to_dict()
    paths = build_report([_one()], tmp_path, context={"profile": dict(profile, name="mine")})
    md = Path(paths["markdown"]).read_text(encoding="utf-8")
    assert "**What profile `mine` changes against `full`:**" in md
    assert "| `img_size` | 100 | 72 |" in md
    assert "| `models.mid.epochs` | 30 | 3 |" in md
    html_text = Path(paths["html"]).read_text(encoding="utf-8")
    assert "<tr><td><code>models.mid.epochs</code></td><td>30</td><td>3</td></tr>" in html_text
    data = json.loads(Path(paths["json"]).read_text(encoding="utf-8"))
    assert data["profile_vs_full"] == [
        {"key": "img_size", "full": 100, "this_run": 72},
        {"key": "models.mid.epochs", "full": 30, "this_run": 3},
    ]


def test_summary_table_text():
    comparison = {
        "rows": [
            {
                "rank": 1,
                "model": "mid",
                "test_accuracy": 0.84,
                "reference_accuracy": 0.8764,
                "train_accuracy": 0.997,
                "gap": 0.157,
                "train_time_s": 53.04,
            },
            {
                "rank": 2,
                "model": "resnet_aug",
                "test_accuracy": 0.7,
                "reference_accuracy": 0.9365,
                "train_accuracy": 0.75,
                "gap": 0.05,
                "train_time_s": 75.6,
            },
        ],
        "pipeline_checks": [
            {"model": "xception_transfer", "test_accuracy": 0.2},
            {"model": "mobilenetv2_partial", "test_accuracy": 0.21},
        ],
        "failed": [{"model": "inception", "error": "NaN loss"}],
    }
    assert summary_table(comparison) == (
        "Ranking by test accuracy (notebook: the original study's test accuracy):\n"
        "  #  configuration  test acc  notebook  train acc        gap    time\n"
        "  1  mid              84.00%    87.64%     99.70%  +15.70 pp  53.0 s\n"
        "  2  resnet_aug       70.00%    93.65%     75.00%   +5.00 pp  1m 16s\n"
        "Pipeline check: random weights (not ranked, 2):\n"
        "  xception_transfer 20.00%, mobilenetv2_partial 21.00%\n"
        "failed: inception: NaN loss\n"
    )
    assert summary_table({"rows": [], "failed": []}) == (
        "Ranking by test accuracy (notebook: the original study's test accuracy):\n"
        "  (no configuration to rank)\n"
    )


def test_the_report_step_writes_a_manifest_that_cnnzoo_report_reads(tmp_path):
    from fixtures.report_run import MANIFEST, SPLIT

    from cnnzoo.reporting.discovery import ArtifactRef
    from cnnzoo.reporting.report import report_artifacts, report_run

    root = tmp_path / "kfp" / "run-1"
    refs = []
    for i, ev in enumerate([_one("simple", 1), _one("mid", 2)]):
        path = root / f"for-loop-1-iteration-{i}" / "evaluate" / "evaluation"
        path.parent.mkdir(parents=True)
        path.write_text(json.dumps(ev))
        refs.append(ArtifactRef(path, f"minio://bucket/it-{i}/evaluation"))
    (root / "ingest" / "dataset").mkdir(parents=True)
    (root / "ingest" / "dataset" / "manifest.json").write_text(json.dumps(MANIFEST))
    (root / "split" / "splits").mkdir(parents=True)
    (root / "split" / "splits" / "split.json").write_text(json.dumps(SPLIT))
    context = {"run_name": "run-1", "data_uri": "demo", "profile": {"name": "x", "seed": 5}}
    report = root / "report" / "comparison"
    paths, records = report_artifacts(
        refs,
        ArtifactRef(root / "ingest" / "dataset", "minio://bucket/dataset"),
        ArtifactRef(root / "split" / "splits", ""),
        report,
        context,
    )
    assert [r.model for r in records] == ["simple", "mid"]
    assert json.loads((report / "run-manifest.json").read_text()) == {
        "kind": "cnnzoo-run-manifest",
        "schema_version": 1,
        "context": context,
        "artifacts": {
            "evaluations": {
                "simple": {
                    "path": "../../for-loop-1-iteration-0/evaluate/evaluation",
                    "uri": "minio://bucket/it-0/evaluation",
                },
                "mid": {
                    "path": "../../for-loop-1-iteration-1/evaluate/evaluation",
                    "uri": "minio://bucket/it-1/evaluation",
                },
            },
            "dataset": {"path": "../../ingest/dataset", "uri": "minio://bucket/dataset"},
            "splits": {"path": "../../split/splits", "uri": ""},
        },
    }
    assert "<th>seed</th><td>5</td>" in Path(paths["html"]).read_text(encoding="utf-8")
    rebuilt, notes = report_run(report, tmp_path / "again")
    assert notes == []
    assert Path(rebuilt["json"]).read_text() == Path(paths["json"]).read_text()
    assert Path(rebuilt["markdown"]).read_text() == Path(paths["markdown"]).read_text()


def test_cli_report_over_evaluations_named_one_by_one(tmp_path, capsys):
    """Steps run by hand have no run manifest: the records are named on the command line,
    and the report keeps that list as its manifest, so it can be rebuilt from itself."""
    from fixtures.report_run import MANIFEST, SPLIT

    evals = tmp_path / "evals"
    evals.mkdir()
    for name, seed in (("simple", 1), ("mid", 2)):
        (evals / f"{name}.json").write_text(json.dumps(_one(name, seed)))
    (evals / "stray.json").write_text(json.dumps(dict(_one("resnet", 3))))  # not named: unused
    data, split = tmp_path / "ingested", tmp_path / "split"
    data.mkdir()
    split.mkdir()
    (data / "manifest.json").write_text(json.dumps(MANIFEST))
    (split / "split.json").write_text(json.dumps(SPLIT))
    out = tmp_path / "report"
    argv = ["report", "--evaluations", str(evals / "simple.json"), str(evals / "mid.json")]
    assert main([*argv, "--data", str(data), "--split", str(split), "--out", str(out)]) == 0
    assert f"report: {out / 'report.html'}" in capsys.readouterr().out.splitlines()
    rows = json.loads((out / "comparison.json").read_text())["rows"]
    assert sorted(r["model"] for r in rows) == ["mid", "simple"]
    assert "broken &lt;1&gt;.jpg" in (out / "report.html").read_text(encoding="utf-8")
    manifest = json.loads((out / "run-manifest.json").read_text())
    assert manifest["artifacts"]["evaluations"]["simple"]["path"] == "../evals/simple.json"
    assert main(["report", str(out), "--out", str(tmp_path / "again")]) == 0
    again = json.loads((tmp_path / "again" / "comparison.json").read_text())["rows"]
    assert [r["model"] for r in again] == [r["model"] for r in rows]

    # What is wrong is named in one line, and nothing is written.
    capsys.readouterr()
    assert _error(capsys, ["report", "--evaluations", str(evals / "simple.json")]) == (
        "error: report: --evaluations needs --out DIR (where to write the report)"
    )
    assert _error(capsys, ["report"]) == (
        "error: report: give RUN_DIR (a finished run) or --evaluations JSON..."
    )
    assert _error(capsys, ["report", str(out), "--evaluations", str(evals / "mid.json")]) == (
        "error: report: give RUN_DIR or --evaluations JSON..., not both"
    )
    twice = [*argv, str(evals / "simple.json"), "--out", str(tmp_path / "twice")]
    assert _error(capsys, twice) == (
        f"error: {evals / 'simple.json'}: the same run as {evals / 'simple.json'} (model "
        "simple, seed None); give each run once"
    )
    missing = evals / "gone.json"
    assert _error(capsys, ["report", "--evaluations", str(missing), "--out", str(tmp_path / "m")])
    assert not (tmp_path / "twice").exists() and not (tmp_path / "m").exists()
