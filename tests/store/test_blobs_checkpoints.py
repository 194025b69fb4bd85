"""Checkpoints in the blob store, over SQLite and PostgreSQL: a checkpoint larger than a chunk
(a small chunk setting stands in for PostgreSQL's 1 GB limit; bench/checkpoint_blobs.py
writes a real 1.2 GB one) saves in chunks, resumes a job exactly and downloads streamed,
byte-identical; old inline rows read the same; pruning and deleting free the chunks; a write
that fails for a deterministic reason fails the job with it instead of requeueing it."""
from __future__ import annotations

import hashlib
import os

import numpy as np
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from api.main import create_app
from config.settings import Settings, get_settings
from store.db import session_scope
from store.models import Blob, BlobChunk, Checkpoint, JobStatus
from store.repositories import checkpoints, datasets, jobs
from tests.worker.jobs import new_job
from worker import lifecycle
from worker.lifecycle import run_job
from worker.supervision import WORKER_SHUTDOWN

CHUNK = 4096


@pytest.fixture
def settings(database_url, tmp_path, monkeypatch):
    monkeypatch.setenv("TRAINYARD_BLOB_CHUNK_BYTES", str(CHUNK))
    get_settings.cache_clear()
    yield Settings(database_url=database_url, blob_chunk_bytes=CHUNK, dataset_cache_dir=tmp_path / "cache")
    get_settings.cache_clear()


def _chunks(url) -> int:
    with session_scope(url) as s:
        return s.scalar(select(func.count()).select_from(BlobChunk))


SPEC = {"layers": [{"type": "Linear", "in_features": 4, "out_features": 512}, {"type": "ReLU"},
                   {"type": "Linear", "in_features": 512, "out_features": 3}]}
TRAINING = {"epochs": 3, "batch_size": 16, "optimizer": {"type": "Adam", "lr": 0.01}, "seed": 5,
            "validation_split": 0.2, "checkpoint_every": 4}


def _dataset(url) -> str:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(120, 4)).astype(np.float32)
    with session_scope(url) as s:
        return datasets.create(s, name="d", inputs=x, targets=(x[:, 0] > 0).astype(np.int64) + (x[:, 1] > 1),
                               task="classification").id


def test_a_checkpoint_larger_than_a_chunk_saves_resumes_and_downloads_byte_identical(settings, monkeypatch):
    url = settings.resolved_database_url
    ds_id = _dataset(url)
    job_id = new_job(url, dataset_id=ds_id, model=SPEC, training=TRAINING)
    reference = new_job(url, dataset_id=ds_id, model=SPEC, training=TRAINING)
    assert run_job(reference, settings) == "succeeded"
    # the job under test stops after its first epoch (a worker shutting down) and resumes
    from worker import loop

    original, calls = loop.TrainingLoop.checkpoint, []

    def checkpoint_then_stop(self, epoch_metrics=None):
        original(self, epoch_metrics)
        calls.append(1)
        if len(calls) == 2:
            WORKER_SHUTDOWN.set()

    monkeypatch.setattr(loop.TrainingLoop, "checkpoint", checkpoint_then_stop)
    monkeypatch.setattr(lifecycle, "_send", lambda *a, **k: None)
    try:
        assert run_job(job_id, settings) == "requeued"
    finally:
        WORKER_SHUTDOWN.clear()
    monkeypatch.setattr(loop.TrainingLoop, "checkpoint", original)
    with session_scope(url) as s:
        row = checkpoints.find(s, job_id=job_id, which="latest", mode="min")
        assert row.layout == "blobs" and row.size_bytes > 2 * CHUNK
        model = s.get(Blob, f"checkpoints/{row.id}/model")
        assert model.chunks == -(-row.size_bytes // CHUNK) > 2 and model.checkpoint_id == row.id
    assert run_job(job_id, settings) == "succeeded"
    app = create_app()
    app.dependency_overrides[get_settings] = lambda: settings
    with TestClient(app) as client:
        with client.stream("GET", f"/v1/jobs/{job_id}/checkpoints/latest/download") as r:
            assert r.status_code == 200 and int(r.headers["content-length"]) > 2 * CHUNK
            pieces = list(r.iter_bytes())
        mine = b"".join(pieces)
        theirs = client.get(f"/v1/jobs/{reference}/checkpoints/latest/download").content
    with session_scope(url) as s:
        latest = checkpoints.latest_with_data(s, job_id=job_id)
        stored = hashlib.sha256(latest.data).hexdigest()
        assert s.get(Blob, f"checkpoints/{latest.id}/model").sha256 == stored
    assert hashlib.sha256(mine).hexdigest() == stored
    # resumed == uninterrupted, bitwise (the header names the job, so compare the tensors)
    from safetensors.numpy import load

    a, b = load(mine), load(theirs)
    assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


def test_inline_rows_from_before_read_and_stream_the_same(settings):
    url = settings.resolved_database_url
    job_id = new_job(url, dataset_id=_dataset(url), model=SPEC, training=TRAINING)
    data, state = os.urandom(3 * CHUNK + 5), os.urandom(100)
    with session_scope(url) as s:
        s.add(Checkpoint(id="old", job_id=job_id, epoch=1, step=1, size_bytes=len(data), data=data, state=state))
    with session_scope(url) as s:
        got = checkpoints.latest_with_data(s, job_id=job_id, with_state=True)
        assert (got.id, got.data, got.state) == ("old", data, state)
        assert b"".join(checkpoints.stream(s, checkpoints.find(s, job_id=job_id, which="old", mode="min"))) == data


def test_pruning_and_deleting_a_job_free_the_chunks(settings):
    url = settings.resolved_database_url
    job_id = new_job(url, dataset_id=_dataset(url), model=SPEC, training=TRAINING)
    base = _chunks(url)
    with session_scope(url) as s:
        for step in range(1, 4):
            checkpoints.add(s, job_id=job_id, epoch=1, step=step, data=os.urandom(2 * CHUNK), state=b"s")
        assert checkpoints.prune(s, job_id=job_id, keep_last=1, keep_best=0, mode="min")
    assert _chunks(url) == base + 3  # the kept one: two model chunks and one state chunk
    with session_scope(url) as s:
        jobs.delete(s, job_id=job_id)
    assert _chunks(url) == base
    with session_scope(url) as s:
        assert s.scalar(select(func.count()).select_from(Blob).where(Blob.checkpoint_id.is_not(None))) == 0


def test_a_deterministic_checkpoint_write_failure_fails_the_job_with_its_reason(settings, tmp_path, monkeypatch):
    url = settings.resolved_database_url
    job_id = new_job(url, dataset_id=_dataset(url), model=SPEC, training=TRAINING)
    not_a_dir = tmp_path / "volume"
    not_a_dir.write_text("a file where the blob volume should be mounted")
    monkeypatch.setenv("TRAINYARD_BLOB_BACKEND", "filesystem")
    monkeypatch.setenv("TRAINYARD_BLOB_DIR", str(not_a_dir))
    get_settings.cache_clear()
    sent = []
    monkeypatch.setattr(lifecycle, "_send", lambda *a, **k: sent.append(a))
    assert run_job(job_id, settings) == "failed"
    with session_scope(url) as s:
        job = jobs.get(s, job_id=job_id)
        assert job.status == JobStatus.FAILED and job.failure_kind == "user" and not sent
        assert "could not be stored" in job.error and "NotADirectoryError" in job.error
