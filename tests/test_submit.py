"""``cnnzoo submit`` against a loopback server speaking the KFP v2beta1 REST API."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from kfp_fixtures import FakeKfp, Request

from cnnzoo.cli.main import main
from cnnzoo.models.registry import list_models

REPO = Path(__file__).resolve().parent.parent
RECORDED_REQUEST = Path(__file__).parent / "fixtures" / "submit_request.json"
IMAGE = "registry.test/cnnzoo:t9"
GPU_IMAGE = "registry.test/cnnzoo-gpu:t9"


def request_view(body: dict) -> dict:
    """The parts of a run-creation request that say what runs where, as plain data."""
    spec = body["pipeline_spec"]["pipeline_spec"]
    params = dict(body["runtime_config"]["parameters"])
    profile = json.loads(params.pop("profile"))
    root = spec["root"]["dag"]["tasks"]
    dag_tasks = {
        name: task
        for comp in spec["components"].values()
        for name, task in comp.get("dag", {}).get("tasks", {}).items()
    }
    placements = root["plan"]["inputs"]["parameters"]["placements"]["runtimeValue"]["constant"]
    executors = spec["deploymentSpec"]["executors"]
    return {
        "display_name": body["display_name"],
        "experiment_id": body["experiment_id"],
        "service_account": body.get("service_account"),
        "parameters": params,
        "profile": {k: profile[k] for k in ("name", "max_epochs", "seed", "img_size", "weights")},
        "pipeline_name": spec["pipelineInfo"]["name"],
        "default_models": spec["root"]["inputDefinitions"]["parameters"]["models"]["defaultValue"],
        "root_tasks": {
            name: {
                "after": sorted(task.get("dependentTasks", [])),
                "cache": task.get("cachingOptions", {}).get("enableCache", False),
                "parallelism": task.get("iteratorPolicy", {}).get("parallelismLimit"),
            }
            for name, task in sorted(root.items())
        },
        "train_retry": dag_tasks["train"].get("retryPolicy"),
        "executors": {
            name: {
                "image": ex["container"]["image"],
                "cpu": ex["container"]["resources"].get("resourceCpuRequest"),
                "memory": ex["container"]["resources"].get("resourceMemoryRequest"),
                "accelerator": ex["container"]["resources"]
                .get("accelerator", {})
                .get("resourceType"),
            }
            for name, ex in sorted(executors.items())
        },
        "train_pools": {m: p["pool"] for m, p in sorted(placements.items())},
        "platform_spec": body["pipeline_spec"]["platform_spec"],
    }


@pytest.fixture(autouse=True)
def _images(monkeypatch):
    """The images a cluster can pull, from the environment (as a user would set them)."""
    monkeypatch.setenv("CNNZOO_IMAGE", IMAGE)
    monkeypatch.setenv("CNNZOO_GPU_IMAGE", GPU_IMAGE)
    for var in ("CNNZOO_KFP_TOKEN", "CNNZOO_KFP_COOKIES", "KF_PIPELINES_SA_TOKEN_PATH"):
        monkeypatch.delenv(var, raising=False)


@pytest.fixture
def kfp_server():
    with FakeKfp() as server:
        yield server


def _run_requests(server: FakeKfp) -> list[Request]:
    return [r for r in server.requests if r.method == "POST" and r.path.endswith("/runs")]


def test_submit_sends_the_compiled_pipeline_and_parameters(kfp_server, capsys):
    rc = main(
        [
            "submit",
            "--host",
            kfp_server.url,
            "--experiment",
            "cnn-study",
            "--data",
            "gs://bucket/flowers.tar.gz",
            "--models",
            "simple,xception_partial",
            "--profile",
            "full",
            "--set",
            "max_epochs=3",
            "--seed",
            "7",
            "--tensorboard-root",
            "gs://bucket/tb",
            "--output",
            "gs://bucket/studies/one/",
            "--image",
            IMAGE,
            "--gpu-image",
            GPU_IMAGE,
            "--run-name",
            "study-1",
        ]
    )
    out = capsys.readouterr().out
    assert rc == 0
    assert "run id: run-1234" in out
    assert f"run url: {kfp_server.url}/#/runs/details/run-1234" in out

    experiments = [
        r for r in kfp_server.requests if r.method == "POST" and r.path.endswith("/experiments")
    ]
    assert [e.body["display_name"] for e in experiments] == ["cnn-study"]
    (run,) = _run_requests(kfp_server)
    body = run.body
    assert body["display_name"] == "study-1"
    assert body["experiment_id"] == "exp-1"
    params = dict(body["runtime_config"]["parameters"])
    profile = json.loads(params.pop("profile"))
    assert params == {
        "data_uri": "gs://bucket/flowers.tar.gz",
        "models": ["simple", "xception_partial"],
        "tensorboard_root": "gs://bucket/tb",
        "output_uri": "gs://bucket/studies/one",
        # the typed parameters, as the resolved profile has them (--set, --seed applied)
        "max_epochs": 3,
        "img_size": 100,
        "batch_size": 258,
        "seed": 7,
        "repeats": 1,
        "weights": "imagenet",
    }
    # the profile travels resolved: name, --set and --seed applied on this side
    full = yaml.safe_load((REPO / "configs" / "profiles" / "full.yaml").read_text())
    assert profile["name"] == "full"
    assert (profile["max_epochs"], profile["seed"]) == (3, 7)
    assert profile["img_size"] == full["img_size"] == 100
    # the request, checked against values recorded by hand (not recompiled here)
    recorded = json.loads(RECORDED_REQUEST.read_text())
    recorded.pop("_about")
    assert request_view(body) == recorded
    assert len(body["pipeline_spec"]["pipeline_spec"]["components"]) >= 7


def test_submit_reuses_an_existing_experiment_and_defaults(kfp_server, capsys):
    assert main(["submit", "--host", kfp_server.url, "--image", IMAGE]) == 0
    assert main(["submit", "--host", kfp_server.url, "--image", IMAGE]) == 0
    capsys.readouterr()
    creates = [
        r for r in kfp_server.requests if r.method == "POST" and r.path.endswith("/experiments")
    ]
    assert len(creates) == 1
    runs = _run_requests(kfp_server)
    assert len(runs) == 2
    params = runs[0].body["runtime_config"]["parameters"]
    assert params["models"] == list_models()
    assert params["data_uri"] == "demo" and json.loads(params["profile"])["name"] == "demo"
    assert params["output_uri"] == ""
    # caching as compiled: ingest reuses its outputs while the data fingerprint matches
    executors = runs[0].body["pipeline_spec"]["pipeline_spec"]["root"]["dag"]["tasks"]
    assert executors["ingest"]["cachingOptions"] == {"enableCache": True}
    assert executors["fingerprint"]["cachingOptions"] == {}


def _all_tasks(spec: dict) -> dict:
    tasks = dict(spec["root"]["dag"]["tasks"])
    for comp in spec["components"].values():
        tasks.update(comp.get("dag", {}).get("tasks", {}))
    return tasks


def test_submit_no_cache_and_a_users_config_file(kfp_server, capsys, tmp_path):
    over = tmp_path / "over.yaml"
    over.write_text("batch_size: 7\nmodels: {simple: {learning_rate: 0.05}}\n")
    argv = ["submit", "--host", kfp_server.url, "--no-cache", "--config", str(over)]
    assert main([*argv, "--set", "batch_size=9"]) == 0
    capsys.readouterr()
    (run,) = _run_requests(kfp_server)
    profile = json.loads(run.body["runtime_config"]["parameters"]["profile"])
    assert profile["batch_size"] == 9  # --set applies after --config
    assert profile["models"]["simple"]["learning_rate"] == 0.05
    tasks = _all_tasks(run.body["pipeline_spec"]["pipeline_spec"])
    assert {"ingest", "split", "evaluate", "plan"} <= set(tasks)
    for name, task in tasks.items():
        assert not task.get("cachingOptions", {}).get("enableCache"), name


@pytest.mark.parametrize(
    "args, message",
    [
        (["--data", "./local/folder"], "--data"),
        (["--models", "simple,vgg"], "'vgg'"),
        (["--profile", "missing.yaml"], "missing.yaml"),
        (["--set", "batch_size=zero"], "batch_size"),
        (["--output", "results/study1"], "--output 'results/study1'"),
        (["--output", "s3://bucket/out"], "--output"),
        (["--output", "gs://"], "gs://"),
        (["--output", "gs://My_Bucket/out"], "'My_Bucket'"),
    ],
)
def test_submit_rejects_bad_arguments_before_contacting_the_server(
    kfp_server, capsys, args, message
):
    rc = main(["submit", "--host", kfp_server.url, *args])
    err = capsys.readouterr().err
    assert rc == 1
    assert err.startswith("error: ") and message in err
    assert kfp_server.requests == []


def test_submit_unreachable_host(capsys):
    with FakeKfp() as server:
        url = server.url
    rc = main(["submit", "--host", url])
    err = capsys.readouterr().err
    assert rc == 1
    assert err.startswith(f"error: submitting to {url} failed")


def test_submit_refuses_the_placeholder_images_before_contacting_the_server(
    kfp_server, capsys, monkeypatch
):
    monkeypatch.delenv("CNNZOO_GPU_IMAGE")
    rc = main(["submit", "--host", kfp_server.url, "--data", "gs://b/x"])
    err = capsys.readouterr().err
    assert rc == 1
    assert err.startswith("error: --gpu-image ghcr.io/example/cnnzoo/cnnzoo-gpu:")
    assert "make images push IMAGE_REGISTRY=" in err
    assert kfp_server.requests == []


def _sent_profile(server) -> dict:
    return json.loads(_run_requests(server)[-1].body["runtime_config"]["parameters"]["profile"])


def test_real_data_never_runs_the_demo_profile_silently(kfp_server, capsys, tmp_path):
    base = ["submit", "--host", kfp_server.url, "--data", "gs://bucket/photos"]
    # configs/cluster.yaml trains on accelerator pools: the gpu profile, said first
    assert main(base) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("profile: gpu (real data, train pools with accelerators (")
    sent = _sent_profile(kfp_server)
    assert (sent["name"], sent["img_size"], sent["weights"]) == ("gpu", 100, "imagenet")
    params = _run_requests(kfp_server)[-1].body["runtime_config"]["parameters"]
    assert (params["img_size"], params["weights"]) == (100, "imagenet")
    # CPU train pools: the notebook's study
    cpu_only = tmp_path / "cpu.yaml"
    cpu_only.write_text(
        "pools:\n  cpu: {cpu: '2', memory: 8G}\n"
        "steps: {ingest: cpu, split: cpu, report: cpu, evaluate: cpu}\n"
        "default_model_pool: cpu\n"
    )
    assert main([*base, "--placement", str(cpu_only)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert (
        out[0]
        == "profile: full (real data, train pools without accelerators; --profile names another)"
    )
    assert _sent_profile(kfp_server)["name"] == "full"
    # the demo profile stays available when asked for, and is the default for demo data
    assert main([*base, "--profile", "demo"]) == 0
    assert not capsys.readouterr().out.startswith("profile:")
    assert _sent_profile(kfp_server)["name"] == "demo"
    assert main(["submit", "--host", kfp_server.url]) == 0
    assert capsys.readouterr().out.startswith("profile: demo (the built-in demo data")
    assert _sent_profile(kfp_server)["name"] == "demo"
