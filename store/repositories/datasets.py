"""Datasets: arrays stored as one compressed .npz blob."""
from __future__ import annotations

import io

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session, undefer

from store.models import Dataset


def encode_arrays(inputs: np.ndarray, targets: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.savez_compressed(buf, inputs=inputs, targets=targets)
    return buf.getvalue()


def decode_arrays(blob: bytes) -> tuple[np.ndarray, np.ndarray]:
    with np.load(io.BytesIO(blob), allow_pickle=False) as npz:
        return npz["inputs"], npz["targets"]


def create(
    session: Session, *, name: str, inputs: np.ndarray, targets: np.ndarray, task: str, owner: str = "local"
) -> Dataset:
    num_classes = int(targets.max()) + 1 if task == "classification" and targets.size else None
    blob = encode_arrays(inputs, targets)
    ds = Dataset(
        owner=owner,
        name=name,
        task=task,
        num_samples=int(inputs.shape[0]),
        input_shape=list(inputs.shape[1:]),
        input_dtype=str(inputs.dtype),
        num_classes=num_classes,
        size_bytes=len(blob),
        data=blob,
    )
    session.add(ds)
    session.flush()
    return ds


def get(session: Session, *, dataset_id: str) -> Dataset | None:
    return session.get(Dataset, dataset_id)


def load_arrays(session: Session, *, dataset_id: str) -> tuple[np.ndarray, np.ndarray]:
    ds = session.scalars(
        select(Dataset).where(Dataset.id == dataset_id).options(undefer(Dataset.data))
    ).one()
    return decode_arrays(ds.data)


def list_all(session: Session, *, limit: int = 100) -> list[Dataset]:
    return list(session.scalars(select(Dataset).order_by(Dataset.created_at.desc()).limit(limit)))
