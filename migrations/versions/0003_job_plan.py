"""jobs: the typed training plan beside the training config as submitted.

Jobs from before this revision kept the resolved heads and the zoo output count inside
``training``; they move into ``plan`` (a frozen copy of the v1 plan rules, so that queued
jobs still run after the upgrade) and ``training`` keeps what the user configured.

Revision ID: 0003
Revises: 0002
"""
import math

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

_jobs = sa.table("jobs", sa.column("id", sa.String), sa.column("training", sa.JSON), sa.column("plan", sa.JSON),
                 sa.column("model_spec", sa.JSON), sa.column("dataset_id", sa.String),
                 sa.column("max_restarts", sa.Integer), sa.column("time_limit_s", sa.Integer))
_datasets = sa.table("datasets", sa.column("id", sa.String), sa.column("num_samples", sa.Integer),
                     sa.column("input_shape", sa.JSON))
_DEFAULT_HEAD = {"output": {"target": "output", "task": "classification",
                            "loss": {"type": "CrossEntropyLoss", "weight": 1.0, "args": {}}, "metrics": ["accuracy"]}}


def _plan(row, training: dict, heads: dict, num_outputs) -> dict | None:
    """The v1 plan of a job stored before plans existed, or None if its config is incomplete."""
    try:
        n = int(row.num_samples)
        split = float(training.get("validation_split", 0.2))
        n_val = 0
        if not training.get("validation_dataset_id"):
            n_val = round(n * split)
            if split > 0 and n_val == 0 and n > 1:
                n_val = 1
        per_rank = (n - n_val) // int(training.get("devices", 1))
        steps = math.ceil(per_rank / int(training["batch_size"]))
        if steps < 1:
            return None
        return {"version": 1, "model": row.model_spec, "training": training, "input_shape": list(row.input_shape),
                "num_outputs": num_outputs, "heads": heads, "train_samples": n - n_val, "steps_per_epoch": steps,
                "total_steps": steps * int(training["epochs"]), "memory_bytes": 0,
                "max_restarts": int(row.max_restarts),
                "time_limit_s": int(row.time_limit_s or 2**31 - 1)}
    except (KeyError, TypeError, ValueError):
        return None


def upgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("plan", sa.JSON(), nullable=True))
    conn = op.get_bind()
    rows = conn.execute(sa.select(_jobs.c.id, _jobs.c.training, _jobs.c.model_spec, _jobs.c.max_restarts,
                                  _jobs.c.time_limit_s, _datasets.c.num_samples, _datasets.c.input_shape)
                        .join(_datasets, _datasets.c.id == _jobs.c.dataset_id)).all()
    for row in rows:
        training = dict(row.training or {})
        heads = training.pop("heads", None) or _DEFAULT_HEAD
        num_outputs = training.pop("num_outputs", None)
        conn.execute(sa.update(_jobs).where(_jobs.c.id == row.id)
                     .values(training=training, plan=_plan(row, training, heads, num_outputs)))


def downgrade() -> None:
    conn = op.get_bind()
    for row in conn.execute(sa.select(_jobs.c.id, _jobs.c.training, _jobs.c.plan)).all():
        if row.plan:
            training = {**row.plan["training"], "heads": row.plan["heads"], "num_outputs": row.plan["num_outputs"]}
            conn.execute(sa.update(_jobs).where(_jobs.c.id == row.id).values(training=training))
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_column("plan")
