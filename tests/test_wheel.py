"""The built wheel works without a checkout: models, compile, run and submit.

The wheel is built from a copy of exactly the folders ``pyproject.toml`` packages and
installed with ``pip install --no-deps`` into a fresh virtual environment outside the
checkout. Installing TensorFlow there would take minutes, so the fresh environment sees
the project's already-installed dependencies through a ``.pth`` file naming this test
environment's site-packages; cnnzoo itself comes only from the wheel (checked:
``cnnzoo.__file__`` and its subpackages lie inside the fresh environment), and every
command runs with a working directory outside the checkout.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
PACKAGED = ("pyproject.toml", "README.md", "cnnzoo", "components", "pipelines", "configs")


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """``(fresh venv, a working folder)`` with the wheel installed in the venv."""
    base = tmp_path_factory.mktemp("wheel")
    src = base / "src"
    src.mkdir()
    for name in PACKAGED:
        path = REPO / name
        if path.is_dir():
            shutil.copytree(path, src / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(path, src / name)
    dist = base / "dist"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation"]
        + ["--wheel-dir", str(dist), str(src)],
        check=True,
        cwd=base,
        timeout=300,
    )
    (wheel,) = dist.glob("cnnzoo-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    for member in (
        "cnnzoo/pipelines/cnn_comparison.py",
        "cnnzoo/components/train.py",
        "cnnzoo/configs/cluster.yaml",
        "cnnzoo/configs/profiles/demo.yaml",
        "cnnzoo/reporting/templates/report.html.j2",  # the report page, package data
    ):
        assert member in names, member
    assert not [n for n in names if n.split("/")[0] in ("components", "pipelines", "configs")]

    venv = base / "fresh"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    python = venv / "bin" / "python"
    subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", "--no-deps", "--no-index", str(wheel)],
        check=True,
        timeout=300,
    )
    site = Path(
        subprocess.run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
    )
    (site / "zz_cnnzoo_test_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    work = base / "work"
    work.mkdir()
    return venv, work


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "CNNZOO_CONFIG_DIR")}
    return {**env, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""}


def _cnnzoo(venv: Path, work: Path, *args, timeout: int = 600) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [str(venv / "bin" / "cnnzoo"), *map(str, args)],
        cwd=work,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert proc.returncode == 0, f"cnnzoo {args}:\n{proc.stdout}\n{proc.stderr}"
    return proc


@pytest.mark.slow
def test_cnnzoo_comes_from_the_wheel(installed):
    venv, work = installed
    code = (
        "import cnnzoo, cnnzoo.components, cnnzoo.pipelines.cnn_comparison, cnnzoo.configs;"
        "from cnnzoo.config.profile import config_dir;"
        "print(cnnzoo.__file__); print(cnnzoo.components.__file__);"
        "print(cnnzoo.pipelines.cnn_comparison.__file__); print(config_dir())"
    )
    proc = subprocess.run(
        [str(venv / "bin" / "python"), "-c", code],
        cwd=work,
        env=_env(),
        capture_output=True,
        text=True,
        check=True,
    )
    paths = [Path(p).resolve() for p in proc.stdout.split()]
    assert len(paths) == 4
    for path in paths:
        assert path.is_relative_to(venv.resolve()), path
        assert not path.is_relative_to(REPO), path


@pytest.mark.slow
def test_models_and_compile_from_the_wheel(installed, tmp_path):
    venv, work = installed
    models = _cnnzoo(venv, work, "models").stdout.split("\n")
    assert len([m for m in models if m.strip()]) == 14
    assert "name: full" in _cnnzoo(venv, work, "profile", "--profile", "full").stdout

    images = ["--image", "reg.test/cnnzoo:1", "--gpu-image", "reg.test/cnnzoo-gpu:1"]
    _cnnzoo(venv, work, "compile", "--out", "default.yaml", *images)
    spec, platform = yaml.safe_load_all((work / "default.yaml").read_text())
    images = {e["container"]["image"] for e in spec["deploymentSpec"]["executors"].values()}
    assert images == {"reg.test/cnnzoo:1", "reg.test/cnnzoo-gpu:1"}
    # the packaged cluster.yaml: its placements reach the plan step
    placements = spec["root"]["dag"]["tasks"]["plan"]["inputs"]["parameters"]["placements"]
    assert placements["runtimeValue"]["constant"]["xception_finetune"]["pool"] == "gpu-large"

    user = tmp_path / "mine.yaml"
    user.write_text(
        "pools:\n"
        "  a100: {accelerator: nvidia.com/gpu, accelerator_type: nvidia-a100-80gb,"
        ' cpu: "12", memory: 85G}\n'
        '  cpu: {cpu: "1", memory: 4G}\n'
        "steps: {ingest: cpu, split: cpu, report: cpu, evaluate: a100}\n"
        "default_model_pool: a100\n"
    )
    _cnnzoo(
        venv,
        work,
        "compile",
        "--out",
        "mine.yaml",
        "--placement",
        user,
        "--image",
        "r/c:1",
        "--gpu-image",
        "r/g:1",
    )
    spec, platform = yaml.safe_load_all((work / "mine.yaml").read_text())
    train = spec["deploymentSpec"]["executors"]["exec-train"]["container"]["resources"]
    assert (train["resourceCpuRequest"], train["resourceMemoryRequest"]) == ("12", "85G")
    k8s = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]["exec-train"]
    assert k8s["nodeSelector"]["labels"] == {"cloud.google.com/gke-accelerator": "nvidia-a100-80gb"}


@pytest.mark.slow
def test_a_tiny_run_and_a_submit_from_the_wheel(installed, tiny_raw_dataset):
    from kfp_fixtures import FakeKfp

    venv, work = installed
    proc = _cnnzoo(
        venv,
        work,
        *("run", "--data", tiny_raw_dataset, "--models", "simple", "--out", "runs"),
        *("--set", "max_epochs=1", "--set", "batch_size=8", "--set", "eval_batch_size=16"),
    )
    report = Path(proc.stdout.strip().splitlines()[-1].removeprefix("report: "))
    assert report.is_file() and report.is_relative_to(work.resolve())
    record = json.loads((work / "runs" / "latest" / "run.json").read_text())
    assert record["status"] == "succeeded"
    comparison = json.loads((report.parent / "comparison.json").read_text())
    assert [r["model"] for r in comparison["rows"]] == ["simple"]

    with FakeKfp() as server:
        images = (
            "--image",
            "registry.test/cnnzoo:t1",
            "--gpu-image",
            "registry.test/cnnzoo-gpu:t1",
        )
        proc = _cnnzoo(venv, work, "submit", "--host", server.url, "--models", "simple", *images)
    assert "run id: run-1234" in proc.stdout
