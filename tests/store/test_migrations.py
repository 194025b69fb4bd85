"""The Alembic migration creates store's tables and round-trips down and up."""
from __future__ import annotations

from alembic import command
from sqlalchemy import inspect

from migrations import alembic_config, upgrade
from store.db import get_engine
from store.models import Base


def test_migration_matches_models_and_round_trips(database_url):
    engine = get_engine(database_url)
    assert set(inspect(engine).get_table_names()) >= set(Base.metadata.tables)
    for table in Base.metadata.tables.values():
        cols = {c["name"] for c in inspect(engine).get_columns(table.name)}
        assert cols == {c.name for c in table.columns}, table.name
    command.downgrade(alembic_config(database_url), "base")
    assert not set(inspect(engine).get_table_names()) & set(Base.metadata.tables)
    upgrade(database_url)
    assert set(inspect(engine).get_table_names()) >= set(Base.metadata.tables)


def test_0003_moves_resolved_heads_out_of_training_into_a_plan_the_worker_follows(database_url):
    """A job queued before plans existed (heads and num_outputs inside ``training``) gets a
    v1 plan on upgrade, and the worker trains it."""
    import json

    import numpy as np
    from sqlalchemy import text

    from config.settings import Settings
    from store.db import session_scope
    from store.repositories import datasets, jobs
    from worker.lifecycle import run_job

    x = np.random.default_rng(0).normal(size=(20, 3)).astype(np.float32)
    with session_scope(database_url) as s:
        ds_id = datasets.create(s, name="d", inputs=x, targets=(x[:, 0] > 0).astype(np.int64),
                                task="classification").id
    command.downgrade(alembic_config(database_url), "0002")
    heads = {"output": {"target": "output", "task": "classification",
                        "loss": {"type": "CrossEntropyLoss", "weight": 1.0, "args": {}}, "metrics": ["accuracy"]}}
    training = {"epochs": 2, "batch_size": 4, "optimizer": {"type": "SGD", "lr": 0.1, "momentum": 0.0,
                "dampening": 0.0, "weight_decay": 0.0, "nesterov": False}, "seed": 0, "validation_split": 0.2,
                "devices": 1, "heads": heads, "num_outputs": 2}
    with get_engine(database_url).begin() as conn:
        conn.execute(text("INSERT INTO jobs (id, owner, name, dataset_id, model_spec, training, status, attempt, "
                          "max_restarts, cancel_requested, epoch, step, total_steps, final_metrics, created_at) "
                          "VALUES ('old', 'local', 'j', :ds, :spec, :training, 'queued', 0, 3, false, 0, 0, 0, "
                          "'{}', CURRENT_TIMESTAMP)"),
                     {"ds": ds_id, "training": json.dumps(training),
                      "spec": json.dumps({"layers": [{"type": "Linear", "in_features": 3, "out_features": 2}]})})
    upgrade(database_url)
    with session_scope(database_url) as s:
        job = jobs.get(s, job_id="old")
        assert "heads" not in job.training and "num_outputs" not in job.training
        assert job.plan["heads"] == heads and job.plan["num_outputs"] == 2
        assert (job.plan["train_samples"], job.plan["steps_per_epoch"], job.plan["total_steps"]) == (16, 4, 8)
    assert run_job("old", Settings(database_url=database_url)) == "succeeded"
    command.downgrade(alembic_config(database_url), "0002")
    with get_engine(database_url).connect() as conn:
        restored = conn.execute(text("SELECT training FROM jobs WHERE id = 'old'")).scalar_one()
    restored = json.loads(restored) if isinstance(restored, str) else restored
    assert restored["heads"] == heads and restored["num_outputs"] == 2
    upgrade(database_url)
