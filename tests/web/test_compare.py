"""The compare view against the real service (``stack``: uvicorn, a Celery worker, Redis over
SQLite) with runs it trained: three runs that differ only in the learning rate, picked in the
runs table; and four runs over two learning rates x two seeds grouped by seed."""
from __future__ import annotations

import re

import httpx
import pytest

from tests.e2e.helpers import MLP_SPEC, digits, post_dataset, wait_for_job
from tests.web.shots import shoot

pytestmark = pytest.mark.web

LRS = (0.01, 0.03, 0.1)


def expect(*args, **kwargs):
    from playwright.sync_api import expect as _expect

    return _expect(*args, **kwargs)


@pytest.fixture(scope="module")
def runs(api):
    """{(lr, seed): job} for the seed-0 runs of every lr and the seed-1 runs of the first two."""
    x, y = digits(400)
    dataset = post_dataset(api, x, y, name="digits-compare")["id"]
    wanted = [(lr, 0) for lr in LRS] + [(lr, 1) for lr in LRS[:2]]
    jobs = {}
    for lr, seed in wanted:
        r = api.post("/v1/jobs", json={
            "name": f"cmp-lr{lr}-s{seed}", "dataset_id": dataset, "model": MLP_SPEC,
            "training": {"epochs": 3, "batch_size": 32, "optimizer": {"type": "SGD", "lr": lr},
                         "seed": seed, "validation_split": 0.25}})
        assert r.status_code == 202, r.text
        jobs[(lr, seed)] = r.json()["id"]
    for key, job_id in jobs.items():
        job, _ = wait_for_job(api, job_id, timeout=300)
        assert job["status"] == "succeeded", job["error"]
        jobs[key] = job
    return jobs


def _row(page, job_id):
    return page.locator(f'[data-testid="job-row"][data-job-id="{job_id}"]')


def test_three_runs_from_the_table_overlay_and_the_diff_names_the_lr(stack, runs, page):
    three = [runs[(lr, 0)] for lr in LRS]
    page.goto(f"{stack.base_url}/#/?q=cmp-lr")
    for job in three:
        _row(page, job["id"]).get_by_test_id("row-select").check()
    expect(page.get_by_test_id("selected-count")).to_have_text("3 selected")
    page.get_by_test_id("bulk-compare").click()
    expect(page).to_have_url(re.compile(r"#/compare\?ids="))
    view = page.get_by_test_id("compare-view")
    expect(view.get_by_test_id("compare-run")).to_have_count(3)

    # the config diff: exactly the one key that differs, each run's value under it
    diff = view.get_by_test_id("config-diff")
    rows = diff.get_by_test_id("diff-row")
    expect(rows).to_have_count(1)
    expect(rows.first).to_have_attribute("data-path", "training.optimizer.lr")
    for job, lr in zip(three, LRS):
        expect(rows.first.locator(f'td[data-job-id="{job["id"]}"]')).to_have_text(str(lr))

    # final metrics side by side: each run's own val_accuracy
    acc = view.locator('[data-testid="final-row"][data-metric="val_accuracy"]')
    for job in three:
        cell = acc.locator(f'td[data-job-id="{job["id"]}"]')
        expect(cell).to_have_text(f"{job['metrics']['val_accuracy'] * 100:.2f}%")

    # one chart per metric, each run's curve on it with all of its points
    loss = view.locator('[data-testid="compare-chart"][data-metric="loss"]')
    expect(loss.locator("canvas")).to_have_count(1)
    steps = three[0]["progress"]["total_steps"]
    for i in range(3):
        expect(loss.get_by_test_id(f"run-{i}")).to_have_attribute("data-drawn", str(steps))
    curve = httpx.get(f"{stack.base_url}/v1/jobs/{three[1]['id']}/metrics", params={"names": "loss"}).json()
    drawn = loss.evaluate("el => el.chart.drawnValues('run-1')")
    assert drawn == pytest.approx(curve["series"]["loss"]["value"])

    # the hover lists every run's value at that step
    over = loss.locator(".u-over")
    box = over.bounding_box()
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    tip = page.locator("#tooltip")
    expect(tip).to_be_visible()
    lines = tip.inner_text().split("\n")
    assert len(lines) == 3 and all(any(j["name"] in line for line in lines) for j in three), lines

    # smoothing changes what is drawn, not what is held; the epoch axis puts the last step at 3
    page.get_by_test_id("smoothing").fill("0.9")
    smoothed = loss.evaluate("el => el.chart.drawnValues('run-1')")
    assert len(smoothed) == steps and smoothed != pytest.approx(drawn)
    page.get_by_test_id("x-axis").select_option("epoch")
    loss = view.locator('[data-testid="compare-chart"][data-metric="loss"]')
    assert loss.evaluate("el => el.chart.entries[0].series.last().x") == pytest.approx(3.0)
    page.get_by_test_id("x-axis").select_option("time")
    clock = loss.evaluate("el => el.chart.entries[0].series.last().x")
    epoch_times = httpx.get(f"{stack.base_url}/v1/jobs/{three[0]['id']}/metrics",
                            params={"names": "epoch_time_s"}).json()["series"]["epoch_time_s"]["value"]
    assert clock == pytest.approx(sum(epoch_times))
    page.get_by_test_id("log-y").check()
    expect(page).to_have_url(re.compile(r"log=1"))
    page.mouse.move(0, 0)
    shoot(page, "compare")
    assert page.js_errors == []


def test_group_by_seed_draws_a_band_per_learning_rate(stack, runs, page):
    four = [runs[(lr, s)] for lr in LRS[:2] for s in (0, 1)]
    ids = ",".join(j["id"] for j in four)
    page.goto(f"{stack.base_url}/#/compare?ids={ids}")
    view = page.get_by_test_id("compare-view")
    expect(view.get_by_test_id("diff-row")).to_have_count(2)  # lr and seed
    page.get_by_test_id("group-by").select_option("__seeds__")
    val = view.locator('[data-testid="compare-chart"][data-metric="val_loss"]')
    expect(val.get_by_test_id("group-0")).to_have_attribute("data-band", "3")
    expect(val.get_by_test_id("group-1")).to_have_attribute("data-band", "3")
    expect(val.get_by_test_id("run-0")).to_have_count(0)  # groups instead of runs
    # the band is mean ± std of the two seeds' values, per epoch
    groups = val.evaluate("""el => el.chart.entries.map((e) => ({
        label: e.label, mean: e.series.points.map((p) => p.y),
        lo: e.band.lo.points.map((p) => p.y), hi: e.band.hi.points.map((p) => p.y)}))""")
    assert len(groups) == 2
    for g, lr in zip(groups, LRS[:2]):
        assert f"lr={lr}" in g["label"] and "(n=2)" in g["label"]
        seeds = [httpx.get(f"{stack.base_url}/v1/jobs/{runs[(lr, s)]['id']}/metrics",
                           params={"names": "val_loss"}).json()["series"]["val_loss"]["value"] for s in (0, 1)]
        for k, (a, b) in enumerate(zip(*seeds)):
            mean = (a + b) / 2
            assert g["mean"][k] == pytest.approx(mean, rel=1e-6)
            half = g["hi"][k] - mean
            assert half == pytest.approx(mean - g["lo"][k], rel=1e-6, abs=1e-12)
            assert half == pytest.approx(abs(a - b) / 2, rel=1e-6, abs=1e-12)  # the population std of two
        assert max(h - lo for h, lo in zip(g["hi"], g["lo"])) > 0, "the seeds gave one curve: no band"
    expect(page).to_have_url(re.compile(r"group=__seeds__"))
    page.mouse.move(0, 0)
    shoot(page, "compare-grouped")
    assert page.js_errors == []
