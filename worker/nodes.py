"""A host joining a multi-node job: the ``trainyard.join`` task's work.

The host that claimed a job with more ranks than it runs (``worker.parallel.process_group``)
serves the rendezvous TCP store and sends one join message per further host to the job's
queue; an idle worker of that kind takes one, draws its node number from the store (1, 2,
...; a number past the last node means the job has its hosts already), loads the job's data
itself from the database (nothing but small keys goes through the store) and runs ranks
``node * per_node ...`` as followers of rank 0, which alone writes results. A join for an
attempt that is over (the job finished, was requeued, or its first host gave up waiting)
does nothing.
"""
from __future__ import annotations

import logging

import numpy as np

from config.settings import Settings
from engine.distributed import TCPStore
from plan import TrainingPlan, splits
from store.db import session_scope
from store.models import JobStatus
from store.repositories import checkpoints, datasets, jobs, weights
from worker import fleet, loop, parallel

log = logging.getLogger(__name__)

NODE_KEY = "trainyard/node"


def _running(settings: Settings, job_id: str, attempt: int) -> bool:
    with session_scope(settings.resolved_database_url) as session:
        job = jobs.get(session, job_id=job_id)
        return job is not None and job.status == JobStatus.RUNNING and job.attempt == attempt


def load_claim(settings: Settings, job_id: str, attempt: int) -> loop.Claim:
    """What a joined host's ranks train on, as the claiming host loaded it: the data, the split,
    the checkpoint the attempt resumes from and the initial weights (read, never claimed)."""
    with session_scope(settings.resolved_database_url) as session:
        job = jobs.get(session, job_id=job_id)
        plan = TrainingPlan.model_validate(job.plan)
        training = plan.training
        inputs, targets = datasets.load_all(session, dataset_id=job.dataset_id)
        val_data = None
        if training.validation_dataset_id:
            val_data = datasets.load_all(session, dataset_id=training.validation_dataset_id)
            train_idx, val_idx = np.arange(len(inputs)), np.arange(0)
        else:
            train_idx, val_idx = splits.split_indices(len(inputs), training.validation_split, training.seed)
        latest = checkpoints.latest_with_data(session, job_id=job_id, with_state=True)
        resume = (latest.data, latest.state) if latest is not None and latest.state else None
        return loop.Claim(job_id, attempt, plan, job.max_restarts, float("inf"), inputs, targets, train_idx,
                          val_idx, resume, val_data, resume_step=latest.step if resume else 0,
                          init_weights=weights.data(session, weights_id=plan.init.weights_id) if plan.init else None)


def join(job_id: str, attempt: int, address: str, port: int, world: int, per_node: int, settings: Settings) -> str:
    """Run this host's share of attempt ``attempt`` of job ``job_id``. Returns 'joined' (the
    ranks ran to the end), 'stale' (the attempt is over), 'surplus' (the job has its hosts),
    'busy' (this host's GPUs are taken: the join goes back to the queue) or 'lost' (the group
    broke; rank 0's host records the attempt's outcome)."""
    if not _running(settings, job_id, attempt):
        return "stale"
    me = fleet._identity(settings)
    if me.gpus and len(me.gpus) < per_node:  # every host runs as many ranks as the first: find a bigger one
        from worker.celery_app import send_join

        send_join(job_id, attempt, address, port, world, per_node, countdown=1.0)
        return "small"
    device = parallel.pick_device(settings.device)
    with fleet.hold(job_id, settings, ranks=per_node) as held:
        if held is None:
            from worker.celery_app import send_join

            send_join(job_id, attempt, address, port, world, per_node, countdown=1.0)
            return "busy"
        store = TCPStore(address, port, is_master=False, timeout=settings.join_timeout_s)
        try:
            node = store.add(NODE_KEY, 1)
        finally:
            store.close()
        first = node * per_node
        if first >= world:
            return "surplus"
        count = min(per_node, world - first)
        fleet.RUNNING.add(job_id, list(range(first, first + count)), held.labels)
        claim = load_claim(settings, job_id, attempt)
        log.info("job %s attempt %d: ranks %d-%d of %d on this host (node %d)", job_id, attempt, first,
                 first + count - 1, world, node)
        try:
            with parallel.node_group(claim, settings, device, world, loop.follow, first=first, count=count,
                                     address=address, port=port) as ranks:
                loop.follow(claim, settings, ranks)
        except Exception as exc:  # noqa: BLE001 - rank 0's host records how the attempt ended
            log.warning("job %s attempt %d: this host's ranks stopped: %s", job_id, attempt, exc)
            return "lost"
    return "joined"
