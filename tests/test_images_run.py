"""The container tier: build the CPU image and run the pipeline's steps inside it.

Driven by ``make test-images`` (and by ``make test`` wherever an engine exists or can be
provisioned). One Docker Engine of the tier's own (see ``tests/engines.py``) builds the
image with ``images/build.sh`` on the Debian stand-in base of ``images/local-base.sh`` and
runs it; each phase's time is printed (base, build, steps, pipeline) and the image is
reused within a run and across runs while its inputs are unchanged.

Every step runs the way a hardened cluster runs it: the image's non-root user, read-only
root filesystem, ``/tmp`` as tmpfs, no network, no capabilities; results are read from
the mounted output folder.
"""

from __future__ import annotations

import importlib.metadata as md
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml
from engines import Dockerd, Phases, Podman, package_version
from packaging.requirements import Requirement

pytestmark = pytest.mark.containers

HARDENED = [
    "--user=10001:10001",
    "--read-only",
    "--tmpfs=/tmp:rw,exec,size=2g",
    "--network=none",
    "--cap-drop=ALL",
    "--security-opt=no-new-privileges",
]
SETTINGS = ["--set", "img_size=72", "--set", "batch_size=8", "--set", "max_epochs=1"]


@pytest.fixture(scope="session")
def phases(request):
    """The phase record and a ``say(line)`` that reaches the terminal through capturing."""
    plugins = request.config.pluginmanager
    capman, writer = plugins.getplugin("capturemanager"), plugins.getplugin("terminalreporter")

    def say(line: str) -> None:
        with capman.global_and_fixture_disabled():
            writer.write_line(line, bold=True)

    return Phases(), say


@pytest.fixture(scope="session")
def engine(phases):
    """The tier's Docker Engine, started for this run and stopped after it."""
    dockerd = Dockerd()
    dockerd.start()
    yield dockerd
    dockerd.stop()


@pytest.fixture(scope="session")
def image(engine, phases):
    """The CPU image's reference in ``engine``: built by podman (or reused for unchanged
    inputs), then moved over unless the engine has it already."""
    record, say = phases
    podman = Podman()
    with record.phase("base", say):
        base = podman.base_image()
        record.notes["base"] = base
    with record.phase("build", say):
        ref, built = podman.build(base)
        size = int(podman.podman("image", "inspect", "--format", "{{.Size}}", ref).stdout)
        record.notes["build"] = f"{ref}, {'built' if built else 'reused'}, {size / 1e9:.2f} GB"
    with record.phase("load", say):
        record.notes["load"] = (
            "podman save | docker load" if engine.load_from(podman, ref) else "reused"
        )
    return ref


def run_in(engine: Dockerd, image: str, *command: str, mounts=(), timeout=900) -> str:
    """Run ``command`` in ``image`` hardened; return its stdout (fails with its output)."""
    volumes = [f"--volume={src}:{dst}" for src, dst in mounts]
    done = engine.docker(
        "run", "--rm", *HARDENED, *volumes, image, *command, check=False, timeout=timeout
    )
    assert done.returncode == 0, f"{command} in {image} failed:\n{done.stdout}{done.stderr}"
    return done.stdout


def writable_out(tmp_path: Path) -> Path:
    """A folder the image's user (10001) can write, mounted as the steps' output."""
    out = tmp_path / "out"
    out.mkdir()
    os.chown(out, 10001, 10001) if os.getuid() == 0 else out.chmod(0o777)
    return out


# --- the image itself ----------------------------------------------------------------


def test_image_runs_as_the_non_root_user(engine, image):
    config = json.loads(
        engine.docker("image", "inspect", "--format", "{{json .Config}}", image).stdout
    )
    assert config["User"] == "10001:10001"
    done = engine.docker("run", "--rm", "--network=none", image, "id", "-u")
    assert done.stdout.strip() == "10001", "the image's default user is not 10001"


def test_version_is_the_package_version(engine, image):
    assert run_in(engine, image, "cnnzoo", "--version").strip() == f"cnnzoo {package_version()}"


def test_cpu_flavour_runs_tensorflow_cpu_and_its_metadata_says_so(engine, image):
    """tensorflow-cpu, not the CUDA-enabled tensorflow: the version that the cnnzoo[cpu]
    extra in the image's metadata asks for (TensorFlow is no plain dependency), pip check
    passes, and TensorFlow starts without a CUDA probe (the CUDA-enabled wheel logs "failed
    call to cuInit" here). The profiles come from the package data: the image sets no
    CNNZOO_CONFIG_DIR."""
    probe = textwrap.dedent(
        """
        import importlib.metadata as md, os
        import tensorflow as tf
        print("devices", [d.device_type for d in tf.config.list_physical_devices()])
        print("cuda", tf.test.is_built_with_cuda())
        print("tensorflow-cpu", md.version("tensorflow-cpu"))
        try:
            print("tensorflow", md.version("tensorflow"))
        except md.PackageNotFoundError:
            print("tensorflow absent")
        for r in sorted(r for r in md.requires("cnnzoo") if r.startswith("tensorflow")):
            print("requires", r)
        print("config dir", os.environ.get("CNNZOO_CONFIG_DIR"))
        """
    )
    done = engine.docker("run", "--rm", *HARDENED, image, "python", "-c", probe, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert "devices ['CPU']" in lines and "cuda False" in lines, done.stdout
    version = md.version("tensorflow-cpu")  # the venv's; the CPU lock pins the same
    assert f"tensorflow-cpu {version}" in lines and "tensorflow absent" in lines, done.stdout
    requires = [Requirement(ln.split(" ", 1)[1]) for ln in lines if ln.startswith("requires ")]
    by_extra = {
        extra: r
        for r in requires
        for extra in ("cpu", "gpu")
        if r.marker.evaluate({"extra": extra})
    }
    assert not [r for r in requires if r.marker is None or r.marker.evaluate({"extra": ""})]
    assert by_extra["cpu"].name == "tensorflow-cpu", requires
    assert by_extra["cpu"].specifier.contains(version), requires
    assert by_extra["gpu"].name == "tensorflow", requires
    assert "config dir None" in lines, done.stdout
    assert "cuInit" not in done.stderr, done.stderr
    checked = run_in(engine, image, "pip", "check")
    assert "No broken requirements found" in checked
    profile = yaml.safe_load(run_in(engine, image, "cnnzoo", "profile", "--profile", "full"))
    assert profile["batch_size"] == 258 and profile["img_size"] == 100, profile


def test_no_build_tools_caches_or_index_settings_in_the_image(engine, image):
    """No compilers, pip caches, wheels or build folders; and the paths podman mounted the
    machine's pip settings on during the build hold nothing (buildah leaves empty mount
    points behind; their content never reaches a layer)."""
    mounted = "/etc/pip.conf /etc/xdg/pip /root/.config/pip /opt/wheels /opt/pypi /opt/pypi-more"
    script = textwrap.dedent(
        f"""
        for tool in gcc cc g++ make; do command -v "$tool" && echo "TOOL $tool"; done
        for path in /root/.cache /home/cnnzoo/.cache /tmp/wheels /src; do
          [ -e "$path" ] && echo "FOUND $path"
        done
        for path in {mounted}; do
          [ -s "$path" ] && [ ! -d "$path" ] && echo "FOUND $path (not empty)"
          [ -d "$path" ] && [ -n "$(ls -A "$path" 2>/dev/null)" ] && echo "FOUND $path/*"
        done
        # /usr/share/python-wheels: Debian's ensurepip bundle (python3-venv, in the base).
        find / -xdev \\( -name '*.whl' -o -path '*/.cache/pip' \\) \\
          -not -path '/usr/share/python-wheels/*' -print 2>/dev/null | sed 's/^/FOUND /'
        true
        """
    )
    out = run_in(engine, image, "bash", "-c", script)
    found = [line for line in out.splitlines() if line.startswith(("TOOL", "FOUND"))]
    assert not found, f"the image carries build leftovers: {found}"
    history = engine.docker("history", "--no-trunc", "--format", "{{.CreatedBy}}", image).stdout
    for secret in ("index-url", "pip.conf", "PIP_INDEX", "find-links", "/opt/pypi"):
        assert secret not in history, f"the image's history names {secret!r}"
    assert "useradd" in history, "docker history shows no build steps: the check is blind"


def test_every_component_imports_in_the_image(engine, image, tmp_path):
    """The code each compiled task runs (kfp embeds the step function) imports there."""
    from cnnzoo.orchestration import cluster as pipeline_runner

    compiled = pipeline_runner.compile_pipeline(tmp_path / "p.yaml", image=image, gpu_image=image)
    spec = next(yaml.safe_load_all(compiled.read_text()))
    programs = tmp_path / "programs"
    programs.mkdir()
    for name, executor in spec["deploymentSpec"]["executors"].items():
        container = executor["container"]
        assert container["image"] == image, f"{name} runs on {container['image']}"
        (programs / f"{name}.py").write_text(container["command"][-1])
    assert len(list(programs.iterdir())) >= 5
    checker = textwrap.dedent(
        """
        import ast, pathlib, sys
        for path in sorted(pathlib.Path(sys.argv[1]).glob("*.py")):
            tree = ast.parse(path.read_text())
            exec(compile(tree, str(path), "exec"), {"__name__": "component"})
            imports = [n for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom))]
            for node in imports:  # those inside the step functions too
                exec(compile(ast.Module([node], []), str(path), "exec"), {})
            print("ok", path.stem, len(imports))
        """
    )
    out = run_in(
        engine,
        image,
        "python",
        "-c",
        checker,
        "/programs",
        mounts=[(programs, "/programs:ro")],
    )
    assert sorted(line.split()[1] for line in out.splitlines() if line.startswith("ok ")) == sorted(
        p.stem for p in programs.glob("*.py")
    )


# --- the steps, one container each ----------------------------------------------------


def test_steps_run_in_the_image_hardened(engine, image, phases, tmp_path):
    record, say = phases
    out = writable_out(tmp_path)
    mounts = [(out, "/out")]
    with record.phase("steps", say):
        run_in(engine, image, "cnnzoo", "demo-data", "/out/raw", "--per-class-train", "8",
               "--per-class-test", "3", "--size", "48", mounts=mounts)  # fmt: skip
        run_in(engine, image, "cnnzoo", "ingest", "/out/raw", "/out/ingested", mounts=mounts)
        run_in(engine, image, "cnnzoo", "split", "/out/ingested", "/out/split", *SETTINGS,
               mounts=mounts)  # fmt: skip
        trained = run_in(engine, image, "cnnzoo", "train", "simple", "/out/split",
                         "/out/models/simple", *SETTINGS, "--logs", "/out/tb",
                         mounts=mounts)  # fmt: skip
        evaluated = run_in(engine, image, "cnnzoo", "evaluate", "/out/models/simple",
                           "/out/split", "/out/evals/simple.json", mounts=mounts)  # fmt: skip
        run_in(engine, image, "cnnzoo", "report", "--evaluations", "/out/evals/simple.json",
               "--data", "/out/ingested", "--split", "/out/split", "--out", "/out/report",
               mounts=mounts)  # fmt: skip

    manifest = json.loads((out / "ingested" / "manifest.json").read_text())
    assert len(manifest["classes"]) == 5
    assert all(n == 8 for n in manifest["counts"]["train"].values())
    split = json.loads((out / "split" / "split.json").read_text())
    assert split["img_size"] == 72 and split["splits"]["test"]["count"] == 15
    assert trained.strip().splitlines()[-1].startswith("trained simple: 1 epoch")
    model = out / "models" / "simple"
    assert sorted(p.name for p in model.iterdir()) == [
        ".cnnzoo.json",  # the ownership marker
        "config.yaml",
        "history.json",
        "model.keras",
    ]
    hist = json.loads((model / "history.json").read_text())
    assert hist["status"] == "ok" and hist["epochs_run"] == 1
    assert evaluated.strip().splitlines()[-1].startswith("simple: test_accuracy")
    res = json.loads((out / "evals" / "simple.json").read_text())
    assert res["status"] == "ok" and sum(map(sum, res["confusion_matrix"])) == 15
    assert 0 <= res["test_accuracy"] <= 1
    assert (out / "tb" / "simple" / "train").is_dir()
    html = (out / "report" / "report.html").read_text()
    assert "simple" in html
    rows = json.loads((out / "report" / "comparison.json").read_text())
    assert "simple" in json.dumps(rows) and (out / "report" / "comparison.csv").is_file()
    owners = {p.stat().st_uid for p in out.rglob("*")}
    assert owners == {10001}, f"files not written by the image's user: uids {owners}"


# --- the pipeline under kfp.local.DockerRunner ----------------------------------------


@pytest.mark.slow
def test_two_model_pipeline_under_the_docker_runner(engine, image, phases, tmp_path):
    """``cnnzoo run --runner docker``: every task of a two-model run in the image."""
    record, say = phases
    env = {**engine.env, "TF_CPP_MIN_LOG_LEVEL": "2"}
    cmd = [
        sys.executable, "-m", "cnnzoo.cli.main", "run", "--runner", "docker", "--image", image,
        "--models", "simple,mid", "--out", str(tmp_path / "runs"), *SETTINGS,
    ]  # fmt: skip
    with record.phase("pipeline", say):
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=1500)
    assert done.returncode == 0, f"cnnzoo run --runner docker failed:\n{done.stdout}{done.stderr}"
    run_dir = (tmp_path / "runs" / "latest").resolve()
    record_json = json.loads((run_dir / "run.json").read_text())
    assert record_json["status"] == "succeeded" and record_json["runner"] == "docker"
    log = (run_dir / "run.log").read_text()
    # fingerprint, ingest, split, resolve-profile, plan, report + per model: train, evaluate
    tasks = 6 + 2 * 2
    assert log.count(f"Found image '{image}'") == tasks, "not every task ran in the image"
    evals = {}
    for path in (run_dir / "kfp").rglob("*"):
        if path.is_file() and path.stat().st_size < 1_000_000:
            try:
                obj = json.loads(path.read_text())
            except (UnicodeDecodeError, json.JSONDecodeError):
                continue
            if isinstance(obj, dict) and "test_accuracy" in obj and "model" in obj:
                evals[obj["model"]] = obj
    assert sorted(evals) == ["mid", "simple"]
    assert all(e["status"] == "ok" and e["epochs_run"] == 1 for e in evals.values())
    report = Path(record_json["report"])
    assert report.is_file() and "mid" in report.read_text() and "simple" in report.read_text()
    owners = {p.stat().st_uid for p in (run_dir / "kfp").rglob("*")} - {os.getuid()}
    assert owners <= {10001}, f"tasks wrote as uids {owners}"


# --- the GPU flavour (make test-images-gpu: several GB of CUDA wheels, not in make test) --


@pytest.mark.gpu_image
def test_gpu_flavour_builds_and_reports_no_gpu_cleanly(phases):
    """The GPU image imports TensorFlow with its CUDA wheels; without a GPU it says so."""
    record, say = phases
    podman = Podman()
    with record.phase("base", say):
        base = podman.base_image()
    with record.phase("build-gpu", say):
        ref, built = podman.build(base, flavor="gpu")
        size = int(podman.podman("image", "inspect", "--format", "{{.Size}}", ref).stdout)
        record.notes["build-gpu"] = f"{ref}, {'built' if built else 'reused'}, {size / 1e9:.2f} GB"
    probe = (
        "import tensorflow as tf; gpus = tf.config.list_physical_devices('GPU');"
        "print('GPUs:', len(gpus)) if gpus else print('no GPU visible');"
        "print('cuda build:', tf.test.is_built_with_cuda())"
    )
    done = podman.podman("run", "--rm", *HARDENED, ref, "python", "-c", probe, timeout=600)
    lines = done.stdout.strip().splitlines()
    assert "cuda build: True" in lines, done.stdout + done.stderr
    assert "no GPU visible" in lines or any(ln.startswith("GPUs: ") for ln in lines)
    assert "Traceback" not in done.stderr, done.stderr
