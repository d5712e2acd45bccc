"""The declared schemas of the data steps' artifacts: ``manifest.json`` and ``split.json``.

Every reader validates the file it reads against these pydantic models
(:func:`read_manifest`, :func:`read_split_info`), so a hand-edited artifact with a wrong
type, an out-of-range number or a missing key is one ``CnnzooError`` line naming the file,
the key and the value (``manifest.json: file images/train/ant/a.jpg: width must be an
integer, got 'wide'``), never a traceback or an allocation the machine cannot hold. Keys
the models do not declare are kept (newer writers may add some); the declared ones are
checked. Image dimensions are bounded by :data:`MAX_PIXELS` (Pillow's pixel-bomb limit,
which ingest enforces), so no reader sizes a buffer from an unchecked number.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictInt,
    StrictStr,
    ValidationError,
    model_validator,
)

from cnnzoo.core.errors import CnnzooError
from cnnzoo.core.yamlconfig import describe, invalid, validate
from cnnzoo.storage.layout import SPLIT_INFO
from cnnzoo.storage.local import read_json

#: The most pixels an ingested image may have: Pillow refuses a larger one as a
#: decompression bomb (2 x ``PIL.Image.MAX_IMAGE_PIXELS``), so ingest never writes one.
MAX_PIXELS = 2 * 89_478_485
_ALLOW = ConfigDict(extra="allow")
_SHA256 = r"^[0-9a-f]{64}$"


class DecodedRecord(BaseModel):
    """A JPEG's kept decode (``cnnzoo.data.decoded``)."""

    model_config = _ALLOW
    file: StrictStr = Field(min_length=1)
    offset: StrictInt = Field(ge=0)
    width: StrictInt = Field(ge=1)
    height: StrictInt = Field(ge=1)
    min_side: StrictInt = Field(ge=0)
    sha256: StrictStr = Field(
        pattern=_SHA256, json_schema_extra={"expected": "64 lowercase hex digits"}
    )


class ManifestFile(BaseModel):
    """One image of ``manifest.json``'s ``files``."""

    model_config = _ALLOW
    path: StrictStr = Field(min_length=1)
    source_path: StrictStr = ""
    split: Literal["train", "test"]
    label: StrictStr
    sha256: StrictStr = Field(
        pattern=_SHA256, json_schema_extra={"expected": "64 lowercase hex digits"}
    )
    width: StrictInt = Field(ge=1)
    height: StrictInt = Field(ge=1)
    decoded: DecodedRecord | None = None
    note: StrictStr | None = None

    @model_validator(mode="after")
    def _sizes(self) -> ManifestFile:
        if self.width * self.height > MAX_PIXELS:
            raise invalid("width", f"{self.width}x{self.height} is over {MAX_PIXELS} pixels")
        kept = self.decoded
        if kept is not None and (kept.width > self.width or kept.height > self.height):
            raise invalid(
                "decoded",
                f"{kept.width}x{kept.height} is larger than the image ({self.width}x{self.height})",
            )
        return self


class Skipped(BaseModel):
    """A file ingest skipped, and why."""

    model_config = _ALLOW
    path: StrictStr
    reason: StrictStr


class IngestManifest(BaseModel):
    """``manifest.json`` (``docs/formats.md``)."""

    model_config = _ALLOW
    source: StrictStr = ""
    classes: list[StrictStr] = Field(min_length=1)
    test_source: Literal["val", "test"] | None
    counts: dict[StrictStr, dict[StrictStr, StrictInt]] = {}
    files: list[ManifestFile]
    skipped: list[Skipped] = []
    warnings: list[StrictStr] = []
    cnnzoo_version: StrictStr | None = None

    @model_validator(mode="after")
    def _labels(self) -> IngestManifest:
        known = set(self.classes)
        for i, f in enumerate(self.files):
            if f.label not in known:
                raise invalid(f"files.{i}.label", f"unknown label {f.label!r}")
        return self


class SplitPart(BaseModel):
    """One part (train, val or test) of ``split.json``."""

    model_config = _ALLOW
    count: StrictInt = Field(ge=0)
    per_class: dict[StrictStr, StrictInt] = {}
    shards: list[StrictStr] = []
    files: list[StrictStr] = []


class SplitInfo(BaseModel):
    """``split.json`` (``docs/formats.md``)."""

    model_config = _ALLOW
    classes: list[StrictStr] = Field(min_length=1)
    img_size: StrictInt = Field(ge=1, le=4096)
    seed: StrictInt | None = None
    splits: dict[Literal["train", "val", "test"], SplitPart]


def check_manifest(data: Any, path: str | os.PathLike) -> dict[str, Any]:
    """``data`` (a parsed ``manifest.json``) if it fits :class:`IngestManifest`.

    Raises:
        CnnzooError: ``<path>: <key> must be ..., got <value>``; for a key of one image,
            ``<path>: file <image>: <key> ...`` (the key relative to that entry).
    """
    try:
        IngestManifest.model_validate(data)
    except ValidationError as err:
        loc, message = describe(IngestManifest, err.errors(include_url=False)[0])
        files = data.get("files") if isinstance(data, dict) else None
        if len(loc) > 2 and loc[0] == "files" and loc[1].isdigit() and isinstance(files, list):
            entry = files[int(loc[1])]
            if isinstance(entry, dict) and isinstance(entry.get("path"), str):
                message = re.sub(r"^files\[\d+\]\.", "", message)
                raise CnnzooError(f"{path}: file {entry['path']}: {message}") from None
        raise CnnzooError(f"{path}: {message}") from None
    return data


def read_manifest(path: str | os.PathLike) -> dict[str, Any]:
    """Read and check an ingest ``manifest.json`` (see :func:`check_manifest`)."""
    return check_manifest(read_json(path), path)


def read_split_info(path: str | os.PathLike) -> dict[str, Any]:
    """Read and check a ``split.json`` against :class:`SplitInfo`.

    Raises:
        CnnzooError: missing or unreadable file, or a key of the wrong kind (named).
    """
    path = Path(path)
    data = read_json(path)
    validate(SplitInfo, data, str(path))
    return data


def read_data_artifact(path: str | os.PathLike) -> dict[str, Any]:
    """An ingest manifest or a ``split.json`` (by its file name), checked as the readers
    above check it."""
    return read_split_info(path) if Path(path).name == SPLIT_INFO else read_manifest(path)


__all__ = [
    "read_data_artifact",
    "MAX_PIXELS",
    "IngestManifest",
    "SplitInfo",
    "check_manifest",
    "read_manifest",
    "read_split_info",
]
