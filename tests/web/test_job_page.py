"""The job page's workbench cards in a real browser against the real service (``stack``): on a
finished job, predict from the page gives the API's own predictions, the exported ONNX file
runs in onnxruntime to the same outputs, the model card lists the nodes with their shapes and
parameter counts (equal to the checkpoint's tensors), and fine-tune from here creates a job
that starts from this job's checkpoint (a bad value shows the API's message at its field).
Screenshots land in /tmp/shots/."""
from __future__ import annotations

import json
import re

import httpx
import numpy as np
import pytest

from tests.e2e.helpers import digits, post_dataset, wait_for_job
from tests.web.shots import shoot

pytestmark = pytest.mark.web

MODEL = {"layers": [
    {"type": "Flatten"},
    {"type": "Linear", "in_features": 64, "out_features": 32}, {"type": "ReLU"},
    {"type": "Linear", "in_features": 32, "out_features": 10},
]}
TENSORS = {"1.weight": (32, 64), "1.bias": (32,), "3.weight": (10, 32), "3.bias": (10,)}


def expect(*args, **kwargs):
    from playwright.sync_api import expect as _expect

    return _expect(*args, **kwargs)


@pytest.fixture(scope="module")
def api(stack):
    with httpx.Client(base_url=stack.base_url, timeout=60) as client:
        yield client


@pytest.fixture(scope="module")
def trained(api):
    """A finished job on 400 digits (1x8x8 samples)."""
    x, y = digits(400)
    ds = post_dataset(api, x.reshape(-1, 1, 8, 8), y, name="digits-job-page")
    r = api.post("/v1/jobs", json={"name": "job-page-mlp", "dataset_id": ds["id"], "model": MODEL,
                                   "training": {"epochs": 3, "batch_size": 32, "seed": 0,
                                                "optimizer": {"type": "Adam", "lr": 0.01}}})
    assert r.status_code == 202, r.text
    job, _ = wait_for_job(api, r.json()["id"], timeout=240)
    assert job["status"] == "succeeded", job["error"]
    return job, x.reshape(-1, 1, 8, 8), y


def _open(page, stack, job_id):
    page.goto(f"{stack.base_url}/#/jobs/{job_id}")
    expect(page.get_by_test_id("job-detail").get_by_test_id("job-status")).to_have_text("succeeded")
    expect(page.get_by_test_id("checkpoint-row").first).to_be_visible()


def test_predict_from_the_page_gives_the_apis_predictions(stack, api, trained, page):
    job, x, y = trained
    _open(page, stack, job["id"])
    page.get_by_test_id("predict-sample").click()  # the dataset's first two samples, with their labels
    inputs = page.get_by_test_id("predict-inputs")
    expect(inputs).not_to_have_value("")
    assert np.allclose(np.array(json.loads(inputs.input_value())), x[:2])
    page.get_by_test_id("predict-button").click()
    rows = page.get_by_test_id("predict-row")
    expect(rows).to_have_count(2)
    answer = api.post(f"/v1/jobs/{job['id']}/predict", json={"inputs": x[:2].tolist()}).json()
    shown = [int(c) for c in page.get_by_test_id("predict-class").all_inner_texts()]
    assert shown == answer["predictions"]["output"]
    assert page.get_by_test_id("predict-label").all_inner_texts() == [str(v) for v in y[:2]]
    probs = answer["probabilities"]["output"][0]
    best = int(np.argmax(probs))
    expect(rows.first).to_contain_text(f"{best}: {probs[best] * 100:.1f}%")
    ckpt = answer["checkpoint"]
    expect(page.get_by_test_id("predict-checkpoint-used")).to_have_text(
        f"From the checkpoint of epoch {ckpt['epoch']}, step {ckpt['step']}.")

    # one sample alone (not in a list) is taken as one sample; a wrong shape gets the API's 422
    inputs.fill(json.dumps(x[5].tolist()))
    page.get_by_test_id("predict-button").click()
    expect(rows).to_have_count(1)
    inputs.fill("[[1, 2, 3]]")
    page.get_by_test_id("predict-button").click()
    said = api.post(f"/v1/jobs/{job['id']}/predict", json={"inputs": [[1, 2, 3]]}).json()["detail"][0]["msg"]
    expect(page.get_by_test_id("predict-error")).to_contain_text(said)
    expect(inputs).to_have_attribute("aria-invalid", "true")
    inputs.fill("[[1, 2")
    expect(page.get_by_test_id("predict-inputs-error")).to_contain_text("line 1, column 7")
    assert [e for e in page.js_errors if "status of 422" not in e] == []


def test_export_onnx_downloads_a_model_that_runs_like_the_service(stack, api, trained, page, tmp_path):
    import onnxruntime as ort

    job, x, _ = trained
    _open(page, stack, job["id"])
    expect(page.get_by_test_id("export-format")).to_have_value("onnx")
    with page.expect_download() as info:
        page.get_by_test_id("export-button").click()
    download = info.value
    assert download.suggested_filename.endswith(".onnx")
    path = tmp_path / download.suggested_filename
    download.save_as(path)
    expect(page.get_by_test_id("export-status")).to_have_text(f"Saved {download.suggested_filename}.")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (out,) = session.run(None, {session.get_inputs()[0].name: x[:4]})
    answer = api.post(f"/v1/jobs/{job['id']}/predict", json={"inputs": x[:4].tolist()}).json()
    np.testing.assert_allclose(out, np.array(answer["outputs"]["output"]), rtol=1e-4, atol=1e-5)

    # the weights as they are: safetensors at the best checkpoint
    from safetensors.numpy import load as load_safetensors

    page.get_by_test_id("export-format").select_option("safetensors")
    page.get_by_test_id("export-checkpoint").select_option("best")
    with page.expect_download() as info:
        page.get_by_test_id("export-button").click()
    tensors = load_safetensors((info.value.path()).read_bytes())
    assert {k: v.shape for k, v in tensors.items() if k in TENSORS} == TENSORS
    assert page.js_errors == []


def test_the_model_card_lists_nodes_shapes_and_parameters(stack, api, trained, page):
    job, _, _ = trained
    _open(page, stack, job["id"])
    card = page.get_by_test_id("model-card")
    card.locator("summary").click()  # read when opened
    nodes = card.get_by_test_id("spec-node")
    expect(nodes).to_have_count(4)
    assert card.get_by_test_id("spec-node-shape").all_inner_texts() == ["[N, 64]", "[N, 32]", "[N, 32]", "[N, 10]"]
    params = sum(int(np.prod(s)) for s in TENSORS.values())
    expect(card.get_by_test_id("spec-total-params")).to_have_attribute("title", f"{params:,}")
    flops = api.post("/v1/specs/validate", json={"model": MODEL, "input_shape": [1, 8, 8]}).json()["totals"]
    expect(card.get_by_test_id("model-summary")).to_contain_text("4 nodes")
    expect(card.get_by_test_id("spec-total-flops")).to_have_attribute("title", f"{flops['flops_per_sample']:,}")
    shoot(page, "job")


def test_fine_tune_from_here_starts_a_job_from_this_checkpoint(stack, api, trained, page):
    job, _, _ = trained
    _open(page, stack, job["id"])
    card = page.get_by_test_id("finetune-card")
    card.locator("summary").click()
    expect(page.get_by_test_id("finetune-dataset")).to_have_value(job["dataset_id"])
    expect(page.get_by_test_id("finetune-status")).to_have_text("Ready to start.")

    page.get_by_test_id("finetune-lr").fill("0")
    said = api.post("/v1/jobs/validate", json={
        "name": "x", "dataset_id": job["dataset_id"], "model": MODEL,
        "training": {"epochs": 1, "batch_size": 32, "optimizer": {"type": "Adam", "lr": 0}}}).json()["detail"][0]
    expect(page.get_by_test_id("finetune-lr-error")).to_have_text(said["msg"])
    page.get_by_test_id("finetune-lr").fill("0.001")
    expect(page.get_by_test_id("finetune-lr-error")).to_be_hidden()
    page.get_by_test_id("finetune-epochs").fill("1")
    page.get_by_test_id("finetune-checkpoint").select_option("best")
    page.get_by_test_id("finetune-name").fill("tuned-from-the-page")
    page.get_by_test_id("finetune-submit").click()
    expect(page).not_to_have_url(re.compile(rf"#/jobs/{job['id']}$"))
    expect(page).to_have_url(re.compile(r"#/jobs/[0-9a-f]+$"))
    child = api.get(f"/v1/jobs/{page.url.rsplit('/', 1)[-1]}").json()
    assert child["name"] == "tuned-from-the-page"
    assert child["training"]["init"]["job_id"] == job["id"]
    assert child["training"]["init"]["checkpoint"] == "best"
    assert child["plan"]["init"]["weights_id"]  # resolved to a snapshot of the parent's checkpoint
    assert child["training"]["epochs"] == 1 and child["training"]["optimizer"]["lr"] == 0.001
    assert child["model"] == job["model"]
    expect(page.get_by_test_id("job-detail").get_by_test_id("job-name")).to_have_text("tuned-from-the-page")
    done, _ = wait_for_job(api, child["id"], timeout=240)
    assert done["status"] == "succeeded", done["error"]
    assert [e for e in page.js_errors if "status of 422" not in e] == []


def test_predict_on_a_regression_job_shows_its_values(stack, api, page):
    rng = np.random.default_rng(2)
    x = rng.normal(size=(60, 3)).astype(np.float32)
    y = x @ np.array([1.0, -2.0, 0.5], np.float32)
    ds = api.post("/v1/datasets", json={"name": "reg-job-page", "task": "regression", "inputs": x.tolist(),
                                        "targets": y.tolist()}).json()
    r = api.post("/v1/jobs", json={"name": "reg", "dataset_id": ds["id"],
                                   "model": {"layers": [{"type": "Linear", "in_features": 3, "out_features": 1}]},
                                   "training": {"epochs": 2, "batch_size": 16,
                                                "optimizer": {"type": "SGD", "lr": 0.05}}})
    job, _ = wait_for_job(api, r.json()["id"], timeout=240)
    assert job["status"] == "succeeded", job["error"]
    _open(page, stack, job["id"])
    page.get_by_test_id("predict-inputs").fill(json.dumps(x[:3].tolist()))
    page.get_by_test_id("predict-button").click()
    values = page.get_by_test_id("predict-value")
    expect(values).to_have_count(3)
    answer = api.post(f"/v1/jobs/{job['id']}/predict", json={"inputs": x[:3].tolist()}).json()
    assert answer["predictions"] == {}  # a regression head has no classes
    shown = [float(v) for v in values.all_inner_texts()]
    assert shown == pytest.approx([o[0] for o in answer["outputs"]["output"]], abs=1e-4)
    expect(page.get_by_test_id("predict-class")).to_have_count(0)
