"""The plan's memory estimate (plan.memory) against what training really allocates, for every
zoo model: a few steps of the worker's own training loop in a fresh process, measured with
tracemalloc (numpy reports its arrays to it), the dataset's copies taken out. The worker caps
a training child at the estimate times a margin, so the two must agree within 1.5x."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from engine.spec import zoo

# model spec, input shape, batch size: small data, a few steps each
CASES = {
    "mlp": ({"zoo": "mlp", "args": {"hidden": [1024, 1024]}}, (1, 28, 28), 128),
    "simple_cnn": ({"zoo": "simple_cnn"}, (1, 28, 28), 64),
    "vgg11": ({"zoo": "vgg11", "args": {"width": 16}}, (3, 32, 32), 16),
    "vgg11_bn": ({"zoo": "vgg11", "args": {"width": 8, "batch_norm": True}}, (1, 28, 28), 32),
    "resnet18": ({"zoo": "resnet18", "args": {"width": 16}}, (3, 32, 32), 16),
    "lstm_classifier": ({"zoo": "lstm_classifier", "args": {"hidden_size": 128, "num_layers": 2,
                                                            "bidirectional": True}}, (30, 8), 32),
    "gru_classifier": ({"zoo": "gru_classifier"}, (20, 16), 64),
    "transformer_classifier": ({"zoo": "transformer_classifier"}, (20, 16), 64),
    "linear_regression": ({"zoo": "linear_regression"}, (2048,), 256),
    "logistic_regression": ({"zoo": "logistic_regression"}, (2048,), 256),
    "linear_svm": ({"zoo": "linear_svm"}, (2048,), 256),
}


def measure(name: str) -> dict:
    """Plan the case as POST /v1/jobs would, then train 3 steps with tracemalloc on."""
    import time
    import tracemalloc

    from config.settings import Settings
    from ingest import DatasetFacts
    from ingest.heads import head_info
    from plan.planner import plan_job
    from plan.request import JobCreate
    from worker.loop import Claim, TrainingLoop
    from worker.supervision import Control

    model, shape, batch = CASES[name]
    rng = np.random.default_rng(0)
    n = 3 * batch
    x = rng.normal(size=(n, *shape)).astype(np.float32)
    regression = name == "linear_regression"
    y = rng.normal(size=(n,)).astype(np.float32) if regression else (np.arange(n) % 10).astype(np.int64)
    task = "regression" if regression else "classification"
    facts = DatasetFacts(input_shape=list(shape), heads={"output": head_info(task, y)}, num_samples=n)
    training = {"epochs": 1, "batch_size": batch, "optimizer": {"type": "Adam", "lr": 1e-3}, "validation_split": 0.0}
    plan = plan_job(JobCreate(name=name, dataset_id="d", model=model, training=training), facts, Settings())
    claim = Claim("job", 1, plan, 0, time.time() + 3600, x, {"output": y}, np.arange(n), np.arange(0), None)
    tracemalloc.start()
    loop = TrainingLoop(claim, Settings(device="cpu"), Control())  # builds the model and the optimizer
    tracemalloc.reset_peak()  # from here: the model's weights and the training split held, then training
    data = sum(t.numel() * t.element_size() for t in loop.loader.dataset.tensors)  # the split (the cap's share)
    loop.checkpoint = lambda *_, **__: None  # not measured: a checkpoint is written between steps
    loop.run()
    _, peak = tracemalloc.get_traced_memory()
    return {"estimate": plan.memory_bytes, "peak": peak - data, "steps": loop.position["step"]}


def test_every_zoo_model_is_covered():
    assert {spec["zoo"] for spec, _, _ in CASES.values()} == set(zoo.MODELS)


@pytest.mark.parametrize("name", sorted(CASES))
def test_memory_estimate_is_within_1_5x_of_the_measured_peak(name):
    code = f"import json; from tests.worker.test_oom_estimate import measure; print(json.dumps(measure({name!r})))"
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    got = json.loads(run.stdout.strip().splitlines()[-1])
    assert got["steps"] == 3
    ratio = got["estimate"] / got["peak"]
    print(f"\n{name}: estimate {got['estimate'] / 2**20:.1f} MiB, measured peak {got['peak'] / 2**20:.1f} MiB, "
          f"ratio {ratio:.2f}")
    assert 1 / 1.5 <= ratio <= 1.5


def test_a_job_past_max_training_flops_is_refused_naming_epochs():
    from config.settings import Settings
    from ingest import DatasetFacts
    from ingest.heads import head_info
    from plan.errors import PlanError
    from plan.planner import plan_job
    from plan.request import JobCreate

    y = (np.arange(1000) % 10).astype(np.int64)
    facts = DatasetFacts(input_shape=[3, 32, 32], heads={"output": head_info("classification", y)}, num_samples=1000)
    body = JobCreate(name="big", dataset_id="d", model={"zoo": "resnet18"},
                     training={"epochs": 1000, "batch_size": 32, "optimizer": {"type": "SGD", "lr": 0.1},
                               "validation_split": 0.2})
    settings = Settings(max_training_flops=1e15)
    with pytest.raises(PlanError) as refused:
        plan_job(body, facts, settings)
    assert refused.value.loc == ["body", "training", "epochs"]
    assert "max_training_flops (1e+15)" in str(refused.value)
    fewer = body.model_copy(update={"training": body.training.model_copy(update={"epochs": 1})})
    plan = plan_job(fewer, facts, settings)  # a thousandth of it fits
    assert 0 < plan.training_flops <= 1e15
