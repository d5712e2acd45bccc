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
        from cnnzoo.gcs import gcs_client

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
