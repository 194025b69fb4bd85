"""POST/GET /v1/datasets: valid data is stored; bad data is a 422 naming the field."""
from __future__ import annotations

import pytest


def _errors(response) -> list[dict]:
    assert response.status_code == 422, response.text
    return response.json()["detail"]


def test_create_and_get_dataset(client):
    body = {"name": "tiny", "inputs": [[[0, 1], [2, 3]], [[4, 5], [6, 7]], [[1, 1], [1, 1]]], "targets": [0, 2, 1]}
    r = client.post("/v1/datasets", json=body)
    assert r.status_code == 201, r.text
    ds = r.json()
    assert ds["num_samples"] == 3 and ds["input_shape"] == [2, 2] and ds["num_classes"] == 3
    assert ds["input_dtype"] == "float32" and ds["size_bytes"] > 0
    assert client.get(f"/v1/datasets/{ds['id']}").json() == ds
    assert [d["id"] for d in client.get("/v1/datasets").json()["items"]] == [ds["id"]]


@pytest.mark.parametrize(
    "inputs, targets, field, words",
    [
        ([[1, 2], [3]], [0, 1], "inputs", "different lengths"),
        ([[1, 2], ["a", 3]], [0, 1], "inputs", "numbers"),
        ([[1, 2], [None, 3]], [0, 1], "inputs", "numbers"),
        ([], [], "inputs", "non-empty"),
        ([[1, 2], [3, 4]], [0], "targets", "2 samples"),
        ([[1, 2], [3, 4]], [0, 1.5], "targets", "integer"),
        ([[1, 2], [3, 4]], [0, -1], "targets", ">= 0"),
        ([[1, 2], [3, 4]], ["0", 1], "targets", "integer"),
    ],
)
def test_bad_datasets_are_rejected_naming_the_field(client, row_counts, inputs, targets, field, words):
    before = row_counts()
    errs = _errors(client.post("/v1/datasets", json={"name": "bad", "inputs": inputs, "targets": targets}))
    assert any(e["loc"][:2] == ["body", field] and e["pointer"].startswith(f"/{field}") for e in errs), errs
    assert any(words in e["msg"] for e in errs), errs
    assert row_counts() == before


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity"])
def test_non_finite_numbers_are_rejected(client, row_counts, literal):
    before = row_counts()
    raw = f'{{"name": "nan", "inputs": [[1.0, {literal}], [0.0, 1.0]], "targets": [0, 1]}}'
    errs = _errors(client.post("/v1/datasets", content=raw, headers={"content-type": "application/json"}))
    assert errs[0]["loc"][:2] == ["body", "inputs"] and "NaN or Infinity" in errs[0]["msg"]
    assert row_counts() == before


def test_body_that_is_not_json(client, row_counts):
    before = row_counts()
    errs = _errors(client.post("/v1/datasets", content="inputs=1", headers={"content-type": "application/json"}))
    assert errs[0]["loc"][0] == "body" and errs[0]["type"] == "json_invalid"
    assert row_counts() == before


def test_unknown_dataset_is_404(client):
    assert client.get("/v1/datasets/nope").status_code == 404
