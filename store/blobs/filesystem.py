"""The filesystem backend: chunk ``seq`` of blob ``key`` is the file
``<root>/<key with / as %>/<seq>``, written to a temporary name, fsynced and renamed, so a
reader never sees half a chunk. ``root`` is a directory every API and worker machine mounts."""
from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path

from store.blobs.errors import BlobMissing


class FilesystemChunks:
    def __init__(self, root: Path):
        self.root = Path(root)

    def _dir(self, key: str) -> Path:
        return self.root / key.replace("/", "%")

    def write(self, key: str, seq: int, data: bytes) -> None:
        folder = self._dir(key)
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / f".{seq}.{os.getpid()}.tmp"
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, folder / str(seq))

    def read(self, key: str, seq: int) -> bytes:
        try:
            return (self._dir(key) / str(seq)).read_bytes()
        except FileNotFoundError as exc:
            raise BlobMissing(f"blob {key} has no chunk {seq} under {self.root}") from exc

    def read_range(self, key: str, seq: int, offset: int, length: int) -> bytes:
        try:
            with open(self._dir(key) / str(seq), "rb") as f:
                f.seek(offset)
                return f.read(length)
        except FileNotFoundError as exc:
            raise BlobMissing(f"blob {key} has no chunk {seq} under {self.root}") from exc

    def delete(self, key: str) -> None:
        shutil.rmtree(self._dir(key), ignore_errors=True)

    def collect(self, existing: Callable[[list[str]], set[str]], *, older_than_s: float) -> int:
        """Remove the folders of blobs ``existing`` does not know, if untouched for ``older_than_s``."""
        if not self.root.is_dir():
            return 0
        cutoff = time.time() - older_than_s
        folders = {p.name.replace("%", "/"): p for p in self.root.iterdir()
                   if p.is_dir() and p.stat().st_mtime < cutoff}
        known: set[str] = set()
        keys = list(folders)
        for start in range(0, len(keys), 500):
            known |= existing(keys[start:start + 500])
        doomed = [p for k, p in folders.items() if k not in known]
        for p in doomed:
            shutil.rmtree(p, ignore_errors=True)
        return len(doomed)
