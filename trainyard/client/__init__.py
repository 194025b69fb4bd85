"""The Python client of Trainyard's REST API.

    from trainyard.client import Client
    client = Client()                       # TRAINYARD_URL, TRAINYARD_API_KEY
    ds = client.datasets.builtin("digits")
    job = client.jobs.submit(model={"zoo": "mlp"}, dataset=ds,
                             training={"epochs": 5, "batch_size": 32, "optimizer": {"type": "Adam"}})
    job.wait(progress=True)
    model = job.load_model()

Built on the public API only (httpx); errors are ``ApiError`` subclasses that carry the
API's field pointer and message.
"""
from __future__ import annotations

from trainyard.client.datasets import Dataset, Datasets
from trainyard.client.errors import (
    ApiError,
    Conflict,
    InvalidRequest,
    JobFailed,
    NotFound,
    ServerError,
    TrainyardError,
    Unauthorized,
    Unreachable,
)
from trainyard.client.http import Http
from trainyard.client.jobs import Job, Jobs
from trainyard.client.sweeps import Sweep, Sweeps


class Client:
    """``Client(url=..., api_key=...)``; unset, they come from ``TRAINYARD_URL`` (default
    http://127.0.0.1:8000) and ``TRAINYARD_API_KEY``."""

    def __init__(self, url: str | None = None, api_key: str | None = None, *, timeout: float = 30.0,
                 retries: int = 5, backoff_s: float = 0.5):
        self.http = Http(url, api_key, timeout=timeout, retries=retries, backoff_s=backoff_s)
        self.datasets = Datasets(self.http)
        self.jobs = Jobs(self.http)
        self.sweeps = Sweeps(self.http)

    @property
    def url(self) -> str:
        return self.http.url

    def health(self) -> dict:
        return self.http.json("GET", "/v1/health")

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_) -> None:
        self.close()


__all__ = ["ApiError", "Client", "Conflict", "Dataset", "InvalidRequest", "Job", "JobFailed", "NotFound",
           "ServerError", "Sweep", "TrainyardError", "Unauthorized", "Unreachable"]
