"""POST /v1/jobs/{id}/predict: samples in (the dataset encodings), each head's outputs out."""
from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class PredictRequest(BaseModel):
    """``inputs``: one entry per sample, as nested lists or ``{"base64", "dtype", "shape"}``
    (shape ``[n, *input_shape]``), exactly as a dataset's inputs; decoded by ``ingest.arrays``
    in the route, which knows the job's input shape and the batch limit."""

    model_config = ConfigDict(extra="forbid")

    inputs: Any = Field(description="samples: nested lists or {base64, dtype, shape}, each of the job's input shape")
    checkpoint: str = Field(default="latest", min_length=1, max_length=64,
                            description='"latest", "best" (by the retention metric) or a checkpoint id')


class CheckpointRef(BaseModel):
    id: str
    epoch: int
    step: int


class PredictOut(BaseModel):
    """Per head, as the job's plan names them (a single-head model's head is ``output``).
    ``probabilities`` (softmax over the class dimension, dim 1) and ``predictions`` (their
    arg-max) hold only the classification heads; a regression head is in ``outputs`` only.
    A non-finite output value is ``null``."""

    outputs: dict[str, list[Any]]
    probabilities: dict[str, list[Any]]
    predictions: dict[str, list[Any]]
    checkpoint: CheckpointRef
