"""Answers of GET /v1/jobs/compare (runs side by side) and GET /v1/jobs/groups (runs that
share a config value, aggregated)."""
from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from api.schemas.jobs import FinalMetrics


class ComparedJob(BaseModel):
    id: str
    name: str
    status: str


class ConfigDiff(BaseModel):
    """The jobs' ``model`` and ``training`` (as GET /v1/jobs/{id} shows them) flattened to
    dotted paths (``training.optimizer.lr``, ``model.layers.1.out_features``; lists by index)."""

    differs: dict[str, dict[str, Any]] = Field(
        description="paths whose values are not all equal: {path: {job id: value}}; null where a job lacks the path")
    same: dict[str, Any] = Field(description="paths every job has with one value: {path: value}")


class Curve(BaseModel):
    """One job's points of one metric, in step order (downsampled to max_points)."""

    step: list[int]
    epoch: list[int] = Field(description="each point's epoch (the dashboard's epoch and wall-time axes)")
    value: list[float]


class Comparison(BaseModel):
    jobs: list[ComparedJob] = Field(description="the jobs, in the order asked for")
    config: ConfigDiff
    final_metrics: dict[str, FinalMetrics] = Field(description="each job's final metrics, by job id")
    curves: dict[str, dict[str, Curve]] = Field(
        description="{metric: {job id: curve}} for the jobs that have the metric; 'step:<name>' and "
                    "'epoch:<name>' where both kinds use a name")


class Stats(BaseModel):
    """Over the group's finite values (null when there are none); std is the population's (ddof=0)."""

    mean: float | None
    std: float | None
    min: float | None
    max: float | None
    n: int


class GroupCurve(BaseModel):
    """The metric across the group's runs, per point of ``axis`` (a step, or an epoch for an
    epoch metric); where the curve spans more than max_points of them, per aligned block of
    2**L of them, each run contributing the mean of its points in the block (for a step metric,
    the minima and maxima of the run's downsampled history there: no wider than a block)."""

    axis: Literal["step", "epoch"]
    step: list[int] = Field(description="the point's step (the largest among the runs' points there)")
    epoch: list[int] = Field(description="the point's epoch (the largest among the runs' points there)")
    mean: list[float]
    std: list[float]
    min: list[float]
    max: list[float]
    n: list[int] = Field(description="how many runs have a value there")


class Group(BaseModel):
    key: dict[str, Any] = Field(description="{path: value} shared by the group's jobs (null: the job lacks it)")
    job_ids: list[str] = Field(description="oldest first")
    final: Stats = Field(description="of each run's final value of the metric")
    curve: GroupCurve


class Groups(BaseModel):
    by: list[str]
    metric: str
    groups: list[Group] = Field(description="ordered by key")
