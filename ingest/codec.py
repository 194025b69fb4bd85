"""The stored form of a dataset: one compressed .npz holding ``inputs`` plus ``targets``
(the single default head) or ``targets.<head>`` per head."""
from __future__ import annotations

import io

import numpy as np

from ingest.heads import DEFAULT_HEAD


def encode(inputs: np.ndarray, heads: dict[str, np.ndarray]) -> bytes:
    buf = io.BytesIO()
    if set(heads) == {DEFAULT_HEAD}:
        np.savez_compressed(buf, inputs=inputs, targets=heads[DEFAULT_HEAD])
    else:
        np.savez_compressed(buf, inputs=inputs, **{f"targets.{k}": v for k, v in heads.items()})
    return buf.getvalue()


def decode(blob: bytes) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """(inputs, head -> targets)."""
    with np.load(io.BytesIO(blob), allow_pickle=False) as npz:
        heads = {k.split(".", 1)[1]: npz[k] for k in npz.files if k.startswith("targets.")}
        if "targets" in npz.files:
            heads[DEFAULT_HEAD] = npz["targets"]
        return npz["inputs"], heads
