"""Submit-time resolution of a job: a request and its dataset's facts in, a
``TrainingPlan`` out, or a ``PlanError`` naming the field that does not fit (a spec that
does not fit the data raises ``engine.spec.SpecError``). Pure: no database, no broker."""
from __future__ import annotations

import inspect
import math
import re
from typing import Any, Protocol

from engine import nn, spec
from engine.optim import lr_scheduler
from ingest import DEFAULT_HEAD, DatasetFacts
from plan import splits
from plan.errors import PlanError
from plan.memory import training_bytes
from plan.model import HeadPlan, LossPlan, RetentionPlan, TrainingPlan
from plan.request import JobCreate, TrainingConfig

CLASS_LOSSES = ("CrossEntropyLoss", "NLLLoss", "MultiMarginLoss")
VALUE_LOSSES = ("MSELoss", "L1Loss", "HuberLoss", "SmoothL1Loss", "BCEWithLogitsLoss")
CLASS_METRICS = ("accuracy", "precision", "recall", "f1", "confusion_matrix")
VALUE_METRICS = ("mse", "mae", "r2")
# schedulers whose arguments are functions or other schedulers: not expressible in JSON
NOT_FROM_JSON = ("LRScheduler", "LambdaLR", "MultiplicativeLR", "SequentialLR", "ChainedScheduler")
_TOPK = re.compile(r"^top([1-9][0-9]?)_accuracy$")


class Limits(Protocol):
    """The server limits a plan must keep (``config.settings.Settings`` has them all)."""

    max_devices: int
    max_epochs: int
    max_total_steps: int
    max_parameters: int
    max_memory_bytes: int
    max_training_flops: float
    max_restarts: int
    max_job_seconds: int


def plan_job(request: JobCreate, data: DatasetFacts, limits: Limits,
             validation: DatasetFacts | None = None) -> TrainingPlan:
    """Resolve ``request`` against its dataset (and separate validation dataset, if any)."""
    training = request.training
    if validation is not None and (validation.input_shape != data.input_shape
                                   or set(validation.heads) != set(data.heads)):
        raise PlanError(["body", "training", "validation_dataset_id"],
                        "the validation dataset's input shape and target heads must equal the training dataset's")
    if training.devices > limits.max_devices:
        raise PlanError(["body", "training", "devices"], f"asks for {training.devices} devices, over the limit "
                                                         f"max_devices ({limits.max_devices})")
    if training.epochs > limits.max_epochs:
        raise PlanError(["body", "training", "epochs"], f"exceeds the limit of {limits.max_epochs} epochs (max_epochs)")
    train_samples, steps_per_epoch = _steps(training, data.num_samples)
    total_steps = training.epochs * steps_per_epoch
    if total_steps > limits.max_total_steps:
        raise PlanError(["body", "training", "epochs"], f"epochs x steps per epoch is {total_steps}, over the limit "
                                                        f"max_total_steps ({limits.max_total_steps})")
    report = spec.validate(request.model, data.input_shape, num_classes=data.num_outputs)
    memory = check_model_limits(report, limits, training.batch_size, training.optimizer.type, request.model,
                                math.prod(data.input_shape))
    zoo = request.model.get("zoo")
    heads = resolve_heads(training, report, data.heads, spec.DEFAULT_LOSS.get(zoo, "CrossEntropyLoss"))
    _check_scheduler(training)
    check_precision(training, training.device)  # the routed device is checked again at submit
    retention = _retention(training, heads)
    es = training.early_stopping
    if es is not None and es.metric != "train_loss" and not (training.validation_split > 0
                                                             or training.validation_dataset_id):
        raise PlanError(["body", "training", "early_stopping", "metric"],
                        "watches a validation metric but there is no validation data")
    plan = TrainingPlan(
        model=request.model, training=training, input_shape=list(data.input_shape), num_outputs=data.num_outputs,
        heads=heads, train_samples=train_samples, steps_per_epoch=steps_per_epoch, total_steps=total_steps,
        memory_bytes=memory,
        max_restarts=limits.max_restarts if training.max_restarts is None else training.max_restarts,
        time_limit_s=min(training.time_limit_s or limits.max_job_seconds, limits.max_job_seconds),
        retention=retention, flops_per_sample=report.flops_per_sample,
        val_samples=validation.num_samples if validation is not None else data.num_samples - train_samples,
    )
    check_flops(plan, limits)
    return plan


def check_flops(plan: TrainingPlan, limits: Limits) -> None:
    """The whole training's FLOPs (epochs x (3 x training + validation samples) x FLOPs per
    sample) against ``max_training_flops``: a job that would hold a worker for months."""
    flops, limit = plan.training_flops, limits.max_training_flops
    if flops > limit:
        raise PlanError(["body", "training", "epochs"],
                        f"training would take about {flops:.3g} FLOPs ({plan.training.epochs} epochs x "
                        f"{plan.epoch_flops:.3g} FLOPs per epoch: {plan.train_samples} training samples at "
                        f"{plan.flops_per_sample:.3g} FLOPs each, forward and backward), over the limit "
                        f"max_training_flops ({limit:.3g}); use fewer epochs or samples, or a smaller model")


def check_precision(training: TrainingConfig, device_kind: str | None) -> None:
    """Mixed precision is for GPU jobs: numpy has no fast float16 GEMM (a float16 CPU step is
    slower than float32), and neither numpy nor the engine has bfloat16. ``device_kind`` is
    where the job runs ("cpu", "gpu", or None when not yet routed)."""
    loc = ["body", "training", "precision"]
    if training.precision == "bf16-mixed":
        raise PlanError(loc, "bf16-mixed needs bfloat16 tensors, which the engine's numpy and cupy "
                             "arrays do not have; use 16-mixed on a GPU job, or 32")
    if training.precision == "16-mixed" and device_kind == "cpu":
        raise PlanError(loc, "16-mixed needs a GPU job; this job trains on a CPU worker, which "
                             "trains in 32")


MAXIMIZED = ("accuracy", "precision", "recall", "f1", "r2")


def epoch_metric_names(training: TrainingConfig, heads: dict[str, HeadPlan]) -> list[str]:
    """The scalar epoch metrics a job will report (what retention and early stopping may watch)."""
    names = ["train_loss"]
    if training.validation_split > 0 or training.validation_dataset_id:
        names.append("val_loss")
        for h, head in heads.items():
            prefix = "val_" if len(heads) == 1 else f"val_{h}_"
            names += ([f"{prefix}loss"] if len(heads) > 1 else []) + [
                prefix + m for m in head.metrics if m != "confusion_matrix"]
    return names


def _retention(training: TrainingConfig, heads: dict[str, HeadPlan]) -> RetentionPlan:
    policy = training.checkpoints
    names = epoch_metric_names(training, heads)
    metric = policy.metric or ("val_loss" if "val_loss" in names else "train_loss")
    if metric not in names:
        raise PlanError(["body", "training", "checkpoints", "metric"],
                        f"{metric[:64]!r} is not an epoch metric of this job; it reports {', '.join(names)}")
    mode = policy.mode or ("max" if metric.endswith(MAXIMIZED) else "min")
    return RetentionPlan(keep_last=policy.keep_last, keep_best=policy.keep_best, metric=metric, mode=mode)


def _steps(training: TrainingConfig, num_samples: int) -> tuple[int, int]:
    """(training samples, optimizer steps per epoch on every rank)."""
    n_val = 0 if training.validation_dataset_id else splits.validation_count(num_samples, training.validation_split)
    n_train = num_samples - n_val
    if n_train < 1:
        raise PlanError(["body", "training", "validation_split"],
                        f"leaves no training samples of the dataset's {num_samples}")
    per_rank = splits.rank_samples(n_train, training.devices)
    if per_rank < 1:
        raise PlanError(["body", "training", "devices"],
                        f"{training.devices} ranks need at least one training sample each; there are {n_train}")
    return n_train, math.ceil(per_rank / training.batch_size)


def check_model_limits(report: spec.Report, limits: Limits, batch_size: int, optimizer: str = "Adam",
                       model: dict | None = None, sample_elements: int = 0) -> int:
    """The training memory estimate (``plan.memory``), after checking it and the parameter
    count against the limits."""
    if report.parameters > limits.max_parameters:
        raise PlanError(["body", "model"], f"the model has {report.parameters} parameters, over the limit "
                                           f"max_parameters ({limits.max_parameters})")
    need = training_bytes(report, batch_size, optimizer, model, sample_elements)
    if need > limits.max_memory_bytes:
        raise PlanError(["body", "model"], f"training needs about {need} bytes (weights, gradients, optimizer "
                                           f"state and activations at batch_size {batch_size}), over the limit "
                                           f"max_memory_bytes ({limits.max_memory_bytes})")
    return need


def _check_args(loc: list, cls: type, args: dict, skip: tuple = ()) -> None:
    params = inspect.signature(cls.__init__).parameters
    ok = {n for n, p in params.items() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)} - {"self", *skip}
    for k, v in args.items():
        if k not in ok:
            raise PlanError(loc + [k], f"{cls.__name__} has no argument {k[:80]!r}; it takes {', '.join(sorted(ok))}")
        if not (v is None or isinstance(v, (bool, str)) or isinstance(v, (int, float)) and math.isfinite(v)
                or isinstance(v, list) and len(v) <= 64 and all(isinstance(i, (int, float)) for i in v)):
            raise PlanError(loc + [k], "must be a finite number, string, boolean or a short list of numbers")
    missing = [n for n, p in params.items() if n in ok and p.default is inspect.Parameter.empty and n not in args]
    if missing:
        raise PlanError(loc, f"{cls.__name__} needs argument(s) {', '.join(missing)}")


def _head_loss(loc: list, cfg: Any, task: str, class_loss: str) -> LossPlan:
    if not isinstance(cfg, dict):
        raise PlanError(loc, "must be an object with a loss 'type'")
    cfg = dict(cfg)
    name = cfg.pop("type", class_loss if task == "classification" else "MSELoss")
    weight = cfg.pop("weight", 1.0)
    allowed = CLASS_LOSSES if task == "classification" else VALUE_LOSSES
    if name not in allowed:
        raise PlanError(loc + ["type"], f"{str(name)[:80]!r} is not a loss for a {task} head; "
                                        f"use one of {', '.join(allowed)}")
    if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not math.isfinite(weight) or weight < 0:
        raise PlanError(loc + ["weight"], "must be a finite number >= 0")
    _check_args(loc, getattr(nn, name), cfg, skip=("weight", "size_average", "reduce", "reduction"))
    return LossPlan(type=name, weight=float(weight), args=cfg)


def _metrics(loc: list, names: list[str], task: str) -> list[str]:
    allowed = CLASS_METRICS if task == "classification" else VALUE_METRICS
    for i, m in enumerate(names):
        if m not in allowed and not (task == "classification" and _TOPK.match(m)):
            topk = ", top<k>_accuracy" if task == "classification" else ""
            raise PlanError(loc + [i], f"{m[:80]!r} is not a metric for a {task} head; use {', '.join(allowed)}{topk}")
    return list(dict.fromkeys(names))


def resolve_heads(training: TrainingConfig, report: spec.Report, heads: dict[str, dict],
                  class_loss: str = "CrossEntropyLoss") -> dict[str, HeadPlan]:
    """Model output head -> dataset targets, loss, weight and metrics; checks the output shapes.
    A single-output model on a single-head dataset learns that head whatever its name.
    ``class_loss`` is the default loss of a classification head (a zoo model may name its own)."""
    if set(report.outputs) == {DEFAULT_HEAD} and len(heads) == 1:
        pairs = {DEFAULT_HEAD: next(iter(heads))}
    else:
        pairs = {}
        for h in report.outputs:
            if h not in heads:
                raise PlanError(["body", "model", "graph", "outputs", h],
                                f"the dataset has no target head {h!r}; it has {', '.join(heads)}")
            pairs[h] = h
    single = set(pairs) == {DEFAULT_HEAD}
    loss_cfg = training.loss
    if loss_cfg is not None and "type" in loss_cfg and not single:
        raise PlanError(["body", "training", "loss"], "the model has several heads: give a loss per head")
    out = {}
    for h, target in pairs.items():
        info = heads[target]
        task = info["task"]
        cfg = (loss_cfg or {}) if single else (loss_cfg or {}).get(h, {})
        if loss_cfg and not single and h not in loss_cfg:
            raise PlanError(["body", "training", "loss"], f"no loss for head {h!r}")
        loss = _head_loss(["body", "training", "loss"] + ([] if single else [h]), cfg, task, class_loss)
        if isinstance(training.metrics, dict):
            names = training.metrics.get(h, [])
            mloc = ["body", "training", "metrics", h]
        else:
            default = ["accuracy"] if task == "classification" else []
            names = training.metrics if training.metrics is not None else default
            mloc = ["body", "training", "metrics"]
        shape = report.outputs[h][1:]
        if task == "classification":
            classes = info["num_classes"] or 1
            if len(shape) != 1 or shape[0] < classes:
                raise PlanError(["body", "model"], f"head {h!r} outputs shape {list(shape)} per sample but its "
                                                   f"targets need {classes} class scores")
        elif math.prod(shape) != max(1, math.prod(info["shape"])):
            raise PlanError(["body", "model"], f"head {h!r} outputs shape {list(shape)} per sample but its "
                                               f"targets have shape {info['shape'] or [1]}")
        out[h] = HeadPlan(target=target, task=task, loss=loss, metrics=_metrics(mloc, names, task))
    if isinstance(training.metrics, dict):
        for h in training.metrics:
            if h not in out:
                raise PlanError(["body", "training", "metrics", h], f"the model has no head {h!r}")
    return out


def _check_scheduler(training: TrainingConfig) -> None:
    sched = training.scheduler
    if sched is None:
        return
    loc = ["body", "training", "scheduler"]
    cls = getattr(lr_scheduler, sched.type, None)
    if not (isinstance(cls, type) and issubclass(cls, lr_scheduler.LRScheduler)) or sched.type in NOT_FROM_JSON:
        names = [n for n in dir(lr_scheduler) if isinstance(getattr(lr_scheduler, n), type)
                 and issubclass(getattr(lr_scheduler, n), lr_scheduler.LRScheduler) and n not in NOT_FROM_JSON]
        raise PlanError(loc + ["type"], f"unknown scheduler {sched.type[:80]!r}; known: {', '.join(sorted(names))}")
    _check_args(loc, cls, dict(sched.model_extra or {}), skip=("optimizer", "last_epoch", "verbose"))


def match_weights(expected: dict[str, list[int]], given: dict[str, list[int]], *, strict: bool,
                  freeze: list[str]) -> list[str]:
    """Every problem with loading ``given`` (name -> shape) into a model whose state_dict is
    ``expected``; empty when it loads. Shapes must match; ``strict`` also needs the same names."""
    problems = [f"{name}: the model has shape {expected[name]}, the weights {shape}"
                for name, shape in given.items() if name in expected and list(shape) != list(expected[name])]
    if strict:
        problems += [f"{name}: missing from the weights" for name in expected if name not in given]
        problems += [f"{name}: not a parameter or buffer of the model" for name in given if name not in expected]
    elif not set(given) & set(expected):
        problems.append("no name of the weights is a parameter or buffer of the model")
    problems += [f"freeze {prefix!r}: no parameter name starts with it" for prefix in freeze
                 if not any(name.startswith(prefix) for name in expected)]
    return problems
