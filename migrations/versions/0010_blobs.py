"""blobs: large bytes in fixed-size chunks (store.blobs); sharded datasets, chunked
checkpoints and resumable dataset uploads.

Rows from before keep their inline layout (``layout`` NULL) and stay readable; sizes become
64-bit (a dataset may pass 2 GiB). Downgrading writes blob-stored checkpoints and datasets of
the database backend back inline (each must then fit in one value, as before).

Revision ID: 0010
Revises: 0009
"""
import io

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pg = op.get_bind().dialect.name == "postgresql"
    op.create_table(
        "dataset_uploads",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("owner", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("filename", sa.String(length=200), nullable=False),
        sa.Column("options", sa.JSON(), nullable=False),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("part_bytes", sa.BigInteger(), nullable=False),
        sa.Column("parts", sa.Integer(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=True),
        sa.Column("dataset_id", sa.String(length=32), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["dataset_id"], ["datasets.id"], ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_dataset_uploads_owner", "dataset_uploads", ["owner"])
    op.create_table(
        "blobs",
        sa.Column("key", sa.String(length=200), nullable=False),
        sa.Column("backend", sa.String(length=16), nullable=False),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("chunk_bytes", sa.BigInteger(), nullable=False),
        sa.Column("chunks", sa.Integer(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=True),
        sa.Column("checkpoint_id", sa.String(length=32), nullable=True),
        sa.Column("dataset_id", sa.String(length=32), nullable=True),
        sa.Column("upload_id", sa.String(length=32), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["checkpoint_id"], ["checkpoints.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["dataset_id"], ["datasets.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["upload_id"], ["dataset_uploads.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("key"),
    )
    for col in ("checkpoint_id", "dataset_id", "upload_id"):
        op.create_index(f"ix_blobs_{col}", "blobs", [col])
    op.create_table(
        "blob_chunks",
        sa.Column("blob_key", sa.String(length=200), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=True),
        sa.ForeignKeyConstraint(["blob_key"], ["blobs.key"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("blob_key", "seq"),
    )
    if pg:  # chunks are stored uncompressed out of line: no wasted compression of binary data, and a
        # read of part of a chunk (substr) fetches only that part
        op.execute("ALTER TABLE blob_chunks ALTER COLUMN data SET STORAGE EXTERNAL")
    op.add_column("datasets", sa.Column("layout", sa.JSON(), nullable=True))
    op.add_column("checkpoints", sa.Column("layout", sa.String(length=16), nullable=True))
    if pg:  # SQLite's integers are 64-bit already
        op.alter_column("datasets", "size_bytes", type_=sa.BigInteger())
        op.alter_column("checkpoints", "size_bytes", type_=sa.BigInteger())


def _blob(conn, key: str) -> bytes:
    rows = conn.execute(sa.text("SELECT data FROM blob_chunks WHERE blob_key = :k ORDER BY seq"), {"k": key})
    parts = []
    for (data,) in rows:
        if data is None:
            raise RuntimeError(f"blob {key} is in the filesystem backend; downgrading cannot inline it")
        parts.append(bytes(data))
    return b"".join(parts)


def _inline(conn) -> None:
    import json

    import numpy as np

    for (cid,) in conn.execute(sa.text("SELECT id FROM checkpoints WHERE layout IS NOT NULL")).all():
        model, state = _blob(conn, f"checkpoints/{cid}/model"), _blob(conn, f"checkpoints/{cid}/state")
        conn.execute(sa.text("UPDATE checkpoints SET data = :d, state = :s WHERE id = :i"),
                     {"d": model, "s": state or None, "i": cid})
    rows = conn.execute(sa.text("SELECT id, layout FROM datasets WHERE layout IS NOT NULL AND deleted_at IS NULL"))
    for did, layout in rows.all():
        layout = json.loads(layout) if isinstance(layout, str) else layout
        arrays = {name: np.frombuffer(_blob(conn, a["key"]), dtype=a["dtype"]).reshape(a["shape"])
                  for name, a in layout["arrays"].items()}
        buf = io.BytesIO()
        np.savez_compressed(buf, **arrays)
        conn.execute(sa.text("UPDATE datasets SET data = :d, size_bytes = :n WHERE id = :i"),
                     {"d": buf.getvalue(), "n": len(buf.getvalue()), "i": did})


def downgrade() -> None:
    conn = op.get_bind()
    _inline(conn)
    if conn.dialect.name == "postgresql":
        op.alter_column("checkpoints", "size_bytes", type_=sa.Integer())
        op.alter_column("datasets", "size_bytes", type_=sa.Integer())
    with op.batch_alter_table("checkpoints") as batch:
        batch.drop_column("layout")
    with op.batch_alter_table("datasets") as batch:
        batch.drop_column("layout")
    op.drop_table("blob_chunks")
    for col in ("checkpoint_id", "dataset_id", "upload_id"):
        op.drop_index(f"ix_blobs_{col}", table_name="blobs")
    op.drop_table("blobs")
    op.drop_index("ix_dataset_uploads_owner", table_name="dataset_uploads")
    op.drop_table("dataset_uploads")
