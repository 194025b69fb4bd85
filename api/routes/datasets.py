"""/v1/datasets: upload inline JSON datasets and read their descriptions."""
from __future__ import annotations

import numpy as np
from fastapi import APIRouter, HTTPException, status

from api.deps import SessionDep
from api.schemas.datasets import DatasetCreate, DatasetList, DatasetOut
from store.repositories import datasets

router = APIRouter(prefix="/datasets", tags=["datasets"])


@router.post("", status_code=status.HTTP_201_CREATED, response_model=DatasetOut)
def create_dataset(body: DatasetCreate, session: SessionDep) -> DatasetOut:
    targets = np.asarray(body.targets, dtype=np.int64)
    ds = datasets.create(
        session, name=body.name, inputs=body.inputs, targets=targets, task=body.task
    )
    return DatasetOut.model_validate(ds)


@router.get("", response_model=DatasetList)
def list_datasets(session: SessionDep) -> DatasetList:
    return DatasetList(items=[DatasetOut.model_validate(d) for d in datasets.list_all(session)])


@router.get("/{dataset_id}", response_model=DatasetOut)
def get_dataset(dataset_id: str, session: SessionDep) -> DatasetOut:
    ds = datasets.get(session, dataset_id=dataset_id)
    if ds is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"dataset {dataset_id} not found")
    return DatasetOut.model_validate(ds)
