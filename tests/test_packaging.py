"""pyproject.toml against what it pins: the Python range, the build requirement, the locks.

The supported Python range (``requires-python``) is held to the pinned distributions' own
``Requires-Python`` metadata (read from this venv, which is ``requirements-dev.txt``); the
tests marked ``index`` ask uv to resolve the dev install from the package index for each
supported CPython, and for the ones just outside the range, which must fail.
"""

from __future__ import annotations

import importlib.metadata as md
import os
import re
import subprocess
import sys
import tomllib
import urllib.request
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
DEV_LOCK = ROOT / "requirements-dev.txt"
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)")


def lock_pins(path: Path) -> dict[str, str]:
    """Canonical name -> exact version of every requirement in a uv-written lock."""
    return {
        canonicalize_name(m[1]): m[2]
        for line in path.read_text().splitlines()
        if (m := PIN.match(line))
    }


def supported_minors() -> list[str]:
    """The CPython minors ``requires-python`` admits, from 3.0 to 3.29 (e.g. 3.11..3.13)."""
    spec = SpecifierSet(PYPROJECT["project"]["requires-python"])
    return [f"3.{m}" for m in range(30) if spec.contains(f"3.{m}.0")]


def test_requires_python_is_a_closed_range_starting_at_3_11():
    minors = supported_minors()
    assert minors == ["3.11", "3.12", "3.13"], minors
    assert PYPROJECT["tool"]["ruff"]["target-version"] == "py" + minors[0].replace(".", "")


def test_requires_python_agrees_with_every_pinned_distribution():
    """Each pin admits every supported minor, and the range starts where the pins do: the
    minor below it is refused by some pin (a range opening earlier would fail inside pip)."""
    pins = lock_pins(DEV_LOCK)
    minors = supported_minors()
    below = f"3.{int(minors[0].split('.')[1]) - 1}"
    refusing_below, checked = [], 0
    for name, version in pins.items():
        dist = md.distribution(name)
        assert dist.version == version, f"venv has {name} {dist.version}, lock {version}"
        requires = dist.metadata.get("Requires-Python")
        if not requires:
            continue
        checked += 1
        spec = SpecifierSet(requires)
        refused = [m for m in minors if not spec.contains(f"{m}.0")]
        assert not refused, f"{name}=={version} (Requires-Python {requires}) refuses {refused}"
        if not spec.contains(f"{below}.0"):
            refusing_below.append(f"{name}=={version}")
    assert checked > len(pins) // 2, f"only {checked} of {len(pins)} pins state Requires-Python"
    assert refusing_below, (
        f"no pin refuses Python {below}: requires-python could open at {below}; widen it"
    )


def test_the_images_python_is_in_the_range():
    dockerfile = (ROOT / "images" / "Dockerfile").read_text()
    (base,) = re.findall(r"^ARG BASE_IMAGE=python:(\d+\.\d+)\.\d+", dockerfile, re.M)
    assert base in supported_minors(), f"the images' Python {base} is outside requires-python"
    local_base = (ROOT / "images" / "local-base.sh").read_text()
    assert "bookworm" in local_base, "the stand-in base is Debian bookworm (Python 3.11)"


def test_build_requires_only_setuptools_77_or_newer():
    """77 is the first setuptools that reads an SPDX ``license`` string."""
    (req,) = [Requirement(r) for r in PYPROJECT["build-system"]["requires"]]
    assert canonicalize_name(req.name) == "setuptools" and str(req.specifier) == ">=77"
    assert isinstance(PYPROJECT["project"]["license"], str)
    assert not req.specifier.contains("76.1.0")


def test_runtime_dependencies_are_ranges_and_the_pins_are_in_the_locks():
    """A library install gets ranges; the exact versions live in the locks."""
    for raw in PYPROJECT["project"]["dependencies"]:
        req = Requirement(raw)
        ops = {s.operator for s in req.specifier}
        assert "==" not in ops and ">=" in ops and "<" in ops, f"{raw}: give a >=,< range"


# --- resolution from the index, per Python (uv) --------------------------------------------


def index_url() -> str:
    return (
        os.environ.get("UV_DEFAULT_INDEX")
        or os.environ.get("UV_INDEX_URL")
        or "https://pypi.org/simple"
    )


@pytest.fixture(scope="module")
def index_reachable() -> None:
    """Skip (naming why) where the package index does not answer within 5 seconds."""
    url = index_url().rstrip("/") + "/uv/"
    try:
        with urllib.request.urlopen(url, timeout=5) as reply:
            reply.read(1)
    except OSError as exc:
        pytest.skip(f"package index {index_url()} not reachable in 5 s ({exc})")


def dev_requirements() -> list[str]:
    """The requirements of cnnzoo[cpu,docker,dev], as pyproject.toml states them."""
    extras = PYPROJECT["project"]["optional-dependencies"]
    return PYPROJECT["project"]["dependencies"] + [
        r for extra in ("cpu", "docker", "dev") for r in extras[extra]
    ]


def resolve(python: str, tmp_path: Path, source: str) -> subprocess.CompletedProcess:
    """``uv pip compile`` for CPython ``python`` on x86-64 Linux, from the index alone (no
    lock to prefer): ``source`` "project" is pyproject.toml with the dev install's extras,
    "requirements" is the same requirement list without the project's requires-python."""
    uv = Path(sys.executable).parent / "uv"
    if source == "project":
        inputs = [str(ROOT / "pyproject.toml")]
        inputs += ["--extra", "cpu", "--extra", "docker", "--extra", "dev"]
    else:
        listed = tmp_path / "requirements.in"
        listed.write_text("".join(f"{r}\n" for r in dev_requirements()))
        inputs = [str(listed)]
    return subprocess.run(
        [str(uv), "pip", "compile", *inputs, "--quiet", "--no-header"]
        + ["--python-version", python, "--python-platform", "x86_64-unknown-linux-gnu"]
        + ["-o", str(tmp_path / "resolved.txt")],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )


@pytest.mark.index
@pytest.mark.parametrize("python", ["3.11", "3.12", "3.13"])
def test_the_dev_install_resolves_on_each_supported_python(python, index_reachable, tmp_path):
    assert python in supported_minors()
    done = resolve(python, tmp_path, "project")
    assert done.returncode == 0, f"Python {python}:\n{done.stderr}"
    pins = lock_pins(tmp_path / "resolved.txt")
    for name in ("tensorflow-cpu", "keras", "numpy", "kfp", "pytest", "uv"):
        assert name in pins, f"Python {python}: {name} not in the resolution {sorted(pins)}"


@pytest.mark.index
@pytest.mark.parametrize("python", ["3.10", "3.14"])
def test_the_dependencies_do_not_resolve_just_outside_the_range(python, index_reachable, tmp_path):
    """requires-python is no narrower than the dependencies make it: resolved without the
    project (whose own range uv would refuse first, proving nothing), they fail too."""
    assert python not in supported_minors()
    done = resolve(python, tmp_path, "requirements")
    assert done.returncode != 0, f"cnnzoo's dependencies resolve on Python {python}: widen"
    assert "No solution found" in done.stderr, done.stderr


def test_lock_pins_satisfy_pyproject():
    """Every requirement of cnnzoo[cpu,docker,dev] is pinned in the dev lock within its
    range (a dependency added to pyproject.toml without `make lock` fails here)."""
    pins = lock_pins(DEV_LOCK)
    for raw in dev_requirements():
        req = Requirement(raw)
        name = canonicalize_name(req.name)
        assert name in pins, f"requirements-dev.txt lacks {req.name}: run make lock"
        assert req.specifier.contains(Version(pins[name]), prereleases=True), (
            f"requirements-dev.txt pins {name}=={pins[name]} outside {raw}: run make lock"
        )


# --- make lint's checks that CI runs too ---------------------------------------------------


def lint_commands(tool: str) -> list[str]:
    """The ``make lint`` recipe lines that run ``tool`` from the venv (``make -n``)."""
    done = subprocess.run(["make", "-n", "lint"], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    recipe = done.stdout.replace("\\\n", " ")
    return [ln.strip() for ln in recipe.splitlines() if ln.strip().startswith(f".venv/bin/{tool} ")]


def shell_scripts() -> list[str]:
    """Tracked files that are shell scripts: a ``.sh`` name or a sh/bash shebang."""
    tracked = subprocess.run(
        ["git", "ls-files"], capture_output=True, text=True, cwd=ROOT, check=True
    ).stdout.split()
    found = []
    for name in tracked:
        path = ROOT / name
        if not path.is_file():
            continue
        with path.open("rb") as fh:
            first = fh.readline(200)
        if name.endswith(".sh") or re.match(rb"#!\s*\S*(/|env\s+)(ba)?sh\b", first):
            found.append(name)
    return sorted(found)


def test_shellcheck_covers_every_shell_script_and_passes():
    (call,) = lint_commands("shellcheck")
    linted = sorted(call.split()[1:])
    scripts = shell_scripts()
    assert {"images/build.sh", "tools/system-deps.sh", ".ci/run"} <= set(scripts), scripts
    assert linted == scripts, f"make lint's shellcheck misses {sorted(set(scripts) - set(linted))}"
    done = subprocess.run(call.split(), capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stdout + done.stderr


def test_shellcheck_finds_a_planted_problem(tmp_path):
    """Guards the check above against a shellcheck that checks nothing."""
    bad = tmp_path / "bad.sh"
    bad.write_text("#!/usr/bin/env bash\nrm -rf $1/*\n")
    shellcheck = Path(sys.executable).parent / "shellcheck"
    done = subprocess.run([str(shellcheck), str(bad)], capture_output=True, text=True)
    assert done.returncode != 0 and "SC2086" in done.stdout, done.stdout


def test_deptry_finds_every_import_declared():
    """Both deptry runs of make lint: the package, then tests/, tools/ and benchmarks/."""
    calls = lint_commands("deptry")
    assert len(calls) == 2 and calls[0].split()[1:] == ["cnnzoo", "components", "pipelines"]
    for call in calls:
        done = subprocess.run(call.split(), capture_output=True, text=True, cwd=ROOT)
        assert done.returncode == 0, f"{call}:\n{done.stdout}{done.stderr}"
