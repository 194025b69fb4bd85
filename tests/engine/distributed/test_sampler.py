"""DistributedSampler gives each rank exactly torch's indices."""
import pytest

from engine.utils.data.distributed import DistributedSampler, torch_randperm


@pytest.mark.parametrize("n", [0, 1, 10, 11, 37])
@pytest.mark.parametrize("replicas", [1, 2, 3, 4])
@pytest.mark.parametrize("shuffle,drop_last", [(False, False), (True, False), (True, True), (False, True)])
def test_indices_equal_torch(torch, n, replicas, shuffle, drop_last):
    from torch.utils.data.distributed import DistributedSampler as TorchSampler

    data = list(range(n))
    for rank in range(replicas):
        ours = DistributedSampler(data, replicas, rank, shuffle=shuffle, seed=5, drop_last=drop_last)
        theirs = TorchSampler(data, replicas, rank, shuffle=shuffle, seed=5, drop_last=drop_last)
        for epoch in (0, 3):
            ours.set_epoch(epoch)
            theirs.set_epoch(epoch)
            if n == 0 and not drop_last:
                continue  # torch divides by zero padding an empty dataset
            assert list(ours) == list(theirs)
            assert len(ours) == len(theirs)


def test_epochs_differ_and_ranks_partition():
    data = list(range(12))
    shards = [DistributedSampler(data, 3, r, seed=1) for r in range(3)]
    assert sorted(i for s in shards for i in s) == data
    a = list(shards[0])
    shards[0].set_epoch(1)
    assert list(shards[0]) != a


def test_randperm_equals_torch(torch):
    for n, seed in [(1, 0), (2, 1), (1000, 42), (5000, 2**33 + 7)]:
        g = torch.Generator()
        g.manual_seed(seed)
        assert torch.randperm(n, generator=g).tolist() == torch_randperm(n, seed).tolist()


def test_bad_rank():
    with pytest.raises(ValueError):
        DistributedSampler(list(range(4)), 2, 2)
