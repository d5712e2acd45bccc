"""Where results go: local folders, and ``gs://`` prefixes written behind a commit marker.

:class:`GcsOutput` writes a multi-object output on Cloud Storage; its ``.cnnzoo.json``
is at once ownership marker, one-writer lock (generation preconditions) and commit
marker, and readers check it with :func:`require_complete`. :func:`copy_tree` copies a
folder between any two of local and ``gs://`` (``gs://`` to ``gs://`` server side, with
``Blob.rewrite``); :func:`export_folder` copies a run's result to its output location
(``--output``), whose layout :func:`output_location` and :func:`run_logs_root` name.
"""

from __future__ import annotations

import datetime
import json
import os
import shutil
import socket
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from cnnzoo.core.env import env_number
from cnnzoo.core.errors import CnnzooError
from cnnzoo.storage.gcs import (
    api_errors,
    delete_prefix,
    download_tree,
    folder_prefix,
    gcs_client,
    gcs_error,
    is_gcs,
    list_objects,
    parse_gs_uri,
    retry_policy,
    upload_tree,
    workers,
)
from cnnzoo.storage.layout import EXPORT_KIND, MARKER, output_location
from cnnzoo.storage.local import (
    atomic_directory,
    check_replaceable,
    marker_record,
    output_kind,
    output_lock,
    scratch_directory,
    write_marker,
)


def _copy_objects(src: str, blobs: list[Any], out: GcsOutput, client: Any) -> None:
    """Copy ``blobs`` (listed under ``src``) into ``out`` server side (``Blob.rewrite``).

    transfer_manager has no copy; the rewrites run in a thread pool, top-level ``*.json``
    last, as :func:`cnnzoo.storage.gcs.upload_tree` orders them.
    """
    top = folder_prefix(parse_gs_uri(src)[1])
    dest_bucket, dest_prefix = parse_gs_uri(out.uri)
    dest_top = folder_prefix(dest_prefix)
    bucket = client.bucket(dest_bucket)
    retry = retry_policy()

    def copy(blob: Any) -> str:
        name = dest_top + blob.name[len(top) :]
        target = bucket.blob(name)
        token, _, _ = target.rewrite(blob, retry=retry)
        while token is not None:  # a large object across locations takes several calls
            token, _, _ = target.rewrite(blob, token=token, retry=retry)
        return name

    last = [b for b in blobs if "/" not in b.name[len(top) :] and b.name.endswith(".json")]
    out.begin_replacing()
    try:
        with ThreadPoolExecutor(max_workers=workers()) as pool:
            for group in ([b for b in blobs if b not in last], last):
                out.written.update(pool.map(copy, group))
    except api_errors() as e:
        raise gcs_error(src, e, "copy objects", client) from None


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
    (invisible to readers until complete); ``gs://`` to ``gs://`` copies server side.

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

    src, dest = str(src), str(dest)
    if is_gcs(src):
        if is_gcs(dest):
            client = client or gcs_client(src)
            marker, _ = _read_marker(client, src)
            if marker is not None:
                require_complete(src, None, client)
            top = folder_prefix(parse_gs_uri(src)[1])
            blobs = [b for b in list_objects(src, client) if b.name != top + MARKER]
            if not blobs:
                raise CnnzooError(f"{src}: no objects under this prefix (empty or missing folder)")
            kind = (marker or {}).get("kind") or EXPORT_KIND
            with GcsOutput(dest, kind, overwrite=overwrite, client=client) as out:
                _copy_objects(src, blobs, out, client)
            return dest
        # The lock first: taking it removes scratch folders that killed copies left.
        with output_lock(dest), scratch_directory(dest) as tmp:
            download_output(src, Path(tmp) / "tree", client)
            copy_tree(Path(tmp) / "tree", dest, client, overwrite=overwrite)
        return dest
    if not Path(src).is_dir():
        raise CnnzooError(f"{src}: no such folder to copy to {dest}")
    kind = output_kind(src) or EXPORT_KIND
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

    from google.api_core.exceptions import NotFound

    bucket, prefix = parse_gs_uri(uri)
    try:
        # Its metadata too: the generation (for the precondition) and the update time.
        blob = client.bucket(bucket).get_blob(folder_prefix(prefix) + MARKER, retry=retry_policy())
        if blob is None:
            return None, None
        # The generation whose metadata was read, through its own handle: a download may
        # refresh a handle's metadata from the response (the emulator's lacks the generation).
        exact = client.bucket(bucket).blob(blob.name, generation=blob.generation)
        data = exact.download_as_bytes(retry=retry_policy())
    except NotFound:
        return None, None
    except api_errors() as e:
        where = f"{uri.rstrip('/')}/{MARKER}"
        raise gcs_error(where, e, "read the commit marker", client) from None
    try:
        marker = json.loads(data)
    except (ValueError, RecursionError):
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


def download_output(
    uri: str,
    dest: str | os.PathLike,
    client: Any = None,
    skip_junk: bool = False,
    *,
    overwrite: bool = False,
) -> Path:
    """:func:`cnnzoo.storage.gcs.download_tree`, refusing a cnnzoo output that is not
    complete: where ``uri`` holds a commit marker, it must say ``complete``.

    Raises:
        CnnzooError: as ``download_tree``, or an incomplete cnnzoo output under ``uri``
            (:func:`require_complete`).
    """
    client = client or gcs_client(uri)
    # Listed first, as download_tree does: a missing or forbidden prefix is named as such.
    top = folder_prefix(parse_gs_uri(uri)[1])
    blobs = list_objects(uri, client, skip_junk=skip_junk)
    if any(b.name == top + MARKER for b in blobs):
        require_complete(uri, None, client)
    return download_tree(uri, dest, client, skip_junk, overwrite=overwrite, blobs=blobs)


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
    2. The first :meth:`upload` deletes the old top-level ``*.json`` files (an earlier
       ``manifest.json``...) before it uploads anything, then writes the new objects.
    3. On success, objects of the earlier output that the new one lacks are deleted and
       the marker is rewritten ``complete``, last. On an error after the first upload
       began it is left ``failed``; on an error before (a bad source, say), nothing of
       the earlier output was touched and its marker is put back as it was (or removed,
       where there was none), so a failed write never downgrades a complete output. A
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
        self._previous: dict[str, Any] | None = None
        self._touched = False
        self._blob: Any = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lost: str | None = None
        self._guard = threading.Lock()

    def _write_marker(self, state: str, generation: int) -> None:

        data = json.dumps(marker_record(self.kind, state), indent=1) + "\n"
        # A precondition makes the write safe to retry and atomic against other writers.
        self._blob.upload_from_string(
            data,
            content_type="application/json",
            if_generation_match=generation,
            retry=retry_policy(),
        )

    def _stale(self, marker: dict[str, Any], blob: Any) -> bool:

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
        age = (datetime.datetime.now(datetime.UTC) - updated).total_seconds()
        return age > env_number("CNNZOO_GCS_LOCK_STALE_S", GCS_LOCK_STALE_S)

    def __enter__(self) -> GcsOutput:
        from google.api_core.exceptions import PreconditionFailed

        env_number("CNNZOO_GCS_LOCK_STALE_S", GCS_LOCK_STALE_S)  # a bad value fails first
        self.client = self.client or gcs_client(self.uri)
        marker, blob = _read_marker(self.client, self.uri)
        top = folder_prefix(parse_gs_uri(self.uri)[1])
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
        except api_errors() as e:
            raise gcs_error(self.uri, e, "upload objects", self.client) from None
        self._previous = marker
        self._thread = threading.Thread(target=self._heartbeat, name="cnnzoo-gcs-lock", daemon=True)
        self._thread.start()
        return self

    def _heartbeat(self) -> None:
        from google.api_core.exceptions import PreconditionFailed

        interval = env_number("CNNZOO_GCS_LOCK_STALE_S", GCS_LOCK_STALE_S) / 4
        while not self._stop.wait(interval):
            with self._guard:
                try:
                    self._write_marker("writing", int(self._blob.generation))
                except PreconditionFailed:
                    self._lost = "another process took the commit marker over"
                    return
                except api_errors() as e:  # retried at the next beat
                    print(f"warning: {self.uri}: cannot refresh the lock ({e})", file=sys.stderr)

    def _delete(self, blob: Any) -> None:
        from google.api_core.exceptions import NotFound

        try:
            blob.delete(retry=retry_policy())
        except NotFound:
            pass  # already gone: what was wanted
        except api_errors() as e:
            raise gcs_error(f"gs://{blob.bucket.name}/{blob.name}", e, "delete an object") from None

    def _unwind(self) -> None:
        """After an error: ``failed`` once the earlier output was touched; before, the
        marker as it was (none: removed)."""
        generation = int(self._blob.generation)
        if self._touched or self._lost:
            self._write_marker("failed", generation)
        elif self._previous is None:
            self._blob.delete(if_generation_match=generation, retry=retry_policy())
        elif self._previous.get("state") == "unreadable":
            self._write_marker("failed", generation)
        else:
            self._blob.upload_from_string(
                json.dumps(self._previous, indent=1) + "\n",
                content_type="application/json",
                if_generation_match=generation,
                retry=retry_policy(),
            )

    def begin_replacing(self) -> None:
        """Call before the first object changes (:meth:`upload` does): the old top-level
        ``*.json`` files go first (readers of older versions look for the manifest)."""
        if self._touched:
            return
        self._touched = True
        top = folder_prefix(parse_gs_uri(self.uri)[1])
        for b in self._old:
            if "/" not in b.name[len(top) :] and b.name.endswith(".json"):
                self._delete(b)

    def upload(self, local_dir: str | os.PathLike) -> list[str]:
        """Upload ``local_dir`` into the output (see :func:`upload_tree`)."""
        self.begin_replacing()
        names = upload_tree(local_dir, self.uri, self.client, exclude=(MARKER,))
        self.written.update(names)
        return names

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        from google.api_core.exceptions import PreconditionFailed

        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        if exc_type is not None:
            try:
                self._unwind()
            except (PreconditionFailed, *api_errors()) as e:
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
        except api_errors() as e:
            raise gcs_error(self.uri, e, "upload objects", self.client) from None


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


def _delete_local_folder(path: Path, what: str) -> None:
    """Delete ``path`` and what it holds (gone already is fine).

    Raises:
        CnnzooError: part of it could not be deleted (one line naming the first file), so
            old and new content are never mixed without a word.
    """
    try:
        shutil.rmtree(path)
    except FileNotFoundError as e:
        if not os.path.lexists(path):
            return  # gone already (or removed by someone else meanwhile): nothing mixes
        raise CnnzooError(
            f"{e.filename or path}: vanished while the old {what} were deleted; remove "
            f"{path} yourself or choose another folder"
        ) from None
    except OSError as e:
        where = e.filename or path
        raise CnnzooError(
            f"{where}: cannot delete the old {what} ({e.strerror or e}); remove {path} "
            "yourself or choose another folder"
        ) from None


def claim_folder(
    location: str, kind: str, *, overwrite: bool = False, replace: bool = False, what: str = ""
) -> None:
    """Make ``location`` (a local folder or ``gs://`` prefix) a cnnzoo folder of ``kind``.

    For a folder that is written in place while a step runs (a model's TensorBoard logs),
    not built whole: it may be missing, empty or marked ``kind`` already (``.cnnzoo.json``),
    or anything with ``overwrite``. With ``replace`` its content is deleted first. It is
    then marked ``kind`` (on ``gs://`` an object with no ``state``: no commit marker).

    Args:
        location: a local folder or ``gs://bucket/prefix``.
        kind: the marker's kind, e.g. ``"tensorboard"``.
        overwrite: take a folder cnnzoo did not write.
        replace: delete what the folder holds first.
        what: what it holds, for messages (``"TensorBoard logs"``).

    Raises:
        CnnzooError: the folder holds something else (one line naming it and
            ``--overwrite``), or Cloud Storage fails.
    """

    if not is_gcs(location):
        if "://" in location:
            raise CnnzooError(f"{location}: unsupported URI scheme (use a path or gs://)")
        path = Path(location)
        check_replaceable(path, kind, overwrite)
        if replace:
            _delete_local_folder(path, what or kind)
        path.mkdir(parents=True, exist_ok=True)
        if output_kind(path) != kind:
            write_marker(path, kind)
        return
    client = gcs_client(location)
    marker, _ = _read_marker(client, location)
    found = (marker or {}).get("kind")
    if found != kind and not overwrite and list_objects(location, client):
        other = f" (it holds a cnnzoo {found} output)" if found else ""
        raise CnnzooError(
            f"{location}: exists and is not a cnnzoo {kind} output{other}; choose another "
            "folder or pass --overwrite"
        )
    if replace:
        delete_prefix(location, f"old {what or kind}", client)
    if replace or found != kind:
        bucket, prefix = parse_gs_uri(location)
        data = json.dumps(marker_record(kind), indent=1) + "\n"
        try:
            client.bucket(bucket).blob(folder_prefix(prefix) + MARKER).upload_from_string(
                data, content_type="application/json", retry=retry_policy()
            )
        except api_errors() as e:
            raise gcs_error(location, e, "upload objects", client) from None
