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
import io
import os
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import yaml

from cnnzoo import __version__
from cnnzoo.core.errors import CnnzooError
from cnnzoo.orchestration import kfp_api
from cnnzoo.orchestration.kfp_api import KfpConnection
from cnnzoo.orchestration.placement import Placement, load_placement
from cnnzoo.orchestration.study import PARAMETER_HELP, Study
from cnnzoo.pipelines import DEFAULT_GPU_IMAGE, DEFAULT_IMAGE, IMAGE_REGISTRY
from cnnzoo.storage.layout import run_logs_root
from cnnzoo.tensorboard.resource import logspath


def build(
    image: str = DEFAULT_IMAGE,
    gpu_image: str = DEFAULT_GPU_IMAGE,
    placement=None,
    caching: bool = True,
    tensorboard_cr: bool = False,
    default_profile: str | None = None,
):
    """The pipeline function for these images and placement (a path, a Placement or None);
    ``caching=False`` compiles every task with caching off; ``tensorboard_cr`` adds the
    step that creates the run's Kubeflow ``Tensorboard``; ``default_profile`` (a resolved
    profile as JSON, :func:`cnnzoo.orchestration.study.profile_json`; None: ``demo``) gives
    the parameters' defaults.

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
        default_profile=default_profile,
    )


#: The variables naming the images when ``--image``/``--gpu-image`` are not given.
IMAGE_ENV = "CNNZOO_IMAGE"
GPU_IMAGE_ENV = "CNNZOO_GPU_IMAGE"
# The first lines kfp's compiler writes; a file that starts so and names this pipeline is
# one cnnzoo compiled, which a later compile may replace.
_COMPILED_HEADER = "# PIPELINE DEFINITION\n# Name: cnn-comparison\n"


def default_images() -> tuple[str, str]:
    """``$CNNZOO_IMAGE`` and ``$CNNZOO_GPU_IMAGE``, each else the built-in default.

    Raises:
        CnnzooError: a variable that is set but not an image reference (names it).
    """
    images = []
    for name, default in ((IMAGE_ENV, DEFAULT_IMAGE), (GPU_IMAGE_ENV, DEFAULT_GPU_IMAGE)):
        value = os.environ.get(name)
        if value is not None and (not value.strip() or any(c.isspace() for c in value)):
            raise CnnzooError(f"{name}: {value!r} is not an image reference")
        images.append(value or default)
    return images[0], images[1]


def default_cluster_profile(data_uri: str, placement=None) -> tuple[str, str]:
    """The profile of a cluster run that names none, and why (for the run's first line).

    ``demo`` data: the ``demo`` profile. Real data: the notebook's study, ``full``, or
    ``gpu`` (``full`` with bfloat16 and XLA) when the placement's train pools have
    accelerators, so real photos never silently train at the demo's 72 px with random
    weights.
    """
    if data_uri == "demo":
        return "demo", "the built-in demo data"
    if not isinstance(placement, Placement):
        placement = load_placement(placement)
    pools = [placement.pools[name] for name in placement.train_pool_names()]
    if all(pool.accelerator for pool in pools):
        kinds = sorted({pool.accelerator_type or pool.accelerator for pool in pools})
        return "gpu", f"real data, train pools with accelerators ({', '.join(kinds)})"
    return "full", "real data, train pools without accelerators"


def check_cluster_images(image: str, gpu_image: str, placement=None) -> None:
    """Refuse an image a cluster cannot pull: the placeholder defaults, or an empty name.

    Only the images the placement uses are checked: the GPU image only when some pool
    that runs a step has an accelerator.

    Raises:
        CnnzooError: one line naming the options, the variables and ``make images push``.
    """
    if not isinstance(placement, Placement):
        placement = load_placement(placement)
    pools = {placement.pool_for_step(s).name for s in ("ingest", "split", "evaluate", "report")}
    pools |= {placement.pool_for_step(s).name for s in ("plan", "fingerprint")}
    pools |= set(placement.train_pool_names())
    with_gpu = any(placement.pools[p].accelerator for p in pools)
    without = any(not placement.pools[p].accelerator for p in pools)
    used = []
    if without:
        used.append(("--image", image))
    if with_gpu:
        used.append(("--gpu-image", gpu_image))
    for option, ref in used:
        if not ref or not ref.strip() or any(c.isspace() for c in ref):
            raise CnnzooError(f"{option} {ref!r}: not an image reference")
        if ref.startswith(IMAGE_REGISTRY + "/"):
            raise CnnzooError(
                f"{option} {ref}: the placeholder image, which no cluster can pull; build and "
                "push your own (make images push IMAGE_REGISTRY=REGION-docker.pkg.dev/PROJECT/"
                f"cnnzoo) and pass --image/--gpu-image or set {IMAGE_ENV}/{GPU_IMAGE_ENV}"
            )


def check_compile_target(out: str | os.PathLike, overwrite: bool = False) -> None:
    """Refuse an ``--out`` that cannot or may not be written, before anything is compiled:
    a folder, a path under a file, or a file cnnzoo did not compile (unless ``overwrite``).

    Raises:
        CnnzooError: one line naming the path.
    """
    out = Path(out)
    if out.is_dir():
        raise CnnzooError(f"--out {out}: is a folder; give the YAML file to write")
    for parent in out.parents:
        if parent.exists():
            if not parent.is_dir():
                raise CnnzooError(f"--out {out}: {parent} is a file, not a folder")
            break
    if overwrite or not out.exists():
        return
    try:
        with open(out, encoding="utf-8") as f:
            head = f.read(len(_COMPILED_HEADER))
    except (OSError, UnicodeDecodeError):
        head = ""
    if head != _COMPILED_HEADER:
        raise CnnzooError(
            f"--out {out}: exists and is not a pipeline cnnzoo compiled; give another path "
            "or --overwrite to replace it"
        )


def compile_pipeline(
    out: str | os.PathLike,
    image: str = DEFAULT_IMAGE,
    gpu_image: str = DEFAULT_GPU_IMAGE,
    placement=None,
    caching: bool = True,
    tensorboard_cr: bool = False,
    overwrite: bool = False,
    default_profile: str | None = None,
) -> Path:
    """Compile the pipeline to a YAML file a Kubeflow Pipelines 2.x backend accepts.

    Args:
        out: the YAML file to write (atomically).
        image: the CPU image of the steps.
        gpu_image: the image of steps placed on an accelerator pool.
        placement: path to a cluster.yaml, a Placement, or None for the default one.
        caching: False turns caching off for every task (``submit --no-cache``).
        tensorboard_cr: add the step that creates the run's Kubeflow ``Tensorboard``.
        overwrite: replace ``out`` even if it is not a pipeline cnnzoo compiled.
        default_profile: the compiled-in profile (JSON), whose values are the defaults of
            the run parameters a person edits in the UI; None: the ``demo`` profile.

    Returns:
        The path written.

    Raises:
        CnnzooError: bad placement file; ``out`` is a folder, or a file cnnzoo did not
            compile (without ``overwrite``).
    """
    from kfp import compiler

    out = Path(out)
    check_compile_target(out, overwrite)
    pipeline = build(image, gpu_image, placement, caching, tensorboard_cr, default_profile)
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


def parameters_reference(placement=None) -> str:
    """The reference page of the pipeline's top-level parameters (Markdown): each
    parameter's name, type, default (the default compile: the ``demo`` profile) and
    meaning, read from the compiled pipeline's signature.

    Raises:
        CnnzooError: a parameter of the signature has no entry in
            :data:`cnnzoo.orchestration.study.PARAMETER_HELP`.
    """
    with tempfile.TemporaryDirectory(prefix="cnnzoo-params-") as tmp:
        path = compile_pipeline(Path(tmp) / "p.yaml", placement=placement)
        spec = next(yaml.safe_load_all(path.read_text(encoding="utf-8")))
    kinds = {"STRING": "string", "NUMBER_INTEGER": "integer", "LIST": "list", "STRUCT": "dict"}
    rows = []
    for name, param in spec["root"]["inputDefinitions"]["parameters"].items():
        if name not in PARAMETER_HELP:
            raise CnnzooError(f"pipeline parameter {name!r}: no description in PARAMETER_HELP")
        default = param.get("defaultValue", "")
        if name == "profile":
            shown = "the resolved `demo` profile"
        elif isinstance(default, list):
            shown = "all: " + ", ".join(f"`{v}`" for v in default)
        elif default == "":
            shown = "empty"
        else:
            shown = f"`{int(default) if isinstance(default, float) else default}`"
        kind = kinds.get(param["parameterType"], param["parameterType"].lower())
        rows.append(f"| `{name}` | {kind} | {shown} | {PARAMETER_HELP[name]} |")
    return "\n".join(
        [_REFERENCE_HEAD, "| name | type | default | meaning |", "|---|---|---|---|", *rows, ""]
    )


_REFERENCE_HEAD = """# Pipeline parameters

<!-- Generated by tools/docs_reference.py from the compiled pipeline's signature;
tests/test_pipeline_compile.py fails when this page and the pipeline disagree. -->

The `cnn-comparison` pipeline's top-level parameters: what a person sees and can edit when
starting a run from the Kubeflow Pipelines UI (upload the YAML of `cnnzoo compile`, or use
`cnnzoo upload`). The defaults are the compiled-in profile's values: those below come from
`cnnzoo compile` with the `demo` profile; `cnnzoo compile --profile full` (or
`--set`/`--config`) compiles other defaults in. The typed parameters win over `profile`:
the `resolve-profile` step applies each one that differs and validates it as `--set` is,
so a bad value fails that step with the `--set` error line. `cnnzoo submit` sends all of
them from the profile it resolves.
"""


def source_revision() -> str:
    """The git commit of cnnzoo's source (12 hex digits, ``-dirty`` with uncommitted
    changes), or ``""`` when it is not a git checkout (an installed wheel)."""
    here = Path(__file__).resolve().parent

    def git(*args: str) -> str:
        done = subprocess.run(
            ["git", "-C", str(here), *args], capture_output=True, text=True, timeout=10, check=True
        )
        return done.stdout.strip()

    try:
        rev = git("rev-parse", "--short=12", "HEAD")
        dirty = git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError):
        return ""
    return f"{rev}-dirty" if dirty else rev


def default_version_name() -> str:
    """A pipeline version's name: cnnzoo's version and its git commit (``0.1.0-1a2b3c4d5e6f``)."""
    rev = source_revision()
    return f"{__version__}-{rev}" if rev else __version__


@dataclass
class UploadedPipeline:
    """A pipeline version uploaded to a Kubeflow Pipelines backend."""

    pipeline_id: str
    version_id: str
    pipeline: str
    version: str
    url: str


def upload(
    conn: KfpConnection | str,
    pipeline_name: str = "cnn-comparison",
    version_name: str | None = None,
    image: str = DEFAULT_IMAGE,
    gpu_image: str = DEFAULT_GPU_IMAGE,
    placement=None,
    tensorboard_cr: bool = False,
    default_profile: str | None = None,
) -> UploadedPipeline:
    """Compile the pipeline and upload it as a version of the named pipeline (created if
    missing), so runs can be started from the KFP UI without the CLI.

    Args:
        conn: the KFP API endpoint and credentials, or its URL.
        pipeline_name: the pipeline's name in the UI.
        version_name: the version's name (default: :func:`default_version_name`).
        image, gpu_image, placement, tensorboard_cr, default_profile: as :func:`compile_pipeline`.

    Returns:
        The pipeline's and the version's IDs and names, and the version's UI address.

    Raises:
        CnnzooError: a placeholder image, a bad placement; the backend refused (e.g. the
            version exists) or could not be reached.
    """
    if not isinstance(conn, KfpConnection):
        conn = kfp_api.connect(conn)
    if not isinstance(placement, Placement):
        placement = load_placement(placement)
    check_cluster_images(image, gpu_image, placement)
    version_name = version_name or default_version_name()
    doing = "uploading to"
    with tempfile.TemporaryDirectory(prefix="cnnzoo-upload-") as tmp:
        package = compile_pipeline(
            Path(tmp) / f"{pipeline_name}.yaml",
            image,
            gpu_image,
            placement,
            tensorboard_cr=tensorboard_cr,
            default_profile=default_profile,
        )
        client = kfp_api.client(conn, doing)
        try:
            with contextlib.redirect_stdout(io.StringIO()):  # kfp prints its own links
                pipeline_id = client.get_pipeline_id(pipeline_name)
                if pipeline_id is None:
                    pipeline_id = client.upload_pipeline(
                        str(package),
                        pipeline_name=pipeline_name,
                        description=_DESCRIPTION,
                        namespace=conn.namespace,
                    ).pipeline_id
                version = client.upload_pipeline_version(
                    str(package), version_name, pipeline_id=pipeline_id
                )
        except Exception as e:  # urllib3 errors, kfp_server_api.ApiException, ValueError
            if getattr(e, "status", None) == 409:
                raise CnnzooError(
                    f"{doing} {conn.host} failed: pipeline {pipeline_name!r} already has a "
                    f"version {version_name!r}; pass --version-name"
                ) from None
            raise CnnzooError(kfp_api.api_error(conn, doing, e)) from None
    url = f"{conn.host}/#/pipelines/details/{pipeline_id}/version/{version.pipeline_version_id}"
    return UploadedPipeline(
        pipeline_id, version.pipeline_version_id, pipeline_name, version_name, url
    )


_DESCRIPTION = (
    "Train and compare CNN configurations on an image-folder dataset (cnnzoo); "
    "parameters: docs/pipeline-parameters.md"
)


@dataclass
class SubmittedRun:
    """A run created on a Kubeflow Pipelines backend."""

    run_id: str
    url: str
    experiment: str


def submit(
    study: Study,
    conn: KfpConnection | str,
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
        conn: the KFP API endpoint and credentials (:func:`cnnzoo.orchestration.kfp_api.connect`),
            or just its URL, e.g. ``http://localhost:8080`` (a port-forward of
            ``ml-pipeline-ui``).
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
    if not isinstance(conn, KfpConnection):
        conn = kfp_api.connect(conn)
    if not isinstance(placement, Placement):
        placement = load_placement(placement)
    arguments = study.arguments(local=False)
    if tensorboard_cr:
        logspath(run_logs_root(arguments["tensorboard_root"], arguments["output_uri"]))
    check_cluster_images(image, gpu_image, placement)
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
        client = kfp_api.client(conn, "submitting to")
        try:
            result = client.create_run_from_pipeline_package(
                str(package),
                arguments=arguments,
                run_name=run_name,
                experiment_name=experiment,
                namespace=conn.namespace,
                pipeline_root=pipeline_root,
                service_account=placement.service_account,
                enable_caching=enable_caching,
            )
        except Exception as e:  # the client raises urllib3/ApiException types
            raise CnnzooError(kfp_api.api_error(conn, "submitting to", e)) from None
    run_id = result.run_id
    return SubmittedRun(run_id, f"{conn.host}/#/runs/details/{run_id}", experiment)


__all__ = [
    "DEFAULT_IMAGE",
    "DEFAULT_GPU_IMAGE",
    "GPU_IMAGE_ENV",
    "IMAGE_ENV",
    "SubmittedRun",
    "build",
    "check_cluster_images",
    "check_compile_target",
    "default_cluster_profile",
    "default_images",
    "UploadedPipeline",
    "default_version_name",
    "parameters_reference",
    "source_revision",
    "upload",
    "compile_pipeline",
    "submit",
]
