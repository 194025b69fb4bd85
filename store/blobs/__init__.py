"""One small interface for large bytes: keyed blobs stored in fixed-size chunks.

A blob's metadata (size, SHA-256, chunking, which checkpoint, dataset or upload owns it) is a
``blobs`` row and each chunk a ``blob_chunks`` row with its own size and SHA-256, so every
backend is transactional where it counts (a blob exists once its row commits) and deleting the
owner deletes the blob (ON DELETE CASCADE). The chunk bytes live in a backend:

- ``database`` (the embedded default): in ``blob_chunks.data``, one statement per chunk, so no
  message comes near PostgreSQL's 1 GB limit whatever the blob's size;
- ``filesystem``: one file per chunk under a directory every machine mounts (a shared volume).

S3 is not offered: nothing here can test it for real (a fake such as moto proves nothing).
Reads dispatch on each blob's own backend, so changing the setting keeps old blobs readable.
Nothing reads a whole blob unless asked (``get``); ``stream`` and ``open`` go chunk by chunk.
"""
from __future__ import annotations

import hashlib
import io
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import BinaryIO

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from store.blobs.database import DatabaseChunks
from store.blobs.errors import BlobCorrupt, BlobError, BlobMissing
from store.blobs.filesystem import FilesystemChunks
from store.blobs.reader import BlobReader
from store.models import Blob, BlobChunk

__all__ = ["BACKENDS", "BlobCorrupt", "BlobError", "BlobMissing", "BlobReader", "Blobs", "open_blobs"]

BACKENDS = ("database", "filesystem")
_REFS = ("checkpoint_id", "dataset_id", "upload_id", "weights_id")


class Blobs:
    """put / get / stream / open / delete / exists of keyed blobs, within ``session``'s
    transaction. New blobs go to ``backend`` in chunks of ``chunk_bytes``."""

    def __init__(self, session: Session, *, backend: str = "database", chunk_bytes: int = 64 * 1024**2,
                 root: Path | None = None):
        if backend not in BACKENDS:
            raise ValueError(f"blob_backend must be one of {', '.join(BACKENDS)}, not {backend!r}")
        if chunk_bytes < 1:
            raise ValueError("blob_chunk_bytes must be positive")
        if backend == "filesystem" and root is None:
            raise ValueError("the filesystem blob backend needs a directory (blob_dir)")
        self.session, self.backend, self.chunk_bytes = session, backend, chunk_bytes
        self._chunks = {"database": DatabaseChunks(session)}
        if root is not None:
            self._chunks["filesystem"] = FilesystemChunks(root)

    # -- writing -----------------------------------------------------------------------
    def put(self, key: str, data: bytes | memoryview | BinaryIO | Iterable[bytes], **ref: str) -> Blob:
        """Store ``data`` (bytes, a binary file or an iterable of byte strings) as blob ``key``,
        replacing one of that name; ``ref`` names its owner (checkpoint_id, dataset_id, upload_id or weights_id)."""
        self.create(key, **ref)
        whole, seq, size = hashlib.sha256(), 0, 0
        for piece in _rechunk(data, self.chunk_bytes):
            whole.update(piece)
            self.write_chunk(key, seq, piece)
            seq, size = seq + 1, size + len(piece)
        return self._finish(key, chunks=seq, size=size, sha256=whole.hexdigest())

    def create(self, key: str, *, chunk_bytes: int | None = None, **ref: str) -> Blob:
        """An empty, incomplete blob whose chunks arrive by ``write_chunk`` (any order) until ``seal``."""
        _check_key(key)
        if set(ref) - set(_REFS):
            raise TypeError(f"unknown blob owner {sorted(set(ref) - set(_REFS))}")
        self.delete(key)
        blob = Blob(key=key, backend=self.backend, chunk_bytes=chunk_bytes or self.chunk_bytes, size_bytes=0,
                    chunks=0, sha256=None, **ref)
        self.session.add(blob)
        self.session.flush()
        return blob

    def write_chunk(self, key: str, seq: int, data: bytes) -> str:
        """Write (or rewrite) chunk ``seq`` of an incomplete blob; returns its SHA-256."""
        blob = self._row(key)
        if blob.sha256 is not None:
            raise BlobError(f"blob {key} is complete; it takes no more chunks")
        if len(data) > blob.chunk_bytes:
            raise BlobError(f"chunk {seq} of {key} is {len(data)} bytes, over its chunk size {blob.chunk_bytes}")
        digest = hashlib.sha256(data).hexdigest()
        self.session.execute(delete(BlobChunk).where(BlobChunk.blob_key == key, BlobChunk.seq == seq))
        self._chunks[blob.backend].write(key, seq, data)
        self.session.execute(BlobChunk.__table__.insert().values(
            blob_key=key, seq=seq, size_bytes=len(data), sha256=digest,
            data=data if blob.backend == "database" else None))
        return digest

    def chunk_sums(self, key: str) -> dict[int, tuple[int, str]]:
        """seq -> (size, SHA-256) of the chunks written so far."""
        rows = self.session.execute(select(BlobChunk.seq, BlobChunk.size_bytes, BlobChunk.sha256)
                                    .where(BlobChunk.blob_key == key).order_by(BlobChunk.seq))
        return {r.seq: (int(r.size_bytes), r.sha256) for r in rows}

    def seal(self, key: str, *, chunks: int, size: int) -> Blob:
        """Complete a blob written by chunks: all ``chunks`` present, every one but the last
        full, ``size`` bytes in all; its SHA-256 is computed by reading it through once."""
        blob = self._row(key)
        sums = self.chunk_sums(key)
        missing = [i for i in range(chunks) if i not in sums]
        if missing or len(sums) != chunks:
            raise BlobError(f"blob {key} lacks chunks {missing[:20]}")
        short = [i for i in range(chunks - 1) if sums[i][0] != blob.chunk_bytes]
        if short or sum(s for s, _ in sums.values()) != size:
            raise BlobError(f"blob {key}: chunks {short[:20]} are not {blob.chunk_bytes} bytes, or the total "
                            f"is not {size}")
        whole = hashlib.sha256()
        for seq in range(chunks):
            whole.update(self._read(blob, seq, sums[seq][1]))
        return self._finish(key, chunks=chunks, size=size, sha256=whole.hexdigest())

    def _finish(self, key: str, *, chunks: int, size: int, sha256: str) -> Blob:
        blob = self._row(key)
        blob.chunks, blob.size_bytes, blob.sha256 = chunks, size, sha256
        self.session.flush()
        return blob

    # -- reading -----------------------------------------------------------------------
    def info(self, key: str) -> Blob | None:
        """The blob's row (complete or not), or None."""
        return self.session.get(Blob, key)

    def exists(self, key: str) -> bool:
        blob = self.info(key)
        return blob is not None and blob.sha256 is not None

    def read_chunk(self, key: str, seq: int, *, verify: bool = True) -> bytes:
        """Chunk ``seq``; with ``verify`` its SHA-256 is checked (BlobCorrupt if it differs)."""
        blob = self._row(key)
        want = self.session.scalar(select(BlobChunk.sha256).where(BlobChunk.blob_key == key, BlobChunk.seq == seq))
        if want is None:
            raise BlobMissing(f"blob {key} has no chunk {seq}")
        return self._read(blob, seq, want if verify else None)

    def stream(self, key: str, *, verify: bool = True, piece_bytes: int | None = None) -> Iterator[bytes]:
        """The blob's chunks in order, one in memory at a time; with ``piece_bytes``, each chunk
        read in pieces of that size (a chunk's SHA-256 is checked once its last piece is read:
        BlobCorrupt then, after the pieces before it were handed out)."""
        blob = self._complete(key)
        sums = self.chunk_sums(key)
        for seq in range(blob.chunks):
            if piece_bytes is None:
                yield self._read(blob, seq, sums[seq][1] if verify else None)
            else:
                yield from self.chunk_pieces(key, seq, piece_bytes, size=sums[seq][0],
                                             sha256=sums[seq][1] if verify else None)

    def chunk_pieces(self, key: str, seq: int, piece_bytes: int, *, size: int | None = None,
                     sha256: str | None = None) -> Iterator[bytes]:
        """Chunk ``seq`` in pieces of ``piece_bytes`` (only one in memory), its SHA-256 checked
        against ``sha256`` (the recorded one when not given) at the end."""
        blob = self._row(key)
        if size is None or sha256 is None:
            row = self.session.execute(select(BlobChunk.size_bytes, BlobChunk.sha256)
                                       .where(BlobChunk.blob_key == key, BlobChunk.seq == seq)).first()
            if row is None:
                raise BlobMissing(f"blob {key} has no chunk {seq}")
            size, sha256 = int(row.size_bytes), sha256 or row.sha256
        backend = self._backend(blob)
        h = hashlib.sha256()
        for offset in range(0, size, piece_bytes):
            piece = backend.read_range(key, seq, offset, min(piece_bytes, size - offset))
            h.update(piece)
            yield piece
        if h.hexdigest() != sha256:
            raise BlobCorrupt(f"chunk {seq} of blob {key} does not match its SHA-256")

    def get(self, key: str) -> bytes:
        """The whole blob in memory (for what needs it whole: a model to load)."""
        return b"".join(self.stream(key))

    def open(self, key: str) -> BlobReader:
        """A seekable, read-only binary file over the blob (zipfile and numpy read it)."""
        blob = self._complete(key)
        return BlobReader(lambda seq: self.read_chunk(key, seq), size=blob.size_bytes, chunk_bytes=blob.chunk_bytes)

    def _backend(self, blob: Blob):
        backend = self._chunks.get(blob.backend)
        if backend is None:
            raise BlobError(f"blob {blob.key} is in the {blob.backend} backend, which this process has no "
                            "directory for (set blob_dir)")
        return backend

    def _read(self, blob: Blob, seq: int, sha256: str | None) -> bytes:
        data = self._backend(blob).read(blob.key, seq)
        if sha256 is not None and hashlib.sha256(data).hexdigest() != sha256:
            raise BlobCorrupt(f"chunk {seq} of blob {blob.key} does not match its SHA-256")
        return data

    # -- deleting ----------------------------------------------------------------------
    def delete(self, key: str) -> None:
        blob = self.session.get(Blob, key)
        if blob is None:
            return
        backend = blob.backend
        self.session.execute(delete(BlobChunk).where(BlobChunk.blob_key == key))
        self.session.execute(delete(Blob).where(Blob.key == key))
        self.session.expunge(blob)
        if backend in self._chunks:
            self._chunks[backend].delete(key)

    def delete_owned(self, **ref: str) -> int:
        """Delete every blob the owner ``ref`` (e.g. dataset_id=...) has; returns how many."""
        (name, value), = ref.items()
        keys = list(self.session.scalars(select(Blob.key).where(getattr(Blob, name) == value)))
        for key in keys:
            self.delete(key)
        return len(keys)

    def bytes_owned(self, **ref) -> int:
        (name, value), = ref.items()
        return int(self.session.scalar(select(func.coalesce(func.sum(Blob.size_bytes), 0))
                                       .where(getattr(Blob, name) == value)) or 0)

    def collect(self, *, older_than_s: float = 3600.0) -> int:
        """Remove filesystem chunk files whose blob row is gone (its owner was deleted by a
        cascade, or a write rolled back); files newer than ``older_than_s`` are left alone."""
        fs = self._chunks.get("filesystem")
        if fs is None:
            return 0
        return fs.collect(lambda keys: set(self.session.scalars(select(Blob.key).where(Blob.key.in_(keys)))),
                          older_than_s=older_than_s)

    def _row(self, key: str) -> Blob:
        blob = self.session.get(Blob, key)
        if blob is None:
            raise BlobMissing(f"blob {key} does not exist")
        return blob

    def _complete(self, key: str) -> Blob:
        blob = self._row(key)
        if blob.sha256 is None:
            raise BlobMissing(f"blob {key} is not complete")
        return blob


def open_blobs(session: Session, settings=None) -> Blobs:
    """The blob store ``settings`` configure (the process's settings by default)."""
    if settings is None:
        from config.settings import get_settings

        settings = get_settings()
    root = settings.resolved_blob_dir if (settings.blob_backend == "filesystem" or settings.blob_dir) else None
    return Blobs(session, backend=settings.blob_backend, chunk_bytes=settings.blob_chunk_bytes, root=root)


def _check_key(key: str) -> None:
    ok = key and len(key) <= 200 and all(c.isalnum() or c in "-_./" for c in key)
    if not ok or ".." in key or key.startswith("/"):
        raise ValueError(f"blob key {key!r} must be 1-200 characters of letters, digits, -_./")


def _rechunk(data, size: int) -> Iterator[bytes]:
    """``data`` as pieces of exactly ``size`` bytes (the last one shorter)."""
    if isinstance(data, (bytes, bytearray, memoryview)):
        view = memoryview(data).cast("B")
        for start in range(0, len(view), size):
            yield bytes(view[start:start + size])
        return
    if hasattr(data, "read"):
        while piece := _read_full(data, size):
            yield piece
        return
    buf = bytearray()
    for piece in data:
        buf += piece
        while len(buf) >= size:
            yield bytes(buf[:size])
            del buf[:size]
    if buf:
        yield bytes(buf)


def _read_full(f: BinaryIO | io.RawIOBase, size: int) -> bytes:
    parts, left = [], size
    while left:
        piece = f.read(left)
        if not piece:
            break
        parts.append(piece)
        left -= len(piece)
    return b"".join(parts)
