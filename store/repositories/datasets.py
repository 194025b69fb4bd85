"""Datasets: arrays stored as one compressed .npz blob (``inputs`` plus ``targets`` for a
single head or ``targets.<head>`` per head), with per-head facts in ``targets_info``."""
from __future__ import annotations

import io
from typing import Any

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session, undefer

from store.models import Dataset

DEFAULT_HEAD = "output"


def encode_arrays(inputs: np.ndarray, targets: np.ndarray | dict[str, np.ndarray]) -> bytes:
    buf = io.BytesIO()
    if isinstance(targets, dict):
        np.savez_compressed(buf, inputs=inputs, **{f"targets.{k}": v for k, v in targets.items()})
    else:
        np.savez_compressed(buf, inputs=inputs, targets=targets)
    return buf.getvalue()


def decode_all(blob: bytes) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """(inputs, head -> targets); a single-head blob's head is ``output``."""
    with np.load(io.BytesIO(blob), allow_pickle=False) as npz:
        heads = {k.split(".", 1)[1]: npz[k] for k in npz.files if k.startswith("targets.")}
        if "targets" in npz.files:
            heads[DEFAULT_HEAD] = npz["targets"]
        return npz["inputs"], heads


def decode_arrays(blob: bytes) -> tuple[np.ndarray, np.ndarray]:
    inputs, heads = decode_all(blob)
    return inputs, next(iter(heads.values()))


def head_info(task: str, y: np.ndarray) -> dict[str, Any]:
    info: dict[str, Any] = {"task": task, "shape": list(y.shape[1:]), "dtype": str(y.dtype), "num_classes": None}
    if task == "classification" and y.size:
        info["num_classes"] = int(y.max()) + 1
    return info


def create(
    session: Session, *, name: str, inputs: np.ndarray, targets: np.ndarray | dict[str, np.ndarray],
    task: str | dict[str, str], source: str | None = None, owner: str = "local",
) -> Dataset:
    """Store a dataset. ``targets`` is one array or head name -> array; ``task`` is one task
    for every head or head name -> 'classification' | 'regression'."""
    heads = targets if isinstance(targets, dict) else {DEFAULT_HEAD: targets}
    tasks = task if isinstance(task, dict) else {h: task for h in heads}
    info = {h: head_info(tasks[h], y) for h, y in heads.items()}
    first = next(iter(info.values()))
    blob = encode_arrays(inputs, targets)
    ds = Dataset(
        owner=owner,
        name=name,
        task=first["task"] if len({i["task"] for i in info.values()}) == 1 else "multitask",
        num_samples=int(inputs.shape[0]),
        input_shape=list(inputs.shape[1:]),
        input_dtype=str(inputs.dtype),
        num_classes=first["num_classes"] if len(info) == 1 else None,
        targets_info=info,
        source=source,
        size_bytes=len(blob),
        data=blob,
    )
    session.add(ds)
    session.flush()
    return ds


def targets_info(ds: Dataset) -> dict[str, dict[str, Any]]:
    """Per-head facts, also for rows stored before targets_info existed."""
    if ds.targets_info:
        return ds.targets_info
    return {DEFAULT_HEAD: {"task": ds.task, "shape": [], "dtype": "int64", "num_classes": ds.num_classes}}


def get(session: Session, *, dataset_id: str, owner: str | None = None) -> Dataset | None:
    """The dataset, or None if it does not exist or (given ``owner``) belongs to another owner."""
    ds = session.get(Dataset, dataset_id)
    return ds if ds is not None and owner in (None, ds.owner) else None


def load_blob(session: Session, *, dataset_id: str) -> bytes:
    ds = session.scalars(
        select(Dataset).where(Dataset.id == dataset_id).options(undefer(Dataset.data))
    ).one()
    return ds.data


def load_arrays(session: Session, *, dataset_id: str) -> tuple[np.ndarray, np.ndarray]:
    return decode_arrays(load_blob(session, dataset_id=dataset_id))


def load_all(session: Session, *, dataset_id: str) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    return decode_all(load_blob(session, dataset_id=dataset_id))


def list_all(session: Session, *, owner: str, limit: int = 100) -> list[Dataset]:
    query = select(Dataset).where(Dataset.owner == owner).order_by(Dataset.created_at.desc()).limit(limit)
    return list(session.scalars(query))
