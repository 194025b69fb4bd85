"""Upload attacks against a running API process (uvicorn over PostgreSQL, default limits):
each is refused with a 4xx naming what is wrong, and the process's peak RSS while refusing it
stays under twice the request limit above what it held before (Linux VmHWM, reset per attack).

Attacks: a 200 MB chunked body (no Content-Length) as JSON and as a multipart upload; a .npz
of ~2 MB whose member inflates to 2 GiB; a .npy whose header claims 10^12 elements; a .csv of
10^6 columns; a .csv of 3x10^7 cells."""
from __future__ import annotations

import io
import json
import select
import socket
import uuid
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import numpy as np
import pytest

from config.settings import Settings
from migrations import upgrade
from tests.e2e.apiproc import api_process, peak_rss_bytes, reset_peak_rss, rss_bytes
from tests.ingest import attacks

pytestmark = pytest.mark.e2e

LIMIT = Settings().max_request_bytes  # the default the process runs with
RESULTS: dict[str, dict] = {}


@pytest.fixture(scope="module")
def api(postgres_url, embedded_redis_url, tmp_path_factory):
    upgrade(postgres_url)
    log = tmp_path_factory.mktemp("api") / "api.log"
    env = {"DATABASE_URL": postgres_url, "REDIS_URL": embedded_redis_url,
           "TRAINYARD_QUEUE": f"t-{uuid.uuid4().hex[:8]}"}
    with api_process(env, log) as (child, url):
        with httpx.Client(base_url=url, timeout=120) as client:
            _warm_up(client)
            yield child.proc.pid, url, client
    out = Path(log.parent / "attacks.json")
    out.write_text(json.dumps(RESULTS, indent=1))
    print("\nupload attacks:", json.dumps(RESULTS, indent=1))


def _warm_up(client: httpx.Client) -> None:
    """One accepted upload of each kind, so the code paths are loaded before RSS is measured."""
    buf = io.BytesIO()
    np.savez_compressed(buf, inputs=np.ones((8, 3), np.float32), targets=np.arange(8) % 2)
    r = client.post("/v1/datasets/upload", files={"file": ("ok.npz", buf.getvalue())}, data={"name": "ok"})
    assert r.status_code == 201, r.text
    r = client.post("/v1/datasets/upload", files={"file": ("ok.csv", attacks.many_cells_csv(8, 4))},
                    data={"name": "ok", "target_columns": "t"})
    assert r.status_code == 201, r.text
    r = client.post("/v1/datasets", json={"name": "ok", "inputs": [[1.0, 2.0]] * 4, "targets": [0, 1, 0, 1]})
    assert r.status_code == 201, r.text


def _measured(name: str, pid: int, attack) -> httpx.Response | tuple[int, bytes]:
    before = rss_bytes(pid)
    reset_peak_rss(pid)
    response = attack()
    peak = peak_rss_bytes(pid)
    status = response[0] if isinstance(response, tuple) else response.status_code
    RESULTS[name] = {"status": status, "rss_before_mb": round(before / 2**20, 1),
                     "peak_rss_mb": round(peak / 2**20, 1), "growth_mb": round((peak - before) / 2**20, 1),
                     "limit_mb": LIMIT / 2**20}
    assert peak - before < 2 * LIMIT, RESULTS[name]
    return response


def _chunked(url: str, path: str, content_type: str, head: bytes, filler: bytes, total: int,
             tail: bytes) -> tuple[int, bytes]:
    """POST with Transfer-Encoding: chunked (no Content-Length) from a raw socket, sending
    ``total`` bytes of ``filler`` between ``head`` and ``tail`` until the server answers."""
    parts = urlsplit(url)
    sock = socket.create_connection((parts.hostname, parts.port), timeout=120)
    sock.sendall(f"POST {path} HTTP/1.1\r\nHost: {parts.hostname}\r\nContent-Type: {content_type}\r\n"
                 f"Transfer-Encoding: chunked\r\n\r\n".encode())

    def chunk(data: bytes) -> None:
        sock.sendall(b"%x\r\n" % len(data) + data + b"\r\n")

    sent = 0
    try:
        chunk(head)
        while sent < total and not select.select([sock], [], [], 0)[0]:
            chunk(filler)
            sent += len(filler)
        if sent >= total:
            chunk(tail)
            sock.sendall(b"0\r\n\r\n")
    except (BrokenPipeError, ConnectionResetError):
        pass
    data = b""
    try:
        while b"\r\n\r\n" not in data or len(data) < _expected_length(data):
            piece = sock.recv(65536)
            if not piece:
                break
            data += piece
    except ConnectionResetError:
        pass
    sock.close()
    assert data.startswith(b"HTTP/1.1 "), f"no answer after {sent} bytes: {data[:200]!r}"
    head_end = data.index(b"\r\n\r\n")
    return int(data.split(b" ", 2)[1]), data[head_end + 4:]


def _expected_length(data: bytes) -> int:
    head, _, _ = data.partition(b"\r\n\r\n")
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return len(head) + 4 + int(value)
    return 1 << 62


def test_chunked_json_body_over_the_limit_is_a_413(api):
    pid, url, _ = api
    status, body = _measured("chunked_json_200MB", pid, lambda: _chunked(
        url, "/v1/datasets", "application/json", b'{"name": "big", "inputs": [', b"0," * (1 << 19),
        200 * 10**6, b'0], "targets": [0]}'))
    assert status == 413, body
    assert "max_request_bytes" in json.loads(body)["detail"][0]["msg"]


def test_chunked_multipart_upload_over_the_limit_is_a_413(api):
    pid, url, _ = api
    boundary = "b0undary"
    head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"name\"\r\n\r\nbig\r\n--{boundary}\r\n"
            f"Content-Disposition: form-data; name=\"file\"; filename=\"big.npy\"\r\n"
            f"Content-Type: application/octet-stream\r\n\r\n").encode()
    status, body = _measured("chunked_multipart_200MB", pid, lambda: _chunked(
        url, "/v1/datasets/upload", f"multipart/form-data; boundary={boundary}", head, b"\0" * (1 << 20),
        200 * 10**6, f"\r\n--{boundary}--\r\n".encode()))
    assert status == 413, body


def test_npz_inflating_to_2_gib_is_refused_before_inflating(api, tmp_path):
    pid, _, client = api
    bomb = attacks.zip_bomb(tmp_path / "bomb.npz", inflated=2 * 1024**3).read_bytes()
    assert len(bomb) < 4 * 1024**2
    r = _measured("npz_bomb_2GiB", pid, lambda: client.post(
        "/v1/datasets/upload", files={"file": ("bomb.npz", bomb)}, data={"name": "bomb"}))
    assert r.status_code == 422, r.text
    assert r.json()["detail"][0]["loc"] == ["body", "file"]
    assert "max_upload_inflated_bytes" in r.text
    RESULTS["npz_bomb_2GiB"]["file_mb"] = round(len(bomb) / 2**20, 2)


def test_npy_header_claiming_1e12_elements_is_a_422(api):
    pid, _, client = api
    y = io.BytesIO()
    np.save(y, np.zeros(4, dtype=np.int64))
    r = _measured("npy_header_1e12", pid, lambda: client.post(
        "/v1/datasets/upload", files={"file": ("x.npy", attacks.huge_header_npy()), "targets": ("y.npy", y.getvalue())},
        data={"name": "huge"}))
    assert r.status_code == 422, r.text
    assert r.json()["detail"][0]["loc"] == ["body", "file"]
    assert "1000000000000" in r.text


def test_csv_of_a_million_columns_is_a_422(api):
    pid, _, client = api
    wide = attacks.wide_csv(10**6)
    r = _measured("csv_1e6_columns", pid, lambda: client.post(
        "/v1/datasets/upload", files={"file": ("wide.csv", wide)}, data={"name": "wide", "target_columns": "t"}))
    assert r.status_code == 422, r.text
    assert "max_csv_columns" in r.text
    RESULTS["csv_1e6_columns"]["file_mb"] = round(len(wide) / 2**20, 1)


def test_csv_of_3e7_cells_is_a_422(api):
    pid, _, client = api
    cells = attacks.many_cells_csv(rows=30_000, columns=1000)
    assert len(cells) < LIMIT
    r = _measured("csv_3e7_cells", pid, lambda: client.post(
        "/v1/datasets/upload", files={"file": ("cells.csv", cells)}, data={"name": "cells", "target_columns": "t"}))
    assert r.status_code == 422, r.text
    assert "max_csv_cells" in r.text
    RESULTS["csv_3e7_cells"]["file_mb"] = round(len(cells) / 2**20, 1)


def test_the_api_still_serves_after_the_attacks(api):
    _, _, client = api
    assert client.get("/v1/health").status_code == 200
    r = client.post("/v1/datasets", json={"name": "after", "inputs": [[1.0]] * 2, "targets": [0, 1]})
    assert r.status_code == 201, r.text
