"""The datasets pages in a real browser against the real service (``stack``): a dataset made
by uploading a file through the page (its progress shown), listed, its first samples drawn
as images from the uploaded numbers and its class histogram equal to the labels' counts; a
CSV shown as a table; a refused file's message at the file field; delete after confirming.
Screenshots of both pages land in /tmp/shots/."""
from __future__ import annotations

import io
import re

import numpy as np
import pytest

from tests.web.shots import shoot

pytestmark = pytest.mark.web


def expect(*args, **kwargs):
    from playwright.sync_api import expect as _expect

    return _expect(*args, **kwargs)


def _npz(**arrays) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def _pick(page, name: str, data: bytes, mime="application/octet-stream") -> None:
    page.get_by_test_id("upload-file").set_input_files(files=[{"name": name, "mimeType": mime, "buffer": data}])


def _row(page, dataset_id: str):
    return page.locator(f'[data-testid="dataset-row"][data-dataset-id="{dataset_id}"]')


def _by_name(api, name: str) -> dict:
    found = [d for d in api.get("/v1/datasets").json()["items"] if d["name"] == name]
    assert len(found) == 1, found
    return found[0]


def test_upload_then_preview_images_and_histogram(stack, api, page):
    rng = np.random.default_rng(3)
    x = rng.random((2000, 3, 12, 12), dtype=np.float32)  # colour images, values in [0, 1)
    y = rng.integers(0, 7, size=2000)
    data = _npz(inputs=x, targets=y)
    page.goto(f"{stack.base_url}/#/datasets")
    expect(page.get_by_test_id("datasets-view")).to_be_visible()

    _pick(page, "colour-noise.npz", data)
    expect(page.get_by_test_id("upload-name")).to_have_value("colour-noise")  # named after the file
    page.get_by_test_id("upload-submit").click()
    progress = page.get_by_test_id("upload-progress")
    expect(progress).to_have_attribute("data-state", "done", timeout=60_000)
    # the bar followed the XMLHttpRequest's upload progress events to the whole body
    assert int(progress.get_attribute("data-events")) >= 1
    assert int(progress.get_attribute("data-sent")) >= len(data)
    expect(page.get_by_test_id("upload-progress-label")).to_contain_text("100%")
    assert page.get_by_test_id("upload-progress-bar").evaluate("el => el.value") == 100

    ds = _by_name(api, "colour-noise")
    assert ds["num_samples"] == 2000 and ds["input_shape"] == [3, 12, 12]
    row = _row(page, ds["id"])
    expect(row).to_be_visible()
    expect(row.get_by_test_id("dataset-samples")).to_have_text("2,000")
    expect(row.get_by_test_id("dataset-shape")).to_have_text("[3, 12, 12]")
    expect(row.get_by_test_id("dataset-targets")).to_have_text("7 classes")
    shoot(page, "datasets")

    row.get_by_test_id("dataset-name").click()
    expect(page).to_have_url(re.compile(rf"#/datasets/{ds['id']}$"))
    images = page.get_by_test_id("preview-image")
    expect(images).to_have_count(24)
    assert images.first.get_attribute("data-shape") == "3x12x12"
    # the first image's pixels are the uploaded sample's values, scaled from [0, 1] to 0..255
    pixels = np.array(images.first.evaluate(
        "c => Array.from(c.getContext('2d').getImageData(0, 0, c.width, c.height).data)")).reshape(12, 12, 4)
    expected = np.floor(x[0].astype(np.float64) * 255 + 0.5).transpose(1, 2, 0)
    np.testing.assert_array_equal(pixels[..., :3], expected)
    assert (pixels[..., 3] == 255).all()

    bars = page.get_by_test_id("class-histogram").get_by_test_id("histogram-bar")
    expect(bars).to_have_count(7)
    drawn = [int(b.get_attribute("data-count")) for b in bars.all()]
    assert drawn == np.bincount(y).tolist()
    heights = [b.locator(".hist-bar").evaluate("el => el.getBoundingClientRect().height") for b in bars.all()]
    tallest = int(np.argmax(np.bincount(y)))
    assert heights[tallest] == max(heights) > 0  # the most frequent class has the tallest bar
    expect(page.get_by_test_id("dataset-samples")).to_have_text("2,000")
    shoot(page, "dataset")
    assert page.js_errors == []


def test_a_csv_is_previewed_as_a_table(stack, api, page):
    csv = "a,b,c,label\n" + "\n".join(f"{i * 0.5},{i + 1},{-i},{i % 3}" for i in range(30)) + "\n"
    page.goto(f"{stack.base_url}/#/datasets")
    _pick(page, "table.csv", csv.encode(), "text/csv")
    # the page read the header and offers its last column as the target
    expect(page.get_by_test_id("upload-columns")).to_have_value("label")
    expect(page.get_by_test_id("upload-columns-note")).to_have_text("columns: a, b, c, label")
    page.get_by_test_id("upload-submit").click()
    expect(page.get_by_test_id("upload-progress")).to_have_attribute("data-state", "done")
    ds = _by_name(api, "table")
    _row(page, ds["id"]).get_by_test_id("dataset-name").click()
    rows = page.get_by_test_id("preview-row")
    expect(rows).to_have_count(10)
    cells = rows.nth(3).locator("td").all_inner_texts()
    assert cells == ["3", "1.5", "4", "-3", "0"]  # index, a, b, c, label of the fourth line
    expect(page.get_by_test_id("histogram-bar")).to_have_count(3)


def test_a_refused_file_shows_the_message_at_the_file_field(stack, api, page):
    bad = _npz(inputs=np.zeros((4, 2), np.float32))  # no targets in it
    said = api.post("/v1/datasets/upload", files={"file": ("bad.npz", bad)}, data={"name": "bad"})
    assert said.status_code == 422
    msg = said.json()["detail"][0]["msg"]
    page.goto(f"{stack.base_url}/#/datasets")
    _pick(page, "bad.npz", bad)
    page.get_by_test_id("upload-submit").click()
    expect(page.get_by_test_id("upload-file-error")).to_have_text(msg)
    expect(page.get_by_test_id("upload-progress")).to_have_attribute("data-state", "failed")
    assert not [d for d in api.get("/v1/datasets").json()["items"] if d["name"] == "bad"]
    expect(page.get_by_test_id("upload-file")).to_be_focused()


def test_delete_asks_first(stack, api, page):
    made = api.post("/v1/datasets", json={"name": "to-delete", "inputs": [[0.0], [1.0]], "targets": [0, 1]})
    ds_id = made.json()["id"]
    page.goto(f"{stack.base_url}/#/datasets")
    row = _row(page, ds_id)
    row.get_by_test_id("dataset-delete").click()
    dialog = page.get_by_test_id("dialog")
    expect(dialog).to_be_visible()
    expect(dialog).to_contain_text("to-delete")
    page.get_by_test_id("dialog-cancel").click()
    expect(dialog).to_be_hidden()
    assert api.get(f"/v1/datasets/{ds_id}").status_code == 200  # cancelled: still there

    # from its own page, with the keyboard: Enter confirms
    page.goto(f"{stack.base_url}/#/datasets/{ds_id}")
    detail = page.get_by_test_id("dataset-detail")
    expect(detail).to_have_attribute("data-dataset-id", ds_id)
    detail.get_by_test_id("dataset-delete").focus()
    page.keyboard.press("Enter")
    expect(dialog).to_be_visible()
    page.get_by_test_id("dialog-confirm").click()
    expect(page).to_have_url(re.compile(r"#/datasets$"))
    expect(page.get_by_test_id("datasets-view")).to_be_visible()
    expect(_row(page, ds_id)).to_have_count(0)
    assert api.get(f"/v1/datasets/{ds_id}").status_code == 404


def _npy(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, a)
    return buf.getvalue()


def test_an_npy_with_its_targets_file_draws_grey_images(stack, api, page):
    rng = np.random.default_rng(5)
    x = (rng.random((60, 1, 6, 6)) * 4 - 2).astype(np.float32)  # outside [0, 1]: scaled by min and max
    y = rng.integers(0, 2, size=60)
    page.goto(f"{stack.base_url}/#/datasets")
    _pick(page, "grey.npy", _npy(x))
    expect(page.get_by_test_id("upload-targets")).to_be_visible()  # an .npy of inputs asks for its targets
    page.get_by_test_id("upload-targets").set_input_files(
        files=[{"name": "labels.npy", "mimeType": "application/octet-stream", "buffer": _npy(y)}])
    page.get_by_test_id("upload-submit").click()
    expect(page.get_by_test_id("upload-progress")).to_have_attribute("data-state", "done")
    ds = _by_name(api, "grey")
    _row(page, ds["id"]).get_by_test_id("dataset-name").click()
    first = page.get_by_test_id("preview-image").first
    expect(first).to_have_attribute("data-shape", "1x6x6")
    pixels = np.array(first.evaluate(
        "c => Array.from(c.getContext('2d').getImageData(0, 0, c.width, c.height).data)")).reshape(6, 6, 4)
    expect(page.get_by_test_id("preview-image")).to_have_count(24)
    shown = x[:24].astype(np.float64)
    lo, hi = shown.min(), shown.max()  # one range for the samples shown
    expected = np.floor((x[0, 0].astype(np.float64) - lo) * (255 / (hi - lo)) + 0.5)
    np.testing.assert_array_equal(pixels[..., 0], expected)
    assert (pixels[..., 0] == pixels[..., 1]).all() and (pixels[..., 1] == pixels[..., 2]).all()  # grey
    assert [int(b.get_attribute("data-count")) for b in page.get_by_test_id("histogram-bar").all()] \
        == np.bincount(y).tolist()


def test_a_regression_dataset_shows_its_target_statistics(stack, api, page):
    rng = np.random.default_rng(8)
    x = rng.normal(size=(40, 5)).round(3)
    y = (x @ np.arange(5) + 0.5).round(3)
    made = api.post("/v1/datasets", json={"name": "reg", "task": "regression", "inputs": x.tolist(),
                                          "targets": y.tolist()}).json()
    stats = api.get(f"/v1/datasets/{made['id']}/preview").json()["statistics"]["output"]
    page.goto(f"{stack.base_url}/#/datasets/{made['id']}")
    expect(page.get_by_test_id("dataset-targets")).to_have_text("regression")
    table = page.get_by_test_id("target-statistics")
    for key in ("min", "max", "mean", "std"):
        assert float(table.get_by_test_id(f"stat-{key}").inner_text()) == pytest.approx(stats[key], abs=1e-4)
    expect(page.get_by_test_id("histogram-bar")).to_have_count(0)
    rows = page.get_by_test_id("preview-row")
    expect(rows).to_have_count(10)
    cells = rows.first.locator("td").all_inner_texts()
    assert [float(c) for c in cells[1:6]] == pytest.approx(x[0].tolist(), abs=1e-4)
    assert float(cells[6]) == pytest.approx(y[0], abs=1e-3)
