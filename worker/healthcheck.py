"""A worker container's health: ``python -m worker.healthcheck`` exits 0 while a worker
process of this host has a fresh heartbeat in the fleet registry (``worker.fleet``), 1
otherwise (not registered yet, stuck, or the database unreachable)."""
from __future__ import annotations

import socket
import sys

from config.settings import get_settings
from store.db import session_scope
from store.repositories import workers


def healthy() -> bool:
    settings = get_settings()
    me = socket.gethostname()
    with session_scope(settings.resolved_database_url) as session:
        # two missed beats at most: the TTL (30 s) is for the API's view of the whole fleet
        return any(w.hostname == me for w in workers.live(session, ttl_s=3 * settings.worker_heartbeat_s))


if __name__ == "__main__":
    try:
        ok = healthy()
    except Exception as exc:  # noqa: BLE001 - unhealthy, with the reason
        print(f"unhealthy: {type(exc).__name__}: {exc}", file=sys.stderr)
        sys.exit(1)
    print("healthy" if ok else f"unhealthy: no live worker of host {socket.gethostname()} in the fleet registry")
    sys.exit(0 if ok else 1)
