"""How a job's dataset reaches its training device.

Small datasets stored inline (.npz rows from before the blob store) load whole into memory as
before. Sharded datasets are copied once per machine into a local cache directory
(``settings.dataset_cache_dir``, least recently used datasets evicted past
``dataset_cache_max_bytes``), shard by shard in short transactions before the job's load,
each shard's SHA-256 checked on arrival and the whole array's at the end; a manifest written
last marks the copy complete, so a second job on the same dataset reuses it and a
half-written copy is never used. Training then reads
batches through numpy memory maps (``MappedArray``): the inputs are never whole in the
worker's memory, uint8 images travel to the device as uint8 and become float32 there, one
batch at a time, and the pages a batch touched are handed back to the page cache after it,
so the worker's RSS stays far below the dataset's size.

The batches are exactly the in-memory path's: the same sampler (``worker.sampling``, so the
same per-epoch permutation and data-parallel shard) drawn in batches of the same size, each
gathered by fancy indexing, through the engine's DataLoader (its worker processes reopen the
maps by path rather than pickling the data)."""
from __future__ import annotations

import hashlib
import json
import math
import mmap
import os
import shutil
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy.orm import Session

import engine
from config.settings import Settings
from engine.utils.data import BatchSampler, DataLoader, Dataset, Sampler
from store.blobs import BlobCorrupt, open_blobs
from store.db import session_scope
from store.models import Dataset as DatasetRow
from store.models import Job
from store.repositories import datasets

MANIFEST = "manifest.json"


def heads_of(targets: dict[str, np.ndarray], head: str, task: str, device: str = "cpu") -> engine.Tensor:
    """One dataset head as an engine tensor: int64 class indices or float32 values."""
    y = targets[head]
    if task == "classification":
        return engine.tensor(y.astype(np.int64), dtype=engine.int64, device=device)
    return engine.tensor(y.astype(np.float32), dtype=engine.float32, device=device)


class MappedArray:
    """An array in a cache file, opened as a read-only memory map on first use; pickles as
    its path (DataLoader worker processes, data-parallel ranks), never as its data."""

    def __init__(self, path: Path | str, dtype: str, shape: list[int], release_bytes: int = 0):
        self.path, self.dtype, self.shape = str(path), np.dtype(dtype), tuple(shape)
        self.release_bytes, self._read, self._map = release_bytes, 0, None

    @property
    def array(self) -> np.ndarray:
        if self._map is None:
            self._map = (np.memmap(self.path, dtype=self.dtype, mode="r", shape=self.shape)
                         if self.shape[0] and all(self.shape) else np.zeros(self.shape, self.dtype))
        return self._map

    def __len__(self) -> int:
        return self.shape[0]

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape)) * self.dtype.itemsize

    def take(self, rows: np.ndarray) -> np.ndarray:
        """The rows at ``rows`` (a copy in memory); once ``release_bytes`` were read (by default
        after every call) the mapped pages are dropped from this process (they stay in the page
        cache). Often, because a random row faults in a whole large folio of the file: without
        it one epoch of random batches maps the entire file into the RSS (measured: a 300 MB
        file fully mapped after one pass; 0.45 ms per batch to drop it each time)."""
        out = self.array[rows]
        self._read += out.nbytes
        if self._read >= self.release_bytes:
            self.release()
        return out

    def release(self) -> None:
        self._read = 0
        raw = getattr(self._map, "_mmap", None)
        if raw is not None and hasattr(raw, "madvise"):
            raw.madvise(mmap.MADV_DONTNEED)

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_map": None, "_read": 0}


# -- the cache ---------------------------------------------------------------------------
ChunkReader = Callable[[str, int], Iterable[bytes]]  # (key, seq) -> the chunk's pieces, its SHA-256 checked
PIECE_BYTES = 8 * 1024**2


def load(session: Session, *, dataset_id: str, settings: Settings) -> tuple[np.ndarray | MappedArray,
                                                                            dict[str, np.ndarray]]:
    """(inputs, head -> targets) for training: an inline dataset in memory; a sharded one's
    inputs mapped from the local cache (filled first if ``prefetch`` did not), its targets in
    memory."""
    ds = session.get(DatasetRow, dataset_id)
    if ds is None or ds.layout is None:
        return datasets.load_all(session, dataset_id=dataset_id)
    blobs = open_blobs(session)
    folder = cached(ds.id, ds.layout, settings.resolved_cache_dir,
                    lambda key, seq: blobs.chunk_pieces(key, seq, PIECE_BYTES),
                    max_bytes=settings.dataset_cache_max_bytes)
    arrays = ds.layout["arrays"]
    inputs = MappedArray(folder / datasets.INPUTS, arrays[datasets.INPUTS]["dtype"], arrays[datasets.INPUTS]["shape"])
    targets = {name.split(".", 1)[1]: np.array(MappedArray(folder / name, a["dtype"], a["shape"]).array)
               for name, a in arrays.items() if name != datasets.INPUTS}
    return inputs, targets


def prefetch(job_id: str, settings: Settings) -> None:
    """Fill the cache with a job's sharded datasets before its load opens a long transaction:
    one short transaction per shard (on SQLite every transaction holds the write lock, so a
    copy of many shards inside one would stall every other writer)."""
    url = settings.resolved_database_url
    with session_scope(url) as session:
        job = session.get(Job, job_id)
        if job is None:
            return
        ids = [job.dataset_id, ((job.plan or {}).get("training") or {}).get("validation_dataset_id")]
        rows = [session.get(DatasetRow, i) for i in ids if i]
        layouts = [(d.id, d.layout) for d in rows if d is not None and d.layout]

    def read(key: str, seq: int) -> Iterator[bytes]:
        with session_scope(url) as s:
            yield from open_blobs(s).chunk_pieces(key, seq, PIECE_BYTES)

    for ds_id, layout in layouts:
        cached(ds_id, layout, settings.resolved_cache_dir, read, max_bytes=settings.dataset_cache_max_bytes)


def _manifest(ds_id: str, layout: dict[str, Any]) -> dict[str, Any]:
    keep = ("dtype", "shape", "size", "sha256")
    return {"dataset_id": ds_id, "format": layout["format"],
            "arrays": {n: {k: a[k] for k in keep} for n, a in layout["arrays"].items()}}


def _complete(folder: Path, manifest: dict[str, Any]) -> bool:
    try:
        if json.loads((folder / MANIFEST).read_text()) != manifest:
            return False
        return all((folder / n).stat().st_size == a["size"] for n, a in manifest["arrays"].items())
    except (OSError, ValueError):
        return False


def cached(ds_id: str, layout: dict[str, Any], root: Path, read: ChunkReader, *, max_bytes: int = 0) -> Path:
    """The dataset's folder in the cache at ``root``, complete and checksummed: reused when a
    previous job left it whole (its manifest touched: recently used), else copied shard by
    shard (``read(key, seq)`` checks each shard's SHA-256) into a private folder and renamed
    into place (two jobs filling it at once both end with one complete copy). With
    ``max_bytes``, the least recently used other datasets are evicted first to make room."""
    folder, manifest = Path(root) / ds_id, _manifest(ds_id, layout)
    if _complete(folder, manifest):
        os.utime(folder / MANIFEST)
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    if max_bytes:
        _evict(Path(root), keep=ds_id, room=sum(a["size"] for a in layout["arrays"].values()), max_bytes=max_bytes)
    tmp = folder.parent / f".{ds_id}.{os.getpid()}.{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        for name, entry in layout["arrays"].items():
            whole = hashlib.sha256()
            with open(tmp / name, "wb") as f:
                for seq in range(math.ceil(entry["size"] / entry["chunk_bytes"])):
                    for piece in read(entry["key"], seq):
                        whole.update(piece)
                        f.write(piece)
            if whole.hexdigest() != entry["sha256"]:
                raise BlobCorrupt(f"dataset {ds_id} array {name} does not match its SHA-256")
        (tmp / MANIFEST).write_text(json.dumps(manifest))
        if folder.exists() and not _complete(folder, manifest):
            shutil.rmtree(folder, ignore_errors=True)  # a stale or broken copy (open maps keep their files)
        try:
            os.rename(tmp, folder)
        except OSError:
            if not _complete(folder, manifest):  # another job's copy won the race: use it
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return folder


def _evict(root: Path, *, keep: str, room: int, max_bytes: int, idle_s: float = 600.0) -> None:
    """Delete whole cached datasets, least recently used first, until ``room`` more bytes fit
    in ``max_bytes``; one used in the last ``idle_s`` seconds is never taken (a job may be
    about to map it; a mapped one keeps its files open anyway)."""
    entries = []
    for folder in root.iterdir():
        if folder.name.startswith(".") or folder.name == keep or not folder.is_dir():
            continue
        try:
            used = (folder / MANIFEST).stat().st_mtime
        except OSError:
            used = 0.0
        entries.append((used, folder, sum(f.stat().st_size for f in folder.iterdir() if f.is_file())))
    total = sum(size for _, _, size in entries)
    for used, folder, size in sorted(entries, key=lambda e: e[0]):
        if total + room <= max_bytes or time.time() - used < idle_s:
            break
        shutil.rmtree(folder, ignore_errors=True)
        total -= size


# -- batches -----------------------------------------------------------------------------
class MappedRows(Dataset):
    """Map-style dataset whose index is a whole batch (a list of positions in ``indices``):
    one fancy-index gather per array, numpy out (what the batch sampler asks for)."""

    def __init__(self, inputs: MappedArray, targets: list[np.ndarray], indices: np.ndarray):
        self.inputs, self.targets, self.indices = inputs, targets, np.asarray(indices)

    def __getitem__(self, batch: list[int]) -> tuple[np.ndarray, ...]:
        rows = self.indices[np.asarray(batch, dtype=np.int64)]
        return (self.inputs.take(rows), *[t[rows] for t in self.targets])

    def __len__(self) -> int:
        return len(self.indices)


def as_is(batch: Any) -> Any:
    """The collate function of a dataset that returns whole batches."""
    return batch


def to_device(x: np.ndarray, device: str) -> engine.Tensor:
    """A batch of inputs as float32 on ``device``: moved in its stored dtype (a quarter of the
    bytes for uint8), cast there."""
    t = engine.tensor(np.ascontiguousarray(x), device=device)
    return t if x.dtype == np.float32 else t.float()


class DeviceBatches:
    """Iterates a loader of numpy batches as (inputs, *targets) tensors on the device."""

    def __init__(self, loader: DataLoader, kinds: list[str], device: str):
        self.loader, self.kinds, self.device = loader, kinds, device

    def __iter__(self):
        for x, *ys in self.loader:
            yield (to_device(x, self.device), *[_target(y, kind, self.device) for y, kind in zip(ys, self.kinds)])

    def __len__(self) -> int:
        return len(self.loader)


def _target(y: np.ndarray, task: str, device: str) -> engine.Tensor:
    return heads_of({"y": y}, "y", task, device)


class MappedInputs:
    """Rows ``indices`` of a mapped input array, sliced into float32 device batches on demand
    (what validation reads in order: ``x[start:stop]``, ``len(x)``, ``x.shape``)."""

    def __init__(self, inputs: MappedArray, indices: np.ndarray, device: str):
        self.inputs, self.indices, self.device = inputs, np.asarray(indices), device
        self.shape = (len(self.indices), *inputs.shape[1:])

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index: slice) -> engine.Tensor:
        if not isinstance(index, slice):
            raise TypeError("mapped validation inputs are read in slices")
        return to_device(self.inputs.take(self.indices[index]), self.device)


def sharded_loader(inputs: MappedArray, targets: list[np.ndarray], tasks: list[str], indices: np.ndarray,
                   sampler: Sampler, batch_size: int, device: str, num_workers: int = 0) -> DeviceBatches:
    """Training batches over a mapped dataset: ``sampler`` (positions in ``indices``) drawn in
    batches of ``batch_size`` exactly as DataLoader(batch_size=..., sampler=...) draws them."""
    loader = DataLoader(MappedRows(inputs, targets, indices), batch_size=None,
                        sampler=BatchSampler(sampler, batch_size, drop_last=False), collate_fn=as_is,
                        num_workers=num_workers)
    return DeviceBatches(loader, tasks, device)
