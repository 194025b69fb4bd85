"""POST /v1/specs/validate bodies: a spec and the data it must fit; the per-node table."""
from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class SpecValidateBody(BaseModel):
    """The spec, and either a dataset id or an input shape (a sample's shape, or input name
    -> shape for a graph with several inputs). Without either, only the structure is checked."""

    model_config = ConfigDict(extra="forbid")
    model: dict[str, Any]
    dataset_id: str | None = Field(default=None, min_length=1, max_length=64)
    input_shape: list[int] | dict[str, list[int]] | None = None
    num_classes: int | None = Field(default=None, ge=1, le=100_000)
    batch_size: int = Field(default=32, ge=1, le=65_536, description="for the memory estimate")


class NodeRow(BaseModel):
    name: str
    type: str
    inputs: list[str]
    output_shape: list[Any]
    parameters: int
    flops_per_sample: int


class SpecReport(BaseModel):
    valid: bool = True
    nodes: list[NodeRow]
    outputs: dict[str, list[Any]]
    totals: dict[str, int]
    expanded: dict[str, Any] | None = None
    # with a dataset: one epoch's training time per device kind (see JobOut.estimate)
    estimate_per_epoch: dict[str, Any] | None = None
