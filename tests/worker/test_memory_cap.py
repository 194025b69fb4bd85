"""The training child's address-space cap leaves room for a data-parallel rank 0's threads.

Rank 0 serves the rendezvous store on a thread per rank; each thread reserves a stack and a
malloc arena it hardly touches, which RLIMIT_AS counts. A 16-rank job's rank 0 once failed
with "can't start new thread" under a cap sized for the model alone.
"""
from __future__ import annotations

import multiprocessing as mp

from worker import resources


def _threads_under_cap(ranks: int, conn) -> None:
    import threading

    import numpy as np

    baseline = resources.status_bytes("VmSize") or 0
    cap = resources.cap_bytes(estimate=64 * 2**20, data_bytes=2**20, baseline=baseline, margin=1.5,
                              overhead=128 * 2**20, ceiling=0, ranks=ranks)
    resources.apply_cap(cap, 64 * 2**20)
    done, started = [], threading.Barrier(2 * ranks + 1)

    def work() -> None:
        done.append(float(np.ones(4096).sum()))  # a malloc on this thread: its arena
        started.wait(timeout=30)

    try:
        threads = [threading.Thread(target=work) for _ in range(2 * ranks)]
        for t in threads:
            t.start()
        started.wait(timeout=30)
        for t in threads:
            t.join()
        conn.send(("ok", len(done)))
    except (RuntimeError, MemoryError) as exc:
        conn.send(("failed", str(exc)))


def test_a_16_rank_jobs_threads_start_under_its_cap():
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=_threads_under_cap, args=(16, child))
    proc.start()
    result = parent.recv() if parent.poll(120) else ("no answer", None)
    proc.join(30)
    assert result == ("ok", 32)


def test_the_cap_grows_with_the_ranks_and_stays_under_the_ceiling():
    args = dict(estimate=2**30, data_bytes=2**28, baseline=2**29, margin=1.5, overhead=2**29, ceiling=0)
    one, sixteen = resources.cap_bytes(**args), resources.cap_bytes(**args, ranks=16)
    assert sixteen - one == 32 * resources.THREAD_RESERVE_BYTES
    assert resources.cap_bytes(**{**args, "ceiling": 2**31}, ranks=16) == 2**31
