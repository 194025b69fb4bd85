"""throughput: measured training FLOP/s per device kind, for calibrated time estimates.

Revision ID: 0009
Revises: 0008
"""
import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "throughput",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("device", sa.String(length=16), nullable=False),
        sa.Column("flops_per_s", sa.Float(), nullable=False),
        sa.Column("job_id", sa.String(length=32), nullable=True),
        sa.Column("measured_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_throughput_device", "throughput", ["device"])


def downgrade() -> None:
    op.drop_index("ix_throughput_device", table_name="throughput")
    op.drop_table("throughput")
