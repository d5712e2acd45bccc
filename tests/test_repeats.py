"""Repeated seeds: the plan's fan-out, and (slow) a whole local run with ``repeats: 2``."""

from __future__ import annotations

import base64
import json
import math
import re
import statistics

import pytest

from cnnzoo.cli.main import main
from cnnzoo.components.plan import plan
from cnnzoo.config.profile import load_profile, repeat_seeds
from cnnzoo.orchestration.placement import load_placement
from cnnzoo.orchestration.study import profile_json
from cnnzoo.reporting.plots import bar_chart_test_accuracy

TINY = ["max_epochs=1", "batch_size=8", "eval_batch_size=16"]


def test_plan_makes_one_record_per_model_and_seed():
    placements = load_placement().model_placements()
    profile = profile_json(load_profile("demo", ["repeats=3", "seed=5"]))
    records = plan(["simple", "mid"], placements, profile)
    seeds = repeat_seeds(5, 3)
    assert [(r["model"], r["seed"], r["repeat"]) for r in records] == [
        (m, s, i)
        for m in ("mid", "simple")
        for i, s in enumerate(seeds, 1)  # costliest first
    ]
    assert seeds[0] == 5 and len(set(seeds)) == 3
    assert records[0]["pool"] == placements["mid"]["pool"]
    # one repeat (the default): one record per model, with the profile's seed
    one = plan(["simple"], placements, profile_json(load_profile("demo", ["seed=5"])))
    assert [(r["model"], r["seed"]) for r in one] == [("simple", 5)]


@pytest.mark.slow
def test_two_models_with_two_repeats_under_the_local_runner(tmp_path, tiny_raw_dataset, capsys):
    runs, output = tmp_path / "runs", tmp_path / "study"
    argv = ["run", "--data", str(tiny_raw_dataset), "--models", "simple,mid"]
    argv += ["--out", str(runs), "--output", str(output)]
    argv += [x for o in [*TINY, "repeats=2"] for x in ("--set", o)]
    assert main(argv) == 0
    out = capsys.readouterr().out
    run_dir = (runs / "latest").resolve()
    profile = json.loads(json.loads((run_dir / "run.json").read_text())["arguments"]["profile"])
    seeds = repeat_seeds(profile["seed"], 2)
    assert f"plan: 2 repeats, seeds {seeds}" in (run_dir / "run.log").read_text()

    # The fan-out: four loop iterations, each a train and an evaluate task.
    evaluations = [json.loads(p.read_text()) for p in run_dir.glob("kfp/**/evaluate/evaluation")]
    expected = sorted((m, s) for m in ("simple", "mid") for s in seeds)
    assert sorted((e["model"], e["seed"]) for e in evaluations) == expected
    assert len(list(run_dir.glob("kfp/**/train/model/history.json"))) == 4
    assert len({e["test_set"] for e in evaluations}) == 1  # all on the same test images
    # Per-repeat paths do not collide: a model, logs and no leftover checkpoint each.
    for model, seed in expected:
        saved = output / "models" / model / f"seed-{seed}"
        assert (saved / "model.keras").is_file(), saved
        assert json.loads((saved / "history.json").read_text())["status"] == "ok"
        logs = output / "tensorboard" / model / f"seed-{seed}"
        assert list(logs.rglob("events.out.tfevents.*")), logs
        assert re.search(rf"train {model}/seed-{seed} done: .* \[\d+\.\d s\]", out)
    assert not [p for p in output.glob("checkpoints/**/*") if p.is_file()]

    # The report: one row per model, the mean and std of its seeds, ranked by the mean.
    data = json.loads((output / "report" / "comparison.json").read_text())
    by_run = {(e["model"], e["seed"]): e["test_accuracy"] for e in evaluations}
    assert [r["model"] for r in data["rows"]] == sorted(
        ("simple", "mid"), key=lambda m: -(by_run[m, seeds[0]] + by_run[m, seeds[1]])
    )
    for row in data["rows"]:
        accs = [by_run[row["model"], s] for s in sorted(seeds)]
        assert row["repeats"] == 2
        assert [s["seed"] for s in row["seeds"]] == sorted(seeds)
        assert [s["test_accuracy"] for s in row["seeds"]] == accs
        assert row["test_accuracy"] == pytest.approx(math.fsum(accs) / 2)
        assert row["test_accuracy_std"] == pytest.approx(statistics.stdev(accs))
        low, high = row["test_accuracy_ci"]
        assert 0 <= low <= row["test_accuracy"] <= high <= 1
    keys = [c["key"] for c in data["columns"]]
    assert {"test_accuracy_std", "seed_accuracies", "test_accuracy_ci"} <= set(keys)
    md = (output / "report" / "report.md").read_text()
    assert md.startswith(f"- Best: {data['rows'][0]['model']}, test accuracy ")
    assert "| test acc (mean) | std over seeds | per seed |" in md
    # The bar chart embedded in the page is the one drawn with the intervals and seeds.
    html = (output / "report" / "report.html").read_text()
    embedded = re.search(r'id="bars" alt="[^"]*" src="data:image/png;base64,([^"]+)"', html)
    png = base64.b64decode(embedded.group(1))
    assert png == bar_chart_test_accuracy(data["rows"])
    assert png != bar_chart_test_accuracy([dict(r, seeds=[]) for r in data["rows"]])
    # The console summary starts with the same verdict.
    assert "\n".join(data["headline"]) in out
