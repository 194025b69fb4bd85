"""Decoding arrays from JSON: nested lists, or ``{"base64", "dtype", "shape"}``; inputs
become float32, targets int64 class indices or float32 values. Ragged, non-numeric and
non-finite data is refused with a message saying what is wrong."""
from __future__ import annotations

import base64
import binascii
import math
import re
from typing import Any

import numpy as np

from ingest.errors import IngestError

DTYPES = ("float32", "float64", "float16", "int64", "int32", "int16", "int8", "uint8", "bool")
TASKS = ("classification", "regression")
MAX_INLINE_ELEMENTS = 50_000_000
MAX_DIMS = 8
MAX_HEADS = 16
MAX_CLASSES = 100_000
_HEAD = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")


def to_float_array(value: Any) -> np.ndarray:
    """Nested lists of numbers (or an encoded array, or an array read from a file) -> float32."""
    arr = from_base64(value) if isinstance(value, dict) else _from_lists(value)
    if arr.ndim == 0 or arr.shape[0] == 0:
        raise IngestError("must be a non-empty list with one entry per sample")
    if arr.ndim > MAX_DIMS:
        raise IngestError(f"has {arr.ndim} dimensions; at most {MAX_DIMS} are allowed")
    if math.prod(arr.shape[1:]) == 0:
        raise IngestError(f"has no values per sample (shape {list(arr.shape)}); a sample needs at least one")
    arr = arr.astype(np.float32)
    if not np.isfinite(arr).all():
        raise IngestError("must not contain NaN or Infinity")
    return arr


def _from_lists(value: Any) -> np.ndarray:
    if isinstance(value, np.ndarray):  # from an uploaded file
        if value.dtype.kind not in "biuf":
            raise IngestError(f"must hold numbers, not {value.dtype}")
        return value
    if not isinstance(value, list):
        raise IngestError("must be a list with one entry per sample, or {base64, dtype, shape}")
    try:
        arr = np.asarray(value)
    except (ValueError, TypeError, OverflowError) as exc:
        raise IngestError("must be a rectangular nested list of numbers; rows have different lengths") from exc
    except RecursionError as exc:
        raise IngestError("is nested too deeply") from exc
    if arr.dtype == object and arr.size:
        raise IngestError("must be a rectangular nested list of numbers; rows have different lengths or non-numbers")
    if arr.dtype.kind not in "biuf" and arr.size:
        raise IngestError(f"must contain only numbers, found {'strings' if arr.dtype.kind == 'U' else arr.dtype}")
    return arr


def from_base64(value: dict) -> np.ndarray:
    """``{"base64": ..., "dtype": "float32", "shape": [n, ...]}`` (little-endian, C order)."""
    extra = set(value) - {"base64", "dtype", "shape"}
    if extra or not {"base64", "dtype", "shape"} <= set(value):
        raise IngestError("an encoded array is an object with exactly base64, dtype and shape")
    data, dtype, shape = value["base64"], value["dtype"], value["shape"]
    if dtype not in DTYPES:
        raise IngestError(f"dtype must be one of {', '.join(DTYPES)}")
    if (not isinstance(shape, list) or not 1 <= len(shape) <= MAX_DIMS
            or not all(isinstance(d, int) and not isinstance(d, bool) and 0 <= d <= 2**31 for d in shape)):
        raise IngestError(f"shape must be a list of 1 to {MAX_DIMS} sizes")
    if not isinstance(data, str):
        raise IngestError("base64 must be a string")
    count = math.prod(shape)
    if count > MAX_INLINE_ELEMENTS:
        raise IngestError(f"has {count} elements; an inline array may have at most {MAX_INLINE_ELEMENTS}")
    want = count * np.dtype(dtype).itemsize
    if len(data) > 4 * (want // 3 + 3):
        raise IngestError(f"base64 is longer than {want} bytes of {dtype} for shape {shape}")
    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise IngestError("base64 is not valid base64") from exc
    if len(raw) != want:
        raise IngestError(f"base64 holds {len(raw)} bytes but shape {shape} of {dtype} needs {want}")
    return np.frombuffer(raw, dtype=np.dtype(dtype).newbyteorder("<")).reshape(shape)


def to_targets(value: Any, task: str, n: int | None) -> np.ndarray:
    """One head's targets: class indices (int64) or regression values (float32)."""
    if isinstance(value, dict):
        arr = from_base64(value)
    else:
        if not isinstance(value, (list, np.ndarray)):
            raise IngestError("must be a list with one target per sample")
        if task == "classification" and isinstance(value, list) and not all(
                isinstance(v, int) and not isinstance(v, bool) for v in value):
            raise IngestError("class indices must be integers")
        arr = _from_lists(value)
    if n is not None and (arr.ndim == 0 or arr.shape[0] != n):
        raise IngestError(f"has {arr.shape[0] if arr.ndim else 0} entries but inputs has {n} samples")
    if task == "classification":
        if arr.dtype.kind not in "biu" or arr.ndim != 1:
            raise IngestError("class indices must be integers, one per sample")
        if arr.size and arr.min() < 0:
            raise IngestError("class indices must be >= 0")
        if arr.size and arr.max() >= MAX_CLASSES:
            raise IngestError(f"class indices must be below {MAX_CLASSES}")
        return arr.astype(np.int64)
    if arr.ndim > 1 and math.prod(arr.shape[1:]) == 0:
        raise IngestError(f"has no values per sample (shape {list(arr.shape)}); a regression target needs at least one")
    arr = arr.astype(np.float32)
    if not np.isfinite(arr).all():
        raise IngestError("must not contain NaN or Infinity")
    return arr


def to_heads(value: Any, task: str | dict[str, str], n: int | None) -> np.ndarray | dict[str, np.ndarray]:
    """``targets`` of a JSON body: one list (or encoded array) for the default head, or an
    object of head name -> list with ``task`` one task for all heads or one per head."""
    if isinstance(value, dict) and "base64" not in value:
        if not value or len(value) > MAX_HEADS:
            raise IngestError(f"must name 1 to {MAX_HEADS} target heads")
        out = {}
        for head, v in value.items():
            if not isinstance(head, str) or not _HEAD.match(head):
                raise IngestError(f"head name {str(head)[:40]!r} must be an identifier")
            head_task = task.get(head) if isinstance(task, dict) else task
            if head_task is None:
                raise IngestError(f"task names no task for head {head!r}")
            try:
                out[head] = to_targets(v, head_task, n)
            except IngestError as exc:
                raise IngestError(f"{head}: {exc}") from exc
        return out
    if isinstance(task, dict):
        raise IngestError("a task per head needs targets as an object of head name -> list")
    return to_targets(value, task, n)


def integral(y: np.ndarray) -> np.ndarray:
    """Float class labels read from a file (CSV) that are whole numbers, as int64."""
    if y.dtype.kind == "f" and np.isfinite(y).all() and (y == np.round(y)).all():
        return y.astype(np.int64)
    return y
