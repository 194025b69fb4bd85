"""The Python client against real processes (uvicorn, a Celery worker, Redis and the
database; deployment services and the embedded default): the README's flow, waiting on the
live stream, errors that name the field, big arrays, logs, cancel, and retries."""
from __future__ import annotations

import http.server
import io
import json
import threading

import numpy as np
import pytest

import engine
from engine import spec
from tests.e2e.helpers import MLP_SPEC, digits
from trainyard.client import Client, Conflict, InvalidRequest, JobFailed, NotFound, Unreachable

pytestmark = pytest.mark.e2e
TRAINING = {"epochs": 3, "batch_size": 32, "optimizer": {"type": "Adam", "lr": 0.005}, "seed": 7,
            "validation_split": 0.2}


@pytest.fixture(params=["services", "embedded"])
def client(request):
    stack = request.getfixturevalue("services_stack" if request.param == "services" else "stack")
    with Client(stack.base_url) as c:
        yield c


def test_train_wait_on_the_stream_download_and_load(client, tmp_path):
    x, y = digits(500)
    ds = client.datasets.create("digits-500", x, y)
    assert (ds.num_samples, ds.input_shape, ds.num_classes) == (500, [8, 8], 10)
    job = client.jobs.submit(model=MLP_SPEC, dataset=ds, training=TRAINING, name="client")
    seen = []
    job.wait(on_event=lambda kind, data: seen.append(kind))
    assert job.status == "succeeded" and job.done
    assert seen[-1] == "end" and "metric" in seen and "progress" in seen
    assert job.final_metrics["val_accuracy"] > 0.5
    metrics = job.metrics(as_dataframe=False)
    total = job.progress["total_steps"]
    assert metrics["step"] == list(range(1, total + 1)) and len(metrics["loss"]) == total
    assert all(v is not None for v in metrics["loss"]) and metrics["lr"][0] == pytest.approx(0.005)
    assert metrics["epochs"]["epoch"] == [1, 2, 3]
    assert metrics["epochs"]["val_accuracy"][-1] == pytest.approx(job.final_metrics["val_accuracy"])
    path = job.download(tmp_path)
    assert path.parent == tmp_path and path.suffix == ".safetensors"
    model = job.load_model()
    twin = spec.build_model(MLP_SPEC)
    twin.load_state_dict(engine.load(io.BytesIO(path.read_bytes())))
    twin.eval()
    with engine.no_grad():
        batch = engine.tensor(x[:16])
        assert np.array_equal(model(batch).numpy(), twin(batch).numpy())
    assert [line["level"] for line in job.logs()][:1] == ["INFO"]


def test_a_422_is_an_exception_naming_the_field(client):
    x, y = digits(50)
    ds = client.datasets.create("small", x, y)
    with pytest.raises(InvalidRequest) as info:
        client.jobs.submit(model=MLP_SPEC, dataset=ds, training={**TRAINING, "epochs": 0})
    assert info.value.status_code == 422 and info.value.pointer == "/training/epochs"
    assert "greater than or equal to 1" in info.value.message
    with pytest.raises(NotFound):
        client.jobs.get("no-such-job")
    with pytest.raises(InvalidRequest) as info:
        client.datasets.create("ragged", [[1.0, 2.0], [3.0]], [0, 1])
    assert info.value.pointer.startswith("/inputs")


def test_big_arrays_go_as_a_compact_upload(client):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(150_000, 16)).astype(np.float64)  # 19 MB as float64, 9.6 MB as float32
    y = rng.integers(0, 3, size=150_000)
    ds = client.datasets.create("big", x, y)
    assert (ds.num_samples, ds.input_shape, ds.num_classes) == (150_000, [16], 3)
    assert ds.raw["source"] == "upload:npz"
    multi = client.datasets.create("multi", x[:100], {"a": y[:100], "b": (y[:100] > 0).astype(int)})
    assert set(multi.targets) == {"a", "b"} and multi.raw["source"] == "inline"


def test_cancel_a_running_job_and_a_failure_raises_when_asked(client):
    x, y = digits(800)
    ds = client.datasets.create("digits-800", x, y)
    job = client.jobs.submit(model=MLP_SPEC, dataset=ds, training={**TRAINING, "epochs": 200, "batch_size": 8})
    for kind, _ in job.events():
        if kind == "metric":
            break
    job.cancel()
    with pytest.raises(JobFailed) as info:
        job.wait(raise_on_failure=True)
    assert info.value.job.status == "cancelled"
    with pytest.raises(Conflict):
        job.cancel()
    assert client.jobs.list(status="cancelled")[0].id == job.id


class _Flaky(http.server.BaseHTTPRequestHandler):
    """A server that answers 503 twice, then 200; /bad answers 422 (counted)."""

    calls: list[str] = []

    def do_GET(self):  # noqa: N802 - the http.server API
        _Flaky.calls.append(self.path)
        if self.path == "/v1/bad":
            self._send(422, {"detail": [{"loc": ["query", "x"], "pointer": "/", "msg": "bad x", "type": "v"}]})
        elif sum(p == self.path for p in _Flaky.calls) <= 2:
            self._send(503, {"detail": "starting"}, {"Retry-After": "0"})
        else:
            self._send(200, {"status": "ok"})

    def _send(self, code, body, headers=None):
        data = json.dumps(body).encode()
        self.send_response(code)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *_):
        pass


def test_retries_on_503_and_connection_errors_never_on_4xx():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Flaky)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        c = Client(f"http://127.0.0.1:{server.server_port}", backoff_s=0.01)
        assert c.health() == {"status": "ok"} and _Flaky.calls.count("/v1/health") == 3
        with pytest.raises(InvalidRequest):
            c.http.json("GET", "/v1/bad")
        assert _Flaky.calls.count("/v1/bad") == 1
    finally:
        server.shutdown()
        server.server_close()
    port = server.server_port  # closed now: nothing listens
    with pytest.raises(Unreachable):
        Client(f"http://127.0.0.1:{port}", retries=2, backoff_s=0.01).health()


def test_a_python_module_is_sent_as_its_spec_and_a_custom_one_is_refused(client):
    from engine import nn
    from engine.spec import SpecError

    x, y = digits(64)
    ds = client.datasets.create("digits-64", x, y)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))
    job = client.jobs.submit(model=model, dataset=ds, training={**TRAINING, "epochs": 1})
    assert job.raw["model"] == {"layers": [{"type": "Flatten"}, {"type": "Linear", "in_features": 64,
                                                                 "out_features": 32},
                                           {"type": "ReLU"}, {"type": "Linear", "in_features": 32,
                                                              "out_features": 10}]}

    class Twice(nn.Module):
        def forward(self, x):
            return x * 2

    with pytest.raises(SpecError, match="1 .*Twice"):
        client.jobs.submit(model=nn.Sequential(nn.Flatten(), Twice()), dataset=ds, training=TRAINING)
    job.wait()


def test_tags_search_delete_and_a_sweep(client):
    x, y = digits(200)
    ds = client.datasets.create("digits-200", x, y)
    base = {"name": "base", "dataset_id": ds.id, "model": MLP_SPEC,
            "training": {**TRAINING, "epochs": 2}}
    sweep = client.sweeps.create({"name": "lr", "base": base, "method": "grid",
                                  "metric": {"name": "val_accuracy", "goal": "maximize"},
                                  "parameters": {"training.optimizer.lr": {"values": [0.01, 0.001]}},
                                  "max_concurrent": 2})
    sweep.wait(poll_s=0.5, timeout_s=300)
    assert sweep.status == "finished" and len(sweep.trials) == 2
    best = sweep.best_job()
    assert best.final_metrics["val_accuracy"] == max(t["metric"] for t in sweep.trials)
    trial_ids = {t["job_id"] for t in sweep.trials}
    assert {j.id for j in client.jobs.list(sweep=sweep.id)} == trial_ids
    best.update(tags=["winner", "lr-sweep"], notes="best of two")
    assert [j.id for j in client.jobs.list(tags=["winner"])] == [best.id]
    assert client.jobs.get(best.id).notes == "best of two"
    ranked = client.jobs.list(sweep=sweep.id, sort="-metric:val_accuracy")
    assert ranked[0].id == best.id
    loser = next(j for j in ranked if j.id != best.id)
    loser.delete()
    with pytest.raises(NotFound):
        client.jobs.get(loser.id)
    with pytest.raises(Conflict):
        queued = client.jobs.submit(model=MLP_SPEC, dataset=ds, training={**TRAINING, "epochs": 50})
        client.datasets.delete(ds)
    queued.cancel().wait()  # a running job stops at its next step
    client.datasets.delete(ds)
    with pytest.raises(NotFound):
        client.datasets.get(ds.id)


def test_predict_evaluate_and_export_from_python(client, tmp_path):
    import onnxruntime  # a test dependency
    x, y = digits(200)
    ds = client.datasets.create("digits-200b", x, y)
    job = client.jobs.submit(model=MLP_SPEC, dataset=ds, training={**TRAINING, "epochs": 2})
    job.wait()
    answer = job.predict(x[:5])
    model = job.load_model()
    with engine.no_grad():
        expected = model(engine.tensor(x[:5])).numpy()
    assert np.array_equal(np.asarray(answer["outputs"]["output"], np.float32), expected)
    assert answer["predictions"]["output"] == expected.argmax(1).tolist()
    ev = job.evaluate(ds)
    assert ev["status"] == "succeeded" and ev["results"]["num_samples"] == 200
    path = job.export(tmp_path / "model.onnx")
    session = onnxruntime.InferenceSession(str(path))
    out = session.run(None, {session.get_inputs()[0].name: x[:5]})[0]
    assert np.abs(out - expected).max() < 1e-4
