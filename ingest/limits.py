"""The size limits a decoded dataset must keep (settings ``max_dataset_bytes`` and
``max_dataset_samples``), and the limits an uploaded file is read under (``FileLimits``):
checked from headers and counts before anything is allocated, so a file cannot make the
API hold more than its limits, whatever it claims or inflates to."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ingest.errors import IngestError


def check(inputs: np.ndarray, heads: dict[str, np.ndarray], *, max_bytes: int, max_samples: int) -> None:
    total = inputs.nbytes + sum(t.nbytes for t in heads.values())
    if total > max_bytes:
        raise IngestError(f"the dataset is {total} bytes decoded, over the limit max_dataset_bytes ({max_bytes})")
    if inputs.shape[0] > max_samples:
        raise IngestError(f"the dataset has {inputs.shape[0]} samples, over the limit max_dataset_samples "
                          f"({max_samples})")


def check_file_size(size: int | None, *, max_bytes: int, field: str | None = None) -> None:
    if (size or 0) > max_bytes:
        raise IngestError(f"the file is {size} bytes, over the limit max_dataset_bytes ({max_bytes})", field)


@dataclass(frozen=True)
class FileLimits:
    """What reading one uploaded file may decode: ``max_bytes`` of arrays over all its
    members (named ``limit_name`` in messages), ``max_members`` archive entries, and a CSV's
    rows, columns and cells (a row's text is bounded by ``max_csv_columns`` too)."""

    max_bytes: int = 256 * 1024**2
    limit_name: str = "max_upload_inflated_bytes"
    max_members: int = 64
    max_csv_rows: int = 1_000_000
    max_csv_columns: int = 10_000
    max_csv_cells: int = 20_000_000

    @property
    def max_csv_line_chars(self) -> int:
        """The longest CSV line read: 64 characters per allowed column (a float64 needs 24)."""
        return 64 * self.max_csv_columns + 1024
