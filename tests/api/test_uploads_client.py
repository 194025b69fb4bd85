"""The Python client's chunked upload against the app over SQLite and PostgreSQL: a large
file goes in parts; a connection lost half-way raises with the upload id, and resuming sends
only the missing parts and ends with the same dataset as an uninterrupted upload."""
from __future__ import annotations

import io

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient

from store.db import session_scope
from store.repositories import datasets
from trainyard.client.datasets import ChunkedUploadInterrupted, Datasets
from trainyard.client.http import Http


class CutAfter(httpx.BaseTransport):
    """The app's transport, with the connection failing after ``puts`` part uploads."""

    def __init__(self, inner: httpx.BaseTransport, puts: int):
        self.inner, self.left, self.sent = inner, puts, []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if request.method == "PUT":
            if self.left == 0:
                raise httpx.ConnectError("connection lost")
            self.left -= 1
            self.sent.append(int(request.url.path.rsplit("/", 1)[1]))
        return self.inner.handle_request(request)


@pytest.fixture
def npz_file(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, size=(500, 3, 8, 8), dtype=np.uint8)
    y = rng.integers(0, 10, size=500)
    buf = io.BytesIO()
    np.savez(buf, inputs=x, targets=y)
    path = tmp_path / "images.npz"
    path.write_bytes(buf.getvalue())
    return path, x, y


def test_an_interrupted_client_upload_resumes_with_only_the_missing_parts(client: TestClient, settings, npz_file):
    path, x, y = npz_file
    parts = -(-path.stat().st_size // 8192)
    cut = CutAfter(client._transport, puts=parts // 2)
    api = Datasets(Http("http://testserver", transport=cut, retries=0))
    with pytest.raises(ChunkedUploadInterrupted) as lost:
        api.upload_chunked(path, name="imgs", part_bytes=8192)
    assert cut.sent == list(range(parts // 2))
    again = CutAfter(client._transport, puts=parts)
    ds = Datasets(Http("http://testserver", transport=again)).upload_chunked(
        path, name="imgs", part_bytes=8192, upload_id=lost.value.upload_id)
    assert again.sent == list(range(parts // 2, parts))  # only what was missing
    assert (ds.num_samples, ds.input_shape, ds.raw["input_dtype"]) == (500, [3, 8, 8], "uint8")
    with session_scope(settings.resolved_database_url) as s:
        got_x, got_y = datasets.load_all(s, dataset_id=ds.id)
    assert np.array_equal(got_x, x) and np.array_equal(got_y["output"], y)
