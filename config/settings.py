"""Service settings, read once from environment variables (prefix TRAINYARD_, plus the
conventional DATABASE_URL and REDIS_URL)."""
from __future__ import annotations

import os
import threading
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Everything an operator can configure. Unset URLs mean the embedded default:
    SQLite in ``data_dir`` and an embedded Redis started by ``trainyard serve``."""

    model_config = SettingsConfigDict(env_prefix="TRAINYARD_", extra="ignore")

    data_dir: Path = Path(".trainyard")
    database_url: str | None = Field(
        default=None, validation_alias=AliasChoices("DATABASE_URL", "TRAINYARD_DATABASE_URL")
    )
    redis_url: str | None = Field(
        default=None, validation_alias=AliasChoices("REDIS_URL", "TRAINYARD_REDIS_URL")
    )
    queue: str = "training"
    device: str = "auto"  # auto (a GPU when cupy sees one) | cpu | cuda
    max_devices: int = 64  # ranks one data-parallel job may ask for (GPU jobs: the live fleet decides below this)
    # The fleet (worker.fleet, GET /v1/workers): the GPUs this worker may use (all | none |
    # 0,1,3), the address other hosts reach it at for multi-node jobs (default: its hostname),
    # the ranks a CPU worker runs of one job (0: all; more are spread over hosts, for tests of
    # placement), how often it heartbeats, after how long a silent one counts as gone, and how
    # long a multi-node job's first host waits for the others to join.
    gpus: str = "all"
    worker_address: str | None = None
    host_ranks: int = 0
    worker_heartbeat_s: float = 5.0
    worker_ttl_s: float = 30.0
    join_timeout_s: float = 120.0
    gpu_lock_dir: Path | None = None
    # API keys -> owner names, e.g. TRAINYARD_API_KEYS='{"k3y...": "alice"}'. Empty: no
    # authentication and every resource belongs to the owner "local" (the embedded default).
    api_keys: dict[str, str] = {}
    api_host: str = "127.0.0.1"
    api_port: int = 8000

    # Job supervision (seconds). A running job's lease is renewed every lease_s / 3; the
    # reaper requeues jobs whose lease lapsed and re-sends queued jobs whose message may
    # have been lost (a broker restart) after requeue_after_s.
    lease_s: float = 30.0
    reaper_interval_s: float = 5.0
    requeue_after_s: float = 300.0
    max_restarts: int = 3
    max_job_seconds: int = 7 * 24 * 3600
    # Jobs one owner may run at once (0: no cap); further jobs wait queued.
    max_running_per_owner: int = 16
    cap_retry_s: float = 2.0
    # Jobs one owner may have queued (0: no cap): a submit past it is a 429.
    max_queued_per_owner: int = 1000
    # One job's training FLOPs (epochs x samples x FLOPs per sample, backward included); ~1e18
    # is a week on one 2 TFLOP/s GPU. A submit past it is a 422.
    max_training_flops: float = 1e18
    # An attempt trains in a supervised child process of the worker (worker.child), under an
    # address-space cap of the plan's memory estimate x child_memory_margin plus the data and
    # child_memory_overhead_bytes, never above worker_memory_bytes (0: the machine's memory).
    # A cancelled, timed-out or taken-over child that does not reach its next step within
    # step_grace_s is killed.
    train_in_child: bool = True
    child_memory_margin: float = 1.5
    child_memory_overhead_bytes: int = 512 * 1024**2
    worker_memory_bytes: int = 0
    step_grace_s: float = 30.0

    max_request_bytes: int = 64 * 1024 * 1024  # counted as the body arrives, whatever its framing
    # a single-request file upload (.npz/.npy/.csv) is decoded in the API's memory: at most this
    # many bytes of arrays (headers and declared sizes are checked before inflating), and a
    # CSV's rows, columns and cells (counted before anything is allocated)
    max_upload_inflated_bytes: int = 256 * 1024**2
    max_csv_rows: int = 1_000_000
    max_csv_columns: int = 10_000
    max_csv_cells: int = 20_000_000
    # database timeouts (store.db): a dead or black-holed database answers 503 with Retry-After
    # (db_retry_after_s) within about db_ping_timeout_s + db_connect_timeout_s. PostgreSQL gets
    # statement_timeout and the client waits for an answer that long plus 10 s at most;
    # SQLite waits db_busy_timeout_s for a lock.
    db_connect_timeout_s: float = 5.0
    db_ping_timeout_s: float = 3.0
    db_statement_timeout_s: float = 120.0
    db_pool_timeout_s: float = 5.0
    # connections one process may hold: enough for the API's 40 request threads, so a burst of
    # clients queues for a thread rather than for a connection (and waits out db_pool_timeout_s)
    db_pool_size: int = 10
    db_max_overflow: int = 30
    db_busy_timeout_s: float = 10.0
    db_retry_after_s: int = 5
    # how long an Idempotency-Key (POST /v1/jobs, /v1/datasets, /v1/sweeps) is remembered
    idempotency_ttl_s: int = 24 * 3600
    # requests one owner (or one unauthenticated client address) may make per minute, counted
    # in Redis (0: no limit); past it a 429 with Retry-After
    rate_limit_per_minute: int = 0
    max_dataset_samples: int = 1_000_000
    max_epochs: int = 1000
    # limits checked when a dataset or job is submitted (each violation is a 422 naming it)
    max_dataset_bytes: int = 64 * 1024**3  # decoded arrays (stored as blob shards; see blob_*)
    max_parameters: int = 200_000_000
    max_memory_bytes: int = 16 * 1024**3  # static estimate: weights, grads, optimizer, activations
    max_total_steps: int = 10_000_000  # epochs x steps per epoch
    # a running job's metrics and log lines are written every metrics_flush_s seconds, or
    # sooner once metrics_flush_rows wait; while the database is away at most
    # metrics_buffer_rows are kept (the oldest go first)
    metrics_flush_s: float = 0.5
    metrics_flush_rows: int = 5000
    metrics_buffer_rows: int = 1_000_000
    max_log_lines: int = 10_000  # per job, over all attempts; then a "truncated" line
    # sweeps: trials one sweep may have (a grid's combinations, a random search's run_cap) and
    # run at once
    max_sweep_trials: int = 100
    max_sweep_concurrent: int = 16
    # predict: samples one request may send, and the bytes of weights the API process keeps loaded
    max_predict_batch: int = 1024
    model_cache_bytes: int = 512 * 1024**2
    # large bytes (dataset shards, checkpoints, uploads) live in store.blobs: "database" (chunk
    # rows, the embedded default) or "filesystem" (blob_dir, default data_dir/blobs: a volume
    # every API and worker machine mounts); blob_chunk_bytes is the chunk (and shard) size
    blob_backend: str = "database"
    blob_dir: Path | None = None
    blob_chunk_bytes: int = 16 * 1024**2  # one statement or file write each: bounds API memory
    # chunked dataset uploads: the largest part one PUT may carry, and the largest file
    max_upload_part_bytes: int = 32 * 1024**2
    max_upload_bytes: int = 64 * 1024**3
    # what one owner may store (datasets + checkpoints + open uploads; 0: no quota)
    max_storage_bytes_per_owner: int = 500 * 1024**3
    # the worker's local copy of sharded datasets (default data_dir/cache), reused across jobs;
    # past dataset_cache_max_bytes the least recently used datasets are evicted (0: never)
    dataset_cache_dir: Path | None = None
    dataset_cache_max_bytes: int = 100 * 1024**3

    @property
    def resolved_blob_dir(self) -> Path:
        return (self.blob_dir or self.data_dir / "blobs").resolve()

    @property
    def resolved_cache_dir(self) -> Path:
        return (self.dataset_cache_dir or self.data_dir / "cache").resolve()

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'trainyard.db').resolve()}"


@lru_cache
def get_settings() -> Settings:
    return Settings()


_environ_lock = threading.Lock()


def settings_from(env: Mapping[str, str]) -> Settings:
    """The settings a process started with environment ``env`` reads (for a supervisor that
    starts the service's processes with an environment of its own)."""
    with _environ_lock:
        saved = dict(os.environ)
        os.environ.clear()
        os.environ.update(env)
        try:
            return Settings()
        finally:
            os.environ.clear()
            os.environ.update(saved)
