"""The comparison report: table, plots, CSV/JSON/Markdown, atomic writes, ``cnnzoo report``."""

from __future__ import annotations

import base64
import csv
import io
import json
import os
import random
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

from cnnzoo.cli import main
from cnnzoo.errors import CnnzooError
from cnnzoo.models import list_models
from cnnzoo.plots import epoch_markers
from cnnzoo.reference import NOTEBOOK_TEST_ACCURACY
from cnnzoo.report import build_report, markdown_table, profile_differences, summary_table


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


def _expected_text(key: str, v) -> str:
    if key in ("total_params", "trainable_params", "epochs_run"):
        return f"{v:,}"
    if key in ("best_val_accuracy", "train_accuracy", "test_accuracy"):
        return f"{v * 100:.2f}%"
    if key == "gap":
        return f"{v * 100:+.2f} pp"
    if key == "images_per_s":
        return f"{v:,.1f}"
    if key == "train_time_s":
        return f"{int(round(v)) // 60}m {int(round(v)) % 60:02d}s" if v >= 60 else f"{v:.1f} s"
    raise AssertionError(key)


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
            assert text == _expected_text(key, ev[key]), (row["model"], key)
        value, text = cells["reference_accuracy"]
        assert float(value) == NOTEBOOK_TEST_ACCURACY[row["model"]]
        assert text == _expected_text("test_accuracy", NOTEBOOK_TEST_ACCURACY[row["model"]])
        weights_text = cells["weights_used"][1]
        if ev["base"]:
            assert weights_text == "ImageNet"
        else:
            assert "scratch" in weights_text
    # Per-class precision of the best model appears as a percentage in its section.
    best = by_model[page.rows[0]["model"]]
    for metrics in best["per_class"].values():
        assert f"{metrics['precision'] * 100:.2f}%" in html_text


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
    assert table[0].startswith(f"| **1** | **{best['model']}** |")
    assert f"{best['test_accuracy'] * 100:.2f}%" in table[0]
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
        (lambda evs: evs[0].pop("model"), "evaluation #1: missing or empty key 'model'"),
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
    assert set(before) == {"report.html", "report.md", "comparison.csv", "comparison.json"}

    import cnnzoo.fsutil

    def failing_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(cnnzoo.fsutil.os, "replace", failing_replace)
    with pytest.raises(OSError, match="disk full"):
        build_report([_one(seed=2)], out)
    # The interrupted rebuild left the previous report whole and no temporary files.
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_report_without_context_or_successes(tmp_path):
    paths = build_report(
        [{"model": "simple", "strategy": "scratch", "status": "failed", "error": "boom"}],
        tmp_path,
    )
    html_text = Path(paths["html"]).read_text(encoding="utf-8")
    assert paths["best"] is None
    assert "No configuration finished" in html_text and "boom" in html_text
    assert "<img" not in html_text


def test_cli_report_rebuilds_from_a_run_folder(tmp_path, capsys):
    evals = [_one("simple", 1), _one("xception_finetune", 2), _one("mobilenetv2_partial", 3)]
    evals.append(make_evaluations()[-1])  # the failed one
    run = write_fake_run(tmp_path / "runs" / "20260101-000000", evals)
    # A model whose training failed, with no evaluation: its history.json counts.
    (run / "train" / "mid").mkdir()
    (run / "train" / "mid" / "history.json").write_text(
        json.dumps({"model": "mid", "status": "failed", "error": "NaN loss"})
    )
    (run / "run.json").write_text(json.dumps({"arguments": {"data_uri": "demo", "seed": 7}}))
    # A second, older evaluation of the same model: the newest file wins, with a warning.
    stale = dict(evals[0], test_accuracy=0.01)
    (run / "old-simple.json").write_text(json.dumps(stale))
    os.utime(run / "old-simple.json", (1, 1))
    assert main(["report", str(run)]) == 0
    captured = capsys.readouterr()
    out = captured.out
    assert "warning: 2 evaluations of simple; using the newest" in captured.err
    html_path = run / "report" / "report.html"
    assert f"report: {html_path}" in out.splitlines()
    page = _parse(html_path.read_text(encoding="utf-8"))
    by_acc = sorted(evals[:2], key=lambda e: -e["test_accuracy"])
    assert [r["model"] for r in page.rows] == [e["model"] for e in by_acc]
    assert page.checks == ["mobilenetv2_partial"]  # random weights: not ranked
    assert sorted(page.failed) == sorted([FAILED_MODEL, "mid"])
    text = html_path.read_text(encoding="utf-8")
    assert "<th>data source</th><td>demo</td>" in text and "20260101-000000" in text
    assert "<th>seed</th><td>7</td>" in text
    assert "broken &lt;1&gt;.jpg" in text  # the ingest manifest was found
    # Rebuilding does not pick up the report's own files; --out writes elsewhere.
    assert main(["report", str(run), "--out", str(tmp_path / "elsewhere")]) == 0
    assert (tmp_path / "elsewhere" / "comparison.json").is_file()


def test_cli_report_errors(tmp_path, capsys):
    assert main(["report", str(tmp_path / "missing")]) == 1
    assert "missing: not a folder" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.json").write_text('{"model": 1}')
    assert main(["report", str(tmp_path / "empty")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "no evaluation JSON found" in err


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
    from cnnzoo.config import load_profile

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
