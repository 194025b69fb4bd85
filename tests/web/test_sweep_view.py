"""The sweep view against the real service (``stack``: uvicorn, a Celery worker, Redis over
SQLite): a grid over learning rate x batch size with ASHA early termination, followed live
to its end; best trial, trials table, parallel coordinates and the rungs as the API has them."""
from __future__ import annotations

import re
import time

import pytest

from tests.e2e.helpers import MLP_SPEC, digits, post_dataset
from tests.web.shots import shoot

pytestmark = pytest.mark.web

LRS = [0.3, 0.03, 0.003]  # best first: ASHA stops later, worse trials at the first rung
BATCHES = [16, 64]


def expect(*args, **kwargs):
    from playwright.sync_api import expect as _expect

    return _expect(*args, **kwargs)


@pytest.fixture(scope="module")
def sweep(api):
    x, y = digits(400)
    ds = post_dataset(api, x, y, name="digits-sweep-view")["id"]
    r = api.post("/v1/sweeps", json={
        "name": "lr-x-batch", "method": "grid", "metric": {"name": "val_accuracy", "goal": "maximize"},
        "base": {"name": "trial", "dataset_id": ds, "model": MLP_SPEC,
                 "training": {"epochs": 4, "batch_size": 32, "optimizer": {"type": "SGD", "lr": 0.1},
                              "seed": 3, "validation_split": 0.25}},
        "parameters": {"training.optimizer.lr": {"values": LRS}, "training.batch_size": {"values": BATCHES}},
        "early_terminate": {"type": "hyperband", "min_iter": 1, "eta": 2}})
    assert r.status_code == 201, r.text
    return r.json()


def _wait(api, sweep_id, timeout=400):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        s = api.get(f"/v1/sweeps/{sweep_id}").json()
        if s["status"] not in ("queued", "running", "pending"):
            return s
        time.sleep(0.5)
    raise TimeoutError(f"sweep {sweep_id} still {s['status']}")


def test_a_sweep_followed_to_its_end(stack, api, sweep, page):
    page.goto(f"{stack.base_url}/#/sweeps/{sweep['id']}")
    view = page.get_by_test_id("sweep-view")
    expect(view).to_have_attribute("data-sweep-id", sweep["id"])
    expect(view.get_by_test_id("sweep-name")).to_have_text("lr-x-batch")
    page.evaluate("window.__noReload = true")
    done = _wait(api, sweep["id"])
    assert done["status"] == "finished", done
    expect(view.get_by_test_id("sweep-status")).to_have_text("finished", timeout=15_000)
    assert page.evaluate("window.__noReload") is True

    # best trial and the trials table, as the API has them
    best = done["best"]
    expect(view.get_by_test_id("best-metric")).to_have_text(f"{best['metric'] * 100:.2f}%")
    expect(view.get_by_test_id("best-link")).to_have_attribute("href", f"#/jobs/{best['job_id']}")
    rows = view.get_by_test_id("trial-row")
    expect(rows).to_have_count(len(LRS) * len(BATCHES))
    expect(rows.first).to_have_attribute("data-trial", str(best["index"]))  # best first
    for t in done["trials"]:
        row = view.locator(f'[data-testid="trial-row"][data-trial="{t["index"]}"]')
        expect(row.get_by_test_id("trial-metric")).to_have_text(f"{t['metric'] * 100:.2f}%")
        expect(row.get_by_test_id("trial-status")).to_have_text(t["status"])

    # parallel coordinates: an axis per parameter and one for the metric, a line per trial
    plot = view.get_by_test_id("parcoords")
    expect(plot).to_have_attribute("data-axes", "3")
    expect(plot).to_have_attribute("data-lines", str(len(done["trials"])))
    assert plot.evaluate("el => el.plot.axes.map((a) => a.scale.kind)") == ["log", "linear", "linear"]
    # hovering the best trial's line names it; clicking it opens its job
    i = next(k for k, t in enumerate(done["trials"]) if t["index"] == best["index"])
    x, y = plot.evaluate(f"""el => {{
        const p = el.plot.points(el.plot.items[{i}]);
        return [p[0][0] + (p[1][0] - p[0][0]) / 4, p[0][1] + (p[1][1] - p[0][1]) / 4];
    }}""")
    box = plot.locator("canvas").bounding_box()
    page.mouse.move(box["x"] + x, box["y"] + y)
    expect(page.locator("#tooltip")).to_contain_text(f"trial {best['index']} ")

    # the ASHA rungs: each trial's rungs with whether it went on, as the API says
    stopped = [t for t in done["trials"] if t["stopped_early"]]
    assert stopped, "ASHA stopped no trial: the sweep did not exercise the rungs"
    rung_rows = view.get_by_test_id("rung-row")
    expect(rung_rows).to_have_count(sum(1 for t in done["trials"] if t["rungs"]))
    for t in done["trials"]:
        row = view.locator(f'[data-testid="rung-row"][data-trial="{t["index"]}"]')
        expect(row).to_have_attribute("data-stopped", "true" if t["stopped_early"] else "false")
        cells = row.get_by_test_id("rung-cell")
        expect(cells).to_have_count(len(t["rungs"]))
        for rung in t["rungs"]:
            cell = row.locator(f'[data-testid="rung-cell"][data-epoch="{rung["epoch"]}"]')
            expect(cell).to_have_attribute("data-continued", "true" if rung["continued"] else "false")
    page.mouse.move(0, 0)
    shoot(page, "sweep")

    page.mouse.move(box["x"] + x, box["y"] + y)
    page.mouse.click(box["x"] + x, box["y"] + y)
    expect(page).to_have_url(re.compile(rf"#/jobs/{best['job_id']}$"))
    assert page.js_errors == []


def test_the_runs_table_filters_by_sweep_and_links_to_it(stack, api, sweep, page):
    done = _wait(api, sweep["id"])
    page.goto(f"{stack.base_url}/#/?sweep_id={sweep['id']}")
    rows = page.get_by_test_id("job-row")
    expect(rows).to_have_count(len(done["trials"]))
    assert {r.get_attribute("data-job-id") for r in rows.all()} == {t["job_id"] for t in done["trials"]}
    rows.first.get_by_test_id("sweep-link").click()
    expect(page.get_by_test_id("sweep-view")).to_have_attribute("data-sweep-id", sweep["id"])
    assert page.js_errors == []
