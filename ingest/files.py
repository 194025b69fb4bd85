"""Uploaded files: .npz (``inputs`` or ``x``; ``targets``/``y`` or ``targets.<head>``), a
pair of .npy files, or a .csv with a header row and named target columns. Never unpickles."""
from __future__ import annotations

import csv
import io
import zipfile
from typing import BinaryIO

import numpy as np

from ingest.arrays import integral, to_float_array, to_targets
from ingest.errors import IngestError
from ingest.heads import DEFAULT_HEAD

FORMATS = ("npz", "npy", "csv")


def read_upload(filename: str, file: BinaryIO, *, task: str, targets: BinaryIO | None = None,
                target_columns: list[str] = ()) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """(float32 inputs, head -> targets) from an uploaded file, chosen by its extension."""
    kind = filename.lower().rsplit(".", 1)[-1] if "." in filename else ""
    if kind == "npz":
        x, heads = read_npz(file)
    elif kind == "npy":
        if targets is None:
            raise IngestError("an .npy of inputs needs an .npy of targets beside it", field="targets")
        x, heads = read_npy(file), {DEFAULT_HEAD: read_npy(targets, field="targets")}
    elif kind == "csv":
        x, heads = read_csv(file, list(target_columns))
    else:
        raise IngestError(f"must be a {', '.join('.' + f for f in FORMATS)} file (by its file name)")
    inputs = to_float_array(x)
    ys = {h: to_targets(integral(y) if task == "classification" else y, task, inputs.shape[0])
          for h, y in heads.items()}
    return inputs, ys


def read_npz(f: BinaryIO) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    try:
        with np.load(f, allow_pickle=False) as npz:
            files = set(npz.files)
            x_key = "inputs" if "inputs" in files else "x" if "x" in files else None
            if x_key is None:
                raise IngestError(f"the .npz needs an 'inputs' (or 'x') array; it has {', '.join(sorted(files))[:200]}")
            heads = {k.split(".", 1)[1]: npz[k] for k in files if k.startswith("targets.")}
            for k in ("targets", "y"):
                if k in files:
                    heads[DEFAULT_HEAD] = npz[k]
            if not heads:
                raise IngestError("the .npz needs a 'targets' (or 'y') array, or 'targets.<head>' arrays")
            return npz[x_key], heads
    except (ValueError, OSError, zipfile.BadZipFile, EOFError, KeyError) as exc:
        if isinstance(exc, IngestError):
            raise
        raise IngestError(f"is not a readable .npz file without pickled objects ({exc})"[:300]) from exc


def read_npy(f: BinaryIO, field: str | None = None) -> np.ndarray:
    try:
        return np.load(f, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise IngestError(f"is not a readable .npy file without pickled objects ({exc})"[:300], field) from exc


def read_csv(f: BinaryIO, target_columns: list[str]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    text = io.TextIOWrapper(f, encoding="utf-8", errors="strict", newline="")
    try:
        reader = csv.reader(text)
        header = next(reader, None)
        if not header:
            raise IngestError("the .csv is empty; it needs a header row naming the columns")
        missing = [c for c in target_columns if c not in header]
        if missing or not target_columns:
            raise IngestError(f"name target columns of the header ({', '.join(header)[:200]}); "
                              f"missing: {', '.join(missing)[:200]}", field="target_columns")
        rows = [r for r in reader if r]
        data = np.array(rows, dtype=np.float64) if rows else np.zeros((0, len(header)))
    except UnicodeDecodeError as exc:
        raise IngestError("the .csv is not UTF-8 text") from exc
    except ValueError as exc:
        if isinstance(exc, IngestError):
            raise
        raise IngestError(f"the .csv must hold numbers only, with as many fields per row as the header "
                          f"({exc})"[:300]) from exc
    idx = [header.index(c) for c in target_columns]
    x = np.delete(data, idx, axis=1)
    return x, {c: data[:, header.index(c)] for c in target_columns}
