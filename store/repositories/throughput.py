"""Measured training speed per device kind: what finished jobs achieved, in FLOP/s."""
from __future__ import annotations

import statistics

from sqlalchemy import select
from sqlalchemy.orm import Session

from store.models import Throughput

RECENT = 20  # the estimate is the median of this many newest measurements


def record(session: Session, *, device: str, flops_per_s: float, job_id: str | None = None) -> None:
    session.add(Throughput(device=device, flops_per_s=flops_per_s, job_id=job_id))


def recent_medians(session: Session, *, devices) -> dict[str, tuple[float | None, int]]:
    """``recent_median`` of each device kind."""
    return {d: recent_median(session, device=d) for d in devices}


def recent_median(session: Session, *, device: str) -> tuple[float | None, int]:
    """(median FLOP/s of the newest measurements, how many there were)."""
    values = list(session.scalars(select(Throughput.flops_per_s).where(Throughput.device == device)
                                  .order_by(Throughput.measured_at.desc(), Throughput.id.desc()).limit(RECENT)))
    return (statistics.median(values) if values else None), len(values)
