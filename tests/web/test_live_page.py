"""The job page live from the event stream, against the real service (``stack``: uvicorn, a
Celery worker, Redis over SQLite): the loss curve grows while the job trains and the tiles
show live numbers, the learning-rate chart has the schedule's points, and a job that fails
at run time shows its traceback in the log panel. Screenshots of both pages land in /tmp."""
from __future__ import annotations

import re
import time

import pytest

from tests.e2e.helpers import digits, post_dataset

pytestmark = pytest.mark.web

RUNNING_SHOT = "/tmp/dashboard-job-running.png"
FAILED_SHOT = "/tmp/dashboard-job-failed.png"
TERMINAL = ("succeeded", "failed", "cancelled")
JOB_TIMEOUT_MS = 180_000  # the embedded worker runs one job at a time; others may be ahead
# wide enough that 30 epochs of the digits take seconds, not a fraction of one
WIDE_MLP = {"layers": [
    {"type": "Flatten"},
    {"type": "Linear", "in_features": 64, "out_features": 512}, {"type": "ReLU"},
    {"type": "Linear", "in_features": 512, "out_features": 512}, {"type": "ReLU"},
    {"type": "Linear", "in_features": 512, "out_features": 10},
]}
NUMBER = re.compile(r"^-?[\d.,]+(e[+-]?\d+)?(k|M)?$")
LIVE_TILES = ("metric-train-loss", "metric-epoch", "metric-samples-per-s", "metric-eta", "metric-lr")
SNAPSHOT_JS = """(tiles) => ({
  points: Number(document.querySelector('[data-testid="train-loss-path"]')?.getAttribute('data-points') || 0),
  feed: document.querySelector('[data-testid="job-detail"]')?.getAttribute('data-feed'),
  tiles: Object.fromEntries(tiles.map((t) => [t, document.querySelector(`[data-testid="${t}"]`)?.textContent])),
})"""


def expect(*args, **kwargs):
    from playwright.sync_api import expect as _expect

    return _expect(*args, **kwargs)


@pytest.fixture(scope="module")
def digits_id(api):
    x, y = digits()
    return post_dataset(api, x, y, name="digits-live-page")["id"]


def _submit(api, dataset_id: str, name: str, training: dict, model=None) -> dict:
    resp = api.post("/v1/jobs", json={"name": name, "dataset_id": dataset_id, "model": model or WIDE_MLP,
                                      "training": {"batch_size": 32, "seed": 0, "validation_split": 0.2, **training}})
    assert resp.status_code == 202, resp.text
    return resp.json()


def _status(api, job_id: str) -> str:
    return api.get(f"/v1/jobs/{job_id}").json()["status"]


def _tile_numbers(tiles: dict) -> bool:
    """Every live tile shows a number: '0.2363', '2 / 30', '4,099', '47s', '1m 9s', '1.00e-3'."""
    return (bool(NUMBER.match(tiles["metric-train-loss"] or ""))
            and bool(re.match(r"^\d+ / \d+$", tiles["metric-epoch"] or ""))
            and bool(NUMBER.match(tiles["metric-samples-per-s"] or ""))
            and bool(re.match(r"^(\d+h )?(\d+m )?[\d.]+s$|^\d+h \d+m$", tiles["metric-eta"] or ""))
            and bool(NUMBER.match(tiles["metric-lr"] or "")))


def test_loss_curve_grows_while_the_job_runs(stack, api, digits_id, page):
    job = _submit(api, digits_id, "live-page-growing", {
        "epochs": 30, "optimizer": {"type": "Adam", "lr": 0.001},
        "scheduler": {"type": "StepLR", "step_size": 10, "gamma": 0.5}})
    job_id = job["id"]
    page.goto(f"{stack.base_url}/#/jobs/{job_id}")
    expect(page.get_by_test_id("job-detail")).to_have_attribute("data-job-id", job_id)

    # Each count below was read before the API still said the job runs: the page grew by itself.
    counts: list[int] = []
    live_tiles = None
    shot = False
    deadline = time.monotonic() + JOB_TIMEOUT_MS / 1000
    while time.monotonic() < deadline:
        snap = page.evaluate(SNAPSHOT_JS, list(LIVE_TILES))
        status = _status(api, job_id)
        if status in TERMINAL:
            break
        if status == "running":
            if not counts or snap["points"] > counts[-1]:
                counts.append(snap["points"])
            if live_tiles is None and snap["points"] > 0 and _tile_numbers(snap["tiles"]):
                live_tiles = snap["tiles"]
            if not shot and snap["points"] >= 100:
                page.mouse.move(0, 0)
                page.screenshot(path=RUNNING_SHOT, full_page=True)
                shot = True
            if len(counts) >= 4 and live_tiles and shot:
                break
        page.wait_for_timeout(150)
    assert len(counts) >= 3, (f"the loss curve grew {len(counts) - 1} times while the job ran (counts {counts}, "
                              f"status {_status(api, job_id)}); it should grow at least twice")
    assert counts == sorted(set(counts))
    assert live_tiles is not None, f"the live tiles never all showed numbers while the job ran: {snap['tiles']}"
    assert snap["feed"] in ("live", "reconnecting"), f"the page followed the job by {snap['feed']}, not the stream"

    # To the end: every step's loss and learning rate, the schedule's last rate, final tiles.
    badge = page.get_by_test_id("job-detail").get_by_test_id("job-status")
    expect(badge).to_have_text(re.compile("^(succeeded|failed|cancelled)$"), timeout=JOB_TIMEOUT_MS)
    final = api.get(f"/v1/jobs/{job_id}").json()
    assert final["status"] == "succeeded", final["error"]
    total = final["progress"]["total_steps"]
    expect(page.get_by_test_id("train-loss-path")).to_have_attribute("data-points", str(total))
    lr_path = page.get_by_test_id("lr-chart").get_by_test_id("lr-path")
    expect(lr_path).to_have_attribute("data-points", str(total))
    drawn = page.get_by_test_id("lr-chart").evaluate("el => el.chart.drawnValues('lr-path')")
    assert len(drawn) == total
    assert len(set(drawn)) == 3, "StepLR's three rates are not three levels"
    expect(page.get_by_test_id("metric-lr")).to_have_text("2.50e-4")
    expect(page.get_by_test_id("metric-val-accuracy")).to_have_text(f"{final['metrics']['val_accuracy'] * 100:.2f}%")
    expect(page.get_by_test_id("metric-train-loss-sub")).to_have_text("final")
    expect(page.get_by_test_id("metric-eta")).to_have_text("Done")
    expect(page.get_by_test_id("metric-epoch")).to_have_text("30 / 30")
    expect(page.get_by_test_id("val-loss-path")).to_have_attribute("data-points", "30")
    kept = api.get(f"/v1/jobs/{job_id}/checkpoints").json()["items"]
    expect(page.get_by_test_id("checkpoint-link")).to_have_count(len(kept))  # retention pruned the others
    expect(page.get_by_test_id("checkpoint-latest")).to_have_count(1)
    expect(page.get_by_test_id("checkpoint-best")).to_have_count(1)
    expect(page.get_by_test_id("time-estimate")).to_contain_text("on a CPU worker")  # estimate vs actual
    expect(page.get_by_test_id("time-took")).not_to_have_text("—")
    expect(page.get_by_test_id("job-detail")).to_have_attribute("data-feed", "ended")
    expect(page.get_by_test_id("live-indicator")).to_have_attribute("data-state", "idle")
    assert page.js_errors == []


def test_a_failed_job_shows_its_traceback_in_the_log(stack, api, digits_id, page):
    # a learning rate of 1e38 overflows the weights on the first step: the loss is NaN next
    job = _submit(api, digits_id, "live-page-overflow", {"epochs": 3, "optimizer": {"type": "SGD", "lr": 1e38}})
    page.goto(f"{stack.base_url}/#/jobs/{job['id']}")
    badge = page.get_by_test_id("job-detail").get_by_test_id("job-status")
    expect(badge).to_have_text(re.compile("^(succeeded|failed|cancelled)$"), timeout=JOB_TIMEOUT_MS)
    final = api.get(f"/v1/jobs/{job['id']}").json()
    assert final["status"] == "failed" and "FloatingPointError" in final["error"], final
    expect(badge).to_have_text("failed")
    expect(page.get_by_test_id("job-error")).to_contain_text("FloatingPointError")

    log = page.get_by_test_id("log-panel")
    expect(log).to_contain_text("Traceback (most recent call last)")
    expect(log).to_contain_text("FloatingPointError")
    error_line = log.locator('[data-testid="log-line"][data-level="ERROR"]')
    expect(error_line).to_have_count(1)
    message = error_line.locator("pre")
    text = message.text_content()
    assert text.count("\n") >= 3 and "Traceback (most recent call last):" in text, text  # the traceback as printed
    assert message.evaluate("el => getComputedStyle(el).whiteSpace") == "pre-wrap"
    expect(error_line).to_contain_text(re.compile(r"\d\d:\d\d:\d\d\.\d{3}"))  # its time
    expect(error_line).to_contain_text("ERROR")
    expect(page.get_by_test_id("metric-eta")).to_have_text("—")
    expect(page.get_by_test_id("metric-eta-sub")).to_have_text("failed")
    expect(page.get_by_test_id("lr-chart").get_by_test_id("lr-path")).to_have_attribute("data-points", "1")
    page.mouse.move(0, 0)
    page.screenshot(path=FAILED_SHOT, full_page=True)
    page.get_by_test_id("show-traceback").click()
    expect(log).to_be_in_viewport()
    assert page.js_errors == []
