"""weights as blobs: a weights row's file may be the blob weights/<id>/file (layout "blobs"),
so a fine-tune snapshot of a checkpoint of any size is copied chunk by chunk, never whole
through one statement (PostgreSQL's 1 GB message limit).

Revision ID: 0013
Revises: 0012
"""
import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("weights") as batch:
        batch.add_column(sa.Column("layout", sa.String(length=16), nullable=True))
    if op.get_bind().dialect.name == "postgresql":  # SQLite's integers are 64-bit already
        op.alter_column("weights", "size_bytes", type_=sa.BigInteger())
    with op.batch_alter_table("blobs") as batch:
        batch.add_column(sa.Column("weights_id", sa.String(length=32), nullable=True))
        batch.create_foreign_key("fk_blobs_weights_id_weights", "weights", ["weights_id"], ["id"], ondelete="CASCADE")
        batch.create_index("ix_blobs_weights_id", ["weights_id"])


def downgrade() -> None:
    # blob-stored weights cannot be kept inline by a downgrade: they are read back into the row
    bind = op.get_bind()
    rows = bind.execute(sa.text("SELECT w.id, b.key FROM weights w JOIN blobs b ON b.weights_id = w.id "
                                "WHERE w.layout = 'blobs'")).fetchall()
    for weights_id, key in rows:
        chunks = bind.execute(sa.text("SELECT data FROM blob_chunks WHERE blob_key = :k ORDER BY seq"),
                              {"k": key}).fetchall()
        if any(c[0] is None for c in chunks):
            raise RuntimeError(f"weights {weights_id} are in the filesystem blob store; downgrade cannot inline them")
        bind.execute(sa.text("UPDATE weights SET data = :d WHERE id = :i"),
                     {"d": b"".join(bytes(c[0]) for c in chunks), "i": weights_id})
    bind.execute(sa.text("DELETE FROM blobs WHERE weights_id IS NOT NULL"))
    with op.batch_alter_table("blobs") as batch:
        batch.drop_index("ix_blobs_weights_id")
        batch.drop_constraint("fk_blobs_weights_id_weights", type_="foreignkey")
        batch.drop_column("weights_id")
    with op.batch_alter_table("weights") as batch:
        batch.drop_column("layout")
    if bind.dialect.name == "postgresql":
        op.alter_column("weights", "size_bytes", type_=sa.Integer())
