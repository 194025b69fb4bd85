"""Data-parallel jobs (``training.devices`` = N > 1): the task's own process is rank 0 and
starts N-1 follower ranks; every rank trains the same model on its shard of each global
batch and engine's DistributedDataParallel averages the gradients. Rank 0 alone talks to
the database (progress, metrics, checkpoints) and decides, each step, whether the ranks
stop (cancel, graceful stop, lost lease) so they all leave the loop at the same step.

On CPU the ranks use the shared-memory "gloo" backend; with GPUs each rank uses its own
GPU and NCCL. A rank process that dies (killed, crashed) makes rank 0's next collective
raise; rank 0 stops every follower and the job is retried from its last checkpoint like any
lost worker (``failures.RankLost``). No rank process outlives its job.
"""
from __future__ import annotations

import datetime
import logging
import multiprocessing as mp
import os
from collections.abc import Callable
from contextlib import contextmanager
from typing import Any

import numpy as np

import engine
import engine.distributed as dist
from config.settings import Settings
from engine.distributed.run import free_port
from plan import splits
from worker import failures

log = logging.getLogger(__name__)

# per-step decision rank 0 broadcasts: keep going, or stop and why
GO, SHUTDOWN, CANCEL, LOST, ABORT = range(5)


class Ranks:
    """This process's place in a job: ``rank`` of ``world`` (1: not data-parallel)."""

    def __init__(self, rank: int = 0, world: int = 1):
        self.rank, self.world = rank, world

    @property
    def main(self) -> bool:
        return self.rank == 0

    def device(self, base: str) -> str:
        return f"cuda:{self.rank}" if base == "cuda" and self.world > 1 else base

    def shard(self, indices: np.ndarray) -> np.ndarray:
        """This rank's share of an epoch's order (``plan.splits.shard``)."""
        return splits.shard(indices, self.rank, self.world)

    def decide(self, code: int) -> int:
        """Rank 0's ``code`` on every rank."""
        return int(self.from_main(code))

    def from_main(self, value: float) -> float:
        """Rank 0's ``value`` on every rank (rank 0 alone evaluates and decides)."""
        if self.world == 1:
            return value
        t = engine.tensor([value if self.main else 0], dtype=engine.float64)
        dist.broadcast(t, src=0)
        return t.item()

    def mean(self, value: float) -> float:
        """The mean of a per-rank scalar (the global batch's loss from each shard's)."""
        if self.world == 1:
            return value
        t = engine.tensor([value], dtype=engine.float64)
        dist.all_reduce(t, op=dist.ReduceOp.AVG)
        return float(t.item())


def backend_for(device: str) -> str:
    return "nccl" if device.startswith("cuda") else "gloo"


def pick_device(setting: str) -> str:
    """'cuda' when asked for, or on 'auto' when cupy sees a GPU; else 'cpu'. A worker process
    uses one GPU (pin it with CUDA_VISIBLE_DEVICES), so two jobs never share one."""
    if setting == "cuda" or (setting == "auto" and engine.cuda.is_available()):
        return "cuda"
    return "cpu"


# What a follower rank runs once it has joined the group: body(claim, settings, ranks).
Follow = Callable[[Any, Settings, Ranks], None]


def _follower(follow: Follow, claim, settings_fields: dict[str, Any], rank: int, world: int, port: int,
              device: str, timeout_s: float) -> None:
    """A follower rank's whole life: join the group, run ``follow`` in step with rank 0, leave."""
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    settings = Settings(**settings_fields)
    dist.init_process_group(backend_for(device), init_method=f"tcp://127.0.0.1:{port}", rank=rank,
                            world_size=world, timeout=datetime.timedelta(seconds=timeout_s))
    try:
        follow(claim, settings, Ranks(rank, world))
    except Exception:
        log.exception("rank %d of job %s failed", rank, claim.job_id)
    finally:
        dist.destroy_process_group()


@contextmanager
def process_group(claim, settings: Settings, device: str, world: int, follow: Follow, timeout_s: float = 300.0):
    """Start ``world - 1`` follower ranks, each running ``follow`` (a module-level function:
    it is pickled into a spawned process), and join the group as rank 0; on exit, leave the
    group and make sure every follower has ended (terminated after a grace period if not)."""
    if world == 1:
        yield Ranks()
        return
    if device == "cuda" and world > engine.cuda.device_count():
        raise ValueError(f"the job asks for {world} devices but this worker sees {engine.cuda.device_count()} GPUs")
    port = free_port()
    ctx = mp.get_context("spawn")
    fields = settings.model_dump()
    followers = [ctx.Process(target=_follower, args=(follow, claim, fields, r, world, port, device, timeout_s),
                             name=f"job-{claim.job_id}-rank{r}", daemon=True) for r in range(1, world)]
    for p in followers:
        p.start()
    try:
        dist.init_process_group(backend_for(device), init_method=f"tcp://127.0.0.1:{port}", rank=0,
                                world_size=world, timeout=datetime.timedelta(seconds=timeout_s))
        try:
            yield Ranks(0, world)
        finally:
            dist.destroy_process_group()
    except Exception as exc:
        _stop(followers, grace=1.0)
        dead = [(r, p.exitcode) for r, p in enumerate(followers, 1) if p.exitcode not in (0, None)]
        if dead and not isinstance(exc, failures.RankLost):
            rank, code = dead[0]
            raise failures.RankLost(f"rank {rank} of {world} died (exit code {code}): {exc}") from exc
        raise
    finally:
        _stop(followers)


def _stop(followers: list, grace: float = 10.0) -> None:
    for p in followers:
        p.join(grace)
        if p.is_alive():
            log.warning("rank process %s did not finish; terminating it", p.name)
            p.terminate()
            p.join(5)
        if p.is_alive():
            p.kill()
            p.join()


def wrap(model, ranks: Ranks) -> Callable:
    """The module forward goes through: DDP when data-parallel, the model itself otherwise."""
    if ranks.world == 1:
        return model
    from engine.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(model)
