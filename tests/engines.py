"""The container tier's engine, base and image: provisioned once per run, reused across runs.

Everything lives under one state folder of its own (``$CNNZOO_CONTAINER_STATE``, default
``/var/tmp/cnnzoo-containers``), never in a system engine's state:

* ``podman/``: podman's configuration and overlay storage (``CONTAINERS_CONF``,
  ``CONTAINERS_STORAGE_CONF``). podman builds: it mounts this machine's pip configuration
  and CA bundle into the build (images/build.sh), which Docker's legacy builder cannot.
* ``docker/``: a Docker Engine (Debian's ``dockerd``) started for the tier with its own
  data root, exec root, pid file and socket, no bridge and no iptables rules; stopped at
  the end of the run. The steps and the DockerRunner pipeline run there (kfp needs
  Docker's 404 for a removed container; podman 4.3's API answers 500), the image moved
  over with ``podman save | docker load``. ``CNNZOO_TEST_DOCKER_HOST`` uses an engine
  that is already running instead (nothing is started or stopped then).
* ``base/``: the root filesystem of ``images/local-base.sh`` (keyed by that script).
* the CPU image, tagged with a hash of everything it is built from (Dockerfile, locks,
  package source, configs, base), so an unchanged checkout reuses it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
STATE = Path(os.environ.get("CNNZOO_CONTAINER_STATE", "/var/tmp/cnnzoo-containers"))
TEST_REGISTRY = "localhost/cnnzoo-test"
LOCAL_BASE = "localhost/cnnzoo-base:bookworm"
# Inputs of the image: what the Dockerfile copies, and how it is built.
IMAGE_INPUTS = (
    "images/Dockerfile",
    "images/build.sh",
    "images/engine.sh",
    "images/requirements-cpu.txt",
    "images/requirements-gpu.txt",
    "pyproject.toml",
    "README.md",
    "cnnzoo",
    "components",
    "pipelines",
    "configs",
)


@dataclass
class Phases:
    """Seconds per phase of the tier (base, build, steps, pipeline), printed as they end."""

    seconds: dict[str, float] = field(default_factory=dict)
    notes: dict[str, str] = field(default_factory=dict)

    @contextlib.contextmanager
    def phase(self, name: str, say):
        start = time.monotonic()
        try:
            yield
        finally:
            self.seconds[name] = round(time.monotonic() - start, 1)
            note = f" ({self.notes[name]})" if name in self.notes else ""
            say(f"container tier: {name} {self.seconds[name]:.0f} s{note}")
            out = ROOT / "build" / "container-tier.json"
            out.parent.mkdir(exist_ok=True)
            out.write_text(json.dumps({"seconds": self.seconds, "notes": self.notes}, indent=2))


def content_key(paths=IMAGE_INPUTS, extra: str = "") -> str:
    """A short sha256 over the files under ``paths`` (names and bytes), plus ``extra``."""
    digest = hashlib.sha256(extra.encode())
    for rel in paths:
        top = ROOT / rel
        files = [top] if top.is_file() else sorted(top.rglob("*"))
        for f in files:
            if f.is_file() and "__pycache__" not in f.parts and f.suffix != ".pyc":
                digest.update(str(f.relative_to(ROOT)).encode() + b"\0" + f.read_bytes())
    return digest.hexdigest()[:16]


class Dockerd:
    """A Docker Engine of the tier's own under ``STATE/docker`` (or an existing one)."""

    def __init__(self, state: Path = STATE / "docker"):
        self.state = state
        self.socket = state / "docker.sock"
        self.pidfile = state / "docker.pid"
        self.proc: subprocess.Popen | None = None
        self.host = os.environ.get("CNNZOO_TEST_DOCKER_HOST") or f"unix://{self.socket}"

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "DOCKER_HOST": self.host, "CONTAINER_ENGINE": "docker"}

    def docker(self, *args: str, check: bool = True, **kw) -> subprocess.CompletedProcess:
        """Run the docker CLI against this engine (text output captured)."""
        done = subprocess.run(["docker", *args], env=self.env, capture_output=True, text=True, **kw)
        if check and done.returncode != 0:
            raise AssertionError(f"docker {' '.join(args)} failed:\n{done.stdout}{done.stderr}")
        return done

    def answers(self) -> bool:
        return self.docker("version", check=False, timeout=20).returncode == 0

    def start(self) -> None:
        """Start dockerd (overlay2, else vfs) unless CNNZOO_TEST_DOCKER_HOST names one."""
        if os.environ.get("CNNZOO_TEST_DOCKER_HOST"):
            assert self.answers(), f"CNNZOO_TEST_DOCKER_HOST={self.host} does not answer"
            return
        assert shutil.which("dockerd") and shutil.which("docker"), (
            "the container tier needs Docker Engine (dockerd and docker): "
            "`bash tools/system-deps.sh containers` installs Debian's docker.io"
        )
        self._stop_stale()
        self.state.mkdir(parents=True, exist_ok=True)
        errors = []
        for driver in ("overlay2", "vfs"):
            log = open(self.state / f"dockerd-{driver}.log", "w")  # noqa: SIM115
            self.proc = subprocess.Popen(
                [
                    "dockerd",
                    f"--data-root={self.state / 'data'}",
                    f"--exec-root={self.state / 'exec'}",
                    f"--pidfile={self.pidfile}",
                    f"--host=unix://{self.socket}",
                    f"--storage-driver={driver}",
                    "--iptables=false",
                    "--ip-masq=false",
                    "--ip-forward=false",
                    "--bridge=none",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            for _ in range(60):
                if self.proc.poll() is not None:
                    break
                if self.socket.exists() and self.answers():
                    return
                time.sleep(0.5)
            errors.append(f"{driver}: {(self.state / f'dockerd-{driver}.log').read_text()[-800:]}")
            self.stop()
        raise AssertionError("dockerd did not start:\n" + "\n".join(errors))

    def _stop_stale(self) -> None:
        """A dockerd a crashed run of this tier left behind (its pid file is in our folder)."""
        with contextlib.suppress(FileNotFoundError, ValueError, ProcessLookupError):
            pid = int(self.pidfile.read_text().strip())
            if Path(f"/proc/{pid}/exe").resolve().name == "dockerd":
                os.kill(pid, signal.SIGTERM)
                for _ in range(60):
                    if not Path(f"/proc/{pid}").exists():
                        break
                    time.sleep(0.5)

    def stop(self) -> None:
        """Stop the dockerd this object started (SIGTERM, then wait)."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None
        # dockerd leaves its default network namespace bind-mounted in the exec root.
        netns = self.state / "exec" / "netns" / "default"
        if os.path.ismount(netns):
            subprocess.run(["umount", str(netns)], check=False)

    def image_exists(self, ref: str) -> bool:
        return self.docker("image", "inspect", ref, check=False).returncode == 0

    def load_from(self, podman: Podman, ref: str) -> bool:
        """``podman save | docker load`` of ``ref`` unless this engine has it; True if loaded."""
        if self.image_exists(ref):
            return False
        save = subprocess.Popen(
            ["podman", "save", "--format", "docker-archive", ref],
            env=podman.env,
            stdout=subprocess.PIPE,
        )
        load = self.docker("load", stdin=save.stdout, check=False, timeout=1800)
        save.stdout.close()
        assert save.wait() == 0 and load.returncode == 0, f"podman save | docker load: {load}"
        # Only this tier's images live here: keep the current one.
        for old in self.docker(
            "images", "--format", "{{.Repository}}:{{.Tag}}", f"{TEST_REGISTRY}/cnnzoo"
        ).stdout.split():
            if old != ref:
                self.docker("rmi", old, check=False)
        return True


class Podman:
    """podman with configuration and overlay storage of the tier's own (``STATE/podman``)."""

    def __init__(self, state: Path = STATE / "podman"):
        self.state = state
        state.mkdir(parents=True, exist_ok=True)
        # runc, not crun: crun 1.8 refuses hybrid cgroup hosts; ulimits within the
        # sandbox's hard limits (podman's defaults ask for more and fail).
        (state / "containers.conf").write_text(
            "[containers]\n"
            'default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]\n'
            "[engine]\n"
            'runtime = "runc"\n'
            'cgroup_manager = "cgroupfs"\n'
            'events_logger = "file"\n'
        )
        (state / "storage.conf").write_text(
            "[storage]\n"
            'driver = "overlay"\n'
            f'graphroot = "{state / "storage"}"\n'
            f'runroot = "{state / "run"}"\n'
        )
        self.env = {
            **os.environ,
            "CONTAINERS_CONF": str(state / "containers.conf"),
            "CONTAINERS_STORAGE_CONF": str(state / "storage.conf"),
            "CONTAINER_ENGINE": "podman",
        }

    def podman(self, *args: str, check: bool = True, **kw) -> subprocess.CompletedProcess:
        done = subprocess.run(["podman", *args], env=self.env, capture_output=True, text=True, **kw)
        if check and done.returncode != 0:
            raise AssertionError(f"podman {' '.join(args)} failed:\n{done.stdout}{done.stderr}")
        return done

    def image_exists(self, ref: str) -> bool:
        return self.podman("image", "exists", ref, check=False).returncode == 0

    def base_image(self) -> str:
        """The base to build on: ``CNNZOO_TEST_BASE_IMAGE`` (pulled if need be), else the
        Debian stand-in of images/local-base.sh, built once (rootfs cached in STATE)."""
        assert shutil.which("podman"), (
            "the container tier builds with podman: `bash tools/system-deps.sh containers`"
            " installs Debian's podman"
        )
        wanted = os.environ.get("CNNZOO_TEST_BASE_IMAGE")
        if wanted:
            if not self.image_exists(wanted):
                self.podman("pull", wanted, timeout=1200)
            return wanted
        ref = f"{LOCAL_BASE.split(':')[0]}:bookworm-{content_key(['images/local-base.sh'])}"
        if not self.image_exists(ref):
            done = subprocess.run(
                ["bash", str(ROOT / "images" / "local-base.sh"), ref],
                env={**self.env, "BASE_CACHE": str(STATE / "base")},
                capture_output=True,
                text=True,
                timeout=1800,
            )
            assert done.returncode == 0, f"images/local-base.sh failed:\n{done.stdout}{done.stderr}"
        return ref

    def build(self, base: str, flavor: str = "cpu") -> tuple[str, bool]:
        """Build a flavour with ``images/build.sh`` unless this content's tag exists.

        Returns:
            The image reference and whether it was built now (False: reused).
        """
        base_id = self.podman("image", "inspect", "--format", "{{.Id}}", base).stdout.strip()
        tag = content_key(extra=base_id)
        name = "cnnzoo" if flavor == "cpu" else "cnnzoo-gpu"
        ref = f"{TEST_REGISTRY}/{name}:{tag}"
        if self.image_exists(ref):
            return ref, False
        done = subprocess.run(
            ["bash", str(ROOT / "images" / "build.sh"), "build"],
            env={
                **self.env,
                "IMAGE_REGISTRY": TEST_REGISTRY,
                "IMAGE_TAG": tag,
                "VERSION": package_version(),
                "FLAVORS": flavor,
                "BASE_IMAGE": base,
            },
            capture_output=True,
            text=True,
            timeout=3600,
        )
        assert done.returncode == 0, f"images/build.sh failed:\n{done.stdout[-6000:]}{done.stderr}"
        # Older tiers' images only take disk (layers they share stay): keep this one.
        for old in self.podman(
            "images", "--format", "{{.Repository}}:{{.Tag}}", f"{TEST_REGISTRY}/{name}"
        ).stdout.split():
            if old != ref:
                self.podman("rmi", old, check=False)
        return ref, True


def package_version() -> str:
    import tomllib

    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
