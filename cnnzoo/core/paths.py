"""Path rules shared by every reader of someone else's files: what counts as operating
system junk, and which archive member or object names are safe to write locally."""

from __future__ import annotations

from pathlib import Path, PurePosixPath

from cnnzoo.core.errors import CnnzooError

_JUNK_NAMES = {"__MACOSX", "Thumbs.db", "desktop.ini"}


def is_junk(part: str) -> bool:
    """True for a path component that is OS junk: hidden files, ``__MACOSX``, ``Thumbs.db``."""
    return part.startswith(".") or part in _JUNK_NAMES


def is_junk_path(path: str | PurePosixPath) -> bool:
    """True if any component of the relative ``path`` is junk (see :func:`is_junk`)."""
    return any(is_junk(p) for p in PurePosixPath(path).parts)


def safe_member_path(name: str, archive: str | Path) -> PurePosixPath:
    """Check an archive member or object name: relative, no ``..``, no drive letter.

    Raises:
        CnnzooError: naming ``archive`` (the archive or URI it came from) and ``name``.
    """
    norm = name.replace("\\", "/")
    p = PurePosixPath(norm)
    if norm.startswith("/") or p.is_absolute() or (len(norm) > 1 and norm[1] == ":"):
        raise CnnzooError(f"{archive}: member '{name}' has an absolute path; refusing to extract")
    if ".." in p.parts:
        raise CnnzooError(f"{archive}: member '{name}' escapes the target folder ('..')")
    return p
