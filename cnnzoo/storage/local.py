"""Atomic file and directory writes, output ownership and one writer per output.

A step that is killed half way must never leave a file or folder that a later
step would take as complete, so every output is written under a temporary name
in the same directory and renamed into place.

Every folder cnnzoo writes carries a marker, ``.cnnzoo.json`` (``{"kind": "ingest"|
"split"|"demo-data"|"train"|"export"|"tensorboard", ...}``): an existing, non-empty
folder without the marker of the same kind is the user's, and is never replaced unless
the caller passes ``overwrite=True`` (the CLI's ``--overwrite``). One process at a time
writes an output:
:func:`output_lock` holds an ``flock`` on ``.<name>.cnnzoo-lock`` beside it (released by
the kernel when a process dies, even by ``kill -9``); whoever holds it removes what
killed writers of the same output left behind (``.<name>.*.partial`` and similar).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import shutil
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from cnnzoo import __version__
from cnnzoo.core import yamlconfig
from cnnzoo.core.errors import CnnzooError
from cnnzoo.storage.layout import MARKER


def atomic_write_bytes(
    path: str | os.PathLike, data: bytes, temp_prefix: str | None = None
) -> None:
    """Write ``data`` to ``path`` atomically (temporary file, fsync, rename).

    ``temp_prefix`` names the temporary file (default ``.<name>.``), for a folder whose
    reader takes any file with some word in its name (TensorBoard: ``tfevents``).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    prefix = temp_prefix or f".{path.name}."
    fd, tmp = tempfile.mkstemp(prefix=prefix, suffix=".tmp", dir=path.parent)
    try:
        # mkstemp creates 0600; outputs are read by later steps that may run as another user.
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    """Write ``obj`` as indented JSON to ``path`` atomically."""
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def read_json(path: str | os.PathLike) -> Any:
    """Read a JSON file (:func:`cnnzoo.core.yamlconfig.read_json`: bounded size and
    nesting, UTF-8), raising CnnzooError with the path if it is missing or invalid."""
    return yamlconfig.read_json(path)


#: The ownership marker in every folder cnnzoo writes.
#: Suffix of the lock file beside an output (``.<name>.cnnzoo-lock``).
LOCK_SUFFIX = ".cnnzoo-lock"
#: The temporary names cnnzoo gives an output's siblings while writing it (``{}`` is
#: the output's name): a folder being built, the replaced one being deleted, a step's
#: scratch folder, a file being written. Random parts are ``tempfile``'s 8 characters.
_LEFTOVER_PATTERNS = (
    r"\.{}\.[a-z0-9_]{{8}}\.partial",
    r"\.{}\.old-\d+",
    r"\.{}\.cnnzoo-work-[a-z0-9_]{{8}}",
    r"\.{}\.[a-z0-9_]{{8}}\.tmp",
)


def output_kind(folder: str | os.PathLike) -> str | None:
    """The kind of cnnzoo output ``folder`` holds (its marker), or None if it has none."""
    path = Path(folder) / MARKER
    try:
        marker = yamlconfig.parse_json(path.read_text(encoding="utf-8"), str(path), 1000)
    except (OSError, ValueError, CnnzooError):
        return None
    kind = marker.get("kind") if isinstance(marker, dict) else None
    return kind if isinstance(kind, str) else None


def marker_record(kind: str, state: str | None = None) -> dict[str, Any]:
    """The content of an ownership marker of ``kind`` (see the module docstring).

    A local marker holds only the kind and the version, so that outputs stay
    byte-for-byte reproducible; with ``state`` (the commit marker of a ``gs://``
    output, see :class:`cnnzoo.storage.outputs.GcsOutput`) it also names its writer and time.
    """

    record: dict[str, Any] = {"kind": kind, "cnnzoo_version": __version__}
    if state is not None:
        record.update(
            state=state,
            written=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            writer={"host": socket.gethostname(), "pid": os.getpid()},
        )
    return record


def write_marker(folder: str | os.PathLike, kind: str) -> None:
    """Mark ``folder`` as a cnnzoo output of ``kind``."""
    atomic_write_json(Path(folder) / MARKER, marker_record(kind))


def check_replaceable(dest: str | os.PathLike, kind: str | None, overwrite: bool = False) -> None:
    """Refuse to write over anything in ``dest`` that cnnzoo did not write.

    ``dest`` may be missing, an empty folder, or a folder whose marker says it is a
    cnnzoo output of ``kind``; with ``overwrite`` any folder will do. A file is never
    replaced by a folder.

    Raises:
        CnnzooError: otherwise, with a one-line message saying how to proceed.
    """

    dest = Path(dest)
    if not dest.exists():
        if dest.is_symlink():
            raise CnnzooError(f"{dest}: is a broken symbolic link; remove it or choose another")
        return
    if not dest.is_dir():
        raise CnnzooError(f"{dest}: exists and is not a folder; choose another folder")
    try:
        empty = not any(dest.iterdir())
    except OSError as e:
        raise CnnzooError(f"{dest}: cannot list the folder ({e.strerror})") from None
    if empty or overwrite:
        return
    found = output_kind(dest)
    if kind is not None and found == kind:
        return
    what = f"a cnnzoo {kind} output" if kind else "empty"
    other = f" (it holds a cnnzoo {found} output)" if found and kind else ""
    raise CnnzooError(
        f"{dest}: exists and is not {what}{other}; choose another folder or pass --overwrite"
    )


def refuse_overlap(dest: str | os.PathLike, source: str | os.PathLike, what: str) -> None:
    """Refuse a ``dest`` that is, holds or lies inside ``source``, as written and with
    symbolic links resolved on both sides (a DEST reached through a link into the source
    is inside it).

    Args:
        dest: the output folder.
        source: the input folder.
        what: what ``source`` is, for the message (``"source"``, ``"ingested data"``).

    Raises:
        CnnzooError: ``DEST: the output folder would replace the <what> SOURCE`` or
            ``... is inside the <what> SOURCE``.
    """
    d, s = Path(dest).expanduser(), Path(source).expanduser()
    for out in {Path(os.path.abspath(d)), Path(os.path.realpath(d))}:
        for root in {Path(os.path.abspath(s)), Path(os.path.realpath(s))}:
            if out == root or out in root.parents:
                raise CnnzooError(f"{dest}: the output folder would replace the {what} {source}")
            if root in out.parents:
                raise CnnzooError(f"{dest}: the output folder is inside the {what} {source}")


def _resolved(dest: str | os.PathLike) -> Path:
    """``dest`` made absolute (``.`` and ``..`` resolved), refusing a filesystem root."""

    path = Path(os.path.abspath(Path(dest).expanduser()))
    if path.parent == path:
        raise CnnzooError(f"{dest}: cannot write an output over a filesystem root")
    return path


@contextlib.contextmanager
def atomic_directory(
    dest: str | os.PathLike, overwrite: bool = False, *, kind: str | None = None
) -> Iterator[Path]:
    """Build a directory under a temporary name and move it to ``dest`` on success.

    Yields the temporary directory to fill. If the block raises, the temporary
    directory is removed and ``dest`` is left as it was. While the block runs, the
    process holds :func:`output_lock` on ``dest``. An existing ``dest`` is replaced if
    :func:`check_replaceable` allows it: empty (as KFP creates output artifacts), a
    cnnzoo output of ``kind`` (the new one gets the marker too), or any folder with
    ``overwrite``.

    Raises:
        CnnzooError: ``dest`` holds something else, or another process is writing it.
    """
    dest = _resolved(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    with output_lock(dest):
        check_replaceable(dest, kind, overwrite)
        tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".partial", dir=dest.parent))
        os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp creates 0700
        try:
            yield tmp
            if kind is not None and output_kind(tmp) != kind:
                write_marker(tmp, kind)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        if dest.exists():
            old = dest.with_name(f".{dest.name}.old-{os.getpid()}")
            os.replace(dest, old)
            os.replace(tmp, dest)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, dest)


def scratch_directory(dest: str | os.PathLike) -> tempfile.TemporaryDirectory:
    """A temporary folder beside ``dest`` for a step's downloads and extraction.

    Named ``.<name>.cnnzoo-work-<random>``, so that if the step is killed the next
    writer of ``dest`` (holding its lock) recognises and removes it.
    """
    dest = _resolved(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    return tempfile.TemporaryDirectory(prefix=f".{dest.name}.cnnzoo-work-", dir=dest.parent)


def remove_leftovers(dest: str | os.PathLike) -> list[Path]:
    """Delete what killed writers of ``dest`` left beside it; call with its lock held.

    Only names cnnzoo gives while writing ``dest`` are touched (see ``_LEFTOVER_PATTERNS``).

    Returns:
        The paths removed.
    """
    dest = _resolved(dest)
    name = re.escape(dest.name)
    pattern = re.compile("|".join(f"(?:{p.format(name)})" for p in _LEFTOVER_PATTERNS))
    removed = []
    try:
        siblings = list(dest.parent.iterdir())
    except OSError:
        return removed
    for p in siblings:
        if not pattern.fullmatch(p.name):
            continue
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p, ignore_errors=True)
        else:
            with contextlib.suppress(FileNotFoundError):
                p.unlink()
        removed.append(p)
    if removed:
        print(
            f"note: removed {len(removed)} leftover(s) of an interrupted earlier write of {dest}",
            file=sys.stderr,
        )
    return removed


_held: dict[str, list[Any]] = {}  # lock path -> [open file, depth]
_held_guard = threading.Lock()


def close_inherited_locks() -> None:
    """In a forked child: close the copies of the parent's held lock files.

    An ``flock`` belongs to the open file, which a fork shares: a child holding a copy
    would keep :func:`output_lock`'s lock alive after the parent died. Closing the
    child's copies leaves the parent's lock as it is.
    """
    for f, _depth in list(_held.values()):
        with contextlib.suppress(OSError):
            os.close(f.fileno())
    _held.clear()


# Every forked child (a worker of cnnzoo.core.workers' pools) drops its copies at once.
os.register_at_fork(after_in_child=close_inherited_locks)


def _lock_path(dest: Path) -> Path:
    return dest.with_name(f".{dest.name}{LOCK_SUFFIX}")


@contextlib.contextmanager
def output_lock(dest: str | os.PathLike, cleanup: bool = True) -> Iterator[None]:
    """Hold the one-writer lock of the output ``dest`` (a folder or file) for the block.

    The lock is an ``flock`` on ``.<name>.cnnzoo-lock`` beside ``dest``, holding the
    owner's host, pid and start time; the kernel releases it when the process dies, so
    a killed writer never blocks the next one. Re-entrant within a process. With
    ``cleanup``, leftovers of killed writers of ``dest`` are removed once it is held.

    Raises:
        CnnzooError: another process holds it (the message names it).
    """

    dest = _resolved(dest)
    path = _lock_path(dest)
    key = str(path)
    with _held_guard:
        if key in _held:
            _held[key][1] += 1
            reentered = True
        else:
            reentered = False
    if reentered:
        try:
            yield
        finally:
            with _held_guard:
                _held[key][1] -= 1
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        f = open(path, "a+", encoding="utf-8")  # noqa: SIM115 - held for the block
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            holder = f.read().strip() or "another process"
            f.close()
            raise CnnzooError(
                f"{dest}: another cnnzoo process is writing it ({holder}); wait for it to "
                f"finish or stop it (lock: {path})"
            ) from None
        # The previous holder may have unlinked the file between our open and flock.
        try:
            same = os.stat(path).st_ino == os.fstat(f.fileno()).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        f.close()
    f.seek(0)
    f.truncate()
    f.write(
        f"pid {os.getpid()} on {socket.gethostname()}, since "
        f"{time.strftime('%Y-%m-%d %H:%M:%S', time.localtime())}\n"
    )
    f.flush()
    with _held_guard:
        _held[key] = [f, 1]
    try:
        if cleanup:
            remove_leftovers(dest)
        yield
    finally:
        with _held_guard:
            del _held[key]
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)  # while still held: a waiting opener re-checks the inode
        f.close()
