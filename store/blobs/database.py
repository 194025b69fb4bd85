"""The database backend: chunk bytes in ``blob_chunks.data``, one row per chunk, written and
read one statement at a time (SQLite and PostgreSQL alike)."""
from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from store.blobs.errors import BlobMissing
from store.models import BlobChunk


class DatabaseChunks:
    """The row itself (written by ``Blobs.write_chunk``) carries the bytes; only reads are here."""

    def __init__(self, session: Session):
        self.session = session

    def write(self, key: str, seq: int, data: bytes) -> None:
        """Nothing to do: the chunk row inserted beside this call holds ``data``."""

    def read(self, key: str, seq: int) -> bytes:
        data = self.session.scalar(select(BlobChunk.data).where(BlobChunk.blob_key == key, BlobChunk.seq == seq))
        if data is None:
            raise BlobMissing(f"blob {key} has no chunk {seq} in the database")
        return bytes(data)

    def read_range(self, key: str, seq: int, offset: int, length: int) -> bytes:
        """Bytes ``offset`` to ``offset + length`` of the chunk, sliced by the database (the
        chunks are stored uncompressed on PostgreSQL, so only that part is fetched)."""
        data = self.session.scalar(select(func.substr(BlobChunk.data, offset + 1, length))
                                   .where(BlobChunk.blob_key == key, BlobChunk.seq == seq))
        if data is None:
            raise BlobMissing(f"blob {key} has no chunk {seq} in the database")
        return bytes(data)

    def delete(self, key: str) -> None:
        """The chunk rows go with the blob's row."""
