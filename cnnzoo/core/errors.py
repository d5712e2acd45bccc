"""The one exception type users see as a one-line ``error: ...`` message, and the one
helper that puts any message on one line.

Library code raises :class:`CnnzooError` for every problem caused by input
(bad data, bad config, missing files); the CLI prints it as a single line and
exits non-zero instead of showing a traceback. Anything else is a bug.
"""

from __future__ import annotations


class CnnzooError(Exception):
    """A user-facing error: the message names what is wrong and where."""


def one_line(message: BaseException | str, limit: int | None = None, *, first: bool = False) -> str:
    """A message on one line, for an ``error:`` line, a log line or a recorded reason.

    Args:
        message: an exception (its ``str``) or a text.
        limit: cut the result to this many characters.
        first: keep only the first non-blank line (a library's message whose later
            lines are detail, e.g. TensorFlow's or kfp's); otherwise every line is
            kept and all runs of whitespace become one space.

    Returns:
        The line; for an empty message the exception's type name (or ``(no message)``
        for an empty text).
    """
    text = str(message)
    if first:
        lines = [s.strip() for s in text.strip().splitlines() if s.strip()]
        line = lines[0] if lines else ""
    else:
        line = " ".join(text.split())
    if limit is not None:
        line = line[:limit]
    if line:
        return line
    return type(message).__name__ if isinstance(message, BaseException) else "(no message)"
