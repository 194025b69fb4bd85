"""Uploaded weights: a safetensors file checked as untrusted input before anything reads its
tensors. The 8-byte header length must fit the file, the header must be a JSON object of
tensors with allow-listed dtypes, shapes whose byte size equals their data range, and data
ranges that lie inside the file, in order, without gaps or overlaps. Never unpickles."""
from __future__ import annotations

import json
import math
import struct
from typing import Any, BinaryIO

from ingest.errors import IngestError

DTYPES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1, "BOOL": 1}
MAX_HEADER_BYTES = 16 * 1024 * 1024
MAX_TENSORS = 100_000


def read_head(file: BinaryIO) -> bytes:
    """A safetensors file's 8-byte header length and its header (at most MAX_HEADER_BYTES), read
    from the start of ``file``: all ``check_safetensors`` needs besides the file's size."""
    head = file.read(8)
    if len(head) < 8:
        return head
    (header_len,) = struct.unpack("<Q", head)
    return head + file.read(min(header_len, MAX_HEADER_BYTES + 1))


def check_safetensors(data: bytes, *, max_elements: int, size: int | None = None) -> dict[str, dict[str, Any]]:
    """The file's tensors as name -> {"dtype", "shape"}; an IngestError says what is wrong.

    ``data`` is the whole file, or with ``size`` (the file's length) its beginning, at least
    through the header (``read_head``): the data ranges are checked against ``size``."""
    size = len(data) if size is None else size
    if size < 8 or len(data) < 8:
        raise IngestError("is not a safetensors file: shorter than its 8-byte header length")
    (header_len,) = struct.unpack("<Q", data[:8])
    if header_len > MAX_HEADER_BYTES or 8 + header_len > size or 8 + header_len > len(data):
        raise IngestError(f"is not a safetensors file: its header claims {header_len} bytes, past the end of the "
                          f"{size}-byte file" if 8 + header_len > size else
                          f"has a {header_len}-byte header; at most {MAX_HEADER_BYTES} are allowed")
    try:
        header = json.loads(data[8:8 + header_len])
    except (UnicodeDecodeError, ValueError) as exc:
        raise IngestError(f"is not a safetensors file: its header is not JSON ({exc})"[:300]) from None
    if not isinstance(header, dict):
        raise IngestError("is not a safetensors file: its header is not a JSON object")
    header.pop("__metadata__", None)
    if len(header) > MAX_TENSORS:
        raise IngestError(f"holds {len(header)} tensors; at most {MAX_TENSORS} are allowed")
    body = size - 8 - header_len
    tensors, ranges, elements = {}, [], 0
    for name, info in header.items():
        where = f"tensor {name[:80]!r}"
        if not isinstance(info, dict) or set(info) != {"dtype", "shape", "data_offsets"}:
            raise IngestError(f"{where}: an entry needs exactly dtype, shape and data_offsets")
        dtype, shape, offsets = info["dtype"], info["shape"], info["data_offsets"]
        if dtype not in DTYPES:
            raise IngestError(f"{where}: dtype {str(dtype)[:20]!r} is not allowed; use one of {', '.join(DTYPES)}")
        if (not isinstance(shape, list) or len(shape) > 8
                or not all(isinstance(d, int) and not isinstance(d, bool) and 0 <= d for d in shape)):
            raise IngestError(f"{where}: shape must be a list of at most 8 sizes >= 0")
        count = math.prod(shape)
        elements += count
        if elements > max_elements:
            raise IngestError(f"holds more than {max_elements} elements (max_parameters)")
        if (not isinstance(offsets, list) or len(offsets) != 2
                or not all(isinstance(o, int) and not isinstance(o, bool) for o in offsets)
                or not 0 <= offsets[0] <= offsets[1] <= body):
            raise IngestError(f"{where}: data_offsets must be [begin, end] inside the file's {body} data bytes")
        if offsets[1] - offsets[0] != count * DTYPES[dtype]:
            raise IngestError(f"{where}: shape {shape} of {dtype} needs {count * DTYPES[dtype]} bytes but its "
                              f"data_offsets span {offsets[1] - offsets[0]}")
        ranges.append((offsets[0], offsets[1], name))
        tensors[name] = {"dtype": dtype, "shape": shape}
    position = 0
    for begin, end, name in sorted(ranges):
        if begin != position:
            kind = "overlaps the tensor before it" if begin < position else "leaves a gap before it"
            raise IngestError(f"tensor {name[:80]!r}: its data {kind}")
        position = end
    if position != body:
        raise IngestError(f"the tensors' data ends at byte {position} of {body}: the file has trailing bytes")
    return tensors
