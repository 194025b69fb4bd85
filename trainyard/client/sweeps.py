"""``client.sweeps``: hyperparameter searches in W&B's sweep configuration."""
from __future__ import annotations

import time
from typing import Any

from trainyard.client.http import Http
from trainyard.client.jobs import Job


class Sweep:
    """A sweep as last read: ``status``, ``trials`` (job_id, parameters, status, metric, ...),
    ``best``; ``wait()`` polls until every trial is over."""

    def __init__(self, http: Http, body: dict[str, Any]):
        self._http = http
        self._update(body)

    def _update(self, body: dict[str, Any]) -> None:
        self.raw = body
        self.id: str = body["id"]
        self.name: str = body.get("name", "")
        self.status: str = body["status"]
        self.trials: list[dict[str, Any]] = body.get("trials", [])
        self.best: dict[str, Any] | None = body.get("best")

    def __repr__(self) -> str:
        return f"Sweep({self.id!r}, status={self.status!r}, trials={len(self.trials)})"

    def refresh(self) -> Sweep:
        self._update(self._http.json("GET", f"/v1/sweeps/{self.id}"))
        return self

    def wait(self, poll_s: float = 2.0, timeout_s: float | None = None) -> Sweep:
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while self.refresh().status == "running":
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"sweep {self.id} still running after {timeout_s}s")
            time.sleep(poll_s)
        return self

    def cancel(self) -> Sweep:
        self._update(self._http.json("POST", f"/v1/sweeps/{self.id}/cancel"))
        return self

    def delete(self) -> None:
        self._http.request("DELETE", f"/v1/sweeps/{self.id}")

    def best_job(self) -> Job | None:
        if not self.best:
            return None
        return Job(self._http, self._http.json("GET", f"/v1/jobs/{self.best['job_id']}"))


class Sweeps:
    def __init__(self, http: Http):
        self._http = http

    def create(self, config: dict[str, Any]) -> Sweep:
        """``config``: {name, base: <a job body>, method, metric, parameters, early_terminate,
        run_cap, max_concurrent} as W&B spells them."""
        return Sweep(self._http, self._http.json("POST", "/v1/sweeps", json=config))

    def get(self, sweep_id: str) -> Sweep:
        return Sweep(self._http, self._http.json("GET", f"/v1/sweeps/{sweep_id}"))

    def list(self, *, status: str | None = None) -> list[dict[str, Any]]:
        params = {"status": status} if status else {}
        return self._http.json("GET", "/v1/sweeps", params=params)["items"]
