"""Sweep answers. (What a user sends is ``plan.sweep.SweepCreate``.)"""
from __future__ import annotations

import math
from typing import Any

from pydantic import BaseModel

from api.schemas import UTCDateTime
from plan.sweep import SweepMetric
from store.models import JobStatus, Sweep, SweepStatus


class RungOut(BaseModel):
    epoch: int
    value: float
    continued: bool


class TrialOut(BaseModel):
    index: int
    job_id: str | None  # None until the trial is launched
    parameters: dict[str, Any]
    status: str  # pending (waiting for a slot), a job status, or cancelled / failed when never launched
    metric: float | None  # the final value of the sweep's metric; while running, the newest epoch's
    epoch: int  # epochs the job has completed or is in
    rung: int | None  # the last rung epoch the trial was judged at
    stopped_early: bool
    rungs: list[RungOut]
    error: str | None = None


class Best(BaseModel):
    job_id: str
    index: int
    metric: float
    parameters: dict[str, Any]


class SweepProgress(BaseModel):
    trials_total: int
    trials_started: int
    trials_finished: int


class SweepSummary(BaseModel):
    id: str
    name: str
    status: str
    method: str
    metric: SweepMetric | None
    max_concurrent: int
    best: Best | None
    progress: SweepProgress
    created_at: UTCDateTime
    finished_at: UTCDateTime | None


class SweepOut(SweepSummary):
    early_terminate: dict[str, Any] | None
    config: dict[str, Any]  # the request as sent
    trials: list[TrialOut]


class SweepList(BaseModel):
    items: list[SweepSummary]


def _finite(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def trials_of(sweep: Sweep, rows: list[Any], latest: dict[str, float]) -> list[TrialOut]:
    """``rows``: ``store.repositories.sweeps.trial_rows`` of this sweep; ``latest``: running
    trials' newest epoch value of the metric."""
    out = []
    for r in rows:
        if r.job_id is not None:
            status = r.status or "deleted"
        elif r.error:
            status = JobStatus.FAILED
        else:
            status = "cancelled" if sweep.status == SweepStatus.CANCELLED else "pending"
        metric = None
        if sweep.metric_name and r.job_id:
            final = (r.final_metrics or {}).get(sweep.metric_name) if r.status in JobStatus.TERMINAL else None
            metric = _finite(final) if final is not None else _finite(latest.get(r.job_id))
        rungs = sorted((RungOut(epoch=int(k), value=v["value"], continued=v["continued"])
                        for k, v in (r.rungs or {}).items()), key=lambda x: x.epoch)
        out.append(TrialOut(index=r.index, job_id=r.job_id, parameters=r.parameters, status=status, metric=metric,
                            epoch=r.epoch or 0, rung=r.rung, stopped_early=bool(r.stopped_early), rungs=rungs,
                            error=r.error))
    return out


def best_of(sweep: Sweep, trials: list[TrialOut]) -> Best | None:
    """The succeeded trial with the best final metric (maximize or minimize); the lower index
    on ties."""
    best = None
    for t in trials:
        if t.status != JobStatus.SUCCEEDED or t.metric is None:
            continue
        if best is None or (t.metric > best.metric if sweep.goal == "maximize" else t.metric < best.metric):
            best = t
    return Best(job_id=best.job_id, index=best.index, metric=best.metric, parameters=best.parameters) if best else None


def summary(sweep: Sweep, trials: list[TrialOut]) -> dict[str, Any]:
    over = {JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED, "deleted"}
    metric = SweepMetric(name=sweep.metric_name, goal=sweep.goal) if sweep.metric_name else None
    return dict(
        id=sweep.id, name=sweep.name, status=sweep.status, method=sweep.method, metric=metric,
        max_concurrent=sweep.max_concurrent, best=best_of(sweep, trials),
        progress=SweepProgress(trials_total=len(trials), trials_started=sum(1 for t in trials if t.job_id),
                               trials_finished=sum(1 for t in trials if t.job_id and t.status in over)),
        created_at=sweep.created_at, finished_at=sweep.finished_at,
    )
