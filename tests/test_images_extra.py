"""``make images EXTRA_PACKAGES=...``: images/build.sh stages wheels and requirement
specifiers in the build context, the Dockerfile installs them under the lock."""

from __future__ import annotations

import shutil

import pytest
from test_images import ROOT, dockerfile_instructions, fake_engine, run_build

STAGE = ROOT / "images" / "extra-packages"


@pytest.fixture
def clean_stage():
    """Leave images/extra-packages/ as it was found (the build stages it afresh)."""
    saved = STAGE.with_name("extra-packages.saved")
    had = STAGE.exists()
    if had:
        STAGE.rename(saved)
    yield
    shutil.rmtree(STAGE, ignore_errors=True)
    if had:
        saved.rename(STAGE)


def test_wheels_and_specifiers_are_staged_for_both_images(tmp_path, clean_stage):
    log = fake_engine(tmp_path, "docker", info_ok=True)
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    (wheels / "cnnzoo_tinyplugin-0.1.0-py3-none-any.whl").write_bytes(b"PK fake")
    (wheels / "notes.txt").write_text("not a wheel")
    single = tmp_path / "other-2.0-py3-none-any.whl"
    single.write_bytes(b"PK fake")
    done = run_build(
        tmp_path,
        "build",
        IMAGE_REGISTRY="r",
        IMAGE_TAG="1.0.0",
        EXTRA_PACKAGES=f"mypkg==1.2 {wheels} {single}",
    )
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in STAGE.iterdir()) == [
        ".cnnzoo-staging",
        "cnnzoo_tinyplugin-0.1.0-py3-none-any.whl",
        "other-2.0-py3-none-any.whl",
        "requirements.txt",
    ]
    assert (STAGE / "requirements.txt").read_text() == "mypkg==1.2\n"
    assert len(log.read_text().splitlines()) == 2  # both flavours, from the same context

    # a later build without extras stages nothing
    assert run_build(tmp_path, "build", IMAGE_REGISTRY="r", IMAGE_TAG="1.0.0").returncode == 0
    assert sorted(p.name for p in STAGE.iterdir()) == [".cnnzoo-staging", "requirements.txt"]
    assert (STAGE / "requirements.txt").read_text() == ""


@pytest.mark.parametrize(
    ("item", "message"),
    [
        ("{tmp}/empty", "a folder without wheels"),
        ("{tmp}/missing.whl", "no such wheel file"),
        ("./some/path", "expected a requirement"),
    ],
)
def test_bad_extra_packages_are_refused_before_building(tmp_path, clean_stage, item, message):
    (tmp_path / "empty").mkdir()
    log = fake_engine(tmp_path, "docker", info_ok=True)
    done = run_build(
        tmp_path,
        "build",
        IMAGE_REGISTRY="r",
        IMAGE_TAG="1.0.0",
        EXTRA_PACKAGES=item.format(tmp=tmp_path),
    )
    assert done.returncode == 1 and message in done.stderr
    assert not log.exists()


def test_a_folder_build_sh_did_not_stage_is_left_alone(tmp_path, clean_stage):
    STAGE.mkdir()
    (STAGE / "mine.txt").write_text("a user's file")
    log = fake_engine(tmp_path, "docker", info_ok=True)
    done = run_build(tmp_path, "build", IMAGE_REGISTRY="r", IMAGE_TAG="1.0.0")
    assert done.returncode == 1 and "is not images/build.sh's staging folder" in done.stderr
    assert (STAGE / "mine.txt").read_text() == "a user's file" and not log.exists()


def test_the_builder_installs_the_staged_packages_under_the_lock():
    runs = [args for kw, args in dockerfile_instructions() if kw == "RUN"]
    (install,) = [r for r in runs if "extra-packages" in r]
    assert '-c "images/requirements-${FLAVOR}.txt"' in install
    assert "--find-links images/extra-packages" in install and "pip check" in install
    copies = [args for kw, args in dockerfile_instructions() if kw == "COPY"]
    assert "images/extra-packages ./images/extra-packages" in copies
