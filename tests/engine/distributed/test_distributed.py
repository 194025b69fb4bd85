"""engine.distributed on the CPU backend: collectives vs numpy, DDP vs one process on the union
batch, no_sync accumulation, timeouts, and the launcher's failure handling.

Ranks are real processes started by ``python -m engine.distributed.run``, each run under a
hard timeout so nothing can hang CI.
"""
import os
import subprocess
import sys
import time

import numpy as np
import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(HERE)))
sys.path.insert(0, HERE)

import _models  # noqa: E402 - found through the sys.path entry above


def launch(nproc: int, *args: str, timeout: float = 90, buffer_mb: str = "0.015625") -> tuple[int, str, float]:
    env = dict(os.environ, ENGINE_DIST_CPU_BUFFER_MB=buffer_mb, PYTHONPATH=ROOT, OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "engine.distributed.run", "--nproc-per-node", str(nproc),
           os.path.join(HERE, "_ranks.py"), *args]
    t0 = time.monotonic()
    p = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout, check=False)
    return p.returncode, p.stdout + p.stderr, time.monotonic() - t0


@pytest.mark.parametrize("world", [2, 3])
def test_collectives_match_numpy(world, tmp_path):
    code, out, _ = launch(world, "collectives", str(tmp_path))
    assert code == 0, out
    assert out.count("size/dtype cases ok") == world, out


def _check_ddp(tmp_path, world, name, dtype, accum=1):
    code, out, _ = launch(world, "ddp", str(tmp_path), name, dtype, str(accum))
    assert code == 0, out
    ref = _models.reference(name, dtype, world, accum)
    tol = 1e-12 if dtype == "float64" else 1e-6
    for r in range(world):
        got = np.load(tmp_path / f"rank{r}.npz")
        assert sorted(got.files) == sorted(ref), (got.files, list(ref))
        for k, v in ref.items():
            np.testing.assert_allclose(got[k], v, rtol=tol, atol=tol, err_msg=f"rank {r} {k}")


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_ddp_mlp_equals_union_batch(tmp_path, dtype):
    _check_ddp(tmp_path, 2, "mlp", dtype)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_ddp_cnn_syncbn_equals_union_batch(tmp_path, dtype):
    _check_ddp(tmp_path, 2, "cnn_bn", dtype)


def test_ddp_world3_find_unused(tmp_path):
    _check_ddp(tmp_path, 3, "unused", "float64")


def test_no_sync_accumulation_equals_large_batch(tmp_path):
    _check_ddp(tmp_path, 2, "mlp", "float64", accum=3)


def test_timeout_raises_naming_op_and_rank(tmp_path):
    code, out, _ = launch(2, "timeout", str(tmp_path))
    assert code == 0, out
    assert "rank 0 raised after" in out, out


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as f:  # a zombie is not alive
        return f.read().split(")")[-1].split()[0] != "Z"


def test_killed_rank_stops_the_launcher(tmp_path):
    code, out, took = launch(3, "killed", str(tmp_path), timeout=30)
    assert code != 0, out
    assert took < 10, took
    assert "failed" in out, out
    pids = [int(p) for r in range(3) for p in (tmp_path / f"pids{r}").read_text().split()]
    deadline = time.monotonic() + 2
    while any(_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not [p for p in pids if _alive(p)], out


def test_sigterm_to_launcher_stops_every_rank(tmp_path):
    env = dict(os.environ, PYTHONPATH=ROOT)
    cmd = [sys.executable, "-m", "engine.distributed.run", "--nproc-per-node", "2",
           os.path.join(HERE, "_ranks.py"), "killed", str(tmp_path), "--no-kill"]
    p = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while not all((tmp_path / f"pids{r}").exists() for r in range(2)) and time.monotonic() < deadline:
            assert p.poll() is None, p.stderr.read()
            time.sleep(0.05)
        pids = [int(x) for r in range(2) for x in (tmp_path / f"pids{r}").read_text().split()]
        p.terminate()
        assert p.wait(timeout=10) != 0
    finally:
        if p.poll() is None:
            p.kill()
    deadline = time.monotonic() + 2
    while any(_alive(x) for x in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not [x for x in pids if _alive(x)]
