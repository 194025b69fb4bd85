"""The runs table (#/) against the real service (``stack``: uvicorn, a Celery worker, Redis over
SQLite): server-side search and filters, sorting by a final metric, config columns, keyboard
opening, live status from the stream, bulk tag and delete behind a confirmation."""
from __future__ import annotations

import re

import pytest

from tests.e2e.helpers import MLP_SPEC, digits, post_dataset, wait_for_job
from tests.web.shots import shoot

pytestmark = pytest.mark.web


def expect(*args, **kwargs):
    from playwright.sync_api import expect as _expect

    return _expect(*args, **kwargs)


@pytest.fixture(scope="module")
def dataset_id(api):
    x, y = digits(300)
    return post_dataset(api, x, y, name="digits-runs-table")["id"]


# wide enough that 20 epochs of 300 digits take seconds: the table sees the job run
WIDE_MLP = {"layers": [
    {"type": "Flatten"},
    {"type": "Linear", "in_features": 64, "out_features": 512}, {"type": "ReLU"},
    {"type": "Linear", "in_features": 512, "out_features": 512}, {"type": "ReLU"},
    {"type": "Linear", "in_features": 512, "out_features": 10},
]}


def _submit(api, dataset_id, name, lr, batch_size=32, epochs=2, model=MLP_SPEC):
    r = api.post("/v1/jobs", json={
        "name": name, "dataset_id": dataset_id, "model": model,
        "training": {"epochs": epochs, "batch_size": batch_size, "optimizer": {"type": "SGD", "lr": lr},
                     "seed": 0, "validation_split": 0.2}})
    assert r.status_code == 202, r.text
    return r.json()


@pytest.fixture(scope="module")
def finished(api, dataset_id):
    """Three finished runs named tbl-*, with different learning rates and batch sizes."""
    jobs = [_submit(api, dataset_id, f"tbl-{n}", lr, bs) for n, lr, bs in
            (("alpha", 0.001, 16), ("beta", 0.05, 32), ("gamma", 0.2, 64))]
    out = []
    for j in jobs:
        job, _ = wait_for_job(api, j["id"], timeout=300)
        assert job["status"] == "succeeded", job["error"]
        out.append(job)
    return out


def _rows(page):
    return page.get_by_test_id("job-row")


def _row(page, job_id):
    return page.locator(f'[data-testid="job-row"][data-job-id="{job_id}"]')


def _names(page) -> list[str]:
    return [n.strip() for n in page.get_by_test_id("job-name").all_inner_texts()]


def test_search_filter_sort_and_config_columns(stack, api, finished, page):
    page.goto(f"{stack.base_url}/")
    view = page.get_by_test_id("job-list-view")
    expect(view).to_be_visible()
    page.get_by_test_id("run-search").fill("tbl-")
    page.get_by_test_id("run-search").press("Enter")
    expect(_rows(page)).to_have_count(3)
    expect(page).to_have_url(re.compile(r"#/\?q=tbl-$"))

    # sort by the final val_loss, both ways: the order the API's own metrics give
    by_loss = sorted(finished, key=lambda j: j["metrics"]["val_loss"])
    page.get_by_test_id("sort-metric:val_loss").click()  # descending first
    expect(page.get_by_test_id("job-name").first).to_have_text(by_loss[-1]["name"])
    assert _names(page) == [j["name"] for j in reversed(by_loss)]
    page.get_by_test_id("sort-metric:val_loss").click()
    expect(page.get_by_test_id("job-name").first).to_have_text(by_loss[0]["name"])
    assert _names(page) == [j["name"] for j in by_loss]
    expect(page).to_have_url(re.compile(r"sort=metric%3Aval_loss"))

    # the default config columns show each run's lr and batch size
    for j in finished:
        row = _row(page, j["id"])
        expect(row.get_by_test_id("job-training-optimizer-lr")).to_have_text(str(j["training"]["optimizer"]["lr"]))
        expect(row.get_by_test_id("job-training-batch-size")).to_have_text(str(j["training"]["batch_size"]))
        expect(row.get_by_test_id("job-val-accuracy")).to_have_text(f"{j['metrics']['val_accuracy'] * 100:.1f}%")
    # the chooser adds a column for any config path, e.g. the epochs
    page.get_by_test_id("column-chooser").locator("summary").click()
    page.locator('input[data-column="cfg:training.epochs"]').check()
    expect(_row(page, finished[0]["id"]).get_by_test_id("job-training-epochs")).to_have_text("2")
    page.keyboard.press("Escape")  # closes the chooser
    expect(page.get_by_test_id("column-list")).to_be_hidden()

    # a filter the server applies: only the succeeded; a status none has: the no-match state
    page.get_by_test_id("filter-status").select_option("succeeded")
    expect(_rows(page)).to_have_count(3)
    page.get_by_test_id("filter-status").select_option("failed")
    expect(page.get_by_test_id("no-match")).to_be_visible()
    expect(_rows(page)).to_have_count(0)
    page.get_by_test_id("filter-status").select_option("")
    page.get_by_test_id("filter-dataset").select_option(finished[0]["dataset_id"])
    expect(_rows(page)).to_have_count(3)

    # keyboard: Tab reaches the rows; Space selects, Enter opens
    row = _row(page, by_loss[0]["id"])
    row.focus()
    page.keyboard.press("Space")
    expect(row.get_by_test_id("row-select")).to_be_checked()
    expect(page.get_by_test_id("selected-count")).to_have_text("1 selected")
    shoot(page, "runs")
    page.keyboard.press("Enter")
    expect(page).to_have_url(re.compile(rf"#/jobs/{by_loss[0]['id']}$"))
    expect(page.get_by_test_id("job-detail")).to_have_attribute("data-job-id", by_loss[0]["id"])
    assert page.js_errors == []


def test_live_status_comes_from_the_stream(stack, api, dataset_id, page):
    streams: list[str] = []
    page.on("request", lambda req: streams.append(req.url) if "/events" in req.url else None)
    page.goto(f"{stack.base_url}/#/?q=runs-live")
    expect(page.get_by_test_id("job-list-view")).to_be_visible()
    page.evaluate("window.__noReload = true")
    # 150 epochs: still running when its row appears, even on an idle machine
    job = _submit(api, dataset_id, "runs-live", 0.05, batch_size=16, epochs=150, model=WIDE_MLP)
    row = _row(page, job["id"])
    expect(row).to_be_visible(timeout=10_000)
    badge = row.get_by_test_id("job-status")
    expect(badge).to_have_text("succeeded", timeout=180_000)
    final = api.get(f"/v1/jobs/{job['id']}").json()
    assert final["status"] == "succeeded"
    total = final["progress"]["total_steps"]
    expect(row.get_by_test_id("job-progress")).to_contain_text(f"Epoch 150/150 · Step {total:,}")
    expect(row.get_by_test_id("job-val-accuracy")).to_have_text(f"{final['metrics']['val_accuracy'] * 100:.1f}%")
    assert any(f"/v1/jobs/{job['id']}/events" in u for u in streams), streams
    assert page.evaluate("window.__noReload") is True
    assert page.js_errors == []


def test_bulk_tag_then_delete_with_confirmation(stack, api, finished, page):
    page.goto(f"{stack.base_url}/#/?q=tbl-")
    expect(_rows(page)).to_have_count(3)
    two = finished[:2]
    for j in two:
        _row(page, j["id"]).get_by_test_id("row-select").check()
    expect(page.get_by_test_id("bulk-bar")).to_be_visible()
    expect(page.get_by_test_id("selected-count")).to_have_text("2 selected")

    # tag: a dialog asks for the tag; both rows and the API have it
    page.get_by_test_id("bulk-tag").click()
    dialog = page.get_by_test_id("dialog")
    expect(dialog).to_be_visible()
    dialog.get_by_test_id("dialog-input").fill("baseline")
    dialog.get_by_test_id("dialog-confirm").click()
    for j in two:
        expect(_row(page, j["id"]).get_by_test_id("job-tag")).to_have_text("baseline")
        assert "baseline" in api.get(f"/v1/jobs/{j['id']}").json()["tags"]
    assert "baseline" not in api.get(f"/v1/jobs/{finished[2]['id']}").json()["tags"]
    # the tag filters the table through the server
    _row(page, two[0]["id"]).get_by_test_id("job-tag").click()
    expect(page).to_have_url(re.compile(r"tag=baseline"))
    expect(_rows(page)).to_have_count(2)

    # delete one: cancelling the dialog deletes nothing; confirming deletes it here and in the API
    page.goto(f"{stack.base_url}/#/?q=tbl-")
    victim = finished[2]
    _row(page, victim["id"]).get_by_test_id("row-select").check()
    page.get_by_test_id("bulk-delete").click()
    expect(page.get_by_test_id("dialog")).to_contain_text("Delete 1 run?")
    page.get_by_test_id("dialog-cancel").click()
    expect(page.get_by_test_id("dialog")).to_have_count(0)
    assert api.get(f"/v1/jobs/{victim['id']}").status_code == 200
    page.get_by_test_id("bulk-delete").click()
    page.get_by_test_id("dialog-confirm").click()
    expect(_row(page, victim["id"])).to_have_count(0)
    assert api.get(f"/v1/jobs/{victim['id']}").status_code == 404
    expect(_rows(page)).to_have_count(2)
    page.reload()
    expect(_rows(page)).to_have_count(2)
    assert page.js_errors == []


def test_cursor_pagination_loads_the_next_page(stack, api, dataset_id, page):
    """More runs than a page: 'Load more' follows the API's next_cursor, none twice."""
    # queued jobs are enough: the page size is what matters (cancel them at once)
    made = []
    for i in range(55):
        j = _submit(api, dataset_id, f"tbl-page-{i:02d}", 0.01, epochs=1)
        api.post(f"/v1/jobs/{j['id']}/cancel")
        made.append(j["id"])
    page.goto(f"{stack.base_url}/#/?q=tbl-page-")
    expect(_rows(page)).to_have_count(50)
    expect(page.get_by_test_id("job-count")).to_have_text("50+ jobs")
    page.get_by_test_id("load-more").click()
    expect(_rows(page)).to_have_count(55)
    expect(page.get_by_test_id("load-more")).to_be_hidden()
    ids = [r.get_attribute("data-job-id") for r in _rows(page).all()]
    assert sorted(ids) == sorted(made) and len(set(ids)) == 55
    assert page.js_errors == []
