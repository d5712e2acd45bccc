"""A real Cloud Storage JSON API server on loopback for the tests: ``gcp-storage-emulator``.

The session-scoped server runs in a thread of the test process on a free 127.0.0.1 port
and keeps its objects in memory. The function-scoped ``gcs_emulator`` fixture points
``google-cloud-storage`` at it through ``STORAGE_EMULATOR_HOST`` (the client then uses
anonymous credentials) and hands out fresh, uniquely named buckets, so tests never see
each other's objects. Subprocesses started by a test inherit the environment and reach
the same server.
"""

from __future__ import annotations

import itertools
import logging
import socket
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

_bucket_ids = itertools.count()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def gcs_emulator_server():
    """The emulator's base URL, ``http://127.0.0.1:PORT``; stopped after the session."""
    from gcp_storage_emulator.server import create_server

    # The emulator logs every request at INFO and warns about string responses.
    logging.getLogger("gcp_storage_emulator").setLevel(logging.ERROR)
    port = _free_port()
    server = create_server("127.0.0.1", port, in_memory=True)
    server.start()
    url = f"http://127.0.0.1:{port}"
    try:
        with urllib.request.urlopen(url + "/", timeout=10) as r:  # its health check
            assert r.read() == b"OK"
        yield url
    finally:
        server.stop()


@dataclass
class GcsEmulator:
    """Handle on the running emulator for one test."""

    url: str

    def client(self):
        """A ``google.cloud.storage.Client`` talking to the emulator."""
        from cnnzoo.storage.gcs import gcs_client

        return gcs_client()

    def new_bucket(self, stem: str = "bkt") -> str:
        """Create an empty bucket with a name no other test uses; return its name."""
        name = f"{stem}-{next(_bucket_ids)}"
        self.client().create_bucket(name)
        return name

    def upload_folder(self, folder: Path, bucket: str, prefix: str) -> None:
        """Upload every file under ``folder`` to ``gs://bucket/prefix/...`` (test setup)."""
        b = self.client().bucket(bucket)
        for p in sorted(folder.rglob("*")):
            if p.is_file():
                b.blob(f"{prefix}/{p.relative_to(folder).as_posix()}").upload_from_filename(p)

    def objects(self, bucket: str, prefix: str = "") -> dict[str, bytes]:
        """``{object name: bytes}`` of every object under ``prefix``."""
        client = self.client()
        return {
            b.name: b.download_as_bytes() for b in client.list_blobs(bucket, prefix=prefix or None)
        }


@pytest.fixture
def gcs_emulator(gcs_emulator_server, monkeypatch):
    """The emulator, with ``STORAGE_EMULATOR_HOST`` pointing this test's clients at it."""
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", gcs_emulator_server)
    monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", "cnnzoo-test")
    monkeypatch.delenv("GOOGLE_APPLICATION_CREDENTIALS", raising=False)
    # Fail fast rather than retry for two minutes if the emulator misbehaves.
    monkeypatch.setenv("CNNZOO_GCS_RETRY_S", "20")
    return GcsEmulator(gcs_emulator_server)


def honours_generation_match(client, bucket: str) -> bool:
    """Whether the server refuses a write whose ``if_generation_match`` does not hold.

    Cloud Storage does; ``gcp-storage-emulator`` 2026.7.19 ignores the precondition
    (measured), so tests of a precondition wrap its client in
    :class:`GenerationMatchClient` unless this says it is no longer needed.
    """
    from google.api_core.exceptions import PreconditionFailed

    blob = client.bucket(bucket).blob(".precondition-probe")
    blob.upload_from_string(b"1")
    try:
        client.bucket(bucket).blob(blob.name).upload_from_string(b"2", if_generation_match=0)
    except PreconditionFailed:
        return True
    finally:
        blob.delete()
    return False


class GenerationMatchClient:
    """A FAKE at the client boundary: a real (emulator) client that enforces
    ``if_generation_match`` on uploads and deletes, as Cloud Storage does.

    Before delegating, a write with ``if_generation_match=N`` reads the object's current
    generation (0: absent) and raises ``PreconditionFailed`` (HTTP 412) if it is not N.
    Only sequential tests may rely on it: the check and the write are two requests.
    """

    def __init__(self, client) -> None:
        self._client = client

    def bucket(self, name: str, *args, **kwargs):
        return _GenerationMatchBucket(self._client.bucket(name, *args, **kwargs))

    def __getattr__(self, name: str):
        return getattr(self._client, name)


class _GenerationMatchBucket:
    def __init__(self, bucket) -> None:
        self._bucket = bucket

    def blob(self, name: str, *args, **kwargs):
        return _generation_match_blob(self._bucket, self._bucket.blob(name, *args, **kwargs))

    def __getattr__(self, name: str):
        return getattr(self._bucket, name)


def _generation_match_blob(bucket, blob):
    """A real ``Blob`` (so ``transfer_manager`` takes it) whose writes check first."""
    from google.cloud.storage import Blob

    class _GenerationMatchBlob(Blob):
        def _check(self, kwargs: dict) -> None:
            from google.api_core.exceptions import PreconditionFailed

            expected = kwargs.get("if_generation_match")
            if expected is None:
                return
            current = bucket.get_blob(self.name)
            actual = int(current.generation) if current is not None else 0
            if actual != int(expected):
                raise PreconditionFailed(
                    f"gs://{bucket.name}/{self.name}: generation is {actual}, "
                    f"if_generation_match was {expected}"
                )

        def upload_from_filename(self, *args, **kwargs):
            self._check(kwargs)
            return super().upload_from_filename(*args, **kwargs)

        def upload_from_string(self, *args, **kwargs):
            self._check(kwargs)
            return super().upload_from_string(*args, **kwargs)

        def delete(self, *args, **kwargs):
            self._check(kwargs)
            return super().delete(*args, **kwargs)

    return _GenerationMatchBlob(blob.name, bucket, chunk_size=blob.chunk_size)


def precondition_client(emulator: GcsEmulator, bucket: str):
    """A client on the emulator whose ``if_generation_match`` holds (see above)."""
    client = emulator.client()
    return client if honours_generation_match(client, bucket) else GenerationMatchClient(client)
