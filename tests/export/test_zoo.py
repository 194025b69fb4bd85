"""Every zoo model (tiny sizes, seeded random weights) and a multi-task graph with a skip
connection: exported to ONNX, checked, run with onnxruntime on batches of 1 and 7 and compared
with the engine's eval-mode forward (max abs diff <= 1e-4)."""
from __future__ import annotations

import pytest

import engine
from engine.spec import build_model

TINY = {"vgg11": {"width": 4, "classifier_width": 8, "pool_size": 1, "dropout": 0.0},
        "resnet18": {"width": 2}, "mlp": {"hidden": [8]},
        "lstm_classifier": {"hidden_size": 4}, "gru_classifier": {"hidden_size": 4},
        "transformer_classifier": {"d_model": 4, "nhead": 2, "num_layers": 1, "dim_feedforward": 8}}
ZOO = ["mlp", "simple_cnn", "vgg11", "resnet18", "lstm_classifier", "gru_classifier", "transformer_classifier",
       "logistic_regression", "linear_svm", "linear_regression"]
SEQUENCE = {"lstm_classifier", "gru_classifier", "transformer_classifier"}
DIGITS = (1, 8, 8)  # the digits builtin's samples


def _zoo(name: str, args: dict, shape: tuple, classes: int = 10, seed: int = 0, randomize=None):
    engine.manual_seed(seed)
    model = build_model({"zoo": name, "args": args}, shape, num_classes=classes)
    randomize(model, seed)
    return model


@pytest.mark.parametrize("name", ZOO)
def test_zoo_model_matches_the_engine(name, check, random_weights):
    shape = (8, 8) if name in SEQUENCE else DIGITS  # (seq, features) for the sequence models
    classes = 1 if name == "linear_regression" else 10
    model = _zoo(name, TINY.get(name, {}), shape, classes, randomize=random_weights)
    diff = check(model, {"x" if name in ("resnet18", *SEQUENCE) else "input": shape})
    print(f"{name}: max abs diff {diff:.3g}")


VARIANTS = [
    ("mlp", {"hidden": [16, 8], "activation": "GELU", "dropout": 0.3}, (64,)),
    ("mlp", {"hidden": [8], "activation": "Tanh"}, DIGITS),
    ("vgg11", {"width": 4, "classifier_width": 8, "pool_size": 7, "batch_norm": True}, DIGITS),
    ("vgg11", {"width": 2, "classifier_width": 8, "pool_size": 2, "batch_norm": True}, (3, 20, 20)),
    ("resnet18", {"width": 2, "stem": "imagenet"}, (3, 64, 64)),
    ("simple_cnn", {}, (64,)),
    ("lstm_classifier", {"hidden_size": 5, "num_layers": 2, "bidirectional": True, "dropout": 0.2}, DIGITS),
    ("gru_classifier", {"hidden_size": 5, "num_layers": 3, "bidirectional": True}, (6, 3)),
    ("gru_classifier", {"hidden_size": 3}, (5,)),
    ("lstm_classifier", {"hidden_size": 3, "num_layers": 2}, (7, 2)),
    ("transformer_classifier", {"d_model": 8, "nhead": 4, "num_layers": 2, "dim_feedforward": 16}, DIGITS),
]


@pytest.mark.parametrize("name,args,shape", VARIANTS, ids=[f"{v[0]}-{i}" for i, v in enumerate(VARIANTS)])
def test_zoo_variants_match_the_engine(name, args, shape, check, random_weights):
    model = _zoo(name, args, shape, randomize=random_weights)
    inputs = model.plan.inputs if hasattr(model, "plan") else ["input"]
    diff = check(model, {inputs[0]: shape})
    print(f"{name} {args}: max abs diff {diff:.3g}")


MULTITASK = {"graph": {"inputs": ["x"], "nodes": [
    {"name": "c1", "type": "Conv2d", "in_channels": 1, "out_channels": 4, "kernel_size": 3, "padding": 1,
     "inputs": ["x"]},
    {"name": "r1", "op": "relu", "inputs": ["c1"]},
    {"name": "c2", "type": "Conv2d", "in_channels": 4, "out_channels": 4, "kernel_size": 3, "padding": 1,
     "inputs": ["r1"]},
    {"name": "bn", "type": "BatchNorm2d", "num_features": 4, "inputs": ["c2"]},
    {"name": "skip", "op": "add", "inputs": ["bn", "r1"]},  # the skip connection
    {"name": "act", "type": "ReLU", "inputs": ["skip"]},
    {"name": "pool", "type": "MaxPool2d", "kernel_size": 2, "inputs": ["act"]},
    {"name": "flat", "op": "flatten", "inputs": ["pool"], "start_dim": 1},
    {"name": "gap", "type": "AdaptiveAvgPool2d", "output_size": 1, "inputs": ["skip"]},
    {"name": "gflat", "type": "Flatten", "inputs": ["gap"]},
    {"name": "both", "op": "cat", "inputs": ["flat", "gflat"], "dim": 1},
    {"name": "trunk", "type": "Linear", "in_features": 68, "out_features": 16, "inputs": ["both"]},
    {"name": "drop", "type": "Dropout", "p": 0.5, "inputs": ["trunk"]},
    {"name": "hid", "type": "GELU", "inputs": ["drop"]},
    {"name": "digit", "type": "Linear", "in_features": 16, "out_features": 10, "inputs": ["hid"]},
    {"name": "parity_fc", "type": "Linear", "in_features": 16, "out_features": 2, "inputs": ["hid"]},
    {"name": "parity", "type": "LogSoftmax", "dim": 1, "inputs": ["parity_fc"]}],
    "outputs": {"digit": "digit", "parity": "parity"}}}


def test_multitask_graph_has_one_output_per_head(check, random_weights):
    import onnx

    from export import to_onnx

    engine.manual_seed(1)
    model = build_model(MULTITASK, DIGITS)
    random_weights(model, 1)
    diff = check(model, {"x": DIGITS})
    print(f"multitask graph: max abs diff {diff:.3g}")
    proto = to_onnx(model, DIGITS)
    outs = {o.name: [d.dim_param or d.dim_value for d in o.type.tensor_type.shape.dim] for o in proto.graph.output}
    assert outs == {"digit": ["batch", 10], "parity": ["batch", 2]}
    assert [i.name for i in proto.graph.input] == ["x"]
    onnx.checker.check_model(proto, full_check=True)
