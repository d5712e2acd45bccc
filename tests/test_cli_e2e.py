"""One end-to-end run of the CLI: demo data -> ingest -> split -> train x2 -> evaluate x2.

Every step runs as its own ``cnnzoo`` process, as a user (or a pipeline component)
would run it; the test checks each step's files and that their numbers agree.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import yaml

SETTINGS = ["--set", "img_size=72", "--set", "batch_size=8", "--set", "max_epochs=1"]


def _cnnzoo(*args, ok=True):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""}
    proc = subprocess.run(
        [sys.executable, "-m", "cnnzoo.cli.main", *map(str, args)],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    if ok:
        assert proc.returncode == 0, f"cnnzoo {args} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc


@pytest.mark.slow
def test_cli_end_to_end(tmp_path):
    raw, ingested, split = tmp_path / "raw", tmp_path / "ingested", tmp_path / "split"
    _cnnzoo("demo-data", raw, "--per-class-train", 8, "--per-class-test", 3, "--size", 48)
    _cnnzoo("ingest", raw, ingested)
    manifest = json.loads((ingested / "manifest.json").read_text())
    classes = manifest["classes"]
    assert len(classes) == 5 and manifest["test_source"] == "val"
    assert all(n == 8 for n in manifest["counts"]["train"].values())
    assert all(n == 3 for n in manifest["counts"]["test"].values())

    _cnnzoo("split", ingested, split, *SETTINGS)
    info = json.loads((split / "split.json").read_text())
    counts = {k: v["count"] for k, v in info["splits"].items()}
    assert info["img_size"] == 72 and info["classes"] == classes
    assert counts["train"] + counts["val"] == 5 * 8 and counts["test"] == 5 * 3
    assert info["splits"]["test"]["per_class"] == manifest["counts"]["test"]

    for name in ("simple", "mid"):
        out = tmp_path / "models" / name
        proc = _cnnzoo("train", name, split, out, *SETTINGS, "--logs", tmp_path / "tb")
        assert proc.stdout.splitlines()[-1].startswith(f"trained {name}: 1 epoch")
        assert sorted(p.name for p in out.iterdir()) == [
            ".cnnzoo.json",  # the ownership marker
            "config.yaml",
            "history.json",
            "model.keras",
        ]
        hist = json.loads((out / "history.json").read_text())
        assert hist["status"] == "ok" and hist["epochs_run"] == 1
        assert 0 <= hist["best_val_accuracy"] <= 1
        config = yaml.safe_load((out / "config.yaml").read_text())
        assert config["split"]["ingest_manifest_sha256"] == info["ingest_manifest_sha256"]
        assert config["profile"]["max_epochs"] == 1 and config["profile"]["batch_size"] == 8
        assert (tmp_path / "tb" / name / "train").is_dir()

        eval_json = tmp_path / "evals" / f"{name}.json"
        proc = _cnnzoo("evaluate", out, split, eval_json)
        assert proc.stdout.splitlines()[-1].startswith(f"{name}: test_accuracy")
        res = json.loads(eval_json.read_text())
        assert res["status"] == "ok" and res["classes"] == classes
        assert sum(map(sum, res["confusion_matrix"])) == counts["test"]
        for c in classes:
            assert res["per_class"][c]["support"] == manifest["counts"]["test"][c]
        for key in ("test_accuracy", "train_accuracy", "val_accuracy"):
            assert 0 <= res[key] <= 1
        assert res["gap"] == pytest.approx(res["train_accuracy"] - res["test_accuracy"])
        assert res["total_params"] == hist["total_params"] and res["epochs_run"] == 1

    # an input error is one line on stderr and exit status 1
    proc = _cnnzoo("train", "simple", split, tmp_path / "bad", "--set", "img_size=64", ok=False)
    assert proc.returncode == 1
    assert proc.stderr.strip().startswith("error: ") and "img_size" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "bad").exists()
