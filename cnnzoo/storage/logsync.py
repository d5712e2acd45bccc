"""Keep a TensorBoard log folder and its ``gs://`` copy in step, one way, while it grows.

``train`` logging to a ``gs://`` root writes events locally and :class:`LogSync` uploads
them; ``cnnzoo tensorboard`` on a ``gs://`` root mirrors them into a local folder.
"""

from __future__ import annotations

import base64
import hashlib
import os
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path, PurePosixPath
from typing import Any

from cnnzoo.core.errors import CnnzooError
from cnnzoo.core.paths import safe_member_path
from cnnzoo.storage.gcs import (
    api_errors,
    folder_prefix,
    gcs_client,
    gcs_error,
    is_gcs,
    list_objects,
    local_files,
    parse_gs_uri,
    retry_policy,
    upload_files,
    workers,
)


class LogSync:
    """Keep a copy of a TensorBoard log folder in step with it, one way, local <-> ``gs://``.

    Exactly one of ``source`` and ``dest`` is ``gs://``:

    - local -> ``gs://`` (``train`` logging to a ``gs://`` root): files new or changed
      since the last sync (size or modification time) are uploaded whole; leaving the
      ``with`` block uploads what changed since (the final flush), which raises unless
      the block is already raising.
    - ``gs://`` -> local (``cnnzoo tensorboard`` on a ``gs://`` root): objects whose
      generation changed are fetched. Event files only grow and the upload side writes
      them whole, so an object longer than the local copy gets only its new bytes (a
      ranged read) appended in place, and a TensorBoard holding the file open reads on;
      anything else that changed is downloaded whole and renamed into place.

    As a context manager a background thread syncs every ``interval_s`` seconds; a
    failed background sync is reported on stderr and retried at the next interval.

    Why a sync and not TensorFlow's own ``gs://`` filesystem: TensorFlow's filesystem
    and TensorBoard's data server each talk to storage.googleapis.com with their own
    client and ignore ``STORAGE_EMULATOR_HOST`` (measured: TF 2.21 fails resolving
    www.googleapis.com against the test emulator), so that path could not be tested,
    and it would use other credentials than every other cnnzoo command.

    Example::

        with LogSync(local_logs, "gs://bucket/tb/run-1", interval_s=30):
            model.fit(..., callbacks=[TensorBoard(local_logs)])
    """

    def __init__(
        self,
        source: str | os.PathLike,
        dest: str | os.PathLike,
        interval_s: float = 30.0,
        client: Any = None,
    ) -> None:
        """Prepare the sync; nothing moves until :meth:`sync`, :meth:`start` or ``with``.

        Args:
            source: the folder or ``gs://bucket/prefix`` that is written to (a local one
                may not exist yet).
            dest: where its copy goes (a local folder is created; files in it are
                overwritten).
            interval_s: seconds between background syncs.
            client: a ``google.cloud.storage.Client`` (default: :func:`gcs_client`).

        Raises:
            CnnzooError: not exactly one side is ``gs://``, or ``interval_s`` is not
                positive.
        """
        source, dest = str(source), str(dest)
        if is_gcs(source) == is_gcs(dest):
            raise CnnzooError(f"LogSync {source} -> {dest}: exactly one side must be gs://")
        if not interval_s > 0:
            raise CnnzooError(f"LogSync interval_s must be positive, got {interval_s}")
        self.upload = is_gcs(dest)
        self.uri = (dest if self.upload else source).rstrip("/")
        self.local_dir = Path(source if self.upload else dest)
        self.interval_s = float(interval_s)
        self.client = client or gcs_client(self.uri)
        self.transferred = 0  # files moved so far (whole, or their new bytes)
        self.failures = 0  # background syncs that failed
        self._top = folder_prefix(parse_gs_uri(self.uri)[1])
        self._seen: dict[str, Any] = {}  # relative path -> (size, mtime) or generation
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def sync(self) -> int:
        """Move what is new or changed since the last sync; return how many files.

        Raises:
            CnnzooError: the bucket is missing, access is denied or a transfer fails.
        """
        with self._lock:
            todo = self._push() if self.upload else self._pull()
            self.transferred += todo
            return todo

    def _push(self) -> int:
        if not self.local_dir.is_dir():
            return 0
        todo: list[tuple[Path, str]] = []
        stats: dict[str, tuple[int, int]] = {}
        for path, rel in local_files(self.local_dir):
            try:
                st = path.stat()
            except FileNotFoundError:
                continue
            # The stat is taken before the upload: a file that grows meanwhile differs
            # next time and is uploaded again.
            stats[rel] = (st.st_size, st.st_mtime_ns)
            if self._seen.get(rel) != stats[rel]:
                todo.append((path, self._top + rel))
        upload_files(self.client, self.uri, todo, progress=False)  # quiet: runs often
        for _, name in todo:
            rel = name[len(self._top) :]
            self._seen[rel] = stats[rel]
        return len(todo)

    def _pull(self) -> int:
        todo = []
        for blob in list_objects(self.uri, self.client):
            rel = safe_member_path(blob.name[len(self._top) :], self.uri)
            if self._seen.get(str(rel)) != blob.generation:
                todo.append((blob, rel))
        retry = retry_policy()

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
        # Ranged appends are no transfer_manager job: a small pool of its own.
        with ThreadPoolExecutor(max_workers=workers()) as pool:
            try:
                list(pool.map(fetch, todo))
            except api_errors() as e:
                raise gcs_error(self.uri, e, "download objects") from None
            except OSError as e:
                raise CnnzooError(f"{self.uri}: cannot write into {self.local_dir} ({e})") from None
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
        """Stop the background thread and, if ``flush`` (uploads only), sync once more."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if flush and self.upload:
            self.sync()

    def __enter__(self) -> LogSync:
        return self.start()

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is None:
            self.stop(flush=True)
            return
        self.stop(flush=False)
        if not self.upload:
            return
        try:
            self.sync()  # the logs up to a failure are worth keeping
        except CnnzooError as e:
            print(f"warning: log sync: final flush failed: {e}", file=sys.stderr)


def _md5_b64(path: Path) -> str:
    """The base64 MD5 of a file, as Cloud Storage reports ``md5Hash``."""

    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return base64.b64encode(digest.digest()).decode()
