"""What the stored data weighs, and giving space back after deletions.

SQLite databases use incremental auto-vacuum (set when the file is created, or converted once
by ``migrations.upgrade``), so freed pages return to the file system right after a delete;
PostgreSQL frees deleted rows' large values (TOAST) for reuse by (auto)vacuum."""
from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from store.models import Checkpoint, Dataset, DatasetUpload, Job, JobEvent, Metric

log = logging.getLogger(__name__)


def reclaim(session: Session) -> None:
    """After a committed delete: remove the chunk files of filesystem blobs whose owner went
    (deleted by a cascade; files younger than an hour wait, they may be a write in flight)
    and hand SQLite's free pages back to the file system."""
    from store.blobs import open_blobs

    try:
        open_blobs(session).collect()
    except OSError as exc:  # the volume is away: the next deletion collects
        log.info("could not collect orphaned blob files now: %s", exc)
    bind = session.get_bind()
    if bind.dialect.name != "sqlite":
        return
    try:
        with bind.connect() as conn:
            cursor = conn.connection.dbapi_connection.cursor()
            for pragma in ("incremental_vacuum", "wal_checkpoint(TRUNCATE)"):  # the freed pages leave the WAL too
                cursor.execute(f"PRAGMA {pragma}")
                cursor.fetchall()  # step it to the end: a half-run pragma keeps its table locked
            cursor.close()
    except OperationalError as exc:  # busy: the next deletion (or SQLite's own checkpoints) will do it
        log.info("could not reclaim SQLite space now: %s", exc)


def ensure_incremental_vacuum(bind) -> None:
    """Convert an SQLite database made without incremental auto-vacuum (one VACUUM)."""
    if bind.dialect.name != "sqlite":
        return
    with bind.connect() as conn:
        if conn.exec_driver_sql("PRAGMA auto_vacuum").scalar() != 2:
            conn.exec_driver_sql("PRAGMA auto_vacuum=INCREMENTAL")
            conn.exec_driver_sql("VACUUM")


def job_usage(session: Session, *, job_id: str) -> dict[str, int]:
    """Checkpoint bytes and the rows a job keeps."""
    ckpt = session.execute(select(func.count(), func.coalesce(func.sum(Checkpoint.size_bytes), 0))
                           .where(Checkpoint.job_id == job_id)).one()
    return {"checkpoints": int(ckpt[0]), "checkpoint_bytes": int(ckpt[1]),
            "metric_rows": _count(session, Metric, Metric.job_id == job_id),
            "event_rows": _count(session, JobEvent, JobEvent.job_id == job_id)}


def owner_usage(session: Session, *, owner: str) -> dict[str, Any]:
    """What one owner stores: datasets and checkpoints (bytes), jobs and their rows."""
    datasets = session.execute(select(func.count(), func.coalesce(func.sum(Dataset.size_bytes), 0))
                               .where(Dataset.owner == owner, Dataset.deleted_at.is_(None))).one()
    owned = select(Job.id).where(Job.owner == owner).scalar_subquery()
    ckpt = session.execute(select(func.count(), func.coalesce(func.sum(Checkpoint.size_bytes), 0))
                           .where(Checkpoint.job_id.in_(owned))).one()
    return {"datasets": int(datasets[0]), "dataset_bytes": int(datasets[1]),
            "jobs": _count(session, Job, Job.owner == owner),
            "checkpoints": int(ckpt[0]), "checkpoint_bytes": int(ckpt[1]),
            "metric_rows": _count(session, Metric, Metric.job_id.in_(owned)),
            "total_bytes": int(datasets[1]) + int(ckpt[1])}


def _count(session: Session, model, where) -> int:
    return int(session.scalar(select(func.count()).select_from(model).where(where)) or 0)


def quota_left(session: Session, *, owner: str, quota: int) -> int | None:
    """Bytes ``owner`` may still add under ``quota`` (settings.max_storage_bytes_per_owner;
    0: no quota, None back): what it stores (datasets, checkpoints) and what its unfinished
    uploads reserve count. Checked when data arrives; a running job's checkpoints are not
    refused by it, they only count."""
    if not quota:
        return None
    reserved = session.scalar(select(func.coalesce(func.sum(DatasetUpload.size_bytes), 0))
                              .where(DatasetUpload.owner == owner, DatasetUpload.dataset_id.is_(None))) or 0
    return max(0, quota - owner_usage(session, owner=owner)["total_bytes"] - int(reserved))
