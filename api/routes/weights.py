"""/v1/weights: initial weights a job may start from (``training.init.weights_id``),
uploaded as safetensors and checked as untrusted input before they are stored."""
from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, File, Form, HTTPException, Response, UploadFile, status
from pydantic import BaseModel

from api.auth import OwnerDep
from api.deps import SessionDep, SettingsDep
from api.errors import FieldError
from api.schemas import UTCDateTime
from ingest import IngestError
from ingest.weights import check_safetensors
from store.repositories import weights

router = APIRouter(prefix="/weights", tags=["weights"])


class WeightsOut(BaseModel):
    id: str
    name: str
    tensors: dict[str, dict]
    size_bytes: int
    created_at: UTCDateTime


class WeightsList(BaseModel):
    items: list[WeightsOut]


def _out(row) -> WeightsOut:
    return WeightsOut(id=row.id, name=row.name, tensors=row.tensors, size_bytes=row.size_bytes,
                      created_at=row.created_at)


@router.post("", status_code=status.HTTP_201_CREATED, response_model=WeightsOut)
def upload_weights(session: SessionDep, settings: SettingsDep, owner: OwnerDep,
                   file: Annotated[UploadFile, File(description="a .safetensors file (state_dict keys)")],
                   name: Annotated[str | None, Form(min_length=1, max_length=200)] = None) -> WeightsOut:
    """Check and store a safetensors file: size cap, header, dtypes, shapes and data ranges."""
    limit = settings.max_request_bytes
    if (file.size or 0) > limit:
        raise FieldError(["body", "file"], f"the file is {file.size} bytes, over the limit max_request_bytes ({limit})")
    data = file.file.read(limit + 1)
    if len(data) > limit:
        raise FieldError(["body", "file"], f"the file is over the limit max_request_bytes ({limit})")
    try:
        tensors = check_safetensors(data, max_elements=settings.max_parameters)
    except IngestError as exc:
        raise FieldError(["body", "file"], str(exc)) from exc
    row = weights.create(session, owner=owner, name=name or file.filename or "weights", data=data, tensors=tensors)
    return _out(row)


@router.get("", response_model=WeightsList)
def list_weights(session: SessionDep, owner: OwnerDep) -> WeightsList:
    return WeightsList(items=[_out(w) for w in weights.list_all(session, owner=owner)])


def get_weights_or_404(session, weights_id: str, owner: str):
    row = weights.get(session, weights_id=weights_id, owner=owner)
    if row is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"weights {weights_id} not found")
    return row


@router.get("/{weights_id}", response_model=WeightsOut)
def get_weights(weights_id: str, session: SessionDep, owner: OwnerDep) -> WeightsOut:
    return _out(get_weights_or_404(session, weights_id, owner))


@router.delete("/{weights_id}", status_code=status.HTTP_204_NO_CONTENT, response_class=Response)
def delete_weights(weights_id: str, session: SessionDep, owner: OwnerDep) -> Response:
    get_weights_or_404(session, weights_id, owner)
    weights.delete(session, weights_id=weights_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
