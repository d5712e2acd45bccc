"""Cloud Storage transport: the client, its errors, listing, transfers, deletion.

Every ``gs://`` call goes through :func:`gcs_client` (Application Default Credentials,
or ``STORAGE_EMULATOR_HOST``'s emulator anonymously) and :func:`api_errors` /
:func:`gcs_error` turn a failed request into one ``CnnzooError`` line naming the URI.
:func:`download_tree`, :func:`upload_tree` and :func:`download_file` move data between
``gs://`` and local folders with ``google.cloud.storage.transfer_manager`` (threads,
retries, checksums). Writing a multi-object output behind a commit marker is
:mod:`cnnzoo.storage.outputs`; keeping TensorBoard logs in step is :mod:`cnnzoo.storage.logsync`.

No message built here ever includes a credential: only URIs and the API's error text.
"""

from __future__ import annotations

import math
import os
import sys
import threading
from collections.abc import Collection
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from cnnzoo.core.env import env_number
from cnnzoo.core.errors import CnnzooError, one_line
from cnnzoo.core.paths import is_junk_path, safe_member_path
from cnnzoo.storage.local import atomic_directory

#: Seconds a Cloud Storage request is retried (429, 5xx, dropped connections) before the
#: step gives up; ``$CNNZOO_GCS_RETRY_S`` overrides it.
GCS_RETRY_S = 120.0
#: Parallel transfers (listing, download, upload); ``$CNNZOO_GCS_WORKERS`` overrides it.
GCS_WORKERS = 16
#: Folder levels below the prefix listed level by level, in parallel, before the
#: remaining sub-prefixes are listed flat (``train/``, ``<class>/``, one nesting level).
_LIST_LEVELS = 3


def is_gcs(uri: str | os.PathLike) -> bool:
    """True if ``uri`` is a ``gs://`` URI."""
    return str(uri).startswith("gs://")


def parse_gs_uri(uri: str) -> tuple[str, str]:
    """Split ``gs://bucket/prefix`` into ``(bucket, prefix)``.

    Raises:
        CnnzooError: if ``uri`` is not a ``gs://`` URI or has no bucket name.
    """
    if not is_gcs(uri):
        raise CnnzooError(f"{uri}: not a gs:// URI")
    rest = uri[len("gs://") :]
    bucket, _, prefix = rest.partition("/")
    if not bucket:
        raise CnnzooError(f"{uri}: no bucket name in gs:// URI")
    return bucket, prefix


def workers() -> int:
    value = env_number("CNNZOO_GCS_WORKERS", GCS_WORKERS)
    if value != int(value):
        raise CnnzooError(f"CNNZOO_GCS_WORKERS: must be a whole number, got {value:g}")
    return int(value)


def retry_policy() -> Any:
    """google-cloud-storage's default retry policy with cnnzoo's overall time limit."""
    from google.cloud.storage.retry import DEFAULT_RETRY

    return DEFAULT_RETRY.with_timeout(env_number("CNNZOO_GCS_RETRY_S", GCS_RETRY_S))


def gcs_client(uri: str = "gs://") -> Any:
    """A ``google.cloud.storage.Client`` for the current environment.

    ``$STORAGE_EMULATOR_HOST`` set: anonymous credentials against that emulator, project
    ``$GOOGLE_CLOUD_PROJECT`` (default ``cnnzoo``). Otherwise Application Default
    Credentials: Workload Identity on GKE, ``gcloud auth application-default login``, or
    the service-account key file named by ``$GOOGLE_APPLICATION_CREDENTIALS``.

    Args:
        uri: the URI the client is for, named in error messages.

    Raises:
        CnnzooError: if google-cloud-storage is missing or no credentials are found.
    """
    try:
        import google.auth
        from google.auth.exceptions import DefaultCredentialsError
        from google.cloud import storage
    except ImportError:
        raise CnnzooError(
            f"{uri}: google-cloud-storage is not installed (pip install google-cloud-storage)"
        ) from None
    if os.environ.get("STORAGE_EMULATOR_HOST"):
        from google.auth.credentials import AnonymousCredentials

        project = os.environ.get("GOOGLE_CLOUD_PROJECT", "cnnzoo")
        return storage.Client(project=project, credentials=AnonymousCredentials())
    try:
        credentials, project = google.auth.default(scopes=storage.Client.SCOPE)
    except DefaultCredentialsError as e:
        # google-auth's message names the key file path at most, never its contents.
        reason = one_line(e, 300, first=True)
        raise CnnzooError(
            f"{uri}: no usable Google Cloud credentials ({reason}); use Workload Identity, "
            "'gcloud auth application-default login' or GOOGLE_APPLICATION_CREDENTIALS=KEY.json"
        ) from None
    # Reading and writing objects needs no project; a key without one must still work.
    return storage.Client(project=project or None, credentials=credentials)


def api_errors() -> tuple[type[BaseException], ...]:
    """Exception types that mean 'the Cloud Storage request failed' (not a cnnzoo bug)."""
    from google.api_core.exceptions import GoogleAPIError
    from google.auth.exceptions import GoogleAuthError
    from requests.exceptions import RequestException

    errors: tuple[type[BaseException], ...] = (GoogleAPIError, GoogleAuthError, RequestException)
    try:
        from google.resumable_media.common import DataCorruption, InvalidResponse

        errors += (DataCorruption, InvalidResponse)
    except ImportError:  # pragma: no cover - bundled with google-cloud-storage 3
        pass
    return errors


def gcs_error(uri: str, e: BaseException, action: str, client: Any = None) -> CnnzooError:
    """Turn a Cloud Storage exception into a one-line CnnzooError naming ``uri``.

    A 404 names the bucket only when the bucket is what is missing: with ``client``, it
    is asked; without, a listing's 404 (``action`` "list objects") is the bucket's.
    """
    from google.api_core import exceptions as gexc
    from google.auth.exceptions import RefreshError

    bucket = uri[len("gs://") :].partition("/")[0]
    if isinstance(e, gexc.NotFound):
        if client is not None:
            return CnnzooError(f"{uri}: {_missing_what(client, bucket)}")
        if action == "list objects":
            return CnnzooError(f"{uri}: bucket '{bucket}' does not exist")
        return CnnzooError(f"{uri}: no such object (or bucket '{bucket}' does not exist)")
    if isinstance(e, gexc.Forbidden | gexc.Unauthorized | RefreshError):
        return CnnzooError(
            f"{uri}: permission denied while trying to {action} (the credentials in use "
            f"need read{' and write' if action.startswith('upload') else ''} access to "
            f"bucket '{bucket}', e.g. roles/storage.object"
            f"{'User' if action.startswith('upload') else 'Viewer'})"
        )
    detail = one_line(e, 300)
    return CnnzooError(f"{uri}: cannot {action} ({type(e).__name__}: {detail})")


def folder_prefix(prefix: str) -> str:
    """An object-name prefix as a folder: ``"a/b"`` -> ``"a/b/"``, ``""`` stays ``""``."""
    return prefix.rstrip("/") + "/" if prefix.strip("/") else ""


def list_objects(
    uri: str, client: Any = None, skip_junk: bool = False, pool: ThreadPoolExecutor | None = None
) -> list[Any]:
    """List the objects under the folder ``gs://bucket/prefix``, sub-folders in parallel.

    transfer_manager has no listing; this one lists the first levels with ``delimiter="/"``
    in parallel (a dataset's ``train/<class>/`` folders), then what is below them flat.

    Args:
        uri: ``gs://bucket/prefix``; the prefix is a folder (``/`` is added if missing).
        client: a ``google.cloud.storage.Client`` (default: :func:`gcs_client`).
        skip_junk: leave out hidden files, ``__MACOSX/`` and other OS junk.
        pool: a thread pool to list in (default: a new one).

    Returns:
        The blobs, sorted by name; folder placeholder objects (names ending in ``/``) are
        left out.

    Raises:
        CnnzooError: if the bucket does not exist, access is denied or the listing fails.
    """
    bucket_name, prefix = parse_gs_uri(uri)
    client = client or gcs_client(uri)
    top = folder_prefix(prefix)
    retry = retry_policy()

    def keep(name: str) -> bool:
        return not (skip_junk and is_junk_path(name[len(top) :]))

    def one_level(p: str) -> tuple[list[Any], list[str]]:
        it = client.list_blobs(bucket_name, prefix=p, delimiter="/", retry=retry)
        blobs = list(it)  # the iterator's prefixes are known only once it is consumed
        return blobs, sorted(it.prefixes)

    def flat(p: str) -> list[Any]:
        return list(client.list_blobs(bucket_name, prefix=p, retry=retry))

    own_pool = pool is None
    pool = pool or ThreadPoolExecutor(max_workers=workers())
    found: list[Any] = []
    try:
        level = [top]
        for _ in range(_LIST_LEVELS):
            next_level: list[str] = []
            for blobs, prefixes in pool.map(one_level, level):
                found.extend(blobs)
                next_level.extend(p for p in prefixes if keep(p))
            level = next_level
            if not level:
                break
        for blobs in pool.map(flat, level):
            found.extend(blobs)
    except api_errors() as e:
        raise gcs_error(uri, e, "list objects") from None
    finally:
        if own_pool:
            pool.shutdown()
    return sorted(
        (b for b in found if not b.name.endswith("/") and keep(b.name)), key=lambda b: b.name
    )


def _batches(items: list, progress: bool) -> list[list]:
    """``items`` cut into about ten batches (one when small or quiet), for progress lines."""
    if not progress or len(items) < 20:
        return [items] if items else []
    size = math.ceil(len(items) / 10)
    return [items[i : i + size] for i in range(0, len(items), size)]


def _transfer(
    verb: str, uri: str, pairs: list[tuple[Any, Any]], progress: bool
) -> list[tuple[Any, BaseException]]:
    """Run ``transfer_manager.{upload,download}_many`` over ``pairs`` in threads.

    Prints ``gcs: <verb> n/total objects, <uri> (p%)`` on stderr after each batch.

    Returns:
        The pairs that failed, each with its exception (in the order given).
    """
    from google.cloud.storage import transfer_manager

    many = transfer_manager.upload_many if verb == "uploaded" else transfer_manager.download_many
    key = "upload_kwargs" if verb == "uploaded" else "download_kwargs"
    failed: list[tuple[Any, BaseException]] = []
    done = 0
    for batch in _batches(pairs, progress):
        # Threads, not processes: the client and its credentials stay in this process.
        results = many(
            batch,
            **{key: {"retry": retry_policy()}},
            worker_type=transfer_manager.THREAD,
            max_workers=workers(),
        )
        failed += [
            (pair, r) for pair, r in zip(batch, results, strict=True) if isinstance(r, Exception)
        ]
        done += len(batch)
        if progress:
            print(
                f"gcs: {verb} {done}/{len(pairs)} objects, {uri} ({done / len(pairs):.0%})",
                file=sys.stderr,
                flush=True,
            )
    return failed


def download_tree(
    uri: str,
    dest: str | os.PathLike,
    client: Any = None,
    skip_junk: bool = False,
    *,
    overwrite: bool = False,
    blobs: list | None = None,
) -> Path:
    """Download every object under ``gs://bucket/prefix`` into the folder ``dest``.

    ``dest`` is built under a temporary name and renamed into place, so a failed or
    killed download never leaves a folder that looks complete. Objects are fetched in
    parallel (``transfer_manager``) with retries, checksums verified; progress goes to
    stderr.

    Args:
        uri: ``gs://bucket/prefix`` (a folder of objects).
        dest: local folder to create; if it exists it must be empty, unless
            ``overwrite`` (then it is replaced).
        client: a ``google.cloud.storage.Client`` (default: :func:`gcs_client`).
        skip_junk: leave out hidden files, ``__MACOSX/`` and other OS junk.
        overwrite: replace a non-empty ``dest``.
        blobs: the listing of ``uri`` (``list_objects(uri, client, skip_junk=...)``)
            where the caller already made it; default: listed here.

    Returns:
        ``dest`` as a Path.

    Raises:
        CnnzooError: bucket missing, nothing under the prefix, access denied, an object
            name that would escape ``dest``, a non-empty ``dest``, or a failed download.
            (A reader of a cnnzoo output calls
            :func:`cnnzoo.storage.outputs.download_output`, which checks it is complete.)
    """
    from google.api_core.exceptions import NotFound

    client = client or gcs_client(uri)
    top = folder_prefix(parse_gs_uri(uri)[1])
    if blobs is None:
        blobs = list_objects(uri, client, skip_junk=skip_junk)
    if not blobs:
        raise CnnzooError(f"{uri}: no objects under this prefix (empty or missing folder)")
    rels = [safe_member_path(b.name[len(top) :], uri) for b in blobs]
    with atomic_directory(dest, overwrite) as tmp:
        pairs = []
        for blob, rel in zip(blobs, rels, strict=True):
            try:
                (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
            except OSError as e:
                # e.g. both 'a/b' and 'a/b/c' exist as objects: 'a/b' cannot be both.
                raise CnnzooError(f"{blob_uri(blob)}: cannot write {rel} ({e.strerror})") from None
            pairs.append((blob, str(tmp / rel)))
        for (blob, path), e in _transfer("downloaded", uri, pairs, progress=True)[:1]:
            if isinstance(e, NotFound):
                # Listed a moment ago: deleted meanwhile (another writer at work?).
                raise CnnzooError(
                    f"{blob_uri(blob)}: object disappeared during the download of {uri} "
                    "(is another process rewriting it?)"
                )
            if isinstance(e, OSError):
                raise CnnzooError(f"{blob_uri(blob)}: cannot write {path} ({e.strerror})")
            if isinstance(e, api_errors()):
                raise gcs_error(uri, e, "download objects", client)
            raise e
    return Path(dest)


def blob_uri(blob: Any) -> str:
    """``gs://bucket/name`` of a blob."""
    return f"gs://{blob.bucket.name}/{blob.name}"


def download_file(uri: str, dest: str | os.PathLike, client: Any = None) -> Path:
    """Download the object ``gs://bucket/name`` to the file ``dest`` atomically.

    Raises:
        CnnzooError: if the object or bucket does not exist, access is denied or the
            download fails.
    """
    from google.api_core.exceptions import NotFound

    bucket_name, name = parse_gs_uri(uri)
    if not name or name.endswith("/"):
        raise CnnzooError(f"{uri}: not an object URI (gs://bucket/path/to/object)")
    client = client or gcs_client(uri)
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.{threading.get_ident()}.partial")
    try:
        client.bucket(bucket_name).blob(name).download_to_filename(str(tmp), retry=retry_policy())
        os.replace(tmp, dest)
    except NotFound:
        raise CnnzooError(f"{uri}: {_missing_what(client, bucket_name)}") from None
    except api_errors() as e:
        raise gcs_error(uri, e, "download the object") from None
    finally:
        tmp.unlink(missing_ok=True)
    return dest


def _missing_what(client: Any, bucket_name: str) -> str:
    """Say whether a 404 for an object means the object or its whole bucket is missing."""
    try:
        exists = client.bucket(bucket_name).exists(retry=retry_policy())
    except api_errors():  # e.g. allowed to read objects but not to see the bucket
        return f"no such object (or bucket '{bucket_name}' does not exist)"
    return "no such object" if exists else f"bucket '{bucket_name}' does not exist"


def upload_files(
    client: Any, uri: str, files: list[tuple[Path, str]], progress: bool = True
) -> None:
    """Upload ``(local file, object name)`` pairs to the bucket of ``uri`` in parallel.

    A file removed since it was listed (a temporary file) is skipped. Overwriting an
    object with the same bytes is idempotent, so uploads are retried; the content type
    is guessed from the file name (``upload_from_filename``).

    Raises:
        CnnzooError: the bucket does not exist, access is denied or an upload fails.
    """
    bucket = client.bucket(parse_gs_uri(uri)[0])
    pairs = [(str(path), bucket.blob(name)) for path, name in files]
    failed = [
        e
        for _, e in _transfer("uploaded", uri, pairs, progress)
        if not isinstance(e, FileNotFoundError)
    ]
    if failed:
        if isinstance(failed[0], api_errors()):
            raise gcs_error(uri, failed[0], "upload objects", client)
        raise failed[0]


def local_files(folder: Path) -> list[tuple[Path, str]]:
    """Regular files under ``folder`` as ``(path, posix relative path)``, sorted."""
    return sorted((p, p.relative_to(folder).as_posix()) for p in folder.rglob("*") if p.is_file())


def upload_tree(
    local_dir: str | os.PathLike, uri: str, client: Any = None, exclude: Collection[str] = ()
) -> list[str]:
    """Upload every file under ``local_dir`` to ``gs://bucket/prefix/<relative path>``.

    Files are uploaded in parallel with retries. Each object appears whole or not at
    all; the top-level ``*.json`` files (``history.json``, ``manifest.json``, a report's
    data...) go last.

    Args:
        local_dir: the folder to copy.
        uri: ``gs://bucket/prefix`` to copy it to.
        client: a ``google.cloud.storage.Client`` (default: :func:`gcs_client`).
        exclude: relative paths not to upload (``storage.outputs`` leaves out the
            ownership marker: on Cloud Storage it is the commit marker, written apart).

    Returns:
        The object names written, sorted.

    Raises:
        CnnzooError: ``local_dir`` is not a folder, the bucket does not exist, access is
            denied or an upload fails.
    """
    local_dir = Path(local_dir)
    if not local_dir.is_dir():
        raise CnnzooError(f"{local_dir}: no such folder to upload to {uri}")
    top = folder_prefix(parse_gs_uri(uri)[1])
    client = client or gcs_client(uri)
    # The ownership marker is a commit marker on gs://: only GcsOutput writes it.
    files = [(p, top + rel) for p, rel in local_files(local_dir) if rel not in exclude]
    last = [f for f in files if "/" not in f[1][len(top) :] and f[0].suffix == ".json"]
    first = [f for f in files if f not in last]
    upload_files(client, uri, first)
    upload_files(client, uri, last)
    return sorted(name for _, name in files)


def delete_prefix(uri: str, what: str, client: Any = None) -> int:
    """Delete every object under the ``gs://`` folder ``uri``; return how many.

    Args:
        uri: ``gs://bucket/prefix``.
        what: what the objects are, for the error message (``"old TensorBoard logs"``).
        client: a ``google.cloud.storage.Client`` (default: :func:`gcs_client`).

    Raises:
        CnnzooError: the listing or a deletion fails (an object already gone is fine).
    """
    from google.api_core.exceptions import NotFound

    client = client or gcs_client(uri)
    blobs = list_objects(uri, client)
    for blob in blobs:
        try:
            blob.delete(retry=retry_policy())
        except NotFound:
            pass  # deleted meanwhile: what was wanted
        except api_errors() as e:
            raise CnnzooError(
                f"{blob_uri(blob)}: cannot delete {what} ({type(e).__name__}: {one_line(e, 300)})"
            ) from None
    return len(blobs)
