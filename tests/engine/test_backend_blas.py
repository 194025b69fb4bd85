"""engine.backend.quiet_blas_threads: OpenBLAS's idle-thread timeout set at import, in a fresh
process each (the setting is process-wide), with BLAS results and thread counts unchanged."""
import json
import os
import subprocess
import sys

import pytest

_PROBE = """
import json, os
import numpy as np
from threadpoolctl import threadpool_info
before = [p["num_threads"] for p in threadpool_info() if p["internal_api"] == "openblas"]
import engine
a = np.random.default_rng(0).standard_normal((300, 200)).astype(np.float32)
ref = a.astype(np.float64) @ a.T.astype(np.float64)
err = float(np.abs(a @ a.T - ref).max() / np.abs(ref).max())
after = [p["num_threads"] for p in threadpool_info() if p["internal_api"] == "openblas"]
print(json.dumps({"quieted": engine.backend.BLAS_QUIETED, "timeout": os.environ.get("OPENBLAS_THREAD_TIMEOUT"),
                  "err": err, "before": before, "after": after}))
"""


def _probe(**env):
    e = {k: v for k, v in os.environ.items() if k not in ("OPENBLAS_THREAD_TIMEOUT", "ENGINE_TUNE_BLAS")}
    e.update(env)
    out = subprocess.run([sys.executable, "-c", _PROBE], env=e, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the OpenBLAS tuning is Linux-only")
def test_import_sets_the_timeout_and_keeps_blas_working():
    r = _probe(OPENBLAS_NUM_THREADS="2")
    assert r["timeout"] == "20"
    assert r["quieted"] is True  # numpy's OpenBLAS was loaded before engine: restarted with it
    assert r["before"] == r["after"] == [2]
    assert r["err"] < 1e-5


def test_a_timeout_the_user_set_wins():
    r = _probe(OPENBLAS_THREAD_TIMEOUT="7")
    assert r["timeout"] == "7" and r["quieted"] is False
    assert r["err"] < 1e-5


def test_engine_tune_blas_0_leaves_openblas_alone():
    r = _probe(ENGINE_TUNE_BLAS="0")
    assert r["timeout"] is None and r["quieted"] is False


_HOLD = """
import json, threading
from threadpoolctl import threadpool_info
import engine
from engine.backend import blas_threads

def counts():
    return [p["num_threads"] for p in threadpool_info() if p["internal_api"] == "openblas"]

seen = {"start": counts()}
blas_threads.hold_one()
blas_threads.hold_one()
seen["held twice"] = counts()
blas_threads.release()
seen["one hold left"] = counts()
t = threading.Thread(target=lambda: (blas_threads.hold_one(), blas_threads.release()))
t.start(); t.join()
seen["another thread came and went"] = counts()
blas_threads.release()
seen["released"] = counts()
print(json.dumps(seen))
"""


def test_blas_held_to_one_thread_until_the_last_hold_is_released():
    e = {**os.environ, "OPENBLAS_NUM_THREADS": "2"}
    out = subprocess.run([sys.executable, "-c", _HOLD], env=e, capture_output=True, text=True, check=True)
    seen = json.loads(out.stdout.strip().splitlines()[-1])
    assert seen["start"] and all(n == 2 for n in seen["start"])
    for state in ("held twice", "one hold left", "another thread came and went"):
        assert all(n == 1 for n in seen[state]), (state, seen)
    assert seen["released"] == seen["start"]
