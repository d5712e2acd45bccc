"""The cluster entry point over the one pipeline definition: build, compile, submit.

* :func:`build` is the pipeline function for a set of images and a placement.
* :func:`compile_pipeline` writes the pipeline YAML (images and placement baked in).
* :func:`submit` compiles and submits a study through ``kfp.Client``
  (a :class:`SubmittedRun`).

They import the pipeline from ``cnnzoo.pipelines.cnn_comparison``; the local entry
point, :mod:`cnnzoo.orchestration.local_run`, compiles through this module; nothing else imports
either back.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import re
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

from cnnzoo.core.errors import CnnzooError, one_line
from cnnzoo.orchestration.placement import Placement, load_placement
from cnnzoo.orchestration.study import Study
from cnnzoo.pipelines import DEFAULT_GPU_IMAGE, DEFAULT_IMAGE
from cnnzoo.storage.layout import run_logs_root
from cnnzoo.tensorboard.resource import logspath


def build(
    image: str = DEFAULT_IMAGE,
    gpu_image: str = DEFAULT_GPU_IMAGE,
    placement=None,
    caching: bool = True,
    tensorboard_cr: bool = False,
):
    """The pipeline function for these images and placement (a path, a Placement or None);
    ``caching=False`` compiles every task with caching off; ``tensorboard_cr`` adds the
    step that creates the run's Kubeflow ``Tensorboard``.

    Returns:
        The ``@dsl.pipeline`` function of ``cnnzoo.pipelines.cnn_comparison.build_pipeline``.
    """

    if not isinstance(placement, Placement):
        placement = load_placement(placement)
    # The pipeline definition imports kfp (~0.5 s): only when a pipeline is built, so
    # the CLI's other commands start without it.
    from cnnzoo.pipelines.cnn_comparison import build_pipeline

    return build_pipeline(
        image=image,
        gpu_image=gpu_image,
        placement=placement,
        caching=caching,
        tensorboard_cr=tensorboard_cr,
    )


def compile_pipeline(
    out: str | os.PathLike,
    image: str = DEFAULT_IMAGE,
    gpu_image: str = DEFAULT_GPU_IMAGE,
    placement=None,
    caching: bool = True,
    tensorboard_cr: bool = False,
) -> Path:
    """Compile the pipeline to a YAML file a Kubeflow Pipelines 2.x backend accepts.

    Args:
        out: the YAML file to write (atomically).
        image: the CPU image of the steps.
        gpu_image: the image of steps placed on an accelerator pool.
        placement: path to a cluster.yaml, a Placement, or None for the default one.
        caching: False turns caching off for every task (``submit --no-cache``).
        tensorboard_cr: add the step that creates the run's Kubeflow ``Tensorboard``.

    Returns:
        The path written.

    Raises:
        CnnzooError: bad placement file.
    """
    from kfp import compiler

    out = Path(out)
    pipeline = build(image, gpu_image, placement, caching, tensorboard_cr)
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".yaml", dir=out.parent)
    os.close(fd)
    try:
        compiler.Compiler().compile(pipeline, tmp)
        os.replace(tmp, out)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
    return out


@dataclass
class SubmittedRun:
    """A run created on a Kubeflow Pipelines backend."""

    run_id: str
    url: str
    experiment: str


def submit(
    study: Study,
    host: str,
    namespace: str | None = None,
    experiment: str = "cnnzoo",
    run_name: str | None = None,
    image: str = DEFAULT_IMAGE,
    gpu_image: str = DEFAULT_GPU_IMAGE,
    placement=None,
    pipeline_root: str | None = None,
    enable_caching: bool | None = None,
    tensorboard_cr: bool = False,
) -> SubmittedRun:
    """Compile the pipeline and create a run of ``study`` on a Kubeflow Pipelines backend.

    Args:
        study: what to run (its profile is resolved here and sent as data).
        host: the KFP API endpoint, e.g. ``http://localhost:8080`` (a port-forward of
            ``ml-pipeline-ui``) or the cluster's pipelines URL.
        namespace: the Kubeflow profile namespace (multi-user installs).
        experiment: the experiment to file the run under (created if missing).
        run_name: the run's display name (default: ``cnn-comparison <timestamp>``).
        image, gpu_image, placement: compile-time settings (see :func:`compile_pipeline`).
        pipeline_root: where the backend stores artifacts (default: the backend's).
        enable_caching: False runs every task afresh (compiled with caching off, and kfp's
            ``enable_caching``); None keeps each task's own setting (see
            ``cnnzoo.pipelines.cnn_comparison``).
        tensorboard_cr: add the step that creates the run's Kubeflow ``Tensorboard``
            (needs a ``gs://`` logs root: the study's output or TensorBoard root).

    Returns:
        The run's ID and URL.

    Raises:
        CnnzooError: bad arguments, or the backend could not be reached or refused the run.
    """
    import kfp

    if not re.match(r"^https?://", host):
        raise CnnzooError(f"--host {host!r}: expected an http:// or https:// URL")
    if not isinstance(placement, Placement):
        placement = load_placement(placement)
    arguments = study.arguments(local=False)
    if tensorboard_cr:
        logspath(run_logs_root(arguments["tensorboard_root"], arguments["output_uri"]))
    run_name = run_name or f"cnn-comparison {datetime.datetime.now():%Y-%m-%d %H:%M:%S}"
    with tempfile.TemporaryDirectory(prefix="cnnzoo-submit-") as tmp:
        package = compile_pipeline(
            Path(tmp) / "cnn_comparison.yaml",
            image,
            gpu_image,
            placement,
            caching=enable_caching is not False,
            tensorboard_cr=tensorboard_cr,
        )
        try:
            with warnings.catch_warnings():
                # "This client only works with Kubeflow Pipeline v2.0.0-beta.2 and later"
                warnings.filterwarnings("ignore", category=FutureWarning, module="kfp.client")
                client = kfp.Client(host=host, namespace=namespace)
            result = client.create_run_from_pipeline_package(
                str(package),
                arguments=arguments,
                run_name=run_name,
                experiment_name=experiment,
                namespace=namespace,
                pipeline_root=pipeline_root,
                service_account=placement.service_account,
                enable_caching=enable_caching,
            )
        except Exception as e:  # the client raises urllib3/ApiException types
            first = one_line(e, first=True)
            raise CnnzooError(f"submitting to {host} failed: {first}") from None
    run_id = result.run_id
    return SubmittedRun(run_id, f"{host.rstrip('/')}/#/runs/details/{run_id}", experiment)


__all__ = [
    "DEFAULT_IMAGE",
    "DEFAULT_GPU_IMAGE",
    "SubmittedRun",
    "build",
    "compile_pipeline",
    "submit",
]
