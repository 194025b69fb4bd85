"""The size limits a decoded dataset must keep (settings ``max_dataset_bytes`` and
``max_dataset_samples``)."""
from __future__ import annotations

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
