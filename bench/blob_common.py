"""What the blob-store benchmarks share: the machine's description, a throwaway PostgreSQL
schema, a real API process (uvicorn) on a database, and a process's peak RSS."""
from __future__ import annotations

import os
import platform
import subprocess
import sys
import time
import uuid
from contextlib import contextmanager

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def machine() -> dict:
    return {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
            "mem_gb": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1e9, 1),
            "load_before": os.getloadavg(), "python": platform.python_version()}


@contextmanager
def pg_schema(base_url: str):
    """A migrated schema of its own in the PostgreSQL at ``base_url``, dropped afterwards."""
    from sqlalchemy import create_engine, text

    from migrations import upgrade

    schema = f"bench_{uuid.uuid4().hex[:10]}"
    admin = create_engine(base_url)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    sep = "&" if "?" in base_url else "?"
    url = f"{base_url}{sep}options=-csearch_path%3D{schema}"
    try:
        upgrade(url)
        yield url
    finally:
        from store.db import get_engine

        get_engine(url).dispose()
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


def peak_rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


@contextmanager
def api_process(database_url: str, extra_env: dict | None = None):
    """uvicorn serving api.main:app on a free port over ``database_url`` (no Redis, no keys)."""
    import httpx

    from trainyard.processes import free_port

    port = free_port()
    env = {**os.environ, "DATABASE_URL": database_url, "REDIS_URL": "", "TRAINYARD_REDIS_URL": "",
           "PYTHONPATH": ROOT, **(extra_env or {})}
    proc = subprocess.Popen([sys.executable, "-m", "uvicorn", "api.main:app", "--port", str(port), "--log-level",
                             "warning"], env=env, cwd=ROOT)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                if httpx.get(f"{base}/v1/health", timeout=2).status_code < 500:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None:
                raise RuntimeError("the API process exited")
            time.sleep(0.2)
        yield base, proc.pid
    finally:
        proc.terminate()
        proc.wait(timeout=30)
