"""The compiled pipeline: its DAG, placement, retries, images and parameters, read back
through the ``PipelineSpec`` and kubernetes ``PlatformSpec`` protos; and cluster.yaml
validation."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml
from google.protobuf import json_format
from kfp.kubernetes import kubernetes_executor_config_pb2 as k8s_pb2
from kfp.pipeline_spec import pipeline_spec_pb2

from cnnzoo.cli import main
from cnnzoo.errors import CnnzooError
from cnnzoo.models import list_models
from cnnzoo.pipeline_runner import compile_pipeline
from cnnzoo.placement import load_placement, placement_from_dict

IMAGE = "registry.test/cnnzoo:t1"
GPU_IMAGE = "registry.test/cnnzoo-gpu:t1"
REPO = Path(__file__).resolve().parent.parent
CLUSTER = REPO / "configs" / "cluster.yaml"


def _load(path: Path):
    docs = list(yaml.safe_load_all(path.read_text()))
    spec = json_format.ParseDict(docs[0], pipeline_spec_pb2.PipelineSpec())
    platform = json_format.ParseDict(docs[1], pipeline_spec_pb2.PlatformSpec())
    k8s = {
        name: json_format.ParseDict(
            json_format.MessageToDict(struct), k8s_pb2.KubernetesExecutorConfig()
        )
        for name, struct in platform.platforms["kubernetes"].deployment_spec.executors.items()
    }
    executors = {
        name: json_format.ParseDict(
            json_format.MessageToDict(struct),
            pipeline_spec_pb2.PipelineDeploymentConfig.ExecutorSpec(),
        )
        for name, struct in spec.deployment_spec["executors"].items()
    }
    return spec, k8s, executors


@pytest.fixture(scope="module")
def compiled(tmp_path_factory):
    out = tmp_path_factory.mktemp("compile") / "cnn_comparison.yaml"
    compile_pipeline(out, image=IMAGE, gpu_image=GPU_IMAGE, placement=CLUSTER)
    return _load(out)


def _tasks(spec):
    """Every task of every DAG: name -> (task spec, the DAG component it sits in)."""
    out = {}
    dags = [("root", spec.root)] + [
        (n, c) for n, c in spec.components.items() if c.WhichOneof("implementation") == "dag"
    ]
    for dag_name, comp in dags:
        for name, task in comp.dag.tasks.items():
            out[name] = (task, dag_name)
    return out


def _executor_of(spec, task):
    return spec.components[task.component_ref.name].executor_label


def _train_tasks(spec):
    return {
        name: task
        for name, (task, _) in _tasks(spec).items()
        if task.task_info.name.startswith("train (")
    }


def test_dag_fans_out_over_models_and_fans_in_to_report(compiled):
    spec, _, _ = compiled
    placement = load_placement(CLUSTER)
    root = spec.root.dag.tasks
    loops = [t for t in root.values() if t.WhichOneof("iterator")]
    assert len(loops) == 1
    loop = loops[0]
    assert loop.parameter_iterator.items.input_parameter == "pipelinechannel--models"
    assert loop.iterator_policy.parallelism_limit == placement.parallelism
    assert set(loop.dependent_tasks) == {"split"}

    report = root["report"]
    evaluations = report.inputs.artifacts["evaluations"].task_output_artifact
    loop_name = next(n for n, t in root.items() if t.WhichOneof("iterator"))
    assert evaluations.producer_task == loop_name
    report_inputs = spec.components[report.component_ref.name].input_definitions
    assert report_inputs.artifacts["evaluations"].is_artifact_list
    # the loop's output is the evaluate task's evaluation, collected across iterations
    loop_dag = spec.components[loop.component_ref.name].dag
    selector = loop_dag.outputs.artifacts[evaluations.output_artifact_key].artifact_selectors
    assert [s.producer_subtask for s in selector] == ["evaluate"]
    assert selector[0].output_artifact_key == "evaluation"
    # ingest -> split -> loop -> report
    assert list(root["split"].dependent_tasks) == ["ingest"]
    assert "ingest" in root["report"].dependent_tasks


def test_default_parameters(compiled):
    spec, _, _ = compiled
    params = spec.root.input_definitions.parameters
    assert [
        v.string_value for v in params["models"].default_value.list_value.values
    ] == list_models()
    assert len(list_models()) == 14
    assert params["data_uri"].default_value.string_value == "demo"
    assert params["profile"].default_value.string_value == "demo"
    assert params["seed"].default_value.number_value == 42
    assert params["tensorboard_root"].default_value.string_value == ""
    assert params["output_uri"].default_value.string_value == ""
    assert list(params["overrides"].default_value.list_value.values) == []


def test_output_uri_reaches_every_train_task_and_the_report(compiled):
    spec, _, _ = compiled
    tasks = _tasks(spec)
    takers = {
        name
        for name, (task, _) in tasks.items()
        if "output_uri" in task.inputs.parameters
        and spec.components[task.component_ref.name].WhichOneof("implementation") != "dag"
    }
    assert takers == {"report", *_train_tasks(spec)} == {"report", "train", "train-2"}
    for name in takers:
        task, _ = tasks[name]
        # the run's parameter, handed down (inside the loop and branches as a channel)
        source = task.inputs.parameters["output_uri"].component_input_parameter
        assert source in ("output_uri", "pipelinechannel--output_uri"), name


def test_train_tasks_are_placed_per_pool_with_retries(compiled):
    spec, k8s, executors = compiled
    placement = load_placement(CLUSTER)
    trains = _train_tasks(spec)
    pools = {task.task_info.name[len("train (") : -1]: task for task in trains.values()}
    assert set(pools) == set(placement.train_pool_names()) == {"gpu-small", "gpu-large"}
    for pool_name, task in pools.items():
        pool = placement.pools[pool_name]
        executor = _executor_of(spec, task)
        res = executors[executor].container.resources
        assert res.accelerator.resource_type == "nvidia.com/gpu"
        assert res.accelerator.resource_count == str(pool.accelerator_count)
        assert executors[executor].container.image == GPU_IMAGE
        assert dict(k8s[executor].node_selector.labels) == {
            "cloud.google.com/gke-accelerator": pool.accelerator_type
        }
        tolerations = [json_format.MessageToDict(t) for t in k8s[executor].tolerations]
        assert tolerations == [
            {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
        ]
        retry = task.retry_policy
        assert retry.max_retry_count == 3
        assert retry.backoff_duration.seconds == 60
        assert retry.backoff_factor == 2.0
        assert retry.backoff_max_duration.seconds == 600
        assert not task.caching_options.enable_cache
    # the large backbones and the small custom CNNs really go to different GPU types
    assert placement.pool_for_model("xception_finetune").accelerator_type == "nvidia-l4"
    assert placement.pool_for_model("simple").accelerator_type == "nvidia-tesla-t4"


def test_branches_route_each_model_to_its_pool(compiled):
    spec, _, _ = compiled
    tasks = _tasks(spec)
    route, _ = tasks["pool-for-model"]
    route_args = route.inputs.parameters
    model_pools = json_format.MessageToDict(route_args["model_pools"].runtime_value.constant)
    assert model_pools["simple"] == "gpu-small"
    assert model_pools["xception_partial"] == "gpu-large"
    assert set(model_pools) == set(list_models())
    conditions = {
        name: task.trigger_policy.condition
        for name, (task, _) in tasks.items()
        if task.trigger_policy.condition
    }
    assert len(conditions) == 2
    texts = sorted(conditions.values())
    assert "pool-for-model-Output" in texts[0] and "'gpu-small'" in texts[0]
    # evaluate takes the model from whichever branch ran
    evaluate, _ = tasks["evaluate"]
    source = evaluate.inputs.artifacts["model"].task_output_artifact
    assert source.producer_task.startswith("condition-branches")


def test_every_task_has_requests_and_limits_and_the_right_image(compiled):
    spec, k8s, executors = compiled
    placement = load_placement(CLUSTER)
    assert len(executors) == 7  # ingest, split, route, train x2, evaluate, report
    for name, ex in executors.items():
        res = ex.container.resources
        assert res.resource_cpu_request and res.resource_cpu_limit, name
        assert res.resource_memory_request and res.resource_memory_limit, name
        gpu = bool(res.accelerator.resource_type)
        assert ex.container.image == (GPU_IMAGE if gpu else IMAGE), name
        assert gpu == (name in k8s), name
    evaluate_pool = placement.pool_for_step("evaluate")
    eval_res = executors["exec-evaluate"].container.resources
    assert eval_res.resource_cpu_request == evaluate_pool.cpu
    assert eval_res.resource_memory_limit == evaluate_pool.memory_limit
    cpu = placement.pools["cpu"]
    assert executors["exec-ingest"].container.resources.resource_memory_request == cpu.memory


def test_caching_on_for_deterministic_steps(compiled):
    spec, _, _ = compiled
    tasks = _tasks(spec)
    for name in ("ingest", "split", "evaluate", "pool-for-model"):
        assert tasks[name][0].caching_options.enable_cache, name
    assert not tasks["report"][0].caching_options.enable_cache


def test_single_pool_placement_compiles_without_branches(tmp_path):
    data = yaml.safe_load(CLUSTER.read_text())
    data["model_pools"] = {}
    data["parallelism"] = 2
    cfg = tmp_path / "one.yaml"
    cfg.write_text(yaml.safe_dump(data))
    out = compile_pipeline(tmp_path / "p.yaml", image=IMAGE, gpu_image=GPU_IMAGE, placement=cfg)
    spec, k8s, executors = _load(out)
    tasks = _tasks(spec)
    assert "pool-for-model" not in tasks
    assert not any(t.trigger_policy.condition for t, _ in tasks.values())
    (train,) = _train_tasks(spec).values()
    assert train.task_info.name == "train (gpu-large)"
    labels = dict(k8s[_executor_of(spec, train)].node_selector.labels)
    assert labels == {"cloud.google.com/gke-accelerator": "nvidia-l4"}
    loop = next(t for t in spec.root.dag.tasks.values() if t.WhichOneof("iterator"))
    assert loop.iterator_policy.parallelism_limit == 2


# A fake key: the PEM armour is assembled at run time so the repository's own secret
# scan (tests/test_manifests.py) does not mistake this file for one holding a key.
_PEM = "-----{} PRIVATE KEY-----"
FAKE_KEY = {
    "type": "service_account",
    "client_email": "leak-canary@test-project.iam.gserviceaccount.com",
    "private_key_id": "0123456789abcdef-leak-canary",
    "private_key": f"{_PEM.format('BEGIN')}\nLEAKCANARY\n{_PEM.format('END')}\n",
}


def test_gcp_secret_is_mounted_in_every_task_by_name_only(tmp_path, monkeypatch):
    # A real-looking key on the compiling machine must not leak into the pipeline.
    key_file = tmp_path / "key.json"
    key_file.write_text(json.dumps(FAKE_KEY))
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(key_file))
    data = _cluster()
    data["gcp_secret"] = {"name": "cnnzoo-gcp-sa", "key": "sa-key.json"}
    cfg = tmp_path / "secret.yaml"
    cfg.write_text(yaml.safe_dump(data))
    out = compile_pipeline(tmp_path / "p.yaml", image=IMAGE, gpu_image=GPU_IMAGE, placement=cfg)
    spec, k8s, executors = _load(out)

    assert len(executors) == 7
    assert set(k8s) == set(executors)  # every task, GPU or not, has a kubernetes config
    for name, ex in executors.items():
        (volume,) = k8s[name].secret_as_volume
        assert volume.secret_name_parameter.runtime_value.constant.string_value == "cnnzoo-gcp-sa"
        assert volume.mount_path == "/var/secrets/google", name
        assert not volume.optional, name
        env = {e.name: e.value for e in ex.container.env}
        assert env == {"GOOGLE_APPLICATION_CREDENTIALS": "/var/secrets/google/sa-key.json"}, name
    # placement still applied beside the secret
    train_executor = _executor_of(spec, next(iter(_train_tasks(spec).values())))
    assert k8s[train_executor].node_selector.labels

    text = out.read_text()
    for leak in ("private_key", "BEGIN PRIVATE KEY", "LEAKCANARY", "leak-canary", str(key_file)):
        assert leak not in text, leak
    assert text.count("cnnzoo-gcp-sa") >= len(executors)

    placement = load_placement(cfg)
    assert placement.without_retries().gcp_secret == placement.gcp_secret
    # kfp.local would set the env var to a path that exists only in pods
    assert placement.for_local_run().gcp_secret is None


def test_compiling_imports_no_tensorflow(tmp_path):
    code = textwrap.dedent(
        f"""
        import sys
        from cnnzoo.pipeline_runner import compile_pipeline
        compile_pipeline({str(tmp_path / "p.yaml")!r})
        heavy = sorted(m for m in ("tensorflow", "keras") if m in sys.modules)
        print("HEAVY", heavy)
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=tmp_path
    )
    assert proc.returncode == 0, proc.stderr
    assert "HEAVY []" in proc.stdout
    assert (tmp_path / "p.yaml").stat().st_size > 10_000


def test_cli_compile(tmp_path, capsys):
    out = tmp_path / "sub" / "cnn.yaml"
    rc = main(["compile", "--out", str(out), "--image", IMAGE, "--gpu-image", GPU_IMAGE])
    assert rc == 0
    assert f"compiled: {out}" in capsys.readouterr().out
    spec, _, executors = _load(out)
    assert spec.pipeline_info.name == "cnn-comparison"
    assert {e.container.image for e in executors.values()} == {IMAGE, GPU_IMAGE}


def test_cli_compile_bad_placement(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        CLUSTER.read_text().replace("default_model_pool: gpu-large", "default_model_pool: tpu")
    )
    rc = main(["compile", "--out", str(tmp_path / "x.yaml"), "--placement", str(bad)])
    err = capsys.readouterr().err
    assert rc == 1
    assert err.startswith("error: ") and "default_model_pool" in err and "'tpu'" in err
    assert not (tmp_path / "x.yaml").exists()


# --- cluster.yaml validation -------------------------------------------------------------


def _cluster() -> dict:
    return yaml.safe_load(CLUSTER.read_text())


@pytest.mark.parametrize(
    "edit, key",
    [
        (lambda d: d.update(paralelism=3), "paralelism"),
        (lambda d: d.update(parallelism=-1), "parallelism"),
        (lambda d: d["retries"].update(backoff="soon"), "retries.backoff"),
        (lambda d: d["retries"].update(count=1.5), "retries.count"),
        (lambda d: d["pools"]["gpu-large"].update(memory="lots"), "pools.gpu-large.memory"),
        (lambda d: d["pools"]["gpu-large"].update(accelerator_count=0), "accelerator_count"),
        (lambda d: d["pools"]["cpu"].update(accelerator_type="nvidia-l4"), "pools.cpu"),
        (lambda d: d["pools"]["gpu-small"].update(gpus=1), "pools.gpu-small.gpus"),
        (lambda d: d["steps"].update(train="cpu"), "steps.train"),
        (lambda d: d["steps"].pop("evaluate"), "steps.evaluate"),
        (lambda d: d["steps"].update(report="huge"), "steps.report"),
        (lambda d: d["model_pools"].update(vgg16="gpu-small"), "model_pools.vgg16"),
        (lambda d: d["model_pools"].update(simple="gpu-tiny"), "model_pools.simple"),
        (
            lambda d: d["pools"]["gpu-small"]["tolerations"][0].update(effect="Never"),
            "pools.gpu-small.tolerations[0].effect",
        ),
        (lambda d: d.update(gcp_secret="cnnzoo-gcp-sa"), "gcp_secret"),
        (lambda d: d.update(gcp_secret={"name": "Bad_Name", "key": "k.json"}), "gcp_secret.name"),
        (lambda d: d.update(gcp_secret={"name": "sa"}), "gcp_secret.key"),
        (lambda d: d.update(gcp_secret={"name": "sa", "key": "a/b"}), "gcp_secret.key"),
        (
            lambda d: d.update(gcp_secret={"name": "sa", "key": "k", "mount": "/x"}),
            "gcp_secret.mount",
        ),
    ],
)
def test_placement_errors_name_the_key(edit, key):
    data = _cluster()
    edit(data)
    with pytest.raises(CnnzooError) as e:
        placement_from_dict(data)
    assert key in str(e.value)
    assert "\n" not in str(e.value)


def test_placement_defaults_for_an_accelerator_pool():
    data = _cluster()
    data["pools"]["gpu-large"] = {
        "accelerator": "nvidia.com/gpu",
        "accelerator_type": "nvidia-a100-80gb",
        "accelerator_count": 2,
        "cpu": "12",
        "memory": "85G",
    }
    placement = placement_from_dict(data)
    pool = placement.pool_for_model("resnet50v2_transfer")
    assert pool.node_selector == {"cloud.google.com/gke-accelerator": "nvidia-a100-80gb"}
    assert pool.tolerations == (
        {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"},
    )
    assert (pool.accelerator_count, pool.cpu_limit, pool.memory_limit) == (2, "12", "85G")
    assert placement.pool_for_model("simple").name == "gpu-small"


@pytest.mark.parametrize("field", ["name", "key"])
def test_gcp_secret_error_does_not_echo_a_pasted_key(field):
    data = _cluster()
    data["gcp_secret"] = {"name": "cnnzoo-gcp-sa", "key": "key.json"}
    data["gcp_secret"][field] = json.dumps(FAKE_KEY)
    with pytest.raises(CnnzooError, match=f"gcp_secret.{field}") as e:
        placement_from_dict(data)
    assert "LEAKCANARY" not in str(e.value) and "private_key" not in str(e.value)


def test_placement_file_errors(tmp_path):
    with pytest.raises(CnnzooError, match="placement file not found"):
        load_placement(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("pools: [unclosed")
    with pytest.raises(CnnzooError, match="bad.yaml: not valid YAML"):
        load_placement(bad)


def test_ui_outputs_tensorboard_metadata_and_confusion_matrices(compiled):
    spec, _, _ = compiled
    tasks = _tasks(spec)
    report_comp = spec.components[tasks["report"][0].component_ref.name]
    report_outputs = report_comp.output_definitions
    # the v1-style viewer file is a parameter output named exactly as the KFP UI expects
    assert "mlpipeline_ui_metadata" in report_outputs.parameters
    assert report_outputs.artifacts["html"].artifact_type.schema_title == "system.HTML"
    assert report_outputs.artifacts["markdown"].artifact_type.schema_title == "system.Markdown"
    eval_comp = spec.components[tasks["evaluate"][0].component_ref.name]
    arts = eval_comp.output_definitions.artifacts
    assert arts["confusion"].artifact_type.schema_title == "system.ClassificationMetrics"
    assert arts["metrics"].artifact_type.schema_title == "system.Metrics"
