"""engine.spec.to_spec, the inverse of build_model: exact spec round trips (zoo, graph, random
Sequentials), rebuilt modules equal to the original (state_dict keys, shapes, outputs), and
modules no spec can express rejected with the sub-module's qualified name."""
from __future__ import annotations

import json
from collections import OrderedDict

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import engine
from engine import nn, spec
from engine.spec import export, graph
from engine.spec.layers import accepted_args, check_layer, construct
from engine.spec.shapes import ShapeError, infer_layer
from tests.engine.spec.test_shapes import layer_case

B = 3
# the zoo's arguments for small models, as tests/worker/test_heads.py trains them
TINY = {"vgg11": {"width": 4, "classifier_width": 8, "pool_size": 1, "dropout": 0.0},
        "resnet18": {"width": 2}, "mlp": {"hidden": [8]},
        "lstm_classifier": {"hidden_size": 4}, "gru_classifier": {"hidden_size": 4},
        "transformer_classifier": {"d_model": 4, "nhead": 2, "num_layers": 1, "dim_feedforward": 8}}


def _shapes(m):
    return [(k, tuple(v.shape)) for k, v in m.state_dict().items()]


def _array(out):
    if isinstance(out, dict):
        return {k: _array(v) for k, v in out.items()}
    if isinstance(out, (tuple, list)):
        return [_array(o) for o in out]
    return np.asarray(out._data)


def _assert_same_forward(a, b, *inputs):
    """``b`` loads ``a``'s weights and computes exactly what ``a`` computes (eval mode)."""
    b.load_state_dict(a.state_dict())
    a.eval()
    b.eval()
    with engine.no_grad():
        out_a, out_b = _array(a(*inputs)), _array(b(*inputs))
    np.testing.assert_equal(out_a, out_b)


def _strip(m):
    m.__dict__.pop(export.TAG, None)
    m.__dict__.pop(export.STRUCTURE, None)
    return m


def _randn(*shape, seed=0):
    return engine.randn(*shape, generator=engine.Generator().manual_seed(seed))


# ------------------------------------------------------------------------------------------ zoo
@pytest.mark.parametrize("sample", [(1, 8, 8), (3, 8, 8)])
@pytest.mark.parametrize("name", sorted(spec.ZOO))
def test_every_zoo_model_maps_back_to_its_zoo_spec(name, sample):
    s = {"zoo": name, "args": TINY.get(name, {})}
    m = spec.build_model(s, sample, num_classes=3)
    assert spec.to_spec(m) == s
    assert json.loads(json.dumps(spec.to_spec(m))) == s
    assert spec.to_spec(spec.build_model({"zoo": name}, sample, num_classes=3)) == {"zoo": name}


@pytest.mark.parametrize("name", sorted(spec.ZOO))
def test_a_zoo_model_without_its_tag_gives_its_expansion_which_builds_the_same_model(name):
    sample = (1, 8, 8)
    m = _strip(spec.build_model({"zoo": name, "args": TINY.get(name, {})}, sample, num_classes=3))
    derived = spec.to_spec(m)
    expanded = spec.validate({"zoo": name, "args": TINY.get(name, {})}, sample, num_classes=3).expanded
    assert set(derived) == set(expanded)  # layers stays layers, graph stays graph
    spec.validate(derived, sample)
    rebuilt = spec.build_model(derived)
    assert _shapes(rebuilt) == _shapes(m)
    assert spec.to_spec(_strip(rebuilt)) == derived
    _assert_same_forward(m, rebuilt, _randn(B, *sample))


def test_the_tag_is_not_trusted_once_the_layers_change():
    s = {"zoo": "mlp", "args": {"hidden": [8]}}
    m = spec.build_model(s, (4,), num_classes=2)
    with engine.no_grad():  # new weights are not structure: still the zoo spec
        m[1].weight.mul_(2.0)
    m.load_state_dict(spec.build_model(s, (4,), num_classes=2).state_dict())
    assert spec.to_spec(m) == s
    m[2] = nn.Tanh()
    assert spec.to_spec(m) == {"layers": [{"type": "Flatten"}, {"type": "Linear", "in_features": 4, "out_features": 8},
                                          {"type": "Tanh"}, {"type": "Linear", "in_features": 8, "out_features": 2}]}
    m[2] = nn.ReLU()
    assert spec.to_spec(m) == s
    m[3].out_features = 5  # an attribute that no longer matches the weights
    with pytest.raises(spec.SpecError, match=r"model\.3 \(Linear\) has weight of shape \[2, 8\]"):
        spec.to_spec(m)


# ---------------------------------------------------------------------------------------- graph
GRAPH = {"graph": {"inputs": ["image", "extra"], "nodes": [
    {"name": "conv", "type": "Conv2d", "inputs": ["image"], "in_channels": 1, "out_channels": 4, "kernel_size": 3,
     "padding": 1, "bias": False},
    {"name": "bn", "type": "BatchNorm2d", "inputs": ["conv"], "num_features": 4},
    {"name": "act", "type": "ReLU", "inputs": ["bn"]},
    {"name": "skip", "op": "add", "inputs": ["act", "image"]},
    {"name": "pool", "type": "AdaptiveAvgPool2d", "inputs": ["skip"], "output_size": [2, 1]},
    {"name": "flat", "op": "flatten", "inputs": ["pool"], "start_dim": 1},
    {"name": "both", "op": "cat", "inputs": ["flat", "extra"], "dim": 1},
    {"name": "digit", "type": "Linear", "inputs": ["both"], "in_features": 11, "out_features": 10},
    {"name": "parity", "type": "Linear", "inputs": ["both"], "in_features": 11, "out_features": 2},
], "outputs": {"digit": "digit", "parity": "parity"}}}


def test_a_graph_spec_round_trips_with_and_without_the_tag():
    spec.validate(GRAPH, {"image": (1, 6, 6), "extra": (3,)})
    m = spec.build_model(GRAPH)
    assert spec.to_spec(m) == GRAPH
    plain = spec.GraphModule(spec.parse(GRAPH))  # never tagged: read from the plan and its layers
    assert spec.to_spec(plain) == GRAPH
    rebuilt = spec.build_model(spec.to_spec(plain))
    assert _shapes(rebuilt) == _shapes(m)
    _assert_same_forward(m, rebuilt, _randn(B, 1, 6, 6), _randn(B, 3, seed=1))


def test_a_graph_spec_keeps_its_own_spelling_through_the_tag():
    g = {"graph": {"nodes": [{"name": "fc", "type": "Linear", "inputs": "x", "in_features": 3, "out_features": 2,
                              "bias": True},
                             {"name": "pool", "type": "MaxPool1d", "inputs": ["fc"], "kernel_size": [2],
                              "stride": 2}]}}
    m = spec.build_model(g)
    assert spec.to_spec(m) == g
    assert spec.to_spec(_strip(m)) == {"graph": {"inputs": ["x"], "nodes": [
        {"name": "fc", "type": "Linear", "inputs": ["x"], "in_features": 3, "out_features": 2},
        {"name": "pool", "type": "MaxPool1d", "inputs": ["fc"], "kernel_size": 2}], "outputs": "pool"}}


# --------------------------------------------------------------------------- random Sequentials
ACTIVATIONS = [{"type": "ReLU"}, {"type": "ReLU", "inplace": True}, {"type": "Tanh"}, {"type": "Sigmoid"},
               {"type": "GELU"}, {"type": "GELU", "approximate": "tanh"}, {"type": "LeakyReLU"},
               {"type": "LeakyReLU", "negative_slope": 0.2}, {"type": "ELU", "alpha": 0.5}, {"type": "SiLU"},
               {"type": "ReLU6"}, {"type": "Hardtanh", "min_val": -2.0}, {"type": "Softmax", "dim": 1},
               {"type": "LogSoftmax", "dim": -1}, {"type": "Identity"}]


def _put(entry: dict, key: str, value, default):
    """Minimal spelling: an argument at its default is left out."""
    if value != default or type(value) is not type(default):
        entry[key] = value


def _sizes(draw, nd: int, lo: int, hi: int):
    """One integer, or (2-d, sometimes) a list of two different ones."""
    if nd == 2 and draw(st.booleans()):
        a = draw(st.integers(lo, hi))
        b = draw(st.integers(lo, hi).filter(lambda v: v != a))
        return [a, b]
    return draw(st.integers(lo, hi))


def _first(v):
    return v[0] if isinstance(v, list) else v


@st.composite
def _layer(draw, shape):
    """A layer entry that may follow an output of ``shape`` (batch included)."""
    rank = len(shape) - 1
    shaped = {1: ["BatchNorm1d"], 2: ["Conv1d", "BatchNorm1d", "MaxPool1d", "AvgPool1d", "AdaptiveAvgPool1d"],
              3: ["Conv2d", "BatchNorm2d", "MaxPool2d", "AvgPool2d", "AdaptiveAvgPool2d", "Dropout2d"]}[rank]
    kinds = ["act", "Linear", "LayerNorm", "Dropout"] + (["Flatten"] if rank >= 2 else [])
    if rank >= 2 and draw(st.booleans()):
        kind = f"Conv{rank - 1}d"  # the layer with the most arguments, drawn more often
    else:
        kind = draw(st.sampled_from(shaped if draw(st.booleans()) else kinds + shaped))
    if kind == "act":
        return dict(draw(st.sampled_from(ACTIVATIONS)))
    e: dict = {"type": kind}
    if kind == "Flatten":
        pass
    elif kind == "Linear":
        e.update(in_features=shape[-1], out_features=draw(st.integers(1, 6)))
        _put(e, "bias", draw(st.booleans()), True)
    elif kind == "LayerNorm":
        e["normalized_shape"] = shape[-1] if rank < 3 or draw(st.booleans()) else list(shape[-2:])
        _put(e, "eps", draw(st.sampled_from([1e-5, 1e-3])), 1e-5)
        _put(e, "elementwise_affine", draw(st.booleans()), True)
        if e.get("elementwise_affine", True):
            _put(e, "bias", draw(st.booleans()), True)
    elif kind.startswith("Dropout"):
        _put(e, "p", draw(st.sampled_from([0.5, 0.0, 0.25, 1.0])), 0.5)
    elif kind.startswith("BatchNorm"):
        e["num_features"] = shape[1]
        _put(e, "eps", draw(st.sampled_from([1e-5, 1e-3])), 1e-5)
        _put(e, "momentum", draw(st.sampled_from([0.1, 0.3, None])), 0.1)
        _put(e, "affine", draw(st.booleans()), True)
        _put(e, "track_running_stats", draw(st.booleans()), True)
        if e.get("affine", True):
            _put(e, "bias", draw(st.booleans()), True)
    elif kind.startswith("Conv"):
        nd = rank - 1
        cin = shape[1]
        groups = draw(st.sampled_from([g for g in (1, 2, 3) if cin % g == 0]))
        e.update(in_channels=cin, out_channels=groups * draw(st.integers(1, 3)), kernel_size=_sizes(draw, nd, 1, 3))
        stride = _sizes(draw, nd, 1, 2)
        _put(e, "stride", stride, 1)
        if stride == 1 and draw(st.booleans()):
            e["padding"] = draw(st.sampled_from(["same", "valid"]))
        else:
            _put(e, "padding", _sizes(draw, nd, 0, 1), 0)
        _put(e, "dilation", _sizes(draw, nd, 1, 2), 1)
        _put(e, "groups", groups, 1)
        _put(e, "bias", draw(st.booleans()), True)
        if isinstance(e.get("padding", 0), int) and min(shape[2:]) > 2:
            _put(e, "padding_mode", draw(st.sampled_from(["zeros", "reflect", "replicate", "circular"])), "zeros")
    elif kind.startswith("Adaptive"):
        e["output_size"] = _sizes(draw, rank - 1, 1, 3)
    else:  # MaxPool / AvgPool
        nd = rank - 1
        k = _sizes(draw, nd, 1, 3)
        e["kernel_size"] = k
        stride = draw(st.sampled_from([None, 1, 2]))
        if stride is not None and stride != k:
            e["stride"] = stride
        _put(e, "padding", draw(st.integers(0, min(k) // 2 if isinstance(k, list) else k // 2)), 0)
        if kind.startswith("Max"):
            _put(e, "dilation", draw(st.integers(1, 2)), 1)
        else:
            _put(e, "count_include_pad", draw(st.booleans()), True)
        _put(e, "ceil_mode", draw(st.booleans()), False)
    return e


@st.composite
def sequential_spec(draw):
    """A valid ``layers`` spec in to_spec's spelling (defaults left out) and its sample shape."""
    rank = draw(st.sampled_from([3, 2, 1]))
    sample = (draw(st.integers(1, 4)),) + tuple(draw(st.integers(4, 8)) for _ in range(rank - 1))
    shape, layers = (B, *sample), []
    for _ in range(draw(st.integers(1, 6))):
        entry = draw(_layer(shape))
        try:
            out, _, _ = infer_layer(entry["type"], {k: v for k, v in entry.items() if k != "type"}, [shape])
        except ShapeError:
            continue
        layers.append(entry)
        shape = out
    if not layers:
        layers.append({"type": "Identity"})
    return {"layers": layers}, sample


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(sequential_spec())
def test_random_sequential_specs_round_trip_exactly(case):
    s, sample = case
    spec.validate(s, sample)
    m = spec.build_model(s)
    assert spec.to_spec(m) == s  # through build_model's tag
    plain = nn.Sequential(*m)  # the same layers in a Sequential built in Python: read from the layers
    derived = spec.to_spec(plain)
    assert derived == s
    assert json.loads(json.dumps(derived)) == s
    rebuilt = spec.build_model(derived)
    assert _shapes(rebuilt) == _shapes(plain)
    _assert_same_forward(plain, rebuilt, _randn(B, *sample))


# ---------------------------------------------------------------------------- every layer type
MINIMAL = {
    "AdaptiveAvgPool1d": {"output_size": 2}, "AdaptiveAvgPool2d": {"output_size": 2},
    "AdaptiveMaxPool1d": {"output_size": 2}, "AdaptiveMaxPool2d": {"output_size": 2},
    "AvgPool1d": {"kernel_size": 2}, "AvgPool2d": {"kernel_size": 2}, "MaxPool1d": {"kernel_size": 2},
    "MaxPool2d": {"kernel_size": 2}, "BatchNorm1d": {"num_features": 3}, "BatchNorm2d": {"num_features": 3},
    "InstanceNorm1d": {"num_features": 3}, "InstanceNorm2d": {"num_features": 3},
    "Bilinear": {"in1_features": 2, "in2_features": 3, "out_features": 4},
    "Conv1d": {"in_channels": 2, "out_channels": 4, "kernel_size": 3},
    "Conv2d": {"in_channels": 2, "out_channels": 4, "kernel_size": 3},
    "ConvTranspose1d": {"in_channels": 2, "out_channels": 4, "kernel_size": 3},
    "ConvTranspose2d": {"in_channels": 2, "out_channels": 4, "kernel_size": 3},
    "Embedding": {"num_embeddings": 5, "embedding_dim": 3}, "GroupNorm": {"num_groups": 2, "num_channels": 4},
    "GRU": {"input_size": 3, "hidden_size": 4}, "LSTM": {"input_size": 3, "hidden_size": 4},
    "RNN": {"input_size": 3, "hidden_size": 4}, "GRUCell": {"input_size": 3, "hidden_size": 4},
    "LSTMCell": {"input_size": 3, "hidden_size": 4}, "RNNCell": {"input_size": 3, "hidden_size": 4},
    "LayerNorm": {"normalized_shape": 4}, "RMSNorm": {"normalized_shape": 4}, "Linear": {"in_features": 3,
                                                                                          "out_features": 2},
    "MultiheadAttention": {"embed_dim": 4, "num_heads": 2}, "Threshold": {"threshold": 0.1, "value": 0.0},
    "TransformerEncoderLayer": {"d_model": 4, "nhead": 2},
    "TransformerEncoder": {"encoder_layer": {"type": "TransformerEncoderLayer", "d_model": 4, "nhead": 2},
                           "num_layers": 2},
    "Unflatten": {"dim": 1, "unflattened_size": [2, 2]},
}
# beyond the minimal arguments: every other argument a layer stores, at a non-default value
RICH = {
    "AdaptiveMaxPool2d": {"output_size": [2, 3], "return_indices": True},
    "AvgPool2d": {"kernel_size": [2, 3], "stride": 1, "padding": 1, "ceil_mode": True, "count_include_pad": False,
                  "divisor_override": 2},
    "Conv2d": {"in_channels": 2, "out_channels": 4, "kernel_size": [3, 1], "stride": [2, 1], "padding": "valid",
               "dilation": 2, "groups": 2, "bias": False, "padding_mode": "circular"},
    "ConvTranspose1d": {"in_channels": 2, "out_channels": 4, "kernel_size": 3, "stride": 2, "output_padding": 1,
                        "dilation": 2, "padding": 1},
    "Embedding": {"num_embeddings": 5, "embedding_dim": 3, "padding_idx": 4, "max_norm": 1.0, "norm_type": 1.0,
                  "scale_grad_by_freq": True},
    "GroupNorm": {"num_groups": 2, "num_channels": 4, "eps": 0.001, "bias": False},
    "InstanceNorm2d": {"num_features": 3, "affine": True, "track_running_stats": True, "momentum": 0.2},
    "LSTM": {"input_size": 3, "hidden_size": 4, "num_layers": 2, "bias": False, "batch_first": True,
             "dropout": 0.25, "bidirectional": True, "proj_size": 2},
    "RNN": {"input_size": 3, "hidden_size": 4, "nonlinearity": "relu"},
    "RNNCell": {"input_size": 3, "hidden_size": 4, "nonlinearity": "relu", "bias": False},
    "MultiheadAttention": {"embed_dim": 4, "num_heads": 2, "dropout": 0.1, "bias": False, "add_bias_kv": True,
                           "add_zero_attn": True, "kdim": 3, "vdim": 5, "batch_first": True},
    "RMSNorm": {"normalized_shape": [2, 4], "eps": 0.001, "elementwise_affine": False},
    "TransformerEncoder": {"encoder_layer": {"type": "TransformerEncoderLayer", "d_model": 4, "nhead": 2,
                                             "dim_feedforward": 8, "dropout": 0.0, "activation": "gelu",
                                             "layer_norm_eps": 0.001, "batch_first": True, "norm_first": True,
                                             "bias": False},
                           "num_layers": 3, "norm": {"type": "LayerNorm", "normalized_shape": 4, "bias": False}},
    "Softplus": {"beta": 2.0, "threshold": 10.0},
    "CELU": {"alpha": 2.0, "inplace": True},
    "Flatten": {"start_dim": 0, "end_dim": 2},
    "GLU": {"dim": 1},
    "AlphaDropout": {"p": 0.2},
}


def _entries():
    for name in sorted(spec.layer_types()):
        yield {"type": name, **MINIMAL.get(name, {})}
        if name in RICH:
            yield {"type": name, **RICH[name]}


@pytest.mark.parametrize("entry", list(_entries()), ids=lambda e: e["type"] + ("+" if e["type"] in RICH else ""))
def test_every_layer_type_round_trips(entry):
    layer = construct(("layers", 0), *check_layer(("layers", 0), entry))
    assert spec.to_spec(layer) == {"layers": [entry]}
    assert spec.to_spec(nn.Sequential(layer)) == {"layers": [entry]}
    rebuilt = spec.build_model({"layers": [entry]})
    assert _shapes(rebuilt[0]) == _shapes(layer)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(layer_case())
def test_any_valid_layer_reads_back_to_an_equivalent_minimal_entry(case):
    """Layers from test_shapes' strategy (arguments often spelled out at their defaults): the
    entry read back drops exactly the defaults, and builds a layer that reads back the same."""
    entry, _ = case
    cls, kwargs = check_layer(("layers", 0), entry)
    layer = construct(("layers", 0), cls, kwargs)
    (back,) = spec.to_spec(layer)["layers"]
    params = accepted_args(cls)
    for key, value in entry.items():
        if key in ("type", "encoder_layer", "norm"):
            continue
        value = export.canonical(key, value)
        if key in back:
            assert export._equal(back[key], value), (key, entry, back)
        elif key == "stride" and "Pool" in entry["type"]:
            assert export._equal(value, export.canonical("kernel_size", entry["kernel_size"]))
        elif key == "bias" and (not entry.get("affine", "Norm" not in entry["type"] or "Batch" in entry["type"])
                                or not entry.get("elementwise_affine", True)):
            pass  # no weight, no bias: the argument changes nothing
        elif key not in export._UNSTORED.get(entry["type"], ()):
            assert export._equal(value, export.canonical(key, params[key].default)), (key, entry, back)
    rebuilt = spec.build_model({"layers": [back]})
    assert _shapes(rebuilt[0]) == _shapes(layer)
    assert spec.to_spec(nn.Sequential(*rebuilt)) == {"layers": [back]}


# ------------------------------------------------------------------------- models built in Python
def test_the_clients_example():
    m = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    assert spec.to_spec(m) == {"layers": [{"type": "Linear", "in_features": 4, "out_features": 8}, {"type": "ReLU"},
                                          {"type": "Linear", "in_features": 8, "out_features": 2}]}


def test_a_cnn_written_in_python():
    m = nn.Sequential(nn.Conv2d(1, 8, (3, 3), padding=(1, 1), bias=False), nn.BatchNorm2d(8), nn.ReLU(inplace=True),
                      nn.MaxPool2d((2, 2), stride=2), nn.Dropout2d(0.1), nn.Flatten(),
                      nn.Linear(8 * 4 * 4, 10))
    s = spec.to_spec(m)
    assert s == {"layers": [
        {"type": "Conv2d", "in_channels": 1, "out_channels": 8, "kernel_size": 3, "padding": 1, "bias": False},
        {"type": "BatchNorm2d", "num_features": 8}, {"type": "ReLU", "inplace": True},
        {"type": "MaxPool2d", "kernel_size": 2}, {"type": "Dropout2d", "p": 0.1}, {"type": "Flatten"},
        {"type": "Linear", "in_features": 128, "out_features": 10}]}
    assert spec.validate(s, (1, 8, 8)).outputs == {"output": (spec.SYMBOLIC_BATCH, 10)}
    rebuilt = spec.build_model(s)
    assert _shapes(rebuilt) == _shapes(m)
    _assert_same_forward(m, rebuilt, _randn(B, 1, 8, 8))


def test_numpy_numbers_become_json_numbers():
    m = nn.Sequential(nn.Linear(np.int64(4), np.int64(3)), nn.Dropout(np.float64(0.25)))
    s = spec.to_spec(m)
    assert s == {"layers": [{"type": "Linear", "in_features": 4, "out_features": 3}, {"type": "Dropout", "p": 0.25}]}
    assert all(type(v) in (str, int, float) for e in s["layers"] for v in e.values())


def test_named_children_become_a_graph_chain_with_the_same_state_dict_keys():
    m = nn.Sequential(OrderedDict(encoder=nn.Linear(3, 4), act=nn.Tanh(), head=nn.Linear(4, 2)))
    s = spec.to_spec(m)
    assert s == {"graph": {"inputs": ["x"], "nodes": [
        {"name": "encoder", "inputs": ["x"], "type": "Linear", "in_features": 3, "out_features": 4},
        {"name": "act", "inputs": ["encoder"], "type": "Tanh"},
        {"name": "head", "inputs": ["act"], "type": "Linear", "in_features": 4, "out_features": 2}],
        "outputs": "head"}}
    rebuilt = spec.build_model(s)
    assert _shapes(rebuilt) == _shapes(m)
    _assert_same_forward(m, rebuilt, _randn(B, 3))
    x_named = nn.Sequential(OrderedDict(x=nn.Linear(3, 3), input=nn.ReLU()))
    assert spec.to_spec(x_named)["graph"]["inputs"] == ["inputs"]


def test_nested_sequentials_are_flattened():
    m = nn.Sequential(nn.Sequential(nn.Linear(3, 4), nn.ReLU()), nn.Sequential(nn.Sequential(nn.Linear(4, 2))))
    s = spec.to_spec(m)
    assert s == {"layers": [{"type": "Linear", "in_features": 3, "out_features": 4}, {"type": "ReLU"},
                            {"type": "Linear", "in_features": 4, "out_features": 2}]}
    rebuilt = spec.build_model(s)
    # the keys lose the nesting (0.0.weight -> 0.weight, 1.0.0.weight -> 2.weight), the shapes stay
    assert [shape for _, shape in _shapes(rebuilt)] == [shape for _, shape in _shapes(m)]
    assert list(rebuilt.state_dict()) == ["0.weight", "0.bias", "2.weight", "2.bias"]


def test_a_single_layer_and_a_sequential_subclass_without_a_forward():
    assert spec.to_spec(nn.Linear(3, 2)) == {"layers": [{"type": "Linear", "in_features": 3, "out_features": 2}]}

    class Net(nn.Sequential):
        def __init__(self):
            super().__init__(nn.Linear(3, 2), nn.Sigmoid())

    assert spec.to_spec(Net()) == {"layers": [{"type": "Linear", "in_features": 3, "out_features": 2},
                                              {"type": "Sigmoid"}]}


def test_tagging_leaves_build_models_weights_alone():
    s = {"zoo": "resnet18", "args": {"width": 2}}
    engine.manual_seed(7)
    tagged = spec.build_model(s, (1, 8, 8), num_classes=3)
    engine.manual_seed(7)
    plain = graph.build(spec.parse(s, (1, 8, 8), num_classes=3))
    assert export.TAG in tagged.__dict__ and export.TAG not in plain.__dict__
    np.testing.assert_equal({k: np.asarray(v._data) for k, v in tagged.state_dict().items()},
                            {k: np.asarray(v._data) for k, v in plain.state_dict().items()})


def test_to_spec_leaves_the_global_rng_alone():
    m = spec.build_model({"zoo": "resnet18", "args": {"width": 2}}, (1, 8, 8), num_classes=3)
    before = engine.random.get_rng_state()
    spec.to_spec(m)
    spec.to_spec(_strip(m))
    assert engine.random.get_rng_state() == before


# ---------------------------------------------------------------------------------- unexpressible
class MyBlock(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x):
        return x + self.fc(x)


class MyLinear(nn.Linear):
    pass


class LoudLinear(nn.Linear):
    def forward(self, x):
        return super().forward(x) * 2


def _error(m) -> spec.ModuleSpecError:
    with pytest.raises(spec.SpecError) as info:
        spec.to_spec(m)
    assert isinstance(info.value, spec.ModuleSpecError) and isinstance(info.value, ValueError)
    return info.value


def test_a_custom_forward_is_named():
    err = _error(MyBlock())
    assert err.module == "model"
    assert str(err).startswith("model (MyBlock) has a custom forward; only Sequential models of engine.nn layers")
    err = _error(nn.Sequential(nn.Linear(4, 4), MyBlock(), nn.ReLU()))
    assert err.module == "model.1"
    assert str(err).startswith("model.1 (MyBlock) has a custom forward")
    err = _error(nn.Sequential(nn.Linear(4, 4), nn.Sequential(nn.ReLU(), LoudLinear(4, 4))))
    assert str(err).startswith("model.1.1 (LoudLinear) has a custom forward")
    inst = nn.Sequential(nn.ReLU())
    inst[0].forward = lambda x: x
    assert str(_error(inst)).startswith("model.0 (ReLU) has a custom forward")

    class Odd(nn.Sequential):
        def forward(self, x):
            return x

    assert str(_error(Odd(nn.ReLU()))).startswith("model (Odd) has a custom forward")


def test_layers_a_spec_cannot_name_are_named():
    assert "model.0 (MyLinear) is a subclass of engine.nn.Linear" in str(_error(nn.Sequential(MyLinear(2, 2))))
    assert "model.1 (Upsample) is not a layer type a spec can name" in str(
        _error(nn.Sequential(nn.ReLU(), nn.Upsample(scale_factor=2))))
    assert "model.0 (MSELoss) is a loss" in str(_error(nn.Sequential(nn.MSELoss())))
    assert "model.0 (ModuleList)" in str(_error(nn.Sequential(nn.ModuleList([nn.ReLU()]))))
    g = spec.build_model({"graph": {"nodes": [{"name": "r", "type": "ReLU", "inputs": ["x"]}]}})
    assert "model.1 (GraphModule) is a graph model" in str(_error(nn.Sequential(nn.ReLU(), g)))
    assert "model is an empty Sequential" in str(_error(nn.Sequential()))
    enc = nn.TransformerEncoderLayer(4, 2, activation=lambda x: x)
    assert str(_error(nn.Sequential(enc))).startswith("model.0 (TransformerEncoderLayer) has activation")


def test_state_a_spec_cannot_carry_is_named():
    extra = nn.Linear(3, 2)
    extra.register_buffer("scale", engine.ones(2))
    assert "model.0 (Linear) has buffer(s) scale" in str(_error(nn.Sequential(extra)))
    frozen = nn.Sequential(nn.ReLU(), nn.Linear(3, 2))
    frozen[1].weight.requires_grad_(False)
    assert "model.1 (Linear) has a frozen parameter weight" in str(_error(frozen))
    hooked = nn.Sequential(nn.Linear(3, 2))
    hooked[0].register_forward_hook(lambda mod, args, out: out * 2)
    assert "model.0 (Linear) has forward hooks" in str(_error(hooked))
    attn = nn.MultiheadAttention(4, 2)
    attn.head_dim = 1
    assert "model.0 (MultiheadAttention) has head_dim=1 but its arguments build head_dim=2" in str(
        _error(nn.Sequential(attn)))
    enc = nn.TransformerEncoder(nn.TransformerEncoderLayer(4, 2), 2, enable_nested_tensor=False)
    enc.layers[1].dropout.p = 0.3
    assert str(_error(nn.Sequential(enc))).startswith("model.0.layers.1.dropout (Dropout) has p=0.3 but its "
                                                      "arguments build p=0.1")
    enc = nn.TransformerEncoder(nn.TransformerEncoderLayer(4, 2), 1, enable_nested_tensor=False)
    enc.layers[0].linear1 = MyLinear(4, 2048)
    assert str(_error(enc)).startswith("model.layers.0.linear1 (MyLinear) is not what the spec builds there")
    g = spec.build_model(GRAPH)
    g.conv = MyBlock()
    assert str(_error(g)).startswith("model.conv (MyBlock) has a custom forward")


def test_a_graph_with_a_replaced_layer_maps_to_the_new_layer():
    g = spec.build_model(GRAPH)
    g.act = nn.GELU()
    nodes = spec.to_spec(g)["graph"]["nodes"]
    assert nodes[2] == {"name": "act", "inputs": ["bn"], "type": "GELU"}
