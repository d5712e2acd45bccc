"""The CNN comparison pipeline: ingest -> split -> train/evaluate every model -> report.

``build_pipeline(image, gpu_image, placement)`` returns the ``@dsl.pipeline``; the
images and the cluster placement are fixed at compile time, everything about the data
and the study (data URI, model list, profile, overrides, seed, TensorBoard root, output
location) is a run-time parameter. Running locally and submitting to a cluster both use it
(``cnnzoo.pipeline_runner``).

DAG::

    ingest -> split -> ParallelFor(models, parallelism) {
                           pool_for_model -> If(pool == p1) train[p1] ... Else train[default]
                           -> evaluate(OneOf(train models))
                       } -> report(Collected(evaluations))

Per-model placement: tasks inside one ``ParallelFor`` share a task spec, so each train
pool gets its own train task (with that pool's accelerator, node selector, tolerations,
CPU and memory) under a ``dsl.If``/``dsl.Elif``/``dsl.Else`` on the pool the tiny
``pool_for_model`` step names; ``dsl.OneOf`` hands whichever ran to evaluate. With a
single train pool there is no branch. Every task gets CPU/memory requests and limits.

Outputs: with ``output_uri`` (a local folder or ``gs://bucket/prefix``) each train task
copies its model folder to ``<output_uri>/models/<model>/`` and checkpoints to
``<output_uri>/checkpoints/<model>/`` (so a retried pod resumes), TensorBoard logs go to
``<output_uri>/tensorboard/`` unless ``tensorboard_root`` is given, and the report step
copies the report folder to ``<output_uri>/report/``.

Credentials: with ``gcp_secret`` in the placement every task mounts that Kubernetes
secret at ``/var/secrets/google`` and gets ``GOOGLE_APPLICATION_CREDENTIALS`` pointing
at its key file; only the secret's name and key name are compiled in.

Caching: on for ingest, split, routing and evaluate (deterministic in their inputs), off
for train (GPU training is not bit-reproducible, and re-running a study normally means
retraining) and for report (cheap, and it reflects the run it belongs to).
"""

from kfp import dsl, kubernetes

from cnnzoo.models import list_models
from cnnzoo.pipeline_runner import DEFAULT_GPU_IMAGE, DEFAULT_IMAGE
from cnnzoo.placement import GCP_SECRET_MOUNT_PATH, GcpSecret, Placement, Pool, load_placement
from components import evaluate, ingest, report, route, split, train

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
            key=tol.get("key"),
            operator=tol.get("operator", "Equal"),
            value=tol.get("value"),
            effect=tol.get("effect"),
        )
    return task


def mount_gcp_secret(task: dsl.PipelineTask, secret: GcpSecret) -> dsl.PipelineTask:
    """Mount ``secret`` (a service-account key) into ``task`` and point ADC at the key file."""
    kubernetes.use_secret_as_volume(task, secret_name=secret.name, mount_path=GCP_SECRET_MOUNT_PATH)
    return task.set_env_variable("GOOGLE_APPLICATION_CREDENTIALS", secret.credentials_path)


def build_pipeline(
    image: str = DEFAULT_IMAGE,
    gpu_image: str = DEFAULT_GPU_IMAGE,
    placement: Placement | None = None,
):
    """Build the pipeline for these images and this cluster placement.

    Args:
        image: the CPU image (ingest, split, routing, report, CPU-pool tasks).
        gpu_image: the image of tasks placed on a pool with an accelerator.
        placement: the cluster placement; None loads ``configs/cluster.yaml``.

    Returns:
        The ``@dsl.pipeline`` function (compile it, or call it under ``kfp.local``).
    """
    placement = placement or load_placement()

    def image_for(pool: Pool) -> str:
        return gpu_image if pool.accelerator else image

    def component(module, pool: Pool):
        return module.op(image_for(pool))

    def configure(task: dsl.PipelineTask, pool: Pool) -> dsl.PipelineTask:
        place(task, pool)
        if placement.gcp_secret:
            mount_gcp_secret(task, placement.gcp_secret)
        return task

    train_pools = placement.train_pool_names()
    default_models = list_models()
    model_pools = {m: placement.pool_for_model(m).name for m in default_models}

    @dsl.pipeline(
        name=PIPELINE_NAME,
        description="Train and compare CNN configurations (custom CNNs, transfer learning, "
        "fine-tuning) on an image-folder dataset.",
    )
    def cnn_comparison(
        data_uri: str = "demo",
        models: list = default_models,
        profile: str = "demo",
        overrides: list = [],  # noqa: B006 - a KFP parameter default, never mutated
        seed: int = 42,
        tensorboard_root: str = "",
        output_uri: str = "",
    ) -> dsl.Artifact:
        pool = placement.pool_for_step("ingest")
        ingest_task = component(ingest, pool)(data_uri=data_uri).set_display_name("ingest")
        configure(ingest_task, pool).set_caching_options(True)

        pool = placement.pool_for_step("split")
        split_task = component(split, pool)(
            dataset=ingest_task.outputs["dataset"],
            profile=profile,
            overrides=overrides,
            seed=seed,
        ).set_display_name("split")
        configure(split_task, pool).set_caching_options(True)
        splits = split_task.outputs["splits"]

        with dsl.ParallelFor(models, parallelism=placement.parallelism) as model_name:

            def train_on(pool_name: str) -> dsl.PipelineTask:
                pool = placement.pools[pool_name]
                task = component(train, pool)(
                    model_name=model_name,
                    splits=splits,
                    profile=profile,
                    overrides=overrides,
                    seed=seed,
                    tensorboard_root=tensorboard_root,
                    output_uri=output_uri,
                ).set_display_name(f"train ({pool_name})")
                configure(task, pool).set_caching_options(False)
                r = placement.retries
                task.set_retry(
                    r.count,
                    backoff_duration=r.backoff,
                    backoff_factor=r.factor,
                    backoff_max_duration=r.max,
                )
                return task

            if len(train_pools) == 1:
                trained = train_on(train_pools[0]).outputs["model"]
            else:
                pool = placement.pool_for_step("pool_for_model")
                route_task = component(route, pool)(
                    model_name=model_name,
                    model_pools=model_pools,
                    default_pool=placement.default_model_pool,
                ).set_display_name("pool for model")
                configure(route_task, pool).set_caching_options(True)
                branches = []
                for i, pool_name in enumerate(train_pools[:-1]):
                    group = dsl.If if i == 0 else dsl.Elif
                    with group(route_task.output == pool_name, name=f"on {pool_name}"):
                        branches.append(train_on(pool_name).outputs["model"])
                with dsl.Else(name=f"on {train_pools[-1]}"):
                    branches.append(train_on(train_pools[-1]).outputs["model"])
                trained = dsl.OneOf(*branches)

            pool = placement.pool_for_step("evaluate")
            eval_task = component(evaluate, pool)(model=trained, splits=splits)
            configure(eval_task.set_display_name("evaluate"), pool).set_caching_options(True)

        pool = placement.pool_for_step("report")
        report_task = component(report, pool)(
            evaluations=dsl.Collected(eval_task.outputs["evaluation"]),
            dataset=ingest_task.outputs["dataset"],
            splits=splits,
            data_uri=data_uri,
            profile=profile,
            overrides=overrides,
            seed=seed,
            tensorboard_root=tensorboard_root,
            output_uri=output_uri,
            run_name=dsl.PIPELINE_JOB_NAME_PLACEHOLDER,
        ).set_display_name("report")
        configure(report_task, pool).set_caching_options(False)
        return report_task.outputs["comparison"]

    return cnn_comparison


def __getattr__(name: str):
    # The module-level default pipeline, built on first use so importing this module
    # does not read configs/cluster.yaml.
    if name == "cnn_comparison":
        return build_pipeline()
    raise AttributeError(name)
