"""Environment variables that tune cnnzoo, parsed with one error line each."""

from __future__ import annotations

import math
import os

from cnnzoo.core.errors import CnnzooError


def env_number(name: str, default: float) -> float:
    """``$name`` as a positive number, or ``default`` when unset.

    Raises:
        CnnzooError: the value is not a finite positive number (names the variable).
    """
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
