"""/v1/datasets: inline JSON, file uploads (.npz, .npy, .csv) and built-in sample sets;
descriptions and a preview. Decoding and limits are ``ingest``'s; this module maps its
errors to the request fields they are about."""
from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

import numpy as np
from fastapi import APIRouter, Depends, File, Form, HTTPException, Request, Response, UploadFile, status
from fastapi.exceptions import RequestValidationError

from api.auth import OwnerDep
from api.deps import SessionDep, SettingsDep
from api.errors import FieldError
from api.idempotency import IdempotencyDep, KeyHeader, keyed
from api.schemas.datasets import BuiltinCreate, DatasetCreate, DatasetList, DatasetOut, DatasetPreview
from config.settings import Settings
from ingest import IngestError, builtin, files, limits
from ingest.heads import as_heads
from ingest.limits import FileLimits
from store import storage
from store.repositories import datasets, jobs

router = APIRouter(prefix="/datasets", tags=["datasets"])


def _out(ds) -> DatasetOut:
    return DatasetOut.from_row(ds, datasets.targets_info(ds))


def _store(session, settings: Settings, *, owner, name, inputs, targets, task, source, loc) -> DatasetOut:
    try:
        limits.check(inputs, as_heads(targets), max_bytes=settings.max_dataset_bytes,
                     max_samples=settings.max_dataset_samples)
    except IngestError as exc:
        raise FieldError(loc, str(exc)) from exc
    left = storage.quota_left(session, owner=owner, quota=settings.max_storage_bytes_per_owner)
    adding = inputs.nbytes + sum(t.nbytes for t in as_heads(targets).values())
    if left is not None and adding > left:
        raise FieldError(loc, f"the dataset is {adding} bytes but the owner's storage quota "
                              f"max_storage_bytes_per_owner has {left} left (delete datasets or jobs)", 413)
    ds = datasets.create(session, name=name, inputs=inputs, targets=targets, task=task, source=source, owner=owner)
    return _out(ds)


@router.post("", status_code=status.HTTP_201_CREATED, response_model=DatasetOut)
def create_dataset(body: DatasetCreate, session: SessionDep, settings: SettingsDep, owner: OwnerDep,
                   idempotent: IdempotencyDep) -> DatasetOut:
    idempotent.replay(session)
    out = _store(session, settings, owner=owner, name=body.name, inputs=body.inputs, targets=body.targets,
                 task=body.task, source="inline", loc=["body", "inputs"])
    idempotent.remember(session, status.HTTP_201_CREATED, out)
    return out


@router.post("/builtin", status_code=status.HTTP_201_CREATED, response_model=DatasetOut)
def create_builtin(body: BuiltinCreate, session: SessionDep, settings: SettingsDep, owner: OwnerDep,
                   idempotent: IdempotencyDep) -> DatasetOut:
    idempotent.replay(session)
    x, y = builtin.load(body.builtin)
    if body.limit:
        x, y = x[:body.limit], y[:body.limit]
    out = _store(session, settings, owner=owner, name=body.name or body.builtin, inputs=x, targets=y,
                 task=builtin.TASKS[body.builtin], source=f"builtin:{body.builtin}", loc=["body", "builtin"])
    idempotent.remember(session, status.HTTP_201_CREATED, out)
    return out


UPLOAD_FIELDS = frozenset({"file", "name", "task", "targets", "target_columns"})


async def _known_form_fields(request: Request) -> None:
    """A form field the upload does not take (``owner``, ``id``, a typo) is a 422, as an
    unknown key of a JSON body is, never silently dropped."""
    form = await request.form()
    unknown = sorted(set(form.keys()) - UPLOAD_FIELDS)
    if unknown:
        raise RequestValidationError([
            {"loc": ["body", k], "msg": f"unknown field; the upload takes {', '.join(sorted(UPLOAD_FIELDS))}",
             "type": "extra_forbidden"} for k in unknown[:20]])


def file_limits(settings: Settings) -> FileLimits:
    return FileLimits(max_bytes=min(settings.max_upload_inflated_bytes, settings.max_dataset_bytes),
                      limit_name="max_upload_inflated_bytes" if settings.max_upload_inflated_bytes
                      <= settings.max_dataset_bytes else "max_dataset_bytes",
                      max_csv_rows=settings.max_csv_rows, max_csv_columns=settings.max_csv_columns,
                      max_csv_cells=settings.max_csv_cells)


@router.post("/upload", status_code=status.HTTP_201_CREATED, response_model=DatasetOut,
             dependencies=[Depends(_known_form_fields)])
def upload_dataset(
    request: Request, session: SessionDep, settings: SettingsDep, owner: OwnerDep,
    file: Annotated[UploadFile, File(description=".npz (inputs, targets or targets.<head>), .npy or .csv")],
    name: Annotated[str, Form(min_length=1, max_length=200)],
    task: Annotated[str, Form(description="classification or regression")] = "classification",
    targets: Annotated[UploadFile | None, File(description=".npy targets beside an .npy of inputs")] = None,
    target_columns: Annotated[str, Form(description="comma-separated CSV target columns")] = "",
    key: KeyHeader = None,
) -> DatasetOut:
    """The upload is spooled to disk by the server and parsed from there, one copy at a time."""
    idempotent = keyed(request, owner, settings, key, _form_bytes((name, task, target_columns), (file, targets)))
    idempotent.replay(session)
    if task not in ("classification", "regression"):
        raise FieldError(["body", "task"], "must be 'classification' or 'regression'")
    filename = file.filename or ""
    try:
        limits.check_file_size(file.size, max_bytes=settings.max_dataset_bytes)
        if targets is not None:
            limits.check_file_size(targets.size, max_bytes=settings.max_dataset_bytes, field="targets")
        inputs, heads = files.read_upload(
            filename, file.file, task=task, targets=targets.file if targets is not None else None,
            target_columns=[c.strip() for c in target_columns.split(",") if c.strip()], limits=file_limits(settings))
    except IngestError as exc:
        raise FieldError(["body", exc.field or "file"], str(exc)) from exc
    out = _store(session, settings, owner=owner, name=name, inputs=inputs, targets=heads, task=task,
                 source=f"upload:{filename.lower().rsplit('.', 1)[-1]}", loc=["body", "file"])
    idempotent.remember(session, status.HTTP_201_CREATED, out)
    return out


def _form_bytes(fields: tuple, uploads: tuple) -> Iterator[bytes]:
    """The upload's form values and files as bytes for its fingerprint (each length-prefixed, the
    files read from their spool a MiB at a time and rewound)."""
    for value in fields:
        data = value.encode()
        yield len(data).to_bytes(8, "little") + data
    for up in uploads:
        if up is None:
            yield b"\xff" * 8
            continue
        name = (up.filename or "").encode()
        yield len(name).to_bytes(8, "little") + name
        up.file.seek(0)
        while chunk := up.file.read(1 << 20):
            yield chunk
        up.file.seek(0)
        yield b"\0" * 8


@router.get("", response_model=DatasetList)
def list_datasets(session: SessionDep, owner: OwnerDep) -> DatasetList:
    return DatasetList(items=[_out(d) for d in datasets.list_all(session, owner=owner)])


def _get_or_404(session, dataset_id: str, owner: str):
    ds = datasets.get(session, dataset_id=dataset_id, owner=owner)
    if ds is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"dataset {dataset_id} not found")
    return ds


@router.get("/{dataset_id}", response_model=DatasetOut)
def get_dataset(dataset_id: str, session: SessionDep, owner: OwnerDep) -> DatasetOut:
    return _out(_get_or_404(session, dataset_id, owner))


@router.delete("/{dataset_id}", status_code=status.HTTP_204_NO_CONTENT, response_class=Response)
def delete_dataset(dataset_id: str, session: SessionDep, owner: OwnerDep) -> Response:
    """Delete a dataset's data; 409 while a queued or running job trains or validates on it."""
    _get_or_404(session, dataset_id, owner)
    using = jobs.using_dataset(session, dataset_id=dataset_id)
    if using:
        raise FieldError(["path", "dataset_id"], f"dataset {dataset_id} is used by queued or running jobs: "
                                                 f"{', '.join(using)}; cancel or delete them first", 409)
    datasets.delete(session, dataset_id=dataset_id)
    session.commit()
    storage.reclaim(session)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/{dataset_id}/preview", response_model=DatasetPreview)
def preview_dataset(dataset_id: str, session: SessionDep, owner: OwnerDep, rows: int = 5) -> DatasetPreview:
    """Shapes, dtypes, the first ``rows`` samples, a class histogram per classification head
    and min/max/mean/std per regression head."""
    ds = _get_or_404(session, dataset_id, owner)
    info = datasets.targets_info(ds)
    k = max(0, min(rows, 50))
    x, heads = datasets.load_head(session, dataset_id=dataset_id, rows=k)  # only the shards of k rows
    hist, stats = {}, {}
    for h, y in heads.items():
        if info.get(h, {}).get("task") == "classification":
            hist[h] = np.bincount(y.astype(np.int64).ravel()).tolist()
        elif y.size:
            stats[h] = {"min": float(y.min()), "max": float(y.max()), "mean": float(y.mean()), "std": float(y.std())}
    return DatasetPreview(id=ds.id, num_samples=ds.num_samples, input_shape=ds.input_shape,
                          input_dtype=ds.input_dtype, inputs=x[:k].tolist(),
                          targets={h: y[:k].tolist() for h, y in heads.items()}, histograms=hist, statistics=stats)
