"""engine.save / engine.load: round trips, torch interop via safetensors, hostile input."""
import io
import json
import struct

import numpy as np
import pytest

import engine
from engine import nn, optim
from engine.serialization import SerializationError, load, load_metadata, save


def test_state_dict_round_trip_path_and_bytesio(tmp_path):
    m = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    sd = m.state_dict()
    path = tmp_path / "m.safetensors"
    save(sd, path, metadata={"epoch": "3", "spec": json.dumps({"layers": []})})
    buf = io.BytesIO()
    save(sd, buf)
    for src in (path, str(path), io.BytesIO(buf.getvalue())):
        out = load(src)
        assert list(out) == list(sd)
        for k in sd:
            assert out[k].dtype is sd[k].dtype
            np.testing.assert_array_equal(out[k]._data, sd[k]._data)
    assert load_metadata(path) == {"epoch": "3", "spec": '{"layers": []}'}
    assert load_metadata(io.BytesIO(buf.getvalue())) == {}
    m2 = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    m2.load_state_dict(load(path))
    x = engine.ones(2, 3)
    np.testing.assert_array_equal(m2(x)._data, m(x)._data)


def test_torch_reads_engine_and_engine_reads_torch(torch, tmp_path):
    from safetensors.torch import load_file, save_file

    em = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    tm = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2))
    save(em.state_dict(), tmp_path / "e.safetensors", metadata={"step": "10"})
    tm.load_state_dict(load_file(tmp_path / "e.safetensors"), strict=True)
    x = np.random.default_rng(0).standard_normal((5, 3)).astype(np.float32)
    np.testing.assert_allclose(tm(torch.tensor(x)).detach().numpy(), em(engine.tensor(x))._data, rtol=1e-5, atol=1e-6)
    tm2 = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2))
    save_file(tm2.state_dict(), tmp_path / "t.safetensors", metadata={"a": "b"})
    em.load_state_dict(load(tmp_path / "t.safetensors"), strict=True)
    np.testing.assert_allclose(tm2(torch.tensor(x)).detach().numpy(), em(engine.tensor(x))._data, rtol=1e-5, atol=1e-6)
    assert load_metadata(tmp_path / "t.safetensors") == {"a": "b"}


def test_nested_objects_round_trip(tmp_path):
    p = nn.Parameter(engine.ones(3))
    opt = optim.Adam([p], lr=0.1, amsgrad=True)
    p.grad = engine.ones(3)
    opt.step()
    obj = {
        "model": {"w": engine.tensor(np.arange(6.0).reshape(2, 3)), "n": engine.tensor(np.arange(3))},
        "optimizer": opt.state_dict(),
        "epoch": 4, "loss": 0.25, "best": float("inf"), "flags": [True, None, "x"], "shape": (2, 3),
        "array": np.arange(4, dtype=np.int32), "empty": {}, 7: "int key", "dotted.key": engine.zeros(1),
        "dotted": {"key": engine.ones(1)},
    }
    save(obj, tmp_path / "ckpt.safetensors", metadata={"job": "j1"})
    out = load(tmp_path / "ckpt.safetensors")
    assert out.keys() == obj.keys()
    assert out["epoch"] == 4 and out["loss"] == 0.25 and out["best"] == float("inf")
    assert out["flags"] == [True, None, "x"] and out["shape"] == (2, 3) and out[7] == "int key"
    np.testing.assert_array_equal(out["array"], obj["array"])
    assert out["array"].dtype == np.int32
    np.testing.assert_array_equal(out["model"]["w"]._data, obj["model"]["w"]._data)
    assert out["model"]["n"].dtype is engine.int64
    assert float(out["dotted.key"]._data[0]) == 0 and float(out["dotted"]["key"]._data[0]) == 1
    sd = opt.state_dict()
    assert out["optimizer"]["param_groups"] == sd["param_groups"]
    assert set(out["optimizer"]["state"]) == {0}
    for k, v in sd["state"][0].items():
        np.testing.assert_array_equal(out["optimizer"]["state"][0][k]._data, v._data)
    opt2 = optim.Adam([nn.Parameter(engine.ones(3))], lr=0.1, amsgrad=True)
    opt2.load_state_dict(out["optimizer"])
    assert load_metadata(tmp_path / "ckpt.safetensors") == {"job": "j1"}


def test_single_tensor_and_requires_grad():
    buf = io.BytesIO()
    save(engine.tensor([1.0, 2.0], requires_grad=True), buf)
    t = load(io.BytesIO(buf.getvalue()))
    assert isinstance(t, engine.Tensor) and t.requires_grad
    np.testing.assert_array_equal(t._data, [1.0, 2.0])


def test_unsupported_objects_are_refused():
    with pytest.raises(TypeError):
        save({"f": lambda: 0}, io.BytesIO())
    with pytest.raises(TypeError):
        save({"a": engine.ones(1)}, io.BytesIO(), metadata={"a": 1})


def _valid_bytes():
    buf = io.BytesIO()
    save({"w": engine.ones(2, 2), "meta": [1, 2]}, buf)
    return buf.getvalue()


@pytest.mark.parametrize("mutate", [
    lambda b: b[:5],
    lambda b: b[:-3],
    lambda b: b"",
    lambda b: struct.pack("<Q", 10**12) + b[8:],
    lambda b: b[:8] + b"[" + b[9:],
    lambda b: b[:8] + b"\xff" * (len(b) - 8),
    lambda b: b"\x80\x04\x95" + b"cos\nsystem\n(S'echo hacked'\ntR." * 3,  # a pickle
])
def test_malformed_files_raise_clean_errors(mutate):
    with pytest.raises(SerializationError) as err:
        load(io.BytesIO(mutate(_valid_bytes())))
    assert isinstance(err.value, ValueError)


def _with_structure(structure=None, raw=None):
    from safetensors.numpy import save as st_save

    if raw is None:
        raw = json.dumps({"v": 1, "root": structure, "auto": []})
    return st_save({"a": np.zeros(2, np.float32)}, metadata={"__trainyard__": raw})


@pytest.mark.parametrize("structure", [
    {"T": "missing"}, {"X": 1}, {"D": [[1]]}, {"F": "__import__('os')"}, {"L": 5},
    {"D": [[{"L": []}, 1]]}, {}, ["raw list"],
])
def test_hostile_structure_raises(structure):
    with pytest.raises(SerializationError):
        load(io.BytesIO(_with_structure(structure)))


def test_deep_nesting_raises():
    deep = {"T": "a"}
    for _ in range(300):
        deep = {"L": [deep]}
    with pytest.raises(SerializationError):
        load(io.BytesIO(_with_structure(deep)))
    raw = '{"v": 1, "auto": [], "root": ' + '{"L": [' * 100000 + '1' + ']}' * 100000 + '}'
    with pytest.raises(SerializationError):
        load(io.BytesIO(_with_structure(raw=raw)))
    with pytest.raises(SerializationError):
        load(io.BytesIO(_with_structure(raw="not json")))


DTYPES = ["float16", "float32", "float64", "int32", "int64", "bool"]


def test_dtypes_and_shapes_round_trip_and_cross_load(torch, tmp_path):
    """Every engine dtype (0-d to 3-d) survives save/load, and torch reads the same dtypes."""
    from safetensors.torch import load_file, save_file

    rng = np.random.default_rng(0)
    sd = {}
    for i, name in enumerate(DTYPES):
        shape = [(), (3,), (2, 3), (2, 1, 4)][i % 4]
        a = rng.standard_normal(shape) * 10
        sd[f"t.{name}"] = engine.tensor(a.astype(name) if name != "bool" else a > 0)
    save(sd, tmp_path / "d.safetensors")
    out = load(tmp_path / "d.safetensors")
    theirs = load_file(tmp_path / "d.safetensors")
    for k, v in sd.items():
        assert out[k].dtype is v.dtype and out[k].shape == v.shape
        np.testing.assert_array_equal(out[k]._data, v._data)
        assert str(theirs[k].dtype) == f"torch.{k.split('.')[1]}"
        np.testing.assert_array_equal(theirs[k].numpy(), v._data)
    save_file({k: torch.tensor(np.asarray(v._data)) for k, v in sd.items()}, tmp_path / "t.safetensors")
    back = load(tmp_path / "t.safetensors")
    for k, v in sd.items():
        assert back[k].dtype is v.dtype
        np.testing.assert_array_equal(back[k]._data, v._data)


def test_map_location_forms(device):
    obj = {"w": engine.ones(2, 3), "opt": {"state": {0: {"step": engine.tensor(3.0)}}}, "n": [engine.zeros(1)]}
    buf = io.BytesIO()
    save(obj, buf)
    data = buf.getvalue()
    moved = []

    def to_device(t, loc):
        moved.append(loc)
        return t.to(device)

    for loc in (device, engine.device(device), {"cpu": device}, to_device):
        out = load(io.BytesIO(data), map_location=loc)
        for t in (out["w"], out["opt"]["state"][0]["step"], out["n"][0]):
            assert t.device.type == device
        np.testing.assert_array_equal(engine.backend.to_numpy(out["w"]._data), np.ones((2, 3)))
    assert moved == ["cpu"] * 3
    flat = io.BytesIO()
    save({"a": engine.ones(2)}, flat)
    assert load(io.BytesIO(flat.getvalue()), map_location=device)["a"].device.type == device
