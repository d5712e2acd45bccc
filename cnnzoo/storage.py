"""Where data lives: dataset URIs to local folders (paths, archives, ``gs://``, ``demo``).

:func:`resolve_source` is the one entry point. Each scheme fetches into a scratch
``workdir`` that the caller owns and removes. Archives are extracted defensively:
members that would land outside the target (``../``, absolute paths, links pointing
out), device files, sparse files and archives declaring more than
:data:`MAX_EXTRACT_BYTES` are rejected; a zip member whose data does not match its
declared size and CRC fails extraction. OS junk (``.DS_Store``, ``__MACOSX/``, hidden
files) is never extracted or downloaded. A dataset nested one folder down
(``animals/train/...``) is accepted.

The second half is Cloud Storage: :func:`download_tree`, :func:`upload_tree`,
:func:`copy_tree` and :func:`download_file` move data between ``gs://`` and local
folders in parallel with retries; :func:`export_folder` copies a run's result to its
output location (``--output``); :class:`LogSync` mirrors a TensorBoard log folder to
``gs://`` while training runs, and :class:`LogMirror` mirrors a ``gs://`` logs root back
into a local folder for ``cnnzoo tensorboard``. A multi-object output on ``gs://`` is
written through :class:`GcsOutput`, whose ``.cnnzoo.json`` is at once ownership marker,
one-writer lock and commit marker; readers check it with :func:`require_complete`.
"""

from __future__ import annotations

import math
import os
import shutil
import stat
import sys
import tarfile
import threading
import zipfile
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path, PurePosixPath
from typing import Any

from cnnzoo.errors import CnnzooError
from cnnzoo.fsutil import MARKER

#: Largest total uncompressed size an archive may declare (decompression-bomb guard);
#: the environment variable ``CNNZOO_MAX_EXTRACT_BYTES`` overrides it.
MAX_EXTRACT_BYTES = 64 * 1024**3
#: Largest number of members an archive may hold.
MAX_EXTRACT_MEMBERS = 5_000_000

ARCHIVE_SUFFIXES = (".zip", ".tar.gz", ".tgz", ".tar")
_JUNK_NAMES = {"__MACOSX", "Thumbs.db", "desktop.ini"}


def is_junk(part: str) -> bool:
    """True for a path component that is OS junk: hidden files, ``__MACOSX``, ``Thumbs.db``."""
    return part.startswith(".") or part in _JUNK_NAMES


def is_junk_path(path: str | PurePosixPath) -> bool:
    """True if any component of the relative ``path`` is junk (see :func:`is_junk`)."""
    return any(is_junk(p) for p in PurePosixPath(path).parts)


def is_archive(name: str) -> bool:
    """True if ``name`` ends in a supported archive suffix."""
    return name.lower().endswith(ARCHIVE_SUFFIXES)


def visible_children(folder: Path) -> list[Path]:
    """Sorted entries of ``folder`` that are not junk."""
    return sorted(p for p in folder.iterdir() if not is_junk(p.name))


def find_dataset_root(folder: Path, uri: str) -> Path:
    """Return ``folder`` if it holds ``train/``, else its single child that does.

    Args:
        folder: a local folder.
        uri: the source URI, for error messages.

    Returns:
        The folder that directly contains ``train/``; if there is none, ``folder`` itself
        (the ingest step then reports the missing ``train/``).
    """
    if (folder / "train").is_dir():
        return folder
    dirs = [p for p in visible_children(folder) if p.is_dir()]
    nested = [d for d in dirs if (d / "train").is_dir()]
    if len(nested) == 1:
        return nested[0]
    if len(nested) > 1:
        names = ", ".join(d.name for d in nested)
        raise CnnzooError(f"{uri}: several datasets nested inside ({names}); point at one")
    return folder


def resolve_source(uri: str, workdir: str | os.PathLike, gcs_client: Any = None) -> Path:
    """Return a local folder holding the dataset that ``uri`` names.

    Args:
        uri: a local folder; a ``.zip``/``.tar.gz``/``.tgz``/``.tar`` archive;
            ``gs://bucket/prefix`` (a folder of objects or one archive object); or
            ``demo`` for the built-in demo dataset, generated on the fly.
        workdir: scratch folder for downloads and extraction (created if missing).
        gcs_client: a ``google.cloud.storage.Client`` to use instead of a default one.

    Returns:
        The dataset root: the folder containing ``train/`` (or, if none is found,
        the fetched folder, so that the caller can report what is missing).

    Raises:
        CnnzooError: if the source does not exist, cannot be fetched, or an archive
            is unsafe or too large.
    """
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    if uri == "demo":
        from cnnzoo.demo_data import make_demo_dataset

        return make_demo_dataset(workdir / "demo")
    if uri.startswith("gs://"):
        return find_dataset_root(_fetch_gcs(uri, workdir, gcs_client), uri)
    if "://" in uri:
        scheme = uri.split("://", 1)[0]
        raise CnnzooError(f"{uri}: unsupported URI scheme '{scheme}' (use a path or gs://)")
    path = Path(uri).expanduser()
    if not path.exists():
        raise CnnzooError(f"{uri}: no such file or folder")
    if path.is_dir():
        return find_dataset_root(path, uri)
    if is_archive(path.name):
        out = workdir / "extracted"
        extract_archive(path, out)
        return find_dataset_root(out, uri)
    raise CnnzooError(f"{uri}: not a folder or a supported archive ({', '.join(ARCHIVE_SUFFIXES)})")


# --- archives --------------------------------------------------------------------------


def _one_line(e: BaseException) -> str:
    """An exception's message on one line (tarfile's can span several)."""
    return " ".join(str(e).split()) or type(e).__name__


def _safe_member_path(name: str, archive: str | Path) -> PurePosixPath:
    """Check an archive member name: relative, no ``..``, no drive letter."""
    norm = name.replace("\\", "/")
    p = PurePosixPath(norm)
    if norm.startswith("/") or p.is_absolute() or (len(norm) > 1 and norm[1] == ":"):
        raise CnnzooError(f"{archive}: member '{name}' has an absolute path; refusing to extract")
    if ".." in p.parts:
        raise CnnzooError(f"{archive}: member '{name}' escapes the target folder ('..')")
    return p


def max_extract_bytes() -> int:
    """The decompression-bomb limit: ``$CNNZOO_MAX_EXTRACT_BYTES`` or :data:`MAX_EXTRACT_BYTES`."""
    env = os.environ.get("CNNZOO_MAX_EXTRACT_BYTES")
    if env is None:
        return MAX_EXTRACT_BYTES
    try:
        value = int(env)
    except ValueError:
        raise CnnzooError(f"CNNZOO_MAX_EXTRACT_BYTES: not an integer: {env!r}") from None
    if value < 0:
        raise CnnzooError(f"CNNZOO_MAX_EXTRACT_BYTES: must be >= 0, got {env!r}")
    return value


def _check_totals(archive: Path, sizes: Iterable[int]) -> None:
    limit = max_extract_bytes()
    total = 0
    count = 0
    for s in sizes:
        total += max(int(s), 0)
        count += 1
        if total > limit:
            raise CnnzooError(
                f"{archive}: declares more than {limit} bytes uncompressed "
                "(possible decompression bomb; raise CNNZOO_MAX_EXTRACT_BYTES if genuine)"
            )
        if count > MAX_EXTRACT_MEMBERS:
            raise CnnzooError(f"{archive}: more than {MAX_EXTRACT_MEMBERS} members")


def extract_archive(archive: str | os.PathLike, out: str | os.PathLike) -> Path:
    """Extract a zip or tar archive into ``out``, refusing anything unsafe.

    Args:
        archive: the archive file (``.zip``, ``.tar``, ``.tar.gz``, ``.tgz``).
        out: folder to extract into (created).

    Returns:
        ``out``.

    Raises:
        CnnzooError: on an unreadable archive, a member path outside ``out``, a link,
            a device file, or a declared total size over :data:`MAX_EXTRACT_BYTES`.
    """
    archive, out = Path(archive), Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if archive.name.lower().endswith(".zip"):
        _extract_zip(archive, out)
    else:
        _extract_tar(archive, out)
    return out


def _extract_zip(archive: Path, out: Path) -> None:
    try:
        zf = zipfile.ZipFile(archive)
    except (zipfile.BadZipFile, OSError) as e:
        raise CnnzooError(f"{archive}: not a readable zip archive ({_one_line(e)})") from None
    with zf:
        infos = zf.infolist()
        _check_totals(archive, (i.file_size for i in infos))
        root = out.resolve()
        for info in infos:
            rel = _safe_member_path(info.filename, archive)
            mode = info.external_attr >> 16
            if stat.S_ISLNK(mode):
                raise CnnzooError(f"{archive}: member '{info.filename}' is a symlink; refusing")
            if is_junk_path(rel) or not rel.parts:
                continue
            target = (out / rel).resolve()
            if not target.is_relative_to(root):
                raise CnnzooError(f"{archive}: member '{info.filename}' escapes the target folder")
            try:
                # A member may be both a file and a folder ('a' and 'a/b.jpg').
                if info.is_dir():
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise CnnzooError(
                    f"{archive}: cannot extract member '{info.filename}' ({e.strerror}: another "
                    "member has the same path as a file and as a folder)"
                ) from None
            try:
                # ZipExtFile never yields more than the declared file_size and checks the CRC.
                with zf.open(info) as src, open(target, "wb") as dst:
                    shutil.copyfileobj(src, dst, 1024 * 1024)
            except (zipfile.BadZipFile, OSError, EOFError, RuntimeError, NotImplementedError) as e:
                # RuntimeError: encrypted member; NotImplementedError: unknown compression.
                raise CnnzooError(
                    f"{archive}: cannot extract member '{info.filename}' ({_one_line(e)})"
                ) from None


def _extract_tar(archive: Path, out: Path) -> None:
    try:
        tf = tarfile.open(archive)
    except (tarfile.TarError, OSError) as e:
        raise CnnzooError(f"{archive}: not a readable tar archive ({_one_line(e)})") from None
    with tf:
        try:
            members = tf.getmembers()
        except (tarfile.TarError, OSError, EOFError) as e:
            raise CnnzooError(f"{archive}: corrupt tar archive ({_one_line(e)})") from None
        _check_totals(archive, (m.size for m in members if m.isfile()))
        keep = []
        for m in members:
            rel = _safe_member_path(m.name, archive)
            if m.issparse():
                # A sparse member can declare gigabytes while storing a few bytes.
                raise CnnzooError(
                    f"{archive}: member '{m.name}' is a sparse file ({m.size} bytes); refusing"
                )
            if is_junk_path(rel) or not rel.parts:
                continue
            keep.append(m)
        try:
            # filter="data" rejects absolute paths, '..', links leaving the target,
            # device files and setuid bits.
            tf.extractall(out, members=keep, filter="data")
        except tarfile.FilterError as e:
            raise CnnzooError(f"{archive}: unsafe member refused ({_one_line(e)})") from None
        except (tarfile.TarError, OSError, EOFError) as e:
            raise CnnzooError(f"{archive}: corrupt tar archive ({_one_line(e)})") from None


# --- Google Cloud Storage --------------------------------------------------------------
#
# Credentials are Application Default Credentials: Workload Identity on GKE, or a
# service-account key named by GOOGLE_APPLICATION_CREDENTIALS (mounted from a Kubernetes
# secret). With STORAGE_EMULATOR_HOST set, the client talks to that emulator anonymously.
# No message built here ever includes a credential: only URIs and the API's error text.

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


def _env_number(name: str, default: float) -> float:
    text = os.environ.get(name)
    if text is None:
        return default
    try:
        value = float(text)
    except ValueError:
        raise CnnzooError(f"{name}: not a number: {text!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise CnnzooError(f"{name}: must be positive, got {text!r}")
    return value


def _workers() -> int:
    value = _env_number("CNNZOO_GCS_WORKERS", GCS_WORKERS)
    if value != int(value):
        raise CnnzooError(f"CNNZOO_GCS_WORKERS: must be a whole number, got {value:g}")
    return int(value)


def _retry() -> Any:
    """google-cloud-storage's default retry policy with cnnzoo's overall time limit."""
    from google.cloud.storage.retry import DEFAULT_RETRY

    return DEFAULT_RETRY.with_timeout(_env_number("CNNZOO_GCS_RETRY_S", GCS_RETRY_S))


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
        reason = str(e).splitlines()[0][:300] if str(e) else type(e).__name__
        raise CnnzooError(
            f"{uri}: no usable Google Cloud credentials ({reason}); use Workload Identity, "
            "'gcloud auth application-default login' or GOOGLE_APPLICATION_CREDENTIALS=KEY.json"
        ) from None
    # Reading and writing objects needs no project; a key without one must still work.
    return storage.Client(project=project or None, credentials=credentials)


def _api_errors() -> tuple[type[BaseException], ...]:
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


def _gcs_error(uri: str, e: BaseException, action: str, client: Any = None) -> CnnzooError:
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
    detail = _one_line(e)[:300]
    return CnnzooError(f"{uri}: cannot {action} ({type(e).__name__}: {detail})")


class _Progress:
    """Prints ``gcs: <verb> n/total ... (p%)`` to stderr at every 10% and at the end."""

    def __init__(self, verb: str, total: int, uri: str) -> None:
        self.verb, self.total, self.uri = verb, total, uri
        self.done = 0
        self.next_frac = 0.1
        self.lock = threading.Lock()

    def step(self) -> None:
        with self.lock:
            self.done += 1
            frac = self.done / self.total
            # Small transfers get one line at the end; larger ones one every 10%.
            if self.done == self.total or (self.total >= 20 and frac >= self.next_frac):
                print(
                    f"gcs: {self.verb} {self.done}/{self.total} objects, {self.uri} ({frac:.0%})",
                    file=sys.stderr,
                    flush=True,
                )
                while self.next_frac <= frac:
                    self.next_frac += 0.1


def _folder_prefix(prefix: str) -> str:
    return prefix.rstrip("/") + "/" if prefix.strip("/") else ""


def list_objects(
    uri: str, client: Any = None, skip_junk: bool = False, pool: ThreadPoolExecutor | None = None
) -> list[Any]:
    """List the objects under the folder ``gs://bucket/prefix``, sub-folders in parallel.

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
    top = _folder_prefix(prefix)
    retry = _retry()

    def keep(name: str) -> bool:
        return not (skip_junk and is_junk_path(name[len(top) :]))

    def one_level(p: str) -> tuple[list[Any], list[str]]:
        it = client.list_blobs(bucket_name, prefix=p, delimiter="/", retry=retry)
        blobs = list(it)  # the iterator's prefixes are known only once it is consumed
        return blobs, sorted(it.prefixes)

    def flat(p: str) -> list[Any]:
        return list(client.list_blobs(bucket_name, prefix=p, retry=retry))

    own_pool = pool is None
    pool = pool or ThreadPoolExecutor(max_workers=_workers())
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
    except _api_errors() as e:
        raise _gcs_error(uri, e, "list objects") from None
    finally:
        if own_pool:
            pool.shutdown()
    return sorted(
        (b for b in found if not b.name.endswith("/") and keep(b.name)), key=lambda b: b.name
    )


def download_tree(
    uri: str,
    dest: str | os.PathLike,
    client: Any = None,
    skip_junk: bool = False,
    *,
    overwrite: bool = False,
) -> Path:
    """Download every object under ``gs://bucket/prefix`` into the folder ``dest``.

    ``dest`` is built under a temporary name and renamed into place, so a failed or
    killed download never leaves a folder that looks complete. Objects are fetched in
    parallel with retries, checksums verified; progress goes to stderr.

    Args:
        uri: ``gs://bucket/prefix`` (a folder of objects).
        dest: local folder to create; if it exists it must be empty, unless
            ``overwrite`` (then it is replaced).
        client: a ``google.cloud.storage.Client`` (default: :func:`gcs_client`).
        skip_junk: leave out hidden files, ``__MACOSX/`` and other OS junk.
        overwrite: replace a non-empty ``dest``.

    Returns:
        ``dest`` as a Path.

    Raises:
        CnnzooError: bucket missing, nothing under the prefix, access denied, an object
            name that would escape ``dest``, a non-empty ``dest``, a cnnzoo output
            under ``uri`` that is not complete (see :class:`GcsOutput`), or a failed
            download.
    """
    from cnnzoo.fsutil import atomic_directory

    client = client or gcs_client(uri)
    top = _folder_prefix(parse_gs_uri(uri)[1])
    with ThreadPoolExecutor(max_workers=_workers()) as pool:
        blobs = list_objects(uri, client, skip_junk=skip_junk, pool=pool)
        if not blobs:
            raise CnnzooError(f"{uri}: no objects under this prefix (empty or missing folder)")
        marker = next((b for b in blobs if b.name == top + MARKER), None)
        if marker is not None:
            require_complete(uri, None, client)
        rels = [_safe_member_path(b.name[len(top) :], uri) for b in blobs]
        progress = _Progress("downloaded", len(blobs), uri)
        retry = _retry()
        with atomic_directory(dest, overwrite) as tmp:

            def download(job: tuple[Any, PurePosixPath]) -> None:
                from google.api_core.exceptions import NotFound

                blob, rel = job
                target = tmp / rel
                try:
                    target.parent.mkdir(parents=True, exist_ok=True)
                    blob.download_to_filename(str(target), retry=retry)
                except NotFound:
                    # Listed a moment ago: deleted meanwhile (another writer at work?).
                    raise CnnzooError(
                        f"gs://{blob.bucket.name}/{blob.name}: object disappeared during the "
                        f"download of {uri} (is another process rewriting it?)"
                    ) from None
                except OSError as e:
                    # e.g. both 'a/b' and 'a/b/c' exist as objects: 'a/b' cannot be both.
                    raise CnnzooError(
                        f"gs://{blob.bucket.name}/{blob.name}: cannot write {rel} ({e.strerror})"
                    ) from None
                progress.step()

            try:
                list(pool.map(download, zip(blobs, rels, strict=True)))
            except _api_errors() as e:
                raise _gcs_error(uri, e, "download objects", client) from None
    return Path(dest)


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
        client.bucket(bucket_name).blob(name).download_to_filename(str(tmp), retry=_retry())
        os.replace(tmp, dest)
    except NotFound:
        raise CnnzooError(f"{uri}: {_missing_what(client, bucket_name)}") from None
    except _api_errors() as e:
        raise _gcs_error(uri, e, "download the object") from None
    finally:
        tmp.unlink(missing_ok=True)
    return dest


def _missing_what(client: Any, bucket_name: str) -> str:
    """Say whether a 404 for an object means the object or its whole bucket is missing."""
    try:
        exists = client.bucket(bucket_name).exists(retry=_retry())
    except _api_errors():  # e.g. allowed to read objects but not to see the bucket
        return f"no such object (or bucket '{bucket_name}' does not exist)"
    return "no such object" if exists else f"bucket '{bucket_name}' does not exist"


def _content_type(path: Path) -> str | None:
    import mimetypes

    return mimetypes.guess_type(path.name)[0]


def _upload_files(
    client: Any, uri: str, files: list[tuple[Path, str]], progress: bool = True
) -> None:
    """Upload ``(local file, object name)`` pairs to the bucket of ``uri`` in parallel."""
    if not files:
        return
    bucket = client.bucket(parse_gs_uri(uri)[0])
    counter = _Progress("uploaded", len(files), uri) if progress else None
    # Overwriting an object with the same bytes is idempotent, so uploads may be retried.
    retry = _retry()

    def upload(job: tuple[Path, str]) -> None:
        path, name = job
        try:
            bucket.blob(name).upload_from_filename(
                str(path), content_type=_content_type(path), retry=retry
            )
        except FileNotFoundError:
            return  # removed since it was listed (e.g. a temporary file); nothing to copy
        if counter is not None:
            counter.step()

    try:
        with ThreadPoolExecutor(max_workers=_workers()) as pool:
            list(pool.map(upload, files))
    except _api_errors() as e:
        raise _gcs_error(uri, e, "upload objects", client) from None


def _local_files(folder: Path) -> list[tuple[Path, str]]:
    """Regular files under ``folder`` as ``(path, posix relative path)``, sorted."""
    return sorted((p, p.relative_to(folder).as_posix()) for p in folder.rglob("*") if p.is_file())


def upload_tree(local_dir: str | os.PathLike, uri: str, client: Any = None) -> list[str]:
    """Upload every file under ``local_dir`` to ``gs://bucket/prefix/<relative path>``.

    Files are uploaded in parallel with retries. Each object appears whole or not at
    all; the top-level ``*.json`` files (``history.json``, ``manifest.json``, a report's
    data...) go last. A top-level ``.cnnzoo.json`` (the ownership marker) is not copied:
    on Cloud Storage that marker is the commit marker, which :class:`GcsOutput`
    writes, and uploading an output for others to read goes through it.

    Args:
        local_dir: the folder to copy.
        uri: ``gs://bucket/prefix`` to copy it to.
        client: a ``google.cloud.storage.Client`` (default: :func:`gcs_client`).

    Returns:
        The object names written, sorted.

    Raises:
        CnnzooError: ``local_dir`` is not a folder, the bucket does not exist, access is
            denied or an upload fails.
    """
    local_dir = Path(local_dir)
    if not local_dir.is_dir():
        raise CnnzooError(f"{local_dir}: no such folder to upload to {uri}")
    top = _folder_prefix(parse_gs_uri(uri)[1])
    client = client or gcs_client(uri)
    # The ownership marker is a commit marker on gs://: only GcsOutput writes it.
    files = [(p, top + rel) for p, rel in _local_files(local_dir) if rel != MARKER]
    last = [f for f in files if "/" not in f[1][len(top) :] and f[0].suffix == ".json"]
    first = [f for f in files if f not in last]
    _upload_files(client, uri, first)
    _upload_files(client, uri, last)
    return sorted(name for _, name in files)


def copy_tree(
    src: str | os.PathLike,
    dest: str | os.PathLike,
    client: Any = None,
    *,
    overwrite: bool = False,
) -> str:
    """Copy a folder between any two of local paths and ``gs://`` prefixes.

    The copy is an output of the kind ``src`` is marked with (``.cnnzoo.json``), or
    ``"export"``; ``dest`` may be missing, empty or an earlier output of that kind, or
    anything with ``overwrite``. A local ``dest`` is built under a temporary name and
    renamed into place; a ``gs://`` ``dest`` is written through :class:`GcsOutput`
    (invisible to readers until complete).

    Args:
        src: a local folder or ``gs://bucket/prefix``.
        dest: a local folder or ``gs://bucket/prefix``.
        client: a ``google.cloud.storage.Client`` for either side.
        overwrite: replace a ``dest`` that is not an earlier output of the same kind.

    Returns:
        ``dest`` as a string.

    Raises:
        CnnzooError: if ``src`` does not exist, is empty (gs://) or an incomplete cnnzoo
            output, ``dest`` holds something else, another process writes ``dest``, or
            a transfer fails.
    """
    from cnnzoo.fsutil import atomic_directory, output_kind, output_lock, scratch_directory

    src, dest = str(src), str(dest)
    if is_gcs(src):
        import tempfile

        if is_gcs(dest):
            with tempfile.TemporaryDirectory(prefix="cnnzoo-copy-") as tmp:
                download_tree(src, Path(tmp) / "tree", client)
                copy_tree(Path(tmp) / "tree", dest, client, overwrite=overwrite)
            return dest
        # The lock first: taking it removes scratch folders that killed copies left.
        with output_lock(dest), scratch_directory(dest) as tmp:
            download_tree(src, Path(tmp) / "tree", client)
            copy_tree(Path(tmp) / "tree", dest, client, overwrite=overwrite)
        return dest
    if not Path(src).is_dir():
        raise CnnzooError(f"{src}: no such folder to copy to {dest}")
    kind = output_kind(src) or "export"
    if is_gcs(dest):
        with GcsOutput(dest, kind, overwrite=overwrite, client=client) as out:
            out.upload(src)
        return dest
    if Path(dest).resolve() == Path(src).resolve():
        return dest
    if Path(src).resolve() in Path(dest).resolve().parents:
        raise CnnzooError(f"{dest}: cannot copy {src} into a folder inside itself")
    with atomic_directory(dest, overwrite, kind=kind) as tmp:
        shutil.copytree(src, tmp, dirs_exist_ok=True, symlinks=False)
    return dest


#: Seconds after which a ``writing`` commit marker that its writer has stopped
#: refreshing counts as left by a dead writer; ``$CNNZOO_GCS_LOCK_STALE_S`` overrides it.
GCS_LOCK_STALE_S = 120.0


def _read_marker(client: Any, uri: str) -> tuple[dict[str, Any] | None, Any]:
    """The commit marker under ``uri`` as ``(content or None, blob or None)``."""
    import json

    from google.api_core.exceptions import NotFound

    bucket, prefix = parse_gs_uri(uri)
    try:
        # Its metadata too: the generation (for the precondition) and the update time.
        blob = client.bucket(bucket).get_blob(_folder_prefix(prefix) + MARKER, retry=_retry())
        if blob is None:
            return None, None
        data = blob.download_as_bytes(retry=_retry())
    except NotFound:
        return None, None
    except _api_errors() as e:
        where = f"{uri.rstrip('/')}/{MARKER}"
        raise _gcs_error(where, e, "read the commit marker", client) from None
    try:
        marker = json.loads(data)
    except ValueError:
        marker = None
    if not isinstance(marker, dict):
        marker = {"kind": None, "state": "unreadable"}
    return marker, blob


def require_complete(uri: str, kind: str | None, client: Any = None) -> dict[str, Any]:
    """Check that ``uri`` holds a complete cnnzoo output (of ``kind``, if given).

    Readers of a multi-object output on Cloud Storage call this before trusting it:
    :class:`GcsOutput` marks an output complete only after its last object is written.

    Returns:
        The commit marker.

    Raises:
        CnnzooError: no marker (not a cnnzoo output, or written by an older version), a
            marker of another kind, or a write that is still going on or was interrupted.
    """
    client = client or gcs_client(uri)
    marker, _ = _read_marker(client, uri)
    what = f"cnnzoo {kind} output" if kind else "cnnzoo output"
    if marker is None:
        raise CnnzooError(
            f"{uri}: not a complete {what} (no {MARKER} commit marker); write it again"
        )
    if kind is not None and marker.get("kind") != kind:
        raise CnnzooError(f"{uri}: a cnnzoo {marker.get('kind')} output, not a {what}")
    if marker.get("state") != "complete":
        raise CnnzooError(
            f"{uri}: incomplete {what} (state '{marker.get('state')}': a write into it is "
            "running or was interrupted); rerun the step that writes it"
        )
    return marker


class GcsOutput:
    """Write a multi-object output under ``gs://bucket/prefix`` behind a commit marker.

    ``<prefix>/.cnnzoo.json`` is at once the ownership marker, the one-writer lock and
    the commit marker:

    1. On entry the prefix must be empty, an earlier cnnzoo output of ``kind``, or
       ``overwrite`` must be given. The marker is then (re)written with state
       ``writing`` under a generation precondition (``if_generation_match``: 0 if there
       was none, else the generation just read), so of two writers starting together
       only one gets it; a ``writing`` marker refreshed within
       :data:`GCS_LOCK_STALE_S` (or written by a live process on this host) belongs to
       a live writer and refuses the second. A background thread refreshes it.
    2. The old top-level ``*.json`` files (an earlier ``manifest.json``...) are deleted
       before anything is uploaded, then :meth:`upload` writes the new objects.
    3. On success, objects of the earlier output that the new one lacks are deleted and
       the marker is rewritten ``complete``, last. On an error it is left ``failed``; a
       killed writer leaves ``writing``. Readers call :func:`require_complete`.
    """

    def __init__(self, uri: str, kind: str, overwrite: bool = False, client: Any = None) -> None:
        """Prepare; nothing is read or written before ``with``."""
        parse_gs_uri(uri)
        self.uri = uri.rstrip("/")
        self.kind = kind
        self.overwrite = overwrite
        self.client = client
        self.written: set[str] = set()
        self._old: list[Any] = []
        self._blob: Any = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lost: str | None = None
        self._guard = threading.Lock()

    def _write_marker(self, state: str, generation: int) -> None:
        import json

        from cnnzoo.fsutil import marker_record

        data = json.dumps(marker_record(self.kind, state), indent=1) + "\n"
        # A precondition makes the write safe to retry and atomic against other writers.
        self._blob.upload_from_string(
            data,
            content_type="application/json",
            if_generation_match=generation,
            retry=_retry(),
        )

    def _stale(self, marker: dict[str, Any], blob: Any) -> bool:
        import datetime
        import socket

        writer = marker.get("writer") or {}
        if writer.get("host") == socket.gethostname() and isinstance(writer.get("pid"), int):
            try:
                os.kill(writer["pid"], 0)
            except ProcessLookupError:
                return True
            except PermissionError:
                return False
            return False
        updated = getattr(blob, "updated", None)
        if updated is None:
            return True
        age = (datetime.datetime.now(datetime.timezone.utc) - updated).total_seconds()
        return age > _env_number("CNNZOO_GCS_LOCK_STALE_S", GCS_LOCK_STALE_S)

    def __enter__(self) -> GcsOutput:
        from google.api_core.exceptions import PreconditionFailed

        _env_number("CNNZOO_GCS_LOCK_STALE_S", GCS_LOCK_STALE_S)  # a bad value fails first
        self.client = self.client or gcs_client(self.uri)
        marker, blob = _read_marker(self.client, self.uri)
        top = _folder_prefix(parse_gs_uri(self.uri)[1])
        self._old = [b for b in list_objects(self.uri, self.client) if b.name != top + MARKER]
        if (
            marker is not None
            and marker.get("state") == "writing"
            and not self._stale(marker, blob)
        ):
            w = marker.get("writer") or {}
            raise CnnzooError(
                f"{self.uri}: another cnnzoo process is writing it (pid {w.get('pid')} on "
                f"{w.get('host')}, since {marker.get('written')}); wait for it to finish"
            )
        if (self._old or marker is not None) and not self.overwrite:
            found = marker.get("kind") if marker else None
            if found != self.kind:
                other = f" (it holds a cnnzoo {found} output)" if found else ""
                raise CnnzooError(
                    f"{self.uri}: exists and is not a cnnzoo {self.kind} output{other}; "
                    "choose another prefix or pass --overwrite"
                )
        bucket, _ = parse_gs_uri(self.uri)
        self._blob = self.client.bucket(bucket).blob(top + MARKER)
        generation = int(blob.generation) if blob is not None and blob.generation else 0
        try:
            self._write_marker("writing", generation)
        except PreconditionFailed:
            raise CnnzooError(
                f"{self.uri}: another cnnzoo process started writing it at the same moment; "
                "wait for it to finish"
            ) from None
        except _api_errors() as e:
            raise _gcs_error(self.uri, e, "upload objects", self.client) from None
        # Readers of older versions look for the manifest: it goes before anything new.
        for b in self._old:
            if "/" not in b.name[len(top) :] and b.name.endswith(".json"):
                self._delete(b)
        self._thread = threading.Thread(target=self._heartbeat, name="cnnzoo-gcs-lock", daemon=True)
        self._thread.start()
        return self

    def _heartbeat(self) -> None:
        from google.api_core.exceptions import PreconditionFailed

        interval = _env_number("CNNZOO_GCS_LOCK_STALE_S", GCS_LOCK_STALE_S) / 4
        while not self._stop.wait(interval):
            with self._guard:
                try:
                    self._write_marker("writing", int(self._blob.generation))
                except PreconditionFailed:
                    self._lost = "another process took the commit marker over"
                    return
                except _api_errors() as e:  # retried at the next beat
                    print(f"warning: {self.uri}: cannot refresh the lock ({e})", file=sys.stderr)

    def _delete(self, blob: Any) -> None:
        from google.api_core.exceptions import NotFound

        try:
            blob.delete(retry=_retry())
        except NotFound:
            pass  # already gone: what was wanted
        except _api_errors() as e:
            raise _gcs_error(
                f"gs://{blob.bucket.name}/{blob.name}", e, "delete an object"
            ) from None

    def upload(self, local_dir: str | os.PathLike) -> list[str]:
        """Upload ``local_dir`` into the output (see :func:`upload_tree`)."""
        names = upload_tree(local_dir, self.uri, self.client)
        self.written.update(names)
        return names

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        from google.api_core.exceptions import PreconditionFailed

        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        if exc_type is not None:
            try:
                self._write_marker("failed", int(self._blob.generation))
            except (PreconditionFailed, *_api_errors()) as e:
                print(f"warning: {self.uri}: cannot mark the output failed ({e})", file=sys.stderr)
            return
        if self._lost:
            raise CnnzooError(f"{self.uri}: lost the write lock ({self._lost}); write it again")
        for b in self._old:
            if b.name not in self.written:
                self._delete(b)
        try:
            self._write_marker("complete", int(self._blob.generation))
        except PreconditionFailed:
            raise CnnzooError(
                f"{self.uri}: another process took the commit marker over while this one "
                "was writing; write it again"
            ) from None
        except _api_errors() as e:
            raise _gcs_error(self.uri, e, "upload objects", self.client) from None


def output_location(output_uri: str, *parts: str) -> str:
    """``<output_uri>/<part>/...``: a place under a run's output location (``--output``).

    Args:
        output_uri: a local folder or ``gs://bucket/prefix`` (a trailing ``/`` is ignored).
        *parts: path components below it, e.g. ``"models", "simple"``.

    Returns:
        The location, joined with ``/`` (kept a string: a ``gs://`` URI is not a path).

    Raises:
        CnnzooError: if ``output_uri`` is empty.
    """
    root = str(output_uri).rstrip("/")
    if not root:
        raise CnnzooError("output_uri: empty output location")
    return "/".join([root, *parts])


def run_logs_root(tensorboard_root: str, output_uri: str) -> str:
    """A run's TensorBoard root: ``tensorboard_root``, else ``<output_uri>/tensorboard``.

    Returns:
        The root without a trailing ``/``, or ``""`` when neither is set (each train
        task then keeps its logs in its own artifact).
    """
    if tensorboard_root:
        return str(tensorboard_root).rstrip("/")
    return output_location(output_uri, "tensorboard") if output_uri else ""


def export_folder(src: str | os.PathLike, output_uri: str, *parts: str, client: Any = None) -> str:
    """Copy the folder ``src`` to ``<output_uri>/<parts...>`` (a run's export of a result).

    Args:
        src: a local folder (a task's output artifact).
        output_uri: the run's output location, a local folder or ``gs://bucket/prefix``.
        *parts: where below it, e.g. ``"report"`` or ``"models", "simple"``.
        client: a ``google.cloud.storage.Client`` for a ``gs://`` location.

    Returns:
        The location written; as :func:`copy_tree` (a local one replaced atomically, a
        ``gs://`` one behind a commit marker).

    Raises:
        CnnzooError: ``output_uri`` is empty, ``src`` is missing, or a transfer fails.
    """
    return copy_tree(src, output_location(output_uri, *parts), client)


class LogSync:
    """Mirror a local TensorBoard log folder to ``gs://`` while training runs.

    A background thread uploads new and changed files (size or modification time
    differ from the last upload) every ``interval_s`` seconds, so a TensorBoard pointed
    at the ``gs://`` root shows training live; leaving the ``with`` block stops the thread
    and uploads whatever changed since (the final flush). An upload that fails in the
    background is reported on stderr and retried at the next interval; a failed final
    flush raises, unless the block is already leaving with an exception.

    Example::

        with LogSync(local_logs, "gs://bucket/tb/run-1", interval_s=30):
            model.fit(..., callbacks=[TensorBoard(local_logs)])
    """

    def __init__(
        self,
        local_dir: str | os.PathLike,
        uri: str,
        interval_s: float = 30.0,
        client: Any = None,
    ) -> None:
        """Prepare the sync; nothing runs until :meth:`start` or ``with``.

        Args:
            local_dir: the local log folder (may not exist yet).
            uri: ``gs://bucket/prefix`` to mirror it to.
            interval_s: seconds between background syncs.
            client: a ``google.cloud.storage.Client`` (default: :func:`gcs_client`).

        Raises:
            CnnzooError: ``uri`` is not ``gs://`` or ``interval_s`` is not positive.
        """
        parse_gs_uri(uri)
        if not interval_s > 0:
            raise CnnzooError(f"LogSync interval_s must be positive, got {interval_s}")
        self.local_dir = Path(local_dir)
        self.uri = uri.rstrip("/")
        self.interval_s = float(interval_s)
        self.client = client or gcs_client(uri)
        self.uploaded = 0  # files uploaded so far, counting re-uploads
        self.failures = 0  # background syncs that failed
        self._top = _folder_prefix(parse_gs_uri(uri)[1])
        self._synced: dict[str, tuple[int, int]] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def sync(self) -> int:
        """Upload files that are new or changed since the last sync; return how many.

        Raises:
            CnnzooError: if an upload fails.
        """
        with self._lock:
            if not self.local_dir.is_dir():
                return 0
            todo: list[tuple[Path, str]] = []
            stats: dict[str, tuple[int, int]] = {}
            for path, rel in _local_files(self.local_dir):
                try:
                    st = path.stat()
                except FileNotFoundError:
                    continue
                # The stat is taken before the upload: a file that grows meanwhile
                # differs next time and is uploaded again.
                stats[rel] = (st.st_size, st.st_mtime_ns)
                if self._synced.get(rel) != stats[rel]:
                    todo.append((path, self._top + rel))
            _upload_files(self.client, self.uri, todo, progress=False)  # quiet: runs often
            for _, name in todo:
                rel = name[len(self._top) :]
                self._synced[rel] = stats[rel]
            self.uploaded += len(todo)
            return len(todo)

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.sync()
            except CnnzooError as e:
                self.failures += 1
                print(f"warning: log sync: {e}; retrying in {self.interval_s:g} s", file=sys.stderr)

    def start(self) -> LogSync:
        """Start the background thread."""
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="cnnzoo-logsync", daemon=True)
            self._thread.start()
        return self

    def stop(self, flush: bool = True) -> None:
        """Stop the background thread and, if ``flush``, upload what changed since."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if flush:
            self.sync()

    def __enter__(self) -> LogSync:
        return self.start()

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is None:
            self.stop(flush=True)
            return
        self.stop(flush=False)
        try:
            self.sync()  # the logs up to a failure are worth keeping
        except CnnzooError as e:
            print(f"warning: log sync: final flush failed: {e}", file=sys.stderr)


def _md5_b64(path: Path) -> str:
    """The base64 MD5 of a file, as Cloud Storage reports ``md5Hash``."""
    import base64
    import hashlib

    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return base64.b64encode(digest.digest()).decode()


class LogMirror:
    """Mirror a ``gs://`` TensorBoard logs root into a local folder, for a local TensorBoard.

    The download counterpart of :class:`LogSync`: :meth:`sync` fetches new and changed
    objects; as a context manager a background thread re-syncs every ``interval_s``
    seconds, so a TensorBoard on the local folder follows a run that is still training.
    Why not TensorBoard on ``gs://`` directly: TensorFlow's gs:// filesystem and
    TensorBoard's data server each talk to storage.googleapis.com with their own client
    and ignore ``STORAGE_EMULATOR_HOST`` (measured: TF 2.21 fails resolving
    www.googleapis.com against the emulator), so that path could not be tested, and it
    would use other credentials than every other cnnzoo command.

    Event files only grow and :class:`LogSync` re-uploads them whole, so an object that
    changed and is longer than the local copy gets only its new bytes (a ranged read)
    appended in place: TensorBoard reads an open event file on from its last offset and
    sees them. Anything else that changed is downloaded whole and renamed into place.

    Example::

        with LogMirror("gs://bucket/studies/one/tensorboard", cache_dir, interval_s=30):
            serve_tensorboard(cache_dir)
    """

    def __init__(
        self,
        uri: str,
        local_dir: str | os.PathLike,
        interval_s: float = 30.0,
        client: Any = None,
    ) -> None:
        """Prepare the mirror; nothing is fetched until :meth:`sync`, :meth:`start` or ``with``.

        Args:
            uri: ``gs://bucket/prefix``, the logs root.
            local_dir: the local folder (created; files in it are overwritten).
            interval_s: seconds between background syncs.
            client: a ``google.cloud.storage.Client`` (default: :func:`gcs_client`).

        Raises:
            CnnzooError: ``uri`` is not ``gs://`` or ``interval_s`` is not positive.
        """
        parse_gs_uri(uri)
        if not interval_s > 0:
            raise CnnzooError(f"LogMirror interval_s must be positive, got {interval_s}")
        self.uri = uri.rstrip("/")
        self.local_dir = Path(local_dir)
        self.interval_s = float(interval_s)
        self.client = client or gcs_client(uri)
        self.fetched = 0  # objects fetched so far (whole or their new bytes)
        self.failures = 0  # background syncs that failed
        self._top = _folder_prefix(parse_gs_uri(uri)[1])
        self._seen: dict[str, int] = {}  # relative path -> generation fetched
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def sync(self) -> int:
        """Fetch objects that are new or changed since the last sync; return how many.

        Raises:
            CnnzooError: the bucket is missing, access is denied, or a download fails.
        """
        with self._lock:
            blobs = list_objects(self.uri, self.client)
            todo = []
            for blob in blobs:
                rel = _safe_member_path(blob.name[len(self._top) :], self.uri)
                if self._seen.get(str(rel)) != blob.generation:
                    todo.append((blob, rel))
            retry = _retry()

            def fetch(job: tuple[Any, PurePosixPath]) -> None:
                blob, rel = job
                generation = blob.generation  # before a download updates the blob's fields
                target = self.local_dir / rel
                target.parent.mkdir(parents=True, exist_ok=True)
                have = target.stat().st_size if target.is_file() else 0
                if 0 < have < (blob.size or 0):
                    # A ranged read has no whole-object checksum to verify.
                    tail = blob.download_as_bytes(start=have, retry=retry, checksum=None)
                    with open(target, "ab") as f:
                        f.write(tail)
                elif not target.is_file() or have != blob.size or _md5_b64(target) != blob.md5_hash:
                    # New, shrunk or rewritten; an unchanged copy is left alone, since
                    # TensorBoard may hold it open.
                    part = target.with_name(f".{target.name}.partial")
                    blob.download_to_filename(str(part), retry=retry)
                    os.replace(part, target)
                self._seen[str(rel)] = generation

            self.local_dir.mkdir(parents=True, exist_ok=True)
            with ThreadPoolExecutor(max_workers=_workers()) as pool:
                try:
                    list(pool.map(fetch, todo))
                except _api_errors() as e:
                    raise _gcs_error(self.uri, e, "download objects") from None
                except OSError as e:
                    raise CnnzooError(
                        f"{self.uri}: cannot write into {self.local_dir} ({e})"
                    ) from None
            self.fetched += len(todo)
            return len(todo)

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.sync()
            except CnnzooError as e:
                self.failures += 1
                print(
                    f"warning: log mirror: {e}; retrying in {self.interval_s:g} s", file=sys.stderr
                )

    def start(self) -> LogMirror:
        """Start the background thread (after a first :meth:`sync` of your own, typically)."""
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="cnnzoo-logmirror", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stop the background thread."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def __enter__(self) -> LogMirror:
        return self.start()

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        self.stop()


def _fetch_gcs(uri: str, workdir: Path, client: Any = None) -> Path:
    """Download a ``gs://`` folder or archive object into ``workdir``; return the folder."""
    _, prefix = parse_gs_uri(uri)
    if is_archive(prefix):
        local = download_file(uri, workdir / "download" / PurePosixPath(prefix).name, client)
        return extract_archive(local, workdir / "extracted")
    return download_tree(uri, workdir / "gcs", client, skip_junk=True)
