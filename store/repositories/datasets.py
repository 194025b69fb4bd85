"""Datasets: the per-head facts the planner needs, so that submitting a job never loads the
data, and the arrays in the sharded layout: each array (``inputs``, ``targets.<head>``) its
raw C-order bytes as one blob of fixed-size chunks (the shards, ``store.blobs``), dtype kept
(uint8 images stay uint8), described by ``Dataset.layout``. Rows from before keep one .npz
(``ingest.codec``) in ``data`` and read the same through ``load_all``."""
from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import numpy as np
from sqlalchemy import select, update
from sqlalchemy.orm import Session, undefer

from ingest import DEFAULT_HEAD, DatasetFacts, codec, head_info
from ingest.heads import as_heads
from store.blobs import Blobs, open_blobs
from store.models import Blob, Dataset, new_id, utcnow

SHARDS = "shards.v1"
INPUTS = "inputs"


def array_name(head: str) -> str:
    return f"targets.{head}"


def array_key(dataset_id: str, name: str) -> str:
    return f"datasets/{dataset_id}/{name}"


def put_array(blobs: Blobs, key: str, pieces: Iterable[bytes] | np.ndarray, *, dtype: np.dtype | str,
              shape: list[int]) -> dict[str, Any]:
    """Store one array's raw bytes (an array, or its bytes in order) as blob ``key``; returns
    its layout entry."""
    dtype = np.dtype(dtype)
    if isinstance(pieces, np.ndarray):
        pieces = memoryview(np.ascontiguousarray(pieces)).cast("B")
    blob = blobs.put(key, pieces)
    if blob.size_bytes != math.prod(shape) * dtype.itemsize:
        raise ValueError(f"array {key} has {blob.size_bytes} bytes, not {shape} of {dtype}")
    return {"key": key, "dtype": dtype.str, "shape": list(shape), "size": blob.size_bytes, "sha256": blob.sha256,
            "chunk_bytes": blob.chunk_bytes}


def create(
    session: Session, *, name: str, inputs: np.ndarray, targets: np.ndarray | dict[str, np.ndarray],
    task: str | dict[str, str], source: str | None = None, owner: str = "local",
) -> Dataset:
    """Store a dataset. ``targets`` is one array (the default head) or head name -> array;
    ``task`` is one task for every head or head name -> 'classification' | 'regression'."""
    heads = as_heads(targets)
    tasks = task if isinstance(task, dict) else {h: task for h in heads}
    info = {h: head_info(tasks[h], y) for h, y in heads.items()}
    ds_id, blobs = new_id(), open_blobs(session)
    arrays = {INPUTS: inputs, **{array_name(h): y for h, y in heads.items()}}
    layout = {"format": SHARDS, "arrays": {
        name: put_array(blobs, array_key(ds_id, name), a, dtype=a.dtype, shape=list(a.shape))
        for name, a in arrays.items()}}
    return add_sharded(session, dataset_id=ds_id, owner=owner, name=name, info=info, layout=layout, source=source)


def add_sharded(session: Session, *, dataset_id: str, owner: str, name: str, info: dict[str, dict[str, Any]],
                layout: dict[str, Any], source: str | None) -> Dataset:
    """The dataset row for arrays already stored as blobs (``layout``), which it then owns."""
    first = next(iter(info.values()))
    inputs = layout["arrays"][INPUTS]
    ds = Dataset(
        id=dataset_id,
        owner=owner,
        name=name,
        task=first["task"] if len({i["task"] for i in info.values()}) == 1 else "multitask",
        num_samples=int(inputs["shape"][0]),
        input_shape=list(inputs["shape"][1:]),
        input_dtype=str(np.dtype(inputs["dtype"])),
        num_classes=first["num_classes"] if len(info) == 1 else None,
        targets_info=info,
        source=source,
        size_bytes=sum(a["size"] for a in layout["arrays"].values()),
        data=b"",
        layout=layout,
    )
    session.add(ds)
    session.flush()
    keys = [a["key"] for a in layout["arrays"].values()]
    session.execute(update(Blob).where(Blob.key.in_(keys)).values(dataset_id=dataset_id))
    return ds


def targets_info(ds: Dataset) -> dict[str, dict[str, Any]]:
    """Per-head facts, also for rows stored before targets_info existed."""
    if ds.targets_info:
        return ds.targets_info
    return {DEFAULT_HEAD: {"task": ds.task, "shape": [], "dtype": "int64", "num_classes": ds.num_classes}}


def facts(ds: Dataset) -> DatasetFacts:
    return DatasetFacts(input_shape=list(ds.input_shape), heads=targets_info(ds), num_samples=ds.num_samples)


def get(session: Session, *, dataset_id: str, owner: str | None = None) -> Dataset | None:
    """The dataset, or None if it does not exist, was deleted or (given ``owner``) belongs to
    another owner."""
    ds = session.get(Dataset, dataset_id)
    return ds if ds is not None and ds.deleted_at is None and owner in (None, ds.owner) else None


def delete(session: Session, *, dataset_id: str) -> None:
    """Drop the dataset's data; the row stays (finished jobs name it) but reads as gone."""
    open_blobs(session).delete_owned(dataset_id=dataset_id)
    session.execute(update(Dataset).where(Dataset.id == dataset_id)
                    .values(data=b"", size_bytes=0, deleted_at=utcnow()))


def load_all(session: Session, *, dataset_id: str) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """(inputs, head -> targets), whole in memory (workers read large datasets through
    ``worker.data``'s cache instead)."""
    ds = session.scalars(select(Dataset).where(Dataset.id == dataset_id).options(undefer(Dataset.data))).one()
    if ds.layout is None:
        return codec.decode(ds.data)
    blobs = open_blobs(session)
    arrays = {name: read_array(blobs, a) for name, a in ds.layout["arrays"].items()}
    return _split(arrays)


def load_head(session: Session, *, dataset_id: str, rows: int) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """The first ``rows`` inputs and every target (a preview): only the input shards those
    rows lie in are read."""
    ds = session.get(Dataset, dataset_id)
    if ds.layout is None:
        x, heads = load_all(session, dataset_id=dataset_id)
        return x[:rows], heads
    blobs = open_blobs(session)
    arrays = {name: read_array(blobs, a, rows=rows if name == INPUTS else None)
              for name, a in ds.layout["arrays"].items()}
    return _split(arrays)


def _split(arrays: dict[str, np.ndarray]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    heads = {name.split(".", 1)[1]: a for name, a in arrays.items() if name != INPUTS}
    return arrays[INPUTS], heads


def read_array(blobs: Blobs, entry: dict[str, Any], rows: int | None = None) -> np.ndarray:
    """One stored array (its first ``rows`` rows), assembled chunk by chunk into one buffer."""
    dtype, shape = np.dtype(entry["dtype"]), list(entry["shape"])
    if rows is not None:
        shape[0] = max(0, min(rows, shape[0]))
    out = np.empty(shape, dtype)
    view = memoryview(out.reshape(-1).view(np.uint8)) if out.size else memoryview(b"")
    offset, chunk = 0, entry["chunk_bytes"]
    for seq in range(math.ceil(len(view) / chunk) if len(view) else 0):
        data = blobs.read_chunk(entry["key"], seq)[:len(view) - offset]
        view[offset:offset + len(data)] = data
        offset += len(data)
    return out


def list_all(session: Session, *, owner: str, limit: int = 100) -> list[Dataset]:
    query = (select(Dataset).where(Dataset.owner == owner, Dataset.deleted_at.is_(None))
             .order_by(Dataset.created_at.desc()).limit(limit))
    return list(session.scalars(query))
