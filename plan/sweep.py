"""The sweep contract: what a user sends to ``POST /v1/sweeps`` (W&B's sweep configuration:
``method``, ``metric``, ``parameters``, ``early_terminate``, ``run_cap``), its search space,
the trials drawn from it, and the rule that stops trials early (asynchronous successive
halving). Pure: no database, no broker.

Parameters are dotted paths into the base job body (``training.optimizer.lr``,
``model.args.width``, ``model.layers.1.out_features``); each takes a W&B distribution:

- ``{"value": v}`` (constant) or ``{"values": [...]}`` (categorical, optional
  ``probabilities`` for random search);
- ``{"distribution": "uniform" | "int_uniform" | "q_uniform" | "log_uniform_values" |
  "q_log_uniform_values" | "log_uniform", "min": a, "max": b}`` (``q``, default 1, for the
  ``q_`` ones; ``log_uniform``'s bounds are natural logs, as in W&B);
- ``{"distribution": "normal" | "q_normal" | "log_normal", "mu": m, "sigma": s}``.

Without ``distribution`` it is inferred as W&B does: ``values`` categorical, ``value``
constant, integer ``min``/``max`` int_uniform, other ``min``/``max`` uniform.

Grid search enumerates every combination of the parameters' values in the order the
parameters were given, the last one varying fastest (``itertools.product``), up to
``run_cap``. Random search draws ``run_cap`` trials from ``random.Random(seed)`` at submit
time, parameter by parameter in the given order, using only ``Random.random()`` (whose
sequence Python keeps stable), so the same request always gives the same trials.
"""
from __future__ import annotations

import copy
import itertools
import math
import random
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field

from plan.errors import PlanError
from plan.model import TrainingPlan

DISTRIBUTIONS = ("constant", "categorical", "uniform", "int_uniform", "q_uniform", "log_uniform",
                 "log_uniform_values", "q_log_uniform_values", "normal", "q_normal", "log_normal")
GRID_DISTRIBUTIONS = ("constant", "categorical")
_BOUNDED = ("uniform", "int_uniform", "q_uniform", "log_uniform", "log_uniform_values", "q_log_uniform_values")
_GAUSSIAN = ("normal", "q_normal", "log_normal")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class SweepMetric(_Strict):
    name: str = Field(min_length=1, max_length=64, description="an epoch metric: val_accuracy, val_loss, ...")
    goal: Literal["maximize", "minimize"] = "minimize"


class EarlyTerminate(_Strict):
    """W&B's ``hyperband``: here asynchronous successive halving on epochs, with rungs at
    epochs ``min_iter * eta**k``."""

    type: Literal["hyperband"]
    min_iter: int = Field(ge=1, le=100_000)
    eta: int = Field(default=3, ge=2, le=100)


class SweepCreate(_Strict):
    name: str = Field(min_length=1, max_length=200)
    base: dict[str, Any] = Field(description="a POST /v1/jobs body; parameters replace parts of it")
    method: Literal["grid", "random"]
    metric: SweepMetric | None = None
    parameters: dict[str, dict[str, Any]] = Field(min_length=1, max_length=64)
    early_terminate: EarlyTerminate | None = None
    run_cap: int | None = Field(default=None, ge=1)
    max_concurrent: int | None = Field(default=None, ge=1)
    seed: int = Field(default=0, ge=0, lt=2**32)


class Limits(Protocol):
    """The caps a sweep must keep (``config.settings.Settings`` has them)."""

    max_sweep_trials: int
    max_sweep_concurrent: int


@dataclass(frozen=True)
class Param:
    """One parameter: where it goes in the job body and what it takes."""

    path: str
    keys: tuple[str | int, ...]
    distribution: str
    values: tuple[Any, ...] = ()
    probabilities: tuple[float, ...] | None = None
    min: float = 0.0
    max: float = 0.0
    q: float = 1.0
    mu: float = 0.0
    sigma: float = 1.0
    integers: bool = False  # q_uniform / q_log_uniform_values on integer bounds and q give ints

    @property
    def loc(self) -> list[Any]:
        return ["body", "parameters", self.path]

    def sample(self, rng: random.Random) -> Any:
        d = self.distribution
        if d == "constant":
            return copy.deepcopy(self.values[0])
        if d == "categorical":
            return copy.deepcopy(self.values[_pick(rng, len(self.values), self.probabilities)])
        if d == "int_uniform":
            return int(self.min) + min(int(rng.random() * (int(self.max) - int(self.min) + 1)),
                                       int(self.max) - int(self.min))
        u = rng.random()
        if d in ("uniform", "q_uniform"):
            x = self.min + u * (self.max - self.min)
        elif d == "log_uniform":
            x = math.exp(self.min + u * (self.max - self.min))
        elif d in ("log_uniform_values", "q_log_uniform_values"):
            x = math.exp(math.log(self.min) + u * (math.log(self.max) - math.log(self.min)))
        else:  # normal, q_normal, log_normal: Box-Muller on two uniforms
            z = math.sqrt(-2.0 * math.log(1.0 - u)) * math.cos(2.0 * math.pi * rng.random())
            x = self.mu + self.sigma * z
            if d == "log_normal":
                x = math.exp(x)
        if d.startswith("q_"):
            x = round(x / self.q) * self.q
            return int(round(x)) if self.integers else x
        return x


def _pick(rng: random.Random, n: int, probabilities: tuple[float, ...] | None) -> int:
    u = rng.random()
    if probabilities is None:
        return min(int(u * n), n - 1)
    total = 0.0
    for i, p in enumerate(probabilities):
        total += p
        if u < total:
            return i
    return n - 1


def _number(loc: list, value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise PlanError(loc, f"{what} must be a finite number")
    return value


def parse_param(path: str, raw: dict[str, Any]) -> Param:
    """A parameter's W&B configuration, checked; a ``PlanError`` names the field."""
    loc = ["body", "parameters", path]
    keys = tuple(int(k) if k.isdigit() else k for k in path.split("."))
    if not path or any(k == "" for k in keys):
        raise PlanError(loc, "a parameter is a dotted path into the base job, e.g. training.optimizer.lr")
    known = {"distribution", "value", "values", "probabilities", "min", "max", "q", "mu", "sigma"}
    for k in raw:
        if k not in known:
            raise PlanError(loc + [k], f"unknown key {k[:64]!r}; a parameter takes {', '.join(sorted(known))}")
    d = raw.get("distribution")
    if d is None:  # W&B's inference
        if "values" in raw:
            d = "categorical"
        elif "value" in raw:
            d = "constant"
        elif "min" in raw and "max" in raw:
            ints = all(isinstance(raw[k], int) and not isinstance(raw[k], bool) for k in ("min", "max"))
            d = "int_uniform" if ints else "uniform"
        else:
            raise PlanError(loc, "give value, values, min and max, or a distribution")
    if d not in DISTRIBUTIONS:
        raise PlanError(loc + ["distribution"], f"unknown distribution {str(d)[:64]!r}; "
                                                f"use one of {', '.join(DISTRIBUTIONS)}")
    if d == "constant":
        if "value" not in raw:
            raise PlanError(loc + ["value"], "a constant parameter needs a value")
        return Param(path, keys, d, values=(raw["value"],))
    if d == "categorical":
        values = raw.get("values")
        if not isinstance(values, list) or not values:
            raise PlanError(loc + ["values"], "must be a non-empty list")
        probs = raw.get("probabilities")
        if probs is not None:
            if not isinstance(probs, list) or len(probs) != len(values):
                raise PlanError(loc + ["probabilities"], f"must be a list of {len(values)} numbers, one per value")
            probs = tuple(_number(loc + ["probabilities"], p, "each probability") for p in probs)
            if any(p < 0 for p in probs) or not math.isclose(sum(probs), 1.0, abs_tol=1e-6):
                raise PlanError(loc + ["probabilities"], "must be non-negative and sum to 1")
        return Param(path, keys, d, values=tuple(values), probabilities=probs)
    if d in _BOUNDED:
        for k in ("min", "max"):
            if k not in raw:
                raise PlanError(loc + [k], f"the {d} distribution needs min and max")
        lo, hi = _number(loc + ["min"], raw["min"], "min"), _number(loc + ["max"], raw["max"], "max")
        if lo >= hi:
            raise PlanError(loc + ["max"], f"max ({hi}) must be greater than min ({lo})")
        if d == "int_uniform" and not all(float(v).is_integer() for v in (lo, hi)):
            raise PlanError(loc + ["min"], "int_uniform takes integer min and max")
        if d in ("log_uniform_values", "q_log_uniform_values") and lo <= 0:
            raise PlanError(loc + ["min"], f"{d} needs min > 0 (the bounds are values; "
                                           "log_uniform takes their natural logs)")
        q = _number(loc + ["q"], raw.get("q", 1), "q")
        if q <= 0:
            raise PlanError(loc + ["q"], "must be greater than 0")
        integers = all(isinstance(v, int) and not isinstance(v, bool)
                       for v in (raw["min"], raw["max"], raw.get("q", 1)))
        return Param(path, keys, d, min=lo, max=hi, q=q, integers=integers)
    mu = _number(loc + ["mu"], raw.get("mu", 0.0), "mu")
    sigma = _number(loc + ["sigma"], raw.get("sigma", 1.0), "sigma")
    if sigma <= 0:
        raise PlanError(loc + ["sigma"], "must be greater than 0")
    q = _number(loc + ["q"], raw.get("q", 1), "q")
    if q <= 0:
        raise PlanError(loc + ["q"], "must be greater than 0")
    return Param(path, keys, d, mu=mu, sigma=sigma, q=q, integers=isinstance(raw.get("q", 1), int))


def check_path(base: dict[str, Any], param: Param) -> None:
    """The parameter's parent must exist in the base job (an object, or a list holding the index)."""
    node: Any = base
    for depth, key in enumerate(param.keys[:-1]):
        node = _child(node, key)
        if node is _MISSING:
            prefix = ".".join(str(k) for k in param.keys[:depth + 1])
            raise PlanError(param.loc, f"the base job has no {prefix!r}: a parameter's parent must exist in the base")
    last = param.keys[-1]
    if isinstance(node, list):
        if not isinstance(last, int) or last >= len(node):
            raise PlanError(param.loc, f"{last!r} is not an index of the base's list of {len(node)}")
    elif not isinstance(node, dict):
        parent = ".".join(str(k) for k in param.keys[:-1]) or "the base job"
        raise PlanError(param.loc, f"{parent} is not an object in the base job")


_MISSING = object()


def _child(node: Any, key: str | int) -> Any:
    if isinstance(node, dict):
        return node.get(str(key), _MISSING)
    if isinstance(node, list) and isinstance(key, int) and key < len(node):
        return node[key]
    return _MISSING


def apply(base: dict[str, Any], values: dict[str, Any], params: list[Param]) -> dict[str, Any]:
    """The job body of one trial: the base with each parameter's value set at its path."""
    body = copy.deepcopy(base)
    for p in params:
        node: Any = body
        for key in p.keys[:-1]:
            node = node[key] if isinstance(node, list) else node[str(key)]
        last = p.keys[-1]
        node[last if isinstance(node, list) else str(last)] = copy.deepcopy(values[p.path])
    return body


@dataclass
class Space:
    """A sweep's checked parameters and the trials (parameter values, in order) it runs."""

    params: list[Param]
    trials: list[dict[str, Any]] = field(default_factory=list)
    max_concurrent: int = 1


def grid_size(params: list[Param]) -> int:
    return math.prod(len(p.values) for p in params)


def build(body: SweepCreate, limits: Limits) -> Space:
    """Check the request against the caps and the base, and draw its trials."""
    if body.run_cap is not None and body.run_cap > limits.max_sweep_trials:
        raise PlanError(["body", "run_cap"], f"{body.run_cap} trials is over the limit max_sweep_trials "
                                             f"({limits.max_sweep_trials})")
    if body.max_concurrent is not None and body.max_concurrent > limits.max_sweep_concurrent:
        raise PlanError(["body", "max_concurrent"], f"{body.max_concurrent} is over the limit "
                                                    f"max_sweep_concurrent ({limits.max_sweep_concurrent})")
    if body.early_terminate is not None and body.metric is None:
        raise PlanError(["body", "metric"], "early_terminate needs the metric that ranks trials")
    params = [parse_param(path, raw) for path, raw in body.parameters.items()]
    for p in params:
        check_path(body.base, p)
    if body.method == "grid":
        for p in params:
            if p.distribution not in GRID_DISTRIBUTIONS:
                raise PlanError(p.loc + ["distribution"], f"grid search takes values or value; {p.distribution} "
                                                          "is for random search")
        size = grid_size(params)
        if size > limits.max_sweep_trials:
            raise PlanError(["body", "parameters"], f"the grid has {size} combinations, over the limit "
                                                    f"max_sweep_trials ({limits.max_sweep_trials}); set fewer values")
        combos = itertools.islice(itertools.product(*(p.values for p in params)), body.run_cap)
        trials = [{p.path: copy.deepcopy(v) for p, v in zip(params, combo)} for combo in combos]
    else:
        rng = random.Random(body.seed)
        n = body.run_cap or limits.max_sweep_trials
        trials = [{p.path: p.sample(rng) for p in params} for _ in range(n)]
    concurrent = min(body.max_concurrent or limits.max_sweep_concurrent, limits.max_sweep_concurrent)
    return Space(params, trials, concurrent)


def describe(values: dict[str, Any]) -> str:
    """``training.optimizer.lr=0.01, training.batch_size=16`` (for messages)."""
    return ", ".join(f"{k}={_short(v)}" for k, v in values.items())


def _short(v: Any) -> str:
    text = repr(v)
    return text if len(text) <= 60 else text[:57] + "..."


def epoch_metric_names(plan: TrainingPlan) -> set[str]:
    """The scalar epoch metrics a job with this plan records (what a sweep can rank by)."""
    names = {"train_loss", "epoch_time_s"}
    t = plan.training
    if t.validation_dataset_id or t.validation_split > 0:
        names.add("val_loss")
        single = len(plan.heads) == 1
        for head, hp in plan.heads.items():
            prefix = "val_" if single else f"val_{head}_"
            if not single:
                names.add(prefix + "loss")
            names.update(prefix + m for m in hp.metrics if m != "confusion_matrix")
    return names


# -- asynchronous successive halving ------------------------------------------------------------
def rungs(min_iter: int, eta: int, epochs: int) -> list[int]:
    """The epochs at which a trial of ``epochs`` epochs is judged: ``min_iter * eta**k`` before
    its last epoch."""
    out, r = [], min_iter
    while r < epochs:
        out.append(r)
        r *= eta
    return out


def better(a: float, b: float, goal: str) -> bool:
    return a > b if goal == "maximize" else a < b


def continues(value: float, others: list[float], goal: str, eta: int) -> bool:
    """ASHA's rule, decided when a trial reaches a rung: it goes on if it is in the top
    ``1/eta`` of the values recorded at that rung so far (itself included), at least the best
    one, so the first to arrive always goes on. Ties favour the newcomer."""
    n = len(others) + 1
    keep = max(1, n // eta)
    ahead = sum(1 for o in others if better(o, value, goal))
    return ahead < keep
