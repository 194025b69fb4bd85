"""Sharded datasets on the worker: the cache (filled shard by shard, checksummed, reused by a
second job, refilled when broken), batches through memory maps exactly equal to the
in-memory path's (same seed, data-parallel shards, DataLoader worker processes,
DistributedSampler), and a job trained on a sharded dataset equal to one on the same data
stored inline."""
from __future__ import annotations

import os
import time

import numpy as np
import pytest
from safetensors.numpy import load as load_safetensors

import engine
from config.settings import Settings
from engine.utils.data import DataLoader, DistributedSampler, TensorDataset
from ingest import codec
from store.blobs import BlobCorrupt
from store.db import session_scope
from store.models import BlobChunk, Dataset
from store.repositories import checkpoints, datasets
from tests.worker.jobs import new_job
from worker import data
from worker.data import heads_of
from worker.lifecycle import run_job
from worker.sampling import EpochSampler


@pytest.fixture
def settings(database_url, tmp_path, monkeypatch):
    monkeypatch.setenv("TRAINYARD_BLOB_CHUNK_BYTES", "4096")  # many shards for a small set
    from config.settings import get_settings

    get_settings.cache_clear()
    yield Settings(database_url=database_url, dataset_cache_dir=tmp_path / "cache", blob_chunk_bytes=4096)
    get_settings.cache_clear()


def _images(n=203, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, size=(n, 1, 6, 6), dtype=np.uint8), rng.integers(0, 4, size=n).astype(np.int64)


def _stored(settings, x, y) -> str:
    with session_scope(settings.resolved_database_url) as s:
        return datasets.create(s, name="imgs", inputs=x, targets=y, task="classification").id


def _loaded(settings, ds_id):
    with session_scope(settings.resolved_database_url) as s:
        return data.load(s, dataset_id=ds_id, settings=settings)


def _in_memory_batches(x, y, idx, sampler, batch_size):
    xt = engine.tensor(x, dtype=engine.float32)
    yt = heads_of({"output": y}, "output", "classification")
    loader = DataLoader(TensorDataset(xt[idx], yt[idx]), batch_size=batch_size, sampler=sampler)
    return [(xb.numpy(), yb.numpy()) for xb, yb in loader]


def _sharded_batches(inputs, y, idx, sampler, batch_size, workers=0):
    loader = data.sharded_loader(inputs, [y], ["classification"], idx, sampler, batch_size, "cpu",
                                 num_workers=workers)
    return [(xb.numpy(), yb.numpy()) for xb, yb in loader]


def _assert_same(a, b):
    assert len(a) == len(b)
    for (xa, ya), (xb, yb) in zip(a, b):
        assert xa.dtype == xb.dtype == np.float32 and ya.dtype == yb.dtype == np.int64
        np.testing.assert_array_equal(xa, xb)
        np.testing.assert_array_equal(ya, yb)


def test_the_shards_are_cached_checksummed_and_mapped_not_loaded(settings):
    x, y = _images()
    ds_id = _stored(settings, x, y)
    with session_scope(settings.resolved_database_url) as s:
        layout = s.get(Dataset, ds_id).layout
        assert layout["arrays"]["inputs"]["dtype"] == "|u1"  # uint8 kept
        assert s.query(BlobChunk).filter(BlobChunk.blob_key == layout["arrays"]["inputs"]["key"]).count() == 2
    inputs, targets = _loaded(settings, ds_id)
    assert isinstance(inputs, data.MappedArray) and isinstance(inputs.array, np.memmap)
    assert inputs.array.dtype == np.uint8 and np.array_equal(inputs.array, x)
    np.testing.assert_array_equal(targets["output"], y)
    folder = settings.resolved_cache_dir / ds_id
    stamp = os.stat(folder / "inputs").st_mtime_ns
    again, _ = _loaded(settings, ds_id)  # a second job: the same copy, not fetched again
    assert os.stat(folder / "inputs").st_mtime_ns == stamp and again.path == inputs.path
    with open(folder / "inputs", "r+b") as f:  # a truncated copy is fetched again
        f.truncate(100)
    fixed, _ = _loaded(settings, ds_id)
    assert np.array_equal(fixed.array, x)
    assert not [p for p in settings.resolved_cache_dir.iterdir() if p.name.startswith(".")]  # no leftovers


def test_a_corrupt_shard_in_the_store_is_refused_not_cached(settings):
    from sqlalchemy import update

    x, y = _images()
    ds_id = _stored(settings, x, y)
    with session_scope(settings.resolved_database_url) as s:
        key = s.get(Dataset, ds_id).layout["arrays"]["inputs"]["key"]
        s.execute(update(BlobChunk).where(BlobChunk.blob_key == key, BlobChunk.seq == 1)
                  .values(data=b"\0" * 100))
    with pytest.raises(BlobCorrupt):
        _loaded(settings, ds_id)
    assert not (settings.resolved_cache_dir / ds_id).exists()


@pytest.mark.parametrize("workers", [0, 2])
def test_sharded_batches_equal_the_in_memory_ones_for_the_same_seed(settings, workers):
    x, y = _images()
    inputs, _ = _loaded(settings, _stored(settings, x, y))
    idx = np.random.default_rng(1).permutation(len(x))[:180]  # a train split
    for shard in (lambda order: order, lambda order: order[1::3]):  # one rank of three
        mem_sampler, mapped_sampler = EpochSampler(len(idx), 7, shard=shard), EpochSampler(len(idx), 7, shard=shard)
        for epoch, start in ((1, 0), (2, 0), (3, 32)):  # a resumed epoch starts mid-way
            mem_sampler.set_epoch(epoch, start=start)
            mapped_sampler.set_epoch(epoch, start=start)
            _assert_same(_in_memory_batches(x, y, idx, mem_sampler, 16),
                         _sharded_batches(inputs, y, idx, mapped_sampler, 16, workers))


def test_distributed_sampler_gives_each_rank_the_same_batches_over_both_sources(settings):
    x, y = _images()
    inputs, _ = _loaded(settings, _stored(settings, x, y))
    idx = np.arange(len(x))
    for rank in range(4):
        a = DistributedSampler(idx, num_replicas=4, rank=rank, shuffle=True, seed=3)
        b = DistributedSampler(idx, num_replicas=4, rank=rank, shuffle=True, seed=3)
        a.set_epoch(2)
        b.set_epoch(2)
        _assert_same(_in_memory_batches(x, y, idx, a, 10), _sharded_batches(inputs, y, idx, b, 10))


def test_mapped_inputs_pickle_by_path():
    import pickle

    arr = np.arange(24, dtype=np.uint8).reshape(6, 4)
    path = f"/tmp/mapped-{os.getpid()}"
    arr.tofile(path)
    try:
        m = data.MappedArray(path, "uint8", [6, 4])
        m.take(np.array([0]))
        blob = pickle.dumps(m)
        assert len(blob) < 500  # the path and shape, not the data
        np.testing.assert_array_equal(pickle.loads(blob).take(np.array([5, 1])), arr[[5, 1]])
    finally:
        os.unlink(path)


SPEC = {"layers": [{"type": "Flatten"}, {"type": "Linear", "in_features": 36, "out_features": 4}]}
TRAINING = {"epochs": 2, "batch_size": 16, "optimizer": {"type": "Adam", "lr": 0.01}, "seed": 5,
            "validation_split": 0.2, "checkpoint_every": 5}


def test_a_job_on_a_sharded_dataset_trains_exactly_as_on_the_same_data_inline(settings):
    x, y = _images()
    url = settings.resolved_database_url
    sharded = _stored(settings, x, y)
    with session_scope(url) as s:  # the layout rows from before the blob store have
        inline = Dataset(owner="local", name="inline", task="classification", num_samples=len(x),
                         input_shape=list(x.shape[1:]), input_dtype="float32", num_classes=4,
                         targets_info=s.get(Dataset, sharded).targets_info, size_bytes=1,
                         data=codec.encode(x.astype(np.float32), {"output": y}), layout=None)
        s.add(inline)
        s.flush()
        inline_id = inline.id
    results = []
    for ds_id in (sharded, inline_id):
        job_id = new_job(url, dataset_id=ds_id, model=SPEC, training=TRAINING)
        assert run_job(job_id, settings) == "succeeded"
        with session_scope(url) as s:
            ckpt = checkpoints.latest_with_data(s, job_id=job_id)
            from store.repositories import jobs

            results.append((load_safetensors(ckpt.data), jobs.get(s, job_id=job_id).final_metrics))
    (w_sharded, m_sharded), (w_inline, m_inline) = results
    assert w_sharded.keys() == w_inline.keys()
    for k in w_sharded:
        np.testing.assert_array_equal(w_sharded[k], w_inline[k])
    for k in ("train_loss", "val_loss", "val_accuracy"):
        assert m_sharded[k] == m_inline[k]


_RSS_CHILD = r"""
import sys, numpy as np
from engine.utils.data import SequentialSampler
from worker import data

def rss():
    with open("/proc/self/status") as f:
        return next(int(l.split()[1]) * 1024 for l in f if l.startswith("VmRSS:"))

path, n, release = sys.argv[1], int(sys.argv[2]), sys.argv[3]
inputs = data.MappedArray(path, "uint8", [n, 3072], **({} if release == "default" else {"release_bytes": int(release)}))
targets = np.zeros(n, np.int64)
order = np.random.default_rng(0).permutation(n)  # random batches, as training reads them
loader = data.sharded_loader(inputs, [targets], ["classification"], order, SequentialSampler(range(n)), 256, "cpu")
before, peak, seen = rss(), 0, 0
for xb, yb in loader:
    seen += xb.shape[0]
    peak = max(peak, rss())
print(before, peak, seen)
"""


@pytest.mark.parametrize("release", ["default", "never"])
def test_reading_a_mapped_dataset_keeps_the_rss_far_below_its_size(tmp_path, release):
    """A 192 MB uint8 dataset read whole in random batches through the maps: RSS grows by well
    under half of it (the mapped pages are handed back after each batch); without the release
    it grows by nearly all of it (a random row maps a whole large folio of the file)."""
    import subprocess
    import sys

    n = 192 * 1024**2 // 3072
    path = tmp_path / "inputs"
    np.random.default_rng(0).integers(0, 256, size=(n, 3072), dtype=np.uint8).tofile(path)
    proc = subprocess.run([sys.executable, "-c", _RSS_CHILD, str(path), str(n),
                           "default" if release == "default" else str(1 << 62)],
                          capture_output=True, text=True, timeout=300, check=True)
    before, peak, seen = map(int, proc.stdout.split())
    assert seen == n
    grown = peak - before
    if release == "default":
        assert grown < 64 * 1024**2, grown
    else:
        assert grown > 160 * 1024**2, grown  # the mapped pages stay: what the release prevents


@pytest.mark.gpu
def test_uint8_batches_cast_on_the_gpu_equal_the_in_memory_float32_ones(tmp_path):
    """On a GPU the mapped uint8 batch travels as uint8 and becomes float32 there; the values
    equal the in-memory path's float32 device tensors."""
    if not engine.cuda.is_available():
        pytest.skip("needs a CUDA GPU with cupy")
    x, y = _images()
    path = tmp_path / "inputs"
    x.tofile(path)
    inputs = data.MappedArray(path, "uint8", list(x.shape))
    idx = np.arange(len(x))
    a, b = EpochSampler(len(idx), 2), EpochSampler(len(idx), 2)
    xt = engine.tensor(x, dtype=engine.float32, device="cuda")
    yt = heads_of({"output": y}, "output", "classification", "cuda")
    memory = DataLoader(TensorDataset(xt, yt), batch_size=32, sampler=a)
    mapped = data.sharded_loader(inputs, [y], ["classification"], idx, b, 32, "cuda")
    for (xa, ya), (xb, yb) in zip(memory, mapped, strict=True):
        assert xb.device == xa.device and xb.dtype == engine.float32
        np.testing.assert_array_equal(xa.cpu().numpy(), xb.cpu().numpy())
        np.testing.assert_array_equal(ya.cpu().numpy(), yb.cpu().numpy())


def test_prefetch_fills_the_cache_so_the_load_reads_no_shard(settings):
    from sqlalchemy import update

    x, y = _images()
    ds_id = _stored(settings, x, y)
    url = settings.resolved_database_url
    job_id = new_job(url, dataset_id=ds_id, model=SPEC, training=TRAINING)
    data.prefetch(job_id, settings)
    assert (settings.resolved_cache_dir / ds_id / data.MANIFEST).exists()
    with session_scope(url) as s:  # the stored shards spoiled: a load that read them would fail
        s.execute(update(BlobChunk).values(data=b"spoiled"))
    inputs, targets = _loaded(settings, ds_id)
    assert np.array_equal(inputs.array, x) and np.array_equal(targets["output"], y)


def test_the_least_recently_used_dataset_is_evicted_past_the_cache_limit(settings):
    x, y = _images()
    size = x.nbytes + y.nbytes
    ids = [_stored(settings, x, y) for _ in range(3)]
    small = settings.model_copy(update={"dataset_cache_max_bytes": int(2.5 * size)})
    root = settings.resolved_cache_dir
    for age, ds_id in zip((3000, 2000), ids[:2]):
        _loaded(small, ds_id)
        os.utime(root / ds_id / data.MANIFEST, (time.time() - age, time.time() - age))
    _loaded(small, ids[2])  # needs room: the oldest goes
    assert sorted(p.name for p in root.iterdir()) == sorted(ids[1:])
    _loaded(small, ids[0])  # back again; ids[1] is old, ids[2] was just used and stays
    assert sorted(p.name for p in root.iterdir()) == sorted([ids[0], ids[2]])
