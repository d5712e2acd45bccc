"""The evaluation record: what ``cnnzoo evaluate`` writes and the report reads.

One :class:`EvaluationRecord` per model and run, stored as JSON (``docs/formats.md``,
"Evaluation"). Its fields are declared once, here, with the kind of value each holds;
:meth:`EvaluationRecord.from_dict` checks a parsed file against that declaration and
names the file, the key and the value of the first thing wrong.

``schema_version`` says which layout a file has. Version 1 is the layout cnnzoo has
written from the start; files written before the key existed carry none and are read
as version 1 (their keys are the same). A file of another version is refused with a
line saying to run ``cnnzoo evaluate`` again. To add a field (e.g. a confidence
interval), add it below with a default of None; bump the version only when a reader
of the old layout would misread the new one.
"""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass, field
from typing import Any

from cnnzoo.core.errors import CnnzooError
from cnnzoo.storage.local import atomic_write_json, read_json

#: The layout this cnnzoo writes and reads.
SCHEMA_VERSION = 1
#: Versions this cnnzoo reads (a file without ``schema_version`` counts as 1).
READABLE_VERSIONS = (1,)
STATUSES = ("ok", "failed")
#: Optional fields of a profile's own configuration (a variant or sweep point), left out
#: of a registered configuration's record.
DERIVED_FIELDS = ("derived_from", "sweep", "sweep_point", "derived_settings")
#: Optional fields a record written before them lacks (see :class:`EvaluationRecord`).
STATS_FIELDS = (
    "seed",
    "train_count",
    "test_accuracy_ci",
    "test_set",
    "test_labels",
    "test_predictions",
)


def _kind(kind: str, required: bool = False) -> dict[str, Any]:
    """Field metadata: the kind of value, and whether an ``ok`` record must have it."""
    return {"kind": kind, "required": required}


@dataclass(frozen=True, kw_only=True)
class EvaluationRecord:
    """One model's evaluation on its split (or why there is none: ``status`` failed).

    Numbers are fractions (accuracies, ``gap`` = train - test accuracy), seconds and
    counts; ``per_class`` maps a class to ``{"precision", "recall", "f1", "support"}``;
    ``confusion_matrix`` has one row (true class) and column (predicted) per class;
    ``history`` is ``history.json``'s epochs list. ``seed`` is the training seed (a
    configuration has one record per seed when the profile's ``repeats`` > 1);
    ``test_accuracy_ci`` the 95% Wilson interval; ``test_labels`` and
    ``test_predictions`` the true and predicted class of every test image in record
    order, and ``test_set`` the identity of those images
    (:func:`cnnzoo.evaluation.evaluate.identify_test_set`). A pipeline check (a
    random-weight backbone's capped steps) is evaluated on its test images only: its
    train and val figures and ``gap`` are None (present, null in the file).
    """

    model: str = field(metadata=_kind("name"))
    strategy: str | None = field(default=None, metadata=_kind("text"))
    base: str | None = field(default=None, metadata=_kind("text"))
    status: str = field(metadata=_kind("status"))
    error: str | None = field(default=None, metadata=_kind("text"))
    classes: list[str] | None = field(default=None, metadata=_kind("classes"))
    test_count: int | None = field(default=None, metadata=_kind("count"))
    test_loss: float | None = field(default=None, metadata=_kind("loss"))
    test_accuracy: float | None = field(default=None, metadata=_kind("fraction", True))
    train_loss: float | None = field(default=None, metadata=_kind("loss"))
    train_accuracy: float | None = field(default=None, metadata=_kind("fraction", True))
    val_loss: float | None = field(default=None, metadata=_kind("loss"))
    val_accuracy: float | None = field(default=None, metadata=_kind("fraction"))
    gap: float | None = field(default=None, metadata=_kind("difference", True))
    per_class: dict[str, dict[str, float]] | None = field(default=None, metadata=_kind("per_class"))
    confusion_matrix: list[list[int]] | None = field(default=None, metadata=_kind("matrix"))
    total_params: int | None = field(default=None, metadata=_kind("positive_count", True))
    trainable_params: int | None = field(default=None, metadata=_kind("count", True))
    epochs_run: int | None = field(default=None, metadata=_kind("count"))
    best_val_accuracy: float | None = field(default=None, metadata=_kind("fraction"))
    train_time_s: float | None = field(default=None, metadata=_kind("amount"))
    images_per_s: float | None = field(default=None, metadata=_kind("amount"))
    weights: str | None = field(default=None, metadata=_kind("text"))
    history: list[dict[str, Any]] | None = field(default=None, metadata=_kind("history"))
    # Added for the comparison's statistics (cnnzoo.evaluation.stats); a file without them is read
    # as before (no interval from predictions, no McNemar test against the best).
    seed: int | None = field(default=None, metadata=_kind("integer"))
    train_count: int | None = field(default=None, metadata=_kind("count"))
    test_accuracy_ci: list[float] | None = field(default=None, metadata=_kind("interval"))
    test_set: str | None = field(default=None, metadata=_kind("text"))
    test_labels: list[int] | None = field(default=None, metadata=_kind("indices"))
    test_predictions: list[int] | None = field(default=None, metadata=_kind("indices"))
    # A profile's own configuration (a variant or a sweep point, config.yaml's "derived"):
    # what it derives from, and the sweep and grid point it is, for the report's sweep plot.
    derived_from: str | None = field(default=None, metadata=_kind("text"))
    sweep: str | None = field(default=None, metadata=_kind("text"))
    sweep_point: dict[str, Any] | None = field(default=None, metadata=_kind("settings"))
    derived_settings: dict[str, Any] | None = field(default=None, metadata=_kind("settings"))
    schema_version: int = field(default=SCHEMA_VERSION, metadata=_kind("version"))

    @property
    def ok(self) -> bool:
        """Whether the model trained and was evaluated (``status`` is ``ok``)."""
        return self.status == "ok"

    @classmethod
    def failed(
        cls,
        model: str,
        strategy: str | None,
        base: str | None,
        error: str,
        seed: int | None = None,
        **derived: Any,
    ) -> EvaluationRecord:
        """The record of a model that has no evaluation, with the reason (and the
        training seed, when known: one of several repeats failed; and ``derived_from``,
        ``sweep``, ``sweep_point`` for a profile's own configuration)."""
        return cls(
            model=model,
            status="failed",
            strategy=strategy,
            base=base,
            error=error,
            seed=seed,
            **derived,
        )

    @classmethod
    def from_dict(cls, data: Any, where: str) -> EvaluationRecord:
        """Check parsed JSON against the declared fields and build the record.

        Args:
            data: the parsed evaluation (a JSON object).
            where: what to name in an error: a file path, or ``evaluation #2 (mid)``.

        Returns:
            The record; a file without ``schema_version`` is read as version 1.

        Raises:
            CnnzooError: not an object, an unknown key, a missing required key, a value
                of the wrong kind, or a ``schema_version`` this cnnzoo does not read.
        """
        if not isinstance(data, dict):
            raise CnnzooError(f"{where}: must be a JSON object, got {type(data).__name__}")
        version = data.get("schema_version", 1)
        if not _is_int(version) or version not in READABLE_VERSIONS:
            raise CnnzooError(
                f"{where}: schema_version {version!r} is not one this cnnzoo reads "
                f"({', '.join(map(str, READABLE_VERSIONS))}); run 'cnnzoo evaluate' again "
                "with this version"
            )
        fields = {f.name: f for f in dataclasses.fields(cls)}
        for key in data:
            if key not in fields:
                raise CnnzooError(
                    f"{where}: unknown key {key!r} (an evaluation record, schema_version "
                    f"{version}, has {', '.join(sorted(fields))})"
                )
        for name in ("model", "status"):
            if name not in data:
                raise CnnzooError(f"{where}: missing key {name!r}")
        ok = data["status"] == "ok"
        for f in fields.values():
            if f.name not in data:
                if ok and f.metadata["required"]:
                    raise CnnzooError(f"{where}: missing key {f.name!r}")
                continue
            _check_value(where, f.name, f.metadata["kind"], data[f.name])
        record = cls(**{**data, "schema_version": SCHEMA_VERSION})
        record._check_matrix(where)
        return record

    def _check_matrix(self, where: str) -> None:
        if self.confusion_matrix is None:
            return
        if not self.classes:
            raise CnnzooError(f"{where}: confusion_matrix given but classes is missing or empty")
        n = len(self.classes)
        cm = self.confusion_matrix
        if len(cm) != n or any(len(row) != n for row in cm):
            shape = f"{len(cm)} rows of {sorted({len(r) for r in cm})}"
            raise CnnzooError(
                f"{where}: confusion_matrix must be {n}x{n} numbers (one row and column "
                f"per class), got {shape}"
            )

    def to_dict(self) -> dict[str, Any]:
        """The record as JSON data: a failed record keeps only its head and error, an ok
        one has no ``error``."""
        if not self.ok:
            keys = ("model", "strategy", "base", "status", "error", "schema_version")
            data = {k: getattr(self, k) for k in keys}
            for key in ("seed", *DERIVED_FIELDS):
                if getattr(self, key) is not None:
                    data[key] = getattr(self, key)
            return data
        data = dataclasses.asdict(self)
        del data["error"]
        # The statistics' fields are left out when absent: an older file round-trips as it was.
        for key in (*STATS_FIELDS, *DERIVED_FIELDS):
            if data[key] is None:
                del data[key]
        return data


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


#: Numeric kinds of value: (lowest, highest, what the message says it must be). A
#: ``*count`` is an integer; the others are finite numbers (never NaN or infinite).
_RANGES = {
    "count": (0, math.inf, "an integer >= 0"),
    "positive_count": (1, math.inf, "an integer >= 1"),
    "fraction": (0, 1, "a number in [0, 1]"),
    "difference": (-1, 1, "a number in [-1, 1]"),
    "loss": (0, math.inf, "a finite number >= 0"),
    "amount": (0, math.inf, "a finite number >= 0"),
}
#: The kinds of a ``per_class`` entry's metrics.
_PER_CLASS = {"precision": "fraction", "recall": "fraction", "f1": "fraction", "support": "count"}


def _check_value(where: str, key: str, kind: str, value: Any) -> None:
    """Raise a one-line error naming ``where``, ``key`` and ``value`` if it is not ``kind``."""

    def bad(expected: str) -> CnnzooError:
        shown = repr(value)
        shown = shown if len(shown) <= 80 else shown[:77] + "..."
        return CnnzooError(f"{where}: {key} must be {expected}, got {shown}")

    if kind == "name":
        if not isinstance(value, str) or not value:
            raise bad("a non-empty string")
    elif kind == "status":
        if value not in STATUSES:
            raise bad("'ok' or 'failed'")
    elif kind == "version":
        return  # checked before the fields
    elif value is None:
        return
    elif kind == "text":
        if not isinstance(value, str):
            raise bad("a string or null")
    elif kind in _RANGES:
        low, high, expected = _RANGES[kind]
        integral = kind.endswith("count")
        if not (_is_int(value) if integral else finite(value)) or not low <= value <= high:
            raise bad(f"{expected} or null")
    elif kind == "integer":
        if not _is_int(value):
            raise bad("an integer or null")
    elif kind == "interval":
        if not (
            isinstance(value, list)
            and len(value) == 2
            and all(finite(v) and 0 <= v <= 1 for v in value)
            and value[0] <= value[1]
        ):
            raise bad("[low, high] fractions, low <= high, or null")
    elif kind == "indices":
        if not isinstance(value, list) or not all(_is_int(v) for v in value):
            raise bad("a list of class indices or null")
    elif kind == "classes":
        if not isinstance(value, list) or not all(isinstance(c, str) for c in value):
            raise bad("a list of class names")
    elif kind == "matrix":
        if not isinstance(value, list) or not all(
            isinstance(r, list) and all(_is_int(v) and v >= 0 for v in r) for r in value
        ):
            raise bad("a list of rows of counts")
    elif kind == "per_class":
        if not isinstance(value, dict) or not all(isinstance(m, dict) for m in value.values()):
            raise bad("an object (class -> metrics)")
        for label, metrics in value.items():
            for name, metric in metrics.items():
                kind_of = _PER_CLASS.get(name, "amount")
                _check_value(where, f"per_class.{label}.{name}", kind_of, metric)
    elif kind == "settings":
        if not isinstance(value, dict) or not all(
            isinstance(k, str) and (_is_number(v) or isinstance(v, (bool, str)))
            for k, v in value.items()
        ):
            raise bad("an object (setting -> number, bool or text) or null")
    elif kind == "history":
        if not isinstance(value, list) or not all(isinstance(e, dict) for e in value):
            raise bad("a list of epoch records")
    else:  # pragma: no cover - a field declared with a kind this function lacks
        raise AssertionError(f"unknown field kind {kind!r}")


def finite(x: Any) -> bool:
    """Whether ``x`` is a number (not a bool) and finite."""
    return _is_number(x) and math.isfinite(x)


def read_evaluation(path: str | os.PathLike) -> EvaluationRecord:
    """Read and check one evaluation file.

    Raises:
        CnnzooError: the file is missing, not JSON, or not a valid record (names the
            file, key and value).
    """

    return EvaluationRecord.from_dict(read_json(path), str(path))


def write_evaluation(path: str | os.PathLike, record: EvaluationRecord) -> None:
    """Write ``record`` to ``path`` atomically, as :meth:`EvaluationRecord.to_dict`."""

    atomic_write_json(path, record.to_dict())
