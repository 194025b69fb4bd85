"""A seekable read-only file over a chunked blob, one chunk in memory at a time (what zipfile
and numpy's .npy header reader need to parse an uploaded file where it lies)."""
from __future__ import annotations

import io
from collections.abc import Callable


class BlobReader(io.RawIOBase):
    def __init__(self, read_chunk: Callable[[int], bytes], *, size: int, chunk_bytes: int):
        super().__init__()
        self._read_chunk, self._size, self._chunk_bytes = read_chunk, size, chunk_bytes
        self._pos = 0
        self._cached: tuple[int, bytes] | None = None

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._size}[whence]
        if base + offset < 0:
            raise ValueError("negative seek position")
        self._pos = base + offset
        return self._pos

    def _chunk(self, seq: int) -> bytes:
        if self._cached is None or self._cached[0] != seq:
            self._cached = (seq, self._read_chunk(seq))
        return self._cached[1]

    def readinto(self, buffer) -> int:
        view = memoryview(buffer).cast("B")
        done = 0
        while done < len(view) and self._pos < self._size:
            seq, offset = divmod(self._pos, self._chunk_bytes)
            chunk = self._chunk(seq)
            n = min(len(view) - done, len(chunk) - offset)
            if n <= 0:
                break
            view[done:done + n] = chunk[offset:offset + n]
            done += n
            self._pos += n
        return done
