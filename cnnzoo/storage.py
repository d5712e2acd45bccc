"""Turn a dataset URI into a local folder: local paths, archives, ``gs://`` and ``demo``.

:func:`resolve_source` is the one entry point. Each scheme fetches into a scratch
``workdir`` that the caller owns and removes. Archives are extracted defensively:
members that would land outside the target (``../``, absolute paths, links pointing
out), device files and archives declaring more than :data:`MAX_EXTRACT_BYTES` are
rejected. OS junk (``.DS_Store``, ``__MACOSX/``, hidden files) is never extracted or
downloaded. A dataset nested one folder down (``animals/train/...``) is accepted.
"""

from __future__ import annotations

import os
import shutil
import stat
import sys
import tarfile
import zipfile
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path, PurePosixPath
from typing import Any

from cnnzoo.errors import CnnzooError

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
        return int(env)
    except ValueError:
        raise CnnzooError(f"CNNZOO_MAX_EXTRACT_BYTES: not an integer: {env!r}") from None


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
        raise CnnzooError(f"{archive}: not a readable zip archive ({e})") from None
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
            if info.is_dir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                # ZipExtFile never yields more than the declared file_size and checks the CRC.
                with zf.open(info) as src, open(target, "wb") as dst:
                    shutil.copyfileobj(src, dst, 1024 * 1024)
            except (zipfile.BadZipFile, OSError, EOFError, RuntimeError, NotImplementedError) as e:
                # RuntimeError: encrypted member; NotImplementedError: unknown compression.
                raise CnnzooError(
                    f"{archive}: cannot extract member '{info.filename}' ({e})"
                ) from None


def _extract_tar(archive: Path, out: Path) -> None:
    try:
        tf = tarfile.open(archive)
    except (tarfile.TarError, OSError) as e:
        raise CnnzooError(f"{archive}: not a readable tar archive ({e})") from None
    with tf:
        try:
            members = tf.getmembers()
        except (tarfile.TarError, OSError, EOFError) as e:
            raise CnnzooError(f"{archive}: corrupt tar archive ({e})") from None
        _check_totals(archive, (m.size for m in members if m.isfile()))
        keep = []
        for m in members:
            rel = _safe_member_path(m.name, archive)
            if is_junk_path(rel) or not rel.parts:
                continue
            keep.append(m)
        try:
            # filter="data" rejects absolute paths, '..', links leaving the target,
            # device files and setuid bits.
            tf.extractall(out, members=keep, filter="data")
        except tarfile.FilterError as e:
            raise CnnzooError(f"{archive}: unsafe member refused ({e})") from None
        except (tarfile.TarError, OSError, EOFError) as e:
            raise CnnzooError(f"{archive}: corrupt tar archive ({e})") from None


# --- Google Cloud Storage --------------------------------------------------------------


def parse_gs_uri(uri: str) -> tuple[str, str]:
    """Split ``gs://bucket/prefix`` into ``(bucket, prefix)``.

    Raises:
        CnnzooError: if there is no bucket name.
    """
    rest = uri[len("gs://") :]
    bucket, _, prefix = rest.partition("/")
    if not bucket:
        raise CnnzooError(f"{uri}: no bucket name in gs:// URI")
    return bucket, prefix


def _gcs_client(uri: str, client: Any) -> Any:
    if client is not None:
        return client
    try:
        from google.cloud import storage
    except ImportError:
        raise CnnzooError(
            f"{uri}: google-cloud-storage is not installed (pip install google-cloud-storage)"
        ) from None
    try:
        return storage.Client()
    except Exception as e:  # no credentials or project: report, not crash
        raise CnnzooError(f"{uri}: cannot create a Cloud Storage client ({e})") from None


def _gcs_errors() -> tuple[tuple[type[BaseException], ...], tuple[type[BaseException], ...]]:
    """(not-found errors, all API errors) of google-api-core, or empty tuples without it."""
    try:
        from google.api_core import exceptions as gexc
    except ImportError:
        return (), ()
    return (gexc.NotFound,), (gexc.GoogleAPIError,)


def _fetch_gcs(uri: str, workdir: Path, client: Any = None) -> Path:
    """Download a ``gs://`` folder or archive object into ``workdir``; return the folder."""
    bucket_name, prefix = parse_gs_uri(uri)
    client = _gcs_client(uri, client)
    not_found, api_errors = _gcs_errors()
    try:
        bucket = client.bucket(bucket_name)
        if is_archive(prefix):
            blob = bucket.blob(prefix)
            if not blob.exists():
                raise CnnzooError(f"{uri}: no such object")
            local = workdir / "download" / PurePosixPath(prefix).name
            local.parent.mkdir(parents=True, exist_ok=True)
            blob.download_to_filename(str(local))
            return extract_archive(local, workdir / "extracted")
        folder_prefix = prefix.rstrip("/") + "/" if prefix else ""
        blobs = [
            b
            for b in client.list_blobs(bucket_name, prefix=folder_prefix)
            if not b.name.endswith("/")
        ]
    except CnnzooError:
        raise
    except not_found:
        raise CnnzooError(f"{uri}: bucket '{bucket_name}' does not exist") from None
    except api_errors as e:
        raise CnnzooError(f"{uri}: Cloud Storage request failed ({e})") from None
    out = workdir / "gcs"
    jobs = []
    for b in blobs:
        rel = _safe_member_path(b.name[len(folder_prefix) :], uri)
        if is_junk_path(rel):
            continue
        jobs.append((b, out / rel))
    if not jobs:
        raise CnnzooError(f"{uri}: no objects under this prefix")
    print(f"ingest: downloading {len(jobs)} objects from {uri}", file=sys.stderr)

    def download(job: tuple[Any, Path]) -> None:
        blob, target = job
        target.parent.mkdir(parents=True, exist_ok=True)
        blob.download_to_filename(str(target))

    try:
        with ThreadPoolExecutor(max_workers=16) as pool:
            list(pool.map(download, jobs))
    except api_errors as e:
        raise CnnzooError(f"{uri}: download failed ({e})") from None
    return out
