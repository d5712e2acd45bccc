"""CLI commands over the pipeline: ``cnnzoo run``, ``compile``, ``submit``, ``status``.

The table in :mod:`cnnzoo.cli.main` names the commands below.
"""

from __future__ import annotations

import argparse
import os

from cnnzoo.cli.common import (
    add_connection_args,
    add_profile_args,
    connection_arg,
    load_profile_arg,
)
from cnnzoo.core.errors import CnnzooError
from cnnzoo.orchestration.cluster import (
    GPU_IMAGE_ENV,
    IMAGE_ENV,
    check_cluster_images,
    check_compile_target,
    compile_pipeline,
    default_cluster_profile,
    default_images,
    submit,
    upload,
)
from cnnzoo.orchestration.local_run import run_local
from cnnzoo.orchestration.run_status import check_outcome, follow_run, read_run, summary_lines
from cnnzoo.orchestration.study import Study, profile_json
from cnnzoo.pipelines import DEFAULT_IMAGE
from cnnzoo.reporting.render import summary_table
from cnnzoo.storage.layout import REPORT_FILES, RUNS_DIR
from cnnzoo.storage.local import read_json


def _models(text: str | None) -> list[str] | None:
    if text is None:
        return None
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise CnnzooError("--models: expected a comma-separated list of model configurations")
    return names


def study_args(
    p: argparse.ArgumentParser, data_help: str, profile_default: str | None = "demo"
) -> None:
    p.add_argument("--data", default="demo", metavar="URI", help=data_help)
    p.add_argument(
        "--models",
        default=None,
        metavar="A,B,...",
        help="comma-separated model configurations (default: all; see 'cnnzoo models')",
    )
    if profile_default is None:
        add_profile_args(
            p,
            default=None,
            default_help="demo for --data demo; for real data full, or gpu when the "
            "placement's train pools have accelerators",
        )
    else:
        add_profile_args(p)
    p.add_argument("--seed", type=int, default=None, help="the run's seed (default: profile's)")


def _tensorboard_arg(p: argparse.ArgumentParser, where: str) -> None:
    p.add_argument(
        "--tensorboard-root",
        default="",
        metavar="URI",
        help=f"write every model's TensorBoard logs under this {where}",
    )


def _study(ns: argparse.Namespace) -> Study:
    """The study the command line asks for (the same object for run and submit)."""
    return Study(
        data_uri=ns.data,
        models=_models(ns.models),
        profile=ns.profile,
        overrides=tuple(ns.overrides),
        override_files=tuple(ns.override_files),
        seed=ns.seed,
        tensorboard_root=ns.tensorboard_root,
        output_uri=ns.output,
    )


def _output_arg(p: argparse.ArgumentParser, where: str) -> None:
    p.add_argument(
        "--output",
        default="",
        metavar="URI",
        help=f"export the report, models, checkpoints and TensorBoard logs to {where}",
    )


def image_args(p: argparse.ArgumentParser) -> None:
    """``--image``, ``--gpu-image`` (default: the environment, else the placeholder, which a
    cluster command refuses) and ``--placement``."""
    p.add_argument(
        "--image",
        default=None,
        help=f"step image your cluster can pull (default: ${IMAGE_ENV}; build and push one "
        "with 'make images push IMAGE_REGISTRY=...')",
    )
    p.add_argument(
        "--gpu-image",
        default=None,
        help=f"image of steps on accelerator pools (default: ${GPU_IMAGE_ENV})",
    )
    p.add_argument(
        "--placement",
        default=None,
        metavar="YAML",
        help="cluster placement file (default: the installed cluster.yaml)",
    )


def _tensorboard_cr_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--tensorboard-cr",
        action="store_true",
        help="add a step creating the run's Kubeflow Tensorboard (needs a gs:// logs root)",
    )


def run_args(p: argparse.ArgumentParser) -> None:
    study_args(p, "'demo' (default), a local folder or archive, or gs://bucket/prefix")
    p.add_argument(
        "--out", default=RUNS_DIR, metavar="DIR", help=f"runs folder (default: {RUNS_DIR})"
    )
    _output_arg(p, "a local folder or gs://bucket/prefix")
    _tensorboard_arg(p, "folder or gs:// prefix (default: the run folder's tensorboard/)")

    p.add_argument(
        "--runner",
        choices=("subprocess", "docker"),
        default="subprocess",
        help="subprocess (default): steps run in this environment; docker: every step runs"
        " in its image (kfp.local.DockerRunner; engine from DOCKER_HOST or the default socket)",
    )
    p.add_argument(
        "--image",
        default=None,
        help=f"--runner docker: step image (default: ${IMAGE_ENV}, else {DEFAULT_IMAGE})",
    )
    p.add_argument(
        "--gpu-image",
        default=None,
        help="--runner docker: image of steps on accelerator pools (default: --image)",
    )


def run_command(ns: argparse.Namespace) -> int:

    image = ns.image or default_images()[0]
    gpu_image = ns.gpu_image or os.environ.get(GPU_IMAGE_ENV) or None
    result = run_local(
        _study(ns), runs_dir=ns.out, runner=ns.runner, image=image, gpu_image=gpu_image
    )
    print(summary_table(read_json(result.report_html.parent / REPORT_FILES["json"])), end="")
    print(f"finished in {result.seconds / 60:.1f} min; run folder {result.run_dir}")
    if result.arguments["output_uri"]:
        print(f"exported to: {result.arguments['output_uri']}")
    print(f"report: {result.report_html}")
    return 0


def compile_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--out",
        default="build/cnn_comparison.yaml",
        help="YAML file to write (default: build/cnn_comparison.yaml)",
    )
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace --out even if it is not a pipeline cnnzoo compiled",
    )
    image_args(p)
    _tensorboard_cr_arg(p)
    _compiled_profile_args(p)


def _compiled_profile_args(p: argparse.ArgumentParser) -> None:
    """``--profile``/``--set``/``--config``: the profile compiled in as the defaults of
    the run parameters (docs/pipeline-parameters.md)."""
    add_profile_args(p)


def _compiled_profile(ns: argparse.Namespace) -> str:
    return profile_json(load_profile_arg(ns))


def _images(ns: argparse.Namespace) -> tuple[str, str]:
    """The images ``--image``/``--gpu-image`` or the environment name."""
    image, gpu_image = default_images()
    return ns.image or image, ns.gpu_image or gpu_image


def compile_command(ns: argparse.Namespace) -> int:

    image, gpu_image = _images(ns)
    check_compile_target(ns.out, ns.overwrite)
    check_cluster_images(image, gpu_image, ns.placement)
    out = compile_pipeline(
        ns.out,
        image=image,
        gpu_image=gpu_image,
        placement=ns.placement,
        tensorboard_cr=ns.tensorboard_cr,
        overwrite=ns.overwrite,
        default_profile=_compiled_profile(ns),
    )
    print(f"compiled: {out}")
    return 0


def submit_args(p: argparse.ArgumentParser) -> None:
    add_connection_args(p)
    p.add_argument("--experiment", default="cnnzoo", help="experiment name (default: cnnzoo)")
    p.add_argument("--run-name", default=None, help="run display name")
    study_args(
        p, "'demo' (default) or gs://bucket/prefix (folder or archive)", profile_default=None
    )
    _tensorboard_arg(p, "gs:// prefix")
    _output_arg(p, "gs://bucket/prefix (also makes retried train tasks resume)")
    p.add_argument("--pipeline-root", default=None, help="artifact root (default: backend's)")
    p.add_argument(
        "--no-cache",
        action="store_true",
        help="run every task afresh: turn KFP's caching off for this run",
    )
    image_args(p)
    _tensorboard_cr_arg(p)
    p.add_argument(
        "--wait",
        action="store_true",
        help="follow the run to its end: each step's state change, then the report's "
        "location; exit non-zero if it fails",
    )
    _poll_arg(p)


def _poll_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--poll",
        type=float,
        default=10.0,
        metavar="S",
        help="with --wait: seconds between reads of the run (default 10)",
    )


def _follow(conn, run_id: str, poll: float) -> int:
    if not poll > 0:
        raise CnnzooError(f"--poll: must be positive, got {poll:g}")
    run = follow_run(conn, run_id, emit=lambda line: print(line, flush=True), poll_s=poll)
    print(f"run {run.run_id}: {run.state}")
    check_outcome(run)
    print(f"report: {run.report}")
    return 0


def upload_args(p: argparse.ArgumentParser) -> None:
    add_connection_args(p)
    p.add_argument(
        "--pipeline-name",
        default="cnn-comparison",
        help="the pipeline's name in the KFP UI (default: cnn-comparison)",
    )
    p.add_argument(
        "--version-name",
        default=None,
        help="the new version's name (default: cnnzoo's version and git commit)",
    )
    image_args(p)
    _tensorboard_cr_arg(p)
    _compiled_profile_args(p)


def upload_command(ns: argparse.Namespace) -> int:

    image, gpu_image = _images(ns)
    uploaded = upload(
        connection_arg(ns),
        pipeline_name=ns.pipeline_name,
        version_name=ns.version_name,
        image=image,
        gpu_image=gpu_image,
        placement=ns.placement,
        tensorboard_cr=ns.tensorboard_cr,
        default_profile=_compiled_profile(ns),
    )
    print(f"pipeline: {uploaded.pipeline} ({uploaded.pipeline_id})")
    print(f"version: {uploaded.version} ({uploaded.version_id})")
    print(f"start a run from: {uploaded.url}")
    return 0


def status_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_id", metavar="RUN_ID", help="the run's ID (cnnzoo submit prints it)")
    add_connection_args(p)
    p.add_argument("--wait", action="store_true", help="follow the run to its end")
    _poll_arg(p)


def status_command(ns: argparse.Namespace) -> int:

    conn = connection_arg(ns)
    if ns.wait:
        return _follow(conn, ns.run_id, ns.poll)
    run = read_run(conn, ns.run_id)
    print("\n".join(summary_lines(run)))
    check_outcome(run)
    return 0


def submit_command(ns: argparse.Namespace) -> int:

    image, gpu_image = _images(ns)
    conn = connection_arg(ns)
    if ns.wait and not ns.poll > 0:
        raise CnnzooError(f"--poll: must be positive, got {ns.poll:g}")
    if ns.profile is None:
        ns.profile, why = default_cluster_profile(ns.data, ns.placement)
        print(f"profile: {ns.profile} ({why}; --profile names another)", flush=True)
    run = submit(
        _study(ns),
        conn,
        experiment=ns.experiment,
        run_name=ns.run_name,
        image=image,
        gpu_image=gpu_image,
        placement=ns.placement,
        pipeline_root=ns.pipeline_root,
        enable_caching=False if ns.no_cache else None,
        tensorboard_cr=ns.tensorboard_cr,
    )
    print(f"run id: {run.run_id}")
    print(f"run url: {run.url}", flush=True)
    if ns.wait:
        return _follow(conn, run.run_id, ns.poll)
    return 0
