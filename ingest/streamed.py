"""Large uploaded files read where they lie, array by array, never whole in memory: an .npz
(its members compressed or not) is parsed through a seekable file (a blob), each member's
.npy header checked (numbers only, at most ``MAX_DIMS`` dimensions, C order, sizes within
the limits) before a byte of data is read, and the inputs handed on in pieces of whole rows:
uint8 stays uint8 (images: a quarter of float32's bytes, cast per batch on the device),
every other numeric dtype becomes float32 as ``ingest.arrays`` makes it, NaN and infinity
refused piece by piece. Targets are small (one entry per sample) and go through
``ingest.arrays.to_targets`` whole, exactly as the one-request upload's; at most
``FileLimits.max_members`` archive entries. A .csv is read by ``ingest.files`` (in memory,
under its own limits) and stored the same way.

The caller's ``sink(name, dtype, shape, pieces)`` stores one array from its pieces and
returns what it wants back (the store's layout entry); ingest itself imports numpy only."""
from __future__ import annotations

import math
import zipfile
from collections.abc import Callable, Iterator
from typing import Any, BinaryIO

import numpy as np
from numpy.lib import format as npy_format

from ingest.arrays import MAX_DIMS, integral, to_targets
from ingest.errors import IngestError
from ingest.heads import DEFAULT_HEAD, head_info
from ingest.limits import FileLimits

FORMATS = ("npz", "csv")
PIECE_BYTES = 8 * 1024**2
Sink = Callable[[str, np.dtype, list[int], Iterator[bytes]], Any]


def kind_of(filename: str) -> str:
    """The format a chunked upload's file name says, or an IngestError naming ``filename``."""
    kind = filename.lower().rsplit(".", 1)[-1] if "." in filename else ""
    if kind not in FORMATS:
        raise IngestError("a chunked upload is a .npz (inputs, targets or targets.<head>) or a .csv file "
                          f"(by its file name); {filename[:100]!r} is neither", field="filename")
    return kind


def read_into(filename: str, f: BinaryIO, sink: Sink, *, task: str, target_columns: list[str], max_bytes: int,
              max_samples: int) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """Read an uploaded file into ``sink``: returns (sink's answers per array name, head -> head_info)."""
    if kind_of(filename) == "csv":
        from ingest.files import read_upload

        x, heads = read_upload(filename, f, task=task, target_columns=target_columns)
        _check_total(x.nbytes + sum(y.nbytes for y in heads.values()), x.shape[0], max_bytes, max_samples)
        stored = {"inputs": sink("inputs", x.dtype, list(x.shape), iter([memoryview(x).cast("B")]))}
        for h, y in heads.items():
            stored[f"targets.{h}"] = sink(f"targets.{h}", y.dtype, list(y.shape), iter([memoryview(y).cast("B")]))
        return stored, {h: head_info(task, y) for h, y in heads.items()}
    return _read_npz(f, sink, task=task, max_bytes=max_bytes, max_samples=max_samples)


def _check_total(total: int, samples: int, max_bytes: int, max_samples: int) -> None:
    if total > max_bytes:
        raise IngestError(f"the dataset is {total} bytes decoded, over the limit max_dataset_bytes ({max_bytes})")
    if samples > max_samples:
        raise IngestError(f"the dataset has {samples} samples, over the limit max_dataset_samples ({max_samples})")


def _header(f: BinaryIO, what: str) -> tuple[tuple[int, ...], np.dtype]:
    try:
        version = npy_format.read_magic(f)
        if version not in ((1, 0), (2, 0)):
            raise IngestError(f"{what} is an .npy of format version {version}; versions 1.0 and 2.0 are read")
        read = npy_format.read_array_header_1_0 if version == (1, 0) else npy_format.read_array_header_2_0
        shape, fortran, dtype = read(f)
    except (ValueError, OSError, EOFError, SyntaxError) as exc:
        if isinstance(exc, IngestError):
            raise
        raise IngestError(f"{what} is not a readable .npy array without pickled objects ({exc})"[:300]) from exc
    if dtype.hasobject or dtype.kind not in "biuf":
        raise IngestError(f"{what} must hold numbers, not {dtype}")
    if fortran and len(shape) > 1:
        raise IngestError(f"{what} is stored in Fortran order; save it in C order (numpy's default)")
    if not 1 <= len(shape) <= MAX_DIMS:
        raise IngestError(f"{what} has {len(shape)} dimensions; 1 to {MAX_DIMS} are allowed")
    return tuple(shape), dtype


def _exact(f: BinaryIO, n: int, what: str) -> bytes:
    parts, left = [], n
    while left:
        piece = f.read(min(left, PIECE_BYTES))
        if not piece:
            raise IngestError(f"{what} is truncated: its header declares more data than it holds")
        parts.append(piece)
        left -= len(piece)
    return b"".join(parts)


def _input_pieces(f: BinaryIO, shape: tuple[int, ...], dtype: np.dtype, out: np.dtype) -> Iterator[bytes]:
    row = math.prod(shape[1:]) * dtype.itemsize
    rows_per = max(1, PIECE_BYTES // max(row, 1))
    for start in range(0, shape[0], rows_per):
        k = min(rows_per, shape[0] - start)
        raw = np.frombuffer(_exact(f, k * row, "inputs"), dtype=dtype)
        arr = raw.astype(out, copy=False) if raw.dtype != out else raw
        if out.kind == "f" and not np.isfinite(arr).all():
            raise IngestError("inputs must not contain NaN or Infinity")
        yield memoryview(np.ascontiguousarray(arr)).cast("B")


def _read_npz(f: BinaryIO, sink: Sink, *, task: str, max_bytes: int, max_samples: int):
    try:
        archive = zipfile.ZipFile(f)
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:
        raise IngestError(f"is not a readable .npz file ({exc})"[:300]) from exc
    with archive:
        members = archive.infolist()
        if len(members) > FileLimits.max_members:
            raise IngestError(f"the .npz has {len(members)} entries; at most {FileLimits.max_members} are read")
        names = {i.filename[:-4] if i.filename.endswith(".npy") else i.filename: i for i in archive.infolist()}
        x_key = "inputs" if "inputs" in names else "x" if "x" in names else None
        if x_key is None:
            raise IngestError(f"the .npz needs an 'inputs' (or 'x') array; it has {', '.join(sorted(names))[:200]}")
        head_keys = {k.split(".", 1)[1]: k for k in names if k.startswith("targets.")}
        for k in ("targets", "y"):
            if k in names:
                head_keys[DEFAULT_HEAD] = k
        if not head_keys:
            raise IngestError("the .npz needs a 'targets' (or 'y') array, or 'targets.<head>' arrays")
        try:
            with archive.open(names[x_key]) as member:
                shape, dtype = _header(member, "inputs")
            out = np.dtype(np.uint8) if dtype == np.uint8 else np.dtype(np.float32)
            if shape[0] == 0:
                raise IngestError("inputs must be a non-empty list with one entry per sample")
            heads, ys = {}, {}
            for head, key in head_keys.items():  # one entry per sample: read whole, checked as any upload's
                with archive.open(names[key]) as member:
                    y_shape, y_dtype = _header(member, f"targets {head!r}")
                    if math.prod(y_shape) * y_dtype.itemsize > max_bytes:
                        raise IngestError(f"targets {head!r} are over the limit max_dataset_bytes ({max_bytes})")
                    y = np.frombuffer(_exact(member, math.prod(y_shape) * y_dtype.itemsize, "targets"),
                                      dtype=y_dtype).reshape(y_shape)
                try:
                    ys[head] = to_targets(integral(y) if task == "classification" else y, task, shape[0])
                except IngestError as exc:
                    raise IngestError(f"targets {head!r}: {exc}") from exc
                heads[head] = head_info(task, ys[head])
            _check_total(math.prod(shape) * out.itemsize + sum(y.nbytes for y in ys.values()), shape[0],
                         max_bytes, max_samples)
            with archive.open(names[x_key]) as member:
                _header(member, "inputs")
                stored = {"inputs": sink("inputs", out, list(shape), _input_pieces(member, shape, dtype, out))}
        except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError) as exc:
            raise IngestError(f"is not a readable .npz file ({exc})"[:300]) from exc
        for head, y in ys.items():
            stored[f"targets.{head}"] = sink(f"targets.{head}", y.dtype, list(y.shape), iter([memoryview(y).cast("B")]))
        return stored, heads
