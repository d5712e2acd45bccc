"""A study with a variant and a 2-point sweep through ``cnnzoo submit``'s compiled spec (the
plan step fed the submitted parameters) and through ``cnnzoo run`` (slow): every
configuration lands in one report, with Holm-adjusted p-values."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from kfp_fixtures import FakeKfp

from cnnzoo.cli.main import main
from cnnzoo.orchestration import tasks

STUDY = {
    "variants": {"simple_fast": {"from": "simple", "learning_rate": 0.003}},
    "sweeps": {"simple_lr": {"from": "simple", "grid": {"learning_rate": [0.01, 0.0005]}}},
}
POINTS = ["simple_lr__learning_rate_0p01", "simple_lr__learning_rate_0p0005"]
TINY = ["max_epochs=1", "batch_size=8", "eval_batch_size=16"]


@pytest.fixture
def study_yaml(tmp_path):
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(STUDY))
    return path


def _plan_placements(spec: dict) -> dict:
    """The placements compiled into the plan task of the pipeline spec."""
    plan = spec["root"]["dag"]["tasks"]["plan"]
    return plan["inputs"]["parameters"]["placements"]["runtimeValue"]["constant"]


def test_submit_carries_variants_and_sweeps_to_the_plan_step(study_yaml, capsys):
    with FakeKfp() as server:
        rc = main(
            [
                "submit",
                *("--host", server.url),
                *("--data", "gs://bucket/flowers.tar.gz"),
                *("--models", "mid,simple_fast,simple_lr"),
                *("--config", str(study_yaml)),
                *("--profile", "full"),
                *("--image", "registry.test/cnnzoo:t9"),
                *("--gpu-image", "registry.test/cnnzoo-gpu:t9"),
            ]
        )
        assert rc == 0, capsys.readouterr()
        (run,) = [r for r in server.requests if r.method == "POST" and r.path.endswith("/runs")]
    params = run.body["runtime_config"]["parameters"]
    assert params["models"] == ["mid", "simple_fast", *POINTS]
    profile = json.loads(params["profile"])
    assert profile["variants"]["simple_fast"]["from"] == "simple"
    assert profile["sweeps"]["simple_lr"]["grid"] == {"learning_rate": [0.01, 0.0005]}

    # What the cluster's plan step does with the submitted parameters: one record each,
    # placed on the pool of the registered configuration it derives from.
    placements = _plan_placements(run.body["pipeline_spec"]["pipeline_spec"])
    records = tasks.plan(params["models"], placements, params["profile"])
    assert [r["model"] for r in records] == ["mid", "simple_fast", *POINTS]
    for r in records:
        registered = "mid" if r["model"] == "mid" else "simple"
        own = ("model", "seed", "repeat", "profile")
        assert {k: v for k, v in r.items() if k not in own} == placements[registered]
        assert r["profile"] == params["profile"]  # the train task's profile input
    # a sweep's name in the UI's models parameter stands for its points, as on the CLI
    again = tasks.plan(["simple_lr"], placements, params["profile"])
    assert [r["model"] for r in again] == POINTS


@pytest.mark.slow
def test_run_trains_variants_and_sweep_points_into_one_report(
    tmp_path, tiny_raw_dataset, study_yaml, capsys
):
    runs = tmp_path / "runs"
    rc = main(
        ["run", "--data", str(tiny_raw_dataset), "--out", str(runs)]
        + ["--models", "simple,simple_fast,simple_lr", "--config", str(study_yaml)]
        + [x for o in TINY for x in ("--set", o)]
    )
    out = capsys.readouterr().out
    assert rc == 0, out
    names = ["simple", "simple_fast", *POINTS]
    for name in names:
        assert f"train {name}: started" in out and f"evaluate {name} done" in out
    run_dir = (runs / "latest").resolve()

    configs = {}
    for path in run_dir.glob("kfp/**/train*/model/config.yaml"):
        config = yaml.safe_load(path.read_text())
        configs[config["model"]] = config
    assert sorted(configs) == sorted(names)
    assert configs["simple_fast"]["stages"][0]["learning_rate"] == 0.003
    assert configs["simple_fast"]["derived"]["from"] == "simple"
    for point, lr in zip(POINTS, (0.01, 0.0005), strict=True):
        assert configs[point]["derived"]["sweep"] == "simple_lr"
        assert configs[point]["derived"]["point"] == {"learning_rate": lr}
        assert configs[point]["stages"][0]["learning_rate"] == lr
    assert "derived" not in configs["simple"]

    report_html = Path(out.strip().splitlines()[-1][len("report: ") :])
    comparison = json.loads((report_html.parent / "comparison.json").read_text())
    rows = {r["model"]: r for r in comparison["rows"]}
    assert sorted(rows) == sorted(names) and comparison["failed"] == []
    tested = [r for r in comparison["rows"][1:] if r["p_vs_best"] is not None]
    assert len(tested) == len(names) - 1
    for r in tested:  # Holm over the 3 others: never below the raw p-value
        assert r["p_vs_best"] <= r["p_vs_best_adjusted"] <= 1
    assert "Holm-adjusted" in report_html.read_text()
