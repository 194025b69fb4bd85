"""What the blob store raises: a missing blob or chunk, and a chunk whose bytes do not match
their recorded SHA-256 (both deterministic: retrying gives the same answer)."""
from __future__ import annotations


class BlobError(Exception):
    """A blob operation that cannot succeed as asked."""


class BlobMissing(BlobError, KeyError):
    """No such blob, chunk, or the blob is not complete yet."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class BlobCorrupt(BlobError):
    """A chunk read back differs from the SHA-256 recorded when it was written."""
