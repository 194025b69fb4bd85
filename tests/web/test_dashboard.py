"""The dashboard in a real browser.

``test_live_job_end_to_end`` runs against the real service (``stack``: API, a Celery worker,
Redis): it submits a job while the dashboard is open and watches it finish without a reload.
The other tests feed the page canned API answers through request interception to reach the
states a live service cannot be put in on demand (no jobs, a failed job, an unknown id).
"""
from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

pytestmark = pytest.mark.web

SCREENSHOT = "/tmp/dashboard.png"
MODEL = {
    "layers": [
        {"type": "Flatten"},
        {"type": "Linear", "in_features": 64, "out_features": 32},
        {"type": "ReLU"},
        {"type": "Linear", "in_features": 32, "out_features": 10},
    ]
}
JOB_TIMEOUT_MS = 180_000  # the embedded worker runs one job at a time; others may be ahead
EXPECTED_TENSORS = {"1.weight": (32, 64), "1.bias": (32,), "3.weight": (10, 32), "3.bias": (10,)}


def expect(*args, **kwargs):
    from playwright.sync_api import expect as _expect

    return _expect(*args, **kwargs)


def _service_log_tail(stack, chars: int = 4000) -> str:
    log = getattr(stack, "log_file", None)
    try:
        return "service log tail:\n" + log.read_text(errors="replace")[-chars:]
    except (AttributeError, OSError):
        return "(no service log)"


def drawn(series) -> int:
    """How many of a series' values the chart handed to uPlot (its ``data-drawn``)."""
    return int(series.get_attribute("data-drawn") or 0)


def row_for(page, job_id: str):
    return page.locator(f'[data-testid="job-row"][data-job-id="{job_id}"]')


def loss_points(metrics: dict) -> int:
    """Loss points in a /metrics answer: its ``series``, or, in the answer before it (whose
    ``steps`` mix the rows of every step metric, unnamed), the distinct steps."""
    if "series" in metrics:
        return len(metrics["series"]["loss"]["step"])
    return len({s["step"] for s in metrics["steps"]})


def val_loss_points(metrics: dict) -> int:
    if "epochs" in metrics:
        return sum(1 for e in metrics["epochs"] if e.get("val_loss") is not None)
    return len(metrics["series"]["val_loss"]["step"])


# ------------------------------------------------------------- real service --


@pytest.fixture(scope="module")
def digits_dataset_id(api):
    from sklearn.datasets import load_digits

    digits = load_digits()
    inputs = (digits.images[:300] / 16.0).round(4).tolist()  # 300 x 8 x 8 nested lists
    targets = [int(t) for t in digits.target[:300]]
    resp = api.post("/v1/datasets", json={"name": "digits-300", "inputs": inputs, "targets": targets})
    assert resp.status_code == 201, resp.text
    return resp.json()["id"]


def test_live_job_end_to_end(stack, api, digits_dataset_id, page, tmp_path):
    from safetensors.numpy import load as load_safetensors

    # The page is open before the job exists: it must find it and follow it on its own.
    page.goto(f"{stack.base_url}/")
    expect(page.get_by_test_id("job-list-view")).to_be_visible()
    page.evaluate("window.__noReload = true")

    resp = api.post("/v1/jobs", json={
        "name": "dashboard-digits-mlp",
        "dataset_id": digits_dataset_id,
        "model": MODEL,
        "training": {"epochs": 3, "batch_size": 32, "optimizer": {"type": "Adam", "lr": 0.01},
                     "seed": 0, "validation_split": 0.2},
    })
    assert resp.status_code == 202, resp.text
    job_id = resp.json()["id"]

    row = row_for(page, job_id)
    expect(row).to_be_visible(timeout=10_000)
    expect(row.get_by_test_id("job-name")).to_have_text("dashboard-digits-mlp")
    badge = row.get_by_test_id("job-status")
    expect(badge).to_have_text(re.compile(r"^(queued|running|succeeded)$"))
    try:
        expect(badge).to_have_text(re.compile(r"^(succeeded|failed|cancelled)$"), timeout=JOB_TIMEOUT_MS)
    except AssertionError:
        job = api.get(f"/v1/jobs/{job_id}").json()
        if job["status"] in ("succeeded", "failed", "cancelled"):
            raise  # the service finished it: the page failed to follow
        pytest.fail(f"the job never finished: the API still says {job['status']} ({job['progress']})\n"
                    f"{_service_log_tail(stack)}", pytrace=False)
    job = api.get(f"/v1/jobs/{job_id}").json()
    assert job["status"] == "succeeded", f"job {job['status']}: {job['error']}\n{_service_log_tail(stack)}"
    expect(badge).to_have_text("succeeded")
    expect(badge).to_have_attribute("data-status", "succeeded")
    assert page.evaluate("window.__noReload") is True, "the page reloaded; it must refresh by itself"
    expect(row.get_by_test_id("job-progress")).to_contain_text(f"Epoch 3/3 · Step {job['progress']['total_steps']}")
    expect(row.get_by_test_id("job-val-accuracy")).to_have_text(f"{job['metrics']['val_accuracy'] * 100:.1f}%")

    # Open the job from the list.
    row.get_by_test_id("job-name").click()
    expect(page).to_have_url(re.compile(rf"#/jobs/{job_id}$"))
    detail = page.get_by_test_id("job-detail")
    expect(detail).to_be_visible()
    expect(detail.get_by_test_id("job-status")).to_have_text("succeeded")
    expect(detail.get_by_test_id("job-error")).to_be_hidden()
    expect(detail.get_by_test_id("config-optimizer")).to_have_text("Adam")
    expect(detail.get_by_test_id("config-lr")).to_have_text("0.01")
    expect(detail.get_by_test_id("config-epochs")).to_have_text("3")
    expect(detail.get_by_test_id("config-batch-size")).to_have_text("32")
    expect(detail.get_by_test_id("metric-val-accuracy")).to_have_text(f"{job['metrics']['val_accuracy'] * 100:.2f}%")

    # The loss chart: one point per recorded step, validation loss per epoch on top.
    metrics = api.get(f"/v1/jobs/{job_id}/metrics").json()
    n_steps = loss_points(metrics)
    assert n_steps == job["progress"]["total_steps"] > 0
    chart = page.get_by_test_id("loss-chart")
    expect(chart).to_be_visible()
    expect(chart.locator("canvas")).to_have_count(1)  # uPlot draws on a canvas
    train_path = chart.get_by_test_id("train-loss-path")
    expect(train_path).to_have_attribute("data-points", str(n_steps))
    assert drawn(train_path) == n_steps
    n_val = val_loss_points(metrics)
    assert n_val == 3
    assert drawn(chart.get_by_test_id("val-loss-path")) == n_val
    acc_path = page.get_by_test_id("accuracy-chart").get_by_test_id("val-accuracy-path")
    assert drawn(acc_path) == 3

    # Checkpoints: as many links as the API lists; the newest downloads a loadable file.
    ckpts = api.get(f"/v1/jobs/{job_id}/checkpoints").json()["items"]
    assert ckpts
    links = page.get_by_test_id("checkpoint-link")
    expect(links).to_have_count(len(ckpts))
    with page.expect_download() as download_info:
        links.last.click()
    download = download_info.value
    assert download.suggested_filename.endswith(".safetensors")
    target = tmp_path / download.suggested_filename
    download.save_as(target)
    tensors = load_safetensors(target.read_bytes())
    for key, shape in EXPECTED_TENSORS.items():
        assert key in tensors, f"{key} missing from checkpoint: {sorted(tensors)}"
        assert tensors[key].shape == shape
        assert np.isfinite(tensors[key]).all()

    page.mouse.move(0, 0)
    page.evaluate("window.scrollTo(0, 0)")  # a sticky header would land mid-image otherwise
    page.screenshot(path=SCREENSHOT, full_page=True)

    # A deep link opens the same detail after a full load.
    page.goto(f"{stack.base_url}/#/jobs/{job_id}")
    page.reload()
    expect(page.get_by_test_id("job-detail")).to_have_attribute("data-job-id", job_id)
    expect(page.get_by_test_id("train-loss-path")).to_have_attribute("data-points", str(n_steps))

    # Back to the list.
    page.get_by_test_id("back-link").click()
    expect(row_for(page, job_id)).to_be_visible()
    assert page.js_errors == []


def test_cancel_a_running_job_from_its_page(stack, api, digits_dataset_id, page):
    resp = api.post("/v1/jobs", json={
        "name": "dashboard-cancel", "dataset_id": digits_dataset_id, "model": MODEL,
        "training": {"epochs": 1000, "batch_size": 16, "optimizer": {"type": "SGD", "lr": 0.01},
                     "seed": 0, "validation_split": 0.2, "checkpoint_every": 5},
    })
    assert resp.status_code == 202, resp.text
    job_id = resp.json()["id"]
    page.goto(f"{stack.base_url}/#/jobs/{job_id}")
    badge = page.get_by_test_id("job-detail").get_by_test_id("job-status")
    expect(badge).to_have_text("running", timeout=JOB_TIMEOUT_MS)
    button = page.get_by_test_id("cancel-job")
    expect(button).to_be_visible()
    button.click()
    expect(badge).to_have_text("cancelled", timeout=15_000)
    expect(button).to_be_hidden()
    assert api.get(f"/v1/jobs/{job_id}").json()["status"] == "cancelled"


def test_unknown_job_shows_not_found(stack, page):
    page.goto(f"{stack.base_url}/#/jobs/does-not-exist")
    expect(page.get_by_test_id("not-found")).to_be_visible()
    expect(page.get_by_test_id("not-found")).to_contain_text("does-not-exist")
    # The only error the page may log is the browser's note about the 404 response.
    assert all("404" in e for e in page.js_errors), page.js_errors


# ------------------------------------------------------------- canned API ----


def _iso(dt: datetime) -> str:
    return dt.isoformat().replace("+00:00", "Z")


def _job(job_id: str, status: str, *, step: int, total: int = 24, epochs: int = 3, error=None, minutes_ago=1):
    now = datetime.now(UTC)
    created = now - timedelta(minutes=minutes_ago)
    return {
        "id": job_id, "name": f"job <{job_id}>", "status": status, "dataset_id": "ds1", "model": MODEL,
        "training": {"epochs": epochs, "batch_size": 32, "optimizer": {"type": "SGD", "lr": 0.1, "momentum": 0.9},
                     "seed": 0, "validation_split": 0.2},
        "error": error, "created_at": _iso(created),
        "started_at": _iso(created + timedelta(seconds=1)) if status != "queued" else None,
        "finished_at": _iso(now) if status in ("succeeded", "failed", "cancelled") else None,
        "progress": {"epoch": (step - 1) // (total // epochs) + 1 if step else 0, "epochs": epochs,
                     "step": step, "total_steps": total},
        "metrics": {"train_loss": 0.5 if step else None, "val_loss": None, "val_accuracy": None},
    }


def _metrics(job_id: str, n_steps: int, per_epoch: int = 8):
    steps = [{"step": s, "epoch": (s - 1) // per_epoch + 1, "loss": 2.3 / s} for s in range(1, n_steps + 1)]
    epochs = [{"epoch": e, "train_loss": 2.3 / (e * per_epoch), "val_loss": 2.5 / (e * per_epoch),
               "val_accuracy": 0.5 + 0.1 * e} for e in range(1, n_steps // per_epoch + 1)]
    return {"job_id": job_id, "steps": steps, "epochs": epochs}


def test_empty_state(page, fake_api):
    page.goto(f"{fake_api.origin}/")
    expect(page.get_by_test_id("empty-state")).to_be_visible()
    expect(page.get_by_test_id("empty-state")).to_contain_text("No jobs yet")
    expect(page.get_by_test_id("job-row")).to_have_count(0)

    # The first job appears by itself, the empty state goes away.
    fake_api.jobs["a"] = _job("a", "queued", step=0)
    expect(row_for(page, "a")).to_be_visible(timeout=6_000)
    expect(page.get_by_test_id("empty-state")).to_be_hidden()
    assert page.js_errors == []


def test_list_order_badges_and_progress(page, fake_api):
    for i, status in enumerate(["queued", "running", "succeeded", "failed", "cancelled"]):
        fake_api.jobs[status] = _job(status, status, step={"queued": 0, "running": 12}.get(status, 24),
                                     minutes_ago=10 - i)
    page.goto(f"{fake_api.origin}/")
    rows = page.get_by_test_id("job-row")
    expect(rows).to_have_count(5)
    order = [r.get_attribute("data-job-id") for r in rows.all()]
    assert order == ["cancelled", "failed", "succeeded", "running", "queued"]
    for status in fake_api.jobs:
        badge = row_for(page, status).get_by_test_id("job-status")
        expect(badge).to_have_text(status)
        assert f"badge-{status}" in badge.get_attribute("class")
    # Names are text, never markup.
    expect(row_for(page, "running").get_by_test_id("job-name")).to_have_text("job <running>")
    expect(row_for(page, "running").get_by_test_id("job-progress")).to_contain_text("Epoch 2/3 · Step 12/24")
    fill = row_for(page, "running").locator(".progress-fill")
    assert fill.get_attribute("style") == "width: 50%"

    # Progress moves on the next poll, without a reload.
    fake_api.jobs["running"] = _job("running", "running", step=18, minutes_ago=7)
    expect(row_for(page, "running").get_by_test_id("job-progress")).to_contain_text("Step 18/24", timeout=6_000)
    assert page.js_errors == []


def test_detail_of_running_job_refreshes_then_stops(page, fake_api):
    fake_api.jobs["r"] = _job("r", "running", step=4)
    fake_api.metrics["r"] = _metrics("r", 4)
    page.goto(f"{fake_api.origin}/#/jobs/r")
    path = page.get_by_test_id("train-loss-path")
    expect(path).to_have_attribute("data-points", "4")
    expect(page.get_by_test_id("checkpoints-empty")).to_be_visible()
    expect(page.get_by_test_id("config-optimizer")).to_have_text("SGD")
    expect(page.get_by_test_id("config-optimizer-args")).to_have_text("momentum=0.9")

    # New steps, a finished epoch and its checkpoint arrive while the page is open.
    fake_api.metrics["r"] = _metrics("r", 12)
    fake_api.checkpoints["r"] = [{"id": "c1", "epoch": 1, "step": 8, "size_bytes": 9000,
                                  "created_at": _iso(datetime.now(UTC)),
                                  "download_url": "/v1/jobs/r/checkpoints/c1/download"}]
    expect(path).to_have_attribute("data-points", "12", timeout=6_000)
    assert drawn(path) == 12
    assert drawn(page.get_by_test_id("val-loss-path")) == 1
    expect(page.get_by_test_id("checkpoint-link")).to_have_count(1)
    expect(page.get_by_test_id("checkpoint-link")).to_have_attribute("href", "/v1/jobs/r/checkpoints/c1/download")

    # Once it is finished the page stops asking.
    fake_api.jobs["r"] = _job("r", "succeeded", step=24)
    fake_api.metrics["r"] = _metrics("r", 24)
    expect(page.get_by_test_id("job-detail").get_by_test_id("job-status")).to_have_text("succeeded", timeout=6_000)
    expect(path).to_have_attribute("data-points", "24")
    # (the event stream of this fake closes without an event, so the page polls)
    expect(page.get_by_test_id("job-detail")).to_have_attribute("data-feed", "ended")
    assert any(u.endswith("/events") for u in fake_api.urls), "the page never tried the event stream"
    expect(page.get_by_test_id("live-indicator")).to_have_attribute("data-state", "idle")
    asked = len(fake_api.requests)
    page.wait_for_timeout(4500)  # (serves the page's requests meanwhile, unlike a sleep)
    assert len(fake_api.requests) == asked, fake_api.requests[asked:]
    assert page.js_errors == []


def test_failed_job_shows_error(page, fake_api):
    fake_api.jobs["f"] = _job("f", "failed", step=3, error="RuntimeError: loss is NaN <script>x</script>")
    fake_api.metrics["f"] = _metrics("f", 3)
    page.goto(f"{fake_api.origin}/")
    row_for(page, "f").click()
    expect(page).to_have_url(re.compile(r"#/jobs/f$"))
    err = page.get_by_test_id("job-error")
    expect(err).to_be_visible()
    expect(err).to_contain_text("RuntimeError: loss is NaN <script>x</script>")
    expect(page.get_by_test_id("job-detail").get_by_test_id("job-status")).to_have_text("failed")
    expect(page.get_by_test_id("checkpoints-empty")).to_have_text("This job saved no checkpoints.")
    assert page.js_errors == []


def test_api_outage_shows_banner_and_recovers(page, fake_api):
    fake_api.jobs["a"] = _job("a", "running", step=1)
    page.goto(f"{fake_api.origin}/")
    expect(row_for(page, "a")).to_be_visible()
    page.route(f"{fake_api.origin}/v1/**", lambda route: route.abort())
    expect(page.get_by_test_id("connection-error")).to_be_visible(timeout=6_000)
    expect(row_for(page, "a")).to_be_visible()  # the last known list stays
    page.unroute(f"{fake_api.origin}/v1/**")
    expect(page.get_by_test_id("connection-error")).to_be_hidden(timeout=6_000)


# ------------------------------------------------------- canned event stream --

HEADS = {"digit": {"target": "digit", "task": "classification", "metrics": ["accuracy"]},
         "parity": {"target": "parity", "task": "classification", "metrics": ["accuracy"]}}


def _status(status: str, attempt: int, **extra) -> tuple[str, dict]:
    return ("status", {"status": status, "attempt": attempt, "worker": "w1" if attempt else None, "error": None,
                       "failure_kind": None, "cancel_requested": False, **extra})


def _step_rows(steps, heads=(), loss=lambda s: 2.3 / s, per_epoch: int = 8, lr_groups: int = 2) -> tuple[str, dict]:
    rows = []
    for s in steps:
        epoch = (s - 1) // per_epoch + 1
        row = {"kind": "step", "epoch": epoch, "step": s}
        rows.append({**row, "name": "loss", "value": loss(s)})
        rows += [{**row, "name": f"{h}_loss", "value": loss(s) / (i + 2)} for i, h in enumerate(heads)]
        if lr_groups == 1:
            rows.append({**row, "name": "lr", "value": 0.05})
        else:
            rows += [{**row, "name": f"lr_{g}", "value": 0.1 / epoch / (g + 1)} for g in range(lr_groups)]
        if s > 1:
            rows.append({**row, "name": "samples_per_s", "value": 1000.0 + s})
    return ("metric", {"rows": rows})


def _log(attempt: int, *messages: str, level: str = "INFO") -> tuple[str, dict]:
    now = datetime.now(UTC).timestamp()
    return ("log", {"attempt": attempt, "lines": [{"time": now, "level": level, "logger": "worker.loop", "message": m}
                                                  for m in messages]})


def _live_job(job_id: str, status: str, *, step: int, event_seq: int, heads=None, **kw) -> dict:
    job = _job(job_id, status, step=step, **kw)
    job["plan"] = {"heads": heads or {"output": {"task": "classification", "metrics": ["accuracy"]}},
                   "steps_per_epoch": 8, "total_steps": 24}
    job["event_seq"] = event_seq
    job["attempt"] = 1
    return job


def _series(points: dict[str, list[tuple[int, int, float]]], kinds: dict[str, str]) -> dict:
    """A /metrics answer with ``series``: name -> [(step, epoch, value)]."""
    return {"series": {name: {"kind": kinds.get(name, "step"), "step": [p[0] for p in pts],
                              "epoch": [p[1] for p in pts], "value": [p[2] for p in pts]}
                       for name, pts in points.items()},
            "last_step": max((p[0] for pts in points.values() for p in pts), default=0)}


def _events_requests(fake_api) -> list[str]:
    return [u for u in fake_api.urls if "/events" in u]


def test_stream_updates_a_multi_task_job_in_place(page, fake_api):
    """Everything from the stream: per-head and learning-rate charts, tiles, checkpoints and
    the log grow in place; replays after a reconnect add nothing twice; a resumed attempt's
    steps replace the lost attempt's; after `end` the stream stays closed."""
    history = [_status("queued", 0), _status("running", 1), _log(1, "job m attempt 1 on w1 (cpu)"),
               _step_rows(range(1, 5), heads=HEADS),
               ("progress", {"epoch": 1, "epochs": 3, "step": 4, "total_steps": 24, "samples_per_s": 1234.5,
                             "eta_s": 42.0})]
    fake_api.jobs["m"] = _live_job("m", "running", step=4, event_seq=len(history), heads=HEADS)
    fake_api.events["m"] = list(history)
    page.goto(f"{fake_api.origin}/#/jobs/m")
    detail = page.get_by_test_id("job-detail")
    expect(detail.get_by_test_id("job-status")).to_have_text("running")
    expect(page.get_by_test_id("train-loss-path")).to_have_attribute("data-points", "4")
    heads = page.get_by_test_id("head-card")
    expect(heads).to_have_count(2)
    assert [c.get_attribute("data-head") for c in heads.all()] == ["digit", "parity"]
    for card in heads.all():
        expect(card.get_by_test_id("head-train-loss-path")).to_have_attribute("data-points", "4")
        assert drawn(card.get_by_test_id("head-train-loss-path")) == 4
    lr = page.get_by_test_id("lr-chart")
    expect(lr.get_by_test_id("lr-path-0")).to_have_attribute("data-points", "4")
    expect(lr.get_by_test_id("lr-path-1")).to_have_attribute("data-points", "4")
    expect(page.get_by_test_id("metric-train-loss")).to_have_text(f"{2.3 / 4:.4f}")
    expect(page.get_by_test_id("metric-epoch")).to_have_text("1 / 3")
    expect(page.get_by_test_id("metric-samples-per-s")).to_have_text("1,235")
    expect(page.get_by_test_id("metric-eta")).to_have_text(re.compile(r"^\d+s$"))
    expect(page.get_by_test_id("metric-lr")).to_have_text("0.1")

    # The fake ends each response, so the browser reconnects and gets the history again:
    # nothing may show twice.
    deadline = datetime.now(UTC) + timedelta(seconds=5)
    while len(_events_requests(fake_api)) < 3 and datetime.now(UTC) < deadline:
        page.wait_for_timeout(100)
    assert len(_events_requests(fake_api)) >= 3, fake_api.urls
    expect(page.get_by_test_id("log-line")).to_have_count(1)
    expect(page.get_by_test_id("train-loss-path")).to_have_attribute("data-points", "4")

    # The first epoch ends: steps, epoch metrics, a checkpoint and a long log arrive.
    epoch_rows = [{"kind": "epoch", "name": n, "epoch": 1, "step": 8, "value": v} for n, v in [
        ("train_loss", 0.4), ("val_loss", 0.5), ("val_digit_loss", 0.3), ("val_parity_loss", 0.2),
        ("val_digit_accuracy", 0.8), ("val_parity_accuracy", 0.9)]]
    c1 = {"id": "c1", "epoch": 1, "step": 8, "size_bytes": 9000, "download_url": "/v1/jobs/m/checkpoints/c1/download"}
    fake_api.checkpoints["m"] = [{**c1, "created_at": "2026-12-01T10:00:00Z", "latest": True, "best": True}]
    fake_api.events["m"] += [
        _step_rows(range(5, 9), heads=HEADS), ("metric", {"rows": epoch_rows}),
        ("checkpoint", c1),
        _log(1, *[f"line {i}" for i in range(60)]),
    ]
    expect(page.get_by_test_id("train-loss-path")).to_have_attribute("data-points", "8")
    assert drawn(page.get_by_test_id("val-loss-path")) == 1
    for card in heads.all():
        expect(card.get_by_test_id("head-val-loss-path")).to_have_attribute("data-points", "1")
    acc = page.get_by_test_id("accuracy-chart")
    expect(acc.get_by_test_id("val-accuracy-path-digit")).to_have_attribute("data-points", "1")
    expect(acc.get_by_test_id("val-accuracy-path-parity")).to_have_attribute("data-points", "1")
    expect(page.get_by_test_id("metric-val-accuracy")).to_have_text("80.00%")
    expect(page.get_by_test_id("checkpoint-link")).to_have_count(1)
    expect(page.get_by_test_id("checkpoint-link")).to_have_attribute("href", "/v1/jobs/m/checkpoints/c1/download")
    expect(page.get_by_test_id("log-line")).to_have_count(61)

    # The log follows its end, until the user scrolls up.
    box = page.get_by_test_id("log-panel")
    assert box.evaluate("b => b.scrollHeight - b.scrollTop - b.clientHeight") < 30
    box.evaluate("b => { b.scrollTop = 0; b.dispatchEvent(new Event('scroll')); }")
    fake_api.events["m"].append(_log(1, "Traceback (most recent call last):\n  File \"x.py\", line 1\nValueError: y"))
    expect(page.get_by_test_id("log-line")).to_have_count(62)
    expect(page.get_by_test_id("log-follow")).to_be_visible()
    assert box.evaluate("b => b.scrollTop") == 0
    page.get_by_test_id("log-follow").click()
    assert box.evaluate("b => b.scrollHeight - b.scrollTop - b.clientHeight") < 30
    expect(page.get_by_test_id("log-line").last.locator("pre")).to_have_text(
        "Traceback (most recent call last):\n  File \"x.py\", line 1\nValueError: y")

    # The worker was lost after step 8; attempt 2 resumes from step 6 and writes steps 7 and 8 again.
    fake_api.events["m"] += [_status("queued", 1), _status("running", 2), _log(2, "resumed at step 6"),
                             _step_rows([7, 8], heads=HEADS, loss=lambda s: 0.125)]
    expect(page.get_by_test_id("metric-train-loss")).to_have_text("0.1250")
    expect(page.get_by_test_id("train-loss-path")).to_have_attribute("data-points", "8")
    expect(page.get_by_test_id("log-attempt")).to_have_text(["Attempt 2"])
    expect(page.get_by_test_id("time-attempt")).to_have_text("2 · w1")

    # Done: the stream ends and is not opened again.
    fake_api.events["m"] += [_status("succeeded", 2), ("end", {"status": "succeeded"})]
    done = _live_job("m", "succeeded", step=24, event_seq=sum(k != "end" for k, _ in fake_api.events["m"]),
                     heads=HEADS)
    done["metrics"] = {"train_loss": 0.11, "val_loss": 0.2, "val_digit_accuracy": 0.95}
    fake_api.jobs["m"] = done
    expect(detail.get_by_test_id("job-status")).to_have_text("succeeded")
    expect(detail).to_have_attribute("data-feed", "ended")
    expect(page.get_by_test_id("metric-train-loss")).to_have_text("0.1100")
    expect(page.get_by_test_id("metric-val-accuracy")).to_have_text("95.00%")
    expect(page.get_by_test_id("metric-eta")).to_have_text("Done")
    expect(page.get_by_test_id("cancel-job")).to_be_hidden()
    asked = len(_events_requests(fake_api))
    page.wait_for_timeout(1500)
    assert len(_events_requests(fake_api)) == asked, "the stream was opened again after its end"
    assert not [u for u in fake_api.urls if "after_step" in u], "the page polled although the stream worked"
    assert page.js_errors == []


def test_series_answer_seeds_the_charts_and_the_stream_starts_after_it(page, fake_api):
    """With `series` in /metrics, the page draws it and asks the stream only for what came
    after the job's event_seq; the log comes from /logs."""
    fake_api.jobs["s"] = _live_job("s", "running", step=6, event_seq=10)
    fake_api.metrics["s"] = _series({
        "loss": [(s, 1, 2.3 / s) for s in range(1, 7)],
        "lr": [(s, 1, 0.05) for s in range(1, 7)],
        "val_loss": [(8, 1, 0.7)], "val_accuracy": [(8, 1, 0.6)],
    }, kinds={"val_loss": "epoch", "val_accuracy": "epoch"})
    fake_api.logs["s"] = [{"seq": 9, "attempt": 1, "time": 1.7e9, "level": "INFO", "logger": "worker",
                           "message": "hello"}]
    # events 1..10 are what /metrics and /logs already said; a replay of them would show twice
    fake_api.events["s"] = [_status("running", 1)] * 8 + [_log(1, "hello"), _step_rows(range(1, 7), lr_groups=1)]
    fake_api.events["s"] += [_step_rows(range(7, 10), lr_groups=1)]
    page.goto(f"{fake_api.origin}/#/jobs/s")
    expect(page.get_by_test_id("train-loss-path")).to_have_attribute("data-points", "9")
    assert _events_requests(fake_api)[0].endswith("/events?after=10"), fake_api.urls
    expect(page.get_by_test_id("lr-chart").get_by_test_id("lr-path")).to_have_attribute("data-points", "9")
    expect(page.get_by_test_id("val-accuracy-path")).to_have_attribute("data-points", "1")
    expect(page.get_by_test_id("log-line")).to_have_count(1)
    page.wait_for_timeout(800)  # a reconnect or two
    expect(page.get_by_test_id("log-line")).to_have_count(1)
    expect(page.get_by_test_id("train-loss-path")).to_have_attribute("data-points", "9")

    # Leaving the page closes its stream (this fake's would reconnect every 300 ms). Left for a
    # page that streams nothing: the runs table follows running jobs with streams of its own.
    page.evaluate("location.hash = '#/compare'")
    expect(page.get_by_test_id("compare-message")).to_be_visible()
    page.wait_for_timeout(400)
    asked = len(_events_requests(fake_api))
    page.wait_for_timeout(1500)
    assert len(_events_requests(fake_api)) == asked, "the job's stream stayed open after leaving its page"
    assert page.js_errors == []


def test_fallback_polls_only_what_is_new(page, fake_api):
    """A stream that keeps failing: the page polls /metrics?after_step= and /logs?after= every
    2 s, appends, and stops once the job is terminal."""
    fake_api.jobs["p"] = _live_job("p", "running", step=5, event_seq=7)
    points = {"loss": [(s, 1, 2.3 / s) for s in range(1, 6)], "lr": [(s, 1, 0.05) for s in range(1, 6)]}
    fake_api.metrics["p"] = _series(points, {})
    fake_api.logs["p"] = [{"seq": 3, "attempt": 1, "time": 1.7e9, "level": "INFO", "logger": "w", "message": "a"}]
    page.goto(f"{fake_api.origin}/#/jobs/p")
    detail = page.get_by_test_id("job-detail")
    expect(detail).to_have_attribute("data-feed", "polling", timeout=6_000)
    expect(page.get_by_test_id("train-loss-path")).to_have_attribute("data-points", "5")

    points["loss"] += [(s, 1, 2.3 / s) for s in range(6, 11)]
    points["lr"] += [(s, 1, 0.05) for s in range(6, 11)]
    fake_api.metrics["p"] = _series(points, {})
    fake_api.logs["p"].append({"seq": 8, "attempt": 1, "time": 1.7e9, "level": "ERROR", "logger": "w",
                               "message": "Traceback (most recent call last):\nFloatingPointError: nan"})
    expect(page.get_by_test_id("train-loss-path")).to_have_attribute("data-points", "10", timeout=6_000)
    expect(page.get_by_test_id("log-line")).to_have_count(2, timeout=6_000)
    assert any("/metrics?after_step=4" in u for u in fake_api.urls), fake_api.urls
    assert any("/logs?after=3" in u for u in fake_api.urls), fake_api.urls
    expect(page.get_by_test_id("log-panel")).to_contain_text("FloatingPointError: nan")

    fake_api.jobs["p"] = _live_job("p", "failed", step=10, event_seq=9, error="FloatingPointError: nan")
    expect(detail.get_by_test_id("job-status")).to_have_text("failed", timeout=6_000)
    expect(detail).to_have_attribute("data-feed", "ended")
    expect(page.get_by_test_id("job-error")).to_contain_text("FloatingPointError: nan")
    expect(page.get_by_test_id("live-indicator")).to_have_attribute("data-state", "idle")
    asked = len(fake_api.requests)
    page.wait_for_timeout(3000)
    assert len(fake_api.requests) == asked, fake_api.requests[asked:]
    assert page.js_errors == []
