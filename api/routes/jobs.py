"""/v1/jobs: submit (validate against the dataset and the limits, commit, then enqueue),
list, read and cancel jobs."""
from __future__ import annotations

import inspect
import logging
import math
import re
from typing import Any

from fastapi import APIRouter, HTTPException, status

from api import queue
from api.auth import OwnerDep
from api.deps import SessionDep, SettingsDep
from api.errors import FieldError
from api.schemas.jobs import JobCreate, JobList, JobOut
from engine import nn, spec
from engine.optim import lr_scheduler
from store.models import Job
from store.repositories import datasets, jobs
from store.settings import Settings

router = APIRouter(prefix="/jobs", tags=["jobs"])
log = logging.getLogger(__name__)

CLASS_LOSSES = ("CrossEntropyLoss", "NLLLoss", "MultiMarginLoss")
VALUE_LOSSES = ("MSELoss", "L1Loss", "HuberLoss", "SmoothL1Loss", "BCEWithLogitsLoss")
CLASS_METRICS = ("accuracy", "precision", "recall", "f1", "confusion_matrix")
VALUE_METRICS = ("mse", "mae", "r2")
# schedulers whose arguments are functions or other schedulers: not expressible in JSON
NOT_FROM_JSON = ("LRScheduler", "LambdaLR", "MultiplicativeLR", "SequentialLR", "ChainedScheduler")
_TOPK = re.compile(r"^top([1-9][0-9]?)_accuracy$")


def get_job_or_404(session: SessionDep, job_id: str, owner: str) -> Job:
    job = jobs.get(session, job_id=job_id, owner=owner)
    if job is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"job {job_id} not found")
    return job


def dataset_facts(session, dataset_id: str, loc: list, owner: str) -> dict[str, Any]:
    """Shape facts of a dataset: input shape, heads, and the output count a zoo model gets."""
    ds = datasets.get(session, dataset_id=dataset_id, owner=owner)
    if ds is None:
        raise FieldError(loc, f"dataset {dataset_id} does not exist")
    heads = datasets.targets_info(ds)
    first = next(iter(heads.values()))
    outputs = first["num_classes"] if first["task"] == "classification" else max(1, math.prod(first["shape"]))
    return {"input_shape": list(ds.input_shape), "heads": heads, "num_outputs": outputs if len(heads) == 1 else None,
            "num_samples": ds.num_samples}


def check_model_limits(report: spec.Report, settings: Settings, batch_size: int) -> None:
    if report.parameters > settings.max_parameters:
        raise FieldError(["body", "model"], f"the model has {report.parameters} parameters, over the limit "
                                            f"max_parameters ({settings.max_parameters})")
    need = report.training_memory_bytes(batch_size)
    if need > settings.max_memory_bytes:
        raise FieldError(["body", "model"], f"training needs about {need} bytes (weights, gradients, optimizer "
                                            f"state and activations at batch_size {batch_size}), over the limit "
                                            f"max_memory_bytes ({settings.max_memory_bytes})")


def _check_args(loc: list, cls: type, args: dict, skip: tuple = ()) -> None:
    params = inspect.signature(cls.__init__).parameters
    ok = {n for n, p in params.items() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)} - {"self", *skip}
    for k, v in args.items():
        if k not in ok:
            raise FieldError(loc + [k], f"{cls.__name__} has no argument {k[:80]!r}; it takes {', '.join(sorted(ok))}")
        if not (v is None or isinstance(v, (bool, str)) or isinstance(v, (int, float)) and math.isfinite(v)
                or isinstance(v, list) and len(v) <= 64 and all(isinstance(i, (int, float)) for i in v)):
            raise FieldError(loc + [k], "must be a finite number, string, boolean or a short list of numbers")
    missing = [n for n, p in params.items() if n in ok and p.default is inspect.Parameter.empty and n not in args]
    if missing:
        raise FieldError(loc, f"{cls.__name__} needs argument(s) {', '.join(missing)}")


def _head_loss(loc: list, cfg: Any, task: str) -> dict[str, Any]:
    if not isinstance(cfg, dict):
        raise FieldError(loc, "must be an object with a loss 'type'")
    cfg = dict(cfg)
    name = cfg.pop("type", "CrossEntropyLoss" if task == "classification" else "MSELoss")
    weight = cfg.pop("weight", 1.0)
    allowed = CLASS_LOSSES if task == "classification" else VALUE_LOSSES
    if name not in allowed:
        raise FieldError(loc + ["type"], f"{str(name)[:80]!r} is not a loss for a {task} head; use one of {', '.join(allowed)}")
    if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not math.isfinite(weight) or weight < 0:
        raise FieldError(loc + ["weight"], "must be a finite number >= 0")
    _check_args(loc, getattr(nn, name), cfg, skip=("weight", "size_average", "reduce", "reduction"))
    return {"type": name, "weight": float(weight), "args": cfg}


def _metrics(loc: list, names: list[str], task: str) -> list[str]:
    allowed = CLASS_METRICS if task == "classification" else VALUE_METRICS
    for i, m in enumerate(names):
        if m not in allowed and not (task == "classification" and _TOPK.match(m)):
            raise FieldError(loc + [i], f"{m[:80]!r} is not a metric for a {task} head; use "
                                        f"{', '.join(allowed)}{', top<k>_accuracy' if task == 'classification' else ''}")
    return list(dict.fromkeys(names))


def resolve_heads(body: JobCreate, report: spec.Report, heads: dict[str, dict]) -> dict[str, dict]:
    """Model output head -> dataset targets, loss, weight and metrics; checks the output shapes."""
    training = body.training
    if set(report.outputs) == {"output"} and len(heads) == 1:
        pairs = {"output": next(iter(heads))}
    else:
        pairs = {}
        for h in report.outputs:
            if h not in heads:
                raise FieldError(["body", "model", "graph", "outputs", h],
                                 f"the dataset has no target head {h!r}; it has {', '.join(heads)}")
            pairs[h] = h
    single = set(pairs) == {"output"}
    loss_cfg = training.loss
    if loss_cfg is not None and "type" in loss_cfg and not single:
        raise FieldError(["body", "training", "loss"], "the model has several heads: give a loss per head")
    out = {}
    for h, target in pairs.items():
        info = heads[target]
        task = info["task"]
        cfg = (loss_cfg or {}) if single else (loss_cfg or {}).get(h, {})
        if loss_cfg and not single and h not in loss_cfg:
            raise FieldError(["body", "training", "loss"], f"no loss for head {h!r}")
        loss = _head_loss(["body", "training", "loss"] + ([] if single else [h]), cfg, task)
        if isinstance(training.metrics, dict):
            names = training.metrics.get(h, [])
            mloc = ["body", "training", "metrics", h]
        else:
            names = training.metrics if training.metrics is not None else (["accuracy"] if task == "classification" else [])
            mloc = ["body", "training", "metrics"]
        shape = report.outputs[h][1:]
        if task == "classification":
            classes = info["num_classes"] or 1
            if len(shape) != 1 or shape[0] < classes:
                raise FieldError(["body", "model"], f"head {h!r} outputs shape {list(shape)} per sample but its "
                                                    f"targets need {classes} class scores")
        elif math.prod(shape) != max(1, math.prod(info["shape"])):
            raise FieldError(["body", "model"], f"head {h!r} outputs shape {list(shape)} per sample but its "
                                                f"targets have shape {info['shape'] or [1]}")
        out[h] = {"target": target, "task": task, "loss": loss, "metrics": _metrics(mloc, names, task)}
    if isinstance(training.metrics, dict):
        for h in training.metrics:
            if h not in out:
                raise FieldError(["body", "training", "metrics", h], f"the model has no head {h!r}")
    return out


def _check_scheduler(body: JobCreate) -> None:
    sched = body.training.scheduler
    if sched is None:
        return
    loc = ["body", "training", "scheduler"]
    cls = getattr(lr_scheduler, sched.type, None)
    if not (isinstance(cls, type) and issubclass(cls, lr_scheduler.LRScheduler)) or sched.type in NOT_FROM_JSON:
        names = [n for n in dir(lr_scheduler) if isinstance(getattr(lr_scheduler, n), type)
                 and issubclass(getattr(lr_scheduler, n), lr_scheduler.LRScheduler) and n not in NOT_FROM_JSON]
        raise FieldError(loc + ["type"], f"unknown scheduler {sched.type[:80]!r}; known: {', '.join(sorted(names))}")
    _check_args(loc, cls, dict(sched.model_extra or {}), skip=("optimizer", "last_epoch", "verbose"))


@router.post("", status_code=status.HTTP_202_ACCEPTED, response_model=JobOut)
def submit_job(body: JobCreate, session: SessionDep, settings: SettingsDep, owner: OwnerDep) -> JobOut:
    training = body.training
    facts = dataset_facts(session, body.dataset_id, ["body", "dataset_id"], owner)
    if training.validation_dataset_id is not None:
        val = dataset_facts(session, training.validation_dataset_id, ["body", "training", "validation_dataset_id"],
                            owner)
        if val["input_shape"] != facts["input_shape"] or set(val["heads"]) != set(facts["heads"]):
            raise FieldError(["body", "training", "validation_dataset_id"],
                             "the validation dataset's input shape and target heads must equal the training dataset's")
    if training.devices > settings.max_devices:
        raise FieldError(["body", "training", "devices"], f"asks for {training.devices} devices, over the limit "
                                                          f"max_devices ({settings.max_devices})")
    if training.epochs > settings.max_epochs:
        raise FieldError(["body", "training", "epochs"], f"exceeds the limit of {settings.max_epochs} epochs (max_epochs)")
    n_train = facts["num_samples"] - (0 if training.validation_dataset_id else round(facts["num_samples"] * training.validation_split))
    total_steps = training.epochs * math.ceil(max(n_train, 1) / training.batch_size)
    if total_steps > settings.max_total_steps:
        raise FieldError(["body", "training", "epochs"], f"epochs x steps per epoch is {total_steps}, over the limit "
                                                         f"max_total_steps ({settings.max_total_steps})")
    report = spec.validate(body.model, facts["input_shape"], num_classes=facts["num_outputs"])
    check_model_limits(report, settings, training.batch_size)
    heads = resolve_heads(body, report, facts["heads"])
    _check_scheduler(body)
    if training.early_stopping is not None:
        es = training.early_stopping
        if es.metric != "train_loss" and not (training.validation_split > 0 or training.validation_dataset_id):
            raise FieldError(["body", "training", "early_stopping", "metric"],
                             "watches a validation metric but there is no validation data")
    stored = training.model_dump(mode="json")
    stored["heads"] = heads
    stored["num_outputs"] = facts["num_outputs"]
    job = jobs.create(
        session,
        owner=owner,
        name=body.name,
        dataset_id=body.dataset_id,
        model_spec=body.model,
        training=stored,
        max_restarts=settings.max_restarts if training.max_restarts is None else training.max_restarts,
        time_limit_s=min(training.time_limit_s or settings.max_job_seconds, settings.max_job_seconds),
    )
    session.commit()  # the worker must find the row before the message arrives
    try:
        queue.enqueue_training(settings, job.id)
        jobs.mark_enqueued(session, job_id=job.id)
    except Exception:
        log.exception("could not enqueue job %s; the reaper will send it when the broker is back", job.id)
    return JobOut.from_row(job)


@router.get("", response_model=JobList)
def list_jobs(session: SessionDep, owner: OwnerDep, status_filter: str | None = None, limit: int = 100) -> JobList:
    rows = jobs.list_all(session, owner=owner, status=status_filter, limit=max(1, min(limit, 1000)))
    return JobList(items=[JobOut.from_row(j) for j in rows])


@router.get("/{job_id}", response_model=JobOut)
def get_job(job_id: str, session: SessionDep, owner: OwnerDep) -> JobOut:
    return JobOut.from_row(get_job_or_404(session, job_id, owner))


@router.post("/{job_id}/cancel", response_model=JobOut)
def cancel_job(job_id: str, session: SessionDep, owner: OwnerDep) -> JobOut:
    """A queued job is cancelled at once; a running one stops at its next step boundary
    (within seconds), keeping its checkpoints. A finished job answers 409."""
    job = get_job_or_404(session, job_id, owner)
    if jobs.request_cancel(session, job_id=job_id) is None:
        raise HTTPException(status.HTTP_409_CONFLICT, f"job {job_id} already {job.status}; nothing to cancel")
    session.commit()
    session.refresh(job)
    return JobOut.from_row(job)
