"""The blob store over both databases and both backends: chunking, checksums, partial writes,
owner cascades, seekable reads."""
from __future__ import annotations

import hashlib
import io
import os

import numpy as np
import pytest
from sqlalchemy import func, select, text, update

from store.blobs import BlobCorrupt, BlobError, BlobMissing, Blobs
from store.db import session_scope
from store.models import BlobChunk
from store.repositories import datasets


@pytest.fixture(params=["database", "filesystem"])
def make_blobs(request, database_url, tmp_path):
    root = tmp_path / "blobs"

    def make(session, chunk_bytes=1000):
        return Blobs(session, backend=request.param, chunk_bytes=chunk_bytes, root=root)

    make.backend, make.root = request.param, root
    return make


def _chunk_rows(url, key):
    with session_scope(url) as s:
        return s.scalar(select(func.count()).select_from(BlobChunk).where(BlobChunk.blob_key == key))


def test_put_stream_get_delete_in_fixed_size_chunks(database_url, make_blobs):
    data = os.urandom(3500)
    with session_scope(database_url) as s:
        blob = make_blobs(s).put("t/one", io.BytesIO(data))
        assert (blob.size_bytes, blob.chunks, blob.sha256) == (3500, 4, hashlib.sha256(data).hexdigest())
    with session_scope(database_url) as s:
        b = make_blobs(s)
        assert b.exists("t/one") and not b.exists("t/other")
        assert [len(c) for c in b.stream("t/one")] == [1000, 1000, 1000, 500]
        assert b.get("t/one") == data
        assert b.read_chunk("t/one", 3) == data[3000:]
    assert _chunk_rows(database_url, "t/one") == 4
    if make_blobs.backend == "filesystem":
        assert sorted(os.listdir(make_blobs.root / "t%one")) == ["0", "1", "2", "3"]
    with session_scope(database_url) as s:
        make_blobs(s).delete("t/one")
    with session_scope(database_url) as s:
        b = make_blobs(s)
        assert not b.exists("t/one")
        with pytest.raises(BlobMissing):
            b.get("t/one")
    assert _chunk_rows(database_url, "t/one") == 0
    assert not (make_blobs.root / "t%one").exists()


def test_put_accepts_bytes_and_iterables_and_replaces(database_url, make_blobs):
    with session_scope(database_url) as s:
        b = make_blobs(s, chunk_bytes=7)
        b.put("k", b"a" * 20)
        b.put("k", [b"xy", b"z" * 10, b"", b"w"])
        assert b.get("k") == b"xy" + b"z" * 10 + b"w"
        assert [len(c) for c in b.stream("k")] == [7, 6]


def test_chunks_written_out_of_order_seal_and_a_rewrite_is_idempotent(database_url, make_blobs):
    data = os.urandom(2500)
    parts = [data[i:i + 1000] for i in range(0, 2500, 1000)]
    with session_scope(database_url) as s:
        b = make_blobs(s)
        b.create("up/1")
        b.write_chunk("up/1", 2, parts[2])
        b.write_chunk("up/1", 0, b"garbage")  # a client's first try, redone below
        with pytest.raises(BlobError, match=r"lacks chunks \[1\]"):
            b.seal("up/1", chunks=3, size=2500)
        b.write_chunk("up/1", 0, parts[0])
        b.write_chunk("up/1", 1, parts[1])
        assert sorted(b.chunk_sums("up/1")) == [0, 1, 2]
        assert not b.exists("up/1")
        blob = b.seal("up/1", chunks=3, size=2500)
        assert blob.sha256 == hashlib.sha256(data).hexdigest()
        assert b.get("up/1") == data
        with pytest.raises(BlobError, match="complete"):
            b.write_chunk("up/1", 0, parts[0])


def test_a_short_middle_chunk_cannot_be_sealed(database_url, make_blobs):
    with session_scope(database_url) as s:
        b = make_blobs(s)
        b.create("up/2")
        b.write_chunk("up/2", 0, b"x" * 999)
        b.write_chunk("up/2", 1, b"y" * 10)
        with pytest.raises(BlobError, match="not 1000 bytes"):
            b.seal("up/2", chunks=2, size=1009)
        with pytest.raises(BlobError, match="over its chunk size"):
            b.write_chunk("up/2", 0, b"x" * 1001)


def test_a_changed_chunk_is_detected(database_url, make_blobs):
    with session_scope(database_url) as s:
        make_blobs(s).put("c", b"q" * 2500)
    if make_blobs.backend == "filesystem":
        (make_blobs.root / "c" / "1").write_bytes(b"Q" * 1000)
    else:
        with session_scope(database_url) as s:
            s.execute(update(BlobChunk).where(BlobChunk.blob_key == "c", BlobChunk.seq == 1).values(data=b"Q" * 1000))
    with session_scope(database_url) as s:
        b = make_blobs(s)
        with pytest.raises(BlobCorrupt, match="chunk 1"):
            b.get("c")
        assert b.read_chunk("c", 1, verify=False) == b"Q" * 1000


def test_a_blob_goes_with_its_owner_and_collect_clears_its_files(database_url, make_blobs):
    x = np.zeros((4, 2), np.float32)
    with session_scope(database_url) as s:
        ds = datasets.create(s, name="d", inputs=x, targets=np.arange(4), task="classification")
        make_blobs(s).put("owned", b"z" * 3000, dataset_id=ds.id)
    with session_scope(database_url) as s:
        s.execute(text("DELETE FROM blobs WHERE key <> 'owned'"))  # the dataset's own shards
        s.execute(text("DELETE FROM datasets WHERE id = :i"), {"i": ds.id})
    with session_scope(database_url) as s:
        b = make_blobs(s)
        assert not b.exists("owned")
        removed = b.collect(older_than_s=-1)
    assert _chunk_rows(database_url, "owned") == 0
    if make_blobs.backend == "filesystem":
        assert removed == 1 and not (make_blobs.root / "owned").exists()


def test_open_is_a_seekable_file_numpy_and_zipfile_read(database_url, make_blobs):
    rng = np.random.default_rng(0)
    arrays = {"inputs": rng.normal(size=(50, 7)).astype(np.float32), "targets": rng.integers(0, 3, 50)}
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    with session_scope(database_url) as s:
        b = make_blobs(s, chunk_bytes=333)
        b.put("z", buf.getvalue())
        with np.load(b.open("z")) as npz:
            for k, v in arrays.items():
                np.testing.assert_array_equal(npz[k], v)
        f = b.open("z")
        f.seek(-10, io.SEEK_END)
        assert f.read() == buf.getvalue()[-10:]
        f.seek(300)
        assert f.read(100) == buf.getvalue()[300:400]


def test_unsafe_keys_and_unknown_backends_are_refused(database_url, tmp_path):
    with session_scope(database_url) as s:
        with pytest.raises(ValueError, match="blob_backend"):
            Blobs(s, backend="s3")
        with pytest.raises(ValueError, match="blob key"):
            Blobs(s).put("../etc/passwd", b"x")
        with pytest.raises(ValueError, match="blob_dir"):
            Blobs(s, backend="filesystem")


def test_streamed_pieces_are_read_part_by_part_and_still_checked(database_url, make_blobs):
    data = os.urandom(2600)
    with session_scope(database_url) as s:
        b = make_blobs(s)
        b.put("p", data)
        pieces = list(b.stream("p", piece_bytes=300))
        assert [len(p) for p in pieces] == [300, 300, 300, 100] * 2 + [300, 300] and b"".join(pieces) == data
        assert b"".join(b.chunk_pieces("p", 2, 7)) == data[2000:]
    if make_blobs.backend == "filesystem":
        (make_blobs.root / "p" / "1").write_bytes(b"Q" * 1000)
    else:
        with session_scope(database_url) as s:
            s.execute(update(BlobChunk).where(BlobChunk.blob_key == "p", BlobChunk.seq == 1).values(data=b"Q" * 1000))
    with session_scope(database_url) as s:
        got = []
        with pytest.raises(BlobCorrupt, match="chunk 1"):
            for piece in make_blobs(s).stream("p", piece_bytes=400):
                got.append(piece)
        assert b"".join(got) == data[:1000] + b"Q" * 1000  # handed out before the check at the chunk's end
