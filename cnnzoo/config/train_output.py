"""The declared schemas of a train output's ``config.yaml`` and ``history.json``.

``cnnzoo evaluate`` (and the report through the evaluation) reads both; a hand-edited file
with a wrong type, an out-of-range or non-finite number is one ``CnnzooError`` line naming
the file, the key and the value. Keys the models do not declare are kept; the declared
ones are checked (the profile inside ``config.yaml`` only where evaluate uses it: its
``seed`` and ``eval_batch_size``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr

from cnnzoo.config.profile import MAX_SEED
from cnnzoo.core.yamlconfig import Number, read_yaml, validate
from cnnzoo.storage.local import read_json

_ALLOW = ConfigDict(extra="allow")


class _TrainedSplit(BaseModel):
    model_config = _ALLOW
    classes: list[StrictStr] = Field(min_length=1)
    img_size: StrictInt = Field(ge=1, le=4096)


class _TrainedProfile(BaseModel):
    model_config = _ALLOW
    seed: StrictInt | None = Field(None, ge=0, le=MAX_SEED)
    eval_batch_size: StrictInt = Field(512, ge=1)


class TrainConfig(BaseModel):
    """A train output's ``config.yaml``."""

    model_config = _ALLOW
    model: StrictStr
    split: _TrainedSplit
    profile: _TrainedProfile = _TrainedProfile()


class History(BaseModel):
    """A train output's ``history.json`` (an ok run's figures; a failed run's error)."""

    model_config = _ALLOW
    model: StrictStr
    status: Literal["ok", "failed"]
    error: StrictStr | None = None
    weights: StrictStr | None = None
    pipeline_check: StrictBool = False  # absent from older files: evaluated whole
    epochs: list[dict[StrictStr, Any]] = []
    epochs_run: StrictInt | None = Field(None, ge=0)
    best_epoch: StrictInt | None = Field(None, ge=0)
    best_val_accuracy: Number | None = Field(None, ge=0, le=1)
    best_val_loss: Number | None = None
    train_time_s: Number | None = Field(None, ge=0)
    images_per_s: Number | None = Field(None, ge=0)
    total_params: StrictInt | None = Field(None, ge=0)
    trainable_params: StrictInt | None = Field(None, ge=0)


def read_train_config(path: str | os.PathLike) -> dict[str, Any]:
    """A train output's ``config.yaml``, checked against :class:`TrainConfig`.

    Raises:
        CnnzooError: missing, unreadable, or a declared key of the wrong kind (named).
    """
    data = read_yaml(Path(path))
    validate(TrainConfig, data, str(path))
    return data


def read_history(path: str | os.PathLike) -> dict[str, Any]:
    """A train output's ``history.json``, checked against :class:`History`.

    Raises:
        CnnzooError: missing, unreadable, or a declared key of the wrong kind (named).
    """
    data = read_json(path)
    validate(History, data, str(path))
    return data


__all__ = ["History", "TrainConfig", "read_history", "read_train_config"]
