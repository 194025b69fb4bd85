"""Hostile upload files, built without ever holding what they claim to hold."""
from __future__ import annotations

import io
import re
import struct
import zipfile
from pathlib import Path

import numpy as np
from numpy.lib import format as npy_format


def npy_header(shape: tuple[int, ...], descr: str = "<f4") -> bytes:
    buf = io.BytesIO()
    npy_format.write_array_header_1_0(buf, {"descr": descr, "fortran_order": False, "shape": shape})
    return buf.getvalue()


def huge_header_npy(elements: int = 10**12) -> bytes:
    """A .npy whose header claims ``elements`` float32 values and which holds 64 bytes."""
    return npy_header((elements,)) + b"\0" * 64


def zip_bomb(path: Path, inflated: int = 2 * 1024**3, member: str = "inputs.npy") -> Path:
    """An .npz (with a small 'targets') whose 'inputs' member deflates ``inflated`` bytes of
    zeros (an honest header and honest declared sizes) into a few MB."""
    count = (inflated - 128) // 4
    zeros = b"\0" * (1 << 20)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        buf = io.BytesIO()
        np.save(buf, np.zeros(4, dtype=np.int64))
        zf.writestr("targets.npy", buf.getvalue())
        with zf.open(member, "w", force_zip64=True) as m:
            m.write(npy_header((count,)))
            left = count * 4
            while left:
                m.write(zeros[:min(left, len(zeros))])
                left -= min(left, len(zeros))
    return path


def lying_zip(inflated: int = 64 * 1024**2, declared: int = 256, header_shape: tuple[int, ...] | None = None) -> bytes:
    """An .npz whose 'inputs' member inflates to ``inflated`` bytes but whose central
    directory declares ``declared`` (the header inside claims ``header_shape``, default the
    real size)."""
    count = inflated // 4
    raw = io.BytesIO()
    with zipfile.ZipFile(raw, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        zf.writestr("targets.npy", _npy(np.zeros(4, dtype=np.int64)))
        zf.writestr("inputs.npy", npy_header(header_shape or (count,)) + b"\0" * (count * 4))
    data = bytearray(raw.getvalue())
    # patch the uncompressed size of 'inputs.npy' in its central directory entry (offset 24)
    at = next(m.start() for m in re.finditer(b"PK\x01\x02", data)
              if data[m.start() + 46:m.start() + 56] == b"inputs.npy")
    data[at + 24:at + 28] = struct.pack("<I", declared)
    return bytes(data)


def many_members_zip(n: int) -> bytes:
    raw = io.BytesIO()
    with zipfile.ZipFile(raw, "w", compression=zipfile.ZIP_STORED) as zf:
        zf.writestr("inputs.npy", _npy(np.zeros((4, 2), dtype=np.float32)))
        zf.writestr("targets.npy", _npy(np.zeros(4, dtype=np.int64)))
        for i in range(n):
            zf.writestr(f"m{i}", b"")
    return raw.getvalue()


def wide_csv(columns: int) -> bytes:
    """A header of ``columns`` names and one row."""
    header = ",".join([*(f"c{i}" for i in range(columns - 1)), "t"]) + "\n"
    return (header + ",".join("1" for _ in range(columns)) + "\n").encode()


def many_cells_csv(rows: int, columns: int) -> bytes:
    header = ",".join([*(f"c{i}" for i in range(columns - 1)), "t"])
    row = ",".join("1" for _ in range(columns))
    return (header + "\n" + "\n".join(row for _ in range(rows)) + "\n").encode()


def _npy(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, arr)
    return buf.getvalue()
