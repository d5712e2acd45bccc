"""The data fingerprint that keys ingest's cache: it changes exactly when the data does.

Cloud Storage runs against the emulator (tests/gcs_fixtures.py); the compiled spec's
caching of the fingerprint and ingest tasks is checked in tests/test_pipeline_compile.py.
"""

from __future__ import annotations

import os

import pytest

from cnnzoo.components.fingerprint import fingerprint
from cnnzoo.core.errors import CnnzooError
from cnnzoo.data.fingerprint import data_fingerprint


def _upload(client, bucket: str, name: str, data: bytes) -> None:
    client.bucket(bucket).blob(name).upload_from_string(data)


def test_gcs_fingerprint_changes_when_an_object_changes(gcs_emulator):
    client = gcs_emulator.client()
    bucket = gcs_emulator.new_bucket("fp")
    _upload(client, bucket, "flowers/train/rose/a.jpg", b"aaaa")
    _upload(client, bucket, "flowers/train/tulip/b.jpg", b"bbbb")
    uri = f"gs://{bucket}/flowers"
    first = data_fingerprint(uri)
    assert len(first) == 64 and data_fingerprint(uri) == first  # a listing, not a clock
    # same name, same size, new content: a new generation
    _upload(client, bucket, "flowers/train/rose/a.jpg", b"AAAA")
    second = data_fingerprint(uri)
    assert second != first
    # an added object
    _upload(client, bucket, "flowers/val/rose/c.jpg", b"cc")
    third = data_fingerprint(uri)
    assert third not in (first, second)
    # a single archive object is fingerprinted the same way
    _upload(client, bucket, "flowers.tar.gz", b"archive-1")
    archive = data_fingerprint(f"gs://{bucket}/flowers.tar.gz")
    _upload(client, bucket, "flowers.tar.gz", b"archive-2")
    assert data_fingerprint(f"gs://{bucket}/flowers.tar.gz") != archive
    # the component body is the same function
    assert fingerprint(data_uri=uri) == third


def test_gcs_fingerprint_errors_name_the_uri(gcs_emulator):
    bucket = gcs_emulator.new_bucket("fp-empty")
    with pytest.raises(CnnzooError, match=f"gs://{bucket}/nothing: no objects"):
        data_fingerprint(f"gs://{bucket}/nothing")
    with pytest.raises(CnnzooError, match="no-such-bucket-x"):
        data_fingerprint("gs://no-such-bucket-x/data")


def test_local_fingerprint_sees_sizes_names_and_mtimes(tmp_path):
    root = tmp_path / "data"
    (root / "train" / "rose").mkdir(parents=True)
    image = root / "train" / "rose" / "a.jpg"
    image.write_bytes(b"aaaa")
    first = data_fingerprint(str(root))
    assert data_fingerprint(str(root)) == first
    stat = image.stat()
    os.utime(image, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    touched = data_fingerprint(str(root))
    assert touched != first
    (root / "train" / "rose" / "b.jpg").write_bytes(b"b")
    assert data_fingerprint(str(root)) not in (first, touched)
    assert data_fingerprint("demo") == data_fingerprint("demo")
    with pytest.raises(CnnzooError, match="no such file or folder"):
        data_fingerprint(str(tmp_path / "missing"))
