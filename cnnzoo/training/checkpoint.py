"""The training checkpoint: the full state after an epoch, in a folder or a ``gs://`` prefix.

A checkpoint is ``state-epochNNNN.npz`` (every array: model and optimizer variables,
best weights) plus the pointer ``latest.json`` (the rest: stage, epoch, history so far,
callback state, the run's fingerprint and the name of that array file). :meth:`save`
writes the arrays under a new name first and then replaces the pointer (each write
atomic: a temporary file renamed locally, a single object upload on Cloud Storage), then
deletes older array files, so a kill at any moment leaves the pointer naming a complete
array file. A checkpoint made for another model, profile or split (its
:func:`run_fingerprint` differs) or of another :data:`CHECKPOINT_FORMAT` is ignored.

One writer: on ``gs://`` the pointer is also the lock. Every write and the final delete
of ``latest.json`` carry ``if_generation_match`` = the generation this process last read
or wrote (0: it must not exist), so a second trainer writing the same checkpoint makes
the other's next save fail with one line instead of interleaving; the pointer records
the generation of its array file, and a pointer whose array file was replaced since is
unreadable. Locally, the caller holds :func:`cnnzoo.storage.local.output_lock` on the folder.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from cnnzoo.core.errors import CnnzooError, one_line
from cnnzoo.core.yamlconfig import parse_json
from cnnzoo.storage.gcs import (
    api_errors,
    download_file,
    folder_prefix,
    gcs_client,
    gcs_error,
    is_gcs,
    list_objects,
    parse_gs_uri,
    retry_policy,
)
from cnnzoo.storage.layout import CHECKPOINT_POINTER, checkpoint_file

#: Version of the checkpoint layout; a checkpoint of another version is ignored.
CHECKPOINT_FORMAT = 1
#: Names of the temporary files a killed local save leaves (``tempfile``'s 8 characters).
_TEMPORARY = re.compile(r"\.[^/]+\.[a-z0-9_]{8}\.tmp")
#: Names of the array files (:func:`cnnzoo.storage.layout.checkpoint_file`).
_ARRAYS = re.compile(r"state-epoch\d+\.npz")


def run_fingerprint(model_name: str, profile: Any, split_json: Path) -> str:
    """What makes a checkpoint a run's: model, resolved profile and the split itself.

    Args:
        model_name: the registered configuration.
        profile: the resolved :class:`cnnzoo.config.profile.Profile`.
        split_json: the split's ``split.json`` (its bytes are hashed).

    Returns:
        A hex SHA-256.
    """
    what = {
        "model": model_name,
        "profile": profile.to_dict(),
        "split_json_sha256": hashlib.sha256(split_json.read_bytes()).hexdigest(),
    }
    return hashlib.sha256(json.dumps(what, sort_keys=True).encode()).hexdigest()


class Checkpoint:
    """A run's checkpoint at ``location`` (a local folder or ``gs://bucket/prefix``)."""

    def __init__(self, location: str, fingerprint: str, client: Any = None) -> None:
        """Name the checkpoint; nothing is read or written yet.

        Args:
            location: a local folder or ``gs://bucket/prefix``.
            fingerprint: :func:`run_fingerprint` of the run.
            client: a ``google.cloud.storage.Client`` for ``gs://`` (default:
                :func:`cnnzoo.storage.gcs.gcs_client`, made when first needed).
        """
        self.location = str(location).rstrip("/")
        self.fingerprint = fingerprint
        self.remote = is_gcs(self.location)
        self._gcs = client
        self._generation: int | None = None  # the pointer's, as last read or written

    def _client(self) -> Any:
        if self._gcs is None:
            self._gcs = gcs_client(self.location)
        return self._gcs

    def check_owned(self, overwrite: bool = False) -> None:
        """Refuse a location cnnzoo's checkpoint would clobber: a file (always), or one
        holding anything but a cnnzoo checkpoint (``latest.json`` that is a cnnzoo
        pointer, ``state-epochNNNN.npz``, cnnzoo's temporaries) unless ``overwrite``.

        Raises:
            CnnzooError: naming the location and the first file that is not cnnzoo's.
        """
        if not self.remote and os.path.lexists(self.location) and not Path(self.location).is_dir():
            raise CnnzooError(
                f"{self.location}: exists and is not a folder; a checkpoint is a folder "
                "(choose another --checkpoint)"
            )
        if overwrite:
            return
        names = self._names()
        foreign = [
            n
            for n in names
            if n != CHECKPOINT_POINTER
            and not _ARRAYS.fullmatch(n)
            and not (not self.remote and _TEMPORARY.fullmatch(n))
        ]
        if not foreign and CHECKPOINT_POINTER in names and not self._pointer_is_cnnzoos():
            foreign = [CHECKPOINT_POINTER]
        if foreign:
            raise CnnzooError(
                f"{self.location}: holds {foreign[0]!r}, which is not part of a cnnzoo "
                "checkpoint; choose another --checkpoint folder or pass --overwrite"
            )

    def _pointer_is_cnnzoos(self) -> bool:
        """Whether ``latest.json`` is a pointer cnnzoo wrote (of any run or format)."""
        with tempfile.TemporaryDirectory(prefix="cnnzoo-ckpt-") as tmp:
            path = self._fetch(CHECKPOINT_POINTER, Path(tmp))
            if path is None:
                return True
            try:
                state = parse_json(path.read_text(encoding="utf-8"), str(path))
            except (CnnzooError, OSError, ValueError):
                return False
        return (
            isinstance(state, dict)
            and isinstance(state.get("format"), int)
            and isinstance(state.get("fingerprint"), str)
            and isinstance(state.get("arrays_file"), str)
        )

    def remove_temporaries(self) -> None:
        """Delete temporary files a killed local save left (only cnnzoo's names)."""
        folder = Path(self.location)
        if self.remote or not folder.is_dir():
            return
        for p in folder.iterdir():
            if p.is_file() and _TEMPORARY.fullmatch(p.name):
                p.unlink(missing_ok=True)

    def load(self) -> dict[str, Any] | None:
        """The saved state, with ``arrays``, if it exists and belongs to this run, else None.

        A pointer of another run, or one that cannot be read, gives a ``warning:`` line
        on stderr and None.

        Raises:
            CnnzooError: a ``gs://`` location cannot be reached.
        """

        pointer = f"{self.location}/{CHECKPOINT_POINTER}"
        with tempfile.TemporaryDirectory(prefix="cnnzoo-ckpt-") as tmp:
            path = self._fetch(CHECKPOINT_POINTER, Path(tmp))
            if path is None:
                return None
            try:
                state = json.loads(path.read_text(encoding="utf-8"))
                if state.get("format") != CHECKPOINT_FORMAT:
                    raise ValueError(f"unknown format {state.get('format')!r}")
                if state.get("fingerprint") != self.fingerprint:
                    print(
                        f"warning: {pointer}: checkpoint made for a different model, profile "
                        "or split; starting over",
                        file=sys.stderr,
                    )
                    return None
                path = self._fetch(state["arrays_file"], Path(tmp), state.get("arrays_generation"))
                if path is None:
                    raise ValueError(f"{state['arrays_file']} is missing or was replaced")
                with np.load(path, allow_pickle=False) as npz:
                    state["arrays"] = {
                        part: [npz[f"{part}_{i:05d}"] for i in range(state["counts"][part])]
                        for part in ("model", "optimizer", "best")
                    }
            except (ValueError, KeyError, TypeError, OSError) as e:
                print(
                    f"warning: {pointer}: unreadable checkpoint ({one_line(e)}); starting over",
                    file=sys.stderr,
                )
                return None
        return state

    def save(self, state: dict[str, Any], arrays: dict[str, list]) -> None:
        """Save ``state`` (JSON-able, with ``epoch``) and ``arrays`` (numpy arrays by part).

        Raises:
            CnnzooError: another process wrote the ``gs://`` pointer since this one read
                or wrote it, or a write fails.
        """

        name = checkpoint_file(state["epoch"])
        generation = self._write(
            name,
            lambda f: np.savez(
                f, **{f"{p}_{i:05d}": a for p, items in arrays.items() for i, a in enumerate(items)}
            ),
        )
        pointer = {
            "format": CHECKPOINT_FORMAT,
            "fingerprint": self.fingerprint,
            **state,
            "arrays_file": name,
            "arrays_generation": generation,
            "counts": {part: len(items) for part, items in arrays.items()},
        }
        text = json.dumps(pointer, indent=1) + "\n"
        self._write(CHECKPOINT_POINTER, lambda f: f.write(text.encode("utf-8")), locked=True)
        for old in self._names():
            if old.startswith("state-epoch") and old != name:
                self._delete(old)

    def remove(self) -> None:
        """Delete the checkpoint (and its local folder, if that is then empty).

        On ``gs://``, a pointer another process wrote since is left alone, with a warning.
        """
        if not self._delete(CHECKPOINT_POINTER, locked=True):
            return
        for name in self._names():
            if name.startswith("state-epoch"):
                self._delete(name)
        if not self.remote:
            with contextlib.suppress(OSError):
                os.rmdir(self.location)

    # --- storage: a local folder or a gs:// prefix ---------------------------------------

    def _blob(self, name: str) -> Any:
        bucket, key = parse_gs_uri(f"{self.location}/{name}")
        return self._client().bucket(bucket).blob(key)

    def _names(self) -> list[str]:
        if not self.remote:
            folder = Path(self.location)
            return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []
        top = folder_prefix(parse_gs_uri(self.location)[1])
        return [b.name[len(top) :] for b in list_objects(self.location, self._client())]

    def _pointer_generation(self) -> int:
        """The generation the next pointer write must match (read once if not known)."""
        if self._generation is None:
            bucket, key = parse_gs_uri(f"{self.location}/{CHECKPOINT_POINTER}")
            try:
                blob = self._client().bucket(bucket).get_blob(key, retry=retry_policy())
            except api_errors() as e:
                raise gcs_error(f"{self.location}/{CHECKPOINT_POINTER}", e, "read it") from None
            self._generation = int(blob.generation) if blob is not None else 0
        return self._generation

    def _fetch(self, name: str, tmp: Path, generation: int | None = None) -> Path | None:
        """A local path holding the file ``name``, or None if it does not exist.

        With ``generation`` (``gs://``), None also when the object has another one.
        """
        if not self.remote:
            path = Path(self.location) / name
            return path if path.is_file() else None
        bucket, key = parse_gs_uri(f"{self.location}/{name}")
        try:
            blob = self._client().bucket(bucket).get_blob(key, retry=retry_policy())
        except api_errors() as e:
            raise gcs_error(f"{self.location}/{name}", e, "read it", self._client()) from None
        if name == CHECKPOINT_POINTER:
            self._generation = int(blob.generation) if blob is not None else 0
        if blob is None or (generation is not None and int(blob.generation) != generation):
            return None
        return download_file(f"{self.location}/{name}", tmp / name, self._client())

    def _write(self, name: str, fill: Callable[[Any], Any], locked: bool = False) -> int | None:
        """Write the file ``name`` atomically with ``fill(binary file object)``.

        Returns:
            The object's generation on ``gs://``, else None.
        """
        if not self.remote:
            folder = Path(self.location)
            folder.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=folder)
            try:
                with os.fdopen(fd, "wb") as f:
                    fill(f)
                    f.flush()
                    os.fsync(f.fileno())
                os.replace(tmp, folder / name)
            except BaseException:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(tmp)
                raise
            return None
        from google.api_core.exceptions import PreconditionFailed

        blob = self._blob(name)
        # A precondition also makes the upload safe to retry.
        match = {"if_generation_match": self._pointer_generation()} if locked else {}
        with tempfile.TemporaryDirectory(prefix="cnnzoo-ckpt-") as tmp:
            path = Path(tmp) / name
            with open(path, "wb") as f:
                fill(f)
            try:
                blob.upload_from_filename(str(path), retry=retry_policy(), **match)
            except PreconditionFailed:
                raise CnnzooError(self._taken_over()) from None
            except api_errors() as e:
                raise gcs_error(f"{self.location}/{name}", e, "upload objects") from None
        if locked:
            self._generation = int(blob.generation)
        return int(blob.generation)

    def _taken_over(self) -> str:
        return (
            f"{self.location}/{CHECKPOINT_POINTER}: another process wrote this checkpoint "
            "since this one read it (two trainings of one model into one checkpoint?); "
            "stopping this one"
        )

    def _delete(self, name: str, locked: bool = False) -> bool:
        """Delete ``name``; False if a ``locked`` delete found another writer's pointer."""
        if not self.remote:
            with contextlib.suppress(FileNotFoundError):
                (Path(self.location) / name).unlink()
            return True
        from google.api_core.exceptions import NotFound, PreconditionFailed

        match = {"if_generation_match": self._pointer_generation()} if locked else {}
        try:
            self._blob(name).delete(retry=retry_policy(), **match)
        except NotFound:
            pass  # already gone: what deleting it was for
        except PreconditionFailed:
            print(f"warning: {self._taken_over()}; its checkpoint is kept", file=sys.stderr)
            return False
        except api_errors() as e:  # a leftover file costs space only; training goes on
            print(f"warning: {self.location}/{name}: cannot delete ({e})", file=sys.stderr)
        return True


# --- putting saved arrays back into a model --------------------------------------------


def check_fit(variables: list, arrays: list, where: str, what: str) -> None:
    """Check that saved ``arrays`` match ``variables`` in number and shapes.

    Raises:
        CnnzooError: naming the checkpoint ``where`` and the part ``what``.
    """
    if len(arrays) != len(variables) or any(
        tuple(v.shape) != a.shape for v, a in zip(variables, arrays, strict=False)
    ):
        raise CnnzooError(
            f"{where}: the checkpoint's {what} variables do not fit the model; "
            "delete the checkpoint to start over"
        )


def assign_arrays(variables: list, arrays: list, where: str, what: str) -> None:
    """Assign saved ``arrays`` to ``variables``, checking they fit one another."""
    check_fit(variables, arrays, where, what)
    for variable, value in zip(variables, arrays, strict=True):
        variable.assign(value)


def restore_optimizer(model: Any, arrays: list, where: str) -> None:
    """Give the freshly compiled model's optimizer the saved state (moments, step, rate)."""
    optimizer = model.optimizer
    if not optimizer.built:
        optimizer.build(model.trainable_variables)
    assign_arrays(optimizer.variables, arrays, where, "optimizer")
