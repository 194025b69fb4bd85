"""An evaluation on a worker: a job's model with a checkpoint's weights, over a whole
dataset, in eval mode without gradients, in batches: the job's loss (each head's, and the
weighted total the job trained on) and every metric of each head's task, a confusion matrix
for classification heads.

Safe to deliver twice: ``store.repositories.evaluations.start`` takes a queued or running
evaluation (a message redelivered after a worker died runs it again; the computation is
idempotent) and ``finish`` records only the first outcome of a running one.
"""
from __future__ import annotations

import dataclasses
import io
import logging
import math
from typing import Any

import numpy as np
from pydantic import ValidationError

import engine
from config.settings import Settings
from engine import spec
from plan import TrainingPlan
from store.db import session_scope
from store.repositories import checkpoints, datasets, evaluations, jobs
from worker import data, failures, parallel
from worker.builders import build_heads
from worker.data import heads_of
from worker.loop import evaluate
from worker.retry import with_db_retry

log = logging.getLogger(__name__)


@dataclasses.dataclass
class _Inputs:
    job_id: str
    model_spec: dict[str, Any]
    plan: TrainingPlan
    checkpoint_id: str
    weights: bytes
    inputs: np.ndarray
    targets: dict[str, np.ndarray]


def run_evaluation(evaluation_id: str, settings: Settings) -> str:
    """Run evaluation ``evaluation_id`` and store its results; 'succeeded', 'failed' or
    'skipped' (finished already, or gone). Database and broker errors are raised (the task
    retries; the row stays running and the retry runs it again)."""
    url = settings.resolved_database_url
    with session_scope(url) as session:
        if not evaluations.start(session, evaluation_id=evaluation_id):
            log.info("evaluation %s is finished or gone; skipping", evaluation_id)
            return "skipped"
    try:
        loaded = _load(evaluation_id, settings)
        results = compute(loaded, parallel.pick_device(settings.device))
    except Exception as exc:  # noqa: BLE001 - every failure but the infrastructure's is the evaluation's
        if failures.classify(exc) == failures.INFRASTRUCTURE:
            raise
        log.exception("evaluation %s failed", evaluation_id)
        _finish(url, evaluation_id, evaluations.FAILED, error=f"{type(exc).__name__}: {exc}")
        return "failed"
    _finish(url, evaluation_id, evaluations.SUCCEEDED, results=results)
    log.info("evaluation %s of job %s (checkpoint %s) succeeded", evaluation_id, loaded.job_id, loaded.checkpoint_id)
    return "succeeded"


def _finish(url: str, evaluation_id: str, status: str, **outcome) -> None:
    def write() -> None:
        with session_scope(url) as session:
            evaluations.finish(session, evaluation_id=evaluation_id, status=status, **outcome)

    with_db_retry(write, what=f"recording evaluation {evaluation_id}", retry_for_s=30.0)


def _load(evaluation_id: str, settings: Settings) -> _Inputs:
    """The job's plan and spec, the checkpoint's model file and the dataset's arrays."""
    with session_scope(settings.resolved_database_url) as session:
        ev = evaluations.get(session, evaluation_id=evaluation_id)
        job = jobs.get(session, job_id=ev.job_id) if ev is not None else None
        if job is None:
            raise LookupError(f"evaluation {evaluation_id} or its job no longer exists")
        try:
            plan = TrainingPlan.model_validate(job.plan)
        except ValidationError as exc:
            raise ValueError(f"job {job.id} has no valid training plan: {exc}") from exc
        ckpt = checkpoints.get_with_data(session, job_id=job.id, checkpoint_id=ev.checkpoint_id or "")
        if ckpt is None and ev.checkpoint in ("latest", "best"):  # pruned since submit: resolve again
            ckpt = checkpoints.named(session, job_id=job.id, which=ev.checkpoint, mode=plan.retention.mode)
            if ckpt is not None:
                evaluations.set_checkpoint(session, evaluation_id=evaluation_id, checkpoint_id=ckpt.id)
        if ckpt is None:
            raise LookupError(f"checkpoint {ev.checkpoint_id or ev.checkpoint} of job {job.id} no longer exists")
        ds = datasets.get(session, dataset_id=ev.dataset_id)
        if ds is None:
            raise LookupError(f"dataset {ev.dataset_id} was deleted")
        inputs, targets = data.load(session, dataset_id=ev.dataset_id, settings=settings)  # mapped if sharded
        return _Inputs(job.id, job.model_spec, plan, ckpt.id, ckpt.data, inputs, targets)


def _all_metrics(task: str, asked: list[str]) -> list[str]:
    """Every metric of the task (the job's own top-k ones included), a confusion matrix too."""
    if task == "classification":
        return ["accuracy", "precision", "recall", "f1", *(m for m in asked if m.startswith("top")),
                "confusion_matrix"]
    return ["mse", "mae", "r2"]


def compute(loaded: _Inputs, device: str = "cpu") -> dict[str, Any]:
    """The loss and metrics of the checkpoint's model over the whole dataset (JSON-ready)."""
    plan = loaded.plan
    model = spec.build_model(loaded.model_spec, plan.input_shape, num_classes=plan.num_outputs)
    model.load_state_dict(engine.load(io.BytesIO(loaded.weights)))
    model.to(device)
    outputs = spec.validate(loaded.model_spec, plan.input_shape, num_classes=plan.num_outputs).outputs
    pairs = evaluations.target_heads({h: hp.target for h, hp in plan.heads.items()}, loaded.targets)
    n = len(loaded.inputs)
    x = (data.MappedInputs(loaded.inputs, np.arange(n), device) if isinstance(loaded.inputs, data.MappedArray)
         else engine.tensor(loaded.inputs, dtype=engine.float32, device=device))  # batches read as evaluated
    # each head once with weight 1 (so that a single head's loss is reported as well) and all
    # of its task's metrics; the job's weights make the total below
    heads = [dataclasses.replace(h, weight=1.0, metrics=_all_metrics(h.task, h.metrics))
             for h in build_heads(plan.heads)]
    ys = []
    for h in heads:
        if pairs[h.name] is None:
            raise ValueError(f"the dataset has no target head {h.target!r}")
        y = heads_of(loaded.targets, pairs[h.name], h.task, device)
        if h.task == "regression":  # targets take the output's shape, as in training
            y = y.reshape((n, *outputs[h.name][1:]))
        ys.append(y)
    found = evaluate(model, heads, x, ys, plan.training.batch_size)
    per_head: dict[str, dict[str, Any]] = {}
    for h in heads:
        prefix = "val_" if len(heads) == 1 else f"val_{h.name}_"
        loss = found["val_loss"] if len(heads) == 1 else found[prefix + "loss"]
        per_head[h.name] = {"target": pairs[h.name], "task": h.task, "weight": plan.heads[h.name].loss.weight,
                            "loss": loss, **{m: found[prefix + m] for m in h.metrics if prefix + m in found}}
    total = sum(plan.heads[name].loss.weight * head["loss"] for name, head in per_head.items())
    return _finite({"num_samples": n, "checkpoint_id": loaded.checkpoint_id, "loss": total, "heads": per_head})


def _finite(value: Any) -> Any:
    """NaN and infinities become None (JSON has no such numbers)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value
