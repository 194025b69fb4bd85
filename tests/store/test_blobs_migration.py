"""Migration 0010 over SQLite and PostgreSQL: rows from before the blob store keep working
after the upgrade (inline layout), and a downgrade writes blob-stored datasets and
checkpoints back inline, readable by the old schema."""
from __future__ import annotations

import json
import os

import numpy as np
from alembic import command
from sqlalchemy import text

from ingest import codec
from migrations import alembic_config, upgrade
from store.db import get_engine, session_scope
from store.repositories import checkpoints, datasets


def _insert_old_rows(url, x, y, ckpt):
    with get_engine(url).begin() as conn:
        conn.execute(text("INSERT INTO datasets (id, owner, name, task, num_samples, input_shape, input_dtype, "
                          "num_classes, targets_info, source, size_bytes, data, created_at) VALUES ('old', 'local', "
                          "'d', 'classification', :n, :shape, 'float32', 3, :info, 'inline', :size, :data, "
                          "CURRENT_TIMESTAMP)"),
                     {"n": len(x), "shape": json.dumps(list(x.shape[1:])), "size": 1,
                      "info": json.dumps({"output": {"task": "classification", "shape": [], "dtype": "int64",
                                                     "num_classes": 3}}),
                      "data": codec.encode(x, {"output": y})})
        conn.execute(text("INSERT INTO jobs (id, owner, name, dataset_id, model_spec, training, status, attempt, "
                          "max_restarts, cancel_requested, epoch, step, total_steps, final_metrics, event_seq, "
                          "created_at) VALUES ('j', 'local', 'j', 'old', '{}', '{}', 'succeeded', 1, 3, false, 1, 1, "
                          "1, '{}', 0, CURRENT_TIMESTAMP)"))
        conn.execute(text("INSERT INTO checkpoints (id, job_id, epoch, step, attempt, size_bytes, data, state, "
                          "created_at) VALUES ('c-old', 'j', 1, 1, 1, :n, :d, :s, CURRENT_TIMESTAMP)"),
                     {"n": len(ckpt), "d": ckpt, "s": b"state"})


def test_old_rows_survive_the_upgrade_and_new_ones_the_downgrade(database_url, monkeypatch):
    monkeypatch.setenv("TRAINYARD_BLOB_CHUNK_BYTES", "1000")
    from config.settings import get_settings

    get_settings.cache_clear()
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(40, 5)).astype(np.float32), rng.integers(0, 3, 40)
    old_ckpt, new_ckpt = os.urandom(2500), os.urandom(3700)
    command.downgrade(alembic_config(database_url), "0009")
    _insert_old_rows(database_url, x, y, old_ckpt)
    upgrade(database_url)
    with session_scope(database_url) as s:
        got_x, got_y = datasets.load_all(s, dataset_id="old")
        assert np.array_equal(got_x, x) and np.array_equal(got_y["output"], y)
        c = checkpoints.latest_with_data(s, job_id="j", with_state=True)
        assert (c.id, c.layout, c.data, c.state) == ("c-old", None, old_ckpt, b"state")
        new_x = rng.integers(0, 256, size=(30, 2, 3, 3), dtype=np.uint8)
        new_id = datasets.create(s, name="n", inputs=new_x, targets=y[:30], task="classification").id
        added = checkpoints.add(s, job_id="j", epoch=2, step=2, data=new_ckpt, state=b"s2")
        assert added.layout == "blobs"
    command.downgrade(alembic_config(database_url), "0009")
    with get_engine(database_url).connect() as conn:
        blob = conn.execute(text("SELECT data FROM datasets WHERE id = :i"), {"i": new_id}).scalar_one()
        rows = dict(conn.execute(text("SELECT id, data FROM checkpoints")).all())
    back_x, back_y = codec.decode(bytes(blob))
    assert back_x.dtype == np.uint8 and np.array_equal(back_x, new_x) and np.array_equal(back_y["output"], y[:30])
    assert bytes(rows[added.id]) == new_ckpt and bytes(rows["c-old"]) == old_ckpt
    upgrade(database_url)
    with session_scope(database_url) as s:  # inline again: read through the old layout
        assert checkpoints.latest_with_data(s, job_id="j").data == new_ckpt
    get_settings.cache_clear()


def test_weights_rows_across_migration_0013(database_url, monkeypatch):
    """Weights stored inline before 0013 read the same after it; blob-stored weights (many
    chunks) are written back inline by its downgrade and read again after a new upgrade."""
    from store.repositories import weights

    monkeypatch.setenv("TRAINYARD_BLOB_CHUNK_BYTES", "1000")
    from config.settings import get_settings

    get_settings.cache_clear()
    old_file, new_file = os.urandom(1500), os.urandom(4200)
    command.downgrade(alembic_config(database_url), "0012")
    with get_engine(database_url).begin() as conn:
        conn.execute(text("INSERT INTO weights (id, owner, name, tensors, size_bytes, data, created_at) VALUES "
                          "('w-old', 'local', 'old', '{}', :n, :d, CURRENT_TIMESTAMP)"),
                     {"n": len(old_file), "d": old_file})
    upgrade(database_url)
    with session_scope(database_url) as s:
        assert weights.get(s, weights_id="w-old").layout is None
        assert weights.data(s, weights_id="w-old") == old_file
        new_id = weights.create(s, owner="local", name="new", data=new_file, tensors={}).id
    with get_engine(database_url).connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM blob_chunks WHERE blob_key = :k"),
                            {"k": f"weights/{new_id}/file"}).scalar_one() == 5
    command.downgrade(alembic_config(database_url), "0012")
    with get_engine(database_url).connect() as conn:
        rows = dict(conn.execute(text("SELECT id, data FROM weights")).all())
    assert bytes(rows[new_id]) == new_file and bytes(rows["w-old"]) == old_file
    upgrade(database_url)
    with session_scope(database_url) as s:
        assert weights.data(s, weights_id=new_id) == new_file
    get_settings.cache_clear()
