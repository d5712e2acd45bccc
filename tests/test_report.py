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
from cnnzoo.report import build_report, markdown_table


class _Page(HTMLParser):
    """Collects the results table's cells, the failed table's rows and every image."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[dict] = []  # results rows: {"model", "class", "cells": {key: (v, text)}}
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


def test_fourteen_rows_sorted_best_highlighted_and_failure_listed(full):
    evals, paths, html_text = full
    page = _parse(html_text)
    ok = [e for e in evals if e["status"] == "ok"]
    assert [r["model"] for r in page.rows] == [
        e["model"] for e in sorted(ok, key=lambda e: -e["test_accuracy"])
    ]
    assert sorted(r["model"] for r in page.rows) == sorted(list_models())
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
        weights_text = cells["weights_used"][1]
        if row["model"] == RANDOM_WEIGHTS_MODEL:
            assert weights_text == "random (not pretrained)"
        elif ev["base"]:
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
    assert [r["model"] for r in csv_rows[:14]] == [r["model"] for r in data["rows"]]
    assert [r["model"] for r in data["rows"]] == [r["model"] for r in _parse(html_text).rows]
    assert data["best"] == data["rows"][0]["model"]
    keys = ["test_accuracy", "train_accuracy", "gap", "best_val_accuracy", "train_time_s"]
    keys += ["images_per_s", "total_params", "trainable_params", "epochs_run", "test_loss"]
    for c, j in zip(csv_rows, data["rows"], strict=False):
        ev = by_model[c["model"]]
        assert c["status"] == j["status"] == "ok"
        for key in keys:
            assert float(c[key]) == ev[key] == j[key], (c["model"], key)
        assert j["random_pretrained"] == (c["model"] == RANDOM_WEIGHTS_MODEL)
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
    assert Path(paths["markdown"]).read_text(encoding="utf-8") == md
    lines = md.splitlines()
    table = [ln for ln in lines if ln.startswith("| ") and not ln.startswith("| #")]
    assert len(table) == 14
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
    by_acc = sorted(evals[:3], key=lambda e: -e["test_accuracy"])
    assert [r["model"] for r in page.rows] == [e["model"] for e in by_acc]
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
