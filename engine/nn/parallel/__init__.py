"""engine.nn.parallel: DistributedDataParallel and SyncBatchNorm (torch.nn.parallel)."""
from engine.nn.parallel.distributed import DistributedDataParallel
from engine.nn.parallel.sync_batchnorm import SyncBatchNorm

__all__ = ["DistributedDataParallel", "SyncBatchNorm"]
