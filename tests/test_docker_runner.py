"""``cnnzoo run --runner docker`` without an engine: its checks and its set-up of the run.

The run itself, in the image under a real engine, is the container tier's
(``tests/test_images_run.py::test_two_model_pipeline_under_the_docker_runner``).
"""

from __future__ import annotations

import os

import pytest
from helpers import cli_error

from cnnzoo.orchestration import docker as docker_runner


def test_no_engine_is_named_in_one_line_before_anything_starts(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("DOCKER_HOST", raising=False)
    monkeypatch.setattr(docker_runner, "DEFAULT_SOCKET", str(tmp_path / "no.sock"))
    runs = tmp_path / "runs"
    line = cli_error(
        capsys, ["run", "--runner", "docker", "--models", "simple", "--out", str(runs)]
    )
    assert "no container engine" in line and "DOCKER_HOST" in line
    assert not runs.exists()


def test_an_engine_that_does_not_answer_is_named(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path / 'dead.sock'}")
    line = cli_error(capsys, ["run", "--runner", "docker", "--out", str(tmp_path / "runs")])
    assert "does not answer" in line and "dead.sock" in line


def test_a_local_output_folder_is_refused(tmp_path, capsys):
    line = cli_error(
        capsys,
        ["run", "--runner", "docker", "--output", str(tmp_path / "o"), "--out", str(tmp_path)],
    )
    assert "--output" in line and "gs://" in line


def test_runner_settings_harden_the_containers(tmp_path, monkeypatch):
    monkeypatch.setenv("DOCKER_HOST", "unix:///nowhere.sock")
    root = tmp_path / "kfp"
    runner = docker_runner.docker_runner(root)
    args = runner.container_run_args
    assert args["read_only"] is True and args["network_mode"] == "none"
    assert args["cap_drop"] == ["ALL"] and args["security_opt"] == ["no-new-privileges"]
    assert "/tmp" in args["tmpfs"]
    if os.getuid() == 0:
        assert "user" not in args and root.stat().st_uid == docker_runner.IMAGE_UID
    else:
        assert args["user"] == f"{os.getuid()}:{os.getgid()}"
    networked = docker_runner.docker_runner(tmp_path / "k2", network=True)
    assert "network_mode" not in networked.container_run_args
    assert os.environ["DOCKER_HOST"] == "unix:///nowhere.sock"


def test_prepare_run_stages_local_data_and_logs_under_the_pipeline_root(tmp_path, monkeypatch):
    monkeypatch.setenv("DOCKER_HOST", "unix:///nowhere.sock")
    data = tmp_path / "flowers"
    (data / "train" / "a").mkdir(parents=True)
    (data / "train" / "a" / "x.jpg").write_bytes(b"jpeg")
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    arguments = {"data_uri": str(data), "tensorboard_root": str(run_dir / "tensorboard")}
    docker_runner.prepare_run(arguments, run_dir)
    staged = run_dir / "kfp" / "input" / "flowers"
    assert arguments["data_uri"] == str(staged)
    assert (staged / "train" / "a" / "x.jpg").read_bytes() == b"jpeg"
    assert arguments["tensorboard_root"] == str(run_dir / "kfp" / "tensorboard")
    assert (run_dir / "tensorboard").resolve() == run_dir / "kfp" / "tensorboard"


@pytest.mark.parametrize("uri", ["demo", "gs://bucket/data"])
def test_remote_and_demo_data_are_not_staged(tmp_path, uri):
    assert docker_runner.stage_input(uri, tmp_path) == uri
    assert not (tmp_path / "input").exists()
