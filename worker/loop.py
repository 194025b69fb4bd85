"""The training loop of one attempt: a claimed job's plan and data in; steps, metrics,
checkpoints and the final metrics out. Resumable at any step, so that a resumed run ends
with the same weights as an uninterrupted one."""
from __future__ import annotations

import io
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

import engine
from config.settings import Settings
from engine import nn, optim, spec
from engine.utils.data import DataLoader, TensorDataset
from plan import TrainingPlan
from worker import checkpoints as ckpt_files
from worker import data, failures, parallel
from worker import metrics as head_metrics
from worker import precision as amp_setup
from worker.builders import Head, build_heads, build_optimizer, build_scheduler
from worker.data import heads_of
from worker.reporting import JobLost, Reporter, SilentReporter
from worker.resources import peak_memory_bytes
from worker.sampling import EpochSampler
from worker.supervision import Control


@dataclass
class Claim:
    """A job this worker now runs (as ``attempt``): its plan and the data it trains on."""

    job_id: str
    attempt: int
    plan: TrainingPlan
    max_restarts: int
    deadline: float
    inputs: np.ndarray
    targets: dict[str, np.ndarray]  # per dataset head
    train_idx: np.ndarray
    val_idx: np.ndarray
    resume: tuple[bytes, bytes] | None
    val_data: tuple[np.ndarray, dict[str, np.ndarray]] | None = None  # a separate validation dataset
    resume_step: int = 0  # the step of the checkpoint ``resume`` holds
    init_weights: bytes | None = None  # the safetensors file plan.init names


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
                totals[i] += head.loss(o, head.prepare(o, ys[i][start:start + batch_size])).item() * o.shape[0]
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


def follow(claim: Claim, settings: Settings, ranks: parallel.Ranks) -> None:
    """A follower rank's training: in step with rank 0, which records every outcome."""
    try:
        loop = TrainingLoop(claim, settings, Control(), ranks)
        if claim.resume:
            loop.restore(*claim.resume)
        loop.run()
    except (failures.Cancelled, JobLost):
        pass


class TrainingLoop:
    """One attempt's training: model, optimizer and data order, resumable at any step."""

    def __init__(self, claim: Claim, settings: Settings, control: Control, ranks: parallel.Ranks | None = None,
                 reporter: Reporter | SilentReporter | None = None,
                 rung_check: Callable[[int, dict[str, Any]], bool] | None = None):
        self.job_id, self.attempt, self.control, self.deadline = claim.job_id, claim.attempt, control, claim.deadline
        self.plan = plan = claim.plan
        self.training = training = plan.training
        self.batch_size = training.batch_size
        engine.manual_seed(training.seed)
        self.ranks = ranks = ranks or parallel.Ranks()
        self.device = ranks.device(parallel.pick_device(settings.device))
        self.model = spec.build_model(plan.model, plan.input_shape, num_classes=plan.num_outputs)
        self.model.to(self.device)
        if plan.init is not None:
            self._start_from(claim.init_weights, plan.init)
        self.net = parallel.wrap(self.model, ranks)  # what the training forward goes through
        self.heads = build_heads(plan.heads)
        self.optimizer = build_optimizer([p for p in self.model.parameters() if p.requires_grad], training)
        self.scheduler = build_scheduler(self.optimizer, training.scheduler)
        self.autocast, self.scaler = amp_setup.for_training(training.precision, self.device)
        train_idx = claim.train_idx
        self.sampler = EpochSampler(len(train_idx), training.seed, shard=ranks.shard)
        if isinstance(claim.inputs, data.MappedArray):  # sharded: batches read from the cache's maps
            tasks = [h.task for h in self.heads]
            targets = [claim.targets[h.target] for h in self.heads]
            self.loader = data.sharded_loader(claim.inputs, targets, tasks, train_idx, self.sampler,
                                              self.batch_size, self.device)
            x = data.MappedInputs(claim.inputs, claim.val_idx, self.device)
            ys = [heads_of({h.target: t[claim.val_idx]}, h.target, h.task, self.device)
                  for h, t in zip(self.heads, targets)]
            self.x_val, self.y_val = x, ys
        else:
            x = engine.tensor(claim.inputs, dtype=engine.float32, device=self.device)
            ys = [heads_of(claim.targets, h.target, h.task, self.device) for h in self.heads]
            self.x_val, self.y_val = x[claim.val_idx], [y[claim.val_idx] for y in ys]
            self.loader = DataLoader(TensorDataset(x[train_idx], *[y[train_idx] for y in ys]),
                                     batch_size=self.batch_size, sampler=self.sampler)
        if claim.val_data is not None:
            vx, vys = claim.val_data
            self.x_val = (data.MappedInputs(vx, np.arange(len(vx)), self.device) if isinstance(vx, data.MappedArray)
                          else engine.tensor(vx, dtype=engine.float32, device=self.device))
            self.y_val = [heads_of(vys, h.target, h.task, self.device) for h in self.heads]
        self.steps_per_epoch = plan.steps_per_epoch
        if math.ceil(len(self.sampler) / self.batch_size) != self.steps_per_epoch:
            raise RuntimeError(f"the plan counts {self.steps_per_epoch} steps per epoch but the data gives "
                               f"{math.ceil(len(self.sampler) / self.batch_size)}")
        self.reporter = reporter or SilentReporter()  # rank 0's writes results; followers' write nothing
        self.every = training.checkpoint_every or self.steps_per_epoch
        self.position: dict[str, Any] = {"epoch": 1, "batch": 0, "step": 0, "loss_sum": 0.0, "seen": 0,
                                         "best": None, "bad_epochs": 0}
        self.final: dict[str, Any] = {}
        self.saved_step = -1  # step of the newest checkpoint this attempt wrote
        self.rung_check = rung_check  # a sweep's early termination: (epoch, epoch metrics) -> stop?

    def _start_from(self, weights: bytes | None, init) -> None:
        """Load the plan's initial weights and freeze the parameters it names."""
        if weights is None:
            raise ValueError(f"the initial weights {init.weights_id} no longer exist")
        self.model.load_state_dict(engine.load(io.BytesIO(weights)), strict=init.strict)
        for name, p in self.model.named_parameters():
            if any(name.startswith(prefix) for prefix in init.freeze):
                p.requires_grad_(False)

    def restore(self, model_bytes: bytes, state_bytes: bytes) -> None:
        self.position = ckpt_files.restore(self.model, self.optimizer, model_bytes, state_bytes)
        self.final = self.position.pop("final", {}) or {}
        scheduler_state = self.position.pop("scheduler", None)
        if self.scheduler is not None and scheduler_state:
            self.scheduler.load_state_dict(scheduler_state)
        scaler_state = self.position.pop("grad_scaler", None)
        if scaler_state:
            self.scaler.load_state_dict(scaler_state)

    def checkpoint(self, epoch_metrics: dict[str, float] | None = None) -> None:
        p = self.position
        if not self.ranks.main:  # rank 0 writes the checkpoint for all ranks
            self.saved_step = p["step"]
            return
        model_bytes = ckpt_files.model_file(self.model, job_id=self.job_id, model_spec=self.plan.model,
                                            epoch=p["epoch"], step=p["step"])
        extra = {"scheduler": self.scheduler.state_dict()} if self.scheduler is not None else {}
        if self.scaler.is_enabled():
            extra["grad_scaler"] = self.scaler.state_dict()
        state_bytes = ckpt_files.state_file(self.optimizer, {**p, "final": self.final, **extra})
        scalars = {k: v for k, v in (epoch_metrics or {}).items() if isinstance(v, (int, float))}
        try:
            self.reporter.flush(epoch_metrics=scalars or None, checkpoint=(model_bytes, state_bytes))
        except Exception as exc:
            failure = ckpt_files.write_failure(exc, model_bytes=len(model_bytes), state_bytes=len(state_bytes))
            if failure is exc:
                raise
            raise failure from exc
        self.saved_step = p["step"]

    def run(self) -> dict[str, float] | None:
        """Train to the end and return the final metrics, or None after a graceful stop."""
        p = self.position
        epochs = self.training.epochs
        if p["batch"] >= self.steps_per_epoch:  # resumed from an end-of-epoch checkpoint
            if p["epoch"] >= epochs or {"stopped_at_epoch", "stopped_early_at_epoch"} & set(self.final):
                return self.final  # that epoch ended the job; only recording the outcome was lost
            p.update(epoch=p["epoch"] + 1, batch=0, loss_sum=0.0, seen=0)
        while p["epoch"] <= epochs:
            self.model.train()
            self.sampler.set_epoch(p["epoch"], start=p["batch"] * self.batch_size)
            self.reporter.epoch = p["epoch"]
            started = time.perf_counter()
            for xb, *ybs in self.loader:
                if self._stop_requested():
                    return None
                self._step(xb, ybs)
                if p["batch"] < self.steps_per_epoch and p["step"] % self.every == 0:
                    self.checkpoint()
                    self.reporter.pause_clock()
            self.final = {"train_loss": p["loss_sum"] / max(p["seen"], 1)}
            if len(self.x_val) and self.ranks.main:
                self.final.update(evaluate(self.model, self.heads, self.x_val, self.y_val, self.batch_size))
            self.final["epoch_time_s"] = time.perf_counter() - started
            self.final.update(peak_memory_bytes(self.device))
            if self.scheduler is not None and not self.plan.per_step_schedule:
                if isinstance(self.scheduler, optim.lr_scheduler.ReduceLROnPlateau):
                    watched = self.ranks.from_main(float(self.final.get("val_loss", self.final["train_loss"])))
                    self.scheduler.step(watched)
                else:
                    self.scheduler.step()
            stop = bool(self.ranks.decide(int(self._early_stop())))
            # every rank takes part in the decision; rank 0 alone has the check (a sweep's early termination)
            if self.ranks.decide(int(self.rung_check is not None and self.rung_check(p["epoch"], self.final))):
                self.final["stopped_at_epoch"], stop = p["epoch"], True
            self.checkpoint(epoch_metrics=self.final)
            self.reporter.pause_clock()
            if p["epoch"] == epochs or stop:
                break
            p.update(epoch=p["epoch"] + 1, batch=0, loss_sum=0.0, seen=0)
        return self.final

    def _early_stop(self) -> bool:
        """Track the watched metric; True once it has not improved for ``patience`` epochs."""
        es = self.training.early_stopping
        if es is None:
            return False
        p, value = self.position, self.final.get(es.metric)
        if not isinstance(value, (int, float)):
            return False
        sign = 1 if es.mode == "min" else -1
        if p["best"] is None or sign * (p["best"] - value) > es.min_delta:
            p["best"], p["bad_epochs"] = value, 0
        else:
            p["bad_epochs"] += 1
        if p["bad_epochs"] >= es.patience:
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
        training = self.training
        lrs = [g["lr"] for g in self.optimizer.param_groups]  # what this step uses
        self.optimizer.zero_grad()
        with self.autocast():  # "16-mixed": forward and losses under autocast; else a no-op
            out = self.net(xb)
            loss = None
            terms = []
            for head, yb in zip(self.heads, ybs):
                o = out[head.name] if isinstance(out, dict) else out
                term = head.loss(o, head.prepare(o, yb))
                terms.append(term)
                term = term if head.weight == 1.0 else term * head.weight
                loss = term if loss is None else loss + term
        self.scaler.scale(loss).backward()  # the scaler is off (identity) unless "16-mixed"
        if self.scaler.is_enabled() and (training.clip_grad_value or training.clip_grad_norm):
            self.scaler.unscale_(self.optimizer)  # clip the true gradients
        if training.clip_grad_value:
            nn.utils.clip_grad_value_(self.model.parameters(), training.clip_grad_value)
        if training.clip_grad_norm:
            nn.utils.clip_grad_norm_(self.model.parameters(), training.clip_grad_norm)
        self.scaler.step(self.optimizer)  # skipped when a float16 gradient overflowed
        self.scaler.update()
        if self.plan.per_step_schedule:
            self.scheduler.step()
        value = self.ranks.mean(loss.item())
        p["step"] += 1
        p["batch"] += 1
        if not math.isfinite(value):
            if training.stop_on_nan:
                raise FloatingPointError(f"loss became {value} at epoch {p['epoch']}, step {p['step']}")
            return  # not recorded: metrics hold finite numbers only
        p["loss_sum"] += value * xb.shape[0]
        p["seen"] += xb.shape[0]
        values = {"loss": value}
        if len(self.heads) > 1:
            values.update({f"{h.name}_loss": self.ranks.mean(t.item()) for h, t in zip(self.heads, terms)})
        values.update({"lr": lrs[0]} if len(lrs) == 1 else {f"lr_{i}": lr for i, lr in enumerate(lrs)})
        self.reporter.step(p["epoch"], p["step"], values, xb.shape[0] * self.ranks.world,
                           hold=p["batch"] == self.steps_per_epoch)
