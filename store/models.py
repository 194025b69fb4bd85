"""SQLAlchemy 2 ORM models: the tables api and worker share."""
from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    SmallInteger,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


def new_id() -> str:
    return uuid.uuid4().hex


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    pass


class JobStatus:
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    TERMINAL = frozenset({SUCCEEDED, FAILED, CANCELLED})


class Dataset(Base):
    """A dataset: its arrays as one .npz blob, with the facts needed without loading it."""

    __tablename__ = "datasets"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    owner: Mapped[str] = mapped_column(String(64), default="local", index=True)
    name: Mapped[str] = mapped_column(String(200))
    task: Mapped[str] = mapped_column(String(32), default="classification")
    num_samples: Mapped[int] = mapped_column(Integer)
    input_shape: Mapped[list[int]] = mapped_column(JSON)
    input_dtype: Mapped[str] = mapped_column(String(16))
    num_classes: Mapped[int | None] = mapped_column(Integer, nullable=True)
    # per target head: {"task", "shape", "dtype", "num_classes"}; None on rows from before 0002
    # (one classification head named "output")
    targets_info: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    source: Mapped[str | None] = mapped_column(String(32), nullable=True)
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    # None: the arrays are the .npz in ``data`` (rows from before 0010); else the sharded
    # layout (store.repositories.datasets): each array a blob of fixed-size chunks
    layout: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    data: Mapped[bytes] = mapped_column(LargeBinary, deferred=True)  # b"" in the sharded layout
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    # a deleted dataset keeps its row (finished jobs still name it) but not its data
    deleted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class Job(Base):
    """A training job and its live state (status, progress, final metrics).

    ``attempt`` counts claims by workers and is the fencing token: every write a worker
    makes for the job checks it, so a stale worker cannot overwrite a newer attempt. A
    running job's worker keeps ``lease_expires_at`` in the future; a reaper requeues jobs
    whose lease lapsed, up to ``max_restarts`` times.
    """

    __tablename__ = "jobs"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    owner: Mapped[str] = mapped_column(String(64), default="local", index=True)
    name: Mapped[str] = mapped_column(String(200))
    dataset_id: Mapped[str] = mapped_column(ForeignKey("datasets.id"), index=True)
    model_spec: Mapped[dict[str, Any]] = mapped_column(JSON)
    # the training config exactly as the user sent it, and the plan.TrainingPlan built from
    # it at submit time (what the worker follows)
    training: Mapped[dict[str, Any]] = mapped_column(JSON)
    plan: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    status: Mapped[str] = mapped_column(String(16), default=JobStatus.QUEUED, index=True)
    attempt: Mapped[int] = mapped_column(Integer, default=0)
    max_restarts: Mapped[int] = mapped_column(Integer, default=3)
    time_limit_s: Mapped[int | None] = mapped_column(Integer, nullable=True)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    worker: Mapped[str | None] = mapped_column(String(200), nullable=True)
    lease_expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    enqueued_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    failure_kind: Mapped[str | None] = mapped_column(String(32), nullable=True)
    epoch: Mapped[int] = mapped_column(Integer, default=0)
    step: Mapped[int] = mapped_column(Integer, default=0)
    total_steps: Mapped[int] = mapped_column(Integer, default=0)
    final_metrics: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    event_seq: Mapped[int] = mapped_column(Integer, default=0, server_default="0")  # the newest JobEvent.seq
    notes: Mapped[str | None] = mapped_column(Text, nullable=True)
    sweep_id: Mapped[str | None] = mapped_column(String(32), nullable=True, index=True)  # a sweep's trial
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)

    tag_rows: Mapped[list[JobTag]] = relationship(lazy="selectin", cascade="all, delete-orphan",
                                                  passive_deletes=True, order_by="JobTag.tag")

    __table_args__ = (Index("ix_jobs_owner_created", "owner", "created_at", "id"),)

    @property
    def tags(self) -> list[str]:
        return [t.tag for t in self.tag_rows]


class JobTag(Base):
    """A job's tag (a row per tag, so that filtering by tag is an index lookup everywhere)."""

    __tablename__ = "job_tags"

    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True)
    tag: Mapped[str] = mapped_column(String(64), primary_key=True)

    __table_args__ = (Index("ix_job_tags_tag", "tag", "job_id"),)


class Metric(Base):
    """One scalar: per step (``kind='step'``) or per epoch (``kind='epoch'``)."""

    __tablename__ = "metrics"
    __table_args__ = (
        # one value per (job, kind, name, step): a resumed attempt cannot duplicate a step
        UniqueConstraint("job_id", "kind", "name", "step", name="uq_metrics_job_kind_name_step"),
        # a series' rows at pyramid level >= L, in step order: its downsampled history
        Index("ix_metrics_series_level", "job_id", "kind", "name", "level", "step"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(8))
    name: Mapped[str] = mapped_column(String(64))
    epoch: Mapped[int] = mapped_column(Integer)
    step: Mapped[int] = mapped_column(Integer)
    value: Mapped[float] = mapped_column(Float)
    # the largest L at which this row holds the minimum or the maximum of its series' aligned
    # block of 2**L steps (store.repositories.metrics keeps it; write rows only through it)
    level: Mapped[int] = mapped_column(SmallInteger, default=0, server_default="0")


class Checkpoint(Base):
    """A checkpoint: ``data`` is the model's safetensors file (what users download);
    ``state`` holds what exact resume needs beside it (optimizer, RNG, loader position)."""

    __tablename__ = "checkpoints"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    epoch: Mapped[int] = mapped_column(Integer)
    step: Mapped[int] = mapped_column(Integer)
    attempt: Mapped[int] = mapped_column(Integer, default=0)
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    # None: ``data`` and ``state`` hold the files (rows from before 0010); "blobs": they are
    # the blobs checkpoints/<id>/model and /state (store.blobs), any size
    layout: Mapped[str | None] = mapped_column(String(16), nullable=True)
    data: Mapped[bytes] = mapped_column(LargeBinary, deferred=True)  # b"" in the blobs layout
    state: Mapped[bytes | None] = mapped_column(LargeBinary, deferred=True, nullable=True)
    # the value of the job's retention metric (training.checkpoints.metric) at an epoch's end;
    # None for checkpoints taken within an epoch
    metric_value: Mapped[float | None] = mapped_column(Float, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class JobEvent(Base):
    """What happened to a job, in order: ``seq`` counts 1, 2, ... per job (allocated on the
    job row, so concurrent writers commit them in order). The live stream replays these and
    Redis carries new ones to subscribers; ``kind`` is status, progress, metric, checkpoint
    or log, ``data`` the event's JSON body."""

    __tablename__ = "job_events"
    __table_args__ = (UniqueConstraint("job_id", "seq", name="uq_job_events_job_seq"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    seq: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(16))
    attempt: Mapped[int] = mapped_column(Integer, default=0)
    data: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class SweepStatus:
    RUNNING = "running"
    FINISHED = "finished"
    CANCELLED = "cancelled"


class Sweep(Base):
    """A hyperparameter sweep: ``config`` is the request as sent (plan.sweep.SweepCreate);
    its trials are ``SweepTrial`` rows, each an ordinary job once launched."""

    __tablename__ = "sweeps"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    owner: Mapped[str] = mapped_column(String(64), default="local")
    name: Mapped[str] = mapped_column(String(200))
    config: Mapped[dict[str, Any]] = mapped_column(JSON)
    method: Mapped[str] = mapped_column(String(16))
    metric_name: Mapped[str | None] = mapped_column(String(64), nullable=True)
    goal: Mapped[str | None] = mapped_column(String(16), nullable=True)  # maximize | minimize
    max_concurrent: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16), default=SweepStatus.RUNNING, index=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)

    __table_args__ = (Index("ix_sweeps_owner_created", "owner", "created_at"),)


class SweepTrial(Base):
    """One point of a sweep's space. ``job`` holds what creates its job (planned at submit);
    ``job_id`` is set, once, when the trial is launched (a compare-and-set from NULL), so a
    trial waiting for a slot has no job yet. ``rungs`` records the early-termination decisions
    (rung epoch -> the metric there and whether the trial went on); ``rung`` is the last one."""

    __tablename__ = "sweep_trials"
    __table_args__ = (UniqueConstraint("sweep_id", "index", name="uq_sweep_trials_sweep_index"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    sweep_id: Mapped[str] = mapped_column(ForeignKey("sweeps.id", ondelete="CASCADE"))
    index: Mapped[int] = mapped_column(Integer)
    parameters: Mapped[dict[str, Any]] = mapped_column(JSON)
    job: Mapped[dict[str, Any]] = mapped_column(JSON, deferred=True)
    job_id: Mapped[str | None] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), nullable=True,
                                               unique=True)
    rung: Mapped[int | None] = mapped_column(Integer, nullable=True)
    stopped_early: Mapped[bool] = mapped_column(Boolean, default=False)
    rungs: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)  # why it could not be launched


class Evaluation(Base):
    """A trained job's loss and metrics over a dataset, computed as a queued worker task."""

    __tablename__ = "evaluations"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    dataset_id: Mapped[str] = mapped_column(ForeignKey("datasets.id"))
    checkpoint_id: Mapped[str | None] = mapped_column(String(32), nullable=True)  # which one was evaluated
    checkpoint: Mapped[str] = mapped_column(String(32), default="latest")  # what was asked: latest, best or an id
    status: Mapped[str] = mapped_column(String(16), default=JobStatus.QUEUED)  # queued, running, succeeded, failed
    results: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class Weights(Base):
    """Uploaded initial weights (a validated safetensors file) a job may start from."""

    __tablename__ = "weights"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    owner: Mapped[str] = mapped_column(String(64), default="local", index=True)
    name: Mapped[str] = mapped_column(String(200))
    tensors: Mapped[dict[str, Any]] = mapped_column(JSON)  # name -> {"dtype", "shape"}
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    # None: ``data`` holds the file (rows from before 0013); "blobs": the blob weights/<id>/file
    layout: Mapped[str | None] = mapped_column(String(16), nullable=True)
    data: Mapped[bytes] = mapped_column(LargeBinary, deferred=True)  # b"" in the blobs layout
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

class WorkerPresence(Base):
    """A worker process of the fleet as its last heartbeat described it (``store.repositories.
    workers``): live while ``heartbeat_at`` is recent; the API reads the fleet's capacity here."""

    __tablename__ = "workers"

    name: Mapped[str] = mapped_column(String(200), primary_key=True)  # hostname:pid, as jobs.worker
    hostname: Mapped[str] = mapped_column(String(200))
    address: Mapped[str] = mapped_column(String(200))  # where other hosts reach it (multi-node rendezvous)
    kind: Mapped[str] = mapped_column(String(8))  # cpu | gpu: the queue it takes jobs from
    queue: Mapped[str] = mapped_column(String(200))
    gpus: Mapped[list[str]] = mapped_column(JSON, default=list)  # physical ids of the GPUs it may use
    ranks: Mapped[int] = mapped_column(Integer, default=1)  # ranks this host runs of one job
    jobs: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)  # [{"job_id", "ranks", "gpus"}]
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    heartbeat_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, index=True)


class Throughput(Base):
    """A finished job's measured training speed on its worker's device kind, which calibrates
    the time estimates at submit (``store.repositories.throughput``)."""

    __tablename__ = "throughput"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    device: Mapped[str] = mapped_column(String(16), index=True)  # cpu | cuda
    flops_per_s: Mapped[float] = mapped_column(Float)
    job_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    measured_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class DatasetUpload(Base):
    """A resumable chunked dataset upload: the file arrives as ``parts`` of ``part_bytes``
    (the last one shorter), each the chunk of one blob ``uploads/<id>``; ``complete`` turns
    it into a dataset (``dataset_id``) once, and a repeated complete answers that dataset."""

    __tablename__ = "dataset_uploads"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    owner: Mapped[str] = mapped_column(String(64), default="local", index=True)
    name: Mapped[str] = mapped_column(String(200))
    filename: Mapped[str] = mapped_column(String(200))
    options: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)  # task, target_columns
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    part_bytes: Mapped[int] = mapped_column(BigInteger)
    parts: Mapped[int] = mapped_column(Integer)
    sha256: Mapped[str | None] = mapped_column(String(64), nullable=True)  # of the whole file, if given
    dataset_id: Mapped[str | None] = mapped_column(ForeignKey("datasets.id", ondelete="SET NULL"), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Blob(Base):
    """A stored byte string (``store.blobs``): size, SHA-256 and its chunking; the chunks are
    ``blob_chunks`` rows, holding the bytes themselves (backend ``database``) or only their
    size and checksum (``filesystem``: the bytes are files under the blob directory). A blob
    belongs to at most one checkpoint, dataset, upload or weights row and is deleted with it."""

    __tablename__ = "blobs"

    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    backend: Mapped[str] = mapped_column(String(16))
    size_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    chunk_bytes: Mapped[int] = mapped_column(BigInteger)
    chunks: Mapped[int] = mapped_column(Integer, default=0)
    sha256: Mapped[str | None] = mapped_column(String(64), nullable=True)  # None until complete
    checkpoint_id: Mapped[str | None] = mapped_column(ForeignKey("checkpoints.id", ondelete="CASCADE"),
                                                      nullable=True, index=True)
    dataset_id: Mapped[str | None] = mapped_column(ForeignKey("datasets.id", ondelete="CASCADE"),
                                                   nullable=True, index=True)
    upload_id: Mapped[str | None] = mapped_column(ForeignKey("dataset_uploads.id", ondelete="CASCADE"),
                                                  nullable=True, index=True)
    weights_id: Mapped[str | None] = mapped_column(ForeignKey("weights.id", ondelete="CASCADE"),
                                                   nullable=True, index=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class BlobChunk(Base):
    """Chunk ``seq`` (0, 1, ...) of a blob: every chunk but the last is ``chunk_bytes`` long."""

    __tablename__ = "blob_chunks"

    blob_key: Mapped[str] = mapped_column(ForeignKey("blobs.key", ondelete="CASCADE"), primary_key=True)
    seq: Mapped[int] = mapped_column(Integer, primary_key=True)
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    data: Mapped[bytes | None] = mapped_column(LargeBinary, deferred=True, nullable=True)


class IdempotencyKey(Base):
    """The answer a POST with an ``Idempotency-Key`` got, written in the transaction that
    created its resource, so a client that retries (say after a timeout) gets that answer
    again instead of a second resource. Keys belong to an owner and expire (``expires_at``)."""

    __tablename__ = "idempotency_keys"

    owner: Mapped[str] = mapped_column(String(64), primary_key=True)
    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    scope: Mapped[str] = mapped_column(String(100))  # the method and route, e.g. "POST /v1/jobs"
    fingerprint: Mapped[str] = mapped_column(String(64))  # SHA-256 of the scope and the canonical body
    status_code: Mapped[int] = mapped_column(SmallInteger)
    response: Mapped[Any] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
