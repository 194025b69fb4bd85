"""Dataset bodies: inline JSON arrays (nested lists, or base64 with dtype and shape) for one
target head or several, decoded by ``ingest`` into numpy before anything is stored."""
from __future__ import annotations

from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from api.schemas import UTCDateTime
from ingest import arrays, builtin

Task = Literal["classification", "regression"]


class DatasetCreate(BaseModel):
    """POST /v1/datasets: one entry of ``inputs`` per sample; ``targets`` is a list (one head)
    or an object of head name -> list (multi-task); ``task`` is one task or one per head."""

    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True)

    name: str = Field(min_length=1, max_length=200)
    task: Task | dict[str, Task] = "classification"
    inputs: Any
    targets: Any

    @field_validator("inputs")
    @classmethod
    def _inputs(cls, value: Any) -> np.ndarray:
        return arrays.to_float_array(value)

    @field_validator("targets")
    @classmethod
    def _targets(cls, value: Any, info: ValidationInfo) -> np.ndarray | dict[str, np.ndarray]:
        inputs, task = info.data.get("inputs"), info.data.get("task", "classification")
        return arrays.to_heads(value, task, None if inputs is None else inputs.shape[0])


class BuiltinCreate(BaseModel):
    """POST /v1/datasets/builtin: a scikit-learn sample set by name."""

    model_config = ConfigDict(extra="forbid")

    builtin: Literal[tuple(builtin.TASKS)]  # type: ignore[valid-type]
    name: str | None = Field(default=None, min_length=1, max_length=200)
    limit: int | None = Field(default=None, ge=2, description="keep only the first samples")


class HeadOut(BaseModel):
    task: str
    shape: list[int]
    dtype: str
    num_classes: int | None


class DatasetOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    name: str
    task: str
    num_samples: int
    input_shape: list[int]
    input_dtype: str
    num_classes: int | None
    targets: dict[str, HeadOut] = {}
    source: str | None = None
    size_bytes: int
    created_at: UTCDateTime

    @classmethod
    def from_row(cls, ds: Any, info: dict) -> DatasetOut:
        out = cls.model_validate(ds)
        out.targets = {h: HeadOut(**i) for h, i in info.items()}
        return out


class DatasetList(BaseModel):
    items: list[DatasetOut]


class DatasetPreview(BaseModel):
    id: str
    num_samples: int
    input_shape: list[int]
    input_dtype: str
    inputs: list[Any]
    targets: dict[str, list[Any]]
    histograms: dict[str, list[int]]
    statistics: dict[str, dict[str, float]]
