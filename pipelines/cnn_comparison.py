"""The CNN comparison pipeline: ingest -> split -> train/evaluate every model -> report.

``build_pipeline(image, gpu_image, placement)`` returns the ``@dsl.pipeline``; the
images and the cluster placement are fixed at compile time, everything about the data
and the study (data URI, model list, the resolved profile, TensorBoard root, output
location) is a run-time parameter. The runners (``cnnzoo.orchestration.local_run``, local, and
``cnnzoo.orchestration.cluster``, cluster) import this module; it imports only the components
and the ``cnnzoo`` library.

DAG::

    fingerprint -> ingest -> split ----------------------------.
    plan(models, profile) -> ParallelFor(plan records, parallelism) {     v
                        train-and-evaluate(record): train -> evaluate
                    } -> report(Collected(evaluations))

Repeated seeds: the plan makes one record per model and training seed (the profile's
``repeats``, seeds from :func:`cnnzoo.config.profile.repeat_seeds`), so ``repeats: 3`` is three
loop iterations per model, each its own train task with its own ``seed`` input (and
paths ``<model>/seed-<seed>``); the report pairs the runs by seed.

Per-model placement: the ``plan`` step turns the model names into one record per model
(pool, accelerator and count, CPU/memory requests and limits, node selector,
tolerations; compiled in from ``cluster.yaml``). Each loop iteration hands its record to
the ``train-and-evaluate`` sub-pipeline, whose one train task takes its accelerator,
resources, node selector and tolerations from the sub-pipeline's inputs
(``set_accelerator_type(channel)``, ``kubernetes.add_node_selector_json``,
``kubernetes.add_toleration_json``), which a KFP backend >= 2.5 resolves at run time.
The sub-pipeline exists because kfp 2.17's compiler turns a resource setter's loop-item
field (``item.cpu``) into a plain string channel that it cannot trace back to the loop
item (it fails with "component_input_parameter ... not found"); a sub-pipeline input is
an ordinary pipeline parameter there, which the compiler and ``kfp.local`` both handle.
With a single train pool the train task's placement is compiled in as constants instead,
which every KFP 2.x backend honours.

Outputs: with ``output_uri`` (a local folder or ``gs://bucket/prefix``) each train task
copies its model folder to ``<output_uri>/models/<model>/`` and checkpoints to
``<output_uri>/checkpoints/<model>/`` (so a retried pod resumes), TensorBoard logs go to
``<output_uri>/tensorboard/`` unless ``tensorboard_root`` is given, and the report step
copies the report folder to ``<output_uri>/report/``.

Credentials: with ``gcp_secret`` in the placement every task mounts that Kubernetes
secret at ``/var/secrets/google`` and gets ``GOOGLE_APPLICATION_CREDENTIALS`` pointing
at its key file; only the secret's name and key name are compiled in.

Caching: off for fingerprint (it must look at the data on every run), train (GPU
training is not bit-reproducible, and re-running a study normally means retraining) and
report (cheap, and it reflects the run it belongs to); on for plan, ingest (its key
includes the data fingerprint), split and evaluate, which are deterministic in their
inputs. A run can turn caching off altogether (``cnnzoo submit --no-cache``).
"""

# No `from __future__ import annotations`: kfp reads the pipeline signatures at run time.

from dataclasses import dataclass
from typing import Any

from kfp import dsl, kubernetes

from cnnzoo.components import evaluate, fingerprint, ingest, plan, report, split, train
from cnnzoo.components import tensorboard_cr as tensorboard_cr_step
from cnnzoo.config.profile import load_profile
from cnnzoo.models.registry import list_models
from cnnzoo.orchestration.placement import (
    GCP_SECRET_MOUNT_PATH,
    GcpSecret,
    Placement,
    Pool,
    load_placement,
)
from cnnzoo.orchestration.study import profile_json
from cnnzoo.pipelines import DEFAULT_GPU_IMAGE, DEFAULT_IMAGE

PIPELINE_NAME = "cnn-comparison"


def place(task: dsl.PipelineTask, pool: Pool) -> dsl.PipelineTask:
    """Apply ``pool``'s requests, limits, accelerator, node selector and tolerations."""
    task.set_cpu_request(pool.cpu).set_cpu_limit(pool.cpu_limit)
    task.set_memory_request(pool.memory).set_memory_limit(pool.memory_limit)
    if pool.accelerator:
        task.set_accelerator_type(pool.accelerator).set_accelerator_limit(pool.accelerator_count)
    for label, value in pool.node_selector.items():
        kubernetes.add_node_selector(task, label_key=label, label_value=value)
    for tol in pool.tolerations:
        kubernetes.add_toleration(
            task,
            key=tol.key,
            operator=tol.operator,
            value=tol.value,
            effect=tol.effect,
        )
    return task


def place_from_inputs(task: dsl.PipelineTask, inputs: dict[str, Any]) -> dsl.PipelineTask:
    """Place ``task`` from run-time values (pipeline channels of one plan record)."""
    task.set_cpu_request(inputs["cpu"]).set_cpu_limit(inputs["cpu_limit"])
    task.set_memory_request(inputs["memory"]).set_memory_limit(inputs["memory_limit"])
    task.set_accelerator_type(inputs["accelerator"])
    task.set_accelerator_limit(inputs["accelerator_count"])
    kubernetes.add_node_selector_json(task, inputs["node_selector"])
    kubernetes.add_toleration_json(task, inputs["tolerations"])
    return task


def mount_gcp_secret(task: dsl.PipelineTask, secret: GcpSecret) -> dsl.PipelineTask:
    """Mount ``secret`` (a service-account key) into ``task`` and point ADC at the key file."""
    kubernetes.use_secret_as_volume(task, secret_name=secret.name, mount_path=GCP_SECRET_MOUNT_PATH)
    return task.set_env_variable("GOOGLE_APPLICATION_CREDENTIALS", secret.credentials_path)


def build_pipeline(
    image: str = DEFAULT_IMAGE,
    gpu_image: str = DEFAULT_GPU_IMAGE,
    placement: Placement | None = None,
    default_profile: str | None = None,
    caching: bool = True,
    tensorboard_cr: bool = False,
):
    """Build the pipeline for these images and this cluster placement.

    Args:
        image: the CPU image (fingerprint, plan, ingest, split, report, CPU-pool tasks).
        gpu_image: the image of tasks placed on a pool with an accelerator.
        placement: the cluster placement; None loads the default ``cluster.yaml``.
        default_profile: the ``profile`` parameter's default (a resolved profile as JSON,
            :func:`cnnzoo.orchestration.study.profile_json`); None resolves the ``demo``
            profile now.
        caching: False compiles every task with caching off. (kfp's
            ``Client(...).create_run_from_pipeline_package(enable_caching=False)`` alone
            reaches only the root DAG's tasks, not those inside the loop.)
        tensorboard_cr: add the ``tensorboard-cr`` step (first, on the report's pool): it
            creates the run's Kubeflow ``Tensorboard`` and hands the report its name.

    Returns:
        The ``@dsl.pipeline`` function (compile it, or call it under ``kfp.local``).
    """
    placement = placement or load_placement()
    if default_profile is None:
        default_profile = profile_json(load_profile("demo"))
    tasks = _Tasks(image, gpu_image, placement, caching)
    train_and_evaluate = _train_and_evaluate_pipeline(tasks)
    return _comparison_pipeline(tasks, train_and_evaluate, default_profile, tensorboard_cr)


@dataclass(frozen=True)
class _Tasks:
    """How every task of the pipeline is made: the images, the placement, caching."""

    image: str
    gpu_image: str
    placement: Placement
    caching: bool

    def cache(self, task: dsl.PipelineTask, default: bool) -> dsl.PipelineTask:
        """Set ``task``'s caching: ``default``, unless the pipeline compiles caching off."""
        return task.set_caching_options(default and self.caching)

    def image_for(self, pool: Pool) -> str:
        """The image of a task on ``pool``: the GPU image on an accelerator pool."""
        return self.gpu_image if pool.accelerator else self.image

    def step(self, module, pool: Pool, **kwargs) -> dsl.PipelineTask:
        """A task of ``module``'s component on ``pool``, with the GCP secret if any."""
        task = module.op(self.image_for(pool))(**kwargs)
        place(task, pool)
        if self.placement.gcp_secret:
            mount_gcp_secret(task, self.placement.gcp_secret)
        return task


def _train_and_evaluate_pipeline(tasks: _Tasks):
    """The ``train-and-evaluate`` sub-pipeline: one plan record's train and evaluate."""
    placement = tasks.placement
    train_pools = [placement.pools[name] for name in placement.train_pool_names()]
    # Validated by load_placement: every train pool has an accelerator, or none has.
    train_image = tasks.image_for(train_pools[0])

    @dsl.pipeline(
        name="train-and-evaluate",
        description="Train one model configuration where its plan record places it; evaluate it.",
    )
    def train_and_evaluate(
        model_name: str,
        splits: dsl.Input[dsl.Dataset],
        profile: str,
        tensorboard_root: str,
        output_uri: str,
        pool: str,
        accelerator: str,
        accelerator_count: str,
        cpu: str,
        memory: str,
        cpu_limit: str,
        memory_limit: str,
        node_selector: dict,
        tolerations: list,
        seed: int,
    ) -> dsl.Artifact:
        train_task = train.op(train_image)(
            model_name=model_name,
            splits=splits,
            profile=profile,
            tensorboard_root=tensorboard_root,
            output_uri=output_uri,
            seed=seed,
        ).set_display_name("train")
        record = {
            "accelerator": accelerator,
            "accelerator_count": accelerator_count,
            "cpu": cpu,
            "memory": memory,
            "cpu_limit": cpu_limit,
            "memory_limit": memory_limit,
            "node_selector": node_selector,
            "tolerations": tolerations,
        }
        _configure_train(tasks, train_task, train_pools, record)
        eval_task = tasks.step(
            evaluate,
            placement.pool_for_step("evaluate"),
            model=train_task.outputs["model"],
            splits=splits,
        )
        tasks.cache(eval_task.set_display_name("evaluate"), True)
        return eval_task.outputs["evaluation"]

    return train_and_evaluate


def _configure_train(
    tasks: _Tasks, train_task: dsl.PipelineTask, train_pools: list[Pool], record: dict[str, Any]
) -> None:
    """Place the train task (constants for one train pool, else ``record``), mount the
    GCP secret, turn its caching off and set its retries."""
    placement = tasks.placement
    if len(train_pools) == 1:
        place(train_task, train_pools[0])
    else:
        place_from_inputs(train_task, record)
    if placement.gcp_secret:
        mount_gcp_secret(train_task, placement.gcp_secret)
    r = placement.retries
    tasks.cache(train_task, False).set_retry(
        r.count, backoff_duration=r.backoff, backoff_factor=r.factor, backoff_max_duration=r.max
    )


def _comparison_pipeline(tasks: _Tasks, train_and_evaluate, default_profile: str, tensorboard_cr):
    """The ``cnn-comparison`` pipeline: data and plan, the loop over plan records, report."""
    placement = tasks.placement
    default_models = list_models()

    @dsl.pipeline(
        name=PIPELINE_NAME,
        description="Train and compare CNN configurations (custom CNNs, transfer learning, "
        "fine-tuning) on an image-folder dataset.",
    )
    def cnn_comparison(
        data_uri: str = "demo",
        models: list = default_models,
        profile: str = default_profile,
        tensorboard_root: str = "",
        output_uri: str = "",
    ) -> dsl.Artifact:
        board = {}
        if tensorboard_cr:
            board = _tensorboard_cr_task(tasks, tensorboard_root, output_uri)
        ingest_task, splits = _data_tasks(tasks, data_uri, profile)
        plan_task = tasks.step(
            plan,
            placement.pool_for_step("plan"),
            models=models,
            placements=placement.model_placements(),
            profile=profile,
        )
        tasks.cache(plan_task.set_display_name("plan"), True)

        with dsl.ParallelFor(plan_task.output, parallelism=placement.parallelism) as record:
            model_task = _model_task(
                tasks, train_and_evaluate, record, splits, profile, tensorboard_root, output_uri
            )

        report_task = tasks.step(
            report,
            placement.pool_for_step("report"),
            evaluations=dsl.Collected(model_task.output),
            dataset=ingest_task.outputs["dataset"],
            splits=splits,
            data_uri=data_uri,
            profile=profile,
            tensorboard_root=tensorboard_root,
            output_uri=output_uri,
            run_name=dsl.PIPELINE_JOB_NAME_PLACEHOLDER,
            **board,
        )
        tasks.cache(report_task.set_display_name("report"), False)
        return report_task.outputs["comparison"]

    return cnn_comparison


def _tensorboard_cr_task(tasks: _Tasks, tensorboard_root, output_uri) -> dict[str, Any]:
    """Add the ``tensorboard-cr`` step; return the report's input naming its Tensorboard."""
    board_task = tasks.step(
        tensorboard_cr_step,
        tasks.placement.pool_for_step("report"),
        run_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER,
        run_name=dsl.PIPELINE_JOB_NAME_PLACEHOLDER,
        tensorboard_root=tensorboard_root,
        output_uri=output_uri,
    )
    tasks.cache(board_task.set_display_name("tensorboard-cr"), False)
    return {"tensorboard_resource": board_task.output}


def _data_tasks(tasks: _Tasks, data_uri, profile):
    """Add the fingerprint, ingest and split steps; return the ingest task and the splits."""
    placement = tasks.placement
    fingerprint_task = tasks.step(
        fingerprint, placement.pool_for_step("fingerprint"), data_uri=data_uri
    )
    tasks.cache(fingerprint_task.set_display_name("fingerprint"), False)
    ingest_task = tasks.step(
        ingest,
        placement.pool_for_step("ingest"),
        data_uri=data_uri,
        fingerprint=fingerprint_task.output,
    )
    tasks.cache(ingest_task.set_display_name("ingest"), True)
    split_task = tasks.step(
        split,
        placement.pool_for_step("split"),
        dataset=ingest_task.outputs["dataset"],
        profile=profile,
    )
    tasks.cache(split_task.set_display_name("split"), True)
    return ingest_task, split_task.outputs["splits"]


def _model_task(
    tasks: _Tasks, train_and_evaluate, record, splits, profile, tensorboard_root, output_uri
) -> dsl.PipelineTask:
    """Add one loop iteration's ``train-and-evaluate`` task for plan record ``record``."""
    model_task = train_and_evaluate(
        model_name=record.model,
        splits=splits,
        profile=profile,
        tensorboard_root=tensorboard_root,
        output_uri=output_uri,
        pool=record.pool,
        accelerator=record.accelerator,
        accelerator_count=record.accelerator_count,
        cpu=record.cpu,
        memory=record.memory,
        cpu_limit=record.cpu_limit,
        memory_limit=record.memory_limit,
        node_selector=record.node_selector,
        tolerations=record.tolerations,
        seed=record.seed,
    ).set_display_name("model")
    return tasks.cache(model_task, True)
