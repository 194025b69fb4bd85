"""Built-in architectures (``{"zoo": "resnet18", "args": {...}}``), each expanded into a
``layers`` or ``graph`` spec so that validation, shape inference and state_dict keys work
exactly as for a spec a user writes. ``in_channels``/``input_size`` and ``num_classes``
default to the dataset's."""
from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from engine.spec.errors import SpecError

# zoo models whose natural loss is not the task default
DEFAULT_LOSS = {"linear_svm": "MultiMarginLoss"}


def _image(shape: tuple) -> tuple[list, tuple]:
    """Layers turning a dataset sample into (C, H, W): 1-d and 2-d samples get a channel."""
    if len(shape) == 3:
        return [], shape
    if len(shape) == 2:
        return [{"type": "Unflatten", "dim": 1, "unflattened_size": [1, *shape]}], (1, *shape)
    side = math.isqrt(shape[0]) if len(shape) == 1 else 0
    if side * side == shape[0] and side > 1:
        return [{"type": "Unflatten", "dim": 1, "unflattened_size": [1, side, side]}], (1, side, side)
    raise SpecError(("zoo",), f"needs image samples (C, H, W); the dataset's samples have shape {list(shape)}")


def _sequence(shape: tuple) -> tuple[list[int], int, int]:
    """A reshape turning samples into (sequence, features): (L, F) stays, (F,) is a sequence of
    F scalars, (C, H, W) is H rows of C*W."""
    if len(shape) == 1:
        return [-1, shape[0], 1], shape[0], 1
    length = shape[-2] if len(shape) >= 2 else 1
    feat = math.prod(shape) // length
    return [-1, length, feat], length, feat


def mlp(a: dict, shape: tuple, classes: int) -> dict:
    layers: list[dict] = [{"type": "Flatten"}]
    width = math.prod(shape)
    for h in a["hidden"]:
        layers += [{"type": "Linear", "in_features": width, "out_features": h}, {"type": a["activation"]}]
        if a["dropout"]:
            layers.append({"type": "Dropout", "p": a["dropout"]})
        width = h
    return {"layers": layers + [{"type": "Linear", "in_features": width, "out_features": classes}]}


def simple_cnn(a: dict, shape: tuple, classes: int) -> dict:
    pre, (c, h, w) = _image(shape)
    return {"layers": pre + [
        {"type": "Conv2d", "in_channels": c, "out_channels": 32, "kernel_size": 3, "padding": 1}, {"type": "ReLU"},
        {"type": "MaxPool2d", "kernel_size": 2},
        {"type": "Conv2d", "in_channels": 32, "out_channels": 64, "kernel_size": 3, "padding": 1}, {"type": "ReLU"},
        {"type": "MaxPool2d", "kernel_size": 2},
        {"type": "Flatten"},
        {"type": "Linear", "in_features": 64 * (h // 4) * (w // 4), "out_features": 128}, {"type": "ReLU"},
        {"type": "Linear", "in_features": 128, "out_features": classes}]}


def vgg11(a: dict, shape: tuple, classes: int) -> dict:
    """torchvision's VGG-11 (optionally with BatchNorm); channel widths scale with ``width``
    (64 as in the paper) and pools are skipped once the image is 1 pixel wide."""
    pre, (c, h, w) = _image(shape)
    layers = list(pre)
    k = a["width"] / 64
    for v in (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"):
        if v == "M":
            if min(h, w) >= 2:
                layers.append({"type": "MaxPool2d", "kernel_size": 2, "stride": 2})
                h, w = h // 2, w // 2
            continue
        out = max(1, round(v * k))
        layers.append({"type": "Conv2d", "in_channels": c, "out_channels": out, "kernel_size": 3, "padding": 1})
        if a["batch_norm"]:
            layers.append({"type": "BatchNorm2d", "num_features": out})
        layers.append({"type": "ReLU"})
        c = out
    p, f = a["pool_size"], a["classifier_width"]
    layers += [{"type": "AdaptiveAvgPool2d", "output_size": p}, {"type": "Flatten"},
               {"type": "Linear", "in_features": c * p * p, "out_features": f}, {"type": "ReLU"},
               {"type": "Dropout", "p": a["dropout"]},
               {"type": "Linear", "in_features": f, "out_features": f}, {"type": "ReLU"},
               {"type": "Dropout", "p": a["dropout"]},
               {"type": "Linear", "in_features": f, "out_features": classes}]
    return {"layers": layers}


def resnet18(a: dict, shape: tuple, classes: int) -> dict:
    """ResNet-18 (BasicBlock x [2, 2, 2, 2]) as a graph; node names follow torchvision's
    module paths with '_' for '.', e.g. ``layer1_0_conv1``. ``stem``: 'imagenet' (7x7/2 conv
    and a max pool) or 'small' (3x3/1 conv, no pool), chosen by image size when omitted."""
    pre, (c, h, _) = _image(shape)
    nodes: list[dict] = []
    x = "x"
    if pre:
        nodes.append({"name": "to_image", "inputs": [x], **pre[0]})
        x = "to_image"
    stem = a["stem"] or ("imagenet" if h >= 64 else "small")
    w0 = max(1, round(a["width"]))

    def conv(name, src, cin, cout, k, s, p):
        nodes.append({"name": name, "type": "Conv2d", "inputs": [src], "in_channels": cin, "out_channels": cout,
                      "kernel_size": k, "stride": s, "padding": p, "bias": False})

    def bn(name, src, ch):
        nodes.append({"name": name, "type": "BatchNorm2d", "inputs": [src], "num_features": ch})

    if stem == "imagenet":
        conv("conv1", x, c, w0, 7, 2, 3)
    else:
        conv("conv1", x, c, w0, 3, 1, 1)
    bn("bn1", "conv1", w0)
    nodes.append({"name": "relu", "type": "ReLU", "inputs": ["bn1"]})
    x = "relu"
    if stem == "imagenet":
        nodes.append({"name": "maxpool", "type": "MaxPool2d", "inputs": [x], "kernel_size": 3, "stride": 2,
                      "padding": 1})
        x = "maxpool"
    cin = w0
    for li, mult in enumerate((1, 2, 4, 8), start=1):
        cout = w0 * mult
        for bi in range(2):
            stride = 2 if li > 1 and bi == 0 else 1
            p = f"layer{li}_{bi}_"
            conv(p + "conv1", x, cin, cout, 3, stride, 1)
            bn(p + "bn1", p + "conv1", cout)
            nodes.append({"name": p + "relu1", "type": "ReLU", "inputs": [p + "bn1"]})
            conv(p + "conv2", p + "relu1", cout, cout, 3, 1, 1)
            bn(p + "bn2", p + "conv2", cout)
            skip = x
            if stride != 1 or cin != cout:
                conv(p + "downsample_0", x, cin, cout, 1, stride, 0)
                bn(p + "downsample_1", p + "downsample_0", cout)
                skip = p + "downsample_1"
            nodes.append({"name": p + "add", "op": "add", "inputs": [p + "bn2", skip]})
            nodes.append({"name": p + "out", "type": "ReLU", "inputs": [p + "add"]})
            x, cin = p + "out", cout
    nodes += [{"name": "avgpool", "type": "AdaptiveAvgPool2d", "inputs": [x], "output_size": 1},
              {"name": "flatten", "op": "flatten", "inputs": ["avgpool"], "start_dim": 1},
              {"name": "fc", "type": "Linear", "inputs": ["flatten"], "in_features": cin, "out_features": classes}]
    return {"graph": {"inputs": ["x"], "nodes": nodes, "outputs": "fc"}}


def _recurrent(kind: str) -> Callable[[dict, tuple, int], dict]:
    def make(a: dict, shape: tuple, classes: int) -> dict:
        seq, _, feat = _sequence(shape)
        dirs = 2 if a["bidirectional"] else 1
        nodes = [
            {"name": "sequence", "op": "reshape", "inputs": ["x"], "shape": seq},
            {"name": "rnn", "type": kind, "inputs": ["sequence"], "input_size": feat,
             "hidden_size": a["hidden_size"], "num_layers": a["num_layers"], "batch_first": True,
             "bidirectional": a["bidirectional"], "dropout": a["dropout"] if a["num_layers"] > 1 else 0.0},
            {"name": "states", "op": "getitem", "inputs": ["rnn"], "index": 0},
            {"name": "last", "op": "select", "inputs": ["states"], "dim": 1, "index": -1},
            {"name": "fc", "type": "Linear", "inputs": ["last"], "in_features": a["hidden_size"] * dirs,
             "out_features": classes},
        ]
        return {"graph": {"inputs": ["x"], "nodes": nodes, "outputs": "fc"}}
    return make


def transformer_classifier(a: dict, shape: tuple, classes: int) -> dict:
    """Samples as sequences (see ``_sequence``), projected to d_model, a TransformerEncoder
    (batch_first), mean over the sequence, a linear head."""
    seq, _, feat = _sequence(shape)
    d = a["d_model"]
    layer = {"type": "TransformerEncoderLayer", "d_model": d, "nhead": a["nhead"],
             "dim_feedforward": a["dim_feedforward"], "dropout": a["dropout"], "batch_first": True}
    nodes = [
        {"name": "sequence", "op": "reshape", "inputs": ["x"], "shape": seq},
        {"name": "embed", "type": "Linear", "inputs": ["sequence"], "in_features": feat, "out_features": d},
        {"name": "encoder", "type": "TransformerEncoder", "inputs": ["embed"], "encoder_layer": layer,
         "num_layers": a["num_layers"], "enable_nested_tensor": False},
        {"name": "pool", "op": "mean", "inputs": ["encoder"], "dim": 1},
        {"name": "fc", "type": "Linear", "inputs": ["pool"], "in_features": d, "out_features": classes},
    ]
    return {"graph": {"inputs": ["x"], "nodes": nodes, "outputs": "fc"}}


def linear(a: dict, shape: tuple, classes: int) -> dict:
    return {"layers": [{"type": "Flatten"},
                       {"type": "Linear", "in_features": math.prod(shape), "out_features": classes}]}


_RNN_ARGS = {"hidden_size": (int, 64), "num_layers": (int, 1), "bidirectional": (bool, False), "dropout": (float, 0.0)}
# name -> (builder, {arg: (type, default)}, what num_classes means)
MODELS: dict[str, tuple[Callable, dict[str, tuple[type, Any]]]] = {
    "mlp": (mlp, {"hidden": (list, [128, 64]), "activation": (str, "ReLU"), "dropout": (float, 0.0)}),
    "simple_cnn": (simple_cnn, {}),
    "vgg11": (vgg11, {"width": (int, 64), "batch_norm": (bool, False), "pool_size": (int, 7),
                      "classifier_width": (int, 4096), "dropout": (float, 0.5)}),
    "resnet18": (resnet18, {"width": (int, 64), "stem": (str, None)}),
    "lstm_classifier": (_recurrent("LSTM"), dict(_RNN_ARGS)),
    "gru_classifier": (_recurrent("GRU"), dict(_RNN_ARGS)),
    "transformer_classifier": (transformer_classifier, {"d_model": (int, 64), "nhead": (int, 4),
                                                        "num_layers": (int, 2), "dim_feedforward": (int, 128),
                                                        "dropout": (float, 0.1)}),
    "linear_regression": (linear, {}),
    "logistic_regression": (linear, {}),
    "linear_svm": (linear, {}),
}


def _arg(key: str, want: type, value: Any) -> Any:
    path = ("args", key)
    if want is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, want) or (want is int and isinstance(value, bool)):
        raise SpecError(path, f"must be {want.__name__}, not {type(value).__name__}")
    if want is int and not 1 <= value <= 1 << 20:
        raise SpecError(path, f"must be between 1 and {1 << 20}, not {value}")
    if want is float and not 0 <= value < 1:
        raise SpecError(path, f"must be at least 0 and below 1, not {value}")
    if want is list and (not value or len(value) > 64 or not all(
            isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= 1 << 20 for v in value)):
        raise SpecError(path, "must be a list of 1 to 64 layer widths (integers >= 1)")
    if key == "stem" and value not in ("imagenet", "small"):
        raise SpecError(path, "must be 'imagenet' or 'small'")
    return value


def expand(spec: dict, input_shape: tuple[int, ...] | None, num_classes: int | None) -> dict:
    """The layers/graph spec a zoo spec stands for, on samples of ``input_shape``."""
    name = spec["zoo"]
    if not isinstance(name, str) or name not in MODELS:
        raise SpecError(("zoo",), f"unknown zoo model {str(name)[:80]!r}; known: {', '.join(MODELS)}")
    extra = set(spec) - {"zoo", "args"}
    if extra:
        raise SpecError((sorted(extra)[0][:80],), "unknown key; a zoo spec has 'zoo' and 'args'")
    args = spec.get("args") or {}
    if not isinstance(args, dict):
        raise SpecError(("args",), "must be an object of the model's arguments")
    builder, accepted = MODELS[name]
    accepted = {**accepted, "num_classes": (int, None)}
    values = {}
    for key, value in args.items():
        if key not in accepted:
            raise SpecError(("args", str(key)[:80]), f"{name} has no argument {str(key)[:80]!r}; "
                                                     f"it takes {', '.join(sorted(accepted))}")
        values[key] = None if value is None and accepted[key][1] is None else _arg(key, accepted[key][0], value)
    for key, (_, default) in accepted.items():
        values.setdefault(key, default)
    if input_shape is None:
        raise SpecError(("zoo",), "a zoo model is sized from the dataset: give the dataset (or input_shape)")
    classes = values.pop("num_classes") or num_classes
    if not classes:
        raise SpecError(("args", "num_classes"), "is required: the dataset does not say how many outputs")
    return builder(values, tuple(input_shape), classes)
