"""The results writer: a step's loss reaches the database within about a second without
waiting for more steps; a locked database never blocks the training loop, and nothing is
lost or duplicated once it is back; buffers and log lines are bounded."""
from __future__ import annotations

import sqlite3
import time

import numpy as np
import pytest

from store.db import session_scope
from store.repositories import datasets, events, jobs, metrics
from tests.e2e.helpers import eventually
from tests.worker.jobs import new_job
from worker.reporting import Reporter

SPEC = {"layers": [{"type": "Linear", "in_features": 2, "out_features": 2}]}
TRAINING = {"epochs": 1, "batch_size": 2, "optimizer": {"type": "SGD", "lr": 0.1}}


@pytest.fixture
def running_job(database_url):
    with session_scope(database_url) as s:
        ds_id = datasets.create(s, name="d", inputs=np.zeros((8, 2), np.float32), targets=np.arange(8) % 2,
                                task="classification").id
    job_id = new_job(database_url, dataset_id=ds_id, model=SPEC, training=TRAINING)
    with session_scope(database_url) as s:
        assert jobs.claim(s, job_id=job_id, worker="w", lease_s=60) == 1
    return job_id


def _losses(url: str, job_id: str) -> list[int]:
    with session_scope(url) as s:
        return [m.step for m in metrics.for_job(s, job_id=job_id, kind="step") if m.name == "loss"]


def test_a_step_reaches_the_database_within_a_second_with_progress(database_url, running_job):
    reporter = Reporter(database_url, running_job, 1, total_steps=4, epochs=1, flush_s=0.5)
    try:
        reporter.step(1, 1, {"loss": 0.5, "lr": 0.1}, samples=2)
        assert eventually(lambda: _losses(database_url, running_job) == [1], timeout=2.0)
        with session_scope(database_url) as s:
            assert jobs.get(s, job_id=running_job).step == 1
            kinds = [e.kind for e in events.after(s, job_id=running_job, seq=0)]
        assert kinds[-2:] == ["metric", "progress"]
    finally:
        reporter.close()


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_locked_database_does_not_block_steps_and_loses_nothing(database_url, running_job):
    path = database_url.removeprefix("sqlite:///")
    reporter = Reporter(database_url, running_job, 1, total_steps=5000, epochs=1, flush_s=0.1)
    locker = sqlite3.connect(path, isolation_level=None)
    try:
        locker.execute("BEGIN EXCLUSIVE")
        for step in range(1, 2001):
            reporter.step(1, step, {"loss": 1.0 / step}, samples=2)
        # the loop went on although nothing could be written
        assert _losses_unlocked_count(locker, running_job) == 0
        locker.execute("COMMIT")
        assert eventually(lambda: _losses(database_url, running_job) == list(range(1, 2001)), timeout=30.0)
    finally:
        locker.close()
        reporter.close()


def _losses_unlocked_count(locker, job_id: str) -> int:
    return locker.execute("SELECT count(*) FROM metrics WHERE job_id = ?", (job_id,)).fetchone()[0]


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_the_buffer_is_bounded_and_says_what_it_dropped(database_url, running_job):
    path = database_url.removeprefix("sqlite:///")
    reporter = Reporter(database_url, running_job, 1, total_steps=100, epochs=1, flush_s=0.1, buffer_rows=20)
    locker = sqlite3.connect(path, isolation_level=None)
    try:
        locker.execute("BEGIN EXCLUSIVE")
        for step in range(1, 31):
            reporter.step(1, step, {"loss": 1.0}, samples=2)
        locker.execute("COMMIT")
        assert eventually(lambda: _losses(database_url, running_job) == list(range(21, 31)), timeout=30.0)
    finally:
        locker.close()
        reporter.close()
    with session_scope(database_url) as s:
        lines = [line["message"] for e in events.after(s, job_id=running_job, seq=0, kinds=("log",))
                 for line in e.data["lines"]]
    # 30 loss rows and 29 samples/s rows (none for the first step), of which the newest 20 are kept
    assert any(m.startswith("39 metric rows were dropped") for m in lines)


def test_log_lines_are_capped_per_job_with_a_marker(database_url, running_job):
    reporter = Reporter(database_url, running_job, 1, total_steps=1, epochs=1, max_log_lines=3)
    for i in range(5):
        reporter.log_line("INFO", "test", f"line {i}", time.time())
    reporter.flush()
    reporter.close()
    again = Reporter(database_url, running_job, 1, total_steps=1, epochs=1, max_log_lines=3)
    again.log_line("INFO", "test", "one more", time.time())
    again.close()
    with session_scope(database_url) as s:
        lines = [line["message"] for e in events.after(s, job_id=running_job, seq=0, kinds=("log",))
                 for line in e.data["lines"]]
    assert lines == ["line 0", "line 1", events.TRUNCATED]


def test_an_epochs_last_step_commits_with_its_epoch_metrics(database_url, running_job):
    reporter = Reporter(database_url, running_job, 1, total_steps=2, epochs=1, flush_s=0.05)
    try:
        reporter.step(1, 1, {"loss": 1.0}, samples=2)
        reporter.step(1, 2, {"loss": 0.5}, samples=2, hold=True)
        assert eventually(lambda: _losses(database_url, running_job) == [1])
        time.sleep(0.3)  # the writer runs several times: the held step stays back
        assert _losses(database_url, running_job) == [1]
        reporter.flush(epoch_metrics={"train_loss": 0.7})
        with session_scope(database_url) as s:
            rows = [(m.kind, m.name, m.step) for m in metrics.for_job(s, job_id=running_job) if m.step == 2]
            batches = [e.data["rows"] for e in events.after(s, job_id=running_job, seq=0, kinds=("metric",))]
        assert sorted(rows) == [("epoch", "train_loss", 2), ("step", "loss", 2), ("step", "samples_per_s", 2)]
        assert {r["step"] for r in batches[-1]} == {2} and len(batches[-1]) == 3  # one transaction, one event
    finally:
        reporter.close()
