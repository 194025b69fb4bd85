"""Datasets: the arrays as one blob (``ingest.codec``) with the per-head facts the planner
needs beside it, so that submitting a job never loads the data."""
from __future__ import annotations

from typing import Any

import numpy as np
from sqlalchemy import select, update
from sqlalchemy.orm import Session, undefer

from ingest import DEFAULT_HEAD, DatasetFacts, codec, head_info
from ingest.heads import as_heads
from store.models import Dataset, utcnow


def create(
    session: Session, *, name: str, inputs: np.ndarray, targets: np.ndarray | dict[str, np.ndarray],
    task: str | dict[str, str], source: str | None = None, owner: str = "local",
) -> Dataset:
    """Store a dataset. ``targets`` is one array (the default head) or head name -> array;
    ``task`` is one task for every head or head name -> 'classification' | 'regression'."""
    heads = as_heads(targets)
    tasks = task if isinstance(task, dict) else {h: task for h in heads}
    info = {h: head_info(tasks[h], y) for h, y in heads.items()}
    first = next(iter(info.values()))
    blob = codec.encode(inputs, heads)
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


def facts(ds: Dataset) -> DatasetFacts:
    return DatasetFacts(input_shape=list(ds.input_shape), heads=targets_info(ds), num_samples=ds.num_samples)


def get(session: Session, *, dataset_id: str, owner: str | None = None) -> Dataset | None:
    """The dataset, or None if it does not exist, was deleted or (given ``owner``) belongs to
    another owner."""
    ds = session.get(Dataset, dataset_id)
    return ds if ds is not None and ds.deleted_at is None and owner in (None, ds.owner) else None


def delete(session: Session, *, dataset_id: str) -> None:
    """Drop the dataset's data; the row stays (finished jobs name it) but reads as gone."""
    session.execute(update(Dataset).where(Dataset.id == dataset_id)
                    .values(data=b"", size_bytes=0, deleted_at=utcnow()))


def load_all(session: Session, *, dataset_id: str) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """(inputs, head -> targets)."""
    ds = session.scalars(select(Dataset).where(Dataset.id == dataset_id).options(undefer(Dataset.data))).one()
    return codec.decode(ds.data)


def list_all(session: Session, *, owner: str, limit: int = 100) -> list[Dataset]:
    query = (select(Dataset).where(Dataset.owner == owner, Dataset.deleted_at.is_(None))
             .order_by(Dataset.created_at.desc()).limit(limit))
    return list(session.scalars(query))
