"""Uploaded files: .npz (``inputs`` or ``x``; ``targets``/``y`` or ``targets.<head>``), a
pair of .npy files, or a .csv with a header row and named target columns. Never unpickles.

Everything is read under ``FileLimits`` before it is allocated: an archive's entry count and
its members' declared sizes, each array header's shape x itemsize, a CSV's lines, rows,
columns and cells (counted in a first pass, parsed into preallocated arrays in a second), so a
zip bomb, a header claiming 10^12 elements or a CSV of 10^6 columns is a 422, not an
allocation the API cannot afford."""
from __future__ import annotations

import csv
import io
import math
import struct
import zipfile
from collections.abc import Iterator
from typing import BinaryIO

import numpy as np
from numpy.lib import format as npy_format

from ingest.arrays import integral, to_float_array, to_targets
from ingest.errors import IngestError
from ingest.heads import DEFAULT_HEAD
from ingest.limits import FileLimits

FORMATS = ("npz", "npy", "csv")
DEFAULT_LIMITS = FileLimits()
_CHUNK = 1 << 20
_NPY_HEADER_MAX = 65536 + 16  # numpy's own limit on a header it parses is 10,000 bytes


def read_upload(filename: str, file: BinaryIO, *, task: str, targets: BinaryIO | None = None,
                target_columns: list[str] = (), limits: FileLimits = DEFAULT_LIMITS
                ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """(float32 inputs, head -> targets) from an uploaded file, chosen by its extension."""
    kind = filename.lower().rsplit(".", 1)[-1] if "." in filename else ""
    if kind == "npz":
        x, heads = read_npz(file, limits)
    elif kind == "npy":
        if targets is None:
            raise IngestError("an .npy of inputs needs an .npy of targets beside it", field="targets")
        x = read_npy(file, limits=limits)
        heads = {DEFAULT_HEAD: read_npy(targets, field="targets", limits=limits, budget=limits.max_bytes - x.nbytes)}
    elif kind == "csv":
        x, heads = read_csv(file, list(target_columns), limits)
    else:
        raise IngestError(f"must be a {', '.join('.' + f for f in FORMATS)} file (by its file name)")
    inputs = to_float_array(x)
    ys = {h: to_targets(integral(y) if task == "classification" else y, task, inputs.shape[0])
          for h, y in heads.items()}
    return inputs, ys


def read_array(f: BinaryIO, *, budget: int, limits: FileLimits, what: str = "the array",
               available: int | None = None, field: str | None = None) -> np.ndarray:
    """One .npy stream: its header is checked (numbers only; shape x itemsize within
    ``budget`` and within the ``available`` bytes the stream can hold) before the array is
    allocated, then exactly that many bytes are read into it."""
    try:
        version = npy_format.read_magic(f)
        if version == (1, 0):
            shape, fortran_order, dtype = npy_format.read_array_header_1_0(f)
        elif version == (2, 0):
            shape, fortran_order, dtype = npy_format.read_array_header_2_0(f)
        else:
            raise IngestError(f"{what} is an .npy of format version {version}; versions 1.0 and 2.0 are read", field)
    except (ValueError, OSError, EOFError, SyntaxError) as exc:
        if isinstance(exc, IngestError):
            raise
        raise IngestError(f"{what} is not a readable .npy array without pickled objects ({exc})"[:300], field) from exc
    if dtype.hasobject or dtype.kind not in "biuf":
        raise IngestError(f"{what} holds {dtype}; only numbers (bool, integer, float) are read", field)
    if any(s < 0 for s in shape):
        raise IngestError(f"{what} declares a negative dimension {shape}", field)
    count = math.prod(shape)
    nbytes = count * dtype.itemsize
    decoded = count * max(dtype.itemsize, 4)  # as float32 inputs at least
    if max(nbytes, decoded) > budget:
        raise IngestError(f"{what} declares shape {list(shape)} of {dtype} ({max(nbytes, decoded)} bytes decoded), "
                          f"over the limit {limits.limit_name} ({limits.max_bytes})", field)
    if available is not None and nbytes > available:
        raise IngestError(f"{what} declares shape {list(shape)} of {dtype} ({nbytes} bytes) but holds at most "
                          f"{available} bytes", field)
    arr = np.empty(count, dtype=dtype)
    buf = arr.view(np.uint8)
    pos = 0
    while pos < nbytes:
        chunk = f.read(min(_CHUNK, nbytes - pos))
        if not chunk:
            raise IngestError(f"{what} is truncated: its header declares {nbytes} bytes of data, it holds {pos}",
                              field)
        buf[pos:pos + len(chunk)] = np.frombuffer(chunk, dtype=np.uint8)
        pos += len(chunk)
    return arr.reshape(shape[::-1]).transpose() if fortran_order else arr.reshape(shape)


def _remaining(f: BinaryIO) -> int | None:
    try:
        here = f.tell()
        end = f.seek(0, io.SEEK_END)
        f.seek(here)
        return end - here
    except (OSError, AttributeError, ValueError):
        return None


def read_npy(f: BinaryIO, field: str | None = None, *, limits: FileLimits = DEFAULT_LIMITS,
             budget: int | None = None) -> np.ndarray:
    size = _remaining(f)
    return read_array(f, budget=limits.max_bytes if budget is None else budget, limits=limits,
                      what="the .npy" if field is None else f"the {field} .npy", field=field,
                      available=None if size is None else max(0, size - 10))


def zip_entry_count(f: BinaryIO) -> int:
    """The entry count an archive's end-of-central-directory record declares (zip64 too),
    read before ``zipfile`` parses (and holds) every entry of the directory."""
    end = f.seek(0, io.SEEK_END)
    tail_len = min(end, 22 + 65535)
    f.seek(end - tail_len)
    tail = f.read(tail_len)
    f.seek(0)
    at = tail.rfind(b"PK\x05\x06")
    if at < 0 or len(tail) < at + 22:
        raise zipfile.BadZipFile("no end of central directory record")
    (count,) = struct.unpack("<H", tail[at + 10:at + 12])
    if count == 0xFFFF and at >= 20 and tail[at - 20:at - 16] == b"PK\x06\x07":
        (offset,) = struct.unpack("<Q", tail[at - 12:at - 4])
        f.seek(offset)
        record = f.read(56)
        f.seek(0)
        if record[:4] == b"PK\x06\x06":
            (count,) = struct.unpack("<Q", record[32:40])
    return count


def read_npz(f: BinaryIO, limits: FileLimits = DEFAULT_LIMITS) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """The arrays of an .npz. The members' declared inflated sizes are checked before any is
    inflated; each member is then inflated only as far as its array header declares (checked
    against the bytes left of the budget), a chunk at a time."""
    try:
        entries = zip_entry_count(f)
        if entries > limits.max_members:
            raise IngestError(f"the .npz has {entries} members; at most {limits.max_members} are read")
        with zipfile.ZipFile(f) as zf:
            infos = {i.filename[:-4] if i.filename.endswith(".npy") else i.filename: i for i in zf.infolist()}
            x_key = "inputs" if "inputs" in infos else "x" if "x" in infos else None
            if x_key is None:
                raise IngestError(f"the .npz needs an 'inputs' (or 'x') array; it has {', '.join(sorted(infos))[:200]}")
            wanted = {k: k.split(".", 1)[1] for k in infos if k.startswith("targets.")}
            wanted.update({k: DEFAULT_HEAD for k in ("targets", "y") if k in infos})
            if not wanted:
                raise IngestError("the .npz needs a 'targets' (or 'y') array, or 'targets.<head>' arrays")
            keys = [x_key, *wanted]
            declared = sum(infos[k].file_size for k in keys)
            slack = _NPY_HEADER_MAX * len(keys)
            if declared > limits.max_bytes + slack:
                raise IngestError(f"the .npz members inflate to {declared} bytes (as declared), over the limit "
                                  f"{limits.limit_name} ({limits.max_bytes})")
            budget = limits.max_bytes
            arrays: dict[str, np.ndarray] = {}
            for k in keys:
                with zf.open(infos[k]) as member:
                    arrays[k] = read_array(member, budget=budget, limits=limits, what=f"the .npz member {k!r}",
                                           available=infos[k].file_size)
                budget -= arrays[k].nbytes
            return arrays[x_key], {wanted[k]: arrays[k] for k in wanted}
    except (ValueError, OSError, zipfile.BadZipFile, EOFError, KeyError, NotImplementedError, struct.error) as exc:
        if isinstance(exc, IngestError):
            raise
        raise IngestError(f"is not a readable .npz file without pickled objects ({exc})"[:300]) from exc


def _lines(text: io.TextIOBase, max_chars: int) -> Iterator[str]:
    """The text's lines, refusing one longer than ``max_chars`` before it is split."""
    number = 0
    while line := text.readline(max_chars + 1):
        number += 1
        if len(line) > max_chars:
            raise IngestError(f"line {number} of the .csv is over {max_chars} characters (max_csv_columns)")
        yield line


def _rows(f: BinaryIO, limits: FileLimits) -> Iterator[list[str]]:
    f.seek(0)
    text = io.TextIOWrapper(f, encoding="utf-8", errors="strict", newline="")
    try:
        yield from (r for r in csv.reader(_lines(text, limits.max_csv_line_chars)) if r)
    finally:
        try:
            text.detach()  # the upload stays open for the next pass
        except ValueError:  # already closed by its owner
            pass


def read_csv(f: BinaryIO, target_columns: list[str], limits: FileLimits = DEFAULT_LIMITS
             ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Numbers under a header row. A first pass counts rows and checks every row's width
    against the limits; the second parses blocks of rows into float32 arrays of that size."""
    try:
        rows = _rows(f, limits)
        header = next(rows, None)
        if not header:
            raise IngestError("the .csv is empty; it needs a header row naming the columns")
        width = len(header)
        if width > limits.max_csv_columns:
            raise IngestError(f"the .csv has {width} columns, over the limit max_csv_columns "
                              f"({limits.max_csv_columns})")
        missing = [c for c in target_columns if c not in header]
        if missing or not target_columns:
            raise IngestError(f"name target columns of the header ({', '.join(header)[:200]}); "
                              f"missing: {', '.join(missing)[:200]}", field="target_columns")
        n = 0
        for n, row in enumerate(rows, start=1):
            if len(row) != width:
                raise IngestError(f"row {n} of the .csv has {len(row)} fields; the header has {width}")
            if n > limits.max_csv_rows:
                raise IngestError(f"the .csv has over {limits.max_csv_rows} rows (max_csv_rows)")
            if n * width > limits.max_csv_cells:
                raise IngestError(f"the .csv has over {limits.max_csv_cells} cells (max_csv_cells): "
                                  f"{width} columns x {n} rows and more")
        idx = [header.index(c) for c in target_columns]
        keep = [i for i in range(width) if i not in idx]
        x = np.empty((n, len(keep)), dtype=np.float32)
        ys = np.empty((n, len(idx)), dtype=np.float32)
        block_rows = max(1, 65536 // width)
        rows = _rows(f, limits)
        next(rows)
        start, block = 0, []
        for row in rows:
            block.append(row)
            if len(block) == block_rows:
                start = _fill(block, start, x, ys, keep, idx)
        _fill(block, start, x, ys, keep, idx)
    except UnicodeDecodeError as exc:
        raise IngestError("the .csv is not UTF-8 text") from exc
    except csv.Error as exc:
        raise IngestError(f"the .csv cannot be parsed ({exc})"[:300]) from exc
    except ValueError as exc:
        if isinstance(exc, IngestError):
            raise
        raise IngestError(f"the .csv must hold numbers only, with as many fields per row as the header "
                          f"({exc})"[:300]) from exc
    return x, {c: ys[:, j] for j, c in enumerate(target_columns)}


def _fill(block: list[list[str]], start: int, x: np.ndarray, ys: np.ndarray, keep: list[int], idx: list[int]) -> int:
    if block:
        values = np.array(block, dtype=np.float32)
        x[start:start + len(block)] = values[:, keep]
        ys[start:start + len(block)] = values[:, idx]
        start += len(block)
        block.clear()
    return start
