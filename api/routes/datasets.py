"""/v1/datasets: inline JSON, file uploads (.npz, .npy, .csv) and built-in sample sets;
descriptions and a preview."""
from __future__ import annotations

import csv
import io
import zipfile
from typing import Annotated, Any

import numpy as np
from fastapi import APIRouter, File, Form, HTTPException, UploadFile, status

from api.auth import OwnerDep
from api.deps import SessionDep, SettingsDep
from api.errors import FieldError
from api.schemas.datasets import (
    BuiltinCreate,
    DatasetCreate,
    DatasetList,
    DatasetOut,
    DatasetPreview,
    to_float_array,
    to_targets,
)
from store.repositories import datasets
from store.settings import Settings

router = APIRouter(prefix="/datasets", tags=["datasets"])
BUILTIN_TASK = {"digits": "classification", "iris": "classification", "wine": "classification",
                "breast_cancer": "classification", "diabetes": "regression"}


def _out(ds) -> DatasetOut:
    return DatasetOut.from_row(ds, datasets.targets_info(ds))


def _check_limits(settings: Settings, inputs: np.ndarray, targets: Any, loc: list) -> None:
    heads = targets if isinstance(targets, dict) else {"output": targets}
    total = inputs.nbytes + sum(t.nbytes for t in heads.values())
    if total > settings.max_dataset_bytes:
        raise FieldError(loc, f"the dataset is {total} bytes decoded, over the limit max_dataset_bytes "
                              f"({settings.max_dataset_bytes})", 422)
    if inputs.shape[0] > settings.max_dataset_samples:
        raise FieldError(loc, f"the dataset has {inputs.shape[0]} samples, over the limit max_dataset_samples "
                              f"({settings.max_dataset_samples})", 422)


def _store(session, settings, *, owner, name, inputs, targets, task, source, loc) -> DatasetOut:
    _check_limits(settings, inputs, targets, loc)
    ds = datasets.create(session, name=name, inputs=inputs, targets=targets, task=task, source=source,
                         owner=owner)
    return _out(ds)


@router.post("", status_code=status.HTTP_201_CREATED, response_model=DatasetOut)
def create_dataset(body: DatasetCreate, session: SessionDep, settings: SettingsDep, owner: OwnerDep) -> DatasetOut:
    return _store(session, settings, owner=owner, name=body.name, inputs=body.inputs, targets=body.targets, task=body.task,
                  source="inline", loc=["body", "inputs"])


def load_builtin(which: str) -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's sample sets: digits as 1x8x8 images in [0, 1]; the other tables with
    standardized features; diabetes' target as float32 (regression)."""
    from sklearn import datasets as sk

    bunch = getattr(sk, f"load_{which}")()
    x = bunch.data.astype(np.float32)
    if which == "digits":
        x = (x / 16.0).reshape(-1, 1, 8, 8)
    else:
        x = (x - x.mean(0)) / np.maximum(x.std(0), 1e-6)
    y = bunch.target.astype(np.float32 if BUILTIN_TASK[which] == "regression" else np.int64)
    return x.astype(np.float32), y


@router.post("/builtin", status_code=status.HTTP_201_CREATED, response_model=DatasetOut)
def create_builtin(body: BuiltinCreate, session: SessionDep, settings: SettingsDep, owner: OwnerDep) -> DatasetOut:
    x, y = load_builtin(body.builtin)
    if body.limit:
        x, y = x[:body.limit], y[:body.limit]
    return _store(session, settings, owner=owner, name=body.name or body.builtin, inputs=x, targets=y,
                  task=BUILTIN_TASK[body.builtin], source=f"builtin:{body.builtin}", loc=["body", "builtin"])


def _read_npz(f, loc: list) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    try:
        with np.load(f, allow_pickle=False) as npz:
            files = set(npz.files)
            x_key = "inputs" if "inputs" in files else "x" if "x" in files else None
            if x_key is None:
                raise FieldError(loc, f"the .npz needs an 'inputs' (or 'x') array; it has {', '.join(sorted(files))[:200]}")
            heads = {k.split(".", 1)[1]: npz[k] for k in files if k.startswith("targets.")}
            for k in ("targets", "y"):
                if k in files:
                    heads["output"] = npz[k]
            if not heads:
                raise FieldError(loc, "the .npz needs a 'targets' (or 'y') array, or 'targets.<head>' arrays")
            return npz[x_key], heads
    except (ValueError, OSError, zipfile.BadZipFile, EOFError, KeyError) as exc:
        raise FieldError(loc, f"is not a readable .npz file without pickled objects ({exc})"[:300]) from exc


def _read_npy(f, loc: list) -> np.ndarray:
    try:
        return np.load(f, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise FieldError(loc, f"is not a readable .npy file without pickled objects ({exc})"[:300]) from exc


def _read_csv(f, target_columns: list[str], loc: list) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    text = io.TextIOWrapper(f, encoding="utf-8", errors="strict", newline="")
    try:
        reader = csv.reader(text)
        header = next(reader, None)
        if not header:
            raise FieldError(loc, "the .csv is empty; it needs a header row naming the columns")
        missing = [c for c in target_columns if c not in header]
        if missing or not target_columns:
            raise FieldError(["body", "target_columns"], f"name target columns of the header "
                                                         f"({', '.join(header)[:200]}); missing: {', '.join(missing)[:200]}")
        rows = [r for r in reader if r]
        data = np.array(rows, dtype=np.float64) if rows else np.zeros((0, len(header)))
    except UnicodeDecodeError as exc:
        raise FieldError(loc, "the .csv is not UTF-8 text") from exc
    except ValueError as exc:
        raise FieldError(loc, f"the .csv must hold numbers only, with as many fields per row as the header ({exc})"[:300]) from exc
    idx = [header.index(c) for c in target_columns]
    x = np.delete(data, idx, axis=1)
    return x, {c: data[:, header.index(c)] for c in target_columns}


@router.post("/upload", status_code=status.HTTP_201_CREATED, response_model=DatasetOut)
def upload_dataset(
    session: SessionDep, settings: SettingsDep, owner: OwnerDep,
    file: Annotated[UploadFile, File(description=".npz (inputs, targets or targets.<head>), .npy or .csv")],
    name: Annotated[str, Form(min_length=1, max_length=200)],
    task: Annotated[str, Form(description="classification or regression")] = "classification",
    targets: Annotated[UploadFile | None, File(description=".npy targets beside an .npy of inputs")] = None,
    target_columns: Annotated[str, Form(description="comma-separated CSV target columns")] = "",
) -> DatasetOut:
    """The upload is spooled to disk by the server and parsed from there, one copy at a time."""
    loc = ["body", "file"]
    if task not in ("classification", "regression"):
        raise FieldError(["body", "task"], "must be 'classification' or 'regression'")
    for f, where in ((file, loc), (targets, ["body", "targets"])):
        if f is not None and (f.size or 0) > settings.max_dataset_bytes:
            raise FieldError(where, f"the file is {f.size} bytes, over the limit max_dataset_bytes "
                                    f"({settings.max_dataset_bytes})")
    filename = (file.filename or "").lower()
    if filename.endswith(".npz"):
        x, heads = _read_npz(file.file, loc)
    elif filename.endswith(".npy"):
        if targets is None:
            raise FieldError(["body", "targets"], "an .npy of inputs needs an .npy of targets beside it")
        x, heads = _read_npy(file.file, loc), {"output": _read_npy(targets.file, ["body", "targets"])}
    elif filename.endswith(".csv"):
        x, heads = _read_csv(file.file, [c.strip() for c in target_columns.split(",") if c.strip()], loc)
    else:
        raise FieldError(loc, "must be a .npz, .npy or .csv file (by its file name)")
    try:
        inputs = to_float_array(x)
        n = inputs.shape[0]
        ys = {h: to_targets(_integral(y) if task == "classification" else y, task, n) for h, y in heads.items()}
    except (ValueError, TypeError) as exc:
        raise FieldError(loc, str(exc)) from exc
    target = ys if set(ys) != {"output"} else ys["output"]
    return _store(session, settings, owner=owner, name=name, inputs=inputs, targets=target, task=task,
                  source=f"upload:{filename.rsplit('.', 1)[-1]}", loc=loc)


def _integral(y: np.ndarray) -> np.ndarray:
    if y.dtype.kind == "f" and np.isfinite(y).all() and (y == np.round(y)).all():
        return y.astype(np.int64)
    return y


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


@router.get("/{dataset_id}/preview", response_model=DatasetPreview)
def preview_dataset(dataset_id: str, session: SessionDep, owner: OwnerDep, rows: int = 5) -> DatasetPreview:
    """Shapes, dtypes, the first ``rows`` samples, a class histogram per classification head
    and min/max/mean/std per regression head."""
    ds = _get_or_404(session, dataset_id, owner)
    info = datasets.targets_info(ds)
    x, heads = datasets.load_all(session, dataset_id=dataset_id)
    k = max(0, min(rows, 50))
    hist, stats = {}, {}
    for h, y in heads.items():
        if info.get(h, {}).get("task") == "classification":
            hist[h] = np.bincount(y.astype(np.int64).ravel()).tolist()
        else:
            stats[h] = {"min": float(y.min()), "max": float(y.max()), "mean": float(y.mean()), "std": float(y.std())}
    return DatasetPreview(id=ds.id, num_samples=ds.num_samples, input_shape=ds.input_shape,
                          input_dtype=ds.input_dtype, inputs=x[:k].tolist(),
                          targets={h: y[:k].tolist() for h, y in heads.items()}, histograms=hist, statistics=stats)
