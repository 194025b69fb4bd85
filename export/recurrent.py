"""RNN, LSTM, GRU (and their cells) as ONNX RNN/LSTM/GRU ops, one op per layer.

Gate order: the engine (as PyTorch) stacks LSTM gates i, f, g, o and GRU gates r, z, n; ONNX
wants i, o, f, c and z, r, h, so the weight rows are reordered. GRU runs with
``linear_before_reset=1`` (PyTorch applies the reset gate after the hidden projection). ONNX
ops are sequence-first, so a batch_first input is transposed in and out; the layer's output is
ONNX's Y (seq, directions, batch, hidden) with the directions concatenated on the last axis,
as PyTorch does. Initial states are zeros (the forward's default, the only form a spec uses).
"""
from __future__ import annotations

import numpy as np

from engine import nn
from export.builder import Builder, ExportError, Val, array, need_rank, tensor_arg, translator, type_name

_ORDER = {"LSTM": [0, 3, 1, 2], "GRU": [1, 0, 2], "RNN_TANH": [0], "RNN_RELU": [0]}
_OP = {"LSTM": "LSTM", "GRU": "GRU", "RNN_TANH": "RNN", "RNN_RELU": "RNN"}


def _gates(a: np.ndarray, mode: str) -> np.ndarray:
    order = _ORDER[mode]
    chunks = np.split(a, len(order), axis=0)
    return np.concatenate([chunks[i] for i in order], axis=0)


def _layer(b: Builder, mode: str, x: Val, weights: list[tuple], hidden: int, hint: str) -> tuple:
    """One ONNX recurrent op over x (seq, batch, features); weights per direction as
    (w_ih, w_hh, b_ih, b_hh) (biases None without bias). Returns (Y, Y_h, Y_c or None)."""
    dirs = len(weights)
    w = b.const(np.stack([_gates(array(wi), mode) for wi, _, _, _ in weights]), f"{hint}.W")
    r = b.const(np.stack([_gates(array(wh), mode) for _, wh, _, _ in weights]), f"{hint}.R")
    bias = None
    if weights[0][2] is not None:
        bias = b.const(np.stack([np.concatenate([_gates(array(bi), mode), _gates(array(bh), mode)])
                                 for _, _, bi, bh in weights]), f"{hint}.B")
    seq, n = x.shape[0], x.shape[1]
    attrs = {"hidden_size": hidden, "direction": "bidirectional" if dirs == 2 else "forward"}
    if mode == "GRU":
        attrs["linear_before_reset"] = 1
    if mode.startswith("RNN"):
        attrs["activations"] = ["Tanh" if mode == "RNN_TANH" else "Relu"] * dirs
    outs = [((seq, dirs, n, hidden), x.dtype), ((dirs, n, hidden), x.dtype)]
    if mode == "LSTM":
        outs.append(((dirs, n, hidden), x.dtype))
    vals = b.op(_OP[mode], [x, w, r, bias], hint=hint, outputs=outs, **attrs)
    return vals[0], vals[1], (vals[2] if mode == "LSTM" else None)


@translator(nn.RNN, nn.LSTM, nn.GRU)
def rnn(b: Builder, m, args: list, path: str) -> tuple:
    if len(args) != 1:
        raise ExportError(path, type_name(m), "an initial state (hx) input is not supported; the export starts "
                                              "from zeros")
    (x,) = tensor_arg(m, args, path)
    if m.proj_size:
        raise ExportError(path, type_name(m), "proj_size > 0 (an LSTM with projections) has no ONNX equivalent")
    need_rank(m, x, (3,), path, "(batch, sequence, features)" if m.batch_first else "(sequence, batch, features)")
    dirs = 2 if m.bidirectional else 1
    cur = b.transpose(x, [1, 0, 2], path) if m.batch_first else x
    hs, cs = [], []
    for layer in range(m.num_layers):
        weights = [m._weights(layer, d)[:4] for d in range(dirs)]
        y, h, c = _layer(b, m.mode, cur, weights, m.hidden_size, f"{path}.l{layer}")
        if dirs == 1:
            cur = b.squeeze(y, [1], path)
        else:  # (seq, 2, batch, H) -> (seq, batch, 2H): forward then reverse, as PyTorch
            y = b.transpose(y, [0, 2, 1, 3], path)
            cur = b.reshape(y, [y.shape[0], y.shape[1], dirs * m.hidden_size], path)
        hs.append(h)
        cs.append(c)
    out = b.transpose(cur, [1, 0, 2], path) if m.batch_first else cur
    h_n = b.concat(hs, 0, path) if len(hs) > 1 else hs[0]
    if m.mode == "LSTM":
        c_n = b.concat(cs, 0, path) if len(cs) > 1 else cs[0]
        return out, (h_n, c_n)
    return out, h_n


@translator(nn.RNNCell, nn.LSTMCell, nn.GRUCell)
def cell(b: Builder, m, args: list, path: str):
    if len(args) != 1:
        raise ExportError(path, type_name(m), "an initial state (hx) input is not supported; the export starts "
                                              "from zeros")
    (x,) = tensor_arg(m, args, path)
    need_rank(m, x, (2,), path, "(batch, features)")
    weights = [(m.weight_ih, m.weight_hh, m.bias_ih, m.bias_hh)]
    _, h, c = _layer(b, m._mode, b.unsqueeze(x, [0], path), weights, m.hidden_size, path)
    h = b.squeeze(h, [0], path)
    return (h, b.squeeze(c, [0], path)) if m._mode == "LSTM" else h
