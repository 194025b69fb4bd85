"""GET /v1/workers lists the live fleet from the workers' heartbeats, and a job is routed by
the fleet: to the GPU queue while a GPU worker is live, refused (422 naming training.devices)
when it asks for more GPUs than the live GPU hosts have together."""
from __future__ import annotations

import copy
from datetime import timedelta

import pytest
import redis
from sqlalchemy import update

from config.settings import Settings
from store.db import session_scope
from store.models import WorkerPresence, utcnow
from store.repositories import workers
from worker import fleet
from worker.gpus import Gpu

SPEC = {"layers": [{"type": "Flatten"}, {"type": "Linear", "in_features": 4, "out_features": 3}]}
TRAINING = {"epochs": 1, "batch_size": 1, "optimizer": {"type": "SGD", "lr": 0.1}, "validation_split": 0.0}


@pytest.fixture
def dataset_id(client):
    body = {"name": "d", "inputs": [[[0, 1], [2, 3]]] * 32, "targets": [0, 1, 2, 0] * 8}
    return client.post("/v1/datasets", json=body).json()["id"]


def _presence(settings: Settings, address: str, n_gpus: int) -> fleet.Presence:
    """This test process as a worker of a host with ``n_gpus`` GPUs at ``address``."""
    gpus = [Gpu(i, str(i)) for i in range(n_gpus)]
    return fleet.Presence(settings, fleet.identity(settings.model_copy(update={"worker_address": address}),
                                                   available=gpus))


def _other(settings: Settings, name: str, me: fleet.Identity) -> None:
    """Another worker process's heartbeat (the same repository write under its name)."""
    with session_scope(settings.resolved_database_url) as session:
        workers.beat(session, name=name, hostname=me.hostname, address=me.address, kind=me.kind, queue=me.queue,
                     gpus=[g.label for g in me.gpus], ranks=me.ranks, jobs=[])


def test_the_fleet_lists_live_workers_with_their_gpus_jobs_and_heartbeat(client, settings, dataset_id):
    assert client.get("/v1/workers").json() == {"items": [], "gpu_hosts": {}, "gpus": 0, "cpu_workers": 0}
    r = client.post("/v1/jobs", json={"name": "j", "dataset_id": dataset_id, "model": SPEC, "training": TRAINING})
    job_id = r.json()["id"]
    gpu = _presence(settings, "10.0.0.8", 8)
    with fleet.hold(job_id, settings, ranks=2, me=gpu.me) as held:  # this process now runs the job on 2 GPUs
        assert held is not None and len(held.gpus) == 2
        gpu.beat()
        fleet.RUNNING.add("someone-elses-job", [0], ["7"])
        gpu.beat()
        fleet.RUNNING.remove("someone-elses-job")
        listed = client.get("/v1/workers").json()
    [w] = listed["items"]
    assert (w["name"], w["address"], w["kind"], w["queue"]) == (fleet.worker_name(), "10.0.0.8", "gpu",
                                                               f"{settings.queue}.gpu")
    assert w["gpus"] == [str(i) for i in range(8)] and w["ranks"] == 8
    assert {(j["job_id"], tuple(j["gpus"])) for j in w["jobs"]} == {(job_id, tuple(held.labels)), (None, ("7",))}
    assert listed["gpu_hosts"] == {"10.0.0.8": 8} and listed["gpus"] == 8
    assert w["last_heartbeat"] >= w["started_at"]
    gpu.beat()  # the job ended: the next beat shows no job
    assert client.get("/v1/workers").json()["items"][0]["jobs"] == []
    # a worker that stopped beating for longer than the TTL is not live; one that left is gone
    with session_scope(settings.resolved_database_url) as s:
        s.execute(update(WorkerPresence).values(heartbeat_at=utcnow() - timedelta(seconds=settings.worker_ttl_s + 1)))
    assert client.get("/v1/workers").json()["items"] == []
    gpu.beat()
    assert len(client.get("/v1/workers").json()["items"]) == 1
    gpu.stop()  # never started as a thread: stop only leaves the registry
    assert client.get("/v1/workers").json()["items"] == []


def test_the_presence_thread_beats_and_leaves(client, settings):
    p = fleet.Presence(settings.model_copy(update={"worker_heartbeat_s": 0.05}),
                       fleet.identity(settings, available=[]))
    p.start()
    try:
        import time

        deadline = time.monotonic() + 10
        while not client.get("/v1/workers").json()["items"] and time.monotonic() < deadline:
            time.sleep(0.05)
        [w] = client.get("/v1/workers").json()["items"]
        assert w["kind"] == "cpu" and w["queue"] == f"{settings.queue}.cpu" and w["gpus"] == []
        assert client.get("/v1/workers").json()["cpu_workers"] == 1
    finally:
        p.stop()
    assert client.get("/v1/workers").json()["items"] == []


def _submit(client, dataset_id, **training):
    body = {"name": "j", "dataset_id": dataset_id, "model": SPEC, "training": {**copy.deepcopy(TRAINING), **training}}
    return client.post("/v1/jobs", json=body)


def test_jobs_are_routed_by_the_fleet_and_too_many_gpus_is_a_422(client, settings, dataset_id, row_counts):
    broker = redis.Redis.from_url(settings.redis_url)
    cpu_q, gpu_q = f"{settings.queue}.cpu", f"{settings.queue}.gpu"
    # no GPU worker live: a job goes to the CPU queue; one that asks for a GPU waits on the GPU queue
    assert _submit(client, dataset_id).json()["plan"]["device_kind"] == "cpu"
    r = _submit(client, dataset_id, device="gpu", devices=4)
    assert r.status_code == 202 and r.json()["plan"]["device_kind"] == "gpu"
    assert (broker.llen(cpu_q), broker.llen(gpu_q)) == (1, 1)
    # two live 8-GPU hosts (two worker processes on the first share its GPUs)
    a = _presence(settings, "10.0.0.1", 8)
    a.beat()
    _other(settings, "host-a:2", a.me)
    _presence(settings, "10.0.0.2", 8).beat()  # a second host: same process name, other address
    _other(settings, "cpu-host:1", fleet.identity(settings, available=[]))
    assert client.get("/v1/workers").json()["gpu_hosts"] == {"10.0.0.1": 8, "10.0.0.2": 8}
    r = _submit(client, dataset_id, devices=8)
    assert r.status_code == 202 and r.json()["plan"]["device_kind"] == "gpu"  # a GPU worker is live
    assert _submit(client, dataset_id, device="cpu", devices=2).json()["plan"]["device_kind"] == "cpu"
    assert (broker.llen(cpu_q), broker.llen(gpu_q)) == (2, 2)
    before = row_counts()
    r = _submit(client, dataset_id, devices=settings.max_devices + 1)  # over max_devices, whatever the fleet
    assert r.status_code == 422 and r.json()["detail"][0]["loc"][-2:] == ["training", "devices"]
    r = _submit(client, dataset_id, devices=17)
    assert r.status_code == 422, r.text
    [err] = r.json()["detail"]
    assert err["loc"] == ["body", "training", "devices"]
    assert "17 GPUs" in err["msg"] and "16 in all" in err["msg"] and "10.0.0.2: 8" in err["msg"]
    assert row_counts() == before and broker.llen(gpu_q) == 2  # nothing written, nothing sent
    r = _submit(client, dataset_id, devices=16)  # two hosts' worth: a multi-node job
    assert r.status_code == 202 and r.json()["plan"]["device_kind"] == "gpu"
    # a CPU job is not bound by the GPUs
    assert _submit(client, dataset_id, device="cpu", devices=17).status_code == 202
