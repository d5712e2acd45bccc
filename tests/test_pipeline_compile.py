"""The compiled pipeline: its DAG, placement, retries, images and parameters, read back
through the ``PipelineSpec`` and kubernetes ``PlatformSpec`` protos; and cluster.yaml
validation."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml
from google.protobuf import json_format
from helpers import cli_error
from kfp.kubernetes import kubernetes_executor_config_pb2 as k8s_pb2
from kfp.pipeline_spec import pipeline_spec_pb2

from cnnzoo.cli.main import main
from cnnzoo.core.errors import CnnzooError
from cnnzoo.models.registry import list_models
from cnnzoo.orchestration.cluster import compile_pipeline
from cnnzoo.orchestration.placement import GcpSecret, load_placement, placement_from_dict

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
        name: task for name, (task, _) in _tasks(spec).items() if task.task_info.name == "train"
    }


def _placeholder_input(text: str) -> str | None:
    m = re.fullmatch(r"\{\{\$\.inputs\.parameters\['([^']+)'\]\}\}", text)
    return m.group(1) if m else None


class _TrainPlacement:
    """Resolves, by walking the compiled spec alone, where one loop iteration's train task
    runs: plan record -> loop item field -> train-and-evaluate input -> train task input
    -> the executor's resources and kubernetes config."""

    def __init__(self, spec, k8s, executors):
        tasks = _tasks(spec)
        self.plan = tasks["plan"][0]
        self.model_task = next(t for t, _ in tasks.values() if t.task_info.name == "model")
        (self.train,) = _train_tasks(spec).values()
        self.executor = _executor_of(spec, self.train)
        self.resources = executors[self.executor].container.resources
        self.k8s = k8s[self.executor]

    def placements(self) -> dict:
        constant = self.plan.inputs.parameters["placements"].runtime_value.constant
        return json_format.MessageToDict(constant)

    def _from_record(self, sub_input: str, record: dict):
        binding = self.model_task.inputs.parameters[sub_input]
        assert binding.component_input_parameter.endswith("-loop-item"), sub_input
        field = re.fullmatch(
            r'parseJson\(string_value\)\["([^"]+)"\]', binding.parameter_expression_selector
        ).group(1)
        return record[field]

    def value(self, text: str, record: dict):
        """A resource field's value for ``record``: a constant, or traced to the record."""
        name = _placeholder_input(text)
        if name is None:
            return text
        sub_input = self.train.inputs.parameters[name].component_input_parameter
        return self._from_record(sub_input, record)

    def for_model(self, model: str) -> dict:
        record = {**self.placements()[model], "model": model}
        res = self.resources
        selector = self.k8s.node_selector
        if selector.HasField("node_selector_json"):
            labels = self._from_record(
                selector.node_selector_json.component_input_parameter, record
            )
        else:
            labels = dict(selector.labels)
        tolerations = []
        for tol in self.k8s.tolerations:
            if tol.HasField("toleration_json"):
                tolerations += self._from_record(
                    tol.toleration_json.component_input_parameter, record
                )
            else:
                tolerations.append(json_format.MessageToDict(tol))
        return {
            "accelerator": self.value(res.accelerator.resource_type, record),
            "accelerator_count": str(self.value(res.accelerator.resource_count, record)),
            "cpu": self.value(res.resource_cpu_request, record),
            "cpu_limit": self.value(res.resource_cpu_limit, record),
            "memory": self.value(res.resource_memory_request, record),
            "memory_limit": self.value(res.resource_memory_limit, record),
            "node_selector": labels,
            "tolerations": tolerations,
        }


def test_dag_fans_out_over_models_and_fans_in_to_report(compiled):
    spec, _, _ = compiled
    root = spec.root.dag.tasks
    loops = [t for t in root.values() if t.WhichOneof("iterator")]
    assert len(loops) == 1
    loop = loops[0]
    assert loop.parameter_iterator.items.input_parameter == "pipelinechannel--plan-Output"
    assert loop.iterator_policy.parallelism_limit == 4  # configs/cluster.yaml's parallelism
    assert set(loop.dependent_tasks) == {"plan", "split"}

    report = root["report"]
    evaluations = report.inputs.artifacts["evaluations"].task_output_artifact
    loop_name = next(n for n, t in root.items() if t.WhichOneof("iterator"))
    assert evaluations.producer_task == loop_name
    report_inputs = spec.components[report.component_ref.name].input_definitions
    assert report_inputs.artifacts["evaluations"].is_artifact_list
    # the loop's output is the evaluate task's evaluation, collected across iterations
    loop_dag = spec.components[loop.component_ref.name].dag
    (model_name,) = loop_dag.tasks
    selector = loop_dag.outputs.artifacts[evaluations.output_artifact_key].artifact_selectors
    assert [s.producer_subtask for s in selector] == [model_name]
    model_dag = spec.components[loop_dag.tasks[model_name].component_ref.name].dag
    (inner,) = model_dag.outputs.artifacts.values()
    assert [(s.producer_subtask, s.output_artifact_key) for s in inner.artifact_selectors] == [
        ("evaluate", "evaluation")
    ]
    assert list(model_dag.tasks["evaluate"].dependent_tasks) == ["train"]
    # fingerprint -> ingest -> split -> loop -> report
    assert list(root["ingest"].dependent_tasks) == ["fingerprint"]
    assert sorted(root["split"].dependent_tasks) == ["ingest", "resolve-profile"]
    assert "ingest" in root["report"].dependent_tasks


def test_default_parameters(compiled):
    spec, _, _ = compiled
    params = spec.root.input_definitions.parameters
    assert [
        v.string_value for v in params["models"].default_value.list_value.values
    ] == list_models()
    assert len(list_models()) == 14
    typed = {"max_epochs", "img_size", "batch_size", "seed", "repeats", "weights"}
    assert (
        set(params) == {"data_uri", "models", "profile", "tensorboard_root", "output_uri"} | typed
    )
    assert params["data_uri"].default_value.string_value == "demo"
    # the profile is data: the demo profile, resolved when compiling
    demo = yaml.safe_load((REPO / "configs" / "profiles" / "demo.yaml").read_text())
    profile = json.loads(params["profile"].default_value.string_value)
    assert profile["name"] == "demo"
    assert profile["img_size"] == demo.get("img_size", profile["img_size"])
    # the typed parameters a person edits in the UI: typed, defaults from that profile
    kinds = pipeline_spec_pb2.ParameterType
    for name in typed - {"weights"}:
        assert params[name].parameter_type == kinds.NUMBER_INTEGER, name
        expected = profile[name] if profile[name] is not None else 0  # max_epochs: no cap
        assert params[name].default_value.number_value == expected, name
    assert params["img_size"].default_value.number_value == 72
    assert params["weights"].parameter_type == kinds.STRING
    assert params["weights"].default_value.string_value == (profile["weights"] or "")
    assert "models" in profile and "simple" in profile["models"]
    assert params["tensorboard_root"].default_value.string_value == ""
    assert params["output_uri"].default_value.string_value == ""


def test_the_resolved_profile_reaches_the_tasks_as_data(compiled):
    spec, _, _ = compiled
    tasks = _tasks(spec)
    # the profile parameter and the typed ones meet in resolve-profile, whose output is
    # every later step's profile
    resolve, _ = tasks["resolve-profile"]
    for name in ("profile", "max_epochs", "img_size", "batch_size", "seed", "repeats", "weights"):
        assert resolve.inputs.parameters[name].component_input_parameter == name
    for name in ("split", "report", "plan"):
        task, _ = tasks[name]
        source = task.inputs.parameters["profile"].task_output_parameter
        assert (source.producer_task, source.output_parameter_key) == ("resolve-profile", "Output")
    # train gets it through its plan record (kfp.local parses a task output's JSON text
    # that reaches a loop body; a loop item's field stays text)
    model_task = next(t for t, _ in tasks.values() if t.task_info.name == "model")
    binding = model_task.inputs.parameters["profile"]
    assert binding.component_input_parameter.endswith("-loop-item")
    assert binding.parameter_expression_selector == 'parseJson(string_value)["profile"]'
    for name in ("split", "report", "train", "plan"):
        task, _ = tasks[name]
        assert "overrides" not in task.inputs.parameters
        if name != "train":
            assert "seed" not in task.inputs.parameters, name
    # The train seed is the plan record's (one record per model and repeat), not an override.
    train, _ = tasks["train"]
    assert train.inputs.parameters["seed"].component_input_parameter == "seed"
    model_task = next(t for t, _ in tasks.values() if t.task_info.name == "model")
    binding = model_task.inputs.parameters["seed"]
    assert binding.component_input_parameter.endswith("-loop-item")
    assert binding.parameter_expression_selector == 'parseJson(string_value)["seed"]'


def test_output_uri_reaches_every_train_task_and_the_report(compiled):
    spec, _, _ = compiled
    tasks = _tasks(spec)
    takers = {
        name
        for name, (task, _) in tasks.items()
        if "output_uri" in task.inputs.parameters
        and spec.components[task.component_ref.name].WhichOneof("implementation") != "dag"
    }
    assert takers == {"report", *_train_tasks(spec)} == {"report", "train"}
    for name in takers:
        task, _ = tasks[name]
        # the run's parameter, handed down (inside the loop as a channel)
        source = task.inputs.parameters["output_uri"].component_input_parameter
        assert source in ("output_uri", "pipelinechannel--output_uri"), name


# A placement written here, not read back through the loader that compiles it.
TWO_POOLS = """
parallelism: 3
retries: {count: 2, backoff: 30s, factor: 3, max: 300s}
pools:
  big:
    accelerator: nvidia.com/gpu
    accelerator_type: nvidia-a100-80gb
    accelerator_count: 2
    node_selector: {cnnzoo/pool: big}
    tolerations: [{key: nvidia.com/gpu, operator: Exists, effect: NoSchedule}]
    cpu: "12"
    memory: 80G
  small:
    accelerator: nvidia.com/gpu
    accelerator_type: nvidia-tesla-t4
    node_selector: {cnnzoo/pool: small}
    tolerations: [{key: dedicated, operator: Equal, value: t4, effect: NoExecute}]
    cpu: "4"
    memory: 16G
    memory_limit: 20G
  cpu: {cpu: "2", memory: 8G}
steps: {ingest: cpu, split: cpu, report: cpu, evaluate: small}
default_model_pool: big
model_pools: {simple: small}
"""
BIG = {
    "accelerator": "nvidia.com/gpu",
    "accelerator_count": "2",
    "cpu": "12",
    "cpu_limit": "12",
    "memory": "80G",
    "memory_limit": "80G",
    "node_selector": {"cnnzoo/pool": "big"},
    "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
}
SMALL = {
    "accelerator": "nvidia.com/gpu",
    "accelerator_count": "1",
    "cpu": "4",
    "cpu_limit": "4",
    "memory": "16G",
    "memory_limit": "20G",
    "node_selector": {"cnnzoo/pool": "small"},
    "tolerations": [
        {"key": "dedicated", "operator": "Equal", "value": "t4", "effect": "NoExecute"}
    ],
}


@pytest.fixture(scope="module")
def two_pools(tmp_path_factory):
    d = tmp_path_factory.mktemp("two_pools")
    (d / "cluster.yaml").write_text(TWO_POOLS)
    out = compile_pipeline(
        d / "p.yaml", image=IMAGE, gpu_image=GPU_IMAGE, placement=d / "cluster.yaml"
    )
    return _load(out)


def test_one_train_task_per_iteration_placed_from_the_loop_item(two_pools):
    spec, k8s, executors = two_pools
    placement = _TrainPlacement(spec, k8s, executors)
    # two models on two pools, one loop, one train task serving both
    assert placement.for_model("simple") == SMALL
    assert placement.for_model("mid") == BIG
    assert placement.for_model("xception_finetune") == BIG
    assert executors[placement.executor].container.image == GPU_IMAGE
    retry = placement.train.retry_policy
    assert (retry.max_retry_count, retry.backoff_duration.seconds) == (2, 30)
    assert (retry.backoff_factor, retry.backoff_max_duration.seconds) == (3.0, 300)
    assert not placement.train.caching_options.enable_cache
    # the plan is made from the run's `models` parameter, before the loop
    assert placement.plan.inputs.parameters["models"].component_input_parameter == "models"
    loop = next(t for t in spec.root.dag.tasks.values() if t.WhichOneof("iterator"))
    assert loop.parameter_iterator.items.input_parameter == "pipelinechannel--plan-Output"
    assert loop.iterator_policy.parallelism_limit == 3
    assert "plan" in loop.dependent_tasks


def test_no_branches_no_routing_task(two_pools):
    spec, _, executors = two_pools
    tasks = _tasks(spec)
    assert not any(t.trigger_policy.condition for t, _ in tasks.values())
    assert not any(n.startswith("condition") for n in tasks)
    assert "pool-for-model" not in tasks
    assert [t.task_info.name for t, _ in tasks.values()].count("train") == 1
    assert [t.task_info.name for t, _ in tasks.values()].count("evaluate") == 1
    # fingerprint, resolve-profile, plan, ingest, split, train, evaluate, report
    assert len(executors) == 8


def test_single_pool_placement_compiles_constants(tmp_path):
    cfg = tmp_path / "one.yaml"
    cfg.write_text(TWO_POOLS.replace("model_pools: {simple: small}", "model_pools: {}"))
    out = compile_pipeline(tmp_path / "p.yaml", image=IMAGE, gpu_image=GPU_IMAGE, placement=cfg)
    spec, k8s, executors = _load(out)
    placement = _TrainPlacement(spec, k8s, executors)
    res = placement.resources
    # every KFP 2.x backend honours constants: nothing here needs run-time resolution
    assert _placeholder_input(res.resource_cpu_request) is None
    assert not placement.k8s.node_selector.HasField("node_selector_json")
    for model in ("simple", "xception_finetune"):
        assert placement.for_model(model) == BIG


def test_mixing_accelerator_and_cpu_train_pools_is_rejected(tmp_path):
    data = yaml.safe_load(TWO_POOLS)
    data["model_pools"] = {"simple": "cpu"}
    with pytest.raises(CnnzooError, match="model_pools: train pools cpu"):
        placement_from_dict(data)


def test_every_task_has_requests_and_limits_and_the_right_image(compiled):
    spec, k8s, executors = compiled
    assert len(executors) == 8
    for name, ex in executors.items():
        res = ex.container.resources
        assert res.resource_cpu_request and res.resource_cpu_limit, name
        assert res.resource_memory_request and res.resource_memory_limit, name
        gpu = bool(res.accelerator.resource_type)
        assert ex.container.image == (GPU_IMAGE if gpu else IMAGE), name
        assert gpu == (name in k8s), name
    # configs/cluster.yaml: evaluate on gpu-small (4 CPUs, 16G), ingest on cpu (2 CPUs, 8G)
    eval_res = executors["exec-evaluate"].container.resources
    assert (eval_res.resource_cpu_request, eval_res.resource_cpu_limit) == ("4", "4")
    assert (eval_res.resource_memory_request, eval_res.resource_memory_limit) == ("16G", "16G")
    assert eval_res.accelerator.resource_type == "nvidia.com/gpu"
    ingest_res = executors["exec-ingest"].container.resources
    assert (ingest_res.resource_cpu_request, ingest_res.resource_memory_request) == ("2", "8G")
    assert not ingest_res.accelerator.resource_type


def test_caching_and_the_data_fingerprint(compiled):
    spec, _, _ = compiled
    tasks = _tasks(spec)
    for name in ("plan", "ingest", "split", "evaluate"):
        assert tasks[name][0].caching_options.enable_cache, name
    for name in ("fingerprint", "train", "report"):
        assert not tasks[name][0].caching_options.enable_cache, name
    # ingest's cache key includes the fingerprint of the data, computed on every run
    fp = tasks["ingest"][0].inputs.parameters["fingerprint"].task_output_parameter
    assert (fp.producer_task, fp.output_parameter_key) == ("fingerprint", "Output")
    source = tasks["fingerprint"][0].inputs.parameters["data_uri"]
    assert source.component_input_parameter == "data_uri"


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

    assert len(executors) == 8
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
    assert k8s[train_executor].node_selector.HasField("node_selector_json")

    text = out.read_text()
    for leak in ("private_key", "BEGIN PRIVATE KEY", "LEAKCANARY", "leak-canary", str(key_file)):
        assert leak not in text, leak
    assert text.count("cnnzoo-gcp-sa") >= len(executors)

    placement = load_placement(cfg)
    assert placement.gcp_secret == GcpSecret(name="cnnzoo-gcp-sa", key="sa-key.json")
    assert placement.without_retries().gcp_secret == placement.gcp_secret
    assert placement.without_retries().retries.count == 0
    # kfp.local would set the env var to a path that exists only in pods
    assert placement.for_local_run().gcp_secret is None


def test_compiling_imports_no_tensorflow(tmp_path):
    code = textwrap.dedent(
        f"""
        import sys
        from cnnzoo.orchestration.cluster import compile_pipeline
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
    assert [t.to_dict() for t in pool.tolerations] == [
        {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
    ]
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
    lots = tmp_path / "lots.yaml"
    lots.write_text(CLUSTER.read_text().replace("memory: 8G", "memory: lots"))
    with pytest.raises(CnnzooError) as e:
        load_placement(lots)
    assert str(e.value) == (
        f"{lots}: pools.cpu.memory must be a Kubernetes quantity like 32G or 512Mi, got 'lots'"
    )
    typo = tmp_path / "typo.yaml"
    typo.write_text(CLUSTER.read_text().replace("parallelism: 4", "paralelism: 4"))
    with pytest.raises(CnnzooError, match=r"typo.yaml: unknown key 'paralelism' \(valid: para"):
        load_placement(typo)


def test_ui_outputs_reports_and_confusion_matrices(compiled):
    spec, _, _ = compiled
    tasks = _tasks(spec)
    report_comp = spec.components[tasks["report"][0].component_ref.name]
    report_outputs = report_comp.output_definitions
    # no KFP v1 viewer file: the v2 UI does not read mlpipeline-ui-metadata
    assert "mlpipeline_ui_metadata" not in report_outputs.parameters
    assert set(report_outputs.artifacts) == {"comparison", "html", "markdown"}
    assert report_outputs.artifacts["html"].artifact_type.schema_title == "system.HTML"
    assert report_outputs.artifacts["markdown"].artifact_type.schema_title == "system.Markdown"
    eval_comp = spec.components[tasks["evaluate"][0].component_ref.name]
    arts = eval_comp.output_definitions.artifacts
    assert arts["confusion"].artifact_type.schema_title == "system.ClassificationMetrics"
    assert arts["metrics"].artifact_type.schema_title == "system.Metrics"


def test_orchestration_code_edits_no_sys_path_and_patches_no_kfp_internals():
    sources = [
        p for folder in ("cnnzoo", "components", "pipelines") for p in (REPO / folder).rglob("*.py")
    ]
    assert len(sources) > 20
    for path in sources:
        text = path.read_text()
        assert "sys.path" not in text, path
        # kfp's private modules (kfp.local.orchestrator, kfp.dsl internals) stay unused
        assert "kfp.local.orchestrator" not in text and "orchestrator_utils" not in text, path
        assert "builtins.print" not in text, path


# --- the images a cluster pulls, and whose file --out is -------------------------------


@pytest.mark.parametrize(
    "argv, option",
    [
        ([], "--image"),  # the CPU image is checked first
        (["--image", IMAGE], "--gpu-image"),
        (["--gpu-image", GPU_IMAGE], "--image"),
    ],
)
def test_cli_compile_refuses_the_placeholder_images(tmp_path, capsys, monkeypatch, argv, option):
    for var in ("CNNZOO_IMAGE", "CNNZOO_GPU_IMAGE"):
        monkeypatch.delenv(var, raising=False)
    out = tmp_path / "p.yaml"
    line = cli_error(capsys, ["compile", "--out", str(out), *argv])
    assert line.startswith(f"error: {option} ghcr.io/example/cnnzoo/")
    for needed in ("--gpu-image", "CNNZOO_IMAGE", "CNNZOO_GPU_IMAGE", "make images push"):
        assert needed in line, needed
    assert not out.exists()


def test_cli_compile_takes_the_images_from_the_environment(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("CNNZOO_IMAGE", "env.test/cnnzoo:5")
    monkeypatch.setenv("CNNZOO_GPU_IMAGE", "env.test/cnnzoo-gpu:5")
    out = tmp_path / "p.yaml"
    assert main(["compile", "--out", str(out)]) == 0
    _, _, executors = _load(out)
    assert {e.container.image for e in executors.values()} == {
        "env.test/cnnzoo:5",
        "env.test/cnnzoo-gpu:5",
    }
    # an option wins over the environment
    assert main(["compile", "--out", str(out), "--image", IMAGE]) == 0
    capsys.readouterr()
    _, _, executors = _load(out)
    assert {e.container.image for e in executors.values()} == {IMAGE, "env.test/cnnzoo-gpu:5"}


def test_cli_compile_only_checks_the_images_the_placement_uses(tmp_path, capsys, monkeypatch):
    """A placement without accelerators never runs the GPU image: its default is no error."""
    for var in ("CNNZOO_IMAGE", "CNNZOO_GPU_IMAGE"):
        monkeypatch.delenv(var, raising=False)
    cpu_only = tmp_path / "cpu.yaml"
    cpu_only.write_text(
        "pools:\n  cpu: {cpu: '2', memory: 8G}\n"
        "steps: {ingest: cpu, split: cpu, report: cpu, evaluate: cpu}\n"
        "default_model_pool: cpu\n"
    )
    out = tmp_path / "p.yaml"
    assert main(["compile", "--out", str(out), "--placement", str(cpu_only), "--image", IMAGE]) == 0
    capsys.readouterr()
    spec = next(yaml.safe_load_all(out.read_text()))
    images = {e["container"]["image"] for e in spec["deploymentSpec"]["executors"].values()}
    assert images == {IMAGE}


def test_cli_compile_out_replaces_only_its_own_file(tmp_path, capsys):
    images = ["--image", IMAGE, "--gpu-image", GPU_IMAGE]
    users = tmp_path / "notes.yaml"
    users.write_text("my: notes\n")
    line = cli_error(capsys, ["compile", "--out", str(users), *images])
    assert line == (
        f"error: --out {users}: exists and is not a pipeline cnnzoo compiled; give another "
        "path or --overwrite to replace it"
    )
    assert users.read_text() == "my: notes\n"
    # its own earlier output is replaced without --overwrite
    ours = tmp_path / "p.yaml"
    assert main(["compile", "--out", str(ours), *images]) == 0
    other = ["--image", "other.test/c:2", "--gpu-image", GPU_IMAGE]
    assert main(["compile", "--out", str(ours), *other]) == 0
    capsys.readouterr()
    _, _, executors = _load(ours)
    assert "other.test/c:2" in {e.container.image for e in executors.values()}
    # --overwrite replaces the user's file; a folder is refused
    assert main(["compile", "--out", str(users), "--overwrite", *images]) == 0
    capsys.readouterr()
    assert users.read_text().startswith("# PIPELINE DEFINITION")
    line = cli_error(capsys, ["compile", "--out", str(tmp_path), "--overwrite", *images])
    assert line == f"error: --out {tmp_path}: is a folder; give the YAML file to write"


# --- the parameters a person edits in the UI, and their reference page --------------------


def test_the_parameters_reference_page_matches_the_pipeline():
    from cnnzoo.orchestration.cluster import parameters_reference

    page = REPO / "docs" / "pipeline-parameters.md"
    assert page.read_text() == parameters_reference(), (
        "docs/pipeline-parameters.md is stale: run .venv/bin/python tools/docs_reference.py"
    )
    text = page.read_text()
    for name in ("max_epochs", "img_size", "batch_size", "seed", "repeats", "weights", "models"):
        assert f"| `{name}` |" in text, name


def test_a_parameter_without_a_description_fails_the_reference(monkeypatch):
    from cnnzoo.orchestration import cluster

    help_ = dict(cluster.PARAMETER_HELP)
    del help_["repeats"]
    monkeypatch.setattr(cluster, "PARAMETER_HELP", help_)
    with pytest.raises(CnnzooError, match="'repeats': no description"):
        cluster.parameters_reference()


def test_cli_compile_takes_the_defaults_from_the_given_profile(tmp_path, capsys):
    out = tmp_path / "p.yaml"
    argv = ["compile", "--out", str(out), "--image", IMAGE, "--gpu-image", GPU_IMAGE]
    assert main([*argv, "--profile", "full", "--set", "max_epochs=5", "--set", "repeats=2"]) == 0
    capsys.readouterr()
    spec = next(yaml.safe_load_all(out.read_text()))
    params = spec["root"]["inputDefinitions"]["parameters"]
    defaults = {
        k: params[k]["defaultValue"] for k in ("max_epochs", "img_size", "repeats", "weights")
    }
    assert defaults == {"max_epochs": 5, "img_size": 100, "repeats": 2, "weights": "imagenet"}
    assert json.loads(params["profile"]["defaultValue"])["name"] == "full"
    line = cli_error(capsys, [*argv, "--overwrite", "--set", "batch_size=0"])
    assert line == "error: --set batch_size=0: batch_size must be >= 1, got 0"
