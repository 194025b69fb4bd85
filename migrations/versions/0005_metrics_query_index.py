"""metrics: a min/max pyramid level per row and the index that reads a series' history by it.

``metrics.level`` is the largest L at which the row holds the minimum or the maximum of its
series' (job, kind, name) aligned block of 2**L steps; ``ix_metrics_series_level`` (job_id,
kind, name, level, step) reads the extremes of every block at a level as a few index ranges,
so GET /v1/jobs/{id}/metrics?max_points=N reads about N rows, not the whole series. Rows
stored before this revision get their levels here (a frozen copy of the rule in
store.repositories.metrics).

Revision ID: 0005
Revises: 0004
"""
import numpy as np
import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

_TOP = 31
_metrics = sa.table("metrics", sa.column("id", sa.Integer), sa.column("job_id", sa.String),
                    sa.column("kind", sa.String), sa.column("name", sa.String), sa.column("step", sa.Integer),
                    sa.column("value", sa.Float), sa.column("level", sa.SmallInteger))


def _levels(steps: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Levels of one series' rows, given in step order (distinct steps in [0, 2**31))."""
    n = len(steps)
    if n <= 1:
        return np.full(n, _TOP, dtype=np.int16)
    block = steps.astype(np.int64)
    by_rank = np.lexsort((block, values))
    rank = np.empty(n, dtype=np.int64)
    rank[by_rank] = np.arange(n)
    low = high = rank
    level = np.zeros(n, dtype=np.int16)
    for lv in range(1, _TOP + 1):
        block = block >> 1
        starts = np.flatnonzero(np.r_[True, block[1:] != block[:-1]])
        block, low, high = block[starts], np.minimum.reduceat(low, starts), np.maximum.reduceat(high, starts)
        top = len(block) == 1
        level[by_rank[low]] = _TOP if top else lv
        level[by_rank[high]] = _TOP if top else lv
        if top:
            break
    return level


def upgrade() -> None:
    with op.batch_alter_table("metrics", schema=None) as batch_op:
        batch_op.add_column(sa.Column("level", sa.SmallInteger(), nullable=False, server_default="0"))
        batch_op.create_index("ix_metrics_series_level", ["job_id", "kind", "name", "level", "step"], unique=False)
    conn = op.get_bind()
    series = conn.execute(sa.select(_metrics.c.job_id, _metrics.c.kind, _metrics.c.name).distinct()).all()
    set_level = (sa.update(_metrics).where(_metrics.c.id == sa.bindparam("b_id"))
                 .values(level=sa.bindparam("b_level")))
    for job_id, kind, name in series:
        rows = conn.execute(
            sa.select(_metrics.c.id, _metrics.c.step, _metrics.c.value)
            .where(_metrics.c.job_id == job_id, _metrics.c.kind == kind, _metrics.c.name == name)
            .order_by(_metrics.c.step)
        ).all()
        ids = [r.id for r in rows]
        lv = _levels(np.array([r.step for r in rows], dtype=np.int64), np.array([r.value for r in rows], dtype=float))
        changed = [{"b_id": i, "b_level": level} for i, level in zip(ids, lv.tolist()) if level]
        for i in range(0, len(changed), 10_000):
            conn.execute(set_level, changed[i:i + 10_000])


def downgrade() -> None:
    with op.batch_alter_table("metrics", schema=None) as batch_op:
        batch_op.drop_index("ix_metrics_series_level")
        batch_op.drop_column("level")
