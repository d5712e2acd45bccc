"""Where a dataset comes from: a URI (path, archive, ``gs://``, ``demo``) to a local folder.

:func:`resolve_source` is the one entry point. Each scheme fetches into a scratch
``workdir`` that the caller owns and removes; ``gs://`` objects are fetched through
:mod:`cnnzoo.storage.gcs`. Archives are extracted defensively: members that would land outside
the target (``../``, absolute paths, links pointing out), device files, sparse files and
archives declaring more than :data:`MAX_EXTRACT_BYTES` are rejected; a zip member whose
data does not match its declared size and CRC fails extraction. OS junk (``.DS_Store``,
``__MACOSX/``, hidden files) is never extracted or downloaded. A dataset nested one
folder down (``animals/train/...``) is accepted.
"""

from __future__ import annotations

import os
import shutil
import stat
import tarfile
import zipfile
from collections.abc import Iterable
from pathlib import Path, PurePosixPath
from typing import Any

from cnnzoo.core.errors import CnnzooError, one_line
from cnnzoo.core.paths import is_junk, is_junk_path, safe_member_path
from cnnzoo.data import demo
from cnnzoo.storage.gcs import download_file, parse_gs_uri
from cnnzoo.storage.outputs import download_output

#: Largest total uncompressed size an archive may declare (decompression-bomb guard);
#: the environment variable ``CNNZOO_MAX_EXTRACT_BYTES`` overrides it.
MAX_EXTRACT_BYTES = 64 * 1024**3
#: Largest number of members an archive may hold.
MAX_EXTRACT_MEMBERS = 5_000_000

ARCHIVE_SUFFIXES = (".zip", ".tar.gz", ".tgz", ".tar")


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


#: The built-in demo dataset's unambiguous name; the bare word ``demo`` names it too
#: where no file or folder ``demo`` exists (a path that exists is always that path).
DEMO_URI = "cnnzoo:demo"


def is_demo(uri: str) -> bool:
    """Whether ``uri`` names the built-in demo dataset.

    Raises:
        CnnzooError: ``demo`` where a file or folder ``demo`` exists too (a clash: the
            message says how to name either).
    """
    if uri == DEMO_URI:
        return True
    if uri != "demo":
        return False
    if os.path.lexists(uri):
        raise CnnzooError(
            f"demo: names both the built-in demo dataset and {os.path.abspath(uri)}; "
            f"pass ./demo for that path or {DEMO_URI} for the built-in set"
        )
    return True


def resolve_source(uri: str, workdir: str | os.PathLike, gcs_client: Any = None) -> Path:
    """Return a local folder holding the dataset that ``uri`` names.

    Args:
        uri: a local folder; a ``.zip``/``.tar.gz``/``.tgz``/``.tar`` archive;
            ``gs://bucket/prefix`` (a folder of objects or one archive object); or
            ``demo`` (or :data:`DEMO_URI`) for the built-in demo dataset, generated on the
            fly (see :func:`is_demo`).
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
    if is_demo(uri):
        return demo.make_demo_dataset(workdir / "demo")
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
        raise CnnzooError(f"{archive}: not a readable zip archive ({one_line(e)})") from None
    with zf:
        infos = zf.infolist()
        _check_totals(archive, (i.file_size for i in infos))
        root = out.resolve()
        for info in infos:
            rel = safe_member_path(info.filename, archive)
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
                    f"{archive}: cannot extract member '{info.filename}' ({one_line(e)})"
                ) from None


def _extract_tar(archive: Path, out: Path) -> None:
    try:
        tf = tarfile.open(archive)
    except (tarfile.TarError, OSError) as e:
        raise CnnzooError(f"{archive}: not a readable tar archive ({one_line(e)})") from None
    with tf:
        try:
            members = tf.getmembers()
        except (tarfile.TarError, OSError, EOFError) as e:
            raise CnnzooError(f"{archive}: corrupt tar archive ({one_line(e)})") from None
        _check_totals(archive, (m.size for m in members if m.isfile()))
        keep = []
        for m in members:
            rel = safe_member_path(m.name, archive)
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
            raise CnnzooError(f"{archive}: unsafe member refused ({one_line(e)})") from None
        except (tarfile.TarError, OSError, EOFError) as e:
            raise CnnzooError(f"{archive}: corrupt tar archive ({one_line(e)})") from None


def _fetch_gcs(uri: str, workdir: Path, client: Any = None) -> Path:
    """Download a ``gs://`` folder or archive object into ``workdir``; return the folder."""
    _, prefix = parse_gs_uri(uri)
    if is_archive(prefix):
        local = download_file(uri, workdir / "download" / PurePosixPath(prefix).name, client)
        return extract_archive(local, workdir / "extracted")
    return download_output(uri, workdir / "gcs", client, skip_junk=True)
