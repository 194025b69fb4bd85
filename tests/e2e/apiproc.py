"""One API process (uvicorn, exactly as ``trainyard api`` runs it) for tests that watch the
process itself: its memory, or how it answers while its database is unreachable."""
from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

from trainyard.commands import api_command
from trainyard.processes import Child, free_port, wait_for_port


@contextlib.contextmanager
def api_process(env: dict[str, str], log: Path) -> Iterator[tuple[Child, str]]:
    """(the uvicorn child, its base URL) for an already migrated database in ``env``."""
    port = free_port()
    full = {**os.environ, "TRAINYARD_DATA_DIR": str(log.parent), **env}
    with open(log, "ab") as out:
        child = Child("api", api_command("127.0.0.1", port, log_level="warning"), full, stop_timeout=10)
        child.start(out)
        try:
            wait_for_port("127.0.0.1", port, 60, child.proc)
            yield child, f"http://127.0.0.1:{port}"
        finally:
            child.stop()


def rss_bytes(pid: int) -> int:
    return _status(pid)["VmRSS"]


def reset_peak_rss(pid: int) -> None:
    """Start a new peak: Linux resets VmHWM to the current RSS on ``5 > clear_refs``."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")


def peak_rss_bytes(pid: int) -> int:
    return _status(pid)["VmHWM"]


def _status(pid: int) -> dict[str, int]:
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(value.split()[0]) * 1024
    return out


__all__ = ["api_process", "peak_rss_bytes", "reset_peak_rss", "rss_bytes"]
