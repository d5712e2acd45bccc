"""``cnnzoo upload``: the compiled pipeline as a named pipeline with a version named after
cnnzoo's version and git commit, against a loopback KFP pipelines API."""

from __future__ import annotations

import re

import pytest
import yaml
from helpers import cli_error
from kfp_fixtures import AuthProxy, FakeKfpPipelines

from cnnzoo import __version__
from cnnzoo.cli.main import main
from cnnzoo.orchestration.cluster import default_version_name, source_revision

IMAGES = ["--image", "registry.test/cnnzoo:t9", "--gpu-image", "registry.test/cnnzoo-gpu:t9"]


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch, tmp_path):
    for var in ("CNNZOO_KFP_TOKEN", "CNNZOO_KFP_COOKIES", "CNNZOO_IMAGE", "CNNZOO_GPU_IMAGE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("KF_PIPELINES_SA_TOKEN_PATH", str(tmp_path / "no-sa-token"))


def test_the_version_name_is_the_package_version_and_the_commit():
    rev = source_revision()
    assert re.fullmatch(r"[0-9a-f]{12}(-dirty)?", rev), rev  # the tests run in a checkout
    assert default_version_name() == f"{__version__}-{rev}"


def test_upload_creates_the_pipeline_then_adds_versions(capsys):
    with FakeKfpPipelines() as server:
        argv = ["upload", "--host", server.url, *IMAGES]
        assert main([*argv, "--profile", "full"]) == 0
        out = capsys.readouterr().out.splitlines()
        assert out[0] == "pipeline: cnn-comparison (pipe-1)"
        assert out[1] == f"version: {default_version_name()} (pipe-1-v2)"
        assert (
            out[2] == f"start a run from: {server.url}/#/pipelines/details/pipe-1/version/pipe-1-v2"
        )
        # the pipeline exists now: a second upload is a new version of it
        assert main([*argv, "--version-name", "try-2"]) == 0
        capsys.readouterr()
        # the same version name again is refused in one line
        line = cli_error(capsys, [*argv, "--version-name", "try-2"])
        assert line == (
            f"error: uploading to {server.url} failed: pipeline 'cnn-comparison' already has a "
            "version 'try-2'; pass --version-name"
        )
    assert server.pipelines["cnn-comparison"]["versions"] == [
        "cnn-comparison",
        default_version_name(),
        "try-2",
    ]
    # what was uploaded is the compiled pipeline: the given images, the compiled-in profile
    name, version, data = server.uploads[1]
    spec = next(yaml.safe_load_all(data.decode()))
    images = {e["container"]["image"] for e in spec["deploymentSpec"]["executors"].values()}
    assert images == {"registry.test/cnnzoo:t9", "registry.test/cnnzoo-gpu:t9"}
    params = spec["root"]["inputDefinitions"]["parameters"]
    assert params["img_size"]["defaultValue"] == 100  # --profile full
    assert params["weights"]["defaultValue"] == "imagenet"


def test_upload_refuses_placeholder_images_offline_and_needs_a_login(capsys):
    with AuthProxy(FakeKfpPipelines(), "tok", "c") as proxy:
        line = cli_error(capsys, ["upload", "--host", proxy.url])
        assert "placeholder" in line and "--image" in line
        assert proxy.requests == []
        line = cli_error(capsys, ["upload", "--host", proxy.url, *IMAGES])
        assert "it answered 401" in line and "CNNZOO_KFP_TOKEN" in line
        assert main(["upload", "--host", proxy.url, *IMAGES, "--token", "tok"]) == 0
    assert proxy.inner.pipelines
