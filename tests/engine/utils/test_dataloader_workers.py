"""DataLoader with worker processes: same batches as in-process loading and as torch,
worker seeding and info, worker_init_fn, persistent workers, errors and timeouts."""
import os
import time

import numpy as np
import pytest

import engine
from engine.utils.data import DataLoader, Dataset, IterableDataset, TensorDataset, get_worker_info


def _np(x):
    return np.asarray(x._data) if hasattr(x, "_data") else x.numpy()


class Samples(Dataset):
    """Dict samples with arrays, numbers and strings; also reports the worker."""

    def __len__(self):
        return 23

    def __getitem__(self, i):
        info = get_worker_info()
        return {"x": np.full((2, 3), i, dtype=np.float32), "y": i, "name": f"s{i}",
                "worker": -1 if info is None else info.id}


class Shards(IterableDataset):
    """Each worker streams its own shard (torch's documented pattern)."""

    def __iter__(self):
        info = get_worker_info()
        wid, n = (0, 1) if info is None else (info.id, info.num_workers)
        return iter(range(wid, 17, n))


class Pids(Dataset):
    def __len__(self):
        return 8

    def __getitem__(self, i):
        return os.getpid()


class Seeds(Dataset):
    def __len__(self):
        return 4

    def __getitem__(self, i):
        info = get_worker_info()
        return {"seed": info.seed, "r": np.array([float(engine.rand(1)._data[0]), np.random.rand()])}


@pytest.mark.parametrize("workers,prefetch", [(1, 1), (2, 2), (3, 4)])
def test_map_style_batches_equal_in_process(workers, prefetch):
    ds = Samples()
    ref = list(DataLoader(ds, batch_size=5))
    got = list(DataLoader(ds, batch_size=5, num_workers=workers, prefetch_factor=prefetch))
    assert len(got) == len(ref) == 5
    for a, b in zip(got, ref):
        np.testing.assert_array_equal(_np(a["x"]), _np(b["x"]))
        assert a["x"].dtype == b["x"].dtype and a["y"].dtype == engine.int64
        np.testing.assert_array_equal(_np(a["y"]), _np(b["y"]))
        assert a["name"] == b["name"]
        assert set(_np(a["worker"]).tolist()) <= set(range(workers))
    assert {int(_np(b["worker"])[0]) for b in got} == set(range(workers))


def test_shuffled_tensor_dataset_same_order_with_workers():
    ds = TensorDataset(engine.tensor(np.arange(60, dtype=np.float32).reshape(30, 2)), engine.tensor(np.arange(30)))
    g = engine.Generator().manual_seed(7)
    ref = [_np(b[1]) for b in DataLoader(ds, batch_size=4, shuffle=True, generator=g, drop_last=True)]
    g = engine.Generator().manual_seed(7)
    got = list(DataLoader(ds, batch_size=4, shuffle=True, generator=g, drop_last=True, num_workers=2))
    assert len(got) == len(ref) == 7
    for a, b in zip(got, ref):  # the sampler draws before the workers' base seed: same order
        np.testing.assert_array_equal(_np(a[1]), b)
        np.testing.assert_array_equal(_np(a[0])[:, 0], 2 * b)


def test_iterable_shards_match_torch(torch):
    e = [_np(b).tolist() for b in DataLoader(Shards(), batch_size=3, num_workers=2)]

    class TShards(torch.utils.data.IterableDataset):
        def __iter__(self):
            info = torch.utils.data.get_worker_info()
            return iter(range(info.id, 17, info.num_workers))

    t = [b.tolist() for b in torch.utils.data.DataLoader(TShards(), batch_size=3, num_workers=2)]
    assert e == t
    e = [_np(b).tolist() for b in DataLoader(Shards(), batch_size=3, num_workers=2, drop_last=True)]
    t = [b.tolist() for b in torch.utils.data.DataLoader(TShards(), batch_size=3, num_workers=2, drop_last=True)]
    assert e == t


def test_worker_seeds_are_base_plus_id_and_reproducible():
    def run():
        engine.manual_seed(11)
        return list(DataLoader(Seeds(), batch_size=2, num_workers=2))

    a, b = run(), run()
    for x, y in zip(a, b):  # engine and numpy streams repeat under manual_seed
        np.testing.assert_array_equal(_np(x["r"]), _np(y["r"]))
        np.testing.assert_array_equal(_np(x["seed"]), _np(y["seed"]))
    seeds = [_np(a[0]["seed"]).tolist(), _np(a[1]["seed"]).tolist()]
    assert seeds[0][0] == seeds[0][1] and seeds[1] == [seeds[0][0] + 1] * 2
    assert not np.array_equal(_np(a[0]["r"]), _np(a[1]["r"]))
    engine.manual_seed(12)
    c = list(DataLoader(Seeds(), batch_size=2, num_workers=2))
    assert _np(c[0]["seed"])[0] != seeds[0][0]


def test_worker_init_fn_and_persistent_workers():
    def init(worker_id):
        np.random.seed(1000 + worker_id)

    dl = DataLoader(Pids(), batch_size=2, num_workers=2, persistent_workers=True, worker_init_fn=init)
    first = {int(p) for b in dl for p in _np(b)}
    second = {int(p) for b in dl for p in _np(b)}
    assert len(first) == 2 and first == second and os.getpid() not in first
    half = iter(dl)
    next(half)  # abandon an epoch midway: the next one still starts from the beginning
    assert len(list(dl)) == 4
    fresh = DataLoader(Pids(), batch_size=2, num_workers=2)
    assert {int(p) for b in fresh for p in _np(b)}.isdisjoint(first)

    class InitSeen(Dataset):
        def __len__(self):
            return 2

        def __getitem__(self, i):
            return np.random.randint(1 << 30)

    seen = [_np(b).tolist() for b in DataLoader(InitSeen(), batch_size=1, num_workers=2, worker_init_fn=init)]
    assert seen == [[np.random.RandomState(1000).randint(1 << 30)], [np.random.RandomState(1001).randint(1 << 30)]]


class Failing(Dataset):
    def __len__(self):
        return 6

    def __getitem__(self, i):
        if i == 3:
            raise KeyError("no sample 3")
        return i


class Slow(Dataset):
    def __len__(self):
        return 2

    def __getitem__(self, i):
        time.sleep(1)
        return i


def test_errors_and_timeout():
    with pytest.raises(KeyError, match="DataLoader worker process"):
        list(DataLoader(Failing(), batch_size=2, num_workers=2))
    with pytest.raises(RuntimeError, match="timed out"):
        list(DataLoader(Slow(), num_workers=1, timeout=0.2))
    with pytest.raises(ValueError):
        DataLoader(Samples(), prefetch_factor=2)
    with pytest.raises(ValueError):
        DataLoader(Samples(), persistent_workers=True)
    with pytest.warns(UserWarning, match="pin"):
        dl = DataLoader(Samples(), batch_size=4, pin_memory=True)
    assert len(list(dl)) == 6


def test_pin_memory_on_gpu(device):
    if device == "cpu":
        pytest.skip("pinning is meaningful only with a GPU")
    import cupy

    ds = TensorDataset(engine.tensor(np.arange(12, dtype=np.float32).reshape(6, 2)))
    for workers in (0, 2):
        for (x,) in DataLoader(ds, batch_size=3, pin_memory=True, num_workers=workers):
            ptr = x._data.ctypes.data
            assert cupy.cuda.runtime.pointerGetAttributes(ptr).type == cupy.cuda.runtime.memoryTypeHost


class Dies(Dataset):
    def __len__(self):
        return 4

    def __getitem__(self, i):
        if i == 2:
            os._exit(3)
        return i


def test_out_of_order_delivery_and_a_dead_worker():
    ds = TensorDataset(engine.tensor(np.arange(40)))
    got = [_np(b[0]).tolist() for b in DataLoader(ds, batch_size=4, num_workers=2, in_order=False)]
    assert sorted(x for b in got for x in b) == list(range(40)) and all(len(b) == 4 for b in got)
    with pytest.raises(RuntimeError, match="exited unexpectedly"):
        list(DataLoader(Dies(), batch_size=1, num_workers=1))
