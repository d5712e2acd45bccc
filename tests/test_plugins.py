"""Plugin architectures: the example plugin of ``examples/`` installed into a folder put on
PYTHONPATH of a ``cnnzoo`` subprocess (entry points found through importlib.metadata, so
this test process's registry stays the built-in one), a name clash refused in one line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from cnnzoo.models.registry import list_models

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "examples" / "cnnzoo-tinyplugin"
CNNZOO = Path(sys.executable).parent / "cnnzoo"
TINY = ["max_epochs=1", "batch_size=8", "eval_batch_size=16"]


@pytest.fixture(scope="module")
def plugin_path(tmp_path_factory) -> Path:
    """The example plugin installed (no dependencies, no download) into a folder."""
    target = tmp_path_factory.mktemp("plugin") / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation"]
        + ["--no-index", "--target", str(target), str(EXAMPLE)],
        check=True,
        capture_output=True,
    )
    return target


def _cnnzoo(args: list[str], *paths: Path, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(map(str, paths))}
    return subprocess.run(
        [str(CNNZOO), *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=900
    )


def test_the_example_plugin_is_listed_beside_the_built_ins(plugin_path):
    done = _cnnzoo(["models"], plugin_path)
    assert done.returncode == 0, done.stderr
    names = [line.split()[0] for line in done.stdout.splitlines()]
    assert names == [*list_models(), "tinycnn"]
    assert "(plugin tinycnn = cnnzoo_tinyplugin:register)" in done.stdout.splitlines()[-1]
    assert "tinycnn" not in list_models()  # this process never loaded it


def test_a_plugin_configuration_trains_and_takes_profile_settings(
    plugin_path, tiny_split, tmp_path
):
    out = tmp_path / "out"
    done = _cnnzoo(
        ["train", "tinycnn", str(tiny_split), str(out), "--profile", "full"]
        + ["--set", "img_size=72", "--set", "weights=null", "--set", "batch_size=8"]
        + ["--set", "models.tinycnn.epochs=2", "--set", "models.tinycnn.learning_rate=0.01"],
        plugin_path,
    )
    assert done.returncode == 0, done.stderr
    history = json.loads((out / "history.json").read_text())
    assert history["status"] == "ok" and history["model"] == "tinycnn"
    assert history["epochs_run"] == 2
    assert history["epochs"][0]["learning_rate"] == pytest.approx(0.01)
    config = yaml.safe_load((out / "config.yaml").read_text())
    assert config["profile"]["models"]["tinycnn"]["epochs"] == 2
    assert (out / "model.keras").is_file()


def _hand_made_plugin(root: Path, name: str, body: str) -> Path:
    """A minimal installed distribution: a module and its dist-info with an entry point."""
    root.mkdir(parents=True)
    (root / f"{name}.py").write_text(body)
    info = root / f"{name}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[cnnzoo.models]\n{name} = {name}:register\n")
    return root


CLASH = """
from cnnzoo.models.registry import register_architecture

def register():
    @register_architecture("simple", min_img_size=3, description="a second simple")
    def build(num_classes, img_size, name="simple"):
        raise AssertionError("never built")
"""


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (
            CLASH,
            "plugin clashing = clashing:register (cnnzoo.models): model configuration "
            "'simple' is registered twice",
        ),  # fmt: skip
        ("def register():\n    raise RuntimeError('boom')\n", "failed: RuntimeError: boom"),
        (
            CLASH.replace('"simple"', '"costly"').replace("description=", "macs=-1, description="),
            "costly: macs must be a number > 0 (millions of multiply-accumulates per image), "
            "got -1",
        ),  # fmt: skip
        ("import no_such_module_here\n", "failed: ModuleNotFoundError"),
    ],
)
def test_a_bad_plugin_is_refused_in_one_line(tmp_path, body, expected):
    site = _hand_made_plugin(tmp_path / "site", "clashing", body)
    done = _cnnzoo(["models"], site)
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: plugin clashing = clashing:register")
    assert expected in lines[0] and "Traceback" not in done.stderr


@pytest.mark.slow
def test_cnnzoo_run_trains_the_plugin_beside_the_built_ins(plugin_path, tiny_raw_dataset, tmp_path):
    runs = tmp_path / "runs"
    done = _cnnzoo(
        ["run", "--data", str(tiny_raw_dataset), "--out", str(runs), "--models", "simple,tinycnn"]
        + [x for o in TINY for x in ("--set", o)],
        plugin_path,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "train tinycnn: started" in done.stdout and "evaluate tinycnn done" in done.stdout
    report_html = Path(done.stdout.strip().splitlines()[-1][len("report: ") :])
    comparison = json.loads((report_html.parent / "comparison.json").read_text())
    assert sorted(r["model"] for r in comparison["rows"]) == ["simple", "tinycnn"]
    assert comparison["failed"] == []
