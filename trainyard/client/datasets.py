"""``client.datasets``: send arrays (compactly: base64 JSON, or an .npz upload for big ones),
upload files, add built-in sample sets, list and read."""
from __future__ import annotations

import base64
import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from trainyard.client.http import Http

INLINE_MAX_BYTES = 8 * 1024 * 1024  # above this, arrays go as a multipart .npz upload
CHUNKED_MIN_BYTES = 32 * 1024 * 1024  # files above this go as a resumable chunked upload
PART_BYTES = 16 * 1024 * 1024
_SENT_DTYPES = ("float32", "float16", "int64", "int32", "int16", "int8", "uint8", "bool")


@dataclass
class Dataset:
    """A stored dataset as the API describes it."""

    id: str
    name: str
    num_samples: int
    input_shape: list[int]
    task: str
    num_classes: int | None
    targets: dict[str, Any] = field(default_factory=dict)
    size_bytes: int = 0
    raw: dict[str, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def from_api(cls, body: dict[str, Any]) -> Dataset:
        return cls(id=body["id"], name=body["name"], num_samples=body["num_samples"],
                   input_shape=body["input_shape"], task=body["task"], num_classes=body.get("num_classes"),
                   targets=body.get("targets", {}), size_bytes=body.get("size_bytes", 0), raw=body)


def encode(array: Any) -> dict[str, Any] | Any:
    """``{"base64", "dtype", "shape"}`` of an array (float64 is sent as float32: the API
    stores inputs as float32 either way). What numpy cannot make an array of (ragged lists)
    is sent as it is, for the API to say what is wrong with it."""
    try:
        arr = np.asarray(array)
    except (ValueError, TypeError):
        return array
    if arr.dtype.kind not in "biuf":
        return array
    if arr.dtype == np.float64:
        arr = arr.astype(np.float32)
    elif arr.dtype.name not in _SENT_DTYPES:
        arr = arr.astype(np.int64 if arr.dtype.kind in "iu" else np.float32)
    arr = np.ascontiguousarray(arr, dtype=arr.dtype.newbyteorder("<"))
    return {"base64": base64.b64encode(arr.tobytes()).decode("ascii"), "dtype": arr.dtype.name,
            "shape": list(arr.shape)}


def _nbytes(value: Any) -> int:
    try:
        return np.asarray(value).nbytes
    except (ValueError, TypeError):
        return 0


class ChunkedUploadInterrupted(Exception):
    """A chunked upload stopped part-way; ``upload_chunked(..., upload_id=e.upload_id)`` resumes it."""

    def __init__(self, upload_id: str, cause: BaseException):
        super().__init__(f"upload {upload_id} was interrupted ({cause}); resume it with upload_id={upload_id!r}")
        self.upload_id = upload_id


class Datasets:
    def __init__(self, http: Http):
        self._http = http

    def create(self, name: str, inputs: Any, targets: Any, *, task: str | dict[str, str] = "classification"
               ) -> Dataset:
        """A dataset from arrays: ``targets`` is one array, or head name -> array (multi-task)."""
        heads = targets if isinstance(targets, dict) else None
        nbytes = sum(_nbytes(a) for a in [inputs, *(heads or {"": targets}).values()])
        if nbytes > INLINE_MAX_BYTES and not isinstance(task, dict):
            buf = io.BytesIO()
            arrays = {f"targets.{h}": np.asarray(t) for h, t in heads.items()} if heads else {"targets": targets}
            np.savez(buf, inputs=np.asarray(inputs, dtype=np.float32), **arrays)
            return self._upload(name, ("data.npz", buf.getvalue()), task=task)
        body = {"name": name, "task": task, "inputs": encode(inputs),
                "targets": {h: encode(t) for h, t in heads.items()} if heads else encode(targets)}
        return Dataset.from_api(self._http.json("POST", "/v1/datasets", json=body))

    def upload(self, path: str | Path, *, name: str | None = None, task: str = "classification",
               targets: str | Path | None = None, target_columns: list[str] | str | None = None) -> Dataset:
        """An .npz, .npy (with ``targets``: the .npy of targets) or .csv (with
        ``target_columns``) file."""
        path = Path(path)
        if targets is None and path.suffix.lower() in (".npz", ".csv") and path.stat().st_size > CHUNKED_MIN_BYTES:
            columns = [target_columns] if isinstance(target_columns, str) else target_columns
            return self.upload_chunked(path, name=name, task=task, target_columns=columns)
        extra = {"targets": (Path(targets).name, Path(targets).read_bytes())} if targets else {}
        columns = ",".join(target_columns) if isinstance(target_columns, list) else (target_columns or "")
        return self._upload(name or path.stem, (path.name, path.read_bytes()), task=task, extra=extra,
                            target_columns=columns)

    def upload_chunked(self, path: str | Path, *, name: str | None = None, task: str = "classification",
                       target_columns: list[str] | None = None, part_bytes: int = PART_BYTES,
                       upload_id: str | None = None) -> Dataset:
        """A large .npz or .csv through /v1/datasets/uploads: parts of ``part_bytes``, each with
        its SHA-256, then complete. Resumable: given the ``upload_id`` of an interrupted upload
        (``ChunkedUploadInterrupted.upload_id``), only the parts the server lacks are sent."""
        import hashlib

        path = Path(path)
        size = path.stat().st_size
        if upload_id is None:
            whole = hashlib.sha256()
            with open(path, "rb") as f:
                while piece := f.read(8 * 1024 * 1024):
                    whole.update(piece)
            body = {"name": name or path.stem, "filename": path.name, "size_bytes": size, "part_bytes": part_bytes,
                    "task": task, "target_columns": list(target_columns or []), "sha256": whole.hexdigest()}
            upload_id = self._http.json("POST", "/v1/datasets/uploads", json=body)["id"]
        state = self._http.json("GET", f"/v1/datasets/uploads/{upload_id}")
        received, part_bytes = set(state["received"]), state["part_bytes"]
        try:
            with open(path, "rb") as f:
                for n in range(state["parts"]):
                    if n in received:
                        continue
                    f.seek(n * part_bytes)
                    part = f.read(part_bytes)
                    self._http.request("PUT", f"/v1/datasets/uploads/{upload_id}/parts/{n}", content=part,
                                       headers={"X-Part-SHA256": hashlib.sha256(part).hexdigest(),
                                                "Content-Type": "application/octet-stream"})
        except Exception as exc:
            raise ChunkedUploadInterrupted(upload_id, exc) from exc
        done = self._http.json("POST", f"/v1/datasets/uploads/{upload_id}/complete")
        return Dataset.from_api(done["dataset"])

    def _upload(self, name: str, file: tuple[str, bytes], *, task: str, extra: dict | None = None,
                target_columns: str = "") -> Dataset:
        form = {"name": name, "task": task}
        if target_columns:
            form["target_columns"] = target_columns
        body = self._http.json("POST", "/v1/datasets/upload", data=form, files={"file": file, **(extra or {})})
        return Dataset.from_api(body)

    def builtin(self, which: str, *, name: str | None = None, limit: int | None = None) -> Dataset:
        """One of scikit-learn's sample sets: digits, iris, wine, breast_cancer, diabetes."""
        body = {"builtin": which, **({"name": name} if name else {}), **({"limit": limit} if limit else {})}
        return Dataset.from_api(self._http.json("POST", "/v1/datasets/builtin", json=body))

    def list(self) -> list[Dataset]:
        return [Dataset.from_api(d) for d in self._http.json("GET", "/v1/datasets")["items"]]

    def get(self, dataset_id: str) -> Dataset:
        return Dataset.from_api(self._http.json("GET", f"/v1/datasets/{dataset_id}"))

    def delete(self, dataset: Dataset | str) -> None:
        """Delete a dataset (a Conflict while a queued or running job uses it)."""
        self._http.request("DELETE", f"/v1/datasets/{dataset.id if isinstance(dataset, Dataset) else dataset}")
