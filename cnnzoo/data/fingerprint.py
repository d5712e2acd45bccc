"""A fingerprint of the data behind a URI, so a pipeline's cache sees when the data changes.

KFP caches a task on its inputs; the ingest task's input is the data URI, which stays
the same when the objects behind it are replaced. :func:`data_fingerprint` lists what
is there now — object names, sizes, generations and checksums on Cloud Storage, file
names, sizes and modification times locally — without reading the data, and hashes the
listing. The pipeline's uncached fingerprint step feeds it to ingest as an input, so
ingest's cache key changes when the data does.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from cnnzoo import __version__
from cnnzoo.core.errors import CnnzooError
from cnnzoo.storage import gcs


def data_fingerprint(uri: str, client=None) -> str:
    """A hex SHA-256 over the listing of ``uri``'s data.

    Args:
        uri: ``demo`` (fingerprinted by the cnnzoo version that generates it), a local
            folder or archive, or ``gs://bucket/prefix`` (a folder or one archive object).
        client: a ``google.cloud.storage.Client`` (default: ``cnnzoo.storage.gcs.gcs_client()``).

    Returns:
        The fingerprint; equal listings give equal fingerprints.

    Raises:
        CnnzooError: no data at ``uri``.
    """
    entries = _listing(uri, client)
    digest = hashlib.sha256(json.dumps([uri, entries], sort_keys=True).encode("utf-8"))
    return digest.hexdigest()


def _listing(uri: str, client) -> list:
    if uri == "demo":
        return [["demo", __version__]]
    if uri.startswith("gs://"):
        return _gcs_listing(uri, client)
    if "://" in uri:
        raise CnnzooError(f"{uri}: expected 'demo', a local path or gs://bucket/prefix")
    root = Path(uri)
    if root.is_file():
        st = root.stat()
        return [[root.name, st.st_size, st.st_mtime_ns]]
    if not root.is_dir():
        raise CnnzooError(f"{uri}: no such file or folder")
    entries = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(filenames):
            path = Path(dirpath) / name
            st = path.stat()
            entries.append([path.relative_to(root).as_posix(), st.st_size, st.st_mtime_ns])
    return entries


def _gcs_listing(uri: str, client) -> list:

    bucket, prefix = gcs.parse_gs_uri(uri)
    client = client or gcs.gcs_client(uri)

    def listing(list_prefix: str, exact: bool = False) -> list:
        return [
            [blob.name, blob.size, blob.generation, blob.md5_hash or blob.crc32c]
            for blob in client.list_blobs(bucket, prefix=list_prefix or None)
            if not exact or blob.name == list_prefix
        ]

    try:
        # A folder (everything under prefix/), else the one object (an archive).
        folder = prefix if not prefix or prefix.endswith("/") else prefix + "/"
        entries = listing(folder) or (listing(prefix, exact=True) if prefix else [])
    except gcs.api_errors() as e:
        raise gcs.gcs_error(uri, e, "list objects") from None
    if not entries:
        raise CnnzooError(f"{uri}: no objects under this prefix")
    return sorted(entries)
