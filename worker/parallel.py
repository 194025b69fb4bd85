"""Data-parallel jobs (``training.devices`` = N > 1): the task's own process is rank 0 and
starts N-1 follower ranks; every rank trains the same model on its shard of each global
batch and engine's DistributedDataParallel averages the gradients. Rank 0 alone talks to
the database (progress, metrics, checkpoints) and decides, each step, whether the ranks
stop (cancel, graceful stop, lost lease) so they all leave the loop at the same step.

On CPU the ranks use the shared-memory "gloo" backend; with GPUs each rank uses its own
GPU (the ones ``worker.fleet.hold`` took for the job) and NCCL. A rank process that dies
(killed, crashed) makes rank 0's next collective raise; rank 0 stops every follower and the
job is retried from its last checkpoint like any lost worker (``failures.RankLost``). No
rank process outlives its job.

A job with more ranks than this host runs (its GPUs, or a CPU worker's ``host_ranks``)
spans hosts: rank 0's host serves the rendezvous TCP store on its ``worker_address``, sends
one join message per further host (``worker.nodes``) and every host starts its share of the
ranks; the store hands out the node numbers. A lost host fails the attempt like a lost rank
(docs/multinode.md).
"""
from __future__ import annotations

import datetime
import logging
import math
import multiprocessing as mp
import os
import socket
from collections.abc import Callable
from contextlib import contextmanager
from typing import Any

import numpy as np

import engine
import engine.distributed as dist
from config.settings import Settings
from engine.distributed import TCPStore
from engine.distributed.run import free_port
from plan import splits
from worker import failures
from worker.fleet import job_gpus

log = logging.getLogger(__name__)

# per-step decision rank 0 broadcasts: keep going, or stop and why
GO, SHUTDOWN, CANCEL, LOST, ABORT = range(5)


class Ranks:
    """This process's place in a job: ``rank`` of ``world`` (1: not data-parallel), the
    ``local_rank``-th on its host, whose GPUs for the job are ``gpus`` (engine indices;
    default: what ``worker.fleet.hold`` took, or none held)."""

    def __init__(self, rank: int = 0, world: int = 1, local_rank: int | None = None,
                 gpus: list[int] | None = None):
        self.rank, self.world = rank, world
        self.local_rank = rank if local_rank is None else local_rank
        self.gpus = job_gpus() if gpus is None else gpus

    @property
    def main(self) -> bool:
        return self.rank == 0

    def device(self, base: str) -> str:
        if base != "cuda":
            return base
        if self.gpus:
            return f"cuda:{self.gpus[self.local_rank]}"
        return f"cuda:{self.local_rank}" if self.world > 1 else base

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


def _gpu_index(ranks: Ranks, device: str) -> int | None:
    """The GPU this rank's NCCL communicator lives on (None on CPU)."""
    if not device.startswith("cuda"):
        return None
    name = ranks.device("cuda")
    return int(name.partition(":")[2] or 0)


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
              device: str, timeout_s: float, address: str = "127.0.0.1", local_rank: int | None = None,
              gpus: list[int] | None = None) -> None:
    """A follower rank's whole life: join the group, run ``follow`` in step with rank 0, leave."""
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    settings = Settings(**settings_fields)
    ranks = Ranks(rank, world, local_rank, gpus)
    dist.init_process_group(backend_for(device), init_method=f"tcp://{address}:{port}", rank=rank,
                            world_size=world, timeout=datetime.timedelta(seconds=timeout_s),
                            device_id=_gpu_index(ranks, device))
    try:
        follow(claim, settings, ranks)
    except Exception:
        log.exception("rank %d of job %s failed", rank, claim.job_id)
    finally:
        dist.destroy_process_group()


def host_ranks(settings: Settings, device: str, world: int) -> int:
    """The ranks of a ``world``-rank job this host runs: the GPUs held for it (or, held none,
    every GPU it sees), a CPU worker's ``host_ranks``, or else all of them."""
    if device.startswith("cuda"):
        held = job_gpus()
        return min(world, len(held) if held else engine.cuda.device_count())
    return min(world, settings.host_ranks) if settings.host_ranks > 0 else world


@contextmanager
def process_group(claim, settings: Settings, device: str, world: int, follow: Follow, timeout_s: float = 300.0):
    """Start this host's follower ranks, each running ``follow`` (a module-level function: it
    is pickled into a spawned process), and join the group as rank 0; on exit, leave the
    group and make sure every follower has ended (terminated after a grace period if not).
    More ranks than this host runs: the other hosts are asked to join (``worker.nodes``)."""
    if world == 1:
        yield Ranks()
        return
    local = host_ranks(settings, device, world)
    if local < 1:
        raise ValueError(f"the job asks for {world} devices but this worker sees no GPU")
    store = None
    if local == world:
        address, port = "127.0.0.1", free_port()
    else:  # multi-node: this host serves the rendezvous; one join message per further host
        from worker.celery_app import send_join

        address = settings.worker_address or socket.gethostname()
        store = TCPStore(address, 0, is_master=True, timeout=settings.join_timeout_s)
        port = store.port
        try:
            for _ in range(math.ceil(world / local) - 1):
                send_join(claim.job_id, claim.attempt, address, port, world, local)
        except BaseException:
            store.close()
            raise
    with node_group(claim, settings, device, world, follow, first=0, count=local, address=address, port=port,
                    store=store, timeout_s=timeout_s) as ranks:
        yield ranks


@contextmanager
def node_group(claim, settings: Settings, device: str, world: int, follow: Follow, *, first: int, count: int,
               address: str, port: int, store: TCPStore | None = None, timeout_s: float = 300.0):
    """One host's ranks ``first .. first+count-1`` of a ``world``-rank group whose rendezvous
    store is at ``address:port`` (``store``: this process serves it, rank 0). This process is
    rank ``first``; the others are spawned followers. A follower that died, or (across
    hosts) a lost connection to another host's rank, is ``failures.RankLost``."""
    gpus = job_gpus() if device.startswith("cuda") else None
    if device.startswith("cuda") and count > (len(gpus) if gpus else engine.cuda.device_count()):
        raise ValueError(f"the job runs {count} ranks here but this worker has "
                         f"{len(gpus) if gpus else engine.cuda.device_count()} GPUs for it")
    ctx = mp.get_context("spawn")
    fields = settings.model_dump()
    followers = [ctx.Process(target=_follower, args=(follow, claim, fields, first + lr, world, port, device, timeout_s,
                                                     address, lr, gpus),
                             name=f"job-{claim.job_id}-rank{first + lr}", daemon=True) for lr in range(1, count)]
    for p in followers:
        p.start()
    multi = count < world
    try:
        timeout = datetime.timedelta(seconds=timeout_s)
        me = Ranks(first, world, 0, gpus)
        try:
            if store is not None:
                dist.init_process_group(backend_for(device), store=store, rank=first, world_size=world,
                                        timeout=timeout, device_id=_gpu_index(me, device))
            else:
                dist.init_process_group(backend_for(device), init_method=f"tcp://{address}:{port}", rank=first,
                                        world_size=world, timeout=timeout, device_id=_gpu_index(me, device))
        except BaseException:
            if store is not None:
                store.close()
            raise
        try:
            if multi:
                _placement(claim.job_id, settings.worker_address or socket.gethostname(), first, count, world,
                           address, port, store, timeout_s)
            yield me
        finally:
            dist.destroy_process_group()
    except Exception as exc:
        _stop(followers, grace=1.0)
        dead = [(first + r, p.exitcode) for r, p in enumerate(followers, 1) if p.exitcode not in (0, None)]
        if dead and not isinstance(exc, failures.RankLost):
            rank, code = dead[0]
            raise failures.RankLost(f"rank {rank} of {world} died (exit code {code}): {exc}") from exc
        if multi and isinstance(exc, RuntimeError) and _communication_failed(exc):
            raise failures.RankLost(f"a host of this {world}-rank job was lost: {exc}") from exc
        raise
    finally:
        _stop(followers)


def _communication_failed(exc: BaseException) -> bool:
    """engine.distributed's errors for a peer that went away or went silent (the collective's
    timeout), and a rendezvous that timed out: the attempt failed, not the job."""
    text = str(exc)
    return any(s in text for s in ("lost its connection", "timed out", "TCPStore", "store connection"))


def _placement(job_id: str, me: str, first: int, count: int, world: int, address: str, port: int,
               store: TCPStore | None, timeout_s: float) -> None:
    """Every host writes where its ranks run into the rendezvous store; rank 0 logs the whole
    placement (the job's log shows which host runs which ranks)."""
    client = store or TCPStore(address, port, is_master=False, timeout=timeout_s)
    try:
        client.set(f"trainyard/ranks/{first}", f"{me}:{first}-{first + count - 1}")
        if first == 0:  # (the store's get waits for each key: no collective, which every rank would need)
            hosts = [client.get(f"trainyard/ranks/{r}").decode() for r in range(0, world, count)]
            log.info("job %s: %d ranks over %d hosts: %s", job_id, world, len(hosts), ", ".join(hosts))
    finally:
        if store is None:
            client.close()


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
