"""Static shape inference for engine.nn layers: output shape, parameter count and FLOPs
from the constructor arguments and the input shape, without allocating anything.

Shapes are tuples of ints including the batch dimension; a layer returning several tensors
(RNNs, attention, pooling with indices) returns a list of shapes. FLOPs are estimates
(2 per multiply-add, 1 per element for the rest). Errors are ``ShapeError`` with a sentence
naming the expected and actual sizes; the caller adds the node's path.
"""
from __future__ import annotations

import math
from typing import Any

Shape = tuple[int, ...]
SYMBOLIC_BATCH = 1_000_003  # the batch size inference uses by default; printed as "N"


class ShapeError(ValueError):
    """The layer cannot take an input of this shape."""


def fmt(shape: Any, batch: int | None = SYMBOLIC_BATCH) -> str:
    if isinstance(shape, list):
        return "(" + ", ".join(fmt(s, batch) for s in shape) + ")"
    return "[" + ", ".join("N" if d == batch else str(d) for d in shape) + "]"


def _tuple(v: Any, n: int) -> tuple:
    if isinstance(v, (list, tuple)):
        if len(v) != n:
            raise ShapeError(f"expects {n} values, got {len(v)}")
        return tuple(v)
    return (v,) * n


def _ints(name: str, v: tuple, low: int) -> tuple[int, ...]:
    for x in v:
        if not isinstance(x, int) or isinstance(x, bool) or x < low:
            raise ShapeError(f"{name} must be integers >= {low}, got {list(v)}")
    return v


def _need(shape: Shape, ranks: tuple[int, ...], what: str) -> None:
    if len(shape) not in ranks:
        raise ShapeError(f"expects a {' or '.join(f'{r}-d' for r in ranks)} input {what}, got shape {fmt(shape)}")


def _positive(shape: Shape, who: str) -> Shape:
    if any(d < 1 for d in shape):
        raise ShapeError(f"output size would be {fmt(shape)}: the input is too small for {who}")
    return shape


def _conv(kw: dict, x: Shape, nd: int, transposed: bool) -> tuple[Shape, int, int]:
    _need(x, (nd + 1, nd + 2), f"(batch, channels, {'length' if nd == 1 else 'height, width'})")
    cin, cout, groups = kw["in_channels"], kw["out_channels"], kw.get("groups", 1)
    if x[-nd - 1] != cin:
        raise ShapeError(f"expects {cin} input channels (in_channels) but its input has {x[-nd - 1]} "
                         f"(input shape {fmt(x)})")
    if groups < 1 or cin % groups or cout % groups:
        raise ShapeError(f"in_channels ({cin}) and out_channels ({cout}) must be divisible by groups ({groups})")
    k = _ints("kernel_size", _tuple(kw["kernel_size"], nd), 1)
    s = _ints("stride", _tuple(kw.get("stride", 1), nd), 1)
    d = _ints("dilation", _tuple(kw.get("dilation", 1), nd), 1)
    pad = kw.get("padding", 0)
    spatial = x[-nd:]
    if transposed:
        p = _ints("padding", _tuple(pad, nd), 0)
        op = _ints("output_padding", _tuple(kw.get("output_padding", 0), nd), 0)
        out = tuple((n - 1) * si - 2 * pi + di * (ki - 1) + oi + 1
                    for n, si, pi, di, ki, oi in zip(spatial, s, p, d, k, op))
    elif pad == "same":
        out = spatial
    else:
        p = (0,) * nd if pad == "valid" else _ints("padding", _tuple(pad, nd), 0)
        out = tuple((n + 2 * pi - di * (ki - 1) - 1) // si + 1 for n, si, pi, di, ki in zip(spatial, s, p, d, k))
    shape = _positive(x[:-nd - 1] + (cout,) + out, "its kernel")
    params = cout * (cin // groups) * math.prod(k) + (cout if kw.get("bias", True) else 0)
    mac_src = math.prod(x) if transposed else math.prod(shape)
    flops = 2 * mac_src * (cout if transposed else cin) // groups * math.prod(k)
    return shape, params, flops


def _pool(name: str, kw: dict, x: Shape, nd: int) -> Any:
    _need(x, (nd + 1, nd + 2), "(batch, channels, ...)")
    spatial = x[-nd:]
    if name.startswith("Adaptive"):
        size = _tuple(kw["output_size"], nd)
        out = tuple(n if o is None else o for n, o in zip(spatial, size))
        _ints("output_size", out, 1)
    else:
        k = _ints("kernel_size", _tuple(kw["kernel_size"], nd), 1)
        s = _ints("stride", _tuple(kw.get("stride") or k, nd), 1)
        p = _ints("padding", _tuple(kw.get("padding", 0), nd), 0)
        d = _ints("dilation", _tuple(kw.get("dilation", 1), nd), 1)
        if any(pi * 2 > ki for pi, ki in zip(p, k)):
            raise ShapeError(f"padding {list(p)} must be at most half the kernel_size {list(k)}")
        out = []
        for n, ki, si, pi, di in zip(spatial, k, s, p, d):
            span = n + 2 * pi - di * (ki - 1) - 1
            o = (-(-span // si) if kw.get("ceil_mode") else span // si) + 1
            if kw.get("ceil_mode") and (o - 1) * si >= n + pi:
                o -= 1
            out.append(o)
        out = tuple(out)
    shape = _positive(x[:-nd] + out, "its window")
    if kw.get("return_indices"):
        return [shape, shape], 0, math.prod(x)
    return shape, 0, math.prod(x)


def _norm_affine(name: str, kw: dict, x: Shape) -> tuple[Shape, int, int]:
    bias = 1 if kw.get("bias", True) else 0
    if name.startswith(("BatchNorm", "InstanceNorm")):
        nd = 1 if name.endswith("1d") else 2
        ranks = {("B", 1): (2, 3), ("B", 2): (4,), ("I", 1): (2, 3), ("I", 2): (3, 4)}[(name[0], nd)]
        _need(x, ranks, "(batch, channels, ...)")
        c_axis = 0 if name[0] == "I" and len(x) == nd + 1 else 1
        if x[c_axis] != kw["num_features"]:
            raise ShapeError(f"expects {kw['num_features']} channels (num_features) but its input has "
                             f"{x[c_axis]} (input shape {fmt(x)})")
        default_affine = name.startswith("BatchNorm")
        affine = kw.get("affine", default_affine)
        return x, (1 + bias) * kw["num_features"] if affine else 0, 4 * math.prod(x)
    if name == "GroupNorm":
        g, c = kw["num_groups"], kw["num_channels"]
        if c % g:
            raise ShapeError(f"num_channels ({c}) must be divisible by num_groups ({g})")
        if len(x) < 2 or x[1] != c:
            raise ShapeError(f"expects {c} channels (num_channels) but its input shape is {fmt(x)}")
        return x, (1 + bias) * c if kw.get("affine", True) else 0, 4 * math.prod(x)
    ns = kw["normalized_shape"]
    ns = tuple(ns) if isinstance(ns, (list, tuple)) else (ns,)
    _ints("normalized_shape", ns, 1)
    if tuple(x[-len(ns):]) != ns or len(x) < len(ns):
        raise ShapeError(f"normalizes the last dimensions {list(ns)} but its input shape is {fmt(x)}")
    affine = kw.get("elementwise_affine", True)
    per = (1 + bias) if name == "LayerNorm" else 1
    return x, per * math.prod(ns) if affine else 0, 4 * math.prod(x)


def _rnn(name: str, kw: dict, x: Shape) -> tuple[Any, int, int]:
    gates = {"RNN": 1, "GRU": 3, "LSTM": 4}[name]
    h, layers = kw["hidden_size"], kw.get("num_layers", 1)
    dirs = 2 if kw.get("bidirectional") else 1
    proj = kw.get("proj_size", 0) or 0
    if proj and name != "LSTM":
        raise ShapeError("proj_size is an LSTM argument")
    if proj >= h:
        raise ShapeError(f"proj_size ({proj}) must be smaller than hidden_size ({h})")
    _need(x, (2, 3), "(batch, sequence, features) with batch_first=True, else (sequence, batch, features)")
    if x[-1] != kw["input_size"]:
        raise ShapeError(f"expects input_size={kw['input_size']} features but its input has {x[-1]} "
                         f"(input shape {fmt(x)})")
    out_h = proj or h
    bias = 2 * gates * h if kw.get("bias", True) else 0
    params, inp = 0, kw["input_size"]
    for _ in range(layers):
        params += dirs * (gates * h * inp + gates * h * out_h + bias + (proj * h if proj else 0))
        inp = out_h * dirs
    out = x[:-1] + (out_h * dirs,)
    batch = () if len(x) == 2 else ((x[0],) if kw.get("batch_first") else (x[1],))
    hidden = (layers * dirs,) + batch + (out_h,)
    steps = math.prod(x[:-1])
    flops = 2 * steps * params
    if name == "LSTM":
        return [out, [hidden, (layers * dirs,) + batch + (h,)]], params, flops
    return [out, hidden], params, flops


def _cell(name: str, kw: dict, x: Shape) -> tuple[Any, int, int]:
    gates = {"RNNCell": 1, "GRUCell": 3, "LSTMCell": 4}[name]
    h = kw["hidden_size"]
    _need(x, (1, 2), "(batch, features)")
    if x[-1] != kw["input_size"]:
        raise ShapeError(f"expects input_size={kw['input_size']} features but its input has {x[-1]}")
    params = gates * h * (kw["input_size"] + h) + (2 * gates * h if kw.get("bias", True) else 0)
    out = x[:-1] + (h,)
    return ([out, out] if name == "LSTMCell" else out), params, 2 * params * math.prod(x[:-1])


def _mha_params(e: int, kw: dict) -> int:
    kdim, vdim = kw.get("kdim") or e, kw.get("vdim") or e
    b = kw.get("bias", True)
    p = e * e + e * kdim + e * vdim + (3 * e if b else 0) + e * e + (e if b else 0)
    return p + (2 * e if kw.get("add_bias_kv") else 0)


def _mha(kw: dict, xs: list[Shape]) -> tuple[Any, int, int]:
    e, heads = kw["embed_dim"], kw["num_heads"]
    if e % heads:
        raise ShapeError(f"embed_dim ({e}) must be divisible by num_heads ({heads})")
    q, k, v = (xs * 3)[:3] if len(xs) == 1 else (xs + [xs[-1]])[:3]
    for shape, want, what in ((q, e, "query"), (k, kw.get("kdim") or e, "key"), (v, kw.get("vdim") or e, "value")):
        _need(shape, (2, 3), f"{what} (batch, sequence, embed) with batch_first=True")
        if shape[-1] != want:
            raise ShapeError(f"expects {what} with {want} features but got shape {fmt(shape)}")
    seq_axis = 1 if kw.get("batch_first") and len(q) == 3 else 0
    lq, lk = q[seq_axis], k[seq_axis]
    batch = () if len(q) == 2 else (q[1 - seq_axis],)
    params = _mha_params(e, kw)
    flops = 2 * (lq + 2 * lk) * e * e * max(1, math.prod(batch)) + 4 * lq * lk * e * max(1, math.prod(batch))
    return [q, batch + (lq, lk + (1 if kw.get("add_bias_kv") else 0) + (1 if kw.get("add_zero_attn") else 0))], \
        params, flops


def _encoder_layer(kw: dict, x: Shape) -> tuple[Shape, int, int]:
    d, ff = kw["d_model"], kw.get("dim_feedforward", 2048)
    if d % kw["nhead"]:
        raise ShapeError(f"d_model ({d}) must be divisible by nhead ({kw['nhead']})")
    _need(x, (2, 3), "(batch, sequence, d_model) with batch_first=True")
    if x[-1] != d:
        raise ShapeError(f"expects d_model={d} features but its input has {x[-1]} (input shape {fmt(x)})")
    b = kw.get("bias", True)
    params = _mha_params(d, {"bias": b}) + d * ff + d * ff + ((ff + d) if b else 0) + 2 * d * (2 if b else 1)
    tokens = math.prod(x[:-1])
    return x, params, 2 * tokens * params + 4 * tokens * x[-2] * d


def infer_layer(name: str, kw: dict, xs: list[Any]) -> tuple[Any, int, int]:
    """(output shape(s), parameters, FLOPs) of layer ``name`` with arguments ``kw`` on ``xs``."""
    if kw.get("padding_mode", "zeros") not in ("zeros", "reflect", "replicate", "circular"):
        raise ShapeError("padding_mode must be one of zeros, reflect, replicate, circular")
    if name == "Embedding" and kw.get("sparse"):
        raise ShapeError("Embedding sparse gradients are not supported by engine.nn")
    if name == "MultiheadAttention":
        return _mha(kw, xs)
    if name == "Bilinear":
        if len(xs) != 2:
            raise ShapeError("takes two inputs")
        a, b = xs
        if a[-1] != kw["in1_features"] or b[-1] != kw["in2_features"] or a[:-1] != b[:-1]:
            raise ShapeError(f"expects inputs [..., {kw['in1_features']}] and [..., {kw['in2_features']}], "
                             f"got {fmt(a)} and {fmt(b)}")
        out = a[:-1] + (kw["out_features"],)
        params = (kw["in1_features"] * kw["in2_features"] * kw["out_features"]
                  + (kw["out_features"] if kw.get("bias", True) else 0))
        return out, params, 2 * params * math.prod(a[:-1])
    if len(xs) != 1:
        raise ShapeError(f"takes one input, got {len(xs)}")
    x = xs[0]
    if isinstance(x, list):
        raise ShapeError("receives several tensors (a layer such as LSTM returns a tuple); "
                         "use the graph form with a 'getitem' node to pick one")
    numel = math.prod(x)
    if name == "Linear":
        if not x or x[-1] != kw["in_features"]:
            got = x[-1] if x else 0
            raise ShapeError(f"expects {kw['in_features']} input features (in_features) but its input has "
                             f"{got} (input shape {fmt(x)})")
        out = x[:-1] + (kw["out_features"],)
        params = kw["in_features"] * kw["out_features"] + (kw["out_features"] if kw.get("bias", True) else 0)
        return out, params, 2 * math.prod(out) * kw["in_features"]
    if name in ("Conv1d", "Conv2d", "ConvTranspose1d", "ConvTranspose2d"):
        return _conv(kw, x, int(name[-2]), name.startswith("ConvT"))
    if "Pool" in name:
        return _pool(name, kw, x, int(name[-2]))
    if "Norm" in name:
        return _norm_affine(name, kw, x)
    if name in ("RNN", "GRU", "LSTM"):
        return _rnn(name, kw, x)
    if name.endswith("Cell"):
        return _cell(name, kw, x)
    if name == "TransformerEncoderLayer":
        return _encoder_layer(kw, x)
    if name == "TransformerEncoder":
        sub = kw["encoder_layer"]
        sub_kw = {k: v for k, v in sub.items() if k != "type"}
        out, p, f = _encoder_layer(sub_kw, x)
        layers = kw["num_layers"]
        norm_p = 0
        if kw.get("norm"):
            norm_kw = {k: v for k, v in kw["norm"].items() if k != "type"}
            _, norm_p, _ = _norm_affine(kw["norm"]["type"], norm_kw, out)
        return out, p * layers + norm_p, f * layers
    if name == "Embedding":
        return x + (kw["embedding_dim"],), kw["num_embeddings"] * kw["embedding_dim"], numel
    if name == "Flatten":
        start, end = kw.get("start_dim", 1), kw.get("end_dim", -1)
        return flatten(x, start, end), 0, 0
    if name == "Unflatten":
        return unflatten(x, kw["dim"], kw["unflattened_size"]), 0, 0
    if name == "GLU":
        dim = axis(x, kw.get("dim", -1))
        if x[dim] % 2:
            raise ShapeError(f"halves dimension {dim}, which has odd size {x[dim]}")
        return x[:dim] + (x[dim] // 2,) + x[dim + 1:], 0, numel
    if name in ("Softmax", "LogSoftmax", "Softmin") and kw.get("dim") is not None:
        axis(x, kw["dim"])
    if name in ("Dropout1d", "Dropout2d", "Dropout3d"):
        _need(x, {"Dropout1d": (2, 3), "Dropout2d": (3, 4), "Dropout3d": (4, 5)}[name], "(batch, channels, ...)")
    return x, 0, numel  # elementwise: activations, dropout, Identity


def axis(x: Shape, dim: Any) -> int:
    if not isinstance(dim, int) or isinstance(dim, bool) or not -len(x) <= dim < max(len(x), 1):
        raise ShapeError(f"dim {dim} is out of range for shape {fmt(x)}")
    return dim % len(x)


def flatten(x: Shape, start: int, end: int) -> Shape:
    if not x:
        return (1,)
    s, e = axis(x, start), axis(x, end)
    if s > e:
        raise ShapeError(f"start_dim {start} comes after end_dim {end} for shape {fmt(x)}")
    return x[:s] + (math.prod(x[s:e + 1]),) + x[e + 1:]


def unflatten(x: Shape, dim: int, sizes: Any) -> Shape:
    d = axis(x, dim)
    sizes = tuple(sizes) if isinstance(sizes, (list, tuple)) else None
    if not sizes or any(not isinstance(v, int) or isinstance(v, bool) or v == 0 or v < -1 for v in sizes):
        raise ShapeError("unflattened_size must be a list of positive sizes (one may be -1)")
    return x[:d] + reshape((x[d],), sizes) + x[d + 1:]


def reshape(x: Shape, shape: Any) -> Shape:
    if not isinstance(shape, (list, tuple)) or any(not isinstance(v, int) or isinstance(v, bool) or v < -1
                                                   for v in shape):
        raise ShapeError("shape must be a list of sizes (one may be -1)")
    total, known = math.prod(x), math.prod(v for v in shape if v != -1)
    if list(shape).count(-1) > 1:
        raise ShapeError("only one size may be -1")
    if -1 in shape:
        if known == 0 or total % known:
            raise ShapeError(f"cannot reshape {fmt(x)} ({total} elements) into {list(shape)}")
        shape = tuple(total // known if v == -1 else v for v in shape)
    if math.prod(shape) != total:
        raise ShapeError(f"cannot reshape {fmt(x)} ({total} elements) into {list(shape)}")
    return tuple(shape)


def broadcast(a: Shape, b: Shape) -> Shape:
    out = []
    for i in range(1, max(len(a), len(b)) + 1):
        da = a[-i] if i <= len(a) else 1
        db = b[-i] if i <= len(b) else 1
        if da != db and 1 not in (da, db):
            raise ShapeError(f"shapes {fmt(a)} and {fmt(b)} do not broadcast (size {da} vs {db})")
        out.append(max(da, db))
    return tuple(reversed(out))
