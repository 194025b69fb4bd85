"""Sweeps against real processes (uvicorn, Celery workers, Redis, the database): a grid runs
every trial as a job and picks the best, never more than max_concurrent at once; ASHA stops
the worst trials at their first rung; a worker SIGKILLed in the middle of a sweep loses no
trial. A fleet of four workers over PostgreSQL, and the embedded default (SQLite, one worker)."""
from __future__ import annotations

import os
import signal
import time
import uuid
from pathlib import Path

import httpx
import pytest

from store.db import session_scope
from store.models import Job
from store.repositories import metrics
from tests.e2e.helpers import MLP_SPEC, digits, post_dataset
from trainyard.processes import free_port
from trainyard.stack import Stack

pytestmark = pytest.mark.e2e

FAST_SUPERVISION = {"TRAINYARD_LEASE_S": "3", "TRAINYARD_REAPER_INTERVAL_S": "0.5", "TRAINYARD_REQUEUE_AFTER_S": "4"}
TRAINING = {"epochs": 4, "batch_size": 32, "optimizer": {"type": "Adam", "lr": 0.005}, "seed": 7,
            "validation_split": 0.2}


@pytest.fixture(scope="module")
def fleet(tmp_path_factory, postgres_url, real_redis_url):
    """API and four workers over the machine's PostgreSQL and Redis."""
    data_dir = tmp_path_factory.mktemp("sweep-fleet")
    env = {"DATABASE_URL": postgres_url, "REDIS_URL": real_redis_url, "TRAINYARD_QUEUE": f"test-{uuid.uuid4().hex[:8]}",
           **FAST_SUPERVISION}
    stack = Stack(port=free_port(), data_dir=data_dir, env=env, log_file=Path(data_dir) / "stack.log", workers=4)
    stack.start()
    yield stack
    stack.stop()


@pytest.fixture(params=["fleet", "embedded"])
def running(request):
    return request.getfixturevalue("fleet" if request.param == "fleet" else "stack")


def _dataset(client: httpx.Client) -> str:
    x, y = digits(600)
    return post_dataset(client, x, y, name="digits-600")["id"]


def _submit(client: httpx.Client, dataset_id: str, parameters: dict, training: dict | None = None, **fields) -> dict:
    body = {"name": "sweep", "method": "grid", "metric": {"name": "val_accuracy", "goal": "maximize"},
            "base": {"name": "trial", "dataset_id": dataset_id, "model": MLP_SPEC,
                     "training": {**TRAINING, **(training or {})}},
            "parameters": parameters, **fields}
    r = client.post("/v1/sweeps", json=body)
    assert r.status_code == 201, r.text
    return r.json()


def _wait(client: httpx.Client, sweep_id: str, timeout: float, on_poll=None) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        sweep = client.get(f"/v1/sweeps/{sweep_id}").json()
        if on_poll:
            on_poll(sweep)
        if sweep["status"] != "running":
            return sweep
        time.sleep(0.1)
    raise TimeoutError(f"sweep {sweep_id} still running after {timeout}s: {sweep['progress']}")


def _loss_steps(stack: Stack, job_id: str) -> list[int]:
    with session_scope(stack.database_url) as s:
        return [m.step for m in metrics.for_job(s, job_id=job_id, kind="step") if m.name == "loss"]


def test_grid_runs_every_trial_picks_the_best_and_keeps_max_concurrent(running):
    with httpx.Client(base_url=running.base_url, timeout=30) as client:
        ds = _dataset(client)
        sweep = _submit(client, ds, {"training.optimizer.lr": {"values": [0.01, 0.0003]},
                                     "training.batch_size": {"values": [16, 32, 64]}}, max_concurrent=2)
        most = {"running": 0, "active": 0}

        def sample(current: dict) -> None:
            ids = {t["job_id"] for t in current["trials"] if t["job_id"]}
            listed = client.get("/v1/jobs", params={"limit": 1000}).json()["items"]
            running_now = sum(1 for j in listed if j["id"] in ids and j["status"] == "running")
            active_now = sum(1 for j in listed if j["id"] in ids and j["status"] in ("queued", "running"))
            most["running"], most["active"] = max(most["running"], running_now), max(most["active"], active_now)

        done = _wait(client, sweep["id"], 300, sample)
        jobs = {t["job_id"]: client.get(f"/v1/jobs/{t['job_id']}").json() for t in done["trials"]}
    assert done["status"] == "finished" and done["finished_at"]
    assert done["progress"] == {"trials_total": 6, "trials_started": 6, "trials_finished": 6}
    assert [j["status"] for j in jobs.values()] == ["succeeded"] * 6, [j["error"] for j in jobs.values()]
    assert [(j["training"]["optimizer"]["lr"], j["training"]["batch_size"]) for j in jobs.values()] == [
        (lr, bs) for lr in (0.01, 0.0003) for bs in (16, 32, 64)]
    assert most["active"] <= 2 and most["running"] <= 2, most
    if running.n_workers > 2:
        assert most["running"] == 2, most  # four idle workers: both slots were used at once
    finals = {job_id: j["metrics"]["val_accuracy"] for job_id, j in jobs.items()}
    assert [t["metric"] for t in done["trials"]] == list(finals.values())
    top = max(finals.values())
    first_best = next(t for t in done["trials"] if finals[t["job_id"]] == top)
    assert done["best"] == {"job_id": first_best["job_id"], "index": first_best["index"], "metric": top,
                            "parameters": first_best["parameters"]}
    for job_id, j in jobs.items():  # every trial trained all its steps, once
        assert _loss_steps(running, job_id) == list(range(1, j["progress"]["total_steps"] + 1))


def test_asha_stops_the_worst_at_the_first_rung_and_the_best_runs_to_the_end(fleet):
    lrs = [0.01, 0.005, 0.002, 0.001, 0.0005, 0.0002, 0.0001, 0.00005]
    with httpx.Client(base_url=fleet.base_url, timeout=30) as client:
        ds = _dataset(client)
        sweep = _submit(client, ds, {"training.optimizer.lr": {"values": lrs}}, training={"epochs": 9},
                        metric={"name": "val_loss", "goal": "minimize"}, max_concurrent=4,
                        early_terminate={"type": "hyperband", "min_iter": 1, "eta": 3})
        done = _wait(client, sweep["id"], 300)
        jobs = {t["job_id"]: client.get(f"/v1/jobs/{t['job_id']}").json() for t in done["trials"]}
    assert done["status"] == "finished"
    spe = next(iter(jobs.values()))["plan"]["steps_per_epoch"]
    assert {j["status"] for j in jobs.values()} == {"succeeded"}
    at_first = [t for t in done["trials"] if t["stopped_early"] and t["rung"] == 1]
    assert at_first, [(t["parameters"], t["rungs"]) for t in done["trials"]]
    for t in done["trials"]:
        job = jobs[t["job_id"]]
        if t["stopped_early"]:  # its step counter stopped at the rung's epoch
            assert job["progress"]["step"] == t["rung"] * spe and job["metrics"]["stopped_at_epoch"] == t["rung"]
            assert (t["rungs"][-1]["epoch"], t["rungs"][-1]["continued"]) == (t["rung"], False)
            assert _loss_steps(fleet, t["job_id"]) == list(range(1, t["rung"] * spe + 1))
        else:
            assert job["progress"]["step"] == 9 * spe and [r["epoch"] for r in t["rungs"]] == [1, 3]
    finished = [t for t in done["trials"] if not t["stopped_early"]]
    best = done["best"]
    assert best["job_id"] in {t["job_id"] for t in finished}, (best, done["trials"])
    assert best["metric"] == min(t["metric"] for t in done["trials"])
    print(f"\nasha: stopped at rung 1: {len(at_first)}, at rung 3: "
          f"{sum(1 for t in done['trials'] if t['stopped_early'] and t['rung'] == 3)}, ran 9 epochs: {len(finished)}")


def test_a_worker_killed_in_the_middle_of_a_sweep_loses_no_trial(fleet):
    with httpx.Client(base_url=fleet.base_url, timeout=30) as client:
        ds = _dataset(client)
        sweep = _submit(client, ds, {"training.seed": {"values": [1, 2, 3, 4, 5, 6]}},
                        training={"epochs": 6, "batch_size": 16, "checkpoint_every": 10}, max_concurrent=3)
        kills: list[str] = []
        deadline = time.monotonic() + 240
        while len(kills) < 2 and time.monotonic() < deadline:
            current = client.get(f"/v1/sweeps/{sweep['id']}").json()
            trials = [t for t in current["trials"] if t["status"] == "running" and t["job_id"] not in kills]
            rows = [client.get(f"/v1/jobs/{t['job_id']}").json() for t in trials]
            rows = [j for j in rows if j["status"] == "running" and j["progress"]["step"] > 15]
            with session_scope(fleet.database_url) as s:
                owners = {j["id"]: s.get(Job, j["id"]).worker for j in rows}
            victims = [(i, w, job_id) for job_id, name in owners.items() for i, w in enumerate(fleet.workers)
                       if name and w.alive() and name.endswith(f":{w.proc.pid}")]
            if victims:
                index, victim, job_id = victims[0]
                os.killpg(victim.proc.pid, signal.SIGKILL)
                victim.proc.wait()
                kills.append(job_id)
                fleet.start_worker(index)
            time.sleep(0.2)
        assert len(kills) == 2, "the sweep finished before the test could kill workers"
        done = _wait(client, sweep["id"], 300)
        jobs = {t["job_id"]: client.get(f"/v1/jobs/{t['job_id']}").json() for t in done["trials"]}
    assert done["status"] == "finished" and done["progress"]["trials_finished"] == 6
    assert [j["status"] for j in jobs.values()] == ["succeeded"] * 6, [j["error"] for j in jobs.values()]
    assert all(jobs[job_id]["attempt"] >= 2 for job_id in kills)
    for job_id, j in jobs.items():  # resumed from checkpoints: every step once, none lost or doubled
        assert _loss_steps(fleet, job_id) == list(range(1, j["progress"]["total_steps"] + 1))
    assert done["best"] is not None
