"""The new-job form in a real browser against the real service (``stack``: API, a Celery
worker): as one types, a bad field shows the API's own 422 message at that field (and
nothing is created); the model's node table follows the layers; a good form submits, opens
the new job's page and its loss curve grows while the worker trains it. Screenshots land in
/tmp/shots/."""
from __future__ import annotations

import json
import re
import time

import pytest

from tests.e2e.helpers import digits, post_dataset
from tests.web.shots import shoot

pytestmark = pytest.mark.web

JOB_TIMEOUT_S = 300  # the embedded worker runs one job at a time; others may be ahead
TERMINAL = ("succeeded", "failed", "cancelled")
# wide enough that a few epochs of the digits take seconds, so the curve is seen growing
WIDE = [
    {"type": "Flatten"},
    {"type": "Linear", "in_features": 64, "out_features": 512}, {"type": "ReLU"},
    {"type": "Linear", "in_features": 512, "out_features": 512}, {"type": "ReLU"},
    {"type": "Linear", "in_features": 512, "out_features": 10},
]


def expect(*args, **kwargs):
    from playwright.sync_api import expect as _expect

    return _expect(*args, **kwargs)


@pytest.fixture(scope="module")
def digits_ds(api):
    x, y = digits()
    return post_dataset(api, x.reshape(-1, 1, 8, 8), y, name="digits-new-job")


def _jobs(api) -> set[str]:
    return {j["id"] for j in api.get("/v1/jobs?limit=1000").json()["items"]}


def _open_form(page, stack, dataset_id):
    page.goto(f"{stack.base_url}/#/new?dataset={dataset_id}")
    expect(page.get_by_test_id("newjob-view")).to_be_visible()
    expect(page.get_by_test_id("field-dataset")).to_have_value(dataset_id)
    expect(page.get_by_test_id("validation-status")).to_have_attribute("data-state", "ok", timeout=20_000)


def _form_body(page) -> dict:
    """What the form would submit, read from its fields (to ask the API the same question)."""
    return page.evaluate("""() => {
      const v = (id) => document.querySelector(`[data-testid="${id}"]`).value;
      const num = (id) => Number(v(id));
      const layers = document.querySelector('[data-testid="field-kind-layers"]').checked;
      const {optimizer = {}, ...extra} = JSON.parse(v('field-extra') || '{}');
      return {name: v('field-name'), dataset_id: v('field-dataset'),
              model: layers ? {layers: JSON.parse(v('field-layers'))} : {zoo: v('field-zoo')},
              training: {...extra, epochs: num('field-epochs'), batch_size: num('field-batch-size'),
                         optimizer: {...optimizer, type: v('field-optimizer'), lr: num('field-lr')}}};
    }""")


def test_a_bad_field_shows_the_apis_message_there_before_submitting(stack, api, digits_ds, page):
    before = _jobs(api)
    _open_form(page, stack, digits_ds["id"])
    # 1x8x8 samples: the form proposes the zoo's small CNN, and the table shows its nodes
    expect(page.get_by_test_id("field-zoo")).to_have_value("simple_cnn")
    spec = api.post("/v1/specs/validate", json={"model": {"zoo": "simple_cnn"}, "dataset_id": digits_ds["id"]}).json()
    expect(page.get_by_test_id("spec-table").get_by_test_id("spec-node")).to_have_count(len(spec["nodes"]))

    status = page.get_by_test_id("validation-status")
    page.get_by_test_id("field-batch-size").fill("0")
    expect(status).to_have_attribute("data-state", "bad")
    said = api.post("/v1/jobs/validate", json=_form_body(page))
    assert said.status_code == 422
    detail = said.json()["detail"][0]
    assert detail["pointer"] == "/training/batch_size"
    error = page.get_by_test_id("error-batch-size")
    expect(error).to_have_text(detail["msg"])
    expect(page.get_by_test_id("field-batch-size")).to_have_attribute("aria-invalid", "true")
    expect(page.get_by_test_id("error-epochs")).to_be_hidden()  # only the field at fault
    shoot(page, "newjob-error")

    page.get_by_test_id("field-batch-size").fill("16")
    expect(status).to_have_attribute("data-state", "ok")
    expect(error).to_be_hidden()

    # own layers that do not fit the data: the message names the layer, at the layers editor
    page.get_by_test_id("field-kind-layers").check()
    layers = page.get_by_test_id("field-layers")
    expect(layers).to_be_visible()
    expect(status).to_have_attribute("data-state", "ok")  # the proposed layers fit
    layers.fill(json.dumps([{"type": "Flatten"}, {"type": "Linear", "in_features": 60, "out_features": 10}]))
    expect(status).to_have_attribute("data-state", "bad")
    said = api.post("/v1/jobs/validate", json=_form_body(page)).json()["detail"][0]
    assert said["pointer"].startswith("/model/layers/1")
    expect(page.get_by_test_id("field-layers-error")).to_have_text(said["msg"])

    # a JSON syntax error is named by line and column before anything is asked
    extra = page.get_by_test_id("field-extra")
    extra.fill('{"seed": 1,\n "validation_split": }')
    expect(page.get_by_test_id("field-extra-error")).to_contain_text("line 2")
    expect(status).to_have_text("Fix the JSON first.")

    # submitting anyway is refused by the API and says so at the field
    extra.fill('{"seed": -1}')
    expect(page.get_by_test_id("field-extra-error")).to_contain_text("seed:")
    page.get_by_test_id("submit-job").click()
    expect(status).to_contain_text("Not submitted")
    assert _jobs(api) == before, "a job was created from a form that does not validate"
    assert page.url.endswith(f"#/new?dataset={digits_ds['id']}")


def test_a_good_form_submits_and_the_curve_grows_live(stack, api, digits_ds, page):
    _open_form(page, stack, digits_ds["id"])
    page.get_by_test_id("field-kind-layers").check()
    page.get_by_test_id("field-layers").fill(json.dumps(WIDE))
    page.get_by_test_id("field-name").fill("from-the-form")
    page.get_by_test_id("field-optimizer").select_option("SGD")
    page.get_by_test_id("field-lr").fill("0.05")
    page.get_by_test_id("field-epochs").fill("6")
    page.get_by_test_id("field-batch-size").fill("32")
    page.get_by_test_id("field-extra").fill('{"seed": 3, "validation_split": 0.25, "optimizer": {"momentum": 0.9}}')
    status = page.get_by_test_id("validation-status")
    expect(status).to_have_attribute("data-state", "ok")
    # the plan the form shows is the service's for the same body
    plan = api.post("/v1/jobs/validate", json=_form_body(page)).json()
    expect(page.get_by_test_id("plan-steps")).to_have_text(
        f"{plan['plan']['steps_per_epoch']} per epoch · {plan['plan']['total_steps']:,} in all")
    params = 64 * 512 + 512 + 512 * 512 + 512 + 512 * 10 + 10
    expect(page.get_by_test_id("spec-total-params")).to_have_attribute("title", f"{params:,}")
    shoot(page, "newjob")

    page.get_by_test_id("field-name").press("Enter")  # the keyboard submits the form
    expect(page).to_have_url(re.compile(r"#/jobs/[0-9a-f]+$"))
    job_id = page.url.rsplit("/", 1)[-1]
    job = api.get(f"/v1/jobs/{job_id}").json()
    assert job["name"] == "from-the-form"
    assert job["model"] == {"layers": WIDE}
    t = job["training"]
    assert (t["epochs"], t["batch_size"], t["seed"], t["validation_split"]) == (6, 32, 3, 0.25)
    assert t["optimizer"]["type"] == "SGD" and t["optimizer"]["lr"] == 0.05 and t["optimizer"]["momentum"] == 0.9

    # the page follows it: each count was read while the API still said it runs
    counts: list[int] = []
    deadline = time.monotonic() + JOB_TIMEOUT_S
    while time.monotonic() < deadline and len(counts) < 3:
        points = int(page.get_by_test_id("train-loss-path").get_attribute("data-points") or 0)
        state = api.get(f"/v1/jobs/{job_id}").json()["status"]
        if state in TERMINAL:
            break
        if state == "running" and (not counts or points > counts[-1]):
            counts.append(points)
        page.wait_for_timeout(150)
    assert len(counts) >= 3, f"the curve grew {len(counts) - 1} times while the job ran ({counts}); expected twice"
    assert counts == sorted(set(counts))
    badge = page.get_by_test_id("job-detail").get_by_test_id("job-status")
    expect(badge).to_have_text(re.compile("^(succeeded|failed|cancelled)$"), timeout=JOB_TIMEOUT_S * 1000)
    final = api.get(f"/v1/jobs/{job_id}").json()
    assert final["status"] == "succeeded", final["error"]
    total = str(final["progress"]["total_steps"])
    expect(page.get_by_test_id("train-loss-path")).to_have_attribute("data-points", total)
    assert [e for e in page.js_errors if "status of 422" not in e] == []
