"""/v1/datasets/uploads: resumable chunked dataset uploads, for files too large for one
request. Create an upload (its size and part size), PUT its parts in any order, each with
its SHA-256 in ``X-Part-SHA256`` (a part sent again replaces itself), GET it to see which
parts arrived (an interrupted client sends only the rest), then POST ``complete``: the parts
are checked, the file is read where it lies (``ingest.streamed``: the same checks as a
one-request upload) into a sharded dataset, and the parts are dropped. Completing again
answers the same dataset. Each part is one chunk of the blob ``uploads/<id>``, so the API
holds at most a part (and one shard being written) in memory, whatever the file's size."""
from __future__ import annotations

import hashlib
import math

from fastapi import APIRouter, Header, HTTPException, Request, status
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from sqlalchemy import select

from api.auth import OwnerDep
from api.deps import SessionDep, SettingsDep
from api.errors import FieldError
from api.schemas.datasets import DatasetOut
from api.schemas.uploads import PartOut, UploadComplete, UploadCreate, UploadOut
from ingest import IngestError, streamed
from store import storage
from store.blobs import BlobError, open_blobs
from store.models import DatasetUpload, new_id
from store.repositories import datasets

router = APIRouter(prefix="/datasets/uploads", tags=["datasets"])


def _key(upload_id: str) -> str:
    return f"uploads/{upload_id}"


def _out(session, up: DatasetUpload, settings) -> UploadOut:
    received = [] if up.dataset_id else sorted(open_blobs(session, settings).chunk_sums(_key(up.id)))
    return UploadOut(id=up.id, name=up.name, filename=up.filename, size_bytes=up.size_bytes, part_bytes=up.part_bytes,
                     parts=up.parts, received=received if not up.dataset_id else list(range(up.parts)),
                     missing=0 if up.dataset_id else up.parts - len(received), complete=up.dataset_id is not None,
                     dataset_id=up.dataset_id, created_at=up.created_at, upload_url=f"/v1/datasets/uploads/{up.id}")


def _get_or_404(session, upload_id: str, owner: str, *, lock: bool = False) -> DatasetUpload:
    query = select(DatasetUpload).where(DatasetUpload.id == upload_id)
    up = session.scalars(query.with_for_update() if lock else query).one_or_none()
    if up is None or up.owner != owner:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"upload {upload_id} not found")
    return up


@router.post("", status_code=status.HTTP_201_CREATED, response_model=UploadOut)
def create_upload(body: UploadCreate, session: SessionDep, settings: SettingsDep, owner: OwnerDep) -> UploadOut:
    """Start an upload; the owner's storage quota must have room for the whole file."""
    try:
        streamed.kind_of(body.filename)
    except IngestError as exc:
        raise FieldError(["body", "filename"], str(exc)) from exc
    if body.filename.lower().endswith(".csv") and not body.target_columns:
        raise FieldError(["body", "target_columns"], "a .csv upload names its target columns")
    if body.size_bytes > settings.max_upload_bytes:
        raise FieldError(["body", "size_bytes"], f"{body.size_bytes} bytes is over the limit max_upload_bytes "
                                                 f"({settings.max_upload_bytes})", 413)
    part_bytes = body.part_bytes or settings.max_upload_part_bytes
    if part_bytes > settings.max_upload_part_bytes:
        raise FieldError(["body", "part_bytes"], f"parts may be at most max_upload_part_bytes "
                                                 f"({settings.max_upload_part_bytes}) bytes")
    left = storage.quota_left(session, owner=owner, quota=settings.max_storage_bytes_per_owner)
    if left is not None and body.size_bytes > left:
        raise FieldError(["body", "size_bytes"], f"the upload needs {body.size_bytes} bytes but the owner's storage "
                         f"quota max_storage_bytes_per_owner ({settings.max_storage_bytes_per_owner}) has {left} "
                         "left (delete datasets or jobs to free space)", 413)
    up = DatasetUpload(id=new_id(), owner=owner, name=body.name, filename=body.filename, size_bytes=body.size_bytes,
                       part_bytes=part_bytes, parts=math.ceil(body.size_bytes / part_bytes), sha256=body.sha256,
                       options={"task": body.task, "target_columns": body.target_columns})
    session.add(up)
    session.flush()
    open_blobs(session, settings).create(_key(up.id), chunk_bytes=part_bytes, upload_id=up.id)
    return _out(session, up, settings)


@router.get("/{upload_id}", response_model=UploadOut)
def get_upload(upload_id: str, session: SessionDep, settings: SettingsDep, owner: OwnerDep) -> UploadOut:
    return _out(session, _get_or_404(session, upload_id, owner), settings)


@router.put("/{upload_id}/parts/{part}", response_model=PartOut,
            openapi_extra={"requestBody": {"content": {"application/octet-stream": {}}, "required": True}})
async def put_part(upload_id: str, part: int, request: Request, session: SessionDep, settings: SettingsDep,
                   owner: OwnerDep, x_part_sha256: str = Header(..., description="the part's SHA-256, hex")
                   ) -> PartOut:
    """Store part ``part`` (0-based) of the file; its length and SHA-256 are checked."""
    data = await request.body()
    return await run_in_threadpool(_put_part, session, settings, owner, upload_id, part, data,
                                   x_part_sha256.strip().lower())


def _put_part(session, settings, owner: str, upload_id: str, part: int, data: bytes, sha256: str) -> PartOut:
    up = _get_or_404(session, upload_id, owner)
    if up.dataset_id is not None:
        raise FieldError(["path", "upload_id"], f"upload {upload_id} is complete; it takes no more parts", 409)
    if not 0 <= part < up.parts:
        raise FieldError(["path", "part"], f"part must be 0 to {up.parts - 1} for this upload")
    want = up.part_bytes if part < up.parts - 1 else up.size_bytes - up.part_bytes * (up.parts - 1)
    if len(data) != want:
        raise FieldError(["body"], f"part {part} must be {want} bytes; the body has {len(data)}")
    actual = hashlib.sha256(data).hexdigest()
    if actual != sha256:
        raise FieldError(["header", "x-part-sha256"], f"part {part} has SHA-256 {actual}, not the {sha256[:64]!r} "
                                                      "the header says; send it again")
    blobs = open_blobs(session, settings)
    blobs.write_chunk(_key(up.id), part, data)
    received = len(blobs.chunk_sums(_key(up.id)))
    return PartOut(part=part, size_bytes=len(data), sha256=actual, received=received, missing=up.parts - received)


@router.post("/{upload_id}/complete", response_model=UploadComplete,
             responses={201: {"model": UploadComplete}})
def complete_upload(upload_id: str, session: SessionDep, settings: SettingsDep, owner: OwnerDep) -> JSONResponse:
    """Assemble, check and store the dataset (201); a completed upload answers its dataset (200)."""
    up = _get_or_404(session, upload_id, owner, lock=True)
    if up.dataset_id is not None:
        ds = datasets.get(session, dataset_id=up.dataset_id)
        if ds is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"upload {upload_id}'s dataset was deleted")
        return _completed(ds, up, "already complete", status.HTTP_200_OK)
    blobs = open_blobs(session, settings)
    key = _key(up.id)
    missing = [n for n in range(up.parts) if n not in blobs.chunk_sums(key)]
    if missing:
        raise FieldError(["path", "upload_id"], f"upload {upload_id} lacks {len(missing)} of {up.parts} parts: "
                                                f"{', '.join(map(str, missing[:50]))}", 409)
    try:
        blob = blobs.seal(key, chunks=up.parts, size=up.size_bytes)
    except BlobError as exc:
        raise FieldError(["path", "upload_id"], str(exc), 409) from exc
    if up.sha256 and blob.sha256 != up.sha256:
        raise FieldError(["body", "sha256"], f"the assembled file has SHA-256 {blob.sha256}, not {up.sha256} as "
                                             "declared; the upload is kept: re-send the wrong parts")
    ds_id = new_id()

    def sink(name, dtype, shape, pieces):
        return datasets.put_array(blobs, datasets.array_key(ds_id, name), pieces, dtype=dtype, shape=shape)

    options = up.options or {}
    try:
        layout_arrays, info = streamed.read_into(
            up.filename, blobs.open(key), sink, task=options.get("task", "classification"),
            target_columns=list(options.get("target_columns", [])), max_bytes=settings.max_dataset_bytes,
            max_samples=settings.max_dataset_samples)
    except IngestError as exc:
        session.rollback()  # nothing of the half-read dataset stays; the upload's parts do
        raise FieldError(["body", exc.field or "file"], str(exc)) from exc
    ds = datasets.add_sharded(session, dataset_id=ds_id, owner=owner, name=up.name, info=info,
                              layout={"format": datasets.SHARDS, "arrays": layout_arrays},
                              source=f"upload:{up.filename.lower().rsplit('.', 1)[-1]}")
    up.dataset_id, up.sha256 = ds.id, blob.sha256
    blobs.delete(key)  # the file's parts: the dataset's shards hold it now
    session.flush()
    return _completed(ds, up, "created", status.HTTP_201_CREATED)


def _completed(ds, up: DatasetUpload, state: str, code: int) -> JSONResponse:
    body = UploadComplete(upload_id=up.id, dataset=DatasetOut.from_row(ds, datasets.targets_info(ds)),
                          sha256=up.sha256 or "", status=state)
    return JSONResponse(body.model_dump(mode="json"), status_code=code)
