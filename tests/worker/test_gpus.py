"""GPU allocation on a host with an injected device list: distinct GPUs per job, never one GPU
to two jobs under concurrent claims (threads and processes), freed when the holder dies."""
from __future__ import annotations

import multiprocessing as mp
import os
import random
import signal
import threading
import time

import pytest

from worker.gpus import Allocator, Gpu, parse, select, visible, visible_devices

EIGHT = [Gpu(i, str(i)) for i in range(8)]


def test_a_four_device_job_gets_four_distinct_gpus_and_a_second_the_other_four(tmp_path):
    alloc = Allocator(EIGHT, tmp_path)
    a = alloc.acquire(4, "job-a")
    b = alloc.acquire(4, "job-b")
    assert a is not None and b is not None
    assert len(set(a.labels)) == 4 and not set(a.labels) & set(b.labels)
    assert alloc.acquire(1, "job-c") is None  # all eight are held
    assert alloc.busy() == {**{g: "job-a" for g in a.labels}, **{g: "job-b" for g in b.labels}}
    a.release()
    c = alloc.acquire(2, "job-c")
    assert c is not None and set(c.labels) <= set(a.labels)
    with pytest.raises(ValueError, match="this host has 8"):
        alloc.acquire(9)


def test_two_allocators_of_one_host_see_each_others_holds(tmp_path):
    first, second = Allocator(EIGHT, tmp_path), Allocator(EIGHT[2:5], tmp_path)  # overlapping sets
    held = first.acquire(3, "x")  # GPUs 0, 1, 2
    got = second.acquire(2, "y")
    assert got is not None and got.labels == ["3", "4"]
    assert second.acquire(1, "z") is None
    held.release()


def _hammer(alloc: Allocator, holders: dict, guard: threading.Lock, errors: list, seed: int) -> None:
    rng = random.Random(seed)
    for _ in range(60):
        n = rng.choice([1, 2, 4])
        got = alloc.acquire(n, f"t{seed}")
        if got is None:
            continue
        with guard:
            clash = [g for g in got.labels if g in holders]
            holders.update({g: seed for g in got.labels})
        if clash:
            errors.append((seed, clash))
        time.sleep(rng.random() / 500)
        with guard:
            for g in got.labels:
                del holders[g]
        got.release()


def test_concurrent_threads_never_share_a_gpu(tmp_path):
    holders: dict[str, int] = {}
    guard, errors = threading.Lock(), []
    allocators = [Allocator(EIGHT, tmp_path) for _ in range(3)]  # several "worker processes"' views
    threads = [threading.Thread(target=_hammer, args=(allocators[i % 3], holders, guard, errors, i))
               for i in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


def _process_hammer(lock_dir: str, counts, seed: int, rounds: int) -> None:
    alloc = Allocator(EIGHT, lock_dir)
    rng = random.Random(seed)
    for _ in range(rounds):
        got = alloc.acquire(rng.choice([1, 2, 3]), f"p{seed}")
        if got is None:
            continue
        with counts.get_lock():
            for g in got.indices:
                counts[g] += 1
                counts[8] = max(counts[8], counts[g])  # the most holders any GPU ever had at once
        time.sleep(rng.random() / 300)
        with counts.get_lock():
            for g in got.indices:
                counts[g] -= 1
        got.release()


def test_concurrent_processes_never_share_a_gpu(tmp_path):
    ctx = mp.get_context("spawn")
    counts = ctx.Array("i", 9)
    procs = [ctx.Process(target=_process_hammer, args=(str(tmp_path), counts, s, 80)) for s in range(6)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert [p.exitcode for p in procs] == [0] * 6
    assert counts[8] == 1 and list(counts[:8]) == [0] * 8


def _hold_forever(lock_dir: str, ready) -> None:
    Allocator(EIGHT, lock_dir).acquire(8, "doomed")
    ready.set()
    time.sleep(600)


def test_a_killed_holder_gives_its_gpus_back(tmp_path):
    ctx = mp.get_context("spawn")
    ready = ctx.Event()
    p = ctx.Process(target=_hold_forever, args=(str(tmp_path), ready))
    p.start()
    assert ready.wait(60)
    alloc = Allocator(EIGHT, tmp_path)
    assert alloc.acquire(1) is None
    os.kill(p.pid, signal.SIGKILL)
    p.join()
    got = alloc.acquire(8)
    assert got is not None and got.indices == list(range(8))


def test_parse_select_and_visible_devices():
    assert parse("all") is None and parse("none") == [] and parse("0, 1,3") == [0, 1, 3]
    with pytest.raises(ValueError, match="'x'"):
        parse("0,x")
    with pytest.raises(ValueError, match="twice"):
        parse("1,1")
    four = visible(lambda: 4, {"CUDA_VISIBLE_DEVICES": "4,5,6,7"})
    assert [(g.index, g.label) for g in four] == [(0, "4"), (1, "5"), (2, "6"), (3, "7")]
    assert [g.label for g in select("1,3", four)] == ["5", "7"]
    with pytest.raises(ValueError, match="no GPU 4"):
        select("4", four)
    assert visible(lambda: 0, {}) == []
    assert visible_devices("0,2", {"CUDA_VISIBLE_DEVICES": "3,5,7"}) == "3,7"
    assert visible_devices("0,2", {}) == "0,2" and visible_devices("all", {}) is None
