"""Dataset bodies: inline JSON arrays validated into numpy before anything is stored."""
from __future__ import annotations

from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, StrictInt, ValidationInfo, field_validator

from api.schemas import UTCDateTime


def to_float_array(value: Any) -> np.ndarray:
    """Nested lists of numbers -> float32 array; ragged, non-numeric or non-finite is an error."""
    try:
        arr = np.asarray(value)
    except ValueError as exc:
        raise ValueError(
            "must be a rectangular nested list of numbers; rows have different lengths"
        ) from exc
    if arr.dtype == object and arr.size:
        raise ValueError("must be a rectangular nested list of numbers; rows have different lengths or non-numbers")
    if arr.dtype.kind not in "biuf" and arr.size:
        raise ValueError(f"must contain only numbers, found {arr.dtype.kind == 'U' and 'strings' or arr.dtype}")
    if arr.ndim == 0 or arr.shape[0] == 0:
        raise ValueError("must be a non-empty list with one entry per sample")
    arr = arr.astype(np.float32)
    if not np.isfinite(arr).all():
        raise ValueError("must not contain NaN or Infinity")
    return arr


class DatasetCreate(BaseModel):
    """POST /v1/datasets: one entry of ``inputs`` per sample, one class index per target."""

    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True)

    name: str = Field(min_length=1, max_length=200)
    task: Literal["classification"] = "classification"
    inputs: Any
    targets: list[StrictInt]

    @field_validator("inputs")
    @classmethod
    def _inputs(cls, value: Any) -> np.ndarray:
        if not isinstance(value, list):
            raise ValueError("must be a list with one entry per sample")
        return to_float_array(value)

    @field_validator("targets")
    @classmethod
    def _targets(cls, value: list[int], info: ValidationInfo) -> list[int]:
        inputs = info.data.get("inputs")
        if inputs is not None and len(value) != inputs.shape[0]:
            raise ValueError(f"has {len(value)} entries but inputs has {inputs.shape[0]} samples")
        if any(v < 0 for v in value):
            raise ValueError("class indices must be >= 0")
        return value


class DatasetOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    name: str
    task: str
    num_samples: int
    input_shape: list[int]
    input_dtype: str
    num_classes: int | None
    size_bytes: int
    created_at: UTCDateTime


class DatasetList(BaseModel):
    items: list[DatasetOut]
