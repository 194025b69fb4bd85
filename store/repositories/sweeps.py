"""Sweeps and their trials: creation, reads, launching, early-termination decisions, cancel
and delete.

A trial becomes a job only when it is launched. ``advance`` launches a sweep's next trials
while fewer than ``max_concurrent`` of its jobs are queued or running, and marks the sweep
finished once every trial is over. It runs with the sweep row locked (``SELECT ... FOR
UPDATE`` on PostgreSQL; SQLite write transactions here are exclusive), and each launch is
also a compare-and-set of the trial's ``job_id`` from NULL, in the transaction that creates
the job, so concurrent callers (the API, every worker's reaper, a worker that just finished a
trial) never launch a trial twice or exceed the concurrency. The caller commits, then sends
the new jobs' messages (a lost message is re-sent by the reaper like any queued job's).
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import delete as sa_delete
from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, undefer

from store.models import Job, JobStatus, Metric, Sweep, SweepStatus, SweepTrial, utcnow
from store.repositories import jobs

ACTIVE = (JobStatus.QUEUED, JobStatus.RUNNING)


class _Taken(Exception):
    """Another caller launched the trial first."""


def create(session: Session, *, owner: str, name: str, config: dict[str, Any], method: str,
           metric_name: str | None, goal: str | None, max_concurrent: int,
           trials: list[tuple[dict[str, Any], dict[str, Any]]]) -> Sweep:
    """A running sweep with its trials ((parameters, job) each, in order), none launched yet.
    ``job`` holds the keyword arguments of ``store.repositories.jobs.create`` (but owner)."""
    sweep = Sweep(owner=owner, name=name, config=config, method=method, metric_name=metric_name, goal=goal,
                  max_concurrent=max_concurrent, status=SweepStatus.RUNNING)
    session.add(sweep)
    session.flush()
    session.add_all([SweepTrial(sweep_id=sweep.id, index=i, parameters=params, job=job, rungs={})
                     for i, (params, job) in enumerate(trials)])
    session.flush()
    return sweep


def get(session: Session, *, sweep_id: str, owner: str | None = None) -> Sweep | None:
    sweep = session.get(Sweep, sweep_id)
    return sweep if sweep is not None and owner in (None, sweep.owner) else None


def list_all(session: Session, *, owner: str, limit: int = 100, status: str | None = None) -> list[Sweep]:
    query = select(Sweep).where(Sweep.owner == owner).order_by(Sweep.created_at.desc(), Sweep.id.desc())
    if status:
        query = query.where(Sweep.status == status)
    return list(session.scalars(query.limit(limit)))


def running_ids(session: Session) -> list[str]:
    return list(session.scalars(select(Sweep.id).where(Sweep.status == SweepStatus.RUNNING)))


def _lock(session: Session, sweep_id: str) -> Sweep | None:
    query = select(Sweep).where(Sweep.id == sweep_id).with_for_update().execution_options(populate_existing=True)
    return session.scalars(query).one_or_none()


def trial_rows(session: Session, *, sweep_ids: list[str]) -> list[Any]:
    """Each trial of the sweeps with its job's state (None columns for a trial not launched
    or whose job was deleted), in order."""
    query = (
        select(SweepTrial.sweep_id, SweepTrial.index, SweepTrial.parameters, SweepTrial.job_id, SweepTrial.rung,
               SweepTrial.stopped_early, SweepTrial.rungs, SweepTrial.error, Job.status, Job.final_metrics,
               Job.epoch, Job.step)
        .outerjoin(Job, Job.id == SweepTrial.job_id)
        .where(SweepTrial.sweep_id.in_(sweep_ids))
        .order_by(SweepTrial.sweep_id, SweepTrial.index)
    )
    return list(session.execute(query))


def latest_epoch_values(session: Session, *, job_ids: list[str], name: str) -> dict[str, float]:
    """The newest epoch value of metric ``name`` of each job (for trials still running)."""
    if not job_ids:
        return {}
    rows = session.execute(
        select(Metric.job_id, Metric.value)
        .where(Metric.job_id.in_(job_ids), Metric.kind == "epoch", Metric.name == name)
        .order_by(Metric.step)
    )
    return {job_id: value for job_id, value in rows}


def advance(session: Session, *, sweep_id: str) -> list[str]:
    """Launch the sweep's next trials while it has room, then mark it finished if every trial
    is over. Returns the ids of the jobs created (queued; the caller commits, then sends)."""
    sweep = _lock(session, sweep_id)
    if sweep is None or sweep.status != SweepStatus.RUNNING:
        return []
    active = session.scalar(
        select(func.count()).select_from(SweepTrial).join(Job, Job.id == SweepTrial.job_id)
        .where(SweepTrial.sweep_id == sweep_id, Job.status.in_(ACTIVE))
    )
    launched: list[str] = []
    room = sweep.max_concurrent - active
    if room > 0:
        pending = session.scalars(
            select(SweepTrial).where(SweepTrial.sweep_id == sweep_id, SweepTrial.job_id.is_(None),
                                     SweepTrial.error.is_(None))
            .order_by(SweepTrial.index).limit(room).options(undefer(SweepTrial.job))
        ).all()
        for trial in pending:
            job_id = _launch(session, sweep, trial)
            if job_id:
                launched.append(job_id)
    if not launched and not active:
        waiting = session.scalar(select(func.count()).select_from(SweepTrial).where(
            SweepTrial.sweep_id == sweep_id, SweepTrial.job_id.is_(None), SweepTrial.error.is_(None)))
        if not waiting:
            sweep.status, sweep.finished_at = SweepStatus.FINISHED, utcnow()
            session.flush()
    return launched


def _launch(session: Session, sweep: Sweep, trial: SweepTrial) -> str | None:
    """Create the trial's queued job and claim the trial for it (compare-and-set from NULL)."""
    try:
        with session.begin_nested():
            job = jobs.create(session, owner=sweep.owner, **trial.job)
            job.sweep_id = sweep.id
            session.flush()
            claimed = session.execute(
                update(SweepTrial).where(SweepTrial.id == trial.id, SweepTrial.job_id.is_(None))
                .values(job_id=job.id).execution_options(synchronize_session=False)
            ).rowcount
            if claimed != 1:
                raise _Taken()
        return job.id
    except _Taken:
        return None
    except IntegrityError as exc:  # e.g. its dataset was deleted since the sweep was submitted
        session.execute(update(SweepTrial).where(SweepTrial.id == trial.id, SweepTrial.job_id.is_(None))
                        .values(error=f"could not launch: {exc.orig}"[:2000]))
        return None


def cancel(session: Session, *, sweep_id: str) -> bool:
    """running -> cancelled; its queued trials' jobs are cancelled at once, running ones stop
    at their next step, trials not launched never are. False if the sweep was not running."""
    if not session.execute(
        update(Sweep).where(Sweep.id == sweep_id, Sweep.status == SweepStatus.RUNNING)
        .values(status=SweepStatus.CANCELLED, finished_at=utcnow())
    ).rowcount:
        return False
    active = session.scalars(
        select(Job.id).join(SweepTrial, SweepTrial.job_id == Job.id)
        .where(SweepTrial.sweep_id == sweep_id, Job.status.in_(ACTIVE))
    ).all()
    for job_id in active:
        jobs.request_cancel(session, job_id=job_id)
    return True


def delete(session: Session, *, sweep_id: str) -> bool:
    """Cancel the sweep (if running), then delete it, its trials and its trial jobs with their
    metrics, events, tags and checkpoints (ON DELETE CASCADE from jobs)."""
    cancel(session, sweep_id=sweep_id)
    job_ids = session.scalars(select(SweepTrial.job_id).where(SweepTrial.sweep_id == sweep_id,
                                                              SweepTrial.job_id.is_not(None))).all()
    session.execute(sa_delete(SweepTrial).where(SweepTrial.sweep_id == sweep_id))
    if job_ids:
        session.execute(sa_delete(Job).where(Job.id.in_(job_ids)))
    # a trial job whose trial row went first (a concurrent launch cannot: the sweep is cancelled)
    session.execute(sa_delete(Job).where(Job.sweep_id == sweep_id))
    return session.execute(sa_delete(Sweep).where(Sweep.id == sweep_id)).rowcount == 1


# -- early termination ------------------------------------------------------------------------
def rung_context(session: Session, *, job_id: str) -> tuple[dict[str, Any], str | None] | None:
    """(the sweep's request, its goal) if the job is one of a sweep's trials, else None."""
    row = session.execute(
        select(Sweep.config, Sweep.goal).join(SweepTrial, SweepTrial.sweep_id == Sweep.id)
        .where(SweepTrial.job_id == job_id)
    ).one_or_none()
    return (row.config, row.goal) if row is not None else None


def record_rung(session: Session, *, job_id: str, rung: int, value: float,
                decide: Callable[[list[float]], bool]) -> bool | None:
    """Decide, once, whether the job's trial goes on past epoch ``rung``: ``decide`` gets the
    values other trials of the sweep recorded at that rung. Decisions are serialized per sweep
    (its row is locked) and recorded on the trial, so asking again (a resumed attempt) gets
    the same answer, and a trial stopped at an earlier rung stays stopped. None if the job is
    not a trial."""
    sweep_id = session.scalar(select(SweepTrial.sweep_id).where(SweepTrial.job_id == job_id))
    if sweep_id is None or _lock(session, sweep_id) is None:
        return None
    trials = session.scalars(select(SweepTrial).where(SweepTrial.sweep_id == sweep_id)
                             .execution_options(populate_existing=True)).all()
    trial = next(t for t in trials if t.job_id == job_id)
    key = str(rung)
    if trial.stopped_early:
        return False
    if key in (trial.rungs or {}):
        return bool(trial.rungs[key]["continued"])
    others = [t.rungs[key]["value"] for t in trials if t is not trial and key in (t.rungs or {})]
    go_on = bool(decide(others))
    trial.rungs = {**(trial.rungs or {}), key: {"value": value, "continued": go_on}}
    trial.rung, trial.stopped_early = rung, not go_on
    session.flush()
    return go_on
