"""GET /v1/jobs/{id}/metrics: incremental (after_step), filtered (names) and downsampled
(max_points) metric history, over real SQLite and PostgreSQL; rows go in through
store.repositories.metrics.add_many, as the worker writes them."""
from __future__ import annotations

import random

import pytest
from fastapi.testclient import TestClient

from api.main import create_app
from config.settings import get_settings
from store.db import session_scope
from store.repositories import metrics

SPEC = {"layers": [{"type": "Flatten"}, {"type": "Linear", "in_features": 2, "out_features": 2}]}
TRAINING = {"epochs": 1, "batch_size": 2, "optimizer": {"type": "SGD", "lr": 0.1}}
DATASET = {"name": "d", "inputs": [[0, 1], [1, 0], [1, 1], [0, 0]], "targets": [0, 1, 1, 0]}


def _submit(client, headers=None) -> str:
    ds = client.post("/v1/datasets", json=DATASET, headers=headers).json()["id"]
    r = client.post("/v1/jobs", json={"name": "j", "dataset_id": ds, "model": SPEC, "training": TRAINING},
                    headers=headers)
    assert r.status_code == 202, r.text
    return r.json()["id"]


@pytest.fixture
def job_id(client) -> str:
    return _submit(client)


@pytest.fixture
def add(settings):
    def add(job_id: str, rows: list[dict], chunk: int = 1000) -> None:
        for i in range(0, len(rows), chunk):
            with session_scope(settings.resolved_database_url) as s:
                metrics.add_many(s, job_id=job_id, rows=rows[i:i + chunk])
    return add


def _steps(first: int, last: int, name: str = "loss", value=lambda s: 1.0 / s, per_epoch: int = 10) -> list[dict]:
    return [{"kind": "step", "name": name, "epoch": (s - 1) // per_epoch + 1, "step": s, "value": value(s)}
            for s in range(first, last + 1)]


def _epoch(epoch: int, step: int, **values: float) -> list[dict]:
    return [{"kind": "epoch", "name": k, "epoch": epoch, "step": step, "value": v} for k, v in values.items()]


def _get(client, job_id: str, **params):
    r = client.get(f"/v1/jobs/{job_id}/metrics", params=params)
    assert r.status_code == 200, r.text
    return r.json()


def test_a_job_without_metrics(client, job_id):
    assert _get(client, job_id) == {"job_id": job_id, "last_step": 0, "steps": [], "epochs": [], "series": {}}
    assert _get(client, job_id, after_step=7, max_points=10)["last_step"] == 7


def test_whole_history_keeps_the_dashboard_shape(client, job_id, add):
    add(job_id, _steps(1, 10) + _steps(1, 10, "lr", lambda s: 0.1) + _epoch(1, 10, train_loss=0.5, val_loss=0.6))
    m = _get(client, job_id)
    assert m["last_step"] == 10
    assert m["steps"] == [{"step": s, "epoch": 1, "loss": 1.0 / s} for s in range(1, 11)]
    assert m["epochs"] == [{"epoch": 1, "train_loss": 0.5, "val_loss": 0.6, "val_accuracy": None}]
    assert set(m["series"]) == {"loss", "lr", "train_loss", "val_loss"}
    assert m["series"]["lr"] == {"kind": "step", "step": list(range(1, 11)), "epoch": [1] * 10, "value": [0.1] * 10}
    assert m["series"]["val_loss"] == {"kind": "epoch", "step": [10], "epoch": [1], "value": [0.6]}


def test_after_step_polls_return_every_row_once(client, job_id, add):
    seen: dict[tuple[str, int], float] = {}
    written: dict[tuple[str, int], float] = {}
    after = None
    for first, last in ((1, 25), (26, 25), (26, 40), (41, 41), (42, 90)):
        rows = _steps(first, last) + _steps(first, last, "lr", lambda s: 0.01 * s)
        rows += [r for e in range(1, 10) if first <= 10 * e <= last for r in _epoch(e, 10 * e, train_loss=e / 10)]
        add(job_id, rows)
        written.update(((r["name"], r["step"]), r["value"]) for r in rows)
        m = _get(client, job_id, **({} if after is None else {"after_step": after}))
        assert m["last_step"] == max([after or 0] + [s for _, s in written])
        for name, ser in m["series"].items():
            assert all(s > (after or 0) for s in ser["step"]), name
            for s, v in zip(ser["step"], ser["value"]):
                assert (name, s) not in seen, ("twice", name, s)
                seen[name, s] = v
        assert [p["step"] for p in m["steps"]] == m["series"].get("loss", {"step": []})["step"]
        assert [e["epoch"] for e in m["epochs"]] == [e for e in range(1, 10) if (after or 0) < 10 * e <= last]
        after = m["last_step"]
    assert seen == written
    assert _get(client, job_id, after_step=after) == {"job_id": job_id, "last_step": after, "steps": [],
                                                       "epochs": [], "series": {"loss": _empty("step"),
                                                                                "lr": _empty("step"),
                                                                                "train_loss": _empty("epoch")}}


def _empty(kind: str) -> dict:
    return {"kind": kind, "step": [], "epoch": [], "value": []}


def test_names_filter_the_series(client, job_id, add):
    add(job_id, _steps(1, 20) + _steps(1, 20, "lr", lambda s: 0.1) + _steps(1, 20, "digit_loss")
        + _epoch(1, 10, train_loss=0.5, val_loss=0.6) + _epoch(2, 20, train_loss=0.4, val_loss=0.5))
    m = _get(client, job_id, names="lr")
    assert list(m["series"]) == ["lr"] and m["steps"] == [] and m["epochs"] == [] and m["last_step"] == 20
    m = _get(client, job_id, names=" val_loss , loss", after_step=10)
    assert set(m["series"]) == {"loss", "val_loss"}
    assert [p["step"] for p in m["steps"]] == list(range(11, 21))
    assert m["epochs"] == [{"epoch": 2, "train_loss": None, "val_loss": 0.5, "val_accuracy": None}]
    assert m["series"]["val_loss"]["step"] == [20]


def test_a_name_of_both_kinds_gets_one_key_per_kind(client, job_id, add):
    add(job_id, _steps(1, 10, "train_loss") + _epoch(1, 10, train_loss=0.5))
    m = _get(client, job_id)
    assert set(m["series"]) == {"step:train_loss", "epoch:train_loss"}
    assert m["epochs"] == [{"epoch": 1, "train_loss": 0.5, "val_loss": None, "val_accuracy": None}]
    assert set(_get(client, job_id, names="train_loss")["series"]) == {"step:train_loss", "epoch:train_loss"}
    assert set(_get(client, job_id, names="epoch:train_loss")["series"]) == {"epoch:train_loss"}


def _noisy(n: int, seed: int = 0) -> dict[int, float]:
    rng = random.Random(seed)
    values = {s: 2.0 / (1 + s / 500) + rng.gauss(0, 0.1) for s in range(1, n + 1)}
    values[rng.randint(2, n - 1)] = -5.0  # a spike each way, inside the range
    values[rng.randint(2, n - 1)] = 9.0
    for s in range(n // 3, n // 3 + 200):  # and a flat stretch (a constant learning rate)
        values[s] = 0.25
    return values


def _expected(values: dict[int, float], max_points: int) -> list[int]:
    """The documented rule, by brute force: the first and last step, and the (value, step)
    minimum and maximum of each aligned block of 2**L steps, the smallest L that fits."""
    steps = sorted(values)
    lo, hi = steps[0], steps[-1]
    if hi - lo + 1 <= max_points:
        return steps
    keep = {lo, hi}
    buckets = (max_points - 2) // 2
    if buckets:
        level = next(lv for lv in range(32) if (hi >> lv) - (lo >> lv) + 1 <= buckets)
        blocks: dict[int, list[int]] = {}
        for s in steps:
            blocks.setdefault(s >> level, []).append(s)
        for members in blocks.values():
            keep.add(min(members, key=lambda s: (values[s], s)))
            keep.add(max(members, key=lambda s: (values[s], s)))
    return sorted(keep)


def _rows(values: dict[int, float], name: str = "loss") -> list[dict]:
    return [{"kind": "step", "name": name, "epoch": s // 1000 + 1, "step": s, "value": v} for s, v in values.items()]


@pytest.mark.parametrize("max_points", [2, 3, 4, 7, 100, 2000])
def test_downsampling_keeps_the_ends_and_the_extremes(client, job_id, add, max_points):
    values, lr = _noisy(20_000), _noisy(20_000, seed=5)
    rows = sorted(_rows(values) + _rows(lr, "lr") + _rows({1: 0.5, 5: 0.25}, "short"), key=lambda r: r["step"])
    add(job_id, rows, chunk=997)  # step by step, appended batch by batch, as the worker writes
    m = _get(client, job_id, max_points=max_points)
    assert m["series"]["lr"]["step"] == _expected(lr, max_points)  # every series, in the same request
    assert m["series"]["short"]["step"] == [1, 5]
    loss = m["series"]["loss"]
    assert len(loss["step"]) <= max_points and m["last_step"] == 20_000
    assert loss["step"] == _expected(values, max_points)
    assert loss["value"] == [values[s] for s in loss["step"]] and loss["epoch"] == [s // 1000 + 1 for s in loss["step"]]
    assert (loss["step"][0], loss["step"][-1]) == (1, 20_000)
    if max_points >= 4:
        assert min(loss["value"]) == -5.0 and max(loss["value"]) == 9.0
    points = zip(loss["step"], loss["epoch"], loss["value"])
    assert m["steps"] == [{"step": s, "epoch": e, "loss": v} for s, e, v in points]
    # after_step with max_points: the same rule over the rows past it
    tail = _get(client, job_id, max_points=max_points, after_step=12_345)["series"]["loss"]
    assert tail["step"] == _expected({s: v for s, v in values.items() if s > 12_345}, max_points)


def test_downsampling_stays_exact_through_any_write_order_and_resume(client, job_id, add, settings):
    values = _noisy(3000, seed=1)
    rows = _rows(values)
    random.Random(2).shuffle(rows)  # writes into the middle of the series re-level it
    add(job_id, rows, chunk=250)
    assert _get(client, job_id, max_points=50)["series"]["loss"]["step"] == _expected(values, 50)
    with session_scope(settings.resolved_database_url) as s:  # a lost attempt's rows past 1777 go
        metrics.delete_after(s, job_id=job_id, step=1777)
    kept = {s: v for s, v in values.items() if s <= 1777}
    assert _get(client, job_id, max_points=50)["series"]["loss"]["step"] == _expected(kept, 50)
    redo = _noisy(3000, seed=3)  # the next attempt writes them again, differently
    add(job_id, _rows({s: v for s, v in redo.items() if s > 1777}), chunk=100)
    kept.update((s, v) for s, v in redo.items() if s > 1777)
    for max_points in (4, 50, 999):
        assert _get(client, job_id, max_points=max_points)["series"]["loss"]["step"] == _expected(kept, max_points)


@pytest.mark.parametrize(
    "params, loc",
    [
        ({"after_step": -1}, "after_step"),
        ({"after_step": "ten"}, "after_step"),
        ({"after_step": "1.5"}, "after_step"),
        ({"after_step": 2**31}, "after_step"),
        ({"max_points": 1}, "max_points"),
        ({"max_points": 100_001}, "max_points"),
        ({"max_points": "many"}, "max_points"),
        ({"names": "loss,nope"}, "names"),
        ({"names": " , "}, "names"),
        ({"max_point": 10}, "max_point"),
    ],
)
def test_bad_queries_name_the_parameter(client, job_id, add, params, loc):
    add(job_id, _steps(1, 5) + _steps(1, 5, "lr", lambda s: 0.1))
    r = client.get(f"/v1/jobs/{job_id}/metrics", params=params)
    assert r.status_code == 422, r.text
    detail = r.json()["detail"]
    assert [e["loc"] for e in detail] == [["query", loc]], detail
    assert set(detail[0]) >= {"loc", "pointer", "msg", "type"}
    if loc == "names":
        assert "loss, lr" in detail[0]["msg"], detail  # the names the job has


def test_unknown_names_on_a_job_without_metrics(client, job_id):
    r = client.get(f"/v1/jobs/{job_id}/metrics", params={"names": "loss"})
    assert r.status_code == 422 and "'loss'" in r.json()["detail"][0]["msg"]


def test_another_owners_job_is_404(settings, add):
    keyed = settings.model_copy(update={"api_keys": {"key-alice": "alice", "key-bob": "bob"}})
    app = create_app()
    app.dependency_overrides[get_settings] = lambda: keyed
    alice, bob = {"Authorization": "Bearer key-alice"}, {"Authorization": "Bearer key-bob"}
    with TestClient(app) as c:
        job_id = _submit(c, alice)
        add(job_id, _steps(1, 5))
        for params in ({}, {"after_step": 2, "max_points": 2}, {"names": "loss"}, {"names": "nope"}):
            assert c.get(f"/v1/jobs/{job_id}/metrics", params=params, headers=bob).status_code == 404, params
        assert c.get(f"/v1/jobs/{job_id}/metrics", params={"names": "loss"}, headers=alice).status_code == 200


def test_rows_stored_before_0005_get_their_levels_on_upgrade(client, job_id, settings):
    from alembic import command
    from sqlalchemy import text

    from migrations import alembic_config, upgrade
    from store.db import get_engine

    url = settings.resolved_database_url
    values = _noisy(5000, seed=4)
    command.downgrade(alembic_config(url), "0004")
    with get_engine(url).begin() as conn:
        conn.execute(text("INSERT INTO metrics (job_id, kind, name, epoch, step, value) "
                          "VALUES (:job, 'step', 'loss', 1, :step, :value)"),
                     [{"job": job_id, "step": s, "value": v} for s, v in values.items()])
    upgrade(url)
    for max_points in (4, 100, 2000):
        assert _get(client, job_id, max_points=max_points)["series"]["loss"]["step"] == _expected(values, max_points)
