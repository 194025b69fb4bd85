"""datasets: per-head target information (multi-task, regression) and the data's source.

Revision ID: 0002
Revises: 0001
"""
import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("datasets", schema=None) as batch_op:
        batch_op.add_column(sa.Column("targets_info", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("source", sa.String(length=32), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("datasets", schema=None) as batch_op:
        batch_op.drop_column("source")
        batch_op.drop_column("targets_info")
