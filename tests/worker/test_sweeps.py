"""Sweeps on the worker, in-process against a real database: launching is exactly-once under
concurrent callers and keeps max_concurrent, a finished trial launches the next, the reaper's
pass finishes the sweep, and asynchronous successive halving stops trials at their rung."""
from __future__ import annotations

import threading

import numpy as np
import pytest
from sqlalchemy import select

from api.idempotency import Idempotency
from api.routes.sweeps import create_sweep
from config.settings import Settings
from plan.sweep import SweepCreate
from store.db import session_scope
from store.models import Job, Sweep, SweepTrial
from store.repositories import datasets, jobs
from store.repositories import sweeps as repo
from worker import sweeps
from worker.lifecycle import run_job
from worker.supervision import Reaper

SPEC = {"layers": [{"type": "Linear", "in_features": 4, "out_features": 2}]}
TRAINING = {"epochs": 2, "batch_size": 8, "optimizer": {"type": "SGD", "lr": 0.1}, "seed": 3, "validation_split": 0.25}


@pytest.fixture
def sent(monkeypatch):
    messages: list[str] = []
    monkeypatch.setattr(sweeps, "_send_train", messages.append)
    return messages


def _dataset(url: str, n: int = 40) -> str:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, 4)).astype(np.float32)
    y = (x[:, 0] + 0.5 * x[:, 1] > 0).astype(np.int64)
    with session_scope(url) as s:
        return datasets.create(s, name="d", inputs=x, targets=y, task="classification").id


def _sweep(url: str, **fields) -> str:
    settings = Settings(database_url=url)  # no broker: the API's sends fail and are left to the reaper
    body = {"name": "s", "base": {"name": "t", "dataset_id": _dataset(url), "model": SPEC, "training": TRAINING},
            "method": "grid", "metric": {"name": "val_loss", "goal": "minimize"}, **fields}
    with session_scope(url) as s:
        no_key = Idempotency(key=None, owner="local", scope="", fingerprint="", ttl_s=0)
        return create_sweep(SweepCreate.model_validate(body), s, settings, "local", no_key).id


def _trials(url: str, sweep_id: str) -> list[tuple[SweepTrial, Job | None]]:
    with session_scope(url) as s:
        rows = s.execute(select(SweepTrial, Job).outerjoin(Job, Job.id == SweepTrial.job_id)
                         .where(SweepTrial.sweep_id == sweep_id).order_by(SweepTrial.index)).all()
        return [(t, j) for t, j in rows]


def _finish(url: str, job_id: str) -> None:
    with session_scope(url) as s:
        attempt = jobs.claim(s, job_id=job_id, worker="w", lease_s=30)
        jobs.finish(s, job_id=job_id, attempt=attempt, status="succeeded", final_metrics={"val_loss": 1.0})


def test_concurrent_callers_launch_each_trial_once_and_keep_max_concurrent(database_url):
    url = database_url
    sweep_id = _sweep(url, parameters={"training.seed": {"values": list(range(10))}}, max_concurrent=3)
    launched_by_api = [j.id for _, j in _trials(url, sweep_id) if j is not None]
    assert len(launched_by_api) == 3
    sends: list[str] = []
    lock = threading.Lock()

    def send(job_id: str) -> None:
        with lock:
            sends.append(job_id)

    def race() -> None:
        barrier = threading.Barrier(8)

        def call():
            barrier.wait()
            sweeps.advance(url, sweep_id, send)

        threads = [threading.Thread(target=call) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

    race()
    assert sends == []  # full: three trials queued
    while True:
        rows = _trials(url, sweep_id)
        active = [j for _, j in rows if j is not None and j.status in ("queued", "running")]
        assert len(active) <= 3
        if not active:
            break
        for job in active:
            _finish(url, job.id)
        race()
    rows = _trials(url, sweep_id)
    job_ids = [j.id for _, j in rows]
    assert len(set(job_ids)) == 10 and all(j.status == "succeeded" and j.sweep_id == sweep_id for _, j in rows)
    assert sorted(sends) == sorted(set(job_ids) - set(launched_by_api))  # each new job sent once
    with session_scope(url) as s:
        assert s.get(Sweep, sweep_id).status == "finished"
        assert s.scalar(select(Job.id).where(Job.sweep_id == sweep_id, Job.id.not_in(job_ids))) is None


def test_a_finished_trial_launches_the_next_and_the_reaper_finishes_the_sweep(database_url, sent):
    url = database_url
    sweep_id = _sweep(url, parameters={"training.optimizer.lr": {"values": [0.3, 0.1, 0.03]}}, max_concurrent=1)
    rows = _trials(url, sweep_id)
    assert [j is not None for _, j in rows] == [True, False, False]
    assert run_job(rows[0][1].id, Settings(database_url=url)) == "succeeded"
    rows = _trials(url, sweep_id)
    assert sent == [rows[1][1].id] and rows[2][1] is None  # launched right after the first ended
    with session_scope(url) as s:  # the second fails, the third is cancelled by hand
        jobs.finish(s, job_id=rows[1][1].id, status="failed", error="boom")
    reaper = Reaper(url, 1.0, 300.0, sent.append)
    reaper.sweep()
    third = _trials(url, sweep_id)[2][1]
    assert third is not None and sent[-1] == third.id
    with session_scope(url) as s:
        jobs.request_cancel(s, job_id=third.id)
    reaper.sweep()
    with session_scope(url) as s:
        sweep = s.get(Sweep, sweep_id)
        assert sweep.status == "finished" and sweep.finished_at is not None


def test_asha_stops_trials_at_their_rung_and_decides_once(database_url, sent):
    url = database_url
    lrs = [0.3, 1e-4, 0.1, 3e-4, 0.03, 1e-3, 0.01, 3e-3]
    sweep_id = _sweep(url, parameters={"training.optimizer.lr": {"values": lrs}, "training.epochs": {"value": 9}},
                      early_terminate={"type": "hyperband", "min_iter": 1, "eta": 3}, max_concurrent=8)
    settings = Settings(database_url=url)
    for _, job in _trials(url, sweep_id):
        assert run_job(job.id, settings) == "succeeded"
    rows = _trials(url, sweep_id)
    spe = rows[0][1].plan["steps_per_epoch"]
    stopped = {t.index: t.rung for t, _ in rows if t.stopped_early}
    assert stopped and 1 in stopped.values(), stopped
    for trial, job in rows:
        assert job.status == "succeeded"
        if trial.stopped_early:
            assert job.step == trial.rung * spe and job.final_metrics["stopped_at_epoch"] == trial.rung
            assert trial.rungs[str(trial.rung)]["continued"] is False
        else:
            assert job.epoch == 9 and job.step == 9 * spe and "stopped_at_epoch" not in job.final_metrics
            assert all(r["continued"] for r in trial.rungs.values()) and set(trial.rungs) == {"1", "3"}
    # the first to reach a rung goes on; each later one only if it beats the top 1/eta so far
    assert not rows[0][0].stopped_early
    # the decision is recorded: asking again (a resumed attempt) gets the same answer
    trial, job = next((t, j) for t, j in rows if t.stopped_early)
    with session_scope(url) as s:
        assert repo.record_rung(s, job_id=job.id, rung=trial.rung, value=-1.0, decide=lambda _: True) is False
    with session_scope(url) as s:
        assert s.get(Sweep, sweep_id).status == "finished"


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_data_parallel_trial_stops_at_its_rung_on_every_rank(database_url, sent):
    url = database_url
    sweep_id = _sweep(url, parameters={"training.optimizer.lr": {"values": [0.3, 1e-5]},
                                       "training.epochs": {"value": 4}, "training.devices": {"value": 2}},
                      early_terminate={"type": "hyperband", "min_iter": 1, "eta": 2})
    settings = Settings(database_url=url)
    for _, job in _trials(url, sweep_id):
        assert run_job(job.id, settings) == "succeeded"
    (first, j0), (second, j1) = _trials(url, sweep_id)
    spe = j0.plan["steps_per_epoch"]
    assert not first.stopped_early and j0.step == 4 * spe
    assert second.stopped_early and second.rung == 1 and j1.step == spe
    assert j1.final_metrics["stopped_at_epoch"] == 1
