"""Dataset upload throughput and the API's memory: a real uvicorn API process over
PostgreSQL, the Python client sending an uncompressed .npz of uint8 images.

- peer, ``one request``: POST /v1/datasets/upload (multipart) of a file that fits the request
  limit (``--small-mb``, default 48 MB; max_request_bytes is 64 MiB);
- ``chunked``: the same file, and a large one (``--mb``, default 1024 MB: the issue's 2 GB
  scaled to this shared 2-core machine), through /v1/datasets/uploads in 16 MiB parts, then
  complete (checked and stored as shards of blob_chunk_bytes, 16 MiB by default).

Each case runs in a fresh API process; its peak RSS (VmHWM) is read after the upload. MB/s
are file bytes over wall time: parts, complete, and end to end.

    python bench/upload_throughput.py [--mb 1024] [--small-mb 48] [--json out.json]   (recorded: --mb 512)
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.blob_common import api_process, machine, peak_rss_mb, pg_schema  # noqa: E402


def _file(folder: Path, mb: int) -> Path:
    n = int(mb * 1e6 // 3072)
    rng = np.random.default_rng(0)
    path = folder / f"images-{mb}mb.npz"
    x = np.lib.format.open_memmap(folder / "x.npy", mode="w+", dtype=np.uint8, shape=(n, 3, 32, 32))
    for start in range(0, n, 20_000):
        x[start:start + 20_000] = rng.integers(0, 256, size=x[start:start + 20_000].shape, dtype=np.uint8)
    np.savez(path, inputs=x, targets=rng.integers(0, 10, size=n))
    del x
    os.unlink(folder / "x.npy")
    return path


def _case(url: str, path: Path, how: str) -> dict:
    from trainyard.client import Client

    size = path.stat().st_size
    with api_process(url) as (base, pid):
        with Client(base, timeout=1800) as client:
            t = time.perf_counter()
            if how == "one request":
                ds = client.datasets._upload(path.stem, (path.name, path.read_bytes()), task="classification")
                parts_s = None
            else:
                from trainyard.client import datasets as client_datasets

                original = client.datasets._http.json
                marks = {}

                def timed(method, route, **kw):
                    if route.endswith("/complete"):
                        marks["complete"] = time.perf_counter()
                    return original(method, route, **kw)

                client.datasets._http.json = timed
                ds = client.datasets.upload_chunked(path, part_bytes=client_datasets.PART_BYTES)
                parts_s = marks["complete"] - t
            total = time.perf_counter() - t
        rss = peak_rss_mb(pid)
    out = {"how": how, "file_mb": size / 1e6, "samples": ds.num_samples, "total_s": total,
           "mb_per_s": size / 1e6 / total, "api_peak_rss_mb": rss}
    if parts_s is not None:
        out.update(parts_s=parts_s, parts_mb_per_s=size / 1e6 / parts_s, complete_s=total - parts_s)
    print(json.dumps(out), flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mb", type=int, default=1024)
    ap.add_argument("--small-mb", type=int, default=48)
    ap.add_argument("--postgres", default=os.environ.get("TRAINYARD_TEST_POSTGRES_URL",
                                                         "postgresql+psycopg://postgres@127.0.0.1:5432/test"))
    ap.add_argument("--json")
    args = ap.parse_args()
    out = {"machine": machine(), "cases": []}
    with tempfile.TemporaryDirectory() as tmp, pg_schema(args.postgres) as url:
        small = _file(Path(tmp), args.small_mb)
        out["cases"].append(_case(url, small, "one request"))
        out["cases"].append(_case(url, small, "chunked"))
        big = _file(Path(tmp), args.mb)
        out["cases"].append(_case(url, big, "chunked"))
    out["load_after"] = os.getloadavg()
    print(json.dumps(out, indent=1))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
