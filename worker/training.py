"""The training loop: a job row in; metrics, checkpoints and a final status out.

A job may run in several attempts (worker lost, graceful stop, infrastructure error); each
resumes from the last checkpoint so that the final weights equal an uninterrupted run's.
"""
from __future__ import annotations

import logging
import math
import os
import socket
import time
import traceback
from dataclasses import dataclass
from datetime import UTC
from typing import Any

import numpy as np

import engine
from engine import nn, optim, spec
from engine.utils.data import DataLoader, TensorDataset
from store.db import session_scope
from store.models import JobStatus
from store.repositories import checkpoints, datasets, jobs, metrics
from store.settings import Settings
from worker import checkpoints as ckpt_files
from worker import failures, parallel
from worker import metrics as head_metrics
from worker.data import heads_of, pick_device, split_indices
from worker.reporting import JobLost, Reporter, SilentReporter
from worker.sampling import EpochSampler
from worker.supervision import Control, Heartbeat

log = logging.getLogger(__name__)


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def build_optimizer(params, config: dict[str, Any]) -> optim.Optimizer:
    kwargs = {k: v for k, v in config.items() if k != "type"}
    if "betas" in kwargs:
        kwargs["betas"] = tuple(kwargs["betas"])
    return getattr(optim, config["type"])(params, **kwargs)


def evaluate(model: nn.Module, heads: list[Head], x: engine.Tensor, ys: list[engine.Tensor],
             batch_size: int) -> dict[str, Any]:
    """Validation loss (the weighted total) and each head's loss and metrics, in eval mode
    without gradients. A single head's names are ``val_loss``, ``val_accuracy``...; several
    heads add ``val_<head>_loss``, ``val_<head>_accuracy``..."""
    model.eval()
    n = x.shape[0]
    totals = [0.0] * len(heads)
    outputs: list[list[np.ndarray]] = [[] for _ in heads]
    with engine.no_grad():
        for start in range(0, n, batch_size):
            out = model(x[start:start + batch_size])
            for i, head in enumerate(heads):
                o = out[head.name] if isinstance(out, dict) else out
                totals[i] += head.loss(o, ys[i][start:start + batch_size]).item() * o.shape[0]
                outputs[i].append(o.cpu().numpy())
    model.train()
    result: dict[str, Any] = {"val_loss": sum(h.weight * t / n for h, t in zip(heads, totals))}
    for i, head in enumerate(heads):
        prefix = "val_" if len(heads) == 1 else f"val_{head.name}_"
        if len(heads) > 1:
            result[prefix + "loss"] = totals[i] / n
        values = head_metrics.compute(head.task, np.concatenate(outputs[i]), ys[i].cpu().numpy(), head.metrics)
        result.update({prefix + k: v for k, v in values.items()})
    return result


@dataclass
class Head:
    """One output head: the model output it reads, its loss and weight, its metrics."""

    name: str
    target: str
    task: str
    loss: nn.Module
    weight: float
    metrics: list[str]

    def prepare(self, out: engine.Tensor, y: engine.Tensor) -> engine.Tensor:
        """Regression targets take the output's shape ((N,) targets for an (N, 1) output)."""
        if self.task == "regression" and tuple(y.shape) != tuple(out.shape):
            return y.reshape(tuple(out.shape))
        return y


def make_heads(training: dict[str, Any], model_spec: dict) -> list[Head]:
    """Heads as the API resolved them; jobs stored without (older ones, tests) get one
    classification head with CrossEntropyLoss and accuracy."""
    resolved = training.get("heads") or {"output": {
        "target": "output", "task": "classification",
        "loss": {"type": spec.DEFAULT_LOSS.get(model_spec.get("zoo"), "CrossEntropyLoss"), "weight": 1.0, "args": {}},
        "metrics": ["accuracy"]}}
    heads = []
    for name, h in resolved.items():
        loss = h["loss"]
        heads.append(Head(name, h["target"], h["task"], getattr(nn, loss["type"])(**loss.get("args", {})),
                          float(loss.get("weight", 1.0)), list(h.get("metrics", []))))
    return heads


def build_scheduler(optimizer: optim.Optimizer, config: dict[str, Any] | None):
    if not config:
        return None
    kwargs = {k: tuple(v) if isinstance(v, list) and k != "milestones" else v for k, v in config.items() if k != "type"}
    return getattr(optim.lr_scheduler, config["type"])(optimizer, **kwargs)


def estimated_memory_bytes(model: nn.Module, optimizer_type: str) -> int:
    """Parameters, gradients and optimizer moments: a floor for the memory training needs."""
    copies = {"Adam": 4, "AdamW": 4, "SGD": 3}.get(optimizer_type, 4)
    return copies * sum(p.numel() * p._data.itemsize for p in model.parameters())


def run_job(job_id: str, settings: Settings) -> str:
    """Run (or resume) one job. A job that is not queued, already finished or running
    under another delivery, is skipped, so a redelivered message never trains twice.
    Returns 'succeeded', 'failed', 'cancelled', 'requeued', 'deferred' or 'skipped'."""
    url = settings.resolved_database_url
    try:
        claimed = _claim(job_id, settings)
    except Exception as exc:
        if failures.classify(exc) == failures.INFRASTRUCTURE:
            raise  # the message is redelivered, or the reaper re-sends the queued job
        log.exception("job %s could not start", job_id)
        with session_scope(url) as session:
            jobs.finish(session, job_id=job_id, status=JobStatus.FAILED, failure_kind=failures.USER,
                        error=f"could not start: {type(exc).__name__}: {exc}")
        return "failed"
    if claimed is None:
        return "skipped"
    if claimed is CAPPED:  # the owner runs as many jobs as allowed: try again shortly
        _send(job_id, countdown=settings.cap_retry_s)
        return "deferred"
    attempt = claimed.attempt

    control = Control()
    heartbeat = Heartbeat(url, job_id, attempt, settings.lease_s, control)
    heartbeat.start()
    loop = None
    try:
        with parallel.process_group(claimed, settings, pick_device(settings.device)) as ranks:
            loop = TrainingLoop(claimed, settings, control, ranks)
            if claimed.resume:
                loop.restore(*claimed.resume)
            final = loop.run()
    except JobLost as exc:
        log.warning("%s", exc)
        return "skipped"
    except failures.Cancelled:
        with session_scope(url) as session:
            jobs.finish(session, job_id=job_id, attempt=attempt, status=JobStatus.CANCELLED,
                        failure_kind=failures.CANCELLED, error="cancelled by the user")
        return "cancelled"
    except Exception as exc:  # noqa: BLE001 - every failure is the job's to report
        return _fail(job_id, attempt, claimed.max_restarts, settings, loop, exc)
    finally:
        heartbeat.stop()
    if final is None:  # graceful stop: checkpointed, back in the queue
        with session_scope(url) as session:
            released = jobs.release(session, job_id=job_id, attempt=attempt, reason="worker stopped; resuming")
            if released:
                jobs.mark_enqueued(session, job_id=job_id)
        if released:
            _send(job_id)
        return "requeued"
    with session_scope(url) as session:
        jobs.finish(session, job_id=job_id, attempt=attempt, status=JobStatus.SUCCEEDED, final_metrics=final)
    return "succeeded"


@dataclass
class Claim:
    """A job this worker now runs (as ``attempt``), with what training it needs."""

    job_id: str
    attempt: int
    model_spec: dict
    training: dict
    max_restarts: int
    deadline: float
    inputs: np.ndarray
    targets: dict[str, np.ndarray]  # per dataset head
    train_idx: np.ndarray
    val_idx: np.ndarray
    resume: tuple[bytes, bytes] | None
    input_shape: list[int] | None = None
    val_data: tuple[np.ndarray, dict[str, np.ndarray]] | None = None  # a separate validation dataset


CAPPED = object()  # _claim's answer when the job's owner is at its concurrency cap


def _claim(job_id: str, settings: Settings) -> Claim | object | None:
    """Claim a queued job and load what training needs; None if it is not ours to run.
    Resuming drops the metrics a lost attempt logged after its last checkpoint."""
    with session_scope(settings.resolved_database_url) as session:
        job = jobs.get(session, job_id=job_id)
        if job is None or job.status != JobStatus.QUEUED:
            log.info("job %s is %s; skipping", job_id, job and job.status)
            return None
        training = job.training
        inputs, targets = datasets.load_all(session, dataset_id=job.dataset_id)
        val_data = None
        if training.get("validation_dataset_id"):
            val_data = datasets.load_all(session, dataset_id=training["validation_dataset_id"])
            train_idx, val_idx = np.arange(len(inputs)), np.arange(0)
        else:
            train_idx, val_idx = split_indices(len(inputs), training["validation_split"], training["seed"])
        per_rank = len(parallel.shard(train_idx, parallel.Ranks(0, int(training.get("devices", 1)))))
        steps_per_epoch = math.ceil(per_rank / training["batch_size"])
        if jobs.owner_at_cap(session, job_id=job_id, max_running=settings.max_running_per_owner):
            return CAPPED
        attempt = jobs.claim(session, job_id=job_id, total_steps=steps_per_epoch * training["epochs"],
                             worker=worker_name(), lease_s=settings.lease_s)
        if attempt is None:
            return None
        session.refresh(job)
        latest = checkpoints.latest_with_data(session, job_id=job_id, with_state=True)
        resume = (latest.data, latest.state) if latest is not None and latest.state else None
        metrics.delete_after(session, job_id=job_id, step=latest.step if resume else 0)
        time_limit = min(job.time_limit_s or settings.max_job_seconds, settings.max_job_seconds)
        return Claim(job_id, attempt, job.model_spec, training, job.max_restarts,
                     _timestamp(job.started_at) + time_limit, inputs, targets, train_idx, val_idx, resume,
                     list(inputs.shape[1:]), val_data)


def _timestamp(value) -> float:
    # SQLite hands back naive datetimes; every stored time is UTC
    return (value if value.tzinfo else value.replace(tzinfo=UTC)).timestamp()


def _send(job_id: str, countdown: float | None = None) -> None:
    from worker.celery_app import send_train

    send_train(job_id, countdown=countdown)


def _fail(job_id: str, attempt: int, max_restarts: int, settings: Settings, loop: TrainingLoop | None,
          exc: Exception) -> str:
    kind = failures.classify(exc)
    log.error("job %s attempt %s: %s failure:\n%s", job_id, attempt, kind, traceback.format_exc())
    message = f"{type(exc).__name__}: {exc}"
    if kind == failures.OOM and loop is not None:
        need = estimated_memory_bytes(loop.model, loop.training["optimizer"]["type"])
        message += f" (the model's parameters, gradients and optimizer state need about {need / 2**20:.1f} MiB)"
    url = settings.resolved_database_url
    for delay in (0.5, 1, 2, 4, 8):
        try:
            with session_scope(url) as session:
                if kind == failures.INFRASTRUCTURE and attempt <= max_restarts:
                    if jobs.release(session, job_id=job_id, attempt=attempt, reason=f"retrying after {message}"):
                        jobs.mark_enqueued(session, job_id=job_id)
                        session.commit()
                        _send(job_id)
                        return "requeued"
                    return "skipped"
                jobs.finish(session, job_id=job_id, attempt=attempt, status=JobStatus.FAILED,
                            error=message, failure_kind=kind)
            return "failed"
        except Exception as db_exc:  # noqa: BLE001 - the database may be restarting
            log.warning("could not record failure of job %s: %s", job_id, db_exc)
            time.sleep(delay)
    return "failed"  # the lease will lapse and the reaper takes over


class TrainingLoop:
    """One attempt's training: model, optimizer and data order, resumable at any step."""

    def __init__(self, claim: Claim, settings: Settings, control: Control, ranks: parallel.Ranks | None = None):
        self.job_id, self.attempt, self.control, self.deadline = claim.job_id, claim.attempt, control, claim.deadline
        self.model_spec, self.training = claim.model_spec, claim.training
        training, train_idx, val_idx = claim.training, claim.train_idx, claim.val_idx
        self.batch_size = training["batch_size"]
        engine.manual_seed(training["seed"])
        self.ranks = ranks = ranks or parallel.Ranks()
        self.device = ranks.device(pick_device(settings.device))
        self.model = spec.build_model(claim.model_spec, claim.input_shape, num_classes=training.get("num_outputs"))
        self.model.to(self.device)
        self.net = parallel.wrap(self.model, ranks)  # what the training forward goes through
        self.heads = make_heads(training, claim.model_spec)
        self.optimizer = build_optimizer(self.model.parameters(), training["optimizer"])
        self.scheduler = build_scheduler(self.optimizer, training.get("scheduler"))
        # OneCycleLR and CyclicLR count optimizer steps; the others count epochs
        self.per_step_schedule = type(self.scheduler).__name__ in ("OneCycleLR", "CyclicLR")
        x = engine.tensor(claim.inputs, dtype=engine.float32, device=self.device)
        ys = [heads_of(claim.targets, h.target, h.task, self.device) for h in self.heads]
        if claim.val_data is not None:
            vx, vys = claim.val_data
            self.x_val = engine.tensor(vx, dtype=engine.float32, device=self.device)
            self.y_val = [heads_of(vys, h.target, h.task, self.device) for h in self.heads]
        else:
            self.x_val, self.y_val = x[val_idx], [y[val_idx] for y in ys]
        self.sampler = EpochSampler(len(train_idx), training["seed"], shard=lambda order: parallel.shard(order, ranks))
        self.loader = DataLoader(TensorDataset(x[train_idx], *[y[train_idx] for y in ys]),
                                 batch_size=self.batch_size, sampler=self.sampler)
        self.steps_per_epoch = math.ceil(len(self.sampler) / self.batch_size)
        self.reporter = (Reporter(settings.resolved_database_url, self.job_id, self.attempt,
                                  settings.metrics_flush_every) if ranks.main else SilentReporter())
        self.every = training.get("checkpoint_every") or self.steps_per_epoch
        self.position: dict[str, Any] = {"epoch": 1, "batch": 0, "step": 0, "loss_sum": 0.0, "seen": 0,
                                         "best": None, "bad_epochs": 0}
        self.final: dict[str, Any] = {}
        self.saved_step = -1  # step of the newest checkpoint this attempt wrote

    def restore(self, model_bytes: bytes, state_bytes: bytes) -> None:
        self.position = ckpt_files.restore(self.model, self.optimizer, model_bytes, state_bytes)
        self.final = self.position.pop("final", {}) or {}
        scheduler_state = self.position.pop("scheduler", None)
        if self.scheduler is not None and scheduler_state:
            self.scheduler.load_state_dict(scheduler_state)

    def checkpoint(self, epoch_metrics: dict[str, float] | None = None) -> None:
        p = self.position
        if not self.ranks.main:  # rank 0 writes the checkpoint for all ranks
            self.saved_step = p["step"]
            return
        model_bytes = ckpt_files.model_file(self.model, job_id=self.job_id, model_spec=self.model_spec,
                                            epoch=p["epoch"], step=p["step"])
        extra = {"scheduler": self.scheduler.state_dict()} if self.scheduler is not None else {}
        state_bytes = ckpt_files.state_file(self.optimizer, {**p, "final": self.final, **extra})
        scalars = {k: v for k, v in (epoch_metrics or {}).items() if isinstance(v, (int, float))}
        self.reporter.flush(epoch_metrics=scalars or None, checkpoint=(model_bytes, state_bytes))
        self.saved_step = p["step"]

    def run(self) -> dict[str, float] | None:
        """Train to the end and return the final metrics, or None after a graceful stop."""
        p = self.position
        epochs = self.training["epochs"]
        if p["batch"] >= self.steps_per_epoch:  # resumed from an end-of-epoch checkpoint
            p.update(epoch=p["epoch"] + 1, batch=0, loss_sum=0.0, seen=0)
        while p["epoch"] <= epochs:
            self.model.train()
            self.sampler.set_epoch(p["epoch"], start=p["batch"] * self.batch_size)
            self.reporter.epoch = p["epoch"]
            for xb, *ybs in self.loader:
                if self._stop_requested():
                    return None
                self._step(xb, ybs)
                if p["batch"] < self.steps_per_epoch and p["step"] % self.every == 0:
                    self.checkpoint()
            self.final = {"train_loss": p["loss_sum"] / max(p["seen"], 1)}
            if len(self.x_val) and self.ranks.main:
                self.final.update(evaluate(self.model, self.heads, self.x_val, self.y_val, self.batch_size))
            if self.scheduler is not None and not self.per_step_schedule:
                if isinstance(self.scheduler, optim.lr_scheduler.ReduceLROnPlateau):
                    watched = self.ranks.from_main(float(self.final.get("val_loss", self.final["train_loss"])))
                    self.scheduler.step(watched)
                else:
                    self.scheduler.step()
            stop = bool(self.ranks.decide(int(self._early_stop())))
            self.checkpoint(epoch_metrics=self.final)
            if p["epoch"] == epochs or stop:
                break
            p.update(epoch=p["epoch"] + 1, batch=0, loss_sum=0.0, seen=0)
        return self.final

    def _early_stop(self) -> bool:
        """Track the watched metric; True once it has not improved for ``patience`` epochs."""
        es = self.training.get("early_stopping")
        if not es:
            return False
        p, value = self.position, self.final.get(es["metric"])
        if not isinstance(value, (int, float)):
            return False
        sign = 1 if es["mode"] == "min" else -1
        if p["best"] is None or sign * (p["best"] - value) > es["min_delta"]:
            p["best"], p["bad_epochs"] = value, 0
        else:
            p["bad_epochs"] += 1
        if p["bad_epochs"] >= es["patience"]:
            self.final["stopped_early_at_epoch"] = p["epoch"]
            return True
        return False

    def _decision(self) -> int:
        """Rank 0 looks at the clock and the control flags; every rank gets its answer."""
        code = parallel.GO
        if self.ranks.main:
            c = self.control
            code = (parallel.ABORT if time.time() > self.deadline else parallel.LOST if c.lost.is_set()
                    else parallel.CANCEL if c.cancel.is_set() else parallel.SHUTDOWN if c.shutdown
                    else parallel.GO)
        return self.ranks.decide(code)

    def _stop_requested(self) -> bool:
        code = self._decision()
        if code == parallel.GO:
            return False
        if code == parallel.ABORT:
            if not self.ranks.main:
                raise failures.Cancelled()  # a follower just leaves; rank 0 reports
            raise failures.TimeLimitExceeded("the job ran past its time limit")
        if code == parallel.LOST:
            raise JobLost(f"job {self.job_id} attempt {self.attempt} was taken over")
        if code == parallel.CANCEL:
            self.reporter.flush()
            raise failures.Cancelled()
        if self.saved_step != self.position["step"]:
            self.checkpoint()  # worker shutting down: save exactly where we are
        else:
            self.reporter.flush()
        return True

    def _step(self, xb, ybs) -> None:
        """One optimizer step on the weighted sum of the heads' losses (one backward)."""
        p = self.position
        self.optimizer.zero_grad()
        out = self.net(xb)
        loss = None
        for head, yb in zip(self.heads, ybs):
            o = out[head.name] if isinstance(out, dict) else out
            term = head.loss(o, head.prepare(o, yb))
            term = term if head.weight == 1.0 else term * head.weight
            loss = term if loss is None else loss + term
        loss.backward()
        if self.training.get("clip_grad_value"):
            nn.utils.clip_grad_value_(self.model.parameters(), self.training["clip_grad_value"])
        if self.training.get("clip_grad_norm"):
            nn.utils.clip_grad_norm_(self.model.parameters(), self.training["clip_grad_norm"])
        self.optimizer.step()
        if self.per_step_schedule:
            self.scheduler.step()
        value = self.ranks.mean(loss.item())
        p["step"] += 1
        p["batch"] += 1
        if not math.isfinite(value):
            if self.training.get("stop_on_nan", True):
                raise FloatingPointError(f"loss became {value} at epoch {p['epoch']}, step {p['step']}")
            return  # not recorded: metrics hold finite numbers only
        p["loss_sum"] += value * xb.shape[0]
        p["seen"] += xb.shape[0]
        self.reporter.step_loss(p["epoch"], p["step"], value)
