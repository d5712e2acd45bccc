"""Local runs in the step images: the engine, the pipeline root and kfp's ``DockerRunner``.

``cnnzoo run --runner docker`` runs every step in its image under
``kfp.local.DockerRunner`` instead of as a subprocess of this venv. The engine is the one
``DOCKER_HOST`` names, else the default socket. kfp mounts only the pipeline root into
each container (at the same path), so everything a step reads or writes lives under it,
and it must be writable by the image's user.

Each container runs as the image's user (uid 10001) when this process is root, else as
the calling user (so the run's files stay theirs), on a read-only root filesystem with a
tmpfs ``/tmp``, no capabilities, ``no-new-privileges`` and, unless the data or output is
on ``gs://``, no network.

kfp 2.17's DockerRunner starts containers with ``auto_remove=True`` and expects a 404 for
a container that is already gone. Docker Engine (tested: Debian's 20.10.24) answers so;
podman 4.3's Docker-API service answers 500, so under podman a step that exits before kfp
attaches to its logs fails the task. Use Docker Engine for ``--runner docker``.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

from cnnzoo.core.errors import CnnzooError
from cnnzoo.data.sources import is_demo
from cnnzoo.storage.layout import DOCKER_INPUT_DIR, DOCKER_LOGS_DIR, RUN_KFP_ROOT, RUN_TENSORBOARD

IMAGE_UID = IMAGE_GID = 10001  # images/Dockerfile's USER
DEFAULT_SOCKET = "/var/run/docker.sock"
RUNNERS = ("subprocess", "docker")


def docker_host() -> str:
    """The engine's address: ``$DOCKER_HOST``, else the default socket if it exists.

    Raises:
        CnnzooError: neither is set or present.
    """
    host = os.environ.get("DOCKER_HOST", "")
    if host:
        return host
    if Path(DEFAULT_SOCKET).exists():
        return f"unix://{DEFAULT_SOCKET}"
    raise CnnzooError(
        f"--runner docker: no container engine: DOCKER_HOST is not set and {DEFAULT_SOCKET}"
        " does not exist (start Docker, or point DOCKER_HOST at its socket)"
    )


def check_engine(images: list[str]) -> str:
    """Check the engine answers and holds ``images``; return its name and version.

    kfp would otherwise try to pull a missing image from its registry.

    Raises:
        CnnzooError: the ``docker`` package is missing, the engine does not answer, or an
            image is not there (the message says how to build it).
    """
    try:
        import docker
    except ImportError:
        raise CnnzooError(
            "--runner docker needs the 'docker' Python package: pip install 'cnnzoo[docker]'"
        ) from None
    host = docker_host()
    try:
        client = docker.DockerClient(base_url=host)
        version = client.version()
    except docker.errors.DockerException as e:
        raise CnnzooError(f"--runner docker: the engine at {host} does not answer: {e}") from None
    try:
        for image in images:
            try:
                client.images.get(image)
            except docker.errors.ImageNotFound:
                raise CnnzooError(
                    f"--runner docker: image {image} is not in the engine at {host}: build it"
                    " (make images, see README 'Containers') or pass --image"
                ) from None
    finally:
        client.close()
    return f"{version.get('Platform', {}).get('Name', 'engine')} {version.get('Version', '?')}"


def prepare_pipeline_root(root: Path) -> dict[str, Any]:
    """Create the pipeline root so the containers can write it; return the ``user`` run arg.

    As root, the folder is handed to the image's user and the containers keep running as
    that user; otherwise the containers run as the calling user, who owns the folder.
    """
    root.mkdir(parents=True, exist_ok=True)
    if os.getuid() == 0:
        os.chown(root, IMAGE_UID, IMAGE_GID)
        return {}
    return {"user": f"{os.getuid()}:{os.getgid()}"}


def stage_input(data_uri: str, pipeline_root: Path) -> str:
    """A local ``--data`` folder or archive copied under the pipeline root (the only host
    path a container sees); ``demo`` and ``gs://`` URIs are returned unchanged."""
    if "://" in data_uri or is_demo(data_uri):
        return data_uri
    src = Path(data_uri)
    dest = pipeline_root / DOCKER_INPUT_DIR / src.name
    if src.is_dir():
        shutil.copytree(src, dest)
    else:
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, dest)
    if os.getuid() == 0:
        for path in [dest.parent, dest, *(dest.rglob("*") if dest.is_dir() else [])]:
            os.chown(path, IMAGE_UID, IMAGE_GID)
    return str(dest)


def docker_runner(pipeline_root: Path, network: bool = False):
    """kfp's ``DockerRunner`` with the hardened container settings (see the module doc).

    Args:
        pipeline_root: the run's pipeline root (created and made writable here).
        network: give the containers the engine's default network (``gs://`` data/output).
    """
    from kfp import local

    os.environ["DOCKER_HOST"] = docker_host()  # what docker.from_env() inside kfp reads
    args: dict[str, Any] = {
        **prepare_pipeline_root(pipeline_root),
        "read_only": True,
        "tmpfs": {"/tmp": "rw,exec,size=4g"},
        "cap_drop": ["ALL"],
        "security_opt": ["no-new-privileges"],
    }
    if not network:
        args["network_mode"] = "none"
    return local.DockerRunner(**args)


def needs_network(arguments: dict[str, Any]) -> bool:
    """Whether a run's containers need the network: its data or output is on ``gs://``.

    Args:
        arguments: the pipeline's run arguments (``data_uri``, ``output_uri``).

    Returns:
        True when ``data_uri`` or ``output_uri`` is a ``gs://`` location, else False
        (the containers then run with no network).
    """
    return any(str(arguments.get(k, "")).startswith("gs://") for k in ("data_uri", "output_uri"))


def check_run(arguments: dict[str, Any], images: list[str]) -> None:
    """What a ``docker`` run needs before it starts: an output the containers can reach,
    and an engine holding the images.

    Raises:
        CnnzooError: a local ``--output`` folder (not mounted), or an engine/image problem.
    """
    output = arguments.get("output_uri", "")
    if output and not output.startswith("gs://"):
        raise CnnzooError(
            f"--output {output}: a --runner docker step sees only the run folder; export to"
            " gs://bucket/prefix or read the report in the run folder"
        )
    check_engine(images)


def prepare_run(arguments: dict[str, Any], run_dir: Path):
    """Set up ``run_dir/kfp`` (the pipeline root) for a ``docker`` run; return the runner.

    Local data is copied under the pipeline root and TensorBoard logs go there too
    (``run_dir/tensorboard`` links to them), since containers see nothing else.
    """
    root = run_dir / RUN_KFP_ROOT
    runner = docker_runner(root, network=needs_network(arguments))
    arguments["data_uri"] = stage_input(arguments["data_uri"], root)
    if arguments.get("tensorboard_root") == str(run_dir / RUN_TENSORBOARD):
        logs = root / DOCKER_LOGS_DIR
        logs.mkdir()
        if os.getuid() == 0:
            os.chown(logs, IMAGE_UID, IMAGE_GID)
        (run_dir / RUN_TENSORBOARD).symlink_to(
            f"{RUN_KFP_ROOT}/{DOCKER_LOGS_DIR}", target_is_directory=True
        )
        arguments["tensorboard_root"] = str(logs)
    return runner
