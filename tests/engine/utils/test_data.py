"""Datasets, samplers, collate and DataLoader against torch.utils.data."""
from collections import namedtuple

import numpy as np
import pytest

import engine
from engine.utils.data import (
    BatchSampler,
    DataLoader,
    Dataset,
    IterableDataset,
    RandomSampler,
    SequentialSampler,
    Subset,
    TensorDataset,
    default_collate,
    random_split,
)


def _np(x):
    return np.asarray(x._data) if hasattr(x, "_data") else x.numpy()


def _same(a, b):
    """Structural equality of an engine batch and a torch batch."""
    if hasattr(b, "numpy") and not isinstance(b, np.ndarray):
        assert isinstance(a, engine.Tensor)
        assert str(a.dtype).split(".")[-1] == str(b.dtype).split(".")[-1], (a.dtype, b.dtype)
        np.testing.assert_array_equal(_np(a), b.numpy())
    elif isinstance(b, dict):
        assert type(a) is type(b) and a.keys() == b.keys()
        for k in b:
            _same(a[k], b[k])
    elif isinstance(b, (list, tuple)):
        assert type(a) is type(b) and len(a) == len(b)
        for x, y in zip(a, b):
            _same(x, y)
    else:
        assert a == b


class Samples(Dataset):
    def __init__(self, n=7):
        self.n = n

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        Point = namedtuple("Point", "x y")
        return {"img": np.full((2, 2), i, dtype=np.float32), "label": i, "w": float(i) / 2, "name": f"s{i}",
                "pair": (i, np.int64(i)), "pt": Point(i, 1.5)}


def test_default_collate_matches_torch(torch):
    from torch.utils.data import default_collate as t_collate

    batch = [Samples()[i] for i in range(3)]
    e, t = default_collate(batch), t_collate(batch)
    assert type(e["pt"]).__name__ == "Point"
    e["pt"], t["pt"] = tuple(e["pt"]), tuple(t["pt"])
    _same(e, t)
    _same(default_collate([engine.ones(2), engine.zeros(2)]), t_collate([torch.ones(2), torch.zeros(2)]))
    _same(default_collate([[1, 2], [3, 4]]), t_collate([[1, 2], [3, 4]]))
    _same(default_collate([True, False]), t_collate([True, False]))
    with pytest.raises(RuntimeError):
        default_collate([[1, 2], [3]])
    with pytest.raises(TypeError):
        default_collate([object(), object()])


@pytest.mark.parametrize("batch_size,drop_last", [(1, False), (3, False), (3, True), (10, False)])
def test_sequential_loader_matches_torch(torch, batch_size, drop_last):
    from torch.utils.data import DataLoader as TLoader

    ds = Samples()
    eb = list(DataLoader(ds, batch_size=batch_size, drop_last=drop_last))
    tb = list(TLoader(ds, batch_size=batch_size, drop_last=drop_last))
    assert len(eb) == len(tb) == len(DataLoader(ds, batch_size=batch_size, drop_last=drop_last))
    for a, b in zip(eb, tb):
        a.pop("pt"), b.pop("pt")
        _same(a, b)


def test_tensor_dataset_fast_path_matches_slow_path(torch):
    x = engine.tensor(np.arange(40, dtype=np.float32).reshape(10, 4))
    y = engine.tensor(np.arange(10))
    ds = TensorDataset(x, y)
    assert len(ds) == 10 and _np(ds[3][1]) == 3
    fast = list(DataLoader(ds, batch_size=4))
    slow = list(DataLoader(ds, batch_size=4, collate_fn=lambda b: default_collate(b)))
    tx = torch.utils.data.TensorDataset(torch.arange(40.0).reshape(10, 4), torch.arange(10))
    ref = list(torch.utils.data.DataLoader(tx, batch_size=4))
    assert len(fast) == len(slow) == len(ref) == 3
    for f, s, r in zip(fast, slow, ref):
        assert isinstance(f, list)
        _same(f, r)
        _same(s, r)
        assert not f[0].requires_grad


def test_shuffle_reproducible_and_a_permutation():
    ds = TensorDataset(engine.tensor(np.arange(50)))

    def epoch(loader):
        return np.concatenate([_np(b[0]) for b in loader])

    engine.manual_seed(1)
    loader = DataLoader(ds, batch_size=8, shuffle=True)
    a, b = epoch(loader), epoch(loader)
    assert sorted(a) == list(range(50)) and not (a == b).all()  # a new order each epoch
    engine.manual_seed(1)
    np.testing.assert_array_equal(epoch(loader), a)
    g = engine.Generator().manual_seed(5)
    c = epoch(DataLoader(ds, batch_size=8, shuffle=True, generator=g))
    g.manual_seed(5)
    np.testing.assert_array_equal(epoch(DataLoader(ds, batch_size=8, shuffle=True, generator=g)), c)
    slow = epoch(DataLoader(Subset(ds, list(range(50))), batch_size=8, shuffle=True,
                            generator=engine.Generator().manual_seed(5)))
    np.testing.assert_array_equal(slow, c)  # same order through the per-sample path


def test_samplers_match_torch(torch):
    assert list(SequentialSampler(range(5))) == list(torch.utils.data.SequentialSampler(range(5)))
    for bs, dl in [(2, False), (2, True), (5, False)]:
        e = list(BatchSampler(SequentialSampler(range(7)), bs, dl))
        t = list(torch.utils.data.BatchSampler(torch.utils.data.SequentialSampler(range(7)), bs, dl))
        assert e == t and len(BatchSampler(range(7), bs, dl)) == len(t)
    r = list(RandomSampler(range(10), replacement=True, num_samples=30))
    assert len(r) == 30 and all(0 <= i < 10 for i in r)
    r = list(RandomSampler(range(4), num_samples=10))
    assert sorted(r[:4]) == [0, 1, 2, 3] and len(r) == 10


def test_custom_sampler_batch_sampler_and_no_batching():
    ds = TensorDataset(engine.tensor(np.arange(6)))
    out = [_np(b[0]).tolist() for b in DataLoader(ds, sampler=[5, 4, 3, 2, 1, 0], batch_size=4)]
    assert out == [[5, 4, 3, 2], [1, 0]]
    out = [_np(b[0]).tolist() for b in DataLoader(ds, batch_sampler=[[0, 2], [1]])]
    assert out == [[0, 2], [1]]
    out = list(DataLoader(ds, batch_size=None))
    assert len(out) == 6 and isinstance(out[0], list) and out[0][0].shape == ()
    with pytest.raises(ValueError):
        DataLoader(ds, sampler=[0], shuffle=True)
    with pytest.raises(ValueError):
        DataLoader(ds, batch_sampler=[[0]], batch_size=2)


def test_iterable_dataset(torch):
    class Stream(IterableDataset):
        def __iter__(self):
            return iter(range(7))

    e = [_np(b).tolist() for b in DataLoader(Stream(), batch_size=3)]
    t = [b.tolist() for b in torch.utils.data.DataLoader(list(range(7)), batch_size=3)]
    assert e == t
    assert [_np(b).tolist() for b in DataLoader(Stream(), batch_size=3, drop_last=True)] == t[:2]


def test_random_split():
    engine.manual_seed(0)
    a, b = random_split(range(10), [0.7, 0.3])
    assert len(a) == 7 and len(b) == 3 and sorted(list(a) + list(b)) == list(range(10))
    with pytest.raises(ValueError):
        random_split(range(10), [3, 3])


def test_manual_seed_repeats_init_dropout_shuffling_and_sampling():
    from engine import nn
    from engine.utils.data import SubsetRandomSampler, WeightedRandomSampler

    def draw():
        lin = nn.Linear(4, 3)
        mask = nn.functional.dropout(engine.ones(20), p=0.5, training=True)
        order = [_np(b[0]).tolist() for b in DataLoader(TensorDataset(engine.tensor(np.arange(12))), batch_size=5,
                                                           shuffle=True)]
        return (_np(lin.weight).tolist(), _np(mask).tolist(), order,
                list(RandomSampler(range(9), replacement=True, num_samples=15)),
                list(WeightedRandomSampler([0.1, 0.5, 2.0, 1.0], 12)), list(SubsetRandomSampler([3, 5, 7, 9])),
                [list(s) for s in random_split(range(10), [4, 6])])

    engine.manual_seed(42)
    a = draw()
    engine.manual_seed(42)
    assert draw() == a
    engine.manual_seed(43)
    b = draw()
    assert all(x != y for x, y in zip(a[:5], b[:5]))
