"""Dataset bodies: inline JSON arrays (nested lists, or base64 with dtype and shape) for one
target head or several, validated into numpy before anything is stored."""
from __future__ import annotations

import base64
import binascii
import math
import re
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from api.schemas import UTCDateTime

Task = Literal["classification", "regression"]
DTYPES = ("float32", "float64", "float16", "int64", "int32", "int16", "int8", "uint8", "bool")
MAX_INLINE_ELEMENTS = 50_000_000
MAX_DIMS = 8
_HEAD = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")


def to_float_array(value: Any) -> np.ndarray:
    """Nested lists of numbers -> float32 array; ragged, non-numeric or non-finite is an error."""
    if isinstance(value, dict):
        arr = from_base64(value)
    else:
        arr = _from_lists(value)
    if arr.ndim == 0 or arr.shape[0] == 0:
        raise ValueError("must be a non-empty list with one entry per sample")
    if arr.ndim > MAX_DIMS:
        raise ValueError(f"has {arr.ndim} dimensions; at most {MAX_DIMS} are allowed")
    arr = arr.astype(np.float32)
    if not np.isfinite(arr).all():
        raise ValueError("must not contain NaN or Infinity")
    return arr


def _from_lists(value: Any) -> np.ndarray:
    if isinstance(value, np.ndarray):  # from an uploaded file
        if value.dtype.kind not in "biuf":
            raise ValueError(f"must hold numbers, not {value.dtype}")
        return value
    if not isinstance(value, list):
        raise ValueError("must be a list with one entry per sample, or {base64, dtype, shape}")
    try:
        arr = np.asarray(value)
    except (ValueError, TypeError, OverflowError) as exc:
        raise ValueError("must be a rectangular nested list of numbers; rows have different lengths") from exc
    except RecursionError as exc:
        raise ValueError("is nested too deeply") from exc
    if arr.dtype == object and arr.size:
        raise ValueError("must be a rectangular nested list of numbers; rows have different lengths or non-numbers")
    if arr.dtype.kind not in "biuf" and arr.size:
        raise ValueError(f"must contain only numbers, found {'strings' if arr.dtype.kind == 'U' else arr.dtype}")
    return arr


def from_base64(value: dict) -> np.ndarray:
    """``{"base64": ..., "dtype": "float32", "shape": [n, ...]}`` (little-endian, C order)."""
    extra = set(value) - {"base64", "dtype", "shape"}
    if extra or not {"base64", "dtype", "shape"} <= set(value):
        raise ValueError("an encoded array is an object with exactly base64, dtype and shape")
    data, dtype, shape = value["base64"], value["dtype"], value["shape"]
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {', '.join(DTYPES)}")
    if (not isinstance(shape, list) or not 1 <= len(shape) <= MAX_DIMS
            or not all(isinstance(d, int) and not isinstance(d, bool) and 0 <= d <= 2**31 for d in shape)):
        raise ValueError(f"shape must be a list of 1 to {MAX_DIMS} sizes")
    if not isinstance(data, str):
        raise ValueError("base64 must be a string")
    count = math.prod(shape)
    if count > MAX_INLINE_ELEMENTS:
        raise ValueError(f"has {count} elements; an inline array may have at most {MAX_INLINE_ELEMENTS}")
    want = count * np.dtype(dtype).itemsize
    if len(data) > 4 * (want // 3 + 3):
        raise ValueError(f"base64 is longer than {want} bytes of {dtype} for shape {shape}")
    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError("base64 is not valid base64") from exc
    if len(raw) != want:
        raise ValueError(f"base64 holds {len(raw)} bytes but shape {shape} of {dtype} needs {want}")
    return np.frombuffer(raw, dtype=np.dtype(dtype).newbyteorder("<")).reshape(shape)


def to_targets(value: Any, task: str, n: int | None) -> np.ndarray:
    """One head's targets: class indices (int64) or regression values (float32)."""
    if isinstance(value, dict):
        arr = from_base64(value)
    else:
        if not isinstance(value, (list, np.ndarray)):
            raise ValueError("must be a list with one target per sample")
        if task == "classification" and isinstance(value, list) and not all(isinstance(v, int) and not isinstance(v, bool) for v in value):
            raise ValueError("class indices must be integers")
        arr = _from_lists(value)
    if n is not None and (arr.ndim == 0 or arr.shape[0] != n):
        raise ValueError(f"has {arr.shape[0] if arr.ndim else 0} entries but inputs has {n} samples")
    if task == "classification":
        if arr.dtype.kind not in "biu" or arr.ndim != 1:
            raise ValueError("class indices must be integers, one per sample")
        if arr.size and arr.min() < 0:
            raise ValueError("class indices must be >= 0")
        if arr.size and arr.max() >= 100_000:
            raise ValueError("class indices must be below 100000")
        return arr.astype(np.int64)
    arr = arr.astype(np.float32)
    if not np.isfinite(arr).all():
        raise ValueError("must not contain NaN or Infinity")
    return arr


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
        return to_float_array(value)

    @field_validator("targets")
    @classmethod
    def _targets(cls, value: Any, info: ValidationInfo) -> np.ndarray | dict[str, np.ndarray]:
        inputs, task = info.data.get("inputs"), info.data.get("task", "classification")
        n = None if inputs is None else inputs.shape[0]
        if isinstance(value, dict) and "base64" not in value:
            if not value or len(value) > 16:
                raise ValueError("must name 1 to 16 target heads")
            out = {}
            for head, v in value.items():
                if not isinstance(head, str) or not _HEAD.match(head):
                    raise ValueError(f"head name {str(head)[:40]!r} must be an identifier")
                head_task = task.get(head) if isinstance(task, dict) else task
                if head_task is None:
                    raise ValueError(f"task names no task for head {head!r}")
                try:
                    out[head] = to_targets(v, head_task, n)
                except ValueError as exc:
                    raise ValueError(f"{head}: {exc}") from exc
            return out
        if isinstance(task, dict):
            raise ValueError("a task per head needs targets as an object of head name -> list")
        return to_targets(value, task, n)


class BuiltinCreate(BaseModel):
    """POST /v1/datasets/builtin: a scikit-learn sample set by name."""

    model_config = ConfigDict(extra="forbid")

    builtin: Literal["digits", "iris", "wine", "breast_cancer", "diabetes"]
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
