"""Layers beyond the zoo's (every engine.nn layer a spec can name that has an ONNX form), graph
ops, and the layers that cannot be exported: an ExportError naming the sub-module and type."""
from __future__ import annotations

import numpy as np
import pytest

import engine
from engine import nn
from engine.spec import build_model
from export import ExportError, to_onnx


def _seq(*layers, seed: int = 0, randomize=None):
    model = nn.Sequential(*layers)
    randomize(model, seed)
    return model


def test_one_dimensional_stack(check, random_weights):
    model = _seq(
        nn.Conv1d(3, 4, 3, padding=2, dilation=2, padding_mode="reflect"), nn.BatchNorm1d(4), nn.ELU(0.5),
        nn.MaxPool1d(3, stride=2, padding=1, ceil_mode=True),
        nn.Conv1d(4, 4, 4, padding="same", padding_mode="circular"), nn.InstanceNorm1d(4, affine=True),
        nn.AvgPool1d(3, stride=2, padding=1, ceil_mode=True, count_include_pad=False),
        nn.ConvTranspose1d(4, 3, 3, stride=2, padding=1, output_padding=1), nn.Conv1d(3, 4, 1, padding_mode="zeros"),
        nn.AdaptiveAvgPool1d(3), nn.AdaptiveMaxPool1d(2), nn.Flatten(), nn.Linear(8, 5), randomize=random_weights)
    check(model, {"input": (3, 17)})


def test_two_dimensional_stack(check, random_weights):
    model = _seq(
        nn.Conv2d(2, 4, (3, 2), stride=(2, 1), padding=(1, 0), padding_mode="replicate"), nn.GroupNorm(2, 4),
        nn.SiLU(), nn.AvgPool2d(3, stride=2, padding=1, ceil_mode=True),
        nn.ConvTranspose2d(4, 3, 3, stride=2, padding=1, output_padding=1), nn.InstanceNorm2d(3), nn.Mish(),
        nn.Conv2d(3, 6, 3, padding=1, groups=3, bias=False), nn.BatchNorm2d(6, affine=False),
        nn.MaxPool2d(2, ceil_mode=True), nn.AvgPool2d(2, stride=1, divisor_override=3),
        nn.AdaptiveAvgPool2d((3, 2)), nn.AdaptiveMaxPool2d((2, None)), nn.Flatten(),
        nn.Linear(24, 6), nn.LayerNorm(6), nn.Hardswish(), nn.Unflatten(1, (2, 3)), nn.RMSNorm(3),
        nn.LayerNorm([2, 3], elementwise_affine=False), nn.Flatten(), nn.Linear(6, 4), randomize=random_weights)
    check(model, {"input": (2, 11, 9)})


def test_batch_norm_without_running_stats_uses_the_batch(check, random_weights):
    model = _seq(nn.Linear(5, 6), nn.BatchNorm1d(6, track_running_stats=False), nn.Tanh(), randomize=random_weights)
    check(model, {"input": (5,)}, batches=(3, 7))


ACTIVATIONS = [{"type": "ReLU"}, {"type": "ReLU6"}, {"type": "Hardtanh", "min_val": -0.5, "max_val": 0.7},
               {"type": "LeakyReLU", "negative_slope": 0.2}, {"type": "ELU", "alpha": 0.5},
               {"type": "CELU", "alpha": 0.7}, {"type": "SELU"}, {"type": "GELU", "approximate": "tanh"},
               {"type": "GELU"}, {"type": "SiLU"}, {"type": "Mish"}, {"type": "Hardswish"}, {"type": "Hardsigmoid"},
               {"type": "LogSigmoid"}, {"type": "Softsign"}, {"type": "Tanhshrink"},
               {"type": "Threshold", "threshold": 0.1, "value": -2.0}, {"type": "Sigmoid"}, {"type": "Tanh"},
               {"type": "Softplus", "beta": 2.0, "threshold": 1.0}, {"type": "Softmax", "dim": 1},
               {"type": "Softmin", "dim": -1}, {"type": "LogSoftmax", "dim": 1}, {"type": "Softmax"},
               {"type": "GLU"}, {"type": "Dropout", "p": 0.5}, {"type": "AlphaDropout", "p": 0.2},
               {"type": "Identity"}]


@pytest.mark.filterwarnings("ignore:Implicit dimension choice")
def test_every_activation(check, random_weights):
    nodes = [{"name": "h", "type": "Linear", "in_features": 5, "out_features": 8, "inputs": ["x"]}]
    nodes += [{"name": f"a{i}", "inputs": ["h"], **act} for i, act in enumerate(ACTIVATIONS)]
    nodes.append({"name": "all", "op": "cat", "dim": 1, "inputs": [f"a{i}" for i in range(len(ACTIVATIONS))]})
    engine.manual_seed(0)
    model = build_model({"graph": {"inputs": ["x"], "nodes": nodes, "outputs": "all"}})
    random_weights(model, 0)
    check(model, {"x": (5,)})


def test_embedding_takes_integer_inputs(check, random_weights):
    model = _seq(nn.Embedding(11, 4, max_norm=1.0), nn.Flatten(), nn.Linear(12, 3), randomize=random_weights)
    check(model, {"input": (3,)}, dtypes={"input": np.int64},
          make_input=lambda rng, n: {"input": rng.integers(0, 11, size=(n, 3)).astype(np.int64)})


def test_recurrent_layers_and_cells(check, random_weights):
    spec = {"graph": {"inputs": ["x"], "nodes": [
        {"name": "rnn", "type": "RNN", "input_size": 3, "hidden_size": 4, "num_layers": 2, "nonlinearity": "relu",
         "bidirectional": True, "inputs": ["x"]},  # sequence-first
        {"name": "seq", "op": "getitem", "index": 0, "inputs": ["rnn"]},
        {"name": "hn", "op": "getitem", "index": 1, "inputs": ["rnn"]},
        {"name": "lstm", "type": "LSTM", "input_size": 8, "hidden_size": 3, "inputs": ["seq"]},
        {"name": "state", "op": "getitem", "index": 1, "inputs": ["lstm"]},
        {"name": "cn", "op": "getitem", "index": 1, "inputs": ["state"]},
        {"name": "c_last", "op": "select", "dim": 0, "index": 0, "inputs": ["cn"]},
        {"name": "h_mean", "op": "mean", "dim": 0, "inputs": ["hn"]},
        {"name": "cell", "type": "LSTMCell", "input_size": 4, "hidden_size": 3, "inputs": ["h_mean"]},
        {"name": "cell_h", "op": "getitem", "index": 0, "inputs": ["cell"]},
        {"name": "gru", "type": "GRUCell", "input_size": 3, "hidden_size": 2, "bias": False, "inputs": ["cell_h"]},
        {"name": "tanh", "type": "RNNCell", "input_size": 3, "hidden_size": 2, "inputs": ["c_last"]},
        {"name": "both", "op": "cat", "dim": 1, "inputs": ["gru", "tanh"]}],
        "outputs": {"both": "both", "hn": "hn"}}}
    engine.manual_seed(0)
    model = build_model(spec)
    random_weights(model, 0)
    # sequence-first: the batch is dimension 1, so the sample "shape" is exported as (batch, 5, 3)
    # on a graph whose dimension 0 is the sequence; run on full shapes instead of samples
    proto = to_onnx(model, (5, 3))
    assert [i.name for i in proto.graph.input] == ["x"]
    check(model, {"x": (5, 3)}, batches=(6,))


def test_attention_graph(check, random_weights):
    spec = {"graph": {"inputs": ["x"], "nodes": [
        {"name": "q", "type": "Linear", "in_features": 4, "out_features": 8, "inputs": ["x"]},
        {"name": "kv", "type": "Linear", "in_features": 4, "out_features": 6, "inputs": ["x"]},
        {"name": "self", "type": "MultiheadAttention", "embed_dim": 8, "num_heads": 2, "batch_first": True,
         "inputs": ["q"]},
        {"name": "self_out", "op": "getitem", "index": 0, "inputs": ["self"]},
        {"name": "cross", "type": "MultiheadAttention", "embed_dim": 8, "num_heads": 4, "kdim": 6, "vdim": 6,
         "add_bias_kv": True, "add_zero_attn": True, "batch_first": True, "inputs": ["self_out", "kv", "kv"]},
        {"name": "out", "op": "getitem", "index": 0, "inputs": ["cross"]},
        {"name": "weights", "op": "getitem", "index": 1, "inputs": ["cross"]},
        {"name": "enc", "type": "TransformerEncoder", "num_layers": 2, "enable_nested_tensor": False,
         "encoder_layer": {"type": "TransformerEncoderLayer", "d_model": 8, "nhead": 2, "dim_feedforward": 12,
                           "activation": "gelu", "norm_first": True, "batch_first": False},
         "norm": {"type": "LayerNorm", "normalized_shape": 8}, "inputs": ["out"]},
        {"name": "post", "type": "TransformerEncoderLayer", "d_model": 8, "nhead": 1, "dim_feedforward": 4,
         "inputs": ["enc"]},
        {"name": "seqfirst", "type": "MultiheadAttention", "embed_dim": 8, "num_heads": 2, "inputs": ["post"]},
        {"name": "sf", "op": "getitem", "index": 0, "inputs": ["seqfirst"]}],
        "outputs": {"out": "sf", "weights": "weights"}}}
    engine.manual_seed(0)
    model = build_model(spec)
    random_weights(model, 0)
    check(model, {"x": (5, 4)})


def test_graph_ops(check, random_weights):
    spec = {"graph": {"inputs": ["a", "b"], "nodes": [
        {"name": "fa", "type": "Linear", "in_features": 6, "out_features": 6, "inputs": ["a"]},
        {"name": "s", "op": "sub", "inputs": ["fa", "b"]},
        {"name": "m", "op": "mul", "inputs": ["s", "b", "fa"]},
        {"name": "tm", "op": "tanh", "inputs": ["m"]},
        {"name": "sig", "op": "sigmoid", "inputs": ["tm"]},  # in (0.26, 0.74): a well-conditioned divisor
        {"name": "d", "op": "div", "inputs": ["m", "sig"]},
        {"name": "r", "op": "reshape", "shape": [-1, 2, 3], "inputs": ["d"]},
        {"name": "t", "op": "transpose", "dim0": 1, "dim1": 2, "inputs": ["r"]},
        {"name": "mm", "op": "matmul", "inputs": ["r", "t"]},
        {"name": "p", "op": "permute", "dims": [0, 2, 1], "inputs": ["mm"]},
        {"name": "u", "op": "unsqueeze", "dim": 1, "inputs": ["p"]},
        {"name": "sq", "op": "squeeze", "dim": 1, "inputs": ["u"]},
        {"name": "st", "op": "stack", "dim": -1, "inputs": ["sq", "mm"]},
        {"name": "sm", "op": "softmax", "dim": -1, "inputs": ["st"]},
        {"name": "ls", "op": "log_softmax", "dim": 1, "inputs": ["st"]},
        {"name": "sum", "op": "sum", "dim": [1, 3], "inputs": ["ls"]},
        {"name": "mean", "op": "mean", "dim": -1, "keepdim": True, "inputs": ["sm"]},
        {"name": "fl", "op": "flatten", "start_dim": 1, "inputs": ["mean"]},
        {"name": "th", "op": "tanh", "inputs": ["fl"]},
        {"name": "ge", "op": "gelu", "inputs": ["th"]},
        {"name": "re", "op": "relu", "inputs": ["sum"]},
        {"name": "pick", "op": "select", "dim": 1, "index": -1, "inputs": ["re"]},
        {"name": "cat", "op": "cat", "dim": 1, "inputs": ["ge", "re"]},
        {"name": "bil", "type": "Bilinear", "in1_features": 6, "in2_features": 6, "out_features": 3,
         "inputs": ["cat", "b"]},
        {"name": "whole", "op": "flatten", "inputs": ["mm"]},  # start_dim 0: the batch merges too
        {"name": "grid", "type": "Unflatten", "dim": 2, "unflattened_size": [2, 1], "inputs": ["mm"]}],
        "outputs": {"bil": "bil", "pick": "pick", "same": "bil", "whole": "whole", "grid": "grid"}}}
    engine.manual_seed(0)
    model = build_model(spec)
    random_weights(model, 0)
    check(model, {"a": (6,), "b": (6,)})


def _error(model, shape) -> ExportError:
    with pytest.raises(ExportError) as info:
        to_onnx(model, shape)
    return info.value


def test_unsupported_layers_name_their_path_and_type():
    spec = {"graph": {"inputs": ["x"], "nodes": [
        {"name": "sequence", "op": "reshape", "shape": [-1, 4, 2], "inputs": ["x"]},
        {"name": "rnn", "type": "LSTM", "input_size": 2, "hidden_size": 4, "proj_size": 2, "batch_first": True,
         "inputs": ["sequence"]},
        {"name": "out", "op": "getitem", "index": 0, "inputs": ["rnn"]}], "outputs": "out"}}
    err = _error(build_model(spec), (8,))
    assert (err.path, err.type_name) == ("rnn", "LSTM") and "proj_size" in str(err)

    class Custom(nn.Module):
        def forward(self, x):
            return x * 2

    err = _error(nn.Sequential(nn.Linear(3, 3), nn.Sequential(nn.ReLU(), Custom())), (3,))
    assert (err.path, err.type_name) == ("1.1", "Custom") and "1.1 (Custom)" in str(err)

    layer = nn.TransformerEncoderLayer(4, 2, 8, batch_first=True, activation=lambda x: x * 2)
    err = _error(nn.Sequential(nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)), (3, 4))
    assert (err.path, err.type_name) == ("0.layers.0", "TransformerEncoderLayer")

    spec = {"graph": {"inputs": ["x"], "nodes": [
        {"name": "pool", "type": "MaxPool2d", "kernel_size": 2, "return_indices": True, "inputs": ["x"]},
        {"name": "out", "op": "getitem", "index": 0, "inputs": ["pool"]}], "outputs": "out"}}
    err = _error(build_model(spec), (1, 4, 4))
    assert (err.path, err.type_name) == ("pool", "MaxPool2d")

    spec = {"graph": {"inputs": ["x"], "nodes": [{"name": "fc", "type": "Linear", "in_features": 2,
                                                  "out_features": 2, "inputs": ["x"]}], "outputs": {"x": "fc"}}}
    err = _error(build_model(spec), (2,))
    assert "name of an input" in str(err)

    spec = {"layers": [{"type": "LSTM", "input_size": 2, "hidden_size": 3}]}
    err = _error(build_model(spec), (5, 2))
    assert "several tensors" in str(err)


def test_training_mode_is_restored_and_dropout_is_ignored(random_weights):
    model = nn.Sequential(nn.Linear(3, 3), nn.Dropout(0.9))
    model.train()
    proto = to_onnx(model, (3,))
    assert model.training
    assert "Dropout" not in {n.op_type for n in proto.graph.node}
