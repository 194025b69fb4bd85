"""Static inference equals the real forward: every layer type, random valid arguments
(hypothesis), shapes and parameter counts compared with the built Module's."""
from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import engine
from engine import spec

B = 2


def _shapes(out):
    if isinstance(out, (tuple, list)):
        return [_shapes(o) for o in out]
    return tuple(out.shape)


def _expected(report_out):
    if isinstance(report_out, list):
        return [_expected(o) for o in report_out]
    return tuple(report_out)


def check(entry: dict, sample: tuple, dtype=engine.float32):
    """Infer ``entry`` as a one-node graph on ``sample``, build it, run it, compare."""
    graph = {"graph": {"inputs": ["x"], "nodes": [{"name": "n", "inputs": ["x"], **entry}], "outputs": "n"}}
    plan = spec.parse(graph)
    from engine.spec.shapes import infer_layer
    node = plan.nodes[0]
    shape, params, _ = infer_layer(node.type, node.kwargs, [(B, *sample)])
    model = spec.build_model(graph)
    model.eval()
    gen = engine.Generator().manual_seed(0)
    x = (engine.randint(0, 5, (B, *sample), generator=gen) if dtype == engine.int64
         else engine.randn(B, *sample, generator=gen))
    with engine.no_grad():
        out = model(x)
    assert _shapes(out) == _expected(shape), (entry, sample)
    assert params == sum(p.numel() for p in model.parameters()), (entry, sample)


small = st.integers(1, 4)
chans = st.integers(1, 3)


@st.composite
def layer_case(draw):
    kind = draw(st.sampled_from([
        "Linear", "Conv1d", "Conv2d", "ConvTranspose1d", "ConvTranspose2d", "MaxPool1d", "MaxPool2d",
        "AvgPool1d", "AvgPool2d", "AdaptiveAvgPool2d", "AdaptiveMaxPool1d", "BatchNorm1d", "BatchNorm2d",
        "LayerNorm", "GroupNorm", "InstanceNorm2d", "RMSNorm", "RNN", "GRU", "LSTM", "GRUCell", "LSTMCell",
        "MultiheadAttention", "TransformerEncoderLayer", "TransformerEncoder", "Embedding", "Flatten",
        "Unflatten", "GLU", "ReLU", "Softmax", "Dropout2d"]))
    c, o = draw(chans), draw(chans)
    if kind == "Linear":
        f = draw(small)
        return {"type": kind, "in_features": f, "out_features": o, "bias": draw(st.booleans())}, (draw(small), f)
    if kind.startswith("Conv"):
        nd = int(kind[-2])
        k = draw(st.integers(1, 3))
        size = tuple(draw(st.integers(k + 2, 7)) for _ in range(nd))
        g = draw(st.sampled_from([1, c])) if o % c == 0 else 1
        entry = {"type": kind, "in_channels": c, "out_channels": o if g == 1 else c * o, "kernel_size": k,
                 "stride": draw(st.integers(1, 2)), "padding": draw(st.integers(0, 1)), "groups": g,
                 "bias": draw(st.booleans())}
        if kind.startswith("ConvT"):
            entry["output_padding"] = draw(st.integers(0, entry["stride"] - 1))
        else:
            entry["dilation"] = draw(st.integers(1, 2))
        return entry, (c, *size)
    if "Pool" in kind:
        nd = int(kind[-2])
        size = tuple(draw(st.integers(3, 7)) for _ in range(nd))
        if kind.startswith("Adaptive"):
            return {"type": kind, "output_size": draw(st.integers(1, 3))}, (c, *size)
        k = draw(st.integers(1, 3))
        entry = {"type": kind, "kernel_size": k, "stride": draw(st.integers(1, 2)),
                 "padding": draw(st.integers(0, k // 2)), "ceil_mode": draw(st.booleans())}
        return entry, (c, *size)
    if kind.startswith("BatchNorm"):
        shape = (c, draw(small)) if kind.endswith("1d") else (c, draw(small), draw(small))
        return {"type": kind, "num_features": c, "affine": draw(st.booleans())}, shape
    if kind in ("LayerNorm", "RMSNorm"):
        entry = {"type": kind, "normalized_shape": [c, o], "elementwise_affine": draw(st.booleans())}
        return entry, (draw(small), c, o)
    if kind == "GroupNorm":
        return {"type": kind, "num_groups": c, "num_channels": c * o}, (c * o, draw(small))
    if kind == "InstanceNorm2d":
        return {"type": kind, "num_features": c, "affine": draw(st.booleans())}, (c, 3, 3)
    if kind in ("RNN", "GRU", "LSTM"):
        entry = {"type": kind, "input_size": c, "hidden_size": o + 1, "num_layers": draw(st.integers(1, 2)),
                 "batch_first": draw(st.booleans()), "bidirectional": draw(st.booleans()),
                 "bias": draw(st.booleans())}
        return entry, (draw(small), c)
    if kind.endswith("Cell"):
        return {"type": kind, "input_size": c, "hidden_size": o}, (c,)
    if kind == "MultiheadAttention":
        h = draw(st.integers(1, 2))
        return {"type": kind, "embed_dim": 2 * h, "num_heads": h, "batch_first": True,
                "bias": draw(st.booleans())}, (draw(small), 2 * h)
    if kind.startswith("Transformer"):
        layer = {"type": "TransformerEncoderLayer", "d_model": 4, "nhead": 2, "dim_feedforward": 6,
                 "batch_first": True, "bias": draw(st.booleans())}
        if kind == "TransformerEncoderLayer":
            return layer, (draw(small), 4)
        entry = {"type": kind, "encoder_layer": layer, "num_layers": draw(st.integers(1, 2)),
                 "enable_nested_tensor": False}
        if draw(st.booleans()):
            entry["norm"] = {"type": "LayerNorm", "normalized_shape": 4}
        return entry, (draw(small), 4)
    if kind == "Embedding":
        return {"type": kind, "num_embeddings": 5, "embedding_dim": o}, (draw(small),)
    if kind == "Flatten":
        return {"type": kind, "start_dim": draw(st.integers(0, 1))}, (c, o, 2)
    if kind == "Unflatten":
        return {"type": kind, "dim": 1, "unflattened_size": [c, -1]}, (c * o, 2)
    if kind == "GLU":
        return {"type": kind, "dim": -1}, (c, 2 * o)
    if kind == "Softmax":
        return {"type": kind, "dim": 1}, (c, o)
    return {"type": kind}, (c, o, 3)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(layer_case())
def test_inferred_shapes_and_parameters_equal_the_real_forward(case):
    entry, sample = case
    check(entry, sample, engine.int64 if entry["type"] == "Embedding" else engine.float32)


def test_every_layer_type_is_covered_by_the_property_test():
    covered = {"Linear", "Conv1d", "Conv2d", "ConvTranspose1d", "ConvTranspose2d", "MaxPool1d", "MaxPool2d",
               "AvgPool1d", "AvgPool2d", "AdaptiveAvgPool2d", "AdaptiveMaxPool1d", "BatchNorm1d", "BatchNorm2d",
               "LayerNorm", "GroupNorm", "InstanceNorm2d", "RMSNorm", "RNN", "GRU", "LSTM", "GRUCell", "LSTMCell",
               "MultiheadAttention", "TransformerEncoderLayer", "TransformerEncoder", "Embedding", "Flatten",
               "Unflatten", "GLU", "ReLU", "Softmax", "Dropout2d"}
    for name in sorted(set(spec.layer_types()) - covered):
        entry = {"type": name}
        if name in ("Threshold",):
            entry.update(threshold=0.1, value=0.0)
        if name == "Bilinear":
            continue  # two inputs: test_bilinear
        if name.startswith("Adaptive"):
            entry["output_size"] = 2
        if name in ("AdaptiveAvgPool1d", "AdaptiveMaxPool2d", "InstanceNorm1d", "Dropout1d"):
            if name == "InstanceNorm1d":
                entry["num_features"] = 3
            sample = (3, 5) if name[-2] == "1" else (3, 5, 4)
        elif name == "RNNCell":
            entry.update(input_size=3, hidden_size=2)
            sample = (3,)
        elif name == "Dropout3d":
            sample = (2, 3, 3, 3)
        else:
            sample = (3, 5, 4)
        check(entry, sample)


def test_bilinear_and_functional_ops():
    g = {"graph": {"inputs": ["a", "b"], "nodes": [
        {"name": "bl", "type": "Bilinear", "in1_features": 3, "in2_features": 2, "out_features": 4,
         "inputs": ["a", "b"]},
        {"name": "c", "op": "cat", "inputs": ["bl", "a"], "dim": 1},
        {"name": "u", "op": "unsqueeze", "inputs": ["c"], "dim": 2},
        {"name": "p", "op": "permute", "inputs": ["u"], "dims": [0, 2, 1]},
        {"name": "t", "op": "transpose", "inputs": ["p"], "dim0": 1, "dim1": 2},
        {"name": "m", "op": "mean", "inputs": ["t"], "dim": 2, "keepdim": True},
        {"name": "r", "op": "reshape", "inputs": ["m"], "shape": [-1, 7]},
        {"name": "s", "op": "softmax", "inputs": ["r"], "dim": 1},
        {"name": "mul", "op": "mul", "inputs": ["s", "r"]},
        {"name": "mm", "op": "matmul", "inputs": ["mul", "mul2"]} if False else
        {"name": "st", "op": "stack", "inputs": ["mul", "s"], "dim": 1},
        {"name": "f", "op": "flatten", "inputs": ["st"], "start_dim": 1},
        {"name": "sel", "op": "select", "inputs": ["st"], "dim": 1, "index": -1},
        {"name": "sq", "op": "squeeze", "inputs": ["m"], "dim": 2},
        {"name": "sm", "op": "sum", "inputs": ["sq"], "dim": 1},
    ], "outputs": {"f": "f", "sel": "sel", "sm": "sm"}}}
    report = spec.validate(g, {"a": (3,), "b": (2,)}, batch=B)
    gen = engine.Generator().manual_seed(0)
    out = spec.build_model(g)(engine.randn(B, 3, generator=gen), engine.randn(B, 2, generator=gen))
    assert {k: tuple(v.shape) for k, v in out.items()} == report.outputs == {"f": (B, 14), "sel": (B, 7), "sm": (B,)}


def test_state_dict_keys_come_from_node_names():
    g = {"graph": {"inputs": ["x"], "nodes": [
        {"name": "encoder", "type": "Linear", "in_features": 3, "out_features": 4, "inputs": ["x"]},
        {"name": "head", "type": "Linear", "in_features": 4, "out_features": 2, "inputs": ["encoder"]}],
        "outputs": "head"}}
    assert list(spec.build_model(g).state_dict()) == ["encoder.weight", "encoder.bias", "head.weight", "head.bias"]
    layers = {"layers": [{"type": "Linear", "in_features": 3, "out_features": 2}]}
    assert list(spec.build_model(layers).state_dict()) == ["0.weight", "0.bias"]


@pytest.mark.parametrize("name", sorted(spec.ZOO))
def test_zoo_models_infer_like_they_run(name):
    shape = (1, 8, 8)
    args = {"vgg11": {"width": 8, "classifier_width": 16, "pool_size": 1}, "resnet18": {"width": 4},
            "transformer_classifier": {"d_model": 8, "nhead": 2, "num_layers": 1}}.get(name, {})
    s = {"zoo": name, "args": args}
    report = spec.validate(s, shape, num_classes=10, batch=3)
    model = spec.build_model(s, shape, num_classes=10)
    model.eval()
    with engine.no_grad():
        out = model(engine.randn(3, *shape, generator=engine.Generator().manual_seed(0)))
    assert tuple(out.shape) == report.outputs["output"] == (3, 10)
    assert report.parameters == sum(p.numel() for p in model.parameters())
    assert report.expanded and ("layers" in report.expanded or "graph" in report.expanded)
