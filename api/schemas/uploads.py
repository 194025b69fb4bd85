"""Resumable chunked dataset uploads: what creating one takes and what its state shows."""
from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from api.schemas import UTCDateTime
from api.schemas.datasets import DatasetOut


class UploadCreate(BaseModel):
    """POST /v1/datasets/uploads: the file to come (its name says its format: .npz or .csv),
    its size, the part size (every part but the last exactly this long) and what the finished
    dataset is: name, task and, for a .csv, its target columns. ``sha256`` of the whole file,
    if given, is checked at complete."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200)
    filename: str = Field(min_length=1, max_length=200)
    size_bytes: int = Field(ge=1)
    part_bytes: int | None = Field(None, ge=1024, description="default: the server's max_upload_part_bytes")
    task: Literal["classification", "regression"] = "classification"
    target_columns: list[str] = Field(default_factory=list, max_length=64)
    sha256: str | None = Field(None, pattern=r"^[0-9a-f]{64}$")


class UploadOut(BaseModel):
    """An upload's state: ``received`` lists the parts that arrived (a client resumes by
    sending the others); ``dataset`` is set once it was completed."""

    id: str
    name: str
    filename: str
    size_bytes: int
    part_bytes: int
    parts: int
    received: list[int]
    missing: int
    complete: bool
    dataset_id: str | None
    created_at: UTCDateTime
    upload_url: str = Field(description="PUT a part to upload_url/parts/{n} with header X-Part-SHA256")


class PartOut(BaseModel):
    part: int
    size_bytes: int
    sha256: str
    received: int
    missing: int


class UploadComplete(BaseModel):
    upload_id: str
    dataset: DatasetOut
    sha256: str
    status: Literal["created", "already complete"]
