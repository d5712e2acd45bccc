"""``cnnzoo submit`` against a loopback server speaking the KFP v2beta1 REST API."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest
import yaml

from cnnzoo.cli import main
from cnnzoo.models import list_models
from cnnzoo.pipeline_runner import compile_pipeline

REPO = Path(__file__).resolve().parent.parent
IMAGE = "registry.test/cnnzoo:t9"
GPU_IMAGE = "registry.test/cnnzoo-gpu:t9"


class FakeKfp:
    """Records requests; answers healthz, experiments (get/create) and run creation."""

    def __init__(self):
        self.requests: list[dict] = []
        self.experiments: dict[str, dict] = {}
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep test output quiet
                pass

            def _reply(self, status: int, body: dict) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _record(self) -> dict:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                url = urlparse(self.path)
                entry = {
                    "method": self.command,
                    "path": url.path,
                    "query": parse_qs(url.query),
                    "body": json.loads(raw) if raw else None,
                }
                fake.requests.append(entry)
                return entry

            def do_GET(self):
                req = self._record()
                if req["path"] == "/apis/v2beta1/healthz":
                    return self._reply(200, {"commit_sha": "test", "tag_name": "2.5.0"})
                if req["path"] == "/apis/v2beta1/experiments":
                    filt = json.loads(req["query"].get("filter", ["{}"])[0])
                    wanted = [
                        p.get("string_value") or p.get("stringValue")
                        for p in filt.get("predicates", [])
                    ]
                    found = [e for n, e in fake.experiments.items() if n in wanted]
                    return self._reply(200, {"experiments": found, "total_size": len(found)})
                if req["path"].startswith("/apis/v2beta1/experiments/"):
                    exp_id = req["path"].rsplit("/", 1)[-1]
                    for e in fake.experiments.values():
                        if e["experiment_id"] == exp_id:
                            return self._reply(200, e)
                return self._reply(404, {"error": "not found", "code": 5})

            def do_POST(self):
                req = self._record()
                body = req["body"] or {}
                if req["path"] == "/apis/v2beta1/experiments":
                    exp = {
                        "experiment_id": f"exp-{len(fake.experiments) + 1}",
                        "display_name": body.get("display_name"),
                        "namespace": body.get("namespace"),
                    }
                    fake.experiments[exp["display_name"]] = exp
                    return self._reply(200, exp)
                if req["path"] == "/apis/v2beta1/runs":
                    run = dict(body, run_id="run-1234", state="PENDING")
                    return self._reply(200, run)
                return self._reply(404, {"error": "not found", "code": 5})

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


@pytest.fixture
def kfp_server():
    with FakeKfp() as server:
        yield server


def _run_requests(server: FakeKfp) -> list[dict]:
    return [r for r in server.requests if r["method"] == "POST" and r["path"].endswith("/runs")]


def test_submit_sends_the_compiled_pipeline_and_parameters(kfp_server, capsys, tmp_path):
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
        r
        for r in kfp_server.requests
        if r["method"] == "POST" and r["path"].endswith("/experiments")
    ]
    assert [e["body"]["display_name"] for e in experiments] == ["cnn-study"]
    (run,) = _run_requests(kfp_server)
    body = run["body"]
    assert body["display_name"] == "study-1"
    assert body["experiment_id"] == "exp-1"
    params = body["runtime_config"]["parameters"]
    profile = json.loads(params.pop("profile"))
    assert params == {
        "data_uri": "gs://bucket/flowers.tar.gz",
        "models": ["simple", "xception_partial"],
        "tensorboard_root": "gs://bucket/tb",
        "output_uri": "gs://bucket/studies/one",
    }
    # the profile travels resolved: name, --set and --seed applied on this side
    full = yaml.safe_load((REPO / "configs" / "profiles" / "full.yaml").read_text())
    assert profile["name"] == "full"
    assert (profile["max_epochs"], profile["seed"]) == (3, 7)
    assert profile["img_size"] == full["img_size"] == 100
    # the request carries exactly what `cnnzoo compile` writes for the same settings
    compiled = list(
        yaml.safe_load_all(
            compile_pipeline(tmp_path / "p.yaml", image=IMAGE, gpu_image=GPU_IMAGE).read_text()
        )
    )
    assert body["pipeline_spec"]["pipeline_spec"] == compiled[0]
    assert body["pipeline_spec"]["platform_spec"] == compiled[1]
    spec = body["pipeline_spec"]["pipeline_spec"]
    assert spec["pipelineInfo"]["name"] == "cnn-comparison"
    default_models = spec["root"]["inputDefinitions"]["parameters"]["models"]["defaultValue"]
    assert default_models == list_models()
    images = {e["container"]["image"] for e in spec["deploymentSpec"]["executors"].values()}
    assert images == {IMAGE, GPU_IMAGE}
    k8s = compiled[1]["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    assert any("nodeSelector" in ex for ex in k8s.values())


def test_submit_reuses_an_existing_experiment_and_defaults(kfp_server, capsys):
    assert main(["submit", "--host", kfp_server.url, "--image", IMAGE]) == 0
    assert main(["submit", "--host", kfp_server.url, "--image", IMAGE]) == 0
    capsys.readouterr()
    creates = [
        r
        for r in kfp_server.requests
        if r["method"] == "POST" and r["path"].endswith("/experiments")
    ]
    assert len(creates) == 1
    runs = _run_requests(kfp_server)
    assert len(runs) == 2
    params = runs[0]["body"]["runtime_config"]["parameters"]
    assert params["models"] == list_models()
    assert params["data_uri"] == "demo" and json.loads(params["profile"])["name"] == "demo"
    assert params["output_uri"] == ""
    # caching as compiled: ingest reuses its outputs while the data fingerprint matches
    executors = runs[0]["body"]["pipeline_spec"]["pipeline_spec"]["root"]["dag"]["tasks"]
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
    profile = json.loads(run["body"]["runtime_config"]["parameters"]["profile"])
    assert profile["batch_size"] == 9  # --set applies after --config
    assert profile["models"]["simple"]["learning_rate"] == 0.05
    tasks = _all_tasks(run["body"]["pipeline_spec"]["pipeline_spec"])
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
