"""ONNX export tests: models with seeded random weights exported, checked with onnx.checker and
run with onnxruntime against the engine's eval-mode forward; plus the in-process API."""
from __future__ import annotations

import uuid

import numpy as np
import pytest

TOLERANCE = 1e-4  # max abs difference between onnxruntime and the engine (float32)


def randomize(model, seed: int) -> None:
    """Seeded weights everywhere: layer weights from He's normal (so deep models keep a signal),
    constant-initialized tensors (biases, norm weights, running statistics) random too, so every
    parameter and buffer matters to the output."""
    import engine

    rng = np.random.default_rng(seed)
    state = {}
    for key, value in model.state_dict().items():
        a = np.asarray(value)
        if a.dtype.kind != "f":
            state[key] = value
            continue
        if key.endswith("weight") and a.ndim >= 2 and "weight_" not in key.rsplit(".", 1)[-1]:
            a = rng.normal(0, np.sqrt(2.0 / max(1, int(np.prod(a.shape[1:])))), a.shape)  # He: signals survive depth
        elif key.endswith("bias") or "bias_" in key.rsplit(".", 1)[-1]:
            a = rng.normal(0, 0.05, a.shape)
        elif key.endswith("running_var"):
            a = rng.uniform(0.5, 1.5, a.shape)
        elif key.endswith("running_mean"):
            a = rng.normal(0, 0.2, a.shape)
        elif a.size and np.all(a == a.flat[0]):  # zeros / ones at init
            a = a + rng.normal(0, 0.2, a.shape)
        state[key] = engine.tensor(np.asarray(a, dtype=np.float32))
    model.load_state_dict(state)


def engine_forward(model, inputs: dict[str, np.ndarray]):
    import engine

    model.eval()
    with engine.no_grad():
        out = model(*[engine.tensor(v) for v in inputs.values()])
    if isinstance(out, dict):
        return {k: np.asarray(v) for k, v in out.items()}
    return {"output": np.asarray(out)}


def run_onnx(data: bytes, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    import onnxruntime as ort

    sess = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    return dict(zip(names, sess.run(None, inputs)))


def compare(model, sample_shapes: dict[str, tuple], *, batches=(1, 7), seed: int = 0,
            dtypes: dict | None = None, make_input=None) -> float:
    """Export ``model``, check it (onnx.checker with strict shape inference), run it with
    onnxruntime on each batch size and compare with the engine; returns the max abs diff."""
    import onnx

    from export import to_onnx

    dtypes = dtypes or {}
    shapes = dict(sample_shapes)
    first = next(iter(dtypes.values()), np.float32)
    proto = to_onnx(model, shapes if len(shapes) > 1 else next(iter(shapes.values())), input_dtype=first)
    onnx.checker.check_model(proto, full_check=True)
    onnx.shape_inference.infer_shapes(proto, check_type=True, strict_mode=True)
    assert [i.name for i in proto.graph.input] == list(shapes)
    assert all(i.type.tensor_type.shape.dim[0].dim_param == "batch" for i in proto.graph.input)
    assert proto.opset_import[0].version >= 17
    data = proto.SerializeToString()
    rng = np.random.default_rng(seed)
    worst = 0.0
    for n in batches:
        if make_input is not None:
            inputs = make_input(rng, n)
        else:
            inputs = {k: rng.normal(size=(n, *s)).astype(np.float32) for k, s in shapes.items()}
        want = engine_forward(model, inputs)
        got = run_onnx(data, inputs)
        assert set(got) == set(want), (set(got), set(want))
        for k in want:
            assert got[k].shape == want[k].shape, (k, got[k].shape, want[k].shape)
            diff = float(np.abs(got[k].astype(np.float64) - want[k]).max()) if want[k].size else 0.0
            assert diff <= TOLERANCE, f"{k} batch {n}: max abs diff {diff}"
            if n > 1 and want[k].size > n:  # a meaningful comparison: the outputs depend on the input
                assert float(want[k].std(0).max()) > 1e-3, f"{k}: the output hardly depends on the input"
            worst = max(worst, diff)
    return worst


@pytest.fixture
def check():
    return compare


@pytest.fixture
def random_weights():
    return randomize


@pytest.fixture
def settings(database_url, embedded_redis_url):
    from config.settings import Settings

    return Settings(database_url=database_url, redis_url=embedded_redis_url, queue=f"test-{uuid.uuid4().hex[:8]}")


@pytest.fixture
def client(settings):
    from fastapi.testclient import TestClient

    from api.main import create_app
    from config.settings import get_settings

    app = create_app()
    app.dependency_overrides[get_settings] = lambda: settings
    with TestClient(app, raise_server_exceptions=True) as c:
        yield c
