"""A checkpoint past PostgreSQL's 1 GB message limit, saved in blob chunks, read back and
downloaded streamed through a real API process.

One PostgreSQL schema (created and dropped here), one job row; a safetensors file of
``--gb`` GB (default 1.2: ~300 M float32 parameters, what vgg11-class models write) is
built in this process, then:

1. peer: the old layout, the file inline in ``checkpoints.data`` (one statement): refused;
2. ``checkpoints.add`` (blob chunks of ``--chunk-mb``), committed;
3. ``checkpoints.latest_with_data`` reads it back whole (what resume does): SHA-256 equal;
4. a uvicorn API process streams GET .../checkpoints/latest/download: SHA-256 equal, and the
   API's peak RSS (VmHWM) is recorded.

    python bench/checkpoint_blobs.py [--gb 1.2] [--chunk-mb 64] [--postgres URL] [--json out.json]
"""
from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.blob_common import api_process, machine, peak_rss_mb, pg_schema  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--gb", type=float, default=1.2)
    ap.add_argument("--chunk-mb", type=int, default=64)
    ap.add_argument("--postgres", default=os.environ.get("TRAINYARD_TEST_POSTGRES_URL",
                                                         "postgresql+psycopg://postgres@127.0.0.1:5432/test"))
    ap.add_argument("--skip-peer", action="store_true")
    ap.add_argument("--json")
    args = ap.parse_args()
    os.environ["TRAINYARD_BLOB_CHUNK_BYTES"] = str(args.chunk_mb * 1024**2)
    import engine
    from store.db import session_scope
    from store.models import Checkpoint, Dataset, Job
    from store.repositories import checkpoints

    out = {"machine": machine(), "gb": args.gb, "chunk_mb": args.chunk_mb}
    n = int(args.gb * 1e9 / 4)
    tensors = {f"layer{i}.weight": (np.arange(n // 4, dtype=np.float32) * (i + 1) % 977) for i in range(4)}
    buf = io.BytesIO()
    engine.save(tensors, buf, metadata={"format": "bench"})
    data = buf.getvalue()
    del tensors, buf
    digest = hashlib.sha256(data).hexdigest()
    out["bytes"] = len(data)
    print(f"checkpoint file: {len(data) / 1e9:.2f} GB", flush=True)
    with pg_schema(args.postgres) as url:
        with session_scope(url) as s:
            s.add(Dataset(id="d", name="d", num_samples=1, input_shape=[1], input_dtype="float32", size_bytes=0,
                          data=b""))
            s.add(Job(id="j", name="j", dataset_id="d", model_spec={}, training={}, plan=None))
        if not args.skip_peer:
            t = time.perf_counter()
            try:
                with session_scope(url) as s:
                    s.add(Checkpoint(id="inline", job_id="j", epoch=1, step=1, size_bytes=len(data), data=data))
                out["peer_inline"] = {"ok": True, "s": time.perf_counter() - t}
            except Exception as exc:  # noqa: BLE001 - the figure is the refusal
                out["peer_inline"] = {"ok": False, "s": time.perf_counter() - t,
                                      "error": f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"}
            print("peer (inline):", out["peer_inline"], flush=True)
        t = time.perf_counter()
        with session_scope(url) as s:
            ckpt = checkpoints.add(s, job_id="j", epoch=1, step=2, data=data, state=b"state")
            ckpt_id = ckpt.id
        out["write_s"] = time.perf_counter() - t
        print(f"write: {out['write_s']:.1f} s ({len(data) / 1e6 / out['write_s']:.0f} MB/s)", flush=True)
        t = time.perf_counter()
        with session_scope(url) as s:
            back = checkpoints.latest_with_data(s, job_id="j", with_state=True)
            assert back.id == ckpt_id and hashlib.sha256(back.data).hexdigest() == digest and back.state == b"state"
            out["chunks"] = s.execute(__import__("sqlalchemy").text(
                "SELECT chunks FROM blobs WHERE key = :k"), {"k": f"checkpoints/{ckpt_id}/model"}).scalar()
            del back
        out["read_s"] = time.perf_counter() - t
        print(f"read back: {out['read_s']:.1f} s, {out['chunks']} chunks, SHA-256 equal", flush=True)
        del data
        with api_process(url) as (base, pid):
            import httpx

            t = time.perf_counter()
            h = hashlib.sha256()
            got = 0
            with httpx.stream("GET", f"{base}/v1/jobs/j/checkpoints/latest/download", timeout=600) as r:
                r.raise_for_status()
                for piece in r.iter_bytes(1024**2):
                    h.update(piece)
                    got += len(piece)
            out["download_s"] = time.perf_counter() - t
            out["download_equal"] = h.hexdigest() == digest and got == out["bytes"]
            out["api_peak_rss_mb"] = peak_rss_mb(pid)
        print(f"download: {out['download_s']:.1f} s, byte-identical: {out['download_equal']}, "
              f"API peak RSS {out['api_peak_rss_mb']:.0f} MB", flush=True)
    out["load_after"] = os.getloadavg()
    print(json.dumps(out, indent=1))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
