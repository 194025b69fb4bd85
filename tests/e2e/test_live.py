"""Live runs against real processes (uvicorn, a Celery worker, Redis, the database; on the
deployment services and on the embedded default): the stream delivers a job's metrics while
it trains, a reconnect loses and duplicates nothing, 50 subscribers see the same sequence,
and a client that goes away leaves no Redis subscription behind."""
from __future__ import annotations

import asyncio
import json

import httpx
import pytest
import redis
from httpx_sse import aconnect_sse, connect_sse

from tests.e2e.helpers import digits, eventually, post_dataset, submit_job

pytestmark = pytest.mark.e2e


@pytest.fixture(params=["services", "embedded"])
def running(request):
    return request.getfixturevalue("services_stack" if request.param == "services" else "stack")


def _start(client: httpx.Client, epochs: int = 12) -> dict:
    x, y = digits(600)
    ds = post_dataset(client, x, y, name="live")
    return submit_job(client, ds["id"], epochs=epochs, batch_size=16)


def _is_event(e) -> bool:
    """Not a keep-alive comment (httpx-sse passes those on as empty messages)."""
    return not (e.event == "message" and not e.data)


def _events(source, until: int | None = None) -> list[tuple[int, str, dict]]:
    out = []
    for e in filter(_is_event, source.iter_sse()):
        out.append((int(e.id), e.event, json.loads(e.data)))
        if until is not None and len(out) >= until:
            break
    return out


def _loss_steps(events) -> list[int]:
    return [r["step"] for _, k, d in events if k == "metric" for r in d["rows"] if r["name"] == "loss"]


def test_metrics_arrive_while_the_job_runs_then_end(running):
    with httpx.Client(base_url=running.base_url, timeout=60) as client:
        job = _start(client)
        seen_running_metric = False
        events = []
        with connect_sse(client, "GET", f"/v1/jobs/{job['id']}/events") as source:
            for e in filter(_is_event, source.iter_sse()):
                events.append((int(e.id), e.event, json.loads(e.data)))
                if e.event == "metric" and not seen_running_metric:
                    seen_running_metric = client.get(f"/v1/jobs/{job['id']}").json()["status"] == "running"
        final = client.get(f"/v1/jobs/{job['id']}").json()
    assert final["status"] == "succeeded", final["error"]
    assert seen_running_metric, "no metric event reached the stream while the job was running"
    ids = [i for i, _, _ in events]
    assert ids[:-1] == list(range(1, final["event_seq"] + 1)) and events[-1][1] == "end"
    assert _loss_steps(events) == list(range(1, final["progress"]["total_steps"] + 1))
    statuses = [d["status"] for _, k, d in events if k == "status"]
    assert statuses == ["queued", "running", "succeeded"]
    assert sum(1 for _, k, _ in events if k == "checkpoint") == 12


def test_reconnecting_with_last_event_id_loses_and_duplicates_nothing(running):
    with httpx.Client(base_url=running.base_url, timeout=60) as client:
        job = _start(client)
        parts = []
        last = None
        while True:  # read a few events, drop the connection, come back where we left off
            headers = {"Last-Event-ID": str(last)} if last is not None else {}
            with connect_sse(client, "GET", f"/v1/jobs/{job['id']}/events", headers=headers) as source:
                part = _events(source, until=3)
            parts.append(part)
            last = part[-1][0]
            if part[-1][1] == "end":
                break
        final = client.get(f"/v1/jobs/{job['id']}").json()
    events = [e for part in parts for e in part]
    assert len(parts) > 3
    assert [i for i, k, _ in events if k != "end"] == list(range(1, final["event_seq"] + 1))
    assert _loss_steps(events) == list(range(1, final["progress"]["total_steps"] + 1))


def test_fifty_subscribers_receive_the_same_sequence(running):
    async def subscribe(client: httpx.AsyncClient, job_id: str) -> list:
        async with aconnect_sse(client, "GET", f"/v1/jobs/{job_id}/events") as source:
            return [(e.id, e.event, e.data) async for e in source.aiter_sse() if _is_event(e)]

    async def main() -> list[list]:
        limits = httpx.Limits(max_connections=60)
        async with httpx.AsyncClient(base_url=running.base_url, timeout=120, limits=limits) as client:
            r = await client.get("/v1/datasets")
            dataset = r.json()["items"][0]["id"] if r.json()["items"] else None
            assert dataset, "the earlier tests of this module made a dataset"
            body = {"name": "fanout", "dataset_id": dataset,
                    "model": {"layers": [{"type": "Flatten"},
                                         {"type": "Linear", "in_features": 64, "out_features": 10}]},
                    "training": {"epochs": 8, "batch_size": 16, "optimizer": {"type": "SGD", "lr": 0.1}}}
            job = (await client.post("/v1/jobs", json=body)).json()
            return await asyncio.gather(*[subscribe(client, job["id"]) for _ in range(50)])

    sequences = asyncio.run(main())
    assert all(seq == sequences[0] for seq in sequences)
    assert sequences[0][-1][1] == "end" and len(sequences[0]) > 10


def test_a_client_that_leaves_leaves_no_subscription(running):
    broker = redis.Redis.from_url(running.env["REDIS_URL"])
    with httpx.Client(base_url=running.base_url, timeout=60) as client:
        job = _start(client, epochs=40)
        channel = f"trainyard:job-events:{job['id']}"
        with connect_sse(client, "GET", f"/v1/jobs/{job['id']}/events") as source:
            stream = source.iter_sse()  # kept open: breaking out of the loop would hang up
            next(stream), next(stream)
            assert eventually(lambda: broker.pubsub_numsub(channel)[0][1] == 1)
        assert eventually(lambda: broker.pubsub_numsub(channel)[0][1] == 0), "the stream's subscription outlived it"
        client.post(f"/v1/jobs/{job['id']}/cancel")
