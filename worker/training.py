"""The training loop: a job row in, metrics and checkpoints out, on the engine."""
from __future__ import annotations

import io
import json
import logging
import math
import traceback
from typing import Any

import numpy as np

import engine
from engine import nn, optim, spec
from engine.utils.data import DataLoader, TensorDataset
from store.db import session_scope
from store.models import JobStatus
from store.repositories import datasets, jobs
from store.settings import Settings
from worker.data import split_indices
from worker.reporting import JobLost, Reporter

log = logging.getLogger(__name__)
CHECKPOINT_FORMAT = "trainyard.checkpoint.v1"


def build_optimizer(params, config: dict[str, Any]) -> optim.Optimizer:
    kwargs = {k: v for k, v in config.items() if k != "type"}
    if "betas" in kwargs:
        kwargs["betas"] = tuple(kwargs["betas"])
    return getattr(optim, config["type"])(params, **kwargs)


def evaluate(model: nn.Module, loss_fn: nn.Module, x: engine.Tensor, y: engine.Tensor, batch_size: int) -> dict[str, float]:
    """Mean loss and accuracy of ``model`` on (x, y), in eval mode without gradients."""
    model.eval()
    total_loss, correct = 0.0, 0
    with engine.no_grad():
        for start in range(0, x.shape[0], batch_size):
            xb, yb = x[start:start + batch_size], y[start:start + batch_size]
            out = model(xb)
            total_loss += loss_fn(out, yb).item() * xb.shape[0]
            correct += int((out.argmax(dim=1) == yb).sum().item())
    model.train()
    n = x.shape[0]
    return {"val_loss": total_loss / n, "val_accuracy": correct / n}


def checkpoint_bytes(model: nn.Module, *, job_id: str, model_spec: dict, epoch: int, step: int) -> bytes:
    buf = io.BytesIO()
    metadata = {
        "format": CHECKPOINT_FORMAT,
        "job_id": job_id,
        "spec": json.dumps(model_spec),
        "epoch": str(epoch),
        "step": str(step),
    }
    engine.save(model.state_dict(), buf, metadata=metadata)
    return buf.getvalue()


def run_job(job_id: str, settings: Settings) -> str:
    """Train one job end to end. A job that is not queued (already finished, or running
    under another delivery) is skipped, so a redelivered message never trains twice."""
    url = settings.resolved_database_url
    with session_scope(url) as session:
        job = jobs.get(session, job_id=job_id)
        if job is None or job.status != JobStatus.QUEUED:
            log.info("job %s is %s; skipping", job_id, job and job.status)
            return "skipped"
        training, model_spec = job.training, job.model_spec
        inputs, targets = datasets.load_arrays(session, dataset_id=job.dataset_id)
        train_idx, val_idx = split_indices(len(inputs), training["validation_split"], training["seed"])
        steps_per_epoch = math.ceil(len(train_idx) / training["batch_size"])
        attempt = jobs.claim(session, job_id=job_id, total_steps=steps_per_epoch * training["epochs"])
    if attempt is None:
        return "skipped"
    try:
        final = _train(job_id, attempt, settings, model_spec, training, inputs, targets, train_idx, val_idx)
    except JobLost as exc:
        log.warning("%s", exc)
        return "skipped"
    except Exception as exc:  # noqa: BLE001 - any failure is the job's, reported in its row
        log.error("job %s failed:\n%s", job_id, traceback.format_exc())
        with session_scope(url) as session:
            jobs.finish(session, job_id=job_id, attempt=attempt, status=JobStatus.FAILED, error=f"{type(exc).__name__}: {exc}")
        return "failed"
    with session_scope(url) as session:
        jobs.finish(session, job_id=job_id, attempt=attempt, status=JobStatus.SUCCEEDED, final_metrics=final)
    return "succeeded"


def _train(job_id, attempt, settings, model_spec, training, inputs, targets, train_idx, val_idx) -> dict[str, float]:
    engine.manual_seed(training["seed"])
    model = spec.build_model(model_spec)
    loss_fn = nn.CrossEntropyLoss()
    optimizer = build_optimizer(model.parameters(), training["optimizer"])
    x = engine.tensor(inputs, dtype=engine.float32)
    y = engine.tensor(targets.astype(np.int64), dtype=engine.int64)
    x_train, y_train = x[train_idx], y[train_idx]
    x_val, y_val = x[val_idx], y[val_idx]
    generator = engine.Generator().manual_seed(training["seed"])
    loader = DataLoader(
        TensorDataset(x_train, y_train), batch_size=training["batch_size"], shuffle=True, generator=generator
    )
    reporter = Reporter(settings.resolved_database_url, job_id, attempt, settings.metrics_flush_every)
    step, final = 0, {}
    for epoch in range(1, training["epochs"] + 1):
        model.train()
        loss_sum, seen = 0.0, 0
        for xb, yb in loader:
            optimizer.zero_grad()
            loss = loss_fn(model(xb), yb)
            loss.backward()
            optimizer.step()
            step += 1
            value = loss.item()
            if not math.isfinite(value):
                raise FloatingPointError(f"loss became {value} at epoch {epoch}, step {step}")
            loss_sum += value * xb.shape[0]
            seen += xb.shape[0]
            reporter.step_loss(epoch, step, value)
        final = {"train_loss": loss_sum / max(seen, 1)}
        if len(val_idx):
            final.update(evaluate(model, loss_fn, x_val, y_val, training["batch_size"]))
        ckpt = checkpoint_bytes(model, job_id=job_id, model_spec=model_spec, epoch=epoch, step=step)
        reporter.flush(epoch_metrics=final, checkpoint=ckpt)
    return final
