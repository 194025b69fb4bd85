"""This worker process as one member of the fleet: what it is (host, address, device kind,
queue, GPUs), the jobs it runs, its heartbeat row in the ``workers`` table, and the GPUs it
holds for each job (``hold``).

Design: a host runs several worker processes (``trainyard worker --gpus ... --processes N``)
that share the host's GPUs; each job takes ``devices`` distinct GPUs through
``worker.gpus.Allocator`` when its task starts and gives them back when it ends. A job whose
GPUs are not free on this host now is deferred (its message re-sent shortly), never started
on GPUs another job holds. The held GPUs reach the ranks as ``TRAINYARD_JOB_GPUS`` (the
engine's ``cuda:<index>`` of each local rank), in the environment so that a training child
process inherits them.
"""
from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache

from config import queues
from config.settings import Settings
from store.db import session_scope
from store.models import Job, JobStatus
from store.repositories import workers
from worker import gpus as gpu_alloc

log = logging.getLogger(__name__)

JOB_GPUS_ENV = "TRAINYARD_JOB_GPUS"


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


@dataclass(frozen=True)
class Identity:
    hostname: str
    address: str
    kind: str
    queue: str
    gpus: tuple[gpu_alloc.Gpu, ...]
    ranks: int  # ranks of one job this host runs (its GPUs; a CPU worker's host_ranks, 0: all)

    @property
    def name(self) -> str:
        return worker_name()  # the pid, after any fork


def identity(settings: Settings, available: list[gpu_alloc.Gpu] | None = None) -> Identity:
    """This process's place in the fleet. ``available``: the host's GPUs (default: what cupy
    sees); TRAINYARD_DEVICE=cpu or TRAINYARD_GPUS=none makes it a CPU worker."""
    if settings.device == "cpu":
        chosen: list[gpu_alloc.Gpu] = []
    else:
        chosen = gpu_alloc.select(settings.gpus, gpu_alloc.visible() if available is None else available)
    kind = queues.GPU if chosen else queues.CPU
    hostname = socket.gethostname()
    return Identity(hostname=hostname, address=settings.worker_address or hostname, kind=kind,
                    queue=queues.name(settings.queue, kind), gpus=tuple(chosen),
                    ranks=len(chosen) if chosen else settings.host_ranks)


_me: Identity | None = None


def _identity(settings: Settings) -> Identity:
    global _me
    if _me is None:  # one identity per process: its GPUs do not change while it runs
        _me = identity(settings)
    return _me


@lru_cache
def _allocator(labels: tuple[gpu_alloc.Gpu, ...], lock_dir: str) -> gpu_alloc.Allocator:
    return gpu_alloc.Allocator(list(labels), lock_dir)


class _Running:
    """The jobs this process runs now, for its heartbeat row."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.jobs: dict[str, dict] = {}
        self.changed = threading.Event()

    def add(self, job_id: str, ranks: list[int], labels: list[str]) -> None:
        with self.lock:
            self.jobs[job_id] = {"job_id": job_id, "ranks": ranks, "gpus": labels}
        self.changed.set()

    def remove(self, job_id: str) -> None:
        with self.lock:
            self.jobs.pop(job_id, None)
        self.changed.set()

    def snapshot(self) -> list[dict]:
        with self.lock:
            return list(self.jobs.values())


RUNNING = _Running()


def _job_needs(settings: Settings, job_id: str) -> tuple[bool, int]:
    """(queued, devices) of the job: only a queued job is about to run."""
    with session_scope(settings.resolved_database_url) as session:
        row = session.get(Job, job_id)
        if row is None:
            return False, 0
        devices = int(((row.plan or {}).get("training") or {}).get("devices", 1))
        return row.status == JobStatus.QUEUED, devices


@contextmanager
def hold(job_id: str, settings: Settings, *, ranks: int | None = None, first_rank: int = 0,
         me: Identity | None = None) -> Iterator[gpu_alloc.Allocation | None]:
    """GPUs for the job this process is about to run: ``ranks`` of them (default: the job's
    ``devices``, at most this host's GPUs; the rest are other hosts'), held until the block
    ends. Yields None when this host has too few free now: the caller defers the job. On a
    CPU worker, and for a job that is not queued (the claim will skip it), it holds none."""
    me = me or _identity(settings)
    if ranks is None:
        queued, devices = _job_needs(settings, job_id)
        ranks = 0 if not queued else min(devices, len(me.gpus) if me.gpus else me.ranks or devices)
    alloc = gpu_alloc.Allocation([], [])
    if me.gpus and ranks:
        lock_dir = str(settings.gpu_lock_dir or gpu_alloc.default_lock_dir())
        alloc = _allocator(me.gpus, lock_dir).acquire(ranks, holder=job_id)
        if alloc is None:
            log.info("job %s needs %d GPUs; fewer are free on this host now", job_id, ranks)
            yield None
            return
        os.environ[JOB_GPUS_ENV] = ",".join(str(i) for i in alloc.indices)
    RUNNING.add(job_id, list(range(first_rank, first_rank + max(ranks, 1))), alloc.labels)
    try:
        yield alloc
    finally:
        os.environ.pop(JOB_GPUS_ENV, None)
        RUNNING.remove(job_id)
        alloc.release()


def job_gpus() -> list[int] | None:
    """The engine device indices this process's job holds (``hold``), None outside one."""
    value = os.environ.get(JOB_GPUS_ENV)
    return [int(v) for v in value.split(",")] if value else None


class Presence(threading.Thread):
    """Writes this process's ``workers`` row every ``worker_heartbeat_s`` (and at once when a
    job starts or ends); removes it on ``stop``. A missed beat is retried at the next one."""

    def __init__(self, settings: Settings, me: Identity | None = None):
        super().__init__(name="fleet-presence", daemon=True)
        self.settings, self.me = settings, me or _identity(settings)
        self._halt = threading.Event()

    def beat(self) -> None:
        me = self.me
        with session_scope(self.settings.resolved_database_url) as session:
            workers.beat(session, name=me.name, hostname=me.hostname, address=me.address, kind=me.kind,
                         queue=me.queue, gpus=[g.label for g in me.gpus], ranks=me.ranks, jobs=RUNNING.snapshot())

    def run(self) -> None:
        while not self._halt.is_set():
            RUNNING.changed.clear()
            try:
                self.beat()
            except Exception as exc:  # noqa: BLE001 - the next beat retries
                log.warning("fleet heartbeat failed: %s", exc)
            RUNNING.changed.wait(self.settings.worker_heartbeat_s)

    def stop(self) -> None:
        self._halt.set()
        RUNNING.changed.set()
        if self.ident is not None:
            self.join(timeout=5)
        try:
            with session_scope(self.settings.resolved_database_url) as session:
                workers.leave(session, name=self.me.name)
        except Exception as exc:  # noqa: BLE001 - the row ages out after the TTL
            log.warning("could not leave the fleet registry: %s", exc)
